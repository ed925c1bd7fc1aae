/* nim-server request handlers: one function per command of docs/protocol.md.
 * Each runs on the event-loop thread, checks every field before acting, acts
 * only on the connection's own account, answers exactly once with a code,
 * and stores before it answers (an acknowledged change survives a crash).
 * sendMsg answers through the group commit below: its reply and pushes are
 * held until the transaction holding the message is committed. */
#include "server/server.h"
#include "core/alloc.h"
#include <libwebsockets.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

int64_t srv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_msg_time(void) {
    int64_t t = srv_now_ms();
    if (t < srv.last_msg_time) t = srv.last_msg_time;
    srv.last_msg_time = t;
    return t;
}

typedef struct {
    srv_conn   *c;
    int64_t     id;
    const char *cmd;
    cJSON      *data;   /* may be NULL: every field absent */
    int         grouped; /* sendMsg: replies go through the open group */
} req;

/* ---- group commit -------------------------------------------------------
 * One entry per sendMsg handled while the group's transaction is open, in
 * the order handled: its printed reply, and the message to push once the
 * transaction is committed. Entries point at their connection; srv_conn_gone
 * clears that pointer, so a connection closing before the flush only loses
 * its replies. */
typedef struct {
    srv_conn *c;                /* NULL once the connection is gone */
    int64_t   id;
    int       code;             /* 200: depends on the commit */
    char     *reply;            /* printed reply frame, or NULL (out of memory) */
    size_t    reply_len;
    cJSON    *msg;              /* stored message to push, or NULL */
    cJSON    *members;          /* team scene: member accounts */
    char      from[NIM_PROTO_MAX_ACCOUNT + 1];
    char      peer[NIM_PROTO_MAX_ACCOUNT + 1]; /* p2p peer, else "" */
} grouped_reply;

static struct {
    int           open;         /* BEGIN IMMEDIATE done, not yet committed */
    size_t        n;
    grouped_reply e[SRV_GROUP_MAX];
} group;

static void push_msg(const srv_conn *from, const char *from_account, const cJSON *msg,
                     const cJSON *members, const char *peer);

/* Adds an entry (data, msg and members are taken). Only while group.open. */
static void group_add(const req *r, int code, const char *error, cJSON *data, cJSON *msg,
                      cJSON *members, const char *peer) {
    grouped_reply *e = &group.e[group.n++];
    memset(e, 0, sizeof *e);
    e->c = r->c;
    e->id = r->id;
    e->code = code;
    cJSON *resp = nim_proto_response(r->id, r->cmd, code, error, data);
    if (resp) {
        e->reply = nim_proto_print(resp, 0, &e->reply_len);
        cJSON_Delete(resp);
    }
    e->msg = msg;
    e->members = members;
    snprintf(e->from, sizeof e->from, "%s", r->c->account);
    snprintf(e->peer, sizeof e->peer, "%s", peer ? peer : "");
}

/* Queues every entry's reply, then (committed) its pushes; empties the group. */
static void group_deliver(int committed) {
    size_t n = group.n;
    group.n = 0;
    for (size_t i = 0; i < n; i++) {
        grouped_reply *e = &group.e[i];
        if (e->c) {
            if (!committed && e->code == NIM_CODE_OK)
                srv_reply(e->c, e->id, nim_proto_cmd_name(NIM_WIRE_SEND_MSG), NIM_CODE_SERVER, NULL, NULL);
            else if (e->reply) srv_queue_raw(e->c, e->reply, e->reply_len);
            else srv_reply(e->c, e->id, nim_proto_cmd_name(NIM_WIRE_SEND_MSG), e->code, NULL, NULL);
        }
        if (committed && e->msg) push_msg(e->c, e->from, e->msg, e->members, e->peer[0] ? e->peer : NULL);
        nim_free(e->reply);
        cJSON_Delete(e->msg);
        cJSON_Delete(e->members);
    }
}

void srv_group_flush(void) {
    if (!group.open) return;
    int rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) srv_db_rollback(srv.db);
    group.open = 0;
    group_deliver(rc == NIM_CODE_OK);
}

static void reply(const req *r, int code, const char *error, cJSON *data) {
    if (r->grouped && group.open) group_add(r, code, error, data, NULL, NULL, NULL);
    else srv_reply(r->c, r->id, r->cmd, code, error, data);
}

static void reply_ok(const req *r, cJSON *data) { reply(r, NIM_CODE_OK, NULL, data); }

/* Field checks inside a handler: on failure answer with the getter's reason. */
#define CHECK(call) do { if ((rc = (call)) != NIM_CODE_OK) { reply(r, rc, err, NULL); return; } } while (0)

static void session_id(char *buf, size_t n, nim_scene scene, const char *to) {
    snprintf(buf, n, "%s-%s", nim_proto_scene_name(scene), to);
}

static cJSON *cursors_obj(int64_t msgs, int64_t state) {
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddNumberToObject(o, "msgs", (double)msgs) ||
              !cJSON_AddNumberToObject(o, "state", (double)state))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Drops items of arr until their printed size fits budget: from the front
 * (oldest) when keep_newest, else from the back. */
