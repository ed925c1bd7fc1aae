/* nim.Instance: the Lua side of one engine (csrc/core/engine.h).
 *
 * Every function here runs on the Lua thread. Requests become commands
 * (args converted to cJSON here, so the engine never sees Lua); replies and
 * notifications come back as events that only nim:poll turns into Lua
 * values and callback calls. Nothing is ever called back from inside the
 * call that caused it.
 *
 * Uservalues of the userdata: 1 = the callbacks table (onsessions, ...),
 * 2 = pending dones by request id ({fn, apiName}), 3 = dones waiting for
 * the close to finish (destroy called more than once).
 *
 * Callbacks run on the thread that called poll (the one that is running:
 * a stored lua_State could be a dead coroutine). Each runs under pcall
 * with a traceback; an error goes to onerror, else to stderr, and dispatch
 * goes on. */
#include "lua/private.h"
#include "core/engine.h"
#include "net/client.h"
#include "core/alloc.h"
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

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

static const char *state_name(int st) {
    return st == ST_OPEN ? "open" : st == ST_CLOSING ? "closing" : "destroyed";
}

static l_instance *check_any(lua_State *L) {
    return luaL_checkudata(L, 1, INSTANCE_MT);
}

static l_instance *check_open(lua_State *L) {
    l_instance *in = check_any(L);
    if (in->state != ST_OPEN) luaL_error(L, "attempt to use a destroyed nim instance");
    return in;
}

static int is_callable(lua_State *L, int idx) {
    if (lua_isfunction(L, idx)) return 1;
    if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) { lua_pop(L, 1); return 1; }
    return 0;
}

/* ------------------------------------------------------------- errors */

static int l_error_tostring(lua_State *L) {
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    luaL_tolstring(L, 2, NULL);
    if (!lua_isnil(L, 3)) {
        lua_pushliteral(L, ": ");
        luaL_tolstring(L, 3, NULL);
        lua_concat(L, 3);
    }
    return 1;
}

/* Pushes {code=, message=, event=} with __tostring. */
static void push_error(lua_State *L, const char *code, double numcode, const char *message,
                       const char *event) {
    lua_createtable(L, 0, 3);
    if (code) lua_pushstring(L, code);
    else if (numcode == (lua_Integer)numcode) lua_pushinteger(L, (lua_Integer)numcode);
    else lua_pushnumber(L, numcode);
    lua_setfield(L, -2, "code");
    if (message) { lua_pushstring(L, message); lua_setfield(L, -2, "message"); }
    if (event) { lua_pushstring(L, event); lua_setfield(L, -2, "event"); }
    luaL_setmetatable(L, ERROR_MT);
}

/* ---------------------------------------------------------- callbacks */

static int msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
        else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void report(lua_State *L, const char *name, const char *msg);

