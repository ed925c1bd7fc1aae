/* nim-server throttling (throttle.c): login failures per account and per
 * source address, answered 429 before any hashing once they pile up; the
 * send rate per account, answered 429. */
#ifndef NIM_SERVER_THROTTLE_H
#define NIM_SERVER_THROTTLE_H
#include <stdint.h>
#include "net/proto.h"

/* Failed logins allowed before a key is closed (an address may be shared
 * by many users behind one NAT: more). */
#define SRV_THROTTLE_FREE_PER_ACCOUNT 5
#define SRV_THROTTLE_FREE_PER_ADDRESS 20

/* Logins being derived at once, per address (the credentials thread is one:
 * a flood from one address must not queue ahead of everyone). */
#define SRV_THROTTLE_PENDING_PER_ADDRESS 2

/* Every time is monotonic ms (srv_mono_ms). seed: random, at start. */
void    srv_throttle_init(uint32_t seed);
/* The seeded hash of the fixed tables here and in admit.c, so nobody can
 * pick keys that crowd another's window. */
uint32_t srv_key_hash(const char *key);
/* ms until a login for account from addr may be tried again; 0: now. A
 * key that has as many failures and logins being derived as it may have
 * waits for those to end. */
int64_t srv_throttle_check(const char *account, const char *addr, int64_t now);
/* A login goes to be derived (counted while it is): 0, or -1 when it cannot
 * be counted (refuse it). end: outcome < 0 a failure, > 0 a good login
 * (the account's failures are forgotten, not the address's), 0 neither. */
int     srv_throttle_begin(const char *account, const char *addr, int64_t now);
void    srv_throttle_end(const char *account, const char *addr, int outcome, int64_t now);

#define SRV_SEND_RATE_DEFAULT 100   /* --max-send-rate: messages a second per account */
/* One message from account: 0 when within rate (messages/s, bursts of
 * 2 x rate), else the ms until it would be. */
int64_t srv_throttle_send(const char *account, int rate, int64_t now);

/* Answers that reveal that an account name does not exist (createTeam's
 * unknown list, sendMsg's 404), per asking account: at most
 * SRV_UNKNOWN_PER_MIN a minute after a burst of SRV_UNKNOWN_BURST. wait:
 * the ms until one more may be given (0: now); spend: count were given. */
#define SRV_UNKNOWN_PER_MIN 60
#define SRV_UNKNOWN_BURST   100
int64_t srv_throttle_unknown_wait(const char *account, int64_t now);
void    srv_throttle_unknown_spend(const char *account, int count, int64_t now);

#endif
