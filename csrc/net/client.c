/* The network client's life cycle and its events (see client.h; the file
 * map is in client_private.h). */
#include "net/client_private.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

int64_t net_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t net_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void random_hex(char *out, size_t nbytes) {
    unsigned char b[16] = { 0 };
    if (nbytes > sizeof b) nbytes = sizeof b;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, b, nbytes) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)nbytes) {          /* no urandom: time and address */
        uint64_t x = (uint64_t)net_wall_ms() ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < nbytes; i++) { x = x * 6364136223846793005ULL + 1; b[i] = (unsigned char)(x >> 56); }
    }
    for (size_t i = 0; i < nbytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* ---------------------------------------------------------------- events */

static void queue_callback(nim_net *n, int type, const char *name, cJSON *arg) {
    if (n->stopping) { cJSON_Delete(arg); return; }
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) { cJSON_Delete(arg); return; }
    ev->type = type;
    ev->callback = name;
    ev->data = arg;
    nim_engine_emit(n->e, ev);
}

void net_callback(nim_net *n, const char *name, cJSON *arg) {
    queue_callback(n, NIM_EV_CALLBACK, name, arg);
}

void net_callback_msg(nim_net *n, cJSON *msg) {
    queue_callback(n, NIM_EV_MSG, "onmsg", msg);
}

/* onerror({code = code or numcode, message = msg, event = what}). */
void net_report_error(nim_net *n, const char *code, int numcode, const char *msg,
                      const char *what) {
    if (n->stopping) return;
    nim_event *ev = nim_calloc(1, sizeof *ev);
    if (!ev) return;
    ev->type = NIM_EV_ERROR;
    ev->code = code;
    ev->numcode = numcode;
    ev->what = what;
    ev->message = nim_strdup(msg);
    nim_engine_emit(n->e, ev);
}

/* ----------------------------------------------------------------- hooks */

/* The device id: configured, else the one stored, else a new one stored. */
static int load_device(nim_net *n, nim_engine *e) {
    if (n->device) return 0;
    char *dev = NULL;
    nim_engine_kv_get(e, KEY_DEVICE, NULL, &dev);
    if (!dev || !nim_proto_valid_device(dev)) {
        nim_free(dev);
        char hex[33];
        random_hex(hex, 8);
        dev = nim_malloc(40);
        if (dev) {
            snprintf(dev, 40, "lua-%s", hex);
            nim_engine_kv_set(e, KEY_DEVICE, 0, dev);
        }
    }
    if (!dev) return -1;
    n->device = dev;
    return 0;
}

static int hook_start(nim_engine *e, void *ud) {
    nim_net *n = ud;
    n->e = e;
    if (n->local) return 0;
    nim_engine_kv_get(e, KEY_MSGS, &n->cur_msgs, NULL);
    nim_engine_kv_get(e, KEY_STATE, &n->cur_state, NULL);
    if (load_device(n, e) < 0) return -1;
    char hex[17];
    random_hex(hex, 6);
    snprintf(n->idc_prefix, sizeof n->idc_prefix, "%s", hex);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = net_protocols;
    info.user = n;
    info.gid = -1;
    info.uid = -1;
    /* wss verifies the chain and the host name (lws's default; there is no
     * way to turn that off) against the system CAs or tlsCAFile's only */
    info.options = n->any_tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    if (!n->any_tls || n->ca_file) info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    info.client_ssl_ca_filepath = n->ca_file;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        net_report_error(n, "Net_Error", 0, "cannot create the network context", "connect");
        n->user_down = 1;
        return 0;   /* local storage still works */
    }
    pthread_mutex_lock(&n->ctx_lock);
    n->ctx = ctx;
    pthread_mutex_unlock(&n->ctx_lock);
    net_connect(n);
    return 0;
}

/* One lws pass, at most timeout_ms long (-1: until something happens). */
static void hook_wait(nim_engine *e, void *ud, int timeout_ms) {
    nim_net *n = ud;
    net_flush_acks(n);
    if (n->ctx) {
        /* a sul already due when the pass starts would run before poll()
         * and not bound it: 0 waits 1 ms */
        if (timeout_ms >= 0)
            net_schedule_ms(n, &n->sul_wait, net_pass_over, timeout_ms > 0 ? timeout_ms : 1);
        lws_service(n->ctx, 0);
        lws_sul_cancel(&n->sul_wait);
    }
    net_flush_live(n);                  /* the pass's live messages, one transaction */
}

static void hook_wake(nim_engine *e, void *ud) {
    nim_net *n = ud;
    pthread_mutex_lock(&n->ctx_lock);
    if (n->ctx) lws_cancel_service(n->ctx);
    pthread_mutex_unlock(&n->ctx_lock);
}

static void hook_command(nim_engine *e, void *ud, nim_cmd *c) {
    net_command(ud, c);
}

static void hook_stop(nim_engine *e, void *ud) {
    nim_net *n = ud;
    net_flush_live(n);
    net_free_requests(n);
    n->stopping = 1;
    pthread_mutex_lock(&n->ctx_lock);
    struct lws_context *ctx = n->ctx;
    n->ctx = NULL;
    pthread_mutex_unlock(&n->ctx_lock);
    n->user_down = 1;
    if (ctx) {
        net_conn_stop(n);
        lws_context_destroy(ctx);   /* closes the connection (callbacks see user_down) */
    }
    n->wsi = NULL;
    net_out_free(n);
}

