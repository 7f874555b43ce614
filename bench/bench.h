/*
 * bench.h - what the modules of taskq-bench share: its options and run
 * context, the processes it starts (procs.c), the tasks and their checks
 * (tasks.c), the client-side exchanges (exchange.c), the figures it
 * reports (report.c), the workloads (workloads.c) and the W6 swarm
 * (swarm.c).  taskq-bench is a program: these functions print what went
 * wrong to stderr themselves and return -1.
 */
#ifndef TASKQ_BENCH_H
#define TASKQ_BENCH_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "taskq.h"

#define BENCH_MAX_RUNS 100
#define BENCH_MAX_CHILDREN 64
/* The 64 KiB byte string of W3, as the peer harness sends it. */
#define BENCH_PAYLOAD 65536
/* Client batches (max_batch): the library's default, named so that the
 * exchanges can drain results at batch boundaries. */
#define BENCH_BATCH 256

/* Set by the SIGINT/SIGTERM handler of the driver; every wait looks at it. */
extern volatile sig_atomic_t bench_interrupted;

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC: comparable between the
 * processes of one machine). */
static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleep ms milliseconds (shorter if a signal arrives). */
void bench_sleep_ms(int ms);

/* Make SIGINT and SIGTERM set bench_interrupted (taskq_bench.c). */
void bench_catch_signals(void);

/* ---- Options and context ------------------------------------------------- */

enum {
    BENCH_W1 = 1u << 0,
    BENCH_W2 = 1u << 1,
    BENCH_W3 = 1u << 2,
    BENCH_W4 = 1u << 3,
    BENCH_W5 = 1u << 4,
    BENCH_W6 = 1u << 5,
    BENCH_W7 = 1u << 6,
    BENCH_W8 = 1u << 7,
};

typedef struct bench_opts {
    unsigned workloads;        /* BENCH_W* bits */
    unsigned runs;             /* timed runs per figure, 1..BENCH_MAX_RUNS */
    bool json;                 /* JSON lines on stdout, human lines on stderr */
    bool quick;                /* small counts: a smoke run of seconds */
    const char *broker;        /* an existing broker, or NULL: start one */
    const char *taskqd;        /* the broker program */
    const char *taskq_worker;  /* the pool program (W4) */
    const char *plugin;        /* montecarlo.so (W4) */
    const char *out_dir;       /* keep logs and results.jsonl there, or NULL */
    uint64_t k;                /* tasks per run of W1 (and W5, W6, W8) */
    unsigned procs;            /* W4: largest p */
} bench_opts_t;

/* The log of a process taskq-bench started: its stdout (unless redirected)
 * and stderr. */
typedef struct bench_log {
    char label[32];      /* what the process is, for messages */
    char path[PATH_MAX]; /* the file */
} bench_log_t;

/* A process taskq-bench started and has not reaped yet. */
typedef struct bench_child {
    pid_t pid;           /* 0: a free slot */
    size_t log;          /* its log in bench_t.made */
} bench_child_t;

typedef struct bench {
    bench_opts_t o;
    char self[PATH_MAX];   /* this program, re-executed in its hidden modes */
    char work[64];         /* private directory: ready files, databases, W5 results */
    char logs[PATH_MAX - 128]; /* where the children's logs go (room left for a name) */
    unsigned seq;          /* numbers the files made in work and logs */
    bench_child_t kids[BENCH_MAX_CHILDREN];
    bench_log_t *made;     /* the log of every process started, in order */
    size_t n_made;
    size_t dump_from;      /* bench_dump_logs() prints made[dump_from..] */
    FILE *jsonl;           /* results.jsonl in --out-dir, or NULL */
    int64_t run_limit_ns;  /* longest a timed or warm-up run may take */
} bench_t;

/* ---- Processes (procs.c) ------------------------------------------------- */

/*
 * Start argv[0] with argv (NULL-terminated) in its own process group, so
 * that only taskq-bench signals it, dying with taskq-bench (SIGTERM).
 * stdin is in_fd (or /dev/null if negative), stdout out_fd (or the log),
 * stderr the log: a new file in b->logs named after label.  Returns the
 * pid or -1.
 */
pid_t bench_spawn(bench_t *b, const char *label, char *const argv[], int in_fd, int out_fd);

/* Stop a child: SIGTERM, then SIGKILL after timeout_ms; reap it and
 * whatever is left of its process group.  Returns the wait status, or -1
 * if it had to be killed or is not a child of ours. */
int bench_stop(bench_t *b, pid_t pid, int timeout_ms);

/* Stop every child still running, the latest started first. */
void bench_stop_all(bench_t *b);

/* Wait up to timeout_ms for pid to exit by itself (then kill it), and say
 * so on stderr if it did not exit with status 0.  Returns the wait status,
 * or -1. */
int bench_reap(bench_t *b, pid_t pid, int timeout_ms);

/* 0 if every child is running; -1 (printed) if one has exited. */
int bench_check_children(bench_t *b);

/* Print the last lines of every non-empty log made since b->dump_from
 * (after a failure: those of the failed workload). */
