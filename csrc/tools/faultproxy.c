/* faultproxy: a byte-transparent fault-injection TCP proxy for soak tests.
 *
 *   faultproxy --listen HOST:PORT --to HOST:PORT [--seed N] [--faults P] [--quiet]
 *              [--max-bytes N] [--min-ms N] [--max-ms N]
 *
 * Every accepted connection gets one upstream connection and, with
 * probability P (default 0.5), one fault plan drawn from a seeded PRNG:
 * delay, stall, cut, halfclose or blackhole, on the direction up (client to
 * upstream), down or both, with a byte threshold in 0..max-bytes (default
 * 256 KiB) and a duration in min-ms..max-ms (default 50..3000). The bytes
 * are never parsed: they are forwarded, held, dropped or cut.
 *
 * stdout: one line "listening PORT" once accepting. stderr: "faultproxy: seed
 * N" first; then, unless --quiet, one "plan" line per connection and one
 * "fire" line when its fault fires. SIGUSR1 cuts every connection, SIGUSR2
 * toggles refusing new ones, SIGTERM/SIGINT close everything and exit 0.
 * One thread, poll(2), signals through a self-pipe. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS    1024
#define READ_MAX     (64 * 1024)     /* one recv */
#define QUEUE_CAP    (1024 * 1024)   /* queued per direction, chunk overhead included */
#define CHUNK_COST   64              /* what one chunk's header and malloc cost, counted */
#define ACCEPT_BURST 64              /* accepts per loop turn */
#define ACCEPT_PAUSE 100             /* ms without accepting after EMFILE and the like */

enum plan { P_PASS, P_DELAY, P_STALL, P_CUT, P_HALFCLOSE, P_BLACKHOLE, P_COUNT };
static const char *const PLAN_NAME[P_COUNT] = {
    "pass", "delay", "stall", "cut", "halfclose", "blackhole",
};

/* A direction's index is the index of its source socket: UP reads the client
 * and writes upstream, DOWN reads upstream and writes the client. */
enum { UP = 0, DOWN = 1 };
enum { CLIENT = 0, UPSTREAM = 1 };
static const char *const DIR_NAME[2] = {"up", "down"};
static const char *const MASK_NAME[4] = {"none", "up", "down", "both"};
static const char *const SIDE_NAME[2] = {"client", "upstream"};

struct chunk {
    struct chunk *next;
    int64_t due;                     /* monotonic ms: not written before */
    size_t len, off;
    unsigned char data[];
};

struct dir {
    struct chunk *head, *tail;
    size_t qcost;                    /* queued bytes plus CHUNK_COST per chunk */
    uint64_t nread, nwritten;
    int64_t stall_until;
    bool armed;                      /* a threshold fault waits for nwritten == bytes */
    bool delayed;                    /* the delay plan holds every chunk ms */
    bool told;                       /* the delay's fire line is printed */
    bool stalled;                    /* neither reading nor writing until stall_until */
    bool discard;                    /* halfclose fired: what the source sends is dropped */
    bool eof;                        /* the source sent FIN (or, blackholed, is gone) */
    bool shut;                       /* the destination got shutdown(SHUT_WR) */
    bool blocked;                    /* the last send hit EAGAIN: wait for POLLOUT */
};

struct conn {
    unsigned long id;
    int fd[2];                       /* CLIENT, UPSTREAM; -1 once closed */
    int pi[2];                       /* their index in pfds this turn, -1 if not polled */
    bool connecting, blackhole, dead;
    enum plan plan;
    int mask;                        /* 1 up, 2 down, 3 both */
    uint64_t bytes;
    int64_t ms;
    int rst;                         /* cut: the socket closed with an RST */
    struct dir d[2];
};

static struct {
    const char *listen, *to;
    uint64_t seed;
    bool seeded, quiet;
    double faults;
    uint64_t max_bytes;
    int64_t min_ms, max_ms;
} opt = {.listen = "127.0.0.1:0", .faults = 0.5, .max_bytes = 256 * 1024,
         .min_ms = 50, .max_ms = 3000};

static struct conn *conns[MAX_CONNS];
static int nconns;
static struct pollfd pfds[2 + 2 * MAX_CONNS];
static unsigned char buf[READ_MAX];
static int64_t now;
static unsigned long next_id;
static bool refusing;
static int sig_r = -1, sig_w = -1;
static struct sockaddr_storage up_addr;
static socklen_t up_len;

