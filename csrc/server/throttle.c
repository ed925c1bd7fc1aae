/* nim-server throttling: failed logins, and the send rate of each account.
 *
 * Logins: failed logins are counted per account name
 * and per source address; past a few free failures each further one closes
 * that key for a doubling time (1 s, 2 s, ... up to 15 min), and a login
 * for a closed key is answered 429 with retryAfter before any hashing.
 * Other accounts and other addresses are not touched. A key forgets its
 * failures after 15 min without one; a good login clears its account.
 *
 * Sending: a token bucket per account, srv.send_rate messages a second
 * with bursts of twice that; a sendMsg beyond it is answered 429 with the
 * ms until the next token (and nothing is stored).
 *
 * Fixed tables (open addressing, probe window of 16), so an attacker
 * inventing names or addresses can only evict the stalest entries, never
 * grow memory. The request thread only. */
#include "server/throttle.h"
#include <stdio.h>
#include <string.h>
#include "core/strmap.h"

#define SLOTS        8192          /* per table; a power of two */
#define PROBE        16
#define MAX_BLOCK_MS (15 * 60 * 1000)
#define FORGET_MS    (4 * MAX_BLOCK_MS) /* well past the longest block */

typedef struct {
    char    key[NIM_PROTO_MAX_ACCOUNT + 1];   /* "" : free (addresses are shorter) */
    int64_t failures;                          /* logins */
    int64_t tokens;                            /* buckets: thousandths of one */
    int     pending;                           /* logins being derived */
    int64_t last, until;
} slot;

static slot accounts[SLOTS], addresses[SLOTS], senders[SLOTS];
static uint32_t seed;   /* so nobody can pick names that share a victim's window */

void srv_throttle_init(uint32_t random_seed) { seed = random_seed; }

uint32_t srv_key_hash(const char *key) {
    uint32_t h = nim_strmap_hash(key, strlen(key)) + seed;
    h ^= h >> 15;
    return h * 2246822519u;
}

/* The slot of key: its own, else a free or forgotten one, else the stalest
 * of the window that holds nothing of weight (no block, no login being
 * derived), when make; NULL when absent and !make, or when every slot of
 * the window holds something of weight. */
static slot *find(slot *t, const char *key, int64_t now, int make) {
    uint32_t h = srv_key_hash(key);
    slot *spare = NULL;
    int spare_rank = 4;                 /* 0 free, 1 forgotten, 2 in use; heavy slots never */
    for (int i = 0; i < PROBE; i++) {
        slot *s = &t[(h + (uint32_t)i) & (SLOTS - 1)];
        if (s->key[0] && strcmp(s->key, key) == 0) {
            if (now - s->last > FORGET_MS && !s->pending) s->failures = 0, s->until = 0;
            return s;
        }
        int heavy = s->key[0] && (s->until > now || s->pending > 0);
        if (heavy) continue;
        int rank = !s->key[0] ? 0 : now - s->last > FORGET_MS ? 1 : 2;
        if (rank < spare_rank || (rank == spare_rank && s->last < spare->last)) {
            spare = s;
            spare_rank = rank;
        }
    }
    if (!make || !spare) return NULL;
    memset(spare, 0, sizeof *spare);
    snprintf(spare->key, sizeof spare->key, "%s", key);
    return spare;
}

/* ms until key may try a login: closed, or already as many failures and
 * logins being derived as it may have (a wait for those to end). */
static int64_t closed_for(slot *t, const char *key, int free_failures, int max_pending, int64_t now) {
    slot *s = key && *key ? find(t, key, now, 0) : NULL;
    if (!s) return 0;
    if (s->until > now) return s->until - now;
    if (s->pending >= max_pending || s->failures + s->pending >= free_failures) return s->pending ? 500 : 0;
    return 0;
}

