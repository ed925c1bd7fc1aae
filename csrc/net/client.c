/* The network client (see client.h). After the lws minimal ws-client
 * examples: one client connection, output queued and written only from
 * LWS_CALLBACK_CLIENT_WRITEABLE with LWS_PRE headroom, other threads only
 * lws_cancel_service(). Timers (reconnect backoff, heartbeat, request
 * deadlines) are one lws_sul tick on the engine thread.
 *
 * Connection states: IDLE (not connected; a reconnect may be scheduled),
 * CONNECTING (TCP + upgrade), LOGIN (login request in flight), SYNC (login
 * accepted, sync pushes arriving), READY. Requests from the app need SYNC or
 * READY, else they fail at once with Not_Connected. */
#include "net/proto.h"
#include "net/client.h"
#include "core/alloc.h"
#include <libwebsockets.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_LOGIN, ST_SYNC, ST_READY };

/* What a request in flight is for. */
enum { RQ_LOGIN, RQ_PING, RQ_MARK, RQ_ACKS, RQ_APP };

#define TICK_US       (50 * 1000)
/* The server sends at most this many offline messages (or about this many
 * bytes of them) per login (docs/protocol.md "offlineMsgs"); a sync that
 * reached either logs in again, silently, for the rest before it reports. */
#define OFFLINE_BATCH 10000
#define OFFLINE_BYTES (7u * 1024 * 1024)
#define KEY_MSGS      "net.cursor.msgs"
#define KEY_STATE     "net.cursor.state"
#define KEY_DEVICE    "net.deviceId"

typedef struct out_frame {
    struct out_frame *next;
    size_t len;
    char *buf;                   /* LWS_PRE headroom, then len bytes */
} out_frame;

typedef struct pending {
    struct pending *next;
    int64_t id;                  /* request id on the wire */
    int kind;                    /* RQ_* */
    int cmd;                     /* NIM_NETCMD_* for RQ_APP */
    uint64_t req;                /* engine command req (RQ_APP) */
    int64_t deadline;            /* ms, monotonic */
    cJSON *msg;                  /* sendMsg: the local "sending" message */
} pending;

struct nim_net {
    /* config (immutable after new) */
    char *server, *account, *token, *device;
    char *host, *path;
    int port, local;
    int need_reconnect, sync_unread, sync_top;
    unsigned want;
    int req_timeout, heartbeat, rc_min, rc_max;

    nim_engine *e;
    pthread_mutex_t ctx_lock;    /* ctx against wake from the owner thread */
    struct lws_context *ctx;
    lws_sorted_usec_list_t tick;

    /* engine thread only from here */
    struct lws *wsi;
    int state;
    int user_down;               /* disconnect asked, or gave up: no reconnect */
    int stopping;                /* destroy: no more callbacks */
    int ever_synced;
    int retries;
    int64_t reconnect_at;        /* 0: none scheduled */
    int64_t connect_started;
    int64_t last_rx, last_tx, ping_at;
    int close_code;              /* from the peer's close frame, else 0 */
    char close_reason[128];
    int drop_code;               /* our reason to drop (heartbeat, timeout) */
    char drop_reason[192];

    out_frame *out_head, *out_tail;
    char *rx;
    size_t rx_len, rx_cap;
    pending *pend, *pend_tail;   /* in flight, oldest first (replies come in order) */
    int64_t next_id;
    uint64_t idc_counter;
    char idc_prefix[24];

    int64_t cur_msgs, cur_state; /* persisted cursors (as loaded) */
    cJSON *live;                 /* live messages received this pass, stored together */
    int live_count;
    int64_t offline_max;         /* largest offline idServer of this sync */
    int offline_count;           /* offline messages in this sync */
    size_t offline_bytes;        /* and the size of their frames */
    int64_t more_after;          /* markMsgsReceived request id after which to log in again */
    int relogin;                 /* the connection is closed for that: say nothing */
    int silent;                  /* this login continues the previous sync: no onconnect */
    int quiet;                   /* between nim_engine_sync_begin and its end */
    unsigned seed;               /* rand_r state for the backoff jitter */
    int acks_dirty;              /* the pointer outbox (kv "ack:<sid>") has
                                    something not yet sent on this link */
};

/* ---------------------------------------------------------------- helpers */

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xdup(const char *s) { return s ? nim_strndup(s, strlen(s)) : NULL; }

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jid(const cJSON *o, const char *k) {
    const char *s = jstr(o, k);
    return s ? strtoll(s, NULL, 10) : 0;
}

static int64_t jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static void random_hex(char *out, size_t nbytes) {
    unsigned char b[16] = { 0 };
    if (nbytes > sizeof b) nbytes = sizeof b;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, b, nbytes) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)nbytes) {          /* no urandom: time and address */
        uint64_t x = (uint64_t)wall_ms() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < nbytes; i++) { x = x * 6364136223846793005ULL + 1; b[i] = (unsigned char)(x >> 56); }
    }
    for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* Queues an event of type (NIM_EV_CALLBACK, NIM_EV_MSG): name(arg), name
 * a static string. Takes arg. */
static void queue_callback(nim_net *n, int type, const char *name, cJSON *arg) {
    if (n->stopping) { cJSON_Delete(arg); return; }
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(arg); return; }
    ev->type = type;
    ev->callback = name;
    ev->data = arg;
    nim_engine_emit(n->e, ev);
}

static void callback(nim_net *n, const char *name, cJSON *arg) {
    queue_callback(n, NIM_EV_CALLBACK, name, arg);
}

/* Queues onerror({code = code or numcode, message = msg, event = what});
 * what is a static string. */
static void report_error(nim_net *n, const char *code, int numcode, const char *msg,
                         const char *what) {
    if (n->stopping) return;
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) return;
    ev->type = NIM_EV_ERROR;
    ev->code = code;
    ev->numcode = numcode;
    ev->what = what;
    ev->message = xdup(msg);
    nim_engine_emit(n->e, ev);
}

