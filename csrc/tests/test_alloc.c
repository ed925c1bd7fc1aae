/* Allocation-failure injection for the engine: "no crash, no leak, a clear
 * error" when memory runs out.
 *
 * A scenario (start, saveMsgsToLocal across sessions, getLocalSessions,
 * setCurrSession, resetAllSessionUnread, deleteLocalSession, a consistency
 * check, close) is run once to count the allocations it makes (engine,
 * store, cJSON: the engine hooks cJSON to nim_malloc; SQLite's own are out
 * of scope), then again with allocation k failing, for k = 1..N, in two
 * modes: once (only allocation k fails: a transient shortage) and from k on
 * (every later allocation fails until the scenario has been closed). Each
 * run checks: no crash, no hang, every accepted request (submit returned 0)
 * gets exactly one reply, an error reply carries a known code, the engine
 * closes; after the shortage the kept unread still equals a recount (or the
 * engine says DB_Error); a file database reopens consistent. Leaks are left
 * to ASan's leak checker (make asan runs this with detect_leaks on).
 *
 * After the shortage the callbacks' view must also add up: the events the
 * engine queued (onsessions lists and updates replacing sessions by id, a
 * successful delete removing one) must equal getLocalSessions, the opening
 * list must hold every stored session (a list is never sent in part), and
 * onsyncdone must come once, after it. An event lost to the shortage is
 * sent again (view.c eng_try_resync).
 *
 * NIM_ALLOC_STRIDE=n tries every nth point only (default: every point);
 * NIM_ALLOC_DEBUG=1 prints the view and the truth when they differ. */
#include "core/engine.h"
#include "core/engine_net.h"
#include "core/alloc.h"
#include "testhelp.h"
#include "engine_req.h"
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXREQ 32

typedef struct {
    uint64_t next;
    int done[MAXREQ];        /* DONE events seen per req */
    int accepted[MAXREQ];    /* submit returned 0 */
    const char *code[MAXREQ];
    int bad;                 /* a failure already reported in this run */
    nim_event *kept, *kept_tail;   /* every event, in order, for the view check */
} run_state;

static int known_code(const char *c) {
    return !c || !strcmp(c, NIM_ERR_NO_MEMORY) || !strcmp(c, NIM_ERR_DB) ||
           !strcmp(c, NIM_ERR_BAD_ARGS) || !strcmp(c, NIM_ERR_SESSION_NOT_EXIST);
}

/* Every event, kept in order for the view check; replies counted per req. */
static void keep(void *ud, nim_event *ev) {
    run_state *r = ud;
    if (ev->type == NIM_EV_DONE && ev->req < MAXREQ) {
        r->done[ev->req]++;
        r->code[ev->req] = ev->code;
    }
    if (r->kept_tail) r->kept_tail->next = ev; else r->kept = ev;
    r->kept_tail = ev;
}

static void free_kept(run_state *r) {
    nim_event_free(r->kept);   /* the whole chain */
    r->kept = r->kept_tail = NULL;
}

/* The owner's view, built as an app builds it: onsessions lists and
 * updates replace sessions by id, a successful delete removes them. */
#define VIEW_MAX 16
typedef struct {
    const cJSON *s[VIEW_MAX];
    int n, lists, first_list_n, syncdones, list_after_syncdone;
} view;

/* sessions in the database a scenario starts on (the file engine's base) */
static int base_sessions;

static void view_put(view *v, const cJSON *s) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(s, "id"));
    for (int i = 0; i < v->n; i++)
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(v->s[i], "id")), id)) { v->s[i] = s; return; }
    if (v->n < VIEW_MAX) v->s[v->n++] = s;
}

static void view_cut(view *v, const char *id) {
    for (int i = 0; i < v->n; i++)
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(v->s[i], "id")), id)) {
            v->s[i] = v->s[--v->n];
            return;
        }
}

static void view_build(view *v, const run_state *r, uint64_t delete_req, const char *deleted) {
    memset(v, 0, sizeof *v);
    for (const nim_event *ev = r->kept; ev; ev = ev->next) {
        const cJSON *s;
        switch (ev->type) {
        case NIM_EV_SESSIONS:
            if (v->lists++ == 0) v->first_list_n = cJSON_GetArraySize(ev->data);
            if (v->syncdones) v->list_after_syncdone = 1;
            cJSON_ArrayForEach(s, ev->data) view_put(v, s);
            break;
        case NIM_EV_UPDATE_SESSION: view_put(v, ev->data); break;
        case NIM_EV_SYNCDONE: v->syncdones++; break;
        case NIM_EV_DONE: if (ev->req == delete_req && !ev->code) view_cut(v, deleted); break;
        }
    }
}