static void trim_to_budget(cJSON *arr, size_t budget, int keep_newest) {
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return;
    size_t *len = nim_calloc((size_t)n, sizeof *len), total = 0;
    if (!len) return;
    int i = 0;
    for (cJSON *it = arr->child; it; it = it->next, i++) {
        char *s = cJSON_PrintUnformatted(it);
        len[i] = s ? strlen(s) + 1 : 0;
        total += len[i];
        cJSON_free(s);
    }
    for (int k = 0; total > budget && k < n; k++) {
        int at = keep_newest ? 0 : cJSON_GetArraySize(arr) - 1;
        total -= len[keep_newest ? k : n - 1 - k];
        cJSON_DeleteItemFromArray(arr, at);
    }
    nim_free(len);
}

/* The sync sequence of docs/protocol.md, queued right after the login reply
 * and before anything else can be queued (one thread), so no live push can
 * overtake it. (A login first flushes the group commit: the grouped
 * messages are committed, so the sync reads them, and their pushes went out
 * before this connection counted as logged in.) */
static void sync_account(srv_conn *c, int64_t cur_msgs, int64_t cur_state) {
    int64_t max_msg = 0, max_ver = 0;
    cJSON *roaming = cJSON_CreateArray(), *offline = cJSON_CreateArray();
    cJSON *ptrs = cJSON_CreateArray(), *rcpts = cJSON_CreateArray(), *tops = cJSON_CreateArray();
    int ok = roaming && offline && ptrs && rcpts && tops &&
             srv_db_begin_read(srv.db) == NIM_CODE_OK;
    if (ok) {
        /* One read transaction: a consistent snapshot and its cursors. */
        ok = srv_db_cursors(srv.db, &max_msg, &max_ver) == NIM_CODE_OK &&
             srv_db_roaming_msgs(srv.db, c->account, cur_msgs, SRV_ROAMING_PER_SESSION, roaming) == NIM_CODE_OK &&
             srv_db_offline_msgs(srv.db, c->account, SRV_OFFLINE_LIMIT, offline) == NIM_CODE_OK &&
             srv_db_read_ptrs_since(srv.db, c->account, cur_state, ptrs) == NIM_CODE_OK &&
             srv_db_receipts_since(srv.db, c->account, cur_state, rcpts) == NIM_CODE_OK &&
             srv_db_stick_list(srv.db, c->account, tops) == NIM_CODE_OK;
        srv_db_rollback(srv.db);
    }
    if (!ok) {
        cJSON_Delete(roaming); cJSON_Delete(offline); cJSON_Delete(ptrs);
        cJSON_Delete(rcpts); cJSON_Delete(tops);
        srv_close_after_flush(c, NIM_CLOSE_SERVER_ERROR, "sync failed");
        return;
    }
    trim_to_budget(roaming, SRV_ROAMING_BUDGET, 1);
    trim_to_budget(offline, SRV_OFFLINE_BUDGET, 0);
    /* Never move a cursor backwards (a client may hold a newer one). */
    if (max_msg < cur_msgs) max_msg = cur_msgs;
    if (max_ver < cur_state) max_ver = cur_state;
    if (cJSON_GetArraySize(roaming) > 0)
        srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_ROAMING_MSGS), "msgs", roaming);
    else cJSON_Delete(roaming);
    if (cJSON_GetArraySize(offline) > 0)
        srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_OFFLINE_MSGS), "msgs", offline);
    else cJSON_Delete(offline);
    if (cJSON_GetArraySize(ptrs) > 0)
        srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_READ_POINTERS), "pointers", ptrs);
    else cJSON_Delete(ptrs);
    if (cJSON_GetArraySize(rcpts) > 0)
        srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_RECEIPTS), "receipts", rcpts);
    else cJSON_Delete(rcpts);
    /* The full sticky-top list, always, so a client can drop stale entries. */
    cJSON *d = cJSON_CreateObject();
    if (d && cJSON_AddItemToObject(d, "sessions", tops)) {
        cJSON *p = nim_proto_push(nim_proto_push_name(NIM_PUSH_STICK_TOP_SESSIONS), d);
        srv_queue_json(c, p);
        cJSON_Delete(p);
    } else {
        cJSON_Delete(d);
        cJSON_Delete(tops);
    }
    d = cJSON_CreateObject();
    cJSON *cur = cursors_obj(max_msg, max_ver);
    if (d && cur && cJSON_AddItemToObject(d, "cursors", cur)) {
        cJSON *p = nim_proto_push(nim_proto_push_name(NIM_PUSH_SYNC_DONE), d);
        srv_queue_json(c, p);
        cJSON_Delete(p);
    } else {
        cJSON_Delete(d);
        cJSON_Delete(cur);
        srv_close_after_flush(c, NIM_CLOSE_SERVER_ERROR, "sync failed");
    }
}