/* Calls the callable at -(nargs+1) with nargs arguments, protected. */
static void call(lua_State *L, int nargs, const char *name) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    if (lua_pcall(L, nargs, 0, base) != LUA_OK) {
        report(L, name, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_remove(L, base);
}

/* A callback raised: to onerror (unless onerror itself raised), else stderr. */
static void report(lua_State *L, const char *name, const char *msg) {
    if (!msg) msg = "(no message)";
    if (strcmp(name, "onerror") != 0) {
        lua_getiuservalue(L, 1, UV_CBS);
        if (lua_getfield(L, -1, "onerror") != LUA_TNIL) {
            lua_remove(L, -2);
            push_error(L, "Callback_Error", 0, msg, name);
            call(L, 1, "onerror");
            return;
        }
        lua_pop(L, 2);
    }
    fprintf(stderr, "nim: error in %s: %s\n", name, msg);
}

/* Pushes callbacks[name]; returns 0 (nothing pushed) when it is unset. */
static int get_cb(lua_State *L, const char *name) {
    lua_getiuservalue(L, 1, UV_CBS);
    if (lua_getfield(L, -1, name) == LUA_TNIL) { lua_pop(L, 2); return 0; }
    lua_remove(L, -2);
    return 1;
}

/* --------------------------------------------------------------- poll */

/* A dispatched event: kept for the engine thread to free (empty_trash). */
static void discard(l_instance *in, nim_event *ev) {
    if (!ev) return;
    ev->next = NULL;
    if (in->trash_tail) in->trash_tail->next = ev; else in->trash = ev;
    in->trash_tail = ev;
    in->ntrash++;
}

/* End of a poll: the dispatched events go back to the engine thread, which
 * allocated their trees (freed here, after the engine is gone). */
static void empty_trash(l_instance *in) {
    if (!in->trash) return;
    if (in->eng) nim_engine_recycle(in->eng, in->trash, in->trash_tail, in->ntrash);
    else nim_event_free(in->trash);
    in->trash = in->trash_tail = NULL;
    in->ntrash = 0;
}

static void free_upd(l_instance *in) {
    for (size_t i = 0; i < in->nupd; i++) discard(in, in->upd[i]);
    in->nupd = 0;
}

/* Delivers the coalesced session updates (each session once, latest state). */
static int flush_updates(lua_State *L, l_instance *in, int idmap) {
    if (in->nupd == 0) return 0;
    int ran = 0;
    if (get_cb(L, "onupdatesessions")) {
        lua_createtable(L, (int)in->nupd, 0);
        int n = 0;
        for (size_t i = 0; i < in->nupd; i++) {
            if (!in->upd[i]) continue;
            nim_lua_pushjson(L, in->upd[i]->data);
            lua_rawseti(L, -2, ++n);
        }
        free_upd(in);
        call(L, 1, "onupdatesessions");
        ran = 1;
    } else if (get_cb(L, "onupdatesession")) {
        int fn = lua_gettop(L);
        for (size_t i = 0; i < in->nupd; i++) {
            if (!in->upd[i]) continue;
            lua_pushvalue(L, fn);
            nim_lua_pushjson(L, in->upd[i]->data);
            discard(in, in->upd[i]);
            in->upd[i] = NULL;
            call(L, 1, "onupdatesession");
            ran++;
        }
        lua_pop(L, 1);
        free_upd(in);
    } else {
        free_upd(in);
    }
    lua_newtable(L);
    lua_replace(L, idmap);
    return ran;
}

/* Keeps ev (an update) for the flush, replacing an older one for the same id. */
static void add_update(lua_State *L, l_instance *in, nim_event *ev, int idmap) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev->data, "id");
    if (!cJSON_IsString(id)) { discard(in, ev); return; }
    if (in->nupd == in->capupd) {
        size_t nc = in->capupd ? in->capupd * 2 : 64;
        nim_event **nu = nim_realloc(in->upd, nc * sizeof *nu);
        if (!nu) { discard(in, ev); luaL_error(L, "nim: out of memory"); }
        in->upd = nu;
        in->capupd = nc;
    }
    if (lua_getfield(L, idmap, id->valuestring) == LUA_TNUMBER) {
        lua_Integer old = lua_tointeger(L, -1);
        discard(in, in->upd[old]);
        in->upd[old] = NULL;
    }
    lua_pop(L, 1);
    in->upd[in->nupd] = ev;
    lua_pushinteger(L, (lua_Integer)in->nupd++);
    lua_setfield(L, idmap, id->valuestring);
}

static void close_finished(l_instance *in) {
    if (in->eng) {
        nim_engine_free(in->eng);   /* the thread has ended: a quick join */
        in->eng = NULL;
        nim_lua_net_free(in->net);
        in->net = NULL;
    }
    in->state = ST_CLOSED;
}

/* Runs the dones queued for the end of the close. */
static int run_closedones(lua_State *L) {
    lua_getiuservalue(L, 1, UV_CLOSEDONES);
    int t = lua_gettop(L), ran = 0;
    lua_Integer n = (lua_Integer)lua_rawlen(L, t);
    if (n == 0) { lua_pop(L, 1); return 0; }
    lua_newtable(L);
    lua_setiuservalue(L, 1, UV_CLOSEDONES);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, t, i);
        call(L, 0, "destroy done");
        ran++;
    }
    lua_pop(L, 1);
    return ran;
}

