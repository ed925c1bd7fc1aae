/* The session engine (see engine.h): one background thread per instance
 * owning the store and the in-memory session table.
 *
 * Memory is a write-through cache of the sessions table: every change is
 * made to the in-memory session, marked dirty, and written in the same
 * transaction as the messages that caused it. When a transaction fails the
 * cache is reloaded from the database, so memory never holds what the disk
 * does not. Unread is kept per session as "countable stored messages with
 * time > ack": a newly stored countable message after the pointer adds one
 * (it was not stored before, so this equals a recount), and whenever the
 * pointer moves the count is taken again from the messages table. */
#include "core/engine.h"
#include "core/engine_net.h"
#include "core/store.h"
#include "core/alloc.h"
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <time.h>
#include <math.h>

typedef struct {
    nim_session **slots;
    size_t cap, count;     /* cap a power of two, load <= 1/2 */
} smap;

struct nim_engine {
    char *account;
    void (*post_commit)(void *ud);  /* once, after the next commit, before its updates */
    void *post_commit_ud;
    char *db_path;
    unsigned flags;
    nim_engine_hooks hooks;
    int has_hooks;

    pthread_t thread;
    int thread_started;
    int joined;

    pthread_mutex_t qlock;         /* commands + default wait */
    pthread_cond_t  qcond;
    nim_cmd *cmd_head, *cmd_tail;
    int woken;
    int close_submitted;           /* owner thread only */
    int stop_asked;                /* atomic: join could not queue CLOSE */

    pthread_mutex_t evlock;
    nim_event *ev_head, *ev_tail;
    nim_event *spare;              /* one reply event per submitted command,
                                      allocated by submit: a reply never
                                      fails for want of memory */
    nim_event *garbage;            /* dispatched events to free (recycle) */
    size_t ngarbage;
    int evfd;
    int finished;                  /* atomic */

    /* engine thread only from here */
    nim_store *store;
    int broken;                    /* no store: every request fails with DB_Error */
    smap sessions;
    nim_session **dirty;
    size_t ndirty, capdirty;
    char *curr;                    /* current session id or NULL */
    int stop;
    int quiet;                     /* in a network sync: remember, do not queue, updates */
    char **touched;                /* ids changed while quiet (may repeat) */
    size_t ntouched, captouched;
    unsigned resync;               /* RESYNC_*: what try_resync must (re)send */
    char pbuf[16384];              /* message printing buffer */
};

/* What the engine still owes the owner's view of the sessions (set when an
 * event is due, or could not be queued for want of memory; try_resync
 * sends it at the next chance). A view is never left behind silently: a
 * lost update is sent again, a lost list is sent again whole. */
enum {
    RESYNC_LIST     = 1,  /* NIM_EV_SESSIONS with every live session */
    RESYNC_UPDATES  = 2,  /* an update per session marked lost */
    RESYNC_SYNCDONE = 4,  /* NIM_EV_SYNCDONE, after the list */
};
/* ms between retries while something is owed and no command comes */
#define RESYNC_RETRY_MS 100

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t hash_str(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

static char *xstrdup(const char *s) { return s ? nim_strndup(s, strlen(s)) : NULL; }

int nim_msg_countable(const char *flow, const char *type, int unreadable_false) {
    if (!flow || strcmp(flow, "in") != 0) return 0;
    if (type && strcmp(type, "notification") == 0) return 0;
    return !unreadable_false;
}

/* ------------------------------------------------------------ session map */

static nim_session *smap_get(const smap *m, const char *id, size_t len, uint32_t h) {
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        nim_session *s = m->slots[i];
        if (!s) return NULL;
        if (s->hash == h && strncmp(s->id, id, len) == 0 && s->id[len] == '\0') return s;
    }
}

static int smap_put(smap *m, nim_session *s) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        nim_session **ns = nim_calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < m->cap; i++) {
            nim_session *x = m->slots[i];
            if (!x) continue;
            size_t j = x->hash & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = x;
        }
        nim_free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    size_t j = s->hash & (m->cap - 1);
    while (m->slots[j]) j = (j + 1) & (m->cap - 1);
    m->slots[j] = s;
    m->count++;
    return 0;
}

static void session_free(nim_session *s) {
    if (!s) return;
    nim_free(s->id);
    nim_free(s->lastMsg);
    nim_free(s->localCustom);
    nim_free(s->topCustom);
    nim_free(s);
}

