/* The SDK trusts no frame: the network client (the engine with the network
 * hooks, on a database file, as getInstance builds it) against a scripted
 * hostile server. The server (lws, on its own thread, loopback) answers the
 * login, then sends a scenario's frames; each scenario breaks one rule. The
 * client must report it (onerror, "frame"), store nothing of it, drop the
 * link and log in again after its backoff with the cursors it had: the
 * second login's cursors, seen by the server, prove nothing was persisted. */
#include "tests/testhelp.h"
#include "tests/engine_req.h"
#include "net/proto.h"
#include "net/client.h"
#include "net/cmdtable.h"
#include "core/engine.h"
#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_MS 10000
#define MSG(id, from, to, time) \
    "{\"idServer\":\"" id "\",\"idClient\":\"c" id "\",\"scene\":\"p2p\",\"from\":\"" from "\"," \
    "\"fromDevice\":\"d\",\"to\":\"" to "\",\"time\":" time ",\"type\":\"text\",\"text\":\"t\"}"

/* ---- the hostile server ------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    const char *const *script;    /* frames sent after the login reply, NULL-ended */
    int repeat;                   /* times the script is sent (a sync that never ends) */
    const char *send_reply;       /* the sendMsg reply's msg, or NULL: echo */
    const char *history_reply;    /* the getHistoryMsgs reply's data, or NULL: {} */
    int logins;
    char cursors[2][128];         /* the cursors of the first two logins */
    int port, stop;
    struct lws_context *ctx;
} hs = { .lock = PTHREAD_MUTEX_INITIALIZER };

typedef struct out { struct out *next; size_t len; unsigned char buf[]; } out;
typedef struct { out *head, *tail; char *rx; size_t rx_len; } conn;

static void queue(struct lws *wsi, conn *c, const char *s) {
    size_t n = strlen(s);
    out *o = malloc(sizeof *o + LWS_PRE + n);
    o->next = NULL;
    o->len = n;
    memcpy(o->buf + LWS_PRE, s, n);
    if (c->tail) c->tail->next = o; else c->head = o;
    c->tail = o;
    lws_callback_on_writable(wsi);
}

static void on_request(struct lws *wsi, conn *c, const char *text) {
    cJSON *r = cJSON_Parse(text);
    const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItem(r, "cmd"));
    long long id = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "id"));
    cJSON *data = cJSON_GetObjectItem(r, "data");
    char buf[2048];
    if (cmd && strcmp(cmd, "login") == 0) {
        char *cur = cJSON_PrintUnformatted(cJSON_GetObjectItem(data, "cursors"));
        pthread_mutex_lock(&hs.lock);
        if (hs.logins < 2) snprintf(hs.cursors[hs.logins], sizeof hs.cursors[0], "%s", cur ? cur : "");
        hs.logins++;
        pthread_mutex_unlock(&hs.lock);
        free(cur);
        snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"login\",\"code\":200,\"data\":{\"account\":\"me\","
                 "\"deviceId\":\"d\",\"serverTime\":1700000000000,\"version\":1}}", id);
        queue(wsi, c, buf);
        for (int k = 0; k < hs.repeat; k++)
            for (const char *const *f = hs.script; f && *f; f++) queue(wsi, c, *f);
    } else if (cmd && strcmp(cmd, "getHistoryMsgs") == 0 && hs.history_reply) {
        snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"getHistoryMsgs\",\"code\":200,\"data\":%s}",
                 id, hs.history_reply);
        queue(wsi, c, buf);
    } else if (cmd && strcmp(cmd, "sendMsg") == 0 && hs.send_reply) {
        snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"sendMsg\",\"code\":200,\"data\":{\"msg\":%s}}",
                 id, hs.send_reply);
        queue(wsi, c, buf);
    } else {
        snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"%s\",\"code\":200,\"data\":{}}", id, cmd ? cmd : "");
        queue(wsi, c, buf);
    }
    cJSON_Delete(r);
}

