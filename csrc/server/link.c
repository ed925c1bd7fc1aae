/* The links between nim-server's loop thread and its request thread
 * (link.h): one mutex over every link's shared fields, the event queue to
 * the request thread, the list of links with work for the loop, and the
 * srv_transport the request side answers through (srv.io). Each side is
 * woken only when its queue goes from empty to not, so a burst costs one
 * wake-up, not one per frame. */
#include "server/link.h"
#include "server/server.h"
#include "core/alloc.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void (*wake_loop)(void);
static void (*wake_requests)(void);
static srv_link *links;                  /* every link */
static size_t    in_total;               /* in_bytes of every link */
static srv_link *dirty_head, *dirty_tail;
static srv_ev *ev_head, *ev_tail;
static uint64_t serials;

void srv_link_lock(void) { pthread_mutex_lock(&mu); }
void srv_link_unlock(void) { pthread_mutex_unlock(&mu); }

/* lock held: frees every frame queued for l */
static void drop_output(srv_link *l) {
    srv.out_total -= l->out_bytes;
    while (l->out_head) {
        srv_out *o = l->out_head;
        l->out_head = o->next;
        nim_free(o);
    }
    l->out_tail = NULL;
    l->out_bytes = 0;
}

/* lock held: the loop has ops to do for l (none once lws closed it); 1
 * when the loop must be woken */
static int mark(srv_link *l, unsigned ops) {
    if (l->gone) return 0;
    l->ops |= ops;
    if (l->dirty) return 0;
    l->dirty = 1;
    l->refs++;
    l->dirty_next = NULL;
    int was_empty = !dirty_head;
    if (dirty_tail) dirty_tail->dirty_next = l; else dirty_head = l;
    dirty_tail = l;
    return was_empty;
}

/* lock held: 1 when the request thread must be woken */
static int post(srv_ev *e) {
    int was_empty = !ev_head;
    e->next = NULL;
    if (ev_tail) ev_tail->next = e; else ev_head = e;
    ev_tail = e;
    return was_empty;
}

static srv_ev *ev_new(srv_ev_kind kind, srv_link *l, const void *buf, size_t len) {
    srv_ev *e = nim_malloc(sizeof *e + len + 1);
    if (!e) return NULL;
    e->kind = kind;
    e->link = l;
    e->len = len;
    if (len) memcpy(e->buf, buf, len);
    e->buf[len] = '\0';
    return e;
}

/* Whether the loop may read l: not held, the request thread not far
 * behind on it, its output taken. Under the lock. */
static int reading_locked(const srv_link *l) {
    return !l->hold && l->in_bytes < (l->authed ? SRV_LINK_IN_MAX : SRV_LINK_IN_MAX_ANON) &&
           l->out_bytes < SRV_LINK_OUT_PAUSE && in_total < SRV_LINK_IN_TOTAL_MAX;
}

/* lock held: l may be read again after it could not (was: reading_locked
 * before the change); 1 when the loop must be woken */
static int resumed(srv_link *l, int was) {
    return !was && reading_locked(l) && mark(l, SRV_LINK_FLOW);
}

/* lock held: starts closing l with code once its queue drains */
static int close_locked(srv_link *l, int code, const char *reason) {
    if (l->close_code || l->gone) return 0;
    l->close_code = code;
    snprintf(l->close_reason, sizeof l->close_reason, "%s", reason);
    if (code == NIM_CLOSE_POLICY) drop_output(l);   /* the peer is not reading, or is hostile */
    return mark(l, SRV_LINK_CLOSE | SRV_LINK_WRITE);
}

/* ------------------------------------------------------------ loop side */

srv_link *srv_link_open(void *tx, const char *addr) {
    srv_link *l = nim_calloc(1, sizeof *l);
    srv_conn *c = nim_calloc(1, sizeof *c);
    srv_ev *e = l ? ev_new(SRV_EV_OPEN, l, addr, strlen(addr)) : NULL;
    /* STEP and CLOSED are made now, so posting them never fails later */
    if (l) l->step_ev = ev_new(SRV_EV_STEP, l, NULL, 0);
    if (l) l->closed_ev = ev_new(SRV_EV_CLOSED, l, NULL, 0);
    if (!l || !c || !e || !l->step_ev || !l->closed_ev) {
        if (l) { nim_free(l->step_ev); nim_free(l->closed_ev); }
        nim_free(l); nim_free(c); nim_free(e);
        return NULL;
    }
    l->tx = tx;
    l->conn = c;
    l->refs = 2;
    c->link = l;
    pthread_mutex_lock(&mu);
    l->serial = c->serial = ++serials;
    l->next = links;
    if (links) links->prev = l;
    links = l;
    int wake = post(e);
    pthread_mutex_unlock(&mu);
    if (wake) wake_requests();
    return l;
}