/* ---- output ---- */

/* One write(2) per line, so lines of several processes sharing stderr stay whole. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(2, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += (int)w;
    }
}

#define CSAY(...) do { if (!opt.quiet) say(__VA_ARGS__); } while (0)

/* ---- time and randomness ---- */

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_state;

static uint64_t rng_next(void) {     /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n) { return n ? rng_next() % n : 0; }

static double rng_unit(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }

/* ---- connections ---- */

static void free_queue(struct dir *x) {
    while (x->head) {
        struct chunk *ch = x->head;
        x->head = ch->next;
        free(ch);
    }
    x->tail = NULL;
    x->qcost = 0;
}

/* Closes what is still open (the socket rst_side, 0 or 1, with an RST) and
 * marks the connection for the sweep at the end of the loop turn. A plain
 * close first drops what the kernel holds unread (a bounded number of
 * reads), since closing over unread bytes would send an RST, not a FIN. */
static void conn_close(struct conn *c, int rst_side) {
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] < 0) continue;
        if (s == rst_side) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        } else {
            for (int k = 0; k < 64 && recv(c->fd[s], buf, sizeof buf, MSG_DONTWAIT) > 0; k++) {}
        }
        close(c->fd[s]);
        c->fd[s] = -1;
    }
    free_queue(&c->d[UP]);
    free_queue(&c->d[DOWN]);
    c->dead = true;
}

static bool want_read(const struct conn *c, int dd) {
    const struct dir *x = &c->d[dd];
    if (x->eof || x->stalled) return false;
    if (x->discard) return true;
    if (x->qcost >= QUEUE_CAP) return false;
    if (x->armed && x->nread >= c->bytes) return false;   /* the fault fires first */
    return true;
}

static bool transient(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

/* Sends what it can of p to the destination of dd: the count sent, or -1
 * after closing the connection on a hard error. */
static ssize_t dir_send(struct conn *c, int dd, const unsigned char *p, size_t len) {
    struct dir *x = &c->d[dd];
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(c->fd[1 - dd], p + off, len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) { x->blocked = true; break; }
            conn_close(c, -1);
            return -1;
        }
        off += (size_t)n;
    }
    x->nwritten += off;
    return (ssize_t)off;
}

static bool enqueue(struct conn *c, int dd, const unsigned char *p, size_t len, int64_t due) {
    struct dir *x = &c->d[dd];
    struct chunk *ch = malloc(sizeof *ch + len);
    if (!ch) {
        say("faultproxy: conn %lu out of memory", c->id);
        conn_close(c, -1);
        return false;
    }
    ch->next = NULL;
    ch->due = due;
    ch->len = len;
    ch->off = 0;
    memcpy(ch->data, p, len);
    if (x->tail) x->tail->next = ch; else x->head = ch;
    x->tail = ch;
    x->qcost += len + CHUNK_COST;
    return true;
}

/* One recv from the source of dd; false if the connection is gone. */
static bool dir_read(struct conn *c, int dd) {
    struct dir *x = &c->d[dd];
    size_t room = READ_MAX;
    if (!x->discard) {
        if (QUEUE_CAP - x->qcost < room) room = QUEUE_CAP - x->qcost;
        if (x->armed && c->bytes - x->nread < room) room = (size_t)(c->bytes - x->nread);
    }
    ssize_t n = recv(c->fd[dd], buf, room, 0);
    if (n < 0) {
        if (transient(errno)) return true;
        conn_close(c, -1);
        return false;
    }
    if (n == 0) {
        x->eof = true;
        return true;
    }
    x->nread += (uint64_t)n;
    if (x->discard) return true;
    int64_t due = now;
    if (x->delayed) {
        due += c->ms;
        if (!x->told) {
            x->told = true;
            CSAY("faultproxy: conn %lu fire delay dir %s bytes %" PRIu64 " ms %" PRId64,
                 c->id, DIR_NAME[dd], x->nread - (uint64_t)n, c->ms);
        }
    }
    size_t off = 0;
    if (!x->head && !x->blocked && due <= now) {     /* nothing ahead of it: straight on */
        ssize_t w = dir_send(c, dd, buf, (size_t)n);
        if (w < 0) return false;
        off = (size_t)w;
    }
    return off == (size_t)n || enqueue(c, dd, buf + off, (size_t)n - off, due);
}

