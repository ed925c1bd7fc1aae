/* Login and sync, and what the server pushes (see client_private.h for
 * the file map). The sync runs between nim_engine_sync_begin and _end, so
 * onsessions/onsyncdone fire once after it; its phase is n->sync, written
 * by set_sync only. Live messages are stored in batches: one transaction
 * per service pass (flush_live). What is stored is told to the server by
 * markMsgsReceived (net_mark_received), so it stops being offline. */
#include "net/client_private.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIVE_BATCH = 256 };   /* live messages stored at the latest */
enum { SYNC_MAX_TOPS = 10000 }; /* sticky tops one sync may bring (the server keeps 100) */

/* The one writer of n->sync. */
static void state_lost(nim_net *n, const char *what);

/* A sync that has stored nothing new for syncTimeout is cut, like a frame
 * that breaks a rule: what it stored stays (each page with its cursor, ack
 * or resume point), and the login is tried again after the backoff, which
 * grows until a sync ends. */
static void on_sync_timeout(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, sul_sync);
    if (n->sync != SYNC_RUNNING || !n->wsi) return;
    char why[112];
    snprintf(why, sizeof why, "the login sync stored nothing new for syncTimeout (%d ms)", n->sync_timeout);
    net_report_error(n, NIM_ERR_TIMEOUT, 0, why, "sync");
    net_drop(n, 1006, why);
}

/* (Re)starts the sync's timer: at the start and at every frame that stores
 * something new. */
static void arm_sync_timer(nim_net *n) {
    net_schedule_ms(n, &n->sul_sync, on_sync_timeout, n->sync_timeout);
}

static void set_sync(nim_net *n, sync_phase to) {
    n->sync = to;
    n->sync_max_id = 0;
    n->sync_idle = 0;
    cJSON_Delete(n->sync_tops);
    n->sync_tops = NULL;
    if (to == SYNC_RUNNING) arm_sync_timer(n);
    else lws_sul_cancel(&n->sul_sync);
    if (to == SYNC_RUNNING) nim_engine_sync_begin(n->e);
}

/* The sync is complete: report it (onsessions, onsyncdone). */
static void finish_sync(nim_net *n) {
    if (n->state != CONN_READY) net_set_state(n, CONN_READY);
    n->retries = 0;
    set_sync(n, SYNC_NONE);
    nim_engine_sync_end(n->e, !n->ever_synced);
    n->ever_synced = 1;
    n->acks_dirty = 1;        /* what the outbox kept (offline, a crash) goes now */
    net_flush_acks(n);
    net_release_held(n);
}

void net_sync_link_lost(nim_net *n) {
    n->recv_want = n->recv_told = n->recv_inflight = 0;   /* the next link tells again */
    if (n->sync != SYNC_NONE) {       /* reported by the next sync */
        nim_engine_sync_abort(n->e);
        set_sync(n, SYNC_NONE);
        net_end_pass_in(n, 1);         /* the engine may owe the app a list now */
    }
}

/* ------------------------------------------------------- received */

static void send_mark(nim_net *n) {
    if (n->recv_inflight || n->recv_want <= n->recv_told) return;
    if (n->state != CONN_SYNC && n->state != CONN_READY) return;
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)n->recv_want);
    cJSON *d = cJSON_CreateObject();
    if (!d || !cJSON_AddStringToObject(d, "upTo", buf)) { cJSON_Delete(d); return; }
    if (net_request(n, RQ_MARK, 0, 0, NIM_WIRE_MARK_RECEIVED, d, NULL)) n->recv_inflight = n->recv_want;
}

void net_mark_received(nim_net *n, int64_t id) {
    if (id > n->recv_want) n->recv_want = id;
    send_mark(n);
}

void net_on_mark_reply(nim_net *n, int code) {
    int64_t was = n->recv_inflight;
    n->recv_inflight = 0;
    if (code != NIM_CODE_OK) return;   /* they stay offline: the next page or login tells */
    if (was > n->recv_told) n->recv_told = was;
    send_mark(n);
}