static void smap_clear(smap *m) {
    for (size_t i = 0; i < m->cap; i++) session_free(m->slots[i]);
    nim_free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static nim_session *find(nim_engine *e, const char *id) {
    size_t n = strlen(id);
    return smap_get(&e->sessions, id, n, hash_str(id, n));
}

/* Engine thread. Creates an empty live session for a well-formed id. */
static nim_session *create(nim_engine *e, const char *id) {
    const char *dash = strchr(id, '-');
    if (!dash || !dash[1]) return NULL;
    nim_scene sc = nim_scene_parse(id, (size_t)(dash - id));
    if (sc == NIM_SCENE_NONE) return NULL;
    nim_session *s = nim_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->id = xstrdup(id);
    if (!s->id) { nim_free(s); return NULL; }
    s->scene = (uint8_t)sc;
    s->to = s->id + (dash - id) + 1;
    s->hash = hash_str(id, strlen(id));
    if (smap_put(&e->sessions, s) < 0) { session_free(s); return NULL; }
    return s;
}

static int load_row(void *ud, nim_session *s) {
    nim_engine *e = ud;
    s->hash = hash_str(s->id, strlen(s->id));
    if (smap_put(&e->sessions, s) < 0) { session_free(s); return -1; }
    return 0;
}

/* Engine thread. (Re)fills the session table from the database. */
static int reload(nim_engine *e) {
    smap_clear(&e->sessions);
    e->ndirty = 0;
    return nim_store_load_sessions(e->store, load_row, e);
}

/* Engine thread. Marks s to be written in the current transaction. */
static int mark(nim_engine *e, nim_session *s, int notify) {
    if (notify) s->notify = 1;
    if (s->dirty) return 0;
    if (e->ndirty == e->capdirty) {
        size_t nc = e->capdirty ? e->capdirty * 2 : 64;
        nim_session **nd = nim_realloc(e->dirty, nc * sizeof *nd);
        if (!nd) return -1;
        e->dirty = nd;
        e->capdirty = nc;
    }
    e->dirty[e->ndirty++] = s;
    s->dirty = 1;
    return 0;
}

/* ----------------------------------------------------------------- events */

void nim_event_free(nim_event *ev) {
    while (ev) {
        nim_event *n = ev->next;
        nim_free(ev->message);
        cJSON_Delete(ev->data);
        nim_free(ev);
        ev = n;
    }
}

/* Any thread, under evlock. The spare reply event of a submitted command. */
static nim_event *take_spare(nim_engine *e) {
    nim_event *sp = e->spare;
    if (sp) e->spare = sp->next;
    return sp;
}

static void enqueue(nim_engine *e, nim_event *ev, int drop_spare) {
    ev->next = NULL;
    pthread_mutex_lock(&e->evlock);
    /* a reply made by the caller (the network layer) uses up its command's
     * spare: drop one so the spares stay one per unanswered command */
    nim_event *sp = drop_spare && ev->type == NIM_EV_DONE ? take_spare(e) : NULL;
    int was_empty = e->ev_head == NULL;
    if (e->ev_tail) e->ev_tail->next = ev; else e->ev_head = ev;
    e->ev_tail = ev;
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(e->evfd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&e->evlock);
    nim_free(sp);
}

void nim_engine_emit(nim_engine *e, nim_event *ev) { enqueue(e, ev, 1); }

/* Engine thread. Queues an event; on allocation failure the data is freed
 * and -1 returned (the event is lost: callers of session events mark what
 * to send again). A reply (NIM_EV_DONE) takes its command's spare event,
 * so it is never lost; its message may be (NULL when it cannot be copied). */
static int emit(nim_engine *e, int type, uint64_t req, const char *code, const char *message,
                cJSON *data) {
    nim_event *ev = NULL;
    if (type == NIM_EV_DONE) {
        pthread_mutex_lock(&e->evlock);
        ev = take_spare(e);
        pthread_mutex_unlock(&e->evlock);
        if (ev) memset(ev, 0, sizeof *ev);
    }
    if (!ev) ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(data); return -1; }
    ev->type = type;
    ev->req = req;
    ev->code = code;
    ev->message = message ? xstrdup(message) : NULL;
    ev->data = data;
    enqueue(e, ev, 0);
    return 0;
}

void nim_engine_reply(nim_engine *e, uint64_t req, const char *code, const char *message,
                      cJSON *data) {
    emit(e, NIM_EV_DONE, req, code, message, data);
}

nim_event *nim_engine_take_events(nim_engine *e) {
    pthread_mutex_lock(&e->evlock);
    uint64_t v;
    ssize_t r = read(e->evfd, &v, sizeof v);
    (void)r;
    nim_event *h = e->ev_head;
    e->ev_head = e->ev_tail = NULL;
    pthread_mutex_unlock(&e->evlock);
    return h;
}

void nim_engine_rearm(nim_engine *e) {
    uint64_t one = 1;
    ssize_t w = write(e->evfd, &one, sizeof one);
    (void)w;
}

/* The engine thread frees them at its next loop; a wake only once enough
 * has piled up (a syscall per poll would cost what freeing here saves). */
#define GARBAGE_WAKE 1024

void nim_engine_recycle(nim_engine *e, nim_event *head, nim_event *tail, size_t count) {
    if (!head) return;
    pthread_mutex_lock(&e->evlock);
    tail->next = e->garbage;
    e->garbage = head;
    e->ngarbage += count;
    int wake = e->ngarbage >= GARBAGE_WAKE;
    pthread_mutex_unlock(&e->evlock);
    if (wake) e->hooks.wake(e, e->hooks.ud);
}

/* Engine thread (or the owner after the join). */
static void free_garbage(nim_engine *e) {
    pthread_mutex_lock(&e->evlock);
    nim_event *g = e->garbage;
    e->garbage = NULL;
    e->ngarbage = 0;
    pthread_mutex_unlock(&e->evlock);
    nim_event_free(g);
}

int nim_engine_fd(nim_engine *e) { return e->evfd; }
int nim_engine_finished(nim_engine *e) { return __atomic_load_n(&e->finished, __ATOMIC_ACQUIRE); }
const char *nim_engine_account(nim_engine *e) { return e->account; }

/* ------------------------------------------------------------ JSON shapes */

/* NULL when memory runs out: never a session with fields left out. */
static cJSON *session_json(const nim_session *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "id", s->id) &&
             cJSON_AddStringToObject(o, "scene", nim_scene_names[s->scene]) &&
             cJSON_AddStringToObject(o, "to", s->to) &&
             cJSON_AddNumberToObject(o, "updateTime", (double)s->updateTime) &&
             cJSON_AddNumberToObject(o, "unread", (double)s->unread) &&
             cJSON_AddBoolToObject(o, "isTop", s->isTop);
    if (ok && s->lastMsg) {
        /* our own printed JSON: a failed parse means memory ran out */
        cJSON *m = cJSON_Parse(s->lastMsg);
        ok = m && cJSON_AddItemToObject(o, "lastMsg", m);   /* copies the key */
        if (m && !ok) cJSON_Delete(m);
    }
    if (ok && s->localCustom) ok = cJSON_AddStringToObject(o, "localCustom", s->localCustom) != NULL;
    if (ok && s->topCustom) ok = cJSON_AddStringToObject(o, "topCustom", s->topCustom) != NULL;
    if (ok && s->scene == NIM_SCENE_P2P && s->msgReceiptTime > 0)
        ok = cJSON_AddNumberToObject(o, "msgReceiptTime", (double)s->msgReceiptTime) != NULL;
    if (!ok) { cJSON_Delete(o); return NULL; }
    return o;
}

cJSON *nim_engine_session_json(nim_engine *e, const char *id) {
    nim_session *s = find(e, id);
    return s && s->deleted == NIM_SESS_LIVE ? session_json(s) : NULL;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The integer at o[k] into *out; 0 when absent or not an integral number. */
static int jint(const cJSON *o, const char *k, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0) return 0;
    *out = (int64_t)d;
    return 1;
}

static int jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* Sets o[k] = string v (replacing). k must be a literal; v is copied
 * unless is_static. 0 or -1 on allocation failure. */
