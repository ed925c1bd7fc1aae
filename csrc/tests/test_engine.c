/* C unit test of the session engine's unread rules, driving the engine
 * directly (no Lua): commands in, events out through the wakeup fd. Also
 * built as test_engine_pipe, with the pipe wakeup fd (core/wakeup.h). */
#include "core/engine.h"
#include "core/store.h"
#include "testhelp.h"
#include "engine_req.h"
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t next_req = 1;

/* Counts the session updates seen on the way (ud: int *, or NULL). */
static void count_updates(void *ud, nim_event *ev) {
    if (ev->type == NIM_EV_UPDATE_SESSION && ud) (*(int *)ud)++;
    nim_event_free(ev);
}

/* Submits cmd with args (a JSON text) and waits for its reply. */
static nim_event *request(nim_engine *e, int cmd, const char *json, int *n_updates) {
    int refused;
    return test_request(e, next_req++, cmd, json, 10000, count_updates, n_updates, &refused);
}

static int ok(nim_engine *e, int cmd, const char *json) {
    nim_event *ev = request(e, cmd, json, NULL);
    int good = ev && ev->code == NULL;
    nim_event_free(ev);
    return good;
}

/* The unread of session id, or -1 when it is unknown. */
static long unread(nim_engine *e, const char *id) {
    char args[256];
    snprintf(args, sizeof args, "{\"sessionId\":\"%s\"}", id);
    nim_event *ev = request(e, NIM_CMD_GET_SESSION, args, NULL);
    long u = -1;
    if (ev && ev->data) u = (long)cJSON_GetObjectItem(ev->data, "unread")->valuedouble;
    nim_event_free(ev);
    return u;
}

static char *msg(char *buf, size_t n, const char *from, const char *to, long time, const char *id,
                 const char *extra) {
    snprintf(buf, n, "{\"scene\":\"p2p\",\"from\":\"%s\",\"to\":\"%s\",\"time\":%ld,"
             "\"idServer\":\"%s\"%s%s}", from, to, time, id, extra ? "," : "", extra ? extra : "");
    return buf;
}

/* Saves one message. */
static int save1(nim_engine *e, const char *from, long time, const char *id, const char *extra) {
    char m[512], args[600];
    msg(m, sizeof m, from, "me", time, id, extra);
    snprintf(args, sizeof args, "{\"msgs\":[%s]}", m);
    return ok(e, NIM_CMD_SAVE_MSGS, args);
}

static int no_mismatch(nim_engine *e) {
    nim_event *ev = request(e, NIM_CMD_VERIFY, NULL, NULL);
    int good = ev && ev->data && cJSON_GetArraySize(cJSON_GetObjectItem(ev->data, "mismatches")) == 0;
    nim_event_free(ev);
    return good;
}

static nim_engine *start(const char *path) {
    nim_engine_config cfg = { .account = "me", .db_path = path,
                              .flags = NIM_ENGINE_NOTIFY_UPDATES | NIM_ENGINE_NOTIFY_SESSIONS };
    return nim_engine_start(&cfg);
}

/* The kv outbox primitives (the network layer's read-pointer outbox). */
typedef struct { char keys[4][16]; long long nums[4]; int n; } kv_rows;

static int kv_row(void *ud, const char *k, int64_t num) {
    kv_rows *r = ud;
    if (r->n < 4) { snprintf(r->keys[r->n], sizeof r->keys[0], "%s", k); r->nums[r->n++] = num; }
    return 0;
}

static void t_kv_outbox(void) {
    nim_store *st = nim_store_open(NULL, NULL);
    test_cond("store opens in memory", st != NULL);
    if (!st) return;
    nim_store_kv_set(st, "ac", 1, NULL);
    nim_store_kv_set(st, "ack:p2p-b", 7, NULL);
    nim_store_kv_set(st, "ack:p2p-a", 5, NULL);
    nim_store_kv_set(st, "ack;", 9, NULL);        /* the first key past the prefix */
    kv_rows r = { .n = 0 };
    test_cond("kv scan succeeds", nim_store_kv_scan(st, "ack:", kv_row, &r) == 0);
    test_cond("kv scan: exactly the prefix's keys, in key order",
              r.n == 2 && !strcmp(r.keys[0], "ack:p2p-a") && r.nums[0] == 5 &&
              !strcmp(r.keys[1], "ack:p2p-b") && r.nums[1] == 7);
    nim_store_kv_del_upto(st, "ack:", "p2p-a", 4);   /* a newer pointer was written since: kept */
    nim_store_kv_del_upto(st, "ack:", "p2p-b", 7);
    r.n = 0;
    nim_store_kv_scan(st, "ack:", kv_row, &r);
    test_cond("kv del_upto deletes only a number <= the one sent",
              r.n == 1 && !strcmp(r.keys[0], "ack:p2p-a") && r.nums[0] == 5);
    nim_store_close(st);
}

