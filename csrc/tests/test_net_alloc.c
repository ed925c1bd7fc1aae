/* Allocation-failure injection for the network client: a message that the
 * server accepted is never lost to a memory shortage on the receiving
 * device.
 *
 * A run: the real nim-server (--open-registration) on a free loopback
 * port; a receiving client (the SDK's engine with the network hooks, as
 * getInstance builds it, on a database file) logs in as a fresh account and
 * syncs; then allocation k of this process fails (once, or from k on until
 * the messages have reached the client or the point has passed) while bob,
 * a raw WebSocket client that allocates only with malloc, sends it N
 * messages and gets them acknowledged. After the shortage the client must
 * end up with every message stored exactly once and counted unread, and
 * its kept unread must equal a recount: whatever the failure broke (a
 * frame it could not parse, a batch it could not store), it must
 * reconnect and sync again rather than skip a message. An engine that the
 * shortage left broken (DB_Error to every request, as designed) must get
 * them all at its next start on the same file.
 *
 * The first run only counts the allocations; the sweep then tries every
 * point in both modes (one "from then on" run in 8 keeps the shortage 150
 * ms longer: reconnects and logins without memory). NIM_ALLOC_STRIDE=n
 * tries every nth point only; NIM_ALLOC_DEBUG=1 says what a failing run
 * ended with. */
#include "tests/testhelp.h"
#include "tests/wsclient.h"
#include "tests/serverproc.h"
#include "tests/engine_req.h"
#include "net/proto.h"
#include "core/alloc.h"
#include "core/engine.h"
#include "net/client.h"
#include <cjson/cJSON.h>

#define N_MSGS 5
#define T_MS 10000   /* every wait gives up after this */

/* ---- bob: a raw sender (malloc only, never counted) -------------------- */

static ws_t bob;
static int64_t bob_id = 1;

/* Sends n requests at once (data[i] for cmd), then reads until all are
 * answered; returns how many were answered 200 (-1 on a lost link). One
 * burst lets the server commit them together. */
static int bob_calls(const char *cmd, char data[][200], int n) {
    int64_t first = bob_id;
    for (int i = 0; i < n; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"%s\",\"data\":%s}", (long long)bob_id++, cmd, data[i]);
        if (ws_send_text(&bob, buf) != 0) return -1;
    }
    int answered = 0, ok = 0;
    int64_t deadline = test_now_ms() + T_MS;
    while (answered < n) {
        int64_t left = deadline - test_now_ms();
        if (left <= 0) return -1;
        char *f = ws_recv(&bob, (int)left);
        if (!f) return -1;
        const char *id = strstr(f, "\"id\":"), *c = strstr(f, "\"code\":");
        if (id && c && atoll(id + 5) >= first && atoll(id + 5) < bob_id) {
            answered++;
            ok += atoi(c + 7) == 200;
        }
        free(f);
    }
    return ok;
}

static int bob_login(void) {
    if (ws_connect(&bob, g_port, NIM_PROTO_SUBPROTOCOL) != 0) return -1;
    char data[1][200];
    snprintf(data[0], sizeof data[0], "{\"account\":\"bob\",\"token\":\"secret\",\"deviceId\":\"b1\",\"version\":%d}",
             NIM_PROTO_VERSION);
    return bob_calls("login", data, 1);
}

/* ---- the receiving client ---------------------------------------------- */

typedef struct {
    nim_engine *e;
    nim_net *net;
    uint64_t next_req;
    int synced;          /* onsyncdone seen */
    int onmsg;           /* onmsg events seen */
    cJSON *reply;        /* data of the reply waited for */
    const char *code;
} client;

/* What the client saw on the way (ud: the client). */
static void seen(void *ud, nim_event *ev) {
    client *c = ud;
    if (ev->type == NIM_EV_SYNCDONE) c->synced++;
    if (ev->type == NIM_EV_MSG) c->onmsg++;
    nim_event_free(ev);
}

