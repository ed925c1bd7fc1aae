/* The SQLite backend of nim-server's storage (db_private.h): one file in WAL
 * mode with synchronous=FULL, the schema versioned with PRAGMA user_version
 * and migrated at open, every statement prepared once. A file that cannot be
 * written is served read-only. The request thread only (reqthread.c). */
#include "server/db_private.h"
#include "core/alloc.h"
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    sqlite3      *h;
    sqlite3_stmt *st[S__COUNT];
} sq;

#define Q(db) ((sq *)(db)->impl)

static const char schema_v1[] =
    "CREATE TABLE accounts(account TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL,"
    "  iterations INTEGER NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE devices(account TEXT NOT NULL, device_id TEXT NOT NULL,"
    "  first_login INTEGER NOT NULL, last_login INTEGER NOT NULL,"
    "  PRIMARY KEY(account, device_id)) WITHOUT ROWID;"
    "CREATE TABLE teams(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
    "  owner TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE team_members(team_id INTEGER NOT NULL, account TEXT NOT NULL,"
    "  joined INTEGER NOT NULL, PRIMARY KEY(team_id, account)) WITHOUT ROWID;"
    "CREATE TABLE msgs(id INTEGER PRIMARY KEY AUTOINCREMENT, id_client TEXT NOT NULL,"
    "  scene TEXT NOT NULL, from_account TEXT NOT NULL, from_device TEXT NOT NULL,"
    "  to_target TEXT NOT NULL, time INTEGER NOT NULL, type TEXT NOT NULL, text TEXT, content TEXT);"
    "CREATE UNIQUE INDEX msgs_client ON msgs(from_account, id_client);"
    /* One row per (recipient or sender, message): the per-account index of
     * messages; delivered = 0 is the account's offline queue. */
    "CREATE TABLE inbox(account TEXT NOT NULL, msg_id INTEGER NOT NULL, session_id TEXT NOT NULL,"
    "  delivered INTEGER NOT NULL, PRIMARY KEY(account, msg_id)) WITHOUT ROWID;"
    "CREATE INDEX inbox_offline ON inbox(account, delivered, msg_id);"
    "CREATE TABLE read_pointers(account TEXT NOT NULL, session_id TEXT NOT NULL, ack INTEGER NOT NULL,"
    "  ver INTEGER NOT NULL, PRIMARY KEY(account, session_id)) WITHOUT ROWID;"
    "CREATE INDEX read_pointers_ver ON read_pointers(account, ver);"
    "CREATE TABLE deleted_sessions(account TEXT NOT NULL, session_id TEXT NOT NULL,"
    "  mark INTEGER NOT NULL, time INTEGER NOT NULL, PRIMARY KEY(account, session_id)) WITHOUT ROWID;"
    "CREATE TABLE receipts(reader TEXT NOT NULL, peer TEXT NOT NULL, time INTEGER NOT NULL,"
    "  msg_id INTEGER NOT NULL, ver INTEGER NOT NULL, PRIMARY KEY(peer, reader)) WITHOUT ROWID;"
    "CREATE INDEX receipts_ver ON receipts(peer, ver);"
    "CREATE TABLE stick_top(account TEXT NOT NULL, session_id TEXT NOT NULL, top_custom TEXT NOT NULL,"
    "  create_time INTEGER NOT NULL, update_time INTEGER NOT NULL,"
    "  PRIMARY KEY(account, session_id)) WITHOUT ROWID;"
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counters VALUES('ver', 0);"
    "PRAGMA user_version = 1;";

/* Version 2: an account's messages by session, so a first login seeks from
 * one session to the next and reads each newest first, without scanning the
 * account's history. */
static const char schema_v2[] =
    "CREATE INDEX inbox_session ON inbox(account, session_id, msg_id);"
    "PRAGMA user_version = 2;";

/* Version 3: messages by time, so a history query turns its time bounds
 * into id bounds with two seeks; receipts by reader. */
static const char schema_v3[] =
    "CREATE INDEX msgs_time ON msgs(time);"
    /* and a reader's receipts, counted against SRV_MAX_RECEIPTS */
    "CREATE INDEX receipts_reader ON receipts(reader);"
    "PRAGMA user_version = 3;";

