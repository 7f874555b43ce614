/*
 * harness.h - process harness of the integration tests: starts the real
 * taskqd, test_worker and other binaries on loopback, waits on real readiness
 * (the broker's ready file, the broker's worker count), and stops every
 * process it started by PID, also when a test fails or is killed.
 */
#ifndef TASKQ_TEST_HARNESS_H
#define TASKQ_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "taskq.h"

/* A broker started by the harness. */
typedef struct th_broker {
    pid_t pid;          /* taskqd's pid, 0 once stopped */
    char dir[256];      /* private temporary directory */
    char endpoint[128]; /* bound endpoint read from the ready file */
} th_broker_t;

/*
 * Start taskqd on tcp://127.0.0.1:* (or on bind, if not NULL) with the
 * extra arguments in argv (NULL-terminated, may be NULL), and wait up to
 * 10 s for its ready file.  Returns 0, or -1 (the reason is printed).
 */
int th_broker_start(th_broker_t *b, const char *bind, const char *const *argv);

/* Send sig to the broker and reap it (bounded: SIGKILL after 5 s). Returns
 * the exit status as from waitpid, or -1. */
int th_broker_stop(th_broker_t *b, int sig);

/* Start a test_worker connected to endpoint with extra arguments (NULL-
 * terminated, may be NULL).  Returns its pid, or -1. */
pid_t th_worker_start(const char *endpoint, const char *const *argv);

/* Start the program at path with the arguments in argv (after argv[0],
 * NULL-terminated, may be NULL), its output going to a log that is printed
 * if the test fails, like the other children.  Returns its pid, or -1. */
pid_t th_spawn(const char *path, const char *const *argv);

/*
 * Run the program at path with argv (as th_spawn) to its end, waiting up to
 * timeout_ms (then SIGKILL), and copy what it wrote to stdout and stderr to
 * out (cap bytes with the NUL; cut if longer).  Returns the waitpid status,
 * or -1 if it could not be started or had to be killed.
 */
int th_run(const char *path, const char *const *argv, int timeout_ms, char *out, size_t cap);

/* Send sig to pid, wait for it up to 5 s (then SIGKILL), reap it. Returns
 * the waitpid status or -1. */
int th_stop(pid_t pid, int sig);

/* Stop (SIGTERM, then SIGKILL) every process the harness started and still
 * runs, quietly.  A test that fails instead leaves them to the exit handler,
 * which kills them and prints their logs. */
void th_stop_all(void);

/* Wait up to timeout_ms for pid to exit by itself (then SIGKILL), reap it.
 * Returns the waitpid status, or -1 if it had to be killed. */
int th_wait_exit(pid_t pid, int timeout_ms);

/* Wait until the broker reports exactly n connected workers (bounded by
 * timeout_ms).  Returns 0 or -1. */
int th_wait_workers(taskq_client_t *c, unsigned n, int32_t timeout_ms);

/* Read an unsigned counter from the broker's STATS map ("running", ...).
 * Returns 0 and fills *ret, or -1. */
int th_stat(taskq_client_t *c, const char *key, uint64_t *ret);

/* One TCase of a suite: a single test with its timeout and its checked
 * fixture (setup and teardown may be NULL). */
typedef struct th_case {
    const char *name;
    const TTest *test;
    int timeout_s;
    void (*setup)(void);
    void (*teardown)(void);
} th_case_t;

/* Build suite name from the n cases, run it (Check's default fork mode)
 * and return EXIT_SUCCESS if every test passed, else EXIT_FAILURE. */
int th_run_suite(const char *name, const th_case_t *cases, size_t n);

/* Monotonic milliseconds. */
int64_t th_now_ms(void);

/* msgpack helpers for arguments and results. */
size_t th_pack_int(int64_t v, uint8_t *buf, size_t cap);
int th_unpack_int(const void *buf, size_t len, int64_t *ret);
int th_unpack_uint(const void *buf, size_t len, uint64_t *ret);

#endif
