#!/usr/bin/env bash
# Backfill throughput and peak RSS over a simulator archive (generated once into
# $WORK, default /tmp/tributary-backfill-bench; never commit it).
#   bench/backfill_bench.sh [DAYS] [DEVICES]
# 1 day × 370 devices at 60 s ≈ 0.53 M messages ≈ 2 M readings; 10 days ≈ 20 M readings
# (same devices over a longer time: open window state stays the same, the archive grows).
# The archive has no arrival times, so the two devices whose clocks run minutes ahead are
# not held to `max_future`; the watermark passes over them (`processing.clock_outliers`,
# BENCHMARKS.md "Backfill"), so nearly every window is emitted once.
# `run` over the same file gives the same ledger.
# Environment:
#   OUTPUT=windows (default) sqlite store of windows, late and quarantine (the readings are
#          the archive itself); OUTPUT=all also stores every accepted reading in SQLite;
#          OUTPUT=parquet windows in SQLite and every reading in the Parquet archive.
#   WORKERS=N decode workers (default: one per core); MEMORY=512MiB ceiling for chunks.
#   COMPRESS=gz|zst reads a compressed copy of the archive.
set -euo pipefail
BIN=${TRIBUTARY:-build/release/tributary}
[ -x "$BIN" ] || BIN=build/ci/tributary
DAYS=${1:-1}
DEVICES=${2:-370}
WORK=${WORK:-/tmp/tributary-backfill-bench}
OUTPUT=${OUTPUT:-windows}
mkdir -p "$WORK"
ARCHIVE="$WORK/sim-${DAYS}d-${DEVICES}.ndjson"
if [ ! -s "$ARCHIVE" ]; then
  "$BIN" simulate --seed 1 --devices "$DEVICES" --start 2024-05-01T00:00:00Z \
    --duration "${DAYS}d" --interval 60s -o "$ARCHIVE"
fi
INPUT_FILE="$ARCHIVE"
case "${COMPRESS:-}" in
  gz) INPUT_FILE="$ARCHIVE.gz"; [ -s "$INPUT_FILE" ] || gzip -k -6 "$ARCHIVE" ;;
  zst) INPUT_FILE="$ARCHIVE.zst"; [ -s "$INPUT_FILE" ] || zstd -q -3 -k "$ARCHIVE" ;;
esac
case "$OUTPUT" in
  windows) SINKS="  - name: local
    type: sqlite
    tables: [windows, quarantine, late]" ;;
  all) SINKS="  - name: local
    type: sqlite" ;;
  parquet) SINKS="  - name: local
    type: sqlite
    tables: [windows, quarantine, late]
  - name: archive
    type: parquet
    tables: [readings]" ;;
  *) echo "OUTPUT must be windows, all or parquet" >&2; exit 2 ;;
esac
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
$SINKS
YAML
rm -rf "$WORK/out"
ARGS=(backfill --config "$WORK/p.yaml" --output "$WORK/out" --no-progress)
[ -n "${WORKERS:-}" ] && ARGS+=(--workers "$WORKERS")
[ -n "${MEMORY:-}" ] && ARGS+=(--memory "$MEMORY")
/usr/bin/time -v "$BIN" "${ARGS[@]}" "$INPUT_FILE" >"$WORK/run.log" 2>"$WORK/time.log"
INPUT=$(sed -n 's/^ledger: input \([0-9]*\).*/\1/p' "$WORK/run.log")
SECS=$(awk -F': ' '/Elapsed/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.log")
RSS=$(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$WORK/time.log")
CPU=$(awk -F': ' '/Percent of CPU/ {print $2}' "$WORK/time.log")
echo "$(basename "$INPUT_FILE") output=$OUTPUT: readings $INPUT in ${SECS}s:" \
  "$(awk -v n="$INPUT" -v s="$SECS" 'BEGIN{printf "%.0f", n/s}') readings/s," \
  "peak RSS ${RSS} MiB, CPU $CPU"
