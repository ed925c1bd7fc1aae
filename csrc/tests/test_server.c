/* Integration tests of nim-server: each run starts the real server binary
 * on a free loopback port (--listen 127.0.0.1:0, reading the "listening on"
 * line) with a database in a fresh temporary directory, drives it over real
 * WebSockets with the raw client of wsclient.h, and stops it. Nothing here
 * sleeps: "nothing else arrives" is checked with a ping barrier (the server
 * answers in order on each connection, and queues pushes caused by a
 * request before it answers that request).
 *
 * The server binary: $NIM_SERVER, else ../nim-server next to this test
 * binary's directory (build/X/tests/test_server -> build/X/nim-server). */
#include "tests/testhelp.h"
#include "tests/wsclient.h"
#include "tests/serverproc.h"
#include "net/proto.h"
#include "core/jfield.h"
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <time.h>
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <libwebsockets.h>
#include <sqlite3.h>

#define T_MS 5000 /* every wait gives up after this: a hung server fails the test */

/* ---- the server process ---------------------------------------------- */

static void watchdog(int sig) {
    (void)sig;
    static const char msg[] = "test_server: watchdog: a step hung for 300 s\n";
    if (write(2, msg, sizeof msg - 1) < 0) {}
    if (g_pid > 0) kill(g_pid, SIGKILL);
    _exit(1);
}

/* ---- a protocol client over the raw socket ----------------------------- */

