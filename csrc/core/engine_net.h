/* The engine's side for a network layer (csrc/net is the one there
 * is): the hooks it plugs into the engine thread, and what it may call
 * from them. The owner's API is core/engine.h.
 *
 * The engine thread calls hooks.start once (after the store is open and,
 * unless NIM_ENGINE_DEFER_SYNC, onsessions/onsyncdone are queued), then
 * loops: run queued commands, then hooks.wait(ud, timeout) (e.g.
 * lws_service) until something is queued; nim_engine_submit calls
 * hooks.wake (e.g. lws_cancel_service). Commands >= NIM_CMD_EXT go to
 * hooks.command. Everything below runs on the engine thread. */
#ifndef NIM_ENGINE_NET_H
#define NIM_ENGINE_NET_H
#include "core/engine.h"

struct nim_engine_hooks {
    void *ud;
    /* engine thread, once before the command loop; nonzero aborts to a
     * broken engine that answers every request with DB_Error */
    int  (*start)(nim_engine *e, void *ud);
    /* engine thread: block up to timeout_ms (-1: no limit) or until wake */
    void (*wait)(nim_engine *e, void *ud, int timeout_ms);
    /* any thread: make a current or the next wait return soon */
    void (*wake)(nim_engine *e, void *ud);
    /* engine thread: a command >= NIM_CMD_EXT; must answer with
     * nim_engine_reply (now or later) and free nothing (the engine frees c) */
    void (*command)(nim_engine *e, void *ud, nim_cmd *c);
    /* engine thread, once after the loop, before the store closes */
    void (*stop)(nim_engine *e, void *ud);
    /* engine thread, inside the transaction: this device moved the read
     * pointer of sid to ack (unread reset, or the current session followed
     * a new message); may write in that transaction (nim_engine_kv_set_tx);
     * nonzero fails the whole change (rolled back, DB_Error); NULL: not
     * wanted */
    int  (*acked)(nim_engine *e, void *ud, const char *sid, int64_t ack);
};

/* Queues an event (takes ev) and signals the wakeup fd. */
void nim_engine_emit(nim_engine *e, nim_event *ev);
/* Queues the reply to command req (takes data, copies message). */
void nim_engine_reply(nim_engine *e, uint64_t req, const char *code, const char *message,
                      cJSON *data);
/* The session with id, as a new cJSON object, or NULL if unknown/removed. */
cJSON *nim_engine_session_json(nim_engine *e, const char *id);
/* Queues onsessions (every live session) then onsyncdone; when memory
 * runs out, as soon as it allows (the engine retries). */
void nim_engine_emit_sync(nim_engine *e);
const char *nim_engine_account(nim_engine *e);

/* A sync cursor of the network layer: kv key, raised to value (never
 * lowered) in the same transaction as the data it covers; or, with text, a
 * position that is set to that text as it is. */
typedef struct nim_engine_cursor {
    const char *key;
    int64_t     value;
    const char *text;
} nim_engine_cursor;

/* What one nim_engine_ingest stores, in one transaction. Every field is
 * optional (zero: not wanted). */
typedef struct nim_ingest {
    cJSON *msgs;                       /* array of messages (not taken) */
    const nim_engine_cursor *cursor;   /* raised in the same transaction */
    int *skipped;                      /* out: invalid messages (missing fields) */
    int history;                       /* fetched history: stored for getLocalMsgs
                                          only; no session, unread or pointer
                                          changes, never counted as unread */
    unsigned char *fresh;              /* out, one byte per message: 1 when
                                          stored now, 0 for a duplicate or an
                                          invalid one */
    /* called once the transaction is committed and before its session
     * updates are queued (not at all when it fails): events it queues
     * reach the app before those updates */
    void (*after_commit)(void *ud);
    void *ud;
} nim_ingest;

/* Stores in->msgs as docs/api.md's "received" path: fills flow, target,
 * sessionId, status, type; stores each once by idServer (else idClient);
 * updates sessions and unread; queues update events after commit; raises
 * in->cursor. Returns 0, or -1 when the transaction failed (nothing
 * stored; the state is reloaded). */
int nim_engine_ingest(nim_engine *e, const nim_ingest *in);
/* Server read pointers [{sessionId, ack}]: each local pointer moves forward
 * only, unread is recounted, updates are queued; cur as above. A pointer of
 * an unknown session is kept in a removed (invisible) row for later. */
int nim_engine_apply_acks(nim_engine *e, const cJSON *ptrs, const nim_engine_cursor *cur);
/* Receipts [{sessionId, time}]: msgReceiptTime moves forward only. */
int nim_engine_apply_receipts(nim_engine *e, const cJSON *rcpts, const nim_engine_cursor *cur);
/* Sticky top [{sessionId, topCustom?, isTop? (default true), updateTime?}];
 * replace: every other session loses isTop (the list is complete). A
 * session made top comes back (or is created) as a live session. */
int nim_engine_apply_tops(nim_engine *e, const cJSON *items, int replace);

/* Starts a sync: session updates are not queued but remembered, until
 * nim_engine_sync_end. */
void nim_engine_sync_begin(nim_engine *e);
/* Ends a sync: queues onsessions (every live session when all, else the
 * live sessions changed since nim_engine_sync_begin; nothing when empty),
 * then onsyncdone. A list that memory does not allow is sent later with
 * every live session, and onsyncdone after it. */
void nim_engine_sync_end(nim_engine *e, int all);
/* A sync that cannot finish (the connection was lost): updates are queued
 * again, and the sessions changed so far stay remembered for the next
 * nim_engine_sync_end. Queues nothing. */
void nim_engine_sync_abort(nim_engine *e);

/* The kv table (nim_store_kv_*): small persistent values such as sync
 * cursors and the device id. get: a value; -1 on a store failure. */
int nim_engine_kv_get(nim_engine *e, const char *key, int64_t *num, char **text);
/* Sets a kv value in its own transaction. */
int nim_engine_kv_set(nim_engine *e, const char *key, int64_t num, const char *text);
/* Inside the open transaction (from the acked hook): sets a kv number,
 * committed or rolled back with that transaction. */
int nim_engine_kv_set_tx(nim_engine *e, const char *key, int64_t num);
/* Each kv key with prefix and its number, in key order (row returning
 * nonzero stops it); -1 on a store failure. */
int nim_engine_kv_scan(nim_engine *e, const char *prefix,
                       int (*row)(void *ud, const char *key, int64_t num), void *ud);
/* Deletes each key prefix + items[i].name whose number is <= items[i].num,
 * in one transaction. */
typedef struct nim_kv_item { const char *name; int64_t num; } nim_kv_item;
int nim_engine_kv_del_upto(nim_engine *e, const char *prefix, const nim_kv_item *items, size_t n);

#endif
