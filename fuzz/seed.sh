#!/usr/bin/env bash
# (Re)write the seed inputs fuzz/corpus/<target>/seed-* and the dictionaries fuzz/dicts/*.dict
# from tests/fixtures/decode/ and the API tests' requests (tests/fuzz_corpus.rs,
# `write_seed_corpora`, stable), then minimise every corpus (fuzz/cmin.sh)
# (skipped without nightly/cargo-fuzz, or with FUZZ_CMIN=0).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --test fuzz_corpus -- --ignored write_seed_corpora --nocapture
if [ "${FUZZ_CMIN:-1}" = 1 ] && cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
  fuzz/cmin.sh
fi
