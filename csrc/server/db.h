/* nim-server storage: one SQLite file (db_sqlite.c) or one PostgreSQL
 * database shared by many nodes (db_pg.c), behind the same functions. Every function runs
 * on the server's request thread (reqthread.c). Functions returning int give
 * NIM_CODE_OK (200) on success, NIM_CODE_SERVER (500) on a storage failure,
 * or the protocol code named in their comment. */
#ifndef NIM_SERVER_DB_H
#define NIM_SERVER_DB_H
#include <stdint.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "net/proto.h"

#define SRV_DB_SCHEMA_VERSION 6
#define SRV_DB_SCHEMA_VERSION_TEXT "6"
/* What one stored message counts against its sender's storage: its text
 * and content, and this much for the rest of the row and its inbox rows. */
#define SRV_MSG_OVERHEAD      200
#define SRV_MSG_OVERHEAD_TEXT "200"
#define SRV_SALT_LEN 16
#define SRV_HASH_LEN 32

/* An account's stored credential (auth.c derives it). */
typedef struct {
    uint8_t salt[SRV_SALT_LEN];
    uint8_t hash[SRV_HASH_LEN];
    int     iterations;
} srv_cred;

typedef struct srv_db srv_db;

/* Opens (creating when needed) and migrates the database: a SQLite file at
 * path, or PostgreSQL when path is a libpq URI (postgresql://... or
 * postgres://...). NULL on failure with a reason in err. */
srv_db *srv_db_open(const char *path, char *err, size_t errlen);
void    srv_db_close(srv_db *db);
const char *srv_db_errmsg(srv_db *db);

/* After a failed write: a reason for the client when the storage itself
 * refused it (disk full, read-only), else NULL. Cleared by a commit. */
const char *srv_db_storage_error(srv_db *db);
int srv_db_begin(srv_db *db);       /* a write transaction */
int srv_db_begin_read(srv_db *db);  /* a read snapshot; end it with rollback */
int srv_db_commit(srv_db *db);
void srv_db_rollback(srv_db *db);
/* 1 while a transaction is open (SQLite may end one itself on some errors). */
int srv_db_in_txn(srv_db *db);
/* One item inside an open transaction: savepoint, then release (keep it) or
 * rollback_to (undo only this item; the transaction stays open). */
int srv_db_savepoint(srv_db *db);
int srv_db_release(srv_db *db);
void srv_db_rollback_to(srv_db *db);

/* Next value of the state version counter (read pointers, receipts). */
int srv_db_next_ver(srv_db *db, int64_t *ver);
int srv_db_cursors(srv_db *db, int64_t *max_msg, int64_t *max_ver);
/* Inside a write transaction on storage other nodes write too: the latest
 * message time any node committed, read once per transaction (under the
 * write lock), so times never decrease with ids across nodes. 0 on SQLite
 * (this process is its only writer; srv_db_last_msg_time at start
 * suffices). */
int64_t srv_db_time_floor(srv_db *db);
/* Latest message time stored (0 if none), so restarts keep times monotonic. */
int64_t srv_db_last_msg_time(srv_db *db);
/* The database's id (schema 6: random, made once), named in login replies. */
int64_t srv_db_server_id(srv_db *db);

/* Accounts. get_cred: NIM_CODE_OK, NIM_CODE_NOT_FOUND, or NIM_CODE_AUTH for
 * a damaged row (it never authenticates). put_cred creates the account or
 * replaces its credential (*created says which; created may be NULL);
 * NIM_CODE_FORBIDDEN for a new name that differs only in case from an
 * existing one. */
int srv_db_get_cred(srv_db *db, const char *account, srv_cred *out);
int srv_db_put_cred(srv_db *db, const char *account, const srv_cred *cred, int *created);
/* NIM_CODE_OK if it exists, NIM_CODE_NOT_FOUND if not. */
int srv_db_account_exists(srv_db *db, const char *account);
int srv_db_touch_device(srv_db *db, const char *account, const char *device, int64_t now);
/* Whether account has logged in with device before (*known), and how many
 * of its devices logged in after since (*recent). */
int srv_db_devices(srv_db *db, const char *account, const char *device, int64_t since,
                   int *known, int64_t *recent);

/* Messages. find_client_msg: NIM_CODE_OK with *out set when from already
 * sent id_client, NIM_CODE_NOT_FOUND otherwise. */
int srv_db_find_client_msg(srv_db *db, const char *from, const char *id_client, cJSON **out);
/* Stores m (id_server is set from the new row) and adds it to m->from's
 * storage; NIM_CODE_FORBIDDEN, nothing written, when m->from already
 * stored m->id_client (a resend that raced the check, through another
 * node). */
int srv_db_insert_msg(srv_db *db, nim_proto_msg *m);
int64_t srv_msg_bytes(const nim_proto_msg *m);
/* The bytes of messages account has sent (stored). */
int srv_db_stored_bytes(srv_db *db, const char *account, int64_t *bytes);
int srv_db_insert_inbox(srv_db *db, const char *account, int64_t msg_id,
                        const char *session_id, int delivered);
/* The fields of one message that receipts need; NIM_CODE_NOT_FOUND if none. */
typedef struct {
    nim_scene scene;
    char      from[NIM_PROTO_MAX_ACCOUNT + 1];
    char      to[NIM_PROTO_MAX_ACCOUNT + 1];
    int64_t   time;
} srv_msg_head;
int srv_db_msg_head(srv_db *db, int64_t id, srv_msg_head *h);
/* The time of account's latest message in the session (0 if none). */
int srv_db_session_last_time(srv_db *db, const char *account, const char *session_id, int64_t *time);

