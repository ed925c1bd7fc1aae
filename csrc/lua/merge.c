/* mergeSessions, cutSessions, cutSessionsByIds, findSession: pure functions
 * on Lua tables, in C for speed (no JSON round trip, no Lua comparator).
 *
 * All run on the Lua thread. Scratch memory is a Lua userdata, so an error
 * raised half way (bad input) cannot leak it. Session tables are read with
 * raw access (sessions are plain tables); strings read from them stay valid
 * because the tables stay reachable from the arguments on the stack. No
 * recursion on user data: only the top level of each session is copied. */
#include "lua/private.h"
#include "core/strmap.h"
#include "core/sortkeys.h"
#include <stdint.h>
#include <string.h>
#include <math.h>

enum { SRC_OLD, SRC_NEW, SRC_MERGED };

typedef struct {
    uint32_t idx;      /* 1-based index into olds / news / the merged table */
    uint8_t  src;
    uint8_t  changed;  /* merged or appended: not part of the sorted old run */
} entry;

/* Stack slots used by l_merge. */
enum { A_OLDS = 1, A_NEWS = 2, S_IDKEY = 3, S_TIMEKEY, S_SCRATCH, S_MERGED, S_FIRST_FREE };

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Allocates n_entries entries, 2 * n_entries keys and a map for n_keys ids in
 * one userdata pushed on the stack. */
static void *scratch(lua_State *L, const char *fname, size_t n, size_t n_keys,
                     entry **ents, nim_sortkey **keys, nim_strmap *map) {
    size_t mb = nim_strmap_bytes(n_keys);
    if (n > UINT32_MAX / 4 || mb == 0) luaL_error(L, "%s: lists too large", fname);
    size_t eb = align8(n * sizeof(entry)), kb = align8(2 * n * sizeof(nim_sortkey));
    char *p = lua_newuserdatauv(L, eb + kb + mb, 0);
    if (ents) *ents = (entry *)p;
    if (keys) *keys = (nim_sortkey *)(p + eb);
    nim_strmap_init(map, p + eb + kb, n_keys);
    return p;
}

/* The session table at the top of the stack: returns its id and fills key
 * (when key != NULL). Raises naming fname/argname and the element. */
static const char *read_session(lua_State *L, const char *fname, const char *argname,
                                lua_Integer elem, size_t *len, nim_sortkey *key) {
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE)
        nim_argerror(L, fname, argname, "element %I: session table expected, got %s",
                     elem, luaL_typename(L, t));
    lua_pushvalue(L, S_IDKEY);
    if (lua_rawget(L, t) != LUA_TSTRING)
        nim_argerror(L, fname, argname, "element %I: string 'id' expected, got %s",
                     elem, luaL_typename(L, -1));
    const char *id = lua_tolstring(L, -1, len);
    lua_pop(L, 1);
    if (key) {
        lua_pushvalue(L, S_TIMEKEY);
        int ty = lua_rawget(L, t);
        key->has_time = key->is_int = 0;
        key->ikey = 0; key->dkey = 0;
        if (ty == LUA_TNUMBER) {
            if (lua_isinteger(L, -1)) {
                key->ikey = lua_tointeger(L, -1);
                key->dkey = (double)key->ikey;
                key->is_int = 1;
            } else {
                key->dkey = lua_tonumber(L, -1);
                if (isnan(key->dkey))
                    nim_argerror(L, fname, argname, "element %I: 'updateTime' is NaN", elem);
            }
            key->has_time = 1;
        } else if (ty != LUA_TNIL) {
            nim_argerror(L, fname, argname, "element %I: number 'updateTime' expected, got %s",
                         elem, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    return id;
}

/* Copies every field of the table at src into the table at dst (raw). */
static void copy_fields(lua_State *L, int src, int dst) {
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, dst);
    }
}

/* Pushes the session that entry e stands for. */
static void push_entry(lua_State *L, const entry *e, int news_single) {
    switch (e->src) {
    case SRC_OLD: lua_rawgeti(L, A_OLDS, e->idx); break;
    case SRC_NEW:
        if (news_single) lua_pushvalue(L, A_NEWS);
        else lua_rawgeti(L, A_NEWS, e->idx);
        break;
    default: lua_rawgeti(L, S_MERGED, e->idx); break;
    }
}

/* True when the table at idx is one session rather than an array of them. */
static int is_single_session(lua_State *L, int idx) {
    lua_pushvalue(L, S_IDKEY);
    int single = lua_rawget(L, idx) != LUA_TNIL;
    lua_pop(L, 1);
    return single;
}