static void h_login(const req *r) {
    srv_conn *c = r->c;
    const char *account = NULL, *token = NULL, *device = NULL, *err = NULL;
    int64_t version = 0, cur_msgs = 0, cur_state = 0;
    int rc;
    if (c->logged_in) { reply(r, NIM_CODE_LOGGED_IN, NULL, NULL); return; }
    CHECK(nim_proto_get_int(r->data, "version", 0, NIM_PROTO_MAX_INT, 1, &version, &err));
    if (version != NIM_PROTO_VERSION) {
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddNumberToObject(d, "version", NIM_PROTO_VERSION);
        reply(r, NIM_CODE_VERSION, "protocol version not supported; this server speaks version 1", d);
        return;
    }
    const cJSON *cursors = r->data ? cJSON_GetObjectItemCaseSensitive(r->data, "cursors") : NULL;
    if (cursors && !cJSON_IsNull(cursors) && !cJSON_IsObject(cursors)) {
        reply(r, NIM_CODE_PARAM, "cursors: not an object", NULL);
        return;
    }
    CHECK(nim_proto_get_str(r->data, "account", 1, NIM_PROTO_MAX_ACCOUNT, 1, &account, &err));
    CHECK(nim_proto_get_str(r->data, "token", 1, NIM_PROTO_MAX_TOKEN, 1, &token, &err));
    CHECK(nim_proto_get_str(r->data, "deviceId", 1, NIM_PROTO_MAX_DEVICE, 1, &device, &err));
    CHECK(nim_proto_get_int(cursors, "msgs", 0, NIM_PROTO_MAX_INT, 0, &cur_msgs, &err));
    CHECK(nim_proto_get_int(cursors, "state", 0, NIM_PROTO_MAX_INT, 0, &cur_state, &err));
    if (!nim_proto_valid_account(account)) { reply(r, NIM_CODE_PARAM, "account: not a valid account name", NULL); return; }
    if (!nim_proto_valid_device(device)) { reply(r, NIM_CODE_PARAM, "deviceId: not printable ASCII", NULL); return; }

    int64_t now = srv_now_ms();
    rc = srv_db_check_login(srv.db, account, token, srv.open_registration, now);
    if (rc == NIM_CODE_OK) rc = srv_db_touch_device(srv.db, account, device, now);
    if (rc != NIM_CODE_OK) {
        reply(r, rc, NULL, NULL);
        if (rc == NIM_CODE_AUTH && ++c->auth_failures >= SRV_MAX_AUTH_FAILURES)
            srv_close_after_flush(c, NIM_CLOSE_POLICY, "too many failed logins");
        return;
    }
    /* One live connection per account+device: the newer one wins. */
    for (srv_conn *o = srv.conns; o; o = o->next) {
        if (o != c && o->logged_in && strcmp(o->account, account) == 0 && strcmp(o->device, device) == 0) {
            cJSON *d = cJSON_CreateObject();
            if (d) cJSON_AddStringToObject(d, "reason", "the same device logged in again");
            cJSON *p = nim_proto_push(nim_proto_push_name(NIM_PUSH_KICKED), d);
            srv_queue_json(o, p);
            cJSON_Delete(p);
            srv_close_after_flush(o, NIM_CLOSE_KICKED, "logged in again elsewhere");
            o->logged_in = 0;
        }
    }
    snprintf(c->account, sizeof c->account, "%s", account);
    snprintf(c->device, sizeof c->device, "%s", device);
    c->logged_in = 1;
    /* The login deadline becomes the idle deadline (refreshed per frame). */
    lws_set_timeout(c->wsi, srv.idle_timeout_s > 0 ? PENDING_TIMEOUT_USER_OK : NO_PENDING_TIMEOUT,
                    srv.idle_timeout_s > 0 ? srv.idle_timeout_s : 0);

    cJSON *d = cJSON_CreateObject();
    if (d && (!cJSON_AddStringToObject(d, "account", c->account) ||
              !cJSON_AddStringToObject(d, "deviceId", c->device) ||
              !cJSON_AddNumberToObject(d, "serverTime", (double)now) ||
              !cJSON_AddNumberToObject(d, "version", NIM_PROTO_VERSION))) {
        cJSON_Delete(d);
        d = NULL;
    }
    reply_ok(r, d);
    sync_account(c, cur_msgs, cur_state);
}

static void h_ping(const req *r) {
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddNumberToObject(d, "serverTime", (double)srv_now_ms());
    reply_ok(r, d);
}

static void h_logout(const req *r) {
    reply_ok(r, NULL);
    r->c->logged_in = 0;
    srv_close_after_flush(r->c, NIM_CLOSE_NORMAL, "logout");
}

/* Pushes a stored message to everyone who should see it live: the peer's (or
 * every member's) devices and the sender's other devices (from: the sending
 * connection, NULL if it is gone). */
static void push_msg(const srv_conn *from, const char *from_account, const cJSON *msg,
                     const cJSON *members, const char *peer) {
    cJSON *d = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(msg, 1);
    if (!d || !copy || !cJSON_AddItemToObject(d, "msg", copy)) {
        cJSON_Delete(d);
        cJSON_Delete(copy);
        return;
    }
    cJSON *p = nim_proto_push(nim_proto_push_name(NIM_PUSH_MSG), d);
    size_t len;
    char *s = nim_proto_print(p, 0, &len);
    cJSON_Delete(p);
    if (!s) return;
    for (srv_conn *c = srv.conns; c; c = c->next) {
        if (c == from || !c->logged_in) continue;
        int to_it = strcmp(c->account, from_account) == 0;
        if (!to_it && peer) to_it = strcmp(c->account, peer) == 0;
        for (const cJSON *m = members ? members->child : NULL; m && !to_it; m = m->next)
            to_it = strcmp(c->account, m->valuestring) == 0;
        if (to_it) srv_queue_raw(c, s, len);
    }
    nim_free(s);
}

