/* The SQLite store of one account: messages and session rows.
 *
 * Lua-free. Owned by the engine thread of one instance: every function here
 * runs on that thread only (the connection is opened NOMUTEX). Prepared
 * statements only; the schema is versioned with PRAGMA user_version and
 * migrated on open. Functions return 0 on success and -1 on failure, with
 * the SQLite message in nim_store_errmsg(). */
#ifndef NIM_STORE_H
#define NIM_STORE_H
#include <stddef.h>
#include <stdint.h>
#include "core/scene.h"

typedef struct nim_store nim_store;


/* deleted states of a session */
enum { NIM_SESS_LIVE = 0, NIM_SESS_HIDDEN = 1 /* logical delete */, NIM_SESS_REMOVED = 2 };

/* One row of the sessions table. */
typedef struct nim_session {
    char    *id;            /* "scene-to", owned */
    const char *to;         /* points into id, after the '-' */
    uint8_t  scene;         /* nim_scene */
    uint8_t  deleted;       /* NIM_SESS_* */
    uint8_t  isTop;
    int64_t  updateTime;
    int64_t  ack;           /* read pointer: a message time */
    int64_t  unread;        /* countable stored messages with time > ack */
    int64_t  maxTime;       /* time of the latest stored message, 0 if none */
    int64_t  lastMsgTime;
    int64_t  msgReceiptTime;
    int64_t  lastMsgRid;    /* rowid of lastMsg in msgs, 0 if none */
    char    *lastMsg;       /* JSON text or NULL, owned (kept in msgs only) */
    char    *localCustom;   /* owned or NULL */
    char    *topCustom;     /* owned or NULL */
} nim_session;
/* Frees the strings s owns (not s). */
void nim_store_session_free(nim_session *s);

/* Opens (creating) path, or an in-memory database when path is NULL, sets
 * WAL + synchronous=FULL and migrates the schema. On failure returns NULL
 * and, when err is given, a malloc'd message in *err. */
nim_store *nim_store_open(const char *path, char **err);
void nim_store_close(nim_store *st);
const char *nim_store_errmsg(nim_store *st);

int nim_store_begin(nim_store *st);
int nim_store_commit(nim_store *st);
void nim_store_rollback(nim_store *st);

/* Inserts a message unless its key is already stored. Sets *inserted to 1
 * when it was new, and then *rid to its rowid. */
int nim_store_insert_msg(nim_store *st, const char *key, const char *sid, int64_t time,
                         int countable, const char *json, int *inserted, int64_t *rid);
/* Writes every column of s (insert or replace by id). */
int nim_store_put_session(nim_store *st, const nim_session *s);
/* Calls row(ud, s) for every stored session; s is the store's (valid for
 * the call), its strings are the callee's (to take, or free with
 * nim_store_session_free). */
int nim_store_load_sessions(nim_store *st, int (*row)(void *ud, nim_session *s), void *ud);
/* Number of countable messages of sid with time > after. */
int nim_store_count_unread(nim_store *st, const char *sid, int64_t after, int64_t *count);
/* The latest message of sid: *json malloc'd (NULL when there is none). */
int nim_store_latest_msg(nim_store *st, const char *sid, char **json, int64_t *time,
                         int64_t *rid);
/* One page of live session ids in (updateTime, id) order, newest first
 * unless reverse; when has_cursor, only those strictly after (cur_time,
 * cur_id). Calls id(ud, id) for each. */
int nim_store_page(nim_store *st, int reverse, int has_cursor, int64_t cur_time,
                   const char *cur_id, int64_t limit,
                   int (*id)(void *ud, const char *id), void *ud);
/* Messages (JSON text) of sid (NULL: all sessions) with start <= time <= end,
 * newest first when desc, at most limit; when keyword is set, only those
 * whose text (or tip) holds it (a substring, case-sensitive; the texts
 * stored since the last such search are indexed first); when types
 * (a JSON array of type names) is set, only those types. */
int nim_store_msgs(nim_store *st, const char *sid, int64_t start, int64_t end, int desc,
                   int64_t limit, const char *keyword, const char *types,
                   int (*msg)(void *ud, const char *json), void *ud);
/* Small persistent values of the kv table (the network layer's sync cursors
 * and device id). get: *num = 0 / *text = NULL (malloc'd otherwise) when
 * absent; either pointer may be NULL. set: text, or num when text is NULL. */
int nim_store_kv_get(nim_store *st, const char *k, int64_t *num, char **text);
int nim_store_kv_set(nim_store *st, const char *k, int64_t num, const char *text);
/* Calls row(ud, key, num) for each key starting with prefix, in key order
 * (row returning nonzero stops the scan with -1). -1 on failure. */
int nim_store_kv_scan(nim_store *st, const char *prefix,
                      int (*row)(void *ud, const char *k, int64_t num), void *ud);
/* Deletes the key prefix + name when its number is <= num. */
int nim_store_kv_del_upto(nim_store *st, const char *prefix, const char *name, int64_t num);
/* Recounts one session from the messages table (for checks and tests). */
int nim_store_count_all(nim_store *st, const char *sid, int64_t *total);

#endif
