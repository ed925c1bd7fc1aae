/* The session engine of one instance: a background thread that owns the
 * SQLite store and the session state, fed by a command queue and reporting
 * through an event queue plus a wakeup fd (core/wakeup.h). Lua-free. This header is the
 * owner's API; the network layer's side is core/engine_net.h.
 *
 * Threads:
 *   - the "owner" thread (the Lua thread in the module, main() in C tests)
 *     calls nim_engine_start/submit/take_events/stop;
 *   - the engine thread runs commands, ingests messages, emits events;
 *     hooks (network layer) run on it, except hooks.wake (any thread).
 *
 * Data crosses the queues as cJSON trees whose ownership moves with the
 * command or event. Messages and sessions have the shapes of docs/api.md.
 * Commands >= NIM_CMD_EXT and events >= NIM_EV_EXT are the network
 * layer's (net/cmdtable.h, net/client.h). */
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

typedef struct nim_engine_hooks nim_engine_hooks;   /* core/engine_net.h */

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
 * NULL only when memory, the wakeup fd or the thread cannot be had. */
nim_engine *nim_engine_start(const nim_engine_config *cfg);
/* Owner thread. The wakeup fd (an eventfd on Linux, a pipe's read end
 * elsewhere: core/wakeup.h), readable while events are queued. */
int nim_engine_fd(nim_engine *e);
/* Owner thread. Queues a command (takes args, even on failure). Returns -1
 * after NIM_CMD_CLOSE was submitted or on allocation failure. */
int nim_engine_submit(nim_engine *e, int type, uint64_t req, cJSON *args);
/* Owner thread. Takes every queued event (oldest first) and clears the
 * wakeup fd. NULL when there is none. */
nim_event *nim_engine_take_events(nim_engine *e);
/* Owner thread. Marks the wakeup fd readable again (events left unprocessed). */
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

/* Unread rule, pure: 1 when a message counts toward unread. */
int nim_msg_countable(const char *flow, const char *type, int unreadable_false);

#endif
