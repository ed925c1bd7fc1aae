/* nim-server storage on SQLite. All statements are prepared once at open;
 * every function resets its statement before returning, so a failure in the
 * middle never leaves a statement holding a read transaction open. The
 * request thread only (reqthread.c). */
#include "server/db_private.h"
#include "core/alloc.h"
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>


#define MSG_COLS "m.id, m.id_client, m.scene, m.from_account, m.from_device, m.to_target, " \
                 "m.time, m.type, m.text, m.content"

static const char *const sql_text[S__COUNT] = {
    [S_BEGIN]    = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT]   = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT nim_item",
    [S_RELEASE]  = "RELEASE nim_item",
    [S_ROLLBACK_TO] = "ROLLBACK TO nim_item",
    [S_NEXT_VER] = "UPDATE counters SET value = value + 1 WHERE name = 'ver' RETURNING value",
    [S_MAX_MSG]  = "SELECT coalesce(max(id), 0) FROM msgs",
    [S_MAX_VER]  = "SELECT value FROM counters WHERE name = 'ver'",
    [S_SERVER_ID] = "SELECT value FROM counters WHERE name = 'server_id'",
    [S_LAST_TIME] = "SELECT coalesce(max(time), 0) FROM msgs",
    [S_ACC_GET]  = "SELECT salt, hash, iterations FROM accounts WHERE account = ?1",
    [S_ACC_PUT]  = "INSERT INTO accounts(account, salt, hash, iterations, created) VALUES(?1, ?2, ?3, ?4, ?5) "
                   "ON CONFLICT(account) DO UPDATE SET salt = excluded.salt, hash = excluded.hash, "
                   "iterations = excluded.iterations",
    [S_ACC_EXISTS] = "SELECT 1 FROM accounts WHERE account = ?1",
    [S_ACC_TWIN] = "SELECT account FROM accounts INDEXED BY accounts_lower WHERE lower(account) = lower(?1) "
                   "AND account <> ?1 LIMIT 1",
    [S_DEV_TOUCH] = "INSERT INTO devices(account, device_id, first_login, last_login) VALUES(?1, ?2, ?3, ?3) "
                    "ON CONFLICT(account, device_id) DO UPDATE SET last_login = excluded.last_login",
    [S_ACC_STORED] = "SELECT stored FROM accounts WHERE account = ?1",
    [S_ACC_STORE] = "UPDATE accounts SET stored = stored + ?2 WHERE account = ?1",
    [S_DEV_KNOWN] = "SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?2",
    [S_DEV_COUNT] = "SELECT count(*) FROM devices WHERE account = ?1 AND last_login > ?2",
    [S_MSG_BY_CLIENT] = "SELECT " MSG_COLS " FROM msgs m WHERE m.from_account = ?1 AND m.id_client = ?2",
    [S_MSG_INSERT] = "INSERT INTO msgs(id_client, scene, from_account, from_device, to_target, time, type, text, content) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_INBOX_INSERT] = "INSERT INTO inbox(account, msg_id, session_id, delivered) VALUES(?1, ?2, ?3, ?4) "
                       "ON CONFLICT DO NOTHING",
    [S_MSG_HEAD] = "SELECT scene, from_account, to_target, time FROM msgs WHERE id = ?1",
    /* times never decrease with ids: the newest message is the latest time */
    [S_SESSION_LAST_TIME] = "SELECT m.time FROM inbox i INDEXED BY inbox_session JOIN msgs m ON m.id = i.msg_id "
                            "WHERE i.account = ?1 AND i.session_id = ?2 ORDER BY i.msg_id DESC LIMIT 1",
    /* The login sync's pages (db_sync.c): keyset on the message id, each
     * from its index (named: without statistics the planner would take the
     * primary key and scan the account's history), never a scan. */
    [S_SYNC_UNDELIVERED] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_offline "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "LEFT JOIN deleted_sessions d ON d.account = i.account AND d.session_id = i.session_id "
                  "WHERE i.account = ?1 AND i.delivered = 0 AND i.msg_id > ?2 AND i.msg_id <= ?3 "
                  "AND i.msg_id > coalesce(d.mark, 0) ORDER BY i.msg_id LIMIT ?4",
    [S_SYNC_AFTER] = "SELECT " MSG_COLS ", i.delivered FROM inbox i JOIN msgs m ON m.id = i.msg_id "
                  "LEFT JOIN deleted_sessions d ON d.account = i.account AND d.session_id = i.session_id "
                  "WHERE i.account = ?1 AND i.msg_id > ?2 AND i.msg_id > coalesce(d.mark, 0) "
                  "ORDER BY i.msg_id LIMIT ?3",
    [S_SYNC_NEXT_SESSION] = "SELECT session_id FROM inbox WHERE account = ?1 AND session_id > ?2 "
                  "ORDER BY session_id LIMIT 1",
    [S_SYNC_SESSION_DESC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.delivered = 1 AND i.msg_id < ?3 "
                  "AND i.msg_id > ?5 ORDER BY i.msg_id DESC LIMIT ?4",
    /* a session's deletion mark, read first: as a bound of the range it
     * keeps a page's index scan short (as a filter it would not) */
    [S_DEL_MARK] = "SELECT mark FROM deleted_sessions WHERE account = ?1 AND session_id = ?2",
    /* History: times to id bounds through msgs_time, then the session's
     * rows between them through inbox_session (db_sync.c). */
    [S_ID_FROM_TIME] = "SELECT id FROM msgs INDEXED BY msgs_time WHERE time >= ?1 ORDER BY time, id LIMIT 1",
    [S_ID_UNTIL_TIME] = "SELECT id FROM msgs INDEXED BY msgs_time WHERE time <= ?1 "
                  "ORDER BY time DESC, id DESC LIMIT 1",
    [S_HISTORY_DESC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.msg_id > ?3 AND i.msg_id < ?4 "
                  "AND m.time >= ?5 AND m.time <= ?6 ORDER BY i.msg_id DESC LIMIT ?7",
    [S_HISTORY_ASC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.msg_id > ?3 AND i.msg_id < ?4 "
                  "AND m.time >= ?5 AND m.time <= ?6 ORDER BY i.msg_id LIMIT ?7",
    [S_MARK_ONE]  = "UPDATE inbox SET delivered = 1 WHERE account = ?1 AND msg_id = ?2 AND delivered = 0",
    [S_MARK_UPTO] = "UPDATE inbox SET delivered = 1 WHERE account = ?1 AND msg_id <= ?2 AND delivered = 0",
    [S_PTR_GET] = "SELECT ack FROM read_pointers WHERE account = ?1 AND session_id = ?2",
    [S_PTR_SET] = "INSERT INTO read_pointers(account, session_id, ack, ver) VALUES(?1, ?2, ?3, ?4) "
                  "ON CONFLICT(account, session_id) DO UPDATE SET ack = excluded.ack, ver = excluded.ver",
    [S_PTR_SINCE] = "SELECT session_id, ack, ver FROM read_pointers WHERE account = ?1 AND ver > ?2 "
                    "ORDER BY ver LIMIT ?3",
    [S_PTR_COUNT] = "SELECT count(*) FROM read_pointers WHERE account = ?1",
    [S_DEL_SESSION] = "INSERT INTO deleted_sessions(account, session_id, mark, time) VALUES(?1, ?2, ?3, ?4) "
                      "ON CONFLICT(account, session_id) DO UPDATE SET mark = max(mark, excluded.mark), "
                      "time = excluded.time",
    [S_RCPT_GET] = "SELECT time FROM receipts WHERE peer = ?2 AND reader = ?1",
    [S_RCPT_SET] = "INSERT INTO receipts(reader, peer, time, msg_id, ver) VALUES(?1, ?2, ?3, ?4, ?5) "
                   "ON CONFLICT(peer, reader) DO UPDATE SET time = excluded.time, msg_id = excluded.msg_id, "
                   "ver = excluded.ver",
    [S_RCPT_SINCE] = "SELECT reader, time, msg_id, ver FROM receipts WHERE peer = ?1 AND ver > ?2 "
                     "ORDER BY ver LIMIT ?3",
    [S_RCPT_COUNT] = "SELECT count(*) FROM receipts WHERE reader = ?1",
    [S_STICK_COUNT] = "SELECT count(*) FROM stick_top WHERE account = ?1",
    [S_STICK_GET] = "SELECT session_id, top_custom, create_time, update_time FROM stick_top "
                    "WHERE account = ?1 AND session_id = ?2",
    [S_STICK_PUT] = "INSERT INTO stick_top(account, session_id, top_custom, create_time, update_time) "
                    "VALUES(?1, ?2, ?3, ?4, ?4) ON CONFLICT(account, session_id) DO UPDATE SET "
                    "top_custom = excluded.top_custom, update_time = excluded.update_time",
    [S_STICK_DEL] = "DELETE FROM stick_top WHERE account = ?1 AND session_id = ?2",
    [S_STICK_LIST] = "SELECT session_id, top_custom, create_time, update_time FROM stick_top "
                     "WHERE account = ?1 ORDER BY update_time DESC, session_id",
    [S_TEAM_INSERT] = "INSERT INTO teams(name, owner, created) VALUES(?1, ?2, ?3)",
    [S_TEAM_MEMBER_ADD] = "INSERT INTO team_members(team_id, account, joined) VALUES(?1, ?2, ?3) "
                          "ON CONFLICT DO NOTHING",
    [S_TEAM_GET] = "SELECT name FROM teams WHERE id = ?1",
    [S_TEAM_MEMBERS] = "SELECT account FROM team_members WHERE team_id = ?1 ORDER BY joined, account",
    [S_TEAM_OWNER] = "SELECT owner FROM teams WHERE id = ?1",
    [S_TEAM_MEMBER_DEL] = "DELETE FROM team_members WHERE team_id = ?1 AND account = ?2",
    [S_TEAM_IS_MEMBER] = "SELECT 1 FROM team_members WHERE team_id = ?1 AND account = ?2",
};

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


const char *srv_db_errmsg(srv_db *db) { return sqlite3_errmsg(db->h); }

sqlite3_stmt *db_stmt(srv_db *db, int i) {
    sqlite3_reset(db->st[i]);
    sqlite3_clear_bindings(db->st[i]);
    return db->st[i];
}

int db_failed(srv_db *db, int i) {
    int code = sqlite3_errcode(db->h);
    int storage = code == SQLITE_FULL || code == SQLITE_READONLY || code == SQLITE_IOERR;
    /* a full disk fails every write: say so once, not once per request */
    if (!storage || !db->cannot_write)
        fprintf(stderr, "nim-server: sqlite: %s: %s%s\n", sql_text[i], sqlite3_errmsg(db->h),
                storage ? " (writes fail until there is space again; reads and logins go on)" : "");
    if (storage) db->cannot_write = 1;
    return NIM_CODE_SERVER;
}

const char *srv_db_storage_error(srv_db *db) {
    return db && db->cannot_write
        ? "server storage cannot be written (full, read-only or failing): nothing was stored; try again later"
        : NULL;
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
int db_run(srv_db *db, int i) {
    sqlite3_stmt *s = db->st[i];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {}
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { return db_failed(db, i); }
    return NIM_CODE_OK;
}

/* Steps a statement expected to give at most one row: NIM_CODE_OK with the
 * row ready, NIM_CODE_NOT_FOUND, or 500. The caller resets. */
int db_one(srv_db *db, int i) {
    int rc = sqlite3_step(db->st[i]);
    if (rc == SQLITE_ROW) return NIM_CODE_OK;
    sqlite3_reset(db->st[i]);
    if (rc == SQLITE_DONE) return NIM_CODE_NOT_FOUND;
    return db_failed(db, i);
}

int db_get_int(srv_db *db, int i, const char *a, const char *b, int64_t *out) {
    sqlite3_stmt *s = db_stmt(db, i);
    db_bind_text(s, 1, a);
    if (b) db_bind_text(s, 2, b);
    int rc = db_one(db, i);
    *out = 0;
    if (rc == NIM_CODE_NOT_FOUND) return NIM_CODE_OK;
    if (rc != NIM_CODE_OK) return rc;
    *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return NIM_CODE_OK;
}

void db_bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

const char *db_col_text(sqlite3_stmt *s, int i) {
    return (const char *)sqlite3_column_text(s, i);
}

/* The file (or its file system) cannot be written: serve logins and reads
 * from it, immutable (no -wal or -shm is needed or made), and refuse every
 * write as storage trouble. Committed data still in a -wal file would be
 * invisible that way: then refuse to start instead. 0 or -1 (err set). */
static int open_read_only(srv_db *db, const char *path, char *err, size_t errlen) {
    char wal[4096];
    struct stat st;
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (stat(wal, &st) == 0 && st.st_size > 0) {
        snprintf(err, errlen, "%s is read-only and %s holds committed data: make it writable and restart",
                 path, wal);
        return -1;
    }
    sqlite3_close(db->h);
    db->h = NULL;
    /* a URI: '%', '?' and '#' of the path escaped */
    char uri[3 * 4096 + 32];
    size_t n = (size_t)snprintf(uri, sizeof uri, "file:");
    for (const char *c = path; *c && n + 4 < sizeof uri - 16; c++)
        n += (size_t)(*c == '%' || *c == '?' || *c == '#' ? snprintf(uri + n, 4, "%%%02X", (unsigned char)*c)
                                                         : snprintf(uri + n, 2, "%c", *c));
    snprintf(uri + n, sizeof uri - n, "?immutable=1");
    if (sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s read-only: %s", path, db->h ? sqlite3_errmsg(db->h) : "?");
        return -1;
    }
    db->read_only = db->cannot_write = 1;
    fprintf(stderr, "nim-server: %s is read-only: logins and reads are served, every write is refused\n", path);
    return 0;
}

srv_db *srv_db_open(const char *path, char *err, size_t errlen) {
    srv_db *db = nim_calloc(1, sizeof *db);
    if (!db) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, db->h ? sqlite3_errmsg(db->h) : "?");
        goto fail;
    }
    char *emsg = NULL;
    if (sqlite3_db_readonly(db->h, "main") == 1 && open_read_only(db, path, err, errlen) != 0) goto fail;
    sqlite3_busy_timeout(db->h, 5000);
    if (!db->read_only &&
        sqlite3_exec(db->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &emsg) != SQLITE_OK)
        goto exec_fail;
    sqlite3_stmt *v;
    int version = -1;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK) {
        if (sqlite3_step(v) == SQLITE_ROW) version = sqlite3_column_int(v, 0);
        sqlite3_finalize(v);
    }
    if (version < 0 || version > SRV_DB_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %d, this server knows %d", path, version,
                 SRV_DB_SCHEMA_VERSION);
        goto fail;
    }
    if (version < SRV_DB_SCHEMA_VERSION && db->read_only) {
        snprintf(err, errlen, "%s: read-only, and its schema (version %d) needs migrating to %d: "
                 "make it writable once", path, version, SRV_DB_SCHEMA_VERSION);
        goto fail;
    }
    if (version < SRV_DB_SCHEMA_VERSION) {
        /* All the steps in one transaction: a crash leaves the old version. */
        if (sqlite3_exec(db->h, "BEGIN IMMEDIATE", NULL, NULL, &emsg) != SQLITE_OK) goto exec_fail;
        for (int v = version; v < SRV_DB_SCHEMA_VERSION; v++) {
            if (sqlite3_exec(db->h, migrations[v], NULL, NULL, &emsg) != SQLITE_OK) {
                sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
                goto exec_fail;
            }
        }
        if (sqlite3_exec(db->h, "COMMIT", NULL, NULL, &emsg) != SQLITE_OK) goto exec_fail;
    }
    for (int i = 0; i < S__COUNT; i++) {
        if (sqlite3_prepare_v3(db->h, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare failed: %s: %s", sqlite3_errmsg(db->h), sql_text[i]);
            goto fail;
        }
    }
    return db;
exec_fail:
    snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(db->h));
    sqlite3_free(emsg);
