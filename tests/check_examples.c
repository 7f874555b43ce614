/*
 * check_examples.c - the Monte Carlo examples end to end: a real taskqd, a
 * taskq-worker with two processes loading examples/montecarlo.so (or
 * bootstrap.so), and the pi_client (or bootstrap) program, whose output is
 * read back and checked.
 */
#include <check.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "taskq.h"

static th_broker_t broker;

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

/* A broker and a taskq-worker with two processes loading plugin. */
static void start(const char *plugin)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    const char *const args[] = {"--broker", broker.endpoint, "--procs", "2",
                                "--load", plugin, NULL};
    ck_assert_int_gt(th_spawn(TASKQ_WORKER_PATH, args), 0);
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);
    taskq_client_destroy(&c);
}

/* Workers serving mc_integrate (montecarlo.so). */
static void setup(void)
{
    start(MONTECARLO_PATH);
}

/* Workers serving bootstrap_fit (bootstrap.so). */
static void setup_bootstrap(void)
{
    start(BOOTSTRAP_PLUGIN_PATH);
}

static void teardown(void)
{
    th_stop_all();
    rmdir(broker.dir);
}

/* What one pi_client run printed. */
typedef struct pi_run {
    char out[4096];      /* everything it wrote */
    char estimate[64];   /* the estimate as printed: 17 digits */
    double pi, std_error;
} pi_run_t;

/* Copy the first word after "key" at the start of a line of out to val. */
static bool field(const char *out, const char *key, char *val, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *line = out; line; line = strchr(line, '\n')) {
        line += line[0] == '\n';
        if (strncmp(line, key, klen) != 0 || line[klen] != ' ')
            continue;
        const char *v = line + klen + strspn(line + klen, " ");
        size_t n = strcspn(v, " \n");
        if (n == 0 || n >= cap)
            return false;
        memcpy(val, v, n);
        val[n] = '\0';
        return true;
    }
    return false;
}

/* Run pi_client with args after the broker's endpoint; it must succeed. */
static void pi_client(pi_run_t *r, const char *const *args)
{
    const char *argv[16] = {"--broker", broker.endpoint};
    int n = 2;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int st = th_run(PI_CLIENT_PATH, argv, 60000, r->out, sizeof r->out);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "pi_client status %d:\n%s",
                  st, r->out);
    char se[64];
    ck_assert_msg(field(r->out, "estimate", r->estimate, sizeof r->estimate) &&
                      field(r->out, "std_error", se, sizeof se),
                  "unexpected output:\n%s", r->out);
    r->pi = strtod(r->estimate, NULL);
    r->std_error = strtod(se, NULL);
}

static void assert_near_pi(const pi_run_t *r)
{
    /* 4 * sd(1/(1+x^2)) / sqrt(n) with n = 4e6 is about 3.2e-4. */
    ck_assert_msg(r->std_error > 1e-4 && r->std_error < 1e-3, "std_error %g", r->std_error);
    ck_assert_msg(fabs(r->pi - M_PI) < 4 * r->std_error, "%s is more than 4 standard errors "
                  "(%g) from pi", r->estimate, r->std_error);
}

START_TEST(test_estimate_within_four_standard_errors)
{
    pi_run_t r;
    const char *const broker_seeds[] = {"-n", "4000000", "-t", "16", NULL};
    pi_client(&r, broker_seeds);
    assert_near_pi(&r);
    const char *const seeded[] = {"-n", "4000000", "-t", "16", "--seed", "2024", NULL};
    pi_client(&r, seeded);
    assert_near_pi(&r);
}
END_TEST

START_TEST(test_same_seeds_same_estimate)
{
    pi_run_t a, b, serial, other;
    const char *const seeded[] = {"-n", "4000000", "-t", "16", "--seed", "99", NULL};
    pi_client(&a, seeded);
    pi_client(&b, seeded);
    ck_assert_str_eq(a.estimate, b.estimate);
    const char *const in_process[] = {"-n", "4000000", "-t", "16", "--seed", "99",
                                      "--serial", NULL};
    pi_client(&serial, in_process);
    ck_assert_str_eq(a.estimate, serial.estimate);
    /* Another seed, another estimate: the seeds do reach the tasks. */
    const char *const next[] = {"-n", "4000000", "-t", "16", "--seed", "100", NULL};
    pi_client(&other, next);
    ck_assert_str_ne(a.estimate, other.estimate);
}
END_TEST

/* Submit mc_integrate with the msgpack bytes arg and wait for its outcome. */
static int call(taskq_client_t *c, const char *arg, size_t len, taskq_future_t **ret)
{
    ck_assert_code(taskq_submit(c, "mc_integrate", arg, len, NULL, ret), 0);
    return taskq_future_wait(*ret, 20000);
}

