#!/usr/bin/env bash
# The main job, from a fresh clone: install dependencies, build, start a
# broker and two workers on loopback, square 100,000 integers through them
# with every result checked, and stop everything that was started.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target taskqd square_worker square_client

run=$(mktemp -d /tmp/taskq-demo-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

build/taskqd --bind 'tcp://127.0.0.1:*' --ready-file "$run/ready" 2>"$run/taskqd.log" &
pids+=($!)
for _ in $(seq 1 500); do [ -s "$run/ready" ] && break; sleep 0.02; done
[ -s "$run/ready" ] || { echo "taskqd did not start:"; cat "$run/taskqd.log"; exit 1; }
endpoint=$(head -n1 "$run/ready")
echo "taskqd serving on $endpoint, its tasks in ./taskq-data/taskq.db"

for i in 1 2; do
  build/examples/square_worker --broker "$endpoint" 2>"$run/worker$i.log" &
  pids+=($!)
done

build/examples/square_client --broker "$endpoint" -n "$N"
