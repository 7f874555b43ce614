/*
 * check_examples.c - the Monte Carlo example end to end: a real taskqd, a
 * taskq-worker with two processes loading examples/montecarlo.so, and the
 * pi_client program, whose output is read back and checked.
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

/* A broker and a taskq-worker serving mc_integrate with two processes. */
static void setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    const char *const args[] = {"--broker", broker.endpoint, "--procs", "2",
                                "--load", MONTECARLO_PATH, NULL};
    ck_assert_int_gt(th_spawn(TASKQ_WORKER_PATH, args), 0);
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);
    taskq_client_destroy(&c);
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

int main(void)
{
    const th_case_t cases[] = {
        {"pi_within_4_se", test_estimate_within_four_standard_errors, 120, setup, teardown},
        {"same_seeds", test_same_seeds_same_estimate, 120, setup, teardown},
        {"bad_arguments", test_bad_arguments_refused, 120, setup, teardown},
    };
    return th_run_suite("examples", cases, sizeof cases / sizeof cases[0]);
}
