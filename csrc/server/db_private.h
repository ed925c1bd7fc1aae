/* What the storage files share: the statements (one per S_*, prepared at
 * open from db.c's portable text), the backend interface (db_sqlite.c,
 * db_pg.c), and the helpers that run statements through it. The logic (db.c, db_state.c,
 * db_sync.c) calls only these helpers, never a backend's library. Never
 * included outside csrc/server. */
#ifndef NIM_SERVER_DB_PRIVATE_H
#define NIM_SERVER_DB_PRIVATE_H
#include "server/db.h"

enum {
    S_BEGIN, S_BEGIN_READ, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
    S_NEXT_VER, S_MAX_MSG, S_MAX_VER, S_SERVER_ID, S_LAST_TIME,
    S_ACC_GET, S_ACC_PUT, S_ACC_EXISTS, S_ACC_TWIN, S_ACC_STORED, S_ACC_STORE, S_DEV_TOUCH, S_DEV_KNOWN, S_DEV_COUNT,
    S_MSG_BY_CLIENT, S_MSG_INSERT, S_INBOX_INSERT, S_MSG_HEAD, S_SESSION_LAST_TIME,
    S_SYNC_UNDELIVERED, S_SYNC_AFTER, S_SYNC_NEXT_SESSION, S_SYNC_SESSION_DESC,
    S_ID_FROM_TIME, S_ID_UNTIL_TIME, S_HISTORY_DESC, S_HISTORY_ASC, S_DEL_MARK,
    S_MARK_ONE, S_MARK_UPTO,
    S_PTR_GET, S_PTR_SET, S_PTR_SINCE, S_PTR_COUNT, S_DEL_SESSION,
    S_RCPT_GET, S_RCPT_SET, S_RCPT_SINCE, S_RCPT_COUNT,
    S_STICK_GET, S_STICK_PUT, S_STICK_DEL, S_STICK_LIST, S_STICK_COUNT,
    S_TEAM_INSERT, S_TEAM_MEMBER_ADD, S_TEAM_GET, S_TEAM_MEMBERS, S_TEAM_IS_MEMBER, S_TEAM_OWNER, S_TEAM_MEMBER_DEL,
    S__COUNT
};

/* The portable text of statement i (db.c): parameters ?1..?N, SQLite's
 * index hints (INDEXED BY) that another backend may drop. */
extern const char *const db_sql[S__COUNT];

/* What db_step gives. */
enum { DB_DONE = 0, DB_ROW = 1, DB_FAIL = -1 };

/* A storage backend. Every call runs on the request thread. Text bound is
 * not copied: it must live until the statement is reset (as the helpers'
 * callers do); blobs are. Column values live until the next step or reset. */
typedef struct {
    const char *name;
    int  shared;                          /* other processes write it too */
    void (*reset)(srv_db *db, int i);                 /* and clear the bindings */
    void (*bind_int)(srv_db *db, int i, int pos, int64_t v);
    void (*bind_text)(srv_db *db, int i, int pos, const char *v);   /* NULL binds NULL */
    void (*bind_blob)(srv_db *db, int i, int pos, const void *p, int n);
    int  (*step)(srv_db *db, int i);                   /* DB_ROW, DB_DONE or DB_FAIL */
    int64_t     (*col_int)(srv_db *db, int i, int col);
    const char *(*col_text)(srv_db *db, int i, int col);          /* NULL for NULL */
    const void *(*col_blob)(srv_db *db, int i, int col, int *n);
    int64_t (*changes)(srv_db *db);        /* rows the last statement changed */
    int64_t (*total_changes)(srv_db *db);  /* rows changed since open */
    int  (*in_txn)(srv_db *db);
    /* 1 when the last failure means the storage cannot be written (full,
     * read-only, failing), so every write will fail until it can. */
    int  (*storage_failure)(srv_db *db);
    const char *(*errmsg)(srv_db *db);
    void (*close)(srv_db *db);             /* frees the backend's state */
} srv_db_backend;

struct srv_db {
    const srv_db_backend *be;
    void         *impl;           /* the backend's own state */
    int           cannot_write;   /* the last failure: disk full or read-only */
    int           read_only;      /* opened immutable: the file cannot be written */
    int64_t       changes_at_begin; /* total_changes at the last BEGIN */
    int64_t       time_floor;     /* shared: the latest message time in this write transaction; -1: not read yet */
};

/* db_sqlite.c: opens path on SQLite into db (be, impl, read_only set),
 * migrated and with every statement prepared; 0, or -1 with err set. */
int db_sqlite_open(srv_db *db, const char *path, char *err, size_t errlen);
/* db_pg.c: the same on PostgreSQL, conninfo a libpq URI or key=value string. */
int db_pg_open(srv_db *db, const char *conninfo, char *err, size_t errlen);

static inline void db_reset(srv_db *db, int i) { db->be->reset(db, i); }
static inline void db_bind_int(srv_db *db, int i, int pos, int64_t v) { db->be->bind_int(db, i, pos, v); }
static inline void db_bind_text(srv_db *db, int i, int pos, const char *v) { db->be->bind_text(db, i, pos, v); }
static inline void db_bind_blob(srv_db *db, int i, int pos, const void *p, int n) {
    db->be->bind_blob(db, i, pos, p, n);
}
static inline int db_step(srv_db *db, int i) { return db->be->step(db, i); }
static inline int64_t db_col_int(srv_db *db, int i, int col) { return db->be->col_int(db, i, col); }
static inline const char *db_col_text(srv_db *db, int i, int col) { return db->be->col_text(db, i, col); }
static inline const char *db_col_str(srv_db *db, int i, int col) {   /* "" for NULL */
    const char *t = db->be->col_text(db, i, col);
    return t ? t : "";
}
static inline int64_t db_changes(srv_db *db) { return db->be->changes(db); }

/* Logs statement i's failure; returns 500. */
int db_failed(srv_db *db, int i);
/* Runs a statement that returns no rows (or whose rows are ignored). */
int db_run(srv_db *db, int i);
/* Steps a statement expected to give at most one row: NIM_CODE_OK with the
 * row ready, NIM_CODE_NOT_FOUND, or 500. The caller resets. */
int db_one(srv_db *db, int i);
/* Runs statement i that gives one integer (INSERT or UPDATE ... RETURNING):
 * that integer into *out. */
int db_returning(srv_db *db, int i, int64_t *out);
/* Statement i with text parameters a (and b unless NULL): its first
 * column's integer into *out, 0 when there is no row. */
int db_get_int(srv_db *db, int i, const char *a, const char *b, int64_t *out);
/* The current row of statement i, in MSG_COLS order, as a protocol message
 * object; NULL when it is damaged or memory ran out. */
cJSON *db_row_msg(srv_db *db, int i);

#endif
