/* The wakeup fd: one readable descriptor that a thread signals and the
 * owner drains, so the owner can wait on it with poll() or put it in its
 * own event loop (the engine's event queue, core/events.c, nim_engine_fd).
 *
 * An eventfd on Linux; elsewhere, or when built with -DNIM_WAKEUP_PIPE (so
 * Linux builds and tests that path too: make test-c runs *_pipe tests), a
 * pipe whose read end is the fd. Both are non-blocking and close-on-exec.
 * The semantics are the same: readable from a signal until the next drain,
 * however many signals came between (they coalesce). No allocation.
 *
 * Threads: signal and drain from any thread, fd from any thread between
 * open and close. A signal that races with a drain may be consumed by it:
 * a caller whose fd must stay readable while it has work (events.c) signals,
 * and drains and then looks for work, under one lock. close only once no
 * thread can signal any more. */
#ifndef NIM_WAKEUP_H
#define NIM_WAKEUP_H

typedef struct nim_wakeup {
    int rfd;   /* the readable end: nim_wakeup_fd */
    int wfd;   /* the end a signal writes (rfd itself for an eventfd) */
} nim_wakeup;

/* Opens w, not signalled. 0, or -1 with errno set and both fds -1 (close
 * is then a no-op). */
int nim_wakeup_open(nim_wakeup *w);
/* Closes both ends; the fds become -1, so a second close does nothing. */
void nim_wakeup_close(nim_wakeup *w);
/* Makes the fd readable (never blocks: a full pipe is readable already). */
void nim_wakeup_signal(nim_wakeup *w);
/* Makes the fd not readable (never blocks: reads until nothing is left). */
void nim_wakeup_drain(nim_wakeup *w);
/* The descriptor to poll for POLLIN. */
int nim_wakeup_fd(const nim_wakeup *w);
/* "eventfd" or "pipe": which of the two this build uses. */
const char *nim_wakeup_kind(void);

#endif
