/* Requests in flight and the app's network commands (see
 * client_private.h for the file map). Every request gets an id, a
 * deadline (one timeout for all, so the oldest expires first) and an
 * answer: the server's reply, Error_Timeout, or Not_Connected when the
 * link goes first. Frames are queued here and written by conn.c from
 * LWS_CALLBACK_CLIENT_WRITEABLE. */
#include "net/client_private.h"
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ output */

void net_out_free(nim_net *n) {
    while (n->out_head) {
        out_frame *o = n->out_head;
        n->out_head = o->next;
        nim_free(o->buf);
        nim_free(o);
    }
    n->out_tail = NULL;
}

/* Queues a request frame and asks for WRITEABLE. Takes data. 0 or -1. */
static int send_request(nim_net *n, int64_t id, nim_wire_cmd cmd, cJSON *data) {
    cJSON *root = nim_proto_request(id, nim_proto_cmd_name(cmd), data);
    if (!root) return -1;
    size_t len;
    char *buf = nim_proto_print(root, LWS_PRE, &len);
    cJSON_Delete(root);
    if (!buf) return -1;
    if (len > NIM_PROTO_MAX_REQUEST) { nim_free(buf); return -1; }
    out_frame *o = nim_malloc(sizeof *o);
    if (!o) { nim_free(buf); return -1; }
    o->next = NULL;
    o->len = len;
    o->buf = buf;
    if (n->out_tail) n->out_tail->next = o; else n->out_head = o;
    n->out_tail = o;
    if (n->wsi) lws_callback_on_writable(n->wsi);
    return 0;
}

/* ------------------------------------------------------- in flight */

static void on_deadline(lws_sorted_usec_list_t *sul);

static void arm_deadline(nim_net *n) {
    if (!n->pend || !n->ctx) return;
    net_schedule_ms(n, &n->sul_deadline, on_deadline, n->pend->deadline - net_mono_ms());
}

pending *net_request(nim_net *n, request_kind kind, int cmd, uint64_t req, nim_wire_cmd wire,
                     cJSON *data, cJSON *msg) {
    pending *p = nim_calloc(1, sizeof *p);
    if (!p) { cJSON_Delete(data); cJSON_Delete(msg); return NULL; }
    p->id = ++n->next_id;
    p->kind = kind;
    p->cmd = cmd;
    p->req = req;
    p->msg = msg;
    p->deadline = net_mono_ms() + n->req_timeout;
    if (send_request(n, p->id, wire, data) < 0) {
        cJSON_Delete(msg);
        nim_free(p);
        return NULL;
    }
    int first = !n->pend;
    if (n->pend_tail) n->pend_tail->next = p; else n->pend = p;
    n->pend_tail = p;
    if (first) arm_deadline(n);
    return p;
}

static void pending_free(pending *p) {
    cJSON_Delete(p->msg);
    nim_free(p);
}

/* Unlinks *pp (prev is the node before it, NULL at the head). */
static pending *unlink_pending(nim_net *n, pending **pp, pending *prev) {
    pending *p = *pp;
    *pp = p->next;
    if (n->pend_tail == p) n->pend_tail = prev;
    p->next = NULL;
    return p;
}

/* The request with id (usually the oldest: replies come in request order). */
static pending *take_pending(nim_net *n, int64_t id) {
    pending *prev = NULL;
    for (pending **pp = &n->pend; *pp; prev = *pp, pp = &(*pp)->next)
        if ((*pp)->id == id) return unlink_pending(n, pp, prev);
    return NULL;
}

/* The oldest request, unlinked, or NULL. */
static pending *pop_pending(nim_net *n) {
    return n->pend ? unlink_pending(n, &n->pend, NULL) : NULL;
}

/* ------------------------------------------------------- sending status */

/* Queues onupdatesession for msg's session with msg as lastMsg (the
 * "sending" / "fail" states, which are not stored). */
