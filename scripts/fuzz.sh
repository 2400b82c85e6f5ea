#!/usr/bin/env bash
# Run every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 600), two at a time,
# starting from the committed seed corpus (fuzz/corpus/<target>). Findings land in
# fuzz/artifacts/<target>/; copy each into fuzz/corpus/<target>/ once fixed: the unit test
# `fuzzing::tests::the_corpus_passes` replays the whole corpus on every test run.
#   scripts/fuzz.sh [SECONDS] [TARGET…]
# Only the stable toolchain can be had here: RUSTC_BOOTSTRAP lets it take cargo fuzz's -Z flags.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
scripts/setup.sh build
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O
run() { # target → one summary line
  local t=$1 log
  log=$(mktemp)
  # New inputs go to work/<target> (not committed); the committed corpus is read as seeds.
  mkdir -p "corpus/$t" "work/$t"
  if cargo fuzz run -O "$t" "work/$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    echo "$t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions in ${seconds}s, no finding"
  else
    echo "$t: FINDING (see fuzz/artifacts/$t/):"; grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5
  fi
  rm -f "$log"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  [ $((i + 1)) -lt ${#targets[@]} ] && run "${targets[i + 1]}" &
  wait
done