static int jset_(cJSON *o, const char *k, const char *v, int is_static) {
    cJSON *s = is_static ? cJSON_CreateStringReference(v) : cJSON_CreateString(v);
    if (!s) return -1;
    /* the replace copies k and fails (keeping nothing of s) when it cannot */
    if (cJSON_GetObjectItemCaseSensitive(o, k)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(o, k, s)) { cJSON_Delete(s); return -1; }
    } else {
        cJSON_AddItemToObjectCS(o, k, s);
    }
    return 0;
}
#define jset(o, k, v) jset_(o, k, v, 0)
#define jset_static(o, k, v) jset_(o, k, v, 1)

/* -------------------------------------------------------- transactions */

/* Engine thread. Updates were owed to sessions whose marks are gone (the
 * cache was reloaded): every live session is owed again (one list when the
 * owner takes lists, else an update each). */
static void lost_all(nim_engine *e) {
    if (e->flags & NIM_ENGINE_NOTIFY_SESSIONS) {
        e->resync |= RESYNC_LIST;
    } else if (e->flags & NIM_ENGINE_NOTIFY_UPDATES) {
        for (size_t i = 0; i < e->sessions.cap; i++) {
            nim_session *s = e->sessions.slots[i];
            if (s && s->deleted == NIM_SESS_LIVE) s->lost = 1;
        }
        e->resync |= RESYNC_UPDATES;
    }
}

/* Engine thread. Remembers id as changed during a sync, for the list at
 * its end; when memory runs out the whole list is owed instead. */
static void touch(nim_engine *e, const char *id) {
    if (e->ntouched == e->captouched) {
        size_t nc = e->captouched ? e->captouched * 2 : 256;
        char **nt = nim_realloc(e->touched, nc * sizeof *nt);
        if (!nt) { e->resync |= RESYNC_LIST; return; }
        e->touched = nt;
        e->captouched = nc;
    }
    char *c = xstrdup(id);
    if (c) e->touched[e->ntouched++] = c;
    else e->resync |= RESYNC_LIST;
}

/* Engine thread. The one way a failed transaction ends: undoes it and
 * reloads the cache from the database, so it holds only what is stored.
 * The reload drops the marks of updates still owed (lost, not yet sent
 * again): they are owed again for every session. An engine that cannot
 * reload is broken (every later request gets DB_Error). */
static void rollback_reload(nim_engine *e) {
    nim_store_rollback(e->store);
    int owed = e->resync & RESYNC_UPDATES;   /* the lost marks go with the cache */
    int rc = reload(e);
    if (owed) lost_all(e);
    if (rc < 0) {
        e->broken = 1;
        emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, "cannot reload sessions after a failed write", NULL);
    }
}

/* Engine thread. Writes the dirty sessions (recounting unread where the
 * pointer moved) and commits; then queues the update events. On failure
 * rolls back, reloads the cache and returns -1. */
static int commit(nim_engine *e) {
    for (size_t i = 0; i < e->ndirty; i++) {
        nim_session *s = e->dirty[i];
        if (s->recount) {
            if (nim_store_count_unread(e->store, s->id, s->ack, &s->unread) < 0) goto fail;
            s->recount = 0;
        }
        if (nim_store_put_session(e->store, s) < 0) goto fail;
    }
    if (nim_store_commit(e->store) < 0) goto fail;
    if (e->post_commit) {
        void (*f)(void *) = e->post_commit;
        e->post_commit = NULL;
        f(e->post_commit_ud);
    }
    for (size_t i = 0; i < e->ndirty; i++) {
        nim_session *s = e->dirty[i];
        if (s->notify && e->quiet) {
            touch(e, s->id);
        } else if (s->notify && s->deleted == NIM_SESS_LIVE && (e->flags & NIM_ENGINE_NOTIFY_UPDATES)) {
            cJSON *j = session_json(s);
            if (j && emit(e, NIM_EV_UPDATE_SESSION, 0, NULL, NULL, j) == 0) {
                s->lost = 0;
            } else {
                s->lost = 1;                       /* sent again by try_resync */
                e->resync |= RESYNC_UPDATES;
            }
        }
        s->dirty = s->notify = 0;
    }
    e->ndirty = 0;
    return 0;
fail:
    emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    rollback_reload(e);
    return -1;
}