/* Writes the queue's due chunks; false if the connection is gone. */
static bool dir_flush(struct conn *c, int dd) {
    struct dir *x = &c->d[dd];
    while (x->head && !x->blocked && x->head->due <= now) {
        struct chunk *ch = x->head;
        ssize_t w = dir_send(c, dd, ch->data + ch->off, ch->len - ch->off);
        if (w < 0) return false;
        ch->off += (size_t)w;
        if (ch->off < ch->len) break;
        x->head = ch->next;
        if (!x->head) x->tail = NULL;
        x->qcost -= ch->len + CHUNK_COST;
        free(ch);
    }
    return true;
}

static void fire(struct conn *c, int dd) {
    struct dir *x = &c->d[dd];
    switch (c->plan) {
    case P_STALL:
        x->stalled = true;
        x->stall_until = now + c->ms;
        CSAY("faultproxy: conn %lu fire stall dir %s bytes %" PRIu64 " ms %" PRId64,
             c->id, DIR_NAME[dd], x->nwritten, c->ms);
        break;
    case P_CUT:
        CSAY("faultproxy: conn %lu fire cut dir %s bytes %" PRIu64 " rst %s",
             c->id, DIR_NAME[dd], x->nwritten, SIDE_NAME[c->rst]);
        conn_close(c, c->rst);
        break;
    case P_HALFCLOSE:
        CSAY("faultproxy: conn %lu fire halfclose dir %s bytes %" PRIu64,
             c->id, DIR_NAME[dd], x->nwritten);
        shutdown(c->fd[1 - dd], SHUT_WR);
        x->shut = true;
        x->discard = true;
        break;
    case P_BLACKHOLE:
        CSAY("faultproxy: conn %lu fire blackhole dir %s bytes %" PRIu64,
             c->id, DIR_NAME[dd], x->nwritten);
        c->blackhole = true;
        free_queue(&c->d[UP]);
        free_queue(&c->d[DOWN]);
        break;
    default:
        break;
    }
}

/* After reading or writing dd: the fault if its threshold is reached, the
 * FIN passed on once the queue is empty, the end once both ways are shut. */
static void dir_settle(struct conn *c, int dd) {
    struct dir *x = &c->d[dd];
    if (x->armed && !x->head && x->nwritten >= c->bytes) {
        x->armed = false;
        fire(c, dd);
        if (c->dead || c->blackhole) return;
    }
    if (x->eof && !x->head && !x->shut) {
        shutdown(c->fd[1 - dd], SHUT_WR);
        x->shut = true;
    }
    if (c->d[UP].eof && c->d[UP].shut && c->d[DOWN].eof && c->d[DOWN].shut) conn_close(c, -1);
}

static short revents_of(const struct conn *c, int s) {
    return c->pi[s] >= 0 ? pfds[c->pi[s]].revents : 0;
}

/* A blackholed connection: read and drop from both sides; a side that ends
 * is closed, the other is left open until it ends too. */
static void blackhole_step(struct conn *c) {
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] < 0 || c->d[s].eof || !(revents_of(c, s) & (POLLIN | POLLERR | POLLHUP)))
            continue;
        ssize_t n = recv(c->fd[s], buf, sizeof buf, 0);
        if (n > 0 || (n < 0 && transient(errno))) continue;
        close(c->fd[s]);
        c->fd[s] = -1;
        c->d[s].eof = true;
    }
    if (c->d[CLIENT].eof && c->d[UPSTREAM].eof) conn_close(c, -1);
}

static void conn_open(struct conn *c) {
    c->connecting = false;
    for (int dd = 0; dd < 2 && !c->dead && !c->blackhole; dd++) dir_settle(c, dd);
}