fail:
    srv_db_close(db);
    return NULL;
}

void srv_db_close(srv_db *db) {
    if (!db) return;
    for (int i = 0; i < S__COUNT; i++) sqlite3_finalize(db->st[i]);
    sqlite3_close(db->h);
    nim_free(db);
}

int srv_db_begin(srv_db *db) {
    db->changes_at_begin = sqlite3_total_changes64(db->h);
    db_stmt(db, S_BEGIN);
    return db_run(db, S_BEGIN);
}
int srv_db_begin_read(srv_db *db) { db_stmt(db, S_BEGIN_READ); return db_run(db, S_BEGIN_READ); }
int srv_db_commit(srv_db *db) {
    db_stmt(db, S_COMMIT);
    int rc = db_run(db, S_COMMIT);
    /* only a commit that wrote something proves the storage writable again */
    if (rc == NIM_CODE_OK && db->cannot_write && !db->read_only &&
        sqlite3_total_changes64(db->h) > db->changes_at_begin) {
        db->cannot_write = 0;
        fprintf(stderr, "nim-server: storage writable again\n");
    }
    return rc;
}
void srv_db_rollback(srv_db *db) {
    if (!sqlite3_get_autocommit(db->h)) { db_stmt(db, S_ROLLBACK); db_run(db, S_ROLLBACK); }
}
int srv_db_in_txn(srv_db *db) { return !sqlite3_get_autocommit(db->h); }
int srv_db_savepoint(srv_db *db) { db_stmt(db, S_SAVEPOINT); return db_run(db, S_SAVEPOINT); }
int srv_db_release(srv_db *db) { db_stmt(db, S_RELEASE); return db_run(db, S_RELEASE); }
void srv_db_rollback_to(srv_db *db) {
    /* ROLLBACK TO keeps the savepoint open: release it too. */
    if (!sqlite3_get_autocommit(db->h)) {
        db_stmt(db, S_ROLLBACK_TO);
        if (db_run(db, S_ROLLBACK_TO) == NIM_CODE_OK) srv_db_release(db);
    }
}

