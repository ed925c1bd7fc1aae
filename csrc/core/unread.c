/* The unread rules and everything that stores what others say: received
 * messages (ingest), read pointers, receipts and sticky tops.
 *
 * Unread is kept per session as "countable stored messages with time >
 * ack": a newly stored countable message after the pointer adds one (it
 * was not stored before, so this equals a recount), and whenever the
 * pointer moves the count is taken again from the messages table (the
 * session's recount mark, done in eng_commit). */
#include "core/engine_private.h"
#include <stdio.h>
#include <string.h>

int nim_msg_countable(const char *flow, const char *type, int unreadable_false) {
    if (!flow || strcmp(flow, "in") != 0) return 0;
    if (type && strcmp(type, "notification") == 0) return 0;
    return !unreadable_false;
}

/* Engine thread. Pointer to the latest stored message: unread 0. -1 when
 * memory runs out, -2 when the acked hook could not write. */
int eng_reset_unread(nim_engine *e, sess *s) {
    if (s->row.deleted == NIM_SESS_REMOVED) return 0;
    int changed = 0;
    if (s->row.maxTime > s->row.ack) {
        s->row.ack = s->row.maxTime;
        changed = 1;
        if (e->hooks.acked && e->hooks.acked(e, e->hooks.ud, s->row.id, s->row.ack) != 0) return -2;
    }
    if (s->row.unread != 0) { s->row.unread = 0; changed = 1; }
    s->recount = 0;   /* no stored message is newer than maxTime */
    if (changed) return eng_mark(e, s, 1);
    return 0;
}

static int is_curr(nim_engine *e, const char *sid) {
    return e->curr && strcmp(e->curr, sid) == 0;
}

/* Engine thread. Applies one newly stored message to its session. */
static int apply_msg(nim_engine *e, const char *sid, int64_t time, int countable,
                     const char *json, int64_t rid) {
    sess *s = eng_find(e, sid);
    if (!s && !(s = eng_create(e, sid))) return -1;
    s->row.deleted = NIM_SESS_LIVE;         /* a new message brings a deleted session back */
    if (time > s->row.maxTime) s->row.maxTime = time;
    if (!s->row.lastMsg || time >= s->row.lastMsgTime) {
        char *c = nim_strdup(json);
        if (!c) return -1;
        nim_free(s->row.lastMsg);
        s->row.lastMsg = c;
        s->row.lastMsgTime = time;
        s->row.lastMsgRid = rid;
    }
    if (time > s->row.updateTime) s->row.updateTime = time;
    if (is_curr(e, sid)) {
        if (time > s->row.ack) {
            s->row.ack = time;
            s->recount = 1;
            if (e->hooks.acked && e->hooks.acked(e, e->hooks.ud, s->row.id, time) != 0) return -1;
        }
    } else if (countable && time > s->row.ack) {
        s->row.unread++;
    }
    return eng_mark(e, s, 1);
}

/* Fills the derived fields of msg and returns its session id in sid.
 * 0, -1 when a required field is missing, -2 when memory runs out (the
 * message must not be skipped as if it were invalid). */
