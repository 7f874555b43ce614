/*
 * pi_client.c - estimates pi by Monte Carlo on the workers of a taskq
 * broker: splits the samples over tasks of mc_integrate (the montecarlo.so
 * plugin) with taskq_map, adds up their sums, and prints the estimate, its
 * standard error, its distance from pi and the wall time.
 *
 *   pi_client [--broker ENDPOINT] [-n SAMPLES] [-t TASKS] [--seed S] [--serial]
 *
 * With --seed S, task i draws from seed S + i, so a run can be repeated
 * exactly; without it each task uses its seed from the broker.  --serial
 * runs the same tasks one after the other in this process, with the same
 * generator and seeds: its estimate equals, bit for bit, that of a
 * distributed run with the same --seed.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <taskq.h>

#include "client_util.h"
#include "montecarlo.h"

/* Failed tasks printed before the rest are only counted. */
#define REPORT_MAX 10

/* What the map's callbacks share. */
typedef struct run {
    uint64_t samples;    /* in all */
    size_t tasks;        /* the samples are split over this many tasks */
    bool seeded;         /* --seed given: task i uses seed + i */
    uint64_t seed;
    msgpack_sbuffer arg; /* the encoded argument of the latest input */
    mc_sums_t total;     /* sums of the tasks done so far, in task order */
    size_t failed;       /* tasks without a usable result */
} run_t;

/* Task i's share: the samples divided evenly, the first ones taking one
 * more each until the remainder is used up. */
static uint64_t task_samples(const run_t *r, size_t i)
{
    return r->samples / r->tasks + (i < r->samples % r->tasks ? 1 : 0);
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

/* Input i: {"samples": its share, "seed": seed + i, or nil for the broker's}. */
static int input(size_t i, const void **arg, size_t *len, void *ud)
{
    run_t *r = ud;
    msgpack_packer pk;
    msgpack_sbuffer_clear(&r->arg);
    msgpack_packer_init(&pk, &r->arg, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_key(&pk, "samples");
    msgpack_pack_uint64(&pk, task_samples(r, i));
    pack_key(&pk, "seed");
    if (r->seeded)
        msgpack_pack_uint64(&pk, r->seed + i);
    else
        msgpack_pack_nil(&pk);
    *arg = r->arg.data;
    *len = r->arg.size;
    return 0;
}

/* Read {"sum": f64, "sumsq": f64, "n": uint} into *s; false if it is not that. */
static bool read_sums(const msgpack_object *o, mc_sums_t *s)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    unsigned seen = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return false;
        const char *key = k->via.str.ptr;
        uint32_t klen = k->via.str.size;
        if (klen == 3 && memcmp(key, "sum", 3) == 0 && v->type == MSGPACK_OBJECT_FLOAT64) {
            s->sum = v->via.f64;
            seen |= 1;
        } else if (klen == 5 && memcmp(key, "sumsq", 5) == 0 &&
                   v->type == MSGPACK_OBJECT_FLOAT64) {
            s->sumsq = v->via.f64;
            seen |= 2;
        } else if (klen == 1 && key[0] == 'n' && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            s->n = v->via.u64;
            seen |= 4;
        }
    }
    return seen == 7;
}

/* Outcomes come in task order, so adding them up here gives the same
 * floating-point sums on every run with the same seeds. */
static int output(size_t i, int code, const void *data, size_t len, void *ud)
{
    run_t *r = ud;
    if (code != 0) {
        if (r->failed++ < REPORT_MAX) /* data is the error text */
            fprintf(stderr, "pi_client: task %zu: %s: %.*s\n", i, taskq_errname(code),
                    (int)len, (const char *)data);
        return 0;
    }
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    mc_sums_t s = {0};
    bool ok = msgpack_unpack_next(&res, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
              read_sums(&res.data, &s) && s.n == task_samples(r, i);
    msgpack_unpacked_destroy(&res);
    if (!ok) {
        if (r->failed++ < REPORT_MAX)
            fprintf(stderr, "pi_client: task %zu: the result is not the sums of %" PRIu64
                            " samples\n", i, task_samples(r, i));
        return 0;
    }
    r->total.sum += s.sum;
    r->total.sumsq += s.sumsq;
    r->total.n += s.n;
    return 0;
}

/* The same tasks, one after the other, in this process. */
static void run_serial(run_t *r)
{
    for (size_t i = 0; i < r->tasks; i++) {
        mc_rng_t rng;
        mc_rng_seed(&rng, r->seed + i);
        mc_sums_t s = {0};
        mc_draw(&rng, task_samples(r, i), &s);
        r->total.sum += s.sum;
        r->total.sumsq += s.sumsq;
        r->total.n += s.n;
    }
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--broker ENDPOINT] [-n SAMPLES] [-t TASKS] [--seed S] [--serial]\n"
            "  -n SAMPLES  samples in all, 1..10^13 (default 10^8)\n"
            "  -t TASKS    tasks to split them over, 1..10^6 and at most SAMPLES (default 64)\n"
            "  --seed S    task i draws from seed S + i (default: the broker's task seeds)\n"
            "  --serial    run the tasks in this process instead of on workers\n",
            prog);
    return 2;
}