static void h_send_msg(const req *r) {
    srv_conn *c = r->c;
    const char *scene_s = NULL, *err = NULL;
    nim_proto_msg m = { 0 };
    int rc;
    /* A group never grows past SRV_GROUP_MAX entries (this request adds one). */
    if (group.n >= SRV_GROUP_MAX) srv_group_flush();
    CHECK(nim_proto_get_str(r->data, "scene", 1, 8, 1, &scene_s, &err));
    CHECK(nim_proto_get_str(r->data, "to", 1, NIM_PROTO_MAX_ACCOUNT, 1, &m.to, &err));
    CHECK(nim_proto_get_str(r->data, "type", 1, 16, 1, &m.type, &err));
    CHECK(nim_proto_get_str(r->data, "idClient", 1, NIM_PROTO_MAX_IDCLIENT, 1, &m.id_client, &err));
    CHECK(nim_proto_get_str(r->data, "text", 0, NIM_PROTO_MAX_TEXT, 0, &m.text, &err));
    CHECK(nim_proto_get_str(r->data, "content", 0, NIM_PROTO_MAX_CONTENT, 0, &m.content, &err));
    m.scene = nim_proto_scene_from_name(scene_s);
    if (m.scene == NIM_SCENE_NONE) { reply(r, NIM_CODE_PARAM, "scene: must be \"p2p\" or \"team\"", NULL); return; }
    if (!nim_proto_valid_msg_type(m.type)) { reply(r, NIM_CODE_PARAM, "type: must be \"text\", \"custom\" or \"tip\"", NULL); return; }
    if (strcmp(m.type, "custom") == 0 ? !m.content : !m.text) {
        reply(r, NIM_CODE_PARAM, strcmp(m.type, "custom") == 0 ? "content: missing" : "text: missing", NULL);
        return;
    }
    if (m.scene == NIM_SCENE_P2P ? !nim_proto_valid_account(m.to) : !nim_proto_valid_team_id(m.to)) {
        reply(r, NIM_CODE_PARAM, "to: not a valid account or team id for the scene", NULL);
        return;
    }
    m.from = c->account;
    m.from_device = c->device;

    /* A resend of an idClient I already sent gets the stored message back. */
    cJSON *stored = NULL;
    rc = srv_db_find_client_msg(srv.db, c->account, m.id_client, &stored);
    if (rc == NIM_CODE_OK) {
        cJSON *d = cJSON_CreateObject();
        if (d && cJSON_AddItemToObject(d, "msg", stored)) cJSON_AddTrueToObject(d, "duplicate");
        else { cJSON_Delete(d); cJSON_Delete(stored); d = NULL; }
        reply_ok(r, d);
        return;
    }
    if (rc != NIM_CODE_NOT_FOUND) { reply(r, rc, NULL, NULL); return; }

    cJSON *members = NULL;
    int64_t team_id = 0;
    if (m.scene == NIM_SCENE_P2P) {
        if ((rc = srv_db_account_exists(srv.db, m.to)) != NIM_CODE_OK) {
            reply(r, rc, rc == NIM_CODE_NOT_FOUND ? "to: no such account" : NULL, NULL);
            return;
        }
    } else {
        sscanf(m.to, "%lld", (long long *)&team_id);
        members = cJSON_CreateArray();
        if (!members) { reply(r, NIM_CODE_SERVER, NULL, NULL); return; }
        rc = srv_db_team_members(srv.db, team_id, members, NULL, 0);
        if (rc == NIM_CODE_OK) {
            rc = NIM_CODE_FORBIDDEN;
            for (const cJSON *a = members->child; a; a = a->next)
                if (strcmp(a->valuestring, c->account) == 0) rc = NIM_CODE_OK;
        }
        if (rc != NIM_CODE_OK) {
            cJSON_Delete(members);
            reply(r, rc, rc == NIM_CODE_FORBIDDEN ? "not a member of this team" :
                         rc == NIM_CODE_NOT_FOUND ? "to: no such team" : NULL, NULL);
            return;
        }
    }

    m.time = srv_msg_time();
    char sid[NIM_PROTO_MAX_SESSION_ID + 1];
    /* The first message of a pass opens the group's transaction; each message
     * is a savepoint in it, so a failing one undoes only itself. */
    rc = NIM_CODE_OK;
    if (!group.open) {
        rc = srv_db_begin(srv.db);
        if (rc == NIM_CODE_OK) group.open = 1;
    }
    if (rc == NIM_CODE_OK) rc = srv_db_savepoint(srv.db);
    int in_savepoint = rc == NIM_CODE_OK;
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(srv.db, &m);
    if (m.scene == NIM_SCENE_P2P) {
        /* My copy is delivered (I sent it); the peer's is offline until one
         * of its devices has it. */
        session_id(sid, sizeof sid, NIM_SCENE_P2P, m.to);
        if (rc == NIM_CODE_OK) rc = srv_db_insert_inbox(srv.db, c->account, m.id_server, sid, 1);
        if (rc == NIM_CODE_OK && strcmp(m.to, c->account) != 0) {
            session_id(sid, sizeof sid, NIM_SCENE_P2P, c->account);
            rc = srv_db_insert_inbox(srv.db, m.to, m.id_server, sid,
                                     srv_account_online(m.to, NULL));
        }
    } else {
        session_id(sid, sizeof sid, NIM_SCENE_TEAM, m.to);
        for (const cJSON *a = members->child; a && rc == NIM_CODE_OK; a = a->next) {
            int mine = strcmp(a->valuestring, c->account) == 0;
            rc = srv_db_insert_inbox(srv.db, a->valuestring, m.id_server, sid,
                                     mine || srv_account_online(a->valuestring, NULL));
        }
    }
    if (rc == NIM_CODE_OK) rc = srv_db_release(srv.db);
    if (rc != NIM_CODE_OK) {
        if (in_savepoint) srv_db_rollback_to(srv.db);
        cJSON_Delete(members);
        if (group.open && !srv_db_in_txn(srv.db)) {
            /* SQLite rolled the whole transaction back: nothing of the group
             * is stored, so none of it may be acknowledged. */
            group.open = 0;
            group_deliver(0);
        }
        reply(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    /* Stored, not yet committed: the reply and the pushes wait in the group. */
    cJSON *msg = nim_proto_msg_to_json(&m);
    cJSON *d = cJSON_CreateObject();
    if (!(msg && d && cJSON_AddItemToObject(d, "msg", cJSON_Duplicate(msg, 1)))) {
        cJSON_Delete(d);
        d = NULL;
    }
    group_add(r, NIM_CODE_OK, NULL, d, msg, members, m.scene == NIM_SCENE_P2P ? m.to : NULL);
}

static void h_mark_received(const req *r) {
    const char *err = NULL;
    const cJSON *ids = NULL;
    size_t n = 0;
    int64_t upto = 0, changed = 0, id;
    int rc;
    CHECK(nim_proto_get_array(r->data, "ids", NIM_PROTO_MAX_BATCH, 0, &ids, &n, &err));
    CHECK(nim_proto_get_id(r->data, "upTo", 0, &upto, &err));
    if (!ids && !upto) { reply(r, NIM_CODE_PARAM, "ids or upTo: one is required", NULL); return; }
    for (const cJSON *it = ids ? ids->child : NULL; it; it = it->next) {
        int64_t dummy;
        if (!cJSON_IsString(it) || !nim_proto_valid_team_id(it->valuestring) ||
            sscanf(it->valuestring, "%lld", (long long *)&dummy) != 1) {
            reply(r, NIM_CODE_PARAM, "ids: every item must be a server id string", NULL);
            return;
        }
    }
    rc = srv_db_begin(srv.db);
    for (const cJSON *it = ids ? ids->child : NULL; it && rc == NIM_CODE_OK; it = it->next) {
        sscanf(it->valuestring, "%lld", (long long *)&id);
        rc = srv_db_mark_received(srv.db, r->c->account, id, &changed);
    }
    if (rc == NIM_CODE_OK && upto) rc = srv_db_mark_received_upto(srv.db, r->c->account, upto, &changed);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); reply(r, NIM_CODE_SERVER, NULL, NULL); return; }
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddNumberToObject(d, "count", (double)changed);
    reply_ok(r, d);
}