void bench_dump_logs(bench_t *b);

/* Read exactly n bytes from fd within timeout_ms.  0, or -1 (end of file,
 * time out or interrupt). */
int bench_read(int fd, void *buf, size_t n, int timeout_ms);

/* A pipe whose ends are closed on exec (a child gets one by bench_spawn's
 * in_fd or out_fd).  0 or -1. */
int bench_pipe(int fds[2]);

/* A path of the form <work>/<seq>-<name> into buf (PATH_MAX bytes). */
void bench_work_path(bench_t *b, const char *name, char *buf);

/* The broker a workload talks to, and the client taskq-bench talks to it with. */
typedef struct bench_broker {
    pid_t pid;              /* 0: not ours (--broker) */
    char endpoint[256];     /* where it listens */
    taskq_client_t *client; /* STATS, and the single-client workloads */
} bench_broker_t;

/* What the bench reads from STATS (PROTOCOL.md 3.7). */
typedef struct bench_stats {
    uint64_t cpu_us;    /* cpu_user_us + cpu_sys_us */
    uint64_t rss_bytes; /* resident memory */
    uint64_t workers;   /* connected workers */
    uint64_t queued;    /* tasks waiting */
} bench_stats_t;

/*
 * Start taskqd on tcp://127.0.0.1:* with extra arguments (NULL-terminated;
 * "--memory" if NULL), wait for its ready file, connect a client and ping
 * it.  With --broker, only connect.  Returns 0 or -1.
 */
int bench_broker_start(bench_t *b, bench_broker_t *br, const char *const *args);

/* Destroy the client and stop the broker if it is ours. */
void bench_broker_stop(bench_t *b, bench_broker_t *br);

/* Read the broker's statistics.  0 or -1. */
int bench_stats(bench_broker_t *br, bench_stats_t *ret);

/* Wait up to timeout_ms until the broker reports n connected workers,
 * watching the children.  0 or -1. */
int bench_wait_workers(bench_t *b, bench_broker_t *br, uint64_t n, int timeout_ms);

/* ---- Tasks (tasks.c) ----------------------------------------------------- */

typedef enum bench_kind {
    BENCH_SQUARE, /* argument: the integer i; result: i*i */
    BENCH_ECHO,   /* argument: 64 KiB bin, its first 8 bytes i; result: the same */
} bench_kind_t;

/* The function a kind calls: "square" or "echo". */
const char *bench_function(bench_kind_t k);

/* Room for the latest argument, and the W3 byte pattern.  Heap-allocate it. */
typedef struct bench_args {
    uint8_t small[9];                 /* a square's argument */
    uint8_t echo[5 + BENCH_PAYLOAD];  /* bin 32 header and payload */
} bench_args_t;

/* Fill the W3 pattern (the peer harness's bytes). */
void bench_args_init(bench_args_t *a);

/* The argument of task i of kind k, in a (valid until the next call). */
const void *bench_arg(bench_args_t *a, bench_kind_t k, uint64_t i, size_t *ret_len);

/* Whether res is the right result of task i. */
bool bench_result_ok(const bench_args_t *a, bench_kind_t k, uint64_t i, const void *res,
                     size_t len);

/*
 * Run the function fn (fn_len bytes, "square" or "echo") on arg: the
 * result goes to *ret (into out for a square; arg itself for an echo).
 * Returns 0, or -1 with *ret_error saying why.  Shared by the worker
 * processes and the W6 swarm.
 */
int bench_compute(const char *fn, size_t fn_len, const uint8_t *arg, size_t len,
                  uint8_t out[9], const uint8_t **ret, size_t *ret_len, const char **ret_error);

/* Hidden mode: a worker serving square and echo until SIGTERM.
 * argv: --run-worker ENDPOINT.  Returns the exit status. */
int bench_worker_main(int argc, char **argv);

/* ---- Exchanges (exchange.c) ---------------------------------------------- */

/*
 * Wait for f until deadline_ns (bench_now_ns time), in slices so that an
 * interrupt is seen.  Returns what taskq_future_wait() returns, or
 * TASKQ_ETIMEDOUT at the deadline, TASKQ_ESTOPPED when interrupted.
 */
int bench_wait(taskq_future_t *f, int64_t deadline_ns);

/*
 * The throughput exchange: n tasks of kind k through the pipelined path
 * (taskq_submit, results drained at each full batch, taskq_client_flush,
 * then every result collected in order and checked).  *ret_t0 and
 * *ret_t1 get the time of the first submit and of the last result; if
 * done_ns is not NULL, done_ns[i] gets when task i's result was seen.
 * Returns 0 or -1 (printed).
 */
int bench_batch(taskq_client_t *c, bench_kind_t k, uint64_t n, int64_t deadline_ns,
                int64_t *done_ns, int64_t *ret_t0, int64_t *ret_t1);

/* The latency exchange: n squares one at a time; lat_us[i] gets the round
 * trip of task i.  Returns 0 or -1 (printed). */
int bench_latency(taskq_client_t *c, uint64_t n, int64_t deadline_ns, double *lat_us);

