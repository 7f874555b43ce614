/*
 * check_integration.c - end-to-end tests: the real taskqd and test_worker
 * processes on ephemeral loopback ports, driven through libtaskq and, for
 * the garbage tests, through a raw ZeroMQ socket.
 */
#include <check.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "taskq.h"
#include "taskq_proto.h"

/* Tests use short heartbeats so that liveness expiry takes 600 ms. */
static const char *const fast_hb[] = {"--heartbeat-ms", "200", "--liveness", "3", NULL};

static th_broker_t broker;

static void broker_setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, fast_hb), 0);
}

static void broker_teardown(void)
{
    th_stop_all();
    rmdir(broker.dir);
}

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

static taskq_client_t *client(void)
{
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    return c;
}

static pid_t worker(const char *const *args)
{
    pid_t pid = th_worker_start(broker.endpoint, args);
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* ---- many tasks over several workers -------------------------------- */


START_TEST(test_ten_thousand_over_three_workers)
{
    const char *const args[] = {"--prefetch", "16", NULL};
    for (int i = 0; i < 3; i++)
        worker(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 3, 10000), 0);

    th_squares_t s = {0};
    taskq_map_opts_t mo = {.window = 1000};
    ck_assert_code(taskq_map(c, "square", 10000, th_sq_input, th_sq_output, &s, &mo), 0);
    ck_assert_uint_eq(s.wrong, 0);

    uint64_t done = 0;
    ck_assert_int_eq(th_stat(c, "done", &done), 0);
    ck_assert_uint_eq(done, 10000);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- a worker killed while it holds tasks ---------------------------- */

START_TEST(test_sigkill_worker_holding_tasks)
{
    const char *const args[] = {"--threads", "2", "--prefetch", "2", NULL};
    pid_t victim = worker(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);

    enum { N = 24 };
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "sleep", 100, NULL);
    ck_assert_code(taskq_client_flush(c), 0);

    /* Only the victim is connected: wait until it holds tasks, then add two
     * workers and kill it. */
    uint64_t running = 0;
    for (int i = 0; i < 500 && running == 0; i++)
        ck_assert_int_eq(th_stat(c, "running", &running), 0);
    ck_assert_uint_gt(running, 0);
    pid_t others[2] = {worker(args), worker(args)};
    ck_assert_int_eq(th_wait_workers(c, 3, 10000), 0);
    th_stop(victim, SIGKILL);

    int retried = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_code(taskq_future_wait(fs[i], 20000), 0);
        int64_t pid = th_result_int(fs[i]);
        if (taskq_future_attempts(fs[i]) > 1) {
            retried++;
            ck_assert_int_ne(pid, victim);
            ck_assert(pid == others[0] || pid == others[1]);
        }
        taskq_future_destroy(&fs[i]);
    }
    ck_assert_int_gt(retried, 0);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_stopped_worker_returns_unstarted_tasks)
{
    /* One handler thread and a deep prefetch: the worker holds tasks it
     * has not started.  Stopping it hands them back without using up an
     * attempt, so even single-attempt tasks all finish elsewhere. */
    const char *const deep[] = {"--threads", "1", "--prefetch", "16", NULL};
    pid_t first = worker(deep);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);
    enum { N = 12 };
    taskq_submit_opts_t once = {.max_attempts = 1};
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "sleep", 100, &once);
    ck_assert_code(taskq_client_flush(c), 0);
    uint64_t running = 0;
    for (int i = 0; i < 500 && running < N; i++)
        ck_assert_int_eq(th_stat(c, "running", &running), 0);
    ck_assert_uint_eq(running, N);
    pid_t second = worker(NULL);
    ck_assert_int_eq(th_wait_workers(c, 2, 10000), 0);
    int st = th_stop(first, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status %d", st);

    int on_second = 0;
    for (int i = 0; i < N; i++) {
        int rc = taskq_future_wait(fs[i], 20000);
        ck_assert_msg(rc == 0, "task %d: %s: %s", i, taskq_errname(rc), taskq_future_error(fs[i]));
        ck_assert_uint_eq(taskq_future_attempts(fs[i]), 1);
        on_second += th_result_int(fs[i]) == second;
        taskq_future_destroy(&fs[i]);
    }
    ck_assert_int_ge(on_second, N - 2);
    uint64_t retried = 1;
    ck_assert_int_eq(th_stat(c, "retried", &retried), 0);
    ck_assert_uint_eq(retried, 0);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- wait timeouts, handler errors, run limits ----------------------- */

START_TEST(test_wait_timeout_then_result)
{
    worker(NULL);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);

    taskq_future_t *f = th_submit_int(c, "sleep", 2000, NULL);
    int64_t t0 = th_now_ms();
    ck_assert_code(taskq_future_wait(f, 100), TASKQ_ETIMEDOUT);
    int64_t waited = th_now_ms() - t0;
    ck_assert_int_ge(waited, 95);
    ck_assert_int_lt(waited, 1000);
    ck_assert_int_eq(taskq_future_state(f), TASKQ_STATE_PENDING);

    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_gt(th_result_int(f), 0);
    ck_assert_uint_gt(taskq_future_job_id(f), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_handler_error_text)
{
    worker(NULL);
    taskq_client_t *c = client();
    taskq_future_t *f = th_submit_int(c, "fail", 42, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), TASKQ_EFAILED);
    ck_assert_int_eq(taskq_future_state(f), TASKQ_STATE_FAILED);
    ck_assert_str_eq(taskq_future_error(f), "failed on purpose (42)");
    ck_assert_uint_eq(taskq_future_attempts(f), 1);
    ck_assert_ptr_null(taskq_future_result(f, &(size_t){0}));
    /* Waiting again gives the same outcome at once. */
    ck_assert_code(taskq_future_wait(f, 0), TASKQ_EFAILED);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_retry_outcome)
{
    worker(NULL);
    taskq_client_t *c = client();
    taskq_submit_opts_t three = {.max_attempts = 3};
    taskq_future_t *ok = th_submit_int(c, "flaky", 3, &three);
    taskq_future_t *no = th_submit_int(c, "flaky", 5, &three);
    ck_assert_code(taskq_future_wait(ok, 10000), 0);
    ck_assert_int_eq(th_result_int(ok), 3);
    ck_assert_uint_eq(taskq_future_attempts(ok), 3);
    ck_assert_code(taskq_future_wait(no, 10000), TASKQ_EFAILED);
    ck_assert_str_eq(taskq_future_error(no), "transient failure on attempt 3");
    ck_assert_uint_eq(taskq_future_attempts(no), 3);
    uint64_t retried = 0;
    ck_assert_int_eq(th_stat(c, "retried", &retried), 0);
    ck_assert_uint_eq(retried, 4);
    taskq_future_destroy(&ok);
    taskq_future_destroy(&no);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_run_limit_retried_then_timed_out)
{
    worker(NULL);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);
    taskq_submit_opts_t o = {.timeout_ms = 200, .max_attempts = 2};
    taskq_future_t *f = th_submit_int(c, "sleep", 5000, &o);
    int64_t t0 = th_now_ms();
    ck_assert_code(taskq_future_wait(f, 10000), TASKQ_ERUNLIMIT);
    ck_assert_int_lt(th_now_ms() - t0, 4000);
    ck_assert_uint_eq(taskq_future_attempts(f), 2);
    uint64_t retried = 0;
    ck_assert_int_eq(th_stat(c, "retried", &retried), 0);
    ck_assert_uint_eq(retried, 1);
    taskq_future_destroy(&f);

    /* The abandoned attempts freed the worker: new work still runs. */
    f = th_submit_int(c, "square", 7, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_eq(th_result_int(f), 49);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- cancellation ---------------------------------------------------- */

START_TEST(test_cancel_queued_and_running)
{
    worker(NULL);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);

    /* Queued: no worker serves queue "nobody". */
    taskq_submit_opts_t nobody = {.queue = "nobody"};
    taskq_future_t *q = th_submit_int(c, "square", 3, &nobody);
    ck_assert_code(taskq_future_wait(q, 50), TASKQ_ETIMEDOUT);
    ck_assert_code(taskq_cancel(q), 0);
    ck_assert_code(taskq_future_wait(q, 5000), TASKQ_ECANCELED);
    taskq_future_destroy(&q);

    /* Running: a 10 s sleep, cancelled once the broker reports it running. */
    taskq_future_t *r = th_submit_int(c, "sleep", 10000, NULL);
    ck_assert_code(taskq_client_flush(c), 0);
    uint64_t running = 0;
    for (int i = 0; i < 500 && running == 0; i++)
        ck_assert_int_eq(th_stat(c, "running", &running), 0);
    ck_assert_uint_eq(running, 1);
    int64_t t0 = th_now_ms();
    ck_assert_code(taskq_cancel(r), 0);
    ck_assert_code(taskq_future_wait(r, 5000), TASKQ_ECANCELED);
    ck_assert_int_lt(th_now_ms() - t0, 2000);
    taskq_future_destroy(&r);

    /* The worker gave up the sleep: the next task runs at once. */
    taskq_future_t *f = th_submit_int(c, "square", 9, NULL);
    ck_assert_code(taskq_future_wait(f, 3000), 0);
    ck_assert_int_eq(th_result_int(f), 81);
    taskq_future_destroy(&f);
    uint64_t cancelled = 0;
    ck_assert_int_eq(th_stat(c, "cancelled", &cancelled), 0);
    ck_assert_uint_eq(cancelled, 2);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- broker restart while a client waits ----------------------------- */

START_TEST(test_broker_restart_client_resolves)
{
    worker(NULL);
    taskq_client_opts_t co = {.reconnect_limit_ms = 15000};
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, &co, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);

    enum { N = 4 };
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "sleep", 3000, NULL);
    ck_assert_code(taskq_future_wait(fs[0], 200), TASKQ_ETIMEDOUT);
    ck_assert_uint_gt(taskq_future_job_id(fs[N - 1]), 0);

    th_broker_stop(&broker, SIGKILL);
    ck_assert_int_eq(th_broker_start(&broker, broker.endpoint, fast_hb), 0);

    /* The new broker started without the old one's tasks: every future
     * resolves (as unknown), none hangs. */
    int64_t t0 = th_now_ms();
    for (int i = 0; i < N; i++) {
        ck_assert_code(taskq_future_wait(fs[i], 15000), TASKQ_ENOJOB);
        taskq_future_destroy(&fs[i]);
    }
    ck_assert_int_lt(th_now_ms() - t0, 15000);

    /* The client and the worker both reconnected: new work runs. */
    taskq_future_t *f = th_submit_int(c, "square", 12, NULL);
    ck_assert_code(taskq_future_wait(f, 15000), 0);
    ck_assert_int_eq(th_result_int(f), 144);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- limits ---------------------------------------------------------- */