static void conn_step(struct conn *c) {
    if (c->connecting) {
        short re = revents_of(c, UPSTREAM);
        if (!re) return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd[UPSTREAM], SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (!err && !(re & POLLOUT)) err = ECONNREFUSED;
        if (err) {
            CSAY("faultproxy: conn %lu upstream failed: %s", c->id, strerror(err));
            conn_close(c, -1);
            return;
        }
        conn_open(c);
        return;
    }
    if (c->blackhole) {
        blackhole_step(c);
        return;
    }
    for (int dd = 0; dd < 2; dd++) {
        struct dir *x = &c->d[dd];
        if (revents_of(c, 1 - dd) & (POLLOUT | POLLERR | POLLHUP)) x->blocked = false;
        if (x->stalled && now >= x->stall_until) {
            x->stalled = false;
            CSAY("faultproxy: conn %lu resume stall dir %s", c->id, DIR_NAME[dd]);
        }
        if ((revents_of(c, dd) & (POLLIN | POLLERR | POLLHUP)) && want_read(c, dd)
            && !dir_read(c, dd))
            return;
        if (!dir_flush(c, dd)) return;
        dir_settle(c, dd);
        if (c->dead) return;
        if (c->blackhole) {
            blackhole_step(c);
            return;
        }
    }
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void new_conn(int cfd) {
    unsigned long id = ++next_id;
    if (refusing || nconns >= MAX_CONNS) {
        CSAY("faultproxy: conn %lu refused%s", id, refusing ? "" : " full");
        close(cfd);
        return;
    }
    /* Every field is drawn for every connection, so one connection's plan
     * depends only on the seed and its place in the order of accepts. */
    double u = rng_unit();
    enum plan kind = (enum plan)(P_DELAY + rng_below(P_COUNT - P_DELAY));
    int mask = 1 + (int)rng_below(3);
    uint64_t bytes = rng_below(opt.max_bytes + 1);
    int64_t ms = opt.min_ms + (int64_t)rng_below((uint64_t)(opt.max_ms - opt.min_ms + 1));
    int rst = (int)rng_below(2);

    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        say("faultproxy: conn %lu out of memory", id);
        close(cfd);
        return;
    }
    c->id = id;
    c->fd[CLIENT] = cfd;
    c->fd[UPSTREAM] = -1;
    c->pi[0] = c->pi[1] = -1;
    c->plan = u < opt.faults ? kind : P_PASS;
    if (c->plan != P_PASS) {
        c->mask = mask;
        c->bytes = c->plan == P_DELAY ? 0 : bytes;
        c->ms = c->plan == P_DELAY || c->plan == P_STALL ? ms : 0;
        c->rst = rst;
        for (int dd = 0; dd < 2; dd++) {
            if (!(mask & (1 << dd))) continue;
            if (c->plan == P_DELAY) c->d[dd].delayed = true; else c->d[dd].armed = true;
        }
        CSAY("faultproxy: conn %lu plan %s dir %s bytes %" PRIu64 " ms %" PRId64,
             id, PLAN_NAME[c->plan], MASK_NAME[mask], c->bytes, c->ms);
    } else {
        CSAY("faultproxy: conn %lu plan pass", id);
    }
    conns[nconns++] = c;
    set_nodelay(cfd);

    int ufd = socket(up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ufd < 0) {
        CSAY("faultproxy: conn %lu upstream failed: %s", id, strerror(errno));
        conn_close(c, -1);
        return;
    }
    c->fd[UPSTREAM] = ufd;
    set_nodelay(ufd);
    if (connect(ufd, (struct sockaddr *)&up_addr, up_len) == 0) {
        conn_open(c);
    } else if (errno == EINPROGRESS || errno == EINTR) {
        c->connecting = true;
    } else {
        CSAY("faultproxy: conn %lu upstream failed: %s", id, strerror(errno));
        conn_close(c, -1);
    }
}

/* ---- the loop ---- */

static int64_t accept_pause_until;

static void do_accept(int lfd) {
    for (int k = 0; k < ACCEPT_BURST; k++) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            new_conn(cfd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        say("faultproxy: accept: %s", strerror(errno));
        accept_pause_until = now + ACCEPT_PAUSE;
        return;
    }
}

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(sig_w, &b, 1);   /* a full pipe already has a wake-up in it */
    (void)r;
    errno = saved;
}

