/* nim-server messages: sendMsg and its group commit, markMsgsReceived,
 * sendMsgReceipt, getHistoryMsgs (the other handlers are in handlers.c). sendMsg answers
 * through the group commit: its reply and pushes are held until the
 * transaction holding the message is committed. */
#include "server/handlers.h"
#include "server/throttle.h"
#include "core/alloc.h"
#include <string.h>
#include <stdio.h>

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

/* Adds an entry (data, msg and members are taken). Only while group.open. */
static void group_add(const req *r, int code, const char *error, cJSON *data, cJSON *msg,
                      cJSON *members, const char *peer) {
    grouped_reply *e = &group.e[group.n++];
    memset(e, 0, sizeof *e);
    e->c = r->c;
    e->id = r->id;
    e->code = code;
    if (code == NIM_CODE_SERVER && !error) error = srv_db_storage_error(srv.db);   /* as srv_reply */
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
            else if (e->reply) srv.io->queue(e->c, e->reply, e->reply_len);
            else srv_reply(e->c, e->id, nim_proto_cmd_name(NIM_WIRE_SEND_MSG), e->code, NULL, NULL);
        }
        if (committed && e->msg) srv_push_msg(e->c, e->from, e->msg, e->members, e->peer[0] ? e->peer : NULL);
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

void srv_answer(const req *r, int code, const char *error, cJSON *data) {
    if (r->grouped && group.open) group_add(r, code, error, data, NULL, NULL, NULL);
    else srv_reply(r->c, r->id, r->cmd, code, error, data);
}

void srv_answer_ok(const req *r, cJSON *data) { srv_answer(r, NIM_CODE_OK, NULL, data); }

static void session_id(char *buf, size_t n, nim_scene scene, const char *to) {
    snprintf(buf, n, "%s-%s", nim_proto_scene_name(scene), to);
}

/* Pushes a stored message to everyone who should see it live: the peer's (or
 * every member's) devices and the sender's other devices (from: the sending
 * connection, NULL if it is gone). */
void srv_push_msg(const srv_conn *from, const char *from_account, const cJSON *msg,
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
        if (c == from || !srv_conn_live(c)) continue;
        int to_it = strcmp(c->account, from_account) == 0;
        if (!to_it && peer) to_it = strcmp(c->account, peer) == 0;
        for (const cJSON *m = members ? members->child : NULL; m && !to_it; m = m->next)
            to_it = strcmp(c->account, m->valuestring) == 0;
        if (to_it) srv.io->queue(c, s, len);
    }
    nim_free(s);
}

/* Answers r with the message its sender already stored under m's
 * idClient ("duplicate": true); NIM_CODE_NOT_FOUND (nothing answered)
 * when there is none. */
static int answer_stored(const req *r, const nim_proto_msg *m) {
    cJSON *stored = NULL;
    int rc = srv_db_find_client_msg(srv.db, m->from, m->id_client, &stored);
    if (rc != NIM_CODE_OK) return rc;
    cJSON *d = cJSON_CreateObject();
    if (d && cJSON_AddItemToObject(d, "msg", stored)) cJSON_AddTrueToObject(d, "duplicate");
    else { cJSON_Delete(d); cJSON_Delete(stored); d = NULL; }
    srv_answer_ok(r, d);
    return NIM_CODE_OK;
}

