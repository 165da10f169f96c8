#!/usr/bin/env bash
# The memory ceiling under a burst: the simulator at RATE messages per wall second
# (default 10,000, ten times the embedded default's ~1,000) for SECONDS, with deep
# queues, once with processing.memory_limit CEILING and once with the ceiling off.
# Prints records in, records/s, peak RSS (from /usr/bin/time) and the pauses logged.
#   bench/memory_ceiling_bench.sh [RATE] [SECONDS] [CEILING]
set -euo pipefail
BIN=${TRIBUTARY:-build/release/tributary}
[ -x "$BIN" ] || BIN=build/ci/tributary
RATE=${1:-10000}
SECONDS_=${2:-60}
CEILING=${3:-200MiB}
WORK=${WORK:-/tmp/tributary-ceiling-bench}
mkdir -p "$WORK"
run() {
  local limit=$1
  cat > "$WORK/p-$limit.yaml" <<YAML
pipeline:
  name: burst
  batch_size: 1000
  queue_capacity: 4096
processing:
  memory_limit: $limit
sources:
  - name: sim
    type: simulator
    rate: $RATE
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max, p95]
sinks:
  - name: local
    type: sqlite
YAML
  rm -rf "$WORK/data-$limit"
  /usr/bin/time -v "$BIN" run "$WORK/p-$limit.yaml" --data-dir "$WORK/data-$limit" \
    --duration "${SECONDS_}s" --no-progress >"$WORK/run-$limit.log" 2>"$WORK/time-$limit.log"
  local input secs rss pauses
  input=$(sed -n 's/^ledger: input \([0-9]*\).*/\1/p' "$WORK/run-$limit.log")
  secs=$(awk -F': ' '/Elapsed/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time-$limit.log")
  rss=$(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$WORK/time-$limit.log")
  pauses=$(grep -c "sources paused" "$WORK/time-$limit.log" || true)
  balanced=$(grep -c "\[balanced\]" "$WORK/run-$limit.log" || true)
  echo "memory_limit $limit: records $input in ${secs}s ($(awk -v n="$input" -v s="$secs" 'BEGIN{printf "%.0f", n/s}')/s), peak RSS ${rss} MiB, pause reports $pauses, balanced $balanced"
}
run "$CEILING"
run off