static int begin(nim_engine *e) {
    if (nim_store_begin(e->store) < 0) {
        emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ unread rules */

/* Engine thread. Pointer to the latest stored message: unread 0. -1 when
 * memory runs out, -2 when the acked hook could not write. */
static int reset_unread(nim_engine *e, nim_session *s) {
    if (s->deleted == NIM_SESS_REMOVED) return 0;
    int changed = 0;
    if (s->maxTime > s->ack) {
        s->ack = s->maxTime;
        changed = 1;
        if (e->hooks.acked && e->hooks.acked(e, e->hooks.ud, s->id, s->ack) != 0) return -2;
    }
    if (s->unread != 0) { s->unread = 0; changed = 1; }
    s->recount = 0;   /* no stored message is newer than maxTime */
    if (changed) return mark(e, s, 1);
    return 0;
}

static int is_curr(nim_engine *e, const char *sid) {
    return e->curr && strcmp(e->curr, sid) == 0;
}

/* Engine thread. Applies one newly stored message to its session. */
static int apply_msg(nim_engine *e, const char *sid, int64_t time, int countable,
                     const char *json, int64_t rid) {
    nim_session *s = find(e, sid);
    if (!s && !(s = create(e, sid))) return -1;
    s->deleted = NIM_SESS_LIVE;         /* a new message brings a deleted session back */
    if (time > s->maxTime) s->maxTime = time;
    if (!s->lastMsg || time >= s->lastMsgTime) {
        char *c = xstrdup(json);
        if (!c) return -1;
        nim_free(s->lastMsg);
        s->lastMsg = c;
        s->lastMsgTime = time;
        s->lastMsgRid = rid;
    }
    if (time > s->updateTime) s->updateTime = time;
    if (is_curr(e, sid)) {
        if (time > s->ack) {
            s->ack = time;
            s->recount = 1;
            if (e->hooks.acked && e->hooks.acked(e, e->hooks.ud, s->id, time) != 0) return -1;
        }
    } else if (countable && time > s->ack) {
        s->unread++;
    }
    return mark(e, s, 1);
}

/* Fills the derived fields of msg and returns its session id in sid.
 * 0, -1 when a required field is missing, -2 when memory runs out (the
 * message must not be skipped as if it were invalid). */
static int normalize(nim_engine *e, cJSON *msg, char *sid, size_t sidsz, char *key, size_t keysz,
                     int64_t *time, int *countable) {
    if (!cJSON_IsObject(msg)) return -1;
    const char *scene = jstr(msg, "scene"), *from = jstr(msg, "from"), *to = jstr(msg, "to");
    const char *ids = jstr(msg, "idServer"), *idc = jstr(msg, "idClient");
    if (!scene || nim_scene_parse(scene, strlen(scene)) == NIM_SCENE_NONE || !from || !to || !*to) return -1;
    if (!jint(msg, "time", time)) return -1;
    if ((!ids || !*ids) && (!idc || !*idc)) return -1;
    int out = strcmp(from, e->account) == 0;
    const char *target = (strcmp(scene, "p2p") == 0 && !out) ? from : to;
    if (!*target) return -1;
    if ((size_t)snprintf(sid, sidsz, "%s-%s", scene, target) >= sidsz) return -1;
    if ((size_t)snprintf(key, keysz, "%s%s", ids && *ids ? "s:" : "c:", ids && *ids ? ids : idc)
        >= keysz) return -1;
    if (jset_static(msg, "flow", out ? "out" : "in") < 0) return -2;
    /* target may point into from/to: copy before replacing items */
    if (jset(msg, "sessionId", sid) < 0) return -2;
    if (jset(msg, "target", sid + strlen(scene) + 1) < 0) return -2;
    if (!jstr(msg, "status") && jset_static(msg, "status", "success") < 0) return -2;
    if (!jstr(msg, "type") && jset_static(msg, "type", "text") < 0) return -2;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(msg, "isUnreadable");
    *countable = nim_msg_countable(out ? "out" : "in", jstr(msg, "type"), cJSON_IsFalse(u));
    return 0;
}

/* Engine thread. Stores msgs inside the open transaction. -1 on a store
 * failure, -2 when memory ran out (the caller rolls back and reloads). */
static int ingest_tx(nim_engine *e, cJSON *msgs, int *skipped, unsigned char *fresh) {
    char sid[1024], key[1024];
    cJSON *m;
    size_t i = 0;
    cJSON_ArrayForEach(m, msgs) {
        int64_t time, rid = 0;
        int countable, inserted;
        if (fresh) fresh[i] = 0;
        i++;
        int nr = normalize(e, m, sid, sizeof sid, key, sizeof key, &time, &countable);
        if (nr == -2) return -2;
        if (nr < 0) {
            if (skipped) (*skipped)++;
            continue;
        }
        /* print into the engine's reusable buffer: no allocation per message */
        char *json = e->pbuf;
        if (!cJSON_PrintPreallocated(m, e->pbuf, (int)sizeof e->pbuf, 0)) {
            json = cJSON_PrintUnformatted(m);
            if (!json) return -2;
        }
        int rc = nim_store_insert_msg(e->store, key, sid, time, countable, json, &inserted, &rid);
        if (rc == 0 && fresh) fresh[i - 1] = (unsigned char)(inserted != 0);
        /* the id is well formed (normalize): apply_msg fails only for memory */
        if (rc == 0 && inserted && apply_msg(e, sid, time, countable, json, rid) < 0) rc = -2;
        if (json != e->pbuf) cJSON_free(json);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Engine thread. After a failed write: report it, then the one rollback
 * path (rollback_reload). */
static void abandon(nim_engine *e) {
    emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    rollback_reload(e);
}

/* Engine thread. A command's transaction could not be finished (memory
 * ran out): answer code, roll back and reload, so the cache holds only what
 * the database does. */
static void undo(nim_engine *e, uint64_t req, const char *code, const char *message) {
    nim_engine_reply(e, req, code, message, NULL);
    rollback_reload(e);
}


/* --------------------------------------------------------------- commands */

static int cmp_sess_desc(const void *a, const void *b) {
    const nim_session *x = *(nim_session *const *)a, *y = *(nim_session *const *)b;
    if (x->updateTime != y->updateTime) return x->updateTime > y->updateTime ? -1 : 1;
    return -strcmp(x->id, y->id);
}

/* Engine thread. Queues NIM_EV_SESSIONS with v[0..n) (sorted here), whole
 * or not at all: 0 when queued. */
static int emit_list(nim_engine *e, nim_session **v, size_t n) {
    qsort(v, n, sizeof *v, cmp_sess_desc);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *j = session_json(v[i]);
        if (!j) { cJSON_Delete(arr); return -1; }
        cJSON_AddItemToArray(arr, j);
    }
    return arr ? emit(e, NIM_EV_SESSIONS, 0, NULL, NULL, arr) : -1;
}

/* Engine thread. Sends what the owner is owed (e->resync), in order: the
 * list, the updates, then onsyncdone; stops at the first thing memory does
 * not allow, to be tried again at the next command or RESYNC_RETRY_MS. A
 * list supersedes the updates owed before it. Nothing while quiet: the
 * sync's end sends its list. */
static void try_resync(nim_engine *e) {
    if (e->quiet || !e->resync) return;
    if (e->broken) { e->resync &= RESYNC_SYNCDONE; }
    if (e->resync & RESYNC_LIST) {
        if (e->flags & NIM_ENGINE_NOTIFY_SESSIONS) {
            nim_session **v = nim_malloc((e->sessions.count + 1) * sizeof *v);
            if (!v) return;
            size_t n = 0;
            for (size_t i = 0; i < e->sessions.cap; i++) {
                nim_session *s = e->sessions.slots[i];
                if (s && s->deleted == NIM_SESS_LIVE) v[n++] = s;
            }
            int rc = n ? emit_list(e, v, n) : 0;
            nim_free(v);
            if (rc < 0) return;
            for (size_t i = 0; i < e->sessions.cap; i++)
                if (e->sessions.slots[i]) e->sessions.slots[i]->lost = 0;
            e->resync &= ~(unsigned)RESYNC_UPDATES;
        }
        e->resync &= ~(unsigned)RESYNC_LIST;
    }
    if (e->resync & RESYNC_UPDATES) {
        for (size_t i = 0; i < e->sessions.cap; i++) {
            nim_session *s = e->sessions.slots[i];
            if (!s || !s->lost) continue;
            if (s->deleted == NIM_SESS_LIVE && (e->flags & NIM_ENGINE_NOTIFY_UPDATES)) {
                cJSON *j = session_json(s);
                if (!j || emit(e, NIM_EV_UPDATE_SESSION, 0, NULL, NULL, j) < 0) return;
            }
            s->lost = 0;
        }
        e->resync &= ~(unsigned)RESYNC_UPDATES;
    }
    if (e->resync & RESYNC_SYNCDONE) {
        if (emit(e, NIM_EV_SYNCDONE, 0, NULL, NULL, NULL) < 0) return;
        e->resync &= ~(unsigned)RESYNC_SYNCDONE;
    }
}

/* Engine thread. The sessions list (when the owner takes it) then
 * onsyncdone, now or as soon as memory allows. */
void nim_engine_emit_sync(nim_engine *e) {
    e->resync |= RESYNC_LIST | RESYNC_SYNCDONE;
    try_resync(e);
}

typedef struct { nim_engine *e; cJSON *arr; int oom; } page_ctx;

static int page_row(void *ud, const char *id) {
    page_ctx *p = ud;
    nim_session *s = find(p->e, id);
    if (!s) return 0;
    cJSON *j = session_json(s);
    if (!j) { p->oom = 1; return -1; }
    cJSON_AddItemToArray(p->arr, j);
    return 0;
}

static int msg_row(void *ud, const char *json) {
    cJSON *m = cJSON_Parse(json);
    if (!m) return 0;   /* not ours to judge: skip an unreadable row */
    cJSON_AddItemToArray((cJSON *)ud, m);
    return 0;
}

static void reply_db(nim_engine *e, uint64_t req) {
    nim_engine_reply(e, req, NIM_ERR_DB, e->broken ? "the database is not available"
                                                   : nim_store_errmsg(e->store), NULL);
}

static cJSON *wrap(const char *k, cJSON *v) {
    cJSON *o = v ? cJSON_CreateObject() : NULL;
    /* the add copies k: on failure it keeps nothing, v is ours to free */
    if (!o || !cJSON_AddItemToObject(o, k, v)) { cJSON_Delete(o); cJSON_Delete(v); return NULL; }
    return o;
}

static void cmd_get_sessions(nim_engine *e, nim_cmd *c) {
    const char *last = jstr(c->args, "lastSessionId");
    int64_t limit = 100, t = 0;
    jint(c->args, "limit", &limit);
    int reverse = jbool(c->args, "reverse", 0);
    if (last) {
        nim_session *s = find(e, last);
        if (!s) {
            nim_engine_reply(e, c->req, NIM_ERR_SESSION_NOT_EXIST, "lastSessionId is not a stored session", NULL);
            return;
        }
        t = s->updateTime;
    }
    page_ctx p = { e, cJSON_CreateArray(), 0 };
    if (!p.arr) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    if (nim_store_page(e->store, reverse, last != NULL, t, last, limit, page_row, &p) < 0) {
        cJSON_Delete(p.arr);
        if (p.oom) nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        else reply_db(e, c->req);
        return;
    }
    /* never a success without the list */
    cJSON *res = wrap("sessions", p.arr);
    if (!res) nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
    else nim_engine_reply(e, c->req, NULL, NULL, res);
}

static void cmd_get_session(nim_engine *e, nim_cmd *c) {
    const char *id = jstr(c->args, "sessionId");
    nim_session *s = id ? find(e, id) : NULL;
    cJSON *j = s && s->deleted == NIM_SESS_LIVE ? session_json(s) : NULL;
    /* no data means "no such session": not what a failed copy may say */
    if (s && s->deleted == NIM_SESS_LIVE && !j)
        nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
    else nim_engine_reply(e, c->req, NULL, NULL, j);
}

/* Fills lastMsg/maxTime of a session (re)appearing from the stored messages. */
static int adopt_stored(nim_engine *e, nim_session *s) {
    char *json;
    int64_t t = 0, rid = 0;
    if (nim_store_latest_msg(e->store, s->id, &json, &t, &rid) < 0) return -1;
    if (json) {
        nim_free(s->lastMsg);
        s->lastMsg = json;
        s->lastMsgTime = t;
        s->lastMsgRid = rid;
        if (t > s->maxTime) s->maxTime = t;
    }
    s->recount = 1;
    return 0;
}

static void cmd_insert_session(nim_engine *e, nim_cmd *c) {
    const char *scene = jstr(c->args, "scene"), *to = jstr(c->args, "to");
    char id[1024];
    if (!scene || !to || !*to || nim_scene_parse(scene, strlen(scene)) == NIM_SCENE_NONE ||
        (size_t)snprintf(id, sizeof id, "%s-%s", scene, to) >= sizeof id) {
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "scene and to expected", NULL);
        return;
    }
    nim_session *s = find(e, id);
    if (s && s->deleted == NIM_SESS_LIVE) {
        nim_engine_reply(e, c->req, NIM_ERR_SESSION_EXIST, "the session exists", NULL);
        return;
    }
    if (begin(e) < 0) { reply_db(e, c->req); return; }
    int fresh = !s;
    if (!s && !(s = create(e, id))) {   /* a well-formed id: memory */
        undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
        return;
    }
    if ((fresh || s->deleted == NIM_SESS_REMOVED) && adopt_stored(e, s) < 0) goto fail;
    s->deleted = NIM_SESS_LIVE;
    int64_t ut;
    if (jint(c->args, "updateTime", &ut)) s->updateTime = ut;
    else if (s->lastMsg) s->updateTime = s->lastMsgTime;
    else s->updateTime = now_ms();
    if (mark(e, s, 1) < 0) goto fail;
    if (commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, wrap("session", session_json(s)));
    return;
fail:
    reply_db(e, c->req);
    rollback_reload(e);
}

static void cmd_update_session(nim_engine *e, nim_cmd *c) {
    const char *id = jstr(c->args, "id");
    nim_session *s = id ? find(e, id) : NULL;
    if (!s || s->deleted == NIM_SESS_REMOVED) {
        nim_engine_reply(e, c->req, NIM_ERR_SESSION_NOT_EXIST, "no such session", NULL);
        return;
    }
    const char *lc = jstr(c->args, "localCustom");
    char *v = lc ? xstrdup(lc) : NULL;
    if (lc && !v) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    if (begin(e) < 0) { nim_free(v); reply_db(e, c->req); return; }
    nim_free(s->localCustom);
    s->localCustom = v;
    if (mark(e, s, jbool(c->args, "needNotify", 1)) < 0) {   /* unmarked: not written */
        undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
        return;
    }
    if (commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, session_json(s));
}

static void cmd_delete_sessions(nim_engine *e, nim_cmd *c) {
    int logic = jbool(c->args, "isLogic", 0);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c->args, "ids"), *it;
    if (!cJSON_IsArray(ids)) {   /* never "deleted" for a request that named nothing */
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "ids: array expected", NULL);
        return;
    }
    if (begin(e) < 0) { reply_db(e, c->req); return; }
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsString(it)) continue;
        nim_session *s = find(e, it->valuestring);
        if (!s || s->deleted == NIM_SESS_REMOVED) continue;
        if (logic) {
            if (s->deleted == NIM_SESS_HIDDEN) continue;
            s->deleted = NIM_SESS_HIDDEN;
        } else {
            /* Removed: the row stays as a tombstone holding the pointer at
             * the latest message, so stored messages do not count again
             * when the session comes back. */
            s->deleted = NIM_SESS_REMOVED;
            if (s->maxTime > s->ack) s->ack = s->maxTime;
            s->unread = 0;
            s->recount = 0;
            nim_free(s->localCustom);
            s->localCustom = NULL;
        }
        if (mark(e, s, 0) < 0) {   /* unmarked: the change would not be written */
            undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
            return;
        }
    }
    if (commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, NULL);
}

