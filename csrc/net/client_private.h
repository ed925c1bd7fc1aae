/* The network client's insides, shared by its files (never included
 * outside csrc/net). Which file does what:
 *
 *   client.c    life cycle: nim_net_new/free, the engine hooks (start,
 *               wait, wake, stop) and the events the client queues
 *   conn.c      the connection: its state machine (net_set_state), the lws
 *               callback, frames in and out, the connect, heartbeat and
 *               reconnect timers
 *   requests.c  requests in flight (ids, deadlines, failures) and the
 *               app's network commands (NIM_NETCMD_*) and their replies
 *   sync.c      login and sync (the sync phase, net_sync_*), live messages
 *               stored in batches, read pointers, receipts, sticky tops
 *   outbox.c    the read-pointer outbox (kv "ack:<sid>")
 *   check.c     the checks of every server frame before it is stored
 *
 * Threads: everything here runs on the engine thread (the lws service
 * thread), except nim_net_new/free and the wake hook (client.c). */
#ifndef NIM_NET_CLIENT_PRIVATE_H
#define NIM_NET_CLIENT_PRIVATE_H
#include "net/client.h"
#include "net/proto.h"
#include "core/alloc.h"
#include "core/jfield.h"
#include <libwebsockets.h>
#include <pthread.h>

/* The connection. Requests from the app need CONN_SYNC or CONN_READY,
 * else they fail at once with Not_Connected. */
typedef enum {
    CONN_IDLE,          /* no link; a reconnect may be scheduled */
    CONN_CONNECTING,    /* TCP and the WebSocket upgrade */
    CONN_LOGIN,         /* the login request in flight */
    CONN_SYNC,          /* login accepted, sync pushes arriving */
    CONN_READY          /* the sync pushes are all in (its phase says if
                           the sync itself is over) */
} conn_state;

/* The login sync: the server sends it in pages, each stored in one
 * transaction and acknowledged (docs/protocol.md "Login and sync"). While
 * SYNC_RUNNING the engine is inside nim_engine_sync_begin/_end. */
typedef enum {
    SYNC_NONE,          /* no sync under way */
    SYNC_RUNNING        /* this login's sync pages are arriving */
} sync_phase;

/* What a request in flight is for. */
typedef enum { RQ_LOGIN, RQ_PING, RQ_MARK, RQ_ACKS, RQ_APP } request_kind;

#define KEY_MSGS      "net.cursor.msgs"
#define KEY_STATE     "net.cursor.state"
#define KEY_ROAMING   "net.cursor.roaming"   /* a cut first sync's resume point (JSON text) */
#define KEY_DEVICE    "net.deviceId"
#define KEY_SERVER    "net.serverId"         /* the server database this store was synced with */
#define MAX_RETRY_STEPS 33          /* reconnect delays: min doubling to max */
#define RECONNECT_FLOOR_MS 10       /* attempts at least this far apart */
#define RETRY_PASS_MS 50            /* a step that ran out of memory: again in */

typedef struct out_frame {
    struct out_frame *next;
    size_t len;
    char *buf;                   /* LWS_PRE headroom, then len bytes */
} out_frame;

typedef struct pending {
    struct pending *next;
    int64_t id;                  /* request id on the wire */
    request_kind kind;
    int cmd;                     /* NIM_NETCMD_* for RQ_APP */
    uint64_t req;                /* engine command req (RQ_APP) */
    int64_t deadline;            /* ms, monotonic */
    cJSON *msg;                  /* sendMsg: the local "sending" message;
                                    RQ_ACKS: the pointers sent */
} pending;

/* An app request held until the sync ends (getHistoryMsgs: a page fetched
 * during the sync could store, as history, a message the sync must count). */
typedef struct held_cmd {
    struct held_cmd *next;
    int cmd;
    uint64_t req;
    cJSON *args;
} held_cmd;

/* One server of the list (getInstance's server = {...}). */
typedef struct {
    char *url, *host, *path;
    int port, tls;
} net_server;

struct nim_net {
    /* config (immutable after new) */
    net_server servers[NIM_NET_MAX_SERVERS];
    int nservers, any_tls;
    char *account, *token, *device;
    char *ca_file;               /* wss: trust only these CAs; NULL: the system's */
    char tls_error[200];         /* why the server's certificate was refused, until reported */
    int local;
    int need_reconnect, sync_unread, sync_top;
    unsigned want;
    int req_timeout, heartbeat, sync_timeout;
    int64_t reconnect_not_before;  /* monotonic ms: a throttled login waits until then... */
    int throttled_by;              /* ...on the server (index) that throttled it */
    uint32_t retry_steps[MAX_RETRY_STEPS];
    lws_retry_bo_t retry;        /* the reconnect backoff (over retry_steps) */

    nim_engine *e;
    pthread_mutex_t ctx_lock;    /* ctx against wake from the owner thread */
    struct lws_context *ctx;

    /* engine thread only from here */
    lws_sorted_usec_list_t sul_reconnect, sul_connect, sul_heartbeat, sul_deadline, sul_wait, sul_retry,
                           sul_sync;
    struct lws *wsi;
    conn_state state;            /* written by net_set_state only */
    sync_phase sync;             /* written by sync.c's set_sync only */
    int user_down;               /* disconnect asked, kicked or gave up: no reconnect */
    int stopping;                /* destroy: no more callbacks */
    int ever_synced;
    int retries;                 /* reconnect rounds since the last sync */
    /* the server of this attempt (servers[cur]; net_use_server is the one
     * writer), and where the present round of the list began */
    int cur, round_start;
    int app_closed;              /* the link was closed by disconnect(): connect() stays on cur */
    const char *url, *host, *path;
    int port, tls;
    int connect_reported;        /* this outage's first failed attempt went to onerror */
    int64_t last_rx, last_tx, ping_at;
    int close_code;              /* from the peer's close frame, else 0 */
    char close_reason[128];
    int drop_code;               /* our reason to drop (heartbeat, timeout) */
    char drop_reason[192];