/* Waits up to ms for cond (pumping events); 1 when it holds. */
#define WAIT_FOR(c, cond, ms) ({ \
        int64_t dl_ = test_now_ms() + (ms); \
        while (!(cond) && test_now_ms() < dl_) test_pump((c)->e, 20, 0, seen, (c)); \
        (cond); })

static int client_start(client *c, const char *account, const char *db) {
    memset(c, 0, sizeof *c);
    c->next_req = 1;
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", g_port);
    nim_net_config nc = { .servers = (const char *[]){ url }, .nservers = 1, .account = account, .token = "secret",
                          .need_reconnect = 1, .want = NIM_NET_WANT_MSG,
                          .reconnect_min_ms = 5, .reconnect_max_ms = 40,
                          /* longer than any wait here: a client stuck until
                           * a timeout rescues it fails the run */
                          .request_timeout_ms = 60000 };
    const char *err = NULL;
    c->net = nim_net_new(&nc, &err);
    if (!c->net) return -1;
    nim_engine_hooks h;
    nim_net_hooks(c->net, &h);
    nim_engine_config cfg = { .account = account, .db_path = db, .hooks = &h,
                              .flags = NIM_ENGINE_NOTIFY_SESSIONS | NIM_ENGINE_NOTIFY_UPDATES |
                                       NIM_ENGINE_DEFER_SYNC };
    c->e = nim_engine_start(&cfg);
    if (!c->e) { nim_net_free(c->net); return -1; }
    return WAIT_FOR(c, c->synced > 0, T_MS) ? 0 : -1;
}

/* A request answered within T_MS: 0 (reply in c->reply, code in c->code). */
static int client_call(client *c, int cmd, const char *json) {
    int refused;
    c->reply = NULL;
    nim_event *ev = test_request(c->e, c->next_req++, cmd, json, T_MS, seen, c, &refused);
    if (!ev) return -1;
    c->code = ev->code;
    c->reply = ev->data;
    ev->data = NULL;
    nim_event_free(ev);
    return 0;
}

static void client_stop(client *c) {
    nim_engine_free(c->e);   /* joins */
    nim_net_free(c->net);
}

/* Stored messages of p2p-bob (-1 on failure, -2 when the engine answers
 * DB_Error: broken by the shortage) and its unread (in *unread). */
static int stored(client *c, long *unread) {
    int n = -1;
    *unread = -1;
    if (client_call(c, NIM_CMD_GET_MSGS, "{\"sessionId\":\"p2p-bob\",\"limit\":100}") == 0) {
        if (!c->code) n = cJSON_GetArraySize(cJSON_GetObjectItem(c->reply, "msgs"));
        else if (!strcmp(c->code, NIM_ERR_DB)) n = -2;
    }
    cJSON_Delete(c->reply);
    if (client_call(c, NIM_CMD_GET_SESSION, "{\"sessionId\":\"p2p-bob\"}") == 0 && !c->code && c->reply)
        *unread = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(c->reply, "unread"));
    cJSON_Delete(c->reply);
    return n;
}

static int consistent(client *c) {
    int good = client_call(c, NIM_CMD_VERIFY, NULL) == 0 && !c->code &&
               cJSON_GetArraySize(cJSON_GetObjectItem(c->reply, "mismatches")) == 0;
    cJSON_Delete(c->reply);
    return good;
}

/* ---- one run ----------------------------------------------------------- */

static int failures;

static void check(int ok, const char *what, long at, long span) {
    if (ok) return;
    failures++;
    if (failures > 10) return;   /* enough to read */
    char d[200];
    snprintf(d, sizeof d, "%s (failing allocation %ld, %s)", what, at,
             at == LONG_MAX ? "none" : span ? "once" : "from then on");
    test_cond(d, 0);
}

/* Waits until c has every message (a reconnect and a sync may come
 * first); 1 when it does, 0 when not, -1 when the engine is broken. */