static void cmd_reset(nim_engine *e, nim_cmd *c, int all) {
    if (c->type == NIM_CMD_SET_CURR) {
        /* copied first: a failed copy must not clear the current session */
        const char *id = jstr(c->args, "id");
        char *v = id ? xstrdup(id) : NULL;
        if (id && !v) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
        if (begin(e) < 0) { nim_free(v); reply_db(e, c->req); return; }
        nim_free(e->curr);
        e->curr = v;
    } else if (begin(e) < 0) {
        reply_db(e, c->req);
        return;
    }
    /* a session reset but not marked would not be written: undo all */
    int rc = 0;
    if (all) {
        for (size_t i = 0; rc == 0 && i < e->sessions.cap; i++) {
            nim_session *s = e->sessions.slots[i];
            if (s && s->deleted == NIM_SESS_LIVE) rc = reset_unread(e, s);
        }
    } else if (c->type == NIM_CMD_SET_CURR) {
        nim_session *s = e->curr ? find(e, e->curr) : NULL;
        if (s) rc = reset_unread(e, s);
    } else {
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c->args, "ids"), *it;
        cJSON_ArrayForEach(it, ids) {
            nim_session *s = cJSON_IsString(it) ? find(e, it->valuestring) : NULL;
            if (s && (rc = reset_unread(e, s)) < 0) break;
        }
    }
    if (rc == -2) { undo(e, c->req, NIM_ERR_DB, nim_store_errmsg(e->store)); return; }
    if (rc < 0) { undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory"); return; }
    if (commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, NULL);
}

