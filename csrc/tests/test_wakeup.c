/* C unit test of the wakeup fd (core/wakeup.h), on its own and as the
 * engine's event fd. Built twice: test_wakeup (the platform's kind, an
 * eventfd on Linux) and test_wakeup_pipe (-DNIM_WAKEUP_PIPE, linked with
 * the pipe build of wakeup.o), so both implementations pass the same checks.
 * Every wait has a deadline, and alarm() fails a call that blocks. */
#include "core/wakeup.h"
#include "core/engine.h"
#include "testhelp.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__) && !defined(NIM_WAKEUP_PIPE)
#define EXPECT_KIND "eventfd"
#else
#define EXPECT_KIND "pipe"
#endif

/* 1 when fd is readable within ms (0: now). */
static int readable(int fd, int ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r;
    do r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r == 1 && (p.revents & POLLIN);
}

static int has_fl(int fd, int fl) { int v = fcntl(fd, F_GETFL); return v >= 0 && (v & fl); }
static int has_fd(int fd, int fl) { int v = fcntl(fd, F_GETFD); return v >= 0 && (v & fl); }

/* ------------------------------------------------------------ one thread */

static void t_basic(void) {
    nim_wakeup w;
    test_cond("open", nim_wakeup_open(&w) == 0);
    int fd = nim_wakeup_fd(&w);
    printf("wakeup kind: %s\n", nim_wakeup_kind());
    test_cond("the kind this build asked for", strcmp(nim_wakeup_kind(), EXPECT_KIND) == 0);
    struct stat st;
    int fifo = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
    test_cond("a pipe is a FIFO, an eventfd is not", fifo == (strcmp(EXPECT_KIND, "pipe") == 0));
    test_cond("a pipe has two ends, an eventfd one",
              (w.wfd != w.rfd) == (strcmp(EXPECT_KIND, "pipe") == 0) && w.wfd >= 0);
    test_cond("the fd is non-blocking", has_fl(fd, O_NONBLOCK));
    test_cond("the written end is non-blocking", has_fl(w.wfd, O_NONBLOCK));
    test_cond("the fd is close-on-exec", has_fd(fd, FD_CLOEXEC));
    test_cond("the written end is close-on-exec", has_fd(w.wfd, FD_CLOEXEC));

    test_cond("not readable when idle", !readable(fd, 0));
    nim_wakeup_drain(&w);   /* a drain when idle returns at once */
    test_cond("still not readable after an idle drain", !readable(fd, 0));
    nim_wakeup_signal(&w);
    test_cond("readable after a signal", readable(fd, 0));
    test_cond("poll does not consume it", readable(fd, 0));
    nim_wakeup_drain(&w);
    test_cond("not readable after the drain", !readable(fd, 0));

    /* far beyond a pipe's capacity (64 KiB on Linux): never blocks */
    for (int i = 0; i < 200000; i++) nim_wakeup_signal(&w);
    test_cond("readable after many signals", readable(fd, 0));
    nim_wakeup_drain(&w);
    test_cond("many signals coalesce: one drain clears them", !readable(fd, 0));
    for (int i = 0; i < 3; i++) nim_wakeup_signal(&w);
    nim_wakeup_drain(&w);
    test_cond("a few signals: one drain clears them", !readable(fd, 0));

    nim_wakeup_signal(&w);
    test_cond("readable again after a signal that follows a drain", readable(fd, 0));
    nim_wakeup_drain(&w);
    test_cond("and drained again", !readable(fd, 0));

    int rfd = w.rfd, wfd = w.wfd;
    nim_wakeup_close(&w);
    test_cond("close closes the fd", fcntl(rfd, F_GETFD) < 0 && errno == EBADF);
    test_cond("close closes the written end", fcntl(wfd, F_GETFD) < 0 && errno == EBADF);
    test_cond("close forgets the fds", w.rfd == -1 && w.wfd == -1 && nim_wakeup_fd(&w) == -1);
    nim_wakeup_close(&w);   /* a second close is a no-op */
}