static void h_update_read(const req *r) {
    const char *err = NULL, *target;
    const cJSON *list = NULL;
    size_t n = 0;
    int rc;
    CHECK(nim_proto_get_array(r->data, "pointers", NIM_PROTO_MAX_BATCH, 1, &list, &n, &err));
    if (n == 0) { reply(r, NIM_CODE_PARAM, "pointers: empty", NULL); return; }
    for (const cJSON *it = list->child; it; it = it->next) {
        const char *sid = NULL;
        int64_t ack;
        if (!cJSON_IsObject(it)) { reply(r, NIM_CODE_PARAM, "pointers: every item must be an object", NULL); return; }
        CHECK(nim_proto_get_str(it, "sessionId", 1, NIM_PROTO_MAX_SESSION_ID, 1, &sid, &err));
        CHECK(nim_proto_get_int(it, "ack", 0, NIM_PROTO_MAX_INT, 1, &ack, &err));
        if (nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE) {
            reply(r, NIM_CODE_PARAM, "sessionId: not p2p-<account> or team-<id>", NULL);
            return;
        }
    }
    cJSON *all = cJSON_CreateArray(), *changed = cJSON_CreateArray();
    rc = (all && changed) ? srv_db_begin(srv.db) : NIM_CODE_SERVER;
    for (const cJSON *it = list->child; it && rc == NIM_CODE_OK; it = it->next) {
        const char *sid = cJSON_GetObjectItemCaseSensitive(it, "sessionId")->valuestring;
        int64_t ack = (int64_t)cJSON_GetObjectItemCaseSensitive(it, "ack")->valuedouble, cur = 0, ver = 0;
        rc = srv_db_read_ptr_get(srv.db, r->c->account, sid, &cur);
        if (rc == NIM_CODE_OK && ack > cur) {  /* pointers only move forward */
            rc = srv_db_next_ver(srv.db, &ver);
            if (rc == NIM_CODE_OK) rc = srv_db_read_ptr_set(srv.db, r->c->account, sid, ack, ver);
            cur = ack;
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddItemToArray(changed, o) || !cJSON_AddStringToObject(o, "sessionId", sid) ||
                !cJSON_AddNumberToObject(o, "ack", (double)ack) || !cJSON_AddNumberToObject(o, "ver", (double)ver))
                rc = NIM_CODE_SERVER;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(all, o) || !cJSON_AddStringToObject(o, "sessionId", sid) ||
            !cJSON_AddNumberToObject(o, "ack", (double)cur))
            rc = NIM_CODE_SERVER;
    }
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) {
        srv_db_rollback(srv.db);
        cJSON_Delete(all);
        cJSON_Delete(changed);
        reply(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    cJSON *d = cJSON_CreateObject();
    if (d && cJSON_AddItemToObject(d, "pointers", all)) reply_ok(r, d);
    else { cJSON_Delete(d); cJSON_Delete(all); reply_ok(r, NULL); }
    if (cJSON_GetArraySize(changed) > 0) {
        cJSON *pd = cJSON_CreateObject();
        if (pd && cJSON_AddItemToObject(pd, "pointers", changed))
            srv_push_account(r->c->account, r->c, nim_proto_push_name(NIM_PUSH_READ_POINTERS), pd);
        else { cJSON_Delete(pd); cJSON_Delete(changed); }
    } else {
        cJSON_Delete(changed);
    }
}

static void h_send_receipt(const req *r) {
    const char *err = NULL;
    int64_t id = 0, cur = 0, ver = 0;
    srv_msg_head h;
    int rc;
    CHECK(nim_proto_get_id(r->data, "idServer", 1, &id, &err));
    rc = srv_db_msg_head(srv.db, id, &h);
    if (rc != NIM_CODE_OK) { reply(r, rc, rc == NIM_CODE_NOT_FOUND ? "idServer: no such message" : NULL, NULL); return; }
    if (h.scene != NIM_SCENE_P2P) { reply(r, NIM_CODE_PARAM, "receipts are for p2p messages only", NULL); return; }
    /* Only the receiver of a message may say it was read. */
    if (strcmp(h.to, r->c->account) != 0) { reply(r, NIM_CODE_FORBIDDEN, "not a message sent to you", NULL); return; }
    rc = srv_db_begin(srv.db);
    if (rc == NIM_CODE_OK) rc = srv_db_receipt_get(srv.db, r->c->account, h.from, &cur);
    int moved = rc == NIM_CODE_OK && h.time > cur;
    if (moved) {
        rc = srv_db_next_ver(srv.db, &ver);
        if (rc == NIM_CODE_OK) rc = srv_db_receipt_set(srv.db, r->c->account, h.from, h.time, id, ver);
    }
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); reply(r, NIM_CODE_SERVER, NULL, NULL); return; }
    char sid[NIM_PROTO_MAX_SESSION_ID + 1], idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    session_id(sid, sizeof sid, NIM_SCENE_P2P, h.from);
    cJSON *d = cJSON_CreateObject();
    if (d) {
        cJSON_AddStringToObject(d, "sessionId", sid);
        cJSON_AddNumberToObject(d, "time", (double)(moved ? h.time : cur));
    }
    reply_ok(r, d);
    if (moved) {
        /* The peer sees it as its session with me. */
        session_id(sid, sizeof sid, NIM_SCENE_P2P, r->c->account);
        cJSON *pd = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *o = cJSON_CreateObject();
        if (pd && arr && o && cJSON_AddItemToArray(arr, o) && cJSON_AddItemToObject(pd, "receipts", arr)) {
            arr = NULL;
            o = NULL;
            cJSON *it = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pd, "receipts"), 0);
            cJSON_AddStringToObject(it, "sessionId", sid);
            cJSON_AddNumberToObject(it, "time", (double)h.time);
            cJSON_AddStringToObject(it, "idServer", idbuf);
            cJSON_AddNumberToObject(it, "ver", (double)ver);
            srv_push_account(h.from, NULL, nim_proto_push_name(NIM_PUSH_RECEIPTS), pd);
        } else {
            cJSON_Delete(pd);
            cJSON_Delete(arr);
            cJSON_Delete(o);
        }
    }
}