typedef struct {
    ws_t    ws;
    int64_t next_id;
    cJSON  *stash;   /* frames that arrived while waiting for something else */
} cli;

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t int_of(const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static cJSON *obj_of(const cJSON *o, const char *k) {
    return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static int code_of(const cJSON *resp) { return resp ? (int)int_of(resp, "code") : -1; }

static int cli_open(cli *c, const char *protocol) {
    memset(c, 0, sizeof *c);
    c->next_id = 1;
    c->stash = cJSON_CreateArray();
    return ws_connect(&c->ws, g_port, protocol);
}

static void cli_free(cli *c) {
    ws_free(&c->ws);
    cJSON_Delete(c->stash);
    c->stash = NULL;
}

static size_t g_biggest_frame;   /* the longest frame any cli_read got */

static cJSON *cli_read(cli *c, int ms) {
    char *s = ws_recv(&c->ws, ms);
    if (!s) return NULL;
    if (strlen(s) > g_biggest_frame) g_biggest_frame = strlen(s);
    cJSON *j = cJSON_Parse(s);
    if (!j) fprintf(stderr, "test_server: server sent non-JSON: %.200s\n", s);
    free(s);
    return j;
}

/* Sends a request with data (a JSON text or NULL) and returns its reply,
 * stashing any pushes that come first. NULL on timeout. */
static cJSON *cli_call(cli *c, const char *cmd, const char *data) {
    int64_t id = c->next_id++;
    char *buf = malloc(strlen(cmd) + (data ? strlen(data) : 0) + 64);
    sprintf(buf, "{\"id\":%lld,\"cmd\":\"%s\"%s%s}", (long long)id, cmd, data ? ",\"data\":" : "",
            data ? data : "");
    int rc = ws_send_text(&c->ws, buf);
    free(buf);
    if (rc != 0) return NULL;
    int64_t deadline = test_now_ms() + T_MS;
    for (;;) {
        int64_t left = deadline - test_now_ms();
        if (left <= 0) return NULL;
        cJSON *f = cli_read(c, (int)left);
        if (!f) return NULL;
        if (cJSON_GetObjectItemCaseSensitive(f, "code") && int_of(f, "id") == id) return f;
        cJSON_AddItemToArray(c->stash, f);
    }
}

/* Checks that cmd with data is answered code with an error containing want. */
static void r_code_msg(cli *c, const char *cmd, const char *data, int code, const char *want) {
    cJSON *r = cli_call(c, cmd, data);
    const char *err = str_of(r, "error");
    char what[200];
    snprintf(what, sizeof what, "%s: %d \"%s\"", cmd, code, want);
    test_cond(what, code_of(r) == code && strstr(err, want) != NULL);
    if (code_of(r) != code || !strstr(err, want)) fprintf(stderr, "  got %d %s\n", code_of(r), err);
    cJSON_Delete(r);
}

static int cli_call_code(cli *c, const char *cmd, const char *data) {
    cJSON *r = cli_call(c, cmd, data);
    int code = code_of(r);
    cJSON_Delete(r);
    return code;
}

/* Removes and returns the first stashed push named name, or NULL. */
static cJSON *cli_take(cli *c, const char *name) {
    int i = 0;
    for (cJSON *f = c->stash->child; f; f = f->next, i++)
        if (strcmp(str_of(f, "push"), name) == 0) return cJSON_DetachItemFromArray(c->stash, i);
    return NULL;
}

/* Waits for a push named name (stashing others). NULL on timeout. */
static cJSON *cli_push(cli *c, const char *name) {
    cJSON *f = cli_take(c, name);
    int64_t deadline = test_now_ms() + T_MS;
    while (!f) {
        int64_t left = deadline - test_now_ms();
        if (left <= 0) return NULL;
        cJSON *g = cli_read(c, (int)left);
        if (!g) return NULL;
        if (strcmp(str_of(g, "push"), name) == 0) return g;
        cJSON_AddItemToArray(c->stash, g);
    }
    return f;
}

/* A ping round trip: afterwards, every push queued for this connection
 * before the ping was answered is in the stash. */
static int cli_barrier(cli *c) { return cli_call_code(c, "ping", NULL) == 200; }

/* 1 when no push named name arrived (checked after a barrier). */
static int cli_none(cli *c, const char *name) {
    if (!cli_barrier(c)) return 0;
    cJSON *f = cli_take(c, name);
    cJSON_Delete(f);
    return f == NULL;
}

/* Appends the items of frame.data[key] to arr. */
static void append_items(cJSON *arr, const cJSON *frame, const char *key) {
    const cJSON *items = obj_of(obj_of(frame, "data"), key);
    for (const cJSON *it = items ? items->child : NULL; it; it = it->next)
        cJSON_AddItemToArray(arr, cJSON_Duplicate(it, 1));
}

/* Connects and logs in; on 200 collects the sync into *sync: {order: [push
 * names as they came], roamingMsgs: [...], offlineMsgs: [...], readPointers:
 * [...], msgReceipts: [...], stickTopSessions: [...], cursors: {...}}.
 * Returns the login reply code. */
static int cli_login(cli *c, const char *account, const char *token, const char *device,
                     const char *cursors, cJSON **sync) {
    if (sync) *sync = NULL;
    if (cli_open(c, NIM_PROTO_SUBPROTOCOL) != 0) return -1;
    char data[512];
    snprintf(data, sizeof data,
             "{\"account\":\"%s\",\"token\":\"%s\",\"deviceId\":\"%s\",\"version\":%d%s%s}",
             account, token, device, NIM_PROTO_VERSION, cursors ? ",\"cursors\":" : "",
             cursors ? cursors : "");
    cJSON *r = cli_call(c, "login", data);
    int code = code_of(r);
    cJSON_Delete(r);
    if (code != 200) return code;
    cJSON *s = cJSON_CreateObject(), *order = cJSON_AddArrayToObject(s, "order");
    cJSON *roam = cJSON_AddArrayToObject(s, "roamingMsgs"), *off = cJSON_AddArrayToObject(s, "offlineMsgs");
    cJSON *ptr = cJSON_AddArrayToObject(s, "readPointers"), *rc = cJSON_AddArrayToObject(s, "msgReceipts");
    cJSON *top = cJSON_AddArrayToObject(s, "stickTopSessions");
    for (;;) {
        cJSON *f = cli_read(c, T_MS);
        if (!f) { cJSON_Delete(s); return -2; }
        const char *name = str_of(f, "push");
        cJSON_AddItemToArray(order, cJSON_CreateString(name));
        const cJSON *ack = obj_of(obj_of(f, "data"), "ack");
        if (cJSON_IsString(ack)) {
            cJSON_DeleteItemFromObject(s, "lastAck");
            cJSON_AddStringToObject(s, "lastAck", ack->valuestring);
        }
        if (strcmp(name, "roamingMsgs") == 0) append_items(roam, f, "msgs");
        else if (strcmp(name, "offlineMsgs") == 0) append_items(off, f, "msgs");
        else if (strcmp(name, "readPointers") == 0) append_items(ptr, f, "pointers");
        else if (strcmp(name, "msgReceipts") == 0) append_items(rc, f, "receipts");
        else if (strcmp(name, "stickTopSessions") == 0) append_items(top, f, "sessions");
        else if (strcmp(name, "syncDone") == 0) {
            cJSON_AddItemToObject(s, "cursors", cJSON_Duplicate(obj_of(obj_of(f, "data"), "cursors"), 1));
            cJSON_Delete(f);
            break;
        } else cJSON_AddItemToArray(c->stash, cJSON_Duplicate(f, 1));
        cJSON_Delete(f);
    }
    if (sync) *sync = s;
    else cJSON_Delete(s);
    return 200;
}

static int arr_len(const cJSON *s, const char *k) { return cJSON_GetArraySize(obj_of(s, k)); }

static const cJSON *find_by(const cJSON *arr, const char *key, const char *val) {
    for (const cJSON *it = arr ? arr->child : NULL; it; it = it->next)
        if (strcmp(str_of(it, key), val) == 0) return it;
    return NULL;
}

/* The cursors object of a sync, printed, for the next login. */
static char *cursors_text(const cJSON *sync) {
    return cJSON_PrintUnformatted(obj_of(sync, "cursors"));
}

static cJSON *send_text(cli *c, const char *scene, const char *to, const char *idc, const char *text) {
    char data[512];
    snprintf(data, sizeof data, "{\"scene\":\"%s\",\"to\":\"%s\",\"type\":\"text\",\"idClient\":\"%s\",\"text\":\"%s\"}",
             scene, to, idc, text);
    return cli_call(c, "sendMsg", data);
}

/* ---- scenarios --------------------------------------------------------- */

static void t_login(void) {
    cli c;
    cJSON *sync = NULL;
    test_cond("login: wrong token gets 302", cli_login(&c, "alice", "wrong", "d1", NULL, NULL) == 302);
    test_cond("login: the connection stays usable after 302", cli_barrier(&c));
    cli_free(&c);
    test_cond("login: unknown account gets 302", cli_login(&c, "nobody", "secret", "d1", NULL, NULL) == 302);
    cli_free(&c);

    cli_open(&c, NIM_PROTO_SUBPROTOCOL);
    test_cond("before login: sendMsg refused with 401",
              cli_call_code(&c, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"text\",\"idClient\":\"x\",\"text\":\"hi\"}") == 401);
    test_cond("before login: deleteSessions refused with 401",
              cli_call_code(&c, "deleteSessions", "{\"sessions\":[\"p2p-bob\"]}") == 401);
    test_cond("before login: getStickTop refused with 401", cli_call_code(&c, "getStickTop", NULL) == 401);
    test_cond("before login: ping answered", cli_call_code(&c, "ping", NULL) == 200);
    cJSON *r = cli_call(&c, "login", "{\"account\":\"alice\",\"token\":\"secret\",\"deviceId\":\"d1\",\"version\":99}");
    test_cond("login: other protocol version gets 426 naming ours",
              code_of(r) == 426 && int_of(obj_of(r, "data"), "version") == NIM_PROTO_VERSION);
    cJSON_Delete(r);
    test_cond("login: token missing gets 414",
              cli_call_code(&c, "login", "{\"account\":\"alice\",\"deviceId\":\"d1\",\"version\":1}") == 414);
    test_cond("login: token of the wrong type gets 414",
              cli_call_code(&c, "login", "{\"account\":\"alice\",\"token\":5,\"deviceId\":\"d1\",\"version\":1}") == 414);
    test_cond("login: bad account name gets 414",
              cli_call_code(&c, "login", "{\"account\":\"a b\",\"token\":\"x\",\"deviceId\":\"d1\",\"version\":1}") == 414);
    test_cond("login: cursors of the wrong type gets 414",
              cli_call_code(&c, "login", "{\"account\":\"alice\",\"token\":\"secret\",\"deviceId\":\"d1\",\"version\":1,\"cursors\":[]}") == 414);
    cli_free(&c);

    /* A connection without a subprotocol header gets the default protocol. */
    test_cond("login: connect without Sec-WebSocket-Protocol", cli_open(&c, NULL) == 0 && cli_barrier(&c));
    cli_free(&c);

    test_cond("login: right token", cli_login(&c, "alice", "secret", "d1", NULL, &sync) == 200);
    const cJSON *order = obj_of(sync, "order");
    test_cond("login: a fresh account syncs stickTopSessions then syncDone",
              cJSON_GetArraySize(order) == 2 && strcmp(cJSON_GetArrayItem(order, 0)->valuestring, "stickTopSessions") == 0 &&
              strcmp(cJSON_GetArrayItem(order, 1)->valuestring, "syncDone") == 0);
    test_cond("login: syncDone carries both cursors",
              int_of(obj_of(sync, "cursors"), "msgs") >= 0 && int_of(obj_of(sync, "cursors"), "state") >= 0);
    test_cond("login: a second login on the same connection gets 409",
              cli_call_code(&c, "login", "{\"account\":\"bob\",\"token\":\"secret\",\"deviceId\":\"d1\",\"version\":1}") == 409);
    test_cond("logout: answered 200", cli_call_code(&c, "logout", NULL) == 200);
    test_cond("logout: then the server closes with 1000", ws_wait_closed(&c.ws, T_MS) && c.ws.close_code == 1000);
    cJSON_Delete(sync);
    cli_free(&c);

    /* Repeated failed logins end the connection. */
    cli_open(&c, NIM_PROTO_SUBPROTOCOL);
    for (int i = 0; i < 5; i++)
        cli_call_code(&c, "login", "{\"account\":\"alice\",\"token\":\"bad\",\"deviceId\":\"d1\",\"version\":1}");
    test_cond("login: five failures close the connection with 1008",
              ws_wait_closed(&c.ws, T_MS) && c.ws.close_code == 1008);
    cli_free(&c);
}

/* "\u0000" would cut a string short after decoding: refused, naming the
 * field; a cursor beyond what the server issued does not stick. */
static void t_nul_and_exact(void) {
    cli c;
    cJSON *sync = NULL;
    cli_open(&c, NIM_PROTO_SUBPROTOCOL);
    cJSON *r = cli_call(&c, "login", "{\"account\":\"alice\",\"token\":\"secret\\u0000junk\","
                        "\"deviceId\":\"nul\",\"version\":1}");
    test_cond("NUL: a token with \\u0000 does not log in (400, naming the field)",
              code_of(r) == 400 && strstr(str_of(r, "error"), "token") != NULL);
    cJSON_Delete(r);
    cli_free(&c);
    cli_login(&c, "alice", "secret", "nul-a", "{\"msgs\":9007199254740991,\"state\":9007199254740991}", &sync);
    test_cond("cursors: a state cursor beyond anything issued counts as none (syncDone has the server's)",
              int_of(obj_of(sync, "cursors"), "state") >= 0 &&
              int_of(obj_of(sync, "cursors"), "state") < 9007199254740991LL &&
              int_of(obj_of(sync, "cursors"), "msgs") >= 0 &&
              int_of(obj_of(sync, "cursors"), "msgs") < 9007199254740991LL);
    cJSON_Delete(sync);
    r = send_text(&c, "p2p", "bob", "k\\u0000A", "x");
    test_cond("NUL: an idClient with \\u0000 is refused, naming the field",
              code_of(r) == 400 && strstr(str_of(r, "error"), "idClient") != NULL);
    cJSON_Delete(r);
    cli_free(&c);
}

static void t_p2p(void) {
    cli a1, a2, b1, b2, b3;
    cJSON *sync = NULL;
    cli_login(&a1, "alice", "secret", "p2p-a1", NULL, NULL);
    cli_login(&a2, "alice", "secret", "p2p-a2", NULL, NULL);

    cJSON *r = send_text(&a1, "p2p", "bob", "m-1", "hello bob");
    const cJSON *m = obj_of(obj_of(r, "data"), "msg");
    char id1[32];
    snprintf(id1, sizeof id1, "%s", str_of(m, "idServer"));
    int64_t t1 = int_of(m, "time");
    test_cond("sendMsg: ack with server id and server time", code_of(r) == 200 && id1[0] && t1 > 0);
    test_cond("sendMsg: from is the logged-in account, fromDevice the device",
              strcmp(str_of(m, "from"), "alice") == 0 && strcmp(str_of(m, "fromDevice"), "p2p-a1") == 0 &&
              strcmp(str_of(m, "idClient"), "m-1") == 0 && strcmp(str_of(m, "text"), "hello bob") == 0);
    cJSON_Delete(r);
    cJSON *p = cli_push(&a2, "msg");
    test_cond("sendMsg: my other device gets the msg push",
              p && strcmp(str_of(obj_of(obj_of(p, "data"), "msg"), "idServer"), id1) == 0);
    cJSON_Delete(p);
    test_cond("sendMsg: the sending device gets no push of its own message", cli_none(&a1, "msg"));

    /* Resending the same idClient is idempotent. */
    r = send_text(&a1, "p2p", "bob", "m-1", "hello bob");
    test_cond("sendMsg: a resent idClient gets the same server id, marked duplicate",
              code_of(r) == 200 && strcmp(str_of(obj_of(obj_of(r, "data"), "msg"), "idServer"), id1) == 0 &&
              cJSON_IsTrue(obj_of(obj_of(r, "data"), "duplicate")));
    cJSON_Delete(r);
    test_cond("sendMsg: a duplicate is not pushed again", cli_none(&a2, "msg"));

    /* Bad sends. */
    test_cond("sendMsg: unknown peer gets 404", code_of(r = send_text(&a1, "p2p", "nobody", "m-x", "x")) == 404);
    cJSON_Delete(r);
    test_cond("sendMsg: unknown scene gets 414", code_of(r = send_text(&a1, "superTeam", "bob", "m-y", "x")) == 414);
    cJSON_Delete(r);
    test_cond("sendMsg: text missing gets 414",
              cli_call_code(&a1, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"text\",\"idClient\":\"m-z\"}") == 414);
    test_cond("sendMsg: idClient missing gets 414",
              cli_call_code(&a1, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"text\",\"text\":\"x\"}") == 414);
    test_cond("sendMsg: type notification refused",
              cli_call_code(&a1, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"notification\",\"idClient\":\"n\",\"text\":\"x\"}") == 414);
    test_cond("sendMsg: text of the wrong type gets 414",
              cli_call_code(&a1, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"text\",\"idClient\":\"n\",\"text\":[1]}") == 414);

    /* Bob was offline: his first login brings it as an offline message. */
    test_cond("offline: bob logs in", cli_login(&b1, "bob", "secret", "p2p-b1", NULL, &sync) == 200);
    const cJSON *off = obj_of(sync, "offlineMsgs");
    test_cond("offline: the message arrives as offline, once",
              cJSON_GetArraySize(off) == 1 && find_by(off, "idServer", id1) && arr_len(sync, "roamingMsgs") == 0);
    test_cond("offline: sync order is offlineMsgs, stickTopSessions, syncDone",
              strcmp(cJSON_GetArrayItem(obj_of(sync, "order"), 0)->valuestring, "offlineMsgs") == 0);
    test_cond("offline: syncDone's msgs cursor covers it",
              int_of(obj_of(sync, "cursors"), "msgs") >= atoll(id1));
    char *cur_b1 = cursors_text(sync);
    cJSON_Delete(sync);

    /* Unmarked, a second device of bob's also gets it as offline. */
    cli_login(&b2, "bob", "secret", "p2p-b2", NULL, &sync);
    test_cond("offline: stays offline for other devices until marked", arr_len(sync, "offlineMsgs") == 1);
    cJSON_Delete(sync);
    cli_free(&b2);

    char data[128];
    snprintf(data, sizeof data, "{\"ids\":[\"%s\"]}", id1);
    r = cli_call(&b1, "markMsgsReceived", data);
    test_cond("markMsgsReceived: one message marked", code_of(r) == 200 && int_of(obj_of(r, "data"), "count") == 1);
    cJSON_Delete(r);
    test_cond("markMsgsReceived: neither ids nor upTo gets 414", cli_call_code(&b1, "markMsgsReceived", "{}") == 414);
    test_cond("markMsgsReceived: bad id gets 414", cli_call_code(&b1, "markMsgsReceived", "{\"ids\":[\"abc\"]}") == 414);
    cli_login(&b2, "bob", "secret", "p2p-b2", NULL, &sync);
    test_cond("roaming: once marked, a fresh device gets it as roaming",
              arr_len(sync, "offlineMsgs") == 0 && arr_len(sync, "roamingMsgs") == 1 &&
              find_by(obj_of(sync, "roamingMsgs"), "idServer", id1));
    cJSON_Delete(sync);

    /* Live: both bob devices online get the push, and it is not offline. */
    r = send_text(&a1, "p2p", "bob", "m-2", "are you there");
    char id2[32];
    snprintf(id2, sizeof id2, "%s", str_of(obj_of(obj_of(r, "data"), "msg"), "idServer"));
    cJSON_Delete(r);
    test_cond("server ids increase", atoll(id2) > atoll(id1));
    p = cli_push(&b1, "msg");
    test_cond("live: bob's first device gets the push", p && strcmp(str_of(obj_of(obj_of(p, "data"), "msg"), "idServer"), id2) == 0);
    cJSON_Delete(p);
    p = cli_push(&b2, "msg");
    test_cond("live: bob's second device gets the push", p != NULL);
    cJSON_Delete(p);
    p = cli_push(&a2, "msg");
    test_cond("live: alice's other device gets it too", p != NULL);
    cJSON_Delete(p);

    /* Bob replies; alice's devices see it. */
    r = send_text(&b1, "p2p", "alice", "b-1", "yes");
    test_cond("reply: bob -> alice acked", code_of(r) == 200);
    cJSON_Delete(r);
    p = cli_push(&a1, "msg");
    test_cond("reply: alice gets bob's message", p && strcmp(str_of(obj_of(obj_of(p, "data"), "msg"), "from"), "bob") == 0);
    cJSON_Delete(p);
    cli_free(&b2);

    /* Reconnect with cursors: only what is new. */
    cli_free(&b1);
    cli_login(&b3, "bob", "secret", "p2p-b1", cur_b1, &sync);
    const cJSON *roam = obj_of(sync, "roamingMsgs");
    const cJSON *offl = obj_of(sync, "offlineMsgs");
    test_cond("cursors: a reconnect brings only messages after the cursor",
              !find_by(roam, "idServer", id1) && !find_by(offl, "idServer", id1) &&
              (find_by(roam, "idServer", id2) || find_by(offl, "idServer", id2)));
    test_cond("delivery: a live push no device acknowledged is still offline",
              find_by(offl, "idServer", id2) && !find_by(roam, "idServer", id2));
    test_cond("delivery: each offline page carries the ack to send once stored",
              strcmp(str_of(sync, "lastAck"), id2) >= 0 && atoll(str_of(sync, "lastAck")) >= atoll(id2));
    char mark2[64];
    snprintf(mark2, sizeof mark2, "{\"upTo\":\"%s\"}", str_of(sync, "lastAck"));
    test_cond("delivery: acknowledged by upTo", cli_call_code(&b3, "markMsgsReceived", mark2) == 200);
    cJSON_Delete(sync);
    cli b5;
    cli_login(&b5, "bob", "secret", "p2p-b5", NULL, &sync);
    test_cond("delivery: once acknowledged, a fresh device gets it as roaming",
              find_by(obj_of(sync, "roamingMsgs"), "idServer", id2) && !find_by(obj_of(sync, "offlineMsgs"), "idServer", id2));
    cJSON_Delete(sync);
    cli_free(&b5);
    free(cur_b1);

    /* Same account + device logging in again kicks the older connection. */
    cli b4;
    cli_login(&b4, "bob", "secret", "p2p-b1", NULL, NULL);
    p = cli_push(&b3, "kicked");
    test_cond("kick: the older connection of the same device gets kicked", p != NULL);
    cJSON_Delete(p);
    test_cond("kick: and is closed with 4001", ws_wait_closed(&b3.ws, T_MS) && b3.ws.close_code == 4001);
    test_cond("kick: the new connection works", cli_barrier(&b4));
    cli_free(&b3);
    cli_free(&b4);
    cli_free(&a1);
    cli_free(&a2);
}

static void t_read_pointers(void) {
    cli a1, a2, a3;
    cJSON *sync = NULL;
    cli_login(&a1, "alice", "secret", "rp-1", NULL, &sync);
    char *cur0 = cursors_text(sync);
    cJSON_Delete(sync);
    cli_login(&a2, "alice", "secret", "rp-2", NULL, NULL);

    cJSON *r = cli_call(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-bob\",\"ack\":1000},{\"sessionId\":\"team-7\",\"ack\":5}]}");
    const cJSON *ps = obj_of(obj_of(r, "data"), "pointers");
    test_cond("read pointers: update answered with the stored pointers",
              code_of(r) == 200 && int_of(find_by(ps, "sessionId", "p2p-bob"), "ack") == 1000);
    cJSON_Delete(r);
    cJSON *p = cli_push(&a2, "readPointers");
    const cJSON *pp = obj_of(obj_of(p, "data"), "pointers");
    test_cond("read pointers: my other device gets the push",
              p && int_of(find_by(pp, "sessionId", "p2p-bob"), "ack") == 1000 &&
              int_of(find_by(pp, "sessionId", "p2p-bob"), "ver") > 0);
    cJSON_Delete(p);
    test_cond("read pointers: not pushed back to the device that set it", cli_none(&a1, "readPointers"));

    r = cli_call(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-bob\",\"ack\":500}]}");
    test_cond("read pointers: never move back (reply keeps 1000)",
              code_of(r) == 200 && int_of(cJSON_GetArrayItem(obj_of(obj_of(r, "data"), "pointers"), 0), "ack") == 1000);
    cJSON_Delete(r);
    test_cond("read pointers: a no-op is not pushed", cli_none(&a2, "readPointers"));
    test_cond("read pointers: bad session id gets 414",
              cli_call_code(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"bob\",\"ack\":1}]}") == 414);
    r = cli_call(&a1, "updateReadPointers",
                 "{\"pointers\":[{\"sessionId\":\"team-7\",\"ack\":6},{\"sessionId\":\"p2p-bob\",\"ack\":9007199254740991}]}");
    test_cond("read pointers: one past the session's latest message (+ skew) gets 414, naming it",
              code_of(r) == 414 && strstr(str_of(r, "error"), "pointers[1].ack") != NULL);
    cJSON_Delete(r);
    r = cli_call(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-nobody\",\"ack\":300001}]}");
    test_cond("read pointers: a session without messages allows only the skew", code_of(r) == 414);
    cJSON_Delete(r);
    r = cli_call(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"team-7\",\"ack\":5}]}");
    test_cond("read pointers: nothing of a refused request was stored (team-7 kept 5, not 6)",
              code_of(r) == 200 && int_of(cJSON_GetArrayItem(obj_of(obj_of(r, "data"), "pointers"), 0), "ack") == 5);
    cJSON_Delete(r);
    test_cond("read pointers: fractional ack gets 414",
              cli_call_code(&a1, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-bob\",\"ack\":1.5}]}") == 414);
    test_cond("read pointers: empty list gets 414", cli_call_code(&a1, "updateReadPointers", "{\"pointers\":[]}") == 414);

    cli_login(&a3, "alice", "secret", "rp-3", cur0, &sync);
    const cJSON *sp = obj_of(sync, "readPointers");
    test_cond("read pointers: a login after the change syncs them",
              int_of(find_by(sp, "sessionId", "p2p-bob"), "ack") == 1000 && find_by(sp, "sessionId", "team-7"));
    char *cur1 = cursors_text(sync);
    cJSON_Delete(sync);
    cli_free(&a3);
    cli_login(&a3, "alice", "secret", "rp-3", cur1, &sync);
    test_cond("read pointers: with the newer state cursor nothing is resent", arr_len(sync, "readPointers") == 0);
    cJSON_Delete(sync);
    free(cur0);
    free(cur1);
    cli_free(&a1);
    cli_free(&a2);
    cli_free(&a3);

    /* Bob's pointers are his own: alice's never reach him. */
    cli_login(&a1, "bob", "secret", "rp-b", NULL, &sync);
    test_cond("read pointers: another account never sees mine",
              !find_by(obj_of(sync, "readPointers"), "sessionId", "team-7"));
    cJSON_Delete(sync);
    cli_free(&a1);
}

static void t_receipts(void) {
    cli a, b, c;
    cli_login(&a, "alice", "secret", "rc-a", NULL, NULL);
    cli_login(&b, "bob", "secret", "rc-b", NULL, NULL);
    cli_login(&c, "carol", "secret", "rc-c", NULL, NULL);
    cJSON *r = send_text(&a, "p2p", "bob", "rc-1", "read me");
    char id[32], data[96];
    snprintf(id, sizeof id, "%s", str_of(obj_of(obj_of(r, "data"), "msg"), "idServer"));
    int64_t t = int_of(obj_of(obj_of(r, "data"), "msg"), "time");
    cJSON_Delete(r);
    snprintf(data, sizeof data, "{\"idServer\":\"%s\"}", id);

    test_cond("receipt: carol cannot send a receipt for alice->bob (403)",
              cli_call_code(&c, "sendMsgReceipt", data) == 403);
    test_cond("receipt: the sender cannot either (403)", cli_call_code(&a, "sendMsgReceipt", data) == 403);
    test_cond("receipt: alice got no receipt from those", cli_none(&a, "msgReceipts"));
    test_cond("receipt: unknown message gets 404",
              cli_call_code(&b, "sendMsgReceipt", "{\"idServer\":\"999999\"}") == 404);
    test_cond("receipt: idServer as a number gets 414",
              cli_call_code(&b, "sendMsgReceipt", "{\"idServer\":5}") == 414);
    r = cli_call(&b, "sendMsgReceipt", data);
    test_cond("receipt: bob's receipt answered with the session and time",
              code_of(r) == 200 && strcmp(str_of(obj_of(r, "data"), "sessionId"), "p2p-alice") == 0 &&
              int_of(obj_of(r, "data"), "time") == t);
    cJSON_Delete(r);
    cJSON *p = cli_push(&a, "msgReceipts");
    const cJSON *it = cJSON_GetArrayItem(obj_of(obj_of(p, "data"), "receipts"), 0);
    test_cond("receipt: pushed to the peer as its session with bob",
              p && strcmp(str_of(it, "sessionId"), "p2p-bob") == 0 && int_of(it, "time") == t &&
              strcmp(str_of(it, "idServer"), id) == 0);
    cJSON_Delete(p);
    cJSON *sync = NULL;
    cli a2;
    cli_login(&a2, "alice", "secret", "rc-a2", NULL, &sync);
    test_cond("receipt: synced at login", int_of(find_by(obj_of(sync, "msgReceipts"), "sessionId", "p2p-bob"), "time") == t);
    cJSON_Delete(sync);
    cli_free(&a2);
    cli_free(&a);
    cli_free(&b);
    cli_free(&c);
}

static void t_delete_sessions(void) {
    cli a, b, c;
    cJSON *sync = NULL, *r;
    cli_login(&a, "alice", "secret", "del-a", NULL, NULL);
    cli_login(&b, "bob", "secret", "del-b", NULL, NULL);
    cJSON_Delete(send_text(&a, "p2p", "bob", "del-1", "before delete"));
    /* carol deleting "her" sessions with alice and bob touches nothing of theirs */
    cli_login(&c, "carol", "secret", "del-c", NULL, NULL);
    test_cond("delete: carol deletes her p2p-alice and p2p-bob",
              cli_call_code(&c, "deleteSessions", "{\"sessions\":[\"p2p-alice\",\"p2p-bob\"]}") == 200);
    cli_free(&c);

    test_cond("delete: alice deletes p2p-bob",
              cli_call_code(&a, "deleteSessions", "{\"sessions\":[\"p2p-bob\"]}") == 200);
    test_cond("delete: bad session id gets 414",
              cli_call_code(&a, "deleteSessions", "{\"sessions\":[\"bob\"]}") == 414);
    test_cond("delete: sessions not an array gets 414",
              cli_call_code(&a, "deleteSessions", "{\"sessions\":\"p2p-bob\"}") == 414);
    cli a2;
    cli_login(&a2, "alice", "secret", "del-a2", NULL, &sync);
    test_cond("delete: a fresh login of alice has no p2p-bob roaming",
              !find_by(obj_of(sync, "roamingMsgs"), "to", "bob") && !find_by(obj_of(sync, "roamingMsgs"), "from", "bob"));
    cJSON_Delete(sync);
    cli_free(&a2);

    cli b2;
    cli_login(&b2, "bob", "secret", "del-b2", NULL, &sync);
    /* bob's device never acknowledged it: it is still offline for him */
    test_cond("delete: bob's side is untouched (alice's delete is alice's)",
              find_by(obj_of(sync, "offlineMsgs"), "idClient", "del-1") != NULL);
    test_cond("delete: carol's delete did not reach bob either",
              arr_len(sync, "roamingMsgs") + arr_len(sync, "offlineMsgs") >= 1);
    cJSON_Delete(sync);
    cli_free(&b2);

    r = send_text(&b, "p2p", "alice", "del-2", "after delete");
    cJSON_Delete(r);
    cli_login(&a2, "alice", "secret", "del-a3", NULL, &sync);
    const cJSON *roam = obj_of(sync, "roamingMsgs"), *off = obj_of(sync, "offlineMsgs");
    test_cond("delete: a new message brings the session back, without the old ones",
              find_by(off, "idClient", "del-2") && !find_by(roam, "idClient", "del-1") &&
              !find_by(off, "idClient", "del-1"));
    cJSON_Delete(sync);
    cli_free(&a2);
    cli_free(&a);
    cli_free(&b);
}

static void t_stick_top(void) {
    cli a1, a2, b;
    cJSON *sync = NULL, *r, *p;
    cli_login(&a1, "alice", "secret", "st-1", NULL, NULL);
    cli_login(&a2, "alice", "secret", "st-2", NULL, NULL);
    r = cli_call(&a1, "addStickTop", "{\"sessionId\":\"p2p-bob\",\"topCustom\":\"pin\"}");
    const cJSON *s = obj_of(obj_of(r, "data"), "session");
    test_cond("stick top: add answered with the session",
              code_of(r) == 200 && strcmp(str_of(s, "sessionId"), "p2p-bob") == 0 &&
              strcmp(str_of(s, "topCustom"), "pin") == 0 && int_of(s, "updateTime") > 0);
    cJSON_Delete(r);
    p = cli_push(&a2, "stickTop");
    test_cond("stick top: add pushed to my other device",
              p && strcmp(str_of(obj_of(p, "data"), "op"), "add") == 0 &&
              strcmp(str_of(obj_of(obj_of(p, "data"), "session"), "sessionId"), "p2p-bob") == 0);
    cJSON_Delete(p);
    test_cond("stick top: update", cli_call_code(&a1, "updateStickTop", "{\"sessionId\":\"p2p-bob\",\"topCustom\":\"pin2\"}") == 200);
    p = cli_push(&a2, "stickTop");
    test_cond("stick top: update pushed", p && strcmp(str_of(obj_of(p, "data"), "op"), "update") == 0 &&
              strcmp(str_of(obj_of(obj_of(p, "data"), "session"), "topCustom"), "pin2") == 0);
    cJSON_Delete(p);
    test_cond("stick top: update of a non-sticky session gets 404",
              cli_call_code(&a1, "updateStickTop", "{\"sessionId\":\"p2p-carol\"}") == 404);
    test_cond("stick top: topCustom of the wrong type gets 414",
              cli_call_code(&a1, "addStickTop", "{\"sessionId\":\"p2p-carol\",\"topCustom\":{}}") == 414);
    test_cond("stick top: add without topCustom", cli_call_code(&a1, "addStickTop", "{\"sessionId\":\"team-3\"}") == 200);
    p = cli_push(&a2, "stickTop");
    test_cond("stick top: second add pushed", p && strcmp(str_of(obj_of(obj_of(p, "data"), "session"), "sessionId"), "team-3") == 0);
    cJSON_Delete(p);
    r = cli_call(&a1, "getStickTop", NULL);
    const cJSON *list = obj_of(obj_of(r, "data"), "sessions");
    test_cond("stick top: get lists both", code_of(r) == 200 && cJSON_GetArraySize(list) == 2 &&
              strcmp(str_of(find_by(list, "sessionId", "p2p-bob"), "topCustom"), "pin2") == 0);
    cJSON_Delete(r);

    cli_login(&b, "bob", "secret", "st-b", NULL, &sync);
    test_cond("stick top: another account's list is its own", arr_len(sync, "stickTopSessions") == 0);
    test_cond("stick top: bob cannot delete alice's (it is not his)",
              cli_call_code(&b, "deleteStickTop", "{\"sessionId\":\"p2p-bob\"}") == 404);
    test_cond("stick top: bob's attempt reached no alice device", cli_none(&a2, "stickTop"));
    cJSON_Delete(sync);
    cli_free(&b);

    test_cond("stick top: delete", cli_call_code(&a1, "deleteStickTop", "{\"sessionId\":\"team-3\"}") == 200);
    p = cli_push(&a2, "stickTop");
    test_cond("stick top: delete pushed", p && strcmp(str_of(obj_of(p, "data"), "op"), "delete") == 0);
    cJSON_Delete(p);
    test_cond("stick top: deleting again gets 404", cli_call_code(&a1, "deleteStickTop", "{\"sessionId\":\"team-3\"}") == 404);
    cli a3;
    cli_login(&a3, "alice", "secret", "st-3", NULL, &sync);
    test_cond("stick top: the login sync has the current list",
              arr_len(sync, "stickTopSessions") == 1 && find_by(obj_of(sync, "stickTopSessions"), "sessionId", "p2p-bob"));
    cJSON_Delete(sync);
    cli_free(&a3);
    cli_free(&a1);
    cli_free(&a2);
}

static char g_team[32];

static void t_teams(void) {
    cli a, b, d;
    cJSON *sync = NULL, *r, *p;
    cli_login(&a, "alice", "secret", "tm-a", NULL, NULL);
    cli_login(&b, "bob", "secret", "tm-b", NULL, NULL);
    r = cli_call(&a, "createTeam", "{\"name\":\"friends\",\"accounts\":[\"bob\",\"nobody\",\"ghost\"]}");
    test_cond("team: unknown members get 404 listing them",
              code_of(r) == 404 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "unknown")) == 2);
    cJSON_Delete(r);
    test_cond("team: name missing gets 414", cli_call_code(&a, "createTeam", "{\"accounts\":[\"bob\"]}") == 414);
    test_cond("team: a client may not send a notification (the server's own type)",
              cli_call_code(&a, "sendMsg", "{\"scene\":\"p2p\",\"to\":\"bob\",\"type\":\"notification\","
                            "\"idClient\":\"tm-n\",\"content\":\"{}\"}") == 414);
    test_cond("team: membership changes of a team that does not exist get 404, bad ids 414",
              cli_call_code(&a, "leaveTeam", "{\"teamId\":\"999999\"}") == 404 &&
              cli_call_code(&a, "addTeamMembers", "{\"teamId\":\"x\",\"accounts\":[\"bob\"]}") == 414 &&
              cli_call_code(&a, "removeTeamMembers", "{\"teamId\":\"1\"}") == 414);
    r = cli_call(&a, "createTeam", "{\"name\":\"friends\",\"accounts\":[\"bob\",\"carol\",\"bob\",\"alice\"]}");
    const cJSON *team = obj_of(obj_of(r, "data"), "team");
    snprintf(g_team, sizeof g_team, "%s", str_of(team, "teamId"));
    test_cond("team: created with an id and the members (deduplicated, owner included)",
              code_of(r) == 200 && g_team[0] && cJSON_GetArraySize(obj_of(team, "members")) == 3 &&
              strcmp(str_of(team, "owner"), "alice") == 0);
    cJSON_Delete(r);
    p = cli_push(&b, "team");
    test_cond("team: members' devices get the team push",
              p && strcmp(str_of(obj_of(obj_of(p, "data"), "team"), "teamId"), g_team) == 0);
    cJSON_Delete(p);

    r = send_text(&a, "team", g_team, "tm-1", "hi team");
    test_cond("team: a member sends", code_of(r) == 200);
    cJSON_Delete(r);
    p = cli_push(&b, "msg");
    test_cond("team: the message reaches an online member",
              p && strcmp(str_of(obj_of(obj_of(p, "data"), "msg"), "to"), g_team) == 0 &&
              strcmp(str_of(obj_of(obj_of(p, "data"), "msg"), "scene"), "team") == 0);
    cJSON_Delete(p);

    cli_login(&d, "dave", "secret", "tm-d", NULL, NULL);
    test_cond("team: a non-member cannot send (403)", code_of(r = send_text(&d, "team", g_team, "tm-d", "let me in")) == 403);
    cJSON_Delete(r);
    test_cond("team: the refused message reached nobody", cli_none(&b, "msg"));
    test_cond("team: unknown team gets 404", code_of(r = send_text(&d, "team", "99999", "tm-e", "x")) == 404);
    cJSON_Delete(r);
    test_cond("team: team id that is not a number gets 414", code_of(r = send_text(&d, "team", "abc", "tm-f", "x")) == 414);
    cJSON_Delete(r);
    cli_free(&d);

    cli c;
    cli_login(&c, "carol", "secret", "tm-c", NULL, &sync);
    test_cond("team: an offline member gets it as offline",
              find_by(obj_of(sync, "offlineMsgs"), "idClient", "tm-1") != NULL);
    cJSON_Delete(sync);
    r = send_text(&c, "team", g_team, "tm-2", "carol here");
    cJSON_Delete(r);
    p = cli_push(&a, "msg");
    test_cond("team: alice gets carol's team message", p != NULL);
    cJSON_Delete(p);
    p = cli_push(&b, "msg");
    test_cond("team: bob gets carol's team message", p != NULL);
    cJSON_Delete(p);
    cli_free(&c);
    cli_free(&a);
    cli_free(&b);
}