/* 1 when the view holds exactly the sessions of list (a getLocalSessions
 * answer), each with the same unread, updateTime and isTop. */
static int view_matches(const view *v, const cJSON *list) {
    if (cJSON_GetArraySize(list) != v->n) return 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(t, "id"));
        const cJSON *s = NULL;
        for (int i = 0; i < v->n && !s; i++)
            if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(v->s[i], "id")), id)) s = v->s[i];
        if (!s) return 0;
        static const char *const keys[] = {"unread", "updateTime", "isTop"};
        for (int k = 0; k < 3; k++)
            if (!cJSON_Compare(cJSON_GetObjectItem(s, keys[k]), cJSON_GetObjectItem(t, keys[k]), 1)) return 0;
    }
    return 1;
}

/* Submits cmd (args parsed from json, possibly failing under injection)
 * and waits up to 10 s for its reply. Returns the reply's code in *code
 * (NULL: success), its data in *data when wanted; 0 when answered, 1 when
 * the submit was refused, -1 on a hang. */
static int request(nim_engine *e, run_state *r, int cmd, const char *json, const char **code,
                   cJSON **data) {
    uint64_t req = r->next++;
    if (data) *data = NULL;
    int refused;
    nim_event *ev = test_request(e, req, cmd, json, 10000, keep, r, &refused);
    if (refused) return 1;
    r->accepted[req] = 1;
    if (!ev) return -1;
    if (data) { *data = ev->data; ev->data = NULL; }
    if (code) *code = ev->code;
    keep(r, ev);
    return 0;
}

static void fail(run_state *r, const char *what, long at, long span) {
    if (r->bad) return;
    r->bad = 1;
    char d[200];
    if (span > 1) snprintf(d, sizeof d, "%s (failing allocations %ld..%ld)", what, at, at + span - 1);
    else snprintf(d, sizeof d, "%s (failing allocation %ld, %s)", what, at, span ? "once" : "from then on");
    test_cond(d, 0);
}

static const char *SAVES[] = {
    "{\"msgs\":[{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":10,\"idServer\":\"1\",\"text\":\"hi\"},"
    "{\"scene\":\"p2p\",\"from\":\"carol\",\"to\":\"me\",\"time\":11,\"idServer\":\"2\"},"
    "{\"scene\":\"team\",\"from\":\"bob\",\"to\":\"t1\",\"time\":12,\"idServer\":\"3\",\"type\":\"tip\"}]}",
    "{\"msgs\":[{\"scene\":\"p2p\",\"from\":\"me\",\"to\":\"bob\",\"time\":20,\"idClient\":\"c4\"},"
    "{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":21,\"idServer\":\"5\"},"
    "{\"scene\":\"team\",\"from\":\"dave\",\"to\":\"t1\",\"time\":22,\"idServer\":\"6\",\"type\":\"notification\"}]}",
};

/* One scenario on db path (NULL: in memory), failing allocations at..
 * at+span-1 (span 0: all from at on) counted from nim_engine_start, with a
 * pause (no injection, not counted) for the consistency check before the
 * close. Returns the number of allocations counted (with at = LONG_MAX:
 * the scenario's). */
