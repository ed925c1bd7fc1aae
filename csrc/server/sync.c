/* nim-server's login sync (docs/protocol.md "Login and sync"), sent in
 * pages across request-thread batches: srv_sync_step builds one page (at most
 * SRV_SYNC_PAGE_ROWS messages, about SRV_SYNC_PAGE_BYTES of them) each time
 * the connection's queue has drained below SRV_SYNC_LOW_WATER, so every
 * other connection is served between two pages, a stalled reader holds at
 * most that much, and a login costs the same whatever the history's size.
 *
 * Every page reads with a keyset (srv_conn.sync), and begins by flushing the
 * group commit, so it sees every message acknowledged before it; messages
 * stored during the sync have ids above the bound and reach the connection
 * through the AFTER stage (it gets no live pushes until syncDone). Once the
 * AFTER pages have caught up, each step also sends a page of read pointers
 * and of receipts (keyset on ver); the step whose messages and state are
 * all below a page sends the sticky tops and syncDone too, so nothing
 * stored in between is missed. The request thread only. */
#include "server/server.h"
#include "core/alloc.h"
#include "core/jfield.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    int     delivered;
    char   *json;
    size_t  len;
} page_row;

/* The page being built; one at a time (one thread, steps never nest). */
static struct {
    page_row r[SRV_SYNC_PAGE_ROWS];
    int      n;
    size_t   bytes;
    int      failed;
} page;

static int page_full(void) {
    return page.n >= SRV_SYNC_PAGE_ROWS || page.bytes >= SRV_SYNC_PAGE_BYTES;
}

/* srv_db_row_cb: prints the row into the page; stops once it is full. */
static int take_row(void *ud, cJSON *msg, int64_t id, int delivered) {
    (void)ud;
    size_t len = 0;
    char *s = nim_proto_print(msg, 0, &len);
    cJSON_Delete(msg);
    if (!s) { page.failed = 1; return 1; }
    page.r[page.n++] = (page_row){ id, delivered, s, len };
    page.bytes += len;
    return page_full();
}

static void page_clear(void) {
    for (int i = 0; i < page.n; i++) nim_free(page.r[i].json);
    page.n = 0;
    page.bytes = 0;
    page.failed = 0;
}

static int cmp_row(const void *a, const void *b) {
    const page_row *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Queues the page, oldest first: its delivered messages as roamingMsgs
 * frames, then its undelivered ones as offlineMsgs; extra (the ack and
 * cursor fields) goes on the last frame, the one the client's transaction
 * for the page ends with. */
static int page_queue(srv_conn *c, const char *extra) {
    int any_offline = 0;
    qsort(page.r, (size_t)page.n, sizeof page.r[0], cmp_row);
    for (int i = 0; i < page.n; i++) any_offline |= !page.r[i].delivered;
    int rc = 0;
    for (int kind = 1; kind >= 0 && rc == 0; kind--) {
        srv_frame f;
        const char *name = nim_proto_push_name(kind ? NIM_PUSH_ROAMING_MSGS : NIM_PUSH_OFFLINE_MSGS);
        if (srv_frame_init(&f, name, "msgs") != 0) return -1;
        for (int i = 0; i < page.n && rc == 0; i++) {
            if (page.r[i].delivered != kind) continue;
            if (!srv_frame_fits(&f, page.r[i].len)) rc = srv_frame_queue(c, &f, NULL);
            if (rc == 0) rc = srv_frame_add(&f, page.r[i].json, page.r[i].len);
        }
        int last = kind == 0 || !any_offline;
        if (rc == 0) rc = srv_frame_queue(c, &f, last ? extra : NULL);
        srv_frame_free(&f);
    }
    return rc;
}

/* ROAMING: fills the page from one session after another, each newest
 * first, up to SRV_ROAMING_PER_SESSION; past the last session the AFTER
 * stage starts at the bound. */
static int roaming_fill(srv_conn *c, int *queries) {
    srv_sync *s = &c->sync;
    int rc = NIM_CODE_OK;
    while (rc == NIM_CODE_OK && !page_full() && !page.failed && *queries < SRV_SYNC_QUERIES) {
        if (!s->session[0] || s->sent >= SRV_ROAMING_PER_SESSION) {
            char next[sizeof s->session];
            (*queries)++;
            rc = srv_db_sync_next_session(srv.db, c->account, s->session, next, sizeof next);
            if (rc == NIM_CODE_NOT_FOUND) {
                s->stage = SRV_SYNC_AFTER;
                s->key = s->bound;
                return NIM_CODE_OK;
            }
            if (rc != NIM_CODE_OK) return rc;
            memcpy(s->session, next, sizeof next);
            s->before = s->bound + 1;
            s->sent = 0;
        }
        int want = SRV_ROAMING_PER_SESSION - s->sent, had = page.n;
        if (want > SRV_SYNC_PAGE_ROWS - page.n) want = SRV_SYNC_PAGE_ROWS - page.n;
        (*queries)++;
        rc = srv_db_sync_session(srv.db, c->account, s->session, s->before, want, take_row, NULL);
        int got = page.n - had;
        if (got > 0) s->before = page.r[page.n - 1].id;   /* newest first: the smallest */
        s->sent += got;
        if (got < want && !page_full()) s->sent = SRV_ROAMING_PER_SESSION; /* none left */
    }
    return rc;
}

static cJSON *cursors_obj(int64_t msgs, int64_t state) {
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddNumberToObject(o, "msgs", (double)msgs) ||
              !cJSON_AddNumberToObject(o, "state", (double)state))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Queues one push whose data is {key: items} (items taken). */
static int queue_push(srv_conn *c, nim_push push, const char *key, cJSON *items) {
    cJSON *d = cJSON_CreateObject();
    if (!d || !items || !cJSON_AddItemToObject(d, key, items)) {
        cJSON_Delete(d);
        cJSON_Delete(items);
        return -1;
    }
    cJSON *p = nim_proto_push(nim_proto_push_name(push), d);
    int rc = p ? srv_queue_json(c, p) : -1;
    cJSON_Delete(p);
    return rc;
}

/* The ver of arr's last item (they come in ver order), or dflt when empty. */
static int64_t last_ver(const cJSON *arr, int64_t dflt) {
    const cJSON *it = arr && arr->child ? arr->child->prev : NULL;   /* cJSON: head->prev is the tail */
    return it && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(it, "ver")) ? nim_jnum(it, "ver") : dflt;
}