static void h_delete_sessions(const req *r) {
    const char *err = NULL, *target;
    const cJSON *list = NULL;
    size_t n = 0;
    int64_t max_msg = 0, max_ver = 0;
    int rc;
    CHECK(nim_proto_get_array(r->data, "sessions", NIM_PROTO_MAX_BATCH, 1, &list, &n, &err));
    if (n == 0) { reply(r, NIM_CODE_PARAM, "sessions: empty", NULL); return; }
    for (const cJSON *it = list->child; it; it = it->next) {
        if (!cJSON_IsString(it) || nim_proto_parse_session_id(it->valuestring, &target) == NIM_SCENE_NONE) {
            reply(r, NIM_CODE_PARAM, "sessions: every item must be p2p-<account> or team-<id>", NULL);
            return;
        }
    }
    int64_t now = srv_now_ms();
    rc = srv_db_begin(srv.db);
    /* The mark is the newest message now: everything up to it stops roaming. */
    if (rc == NIM_CODE_OK) rc = srv_db_cursors(srv.db, &max_msg, &max_ver);
    for (const cJSON *it = list->child; it && rc == NIM_CODE_OK; it = it->next)
        rc = srv_db_delete_session(srv.db, r->c->account, it->valuestring, max_msg, now);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); reply(r, NIM_CODE_SERVER, NULL, NULL); return; }
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddItemToObject(d, "sessions", cJSON_Duplicate(list, 1));
    reply_ok(r, d);
}

/* Replies with the session's sticky-top object and pushes op to my other
 * devices. */
