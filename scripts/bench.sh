#!/usr/bin/env bash
# End-to-end benchmark of ioc-aggregator, rerunnable: `scripts/bench.sh` (needs mosquitto).
# Loopback only; every phase is bounded in time. Prints the figures BENCHMARKS.md records.
#   (a) the broker's limit: a null QoS 1 subscriber that only counts
#   (b) the aggregator end to end: messages committed (durably, then acked) per second with
#       6 readings per message, sustained for $DURATION s, against the embedded store
#   (c) publish → queryable latency p50/p99 at a fixed 10,000 msg/s
#   (d) API latency p50/p99 of /api/v1/overview and an aggregates query at 1,000 req/s during (c)
#   (e) peak RSS of the aggregator
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-60}"
BROKER_SECONDS="${BROKER_SECONDS:-30}"
LATENCY_SECONDS="${LATENCY_SECONDS:-40}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin ioc-aggregator >&2
BIN="$TARGET_DIR/release/ioc-aggregator"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$MOSQUITTO" ] || { echo "mosquitto not found: apt-get install mosquitto" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

MQ_PORT="$(free_port)"
cat > "$WORK/mosquitto.conf" <<CONF
listener $MQ_PORT 127.0.0.1
allow_anonymous true
# Never drop queued QoS 1 messages (the default of 1000 silently does under load).
max_queued_messages 0
max_inflight_messages 100
persistence false
log_dest none
CONF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" & PIDS+=($!)
sleep 0.5
BROKER="mqtt://127.0.0.1:$MQ_PORT"

echo "== (a) broker limit: null QoS 1 subscriber, ${BROKER_SECONDS}s" >&2
"$BIN" loadgen --broker "$BROKER" --null-subscriber --duration "${BROKER_SECONDS}s" > "$WORK/a.json" & SUB=$!
sleep 0.5
"$BIN" loadgen --broker "$BROKER" --duration "$((BROKER_SECONDS + 5))s" --devices 20000 > /dev/null
wait "$SUB"
A_RATE="$(json 'round(d["rate_per_s"])' < "$WORK/a.json")"

API_PORT="$(free_port)"
cat > "$WORK/aggregator.toml" <<CONF
[api]
listen = "127.0.0.1:$API_PORT"
[store]
path = "$WORK/ioc.db"
synchronous = "full"
[broker]
enabled = false
[simulator]
enabled = false
[alerts]
enabled = true
[log]
filter = "warn"
[[feeds]]
name = "thai-nguyen"
city = "thai-nguyen"
format = "thai-nguyen-json"
broker = "$BROKER"
topics = ["tn/ioc/#"]
[[feeds]]
name = "song-cong"
city = "song-cong"
format = "senml"
broker = "$BROKER"
topics = ["sc/senml/#"]
[[feeds]]
name = "pho-yen"
city = "pho-yen"
format = "ngsi-ld"
broker = "$BROKER"
topics = ["py/ngsi-ld/#"]
CONF
"$BIN" --config "$WORK/aggregator.toml" run & AGG=$!; PIDS+=($AGG)
API="http://127.0.0.1:$API_PORT"
for _ in $(seq 100); do curl -fs "$API/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
stored() { curl -fs "$API/api/v1/feeds" | json 'sum((f["all_time"] or {}).get("stored", 0) for f in d["feeds"])'; }
settled() { curl -fs "$API/api/v1/feeds" | json 'sum(sum((f["all_time"] or {}).get(k, 0) for k in ("stored", "duplicate", "rejected")) for f in d["feeds"])'; }
received() { curl -fs "$API/api/v1/feeds" | json 'sum(f["since_start"]["received"] for f in d["feeds"])'; }

echo "== (b) aggregator end to end, ${DURATION}s at the broker's pace" >&2
"$BIN" loadgen --broker "$BROKER" --duration "$((DURATION + 10))s" --readings 6 --devices 20000 > "$WORK/b-pub.json" & PUB=$!
sleep 5   # ramp-up
S0="$(stored)"; T0="$(date +%s.%N)"
sleep "$DURATION"
S1="$(stored)"; T1="$(date +%s.%N)"
wait "$PUB"
B_RATE="$(python3 -c "print(round(($S1 - $S0) / ($T1 - $T0)))")"
echo "   waiting for the backlog to drain" >&2
SENT="$(json 'd["sent"]' < "$WORK/b-pub.json")"
for _ in $(seq 600); do [ "$(settled)" -ge "$SENT" ] && break; sleep 0.5; done

echo "== (c) latency at 10,000 msg/s for ${LATENCY_SECONDS}s, with (d) API load at 1,000 req/s" >&2
"$BIN" loadgen --broker "$BROKER" --rate 10000 --duration "${LATENCY_SECONDS}s" --readings 6 --devices 5000 > "$WORK/c-pub.json" & PUB=$!
sleep 5
FROM="$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
"$BIN" loadgen --api "$API" --rate 1000 --duration "$((LATENCY_SECONDS - 10))s" \
  --paths "/api/v1/overview,/api/v1/aggregates?metric=pm25&city=thai-nguyen&every=5m&from=$FROM" > "$WORK/d.json"
wait "$PUB"
curl -fs "$API/metrics" > "$WORK/metrics.txt"
q() { grep "^ioc_observed_to_commit_seconds{quantile=\"$1\"}" "$WORK/metrics.txt" | awk '{printf "%.1f", $2 * 1000}'; }
C_P50="$(q 0.5)"; C_P99="$(q 0.99)"
C_RATE="$(json 'round(d["rate_per_s"])' < "$WORK/c-pub.json")"
RSS_KB="$(awk '/VmHWM/ {print $2}' "/proc/$AGG/status")"

python3 - "$WORK/d.json" <<PY
import json, sys
a, b = $A_RATE, $B_RATE
d = json.load(open(sys.argv[1]))
print("| measure | result | target |")
print("|---|---|---|")
print(f"| (a) broker limit, null QoS 1 subscriber | {a:,} msg/s | — |")
print(f"| (b) aggregator, committed + acked, 6 readings/msg, ${DURATION} s | {b:,} msg/s ({b*6:,} readings/s) | — |")
print(f"| (b)/(a) | {b/a:.2f} | ≥ 0.90 |")
print(f"| (c) publish → queryable at {$C_RATE:,} msg/s, p50 / p99 | $C_P50 ms / $C_P99 ms | p99 ≤ 250 ms |")
for p in d["paths"]:
    name = "overview" if "overview" in p["path"] else "aggregates (pm25, 5m, 1 h)"
    print(f"| (d) API {name} at 1,000 req/s total, p50 / p99 | {p['p50_ms']:.2f} ms / {p['p99_ms']:.2f} ms | p99 ≤ 5 ms (overview) |")
print(f"| (d) API errors | {d['errors']} | 0 |")
print(f"| (e) peak RSS (VmHWM) | {$RSS_KB / 1024:.0f} MB | ≤ 150 MB |")
PY
