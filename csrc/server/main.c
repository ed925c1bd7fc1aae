/* nim-server: the reference server of the nim protocol (docs/protocol.md).
 *
 *   nim-server --listen HOST:PORT --db PATH [--open-registration] [--idle SECONDS]
 *              [--max-state POINTERS,RECEIPTS,TOPS] [--tls-cert FILE --tls-key FILE]
 *              [--kdf-iterations N] [--verbose]
 *   nim-server --db PATH [--kdf-iterations N] adduser ACCOUNT [TOKEN]   (no TOKEN: from stdin)
 *
 * PATH is a SQLite file or a libpq URI (postgresql://...: db_pg.c).
 * PORT 0 picks a free port; the real one is printed in the single line
 * "listening on HOST:PORT" once connections are accepted. SIGINT/SIGTERM end
 * the event loop; the database is closed cleanly. Three threads: the
 * loop (ws.c: sockets only), the request thread (reqthread.c: handlers and
 * storage) and one that derives login credentials (auth.c). */
#include "server/server.h"
#include "server/auth.h"
#include "server/admit.h"
#include "server/throttle.h"
#include <sys/resource.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>


static void usage(FILE *to) {
    fprintf(to,
        "usage: nim-server --listen HOST:PORT --db PATH [--open-registration] [--idle SECONDS]\n"
        "                  [--max-state POINTERS,RECEIPTS,TOPS] [--tls-cert FILE --tls-key FILE] [--verbose]\n"
        "                  [--kdf-iterations N] [--max-connections N] [--max-connections-per-address N]\n"
        "                  [--max-send-rate N] [--max-output-mb N] [--max-devices N] [--max-storage-mb N]\n"
        "       nim-server --db PATH [--kdf-iterations N] adduser ACCOUNT [TOKEN]   (no TOKEN: read from stdin)\n"
        "       nim-server --version\n"
        "PORT 0 picks a free port; the server prints \"listening on HOST:PORT\" when ready.\n"
        "--db: a SQLite file, or a PostgreSQL database as a libpq URI (postgresql://...)\n"
        "that several nim-servers may share.\n"
        "--max-state: per-account caps on sessions with a read pointer, peers sent a\n"
        "receipt, sticky-top sessions (default %d,%d,%d; tops at most %d).\n"
        "--tls-cert, --tls-key: PEM files; the listener then speaks only wss:// (TLS).\n"
        "--kdf-iterations: PBKDF2-HMAC-SHA256 iterations for new and upgraded tokens\n"
        "(default %d, at least %d).\n"
        "--max-connections N (default %d, and below the descriptor limit),\n"
        "--max-connections-per-address N (default %d): refused at accept beyond them.\n"
        "--max-send-rate N: messages a second per account, bursts of 2N (default %d).\n"
        "--max-output-mb N: unsent output of all connections (default %d MiB; the slowest readers are cut).\n"
        "--max-devices N: devices per account seen in %d days (default %d).\n"
        "--max-storage-mb N: MiB of messages an account may have sent (default %d).\n",
        SRV_MAX_POINTERS, SRV_MAX_RECEIPTS, SRV_MAX_TOPS, SRV_MAX_TOPS, SRV_KDF_ITERATIONS, SRV_KDF_MIN_ITERATIONS,
        SRV_MAX_CONNS_DEFAULT, SRV_MAX_PER_ADDR_DEFAULT, SRV_SEND_RATE_DEFAULT, SRV_MAX_OUTPUT_MB,
        SRV_DEVICE_DAYS, SRV_MAX_DEVICES, SRV_MAX_STORAGE_MB);
}

/* "P,R,T": three integers 0 ... 10^9, nothing else. 0 or -1. */
static int parse_caps(const char *s, long caps[3]) {
    for (int k = 0; k < 3; k++) {
        char *end;
        errno = 0;
        if (*s < '0' || *s > '9') return -1;
        caps[k] = strtol(s, &end, 10);
        if (errno || caps[k] > 1000000000L || *end != (k < 2 ? ',' : '\0')) return -1;
        s = end + (k < 2);
    }
    return 0;
}

/* Splits "127.0.0.1:8787", "[::1]:8787" or "localhost:0" into host and port. */
static int parse_listen(const char *s, char *host, size_t hostlen, int *port) {
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= hostlen) return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= hostlen || colon == s) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535) return -1;
    *port = (int)p;
    return 0;
}