int srv_db_next_ver(srv_db *db, int64_t *ver) {
    sqlite3_stmt *s = db_stmt(db, S_NEXT_VER);
    int rc = db_one(db, S_NEXT_VER);
    if (rc != NIM_CODE_OK) return NIM_CODE_SERVER;
    *ver = sqlite3_column_int64(s, 0);
    return db_run(db, S_NEXT_VER); /* finish the RETURNING statement */
}

int srv_db_cursors(srv_db *db, int64_t *max_msg, int64_t *max_ver) {
    sqlite3_stmt *s = db_stmt(db, S_MAX_MSG);
    if (db_one(db, S_MAX_MSG) != NIM_CODE_OK) return NIM_CODE_SERVER;
    *max_msg = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    s = db_stmt(db, S_MAX_VER);
    if (db_one(db, S_MAX_VER) != NIM_CODE_OK) return NIM_CODE_SERVER;
    *max_ver = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return NIM_CODE_OK;
}

/* The one integer statement i (no parameters) gives, or 0. */
static int64_t one_int64(srv_db *db, int i) {
    sqlite3_stmt *s = db_stmt(db, i);
    if (db_one(db, i) != NIM_CODE_OK) return 0;
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return v;
}

int64_t srv_db_server_id(srv_db *db) { return one_int64(db, S_SERVER_ID); }