/* Replies to an app request with a server error code. */
static void reply_code(nim_net *n, uint64_t req, int code, const char *error) {
    nim_event *ev = nim_calloc(1, sizeof *ev);
    /* out of memory: the engine's reserved reply still answers the request */
    if (!ev) { nim_engine_reply(n->e, req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    ev->type = NIM_EV_DONE;
    ev->req = req;
    ev->numcode = code;
    ev->message = xdup(error ? error : nim_proto_code_text(code));
    nim_engine_emit(n->e, ev);
}

/* ------------------------------------------------------------ output */

static void out_free_all(nim_net *n) {
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

/* Sends a request and remembers it. Takes data (and msg). */
static pending *request(nim_net *n, int kind, int cmd, uint64_t req, nim_wire_cmd wire,
                        cJSON *data, cJSON *msg) {
    pending *p = nim_calloc(1, sizeof *p);
    if (!p) { cJSON_Delete(data); cJSON_Delete(msg); return NULL; }
    p->id = ++n->next_id;
    p->kind = kind;
    p->cmd = cmd;
    p->req = req;
    p->msg = msg;
    p->deadline = mono_ms() + n->req_timeout;
    if (send_request(n, p->id, wire, data) < 0) {
        cJSON_Delete(msg);
        nim_free(p);
        return NULL;
    }
    if (n->pend_tail) n->pend_tail->next = p; else n->pend = p;
    n->pend_tail = p;
    return p;
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
    const char *sid = jstr(msg, "sessionId");
    if (!sid) return;
    cJSON *s = nim_engine_session_json(n->e, sid);
    if (!s) {
        s = cJSON_CreateObject();
        if (!s) return;
        cJSON_AddStringToObject(s, "id", sid);
        cJSON_AddStringToObject(s, "scene", jstr(msg, "scene"));
        cJSON_AddStringToObject(s, "to", jstr(msg, "target"));
        cJSON_AddNumberToObject(s, "unread", 0);
        cJSON_AddBoolToObject(s, "isTop", 0);
    }
    cJSON *copy = cJSON_Duplicate(msg, 1);
    if (copy) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, "lastMsg");
        cJSON_AddItemToObject(s, "lastMsg", copy);
    }
    double t = (double)jnum(msg, "time");
    if (jnum(s, "updateTime") < (int64_t)t) {
        cJSON_DeleteItemFromObjectCaseSensitive(s, "updateTime");
        cJSON_AddNumberToObject(s, "updateTime", t);
    }
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(s); return; }
    ev->type = NIM_EV_UPDATE_SESSION;
    ev->data = s;
    nim_engine_emit(n->e, ev);
}

static void set_status(cJSON *msg, const char *status) {
    cJSON *v = cJSON_CreateString(status);
    if (!v) return;
    if (cJSON_GetObjectItemCaseSensitive(msg, "status")) cJSON_ReplaceItemInObjectCaseSensitive(msg, "status", v);
    else cJSON_AddItemToObject(msg, "status", v);
}

/* An app request that will not be answered by the server. */
static void fail_pending(nim_net *n, pending *p, const char *code, const char *why) {
    if (p->kind == RQ_APP) {
        if (p->msg) {
            set_status(p->msg, "fail");
            update_with(n, p->msg);
        }
        nim_engine_reply(n->e, p->req, code, why, NULL);
    }
    if (p->kind == RQ_ACKS) n->acks_dirty = 1;   /* unanswered: still in the outbox */
    cJSON_Delete(p->msg);
    nim_free(p);
}

/* --------------------------------------------------------- connection */

static void schedule_reconnect(nim_net *n) {
    if (!n->need_reconnect || n->user_down || n->local) return;
    int64_t d = n->rc_min;
    for (int i = 0; i < n->retries && d < n->rc_max; i++) d *= 2;
    if (d > n->rc_max) d = n->rc_max;
    d = d * (80 + (int64_t)(rand_r(&n->seed) % 41)) / 100;   /* +-20 % jitter */
    n->retries++;
    n->reconnect_at = mono_ms() + d;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "retryCount", n->retries);
        cJSON_AddNumberToObject(o, "duration", (double)d);
    }
    callback(n, "onwillreconnect", o);
}

static void start_connect(nim_net *n) {
    n->reconnect_at = 0;
    n->close_code = 0;
    n->close_reason[0] = '\0';
    n->drop_code = 0;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = n->ctx;
    ci.address = n->host;
    ci.port = n->port;
    ci.path = n->path;
    ci.host = n->host;
    ci.origin = n->host;
    ci.protocol = NIM_PROTO_SUBPROTOCOL;
    ci.userdata = n;
    ci.pwsi = &n->wsi;
    n->state = ST_CONNECTING;
    n->connect_started = mono_ms();
    if (!lws_client_connect_via_info(&ci)) {
        /* failed at once; CLIENT_CONNECTION_ERROR may or may not have run */
        if (n->state == ST_CONNECTING) {
            n->wsi = NULL;
            n->state = ST_IDLE;
            schedule_reconnect(n);
        }
    }
}

/* Forgets the socket: nothing queued, nothing half-read, every request in
 * flight failed with Not_Connected. */
static void drop_link(nim_net *n) {
    n->wsi = NULL;
    n->state = ST_IDLE;
    out_free_all(n);
    n->rx_len = 0;
    for (pending *p; (p = pop_pending(n));)
        fail_pending(n, p, NIM_ERR_NOT_CONNECTED, "the connection was lost");
}

static void flush_live(nim_net *n);

/* The connection is gone (or never came up): fail what is in flight, tell
 * the app, schedule a reconnect unless told not to. */