/* adduser: token NULL reads it from stdin (its first line), so it never
 * shows in ps. */
static int cmd_adduser(const char *dbpath, const char *account, const char *token, int iterations) {
    if (!nim_proto_valid_account(account)) {
        fprintf(stderr, "nim-server: invalid account name (1..64 of A-Z a-z 0-9 _ . @ -)\n");
        return 2;
    }
    char line[NIM_PROTO_MAX_TOKEN + 3];
    if (!token) {
        if (!fgets(line, sizeof line, stdin)) line[0] = '\0';
        line[strcspn(line, "\r\n")] = '\0';
        token = line;
    }
    size_t tl = strlen(token);
    if (tl == 0 || tl > NIM_PROTO_MAX_TOKEN || !nim_proto_utf8_valid(token, tl)) {
        fprintf(stderr, "nim-server: a token is 1..%d bytes of UTF-8\n", NIM_PROTO_MAX_TOKEN);
        return 2;
    }
    char err[512];
    srv_db *db = srv_db_open(dbpath, err, sizeof err);
    if (!db) { fprintf(stderr, "nim-server: %s\n", err); return 1; }
    int created = 0;
    srv_cred cred;
    int rc = srv_cred_make(token, iterations, &cred) == 0 ? srv_db_put_cred(db, account, &cred, &created)
                                                          : NIM_CODE_SERVER;
    OPENSSL_cleanse(line, sizeof line);
    srv_db_close(db);
    if (rc == NIM_CODE_FORBIDDEN) {
        fprintf(stderr, "nim-server: %s differs only in case from an existing account\n", account);
        return 2;
    }
    if (rc != NIM_CODE_OK) { fprintf(stderr, "nim-server: could not store the account\n"); return 1; }
    printf("%s %s\n", created ? "added" : "updated token of", account);
    return 0;
}

