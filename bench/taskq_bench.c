/*
 * taskq_bench.c - taskq-bench's driver: the command line, the paths of the
 * programs it starts (next to its own binary in the build tree), its
 * private directory, signals, and the order of the workloads.  The hidden
 * modes (--run-worker, --run-client, --run-swarm) are this same program
 * re-executed as a worker, a W5 client or the W6 swarm.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define K_DEFAULT 20000
#define K_QUICK 2000
#define RUN_LIMIT_S 120

volatile sig_atomic_t bench_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

void bench_catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: waits wake up */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const char *const workload_names[] = {"W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"};
#define N_WORKLOADS (sizeof workload_names / sizeof workload_names[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: taskq-bench [OPTION]...\n"
            "Measure taskq on the workloads of the peer harness: start taskqd and workers\n"
            "on 127.0.0.1, run each workload --runs times after an untimed warm-up, and\n"
            "print one line per figure: median [min–max], and the broker's CPU per task.\n\n"
            "  --workload LIST   W1..W8, comma-separated, or all [default all]\n"
            "  --runs N          timed runs per figure, 1..%d [default 3]\n"
            "  --json            one JSON object per figure on stdout (lines on stderr)\n"
            "  --broker ENDPOINT use this broker instead of starting one (W7, W8 skipped)\n"
            "  --taskqd PATH     the broker [default ../taskqd next to this program]\n"
            "  --taskq-worker PATH  W4's pool [default ../taskq-worker]\n"
            "  --plugin PATH     W4's plugin [default ../examples/montecarlo.so]\n"
            "  --k N             tasks per run of W1 (also W5, W6, W8) [default %d;\n"
            "                    W1 adds a line with 10 K]\n"
            "  --procs P         W4: pools of p = 1..P processes [default: CPUs, at least 2]\n"
            "  --quick           small counts, a smoke run of seconds\n"
            "  --out-dir DIR     keep the logs (DIR/logs) and the JSON lines\n"
            "                    (DIR/results.jsonl) there\n"
            "  -h, --help        show this help\n\n"
            "Workloads: W1 throughput, W2 latency, W3 64 KiB payloads, W4 speedup, W5 8\n"
            "clients, W6 1000 workers, W7 memory of 1,000,000 queued tasks, W8 durability.\n"
            "Exit status: 0 every run done and every result right; 1 a run failed; 2 bad\n"
            "usage; 130 interrupted.\n",
            BENCH_MAX_RUNS, K_DEFAULT);
}

/* Parse an unsigned integer in [min, max].  0 or -1. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = s && *s >= '0' && *s <= '9' ? strtoull(s, &end, 10) : 0;
    if (!s || *s < '0' || *s > '9' || errno || *end || v < min || v > max)
        return -1;
    *ret = v;
    return 0;
}

/* "W1,W3" or "all" into BENCH_W* bits.  0 or -1. */
static int parse_workloads(const char *s, unsigned *ret)
{
    if (strcmp(s, "all") == 0) {
        *ret = (1u << N_WORKLOADS) - 1;
        return 0;
    }
    unsigned bits = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        size_t i = 0;
        while (i < N_WORKLOADS && !(strlen(workload_names[i]) == len &&
                                    strncasecmp(s, workload_names[i], len) == 0))
            i++;
        if (i == N_WORKLOADS)
            return -1;
        bits |= 1u << i;
        s += len + (s[len] == ',');
    }
    *ret = bits;
    return bits ? 0 : -1;
}

/* Fill b->o from argv.  -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, bench_t *b)
{
    bench_opts_t *o = &b->o;
    uint64_t runs = 3, k = 0, procs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = true;
            continue;
        } else if (strcmp(a, "--workload") == 0) {
            bad = !val || parse_workloads(val, &o->workloads) != 0;
        } else if (strcmp(a, "--runs") == 0) {
            bad = parse_u64(val, 1, BENCH_MAX_RUNS, &runs);
        } else if (strcmp(a, "--k") == 0) {
            bad = parse_u64(val, 8, 100000000, &k);
        } else if (strcmp(a, "--procs") == 0) {
            bad = parse_u64(val, 1, 64, &procs);
        } else if (strcmp(a, "--broker") == 0) {
            bad = !(o->broker = val);
        } else if (strcmp(a, "--taskqd") == 0) {
            bad = !(o->taskqd = val);
        } else if (strcmp(a, "--taskq-worker") == 0) {
            bad = !(o->taskq_worker = val);
        } else if (strcmp(a, "--plugin") == 0) {
            bad = !(o->plugin = val);
        } else if (strcmp(a, "--out-dir") == 0) {
            bad = !(o->out_dir = val);
        } else {
            fprintf(stderr, "taskq-bench: unknown option '%s'; see taskq-bench --help\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "taskq-bench: bad or missing value for %s; see taskq-bench --help\n",
                    a);
            return 2;
        }
        i++;
    }
    if (!o->workloads)
        o->workloads = (1u << N_WORKLOADS) - 1;
    o->runs = (unsigned)runs;
    o->k = k ? k : o->quick ? K_QUICK : K_DEFAULT;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->procs = procs ? (unsigned)procs : cpus > 2 ? (unsigned)cpus : 2;
    return -1;
}

/* path, or if NULL the file rel next to this program's directory, into buf;
 * checks that it can be used (mode: access(2)'s).  0 or -1 (printed). */