static void connection_lost(nim_net *n, int code, const char *reason, int retry) {
    int was = n->state;
    flush_live(n);                      /* received before the end: keep them */
    if (n->relogin && retry && !n->user_down) {
        /* closed to fetch the rest of the offline messages: at once, quietly */
        n->relogin = 0;
        n->silent = 1;
        drop_link(n);
        n->reconnect_at = mono_ms();
        return;
    }
    n->relogin = n->silent = 0;
    drop_link(n);
    if (n->quiet) {                 /* reported by the next sync */
        nim_engine_sync_abort(n->e);
        n->quiet = 0;
    }
    if (!retry) n->user_down = 1;
    if (was >= ST_LOGIN || !retry) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddNumberToObject(o, "code", code);
            cJSON_AddStringToObject(o, "reason", reason);
            cJSON_AddBoolToObject(o, "willReconnect", retry && n->need_reconnect && !n->user_down);
        }
        callback(n, "ondisconnect", o);
    }
    if (retry) schedule_reconnect(n);
}

/* Drops the connection from our side (dead peer, user disconnect, auth). */
static void drop(nim_net *n, int code, const char *reason) {
    n->drop_code = code;
    snprintf(n->drop_reason, sizeof n->drop_reason, "%s", reason);
    if (n->wsi) {
        lws_set_timeout(n->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/* ----------------------------------------------------------- read pointers */

/* Read pointers this device moved go to the server through an outbox in
 * the database: kv "ack:<sid>" = the pointer, written in the transaction
 * that moved it and deleted only once the server has taken it (or refused
 * it for good). A pointer moved offline, or in flight when the link or the
 * process dies, is sent again after the next login: my other devices never
 * keep counting as unread what I read here. */
#define ACK_PREFIX "ack:"

static int acked_hook(nim_engine *e, void *ud, const char *sid, int64_t ack) {
    nim_net *n = ud;
    if (!n->sync_unread || n->local) return 0;
    /* only what the server accepts: one refused item refuses the batch */
    const char *target;
    if (strlen(sid) > NIM_PROTO_MAX_SESSION_ID || nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE)
        return 0;
    char key[NIM_PROTO_MAX_SESSION_ID + sizeof ACK_PREFIX];
    snprintf(key, sizeof key, ACK_PREFIX "%s", sid);
    if (nim_engine_kv_set_tx(e, key, ack) < 0) return -1;
    n->acks_dirty = 1;
    return 0;
}

typedef struct { cJSON *reqs; cJSON *cur; } ack_scan;

/* One outbox row into the current request's pointers (a new request every
 * NIM_PROTO_MAX_BATCH). */
static int ack_row(void *ud, const char *key, int64_t ack) {
    ack_scan *a = ud;
    if (!a->cur || cJSON_GetArraySize(a->cur) >= NIM_PROTO_MAX_BATCH) {
        a->cur = cJSON_CreateArray();
        if (!a->cur) return -1;
        cJSON_AddItemToArray(a->reqs, a->cur);
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sessionId", key + strlen(ACK_PREFIX)) ||
        !cJSON_AddNumberToObject(o, "ack", (double)ack)) {
        cJSON_Delete(o);
        return -1;
    }
    cJSON_AddItemToArray(a->cur, o);
    return 0;
}

/* Sends the outbox's read pointers (at most NIM_PROTO_MAX_BATCH a
 * request). Each request keeps what it sent, to clear it when answered. */
static void flush_acks(nim_net *n) {
    if (n->state != ST_READY || !n->acks_dirty) return;
    ack_scan a = { cJSON_CreateArray(), NULL };
    if (!a.reqs) return;                         /* still dirty: next pass */
    if (nim_engine_kv_scan(n->e, ACK_PREFIX, ack_row, &a) < 0) { cJSON_Delete(a.reqs); return; }
    n->acks_dirty = 0;
    cJSON *ptrs;
    while ((ptrs = a.reqs->child)) {
        cJSON_DetachItemViaPointer(a.reqs, ptrs);
        cJSON *d = cJSON_CreateObject(), *sent = cJSON_Duplicate(ptrs, 1);
        /* never sent without its pointers; ptrs is d's only once added */
        if (!d || !sent || !cJSON_AddItemToObject(d, "pointers", ptrs)) {
            cJSON_Delete(d); cJSON_Delete(sent); cJSON_Delete(ptrs);
            n->acks_dirty = 1;                   /* the rest next pass */
            continue;
        }
        if (!request(n, RQ_ACKS, 0, 0, NIM_WIRE_UPDATE_READ, d, sent)) n->acks_dirty = 1;
    }
    cJSON_Delete(a.reqs);
}

/* The server answered an updateReadPointers: taken (200) or refused for
 * good (4xx: resending would not help), the sent pointers leave the
 * outbox; a later, higher pointer of the same session stays. */
static void acks_answered(nim_net *n, const pending *p, int code) {
    if (code != NIM_CODE_OK && (code < 400 || code >= 500)) { n->acks_dirty = 1; return; }
    int count = cJSON_GetArraySize(p->msg), k = 0;
    if (count <= 0) return;
    nim_kv_item *items = nim_calloc((size_t)count, sizeof *items);
    const cJSON *it;
    cJSON_ArrayForEach(it, p->msg) {
        if (!items || !jstr(it, "sessionId")) break;
        items[k].name = jstr(it, "sessionId");
        items[k++].num = jnum(it, "ack");
    }
    /* what could not be cleared is sent again: the server keeps the max */
    if (k < count || nim_engine_kv_del_upto(n->e, ACK_PREFIX, items, (size_t)k) < 0) n->acks_dirty = 1;
    nim_free(items);
}

/* ------------------------------------------------------------ receiving */

typedef struct { cJSON *m; const char *sid; int ord; } grp_item;

static int cmp_grp(const void *a, const void *b) {
    const grp_item *x = a, *y = b;
    int c = strcmp(x->sid, y->sid);
    return c ? c : x->ord - y->ord;
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
        v[k].sid = jstr(m, "sessionId") ? jstr(m, "sessionId") : "";
        v[k].ord = k;
    }
    qsort(v, (size_t)count, sizeof *v, cmp_grp);
    for (int i = 0, j; i < count; i = j) {
        for (j = i + 1; j < count && strcmp(v[j].sid, v[i].sid) == 0; j++) {}
        cJSON *g = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        if (!g || !arr) { cJSON_Delete(g); cJSON_Delete(arr); continue; }
        cJSON_AddStringToObject(g, "sessionId", v[i].sid);
        cJSON_AddStringToObject(g, "scene", jstr(v[i].m, "scene") ? jstr(v[i].m, "scene") : "");
        cJSON_AddStringToObject(g, "to", jstr(v[i].m, "target") ? jstr(v[i].m, "target") : "");
        for (int a = i; a < j; a++) cJSON_AddItemToArray(arr, cJSON_DetachItemViaPointer(msgs, v[a].m));
        cJSON_AddItemToObject(g, "msgs", arr);
        callback(n, cbname, g);
    }
    nim_free(v);
    cJSON_Delete(msgs);
}

static void on_sync_msgs(nim_net *n, cJSON *data, int offline, size_t frame_len) {
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(data, "msgs");
    if (!cJSON_IsArray(msgs)) return;
    if (nim_engine_ingest(n->e, &(nim_ingest){ .msgs = msgs }) < 0) {
        drop(n, 1006, "cannot store the synced messages");   /* retry later */
        return;
    }
    if (offline) {
        n->offline_count += cJSON_GetArraySize(msgs);
        n->offline_bytes += frame_len;
        for (cJSON *m = msgs->child; m; m = m->next) {
            int64_t id = jid(m, "idServer");
            if (id > n->offline_max) n->offline_max = id;
        }
    }
    unsigned want = offline ? NIM_NET_WANT_OFFLINE : NIM_NET_WANT_ROAMING;
    if (n->want & want) {
        cJSON_DetachItemViaPointer(data, msgs);
        emit_grouped(n, offline ? "onofflinemsgs" : "onroamingmsgs", msgs);
    }
}

/* The sync is complete: report it (onsessions, onsyncdone). */
static void finish_sync(nim_net *n) {
    n->state = ST_READY;
    n->retries = 0;
    n->quiet = 0;
    n->more_after = 0;
    nim_engine_sync_end(n->e, !n->ever_synced);
    n->ever_synced = 1;
    n->acks_dirty = 1;        /* what the outbox kept (offline, a crash) goes now */
    flush_acks(n);
}

static void on_sync_done(nim_net *n, cJSON *data) {
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(data, "cursors");
    int64_t cm = jnum(cur, "msgs"), cs = jnum(cur, "state");
    nim_engine_cursor c1 = { KEY_MSGS, cm }, c2 = { KEY_STATE, cs };
    if (nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c1 }) == 0 && cm > n->cur_msgs) n->cur_msgs = cm;
    if (nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c2 }) == 0 && cs > n->cur_state) n->cur_state = cs;
    if (n->offline_max > 0) {
        /* stored (committed above, frame by frame): now they may become roaming */
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)n->offline_max);
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddStringToObject(d, "upTo", buf);
        pending *p = request(n, RQ_MARK, 0, 0, NIM_WIRE_MARK_RECEIVED, d, NULL);
        n->offline_max = 0;
        if (p && (n->offline_count >= OFFLINE_BATCH || n->offline_bytes >= OFFLINE_BYTES)) {
            /* the server kept some back: once these are marked, log in again */
            n->more_after = p->id;
            n->state = ST_READY;
            return;
        }
    }
    finish_sync(n);
}

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
        queue_callback(b->n, NIM_EV_MSG, "onmsg", m);
    }
}

