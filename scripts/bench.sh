#!/usr/bin/env bash
# End-to-end benchmark of ioc-aggregator, rerunnable: `scripts/bench.sh` (needs mosquitto).
# Loopback only; every phase is bounded in time. Prints the figures BENCHMARKS.md records.
#   (a) the broker's limit: a null QoS 1 subscriber that only counts
#   (b) the aggregator end to end: messages committed (durably, then acked) per second with
#       6 readings per message, sustained for $DURATION s, against the embedded store
#   (c) publish → queryable latency p50/p99 at a fixed 10,000 msg/s
#   (d) API latency p50/p99 of /api/v1/overview and an aggregates query at 1,000 req/s during (c)
#   (e) peak RSS of the aggregator
# and where the two cores went during (a) and (b): CPU per process, and what stayed idle.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-60}"
BROKER_SECONDS="${BROKER_SECONDS:-30}"
LATENCY_SECONDS="${LATENCY_SECONDS:-40}"
WARMUP=5
# Devices per city, each an air station sending the six VN_AQI pollutants per message: at
# 10,000 msg/s each of the 15,000 stations publishes about every 1.5 s.
DEVICES="${DEVICES:-5000}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin ioc-aggregator >&2
BIN="$TARGET_DIR/release/ioc-aggregator"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$MOSQUITTO" ] || { echo "mosquitto not found: apt-get install mosquitto" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

MQ_PORT="$(free_port)"
cat > "$WORK/mosquitto.conf" <<CONF
listener $MQ_PORT 127.0.0.1
allow_anonymous true
# Never drop queued QoS 1 messages (the default of 1000 silently does under load).
max_queued_messages 0
max_inflight_messages ${MAX_INFLIGHT:-1000}
persistence false
log_dest none
CONF
"$MOSQUITTO" -c "$WORK/mosquitto.conf" & MQ=$!; PIDS+=($MQ)
sleep 0.5
BROKER="mqtt://127.0.0.1:$MQ_PORT"