int64_t srv_db_last_msg_time(srv_db *db) { return one_int64(db, S_LAST_TIME); }

int srv_db_put_cred(srv_db *db, const char *account, const srv_cred *cred, int *created) {
    sqlite3_stmt *s = db_stmt(db, S_ACC_EXISTS);
    db_bind_text(s, 1, account);
    int rc = db_one(db, S_ACC_EXISTS);
    sqlite3_reset(s);
    if (rc == NIM_CODE_SERVER) return rc;
    if (rc == NIM_CODE_NOT_FOUND) {     /* a new name: not a case twin of another */
        s = db_stmt(db, S_ACC_TWIN);
        db_bind_text(s, 1, account);
        int twin = db_one(db, S_ACC_TWIN);
        sqlite3_reset(s);
        if (twin != NIM_CODE_NOT_FOUND) return twin == NIM_CODE_OK ? NIM_CODE_FORBIDDEN : twin;
    }
    if (created) *created = rc == NIM_CODE_NOT_FOUND;
    s = db_stmt(db, S_ACC_PUT);
    db_bind_text(s, 1, account);
    sqlite3_bind_blob(s, 2, cred->salt, SRV_SALT_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 3, cred->hash, SRV_HASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 4, cred->iterations);
    sqlite3_bind_int64(s, 5, (int64_t)time(NULL) * 1000);
    return db_run(db, S_ACC_PUT);
}

