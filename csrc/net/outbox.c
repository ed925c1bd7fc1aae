/* The read-pointer outbox (see client_private.h for the file map).
 *
 * Read pointers this device moved go to the server through an outbox in
 * the database: kv "ack:<sid>" = the pointer, written in the transaction
 * that moved it and deleted only once the server has taken it (or refused
 * it for good). A pointer moved offline, or in flight when the link or the
 * process dies, is sent again after the next login: my other devices never
 * keep counting as unread what I read here. */
#include "net/client_private.h"
#include <stdio.h>
#include <string.h>

#define ACK_PREFIX "ack:"

/* The engine's acked hook: inside the transaction that moved the pointer. */
int net_acked_hook(nim_engine *e, void *ud, const char *sid, int64_t ack) {
    nim_net *n = ud;
    if (!n->sync_unread || n->local) return 0;
    /* only what the server accepts: one refused item refuses the batch */
    const char *target;
    if (strlen(sid) > NIM_PROTO_MAX_SESSION_ID || nim_proto_parse_session_id(sid, &target) == NIM_SCENE_NONE)
        return 0;
    char key[NIM_PROTO_MAX_SESSION_ID + sizeof ACK_PREFIX];
    snprintf(key, sizeof key, ACK_PREFIX "%s", sid);
    if (nim_engine_kv_set_tx(e, key, ack) < 0) return -1;
    n->acks_dirty = 1;
    return 0;
}

typedef struct { cJSON *reqs; cJSON *cur; } ack_scan;

/* One outbox row into the current request's pointers (a new request every
 * NIM_PROTO_MAX_BATCH). */
static int ack_row(void *ud, const char *key, int64_t ack) {
    ack_scan *a = ud;
    if (!a->cur || cJSON_GetArraySize(a->cur) >= NIM_PROTO_MAX_BATCH) {
        a->cur = cJSON_CreateArray();
        if (!a->cur) return -1;
        cJSON_AddItemToArray(a->reqs, a->cur);
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "sessionId", key + strlen(ACK_PREFIX)) ||
        !cJSON_AddNumberToObject(o, "ack", (double)ack)) {
        cJSON_Delete(o);
        return -1;
    }
    cJSON_AddItemToArray(a->cur, o);
    return 0;
}

/* Sends the outbox's read pointers (at most NIM_PROTO_MAX_BATCH a
 * request). Each request keeps what it sent, to clear it when answered. */
void net_flush_acks(nim_net *n) {
    if (n->state != CONN_READY || !n->acks_dirty) return;
    ack_scan a = { cJSON_CreateArray(), NULL };
    if (!a.reqs || nim_engine_kv_scan(n->e, ACK_PREFIX, ack_row, &a) < 0) {
        cJSON_Delete(a.reqs);                    /* still dirty: again soon */
        net_end_pass_in(n, RETRY_PASS_MS);
        return;
    }
    n->acks_dirty = 0;
    cJSON *ptrs;
    while ((ptrs = a.reqs->child)) {
        cJSON_DetachItemViaPointer(a.reqs, ptrs);
        cJSON *d = cJSON_CreateObject(), *sent = cJSON_Duplicate(ptrs, 1);
        /* never sent without its pointers; ptrs is d's only once added */
        if (!d || !sent || !cJSON_AddItemToObject(d, "pointers", ptrs)) {
            cJSON_Delete(d); cJSON_Delete(sent); cJSON_Delete(ptrs);
            n->acks_dirty = 1;                   /* the rest soon */
            continue;
        }
        if (!net_request(n, RQ_ACKS, 0, 0, NIM_WIRE_UPDATE_READ, d, sent)) n->acks_dirty = 1;
    }
    cJSON_Delete(a.reqs);
    if (n->acks_dirty) net_end_pass_in(n, RETRY_PASS_MS);
}

/* The server answered an updateReadPointers (code), or it never will (0):
 * taken (200) or refused for good (4xx: resending would not help), the
 * sent pointers leave the outbox; a later, higher pointer of the same
 * session stays. */
void net_acks_answered(nim_net *n, const pending *p, int code) {
    if (code != NIM_CODE_OK && (code < 400 || code >= 500)) { n->acks_dirty = 1; return; }
    int count = cJSON_GetArraySize(p->msg), k = 0;
    if (count <= 0) return;
    nim_kv_item *items = nim_calloc((size_t)count, sizeof *items);
    const cJSON *it;
    cJSON_ArrayForEach(it, p->msg) {
        if (!items || !nim_jstr(it, "sessionId")) break;
        items[k].name = nim_jstr(it, "sessionId");
        items[k++].num = nim_jnum(it, "ack");
    }
    /* what could not be cleared is sent again: the server keeps the max */
    if (k < count || nim_engine_kv_del_upto(n->e, ACK_PREFIX, items, (size_t)k) < 0) n->acks_dirty = 1;
    nim_free(items);
}
