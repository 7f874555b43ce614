/*
 * exchange.c - the client side of the timed runs, measured as the peer
 * harness's C clients measure (first submit to last result, every result
 * checked): the pipelined throughput exchange of W1, W3, W5, W6 and W8, the
 * one-at-a-time latency exchange of W2, and the hidden W5 client mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bench.h"

/* Longest single wait, so that an interrupt is seen soon. */
#define WAIT_SLICE_MS 200

int bench_wait(taskq_future_t *f, int64_t deadline_ns)
{
    for (;;) {
        if (bench_interrupted)
            return TASKQ_ESTOPPED;
        int64_t left_ms = (deadline_ns - bench_now_ns()) / 1000000;
        if (left_ms <= 0)
            return taskq_future_wait(f, 0);
        int rc = taskq_future_wait(f, (int32_t)(left_ms < WAIT_SLICE_MS ? left_ms : WAIT_SLICE_MS));
        if (rc != TASKQ_ETIMEDOUT)
            return rc;
    }
}

/* Say why task i did not give the right result (rc: its wait's code). */
static int task_failed(const taskq_future_t *f, uint64_t i, int rc, uint64_t got, uint64_t n)
{
    if (rc == TASKQ_ETIMEDOUT)
        fprintf(stderr, "taskq-bench: run cut at its time limit: %" PRIu64 " of %" PRIu64
                        " results\n", got, n);
    else if (rc == TASKQ_ESTOPPED)
        fprintf(stderr, "taskq-bench: interrupted\n");
    else if (rc != 0)
        fprintf(stderr, "taskq-bench: task %" PRIu64 ": %s: %s\n", i, taskq_errname(rc),
                taskq_future_error(f));
    else
        fprintf(stderr, "taskq-bench: task %" PRIu64 ": wrong result\n", i);
    return -1;
}

static void destroy_all(taskq_future_t **fs, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        taskq_future_destroy(&fs[i]);
    free(fs);
}

int bench_batch(taskq_client_t *c, bench_kind_t k, uint64_t n, int64_t deadline_ns,
                int64_t *done_ns, int64_t *ret_t0, int64_t *ret_t1)
{
    taskq_future_t **fs = calloc(n, sizeof *fs);
    bench_args_t *a = malloc(sizeof *a);
    if (!fs || !a) {
        fprintf(stderr, "taskq-bench: out of memory\n");
        free(fs);
        free(a);
        return -1;
    }
    bench_args_init(a);
    const char *fn = bench_function(k);
    uint64_t next = 0; /* the first result not yet collected */
    int rc = 0;
    size_t res_len;
    const void *res;

    int64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < n && !rc; i++) {
        size_t len;
        const void *arg = bench_arg(a, k, i, &len);
        if ((rc = taskq_submit(c, fn, arg, len, NULL, &fs[i])) != 0) {
            fprintf(stderr, "taskq-bench: submit: %s\n", taskq_strerror(rc));
            break;
        }
        /* A full batch has just gone out: take in the results that came
         * meanwhile, as the peer clients read replies between bursts. */
        if ((i + 1) % BENCH_BATCH != 0)
            continue;
        while (next <= i && (rc = taskq_future_wait(fs[next], 0)) != TASKQ_ETIMEDOUT) {
            res = taskq_future_result(fs[next], &res_len);
            if (rc || !bench_result_ok(a, k, next, res, res_len))
                break;
            if (done_ns)
                done_ns[next] = bench_now_ns();
            next++;
        }
        if (rc == TASKQ_ETIMEDOUT)
            rc = 0;
        else if (rc || next <= i)
            rc = task_failed(fs[next], next, rc, next, n);
    }
    if (!rc && (rc = taskq_client_flush(c)) != 0)
        fprintf(stderr, "taskq-bench: flush: %s\n", taskq_strerror(rc));
    while (!rc && next < n) {
        rc = bench_wait(fs[next], deadline_ns);
        res = taskq_future_result(fs[next], &res_len);
        if (rc || !bench_result_ok(a, k, next, res, res_len)) {
            rc = task_failed(fs[next], next, rc, next, n);
            break;
        }
        if (done_ns)
            done_ns[next] = bench_now_ns();
        next++;
    }
    int64_t t1 = bench_now_ns();

    destroy_all(fs, n);
    free(a);
    if (rc)
        return -1;
    *ret_t0 = t0;
    *ret_t1 = t1;
    return 0;
}

