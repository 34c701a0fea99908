#!/usr/bin/env bash
# Run every fuzz target (or those named) for RUNS executions each, keep what the fuzzer finds in
# fuzz/corpus/<target>/ (minimised afterwards), crashes in fuzz/artifacts/<target>/, and append
# the figures to fuzz/RESULTS.md. Unattended: by default libFuzzer's fork mode goes on after a
# crash (every crashing input is saved), so a known, unfixed crash does not cut a long run short.
#
#   fuzz/run.sh RUNS [TARGET...]          e.g.  fuzz/run.sh 10000000
#
# Environment (all optional):
#   FUZZ_KEEP_GOING=1 0: stop a target at its first crash (plain mode, not fork mode)
#   FUZZ_FORK=1       with FUZZ_KEEP_GOING: fuzzing processes per target (libFuzzer -fork=N)
#   FUZZ_PARALLEL=1   targets fuzzed at once (2 uses both cores of this machine)
#   FUZZ_NICE=0       nice level of the fuzzers (19 while others measure on the machine)
#   FUZZ_CMIN=1       0: do not minimise the corpora afterwards
#   FUZZ_MAX_TOTAL_TIME=0   seconds per target after which libFuzzer stops anyway (0: no limit)
#   FUZZ_TIMEOUT=25   seconds one input may take before it counts as a hang (a crash)
#   FUZZ_RSS_MB=2048  memory limit of a fuzzer process
#   FUZZ_RESULTS=fuzz/RESULTS.md    where the table goes ("" for nowhere)
#   FUZZ_NOTE=""      text put in the results' heading (e.g. "short run")
# Logs: fuzz/logs/<time>-<target>.log (not kept in git).
# Needs: rustup's nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -uo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$(pwd)

ALL_TARGETS=(decode_thai_nguyen decode_senml decode_ngsi_ld decode_json_mapping api_params api_router)

RUNS=${1:-}
if ! [[ "$RUNS" =~ ^[0-9]+$ ]] || [ "$RUNS" -eq 0 ]; then
  echo "usage: fuzz/run.sh RUNS [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
  exit 2
fi
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [ -f "fuzz_targets/$t.rs" ] || { echo "fuzz/run.sh: no target $t (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

KEEP_GOING=${FUZZ_KEEP_GOING:-1}
FORK=${FUZZ_FORK:-1}
PARALLEL=${FUZZ_PARALLEL:-1}
NICE=${FUZZ_NICE:-0}
CMIN=${FUZZ_CMIN:-1}
MAX_TOTAL_TIME=${FUZZ_MAX_TOTAL_TIME:-0}
TIMEOUT=${FUZZ_TIMEOUT:-25}
RSS_MB=${FUZZ_RSS_MB:-2048}
RESULTS=${FUZZ_RESULTS-$FUZZ_DIR/RESULTS.md}
NOTE=${FUZZ_NOTE:-}

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked)" >&2
  exit 1
fi

STAMP=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DAY=$(date -u +%Y-%m-%d)
LOG_PREFIX=$(date -u +%Y%m%dT%H%M%SZ)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- ../src ../Cargo.toml ../Cargo.lock 2>/dev/null)" ]; then
  COMMIT="$COMMIT+dirty"
fi
LOGS="$FUZZ_DIR/logs"
ROWS=$(mktemp -d)
trap 'rm -rf "$ROWS"' EXIT
mkdir -p "$LOGS"

# Build once and run the binaries themselves: `cargo fuzz run` would rebuild whenever src/
# changed meanwhile, and every target of one invocation should fuzz the same code.
echo "== building the fuzz targets (cargo +nightly fuzz build)"
if ! nice -n "$NICE" cargo +nightly fuzz build >"$LOGS/$DAY-build.log" 2>&1; then
  tail -40 "$LOGS/$DAY-build.log" >&2
  echo "fuzz/run.sh: the build failed (log: fuzz/logs/$DAY-build.log)" >&2
  exit 1
