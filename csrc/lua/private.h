/* Declarations shared by the binding files (the only C that includes lua.h).
 * Every function here runs on the Lua thread. */
#ifndef NIM_LUA_PRIVATE_H
#define NIM_LUA_PRIVATE_H
#include <lua.h>
#include <lauxlib.h>

#define NIM_VERSION "0.1.0"

/* Raises "<fname>: bad argument '<arg>' (<formatted>)" at the caller's line. */
int nim_argerror(lua_State *L, const char *fname, const char *arg, const char *fmt, ...);

/* Each area registers its functions into the module table at the top of the stack. */
void nim_merge_open(lua_State *L);

#endif