int bench_latency(taskq_client_t *c, uint64_t n, int64_t deadline_ns, double *lat_us)
{
    bench_args_t *a = malloc(sizeof *a);
    if (!a) {
        fprintf(stderr, "taskq-bench: out of memory\n");
        return -1;
    }
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++) {
        taskq_future_t *f = NULL;
        size_t len, res_len;
        int64_t t0 = bench_now_ns();
        const void *arg = bench_arg(a, BENCH_SQUARE, i, &len);
        rc = taskq_submit(c, "square", arg, len, NULL, &f);
        if (rc) {
            fprintf(stderr, "taskq-bench: submit: %s\n", taskq_strerror(rc));
            break;
        }
        rc = bench_wait(f, deadline_ns);
        int64_t t1 = bench_now_ns();
        const void *res = taskq_future_result(f, &res_len);
        if (rc || !bench_result_ok(a, BENCH_SQUARE, i, res, res_len))
            rc = task_failed(f, i, rc, i, n);
        lat_us[i] = (double)(t1 - t0) / 1000.0;
        taskq_future_destroy(&f);
    }
    free(a);
    return rc ? -1 : 0;
}

/* ---- The hidden W5 client mode ----------------------------------------- */

/* Write all of buf to fd.  0 or -1. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Write t0, t1 and done[0..n-1] to path.  0 or -1. */
static int write_times(const char *path, int64_t t0, int64_t t1, const int64_t *done, uint64_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int64_t head[2] = {t0, t1};
    int rc = write_all(fd, head, sizeof head) == 0 && write_all(fd, done, n * sizeof *done) == 0
                 ? 0
                 : -1;
    return close(fd) == 0 ? rc : -1;
}

int bench_client_main(int argc, char **argv)
{
    char *end;
    uint64_t n = argc == 5 ? strtoull(argv[3], &end, 10) : 0;
    if (n == 0 || *end) {
        fprintf(stderr, "usage: taskq-bench --run-client ENDPOINT N OUTFILE\n");
        return 2;
    }
    int64_t *done = calloc(n, sizeof *done);
    taskq_client_opts_t opts = {.name = "taskq-bench-w5", .max_batch = BENCH_BATCH};
    taskq_client_t *c = NULL;
    int rc = done ? taskq_client_new(argv[2], &opts, &c) : TASKQ_ENOMEM;
    if (rc == 0)
        rc = taskq_client_ping(c, 10000, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench client: %s\n", taskq_strerror(rc));
        taskq_client_destroy(&c);
        free(done);
        return 1;
    }
    /* Ready: say so, then wait for the go (stdin closed by the driver,
     * which kills this process if it does not come). */
    char byte = 'r';
    int status = 1;
    int64_t t0, t1;
    if (write_all(1, &byte, 1) == 0) {
        ssize_t r;
        while ((r = read(0, &byte, 1)) != 0 && (r > 0 || errno == EINTR))
            ;
        /* The driver bounds the whole run; this deadline only keeps the
         * process from outliving it. */
        int64_t deadline = bench_now_ns() + INT64_C(600) * 1000000000;
        if (bench_batch(c, BENCH_SQUARE, n, deadline, done, &t0, &t1) == 0) {
            if (write_times(argv[4], t0, t1, done, n) == 0)
                status = 0;
            else
                fprintf(stderr, "taskq-bench client: cannot write %s\n", argv[4]);
        }
    }
    taskq_client_destroy(&c);
    free(done);
    return status;
}
