/* The one place the binding meets the Lua version: every binding file
 * includes this instead of lua.h. The code is written against Lua 5.4's C
 * API; on Lua 5.1 and LuaJIT 2.1 (and 5.2), lua-compat-5.3 (the Kepler
 * project's, vendored in csrc/lua/compat53/, its functions compiled static
 * into each file) supplies the 5.2/5.3 calls, and below 5.4 the three
 * user-value calls are shimmed on the one value a userdata has there (5.1:
 * its environment), a table that holds the values by index. */
#ifndef NIM_LUA_LUACOMPAT_H
#define NIM_LUA_LUACOMPAT_H
#include <lua.h>
#include <lauxlib.h>
#include <math.h>

#if LUA_VERSION_NUM < 503
#include "lua/compat53/compat-5.3.h"
#endif

#if LUA_VERSION_NUM < 504
/* Below 5.4 a userdata has one value (5.1: its environment, a table): a
 * table there holds the values by index. */
#if LUA_VERSION_NUM == 501
#define nim_compat_uv_get(L, idx) lua_getfenv(L, idx)
#define nim_compat_uv_set(L, idx) lua_setfenv(L, idx)
#else
#define nim_compat_uv_get(L, idx) ((void)lua_getuservalue(L, idx))
#define nim_compat_uv_set(L, idx) lua_setuservalue(L, idx)
#endif
/* nuv > 0: the user value becomes a fresh table for nuv values. */
static inline void *nim_compat_newuserdatauv(lua_State *L, size_t size, int nuv) {
    void *p = lua_newuserdata(L, size);
    if (nuv > 0) {
        lua_createtable(L, nuv, 0);
        nim_compat_uv_set(L, -2);
    }
    return p;
}
static inline int nim_compat_getiuservalue(lua_State *L, int idx, int n) {
    idx = lua_absindex(L, idx);
    nim_compat_uv_get(L, idx);
    lua_rawgeti(L, -1, n);
    lua_remove(L, -2);
    return lua_type(L, -1);
}
/* Pops the value on top into value n of the userdata at idx. */
static inline int nim_compat_setiuservalue(lua_State *L, int idx, int n) {
    idx = lua_absindex(L, idx);
    nim_compat_uv_get(L, idx);
    lua_insert(L, -2);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
    return 1;
}
#define lua_newuserdatauv nim_compat_newuserdatauv
#define lua_getiuservalue nim_compat_getiuservalue
#define lua_setiuservalue nim_compat_setiuservalue
#endif

/* The integer value of the number at idx: 1 and *out for an integer or a
 * float with an integral value in the int64 range, else 0 -- the same rule
 * on every Lua (5.1 has only floats), with no undefined cast of a NaN or a
 * huge float (compat-5.3's lua_isinteger casts first). */
static inline int nim_lua_integer(lua_State *L, int idx, lua_Integer *out) {
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        *out = lua_tointeger(L, idx);
        return 1;
    }
#endif
    lua_Number n = lua_tonumber(L, idx);
    if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0) || n != floor(n)) return 0;
    *out = (lua_Integer)n;
    return 1;
}

#endif
