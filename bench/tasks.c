/*
 * tasks.c - the tasks of taskq-bench, both sides: "square" (an integer in,
 * its square out) and "echo" (a 64 KiB byte string back as it came), their
 * encoding in msgpack, the client's checks of every result, and the hidden
 * worker mode that serves both functions.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* The largest |x| whose square fits in 64 signed bits. */
#define SQUARE_MAX INT64_C(3037000499)

const char *bench_function(bench_kind_t k)
{
    return k == BENCH_SQUARE ? "square" : "echo";
}

/* Big-endian stores and loads. */
static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/* The shortest msgpack encoding of v into buf (9 bytes at most). */
static size_t pack_int(uint8_t *buf, int64_t v)
{
    if (v >= 0 && v < 128) {
        buf[0] = (uint8_t)v;
        return 1;
    }
    if (v < 0 && v >= -32) {
        buf[0] = (uint8_t)(int8_t)v;
        return 1;
    }
    static const struct {
        int64_t min, max;
        uint8_t marker;
        int bytes;
    } forms[] = {
        {0, UINT8_MAX, 0xcc, 1},         {0, UINT16_MAX, 0xcd, 2},
        {0, UINT32_MAX, 0xce, 4},        {0, INT64_MAX, 0xcf, 8},
        {INT8_MIN, -1, 0xd0, 1},         {INT16_MIN, -1, 0xd1, 2},
        {INT32_MIN, -1, 0xd2, 4},        {INT64_MIN, -1, 0xd3, 8},
    };
    size_t i = 0;
    while (v < forms[i].min || v > forms[i].max)
        i++;
    buf[0] = forms[i].marker;
    put_be(buf + 1, (uint64_t)v, forms[i].bytes);
    return 1 + (size_t)forms[i].bytes;
}

/* Read one msgpack integer that is exactly the len bytes at p.  0 or -1
 * (not an integer, or one beyond int64). */
static int unpack_int(const uint8_t *p, size_t len, int64_t *ret)
{
    if (len == 1 && (p[0] < 0x80 || p[0] >= 0xe0)) {
        *ret = (int8_t)p[0];
        return 0;
    }
    if (len < 2)
        return -1;
    int bytes = 1 << (p[0] & 3); /* cc..cf and d0..d3: 1, 2, 4, 8 bytes */
    if ((size_t)bytes != len - 1)
        return -1;
    uint64_t v = get_be(p + 1, bytes);
    if (p[0] >= 0xcc && p[0] <= 0xcf) {
        if (v > INT64_MAX)
            return -1;
        *ret = (int64_t)v;
        return 0;
    }
    if (p[0] >= 0xd0 && p[0] <= 0xd3) {
        int shift = 64 - 8 * bytes; /* sign-extend from its width */
        *ret = (int64_t)(v << shift) >> shift;
        return 0;
    }
    return -1;
}

void bench_args_init(bench_args_t *a)
{
    /* The peer harness's pattern (src/common.h, payload_init). */
    uint32_t s = 12345;
    a->echo[0] = 0xc6; /* bin 32: 65536 does not fit bin 16 */
    put_be(a->echo + 1, BENCH_PAYLOAD, 4);
    for (size_t i = 0; i < BENCH_PAYLOAD; i++) {
        s = s * 1103515245u + 12345u;
        a->echo[5 + i] = (uint8_t)(s >> 16);
    }
}

const void *bench_arg(bench_args_t *a, bench_kind_t k, uint64_t i, size_t *ret_len)
{
    if (k == BENCH_SQUARE) {
        *ret_len = pack_int(a->small, (int64_t)i);
        return a->small;
    }
    /* As in the peer harness: the first 8 bytes are the task's number, so
     * that every payload differs. */
    memcpy(a->echo + 5, &i, sizeof i);
    *ret_len = sizeof a->echo;
    return a->echo;
}

bool bench_result_ok(const bench_args_t *a, bench_kind_t k, uint64_t i, const void *res,
                     size_t len)
{
    const uint8_t *p = res;
    if (k == BENCH_SQUARE) {
        int64_t v;
        return unpack_int(p, len, &v) == 0 && (uint64_t)v == i * i;
    }
    return len == sizeof a->echo && memcmp(p, a->echo, 5) == 0 &&
           memcmp(p + 5, &i, sizeof i) == 0 &&
           memcmp(p + 5 + sizeof i, a->echo + 5 + sizeof i, BENCH_PAYLOAD - sizeof i) == 0;
}

int bench_compute(const char *fn, size_t fn_len, const uint8_t *arg, size_t len,
                  uint8_t out[9], const uint8_t **ret, size_t *ret_len, const char **ret_error)
{
    if (fn_len == 4 && memcmp(fn, "echo", 4) == 0) {
        *ret = arg;
        *ret_len = len;
        return 0;
    }
    if (fn_len != 6 || memcmp(fn, "square", 6) != 0) {
        *ret_error = "unknown function";
        return -1;
    }
    int64_t x;
    if (unpack_int(arg, len, &x) != 0) {
        *ret_error = "square: the argument is not a 64-bit integer";
        return -1;
    }
    if (x > SQUARE_MAX || x < -SQUARE_MAX) {
        *ret_error = "square: the square does not fit 64 bits";
        return -1;
    }
    *ret = out;
    *ret_len = pack_int(out, x * x);
    return 0;
}

/* ---- The hidden worker mode -------------------------------------------- */

/* The worker the signal handler stops (taskq_worker_stop is signal-safe). */
static taskq_worker_t *volatile running_worker;

static void on_stop(int sig)
{
    (void)sig;
    taskq_worker_stop(running_worker);
}

static int handle(taskq_task_t *t, void *userdata)
{
    (void)userdata;
    size_t len;
    const uint8_t *arg = taskq_task_arg(t, &len);
    const char *fn = taskq_task_function(t);
    uint8_t out[9];
    const uint8_t *res;
    size_t res_len;
    const char *error;
    if (bench_compute(fn, strlen(fn), arg, len, out, &res, &res_len, &error) != 0)
        return taskq_task_error(t, "%s", error);
    return taskq_task_set_result(t, res, res_len);
}

int bench_worker_main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: taskq-bench --run-worker ENDPOINT\n");
        return 2;
    }
    /* One handler thread holding 64 tasks, as each worker of the peer
     * harness's brokered reference announces 64 slots. */
    taskq_worker_opts_t opts = {.threads = 1, .prefetch = 63};
    taskq_worker_t *w = NULL;
    int rc = taskq_worker_new(argv[2], &opts, &w);
    if (rc == 0)
        rc = taskq_worker_register(w, "square", handle, NULL);
    if (rc == 0)
        rc = taskq_worker_register(w, "echo", handle, NULL);
    if (rc == 0) {
        running_worker = w;
        struct sigaction sa = {.sa_handler = on_stop};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        rc = taskq_worker_run(w);
    }
    taskq_worker_destroy(&w);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench worker: %s\n", taskq_strerror(rc));
        return 1;
    }
    return 0;
}
