/* The connection (see client_private.h for the file map). After the lws
 * minimal ws-client examples: one client connection, output written only
 * from LWS_CALLBACK_CLIENT_WRITEABLE with LWS_PRE headroom, other threads
 * only lws_cancel_service(). Each timer is an lws_sul of its own: the
 * reconnect (lws's retry backoff), the connect timeout and the heartbeat;
 * request deadlines are requests.c's.
 *
 *   IDLE --net_connect--> CONNECTING --established--> LOGIN
 *   LOGIN --login accepted--> SYNC --syncDone--> READY
 *   any --link gone--> IDLE (then a reconnect, unless user_down)
 *
 * net_set_state is the one writer of n->state and runs each state's entry
 * actions. */
#include "net/client_private.h"
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

static void on_connect_timeout(lws_sorted_usec_list_t *sul);
static void on_heartbeat(lws_sorted_usec_list_t *sul);

void net_schedule_ms(nim_net *n, lws_sorted_usec_list_t *sul, sul_cb_t cb, int64_t ms) {
    lws_sul_schedule(n->ctx, 0, sul, cb, (ms > 0 ? ms : 0) * LWS_US_PER_MS);
}

void net_set_state(nim_net *n, conn_state to) {
    n->state = to;
    switch (to) {
    case CONN_IDLE:
        /* forget the socket: nothing queued, nothing half-read, every
         * request in flight failed with Not_Connected */
        lws_sul_cancel(&n->sul_connect);
        lws_sul_cancel(&n->sul_heartbeat);
        n->wsi = NULL;
        net_out_free(n);
        n->rx_len = 0;
        net_fail_all(n, NIM_ERR_NOT_CONNECTED, "the connection was lost");
        break;
    case CONN_CONNECTING:
        n->close_code = 0;
        n->close_reason[0] = '\0';
        n->drop_code = 0;
        net_schedule_ms(n, &n->sul_connect, on_connect_timeout, n->req_timeout);
        break;
    case CONN_LOGIN:                     /* net_send_login built the login */
        lws_sul_cancel(&n->sul_connect);
        n->ping_at = 0;
        break;
    case CONN_SYNC:
        net_schedule_ms(n, &n->sul_heartbeat, on_heartbeat, n->heartbeat);
        break;
    case CONN_READY:
        break;
    }
}

/* --------------------------------------------------------- connecting */

static void on_reconnect(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, sul_reconnect);
    if (n->state == CONN_IDLE && !n->user_down) net_connect(n);
}

/* The next attempt, on the next server of the list: at once (after
 * RECONNECT_FLOOR_MS) while this round of the list has servers left, else
 * after lws's backoff over retry_steps (the first delay doubling up to the
 * max, +-20 % jitter; never under RECONNECT_FLOOR_MS, so a peer that
 * refuses at once is not hammered); told to onwillreconnect. */
static void schedule_reconnect(nim_net *n) {
    if (!n->need_reconnect || n->user_down || n->local) return;
    unsigned d = RECONNECT_FLOOR_MS;
    if (n->app_closed) {
        n->app_closed = 0;       /* disconnect() then connect(): the same server, at once */
    } else {
        net_use_server(n, (n->cur + 1) % n->nservers);
        if (n->cur == n->round_start) {          /* the whole list failed: back off */
            char conceal;
            uint16_t step = n->retries < 0xfffe ? (uint16_t)n->retries : 0xfffe;   /* lws counts to 0xffff */
            d = lws_retry_get_delay_ms(n->ctx, &n->retry, &step, &conceal);
            if (d < RECONNECT_FLOOR_MS) d = RECONNECT_FLOOR_MS;
            n->retries++;
        }
    }
    int64_t wait = n->reconnect_not_before - net_mono_ms();   /* a 429's retryAfter, on its server */
    if (n->cur == n->throttled_by && wait > (int64_t)d) d = (unsigned)wait;
    net_schedule_ms(n, &n->sul_reconnect, on_reconnect, d);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "retryCount", n->retries);
        cJSON_AddNumberToObject(o, "duration", (double)d);
        cJSON_AddStringToObject(o, "server", n->url);
    }
    net_callback(n, "onwillreconnect", o);
}

/* The first attempt that fails to reach the server after a connection (or
 * since the start) goes to onerror; the retries after it only to
 * onwillreconnect. A TLS failure was reported already, with its reason. */
static void report_connect_failure(nim_net *n, const char *why) {
    if (n->connect_reported || n->user_down) return;
    n->connect_reported = 1;
    char msg[400];
    snprintf(msg, sizeof msg, "%s: %s; retrying (onwillreconnect)%s", n->url, why,
             n->nservers > 1 ? ", on the next server" : "");
    net_report_error(n, NIM_ERR_CONNECT, 0, msg, "connect");
}

