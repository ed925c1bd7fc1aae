/* nim-server's frames out: replies, pushes and batched push frames, built
 * here and handed to the transport as bytes (srv.io->queue, transport.h),
 * so the request side never reaches into the WebSocket layer. The request
 * thread only. */
#include "server/server.h"
#include "core/alloc.h"
#include <string.h>
#include <stdio.h>

int srv_queue_json(srv_conn *c, const cJSON *root) {
    size_t len;
    char *s = nim_proto_print(root, 0, &len);
    if (!s) return -1;
    int rc = srv.io->queue(c, s, len);
    nim_free(s);
    return rc;
}

void srv_reply(srv_conn *c, int64_t id, const char *cmd, int code, const char *error, cJSON *data) {
    if (code == NIM_CODE_SERVER && !error) error = srv_db_storage_error(srv.db);
    cJSON *r = nim_proto_response(id, cmd, code, error, data);
    if (!r) {
        /* Out of memory building the reply: the client still gets a code. */
        char buf[128];
        int n = snprintf(buf, sizeof buf, "{\"id\":%lld,\"cmd\":\"\",\"code\":500,\"error\":\"server error\"}",
                         (long long)(id < 0 ? 0 : id));
        srv.io->queue(c, buf, (size_t)n);
        return;
    }
    srv_queue_json(c, r);
    cJSON_Delete(r);
}

void srv_push_account(const char *account, const srv_conn *except, const char *name, cJSON *data) {
    cJSON *p = nim_proto_push(name, data);
    if (!p) return;
    size_t len;
    char *s = nim_proto_print(p, 0, &len);
    cJSON_Delete(p);
    if (!s) return;
    for (srv_conn *c = srv.conns; c; c = c->next)
        if (c != except && srv_conn_live(c) && strcmp(c->account, account) == 0)
            srv.io->queue(c, s, len);
    nim_free(s);
}

enum { FRAME_TAIL = 3 }; /* "]}}" */

int srv_frame_init(srv_frame *f, const char *push, const char *key) {
    memset(f, 0, sizeof *f);
    char head[96];
    int n = snprintf(head, sizeof head, "{\"push\":\"%s\",\"data\":{\"%s\":[", push, key);
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    f->cap = SRV_BATCH_BYTES + 1024;
    if (!(f->buf = nim_malloc(f->cap))) return -1;
    memcpy(f->buf, head, (size_t)n);
    f->len = f->head_len = (size_t)n;
    return 0;
}

int srv_frame_fits(const srv_frame *f, size_t n) {
    return f->items == 0 || f->len + 1 + n + FRAME_TAIL <= SRV_BATCH_BYTES;
}

int srv_frame_add(srv_frame *f, const char *item, size_t n) {
    size_t need = f->len + 1 + n + FRAME_TAIL + 1;
    if (need > f->cap) {
        char *bigger = nim_realloc(f->buf, need);
        if (!bigger) return -1;
        f->buf = bigger;
        f->cap = need;
    }
    if (f->items > 0) f->buf[f->len++] = ',';
    memcpy(f->buf + f->len, item, n);
    f->len += n;
    f->items++;
    return 0;
}

int srv_frame_queue(srv_conn *c, srv_frame *f, const char *extra) {
    if (f->items == 0) return 0;
    size_t x = extra ? strlen(extra) : 0;
    if (f->len + 1 + x + 2 > f->cap) {
        char *bigger = nim_realloc(f->buf, f->len + 1 + x + 2);
        if (!bigger) return -1;
        f->buf = bigger;
        f->cap = f->len + 1 + x + 2;
    }
    size_t len = f->len;
    f->buf[len++] = ']';
    if (x) memcpy(f->buf + len, extra, x);
    len += x;
    memcpy(f->buf + len, "}}", 2);
    len += 2;
    int rc = srv.io->queue(c, f->buf, len);
    f->len = f->head_len;
    f->items = 0;
    return rc;
}

void srv_frame_free(srv_frame *f) {
    nim_free(f->buf);
    f->buf = NULL;
}

int srv_queue_batched(srv_conn *c, const char *name, const char *key, cJSON *items) {
    srv_frame f;
    int rc = srv_frame_init(&f, name, key);
    for (cJSON *it = items ? items->child : NULL; it && rc == 0; it = it->next) {
        size_t n = 0;
        char *s = nim_proto_print(it, 0, &n);
        if (!s) { rc = -1; break; }
        if (!srv_frame_fits(&f, n)) rc = srv_frame_queue(c, &f, NULL);
        if (rc == 0) rc = srv_frame_add(&f, s, n);
        nim_free(s);
    }
    if (rc == 0) rc = srv_frame_queue(c, &f, NULL);
    srv_frame_free(&f);
    cJSON_Delete(items);
    return rc;
}
