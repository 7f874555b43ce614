/*
 * bootstrap.c - bootstrap standard errors of a straight-line fit, checked
 * against the spread of the fit over many simulated data sets: each data
 * set is one task of bootstrap_fit (the bootstrap.so plugin).  The tasks
 * run first one after the other in this process, then on the workers of a
 * taskq broker with taskq_map; the program prints the estimates' spread
 * next to the true values, both wall times and the speedup, and checks
 * that both runs gave the same numbers bit for bit.
 *
 *   bootstrap [--broker ENDPOINT] [--datasets N] [--points n] [--resamples B]
 *             [--seed S] [--procs P] [--serial-only]
 *
 * Data set i draws from seed S + i (S from the clock unless given, and
 * printed), in this process and on the workers alike.
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

#include "bootstrap.h"
#include "client_util.h"

/* Failed tasks printed before the rest are only counted. */
#define REPORT_MAX 10

/* What the map's callbacks share. */
typedef struct run {
    bs_params_t p;        /* the model; p.seed is data set 0's seed */
    size_t datasets;      /* data sets, one task each */
    bs_result_t *remote;  /* each data set's result from the workers */
    msgpack_sbuffer arg;  /* the encoded argument of the latest input */
    size_t failed;        /* tasks without a usable result */
} run_t;

/* Input i: data set i's parameters, with seed S + i. */
static int input(size_t i, const void **arg, size_t *len, void *ud)
{
    run_t *r = ud;
    bs_params_t p = r->p;
    p.seed += i;
    bs_params_pack(&p, &r->arg);
    *arg = r->arg.data;
    *len = r->arg.size;
    return 0;
}