static int dispatch_done(lua_State *L, l_instance *in, nim_event *ev) {
    int ran = 0;
    if (in->close_req && ev->req == in->close_req) close_finished(in);
    lua_getiuservalue(L, 1, UV_DONES);
    if (lua_rawgeti(L, -1, (lua_Integer)ev->req) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_rawseti(L, -3, (lua_Integer)ev->req);     /* one-shot */
        lua_rawgeti(L, -1, 1);                       /* fn */
        lua_rawgeti(L, -2, 2);                       /* api name */
        const char *api = lua_tostring(L, -1);
        lua_insert(L, -3);                           /* name, entry, fn */
        lua_remove(L, -2);                           /* name, fn */
        if (ev->code || ev->numcode != 0) {
            push_error(L, ev->code, ev->numcode, ev->message, api);
            lua_pushnil(L);
        } else {
            lua_pushnil(L);
            if (ev->data) nim_lua_pushjson(L, ev->data); else lua_pushnil(L);
        }
        char name[64];
        snprintf(name, sizeof name, "%s done", api ? api : "request");
        call(L, 2, name);
        lua_pop(L, 1);                               /* name */
        ran = 1;
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (in->state == ST_CLOSED) ran += run_closedones(L);
    return ran;
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Dispatches pending events within the budget; returns callbacks run. */
static int dispatch(lua_State *L, l_instance *in) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lua_newtable(L);                     /* id -> index in in->upd */
    int idmap = lua_gettop(L), ran = 0;
    while (in->pending) {
        nim_event *ev = in->pending;
        in->pending = ev->next;
        ev->next = NULL;
        int was_onmsg = ev->type == NIM_EV_MSG;
        if (ev->type == NIM_EV_UPDATE_SESSION) {
            add_update(L, in, ev, idmap);
        } else {
            /* Updates waiting are delivered before any other kind of event
             * (onsessions, onsyncdone, ...), so they never appear to come
             * after it; dones and onmsg let them coalesce on: in a flood, a
             * session is delivered once per poll, after its messages. */
            if (ev->type != NIM_EV_DONE && !was_onmsg) ran += flush_updates(L, in, idmap);
            in->cur = ev;
            switch (ev->type) {
            case NIM_EV_DONE: ran += dispatch_done(L, in, ev); break;
            case NIM_EV_SESSIONS:
                if (get_cb(L, "onsessions")) {
                    nim_lua_pushjson(L, ev->data);
                    call(L, 1, "onsessions");
                    ran++;
                }
                break;
            case NIM_EV_SYNCDONE:
                if (get_cb(L, "onsyncdone")) { call(L, 0, "onsyncdone"); ran++; }
                break;
            case NIM_EV_ERROR:
                if (get_cb(L, "onerror")) {
                    push_error(L, ev->code, ev->numcode, ev->message, ev->what ? ev->what : "db");
                    call(L, 1, "onerror");
                    ran++;
                } else if (ev->code) {
                    fprintf(stderr, "nim: %s: %s\n", ev->code, ev->message ? ev->message : "");
                } else {
                    fprintf(stderr, "nim: %s\n", ev->message ? ev->message : "network error");
                }
                break;
            case NIM_EV_CALLBACK:
            case NIM_EV_MSG:   /* net/client.h */
                if (ev->callback && get_cb(L, ev->callback)) {
                    if (ev->data) {
                        nim_lua_pushjson(L, ev->data);
                        call(L, 1, ev->callback);
                    } else {
                        call(L, 0, ev->callback);
                    }
                    ran++;
                }
                break;
            default: break;
            }
            in->cur = NULL;
            discard(in, ev);
        }
        int spent = in->nupd >= in->max_upd || elapsed_ns(&t0) > in->budget_ns;
        if (in->pending) {
            /* a message's session update follows its onmsg: never stop
             * between them, so a poll's update shows its last onmsg */
            if (spent && !(was_onmsg && in->pending->type == NIM_EV_UPDATE_SESSION)) {
                if (in->eng) nim_engine_rearm(in->eng);
                break;
            }
        } else if (!spent && in->eng) {
            in->pending = nim_engine_take_events(in->eng);   /* queued meanwhile */
        }
    }
    ran += flush_updates(L, in, idmap);
    lua_pop(L, 1);
    return ran;
}

/* nim:poll([timeout_ms [, budget_ms]]) -> number of callbacks run.
 * budget_ms (default 0.5): how long this call may spend dispatching before
 * it leaves the rest for the next poll (at least one callback always runs). */
static int l_instance_poll(lua_State *L) {
    l_instance *in = check_any(L);
    lua_Integer timeout = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_isinteger(L, 2) || lua_tointeger(L, 2) < 0)
            nim_argerror(L, "poll", "timeout_ms", "non-negative integer expected, got %s",
                         lua_isnumber(L, 2) ? lua_tostring(L, 2) : luaL_typename(L, 2));
        timeout = lua_tointeger(L, 2);
    }
    in->budget_ns = POLL_BUDGET_NS;
    in->max_upd = POLL_MAX_UPDATES;
    if (!lua_isnoneornil(L, 3)) {
        lua_Number b = lua_isnumber(L, 3) ? lua_tonumber(L, 3) : -1;
        if (!(b > 0 && b <= 60000))
            nim_argerror(L, "poll", "budget_ms", "number in (0, 60000] expected, got %s",
                         lua_isnumber(L, 3) ? lua_tostring(L, 3) : luaL_typename(L, 3));
        in->budget_ns = (long)(b * 1e6);
        /* the coalescing buffer grows with the budget: 256 updates per ms */
        in->max_upd = b * 256 > POLL_MAX_UPDATES ? (size_t)(b * 256) : POLL_MAX_UPDATES;
    }
    lua_settop(L, 1);
    if (in->dispatching) { lua_pushinteger(L, 0); return 1; }  /* poll from a callback */
    in->dispatching = 1;
    if (in->cur) { discard(in, in->cur); in->cur = NULL; }   /* left by a Lua error */
    free_upd(in);
    int ran = 0;
    if (in->state == ST_CLOSED) ran += run_closedones(L);
    if (!in->pending && in->eng) in->pending = nim_engine_take_events(in->eng);
    if (!in->pending && in->eng && ran == 0 && timeout > 0) {
        struct pollfd p = { .fd = nim_engine_fd(in->eng), .events = POLLIN };
        int r;
        do r = poll(&p, 1, timeout > 0x7fffffff ? 0x7fffffff : (int)timeout);
        while (r < 0 && errno == EINTR);
        if (r > 0) in->pending = nim_engine_take_events(in->eng);
    }
    ran += dispatch(L, in);
    in->dispatching = 0;
    empty_trash(in);
    lua_pushinteger(L, ran);
    return 1;
}