/* Engine thread. Saves the messages of n consecutive saveMsgsToLocal
 * commands in ONE transaction (group commit: one fsync, and the session
 * rows and index pages they share written once), then answers each. */
static void cmd_save_group(nim_engine *e, nim_cmd **cs, size_t n) {
    if (e->broken) { for (size_t i = 0; i < n; i++) reply_db(e, cs[i]->req); return; }
    if (begin(e) < 0) { for (size_t i = 0; i < n; i++) reply_db(e, cs[i]->req); return; }
    for (size_t i = 0; i < n; i++) {
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(cs[i]->args, "msgs");
        if (cJSON_IsObject(msgs) && !msgs->child) continue;   /* {} from an empty Lua table */
        if (!cJSON_IsArray(msgs)) {
            nim_engine_reply(e, cs[i]->req, NIM_ERR_BAD_ARGS, "msgs array expected", NULL);
            cs[i]->req = 0;
            continue;
        }
        int rc = ingest_tx(e, msgs, NULL, NULL);
        if (rc == -2) {   /* memory: nothing stored, a clear No_Memory each */
            for (size_t j = 0; j < n; j++)
                if (cs[j]->req) nim_engine_reply(e, cs[j]->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
            rollback_reload(e);
            return;
        }
        if (rc < 0) {
            abandon(e);
            for (size_t j = 0; j < n; j++) if (cs[j]->req) reply_db(e, cs[j]->req);
            return;
        }
    }
    if (commit(e) < 0) {
        for (size_t j = 0; j < n; j++) if (cs[j]->req) reply_db(e, cs[j]->req);
        return;
    }
    for (size_t i = 0; i < n; i++) if (cs[i]->req) nim_engine_reply(e, cs[i]->req, NULL, NULL, NULL);
}

static void cmd_get_msgs(nim_engine *e, nim_cmd *c) {
    const char *sid = jstr(c->args, "sessionId");
    int64_t limit = 100, start = INT64_MIN, end = INT64_MAX;
    jint(c->args, "limit", &limit);
    jint(c->args, "start", &start);
    jint(c->args, "end", &end);
    cJSON *arr = cJSON_CreateArray();
    if (!arr) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    if (nim_store_msgs(e->store, sid, start, end, jbool(c->args, "desc", 1), limit, msg_row, arr) < 0) {
        cJSON_Delete(arr);
        reply_db(e, c->req);
        return;
    }
    nim_engine_reply(e, c->req, NULL, NULL, wrap("msgs", arr));
}

/* Recounts every session's unread from the messages table and lists the
 * sessions whose kept count differs (there should be none). */
static void cmd_verify(nim_engine *e, nim_cmd *c) {
    cJSON *bad = cJSON_CreateArray(), *res = cJSON_CreateObject();
    if (!bad || !res) {   /* was left unanswered */
        cJSON_Delete(bad); cJSON_Delete(res);
        nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    double n = 0, unread = 0;
    for (size_t i = 0; i < e->sessions.cap; i++) {
        nim_session *s = e->sessions.slots[i];
        if (!s) continue;
        int64_t cnt;
        n++;
        if (nim_store_count_unread(e->store, s->id, s->ack, &cnt) < 0) {
            cJSON_Delete(bad); cJSON_Delete(res); reply_db(e, c->req); return;
        }
        if (cnt != s->unread && s->deleted != NIM_SESS_REMOVED) {
            cJSON *id = cJSON_CreateString(s->id);
            if (!id) { n = -1; break; }
            cJSON_AddItemToArray(bad, id);
        }
        unread += (double)s->unread;
    }
    /* a partial answer would hide mismatches: No_Memory instead */
    if (n < 0 || !cJSON_AddNumberToObject(res, "sessions", n) ||
        !cJSON_AddNumberToObject(res, "unread", unread) ||
        !cJSON_AddItemToObject(res, "mismatches", bad)) {
        cJSON_Delete(bad); cJSON_Delete(res);
        nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    nim_engine_reply(e, c->req, NULL, NULL, res);
}

/* Engine thread. Runs one command and answers it. */
static void run(nim_engine *e, nim_cmd *c) {
    if (c->type == NIM_CMD_CLOSE) { e->stop = 1; return; }   /* answered after close */
    if (c->type >= NIM_CMD_EXT) {
        if (e->hooks.command) e->hooks.command(e, e->hooks.ud, c);
        else nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
        return;
    }
    if (e->broken) { reply_db(e, c->req); return; }
    switch (c->type) {
    case NIM_CMD_GET_SESSIONS:     cmd_get_sessions(e, c); break;
    case NIM_CMD_GET_SESSION:      cmd_get_session(e, c); break;
    case NIM_CMD_INSERT_SESSION:   cmd_insert_session(e, c); break;
    case NIM_CMD_UPDATE_SESSION:   cmd_update_session(e, c); break;
    case NIM_CMD_DELETE_SESSIONS:  cmd_delete_sessions(e, c); break;
    case NIM_CMD_SET_CURR:         cmd_reset(e, c, 0); break;
    case NIM_CMD_RESET_CURR:
        nim_free(e->curr);
        e->curr = NULL;
        nim_engine_reply(e, c->req, NULL, NULL, NULL);
        break;
    case NIM_CMD_RESET_UNREAD:     cmd_reset(e, c, 0); break;
    case NIM_CMD_RESET_ALL_UNREAD: cmd_reset(e, c, 1); break;
    case NIM_CMD_SAVE_MSGS:        cmd_save_group(e, &c, 1); break;
    case NIM_CMD_GET_MSGS:         cmd_get_msgs(e, c); break;
    case NIM_CMD_VERIFY:           cmd_verify(e, c); break;
    default: nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
    }
}

/* ------------------------------------------------------------ the thread */

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
    char *p = xstrdup(path);
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
     * that must not wait for a core while we write (Linux: per-thread nice). */
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    if (errno == 0) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), prio + 5 > 19 ? 19 : prio + 5);
    if (e->db_path) make_parent_dirs(e->db_path);
    e->store = nim_store_open(e->db_path, &err);
    if (!e->store) {
        e->broken = 1;
        emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, err ? err : "cannot open database", NULL);
    } else if (reload(e) < 0) {
        e->broken = 1;
        emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    }
    nim_free(err);
    if (e->hooks.start && e->hooks.start(e, e->hooks.ud) != 0) e->broken = 1;
    if (!(e->flags & NIM_ENGINE_DEFER_SYNC)) nim_engine_emit_sync(e);

    while (!e->stop) {
        free_garbage(e);
        try_resync(e);             /* before the commands: their replies come after */
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
                cmd_save_group(e, group, n);
                for (size_t i = 0; i < n; i++) cmd_free(group[i]);
                continue;
            }
            nim_cmd *n = c->next;
            run(e, c);
            if (c->type == NIM_CMD_CLOSE) close_req = c->req;
            cmd_free(c);
            c = n;
        }
    }
    if (e->hooks.stop) e->hooks.stop(e, e->hooks.ud);
    nim_store_close(e->store);
    e->store = NULL;
    smap_clear(&e->sessions);
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
    e->evfd = -1;
    e->account = xstrdup(cfg->account ? cfg->account : "");
    e->db_path = cfg->db_path ? xstrdup(cfg->db_path) : NULL;
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
    e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->evfd < 0) goto fail_sync;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) goto fail_sync;
    e->thread_started = 1;
    return e;