int srv_link_post_frame(srv_link *l, const void *buf, size_t len, int *idle_s) {
    srv_ev *e = ev_new(SRV_EV_FRAME, l, buf, len);
    if (!e) return -1;
    int wake = 0;
    pthread_mutex_lock(&mu);
    *idle_s = 0;
    if (!l->close_code && !l->gone) {
        l->in_bytes += len;
        in_total += len;
        l->spoke = 1;
        *idle_s = l->idle_s;
        wake = post(e);
        e = NULL;
    }
    pthread_mutex_unlock(&mu);
    nim_free(e);   /* closing: nothing more is handled */
    if (wake) wake_requests();
    return 0;
}

int srv_link_reading(srv_link *l) {
    pthread_mutex_lock(&mu);
    int r = reading_locked(l);
    pthread_mutex_unlock(&mu);
    return r;
}

srv_out *srv_link_pop(srv_link *l) {
    int wake = 0;
    pthread_mutex_lock(&mu);
    srv_out *o = l->out_head;
    if (o) {
        int was = reading_locked(l);
        if (!(l->out_head = o->next)) l->out_tail = NULL;
        l->out_bytes -= o->len;
        srv.out_total -= o->len;
        wake = resumed(l, was);   /* taken enough of it: read it again */
    }
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
    return o;
}

int srv_link_writable(srv_link *l, int *close_code, char *reason, size_t reason_len) {
    int wake = 0;
    pthread_mutex_lock(&mu);
    if (l->want_step && !l->step_posted && !l->close_code && l->out_bytes < SRV_SYNC_LOW_WATER) {
        l->want_step = 0;
        l->step_posted = 1;
        wake = post(l->step_ev);
    }
    *close_code = l->out_head ? 0 : l->close_code;
    if (*close_code) snprintf(reason, reason_len, "%s", l->close_reason);
    int more = l->out_head != NULL || l->close_code != 0;
    pthread_mutex_unlock(&mu);
    if (wake) wake_requests();
    return more;
}

void srv_link_gone(srv_link *l) {
    pthread_mutex_lock(&mu);
    l->gone = 1;
    l->tx = NULL;
    drop_output(l);
    srv_ev *e = l->closed_ev;
    l->closed_ev = NULL;
    int wake = post(e);   /* the request thread frees it, and the conn */
    pthread_mutex_unlock(&mu);
    if (wake) wake_requests();
    srv_link_release(l);
}

srv_link *srv_link_take_dirty(void) {
    pthread_mutex_lock(&mu);
    srv_link *l = dirty_head;
    dirty_head = dirty_tail = NULL;
    pthread_mutex_unlock(&mu);
    return l;
}

/* Each stays marked dirty until taken here, so marking it again meanwhile
 * only adds ops (and never relinks the list being walked). */
srv_link *srv_link_todo_of(srv_link *l, srv_link_todo *t) {
    pthread_mutex_lock(&mu);
    t->ops = l->ops;
    t->idle_s = l->idle_s;
    t->closing = l->close_code != 0;
    t->reading = reading_locked(l);
    l->ops = 0;
    l->dirty = 0;
    srv_link *next = l->dirty_next;
    l->dirty_next = NULL;
    pthread_mutex_unlock(&mu);
    return next;
}

void srv_link_drop_dirty(void) {
    srv_link_todo t;
    for (srv_link *l = srv_link_take_dirty(), *next; l; l = next) {
        next = srv_link_todo_of(l, &t);
        srv_link_release(l);
    }
}

void *srv_link_evict(void) {
    pthread_mutex_lock(&mu);
    /* the oldest that never sent a frame, else the oldest not logged in
     * (a login it sent may not have been handled yet) */
    srv_link *old = NULL;
    for (srv_link *l = links; l; l = l->next)
        if (!l->authed && !l->close_code && !l->gone && l->tx &&
            (!old || l->spoke < old->spoke || (l->spoke == old->spoke && l->serial < old->serial))) old = l;
    void *tx = NULL;
    if (old) {
        old->close_code = NIM_CLOSE_POLICY;
        tx = old->tx;
    }
    pthread_mutex_unlock(&mu);
    return tx;
}

/* ---------------------------------------------------------- both sides */

void srv_link_release(srv_link *l) {
    pthread_mutex_lock(&mu);
    int last = --l->refs == 0;
    if (last) {
        if (l->prev) l->prev->next = l->next;
        else links = l->next;
        if (l->next) l->next->prev = l->prev;
        drop_output(l);
    }
    pthread_mutex_unlock(&mu);
    if (last) {
        nim_free(l->step_ev);
        nim_free(l->closed_ev);
        nim_free(l);
    }
}

/* ------------------------------------------------------- request side */

