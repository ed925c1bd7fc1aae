/* The engine's thread and life cycle (see engine.h): start, the command
 * loop, submit, join, free. The rest of the engine is in the files that
 * engine_private.h lists. */
#include "core/engine_private.h"
#include <pthread.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <errno.h>
#include <string.h>
#include <time.h>

static void default_wait(nim_engine *e, void *ud, int timeout_ms) {
    (void)ud;
    pthread_mutex_lock(&e->qlock);
    if (timeout_ms < 0) {
        while (!e->cmd_head && !e->woken) pthread_cond_wait(&e->qcond, &e->qlock);
    } else if (!e->cmd_head && !e->woken) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&e->qcond, &e->qlock, &ts);
    }
    e->woken = 0;
    pthread_mutex_unlock(&e->qlock);
}

static void default_wake(nim_engine *e, void *ud) {
    (void)ud;
    pthread_mutex_lock(&e->qlock);
    e->woken = 1;
    pthread_cond_signal(&e->qcond);
    pthread_mutex_unlock(&e->qlock);
}

static void cmd_free(nim_cmd *c) {
    cJSON_Delete(c->args);
    nim_free(c);
}

/* Engine thread. mkdir -p of the directory part of path (errors are left
 * for the open to report). */
static void make_parent_dirs(const char *path) {
    char *p = nim_strdup(path);
    if (!p) return;
    char *slash = strrchr(p, '/');
    if (slash && slash != p) {
        *slash = '\0';
        for (char *q = p + 1; *q; q++) {
            if (*q != '/') continue;
            *q = '\0';
            mkdir(p, 0777);
            *q = '/';
        }
        mkdir(p, 0777);
    }
    nim_free(p);
}

/* saveMsgsToLocal commands committed together at most */
#define SAVE_GROUP_MAX 32

static void *engine_main(void *arg) {
    nim_engine *e = arg;
    char *err = NULL;
    uint64_t close_req = 0;
    /* Below the owner's priority: the Lua thread is usually a frame loop
     * that must not wait for a core while we write (Linux: per-thread nice;
     * elsewhere the same call would lower the whole process: not done). */
#ifdef __linux__
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (errno == 0) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), prio + 5 > 19 ? 19 : prio + 5);
#endif
    if (e->db_path) make_parent_dirs(e->db_path);
    e->store = nim_store_open(e->db_path, &err);
    if (!e->store) {
        e->broken = 1;
        eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, err ? err : "cannot open database", NULL);
    } else if (eng_reload(e) < 0) {
        e->broken = 1;
        eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    }
    nim_free(err);
    if (e->hooks.start && e->hooks.start(e, e->hooks.ud) != 0) e->broken = 1;
    if (!(e->flags & NIM_ENGINE_DEFER_SYNC)) nim_engine_emit_sync(e);

    while (!e->stop) {
        eng_free_garbage(e);
        eng_try_resync(e);             /* before the commands: their replies come after */
        pthread_mutex_lock(&e->qlock);
        nim_cmd *c = e->cmd_head;
        e->cmd_head = e->cmd_tail = NULL;
        pthread_mutex_unlock(&e->qlock);
        if (!c) {
            if (__atomic_load_n(&e->stop_asked, __ATOMIC_ACQUIRE)) break;
            e->hooks.wait(e, e->hooks.ud, e->resync && !e->quiet ? RESYNC_RETRY_MS : -1);
            continue;
        }
        while (c) {
            if (c->type == NIM_CMD_SAVE_MSGS) {
                nim_cmd *group[SAVE_GROUP_MAX];
                size_t n = 0;
                while (c && c->type == NIM_CMD_SAVE_MSGS && n < SAVE_GROUP_MAX) {
                    group[n++] = c;
                    c = c->next;
                }
                eng_save_group(e, group, n);
                for (size_t i = 0; i < n; i++) cmd_free(group[i]);
                continue;
            }
            nim_cmd *n = c->next;
            eng_run(e, c);
            if (c->type == NIM_CMD_CLOSE) close_req = c->req;
            cmd_free(c);
            c = n;
        }
    }
    if (e->hooks.stop) e->hooks.stop(e, e->hooks.ud);
    nim_store_close(e->store);
    e->store = NULL;
    eng_smap_clear(&e->sessions);
    __atomic_store_n(&e->finished, 1, __ATOMIC_RELEASE);
    nim_engine_reply(e, close_req, NULL, NULL, NULL);
    return NULL;
}

