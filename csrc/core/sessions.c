/* The session table: a write-through cache of the sessions table, and
 * the transactions that keep the two equal.
 *
 * Every change is made to the in-memory session, marked (eng_mark), and
 * written in the same transaction as the messages that caused it
 * (eng_commit). When a transaction fails the cache is reloaded from the
 * database (eng_rollback), so memory never holds what the disk does not. */
#include "core/engine_private.h"
#include <string.h>
#include <time.h>

int64_t eng_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t hash_str(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 16777619u; }
    return h;
}

static sess *smap_get(const smap *m, const char *id, size_t len, uint32_t h) {
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        sess *s = m->slots[i];
        if (!s) return NULL;
        if (s->hash == h && strncmp(s->row.id, id, len) == 0 && s->row.id[len] == '\0') return s;
    }
}

static int smap_put(smap *m, sess *s) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        sess **ns = nim_calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < m->cap; i++) {
            sess *x = m->slots[i];
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

static void session_free(sess *s) {
    if (!s) return;
    nim_store_session_free(&s->row);
    nim_free(s);
}

void eng_smap_clear(smap *m) {
    for (size_t i = 0; i < m->cap; i++) session_free(m->slots[i]);
    nim_free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

sess *eng_find(nim_engine *e, const char *id) {
    size_t n = strlen(id);
    return smap_get(&e->sessions, id, n, hash_str(id, n));
}

sess *eng_create(nim_engine *e, const char *id) {
    const char *dash = strchr(id, '-');
    if (!dash || !dash[1]) return NULL;
    nim_scene sc = nim_scene_parse(id, (size_t)(dash - id));
    if (sc == NIM_SCENE_NONE) return NULL;
    sess *s = nim_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->row.id = nim_strdup(id);
    if (!s->row.id) { nim_free(s); return NULL; }
    s->row.scene = (uint8_t)sc;
    s->row.to = s->row.id + (dash - id) + 1;
    s->hash = hash_str(id, strlen(id));
    if (smap_put(&e->sessions, s) < 0) { session_free(s); return NULL; }
    return s;
}

/* A stored row into the table: the entry takes row's strings. */
static int load_row(void *ud, nim_session *row) {
    nim_engine *e = ud;
    sess *s = nim_calloc(1, sizeof *s);
    if (!s) { nim_store_session_free(row); return -1; }
    s->row = *row;
    s->hash = hash_str(s->row.id, strlen(s->row.id));
    if (smap_put(&e->sessions, s) < 0) { session_free(s); return -1; }
    return 0;
}

int eng_reload(nim_engine *e) {
    eng_smap_clear(&e->sessions);
    e->ndirty = 0;
    return nim_store_load_sessions(e->store, load_row, e);
}

/* Engine thread. Marks s to be written in the current transaction. */
int eng_mark(nim_engine *e, sess *s, int notify) {
    if (notify) s->notify = 1;
    if (s->dirty) return 0;
    if (e->ndirty == e->capdirty) {
        size_t nc = e->capdirty ? e->capdirty * 2 : 64;
        sess **nd = nim_realloc(e->dirty, nc * sizeof *nd);
        if (!nd) return -1;
        e->dirty = nd;
        e->capdirty = nc;
    }
    e->dirty[e->ndirty++] = s;
    s->dirty = 1;
    return 0;
}

/* NULL when memory runs out: never a session with fields left out. */
cJSON *eng_session_json(const sess *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "id", s->row.id) &&
             cJSON_AddStringToObject(o, "scene", nim_scene_names[s->row.scene]) &&
             cJSON_AddStringToObject(o, "to", s->row.to) &&
             cJSON_AddNumberToObject(o, "updateTime", (double)s->row.updateTime) &&
             cJSON_AddNumberToObject(o, "unread", (double)s->row.unread) &&
             cJSON_AddBoolToObject(o, "isTop", s->row.isTop);
    if (ok && s->row.lastMsg) {
        /* our own printed JSON: a failed parse means memory ran out */
        cJSON *m = cJSON_Parse(s->row.lastMsg);
        ok = m && cJSON_AddItemToObject(o, "lastMsg", m);   /* copies the key */
        if (m && !ok) cJSON_Delete(m);
    }
    if (ok && s->row.localCustom) ok = cJSON_AddStringToObject(o, "localCustom", s->row.localCustom) != NULL;
    if (ok && s->row.topCustom) ok = cJSON_AddStringToObject(o, "topCustom", s->row.topCustom) != NULL;
    if (ok && s->row.scene == NIM_SCENE_P2P && s->row.msgReceiptTime > 0)
        ok = cJSON_AddNumberToObject(o, "msgReceiptTime", (double)s->row.msgReceiptTime) != NULL;
    if (!ok) { cJSON_Delete(o); return NULL; }
    return o;
}

cJSON *nim_engine_session_json(nim_engine *e, const char *id) {
    sess *s = eng_find(e, id);
    return s && s->row.deleted == NIM_SESS_LIVE ? eng_session_json(s) : NULL;
}

/* Fills lastMsg/maxTime of a session (re)appearing from the stored messages. */
int eng_adopt_stored(nim_engine *e, sess *s) {
    char *json;
    int64_t t = 0, rid = 0;
    if (nim_store_latest_msg(e->store, s->row.id, &json, &t, &rid) < 0) return -1;
    if (json) {
        nim_free(s->row.lastMsg);
        s->row.lastMsg = json;
        s->row.lastMsgTime = t;
        s->row.lastMsgRid = rid;
        if (t > s->row.maxTime) s->row.maxTime = t;
    }
    s->recount = 1;
    return 0;
}

/* Engine thread. The one way a failed transaction ends: undoes it and
 * reloads the cache from the database, so it holds only what is stored.
 * The reload drops the marks of updates still owed (lost, not yet sent
 * again): they are owed again for every session. An engine that cannot
 * reload is broken (every later request gets DB_Error). */
void eng_rollback(nim_engine *e) {
    nim_store_rollback(e->store);
    int owed = e->resync & RESYNC_UPDATES;   /* the lost marks go with the cache */
    int rc = eng_reload(e);
    if (owed) eng_lost_all(e);
    if (rc < 0) {
        e->broken = 1;
        eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, "cannot reload sessions after a failed write", NULL);
    }
}

