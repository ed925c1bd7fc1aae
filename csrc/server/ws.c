/* nim-server's transport (transport.h), the one file that knows lws: the
 * context and its service loop, the protocol callback, message reassembly
 * with the size limit, and the writes, only from
 * LWS_CALLBACK_SERVER_WRITEABLE (after the lws minimal examples). The loop
 * thread: it posts what it reads to the request thread and writes what
 * that queued (link.h), and does the ops it asked for when woken
 * (LWS_CALLBACK_EVENT_WAIT_CANCELLED). It never calls a handler or the
 * storage. */
#include "server/server.h"
#include "server/link.h"
#include "server/admit.h"
#include "core/alloc.h"
#include <libwebsockets.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>

srv_state srv;

_Static_assert(SRV_OUT_PRE >= LWS_PRE, "SRV_OUT_PRE must cover lws's LWS_PRE");

static struct lws_context *ws_ctx;
static volatile sig_atomic_t interrupted;

/* One connection as the loop sees it: lws allocates it zeroed as
 * per-session data. */
typedef struct ws_conn {
    struct lws    *wsi;
    srv_link      *link;       /* NULL before ESTABLISHED and after CLOSED */
    unsigned char *rx;         /* the message being reassembled */
    size_t         rx_len, rx_cap;
} ws_conn;

static int close_now(struct lws *wsi, int code, const char *reason) {
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Appends a received piece to the message being reassembled. The limit is
 * checked against what is still announced to come too, so an oversized
 * frame is refused at its first piece, before it is buffered. */
static int rx_append(ws_conn *p, const void *in, size_t len, size_t remaining) {
    if (p->rx_len + len + remaining > NIM_PROTO_MAX_REQUEST) return 1;
    if (p->rx_len + len > p->rx_cap) {
        size_t cap = p->rx_cap ? p->rx_cap : 1024;
        while (cap < p->rx_len + len) cap *= 2;
        if (cap > NIM_PROTO_MAX_REQUEST) cap = NIM_PROTO_MAX_REQUEST;
        unsigned char *b = nim_realloc(p->rx, cap);
        if (!b) return -1;
        p->rx = b;
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, in, len);
    p->rx_len += len;
    return 0;
}

/* Admission is full: the oldest connection that has not logged in makes
 * room (admit.c). 0, or -1 when there is none. */
static int evict_one(void) {
    ws_conn *p = srv_link_evict();
    if (!p) return -1;
    lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    return 0;
}

/* What the request thread asked of the links it touched (link.h ops). */
static void do_link_ops(void) {
    srv_link_todo t;
    for (srv_link *l = srv_link_take_dirty(), *next; l; l = next) {
        next = srv_link_todo_of(l, &t);
        ws_conn *p = l->tx;
        if (p) {
            if ((t.ops & SRV_LINK_IDLE) && !t.closing)
                lws_set_timeout(p->wsi, t.idle_s > 0 ? PENDING_TIMEOUT_USER_OK : NO_PENDING_TIMEOUT, t.idle_s);
            /* if the peer never lets us write the close frame, give up after 5 s */
            if (t.ops & SRV_LINK_CLOSE) lws_set_timeout(p->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
            if (t.ops & SRV_LINK_FLOW) lws_rx_flow_control(p->wsi, t.reading);
            if (t.ops & (SRV_LINK_WRITE | SRV_LINK_CLOSE)) lws_callback_on_writable(p->wsi);
        }
        srv_link_release(l);
    }
}

static int callback_nim(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                        void *in, size_t len) {
    ws_conn *p = user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
        /* at accept, before any handshake: the connection caps (admit.c) */
        const struct lws_filter_network_conn_args *a = user;
        return a && srv_admit(&a->cli_addr, (int)a->accept_fd, evict_one) == 0 ? 0 : 1;
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
        do_link_ops();
        break;

    case LWS_CALLBACK_ESTABLISHED: {
        char addr[64];
        memset(p, 0, sizeof *p);
        p->wsi = wsi;
        lws_get_peer_simple(wsi, addr, sizeof addr);
        p->link = srv_link_open(p, addr);
        if (!p->link) return close_now(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, SRV_LOGIN_TIMEOUT_S);
        break;
    }

    case LWS_CALLBACK_CLOSED:
        if (!p->link) break;
        srv_link_gone(p->link);
        p->link = NULL;
        nim_free(p->rx);
        p->rx = NULL;
        p->rx_len = p->rx_cap = 0;
        break;

    case LWS_CALLBACK_RECEIVE: {
        if (!p->link) break;
        if (lws_frame_is_binary(wsi))
            return close_now(wsi, NIM_CLOSE_UNSUPPORTED, "binary frames are not supported");
        int r = rx_append(p, in, len, lws_remaining_packet_payload(wsi));
        if (r > 0) return close_now(wsi, NIM_CLOSE_TOO_LARGE, "frame over 65536 bytes");
        if (r < 0) return close_now(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) break;
        size_t n = p->rx_len;
        int idle_s = 0;
        p->rx_len = 0;
        if (srv_link_post_frame(p->link, p->rx, n, &idle_s) != 0)
            return close_now(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        if (idle_s > 0) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, idle_s);
        /* the request thread is far behind, or holds this one's frames */
        if (!srv_link_reading(p->link)) lws_rx_flow_control(wsi, 0);
        break;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!p->link) break;
        /* Several frames per callback (a group commit queues many at once),
         * each only while the socket takes more without a pending partial
         * write (lws_send_pipe_choked checks both). */
        int sent = 0, code = 0;
        char why[96];
        srv_out *o;
        while (sent < SRV_WRITES_PER_CALLBACK && (o = srv_link_pop(p->link))) {
            size_t want = o->len;
            int n = lws_write(wsi, o->buf + SRV_OUT_PRE, want, LWS_WRITE_TEXT);
            nim_free(o);
            if (n < (int)want) return -1;
            sent++;
            if (lws_send_pipe_choked(wsi)) break;
        }
        /* the next page of a sync once the peer has taken the previous
         * ones: a reader that stalls holds at most the low water mark */
        int more = srv_link_writable(p->link, &code, why, sizeof why);
        if (!sent && code) return close_now(wsi, code, why);
        if (more) lws_callback_on_writable(wsi);
        break;
    }

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, callback_nim, sizeof(ws_conn), 16384, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* Any thread: lws_cancel_service only writes to lws's wake-up pipe, so the
 * blocked poll() returns (LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
static void ws_wake(void) {
    if (ws_ctx) lws_cancel_service(ws_ctx);
}

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
    /* HTTP/1.1 only: lws ignores rx flow control on HTTP/2 streams, so a
     * WebSocket over h2 would escape the input limits (link.h) */
    info.alpn = "http/1.1";
    /* One read takes up to a full rx buffer of pipelined frames (default
     * 4096), so a burst needs fewer passes and shares fewer commits. */
    info.pt_serv_buf_size = 16384;
    if (tls_cert) {
        /* TLS only: lws refuses a plain connection on this port */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = tls_cert;
        info.ssl_private_key_filepath = tls_key;
    }
    srv_link_init(ws_wake, srv_reqthread_wake);
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
    while (!interrupted && lws_service(ws_ctx, 0) >= 0) {}
}

void srv_ws_close(void) {
    struct lws_context *ctx = ws_ctx;
    ws_ctx = NULL;
    if (ctx) lws_context_destroy(ctx);   /* CLOSED for each: their last events */
    srv_link_drop_dirty();
}