/* Version 4: account names by their lower case, so a name that differs
 * only in case from an existing one is refused at registration (not
 * unique: databases from before may hold such twins already). */
static const char schema_v4[] =
    "CREATE INDEX accounts_lower ON accounts(lower(account));"
    "PRAGMA user_version = 4;";

/* Version 5: the bytes of messages each account has sent, kept with every
 * message it sends (--max-storage-mb caps it); counted once for what was
 * stored before. */
static const char schema_v5[] =
    "ALTER TABLE accounts ADD COLUMN stored INTEGER NOT NULL DEFAULT 0;"
    "UPDATE accounts SET stored = (SELECT coalesce(sum(coalesce(length(text), 0) + coalesce(length(content), 0)"
    " + " SRV_MSG_OVERHEAD_TEXT "), 0) FROM msgs WHERE msgs.from_account = accounts.account);"
    "PRAGMA user_version = 5;";

/* Version 6: the database's own id, random, made once: the login reply
 * names it so a device knows its store came from this database (every node
 * on it, every restart), not from another server whose ids would collide. */
static const char schema_v6[] =
    "INSERT OR IGNORE INTO counters VALUES('server_id', abs(random() % 9007199254740991) + 1);"
    "PRAGMA user_version = 6;";

/* Each migration takes the schema from its index to the next version. */
static const char *const migrations[] = { schema_v1, schema_v2, schema_v3, schema_v4, schema_v5, schema_v6 };

/* The file (or its file system) cannot be written: serve logins and reads
 * from it, immutable (no -wal or -shm is needed or made), and refuse every
 * write as storage trouble. Committed data still in a -wal file would be
 * invisible that way: then refuse to start instead. 0 or -1 (err set). */