static void stick_reply_push(const req *r, const char *op, cJSON *session) {
    cJSON *d = cJSON_CreateObject();
    cJSON *pd = cJSON_CreateObject();
    cJSON *copy = session ? cJSON_Duplicate(session, 1) : NULL;
    if (d && session && cJSON_AddItemToObject(d, "session", session)) reply_ok(r, d);
    else { cJSON_Delete(d); cJSON_Delete(session); reply_ok(r, NULL); }
    if (pd && copy && cJSON_AddStringToObject(pd, "op", op) && cJSON_AddItemToObject(pd, "session", copy))
        srv_push_account(r->c->account, r->c, nim_proto_push_name(NIM_PUSH_STICK_TOP), pd);
    else { cJSON_Delete(pd); cJSON_Delete(copy); }
}

static void h_stick_top(const req *r, nim_wire_cmd cmd) {
    const char *err = NULL, *sid = NULL, *custom = NULL, *target;
    cJSON *cur = NULL;
    int rc;
    CHECK(nim_proto_get_str(r->data, "sessionId", 1, NIM_PROTO_MAX_SESSION_ID, 1, &sid, &err));
    CHECK(nim_proto_get_str(r->data, "topCustom", 0, NIM_PROTO_MAX_CUSTOM, 0, &custom, &err));
    if (nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE) {
        reply(r, NIM_CODE_PARAM, "sessionId: not p2p-<account> or team-<id>", NULL);
        return;
    }
    rc = srv_db_stick_get(srv.db, r->c->account, sid, &cur);
    if (rc == NIM_CODE_SERVER) { reply(r, rc, NULL, NULL); return; }
    if (cmd != NIM_WIRE_ADD_STICK_TOP && rc == NIM_CODE_NOT_FOUND) {
        reply(r, NIM_CODE_NOT_FOUND, "sessionId: not a sticky-top session", NULL);
        return;
    }
    if (cmd == NIM_WIRE_DELETE_STICK_TOP) {
        cJSON_Delete(cur);
        rc = srv_db_stick_delete(srv.db, r->c->account, sid);
        if (rc != NIM_CODE_OK) { reply(r, rc, NULL, NULL); return; }
        cJSON *s = cJSON_CreateObject();
        if (s) cJSON_AddStringToObject(s, "sessionId", sid);
        stick_reply_push(r, "delete", s);
        return;
    }
    char keep[NIM_PROTO_MAX_CUSTOM + 1] = "";
    if (!custom && cur) {
        /* update without topCustom keeps the old one */
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(cur, "topCustom");
        if (cJSON_IsString(old)) snprintf(keep, sizeof keep, "%s", old->valuestring);
        custom = keep;
    }
    cJSON_Delete(cur);
    cur = NULL;
    rc = srv_db_stick_put(srv.db, r->c->account, sid, custom ? custom : "", srv_now_ms());
    if (rc == NIM_CODE_OK) rc = srv_db_stick_get(srv.db, r->c->account, sid, &cur);
    if (rc != NIM_CODE_OK) { reply(r, NIM_CODE_SERVER, NULL, NULL); return; }
    stick_reply_push(r, cmd == NIM_WIRE_ADD_STICK_TOP ? "add" : "update", cur);
}

