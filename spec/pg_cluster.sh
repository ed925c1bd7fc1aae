#!/bin/sh
# Runs a command beside a throwaway PostgreSQL cluster: initdb into a
# temporary folder, listening on a unix socket there only (no port to
# clash), NIM_TEST_PG set to that folder for the command, and the cluster
# stopped and removed however the command ends. fsync is off (tests kill
# servers, never the machine) unless NIM_PG_FSYNC=on (the benchmarks). As root the cluster runs
# as the postgres user (initdb and pg_ctl refuse root).
#   spec/pg_cluster.sh make test-lua BUSTED_ARGS='--pattern=net_'
set -eu
PGBIN=$(pg_config --bindir 2>/dev/null || true)
[ -x "$PGBIN/initdb" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ ! -x "$PGBIN/initdb" ]; then
  echo "pg_cluster: no PostgreSQL server found (apt-get install postgresql)" >&2
  exit 1
fi
PGT=$(mktemp -d /tmp/nim-pg.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$PGT"
stop() {
  as_pg "$PGBIN/pg_ctl" -D "$PGT/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PGT"
}
trap stop EXIT
trap 'exit 130' INT TERM
as_pg "$PGBIN/initdb" -D "$PGT/data" -U nim -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$PGT/initdb.log" 2>&1 \
  || { cat "$PGT/initdb.log" >&2; exit 1; }
as_pg "$PGBIN/pg_ctl" -D "$PGT/data" -l "$PGT/log" -w -t 30 \
  -o "-c listen_addresses='' -c unix_socket_directories='$PGT' -c fsync=${NIM_PG_FSYNC:-off} -c max_connections=200" start >/dev/null \
  || { cat "$PGT/log" >&2; exit 1; }
echo "pg_cluster: PostgreSQL $("$PGBIN/postgres" --version | sed 's/^[^0-9]*\([0-9.]*\).*/\1/') on $PGT"
NIM_TEST_PG=$PGT "$@"