static int output(size_t i, int code, const void *data, size_t len, void *ud)
{
    run_t *r = ud;
    if (code != 0) {
        if (r->failed++ < REPORT_MAX) /* data is the error text */
            fprintf(stderr, "bootstrap: data set %zu: %s: %.*s\n", i, taskq_errname(code),
                    (int)len, (const char *)data);
        return 0;
    }
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    bool ok = msgpack_unpack_next(&res, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
              bs_result_parse(&res.data, &r->remote[i]);
    msgpack_unpacked_destroy(&res);
    if (!ok && r->failed++ < REPORT_MAX)
        fprintf(stderr, "bootstrap: data set %zu: the result is not a bootstrap_fit result\n",
                i);
    return 0;
}

/* The same tasks, one after the other, in this process.  Returns 0 or the
 * first task's error. */
static int run_serial(const run_t *r, bs_result_t *res)
{
    for (size_t i = 0; i < r->datasets; i++) {
        bs_params_t p = r->p;
        p.seed += i;
        int rc = bs_run(&p, NULL, NULL, &res[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The spread over the data sets of one parameter's estimates. */
typedef struct spread {
    double mean;      /* of the estimates */
    double sd;        /* their standard deviation (divisor N - 1) */
    double mean_se;   /* the mean of their bootstrap standard errors */
    double lo, hi;    /* 2.5 % and 97.5 % percentiles of the estimates */
    double coverage;  /* share of estimate +- 1.96 se that hold the truth */
} spread_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted[0..n-1], interpolated between order statistics
 * at (n - 1) q (Hyndman and Fan's definition 7, R's default). */
static double quantile(const double *sorted, size_t n, double q)
{
    double h = (double)(n - 1) * q;
    size_t k = (size_t)h;
    return k + 1 < n ? sorted[k] + (h - (double)k) * (sorted[k + 1] - sorted[k]) : sorted[k];
}

/* The spread of the n >= 2 results' intercepts (or slopes) around truth;
 * scratch holds n doubles. */
static spread_t summarise(const bs_result_t *res, size_t n, bool slope, double truth,
                          double *scratch)
{
    spread_t s = {0};
    size_t covered = 0;
    for (size_t i = 0; i < n; i++) {
        double est = slope ? res[i].slope : res[i].intercept;
        double se = slope ? res[i].se_slope : res[i].se_intercept;
        scratch[i] = est;
        s.mean += est;
        s.mean_se += se;
        covered += fabs(est - truth) <= 1.96 * se;
    }
    s.mean /= (double)n;
    s.mean_se /= (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (scratch[i] - s.mean) * (scratch[i] - s.mean);
    s.sd = sqrt(ss / (double)(n - 1));
    qsort(scratch, n, sizeof *scratch, cmp_double);
    s.lo = quantile(scratch, n, 0.025);
    s.hi = quantile(scratch, n, 0.975);
    s.coverage = 100.0 * (double)covered / (double)n;
    return s;
}

/* Print the spread of the results res[0..datasets-1]; scratch holds as
 * many doubles. */
static void print_spread(const run_t *r, const bs_result_t *res, double *scratch)
{
    spread_t a = summarise(res, r->datasets, false, r->p.intercept, scratch);
    spread_t b = summarise(res, r->datasets, true, r->p.slope, scratch);
    /* The large-n standard errors for x uniform with mean m and variance
     * w^2/12: slope sigma / sqrt(n var x), intercept sigma sqrt((1 +
     * m^2/var x) / n). */
    double n = r->p.points, m = (BS_X_MIN + BS_X_MAX) / 2;
    double var_x = (BS_X_MAX - BS_X_MIN) * (BS_X_MAX - BS_X_MIN) / 12;
    double th_b = r->p.sigma / sqrt(n * var_x);
    double th_a = r->p.sigma * sqrt((1 + m * m / var_x) / n);
    double root_n = sqrt((double)r->datasets);

    printf("%-12s %-19s %s\n", "", "intercept", "slope");
    printf("%-12s %-19.6g %.6g\n", "true", r->p.intercept, r->p.slope);
    printf("%-12s %-19.6g %-19.6g (off by %+.2f and %+.2f SE of the mean)\n", "mean", a.mean,
           b.mean, (a.mean - r->p.intercept) / (a.sd / root_n),
           (b.mean - r->p.slope) / (b.sd / root_n));
    printf("%-12s %-19.6g %-19.6g (of the estimates over data sets)\n", "sd", a.sd, b.sd);
    printf("%-12s %-19.6g %-19.6g (mean bootstrap SE: should match sd)\n", "boot_se",
           a.mean_se, b.mean_se);
    printf("%-12s %-19.6g %-19.6g (the large-n formula)\n", "theory_se", th_a, th_b);
    char ia[64], ib[64];
    snprintf(ia, sizeof ia, "%.6g %.6g", a.lo, a.hi);
    snprintf(ib, sizeof ib, "%.6g %.6g", b.lo, b.hi);
    printf("%-12s %-19s %-19s (2.5 and 97.5 %% points of the estimates)\n", "interval_95", ia,
           ib);
    printf("%-12s %-19.1f %-19.1f (%% of estimate +- 1.96 boot_se holding true)\n",
           "coverage_95", a.coverage, b.coverage);
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--broker ENDPOINT] [--datasets N] [--points n] [--resamples B]\n"
            "       [--seed S] [--procs P] [--serial-only]\n"
            "  --datasets N   simulated data sets, one task each, 2..10^6 (default 200)\n"
            "  --points n     points per data set, 10..10^6 (default 1000)\n"
            "  --resamples B  bootstrap resamples per data set, 2..10^6 (default 10000)\n"
            "  --seed S       data set i draws from seed S + i (default: from the clock)\n"
            "  --procs P      worker processes serving the broker, to print the efficiency\n"
            "  --serial-only  run the data sets in this process only, without a broker\n",
            prog);
    return 2;
}

int main(int argc, char **argv)
{
    const char *broker = getenv("TASKQ_BROKER"); /* NULL: TASKQ_DEFAULT_ENDPOINT */
    run_t r = {
        .p = {.points = 1000, .resamples = 10000, .intercept = 1.0, .slope = 2.0, .sigma = 0.5},
        .datasets = 200,
    };
    bool serial_only = false, seeded = false;
    uint64_t procs = 0;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t v = 0;
        bool ok = false;
        if (strcmp(argv[i], "--serial-only") == 0) {
            serial_only = true;
            continue;
        }
        if (strcmp(argv[i], "--broker") == 0) {
            ok = (broker = val) != NULL;
        } else if (strcmp(argv[i], "--datasets") == 0) {
            if ((ok = parse_u64(val, 2, 1000000, &v)))
                r.datasets = (size_t)v;
        } else if (strcmp(argv[i], "--points") == 0) {
            if ((ok = parse_u64(val, BS_MIN_POINTS, BS_MAX_POINTS, &v)))
                r.p.points = (uint32_t)v;
        } else if (strcmp(argv[i], "--resamples") == 0) {
            if ((ok = parse_u64(val, BS_MIN_RESAMPLES, BS_MAX_RESAMPLES, &v)))
                r.p.resamples = (uint32_t)v;
        } else if (strcmp(argv[i], "--seed") == 0) {
            ok = seeded = parse_u64(val, 0, UINT64_MAX, &r.p.seed);
        } else if (strcmp(argv[i], "--procs") == 0) {
            ok = parse_u64(val, 1, 100000, &procs);
        }
        if (!ok)
            return usage(argv[0]);
        i++;
    }
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r.p.seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    printf("data sets    %zu of %" PRIu32 " points, x uniform on [%g, %g), seeds %" PRIu64
           " + i\n", r.datasets, r.p.points, BS_X_MIN, BS_X_MAX, r.p.seed);
    printf("model        y = %g + %g x + N(0, %g^2); %" PRIu32
           " bootstrap resamples per data set\n\n",
           r.p.intercept, r.p.slope, r.p.sigma, r.p.resamples);

    int status = 1;
    bs_result_t *serial = calloc(r.datasets, sizeof *serial);
    double *scratch = malloc(r.datasets * sizeof *scratch);
    r.remote = calloc(r.datasets, sizeof *r.remote);
    if (!serial || !scratch || !r.remote) {
        fprintf(stderr, "bootstrap: out of memory\n");
        goto out;
    }
    double start = now_s();
    int rc = run_serial(&r, serial);
    double t_serial = now_s() - start;
    if (rc != 0) {
        fprintf(stderr, "bootstrap: %s\n", taskq_strerror(rc));
        goto out;
    }

    double t_taskq = 0;
    if (!serial_only) {
        taskq_client_t *c;
        rc = taskq_client_new(broker, NULL, &c);
        if (rc != 0) {
            fprintf(stderr, "bootstrap: %s\n", taskq_strerror(rc));
            goto out;
        }
        msgpack_sbuffer_init(&r.arg);
        /* Default task options and window, and no overall timeout: without
         * a broker, the map ends with TASKQ_ECLOSED after the client's
         * reconnect limit (30 s). */
        start = now_s();
        rc = taskq_map(c, "bootstrap_fit", r.datasets, input, output, &r, NULL);
        t_taskq = now_s() - start;
        msgpack_sbuffer_destroy(&r.arg);
        taskq_client_destroy(&c);
        if (rc != 0 || r.failed) {
            fprintf(stderr, "bootstrap: %s; %zu of %zu tasks failed\n",
                    rc ? taskq_strerror(rc) : "map done", r.failed, r.datasets);
            goto out;
        }
    }

    print_spread(&r, serial_only ? serial : r.remote, scratch);
    printf("\n%-12s %.3f s in this process, %.1f ms per data set\n", "serial", t_serial,
           1e3 * t_serial / (double)r.datasets);
    status = 0;
    if (!serial_only) {
        printf("%-12s %.3f s through the broker, speedup %.2f", "taskq", t_taskq,
               t_serial / t_taskq);
        if (procs)
            printf(", efficiency %.2f on %" PRIu64 " processes",
                   t_serial / t_taskq / (double)procs, procs);
        size_t same = 0;
        for (size_t i = 0; i < r.datasets; i++)
            same += memcmp(&serial[i], &r.remote[i], sizeof serial[i]) == 0;
        printf("\n%-12s %zu of %zu data sets bit for bit\n", "agree", same, r.datasets);
        status = same == r.datasets ? 0 : 1;
    }
out:
    free(serial);
    free(scratch);
    free(r.remote);
    return status;
}
