#!/usr/bin/env bash
# taskq against the raw ZeroMQ reference and the peers, in one run on this
# machine: builds taskq-bench, runs it, the peer harness and
# bench/mp_speedup.py, then writes bench/RESULTS.md and bench/plots/.
# From a fresh clone on Debian 12, as root (apt-get) or with sudo:
#
#   bench/compare.sh            # about 5 minutes on 2 cores, once the packages are in
#   QUICK=1 bench/compare.sh    # a smoke run: few tasks, figures not meaningful
#
# Environment: QUICK=1; RUNS=N (runs per workload, default 3); ONLY=zmq,...
# (the peers to run, by the harness's names); PEERS_DIR (the peer harness,
# default ../shared/bench/peers beside the repository); PEERS_OUT (where the
# harness writes, default a temporary folder); BUILD_DIR (default build).
# Raw outputs stay in the temporary folder the script names at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
QUICK=${QUICK:-0}
RUNS=${RUNS:-}
ONLY=${ONLY:-}
PY=/usr/bin/python3
if [ -z "${PEERS_DIR:-}" ] && [ -d ../shared/bench/peers ]; then
  PEERS_DIR=$(cd ../shared/bench/peers && pwd)
fi
PEERS_DIR=${PEERS_DIR:-}
work=$(mktemp -d /tmp/taskq-compare-XXXXXX)
PEERS_OUT=${PEERS_OUT:-$work/peers}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
failed=()   # steps that failed but did not stop the run

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

log "dependencies"
timeout 1200 scripts/deps.sh
if ! command -v gnuplot >/dev/null; then
  log "installing gnuplot-nox"
  if ! { timeout 600 $sudo apt-get update -qq &&
         timeout 1200 $sudo env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q -o DPkg::Lock::Timeout=600 gnuplot-nox; } >"$work/apt.log" 2>&1; then
    log "installing gnuplot-nox failed:"; tail -n 20 "$work/apt.log" >&2; exit 1
  fi
fi

log "building taskq-bench in $BUILD_DIR"
if ! { timeout 300 cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       timeout 1800 cmake --build "$BUILD_DIR" -j"$(nproc)" \
         --target taskq-bench taskqd taskq-worker montecarlo; } >"$work/build.log" 2>&1; then
  log "the build failed:"; tail -n 30 "$work/build.log" >&2; exit 1
fi

bench_args=(--workload all --json --out-dir "$work/taskq")
[ "$QUICK" = 1 ] && bench_args+=(--quick)
[ -n "$RUNS" ] && bench_args+=(--runs "$RUNS")
log "taskq-bench ${bench_args[*]}"
mkdir -p "$work/taskq"
bench_status=0
# stdout to a file, stderr both to a file and to the terminal (progress);
# with pipefail the pipeline's status is taskq-bench's.
{ timeout -k 10 "$([ "$QUICK" = 1 ] && echo 900 || echo 3600)" \
    "$BUILD_DIR/bench/taskq-bench" "${bench_args[@]}" 2>&1 >"$work/taskq.out" |
    tee "$work/taskq.err" >&2; } || bench_status=$?
# Its JSON lines for the report; everything else it said, as it said it.
grep '^{' "$work/taskq.out" >"$work/taskq.jsonl" || true
{ grep -v '^{' "$work/taskq.out" || true; cat "$work/taskq.err"; } >"$work/taskq.txt"
if [ "$bench_status" -ne 0 ]; then
  log "taskq-bench failed (status $bench_status); the report keeps the figures it printed"
  failed+=("taskq-bench (status $bench_status)")
fi

peer_args=()
if [ -n "$PEERS_DIR" ] && [ -x "$PEERS_DIR/run-all.sh" ]; then
  log "peer harness $PEERS_DIR/run-all.sh, output in $PEERS_OUT (a few minutes)"
  mkdir -p "$PEERS_OUT"
  peers_status=0
  { PEERS_OUT=$PEERS_OUT ONLY=$ONLY QUICK=$QUICK RUNS=${RUNS:-3} \
      timeout -k 10 2400 "$PEERS_DIR/run-all.sh" 2>&1 >"$work/peers.out" |
      tee "$work/peers.err" >&2; } || peers_status=$?
  if [ "$peers_status" -ne 0 ]; then
    log "the peer harness failed (status $peers_status); see $work/peers.err"
    failed+=("peer harness (status $peers_status)")
  fi
  peer_args=(--peers "$PEERS_OUT" --peers-log "$work/peers.err")
else
  reason="the peer harness was not found (${PEERS_DIR:-../shared/bench/peers}/run-all.sh; set PEERS_DIR)"
  log "no peers: $reason"
  peer_args=(--no-peers "$reason")
fi

mp_args=(--match "$work/taskq.jsonl")
[ "$QUICK" = 1 ] && mp_args+=(--quick)
[ -n "$RUNS" ] && mp_args+=(--runs "$RUNS")
log "W4 through multiprocessing.Pool: bench/mp_speedup.py ${mp_args[*]}"
if ! timeout -k 10 900 "$PY" bench/mp_speedup.py "${mp_args[@]}" >"$work/mp.jsonl"; then
  log "mp_speedup.py failed"
  failed+=("mp_speedup.py")
fi

log "writing bench/RESULTS.md and bench/plots/"
report_args=(--taskq "$work/taskq.jsonl" --taskq-log "$work/taskq.txt"
             --taskq-status "$bench_status" --mp "$work/mp.jsonl"
             --out bench/RESULTS.md --plot-data "$work/plot" "${peer_args[@]}")
[ "$QUICK" = 1 ] && report_args+=(--quick)
timeout 120 "$PY" bench/report.py "${report_args[@]}"
mkdir -p bench/plots
timeout 120 gnuplot -e "data='$work/plot'; out='bench/plots'" bench/plots.gp

sed -n '/^## The performance to reach/,/^## Plots/p' bench/RESULTS.md | sed '$d'
log "wrote bench/RESULTS.md and bench/plots/; raw outputs in $work"
if [ ${#failed[@]} -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
