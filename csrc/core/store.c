/* SQLite store of one account (see store.h). Engine thread only. */
#include "core/store.h"
#include "core/alloc.h"
#include <sqlite3.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/file.h>
#include <errno.h>
#include <time.h>

/* The text getLocalMsgs' keyword looks in: a message's text, else its tip
 * (strings only), else NULL. */
#define MSG_TEXT_SQL "CASE WHEN json_type(json, '$.text') = 'text' THEN json_extract(json, '$.text')" \
                     " WHEN json_type(json, '$.tip') = 'text' THEN json_extract(json, '$.tip') END"

/* Schema migrations: MIGRATIONS[v] takes user_version v to v + 1. */
static const char *const MIGRATIONS[] = {
    "CREATE TABLE msgs("
    "  rid INTEGER PRIMARY KEY,"
    "  key TEXT NOT NULL UNIQUE,"          /* 's:' idServer or 'c:' idClient */
    "  sid TEXT NOT NULL,"
    "  time INTEGER NOT NULL,"
    "  countable INTEGER NOT NULL,"
    "  json TEXT NOT NULL);"
    "CREATE INDEX msgs_sid_time ON msgs(sid, time, countable);"
    "CREATE TABLE sessions("
    "  id TEXT PRIMARY KEY,"
    "  scene TEXT NOT NULL,"
    "  \"to\" TEXT NOT NULL,"
    "  updateTime INTEGER NOT NULL,"
    "  ack INTEGER NOT NULL DEFAULT 0,"
    "  unread INTEGER NOT NULL DEFAULT 0,"
    "  maxTime INTEGER NOT NULL DEFAULT 0,"
    "  lastMsgTime INTEGER NOT NULL DEFAULT 0,"
    "  lastMsgRid INTEGER,"               /* msgs.rid of lastMsg: rows stay small */
    "  localCustom TEXT,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  isTop INTEGER NOT NULL DEFAULT 0,"
    "  topCustom TEXT,"
    "  msgReceiptTime INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX sessions_page ON sessions(deleted, updateTime, id);"
    /* sync cursors and other small state, for the network layer */
    "CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;",
    /* 2: the text (or tip) of each message (rowid = msgs.rid) for
     * getLocalMsgs' keyword: the trigram tokenizer makes a GLOB '*word*' an
     * index lookup (3 characters and more; shorter ones scan this table),
     * case-sensitive like the JS SDK's indexOf. Filled when a keyword is
     * looked for, from the rid kv 'fts.rid' names on (messages are never
     * changed or deleted), so storing a message pays nothing for it. */
    "CREATE VIRTUAL TABLE msgs_text USING fts5(text, tokenize = 'trigram case_sensitive 1', detail = none);",
};
#define SCHEMA_VERSION ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

enum {
    Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_INS_MSG, Q_PUT_SESS, Q_LOAD, Q_COUNT, Q_LATEST,
    Q_PAGE_DESC, Q_PAGE_DESC_AFTER, Q_PAGE_ASC, Q_PAGE_ASC_AFTER,
    Q_MSGS_SID_DESC, Q_MSGS_SID_ASC, Q_MSGS_ALL_DESC, Q_MSGS_ALL_ASC, Q_COUNT_ALL,
    Q_KV_GET, Q_KV_SET, Q_KV_SCAN, Q_KV_DEL_UPTO, Q_TEXT_CATCH_UP, Q_MAX_RID, Q_MAX
};