int main(int argc, char **argv)
{
    const char *broker = getenv("TASKQ_BROKER"); /* NULL: TASKQ_DEFAULT_ENDPOINT */
    run_t r = {.samples = 100000000, .tasks = 64};
    bool serial = false;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t v;
        bool ok = false;
        if (strcmp(argv[i], "--serial") == 0) {
            serial = true;
            continue;
        }
        if (strcmp(argv[i], "--broker") == 0) {
            ok = (broker = val) != NULL;
        } else if (strcmp(argv[i], "-n") == 0) {
            ok = parse_u64(val, 1, UINT64_C(10000000000000), &r.samples);
        } else if (strcmp(argv[i], "-t") == 0) {
            if ((ok = parse_u64(val, 1, 1000000, &v)))
                r.tasks = (size_t)v;
        } else if (strcmp(argv[i], "--seed") == 0) {
            ok = r.seeded = parse_u64(val, 0, UINT64_MAX, &r.seed);
        }
        if (!ok)
            return usage(argv[0]);
        i++;
    }
    if (r.tasks > r.samples)
        return usage(argv[0]);
    if (serial && !r.seeded) {
        /* There are no broker seeds in this process: pick one and print it,
         * so that the run can be repeated. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r.seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        r.seeded = true;
    }

    int rc = 0;
    double start = now_s();
    if (serial) {
        run_serial(&r);
    } else {
        taskq_client_t *c;
        rc = taskq_client_new(broker, NULL, &c);
        if (rc != 0) {
            fprintf(stderr, "pi_client: %s\n", taskq_strerror(rc));
            return 1;
        }
        msgpack_sbuffer_init(&r.arg);
        /* Default task options (three attempts each, no run limit) and
         * window, and no overall timeout: without a broker, the map ends
         * with TASKQ_ECLOSED after the client's reconnect limit (30 s). */
        rc = taskq_map(c, "mc_integrate", r.tasks, input, output, &r, NULL);
        msgpack_sbuffer_destroy(&r.arg);
        taskq_client_destroy(&c);
    }
    double secs = now_s() - start;

    if (rc != 0 || r.failed) {
        fprintf(stderr, "pi_client: %s; %zu of %zu tasks failed\n",
                rc ? taskq_strerror(rc) : "map done", r.failed, r.tasks);
        return 1;
    }
    /* pi = 4 * mean of f; its standard error from the sample variance. */
    double n = (double)r.total.n;
    double mean = r.total.sum / n;
    double var = n > 1 ? (r.total.sumsq / n - mean * mean) * n / (n - 1) : 0.0;
    double pi = 4.0 * mean;
    double se = 4.0 * sqrt(var > 0 ? var / n : 0.0);
    double err = pi - M_PI;
    if (r.seeded)
        printf("samples    %" PRIu64 " in %zu tasks, seeds %" PRIu64 " + i%s\n", r.total.n,
               r.tasks, r.seed, serial ? ", in this process" : "");
    else
        printf("samples    %" PRIu64 " in %zu tasks, seeds from the broker\n", r.total.n,
               r.tasks);
    printf("estimate   %.17g\n", pi); /* 17 digits: the double exactly */
    printf("std_error  %.3g\n", se);
    printf("error      %.3g (%.2f standard errors)\n", err, se > 0 ? fabs(err) / se : 0.0);
    printf("wall       %.3f s, %.1f tasks/s\n", secs, (double)r.tasks / secs);
    return 0;
}
