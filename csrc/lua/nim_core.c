/* luaopen_nim_core: the C module nim.core; each area adds its functions.
 * The JS-shaped API lives in lua/nim/init.lua on top of it. */
#include "lua/private.h"
#include <stdarg.h>

/* Lua thread. Builds the message with the caller's position, then raises. */
int nim_argerror(lua_State *L, const char *fname, const char *arg, const char *fmt, ...) {
    va_list ap;
    luaL_where(L, 1);
    lua_pushfstring(L, "%s: bad argument '%s' (", fname, arg);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushliteral(L, ")");
    lua_concat(L, 4);
    return lua_error(L);
}

int luaopen_nim_core(lua_State *L) {
    lua_newtable(L);
    lua_pushliteral(L, NIM_VERSION);
    lua_setfield(L, -2, "version");
    nim_merge_open(L);
    nim_instance_open(L);
    return 1;
}