void nim_net_hooks(nim_net *n, nim_engine_hooks *h) {
    memset(h, 0, sizeof *h);
    h->ud = n;
    h->start = hook_start;
    h->command = hook_command;
    h->stop = hook_stop;
    h->acked = net_acked_hook;
    if (!n->local) {
        h->wait = hook_wait;
        h->wake = hook_wake;
    }
}

/* ------------------------------------------------------------ life cycle */

static int parse_url(net_server *s, const char *url, const char **err) {
    s->tls = strncmp(url, "wss://", 6) == 0;
    if (!s->tls && strncmp(url, "ws://", 5) != 0) { *err = "server: ws://host:port or wss://host:port expected"; return -1; }
    const char *h = url + (s->tls ? 6 : 5), *end = h + strcspn(h, ":/");
    if (end == h) { *err = "server: no host"; return -1; }
    s->url = nim_strdup(url);
    s->host = nim_strndup(h, (size_t)(end - h));
    s->port = s->tls ? 443 : 80;
    if (*end == ':') {
        char *e2;
        long p = strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || p <= 0 || p > 65535) { *err = "server: bad port"; return -1; }
        s->port = (int)p;
        end = e2;
    }
    if (*end && *end != '/') { *err = "server: bad URL"; return -1; }
    s->path = nim_strdup(*end ? end : "/");
    if (!s->url || !s->host || !s->path) { *err = "out of memory"; return -1; }
    return 0;
}

void net_use_server(nim_net *n, int i) {
    const net_server *s = &n->servers[i];
    n->cur = i;
    n->url = s->url;
    n->host = s->host;
    n->path = s->path;
    n->port = s->port;
    n->tls = s->tls;
}

/* The reconnect backoff: min, doubling, up to max; lws adds 0..50 % to
 * 80 % of each step, which is the step +-20 %. */
static void set_backoff(nim_net *n, int min_ms, int max_ms) {
    uint16_t k = 0;
    for (int64_t d = min_ms;; d *= 2) {
        if (d > max_ms) d = max_ms;
        n->retry_steps[k++] = (uint32_t)(d * 8 / 10);
        if (d >= max_ms || k == MAX_RETRY_STEPS) break;
    }
    n->retry.retry_ms_table = n->retry_steps;
    n->retry.retry_ms_table_count = k;
    n->retry.conceal_count = LWS_RETRY_CONCEAL_ALWAYS;
    n->retry.jitter_percent = 50;
}

nim_net *nim_net_new(const nim_net_config *cfg, const char **err) {
    static int log_set;
    if (!log_set) {                 /* process-wide: lws notices would go to stderr */
        log_set = 1;
        lws_set_log_level(0, NULL);   /* and what fails reaches the app (onerror) */
    }
    const char *dummy;
    if (!err) err = &dummy;
    *err = "out of memory";
    nim_net *n = nim_calloc(1, sizeof *n);
    if (!n) return NULL;
    pthread_mutex_init(&n->ctx_lock, NULL);
    n->local = cfg->nservers <= 0;
    if (cfg->nservers > NIM_NET_MAX_SERVERS) {
        *err = "server: at most 16 servers";
        nim_net_free(n);
        return NULL;
    }
    n->need_reconnect = cfg->need_reconnect;
    n->sync_unread = cfg->sync_unread;
    n->sync_top = cfg->sync_top;
    n->want = cfg->want;
    n->req_timeout = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 10000;
    n->heartbeat = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : 30000;
    n->sync_timeout = cfg->sync_timeout_ms > 0 ? cfg->sync_timeout_ms : 120000;
    int rc_min = cfg->reconnect_min_ms > 0 ? cfg->reconnect_min_ms : 250;
    int rc_max = cfg->reconnect_max_ms > 0 ? cfg->reconnect_max_ms : 8000;
    set_backoff(n, rc_min, rc_max < rc_min ? rc_min : rc_max);
    if (!n->local) {
        n->account = nim_strdup(cfg->account);
        n->token = nim_strdup(cfg->token ? cfg->token : "");
        if (cfg->device_id) n->device = nim_strdup(cfg->device_id);
        if (cfg->tls_ca_file) n->ca_file = nim_strdup(cfg->tls_ca_file);
        int bad = !n->account || !n->token || (cfg->device_id && !n->device) || (cfg->tls_ca_file && !n->ca_file);
        for (int i = 0; i < cfg->nservers && !bad; i++) {
            bad = parse_url(&n->servers[i], cfg->servers[i], err) < 0;
            n->nservers = i + 1;
            n->any_tls |= n->servers[i].tls;
        }
        if (bad) {
            nim_net_free(n);
            return NULL;
        }
        net_use_server(n, 0);
    }
    return n;
}

void nim_net_free(nim_net *n) {
    if (!n) return;
    cJSON_Delete(n->live);
    cJSON_Delete(n->sync_tops);
    net_free_requests(n);
    net_out_free(n);
    nim_free(n->rx);
    for (int i = 0; i < n->nservers; i++) {
        nim_free(n->servers[i].url);
        nim_free(n->servers[i].host);
        nim_free(n->servers[i].path);
    }
    nim_free(n->account);
    nim_free(n->token);
    nim_free(n->device);
    nim_free(n->ca_file);
    pthread_mutex_destroy(&n->ctx_lock);
    nim_free(n);
}