/* ------------------------------------------------------------ login */

/* The login request. Built whole or not sent: a login missing its token
 * would be refused for good, and one never sent would wait forever; when
 * memory runs out the connection is dropped and tried again. */
/* A first sync that was cut: the resume point its last roaming page left
 * (KEY_ROAMING), or NULL. */
static cJSON *roaming_resume(nim_net *n) {
    char *text = NULL;
    if (n->cur_msgs > 0 || nim_engine_kv_get(n->e, KEY_ROAMING, NULL, &text) < 0 || !text) {
        nim_free(text);
        return NULL;
    }
    cJSON *ro = cJSON_Parse(text);
    nim_free(text);
    const char *why = NULL;
    int64_t b = 0;
    if (ro && !net_check_resume(ro, &b, &why)) { cJSON_Delete(ro); ro = NULL; }
    return ro;
}

void net_send_login(nim_net *n) {
    cJSON *d = cJSON_CreateObject(), *cur = cJSON_CreateObject();
    cJSON *resume = cur ? roaming_resume(n) : NULL;
    if (resume && !cJSON_AddItemToObject(cur, "roaming", resume)) cJSON_Delete(resume);
    int ok = d && cur &&
             cJSON_AddStringToObject(d, "account", n->account) &&
             cJSON_AddStringToObject(d, "token", n->token) &&
             cJSON_AddStringToObject(d, "deviceId", n->device) &&
             cJSON_AddNumberToObject(d, "version", NIM_PROTO_VERSION) &&
             cJSON_AddNumberToObject(cur, "msgs", (double)n->cur_msgs) &&
             cJSON_AddNumberToObject(cur, "state", (double)n->cur_state) &&
             cJSON_AddItemToObject(d, "cursors", cur);
    if (!ok) {
        if (!d || !cJSON_GetObjectItemCaseSensitive(d, "cursors")) cJSON_Delete(cur);  /* not d's */
        cJSON_Delete(d);
        net_drop(n, 1006, "cannot build the login (out of memory)");
        return;
    }
    net_set_state(n, CONN_LOGIN);
    if (!net_request(n, RQ_LOGIN, 0, 0, NIM_WIRE_LOGIN, d, NULL))
        net_drop(n, 1006, "cannot send the login (out of memory)");
}

void net_on_login_reply(nim_net *n, const nim_frame *f) {
    if (f->code != NIM_CODE_OK) {
        char why[200];
        snprintf(why, sizeof why, "login refused: %s", f->error ? f->error : nim_proto_code_text(f->code));
        /* a wrong token or version does not get better by retrying; a
         * throttled login does, after the time the server names */
        int throttled = f->code == NIM_CODE_THROTTLED;
        int retry = f->code == NIM_CODE_SERVER || throttled;
        if (throttled) {
            int64_t after = nim_jnum(f->data, "retryAfter");
            if (after < 0 || after > 3600000) after = 3600000;
            n->reconnect_not_before = net_mono_ms() + after;
            n->throttled_by = n->cur;     /* the others of the list are not held up */
        }
        if (!retry || throttled) net_report_error(n, NULL, f->code, why, "login");
        net_drop(n, f->code, why);
        net_connection_lost(n, f->code, why, retry);
        return;
    }
    /* This store holds one server database's ids: another's would collide
     * (its messages taken for copies already stored), so the login stops. */
    const char *sid = nim_jstr(f->data, "serverId");
    if (sid && *sid) {
        char *known = NULL;
        if (nim_engine_kv_get(n->e, KEY_SERVER, NULL, &known) == 0 && known && strcmp(known, sid) != 0) {
            char why[300];
            snprintf(why, sizeof why, "this device's database was synced with another server "
                     "(database %s, this one is %s): use another dataDir or db for it", known, sid);
            nim_free(known);
            net_report_error(n, NIM_ERR_OTHER_SERVER, 0, why, "login");
            net_drop(n, NIM_CLOSE_OTHER_SERVER, why);
            net_connection_lost(n, NIM_CLOSE_OTHER_SERVER, why, 0);
            return;
        }
        if (!known) nim_engine_kv_set(n->e, KEY_SERVER, 0, sid);
        nim_free(known);
    }
    net_set_state(n, CONN_SYNC);
    set_sync(n, SYNC_RUNNING);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "account", n->account);
        cJSON_AddStringToObject(o, "deviceId", n->device);
        cJSON_AddNumberToObject(o, "serverTime", (double)nim_jnum(f->data, "serverTime"));
        cJSON_AddStringToObject(o, "server", n->url);
    }
    n->round_start = n->cur;       /* a later failure tries the others first */
    net_callback(n, "onconnect", o);
}

