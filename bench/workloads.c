/*
 * workloads.c - the workloads that run the peer harness's exchanges on a
 * broker with worker processes of ours: W1 throughput, W2 latency, W3
 * payload, W5 many clients and W8 durability cost; the environment they
 * share (a broker and its workers); and the dispatch of every workload.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* How long workers have to connect. */
#define CONNECT_LIMIT_MS 20000
/* W2 and W3: tasks per run, as in the peer harness. */
#define W2_N 2000
#define W3_N 2000
#define W5_CLIENTS 8

/* ---- The environment ----------------------------------------------------- */

int bench_env_start(bench_t *b, bench_env_t *e, const char *const *args, unsigned n_workers)
{
    *e = (bench_env_t){0};
    bench_stats_t st;
    if (bench_broker_start(b, &e->br, args) != 0 || bench_stats(&e->br, &st) != 0)
        return -1;
    e->base = st.workers;
    char *argv[] = {b->self, "--run-worker", e->br.endpoint, NULL};
    for (unsigned i = 0; i < n_workers; i++) {
        pid_t pid = bench_spawn(b, "worker", argv, -1, -1);
        if (pid < 0)
            return -1;
        e->workers[e->n_workers++] = pid;
    }
    return bench_wait_workers(b, &e->br, e->base + e->n_workers, CONNECT_LIMIT_MS);
}

int bench_env_drop_workers(bench_t *b, bench_env_t *e)
{
    for (unsigned i = 0; i < e->n_workers; i++)
        bench_stop(b, e->workers[i], 5000);
    e->n_workers = 0;
    return bench_wait_workers(b, &e->br, e->base, CONNECT_LIMIT_MS);
}

void bench_env_stop(bench_t *b, bench_env_t *e)
{
    for (unsigned i = 0; i < e->n_workers; i++)
        bench_stop(b, e->workers[i], 5000);
    e->n_workers = 0;
    bench_broker_stop(b, &e->br);
}

int64_t bench_deadline(const bench_t *b)
{
    return bench_now_ns() + b->run_limit_ns;
}

double bench_cpu_per_task(const bench_stats_t *s0, const bench_stats_t *s1, uint64_t n)
{
    return (double)(s1->cpu_us - s0->cpu_us) / (double)n;
}

/* Tasks of the untimed warm-up before runs of n tasks. */
static uint64_t warm_n(uint64_t n)
{
    return n < 2000 ? n : 2000;
}

const char *bench_store_variant(const bench_t *b)
{
    return b->o.broker ? "external" : "memory";
}

int bench_throughput(bench_t *b, bench_broker_t *br, bench_kind_t k, uint64_t n,
                     double *ret_rate, double *ret_cpu)
{
    bench_stats_t s0, s1;
    int64_t t0, t1;
    if (bench_stats(br, &s0) != 0 ||
        bench_batch(br->client, k, n, bench_deadline(b), NULL, &t0, &t1) != 0 ||
        bench_stats(br, &s1) != 0)
        return -1;
    *ret_rate = (double)n * 1e9 / (double)(t1 - t0);
    *ret_cpu = bench_cpu_per_task(&s0, &s1, n);
    return 0;
}

int bench_warm_up(bench_t *b, bench_broker_t *br, bench_kind_t k, uint64_t n)
{
    int64_t t0, t1;
    return bench_batch(br->client, k, warm_n(n), bench_deadline(b), NULL, &t0, &t1);
}

/* ---- W1: throughput ------------------------------------------------------ */

/* Runs of r->n tasks of kind k, printed as r says: squares in tasks/s,
 * echoes in MB/s (K x 64 KiB / 10^6 / s, the payload counted once). */
static int throughput_report(bench_t *b, bench_broker_t *br, bench_report_t *r, bench_kind_t k)
{
    bool mb = k == BENCH_ECHO;
    bench_figure_t *f = mb ? bench_report_fig(r, "mb_per_s", "", "MB/s", 1)
                           : bench_report_fig(r, "tasks_per_s", "", "tasks/s", 0);
    for (r->runs = 0; r->runs < b->o.runs; r->runs++) {
        double rate;
        if (bench_throughput(b, br, k, r->n, &rate, &r->cpu_us[r->runs]) != 0) {
            bench_report_fini(r);
            return -1;
        }
        f->v[r->runs] = mb ? rate * BENCH_PAYLOAD / 1e6 : rate;
    }
    bench_report_print(b, r);
    return 0;
}