fail_sync:
    if (e->evfd >= 0) close(e->evfd);
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
    free_garbage(e);
    nim_event_free(e->ev_head);
    nim_event_free(e->spare);
    nim_free(e->dirty);
    nim_free(e->curr);
    for (size_t i = 0; i < e->ntouched; i++) nim_free(e->touched[i]);
    nim_free(e->touched);
    close(e->evfd);
    pthread_mutex_destroy(&e->qlock);
    pthread_cond_destroy(&e->qcond);
    pthread_mutex_destroy(&e->evlock);
    nim_free(e->account);
    nim_free(e->db_path);
    nim_free(e);
}

/* ------------------------------------------------- for the network layer */

int nim_engine_kv_get(nim_engine *e, const char *key, int64_t *num, char **text) {
    if (num) *num = 0;
    if (text) *text = NULL;
    if (e->broken) return -1;
    return nim_store_kv_get(e->store, key, num, text);
}

int nim_engine_kv_set(nim_engine *e, const char *key, int64_t num, const char *text) {
    if (e->broken || begin(e) < 0) return -1;
    if (nim_store_kv_set(e->store, key, num, text) < 0) { abandon(e); return -1; }
    return commit(e);
}

int nim_engine_kv_set_tx(nim_engine *e, const char *key, int64_t num) {
    return nim_store_kv_set(e->store, key, num, NULL);
}

int nim_engine_kv_scan(nim_engine *e, const char *prefix,
                       int (*row)(void *ud, const char *key, int64_t num), void *ud) {
    if (e->broken) return -1;
    return nim_store_kv_scan(e->store, prefix, row, ud);
}

