/* The engine's command handlers (NIM_CMD_* of engine.h), one function
 * each, found through one table; each answers its command exactly once. */
#include "core/engine_private.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct { nim_engine *e; cJSON *arr; int oom; } page_ctx;

static int page_row(void *ud, const char *id) {
    page_ctx *p = ud;
    sess *s = eng_find(p->e, id);
    if (!s) return 0;
    cJSON *j = eng_session_json(s);
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
    const char *last = nim_jstr(c->args, "lastSessionId");
    int64_t limit = 100, t = 0;
    nim_jint(c->args, "limit", &limit);
    int reverse = nim_jbool(c->args, "reverse", 0);
    if (last) {
        sess *s = eng_find(e, last);
        if (!s) {
            nim_engine_reply(e, c->req, NIM_ERR_SESSION_NOT_EXIST, "lastSessionId is not a stored session", NULL);
            return;
        }
        t = s->row.updateTime;
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
    const char *id = nim_jstr(c->args, "sessionId");
    sess *s = id ? eng_find(e, id) : NULL;
    cJSON *j = s && s->row.deleted == NIM_SESS_LIVE ? eng_session_json(s) : NULL;
    /* no data means "no such session": not what a failed copy may say */
    if (s && s->row.deleted == NIM_SESS_LIVE && !j)
        nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
    else nim_engine_reply(e, c->req, NULL, NULL, j);
}

static void cmd_insert_session(nim_engine *e, nim_cmd *c) {
    const char *scene = nim_jstr(c->args, "scene"), *to = nim_jstr(c->args, "to");
    char id[1024];
    if (!scene || !to || !*to || nim_scene_parse(scene, strlen(scene)) == NIM_SCENE_NONE ||
        (size_t)snprintf(id, sizeof id, "%s-%s", scene, to) >= sizeof id) {
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "scene and to expected", NULL);
        return;
    }
    sess *s = eng_find(e, id);
    if (s && s->row.deleted == NIM_SESS_LIVE) {
        nim_engine_reply(e, c->req, NIM_ERR_SESSION_EXIST, "the session exists", NULL);
        return;
    }
    if (eng_begin(e) < 0) { reply_db(e, c->req); return; }
    int fresh = !s;
    if (!s && !(s = eng_create(e, id))) {   /* a well-formed id: memory */
        eng_undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
        return;
    }
    if ((fresh || s->row.deleted == NIM_SESS_REMOVED) && eng_adopt_stored(e, s) < 0) goto fail;
    s->row.deleted = NIM_SESS_LIVE;
    int64_t ut;
    if (nim_jint(c->args, "updateTime", &ut)) s->row.updateTime = ut;
    else if (s->row.lastMsg) s->row.updateTime = s->row.lastMsgTime;
    else s->row.updateTime = eng_now_ms();
    if (eng_mark(e, s, 1) < 0) goto fail;
    if (eng_commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, wrap("session", eng_session_json(s)));
    return;
fail:
    reply_db(e, c->req);
    eng_rollback(e);
}

static void cmd_update_session(nim_engine *e, nim_cmd *c) {
    const char *id = nim_jstr(c->args, "id");
    sess *s = id ? eng_find(e, id) : NULL;
    if (!s || s->row.deleted == NIM_SESS_REMOVED) {
        nim_engine_reply(e, c->req, NIM_ERR_SESSION_NOT_EXIST, "no such session", NULL);
        return;
    }
    const char *lc = nim_jstr(c->args, "localCustom");
    char *v = lc ? nim_strdup(lc) : NULL;
    if (lc && !v) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
    if (eng_begin(e) < 0) { nim_free(v); reply_db(e, c->req); return; }
    nim_free(s->row.localCustom);
    s->row.localCustom = v;
    if (eng_mark(e, s, nim_jbool(c->args, "needNotify", 1)) < 0) {   /* unmarked: not written */
        eng_undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
        return;
    }
    if (eng_commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, eng_session_json(s));
}