static int open_read_only(srv_db *db, sq *q, const char *path, char *err, size_t errlen) {
    char wal[4096];
    struct stat st;
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (stat(wal, &st) == 0 && st.st_size > 0) {
        snprintf(err, errlen, "%s is read-only and %s holds committed data: make it writable and restart",
                 path, wal);
        return -1;
    }
    sqlite3_close(q->h);
    q->h = NULL;
    /* a URI: '%', '?' and '#' of the path escaped */
    char uri[3 * 4096 + 32];
    size_t n = (size_t)snprintf(uri, sizeof uri, "file:");
    for (const char *c = path; *c && n + 4 < sizeof uri - 16; c++)
        n += (size_t)(*c == '%' || *c == '?' || *c == '#' ? snprintf(uri + n, 4, "%%%02X", (unsigned char)*c)
                                                         : snprintf(uri + n, 2, "%c", *c));
    snprintf(uri + n, sizeof uri - n, "?immutable=1");
    if (sqlite3_open_v2(uri, &q->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s read-only: %s", path, q->h ? sqlite3_errmsg(q->h) : "?");
        return -1;
    }
    db->read_only = db->cannot_write = 1;
    fprintf(stderr, "nim-server: %s is read-only: logins and reads are served, every write is refused\n", path);
    return 0;
}

static void sq_reset(srv_db *db, int i) {
    sqlite3_reset(Q(db)->st[i]);
    sqlite3_clear_bindings(Q(db)->st[i]);
}
static void sq_bind_int(srv_db *db, int i, int pos, int64_t v) { sqlite3_bind_int64(Q(db)->st[i], pos, v); }
static void sq_bind_text(srv_db *db, int i, int pos, const char *v) {
    if (v) sqlite3_bind_text(Q(db)->st[i], pos, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(Q(db)->st[i], pos);
}
static void sq_bind_blob(srv_db *db, int i, int pos, const void *p, int n) {
    sqlite3_bind_blob(Q(db)->st[i], pos, p, n, SQLITE_TRANSIENT);
}
static int sq_step(srv_db *db, int i) {
    int rc = sqlite3_step(Q(db)->st[i]);
    return rc == SQLITE_ROW ? DB_ROW : rc == SQLITE_DONE ? DB_DONE : DB_FAIL;
}
static int64_t sq_col_int(srv_db *db, int i, int col) { return sqlite3_column_int64(Q(db)->st[i], col); }
static const char *sq_col_text(srv_db *db, int i, int col) {
    return (const char *)sqlite3_column_text(Q(db)->st[i], col);
}
static const void *sq_col_blob(srv_db *db, int i, int col, int *n) {
    const void *p = sqlite3_column_blob(Q(db)->st[i], col);
    *n = sqlite3_column_bytes(Q(db)->st[i], col);
    return p;
}
static int64_t sq_changes(srv_db *db) { return sqlite3_changes64(Q(db)->h); }
static int64_t sq_total_changes(srv_db *db) { return sqlite3_total_changes64(Q(db)->h); }
static int sq_in_txn(srv_db *db) { return !sqlite3_get_autocommit(Q(db)->h); }
static int sq_storage_failure(srv_db *db) {
    int code = sqlite3_errcode(Q(db)->h);
    return code == SQLITE_FULL || code == SQLITE_READONLY || code == SQLITE_IOERR;
}
static const char *sq_errmsg(srv_db *db) { return sqlite3_errmsg(Q(db)->h); }
static void sq_close(srv_db *db) {
    sq *q = Q(db);
    if (!q) return;
    for (int i = 0; i < S__COUNT; i++) sqlite3_finalize(q->st[i]);
    sqlite3_close(q->h);
    nim_free(q);
    db->impl = NULL;
}

static const srv_db_backend sqlite_backend = {
    .name = "sqlite",
    .reset = sq_reset, .bind_int = sq_bind_int, .bind_text = sq_bind_text, .bind_blob = sq_bind_blob,
    .step = sq_step, .col_int = sq_col_int, .col_text = sq_col_text, .col_blob = sq_col_blob,
    .changes = sq_changes, .total_changes = sq_total_changes, .in_txn = sq_in_txn,
    .storage_failure = sq_storage_failure, .errmsg = sq_errmsg, .close = sq_close,
};

int db_sqlite_open(srv_db *db, const char *path, char *err, size_t errlen) {
    sq *q = nim_calloc(1, sizeof *q);
    if (!q) { snprintf(err, errlen, "out of memory"); return -1; }
    db->be = &sqlite_backend;
    db->impl = q;
    if (sqlite3_open_v2(path, &q->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, q->h ? sqlite3_errmsg(q->h) : "?");
        return -1;
    }
    char *emsg = NULL;
    if (sqlite3_db_readonly(q->h, "main") == 1 && open_read_only(db, q, path, err, errlen) != 0) return -1;
    sqlite3_busy_timeout(q->h, 5000);
    if (!db->read_only &&
        sqlite3_exec(q->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &emsg) != SQLITE_OK)
        goto exec_fail;
    sqlite3_stmt *v;
    int version = -1;
    if (sqlite3_prepare_v2(q->h, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK) {
        if (sqlite3_step(v) == SQLITE_ROW) version = sqlite3_column_int(v, 0);
        sqlite3_finalize(v);
    }
    if (version < 0 || version > SRV_DB_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %d, this server knows %d", path, version,
                 SRV_DB_SCHEMA_VERSION);
        return -1;
    }
    if (version < SRV_DB_SCHEMA_VERSION && db->read_only) {
        snprintf(err, errlen, "%s: read-only, and its schema (version %d) needs migrating to %d: "
                 "make it writable once", path, version, SRV_DB_SCHEMA_VERSION);
        return -1;
    }
    if (version < SRV_DB_SCHEMA_VERSION) {
        /* All the steps in one transaction: a crash leaves the old version. */
        if (sqlite3_exec(q->h, "BEGIN IMMEDIATE", NULL, NULL, &emsg) != SQLITE_OK) goto exec_fail;
        for (int v = version; v < SRV_DB_SCHEMA_VERSION; v++) {
            if (sqlite3_exec(q->h, migrations[v], NULL, NULL, &emsg) != SQLITE_OK) {
                sqlite3_exec(q->h, "ROLLBACK", NULL, NULL, NULL);
                goto exec_fail;
            }
        }
        if (sqlite3_exec(q->h, "COMMIT", NULL, NULL, &emsg) != SQLITE_OK) goto exec_fail;
    }
    for (int i = 0; i < S__COUNT; i++) {
        if (sqlite3_prepare_v3(q->h, db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare failed: %s: %s", sqlite3_errmsg(q->h), db_sql[i]);
            return -1;
        }
    }
    return 0;
exec_fail:
    snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(q->h));
    sqlite3_free(emsg);
    return -1;
}