/* Takes the signals the handler wrote; true on SIGTERM/SIGINT. */
static bool take_signals(void) {
    unsigned char b[64];
    ssize_t n;
    bool stop = false;
    while ((n = read(sig_r, b, sizeof b)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (b[i] == SIGUSR1) {
                int cut = 0;
                for (int k = 0; k < nconns; k++) {
                    if (conns[k]->dead) continue;
                    conn_close(conns[k], -1);
                    cut++;
                }
                say("faultproxy: cut all: %d connections", cut);
            } else if (b[i] == SIGUSR2) {
                refusing = !refusing;
                say("faultproxy: refuse %s", refusing ? "on" : "off");
            } else if (b[i] == SIGTERM || b[i] == SIGINT) {
                stop = true;
            }
        }
    }
    return stop;
}

static void sweep(void) {
    for (int i = 0; i < nconns;) {
        if (conns[i]->dead) {
            free(conns[i]);
            conns[i] = conns[--nconns];
            conns[nconns] = NULL;
        } else {
            i++;
        }
    }
}

static void earliest(int64_t *next, int64_t t) {
    if (*next < 0 || t < *next) *next = t;
}

static int run(int lfd) {
    for (;;) {
        int np = 0, li = -1;
        int64_t next = -1;
        pfds[np++] = (struct pollfd){.fd = sig_r, .events = POLLIN};
        if (now >= accept_pause_until) {
            li = np;
            pfds[np++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        } else {
            earliest(&next, accept_pause_until);
        }
        for (int i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            short ev[2] = {0, 0};
            if (c->connecting) {
                ev[UPSTREAM] = POLLOUT;
            } else if (c->blackhole) {
                for (int s = 0; s < 2; s++)
                    if (c->fd[s] >= 0 && !c->d[s].eof) ev[s] = POLLIN;
            } else {
                for (int dd = 0; dd < 2; dd++) {
                    struct dir *x = &c->d[dd];
                    if (want_read(c, dd)) ev[dd] |= POLLIN;
                    if (x->stalled) earliest(&next, x->stall_until);
                    if (x->head && x->head->due <= now) ev[1 - dd] |= POLLOUT;
                    else if (x->head) earliest(&next, x->head->due);
                }
            }
            for (int s = 0; s < 2; s++) {
                c->pi[s] = -1;
                if (!ev[s]) continue;    /* not polled at all, so a hangup cannot spin */
                c->pi[s] = np;
                pfds[np++] = (struct pollfd){.fd = c->fd[s], .events = ev[s]};
            }
        }
        int npolled = nconns;
        int timeout = -1;
        if (next >= 0) {
            int64_t t = next - mono_ms();
            timeout = t <= 0 ? 0 : t > 60000 ? 60000 : (int)t;
        }
        int r = poll(pfds, (nfds_t)np, timeout);
        now = mono_ms();
        if (r < 0) {
            if (errno == EINTR) continue;
            say("faultproxy: poll: %s", strerror(errno));
            return 1;
        }
        if ((pfds[0].revents & POLLIN) && take_signals()) return 0;
        for (int i = 0; i < npolled; i++)
            if (!conns[i]->dead) conn_step(conns[i]);
        if (li >= 0 && pfds[li].revents) do_accept(lfd);
        sweep();
    }
}

/* ---- start ---- */

static void usage(FILE *to) {
    fprintf(to,
            "usage: faultproxy --listen HOST:PORT --to HOST:PORT [--seed N] [--faults P] [--quiet]\n"
            "                  [--max-bytes N] [--min-ms N] [--max-ms N]\n"
            "  --listen     where to accept (default 127.0.0.1:0; port 0 picks one)\n"
            "  --to         the upstream each connection is forwarded to\n"
            "  --seed       PRNG seed (default from the clock; always printed)\n"
            "  --faults     probability 0..1 that a connection gets a fault plan (default 0.5)\n"
            "  --max-bytes  byte thresholds are drawn in 0..N (default 262144)\n"
            "  --min-ms, --max-ms  durations are drawn in that range (default 50..3000)\n"
            "  --quiet      no per-connection lines\n");
}

static int resolve(const char *spec, bool passive, struct sockaddr_storage *ss, socklen_t *len) {
    const char *colon = strrchr(spec, ':');
    char host[256];
    if (!colon || (size_t)(colon - spec) >= sizeof host) return -1;
    size_t hl = (size_t)(colon - spec);
    memcpy(host, spec, hl);
    host[hl] = 0;
    char *h = host;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    if (!*h) h = "127.0.0.1";
    const char *port = colon + 1;
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (!*port || *end || errno || p > 65535) return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res;
    int r = getaddrinfo(h, port, &hints, &res);
    if (r) {
        say("faultproxy: %s: %s", spec, gai_strerror(r));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || errno) return false;
    *out = v;
    return true;
}

/* "--name VALUE" or "--name=VALUE"; NULL if argv[*i] is another option. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "faultproxy: %s needs a value\n", name);
        exit(2);
    }
    return argv[++*i];
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *v, *name = argv[i];
        uint64_t u;
        if (!strcmp(argv[i], "--quiet")) {
            opt.quiet = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            exit(0);
        } else if ((v = opt_value(argc, argv, &i, "--listen"))) {
            opt.listen = v;
        } else if ((v = opt_value(argc, argv, &i, "--to"))) {
            opt.to = v;
        } else if ((v = opt_value(argc, argv, &i, "--seed"))) {
            if (!parse_u64(v, &opt.seed)) goto bad;
            opt.seeded = true;
        } else if ((v = opt_value(argc, argv, &i, "--faults"))) {
            char *end;
            opt.faults = strtod(v, &end);
            if (!*v || *end || !(opt.faults >= 0 && opt.faults <= 1)) goto bad;
        } else if ((v = opt_value(argc, argv, &i, "--max-bytes"))) {
            if (!parse_u64(v, &u) || u > (1ULL << 40)) goto bad;
            opt.max_bytes = u;
        } else if ((v = opt_value(argc, argv, &i, "--min-ms"))) {
            if (!parse_u64(v, &u) || u > 86400000) goto bad;
            opt.min_ms = (int64_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--max-ms"))) {
            if (!parse_u64(v, &u) || u > 86400000) goto bad;
            opt.max_ms = (int64_t)u;
        } else {
            fprintf(stderr, "faultproxy: unknown argument %s\n", argv[i]);
            usage(stderr);
            exit(2);
        }
        continue;
    bad:
        fprintf(stderr, "faultproxy: bad value for %s\n", name);
        exit(2);
    }
    if (!opt.to) {
        fprintf(stderr, "faultproxy: --to HOST:PORT is required\n");
        usage(stderr);
        exit(2);
    }
    if (opt.min_ms > opt.max_ms) {
        fprintf(stderr, "faultproxy: --min-ms is above --max-ms\n");
        exit(2);
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    if (!opt.seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        opt.seed = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec)
                   ^ ((uint64_t)getpid() << 32);
    }
    rng_state = opt.seed;
    say("faultproxy: seed %" PRIu64, opt.seed);

    /* Two sockets per connection, plus a little. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * MAX_CONNS + 64) {
        rl.rlim_cur = rl.rlim_max < 2 * MAX_CONNS + 64 ? rl.rlim_max : 2 * MAX_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sockaddr_storage la;
    socklen_t ll;
    if (resolve(opt.to, false, &up_addr, &up_len) < 0) {
        fprintf(stderr, "faultproxy: bad --to %s\n", opt.to);
        return 2;
    }
    if (resolve(opt.listen, true, &la, &ll) < 0) {
        fprintf(stderr, "faultproxy: bad --listen %s\n", opt.listen);
        return 2;
    }

    int sp[2];
    if (pipe2(sp, O_NONBLOCK | O_CLOEXEC) < 0) {
        say("faultproxy: pipe: %s", strerror(errno));
        return 1;
    }
    sig_r = sp[0];
    sig_w = sp[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(lfd, (struct sockaddr *)&la, ll) < 0 || listen(lfd, 512) < 0
        || getsockname(lfd, (struct sockaddr *)&la, &ll) < 0) {
        say("faultproxy: listen %s: %s", opt.listen, strerror(errno));
        if (lfd >= 0) close(lfd);
        close(sig_r);
        close(sig_w);
        return 1;
    }
    unsigned port = la.ss_family == AF_INET6
                        ? ntohs(((struct sockaddr_in6 *)&la)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&la)->sin_port);
    printf("listening %u\n", port);
    fflush(stdout);

    now = mono_ms();
    int rc = run(lfd);
    for (int i = 0; i < nconns; i++) conn_close(conns[i], -1);
    sweep();
    close(lfd);
    close(sig_r);
    close(sig_w);
    say("faultproxy: exit %d", rc);
    return rc;
}