static void cmd_delete_sessions(nim_engine *e, nim_cmd *c) {
    int logic = nim_jbool(c->args, "isLogic", 0);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c->args, "ids"), *it;
    if (!cJSON_IsArray(ids)) {   /* never "deleted" for a request that named nothing */
        nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "ids: array expected", NULL);
        return;
    }
    if (eng_begin(e) < 0) { reply_db(e, c->req); return; }
    cJSON_ArrayForEach(it, ids) {
        if (!cJSON_IsString(it)) continue;
        sess *s = eng_find(e, it->valuestring);
        if (!s || s->row.deleted == NIM_SESS_REMOVED) continue;
        if (logic) {
            if (s->row.deleted == NIM_SESS_HIDDEN) continue;
            s->row.deleted = NIM_SESS_HIDDEN;
        } else {
            /* Removed: the row stays as a tombstone holding the pointer at
             * the latest message, so stored messages do not count again
             * when the session comes back. */
            s->row.deleted = NIM_SESS_REMOVED;
            if (s->row.maxTime > s->row.ack) s->row.ack = s->row.maxTime;
            s->row.unread = 0;
            s->recount = 0;
            nim_free(s->row.localCustom);
            s->row.localCustom = NULL;
        }
        if (eng_mark(e, s, 0) < 0) {   /* unmarked: the change would not be written */
            eng_undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory");
            return;
        }
    }
    if (eng_commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, NULL);
}

static void cmd_reset(nim_engine *e, nim_cmd *c, int all) {
    if (c->type == NIM_CMD_SET_CURR) {
        /* copied first: a failed copy must not clear the current session */
        const char *id = nim_jstr(c->args, "id");
        char *v = id ? nim_strdup(id) : NULL;
        if (id && !v) { nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL); return; }
        if (eng_begin(e) < 0) { nim_free(v); reply_db(e, c->req); return; }
        nim_free(e->curr);
        e->curr = v;
    } else if (eng_begin(e) < 0) {
        reply_db(e, c->req);
        return;
    }
    /* a session reset but not marked would not be written: undo all */
    int rc = 0;
    if (all) {
        for (size_t i = 0; rc == 0 && i < e->sessions.cap; i++) {
            sess *s = e->sessions.slots[i];
            if (s && s->row.deleted == NIM_SESS_LIVE) rc = eng_reset_unread(e, s);
        }
    } else if (c->type == NIM_CMD_SET_CURR) {
        sess *s = e->curr ? eng_find(e, e->curr) : NULL;
        if (s) rc = eng_reset_unread(e, s);
    } else {
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c->args, "ids"), *it;
        cJSON_ArrayForEach(it, ids) {
            sess *s = cJSON_IsString(it) ? eng_find(e, it->valuestring) : NULL;
            if (s && (rc = eng_reset_unread(e, s)) < 0) break;
        }
    }
    if (rc == -2) { eng_undo(e, c->req, NIM_ERR_DB, nim_store_errmsg(e->store)); return; }
    if (rc < 0) { eng_undo(e, c->req, NIM_ERR_NO_MEMORY, "out of memory"); return; }
    if (eng_commit(e) < 0) { reply_db(e, c->req); return; }
    nim_engine_reply(e, c->req, NULL, NULL, NULL);
}

/* Engine thread. Saves the messages of n consecutive saveMsgsToLocal
 * commands in ONE transaction (group commit: one fsync, and the session
 * rows and index pages they share written once), then answers each. */