START_TEST(test_queue_full_refused)
{
    th_broker_stop(&broker, SIGTERM);
    const char *const args[] = {"--max-queued", "10", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);
    taskq_client_t *c = client();
    taskq_submit_opts_t nobody = {.queue = "nobody"};
    taskq_future_t *fs[11];
    for (int i = 0; i < 10; i++)
        fs[i] = th_submit_int(c, "square", i, &nobody);
    ck_assert_code(taskq_client_flush(c), 0);
    ck_assert_code(taskq_future_wait(fs[0], 50), TASKQ_ETIMEDOUT);
    fs[10] = th_submit_int(c, "square", 10, &nobody);
    ck_assert_code(taskq_future_wait(fs[10], 5000), TASKQ_EQUEUEFULL);
    ck_assert_int_eq(taskq_future_state(fs[10]), TASKQ_STATE_REFUSED);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(taskq_future_state(fs[i]), TASKQ_STATE_PENDING);
        ck_assert_uint_gt(taskq_future_job_id(fs[i]), 0);
    }
    for (int i = 0; i < 11; i++)
        taskq_future_destroy(&fs[i]);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_seeds_distinct_and_stats)
{
    worker(NULL);
    taskq_client_t *c = client();
    enum { N = 50 };
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "seed", 0, NULL);
    uint64_t seeds[N];
    for (int i = 0; i < N; i++) {
        ck_assert_code(taskq_future_wait(fs[i], 10000), 0);
        size_t len;
        const void *r = taskq_future_result(fs[i], &len);
        ck_assert_int_eq(th_unpack_uint(r, len, &seeds[i]), 0);
        for (int j = 0; j < i; j++)
            ck_assert_msg(seeds[i] != seeds[j], "tasks %d and %d share a seed", i, j);
        taskq_future_destroy(&fs[i]);
    }
    uint64_t v;
    ck_assert_int_eq(th_stat(c, "done", &v), 0);
    ck_assert_uint_eq(v, N);
    ck_assert_int_eq(th_stat(c, "workers", &v), 0);
    ck_assert_uint_eq(v, 1);
    ck_assert_int_eq(th_stat(c, "uptime_ms", &v), 0);
    uint32_t rtt;
    const char *version;
    ck_assert_code(taskq_client_ping(c, 5000, &rtt, &version), 0);
    ck_assert_str_eq(version, TASKQ_VERSION_STRING);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_sigterm_stops_broker_and_workers)
{
    pid_t w = worker(NULL);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);
    taskq_client_destroy(&c);
    int64_t t0 = th_now_ms();
    int st = th_broker_stop(&broker, SIGTERM);
    ck_assert_int_lt(th_now_ms() - t0, 1000);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The broker's BYE makes the worker return from taskq_worker_run. */
    int wst = th_wait_exit(w, 3000);
    ck_assert_msg(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "worker status %d", wst);
}
END_TEST