/* ------------------------------------------------------- the sync's msgs */

typedef struct { cJSON *m; const char *sid; int ord; } grp_item;

static int cmp_grp(const void *a, const void *b) {
    const grp_item *x = a, *y = b;
    int c = strcmp(x->sid, y->sid);
    return c ? c : x->ord - y->ord;
}

static const char *str_or_empty(const cJSON *o, const char *k) {
    const char *s = nim_jstr(o, k);
    return s ? s : "";
}

/* onroamingmsgs / onofflinemsgs: one call per session of the frame,
 * {sessionId, scene, to, msgs}, messages in arrival (oldest first) order.
 * Takes msgs. */
static void emit_grouped(nim_net *n, const char *cbname, cJSON *msgs) {
    int count = cJSON_GetArraySize(msgs);
    grp_item *v = count > 0 ? nim_malloc((size_t)count * sizeof *v) : NULL;
    if (!v) { cJSON_Delete(msgs); return; }
    int k = 0;
    for (cJSON *m = msgs->child; m; m = m->next, k++) {
        v[k].m = m;
        v[k].sid = str_or_empty(m, "sessionId");
        v[k].ord = k;
    }
    qsort(v, (size_t)count, sizeof *v, cmp_grp);
    for (int i = 0, j; i < count; i = j) {
        for (j = i + 1; j < count && strcmp(v[j].sid, v[i].sid) == 0; j++) {}
        cJSON *g = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        if (!g || !arr) { cJSON_Delete(g); cJSON_Delete(arr); continue; }
        cJSON_AddStringToObject(g, "sessionId", v[i].sid);
        cJSON_AddStringToObject(g, "scene", str_or_empty(v[i].m, "scene"));
        cJSON_AddStringToObject(g, "to", str_or_empty(v[i].m, "target"));
        for (int a = i; a < j; a++) cJSON_AddItemToArray(arr, cJSON_DetachItemViaPointer(msgs, v[a].m));
        cJSON_AddItemToObject(g, "msgs", arr);
        net_callback(n, cbname, g);
    }
    nim_free(v);
    cJSON_Delete(msgs);
}

/* A roamingMsgs/offlineMsgs frame: its messages, and its cursor when it
 * carries one, in one transaction; then its ack, now that they are stored. */