/* Stores the live messages received so far in one transaction (one fsync
 * for a burst instead of one per message). Called at the end of every
 * service pass, before any other frame is handled (a read pointer or a
 * reply must find them stored), when the connection ends and at stop. */
static void flush_live(nim_net *n) {
    cJSON *arr = n->live;
    if (!arr) return;
    n->live = NULL;
    int count = n->live_count;
    n->live_count = 0;
    int64_t top = 0;
    for (cJSON *m = arr->child; m; m = m->next) {
        int64_t id = jid(m, "idServer");
        if (id > top) top = id;
    }
    live_batch b = { n, arr, nim_calloc((size_t)count, 1) };
    nim_engine_cursor c = { KEY_MSGS, top };
    nim_ingest in = { .msgs = arr, .cursor = &c, .fresh = b.fresh, .after_commit = live_stored, .ud = &b };
    if (!b.fresh || nim_engine_ingest(n->e, &in) < 0) {
        nim_free(b.fresh);
        cJSON_Delete(arr);
        drop(n, 1006, "cannot store received messages");   /* they come back as roaming */
        return;
    }
    if (c.value > n->cur_msgs) n->cur_msgs = c.value;
    nim_free(b.fresh);
    cJSON_Delete(arr);
}

enum { LIVE_BATCH = 256 };

static void on_live_msg(nim_net *n, cJSON *data) {
    cJSON *m = cJSON_GetObjectItemCaseSensitive(data, "msg");
    if (!cJSON_IsObject(m)) return;
    if (!n->live && !(n->live = cJSON_CreateArray())) {
        drop(n, 1006, "cannot store a received message");
        return;
    }
    cJSON_DetachItemViaPointer(data, m);
    cJSON_AddItemToArray(n->live, m);
    if (++n->live_count >= LIVE_BATCH) flush_live(n);
}

static int64_t max_ver(const cJSON *arr) {
    int64_t v = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) if (jnum(it, "ver") > v) v = jnum(it, "ver");
    return v;
}

/* A state change (read pointers, receipts, sticky top) could not be
 * stored: the state cursor must not pass it, so sync again. */
static void state_lost(nim_net *n, const char *what) {
    char why[96];
    snprintf(why, sizeof why, "cannot store %s: syncing again", what);
    drop(n, 1006, why);
}