static void t_hostile(void) {
    cli h;
    cJSON *r;
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    struct { const char *what, *frame; } bad[] = {
        { "not JSON", "hello" },
        { "truncated JSON", "{\"id\":1,\"cmd\":\"pi" },
        { "array root", "[1,2,3]" },
        { "id of the wrong type", "{\"id\":\"1\",\"cmd\":\"ping\"}" },
        { "cmd of the wrong type", "{\"id\":1,\"cmd\":{}}" },
        { "data of the wrong type", "{\"id\":1,\"cmd\":\"ping\",\"data\":[]}" },
        { "a response sent to the server", "{\"id\":1,\"cmd\":\"ping\",\"code\":200}" },
        { "a push sent to the server", "{\"push\":\"msg\",\"data\":{}}" },
        { "invalid UTF-8", "{\"id\":1,\"cmd\":\"p\xff\xfe\"}" },
        { "deep nesting", "{\"id\":1,\"cmd\":\"ping\",\"data\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]}}" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ws_send_text(&h.ws, bad[i].frame);
        r = cli_read(&h, T_MS);
        char what[128];
        snprintf(what, sizeof what, "hostile: %s gets a 400 reply with a reason", bad[i].what);
        test_cond(what, code_of(r) == 400 && str_of(r, "error")[0] != 0);
        cJSON_Delete(r);
    }
    ws_send_text(&h.ws, "{\"id\":77,\"cmd\":5}");
    r = cli_read(&h, T_MS);
    test_cond("hostile: a bad envelope with a readable id is answered to that id",
              code_of(r) == 400 && int_of(r, "id") == 77);
    cJSON_Delete(r);
    test_cond("hostile: unknown command gets 405", cli_call_code(&h, "rmrf", "{}") == 405);
    test_cond("hostile: the connection still works after all that", cli_barrier(&h));
    cli_free(&h);

    /* A logged-in connection sending garbage keeps working too. */
    cli_login(&h, "alice", "secret", "hostile-1", NULL, NULL);
    ws_send_text(&h.ws, "{{{{");
    r = cli_read(&h, T_MS);
    test_cond("hostile: garbage after login gets 400", code_of(r) == 400);
    cJSON_Delete(r);
    test_cond("hostile: unknown fields in data are ignored",
              cli_call_code(&h, "getStickTop", "{\"whatever\":[1,{\"x\":null}]}") == 200);
    test_cond("hostile: huge number as ack gets 414",
              cli_call_code(&h, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-bob\",\"ack\":1e308}]}") == 414);
    test_cond("hostile: 1001 pointers (over the batch limit) gets 414", ({
        char *big = malloc(64 * 1024);
        size_t n = (size_t)sprintf(big, "{\"pointers\":[");
        for (int i = 0; i < 1001; i++) n += (size_t)sprintf(big + n, "%s{\"sessionId\":\"p2p-u%d\",\"ack\":1}", i ? "," : "", i);
        sprintf(big + n, "]}");
        int code = cli_call_code(&h, "updateReadPointers", big);
        free(big);
        code == 414;
    }));
    cli_free(&h);

    /* Binary frames are not part of the protocol. */
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    ws_send_frame(&h.ws, 2, 1, "\x01\x02", 2);
    test_cond("hostile: a binary frame closes with 1003", ws_wait_closed(&h.ws, T_MS) && h.ws.close_code == 1003);
    cli_free(&h);

    /* Oversized frames: one big frame, fragments adding up, a lying length. */
    size_t big = NIM_PROTO_MAX_REQUEST + 100;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    cli_login(&h, "alice", "secret", "hostile-2", NULL, NULL);
    ws_send_frame(&h.ws, 1, 1, buf, big);
    test_cond("hostile: a frame over 64 KiB closes with 1009",
              ws_wait_closed(&h.ws, T_MS) && h.ws.close_code == 1009 && h.ws.close_reason[0]);
    cli_free(&h);
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    for (int i = 0; i < 5 && !h.ws.closed; i++)
        ws_send_frame(&h.ws, i == 0 ? 1 : 0, 0, buf, 20000);
    test_cond("hostile: fragments adding up over 64 KiB close with 1009",
              ws_wait_closed(&h.ws, T_MS) && h.ws.close_code == 1009);
    cli_free(&h);
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    ws_send_frame_ex(&h.ws, 1, 1, "{", 1, (uint64_t)1 << 40);
    test_cond("hostile: a frame announcing 1 TiB closes with 1009 at once",
              ws_wait_closed(&h.ws, T_MS) && h.ws.close_code == 1009);
    cli_free(&h);
    /* Exactly at the limit is accepted (and answered, as not JSON...). */
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    memcpy(buf, "{\"id\":5,\"cmd\":\"ping\"}", 21);
    ws_send_frame(&h.ws, 1, 1, buf, NIM_PROTO_MAX_REQUEST);
    r = cli_read(&h, T_MS);
    test_cond("hostile: a frame of exactly 64 KiB is accepted", code_of(r) == 200 && int_of(r, "id") == 5);
    cJSON_Delete(r);
    /* ...and a fragmented message within the limit is reassembled. */
    ws_send_frame(&h.ws, 1, 0, "{\"id\":6,", 8);
    ws_send_frame(&h.ws, 0, 0, "\"cmd\":", 6);
    ws_send_frame(&h.ws, 0, 1, "\"ping\"}", 7);
    r = cli_read(&h, T_MS);
    test_cond("hostile: a fragmented message is reassembled", code_of(r) == 200 && int_of(r, "id") == 6);
    cJSON_Delete(r);
    cli_free(&h);
    free(buf);

    /* Too many malformed frames end the connection. */
    cli_open(&h, NIM_PROTO_SUBPROTOCOL);
    for (int i = 0; i < 20 && !h.ws.closed; i++) ws_send_text(&h.ws, "nope");
    test_cond("hostile: 16 malformed frames close with 1008", ws_wait_closed(&h.ws, T_MS) && h.ws.close_code == 1008);
    cli_free(&h);

    /* Not even WebSocket: raw bytes on the TCP port. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int conn_ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    const char junk[] = "\x16\x03\x01\x02\x00garbage\r\n\r\n\x00\xff";
    if (conn_ok) ws_write_all(fd, junk, sizeof junk);
    ws_t raw = { .fd = fd };
    int closed = ws_wait_closed(&raw, T_MS);
    test_cond("hostile: non-HTTP bytes get the connection closed", conn_ok && closed);
    free(raw.in);
    free(raw.msg);
    close(fd);

    cli_login(&h, "alice", "secret", "hostile-3", NULL, NULL);
    test_cond("hostile: after all of it the server still serves logins", cli_barrier(&h));
    cli_free(&h);
}

/* The SDK's network client will be libwebsockets: check that an lws client
 * negotiates nim.v1 with the server and receives a sync bigger than one
 * batch (several frames near 256 KiB, each complete and under 1 MiB). */
typedef struct {
    char   *rx;
    size_t  rx_len;
    int     established, frames, offline, done, failed;
    size_t  max_frame;
    const char *login;
} lws_probe;

static int probe_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    lws_probe *p = lws_context_user(lws_get_context(wsi));
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        p->established = 1;
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        size_t n = strlen(p->login);
        unsigned char *buf = malloc(LWS_PRE + n);
        memcpy(buf + LWS_PRE, p->login, n);
        int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
        free(buf);
        if (w < (int)n) { p->failed = 1; return -1; }
        break;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        char *g = realloc(p->rx, p->rx_len + len + 1);
        if (!g) { p->failed = 1; return -1; }
        p->rx = g;
        memcpy(p->rx + p->rx_len, in, len);
        p->rx_len += len;
        if (!lws_is_final_fragment(wsi)) break;
        p->rx[p->rx_len] = 0;
        if (p->rx_len > p->max_frame) p->max_frame = p->rx_len;
        nim_frame f;
        const char *err;
        if (nim_proto_decode(p->rx, p->rx_len, NIM_PROTO_MAX_FRAME, &f, &err) != NIM_CODE_OK) {
            p->failed = 1;
        } else {
            p->frames++;
            if (f.kind == NIM_FRAME_RESPONSE && f.code != 200) p->failed = 1;
            if (f.kind == NIM_FRAME_PUSH && strcmp(f.name, "offlineMsgs") == 0)
                p->offline += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(f.data, "msgs"));
            if (f.kind == NIM_FRAME_PUSH && strcmp(f.name, "syncDone") == 0) p->done = 1;
            nim_frame_free(&f);
        }
        p->rx_len = 0;
        break;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!p->done) p->failed = 1;
        break;
    default:
        break;
    }
    return 0;
}