static int w1(bench_t *b)
{
    bench_env_t e;
    int rc = bench_env_start(b, &e, NULL, 2);
    if (rc == 0)
        rc = bench_warm_up(b, &e.br, BENCH_SQUARE, b->o.k);
    const char *store = bench_store_variant(b);
    for (int big = 0; big < 2 && rc == 0; big++) {
        bench_report_t r;
        uint64_t n = big ? 10 * b->o.k : b->o.k;
        char variant[64];
        snprintf(variant, sizeof variant, "%s K=%" PRIu64, store, n);
        bench_report_init(&r, "W1", big ? variant : store, n);
        snprintf(r.title, sizeof r.title, "W1 throughput (%s, K=%" PRIu64 ", 2 workers)", store,
                 n);
        rc = throughput_report(b, &e.br, &r, BENCH_SQUARE);
    }
    bench_env_stop(b, &e);
    return rc;
}

/* ---- W2: latency --------------------------------------------------------- */

/* Nearest-rank percentile p of sorted s[0..n-1], as the peer harness takes it. */
static double percentile(const double *s, uint64_t n, double p)
{
    uint64_t rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return s[rank - 1];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int w2(bench_t *b)
{
    uint64_t n = b->o.quick ? W2_N / 10 : W2_N;
    double *lat = malloc((size_t)b->o.runs * n * sizeof *lat);
    double *sorted = malloc(n * sizeof *sorted);
    if (!lat || !sorted) {
        fprintf(stderr, "taskq-bench: out of memory\n");
        free(lat);
        free(sorted);
        return -1;
    }
    bench_env_t e;
    int rc = bench_env_start(b, &e, NULL, 1);
    if (rc == 0)
        rc = bench_latency(e.br.client, n / 10, bench_deadline(b), lat);

    bench_report_t r;
    const char *store = bench_store_variant(b);
    bench_report_init(&r, "W2", store, n);
    snprintf(r.title, sizeof r.title, "W2 latency (%s, n=%" PRIu64 " one at a time, 1 worker)",
             store, n);
    bench_figure_t *p50 = bench_report_fig(&r, "p50_us", "p50", "µs", 1);
    bench_figure_t *p99 = bench_report_fig(&r, "p99_us", "p99", "µs", 1);
    bench_figure_t *p999 = bench_report_fig(&r, "p999_us", "p99.9", "µs", 1);
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        double *run = lat + (size_t)r.runs * n;
        bench_stats_t s0, s1;
        if (bench_stats(&e.br, &s0) != 0 ||
            bench_latency(e.br.client, n, bench_deadline(b), run) != 0 ||
            bench_stats(&e.br, &s1) != 0) {
            rc = -1;
            break;
        }
        r.cpu_us[r.runs] = bench_cpu_per_task(&s0, &s1, n);
        memcpy(sorted, run, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_double);
        p50->v[r.runs] = percentile(sorted, n, 50);
        p99->v[r.runs] = percentile(sorted, n, 99);
        p999->v[r.runs] = percentile(sorted, n, 99.9);
    }
    if (rc == 0) {
        const double *run = lat + (size_t)bench_median_index(p50->v, r.runs) * n;
        bench_report_extra(&r, ",\"samples_us\":[");
        for (uint64_t i = 0; i < n; i++)
            bench_report_extra(&r, "%s%.1f", i ? "," : "", run[i]);
        bench_report_extra(&r, "]");
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }
    bench_env_stop(b, &e);
    free(lat);
    free(sorted);
    return rc;
}

/* ---- W3: payload --------------------------------------------------------- */

static int w3(bench_t *b)
{
    uint64_t n = b->o.quick ? W3_N / 10 : W3_N;
    bench_env_t e;
    int rc = bench_env_start(b, &e, NULL, 2);
    if (rc == 0)
        rc = bench_warm_up(b, &e.br, BENCH_ECHO, n / 10 ? n / 10 : 1);
    if (rc == 0) {
        bench_report_t r;
        const char *store = bench_store_variant(b);
        bench_report_init(&r, "W3", store, n);
        snprintf(r.title, sizeof r.title,
                 "W3 payload (%s, K=%" PRIu64 " x 64 KiB echoed, 2 workers)", store, n);
        rc = throughput_report(b, &e.br, &r, BENCH_ECHO);
    }
    bench_env_stop(b, &e);
    return rc;
}

/* ---- W5: many clients ---------------------------------------------------- */

/* What one W5 client wrote: its first submit, last result, result times. */
typedef struct w5_client {
    pid_t pid;
    char path[PATH_MAX];
    int64_t t0, t1;
    int64_t *done;
} w5_client_t;

