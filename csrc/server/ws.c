/* nim-server's WebSocket side: the lws protocol callback, message reassembly
 * with the size limit, and the per-connection output queue written only from
 * LWS_CALLBACK_SERVER_WRITEABLE (after the lws minimal examples). Event-loop
 * thread only. */
#include "server/server.h"
#include "server/auth.h"
#include "server/admit.h"
#include "core/alloc.h"
#include <libwebsockets.h>
#include <string.h>
#include <stdio.h>

srv_state srv;

/* Frees every frame queued for c. */
static void out_drop_all(srv_conn *c) {
    srv.out_total -= c->out_bytes;
    while (c->out_head) {
        srv_out *o = c->out_head;
        c->out_head = o->next;
        nim_free(o);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
}

int srv_queue_raw(srv_conn *c, const char *json, size_t len) {
    if (c->close_code) return -1; /* closing: nothing more goes out */
    if (c->out_bytes + len > SRV_MAX_QUEUED_BYTES) {
        /* A reader this slow would make us hold unbounded memory. */
        srv_close_after_flush(c, NIM_CLOSE_POLICY, "reader too slow");
        return -1;
    }
    srv_out *o = nim_malloc(sizeof *o + LWS_PRE + len);
    if (!o) return -1;
    o->next = NULL;
    o->len = len;
    memcpy(o->buf + LWS_PRE, json, len);
    if (c->out_tail) c->out_tail->next = o;
    else c->out_head = o;
    c->out_tail = o;
    c->out_bytes += len;
    srv.out_total += len;
    lws_callback_on_writable(c->wsi);
    /* Over the server's total: the connections holding the most unsent
     * output (the slowest readers) are cut, their queues freed at once.
     * What they did not get stays offline for their accounts. */
    while (srv.out_total > srv.max_output) {
        srv_conn *big = NULL;
        for (srv_conn *x = srv.conns; x; x = x->next)
            if (!x->close_code && (!big || x->out_bytes > big->out_bytes)) big = x;
        if (!big || !big->out_bytes) break;
        srv_close_after_flush(big, NIM_CLOSE_POLICY, "server output memory full: reader too slow");
        if (big == c) return -1;
    }
    return 0;
}

int srv_queue_json(srv_conn *c, const cJSON *root) {
    size_t len;
    char *s = nim_proto_print(root, 0, &len);
    if (!s) return -1;
    int rc = srv_queue_raw(c, s, len);
    nim_free(s);
    return rc;
}

void srv_reply(srv_conn *c, int64_t id, const char *cmd, int code, const char *error, cJSON *data) {
    if (code == NIM_CODE_SERVER && !error) error = srv_db_storage_error(srv.db);
    cJSON *r = nim_proto_response(id, cmd, code, error, data);
    if (!r) {
        /* Out of memory building the reply: the client still gets a code. */
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"\",\"code\":500,\"error\":\"server error\"}",
                         (long long)(id < 0 ? 0 : id));
        srv_queue_raw(c, buf, (size_t)n);
        return;
    }
    srv_queue_json(c, r);
    cJSON_Delete(r);
}

void srv_push_account(const char *account, const srv_conn *except, const char *name, cJSON *data) {
    cJSON *p = nim_proto_push(name, data);
    if (!p) return;
    size_t len;
    char *s = nim_proto_print(p, 0, &len);
    cJSON_Delete(p);
    if (!s) return;
    for (srv_conn *c = srv.conns; c; c = c->next)
        if (c != except && srv_conn_live(c) && strcmp(c->account, account) == 0)
            srv_queue_raw(c, s, len);
    nim_free(s);
}