srv_ev *srv_link_take_events(void) {
    pthread_mutex_lock(&mu);
    srv_ev *e = ev_head;
    ev_head = ev_tail = NULL;
    pthread_mutex_unlock(&mu);
    return e;
}

void srv_link_step_taken(srv_link *l) {
    pthread_mutex_lock(&mu);
    l->step_posted = 0;
    pthread_mutex_unlock(&mu);
}

void srv_link_consumed(srv_link *l, size_t len) {
    pthread_mutex_lock(&mu);
    int was = reading_locked(l), total_full = in_total >= SRV_LINK_IN_TOTAL_MAX;
    l->in_bytes -= len;
    in_total -= len;
    int wake = resumed(l, was);
    /* below the total again: every link may be read again */
    if (total_full && in_total < SRV_LINK_IN_TOTAL_MAX)
        for (srv_link *x = links; x; x = x->next)
            if (reading_locked(x)) wake |= mark(x, SRV_LINK_FLOW);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

/* srv_transport: what handlers, sync and out.c ask of the transport. */

static int t_queue(srv_conn *c, const char *json, size_t len) {
    srv_link *l = c->link;
    srv_out *o = nim_malloc(sizeof *o + SRV_OUT_PRE + len);
    if (!o) return -1;
    o->next = NULL;
    o->len = len;
    memcpy(o->buf + SRV_OUT_PRE, json, len);
    int wake = 0, rc = 0;
    pthread_mutex_lock(&mu);
    if (l->gone || l->close_code) {
        rc = -1;   /* closing: nothing more goes out */
    } else if (l->out_bytes + len > SRV_MAX_QUEUED_BYTES) {
        /* A reader this slow would make us hold unbounded memory. */
        wake = close_locked(l, NIM_CLOSE_POLICY, "reader too slow");
        rc = -1;
    } else {
        if (l->out_tail) l->out_tail->next = o; else l->out_head = o;
        l->out_tail = o;
        o = NULL;
        l->out_bytes += len;
        srv.out_total += len;
        wake = mark(l, SRV_LINK_WRITE);
        /* Over the server's total: the links holding the most unsent output
         * (the slowest readers) are cut, their queues freed at once. What
         * they did not get stays offline for their accounts. */
        while (srv.out_total > srv.max_output) {
            srv_link *big = NULL;
            for (srv_link *x = links; x; x = x->next)
                if (!x->close_code && !x->gone && (!big || x->out_bytes > big->out_bytes)) big = x;
            if (!big || !big->out_bytes) break;
            wake |= close_locked(big, NIM_CLOSE_POLICY, "server output memory full: reader too slow");
            if (big == l) { rc = -1; break; }
        }
    }
    pthread_mutex_unlock(&mu);
    nim_free(o);
    if (wake) wake_loop();
    return rc;
}

static void t_close_after_flush(srv_conn *c, int code, const char *reason) {
    pthread_mutex_lock(&mu);
    int wake = close_locked(c->link, code, reason);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

static void t_want_write(srv_conn *c) {
    pthread_mutex_lock(&mu);
    c->link->want_step = 1;
    int wake = mark(c->link, SRV_LINK_WRITE);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

static void t_set_idle(srv_conn *c, int seconds) {
    pthread_mutex_lock(&mu);
    c->link->idle_s = seconds;
    int wake = mark(c->link, SRV_LINK_IDLE);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

static void t_hold(srv_conn *c, int on) {
    pthread_mutex_lock(&mu);
    c->link->hold = on;
    int wake = mark(c->link, SRV_LINK_FLOW);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

static void t_set_authed(srv_conn *c, int on) {
    pthread_mutex_lock(&mu);
    int was = reading_locked(c->link);
    c->link->authed = on;
    /* a login takes its allowance of frames: read it again */
    int wake = resumed(c->link, was);
    pthread_mutex_unlock(&mu);
    if (wake) wake_loop();
}

static int t_closing(srv_conn *c) {
    pthread_mutex_lock(&mu);
    int r = c->link->gone || c->link->close_code != 0;
    pthread_mutex_unlock(&mu);
    return r;
}

static size_t t_queued(srv_conn *c) {
    pthread_mutex_lock(&mu);
    size_t n = c->link->out_bytes;
    pthread_mutex_unlock(&mu);
    return n;
}

static const srv_transport link_transport = {
    .queue = t_queue,
    .close_after_flush = t_close_after_flush,
    .want_write = t_want_write,
    .set_idle = t_set_idle,
    .hold = t_hold,
    .set_authed = t_set_authed,
    .closing = t_closing,
    .queued = t_queued,
};

void srv_link_init(void (*loop)(void), void (*requests)(void)) {
    wake_loop = loop;
    wake_requests = requests;
    srv.io = &link_transport;
}