/* The state after the messages: read pointers and receipts changed since
 * the client's state cursor, a page of each per step (keyset on ver). The
 * step that finds both below a page ends the sync with the sticky-top list
 * and syncDone, in the same step as the last message page, so nothing
 * stored in between is missed. 1: the sync ended; 0: more state follows
 * (the next step reads messages again first); -1: failure. */
static int state_step(srv_conn *c) {
    srv_sync *s = &c->sync;
    int64_t max_msg = 0, max_ver = 0;
    cJSON *ptrs = cJSON_CreateArray(), *rcpts = cJSON_CreateArray(), *tops = NULL;
    int ok = ptrs && rcpts && srv_db_begin_read(srv.db) == NIM_CODE_OK, more = 0;
    if (ok) {
        ok = srv_db_cursors(srv.db, &max_msg, &max_ver) == NIM_CODE_OK &&
             srv_db_read_ptrs_since(srv.db, c->account, s->ptr_key, SRV_SYNC_STATE_ROWS, ptrs) == NIM_CODE_OK &&
             srv_db_receipts_since(srv.db, c->account, s->rcpt_key, SRV_SYNC_STATE_ROWS, rcpts) == NIM_CODE_OK;
        more = ok && (cJSON_GetArraySize(ptrs) >= SRV_SYNC_STATE_ROWS ||
                      cJSON_GetArraySize(rcpts) >= SRV_SYNC_STATE_ROWS);
        /* the full sticky-top list, always, so a client can drop stale entries */
        if (ok && !more) ok = (tops = cJSON_CreateArray()) && srv_db_stick_list(srv.db, c->account, tops) == NIM_CODE_OK;
        srv_db_rollback(srv.db);
    }
    if (!ok) {
        cJSON_Delete(ptrs); cJSON_Delete(rcpts); cJSON_Delete(tops);
        return -1;
    }
    s->ptr_key = last_ver(ptrs, s->ptr_key);
    s->rcpt_key = last_ver(rcpts, s->rcpt_key);
    int rc = srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_READ_POINTERS), "pointers", ptrs);
    if (rc == 0) rc = srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_RECEIPTS), "receipts", rcpts);
    else cJSON_Delete(rcpts);
    if (rc != 0 || more) { cJSON_Delete(tops); return rc ? -1 : 0; }
    /* Never move a cursor backwards (a client may hold a newer one). */
    if (max_msg < s->cur_msgs) max_msg = s->cur_msgs;
    if (max_ver < s->cur_state) max_ver = s->cur_state;
    /* one frame even when empty: the client replaces its list with it */
    rc = tops->child ? srv_queue_batched(c, nim_proto_push_name(NIM_PUSH_STICK_TOP_SESSIONS), "sessions", tops)
                     : queue_push(c, NIM_PUSH_STICK_TOP_SESSIONS, "sessions", tops);
    if (rc == 0) rc = queue_push(c, NIM_PUSH_SYNC_DONE, "cursors", cursors_obj(max_msg, max_ver));
    s->stage = SRV_SYNC_OFF;   /* live pushes from here on */
    return rc ? -1 : 1;
}