static const char *const SQL[Q_MAX] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_INS_MSG] = "INSERT INTO msgs(key, sid, time, countable, json) VALUES(?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT(key) DO NOTHING",
    /* an upsert updates the row in place (REPLACE would delete and re-add
     * it, touching every index) */
    [Q_PUT_SESS] = "INSERT INTO sessions(id, scene, \"to\", updateTime, ack, unread,"
                   " maxTime, lastMsgTime, lastMsgRid, localCustom, deleted, isTop, topCustom,"
                   " msgReceiptTime) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                   " ?13, ?14) ON CONFLICT(id) DO UPDATE SET updateTime = ?4, ack = ?5,"
                   " unread = ?6, maxTime = ?7, lastMsgTime = ?8, lastMsgRid = ?9,"
                   " localCustom = ?10, deleted = ?11, isTop = ?12, topCustom = ?13,"
                   " msgReceiptTime = ?14",
    [Q_LOAD] = "SELECT s.id, s.scene, s.updateTime, s.ack, s.unread, s.maxTime, s.lastMsgTime,"
               " m.json, s.localCustom, s.deleted, s.isTop, s.topCustom, s.msgReceiptTime,"
               " s.lastMsgRid FROM sessions s LEFT JOIN msgs m ON m.rid = s.lastMsgRid",
    [Q_COUNT] = "SELECT count(*) FROM msgs WHERE sid = ?1 AND time > ?2 AND countable = 1",
    [Q_LATEST] = "SELECT json, time, rid FROM msgs WHERE sid = ?1 ORDER BY time DESC, rid DESC LIMIT 1",
    [Q_PAGE_DESC] = "SELECT id FROM sessions WHERE deleted = 0"
                    " ORDER BY updateTime DESC, id DESC LIMIT ?3",
    [Q_PAGE_DESC_AFTER] = "SELECT id FROM sessions WHERE deleted = 0 AND (updateTime, id) < (?1, ?2)"
                          " ORDER BY updateTime DESC, id DESC LIMIT ?3",
    [Q_PAGE_ASC] = "SELECT id FROM sessions WHERE deleted = 0"
                   " ORDER BY updateTime ASC, id ASC LIMIT ?3",
    [Q_PAGE_ASC_AFTER] = "SELECT id FROM sessions WHERE deleted = 0 AND (updateTime, id) > (?1, ?2)"
                         " ORDER BY updateTime ASC, id ASC LIMIT ?3",
    /* ties in time go by server id (its digits: by length, then by text),
     * so a page fetched later (history) sorts among what was stored before */
    [Q_MSGS_SID_DESC] = "SELECT json FROM msgs WHERE sid = ?1 AND time >= ?2 AND time <= ?3"
                        " ORDER BY time DESC, length(key) DESC, key DESC, rid DESC LIMIT ?4",
    [Q_MSGS_SID_ASC] = "SELECT json FROM msgs WHERE sid = ?1 AND time >= ?2 AND time <= ?3"
                       " ORDER BY time ASC, length(key) ASC, key ASC, rid ASC LIMIT ?4",
    [Q_MSGS_ALL_DESC] = "SELECT json FROM msgs WHERE time >= ?2 AND time <= ?3"
                        " ORDER BY time DESC, length(key) DESC, key DESC, rid DESC LIMIT ?4",
    [Q_MSGS_ALL_ASC] = "SELECT json FROM msgs WHERE time >= ?2 AND time <= ?3"
                       " ORDER BY time ASC, length(key) ASC, key ASC, rid ASC LIMIT ?4",
    [Q_COUNT_ALL] = "SELECT count(*) FROM msgs WHERE sid = ?1 AND countable = 1",
    [Q_KV_GET] = "SELECT v FROM kv WHERE k = ?1",
    [Q_KV_SET] = "INSERT INTO kv(k, v) VALUES(?1, ?2) ON CONFLICT(k) DO UPDATE SET v = ?2",
    /* keys in [?1, ?2): a prefix range */
    [Q_KV_SCAN] = "SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k",
    [Q_KV_DEL_UPTO] = "DELETE FROM kv WHERE k = ?1 || ?2 AND v <= ?3",
    [Q_TEXT_CATCH_UP] = "INSERT INTO msgs_text(rowid, text) SELECT rid, " MSG_TEXT_SQL " FROM msgs"
                        " WHERE rid > ?1 AND rid <= ?2 AND " MSG_TEXT_SQL " IS NOT NULL",
    [Q_MAX_RID] = "SELECT coalesce(max(rid), 0) FROM msgs",
};

struct nim_store {
    sqlite3      *db;
    sqlite3_stmt *q[Q_MAX];
    int           lockfd;       /* flock'd while open: one engine per file */
};

const char *nim_store_errmsg(nim_store *st) { return sqlite3_errmsg(st->db); }

static char *dupmsg(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 3;
    char *m = nim_malloc(n);
    if (m) snprintf(m, n, "%s: %s", a, b);
    return m;
}

