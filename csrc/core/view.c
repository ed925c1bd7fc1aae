/* The owner's view of the sessions: what the engine owes it (e->resync)
 * and sends as soon as memory allows, and the sync bracket of the network
 * layer, during which updates are remembered instead of queued. A view is
 * never left behind silently: a lost update is sent again, a lost list is
 * sent again whole. */
#include "core/engine_private.h"
#include <stdlib.h>
#include <string.h>

/* Engine thread. Updates were owed to sessions whose marks are gone (the
 * cache was reloaded): every live session is owed again (one list when the
 * owner takes lists, else an update each). */
void eng_lost_all(nim_engine *e) {
    if (e->flags & NIM_ENGINE_NOTIFY_SESSIONS) {
        e->resync |= RESYNC_LIST;
    } else if (e->flags & NIM_ENGINE_NOTIFY_UPDATES) {
        for (size_t i = 0; i < e->sessions.cap; i++) {
            sess *s = e->sessions.slots[i];
            if (s && s->row.deleted == NIM_SESS_LIVE) s->lost = 1;
        }
        e->resync |= RESYNC_UPDATES;
    }
}

/* Engine thread. Remembers id as changed during a sync, for the list at
 * its end; when memory runs out the whole list is owed instead. */
void eng_touch(nim_engine *e, const char *id) {
    if (e->ntouched == e->captouched) {
        size_t nc = e->captouched ? e->captouched * 2 : 256;
        char **nt = nim_realloc(e->touched, nc * sizeof *nt);
        if (!nt) { e->resync |= RESYNC_LIST; return; }
        e->touched = nt;
        e->captouched = nc;
    }
    char *c = nim_strdup(id);
    if (c) e->touched[e->ntouched++] = c;
    else e->resync |= RESYNC_LIST;
}

static int cmp_sess_desc(const void *a, const void *b) {
    const sess *x = *(sess *const *)a, *y = *(sess *const *)b;
    if (x->row.updateTime != y->row.updateTime) return x->row.updateTime > y->row.updateTime ? -1 : 1;
    return -strcmp(x->row.id, y->row.id);
}

/* Engine thread. Queues NIM_EV_SESSIONS with v[0..n) (sorted here), whole
 * or not at all: 0 when queued. */
static int emit_list(nim_engine *e, sess **v, size_t n) {
    qsort(v, n, sizeof *v, cmp_sess_desc);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *j = eng_session_json(v[i]);
        if (!j) { cJSON_Delete(arr); return -1; }
        cJSON_AddItemToArray(arr, j);
    }
    return arr ? eng_emit(e, NIM_EV_SESSIONS, 0, NULL, NULL, arr) : -1;
}

/* Engine thread. Sends what the owner is owed (e->resync), in order: the
 * list, the updates, then onsyncdone; stops at the first thing memory does
 * not allow, to be tried again at the next command or RESYNC_RETRY_MS. A
 * list supersedes the updates owed before it. Nothing while quiet: the
 * sync's end sends its list. */
void eng_try_resync(nim_engine *e) {
    if (e->quiet || !e->resync) return;
    if (e->broken) { e->resync &= RESYNC_SYNCDONE; }
    if (e->resync & RESYNC_LIST) {
        if (e->flags & NIM_ENGINE_NOTIFY_SESSIONS) {
            sess **v = nim_malloc((e->sessions.count + 1) * sizeof *v);
            if (!v) return;
            size_t n = 0;
            for (size_t i = 0; i < e->sessions.cap; i++) {
                sess *s = e->sessions.slots[i];
                if (s && s->row.deleted == NIM_SESS_LIVE) v[n++] = s;
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
            sess *s = e->sessions.slots[i];
            if (!s || !s->lost) continue;
            if (s->row.deleted == NIM_SESS_LIVE && (e->flags & NIM_ENGINE_NOTIFY_UPDATES)) {
                cJSON *j = eng_session_json(s);
                if (!j || eng_emit(e, NIM_EV_UPDATE_SESSION, 0, NULL, NULL, j) < 0) return;
            }
            s->lost = 0;
        }
        e->resync &= ~(unsigned)RESYNC_UPDATES;
    }
    if (e->resync & RESYNC_SYNCDONE) {
        if (eng_emit(e, NIM_EV_SYNCDONE, 0, NULL, NULL, NULL) < 0) return;
        e->resync &= ~(unsigned)RESYNC_SYNCDONE;
    }
}

/* Engine thread. The sessions list (when the owner takes it) then
 * onsyncdone, now or as soon as memory allows. */
void nim_engine_emit_sync(nim_engine *e) {
    e->resync |= RESYNC_LIST | RESYNC_SYNCDONE;
    eng_try_resync(e);
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
    sess **v = NULL;
    if (!all && !(e->resync & RESYNC_LIST)) {   /* an owed list covers the touched */
        v = nim_malloc((e->ntouched + 1) * sizeof *v);
        if (!v) e->resync |= RESYNC_LIST;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->ntouched; i++) {
        sess *s = v ? eng_find(e, e->touched[i]) : NULL;
        if (s && s->row.deleted == NIM_SESS_LIVE) v[n++] = s;
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
    eng_try_resync(e);
}
