"""Write bench/RESULTS.md and the data files of bench/plots.gp from one compare.sh run.

Reads taskq-bench's JSON lines, the peer harness's results.json (its raw ZeroMQ
reference and the peers) and mp_speedup.py's JSON lines; writes a table per
workload with each system's ratio to the reference, the targets of issue 6 as a
checklist, and w1.dat, w2_cdf.dat, w2_points.dat and w4.dat for the plots.

usage: report.py --taskq JSONL --out RESULTS.md --plot-data DIR [--taskq-log TXT]
                 [--taskq-status N] [--peers DIR [--peers-log FILE] | --no-peers REASON]
                 [--mp JSONL] [--quick]

--peers-log: the harness's stderr; its lines about skipped or failed peers are
quoted in RESULTS.md.
"""
import argparse
import datetime
import json
import math
import os
import platform
import sys

REFERENCE = "(b) brokered, 64 slot"  # the peer harness's variant that is "the reference"
DIRECT = "(a) direct"
TASKQ, REF, ZMQ, PEER, MP = "taskq", "reference", "zmq", "peer", "multiprocessing"

# Figure names as the column headers and sentences say them.
UNITS = {
    "tasks_per_s": "tasks/s", "p50_us": "p50 µs", "p99_us": "p99 µs", "p999_us": "p99.9 µs",
    "mb_per_s": "MB/s", "seconds": "s", "speedup": "speedup", "efficiency": "efficiency",
    "min_share": "min share", "max_share": "max share", "idle_cpu_pct": "idle CPU %",
    "w1_ratio": "÷ W1 with 2", "rss_bytes_per_task": "RSS B/task",
    "beyond_arg_bytes_per_task": "B/task beyond arg",
}
# The members every JSON line has; the others are shown as notes (samples_us
# goes to the W2 plot instead).
STANDARD_KEYS = {"system", "workload", "variant", "n", "runs", "figures", "broker_cpu_us_per_task"}
TITLES = {
    "W1": "W1 throughput: K tasks \"square an integer\" pipelined, 2 workers",
    "W2": "W2 latency: one task at a time, 1 worker, round trip",
    "W3": "W3 payload: 64 KiB echoed, 2 workers, MB/s counted once per task",
    "W4": "W4 speedup: ~20 ms Monte Carlo tasks, serial then p worker processes",
    "W5": "W5 many clients: 8 client processes submitting at once",
    "W6": "W6 scale: 1,000 connected workers",
    "W7": "W7 memory: 1,000,000 queued small tasks, no workers",
    "W8": "W8 durability cost: W1 in memory and durable modes",
}
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]


class Row:
    """One line of a table: a system's figures for one workload and variant."""

    def __init__(self, kind, system, variant, workload, n, figures, broker=None, extra=None,
                 errors=0):
        self.kind, self.system, self.variant, self.workload = kind, system, variant, workload
        self.n, self.figures, self.broker = n, figures, broker  # figures: name -> median, min, max
        self.extra, self.errors = extra or {}, errors  # extra: the line's other members

    def med(self, name):
        f = self.figures.get(name)
        return f["median"] if f else None


def read_jsonl(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.startswith("{"):
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"report.py: {path}:{i}: not JSON ({e}), skipped", file=sys.stderr)
    return out


def from_bench(d, kind):
    """A row from one JSON line of taskq-bench or mp_speedup.py."""
    extra = {k: v for k, v in d.items() if k not in STANDARD_KEYS}
    return Row(kind, d.get("system", kind), d.get("variant", ""), d["workload"], d.get("n"),
               d.get("figures", {}), d.get("broker_cpu_us_per_task"), extra)


def from_peers(s):
    """A row from one entry of the harness's results.json "summary"."""
    figures = {k: {"median": v["median"], "min": v["min"], "max": v["max"]}
               for k, v in s.items() if isinstance(v, dict) and "median" in v}
    variant = s["variant"] + (f" ({s['note']})" if s.get("note") else "")
    if s["peer"] == "zmq":
        kind = REF if s["variant"].startswith(REFERENCE) else ZMQ
        system = "raw ZeroMQ"
    else:
        kind, system = PEER, s["peer"]
    return Row(kind, system, variant, s["workload"], s.get("n"), figures,
               errors=s.get("errors", 0))


