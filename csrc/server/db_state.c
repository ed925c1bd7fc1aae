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
    db_reset(db, S_PTR_SET);
    db_bind_text(db, S_PTR_SET, 1, account);
    db_bind_text(db, S_PTR_SET, 2, session_id);
    db_bind_int(db, S_PTR_SET, 3, ack);
    db_bind_int(db, S_PTR_SET, 4, ver);
    return db_run(db, S_PTR_SET);
}

int srv_db_read_ptrs_since(srv_db *db, const char *account, int64_t since, int limit, cJSON *arr) {
    db_reset(db, S_PTR_SINCE);
    db_bind_text(db, S_PTR_SINCE, 1, account);
    db_bind_int(db, S_PTR_SINCE, 2, since);
    db_bind_int(db, S_PTR_SINCE, 3, limit);
    int rc;
    while ((rc = db_step(db, S_PTR_SINCE)) == DB_ROW) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddStringToObject(o, "sessionId", db_col_str(db, S_PTR_SINCE, 0)) ||
            !cJSON_AddNumberToObject(o, "ack", (double)db_col_int(db, S_PTR_SINCE, 1)) ||
            !cJSON_AddNumberToObject(o, "ver", (double)db_col_int(db, S_PTR_SINCE, 2))) {
            db_reset(db, S_PTR_SINCE);
            return NIM_CODE_SERVER;
        }
    }
    db_reset(db, S_PTR_SINCE);
    if (rc != DB_DONE) { return db_failed(db, S_PTR_SINCE); }
    return NIM_CODE_OK;
}

int srv_db_delete_session(srv_db *db, const char *account, const char *session_id,
                          int64_t mark, int64_t now) {
    db_reset(db, S_DEL_SESSION);
    db_bind_text(db, S_DEL_SESSION, 1, account);
    db_bind_text(db, S_DEL_SESSION, 2, session_id);
    db_bind_int(db, S_DEL_SESSION, 3, mark);
    db_bind_int(db, S_DEL_SESSION, 4, now);
    return db_run(db, S_DEL_SESSION);
}

int srv_db_receipt_get(srv_db *db, const char *reader, const char *peer, int64_t *time) {
    return db_get_int(db, S_RCPT_GET, reader, peer, time);
}

int srv_db_receipt_set(srv_db *db, const char *reader, const char *peer, int64_t time,
                       int64_t msg_id, int64_t ver) {
    db_reset(db, S_RCPT_SET);
    db_bind_text(db, S_RCPT_SET, 1, reader);
    db_bind_text(db, S_RCPT_SET, 2, peer);
    db_bind_int(db, S_RCPT_SET, 3, time);
    db_bind_int(db, S_RCPT_SET, 4, msg_id);
    db_bind_int(db, S_RCPT_SET, 5, ver);
    return db_run(db, S_RCPT_SET);
}

int srv_db_receipts_since(srv_db *db, const char *peer, int64_t since, int limit, cJSON *arr) {
    db_reset(db, S_RCPT_SINCE);
    db_bind_text(db, S_RCPT_SINCE, 1, peer);
    db_bind_int(db, S_RCPT_SINCE, 2, since);
    db_bind_int(db, S_RCPT_SINCE, 3, limit);
    int rc;
    char sid[NIM_PROTO_MAX_SESSION_ID + 1], idbuf[24];
    while ((rc = db_step(db, S_RCPT_SINCE)) == DB_ROW) {
        snprintf(sid, sizeof sid, "p2p-%s", db_col_str(db, S_RCPT_SINCE, 0));
        snprintf(idbuf, sizeof idbuf, "%lld", (long long)db_col_int(db, S_RCPT_SINCE, 2));
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) ||
            !cJSON_AddStringToObject(o, "sessionId", sid) ||
            !cJSON_AddNumberToObject(o, "time", (double)db_col_int(db, S_RCPT_SINCE, 1)) ||
            !cJSON_AddStringToObject(o, "idServer", idbuf) ||
            !cJSON_AddNumberToObject(o, "ver", (double)db_col_int(db, S_RCPT_SINCE, 3))) {
            db_reset(db, S_RCPT_SINCE);
            return NIM_CODE_SERVER;
        }
    }
    db_reset(db, S_RCPT_SINCE);
    if (rc != DB_DONE) { return db_failed(db, S_RCPT_SINCE); }
    return NIM_CODE_OK;
}

static cJSON *row_stick(srv_db *db, int i) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sessionId", db_col_str(db, i, 0)) ||
        !cJSON_AddStringToObject(o, "topCustom", db_col_str(db, i, 1)) ||
        !cJSON_AddNumberToObject(o, "createTime", (double)db_col_int(db, i, 2)) ||
        !cJSON_AddNumberToObject(o, "updateTime", (double)db_col_int(db, i, 3))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int srv_db_stick_get(srv_db *db, const char *account, const char *session_id, cJSON **out) {
    db_reset(db, S_STICK_GET);
    db_bind_text(db, S_STICK_GET, 1, account);
    db_bind_text(db, S_STICK_GET, 2, session_id);
    int rc = db_one(db, S_STICK_GET);
    if (rc != NIM_CODE_OK) return rc;
    *out = row_stick(db, S_STICK_GET);
    db_reset(db, S_STICK_GET);
    return *out ? NIM_CODE_OK : NIM_CODE_SERVER;
}

int srv_db_stick_put(srv_db *db, const char *account, const char *session_id,
                     const char *top_custom, int64_t now) {
    db_reset(db, S_STICK_PUT);
    db_bind_text(db, S_STICK_PUT, 1, account);
    db_bind_text(db, S_STICK_PUT, 2, session_id);
    db_bind_text(db, S_STICK_PUT, 3, top_custom ? top_custom : "");
    db_bind_int(db, S_STICK_PUT, 4, now);
    return db_run(db, S_STICK_PUT);
}

