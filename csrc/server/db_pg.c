/* The PostgreSQL backend of nim-server's storage (db_private.h), through
 * libpq, for `--db postgresql://...` (any libpq URI or key=value string).
 * Every statement is prepared once per connection from db.c's portable text
 * ($N for ?N, SQLite's index hints dropped) or from the few written here
 * for PostgreSQL. Calls are synchronous on the request thread, never on the
 * lws loop (reqthread.c).
 *
 * Writers on every node are serialized as SQLite's BEGIN IMMEDIATE
 * serializes them: a write transaction takes one transaction-scoped
 * advisory lock right after BEGIN, so ids, ver and times are handed out
 * and committed in one order, and a check-then-write (registration, a
 * duplicate idClient, pointers) sees every write committed before it.
 * A read snapshot is REPEATABLE READ. A connection lost between
 * transactions is made again (statements prepared again) at the next
 * statement outside a transaction (never inside one: what it had written
 * is gone, so the transaction fails whole). */
#include "server/db_private.h"
#include "core/alloc.h"
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_MAX_PARAMS 10
#define PG_MAX_BLOBS  2
/* The advisory lock of every write transaction ("nim" in ASCII). */
#define PG_WRITE_LOCK "SELECT pg_advisory_xact_lock(7235949)"
/* The session lock a node holds while it creates the schema. */
#define PG_SCHEMA_LOCK 7235950

typedef struct {
    const char *val[PG_MAX_PARAMS];
    int         len[PG_MAX_PARAMS], fmt[PG_MAX_PARAMS];
    char        num[PG_MAX_PARAMS][24];
    unsigned char *blob[PG_MAX_PARAMS];      /* copies of bound blobs */
    int         nparams;
    PGresult   *res;                          /* NULL until the first step */
    int         row;                          /* the row the next step gives */
    unsigned char *dec[PG_MAX_BLOBS];         /* decoded bytea columns */
} pg_stmt;

typedef struct {
    PGconn  *c;
    pg_stmt  st[S__COUNT];
    int64_t  changes, total;
    int      txn;    /* BEGIN succeeded, COMMIT or ROLLBACK not yet run */
    char     state[6];                        /* SQLSTATE of the last failure */
    char     err[512];
} pg;

#define P(db) ((pg *)(db)->impl)