static void update_with(nim_net *n, const cJSON *msg) {
    if (!(n->want & NIM_NET_WANT_UPDATES)) return;
    const char *sid = nim_jstr(msg, "sessionId");
    if (!sid) return;
    cJSON *s = nim_engine_session_json(n->e, sid);
    if (!s) {
        s = cJSON_CreateObject();
        if (!s) return;
        cJSON_AddStringToObject(s, "id", sid);
        cJSON_AddStringToObject(s, "scene", nim_jstr(msg, "scene"));
        cJSON_AddStringToObject(s, "to", nim_jstr(msg, "target"));
        cJSON_AddNumberToObject(s, "unread", 0);
        cJSON_AddBoolToObject(s, "isTop", 0);
    }
    cJSON *copy = cJSON_Duplicate(msg, 1);
    if (copy) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, "lastMsg");
        cJSON_AddItemToObject(s, "lastMsg", copy);
    }
    double t = (double)nim_jnum(msg, "time");
    if (nim_jnum(s, "updateTime") < (int64_t)t) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, "updateTime");
        cJSON_AddNumberToObject(s, "updateTime", t);
    }
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(s); return; }
    ev->type = NIM_EV_UPDATE_SESSION;
    ev->data = s;
    nim_engine_emit(n->e, ev);
}

/* sendMsg failed: the session shows its message as "fail". */
static void show_failed(nim_net *n, int cmd, cJSON *msg) {
    if (cmd != NIM_NETCMD_SEND_MSG || !msg) return;
    nim_jset(msg, "status", "fail");
    update_with(n, msg);
}

