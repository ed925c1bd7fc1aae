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
 * a stored lua_State could be a dead coroutine); dispatch.c turns the
 * events into those calls. */
#include "lua/instance.h"
#include "core/engine.h"
#include "net/client.h"
#include "core/alloc.h"
#include <poll.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>


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

/* nim:poll([timeout_ms [, budget_ms]]) -> number of callbacks run.
 * budget_ms (default 0.5): how long this call may spend dispatching before
 * it leaves the rest for the next poll (at least one callback always runs). */
static int l_instance_poll(lua_State *L) {
    l_instance *in = check_any(L);
    lua_Integer timeout = 0;
    if (!lua_isnoneornil(L, 2) && (!nim_lua_integer(L, 2, &timeout) || timeout < 0))
        nim_argerror(L, "poll", "timeout_ms", "non-negative integer expected, got %s",
                     lua_isnumber(L, 2) ? lua_tostring(L, 2) : luaL_typename(L, 2));
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
    if (in->cur) { nim_lua_discard(in, in->cur); in->cur = NULL; }   /* left by a Lua error */
    nim_lua_free_upd(in);
    int ran = 0;
    if (in->state == ST_CLOSED) ran += nim_lua_run_closedones(L);
    if (!in->pending && in->eng) in->pending = nim_engine_take_events(in->eng);
    if (!in->pending && in->eng && ran == 0 && timeout > 0) {
        struct pollfd p = { .fd = nim_engine_fd(in->eng), .events = POLLIN };
        int r;
        do r = poll(&p, 1, timeout > 0x7fffffff ? 0x7fffffff : (int)timeout);
        while (r < 0 && errno == EINTR);
        if (r > 0) in->pending = nim_engine_take_events(in->eng);
    }
    ran += nim_lua_dispatch(L, in);
    in->dispatching = 0;
    nim_lua_empty_trash(in);
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
    nim_lua_free_upd(in);
    nim_lua_empty_trash(in);          /* no engine now: freed here */
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

/* nim:_dispatching() -> true while this instance's poll runs callbacks
 * (the Lua layer refuses to wait there: a nested poll does nothing). */
static int l_instance_dispatching(lua_State *L) {
    l_instance *in = check_any(L);
    lua_pushboolean(L, in->dispatching);
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
        { "_dispatching", l_instance_dispatching },
        { NULL, NULL }
    };
    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, nim_lua_error_tostring);
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