static void t_lws_client(void) {
    cli d;
    cli_login(&d, "dave", "secret", "big-d", NULL, NULL);
    enum { N = 40, TEXT = 15000 };
    char *data = malloc(TEXT + 256);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        int n = sprintf(data, "{\"scene\":\"p2p\",\"to\":\"carol\",\"type\":\"text\",\"idClient\":\"big-%d\",\"text\":\"", i);
        memset(data + n, 'x', TEXT);
        strcpy(data + n + TEXT, "\"}");
        ok &= cli_call_code(&d, "sendMsg", data) == 200;
    }
    free(data);
    cli_free(&d);
    test_cond("lws client: 40 messages of 15 KB sent", ok);

    static const struct lws_protocols protos[] = {
        { NIM_PROTO_SUBPROTOCOL, probe_cb, 0, 0, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 }
    };
    lws_probe p = { .login = "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"carol\",\"token\":\"secret\","
                             "\"deviceId\":\"lws-probe\",\"version\":1}}" };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protos;
    info.user = &p;
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = "127.0.0.1";
    ci.port = g_port;
    ci.path = "/";
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.protocol = NIM_PROTO_SUBPROTOCOL;
    struct lws *wsi = ctx ? lws_client_connect_via_info(&ci) : NULL;
    int64_t deadline = test_now_ms() + T_MS;
    while (wsi && !p.done && !p.failed && test_now_ms() < deadline)
        if (lws_service(ctx, 100) < 0) break;
    if (ctx) lws_context_destroy(ctx);
    free(p.rx);
    test_cond("lws client: connects with nim.v1 and completes the sync", wsi && p.established && p.done && !p.failed);
    test_cond("lws client: the 40 offline messages (plus carol's unmarked team message) arrive across several frames",
              p.offline == N + 1 && p.frames >= 5);
    test_cond("lws client: no frame exceeds the 1 MiB client limit", p.max_frame > 200000 && p.max_frame <= NIM_PROTO_MAX_FRAME);
}

/* Pipelines n sendMsg requests of alice's to `to` in one burst (corked, so
 * they reach the server together and share group commits): idClient
 * <prefix>-<i>, except that item bad_at goes to an unknown account and item
 * dup_at reuses the idClient of item 0 (-1: none); each text is "burst <i>"
 * padded with 'y' to pad bytes. Reads the n replies, in request order, into
 * replies[] (NULL on timeout); pushes are stashed. */
static void send_burst(cli *c, const char *to, const char *prefix, int n, int bad_at, int dup_at,
                       size_t pad, cJSON **replies) {
    int one = 1, zero = 0;
    int64_t first = c->next_id;
    char *buf = malloc(pad + 512), *fill = malloc(pad + 1);
    memset(fill, 'y', pad);
    fill[pad] = 0;
    setsockopt(c->ws.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    for (int i = 0; i < n; i++) {
        snprintf(buf, pad + 512,
                 "{\"id\":%lld,\"cmd\":\"sendMsg\",\"data\":{\"scene\":\"p2p\",\"to\":\"%s\","
                 "\"type\":\"text\",\"idClient\":\"%s-%d\",\"text\":\"burst %d%s\"}}",
                 (long long)c->next_id++, i == bad_at ? "nobody" : to, prefix, i == dup_at ? 0 : i, i, fill);
        ws_send_text(&c->ws, buf);
    }
    setsockopt(c->ws.fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    free(buf);
    free(fill);
    for (int i = 0; i < n; i++) replies[i] = NULL;
    int got = 0;
    int64_t deadline = test_now_ms() + T_MS;
    while (got < n && test_now_ms() < deadline) {
        cJSON *f = cli_read(c, (int)(deadline - test_now_ms()));
        if (!f) break;
        if (!cJSON_GetObjectItemCaseSensitive(f, "code")) { cJSON_AddItemToArray(c->stash, f); continue; }
        int64_t k = int_of(f, "id") - first;
        /* replies come in request order: anything else is left NULL (a failure) */
        if (k == got) replies[got++] = f;
        else { cJSON_Delete(f); break; }
    }
}

/* A sender that pipelines faster than it reads its replies: a thread
 * writes every request while the test reads nothing until the writer is
 * done or blocked (the server stopped reading it). */
typedef struct {
    cli        *c;
    int         n;
    size_t      pad;
    atomic_int  sent;
} pipe_writer;

static void *pipe_write(void *arg) {
    pipe_writer *w = arg;
    char *buf = malloc(w->pad + 512), *fill = malloc(w->pad + 1);
    memset(fill, 'p', w->pad);
    fill[w->pad] = 0;
    for (int i = 0; i < w->n; i++) {
        snprintf(buf, w->pad + 512,
                 "{\"id\":%d,\"cmd\":\"sendMsg\",\"data\":{\"scene\":\"p2p\",\"to\":\"bob\","
                 "\"type\":\"text\",\"idClient\":\"piped-%d\",\"text\":\"%d %s\"}}", 1000 + i, i, i, fill);
        if (ws_send_text(&w->c->ws, buf) != 0) break;
        atomic_fetch_add(&w->sent, 1);
    }
    free(buf);
    free(fill);
    return NULL;
}

/* Replies a client has not read are not a reason to cut it: the server
 * stops reading a connection whose output waits (TCP slows the sender)
 * instead of queueing its replies past the per-connection cap. 2,600
 * replies of 15 KB (39 MB) are over the 16 MB cap and what both sockets'
 * buffers hold. */
static void t_pipelined_sender(void) {
    enum { N = 2600, PAD = 15000 };
    cli a;
    test_cond("pipelined: alice logs in", cli_login(&a, "alice", "secret", "piped", NULL, NULL) == 200);
    pipe_writer w = { .c = &a, .n = N, .pad = PAD };
    pthread_t th;
    pthread_create(&th, NULL, pipe_write, &w);
    /* read nothing until the writer is done or has been blocked for 1 s */
    int last = -1;
    int64_t since = test_now_ms();
    while (atomic_load(&w.sent) < N && test_now_ms() - since < 1000) {
        struct pollfd none = { .fd = -1 };
        poll(&none, 0, 50);
        int now = atomic_load(&w.sent);
        if (now != last) { last = now; since = test_now_ms(); }
    }
    int ok = 0, bad = 0;
    int64_t deadline = test_now_ms() + 4 * T_MS;
    while (ok + bad < N && test_now_ms() < deadline) {
        cJSON *f = cli_read(&a, (int)(deadline - test_now_ms()));
        if (!f) break;
        if (cJSON_GetObjectItemCaseSensitive(f, "code")) { if (code_of(f) == 200) ok++; else bad++; }
        cJSON_Delete(f);
    }
    pthread_join(th, NULL);
    printf("# pipelined: %d of %d written before the first read, %d answered 200, %d otherwise\n",
           last, N, ok, bad);
    test_cond("pipelined: every request answered 200, the sender never cut", ok == N && bad == 0);
    cli_free(&a);
}

/* getHistoryMsgs for account c, as text; returns the reply (NULL on timeout). */
static cJSON *history(cli *c, const char *fmt, ...) {
    char data[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(data, sizeof data, fmt, ap);
    va_end(ap);
    return cli_call(c, "getHistoryMsgs", data);
}

/* 1 when every message of r's msgs has an id below (desc) or above (asc)
 * the one before it, starting from *prev (0: none); *prev becomes the last. */
static int ids_ordered(const cJSON *r, int desc, int64_t *prev) {
    const cJSON *msgs = obj_of(obj_of(r, "data"), "msgs");
    for (const cJSON *m = msgs ? msgs->child : NULL; m; m = m->next) {
        int64_t id = atoll(str_of(m, "idServer"));
        if (*prev && (desc ? id >= *prev : id <= *prev)) return 0;
        *prev = id;
    }
    return 1;
}

static int more_of(const cJSON *r) { return cJSON_IsTrue(obj_of(obj_of(r, "data"), "more")); }

/* History: keyset pages of one session from the account's own copies, in
 * the order asked, within the times asked, bounded in bytes, honouring the
 * deletion mark, refusing bad queries. */
static void t_history(void) {
    enum { N = 300, BIG = 40 };
    cli h, i, o;
    cJSON *rep[N], *r;
    cli_login(&h, "hank", "secret", "hist-h", NULL, NULL);
    send_burst(&h, "ivy", "hist", 100, -1, -1, 0, rep);
    for (int k = 0; k < 100; k++) cJSON_Delete(rep[k]);
    send_burst(&h, "ivy", "hist2", 100, -1, -1, 0, rep);
    for (int k = 0; k < 100; k++) cJSON_Delete(rep[k]);
    send_burst(&h, "ivy", "hist3", 100, -1, -1, 0, rep);
    for (int k = 0; k < 100; k++) cJSON_Delete(rep[k]);

    /* newest first, keyset on lastMsgId: 100 + 100 + 100, then no more */
    int64_t prev = 0, oldest_time = 0;
    int pages_ok = 1, total = 0, mores = 0;
    char last[24] = "";
    for (int page = 0; page < 3; page++) {
        r = page == 0 ? history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\"}")
                      : history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\",\"lastMsgId\":\"%s\"}", last);
        const cJSON *msgs = obj_of(obj_of(r, "data"), "msgs");
        pages_ok &= code_of(r) == 200 && ids_ordered(r, 1, &prev);
        total += cJSON_GetArraySize(msgs);
        mores += more_of(r);
        const cJSON *tail = msgs ? cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1) : NULL;
        if (tail) {
            snprintf(last, sizeof last, "%s", str_of(tail, "idServer"));
            oldest_time = int_of(tail, "time");
        }
        cJSON_Delete(r);
    }
    test_cond("history: three pages of 100, newest first, the last without more",
              pages_ok && total == N && mores == 2);
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\",\"lastMsgId\":\"%s\"}", last);
    test_cond("history: past the first message, an empty page",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 0 && !more_of(r));
    cJSON_Delete(r);

    /* reverse: oldest first from beginTime */
    prev = 0;
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\",\"reverse\":true,\"limit\":10}");
    const cJSON *first = cJSON_GetArrayItem(obj_of(obj_of(r, "data"), "msgs"), 0);
    test_cond("history: reverse gives the oldest first, ascending",
              code_of(r) == 200 && ids_ordered(r, 0, &prev) && first &&
              strcmp(str_of(first, "text"), "burst 0") == 0 && strcmp(str_of(first, "idClient"), "hist-0") == 0 &&
              cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 10 && more_of(r));
    cJSON_Delete(r);

    /* times: endTime at the oldest message's time gives only that time */
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\",\"endTime\":%lld}", (long long)oldest_time);
    const cJSON *msgs = obj_of(obj_of(r, "data"), "msgs");
    int in_range = code_of(r) == 200 && cJSON_GetArraySize(msgs) >= 1;
    for (const cJSON *m = msgs ? msgs->child : NULL; m; m = m->next) in_range &= int_of(m, "time") <= oldest_time;
    test_cond("history: endTime is an inclusive upper bound", in_range);
    cJSON_Delete(r);
    long long far = ((long long)time(NULL) + 86400) * 1000;   /* tomorrow */
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\",\"beginTime\":%lld,\"endTime\":%lld}", far, far + 1);
    test_cond("history: a window after every message is empty",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 0);
    cJSON_Delete(r);

    /* the other side sees its own copies; an outsider sees none */
    cli_login(&i, "ivy", "secret", "hist-i", NULL, NULL);
    r = history(&i, "{\"scene\":\"p2p\",\"to\":\"hank\",\"limit\":100}");
    test_cond("history: the recipient reads the same session from her side",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 100 && more_of(r));
    cJSON_Delete(r);
    cli_login(&o, "carol", "secret", "hist-o", NULL, NULL);
    r = history(&o, "{\"scene\":\"p2p\",\"to\":\"ivy\"}");
    test_cond("history: an outsider gets nothing of another pair's session",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 0);
    cJSON_Delete(r);
    r = cli_call(&h, "createTeam", "{\"name\":\"pair\",\"accounts\":[\"ivy\"]}");
    char team[24];
    snprintf(team, sizeof team, "%s", str_of(obj_of(obj_of(r, "data"), "team"), "teamId"));
    cJSON_Delete(r);
    cJSON_Delete(send_text(&h, "team", team, "hist-team", "team message"));
    r = history(&i, "{\"scene\":\"team\",\"to\":\"%s\"}", team);
    test_cond("history: a member reads the team's messages",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 1);
    cJSON_Delete(r);
    r = history(&o, "{\"scene\":\"team\",\"to\":\"%s\"}", team);
    test_cond("history: a team carol is not in gives her nothing",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 0);
    cJSON_Delete(r);

    /* big messages: the reply stops near its byte budget, within the frame limit */
    cJSON *big[BIG];
    send_burst(&h, "carol", "histbig", BIG, -1, -1, 15000, big);
    for (int k = 0; k < BIG; k++) cJSON_Delete(big[k]);
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"carol\",\"limit\":%d}", BIG);
    char *printed = cJSON_PrintUnformatted(r);
    int n = cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs"));
    test_cond("history: 40 x 15 KB come back in part, with more, in a frame within the limit",
              code_of(r) == 200 && n >= 1 && n < BIG && more_of(r) && printed &&
              strlen(printed) <= NIM_PROTO_MAX_FRAME);
    free(printed);
    cJSON_Delete(r);

    /* the deletion mark: hank's deleted session has no history for him */
    test_cond("history: hank deletes p2p-ivy",
              cli_call_code(&h, "deleteSessions", "{\"sessions\":[\"p2p-ivy\"]}") == 200);
    r = history(&h, "{\"scene\":\"p2p\",\"to\":\"ivy\"}");
    test_cond("history: nothing at or below the deletion mark",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 0);
    cJSON_Delete(r);
    r = history(&i, "{\"scene\":\"p2p\",\"to\":\"hank\",\"limit\":1}");
    test_cond("history: ivy's side is untouched by hank's delete",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 1);
    cJSON_Delete(r);

    /* bad queries */
    const char *bad[] = {
        "{\"to\":\"ivy\"}", "{\"scene\":\"x\",\"to\":\"ivy\"}", "{\"scene\":\"p2p\",\"to\":\"\"}",
        "{\"scene\":\"p2p\",\"to\":\"bad name\"}", "{\"scene\":\"team\",\"to\":\"x1\"}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"limit\":0}", "{\"scene\":\"p2p\",\"to\":\"ivy\",\"limit\":101}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"beginTime\":5,\"endTime\":4}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"beginTime\":-1}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"lastMsgId\":\"abc\"}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"lastMsgId\":12}",
        "{\"scene\":\"p2p\",\"to\":\"ivy\",\"reverse\":1}",
    };
    int all414 = 1;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int code = cli_call_code(&h, "getHistoryMsgs", bad[k]);
        if (code != 414) { fprintf(stderr, "history: %s -> %d\n", bad[k], code); all414 = 0; }
    }
    test_cond("history: every bad query gets 414", all414);
    cli_free(&h);
    cli_free(&i);
    cli_free(&o);
}

/* Sends n read pointers for sessions p2p-<prefix><i> (no messages: ack 1 is
 * within the skew) in requests of 1000; returns the codes ORed != 200. */
static int many_pointers(cli *c, const char *prefix, int from, int n) {
    int bad = 0;
    char *buf = malloc(64 * 1000 + 64);
    for (int k = from; k < from + n; k += 1000) {
        size_t len = (size_t)sprintf(buf, "{\"pointers\":[");
        for (int j = k; j < k + 1000 && j < from + n; j++)
            len += (size_t)sprintf(buf + len, "%s{\"sessionId\":\"p2p-%s%d\",\"ack\":1}", j > k ? "," : "", prefix, j);
        sprintf(buf + len, "]}");
        bad |= cli_call_code(c, "updateReadPointers", buf) != 200;
    }
    free(buf);
    return bad;
}