START_TEST(test_bad_arguments_refused)
{
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    static const struct {
        const char *bytes; /* one msgpack object */
        size_t len;
        const char *error;
    } bad[] = {
        {"\x05", 1, "mc_integrate: the argument is not a map"},
        {"\x81\xa7samples\x00", 10, "mc_integrate: \"samples\" is not a positive integer"},
        {"\x81\xa4seed\x01", 7, "mc_integrate: no \"samples\""},
        {"\x82\xa7samples\x0a\xa4seed\xa1x", 17,
         "mc_integrate: \"seed\" is neither an unsigned integer nor nil"},
        {"\x82\xa7samples\x0a\xa5seeds\x01", 17,
         "mc_integrate: unknown key (only \"samples\" and \"seed\")"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        taskq_future_t *f;
        ck_assert_code(call(c, bad[i].bytes, bad[i].len, &f), TASKQ_EFAILED);
        ck_assert_str_eq(taskq_future_error(f), bad[i].error);
        ck_assert_uint_eq(taskq_future_attempts(f), 1);
        taskq_future_destroy(&f);
    }

    /* Without a seed, or with nil, the task's own seed is used. */
    taskq_future_t *f;
    ck_assert_code(call(c, "\x81\xa7samples\x0a", 10, &f), 0);
    taskq_future_destroy(&f);
    ck_assert_code(call(c, "\x82\xa7samples\x0a\xa4seed\xc0", 16, &f), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);

    /* pi_client refuses more tasks than samples. */
    char out[1024];
    const char *const args[] = {"-n", "5", "-t", "10", "--serial", NULL};
    int st = th_run(PI_CLIENT_PATH, args, 10000, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d: %s", st, out);
}
END_TEST

/* Read the two numbers after "key" at the start of a line of out. */
static bool row(const char *out, const char *key, double v[2])
{
    size_t klen = strlen(key);
    for (const char *line = out; line; line = strchr(line, '\n')) {
        line += line[0] == '\n';
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return sscanf(line + klen, "%lf %lf", &v[0], &v[1]) == 2;
    }
    return false;
}

/* Run the bootstrap client with args; it must exit with status want. */
static void bootstrap(const char *const *args, int want, char *out, size_t cap)
{
    int st = th_run(BOOTSTRAP_PATH, args, 120000, out, cap);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == want,
                  "bootstrap status %d, want exit %d:\n%s", st, want, out);
}

START_TEST(test_bootstrap_agrees_and_matches_spread)
{
    enum { N = 60 }; /* data sets */
    char out[8192], serial[8192];
    const char *const args[] = {"--broker", broker.endpoint, "--datasets", "60", "--points",
                                "200", "--resamples", "500", "--seed", "7", "--procs", "2",
                                NULL};
    bootstrap(args, 0, out, sizeof out);
    /* The client compares the workers' results with its own run. */
    ck_assert_msg(strstr(out, "\nagree        60 of 60 data sets bit for bit\n"), "%s", out);

    double truth[2], mean[2], sd[2], boot_se[2], theory_se[2];
    ck_assert_msg(row(out, "true", truth) && row(out, "mean", mean) && row(out, "sd", sd) &&
                      row(out, "boot_se", boot_se) && row(out, "theory_se", theory_se),
                  "unexpected output:\n%s", out);
    ck_assert(truth[0] == 1.0 && truth[1] == 2.0);
    for (int k = 0; k < 2; k++) {
        /* The mean of N unbiased estimates, within 4 of its standard errors. */
        ck_assert_msg(fabs(mean[k] - truth[k]) < 4 * sd[k] / sqrt(N), "mean %g, true %g, sd %g",
                      mean[k], truth[k], sd[k]);
        /* The bootstrap SE estimates the spread across data sets; the sd of
         * N = 60 estimates is itself uncertain by 1/sqrt(2 (N - 1)), 9 %. */
        ck_assert_msg(boot_se[k] > 0.6 * sd[k] && boot_se[k] < 1.5 * sd[k],
                      "boot_se %g, sd %g", boot_se[k], sd[k]);
        /* Averaged over N data sets it is much steadier: within 15 % of the
         * large-n formula at n = 200. */
        ck_assert_msg(fabs(boot_se[k] / theory_se[k] - 1) < 0.15, "boot_se %g, theory_se %g",
                      boot_se[k], theory_se[k]);
    }

    /* --serial-only needs no broker and prints the same table. */
    const char *const alone[] = {"--broker", "tcp://127.0.0.1:1", "--datasets", "60",
                                 "--points", "200", "--resamples", "500", "--seed", "7",
                                 "--serial-only", NULL};
    bootstrap(alone, 0, serial, sizeof serial);
    const char *to = strstr(out, "\nserial ");
    ck_assert_ptr_nonnull(to);
    ck_assert_msg(strncmp(serial, out, (size_t)(to - out)) == 0, "serial:\n%s\nremote:\n%s",
                  serial, out);
    ck_assert_ptr_null(strstr(serial, "agree"));

    /* Fewer than 10 points is refused. */
    const char *const few[] = {"--points", "9", "--serial-only", NULL};
    bootstrap(few, 2, serial, sizeof serial);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"pi_within_4_se", test_estimate_within_four_standard_errors, 120, setup, teardown},
        {"same_seeds", test_same_seeds_same_estimate, 120, setup, teardown},
        {"bad_arguments", test_bad_arguments_refused, 120, setup, teardown},
        {"bootstrap", test_bootstrap_agrees_and_matches_spread, 240, setup_bootstrap, teardown},
    };
    return th_run_suite("examples", cases, sizeof cases / sizeof cases[0]);
}