int srv_db_get_cred(srv_db *db, const char *account, srv_cred *out) {
    sqlite3_stmt *s = db_stmt(db, S_ACC_GET);
    db_bind_text(s, 1, account);
    int rc = db_one(db, S_ACC_GET);
    if (rc != NIM_CODE_OK) return rc;
    const void *sb = sqlite3_column_blob(s, 0), *hb = sqlite3_column_blob(s, 1);
    int it = sqlite3_column_int(s, 2);
    if (sb && hb && sqlite3_column_bytes(s, 0) == SRV_SALT_LEN && sqlite3_column_bytes(s, 1) == SRV_HASH_LEN &&
        it > 0 && it <= 100000000) {
        memcpy(out->salt, sb, SRV_SALT_LEN);
        memcpy(out->hash, hb, SRV_HASH_LEN);
        out->iterations = it;
    } else {
        rc = NIM_CODE_AUTH;
    }
    sqlite3_reset(s);
    return rc;
}

int srv_db_account_exists(srv_db *db, const char *account) {
    sqlite3_stmt *s = db_stmt(db, S_ACC_EXISTS);
    db_bind_text(s, 1, account);
    int rc = db_one(db, S_ACC_EXISTS);
    sqlite3_reset(s);
    return rc;
}

int srv_db_devices(srv_db *db, const char *account, const char *device, int64_t since,
                   int *known, int64_t *recent) {
    sqlite3_stmt *s = db_stmt(db, S_DEV_KNOWN);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, device);
    int rc = db_one(db, S_DEV_KNOWN);
    sqlite3_reset(s);
    if (rc == NIM_CODE_SERVER) return rc;
    *known = rc == NIM_CODE_OK;
    s = db_stmt(db, S_DEV_COUNT);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, since);
    rc = db_one(db, S_DEV_COUNT);
    if (rc == NIM_CODE_OK) *recent = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == NIM_CODE_OK ? rc : NIM_CODE_SERVER;
}

