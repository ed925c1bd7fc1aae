/* The kv table for the network layer (engine_net.h): sync cursors, the
 * device id, the read-pointer outbox. Engine thread. */
#include "core/engine_private.h"

int nim_engine_kv_get(nim_engine *e, const char *key, int64_t *num, char **text) {
    if (num) *num = 0;
    if (text) *text = NULL;
    if (e->broken) return -1;
    return nim_store_kv_get(e->store, key, num, text);
}

int nim_engine_kv_set(nim_engine *e, const char *key, int64_t num, const char *text) {
    if (e->broken || eng_begin(e) < 0) return -1;
    if (nim_store_kv_set(e->store, key, num, text) < 0) { eng_abandon(e); return -1; }
    return eng_commit(e);
}

int nim_engine_kv_set_tx(nim_engine *e, const char *key, int64_t num) {
    return nim_store_kv_set(e->store, key, num, NULL);
}

int nim_engine_kv_scan(nim_engine *e, const char *prefix,
                       int (*row)(void *ud, const char *key, int64_t num), void *ud) {
    if (e->broken) return -1;
    return nim_store_kv_scan(e->store, prefix, row, ud);
}

int nim_engine_kv_del_upto(nim_engine *e, const char *prefix, const nim_kv_item *items, size_t n) {
    if (e->broken || eng_begin(e) < 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (nim_store_kv_del_upto(e->store, prefix, items[i].name, items[i].num) < 0) {
            eng_abandon(e);
            return -1;
        }
    return eng_commit(e);
}
