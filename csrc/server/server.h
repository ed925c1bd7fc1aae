/* nim-server internals shared by its files. Two threads run the server:
 * the loop thread (ws.c: lws, sockets, frames in and out) and the request
 * thread (reqthread.c: every handler, the sync, every storage call, the
 * credentials thread's finishers). They share only the links (link.h),
 * under link.c's lock; everything else here is the request thread's, and
 * not locked. */
#ifndef NIM_SERVER_H
#define NIM_SERVER_H
#include <stdint.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "net/proto.h"
#include "server/db.h"
#include "server/transport.h"

struct srv_link;   /* a connection as both threads see it (link.h) */

/* Limits a client cannot push the server past. */
#define SRV_MAX_QUEUED_BYTES   (16u * 1024 * 1024) /* unsent output per connection */
#define SRV_MAX_OUTPUT_MB      256  /* --max-output-mb: unsent output of all connections */
#define SRV_MAX_DEVICES        100  /* --max-devices: per account, among those seen in 30 days */
#define SRV_DEVICE_DAYS        30
#define SRV_MAX_STORAGE_MB     1024 /* --max-storage-mb: messages an account has sent */
#define SRV_MAX_BAD_FRAMES     16   /* malformed frames per connection, then close 1008 */
#define SRV_MAX_AUTH_FAILURES  5    /* failed logins per connection, then close 1008 */
#define SRV_LOGIN_TIMEOUT_S    30   /* a connection must log in within this */
#define SRV_POINTER_SKEW_MS    300000 /* a read pointer may pass its session's latest message time by this */
/* Per-account caps (419 beyond them; defaults of --max-state), so the state
 * a login sync sends stays bounded: sessions with a read pointer, peers a reader sent receipts to,
 * sticky-top sessions (the list is one getStickTop reply: 100 of the
 * largest, 1 KiB of topCustom escaped up to 6 KiB, stay within the frame). */
#define SRV_MAX_POINTERS       100000
#define SRV_MAX_RECEIPTS       100000
#define SRV_MAX_TOPS           100
#define SRV_BATCH_BYTES        (256 * 1024) /* sync pushes are split near this size */
#define SRV_WRITES_PER_CALLBACK 64  /* frames written per WRITEABLE, at most */
#define SRV_GROUP_MAX          256  /* sendMsg requests sharing one commit, then flush */
/* The login sync (sync.c) goes out in pages, one per WRITEABLE while less
 * than SRV_SYNC_LOW_WATER waits unsent, so a big backlog never holds the
 * loop or fills the queue, whatever the history's size. */
#define SRV_SYNC_PAGE_ROWS     500
#define SRV_SYNC_PAGE_BYTES    SRV_BATCH_BYTES
#define SRV_SYNC_LOW_WATER     (512u * 1024)
#define SRV_SYNC_QUERIES       256  /* statements per page at most (empty sessions) */
#define SRV_ROAMING_PER_SESSION 100 /* a device's first sync: the latest of each session */
#define SRV_SYNC_STATE_ROWS    2000 /* read pointers or receipts per sync page */
/* A getHistoryMsgs reply holds messages up to this many bytes (and always
 * one): with the largest message it stays within NIM_PROTO_MAX_FRAME. */
#define SRV_HISTORY_BYTES      SRV_BATCH_BYTES

typedef struct srv_out {
    struct srv_out *next;
    size_t          len;
    unsigned char   buf[];  /* SRV_OUT_PRE headroom, then len bytes of JSON */
} srv_out;

/* Where a connection's login sync stands (sync.c). The stages run in this
 * order, ROAMING only for a device that never synced (cursor 0). */
typedef enum {
    SRV_SYNC_OFF,       /* no sync under way: the connection gets live pushes */
    SRV_SYNC_OFFLINE,   /* undelivered messages with id <= bound */
    SRV_SYNC_ROAMING,   /* the latest of each session, delivered, id <= bound */
    SRV_SYNC_AFTER      /* every message with id > bound, then pages of state; syncDone */
} srv_sync_stage;

typedef struct {
    srv_sync_stage stage;
    int64_t bound;       /* the client's cursor, or the newest id at login */
    int64_t key;         /* OFFLINE, AFTER: the last id sent */
    int64_t cur_msgs, cur_state;           /* the client's cursors */
    char    session[NIM_PROTO_MAX_SESSION_ID + 1]; /* ROAMING: "" before the first */
    int64_t before;      /* ROAMING: the session's next id is below this */
    int     sent;        /* ROAMING: messages of this session sent */
    int64_t ptr_key, rcpt_key;             /* AFTER: the last ver of each sent */
} srv_sync;

/* A request that arrived while the connection's login was being derived:
 * handled, in order, once the login is answered. */
typedef struct srv_held {
    struct srv_held *next;
    size_t           len;
    char             buf[];
} srv_held;

/* One WebSocket connection, as the request thread sees it: made zeroed
 * with its link (srv_link_open), freed once the request thread has
 * handled its close. */
typedef struct srv_conn {
    struct srv_link *link;                 /* the way to its socket (srv.io) */
    uint64_t         serial;               /* unique per connection: a finished login finds it */
    char             addr[64];             /* the peer's address (login throttling) */
    int              auth_pending;         /* a login is with the credentials thread */
    struct srv_auth_job *login_job;        /* that login, while pending */
    srv_held        *held, *held_tail;     /* its requests meanwhile (reading is held) */
    struct srv_conn *prev, *next;          /* every open connection */
    int              logged_in;
    char             account[NIM_PROTO_MAX_ACCOUNT + 1];
    char             device[NIM_PROTO_MAX_DEVICE + 1];
    unsigned         bad_frames, auth_failures;
    srv_sync         sync;
} srv_conn;

