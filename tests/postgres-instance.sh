#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for tests/bench.sh: a cluster in DIR, listening on a Unix
# socket in DIR only, fsync and synchronous_commit on (the durability the benchmark compares
# with redb's), and a database `atacama` owned by the user `atacama`.
#
#   tests/postgres-instance.sh start DIR   # prints the URL to put in [store] url
#   tests/postgres-instance.sh stop DIR
#
# PG_SYNC_COMMIT=off starts it with synchronous_commit off, to tell the commit's flush apart
# from the rest of a delivery's cost; the benchmark's figures are with it on.
#
# Needs Debian's postgresql. initdb and pg_ctl refuse to run as root: as root they run as the
# postgres user the package creates, and DIR is handed to it.
set -euo pipefail
action=$1 dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL: apt-get install postgresql" >&2; exit 1; }
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
  rm -rf "$dir"; mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  as_owner "$bin/initdb" -D "$dir/cluster" -U atacama -A trust -E UTF8 --no-locale >"$dir/initdb.log"
  as_owner "$bin/pg_ctl" -D "$dir/cluster" -l "$dir/postgres.log" -w -o \
    "-k $dir -c listen_addresses='' -c fsync=on -c synchronous_commit=${PG_SYNC_COMMIT:-on} -c max_connections=200" \
    start >/dev/null
  as_owner "$bin/createdb" -h "$dir" -U atacama atacama
  # The socket directory, percent-encoded, as the host: libpq's form, which the postgres
  # crate reads too.
  python3 -c 'import sys, urllib.parse; print("postgresql://atacama@" + urllib.parse.quote(sys.argv[1], safe="") + "/atacama")' "$dir"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/cluster" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
