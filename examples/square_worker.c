/*
 * square_worker.c - a taskq worker serving one function, "square": its
 * argument is a msgpack integer x, its result x*x.  Runs until SIGINT or
 * SIGTERM, then finishes the tasks it is running and says goodbye.
 *
 *   square_worker [--broker ENDPOINT] [--threads N] [--prefetch N]
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <taskq.h>

/* The worker the signal handler stops (taskq_worker_stop is signal-safe). */
static taskq_worker_t *volatile running_worker;

static void on_signal(int sig)
{
    (void)sig;
    taskq_worker_stop(running_worker);
}

/* The handler: decode x, check it, encode x*x as the result. */
static int square(taskq_task_t *t, void *userdata)
{
    (void)userdata;
    size_t len;
    const char *arg = taskq_task_arg(t, &len);
    msgpack_unpacked in;
    msgpack_unpacked_init(&in);
    bool ok = msgpack_unpack_next(&in, arg, len, NULL) == MSGPACK_UNPACK_SUCCESS;
    int64_t x = 0;
    if (ok && in.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && in.data.via.u64 <= INT64_MAX)
        x = (int64_t)in.data.via.u64;
    else if (ok && in.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        x = in.data.via.i64;
    else
        ok = false;
    msgpack_unpacked_destroy(&in);
    if (!ok)
        return taskq_task_error(t, "square: the argument is not a 64-bit integer");
    if (x > 3037000499 || x < -3037000499) /* |x| above the square root of INT64_MAX */
        return taskq_task_error(t, "square: %" PRId64 " squared does not fit 64 bits", x);

    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    msgpack_pack_int64(&pk, x * x);
    int rc = taskq_task_set_result(t, out.data, out.size); /* copies the bytes */
    msgpack_sbuffer_destroy(&out);
    return rc;
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--broker ENDPOINT] [--threads N] [--prefetch N]\n", prog);
    return 2;
}

/* Parse a count in 1..10000; false if it is not one. */
static bool parse_count(const char *s, uint32_t *ret)
{
    char *end;
    errno = 0;
    unsigned long v = s ? strtoul(s, &end, 10) : 0;
    if (!s || errno || *end || v < 1 || v > 10000)
        return false;
    *ret = (uint32_t)v;
    return true;
}

int main(int argc, char **argv)
{
    const char *broker = getenv("TASKQ_BROKER");
    /* Each worker holds up to threads + prefetch tasks.  A squaring takes
     * far less time than a trip to the broker and back, so holding 64 extra
     * tasks keeps the handler busy while DONE goes out and the next TASKS
     * come in.  Tasks that run for seconds want a small prefetch instead,
     * so that idle workers get their share. */
    taskq_worker_opts_t opts = {.threads = 1, .prefetch = 64};
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = false;
        if (strcmp(argv[i], "--broker") == 0)
            ok = (broker = val) != NULL;
        else if (strcmp(argv[i], "--threads") == 0)
            ok = parse_count(val, &opts.threads);
        else if (strcmp(argv[i], "--prefetch") == 0)
            ok = parse_count(val, &opts.prefetch);
        if (!ok)
            return usage(argv[0]);
        i++;
    }

    taskq_worker_t *w = NULL;
    int rc = taskq_worker_new(broker, &opts, &w); /* broker NULL: the default */
    if (rc == 0)
        rc = taskq_worker_register(w, "square", square, NULL);
    if (rc != 0) {
        fprintf(stderr, "square_worker: %s\n", taskq_strerror(rc));
        taskq_worker_destroy(&w);
        return 1;
    }

    running_worker = w;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = taskq_worker_run(w); /* returns after a signal, or when the broker says BYE */
    taskq_worker_destroy(&w);
    if (rc != 0) {
        fprintf(stderr, "square_worker: %s\n", taskq_strerror(rc));
        return 1;
    }
    return 0;
}