static void on_pointers(nim_net *n, cJSON *data, int live) {
    const cJSON *ptrs = cJSON_GetObjectItemCaseSensitive(data, "pointers");
    nim_engine_cursor c = { KEY_STATE, max_ver(ptrs) };
    if (!n->sync_unread) {
        if (live) nim_engine_ingest(n->e, &(nim_ingest){ .cursor = &c });
        return;
    }
    if (nim_engine_apply_acks(n->e, ptrs, live ? &c : NULL) < 0) state_lost(n, "read pointers");
}

static void on_receipts(nim_net *n, cJSON *data, int live) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(data, "receipts");
    nim_engine_cursor c = { KEY_STATE, max_ver(r) };
    if (nim_engine_apply_receipts(n->e, r, live ? &c : NULL) < 0) state_lost(n, "receipts");
}

/* Server sticky-top items -> the session-shaped list the app sees. */
static cJSON *tops_for_app(const cJSON *list) {
    cJSON *out = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        cJSON *o = cJSON_Duplicate(it, 1);
        if (!o) continue;
        const char *sid = jstr(o, "sessionId");
        if (sid) cJSON_AddStringToObject(o, "id", sid);
        cJSON_AddBoolToObject(o, "isTop", 1);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

static void on_tops(nim_net *n, cJSON *data) {
    if (!n->sync_top) return;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(data, "sessions");
    if (nim_engine_apply_tops(n->e, list, 1) < 0) { state_lost(n, "sticky top sessions"); return; }
    if (n->want & NIM_NET_WANT_TOPS) callback(n, "onStickTopSessions", tops_for_app(list));
}

static void on_top_push(nim_net *n, cJSON *data) {
    const char *op = jstr(data, "op");
    cJSON *s = cJSON_GetObjectItemCaseSensitive(data, "session");
    if (!op || !cJSON_IsObject(s)) return;
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

static void on_login_reply(nim_net *n, const nim_frame *f) {
    if (f->code != NIM_CODE_OK) {
        char why[160];
        snprintf(why, sizeof why, "login refused: %s", f->error ? f->error : nim_proto_code_text(f->code));
        /* a wrong token or version does not get better by retrying */
        int retry = f->code == NIM_CODE_SERVER;
        n->state = ST_LOGIN;   /* so ondisconnect is reported */
        if (!retry) report_error(n, NULL, f->code, why, "login");
        drop(n, f->code, why);
        connection_lost(n, f->code, why, retry);
        return;
    }
    n->state = ST_SYNC;
    n->offline_max = 0;
    n->offline_count = 0;
    n->offline_bytes = 0;
    n->more_after = 0;
    nim_engine_sync_begin(n->e);
    n->quiet = 1;
    if (n->silent) { n->silent = 0; return; }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "account", n->account);
        cJSON_AddStringToObject(o, "deviceId", n->device);
        cJSON_AddNumberToObject(o, "serverTime", (double)jnum(f->data, "serverTime"));
    }
    callback(n, "onconnect", o);
}

/* The server's answer to an app request. */
static void on_app_reply(nim_net *n, pending *p, nim_frame *f) {
    if (f->code != NIM_CODE_OK) {
        if (p->msg) { set_status(p->msg, "fail"); update_with(n, p->msg); }
        reply_code(n, p->req, f->code, f->error);
        return;
    }
    cJSON *data = f->data;
    switch (p->cmd) {
    case NIM_NETCMD_SEND_MSG: {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(data, "msg");
        if (!cJSON_IsObject(m)) { reply_code(n, p->req, NIM_CODE_SERVER, "reply without msg"); return; }
        cJSON_DetachItemViaPointer(data, m);
        cJSON *arr = cJSON_CreateArray();
        if (!arr) { cJSON_Delete(m); return; }
        cJSON_AddItemToArray(arr, m);
        nim_engine_cursor c = { KEY_MSGS, jid(m, "idServer") };
        if (nim_engine_ingest(n->e, &(nim_ingest){ .msgs = arr, .cursor = &c }) < 0) {
            cJSON_Delete(arr);
            nim_engine_reply(n->e, p->req, NIM_ERR_DB, "sent, but could not be stored", NULL);
            return;
        }
        if (c.value > n->cur_msgs) n->cur_msgs = c.value;
        cJSON_DetachItemViaPointer(arr, m);
        cJSON_Delete(arr);
        nim_engine_reply(n->e, p->req, NULL, NULL, m);
        return;
    }
    case NIM_NETCMD_ADD_TOP: case NIM_NETCMD_UPDATE_TOP: case NIM_NETCMD_DELETE_TOP: {
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
        if (cJSON_IsObject(s) && jstr(s, "sessionId")) cJSON_AddStringToObject(s, "id", jstr(s, "sessionId"));
        break;
    }
    case NIM_NETCMD_GET_TOPS: {
        cJSON *list = tops_for_app(cJSON_GetObjectItemCaseSensitive(data, "sessions"));
        cJSON *o = cJSON_CreateObject();
        if (o) cJSON_AddItemToObject(o, "sessions", list); else cJSON_Delete(list);
        nim_engine_reply(n->e, p->req, NULL, NULL, o);
        return;
    }
    default: break;
    }
    cJSON *d = data;
    if (d) cJSON_DetachItemViaPointer(f->root, d);
    nim_engine_reply(n->e, p->req, NULL, NULL, d);
}