/* Replies to an app request with a server error code. */
static void reply_code(nim_net *n, uint64_t req, int code, const char *error) {
    nim_event *ev = nim_calloc(1, sizeof *ev);
    /* out of memory: the engine's reserved reply still answers the request */
    if (!ev) { nim_engine_reply(n->e, req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    ev->type = NIM_EV_DONE;
    ev->req = req;
    ev->numcode = code;
    ev->message = nim_strdup(error ? error : nim_proto_code_text(code));
    nim_engine_emit(n->e, ev);
}

/* A request that the server will not answer. Frees p. */
static void fail_pending(nim_net *n, pending *p, const char *code, const char *why) {
    if (p->kind == RQ_APP) {
        show_failed(n, p->cmd, p->msg);
        nim_engine_reply(n->e, p->req, code, why, NULL);
    }
    if (p->kind == RQ_ACKS) net_acks_answered(n, p, 0);   /* still in the outbox */
    if (p->kind == RQ_MARK) net_on_mark_reply(n, 0);      /* the messages stay offline */
    pending_free(p);
}

/* The oldest held request, unlinked, or NULL. */
static held_cmd *pop_held(nim_net *n) {
    held_cmd *h = n->held;
    if (h && !(n->held = h->next)) n->held_tail = NULL;
    return h;
}

void net_fail_all(nim_net *n, const char *code, const char *why) {
    for (pending *p; (p = pop_pending(n));) fail_pending(n, p, code, why);
    for (held_cmd *h; (h = pop_held(n));) {
        nim_engine_reply(n->e, h->req, code, why, NULL);
        cJSON_Delete(h->args);
        nim_free(h);
    }
}

void net_free_requests(nim_net *n) {
    for (held_cmd *h; (h = pop_held(n));) {
        if (n->e) nim_engine_reply(n->e, h->req, NIM_ERR_CLOSED, "the instance was destroyed", NULL);
        cJSON_Delete(h->args);
        nim_free(h);
    }
    for (pending *p; (p = pop_pending(n));) {
        if (p->kind == RQ_APP && n->e) nim_engine_reply(n->e, p->req, NIM_ERR_CLOSED, "the instance was destroyed", NULL);
        pending_free(p);
    }
}

static void on_deadline(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, sul_deadline);
    int64_t now = net_mono_ms();
    while (n->pend && n->pend->deadline <= now) {
        pending *p = pop_pending(n);
        if (p->kind == RQ_LOGIN) {
            pending_free(p);
            net_drop(n, 1006, "login timed out");
            continue;
        }
        fail_pending(n, p, NIM_ERR_TIMEOUT, "no reply from the server in time");
    }
    arm_deadline(n);
}

/* ------------------------------------------------------- app commands */

/* sendMsg: gives the message an idClient when it has none; returns the
 * local "sending" copy the session shows meanwhile (NULL: no memory). */
static cJSON *sending_copy(nim_net *n, cJSON *a) {
    char idc[64];
    if (!nim_jstr(a, "idClient")) {
        snprintf(idc, sizeof idc, "%s-%s-%llu", n->device, n->idc_prefix,
                 (unsigned long long)++n->idc_counter);
        if (strlen(idc) > NIM_PROTO_MAX_IDCLIENT || strlen(n->device) > 30)
            snprintf(idc, sizeof idc, "%s-%llu", n->idc_prefix, (unsigned long long)n->idc_counter);
        cJSON_AddStringToObject(a, "idClient", idc);
    }
    cJSON *m = cJSON_Duplicate(a, 1);
    if (m) {
        const char *scene = nim_jstr(a, "scene"), *to = nim_jstr(a, "to");
        char sid[160];
        snprintf(sid, sizeof sid, "%s-%s", scene ? scene : "", to ? to : "");
        cJSON_AddStringToObject(m, "from", n->account);
        cJSON_AddStringToObject(m, "fromDevice", n->device);
        cJSON_AddNumberToObject(m, "time", (double)net_wall_ms());
        cJSON_AddStringToObject(m, "flow", "out");
        cJSON_AddStringToObject(m, "target", to ? to : "");
        cJSON_AddStringToObject(m, "sessionId", sid);
        cJSON_AddStringToObject(m, "status", "sending");
    }
    return m;
}

/* getHistoryMsgs waits for the end of the sync (held_cmd), at most
 * MAX_HELD of them. */
enum { MAX_HELD = 1000 };

static void hold(nim_net *n, nim_cmd *c) {
    int count = 0;
    for (held_cmd *x = n->held; x; x = x->next) count++;
    if (count >= MAX_HELD) {
        nim_engine_reply(n->e, c->req, NIM_ERR_BAD_ARGS, "too many getHistoryMsgs waiting for the sync to end", NULL);
        return;
    }
    held_cmd *h = nim_calloc(1, sizeof *h);
    if (!h) { nim_engine_reply(n->e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    h->cmd = c->type;
    h->req = c->req;
    h->args = c->args;
    c->args = NULL;
    if (n->held_tail) n->held_tail->next = h; else n->held = h;
    n->held_tail = h;
}

void net_release_held(nim_net *n) {
    for (held_cmd *h; n->sync == SYNC_NONE && (h = pop_held(n));) {
        nim_cmd c = { .type = h->cmd, .req = h->req, .args = h->args };
        nim_free(h);
        net_command(n, &c);
        cJSON_Delete(c.args);   /* NULL when taken */
    }
}

/* getHistoryMsgs' state across its pages: {args: the app's query, msgs: []}. */
static cJSON *history_state(const cJSON *args) {
    cJSON *st = cJSON_CreateObject(), *a = cJSON_Duplicate(args, 1), *m = cJSON_CreateArray();
    if (st && a && m && cJSON_AddItemToObject(st, "args", a)) {
        a = NULL;
        if (cJSON_AddItemToObject(st, "msgs", m)) return st;
    }
    cJSON_Delete(st);
    cJSON_Delete(a);
    cJSON_Delete(m);
    return NULL;
}

/* connect / disconnect: the link itself, answered at once. */
static void link_command(nim_net *n, nim_cmd *c) {
    if (c->type == NIM_NETCMD_DISCONNECT) {
        n->user_down = 1;
        lws_sul_cancel(&n->sul_reconnect);
        if (n->wsi) {
            n->app_closed = 1;
            net_drop(n, 1000, "disconnected by the app");
        }
        nim_engine_reply(n->e, c->req, NULL, NULL, NULL);
        return;
    }
    if (n->local || !n->ctx) {
        nim_engine_reply(n->e, c->req, NIM_ERR_NOT_CONNECTED, "no server configured", NULL);
        return;
    }
    n->user_down = 0;
    n->retries = 0;
    n->round_start = n->cur;
    n->connect_reported = 0;      /* the app asked: a failure to connect is news again */
    if (n->state == CONN_IDLE && !n->wsi) net_connect(n);
    nim_engine_reply(n->e, c->req, NULL, NULL, NULL);
}

/* The engine's command hook: NIM_NETCMD_* (net/cmdtable.h) become
 * requests, named by the one command table. */
void net_command(nim_net *n, nim_cmd *c) {
    if (c->type == NIM_NETCMD_DISCONNECT || c->type == NIM_NETCMD_CONNECT) {
        link_command(n, c);
        return;
    }
    if (c->type == NIM_NETCMD_GET_HISTORY && (n->state == CONN_LOGIN || n->sync != SYNC_NONE)) {
        hold(n, c);   /* sent once the sync has ended */
        return;
    }
    if (n->state != CONN_SYNC && n->state != CONN_READY) {
        nim_engine_reply(n->e, c->req, NIM_ERR_NOT_CONNECTED,
                         n->local ? "no server configured (local-only mode)" : "not connected", NULL);
        return;
    }
    const nim_command *row = nim_command_by_id(c->type);
    if (!row || row->wire == NIM_WIRE_UNKNOWN) {
        nim_engine_reply(n->e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
        return;
    }
    cJSON *data = c->args, *msg = NULL, *kept = NULL;
    c->args = NULL;   /* taken by the request */
    if (c->type == NIM_NETCMD_SEND_MSG && (msg = sending_copy(n, data))) {
        update_with(n, msg);
        kept = cJSON_Duplicate(msg, 1);
    }
    if (c->type == NIM_NETCMD_GET_HISTORY && !(kept = history_state(data))) {
        cJSON_Delete(data);
        nim_engine_reply(n->e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    if (!net_request(n, RQ_APP, c->type, c->req, row->wire, data, kept)) {
        show_failed(n, c->type, msg);
        nim_engine_reply(n->e, c->req, NIM_ERR_BAD_ARGS, "request over 65536 bytes (or out of memory)", NULL);
    }
    cJSON_Delete(msg);
}

/* --------------------------------------------------------- replies */

/* 1 when a[k] and b[k] are the same string. */
static int same_str(const cJSON *a, const cJSON *b, const char *k) {
    const char *x = nim_jstr(a, k), *y = nim_jstr(b, k);
    return x && y && strcmp(x, y) == 0;
}

/* A message of mine from a reply (m: in no list), stored, normalised in
 * place, with the cursor it advances: 0, or -1 when it could not be. During
 * a sync the cursor stays where the sync's pages put it: this id may be
 * above messages not yet synced. */
static int store_mine(nim_net *n, cJSON *m) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return -1;
    cJSON_AddItemToArray(arr, m);       /* lent, taken back below */
    nim_engine_cursor c = { KEY_MSGS, nim_jid(m, "idServer"), NULL };
    int rc = nim_engine_ingest(n->e, &(nim_ingest){ .msgs = arr, .cursor = n->sync == SYNC_NONE ? &c : NULL });
    cJSON_DetachItemViaPointer(arr, m);
    cJSON_Delete(arr);
    if (rc < 0) return -1;
    if (n->sync == SYNC_NONE && c.value > n->cur_msgs) n->cur_msgs = c.value;
    return 0;
}

/* sendMsg's reply: the message as the server stored it, stored here too,
 * once it is checked to be the message sent (p->msg, the sending copy; it
 * is missing only when memory ran out). */
static void on_sent(nim_net *n, pending *p, cJSON *data) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(data, "msg");
    const char *why = NULL;
    /* the reply must be the message sent: mine, same idClient, same target */
    if (!net_check_msg(n, m, NULL, &why) ||
        strcmp(nim_jstr(m, "from"), n->account) != 0 ||
        (p->msg && (!same_str(m, p->msg, "idClient") || !same_str(m, p->msg, "to") ||
                    !same_str(m, p->msg, "scene")))) {
        show_failed(n, p->cmd, p->msg);
        reply_code(n, p->req, NIM_CODE_SERVER, "the server's reply is not the message sent");
        net_refuse(n, why ? why : "a sendMsg reply for another message");
        return;
    }
    cJSON_DetachItemViaPointer(data, m);
    if (store_mine(n, m) < 0) {
        cJSON_Delete(m);
        nim_engine_reply(n->e, p->req, NIM_ERR_DB, "sent, but could not be stored", NULL);
        return;
    }
    nim_engine_reply(n->e, p->req, NULL, NULL, m);
}

/* add/removeTeamMembers, leaveTeam: the change's notification (mine: my
 * other devices get it pushed) stored here too, then the reply. */
static void on_team_changed(nim_net *n, pending *p, nim_frame *f) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(f->data, "msg");
    const char *why = NULL;
    if (m && (!net_check_msg(n, m, NULL, &why) || strcmp(nim_jstr(m, "from"), n->account) != 0 ||
              strcmp(nim_jstr(m, "type"), "notification") != 0)) {
        reply_code(n, p->req, NIM_CODE_SERVER, "the server's reply is not this change's notification");
        net_refuse(n, why ? why : "a team change reply with another message");
        return;
    }
    if (m) {
        cJSON_DetachItemViaPointer(f->data, m);
        int stored = store_mine(n, m) == 0;
        cJSON_AddItemToObject(f->data, "msg", m);
        if (!stored) {
            nim_engine_reply(n->e, p->req, NIM_ERR_DB, "changed, but its notification could not be stored", NULL);
            return;
        }
    }
    cJSON *d = f->data;
    if (d) cJSON_DetachItemViaPointer(f->root, d);
    nim_engine_reply(n->e, p->req, NULL, NULL, d);
}

/* add/update/deleteStickTopSession's reply: the change stored here too. */
static void on_top_changed(nim_net *n, pending *p, cJSON *data) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(data, "session");
    cJSON *arr = cJSON_CreateArray(), *item = cJSON_Duplicate(s, 1);
    if (arr && item) {
        cJSON_AddBoolToObject(item, "isTop", p->cmd != NIM_NETCMD_DELETE_TOP);
        cJSON_AddItemToArray(arr, item);
        nim_engine_apply_tops(n->e, arr, 0);
    } else {
        cJSON_Delete(item);
    }
    cJSON_Delete(arr);
    if (cJSON_IsObject(s) && nim_jstr(s, "sessionId")) cJSON_AddStringToObject(s, "id", nim_jstr(s, "sessionId"));
}

/* 1 when page (a getHistoryMsgs reply's msgs) answers the query q for at
 * most want messages: each a valid message of q's session, within its times,
 * in the order asked and past prev (the last id of the pages before, or
 * lastMsgId; 0: none), which becomes the page's last; else 0 and *why. */
static int history_ok(const nim_net *n, const cJSON *q, const cJSON *page, int64_t want, int more,
                      int64_t *last, const char **why) {
    const char *scene = nim_jstr(q, "scene"), *to = nim_jstr(q, "to");
    int64_t begin = nim_jnum(q, "beginTime"), end = nim_jnum(q, "endTime");
    int reverse = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "reverse"));
    int64_t prev = *last;
    if (!cJSON_IsArray(page)) { *why = "getHistoryMsgs: msgs is not an array"; return 0; }
    int count = cJSON_GetArraySize(page);
    if (count > want) { *why = "getHistoryMsgs: more messages than the limit asked"; return 0; }
    if (more && count == 0) { *why = "getHistoryMsgs: more, with no messages"; return 0; }
    for (const cJSON *m = page->child; m; m = m->next) {
        int64_t id = 0, t = nim_jnum(m, "time");
        if (!net_check_msg(n, m, &id, why)) return 0;
        const char *from = nim_jstr(m, "from"), *mto = nim_jstr(m, "to");
        int mine = strcmp(from, n->account) == 0;
        int in_session = strcmp(nim_jstr(m, "scene"), scene) == 0 &&
            (strcmp(scene, "team") == 0 ? strcmp(mto, to) == 0
                                        : strcmp(mine ? mto : from, to) == 0);
        if (!in_session) { *why = "getHistoryMsgs: a message of another session"; return 0; }
        if (t < begin || (end > 0 && t > end)) { *why = "getHistoryMsgs: a message outside the times asked"; return 0; }
        if (prev > 0 && (reverse ? id <= prev : id >= prev)) {
            *why = "getHistoryMsgs: messages out of order";
            return 0;
        }
        prev = id;
    }
    *last = prev;
    return 1;
}