/* ----------------------------------------------------------- requests */

/* nim:_request(cmd, args, done, apiName): queues a command. The Lua layer
 * has checked the arguments; this converts them (raising on values JSON
 * cannot carry) and registers done. */
static int l_instance_request(lua_State *L) {
    l_instance *in = check_open(L);
    const char *cname = luaL_checkstring(L, 2);
    const nim_command *row = nim_command_by_name(cname);   /* net/cmdtable.h */
    if (!row) return luaL_argerror(L, 2, lua_pushfstring(L, "invalid option '%s'", cname));
    int cmd = row->cmd;
    const char *api = luaL_optstring(L, 5, cname);
    int has_done = !lua_isnoneornil(L, 4);
    if (has_done && !is_callable(L, 4))
        nim_argerror(L, api, "done", "callable expected, got %s", luaL_typename(L, 4));
    cJSON *args = lua_isnoneornil(L, 3) ? cJSON_CreateObject() : nim_lua_tojson(L, 3, api, "");
    if (!args) return luaL_error(L, "%s: out of memory", api);
    uint64_t req = ++in->next_req;
    if (has_done) {
        lua_getiuservalue(L, 1, UV_DONES);
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, 4);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, api);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (lua_Integer)req);
        lua_pop(L, 1);
    }
    if (nim_engine_submit(in->eng, cmd, req, args) < 0) {
        if (has_done) {
            lua_getiuservalue(L, 1, UV_DONES);
            lua_pushnil(L);
            lua_rawseti(L, -2, (lua_Integer)req);
        }
        return luaL_error(L, "%s: out of memory", api);
    }
    return 0;
}

/* nim:destroy([done]): flush and close; done runs in poll once closed. */
static int l_instance_destroy(lua_State *L) {
    l_instance *in = check_any(L);
    int has_done = !lua_isnoneornil(L, 2);
    if (has_done && !is_callable(L, 2))
        nim_argerror(L, "destroy", "done", "callable expected, got %s", luaL_typename(L, 2));
    if (in->state == ST_OPEN) {
        uint64_t req = ++in->next_req;
        in->close_req = req;
        in->state = ST_CLOSING;
        if (has_done) {
            lua_getiuservalue(L, 1, UV_DONES);
            lua_createtable(L, 2, 0);
            lua_pushvalue(L, 2);
            lua_rawseti(L, -2, 1);
            lua_pushliteral(L, "destroy");
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, (lua_Integer)req);
            lua_pop(L, 1);
        }
        if (nim_engine_submit(in->eng, NIM_CMD_CLOSE, req, NULL) < 0) {
            nim_engine_free(in->eng);   /* joins: the close is still done */
            in->eng = NULL;
            nim_lua_net_free(in->net);
            in->net = NULL;
            in->state = ST_CLOSED;
        }
    } else if (has_done) {
        /* already closing or closed: run done once the close is over */
        lua_getiuservalue(L, 1, UV_CLOSEDONES);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 1);   /* when already closed, the next poll runs it */
    }
    return 0;
}

/* __close: destroy, and wait for the engine to finish, so the database is
 * closed when the scope ends; the events (dones) stay for the next poll. */