int main(void) {
    t_kv_outbox();
    test_cond("countable: incoming text", nim_msg_countable("in", "text", 0));
    test_cond("countable: not outgoing", !nim_msg_countable("out", "text", 0));
    test_cond("countable: not notifications", !nim_msg_countable("in", "notification", 0));
    test_cond("countable: not isUnreadable=false", !nim_msg_countable("in", "custom", 1));
    test_cond("countable: tips count", nim_msg_countable("in", "tip", 0));

    nim_engine *e = start(NULL);
    test_cond("engine starts in memory", e != NULL);

    test_cond("save in", save1(e, "bob", 10, "1", NULL));
    test_cond("save notification", save1(e, "bob", 11, "2", "\"type\":\"notification\""));
    test_cond("save unreadable", save1(e, "bob", 12, "3", "\"isUnreadable\":false"));
    test_cond("save mine", save1(e, "me", 13, "4", NULL));
    test_cond("only the incoming countable message counts", unread(e, "p2p-bob") == 1);

    test_cond("a duplicate is stored once", save1(e, "bob", 10, "1", NULL));
    test_cond("a duplicate does not count", unread(e, "p2p-bob") == 1);
    int ups = 0;
    nim_event *ev = request(e, NIM_CMD_SAVE_MSGS,
        "{\"msgs\":[{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":10,\"idServer\":\"1\"}]}", &ups);
    nim_event_free(ev);
    test_cond("a duplicate changes nothing: no update event", ups == 0);
    ev = request(e, NIM_CMD_SAVE_MSGS,
        "{\"msgs\":[{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":20,\"idServer\":\"5\"},"
        "{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":21,\"idServer\":\"5\"}]}", &ups);
    nim_event_free(ev);
    test_cond("duplicates in one batch count once", unread(e, "p2p-bob") == 2);
    test_cond("one update per session per batch", ups == 1);

    test_cond("reset", ok(e, NIM_CMD_RESET_UNREAD, "{\"ids\":[\"p2p-bob\"]}"));
    test_cond("reset gives 0", unread(e, "p2p-bob") == 0);
    test_cond("older than the pointer", save1(e, "bob", 15, "6", NULL));
    test_cond("a message older than the pointer does not count", unread(e, "p2p-bob") == 0);
    test_cond("newer", save1(e, "bob", 30, "7", NULL));
    test_cond("a newer message counts", unread(e, "p2p-bob") == 1);

    test_cond("set current", ok(e, NIM_CMD_SET_CURR, "{\"id\":\"p2p-bob\"}"));
    test_cond("setCurrSession resets", unread(e, "p2p-bob") == 0);
    test_cond("current gets a message", save1(e, "bob", 40, "8", NULL));
    test_cond("the current session's pointer follows", unread(e, "p2p-bob") == 0);
    test_cond("reset current", ok(e, NIM_CMD_RESET_CURR, NULL));
    test_cond("after", save1(e, "bob", 50, "9", NULL));
    test_cond("no current session: counts again", unread(e, "p2p-bob") == 1);

    {
        nim_event *ev = request(e, NIM_CMD_DELETE_SESSIONS, NULL, NULL);
        test_cond("a delete that names no ids is refused, not answered \"deleted\"",
                  ev && ev->code && !strcmp(ev->code, NIM_ERR_BAD_ARGS));
        nim_event_free(ev);
    }
    test_cond("hide", ok(e, NIM_CMD_DELETE_SESSIONS, "{\"ids\":[\"p2p-bob\"],\"isLogic\":true}"));
    test_cond("hidden session is not returned", unread(e, "p2p-bob") == -1);
    test_cond("revive", save1(e, "bob", 60, "10", NULL));
    test_cond("a message revives it with its unread", unread(e, "p2p-bob") == 2);
    test_cond("remove", ok(e, NIM_CMD_DELETE_SESSIONS, "{\"ids\":[\"p2p-bob\"]}"));
    test_cond("re-create", save1(e, "bob", 70, "11", NULL));
    test_cond("a removed session comes back with the new message only", unread(e, "p2p-bob") == 1);

    test_cond("reset all", ok(e, NIM_CMD_RESET_ALL_UNREAD, NULL));
    test_cond("reset all gives 0", unread(e, "p2p-bob") == 0);
    test_cond("kept unread equals a recount", no_mismatch(e));

    ev = request(e, NIM_CMD_GET_SESSIONS, "{\"lastSessionId\":\"p2p-nobody\",\"limit\":5}", NULL);
    test_cond("unknown cursor", ev && ev->code && strcmp(ev->code, NIM_ERR_SESSION_NOT_EXIST) == 0);
    nim_event_free(ev);
    nim_engine_free(e);

    /* restart with a file keeps unread and the pointer */
    char path[] = "/tmp/nim-test-engine-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    e = start(path);
    test_cond("file engine", e != NULL);
    save1(e, "carol", 100, "c1", NULL);
    save1(e, "carol", 200, "c2", NULL);
    ok(e, NIM_CMD_RESET_UNREAD, "{\"ids\":[\"p2p-carol\"]}");
    save1(e, "carol", 300, "c3", NULL);
    nim_engine_free(e);
    e = start(path);
    test_cond("unread survives a restart", unread(e, "p2p-carol") == 1);
    save1(e, "carol", 150, "c4", NULL);
    test_cond("the pointer survives a restart", unread(e, "p2p-carol") == 1);
    test_cond("no mismatch after restart", no_mismatch(e));
    nim_engine_free(e);
    char aux[300];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path); unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path); unlink(aux);

    /* an unusable database: DB_Error, never a crash */
    e = start("/proc/nim-no-such-dir/x.db");
    ev = request(e, NIM_CMD_GET_SESSIONS, "{}", NULL);
    test_cond("an unusable database answers DB_Error", ev && ev->code && strcmp(ev->code, NIM_ERR_DB) == 0);
    nim_event_free(ev);
    nim_engine_free(e);
    return test_report();
}