int main(int argc, char **argv) {
    const char *listen = NULL, *dbpath = NULL;
    int open_reg = 0, verbose = 0, idle = 120, i;
    long caps[3] = { SRV_MAX_POINTERS, SRV_MAX_RECEIPTS, SRV_MAX_TOPS };
    const char *max_state = NULL, *tls_cert = NULL, *tls_key = NULL;
    long kdf = SRV_KDF_ITERATIONS, max_conns = SRV_MAX_CONNS_DEFAULT, max_per_addr = SRV_MAX_PER_ADDR_DEFAULT;
    long send_rate = SRV_SEND_RATE_DEFAULT, max_output = SRV_MAX_OUTPUT_MB, max_devices = SRV_MAX_DEVICES;
    long max_storage = SRV_MAX_STORAGE_MB;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) dbpath = argv[++i];
        else if (strcmp(argv[i], "--open-registration") == 0) open_reg = 1;
        else if (strcmp(argv[i], "--verbose") == 0) verbose = 1;
        else if (strcmp(argv[i], "--idle") == 0 && i + 1 < argc) idle = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-state") == 0 && i + 1 < argc) max_state = argv[++i];
        else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) tls_cert = argv[++i];
        else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) tls_key = argv[++i];
        else if ((strcmp(argv[i], "--max-connections") == 0 || strcmp(argv[i], "--max-connections-per-address") == 0 ||
                  strcmp(argv[i], "--max-send-rate") == 0 || strcmp(argv[i], "--max-output-mb") == 0 ||
                  strcmp(argv[i], "--max-devices") == 0 || strcmp(argv[i], "--max-storage-mb") == 0) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 1000000L) {
                fprintf(stderr, "nim-server: %s wants 1 ... 1000000, got %s\n", argv[i], argv[i + 1]);
                return 2;
            }
            if (strcmp(argv[i], "--max-connections") == 0) max_conns = v;
            else if (strcmp(argv[i], "--max-send-rate") == 0) send_rate = v;
            else if (strcmp(argv[i], "--max-output-mb") == 0) max_output = v;
            else if (strcmp(argv[i], "--max-devices") == 0) max_devices = v;
            else if (strcmp(argv[i], "--max-storage-mb") == 0) max_storage = v;
            else max_per_addr = v;
            i++;
        }
        else if (strcmp(argv[i], "--kdf-iterations") == 0 && i + 1 < argc) {
            char *end;
            kdf = strtol(argv[++i], &end, 10);
            if (*end || kdf < SRV_KDF_MIN_ITERATIONS || kdf > 100000000L) {
                fprintf(stderr, "nim-server: --kdf-iterations wants %d ... 100000000, got %s\n",
                        SRV_KDF_MIN_ITERATIONS, argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return 0; }
        else if (strcmp(argv[i], "--version") == 0) { printf("nim-server %s\n", NIM_VERSION); return 0; }
        else break;
    }
    if (i < argc && strcmp(argv[i], "adduser") == 0) {
        if (!dbpath || (argc - i != 2 && argc - i != 3)) { usage(stderr); return 2; }
        return cmd_adduser(dbpath, argv[i + 1], argc - i == 3 ? argv[i + 2] : NULL, (int)kdf);
    }
    if (i < argc || !listen || !dbpath || idle < 0) { usage(stderr); return 2; }
    if (max_state && (parse_caps(max_state, caps) != 0 || caps[2] > SRV_MAX_TOPS)) {
        fprintf(stderr, "nim-server: --max-state wants POINTERS,RECEIPTS,TOPS (TOPS at most %d), got %s\n",
                SRV_MAX_TOPS, max_state);
        return 2;
    }

    if (!tls_cert != !tls_key) {
        fprintf(stderr, "nim-server: --tls-cert and --tls-key go together\n");
        return 2;
    }
    for (const char *f = tls_cert; f; f = f == tls_cert ? tls_key : NULL) {
        FILE *t = fopen(f, "r");
        if (!t) { fprintf(stderr, "nim-server: cannot read %s: %s\n", f, strerror(errno)); return 2; }
        fclose(t);
    }

    char host[256];
    int port;
    if (parse_listen(listen, host, sizeof host, &port) != 0) {
        fprintf(stderr, "nim-server: --listen wants HOST:PORT, got %s\n", listen);
        return 2;
    }

    char err[512];
    srv.db = srv_db_open(dbpath, err, sizeof err);
    if (!srv.db) { fprintf(stderr, "nim-server: %s\n", err); return 1; }
    srv.open_registration = open_reg;
    srv.idle_timeout_s = idle;
    srv.kdf_iterations = (int)kdf;
    /* as many descriptors as allowed; the caps stay below them, so accept
     * never meets EMFILE */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max > 1048576 ? 1048576 : nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
        getrlimit(RLIMIT_NOFILE, &nofile);
    }
    long fds = nofile.rlim_cur > 1048576 ? 1048576 : (long)nofile.rlim_cur;
    if (max_conns > fds - SRV_FD_RESERVE) max_conns = fds - SRV_FD_RESERVE;
    if (max_conns < 1 || srv_admit_init((int)fds) != 0) {
        fprintf(stderr, "nim-server: too few file descriptors (%ld)\n", fds);
        return 1;
    }
    srv.max_conns = (int)max_conns;
    srv.max_per_addr = (int)max_per_addr;
    srv.send_rate = (int)send_rate;
    srv.max_output = (size_t)max_output * 1024 * 1024;
    srv.max_devices = (int)max_devices;
    srv.max_storage = (int64_t)max_storage << 20;
    uint32_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, sizeof seed) != 1) seed = (uint32_t)srv_now_ms() ^ (uint32_t)getpid();
    srv_throttle_init(seed);
    for (int k = 0; k < 3; k++) srv.caps[k] = caps[k];
    srv.last_msg_time = srv_db_last_msg_time(srv.db);
    srv.server_id = srv_db_server_id(srv.db);

    int real_port = srv_ws_open(host, port, tls_cert, tls_key, verbose);
    if (real_port < 0) {
        srv_db_close(srv.db);
        return 1;
    }
    if (srv_auth_start() != 0 || srv_reqthread_start() != 0) {
        fprintf(stderr, "nim-server: cannot start the credentials and request threads\n");
        srv_auth_stop();
        srv_ws_close();
        srv_db_close(srv.db);
        return 1;
    }

    if (strchr(host, ':')) printf("listening on [%s]:%d\n", host, real_port);
    else printf("listening on %s:%d\n", host, real_port);
    fflush(stdout);

    srv_ws_serve();

    srv_reqthread_stop();
    srv_auth_stop();
    srv_ws_close();
    srv_reqthread_close();
    srv_admit_free();
    srv_db_close(srv.db);
    if (verbose) fprintf(stderr, "nim-server: stopped\n");
    return 0;
}
