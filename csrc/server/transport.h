/* What the request side of nim-server (handlers, sync, messages, teams,
 * out, admission, the credentials thread) may ask of the transport, and how
 * main.c runs it. ws.c implements it and is the one room that knows lws:
 * the arrows point one way, transport -> handlers (srv_handle_message,
 * srv_conn_gone, srv_sync_step) -> storage, and the way back is srv.io. */
#ifndef NIM_SERVER_TRANSPORT_H
#define NIM_SERVER_TRANSPORT_H
#include <stddef.h>

struct srv_conn;

typedef struct srv_transport {
    /* Queues len bytes (copied) for c: 0, or -1 when they were not queued
     * (c is closing, memory ran out, or c's queue or the server's total is
     * full, and then a slow reader is closed). */
    int  (*queue)(struct srv_conn *c, const char *bytes, size_t len);
    /* Closes c with code/reason once everything queued before was sent. */
    void (*close_after_flush)(struct srv_conn *c, int code, const char *reason);
    /* Calls srv_sync_step(c) once c can be written to (the sync's pages). */
    void (*want_write)(struct srv_conn *c);
    /* From now, c is closed after seconds of silence (0: never). */
    void (*set_idle)(struct srv_conn *c, int seconds);
    /* Handles, in order, what c sent while its login was derived, and reads
     * again (srv_handle_message for each). */
    void (*release_held)(struct srv_conn *c);
    /* Ends c at once, without a close frame (admission making room). */
    void (*drop)(struct srv_conn *c);
    /* Any thread: wakes the event loop, which runs srv_auth_collect. */
    void (*wake)(void);
} srv_transport;

/* main.c's side (ws.c): listen on host:port (0: a free one; tls_cert and
 * tls_key: TLS only) and set srv.io: the real port, or -1 with the reason on
 * stderr. serve: one poll and what it found per pass, srv_group_flush after
 * each, until SIGINT or SIGTERM. close: every connection and the listener. */
int  srv_ws_open(const char *host, int port, const char *tls_cert, const char *tls_key, int verbose);
void srv_ws_serve(void);
void srv_ws_close(void);

#endif