static int normalize(nim_engine *e, cJSON *msg, char *sid, size_t sidsz, char *key, size_t keysz,
                     int64_t *time, int *countable) {
    if (!cJSON_IsObject(msg)) return -1;
    const char *scene = nim_jstr(msg, "scene"), *from = nim_jstr(msg, "from"), *to = nim_jstr(msg, "to");
    const char *ids = nim_jstr(msg, "idServer"), *idc = nim_jstr(msg, "idClient");
    if (!scene || nim_scene_parse(scene, strlen(scene)) == NIM_SCENE_NONE || !from || !to || !*to) return -1;
    if (!nim_jint(msg, "time", time)) return -1;
    if ((!ids || !*ids) && (!idc || !*idc)) return -1;
    int out = strcmp(from, e->account) == 0;
    const char *target = (strcmp(scene, "p2p") == 0 && !out) ? from : to;
    if (!*target) return -1;
    if ((size_t)snprintf(sid, sidsz, "%s-%s", scene, target) >= sidsz) return -1;
    if ((size_t)snprintf(key, keysz, "%s%s", ids && *ids ? "s:" : "c:", ids && *ids ? ids : idc)
        >= keysz) return -1;
    if (nim_jset_static(msg, "flow", out ? "out" : "in") < 0) return -2;
    /* target may point into from/to: copy before replacing items */
    if (nim_jset(msg, "sessionId", sid) < 0) return -2;
    if (nim_jset(msg, "target", sid + strlen(scene) + 1) < 0) return -2;
    if (!nim_jstr(msg, "status") && nim_jset_static(msg, "status", "success") < 0) return -2;
    if (!nim_jstr(msg, "type") && nim_jset_static(msg, "type", "text") < 0) return -2;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(msg, "isUnreadable");
    *countable = nim_msg_countable(out ? "out" : "in", nim_jstr(msg, "type"), cJSON_IsFalse(u));
    return 0;
}

/* Engine thread. Stores msgs inside the open transaction (history: stored
 * only, as never countable, sessions untouched). -1 on a store failure, -2
 * when memory ran out (the caller rolls back and reloads). */
