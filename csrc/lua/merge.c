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
#include "core/alloc.h"
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

/* Lua 5.4 interns short strings (equal content, same address); measured once
 * at load time so the id index can hash and compare them by address. */
static size_t interned_max = 0;

static void probe_interning(lua_State *L) {
    char a[64], b[64];
    size_t len = 40;                                  /* LUAI_MAXSHORTLEN in 5.4 */
    memset(a, 'q', sizeof a); memset(b, 'q', sizeof b);
    lua_pushlstring(L, a, len);
    lua_pushlstring(L, b, len);
    lua_pushlstring(L, a, 1);
    lua_pushlstring(L, b, 1);
    if (lua_tostring(L, -4) == lua_tostring(L, -3) && lua_tostring(L, -2) == lua_tostring(L, -1))
        interned_max = len;
    lua_pop(L, 4);
}

/* Scratch memory is malloc'd and cached between calls: a fresh Lua
 * allocation per call would add megabytes of GC debt to every large merge,
 * and the collector's work grows with the whole heap. The cache is upvalue 1
 * of these functions. Each call moves the buffer into a small holder
 * userdata of its own (at S_SCRATCH) and gives it back at the end, so an
 * error half way only drops the buffer (the holder's __gc frees it) and a
 * call made from a __gc finalizer during an allocation simply gets another
 * buffer. */
typedef struct { char *buf; size_t size; } scratch_buf;

#define SCRATCH_MT "nim.merge.scratch"
#define SCRATCH_KEEP_MAX (16u << 20)    /* buffers above 16 MiB are not kept */

static int scratch_gc(lua_State *L) {
    scratch_buf *sb = lua_touserdata(L, 1);
    nim_free(sb->buf);
    sb->buf = NULL;
    sb->size = 0;
    return 0;
}

typedef struct { const char *id; size_t len; uint32_t *slot; } news_id;

/* Pushes the holder and returns memory for n entries, 2n sort keys, n_ids
 * id records and an index for n_ids ids. Raises on overflow / no memory. */
static void scratch(lua_State *L, const char *fname, size_t n, size_t n_ids,
                    entry **ents, nim_sortkey **keys, news_id **ids, nim_strmap *map) {
    size_t mb = nim_strmap_bytes(n_ids);
    if (n > UINT32_MAX / 4 || n_ids > UINT32_MAX / 4 || mb == 0)
        luaL_error(L, "%s: lists too large", fname);
    size_t eb = align8(n * sizeof(entry)), kb = align8(2 * n * sizeof(nim_sortkey));
    size_t ib = align8(n_ids * sizeof(news_id)), total = eb + kb + ib + mb;
    scratch_buf *cache = lua_touserdata(L, lua_upvalueindex(1));
    scratch_buf *h = lua_newuserdatauv(L, sizeof *h, 0);
    *h = *cache;
    cache->buf = NULL;
    cache->size = 0;
    luaL_setmetatable(L, SCRATCH_MT);
    if (h->size < total) {
        char *p = nim_realloc(h->buf, total);
        if (!p) luaL_error(L, "%s: out of memory", fname);
        h->buf = p;
        h->size = total;
    }
    char *p = h->buf;
    if (ents) *ents = (entry *)p;
    if (keys) *keys = (nim_sortkey *)(p + eb);
    if (ids) *ids = (news_id *)(p + eb + kb);
    nim_strmap_init(map, p + eb + kb + ib, n_ids);
    map->interned_max = interned_max;
}

/* Gives the buffer held at S_SCRATCH back to the cache. */
static void scratch_done(lua_State *L) {
    scratch_buf *cache = lua_touserdata(L, lua_upvalueindex(1));
    scratch_buf *h = lua_touserdata(L, S_SCRATCH);
    if (!cache->buf && h->size <= SCRATCH_KEEP_MAX) {
        *cache = *h;
        h->buf = NULL;
        h->size = 0;
    }
}