/* Logged in and synced: live pushes go to it (during its sync the pages
 * pick up what is stored meanwhile, and the sync's end sends the state). */
static inline int srv_conn_live(const srv_conn *c) {
    return c->logged_in && c->sync.stage == SRV_SYNC_OFF;
}

typedef struct {
    srv_db             *db;
    const srv_transport *io;            /* the way out: link.c's (transport.h) */
    srv_conn           *conns;
    int                 open_registration;
    int                 idle_timeout_s;
    int                 kdf_iterations; /* --kdf-iterations */
    int                 max_conns, max_per_addr; /* --max-connections[-per-address] (admit.c) */
    int                 send_rate;      /* --max-send-rate (throttle.c) */
    size_t              out_total, max_output; /* unsent output of all connections (under
                                         * link.c's lock); --max-output-mb */
    int                 max_devices;    /* --max-devices: per account, seen in 30 days */
    int64_t             max_storage;    /* --max-storage-mb: bytes of messages an account sends */
    int64_t             caps[3];        /* per srv_rows: --max-state, default SRV_MAX_* */
    int64_t             last_msg_time;  /* message times never go backwards */
    int64_t             server_id;      /* the database's id (srv_db_server_id) */
} srv_state;

extern srv_state srv;

/* reqthread.c: the request thread. start: after srv_ws_open; stop: once
 * the loop has ended (it handles what was posted, commits the open group,
 * and returns); close: after srv_auth_stop and srv_ws_close, on the main
 * thread (the closes of the last connections, then every srv_conn
 * freed). wake: any thread (a posted event, a derived login). */
int  srv_reqthread_start(void);
void srv_reqthread_stop(void);
void srv_reqthread_close(void);
void srv_reqthread_wake(void);

int64_t srv_now_ms(void);
int64_t srv_mono_ms(void);   /* for throttles: never steps with the wall clock */
/* A message time: now, but never before the previous message's time. */
int64_t srv_msg_time(void);

/* out.c: frames out, through srv.io. Queues root printed: 0, or -1 if it
 * was not queued (see srv_transport.queue). */
int  srv_queue_json(srv_conn *c, const cJSON *root);
/* Sends the reply to request id (data is taken). */
void srv_reply(srv_conn *c, int64_t id, const char *cmd, int code, const char *error, cJSON *data);
/* Sends push `name` (data is taken) to every live connection (srv_conn_live)
 * of account except `except` (may be NULL). */
void srv_push_account(const char *account, const srv_conn *except, const char *name, cJSON *data);

/* A push frame carrying an array, data[key], built from printed items, so
 * it is measured exactly without printing it twice:
 *   srv_frame_init; while (srv_frame_fits or it is empty) srv_frame_add;
 *   srv_frame_queue (with more fields for data, or NULL); ...; srv_frame_free.
 * A frame takes at least one item, so an item over the batch size still goes. */
typedef struct {
    char   *buf;
    size_t  len, cap, head_len;
    int     items;
} srv_frame;
int  srv_frame_init(srv_frame *f, const char *push, const char *key);
int  srv_frame_fits(const srv_frame *f, size_t n);    /* 1 if n more bytes stay near SRV_BATCH_BYTES */
int  srv_frame_add(srv_frame *f, const char *item, size_t n);
/* Queues the frame when it holds items (extra: ",\"k\":v" fields added to
 * data), then empties it for the next. 0, or -1 if it was not queued. */
int  srv_frame_queue(srv_conn *c, srv_frame *f, const char *extra);
void srv_frame_free(srv_frame *f);
/* Queues `name` pushes carrying the items under data[key], split so each
 * frame stays near SRV_BATCH_BYTES. Takes items. Returns 0 or -1. */
int  srv_queue_batched(srv_conn *c, const char *name, const char *key, cJSON *items);

/* sync.c: the login sync of docs/protocol.md, sent in pages. start: right
 * after the login reply; step: from WRITEABLE, while the sync is under way
 * and the queue is below SRV_SYNC_LOW_WATER. */
/* Where a device's first sync was cut in the ROAMING stage (login's
 * cursors.roaming, echoed from a roaming page's "resume"). */
typedef struct {
    int64_t bound, before;
    int     sent;
    char    session[NIM_PROTO_MAX_SESSION_ID + 1];
} srv_roaming_resume;
void srv_sync_start(srv_conn *c, int64_t cur_msgs, int64_t cur_state, const srv_roaming_resume *resume);
void srv_sync_step(srv_conn *c);

/* handlers.c: one complete text message from c. */
void srv_conn_frame(srv_conn *c, const char *buf, size_t len);
/* handlers.c: the connection is going away. */
void srv_conn_gone(srv_conn *c);
/* messages.c: group commit. The sendMsg requests handled from one batch of
 * the request thread's events share one write transaction (each message
 * in its own savepoint); their replies and pushes wait in the group until
 * it is committed. srv_group_flush commits the open group and then queues
 * its replies and pushes in order (on a failed commit every stored message
 * of the group is answered 500 and pushes nothing). reqthread.c calls it
 * after every batch; handlers.c before any other request, so every other
 * command sees (and orders after) everything acknowledged before it. While
 * a group commits, the next frames gather in the event queue, so the
 * slower the commit the larger the next group. */
void srv_group_flush(void);

#endif