/* The login sync's pages (db_sync.c), each read from an index with a
 * keyset, never a scan of the account's history. Each calls cb for every
 * row, in the order named, with the message object (taken), its id and
 * whether it is delivered, until cb returns nonzero; all leave out messages
 * at or below a session's deletion mark.
 *   undelivered: account's offline messages with after < id <= upto, oldest first;
 *   after:       all of account's messages with id > after, oldest first;
 *   session:     the delivered messages of one session with id < before,
 *                newest first. */
typedef int (*srv_db_row_cb)(void *ud, cJSON *msg, int64_t id, int delivered);
int srv_db_sync_undelivered(srv_db *db, const char *account, int64_t after, int64_t upto,
                            int limit, srv_db_row_cb cb, void *ud);
int srv_db_sync_after(srv_db *db, const char *account, int64_t after, int limit,
                      srv_db_row_cb cb, void *ud);
int srv_db_sync_session(srv_db *db, const char *account, const char *session_id, int64_t before,
                        int limit, srv_db_row_cb cb, void *ud);
/* The first of account's sessions named after `after` ("" for the first
 * of all), copied to out: NIM_CODE_OK, or NIM_CODE_NOT_FOUND past the last. */
int srv_db_sync_next_session(srv_db *db, const char *account, const char *after,
                             char *out, size_t outlen);
/* History (db_sync.c): account's messages of one session with
 * begin_time <= time <= end_time and after < id < before, newest first
 * (oldest first when asc), at most limit, through cb as above; leaves out
 * messages at or below the session's deletion mark. Times are turned into id
 * bounds first (times never decrease with ids), so a page costs the same
 * however deep in the history it lies. */
typedef struct {
    int64_t begin_time, end_time;   /* inclusive */
    int64_t after, before;          /* exclusive ids */
    int     asc, limit;
} srv_history_query;
int srv_db_history(srv_db *db, const char *account, const char *session_id,
                   const srv_history_query *q, srv_db_row_cb cb, void *ud);
/* Marks account's copies delivered; adds the number of rows changed to *n. */
int srv_db_mark_received(srv_db *db, const char *account, int64_t msg_id, int64_t *n);
int srv_db_mark_received_upto(srv_db *db, const char *account, int64_t upto, int64_t *n);

/* Read pointers: *ack = 0 when none. */
int srv_db_read_ptr_get(srv_db *db, const char *account, const char *session_id, int64_t *ack);
int srv_db_read_ptr_set(srv_db *db, const char *account, const char *session_id, int64_t ack,
                        int64_t ver);
/* Appends {sessionId, ack, ver} objects with ver > since, oldest ver
 * first, at most limit. */
int srv_db_read_ptrs_since(srv_db *db, const char *account, int64_t since, int limit, cJSON *arr);

int srv_db_delete_session(srv_db *db, const char *account, const char *session_id,
                          int64_t mark, int64_t now);

/* Receipts: reader has read peer's messages up to time. */
int srv_db_receipt_get(srv_db *db, const char *reader, const char *peer, int64_t *time);
int srv_db_receipt_set(srv_db *db, const char *reader, const char *peer, int64_t time,
                       int64_t msg_id, int64_t ver);
/* Appends {sessionId: "p2p-<reader>", time, idServer, ver} for receipts on
 * peer's messages with ver > since. */
int srv_db_receipts_since(srv_db *db, const char *peer, int64_t since, int limit, cJSON *arr);
/* Rows an account holds, for the per-account caps (server.h SRV_MAX_*):
 * its read pointers, the receipts it sent, its sticky tops. */
typedef enum { SRV_ROWS_POINTERS, SRV_ROWS_RECEIPTS, SRV_ROWS_TOPS } srv_rows;
int srv_db_count_rows(srv_db *db, srv_rows what, const char *account, int64_t *n);

/* Sticky top. get: NIM_CODE_OK with *out = {sessionId, topCustom, createTime,
 * updateTime} or NIM_CODE_NOT_FOUND. */
int srv_db_stick_get(srv_db *db, const char *account, const char *session_id, cJSON **out);
int srv_db_stick_put(srv_db *db, const char *account, const char *session_id,
                     const char *top_custom, int64_t now);
/* NIM_CODE_NOT_FOUND when it was not sticky. */
int srv_db_stick_delete(srv_db *db, const char *account, const char *session_id);
int srv_db_stick_list(srv_db *db, const char *account, cJSON *arr);

/* Teams. */
int srv_db_team_create(srv_db *db, const char *name, const char *owner, int64_t now,
                       int64_t *team_id);
int srv_db_team_add_member(srv_db *db, int64_t team_id, const char *account, int64_t now);
/* NIM_CODE_NOT_FOUND if the team does not exist; else appends member
 * accounts to arr (strings) and copies the name. */
int srv_db_team_members(srv_db *db, int64_t team_id, cJSON *arr, char *name, size_t namelen);
/* NIM_CODE_OK if member, NIM_CODE_FORBIDDEN if not, NIM_CODE_NOT_FOUND if no team. */
int srv_db_team_is_member(srv_db *db, int64_t team_id, const char *account);
/* The team's owner into owner; NIM_CODE_NOT_FOUND if no team. */
int srv_db_team_owner(srv_db *db, int64_t team_id, char *owner, size_t len);
int srv_db_team_remove_member(srv_db *db, int64_t team_id, const char *account);

#endif
