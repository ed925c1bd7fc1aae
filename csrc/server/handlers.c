/* nim-server request handlers: one function per command of docs/protocol.md.
 * Each runs on the request thread (reqthread.c), checks every field before acting, acts
 * only on the connection's own account, answers exactly once with a code,
 * and stores before it answers (an acknowledged change survives a crash).
 * Messages (sendMsg and its group commit, markMsgsReceived, sendMsgReceipt,
 * getHistoryMsgs) are in messages.c. */
#include "server/handlers.h"
#include "server/auth.h"
#include "server/throttle.h"
#include <openssl/crypto.h>
#include <stdatomic.h>
#include "core/alloc.h"
#include "core/jfield.h"
#include <string.h>
#include <stdio.h>
#include <time.h>

int64_t srv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t srv_msg_time(void) {
    int64_t t = srv_now_ms(), floor = srv_db_time_floor(srv.db);
    if (floor > srv.last_msg_time) srv.last_msg_time = floor;
    if (t < srv.last_msg_time) t = srv.last_msg_time;
    srv.last_msg_time = t;
    return t;
}

/* A login on its way through the credentials thread (auth.h). */
typedef struct {
    srv_auth_job job;                      /* first: the job is the login */
    srv_conn    *c;
    uint64_t     serial;
    int64_t      id;
    char         account[NIM_PROTO_MAX_ACCOUNT + 1];
    char         device[NIM_PROTO_MAX_DEVICE + 1];
    char         addr[64];
    int64_t      cur_msgs, cur_state;
    srv_roaming_resume resume;
    int          has_resume, registering;
} login_job;

static void login_derived(srv_auth_job *j, int cancelled);
static void login_accepted(srv_conn *c, const login_job *lj);
static void login_free(login_job *lj);
static void release_held(srv_conn *c);