/* Read pointers and sticky tops come in pages, every frame within the
 * limit, and all of them arrive. */
static void t_state_pages(void) {
    enum { PTRS = 4500, TOPS = 100 };
    cli k, k2;
    cJSON *sync = NULL;
    cli_login(&k, "kate", "secret", "state-k", NULL, NULL);
    test_cond("state: 4500 read pointers stored", many_pointers(&k, "peer", 0, PTRS) == 0);
    /* 100 sticky tops whose topCustom escapes to 6 KiB each: 600 KiB of list */
    char *custom = malloc(6 * 1024 + 1), *data = malloc(7 * 1024 + 128);
    for (int i = 0; i < 1024; i++) memcpy(custom + i * 6, "\\u0001", 6);
    custom[6 * 1024] = 0;
    int tops_ok = 1;
    for (int i = 0; i < TOPS; i++) {
        sprintf(data, "{\"sessionId\":\"p2p-top%d\",\"topCustom\":\"%s\"}", i, custom);
        tops_ok &= cli_call_code(&k, "addStickTop", data) == 200;
    }
    test_cond("state: 100 sticky tops of 6 KiB stored", tops_ok);
    sprintf(data, "{\"sessionId\":\"p2p-top%d\"}", TOPS);
    r_code_msg(&k, "addStickTop", data, 419, "at most 100 sticky-top sessions");
    sprintf(data, "{\"sessionId\":\"p2p-top0\",\"topCustom\":\"again\"}");
    test_cond("state: at the cap, an existing top can still change",
              cli_call_code(&k, "updateStickTop", data) == 200 && cli_call_code(&k, "addStickTop", data) == 200);
    free(custom);
    free(data);
    cJSON *r = cli_call(&k, "getStickTop", "{}");
    char *printed = cJSON_PrintUnformatted(r);
    test_cond("state: getStickTop answers all 100 in a reply within the frame limit",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "sessions")) == TOPS &&
              printed && strlen(printed) <= NIM_PROTO_MAX_FRAME);
    free(printed);
    cJSON_Delete(r);

    cli_login(&k2, "kate", "secret", "state-k2", NULL, &sync);
    int ptr_frames = 0, top_frames = 0;
    for (const cJSON *o = obj_of(sync, "order")->child; o; o = o->next) {
        ptr_frames += strcmp(o->valuestring, "readPointers") == 0;
        top_frames += strcmp(o->valuestring, "stickTopSessions") == 0;
    }
    test_cond("state: a new device gets all 4500 pointers, in more than two pages",
              arr_len(sync, "readPointers") == PTRS && ptr_frames >= 3);
    test_cond("state: and all 100 sticky tops, in more than one frame",
              arr_len(sync, "stickTopSessions") == TOPS && top_frames >= 2);
    test_cond("state: every frame of the sync within the frame limit", g_biggest_frame <= NIM_PROTO_MAX_FRAME);
    char *cur = cursors_text(sync);
    cJSON_Delete(sync);
    cli_free(&k2);
    cli_login(&k2, "kate", "secret", "state-k2", cur, &sync);
    test_cond("state: with its cursor, the next login gets no pointer again",
              arr_len(sync, "readPointers") == 0 && arr_len(sync, "stickTopSessions") == TOPS);
    cJSON_Delete(sync);
    free(cur);
    cli_free(&k2);
    cli_free(&k);
}

/* The per-account caps (--max-state), each answered with 419 naming it. */
static void t_state_caps(void) {
    cli l, a;
    test_cond("caps: the server restarts with --max-state 1500,1,2",
              server_start3("--max-state", "1500,1,2", NULL) == 0);
    cli_login(&l, "lena", "secret", "caps-l", NULL, NULL);
    test_cond("caps: 1500 pointers fit", many_pointers(&l, "p", 0, 1500) == 0);
    test_cond("caps: an existing session's pointer still moves",
              cli_call_code(&l, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-p7\",\"ack\":2}]}") == 200);
    r_code_msg(&l, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-p7\",\"ack\":3},"
               "{\"sessionId\":\"p2p-new\",\"ack\":1}]}", 419, "at most 1500 sessions with a read pointer");
    cJSON *r = cli_call(&l, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-p7\",\"ack\":2},"
                        "{\"sessionId\":\"p2p-new\",\"ack\":1},{\"sessionId\":\"p2p-new\",\"ack\":1}]}");
    const cJSON *ptrs = obj_of(obj_of(r, "data"), "pointers"), *refused = obj_of(obj_of(r, "data"), "refused");
    test_cond("caps: past the cap the pointers of known sessions still move, the new one is left out",
              code_of(r) == 419 && int_of(cJSON_GetArrayItem(ptrs, 0), "ack") == 3 &&
              int_of(cJSON_GetArrayItem(ptrs, 1), "ack") == 0 && cJSON_GetArraySize(refused) == 2 &&
              strcmp(cJSON_GetArrayItem(refused, 0)->valuestring, "p2p-new") == 0);
    cJSON_Delete(r);
    cli_login(&a, "alice", "secret", "caps-a", NULL, NULL);
    cJSON *m1 = send_text(&a, "p2p", "lena", "caps-1", "one");
    cJSON_Delete(send_text(&l, "p2p", "lena", "caps-self", "to myself"));
    char data[128];
    snprintf(data, sizeof data, "{\"idServer\":\"%s\"}", str_of(obj_of(obj_of(m1, "data"), "msg"), "idServer"));
    test_cond("caps: the first receipt fits", cli_call_code(&l, "sendMsgReceipt", data) == 200);
    cJSON *m2 = send_text(&a, "p2p", "lena", "caps-2", "two");
    snprintf(data, sizeof data, "{\"idServer\":\"%s\"}", str_of(obj_of(obj_of(m2, "data"), "msg"), "idServer"));
    test_cond("caps: a later receipt to the same peer still moves", cli_call_code(&l, "sendMsgReceipt", data) == 200);
    cJSON_Delete(m1);
    cJSON_Delete(m2);
    cli b;
    cli_login(&b, "bob", "secret", "caps-b", NULL, NULL);
    cJSON *m3 = send_text(&b, "p2p", "lena", "caps-3", "three");
    snprintf(data, sizeof data, "{\"idServer\":\"%s\"}", str_of(obj_of(obj_of(m3, "data"), "msg"), "idServer"));
    r_code_msg(&l, "sendMsgReceipt", data, 419, "at most 1 peers sent a receipt");
    cJSON_Delete(m3);
    cli_call_code(&l, "addStickTop", "{\"sessionId\":\"p2p-alice\"}");
    cli_call_code(&l, "addStickTop", "{\"sessionId\":\"p2p-bob\"}");
    r_code_msg(&l, "addStickTop", "{\"sessionId\":\"p2p-carol\"}", 419, "at most 2 sticky-top sessions");
    test_cond("caps: after a delete there is room again",
              cli_call_code(&l, "deleteStickTop", "{\"sessionId\":\"p2p-bob\"}") == 200 &&
              cli_call_code(&l, "addStickTop", "{\"sessionId\":\"p2p-carol\"}") == 200);
    cli_free(&l);
    cli_free(&a);
    cli_free(&b);
    test_cond("caps: --max-state with tops over 100 is refused at start",
              server_stop(SIGTERM) == 0 && server_start3("--max-state", "1,1,101", NULL) != 0);
}

/* Sends texts of 15,000 bytes to `to` (idClient prefix-i) until one is
 * answered `stop` or max are sent; returns how many got 200, the refusal's
 * error in why. */
static int send_until(cli *c, const char *to, const char *prefix, int max, int stop, char *why, size_t whylen) {
    enum { TEXT = 15000 };
    char *buf = malloc(TEXT + 512), *fill = malloc(TEXT + 1);
    memset(fill, 'z', TEXT);
    fill[TEXT] = 0;
    int acked = 0, refused = 0;
    why[0] = '\0';
    for (int i = 0; i < max && !refused; i++) {
        snprintf(buf, TEXT + 512, "{\"scene\":\"p2p\",\"to\":\"%s\",\"type\":\"text\",\"idClient\":\"%s-%d\","
                 "\"text\":\"%d %s\"}", to, prefix, i, i, fill);
        cJSON *r = cli_call(c, "sendMsg", buf);
        if (code_of(r) == 200) acked++;
        else if (code_of(r) == stop) { refused = 1; snprintf(why, whylen, "%s", str_of(r, "error")); }
        cJSON_Delete(r);
    }
    free(buf);
    free(fill);
    return refused ? acked : -acked - 1;   /* never refused: negative */
}

/* A full disk: logins and syncs go on, writes answer a clear 500 and store
 * nothing, nothing acknowledged is lost, and once there is space again the
 * server stores again by itself. */
static void t_disk_full(void) {
    enum { TEXT = 15000, MAX = 400 };
    cli a, b;
    cJSON *sync = NULL;
    snprintf(g_db, sizeof g_db, "%s/full.db", g_dir);
    test_cond("disk full: a fresh database with two accounts",
              adduser("mona", "secret") == 0 && adduser("nick", "secret") == 0);
    g_fsize_limit = 2 * 1024 * 1024;
    test_cond("disk full: the server starts with 2 MB of space", server_start(NULL) == 0);
    g_fsize_limit = 0;
    cli_login(&a, "mona", "secret", "full-a", NULL, NULL);
    char error[200];
    int acked = send_until(&a, "nick", "full", MAX, 500, error, sizeof error), refused = acked >= 0;
    if (acked < 0) acked = -acked - 1;
    char *buf = malloc(TEXT + 512);
    test_cond("disk full: sends are acknowledged until the space runs out", acked > 10 && refused);
    test_cond("disk full: then refused with a clear reason", strstr(error, "cannot be written") != NULL);
    if (!strstr(error, "cannot be written")) fprintf(stderr, "  got: %s\n", error);
    test_cond("disk full: a new device still logs in and syncs every acknowledged message",
              cli_login(&b, "nick", "secret", "full-b", NULL, &sync) == 200 &&
              arr_len(sync, "offlineMsgs") == acked);
    cJSON_Delete(sync);
    cJSON *h = cli_call(&b, "getHistoryMsgs", "{\"scene\":\"p2p\",\"to\":\"mona\",\"limit\":5}");
    test_cond("disk full: reads answer (history)",
              code_of(h) == 200 && cJSON_GetArraySize(obj_of(obj_of(h, "data"), "msgs")) == 5);
    cJSON_Delete(h);
    struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
    test_cond("disk full: space returns", prlimit(g_pid, RLIMIT_FSIZE, &unlimited, NULL) == 0);
    snprintf(buf, TEXT + 512, "{\"scene\":\"p2p\",\"to\":\"nick\",\"type\":\"text\",\"idClient\":\"full-after\","
             "\"text\":\"after\"}");
    test_cond("disk full: the server stores again by itself", cli_call_code(&a, "sendMsg", buf) == 200);
    cli_free(&b);
    cli_login(&b, "nick", "secret", "full-b2", NULL, &sync);
    test_cond("disk full: everything acknowledged is there, once",
              arr_len(sync, "offlineMsgs") == acked + 1 && find_by(obj_of(sync, "offlineMsgs"), "idClient", "full-after"));
    cJSON_Delete(sync);
    free(buf);
    cli_free(&a);
    cli_free(&b);
    server_stop(SIGTERM);
}

static int sh(const char *fmt, const char *arg) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, fmt, arg, arg);
    return system(cmd);
}

/* A real small file system (tmpfs, when this machine lets the test mount
 * one): read-only under a server that starts on it, then full for real
 * (ENOSPC) under a running one. Both times logins and syncs go on and
 * writes get the clear 500; a full disk needs no restart once it has room. */
static void t_readonly(void) {
    char mnt[256], filler[300], buf[256];
    cli a, b;
    cJSON *sync = NULL;
    snprintf(mnt, sizeof mnt, "%s/mnt", g_dir);
    mkdir(mnt, 0700);
    if (sh("mount -t tmpfs -o size=3m nimtest '%s' 2>/dev/null", mnt) != 0) {
        printf("# read-only: skipped, this machine does not let the test mount a tmpfs\n");
        return;
    }
    snprintf(g_db, sizeof g_db, "%s/ro.db", mnt);
    test_cond("read-only: a database on a 3 MB tmpfs", adduser("olga", "secret") == 0 && adduser("pete", "secret") == 0);
    test_cond("read-only: the server starts on it", server_start(NULL) == 0);
    cli_login(&a, "olga", "secret", "ro-a", NULL, NULL);
    int n = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(buf, sizeof buf, "ro-%d", i);
        cJSON *r = send_text(&a, "p2p", "pete", buf, "before");
        n += code_of(r) == 200;
        cJSON_Delete(r);
    }
    test_cond("read-only: 5 messages stored", n == 5);
    cli_free(&a);
    server_stop(SIGTERM);

    test_cond("read-only: the file system is remounted read-only", sh("mount -o remount,ro '%s'", mnt) == 0);
    test_cond("read-only: the server starts on it all the same", server_start(NULL) == 0);
    cli_login(&a, "olga", "secret", "ro-a", NULL, NULL);
    cJSON *r = send_text(&a, "p2p", "pete", "ro-x", "while read-only");
    test_cond("read-only: a send gets 500 with the reason",
              code_of(r) == 500 && strstr(str_of(r, "error"), "cannot be written") != NULL);
    if (!strstr(str_of(r, "error"), "cannot be written")) fprintf(stderr, "  got %d %s\n", code_of(r), str_of(r, "error"));
    cJSON_Delete(r);
    test_cond("read-only: a new device logs in and syncs the 5",
              cli_login(&b, "pete", "secret", "ro-b", NULL, &sync) == 200 && arr_len(sync, "offlineMsgs") == 5);
    cJSON_Delete(sync);
    r = cli_call(&b, "getHistoryMsgs", "{\"scene\":\"p2p\",\"to\":\"olga\"}");
    test_cond("read-only: history answers",
              code_of(r) == 200 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "msgs")) == 5);
    cJSON_Delete(r);
    test_cond("read-only: marking received is refused the same way, nothing changes",
              cli_call_code(&b, "markMsgsReceived", "{\"upTo\":\"1000\"}") == 500);
    cli_free(&b);
    cli_free(&a);
    server_stop(SIGTERM);
    test_cond("read-only: back to read-write, and a restart", sh("mount -o remount,rw '%s'", mnt) == 0 &&
              server_start(NULL) == 0);
    cli_login(&a, "olga", "secret", "ro-a", NULL, NULL);
    r = send_text(&a, "p2p", "pete", "ro-y", "after");
    test_cond("read-only: it stores again", code_of(r) == 200);
    cJSON_Delete(r);

    /* now the disk fills up for real */
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    sh("dd if=/dev/zero of='%s' bs=64k 2>/dev/null", filler);
    char *big = malloc(20000);
    int refused = 0;
    for (int i = 0; i < 200 && !refused; i++) {
        snprintf(big, 20000, "{\"scene\":\"p2p\",\"to\":\"pete\",\"type\":\"text\",\"idClient\":\"ro-f%d\","
                 "\"text\":\"%0*d\"}", i, 15000, i);
        r = cli_call(&a, "sendMsg", big);
        refused = code_of(r) == 500 && strstr(str_of(r, "error"), "cannot be written") != NULL;
        cJSON_Delete(r);
    }
    free(big);
    test_cond("read-only: with the disk full, sends get the same 500", refused);
    test_cond("read-only: and logins still work", cli_login(&b, "pete", "secret", "ro-b2", NULL, &sync) == 200);
    int synced = arr_len(sync, "offlineMsgs");
    cJSON_Delete(sync);
    cli_free(&b);
    unlink(filler);
    r = send_text(&a, "p2p", "pete", "ro-z", "space again");
    test_cond("read-only: space again: stored again", code_of(r) == 200);
    cJSON_Delete(r);
    cli_login(&b, "pete", "secret", "ro-b3", NULL, &sync);
    test_cond("read-only: nothing acknowledged was lost", arr_len(sync, "offlineMsgs") == synced + 1 && synced >= 6);
    cJSON_Delete(sync);
    cli_free(&b);
    cli_free(&a);
    server_stop(SIGTERM);
    sh("umount '%s'", mnt);
}

/* A device's first sync cut in its roaming stage goes on, at the next
 * login, from the resume point of the last roaming page it stored: nothing
 * twice, nothing missed. */