void net_connect(nim_net *n) {
    lws_sul_cancel(&n->sul_reconnect);
    n->app_closed = 0;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = n->ctx;
    ci.address = n->host;
    ci.port = n->port;
    ci.path = n->path;
    ci.host = n->host;
    ci.origin = n->host;
    ci.protocol = NIM_PROTO_SUBPROTOCOL;
    ci.ssl_connection = n->tls ? LCCSCF_USE_SSL : 0;
    ci.userdata = n;
    ci.pwsi = &n->wsi;
    net_set_state(n, CONN_CONNECTING);
    if (!lws_client_connect_via_info(&ci)) {
        /* failed at once; CLIENT_CONNECTION_ERROR may or may not have run */
        if (n->state == CONN_CONNECTING) {
            net_set_state(n, CONN_IDLE);
            report_connect_failure(n, "cannot connect (address or resources)");
            schedule_reconnect(n);
        }
    }
}

static void on_connect_timeout(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, sul_connect);
    if (n->state == CONN_CONNECTING && n->wsi && !n->drop_code) net_drop(n, 1006, "connect timed out");
}

/* ------------------------------------------------------- losing the link */

void net_connection_lost(nim_net *n, int code, const char *reason, int retry) {
    conn_state was = n->state;
    net_flush_live(n);                  /* received before the end: keep them */
    net_set_state(n, CONN_IDLE);
    net_sync_link_lost(n);
    if (!retry) n->user_down = 1;
    int was_up = was == CONN_LOGIN || was == CONN_SYNC || was == CONN_READY;
    if (was == CONN_CONNECTING && retry) report_connect_failure(n, reason);
    if (was_up || !retry) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddNumberToObject(o, "code", code);
            cJSON_AddStringToObject(o, "reason", reason);
            cJSON_AddBoolToObject(o, "willReconnect", retry && n->need_reconnect && !n->user_down);
        }
        net_callback(n, "ondisconnect", o);
    }
    if (retry) schedule_reconnect(n);
}