# ---------------------------------------------------------------- formatting
def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(f):
    if not f:
        return "–"
    if f["min"] == f["max"]:
        return fmt(f["median"])
    return f"{fmt(f['median'])} [{fmt(f['min'])}–{fmt(f['max'])}]"


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r):
    if r is None:
        return "–"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def phrase(metric, v):
    """A figure with its unit, as a sentence says it: "p50 135 µs" (efficiency
    is compared at p = 2 only)."""
    if metric.endswith("_us"):
        return f"{UNITS[metric].replace(' µs', '')} {fmt(v)} µs"
    if metric == "efficiency":
        return f"E_2 {fmt(v)}"
    return f"{fmt(v)} {UNITS[metric]}"


def extra_text(row):
    parts = []
    for k, v in row.extra.items():
        if k == "samples_us":
            continue
        if isinstance(v, dict) and "median" in v:
            v = cell(v)
        elif isinstance(v, list):
            v = "[" + ", ".join(fmt(x) if isinstance(x, (int, float)) else str(x) for x in v) + "]"
        elif isinstance(v, (int, float)):
            v = fmt(v)
        parts.append(f"{k} {v}")
    if row.errors:
        parts.append(f"**{row.errors} wrong results**")
    return "; ".join(parts)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def system_cell(row):
    return {TASKQ: "**taskq**", REF: "raw ZeroMQ, **the reference**"}.get(row.kind, row.system)


# ---------------------------------------------------------------- the data
class Data:
    def __init__(self, taskq, peers, mp):
        self.taskq, self.peers, self.mp = taskq, peers, mp

    def rows(self, wl, kinds=None):
        rows = [r for r in self.taskq + self.peers + self.mp if r.workload == wl]
        return [r for r in rows if kinds is None or r.kind in kinds]

    def taskq_row(self, wl, variant):
        return next((r for r in self.taskq if r.workload == wl and r.variant == variant), None)

    def ref(self, wl, n=None):
        """The reference row for wl: the one with n tasks if there is one, else
        the first (the harness lists its standard K first)."""
        refs = [r for r in self.peers if r.workload == wl and r.kind == REF]
        same = [r for r in refs if r.n == n]
        return (same or refs or [None])[0]

    def best_peer(self, wl, metric, lowest=False):
        peers = [r for r in self.peers if r.workload == wl and r.kind == PEER and r.med(metric)]
        if not peers:
            return None
        return (min if lowest else max)(peers, key=lambda r: r.med(metric))


def order(rows):
    """taskq first, then the reference, the other ZeroMQ rows, the peers."""
    rank = {TASKQ: 0, REF: 1, ZMQ: 2, MP: 3, PEER: 4}
    return sorted(rows, key=lambda r: rank[r.kind])


def ratio_table(d, wl, metrics, ratio_metrics):
    rows = order(d.rows(wl))
    if not rows:
        return ["No figures in this run."]
    present = [m for m in metrics if any(r.figures.get(m) for r in rows)]
    header = ["system", "variant", "n"] + [UNITS[m] for m in present]
    header += [f"{UNITS[m]} ÷ reference" for m in ratio_metrics]
    header += ["broker CPU µs/task", "notes"]
    body = []
    for r in rows:
        ref = d.ref(wl, r.n)
        body.append([system_cell(r), r.variant, fmt(r.n)] +
                    [cell(r.figures.get(m)) for m in present] +
                    [fmt_ratio(ratio(r.med(m), ref.med(m) if ref else None)) for m in ratio_metrics] +
                    [cell(r.broker), extra_text(r)])
    return table(header, body)


def plain_table(d, wl, ratio_to_ref=None):
    """taskq's rows (and multiprocessing's, for W4) with every figure they have."""
    rows = order(d.rows(wl, {TASKQ, MP}))
    if not rows:
        return ["No figures in this run."]
    names = []
    for r in rows:
        names += [m for m in r.figures if m not in names]
    header = ["system", "variant", "n"] + [UNITS.get(m, m) for m in names]
    if ratio_to_ref:
        header.append(f"{UNITS[ratio_to_ref]} ÷ W1 reference")
    header += ["broker CPU µs/task", "notes"]
    body = []
    for r in rows:
        line = [system_cell(r), r.variant, fmt(r.n)]
        line += [cell(r.figures.get(m)) for m in names]
        if ratio_to_ref:
            ref = d.ref("W1", r.n)
            line.append(fmt_ratio(ratio(r.med(ratio_to_ref), ref.med(ratio_to_ref) if ref else None)))
        body.append(line + [cell(r.broker), extra_text(r)])
    return table(header, body)