static void h_login(const req *r) {
    srv_conn *c = r->c;
    const char *account = NULL, *token = NULL, *device = NULL, *err = NULL, *target_unused = NULL;
    int64_t version = 0, cur_msgs = 0, cur_state = 0;
    int rc;
    if (c->logged_in || c->auth_pending) { srv_answer(r, NIM_CODE_LOGGED_IN, NULL, NULL); return; }
    CHECK(nim_proto_get_int(r->data, "version", 0, NIM_PROTO_MAX_INT, 1, &version, &err));
    if (version != NIM_PROTO_VERSION) {
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddNumberToObject(d, "version", NIM_PROTO_VERSION);
        srv_answer(r, NIM_CODE_VERSION, "protocol version not supported; this server speaks version 1", d);
        return;
    }
    const cJSON *cursors = r->data ? cJSON_GetObjectItemCaseSensitive(r->data, "cursors") : NULL;
    if (cursors && !cJSON_IsNull(cursors) && !cJSON_IsObject(cursors)) {
        srv_answer(r, NIM_CODE_PARAM, "cursors: not an object", NULL);
        return;
    }
    CHECK(nim_proto_get_str(r->data, "account", 1, NIM_PROTO_MAX_ACCOUNT, 1, &account, &err));
    CHECK(nim_proto_get_str(r->data, "token", 1, NIM_PROTO_MAX_TOKEN, 1, &token, &err));
    CHECK(nim_proto_get_str(r->data, "deviceId", 1, NIM_PROTO_MAX_DEVICE, 1, &device, &err));
    CHECK(nim_proto_get_int(cursors, "msgs", 0, NIM_PROTO_MAX_INT, 0, &cur_msgs, &err));
    CHECK(nim_proto_get_int(cursors, "state", 0, NIM_PROTO_MAX_INT, 0, &cur_state, &err));
    srv_roaming_resume resume = { 0 }, *rp = NULL;
    const cJSON *ro = cursors ? cJSON_GetObjectItemCaseSensitive(cursors, "roaming") : NULL;
    if (ro && !cJSON_IsNull(ro)) {
        const char *sess = NULL;
        int64_t sent = 0;
        if (!cJSON_IsObject(ro)) { srv_answer(r, NIM_CODE_PARAM, "cursors.roaming: not an object", NULL); return; }
        CHECK(nim_proto_get_int(ro, "bound", 1, NIM_PROTO_MAX_INT, 1, &resume.bound, &err));
        CHECK(nim_proto_get_str(ro, "session", 0, NIM_PROTO_MAX_SESSION_ID, 1, &sess, &err));
        CHECK(nim_proto_get_int(ro, "before", 0, NIM_PROTO_MAX_INT, 1, &resume.before, &err));
        CHECK(nim_proto_get_int(ro, "sent", 0, SRV_ROAMING_PER_SESSION, 1, &sent, &err));
        if (*sess && nim_proto_parse_session_id(sess, &target_unused) == NIM_SCENE_NONE) {
            srv_answer(r, NIM_CODE_PARAM, "cursors.roaming.session: not a session id", NULL);
            return;
        }
        snprintf(resume.session, sizeof resume.session, "%s", sess);
        resume.sent = (int)sent;
        rp = &resume;
    }
    if (!nim_proto_valid_account(account)) { srv_answer(r, NIM_CODE_PARAM, "account: not a valid account name", NULL); return; }
    if (!nim_proto_valid_device(device)) { srv_answer(r, NIM_CODE_PARAM, "deviceId: not printable ASCII", NULL); return; }

    /* Too many failures for this account or from this address: no hashing. */
    int64_t wait = srv_throttle_check(account, c->addr, srv_mono_ms());
    int busy = !wait && srv_auth_queued() >= SRV_AUTH_MAX_QUEUED;
    if (busy) wait = 1000;
    if (wait > 0) {
        char why[128];
        if (busy) snprintf(why, sizeof why, "too many logins being checked: try again in 1 s");
        else snprintf(why, sizeof why, "too many failed logins for this account or address: try again in %lld s",
                      (long long)(wait + 999) / 1000);
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddNumberToObject(d, "retryAfter", (double)wait);
        srv_answer(r, NIM_CODE_THROTTLED, why, d);
        return;
    }
    /* The token is checked (and a weak hash upgraded, or an account made
     * with open registration) on the credentials thread; the connection
     * reads nothing more until that is answered. */
    login_job *lj = nim_calloc(1, sizeof *lj);
    if (!lj) { srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
    lj->c = c;
    lj->serial = c->serial;
    lj->id = r->id;
    snprintf(lj->account, sizeof lj->account, "%s", account);
    snprintf(lj->device, sizeof lj->device, "%s", device);
    snprintf(lj->addr, sizeof lj->addr, "%s", c->addr);
    lj->cur_msgs = cur_msgs;
    lj->cur_state = cur_state;
    if (rp) { lj->resume = *rp; lj->has_resume = 1; }
    srv_auth_job *j = &lj->job;
    snprintf(j->token, sizeof j->token, "%s", token);
    rc = srv_db_get_cred(srv.db, account, &j->stored);
    if (rc == NIM_CODE_SERVER) { login_free(lj); srv_answer(r, rc, NULL, NULL); return; }
    j->found = rc == NIM_CODE_OK;
    /* an unknown account costs the same work as a known one */
    if (!j->found) j->stored.iterations = srv.kdf_iterations;
    if ((j->found && j->stored.iterations < srv.kdf_iterations) ||
        (rc == NIM_CODE_NOT_FOUND && srv.open_registration))
        j->make_iterations = srv.kdf_iterations;
    lj->registering = rc == NIM_CODE_NOT_FOUND && srv.open_registration;
    j->finish = login_derived;
    if (srv_throttle_begin(account, c->addr, srv_mono_ms()) != 0) {
        login_free(lj);
        cJSON *d = cJSON_CreateObject();
        if (d) cJSON_AddNumberToObject(d, "retryAfter", 1000);
        srv_answer(r, NIM_CODE_THROTTLED, "too many logins being checked: try again in 1 s", d);
        return;
    }
    c->auth_pending = 1;
    c->login_job = j;
    srv.io->set_authed(c, 1);   /* admission spares it from now */
    srv_auth_submit(j);
}

static void login_free(login_job *lj) {
    OPENSSL_cleanse(lj->job.token, sizeof lj->job.token);
    nim_free(lj);
}

/* 419 for a device the account has not used, when it already has
 * srv.max_devices seen in SRV_DEVICE_DAYS (old ones age out). */
static int device_room(const login_job *lj) {
    int known = 0;
    int64_t recent = 0, since = srv_now_ms() - (int64_t)SRV_DEVICE_DAYS * 86400000;
    int rc = srv_db_devices(srv.db, lj->account, lj->device, since, &known, &recent);
    if (rc != NIM_CODE_OK) return NIM_CODE_OK;   /* a note, not a reason to refuse */
    return !known && recent >= srv.max_devices ? NIM_CODE_LIMIT : NIM_CODE_OK;
}

/* The connection lj was for, if it is still open (and the same one). */
static srv_conn *login_conn(const login_job *lj) {
    for (srv_conn *o = srv.conns; o; o = o->next)
        if (o == lj->c && o->serial == lj->serial) return o;
    return NULL;
}

/* The request thread: the credentials thread has derived lj's login. */
static void login_derived(srv_auth_job *j, int cancelled) {
    login_job *lj = (login_job *)j;   /* job is its first member */
    int wrong = !cancelled && !j->skipped && !j->failed && !j->equal && !lj->registering;
    srv_conn *c = login_conn(lj);
    /* shutting down, or its connection is closing (its socket may be gone,
     * its CLOSED not yet taken): nothing to answer, no one to kick for it;
     * the connection must not point at the job */
    if (c && (cancelled || srv.io->closing(c))) {
        c->login_job = NULL;
        c->auth_pending = 0;
        c = NULL;
    }
    if (!c) {
        /* a wrong token counts, even when its connection has gone */
        srv_throttle_end(lj->account, lj->addr, wrong ? -1 : 0, srv_mono_ms());
        login_free(lj);
        return;
    }
    if (!j->failed && lj->registering && srv_db_get_cred(srv.db, lj->account, &j->stored) == NIM_CODE_OK) {
        /* registered by another login meanwhile: this token must match it */
        lj->registering = 0;
        j->found = 1;
        j->make_iterations = 0;
        srv_auth_submit(j);
        return;
    }
    c->auth_pending = 0;
    c->login_job = NULL;
    int rc = j->failed ? NIM_CODE_SERVER : j->equal ? NIM_CODE_OK : NIM_CODE_AUTH;
    if (rc == NIM_CODE_OK) rc = device_room(lj);
    if (!j->failed && lj->registering) {
        int created = 0;
        rc = srv_db_put_cred(srv.db, lj->account, &j->made, &created);
    } else if (rc == NIM_CODE_OK && j->make_iterations > 0 && j->found) {
        /* a weaker hash than today's: stored again, stronger (a failure here
         * only leaves the old one) */
        (void)srv_db_put_cred(srv.db, lj->account, &j->made, NULL);
    }
    srv_throttle_end(lj->account, lj->addr, rc == NIM_CODE_OK ? 1 : rc == NIM_CODE_AUTH ? -1 : 0, srv_mono_ms());
    if (rc != NIM_CODE_OK) {
        char why[128];
        snprintf(why, sizeof why, "limit reached: at most %d devices per account in %d days (this one is new)",
                 srv.max_devices, SRV_DEVICE_DAYS);
        srv_reply(c, lj->id, nim_proto_cmd_name(NIM_WIRE_LOGIN), rc,
                  rc == NIM_CODE_FORBIDDEN ? "account: another account differs from it only in case" :
                  rc == NIM_CODE_LIMIT ? why : NULL, NULL);
        if (rc == NIM_CODE_AUTH && ++c->auth_failures >= SRV_MAX_AUTH_FAILURES)
            srv.io->close_after_flush(c, NIM_CLOSE_POLICY, "too many failed logins");
        srv.io->set_authed(c, 0);
    } else {
        login_accepted(c, lj);
    }
    login_free(lj);
    release_held(c);
}

/* The login is good: one live connection per account and device, the reply,
 * the sync. */
static void login_accepted(srv_conn *c, const login_job *lj) {
    int64_t now = srv_now_ms();
    /* the device's last login is only a note: a full disk must not stop
     * logins (db_failed has logged the storage trouble once) */
    (void)srv_db_touch_device(srv.db, lj->account, lj->device, now);
    const char *account = lj->account, *device = lj->device;
    /* One live connection per account+device: the newer one wins. */
    for (srv_conn *o = srv.conns; o; o = o->next) {
        if (o != c && o->logged_in && strcmp(o->account, account) == 0 && strcmp(o->device, device) == 0) {
            cJSON *d = cJSON_CreateObject();
            if (d) cJSON_AddStringToObject(d, "reason", "the same device logged in again");
            cJSON *p = nim_proto_push(nim_proto_push_name(NIM_PUSH_KICKED), d);
            srv_queue_json(o, p);
            cJSON_Delete(p);
            srv.io->close_after_flush(o, NIM_CLOSE_KICKED, "logged in again elsewhere");
            o->logged_in = 0;
        }
    }
    snprintf(c->account, sizeof c->account, "%s", account);
    snprintf(c->device, sizeof c->device, "%s", device);
    c->logged_in = 1;
    /* The login deadline becomes the idle deadline (refreshed per frame). */
    srv.io->set_idle(c, srv.idle_timeout_s > 0 ? srv.idle_timeout_s : 0);

    char server_id[24];
    snprintf(server_id, sizeof server_id, "%lld", (long long)srv.server_id);
    cJSON *d = cJSON_CreateObject();
    if (d && (!cJSON_AddStringToObject(d, "account", c->account) ||
              !cJSON_AddStringToObject(d, "deviceId", c->device) ||
              !cJSON_AddStringToObject(d, "serverId", server_id) ||
              !cJSON_AddNumberToObject(d, "serverTime", (double)now) ||
              !cJSON_AddNumberToObject(d, "version", NIM_PROTO_VERSION))) {
        cJSON_Delete(d);
        d = NULL;
    }
    srv_reply(c, lj->id, nim_proto_cmd_name(NIM_WIRE_LOGIN), NIM_CODE_OK, NULL, d);
    srv_sync_start(c, lj->cur_msgs, lj->cur_state, lj->has_resume ? &lj->resume : NULL);   /* its pages follow */
}

void srv_cap_error(srv_rows what, int64_t have, char *buf, size_t len) {
    static const char *const names[] = {
        [SRV_ROWS_POINTERS] = "sessions with a read pointer",
        [SRV_ROWS_RECEIPTS] = "peers sent a receipt",
        [SRV_ROWS_TOPS]     = "sticky-top sessions",
    };
    snprintf(buf, len, "limit reached: at most %lld %s per account (this one has %lld)",
             (long long)srv.caps[what], names[what], (long long)have);
}

int srv_check_cap(const req *r, srv_rows what, int64_t adding) {
    int64_t n = 0;
    int rc = srv_db_count_rows(srv.db, what, r->c->account, &n);
    if (rc != NIM_CODE_OK) { srv_answer(r, rc, NULL, NULL); return rc; }
    if (n + adding <= srv.caps[what]) return NIM_CODE_OK;
    char why[200];
    srv_cap_error(what, n, why, sizeof why);
    srv_answer(r, NIM_CODE_LIMIT, why, NULL);
    return NIM_CODE_LIMIT;
}

static void h_ping(const req *r) {
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddNumberToObject(d, "serverTime", (double)srv_now_ms());
    srv_answer_ok(r, d);
}

static void h_logout(const req *r) {
    srv_answer_ok(r, NULL);
    r->c->logged_in = 0;
    srv.io->close_after_flush(r->c, NIM_CLOSE_NORMAL, "logout");
}

static void h_update_read(const req *r) {
    const char *err = NULL, *target;
    const cJSON *list = NULL;
    size_t n = 0;
    int rc;
    CHECK(nim_proto_get_array(r->data, "pointers", NIM_PROTO_MAX_BATCH, 1, &list, &n, &err));
    if (n == 0) { srv_answer(r, NIM_CODE_PARAM, "pointers: empty", NULL); return; }
    int index = 0;
    for (const cJSON *it = list->child; it; it = it->next, index++) {
        const char *sid = NULL;
        int64_t ack;
        if (!cJSON_IsObject(it)) { srv_answer(r, NIM_CODE_PARAM, "pointers: every item must be an object", NULL); return; }
        CHECK(nim_proto_get_str(it, "sessionId", 1, NIM_PROTO_MAX_SESSION_ID, 1, &sid, &err));
        CHECK(nim_proto_get_int(it, "ack", 0, NIM_PROTO_MAX_INT, 1, &ack, &err));
        if (nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE) {
            srv_answer(r, NIM_CODE_PARAM, "sessionId: not p2p-<account> or team-<id>", NULL);
            return;
        }
        /* A pointer past every message of the session would hide the ones
         * still to come on every device, for ever. */
        int64_t last = 0;
        if ((rc = srv_db_session_last_time(srv.db, r->c->account, sid, &last)) != NIM_CODE_OK) {
            srv_answer(r, rc, NULL, NULL);
            return;
        }
        if (ack > last + SRV_POINTER_SKEW_MS) {
            char why[128];
            snprintf(why, sizeof why, "pointers[%d].ack: after the session's latest message time (+%d ms)",
                     index, SRV_POINTER_SKEW_MS);
            srv_answer(r, NIM_CODE_PARAM, why, NULL);
            return;
        }
    }
    /* Pointers of sessions that have one always move; a new session takes
     * a place under the cap, and past it is left out (419, the rest stored). */
    int64_t rows = 0;
    cJSON *all = cJSON_CreateArray(), *changed = cJSON_CreateArray(), *refused = cJSON_CreateArray();
    rc = all && changed && refused ? srv_db_count_rows(srv.db, SRV_ROWS_POINTERS, r->c->account, &rows)
                                   : NIM_CODE_SERVER;
    if (rc == NIM_CODE_OK) rc = srv_db_begin(srv.db);
    for (const cJSON *it = list->child; it && rc == NIM_CODE_OK; it = it->next) {
        const char *sid = cJSON_GetObjectItemCaseSensitive(it, "sessionId")->valuestring;
        int64_t ack = nim_jnum(it, "ack"), cur = 0, ver = 0;   /* checked above: 0 ... 2^53-1 */
        rc = srv_db_read_ptr_get(srv.db, r->c->account, sid, &cur);   /* sees this batch's own rows */
        if (rc == NIM_CODE_OK && cur == 0 && rows >= srv.caps[SRV_ROWS_POINTERS]) {
            if (!cJSON_AddItemToArray(refused, cJSON_CreateString(sid))) rc = NIM_CODE_SERVER;
            ack = 0;                           /* not stored: answered as 0 */
        } else if (rc == NIM_CODE_OK && cur == 0) {
            rows++;
        }
        if (rc == NIM_CODE_OK && ack > cur) {  /* pointers only move forward */
            rc = srv_db_next_ver(srv.db, &ver);
            if (rc == NIM_CODE_OK) rc = srv_db_read_ptr_set(srv.db, r->c->account, sid, ack, ver);
            cur = ack;
            cJSON *o = cJSON_CreateObject();
            if (!o || !cJSON_AddItemToArray(changed, o) || !cJSON_AddStringToObject(o, "sessionId", sid) ||
                !cJSON_AddNumberToObject(o, "ack", (double)ack) || !cJSON_AddNumberToObject(o, "ver", (double)ver))
                rc = NIM_CODE_SERVER;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(all, o) || !cJSON_AddStringToObject(o, "sessionId", sid) ||
            !cJSON_AddNumberToObject(o, "ack", (double)cur))
            rc = NIM_CODE_SERVER;
    }
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) {
        srv_db_rollback(srv.db);
        cJSON_Delete(all);
        cJSON_Delete(changed);
        cJSON_Delete(refused);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    cJSON *d = cJSON_CreateObject();
    int nrefused = cJSON_GetArraySize(refused);
    if (d && cJSON_AddItemToObject(d, "pointers", all)) all = NULL;
    if (d && nrefused && cJSON_AddItemToObject(d, "refused", refused)) refused = NULL;
    cJSON_Delete(all);
    cJSON_Delete(refused);
    if (nrefused) {
        char why[200];
        srv_cap_error(SRV_ROWS_POINTERS, rows, why, sizeof why);
        srv_answer(r, NIM_CODE_LIMIT, why, d);
    } else {
        srv_answer_ok(r, d);
    }
    if (cJSON_GetArraySize(changed) > 0) {
        cJSON *pd = cJSON_CreateObject();
        if (pd && cJSON_AddItemToObject(pd, "pointers", changed))
            srv_push_account(r->c->account, r->c, nim_proto_push_name(NIM_PUSH_READ_POINTERS), pd);
        else { cJSON_Delete(pd); cJSON_Delete(changed); }
    } else {
        cJSON_Delete(changed);
    }
}

static void h_delete_sessions(const req *r) {
    const char *err = NULL, *target;
    const cJSON *list = NULL;
    size_t n = 0;
    int64_t max_msg = 0, max_ver = 0;
    int rc;
    CHECK(nim_proto_get_array(r->data, "sessions", NIM_PROTO_MAX_BATCH, 1, &list, &n, &err));
    if (n == 0) { srv_answer(r, NIM_CODE_PARAM, "sessions: empty", NULL); return; }
    for (const cJSON *it = list->child; it; it = it->next) {
        if (!cJSON_IsString(it) || nim_proto_parse_session_id(it->valuestring, &target) == NIM_SCENE_NONE) {
            srv_answer(r, NIM_CODE_PARAM, "sessions: every item must be p2p-<account> or team-<id>", NULL);
            return;
        }
    }
    int64_t now = srv_now_ms();
    rc = srv_db_begin(srv.db);
    /* The mark is the newest message now: everything up to it stops roaming. */
    if (rc == NIM_CODE_OK) rc = srv_db_cursors(srv.db, &max_msg, &max_ver);
    for (const cJSON *it = list->child; it && rc == NIM_CODE_OK; it = it->next)
        rc = srv_db_delete_session(srv.db, r->c->account, it->valuestring, max_msg, now);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) { srv_db_rollback(srv.db); srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddItemToObject(d, "sessions", cJSON_Duplicate(list, 1));
    srv_answer_ok(r, d);
}

/* Replies with the session's sticky-top object and pushes op to my other
 * devices. */
static void stick_reply_push(const req *r, const char *op, cJSON *session) {
    cJSON *d = cJSON_CreateObject();
    cJSON *pd = cJSON_CreateObject();
    cJSON *copy = session ? cJSON_Duplicate(session, 1) : NULL;
    if (d && session && cJSON_AddItemToObject(d, "session", session)) srv_answer_ok(r, d);
    else { cJSON_Delete(d); cJSON_Delete(session); srv_answer_ok(r, NULL); }
    if (pd && copy && cJSON_AddStringToObject(pd, "op", op) && cJSON_AddItemToObject(pd, "session", copy))
        srv_push_account(r->c->account, r->c, nim_proto_push_name(NIM_PUSH_STICK_TOP), pd);
    else { cJSON_Delete(pd); cJSON_Delete(copy); }
}

static void h_stick_top(const req *r, nim_wire_cmd cmd) {
    const char *err = NULL, *sid = NULL, *custom = NULL, *target;
    cJSON *cur = NULL;
    int rc;
    CHECK(nim_proto_get_str(r->data, "sessionId", 1, NIM_PROTO_MAX_SESSION_ID, 1, &sid, &err));
    CHECK(nim_proto_get_str(r->data, "topCustom", 0, NIM_PROTO_MAX_CUSTOM, 0, &custom, &err));
    if (nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE) {
        srv_answer(r, NIM_CODE_PARAM, "sessionId: not p2p-<account> or team-<id>", NULL);
        return;
    }
    rc = srv_db_stick_get(srv.db, r->c->account, sid, &cur);
    if (rc == NIM_CODE_SERVER) { srv_answer(r, rc, NULL, NULL); return; }
    if (rc == NIM_CODE_NOT_FOUND && cmd == NIM_WIRE_ADD_STICK_TOP &&
        srv_check_cap(r, SRV_ROWS_TOPS, 1) != NIM_CODE_OK) return;
    if (cmd != NIM_WIRE_ADD_STICK_TOP && rc == NIM_CODE_NOT_FOUND) {
        srv_answer(r, NIM_CODE_NOT_FOUND, "sessionId: not a sticky-top session", NULL);
        return;
    }
    if (cmd == NIM_WIRE_DELETE_STICK_TOP) {
        cJSON_Delete(cur);
        rc = srv_db_stick_delete(srv.db, r->c->account, sid);
        if (rc != NIM_CODE_OK) { srv_answer(r, rc, NULL, NULL); return; }
        cJSON *s = cJSON_CreateObject();
        if (s) cJSON_AddStringToObject(s, "sessionId", sid);
        stick_reply_push(r, "delete", s);
        return;
    }
    char keep[NIM_PROTO_MAX_CUSTOM + 1] = "";
    if (!custom && cur) {
        /* update without topCustom keeps the old one */
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(cur, "topCustom");
        if (cJSON_IsString(old)) snprintf(keep, sizeof keep, "%s", old->valuestring);
        custom = keep;
    }
    cJSON_Delete(cur);
    cur = NULL;
    rc = srv_db_stick_put(srv.db, r->c->account, sid, custom ? custom : "", srv_now_ms());
    if (rc == NIM_CODE_OK) rc = srv_db_stick_get(srv.db, r->c->account, sid, &cur);
    if (rc != NIM_CODE_OK) { srv_answer(r, NIM_CODE_SERVER, NULL, NULL); return; }
    stick_reply_push(r, cmd == NIM_WIRE_ADD_STICK_TOP ? "add" : "update", cur);
}

static void h_get_stick_top(const req *r) {
    cJSON *arr = cJSON_CreateArray(), *d = cJSON_CreateObject();
    if (!arr || !d || srv_db_stick_list(srv.db, r->c->account, arr) != NIM_CODE_OK ||
        !cJSON_AddItemToObject(d, "sessions", arr)) {
        cJSON_Delete(arr);
        cJSON_Delete(d);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    srv_answer_ok(r, d);
}

static void throttled_unknown(const req *r, int64_t wait) {
    char why[160];
    snprintf(why, sizeof why, "too many unknown account names: at most %d a minute; try again in %lld s",
             SRV_UNKNOWN_PER_MIN, (long long)(wait + 999) / 1000);
    cJSON *d = cJSON_CreateObject();
    if (d) cJSON_AddNumberToObject(d, "retryAfter", (double)wait);
    srv_answer(r, NIM_CODE_THROTTLED, why, d);
}

void srv_answer_unknown(const req *r, cJSON *unknown, const char *error) {
    int64_t now = srv_mono_ms(), wait = srv_throttle_unknown_wait(r->c->account, now);
    if (wait > 0) { cJSON_Delete(unknown); throttled_unknown(r, wait); return; }
    srv_throttle_unknown_spend(r->c->account, unknown ? cJSON_GetArraySize(unknown) : 1, now);
    cJSON *d = unknown ? cJSON_CreateObject() : NULL;
    if (d && cJSON_AddItemToObject(d, "unknown", unknown)) unknown = NULL;
    cJSON_Delete(unknown);
    srv_answer(r, NIM_CODE_NOT_FOUND, error, d);
}

static void h_create_team(const req *r) {
    const char *err = NULL, *name = NULL;
    const cJSON *accounts = NULL;
    size_t n = 0;
    int rc;
    CHECK(nim_proto_get_str(r->data, "name", 1, NIM_PROTO_MAX_TEAM_NAME, 1, &name, &err));
    CHECK(nim_proto_get_array(r->data, "accounts", NIM_PROTO_MAX_TEAM_SIZE - 1, 1, &accounts, &n, &err));
    /* the unknown list tells which names exist: only so many of those */
    int64_t wait = srv_throttle_unknown_wait(r->c->account, srv_mono_ms());
    if (wait > 0) { throttled_unknown(r, wait); return; }
    cJSON *members = cJSON_CreateArray(), *unknown = cJSON_CreateArray();
    if (!members || !unknown || !cJSON_AddItemToArray(members, cJSON_CreateString(r->c->account))) {
        cJSON_Delete(members); cJSON_Delete(unknown);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    for (const cJSON *a = accounts->child; a; a = a->next) {
        if (!cJSON_IsString(a) || !nim_proto_valid_account(a->valuestring)) {
            cJSON_Delete(members); cJSON_Delete(unknown);
            srv_answer(r, NIM_CODE_PARAM, "accounts: every item must be an account name", NULL);
            return;
        }
        int dup = 0;
        for (const cJSON *m = members->child; m && !dup; m = m->next)
            dup = strcmp(m->valuestring, a->valuestring) == 0;
        if (dup) continue;
        rc = srv_db_account_exists(srv.db, a->valuestring);
        if (rc == NIM_CODE_OK) cJSON_AddItemToArray(members, cJSON_CreateString(a->valuestring));
        else if (rc == NIM_CODE_NOT_FOUND) cJSON_AddItemToArray(unknown, cJSON_CreateString(a->valuestring));
        else { cJSON_Delete(members); cJSON_Delete(unknown); srv_answer(r, rc, NULL, NULL); return; }
    }
    if (cJSON_GetArraySize(unknown) > 0) {
        cJSON_Delete(members);
        srv_answer_unknown(r, unknown, "accounts: no such account");
        return;
    }
    cJSON_Delete(unknown);
    int64_t now = srv_now_ms(), team_id = 0;
    rc = srv_db_begin(srv.db);
    if (rc == NIM_CODE_OK) rc = srv_db_team_create(srv.db, name, r->c->account, now, &team_id);
    for (const cJSON *m = members->child; m && rc == NIM_CODE_OK; m = m->next)
        rc = srv_db_team_add_member(srv.db, team_id, m->valuestring, now);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(srv.db);
    if (rc != NIM_CODE_OK) {
        srv_db_rollback(srv.db);
        cJSON_Delete(members);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL);
        return;
    }
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)team_id);
    cJSON *team = cJSON_CreateObject();
    if (!team || !cJSON_AddStringToObject(team, "teamId", idbuf) ||
        !cJSON_AddStringToObject(team, "name", name) ||
        !cJSON_AddStringToObject(team, "owner", r->c->account) ||
        !cJSON_AddNumberToObject(team, "createTime", (double)now) ||
        !cJSON_AddItemToObject(team, "members", members)) {
        cJSON_Delete(team);
        srv_answer(r, NIM_CODE_SERVER, NULL, NULL); /* stored, but the reply could not be built */
        return;
    }
    /* Every member's devices learn about the team (mine too, except this one). */
    for (const cJSON *m = members->child; m; m = m->next) {
        cJSON *pd = cJSON_CreateObject();
        if (pd && cJSON_AddItemToObject(pd, "team", cJSON_Duplicate(team, 1)))
            srv_push_account(m->valuestring, r->c, nim_proto_push_name(NIM_PUSH_TEAM), pd);
        else cJSON_Delete(pd);
    }
    cJSON *d = cJSON_CreateObject();
    if (d && cJSON_AddItemToObject(d, "team", team)) srv_answer_ok(r, d);
    else { cJSON_Delete(d); cJSON_Delete(team); srv_answer(r, NIM_CODE_SERVER, NULL, NULL); }
}