static int settle(client *c, int *have, long *unread) {
    int64_t deadline = test_now_ms() + T_MS;
    while (test_now_ms() < deadline) {
        *have = stored(c, unread);
        if (*have == -2) return -1;
        if (*have >= N_MSGS && *unread >= N_MSGS) return 1;
        test_pump(c->e, 20, 0, seen, c);
    }
    return 0;
}

/* Returns the allocations counted while armed. */
static long run(long at, long span) {
    static int seq;
    char account[32], db[PATH_MAX];
    snprintf(account, sizeof account, "me%d", ++seq);
    snprintf(db, sizeof db, "%s/%s.db", g_dir, account);
    client c;
    if (client_start(&c, account, db) != 0) {
        check(0, "the client logs in and syncs", at, span);
        return 0;
    }
    nim_alloc_arm(at, span);
    char data[N_MSGS][200];
    for (int i = 0; i < N_MSGS; i++)
        snprintf(data[i], sizeof data[i],
                 "{\"scene\":\"p2p\",\"to\":\"%s\",\"type\":\"text\",\"idClient\":\"%s-%d\",\"text\":\"m%d\"}",
                 account, account, i, i);
    int sent = bob_calls("sendMsg", data, N_MSGS);
    /* the shortage lasts until the client has them all or the point passed */
    WAIT_FOR(&c, c.onmsg >= N_MSGS || (at != LONG_MAX && nim_alloc_count() >= at), 2000);
    long n = nim_alloc_count();
    if (span == 0 && at % 8 == 0) {
        /* one run in 8 of a lasting shortage: 150 ms more, long enough for
         * the client to drop and try to reconnect and log in without memory */
        int64_t until = test_now_ms() + 150;
        WAIT_FOR(&c, test_now_ms() >= until, 1000);
    }
    nim_alloc_arm(0, 0);
    check(sent == N_MSGS, "the server accepts every message", at, span);

    long unread = -1;
    int have = -1, rc = settle(&c, &have, &unread);
    if (rc < 0) {
        /* the shortage broke the engine (it says DB_Error to everything):
         * what it did not store must come at the next start */
        client_stop(&c);
        if (client_start(&c, account, db) != 0) {
            check(0, "the client starts again after the shortage broke it", at, span);
            return n;
        }
        rc = settle(&c, &have, &unread);
    }
    if (getenv("NIM_ALLOC_DEBUG") && (have != N_MSGS || unread != N_MSGS))
        fprintf(stderr, "at %ld span %ld: stored %d, unread %ld, onmsg %d, settle %d, sent %d\n",
                at, span, have, unread, c.onmsg, rc, sent);
    check(have == N_MSGS, "every accepted message is stored exactly once after the shortage", at, span);
    check(unread == N_MSGS, "and counted unread once", at, span);
    check(consistent(&c), "kept unread equals a recount", at, span);
    client_stop(&c);
    return n;
}

int main(int argc, char **argv) {
    (void)argc;
    signal(SIGPIPE, SIG_IGN);
    if (server_setup(argv[0], "test_net_alloc") != 0) {
        test_cond("the nim-server binary exists", 0);
        return test_report();
    }
    int ok = adduser("bob", "secret") == 0 && server_start("--open-registration") == 0;
    test_cond("the server starts", ok);
    if (ok) ok = bob_login() == 1;
    test_cond("bob logs in", ok);
    if (ok) {
        long total = run(LONG_MAX, 0);
        test_cond("a run without injection stores every message", failures == 0 && total > 0);
        long runs = 0, st = test_alloc_stride();
        for (int mode = 0; mode < 2 && failures == 0; mode++)
            for (long k = 1; k <= total && failures <= 10; k += st, runs++) run(k, mode == 0 ? 1 : 0);
        printf("network client: %ld allocations while %d messages arrive, %ld injected runs (stride %ld)\n",
               total, N_MSGS, runs, st);
        test_cond("no message lost to an allocation failure", failures == 0);
    }
    ws_free(&bob);
    server_teardown("test_net_alloc");
    return test_report();
}