/* Runs the statements of sql (no results expected). */
static int exec(nim_store *st, const char *sql) {
    return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int user_version(nim_store *st, int *v) {
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Takes the schema from its stored version to SCHEMA_VERSION, each step in
 * one transaction. A newer schema than we know is refused. */
static int migrate(nim_store *st, char **err) {
    int v;
    if (user_version(st, &v) < 0) goto fail;
    if (v > SCHEMA_VERSION) {
        if (err) *err = dupmsg("database schema is newer than this nim", "refusing to open");
        return -1;
    }
    for (; v < SCHEMA_VERSION; v++) {
        char set[64];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        if (exec(st, "BEGIN IMMEDIATE") < 0) goto fail;
        if (exec(st, MIGRATIONS[v]) < 0 || exec(st, set) < 0) {
            if (err) *err = dupmsg("schema migration failed", sqlite3_errmsg(st->db));
            exec(st, "ROLLBACK");
            return -1;
        }
        if (exec(st, "COMMIT") < 0) goto fail;
    }
    return 0;
fail:
    if (err) *err = dupmsg("cannot read database", sqlite3_errmsg(st->db));
    return -1;
}

nim_store *nim_store_open(const char *path, char **err) {
    if (err) *err = NULL;
    nim_store *st = nim_calloc(1, sizeof *st);
    if (!st) { if (err) *err = NULL; return NULL; }
    st->lockfd = -1;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path ? path : ":memory:", &st->db, flags, NULL) != SQLITE_OK) {
        if (err) *err = dupmsg("cannot open database", st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 0);
    sqlite3_busy_timeout(st->db, 5000);
    /* Two engines on one file would each keep their own session state and
     * undo each other's pointers: the second one is refused. flock() locks
     * are per open file, so this also catches the same account opened twice
     * in one process; SQLite's own (fcntl) locks are not affected, so the
     * sqlite3 shell can still read the file. */
    if (path) {
        st->lockfd = open(path, O_RDONLY | O_CLOEXEC);
        int r = st->lockfd < 0 ? -1 : flock(st->lockfd, LOCK_EX | LOCK_NB);
        /* an instance destroyed just before may still be closing: wait up
         * to 2 s for it (this runs on the engine thread, never on Lua's) */
        for (int i = 0; r < 0 && errno == EWOULDBLOCK && i < 200; i++) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            r = flock(st->lockfd, LOCK_EX | LOCK_NB);
        }
        if (r < 0) {
            if (err) *err = dupmsg(errno == EWOULDBLOCK ? "database in use by another nim instance "
                                   "(the same account open twice?)" : "cannot lock database", path);
            goto fail;
        }
    }
    if (path && exec(st, "PRAGMA journal_mode = WAL") < 0) {
        if (err) *err = dupmsg("cannot open database", sqlite3_errmsg(st->db));
        goto fail;
    }
    /* a bigger cache and fewer checkpoints: a batch touches pages all over
     * the sessions table and the message indexes */
    if (exec(st, "PRAGMA cache_size = -16384") < 0 || exec(st, "PRAGMA wal_autocheckpoint = 4000") < 0 ||
        exec(st, "PRAGMA synchronous = FULL") < 0 || exec(st, "PRAGMA foreign_keys = OFF") < 0) {
        if (err) *err = dupmsg("cannot open database", sqlite3_errmsg(st->db));
        goto fail;
    }
    if (migrate(st, err) < 0) goto fail;
    for (int i = 0; i < Q_MAX; i++) {
        if (sqlite3_prepare_v3(st->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &st->q[i], NULL)
            != SQLITE_OK) {
            if (err) *err = dupmsg("cannot prepare statements", sqlite3_errmsg(st->db));
            goto fail;
        }
    }
    return st;
fail:
    nim_store_close(st);
    return NULL;
}

void nim_store_close(nim_store *st) {
    if (!st) return;
    for (int i = 0; i < Q_MAX; i++) sqlite3_finalize(st->q[i]);
    sqlite3_close_v2(st->db);
    if (st->lockfd >= 0) close(st->lockfd);   /* releases the flock */
    nim_free(st);
}

