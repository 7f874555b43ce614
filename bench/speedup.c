/*
 * speedup.c - W4: CPU-bound Monte Carlo tasks (the mc_integrate example,
 * calibrated to about 20 ms each on this machine) run serially in this
 * process, then through taskq-worker --load montecarlo.so --procs p for
 * p = 1..P; speedup S_p = T_serial / T_p and efficiency E_p = S_p / p.
 * Every result must equal the serial one bit for bit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "bench.h"
#include "montecarlo.h"

/* The duration each task is calibrated to. */
#define TASK_NS 20000000.0
/* Tasks per run: divisible by 1, 2, 3 and 4 so that no p has a tail. */
#define W4_TASKS 48
#define W4_TASKS_QUICK 8
/* Task i draws from seed SEED_BASE + i. */
#define SEED_BASE 4242
/* How long taskq-worker has to connect its processes, and to stop. */
#define POOL_LIMIT_MS 20000

/* One task as the plugin runs it: the sums of samples draws from seed,
 * accumulated in a local (as mc_integrate does) rather than in memory. */
static __attribute__((noinline)) mc_sums_t mc_task(uint64_t seed, uint64_t samples)
{
    mc_rng_t rng;
    mc_rng_seed(&rng, seed);
    mc_sums_t acc = {0};
    mc_draw(&rng, samples, &acc);
    return acc;
}

/* The samples that take TASK_NS here: timed over tasks of at least 10 ms,
 * the median of three. */
static uint64_t calibrate(void)
{
    uint64_t n = 1 << 16;
    double ns_per[3];
    volatile double sink = 0; /* the draws must not be optimised away */
    for (int i = 0; i < 3;) {
        int64_t t0 = bench_now_ns();
        sink += mc_task(1, n).sum;
        double dt = (double)(bench_now_ns() - t0);
        if (dt < 10e6) {
            n *= 2;
            continue;
        }
        ns_per[i++] = dt / (double)n;
    }
    (void)sink;
    return (uint64_t)(TASK_NS / bench_median(ns_per, 3, NULL, NULL));
}

/* The serial run: every task in this process.  Seconds. */
static double run_serial(mc_sums_t *sums, size_t tasks, uint64_t samples)
{
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < tasks; i++)
        sums[i] = mc_task(SEED_BASE + i, samples);
    return (double)(bench_now_ns() - t0) / 1e9;
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

/* Whether the result res equals the serial sums s, bit for bit. */
static bool sums_equal(const void *res, size_t len, const mc_sums_t *s)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    unsigned seen = 0;
    if (msgpack_unpack_next(&u, res, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object *k = &u.data.via.map.ptr[i].key;
            const msgpack_object *v = &u.data.via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            size_t kl = k->via.str.size;
            const char *kp = k->via.str.ptr;
            if (kl == 3 && memcmp(kp, "sum", 3) == 0 && v->type == MSGPACK_OBJECT_FLOAT64)
                seen |= (memcmp(&v->via.f64, &s->sum, sizeof s->sum) == 0) << 0;
            else if (kl == 5 && memcmp(kp, "sumsq", 5) == 0 && v->type == MSGPACK_OBJECT_FLOAT64)
                seen |= (memcmp(&v->via.f64, &s->sumsq, sizeof s->sumsq) == 0) << 1;
            else if (kl == 1 && kp[0] == 'n' && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                seen |= (v->via.u64 == s->n) << 2;
        }
    }
    msgpack_unpacked_destroy(&u);
    return seen == 7;
}

/* Tasks [0, tasks) through the broker: submit all, collect all in order,
 * check each against the serial sums.  Seconds into *ret_secs.  0 or -1. */
static int run_pool(bench_t *b, taskq_client_t *c, const mc_sums_t *sums, size_t tasks,
                    uint64_t samples, double *ret_secs)
{
    taskq_future_t **fs = calloc(tasks, sizeof *fs);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = fs ? 0 : TASKQ_ENOMEM;
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < tasks && rc == 0; i++) {
        msgpack_packer pk;
        msgpack_sbuffer_clear(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        pack_key(&pk, "samples");
        msgpack_pack_uint64(&pk, samples);
        pack_key(&pk, "seed");
        msgpack_pack_uint64(&pk, SEED_BASE + i);
        rc = taskq_submit(c, "mc_integrate", sb.data, sb.size, NULL, &fs[i]);
    }
    if (rc == 0)
        rc = taskq_client_flush(c);
    if (rc != 0)
        fprintf(stderr, "taskq-bench: W4 submit: %s\n", taskq_strerror(rc));
    int64_t deadline = bench_deadline(b);
    for (size_t i = 0; i < tasks && rc == 0; i++) {
        size_t len;
        rc = bench_wait(fs[i], deadline);
        const void *res = taskq_future_result(fs[i], &len);
        if (rc == 0 && !sums_equal(res, len, &sums[i])) {
            fprintf(stderr, "taskq-bench: W4 task %zu: the sums differ from the serial run's\n",
                    i);
            rc = -1;
        } else if (rc != 0) {
            fprintf(stderr, "taskq-bench: W4 task %zu: %s %s\n", i, taskq_errname(rc),
                    taskq_future_error(fs[i]));
        }
    }
    *ret_secs = (double)(bench_now_ns() - t0) / 1e9;
    for (size_t i = 0; fs && i < tasks; i++)
        taskq_future_destroy(&fs[i]);
    free(fs);
    msgpack_sbuffer_destroy(&sb);
    return rc ? -1 : 0;
}