/* getHistoryMsgs' reply: the page checked and stored as history, gathered
 * in p->msg ({args, msgs}); while the server has more and the app's limit is
 * not reached, the next page is asked for the same app request. */
static void on_history(nim_net *n, pending *p, cJSON *data) {
    cJSON *st = p->msg, *q = cJSON_GetObjectItemCaseSensitive(st, "args");
    cJSON *acc = cJSON_GetObjectItemCaseSensitive(st, "msgs");
    cJSON *page = cJSON_GetObjectItemCaseSensitive(data, "msgs");
    int more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data, "more"));
    int64_t limit = nim_jnum(q, "limit");
    if (limit <= 0) limit = NIM_PROTO_MAX_HISTORY;
    int64_t have = cJSON_GetArraySize(acc), last_id = 0;
    const char *why = NULL;
    /* every page goes on from the one before it: never back, never the same */
    if (nim_proto_get_id(st, "last", 0, &last_id, &why) != NIM_CODE_OK || last_id == 0)
        if (nim_proto_get_id(q, "lastMsgId", 0, &last_id, &why) != NIM_CODE_OK) last_id = 0;
    why = NULL;
    if (!history_ok(n, q, page, limit - have, more, &last_id, &why)) {
        reply_code(n, p->req, NIM_CODE_SERVER, "the server's history reply breaks the protocol");
        net_refuse(n, why);
        return;
    }
    if (nim_engine_ingest(n->e, &(nim_ingest){ .msgs = page, .history = 1 }) < 0) {
        nim_engine_reply(n->e, p->req, NIM_ERR_DB, "history could not be stored", NULL);
        return;
    }
    const char *last = NULL;
    for (cJSON *m; (m = page->child);) {
        cJSON_AddItemToArray(acc, cJSON_DetachItemViaPointer(page, m));
        last = nim_jstr(m, "idServer");
        have++;
    }
    if (more && have < limit && last) {
        cJSON *next = cJSON_Duplicate(q, 1);
        if (next && nim_jset(next, "lastMsgId", last) == 0 && nim_jset(st, "last", last) == 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(next, "limit");
            if (cJSON_AddNumberToObject(next, "limit", (double)(limit - have))) {
                p->msg = NULL;   /* the state goes on with the next page */
                if (net_request(n, RQ_APP, p->cmd, p->req, NIM_WIRE_GET_HISTORY, next, st)) return;
                nim_engine_reply(n->e, p->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
                return;
            }
        }
        cJSON_Delete(next);
        nim_engine_reply(n->e, p->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) { nim_engine_reply(n->e, p->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    cJSON_AddItemToObject(o, "msgs", cJSON_DetachItemViaPointer(st, acc));
    nim_engine_reply(n->e, p->req, NULL, NULL, o);
}

/* The server's answer to an app request. */
static void on_app_reply(nim_net *n, pending *p, nim_frame *f) {
    if (f->code != NIM_CODE_OK) {
        show_failed(n, p->cmd, p->msg);
        reply_code(n, p->req, f->code, f->error);
        return;
    }
    switch (p->cmd) {
    case NIM_NETCMD_SEND_MSG:
        on_sent(n, p, f->data);
        return;
    case NIM_NETCMD_GET_HISTORY:
        on_history(n, p, f->data);
        return;
    case NIM_NETCMD_ADD_MEMBERS: case NIM_NETCMD_REMOVE_MEMBERS: case NIM_NETCMD_LEAVE_TEAM:
        on_team_changed(n, p, f);
        return;
    case NIM_NETCMD_ADD_TOP: case NIM_NETCMD_UPDATE_TOP: case NIM_NETCMD_DELETE_TOP:
        on_top_changed(n, p, f->data);
        break;
    case NIM_NETCMD_GET_TOPS: {
        cJSON *list = net_tops_for_app(cJSON_GetObjectItemCaseSensitive(f->data, "sessions"));
        cJSON *o = cJSON_CreateObject();
        if (o) cJSON_AddItemToObject(o, "sessions", list); else cJSON_Delete(list);
        nim_engine_reply(n->e, p->req, NULL, NULL, o);
        return;
    }
    default: break;
    }
    cJSON *d = f->data;
    if (d) cJSON_DetachItemViaPointer(f->root, d);
    nim_engine_reply(n->e, p->req, NULL, NULL, d);
}

/* A response frame: to the request it answers (an unknown id is ignored). */
void net_on_response(nim_net *n, nim_frame *f) {
    pending *p = take_pending(n, f->id);
    if (!p) return;
    switch (p->kind) {
    case RQ_LOGIN: net_on_login_reply(n, f); break;
    case RQ_APP: on_app_reply(n, p, f); break;
    case RQ_MARK: net_on_mark_reply(n, f->code); break;
    case RQ_ACKS:
        /* refused for good (a cap, a bound): this device keeps its unread
         * state, the app hears why the others will not */
        if (f->code >= 400 && f->code < 500)
            net_report_error(n, NULL, f->code, f->error ? f->error : nim_proto_code_text(f->code),
                             "updateReadPointers");
        net_acks_answered(n, p, f->code);
        break;
    case RQ_PING: break;   /* its arrival is the news (last_rx) */
    }
    pending_free(p);
}