static void on_sync_msgs(nim_net *n, cJSON *data, int offline) {
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(data, "msgs");
    const char *why = NULL;
    int64_t max_id = 0, cursor = 0, ack = 0;
    if (n->sync != SYNC_RUNNING) { net_refuse(n, "sync messages after syncDone"); return; }
    if (!net_check_msgs(n, msgs, &max_id, &why)) { net_refuse(n, why); return; }
    if (max_id > n->sync_max_id) n->sync_max_id = max_id;
    /* the ack and the cursor cover what this sync brought, never more */
    if (nim_proto_get_int(data, "cursor", 0, NIM_PROTO_MAX_INT, 0, &cursor, &why) != NIM_CODE_OK ||
        nim_proto_get_id(data, "ack", 0, &ack, &why) != NIM_CODE_OK) {
        net_refuse(n, why);
        return;
    }
    if (cursor > n->sync_max_id || ack > n->sync_max_id) {
        net_refuse(n, "a sync ack or cursor beyond the messages it brought");
        return;
    }
    /* a roaming page's resume point is stored with it: a first sync that is
     * cut goes on from there at the next login */
    char *resume = NULL;
    int64_t bound = 0;
    cJSON *ro = cJSON_GetObjectItemCaseSensitive(data, "resume");
    if (ro && (offline || !net_check_resume(ro, &bound, &why) || !(resume = cJSON_PrintUnformatted(ro)))) {
        net_refuse(n, why ? why : "resume: not on a roaming page, or out of memory");
        return;
    }
    int count = cJSON_GetArraySize(msgs);
    unsigned char *fresh = nim_calloc((size_t)count + 1, 1);
    nim_engine_cursor c = { KEY_MSGS, cursor, NULL }, rc = { KEY_ROAMING, bound, resume };
    const nim_engine_cursor *with = cursor > 0 ? &c : resume ? &rc : NULL;
    int stored_ok = fresh && nim_engine_ingest(n->e, &(nim_ingest){ .msgs = msgs, .fresh = fresh,
                                                                  .cursor = with }) == 0;
    cJSON_free(resume);
    if (!stored_ok) {
        nim_free(fresh);
        net_drop(n, 1006, "cannot store the synced messages");   /* retry later */
        return;
    }
    int stored = 0;
    for (int i = 0; i < count; i++) stored += fresh[i];
    nim_free(fresh);
    /* A server that sends the same messages over and over never ends its
     * sync. Roaming frames (no ack, no cursor) are left out of the count: a
     * first sync that was cut sends its roaming pages again, all of them
     * duplicates; the sync's timer bounds those. */
    int progress = stored > 0 || c.value > n->cur_msgs || ack > n->recv_want;
    if (progress) { arm_sync_timer(n); n->sync_idle = 0; }
    else if (offline || ack > 0 || cursor > 0) n->sync_idle++;
    if (c.value > n->cur_msgs) n->cur_msgs = c.value;
    if (ack > 0) net_mark_received(n, ack);
    if (n->sync_idle > SYNC_MAX_IDLE_FRAMES) { net_refuse(n, "the sync brings nothing new"); return; }
    unsigned want = offline ? NIM_NET_WANT_OFFLINE : NIM_NET_WANT_ROAMING;
    if (n->want & want) {
        cJSON_DetachItemViaPointer(data, msgs);
        emit_grouped(n, offline ? "onofflinemsgs" : "onroamingmsgs", msgs);
    }
}

static void on_sync_done(nim_net *n, cJSON *data) {
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(data, "cursors");
    const char *why = NULL;
    int64_t cm = 0, cs = 0;
    if (n->sync != SYNC_RUNNING) { net_refuse(n, "syncDone without a sync"); return; }
    if (!cJSON_IsObject(cur) ||
        nim_proto_get_int(cur, "msgs", 0, NIM_PROTO_MAX_INT, 1, &cm, &why) != NIM_CODE_OK ||
        nim_proto_get_int(cur, "state", 0, NIM_PROTO_MAX_INT, 1, &cs, &why) != NIM_CODE_OK) {
        net_refuse(n, why ? why : "cursors: missing");
        return;
    }
    /* the complete sticky-top list, from every page of it */
    if (n->sync_tops) {
        if (nim_engine_apply_tops(n->e, n->sync_tops, 1) < 0) { state_lost(n, "sticky top sessions"); return; }
        if (n->want & NIM_NET_WANT_TOPS) net_callback(n, "onStickTopSessions", net_tops_for_app(n->sync_tops));
    }
    nim_engine_cursor c1 = { KEY_MSGS, cm, NULL }, c2 = { KEY_STATE, cs, NULL };
    nim_engine_kv_set(n->e, KEY_ROAMING, 0, NULL);   /* the first sync is over: no resume point */
    if (nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c1 }) == 0 && cm > n->cur_msgs) n->cur_msgs = cm;
    if (nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c2 }) == 0 && cs > n->cur_state) n->cur_state = cs;
    finish_sync(n);
}

/* ------------------------------------------------------- live messages */

