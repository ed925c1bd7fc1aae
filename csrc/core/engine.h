/* The session engine of one instance: a background thread that owns the
 * SQLite store and the session state, fed by a command queue and reporting
 * through an event queue plus an eventfd. Lua-free.
 *
 * Threads:
 *   - the "owner" thread (the Lua thread in the module, main() in C tests)
 *     calls nim_engine_start/submit/take_events/stop;
 *   - the engine thread runs commands, ingests messages, emits events;
 *     hooks (network layer) run on it, except hooks.wake (any thread).
 *
 * Data crosses the queues as cJSON trees whose ownership moves with the
 * command or event. Messages and sessions have the shapes of REFERENCE.md.
 *
 * Network layer: supply nim_engine_hooks. The engine thread calls
 * hooks.start once (after the store is open and onsessions/onsyncdone are
 * queued... see NIM_ENGINE_DEFER_SYNC), then loops: run queued commands,
 * then hooks.wait(ud, timeout) (e.g. lws_service) until something is
 * queued; nim_engine_submit calls hooks.wake (e.g. lws_cancel_service).
 * Commands >= NIM_CMD_EXT go to hooks.command. From the engine thread the
 * network layer feeds received messages with nim_engine_ingest and emits
 * its own events with nim_engine_emit. */
#ifndef NIM_ENGINE_H
#define NIM_ENGINE_H
#include <stdint.h>
#include <cjson/cJSON.h>

typedef struct nim_engine nim_engine;

/* Commands (owner -> engine). args is a cJSON object (may be NULL). */
enum {
    NIM_CMD_GET_SESSIONS,     /* {lastSessionId?, limit, reverse} -> {sessions=[...]} */
    NIM_CMD_GET_SESSION,      /* {sessionId} -> session or no data */
    NIM_CMD_INSERT_SESSION,   /* {scene, to, updateTime?} -> {session=} */
    NIM_CMD_UPDATE_SESSION,   /* {id, localCustom?, needNotify} -> session */
    NIM_CMD_DELETE_SESSIONS,  /* {ids=[...], isLogic} -> {} */
    NIM_CMD_SET_CURR,         /* {id} */
    NIM_CMD_RESET_CURR,       /* {} */
    NIM_CMD_RESET_UNREAD,     /* {ids=[...]} */
    NIM_CMD_RESET_ALL_UNREAD, /* {} */
    NIM_CMD_SAVE_MSGS,        /* {msgs=[...]} -> {msgs=[...] normalized} */
    NIM_CMD_GET_MSGS,         /* {sessionId?, limit, start?, end?, desc} -> {msgs=[...]} */
    NIM_CMD_VERIFY,           /* {} -> {sessions=N, mismatches=[ids]}: unread recount check */
    NIM_CMD_CLOSE,            /* flush, close the store, end the thread; last done */
    NIM_CMD_EXT = 100         /* and up: handled by hooks.command */
};

/* Events (engine -> owner). */
enum {
    NIM_EV_DONE = 1,          /* reply to command req: code NULL = success, data = result */
    NIM_EV_SESSIONS,          /* data = array of sessions, newest first (onsessions) */
    NIM_EV_SYNCDONE,          /* onsyncdone */
    NIM_EV_UPDATE_SESSION,    /* data = one session in its latest state (onupdatesession) */
    NIM_EV_ERROR,             /* code/message: something failed outside a request (onerror) */
    NIM_EV_EXT = 100          /* and up: the network layer's own events */
};

/* Error codes (static strings). */
#define NIM_ERR_SESSION_EXIST     "Session_Exist"
#define NIM_ERR_SESSION_NOT_EXIST "Session_Not_Exist"
#define NIM_ERR_DB                "DB_Error"
#define NIM_ERR_NO_MEMORY         "No_Memory"
#define NIM_ERR_BAD_ARGS          "Bad_Arguments"
#define NIM_ERR_CLOSED            "Closed"

typedef struct nim_event {
    struct nim_event *next;
    int         type;
    uint64_t    req;       /* NIM_EV_DONE: the command's req */
    const char *code;      /* static string, NULL when no error */
    double      numcode;   /* server's numeric code when code is NULL and this is not 0 */
    const char *callback;  /* the network layer's events: the callback to call
                              ("onconnect", ...), a static string */
    const char *what;      /* NIM_EV_ERROR: what failed, the error's `event`
                              ("login", "frame"...; NULL: "db"), static */
    char       *message;   /* owned, may be NULL */
    cJSON      *data;      /* owned, may be NULL */
} nim_event;

