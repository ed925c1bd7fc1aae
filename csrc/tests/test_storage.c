/* nim-server's storage interface (server/db.h) on each backend: a SQLite
 * file always, PostgreSQL when NIM_TEST_PG names a cluster's socket folder
 * (make test-pg: spec/pg_cluster.sh). What both must do the same way, and
 * what PostgreSQL must never do: report a commit of a transaction a failed
 * statement aborted. */
#include "tests/testhelp.h"
#include "server/db.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static nim_proto_msg msg(const char *id_client, const char *text) {
    nim_proto_msg m = { 0 };
    m.id_client = id_client;
    m.scene = NIM_SCENE_P2P;
    m.from = "alice";
    m.from_device = "d1";
    m.to = "bob";
    m.time = 1700000000000;
    m.type = "text";
    m.text = text;
    return m;
}

static void scenario(const char *what, const char *path) {
    char err[512], d[640];
    srv_db *db = srv_db_open(path, err, sizeof err);
    snprintf(d, sizeof d, "%s: opens (%s)", what, db ? "ok" : err);
    test_cond(d, db != NULL);
    if (!db) return;

    /* credentials: blobs and integers round-trip */
    srv_cred c = { .iterations = 1234 }, got = { 0 };
    for (int i = 0; i < SRV_SALT_LEN; i++) c.salt[i] = (uint8_t)(i * 7);
    for (int i = 0; i < SRV_HASH_LEN; i++) c.hash[i] = (uint8_t)(255 - i);
    c.salt[3] = 0;   /* a zero byte inside a blob */
    int created = 0;
    int rc = srv_db_put_cred(db, "alice", &c, &created);
    snprintf(d, sizeof d, "%s: an account is created", what);
    test_cond(d, rc == NIM_CODE_OK && created);
    rc = srv_db_get_cred(db, "alice", &got);
    snprintf(d, sizeof d, "%s: its credential reads back byte for byte", what);
    test_cond(d, rc == NIM_CODE_OK && got.iterations == 1234 && !memcmp(got.salt, c.salt, SRV_SALT_LEN) &&
                 !memcmp(got.hash, c.hash, SRV_HASH_LEN));
    snprintf(d, sizeof d, "%s: a name differing only in case is refused", what);
    test_cond(d, srv_db_put_cred(db, "Alice", &c, NULL) == NIM_CODE_FORBIDDEN);

    /* messages: ids grow, a taken idClient writes nothing */
    nim_proto_msg m1 = msg("c1", "one"), m2 = msg("c2", "two"), again = msg("c1", "other");
    rc = srv_db_begin(db);
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(db, &m1);
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(db, &m2);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(db);
    snprintf(d, sizeof d, "%s: two messages stored, ids in order", what);
    test_cond(d, rc == NIM_CODE_OK && m1.id_server > 0 && m2.id_server > m1.id_server);
    int64_t bytes = 0;
    srv_db_stored_bytes(db, "alice", &bytes);
    rc = srv_db_begin(db);
    int dup = rc == NIM_CODE_OK ? srv_db_insert_msg(db, &again) : rc;
    rc = srv_db_commit(db);
    int64_t after = 0;
    srv_db_stored_bytes(db, "alice", &after);
    cJSON *stored = NULL;
    int found = srv_db_find_client_msg(db, "alice", "c1", &stored);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(stored, "text"));
    snprintf(d, sizeof d, "%s: a taken idClient is refused and writes nothing", what);
    test_cond(d, dup == NIM_CODE_FORBIDDEN && rc == NIM_CODE_OK && after == bytes && found == NIM_CODE_OK &&
                 text && !strcmp(text, "one"));
    cJSON_Delete(stored);

    /* a failed statement inside a transaction: what was written before it
     * in the transaction may be kept only if the commit says so */
    nim_proto_msg m3 = msg("c3", "three");
    rc = srv_db_begin(db);
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(db, &m3);
    int failed = srv_db_insert_inbox(db, NULL, m3.id_server, "p2p-bob", 1);   /* NOT NULL */
    int commit = srv_db_commit(db);
    if (commit != NIM_CODE_OK) srv_db_rollback(db);
    stored = NULL;
    found = srv_db_find_client_msg(db, "alice", "c3", &stored);
    cJSON_Delete(stored);
    snprintf(d, sizeof d, "%s: after a failed statement the commit tells the truth (%s)", what,
             commit == NIM_CODE_OK ? "committed" : "refused");
    test_cond(d, rc == NIM_CODE_OK && failed == NIM_CODE_SERVER &&
                 (commit == NIM_CODE_OK ? found == NIM_CODE_OK : found == NIM_CODE_NOT_FOUND));
    snprintf(d, sizeof d, "%s: and the next transaction works", what);
    nim_proto_msg m4 = msg("c4", "four");
    rc = srv_db_begin(db);
    if (rc == NIM_CODE_OK) rc = srv_db_insert_msg(db, &m4);
    if (rc == NIM_CODE_OK) rc = srv_db_commit(db);
    test_cond(d, rc == NIM_CODE_OK);
    srv_db_close(db);
}

int main(void) {
    char dir[] = "/tmp/nim-storage-XXXXXX", path[600];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/server.db", dir);
    scenario("sqlite", path);
    const char *pg = getenv("NIM_TEST_PG");
    if (pg && *pg) {
        char cmd[1024], uri[900];
        snprintf(cmd, sizeof cmd, "psql -q -X -h '%s' -U nim -d postgres -c 'CREATE DATABASE storage_%d' >/dev/null",
                 pg, (int)getpid());
        int ok = system(cmd) == 0;
        test_cond("postgresql: a database for the test", ok);
        snprintf(uri, sizeof uri, "postgresql:///storage_%d?host=%s&user=nim", (int)getpid(), pg);
        if (ok) scenario("postgresql", uri);
    } else {
        printf("# postgresql: skipped (NIM_TEST_PG is not set; make test-pg runs it)\n");
    }
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_report();
}
