/* nim-server credentials (auth.c): PBKDF2-HMAC-SHA256 from OpenSSL, and the
 * worker thread that derives them off the request thread. */
#ifndef NIM_SERVER_AUTH_H
#define NIM_SERVER_AUTH_H
#include "server/db.h"

/* OWASP's count for PBKDF2-HMAC-SHA256 (--kdf-iterations changes it);
 * stored hashes with fewer are upgraded at their next successful login. */
#define SRV_KDF_ITERATIONS     600000
#define SRV_KDF_MIN_ITERATIONS 1000

/* Any thread. 0, or -1 when OpenSSL fails. */
int srv_kdf(const char *token, const uint8_t salt[SRV_SALT_LEN], int iterations, uint8_t out[SRV_HASH_LEN]);
/* A new random salt and the token's hash with it. */
int srv_cred_make(const char *token, int iterations, srv_cred *out);
/* Constant time. */
int srv_cred_equal(const uint8_t a[SRV_HASH_LEN], const uint8_t b[SRV_HASH_LEN]);

/* One derivation for the worker. The request thread fills the inputs and
 * finish; finish runs on it, from srv_auth_collect (cancelled = 0), or
 * from srv_auth_stop (cancelled = 1: only free it). */
typedef struct srv_auth_job {
    struct srv_auth_job *next;
    char     token[NIM_PROTO_MAX_TOKEN + 1];   /* the finisher wipes it */
    srv_cred stored;           /* what to verify against (any salt when !found) */
    int      found;            /* the account exists */
    int      make_iterations;  /* > 0: also make a new credential (upgrade, registration) */
    int      failed, equal;    /* out */
    srv_cred made;             /* out, with make_iterations */
    void   (*finish)(struct srv_auth_job *j, int cancelled);
    _Atomic int dead;          /* set by the request thread: its connection is gone, skip it */
    int      skipped;          /* out: dead when the worker reached it (nothing derived) */
} srv_auth_job;

/* Jobs submitted and not yet finished; the server refuses logins (429)
 * beyond SRV_AUTH_MAX_QUEUED, so a flood never makes every login wait. */
#define SRV_AUTH_MAX_QUEUED 32
int  srv_auth_queued(void);

int  srv_auth_start(void);
void srv_auth_submit(srv_auth_job *j);
/* The request thread: finishes every derived job (woken by srv_reqthread_wake). */
void srv_auth_collect(void);
void srv_auth_stop(void);

#endif
