/*
 * square_client.c - squares 0..N-1 on the workers of a taskq broker with
 * taskq_map, checks every result, and reports the rate.  Run one or more
 * square_worker processes against the same broker.
 *
 *   square_client [--broker ENDPOINT] [-n N]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <taskq.h>

/* Problems printed before the rest are only counted. */
#define REPORT_MAX 10

/* What the callbacks share (the map's user data). */
typedef struct run {
    msgpack_sbuffer arg; /* the encoded argument of the latest input */
    size_t outputs;      /* outcomes handed back */
    size_t wrong;        /* outcomes that are not i*i */
    unsigned tenths;     /* progress printed so far, in tenths */
} run_t;

/* Input i is the msgpack integer i; taskq_map copies it before the next call. */
static int input(size_t i, const void **arg, size_t *len, void *ud)
{
    run_t *r = ud;
    msgpack_packer pk;
    msgpack_sbuffer_clear(&r->arg);
    msgpack_packer_init(&pk, &r->arg, msgpack_sbuffer_write);
    msgpack_pack_uint64(&pk, i);
    *arg = r->arg.data;
    *len = r->arg.size;
    return 0;
}

/* Outcomes come back in input order: check that outcome i is i*i. */
static int output(size_t i, int code, const void *data, size_t len, void *ud)
{
    run_t *r = ud;
    r->outputs++;
    if (code != 0) {
        if (r->wrong++ < REPORT_MAX) /* data is the error text */
            fprintf(stderr, "task %zu: %s: %.*s\n", i, taskq_errname(code), (int)len,
                    (const char *)data);
        return 0;
    }
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    uint64_t want = (uint64_t)i * i;
    bool ok = msgpack_unpack_next(&res, data, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
              res.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && res.data.via.u64 == want;
    msgpack_unpacked_destroy(&res);
    if (!ok && r->wrong++ < REPORT_MAX)
        fprintf(stderr, "task %zu: the result is not %" PRIu64 "\n", i, want);
    return 0; /* non-zero would stop the map */
}

/* Print a line at every tenth of the work done. */
static void progress(size_t done, size_t total, void *ud)
{
    run_t *r = ud;
    unsigned tenths = (unsigned)(done * 10 / total);
    if (tenths > r->tenths && tenths < 10) {
        r->tenths = tenths;
        printf("%zu of %zu done\n", done, total);
        fflush(stdout);
    }
}

/* Parse a task count in 1..10^9; false if it is not one. */
static bool parse_n(const char *s, size_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || *end || v < 1 || v > 1000000000)
        return false;
    *ret = (size_t)v;
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *broker = getenv("TASKQ_BROKER"); /* NULL: TASKQ_DEFAULT_ENDPOINT */
    size_t n = 100000;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = false;
        if (strcmp(argv[i], "--broker") == 0)
            ok = (broker = val) != NULL;
        else if (strcmp(argv[i], "-n") == 0)
            ok = parse_n(val, &n);
        if (!ok) {
            fprintf(stderr, "usage: %s [--broker ENDPOINT] [-n N]\n", argv[0]);
            return 2;
        }
        i++;
    }

    taskq_client_t *c;
    int rc = taskq_client_new(broker, NULL, &c);
    if (rc != 0) {
        fprintf(stderr, "square_client: %s\n", taskq_strerror(rc));
        return 1;
    }
    run_t r = {0};
    msgpack_sbuffer_init(&r.arg);
    /* Default window (4096 tasks in flight) and no overall timeout: if no
     * broker answers for 30 s (the client's reconnect_limit_ms), the map
     * ends with TASKQ_ECLOSED. */
    taskq_map_opts_t opts = {.progress = progress};

    double start = now_s();
    rc = taskq_map(c, "square", n, input, output, &r, &opts);
    double secs = now_s() - start;

    msgpack_sbuffer_destroy(&r.arg);
    taskq_client_destroy(&c);
    if (rc != 0 || r.wrong || r.outputs != n) {
        fprintf(stderr, "square_client: %s; %zu wrong and %zu missing of %zu results\n",
                rc ? taskq_strerror(rc) : "map done", r.wrong, n - r.outputs, n);
        return 1;
    }
    printf("ok %zu tasks in %.2f s (%.0f tasks/s)\n", n, secs, (double)n / secs);
    return 0;
}