static void handle_message(srv_conn *c, const char *buf, size_t len) {
    nim_frame f;
    const char *err = NULL;
    if (nim_proto_decode(buf, len, NIM_PROTO_MAX_REQUEST, &f, &err) != NIM_CODE_OK) {
        srv_group_flush(); /* replies stay in request order */
        srv_reply(c, f.id, "", NIM_CODE_BAD_FRAME, err, NULL);
        if (++c->bad_frames >= SRV_MAX_BAD_FRAMES)
            srv.io->close_after_flush(c, NIM_CLOSE_POLICY, "too many malformed frames");
        return;
    }
    if (f.kind != NIM_FRAME_REQUEST) {
        srv_group_flush();
        srv_reply(c, f.id, "", NIM_CODE_BAD_FRAME, "clients send requests only", NULL);
        nim_frame_free(&f);
        if (++c->bad_frames >= SRV_MAX_BAD_FRAMES)
            srv.io->close_after_flush(c, NIM_CLOSE_POLICY, "too many malformed frames");
        return;
    }
    req r = { .c = c, .id = f.id, .cmd = f.name, .data = f.data };
    nim_wire_cmd cmd = nim_proto_cmd_from_name(f.name);
    if (cmd == NIM_WIRE_SEND_MSG && c->logged_in) r.grouped = 1;
    else srv_group_flush(); /* everything else sees and orders after the group */
    if (cmd == NIM_WIRE_UNKNOWN) {
        srv_answer(&r, NIM_CODE_UNKNOWN_CMD, "unknown command", NULL);
    } else if (!c->logged_in && cmd != NIM_WIRE_LOGIN && cmd != NIM_WIRE_PING) {
        srv_answer(&r, NIM_CODE_NOT_LOGGED_IN, "log in first", NULL);
    } else {
        switch (cmd) {
        case NIM_WIRE_LOGIN:            h_login(&r); break;
        case NIM_WIRE_LOGOUT:           h_logout(&r); break;
        case NIM_WIRE_PING:             h_ping(&r); break;
        case NIM_WIRE_SEND_MSG:         srv_h_send_msg(&r); break;
        case NIM_WIRE_MARK_RECEIVED:    srv_h_mark_received(&r); break;
        case NIM_WIRE_UPDATE_READ:      h_update_read(&r); break;
        case NIM_WIRE_SEND_RECEIPT:     srv_h_send_receipt(&r); break;
        case NIM_WIRE_DELETE_SESSIONS:  h_delete_sessions(&r); break;
        case NIM_WIRE_ADD_STICK_TOP:
        case NIM_WIRE_UPDATE_STICK_TOP:
        case NIM_WIRE_DELETE_STICK_TOP: h_stick_top(&r, cmd); break;
        case NIM_WIRE_GET_STICK_TOP:    h_get_stick_top(&r); break;
        case NIM_WIRE_CREATE_TEAM:      h_create_team(&r); break;
        case NIM_WIRE_GET_HISTORY:      srv_h_get_history(&r); break;
        case NIM_WIRE_ADD_TEAM_MEMBERS: srv_h_add_members(&r); break;
        case NIM_WIRE_REMOVE_TEAM_MEMBERS: srv_h_remove_members(&r); break;
        case NIM_WIRE_LEAVE_TEAM:       srv_h_leave_team(&r); break;
        default:                       srv_answer(&r, NIM_CODE_UNKNOWN_CMD, NULL, NULL); break;
        }
    }
    nim_frame_free(&f);
}