static void on_frame(nim_net *n, const char *buf, size_t len) {
    nim_frame f;
    const char *err;
    if (nim_proto_decode(buf, len, NIM_PROTO_MAX_FRAME, &f, &err) != NIM_CODE_OK) {
        /* malformed, or memory ran out parsing it: either way it may have
         * carried a message; skipping it would lose that message when a
         * later one raised the cursor, so sync again from the stored one */
        report_error(n, NULL, NIM_CODE_BAD_FRAME, err, "frame");
        flush_live(n);
        drop(n, 1006, "a frame from the server could not be read: syncing again");
        return;
    }
    if (!(f.kind == NIM_FRAME_PUSH && nim_proto_push_from_name(f.name) == NIM_PUSH_MSG))
        flush_live(n);                  /* what came before this frame is stored first */
    if (f.kind == NIM_FRAME_RESPONSE) {
        pending *p = take_pending(n, f.id);
        if (p) {
            switch (p->kind) {
            case RQ_LOGIN: on_login_reply(n, &f); break;
            case RQ_APP: on_app_reply(n, p, &f); break;
            case RQ_MARK:
                if (p->id != n->more_after) break;
                if (f.code == NIM_CODE_OK) {
                    n->relogin = 1;
                    drop(n, 1000, "fetching the rest of the offline messages");
                } else {
                    finish_sync(n);    /* the rest comes at the next login */
                }
                break;
            case RQ_ACKS: acks_answered(n, p, f.code); break;
            default: break;   /* ping: nothing to do with the answer */
            }
            cJSON_Delete(p->msg);
            nim_free(p);
        }
    } else if (f.kind == NIM_FRAME_PUSH && n->state >= ST_SYNC) {
        switch (nim_proto_push_from_name(f.name)) {
        case NIM_PUSH_ROAMING_MSGS: on_sync_msgs(n, f.data, 0, len); break;
        case NIM_PUSH_OFFLINE_MSGS: on_sync_msgs(n, f.data, 1, len); break;
        case NIM_PUSH_READ_POINTERS: on_pointers(n, f.data, n->state == ST_READY); break;
        case NIM_PUSH_RECEIPTS: on_receipts(n, f.data, n->state == ST_READY); break;
        case NIM_PUSH_STICK_TOP_SESSIONS: on_tops(n, f.data); break;
        case NIM_PUSH_SYNC_DONE: on_sync_done(n, f.data); break;
        case NIM_PUSH_MSG: on_live_msg(n, f.data); break;
        case NIM_PUSH_STICK_TOP: on_top_push(n, f.data); break;
        case NIM_PUSH_KICKED:
            n->user_down = 1;   /* the close (4001) follows: no reconnect */
            break;
        default: break;         /* team and unknown pushes */
        }
    }
    nim_frame_free(&f);
}

/* ------------------------------------------------------------ lws callback */

/* The login request. Built whole or not sent: a login missing its token
 * would be refused for good, and one never sent would wait forever; when
 * memory runs out the connection is dropped and tried again. */
static void send_login(nim_net *n) {
    cJSON *d = cJSON_CreateObject(), *cur = cJSON_CreateObject();
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
        drop(n, 1006, "cannot build the login (out of memory)");
        return;
    }
    n->state = ST_LOGIN;
    if (!request(n, RQ_LOGIN, 0, 0, NIM_WIRE_LOGIN, d, NULL)) drop(n, 1006, "cannot send the login (out of memory)");
}

static int rx_append(nim_net *n, const void *in, size_t len) {
    if (n->rx_len + len > NIM_PROTO_MAX_FRAME) return -1;
    if (n->rx_len + len > n->rx_cap) {
        size_t cap = n->rx_cap ? n->rx_cap : 65536;
        while (cap < n->rx_len + len) cap *= 2;
        char *p = nim_realloc(n->rx, cap);
        if (!p) return -1;
        n->rx = p;
        n->rx_cap = cap;
    }
    memcpy(n->rx + n->rx_len, in, len);
    n->rx_len += len;
    return 0;
}

static int callback_client(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len) {
    nim_net *n = lws_context_user(lws_get_context(wsi));
    if (!n) return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (n->wsi == wsi || n->state == ST_CONNECTING) {
            char why[160];
            snprintf(why, sizeof why, "cannot connect: %s", in ? (const char *)in : "error");
            connection_lost(n, 1006, why, !n->user_down);
        }
        return 0;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        n->wsi = wsi;
        n->last_rx = n->last_tx = mono_ms();
        n->ping_at = 0;
        send_login(n);
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        /* once we decided to drop, nothing more is read: a frame after one
         * we could not take would raise a cursor past it */
        if (wsi != n->wsi || n->drop_code) break;
        n->last_rx = mono_ms();
        if (rx_append(n, in, len) < 0) {
            drop(n, 1009, "frame from the server too large");
            return -1;
        }
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) break;
        {
            size_t m = n->rx_len;
            n->rx_len = 0;
            on_frame(n, n->rx, m);
        }
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (wsi != n->wsi) break;
        out_frame *o = n->out_head;
        if (!o) break;
        n->out_head = o->next;
        if (!n->out_head) n->out_tail = NULL;
        int w = lws_write(wsi, (unsigned char *)o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
        size_t want = o->len;
        nim_free(o->buf);
        nim_free(o);
        if (w < (int)want) return -1;
        n->last_tx = mono_ms();
        if (n->out_head) lws_callback_on_writable(wsi);
        break;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == n->wsi && len >= 2) {
            const unsigned char *b = in;
            n->close_code = (b[0] << 8) | b[1];
            size_t rl = len - 2 < sizeof n->close_reason - 1 ? len - 2 : sizeof n->close_reason - 1;
            memcpy(n->close_reason, b + 2, rl);
            n->close_reason[rl] = '\0';
        }
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        /* WSI_DESTROY: a connection killed before it was established (a
         * handshake timeout) may get no other callback */
        if (wsi == n->wsi) {
            int code = n->drop_code ? n->drop_code : n->close_code ? n->close_code : 1006;
            const char *why = n->drop_code ? n->drop_reason
                            : n->close_reason[0] ? n->close_reason : "connection closed";
            int retry = !n->user_down && code != NIM_CLOSE_KICKED && code != NIM_CODE_AUTH &&
                        code != NIM_CODE_VERSION;
            if (code == NIM_CLOSE_KICKED) n->user_down = 1;
            connection_lost(n, code, why, retry);
        }
        break;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* the owner queued a command: the engine loop runs it after this service */
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, callback_client, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---------------------------------------------------------------- timers */