# ---------------------------------------------------------------- targets
def broker_text(row):
    if row is None or not row.broker:
        return "no broker CPU figure in this run"
    return f"broker CPU {fmt(row.broker['median'])} µs per task (taskq-bench {row.workload} {row.variant})"


def targets(d):
    """Each target as (text, the measured ratio or figure as text, holds or None
    when not measured, what was compared, the taskq-bench figure for a miss)."""
    out = []
    w1 = d.taskq_row("W1", "memory")
    ref1 = d.ref("W1", w1.n if w1 else None)
    fast1 = d.best_peer("W1", "tasks_per_s")

    def vs(text, row, metric, other, limit, other_name, lowest_wins=False, why=None, more=""):
        a = row.med(metric) if row else None
        b = other.med(metric) if other else None
        r = ratio(a, b)
        holds = None if r is None else (r <= limit if lowest_wins else r >= limit)
        if a is None:
            what = "taskq-bench gave no figure"
        elif b is None:
            what = f"no {other_name.split(' (')[0]} in this run"
        else:
            what = f"taskq {phrase(metric, a)}, {other_name} {phrase(metric, b)}{more}"
        out.append((text, "ratio " + fmt_ratio(r), holds, what, why or broker_text(row)))

    big = next((r for r in d.taskq if r.workload == "W1" and r is not w1), None)
    big_ratio = ratio(big.med("tasks_per_s") if big else None,
                      d.ref("W1", big.n).med("tasks_per_s") if big and d.ref("W1", big.n) else None)
    vs("W1 memory mode: at least 60 % of the reference's tasks/s", w1, "tasks_per_s", ref1, 0.6,
       "reference", more=f"; {big.variant}: {fmt_ratio(big_ratio)}" if big_ratio else "")
    vs("W1 memory mode: at least 10× the fastest peer", w1, "tasks_per_s", fast1, 10.0,
       "fastest peer" + (f" ({fast1.system} {fast1.variant})" if fast1 else ""))
    w8 = d.taskq_row("W8", "sqlite normal")
    vs("W8 durable, --sync normal: at least 35 % of the reference's W1 tasks/s", w8, "tasks_per_s",
       d.ref("W1", w8.n if w8 else None), 0.35, "reference")

    w2 = d.taskq_row("W2", "memory")
    ref2 = d.ref("W2", w2.n if w2 else None)
    vs("W2 p50 at most 1.3× the reference's", w2, "p50_us", ref2, 1.3, "reference", True)
    vs("W2 p99 at most 2× the reference's", w2, "p99_us", ref2, 2.0, "reference", True)
    fast2 = d.best_peer("W2", "p50_us", lowest=True)
    vs("W2 p50 no higher than the fastest peer's", w2, "p50_us", fast2, 1.0,
       "fastest peer" + (f" ({fast2.system} {fast2.variant})" if fast2 else ""), True)

    w3 = d.taskq_row("W3", "memory")
    vs("W3 at least 85 % of the reference's MB/s", w3, "mb_per_s",
       d.ref("W3", w3.n if w3 else None), 0.85, "reference")
    best3 = d.best_peer("W3", "mb_per_s")
    a, b = (w3.med("mb_per_s") if w3 else None), (best3.med("mb_per_s") if best3 else None)
    r = ratio(a, b)
    out.append(("W3 above every peer", "ratio " + fmt_ratio(r), None if r is None else r > 1.0,
                f"taskq {phrase('mb_per_s', a)}, best peer ({best3.system} {best3.variant}) "
                f"{phrase('mb_per_s', b)}" if r is not None else
                "taskq-bench gave no figure" if a is None else "no peer in this run",
                broker_text(w3)))

    w4 = d.taskq_row("W4", "p=2")
    serial = d.taskq_row("W4", "serial")
    e2 = w4.med("efficiency") if w4 else None
    why4 = broker_text(w4)
    if w4 and serial and w4.med("seconds") and serial.med("seconds"):
        why4 = (f"p=2 took {fmt(w4.med('seconds'))} s against {fmt(serial.med('seconds') / 2)} s "
                f"(serial / 2); " + why4)
    out.append(("W4 efficiency at p = 2 at least 0.9", "E_2 " + fmt(e2), None if e2 is None else e2 >= 0.9,
                "" if e2 is not None else "taskq-bench gave no figure", why4))
    mp2 = next((r for r in d.mp if r.variant == "p=2"), None)
    vs("W4 efficiency at p = 2 at least multiprocessing.Pool's", w4, "efficiency", mp2, 1.0,
       "multiprocessing.Pool", why=why4)

    w6 = next((r for r in d.taskq if r.workload == "W6"), None)
    idle = w6.med("idle_cpu_pct") if w6 else None
    out.append(("W6: 1,000 idle workers cost the broker under 5 % of one core",
                f"{fmt(idle)} % of one core", None if idle is None else idle < 5.0,
                "" if idle is not None else "taskq-bench gave no figure",
                f"broker idle CPU {fmt(idle)} % of one core; " + broker_text(w6)))
    wr = w6.med("w1_ratio") if w6 else None
    out.append(("W6: W1 with 1,000 workers connected at least 50 % of W1 with 2", "ratio " + fmt(wr),
                None if wr is None else wr >= 0.5,
                f"{phrase('tasks_per_s', w6.med('tasks_per_s'))} with 1,000 workers"
                if w6 and w6.med("tasks_per_s") else "taskq-bench gave no figure",
                broker_text(w6)))

    w7 = next((r for r in d.taskq if r.workload == "W7"), None)
    beyond = w7.med("beyond_arg_bytes_per_task") if w7 else None
    out.append(("W7: at most 256 bytes of broker memory per queued task beyond its argument",
                f"{fmt(beyond)} bytes", None if beyond is None else beyond <= 256,
                f"{fmt(w7.med('rss_bytes_per_task'))} bytes of RSS per task in all"
                if beyond is not None else "taskq-bench gave no figure",
                f"broker RSS {fmt(beyond)} B per queued task beyond its argument" if w7 else ""))
    return out


