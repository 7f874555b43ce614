"""W4 through multiprocessing.Pool: the speedup and efficiency a Python user gets.

The same measurement taskq-bench makes for taskq, with a pure-Python Monte Carlo
task (the integral of 1/(1+x^2) over [0, 1]) calibrated once to about 20 ms:
the tasks run serially in this process, then through Pool(p) for p = 1..P.
Prints one JSON line per variant, in the shape of taskq-bench's W4 lines.

usage: mp_speedup.py [--tasks N] [--procs P] [--runs R] [--task-ms MS] [--quick]
                     [--match TASKQ_JSONL]

--match takes the task count and the largest p from taskq-bench's W4 lines in
that file, so that both systems run the same number of tasks over the same p.
Speedup S_p = T_serial / T_p and efficiency E_p = S_p / p, from the median
serial time; min and max come from the fastest and slowest run at p.
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time


def mc_integrate(task):
    """One task: (samples, seed) -> (sum of f, sum of f^2, samples)."""
    samples, seed = task
    u = random.Random(seed).random
    s = ss = 0.0
    for _ in range(samples):
        x = u()
        y = 1.0 / (1.0 + x * x)
        s += y
        ss += y * y
    return s, ss, samples


def calibrate(task_ms):
    """Samples per task for task_ms milliseconds on this machine, from the
    fastest of five probes of at least 10 ms each: on a shared machine the
    fastest is the one least slowed by other work."""
    n, per_sample = 1 << 12, []
    while len(per_sample) < 5:
        t0 = time.perf_counter()
        mc_integrate((n, 1))
        dt = time.perf_counter() - t0
        if dt < 0.010:
            n *= 2
            continue
        per_sample.append(dt / n)
    return max(1000, round(task_ms / 1000.0 / min(per_sample)))


def summary(values):
    return {"median": round(statistics.median(values), 6), "min": round(min(values), 6),
            "max": round(max(values), 6)}


def from_taskq(path):
    """(tasks, largest p) of taskq-bench's W4 lines in path, or (None, None)."""
    n, procs = None, []
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            if d.get("system") != "taskq" or d.get("workload") != "W4":
                continue
            n = d.get("n", n)
            if d.get("variant", "").startswith("p="):
                procs.append(int(d["variant"][2:]))
    return n, (max(procs) if procs else None)


def line(variant, n, runs, figures, **extra):
    d = {"system": "multiprocessing", "workload": "W4", "variant": variant, "n": n,
         "runs": runs, "figures": figures}
    d.update(extra)
    print(json.dumps(d, separators=(",", ":")), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--procs", type=int)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--task-ms", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--match")
    a = ap.parse_args()

    n, procs = from_taskq(a.match) if a.match else (None, None)
    n = a.tasks or n or (20 if a.quick else 100)
    procs = a.procs or procs or max(2, len(os.sched_getaffinity(0)))
    if n < 1 or procs < 1 or a.runs < 1:
        ap.error("--tasks, --procs and --runs must be positive")

    samples = calibrate(a.task_ms)
    tasks = [(samples, seed) for seed in range(1, n + 1)]
    print(f"W4 multiprocessing: {n} tasks of {samples} samples (~{a.task_ms:g} ms each), "
          f"p = 1..{procs}, {a.runs} runs", file=sys.stderr)

    mc_integrate(tasks[0])  # warm-up, untimed
    expected = None
    serial = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        expected = [mc_integrate(t) for t in tasks]
        serial.append(time.perf_counter() - t0)
    t_serial = statistics.median(serial)
    line("serial", n, a.runs, {"seconds": summary(serial)}, samples_per_task=samples,
         task_ms=round(t_serial / n * 1000, 3))

    # A run that takes ten times the serial time is stuck: give up on it.
    limit = 10 * max(serial) + 30
    for p in range(1, procs + 1):
        secs = []
        with mp.Pool(p) as pool:
            pool.map(abs, range(4 * p), chunksize=1)  # every process started, untimed
            for _ in range(a.runs):
                t0 = time.perf_counter()
                got = pool.map_async(mc_integrate, tasks, chunksize=1).get(timeout=limit)
                secs.append(time.perf_counter() - t0)
                if got != expected:
                    sys.exit(f"mp_speedup: p={p}: results differ from the serial run")
        speedup = [t_serial / s for s in secs]
        line(f"p={p}", n, a.runs, {
            "seconds": summary(secs),
            "speedup": summary(speedup),
            "efficiency": summary([s / p for s in speedup]),
        })


if __name__ == "__main__":
    main()