int srv_db_stick_delete(srv_db *db, const char *account, const char *session_id) {
    db_reset(db, S_STICK_DEL);
    db_bind_text(db, S_STICK_DEL, 1, account);
    db_bind_text(db, S_STICK_DEL, 2, session_id);
    int rc = db_run(db, S_STICK_DEL);
    if (rc == NIM_CODE_OK && db_changes(db) == 0) return NIM_CODE_NOT_FOUND;
    return rc;
}

int srv_db_stick_list(srv_db *db, const char *account, cJSON *arr) {
    db_reset(db, S_STICK_LIST);
    db_bind_text(db, S_STICK_LIST, 1, account);
    int rc;
    while ((rc = db_step(db, S_STICK_LIST)) == DB_ROW) {
        cJSON *o = row_stick(db, S_STICK_LIST);
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            db_reset(db, S_STICK_LIST);
            return NIM_CODE_SERVER;
        }
    }
    db_reset(db, S_STICK_LIST);
    if (rc != DB_DONE) { return db_failed(db, S_STICK_LIST); }
    return NIM_CODE_OK;
}

int srv_db_team_create(srv_db *db, const char *name, const char *owner, int64_t now,
                       int64_t *team_id) {
    db_reset(db, S_TEAM_INSERT);
    db_bind_text(db, S_TEAM_INSERT, 1, name);
    db_bind_text(db, S_TEAM_INSERT, 2, owner);
    db_bind_int(db, S_TEAM_INSERT, 3, now);
    return db_returning(db, S_TEAM_INSERT, team_id);
}

int srv_db_team_add_member(srv_db *db, int64_t team_id, const char *account, int64_t now) {
    db_reset(db, S_TEAM_MEMBER_ADD);
    db_bind_int(db, S_TEAM_MEMBER_ADD, 1, team_id);
    db_bind_text(db, S_TEAM_MEMBER_ADD, 2, account);
    db_bind_int(db, S_TEAM_MEMBER_ADD, 3, now);
    return db_run(db, S_TEAM_MEMBER_ADD);
}

int srv_db_team_members(srv_db *db, int64_t team_id, cJSON *arr, char *name, size_t namelen) {
    db_reset(db, S_TEAM_GET);
    db_bind_int(db, S_TEAM_GET, 1, team_id);
    int rc = db_one(db, S_TEAM_GET);
    if (rc != NIM_CODE_OK) return rc;
    if (name) snprintf(name, namelen, "%s", db_col_str(db, S_TEAM_GET, 0));
    db_reset(db, S_TEAM_GET);
    db_reset(db, S_TEAM_MEMBERS);
    db_bind_int(db, S_TEAM_MEMBERS, 1, team_id);
    while ((rc = db_step(db, S_TEAM_MEMBERS)) == DB_ROW) {
        cJSON *a = cJSON_CreateString(db_col_str(db, S_TEAM_MEMBERS, 0));
        if (!a || !cJSON_AddItemToArray(arr, a)) {
            cJSON_Delete(a);
            db_reset(db, S_TEAM_MEMBERS);
            return NIM_CODE_SERVER;
        }
    }
    db_reset(db, S_TEAM_MEMBERS);
    if (rc != DB_DONE) { return db_failed(db, S_TEAM_MEMBERS); }
    return NIM_CODE_OK;
}

int srv_db_team_is_member(srv_db *db, int64_t team_id, const char *account) {
    db_reset(db, S_TEAM_GET);
    db_bind_int(db, S_TEAM_GET, 1, team_id);
    int rc = db_one(db, S_TEAM_GET);
    if (rc != NIM_CODE_OK) return rc;
    db_reset(db, S_TEAM_GET);
    db_reset(db, S_TEAM_IS_MEMBER);
    db_bind_int(db, S_TEAM_IS_MEMBER, 1, team_id);
    db_bind_text(db, S_TEAM_IS_MEMBER, 2, account);
    rc = db_one(db, S_TEAM_IS_MEMBER);
    db_reset(db, S_TEAM_IS_MEMBER);
    return rc == NIM_CODE_NOT_FOUND ? NIM_CODE_FORBIDDEN : rc;
}

int srv_db_count_rows(srv_db *db, srv_rows what, const char *account, int64_t *n) {
    int i = what == SRV_ROWS_POINTERS ? S_PTR_COUNT : what == SRV_ROWS_RECEIPTS ? S_RCPT_COUNT : S_STICK_COUNT;
    db_reset(db, i);
    db_bind_text(db, i, 1, account);
    int rc = db_one(db, i);
    if (rc == NIM_CODE_OK) *n = db_col_int(db, i, 0);
    db_reset(db, i);
    return rc == NIM_CODE_OK ? rc : NIM_CODE_SERVER;
}

int srv_db_team_owner(srv_db *db, int64_t team_id, char *owner, size_t len) {
    db_reset(db, S_TEAM_OWNER);
    db_bind_int(db, S_TEAM_OWNER, 1, team_id);
    int rc = db_one(db, S_TEAM_OWNER);
    if (rc == NIM_CODE_OK) snprintf(owner, len, "%s", db_col_str(db, S_TEAM_OWNER, 0));
    db_reset(db, S_TEAM_OWNER);
    return rc;
}

int srv_db_team_remove_member(srv_db *db, int64_t team_id, const char *account) {
    db_reset(db, S_TEAM_MEMBER_DEL);
    db_bind_int(db, S_TEAM_MEMBER_DEL, 1, team_id);
    db_bind_text(db, S_TEAM_MEMBER_DEL, 2, account);
    return db_run(db, S_TEAM_MEMBER_DEL);
}
