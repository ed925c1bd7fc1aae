/* The wakeup fd (see wakeup.h): an eventfd on Linux, a non-blocking
 * close-on-exec pipe elsewhere or with -DNIM_WAKEUP_PIPE. Only this file
 * reads NIM_WAKEUP_PIPE, so a build may link either object. */
#include "core/wakeup.h"
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#if defined(__linux__) && !defined(NIM_WAKEUP_PIPE)
#define USE_EVENTFD 1
#include <sys/eventfd.h>
#else
#define USE_EVENTFD 0
#include <fcntl.h>
#endif

const char *nim_wakeup_kind(void) { return USE_EVENTFD ? "eventfd" : "pipe"; }

int nim_wakeup_fd(const nim_wakeup *w) { return w->rfd; }

#if USE_EVENTFD

int nim_wakeup_open(nim_wakeup *w) {
    w->rfd = w->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return w->rfd < 0 ? -1 : 0;
}

void nim_wakeup_close(nim_wakeup *w) {
    if (w->rfd >= 0) close(w->rfd);
    w->rfd = w->wfd = -1;
}

void nim_wakeup_signal(nim_wakeup *w) {
    uint64_t one = 1;
    while (write(w->wfd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* One read resets the counter; EAGAIN when it was zero. */
void nim_wakeup_drain(nim_wakeup *w) {
    uint64_t v;
    while (read(w->rfd, &v, sizeof v) < 0 && errno == EINTR) {}
}

#else

/* pipe() and fcntl(), not pipe2(): POSIX before 2024 has no pipe2 and macOS
 * none at all. (A fork between the two calls in another thread could leak
 * the fds into that child's exec: the price of portability.) */
static int set_flags(int fd) {
    int fl = fcntl(fd, F_GETFL);
    int fd_fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fd_fl < 0) return -1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC);
}

int nim_wakeup_open(nim_wakeup *w) {
    int p[2];
    w->rfd = w->wfd = -1;
    if (pipe(p) < 0) return -1;
    if (set_flags(p[0]) < 0 || set_flags(p[1]) < 0) {
        int err = errno;
        close(p[0]);
        close(p[1]);
        errno = err;
        return -1;
    }
    w->rfd = p[0];
    w->wfd = p[1];
    return 0;
}

void nim_wakeup_close(nim_wakeup *w) {
    if (w->rfd >= 0) close(w->rfd);
    if (w->wfd >= 0) close(w->wfd);
    w->rfd = w->wfd = -1;
}

/* One byte; EAGAIN means the pipe is full, so readable already. */
void nim_wakeup_signal(nim_wakeup *w) {
    char b = 1;
    while (write(w->wfd, &b, 1) < 0 && errno == EINTR) {}
}

/* Reads until the pipe is empty: a short read emptied it, EAGAIN found it
 * empty. Signals coalesce into however many bytes wait, at most the pipe's
 * capacity, so this is one read unless someone signalled hundreds of times. */
void nim_wakeup_drain(nim_wakeup *w) {
    char buf[256];
    for (;;) {
        ssize_t r = read(w->rfd, buf, sizeof buf);
        if (r == (ssize_t)sizeof buf) continue;
        if (r < 0 && errno == EINTR) continue;
        return;
    }
}

#endif