void net_drop(nim_net *n, int code, const char *reason) {
    n->drop_code = code;
    snprintf(n->drop_reason, sizeof n->drop_reason, "%s", reason);
    if (n->wsi) lws_set_timeout(n->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void net_conn_stop(nim_net *n) {
    lws_sul_cancel(&n->sul_reconnect);
    lws_sul_cancel(&n->sul_connect);
    lws_sul_cancel(&n->sul_heartbeat);
    lws_sul_cancel(&n->sul_deadline);
    lws_sul_cancel(&n->sul_wait);
    lws_sul_cancel(&n->sul_retry);
    lws_sul_cancel(&n->sul_sync);
}

void net_pass_over(lws_sorted_usec_list_t *sul) { (void)sul; }

void net_end_pass_in(nim_net *n, int ms) {
    if (n->ctx) net_schedule_ms(n, &n->sul_retry, net_pass_over, ms > 0 ? ms : 1);
}

/* ------------------------------------------------------------ heartbeat */

/* A ping when the link was quiet for a heartbeat; the link is dead after
 * two without anything from the server. Runs again when the next of
 * those can be due. */
static void on_heartbeat(lws_sorted_usec_list_t *sul) {
    nim_net *n = lws_container_of(sul, nim_net, sul_heartbeat);
    if ((n->state != CONN_SYNC && n->state != CONN_READY) || !n->wsi || n->drop_code) return;
    int64_t now = net_mono_ms(), hb = n->heartbeat;
    if (now - n->last_rx >= 2 * hb) {
        net_drop(n, 1006, "heartbeat: no reply from the server");
        return;
    }
    if ((now - n->last_rx >= hb || now - n->last_tx >= hb) && (!n->ping_at || now - n->ping_at >= hb)) {
        n->ping_at = now;
        net_request(n, RQ_PING, 0, 0, NIM_WIRE_PING, NULL, NULL);
    }
    int64_t quiet_at = (n->last_rx < n->last_tx ? n->last_rx : n->last_tx) + hb;
    if (n->ping_at && n->ping_at + hb > quiet_at) quiet_at = n->ping_at + hb;
    int64_t dead_at = n->last_rx + 2 * hb;
    int64_t next = quiet_at < dead_at ? quiet_at : dead_at;
    net_schedule_ms(n, &n->sul_heartbeat, on_heartbeat, next > now ? next - now : 1);
}

/* ------------------------------------------------------------ frames */

static void on_frame(nim_net *n, const char *buf, size_t len) {
    nim_frame f;
    const char *err;
    if (nim_proto_decode(buf, len, NIM_PROTO_MAX_FRAME, &f, &err) != NIM_CODE_OK) {
        /* malformed, or memory ran out parsing it: either way it may have
         * carried a message; skipping it would lose that message when a
         * later one raised the cursor, so sync again from the stored one */
        net_report_error(n, NULL, NIM_CODE_BAD_FRAME, err, "frame");
        net_flush_live(n);
        net_drop(n, 1006, "a frame from the server could not be read: syncing again");
        return;
    }
    if (!(f.kind == NIM_FRAME_PUSH && nim_proto_push_from_name(f.name) == NIM_PUSH_MSG))
        net_flush_live(n);              /* what came before this frame is stored first */
    if (f.kind == NIM_FRAME_RESPONSE)
        net_on_response(n, &f);
    else if (f.kind == NIM_FRAME_PUSH && (n->state == CONN_SYNC || n->state == CONN_READY))
        net_on_push(n, &f);
    nim_frame_free(&f);
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

/* A piece of a frame; the frame once whole. -1 closes the link. */
static int on_receive(nim_net *n, struct lws *wsi, const void *in, size_t len) {
    /* once we decided to drop, nothing more is read: a frame after one we
     * could not take would raise a cursor past it */
    if (wsi != n->wsi || n->drop_code) return 0;
    n->last_rx = net_mono_ms();
    if (rx_append(n, in, len) < 0) {
        net_drop(n, 1009, "frame from the server too large");
        return -1;
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0) return 0;
    size_t m = n->rx_len;
    n->rx_len = 0;
    on_frame(n, n->rx, m);
    return 0;
}

/* The oldest queued frame onto the socket. -1 closes the link. */
static int on_writeable(nim_net *n, struct lws *wsi) {
    out_frame *o = n->out_head;
    if (wsi != n->wsi || !o) return 0;
    n->out_head = o->next;
    if (!n->out_head) n->out_tail = NULL;
    int w = lws_write(wsi, (unsigned char *)o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
    size_t want = o->len;
    nim_free(o->buf);
    nim_free(o);
    if (w < (int)want) return -1;
    n->last_tx = net_mono_ms();
    if (n->out_head) lws_callback_on_writable(wsi);
    return 0;
}

static void on_peer_close(nim_net *n, const unsigned char *b, size_t len) {
    if (len < 2) return;
    n->close_code = (b[0] << 8) | b[1];
    size_t rl = len - 2 < sizeof n->close_reason - 1 ? len - 2 : sizeof n->close_reason - 1;
    memcpy(n->close_reason, b + 2, rl);
    n->close_reason[rl] = '\0';
}

/* The link closed: our reason, else the peer's, else 1006. */
static void on_closed(nim_net *n) {
    int code = n->drop_code ? n->drop_code : n->close_code ? n->close_code : 1006;
    const char *why = n->drop_code ? n->drop_reason
                    : n->close_reason[0] ? n->close_reason : "connection closed";
    int retry = !n->user_down && code != NIM_CLOSE_KICKED && code != NIM_CODE_AUTH &&
                code != NIM_CODE_VERSION;
    if (code == NIM_CLOSE_KICKED) n->user_down = 1;
    net_connection_lost(n, code, why, retry);
}

static int callback_client(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                           void *in, size_t len) {
    nim_net *n = lws_context_user(lws_get_context(wsi));
    if (!n) return 0;
    switch (reason) {
    case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
        /* OpenSSL's verdict on the server's certificate, kept for the
         * report (never overruled: 0 leaves it as it is) */
        if (!len) {
            X509_STORE_CTX *x = user;
            int depth = X509_STORE_CTX_get_error_depth(x);
            snprintf(n->tls_error, sizeof n->tls_error, "%s (certificate %d of the chain)",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)), depth);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (n->wsi == wsi || n->state == CONN_CONNECTING) {
            char why[320];
            if (n->tls && (n->tls_error[0] || (in && strstr((const char *)in, "SSL")))) {
                /* a failed handshake is news for the app: say why */
                snprintf(why, sizeof why, "TLS handshake with %s:%d failed: %s", n->host, n->port,
                         n->tls_error[0] ? n->tls_error : "not a TLS server, or it refused the handshake");
                net_report_error(n, NIM_ERR_TLS, 0, why, "connect");
                n->connect_reported = 1;
            } else {
                snprintf(why, sizeof why, "cannot connect: %s", in ? (const char *)in : "error");
            }
            n->tls_error[0] = '\0';
            net_connection_lost(n, 1006, why, !n->user_down);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        n->wsi = wsi;
        n->connect_reported = 0;         /* the next outage is news again */
        n->last_rx = n->last_tx = net_mono_ms();
        net_send_login(n);               /* and so to CONN_LOGIN */
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return on_receive(n, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(n, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (wsi == n->wsi) on_peer_close(n, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        /* WSI_DESTROY: a connection killed before it was established (a
         * handshake timeout) may get no other callback */
        if (wsi == n->wsi) on_closed(n);
        return 0;
    default:
        /* EVENT_WAIT_CANCELLED: the owner queued a command; the engine
         * loop runs it after this service */
        return 0;
    }
}

const struct lws_protocols net_protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, callback_client, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