void srv_sync_start(srv_conn *c, int64_t cur_msgs, int64_t cur_state, const srv_roaming_resume *resume) {
    srv_sync *s = &c->sync;
    int64_t max_msg = 0, max_ver = 0;
    if (srv_db_cursors(srv.db, &max_msg, &max_ver) != NIM_CODE_OK) {
        srv.io->close_after_flush(c, NIM_CLOSE_SERVER_ERROR, "sync failed");
        return;
    }
    memset(s, 0, sizeof *s);
    /* A cursor beyond anything this server issued (its database was
     * replaced, or the client stored garbage) counts as none: the device
     * syncs as a new one instead of skipping everything for ever. */
    s->cur_msgs = cur_msgs > max_msg ? 0 : cur_msgs;
    s->cur_state = cur_state > max_ver ? 0 : cur_state;
    s->ptr_key = s->rcpt_key = s->cur_state;
    cur_msgs = s->cur_msgs;
    /* A device that synced before gets everything after its cursor; one
     * that never did, the latest of each session up to now and then all
     * that comes after. */
    s->bound = cur_msgs > 0 && cur_msgs < max_msg ? cur_msgs : max_msg;
    /* A first sync cut in its ROAMING stage goes on where it was, with its
     * bound: what came after that bound comes in the AFTER stage anyway. */
    if (cur_msgs == 0 && resume && resume->bound > 0 && resume->bound <= max_msg) {
        s->bound = resume->bound;
        memcpy(s->session, resume->session, sizeof s->session);
        s->before = resume->before;
        s->sent = resume->sent;
    }
    s->stage = SRV_SYNC_OFFLINE;
    srv.io->want_write(c);
}

void srv_sync_step(srv_conn *c) {
    srv_sync *s = &c->sync;
    srv_group_flush();           /* the page sees everything acknowledged */
    if (s->stage == SRV_SYNC_OFF || srv.io->closing(c)) return;
    int queries = 0, rc = NIM_CODE_OK, done = 0;
    srv_sync_stage from = s->stage;
    while (rc == NIM_CODE_OK && !page.failed && page.n == 0 && !done && queries < SRV_SYNC_QUERIES) {
        from = s->stage;
        switch (s->stage) {
        case SRV_SYNC_OFFLINE:
            queries++;
            rc = srv_db_sync_undelivered(srv.db, c->account, s->key, s->bound, SRV_SYNC_PAGE_ROWS,
                                         take_row, NULL);
            if (page.n > 0) s->key = page.r[page.n - 1].id;
            if (rc == NIM_CODE_OK && !page_full()) {      /* the last offline page */
                if (s->cur_msgs > 0) { s->stage = SRV_SYNC_AFTER; s->key = s->bound; }
                else s->stage = SRV_SYNC_ROAMING;
            }
            break;
        case SRV_SYNC_ROAMING:
            rc = roaming_fill(c, &queries);
            break;
        case SRV_SYNC_AFTER:
            queries++;
            rc = srv_db_sync_after(srv.db, c->account, s->key, SRV_SYNC_PAGE_ROWS, take_row, NULL);
            if (page.n > 0) s->key = page.r[page.n - 1].id;
            if (rc == NIM_CODE_OK && !page_full()) done = 1;
            break;
        case SRV_SYNC_OFF:
            return;
        }
    }
    if (page.failed) rc = NIM_CODE_SERVER;
    if (rc == NIM_CODE_OK && page.n > 0) {
        /* The client acknowledges each offline and AFTER page once it has
         * stored it; an AFTER page also moves its cursor. */
        char extra[80 + NIM_PROTO_MAX_SESSION_ID] = "";
        int64_t last = page.r[page.n - 1].id;
        if (from == SRV_SYNC_OFFLINE)
            snprintf(extra, sizeof extra, ",\"ack\":\"%lld\"", (long long)last);
        else if (from == SRV_SYNC_ROAMING)   /* where a cut first sync goes on (ids: no quotes) */
            snprintf(extra, sizeof extra, ",\"resume\":{\"bound\":%lld,\"session\":\"%s\",\"before\":%lld,"
                     "\"sent\":%d}", (long long)s->bound, s->session, (long long)s->before, s->sent);
        else if (from == SRV_SYNC_AFTER)
            snprintf(extra, sizeof extra, ",\"ack\":\"%lld\",\"cursor\":%lld", (long long)last, (long long)last);
        if (page_queue(c, extra) != 0) rc = NIM_CODE_SERVER;
    }
    page_clear();
    if (rc == NIM_CODE_OK && done && state_step(c) < 0) rc = NIM_CODE_SERVER;
    if (rc != NIM_CODE_OK) {
        s->stage = SRV_SYNC_OFF;
        srv.io->close_after_flush(c, NIM_CLOSE_SERVER_ERROR, "sync failed");
        return;
    }
    /* The next page once the peer has taken this one (or at once, when
     * sessions with nothing to send used the budget). */
    if (s->stage != SRV_SYNC_OFF) srv.io->want_write(c);
}