static void t_roaming_resume(void) {
    enum { PER = 100, TEXT = 4000 };
    const char *from[] = { "alice", "bob", "carol", "dave" };
    cli q, s2;
    cJSON *rep[PER], *sync = NULL;
    for (int k = 0; k < 4; k++) {
        cli f;
        char dev[32], prefix[32];
        snprintf(dev, sizeof dev, "resume-%s", from[k]);
        snprintf(prefix, sizeof prefix, "res-%d", k);
        cli_login(&f, from[k], "secret", dev, NULL, NULL);
        send_burst(&f, "quin", prefix, PER, -1, -1, TEXT, rep);
        for (int i = 0; i < PER; i++) cJSON_Delete(rep[i]);
        cli_free(&f);
    }
    /* quin's first device stores them all: they are roaming from now on */
    cli_login(&q, "quin", "secret", "resume-q1", NULL, &sync);
    char ack[32];
    snprintf(ack, sizeof ack, "{\"upTo\":\"%s\"}", str_of(sync, "lastAck"));
    test_cond("resume: 400 offline messages, acknowledged",
              arr_len(sync, "offlineMsgs") == 4 * PER && cli_call_code(&q, "markMsgsReceived", ack) == 200);
    cJSON_Delete(sync);
    cli_free(&q);

    /* a new device reads two roaming pages and is cut */
    cli_open(&s2, NIM_PROTO_SUBPROTOCOL);
    char login[256];
    snprintf(login, sizeof login, "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"quin\",\"token\":\"secret\","
             "\"deviceId\":\"resume-q2\",\"version\":%d}}", NIM_PROTO_VERSION);
    ws_send_text(&s2.ws, login);
    cJSON *seen = cJSON_CreateObject();
    char *resume = NULL;
    int pages = 0, first = 0;
    while (pages < 2) {
        cJSON *f = cli_read(&s2, T_MS);
        if (!f) break;
        const cJSON *d = obj_of(f, "data");
        if (strcmp(str_of(f, "push"), "roamingMsgs") == 0) {
            for (const cJSON *m = obj_of(d, "msgs")->child; m; m = m->next, first++)
                cJSON_AddTrueToObject(seen, str_of(m, "idServer"));
            if (obj_of(d, "resume")) {
                free(resume);
                resume = cJSON_PrintUnformatted(obj_of(d, "resume"));
                pages++;
            }
        }
        cJSON_Delete(f);
    }
    cli_free(&s2);
    test_cond("resume: roaming pages carry a resume point", resume != NULL && pages == 2 && first < 4 * PER);
    char cur[512];
    snprintf(cur, sizeof cur, "{\"msgs\":0,\"state\":0,\"roaming\":%s}", resume ? resume : "null");
    free(resume);
    cli_login(&s2, "quin", "secret", "resume-q2", cur, &sync);
    int again = 0, total = first;
    for (const cJSON *m = obj_of(sync, "roamingMsgs")->child; m; m = m->next, total++)
        again += cJSON_GetObjectItemCaseSensitive(seen, str_of(m, "idServer")) != NULL;
    test_cond("resume: the next login goes on from there, nothing twice, nothing missed",
              again == 0 && total == 4 * PER);
    if (again || total != 4 * PER) fprintf(stderr, "  again %d total %d (first %d)\n", again, total, first);
    cJSON_Delete(sync);
    cJSON_Delete(seen);
    cli_free(&s2);
    test_cond("resume: a resume point that is not one gets 414",
              cli_login(&s2, "quin", "secret", "resume-q3", "{\"msgs\":0,\"roaming\":{\"bound\":1,"
                        "\"session\":\"nope\",\"before\":1,\"sent\":0}}", NULL) == 414);
    cli_free(&s2);
}

/* A backlog far bigger than the output queue comes whole in one login, in
 * pages, the connection never cut for it; acknowledged, it is no longer
 * offline. */
static void t_big_offline(void) {
    cli d, f;
    cJSON *sync = NULL;
    enum { N = 600, TEXT = 15000 };
    cJSON **rep = calloc(N, sizeof *rep);
    cli_login(&d, "dave", "secret", "bulk-d", NULL, NULL);
    send_burst(&d, "frank", "bulk", N, -1, -1, TEXT, rep);
    int ok = 1;
    for (int i = 0; i < N; i++) { ok &= code_of(rep[i]) == 200; cJSON_Delete(rep[i]); }
    free(rep);
    cli_free(&d);
    test_cond("backlog: 600 messages of 15 KB (9 MB) sent to an offline account", ok);
    int code = cli_login(&f, "frank", "secret", "bulk-f", NULL, &sync);
    const cJSON *off = obj_of(sync, "offlineMsgs");
    int n = cJSON_GetArraySize(off);
    test_cond("backlog: one login brings all of it, in order",
              code == 200 && n == N && strcmp(str_of(cJSON_GetArrayItem(off, N - 1), "idClient"), "bulk-599") == 0);
    test_cond("backlog: the connection was never cut", !f.ws.closed);
    test_cond("backlog: the last page's ack covers it all",
              n > 0 && strcmp(str_of(sync, "lastAck"), str_of(cJSON_GetArrayItem(off, n - 1), "idServer")) == 0);
    char mark[64];
    snprintf(mark, sizeof mark, "{\"upTo\":\"%s\"}", str_of(sync, "lastAck"));
    test_cond("backlog: acknowledged", cli_call_code(&f, "markMsgsReceived", mark) == 200);
    cJSON_Delete(sync);
    cli_free(&f);
    cli_login(&f, "frank", "secret", "bulk-f2", NULL, &sync);
    test_cond("backlog: once acknowledged, the next device finds nothing offline",
              arr_len(sync, "offlineMsgs") == 0 && arr_len(sync, "roamingMsgs") == 100);
    cJSON_Delete(sync);
    cli_free(&f);
}

/* A recipient that stops reading (a suspended app, a stalled link) loses
 * nothing: every message acknowledged to the sender reaches its next login
 * whole, and that login's sync, sent in pages, leaves other users' round
 * trips short. */
static void t_stalled_recipient(void) {
    enum { N = 2000, TEXT = 15000 };
    cli a, g, g2, o;
    cJSON *sync = NULL;
    cli_login(&g, "gina", "secret", "stall-g", NULL, &sync);
    char *cur = cursors_text(sync);
    cJSON_Delete(sync);
    /* gina's device reads nothing from here on */
    cli_login(&a, "alice", "secret", "stall-a", NULL, NULL);
    cJSON **rep = calloc(N, sizeof *rep);
    /* in bursts: every reply carries its 15 KB message back to alice */
    for (int i = 0; i < N; i += 100) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "stall-%d", i / 100);
        send_burst(&a, "gina", prefix, 100, -1, -1, TEXT, rep + i);
    }
    int ok = 1;
    int n200 = 0;
    for (int i = 0; i < N; i++) { n200 += code_of(rep[i]) == 200; cJSON_Delete(rep[i]); }
    ok = n200 == N;
    if (!ok) fprintf(stderr, "stall: %d of %d acknowledged\n", n200, N);
    free(rep);
    cli_free(&a);
    test_cond("stall: 2000 messages of 15 KB (30 MB) acknowledged to alice while gina does not read", ok);

    /* The same device comes back with its cursor (the stalled link is kicked). */
    cli_login(&o, "carol", "secret", "stall-o", NULL, NULL);
    cli_open(&g2, NIM_PROTO_SUBPROTOCOL);
    char login[256];
    snprintf(login, sizeof login, "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"gina\","
             "\"token\":\"secret\",\"deviceId\":\"stall-g\",\"version\":%d,\"cursors\":%s}}",
             NIM_PROTO_VERSION, cur);
    free(cur);
    ws_send_text(&g2.ws, login);
    char *seen = calloc(N, 1), last_ack[32] = "";
    int64_t worst = 0;
    size_t biggest = 0;
    int done = 0, pings_ok = 1, all_offline = 1;
    while (!done) {
        int64_t t0 = test_now_ms();
        pings_ok &= cli_barrier(&o);
        int64_t rtt = test_now_ms() - t0;
        if (rtt > worst) worst = rtt;
        for (int k = 0; k < 4 && !done; k++) {
            char *s = ws_recv(&g2.ws, T_MS);
            if (!s) { done = -1; break; }
            if (strlen(s) > biggest) biggest = strlen(s);
            cJSON *f = cJSON_Parse(s);
            free(s);
            const char *name = str_of(f, "push");
            const cJSON *data = obj_of(f, "data"), *m;
            if (strcmp(name, "syncDone") == 0) done = 1;
            if (strcmp(name, "offlineMsgs") == 0 || strcmp(name, "roamingMsgs") == 0) {
                cJSON_ArrayForEach(m, obj_of(data, "msgs")) {
                    int i = -1;
                    int hi = -1, lo = -1;
                    if (sscanf(str_of(m, "idClient"), "stall-%d-%d", &hi, &lo) == 2) i = hi * 100 + lo;
                    if (i >= 0 && i < N && lo >= 0 && lo < 100 && !seen[i]) {
                        seen[i] = 1;
                        all_offline &= name[0] == 'o';
                    }
                }
            }
            if (cJSON_IsString(obj_of(data, "ack"))) snprintf(last_ack, sizeof last_ack, "%s", str_of(data, "ack"));
            cJSON_Delete(f);
        }
    }
    int all = 1;
    for (int i = 0; i < N; i++) all &= seen[i];
    free(seen);
    test_cond("stall: gina's next login brings every one of the 2000, as offline", done == 1 && all && all_offline);
    test_cond("stall: no frame over the 1 MiB client limit", biggest > 0 && biggest <= NIM_PROTO_MAX_FRAME);
    printf("# stall: worst round trip of another user during the 30 MB sync: %lld ms\n", (long long)worst);
    test_cond("stall: other users' round trips stay under 100 ms during that sync", pings_ok && worst < 100);
    char mark[64];
    snprintf(mark, sizeof mark, "{\"upTo\":\"%s\"}", last_ack);
    test_cond("stall: acknowledged once stored", last_ack[0] && cli_call_code(&g2, "markMsgsReceived", mark) == 200);
    cli_free(&g2);
    cli_free(&g);
    cli_free(&o);
}

static const char *reply_id_server(const cJSON *r) {
    return str_of(obj_of(obj_of(r, "data"), "msg"), "idServer");
}

/* Many pipelined sendMsg requests: each answered in order, the stored ones
 * with increasing server ids, a failing one alone failing, all of them
 * stored and pushed in the order stored. */
