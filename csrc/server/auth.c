/* nim-server credentials: tokens stored as salted PBKDF2-HMAC-SHA256 from
 * OpenSSL (no crypto of our own), compared in constant time, and derived on
 * a worker thread so that a login's 600,000 iterations (~0.2 s) never hold
 * the request thread. That thread submits a job; the worker derives; the
 * request thread takes the finished jobs back (srv_auth_collect, woken by
 * srv_reqthread_wake) and finishes each on its own thread. */
#include "server/auth.h"
#include "server/server.h"
#include "core/alloc.h"
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

int srv_kdf(const char *token, const uint8_t salt[SRV_SALT_LEN], int iterations, uint8_t out[SRV_HASH_LEN]) {
    return PKCS5_PBKDF2_HMAC(token, (int)strlen(token), salt, SRV_SALT_LEN, iterations, EVP_sha256(),
                             SRV_HASH_LEN, out) == 1 ? 0 : -1;
}

int srv_cred_make(const char *token, int iterations, srv_cred *out) {
    out->iterations = iterations;
    if (RAND_bytes(out->salt, SRV_SALT_LEN) != 1) return -1;
    return srv_kdf(token, out->salt, iterations, out->hash);
}

int srv_cred_equal(const uint8_t a[SRV_HASH_LEN], const uint8_t b[SRV_HASH_LEN]) {
    return CRYPTO_memcmp(a, b, SRV_HASH_LEN) == 0;
}

/* ---- the worker --------------------------------------------------------- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t  more;
    pthread_t       thread;
    int             started, stop;
    srv_auth_job   *todo, *todo_tail;   /* submitted, oldest first */
    srv_auth_job   *done, *done_tail;   /* derived, oldest first */
} w = { .lock = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER };

static void push(srv_auth_job **head, srv_auth_job **tail, srv_auth_job *j) {
    j->next = NULL;
    if (*tail) (*tail)->next = j; else *head = j;
    *tail = j;
}

/* The derivation itself: verify against the stored hash (for an unknown
 * account against nothing, with the same work), then a new credential when
 * asked (an upgrade, or a registration). */
static void derive(srv_auth_job *j) {
    uint8_t got[SRV_HASH_LEN];
    j->failed = srv_kdf(j->token, j->stored.salt, j->stored.iterations, got) != 0;
    j->equal = !j->failed && j->found && srv_cred_equal(got, j->stored.hash);
    /* made whether the token matched or not: a wrong token for an account
     * with an old, cheaper hash costs what it costs for any other */
    if (!j->failed && j->make_iterations > 0)
        j->failed = srv_cred_make(j->token, j->make_iterations, &j->made) != 0;
}

static void *worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&w.lock);
    for (;;) {
        while (!w.todo && !w.stop) pthread_cond_wait(&w.more, &w.lock);
        if (w.stop) break;
        srv_auth_job *j = w.todo;
        if (!(w.todo = j->next)) w.todo_tail = NULL;
        pthread_mutex_unlock(&w.lock);
        if (atomic_load(&j->dead)) j->skipped = 1;   /* nobody waits for it */
        else derive(j);
        pthread_mutex_lock(&w.lock);
        push(&w.done, &w.done_tail, j);
        srv_reqthread_wake();                       /* the request thread collects it */
    }
    pthread_mutex_unlock(&w.lock);
    return NULL;
}

int srv_auth_start(void) {
    if (w.started) return 0;
    if (pthread_create(&w.thread, NULL, worker, NULL) != 0) return -1;
    w.started = 1;
    return 0;
}

static int queued;   /* request thread only: submitted, not yet finished */

int srv_auth_queued(void) { return queued; }

void srv_auth_submit(srv_auth_job *j) {
    queued++;
    pthread_mutex_lock(&w.lock);
    push(&w.todo, &w.todo_tail, j);
    pthread_cond_signal(&w.more);
    pthread_mutex_unlock(&w.lock);
}

void srv_auth_collect(void) {
    pthread_mutex_lock(&w.lock);
    srv_auth_job *j = w.done;
    w.done = w.done_tail = NULL;
    pthread_mutex_unlock(&w.lock);
    while (j) {
        srv_auth_job *next = j->next;
        queued--;
        j->finish(j, 0);
        j = next;
    }
}

void srv_auth_stop(void) {
    if (!w.started) return;
    pthread_mutex_lock(&w.lock);
    w.stop = 1;
    pthread_cond_broadcast(&w.more);
    pthread_mutex_unlock(&w.lock);
    pthread_join(w.thread, NULL);
    w.started = 0;
    /* what never ran, or never was collected, is dropped (shutting down) */
    for (srv_auth_job *lists[2] = { w.todo, w.done }, **l = lists; l < lists + 2; l++)
        for (srv_auth_job *j = *l, *next; j; j = next) { next = j->next; j->finish(j, 1); }
    w.todo = w.todo_tail = w.done = w.done_tail = NULL;
}
