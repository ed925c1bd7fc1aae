/* luaopen_nim_core: the C module nim.core; each area adds its functions.
 * The JS-shaped API lives in lua/nim/init.lua on top of it. */
#include "lua/private.h"
#include <stdarg.h>
#include <time.h>

/* Lua thread. Pushes "<file>:<line>: " of the caller: the first Lua frame
 * up the stack that is not one of the SDK's own Lua files (the sources
 * nim.check registered in registry["nim.internal"]), skipping C frames and
 * frames a tail call removed; "" if there is none. */
static void where_lua(lua_State *L) {
    lua_Debug ar;
    lua_getfield(L, LUA_REGISTRYINDEX, "nim.internal");
    int internal = lua_gettop(L);
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        if (ar.currentline <= 0) continue;
        if (lua_istable(L, internal)) {
            lua_getfield(L, internal, ar.source);
            int skip = lua_toboolean(L, -1);
            lua_pop(L, 1);
            if (skip) continue;
        }
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
        lua_remove(L, internal);
        return;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "");
}

/* Lua thread. Builds the message with the caller's position, then raises. */
int nim_argerror(lua_State *L, const char *fname, const char *arg, const char *fmt, ...) {
    va_list ap;
    where_lua(L);
    lua_pushfstring(L, "%s: bad argument '%s' (", fname, arg);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushliteral(L, ")");
    lua_concat(L, 4);
    return lua_error(L);
}

/* nim.core.now() -> milliseconds on the monotonic clock (a float), for
 * timeouts in Lua (NIM.wait). */
static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e3 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

int luaopen_nim_core(lua_State *L) {
    lua_newtable(L);
    lua_pushliteral(L, NIM_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
    nim_merge_open(L);
    nim_instance_open(L);
    return 1;
}
