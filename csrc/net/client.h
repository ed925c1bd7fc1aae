/* The SDK's network client: nim_engine_hooks that connect the engine thread
 * of one instance to nim-server over a WebSocket (libwebsockets), log in,
 * sync (docs/protocol.md "Login and sync") and keep the connection alive.
 *
 * Lua-free. Threads: nim_net_new/nim_net_free and the wake hook run on the
 * owner thread; everything else (the lws context, every lws callback, the
 * timers, the other hooks) runs on the engine thread, which is the lws
 * service thread. Only lws_cancel_service() crosses, under ctx_lock.
 *
 * What it does with the engine:
 *   - messages from the sync and live `msg` pushes go through
 *     nim_engine_ingest, with the sync cursor they advance in the same
 *     transaction; offline messages are marked received only after that
 *     transaction committed;
 *   - read pointers, receipts and sticky top go through nim_engine_apply_*;
 *   - the login sync runs between nim_engine_sync_begin and _end, so
 *     onsessions/onsyncdone fire once after it (NIM_ENGINE_DEFER_SYNC);
 *   - commands >= NIM_CMD_EXT (NIM_NETCMD_*, net/cmdtable.h) become requests;
 *   - callbacks that are not the engine's (onconnect, onmsg, ...) are
 *     NIM_EV_CALLBACK / NIM_EV_MSG events, errors NIM_EV_ERROR. */
#ifndef NIM_NET_CLIENT_H
#define NIM_NET_CLIENT_H
#include "core/engine_net.h"
#include "net/cmdtable.h"

/* Events of the network layer: ev->callback names the callback, data is
 * its one argument (or none). Errors are NIM_EV_ERROR with ev->what. */
enum {
    NIM_EV_CALLBACK = NIM_EV_EXT,      /* any callback but onmsg */
    NIM_EV_MSG                         /* onmsg: data = the message */
};

/* Error codes besides the engine's. */
#define NIM_ERR_NOT_CONNECTED "Not_Connected"
#define NIM_ERR_TIMEOUT       "Error_Timeout"
#define NIM_ERR_TLS           "TLS_Error"     /* onerror: a wss:// handshake failed */
#define NIM_ERR_CONNECT       "Connect_Error" /* onerror: the server cannot be reached (first failure) */
#define NIM_ERR_OTHER_SERVER  "Other_Server"  /* onerror: the store was synced with another server's database */

/* Which optional callbacks the app set (events not wanted are not built). */
enum {
    NIM_NET_WANT_MSG      = 1,   /* onmsg */
    NIM_NET_WANT_ROAMING  = 2,   /* onroamingmsgs */
    NIM_NET_WANT_OFFLINE  = 4,   /* onofflinemsgs */
    NIM_NET_WANT_TOPS     = 8,   /* onStickTopSessions */
    NIM_NET_WANT_UPDATES  = 16   /* onupdatesession(s): the "sending" update */
};

#define NIM_NET_MAX_SERVERS 16

typedef struct nim_net_config {
    const char *const *servers;  /* "ws://host:port[/path]" or "wss://..." (TLS),
                                    tried in turn: each reconnect after a
                                    failure goes to the next one */
    int nservers;                /* 0: local-only (every network command
                                    answers Not_Connected); at most
                                    NIM_NET_MAX_SERVERS */
    const char *tls_ca_file;     /* wss: the CA certificates (PEM) to trust
                                    instead of the system's; NULL: the system's */
    const char *account;
    const char *token;
    const char *device_id;       /* NULL: a random one, persisted in the store */
    int need_reconnect;
    int sync_unread;             /* syncSessionUnread */
    int sync_top;                /* syncStickTopSessions */
    unsigned want;               /* NIM_NET_WANT_* */
    int request_timeout_ms;      /* 0: 10000 */
    int sync_timeout_ms;         /* 0: 120000; a login sync that stores nothing new so long is cut */
    int heartbeat_ms;            /* 0: 30000; no reply for twice this = dead peer */
    int reconnect_min_ms;        /* 0: 250; doubles per attempt */
    int reconnect_max_ms;        /* 0: 8000 */
} nim_net_config;

typedef struct nim_net nim_net;

/* Owner thread. Copies cfg. NULL on allocation failure or a server URL
 * that is not ws[s]://host[:port][/path] (*err then names the reason). */
nim_net *nim_net_new(const nim_net_config *cfg, const char **err);
/* Owner thread. The hooks to put in nim_engine_config (ud = n). */
void nim_net_hooks(nim_net *n, nim_engine_hooks *h);
/* Owner thread, after the engine thread has ended (nim_engine_free). */
void nim_net_free(nim_net *n);

#endif