/* Statements whose PostgreSQL text is not the portable one. */
static const char *const pg_text[S__COUNT] = {
    [S_BEGIN]      = "BEGIN ISOLATION LEVEL READ COMMITTED",
    [S_BEGIN_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    [S_DEL_SESSION] = "INSERT INTO deleted_sessions(account, session_id, mark, time) VALUES($1, $2, $3, $4) "
                      "ON CONFLICT(account, session_id) DO UPDATE SET "
                      "mark = GREATEST(deleted_sessions.mark, excluded.mark), time = excluded.time",
};

/* The schema, in one transaction; text compares bytewise (COLLATE "C"),
 * as SQLite's does, so keyset pages and name order are the same. */
static const char schema[] =
    "CREATE TABLE accounts(account TEXT COLLATE \"C\" PRIMARY KEY, salt BYTEA NOT NULL, hash BYTEA NOT NULL,"
    "  iterations BIGINT NOT NULL, created BIGINT NOT NULL, stored BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX accounts_lower ON accounts(lower(account));"
    "CREATE TABLE devices(account TEXT COLLATE \"C\" NOT NULL, device_id TEXT COLLATE \"C\" NOT NULL,"
    "  first_login BIGINT NOT NULL, last_login BIGINT NOT NULL, PRIMARY KEY(account, device_id));"
    "CREATE TABLE teams(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL,"
    "  owner TEXT COLLATE \"C\" NOT NULL, created BIGINT NOT NULL);"
    "CREATE TABLE team_members(team_id BIGINT NOT NULL, account TEXT COLLATE \"C\" NOT NULL,"
    "  joined BIGINT NOT NULL, PRIMARY KEY(team_id, account));"
    "CREATE TABLE msgs(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id_client TEXT COLLATE \"C\" NOT NULL,"
    "  scene TEXT NOT NULL, from_account TEXT COLLATE \"C\" NOT NULL, from_device TEXT NOT NULL,"
    "  to_target TEXT COLLATE \"C\" NOT NULL, time BIGINT NOT NULL, type TEXT NOT NULL, text TEXT, content TEXT);"
    "CREATE UNIQUE INDEX msgs_client ON msgs(from_account, id_client);"
    "CREATE INDEX msgs_time ON msgs(time);"
    "CREATE TABLE inbox(account TEXT COLLATE \"C\" NOT NULL, msg_id BIGINT NOT NULL,"
    "  session_id TEXT COLLATE \"C\" NOT NULL, delivered INTEGER NOT NULL, PRIMARY KEY(account, msg_id));"
    "CREATE INDEX inbox_offline ON inbox(account, delivered, msg_id);"
    "CREATE INDEX inbox_session ON inbox(account, session_id, msg_id);"
    "CREATE TABLE read_pointers(account TEXT COLLATE \"C\" NOT NULL, session_id TEXT COLLATE \"C\" NOT NULL,"
    "  ack BIGINT NOT NULL, ver BIGINT NOT NULL, PRIMARY KEY(account, session_id));"
    "CREATE INDEX read_pointers_ver ON read_pointers(account, ver);"
    "CREATE TABLE deleted_sessions(account TEXT COLLATE \"C\" NOT NULL, session_id TEXT COLLATE \"C\" NOT NULL,"
    "  mark BIGINT NOT NULL, time BIGINT NOT NULL, PRIMARY KEY(account, session_id));"
    "CREATE TABLE receipts(reader TEXT COLLATE \"C\" NOT NULL, peer TEXT COLLATE \"C\" NOT NULL,"
    "  time BIGINT NOT NULL, msg_id BIGINT NOT NULL, ver BIGINT NOT NULL, PRIMARY KEY(peer, reader));"
    "CREATE INDEX receipts_ver ON receipts(peer, ver);"
    "CREATE INDEX receipts_reader ON receipts(reader);"
    "CREATE TABLE stick_top(account TEXT COLLATE \"C\" NOT NULL, session_id TEXT COLLATE \"C\" NOT NULL,"
    "  top_custom TEXT NOT NULL, create_time BIGINT NOT NULL, update_time BIGINT NOT NULL,"
    "  PRIMARY KEY(account, session_id));"
    "CREATE TABLE counters(name TEXT COLLATE \"C\" PRIMARY KEY, value BIGINT NOT NULL);"
    "INSERT INTO counters VALUES('ver', 0), ('schema', " SRV_DB_SCHEMA_VERSION_TEXT "),"
    "  ('server_id', floor(random() * 9007199254740990)::bigint + 1);";

/* The portable text of a statement for PostgreSQL: ?N as $N, every
 * "INDEXED BY name " dropped. NULL when out of memory. */
static char *translate(const char *sql) {
    size_t n = strlen(sql);
    char *out = nim_malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *s = sql; *s;) {
        if (!strncmp(s, "INDEXED BY ", 11)) {
            s += 11;
            while (*s && *s != ' ') s++;
            if (*s == ' ') s++;
        } else if (*s == '?') {
            *o++ = '$';
            s++;
        } else {
            *o++ = *s++;
        }
    }
    *o = 0;
    return out;
}

static void set_error(pg *q, const PGresult *r) {
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(q->state, sizeof q->state, "%s", st ? st : (PQstatus(q->c) == CONNECTION_BAD ? "08006" : "XX000"));
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    snprintf(q->err, sizeof q->err, "%s", m && *m ? m : PQerrorMessage(q->c));
    size_t len = strlen(q->err);
    while (len && (q->err[len - 1] == '\n' || q->err[len - 1] == ' ')) q->err[--len] = 0;
}

/* Runs sql (no parameters, no rows wanted): 0, or -1 with the error kept. */
static int exec_plain(pg *q, const char *sql) {
    PGresult *r = PQexec(q->c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) set_error(q, r);
    PQclear(r);
    return ok ? 0 : -1;
}

static int prepare_all(pg *q, char *err, size_t errlen) {
    for (int i = 0; i < S__COUNT; i++) {
        char name[16], *sql = pg_text[i] ? NULL : translate(db_sql[i]);
        const char *text = pg_text[i] ? pg_text[i] : sql;
        if (!text) { snprintf(err, errlen, "out of memory"); return -1; }
        int np = 0;
        for (const char *s = text; (s = strchr(s, '$')); s++) {
            int k = atoi(s + 1);
            if (k > np) np = k;
        }
        snprintf(name, sizeof name, "s%d", i);
        PGresult *r = PQprepare(q->c, name, text, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            set_error(q, r);
            snprintf(err, errlen, "prepare failed: %s: %s", q->err, text);
        }
        PQclear(r);
        nim_free(sql);
        if (!ok) return -1;
        q->st[i].nparams = np;
    }
    return 0;
}

static void st_clear(pg_stmt *s) {
    PQclear(s->res);
    s->res = NULL;
    s->row = 0;
    for (int k = 0; k < PG_MAX_PARAMS; k++) {
        nim_free(s->blob[k]);
        s->blob[k] = NULL;
        s->val[k] = NULL;
        s->len[k] = s->fmt[k] = 0;
    }
    for (int k = 0; k < PG_MAX_BLOBS; k++) { PQfreemem(s->dec[k]); s->dec[k] = NULL; }
}