/* ---- garbage from a raw ZeroMQ socket -------------------------------- */

struct raw {
    void *ctx, *sock;
};

static void raw_open(struct raw *r)
{
    r->ctx = zmq_ctx_new();
    r->sock = zmq_socket(r->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_connect(r->sock, broker.endpoint), 0);
}

static void raw_close(struct raw *r)
{
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

/* Send bytes, expect an ERROR with code want within 5 s. */
static void expect_error(struct raw *r, const void *bytes, size_t len, int want)
{
    ck_assert_int_eq(zmq_send(r->sock, bytes, len, 0), (int)len);
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, r->sock, 0), 0);
    taskq_limits_t lim;
    taskq_limits_default(&lim);
    taskq_msg_t msg;
    ck_assert_int_eq(taskq_msg_decode(zmq_msg_data(&m), zmq_msg_size(&m), &lim, &msg, NULL), 0);
    ck_assert_int_eq(msg.type, TASKQ_MSG_ERROR);
    ck_assert_msg((int)msg.u.error.code == want, "ERROR %s, want %s",
                  taskq_perr_name((int)msg.u.error.code), taskq_perr_name(want));
    zmq_msg_close(&m);
}

/* Pack a message with msgpack-c: fmt characters u (uint), s (str), a (array
 * header with n), i (int) consume varargs. */
