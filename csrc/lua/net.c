/* The binding's side of the network client (csrc/net/client.h): turns
 * getInstance's network options into a nim_net and its engine hooks.
 * Lua thread only. */
#include "lua/private.h"
#include "net/client.h"
#include <string.h>

/* The integer field k of the table at idx, or dflt when absent; raises on a
 * value that is not a non-negative integer. */
static int opt_ms(lua_State *L, int idx, const char *k, int dflt) {
    int t = lua_getfield(L, idx, k);
    int v = dflt;
    if (t != LUA_TNIL) {
        lua_Integer i = 0;
        if (!nim_lua_integer(L, -1, &i) || i < 0 || i > 86400000)
            nim_argerror(L, "getInstance", k, "milliseconds (integer >= 0) expected");
        v = (int)i;
    }
    lua_pop(L, 1);
    return v;
}

static int opt_flag(lua_State *L, int idx, const char *k, int dflt) {
    int t = lua_getfield(L, idx, k);
    int v = t == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int has_cb(lua_State *L, int cbs, const char *k) {
    int t = lua_getfield(L, cbs, k);
    lua_pop(L, 1);
    return t != LUA_TNIL;
}

void *nim_lua_net_new(lua_State *L, int net, int cbs, const char *account,
                      struct nim_engine_hooks *hooks, unsigned *flags) {
    nim_net_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.account = account;
    cfg.need_reconnect = 1;
    const char *servers[NIM_NET_MAX_SERVERS];
    if (lua_istable(L, net)) {
        lua_getfield(L, net, "servers");     /* a list (lua/nim/options.lua checked it) */
        lua_getfield(L, net, "token");
        lua_getfield(L, net, "deviceId");
        lua_getfield(L, net, "tlsCAFile");
        int n = lua_istable(L, -4) ? (int)lua_rawlen(L, -4) : 0;
        if (n > NIM_NET_MAX_SERVERS) nim_argerror(L, "getInstance", "server", "at most %d servers", NIM_NET_MAX_SERVERS);
        for (int i = 0; i < n; i++) {        /* the strings stay alive in the list */
            lua_rawgeti(L, -4, i + 1);
            servers[i] = lua_tostring(L, -1);
            lua_pop(L, 1);
            if (!servers[i]) nim_argerror(L, "getInstance", "server", "a list of URLs expected");
        }
        cfg.servers = servers;
        cfg.nservers = n;
        cfg.token = lua_tostring(L, -3);
        cfg.device_id = lua_tostring(L, -2);
        cfg.tls_ca_file = lua_tostring(L, -1);
        cfg.need_reconnect = opt_flag(L, net, "needReconnect", 1);
        cfg.sync_unread = opt_flag(L, net, "syncSessionUnread", 0);
        cfg.sync_top = opt_flag(L, net, "syncStickTopSessions", 0);
        cfg.request_timeout_ms = opt_ms(L, net, "requestTimeout", 0);
        cfg.sync_timeout_ms = opt_ms(L, net, "syncTimeout", 0);
        cfg.heartbeat_ms = opt_ms(L, net, "heartbeatInterval", 0);
        cfg.reconnect_min_ms = opt_ms(L, net, "reconnectDelay", 0);
        cfg.reconnect_max_ms = opt_ms(L, net, "maxReconnectDelay", 0);
    }
    if (has_cb(L, cbs, "onmsg")) cfg.want |= NIM_NET_WANT_MSG;
    if (has_cb(L, cbs, "onroamingmsgs")) cfg.want |= NIM_NET_WANT_ROAMING;
    if (has_cb(L, cbs, "onofflinemsgs")) cfg.want |= NIM_NET_WANT_OFFLINE;
    if (has_cb(L, cbs, "onStickTopSessions")) cfg.want |= NIM_NET_WANT_TOPS;
    if (has_cb(L, cbs, "onupdatesession") || has_cb(L, cbs, "onupdatesessions"))
        cfg.want |= NIM_NET_WANT_UPDATES;
    const char *err = NULL;
    nim_net *n = nim_net_new(&cfg, &err);     /* copies every string */
    if (lua_istable(L, net)) lua_pop(L, 4);
    if (!n) {
        if (err && strncmp(err, "server:", 7) == 0)
            nim_argerror(L, "getInstance", "server", "%s", err + 8);
        luaL_error(L, "getInstance: %s", err ? err : "out of memory");
    }
    nim_net_hooks(n, hooks);
    if (cfg.nservers > 0) *flags |= NIM_ENGINE_DEFER_SYNC;
    return n;
}

void nim_lua_net_free(void *net) {
    nim_net_free(net);
}

