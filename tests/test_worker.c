/*
 * test_worker.c - the worker process the integration tests start: a small
 * set of functions whose behaviour the tests can steer through arguments
 * (square, echo, sleep, fail, flaky, seed, pid).  With --exec-log, every
 * handler call appends "JOB ATTEMPT" as one line to FILE, so that tests
 * can count executions.
 *
 * Usage: test_worker --broker ENDPOINT [--name N] [--threads N]
 *                    [--prefetch N] [--queue Q]... [--exec-log FILE]
 */
#include <fcntl.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "taskq.h"

static taskq_worker_t *the_worker;

/* A registered function, passed to exec_logged as its userdata. */
typedef struct function {
    const char *name;
    taskq_handler_fn fn;
} function_t;

/* The --exec-log descriptor (O_APPEND), or -1. */
static int exec_log = -1;

static void on_signal(int sig)
{
    (void)sig;
    taskq_worker_stop(the_worker);
}

static int arg_int(taskq_task_t *t, int64_t *ret)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = -1;
    if (msgpack_unpack_next(&u, arg, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        if (u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && u.data.via.u64 <= INT64_MAX) {
            *ret = (int64_t)u.data.via.u64;
            rc = 0;
        } else if (u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *ret = u.data.via.i64;
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static int reply_uint(taskq_task_t *t, uint64_t v)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_uint64(&pk, v);
    int rc = taskq_task_set_result(t, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int fn_square(taskq_task_t *t, void *ud)
{
    int64_t x;
    if (arg_int(t, &x) != 0)
        return taskq_task_error(t, "square: argument is not an integer");
    return reply_uint(t, (uint64_t)(x * x));
}

static int fn_echo(taskq_task_t *t, void *ud)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    return taskq_task_set_result(t, arg, len);
}

/* Sleep for the argument's milliseconds in 5 ms steps, returning early if
 * the broker abandons the attempt; the result is this process's pid. */
static int fn_sleep(taskq_task_t *t, void *ud)
{
    int64_t ms;
    if (arg_int(t, &ms) != 0 || ms < 0)
        return taskq_task_error(t, "sleep: argument is not a duration in ms");
    for (int64_t slept = 0; slept < ms && !taskq_task_cancelled(t); slept += 5) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (taskq_task_cancelled(t))
        return taskq_task_error(t, "sleep: abandoned");
    return reply_uint(t, (uint64_t)getpid());
}

static int fn_fail(taskq_task_t *t, void *ud)
{
    int64_t x = 0;
    arg_int(t, &x);
    return taskq_task_error(t, "failed on purpose (%lld)", (long long)x);
}

/* Ask for another attempt until attempt reaches the argument; the result
 * is the attempt that succeeded. */
static int fn_flaky(taskq_task_t *t, void *ud)
{
    int64_t until;
    if (arg_int(t, &until) != 0)
        return taskq_task_error(t, "flaky: argument is not an integer");
    if (taskq_task_attempt(t) < until)
        return taskq_task_retry(t, "transient failure on attempt %u", taskq_task_attempt(t));
    return reply_uint(t, taskq_task_attempt(t));
}

static int fn_seed(taskq_task_t *t, void *ud)
{
    return reply_uint(t, taskq_task_seed(t));
}

static int fn_pid(taskq_task_t *t, void *ud)
{
    return reply_uint(t, (uint64_t)getpid());
}

/* Log the call, then run the function.  One write(2) per line on an
 * O_APPEND descriptor, so lines of concurrent handler threads (and of other
 * processes sharing the file) never interleave. */
static int exec_logged(taskq_task_t *t, void *ud)
{
    const function_t *f = ud;
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %u\n", (unsigned long long)taskq_task_job_id(t),
                     taskq_task_attempt(t));
    if (write(exec_log, line, (size_t)n) != n)
        return taskq_task_error(t, "test_worker: cannot write the execution log");
    return f->fn(t, NULL);
}

int main(int argc, char **argv)
{
    const char *broker = NULL;
    const char *queues[17] = {0};
    int nq = 0;
    taskq_worker_opts_t opts = {0};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "test_worker: %s needs a value\n", argv[i]);
            return 64;
        }
        if (strcmp(argv[i], "--broker") == 0)
            broker = v;
        else if (strcmp(argv[i], "--name") == 0)
            opts.name = v;
        else if (strcmp(argv[i], "--threads") == 0)
            opts.threads = (uint32_t)atoi(v);
        else if (strcmp(argv[i], "--prefetch") == 0)
            opts.prefetch = (uint32_t)atoi(v);
        else if (strcmp(argv[i], "--queue") == 0 && nq < 16)
            queues[nq++] = v;
        else if (strcmp(argv[i], "--exec-log") == 0 && exec_log < 0) {
            exec_log = open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (exec_log < 0) {
                perror(v);
                return 1;
            }
        } else {
            fprintf(stderr, "test_worker: unknown option %s\n", argv[i]);
            return 64;
        }
        i++;
    }
    if (nq > 0)
        opts.queues = queues;

    int rc = taskq_worker_new(broker, &opts, &the_worker);
    if (rc != 0) {
        fprintf(stderr, "test_worker: %s\n", taskq_strerror(rc));
        return 1;
    }
    static const function_t fns[] = {{"square", fn_square}, {"echo", fn_echo},
                                     {"sleep", fn_sleep},   {"fail", fn_fail},
                                     {"seed", fn_seed},     {"pid", fn_pid},
                                     {"flaky", fn_flaky}};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        if (exec_log >= 0)
            taskq_worker_register(the_worker, fns[i].name, exec_logged, (void *)&fns[i]);
        else
            taskq_worker_register(the_worker, fns[i].name, fns[i].fn, NULL);
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    rc = taskq_worker_run(the_worker);
    taskq_worker_destroy(&the_worker);
    if (exec_log >= 0)
        close(exec_log);
    if (rc != 0) {
        fprintf(stderr, "test_worker: %s\n", taskq_strerror(rc));
        return 1;
    }
    return 0;
}