static void pq_reset(srv_db *db, int i) { st_clear(&P(db)->st[i]); }

static void pq_bind_int(srv_db *db, int i, int pos, int64_t v) {
    pg_stmt *s = &P(db)->st[i];
    if (pos < 1 || pos > PG_MAX_PARAMS) return;
    snprintf(s->num[pos - 1], sizeof s->num[0], "%lld", (long long)v);
    s->val[pos - 1] = s->num[pos - 1];
}
static void pq_bind_text(srv_db *db, int i, int pos, const char *v) {
    if (pos >= 1 && pos <= PG_MAX_PARAMS) P(db)->st[i].val[pos - 1] = v;
}
static void pq_bind_blob(srv_db *db, int i, int pos, const void *p, int n) {
    pg_stmt *s = &P(db)->st[i];
    if (pos < 1 || pos > PG_MAX_PARAMS || n < 0) return;
    nim_free(s->blob[pos - 1]);
    s->blob[pos - 1] = nim_malloc(n ? (size_t)n : 1);
    if (!s->blob[pos - 1]) { s->val[pos - 1] = NULL; return; }   /* binds NULL: the write fails */
    memcpy(s->blob[pos - 1], p, (size_t)n);
    s->val[pos - 1] = (const char *)s->blob[pos - 1];
    s->len[pos - 1] = n;
    s->fmt[pos - 1] = 1;
}

/* Every connection's settings: notices (e.g. "relation exists") stay out
 * of the server's log; a node stopped (SIGSTOP, a VM paused) inside a
 * write transaction would hold every node's write lock: PostgreSQL ends
 * its session after 10 s idle in it (the transaction fails whole, nothing
 * of it acknowledged); a writer waits at most 10 s for the lock, then its
 * request fails (500) instead of hanging. */
static int session_settings(pg *q) {
    return exec_plain(q, "SET client_min_messages = warning") == 0 &&
           exec_plain(q, "SET idle_in_transaction_session_timeout = '10s'") == 0 &&
           exec_plain(q, "SET lock_timeout = '10s'") == 0 ? 0 : -1;
}

/* A connection lost between transactions is made again, with its
 * statements; 0 when it is usable. */
static int ensure_connected(pg *q) {
    if (PQstatus(q->c) == CONNECTION_OK) return 0;
    PQreset(q->c);
    char err[600];
    if (PQstatus(q->c) != CONNECTION_OK || session_settings(q) != 0 || prepare_all(q, err, sizeof err) != 0) {
        set_error(q, NULL);
        return -1;
    }
    fprintf(stderr, "nim-server: postgresql: connected again\n");
    return 0;
}

static int pq_step(srv_db *db, int i) {
    pg *q = P(db);
    pg_stmt *s = &q->st[i];
    if (!s->res) {
        /* never inside a transaction: its statements would commit alone */
        if (!q->txn && ensure_connected(q) != 0) return DB_FAIL;
        if (i == S_COMMIT || i == S_ROLLBACK) q->txn = 0;
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        PGresult *r = PQexecPrepared(q->c, name, s->nparams, s->val, s->len, s->fmt, 0);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            set_error(q, r);
            PQclear(r);
            return DB_FAIL;
        }
        /* COMMIT of a transaction a failed statement aborted ends it with
         * a ROLLBACK and says only that: nothing of it was stored */
        if (i == S_COMMIT && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
            snprintf(q->state, sizeof q->state, "25P02");
            snprintf(q->err, sizeof q->err, "the transaction was aborted by an earlier failure: rolled back");
            PQclear(r);
            return DB_FAIL;
        }
        const char *n = PQcmdTuples(r);
        /* rows written (an INSERT ... RETURNING counts too); a SELECT's are read */
        q->changes = n && *n && strncmp(PQcmdStatus(r), "SELECT", 6) != 0 ? strtoll(n, NULL, 10) : 0;
        q->total += q->changes;
        s->res = r;
        s->row = 0;
        if (i == S_BEGIN && exec_plain(q, PG_WRITE_LOCK) != 0) {
            exec_plain(q, "ROLLBACK");
            return DB_FAIL;
        }
        if (i == S_BEGIN || i == S_BEGIN_READ) q->txn = 1;
    } else {
        s->row++;
    }
    return s->row < PQntuples(s->res) ? DB_ROW : DB_DONE;
}