static void t_burst(void) {
    enum { N = 600, BAD = 300, DUP = 450 };
    cli a, a2, c;
    cJSON *sync = NULL;
    cJSON **rep = calloc(N, sizeof *rep);
    cli_login(&a, "alice", "secret", "burst-a", NULL, NULL);
    cli_login(&a2, "alice", "secret", "burst-a2", NULL, NULL);
    send_burst(&a, "carol", "burst", N, BAD, DUP, 0, rep);
    int all = 1, increasing = 1, codes = 1;
    long long prev = 0;
    for (int i = 0; i < N; i++) {
        if (!rep[i]) { all = 0; continue; }
        if (i == BAD || i == DUP) continue;
        codes &= code_of(rep[i]) == 200;
        long long id = atoll(reply_id_server(rep[i]));
        increasing &= id > prev;
        prev = id;
    }
    test_cond("burst: 600 pipelined sendMsg all answered, in request order", all);
    test_cond("burst: every stored one is acknowledged with an increasing server id", all && codes && increasing);
    test_cond("burst: the one to an unknown account alone fails (404)",
              all && code_of(rep[BAD]) == 404 && strstr(str_of(rep[BAD], "error"), "no such account"));
    test_cond("burst: a resend inside the burst gets the first one back as a duplicate",
              all && code_of(rep[DUP]) == 200 &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj_of(rep[DUP], "data"), "duplicate")) &&
              strcmp(reply_id_server(rep[DUP]), reply_id_server(rep[0])) == 0);
    /* My other device sees every stored message once, in server id order. */
    int pushes = 0, push_order = 1;
    prev = 0;
    cJSON *p;
    while (pushes < N - 2 && (p = cli_push(&a2, "msg")) != NULL) {
        long long id = atoll(str_of(obj_of(obj_of(p, "data"), "msg"), "idServer"));
        push_order &= id > prev;
        prev = id;
        pushes++;
        cJSON_Delete(p);
    }
    test_cond("burst: my other device gets one push per stored message, in order",
              pushes == N - 2 && push_order && cli_none(&a2, "msg"));
    for (int i = 0; i < N; i++) cJSON_Delete(rep[i]);
    /* Stored: carol (offline) finds all of them. */
    cli_login(&c, "carol", "secret", "burst-c", NULL, &sync);
    int stored = 0;
    for (const cJSON *m = obj_of(sync, "offlineMsgs") ? obj_of(sync, "offlineMsgs")->child : NULL; m; m = m->next)
        if (strncmp(str_of(m, "idClient"), "burst-", 6) == 0) stored++;
    test_cond("burst: every acknowledged message is stored (carol's offline queue)", stored == N - 2);
    cJSON_Delete(sync);
    /* A request after a burst sees it (and is answered after it). */
    cJSON *r = cli_call(&a, "deleteSessions", "{\"sessions\":[\"p2p-carol\"]}");
    test_cond("burst: a following request is answered after the burst", code_of(r) == 200);
    cJSON_Delete(r);
    free(rep);
    cli_free(&c);
    cli_free(&a2);
    cli_free(&a);

    /* Three connections burst at once: one pass reads from all of them, past
     * the group's cap of SRV_GROUP_MAX messages. */
    enum { K = 3, M = 400 };
    cli s[K];
    cJSON **rs[K];
    const char *who[K] = { "alice", "bob", "dave" };
    int64_t firsts[K];
    for (int k = 0; k < K; k++) {
        char dev[32];
        snprintf(dev, sizeof dev, "multi-%d", k);
        cli_login(&s[k], who[k], "secret", dev, NULL, NULL);
        rs[k] = calloc(M, sizeof *rs[k]);
        firsts[k] = s[k].next_id;
    }
    int one = 1, zero = 0;
    for (int k = 0; k < K; k++) {
        setsockopt(s[k].ws.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        for (int i = 0; i < M; i++) {
            char buf[512];
            snprintf(buf, sizeof buf,
                     "{\"id\":%lld,\"cmd\":\"sendMsg\",\"data\":{\"scene\":\"p2p\",\"to\":\"frank\","
                     "\"type\":\"text\",\"idClient\":\"multi-%d-%d\",\"text\":\"m\"}}",
                     (long long)s[k].next_id++, k, i);
            ws_send_text(&s[k].ws, buf);
        }
    }
    for (int k = 0; k < K; k++) setsockopt(s[k].ws.fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    int multi_ok = 1;
    for (int k = 0; k < K; k++) {
        long long prev_id = 0;
        for (int i = 0; i < M; i++) {
            cJSON *f;
            do f = cli_read(&s[k], T_MS);
            while (f && !cJSON_GetObjectItemCaseSensitive(f, "code") && (cJSON_Delete(f), 1));
            long long id = f ? atoll(reply_id_server(f)) : 0;
            multi_ok &= f && code_of(f) == 200 && int_of(f, "id") == firsts[k] + i && id > prev_id;
            prev_id = id;
            cJSON_Delete(f);
        }
        free(rs[k]);
    }
    test_cond("burst: three connections bursting together are each answered in order", multi_ok);
    cli_login(&c, "frank", "secret", "multi-f", NULL, &sync);
    stored = 0;
    for (const cJSON *m = obj_of(sync, "offlineMsgs") ? obj_of(sync, "offlineMsgs")->child : NULL; m; m = m->next)
        if (strncmp(str_of(m, "idClient"), "multi-", 6) == 0) stored++;
    test_cond("burst: and all of them are stored", stored == K * M);
    cJSON_Delete(sync);
    cli_free(&c);
    for (int k = 0; k < K; k++) cli_free(&s[k]);
}

/* SIGKILL in the middle of use loses nothing that was acknowledged. */
static void t_kill_restart(void) {
    cli a, b;
    cJSON *sync = NULL, *r;
    cli_login(&a, "alice", "secret", "kill-a", NULL, NULL);
    char last[32] = "";
    for (int i = 0; i < 50; i++) {
        char idc[32];
        snprintf(idc, sizeof idc, "kill-%d", i);
        r = send_text(&a, "p2p", "erin", idc, "before the crash");
        snprintf(last, sizeof last, "%s", str_of(obj_of(obj_of(r, "data"), "msg"), "idServer"));
        cJSON_Delete(r);
    }
    cli_call_code(&a, "updateReadPointers", "{\"pointers\":[{\"sessionId\":\"p2p-erin\",\"ack\":4242}]}");
    cli_call_code(&a, "addStickTop", "{\"sessionId\":\"p2p-erin\",\"topCustom\":\"k\"}");
    cJSON_Delete(send_text(&a, "team", g_team, "kill-team", "team before crash"));
    /* A pipelined burst (group commits): every acknowledged one must survive. */
    enum { KB = 200 };
    cJSON *burst[KB];
    send_burst(&a, "erin", "kill-burst", KB, -1, -1, 0, burst);
    int burst_ok = 1;
    char burst_last[32] = "";
    for (int i = 0; i < KB; i++) {
        burst_ok &= code_of(burst[i]) == 200;
        if (burst[i]) snprintf(burst_last, sizeof burst_last, "%s", reply_id_server(burst[i]));
        cJSON_Delete(burst[i]);
    }
    test_cond("kill: a burst of 200 pipelined messages is acknowledged", burst_ok);
    test_cond("kill: the server dies of SIGKILL", server_stop(SIGKILL) == 128 + SIGKILL);
    cli_free(&a);

    test_cond("kill: restarts on the same database", server_start(NULL) == 0);
    cli_login(&b, "erin", "secret", "kill-e", NULL, &sync);
    test_cond("kill: every acknowledged message is still there (as offline)",
              arr_len(sync, "offlineMsgs") == 50 + KB && find_by(obj_of(sync, "offlineMsgs"), "idServer", last) &&
              find_by(obj_of(sync, "offlineMsgs"), "idServer", burst_last));
    cJSON_Delete(sync);
    cli_free(&b);
    cli_login(&a, "alice", "secret", "kill-a2", NULL, &sync);
    test_cond("kill: alice's read pointer survived",
              int_of(find_by(obj_of(sync, "readPointers"), "sessionId", "p2p-erin"), "ack") == 4242);
    test_cond("kill: alice's sticky top survived",
              find_by(obj_of(sync, "stickTopSessions"), "sessionId", "p2p-erin") != NULL);
    test_cond("kill: the team message survived as roaming",
              find_by(obj_of(sync, "roamingMsgs"), "idClient", "kill-team") != NULL);
    cJSON_Delete(sync);
    r = send_text(&a, "p2p", "erin", "kill-after", "after the crash");
    test_cond("kill: new server ids continue after the old ones",
              code_of(r) == 200 && atoll(str_of(obj_of(obj_of(r, "data"), "msg"), "idServer")) > atoll(last));
    cJSON_Delete(r);
    r = send_text(&a, "team", g_team, "kill-team-2", "team after crash");
    test_cond("kill: the team still works", code_of(r) == 200);
    cJSON_Delete(r);
    cli_free(&a);
}

/* Runs sql on the (stopped) server's database; returns user_version after. */
static int db_exec_version(const char *sql) {
    sqlite3 *h = NULL;
    int v = -1;
    if (sqlite3_open(g_db, &h) == SQLITE_OK && (!sql || sqlite3_exec(h, sql, NULL, NULL, NULL) == SQLITE_OK)) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(h, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return v;
}

/* Logs in once on a new connection; returns the reply (the caller frees). */
static cJSON *login_once(const char *account, const char *token, const char *device) {
    cli c;
    if (cli_open(&c, NIM_PROTO_SUBPROTOCOL) != 0) return NULL;
    char data[400];
    snprintf(data, sizeof data, "{\"account\":\"%s\",\"token\":\"%s\",\"deviceId\":\"%s\",\"version\":%d}",
             account, token, device, NIM_PROTO_VERSION);
    cJSON *r = cli_call(&c, "login", data);
    cli_free(&c);
    return r;
}

/* Login throttling: after 5 failures an account is closed for a doubling
 * time, answered 429 (with retryAfter) before any hashing, while other
 * accounts log in; after 20 failures from one address that address is
 * closed, not another one; a good login clears the account. */
static void t_throttle(void) {
    int codes[8], n302 = 0;
    for (int i = 0; i < 6; i++) {
        cJSON *r = login_once("vera", "wrong", "thr");
        codes[i] = code_of(r);
        n302 += codes[i] == 302;
        cJSON_Delete(r);
    }
    test_cond("throttle: 6 wrong tokens for vera, each refused", n302 == 6);
    cJSON *r = login_once("vera", "secret", "thr");
    int64_t after = int_of(obj_of(r, "data"), "retryAfter");
    test_cond("throttle: then even the right token gets 429 with retryAfter",
              code_of(r) == 429 && after > 0 && after <= 1000 && strstr(str_of(r, "error"), "try again in"));
    cJSON_Delete(r);
    r = login_once("wes", "secret", "thr");
    test_cond("throttle: meanwhile another account logs in from the same address", code_of(r) == 200);
    cJSON_Delete(r);
    /* the closed time passes (1 s): vera logs in, and that clears her */
    int code = 0;
    int64_t deadline = test_now_ms() + 5000;
    while (test_now_ms() < deadline && (code = code_of(r = login_once("vera", "secret", "thr"))) == 429) {
        cJSON_Delete(r);
        r = NULL;
        struct timespec ts = { 0, 100 * 1000000 };
        nanosleep(&ts, NULL);   /* the server's clock is what is waited for */
    }
    cJSON_Delete(r);
    test_cond("throttle: after retryAfter the right token logs in", code == 200);
    r = login_once("vera", "wrong", "thr");
    cJSON_Delete(r);
    r = login_once("vera", "secret", "thr");
    test_cond("throttle: the good login cleared her failures (one more wrong one is not a block)", code_of(r) == 200);
    cJSON_Delete(r);

    /* 20 failures from 127.0.0.2 under names that do not exist: that
     * address is closed, 127.0.0.1 is not */
    g_ws_source = 2;
    char name[32];
    int all302 = 1;
    for (int i = 0; i < 21; i++) {
        snprintf(name, sizeof name, "ghost%d", i);
        r = login_once(name, "x", "thr");
        all302 &= code_of(r) == 302;
        cJSON_Delete(r);
    }
    r = login_once("wes", "secret", "thr2");
    test_cond("throttle: after 21 failures from 127.0.0.2 that address gets 429, even for wes",
              all302 && code_of(r) == 429);
    cJSON_Delete(r);
    g_ws_source = 0;
    r = login_once("wes", "secret", "thr2");
    test_cond("throttle: from 127.0.0.1 wes still logs in", code_of(r) == 200);
    cJSON_Delete(r);
}

/* A bare TCP connection to the server from 127.0.0.<src> (no handshake). */
static int bare_connect(int src) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
    struct sockaddr_in from = { .sin_family = AF_INET };
    from.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof from) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the server has closed fd (EOF or reset within ms). */
static int closed_by_server(int fd, int ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char b;
    return poll(&p, 1, ms) == 1 && recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* Connection caps at accept: a thousand sockets from 127.0.0.2 hold only
 * its 20, a client from 127.0.0.1 logs in meanwhile, and once they close
 * 127.0.0.2 gets its 20 again. */
static void t_conn_caps(void) {
    enum { MAX_N = 1000, PER = 20, LOW = 10 };
    /* a thousand sockets, or what this process's descriptor limit allows */
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    if (nofile.rlim_cur < nofile.rlim_max) { nofile.rlim_cur = nofile.rlim_max; setrlimit(RLIMIT_NOFILE, &nofile); }
    getrlimit(RLIMIT_NOFILE, &nofile);
    int N = nofile.rlim_cur > MAX_N + 200 ? MAX_N : (int)nofile.rlim_cur - 200;
    test_cond("conn caps: the server restarts with --max-connections-per-address 20",
              adduser("alice", "secret") == 0 && server_start3("--max-connections-per-address", "20", NULL) == 0);
    /* 127.0.0.3 takes the server's lowest free descriptors first: when all
     * close, 127.0.0.2's next ones get those numbers, not its own */
    int low[LOW];
    for (int i = 0; i < LOW; i++) low[i] = bare_connect(3);
    static int fds[MAX_N];
    int opened = 0;
    for (int i = 0; i < N; i++) if ((fds[i] = bare_connect(2)) >= 0) opened++;
    int refused = 0;
    for (int i = PER; i < N; i++) refused += fds[i] >= 0 && closed_by_server(fds[i], 2000);
    int kept = 0;
    for (int i = 0; i < PER; i++) kept += fds[i] >= 0 && !closed_by_server(fds[i], 0);
    printf("# conn caps: %d of %d connections from 127.0.0.2: %d kept, %d refused at accept\n", opened, N, kept, refused);
    test_cond("conn caps: of 1000 (or as many as the limit allows) from 127.0.0.2 the server keeps 20, refuses the rest",
              opened == N && kept == PER && refused == N - PER);
    cli a;
    int64_t t0 = test_now_ms();
    test_cond("conn caps: meanwhile a client from 127.0.0.1 logs in, at once",
              cli_login(&a, "alice", "secret", "caps-1", NULL, NULL) == 200 && test_now_ms() - t0 < 1000);
    cli_free(&a);
    for (int i = 0; i < N; i++) if (fds[i] >= 0) close(fds[i]);
    for (int i = 0; i < LOW; i++) if (low[i] >= 0) close(low[i]);
    /* once the server has seen them go, 127.0.0.2 has its 20 again */
    g_ws_source = 2;
    int code = -1;
    int64_t deadline = test_now_ms() + 5000;
    while (test_now_ms() < deadline && (code = cli_login(&a, "alice", "secret", "caps-2", NULL, NULL)) != 200) {
        cli_free(&a);
        struct timespec ts = { 0, 50 * 1000000 };
        nanosleep(&ts, NULL);
    }
    test_cond("conn caps: after they close, 127.0.0.2 logs in again", code == 200);
    cli_free(&a);
    cli b[PER];
    int ok = 0;
    for (int i = 0; i < PER; i++) ok += cli_open(&b[i], NIM_PROTO_SUBPROTOCOL) == 0 && cli_barrier(&b[i]);
    cli extra;
    int over = cli_open(&extra, NIM_PROTO_SUBPROTOCOL) != 0 || !cli_barrier(&extra);
    test_cond("conn caps: 20 WebSocket connections from 127.0.0.2 again, and not 21", ok == PER && over);
    cli_free(&extra);
    for (int i = 0; i < PER; i++) cli_free(&b[i]);
    g_ws_source = 0;
    server_stop(SIGTERM);
}

/* The send rate: a burst past it is answered 429 with retryAfter and not
 * stored, everything answered 200 is, another account is not held back,
 * and after retryAfter the account sends again. */
static void t_send_rate(void) {
    enum { N = 40 };
    const char *was = g_send_rate;
    g_send_rate = "10";        /* bursts of 20 */
    test_cond("send rate: the server restarts with --max-send-rate 10",
              adduser("bob", "secret") == 0 && adduser("xeno", "secret") == 0 && server_start(NULL) == 0);
    cli a, b, z;
    cli_login(&a, "alice", "secret", "rate-a", NULL, NULL);
    cli_login(&b, "bob", "secret", "rate-b", NULL, NULL);
    cJSON *rep[N];
    send_burst(&a, "xeno", "rate", N, -1, -1, 0, rep);
    int ok = 0, limited = 0, retry_ok = 1;
    for (int i = 0; i < N; i++) {
        ok += code_of(rep[i]) == 200;
        if (code_of(rep[i]) == 429) {
            limited++;
            int64_t after = int_of(obj_of(rep[i], "data"), "retryAfter");
            retry_ok &= after > 0 && after <= 100 && strstr(str_of(rep[i], "error"), "at most 10 messages a second") != NULL;
        }
        cJSON_Delete(rep[i]);
    }
    printf("# send rate: of %d sent at once, %d accepted, %d answered 429\n", N, ok, limited);
    test_cond("send rate: a burst of 40 gets about 20 through and 429 for the rest",
              ok >= 20 && ok < 30 && ok + limited == N && retry_ok);
    cJSON *r = send_text(&b, "p2p", "xeno", "rate-b1", "bob is not held back");
    test_cond("send rate: another account sends meanwhile", code_of(r) == 200);
    cJSON_Delete(r);
    cJSON *sync = NULL;
    cli_login(&z, "xeno", "secret", "rate-z", NULL, &sync);
    test_cond("send rate: exactly what was answered 200 is stored", arr_len(sync, "offlineMsgs") == ok + 1);
    cJSON_Delete(sync);
    cli_free(&z);
    int code = 0;
    int64_t deadline = test_now_ms() + 3000;
    while (test_now_ms() < deadline && (code = code_of(r = send_text(&a, "p2p", "xeno", "rate-late", "later"))) == 429) {
        cJSON_Delete(r);
        r = NULL;
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);   /* tokens come back with the server's clock */
    }
    cJSON_Delete(r);
    test_cond("send rate: after retryAfter alice sends again", code == 200);
    cli_free(&a);
    cli_free(&b);
    server_stop(SIGTERM);
    g_send_rate = was;
}

/* Answers that tell unknown names from known ones are rate limited per
 * asking account: createTeam's unknown list and sendMsg's 404. */
static void t_unknown_names(void) {
    cli y, z;
    cli_login(&y, "yuri", "secret", "names-y", NULL, NULL);
    char buf[4096];
    size_t len = (size_t)snprintf(buf, sizeof buf, "{\"name\":\"probe\",\"accounts\":[");
    for (int i = 0; i < 100; i++) len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\"nx%d\"", i ? "," : "", i);
    snprintf(buf + len, sizeof buf - len, "]}");
    cJSON *r = cli_call(&y, "createTeam", buf);
    test_cond("names: 100 unknown names are answered, once",
              code_of(r) == 404 && cJSON_GetArraySize(obj_of(obj_of(r, "data"), "unknown")) == 100);
    cJSON_Delete(r);
    r = cli_call(&y, "createTeam", "{\"name\":\"probe\",\"accounts\":[\"nx100\"]}");
    test_cond("names: then createTeam is 429 with retryAfter, the names unchecked",
              code_of(r) == 429 && int_of(obj_of(r, "data"), "retryAfter") > 0 &&
              !obj_of(obj_of(r, "data"), "unknown"));
    cJSON_Delete(r);
    r = send_text(&y, "p2p", "nx101", "names-1", "probe");
    test_cond("names: and a message to an unknown name too", code_of(r) == 429);
    cJSON_Delete(r);
    r = send_text(&y, "p2p", "zara", "names-2", "hello");
    test_cond("names: a message to a known account still goes", code_of(r) == 200);
    cJSON_Delete(r);
    cli_login(&z, "zara", "secret", "names-z", NULL, NULL);
    r = cli_call(&z, "createTeam", "{\"name\":\"t\",\"accounts\":[\"nx5\"]}");
    test_cond("names: another account still gets its answers", code_of(r) == 404);
    cJSON_Delete(r);
    cli_free(&y);
    cli_free(&z);
}

/* Devices per account (--max-devices): a new device past the cap gets
 * 419, known ones log in. */
static void t_devices(void) {
    test_cond("devices: the server restarts with --max-devices 3",
              adduser("ola", "secret") == 0 && server_start3("--max-devices", "3", NULL) == 0);
    cli c;
    int ok = 0;
    char dev[16];
    for (int k = 1; k <= 3; k++) {
        snprintf(dev, sizeof dev, "ola-%d", k);
        ok += cli_login(&c, "ola", "secret", dev, NULL, NULL) == 200;
        cli_free(&c);
    }
    cJSON *r = login_once("ola", "secret", "ola-4");
    test_cond("devices: three devices log in, a fourth gets 419 naming the cap",
              ok == 3 && code_of(r) == 419 && strstr(str_of(r, "error"), "at most 3 devices") != NULL);
    cJSON_Delete(r);
    test_cond("devices: a known one still logs in", cli_login(&c, "ola", "secret", "ola-2", NULL, NULL) == 200);
    cli_free(&c);
    server_stop(SIGTERM);
}

/* The server's total unsent output (--max-output-mb): with it full the
 * slowest readers are cut and their queues freed, a reader that reads
 * gets everything, and the cut ones find everything offline after. */
