/* Lua tables <-> cJSON trees, for data crossing into the engine thread.
 *
 * Lua thread. Lua -> cJSON never raises half way: errors travel back up the
 * recursion, the partial tree is freed, and only then the binding raises
 * with the path of the bad value (e.g. "msgs[3].content"). Tables nest at
 * most NIM_JSON_MAX_DEPTH deep, which also stops cycles. A table whose keys
 * are exactly 1..n becomes an array, any other table an object with string
 * keys; an empty table becomes an empty object. */
#include "lua/private.h"
#include <string.h>
#include <math.h>
#include <stdio.h>

#define NIM_JSON_MAX_DEPTH 32

typedef struct {
    char path[256];
    char why[128];
} jerr;

static void path_push(char *path, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#include <stdarg.h>
static void path_push(char *path, size_t *len, const char *fmt, ...) {
    if (*len >= 255) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(path + *len, 256 - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len = (*len + (size_t)n < 255) ? *len + (size_t)n : 255;
}

static cJSON *tojson(lua_State *L, int idx, int depth, char *path, size_t plen, jerr *err);

/* 1 when the table at idx has exactly the keys 1..rawlen (rawlen > 0). */
static int is_array(lua_State *L, int idx, size_t n) {
    if (n == 0) return 0;
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        lua_Integer k;
        if (!nim_lua_integer(L, -1, &k)) { lua_pop(L, 1); return 0; }
        if (k < 1 || (size_t)k > n) { lua_pop(L, 1); return 0; }
        count++;
    }
    return count == n;
}

static cJSON *fail(jerr *err, const char *path, size_t plen, const char *fmt, const char *arg) {
    memcpy(err->path, path, plen);
    err->path[plen] = '\0';
    snprintf(err->why, sizeof err->why, fmt, arg);
    return NULL;
}

static cJSON *table_tojson(lua_State *L, int idx, int depth, char *path, size_t plen, jerr *err) {
    if (depth >= NIM_JSON_MAX_DEPTH)
        return fail(err, path, plen, "tables nested too deep (a cycle?)%s", "");
    luaL_checkstack(L, 4, "nested tables");
    size_t n = lua_rawlen(L, idx);
    if (is_array(L, idx, n)) {
        cJSON *a = cJSON_CreateArray();
        if (!a) return fail(err, path, plen, "out of memory%s", "");
        for (size_t i = 1; i <= n; i++) {
            size_t l2 = plen;
            path_push(path, &l2, "[%zu]", i);
            lua_rawgeti(L, idx, (lua_Integer)i);
            cJSON *v = tojson(L, lua_gettop(L), depth + 1, path, l2, err);
            lua_pop(L, 1);
            if (!v) { cJSON_Delete(a); return NULL; }
            cJSON_AddItemToArray(a, v);
        }
        return a;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) return fail(err, path, plen, "out of memory%s", "");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            const char *tn = luaL_typename(L, -2);
            lua_pop(L, 2);
            cJSON_Delete(o);
            return fail(err, path, plen, "%s key in a table that is not an array", tn);
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        size_t l2 = plen;
        if (kl != strlen(k)) {
            lua_pop(L, 2);
            cJSON_Delete(o);
            return fail(err, path, plen, "key with a NUL byte%s", "");
        }
        path_push(path, &l2, plen ? ".%s" : "%s", k);
        cJSON *v = tojson(L, lua_gettop(L), depth + 1, path, l2, err);
        lua_pop(L, 1);
        if (!v) { lua_pop(L, 1); cJSON_Delete(o); return NULL; }
        cJSON_AddItemToObject(o, k, v);
    }
    return o;
}

static cJSON *tojson(lua_State *L, int idx, int depth, char *path, size_t plen, jerr *err) {
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        lua_Integer i;
        double d = nim_lua_integer(L, idx, &i) ? (double)i : lua_tonumber(L, idx);
        if (!isfinite(d)) return fail(err, path, plen, "%s number", isnan(d) ? "NaN" : "infinite");
        return cJSON_CreateNumber(d);
    }
    case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, idx, &l);
        if (l != strlen(s)) return fail(err, path, plen, "string with a NUL byte%s", "");
        return cJSON_CreateString(s);
    }
    case LUA_TTABLE: return table_tojson(L, idx, depth, path, plen, err);
    default:
        return fail(err, path, plen, "unsupported value (%s)", luaL_typename(L, idx));
    }
}

cJSON *nim_lua_tojson(lua_State *L, int idx, const char *fname, const char *argname) {
    idx = lua_absindex(L, idx);
    char path[256];
    size_t plen = strlen(argname) < 200 ? strlen(argname) : 200;
    memcpy(path, argname, plen);
    path[plen] = '\0';
    jerr err;
    cJSON *j = tojson(L, idx, 0, path, plen, &err);
    if (!j) nim_argerror(L, fname, err.path, "%s", err.why);
    return j;
}

void nim_lua_pushjson(lua_State *L, const cJSON *j) {
    luaL_checkstack(L, 3, "deep JSON");
    switch (j->type & 0xff) {
    case cJSON_False: lua_pushboolean(L, 0); break;
    case cJSON_True: lua_pushboolean(L, 1); break;
    case cJSON_Number: {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9.2e18) lua_pushinteger(L, (lua_Integer)d);
        else lua_pushnumber(L, d);
        break;
    }
    case cJSON_String: lua_pushstring(L, j->valuestring); break;
    case cJSON_Array: {
        int n = cJSON_GetArraySize(j), i = 1;
        lua_createtable(L, n, 0);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (cJSON_IsNull(c)) { i++; continue; }
            nim_lua_pushjson(L, c);
            lua_rawseti(L, -2, i++);
        }
        break;
    }
    case cJSON_Object: {
        int n = 0;
        for (const cJSON *c = j->child; c; c = c->next) n++;
        lua_createtable(L, 0, n);
        for (const cJSON *c = j->child; c; c = c->next) {
            if (cJSON_IsNull(c) || !c->string) continue;
            nim_lua_pushjson(L, c);
            lua_setfield(L, -2, c->string);
        }
        break;
    }
    default: lua_pushnil(L); break;
    }
}
