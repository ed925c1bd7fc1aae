/* Declarations shared by the binding files (the only C that includes lua.h).
 * Every function here runs on the Lua thread. */
#ifndef NIM_LUA_PRIVATE_H
#define NIM_LUA_PRIVATE_H
#include "lua/luacompat.h"

#ifndef NIM_VERSION
#error "NIM_VERSION is defined by the Makefile, from the file VERSION"
#endif

/* Raises "<fname>: bad argument '<arg>' (<formatted>)" at the caller's line. */
int nim_argerror(lua_State *L, const char *fname, const char *arg, const char *fmt, ...);

/* Each area registers its functions into the module table at the top of the stack. */
void nim_merge_open(lua_State *L);
void nim_instance_open(lua_State *L);   /* instance.c: newInstance, the Instance metatable */

/* net.c: the network client of an instance. nim_lua_net_new reads the
 * network options table at `net` (nil: local-only, where network commands
 * answer Not_Connected) and the callbacks table at `cbs`, fills hooks and
 * adds to *flags; raises on a bad option. Free after the engine. */
struct nim_engine_hooks;
void *nim_lua_net_new(lua_State *L, int net, int cbs, const char *account,
                      struct nim_engine_hooks *hooks, unsigned *flags);
void nim_lua_net_free(void *net);

/* json.c: Lua values <-> cJSON trees (for data crossing to the engine). */
#include <cjson/cJSON.h>
/* A new tree for the value at idx; raises "<fname>: bad argument '<path>'"
 * naming the bad value's path under argname, without leaking. */
cJSON *nim_lua_tojson(lua_State *L, int idx, const char *fname, const char *argname);
/* Pushes the Lua value of j (objects and arrays become tables). */
void nim_lua_pushjson(lua_State *L, const cJSON *j);

#endif