def target_lines(d):
    lines = []
    for text, shown, holds, what, why in targets(d):
        if holds is None:
            lines.append(f"- [ ] {text}: **not measured in this run**" + (f" ({what})" if what else ""))
            continue
        mark, verdict = ("x", "holds") if holds else (" ", "does not hold yet")
        lines.append(f"- [{mark}] {text}: **{verdict}**, {shown}" + (f" ({what})" if what else ""))
        if not holds:
            lines.append(f"  - **Why:** _(the explanation from the profile, to be added by hand)_ "
                         f"Measured: {why}.")
    return lines


# ---------------------------------------------------------------- machine
def machine_lines(peers_machine):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    osname = "?"
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- Date: {now}",
             f"- CPU: {model}, {os.cpu_count()} cores",
             f"- RAM: {mem_kb / 1024 / 1024:.1f} GiB; kernel {platform.release()}; {osname}"]
    if peers_machine:
        lines.append(f"- Speed probe at the start of the peer run (Python `sum(range(1000))`, lower "
                     f"is faster; this kind of machine drifts with host load): "
                     f"{peers_machine.get('py_sum_range_1000_us')} µs; load average "
                     f"{' '.join(peers_machine.get('loadavg_at_start', []))}")
    return lines


# ---------------------------------------------------------------- plot data
def short_name(r):
    """The label of a bar or a point in the plots."""
    if r.kind == TASKQ:
        return "taskq" + (" " + r.variant.replace("memory ", "") if r.variant != "memory" else "")
    if r.kind in (REF, ZMQ):
        v = r.variant
        name = ("ZeroMQ direct" if v.startswith(DIRECT) else
                "ZeroMQ brokered 64 (ref.)" if v.startswith(REFERENCE) else
                "ZeroMQ brokered 1" if v.startswith("(b) brokered, 1 ") else "ZeroMQ " + v[:20])
        return name + (" K=200k" if "K=200000" in v else "")
    names = {"python": r.variant, "beanstalkd": "beanstalkd", "celery": "Celery", "dask": "Dask"}
    if r.system == "gearman":
        return "gearman, 1000 in flight" if "every 1000" in r.variant else "gearman"
    if r.system == "rq":
        return "RQ SimpleWorker" if "SimpleWorker" in r.variant else "RQ"
    return names.get(r.system, f"{r.system} {r.variant}"[:28])


def q(s):
    return '"' + s.replace('"', "'") + '"'