static long scenario(const char *path, long at, long span, int *n_errors) {
    run_state r = { .next = 1 };
    nim_alloc_arm(at, span);
    nim_engine_config cfg = { .account = "me", .db_path = path,
                              .flags = NIM_ENGINE_NOTIFY_UPDATES | NIM_ENGINE_NOTIFY_SESSIONS };
    nim_engine *e = nim_engine_start(&cfg);
    if (!e) {
        long n = nim_alloc_count();
        nim_alloc_arm(0, 0);
        if (at == LONG_MAX) fail(&r, "the engine starts", at, span);
        return n;
    }
    const char *code = NULL;
    cJSON *data = NULL;
    int rc;
    long n = 0;
#define REQ(cmd, json, wantdata) do { \
        rc = request(e, &r, cmd, json, &code, wantdata ? &data : NULL); \
        if (rc < 0) { fail(&r, "a request is answered (no hang): " #cmd, at, span); goto out; } \
        if (rc == 0 && !known_code(code)) fail(&r, "an error reply has a known code", at, span); \
        if (rc == 0 && code) (*n_errors)++; \
    } while (0)
    REQ(NIM_CMD_SAVE_MSGS, SAVES[0], 0);
    REQ(NIM_CMD_SAVE_MSGS, SAVES[1], 0);
    REQ(NIM_CMD_GET_SESSIONS, "{\"limit\":10}", 1);
    if (rc == 0 && !code) {
        /* a success carries the whole list, never a part */
        cJSON *l = cJSON_GetObjectItem(data, "sessions");
        if (!cJSON_IsArray(l)) fail(&r, "getLocalSessions: a success has the list", at, span);
        cJSON *s;
        cJSON_ArrayForEach(s, l)
            if (!cJSON_GetObjectItem(s, "id") || !cJSON_GetObjectItem(s, "unread"))
                fail(&r, "getLocalSessions: whole sessions", at, span);
        if (at == LONG_MAX && cJSON_GetArraySize(l) != 3) fail(&r, "three sessions", at, span);
    }
    cJSON_Delete(data);
    data = NULL;
    REQ(NIM_CMD_SET_CURR, "{\"id\":\"p2p-bob\"}", 0);
    REQ(NIM_CMD_RESET_ALL_UNREAD, NULL, 0);
    uint64_t delete_req = r.next;
    REQ(NIM_CMD_DELETE_SESSIONS, "{\"ids\":[\"p2p-carol\"]}", 0);
    REQ(NIM_CMD_GET_SESSION, "{\"sessionId\":\"p2p-bob\"}", 1);
    if (rc == 0 && !code && data && !cJSON_GetObjectItem(data, "id"))
        fail(&r, "getLocalSession: a whole session", at, span);
    cJSON_Delete(data);
    data = NULL;
    if (at == LONG_MAX && (r.code[1] || r.code[2] || r.code[7]))
        fail(&r, "the scenario succeeds without injection", at, span);

    /* the shortage is over: what the engine keeps must match its disk */
    n = nim_alloc_count();
    nim_alloc_arm(0, 0);
    REQ(NIM_CMD_VERIFY, NULL, 1);
    if (rc == 0 && !code) {
        cJSON *m = cJSON_GetObjectItem(data, "mismatches");
        if (!m || cJSON_GetArraySize(m) != 0) fail(&r, "kept unread equals a recount after the shortage", at, span);
    } else if (rc == 0 && strcmp(code, NIM_ERR_DB) != 0) {
        fail(&r, "verify answers or says DB_Error", at, span);
    }
    cJSON_Delete(data);
    data = NULL;
    /* ... and what it told the owner must add up to what it keeps: an
     * event lost to the shortage is sent again, a list never in part */
    REQ(NIM_CMD_GET_SESSIONS, "{\"limit\":100}", 1);
    if (rc == 0 && !code) {
        view v;
        view_build(&v, &r, delete_req, "p2p-carol");
        if (!view_matches(&v, cJSON_GetObjectItem(data, "sessions"))) {
            if (getenv("NIM_ALLOC_DEBUG")) {   /* print the view and the truth */
                for (int i = 0; i < v.n; i++) { char *t = cJSON_PrintUnformatted(v.s[i]); fprintf(stderr, "view %s\n", t); free(t); }
                char *t = cJSON_PrintUnformatted(data); fprintf(stderr, "truth %s\n", t); free(t);
                for (uint64_t q = 1; q < r.next; q++) fprintf(stderr, "req %d code %s\n", (int)q, r.code[q] ? r.code[q] : "-");
            }
            fail(&r, "the callbacks' view equals the stored sessions after the shortage", at, span);
        }
        /* the opening list, before any change: exactly the stored sessions */
        if (v.lists ? v.first_list_n != base_sessions : base_sessions != 0)
            fail(&r, "the opening onsessions lists every stored session", at, span);
        if (v.syncdones != 1 || v.list_after_syncdone)
            fail(&r, "one onsyncdone, after the list", at, span);
    }
    cJSON_Delete(data);
    data = NULL;
    /* the close resumes the count: under a lasting shortage it fails too */
    if (at == LONG_MAX) nim_alloc_arm(LONG_MAX, 0);
    else if (at > n) nim_alloc_arm(at - n, span);
    else if (span == 0) nim_alloc_arm(1, 0);
    REQ(NIM_CMD_CLOSE, NULL, 0);
    nim_engine_free(e);   /* joins: must return */
    n += nim_alloc_count();
    nim_alloc_arm(0, 0);
    e = NULL;
out:
    nim_alloc_arm(0, 0);
    if (e) nim_engine_free(e);
    for (uint64_t q = 1; q < r.next && q < MAXREQ; q++) {
        if (r.accepted[q] && r.done[q] != 1) {
            char d[120];
            snprintf(d, sizeof d, "request %d gets exactly one reply (got %d)", (int)q, r.done[q]);
            fail(&r, d, at, span);
        }
        if (!r.accepted[q] && r.done[q]) fail(&r, "no reply to a refused request", at, span);
    }
    free_kept(&r);
    return n;
#undef REQ
}

/* The network layer's path: a command hook that stores each of its
 * "batches" with nim_engine_ingest, one transaction each, without the
 * engine loop running in between (as the client does for the frames of
 * one service pass). Engine thread. */
static void ingest_batches(nim_engine *e, void *ud, nim_cmd *c) {
    const cJSON *b;
    int failed = 0;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(c->args, "batches"))
        if (nim_engine_ingest(e, &(nim_ingest){ .msgs = (cJSON *)b }) < 0) failed = 1;
    nim_engine_reply(e, c->req, failed ? NIM_ERR_DB : NULL, NULL, NULL);
}

