#!/usr/bin/env bash
# Minimise fuzz/corpus/<target>/ in place (all targets, or those named) with libFuzzer's
# set-cover merge: the fewest inputs that keep every feature (ft) of the corpus, so the corpora
# stay small in git. Like `cargo fuzz cmin`, which keeps more (-merge=1).
#
#   fuzz/cmin.sh [TARGET...]        FUZZ_NO_BUILD=1: use the binaries already built
#   FUZZ_CMIN_EDGES=1: keep only what covers every edge (cov), not every feature (ft): about a
#   third of the files, at the price of hit-count diversity the next run has to find again.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$(pwd)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode_thai_nguyen decode_senml decode_ngsi_ld decode_json_mapping api_params api_router)
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build
fi
BIN="$FUZZ_DIR/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
for t in "${TARGETS[@]}"; do
  case "$t" in api_*) max_len=1024 ;; *) max_len=4096 ;; esac
  min="$FUZZ_DIR/target/cmin-$t"
  rm -rf "$min" && mkdir -p "$min" "artifacts/$t"
  before=$(find "corpus/$t" -maxdepth 1 -type f | wc -l)
  edges=()
  [ -n "${FUZZ_CMIN_EDGES:-}" ] && edges=(-use_counters=0 -use_value_profile=0)
  if "$BIN/$t" -set_cover_merge=1 "${edges[@]}" -max_len="$max_len" -timeout=25 -artifact_prefix="artifacts/$t/" \
      "$min" "corpus/$t" >"$FUZZ_DIR/target/cmin-$t.log" 2>&1 && [ -n "$(ls -A "$min")" ]; then
    find "corpus/$t" -maxdepth 1 -type f -delete
    find "$min" -maxdepth 1 -type f -exec mv -t "corpus/$t/" {} +
    echo "cmin $t: $before -> $(find "corpus/$t" -maxdepth 1 -type f | wc -l) files, $(du -sk --apparent-size "corpus/$t" | cut -f1) KiB"
  else
    echo "cmin $t: FAILED, corpus left as it was (log: fuzz/target/cmin-$t.log)" >&2
    rm -rf "$min"
    exit 1
  fi
  rm -rf "$min"
done
