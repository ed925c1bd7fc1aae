/* nim-server storage: pages of messages, for the login sync (docs/protocol.md
 * "Login and sync") and for history ("getHistoryMsgs"). Each function reads one page through one prepared statement and
 * resets it before returning, so no read transaction stays open between the
 * request-thread batches a sync spans. The request thread only. */
#include "server/db_private.h"
#include <stdio.h>

/* Steps statement i, handing each row to cb until it returns nonzero. */
static int each_row(srv_db *db, int i, srv_db_row_cb cb, void *ud) {
    int rc;
    while ((rc = db_step(db, i)) == DB_ROW) {
        cJSON *m = db_row_msg(db, i);
        if (!m) { db_reset(db, i); return NIM_CODE_SERVER; }
        if (cb(ud, m, db_col_int(db, i, 0), db_col_int(db, i, 10))) break;
    }
    db_reset(db, i);
    if (rc == DB_FAIL) return db_failed(db, i);
    return NIM_CODE_OK;
}

int srv_db_sync_undelivered(srv_db *db, const char *account, int64_t after, int64_t upto,
                            int limit, srv_db_row_cb cb, void *ud) {
    db_reset(db, S_SYNC_UNDELIVERED);
    db_bind_text(db, S_SYNC_UNDELIVERED, 1, account);
    db_bind_int(db, S_SYNC_UNDELIVERED, 2, after);
    db_bind_int(db, S_SYNC_UNDELIVERED, 3, upto);
    db_bind_int(db, S_SYNC_UNDELIVERED, 4, limit);
    return each_row(db, S_SYNC_UNDELIVERED, cb, ud);
}

int srv_db_sync_after(srv_db *db, const char *account, int64_t after, int limit,
                      srv_db_row_cb cb, void *ud) {
    db_reset(db, S_SYNC_AFTER);
    db_bind_text(db, S_SYNC_AFTER, 1, account);
    db_bind_int(db, S_SYNC_AFTER, 2, after);
    db_bind_int(db, S_SYNC_AFTER, 3, limit);
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
    db_reset(db, S_SYNC_SESSION_DESC);
    db_bind_text(db, S_SYNC_SESSION_DESC, 1, account);
    db_bind_text(db, S_SYNC_SESSION_DESC, 2, session_id);
    db_bind_int(db, S_SYNC_SESSION_DESC, 3, before);
    db_bind_int(db, S_SYNC_SESSION_DESC, 4, limit);
    db_bind_int(db, S_SYNC_SESSION_DESC, 5, mark);
    return each_row(db, S_SYNC_SESSION_DESC, cb, ud);
}

int srv_db_sync_next_session(srv_db *db, const char *account, const char *after,
                             char *out, size_t outlen) {
    db_reset(db, S_SYNC_NEXT_SESSION);
    db_bind_text(db, S_SYNC_NEXT_SESSION, 1, account);
    db_bind_text(db, S_SYNC_NEXT_SESSION, 2, after);
    int rc = db_one(db, S_SYNC_NEXT_SESSION);
    if (rc == NIM_CODE_OK) snprintf(out, outlen, "%s", db_col_text(db, S_SYNC_NEXT_SESSION, 0));
    db_reset(db, S_SYNC_NEXT_SESSION);
    return rc;
}

/* The id of the first message at or after time (first) or the last one at
 * or before it; NIM_CODE_NOT_FOUND when there is none. */
static int id_at_time(srv_db *db, int i, int64_t time, int64_t *id) {
    db_reset(db, i);
    db_bind_int(db, i, 1, time);
    int rc = db_one(db, i);
    if (rc == NIM_CODE_OK) *id = db_col_int(db, i, 0);
    db_reset(db, i);
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
    db_reset(db, i);
    db_bind_text(db, i, 1, account);
    db_bind_text(db, i, 2, session_id);
    db_bind_int(db, i, 3, after);
    db_bind_int(db, i, 4, before);
    db_bind_int(db, i, 5, q->begin_time);
    db_bind_int(db, i, 6, q->end_time);
    db_bind_int(db, i, 7, q->limit);
    return each_row(db, i, cb, ud);
}
