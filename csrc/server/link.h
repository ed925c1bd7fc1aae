/* One connection as nim-server's two threads see it, and the two queues
 * between them (link.c). No lws here: ws.c is the only file that knows it.
 *
 *   the loop thread (ws.c, lws)   -- events: open, frame, step, closed -->
 *   the request thread (reqthread.c: handlers, sync, storage)
 *                                 <-- bytes to send and ops (srv.io) --
 *
 * The request thread never waits on a socket and the loop thread never
 * waits on the storage: a commit's fsync or a PostgreSQL round trip holds
 * no heartbeat, no read and no write of any other connection.
 *
 * A link is shared: the loop holds one reference until lws closes the
 * connection, the request thread one until it has handled that close, and
 * the loop's list of links with work one while the link is on it. Fields
 * under "lock" are read and written only under srv_link_lock. */
#ifndef NIM_SERVER_LINK_H
#define NIM_SERVER_LINK_H
#include <stddef.h>
#include <stdint.h>

struct srv_conn;
struct srv_out;

/* Frames a connection may have sent that the request thread has not taken
 * yet: past this the loop stops reading it (its socket fills, and TCP
 * slows the sender) until the request thread catches up. */
#define SRV_LINK_IN_MAX (256u * 1024)
/* The same for a connection that has not logged in: its first frame, then
 * nothing until the request thread took it. */
#define SRV_LINK_IN_MAX_ANON 1u
/* Frames posted and not yet taken, of every connection together: past
 * this no connection is read until the request thread catches up, so a
 * stalled commit never turns the sockets' backlog into server memory. */
#define SRV_LINK_IN_TOTAL_MAX (64u * 1024 * 1024)
/* Output a connection has not taken yet past which it is not read either,
 * until it took enough: a client that pipelines requests faster than it
 * reads their replies is slowed by TCP, never cut for its own replies
 * (what others push to it can still fill its queue to SRV_MAX_QUEUED_BYTES,
 * and then it is cut as too slow). */
#define SRV_LINK_OUT_PAUSE (4u * 1024 * 1024)

/* What the loop thread has to do for a link (ops). */
enum {
    SRV_LINK_WRITE = 1,   /* ask for WRITEABLE: output queued, a close, or a step wanted */
    SRV_LINK_IDLE  = 2,   /* set the idle timeout to idle_s */
    SRV_LINK_CLOSE = 4,   /* close after flush began: give the peer 5 s to take it */
    SRV_LINK_FLOW  = 8    /* reading may have to stop or start again (srv_link_reading) */
};

typedef struct srv_link {
    uint64_t         serial;      /* set at open */
    struct srv_conn *conn;        /* the request thread's; freed by it at CLOSED */
    void            *tx;          /* loop thread only: ws.c's data; NULL once lws closed it */
    /* lock */
    int              refs;
    int              gone;        /* lws closed it: nothing more is queued */
    struct srv_out  *out_head, *out_tail;  /* frames waiting for WRITEABLE */
    size_t           out_bytes;
    int              close_code;  /* close once the queue drains */
    char             close_reason[96];
    unsigned         ops;
    int              idle_s;      /* > 0: idle timeout, from the login on */
    int              authed;      /* logging in or logged in: admission spares it */
    int              spoke;       /* it sent a frame (perhaps a login not yet handled) */
    int              hold;        /* its frames wait for a login being derived: read no more */
    int              want_step;   /* post STEP once the queue is below SRV_SYNC_LOW_WATER */
    int              step_posted; /* step_ev is in the event queue */
    struct srv_ev   *step_ev, *closed_ev; /* made at open: posting them never fails */
    size_t           in_bytes;    /* posted frames not yet taken */
    int              dirty;       /* on the loop's list of links with work */
    struct srv_link *dirty_next;
    struct srv_link *prev, *next; /* every link */
} srv_link;

typedef enum { SRV_EV_OPEN, SRV_EV_FRAME, SRV_EV_STEP, SRV_EV_CLOSED } srv_ev_kind;

/* One event for the request thread; FRAME carries the text, OPEN the
 * peer's address (NUL-terminated). */
typedef struct srv_ev {
    struct srv_ev *next;
    srv_ev_kind    kind;
    srv_link      *link;
    size_t         len;
    char           buf[];
} srv_ev;

/* Before either thread runs: how each side is woken (any thread). */
void srv_link_init(void (*wake_loop)(void), void (*wake_requests)(void));
void srv_link_lock(void);
void srv_link_unlock(void);

/* ---- loop thread (ws.c) */
/* A new connection: its link (two references) and its srv_conn, and OPEN
 * posted. NULL when memory ran out. */
srv_link *srv_link_open(void *tx, const char *addr);
/* A complete frame for the request thread (copied; dropped when l is
 * closing): 0, with *idle_s the idle timeout to restart (0: none), or -1
 * when memory ran out. */
int  srv_link_post_frame(srv_link *l, const void *buf, size_t len, int *idle_s);
/* Whether the loop should read l now (not held, not too far ahead). */
int  srv_link_reading(srv_link *l);
/* The next queued frame to write (the caller frees it), or NULL. */
struct srv_out *srv_link_pop(srv_link *l);
/* After a WRITEABLE's writes: posts STEP when the request thread wants one
 * and the queue is below the low water mark. Returns 1 when another
 * WRITEABLE is needed (more queued, or a close), and sets *close_code
 * (and reason) once the queue is empty and l is to be closed, else 0. */
int  srv_link_writable(srv_link *l, int *close_code, char *reason, size_t reason_len);
/* lws closed it: the queue is dropped, CLOSED posted (the last event of
 * l), the loop's reference released. */
void srv_link_gone(srv_link *l);

/* What the loop has to do for one link, taken from it at once. */
typedef struct srv_link_todo {
    unsigned ops;       /* SRV_LINK_* */
    int      idle_s;    /* for SRV_LINK_IDLE */
    int      closing;   /* a close has begun: the idle timeout must not replace its own */
    int      reading;   /* for SRV_LINK_FLOW: srv_link_reading */
} srv_link_todo;
/* The list of links with work for the loop; walk it with srv_link_todo_of,
 * which returns the next, and release each link once its ops are done. */
srv_link *srv_link_take_dirty(void);
srv_link *srv_link_todo_of(srv_link *l, srv_link_todo *t);
/* Admission: the oldest link that is not logging in or logged in, marked
 * closing (its tx, for the loop to end it), or NULL. */
void *srv_link_evict(void);

/* ---- request thread (reqthread.c) */
/* Every posted event, oldest first. The caller frees each with nim_free,
 * but STEP: it hands that back with srv_link_step_taken. */
srv_ev *srv_link_take_events(void);
void srv_link_step_taken(srv_link *l);
/* The request thread has taken a FRAME of len bytes. */
void srv_link_consumed(srv_link *l, size_t len);

/* ---- both */
void srv_link_release(srv_link *l);
/* After both threads stopped: the references the loop's list still held. */
void srv_link_drop_dirty(void);

#endif
