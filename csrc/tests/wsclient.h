/* A small raw WebSocket client for tests (RFC 6455, client side, no TLS, no
 * extensions), written on plain blocking sockets with poll() deadlines so a
 * test can send exactly the bytes it wants: well-formed frames, and hostile
 * ones (binary, oversized, fragmented, lying lengths) that a real client
 * library would refuse to produce. Header-only; tests only. */
#ifndef NIM_TESTS_WSCLIENT_H
#define NIM_TESTS_WSCLIENT_H
#include "tests/testhelp.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int            fd;
    unsigned char *in;          /* bytes read, not yet consumed */
    size_t         in_len, in_cap;
    int            closed;      /* a close frame arrived, or the socket ended */
    int            close_code;  /* from the close frame; 1006 if none */
    char           close_reason[128];
    /* A message being reassembled from fragments. */
    unsigned char *msg;
    size_t         msg_len;
    int            msg_opcode;
} ws_t;

static inline int ws_write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more bytes into w->in, waiting until deadline. 1 read, 0 timeout,
 * -1 EOF or error. */
static inline int ws_fill(ws_t *w, int64_t deadline) {
    int64_t left = deadline - test_now_ms();
    if (left < 0) left = 0;
    struct pollfd p = { .fd = w->fd, .events = POLLIN };
    int r = poll(&p, 1, (int)left);
    if (r < 0 && errno == EINTR) return 0;
    if (r <= 0) return r == 0 ? 0 : -1;
    if (w->in_cap - w->in_len < 65536) {
        size_t cap = w->in_cap ? w->in_cap * 2 : 131072;
        unsigned char *n = realloc(w->in, cap);
        if (!n) return -1;
        w->in = n;
        w->in_cap = cap;
    }
    ssize_t n = recv(w->fd, w->in + w->in_len, w->in_cap - w->in_len, 0);
    if (n <= 0) return -1;
    w->in_len += (size_t)n;
    return 1;
}

static inline void ws_consume(ws_t *w, size_t n) {
    memmove(w->in, w->in + n, w->in_len - n);
    w->in_len -= n;
}

/* The loopback address the next ws_connect binds to (0: any, i.e.
 * 127.0.0.1): 2 for 127.0.0.2, a second client address. */
static int g_ws_source = 0;

/* Connects to 127.0.0.1:port and upgrades; protocol may be NULL (no
 * Sec-WebSocket-Protocol header). 0 on success. */
static inline int ws_connect(ws_t *w, int port, const char *protocol) {
    memset(w, 0, sizeof *w);
    w->close_code = 1006;
    w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w->fd < 0) return -1;
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g_ws_source) {
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)g_ws_source);
        if (bind(w->fd, (struct sockaddr *)&src, sizeof src) != 0) return -1;
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(w->fd, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     port, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                     protocol ? "\r\n" : "");
    if (ws_write_all(w->fd, req, (size_t)n) != 0) return -1;
    int64_t deadline = test_now_ms() + 5000;
    for (;;) {
        if (w->in_len >= 4) {
            for (size_t i = 0; i + 3 < w->in_len; i++) {
                if (memcmp(w->in + i, "\r\n\r\n", 4) == 0) {
                    int ok = w->in_len > 12 && memcmp(w->in, "HTTP/1.1 101", 12) == 0;
                    ws_consume(w, i + 4);
                    return ok ? 0 : -1;
                }
            }
        }
        if (ws_fill(w, deadline) <= 0) return -1;
    }
}

/* Sends one frame, masked as a client must. A `declared` length other than
 * (size_t)-1 is written in the header instead of len (a lying length). */
static inline int ws_send_frame_ex(ws_t *w, int opcode, int fin, const void *data, size_t len,
                            uint64_t declared) {
    uint64_t hdr_len = declared == (uint64_t)-1 ? len : declared;
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (hdr_len < 126) h[hl++] = (unsigned char)(0x80 | hdr_len);
    else if (hdr_len < 65536) { h[hl++] = 0x80 | 126; h[hl++] = (unsigned char)(hdr_len >> 8); h[hl++] = (unsigned char)hdr_len; }
    else { h[hl++] = 0x80 | 127; for (int i = 7; i >= 0; i--) h[hl++] = (unsigned char)(hdr_len >> (8 * i)); }
    unsigned char mask[4] = { (unsigned char)rand(), (unsigned char)rand(), (unsigned char)rand(), (unsigned char)rand() };
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *buf = malloc(hl + len + 1);
    if (!buf) return -1;
    memcpy(buf, h, hl);
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++) buf[hl + i] = d[i] ^ mask[i & 3];
    int rc = ws_write_all(w->fd, buf, hl + len);
    free(buf);
    return rc;
}