typedef struct nim_cmd {
    struct nim_cmd *next;
    int       type;
    uint64_t  req;
    cJSON    *args;        /* owned */
} nim_cmd;

typedef struct nim_engine_hooks {
    void *ud;
    /* engine thread, once before the command loop; nonzero aborts to a
     * broken engine that answers every request with DB_Error */
    int  (*start)(nim_engine *e, void *ud);
    /* engine thread: block up to timeout_ms (-1: no limit) or until wake */
    void (*wait)(nim_engine *e, void *ud, int timeout_ms);
    /* any thread: make a current or the next wait return soon */
    void (*wake)(nim_engine *e, void *ud);
    /* engine thread: a command >= NIM_CMD_EXT; must answer with
     * nim_engine_reply (now or later) and free nothing (the engine frees c) */
    void (*command)(nim_engine *e, void *ud, nim_cmd *c);
    /* engine thread, once after the loop, before the store closes */
    void (*stop)(nim_engine *e, void *ud);
    /* engine thread, inside the transaction: this device moved the read
     * pointer of sid to ack (unread reset, or the current session followed
     * a new message); may write in that transaction (nim_engine_kv_set_tx);
     * nonzero fails the whole change (rolled back, DB_Error); NULL: not
     * wanted */
    int  (*acked)(nim_engine *e, void *ud, const char *sid, int64_t ack);
} nim_engine_hooks;

enum {
    NIM_ENGINE_NOTIFY_SESSIONS = 1, /* queue NIM_EV_SESSIONS at start */
    NIM_ENGINE_NOTIFY_UPDATES  = 2, /* queue NIM_EV_UPDATE_SESSION on changes */
    NIM_ENGINE_DEFER_SYNC      = 4  /* do not queue SESSIONS/SYNCDONE at start:
                                       the network layer will after its sync */
};

typedef struct nim_engine_config {
    const char *account;          /* required */
    const char *db_path;          /* NULL: in-memory store */
    unsigned    flags;            /* NIM_ENGINE_* */
    const nim_engine_hooks *hooks; /* NULL: a condition variable */
} nim_engine_config;

/* Owner thread. Starts the engine thread, which opens the store (failures
 * become an NIM_EV_ERROR and DB_Error replies, not a failed start). Returns
 * NULL only when memory, the eventfd or the thread cannot be had. */
nim_engine *nim_engine_start(const nim_engine_config *cfg);
/* Owner thread. The eventfd, readable while events are queued. */
int nim_engine_fd(nim_engine *e);
/* Owner thread. Queues a command (takes args, even on failure). Returns -1
 * after NIM_CMD_CLOSE was submitted or on allocation failure. */
int nim_engine_submit(nim_engine *e, int type, uint64_t req, cJSON *args);
/* Owner thread. Takes every queued event (oldest first) and clears the
 * eventfd. NULL when there is none. */
nim_event *nim_engine_take_events(nim_engine *e);
/* Owner thread. Marks the eventfd readable again (events left unprocessed). */
void nim_engine_rearm(nim_engine *e);
/* Owner thread. Hands dispatched events (head..tail, linked by next) back
 * for the engine thread to free: their trees were allocated there, and
 * freeing them was about a quarter of the owner's cost per received
 * message. */
void nim_engine_recycle(nim_engine *e, nim_event *head, nim_event *tail, size_t count);
/* Owner thread. 1 once the engine thread has finished (after CLOSE). */
int nim_engine_finished(nim_engine *e);
/* Owner thread. Submits CLOSE if not yet done and waits for the engine
 * thread to end; queued events stay to be taken. */
void nim_engine_join(nim_engine *e);
/* Owner thread. Submits CLOSE if not yet done, joins the thread, frees the
 * engine and every event still queued. */
void nim_engine_free(nim_engine *e);
void nim_event_free(nim_event *ev);

/* Engine thread: for the network layer. ---------------------------------- */

/* Stores msgs (a cJSON array of messages; not taken) in one transaction,
 * as REFERENCE.md's "received" path: fills flow, target, sessionId, status,
 * type; stores each once by idServer (else idClient); updates sessions and
 * unread; queues update events after commit. Invalid messages (missing
 * fields) are skipped and counted in *skipped. Returns 0, or -1 when the
 * transaction failed (nothing stored; the state is reloaded). */
