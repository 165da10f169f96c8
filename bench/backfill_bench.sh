#!/usr/bin/env bash
# Backfill throughput and peak RSS over a simulator archive (generated once into
# $WORK, default /tmp/tributary-backfill-bench; never commit it).
#   bench/backfill_bench.sh [DAYS] [DEVICES]
# 1 day × 500 devices at 60 s ≈ 0.72 M messages ≈ 2.7 M readings.
set -euo pipefail
BIN=${TRIBUTARY:-build/release/tributary}
[ -x "$BIN" ] || BIN=build/ci/tributary
DAYS=${1:-1}
DEVICES=${2:-500}
WORK=${WORK:-/tmp/tributary-backfill-bench}
mkdir -p "$WORK"
ARCHIVE="$WORK/sim-${DAYS}d-${DEVICES}.ndjson"
if [ ! -s "$ARCHIVE" ]; then
  "$BIN" simulate --seed 1 --devices "$DEVICES" --start 2024-05-01T00:00:00Z \
    --duration "${DAYS}d" --interval 60s -o "$ARCHIVE"
fi
cat > "$WORK/p.yaml" <<YAML
sources:
  - name: archive
    type: file
    path: $ARCHIVE
windows:
  - name: dev
    type: tumbling
    size: 10m
    group_by: device
sinks:
  - name: local
    type: sqlite
YAML
rm -rf "$WORK/out"
/usr/bin/time -v "$BIN" backfill --config "$WORK/p.yaml" --output "$WORK/out" --no-progress \
  "$ARCHIVE" >"$WORK/run.log" 2>"$WORK/time.log"
INPUT=$(sed -n 's/^ledger: input \([0-9]*\).*/\1/p' "$WORK/run.log")
SECS=$(awk -F': ' '/Elapsed/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.log")
RSS=$(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$WORK/time.log")
echo "readings $INPUT in ${SECS}s: $(awk -v n="$INPUT" -v s="$SECS" 'BEGIN{printf "%.0f", n/s}') readings/s, peak RSS ${RSS} MiB"
