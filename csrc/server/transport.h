/* What the request side of nim-server (handlers, sync, messages, teams,
 * out, the credentials thread's finishers) may ask of the transport, and
 * how main.c runs it. The request side runs on its own thread
 * (reqthread.c); link.c implements srv_transport on the queues between it
 * and the loop thread, and ws.c, the one room that knows lws, does what
 * they carry. The arrows point one way: transport -> link -> request
 * thread (srv_conn_frame, srv_conn_gone, srv_sync_step) -> storage,
 * and the way back is srv.io. */
#ifndef NIM_SERVER_TRANSPORT_H
#define NIM_SERVER_TRANSPORT_H
#include <stddef.h>

struct srv_conn;

/* Headroom before each queued frame's bytes, for the WebSocket header
 * (ws.c checks that it covers lws's LWS_PRE). */
#define SRV_OUT_PRE 32

/* Request thread only. */
typedef struct srv_transport {
    /* Queues len bytes (copied) for c: 0, or -1 when they were not queued
     * (c is closing or closed, memory ran out, or c's queue or the
     * server's total is full, and then a slow reader is closed). */
    int  (*queue)(struct srv_conn *c, const char *bytes, size_t len);
    /* Closes c with code/reason once everything queued before was sent. */
    void (*close_after_flush)(struct srv_conn *c, int code, const char *reason);
    /* Calls srv_sync_step(c) once c can be written to and holds less than
     * SRV_SYNC_LOW_WATER unsent (the sync's pages). */
    void (*want_write)(struct srv_conn *c);
    /* From now, c is closed after seconds of silence (0: never). */
    void (*set_idle)(struct srv_conn *c, int seconds);
    /* on: read nothing more from c (its login is being derived and its
     * frames are held); 0: read again. */
    void (*hold)(struct srv_conn *c, int on);
    /* on: c is logging in or logged in, so admission never evicts it. */
    void (*set_authed)(struct srv_conn *c, int on);
    /* 1 once c is closing or closed: nothing more goes out. */
    int  (*closing)(struct srv_conn *c);
    /* The bytes queued for c and not yet written. */
    size_t (*queued)(struct srv_conn *c);
} srv_transport;

/* main.c's side (ws.c): listen on host:port (0: a free one; tls_cert and
 * tls_key: TLS only) and set srv.io (srv_link_init): the real port, or -1
 * with the reason on stderr. serve: the loop, until SIGINT or SIGTERM.
 * close: every connection and the listener (after the request thread
 * stopped). */
int  srv_ws_open(const char *host, int port, const char *tls_cert, const char *tls_key, int verbose);
void srv_ws_serve(void);
void srv_ws_close(void);

#endif