typedef struct { nim_net *n; cJSON *arr; unsigned char *fresh; } live_batch;

/* After the batch's commit, before its session updates: the app gets each
 * new message's onmsg first, and the updates (coalesced per poll) after. */
static void live_stored(void *ud) {
    live_batch *b = ud;
    if (!(b->n->want & NIM_NET_WANT_MSG)) return;
    size_t i = 0;
    for (cJSON *m = b->arr->child, *next; m; m = next, i++) {
        next = m->next;
        if (!b->fresh[i]) continue;             /* a duplicate (or invalid): no onmsg */
        cJSON_DetachItemViaPointer(b->arr, m);
        net_callback_msg(b->n, m);
    }
}

/* Stores the live messages received so far in one transaction (one fsync
 * for a burst instead of one per message). Called at the end of every
 * service pass, before any other frame is handled (a read pointer or a
 * reply must find them stored), when the connection ends and at stop. */
void net_flush_live(nim_net *n) {
    cJSON *arr = n->live;
    if (!arr) return;
    n->live = NULL;
    int count = n->live_count;
    n->live_count = 0;
    int64_t top = 0;
    for (cJSON *m = arr->child; m; m = m->next) {
        int64_t id = nim_jid(m, "idServer");
        if (id > top) top = id;
    }
    live_batch b = { n, arr, nim_calloc((size_t)count, 1) };
    nim_engine_cursor c = { KEY_MSGS, top, NULL };
    nim_ingest in = { .msgs = arr, .cursor = &c, .fresh = b.fresh, .after_commit = live_stored, .ud = &b };
    if (!b.fresh || nim_engine_ingest(n->e, &in) < 0) {
        nim_free(b.fresh);
        cJSON_Delete(arr);
        net_drop(n, 1006, "cannot store received messages");   /* they come back as roaming */
        return;
    }
    if (c.value > n->cur_msgs) n->cur_msgs = c.value;
    nim_free(b.fresh);
    cJSON_Delete(arr);
    net_mark_received(n, n->cur_msgs);   /* stored: no longer offline for my account */
}

static void on_live_msg(nim_net *n, cJSON *data) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(data, "msg");
    const char *why = NULL;
    if (n->state != CONN_READY) { net_refuse(n, "a live message during the sync"); return; }
    if (!net_check_msg(n, m, NULL, &why)) {
        net_flush_live(n);              /* the ones before it were fine */
        net_refuse(n, why);
        return;
    }
    if (!n->live && !(n->live = cJSON_CreateArray())) {
        net_drop(n, 1006, "cannot store a received message");
        return;
    }
    cJSON_DetachItemViaPointer(data, m);
    cJSON_AddItemToArray(n->live, m);
    if (++n->live_count >= LIVE_BATCH) net_flush_live(n);
}

/* ------------------------------------------------- pointers, receipts, tops */

static int64_t max_ver(const cJSON *arr) {
    int64_t v = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) if (nim_jnum(it, "ver") > v) v = nim_jnum(it, "ver");
    return v;
}

/* A state change (read pointers, receipts, sticky top) could not be
 * stored: the state cursor must not pass it, so sync again. */
static void state_lost(nim_net *n, const char *what) {
    char why[96];
    snprintf(why, sizeof why, "cannot store %s: syncing again", what);
    net_drop(n, 1006, why);
}

static void on_pointers(nim_net *n, cJSON *data, int live) {
    const cJSON *ptrs = cJSON_GetObjectItemCaseSensitive(data, "pointers");
    const char *why = NULL;
    if (!net_check_states(ptrs, NET_STATE_POINTERS, &why)) { net_refuse(n, why); return; }
    nim_engine_cursor c = { KEY_STATE, max_ver(ptrs), NULL };
    if (!n->sync_unread) {
        if (live) nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c });
        return;
    }
    if (nim_engine_apply_acks(n->e, ptrs, live ? &c : NULL) < 0) state_lost(n, "read pointers");
}