/* While a login is being derived, a connection's next frames wait for it
 * in order (and the transport reads no more of it): what they ask depends
 * on whether it logs in. */
void srv_conn_frame(srv_conn *c, const char *buf, size_t len) {
    if (srv.io->closing(c)) return;   /* nothing more is answered */
    if (!c->auth_pending && !c->held) { handle_message(c, buf, len); return; }
    srv_held *h = nim_malloc(sizeof *h + len);
    if (!h) {
        srv.io->close_after_flush(c, NIM_CLOSE_SERVER_ERROR, "out of memory");
        return;
    }
    h->next = NULL;
    h->len = len;
    memcpy(h->buf, buf, len);
    if (c->held_tail) c->held_tail->next = h;
    else { c->held = h; srv.io->hold(c, 1); }
    c->held_tail = h;
}

/* The login is answered: the frames that waited for it, in order, and
 * reading again. */
static void release_held(srv_conn *c) {
    int held = c->held != NULL;
    while (c->held && !c->auth_pending && !srv.io->closing(c)) {
        srv_held *h = c->held;
        if (!(c->held = h->next)) c->held_tail = NULL;
        handle_message(c, h->buf, h->len);
        nim_free(h);
    }
    if (held && !c->held) srv.io->hold(c, 0);
}

static void held_free(srv_conn *c) {
    while (c->held) {
        srv_held *h = c->held;
        c->held = h->next;
        nim_free(h);
    }
    c->held_tail = NULL;
}

void srv_conn_gone(srv_conn *c) {
    held_free(c);
    c->logged_in = 0;
    if (c->login_job) atomic_store(&c->login_job->dead, 1);   /* nobody to answer: skip it */
    c->login_job = NULL;
    /* Its grouped replies have nowhere to go; its messages still commit and
     * push (they were stored). */
    srv_group_forget(c);
}