/* Engine thread. Writes the dirty sessions (recounting unread where the
 * pointer moved) and commits; then queues the update events. On failure
 * rolls back, reloads the cache and returns -1. */
int eng_commit(nim_engine *e) {
    for (size_t i = 0; i < e->ndirty; i++) {
        sess *s = e->dirty[i];
        if (s->recount) {
            if (nim_store_count_unread(e->store, s->row.id, s->row.ack, &s->row.unread) < 0) goto fail;
            s->recount = 0;
        }
        if (nim_store_put_session(e->store, &s->row) < 0) goto fail;
    }
    if (nim_store_commit(e->store) < 0) goto fail;
    if (e->post_commit) {
        void (*f)(void *) = e->post_commit;
        e->post_commit = NULL;
        f(e->post_commit_ud);
    }
    for (size_t i = 0; i < e->ndirty; i++) {
        sess *s = e->dirty[i];
        if (s->notify && e->quiet) {
            eng_touch(e, s->row.id);
        } else if (s->notify && s->row.deleted == NIM_SESS_LIVE && (e->flags & NIM_ENGINE_NOTIFY_UPDATES)) {
            cJSON *j = eng_session_json(s);
            if (j && eng_emit(e, NIM_EV_UPDATE_SESSION, 0, NULL, NULL, j) == 0) {
                s->lost = 0;
            } else {
                s->lost = 1;                       /* sent again by eng_try_resync */
                e->resync |= RESYNC_UPDATES;
            }
        }
        s->dirty = s->notify = 0;
    }
    e->ndirty = 0;
    return 0;
fail:
    eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    eng_rollback(e);
    return -1;
}

int eng_begin(nim_engine *e) {
    if (nim_store_begin(e->store) < 0) {
        eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
        return -1;
    }
    return 0;
}

/* Engine thread. After a failed write: report it, then the one rollback
 * path (eng_rollback). */
void eng_abandon(nim_engine *e) {
    eng_emit(e, NIM_EV_ERROR, 0, NIM_ERR_DB, nim_store_errmsg(e->store), NULL);
    eng_rollback(e);
}

/* Engine thread. A command's transaction could not be finished (memory
 * ran out): answer code, roll back and reload, so the cache holds only what
 * the database does. */
void eng_undo(nim_engine *e, uint64_t req, const char *code, const char *message) {
    nim_engine_reply(e, req, code, message, NULL);
    eng_rollback(e);
}