/* cJSON allocates through nim_malloc (so tests can fail its allocations
 * too). Process-wide and set once; harmless for the Lua module and the
 * server: nim_malloc is malloc and nim_free is free unless a test arms the
 * hook, so trees made before or after mix freely. */
static pthread_once_t cjson_once = PTHREAD_ONCE_INIT;

static void cjson_hooks(void) {
    cJSON_Hooks h = { nim_malloc, nim_free };
    cJSON_InitHooks(&h);
}

nim_engine *nim_engine_start(const nim_engine_config *cfg) {
    pthread_once(&cjson_once, cjson_hooks);
    nim_engine *e = nim_calloc(1, sizeof *e);
    if (!e) return NULL;
    e->evwake.rfd = e->evwake.wfd = -1;
    e->account = nim_strdup(cfg->account ? cfg->account : "");
    e->db_path = cfg->db_path ? nim_strdup(cfg->db_path) : NULL;
    e->flags = cfg->flags;
    if (cfg->hooks) e->hooks = *cfg->hooks;
    if (!e->hooks.wait || !e->hooks.wake) {
        e->hooks.wait = default_wait;
        e->hooks.wake = default_wake;
    }
    if (!e->account || (cfg->db_path && !e->db_path)) goto fail;
    pthread_mutex_init(&e->qlock, NULL);
    pthread_cond_init(&e->qcond, NULL);
    pthread_mutex_init(&e->evlock, NULL);
    if (nim_wakeup_open(&e->evwake) < 0) goto fail_sync;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) goto fail_sync;
    e->thread_started = 1;
    return e;
fail_sync:
    nim_wakeup_close(&e->evwake);
    pthread_mutex_destroy(&e->qlock);
    pthread_cond_destroy(&e->qcond);
    pthread_mutex_destroy(&e->evlock);
fail:
    nim_free(e->account);
    nim_free(e->db_path);
    nim_free(e);
    return NULL;
}

int nim_engine_submit(nim_engine *e, int type, uint64_t req, cJSON *args) {
    if (e->close_submitted) { cJSON_Delete(args); return -1; }
    nim_cmd *c = nim_calloc(1, sizeof *c);
    nim_event *sp = c ? nim_calloc(1, sizeof *sp) : NULL;   /* its reply, reserved */
    if (!sp) { nim_free(c); cJSON_Delete(args); return -1; }
    pthread_mutex_lock(&e->evlock);
    sp->next = e->spare;
    e->spare = sp;
    pthread_mutex_unlock(&e->evlock);
    c->type = type;
    c->req = req;
    c->args = args;
    if (type == NIM_CMD_CLOSE) e->close_submitted = 1;
    pthread_mutex_lock(&e->qlock);
    if (e->cmd_tail) e->cmd_tail->next = c; else e->cmd_head = c;
    e->cmd_tail = c;
    pthread_mutex_unlock(&e->qlock);
    e->hooks.wake(e, e->hooks.ud);
    return 0;
}

void nim_engine_join(nim_engine *e) {
    if (e->thread_started && !e->joined) {
        /* out of memory the CLOSE command cannot be queued: without this
         * flag the thread would wait for it forever and so would we */
        if (!e->close_submitted && nim_engine_submit(e, NIM_CMD_CLOSE, 0, NULL) < 0) {
            e->close_submitted = 1;
            __atomic_store_n(&e->stop_asked, 1, __ATOMIC_RELEASE);
            e->hooks.wake(e, e->hooks.ud);
        }
        pthread_join(e->thread, NULL);
        e->joined = 1;
    }
}

void nim_engine_free(nim_engine *e) {
    if (!e) return;
    nim_engine_join(e);
    eng_free_garbage(e);
    nim_event_free(e->ev_head);
    nim_event_free(e->spare);
    nim_free(e->dirty);
    nim_free(e->curr);
    for (size_t i = 0; i < e->ntouched; i++) nim_free(e->touched[i]);
    nim_free(e->touched);
    nim_wakeup_close(&e->evwake);
    pthread_mutex_destroy(&e->qlock);
    pthread_cond_destroy(&e->qcond);
    pthread_mutex_destroy(&e->evlock);
    nim_free(e->account);
    nim_free(e->db_path);
    nim_free(e);
}