static void t_output_cap(void) {
    enum { N = 600, TEXT = 15000, STALLED = 3 };
    const char *names[STALLED] = { "pia", "rob", "sam" };
    int ok = adduser("tom", "secret") == 0;
    for (int k = 0; k < STALLED; k++) ok &= adduser(names[k], "secret") == 0;
    test_cond("output: the server restarts with --max-output-mb 4",
              ok && server_start3("--max-output-mb", "4", NULL) == 0);
    cli a, reader, st[STALLED];
    cli_login(&a, "tom", "secret", "out-a", NULL, NULL);
    cli_login(&reader, "ola", "secret", "ola-1", NULL, NULL);
    for (int k = 0; k < STALLED; k++) cli_login(&st[k], names[k], "secret", "out-s", NULL, NULL);
    cJSON *r = cli_call(&a, "createTeam", "{\"name\":\"wide\",\"accounts\":[\"pia\",\"rob\",\"sam\",\"ola\"]}");
    char team[24];
    snprintf(team, sizeof team, "%s", str_of(obj_of(obj_of(r, "data"), "team"), "teamId"));
    cJSON_Delete(r);
    /* 600 x 15 KB = 9 MB to each of four members: far more than the 4 MB allowed, and than the sockets hold */
    char *buf = malloc(TEXT + 256), *fill = malloc(TEXT + 1);
    memset(fill, 'o', TEXT);
    fill[TEXT] = 0;
    int acked = 0, got = 0;
    for (int i = 0; i < N; i++) {
        snprintf(buf, TEXT + 256, "{\"scene\":\"team\",\"to\":\"%s\",\"type\":\"text\",\"idClient\":\"out-%d\","
                 "\"text\":\"%d %s\"}", team, i, i, fill);
        cJSON *x = cli_call(&a, "sendMsg", buf);
        acked += code_of(x) == 200;
        cJSON_Delete(x);
        for (cJSON *p; (p = cli_take(&reader, "msg")) || (p = cli_read(&reader, 0)); cJSON_Delete(p))
            got += strcmp(str_of(p, "push"), "msg") == 0;
    }
    int64_t deadline = test_now_ms() + T_MS;
    while (got < N && test_now_ms() < deadline) {
        cJSON *p = cli_read(&reader, 200);
        if (p) { got += strcmp(str_of(p, "push"), "msg") == 0; cJSON_Delete(p); }
    }
    int cut = 0;
    for (int k = 0; k < STALLED; k++) { cut += ws_wait_closed(&st[k].ws, T_MS); cli_free(&st[k]); }
    printf("# output: %d acknowledged, the reader got %d, %d of %d stalled readers cut\n", acked, got, cut, STALLED);
    test_cond("output: every send acknowledged, the reading member gets all of them",
              acked == N && got == N);
    test_cond("output: the stalled readers were cut", cut == STALLED);
    int all = 1;
    for (int k = 0; k < STALLED; k++) {
        cJSON *sync = NULL;
        cli c;
        cli_login(&c, names[k], "secret", "out-s2", NULL, &sync);
        all &= arr_len(sync, "offlineMsgs") == N;
        cJSON_Delete(sync);
        cli_free(&c);
    }
    test_cond("output: and find every one of them offline afterwards", all);
    free(buf);
    free(fill);
    cli_free(&a);
    cli_free(&reader);
    server_stop(SIGTERM);
}

/* At the total cap, a connection that has not logged in makes room for a
 * new one: 30 idle sockets from other addresses do not keep a user out. */
static void t_conn_total(void) {
    enum { IDLE = 30 };
    test_cond("conn total: the server restarts with --max-connections 30",
              server_start3("--max-connections", "30", NULL) == 0);
    cli idle[IDLE];
    int opened = 0;
    for (int i = 0; i < IDLE; i++) {
        g_ws_source = 30 + i;
        opened += cli_open(&idle[i], NIM_PROTO_SUBPROTOCOL) == 0 && cli_barrier(&idle[i]);
    }
    g_ws_source = 0;
    cli a;
    int code = cli_login(&a, "ola", "secret", "ola-1", NULL, NULL);
    int evicted = 0;
    for (int i = 0; i < IDLE; i++) { evicted += ws_wait_closed(&idle[i].ws, 200); cli_free(&idle[i]); }
    test_cond("conn total: 30 idle connections, then a user logs in, and one idle one made room",
              opened == IDLE && code == 200 && evicted >= 1);
    cli_free(&a);
    server_stop(SIGTERM);
}

/* Storage per account (--max-storage-mb): sends past it get 419 and are
 * not stored; everything acknowledged is; another account still sends. */
static void t_storage(void) {
    enum { MAX = 200 };
    test_cond("storage: the server restarts with --max-storage-mb 1",
              adduser("uli", "secret") == 0 && server_start3("--max-storage-mb", "1", NULL) == 0);
    cli u, o;
    cli_login(&u, "uli", "secret", "st-u", NULL, NULL);
    char why[160];
    int acked = send_until(&u, "ola", "st", MAX, 419, why, sizeof why), limited = acked >= 0;
    if (acked < 0) acked = -acked - 1;
    printf("# storage: %d messages of 15 KB before the 1 MiB cap\n", acked);
    test_cond("storage: about 1 MiB of messages acknowledged, then 419 naming the cap",
              acked >= 60 && acked <= 70 && limited && strstr(why, "at most 1 MiB") != NULL);
    cJSON *sync = NULL;
    cli_login(&o, "ola", "secret", "ola-1", NULL, &sync);
    int stored = 0;
    for (const cJSON *m = obj_of(sync, "offlineMsgs")->child; m; m = m->next)
        stored += strcmp(str_of(m, "from"), "uli") == 0;
    cJSON_Delete(sync);
    test_cond("storage: exactly the acknowledged ones are stored", stored == acked);
    cJSON *r = send_text(&o, "p2p", "uli", "st-o", "ola is not held back");
    test_cond("storage: another account still sends", code_of(r) == 200);
    cJSON_Delete(r);
    cli_free(&u);
    cli_free(&o);
    server_stop(SIGTERM);
}

/* The stored iteration count of account's token (-1: none). */
static int kdf_iterations_of(const char *account) {
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_open(g_db, &h) == SQLITE_OK &&
        sqlite3_prepare_v2(h, "SELECT iterations FROM accounts WHERE account = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* Credentials with the default 600,000 PBKDF2 iterations: the token from
 * stdin; a weaker stored hash upgraded at its next good login; the
 * derivation off the event loop (another user's round trips stay short
 * while logins are being derived); a request sent right behind a login
 * answered after it, in order. */
static void t_kdf(void) {
    cli a, o, l[4];
    char cmd[PATH_MAX * 2 + 64];
    snprintf(g_db, sizeof g_db, "%s/kdf.db", g_dir);
    /* an old-style account, hashed with 1,000 iterations */
    test_cond("kdf: an account made with 1000 iterations", adduser("sara", "old-secret") == 0 &&
              kdf_iterations_of("sara") == 1000);
    g_kdf = "";   /* from here on the default */
    snprintf(cmd, sizeof cmd, "printf 'piped-secret\\n' | '%s' --db '%s' adduser tina >/dev/null", g_server, g_db);
    test_cond("kdf: adduser reads the token from stdin, hashed with 600000",
              system(cmd) == 0 && kdf_iterations_of("tina") == 600000);
    test_cond("kdf: the server starts with the default", server_start(NULL) == 0);
    test_cond("kdf: the stdin token logs in", cli_login(&a, "tina", "piped-secret", "kdf-a", NULL, NULL) == 200);
    cli_free(&a);
    test_cond("kdf: the old account logs in", cli_login(&a, "sara", "old-secret", "kdf-s", NULL, NULL) == 200);
    test_cond("kdf: and its hash is upgraded to 600000", kdf_iterations_of("sara") == 600000);
    cli_free(&a);
    test_cond("kdf: the upgraded hash still takes its token, and only it",
              cli_login(&a, "sara", "old-secret", "kdf-s", NULL, NULL) == 200 &&
              (cli_free(&a), cli_login(&a, "sara", "wrong", "kdf-s", NULL, NULL)) == 302);
    cli_free(&a);

    /* four logins at once (0.8 s of derivation) while tina pings, each
     * from its own address (one address has at most 2 being derived) */
    cli_login(&o, "tina", "piped-secret", "kdf-o", NULL, NULL);
    char login[256];
    for (int k = 0; k < 4; k++) {
        g_ws_source = 10 + k;
        cli_open(&l[k], NIM_PROTO_SUBPROTOCOL);
        g_ws_source = 0;
        snprintf(login, sizeof login, "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"%s\",\"token\":\"%s\","
                 "\"deviceId\":\"kdf-l%d\",\"version\":%d}}", k % 2 ? "sara" : "nobody", k % 2 ? "old-secret" : "x",
                 k, NIM_PROTO_VERSION);
        ws_send_text(&l[k].ws, login);
    }
    int64_t worst = 0;
    for (int k = 0; k < 20; k++) {
        int64_t t0 = test_now_ms();
        if (!cli_barrier(&o)) { worst = 99999; break; }
        if (test_now_ms() - t0 > worst) worst = test_now_ms() - t0;
    }
    printf("# kdf: another user's worst round trip while 4 logins were derived: %lld ms\n", (long long)worst);
    test_cond("kdf: another user's round trips stay under 100 ms while logins are derived", worst < 100);
    int answered = 0;
    for (int k = 0; k < 4; k++) {
        cJSON *r = cli_read(&l[k], T_MS);
        answered += r && int_of(r, "id") == 1 && code_of(r) == (k % 2 ? 200 : 302);
        cJSON_Delete(r);
        cli_free(&l[k]);
    }
    test_cond("kdf: and every one of them is answered, right", answered == 4);

    /* a flood from one address (connect, login, hang up) while sara logs
     * in from another: the flood gets 429s, her login is not queued behind it */
    g_ws_source = 20;
    int busy = 0;
    for (int k = 0; k < 60; k++) {
        cli f;
        if (cli_open(&f, NIM_PROTO_SUBPROTOCOL) != 0) continue;
        snprintf(login, sizeof login, "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"ghost%d\",\"token\":\"x\","
                 "\"deviceId\":\"kdf-f\",\"version\":%d}}", k, NIM_PROTO_VERSION);
        ws_send_text(&f.ws, login);
        if (k % 2) {   /* every other one waits for its answer, the rest hang up at once */
            cJSON *r = cli_read(&f, 200);
            busy += r && code_of(r) == 429;
            cJSON_Delete(r);
        }
        cli_free(&f);
    }
    g_ws_source = 0;
    int64_t t0 = test_now_ms();
    int code = cli_login(&a, "sara", "old-secret", "kdf-s2", NULL, NULL);
    int64_t took = test_now_ms() - t0;
    cli_free(&a);
    printf("# kdf: a flood of 60 logins from one address: %d answered 429; another login then took %lld ms\n",
           busy, (long long)took);
    test_cond("kdf: a login flood from one address gets 429 and does not hold another address's login",
              busy > 0 && code == 200 && took < 2000);

    /* a request right behind the login, in the same write: answered after it */
    cli_open(&a, NIM_PROTO_SUBPROTOCOL);
    snprintf(login, sizeof login, "{\"id\":1,\"cmd\":\"login\",\"data\":{\"account\":\"tina\",\"token\":"
             "\"piped-secret\",\"deviceId\":\"kdf-p\",\"version\":%d}}", NIM_PROTO_VERSION);
    int one = 1, zero = 0;
    setsockopt(a.ws.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    ws_send_text(&a.ws, login);
    ws_send_text(&a.ws, "{\"id\":2,\"cmd\":\"getStickTop\"}");
    setsockopt(a.ws.fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    int order_ok = 0;
    cJSON *r1 = NULL, *r2 = NULL;
    for (int k = 0; k < 10 && !r2; k++) {
        cJSON *f = cli_read(&a, T_MS);
        if (!f) break;
        if (cJSON_GetObjectItemCaseSensitive(f, "code")) { if (!r1) r1 = f; else r2 = f; }
        else cJSON_Delete(f);
    }
    order_ok = r1 && r2 && int_of(r1, "id") == 1 && code_of(r1) == 200 && int_of(r2, "id") == 2 && code_of(r2) == 200;
    test_cond("kdf: a request right behind a login is answered after it, as logged in", order_ok);
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    cli_free(&a);
    cli_free(&o);
    server_stop(SIGTERM);
    g_kdf = "1000";
}

/* A version 1 database (before the sync's index) is migrated at start and
 * keeps everything; a database newer than the server is refused. */
static void t_schema(void) {
    cli c;
    cJSON *sync = NULL;
    test_cond("schema: made a version 1 database",
              db_exec_version("DROP INDEX inbox_session; DROP INDEX msgs_time; DROP INDEX receipts_reader; "
                              "DROP INDEX accounts_lower; ALTER TABLE accounts DROP COLUMN stored; "
                              "DELETE FROM counters WHERE name = 'server_id'; "
                              "PRAGMA user_version = 1") == 1);
    test_cond("schema: the server starts on it", server_start(NULL) == 0);
    cli_login(&c, "frank", "secret", "schema-f", NULL, &sync);
    test_cond("schema: its messages are all there", arr_len(sync, "roamingMsgs") == 100);
    cJSON_Delete(sync);
    cli_free(&c);
    server_stop(SIGTERM);
    test_cond("schema: migrated to version 6, with the indexes, the storage counts and an id",
              db_exec_version(NULL) == 6 &&
              db_exec_version("SELECT * FROM inbox INDEXED BY inbox_session LIMIT 1") == 6 &&
              db_exec_version("SELECT * FROM msgs INDEXED BY msgs_time LIMIT 1") == 6 &&
              db_exec_version("SELECT * FROM accounts INDEXED BY accounts_lower LIMIT 1") == 6 &&
              db_exec_version("SELECT stored FROM accounts LIMIT 1") == 6);
    /* the id the migration made: named at every login, the same after a restart */
    test_cond("schema: the server starts again", server_start(NULL) == 0);
    cJSON *l1 = login_once("frank", "secret", "schema-f");
    server_stop(SIGTERM);
    test_cond("schema: the server starts once more", server_start(NULL) == 0);
    cJSON *l2 = login_once("frank", "secret", "schema-f");
    server_stop(SIGTERM);
    const cJSON *d1 = l1 ? cJSON_GetObjectItemCaseSensitive(l1, "data") : NULL;
    const cJSON *d2 = l2 ? cJSON_GetObjectItemCaseSensitive(l2, "data") : NULL;
    const char *s1 = d1 ? nim_jstr(d1, "serverId") : NULL, *s2 = d2 ? nim_jstr(d2, "serverId") : NULL;
    test_cond("schema: the login names the database's id, the same after a restart",
              s1 && s2 && *s1 && s1[0] != '0' && strcmp(s1, s2) == 0);
    cJSON_Delete(l1);
    cJSON_Delete(l2);
    db_exec_version("PRAGMA user_version = 7");
    test_cond("schema: a newer database is refused", server_start(NULL) != 0);
    db_exec_version("PRAGMA user_version = 6");
}

static void t_open_registration(void) {
    cli c;
    test_cond("open registration: server restarts with --open-registration",
              server_start3("--open-registration", "--idle", "1") == 0);
    test_cond("open registration: a new account logs in", cli_login(&c, "newbie", "pw1", "d", NULL, NULL) == 200);
    cli_free(&c);
    test_cond("open registration: its token is now required", cli_login(&c, "newbie", "pw2", "d", NULL, NULL) == 302);
    cli_free(&c);
    test_cond("open registration: existing accounts keep their token",
              cli_login(&c, "alice", "not-secret", "d", NULL, NULL) == 302);
    cli_free(&c);
    test_cond("open registration: a case twin of an account is refused (403)",
              cli_login(&c, "ALICE", "pw", "d", NULL, NULL) == 403 && adduser("Alice", "x") == 2);
    cli_free(&c);
    /* --idle 1: a logged-in connection that stays silent is closed. */
    cli_login(&c, "alice", "secret", "idle", NULL, NULL);
    int64_t t0 = test_now_ms();
    test_cond("idle: a silent connection is closed after --idle seconds",
              ws_wait_closed(&c.ws, T_MS) && test_now_ms() - t0 >= 500);
    cli_free(&c);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, watchdog);
    alarm(300);
    (void)argc;
    if (server_setup(argv[0], "test_server") != 0) {
        test_cond("the nim-server binary exists", 0);
        return test_report();
    }

    const char *users[] = { "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "kate", "lena", "quin", "vera", "wes", "yuri", "zara" };
    int ok = 1;
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) ok &= adduser(users[i], "secret") == 0;
    test_cond("adduser registers accounts", ok);
    test_cond("adduser refuses a bad account name", adduser("bad name", "x") == 2);

    if (server_start(NULL) != 0) {
        test_cond("the server starts and prints its port", 0);
    } else {
        t_login();
        t_nul_and_exact();
        t_p2p();
        t_read_pointers();
        t_receipts();
        t_delete_sessions();
        t_stick_top();
        t_teams();
        t_hostile();
        t_lws_client();
        t_history();
        t_throttle();
        t_unknown_names();
        t_state_pages();
        t_roaming_resume();
        t_big_offline();
        t_stalled_recipient();
        t_burst();
        t_pipelined_sender();
        t_kill_restart();
        test_cond("SIGTERM: the server exits cleanly with status 0", server_stop(SIGTERM) == 0);
        t_open_registration();
        test_cond("SIGINT: the server exits cleanly with status 0", server_stop(SIGINT) == 0);
        t_state_caps();
        t_schema();
        t_disk_full();
        t_readonly();
        t_kdf();
        t_conn_caps();
        t_send_rate();
        t_devices();
        t_output_cap();
        t_storage();
        t_conn_total();
    }
    server_teardown("test_server");
    return test_report();
}