static inline int ws_send_frame(ws_t *w, int opcode, int fin, const void *data, size_t len) {
    return ws_send_frame_ex(w, opcode, fin, data, len, (uint64_t)-1);
}

static inline int ws_send_text(ws_t *w, const char *s) {
    return ws_send_frame(w, 1, 1, s, strlen(s));
}

/* Receives the next complete text message (NUL-terminated, caller frees).
 * Answers pings; a close frame sets closed/close_code/close_reason. NULL on
 * timeout or close. */
static char *ws_recv(ws_t *w, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    while (!w->closed) {
        if (w->in_len >= 2) {
            unsigned char b0 = w->in[0], b1 = w->in[1];
            size_t hl = 2;
            uint64_t len = b1 & 0x7f;
            if (len == 126) {
                if (w->in_len < 4) goto more;
                len = (uint64_t)w->in[2] << 8 | w->in[3];
                hl = 4;
            } else if (len == 127) {
                if (w->in_len < 10) goto more;
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | w->in[2 + i];
                hl = 10;
            }
            if (b1 & 0x80) hl += 4; /* servers must not mask; tolerate it */
            if (w->in_len < hl + len) goto more;
            int op = b0 & 0x0f, fin = (b0 & 0x80) != 0;
            unsigned char *p = w->in + hl;
            if (op == 8) {
                w->closed = 1;
                w->close_code = len >= 2 ? (p[0] << 8 | p[1]) : 1005;
                size_t rl = len > 2 ? (size_t)len - 2 : 0;
                if (rl >= sizeof w->close_reason) rl = sizeof w->close_reason - 1;
                memcpy(w->close_reason, p + 2, rl);
                w->close_reason[rl] = 0;
                ws_consume(w, hl + (size_t)len);
                /* Echo the close, as the protocol asks. */
                unsigned char cc[2] = { (unsigned char)(w->close_code >> 8), (unsigned char)w->close_code };
                ws_send_frame(w, 8, 1, cc, 2);
                return NULL;
            }
            if (op == 9) { ws_send_frame(w, 10, 1, p, (size_t)len); ws_consume(w, hl + (size_t)len); continue; }
            if (op == 10) { ws_consume(w, hl + (size_t)len); continue; }
            if (op == 1 || op == 2) { w->msg_len = 0; w->msg_opcode = op; }
            unsigned char *m = realloc(w->msg, w->msg_len + (size_t)len + 1);
            if (!m) return NULL;
            w->msg = m;
            memcpy(w->msg + w->msg_len, p, (size_t)len);
            w->msg_len += (size_t)len;
            ws_consume(w, hl + (size_t)len);
            if (!fin) continue;
            char *out = malloc(w->msg_len + 1);
            if (!out) return NULL;
            memcpy(out, w->msg, w->msg_len);
            out[w->msg_len] = 0;
            w->msg_len = 0;
            return out;
        }
    more:;
        int r = ws_fill(w, deadline);
        if (r == 0) return NULL;
        if (r < 0) { w->closed = 1; return NULL; }
    }
    return NULL;
}

/* Waits until the server closes the connection (close frame or EOF); 1 if it
 * did before the deadline. */
static inline int ws_wait_closed(ws_t *w, int timeout_ms) {
    int64_t deadline = test_now_ms() + timeout_ms;
    while (!w->closed && test_now_ms() < deadline) {
        char *m = ws_recv(w, (int)(deadline - test_now_ms()));
        free(m);
    }
    return w->closed;
}

static inline void ws_free(ws_t *w) {
    if (w->fd >= 0) close(w->fd);
    free(w->in);
    free(w->msg);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

#endif
