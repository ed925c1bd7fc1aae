/* What db.c, db_state.c and db_sync.c share: the prepared statements (one per S_*,
 * prepared at open) and the helpers that run them. Never included
 * outside csrc/server. */
#ifndef NIM_SERVER_DB_PRIVATE_H
#define NIM_SERVER_DB_PRIVATE_H
#include "server/db.h"
#include <sqlite3.h>

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

struct srv_db {
    sqlite3      *h;
    sqlite3_stmt *st[S__COUNT];
    int           cannot_write;   /* the last failure: disk full or read-only */
    int           read_only;      /* opened immutable: the file cannot be written */
    int64_t       changes_at_begin; /* sqlite3_total_changes64 at the last BEGIN */
};

/* Logs statement i's failure; returns 500. */
int db_failed(srv_db *db, int i);
/* Statement i, reset and unbound. */
sqlite3_stmt *db_stmt(srv_db *db, int i);
/* Runs a statement that returns no rows (or whose rows are ignored). */
int db_run(srv_db *db, int i);
/* Steps a statement expected to give at most one row: NIM_CODE_OK with the
 * row ready, NIM_CODE_NOT_FOUND, or 500. The caller resets. */
int db_one(srv_db *db, int i);
/* Statement i with text parameters a (and b unless NULL): its first
 * column's integer into *out, 0 when there is no row. */
int db_get_int(srv_db *db, int i, const char *a, const char *b, int64_t *out);
void db_bind_text(sqlite3_stmt *s, int i, const char *v);   /* NULL binds NULL */
const char *db_col_text(sqlite3_stmt *s, int i);
/* The current row, in MSG_COLS order, as a protocol message object; NULL
 * when it is damaged or memory ran out. */
cJSON *db_row_msg(sqlite3_stmt *s);

#endif