    out_frame *out_head, *out_tail;
    char *rx;
    size_t rx_len, rx_cap;
    pending *pend, *pend_tail;   /* in flight, oldest first (replies come in order) */
    held_cmd *held, *held_tail;  /* waiting for the sync to end, oldest first */
    int64_t next_id;
    uint64_t idc_counter;
    char idc_prefix[24];

    int64_t cur_msgs, cur_state; /* persisted cursors (as loaded) */
    cJSON *live;                 /* live messages received this pass, stored together */
    int live_count;
    /* markMsgsReceived {upTo}: what this device has stored, told to the
     * server one request at a time (the newest wins) */
    int64_t recv_want;           /* the largest upTo to tell */
    int64_t recv_told;           /* the largest upTo the server answered 200 */
    int64_t recv_inflight;       /* the request's upTo while one is in flight, else 0 */
    int64_t sync_max_id;         /* the largest idServer this sync brought */
    int sync_idle;               /* sync frames in a row that stored nothing new */
    cJSON *sync_tops;            /* the sync's stickTopSessions items so far (NULL:
                                    none came), applied whole at syncDone */
    int acks_dirty;              /* the pointer outbox has something not yet
                                    sent on this link */
};

/* client.c: time and the events the client queues. name and what are
 * static strings; the callbacks take arg. */
int64_t net_mono_ms(void);
int64_t net_wall_ms(void);
void net_callback(nim_net *n, const char *name, cJSON *arg);
void net_callback_msg(nim_net *n, cJSON *msg);        /* onmsg */
void net_report_error(nim_net *n, const char *code, int numcode, const char *msg,
                      const char *what);

/* conn.c */
/* Schedules sul to run cb in ms (<= 0: at once); needs the context. */
void net_schedule_ms(nim_net *n, lws_sorted_usec_list_t *sul, sul_cb_t cb, int64_t ms);
void net_set_state(nim_net *n, conn_state to);
void net_connect(nim_net *n);            /* from CONN_IDLE */
void net_use_server(nim_net *n, int i);  /* client.c: servers[i] is the one to try */
/* Drops the link from our side with this close code and reason. */
void net_drop(nim_net *n, int code, const char *reason);
/* The link is gone: tell the app, reconnect if retry. */
void net_connection_lost(nim_net *n, int code, const char *reason, int retry);
void net_conn_stop(nim_net *n);          /* hook_stop: cancels the timers */
/* Ends the current service pass within ms (at least 1), so the engine
 * loop runs again: something it or hook_wait retries is due. */
void net_end_pass_in(nim_net *n, int ms);
/* A timer that only ends the service pass it fires in. */
void net_pass_over(lws_sorted_usec_list_t *sul);
extern const struct lws_protocols net_protocols[];

/* requests.c. net_request sends and remembers a request; takes data and
 * msg; NULL when it could not be sent. */
pending *net_request(nim_net *n, request_kind kind, int cmd, uint64_t req, nim_wire_cmd wire,
                     cJSON *data, cJSON *msg);
void net_on_response(nim_net *n, nim_frame *f);
void net_fail_all(nim_net *n, const char *code, const char *why);   /* the link is gone */
void net_free_requests(nim_net *n);      /* at stop: nothing is answered */
void net_out_free(nim_net *n);           /* the frames not yet written */
void net_command(nim_net *n, nim_cmd *c);
void net_release_held(nim_net *n);       /* the sync ended: send what waited */

/* sync.c */
void net_send_login(nim_net *n);         /* link up: the login, then CONN_LOGIN */
void net_on_login_reply(nim_net *n, const nim_frame *f);
void net_on_push(nim_net *n, nim_frame *f);
/* Tells the server this device has stored every message of its up to id
 * (once committed): markMsgsReceived, one in flight, the newest wins. */
void net_mark_received(nim_net *n, int64_t id);
void net_on_mark_reply(nim_net *n, int code);   /* answered, failed or timed out */
/* The link ended: the sync under way ends without being reported. */
void net_sync_link_lost(nim_net *n);
void net_flush_live(nim_net *n);         /* end of a pass, of the link, stop */
cJSON *net_tops_for_app(const cJSON *list);

/* check.c: each returns 1 when what the frame would store keeps the rules,
 * else 0 with *why set (valid until the next check on this thread). */
typedef enum { NET_STATE_POINTERS, NET_STATE_RECEIPTS, NET_STATE_TOPS } net_state_kind;
/* A message, fully: proto.c's checks, and a p2p one is to or from me. */
int net_check_msg(const nim_net *n, const cJSON *m, int64_t *id, const char **why);
int net_check_msgs(const nim_net *n, const cJSON *arr, int64_t *max_id, const char **why);
/* One readPointers / msgReceipts / sticky-top item, or an array of them. */
int net_check_state(const cJSON *item, net_state_kind kind, const char **why);
int net_check_states(const cJSON *arr, net_state_kind kind, const char **why);
/* A roaming page's resume point {bound, session, before, sent}: 1 with
 * *bound, or 0 and *why. */
int net_check_resume(const cJSON *ro, int64_t *bound, const char **why);
/* Refuses the frame: onerror, then the link is dropped (sync again). */
void net_refuse(nim_net *n, const char *why);
#define SYNC_MAX_IDLE_FRAMES 16     /* a sync that stores nothing new this long is cut */

/* outbox.c */
int net_acked_hook(nim_engine *e, void *ud, const char *sid, int64_t ack);
void net_flush_acks(nim_net *n);
void net_acks_answered(nim_net *n, const pending *p, int code);

#endif