fi
TRIPLE=$(rustc +nightly -vV | sed -n 's/^host: //p')
BIN="$FUZZ_DIR/target/$TRIPLE/release"
# As `cargo fuzz run` sets it.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# Per-target libFuzzer options: JSON payloads up to 4 KiB (the fixtures are under 2 KiB), API
# inputs up to 1 KiB.
max_len() { case "$1" in api_*) echo 1024 ;; *) echo 4096 ;; esac; }

artifact_count() {
  find "artifacts/$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) 2>/dev/null | wc -l
}

# Fuzz one target; write its table row to $ROWS/<target>.
run_one() {
  local t=$1 log="$LOGS/$LOG_PREFIX-$1.log"
  mkdir -p "corpus/$t" "artifacts/$t"
  local before start end rc
  before=$(artifact_count "$t")
  touch "$log.start"
  start=$(date +%s)
  local args=(-runs="$RUNS" -max_len="$(max_len "$t")" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB"
    -print_final_stats=1 -print_pcs=0)
  [ -f "dicts/$t.dict" ] && args+=(-dict="dicts/$t.dict")
  [ "$MAX_TOTAL_TIME" -gt 0 ] && args+=(-max_total_time="$MAX_TOTAL_TIME")
  [ "$KEEP_GOING" = 1 ] && args+=(-fork="$FORK" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  # A target whose setup panics (its first, trivial input crashes) would, in fork mode, start a
  # job per execution until RUNS: report it and go on.
  printf '\0' >"$log.trivial"
  if ! "$BIN/$t" "$log.trivial" >"$log" 2>&1; then
    rm -f "$log.trivial" "$log.start"
    echo "== $t: its trivial input crashes (setup broken?), not fuzzed; see $log"
    grep -E "panicked at" -A2 "$log" | head -4 | sed "s/^/   $t: /"
    printf '| %s | 0 | - | - | - | error: setup crashes (see log) | 0 s | %s | %s |\n' "$t" "$DAY" "$COMMIT" >"$ROWS/$t"
    return
  fi
  rm -f "$log.trivial"
  echo "== $t: ${args[*]}"
  nice -n "$NICE" "$BIN/$t" -artifact_prefix="artifacts/$t/" "${args[@]}" "corpus/$t" >"$log" 2>&1
  rc=$?
  end=$(date +%s)
  local crashes=$(( $(artifact_count "$t") - before ))
  # The final figures: libFuzzer's last status line ("#N DONE cov: C ft: F ...") and its final
  # stats; after a crash, the last status line before it.
  # Fork mode prints "#N: cov: C ft: F ..." per job and "INFO: fuzzed for N iterations".
  local last execs cov ft
  last=$(grep -E '^#[0-9]+:?[[:space:]].*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  execs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
  [ "$KEEP_GOING" = 1 ] && execs=$(grep -oE 'INFO: fuzzed for [0-9]+ iterations' "$log" | tail -1 | grep -oE '[0-9]+')
  [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+')
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    # A failure that left no artifact (the build, a setup panic before the first input, ...).
    crashes="error (rc $rc)"
  fi
  # Distinct crash sites: each new reproducer replayed, the first frame in the crate's src/.
  if [ "$crashes" != 0 ] && [[ "$crashes" =~ ^[0-9]+$ ]]; then
    local src_dir f site sites=""
    src_dir=$(cd .. && pwd)/src/
    while IFS= read -r f; do
      local out
      out=$(RUST_BACKTRACE=1 "$BIN/$t" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" "$f" 2>&1)
      site=$(grep -oE "at $src_dir[^ ]+" <<<"$out" | head -1 | sed "s|at $src_dir|src/|")
      [ -n "$site" ] || site=$(grep -oE "panicked at [^ ]+|ERROR: [A-Za-z]+: [a-z -]+" <<<"$out" | head -1 | tr ' ' '_')
      sites+="${site:-unknown}"$'\n'
    done < <(find "artifacts/$t" -maxdepth 1 -type f -newer "$log.start" \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | head -50)
    crashes="$crashes ($(sort <<<"${sites%$'\n'}" | uniq -c | awk '{printf "%s%s×%s", (NR>1?", ":""), $1, $2}'))"
  fi
  local secs=$(( end - start ))
  local rate="-"
  [ -n "$execs" ] && [ "$secs" -gt 0 ] && rate=$(( execs / secs ))
  if [ "$CMIN" = 1 ]; then  # a crashing input in the corpus is left out by the merge
    echo "== $t: minimising the corpus"
    FUZZ_NO_BUILD=1 nice -n "$NICE" ./cmin.sh "$t" || echo "== $t: cmin failed, corpus left as it was"
  fi
  local files size
  files=$(find "corpus/$t" -maxdepth 1 -type f | wc -l)
  size=$(du -sk --apparent-size "corpus/$t" | cut -f1)
  printf '| %s | %s | %s | %s | %s files, %s KiB | %s | %s s (%s/s) | %s | %s |\n' \
    "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$files" "$size" "$crashes" "$secs" "$rate" "$DAY" "$COMMIT" \
    >"$ROWS/$t"
  rm -f "$log.start"
  echo "== $t: executions ${execs:-?}, cov ${cov:-?}, ft ${ft:-?}, corpus $files files (${size} KiB), crashes $crashes, ${secs}s  (log: fuzz/logs/$LOG_PREFIX-$t.log)"
  if [ "$rc" -ne 0 ]; then
    grep -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|Test unit written to|^Base64" "$log" | head -8 | sed "s/^/   $t: /"
  fi
}

running=0
for t in "${TARGETS[@]}"; do
  if [ "$PARALLEL" -gt 1 ]; then
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
      wait -n
      running=$((running - 1))
    fi
  else
    run_one "$t"
  fi
done
wait

TABLE_HEAD='| target | executions | cov | ft | corpus (after cmin) | crashes | time | date | commit |
|---|---:|---:|---:|---:|---:|---:|---|---|'
echo
echo "$TABLE_HEAD"
total_crashes=0
for t in "${TARGETS[@]}"; do
  cat "$ROWS/$t"
  c=$(cut -d'|' -f7 "$ROWS/$t" | awk '{print $1}')
  [ "$c" = 0 ] || total_crashes=$((total_crashes + 1))
done

if [ -n "$RESULTS" ]; then
  if [ ! -f "$RESULTS" ]; then
    printf '# Fuzzing results\n\nWritten by `fuzz/run.sh`, newest last; see fuzz/README.md.\n' >"$RESULTS"
  fi
  {
    printf '\n## %s — `fuzz/run.sh %s`%s\n\n' "$STAMP" "$RUNS" "${NOTE:+ ($NOTE)}"
    printf 'Host: %s cores, %s; nightly %s; FUZZ_KEEP_GOING=%s (fork=%s), FUZZ_PARALLEL=%s, FUZZ_NICE=%s.\n' \
      "$(nproc)" "$(uname -m)" "$(rustup run nightly rustc --version 2>/dev/null | cut -d' ' -f2-)" \
      "$KEEP_GOING" "$FORK" "$PARALLEL" "$NICE"
    printf 'Crashes: new reproducers in fuzz/artifacts/<target>/ (distinct sites: count×first frame in src/).\n\n'
    echo "$TABLE_HEAD"
    for t in "${TARGETS[@]}"; do cat "$ROWS/$t"; done
  } >>"$RESULTS"
  echo
  echo "results appended to fuzz/RESULTS.md"
fi

if [ "$total_crashes" -ne 0 ]; then
  echo "fuzz/run.sh: $total_crashes target(s) crashed or failed; reproducers in fuzz/artifacts/<target>/" >&2
  exit 1
fi
