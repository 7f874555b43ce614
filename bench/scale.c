/*
 * scale.c - the workloads about size: W6, the broker with 1,000 connected
 * workers (idle CPU with heartbeats on, then W1 dispatched over them,
 * against W1 with 2 workers on the same broker), and W7, the broker's
 * memory per queued task with 1,000,000 tasks and no workers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

#define W6_CONNS 1000
/* Each swarm connection's credit: a library worker's default (one handler
 * thread, one task prefetched). */
#define W6_CREDIT 2
#define W6_IDLE_MS 5000
#define W6_IDLE_MS_QUICK 1000
/* How long the swarm has to connect everything. */
#define W6_CONNECT_MS 60000
#define W7_N 1000000
#define W7_N_QUICK 20000

/* ---- W6 ------------------------------------------------------------------ */

/* Whether this process may open the files W6 needs (the swarm holds two
 * per connection, the broker one). */
static int check_files(void)
{
    struct rlimit rl;
    rlim_t need = 2 * W6_CONNS + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need) {
        fprintf(stderr, "taskq-bench: W6 needs %lu open files; the limit is %lu (ulimit -n)\n",
                (unsigned long)need, (unsigned long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

/* Start the swarm and wait until the broker has all its connections.  The
 * swarm's "ready HEARTBEAT_MS" line gives the heartbeat interval in force. */
static pid_t swarm_start(bench_t *b, bench_env_t *e, uint32_t *ret_heartbeat_ms)
{
    int fds[2];
    if (bench_pipe(fds) != 0)
        return -1;
    char conns[16], credit[16];
    snprintf(conns, sizeof conns, "%d", W6_CONNS);
    snprintf(credit, sizeof credit, "%d", W6_CREDIT);
    char *argv[] = {b->self, "--run-swarm", e->br.endpoint, conns, credit, NULL};
    pid_t pid = bench_spawn(b, "swarm", argv, -1, fds[1]);
    close(fds[1]);
    char line[64];
    size_t n = 0;
    while (pid > 0 && n + 1 < sizeof line && bench_read(fds[0], &line[n], 1, W6_CONNECT_MS) == 0 &&
           line[n] != '\n')
        n++;
    close(fds[0]);
    if (pid < 0)
        return -1;
    line[n] = '\0';
    unsigned long hb;
    if (sscanf(line, "ready %lu", &hb) != 1) {
        fprintf(stderr, "taskq-bench: the swarm did not connect its %d workers\n", W6_CONNS);
        bench_check_children(b);
        bench_stop(b, pid, 5000);
        return -1;
    }
    if (bench_wait_workers(b, &e->br, e->base + W6_CONNS, W6_CONNECT_MS) != 0) {
        bench_stop(b, pid, 5000);
        return -1;
    }
    *ret_heartbeat_ms = (uint32_t)hb;
    return pid;
}

/* The broker's CPU while idle for idle_ms, in % of one core.  0 or -1. */
static int idle_cpu(bench_t *b, bench_broker_t *br, int idle_ms, double *ret_pct)
{
    bench_stats_t s0, s1;
    if (bench_stats(br, &s0) != 0)
        return -1;
    int64_t t0 = bench_now_ns();
    while (bench_now_ns() - t0 < (int64_t)idle_ms * 1000000) {
        if (bench_interrupted || bench_check_children(b) != 0)
            return -1;
        bench_sleep_ms(100);
    }
    if (bench_stats(br, &s1) != 0)
        return -1;
    double wall_us = (double)(bench_now_ns() - t0) / 1000.0;
    *ret_pct = 100.0 * (double)(s1.cpu_us - s0.cpu_us) / wall_us;
    return 0;
}

int bench_w6(bench_t *b)
{
    if (check_files() != 0)
        return -1;
    int idle_ms = b->o.quick ? W6_IDLE_MS_QUICK : W6_IDLE_MS;
    uint64_t k = b->o.k;
    bench_report_t r;
    bench_report_init(&r, "W6", "1000 workers", k);
    bench_figure_t *idle = bench_report_fig(&r, "idle_cpu_pct", "idle", "% of a core", 2);
    bench_figure_t *rate = bench_report_fig(&r, "tasks_per_s", "W1", "tasks/s", 0);
    bench_figure_t *ratio = bench_report_fig(&r, "w1_ratio", "ratio to 2 workers", "", 2);
    double two[BENCH_MAX_RUNS], cpu;

    /* W1 with 2 workers on this broker first, for the ratio. */
    bench_env_t e;
    int rc = bench_env_start(b, &e, NULL, 2);
    if (rc == 0)
        rc = bench_warm_up(b, &e.br, BENCH_SQUARE, k);
    for (unsigned i = 0; rc == 0 && i < b->o.runs; i++)
        rc = bench_throughput(b, &e.br, BENCH_SQUARE, k, &two[i], &cpu);
    if (rc == 0)
        rc = bench_env_drop_workers(b, &e);

    uint32_t heartbeat_ms = 0;
    pid_t swarm = rc == 0 ? swarm_start(b, &e, &heartbeat_ms) : -1;
    if (swarm < 0)
        rc = -1;
    if (rc == 0)
        rc = bench_warm_up(b, &e.br, BENCH_SQUARE, k);
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        unsigned i = r.runs;
        if (idle_cpu(b, &e.br, idle_ms, &idle->v[i]) != 0 ||
            bench_throughput(b, &e.br, BENCH_SQUARE, k, &rate->v[i], &r.cpu_us[i]) != 0) {
            rc = -1;
            break;
        }
        ratio->v[i] = rate->v[i] / two[i];
    }
    if (rc == 0) {
        double lo, hi, med = bench_median(two, r.runs, &lo, &hi);
        snprintf(r.title, sizeof r.title,
                 "W6 scale (%d worker connections of credit %d from one process, "
                 "heartbeat %" PRIu32 " ms%s; idle over %.0f s; W1 K=%" PRIu64
                 " with 2 workers %.0f tasks/s)",
                 W6_CONNS, W6_CREDIT, heartbeat_ms, b->o.broker ? "" : " (taskqd's default)",
                 idle_ms / 1000.0, k, med);
        bench_report_extra(&r,
                           ",\"connections\":%d,\"credit\":%d,\"heartbeat_ms\":%" PRIu32
                           ",\"idle_seconds\":%.1f,\"w1_2_workers_tasks_per_s\":{\"median\":%.10g,"
                           "\"min\":%.10g,\"max\":%.10g}",
                           W6_CONNS, W6_CREDIT, heartbeat_ms, idle_ms / 1000.0, med, lo, hi);
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }
    if (swarm > 0 && bench_stop(b, swarm, 5000) != 0)
        rc = -1;
    bench_env_stop(b, &e);
    return rc;
}

/* ---- W7 ------------------------------------------------------------------ */

/* Queue n tiny tasks on a broker without workers, in the client's batches,
 * and wait until the broker holds them all.  The futures are dropped at
 * once (the tasks stay queued).  Adds the arguments' bytes to *arg_bytes.
 * 0 or -1. */
static int queue_tasks(bench_t *b, bench_broker_t *br, uint64_t n, uint64_t *arg_bytes,
                       bench_stats_t *ret_after)
{
    bench_args_t *a = malloc(sizeof *a);
    int rc = a ? 0 : TASKQ_ENOMEM;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        size_t len;
        const void *arg = bench_arg(a, BENCH_SQUARE, i, &len);
        taskq_future_t *f;
        if ((rc = taskq_submit(br->client, "square", arg, len, NULL, &f)) == 0)
            taskq_future_destroy(&f);
        *arg_bytes += len;
        if (bench_interrupted)
            rc = TASKQ_ESTOPPED;
    }
    free(a);
    if (rc == 0)
        rc = taskq_client_flush(br->client);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench: W7 submit: %s\n", taskq_strerror(rc));
        return -1;
    }
    int64_t deadline = bench_deadline(b);
    while (bench_stats(br, ret_after) == 0 && !bench_interrupted) {
        if (ret_after->queued == n)
            return 0;
        if (bench_now_ns() >= deadline) {
            fprintf(stderr, "taskq-bench: W7: the broker holds %" PRIu64 " of %" PRIu64
                            " tasks at the time limit\n",
                    ret_after->queued, n);
            return -1;
        }
        bench_sleep_ms(50);
    }
    return -1;
}

