/* nim-server team membership with consent: the owner adds and removes
 * members, a member leaves (the owner cannot: it would leave the team
 * without one). Every change reaches the team, old members and new, as a
 * "notification" message (never counted unread) in the team session,
 * stored in the same transaction as the change: a member who is removed
 * or leaves gets that one and no later message of the team, and keeps what
 * it had. createTeam is in handlers.c. */
#include "server/handlers.h"
#include "core/alloc.h"
#include <stdio.h>
#include <string.h>

typedef enum { OP_ADD, OP_REMOVE, OP_LEAVE } team_op;
static const char *const op_names[] = { "addMembers", "removeMembers", "leave" };

/* The team id of the request (teamId: a team id string) into *id. */
static int team_id_of(const req *r, int64_t *id) {
    const char *err = NULL, *s = NULL;
    int rc = nim_proto_get_str(r->data, "teamId", 1, 20, 1, &s, &err);
    if (rc != NIM_CODE_OK) { srv_answer(r, rc, err, NULL); return rc; }
    if (!nim_proto_valid_team_id(s) || sscanf(s, "%lld", (long long *)id) != 1) {
        srv_answer(r, NIM_CODE_PARAM, "teamId: not a team id", NULL);
        return NIM_CODE_PARAM;
    }
    return NIM_CODE_OK;
}

static int in_list(const cJSON *arr, const char *s) {
    for (const cJSON *a = arr ? arr->child : NULL; a; a = a->next)
        if (strcmp(a->valuestring, s) == 0) return 1;
    return 0;
}

/* Stores the notification of op (accounts changed) for every account of
 * notify, inside the open transaction; *msg is the stored message. */
static int store_notice(const req *r, int64_t team_id, team_op op, const cJSON *accounts,
                        const cJSON *notify, cJSON **msg) {
    static unsigned seq;
    char to[24], sid[40], idc[64];
    snprintf(to, sizeof to, "%lld", (long long)team_id);
    snprintf(sid, sizeof sid, "team-%s", to);
    cJSON *c = cJSON_CreateObject();
    if (!c || !cJSON_AddStringToObject(c, "op", op_names[op]) || !cJSON_AddStringToObject(c, "teamId", to) ||
        !cJSON_AddStringToObject(c, "by", r->c->account) ||
        !cJSON_AddItemToObject(c, "accounts", cJSON_Duplicate(accounts, 1))) {
        cJSON_Delete(c);
        return NIM_CODE_SERVER;
    }
    char *content = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (!content) return NIM_CODE_SERVER;
    nim_proto_msg m = { 0 };
    m.time = srv_msg_time();
    snprintf(idc, sizeof idc, "team-%s-%s-%lld-%u", op_names[op], to, (long long)m.time, ++seq);
    m.id_client = idc;
    m.scene = NIM_SCENE_TEAM;
    m.from = r->c->account;
    m.from_device = r->c->device;
    m.to = to;
    m.type = "notification";
    m.content = content;
    int rc = srv_db_insert_msg(srv.db, &m);
    for (const cJSON *a = notify->child; a && rc == NIM_CODE_OK; a = a->next)
        rc = srv_db_insert_inbox(srv.db, a->valuestring, m.id_server, sid, strcmp(a->valuestring, r->c->account) == 0);
    if (rc == NIM_CODE_OK && !(*msg = nim_proto_msg_to_json(&m))) rc = NIM_CODE_SERVER;
    cJSON_free(content);
    return rc;
}

/* The team as the replies and team pushes show it. */
static cJSON *team_json(int64_t team_id, const char *name, const char *owner, const cJSON *members) {
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)team_id);
    cJSON *t = cJSON_CreateObject();
    if (!t || !cJSON_AddStringToObject(t, "teamId", idbuf) || !cJSON_AddStringToObject(t, "name", name) ||
        !cJSON_AddStringToObject(t, "owner", owner) ||
        !cJSON_AddItemToObject(t, "members", cJSON_Duplicate(members, 1))) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

/* add, remove, leave: checks, the change and its notice in one
 * transaction, then the reply and the pushes. */
