/* nim-server connection admission: at most srv.max_conns connections in
 * all and srv.max_per_addr from one address, decided at accept
 * (LWS_CALLBACK_FILTER_NETWORK_CONNECTION), before any handshake, so one
 * address holding a thousand sockets never keeps another from logging in,
 * and the process never runs out of descriptors (the cap stays below its
 * RLIMIT_NOFILE, so accept never fails with EMFILE and never spins).
 *
 * Counts live in a fixed table of addresses and a table by descriptor. A
 * connection is uncounted when lws destroys it (LWS_CALLBACK_WSI_DESTROY,
 * with the descriptor ws.c kept on the wsi: lws has closed it by then);
 * should that ever miss one, the descriptor being accepted again proves
 * the old connection gone, and it is uncounted then. IPv6 addresses count
 * by their /64 (one host usually holds a whole one). The loop thread. */
#include "server/admit.h"
#include "server/throttle.h"
#include "server/server.h"
#include "core/alloc.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define SLOTS 4096          /* addresses with connections at once; a power of two */
#define PROBE 32

typedef struct {
    char key[INET6_ADDRSTRLEN];     /* "" : free */
    int  count;
} slot;

static slot addrs[SLOTS];
static int *by_fd;                  /* fd -> addrs index + 1, 0: not counted */
static int fd_cap, total;

int srv_admit_init(int max_fd) {
    by_fd = nim_calloc((size_t)max_fd, sizeof *by_fd);
    fd_cap = by_fd ? max_fd : 0;
    return by_fd ? 0 : -1;
}

void srv_admit_free(void) {
    nim_free(by_fd);
    by_fd = NULL;
    fd_cap = total = 0;
}

/* The slot of addr, or a free one for it; NULL when the window is full
 * (so many addresses at once: refused, which bounds the table). */
static slot *find(const char *addr) {
    uint32_t h = srv_key_hash(addr);
    slot *free_slot = NULL;
    for (int i = 0; i < PROBE; i++) {
        slot *s = &addrs[(h + (uint32_t)i) & (SLOTS - 1)];
        if (s->key[0] && strcmp(s->key, addr) == 0) return s;
        if (!s->key[0] && !free_slot) free_slot = s;
    }
    if (free_slot) snprintf(free_slot->key, sizeof free_slot->key, "%s", addr);
    return free_slot;
}

static void uncount(int fd) {
    if (fd < 0 || fd >= fd_cap || !by_fd[fd]) return;
    slot *s = &addrs[by_fd[fd] - 1];
    by_fd[fd] = 0;
    total--;
    if (--s->count <= 0) memset(s, 0, sizeof *s);
}

static void addr_text(const struct sockaddr_storage *sa, char *out, size_t n) {
    out[0] = '\0';
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->ss_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (!IN6_IS_ADDR_V4MAPPED(&a)) memset(a.s6_addr + 8, 0, 8);   /* its /64 */
        inet_ntop(AF_INET6, &a, out, (socklen_t)n);
    }
}

int srv_admit(const struct sockaddr_storage *peer, int fd, int (*evict)(void)) {
    uncount(fd);                    /* accepted again: whatever held it is gone */
    char addr[INET6_ADDRSTRLEN];
    addr_text(peer, addr, sizeof addr);
    if (fd < 0 || fd >= fd_cap) return -1;
    if (total >= srv.max_conns) {
        /* full: a connection that has not logged in (the oldest) makes
         * room, so sockets that never log in cannot keep users out */
        if (total >= srv.max_conns + SRV_FD_RESERVE / 2) return -1;   /* evictions still closing */
        if (evict() != 0) return -1;
        /* it is uncounted when lws destroys it; meanwhile one over */
    }
    slot *s = find(addr);
    if (!s || s->count >= srv.max_per_addr) {
        if (s && !s->count) memset(s, 0, sizeof *s);
        return -1;
    }
    s->count++;
    total++;
    by_fd[fd] = (int)(s - addrs) + 1;
    return 0;
}

void srv_admit_gone(int fd) { uncount(fd); }

int srv_admit_total(void) { return total; }