static const char *read_session_at(lua_State *L, int t, int type, const char *fname,
                                   const char *argname, lua_Integer elem, size_t *len,
                                   nim_sortkey *key) {
    if (type != LUA_TTABLE)
        nim_argerror(L, fname, argname, "element %d: session table expected, got %s",
                     (int)elem, luaL_typename(L, t));
    lua_pushvalue(L, S_IDKEY);       /* raw: the id string must live in the table */
    if (lua_rawget(L, t) != LUA_TSTRING)
        nim_argerror(L, fname, argname, "element %d: string 'id' expected, got %s",
                     (int)elem, luaL_typename(L, -1));
    const char *id = lua_tolstring(L, -1, len);
    if (*len > NIM_STRMAP_MAX_KEY)
        nim_argerror(L, fname, argname, "element %d: 'id' longer than 4 GiB", (int)elem);
    lua_settop(L, t);
    if (key) {
        lua_pushvalue(L, S_TIMEKEY);
        int ty = lua_rawget(L, t);
        key->has_time = key->is_int = 0;
        key->ikey = 0; key->dkey = 0;
        if (ty == LUA_TNUMBER) {
            lua_Integer iv;
            if (nim_lua_integer(L, -1, &iv)) {
                key->ikey = iv;
                key->dkey = (double)iv;
                key->is_int = 1;
            } else {
                key->dkey = lua_tonumber(L, -1);
                if (isnan(key->dkey))
                    nim_argerror(L, fname, argname, "element %d: 'updateTime' is NaN", (int)elem);
            }
            key->has_time = 1;
        } else if (ty != LUA_TNIL) {
            nim_argerror(L, fname, argname, "element %d: number 'updateTime' expected, got %s",
                         (int)elem, luaL_typename(L, -1));
        }
        lua_settop(L, t);
    }
    return id;
}

