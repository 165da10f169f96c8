#!/usr/bin/env bash
# Throughput of the postgres sink against a PostgreSQL 15 + PostGIS server of its own:
# initdb into a temporary folder (as the unprivileged user `postgres`, or the caller when
# not root), start it on a free loopback port, run build/ci/bench/postgres_sink_bench,
# stop the server and remove the folder.
#
#   bench/postgres_bench.sh [benchmark arguments...]
#   bench/postgres_bench.sh --benchmark_filter=Readings --benchmark_min_time=10
#
# The server runs with PostgreSQL's stock settings (fsync, synchronous_commit and
# full_page_writes on; shared_buffers 128 MB, max_wal_size 1 GB). Settings for bulk
# ingest were slower here: with shared_buffers 1 GB, max_wal_size 8 GB and
# checkpoint_timeout 30 min the sink wrote 224,000 rows/s against 300,000 (BENCHMARKS.md).
# PG_EXTRA="-c name=value ..." passes settings of your own.
# BENCH=path picks another benchmark binary; WORK=dir keeps the server's folder there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-$root/build/ci/bench/postgres_sink_bench}
pgbin=/usr/lib/postgresql/15/bin
[[ -x $bench ]] || { echo "postgres_bench: $bench is not built" >&2; exit 1; }
[[ -x $pgbin/postgres ]] || { echo "postgres_bench: PostgreSQL 15 is not installed" >&2; exit 1; }

work=${WORK:-$(mktemp -d /tmp/tributary-pgbench.XXXXXX)}
mkdir -p "$work"
run_as=()
if [[ $(id -u) == 0 ]]; then
  chown postgres: "$work"
  run_as=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  "${run_as[@]}" "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  [[ -n ${WORK:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

"${run_as[@]}" "$pgbin/initdb" -D "$work/data" -U tributary --auth=trust -E UTF8 \
  --locale=C.UTF-8 >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log" >&2; exit 1; }
# shellcheck disable=SC2086
"${run_as[@]}" "$pgbin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w -o \
  "-p $port -k $work -c listen_addresses=127.0.0.1 ${PG_EXTRA:-}" start >/dev/null

echo "postgres_bench: PostgreSQL 15 on 127.0.0.1:$port (folder $work)" >&2
TRIBUTARY_BENCH_PG="host=127.0.0.1 port=$port dbname=postgres user=tributary" "$bench" "$@"
