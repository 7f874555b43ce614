#!/usr/bin/env bash
# What durability costs: the same run (square N integers, two square_worker
# processes, one pipelined square_client) against taskqd with --memory,
# --sync normal and --sync full, in one script so the ratios compare runs
# on the same machine at the same time.  Prints one line per store and
# the ratio to memory.  Usage: bench/durability.sh [N] (default 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target taskqd square_worker square_client >/dev/null

run=$(mktemp -d /tmp/taskq-durability-XXXXXX)
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$run"' EXIT

# measure NAME TASKQD-ARGS...: prints "NAME tasks/s".
measure() {
  local name=$1; shift
  rm -f "$run/ready"
  build/taskqd --bind 'tcp://127.0.0.1:*' --ready-file "$run/ready" "$@" 2>"$run/$name.log" &
  pids+=($!)
  for _ in $(seq 1 500); do [ -s "$run/ready" ] && break; sleep 0.02; done
  [ -s "$run/ready" ] || { echo "taskqd did not start:" >&2; cat "$run/$name.log" >&2; exit 1; }
  local ep; ep=$(head -n1 "$run/ready")
  for _ in 1 2; do build/examples/square_worker --broker "$ep" 2>>"$run/$name.workers.log" & pids+=($!); done
  local out; out=$(build/examples/square_client --broker "$ep" -n "$N")
  stop_all
  # "ok N tasks in S s (R tasks/s)"
  echo "$name $(sed -n 's/.*(\([0-9]*\) tasks\/s).*/\1/p' <<<"$out")"
}

mem=$(measure memory --memory)
normal=$(measure sqlite-normal --db "$run/normal/taskq.db" --sync normal)
full=$(measure sqlite-full --db "$run/full/taskq.db" --sync full)
base=${mem#* }
echo "durability cost: $N squares, 2 workers, $(date -u +%F), $(nproc) cores"
for line in "$mem" "$normal" "$full"; do
  set -- $line
  awk -v n="$1" -v r="$2" -v b="$base" 'BEGIN { printf "%-14s %8d tasks/s  %5.2fx memory\n", n, r, r / b }'
done
