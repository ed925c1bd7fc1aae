/* nim-server storage of what is not a message: read pointers, receipts,
 * sticky top sessions and teams (db.c opens the database and stores
 * accounts and messages; db_private.h is what the two share). Server
 * request thread only (reqthread.c). */
#include "server/db_private.h"
#include "core/alloc.h"
#include <stdio.h>
#include <string.h>

int srv_db_read_ptr_get(srv_db *db, const char *account, const char *session_id, int64_t *ack) {
    return db_get_int(db, S_PTR_GET, account, session_id, ack);
}

int srv_db_read_ptr_set(srv_db *db, const char *account, const char *session_id, int64_t ack,
                        int64_t ver) {
    sqlite3_stmt *s = db_stmt(db, S_PTR_SET);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    sqlite3_bind_int64(s, 3, ack);
    sqlite3_bind_int64(s, 4, ver);
    return db_run(db, S_PTR_SET);
}

int srv_db_read_ptrs_since(srv_db *db, const char *account, int64_t since, int limit, cJSON *arr) {
    sqlite3_stmt *s = db_stmt(db, S_PTR_SINCE);
    db_bind_text(s, 1, account);
    sqlite3_bind_int64(s, 2, since);
    sqlite3_bind_int(s, 3, limit);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddStringToObject(o, "sessionId", db_col_text(s, 0) ? db_col_text(s, 0) : "") ||
            !cJSON_AddNumberToObject(o, "ack", (double)sqlite3_column_int64(s, 1)) ||
            !cJSON_AddNumberToObject(o, "ver", (double)sqlite3_column_int64(s, 2))) {
            sqlite3_reset(s);
            return NIM_CODE_SERVER;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { return db_failed(db, S_PTR_SINCE); }
    return NIM_CODE_OK;
}

int srv_db_delete_session(srv_db *db, const char *account, const char *session_id,
                          int64_t mark, int64_t now) {
    sqlite3_stmt *s = db_stmt(db, S_DEL_SESSION);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    sqlite3_bind_int64(s, 3, mark);
    sqlite3_bind_int64(s, 4, now);
    return db_run(db, S_DEL_SESSION);
}

int srv_db_receipt_get(srv_db *db, const char *reader, const char *peer, int64_t *time) {
    return db_get_int(db, S_RCPT_GET, reader, peer, time);
}

int srv_db_receipt_set(srv_db *db, const char *reader, const char *peer, int64_t time,
                       int64_t msg_id, int64_t ver) {
    sqlite3_stmt *s = db_stmt(db, S_RCPT_SET);
    db_bind_text(s, 1, reader);
    db_bind_text(s, 2, peer);
    sqlite3_bind_int64(s, 3, time);
    sqlite3_bind_int64(s, 4, msg_id);
    sqlite3_bind_int64(s, 5, ver);
    return db_run(db, S_RCPT_SET);
}

int srv_db_receipts_since(srv_db *db, const char *peer, int64_t since, int limit, cJSON *arr) {
    sqlite3_stmt *s = db_stmt(db, S_RCPT_SINCE);
    db_bind_text(s, 1, peer);
    sqlite3_bind_int64(s, 2, since);
    sqlite3_bind_int(s, 3, limit);
    int rc;
    char sid[NIM_PROTO_MAX_SESSION_ID + 1], idbuf[24];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        snprintf(sid, sizeof sid, "p2p-%s", db_col_text(s, 0) ? db_col_text(s, 0) : "");
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)sqlite3_column_int64(s, 2));
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddStringToObject(o, "sessionId", sid) ||
            !cJSON_AddNumberToObject(o, "time", (double)sqlite3_column_int64(s, 1)) ||
            !cJSON_AddStringToObject(o, "idServer", idbuf) ||
            !cJSON_AddNumberToObject(o, "ver", (double)sqlite3_column_int64(s, 3))) {
            sqlite3_reset(s);
            return NIM_CODE_SERVER;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { return db_failed(db, S_RCPT_SINCE); }
    return NIM_CODE_OK;
}

static cJSON *row_stick(sqlite3_stmt *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sessionId", db_col_text(s, 0) ? db_col_text(s, 0) : "") ||
        !cJSON_AddStringToObject(o, "topCustom", db_col_text(s, 1) ? db_col_text(s, 1) : "") ||
        !cJSON_AddNumberToObject(o, "createTime", (double)sqlite3_column_int64(s, 2)) ||
        !cJSON_AddNumberToObject(o, "updateTime", (double)sqlite3_column_int64(s, 3))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int srv_db_stick_get(srv_db *db, const char *account, const char *session_id, cJSON **out) {
    sqlite3_stmt *s = db_stmt(db, S_STICK_GET);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    int rc = db_one(db, S_STICK_GET);
    if (rc != NIM_CODE_OK) return rc;
    *out = row_stick(s);
    sqlite3_reset(s);
    return *out ? NIM_CODE_OK : NIM_CODE_SERVER;
}

int srv_db_stick_put(srv_db *db, const char *account, const char *session_id,
                     const char *top_custom, int64_t now) {
    sqlite3_stmt *s = db_stmt(db, S_STICK_PUT);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    db_bind_text(s, 3, top_custom ? top_custom : "");
    sqlite3_bind_int64(s, 4, now);
    return db_run(db, S_STICK_PUT);
}

int srv_db_stick_delete(srv_db *db, const char *account, const char *session_id) {
    sqlite3_stmt *s = db_stmt(db, S_STICK_DEL);
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, session_id);
    int rc = db_run(db, S_STICK_DEL);
    if (rc == NIM_CODE_OK && sqlite3_changes(db->h) == 0) return NIM_CODE_NOT_FOUND;
    return rc;
}

