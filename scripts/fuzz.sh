#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (not part of CI).
#   scripts/fuzz.sh                 # each target for $FUZZ_SECONDS (default 60)
#   scripts/fuzz.sh trace_csv       # only the named targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
# cargo-fuzz needs nightly-only compiler flags (sanitizers); with only a
# stable toolchain, RUSTC_BOOTSTRAP=1 lets stable accept them. A crash
# leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a <target> artifacts/<target>/<file>
# and turn it into a regression test. Corpora grow in fuzz/corpus/<target>/
# (seeded from fuzz/seeds/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  seeds=()
  if [ -d "fuzz/seeds/$t" ]; then seeds=("fuzz/seeds/$t"); fi
  echo "fuzz.sh: $t for ${seconds}s" >&2
  # -s none: the targets are safe Rust, AddressSanitizer only slows them down;
  # -a: debug assertions and overflow checks on, to catch arithmetic overflow.
  if ! (cd fuzz && cargo fuzz run -s none -a "$t" "corpus/$t" "${seeds[@]/#fuzz\//}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1); then
    echo "fuzz.sh: $t found a crash (see fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit $status