int bench_w7(bench_t *b)
{
    if (b->o.broker) {
        bench_say(b, "W7 skipped: it queues tasks on a broker of its own (not with --broker)");
        return 0;
    }
    uint64_t n = b->o.quick ? W7_N_QUICK : W7_N;
    char variant[32];
    snprintf(variant, sizeof variant, "%" PRIu64 " queued", n);
    bench_report_t r;
    bench_report_init(&r, "W7", variant, n);
    bench_figure_t *per = bench_report_fig(&r, "rss_bytes_per_task", "", "bytes/task", 1);
    bench_figure_t *beyond =
        bench_report_fig(&r, "beyond_arg_bytes_per_task", "beyond the argument", "bytes/task", 1);
    double arg_per = 0;
    int rc = 0;
    /* No warm-up: each run needs a broker of its own, as a warm-up would
     * leave its tasks queued. */
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        bench_env_t e;
        bench_stats_t s0, s1;
        uint64_t arg_bytes = 0;
        rc = bench_env_start(b, &e, NULL, 0);
        if (rc == 0)
            rc = bench_stats(&e.br, &s0);
        if (rc == 0)
            rc = queue_tasks(b, &e.br, n, &arg_bytes, &s1);
        if (rc == 0) {
            arg_per = (double)arg_bytes / (double)n;
            per->v[r.runs] = ((double)s1.rss_bytes - (double)s0.rss_bytes) / (double)n;
            beyond->v[r.runs] = per->v[r.runs] - arg_per;
            r.cpu_us[r.runs] = bench_cpu_per_task(&s0, &s1, n);
        }
        bench_env_stop(b, &e); /* the queued tasks go with the broker */
    }
    if (rc == 0) {
        snprintf(r.title, sizeof r.title,
                 "W7 memory (%" PRIu64 " tiny tasks queued, no workers, batches of %d, "
                 "arguments %.2f bytes/task; broker RSS)",
                 n, BENCH_BATCH, arg_per);
        bench_report_extra(&r, ",\"arg_bytes_per_task\":%.4f,\"batch\":%d", arg_per,
                           BENCH_BATCH);
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }
    return rc;
}