static void on_tick(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, tick);
    int64_t now = mono_ms();
    /* request deadlines */
    /* request deadlines: one timeout for all, so the oldest expire first */
    while (n->pend && n->pend->deadline <= now) {
        pending *p = pop_pending(n);
        if (p->kind == RQ_LOGIN) {
            nim_free(p);
            drop(n, 1006, "login timed out");
            continue;
        }
        if (p->kind == RQ_MARK && p->id == n->more_after) finish_sync(n);
        fail_pending(n, p, NIM_ERR_TIMEOUT, "no reply from the server in time");
    }
    if (n->state == ST_CONNECTING && now - n->connect_started > n->req_timeout && n->wsi &&
        !n->drop_code)
        drop(n, 1006, "connect timed out");
    if (n->state >= ST_SYNC && n->wsi && !n->drop_code) {
        if (now - n->last_rx >= 2 * (int64_t)n->heartbeat) {
            drop(n, 1006, "heartbeat: no reply from the server");
        } else if ((now - n->last_rx >= n->heartbeat || now - n->last_tx >= n->heartbeat) &&
                   (!n->ping_at || now - n->ping_at >= n->heartbeat)) {
            n->ping_at = now;
            request(n, RQ_PING, 0, 0, NIM_WIRE_PING, NULL, NULL);
        }
    }
    if (n->state == ST_IDLE && n->reconnect_at && now >= n->reconnect_at && !n->user_down)
        start_connect(n);
    lws_sul_schedule(n->ctx, 0, &n->tick, on_tick, TICK_US);
}

/* ----------------------------------------------------------------- hooks */

static int hook_start(nim_engine *e, void *ud) {
    nim_net *n = ud;
    n->e = e;
    if (n->local) return 0;
    nim_engine_kv_get(e, KEY_MSGS, &n->cur_msgs, NULL);
    nim_engine_kv_get(e, KEY_STATE, &n->cur_state, NULL);
    if (!n->device) {
        char *dev = NULL;
        nim_engine_kv_get(e, KEY_DEVICE, NULL, &dev);
        if (!dev || !nim_proto_valid_device(dev)) {
            nim_free(dev);
            char hex[33];
            random_hex(hex, 8);
            dev = nim_malloc(40);
            if (dev) {
                snprintf(dev, 40, "lua-%s", hex);
                nim_engine_kv_set(e, KEY_DEVICE, 0, dev);
            }
        }
        if (!dev) return -1;
        n->device = dev;
    }
    char hex[17];
    random_hex(hex, 6);
    snprintf(n->idc_prefix, sizeof n->idc_prefix, "%s", hex);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = n;
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        report_error(n, "Net_Error", 0, "cannot create the network context", "connect");
        n->user_down = 1;
        return 0;   /* local storage still works */
    }
    pthread_mutex_lock(&n->ctx_lock);
    n->ctx = ctx;
    pthread_mutex_unlock(&n->ctx_lock);
    lws_sul_schedule(ctx, 0, &n->tick, on_tick, TICK_US);
    start_connect(n);
    return 0;
}

/* One lws pass; timeout_ms needs no timer of its own: the TICK_US tick
 * ends a pass at least that often. */
static void hook_wait(nim_engine *e, void *ud, int timeout_ms) {
    nim_net *n = ud;
    flush_acks(n);
    if (n->ctx) lws_service(n->ctx, 0);
    flush_live(n);                      /* the pass's live messages, one transaction */
}

static void hook_wake(nim_engine *e, void *ud) {
    nim_net *n = ud;
    pthread_mutex_lock(&n->ctx_lock);
    if (n->ctx) lws_cancel_service(n->ctx);
    pthread_mutex_unlock(&n->ctx_lock);
}

/* The wire request and data for an app command (net/commands.h);
 * NIM_WIRE_UNKNOWN when it is not a request. sendMsg gets an idClient
 * when it has none, and *msg, the local "sending" copy. */
static nim_wire_cmd app_request(nim_net *n, nim_cmd *c, cJSON **data, cJSON **msg) {
    const nim_command *row = nim_command_by_id(c->type);
    *data = c->args;
    *msg = NULL;
    if (!row) return NIM_WIRE_UNKNOWN;
    if (c->type == NIM_NETCMD_SEND_MSG) {
        cJSON *a = c->args;
        char idc[64];
        if (!jstr(a, "idClient")) {
            snprintf(idc, sizeof idc, "%s-%s-%llu", n->device, n->idc_prefix,
                     (unsigned long long)++n->idc_counter);
            if (strlen(idc) > NIM_PROTO_MAX_IDCLIENT || strlen(n->device) > 30)
                snprintf(idc, sizeof idc, "%s-%llu", n->idc_prefix, (unsigned long long)n->idc_counter);
            cJSON_AddStringToObject(a, "idClient", idc);
        }
        /* the local copy the session shows while sending */
        cJSON *m = cJSON_Duplicate(a, 1);
        if (m) {
            const char *scene = jstr(a, "scene"), *to = jstr(a, "to");
            char sid[160];
            snprintf(sid, sizeof sid, "%s-%s", scene ? scene : "", to ? to : "");
            cJSON_AddStringToObject(m, "from", n->account);
            cJSON_AddStringToObject(m, "fromDevice", n->device);
            cJSON_AddNumberToObject(m, "time", (double)wall_ms());
            cJSON_AddStringToObject(m, "flow", "out");
            cJSON_AddStringToObject(m, "target", to ? to : "");
            cJSON_AddStringToObject(m, "sessionId", sid);
            cJSON_AddStringToObject(m, "status", "sending");
        }
        *msg = m;
    }
    return row->wire;
}