int eng_ingest_tx(nim_engine *e, cJSON *msgs, int history, int *skipped, unsigned char *fresh) {
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
        if (history) countable = 0;   /* a recount never finds it unread */
        /* print into the engine's reusable buffer: no allocation per message */
        char *json = e->pbuf;
        nim_json_exact_ints_on(m->child);
        if (!cJSON_PrintPreallocated(m, e->pbuf, (int)sizeof e->pbuf, 0))
            json = cJSON_PrintUnformatted(m);
        nim_json_exact_ints_off(m->child);
        if (!json) return -2;
        int rc = nim_store_insert_msg(e->store, key, sid, time, countable, json, &inserted, &rid);
        if (rc == 0 && fresh) fresh[i - 1] = (unsigned char)(inserted != 0);
        /* the id is well formed (normalize): apply_msg fails only for memory */
        if (rc == 0 && inserted && !history && apply_msg(e, sid, time, countable, json, rid) < 0) rc = -2;
        if (json != e->pbuf) cJSON_free(json);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Engine thread, inside a transaction. Raises cur's stored value. */
static int raise_cursor(nim_engine *e, const nim_engine_cursor *cur) {
    if (!cur || !cur->key) return 0;
    if (cur->text) return nim_store_kv_set(e->store, cur->key, cur->value, cur->text);
    int64_t old;
    if (nim_store_kv_get(e->store, cur->key, &old, NULL) < 0) return -1;
    if (cur->value <= old) return 0;
    return nim_store_kv_set(e->store, cur->key, cur->value, NULL);
}

int nim_engine_ingest(nim_engine *e, const nim_ingest *in) {
    if (in->skipped) *in->skipped = 0;
    if (e->broken) return -1;
    if (eng_begin(e) < 0) return -1;
    if ((in->msgs && eng_ingest_tx(e, in->msgs, in->history, in->skipped, in->fresh) < 0) ||
        raise_cursor(e, in->cursor) < 0) {
        eng_abandon(e);
        return -1;
    }
    e->post_commit = in->after_commit;
    e->post_commit_ud = in->ud;
    int r = eng_commit(e);
    e->post_commit = NULL;                  /* not run when the commit failed */
    return r;
}

/* Engine thread. The session of a server-sent id, created as an invisible
 * (removed) row when unknown, so what the server says about it is kept. */
static sess *find_or_tombstone(nim_engine *e, const char *id) {
    sess *s = eng_find(e, id);
    if (s) return s;
    s = eng_create(e, id);
    if (s) s->row.deleted = NIM_SESS_REMOVED;
    return s;
}

int nim_engine_apply_acks(nim_engine *e, const cJSON *ptrs, const nim_engine_cursor *cur) {
    if (e->broken || eng_begin(e) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, ptrs) {
        const char *sid = nim_jstr(it, "sessionId");
        int64_t ack;
        if (!sid || !nim_jint(it, "ack", &ack)) continue;
        sess *s = find_or_tombstone(e, sid);
        if (!s || ack <= s->row.ack) continue;     /* forward only */
        s->row.ack = ack;
        s->recount = 1;
        if (eng_mark(e, s, 1) < 0) { eng_abandon(e); return -1; }
    }
    if (raise_cursor(e, cur) < 0) { eng_abandon(e); return -1; }
    return eng_commit(e);
}

int nim_engine_apply_receipts(nim_engine *e, const cJSON *rcpts, const nim_engine_cursor *cur) {
    if (e->broken || eng_begin(e) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, rcpts) {
        const char *sid = nim_jstr(it, "sessionId");
        int64_t t;
        if (!sid || !nim_jint(it, "time", &t)) continue;
        sess *s = find_or_tombstone(e, sid);
        if (!s || t <= s->row.msgReceiptTime) continue;
        s->row.msgReceiptTime = t;
        if (eng_mark(e, s, 1) < 0) { eng_abandon(e); return -1; }
    }
    if (raise_cursor(e, cur) < 0) { eng_abandon(e); return -1; }
    return eng_commit(e);
}

/* Engine thread, in a transaction. Sets the sticky-top state of one session. */
static int set_top(nim_engine *e, sess *s, int top, const char *custom, int64_t when) {
    if (top) {
        if (s->row.deleted != NIM_SESS_LIVE) {
            if (s->row.deleted == NIM_SESS_REMOVED && eng_adopt_stored(e, s) < 0) return -1;
            s->row.deleted = NIM_SESS_LIVE;
            if (!s->row.updateTime) s->row.updateTime = s->row.lastMsg ? s->row.lastMsgTime : (when ? when : eng_now_ms());
        }
        char *c = nim_strdup(custom ? custom : "");
        if (!c) return -1;
        nim_free(s->row.topCustom);
        s->row.topCustom = c;
        s->row.isTop = 1;
    } else {
        if (!s->row.isTop && !s->row.topCustom) return 0;
        s->row.isTop = 0;
        nim_free(s->row.topCustom);
        s->row.topCustom = NULL;
    }
    return eng_mark(e, s, 1);
}

int nim_engine_apply_tops(nim_engine *e, const cJSON *items, int replace) {
    if (e->broken || eng_begin(e) < 0) return -1;
    const cJSON *it;
    if (replace) {
        /* drop the tops the complete list does not name */
        for (size_t i = 0; i < e->sessions.cap; i++) {
            sess *s = e->sessions.slots[i];
            if (!s || !s->row.isTop) continue;
            int listed = 0;
            cJSON_ArrayForEach(it, items) {
                const char *sid = nim_jstr(it, "sessionId");
                if (sid && strcmp(sid, s->row.id) == 0) { listed = 1; break; }
            }
            if (!listed && set_top(e, s, 0, NULL, 0) < 0) { eng_abandon(e); return -1; }
        }
    }
    cJSON_ArrayForEach(it, items) {
        const char *sid = nim_jstr(it, "sessionId");
        if (!sid) continue;
        int top = nim_jbool(it, "isTop", 1);
        int64_t when = 0;
        nim_jint(it, "updateTime", &when);
        sess *s = eng_find(e, sid);
        if (!s && top) s = eng_create(e, sid);
        if (!s) continue;
        const char *custom = nim_jstr(it, "topCustom");
        if (top && s->row.isTop && s->row.deleted == NIM_SESS_LIVE && s->row.topCustom &&
            strcmp(custom ? custom : "", s->row.topCustom) == 0) continue;   /* unchanged */
        if (set_top(e, s, top, custom, when) < 0) { eng_abandon(e); return -1; }
    }
    return eng_commit(e);
}