# CPU seconds (user + system) of a process or thread; of the whole machine idle; and taken by
# the hypervisor from this virtual machine (steal): a run with steal was slowed from outside.
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "$1/stat"; }
idle_s() { awk '/^cpu / {printf "%.2f", ($5 + $6) / 100}' /proc/stat; }
steal_s() { awk '/^cpu / {printf "%.2f", $9 / 100}' /proc/stat; }
thread_dir() { for t in /proc/"$1"/task/*; do if [ "$(cat "$t/comm")" = "$2" ]; then echo "$t"; fi; done; }
# Cores used between two readings of CPU seconds: `cores_between BEFORE AFTER SECONDS`.
cores_between() { python3 -c "print(f'{($2 - $1) / $3:.2f}')"; }
# Cores used over the measured part of a phase: `cpu_window LABEL SECONDS NAME=DIR...`, run while
# the load generator runs; sleeps through the warm-up, then prints LABEL NAME=cores ... idle=cores
# steal=cores.
cpu_window() {
  local label=$1 seconds=$2; shift 2
  sleep "$WARMUP"
  local before=() i0 s0; i0="$(idle_s)"; s0="$(steal_s)"
  for p in "$@"; do before+=("$(cpu_s "${p#*=}")"); done
  sleep "$seconds"
  local out="$label" i=0 i1 s1; i1="$(idle_s)"; s1="$(steal_s)"
  for p in "$@"; do
    out+=" ${p%%=*}=$(cores_between "${before[$i]}" "$(cpu_s "${p#*=}")" "$seconds")"; i=$((i + 1))
  done
  echo "$out idle=$(cores_between "$i0" "$i1" "$seconds") steal=$(cores_between "$s0" "$s1" "$seconds")"
}

echo "== (a) broker limit: null QoS 1 subscriber, ${BROKER_SECONDS}s" >&2
# Publishing is paced by the consumer (at most --window messages ahead of it), so the broker's
# backlog stays bounded and the consumer, not the broker's memory, sets the pace.
"$BIN" loadgen --broker "$BROKER" --consumer null --warmup "${WARMUP}s" \
  --duration "$((BROKER_SECONDS + WARMUP))s" --readings 6 --devices "$DEVICES" > "$WORK/a.json" & LOAD=$!
A_CPU="$(cpu_window a "$((BROKER_SECONDS - 2))" mosquitto="/proc/$MQ" loadgen="/proc/$LOAD")"
wait "$LOAD"
A_RATE="$(json 'round(d["consumer_rate_per_s"])' < "$WORK/a.json")"

API_PORT="$(free_port)"
API="http://127.0.0.1:$API_PORT"
aggregator_config() { # $1: database path
  cat <<CONF
[api]
listen = "127.0.0.1:$API_PORT"
# The probe stands in for many screens, 1,000 req/s in all, from one address: far above one
# caller's rate limit (50/s by default), which would answer most of them 429.
rate_limit_per_second = 100000
rate_limit_burst = 100000
[store]
path = "$1"
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
}
start_aggregator() { # $1: name
  aggregator_config "$WORK/$1.db" > "$WORK/$1.toml"
  "$BIN" --config "$WORK/$1.toml" run > "$WORK/$1.log" 2>&1 & AGG=$!; PIDS+=($AGG)
  for _ in $(seq 100); do curl -fs "$API/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
}
rss_mb() { awk -v k="$1:" '$1 == k {printf "%.0f", $2 / 1024}' "/proc/$AGG/status"; }
stop_aggregator() { kill -TERM "$AGG"; wait "$AGG" 2>/dev/null || true; }

echo "== (b) aggregator end to end, ${DURATION}s at its own pace" >&2
start_aggregator b
"$BIN" loadgen --broker "$BROKER" --consumer "$API" --warmup "${WARMUP}s" \
  --duration "$((DURATION + WARMUP))s" --readings 6 --devices "$DEVICES" > "$WORK/b.json" & LOAD=$!
B_CPU="$(cpu_window b "$((DURATION - 2))" mosquitto="/proc/$MQ" loadgen="/proc/$LOAD" \
  aggregator="/proc/$AGG" commit="$(thread_dir "$AGG" store-commit)")"
wait "$LOAD"
B_RATE="$(json 'round(d["consumer_rate_per_s"])' < "$WORK/b.json")"
B_LOST="$(json 'd["sent"] - d["consumed"]' < "$WORK/b.json")"
B_RSS="$(rss_mb VmRSS)"; B_HWM="$(rss_mb VmHWM)"
stop_aggregator

echo "== (c) latency at 10,000 msg/s for ${LATENCY_SECONDS}s, with (d) API load at 1,000 req/s" >&2
# A fresh aggregator and store, so the latency summary covers (c) only.
start_aggregator c
"$BIN" loadgen --broker "$BROKER" --rate 10000 --duration "${LATENCY_SECONDS}s" --readings 6 --devices "$DEVICES" > "$WORK/c.json" & PUB=$!; PIDS+=($PUB)
# Steady state: the first 10 s (15,000 new devices and 90,000 series appearing at once) are
# not measured; latency is the histogram's growth from then to the end.
sleep 10
curl -fs "$API/metrics" > "$WORK/metrics-start.txt"
FROM="$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
"$BIN" loadgen --api "$API" --rate 1000 --duration "$((LATENCY_SECONDS - 15))s" \
  --paths "/api/v1/overview,/api/v1/aggregates?metric=pm25&city=thai-nguyen&every=5m&from=$FROM" > "$WORK/d.json"
wait "$PUB"
C_RSS="$(rss_mb VmRSS)"; C_HWM="$(rss_mb VmHWM)"
C_SENT="$(json 'd["sent"]' < "$WORK/c.json")"
settled() { curl -fs "$API/api/v1/feeds" | json 'sum(sum((f["all_time"] or {}).get(k, 0) for k in ("stored", "duplicate", "rejected")) for f in d["feeds"])'; }
for _ in $(seq 600); do [ "$(settled)" -ge "$C_SENT" ] && break; sleep 0.2; done
C_LOST="$((C_SENT - $(settled)))"
curl -fs "$API/metrics" > "$WORK/metrics.txt"  # after the last message was committed
stop_aggregator

python3 - "$WORK" <<PY
import json, re, sys
work = sys.argv[1]
a, b = $A_RATE, $B_RATE
c = json.load(open(f"{work}/c.json"))
d = json.load(open(f"{work}/d.json"))
metrics = open(f"{work}/metrics.txt").read()
metrics_start = open(f"{work}/metrics-start.txt").read()
def buckets(text, feed):
    found = re.findall(rf'^ioc_observed_to_commit_seconds_bucket{{feed="{feed}",le="([^"]+)"}} (\S+)', text, re.M)
    return {float("inf") if le == "+Inf" else float(le): float(n) for le, n in found}
def q(feed, quantile):
    """Quantile in ms of the cumulative histogram's growth during the measured part of (c)."""
    end, start = buckets(metrics, feed), buckets(metrics_start, feed)
    grown = sorted((le, n - start.get(le, 0.0)) for le, n in end.items())
    total = grown[-1][1] if grown else 0
    lower, below = 0.0, 0.0
    for upper, n in grown:
        if total and n >= quantile * total:  # interpolate inside the bucket holding it
            if upper == float("inf"):
                return float("inf")
            return (lower + (upper - lower) * (quantile * total - below) / max(n - below, 1)) * 1000
        lower, below = upper, n
    return float("nan")
print("| measure | result | target |")
print("|---|---|---|")
print(f"| (a) broker limit, null QoS 1 subscriber | {a:,} msg/s | — |")
print(f"| (b) aggregator, committed + acked, 6 readings/msg, ${DURATION} s | {b:,} msg/s ({b*6:,} readings/s) | — |")
print(f"| (b)/(a) | {b/a:.2f} | ≥ 0.90 |")
print(f"| (b) published − committed | $B_LOST | 0 |")
for feed, name in (("song-cong", "SenML"), ("pho-yen", "NGSI-LD"), ("thai-nguyen", "Thái Nguyên JSON")):
    print(f"| (c) publish → queryable at {round(c['rate_per_s']):,} msg/s, {name}, p50 / p99 | {q(feed, 0.5):.0f} ms / {q(feed, 0.99):.0f} ms | p99 ≤ 250 ms |")
print(f"| (c) published − committed | $C_LOST | 0 |")
for p in d["paths"]:
    name = "overview" if "overview" in p["path"] else "aggregates (pm25, Thái Nguyên, 5 m buckets, 1 h)"
    print(f"| (d) API {name}, p50 / p99 | {p['p50_ms']:.2f} ms / {p['p99_ms']:.2f} ms | p99 ≤ 5 ms (overview) |")
print(f"| (d) API errors | {d['errors']} of {sum(p['requests'] for p in d['paths'])} | 0 |")
print(f"| (e) RSS at the end of (b) / (c) | $B_RSS MB / $C_RSS MB | ≤ 150 MB |")
print(f"| (e) peak RSS (VmHWM) in (b) / (c) | $B_HWM MB / $C_HWM MB | — |")
def cores(line):
    return dict(kv.split("=") for kv in line.split()[1:])
ca, cb = cores("$A_CPU"), cores("$B_CPU")
print(f"| CPU in (a): Mosquitto / load generator and null subscriber / idle / stolen | {ca['mosquitto']} / {ca['loadgen']} / {ca['idle']} / {ca['steal']} cores | — |")
print(f"| CPU in (b): Mosquitto / load generator / aggregator (its commit thread) / idle / stolen | {cb['mosquitto']} / {cb['loadgen']} / {cb['aggregator']} ({cb['commit']}) / {cb['idle']} / {cb['steal']} cores | — |")
for phase, c in (("(a)", ca), ("(b)", cb)):
    if float(c["steal"]) >= 0.05:
        print(f"\n**Not comparable:** the host took {c['steal']} of the cores from this machine during {phase} (steal time); rerun.")
PY
