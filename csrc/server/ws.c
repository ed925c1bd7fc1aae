/* nim-server's transport (transport.h), the one file that knows lws: the
 * context and its service loop, the protocol callback, message reassembly
 * with the size limit, the per-connection output queue written only from
 * LWS_CALLBACK_SERVER_WRITEABLE (after the lws minimal examples), and the
 * srv_transport the request side answers through. Event-loop thread only,
 * but wake. */
#include "server/server.h"
#include "server/auth.h"
#include "server/admit.h"
#include "core/alloc.h"
#include <libwebsockets.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>

srv_state srv;

static struct lws_context *ws_ctx;
static volatile sig_atomic_t interrupted;

static void ws_close_after_flush(srv_conn *c, int code, const char *reason);

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

static int ws_queue(srv_conn *c, const char *json, size_t len) {
    if (c->close_code) return -1; /* closing: nothing more goes out */
    if (c->out_bytes + len > SRV_MAX_QUEUED_BYTES) {
        /* A reader this slow would make us hold unbounded memory. */
        ws_close_after_flush(c, NIM_CLOSE_POLICY, "reader too slow");
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
        ws_close_after_flush(big, NIM_CLOSE_POLICY, "server output memory full: reader too slow");
        if (big == c) return -1;
    }
    return 0;
}

static void ws_close_after_flush(srv_conn *c, int code, const char *reason) {
    if (c->close_code) return;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    if (code == NIM_CLOSE_POLICY) out_drop_all(c);   /* the peer is not reading, or is hostile */
    /* If the peer never lets us write the close frame, give up after 5 s. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
    lws_callback_on_writable(c->wsi);
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

static void ws_release_held(srv_conn *c) {
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

static const struct lws_protocols protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, callback_nim, sizeof(srv_conn), 16384, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ------------------------------------------------ what the handlers ask */

static void ws_want_write(srv_conn *c) {
    lws_callback_on_writable(c->wsi);
}

static void ws_set_idle(srv_conn *c, int seconds) {
    lws_set_timeout(c->wsi, seconds > 0 ? PENDING_TIMEOUT_USER_OK : NO_PENDING_TIMEOUT, seconds);
}

static void ws_drop(srv_conn *c) {
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Any thread: lws_cancel_service only writes to lws's wake-up pipe, so the
 * blocked poll() returns (LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
static void ws_wake(void) {
    if (ws_ctx) lws_cancel_service(ws_ctx);
}

static const srv_transport ws_transport = {
    .queue = ws_queue,
    .close_after_flush = ws_close_after_flush,
    .want_write = ws_want_write,
    .set_idle = ws_set_idle,
    .release_held = ws_release_held,
    .drop = ws_drop,
    .wake = ws_wake,
};

/* ------------------------------------------------------ main.c's side */

/* Signal handler: the flag, then a wake, so the loop sees it. */
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
    ws_wake();
}

int srv_ws_open(const char *host, int port, const char *tls_cert, const char *tls_key, int verbose) {
    lws_set_log_level(verbose ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(host, ':') == NULL);
    info.timeout_secs = 10;  /* handshake and other lws-internal timeouts */
    /* One read takes up to a full rx buffer of pipelined frames (default
     * 4096), so a burst needs fewer passes and shares fewer commits. */
    info.pt_serv_buf_size = 16384;
    if (tls_cert) {
        /* TLS only: lws refuses a plain connection on this port */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = tls_cert;
        info.ssl_private_key_filepath = tls_key;
    }
    srv.io = &ws_transport;
    ws_ctx = lws_create_context(&info);
    if (!ws_ctx) {
        fprintf(stderr, "nim-server: cannot listen on %s:%d%s\n", host, port,
                tls_cert ? " (or the TLS certificate and key do not load, or do not match)" : "");
        return -1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ws_ctx, "default");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return vh ? lws_get_vhost_listen_port(vh) : port;
}

void srv_ws_serve(void) {
    /* One lws_service call is one poll() and the servicing of what it found
     * ready; the sendMsg requests of that pass were stored in one open
     * transaction, committed here before the next poll (so a reply never
     * waits for another event). */
    while (!interrupted && lws_service(ws_ctx, 0) >= 0) srv_group_flush();
    srv_group_flush();
}

void srv_ws_close(void) {
    struct lws_context *ctx = ws_ctx;
    ws_ctx = NULL;
    if (ctx) lws_context_destroy(ctx);
}