/* Hidden mode: one W5 client.  argv: --run-client ENDPOINT N OUTFILE.
 * Connects, writes a byte to stdout, waits for stdin to close, runs
 * bench_batch and writes t0, t1 and the n result times (int64 ns) to
 * OUTFILE.  Returns the exit status. */
int bench_client_main(int argc, char **argv);

/* ---- The W6 swarm (swarm.c) ---------------------------------------------- */

/* Hidden mode: N worker connections in one process.  argv: --run-swarm
 * ENDPOINT N CREDIT.  Prints "ready HEARTBEAT_MS" once every connection
 * has its WELCOME; runs until SIGTERM.  Returns the exit status. */
int bench_swarm_main(int argc, char **argv);

/* ---- Figures (report.c) -------------------------------------------------- */

typedef struct bench_figure {
    const char *key;    /* JSON name: "tasks_per_s" */
    const char *label;  /* before the value in the human line, or "" */
    const char *unit;   /* after it: "tasks/s", "µs", ... or "" */
    int decimals;       /* in the human line */
    double v[BENCH_MAX_RUNS]; /* one value per run */
} bench_figure_t;

typedef struct bench_report {
    const char *workload;  /* "W1" */
    char variant[64];      /* "memory" */
    char title[192];       /* the human line's start */
    uint64_t n;            /* tasks per run */
    unsigned runs;         /* runs done so far */
    bench_figure_t figs[4];
    size_t n_figs;
    bool cpu;              /* broker_cpu_us_per_task is reported */
    double cpu_us[BENCH_MAX_RUNS];
    char *extra;           /* JSON members to add (",\"k\":v..."), malloc'ed */
    size_t extra_len;
} bench_report_t;

/* Start a report: zeroes r and sets its workload, variant and n. */
void bench_report_init(bench_report_t *r, const char *workload, const char *variant, uint64_t n);

/* Add a figure; returns it (its values are filled per run). */
bench_figure_t *bench_report_fig(bench_report_t *r, const char *key, const char *label,
                                 const char *unit, int decimals);

/* Append JSON members, printf-style, to the extra fields. */
void bench_report_extra(bench_report_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print the human line and (with --json or --out-dir) the JSON line, then
 * free what r holds. */
void bench_report_print(bench_t *b, bench_report_t *r);

/* Free what r holds without printing. */
void bench_report_fini(bench_report_t *r);

/* Median of v[0..n-1] (the mean of the middle two when n is even), and
 * min and max if not NULL.  Does not reorder v. */
double bench_median(const double *v, unsigned n, double *ret_min, double *ret_max);

/* Index of the run whose value is the median (the lower middle one). */
unsigned bench_median_index(const double *v, unsigned n);

/* A message line: to stdout, or to stderr with --json. */
void bench_say(bench_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Workloads (workloads.c, speedup.c, scale.c) ------------------------- */

#define BENCH_MAX_WORKERS 8

/* A broker and the square/echo worker processes of ours connected to it. */
typedef struct bench_env {
    bench_broker_t br;
    pid_t workers[BENCH_MAX_WORKERS];
    unsigned n_workers;
    uint64_t base; /* workers the broker had before ours (with --broker) */
} bench_env_t;

/* Start a broker (bench_broker_start's args) and n_workers workers, and
 * wait until they are connected.  0 or -1; bench_env_stop() either way. */
int bench_env_start(bench_t *b, bench_env_t *e, const char *const *args, unsigned n_workers);

/* Stop every worker of e and wait until the broker has seen them go.  0 or -1. */
int bench_env_drop_workers(bench_t *b, bench_env_t *e);

/* Stop the workers and the broker of e. */
void bench_env_stop(bench_t *b, bench_env_t *e);

/* The deadline of a run that starts now. */
int64_t bench_deadline(const bench_t *b);

/* The broker's CPU microseconds per task between two STATS readings. */
double bench_cpu_per_task(const bench_stats_t *s0, const bench_stats_t *s1, uint64_t n);

/* One timed throughput run of n tasks of kind k (bench_batch) between two
 * STATS readings: tasks/s and the broker's µs per task.  0 or -1. */
int bench_throughput(bench_t *b, bench_broker_t *br, bench_kind_t k, uint64_t n,
                     double *ret_rate, double *ret_cpu);

/* The untimed warm-up before runs of n tasks of kind k: the same exchange
 * with at most 2000 tasks.  0 or -1. */
int bench_warm_up(bench_t *b, bench_broker_t *br, bench_kind_t k, uint64_t n);

/* The variant of a figure in memory mode: "memory", or "external" with
 * --broker (whose store taskq-bench does not choose). */
const char *bench_store_variant(const bench_t *b);

/* Run one workload (a BENCH_W* bit) with its warm-up and runs, printing
 * its figures.  0 or -1. */
int bench_workload(bench_t *b, unsigned w);

/* W4 (speedup.c), W6 and W7 (scale.c), as bench_workload runs them. */
int bench_w4(bench_t *b);
int bench_w6(bench_t *b);
int bench_w7(bench_t *b);

#endif /* TASKQ_BENCH_H */