int nim_engine_ingest(nim_engine *e, cJSON *msgs, int *skipped);
/* Queues an event (takes ev) and signals the eventfd. */
void nim_engine_emit(nim_engine *e, nim_event *ev);
/* Queues the reply to command req (takes data, copies message). */
void nim_engine_reply(nim_engine *e, uint64_t req, const char *code, const char *message,
                      cJSON *data);
/* The session with id, as a new cJSON object, or NULL if unknown/removed. */
cJSON *nim_engine_session_json(nim_engine *e, const char *id);
/* Queues onsessions (every live session) then onsyncdone; when memory
 * runs out, as soon as it allows (the engine retries: see try_resync). */
void nim_engine_emit_sync(nim_engine *e);
const char *nim_engine_account(nim_engine *e);

/* A sync cursor of the network layer: kv key, raised to value (never
 * lowered) in the same transaction as the data it covers. */
typedef struct nim_engine_cursor {
    const char *key;
    int64_t     value;
} nim_engine_cursor;

/* Engine thread. A kv value (see nim_store_kv_get); -1 on a store failure. */
int nim_engine_kv_get(nim_engine *e, const char *key, int64_t *num, char **text);
/* Engine thread. Sets a kv value in its own transaction. */
int nim_engine_kv_set(nim_engine *e, const char *key, int64_t num, const char *text);
/* Engine thread, inside the open transaction (from the acked hook): sets
 * a kv number, committed or rolled back with that transaction. */
int nim_engine_kv_set_tx(nim_engine *e, const char *key, int64_t num);
/* Engine thread. Each kv key with prefix and its number, in key order
 * (row returning nonzero stops it); -1 on a store failure. */
int nim_engine_kv_scan(nim_engine *e, const char *prefix,
                       int (*row)(void *ud, const char *key, int64_t num), void *ud);
/* Engine thread. Deletes each key prefix + items[i].name whose number is
 * <= items[i].num, in one transaction. */
typedef struct nim_kv_item { const char *name; int64_t num; } nim_kv_item;
int nim_engine_kv_del_upto(nim_engine *e, const char *prefix, const nim_kv_item *items, size_t n);
/* nim_engine_ingest, raising cur (may be NULL) in the same transaction. */
int nim_engine_ingest_ex(nim_engine *e, cJSON *msgs, int *skipped, const nim_engine_cursor *cur);
/* nim_engine_ingest_ex, calling after_commit(ud) once the transaction is
 * committed and before its session updates are queued (not at all when it
 * fails): events it queues reach the app before those updates. fresh (may
 * be NULL; one byte per message) is set to 1 for each message stored now,
 * 0 for a duplicate or an invalid one. */
int nim_engine_ingest_then(nim_engine *e, cJSON *msgs, int *skipped, unsigned char *fresh,
                           const nim_engine_cursor *cur, void (*after_commit)(void *ud), void *ud);
/* Server read pointers [{sessionId, ack}]: each local pointer moves forward
 * only, unread is recounted, updates are queued; cur as above. A pointer of
 * an unknown session is kept in a removed (invisible) row for later. */
int nim_engine_apply_acks(nim_engine *e, const cJSON *ptrs, const nim_engine_cursor *cur);
/* Receipts [{sessionId, time}]: msgReceiptTime moves forward only. */
int nim_engine_apply_receipts(nim_engine *e, const cJSON *rcpts, const nim_engine_cursor *cur);
/* Sticky top [{sessionId, topCustom?, isTop? (default true), updateTime?}];
 * replace: every other session loses isTop (the list is complete). A
 * session made top comes back (or is created) as a live session. */
int nim_engine_apply_tops(nim_engine *e, const cJSON *items, int replace);
/* Starts a sync: session updates are not queued but remembered, until
 * nim_engine_sync_end. */
void nim_engine_sync_begin(nim_engine *e);
/* Ends a sync: queues onsessions (every live session when all, else the
 * live sessions changed since nim_engine_sync_begin; nothing when empty),
 * then onsyncdone. A list that memory does not allow is sent later with
 * every live session, and onsyncdone after it. */
void nim_engine_sync_end(nim_engine *e, int all);
/* A sync that cannot finish (the connection was lost): updates are queued
 * again, and the sessions changed so far stay remembered for the next
 * nim_engine_sync_end. Queues nothing. */
void nim_engine_sync_abort(nim_engine *e);

/* Unread rule, pure: 1 when a message counts toward unread. */
int nim_msg_countable(const char *flow, const char *type, int unreadable_false);

#endif