def write_plot_data(d, folder):
    """The data files of plots.gp, and vars.gp with the ranges and counts it needs."""
    os.makedirs(folder, exist_ok=True)
    kinds = {TASKQ: 0, REF: 1, ZMQ: 2, PEER: 3}
    w1 = [r for r in order(d.rows("W1", set(kinds))) if r.figures.get("tasks_per_s")]
    w1 = [r for r in w1 if r.kind != PEER] + sorted(
        (r for r in w1 if r.kind == PEER), key=lambda r: -r.med("tasks_per_s"))
    with open(os.path.join(folder, "w1.dat"), "w") as f:
        f.write("# label tasks/s min max kind(0 taskq, 1 reference, 2 other ZeroMQ, 3 peer)\n")
        for r in w1:
            t = r.figures["tasks_per_s"]
            f.write(f"{q(short_name(r))} {t['median']} {t['min']} {t['max']} {kinds[r.kind]}\n")
    lows = [r.figures["tasks_per_s"]["min"] for r in w1 if r.figures["tasks_per_s"]["min"] > 0]
    highs = [r.figures["tasks_per_s"]["max"] for r in w1]

    taskq2 = d.taskq_row("W2", "memory")
    samples = sorted(taskq2.extra.get("samples_us", [])) if taskq2 else []
    with open(os.path.join(folder, "w2_cdf.dat"), "w") as f:
        f.write("# round trip µs, fraction of tasks at or below\n")
        for i, s in enumerate(samples):
            f.write(f"{s} {(i + 1) / len(samples):.6f}\n")
        if not samples:
            f.write("NaN NaN\n")
    points = [r for r in order(d.rows("W2", {REF, ZMQ, PEER})) if r.med("p50_us") and r.med("p99_us")]
    with open(os.path.join(folder, "w2_points.dat"), "w") as f:
        # One block per system, its name as the block's column header.
        for r in points:
            f.write(f"{q(short_name(r))} x\n{r.med('p50_us')} 0.5\n{r.med('p99_us')} 0.99\n\n\n")

    pmax, smax, emax = 2, 0.0, 0.0
    with open(os.path.join(folder, "w4.dat"), "w") as f:
        f.write("# p speedup min max efficiency min max; block 0 taskq, block 1 multiprocessing\n")
        for rows in (d.rows("W4", {TASKQ}), d.rows("W4", {MP})):
            by_p = sorted((int(r.variant[2:]), r) for r in rows if r.variant.startswith("p="))
            for p, r in by_p:
                s, e = r.figures.get("speedup"), r.figures.get("efficiency")
                if s and e:
                    pmax, smax, emax = max(pmax, p), max(smax, s["max"]), max(emax, e["max"])
                    f.write(f"{p} {s['median']} {s['min']} {s['max']} "
                            f"{e['median']} {e['min']} {e['max']}\n")
            if not by_p:
                f.write("NaN NaN NaN NaN NaN NaN NaN\n")
            f.write("\n\n")

    with open(os.path.join(folder, "vars.gp"), "w") as f:
        f.write(f"w1_n = {len(w1)}\n"
                f"w1_low = {10 ** math.floor(math.log10(min(lows))) if lows else 1}\n"
                f"w1_high = {10 ** math.ceil(math.log10(max(highs) * 1.6)) if highs else 10}\n"
                f"w2_has_cdf = {1 if samples else 0}\n"
                f"w2_blocks = {len(points)}\n"
                f"w4_pmax = {pmax}\n"
                f"w4_smax = {max(pmax * 1.15 + 0.1, smax * 1.1):.3f}\n"
                f"w4_emax = {max(1.25, emax * 1.1):.3f}\n")