static void h_get_stick_top(const req *r) {
    cJSON *arr = cJSON_CreateArray(), *d = cJSON_CreateObject();
    if (!arr || !d || srv_db_stick_list(srv.db, r->c->account, arr) != NIM_CODE_OK ||
        !cJSON_AddItemToObject(d, "sessions", arr)) {
        cJSON_Delete(arr);
        cJSON_Delete(d);
        reply(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    reply_ok(r, d);
}

static void h_create_team(const req *r) {
    const char *err = NULL, *name = NULL;
    const cJSON *accounts = NULL;
    size_t n = 0;
    int rc;
    CHECK(nim_proto_get_str(r->data, "name", 1, NIM_PROTO_MAX_TEAM_NAME, 1, &name, &err));
    CHECK(nim_proto_get_array(r->data, "accounts", NIM_PROTO_MAX_TEAM_SIZE - 1, 1, &accounts, &n, &err));
    cJSON *members = cJSON_CreateArray(), *unknown = cJSON_CreateArray();
    if (!members || !unknown || !cJSON_AddItemToArray(members, cJSON_CreateString(r->c->account))) {
        cJSON_Delete(members); cJSON_Delete(unknown);
        reply(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    for (const cJSON *a = accounts->child; a; a = a->next) {
        if (!cJSON_IsString(a) || !nim_proto_valid_account(a->valuestring)) {
            cJSON_Delete(members); cJSON_Delete(unknown);
            reply(r, NIM_CODE_PARAM, "accounts: every item must be an account name", NULL);
            return;
        }
        int dup = 0;
        for (const cJSON *m = members->child; m && !dup; m = m->next)
            dup = strcmp(m->valuestring, a->valuestring) == 0;
        if (dup) continue;
        rc = srv_db_account_exists(srv.db, a->valuestring);
        if (rc == NIM_CODE_OK) cJSON_AddItemToArray(members, cJSON_CreateString(a->valuestring));
        else if (rc == NIM_CODE_NOT_FOUND) cJSON_AddItemToArray(unknown, cJSON_CreateString(a->valuestring));
        else { cJSON_Delete(members); cJSON_Delete(unknown); reply(r, rc, NULL, NULL); return; }
    }
    if (cJSON_GetArraySize(unknown) > 0) {
        cJSON_Delete(members);
        cJSON *d = cJSON_CreateObject();
        if (d && cJSON_AddItemToObject(d, "unknown", unknown)) unknown = NULL;
        cJSON_Delete(unknown);
        reply(r, NIM_CODE_NOT_FOUND, "accounts: no such account", d);
        return;
    }
    cJSON_Delete(unknown);
    int64_t now = srv_now_ms(), team_id = 0;
    rc = srv_db_begin(srv.db);
    if (rc == NIM_CODE_OK) rc = srv_db_team_create(srv.db, name, r->c->account, now, &team_id);
    for (const cJSON *m = members->child; m && rc == NIM_CODE_OK; m = m->next)
        rc = srv_db_team_add_member(srv.db, team_id, m->valuestring, now);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) {
        srv_db_rollback(srv.db);
        cJSON_Delete(members);
        reply(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)team_id);
    cJSON *team = cJSON_CreateObject();
    if (!team || !cJSON_AddStringToObject(team, "teamId", idbuf) ||
        !cJSON_AddStringToObject(team, "name", name) ||
        !cJSON_AddStringToObject(team, "owner", r->c->account) ||
        !cJSON_AddNumberToObject(team, "createTime", (double)now) ||
        !cJSON_AddItemToObject(team, "members", members)) {
        cJSON_Delete(team);
        reply(r, NIM_CODE_SERVER, NULL, NULL); /* stored, but the reply could not be built */
        return;
    }
    /* Every member's devices learn about the team (mine too, except this one). */
    for (const cJSON *m = members->child; m; m = m->next) {
        cJSON *pd = cJSON_CreateObject();
        if (pd && cJSON_AddItemToObject(pd, "team", cJSON_Duplicate(team, 1)))
            srv_push_account(m->valuestring, r->c, nim_proto_push_name(NIM_PUSH_TEAM), pd);
        else cJSON_Delete(pd);
    }
    cJSON *d = cJSON_CreateObject();
    if (d && cJSON_AddItemToObject(d, "team", team)) reply_ok(r, d);
    else { cJSON_Delete(d); cJSON_Delete(team); reply(r, NIM_CODE_SERVER, NULL, NULL); }
}

void srv_handle_message(srv_conn *c, const char *buf, size_t len) {
    nim_frame f;
    const char *err = NULL;
    if (nim_proto_decode(buf, len, NIM_PROTO_MAX_REQUEST, &f, &err) != NIM_CODE_OK) {
        srv_group_flush(); /* replies stay in request order */
        srv_reply(c, f.id, "", NIM_CODE_BAD_FRAME, err, NULL);
        if (++c->bad_frames >= SRV_MAX_BAD_FRAMES)
            srv_close_after_flush(c, NIM_CLOSE_POLICY, "too many malformed frames");
        return;
    }
    if (f.kind != NIM_FRAME_REQUEST) {
        srv_group_flush();
        srv_reply(c, f.id, "", NIM_CODE_BAD_FRAME, "clients send requests only", NULL);
        nim_frame_free(&f);
        if (++c->bad_frames >= SRV_MAX_BAD_FRAMES)
            srv_close_after_flush(c, NIM_CLOSE_POLICY, "too many malformed frames");
        return;
    }
    req r = { .c = c, .id = f.id, .cmd = f.name, .data = f.data };
    nim_wire_cmd cmd = nim_proto_cmd_from_name(f.name);
    if (cmd == NIM_WIRE_SEND_MSG && c->logged_in) r.grouped = 1;
    else srv_group_flush(); /* everything else sees and orders after the group */
    if (cmd == NIM_WIRE_UNKNOWN) {
        reply(&r, NIM_CODE_UNKNOWN_CMD, "unknown command", NULL);
    } else if (!c->logged_in && cmd != NIM_WIRE_LOGIN && cmd != NIM_WIRE_PING) {
        reply(&r, NIM_CODE_NOT_LOGGED_IN, "log in first", NULL);
    } else {
        switch (cmd) {
        case NIM_WIRE_LOGIN:            h_login(&r); break;
        case NIM_WIRE_LOGOUT:           h_logout(&r); break;
        case NIM_WIRE_PING:             h_ping(&r); break;
        case NIM_WIRE_SEND_MSG:         h_send_msg(&r); break;
        case NIM_WIRE_MARK_RECEIVED:    h_mark_received(&r); break;
        case NIM_WIRE_UPDATE_READ:      h_update_read(&r); break;
        case NIM_WIRE_SEND_RECEIPT:     h_send_receipt(&r); break;
        case NIM_WIRE_DELETE_SESSIONS:  h_delete_sessions(&r); break;
        case NIM_WIRE_ADD_STICK_TOP:
        case NIM_WIRE_UPDATE_STICK_TOP:
        case NIM_WIRE_DELETE_STICK_TOP: h_stick_top(&r, cmd); break;
        case NIM_WIRE_GET_STICK_TOP:    h_get_stick_top(&r); break;
        case NIM_WIRE_CREATE_TEAM:      h_create_team(&r); break;
        default:                       reply(&r, NIM_CODE_UNKNOWN_CMD, NULL, NULL); break;
        }
    }
    nim_frame_free(&f);
}

void srv_conn_gone(srv_conn *c) {
    c->logged_in = 0;
    /* Its grouped replies have nowhere to go; its messages still commit and
     * push (they were stored). */
    for (size_t i = 0; i < group.n; i++)
        if (group.e[i].c == c) group.e[i].c = NULL;
}