static size_t pack(uint8_t *out, size_t cap, const char *fmt, ...)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (*p == 'u') {
            msgpack_pack_uint64(&pk, va_arg(ap, uint64_t));
        } else if (*p == 'i') {
            msgpack_pack_int64(&pk, va_arg(ap, int64_t));
        } else if (*p == 'a') {
            msgpack_pack_array(&pk, va_arg(ap, unsigned));
        } else if (*p == 's') {
            const char *s = va_arg(ap, const char *);
            msgpack_pack_str(&pk, strlen(s));
            msgpack_pack_str_body(&pk, s, strlen(s));
        }
    }
    va_end(ap);
    size_t n = sb.size <= cap ? sb.size : 0;
    memcpy(out, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

START_TEST(test_garbage_then_normal_client)
{
    th_broker_stop(&broker, SIGTERM);
    const char *const args[] = {"--max-frame", "1048576", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);

    struct raw r, noise;
    raw_open(&r);
    raw_open(&noise);
    uint8_t b[512];
    size_t n;

    /* Random bytes from one socket, with a fixed seed (its replies are not
     * read); then specific shapes from another, each with its reply. */
    srand(7);
    for (int k = 0; k < 500; k++) {
        size_t len = 1 + (size_t)(rand() % 64);
        for (size_t i = 0; i < len; i++)
            b[i] = (uint8_t)rand();
        ck_assert_int_eq(zmq_send(noise.sock, b, len, 0), (int)len);
    }
    expect_error(&r, "\xc1", 1, TASKQ_PERR_MALFORMED);
    expect_error(&r, "\x93\x01", 2, TASKQ_PERR_TRUNCATED);
    n = pack(b, sizeof b, "aus", 2u, (uint64_t)1, "x");
    expect_error(&r, b, n, TASKQ_PERR_UNKNOWN_TYPE);
    n = pack(b, sizeof b, "auu", 2u, (uint64_t)2, (uint64_t)3);
    expect_error(&r, b, n, TASKQ_PERR_VERSION);
    n = pack(b, sizeof b, "auu", 2u, (uint64_t)1, (uint64_t)99);
    expect_error(&r, b, n, TASKQ_PERR_UNKNOWN_TYPE);
    n = pack(b, sizeof b, "auus", 3u, (uint64_t)1, (uint64_t)TASKQ_MSG_SUBMIT, "x");
    expect_error(&r, b, n, TASKQ_PERR_MALFORMED);
    n = pack(b, sizeof b, "auu", 2u, (uint64_t)1, (uint64_t)TASKQ_MSG_HEARTBEAT);
    expect_error(&r, b, n, TASKQ_PERR_HELLO_REQUIRED);

    /* A frame over the limit is refused without being decoded. */
    size_t big = 1536 * 1024;
    uint8_t *huge = calloc(1, big);
    ck_assert_ptr_nonnull(huge);
    huge[0] = 0x92;
    expect_error(&r, huge, big, TASKQ_PERR_TOO_BIG);
    free(huge);

    /* A worker that lies about its credit. */
    n = pack(b, sizeof b, "auuuussuuaas", 10u, (uint64_t)1, (uint64_t)TASKQ_MSG_HELLO,
             (uint64_t)TASKQ_ROLE_WORKER, (uint64_t)0, "liar", "host", (uint64_t)1,
             (uint64_t)1000000, 0u, 1u, "square");
    /* Above: no queues and a credit over 10,000. */
    expect_error(&r, b, n, TASKQ_PERR_BAD_FIELD);
    n = pack(b, sizeof b, "auuuussuuasas", 10u, (uint64_t)1, (uint64_t)TASKQ_MSG_HELLO,
             (uint64_t)TASKQ_ROLE_WORKER, (uint64_t)0, "liar", "host", (uint64_t)1,
             (uint64_t)1000000, 1u, "default", 1u, "square");
    expect_error(&r, b, n, TASKQ_PERR_BAD_FIELD);
    /* An honest HELLO, then outcomes for attempts it never got. */
    n = pack(b, sizeof b, "auuuussuuasas", 10u, (uint64_t)1, (uint64_t)TASKQ_MSG_HELLO,
             (uint64_t)TASKQ_ROLE_WORKER, (uint64_t)0, "liar", "host", (uint64_t)1,
             (uint64_t)1, 1u, "default", 1u, "nothing-real");
    ck_assert_int_eq(zmq_send(r.sock, b, n, 0), (int)n);
    n = pack(b, sizeof b, "auuaauuus", 3u, (uint64_t)1, (uint64_t)TASKQ_MSG_DONE, 1u, 4u,
             (uint64_t)12345, (uint64_t)1, (uint64_t)1, "made up");
    ck_assert_int_eq(zmq_send(r.sock, b, n, 0), (int)n);

    /* The broker still serves a normal client and worker. */
    worker(NULL);
    taskq_client_t *c = client();
    ck_assert_code(taskq_client_ping(c, 5000, NULL, NULL), 0);
    taskq_future_t *f = th_submit_int(c, "square", 11, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_eq(th_result_int(f), 121);
    taskq_future_destroy(&f);
    uint64_t malformed = 0;
    ck_assert_int_eq(th_stat(c, "malformed", &malformed), 0);
    ck_assert_uint_ge(malformed, 10);
    raw_close(&r);
    raw_close(&noise);
    taskq_client_destroy(&c);
    ck_assert_int_gt(broker.pid, 0);
    ck_assert_int_eq(kill(broker.pid, 0), 0);
}
END_TEST


/* Receive one message within 5 s into buf (cap bytes) and decode it. */
static void raw_recv(struct raw *r, uint8_t *buf, size_t cap, taskq_msg_t *msg)
{
    zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
    int n = zmq_recv(r->sock, buf, cap, 0);
    ck_assert_int_gt(n, 0);
    ck_assert_int_le(n, (int)cap);
    taskq_limits_t lim;
    taskq_limits_default(&lim);
    ck_assert_int_eq(taskq_msg_decode(buf, (size_t)n, &lim, msg, NULL), 0);
}

/* HELLO as client 777 on r; WELCOME's store_id. */
static uint64_t raw_hello_client(struct raw *r)
{
    uint8_t b[256];
    size_t n = pack(b, sizeof b, "auuuussuuaa", 10u, (uint64_t)1, (uint64_t)TASKQ_MSG_HELLO,
                    (uint64_t)TASKQ_ROLE_CLIENT, (uint64_t)777, "raw", "host", (uint64_t)1,
                    (uint64_t)0, 0u, 0u);
    ck_assert_int_eq(zmq_send(r->sock, b, n, 0), (int)n);
    taskq_msg_t m;
    raw_recv(r, b, sizeof b, &m);
    ck_assert_int_eq(m.type, TASKQ_MSG_WELCOME);
    return m.u.welcome.store_id;
}

/* SUBMIT req_id of count "square" tasks; the first job id ACCEPTED (or 0
 * and the ERROR code in *err). */
static uint64_t raw_submit(struct raw *r, uint64_t req_id, unsigned count, uint32_t *err)
{
    uint8_t b[512];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, TASKQ_MSG_SUBMIT);
    msgpack_pack_uint64(&pk, req_id);
    msgpack_pack_array(&pk, count);
    for (unsigned i = 0; i < count; i++) {
        msgpack_pack_array(&pk, 6);
        msgpack_pack_str_with_body(&pk, "square", 6);
        msgpack_pack_str_with_body(&pk, "default", 7);
        msgpack_pack_int64(&pk, 0);
        msgpack_pack_uint64(&pk, 0);
        msgpack_pack_uint64(&pk, 3);
        msgpack_pack_int64(&pk, (int64_t)i);
    }
    ck_assert_int_eq(zmq_send(r->sock, sb.data, sb.size, 0), (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
    taskq_msg_t m;
    raw_recv(r, b, sizeof b, &m);
    if (m.type == TASKQ_MSG_ERROR) {
        ck_assert_uint_eq(m.u.error.ref, req_id);
        *err = m.u.error.code;
        return 0;
    }
    ck_assert_int_eq(m.type, TASKQ_MSG_ACCEPTED);
    ck_assert_uint_eq(m.u.accepted.req_id, req_id);
    ck_assert_uint_eq(m.u.accepted.count, count);
    return m.u.accepted.first_job;
}

/* A SUBMIT sent again (its ACCEPTED lost), also to a broker restarted on
 * its database, is answered with the first one's ids and adds no task. */
START_TEST(test_submit_resend_deduplicated)
{
    static char db[300];
    static const char *args[] = {"--db", db, NULL};
    th_broker_stop(&broker, SIGTERM);
    snprintf(db, sizeof db, "%s/taskq.db", broker.dir);
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);

    struct raw r;
    raw_open(&r);
    uint64_t store = raw_hello_client(&r);
    uint32_t err = 0;
    uint64_t first = raw_submit(&r, 5, 2, &err);
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_eq(raw_submit(&r, 5, 2, &err), first);
    ck_assert_uint_eq(raw_submit(&r, 6, 1, &err), first + 2);

    ck_assert_int_eq(th_broker_stop(&broker, SIGKILL) != -1, 1);
    ck_assert_int_eq(th_broker_restart(&broker), 0);
    raw_close(&r);
    raw_open(&r);
    ck_assert_uint_eq(raw_hello_client(&r), store);
    ck_assert_uint_eq(raw_submit(&r, 5, 2, &err), first);
    ck_assert_uint_eq(raw_submit(&r, 6, 1, &err), first + 2);
    ck_assert_uint_eq(raw_submit(&r, 5, 3, &err), 0);
    ck_assert_uint_eq(err, TASKQ_PERR_BAD_FIELD);
    ck_assert_uint_eq(raw_submit(&r, 7, 1, &err), first + 3);

    taskq_client_t *c = client();
    uint64_t v = 0;
    ck_assert_int_eq(th_stat(c, "queued", &v), 0);
    ck_assert_uint_eq(v, 4);
    ck_assert_int_eq(th_stat(c, "duplicates", &v), 0);
    ck_assert_uint_eq(v, 2);
    taskq_client_destroy(&c);
    raw_close(&r);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"map", test_ten_thousand_over_three_workers, 120, broker_setup, broker_teardown},
        {"worker_death", test_sigkill_worker_holding_tasks, 60, broker_setup, broker_teardown},
        {"worker_stop", test_stopped_worker_returns_unstarted_tasks, 60, broker_setup, broker_teardown},
        {"wait_timeout", test_wait_timeout_then_result, 30, broker_setup, broker_teardown},
        {"handler_error", test_handler_error_text, 30, broker_setup, broker_teardown},
        {"retry", test_retry_outcome, 30, broker_setup, broker_teardown},
        {"run_limit", test_run_limit_retried_then_timed_out, 30, broker_setup, broker_teardown},
        {"cancel", test_cancel_queued_and_running, 30, broker_setup, broker_teardown},
        {"broker_restart", test_broker_restart_client_resolves, 60, broker_setup, broker_teardown},
        {"queue_full", test_queue_full_refused, 30, broker_setup, broker_teardown},
        {"seeds_stats", test_seeds_distinct_and_stats, 30, broker_setup, broker_teardown},
        {"sigterm", test_sigterm_stops_broker_and_workers, 30, broker_setup, broker_teardown},
        {"garbage", test_garbage_then_normal_client, 60, broker_setup, broker_teardown},
        {"dedupe", test_submit_resend_deduplicated, 60, broker_setup, broker_teardown},
    };
    return th_run_suite("integration", cases, sizeof cases / sizeof cases[0]);
}