int srv_db_stick_list(srv_db *db, const char *account, cJSON *arr) {
    sqlite3_stmt *s = db_stmt(db, S_STICK_LIST);
    db_bind_text(s, 1, account);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *o = row_stick(s);
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            sqlite3_reset(s);
            return NIM_CODE_SERVER;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { return db_failed(db, S_STICK_LIST); }
    return NIM_CODE_OK;
}

int srv_db_team_create(srv_db *db, const char *name, const char *owner, int64_t now,
                       int64_t *team_id) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_INSERT);
    db_bind_text(s, 1, name);
    db_bind_text(s, 2, owner);
    sqlite3_bind_int64(s, 3, now);
    int rc = db_run(db, S_TEAM_INSERT);
    if (rc == NIM_CODE_OK) *team_id = sqlite3_last_insert_rowid(db->h);
    return rc;
}

int srv_db_team_add_member(srv_db *db, int64_t team_id, const char *account, int64_t now) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_MEMBER_ADD);
    sqlite3_bind_int64(s, 1, team_id);
    db_bind_text(s, 2, account);
    sqlite3_bind_int64(s, 3, now);
    return db_run(db, S_TEAM_MEMBER_ADD);
}

int srv_db_team_members(srv_db *db, int64_t team_id, cJSON *arr, char *name, size_t namelen) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_GET);
    sqlite3_bind_int64(s, 1, team_id);
    int rc = db_one(db, S_TEAM_GET);
    if (rc != NIM_CODE_OK) return rc;
    if (name) snprintf(name, namelen, "%s", db_col_text(s, 0) ? db_col_text(s, 0) : "");
    sqlite3_reset(s);
    s = db_stmt(db, S_TEAM_MEMBERS);
    sqlite3_bind_int64(s, 1, team_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cJSON *a = cJSON_CreateString(db_col_text(s, 0) ? db_col_text(s, 0) : "");
        if (!a || !cJSON_AddItemToArray(arr, a)) {
            cJSON_Delete(a);
            sqlite3_reset(s);
            return NIM_CODE_SERVER;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) { return db_failed(db, S_TEAM_MEMBERS); }
    return NIM_CODE_OK;
}

int srv_db_team_is_member(srv_db *db, int64_t team_id, const char *account) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_GET);
    sqlite3_bind_int64(s, 1, team_id);
    int rc = db_one(db, S_TEAM_GET);
    if (rc != NIM_CODE_OK) return rc;
    sqlite3_reset(s);
    s = db_stmt(db, S_TEAM_IS_MEMBER);
    sqlite3_bind_int64(s, 1, team_id);
    db_bind_text(s, 2, account);
    rc = db_one(db, S_TEAM_IS_MEMBER);
    sqlite3_reset(s);
    return rc == NIM_CODE_NOT_FOUND ? NIM_CODE_FORBIDDEN : rc;
}

int srv_db_count_rows(srv_db *db, srv_rows what, const char *account, int64_t *n) {
    int i = what == SRV_ROWS_POINTERS ? S_PTR_COUNT : what == SRV_ROWS_RECEIPTS ? S_RCPT_COUNT : S_STICK_COUNT;
    sqlite3_stmt *s = db_stmt(db, i);
    db_bind_text(s, 1, account);
    int rc = db_one(db, i);
    if (rc == NIM_CODE_OK) *n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == NIM_CODE_OK ? rc : NIM_CODE_SERVER;
}

int srv_db_team_owner(srv_db *db, int64_t team_id, char *owner, size_t len) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_OWNER);
    sqlite3_bind_int64(s, 1, team_id);
    int rc = db_one(db, S_TEAM_OWNER);
    if (rc == NIM_CODE_OK) snprintf(owner, len, "%s", db_col_text(s, 0) ? db_col_text(s, 0) : "");
    sqlite3_reset(s);
    return rc;
}

int srv_db_team_remove_member(srv_db *db, int64_t team_id, const char *account) {
    sqlite3_stmt *s = db_stmt(db, S_TEAM_MEMBER_DEL);
    sqlite3_bind_int64(s, 1, team_id);
    db_bind_text(s, 2, account);
    return db_run(db, S_TEAM_MEMBER_DEL);
}