/* The runs with a pool of p processes, reported as variant "p=<p>". */
static int pool_report(bench_t *b, bench_broker_t *br, unsigned p, const mc_sums_t *sums,
                       size_t tasks, uint64_t samples, double serial)
{
    char procs[16];
    snprintf(procs, sizeof procs, "%u", p);
    char *argv[] = {(char *)b->o.taskq_worker, "--broker", br->endpoint, "--procs", procs,
                    "--load", (char *)b->o.plugin, "--log-level", "warning", NULL};
    bench_stats_t s0, s1;
    if (bench_stats(br, &s0) != 0)
        return -1;
    uint64_t base = s0.workers;
    pid_t pool = bench_spawn(b, "taskq-worker", argv, -1, -1);
    double secs;
    /* The warm-up: one task per process, so that each has run the code. */
    int rc = pool > 0 && bench_wait_workers(b, br, base + p, POOL_LIMIT_MS) == 0 &&
                     run_pool(b, br->client, sums, p < tasks ? p : tasks, samples, &secs) == 0
                 ? 0
                 : -1;
    bench_report_t r;
    char variant[16];
    snprintf(variant, sizeof variant, "p=%u", p);
    bench_report_init(&r, "W4", variant, tasks);
    snprintf(r.title, sizeof r.title,
             "W4 speedup (p=%u: taskq-worker --procs %u; speedup = serial time / this)", p, p);
    bench_figure_t *t = bench_report_fig(&r, "seconds", "", "s", 3);
    bench_figure_t *s = bench_report_fig(&r, "speedup", "speedup", "", 2);
    bench_figure_t *e = bench_report_fig(&r, "efficiency", "efficiency", "", 2);
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        if (bench_stats(br, &s0) != 0 ||
            run_pool(b, br->client, sums, tasks, samples, &t->v[r.runs]) != 0 ||
            bench_stats(br, &s1) != 0) {
            rc = -1;
            break;
        }
        r.cpu_us[r.runs] = bench_cpu_per_task(&s0, &s1, tasks);
        s->v[r.runs] = serial / t->v[r.runs];
        e->v[r.runs] = s->v[r.runs] / p;
    }
    if (rc == 0) {
        bench_report_extra(&r, ",\"samples_per_task\":%" PRIu64, samples);
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }
    if (pool > 0 && bench_stop(b, pool, POOL_LIMIT_MS) != 0)
        rc = -1;
    if (rc == 0)
        rc = bench_wait_workers(b, br, base, POOL_LIMIT_MS);
    return rc;
}

int bench_w4(bench_t *b)
{
    size_t tasks = b->o.quick ? W4_TASKS_QUICK : W4_TASKS;
    mc_sums_t *sums = calloc(tasks, sizeof *sums);
    if (!sums) {
        fprintf(stderr, "taskq-bench: out of memory\n");
        return -1;
    }
    uint64_t samples = calibrate();
    bench_say(b, "W4 calibration: %" PRIu64 " samples per task take ~%.0f ms here", samples,
              TASK_NS / 1e6);

    /* The serial runs; the warm-up's sums are what every other run must give. */
    bench_report_t r;
    bench_report_init(&r, "W4", "serial", tasks);
    r.cpu = false;
    snprintf(r.title, sizeof r.title,
             "W4 speedup (serial: %zu mc_integrate tasks of %" PRIu64 " samples, one process)",
             tasks, samples);
    bench_figure_t *t = bench_report_fig(&r, "seconds", "", "s", 3);
    run_serial(sums, tasks, samples);
    mc_sums_t *again = calloc(tasks, sizeof *again);
    int rc = again ? 0 : -1;
    for (; rc == 0 && r.runs < b->o.runs; r.runs++) {
        t->v[r.runs] = run_serial(again, tasks, samples);
        if (memcmp(again, sums, tasks * sizeof *sums) != 0) {
            fprintf(stderr, "taskq-bench: W4: a serial run gave other sums\n");
            rc = -1;
        }
    }
    free(again);
    double serial = rc == 0 ? bench_median(t->v, r.runs, NULL, NULL) : 0;
    if (rc == 0) {
        bench_report_extra(&r, ",\"samples_per_task\":%" PRIu64, samples);
        bench_report_print(b, &r);
    } else {
        bench_report_fini(&r);
    }

    bench_env_t e = {0};
    if (rc == 0)
        rc = bench_env_start(b, &e, NULL, 0);
    for (unsigned p = 1; rc == 0 && p <= b->o.procs; p++)
        rc = pool_report(b, &e.br, p, sums, tasks, samples, serial);
    bench_env_stop(b, &e);
    free(sums);
    return rc;
}