static const char *BATCHES[] = {
    "{\"batches\":[[{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":10,\"idServer\":\"1\"},"
    "{\"scene\":\"p2p\",\"from\":\"carol\",\"to\":\"me\",\"time\":11,\"idServer\":\"2\"}],"
    "[{\"scene\":\"team\",\"from\":\"bob\",\"to\":\"t1\",\"time\":12,\"idServer\":\"3\"},"
    "{\"scene\":\"p2p\",\"from\":\"bob\",\"to\":\"me\",\"time\":13,\"idServer\":\"4\"}]]}",
    "{\"batches\":[[{\"scene\":\"p2p\",\"from\":\"carol\",\"to\":\"me\",\"time\":20,\"idServer\":\"5\"}],"
    "[{\"scene\":\"p2p\",\"from\":\"dave\",\"to\":\"me\",\"time\":21,\"idServer\":\"6\"}]]}",
};

/* The ingest path under injection (allocations at..at+span-1 failing, as
 * in scenario()): after the shortage, what the events told the owner must
 * equal the stored sessions. An update owed when a later transaction of
 * the same pass fails must still be sent. Returns the allocation count. */
static long ingest_scenario(long at, long span) {
    run_state r = { .next = 1 };
    nim_engine_hooks hooks = { .command = ingest_batches };
    nim_alloc_arm(at, span);
    nim_engine_config cfg = { .account = "me", .hooks = &hooks,
                              .flags = NIM_ENGINE_NOTIFY_UPDATES | NIM_ENGINE_NOTIFY_SESSIONS };
    nim_engine *e = nim_engine_start(&cfg);
    long n = 0;
    if (!e) { n = nim_alloc_count(); nim_alloc_arm(0, 0); return n; }
    const char *code = NULL;
    cJSON *data = NULL;
    for (int i = 0; i < 2; i++)
        if (request(e, &r, NIM_CMD_EXT, BATCHES[i], &code, NULL) < 0) fail(&r, "ingest is answered", at, span);
    n = nim_alloc_count();
    nim_alloc_arm(0, 0);
    if (request(e, &r, NIM_CMD_GET_SESSIONS, "{\"limit\":100}", &code, &data) == 0 && !code) {
        view v;
        view_build(&v, &r, 0, NULL);
        if (at == LONG_MAX && cJSON_GetArraySize(cJSON_GetObjectItem(data, "sessions")) != 4)
            fail(&r, "ingest stores four sessions without injection", at, span);
        if (!view_matches(&v, cJSON_GetObjectItem(data, "sessions")))
            fail(&r, "ingest: the callbacks' view equals the stored sessions after the shortage", at, span);
    }
    cJSON_Delete(data);
    nim_engine_free(e);
    free_kept(&r);
    return n;
}