static const char *read_session(lua_State *L, const char *fname, const char *argname,
                                lua_Integer elem, size_t *len, nim_sortkey *key) {
    int t = lua_gettop(L);
    return read_session_at(L, t, lua_type(L, t), fname, argname, elem, len, key);
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

#define UNSEEN UINT32_MAX

/* mergeSessions(olds, news) -> new array; see REFERENCE.md.
 *
 * The id index holds the news ids only (usually few), so merging one update
 * into a long list costs one small lookup per old session. Untouched olds
 * ("run A") are written to the result as they are scanned, after room for
 * the nb changed or appended sessions ("run B"). When A is sorted and all of
 * B sorts before it -- an app merging a fresh update into the list it keeps
 * -- B fills the front and the work is done in that one pass. Otherwise the
 * order is computed on extracted keys (a linear merge when A is sorted, a
 * merge sort when not) and the result rewritten. */
static int l_merge(lua_State *L) {
    static const char *F = "mergeSessions";
    check_list_args(L, F, "news", 0);
    size_t n_old = lua_istable(L, A_OLDS) ? lua_rawlen(L, A_OLDS) : 0;
    int single = is_single_session(L, A_NEWS);
    size_t n_new = single ? 1 : lua_rawlen(L, A_NEWS);
    size_t cap = n_old + n_new;
    entry *ents; nim_sortkey *keys; news_id *nids; nim_strmap map;
    scratch(L, F, cap, n_new, &ents, &keys, &nids, &map);  /* S_SCRATCH */
    lua_createtable(L, (int)(n_old && n_new < INT32_MAX ? n_new : 0), 0);   /* S_MERGED */
    nim_sortkey *tmp = keys + cap, *nkeys = tmp;           /* news keys wait in tmp */
    size_t n = 0, n_merged = 0, na = 0;
    int existed;

    for (size_t j = 1; j <= n_new; j++) {                  /* index the news ids */
        if (single) lua_pushvalue(L, A_NEWS);
        else lua_rawgeti(L, A_NEWS, (lua_Integer)j);
        news_id *ni = &nids[j - 1];
        ni->id = read_session(L, F, "news", (lua_Integer)j, &ni->len, &nkeys[j - 1]);
        ni->slot = nim_strmap_put(&map, ni->id, ni->len, UNSEEN, &existed);
        lua_pop(L, 1);
    }
    /* With no olds the JS SDK returns news sorted as given, duplicates kept
     * (recorded in the vectors); with olds, duplicates merge. Either way B
     * has one entry per distinct id in news. */
    size_t nb = n_old ? map.count : n_new;
    lua_createtable(L, (int)(cap < INT32_MAX ? cap : 0), 0);   /* S_OUT */
    const int S_OUT = S_MERGED + 1, S_ELEM = S_OUT + 1;

    for (size_t i = 1; i <= n_old; i++, n++) {             /* olds, in order */
        size_t len;
        int ty = lua_rawgeti(L, A_OLDS, (lua_Integer)i);
        nim_sortkey *k = &keys[n];
        const char *id = read_session_at(L, S_ELEM, ty, F, "olds", (lua_Integer)i, &len, k);
        k->pos = (uint32_t)n;
        ents[n] = (entry){ .idx = (uint32_t)i, .src = SRC_OLD, .changed = 0 };
        if (n_new) {
            uint32_t *slot = nim_strmap_get(&map, id, len);
            if (slot && *slot == UNSEEN) {                 /* the first with that id */
                *slot = (uint32_t)n;
                ents[n].changed = 1;
                lua_pop(L, 1);
                continue;
            }
        }
        lua_rawseti(L, S_OUT, (lua_Integer)(nb + ++na));
    }

    for (size_t j = 1; j <= n_new; j++) {
        nim_sortkey k = nkeys[j - 1];
        uint32_t *slot = nids[j - 1].slot;
        if (n_old == 0 || *slot == UNSEEN) {               /* unknown id: append */
            k.pos = (uint32_t)n;
            keys[n] = k;
            *slot = (uint32_t)n;
            ents[n++] = (entry){ .idx = (uint32_t)j, .src = SRC_NEW, .changed = 1 };
            continue;
        }
        if (single) lua_pushvalue(L, A_NEWS);
        else lua_rawgeti(L, A_NEWS, (lua_Integer)j);
        int t = lua_gettop(L);
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

    /* Collect B's keys (in tmp: the news keys there are used up) and A's
     * keys (compacted at the front of keys). */
    nim_sortkey *b = tmp;
    size_t nbk = 0, nak = 0;
    for (size_t e = 0; e < n; e++) {
        if (ents[e].changed) b[nbk++] = keys[e];
        else keys[nak++] = keys[e];
    }
    if (nbk != nb || nak != na) return luaL_error(L, "%s: internal error (run sizes)", F);
    /* sort B using the free tail of keys (cap - na >= nb) as scratch */
    nim_sortkeys_sort(b, nb, keys + na);
    if (nim_sortkeys_sorted(keys, na) &&
        (na == 0 || nb == 0 || nim_sortkey_cmp(&b[nb - 1], &keys[0]) < 0)) {
        for (size_t i = 0; i < nb; i++) {                  /* B fills the front */
            push_entry(L, &ents[b[i].pos], single);
            lua_rawseti(L, S_OUT, (lua_Integer)(i + 1));
        }
        scratch_done(L);
        return 1;
    }
    nim_sortkey *sorted;
    if (nim_sortkeys_sorted(keys, na)) {
        memmove(keys + cap - nb, b, nb * sizeof *b);       /* B to the end of keys */
        nim_sortkeys_merge(keys, na, keys + cap - nb, nb, tmp);
        sorted = tmp;
    } else {
        memcpy(keys + na, b, nb * sizeof *b);
        nim_sortkeys_sort(keys, n, tmp);
        sorted = keys;
    }
    for (size_t i = 0; i < n; i++) {
        push_entry(L, &ents[sorted[i].pos], single);
        lua_rawseti(L, S_OUT, (lua_Integer)(i + 1));
    }
    scratch_done(L);
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
                nim_argerror(L, F, argname, "element %d: string expected, got %s",
                             (int)j, luaL_typename(L, -1));
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
    scratch(L, F, 0, n_cut, NULL, NULL, NULL, &map);
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
    scratch_done(L);
    lua_settop(L, out);
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
    luaL_newmetatable(L, SCRATCH_MT);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    scratch_buf *cache = lua_newuserdatauv(L, sizeof *cache, 0);
    cache->buf = NULL;
    cache->size = 0;
    luaL_setmetatable(L, SCRATCH_MT);
    luaL_setfuncs(L, fns, 1);
    probe_interning(L);
}
