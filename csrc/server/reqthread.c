/* nim-server's request thread (server.h): it takes the events the loop
 * thread posted (link.h) in batches, oldest first, and runs them: a new
 * connection joins srv.conns, a frame goes to its handler, a step to the
 * connection's sync, a close to srv_conn_gone. After each batch it
 * finishes the logins the credentials thread derived and commits the
 * batch's group of messages (srv_group_flush). It sleeps on a wakeup fd
 * (core/wakeup.h) that the loop and the credentials thread signal. Every
 * handler, every storage call and every srv_conn is this thread's. */
#include "server/server.h"
#include "server/link.h"
#include "server/auth.h"
#include "core/alloc.h"
#include "core/wakeup.h"
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static nim_wakeup wake = { -1, -1 };
static pthread_t thread;
static int started;
static atomic_int stopping;

void srv_reqthread_wake(void) { nim_wakeup_signal(&wake); }

static void conn_open(srv_conn *c, const char *addr) {
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    c->prev = NULL;
    c->next = srv.conns;
    if (srv.conns) srv.conns->prev = c;
    srv.conns = c;
}

/* Its last event: the connection is forgotten and freed, and the request
 * thread's reference to its link released. */
static void conn_closed(srv_conn *c) {
    srv_conn_gone(c);
    if (c->prev) c->prev->next = c->next;
    else srv.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv_link *l = c->link;
    nim_free(c);
    srv_link_release(l);
}

static void handle(srv_ev *e) {
    srv_link *l = e->link;
    srv_conn *c = l->conn;
    switch (e->kind) {
    case SRV_EV_OPEN:
        conn_open(c, e->buf);
        nim_free(e);
        break;
    /* Once stopping, requests and sync steps are dropped unanswered (their
     * replies could not be written; a client sends them again): the
     * shutdown never works through a backlog. */
    case SRV_EV_FRAME:
        srv_link_consumed(l, e->len);
        if (!atomic_load(&stopping)) srv_conn_frame(c, e->buf, e->len);
        nim_free(e);
        break;
    case SRV_EV_STEP:   /* the link's own event: handed back, not freed */
        srv_link_step_taken(l);
        if (!atomic_load(&stopping) && c->sync.stage != SRV_SYNC_OFF) srv_sync_step(c);
        break;
    case SRV_EV_CLOSED:
        nim_free(e);
        conn_closed(c);
        break;
    }
}

/* Everything posted so far; then the derived logins, then the commit. */
static void run_batch(void) {
    for (srv_ev *e = srv_link_take_events(), *next; e; e = next) {
        next = e->next;   /* before handle: a STEP may be posted again meanwhile */
        handle(e);
    }
    srv_auth_collect();
    srv_group_flush();
}

static void *run(void *arg) {
    (void)arg;
    struct pollfd p = { .fd = nim_wakeup_fd(&wake), .events = POLLIN };
    for (;;) {
        /* drain before taking: a post after the take signals again */
        nim_wakeup_drain(&wake);
        run_batch();
        if (atomic_load(&stopping)) break;
        while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
    }
    return NULL;
}

int srv_reqthread_start(void) {
    if (nim_wakeup_open(&wake) != 0) return -1;
    atomic_store(&stopping, 0);
    if (pthread_create(&thread, NULL, run, NULL) != 0) {
        nim_wakeup_close(&wake);
        return -1;
    }
    started = 1;
    return 0;
}

void srv_reqthread_stop(void) {
    if (!started) return;
    atomic_store(&stopping, 1);
    nim_wakeup_signal(&wake);
    pthread_join(thread, NULL);
    started = 0;
}

void srv_reqthread_close(void) {
    run_batch();   /* the closes srv_ws_close posted */
    while (srv.conns) conn_closed(srv.conns);
    nim_wakeup_close(&wake);
}
