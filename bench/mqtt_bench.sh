#!/usr/bin/env bash
# MQTT ingest through a local Mosquitto, compared with mosquitto_sub on the same load.
#   bench/mqtt_bench.sh [MESSAGES] [QOS...]        e.g. bench/mqtt_bench.sh 200000 0 1
# For each QoS: a fresh broker on a free loopback port; the same N one-reading messages
# are published (one message per line: `mosquitto_pub -l` at QoS 0; at QoS 1 and 2
# bench/mqtt_pub_bench, which waits for every acknowledgement — Debian 12's
# `mosquitto_pub -l` ends with QoS 1 messages unsent) once to `mosquitto_sub`
# and once to `tributary run` (mqtt source → ingestion, no sinks). Each rate is N divided
# by the time from the publisher's start until the consumer has all N (mosquitto_sub:
# it exits after N; tributary: its ledger, written every 10 ms, counts N inputs).
# If tributary's rate is close to mosquitto_sub's, the broker or the publisher is the
# limit, not tributary. Work files in $WORK (default /tmp/tributary-mqtt-bench).
set -euo pipefail
BIN=${TRIBUTARY:-build/release/tributary}
[ -x "$BIN" ] || BIN=build/ci/tributary
PUB_BIN=${MQTT_PUB:-$(dirname "$BIN")/bench/mqtt_pub_bench}
N=${1:-200000}
shift || true
QOSES=("$@")
[ ${#QOSES[@]} -gt 0 ] || QOSES=(0 1)
WORK=${WORK:-/tmp/tributary-mqtt-bench}
mkdir -p "$WORK"
MSGS="$WORK/msgs-$N.ndjson"
# Event times in epoch milliseconds from 2024-05-01, one second apart per 500 messages.
# (%.0f, not %d: mawk's %d stops at 2^31 - 1, a time in seconds of 2038, which
# ingestion rightly quarantines as a future timestamp.)
if [ ! -s "$MSGS" ]; then
  awk -v n="$N" 'BEGIN { base = 1714564800000; for (i = 0; i < n; i++)
    printf "{\"device_id\":\"dev-%d\",\"sensor_ts\":%.0f,\"lat\":52.5,\"lon\":13.4,\"pm25\":%d}\n",
           i % 500, base + 1000 * int(i / 500), i % 300 }' > "$MSGS"
fi
now() { date +%s.%N; }
publish() {
  if [ "$QOS" = 0 ]; then
    mosquitto_pub -h 127.0.0.1 -p "$PORT" -t bench/readings -q 0 -l < "$MSGS"
  else
    "$PUB_BIN" "mqtt://127.0.0.1:$PORT" bench/readings "$QOS" < "$MSGS" 2>>"$WORK/pub.log"
  fi
}
# The ledger's input count, read with shell built-ins only: a process started every 20 ms
# (python, jq) would take CPU from the process being measured on a small machine.
ledger_input() {
  local text=
  IN=0
  [ -s "$WORK/data/ledger.json" ] && text=$(< "$WORK/data/ledger.json")
  if [[ $text =~ \"input\":[[:space:]]*([0-9]+) ]]; then IN=${BASH_REMATCH[1]}; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

BROKER_PID=
cleanup() { [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true; }
trap cleanup EXIT

start_broker() {
  PORT=$(free_port)
  cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
CONF
  mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  sleep 0.5
}
stop_broker() { kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=; }

for QOS in "${QOSES[@]}"; do
  # mosquitto_sub
  start_broker
  timeout 300 mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'bench/#' -q "$QOS" -C "$N" > /dev/null &
  SUB=$!
  sleep 0.5
  T0=$(now)
  publish
  T_PUB=$(now)
  wait "$SUB" || echo "mosquitto_sub did not receive all $N messages" >&2
  T1=$(now)
  stop_broker
  SUB_RATE=$(awk -v n="$N" -v a="$T0" -v b="$T1" 'BEGIN { printf "%.0f", n / (b - a) }')
  PUB_RATE=$(awk -v n="$N" -v a="$T0" -v b="$T_PUB" 'BEGIN { printf "%.0f", n / (b - a) }')

  # tributary
  start_broker
  rm -rf "$WORK/data"
  cat > "$WORK/p.yaml" <<YAML
pipeline:
  name: mqtt-bench
  commit_interval: 10ms
sources:
  - name: bus
    type: mqtt
    broker: mqtt://127.0.0.1:$PORT
    client_id: tributary-bench
    clean_session: true
    topics: ['bench/#']
    qos: $QOS
    buffer: 20000
sinks: []
YAML
  "$BIN" run "$WORK/p.yaml" --data-dir "$WORK/data" --listen off --quiet --duration 600s \
    > "$WORK/run.log" 2>&1 &
  RUN=$!
  for _ in $(seq 100); do [ -s "$WORK/data/ledger.json" ] && break; sleep 0.1; done
  sleep 1
  T0=$(now)
  publish
  DEADLINE=$(( $(date +%s) + 300 ))
  while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    ledger_input
    [ "$IN" -ge "$N" ] && break
    sleep 0.005
  done
  T1=$(now)
  [ "$IN" -ge "$N" ] || echo "tributary received only $IN of $N messages" >&2
  if [[ $(< "$WORK/data/ledger.json") =~ \"accepted\":[[:space:]]*([0-9]+) ]] &&
     [ "${BASH_REMATCH[1]}" -ne "$N" ]; then
    echo "tributary accepted ${BASH_REMATCH[1]} of $N readings (see $WORK/data/ledger.json)" >&2
  fi
  kill -INT "$RUN"; wait "$RUN" || true
  stop_broker
  TRIB_RATE=$(awk -v n="$N" -v a="$T0" -v b="$T1" 'BEGIN { printf "%.0f", n / (b - a) }')
  echo "qos $QOS: $N messages; publisher $PUB_RATE msg/s; mosquitto_sub $SUB_RATE msg/s; tributary $TRIB_RATE msg/s"
  echo "{\"bench\":\"mqtt\",\"qos\":$QOS,\"messages\":$N,\"mosquitto_sub_per_s\":$SUB_RATE,\"tributary_per_s\":$TRIB_RATE}"
done