static void on_receipts(nim_net *n, cJSON *data, int live) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(data, "receipts");
    const char *why = NULL;
    if (!net_check_states(r, NET_STATE_RECEIPTS, &why)) { net_refuse(n, why); return; }
    nim_engine_cursor c = { KEY_STATE, max_ver(r), NULL };
    if (nim_engine_apply_receipts(n->e, r, live ? &c : NULL) < 0) state_lost(n, "receipts");
}

/* Server sticky-top items -> the session-shaped list the app sees. */
cJSON *net_tops_for_app(const cJSON *list) {
    cJSON *out = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        cJSON *o = cJSON_Duplicate(it, 1);
        if (!o) continue;
        const char *sid = nim_jstr(o, "sessionId");
        if (sid) cJSON_AddStringToObject(o, "id", sid);
        cJSON_AddBoolToObject(o, "isTop", 1);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

/* stickTopSessions: one page of the sync's complete list, kept until
 * syncDone applies the whole (a page alone would drop the others' tops). */
static void on_tops(nim_net *n, cJSON *data) {
    cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "sessions");
    const char *why = NULL;
    if (!net_check_states(list, NET_STATE_TOPS, &why)) { net_refuse(n, why); return; }
    if (n->sync != SYNC_RUNNING) { net_refuse(n, "stickTopSessions after the sync"); return; }
    if (!n->sync_top) return;
    if (!n->sync_tops && !(n->sync_tops = cJSON_CreateArray())) { state_lost(n, "sticky top sessions"); return; }
    if (cJSON_GetArraySize(n->sync_tops) + cJSON_GetArraySize(list) > SYNC_MAX_TOPS) {
        net_refuse(n, "stickTopSessions: more sticky tops than any account has");
        return;
    }
    for (cJSON *it; (it = list->child);) cJSON_AddItemToArray(n->sync_tops, cJSON_DetachItemViaPointer(list, it));
}

static void on_top_push(nim_net *n, cJSON *data) {
    const char *op = nim_jstr(data, "op");
    cJSON *s = cJSON_GetObjectItemCaseSensitive(data, "session");
    const char *why = NULL;
    if (!op || !cJSON_IsObject(s)) { net_refuse(n, "stickTop: no op or session"); return; }
    if (!net_check_state(s, NET_STATE_TOPS, &why)) { net_refuse(n, why); return; }
    cJSON *arr = cJSON_CreateArray(), *item = cJSON_Duplicate(s, 1);
    if (!arr || !item || !cJSON_AddBoolToObject(item, "isTop", strcmp(op, "delete") != 0)) {
        cJSON_Delete(arr);
        cJSON_Delete(item);
        state_lost(n, "a sticky top change");
        return;
    }
    cJSON_AddItemToArray(arr, item);
    if (nim_engine_apply_tops(n->e, arr, 0) < 0) state_lost(n, "a sticky top change");
    cJSON_Delete(arr);
}

/* A push frame, once logged in (CONN_SYNC or CONN_READY). */
void net_on_push(nim_net *n, nim_frame *f) {
    int live = n->state == CONN_READY;
    switch (nim_proto_push_from_name(f->name)) {
    case NIM_PUSH_ROAMING_MSGS: on_sync_msgs(n, f->data, 0); break;
    case NIM_PUSH_OFFLINE_MSGS: on_sync_msgs(n, f->data, 1); break;
    case NIM_PUSH_READ_POINTERS: on_pointers(n, f->data, live); break;
    case NIM_PUSH_RECEIPTS: on_receipts(n, f->data, live); break;
    case NIM_PUSH_STICK_TOP_SESSIONS: on_tops(n, f->data); break;
    case NIM_PUSH_SYNC_DONE: on_sync_done(n, f->data); break;
    case NIM_PUSH_MSG: on_live_msg(n, f->data); break;
    case NIM_PUSH_STICK_TOP: on_top_push(n, f->data); break;
    case NIM_PUSH_KICKED:
        n->user_down = 1;   /* the close (4001) follows: no reconnect */
        break;
    default: break;         /* team and unknown pushes */
    }
}