# ---------------------------------------------------------------- the page
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--taskq", required=True)
    ap.add_argument("--taskq-log")
    ap.add_argument("--taskq-status", type=int, default=0)
    ap.add_argument("--peers")
    ap.add_argument("--no-peers")
    ap.add_argument("--peers-log")
    ap.add_argument("--mp")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot-data", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()

    taskq = [from_bench(x, TASKQ) for x in read_jsonl(a.taskq) if x.get("workload")]
    mp = [from_bench(x, MP) for x in read_jsonl(a.mp) if x.get("workload") == "W4"]
    peers, failures, peers_machine = [], [], None
    results = os.path.join(a.peers, "results.json") if a.peers else None
    if results and os.path.exists(results):
        with open(results) as f:
            pj = json.load(f)
        peers = [from_peers(s) for s in pj.get("summary", [])]
        failures = pj.get("failures", [])
        peers_machine = pj.get("machine")
    d = Data(taskq, peers, mp)

    L = ["# taskq benchmark results", ""]
    L.append("Written by `bench/compare.sh`: `taskq-bench`, the peer harness "
             "(`../shared/bench/peers`: its raw ZeroMQ programs and the peers) and "
             "`bench/mp_speedup.py`, in one run on one machine. Each cell: median of the runs "
             "[min–max]. The reference is the harness's raw brokered ZeroMQ program with 64 slots "
             "per worker, (b); ratios compare figures of this run only, because these shared "
             "machines drift by up to half between runs. Under each missed target, a line marked "
             "*Why* gives taskq-bench's figure for it; the explanation from the profile is added "
             "there by hand after the run.")
    L.append("")
    if a.quick:
        L += ["**QUICK=1: a smoke run with few tasks; these figures are not meaningful.**", ""]
    L += ["## Machine", ""] + machine_lines(peers_machine) + [""]
    if a.taskq_status:
        L += [f"**taskq-bench exited with status {a.taskq_status}**: the figures below are those "
              "it printed before.", ""]
    if not taskq:
        L += ["**taskq-bench printed no figures.**", ""]
    if a.no_peers:
        L += [f"**No peers in this run: {a.no_peers}.** The tables show taskq only.", ""]
    elif a.peers and not peers:
        L += ["**The peer harness wrote no results in this run**; the tables show taskq only.", ""]
    elif not any(r.kind == REF for r in peers):
        L += ["**No raw ZeroMQ reference in this run**: the ratios to it are missing.", ""]
    if a.peers_log and os.path.exists(a.peers_log):
        with open(a.peers_log) as f:
            skipped = [ln.strip() for ln in f if "skipping" in ln or "failed" in ln]
        if skipped:
            L += ["The peer harness said:", ""] + [f"    {ln}" for ln in skipped] + [""]

    L += ["## The performance to reach (issue 6)", ""] + target_lines(d) + [""]

    L += ["## Plots", "",
          "![W1 throughput by system](plots/w1_throughput.png)", "",
          "![W2 latency distribution](plots/w2_latency.png)", "",
          "![W4 speedup and efficiency](plots/w4_speedup.png)", "",
          "SVG versions: [W1](plots/w1_throughput.svg), [W2](plots/w2_latency.svg), "
          "[W4](plots/w4_speedup.svg).", ""]

    for wl in WORKLOADS:
        L += [f"## {TITLES[wl]}", ""]
        if wl == "W1":
            L += ratio_table(d, wl, ["tasks_per_s"], ["tasks_per_s"])
        elif wl == "W2":
            L += ratio_table(d, wl, ["p50_us", "p99_us", "p999_us"], ["p50_us", "p99_us"])
        elif wl == "W3":
            L += ratio_table(d, wl, ["mb_per_s"], ["mb_per_s"])
        elif wl == "W4":
            L += plain_table(d, wl)
            L += ["", "Speedup S_p = T_serial / T_p, efficiency E_p = S_p / p; taskq runs "
                  "`mc_integrate` (C) through `taskq-worker --procs p`, multiprocessing a "
                  "pure-Python task of the same ~20 ms through `Pool(p)`."]
        elif wl == "W8":
            L += plain_table(d, wl, ratio_to_ref="tasks_per_s")
        else:
            L += plain_table(d, wl)
        L.append("")

    if failures:
        L += ["## Failed or cut-off peer runs", ""]
        L += [f"- {f_['peer']} / {f_['variant']}: {f_['failed']}" for f_ in failures]
        L.append("")
    if peers_machine and peers_machine.get("versions"):
        L += ["## Versions of the peers", ""]
        L += [f"- {k}: {v}" for k, v in peers_machine["versions"].items()]
        L.append("")
    if a.taskq_log and os.path.exists(a.taskq_log):
        with open(a.taskq_log) as f:
            log = f.read().strip()
        if log:
            L += ["## taskq-bench output", "", "```", log, "```", ""]

    with open(a.out, "w") as f:
        f.write("\n".join(L))
    write_plot_data(d, a.plot_data)


if __name__ == "__main__":
    main()