int nim_engine_kv_del_upto(nim_engine *e, const char *prefix, const nim_kv_item *items, size_t n) {
    if (e->broken || begin(e) < 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (nim_store_kv_del_upto(e->store, prefix, items[i].name, items[i].num) < 0) {
            abandon(e);
            return -1;
        }
    return commit(e);
}

/* Engine thread, inside a transaction. Raises cur's stored value. */
static int raise_cursor(nim_engine *e, const nim_engine_cursor *cur) {
    if (!cur || !cur->key) return 0;
    int64_t old;
    if (nim_store_kv_get(e->store, cur->key, &old, NULL) < 0) return -1;
    if (cur->value <= old) return 0;
    return nim_store_kv_set(e->store, cur->key, cur->value, NULL);
}

int nim_engine_ingest(nim_engine *e, const nim_ingest *in) {
    if (in->skipped) *in->skipped = 0;
    if (e->broken) return -1;
    if (begin(e) < 0) return -1;
    if ((in->msgs && ingest_tx(e, in->msgs, in->skipped, in->fresh) < 0) ||
        raise_cursor(e, in->cursor) < 0) {
        abandon(e);
        return -1;
    }
    e->post_commit = in->after_commit;
    e->post_commit_ud = in->ud;
    int r = commit(e);
    e->post_commit = NULL;                  /* not run when the commit failed */
    return r;
}

/* Engine thread. The session of a server-sent id, created as an invisible
 * (removed) row when unknown, so what the server says about it is kept. */
static nim_session *find_or_tombstone(nim_engine *e, const char *id) {
    nim_session *s = find(e, id);
    if (s) return s;
    s = create(e, id);
    if (s) s->deleted = NIM_SESS_REMOVED;
    return s;
}

int nim_engine_apply_acks(nim_engine *e, const cJSON *ptrs, const nim_engine_cursor *cur) {
    if (e->broken || begin(e) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, ptrs) {
        const char *sid = jstr(it, "sessionId");
        int64_t ack;
        if (!sid || !jint(it, "ack", &ack)) continue;
        nim_session *s = find_or_tombstone(e, sid);
        if (!s || ack <= s->ack) continue;     /* forward only */
        s->ack = ack;
        s->recount = 1;
        if (mark(e, s, 1) < 0) { abandon(e); return -1; }
    }
    if (raise_cursor(e, cur) < 0) { abandon(e); return -1; }
    return commit(e);
}

int nim_engine_apply_receipts(nim_engine *e, const cJSON *rcpts, const nim_engine_cursor *cur) {
    if (e->broken || begin(e) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, rcpts) {
        const char *sid = jstr(it, "sessionId");
        int64_t t;
        if (!sid || !jint(it, "time", &t)) continue;
        nim_session *s = find_or_tombstone(e, sid);
        if (!s || t <= s->msgReceiptTime) continue;
        s->msgReceiptTime = t;
        if (mark(e, s, 1) < 0) { abandon(e); return -1; }
    }
    if (raise_cursor(e, cur) < 0) { abandon(e); return -1; }
    return commit(e);
}

/* Engine thread, in a transaction. Sets the sticky-top state of one session. */
static int set_top(nim_engine *e, nim_session *s, int top, const char *custom, int64_t when) {
    if (top) {
        if (s->deleted != NIM_SESS_LIVE) {
            if (s->deleted == NIM_SESS_REMOVED && adopt_stored(e, s) < 0) return -1;
            s->deleted = NIM_SESS_LIVE;
            if (!s->updateTime) s->updateTime = s->lastMsg ? s->lastMsgTime : (when ? when : now_ms());
        }
        char *c = xstrdup(custom ? custom : "");
        if (!c) return -1;
        nim_free(s->topCustom);
        s->topCustom = c;
        s->isTop = 1;
    } else {
        if (!s->isTop && !s->topCustom) return 0;
        s->isTop = 0;
        nim_free(s->topCustom);
        s->topCustom = NULL;
    }
    return mark(e, s, 1);
}

int nim_engine_apply_tops(nim_engine *e, const cJSON *items, int replace) {
    if (e->broken || begin(e) < 0) return -1;
    const cJSON *it;
    if (replace) {
        /* drop the tops the complete list does not name */
        for (size_t i = 0; i < e->sessions.cap; i++) {
            nim_session *s = e->sessions.slots[i];
            if (!s || !s->isTop) continue;
            int listed = 0;
            cJSON_ArrayForEach(it, items) {
                const char *sid = jstr(it, "sessionId");
                if (sid && strcmp(sid, s->id) == 0) { listed = 1; break; }
            }
            if (!listed && set_top(e, s, 0, NULL, 0) < 0) { abandon(e); return -1; }
        }
    }
    cJSON_ArrayForEach(it, items) {
        const char *sid = jstr(it, "sessionId");
        if (!sid) continue;
        int top = jbool(it, "isTop", 1);
        int64_t when = 0;
        jint(it, "updateTime", &when);
        nim_session *s = find(e, sid);
        if (!s && top) s = create(e, sid);
        if (!s) continue;
        const char *custom = jstr(it, "topCustom");
        if (top && s->isTop && s->deleted == NIM_SESS_LIVE && s->topCustom &&
            strcmp(custom ? custom : "", s->topCustom) == 0) continue;   /* unchanged */
        if (set_top(e, s, top, custom, when) < 0) { abandon(e); return -1; }
    }
    return commit(e);
}

void nim_engine_sync_begin(nim_engine *e) {
    e->quiet = 1;
}

void nim_engine_sync_abort(nim_engine *e) {
    e->quiet = 0;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

void nim_engine_sync_end(nim_engine *e, int all) {
    e->quiet = 0;
    nim_session **v = NULL;
    if (!all && !(e->resync & RESYNC_LIST)) {   /* an owed list covers the touched */
        v = nim_malloc((e->ntouched + 1) * sizeof *v);
        if (!v) e->resync |= RESYNC_LIST;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->ntouched; i++) {
        nim_session *s = v ? find(e, e->touched[i]) : NULL;
        if (s && s->deleted == NIM_SESS_LIVE) v[n++] = s;
        nim_free(e->touched[i]);
    }
    e->ntouched = 0;
    if (all) e->resync |= RESYNC_LIST;
    if (v && n && (e->flags & NIM_ENGINE_NOTIFY_SESSIONS) && !e->broken) {
        qsort(v, n, sizeof *v, cmp_ptr);
        size_t u = 0;
        for (size_t i = 0; i < n; i++) if (u == 0 || v[i] != v[u - 1]) v[u++] = v[i];
        if (emit_list(e, v, u) < 0) e->resync |= RESYNC_LIST;
    }
    nim_free(v);
    e->resync |= RESYNC_SYNCDONE;
    try_resync(e);
}
