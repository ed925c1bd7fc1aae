/* The nim-server process for integration tests: finds the binary, runs
 * it on a free loopback port (--listen 127.0.0.1:0, reading its "listening
 * on" line) with a database in a fresh temporary directory, registers
 * accounts, stops it and removes the directory.
 *
 * The server binary: $NIM_SERVER, else ../nim-server next to the test
 * binary's directory (build/X/tests/test_foo -> build/X/nim-server).
 * Header-only, like wsclient.h (include that first). */
#ifndef NIM_TESTS_SERVERPROC_H
#define NIM_TESTS_SERVERPROC_H
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_server[PATH_MAX];
static char g_dir[64];
static char g_db[PATH_MAX];
static pid_t g_pid = -1;
static int g_port;
static long g_fsize_limit;   /* > 0: the server may not write files past this (a full disk) */
/* PBKDF2 iterations for the server and adduser: the tests' logins are many,
 * and 600,000 (the default, "" here) costs 0.2 s each; a test of the
 * default sets "". */
static const char *g_kdf = "1000";
/* Messages a second per account: the tests send bursts of thousands; a
 * test of the default sets "". */
static const char *g_send_rate = "1000000";

/* Starts nim-server and waits for its "listening on" line. 0 on success. */
static inline int server_start3(const char *extra, const char *extra2, const char *extra3) {
    int out[2];
    if (pipe(out) != 0) return -1;
    g_pid = fork();
    if (g_pid < 0) return -1;
    if (g_pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        if (g_fsize_limit > 0) {
            /* writes past the limit fail with EFBIG (SQLite: SQLITE_FULL), as on a full disk */
            struct rlimit rl = { (rlim_t)g_fsize_limit, RLIM_INFINITY };   /* the test may raise it */
            signal(SIGXFSZ, SIG_IGN);
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        const char *argv[16];
        int k = 0;
        argv[k++] = g_server;
        if (*g_kdf) { argv[k++] = "--kdf-iterations"; argv[k++] = g_kdf; }
        if (*g_send_rate) { argv[k++] = "--max-send-rate"; argv[k++] = g_send_rate; }
        argv[k++] = "--listen"; argv[k++] = "127.0.0.1:0";
        argv[k++] = "--db"; argv[k++] = g_db;
        argv[k++] = extra; argv[k++] = extra2; argv[k++] = extra3;   /* NULL ends them */
        argv[k] = NULL;
        execv(g_server, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    char line[256];
    size_t n = 0;
    int64_t deadline = test_now_ms() + 10000;
    while (n < sizeof line - 1) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        int64_t left = deadline - test_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) break;
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0) break;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(out[0]); /* the server writes nothing else to stdout */
    if (sscanf(line, "listening on 127.0.0.1:%d", &g_port) != 1 || g_port <= 0) {
        fprintf(stderr, "no 'listening on' line from %s (got '%s')\n", g_server, line);
        if (g_pid > 0) { kill(g_pid, SIGKILL); waitpid(g_pid, NULL, 0); g_pid = -1; }
        return -1;
    }
    return 0;
}

static inline int server_start(const char *extra) { return server_start3(extra, NULL, NULL); }

/* Sends sig and reaps the server; returns its exit status, or 128+signal. */
static inline int server_stop(int sig) {
    if (g_pid <= 0) return -1;
    kill(g_pid, sig);
    int st = 0;
    while (waitpid(g_pid, &st, 0) < 0 && errno == EINTR) {}
    g_pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static inline int run_server_cmd(const char *a1, const char *a2, const char *a3) {
    pid_t p = fork();
    if (p == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (*g_kdf) execl(g_server, g_server, "--kdf-iterations", g_kdf, "--db", g_db, a1, a2, a3, (char *)NULL);
        else execl(g_server, g_server, "--db", g_db, a1, a2, a3, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int adduser(const char *account, const char *token) {
    return run_server_cmd("adduser", account, token);
}

/* Finds the server binary and makes the temporary directory; 0 on success
 * (else says why on stderr). */
static inline int server_setup(const char *argv0, const char *who) {
    const char *env = getenv("NIM_SERVER");
    if (env && *env) snprintf(g_server, sizeof g_server, "%s", env);
    else {
        snprintf(g_server, sizeof g_server, "%s", argv0);
        char *slash = strrchr(g_server, '/');
        if (slash) { *slash = 0; slash = strrchr(g_server, '/'); }
        if (slash) snprintf(slash + 1, sizeof g_server - (size_t)(slash + 1 - g_server), "nim-server");
        else snprintf(g_server, sizeof g_server, "./build/nim-server");
    }
    if (access(g_server, X_OK) != 0) {
        fprintf(stderr, "%s: no server binary at %s (set NIM_SERVER)\n", who, g_server);
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/nim-server-test-XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return -1; }
    snprintf(g_db, sizeof g_db, "%s/server.db", g_dir);
    return 0;
}

/* Kills a server still running and removes the temporary directory. */
static inline void server_teardown(const char *who) {
    if (g_pid > 0) server_stop(SIGKILL);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "%s: could not remove %s\n", who, g_dir);
}

#endif