static void hook_command(nim_engine *e, void *ud, nim_cmd *c) {
    nim_net *n = ud;
    if (c->type == NIM_NETCMD_DISCONNECT) {
        n->user_down = 1;
        n->reconnect_at = 0;
        if (n->wsi) drop(n, 1000, "disconnected by the app");
        nim_engine_reply(e, c->req, NULL, NULL, NULL);
        return;
    }
    if (c->type == NIM_NETCMD_CONNECT) {
        if (n->local || !n->ctx) {
            nim_engine_reply(e, c->req, NIM_ERR_NOT_CONNECTED, "no server configured", NULL);
            return;
        }
        n->user_down = 0;
        n->retries = 0;
        if (n->state == ST_IDLE && !n->wsi) start_connect(n);
        nim_engine_reply(e, c->req, NULL, NULL, NULL);
        return;
    }
    if (n->state != ST_SYNC && n->state != ST_READY) {
        nim_engine_reply(e, c->req, NIM_ERR_NOT_CONNECTED,
                         n->local ? "no server configured (local-only mode)" : "not connected", NULL);
        return;
    }
    cJSON *data, *msg;
    nim_wire_cmd wire = app_request(n, c, &data, &msg);
    if (wire == NIM_WIRE_UNKNOWN) {
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
        return;
    }
    c->args = NULL;   /* taken by the request */
    if (msg) update_with(n, msg);
    pending *p = request(n, RQ_APP, c->type, c->req, wire, data, msg ? cJSON_Duplicate(msg, 1) : NULL);
    if (!p) {
        if (msg) { set_status(msg, "fail"); update_with(n, msg); }
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "request over 65536 bytes (or out of memory)", NULL);
    }
    cJSON_Delete(msg);
}

static void hook_stop(nim_engine *e, void *ud) {
    nim_net *n = ud;
    flush_live(n);
    for (pending *p; (p = pop_pending(n));) {
        if (p->kind == RQ_APP) nim_engine_reply(e, p->req, NIM_ERR_CLOSED, "the instance was destroyed", NULL);
        cJSON_Delete(p->msg);
        nim_free(p);
    }
    n->stopping = 1;
    pthread_mutex_lock(&n->ctx_lock);
    struct lws_context *ctx = n->ctx;
    n->ctx = NULL;
    pthread_mutex_unlock(&n->ctx_lock);
    n->user_down = 1;
    if (ctx) {
        lws_sul_cancel(&n->tick);
        lws_context_destroy(ctx);   /* closes the connection (callbacks see user_down) */
    }
    n->wsi = NULL;
    out_free_all(n);
}

void nim_net_hooks(nim_net *n, nim_engine_hooks *h) {
    memset(h, 0, sizeof *h);
    h->ud = n;
    h->start = hook_start;
    h->command = hook_command;
    h->stop = hook_stop;
    h->acked = acked_hook;
    if (!n->local) {
        h->wait = hook_wait;
        h->wake = hook_wake;
    }
}

/* ------------------------------------------------------------ life cycle */

static int parse_url(nim_net *n, const char *url, const char **err) {
    if (strncmp(url, "ws://", 5) != 0) { *err = "server: ws://host:port expected (wss is not supported)"; return -1; }
    const char *h = url + 5, *end = h + strcspn(h, ":/");
    if (end == h) { *err = "server: no host"; return -1; }
    n->host = nim_strndup(h, (size_t)(end - h));
    n->port = 80;
    if (*end == ':') {
        char *e2;
        long p = strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || p <= 0 || p > 65535) { *err = "server: bad port"; return -1; }
        n->port = (int)p;
        end = e2;
    }
    if (*end && *end != '/') { *err = "server: bad URL"; return -1; }
    n->path = xdup(*end ? end : "/");
    if (!n->host || !n->path) { *err = "out of memory"; return -1; }
    return 0;
}

nim_net *nim_net_new(const nim_net_config *cfg, const char **err) {
    static int log_set;
    if (!log_set) {                 /* process-wide: lws notices would go to stderr */
        log_set = 1;
        lws_set_log_level(LLL_ERR, NULL);
    }
    const char *dummy;
    if (!err) err = &dummy;
    *err = "out of memory";
    nim_net *n = nim_calloc(1, sizeof *n);
    if (!n) return NULL;
    pthread_mutex_init(&n->ctx_lock, NULL);
    n->seed = (unsigned)wall_ms() ^ (unsigned)(uintptr_t)n;
    n->local = cfg->server == NULL;
    n->need_reconnect = cfg->need_reconnect;
    n->sync_unread = cfg->sync_unread;
    n->sync_top = cfg->sync_top;
    n->want = cfg->want;
    n->req_timeout = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 10000;
    n->heartbeat = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 30000;
    n->rc_min = cfg->reconnect_min_ms > 0 ? cfg->reconnect_min_ms : 250;
    n->rc_max = cfg->reconnect_max_ms > 0 ? cfg->reconnect_max_ms : 8000;
    if (n->rc_max < n->rc_min) n->rc_max = n->rc_min;
    if (!n->local) {
        n->server = xdup(cfg->server);
        n->account = xdup(cfg->account);
        n->token = xdup(cfg->token ? cfg->token : "");
        if (cfg->device_id) n->device = xdup(cfg->device_id);
        if (!n->server || !n->account || !n->token || (cfg->device_id && !n->device) ||
            parse_url(n, cfg->server, err) < 0) {
            nim_net_free(n);
            return NULL;
        }
    }
    return n;
}

void nim_net_free(nim_net *n) {
    if (!n) return;
    cJSON_Delete(n->live);
    for (pending *p; (p = pop_pending(n));) {
        cJSON_Delete(p->msg);
        nim_free(p);
    }
    out_free_all(n);
    nim_free(n->rx);
    nim_free(n->server);
    nim_free(n->account);
    nim_free(n->token);
    nim_free(n->device);
    nim_free(n->host);
    nim_free(n->path);
    pthread_mutex_destroy(&n->ctx_lock);
    nim_free(n);
}