static int l_instance_close(lua_State *L) {
    lua_settop(L, 1);
    l_instance_destroy(L);
    l_instance *in = check_any(L);
    if (in->eng) {
        nim_engine_join(in->eng);
        nim_event *ev = nim_engine_take_events(in->eng), **tail = &in->pending;
        while (*tail) tail = &(*tail)->next;
        *tail = ev;
    }
    return 0;
}

/* __gc: joins the engine (which flushes and closes the database). */
static int l_instance_gc(lua_State *L) {
    l_instance *in = check_any(L);
    if (in->eng) { nim_engine_free(in->eng); in->eng = NULL; }
    nim_lua_net_free(in->net);
    in->net = NULL;
    in->state = ST_CLOSED;
    nim_event_free(in->pending);
    in->pending = NULL;
    nim_event_free(in->cur);
    in->cur = NULL;
    free_upd(in);
    empty_trash(in);          /* no engine now: freed here */
    nim_free(in->upd);
    in->upd = NULL;
    in->capupd = 0;
    return 0;
}

static int l_instance_getfd(lua_State *L) {
    l_instance *in = check_any(L);
    if (!in->eng) return luaL_error(L, "attempt to use a destroyed nim instance");
    lua_pushinteger(L, nim_engine_fd(in->eng));
    return 1;
}

static int l_instance_state(lua_State *L) {
    l_instance *in = check_any(L);
    lua_pushstring(L, state_name(in->state));
    return 1;
}

static int l_instance_tostring(lua_State *L) {
    l_instance *in = check_any(L);
    lua_pushfstring(L, "nim.Instance (%s, %s): %p", in->account, state_name(in->state), (void *)in);
    return 1;
}

/* core.newInstance{account=, dbPath=?, callbacks={...}} -> instance. */
static int l_instance_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "account");
    size_t alen;
    const char *account = lua_tolstring(L, -1, &alen);
    if (!account || alen == 0 || lua_type(L, -1) != LUA_TSTRING)
        nim_argerror(L, "getInstance", "account", "non-empty string expected");
    lua_getfield(L, 1, "dbPath");
    const char *db = lua_tostring(L, -1);
    if (lua_getfield(L, 1, "callbacks") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int cbs = lua_gettop(L);
    unsigned flags = 0;
    if (lua_getfield(L, cbs, "onsessions") != LUA_TNIL) flags |= NIM_ENGINE_NOTIFY_SESSIONS;
    if (lua_getfield(L, cbs, "onupdatesession") != LUA_TNIL ||
        lua_getfield(L, cbs, "onupdatesessions") != LUA_TNIL)
        flags |= NIM_ENGINE_NOTIFY_UPDATES;
    lua_settop(L, cbs);
    lua_getfield(L, 1, "net");               /* network options, or nil: local-only */
    nim_engine_hooks hooks;
    void *net = nim_lua_net_new(L, cbs + 1, cbs, account, &hooks, &flags);
    lua_settop(L, cbs);

    l_instance *in = lua_newuserdatauv(L, sizeof *in, 3);
    memset(in, 0, sizeof *in);
    in->state = ST_CLOSED;                     /* closed until the engine runs */
    snprintf(in->account, sizeof in->account, "%s", account);
    in->net = net;
    luaL_setmetatable(L, INSTANCE_MT);
    lua_pushvalue(L, cbs);
    lua_setiuservalue(L, -2, UV_CBS);
    lua_newtable(L);
    lua_setiuservalue(L, -2, UV_DONES);
    lua_newtable(L);
    lua_setiuservalue(L, -2, UV_CLOSEDONES);
    nim_engine_config cfg = { .account = account, .db_path = db, .flags = flags, .hooks = &hooks };
    in->eng = nim_engine_start(&cfg);
    if (!in->eng) return luaL_error(L, "getInstance: cannot start the engine (memory or threads)");
    in->state = ST_OPEN;
    return 1;
}

void nim_instance_open(lua_State *L) {
    static const luaL_Reg meta[] = {
        { "__gc", l_instance_gc },
        { "__close", l_instance_close },
        { "__tostring", l_instance_tostring },
        { NULL, NULL }
    };
    static const luaL_Reg methods[] = {
        { "poll", l_instance_poll },
        { "getfd", l_instance_getfd },
        { "destroy", l_instance_destroy },
        { "_request", l_instance_request },
        { "_state", l_instance_state },
        { NULL, NULL }
    };
    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, l_error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, INSTANCE_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -3, "Instance");      /* module.Instance: the methods table */
    lua_pop(L, 1);
    lua_pushcfunction(L, l_instance_new);
    lua_setfield(L, -2, "newInstance");
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "ErrorMeta");
}