/* Read what client c wrote for its n tasks.  0 or -1. */
static int w5_read(w5_client_t *c, uint64_t n)
{
    FILE *f = fopen(c->path, "rb");
    int64_t head[2];
    c->done = malloc(n * sizeof *c->done);
    int rc = f && c->done && fread(head, sizeof head, 1, f) == 1 &&
                     fread(c->done, sizeof *c->done, n, f) == n
                 ? 0
                 : -1;
    if (f)
        fclose(f);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench: cannot read the W5 client's results in %s\n", c->path);
        return -1;
    }
    c->t0 = head[0];
    c->t1 = head[1];
    return 0;
}

/* One W5 run: W5_CLIENTS processes of per tasks each, started together.
 * Fills the aggregate rate, each client's share of the tasks completed
 * while all were at work, and the broker's µs per task. */
static int w5_run(bench_t *b, bench_env_t *e, uint64_t per, double *ret_rate,
                  double shares[W5_CLIENTS], double *ret_cpu)
{
    w5_client_t cl[W5_CLIENTS] = {0};
    int go[2] = {-1, -1}, ready[2] = {-1, -1};
    int rc = bench_pipe(go) == 0 && bench_pipe(ready) == 0 ? 0 : -1;
    char per_s[32];
    snprintf(per_s, sizeof per_s, "%" PRIu64, per);
    for (int i = 0; i < W5_CLIENTS && rc == 0; i++) {
        bench_work_path(b, "w5-times", cl[i].path);
        char *argv[] = {b->self, "--run-client", e->br.endpoint, per_s, cl[i].path, NULL};
        cl[i].pid = bench_spawn(b, "w5 client", argv, go[0], ready[1]);
        rc = cl[i].pid > 0 ? 0 : -1;
    }
    if (ready[1] >= 0)
        close(ready[1]);
    char bytes[W5_CLIENTS];
    if (rc == 0 && bench_read(ready[0], bytes, sizeof bytes, 30000) != 0) {
        fprintf(stderr, "taskq-bench: the W5 clients did not all connect\n");
        bench_check_children(b);
        rc = -1;
    }
    bench_stats_t s0, s1;
    if (rc == 0)
        rc = bench_stats(&e->br, &s0);
    if (go[1] >= 0)
        close(go[1]); /* the go: every client starts submitting */
    int64_t deadline = bench_deadline(b);
    for (int i = 0; i < W5_CLIENTS; i++) {
        if (cl[i].pid <= 0)
            continue;
        int left_ms = (int)((deadline - bench_now_ns()) / 1000000);
        int status = rc == 0 ? bench_reap(b, cl[i].pid, left_ms > 0 ? left_ms : 0)
                             : bench_stop(b, cl[i].pid, 1000);
        if (status != 0)
            rc = -1;
    }
    if (go[0] >= 0)
        close(go[0]);
    if (ready[0] >= 0)
        close(ready[0]);
    if (rc == 0)
        rc = bench_stats(&e->br, &s1);
    for (int i = 0; i < W5_CLIENTS && rc == 0; i++)
        rc = w5_read(&cl[i], per);

    if (rc == 0) {
        /* The window where all were at work: from the last first submit
         * to the first last result. */
        int64_t from = cl[0].t0, to = cl[0].t1, first = cl[0].t0, last = cl[0].t1;
        for (int i = 1; i < W5_CLIENTS; i++) {
            from = cl[i].t0 > from ? cl[i].t0 : from;
            to = cl[i].t1 < to ? cl[i].t1 : to;
            first = cl[i].t0 < first ? cl[i].t0 : first;
            last = cl[i].t1 > last ? cl[i].t1 : last;
        }
        uint64_t counts[W5_CLIENTS] = {0}, total = 0;
        for (int i = 0; i < W5_CLIENTS; i++) {
            for (uint64_t j = 0; j < per; j++)
                counts[i] += cl[i].done[j] >= from && cl[i].done[j] <= to;
            total += counts[i];
        }
        if (total == 0) {
            fprintf(stderr, "taskq-bench: W5: no task completed while all clients were at "
                            "work\n");
            rc = -1;
        }
        for (int i = 0; i < W5_CLIENTS && rc == 0; i++)
            shares[i] = (double)counts[i] / (double)total;
        *ret_rate = (double)(W5_CLIENTS * per) * 1e9 / (double)(last - first);
        *ret_cpu = bench_cpu_per_task(&s0, &s1, W5_CLIENTS * per);
    }
    for (int i = 0; i < W5_CLIENTS; i++) {
        free(cl[i].done);
        if (cl[i].path[0])
            unlink(cl[i].path);
    }
    return rc;
}