/* Checks (olds, second) and pushes the key strings into S_IDKEY, S_TIMEKEY. */
static void check_list_args(lua_State *L, const char *fname, const char *second, int allow_string) {
    int t = lua_type(L, 1);
    if (t != LUA_TNIL && t != LUA_TTABLE)
        nim_argerror(L, fname, "olds", "table or nil expected, got %s", luaL_typename(L, 1));
    if (!lua_istable(L, 2) && !(allow_string && lua_type(L, 2) == LUA_TSTRING))
        nim_argerror(L, fname, second, "%s expected, got %s",
                     allow_string ? "string or table" : "table", luaL_typename(L, 2));
    lua_settop(L, 2);
    lua_pushliteral(L, "id");
    lua_pushliteral(L, "updateTime");
}

/* mergeSessions(olds, news) -> new array; see REFERENCE.md. */
static int l_merge(lua_State *L) {
    static const char *F = "mergeSessions";
    check_list_args(L, F, "news", 0);
    size_t n_old = lua_istable(L, A_OLDS) ? lua_rawlen(L, A_OLDS) : 0;
    int single = is_single_session(L, A_NEWS);
    size_t n_new = single ? 1 : lua_rawlen(L, A_NEWS);
    size_t cap = n_old + n_new;
    entry *ents; nim_sortkey *keys; nim_strmap map;
    scratch(L, F, cap, cap, &ents, &keys, &map);           /* S_SCRATCH */
    lua_newtable(L);                                       /* S_MERGED */
    nim_sortkey *tmp = keys + cap;
    size_t n = 0, n_merged = 0;
    int existed;

    for (size_t i = 1; i <= n_old; i++, n++) {
        size_t len;
        lua_rawgeti(L, A_OLDS, (lua_Integer)i);
        const char *id = read_session(L, F, "olds", (lua_Integer)i, &len, &keys[n]);
        keys[n].pos = (uint32_t)n;
        ents[n] = (entry){ .idx = (uint32_t)i, .src = SRC_OLD, .changed = 0 };
        nim_strmap_put(&map, id, len, (uint32_t)n, &existed);
        lua_pop(L, 1);
    }

    for (size_t j = 1; j <= n_new; j++) {
        size_t len;
        nim_sortkey k;
        if (single) lua_pushvalue(L, A_NEWS);
        else lua_rawgeti(L, A_NEWS, (lua_Integer)j);
        int t = lua_gettop(L);
        const char *id = read_session(L, F, "news", (lua_Integer)j, &len, &k);
        uint32_t *slot = nim_strmap_put(&map, id, len, (uint32_t)n, &existed);
        if (!existed) {                                    /* unknown id: append */
            k.pos = (uint32_t)n;
            keys[n] = k;
            ents[n++] = (entry){ .idx = (uint32_t)j, .src = SRC_NEW, .changed = 1 };
            lua_pop(L, 1);
            continue;
        }
        entry *e = &ents[*slot];
        if (e->src != SRC_MERGED) {      /* first merge: a new table, inputs untouched */
            lua_createtable(L, 0, 8);
            push_entry(L, e, single);
            copy_fields(L, t + 2, t + 1);
            lua_pop(L, 1);
            e->src = SRC_MERGED;
            e->idx = (uint32_t)++n_merged;
            lua_pushvalue(L, -1);
            lua_rawseti(L, S_MERGED, e->idx);
        } else {
            lua_rawgeti(L, S_MERGED, e->idx);
        }
        copy_fields(L, t, t + 1);
        e->changed = 1;
        if (k.has_time) {                /* the merged table's time is the new one */
            k.pos = keys[*slot].pos;
            keys[*slot] = k;
        }
        lua_settop(L, t - 1);
    }

    /* Untouched olds keep their order; when that order is already sorted
     * (the usual case: an app merging updates into the list it keeps) only
     * the changed entries need sorting, then one linear merge. */
    size_t na = 0, nb = 0;
    nim_sortkey *b = tmp;               /* changed keys collected in tmp first */
    for (size_t e = 0; e < n; e++) {
        if (ents[e].changed) b[nb++] = keys[e];
        else keys[na++] = keys[e];
    }
    nim_sortkey *sorted;
    if (nim_sortkeys_sorted(keys, na)) {
        /* sort b in place using the free tail of keys (cap - na >= nb) as scratch */
        nim_sortkeys_sort(b, nb, keys + na);
        memmove(keys + cap - nb, b, nb * sizeof *b);   /* b now sits at the end of keys */
        nim_sortkeys_merge(keys, na, keys + cap - nb, nb, tmp);
        sorted = tmp;
    } else {
        memcpy(keys + na, b, nb * sizeof *b);
        nim_sortkeys_sort(keys, n, tmp);
        sorted = keys;
    }

    lua_createtable(L, (int)(n < INT32_MAX ? n : 0), 0);
    for (size_t i = 0; i < n; i++) {
        push_entry(L, &ents[sorted[i].pos], single);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
    return 1;
}

/* The ids named by arg 2 (sessions, or ids when by_ids) go into map with
 * value 0 ("not removed yet"). */
static void collect_ids(lua_State *L, const char *F, const char *argname, int by_ids,
                        nim_strmap *map) {
    int existed;
    size_t len;
    if (by_ids && lua_type(L, 2) == LUA_TSTRING) {
        const char *id = lua_tolstring(L, 2, &len);
        nim_strmap_put(map, id, len, 0, &existed);
        return;
    }
    int single = !by_ids && is_single_session(L, 2);
    size_t n = single ? 1 : lua_rawlen(L, 2);
    for (size_t j = 1; j <= n; j++) {
        if (single) lua_pushvalue(L, 2);
        else lua_rawgeti(L, 2, (lua_Integer)j);
        const char *id;
        if (by_ids) {
            if (lua_type(L, -1) != LUA_TSTRING)
                nim_argerror(L, F, argname, "element %I: string expected, got %s",
                             (lua_Integer)j, luaL_typename(L, -1));
            id = lua_tolstring(L, -1, &len);
        } else {
            id = read_session(L, F, argname, (lua_Integer)j, &len, NULL);
        }
        nim_strmap_put(map, id, len, 0, &existed);
        lua_pop(L, 1);
    }
}

static int cut(lua_State *L, const char *F, const char *argname, int by_ids) {
    check_list_args(L, F, argname, by_ids);
    size_t n_old = lua_istable(L, A_OLDS) ? lua_rawlen(L, A_OLDS) : 0;
    size_t n_cut = lua_istable(L, 2) ? lua_rawlen(L, 2) : 0;
    if (n_cut == 0) n_cut = 1;
    nim_strmap map;
    scratch(L, F, 0, n_cut, NULL, NULL, &map);
    collect_ids(L, F, argname, by_ids, &map);
    lua_createtable(L, (int)(n_old < INT32_MAX ? n_old : 0), 0);
    int out = lua_gettop(L);
    lua_Integer k = 0;
    for (size_t i = 1; i <= n_old; i++) {
        size_t len;
        lua_rawgeti(L, A_OLDS, (lua_Integer)i);
        const char *id = read_session(L, F, "olds", (lua_Integer)i, &len, NULL);
        uint32_t *removed = map.count ? nim_strmap_get(&map, id, len) : NULL;
        if (removed && !*removed) { *removed = 1; lua_pop(L, 1); continue; }
        lua_rawseti(L, out, ++k);
    }
    return 1;
}

/* cutSessions(olds, invalids): without the first session of each id in invalids. */
static int l_cut(lua_State *L) { return cut(L, "cutSessions", "invalids", 0); }

/* cutSessionsByIds(olds, ids): ids is one id or an array of ids. */
static int l_cut_by_ids(lua_State *L) { return cut(L, "cutSessionsByIds", "ids", 1); }

/* findSession(list, id) -> the first session with that id, or nil. */
static int l_find(lua_State *L) {
    static const char *F = "findSession";
    int t = lua_type(L, 1);
    if (t != LUA_TNIL && t != LUA_TTABLE)
        nim_argerror(L, F, "list", "table or nil expected, got %s", luaL_typename(L, 1));
    if (lua_type(L, 2) != LUA_TSTRING)
        nim_argerror(L, F, "id", "string expected, got %s", luaL_typename(L, 2));
    if (t == LUA_TNIL) return 0;
    lua_settop(L, 2);
    lua_pushliteral(L, "id");
    size_t want_len, n = lua_rawlen(L, 1);
    const char *want = lua_tolstring(L, 2, &want_len);
    for (size_t i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, 1, (lua_Integer)i);
        const char *id = read_session(L, F, "list", (lua_Integer)i, &len, NULL);
        if (len == want_len && memcmp(id, want, len) == 0) return 1;
        lua_pop(L, 1);
    }
    return 0;
}

void nim_merge_open(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"mergeSessions", l_merge},
        {"cutSessions", l_cut},
        {"cutSessionsByIds", l_cut_by_ids},
        {"findSession", l_find},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}