/* Two wakeups are independent. */
static void t_two(void) {
    nim_wakeup a, b;
    test_cond("open two", nim_wakeup_open(&a) == 0 && nim_wakeup_open(&b) == 0);
    nim_wakeup_signal(&a);
    test_cond("a signal reaches only its own fd",
              readable(nim_wakeup_fd(&a), 0) && !readable(nim_wakeup_fd(&b), 0));
    nim_wakeup_close(&a);
    nim_wakeup_close(&b);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    nim_wakeup *w;
    int delay_ms;
    int count;
} signaller;

static void *signal_later(void *arg) {
    signaller *s = arg;
    struct timespec ts = { s->delay_ms / 1000, (long)(s->delay_ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    for (int i = 0; i < s->count; i++) nim_wakeup_signal(s->w);
    return NULL;
}

static void t_other_thread(void) {
    nim_wakeup w;
    test_cond("open", nim_wakeup_open(&w) == 0);
    signaller s = { &w, 300, 1 };
    pthread_t t;
    int64_t t0 = test_now_ms();
    test_cond("thread", pthread_create(&t, NULL, signal_later, &s) == 0);
    test_cond("not readable before the other thread signals", !readable(nim_wakeup_fd(&w), 30));
    test_cond("a signal from another thread wakes poll", readable(nim_wakeup_fd(&w), 5000));
    test_cond("... after that thread signalled", test_now_ms() - t0 >= 290);
    pthread_join(t, NULL);
    nim_wakeup_drain(&w);
    test_cond("drained", !readable(nim_wakeup_fd(&w), 0));

    /* four threads signal a full pipe's worth each at once, none blocks */
    pthread_t ts[4];
    signaller many = { &w, 0, 100000 };
    for (int i = 0; i < 4; i++) pthread_create(&ts[i], NULL, signal_later, &many);
    for (int i = 0; i < 4; i++) pthread_join(ts[i], NULL);
    test_cond("readable after signals from four threads", readable(nim_wakeup_fd(&w), 0));
    nim_wakeup_drain(&w);
    test_cond("one drain clears them all", !readable(nim_wakeup_fd(&w), 0));
    nim_wakeup_close(&w);
}

/* The protocol events.c follows: the producer queues work and signals when
 * the queue was empty, under the lock; the consumer waits on the fd only,
 * then drains and takes the work under the same lock. A lost wakeup leaves
 * work queued behind an fd that is not readable: the consumer's wait times
 * out and the test fails. */
#define ITEMS 200000

typedef struct {
    nim_wakeup w;
    pthread_mutex_t lock;
    long queued;          /* produced, not yet taken */
} queue;

static void *produce(void *arg) {
    queue *q = arg;
    for (long i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&q->lock);
        if (q->queued++ == 0) nim_wakeup_signal(&q->w);
        pthread_mutex_unlock(&q->lock);
        if (i % 1000 == 0) sched_yield();
    }
    return NULL;
}

static void t_handoff(void) {
    queue q = { .queued = 0 };
    pthread_mutex_init(&q.lock, NULL);
    test_cond("open", nim_wakeup_open(&q.w) == 0);
    pthread_t t;
    pthread_create(&t, NULL, produce, &q);
    long taken = 0, wakes = 0, empty = 0;
    int lost = 0;
    while (taken < ITEMS) {
        if (!readable(nim_wakeup_fd(&q.w), 5000)) { lost = 1; break; }
        wakes++;
        pthread_mutex_lock(&q.lock);
        nim_wakeup_drain(&q.w);
        long n = q.queued;
        q.queued = 0;
        pthread_mutex_unlock(&q.lock);
        if (n == 0) empty++;
        taken += n;
    }
    pthread_join(t, NULL);
    printf("handoff: %ld items in %ld wakes (%ld empty)\n", taken, wakes, empty);
    test_cond("every item arrived through the fd: no wakeup lost", !lost && taken == ITEMS);
    test_cond("no wake without work (a drain clears every signal before it)", empty == 0);
    test_cond("not readable once everything is taken", !readable(nim_wakeup_fd(&q.w), 0));
    nim_wakeup_close(&q.w);
    pthread_mutex_destroy(&q.lock);
}

/* ------------------------------------------------------------ the engine */

#define ROUNDS 5
#define ROUND_CMDS 20000

/* Takes the queued events; the number of replies among them. */
static int take_replies(nim_engine *e) {
    int got = 0;
    for (nim_event *ev = nim_engine_take_events(e); ev;) {
        nim_event *next = ev->next;
        got += ev->type == NIM_EV_DONE;
        ev->next = NULL;
        nim_event_free(ev);
        ev = next;
    }
    return got;
}

/* Waits on the engine's fd only (no blind takes) until n more replies
 * have arrived; 0 when the fd stayed quiet for 5 s with replies missing. */
static int replies_through_fd(nim_engine *e, int n) {
    for (int got = 0; got < n; got += take_replies(e))
        if (!readable(nim_engine_fd(e), 5000)) return 0;
    return 1;
}

static void t_engine(void) {
    nim_engine_config cfg = { .account = "me", .db_path = NULL, .flags = NIM_ENGINE_DEFER_SYNC };
    nim_engine *e = nim_engine_start(&cfg);
    test_cond("engine", e != NULL);
    if (!e) return;
    int fd = nim_engine_fd(e);
    struct stat st;
    int fifo = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
    test_cond("the engine's fd is this build's kind", fifo == (strcmp(EXPECT_KIND, "pipe") == 0));
    test_cond("engine: not readable before any event", !readable(fd, 100));
    test_cond("engine: taking nothing leaves it quiet", nim_engine_take_events(e) == NULL && !readable(fd, 0));

    test_cond("submit", nim_engine_submit(e, NIM_CMD_VERIFY, 1, NULL) == 0);
    test_cond("engine: readable once the reply is queued", readable(fd, 5000));
    test_cond("engine: stays readable until taken", readable(fd, 0));
    nim_event *ev = nim_engine_take_events(e);
    test_cond("engine: the reply", ev && ev->type == NIM_EV_DONE && ev->req == 1);
    nim_event_free(ev);
    test_cond("engine: not readable after the take", !readable(fd, 0));

    nim_engine_rearm(e);
    test_cond("engine: readable after rearm", readable(fd, 0));
    test_cond("engine: rearm queues nothing", nim_engine_take_events(e) == NULL);
    test_cond("engine: quiet after that take", !readable(fd, 0));

    /* many commands, and the owner waits on the fd alone */
    int ok = 1;
    for (int i = 0; i < 500; i++) ok &= nim_engine_submit(e, NIM_CMD_VERIFY, (uint64_t)(2 + i), NULL) == 0;
    test_cond("submit 500", ok);
    test_cond("engine: 500 replies, each announced by the fd", replies_through_fd(e, 500));
    test_cond("engine: quiet after the last", !readable(fd, 100) && nim_engine_take_events(e) == NULL);

    /* the owner takes while the engine queues, one command at a time, both
     * as fast as they can: a take that cleared the fd outside the queue's
     * lock would lose a wakeup (the race is narrow: several rounds), and the
     * replies after it would wait behind a quiet fd (the engine signals only
     * into an empty queue) */
    int rounds_ok = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int got = 0, takes = 0;
        for (int i = 0; i < ROUND_CMDS; i++) {
            ok &= nim_engine_submit(e, NIM_CMD_RESET_CURR, (uint64_t)(1000 + i), NULL) == 0;
            if (!readable(fd, 0)) continue;
            takes++;
            got += take_replies(e);
        }
        if (round == 0) printf("engine: %d of %d replies in %d takes while submitting\n", got, ROUND_CMDS, takes);
        if (!replies_through_fd(e, ROUND_CMDS - got)) break;
        rounds_ok++;
    }
    test_cond("submit them all", ok);
    test_cond("engine: every reply announced by the fd, while submitting and after", rounds_ok == ROUNDS);
    test_cond("engine: quiet after them", !readable(fd, 100) && nim_engine_take_events(e) == NULL);
    nim_engine_free(e);
}

int main(void) {
    alarm(60);    /* a call that blocks fails the test instead of hanging it */
    setvbuf(stdout, NULL, _IOLBF, 0);   /* and what failed before it is shown */
    t_basic();
    t_two();
    t_other_thread();
    t_handoff();
    t_engine();
    return test_report();
}
