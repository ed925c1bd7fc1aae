/* One nim.Instance userdata, shared by instance.c (the methods) and
 * dispatch.c (poll's events -> callbacks). Lua thread only. */
#ifndef NIM_LUA_INSTANCE_H
#define NIM_LUA_INSTANCE_H
#include "lua/private.h"
#include "core/engine.h"

#define INSTANCE_MT "nim.Instance"
#define ERROR_MT "nim.Error"

enum { ST_OPEN, ST_CLOSING, ST_CLOSED };
enum { UV_CBS = 1, UV_DONES = 2, UV_CLOSEDONES = 3 };

/* Poll budget: stop taking events after this long, or with this many
 * session updates waiting to be built, and leave the rest for the next
 * poll (the fd stays readable). Keeps one poll(0) short under heavy load. */
#define POLL_BUDGET_NS 500000L
#define POLL_MAX_UPDATES 128

typedef struct {
    nim_engine *eng;
    int state;
    int dispatching;
    uint64_t next_req;
    uint64_t close_req;
    nim_event *pending;      /* taken from the engine, not yet dispatched */
    nim_event *cur;          /* being dispatched (freed if Lua raised) */
    nim_event *trash, *trash_tail;  /* dispatched: back to the engine to free */
    size_t ntrash;
    nim_event **upd;         /* session updates waiting for the flush */
    size_t nupd, capupd;
    long budget_ns;          /* this poll's dispatch budget */
    size_t max_upd;          /* and how many coalesced updates it may hold */
    char account[96];
    void *net;               /* the network client (net.c), freed after the engine */
} l_instance;

/* dispatch.c */
int  nim_lua_error_tostring(lua_State *L);          /* nim.Error's __tostring */
/* Pushes {code=, message=, event=} with the nim.Error metatable. */
void nim_lua_push_error(lua_State *L, const char *code, double numcode, const char *message,
                        const char *event);
/* Dispatches pending events within the budget; returns callbacks run. */
int  nim_lua_dispatch(lua_State *L, l_instance *in);
/* Runs the dones queued for the end of the close (instance at index 1). */
int  nim_lua_run_closedones(lua_State *L);
/* The engine thread has ended: join it, free the network client. */
void nim_lua_close_finished(l_instance *in);
void nim_lua_discard(l_instance *in, nim_event *ev);  /* dispatched: to the trash */
void nim_lua_empty_trash(l_instance *in);             /* the trash back to the engine */
void nim_lua_free_upd(l_instance *in);                /* coalesced updates not delivered */

#endif
