/* nim-server storage: pages of messages, for the login sync (docs/protocol.md
 * "Login and sync") and for history ("getHistoryMsgs"). Each function reads one page through one prepared statement and
 * resets it before returning, so no read transaction stays open between the
 * request-thread batches a sync spans. The request thread only. */
#include "server/db_private.h"
#include <stdio.h>

/* Steps statement i, handing each row to cb until it returns nonzero. */
static int each_row(srv_db *db, int i, srv_db_row_cb cb, void *ud) {
    sqlite3_stmt *s = db->st[i];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *m = db_row_msg(s);
        if (!m) { sqlite3_reset(s); return NIM_CODE_SERVER; }
        if (cb(ud, m, sqlite3_column_int64(s, 0), sqlite3_column_int(s, 10))) break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_failed(db, i);
    return NIM_CODE_OK;
}

int srv_db_sync_undelivered(srv_db *db, const char *account, int64_t after, int64_t upto,
                            int limit, srv_db_row_cb cb, void *ud) {
    sqlite3_stmt *s = db_stmt(db, S_SYNC_UNDELIVERED);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int64(s, 3, upto);
    sqlite3_bind_int(s, 4, limit);
    return each_row(db, S_SYNC_UNDELIVERED, cb, ud);
}

int srv_db_sync_after(srv_db *db, const char *account, int64_t after, int limit,
                      srv_db_row_cb cb, void *ud) {
    sqlite3_stmt *s = db_stmt(db, S_SYNC_AFTER);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int(s, 3, limit);
    return each_row(db, S_SYNC_AFTER, cb, ud);
}

/* The session's deletion mark (0: never deleted) into *mark. */
static int deletion_mark(srv_db *db, const char *account, const char *session_id, int64_t *mark) {
    return db_get_int(db, S_DEL_MARK, account, session_id, mark);
}

int srv_db_sync_session(srv_db *db, const char *account, const char *session_id, int64_t before,
                        int limit, srv_db_row_cb cb, void *ud) {
    int64_t mark;
    int rc = deletion_mark(db, account, session_id, &mark);
    if (rc != NIM_CODE_OK) return rc;
    sqlite3_stmt *s = db_stmt(db, S_SYNC_SESSION_DESC);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    sqlite3_bind_int64(s, 3, before);
    sqlite3_bind_int(s, 4, limit);
    sqlite3_bind_int64(s, 5, mark);
    return each_row(db, S_SYNC_SESSION_DESC, cb, ud);
}

int srv_db_sync_next_session(srv_db *db, const char *account, const char *after,
                             char *out, size_t outlen) {
    sqlite3_stmt *s = db_stmt(db, S_SYNC_NEXT_SESSION);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, after);
    int rc = db_one(db, S_SYNC_NEXT_SESSION);
    if (rc == NIM_CODE_OK) snprintf(out, outlen, "%s", db_col_text(s, 0));
    sqlite3_reset(s);
    return rc;
}

/* The id of the first message at or after time (first) or the last one at
 * or before it; NIM_CODE_NOT_FOUND when there is none. */
static int id_at_time(srv_db *db, int i, int64_t time, int64_t *id) {
    sqlite3_stmt *s = db_stmt(db, i);
    sqlite3_bind_int64(s, 1, time);
    int rc = db_one(db, i);
    if (rc == NIM_CODE_OK) *id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc;
}

int srv_db_history(srv_db *db, const char *account, const char *session_id,
                   const srv_history_query *q, srv_db_row_cb cb, void *ud) {
    int64_t after = q->after, before = q->before, id, mark;
    int rc = deletion_mark(db, account, session_id, &mark);
    if (rc != NIM_CODE_OK) return rc;
    if (mark > after) after = mark;
    rc = id_at_time(db, S_ID_FROM_TIME, q->begin_time, &id);
    if (rc == NIM_CODE_NOT_FOUND) return NIM_CODE_OK;          /* nothing that late */
    if (rc != NIM_CODE_OK) return rc;
    if (id - 1 > after) after = id - 1;
    rc = id_at_time(db, S_ID_UNTIL_TIME, q->end_time, &id);
    if (rc == NIM_CODE_NOT_FOUND) return NIM_CODE_OK;          /* nothing that early */
    if (rc != NIM_CODE_OK) return rc;
    if (id + 1 < before) before = id + 1;
    if (after + 1 >= before) return NIM_CODE_OK;
    int i = q->asc ? S_HISTORY_ASC : S_HISTORY_DESC;
    sqlite3_stmt *s = db_stmt(db, i);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int64(s, 4, before);
    sqlite3_bind_int64(s, 5, q->begin_time);
    sqlite3_bind_int64(s, 6, q->end_time);
    sqlite3_bind_int(s, 7, q->limit);
    return each_row(db, i, cb, ud);
}