static int w5(bench_t *b)
{
    uint64_t per = b->o.k / W5_CLIENTS ? b->o.k / W5_CLIENTS : 1;
    double shares[BENCH_MAX_RUNS][W5_CLIENTS], rate, cpu;
    bench_env_t e;
    int rc = bench_env_start(b, &e, NULL, 2);
    if (rc == 0)
        rc = w5_run(b, &e, warm_n(per), &rate, shares[0], &cpu);

    bench_report_t r;
    bench_report_init(&r, "W5", "8 clients", W5_CLIENTS * per);
    snprintf(r.title, sizeof r.title,
             "W5 many clients (%d processes x %" PRIu64 " tasks at once, 2 workers)", W5_CLIENTS,
             per);
    bench_figure_t *agg = bench_report_fig(&r, "tasks_per_s", "", "tasks/s", 0);
    bench_figure_t *lo = bench_report_fig(&r, "min_share", "min share", "", 3);
    bench_figure_t *hi = bench_report_fig(&r, "max_share", "max share", "", 3);
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        double *s = shares[r.runs];
        rc = w5_run(b, &e, per, &agg->v[r.runs], s, &r.cpu_us[r.runs]);
        lo->v[r.runs] = hi->v[r.runs] = s[0];
        for (int i = 1; i < W5_CLIENTS; i++) {
            lo->v[r.runs] = s[i] < lo->v[r.runs] ? s[i] : lo->v[r.runs];
            hi->v[r.runs] = s[i] > hi->v[r.runs] ? s[i] : hi->v[r.runs];
        }
    }
    if (rc == 0) {
        const double *s = shares[bench_median_index(agg->v, r.runs)];
        bench_report_extra(&r, ",\"shares\":[");
        for (int i = 0; i < W5_CLIENTS; i++)
            bench_report_extra(&r, "%s%.4f", i ? "," : "", s[i]);
        bench_report_extra(&r, "]");
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }
    bench_env_stop(b, &e);
    return rc;
}

/* ---- W8: durability cost ------------------------------------------------- */

static int w8(bench_t *b)
{
    if (b->o.broker) {
        bench_say(b, "W8 skipped: it starts brokers of each store (not with --broker)");
        return 0;
    }
    static const struct {
        const char *variant;
        const char *sync; /* NULL: in memory */
    } stores[] = {{"memory", NULL}, {"sqlite normal", "normal"}, {"sqlite full", "full"}};
    double memory = 0;
    int rc = 0;
    for (size_t i = 0; i < sizeof stores / sizeof stores[0] && rc == 0; i++) {
        char db[PATH_MAX];
        bench_work_path(b, "w8", db);
        strncat(db, "/taskq.db", sizeof db - strlen(db) - 1);
        const char *args[] = {"--db", db, "--sync", stores[i].sync, NULL};
        const char *const memory_args[] = {"--memory", NULL};
        bench_env_t e;
        rc = bench_env_start(b, &e, stores[i].sync ? args : memory_args, 2);
        if (rc == 0)
            rc = bench_warm_up(b, &e.br, BENCH_SQUARE, b->o.k);
        bench_report_t r;
        bench_report_init(&r, "W8", stores[i].variant, b->o.k);
        bench_figure_t *rate = bench_report_fig(&r, "tasks_per_s", "", "tasks/s", 0);
        for (; rc == 0 && r.runs < b->o.runs; r.runs++)
            rc = bench_throughput(b, &e.br, BENCH_SQUARE, b->o.k, &rate->v[r.runs],
                                  &r.cpu_us[r.runs]);
        if (rc == 0) {
            double median = bench_median(rate->v, r.runs, NULL, NULL);
            if (i == 0)
                memory = median;
            bench_report_extra(&r, ",\"ratio_to_memory\":%.4f", median / memory);
            snprintf(r.title, sizeof r.title,
                     "W8 durability (%s, K=%" PRIu64 ", 2 workers; %.2f of memory)",
                     stores[i].variant, b->o.k, median / memory);
            bench_report_print(b, &r);
        } else {
            bench_report_fini(&r);
        }
        bench_env_stop(b, &e);
    }
    return rc;
}

int bench_workload(bench_t *b, unsigned w)
{
    switch (w) {
    case BENCH_W1:
        return w1(b);
    case BENCH_W2:
        return w2(b);
    case BENCH_W3:
        return w3(b);
    case BENCH_W4:
        return bench_w4(b);
    case BENCH_W5:
        return w5(b);
    case BENCH_W6:
        return bench_w6(b);
    case BENCH_W7:
        return bench_w7(b);
    default:
        return w8(b);
    }
}