int64_t srv_throttle_check(const char *account, const char *addr, int64_t now) {
    int64_t a = closed_for(accounts, account, SRV_THROTTLE_FREE_PER_ACCOUNT, SRV_THROTTLE_FREE_PER_ACCOUNT, now);
    int64_t b = closed_for(addresses, addr, SRV_THROTTLE_FREE_PER_ADDRESS, SRV_THROTTLE_PENDING_PER_ADDRESS, now);
    return a > b ? a : b;
}

int srv_throttle_begin(const char *account, const char *addr, int64_t now) {
    slot *a = find(accounts, account, now, 1), *b = addr && *addr ? find(addresses, addr, now, 1) : NULL;
    if (!a || (addr && *addr && !b)) return -1;   /* windows full of weight: refuse */
    a->pending++;
    a->last = now;
    if (b) { b->pending++; b->last = now; }
    return 0;
}

static void end_pending(slot *t, const char *key, int64_t now) {
    slot *s = key && *key ? find(t, key, now, 0) : NULL;
    if (s && s->pending > 0) s->pending--;
}

static void failed(slot *t, const char *key, int free_failures, int64_t now) {
    if (!key || !*key) return;
    slot *s = find(t, key, now, 1);
    if (!s) return;
    s->failures++;
    s->last = now;
    int over = s->failures - free_failures;
    if (over > 0) {
        int64_t block = 1000;
        for (int i = 1; i < over && block < MAX_BLOCK_MS; i++) block *= 2;
        s->until = now + (block < MAX_BLOCK_MS ? block : MAX_BLOCK_MS);
    }
}

void srv_throttle_end(const char *account, const char *addr, int outcome, int64_t now) {
    end_pending(accounts, account, now);
    end_pending(addresses, addr, now);
    if (outcome < 0) {
        failed(accounts, account, SRV_THROTTLE_FREE_PER_ACCOUNT, now);
        failed(addresses, addr, SRV_THROTTLE_FREE_PER_ADDRESS, now);
    } else if (outcome > 0) {
        slot *s = find(accounts, account, now, 0);
        if (s) s->failures = 0, s->until = 0;
    }
}

/* A token bucket of key in t: refilled at per_s a second up to burst (both
 * in whole tokens), a new or long idle key full; the slot (a throwaway one
 * when the window is full of weight), its tokens in thousandths. */
static slot *bucket(slot *t, const char *key, int64_t per_s, int64_t burst, int64_t now) {
    static slot none;
    slot *s = find(t, key, now, 1);
    if (!s) { memset(&none, 0, sizeof none); s = &none; }
    int64_t full = 1000 * burst, have = s->last == 0 ? full : s->tokens + (now - s->last) * per_s;
    s->tokens = have > full ? full : have;
    s->last = now;
    return s;
}

int64_t srv_throttle_send(const char *account, int rate, int64_t now) {
    slot *s = bucket(senders, account, rate, 2 * (int64_t)rate, now);
    if (s->tokens < 1000) return (1000 - s->tokens + rate - 1) / rate;   /* ms until one message's worth */
    s->tokens -= 1000;
    return 0;
}

/* The answers that tell an unknown account name from a known one, per
 * asking account: SRV_UNKNOWN_PER_MIN a minute, bursts of SRV_UNKNOWN_BURST
 * (tokens in thousandths). */
static slot askers[SLOTS];

/* the asker's bucket: SRV_UNKNOWN_PER_MIN a minute (a whole number a second) */
static slot *asker(const char *account, int64_t now) {
    return bucket(askers, account, SRV_UNKNOWN_PER_MIN / 60, SRV_UNKNOWN_BURST, now);
}

int64_t srv_throttle_unknown_wait(const char *account, int64_t now) {
    slot *s = asker(account, now);
    return s->tokens >= 1000 ? 0 : (1000 - s->tokens) * 60 / SRV_UNKNOWN_PER_MIN + 1;
}

void srv_throttle_unknown_spend(const char *account, int count, int64_t now) {
    slot *s = asker(account, now);
    s->tokens -= 1000 * (int64_t)count;
    if (s->tokens < 0) s->tokens = 0;
}
