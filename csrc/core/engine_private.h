/* The engine's insides, shared by its files (never included outside
 * csrc/core). Which file does what:
 *
 *   engine.c    the thread and life cycle: start, the command loop, submit,
 *               join, free
 *   events.c    the event queue (engine -> owner), replies, recycling
 *   sessions.c  the session table (a write-through cache of the sessions
 *               table) and the transactions: begin, mark, commit, rollback
 *   view.c      what the owner is owed (lists, updates, onsyncdone) and the
 *               network layer's sync bracket
 *   unread.c    the unread rules; storing what others say: messages
 *               (ingest), read pointers, receipts, sticky tops
 *   commands.c  the handlers of NIM_CMD_*, one table
 *   kv.c        the kv table for the network layer
 *
 * Every eng_* function runs on the engine thread, except where it says. */
#ifndef NIM_ENGINE_PRIVATE_H
#define NIM_ENGINE_PRIVATE_H
#include "core/engine.h"
#include "core/engine_net.h"
#include "core/store.h"
#include "core/alloc.h"
#include "core/jfield.h"
#include "core/wakeup.h"
#include <pthread.h>
#include <string.h>

/* A session in the table: the stored row and the cache's bookkeeping. */
typedef struct sess {
    nim_session row;
    uint32_t hash;          /* of row.id */
    uint8_t  dirty;         /* row must be written in this transaction */
    uint8_t  notify;        /* an update event must be sent after commit */
    uint8_t  recount;       /* ack moved: unread must be recounted */
    uint8_t  lost;          /* its last update event was lost (no memory)
                               and must be sent again (view.c) */
} sess;

typedef struct {
    sess **slots;
    size_t cap, count;     /* cap a power of two, load <= 1/2 */
} smap;

struct nim_engine {
    char *account;
    void (*post_commit)(void *ud);  /* once, after the next commit, before its updates */
    void *post_commit_ud;
    char *db_path;
    unsigned flags;
    nim_engine_hooks hooks;

    pthread_t thread;
    int thread_started;
    int joined;

    pthread_mutex_t qlock;         /* commands + default wait */
    pthread_cond_t  qcond;
    nim_cmd *cmd_head, *cmd_tail;
    int woken;
    int close_submitted;           /* owner thread only */
    int stop_asked;                /* atomic: join could not queue CLOSE */

    pthread_mutex_t evlock;
    nim_event *ev_head, *ev_tail;
    nim_event *spare;              /* one reply event per submitted command,
                                      allocated by submit: a reply never
                                      fails for want of memory */
    nim_event *garbage;            /* dispatched events to free (recycle) */
    size_t ngarbage;
    nim_wakeup evwake;             /* readable while events are queued (wakeup.h) */
    int finished;                  /* atomic */

    /* engine thread only from here */
    nim_store *store;
    int broken;                    /* no store: every request fails with DB_Error */
    smap sessions;
    sess **dirty;
    size_t ndirty, capdirty;
    char *curr;                    /* current session id or NULL */
    int stop;
    int quiet;                     /* in a network sync: remember, do not queue, updates */
    char **touched;                /* ids changed while quiet (may repeat) */
    size_t ntouched, captouched;
    unsigned resync;               /* RESYNC_*: what eng_try_resync must (re)send */
    char pbuf[16384];              /* message printing buffer */
};

/* What the engine still owes the owner's view of the sessions (set when an
 * event is due, or could not be queued for want of memory; eng_try_resync
 * sends it at the next chance). */
enum {
    RESYNC_LIST     = 1,  /* NIM_EV_SESSIONS with every live session */
    RESYNC_UPDATES  = 2,  /* an update per session marked lost */
    RESYNC_SYNCDONE = 4,  /* NIM_EV_SYNCDONE, after the list */
};
/* ms between retries while something is owed and no command comes */
#define RESYNC_RETRY_MS 100

/* events.c */
/* Queues an event; on allocation failure the data is freed and -1
 * returned (the event is lost: callers of session events mark what to
 * send again). A reply (NIM_EV_DONE) takes its command's spare event, so
 * it is never lost; its message may be (NULL when it cannot be copied). */
int  eng_emit(nim_engine *e, int type, uint64_t req, const char *code, const char *message,
              cJSON *data);
/* Frees the events the owner handed back (engine thread, or the owner
 * after the join). */
void eng_free_garbage(nim_engine *e);

/* sessions.c */
int64_t eng_now_ms(void);
sess *eng_find(nim_engine *e, const char *id);
/* Creates an empty live session for a well-formed id (NULL: a bad id or
 * no memory). */
sess *eng_create(nim_engine *e, const char *id);
void  eng_smap_clear(smap *m);
/* (Re)fills the session table from the database. */
int   eng_reload(nim_engine *e);
/* Marks s to be written in the current transaction (notify: and an
 * update sent after it). -1 when memory runs out. */
int   eng_mark(nim_engine *e, sess *s, int notify);
/* s as the app sees it; NULL when memory runs out (never a part). */
cJSON *eng_session_json(const sess *s);
/* Fills lastMsg/maxTime of a session (re)appearing from the stored messages. */
int   eng_adopt_stored(nim_engine *e, sess *s);
/* Transactions: begin (reports a failure), commit (writes the marked
 * sessions, recounting where the pointer moved, commits, runs
 * post_commit, queues the updates; on failure rolls back), and the one
 * rollback path: eng_rollback (undo, reload, re-owe the updates the
 * reload drops; broken when the reload fails). eng_abandon reports a
 * failed write first; eng_undo answers req with code first. */
int   eng_begin(nim_engine *e);
int   eng_commit(nim_engine *e);
void  eng_rollback(nim_engine *e);
void  eng_abandon(nim_engine *e);
void  eng_undo(nim_engine *e, uint64_t req, const char *code, const char *message);

/* view.c */
/* Every live session is owed again (the marks were dropped). */
void eng_lost_all(nim_engine *e);
/* Remembers id as changed during a sync, for the list at its end. */
void eng_touch(nim_engine *e, const char *id);
/* Sends what the owner is owed, as far as memory allows. */
void eng_try_resync(nim_engine *e);

/* unread.c */
/* Pointer to the latest stored message: unread 0. -1 when memory runs
 * out, -2 when the acked hook could not write. */
int eng_reset_unread(nim_engine *e, sess *s);
/* Stores msgs inside the open transaction. -1 on a store failure, -2 when
 * memory ran out (the caller rolls back). */
int eng_ingest_tx(nim_engine *e, cJSON *msgs, int history, int *skipped, unsigned char *fresh);

/* commands.c */
/* Runs one command and answers it. */
void eng_run(nim_engine *e, nim_cmd *c);
/* Saves the messages of n consecutive saveMsgsToLocal commands in one
 * transaction, then answers each. */
void eng_save_group(nim_engine *e, nim_cmd **cs, size_t n);

#endif