void eng_save_group(nim_engine *e, nim_cmd **cs, size_t n) {
    if (e->broken) { for (size_t i = 0; i < n; i++) reply_db(e, cs[i]->req); return; }
    if (eng_begin(e) < 0) { for (size_t i = 0; i < n; i++) reply_db(e, cs[i]->req); return; }
    for (size_t i = 0; i < n; i++) {
        cJSON *msgs = cJSON_GetObjectItemCaseSensitive(cs[i]->args, "msgs");
        if (cJSON_IsObject(msgs) && !msgs->child) continue;   /* {} from an empty Lua table */
        if (!cJSON_IsArray(msgs)) {
            nim_engine_reply(e, cs[i]->req, NIM_ERR_BAD_ARGS, "msgs array expected", NULL);
            cs[i]->req = 0;
            continue;
        }
        int rc = eng_ingest_tx(e, msgs, 0, NULL, NULL);
        if (rc == -2) {   /* memory: nothing stored, a clear No_Memory each */
            for (size_t j = 0; j < n; j++)
                if (cs[j]->req) nim_engine_reply(e, cs[j]->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
            eng_rollback(e);
            return;
        }
        if (rc < 0) {
            eng_abandon(e);
            for (size_t j = 0; j < n; j++) if (cs[j]->req) reply_db(e, cs[j]->req);
            return;
        }
    }
    if (eng_commit(e) < 0) {
        for (size_t j = 0; j < n; j++) if (cs[j]->req) reply_db(e, cs[j]->req);
        return;
    }
    for (size_t i = 0; i < n; i++) if (cs[i]->req) nim_engine_reply(e, cs[i]->req, NULL, NULL, NULL);
}

static void cmd_get_msgs(nim_engine *e, nim_cmd *c) {
    const char *sid = nim_jstr(c->args, "sessionId");
    int64_t limit = 100, start = INT64_MIN, end = INT64_MAX;
    nim_jint(c->args, "limit", &limit);
    nim_jint(c->args, "start", &start);
    nim_jint(c->args, "end", &end);
    const char *keyword = nim_jstr(c->args, "keyword");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(c->args, "types");
    char *types = cJSON_IsArray(ty) ? cJSON_PrintUnformatted(ty) : NULL;
    cJSON *arr = cJSON_CreateArray();
    if (!arr || (cJSON_IsArray(ty) && !types)) {
        cJSON_Delete(arr);
        cJSON_free(types);
        nim_engine_reply(e, c->req, NIM_ERR_NO_MEMORY, "out of memory", NULL);
        return;
    }
    int rc = nim_store_msgs(e->store, sid, start, end, nim_jbool(c->args, "desc", 1), limit,
                            keyword && *keyword ? keyword : NULL, types, msg_row, arr);
    cJSON_free(types);
    if (rc < 0) {
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
        sess *s = e->sessions.slots[i];
        if (!s) continue;
        int64_t cnt;
        n++;
        if (nim_store_count_unread(e->store, s->row.id, s->row.ack, &cnt) < 0) {
            cJSON_Delete(bad); cJSON_Delete(res); reply_db(e, c->req); return;
        }
        if (cnt != s->row.unread && s->row.deleted != NIM_SESS_REMOVED) {
            cJSON *id = cJSON_CreateString(s->row.id);
            if (!id) { n = -1; break; }
            cJSON_AddItemToArray(bad, id);
        }
        unread += (double)s->row.unread;
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

static void cmd_set_curr(nim_engine *e, nim_cmd *c) { cmd_reset(e, c, 0); }
static void cmd_reset_unread(nim_engine *e, nim_cmd *c) { cmd_reset(e, c, 0); }
static void cmd_reset_all_unread(nim_engine *e, nim_cmd *c) { cmd_reset(e, c, 1); }
static void cmd_save_msgs(nim_engine *e, nim_cmd *c) { eng_save_group(e, &c, 1); }

static void cmd_reset_curr(nim_engine *e, nim_cmd *c) {
    nim_free(e->curr);
    e->curr = NULL;
    nim_engine_reply(e, c->req, NULL, NULL, NULL);
}

/* The handler of each NIM_CMD_* (CLOSE is the loop's own). */
static void (*const HANDLERS[])(nim_engine *e, nim_cmd *c) = {
    [NIM_CMD_GET_SESSIONS]     = cmd_get_sessions,
    [NIM_CMD_GET_SESSION]      = cmd_get_session,
    [NIM_CMD_INSERT_SESSION]   = cmd_insert_session,
    [NIM_CMD_UPDATE_SESSION]   = cmd_update_session,
    [NIM_CMD_DELETE_SESSIONS]  = cmd_delete_sessions,
    [NIM_CMD_SET_CURR]         = cmd_set_curr,
    [NIM_CMD_RESET_CURR]       = cmd_reset_curr,
    [NIM_CMD_RESET_UNREAD]     = cmd_reset_unread,
    [NIM_CMD_RESET_ALL_UNREAD] = cmd_reset_all_unread,
    [NIM_CMD_SAVE_MSGS]        = cmd_save_msgs,
    [NIM_CMD_GET_MSGS]         = cmd_get_msgs,
    [NIM_CMD_VERIFY]           = cmd_verify,
};

void eng_run(nim_engine *e, nim_cmd *c) {
    if (c->type == NIM_CMD_CLOSE) { e->stop = 1; return; }   /* answered after close */
    if (c->type >= NIM_CMD_EXT) {
        if (e->hooks.command) e->hooks.command(e, e->hooks.ud, c);
        else nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
        return;
    }
    if (e->broken) { reply_db(e, c->req); return; }
    size_t n = sizeof HANDLERS / sizeof HANDLERS[0];
    if (c->type >= 0 && (size_t)c->type < n && HANDLERS[c->type]) HANDLERS[c->type](e, c);
    else nim_engine_reply(e, c->req, NIM_ERR_BAD_ARGS, "unknown command", NULL);
}
