/* nim:poll's dispatch: events from the engine become Lua values and
 * callback calls (see instance.h). Lua thread only. Each callback runs
 * under pcall with a traceback; an error goes to onerror, else to stderr,
 * and dispatch goes on. Session updates are coalesced per poll and
 * delivered before any other kind of event. */
#include "lua/instance.h"
#include "net/client.h"
#include "core/alloc.h"
#include <time.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------- errors */

int nim_lua_error_tostring(lua_State *L) {
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
void nim_lua_push_error(lua_State *L, const char *code, double numcode, const char *message,
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
            nim_lua_push_error(L, "Callback_Error", 0, msg, name);
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
void nim_lua_discard(l_instance *in, nim_event *ev) {
    if (!ev) return;
    ev->next = NULL;
    if (in->trash_tail) in->trash_tail->next = ev; else in->trash = ev;
    in->trash_tail = ev;
    in->ntrash++;
}

/* End of a poll: the dispatched events go back to the engine thread, which
 * allocated their trees (freed here, after the engine is gone). */
void nim_lua_empty_trash(l_instance *in) {
    if (!in->trash) return;
    if (in->eng) nim_engine_recycle(in->eng, in->trash, in->trash_tail, in->ntrash);
    else nim_event_free(in->trash);
    in->trash = in->trash_tail = NULL;
    in->ntrash = 0;
}

void nim_lua_free_upd(l_instance *in) {
    for (size_t i = 0; i < in->nupd; i++) nim_lua_discard(in, in->upd[i]);
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
        nim_lua_free_upd(in);
        call(L, 1, "onupdatesessions");
        ran = 1;
    } else if (get_cb(L, "onupdatesession")) {
        int fn = lua_gettop(L);
        for (size_t i = 0; i < in->nupd; i++) {
            if (!in->upd[i]) continue;
            lua_pushvalue(L, fn);
            nim_lua_pushjson(L, in->upd[i]->data);
            nim_lua_discard(in, in->upd[i]);
            in->upd[i] = NULL;
            call(L, 1, "onupdatesession");
            ran++;
        }
        lua_pop(L, 1);
        nim_lua_free_upd(in);
    } else {
        nim_lua_free_upd(in);
    }
    lua_newtable(L);
    lua_replace(L, idmap);
    return ran;
}

/* Keeps ev (an update) for the flush, replacing an older one for the same id. */
static void add_update(lua_State *L, l_instance *in, nim_event *ev, int idmap) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev->data, "id");
    if (!cJSON_IsString(id)) { nim_lua_discard(in, ev); return; }
    if (in->nupd == in->capupd) {
        size_t nc = in->capupd ? in->capupd * 2 : 64;
        nim_event **nu = nim_realloc(in->upd, nc * sizeof *nu);
        if (!nu) { nim_lua_discard(in, ev); luaL_error(L, "nim: out of memory"); }
        in->upd = nu;
        in->capupd = nc;
    }
    if (lua_getfield(L, idmap, id->valuestring) == LUA_TNUMBER) {
        lua_Integer old = lua_tointeger(L, -1);
        nim_lua_discard(in, in->upd[old]);
        in->upd[old] = NULL;
    }
    lua_pop(L, 1);
    in->upd[in->nupd] = ev;
    lua_pushinteger(L, (lua_Integer)in->nupd++);
    lua_setfield(L, idmap, id->valuestring);
}

void nim_lua_close_finished(l_instance *in) {
    if (in->eng) {
        nim_engine_free(in->eng);   /* the thread has ended: a quick join */
        in->eng = NULL;
        nim_lua_net_free(in->net);
        in->net = NULL;
    }
    in->state = ST_CLOSED;
}

/* Runs the dones queued for the end of the close. */
int nim_lua_run_closedones(lua_State *L) {
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
    if (in->close_req && ev->req == in->close_req) nim_lua_close_finished(in);
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
            nim_lua_push_error(L, ev->code, ev->numcode, ev->message, api);
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
    if (in->state == ST_CLOSED) ran += nim_lua_run_closedones(L);
    return ran;
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

/* Dispatches pending events within the budget; returns callbacks run. */
int nim_lua_dispatch(lua_State *L, l_instance *in) {
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
                    nim_lua_push_error(L, ev->code, ev->numcode, ev->message, ev->what ? ev->what : "db");
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
            nim_lua_discard(in, ev);
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