/* Steps a statement that returns no rows and resets it. */
static int step_done(sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

int nim_store_begin(nim_store *st) { return step_done(st->q[Q_BEGIN]); }
int nim_store_commit(nim_store *st) { return step_done(st->q[Q_COMMIT]); }
void nim_store_rollback(nim_store *st) {
    if (!sqlite3_get_autocommit(st->db)) step_done(st->q[Q_ROLLBACK]);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v) {
    if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

int nim_store_insert_msg(nim_store *st, const char *key, const char *sid, int64_t time,
                         int countable, const char *json, int *inserted, int64_t *rid) {
    sqlite3_stmt *s = st->q[Q_INS_MSG];
    bind_text(s, 1, key);
    bind_text(s, 2, sid);
    sqlite3_bind_int64(s, 3, time);
    sqlite3_bind_int(s, 4, countable);
    bind_text(s, 5, json);
    if (step_done(s) < 0) return -1;
    *inserted = sqlite3_changes(st->db) > 0;
    if (*inserted) *rid = sqlite3_last_insert_rowid(st->db);
    return 0;
}

int nim_store_put_session(nim_store *st, const nim_session *x) {
    sqlite3_stmt *s = st->q[Q_PUT_SESS];
    bind_text(s, 1, x->id);
    bind_text(s, 2, nim_scene_names[x->scene]);
    bind_text(s, 3, x->to);
    sqlite3_bind_int64(s, 4, x->updateTime);
    sqlite3_bind_int64(s, 5, x->ack);
    sqlite3_bind_int64(s, 6, x->unread);
    sqlite3_bind_int64(s, 7, x->maxTime);
    sqlite3_bind_int64(s, 8, x->lastMsgTime);
    if (x->lastMsgRid) sqlite3_bind_int64(s, 9, x->lastMsgRid);
    else sqlite3_bind_null(s, 9);
    bind_text(s, 10, x->localCustom);
    sqlite3_bind_int(s, 11, x->deleted);
    sqlite3_bind_int(s, 12, x->isTop);
    bind_text(s, 13, x->topCustom);
    sqlite3_bind_int64(s, 14, x->msgReceiptTime);
    return step_done(s);
}

static char *col_dup(sqlite3_stmt *s, int i) {
    const unsigned char *t = sqlite3_column_text(s, i);
    if (!t) return NULL;
    return nim_strndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

void nim_store_session_free(nim_session *s) {
    nim_free(s->id);
    nim_free(s->lastMsg);
    nim_free(s->localCustom);
    nim_free(s->topCustom);
    s->id = s->lastMsg = s->localCustom = s->topCustom = NULL;
}

int nim_store_load_sessions(nim_store *st, int (*row)(void *ud, nim_session *s), void *ud) {
    sqlite3_stmt *q = st->q[Q_LOAD];
    int rc, ret = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        nim_session s = { 0 };
        s.id = col_dup(q, 0);
        const char *scene = (const char *)sqlite3_column_text(q, 1);
        nim_scene sc = scene ? nim_scene_parse(scene, strlen(scene)) : NIM_SCENE_NONE;
        if (!s.id || sc == NIM_SCENE_NONE) { nim_free(s.id); ret = -1; break; }
        s.scene = (uint8_t)sc;
        s.to = s.id + strlen(nim_scene_names[sc]) + 1;
        s.updateTime = sqlite3_column_int64(q, 2);
        s.ack = sqlite3_column_int64(q, 3);
        s.unread = sqlite3_column_int64(q, 4);
        s.maxTime = sqlite3_column_int64(q, 5);
        s.lastMsgTime = sqlite3_column_int64(q, 6);
        s.lastMsg = col_dup(q, 7);
        s.localCustom = col_dup(q, 8);
        s.deleted = (uint8_t)sqlite3_column_int(q, 9);
        s.isTop = (uint8_t)sqlite3_column_int(q, 10);
        s.topCustom = col_dup(q, 11);
        s.msgReceiptTime = sqlite3_column_int64(q, 12);
        s.lastMsgRid = sqlite3_column_int64(q, 13);
        /* a text column that could not be copied (memory) must fail the
         * load: a session kept without it would be written back so */
        if ((!s.lastMsg && sqlite3_column_type(q, 7) != SQLITE_NULL) ||
            (!s.localCustom && sqlite3_column_type(q, 8) != SQLITE_NULL) ||
            (!s.topCustom && sqlite3_column_type(q, 11) != SQLITE_NULL)) {
            nim_store_session_free(&s);
            ret = -1;
            break;
        }
        if (row(ud, &s) < 0) { ret = -1; break; }
    }
    if (ret == 0 && rc != SQLITE_DONE) ret = -1;
    sqlite3_reset(q);
    return ret;
}

static int count_query(sqlite3_stmt *q, int64_t *count) {
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *count = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_ROW ? 0 : -1;
}

int nim_store_count_unread(nim_store *st, const char *sid, int64_t after, int64_t *count) {
    sqlite3_stmt *q = st->q[Q_COUNT];
    bind_text(q, 1, sid);
    sqlite3_bind_int64(q, 2, after);
    return count_query(q, count);
}

int nim_store_count_all(nim_store *st, const char *sid, int64_t *total) {
    sqlite3_stmt *q = st->q[Q_COUNT_ALL];
    bind_text(q, 1, sid);
    return count_query(q, total);
}

int nim_store_latest_msg(nim_store *st, const char *sid, char **json, int64_t *time,
                         int64_t *rid) {
    sqlite3_stmt *q = st->q[Q_LATEST];
    bind_text(q, 1, sid);
    *json = NULL;
    int rc = sqlite3_step(q), ret = 0;
    if (rc == SQLITE_ROW) {
        *json = col_dup(q, 0);
        *time = sqlite3_column_int64(q, 1);
        *rid = sqlite3_column_int64(q, 2);
        if (!*json) ret = -1;
    } else if (rc != SQLITE_DONE) {
        ret = -1;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return ret;
}

/* Steps q, calling each(ud, text of column 0) per row. */
static int each_text(sqlite3_stmt *q, int (*each)(void *ud, const char *t), void *ud) {
    int rc, ret = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(q, 0);
        if (!t || each(ud, t) < 0) { ret = -1; break; }
    }
    if (ret == 0 && rc != SQLITE_DONE) ret = -1;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return ret;
}

int nim_store_page(nim_store *st, int reverse, int has_cursor, int64_t cur_time,
                   const char *cur_id, int64_t limit,
                   int (*id)(void *ud, const char *id), void *ud) {
    sqlite3_stmt *q = st->q[reverse ? (has_cursor ? Q_PAGE_ASC_AFTER : Q_PAGE_ASC)
                                    : (has_cursor ? Q_PAGE_DESC_AFTER : Q_PAGE_DESC)];
    if (has_cursor) {
        sqlite3_bind_int64(q, 1, cur_time);
        bind_text(q, 2, cur_id);
    }
    sqlite3_bind_int64(q, 3, limit);
    return each_text(q, id, ud);
}

/* A keyword as a GLOB pattern: *keyword*, its *, ? and [ as [*], [?], [[].
 * The trigram index serves a keyword of 3 characters or more; a shorter one
 * is looked for with instr() over the indexed texts (a scan). */
static char *glob_pattern(const char *kw) {
    size_t n = strlen(kw);
    char *p = nim_malloc(3 * n + 3), *o = p;
    if (!p) return NULL;
    *o++ = '*';
    for (const char *c = kw; *c; c++) {
        if (*c == '*' || *c == '?' || *c == '[') { *o++ = '['; *o++ = *c; *o++ = ']'; }
        else *o++ = *c;
    }
    *o++ = '*';
    *o = '\0';
    return p;
}

/* Indexes the texts of the messages stored since the last keyword search
 * (rid above kv 'fts.rid'), the rows and the mark in one savepoint (inside
 * an open transaction or not), so they go in together or not at all. -1
 * when that cannot be written (a full or read-only disk): the search then
 * scans the messages themselves. */
static int text_catch_up(nim_store *st) {
    int64_t upto = 0, done = 0;
    sqlite3_stmt *m = st->q[Q_MAX_RID];
    int rc = sqlite3_step(m);
    if (rc == SQLITE_ROW) upto = sqlite3_column_int64(m, 0);
    sqlite3_reset(m);
    if (rc != SQLITE_ROW || nim_store_kv_get(st, "fts.rid", &done, NULL) < 0) return -1;
    if (done >= upto) return 0;
    if (exec(st, "SAVEPOINT fts_catch_up") < 0) return -1;
    sqlite3_stmt *q = st->q[Q_TEXT_CATCH_UP];
    sqlite3_bind_int64(q, 1, done);
    sqlite3_bind_int64(q, 2, upto);
    if (step_done(q) < 0 || nim_store_kv_set(st, "fts.rid", upto, NULL) < 0) {
        exec(st, "ROLLBACK TO fts_catch_up");
        exec(st, "RELEASE fts_catch_up");
        return -1;
    }
    return exec(st, "RELEASE fts_catch_up");
}

/* UTF-8 characters in s (its bytes that do not continue a character). */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The filtered query (a keyword, types): prepared per call from fixed
 * pieces, since its shape varies; the order is the plain queries'. */
static int msgs_filtered(nim_store *st, const char *sid, int64_t start, int64_t end, int desc,
                         int64_t limit, const char *keyword, const char *types,
                         int (*msg)(void *ud, const char *json), void *ud) {
    /* the index, unless it cannot be brought up to date: then a scan */
    int indexed = keyword && text_catch_up(st) == 0;
    int trigram = indexed && utf8_chars(keyword) >= 3;
    char sql[640];
    int len = snprintf(sql, sizeof sql,
             "SELECT json FROM msgs WHERE %s time >= ?2 AND time <= ?3%s%s ORDER BY %s LIMIT ?4",
             sid ? "sid = ?1 AND" : "",
             types ? " AND json_extract(json, '$.type') IN (SELECT value FROM json_each(?5))" : "",
             !keyword ? "" : trigram ? " AND rid IN (SELECT rowid FROM msgs_text WHERE text GLOB ?6)"
                   : indexed ? " AND rid IN (SELECT rowid FROM msgs_text WHERE instr(text, ?6) > 0)"
                             : " AND instr(" MSG_TEXT_SQL ", ?6) > 0",
             desc ? "time DESC, length(key) DESC, key DESC, rid DESC"
                  : "time ASC, length(key) ASC, key ASC, rid ASC");
    if (len < 0 || (size_t)len >= sizeof sql) return -1;     /* fixed pieces only: never */
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK) return -1;
    char *pat = trigram ? glob_pattern(keyword) : NULL;
    if (trigram && !pat) { sqlite3_finalize(q); return -1; }
    if (sid) bind_text(q, 1, sid);
    sqlite3_bind_int64(q, 2, start);
    sqlite3_bind_int64(q, 3, end);
    sqlite3_bind_int64(q, 4, limit);
    if (types) bind_text(q, 5, types);
    if (keyword) bind_text(q, 6, trigram ? pat : keyword);
    int rc = each_text(q, msg, ud);
    sqlite3_finalize(q);
    nim_free(pat);
    return rc;
}

int nim_store_msgs(nim_store *st, const char *sid, int64_t start, int64_t end, int desc,
                   int64_t limit, const char *keyword, const char *types,
                   int (*msg)(void *ud, const char *json), void *ud) {
    if (keyword || types) return msgs_filtered(st, sid, start, end, desc, limit, keyword, types, msg, ud);
    sqlite3_stmt *q = st->q[sid ? (desc ? Q_MSGS_SID_DESC : Q_MSGS_SID_ASC)
                                : (desc ? Q_MSGS_ALL_DESC : Q_MSGS_ALL_ASC)];
    if (sid) bind_text(q, 1, sid);
    sqlite3_bind_int64(q, 2, start);
    sqlite3_bind_int64(q, 3, end);
    sqlite3_bind_int64(q, 4, limit);
    return each_text(q, msg, ud);
}

int nim_store_kv_get(nim_store *st, const char *k, int64_t *num, char **text) {
    sqlite3_stmt *q = st->q[Q_KV_GET];
    bind_text(q, 1, k);
    if (num) *num = 0;
    if (text) *text = NULL;
    int rc = sqlite3_step(q), ret = 0;
    if (rc == SQLITE_ROW) {
        if (num) *num = sqlite3_column_int64(q, 0);
        if (text && sqlite3_column_type(q, 0) != SQLITE_NULL && !(*text = col_dup(q, 0))) ret = -1;
    } else if (rc != SQLITE_DONE) {
        ret = -1;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return ret;
}

int nim_store_kv_set(nim_store *st, const char *k, int64_t num, const char *text) {
    sqlite3_stmt *q = st->q[Q_KV_SET];
    bind_text(q, 1, k);
    if (text) bind_text(q, 2, text);
    else sqlite3_bind_int64(q, 2, num);
    return step_done(q);
}

int nim_store_kv_scan(nim_store *st, const char *prefix,
                      int (*row)(void *ud, const char *k, int64_t num), void *ud) {
    size_t n = strlen(prefix);
    if (n == 0 || (unsigned char)prefix[n - 1] == 0xff) return -1;
    char *end = nim_strndup(prefix, n);
    if (!end) return -1;
    end[n - 1]++;                       /* the first key past the prefix */
    sqlite3_stmt *q = st->q[Q_KV_SCAN];
    bind_text(q, 1, prefix);
    bind_text(q, 2, end);
    int rc, ret = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(q, 0);
        if (!k || row(ud, k, sqlite3_column_int64(q, 1)) != 0) { ret = -1; break; }
    }
    if (ret == 0 && rc != SQLITE_DONE) ret = -1;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    nim_free(end);
    return ret;
}

int nim_store_kv_del_upto(nim_store *st, const char *prefix, const char *name, int64_t num) {
    sqlite3_stmt *q = st->q[Q_KV_DEL_UPTO];
    bind_text(q, 1, prefix);
    bind_text(q, 2, name);
    sqlite3_bind_int64(q, 3, num);
    return step_done(q);
}