static int64_t pq_col_int(srv_db *db, int i, int col) {
    pg_stmt *s = &P(db)->st[i];
    if (!s->res || s->row >= PQntuples(s->res) || PQgetisnull(s->res, s->row, col)) return 0;
    return strtoll(PQgetvalue(s->res, s->row, col), NULL, 10);
}
static const char *pq_col_text(srv_db *db, int i, int col) {
    pg_stmt *s = &P(db)->st[i];
    if (!s->res || s->row >= PQntuples(s->res) || PQgetisnull(s->res, s->row, col)) return NULL;
    return PQgetvalue(s->res, s->row, col);
}
static const void *pq_col_blob(srv_db *db, int i, int col, int *n) {
    pg_stmt *s = &P(db)->st[i];
    const char *t = pq_col_text(db, i, col);
    *n = 0;
    if (!t || col >= PG_MAX_BLOBS) return NULL;
    size_t len = 0;
    PQfreemem(s->dec[col]);
    s->dec[col] = PQunescapeBytea((const unsigned char *)t, &len);
    if (!s->dec[col]) return NULL;
    *n = (int)len;
    return s->dec[col];
}
static int64_t pq_changes(srv_db *db) { return P(db)->changes; }
static int64_t pq_total_changes(srv_db *db) { return P(db)->total; }
static int pq_in_txn(srv_db *db) {
    PGTransactionStatusType t = PQtransactionStatus(P(db)->c);
    return P(db)->txn || t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}
/* 53: insufficient resources (disk full, out of memory); 25006: a
 * read-only transaction (a standby); 08: the connection failed. */
static int pq_storage_failure(srv_db *db) {
    const char *s = P(db)->state;
    return !strncmp(s, "53", 2) || !strcmp(s, "25006") || !strncmp(s, "08", 2);
}
static const char *pq_errmsg(srv_db *db) { return P(db)->err; }
static void pq_close(srv_db *db) {
    pg *q = P(db);
    if (!q) return;
    for (int i = 0; i < S__COUNT; i++) st_clear(&q->st[i]);
    PQfinish(q->c);
    nim_free(q);
    db->impl = NULL;
}

static const srv_db_backend pg_backend = {
    .name = "postgresql", .shared = 1,
    .reset = pq_reset, .bind_int = pq_bind_int, .bind_text = pq_bind_text, .bind_blob = pq_bind_blob,
    .step = pq_step, .col_int = pq_col_int, .col_text = pq_col_text, .col_blob = pq_col_blob,
    .changes = pq_changes, .total_changes = pq_total_changes, .in_txn = pq_in_txn,
    .storage_failure = pq_storage_failure, .errmsg = pq_errmsg, .close = pq_close,
};

/* The schema: made by the first node (under a session lock, so two nodes
 * starting together do not both make it), checked by every other. */
static int ensure_schema(pg *q, char *err, size_t errlen) {
    char lock[96], unlock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%d)", PG_SCHEMA_LOCK);
    snprintf(unlock, sizeof unlock, "SELECT pg_advisory_unlock(%d)", PG_SCHEMA_LOCK);
    if (exec_plain(q, lock) != 0) { snprintf(err, errlen, "%s", q->err); return -1; }
    int rc = -1;
    PGresult *r = PQexec(q->c, "SELECT to_regclass('counters') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_error(q, r);
        snprintf(err, errlen, "%s", q->err);
    } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        if (exec_plain(q, "BEGIN") == 0 && exec_plain(q, schema) == 0 && exec_plain(q, "COMMIT") == 0) rc = 0;
        else { snprintf(err, errlen, "creating the schema: %s", q->err); exec_plain(q, "ROLLBACK"); }
    } else {
        PQclear(r);
        r = PQexec(q->c, "SELECT value FROM counters WHERE name = 'schema'");
        int version = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
        if (version != SRV_DB_SCHEMA_VERSION)
            snprintf(err, errlen, "schema version %d, this server knows %d", version, SRV_DB_SCHEMA_VERSION);
        else rc = 0;
    }
    PQclear(r);
    exec_plain(q, unlock);
    return rc;
}

int db_pg_open(srv_db *db, const char *conninfo, char *err, size_t errlen) {
    pg *q = nim_calloc(1, sizeof *q);
    if (!q) { snprintf(err, errlen, "out of memory"); return -1; }
    db->be = &pg_backend;
    db->impl = q;
    q->c = PQconnectdb(conninfo);
    if (!q->c || PQstatus(q->c) != CONNECTION_OK) {
        const char *m = q->c ? PQerrorMessage(q->c) : "out of memory";
        snprintf(err, errlen, "cannot connect to PostgreSQL: %.*s", (int)strcspn(m, "\n"), m);
        return -1;
    }
    if (session_settings(q) != 0) { snprintf(err, errlen, "%s", q->err); return -1; }
    if (ensure_schema(q, err, errlen) != 0) return -1;
    return prepare_all(q, err, errlen);
}