int srv_db_touch_device(srv_db *db, const char *account, const char *device, int64_t now) {
    sqlite3_stmt *s = db_stmt(db, S_DEV_TOUCH);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, device);
    sqlite3_bind_int64(s, 3, now);
    return db_run(db, S_DEV_TOUCH);
}

cJSON *db_row_msg(sqlite3_stmt *s) {
    nim_proto_msg m = {
        .id_server = sqlite3_column_int64(s, 0),
        .id_client = db_col_text(s, 1),
        .scene = nim_proto_scene_from_name(db_col_text(s, 2)),
        .from = db_col_text(s, 3),
        .from_device = db_col_text(s, 4),
        .to = db_col_text(s, 5),
        .time = sqlite3_column_int64(s, 6),
        .type = db_col_text(s, 7),
        .text = db_col_text(s, 8),
        .content = db_col_text(s, 9),
    };
    if (!m.from || !m.to || !m.type) return NULL;
    return nim_proto_msg_to_json(&m);
}

int srv_db_find_client_msg(srv_db *db, const char *from, const char *id_client, cJSON **out) {
    sqlite3_stmt *s = db_stmt(db, S_MSG_BY_CLIENT);
    db_bind_text(s, 1, from);
    db_bind_text(s, 2, id_client);
    int rc = db_one(db, S_MSG_BY_CLIENT);
    if (rc != NIM_CODE_OK) return rc;
    *out = db_row_msg(s);
    sqlite3_reset(s);
    return *out ? NIM_CODE_OK : NIM_CODE_SERVER;
}

