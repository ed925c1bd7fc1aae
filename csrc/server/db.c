/* nim-server storage: the statements' portable text, opening either backend
 * (db_sqlite.c, db_pg.c), transactions, accounts and messages. All
 * statements are prepared once at open;
 * every function resets its statement before returning, so a failure in the
 * middle never leaves a statement holding a read transaction open. The
 * request thread only (reqthread.c). */
#include "server/db_private.h"
#include "core/alloc.h"
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>


#define MSG_COLS "m.id, m.id_client, m.scene, m.from_account, m.from_device, m.to_target, " \
                 "m.time, m.type, m.text, m.content"

const char *const db_sql[S__COUNT] = {
    [S_BEGIN]    = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT]   = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT nim_item",
    [S_RELEASE]  = "RELEASE nim_item",
    [S_ROLLBACK_TO] = "ROLLBACK TO nim_item",
    [S_NEXT_VER] = "UPDATE counters SET value = value + 1 WHERE name = 'ver' RETURNING value",
    [S_MAX_MSG]  = "SELECT coalesce(max(id), 0) FROM msgs",
    [S_MAX_VER]  = "SELECT value FROM counters WHERE name = 'ver'",
    [S_SERVER_ID] = "SELECT value FROM counters WHERE name = 'server_id'",
    [S_LAST_TIME] = "SELECT coalesce(max(time), 0) FROM msgs",
    [S_ACC_GET]  = "SELECT salt, hash, iterations FROM accounts WHERE account = ?1",
    [S_ACC_PUT]  = "INSERT INTO accounts(account, salt, hash, iterations, created) VALUES(?1, ?2, ?3, ?4, ?5) "
                   "ON CONFLICT(account) DO UPDATE SET salt = excluded.salt, hash = excluded.hash, "
                   "iterations = excluded.iterations",
    [S_ACC_EXISTS] = "SELECT 1 FROM accounts WHERE account = ?1",
    [S_ACC_TWIN] = "SELECT account FROM accounts INDEXED BY accounts_lower WHERE lower(account) = lower(?1) "
                   "AND account <> ?1 LIMIT 1",
    [S_DEV_TOUCH] = "INSERT INTO devices(account, device_id, first_login, last_login) VALUES(?1, ?2, ?3, ?3) "
                    "ON CONFLICT(account, device_id) DO UPDATE SET last_login = excluded.last_login",
    [S_ACC_STORED] = "SELECT stored FROM accounts WHERE account = ?1",
    [S_ACC_STORE] = "UPDATE accounts SET stored = stored + ?2 WHERE account = ?1",
    [S_DEV_KNOWN] = "SELECT 1 FROM devices WHERE account = ?1 AND device_id = ?2",
    [S_DEV_COUNT] = "SELECT count(*) FROM devices WHERE account = ?1 AND last_login > ?2",
    [S_MSG_BY_CLIENT] = "SELECT " MSG_COLS " FROM msgs m WHERE m.from_account = ?1 AND m.id_client = ?2",
    [S_MSG_INSERT] = "INSERT INTO msgs(id_client, scene, from_account, from_device, to_target, time, type, text, content) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                     "ON CONFLICT(from_account, id_client) DO NOTHING RETURNING id",
    [S_INBOX_INSERT] = "INSERT INTO inbox(account, msg_id, session_id, delivered) VALUES(?1, ?2, ?3, ?4) "
                       "ON CONFLICT DO NOTHING",
    [S_MSG_HEAD] = "SELECT scene, from_account, to_target, time FROM msgs WHERE id = ?1",
    /* times never decrease with ids: the newest message is the latest time */
    [S_SESSION_LAST_TIME] = "SELECT m.time FROM inbox i INDEXED BY inbox_session JOIN msgs m ON m.id = i.msg_id "
                            "WHERE i.account = ?1 AND i.session_id = ?2 ORDER BY i.msg_id DESC LIMIT 1",
    /* The login sync's pages (db_sync.c): keyset on the message id, each
     * from its index (named: without statistics the planner would take the
     * primary key and scan the account's history), never a scan. */
    [S_SYNC_UNDELIVERED] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_offline "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "LEFT JOIN deleted_sessions d ON d.account = i.account AND d.session_id = i.session_id "
                  "WHERE i.account = ?1 AND i.delivered = 0 AND i.msg_id > ?2 AND i.msg_id <= ?3 "
                  "AND i.msg_id > coalesce(d.mark, 0) ORDER BY i.msg_id LIMIT ?4",
    [S_SYNC_AFTER] = "SELECT " MSG_COLS ", i.delivered FROM inbox i JOIN msgs m ON m.id = i.msg_id "
                  "LEFT JOIN deleted_sessions d ON d.account = i.account AND d.session_id = i.session_id "
                  "WHERE i.account = ?1 AND i.msg_id > ?2 AND i.msg_id > coalesce(d.mark, 0) "
                  "ORDER BY i.msg_id LIMIT ?3",
    [S_SYNC_NEXT_SESSION] = "SELECT session_id FROM inbox WHERE account = ?1 AND session_id > ?2 "
                  "ORDER BY session_id LIMIT 1",
    [S_SYNC_SESSION_DESC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.delivered = 1 AND i.msg_id < ?3 "
                  "AND i.msg_id > ?5 ORDER BY i.msg_id DESC LIMIT ?4",
    /* a session's deletion mark, read first: as a bound of the range it
     * keeps a page's index scan short (as a filter it would not) */
    [S_DEL_MARK] = "SELECT mark FROM deleted_sessions WHERE account = ?1 AND session_id = ?2",
    /* History: times to id bounds through msgs_time, then the session's
     * rows between them through inbox_session (db_sync.c). */
    [S_ID_FROM_TIME] = "SELECT id FROM msgs INDEXED BY msgs_time WHERE time >= ?1 ORDER BY time, id LIMIT 1",
    [S_ID_UNTIL_TIME] = "SELECT id FROM msgs INDEXED BY msgs_time WHERE time <= ?1 "
                  "ORDER BY time DESC, id DESC LIMIT 1",
    [S_HISTORY_DESC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.msg_id > ?3 AND i.msg_id < ?4 "
                  "AND m.time >= ?5 AND m.time <= ?6 ORDER BY i.msg_id DESC LIMIT ?7",
    [S_HISTORY_ASC] = "SELECT " MSG_COLS ", i.delivered FROM inbox i INDEXED BY inbox_session "
                  "JOIN msgs m ON m.id = i.msg_id "
                  "WHERE i.account = ?1 AND i.session_id = ?2 AND i.msg_id > ?3 AND i.msg_id < ?4 "
                  "AND m.time >= ?5 AND m.time <= ?6 ORDER BY i.msg_id LIMIT ?7",
    [S_MARK_ONE]  = "UPDATE inbox SET delivered = 1 WHERE account = ?1 AND msg_id = ?2 AND delivered = 0",
    [S_MARK_UPTO] = "UPDATE inbox SET delivered = 1 WHERE account = ?1 AND msg_id <= ?2 AND delivered = 0",
    [S_PTR_GET] = "SELECT ack FROM read_pointers WHERE account = ?1 AND session_id = ?2",
    [S_PTR_SET] = "INSERT INTO read_pointers(account, session_id, ack, ver) VALUES(?1, ?2, ?3, ?4) "
                  "ON CONFLICT(account, session_id) DO UPDATE SET ack = excluded.ack, ver = excluded.ver",
    [S_PTR_SINCE] = "SELECT session_id, ack, ver FROM read_pointers WHERE account = ?1 AND ver > ?2 "
                    "ORDER BY ver LIMIT ?3",
    [S_PTR_COUNT] = "SELECT count(*) FROM read_pointers WHERE account = ?1",
    [S_DEL_SESSION] = "INSERT INTO deleted_sessions(account, session_id, mark, time) VALUES(?1, ?2, ?3, ?4) "
                      "ON CONFLICT(account, session_id) DO UPDATE SET mark = max(mark, excluded.mark), "
                      "time = excluded.time",
    [S_RCPT_GET] = "SELECT time FROM receipts WHERE peer = ?2 AND reader = ?1",
    [S_RCPT_SET] = "INSERT INTO receipts(reader, peer, time, msg_id, ver) VALUES(?1, ?2, ?3, ?4, ?5) "
                   "ON CONFLICT(peer, reader) DO UPDATE SET time = excluded.time, msg_id = excluded.msg_id, "
                   "ver = excluded.ver",
    [S_RCPT_SINCE] = "SELECT reader, time, msg_id, ver FROM receipts WHERE peer = ?1 AND ver > ?2 "
                     "ORDER BY ver LIMIT ?3",
    [S_RCPT_COUNT] = "SELECT count(*) FROM receipts WHERE reader = ?1",
    [S_STICK_COUNT] = "SELECT count(*) FROM stick_top WHERE account = ?1",
    [S_STICK_GET] = "SELECT session_id, top_custom, create_time, update_time FROM stick_top "
                    "WHERE account = ?1 AND session_id = ?2",
    [S_STICK_PUT] = "INSERT INTO stick_top(account, session_id, top_custom, create_time, update_time) "
                    "VALUES(?1, ?2, ?3, ?4, ?4) ON CONFLICT(account, session_id) DO UPDATE SET "
                    "top_custom = excluded.top_custom, update_time = excluded.update_time",
    [S_STICK_DEL] = "DELETE FROM stick_top WHERE account = ?1 AND session_id = ?2",
    [S_STICK_LIST] = "SELECT session_id, top_custom, create_time, update_time FROM stick_top "
                     "WHERE account = ?1 ORDER BY update_time DESC, session_id",
    [S_TEAM_INSERT] = "INSERT INTO teams(name, owner, created) VALUES(?1, ?2, ?3) RETURNING id",
    [S_TEAM_MEMBER_ADD] = "INSERT INTO team_members(team_id, account, joined) VALUES(?1, ?2, ?3) "
                          "ON CONFLICT DO NOTHING",
    [S_TEAM_GET] = "SELECT name FROM teams WHERE id = ?1",
    [S_TEAM_MEMBERS] = "SELECT account FROM team_members WHERE team_id = ?1 ORDER BY joined, account",
    [S_TEAM_OWNER] = "SELECT owner FROM teams WHERE id = ?1",
    [S_TEAM_MEMBER_DEL] = "DELETE FROM team_members WHERE team_id = ?1 AND account = ?2",
    [S_TEAM_IS_MEMBER] = "SELECT 1 FROM team_members WHERE team_id = ?1 AND account = ?2",
};


const char *srv_db_errmsg(srv_db *db) { return db->be->errmsg(db); }

int db_failed(srv_db *db, int i) {
    int storage = db->be->storage_failure(db);
    /* a full disk fails every write: say so once, not once per request */
    if (!storage || !db->cannot_write)
        fprintf(stderr, "nim-server: %s: %s: %s%s\n", db->be->name, db_sql[i], db->be->errmsg(db),
                storage ? " (writes fail until there is space again; reads and logins go on)" : "");
    if (storage) db->cannot_write = 1;
    return NIM_CODE_SERVER;
}

const char *srv_db_storage_error(srv_db *db) {
    return db && db->cannot_write
        ? "server storage cannot be written (full, read-only or failing): nothing was stored; try again later"
        : NULL;
}

/* Runs a statement that returns no rows (or whose rows are ignored). */
int db_run(srv_db *db, int i) {
    int rc;
    while ((rc = db_step(db, i)) == DB_ROW) {}
    db_reset(db, i);
    if (rc != DB_DONE) { return db_failed(db, i); }
    return NIM_CODE_OK;
}

/* Steps a statement expected to give at most one row: NIM_CODE_OK with the
 * row ready, NIM_CODE_NOT_FOUND, or 500. The caller resets. */
int db_one(srv_db *db, int i) {
    int rc = db_step(db, i);
    if (rc == DB_ROW) return NIM_CODE_OK;
    db_reset(db, i);
    if (rc == DB_DONE) return NIM_CODE_NOT_FOUND;
    return db_failed(db, i);
}

int db_returning(srv_db *db, int i, int64_t *out) {
    int rc = db_one(db, i);
    if (rc != NIM_CODE_OK) return NIM_CODE_SERVER;
    *out = db_col_int(db, i, 0);
    return db_run(db, i);   /* finish the statement */
}

int db_get_int(srv_db *db, int i, const char *a, const char *b, int64_t *out) {
    db_reset(db, i);
    db_bind_text(db, i, 1, a);
    if (b) db_bind_text(db, i, 2, b);
    int rc = db_one(db, i);
    *out = 0;
    if (rc == NIM_CODE_NOT_FOUND) return NIM_CODE_OK;
    if (rc != NIM_CODE_OK) return rc;
    *out = db_col_int(db, i, 0);
    db_reset(db, i);
    return NIM_CODE_OK;
}

srv_db *srv_db_open(const char *path, char *err, size_t errlen) {
    srv_db *db = nim_calloc(1, sizeof *db);
    if (!db) { snprintf(err, errlen, "out of memory"); return NULL; }
    int pg = !strncmp(path, "postgresql://", 13) || !strncmp(path, "postgres://", 11);
    if ((pg ? db_pg_open(db, path, err, errlen) : db_sqlite_open(db, path, err, errlen)) != 0) {
        srv_db_close(db);
        return NULL;
    }
    return db;
}

void srv_db_close(srv_db *db) {
    if (!db) return;
    if (db->be) db->be->close(db);
    nim_free(db);
}

static int64_t one_int64(srv_db *db, int i);

int srv_db_begin(srv_db *db) {
    db->changes_at_begin = db->be->total_changes(db);
    db->time_floor = -1;   /* read when a message first needs it */
    db_reset(db, S_BEGIN);
    return db_run(db, S_BEGIN);
}
/* A failed read leaves 0; on PostgreSQL it aborted the transaction too,
 * so nothing written with that time commits. */
int64_t srv_db_time_floor(srv_db *db) {
    if (!db->be->shared || !db->be->in_txn(db)) return 0;
    if (db->time_floor < 0) db->time_floor = one_int64(db, S_LAST_TIME);
    return db->time_floor;
}
int srv_db_begin_read(srv_db *db) { db_reset(db, S_BEGIN_READ); return db_run(db, S_BEGIN_READ); }
int srv_db_commit(srv_db *db) {
    db_reset(db, S_COMMIT);
    int rc = db_run(db, S_COMMIT);
    /* only a commit that wrote something proves the storage writable again */
    if (rc == NIM_CODE_OK && db->cannot_write && !db->read_only &&
        db->be->total_changes(db) > db->changes_at_begin) {
        db->cannot_write = 0;
        fprintf(stderr, "nim-server: storage writable again\n");
    }
    return rc;
}
void srv_db_rollback(srv_db *db) {
    if (db->be->in_txn(db)) { db_reset(db, S_ROLLBACK); db_run(db, S_ROLLBACK); }
}
int srv_db_in_txn(srv_db *db) { return db->be->in_txn(db); }
int srv_db_savepoint(srv_db *db) { db_reset(db, S_SAVEPOINT); return db_run(db, S_SAVEPOINT); }
int srv_db_release(srv_db *db) { db_reset(db, S_RELEASE); return db_run(db, S_RELEASE); }
void srv_db_rollback_to(srv_db *db) {
    /* ROLLBACK TO keeps the savepoint open: release it too. */
    if (db->be->in_txn(db)) {
        db_reset(db, S_ROLLBACK_TO);
        if (db_run(db, S_ROLLBACK_TO) == NIM_CODE_OK) srv_db_release(db);
    }
}

int srv_db_next_ver(srv_db *db, int64_t *ver) {
    db_reset(db, S_NEXT_VER);
    return db_returning(db, S_NEXT_VER, ver);
}

int srv_db_cursors(srv_db *db, int64_t *max_msg, int64_t *max_ver) {
    db_reset(db, S_MAX_MSG);
    if (db_one(db, S_MAX_MSG) != NIM_CODE_OK) return NIM_CODE_SERVER;
    *max_msg = db_col_int(db, S_MAX_MSG, 0);
    db_reset(db, S_MAX_MSG);
    db_reset(db, S_MAX_VER);
    if (db_one(db, S_MAX_VER) != NIM_CODE_OK) return NIM_CODE_SERVER;
    *max_ver = db_col_int(db, S_MAX_VER, 0);
    db_reset(db, S_MAX_VER);
    return NIM_CODE_OK;
}

/* The one integer statement i (no parameters) gives, or 0. */
static int64_t one_int64(srv_db *db, int i) {
    db_reset(db, i);
    if (db_one(db, i) != NIM_CODE_OK) return 0;
    int64_t v = db_col_int(db, i, 0);
    db_reset(db, i);
    return v;
}

int64_t srv_db_server_id(srv_db *db) { return one_int64(db, S_SERVER_ID); }

int64_t srv_db_last_msg_time(srv_db *db) { return one_int64(db, S_LAST_TIME); }

int srv_db_put_cred(srv_db *db, const char *account, const srv_cred *cred, int *created) {
    db_reset(db, S_ACC_EXISTS);
    db_bind_text(db, S_ACC_EXISTS, 1, account);
    int rc = db_one(db, S_ACC_EXISTS);
    db_reset(db, S_ACC_EXISTS);
    if (rc == NIM_CODE_SERVER) return rc;
    if (rc == NIM_CODE_NOT_FOUND) {     /* a new name: not a case twin of another */
        db_reset(db, S_ACC_TWIN);
        db_bind_text(db, S_ACC_TWIN, 1, account);
        int twin = db_one(db, S_ACC_TWIN);
        db_reset(db, S_ACC_TWIN);
        if (twin != NIM_CODE_NOT_FOUND) return twin == NIM_CODE_OK ? NIM_CODE_FORBIDDEN : twin;
    }
    if (created) *created = rc == NIM_CODE_NOT_FOUND;
    db_reset(db, S_ACC_PUT);
    db_bind_text(db, S_ACC_PUT, 1, account);
    db_bind_blob(db, S_ACC_PUT, 2, cred->salt, SRV_SALT_LEN);
    db_bind_blob(db, S_ACC_PUT, 3, cred->hash, SRV_HASH_LEN);
    db_bind_int(db, S_ACC_PUT, 4, cred->iterations);
    db_bind_int(db, S_ACC_PUT, 5, (int64_t)time(NULL) * 1000);
    return db_run(db, S_ACC_PUT);
}

int srv_db_get_cred(srv_db *db, const char *account, srv_cred *out) {
    db_reset(db, S_ACC_GET);
    db_bind_text(db, S_ACC_GET, 1, account);
    int rc = db_one(db, S_ACC_GET);
    if (rc != NIM_CODE_OK) return rc;
    int sn = 0, hn = 0;
    const void *sb = db->be->col_blob(db, S_ACC_GET, 0, &sn), *hb = db->be->col_blob(db, S_ACC_GET, 1, &hn);
    int64_t it = db_col_int(db, S_ACC_GET, 2);
    if (sb && hb && sn == SRV_SALT_LEN && hn == SRV_HASH_LEN &&
        it > 0 && it <= 100000000) {
        memcpy(out->salt, sb, SRV_SALT_LEN);
        memcpy(out->hash, hb, SRV_HASH_LEN);
        out->iterations = (int)it;
    } else {
        rc = NIM_CODE_AUTH;
    }
    db_reset(db, S_ACC_GET);
    return rc;
}

int srv_db_account_exists(srv_db *db, const char *account) {
    db_reset(db, S_ACC_EXISTS);
    db_bind_text(db, S_ACC_EXISTS, 1, account);
    int rc = db_one(db, S_ACC_EXISTS);
    db_reset(db, S_ACC_EXISTS);
    return rc;
}

int srv_db_devices(srv_db *db, const char *account, const char *device, int64_t since,
                   int *known, int64_t *recent) {
    db_reset(db, S_DEV_KNOWN);
    db_bind_text(db, S_DEV_KNOWN, 1, account);
    db_bind_text(db, S_DEV_KNOWN, 2, device);
    int rc = db_one(db, S_DEV_KNOWN);
    db_reset(db, S_DEV_KNOWN);
    if (rc == NIM_CODE_SERVER) return rc;
    *known = rc == NIM_CODE_OK;
    db_reset(db, S_DEV_COUNT);
    db_bind_text(db, S_DEV_COUNT, 1, account);
    db_bind_int(db, S_DEV_COUNT, 2, since);
    rc = db_one(db, S_DEV_COUNT);
    if (rc == NIM_CODE_OK) *recent = db_col_int(db, S_DEV_COUNT, 0);
    db_reset(db, S_DEV_COUNT);
    return rc == NIM_CODE_OK ? rc : NIM_CODE_SERVER;
}

int srv_db_touch_device(srv_db *db, const char *account, const char *device, int64_t now) {
    db_reset(db, S_DEV_TOUCH);
    db_bind_text(db, S_DEV_TOUCH, 1, account);
    db_bind_text(db, S_DEV_TOUCH, 2, device);
    db_bind_int(db, S_DEV_TOUCH, 3, now);
    return db_run(db, S_DEV_TOUCH);
}

cJSON *db_row_msg(srv_db *db, int i) {
    nim_proto_msg m = {
        .id_server = db_col_int(db, i, 0),
        .id_client = db_col_text(db, i, 1),
        .scene = nim_proto_scene_from_name(db_col_text(db, i, 2)),
        .from = db_col_text(db, i, 3),
        .from_device = db_col_text(db, i, 4),
        .to = db_col_text(db, i, 5),
        .time = db_col_int(db, i, 6),
        .type = db_col_text(db, i, 7),
        .text = db_col_text(db, i, 8),
        .content = db_col_text(db, i, 9),
    };
    if (!m.from || !m.to || !m.type) return NULL;
    return nim_proto_msg_to_json(&m);
}

int srv_db_find_client_msg(srv_db *db, const char *from, const char *id_client, cJSON **out) {
    db_reset(db, S_MSG_BY_CLIENT);
    db_bind_text(db, S_MSG_BY_CLIENT, 1, from);
    db_bind_text(db, S_MSG_BY_CLIENT, 2, id_client);
    int rc = db_one(db, S_MSG_BY_CLIENT);
    if (rc != NIM_CODE_OK) return rc;
    *out = db_row_msg(db, S_MSG_BY_CLIENT);
    db_reset(db, S_MSG_BY_CLIENT);
    return *out ? NIM_CODE_OK : NIM_CODE_SERVER;
}

int srv_db_insert_msg(srv_db *db, nim_proto_msg *m) {
    db_reset(db, S_MSG_INSERT);
    db_bind_text(db, S_MSG_INSERT, 1, m->id_client ? m->id_client : "");
    db_bind_text(db, S_MSG_INSERT, 2, nim_proto_scene_name(m->scene));
    db_bind_text(db, S_MSG_INSERT, 3, m->from);
    db_bind_text(db, S_MSG_INSERT, 4, m->from_device ? m->from_device : "");
    db_bind_text(db, S_MSG_INSERT, 5, m->to);
    db_bind_int(db, S_MSG_INSERT, 6, m->time);
    db_bind_text(db, S_MSG_INSERT, 7, m->type);
    db_bind_text(db, S_MSG_INSERT, 8, m->text);
    db_bind_text(db, S_MSG_INSERT, 9, m->content);
    int rc = db_one(db, S_MSG_INSERT);
    if (rc == NIM_CODE_NOT_FOUND) return NIM_CODE_FORBIDDEN;   /* no row: the idClient is taken */
    if (rc != NIM_CODE_OK) return rc;
    m->id_server = db_col_int(db, S_MSG_INSERT, 0);
    rc = db_run(db, S_MSG_INSERT);   /* finish the statement */
    if (rc == NIM_CODE_OK) {   /* its sender's storage, in the same transaction */
        db_reset(db, S_ACC_STORE);
        db_bind_text(db, S_ACC_STORE, 1, m->from);
        db_bind_int(db, S_ACC_STORE, 2, srv_msg_bytes(m));
        rc = db_run(db, S_ACC_STORE);
    }
    return rc;
}

int64_t srv_msg_bytes(const nim_proto_msg *m) {
    return (int64_t)(m->text ? strlen(m->text) : 0) + (int64_t)(m->content ? strlen(m->content) : 0) +
           SRV_MSG_OVERHEAD;
}

int srv_db_stored_bytes(srv_db *db, const char *account, int64_t *bytes) {
    return db_get_int(db, S_ACC_STORED, account, NULL, bytes);
}

int srv_db_insert_inbox(srv_db *db, const char *account, int64_t msg_id,
                        const char *session_id, int delivered) {
    db_reset(db, S_INBOX_INSERT);
    db_bind_text(db, S_INBOX_INSERT, 1, account);
    db_bind_int(db, S_INBOX_INSERT, 2, msg_id);
    db_bind_text(db, S_INBOX_INSERT, 3, session_id);
    db_bind_int(db, S_INBOX_INSERT, 4, delivered ? 1 : 0);
    return db_run(db, S_INBOX_INSERT);
}

int srv_db_session_last_time(srv_db *db, const char *account, const char *session_id, int64_t *time) {
    db_reset(db, S_SESSION_LAST_TIME);
    db_bind_text(db, S_SESSION_LAST_TIME, 1, account);
    db_bind_text(db, S_SESSION_LAST_TIME, 2, session_id);
    *time = 0;
    int rc = db_one(db, S_SESSION_LAST_TIME);
    if (rc == NIM_CODE_OK) *time = db_col_int(db, S_SESSION_LAST_TIME, 0);
    db_reset(db, S_SESSION_LAST_TIME);
    return rc == NIM_CODE_NOT_FOUND ? NIM_CODE_OK : rc;
}

int srv_db_msg_head(srv_db *db, int64_t id, srv_msg_head *h) {
    db_reset(db, S_MSG_HEAD);
    db_bind_int(db, S_MSG_HEAD, 1, id);
    int rc = db_one(db, S_MSG_HEAD);
    if (rc != NIM_CODE_OK) return rc;
    h->scene = nim_proto_scene_from_name(db_col_text(db, S_MSG_HEAD, 0));
    snprintf(h->from, sizeof h->from, "%s", db_col_text(db, S_MSG_HEAD, 1) ? db_col_text(db, S_MSG_HEAD, 1) : "");
    snprintf(h->to, sizeof h->to, "%s", db_col_text(db, S_MSG_HEAD, 2) ? db_col_text(db, S_MSG_HEAD, 2) : "");
    h->time = db_col_int(db, S_MSG_HEAD, 3);
    db_reset(db, S_MSG_HEAD);
    return NIM_CODE_OK;
}

int srv_db_mark_received(srv_db *db, const char *account, int64_t msg_id, int64_t *n) {
    db_reset(db, S_MARK_ONE);
    db_bind_text(db, S_MARK_ONE, 1, account);
    db_bind_int(db, S_MARK_ONE, 2, msg_id);
    int rc = db_run(db, S_MARK_ONE);
    if (rc == NIM_CODE_OK) *n += db_changes(db);
    return rc;
}

int srv_db_mark_received_upto(srv_db *db, const char *account, int64_t upto, int64_t *n) {
    db_reset(db, S_MARK_UPTO);
    db_bind_text(db, S_MARK_UPTO, 1, account);
    db_bind_int(db, S_MARK_UPTO, 2, upto);
    int rc = db_run(db, S_MARK_UPTO);
    if (rc == NIM_CODE_OK) *n += db_changes(db);
    return rc;
}