static int hs_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: memset(c, 0, sizeof *c); break;
    case LWS_CALLBACK_RECEIVE:
        c->rx = realloc(c->rx, c->rx_len + len + 1);
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        c->rx[c->rx_len] = 0;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            on_request(wsi, c, c->rx);
            c->rx_len = 0;
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (c->head) {
            out *o = c->head;
            c->head = o->next;
            if (!c->head) c->tail = NULL;
            int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
            free(o);
            if (n < 0) return -1;
            if (c->head) lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLOSED:
        while (c->head) { out *o = c->head; c->head = o->next; free(o); }
        free(c->rx);
        c->rx = NULL;
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols hs_protocols[] = {
    { NIM_PROTO_SUBPROTOCOL, hs_callback, sizeof(conn), 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void *hs_thread(void *arg) {
    (void)arg;
    while (!hs.stop) lws_service(hs.ctx, 50);
    return NULL;
}

static int hs_start(pthread_t *t) {
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = 0;
    info.iface = "127.0.0.1";
    info.protocols = hs_protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    lws_set_log_level(LLL_ERR, NULL);
    hs.ctx = lws_create_context(&info);
    if (!hs.ctx) return -1;
    struct lws_vhost *vh = lws_get_vhost_by_name(hs.ctx, "default");
    hs.port = vh ? lws_get_vhost_listen_port(vh) : 0;
    return hs.port > 0 ? pthread_create(t, NULL, hs_thread, NULL) : -1;
}

/* ---- the client --------------------------------------------------------- */

typedef struct {
    nim_engine *e;
    nim_net *net;
    int errors;            /* onerror events about a frame */
    int timeouts;          /* onerror events about the sync's time bound */
    char last_error[256];
    uint64_t next_req;
} client;

static void seen(void *ud, nim_event *ev) {
    client *c = ud;
    if (ev->type == NIM_EV_ERROR && ev->what && strcmp(ev->what, "frame") == 0) {
        c->errors++;
        snprintf(c->last_error, sizeof c->last_error, "%s", ev->message ? ev->message : "");
    }
    if (ev->type == NIM_EV_ERROR && ev->what && strcmp(ev->what, "sync") == 0) {
        c->timeouts++;
        snprintf(c->last_error, sizeof c->last_error, "%s", ev->message ? ev->message : "");
    }
    nim_event_free(ev);
}

#define WAIT_FOR(c, cond, ms) ({ \
        int64_t dl_ = test_now_ms() + (ms); \
        while (!(cond) && test_now_ms() < dl_) test_pump((c)->e, 20, 0, seen, (c)); \
        (cond); })

static int logins(void) {
    pthread_mutex_lock(&hs.lock);
    int n = hs.logins;
    pthread_mutex_unlock(&hs.lock);
    return n;
}

static int g_sync_timeout_ms;   /* 0: the default */

static int client_start(client *c, const char *db) {
    memset(c, 0, sizeof *c);
    c->next_req = 1;
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", hs.port);
    nim_net_config nc = { .servers = (const char *[]){ url }, .nservers = 1, .account = "me", .token = "secret", .need_reconnect = 1,
                          .want = NIM_NET_WANT_MSG | NIM_NET_WANT_ROAMING | NIM_NET_WANT_OFFLINE,
                          .reconnect_min_ms = 5, .reconnect_max_ms = 40, .request_timeout_ms = 60000,
                          .sync_timeout_ms = g_sync_timeout_ms };
    const char *err = NULL;
    c->net = nim_net_new(&nc, &err);
    if (!c->net) return -1;
    nim_engine_hooks h;
    nim_net_hooks(c->net, &h);
    nim_engine_config cfg = { .account = "me", .db_path = db, .hooks = &h,
                              .flags = NIM_ENGINE_NOTIFY_SESSIONS | NIM_ENGINE_NOTIFY_UPDATES |
                                       NIM_ENGINE_DEFER_SYNC };
    c->e = nim_engine_start(&cfg);
    return c->e ? 0 : -1;
}

static void client_stop(client *c) {
    nim_engine_free(c->e);
    nim_net_free(c->net);
}

/* Removes a test database and its -wal file. */
static void remove_db(const char *db) {
    for (const char *sfx = ""; sfx; sfx = *sfx ? NULL : "-wal") {
        char p[80];
        snprintf(p, sizeof p, "%s%s", db, sfx);
        unlink(p);
    }
}

/* Messages stored locally (all sessions). */
static int stored(client *c) {
    int refused = 0, n = -1;
    nim_event *ev = test_request(c->e, c->next_req++, NIM_CMD_GET_MSGS, "{\"limit\":1000}", T_MS, seen, c,
                                 &refused);
    if (ev && !ev->code) n = cJSON_GetArraySize(cJSON_GetObjectItem(ev->data, "msgs"));
    if (ev) nim_event_free(ev);
    return n;
}

/* One scenario: the script must be refused, nothing of it stored, and the
 * next login must carry the cursors of the first. */
static void scenario(const char *name, const char *const *script, int repeat, int want_stored) {
    static int seq;
    char db[64], what[160];
    snprintf(db, sizeof db, "/tmp/nim-hostile-%d-%d.db", (int)getpid(), ++seq);
    pthread_mutex_lock(&hs.lock);
    hs.script = script;
    hs.repeat = repeat;
    hs.logins = 0;
    pthread_mutex_unlock(&hs.lock);
    client c;
    int ok = client_start(&c, db) == 0;
    ok = ok && WAIT_FOR(&c, c.errors > 0, T_MS);
    snprintf(what, sizeof what, "%s: refused and reported (onerror, frame)", name);
    test_cond(what, ok);
    if (getenv("NIM_HOSTILE_VERBOSE")) fprintf(stderr, "%s: %s\n", name, c.last_error);
    ok = ok && WAIT_FOR(&c, logins() >= 2, T_MS);
    snprintf(what, sizeof what, "%s: the client logs in again, with the cursors it had", name);
    test_cond(what, ok && strcmp(hs.cursors[0], hs.cursors[1]) == 0);
    snprintf(what, sizeof what, "%s: nothing of the frame stored", name);
    test_cond(what, stored(&c) == want_stored);
    client_stop(&c);
    remove_db(db);
}

/* A sync that sends script and then nothing (its pings still answered):
 * the client must cut it after g_sync_timeout_ms as a timeout, keep the one
 * message, and log in again with cursors containing want. Returns the ms
 * until the cut, or -1 when any of that failed. */
static int64_t stopped_sync(const char *const *script, const char *want) {
    pthread_mutex_lock(&hs.lock);
    hs.script = script;
    hs.repeat = 1;
    hs.logins = 0;
    pthread_mutex_unlock(&hs.lock);
    client c;
    char db[64];
    snprintf(db, sizeof db, "/tmp/nim-hostile-%d-stopped.db", (int)getpid());
    int64_t t0 = test_now_ms();
    int ok = client_start(&c, db) == 0 && WAIT_FOR(&c, c.timeouts > 0, T_MS);
    int64_t took = test_now_ms() - t0;
    ok = ok && strstr(c.last_error, "syncTimeout") != NULL && WAIT_FOR(&c, logins() >= 2, T_MS) &&
         strstr(hs.cursors[1], want) != NULL && stored(&c) == 1;
    if (getenv("NIM_HOSTILE_VERBOSE")) fprintf(stderr, "stopped sync: %s / %s\n", c.last_error, hs.cursors[1]);
    client_stop(&c);
    remove_db(db);
    return ok ? took : -1;
}

/* One app request (cmd with args) whose reply breaks a rule: send_reply is
 * the sendMsg reply's msg, history_reply the getHistoryMsgs reply's data.
 * The request must fail, the frame be reported, nothing stored in sid. */
static void app_reply(const char *name, int cmd, const char *args, const char *send_reply,
                      const char *history_reply, const char *sid, int want_stored) {
    static const char *const synced[] = {
        "{\"push\":\"stickTopSessions\",\"data\":{\"sessions\":[]}}",
        "{\"push\":\"syncDone\",\"data\":{\"cursors\":{\"msgs\":0,\"state\":0}}}", NULL };
    static int seq;
    char db[64], what[160], q[128];
    pthread_mutex_lock(&hs.lock);
    hs.script = synced;
    hs.repeat = 1;
    hs.logins = 0;
    hs.send_reply = send_reply;
    hs.history_reply = history_reply;
    pthread_mutex_unlock(&hs.lock);
    client c;
    snprintf(db, sizeof db, "/tmp/nim-hostile-%d-app%d.db", (int)getpid(), ++seq);
    int ok = client_start(&c, db) == 0 && WAIT_FOR(&c, logins() >= 1, T_MS);
    int refused = 0;
    nim_event *ev = NULL;
    for (int tries = 0; ok && tries < 50; tries++) {   /* until the login is through */
        ev = test_request(c.e, c.next_req++, cmd, args, T_MS, seen, &c, &refused);
        if (!ev || !ev->code || c.errors > 0) break;
        nim_event_free(ev);
        ev = NULL;
        test_pump(c.e, 20, 0, seen, &c);
    }
    snprintf(what, sizeof what, "%s: the request fails", name);
    test_cond(what, ev && (ev->code || ev->numcode));
    if (ev) nim_event_free(ev);
    snprintf(what, sizeof what, "%s: refused and reported", name);
    test_cond(what, WAIT_FOR(&c, c.errors > 0, T_MS));
    if (getenv("NIM_HOSTILE_VERBOSE")) fprintf(stderr, "%s: %s\n", name, c.last_error);
    int n = -1, rf = 0;
    snprintf(q, sizeof q, "{\"sessionId\":\"%s\",\"limit\":10}", sid);
    ev = test_request(c.e, c.next_req++, NIM_CMD_GET_MSGS, q, T_MS, seen, &c, &rf);
    if (ev && !ev->code) n = cJSON_GetArraySize(cJSON_GetObjectItem(ev->data, "msgs"));
    if (ev) nim_event_free(ev);
    snprintf(what, sizeof what, "%s: %s", name, want_stored ? "only the first page stored" : "nothing stored");
    test_cond(what, n == want_stored);
    client_stop(&c);
    remove_db(db);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    if (hs_start(&t) != 0) { test_cond("the hostile server starts", 0); return test_report(); }

    static const char *const brick[] = {
        "{\"push\":\"stickTopSessions\",\"data\":{\"sessions\":[]}}",
        "{\"push\":\"syncDone\",\"data\":{\"cursors\":{\"msgs\":1e17,\"state\":1e17}}}", NULL };
    scenario("cursors of 1e17 in syncDone", brick, 1, 0);

    static const char *const others[] = {
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "mallory", "1700000000000") "]}}", NULL };
    scenario("a message between other accounts", others, 1, 0);

    static const char *const negative[] = {
        "{\"push\":\"offlineMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "-5") "],\"ack\":\"5\"}}", NULL };
    scenario("a negative time", negative, 1, 0);

    static const char *const bad_id[] = {
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[" MSG("5x", "eve", "me", "1700000000000") "]}}", NULL };
    scenario("a non-numeric idServer", bad_id, 1, 0);

    static const char *const far_cursor[] = {
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "1700000000000") "],"
        "\"ack\":\"5\",\"cursor\":900000000000}}", NULL };
    scenario("a page cursor beyond its messages", far_cursor, 1, 0);

    static const char *const live_msg[] = {
        "{\"push\":\"stickTopSessions\",\"data\":{\"sessions\":[]}}",
        "{\"push\":\"syncDone\",\"data\":{\"cursors\":{\"msgs\":0,\"state\":0}}}",
        "{\"push\":\"msg\",\"data\":{\"msg\":" MSG("7", "eve", "mallory", "1700000000000") "}}", NULL };
    scenario("a live message between other accounts", live_msg, 1, 0);

    static const char *const bad_ptr[] = {
        "{\"push\":\"readPointers\",\"data\":{\"pointers\":[{\"sessionId\":\"p2p-eve\",\"ack\":1e17,\"ver\":1}]}}", NULL };
    scenario("a read pointer out of range", bad_ptr, 1, 0);

    /* the same page over and over: stored once, then the sync is cut */
    static const char *const endless[] = {
        "{\"push\":\"offlineMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "1700000000000") "],"
        "\"ack\":\"5\"}}", NULL };
    scenario("a sync that never ends", endless, 40, 1);

    /* a sync that stops short of syncDone (the link stays up: pings are
     * answered) is cut after syncTimeout; what it stored stays, and the
     * next login carries the cursor of its stored page */
    static const char *const stuck[] = {
        "{\"push\":\"offlineMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "1700000000000") "],"
        "\"ack\":\"5\",\"cursor\":5}}", NULL };
    g_sync_timeout_ms = 300;
    int64_t took = stopped_sync(stuck, "\"msgs\":5");
    test_cond("a sync that stops: cut after syncTimeout without progress, reported as a timeout, "
              "logged in again with the cursor of the page it stored", took >= 300);
    /* a first sync cut in its roaming stage: the next login carries the
     * resume point of the roaming page that was stored */
    static const char *const roaming_cut[] = {
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "1700000000000") "],"
        "\"resume\":{\"bound\":9,\"session\":\"p2p-eve\",\"before\":5,\"sent\":1}}}", NULL };
    test_cond("a first sync cut in roaming: the next login asks to go on from the stored resume point",
              stopped_sync(roaming_cut, "\"roaming\":{\"bound\":9,\"session\":\"p2p-eve\",\"before\":5,\"sent\":1}")
              >= 300 && strstr(hs.cursors[0], "roaming") == NULL);
    static const char *const bad_resume[] = {
        "{\"push\":\"roamingMsgs\",\"data\":{\"msgs\":[" MSG("5", "eve", "me", "1700000000000") "],"
        "\"resume\":{\"bound\":9,\"session\":\"nope\",\"before\":5,\"sent\":1}}}", NULL };
    scenario("a resume point that is not one", bad_resume, 1, 0);
    g_sync_timeout_ms = 0;

    /* app replies that break a rule: the request fails, nothing stored */
    app_reply("a sendMsg reply for another conversation", NIM_NETCMD_SEND_MSG,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"text\",\"text\":\"hi\"}",
              MSG("9", "me", "carol", "1700000000000"), NULL, "p2p-carol", 0);
    app_reply("a history page of another session", NIM_NETCMD_GET_HISTORY,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"limit\":10}", NULL,
              "{\"msgs\":[" MSG("9", "me", "carol", "1700000000000") "],\"more\":false}", "p2p-carol", 0);
    app_reply("a history page out of order", NIM_NETCMD_GET_HISTORY,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"limit\":10}", NULL,
              "{\"msgs\":[" MSG("8", "bob", "me", "1700000000000") "," MSG("9", "bob", "me", "1700000000000")
              "],\"more\":false}", "p2p-bob", 0);
    app_reply("a history page over the limit asked", NIM_NETCMD_GET_HISTORY,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"limit\":1}", NULL,
              "{\"msgs\":[" MSG("9", "bob", "me", "1700000000000") "," MSG("8", "bob", "me", "1700000000000")
              "],\"more\":false}", "p2p-bob", 0);
    app_reply("a history reply with more and no messages (an endless paging)", NIM_NETCMD_GET_HISTORY,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"limit\":10}", NULL, "{\"msgs\":[],\"more\":true}",
              "p2p-bob", 0);
    app_reply("a history reply that repeats its page with more", NIM_NETCMD_GET_HISTORY,
              "{\"scene\":\"p2p\",\"to\":\"bob\",\"limit\":10}", NULL,
              "{\"msgs\":[" MSG("9", "bob", "me", "1700000000000") "],\"more\":true}", "p2p-bob", 1);

    hs.stop = 1;
    lws_cancel_service(hs.ctx);
    pthread_join(t, NULL);
    lws_context_destroy(hs.ctx);
    return test_report();
}
