#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz/ with clang in build-fuzz and run each
# for SECONDS (default 60), one at a time, on one core.  Each target's corpus
# grows in build-fuzz/tests/fuzz/corpus/<target>, starting from the seeds made from
# the protocol test vectors and from tests/fuzz/regressions/<target>.  An
# input that breaks a target is saved in build-fuzz/tests/fuzz/crashes/<target>/
# (copy it to tests/fuzz/regressions/<target>/ once understood).  Prints each
# target's executions and coverage; exits 1 if any target crashed, leaked,
# hung or broke a checked property.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: decode iter object broker)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode iter object broker)
build=build-fuzz

mkdir -p "$build"
if ! { cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DTASKQ_FUZZ=ON -DTASKQ_TESTS=OFF \
         -DTASKQ_EXAMPLES=OFF -DTASKQ_BENCH=OFF &&
       cmake --build "$build" -j2 --target fuzz_seeds $(printf 'fuzz_%s ' "${targets[@]}"); \
     } >"$build/fuzz-build.log" 2>&1; then
  cat "$build/fuzz-build.log" >&2
  exit 1
fi

failed=0
for t in "${targets[@]}"; do
  dir=$build/tests/fuzz
  mkdir -p "$dir/corpus/$t" "$dir/crashes/$t"
  log=$dir/$t.log
  rc=0
  inputs=("$dir/corpus/$t" "$dir/seeds/$t")
  [ -d "tests/fuzz/regressions/$t" ] && inputs+=("tests/fuzz/regressions/$t")
  "$dir/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/crashes/$t/" "${inputs[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)
  corpus=$(find "$dir/corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    printf '%-7s ok      %s execs, %s, corpus %s\n' "$t" "${execs:-?}" "${cov:-cov: ?}" "$corpus"
  else
    failed=1
    printf '%-7s FAILED  exit %s after %s execs; see %s and %s\n' "$t" "$rc" "${execs:-?}" \
      "$log" "$dir/crashes/$t/"
    grep -m 5 -E 'ERROR:|check failed|SUMMARY' "$log" | sed 's/^/        /' || true
  fi
done
exit "$failed"