void srv_close_after_flush(srv_conn *c, int code, const char *reason) {
    if (c->close_code) return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    if (code == NIM_CLOSE_POLICY) out_drop_all(c);   /* the peer is not reading, or is hostile */
    /* If the peer never lets us write the close frame, give up after 5 s. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
    lws_callback_on_writable(c->wsi);
}

enum { FRAME_TAIL = 3 }; /* "]}}" */

int srv_frame_init(srv_frame *f, const char *push, const char *key) {
    memset(f, 0, sizeof *f);
    char head[96];
    int n = snprintf(head, sizeof head, "{\"push\":\"%s\",\"data\":{\"%s\":[", push, key);
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    f->cap = SRV_BATCH_BYTES + 1024;
    if (!(f->buf = nim_malloc(f->cap))) return -1;
    memcpy(f->buf, head, (size_t)n);
    f->len = f->head_len = (size_t)n;
    return 0;
}

int srv_frame_fits(const srv_frame *f, size_t n) {
    return f->items == 0 || f->len + 1 + n + FRAME_TAIL <= SRV_BATCH_BYTES;
}

int srv_frame_add(srv_frame *f, const char *item, size_t n) {
    size_t need = f->len + 1 + n + FRAME_TAIL + 1;
    if (need > f->cap) {
        char *bigger = nim_realloc(f->buf, need);
        if (!bigger) return -1;
        f->buf = bigger;
        f->cap = need;
    }
    if (f->items > 0) f->buf[f->len++] = ',';
    memcpy(f->buf + f->len, item, n);
    f->len += n;
    f->items++;
    return 0;
}

int srv_frame_queue(srv_conn *c, srv_frame *f, const char *extra) {
    if (f->items == 0) return 0;
    size_t x = extra ? strlen(extra) : 0;
    if (f->len + 1 + x + 2 > f->cap) {
        char *bigger = nim_realloc(f->buf, f->len + 1 + x + 2);
        if (!bigger) return -1;
        f->buf = bigger;
        f->cap = f->len + 1 + x + 2;
    }
    size_t len = f->len;
    f->buf[len++] = ']';
    if (x) memcpy(f->buf + len, extra, x);
    len += x;
    memcpy(f->buf + len, "}}", 2);
    len += 2;
    int rc = srv_queue_raw(c, f->buf, len);
    f->len = f->head_len;
    f->items = 0;
    return rc;
}

void srv_frame_free(srv_frame *f) {
    nim_free(f->buf);
    f->buf = NULL;
}

int srv_queue_batched(srv_conn *c, const char *name, const char *key, cJSON *items) {
    srv_frame f;
    int rc = srv_frame_init(&f, name, key);
    for (cJSON *it = items ? items->child : NULL; it && rc == 0; it = it->next) {
        size_t n = 0;
        char *s = nim_proto_print(it, 0, &n);
        if (!s) { rc = -1; break; }
        if (!srv_frame_fits(&f, n)) rc = srv_frame_queue(c, &f, NULL);
        if (rc == 0) rc = srv_frame_add(&f, s, n);
        nim_free(s);
    }
    if (rc == 0) rc = srv_frame_queue(c, &f, NULL);
    srv_frame_free(&f);
    cJSON_Delete(items);
    return rc;
}

static void conn_free_buffers(srv_conn *c) {
    out_drop_all(c);
    nim_free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

static int close_now(struct lws *wsi, int code, const char *reason) {
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Appends a received piece to the message being reassembled. The limit is
 * checked against what is still announced to come too, so an oversized
 * frame is refused at its first piece, before it is buffered. */
static int rx_append(srv_conn *c, const void *in, size_t len, size_t remaining) {
    if (c->rx_len + len + remaining > NIM_PROTO_MAX_REQUEST) return 1;
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len) cap *= 2;
        if (cap > NIM_PROTO_MAX_REQUEST) cap = NIM_PROTO_MAX_REQUEST;
        unsigned char *p = nim_realloc(c->rx, cap);
        if (!p) return -1;
        c->rx = p;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    return 0;
}

static void held_free(srv_conn *c) {
    while (c->held) {
        srv_held *h = c->held;
        c->held = h->next;
        nim_free(h);
    }
    c->held_tail = NULL;
}

void srv_release_held(srv_conn *c) {
    if (c->wsi) lws_rx_flow_control(c->wsi, 1);
    while (c->held && !c->auth_pending && c->wsi && !c->close_code) {
        srv_held *h = c->held;
        if (!(c->held = h->next)) c->held_tail = NULL;
        srv_handle_message(c, h->buf, h->len);
        nim_free(h);
    }
}

static int callback_nim(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                        void *in, size_t len) {
    static uint64_t serials;
    srv_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        /* at accept, before any handshake: the connection caps (admit.c) */
        const struct lws_filter_network_conn_args *a = user;
        return a && srv_admit(&a->cli_addr, (int)a->accept_fd) == 0 ? 0 : 1;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        /* remember the counted descriptor: by WSI_DESTROY lws has closed
         * it and forgotten its number */
        lws_set_opaque_user_data(wsi, (void *)(intptr_t)(lws_get_socket_fd(wsi) + 1));
        break;
    case LWS_CALLBACK_WSI_DESTROY: {
        intptr_t fd1 = (intptr_t)lws_get_opaque_user_data(wsi);
        if (fd1 > 0) srv_admit_gone((int)(fd1 - 1));
        break;
    }

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        srv_auth_collect();   /* logins the credentials thread has derived */
        break;

    case LWS_CALLBACK_ESTABLISHED:
        memset(c, 0, sizeof *c);
        c->wsi = wsi;
        c->serial = ++serials;
        lws_get_peer_simple(wsi, c->addr, sizeof c->addr);
        c->next = srv.conns;
        if (srv.conns) srv.conns->prev = c;
        srv.conns = c;
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, SRV_LOGIN_TIMEOUT_S);
        break;

    case LWS_CALLBACK_CLOSED:
        if (!c->wsi) break;
        srv_conn_gone(c);
        held_free(c);
        if (c->prev) c->prev->next = c->next;
        else srv.conns = c->next;
        if (c->next) c->next->prev = c->prev;
        conn_free_buffers(c);
        c->wsi = NULL;
        break;

    case LWS_CALLBACK_RECEIVE: {
        if (!c->wsi || c->close_code) break;
        if (lws_frame_is_binary(wsi))
            return close_now(wsi, NIM_CLOSE_UNSUPPORTED, "binary frames are not supported");
        int r = rx_append(c, in, len, lws_remaining_packet_payload(wsi));
        if (r > 0) return close_now(wsi, NIM_CLOSE_TOO_LARGE, "frame over 65536 bytes");
        if (r < 0) return close_now(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) break;
        size_t n = c->rx_len;
        c->rx_len = 0;
        if (c->auth_pending || c->held) {
            /* the login is being derived: keep this for after it (in order),
             * and read no more meanwhile */
            srv_held *h = nim_malloc(sizeof *h + n);
            if (!h) return close_now(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
            h->next = NULL;
            h->len = n;
            memcpy(h->buf, c->rx, n);
            if (c->held_tail) c->held_tail->next = h; else c->held = h;
            c->held_tail = h;
            lws_rx_flow_control(wsi, 0);
            break;
        }
        if (c->logged_in && srv.idle_timeout_s > 0)
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, srv.idle_timeout_s);
        srv_handle_message(c, (const char *)c->rx, n);
        break;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!c->wsi) break;
        if (c->out_head) {
            /* Several frames per callback (a group commit queues many at
             * once), each only while the socket takes more without a pending
             * partial write (lws_send_pipe_choked checks both). */
            int sent = 0;
            do {
                srv_out *o = c->out_head;
                c->out_head = o->next;
                if (!c->out_head) c->out_tail = NULL;
                c->out_bytes -= o->len;
                srv.out_total -= o->len;
                int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
                size_t want = o->len;
                nim_free(o);
                if (n < (int)want) return -1;
            } while (c->out_head && ++sent < SRV_WRITES_PER_CALLBACK && !lws_send_pipe_choked(wsi));
        } else if (c->close_code) {
            return close_now(wsi, c->close_code, c->close_reason);
        }
        /* The next page of a sync once the peer has taken the previous ones:
         * a reader that stalls holds at most the low water mark. */
        if (c->sync.stage != SRV_SYNC_OFF && !c->close_code && c->out_bytes < SRV_SYNC_LOW_WATER)
            srv_sync_step(c);
        if (c->out_head || c->close_code) lws_callback_on_writable(wsi);
        break;
    }

    default:
        break;
    }
    return 0;
}

const struct lws_protocols srv_protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, callback_nim, sizeof(srv_conn), 16384, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