static void ingest_sweep(void) {
    long n = ingest_scenario(LONG_MAX, 0), runs = 0;
    int before = __test_failed;
    /* two failures in a row: an event lost, then the next transaction */
    for (long span = 1; span <= 2; span++)
        for (long k = 1; k <= n && __test_failed - before <= 20; k += test_alloc_stride(), runs++)
            ingest_scenario(k, span);
    printf("ingest: %ld allocations per scenario, %ld injected runs\n", n, runs);
    test_cond("the ingest sweep ran", n > 0 && runs > 0);
}

static void unlink_db(const char *path) {
    char aux[300];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path); unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path); unlink(aux);
}

/* A file database left by a failed run reopens consistent. */
static int reopen_consistent(const char *path) {
    nim_engine_config cfg = { .account = "me", .db_path = path };
    nim_engine *e = nim_engine_start(&cfg);
    run_state r = { .next = 1 };
    const char *code = NULL;
    cJSON *data = NULL;
    int good = request(e, &r, NIM_CMD_VERIFY, NULL, &code, &data) == 0 && !code &&
               cJSON_GetArraySize(cJSON_GetObjectItem(data, "mismatches")) == 0;
    cJSON_Delete(data);
    nim_engine_free(e);
    free_kept(&r);
    return good;
}

/* Writes a database with the first save's sessions to path: a file
 * engine starts on it, so its opening onsessions list runs under injection
 * too. */
static void populate(const char *path) {
    nim_engine_config cfg = { .account = "me", .db_path = path };
    nim_engine *e = nim_engine_start(&cfg);
    run_state r = { .next = 1 };
    const char *code = "none";
    if (request(e, &r, NIM_CMD_SAVE_MSGS, SAVES[0], &code, NULL) != 0 || code)
        test_cond("populate the base database", 0);
    nim_engine_free(e);
    free_kept(&r);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t k;
    int ok = in && out;
    while (ok && (k = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, k, out) == k;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok;
}

static void sweep(const char *label, const char *dir) {
    char path[256], base[256];
    int errs = 0;
    if (dir) {
        snprintf(base, sizeof base, "%s/base.db", dir);
        unlink_db(base);
        populate(base);   /* closed: checkpointed into the one file */
        base_sessions = 3;
        snprintf(path, sizeof path, "%s/first.db", dir);
        if (!copy_file(base, path)) test_cond("copy the base database", 0);
    }
    long n = scenario(dir ? path : NULL, LONG_MAX, 0, &errs);
    test_cond("the scenario runs without injection", n > 0 && errs == 0);
    if (dir) unlink_db(path);
    long stride = test_alloc_stride(), runs = 0, with_errors = 0;   /* every point: ~8 s */
    int before = __test_failed;
    for (int mode = 0; mode < 2; mode++) {
        long span = mode == 0 ? 1 : 0;
        for (long k = 1; k <= n; k += stride) {
            if (dir) {
                snprintf(path, sizeof path, "%s/k%ld-%ld.db", dir, k, span);
                unlink_db(path);
                copy_file(base, path);
            }
            errs = 0;
            scenario(dir ? path : NULL, k, span, &errs);
            runs++;
            if (errs) with_errors++;
            if (dir) {
                if (!reopen_consistent(path)) {
                    char d[160];
                    snprintf(d, sizeof d, "%s: the file reopens consistent (failing allocation %ld, span %ld)",
                             label, k, span);
                    test_cond(d, 0);
                }
                unlink_db(path);
            }
            if (__test_failed - before > 20) break;   /* enough to read */
        }
    }
    if (dir) unlink_db(base);
    base_sessions = 0;
    printf("%s: %ld allocations per scenario, %ld injected runs (stride %ld), %ld with error replies\n",
           label, n, runs, stride, with_errors);
    test_cond("the sweep ran", runs > 0);
}

int main(void) {
    ingest_sweep();
    sweep("in-memory engine", NULL);
    char dir[] = "/tmp/nim-test-alloc-XXXXXX";
    if (!mkdtemp(dir)) { test_cond("temp dir", 0); return test_report(); }
    sweep("file engine", dir);
    rmdir(dir);
    return test_report();
}