void srv_h_send_msg(const req *r) {
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
    if (m.scene == NIM_SCENE_NONE) { srv_answer(r, NIM_CODE_PARAM, "scene: must be \"p2p\" or \"team\"", NULL); return; }
    if (!nim_proto_valid_msg_type(m.type) || strcmp(m.type, "notification") == 0) {
        srv_answer(r, NIM_CODE_PARAM, "type: must be \"text\", \"custom\" or \"tip\"", NULL);
        return;
    }
    if (strcmp(m.type, "custom") == 0 ? !m.content : !m.text) {
        srv_answer(r, NIM_CODE_PARAM, strcmp(m.type, "custom") == 0 ? "content: missing" : "text: missing", NULL);
        return;
    }
    if (m.scene == NIM_SCENE_P2P ? !nim_proto_valid_account(m.to) : !nim_proto_valid_team_id(m.to)) {
        srv_answer(r, NIM_CODE_PARAM, "to: not a valid account or team id for the scene", NULL);
        return;
    }
    m.from = c->account;
    m.from_device = c->device;

    /* A resend of an idClient I already sent gets the stored message back. */
    rc = answer_stored(r, &m);
    if (rc == NIM_CODE_OK) return;
    if (rc != NIM_CODE_NOT_FOUND) { srv_answer(r, rc, NULL, NULL); return; }

    cJSON *members = NULL;
    int64_t team_id = 0;
    if (m.scene == NIM_SCENE_P2P) {
        if ((rc = srv_db_account_exists(srv.db, m.to)) != NIM_CODE_OK) {
            /* a 404 says the name is free: only so many of those */
            if (rc == NIM_CODE_NOT_FOUND) srv_answer_unknown(r, NULL, "to: no such account");
            else srv_answer(r, rc, NULL, NULL);
            return;
        }
    } else {
        sscanf(m.to, "%lld", (long long *)&team_id);
        members = cJSON_CreateArray();
        if (!members) { srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
        rc = srv_db_team_members(srv.db, team_id, members, NULL, 0);
        if (rc == NIM_CODE_OK) {
            rc = NIM_CODE_FORBIDDEN;
            for (const cJSON *a = members->child; a; a = a->next)
                if (strcmp(a->valuestring, c->account) == 0) rc = NIM_CODE_OK;
        }
        if (rc != NIM_CODE_OK) {
            cJSON_Delete(members);
            srv_answer(r, rc, rc == NIM_CODE_FORBIDDEN ? "not a member of this team" :
                         rc == NIM_CODE_NOT_FOUND ? "to: no such team" : NULL, NULL);
            return;
        }
    }

    /* the account's storage: what it has sent, within --max-storage-mb */
    int64_t used = 0;
    if ((rc = srv_db_stored_bytes(srv.db, c->account, &used)) != NIM_CODE_OK) {
        cJSON_Delete(members);
        srv_answer(r, rc, NULL, NULL);
        return;
    }
    if (used + srv_msg_bytes(&m) > srv.max_storage) {
        char why[128];
        snprintf(why, sizeof why, "limit reached: at most %lld MiB of messages per account",
                 (long long)(srv.max_storage >> 20));
        cJSON_Delete(members);
        srv_answer(r, NIM_CODE_LIMIT, why, NULL);
        return;
    }
    /* the send rate, once the request is valid and not a resend: a
     * resend of a stored message is answered above, whatever the rate */
    int64_t wait = srv_throttle_send(c->account, srv.send_rate, srv_mono_ms());
    if (wait > 0) {
        char why[128];
        snprintf(why, sizeof why, "sending too fast: at most %d messages a second per account; "
                 "try again in %lld ms", srv.send_rate, (long long)wait);
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddNumberToObject(d, "retryAfter", (double)wait);
        srv_answer(r, NIM_CODE_THROTTLED, why, d);
        return;
    }
    char sid[NIM_PROTO_MAX_SESSION_ID + 1];
    /* The first message of a pass opens the group's transaction; each message
     * is a savepoint in it, so a failing one undoes only itself. Its time
     * is taken inside it (on shared storage, after every other node's). */
    rc = NIM_CODE_OK;
    if (!group.open) {
        rc = srv_db_begin(srv.db);
        if (rc == NIM_CODE_OK) group.open = 1;
    }
    m.time = srv_msg_time();
    if (rc == NIM_CODE_OK) rc = srv_db_savepoint(srv.db);
    int in_savepoint = rc == NIM_CODE_OK;
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(srv.db, &m);
    if (rc == NIM_CODE_FORBIDDEN) {
        /* stored meanwhile under this idClient (through another node, after
         * the check above): nothing was written; answered as the resend it is */
        if (answer_stored(r, &m) == NIM_CODE_OK) {
            srv_db_release(srv.db);   /* a failure fails the group's commit */
            cJSON_Delete(members);
            return;
        }
        rc = NIM_CODE_SERVER;
    }
    if (m.scene == NIM_SCENE_P2P) {
        /* My copy is delivered (I sent it); the peer's is offline until one
         * of its devices has stored it and said so (markMsgsReceived). */
        session_id(sid, sizeof sid, NIM_SCENE_P2P, m.to);
        if (rc == NIM_CODE_OK) rc = srv_db_insert_inbox(srv.db, c->account, m.id_server, sid, 1);
        if (rc == NIM_CODE_OK && strcmp(m.to, c->account) != 0) {
            session_id(sid, sizeof sid, NIM_SCENE_P2P, c->account);
            rc = srv_db_insert_inbox(srv.db, m.to, m.id_server, sid, 0);
        }
    } else {
        session_id(sid, sizeof sid, NIM_SCENE_TEAM, m.to);
        for (const cJSON *a = members->child; a && rc == NIM_CODE_OK; a = a->next) {
            int mine = strcmp(a->valuestring, c->account) == 0;
            rc = srv_db_insert_inbox(srv.db, a->valuestring, m.id_server, sid, mine);
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
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
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

void srv_h_mark_received(const req *r) {
    const char *err = NULL;
    const cJSON *ids = NULL;
    size_t n = 0;
    int64_t upto = 0, changed = 0, id;
    int rc;
    CHECK(nim_proto_get_array(r->data, "ids", NIM_PROTO_MAX_BATCH, 0, &ids, &n, &err));
    CHECK(nim_proto_get_id(r->data, "upTo", 0, &upto, &err));
    if (!ids && !upto) { srv_answer(r, NIM_CODE_PARAM, "ids or upTo: one is required", NULL); return; }
    for (const cJSON *it = ids ? ids->child : NULL; it; it = it->next) {
        int64_t dummy;
        if (!cJSON_IsString(it) || !nim_proto_valid_team_id(it->valuestring) ||
            sscanf(it->valuestring, "%lld", (long long *)&dummy) != 1) {
            srv_answer(r, NIM_CODE_PARAM, "ids: every item must be a server id string", NULL);
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
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddNumberToObject(d, "count", (double)changed);
    srv_answer_ok(r, d);
}

void srv_h_send_receipt(const req *r) {
    const char *err = NULL;
    int64_t id = 0, cur = 0, ver = 0;
    srv_msg_head h;
    int rc;
    CHECK(nim_proto_get_id(r->data, "idServer", 1, &id, &err));
    rc = srv_db_msg_head(srv.db, id, &h);
    if (rc != NIM_CODE_OK) { srv_answer(r, rc, rc == NIM_CODE_NOT_FOUND ? "idServer: no such message" : NULL, NULL); return; }
    if (h.scene != NIM_SCENE_P2P) { srv_answer(r, NIM_CODE_PARAM, "receipts are for p2p messages only", NULL); return; }
    /* Only the receiver of a message may say it was read. */
    if (strcmp(h.to, r->c->account) != 0) { srv_answer(r, NIM_CODE_FORBIDDEN, "not a message sent to you", NULL); return; }
    if ((rc = srv_db_receipt_get(srv.db, r->c->account, h.from, &cur)) != NIM_CODE_OK) {
        srv_answer(r, rc, NULL, NULL);
        return;
    }
    if (cur == 0 && srv_check_cap(r, SRV_ROWS_RECEIPTS, 1) != NIM_CODE_OK) return;
    rc = srv_db_begin(srv.db);   /* one thread: cur is still the stored time */
    int moved = rc == NIM_CODE_OK && h.time > cur;
    if (moved) {
        rc = srv_db_next_ver(srv.db, &ver);
        if (rc == NIM_CODE_OK) rc = srv_db_receipt_set(srv.db, r->c->account, h.from, h.time, id, ver);
    }
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
    char sid[NIM_PROTO_MAX_SESSION_ID + 1], idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)id);
    session_id(sid, sizeof sid, NIM_SCENE_P2P, h.from);
    cJSON *d = cJSON_CreateObject();
    if (d) {
        cJSON_AddStringToObject(d, "sessionId", sid);
        cJSON_AddNumberToObject(d, "time", (double)(moved ? h.time : cur));
    }
    srv_answer_ok(r, d);
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

/* getHistoryMsgs: the reply being filled (srv_db_row_cb). */
typedef struct {
    cJSON *msgs;
    int    n, limit, more, failed;
    size_t bytes;
} history_page;

static int take_history(void *ud, cJSON *msg, int64_t id, int delivered) {
    history_page *h = ud;
    (void)id; (void)delivered;
    size_t len = 0;
    char *s = h->n < h->limit ? nim_proto_print(msg, 0, &len) : NULL;
    nim_free(s);
    /* a row past the limit, or past the byte budget: there is more */
    if (h->n >= h->limit || (h->n > 0 && h->bytes + len > SRV_HISTORY_BYTES)) {
        cJSON_Delete(msg);
        h->more = 1;
        return 1;
    }
    if (!s) { cJSON_Delete(msg); h->failed = 1; return 1; }
    cJSON_AddItemToArray(h->msgs, msg);
    h->n++;
    h->bytes += len;
    return 0;
}

void srv_h_get_history(const req *r) {
    const char *scene_s = NULL, *to = NULL, *err = NULL;
    int64_t begin = 0, end = 0, last = 0, limit = NIM_PROTO_MAX_HISTORY;
    int reverse = 0, rc;
    CHECK(nim_proto_get_str(r->data, "scene", 1, 8, 1, &scene_s, &err));
    CHECK(nim_proto_get_str(r->data, "to", 1, NIM_PROTO_MAX_ACCOUNT, 1, &to, &err));
    CHECK(nim_proto_get_int(r->data, "beginTime", 0, NIM_PROTO_MAX_INT, 0, &begin, &err));
    CHECK(nim_proto_get_int(r->data, "endTime", 0, NIM_PROTO_MAX_INT, 0, &end, &err));
    CHECK(nim_proto_get_id(r->data, "lastMsgId", 0, &last, &err));
    CHECK(nim_proto_get_int(r->data, "limit", 1, NIM_PROTO_MAX_HISTORY, 0, &limit, &err));
    CHECK(nim_proto_get_bool(r->data, "reverse", 0, &reverse, &err));
    nim_scene scene = nim_proto_scene_from_name(scene_s);
    if (scene == NIM_SCENE_NONE) { srv_answer(r, NIM_CODE_PARAM, "scene: not p2p or team", NULL); return; }
    if (scene == NIM_SCENE_P2P ? !nim_proto_valid_account(to) : !nim_proto_valid_team_id(to)) {
        srv_answer(r, NIM_CODE_PARAM, scene == NIM_SCENE_P2P ? "to: not a valid account name"
                                                           : "to: not a team id", NULL);
        return;
    }
    if (end == 0) end = NIM_PROTO_MAX_INT;                 /* no upper bound */
    if (begin > end) { srv_answer(r, NIM_CODE_PARAM, "beginTime: after endTime", NULL); return; }
    /* lastMsgId pages on from the last message of the previous reply */
    srv_history_query q = { .begin_time = begin, .end_time = end, .after = 0,
                            .before = NIM_PROTO_MAX_INT, .asc = reverse, .limit = (int)limit + 1 };
    if (last > 0) { if (reverse) q.after = last; else q.before = last; }
    char sid[NIM_PROTO_MAX_SESSION_ID + 1];
    session_id(sid, sizeof sid, scene, to);
    srv_group_flush();   /* read only what is committed: the group may roll back */
    history_page h = { .msgs = cJSON_CreateArray(), .limit = (int)limit };
    cJSON *d = cJSON_CreateObject();
    rc = h.msgs && d ? srv_db_history(srv.db, r->c->account, sid, &q, take_history, &h) : NIM_CODE_SERVER;
    if (rc != NIM_CODE_OK || h.failed || !cJSON_AddBoolToObject(d, "more", h.more) ||
        !cJSON_AddItemToObject(d, "msgs", h.msgs)) {
        cJSON_Delete(h.msgs);
        cJSON_Delete(d);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    srv_answer_ok(r, d);
}

void srv_group_forget(const srv_conn *c) {
    for (size_t i = 0; i < group.n; i++)
        if (group.e[i].c == c) group.e[i].c = NULL;
}