static int find_program(const bench_t *b, const char *path, const char *rel, int mode,
                        const char *opt, char *buf)
{
    if (path) {
        snprintf(buf, PATH_MAX, "%s", path);
    } else {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", b->self);
        snprintf(buf, PATH_MAX, "%s/../%s", dirname(dir), rel);
    }
    if (access(buf, mode) != 0) {
        fprintf(stderr, "taskq-bench: cannot use %s (%s); build it, or give %s\n", buf,
                strerror(errno), opt);
        return -1;
    }
    return 0;
}

/* Let this process and its children (the broker, the swarm) open as many
 * files as the hard limit allows: W6 holds two per connection. */
static void raise_file_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The private directory, the logs' directory and results.jsonl.  0 or -1. */
static int make_dirs(bench_t *b)
{
    snprintf(b->work, sizeof b->work, "/tmp/taskq-bench-XXXXXX");
    if (!mkdtemp(b->work)) {
        fprintf(stderr, "taskq-bench: mkdtemp: %s\n", strerror(errno));
        b->work[0] = '\0';
        return -1;
    }
    if (!b->o.out_dir) {
        snprintf(b->logs, sizeof b->logs, "%s", b->work);
        return 0;
    }
    snprintf(b->logs, sizeof b->logs, "%s/logs", b->o.out_dir);
    char results[PATH_MAX];
    snprintf(results, sizeof results, "%s/results.jsonl", b->o.out_dir);
    if ((mkdir(b->o.out_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(b->logs, 0755) != 0 && errno != EEXIST) || !(b->jsonl = fopen(results, "w"))) {
        fprintf(stderr, "taskq-bench: cannot write in %s: %s\n", b->o.out_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int run(bench_t *b)
{
    char taskqd[PATH_MAX], pool[PATH_MAX], plugin[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", b->self, sizeof b->self - 1);
    if (len <= 0) {
        fprintf(stderr, "taskq-bench: cannot find its own program: %s\n", strerror(errno));
        return 1;
    }
    b->self[len] = '\0';
    if (!b->o.broker) {
        if (find_program(b, b->o.taskqd, "taskqd", X_OK, "--taskqd", taskqd) != 0)
            return 1;
        b->o.taskqd = taskqd;
    }
    if (b->o.workloads & BENCH_W4) {
        if (find_program(b, b->o.taskq_worker, "taskq-worker", X_OK, "--taskq-worker", pool) !=
                0 ||
            find_program(b, b->o.plugin, "examples/montecarlo.so", R_OK, "--plugin", plugin) != 0)
            return 1;
        b->o.taskq_worker = pool;
        b->o.plugin = plugin;
    }
    b->run_limit_ns = (int64_t)RUN_LIMIT_S * 1000000000;
    raise_file_limit();
    int status = make_dirs(b) == 0 ? 0 : 1;
    bench_catch_signals();
    if (status == 0)
        bench_say(b, "taskq-bench %s: %ld CPUs; each figure the median [min–max] of %u runs "
                     "after a warm-up%s",
                  taskq_version(), sysconf(_SC_NPROCESSORS_ONLN), b->o.runs,
                  b->o.quick ? " (--quick: small counts, a smoke run)" : "");
    for (size_t i = 0; i < N_WORKLOADS && status == 0; i++) {
        unsigned w = 1u << i;
        if (!(b->o.workloads & w))
            continue;
        b->dump_from = b->n_made;
        if (bench_workload(b, w) != 0) {
            if (!bench_interrupted) {
                fprintf(stderr, "taskq-bench: %s failed\n", workload_names[i]);
                bench_dump_logs(b);
            }
            status = 1;
        }
        if (bench_interrupted) {
            fprintf(stderr, "taskq-bench: interrupted\n");
            status = 130;
        }
    }
    bench_stop_all(b);
    free(b->made);
    if (b->jsonl)
        fclose(b->jsonl);
    if (b->work[0])
        nftw(b->work, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--run-worker") == 0)
        return bench_worker_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--run-client") == 0)
        return bench_client_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--run-swarm") == 0)
        return bench_swarm_main(argc, argv);

    bench_t *b = calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "taskq-bench: out of memory\n");
        return 1;
    }
    int status = parse_args(argc, argv, b);
    if (status < 0)
        status = run(b);
    free(b);
    return status;
}
