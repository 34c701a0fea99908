#!/usr/bin/env bash
# The bounded fuzz run of CI: every target for SMOKE_RUNS executions (default 20000) or at most
# SMOKE_SECONDS seconds (default 30), starting from the kept corpora; fails on any crash.
# Installs cargo-fuzz when missing. Without a nightly toolchain it says so loudly and skips,
# except under CI (CI set), where that is a failure.
#
#   fuzz/smoke.sh            (from anywhere)
#
# Nothing found here is kept: the corpora are fuzzed in a copy, so a CI run leaves the working
# tree as it was. A crash's reproducer is copied to fuzz/artifacts/<target>/ and its path printed.
set -euo pipefail
cd "$(dirname "$0")"

RUNS=${SMOKE_RUNS:-20000}
SECONDS_PER_TARGET=${SMOKE_SECONDS:-30}
# SMOKE_TARGETS="a b" runs only those.
read -r -a TARGETS <<<"${SMOKE_TARGETS:-decode_thai_nguyen decode_senml decode_ngsi_ld decode_json_mapping api_params api_router}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  {
    echo "############################################################################"
    echo "## fuzz/smoke.sh: NO NIGHTLY TOOLCHAIN — THE FUZZ TARGETS WERE NOT RUN.    ##"
    echo "## Install it with: rustup toolchain install nightly --profile minimal    ##"
    echo "## (the corpora still run on stable: cargo test --test fuzz_corpus)       ##"
    echo "############################################################################"
  } >&2
  if [ -n "${CI:-}" ]; then
    echo "fuzz/smoke.sh: CI is set, so a missing nightly is a failure." >&2
    exit 1
  fi
  exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

echo "== building the fuzz targets"
cargo +nightly fuzz build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp corpus/"$t"/* "$work/$t/corpus/" 2>/dev/null || true
  dict=()
  [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
  case "$t" in api_*) max_len=1024 ;; *) max_len=4096 ;; esac
  echo "== $t: -runs=$RUNS -max_total_time=$SECONDS_PER_TARGET"
  if cargo +nightly fuzz run "$t" "$work/$t/corpus" -- \
      -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=25 \
      -artifact_prefix="$work/$t/artifacts/" "${dict[@]}" >"$work/$t/log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$t/log" | tail -1 | sed "s/^/   /"
  else
    echo "!! $t CRASHED:" >&2
    grep -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY" "$work/$t/log" | head -10 | sed 's/^/   /' >&2
    tail -30 "$work/$t/log" >&2
    mkdir -p "artifacts/$t"
    for f in "$work/$t/artifacts/"*; do
      [ -e "$f" ] || continue
      cp "$f" "artifacts/$t/"
      echo "   reproducer: fuzz/artifacts/$t/$(basename "$f") (cargo +nightly fuzz run $t fuzz/artifacts/$t/$(basename "$f"))" >&2
    done
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/smoke.sh: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz/smoke.sh: ${#TARGETS[@]} targets, no crash."
