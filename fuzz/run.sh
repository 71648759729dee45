#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for SECONDS (default 30), one after another.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# libFuzzer needs rustc's -Z flags (sanitizer coverage, AddressSanitizer). Only the stable
# toolchain is installed, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. Needs cargo-fuzz
# (`cargo install cargo-fuzz --locked`). New inputs go to fuzz/corpus/<target> (git-ignored);
# the committed seeds in fuzz/seeds/<target> are read too. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit non-zero after the other targets ran.
# One summary line per target ("fuzz: <target>: <N> executions in <S> s") ends the output.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-30}"
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(open_token cookie_header claims_decode users_file key_file)
fi

export RUSTC_BOOTSTRAP=1
# Build all targets in one cargo run (dependencies compile once), then run the binaries
# directly: nothing rebuilds between targets, even if sources change during a long run.
# FUZZ_TARGET_DIR (an absolute path) moves the build out of fuzz/target; CI points it at a
# cache so the instrumented dependencies compile once per machine, not once per clone.
target_dir="${FUZZ_TARGET_DIR:-target}"
cargo fuzz build --target-dir "$target_dir"
bin="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

logs="target/fuzz-logs"
mkdir -p "$logs"
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  echo "== fuzz $t for ${secs}s"
  set +e
  "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -print_final_stats=1 \
    "corpus/$t" "seeds/$t" 2>&1 | tee "$logs/$t.log" |
    grep --line-buffered -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done |==[0-9]+==ERROR|SUMMARY|thread .* panicked)'
  codes=("${PIPESTATUS[@]}")
  set -e
  status=${codes[0]}
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -Eo '[0-9]+$' | tail -1 || true)
  took=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$logs/$t.log" | grep -Eo 'in [0-9]+' | grep -Eo '[0-9]+' | tail -1 || true)
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    summary+=("fuzz: $t: FAILED (exit $status) after ${runs:-?} executions; see fuzz/$logs/$t.log and fuzz/artifacts/$t/")
  else
    summary+=("fuzz: $t: ${runs:-?} executions in ${took:-$secs} s")
  fi
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]}" >&2
  exit 1
fi
