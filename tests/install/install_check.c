/*
 * install_check.c - a program built against an installed libtaskq, the
 * way a user builds one: it includes <taskq.h> and links the library found
 * by pkg-config (Makefile) or by find_package(taskq) (CMakeLists.txt).
 *
 *   install_check ENDPOINT [N]
 *
 * Serves the function "install_check.square" from a worker in a thread of
 * its own, submits N tasks (default 20) to the broker at ENDPOINT as a
 * client, waits for every outcome and checks it.  Prints "ok N tasks"
 * and exits 0, or says what went wrong and exits 1.  Arguments and results
 * are msgpack unsigned integers, encoded by hand so that the program needs
 * no header but taskq.h.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <taskq.h>

#define FUNCTION "install_check.square"
#define WAIT_MS 20000

/* msgpack uint 32: 0xce and four bytes, big-endian. */
static void put_u32(unsigned char out[5], uint32_t x)
{
    out[0] = 0xce;
    for (int i = 0; i < 4; i++)
        out[1 + i] = (unsigned char)(x >> (24 - 8 * i));
}

/* Any msgpack unsigned integer below 2^32; -1 if it is not one. */
static int64_t get_uint(const unsigned char *p, size_t len)
{
    if (len == 1 && p[0] <= 0x7f)
        return p[0];
    size_t n = len >= 1 && p[0] == 0xcc ? 1 : len >= 1 && p[0] == 0xcd ? 2
             : len >= 1 && p[0] == 0xce ? 4 : 0;
    if (n == 0 || len != 1 + n)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = x << 8 | p[1 + i];
    return x;
}

static int square(taskq_task_t *t, void *userdata)
{
    (void)userdata;
    size_t len;
    const unsigned char *arg = taskq_task_arg(t, &len);
    int64_t x = get_uint(arg, len);
    if (x < 0 || x > 65535)
        return taskq_task_error(t, "not an integer from 0 to 65535");
    unsigned char out[5];
    put_u32(out, (uint32_t)(x * x));
    return taskq_task_set_result(t, out, sizeof out);
}

static void *run_worker(void *w)
{
    int rc = taskq_worker_run(w);
    if (rc != 0)
        fprintf(stderr, "install_check: worker: %s\n", taskq_strerror(rc));
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: install_check ENDPOINT [N]\n");
        return 2;
    }
    const char *endpoint = argv[1];
    int n = argc == 3 ? atoi(argv[2]) : 20;
    if (n < 1 || n > 10000) {
        fprintf(stderr, "install_check: N must be 1 to 10000\n");
        return 2;
    }
    printf("libtaskq %s (header %d.%d.%d)\n", taskq_version(), TASKQ_VERSION_MAJOR,
           TASKQ_VERSION_MINOR, TASKQ_VERSION_PATCH);

    taskq_worker_opts_t wopts = {.name = "install-check", .threads = 2};
    taskq_worker_t *w = NULL;
    int rc = taskq_worker_new(endpoint, &wopts, &w);
    if (rc == 0)
        rc = taskq_worker_register(w, FUNCTION, square, NULL);
    if (rc != 0) {
        fprintf(stderr, "install_check: worker: %s\n", taskq_strerror(rc));
        return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, run_worker, w) != 0) {
        fprintf(stderr, "install_check: cannot start the worker thread\n");
        return 1;
    }

    int failures = 0;
    taskq_client_t *c = NULL;
    taskq_future_t **fs = calloc((size_t)n, sizeof *fs);
    rc = fs ? taskq_client_new(endpoint, NULL, &c) : TASKQ_ENOMEM;
    if (rc != 0) {
        fprintf(stderr, "install_check: client: %s\n", taskq_strerror(rc));
        failures++;
    }
    for (int i = 0; c && i < n; i++) {
        unsigned char arg[5];
        put_u32(arg, (uint32_t)i);
        rc = taskq_submit(c, FUNCTION, arg, sizeof arg, NULL, &fs[i]);
        if (rc != 0) {
            fprintf(stderr, "install_check: submit %d: %s\n", i, taskq_strerror(rc));
            failures++;
            break;
        }
    }
    for (int i = 0; c && i < n && fs[i]; i++) {
        rc = taskq_future_wait(fs[i], WAIT_MS);
        size_t len = 0;
        const unsigned char *res = rc == 0 ? taskq_future_result(fs[i], &len) : NULL;
        int64_t got = res ? get_uint(res, len) : -1;
        if (rc != 0) {
            const char *why = taskq_future_error(fs[i]);
            fprintf(stderr, "install_check: task %d: %s%s%s\n", i, taskq_strerror(rc),
                    why ? ": " : "", why ? why : "");
            failures++;
        } else if (got != (int64_t)i * i) {
            fprintf(stderr, "install_check: task %d: result %lld, not %d\n", i,
                    (long long)got, i * i);
            failures++;
        }
        taskq_future_destroy(&fs[i]);
    }
    free(fs);
    taskq_client_destroy(&c);

    taskq_worker_stop(w);
    pthread_join(thread, NULL);
    taskq_worker_destroy(&w);
    if (failures) {
        fprintf(stderr, "install_check: %d of %d tasks went wrong\n", failures, n);
        return 1;
    }
    printf("ok %d tasks\n", n);
    return 0;
}