int srv_db_insert_msg(srv_db *db, nim_proto_msg *m) {
    sqlite3_stmt *s = db_stmt(db, S_MSG_INSERT);
    db_bind_text(s, 1, m->id_client ? m->id_client : "");
    db_bind_text(s, 2, nim_proto_scene_name(m->scene));
    db_bind_text(s, 3, m->from);
    db_bind_text(s, 4, m->from_device ? m->from_device : "");
    db_bind_text(s, 5, m->to);
    sqlite3_bind_int64(s, 6, m->time);
    db_bind_text(s, 7, m->type);
    db_bind_text(s, 8, m->text);
    db_bind_text(s, 9, m->content);
    int rc = db_run(db, S_MSG_INSERT);
    if (rc == NIM_CODE_OK) m->id_server = sqlite3_last_insert_rowid(db->h);
    if (rc == NIM_CODE_OK) {   /* its sender's storage, in the same transaction */
        s = db_stmt(db, S_ACC_STORE);
        db_bind_text(s, 1, m->from);
        sqlite3_bind_int64(s, 2, srv_msg_bytes(m));
        rc = db_run(db, S_ACC_STORE);
    }
    return rc;
}

int64_t srv_msg_bytes(const nim_proto_msg *m) {
    return (int64_t)(m->text ? strlen(m->text) : 0) + (int64_t)(m->content ? strlen(m->content) : 0) +
           SRV_MSG_OVERHEAD;
}

int srv_db_stored_bytes(srv_db *db, const char *account, int64_t *bytes) {
    return db_get_int(db, S_ACC_STORED, account, NULL, bytes);
}

int srv_db_insert_inbox(srv_db *db, const char *account, int64_t msg_id,
                        const char *session_id, int delivered) {
    sqlite3_stmt *s = db_stmt(db, S_INBOX_INSERT);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, msg_id);
    db_bind_text(s, 3, session_id);
    sqlite3_bind_int(s, 4, delivered ? 1 : 0);
    return db_run(db, S_INBOX_INSERT);
}

int srv_db_session_last_time(srv_db *db, const char *account, const char *session_id, int64_t *time) {
    sqlite3_stmt *s = db_stmt(db, S_SESSION_LAST_TIME);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    *time = 0;
    int rc = db_one(db, S_SESSION_LAST_TIME);
    if (rc == NIM_CODE_OK) *time = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == NIM_CODE_NOT_FOUND ? NIM_CODE_OK : rc;
}

int srv_db_msg_head(srv_db *db, int64_t id, srv_msg_head *h) {
    sqlite3_stmt *s = db_stmt(db, S_MSG_HEAD);
    sqlite3_bind_int64(s, 1, id);
    int rc = db_one(db, S_MSG_HEAD);
    if (rc != NIM_CODE_OK) return rc;
    h->scene = nim_proto_scene_from_name(db_col_text(s, 0));
    snprintf(h->from, sizeof h->from, "%s", db_col_text(s, 1) ? db_col_text(s, 1) : "");
    snprintf(h->to, sizeof h->to, "%s", db_col_text(s, 2) ? db_col_text(s, 2) : "");
    h->time = sqlite3_column_int64(s, 3);
    sqlite3_reset(s);
    return NIM_CODE_OK;
}

int srv_db_mark_received(srv_db *db, const char *account, int64_t msg_id, int64_t *n) {
    sqlite3_stmt *s = db_stmt(db, S_MARK_ONE);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, msg_id);
    int rc = db_run(db, S_MARK_ONE);
    if (rc == NIM_CODE_OK) *n += sqlite3_changes(db->h);
    return rc;
}

int srv_db_mark_received_upto(srv_db *db, const char *account, int64_t upto, int64_t *n) {
    sqlite3_stmt *s = db_stmt(db, S_MARK_UPTO);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, upto);
    int rc = db_run(db, S_MARK_UPTO);
    if (rc == NIM_CODE_OK) *n += sqlite3_changes(db->h);
    return rc;
}