static void change(const req *r, team_op op) {
    const char *err = NULL;
    const cJSON *list = NULL;
    size_t n = 0;
    int64_t team_id = 0;
    int rc;
    if (team_id_of(r, &team_id) != NIM_CODE_OK) return;
    if (op != OP_LEAVE)
        CHECK(nim_proto_get_array(r->data, "accounts", NIM_PROTO_MAX_TEAM_SIZE - 1, 1, &list, &n, &err));
    char name[NIM_PROTO_MAX_TEAM_NAME + 1], owner[NIM_PROTO_MAX_ACCOUNT + 1];
    cJSON *members = cJSON_CreateArray(), *changed = cJSON_CreateArray(), *unknown = cJSON_CreateArray();
    cJSON *notify = NULL, *msg = NULL;
    rc = members && changed && unknown ? srv_db_team_members(srv.db, team_id, members, name, sizeof name)
                                       : NIM_CODE_SERVER;
    if (rc == NIM_CODE_OK) rc = srv_db_team_owner(srv.db, team_id, owner, sizeof owner);
    const char *why = NULL;
    if (rc == NIM_CODE_NOT_FOUND) why = "teamId: no such team";
    else if (rc == NIM_CODE_OK && !in_list(members, r->c->account)) rc = NIM_CODE_FORBIDDEN, why = "not a member of this team";
    else if (rc == NIM_CODE_OK && op != OP_LEAVE && strcmp(owner, r->c->account) != 0)
        rc = NIM_CODE_FORBIDDEN, why = "only the team's owner adds or removes members";
    else if (rc == NIM_CODE_OK && op == OP_LEAVE && strcmp(owner, r->c->account) == 0)
        rc = NIM_CODE_FORBIDDEN, why = "the owner cannot leave its team";
    if (rc == NIM_CODE_OK && op == OP_LEAVE && !cJSON_AddItemToArray(changed, cJSON_CreateString(r->c->account)))
        rc = NIM_CODE_SERVER;
    for (const cJSON *a = list ? list->child : NULL; a && rc == NIM_CODE_OK; a = a->next) {
        if (!cJSON_IsString(a) || !nim_proto_valid_account(a->valuestring)) {
            rc = NIM_CODE_PARAM, why = "accounts: every item must be an account name";
            break;
        }
        if (in_list(changed, a->valuestring)) continue;
        if (op == OP_REMOVE) {
            if (strcmp(a->valuestring, owner) == 0) rc = NIM_CODE_PARAM, why = "accounts: the owner cannot be removed";
            else if (!in_list(members, a->valuestring)) rc = NIM_CODE_PARAM, why = "accounts: not a member of this team";
            else if (!cJSON_AddItemToArray(changed, cJSON_CreateString(a->valuestring))) rc = NIM_CODE_SERVER;
            continue;
        }
        if (in_list(members, a->valuestring)) continue;               /* already in: nothing to do */
        int ex = srv_db_account_exists(srv.db, a->valuestring);
        if (ex == NIM_CODE_NOT_FOUND) cJSON_AddItemToArray(unknown, cJSON_CreateString(a->valuestring));
        else if (ex == NIM_CODE_OK) cJSON_AddItemToArray(changed, cJSON_CreateString(a->valuestring));
        else rc = ex;
    }
    if (rc == NIM_CODE_OK && cJSON_GetArraySize(unknown) > 0) {
        cJSON_Delete(members); cJSON_Delete(changed);
        srv_answer_unknown(r, unknown, "accounts: no such account");
        return;
    }
    if (rc == NIM_CODE_OK && op == OP_ADD &&
        cJSON_GetArraySize(members) + cJSON_GetArraySize(changed) > NIM_PROTO_MAX_TEAM_SIZE)
        rc = NIM_CODE_LIMIT, why = "limit reached: at most 200 members in a team";
    cJSON_Delete(unknown);
    if (rc == NIM_CODE_OK && cJSON_GetArraySize(changed) > 0) {
        /* everyone before and after hears of it */
        notify = cJSON_Duplicate(members, 1);
        for (const cJSON *a = op == OP_ADD ? changed->child : NULL; a && notify; a = a->next)
            cJSON_AddItemToArray(notify, cJSON_CreateString(a->valuestring));
        int64_t now = srv_now_ms();
        rc = notify ? srv_db_begin(srv.db) : NIM_CODE_SERVER;
        for (const cJSON *a = changed->child; a && rc == NIM_CODE_OK; a = a->next)
            rc = op == OP_ADD ? srv_db_team_add_member(srv.db, team_id, a->valuestring, now)
                              : srv_db_team_remove_member(srv.db, team_id, a->valuestring);
        if (rc == NIM_CODE_OK) rc = store_notice(r, team_id, op, changed, notify, &msg);
        if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
        if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); why = NULL; rc = NIM_CODE_SERVER; }
    }
    if (rc != NIM_CODE_OK) {
        cJSON_Delete(members); cJSON_Delete(changed); cJSON_Delete(notify); cJSON_Delete(msg);
        srv_answer(r, rc, why, NULL);
        return;
    }
    /* the members now */
    for (const cJSON *a = changed->child; a; a = a->next) {
        if (op == OP_ADD) cJSON_AddItemToArray(members, cJSON_CreateString(a->valuestring));
        else for (cJSON *m = members->child; m; m = m->next)
            if (strcmp(m->valuestring, a->valuestring) == 0) { cJSON_Delete(cJSON_DetachItemViaPointer(members, m)); break; }
    }
    cJSON *team = team_json(team_id, name, owner, members);
    if (msg) {
        srv_push_msg(r->c, r->c->account, msg, notify, NULL);
        /* the new members learn of the team itself too */
        for (const cJSON *a = op == OP_ADD && team ? changed->child : NULL; a; a = a->next) {
            cJSON *pd = cJSON_CreateObject();
            if (pd && cJSON_AddItemToObject(pd, "team", cJSON_Duplicate(team, 1)))
                srv_push_account(a->valuestring, NULL, nim_proto_push_name(NIM_PUSH_TEAM), pd);
            else cJSON_Delete(pd);
        }
    }
    cJSON *d = cJSON_CreateObject();
    if (d && team && cJSON_AddItemToObject(d, "team", team)) team = NULL;
    if (d && msg && cJSON_AddItemToObject(d, "msg", msg)) msg = NULL;
    cJSON_Delete(team); cJSON_Delete(msg); cJSON_Delete(members); cJSON_Delete(changed); cJSON_Delete(notify);
    srv_answer_ok(r, d);
}

void srv_h_add_members(const req *r) { change(r, OP_ADD); }
void srv_h_remove_members(const req *r) { change(r, OP_REMOVE); }
void srv_h_leave_team(const req *r) { change(r, OP_LEAVE); }
