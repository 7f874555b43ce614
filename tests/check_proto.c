/*
 * check_proto.c - tests of the wire codec (proto/): round trips of every
 * message type, truncation, wrong field types, limits and ranges, malformed
 * frames, the vectors in tests/vectors/ and the examples of PROTOCOL.md
 * section 7, and a bounded loop over random and mutated input.
 *
 * `check_proto --vector HEX` prints the result block of a new vector.
 */
#include "taskq_proto.h"

#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PERR(name) (-TASKQ_PERR_##name)
#define NTYPES (TASKQ_MSG_MAX + 1)
#define VECTORS_FILE TASKQ_VECTORS_DIR "/proto_v1.txt"
#define PROTOCOL_FILE TASKQ_VECTORS_DIR "/../../proto/PROTOCOL.md"

static const char *const type_names[NTYPES] = {
    "0",     "HELLO",  "WELCOME", "HEARTBEAT",   "BYE",   "ERROR", "SUBMIT",  "ACCEPTED", "RESULT",
    "CANCEL", "WATCH", "STATS",   "STATS_REPLY", "TASKS", "DONE",  "ABANDON", "ACK",
    "FAILED", "FAILED_REPLY", "RETRY",
};

static const char *code_name(int rc)
{
    return rc == 0 ? "OK" : taskq_perr_name(rc);
}

static void expect_code_at(const char *where, int got, int want)
{
    ck_assert_msg(got == want, "%s: got %s (%d), want %s", where, code_name(got), got,
                  code_name(want));
}

#define expect_code(got, want) expect_code_at(#got, (got), (want))

/* Limits that the samples below just fit, so one oversized field shows. */
static taskq_limits_t small_limits(void)
{
    return (taskq_limits_t){.max_frame = 4096, .max_name = 16, .max_text = 24,
                            .max_batch = 3, .max_list = 3, .max_depth = 4};
}

static taskq_limits_t default_limits(void)
{
    taskq_limits_t lim;
    taskq_limits_default(&lim);
    return lim;
}

/* Hex digits, optionally separated by white space, to bytes. */
static void unhex(const char *s, taskq_buf_t *out)
{
    unsigned v;
    int n;
    while (*s) {
        if (*s == ' ' || *s == '\t') {
            s++;
            continue;
        }
        ck_assert_msg(sscanf(s, "%2x%n", &v, &n) == 1 && n == 2, "bad hex at \"%s\"", s);
        uint8_t byte = (uint8_t)v;
        ck_assert_int_eq(taskq_buf_append(out, &byte, 1), 0);
        s += 2;
    }
}

static bool span_same(taskq_span_t a, taskq_span_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

#define expect_span(got, want) ck_assert_msg(span_same((got), (want)), "%s differs", #got)

/* ---- Reading a decoded message back ----------------------------------- */

/* Every payload is one object; non-DONE payloads are str. */
static void check_payload(taskq_span_t p, bool text)
{
    taskq_span_t s;
    expect_code(taskq_object_check(p.ptr, p.len, UINT32_MAX), 0);
    if (text)
        expect_code(taskq_span_str(p, &s), 0);
}

/* The end of a list read with one of the iterators: nothing was left out,
 * and an exhausted iterator stays exhausted. */
static void check_drained(int rc, uint32_t unread, taskq_iter_t it)
{
    uint64_t u;
    expect_code(rc, 0);
    ck_assert_uint_eq(unread, 0);
    expect_code(taskq_iter_u64(&it, &u), 0);
}

/* Read every item of every list of m, as a consumer would. */
static void read_all(const taskq_msg_t *m)
{
    taskq_iter_t it;
    uint32_t n = 0;
    int rc = 0;
    union {
        taskq_span_t s;
        uint64_t u;
        taskq_submit_item_t submit;
        taskq_result_item_t result;
        taskq_task_item_t task;
        taskq_done_item_t done;
        taskq_abandon_item_t abandon;
        taskq_failed_item_t failed;
    } x;

    switch (m->type) {
    case TASKQ_MSG_HELLO:
        it = m->u.hello.queues;
        for (n = it.left; (rc = taskq_iter_str(&it, &x.s)) == 1; n--)
            ck_assert_uint_gt(x.s.len, 0);
        check_drained(rc, n, it);
        it = m->u.hello.functions;
        for (n = it.left; (rc = taskq_iter_str(&it, &x.s)) == 1; n--)
            ck_assert_uint_gt(x.s.len, 0);
        break;
    case TASKQ_MSG_SUBMIT:
        it = m->u.submit.tasks;
        for (n = it.left; (rc = taskq_iter_submit(&it, &x.submit)) == 1; n--)
            check_payload(x.submit.arg, false);
        break;
    case TASKQ_MSG_RESULT:
        it = m->u.results;
        for (n = it.left; (rc = taskq_iter_result(&it, &x.result)) == 1; n--)
            check_payload(x.result.payload, x.result.status != TASKQ_STATUS_DONE);
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        it = m->u.jobs;
        for (n = it.left; (rc = taskq_iter_u64(&it, &x.u)) == 1; n--)
            ;
        break;
    case TASKQ_MSG_TASKS:
        it = m->u.tasks;
        for (n = it.left; (rc = taskq_iter_task(&it, &x.task)) == 1; n--)
            check_payload(x.task.arg, false);
        break;
    case TASKQ_MSG_DONE:
        it = m->u.done;
        for (n = it.left; (rc = taskq_iter_done(&it, &x.done)) == 1; n--)
            check_payload(x.done.payload, x.done.status == TASKQ_DONE_ERROR ||
                                              x.done.status == TASKQ_DONE_RETRY);
        break;
    case TASKQ_MSG_ABANDON:
        it = m->u.abandon;
        for (n = it.left; (rc = taskq_iter_abandon(&it, &x.abandon)) == 1; n--)
            ;
        break;
    case TASKQ_MSG_FAILED_REPLY:
        it = m->u.failed_reply.jobs;
        for (n = it.left; (rc = taskq_iter_failed(&it, &x.failed)) == 1; n--) {
            taskq_iter_t h = x.failed.history;
            taskq_history_item_t e;
            uint32_t left = h.left;
            int hrc;
            check_payload(x.failed.payload, true);
            while ((hrc = taskq_iter_history(&h, &e)) == 1)
                left--;
            check_drained(hrc, left, h);
        }
        break;
    case TASKQ_MSG_STATS_REPLY:
        check_payload(m->u.stats_reply.map, false);
        return;
    default: /* no lists */
        return;
    }
    check_drained(rc, n, it);
}

/*
 * Decode a private copy of exactly len bytes, so that AddressSanitizer sees
 * any read past the end.  On success every item is read back.
 */
static int decode_copy(const void *bytes, size_t len, const taskq_limits_t *lim,
                       uint8_t *ret_type)
{
    uint8_t *copy = malloc(len ? len : 1);
    taskq_msg_t m;
    ck_assert_ptr_nonnull(copy);
    if (len)
        memcpy(copy, bytes, len);
    int rc = taskq_msg_decode(copy, len, lim, &m, ret_type);
    ck_assert_int_le(rc, 0);
    ck_assert_int_ge(rc, PERR(TOO_DEEP));
    if (rc == 0)
        read_all(&m);
    free(copy);
    return rc;
}

/* Decode hex; type -1: *ret_type must be left alone. */
static void expect_hex(const char *hex, const taskq_limits_t *lim, int want, int want_type)
{
    taskq_buf_t b = {0};
    uint8_t type = 0xee;
    unhex(hex, &b);
    int rc = decode_copy(b.data, b.len, lim, &type);
    expect_code_at(hex, rc, want);
    ck_assert_msg(type == (want_type < 0 ? 0xee : want_type), "%s: type %d, want %d", hex,
                  type, want_type);
    taskq_buf_fini(&b);
}

/* ---- Printing a decoded message (the vectors' format) ----------------- */

static void put_text(FILE *f, const char *key, taskq_span_t s)
{
    fprintf(f, "%s=\"", key);
    for (size_t k = 0; k < s.len; k++) {
        uint8_t c = s.ptr[k];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputs("\"\n", f);
}

static void put_hex(FILE *f, const char *key, taskq_span_t s)
{
    fprintf(f, "%s=hex:", key);
    for (size_t k = 0; k < s.len; k++)
        fprintf(f, "%02x", s.ptr[k]);
    fputc('\n', f);
}

/* Job k of a FAILED_REPLY, and its history. */
static void dump_failed(FILE *f, uint32_t k, const taskq_failed_item_t *j)
{
    char key[96];
    taskq_history_item_t e;
    taskq_iter_t it = j->history;
    fprintf(f, "jobs[%" PRIu32 "].job_id=%" PRIu64 "\n", k, j->job_id);
    fprintf(f, "jobs[%" PRIu32 "].status=%u\n", k, j->status);
    snprintf(key, sizeof key, "jobs[%" PRIu32 "].function", k);
    put_text(f, key, j->function);
    snprintf(key, sizeof key, "jobs[%" PRIu32 "].queue", k);
    put_text(f, key, j->queue);
    fprintf(f, "jobs[%" PRIu32 "].attempts=%" PRIu32 "\n", k, j->attempts);
    fprintf(f, "jobs[%" PRIu32 "].finished_ms=%" PRIu64 "\n", k, j->finished_ms);
    snprintf(key, sizeof key, "jobs[%" PRIu32 "].payload", k);
    put_hex(f, key, j->payload);
    for (uint32_t i = 0; taskq_iter_history(&it, &e) == 1; i++) {
        fprintf(f, "jobs[%" PRIu32 "].history[%" PRIu32 "].attempt=%" PRIu32 "\n", k, i,
                e.attempt);
        snprintf(key, sizeof key, "jobs[%" PRIu32 "].history[%" PRIu32 "].worker", k, i);
        put_text(f, key, e.worker);
        snprintf(key, sizeof key, "jobs[%" PRIu32 "].history[%" PRIu32 "].host", k, i);
        put_text(f, key, e.host);
        fprintf(f, "jobs[%" PRIu32 "].history[%" PRIu32 "].pid=%" PRIu32 "\n", k, i, e.pid);
        fprintf(f, "jobs[%" PRIu32 "].history[%" PRIu32 "].started_ms=%" PRIu64 "\n", k, i,
                e.started_ms);
        fprintf(f, "jobs[%" PRIu32 "].history[%" PRIu32 "].ended_ms=%" PRIu64 "\n", k, i,
                e.ended_ms);
        snprintf(key, sizeof key, "jobs[%" PRIu32 "].history[%" PRIu32 "].cause", k, i);
        put_text(f, key, e.cause);
    }
}

static void dump_msg(FILE *f, const taskq_msg_t *m)
{
    taskq_iter_t it;
    char key[64];
    uint32_t k;
    union {
        taskq_span_t s;
        uint64_t u;
        taskq_submit_item_t t;
        taskq_result_item_t r;
        taskq_task_item_t a;
        taskq_done_item_t d;
        taskq_abandon_item_t b;
        taskq_failed_item_t j;
    } x;

    switch (m->type) {
    case TASKQ_MSG_HELLO:
        fprintf(f, "role=%u\nclient_id=%" PRIu64 "\n", m->u.hello.role, m->u.hello.client_id);
        put_text(f, "name", m->u.hello.name);
        put_text(f, "host", m->u.hello.host);
        fprintf(f, "pid=%" PRIu32 "\ncredit=%" PRIu32 "\n", m->u.hello.pid, m->u.hello.credit);
        it = m->u.hello.queues;
        for (k = 0; taskq_iter_str(&it, &x.s) == 1; k++) {
            snprintf(key, sizeof key, "queues[%" PRIu32 "]", k);
            put_text(f, key, x.s);
        }
        it = m->u.hello.functions;
        for (k = 0; taskq_iter_str(&it, &x.s) == 1; k++) {
            snprintf(key, sizeof key, "functions[%" PRIu32 "]", k);
            put_text(f, key, x.s);
        }
        break;
    case TASKQ_MSG_WELCOME:
        put_text(f, "version", m->u.welcome.version);
        fprintf(f, "store_id=%" PRIu64 "\nheartbeat_ms=%" PRIu32 "\nliveness=%" PRIu32
                   "\nmax_frame=%" PRIu32 "\n",
                m->u.welcome.store_id, m->u.welcome.heartbeat_ms, m->u.welcome.liveness,
                m->u.welcome.max_frame);
        break;
    case TASKQ_MSG_BYE:
        put_text(f, "reason", m->u.bye);
        break;
    case TASKQ_MSG_ERROR:
        fprintf(f, "code=%" PRIu32 "\nref=%" PRIu64 "\n", m->u.error.code, m->u.error.ref);
        put_text(f, "text", m->u.error.text);
        break;
    case TASKQ_MSG_SUBMIT:
        fprintf(f, "req_id=%" PRIu64 "\n", m->u.submit.req_id);
        it = m->u.submit.tasks;
        for (k = 0; taskq_iter_submit(&it, &x.t) == 1; k++) {
            snprintf(key, sizeof key, "tasks[%" PRIu32 "].function", k);
            put_text(f, key, x.t.function);
            snprintf(key, sizeof key, "tasks[%" PRIu32 "].queue", k);
            put_text(f, key, x.t.queue);
            fprintf(f, "tasks[%" PRIu32 "].priority=%" PRId32 "\n", k, x.t.priority);
            fprintf(f, "tasks[%" PRIu32 "].timeout_ms=%" PRIu32 "\n", k, x.t.timeout_ms);
            fprintf(f, "tasks[%" PRIu32 "].max_attempts=%" PRIu32 "\n", k, x.t.max_attempts);
            snprintf(key, sizeof key, "tasks[%" PRIu32 "].arg", k);
            put_hex(f, key, x.t.arg);
        }
        break;
    case TASKQ_MSG_ACCEPTED:
        fprintf(f, "req_id=%" PRIu64 "\nfirst_job=%" PRIu64 "\ncount=%" PRIu32 "\n",
                m->u.accepted.req_id, m->u.accepted.first_job, m->u.accepted.count);
        break;
    case TASKQ_MSG_RESULT:
        it = m->u.results;
        for (k = 0; taskq_iter_result(&it, &x.r) == 1; k++) {
            fprintf(f, "results[%" PRIu32 "].job_id=%" PRIu64 "\n", k, x.r.job_id);
            fprintf(f, "results[%" PRIu32 "].status=%u\n", k, x.r.status);
            fprintf(f, "results[%" PRIu32 "].attempts=%" PRIu32 "\n", k, x.r.attempts);
            snprintf(key, sizeof key, "results[%" PRIu32 "].payload", k);
            put_hex(f, key, x.r.payload);
        }
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        it = m->u.jobs;
        for (k = 0; taskq_iter_u64(&it, &x.u) == 1; k++)
            fprintf(f, "jobs[%" PRIu32 "]=%" PRIu64 "\n", k, x.u);
        break;
    case TASKQ_MSG_STATS:
        fprintf(f, "req_id=%" PRIu64 "\n", m->u.stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        fprintf(f, "req_id=%" PRIu64 "\n", m->u.stats_reply.req_id);
        put_hex(f, "map", m->u.stats_reply.map);
        break;
    case TASKQ_MSG_TASKS:
        it = m->u.tasks;
        for (k = 0; taskq_iter_task(&it, &x.a) == 1; k++) {
            fprintf(f, "tasks[%" PRIu32 "].job_id=%" PRIu64 "\n", k, x.a.job_id);
            fprintf(f, "tasks[%" PRIu32 "].attempt=%" PRIu32 "\n", k, x.a.attempt);
            snprintf(key, sizeof key, "tasks[%" PRIu32 "].function", k);
            put_text(f, key, x.a.function);
            fprintf(f, "tasks[%" PRIu32 "].seed=%" PRIu64 "\n", k, x.a.seed);
            fprintf(f, "tasks[%" PRIu32 "].timeout_ms=%" PRIu32 "\n", k, x.a.timeout_ms);
            snprintf(key, sizeof key, "tasks[%" PRIu32 "].arg", k);
            put_hex(f, key, x.a.arg);
        }
        break;
    case TASKQ_MSG_DONE:
        it = m->u.done;
        for (k = 0; taskq_iter_done(&it, &x.d) == 1; k++) {
            fprintf(f, "results[%" PRIu32 "].job_id=%" PRIu64 "\n", k, x.d.job_id);
            fprintf(f, "results[%" PRIu32 "].attempt=%" PRIu32 "\n", k, x.d.attempt);
            fprintf(f, "results[%" PRIu32 "].status=%u\n", k, x.d.status);
            snprintf(key, sizeof key, "results[%" PRIu32 "].payload", k);
            put_hex(f, key, x.d.payload);
        }
        break;
    case TASKQ_MSG_ABANDON:
        it = m->u.abandon;
        for (k = 0; taskq_iter_abandon(&it, &x.b) == 1; k++) {
            fprintf(f, "attempts[%" PRIu32 "].job_id=%" PRIu64 "\n", k, x.b.job_id);
            fprintf(f, "attempts[%" PRIu32 "].attempt=%" PRIu32 "\n", k, x.b.attempt);
        }
        break;
    case TASKQ_MSG_FAILED:
        fprintf(f, "req_id=%" PRIu64 "\nafter=%" PRIu64 "\nlimit=%" PRIu32 "\n",
                m->u.failed.req_id, m->u.failed.after, m->u.failed.limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        fprintf(f, "req_id=%" PRIu64 "\n", m->u.failed_reply.req_id);
        it = m->u.failed_reply.jobs;
        for (k = 0; taskq_iter_failed(&it, &x.j) == 1; k++)
            dump_failed(f, k, &x.j);
        break;
    case TASKQ_MSG_RETRY:
        fprintf(f, "req_id=%" PRIu64 "\njob_id=%" PRIu64 "\n", m->u.retry.req_id,
                m->u.retry.job_id);
        break;
    default: /* HEARTBEAT has no fields */
        break;
    }
}

/*
 * The result block of a vector: "ok TYPE" and the decoded fields, or
 * "error CODE" followed by the type the decoder reported, if any.  The
 * caller frees the string.
 */
static char *describe(const uint8_t *bytes, size_t len, const taskq_limits_t *lim)
{
    char *text = NULL;
    size_t size = 0;
    taskq_msg_t m;
    uint8_t type = 0xee;
    FILE *f = open_memstream(&text, &size);
    ck_assert_ptr_nonnull(f);
    int rc = taskq_msg_decode(bytes, len, lim, &m, &type);
    if (rc == 0) {
        fprintf(f, "ok %s\n", type_names[m.type]);
        dump_msg(f, &m);
    } else if (rc == PERR(TRUNCATED)) {
        ck_assert_uint_eq(type, 0xee);
        fprintf(f, "error %s\n", code_name(rc));
    } else {
        ck_assert_uint_lt(type, NTYPES);
        fprintf(f, type ? "error %s %s\n" : "error %s\n", code_name(rc), type_names[type]);
    }
    fclose(f);
    return text;
}

/* ---- Encoding a decoded message again --------------------------------- */

static void reencode(const taskq_msg_t *m, taskq_buf_t *b)
{
    taskq_iter_t it;
    int rc = 0;
    union {
        taskq_submit_item_t t;
        taskq_result_item_t r;
        taskq_task_item_t a;
        taskq_done_item_t d;
        taskq_abandon_item_t b;
        taskq_failed_item_t j;
    } x;

    switch (m->type) {
    case TASKQ_MSG_HELLO: {
        taskq_iter_t q = m->u.hello.queues, fn = m->u.hello.functions;
        taskq_span_t *names = calloc((size_t)q.left + fn.left + 1, sizeof *names);
        uint32_t nq = q.left, nf = fn.left;
        ck_assert_ptr_nonnull(names);
        for (uint32_t k = 0; k < nq; k++)
            ck_assert_int_eq(taskq_iter_str(&q, &names[k]), 1);
        for (uint32_t k = 0; k < nf; k++)
            ck_assert_int_eq(taskq_iter_str(&fn, &names[nq + k]), 1);
        rc = taskq_enc_hello(b, &m->u.hello, names, nq, names + nq, nf);
        free(names);
        break;
    }
    case TASKQ_MSG_WELCOME:
        rc = taskq_enc_welcome(b, &m->u.welcome);
        break;
    case TASKQ_MSG_HEARTBEAT:
        rc = taskq_enc_heartbeat(b);
        break;
    case TASKQ_MSG_BYE:
        rc = taskq_enc_bye(b, m->u.bye);
        break;
    case TASKQ_MSG_ERROR:
        rc = taskq_enc_error(b, m->u.error.code, m->u.error.ref, m->u.error.text);
        break;
    case TASKQ_MSG_SUBMIT:
        it = m->u.submit.tasks;
        rc = taskq_enc_submit_begin(b, m->u.submit.req_id, it.left);
        while (rc == 0 && taskq_iter_submit(&it, &x.t) == 1)
            rc = taskq_enc_submit_item(b, &x.t);
        break;
    case TASKQ_MSG_ACCEPTED:
        rc = taskq_enc_accepted(b, m->u.accepted.req_id, m->u.accepted.first_job,
                                m->u.accepted.count);
        break;
    case TASKQ_MSG_RESULT:
        it = m->u.results;
        rc = taskq_enc_result_begin(b, it.left);
        while (rc == 0 && taskq_iter_result(&it, &x.r) == 1)
            rc = taskq_enc_result_item(b, &x.r);
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK: {
        it = m->u.jobs;
        uint32_t n = it.left;
        uint64_t *jobs = calloc((size_t)n + 1, sizeof *jobs);
        ck_assert_ptr_nonnull(jobs);
        for (uint32_t k = 0; k < n; k++)
            ck_assert_int_eq(taskq_iter_u64(&it, &jobs[k]), 1);
        rc = taskq_enc_jobs(b, m->type, jobs, n);
        free(jobs);
        break;
    }
    case TASKQ_MSG_STATS:
        rc = taskq_enc_stats(b, m->u.stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        rc = taskq_enc_stats_reply(b, m->u.stats_reply.req_id, m->u.stats_reply.map);
        break;
    case TASKQ_MSG_TASKS:
        it = m->u.tasks;
        rc = taskq_enc_tasks_begin(b, it.left);
        while (rc == 0 && taskq_iter_task(&it, &x.a) == 1)
            rc = taskq_enc_task_item(b, &x.a);
        break;
    case TASKQ_MSG_DONE:
        it = m->u.done;
        rc = taskq_enc_done_begin(b, it.left);
        while (rc == 0 && taskq_iter_done(&it, &x.d) == 1)
            rc = taskq_enc_done_item(b, &x.d);
        break;
    case TASKQ_MSG_ABANDON:
        it = m->u.abandon;
        rc = taskq_enc_abandon_begin(b, it.left);
        while (rc == 0 && taskq_iter_abandon(&it, &x.b) == 1)
            rc = taskq_enc_abandon_item(b, &x.b);
        break;
    case TASKQ_MSG_FAILED:
        rc = taskq_enc_failed(b, m->u.failed.req_id, m->u.failed.after, m->u.failed.limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        it = m->u.failed_reply.jobs;
        rc = taskq_enc_failed_reply_begin(b, m->u.failed_reply.req_id, it.left);
        while (rc == 0 && taskq_iter_failed(&it, &x.j) == 1) {
            taskq_iter_t h = x.j.history;
            taskq_history_item_t e;
            rc = taskq_enc_failed_item(b, &x.j, h.left);
            while (rc == 0 && taskq_iter_history(&h, &e) == 1)
                rc = taskq_enc_history_item(b, &e);
        }
        break;
    case TASKQ_MSG_RETRY:
        rc = taskq_enc_retry(b, m->u.retry.req_id, m->u.retry.job_id);
        break;
    default:
        ck_abort_msg("type %u", m->type);
    }
    ck_assert_int_eq(rc, 0);
}

/* ---- Sample messages: one of each type -------------------------------- */

#define CSPAN(s) {(const uint8_t *)(s), sizeof(s) - 1}
#define ASPAN(a) {(a), sizeof(a)}

static const uint8_t arg_int[] = {0x07};
static const uint8_t arg_array[] = {0x92, 0x01, 0xa1, 'x'}; /* [1, "x"] */
static const uint8_t arg_ext[] = {0xd4, 0x01, 0x2a};        /* fixext 1 */
static const uint8_t res_int[] = {0x31};
static const uint8_t text_boom[] = {0xa4, 'b', 'o', 'o', 'm'};
static const uint8_t text_nojob[] = {0xab, 'n', 'o', ' ', 's', 'u', 'c', 'h', ' ', 'j', 'o', 'b'};
static const uint8_t stats_map[] = {0x81, 0xa6, 'q', 'u', 'e', 'u', 'e', 'd', 0x00};

static const taskq_span_t hello_queues[] = {CSPAN("default"), CSPAN("gpu"), CSPAN("batch")};
static const taskq_span_t hello_functions[] = {CSPAN("square"), CSPAN("render"), CSPAN("exec")};
static const taskq_hello_t hello = {.role = TASKQ_ROLE_WORKER, .client_id = 0,
                                    .name = CSPAN("worker-7"), .host = CSPAN("node1.example"),
                                    .pid = 4242, .credit = 16};
static const taskq_welcome_t welcome = {CSPAN("0.1.0"), UINT64_MAX - 1, 2500, 3, 64u << 20};
static const taskq_span_t bye_reason = CSPAN("shutdown");
static const taskq_error_t error = {TASKQ_PERR_QUEUE_FULL, 77, CSPAN("queue full")};
static const uint64_t submit_req = 9, accepted_first = 1ull << 40, stats_req = 3;
static const taskq_submit_item_t submit_items[] = {
    {CSPAN("square"), CSPAN("default"), 0, 0, 3, ASPAN(arg_int)},
    {CSPAN("render"), CSPAN("gpu"), -1000, 60000, 1000, ASPAN(arg_array)},
    {CSPAN("exec"), CSPAN("default"), 1000, UINT32_MAX, 1, ASPAN(arg_ext)},
};
static const taskq_result_item_t result_items[] = {
    {100, TASKQ_STATUS_DONE, 1, ASPAN(res_int)},
    {101, TASKQ_STATUS_FAILED, 2, ASPAN(text_boom)},
    {102, TASKQ_STATUS_UNKNOWN, 0, ASPAN(text_nojob)},
};
static const uint64_t cancel_jobs[] = {5}, watch_jobs[] = {1, 2, UINT64_MAX}, ack_jobs[] = {7, 8};
static const taskq_task_item_t task_items[] = {
    {100, 1, CSPAN("square"), 0x9e3779b97f4a7c15ull, 0, ASPAN(arg_int)},
    {101, 3, CSPAN("render"), 0, 5000, ASPAN(arg_array)},
};
static const taskq_done_item_t done_items[] = {
    {100, 1, TASKQ_DONE_OK, ASPAN(res_int)},
    {101, 3, TASKQ_DONE_ERROR, ASPAN(text_boom)},
};
static const taskq_abandon_item_t abandon_items[] = {{101, 3}, {UINT64_MAX, UINT32_MAX}};
static const uint64_t failed_req = 4, failed_after = 99, retry_req = 5, retry_job = 101;
static const uint32_t failed_limit = 3;
static const uint8_t text_died[] = {0xab, 'w', 'o', 'r', 'k', 'e', 'r', ' ', 'd', 'i', 'e', 'd'};
static const uint8_t text_empty[] = {0xa0};
static const taskq_history_item_t history_items[] = {
    {1, CSPAN("worker-7"), CSPAN("node1.example"), 4242, 1700000000000ull, 1700000000100ull,
     CSPAN("worker died")},
    {2, CSPAN(""), CSPAN(""), 0, 0, 1700000000123ull, CSPAN("failed on purpose")},
    {UINT32_MAX, CSPAN("w"), CSPAN("h"), UINT32_MAX, UINT64_MAX, UINT64_MAX, CSPAN("")},
};
static const taskq_failed_item_t failed_items[] = {
    {.job_id = 100, .status = TASKQ_STATUS_FAILED, .function = CSPAN("square"),
     .queue = CSPAN("default"), .attempts = 2, .finished_ms = 1700000000123ull,
     .payload = ASPAN(text_boom)},
    {.job_id = 101, .status = TASKQ_STATUS_LOST, .function = CSPAN("render"),
     .queue = CSPAN("gpu"), .attempts = 0, .finished_ms = 0, .payload = ASPAN(text_died)},
    {.job_id = UINT64_MAX, .status = TASKQ_STATUS_TIMEDOUT, .function = CSPAN("exec"),
     .queue = CSPAN("default"), .attempts = UINT32_MAX, .finished_ms = UINT64_MAX,
     .payload = ASPAN(text_empty)},
};
/* The history of failed_items[k]: n entries of history_items from first. */
static const struct {
    uint32_t first, n;
} failed_history[] = {{0, 2}, {0, 0}, {2, 1}};

#define COUNT(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

/* Sample job k of FAILED_REPLY with its history. */
static int encode_failed_job(taskq_buf_t *b, uint32_t k)
{
    int rc = taskq_enc_failed_item(b, &failed_items[k], failed_history[k].n);
    for (uint32_t i = 0; rc == 0 && i < failed_history[k].n; i++)
        rc = taskq_enc_history_item(b, &history_items[failed_history[k].first + i]);
    return rc;
}

static const uint64_t *sample_jobs(int type, uint32_t *n)
{
    *n = type == TASKQ_MSG_CANCEL ? COUNT(cancel_jobs)
         : type == TASKQ_MSG_WATCH ? COUNT(watch_jobs) : COUNT(ack_jobs);
    return type == TASKQ_MSG_CANCEL ? cancel_jobs
           : type == TASKQ_MSG_WATCH ? watch_jobs : ack_jobs;
}

/* The sample of a batch type with its first item repeated n times. */
static void encode_batch(int type, uint32_t n, taskq_buf_t *b)
{
    int rc = 0;
    switch (type) {
    case TASKQ_MSG_SUBMIT:
        rc = taskq_enc_submit_begin(b, submit_req, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = taskq_enc_submit_item(b, &submit_items[k % COUNT(submit_items)]);
        break;
    case TASKQ_MSG_RESULT:
        rc = taskq_enc_result_begin(b, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = taskq_enc_result_item(b, &result_items[k % COUNT(result_items)]);
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK: {
        uint64_t jobs[16];
        ck_assert_uint_le(n, 16);
        for (uint32_t k = 0; k < n; k++)
            jobs[k] = k + 1;
        rc = taskq_enc_jobs(b, (uint8_t)type, jobs, n);
        break;
    }
    case TASKQ_MSG_TASKS:
        rc = taskq_enc_tasks_begin(b, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = taskq_enc_task_item(b, &task_items[k % COUNT(task_items)]);
        break;
    case TASKQ_MSG_DONE:
        rc = taskq_enc_done_begin(b, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = taskq_enc_done_item(b, &done_items[k % COUNT(done_items)]);
        break;
    case TASKQ_MSG_ABANDON:
        rc = taskq_enc_abandon_begin(b, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = taskq_enc_abandon_item(b, &abandon_items[k % COUNT(abandon_items)]);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        rc = taskq_enc_failed_reply_begin(b, failed_req, n);
        for (uint32_t k = 0; rc == 0 && k < n; k++)
            rc = encode_failed_job(b, k % COUNT(failed_items));
        break;
    default:
        ck_abort_msg("not a batch type: %d", type);
    }
    ck_assert_int_eq(rc, 0);
}

static void encode_sample(int type, taskq_buf_t *b)
{
    uint32_t n;
    const uint64_t *jobs;
    int rc = 0;
    switch (type) {
    case TASKQ_MSG_HELLO:
        rc = taskq_enc_hello(b, &hello, hello_queues, COUNT(hello_queues), hello_functions,
                             COUNT(hello_functions));
        break;
    case TASKQ_MSG_WELCOME:
        rc = taskq_enc_welcome(b, &welcome);
        break;
    case TASKQ_MSG_HEARTBEAT:
        rc = taskq_enc_heartbeat(b);
        break;
    case TASKQ_MSG_BYE:
        rc = taskq_enc_bye(b, bye_reason);
        break;
    case TASKQ_MSG_ERROR:
        rc = taskq_enc_error(b, error.code, error.ref, error.text);
        break;
    case TASKQ_MSG_ACCEPTED:
        rc = taskq_enc_accepted(b, submit_req, accepted_first, COUNT(submit_items));
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        jobs = sample_jobs(type, &n);
        rc = taskq_enc_jobs(b, (uint8_t)type, jobs, n);
        break;
    case TASKQ_MSG_STATS:
        rc = taskq_enc_stats(b, stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        rc = taskq_enc_stats_reply(b, stats_req, (taskq_span_t)ASPAN(stats_map));
        break;
    case TASKQ_MSG_SUBMIT:
        encode_batch(type, COUNT(submit_items), b);
        break;
    case TASKQ_MSG_RESULT:
        encode_batch(type, COUNT(result_items), b);
        break;
    case TASKQ_MSG_TASKS:
        encode_batch(type, COUNT(task_items), b);
        break;
    case TASKQ_MSG_DONE:
        encode_batch(type, COUNT(done_items), b);
        break;
    case TASKQ_MSG_ABANDON:
        encode_batch(type, COUNT(abandon_items), b);
        break;
    case TASKQ_MSG_FAILED:
        rc = taskq_enc_failed(b, failed_req, failed_after, failed_limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        encode_batch(type, COUNT(failed_items), b);
        break;
    case TASKQ_MSG_RETRY:
        rc = taskq_enc_retry(b, retry_req, retry_job);
        break;
    default:
        ck_abort_msg("type %d", type);
    }
    ck_assert_int_eq(rc, 0);
}

static void check_names(taskq_iter_t it, const taskq_span_t *want, uint32_t n)
{
    taskq_span_t s;
    ck_assert_uint_eq(it.left, n);
    for (uint32_t k = 0; k < n; k++) {
        ck_assert_int_eq(taskq_iter_str(&it, &s), 1);
        expect_span(s, want[k]);
    }
    ck_assert_int_eq(taskq_iter_str(&it, &s), 0);
}

/* Compare a decoded job of the FAILED_REPLY sample with failed_items[k]. */
static void check_failed(const taskq_failed_item_t *j, uint32_t k)
{
    const taskq_failed_item_t *w = &failed_items[k];
    taskq_iter_t it = j->history;
    taskq_history_item_t e;
    uint32_t i;
    ck_assert_uint_eq(j->job_id, w->job_id);
    ck_assert_uint_eq(j->status, w->status);
    expect_span(j->function, w->function);
    expect_span(j->queue, w->queue);
    ck_assert_uint_eq(j->attempts, w->attempts);
    ck_assert_uint_eq(j->finished_ms, w->finished_ms);
    expect_span(j->payload, w->payload);
    ck_assert_uint_eq(it.left, failed_history[k].n);
    for (i = 0; taskq_iter_history(&it, &e) == 1; i++) {
        const taskq_history_item_t *h = &history_items[failed_history[k].first + i];
        ck_assert_uint_eq(e.attempt, h->attempt);
        expect_span(e.worker, h->worker);
        expect_span(e.host, h->host);
        ck_assert_uint_eq(e.pid, h->pid);
        ck_assert_uint_eq(e.started_ms, h->started_ms);
        ck_assert_uint_eq(e.ended_ms, h->ended_ms);
        expect_span(e.cause, h->cause);
    }
    ck_assert_uint_eq(i, failed_history[k].n);
}

/* Compare every field and item of a decoded sample with its source. */
static void check_sample(int type, const taskq_msg_t *m)
{
    taskq_iter_t it;
    uint32_t n, k;
    const uint64_t *jobs;
    union {
        uint64_t u;
        taskq_submit_item_t t;
        taskq_result_item_t r;
        taskq_task_item_t a;
        taskq_done_item_t d;
        taskq_abandon_item_t b;
        taskq_failed_item_t j;
    } x;

    ck_assert_int_eq(m->type, type);
    switch (type) {
    case TASKQ_MSG_HELLO:
        ck_assert_uint_eq(m->u.hello.role, hello.role);
        ck_assert_uint_eq(m->u.hello.client_id, hello.client_id);
        expect_span(m->u.hello.name, hello.name);
        expect_span(m->u.hello.host, hello.host);
        ck_assert_uint_eq(m->u.hello.pid, hello.pid);
        ck_assert_uint_eq(m->u.hello.credit, hello.credit);
        check_names(m->u.hello.queues, hello_queues, COUNT(hello_queues));
        check_names(m->u.hello.functions, hello_functions, COUNT(hello_functions));
        break;
    case TASKQ_MSG_WELCOME:
        expect_span(m->u.welcome.version, welcome.version);
        ck_assert_uint_eq(m->u.welcome.store_id, welcome.store_id);
        ck_assert_uint_eq(m->u.welcome.heartbeat_ms, welcome.heartbeat_ms);
        ck_assert_uint_eq(m->u.welcome.liveness, welcome.liveness);
        ck_assert_uint_eq(m->u.welcome.max_frame, welcome.max_frame);
        break;
    case TASKQ_MSG_HEARTBEAT:
        break;
    case TASKQ_MSG_BYE:
        expect_span(m->u.bye, bye_reason);
        break;
    case TASKQ_MSG_ERROR:
        ck_assert_uint_eq(m->u.error.code, error.code);
        ck_assert_uint_eq(m->u.error.ref, error.ref);
        expect_span(m->u.error.text, error.text);
        break;
    case TASKQ_MSG_SUBMIT:
        ck_assert_uint_eq(m->u.submit.req_id, submit_req);
        it = m->u.submit.tasks;
        ck_assert_uint_eq(it.left, COUNT(submit_items));
        for (k = 0; taskq_iter_submit(&it, &x.t) == 1; k++) {
            const taskq_submit_item_t *w = &submit_items[k];
            expect_span(x.t.function, w->function);
            expect_span(x.t.queue, w->queue);
            ck_assert_int_eq(x.t.priority, w->priority);
            ck_assert_uint_eq(x.t.timeout_ms, w->timeout_ms);
            ck_assert_uint_eq(x.t.max_attempts, w->max_attempts);
            expect_span(x.t.arg, w->arg);
        }
        ck_assert_uint_eq(k, COUNT(submit_items));
        break;
    case TASKQ_MSG_ACCEPTED:
        ck_assert_uint_eq(m->u.accepted.req_id, submit_req);
        ck_assert_uint_eq(m->u.accepted.first_job, accepted_first);
        ck_assert_uint_eq(m->u.accepted.count, COUNT(submit_items));
        break;
    case TASKQ_MSG_RESULT:
        it = m->u.results;
        ck_assert_uint_eq(it.left, COUNT(result_items));
        for (k = 0; taskq_iter_result(&it, &x.r) == 1; k++) {
            const taskq_result_item_t *w = &result_items[k];
            ck_assert_uint_eq(x.r.job_id, w->job_id);
            ck_assert_uint_eq(x.r.status, w->status);
            ck_assert_uint_eq(x.r.attempts, w->attempts);
            expect_span(x.r.payload, w->payload);
        }
        ck_assert_uint_eq(k, COUNT(result_items));
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        jobs = sample_jobs(type, &n);
        it = m->u.jobs;
        ck_assert_uint_eq(it.left, n);
        for (k = 0; taskq_iter_u64(&it, &x.u) == 1; k++)
            ck_assert_uint_eq(x.u, jobs[k]);
        ck_assert_uint_eq(k, n);
        break;
    case TASKQ_MSG_STATS:
        ck_assert_uint_eq(m->u.stats_req, stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        ck_assert_uint_eq(m->u.stats_reply.req_id, stats_req);
        expect_span(m->u.stats_reply.map, (taskq_span_t)ASPAN(stats_map));
        break;
    case TASKQ_MSG_TASKS:
        it = m->u.tasks;
        ck_assert_uint_eq(it.left, COUNT(task_items));
        for (k = 0; taskq_iter_task(&it, &x.a) == 1; k++) {
            const taskq_task_item_t *w = &task_items[k];
            ck_assert_uint_eq(x.a.job_id, w->job_id);
            ck_assert_uint_eq(x.a.attempt, w->attempt);
            expect_span(x.a.function, w->function);
            ck_assert_uint_eq(x.a.seed, w->seed);
            ck_assert_uint_eq(x.a.timeout_ms, w->timeout_ms);
            expect_span(x.a.arg, w->arg);
        }
        ck_assert_uint_eq(k, COUNT(task_items));
        break;
    case TASKQ_MSG_DONE:
        it = m->u.done;
        ck_assert_uint_eq(it.left, COUNT(done_items));
        for (k = 0; taskq_iter_done(&it, &x.d) == 1; k++) {
            const taskq_done_item_t *w = &done_items[k];
            ck_assert_uint_eq(x.d.job_id, w->job_id);
            ck_assert_uint_eq(x.d.attempt, w->attempt);
            ck_assert_uint_eq(x.d.status, w->status);
            expect_span(x.d.payload, w->payload);
        }
        ck_assert_uint_eq(k, COUNT(done_items));
        break;
    case TASKQ_MSG_ABANDON:
        it = m->u.abandon;
        ck_assert_uint_eq(it.left, COUNT(abandon_items));
        for (k = 0; taskq_iter_abandon(&it, &x.b) == 1; k++) {
            ck_assert_uint_eq(x.b.job_id, abandon_items[k].job_id);
            ck_assert_uint_eq(x.b.attempt, abandon_items[k].attempt);
        }
        ck_assert_uint_eq(k, COUNT(abandon_items));
        break;
    case TASKQ_MSG_FAILED:
        ck_assert_uint_eq(m->u.failed.req_id, failed_req);
        ck_assert_uint_eq(m->u.failed.after, failed_after);
        ck_assert_uint_eq(m->u.failed.limit, failed_limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        ck_assert_uint_eq(m->u.failed_reply.req_id, failed_req);
        it = m->u.failed_reply.jobs;
        ck_assert_uint_eq(it.left, COUNT(failed_items));
        for (k = 0; taskq_iter_failed(&it, &x.j) == 1; k++)
            check_failed(&x.j, k);
        ck_assert_uint_eq(k, COUNT(failed_items));
        break;
    case TASKQ_MSG_RETRY:
        ck_assert_uint_eq(m->u.retry.req_id, retry_req);
        ck_assert_uint_eq(m->u.retry.job_id, retry_job);
        break;
    default:
        ck_abort_msg("type %d", type);
    }
}

/* ---- An independent builder of the samples, field by field ------------ */

/*
 * The builder packs the samples with msgpack-c directly, and can put other
 * bytes in place of one field (a "leaf"), or write every integer, string
 * and array header in a longer encoding than needed.
 */
typedef enum leaf {
    L_VERSION, /* element 0 */
    L_TYPE,    /* element 1 */
    L_U64,     /* unsigned, full 64-bit range */
    L_U32,     /* unsigned, full 32-bit range */
    L_NARROW,  /* unsigned with a narrower range (role, status, credit...) */
    L_SINT,    /* signed (priority) */
    L_NAME,    /* str, non-empty, <= max_name */
    L_LABEL,   /* str, may be empty, <= max_name */
    L_TEXT,    /* str, <= max_text (also the payload of non-DONE outcomes) */
    L_LIST,    /* an array: a batch, a HELLO list, a batch item */
    L_MAP,     /* the stats map */
    L_ANY,     /* a payload: any object */
} leaf_t;

#define MAX_LEAVES 64

typedef struct bld {
    taskq_buf_t buf;
    msgpack_packer pk;
    int wide;                  /* 0: shortest; 1..4: at least 1<<(wide-1) bytes; 5..8: signed markers */
    int target;                /* leaf to replace, or -1 */
    taskq_span_t repl;         /* its replacement */
    int leaves;                /* leaves so far */
    leaf_t kinds[MAX_LEAVES];  /* kind of each leaf */
    unsigned parents[MAX_LEAVES]; /* nesting level of the array holding it (message: 1) */
    int open;                  /* lists begun and not ended */
    int skip_from;             /* > 0: inside a replaced list opened at this level */
} bld_t;

static unsigned log2w(unsigned w)
{
    return w == 1 ? 0 : w == 2 ? 1 : w == 4 ? 2 : 3;
}

static void put_be(bld_t *b, uint8_t marker, uint64_t v, unsigned width)
{
    uint8_t out[9] = {marker};
    for (unsigned k = 0; k < width; k++)
        out[1 + k] = (uint8_t)(v >> (8 * (width - 1 - k)));
    ck_assert_int_eq(taskq_buf_append(&b->buf, out, 1 + width), 0);
}

static unsigned min_width(const bld_t *b)
{
    return 1u << ((b->wide - 1) % 4);
}

static void put_uint(bld_t *b, uint64_t v)
{
    if (b->wide == 0) {
        msgpack_pack_uint64(&b->pk, v);
        return;
    }
    unsigned w = min_width(b);
    if (b->wide > 4 && v <= INT64_MAX) {
        while (w < 8 && v >> (8 * w - 1))
            w *= 2;
        put_be(b, (uint8_t)(0xd0 + log2w(w)), v, w);
        return;
    }
    while (w < 8 && v >> (8 * w))
        w *= 2;
    put_be(b, (uint8_t)(0xcc + log2w(w)), v, w);
}

static void put_sint(bld_t *b, int64_t v)
{
    if (v >= 0) {
        put_uint(b, (uint64_t)v);
        return;
    }
    if (b->wide == 0) {
        msgpack_pack_int64(&b->pk, v);
        return;
    }
    unsigned w = min_width(b);
    while (w < 8 && v < -((int64_t)1 << (8 * w - 1)))
        w *= 2;
    put_be(b, (uint8_t)(0xd0 + log2w(w)), (uint64_t)v, w);
}

static void put_str(bld_t *b, taskq_span_t s)
{
    static const uint8_t markers[] = {0xd9, 0xda, 0xdb, 0xdb};
    if (b->wide == 0)
        msgpack_pack_str(&b->pk, s.len);
    else
        put_be(b, markers[(b->wide - 1) % 4], s.len, min_width(b) < 4 ? min_width(b) : 4);
    ck_assert_int_eq(taskq_buf_append(&b->buf, s.ptr, s.len), 0);
}

static void put_array(bld_t *b, uint32_t n)
{
    if (b->wide == 0)
        msgpack_pack_array(&b->pk, n);
    else if (min_width(b) <= 2)
        put_be(b, 0xdc, n, 2);
    else
        put_be(b, 0xdd, n, 4);
}

/* True if the caller should write the leaf's own value.  Leaves inside a
 * replaced list are counted too, so that indices do not depend on target. */
static bool b_leaf(bld_t *b, leaf_t kind)
{
    int idx = b->leaves++;
    ck_assert_int_lt(idx, MAX_LEAVES);
    b->kinds[idx] = kind;
    b->parents[idx] = 1 + (unsigned)b->open;
    if (b->skip_from)
        return false;
    if (idx != b->target)
        return true;
    ck_assert_int_eq(taskq_buf_append(&b->buf, b->repl.ptr, b->repl.len), 0);
    return false;
}

static void b_uint(bld_t *b, leaf_t kind, uint64_t v)
{
    if (b_leaf(b, kind))
        put_uint(b, v);
}

static void b_sint(bld_t *b, int64_t v)
{
    if (b_leaf(b, L_SINT))
        put_sint(b, v);
}

static void b_str(bld_t *b, leaf_t kind, taskq_span_t s)
{
    if (b_leaf(b, kind))
        put_str(b, s);
}

/* A payload: its bytes as they are. */
static void b_raw(bld_t *b, leaf_t kind, taskq_span_t s)
{
    if (b_leaf(b, kind))
        ck_assert_int_eq(taskq_buf_append(&b->buf, s.ptr, s.len), 0);
}

static void b_list(bld_t *b, uint32_t n)
{
    bool own = b_leaf(b, L_LIST);
    b->open++;
    if (own)
        put_array(b, n);
    else if (!b->skip_from)
        b->skip_from = b->open;
}

static void b_end(bld_t *b)
{
    if (b->skip_from == b->open)
        b->skip_from = 0;
    b->open--;
}

static void b_names(bld_t *b, const taskq_span_t *names, uint32_t n)
{
    b_list(b, n);
    for (uint32_t k = 0; k < n; k++)
        b_str(b, L_NAME, names[k]);
    b_end(b);
}

static void b_head(bld_t *b, uint32_t n, int type)
{
    put_array(b, n);
    b_uint(b, L_VERSION, TASKQ_PROTO_VERSION);
    b_uint(b, L_TYPE, (uint64_t)type);
}

/* Job k of the FAILED_REPLY sample, with its history. */
static void b_failed(bld_t *b, uint32_t k)
{
    const taskq_failed_item_t *f = &failed_items[k];
    b_list(b, 8);
    b_uint(b, L_U64, f->job_id);
    b_uint(b, L_NARROW, f->status);
    b_str(b, L_NAME, f->function);
    b_str(b, L_NAME, f->queue);
    b_uint(b, L_U32, f->attempts);
    b_uint(b, L_U64, f->finished_ms);
    b_raw(b, L_TEXT, f->payload);
    b_list(b, failed_history[k].n);
    for (uint32_t i = 0; i < failed_history[k].n; i++) {
        const taskq_history_item_t *h = &history_items[failed_history[k].first + i];
        b_list(b, 7);
        b_uint(b, L_U32, h->attempt);
        b_str(b, L_LABEL, h->worker);
        b_str(b, L_LABEL, h->host);
        b_uint(b, L_U32, h->pid);
        b_uint(b, L_U64, h->started_ms);
        b_uint(b, L_U64, h->ended_ms);
        b_str(b, L_TEXT, h->cause);
        b_end(b);
    }
    b_end(b);
    b_end(b);
}

/* Build the sample of type; target -1 replaces nothing. */
static void build(bld_t *b, int type, int target, taskq_span_t repl, int wide)
{
    uint32_t n, k;
    const uint64_t *jobs;

    taskq_buf_reset(&b->buf);
    msgpack_packer_init(&b->pk, &b->buf, taskq_buf_write);
    b->wide = wide;
    b->target = target;
    b->repl = repl;
    b->leaves = b->open = b->skip_from = 0;
    switch (type) {
    case TASKQ_MSG_HELLO:
        b_head(b, 10, type);
        b_uint(b, L_NARROW, hello.role);
        b_uint(b, L_NARROW, hello.client_id); /* a worker's is 0 */
        b_str(b, L_NAME, hello.name);
        b_str(b, L_LABEL, hello.host);
        b_uint(b, L_U32, hello.pid);
        b_uint(b, L_NARROW, hello.credit);
        b_names(b, hello_queues, COUNT(hello_queues));
        b_names(b, hello_functions, COUNT(hello_functions));
        break;
    case TASKQ_MSG_WELCOME:
        b_head(b, 7, type);
        b_str(b, L_LABEL, welcome.version);
        b_uint(b, L_U64, welcome.store_id);
        b_uint(b, L_U32, welcome.heartbeat_ms);
        b_uint(b, L_U32, welcome.liveness);
        b_uint(b, L_U32, welcome.max_frame);
        break;
    case TASKQ_MSG_HEARTBEAT:
        b_head(b, 2, type);
        break;
    case TASKQ_MSG_BYE:
        b_head(b, 3, type);
        b_str(b, L_TEXT, bye_reason);
        break;
    case TASKQ_MSG_ERROR:
        b_head(b, 5, type);
        b_uint(b, L_U32, error.code);
        b_uint(b, L_U64, error.ref);
        b_str(b, L_TEXT, error.text);
        break;
    case TASKQ_MSG_SUBMIT:
        b_head(b, 4, type);
        b_uint(b, L_U64, submit_req);
        b_list(b, COUNT(submit_items));
        for (k = 0; k < COUNT(submit_items); k++) {
            const taskq_submit_item_t *t = &submit_items[k];
            b_list(b, 6);
            b_str(b, L_NAME, t->function);
            b_str(b, L_NAME, t->queue);
            b_sint(b, t->priority);
            b_uint(b, L_U32, t->timeout_ms);
            b_uint(b, L_NARROW, t->max_attempts);
            b_raw(b, L_ANY, t->arg);
            b_end(b);
        }
        b_end(b);
        break;
    case TASKQ_MSG_ACCEPTED:
        b_head(b, 5, type);
        b_uint(b, L_U64, submit_req);
        b_uint(b, L_U64, accepted_first);
        b_uint(b, L_U32, COUNT(submit_items));
        break;
    case TASKQ_MSG_RESULT:
        b_head(b, 3, type);
        b_list(b, COUNT(result_items));
        for (k = 0; k < COUNT(result_items); k++) {
            const taskq_result_item_t *r = &result_items[k];
            b_list(b, 4);
            b_uint(b, L_U64, r->job_id);
            b_uint(b, L_NARROW, r->status);
            b_uint(b, L_U32, r->attempts);
            b_raw(b, r->status == TASKQ_STATUS_DONE ? L_ANY : L_TEXT, r->payload);
            b_end(b);
        }
        b_end(b);
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        jobs = sample_jobs(type, &n);
        b_head(b, 3, type);
        b_list(b, n);
        for (k = 0; k < n; k++)
            b_uint(b, L_U64, jobs[k]);
        b_end(b);
        break;
    case TASKQ_MSG_STATS:
        b_head(b, 3, type);
        b_uint(b, L_U64, stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        b_head(b, 4, type);
        b_uint(b, L_U64, stats_req);
        b_raw(b, L_MAP, (taskq_span_t)ASPAN(stats_map));
        break;
    case TASKQ_MSG_TASKS:
        b_head(b, 3, type);
        b_list(b, COUNT(task_items));
        for (k = 0; k < COUNT(task_items); k++) {
            const taskq_task_item_t *t = &task_items[k];
            b_list(b, 6);
            b_uint(b, L_U64, t->job_id);
            b_uint(b, L_U32, t->attempt);
            b_str(b, L_NAME, t->function);
            b_uint(b, L_U64, t->seed);
            b_uint(b, L_U32, t->timeout_ms);
            b_raw(b, L_ANY, t->arg);
            b_end(b);
        }
        b_end(b);
        break;
    case TASKQ_MSG_DONE:
        b_head(b, 3, type);
        b_list(b, COUNT(done_items));
        for (k = 0; k < COUNT(done_items); k++) {
            const taskq_done_item_t *d = &done_items[k];
            b_list(b, 4);
            b_uint(b, L_U64, d->job_id);
            b_uint(b, L_U32, d->attempt);
            b_uint(b, L_NARROW, d->status);
            b_raw(b, d->status == TASKQ_DONE_ERROR || d->status == TASKQ_DONE_RETRY ? L_TEXT : L_ANY,
                  d->payload);
            b_end(b);
        }
        b_end(b);
        break;
    case TASKQ_MSG_ABANDON:
        b_head(b, 3, type);
        b_list(b, COUNT(abandon_items));
        for (k = 0; k < COUNT(abandon_items); k++) {
            b_list(b, 2);
            b_uint(b, L_U64, abandon_items[k].job_id);
            b_uint(b, L_U32, abandon_items[k].attempt);
            b_end(b);
        }
        b_end(b);
        break;
    case TASKQ_MSG_FAILED:
        b_head(b, 5, type);
        b_uint(b, L_U64, failed_req);
        b_uint(b, L_U64, failed_after);
        b_uint(b, L_NARROW, failed_limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        b_head(b, 4, type);
        b_uint(b, L_U64, failed_req);
        b_list(b, COUNT(failed_items));
        for (k = 0; k < COUNT(failed_items); k++)
            b_failed(b, k);
        b_end(b);
        break;
    case TASKQ_MSG_RETRY:
        b_head(b, 4, type);
        b_uint(b, L_U64, retry_req);
        b_uint(b, L_U64, retry_job);
        break;
    default:
        ck_abort_msg("type %d", type);
    }
    ck_assert_int_eq(b->open, 0);
}

static const taskq_span_t no_repl = {NULL, 0};

/* One leaf of a sample, about to be replaced. */
typedef struct leafcase {
    leaf_t kind;     /* what the leaf holds */
    unsigned parent; /* nesting level of the array holding it (message: 1) */
    int type;        /* the message type */
    const void *arg; /* the test's parameter */
} leafcase_t;

/*
 * The code expected when the leaf is replaced, or 1 to leave this leaf
 * out.  *ret_type is preset to the message type; set it to 0 when the
 * decoder cannot know the type, or to -1 when it must not touch it.
 */
typedef int want_fn(const leafcase_t *c, int *ret_type);

/* Replace each leaf of the sample of type in turn with repl. */
static void each_leaf(int type, taskq_span_t repl, const char *label, const taskq_limits_t *lim,
                      want_fn *want, const void *arg)
{
    bld_t b = {0};
    build(&b, type, -1, no_repl, 0);
    int n = b.leaves;
    for (int leaf = 0; leaf < n; leaf++) {
        leafcase_t c = {b.kinds[leaf], b.parents[leaf], type, arg};
        int want_type = type;
        int code = want(&c, &want_type);
        if (code > 0)
            continue;
        build(&b, type, leaf, repl, 0);
        char where[160];
        uint8_t got_type = 0xee;
        snprintf(where, sizeof where, "%s leaf %d (kind %d) = %s", type_names[type], leaf,
                 c.kind, label);
        expect_code_at(where, decode_copy(b.buf.data, b.buf.len, lim, &got_type), code);
        ck_assert_msg(got_type == (want_type < 0 ? 0xee : want_type), "%s: type %d, want %d",
                      where, got_type, want_type);
    }
    taskq_buf_fini(&b.buf);
}

static void each_leaf_hex(int type, const char *hex, const taskq_limits_t *lim, want_fn *want,
                          const void *arg)
{
    taskq_buf_t repl = {0};
    unhex(hex, &repl);
    each_leaf(type, (taskq_span_t){repl.data, repl.len}, hex, lim, want, arg);
    taskq_buf_fini(&repl);
}

/* The codes of element 0 and element 1 when they hold something else. */
static int want_header(const leafcase_t *c, int *ret_type, int code)
{
    if (c->kind == L_VERSION || c->kind == L_TYPE)
        *ret_type = 0;
    if (c->kind == L_VERSION)
        return PERR(VERSION);
    return c->kind == L_TYPE ? PERR(UNKNOWN_TYPE) : code;
}

/* ---- Round trips ------------------------------------------------------- */

START_TEST(test_roundtrip)
{
    int type = _i;
    taskq_buf_t enc = {0}, again = {0};
    bld_t b = {0};
    taskq_limits_t lim = small_limits();
    taskq_msg_t m;
    uint8_t got_type = 0;

    encode_sample(type, &enc);
    /* The encoders write exactly what msgpack-c's packer writes field by field. */
    build(&b, type, -1, no_repl, 0);
    ck_assert_uint_eq(b.buf.len, enc.len);
    ck_assert_mem_eq(b.buf.data, enc.data, enc.len);

    expect_code(taskq_msg_decode(enc.data, enc.len, &lim, &m, &got_type), 0);
    ck_assert_uint_eq(got_type, type);
    check_sample(type, &m);
    read_all(&m);
    reencode(&m, &again);
    ck_assert_uint_eq(again.len, enc.len);
    ck_assert_mem_eq(again.data, enc.data, enc.len);
    expect_code(decode_copy(enc.data, enc.len, NULL, NULL), 0);

    taskq_buf_fini(&enc);
    taskq_buf_fini(&again);
    taskq_buf_fini(&b.buf);
}
END_TEST

/* Every integer, string and array header in a longer encoding decodes to
 * the same message. */
START_TEST(test_wide_encodings)
{
    int type = _i;
    taskq_buf_t enc = {0}, again = {0};
    bld_t b = {0};
    taskq_msg_t m;

    encode_sample(type, &enc);
    for (int wide = 1; wide <= 8; wide++) {
        build(&b, type, -1, no_repl, wide);
        ck_assert_uint_gt(b.buf.len, enc.len);
        expect_code(decode_copy(b.buf.data, b.buf.len, NULL, NULL), 0);
        expect_code(taskq_msg_decode(b.buf.data, b.buf.len, NULL, &m, NULL), 0);
        check_sample(type, &m);
        taskq_buf_reset(&again);
        reencode(&m, &again);
        ck_assert_uint_eq(again.len, enc.len);
        ck_assert_mem_eq(again.data, enc.data, enc.len);
    }
    taskq_buf_fini(&enc);
    taskq_buf_fini(&again);
    taskq_buf_fini(&b.buf);
}
END_TEST

START_TEST(test_client_hello)
{
    taskq_buf_t b = {0};
    taskq_msg_t m;
    taskq_hello_t h = {.role = TASKQ_ROLE_CLIENT, .client_id = UINT64_MAX,
                       .name = taskq_span_cstr("client"), .host = taskq_span_cstr(""),
                       .pid = 1, .credit = 0};
    taskq_span_t s;

    ck_assert_int_eq(taskq_enc_hello(&b, &h, NULL, 0, NULL, 0), 0);
    expect_code(taskq_msg_decode(b.data, b.len, NULL, &m, NULL), 0);
    ck_assert_uint_eq(m.u.hello.role, TASKQ_ROLE_CLIENT);
    ck_assert_uint_eq(m.u.hello.client_id, UINT64_MAX);
    ck_assert(taskq_span_eq(m.u.hello.name, "client"));
    ck_assert_uint_eq(m.u.hello.host.len, 0);
    ck_assert_uint_eq(m.u.hello.queues.left, 0);
    ck_assert_int_eq(taskq_iter_str(&m.u.hello.queues, &s), 0);
    ck_assert_int_eq(taskq_iter_str(&m.u.hello.functions, &s), 0);
    taskq_buf_fini(&b);
}
END_TEST

/* ---- Truncation --------------------------------------------------------- */

START_TEST(test_truncated_prefixes)
{
    int type = _i;
    taskq_buf_t enc = {0};
    bld_t b = {0};

    encode_sample(type, &enc);
    build(&b, type, -1, no_repl, 8);
    for (size_t len = 0; len < enc.len; len++) {
        uint8_t got_type = 0xee;
        char where[64];
        snprintf(where, sizeof where, "%s prefix %zu", type_names[type], len);
        expect_code_at(where, decode_copy(enc.data, len, NULL, &got_type), PERR(TRUNCATED));
        ck_assert_uint_eq(got_type, 0xee);
    }
    for (size_t len = 0; len < b.buf.len; len++)
        expect_code(decode_copy(b.buf.data, len, NULL, NULL), PERR(TRUNCATED));
    taskq_buf_fini(&enc);
    taskq_buf_fini(&b.buf);
}
END_TEST

/* Declared lengths far beyond the bytes there: TRUNCATED without reading on. */
static const char *const huge_lengths[] = {
    "dc ff ff", "dd ff ff ff ff", "de ff ff", "df ff ff ff ff", "d9 ff", "da ff ff",
    "db ff ff ff ff", "c4 ff", "c5 ff ff", "c6 ff ff ff ff", "c7 ff 01", "c8 ff ff 01",
    "c9 ff ff ff ff 01",
};

static int want_truncated(const leafcase_t *c, int *ret_type)
{
    *ret_type = -1;
    return PERR(TRUNCATED);
}

START_TEST(test_huge_lengths)
{
    int type = _i;
    for (size_t k = 0; k < sizeof huge_lengths / sizeof huge_lengths[0]; k++)
        each_leaf_hex(type, huge_lengths[k], NULL, want_truncated, NULL);
}
END_TEST

START_TEST(test_huge_lengths_top)
{
    taskq_limits_t lim = default_limits();
    lim.max_frame = UINT32_MAX;
    expect_hex("dd ff ff ff ff", &lim, PERR(TRUNCATED), -1);
    expect_hex("dd ff ff ff ff 01 03", &lim, PERR(TRUNCATED), -1);
    expect_hex("dc ff ff 01 03", &lim, PERR(TRUNCATED), -1);
    expect_hex("dd 00 00 00 03 01 04 db ff ff ff ff 78", &lim, PERR(TRUNCATED), -1);
    for (size_t k = 0; k < sizeof huge_lengths / sizeof huge_lengths[0]; k++) {
        taskq_buf_t b = {0};
        unhex(huge_lengths[k], &b);
        expect_code(taskq_object_check(b.data, b.len, 64), PERR(TRUNCATED));
        taskq_buf_fini(&b);
    }
}
END_TEST

/* ---- Wrong msgpack types ------------------------------------------------ */

/* One value of each msgpack family. */
enum family { F_NIL, F_BOOL, F_FLOAT, F_INT, F_STR, F_BIN, F_ARRAY, F_MAP, F_EXT, F_COUNT };
static const char *const family_values[F_COUNT] = {
    "c0", "c2", "cb 3f f0 00 00 00 00 00 00", "07", "a1 78", "c4 01 78", "90", "80", "d4 01 2a",
};

static enum family leaf_family(leaf_t kind)
{
    switch (kind) {
    case L_NAME:
    case L_LABEL:
    case L_TEXT:
        return F_STR;
    case L_LIST:
        return F_ARRAY;
    case L_MAP:
        return F_MAP;
    case L_ANY:
        return F_COUNT; /* any family is right */
    default:
        return F_INT;
    }
}

static int want_wrong_type(const leafcase_t *c, int *ret_type)
{
    enum family f = leaf_family(c->kind);
    if (f == F_COUNT || f == *(const enum family *)c->arg)
        return 1;
    return want_header(c, ret_type, PERR(BAD_FIELD));
}

START_TEST(test_wrong_types)
{
    int type = _i;
    for (enum family f = 0; f < F_COUNT; f++)
        each_leaf_hex(type, family_values[f], NULL, want_wrong_type, &f);
}
END_TEST

/* ---- Limits --------------------------------------------------------------- */

static int want_str_len(const leafcase_t *c, int *ret_type)
{
    const taskq_limits_t lim = small_limits();
    uint32_t len = *(const uint32_t *)c->arg;
    if (c->kind != L_NAME && c->kind != L_LABEL && c->kind != L_TEXT)
        return 1;
    if (len > (c->kind == L_TEXT ? lim.max_text : lim.max_name))
        return PERR(TOO_LONG);
    return len == 0 && c->kind == L_NAME ? PERR(BAD_FIELD) : 0;
}

START_TEST(test_string_limits)
{
    int type = _i;
    const taskq_limits_t lim = small_limits();
    const uint32_t lens[] = {0,  1, lim.max_name, lim.max_name + 1, lim.max_text,
                             lim.max_text + 1, 1000};
    char text[1000], label[32];
    memset(text, 'a', sizeof text);
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        taskq_buf_t s = {0};
        ck_assert_int_eq(taskq_enc_str(&s, text, lens[k]), 0);
        snprintf(label, sizeof label, "str of %" PRIu32 " bytes", lens[k]);
        each_leaf(type, (taskq_span_t){s.data, s.len}, label, &lim, want_str_len, &lens[k]);
        taskq_buf_fini(&s);
    }
}
END_TEST

static const int batch_types[] = {TASKQ_MSG_SUBMIT,  TASKQ_MSG_RESULT, TASKQ_MSG_CANCEL,
                                  TASKQ_MSG_WATCH,   TASKQ_MSG_TASKS,  TASKQ_MSG_DONE,
                                  TASKQ_MSG_ABANDON, TASKQ_MSG_ACK,    TASKQ_MSG_FAILED_REPLY};

START_TEST(test_batch_limits)
{
    const taskq_limits_t lim = small_limits();
    for (size_t k = 0; k < sizeof batch_types / sizeof batch_types[0]; k++) {
        int type = batch_types[k];
        taskq_buf_t b = {0};
        uint8_t got_type = 0;
        encode_batch(type, lim.max_batch, &b);
        expect_code(decode_copy(b.data, b.len, &lim, NULL), 0);
        taskq_buf_reset(&b);
        encode_batch(type, lim.max_batch + 1, &b);
        expect_code(decode_copy(b.data, b.len, &lim, &got_type), PERR(TOO_MANY));
        ck_assert_uint_eq(got_type, type);
        expect_code(decode_copy(b.data, b.len, NULL, NULL), 0);
        /* A FAILED_REPLY may hold no job: the end of the list. */
        taskq_buf_reset(&b);
        encode_batch(type, 0, &b);
        expect_code(decode_copy(b.data, b.len, &lim, &got_type),
                    type == TASKQ_MSG_FAILED_REPLY ? 0 : PERR(BAD_FIELD));
        ck_assert_uint_eq(got_type, type);
        taskq_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_list_limits)
{
    taskq_limits_t lim = small_limits();
    taskq_buf_t b = {0};
    const taskq_span_t four[] = {CSPAN("a"), CSPAN("b"), CSPAN("c"), CSPAN("d")};

    /* max_list names is fine, one more is TOO_MANY, for both lists. */
    ck_assert_int_eq(taskq_enc_hello(&b, &hello, four, 3, four, 3), 0);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), 0);
    taskq_buf_reset(&b);
    ck_assert_int_eq(taskq_enc_hello(&b, &hello, four, 4, four, 1), 0);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), PERR(TOO_MANY));
    taskq_buf_reset(&b);
    ck_assert_int_eq(taskq_enc_hello(&b, &hello, four, 1, four, 4), 0);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), PERR(TOO_MANY));
    /* The batch limit does not apply to HELLO lists, nor the list limit to batches. */
    lim.max_batch = 1;
    taskq_buf_reset(&b);
    ck_assert_int_eq(taskq_enc_hello(&b, &hello, four, 3, four, 3), 0);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), 0);
    lim = small_limits();
    lim.max_list = 1;
    taskq_buf_reset(&b);
    encode_batch(TASKQ_MSG_WATCH, 3, &b);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), 0);
    taskq_buf_fini(&b);
}
END_TEST

START_TEST(test_frame_limit)
{
    int type = _i;
    taskq_limits_t lim = small_limits();
    taskq_buf_t b = {0};
    uint8_t got_type = 0;

    encode_sample(type, &b);
    lim.max_frame = (uint32_t)b.len;
    expect_code(decode_copy(b.data, b.len, &lim, NULL), 0);
    lim.max_frame = (uint32_t)b.len - 1;
    expect_code(decode_copy(b.data, b.len, &lim, &got_type), PERR(TOO_BIG));
    ck_assert_uint_eq(got_type, type);
    /* The size is checked before anything else. */
    memset(b.data, 0xc1, b.len);
    expect_code(decode_copy(b.data, b.len, &lim, &got_type), PERR(TOO_BIG));
    ck_assert_uint_eq(got_type, 0);
    taskq_buf_fini(&b);
}
END_TEST

/* [[...[]...]] nested depth deep (depth >= 1); maps if map. */
static char *nested_hex(uint32_t depth, bool map)
{
    char *hex = malloc(6 * (size_t)depth + 8);
    size_t off = 0;
    ck_assert_ptr_nonnull(hex);
    for (uint32_t k = 1; k < depth; k++)
        off += (size_t)sprintf(hex + off, map ? "8100" : "91");
    sprintf(hex + off, map ? "80" : "90");
    return hex;
}

typedef struct nest {
    uint32_t depth; /* of the replacement */
    bool map;       /* maps rather than arrays */
} nest_t;

static int want_depth(const leafcase_t *c, int *ret_type)
{
    const nest_t *n = c->arg;
    const uint32_t max = small_limits().max_depth;
    /* No payload can sit deeper than message, batch and item arrays. */
    if (c->parent + n->depth > max + 3) {
        if (c->kind == L_VERSION || c->kind == L_TYPE)
            *ret_type = 0;
        return PERR(TOO_DEEP);
    }
    if (c->kind == L_MAP && !n->map)
        return PERR(BAD_FIELD);
    if (c->kind != L_ANY && c->kind != L_MAP)
        return 1;
    return n->depth > max ? PERR(TOO_DEEP) : 0;
}

START_TEST(test_depth_limits)
{
    int type = _i;
    const taskq_limits_t lim = small_limits();
    for (nest_t n = {1, false}; n.depth <= lim.max_depth + 4; n.depth++) {
        for (int map = 0; map < 2; map++) {
            n.map = map;
            char *hex = nested_hex(n.depth, n.map);
            each_leaf_hex(type, hex, &lim, want_depth, &n);
            free(hex);
        }
    }
}
END_TEST

START_TEST(test_depth_cap)
{
    taskq_limits_t lim = default_limits();
    taskq_buf_t b = {0};
    taskq_submit_item_t t = submit_items[0];

    lim.max_depth = UINT32_MAX; /* acts as 256 */
    for (uint32_t depth = 255; depth <= 258; depth++) {
        taskq_buf_t arg = {0};
        char *hex = nested_hex(depth, false);
        unhex(hex, &arg);
        t.arg = (taskq_span_t){arg.data, arg.len};
        taskq_buf_reset(&b);
        ck_assert_int_eq(taskq_enc_submit_begin(&b, 1, 1), 0);
        ck_assert_int_eq(taskq_enc_submit_item(&b, &t), 0);
        expect_code(decode_copy(b.data, b.len, &lim, NULL), depth <= 256 ? 0 : PERR(TOO_DEEP));
        expect_code(taskq_object_check(arg.data, arg.len, UINT32_MAX),
                    depth <= 256 ? 0 : PERR(TOO_DEEP));
        if (depth <= 256)
            expect_code(taskq_object_check(arg.data, arg.len, depth), 0);
        expect_code(taskq_object_check(arg.data, arg.len, depth - 1), PERR(TOO_DEEP));
        free(hex);
        taskq_buf_fini(&arg);
    }
    /* A frame that is nothing but nesting stops at the limit. */
    taskq_buf_reset(&b);
    for (int k = 0; k < 5000; k++)
        ck_assert_int_eq(taskq_buf_append(&b, "\x91", 1), 0);
    expect_code(decode_copy(b.data, b.len, &lim, NULL), PERR(TOO_DEEP));
    expect_code(decode_copy(b.data, b.len, NULL, NULL), PERR(TOO_DEEP));
    taskq_buf_fini(&b);
}
END_TEST

/* ---- Ranges --------------------------------------------------------------- */

static int hello_code(taskq_hello_t h, uint32_t nq, uint32_t nf)
{
    taskq_buf_t b = {0};
    uint8_t got_type = 0;
    ck_assert_int_eq(taskq_enc_hello(&b, &h, hello_queues, nq, hello_functions, nf), 0);
    int rc = decode_copy(b.data, b.len, NULL, &got_type);
    ck_assert_uint_eq(got_type, TASKQ_MSG_HELLO);
    taskq_buf_fini(&b);
    return rc;
}

START_TEST(test_hello_roles)
{
    taskq_hello_t w = hello, c = hello;
    c.role = TASKQ_ROLE_CLIENT;
    c.client_id = 42;
    c.credit = 0;

    expect_code(hello_code(w, 1, 1), 0);
    expect_code(hello_code(c, 0, 0), 0);
    for (unsigned role = 0; role < 256; role++) {
        w.role = (uint8_t)role;
        if (role != TASKQ_ROLE_WORKER)
            expect_code(hello_code(w, 1, 1), PERR(BAD_FIELD));
    }
    w = hello;
    w.client_id = 1;
    expect_code(hello_code(w, 1, 1), PERR(BAD_FIELD));
    w = hello;
    w.credit = 0;
    expect_code(hello_code(w, 1, 1), PERR(BAD_FIELD));
    w.credit = 10001;
    expect_code(hello_code(w, 1, 1), PERR(BAD_FIELD));
    w.credit = 10000;
    expect_code(hello_code(w, 1, 1), 0);
    w.credit = 1;
    expect_code(hello_code(w, 1, 1), 0);
    expect_code(hello_code(w, 0, 1), PERR(BAD_FIELD));
    expect_code(hello_code(w, 1, 0), PERR(BAD_FIELD));
    w.name = taskq_span_cstr("");
    expect_code(hello_code(w, 1, 1), PERR(BAD_FIELD));
    w = hello;
    w.host = taskq_span_cstr("");
    expect_code(hello_code(w, 1, 1), 0);

    c.client_id = 0;
    expect_code(hello_code(c, 0, 0), PERR(BAD_FIELD));
    c.client_id = UINT64_MAX;
    c.credit = 1;
    expect_code(hello_code(c, 0, 0), PERR(BAD_FIELD));
    c.credit = 0;
    expect_code(hello_code(c, 1, 0), PERR(BAD_FIELD));
    expect_code(hello_code(c, 0, 1), PERR(BAD_FIELD));
}
END_TEST

static int submit_code(taskq_submit_item_t t)
{
    taskq_buf_t b = {0};
    ck_assert_int_eq(taskq_enc_submit_begin(&b, 1, 2), 0);
    ck_assert_int_eq(taskq_enc_submit_item(&b, &submit_items[0]), 0);
    ck_assert_int_eq(taskq_enc_submit_item(&b, &t), 0);
    int rc = decode_copy(b.data, b.len, NULL, NULL);
    taskq_buf_fini(&b);
    return rc;
}

START_TEST(test_submit_ranges)
{
    taskq_submit_item_t t = submit_items[0];
    const int32_t prio_ok[] = {-1000, -129, -33, -32, -1, 0, 127, 128, 1000};
    const int32_t prio_bad[] = {INT32_MIN, -1001, 1001, INT32_MAX};
    for (size_t k = 0; k < sizeof prio_ok / sizeof prio_ok[0]; k++) {
        t.priority = prio_ok[k];
        expect_code(submit_code(t), 0);
    }
    for (size_t k = 0; k < sizeof prio_bad / sizeof prio_bad[0]; k++) {
        t.priority = prio_bad[k];
        expect_code(submit_code(t), PERR(BAD_FIELD));
    }
    t = submit_items[0];
    const uint32_t att[][2] = {{0, 0}, {1, 1}, {1000, 1}, {1001, 0}, {UINT32_MAX, 0}};
    for (size_t k = 0; k < sizeof att / sizeof att[0]; k++) {
        t.max_attempts = att[k][0];
        expect_code(submit_code(t), att[k][1] ? 0 : PERR(BAD_FIELD));
    }
    t = submit_items[0];
    t.function = taskq_span_cstr("");
    expect_code(submit_code(t), PERR(BAD_FIELD));
    t = submit_items[0];
    t.queue = taskq_span_cstr("");
    expect_code(submit_code(t), PERR(BAD_FIELD));
    /* An argument must be one whole object. */
    t = submit_items[0];
    t.arg = (taskq_span_t){(const uint8_t *)"\xc1", 1};
    expect_code(submit_code(t), PERR(MALFORMED));
}
END_TEST

START_TEST(test_outcome_ranges)
{
    taskq_buf_t b = {0};
    taskq_result_item_t r = result_items[1];
    taskq_done_item_t d = done_items[1];

    for (unsigned status = 0; status <= 8; status++) {
        r.status = (uint8_t)status;
        taskq_buf_reset(&b);
        ck_assert_int_eq(taskq_enc_result_begin(&b, 1), 0);
        ck_assert_int_eq(taskq_enc_result_item(&b, &r), 0);
        expect_code(decode_copy(b.data, b.len, NULL, NULL),
                    status <= TASKQ_STATUS_MAX ? 0 : PERR(BAD_FIELD));
        d.status = (uint8_t)status;
        taskq_buf_reset(&b);
        ck_assert_int_eq(taskq_enc_done_begin(&b, 1), 0);
        ck_assert_int_eq(taskq_enc_done_item(&b, &d), 0);
        expect_code(decode_copy(b.data, b.len, NULL, NULL),
                    status <= TASKQ_DONE_RETRY ? 0 : PERR(BAD_FIELD));
    }
    /* DONE outcomes carry any object; the others need a str. */
    for (unsigned status = 0; status <= TASKQ_STATUS_MAX; status++) {
        r = result_items[0];
        r.status = (uint8_t)status;
        taskq_buf_reset(&b);
        ck_assert_int_eq(taskq_enc_result_begin(&b, 1), 0);
        ck_assert_int_eq(taskq_enc_result_item(&b, &r), 0);
        expect_code(decode_copy(b.data, b.len, NULL, NULL), status == 0 ? 0 : PERR(BAD_FIELD));
    }
    d = done_items[0];
    d.status = TASKQ_DONE_ERROR;
    taskq_buf_reset(&b);
    ck_assert_int_eq(taskq_enc_done_begin(&b, 1), 0);
    ck_assert_int_eq(taskq_enc_done_item(&b, &d), 0);
    expect_code(decode_copy(b.data, b.len, NULL, NULL), PERR(BAD_FIELD));
    taskq_buf_fini(&b);
}
END_TEST

static int failed_code(uint32_t limit, const taskq_limits_t *lim)
{
    taskq_buf_t b = {0};
    uint8_t got_type = 0;
    ck_assert_int_eq(taskq_enc_failed(&b, 1, 0, limit), 0);
    int rc = decode_copy(b.data, b.len, lim, &got_type);
    ck_assert_uint_eq(got_type, TASKQ_MSG_FAILED);
    taskq_buf_fini(&b);
    return rc;
}

/* A FAILED_REPLY of one job f with n copies of history entry h. */
static int failed_reply_code(const taskq_failed_item_t *f, const taskq_history_item_t *h,
                             uint32_t n, const taskq_limits_t *lim)
{
    taskq_buf_t b = {0};
    uint8_t got_type = 0;
    ck_assert_int_eq(taskq_enc_failed_reply_begin(&b, 1, 1), 0);
    ck_assert_int_eq(taskq_enc_failed_item(&b, f, n), 0);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_int_eq(taskq_enc_history_item(&b, h), 0);
    int rc = decode_copy(b.data, b.len, lim, &got_type);
    ck_assert_uint_eq(got_type, TASKQ_MSG_FAILED_REPLY);
    taskq_buf_fini(&b);
    return rc;
}

START_TEST(test_failed_ranges)
{
    taskq_limits_t lim = default_limits();
    taskq_failed_item_t f = failed_items[0];
    const taskq_history_item_t *h = &history_items[0];

    /* A FAILED limit is a count, 1..max_batch: out of range, not too many. */
    expect_code(failed_code(0, NULL), PERR(BAD_FIELD));
    expect_code(failed_code(1, NULL), 0);
    expect_code(failed_code(lim.max_batch, NULL), 0);
    expect_code(failed_code(lim.max_batch + 1, NULL), PERR(BAD_FIELD));
    expect_code(failed_code(UINT32_MAX, NULL), PERR(BAD_FIELD));
    lim.max_batch = 3;
    expect_code(failed_code(3, &lim), 0);
    expect_code(failed_code(4, &lim), PERR(BAD_FIELD));

    /* Listed jobs are FAILED, LOST or TIMEDOUT. */
    for (unsigned status = 0; status <= 8; status++) {
        f.status = (uint8_t)status;
        bool ok = status == TASKQ_STATUS_FAILED || status == TASKQ_STATUS_LOST ||
                  status == TASKQ_STATUS_TIMEDOUT;
        expect_code(failed_reply_code(&f, h, 1, NULL), ok ? 0 : PERR(BAD_FIELD));
    }
    f = failed_items[0];
    f.function = taskq_span_cstr("");
    expect_code(failed_reply_code(&f, h, 1, NULL), PERR(BAD_FIELD));
    f = failed_items[0];
    f.queue = taskq_span_cstr("");
    expect_code(failed_reply_code(&f, h, 1, NULL), PERR(BAD_FIELD));
    f = failed_items[0];
    f.payload = (taskq_span_t)ASPAN(res_int);
    expect_code(failed_reply_code(&f, h, 1, NULL), PERR(BAD_FIELD));

    /* A history holds up to TASKQ_PROTO_MAX_HISTORY entries, whatever the
     * batch limit. */
    f = failed_items[0];
    lim = default_limits();
    lim.max_batch = 1;
    expect_code(failed_reply_code(&f, h, 0, &lim), 0);
    expect_code(failed_reply_code(&f, h, TASKQ_PROTO_MAX_HISTORY, &lim), 0);
    expect_code(failed_reply_code(&f, h, TASKQ_PROTO_MAX_HISTORY + 1, &lim), PERR(TOO_MANY));

    /* Its five levels of arrays decode whatever max_depth is; a sixth does not. */
    lim = default_limits();
    lim.max_depth = 0;
    expect_code(failed_reply_code(&f, h, 2, &lim), 0);
    expect_hex("94 01 12 01 91 98 01 01 a1 66 a1 71 00 00 a0 91 97 90 a0 a0 00 00 00 a0", &lim,
               PERR(TOO_DEEP), TASKQ_MSG_FAILED_REPLY);
    lim.max_depth = 3;
    expect_hex("94 01 12 01 91 98 01 01 a1 66 a1 71 00 00 a0 91 97 90 a0 a0 00 00 00 a0", &lim,
               PERR(BAD_FIELD), TASKQ_MSG_FAILED_REPLY);
}
END_TEST

/* Which integer leaves accept a replacement value. */
enum accepts {
    A_SINT = 1,   /* priority (-1000..1000) */
    A_U32 = 2,    /* full-range u32 fields */
    A_U64 = 4,    /* full-range u64 fields */
};

static int want_integer(const leafcase_t *c, int *ret_type)
{
    unsigned accepts = *(const unsigned *)c->arg;
    switch (c->kind) {
    case L_VERSION:
    case L_TYPE:
        return want_header(c, ret_type, 0);
    case L_SINT:
        return accepts & A_SINT ? 0 : PERR(BAD_FIELD);
    case L_U32:
        return accepts & A_U32 ? 0 : PERR(BAD_FIELD);
    case L_U64:
        return accepts & A_U64 ? 0 : PERR(BAD_FIELD);
    case L_NARROW:
        return PERR(BAD_FIELD);
    default:
        return 1;
    }
}

START_TEST(test_integer_ranges)
{
    static const struct {
        const char *hex;
        unsigned accepts;
    } values[] = {
        {"ff", A_SINT},                                    /* -1 */
        {"d0 80", A_SINT},                                 /* -128 */
        {"d1 fc 17", 0},                                   /* -1001 */
        {"d3 80 00 00 00 00 00 00 00", 0},                 /* INT64_MIN */
        {"cd 27 11", A_U32 | A_U64},                       /* 10001 */
        {"ce ff ff ff ff", A_U32 | A_U64},                 /* UINT32_MAX */
        {"d2 7f ff ff ff", A_U32 | A_U64},                 /* INT32_MAX */
        {"cf 00 00 00 01 00 00 00 00", A_U64},             /* 2^32 */
        {"d3 00 00 00 01 00 00 00 00", A_U64},             /* 2^32, signed marker */
        {"cf ff ff ff ff ff ff ff ff", A_U64},             /* UINT64_MAX */
    };
    for (size_t k = 0; k < sizeof values / sizeof values[0]; k++)
        each_leaf_hex(_i, values[k].hex, NULL, want_integer, &values[k].accepts);
}
END_TEST

/* ---- Frame shape, version, type ------------------------------------------ */

static const struct hexcase {
    const char *hex;
    int code;
    int type; /* expected *ret_type; -1: untouched */
} header_cases[] = {
    {"", PERR(TRUNCATED), -1},
    {"92", PERR(TRUNCATED), -1},
    {"92 01", PERR(TRUNCATED), -1},
    {"dc 00", PERR(TRUNCATED), -1},
    {"dd 00 00 00", PERR(TRUNCATED), -1},
    {"92 01 03", 0, TASKQ_MSG_HEARTBEAT},
    {"dc 00 02 cc 01 d0 03", 0, TASKQ_MSG_HEARTBEAT},
    {"dd 00 00 00 02 cf 00 00 00 00 00 00 00 01 d3 00 00 00 00 00 00 00 03", 0, 3},
    {"90", PERR(MALFORMED), 0},
    {"dc 00 00", PERR(MALFORMED), 0},
    {"dd 00 00 00 00", PERR(MALFORMED), 0},
    {"80", PERR(MALFORMED), 0},
    {"82 01 01 02 03", PERR(MALFORMED), 0},
    {"01", PERR(MALFORMED), 0},
    {"a2 01 03", PERR(MALFORMED), 0},
    {"c0", PERR(MALFORMED), 0},
    {"c1", PERR(MALFORMED), 0},
    {"c1 92 01 03", PERR(MALFORMED), 0},
    {"92 c1 03", PERR(MALFORMED), 0},
    {"92 01 c1", PERR(MALFORMED), 0},
    {"93 01 04 c1", PERR(MALFORMED), TASKQ_MSG_BYE},
    {"93 01 06 91 c1", PERR(MALFORMED), TASKQ_MSG_SUBMIT},
    {"92 01 03 00", PERR(MALFORMED), TASKQ_MSG_HEARTBEAT},
    {"92 01 03 92 01 03", PERR(MALFORMED), TASKQ_MSG_HEARTBEAT},
    {"92 01 03 c1", PERR(MALFORMED), TASKQ_MSG_HEARTBEAT},
    {"91 01", PERR(MALFORMED), 0},
    {"93 01 03 00", PERR(MALFORMED), TASKQ_MSG_HEARTBEAT},
    {"92 01 04", PERR(MALFORMED), TASKQ_MSG_BYE},
    {"91 02", PERR(VERSION), 0},
    {"92 00 03", PERR(VERSION), 0},
    {"92 02 03", PERR(VERSION), 0},
    {"92 63 03", PERR(VERSION), 0},
    {"92 cc 63 03", PERR(VERSION), 0},
    {"92 ff 03", PERR(VERSION), 0},
    {"92 d3 ff ff ff ff ff ff ff ff 03", PERR(VERSION), 0},
    {"92 cf 00 00 00 01 00 00 00 01 03", PERR(VERSION), 0},
    {"92 a1 31 03", PERR(VERSION), 0},
    {"92 c0 03", PERR(VERSION), 0},
    {"92 c3 03", PERR(VERSION), 0},
    {"92 cb 3f f0 00 00 00 00 00 00 03", PERR(VERSION), 0},
    {"92 91 01 03", PERR(VERSION), 0},
    {"95 02 63 a1 78 c0 90", PERR(VERSION), 0},
    {"92 01 00", PERR(UNKNOWN_TYPE), 0},
    {"92 01 11", PERR(MALFORMED), TASKQ_MSG_FAILED},
    {"92 01 13", PERR(MALFORMED), TASKQ_MSG_RETRY},
    {"92 01 14", PERR(UNKNOWN_TYPE), 0},
    {"92 01 cc ff", PERR(UNKNOWN_TYPE), 0},
    {"92 01 cd 01 03", PERR(UNKNOWN_TYPE), 0},
    {"92 01 cf 00 00 00 01 00 00 00 03", PERR(UNKNOWN_TYPE), 0},
    {"92 01 ff", PERR(UNKNOWN_TYPE), 0},
    {"92 01 a1 33", PERR(UNKNOWN_TYPE), 0},
    {"92 01 c0", PERR(UNKNOWN_TYPE), 0},
    {"92 01 ca 40 40 00 00", PERR(UNKNOWN_TYPE), 0},
    {"9f 01 7f 00 00 00 00 00 00 00 00 00 00 00 00 00", PERR(UNKNOWN_TYPE), 0},
};

START_TEST(test_header)
{
    for (size_t k = 0; k < sizeof header_cases / sizeof header_cases[0]; k++)
        expect_hex(header_cases[k].hex, NULL, header_cases[k].code, header_cases[k].type);
}
END_TEST

START_TEST(test_refused_ref)
{
    /* A refused SUBMIT, STATS, FAILED or RETRY still names its req_id;
     * nothing else does. */
    static const struct {
        const char *hex;
        uint64_t ref;
    } cases[] = {
        {"93 01 06 2a", 42},                   /* SUBMIT, tasks missing */
        {"93 01 06 cd 01 00", 256},            /* SUBMIT, tasks missing */
        {"93 01 06 cd 01", 0},                 /* req_id truncated */
        {"94 01 0b 07 c0", 7},                 /* STATS with an extra field */
        {"95 01 11 2a 00 00", 42},             /* FAILED with limit 0 */
        {"93 01 13 2a", 42},                   /* RETRY, job_id missing */
        {"93 01 12 2a", 0},                    /* FAILED_REPLY is no request */
        {"93 01 09 2a", 0},                    /* CANCEL has no req_id */
        {"93 02 06 2a", 0},                    /* another version */
        {"93 01 06 a1 78", 0},                 /* req_id not an integer */
        {"93 01 06 ff", 0},                    /* negative req_id */
        {"", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t buf[16];
        size_t n = 0;
        for (const char *p = cases[k].hex; *p; p++) {
            if (*p == ' ')
                continue;
            unsigned v;
            ck_assert_int_eq(sscanf(p, "%2x", &v), 1);
            buf[n++] = (uint8_t)v;
            p++;
        }
        ck_assert_msg(taskq_msg_ref(buf, n) == cases[k].ref, "case %zu", k);
    }
}
END_TEST

/* The length of the msgpack object at p, found with the public object check. */
static size_t element_end(const uint8_t *p, size_t len)
{
    for (size_t n = 1; n <= len; n++)
        if (taskq_object_check(p, n, UINT32_MAX) == 0)
            return n;
    ck_abort_msg("no element");
    return 0;
}

START_TEST(test_field_count)
{
    int type = _i;
    taskq_buf_t b = {0};
    uint8_t got_type = 0;

    encode_sample(type, &b);
    ck_assert_uint_eq(b.data[0] & 0xf0, 0x90);
    unsigned n = b.data[0] & 0x0f;

    /* One field too many. */
    b.data[0] = (uint8_t)(0x90 | (n + 1));
    ck_assert_int_eq(taskq_buf_append(&b, "\x00", 1), 0);
    expect_code(decode_copy(b.data, b.len, NULL, &got_type), PERR(MALFORMED));
    ck_assert_uint_eq(got_type, type);

    /* One field too few: drop the last element. */
    b.len--;
    size_t off = 1;
    for (unsigned k = 0; k + 1 < n; k++)
        off += element_end(b.data + off, b.len - off);
    b.data[0] = (uint8_t)(0x90 | (n - 1));
    expect_code(decode_copy(b.data, off, NULL, &got_type), PERR(MALFORMED));
    ck_assert_uint_eq(got_type, n - 1 >= 2 ? type : 0);

    /* The right count with a byte after the array. */
    taskq_buf_reset(&b);
    encode_sample(type, &b);
    ck_assert_int_eq(taskq_buf_append(&b, "\x00", 1), 0);
    expect_code(decode_copy(b.data, b.len, NULL, &got_type), PERR(MALFORMED));
    ck_assert_uint_eq(got_type, type);
    taskq_buf_fini(&b);
}
END_TEST

static int want_reserved(const leafcase_t *c, int *ret_type)
{
    if (c->kind == L_VERSION || c->kind == L_TYPE)
        *ret_type = 0;
    return PERR(MALFORMED);
}

START_TEST(test_reserved_byte)
{
    int type = _i;
    each_leaf_hex(type, "c1", NULL, want_reserved, NULL);
    each_leaf_hex(type, "92 00 c1", NULL, want_reserved, NULL);
    each_leaf_hex(type, "81 c1 00", NULL, want_reserved, NULL);
    each_leaf_hex(type, "81 00 c1", NULL, want_reserved, NULL);
}
END_TEST

/* Batch items with the wrong number of fields. */
START_TEST(test_item_shape)
{
    const char *const cases[][2] = {
        {"94 01 06 01 91 95 a1 66 a1 71 00 00 03", "MALFORMED"},
        {"94 01 06 01 91 97 a1 66 a1 71 00 00 03 07 07", "MALFORMED"},
        {"93 01 08 91 93 01 00 01", "MALFORMED"},
        {"93 01 0f 91 91 01", "MALFORMED"},
        {"93 01 0f 91 93 01 01 01", "MALFORMED"},
        {"93 01 0f 91 90", "MALFORMED"},
        {"93 01 0f 91 80", "BAD_FIELD"},
        {"93 01 0f 91 01", "BAD_FIELD"},
        {"93 01 0d 91 95 01 01 a1 66 00 00", "MALFORMED"},
        {"93 01 0e 91 95 01 01 00 07 07", "MALFORMED"},
        {"94 01 12 01 91 97 01 01 a1 66 a1 71 00 00 a0", "MALFORMED"},
        {"94 01 12 01 91 98 01 01 a1 66 a1 71 00 00 a0 91 96 01 a0 a0 00 00 00", "MALFORMED"},
        {"94 01 12 01 91 98 01 01 a1 66 a1 71 00 00 a0 91 01", "BAD_FIELD"},
        {"94 01 12 01 91 98 01 01 a1 66 a1 71 00 00 a0 80", "BAD_FIELD"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        taskq_buf_t b = {0};
        uint8_t got_type = 0;
        unhex(cases[k][0], &b);
        int rc = decode_copy(b.data, b.len, NULL, &got_type);
        ck_assert_msg(strcmp(code_name(rc), cases[k][1]) == 0, "%s: got %s, want %s",
                      cases[k][0], code_name(rc), cases[k][1]);
        ck_assert_uint_eq(got_type, b.data[2]);
        taskq_buf_fini(&b);
    }
}
END_TEST

/* ---- API details ---------------------------------------------------------- */

START_TEST(test_error_names)
{
    int count = 0;
#define CHECK_PERR(name, value, text)                                  \
    ck_assert_str_eq(taskq_perr_name(TASKQ_PERR_##name), #name);       \
    ck_assert_str_eq(taskq_perr_name(-TASKQ_PERR_##name), #name);      \
    ck_assert_str_eq(taskq_perr_text(TASKQ_PERR_##name), text);        \
    ck_assert_str_eq(taskq_perr_text(-TASKQ_PERR_##name), text);       \
    count++;
    TASKQ_PERR_MAP(CHECK_PERR)
#undef CHECK_PERR
    ck_assert_int_eq(count, 18);
    const int unknown[] = {0, 19, -19, 1000, INT_MIN, INT_MAX};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        ck_assert_str_eq(taskq_perr_name(unknown[k]), "UNKNOWN");
        ck_assert_str_eq(taskq_perr_text(unknown[k]), "unknown error code");
    }
}
END_TEST

START_TEST(test_limits_default)
{
    taskq_limits_t lim;
    taskq_limits_default(&lim);
    ck_assert_uint_eq(lim.max_frame, 67108864);
    ck_assert_uint_eq(lim.max_name, 255);
    ck_assert_uint_eq(lim.max_text, 65536);
    ck_assert_uint_eq(lim.max_batch, 10000);
    ck_assert_uint_eq(lim.max_list, 1024);
    ck_assert_uint_eq(lim.max_depth, 64);
}
END_TEST

START_TEST(test_buffer)
{
    taskq_buf_t b = {0};
    uint8_t chunk[37];
    for (size_t k = 0; k < sizeof chunk; k++)
        chunk[k] = (uint8_t)k;
    for (int k = 0; k < 1000; k++)
        ck_assert_int_eq(taskq_buf_append(&b, chunk, sizeof chunk), 0);
    ck_assert_uint_eq(b.len, 1000 * sizeof chunk);
    ck_assert_uint_ge(b.cap, b.len);
    for (int k = 0; k < 1000; k++)
        ck_assert_mem_eq(b.data + k * sizeof chunk, chunk, sizeof chunk);
    size_t cap = b.cap;
    taskq_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_int_eq(taskq_buf_append(&b, NULL, 0), 0);
    ck_assert_int_eq(taskq_buf_append(&b, chunk, SIZE_MAX), -ENOMEM);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(taskq_buf_write(&b, "ab", 2), 0);
    ck_assert_mem_eq(b.data, "ab", 2);
    taskq_buf_fini(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len + b.cap, 0);
    taskq_buf_fini(&b);
}
END_TEST

START_TEST(test_spans)
{
    taskq_span_t s = taskq_span_cstr(NULL), text;
    taskq_buf_t b = {0};

    ck_assert_uint_eq(s.len, 0);
    ck_assert(taskq_span_eq(s, ""));
    ck_assert(taskq_span_eq(s, NULL));
    s = taskq_span_cstr("square");
    ck_assert_uint_eq(s.len, 6);
    ck_assert(taskq_span_eq(s, "square"));
    ck_assert(!taskq_span_eq(s, "squares"));
    ck_assert(!taskq_span_eq(s, "squar"));
    ck_assert(!taskq_span_eq(s, "Square"));

    ck_assert_int_eq(taskq_enc_str(&b, "boom", 4), 0);
    ck_assert_mem_eq(b.data, "\xa4" "boom", 5);
    expect_code(taskq_span_str((taskq_span_t){b.data, b.len}, &text), 0);
    ck_assert(taskq_span_eq(text, "boom"));
    expect_code(taskq_span_str((taskq_span_t){b.data, b.len - 1}, &text), PERR(BAD_FIELD));
    ck_assert_int_eq(taskq_buf_append(&b, "\x00", 1), 0);
    expect_code(taskq_span_str((taskq_span_t){b.data, b.len}, &text), PERR(BAD_FIELD));
    expect_code(taskq_span_str((taskq_span_t){NULL, 0}, &text), PERR(BAD_FIELD));
    expect_code(taskq_span_str((taskq_span_t){(const uint8_t *)"\x07", 1}, &text),
                PERR(BAD_FIELD));
    expect_code(taskq_span_str((taskq_span_t){(const uint8_t *)"\xc4\x00", 2}, &text),
                PERR(BAD_FIELD));
    taskq_buf_reset(&b);
    ck_assert_int_eq(taskq_enc_str(&b, "", 0), 0);
    expect_code(taskq_span_str((taskq_span_t){b.data, b.len}, &text), 0);
    ck_assert_uint_eq(text.len, 0);
    taskq_buf_reset(&b);
    char big[300];
    memset(big, 'z', sizeof big);
    ck_assert_int_eq(taskq_enc_str(&b, big, sizeof big), 0);
    ck_assert_uint_eq(b.data[0], 0xda);
    expect_code(taskq_span_str((taskq_span_t){b.data, b.len}, &text), 0);
    ck_assert_uint_eq(text.len, sizeof big);
    taskq_buf_fini(&b);
}
END_TEST

START_TEST(test_object_check)
{
    const struct {
        const char *hex;
        uint32_t depth;
        int code;
    } cases[] = {
        {"", 64, PERR(TRUNCATED)},
        {"07", 0, 0},
        {"90", 0, PERR(TOO_DEEP)},
        {"90", 1, 0},
        {"91 91 90", 2, PERR(TOO_DEEP)},
        {"91 91 90", 3, 0},
        {"82 a1 61 91 07 a1 62 80", 2, 0},
        {"82 a1 61 91 07 a1 62 80", 1, PERR(TOO_DEEP)},
        {"82 a1 61 91 07 a1 62", 64, PERR(TRUNCATED)},
        {"07 07", 64, PERR(MALFORMED)},
        {"c1", 64, PERR(MALFORMED)},
        {"92 07 c1", 64, PERR(MALFORMED)},
        {"d4 01", 64, PERR(TRUNCATED)},
        {"d4 01 2a", 64, 0},
        {"c7 02 05 aa bb", 64, 0},
        {"cb 00 00 00 00 00 00 00", 64, PERR(TRUNCATED)},
        {"ca 00 00 00 00", 64, 0},
        {"c3", 64, 0},
        {"c4 00", 64, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        taskq_buf_t b = {0};
        unhex(cases[k].hex, &b);
        expect_code_at(cases[k].hex, taskq_object_check(b.data, b.len, cases[k].depth),
                       cases[k].code);
        taskq_buf_fini(&b);
    }
}
END_TEST

START_TEST(test_untouched_on_error)
{
    taskq_msg_t m, before;
    taskq_buf_t b = {0};
    memset(&m, 0xab, sizeof m);
    before = m;
    encode_sample(TASKQ_MSG_SUBMIT, &b);
    ck_assert_int_eq(taskq_buf_append(&b, "\xc1", 1), 0);
    expect_code(taskq_msg_decode(b.data, b.len, NULL, &m, NULL), PERR(MALFORMED));
    ck_assert_mem_eq(&m, &before, sizeof m);
    taskq_buf_reset(&b);
    taskq_submit_item_t t = submit_items[0];
    t.priority = 5000;
    ck_assert_int_eq(taskq_enc_submit_begin(&b, 1, 1), 0);
    ck_assert_int_eq(taskq_enc_submit_item(&b, &t), 0);
    expect_code(taskq_msg_decode(b.data, b.len, NULL, &m, NULL), PERR(BAD_FIELD));
    ck_assert_mem_eq(&m, &before, sizeof m);
    taskq_buf_fini(&b);
}
END_TEST

/* An iterator over bytes that changed after the decode reports an error. */
START_TEST(test_iter_changed)
{
    taskq_buf_t b = {0};
    taskq_msg_t m;
    uint64_t job;
    taskq_abandon_item_t a;

    encode_sample(TASKQ_MSG_WATCH, &b);
    expect_code(taskq_msg_decode(b.data, b.len, NULL, &m, NULL), 0);
    taskq_iter_t it = m.u.jobs;
    ck_assert_int_eq(taskq_iter_u64(&it, &job), 1);
    ck_assert_uint_eq(job, watch_jobs[0]);
    *(uint8_t *)it.p = 0xa1; /* the next job id becomes a str */
    ck_assert_int_eq(taskq_iter_u64(&it, &job), PERR(BAD_FIELD));
    ck_assert_uint_eq(job, watch_jobs[0]);
    ck_assert_uint_eq(it.left, COUNT(watch_jobs) - 1);

    taskq_buf_reset(&b);
    encode_sample(TASKQ_MSG_ABANDON, &b);
    expect_code(taskq_msg_decode(b.data, b.len, NULL, &m, NULL), 0);
    it = m.u.abandon;
    it.end--; /* cut short */
    ck_assert_int_eq(taskq_iter_abandon(&it, &a), 1);
    ck_assert_int_eq(taskq_iter_abandon(&it, &a), PERR(TRUNCATED));
    taskq_buf_fini(&b);
}
END_TEST

/* ---- Vectors -------------------------------------------------------------- */

typedef struct vector {
    char name[64];
    int line;              /* where its block starts */
    taskq_buf_t bytes;     /* the frame */
    taskq_limits_t lim;    /* defaults unless a limit line says otherwise */
    taskq_buf_t expect;    /* result line and field lines, NUL-terminated */
    bool noncanonical;     /* the encoders write these fields shorter */
} vector_t;

typedef struct vectors {
    vector_t *v;
    size_t n;
} vectors_t;

static void set_limit(vector_t *v, const char *spec)
{
    char name[32];
    unsigned long value;
    ck_assert_msg(sscanf(spec, "%31[a-z_]=%lu", name, &value) == 2, "line %d: bad limit",
                  v->line);
    uint32_t *field = strcmp(name, "max_frame") == 0   ? &v->lim.max_frame
                      : strcmp(name, "max_name") == 0  ? &v->lim.max_name
                      : strcmp(name, "max_text") == 0  ? &v->lim.max_text
                      : strcmp(name, "max_batch") == 0 ? &v->lim.max_batch
                      : strcmp(name, "max_list") == 0  ? &v->lim.max_list
                      : strcmp(name, "max_depth") == 0 ? &v->lim.max_depth
                                                       : NULL;
    ck_assert_msg(field != NULL, "line %d: unknown limit %s", v->line, name);
    *field = (uint32_t)value;
}

static void load_vectors(vectors_t *vs)
{
    FILE *f = fopen(VECTORS_FILE, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    vector_t *v = NULL;
    int lineno = 0;

    ck_assert_msg(f != NULL, "cannot open %s", VECTORS_FILE);
    *vs = (vectors_t){0};
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (line[0] == '#')
            continue;
        if (line[0] == '\0') {
            v = NULL;
            continue;
        }
        if (!v) {
            ck_assert_msg(strncmp(line, "name ", 5) == 0, "line %d: a block starts with name",
                          lineno);
            vs->v = realloc(vs->v, (vs->n + 1) * sizeof *vs->v);
            ck_assert_ptr_nonnull(vs->v);
            v = &vs->v[vs->n++];
            *v = (vector_t){.line = lineno, .lim = default_limits()};
            snprintf(v->name, sizeof v->name, "%s", line + 5);
            for (size_t k = 0; k + 1 < vs->n; k++)
                ck_assert_msg(strcmp(vs->v[k].name, v->name) != 0, "line %d: %s twice", lineno,
                              v->name);
        } else if (strncmp(line, "hex", 3) == 0 && (line[3] == ' ' || line[3] == '\0')) {
            unhex(line + 3, &v->bytes);
        } else if (strncmp(line, "limit ", 6) == 0) {
            set_limit(v, line + 6);
        } else if (strcmp(line, "noncanonical") == 0) {
            v->noncanonical = true;
        } else {
            ck_assert_msg(strncmp(line, "ok ", 3) == 0 || strncmp(line, "error ", 6) == 0 ||
                              (v->expect.len > 0 && strchr(line, '=') != NULL),
                          "line %d: unexpected \"%s\"", lineno, line);
            ck_assert_int_eq(taskq_buf_append(&v->expect, line, (size_t)got), 0);
            ck_assert_int_eq(taskq_buf_append(&v->expect, "\n", 1), 0);
        }
    }
    free(line);
    fclose(f);
    for (size_t k = 0; k < vs->n; k++)
        ck_assert_int_eq(taskq_buf_append(&vs->v[k].expect, "", 1), 0);
}

static void free_vectors(vectors_t *vs)
{
    for (size_t k = 0; k < vs->n; k++) {
        taskq_buf_fini(&vs->v[k].bytes);
        taskq_buf_fini(&vs->v[k].expect);
    }
    free(vs->v);
}

START_TEST(test_vectors)
{
    vectors_t vs;
    unsigned ok_types = 0, codes = 0, errors = 0;

    load_vectors(&vs);
    for (size_t k = 0; k < vs.n; k++) {
        vector_t *v = &vs.v[k];
        ck_assert_msg(v->expect.len > 1, "vector %s: no result line", v->name);
        char *got = describe(v->bytes.data, v->bytes.len, &v->lim);
        ck_assert_msg(strcmp(got, (char *)v->expect.data) == 0,
                      "vector %s (line %d):\nwant:\n%sgot:\n%s", v->name, v->line,
                      (char *)v->expect.data, got);
        free(got);
        /* Also with exactly the bytes the vector has, under AddressSanitizer. */
        taskq_msg_t m;
        int rc = decode_copy(v->bytes.data, v->bytes.len, &v->lim, NULL);
        if (rc != 0) {
            ck_assert_msg(!v->noncanonical, "vector %s: noncanonical error", v->name);
            codes |= 1u << -rc;
            errors++;
            continue;
        }
        expect_code(taskq_msg_decode(v->bytes.data, v->bytes.len, &v->lim, &m, NULL), 0);
        ok_types |= 1u << m.type;
        taskq_buf_t again = {0};
        reencode(&m, &again);
        bool same = again.len == v->bytes.len && memcmp(again.data, v->bytes.data, again.len) == 0;
        ck_assert_msg(same != v->noncanonical, "vector %s: the encoders %s these bytes", v->name,
                      same ? "write" : "do not write");
        taskq_buf_fini(&again);
    }
    ck_assert_uint_eq(ok_types, ((1u << NTYPES) - 1) & ~1u);
    ck_assert_uint_ge(errors, 12);
    /* Every code the decoder reports has a vector. */
    ck_assert_uint_eq(codes, ((1u << (TASKQ_PERR_TOO_DEEP + 1)) - 1) & ~1u);
    free_vectors(&vs);
}
END_TEST

/* Every code block of PROTOCOL.md section 7 is a vector, byte for byte. */
START_TEST(test_protocol_examples)
{
    FILE *f = fopen(PROTOCOL_FILE, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    vectors_t vs;
    const vector_t *cur = NULL;
    bool in_section = false, in_block = false, first = false;
    taskq_buf_t bytes = {0};
    unsigned types = 0, blocks = 0;

    ck_assert_msg(f != NULL, "cannot open %s", PROTOCOL_FILE);
    load_vectors(&vs);
    while ((got = getline(&line, &cap, f)) >= 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (strncmp(line, "## ", 3) == 0)
            in_section = strncmp(line, "## 7.", 5) == 0;
        if (!in_section)
            continue;
        if (strncmp(line, "```", 3) == 0) {
            if (in_block) {
                ck_assert_ptr_nonnull(cur);
                ck_assert_msg(bytes.len == cur->bytes.len &&
                                  memcmp(bytes.data, cur->bytes.data, bytes.len) == 0,
                              "PROTOCOL.md example %s differs from its vector", cur->name);
                if (cur->bytes.len > 0) {
                    taskq_msg_t m;
                    if (taskq_msg_decode(cur->bytes.data, cur->bytes.len, &cur->lim, &m, NULL) == 0)
                        types |= 1u << m.type;
                }
                blocks++;
            }
            in_block = !in_block;
            first = true;
            taskq_buf_reset(&bytes);
            continue;
        }
        if (!in_block)
            continue;
        if (first) {
            char name[64];
            ck_assert_msg(sscanf(line, "# vector %63s", name) == 1,
                          "PROTOCOL.md: a section 7 block starts \"%s\"", line);
            cur = NULL;
            for (size_t k = 0; k < vs.n; k++)
                if (strcmp(vs.v[k].name, name) == 0)
                    cur = &vs.v[k];
            ck_assert_msg(cur != NULL, "PROTOCOL.md: no vector %s", name);
            first = false;
            continue;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        unhex(line, &bytes);
    }
    ck_assert(!in_block);
    ck_assert_uint_eq(types, ((1u << NTYPES) - 1) & ~1u);
    ck_assert_uint_ge(blocks, 16);
    free(line);
    fclose(f);
    taskq_buf_fini(&bytes);
    free_vectors(&vs);
}
END_TEST

/* ---- Random input ------------------------------------------------------- */

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Bytes that steer a msgpack reader into its interesting paths. */
static const uint8_t interesting[] = {
    0x00, 0x01, 0x03, 0x06, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x92, 0x96, 0x9f,
    0xa0, 0xa1, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc7, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0,
    0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
};

static uint8_t random_byte(uint64_t *s)
{
    uint64_t r = next_rand(s);
    return r & 1 ? interesting[(r >> 8) % sizeof interesting] : (uint8_t)(r >> 8);
}

/* Decode and, on success, check that the message survives a re-encoding. */
static void fuzz_one(const uint8_t *p, size_t len, const taskq_limits_t *lim)
{
    uint8_t type = 0xee;
    int rc = decode_copy(p, len, lim, &type);
    if (rc == PERR(TRUNCATED)) {
        ck_assert_uint_eq(type, 0xee);
        return;
    }
    ck_assert_uint_lt(type, NTYPES);
    if (rc != 0)
        return;
    taskq_msg_t m;
    taskq_buf_t again = {0};
    expect_code(taskq_msg_decode(p, len, lim, &m, NULL), 0);
    reencode(&m, &again);
    ck_assert_uint_le(again.len, len);
    char *a = describe(p, len, lim), *b = describe(again.data, again.len, lim);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    taskq_buf_fini(&again);
}

START_TEST(test_random_bytes)
{
    uint64_t seed = 0x5eed0001;
    uint8_t buf[96];
    const taskq_limits_t small = small_limits();
    for (int n = 0; n < 100000; n++) {
        size_t len = next_rand(&seed) % sizeof buf;
        /* Mostly frames that start like a message. */
        size_t k = 0;
        if (len >= 3 && next_rand(&seed) % 4 != 0) {
            buf[0] = (uint8_t)(0x90 | (next_rand(&seed) % 16));
            buf[1] = 0x01;
            buf[2] = (uint8_t)(next_rand(&seed) % (TASKQ_MSG_MAX + 2));
            k = 3;
        }
        for (; k < len; k++)
            buf[k] = random_byte(&seed);
        fuzz_one(buf, len, n % 2 ? &small : NULL);
    }
}
END_TEST

START_TEST(test_random_mutations)
{
    uint64_t seed = 0x5eed0002;
    taskq_buf_t base[NTYPES][2], cur = {0};
    bld_t b = {0};
    const taskq_limits_t small = small_limits();

    for (int type = TASKQ_MSG_MIN; type <= TASKQ_MSG_MAX; type++) {
        base[type][0] = (taskq_buf_t){0};
        encode_sample(type, &base[type][0]);
        build(&b, type, -1, no_repl, 1 + type % 8);
        base[type][1] = b.buf;
        b.buf = (taskq_buf_t){0};
    }
    for (int n = 0; n < 100000; n++) {
        const taskq_buf_t *src =
            &base[TASKQ_MSG_MIN + next_rand(&seed) % TASKQ_MSG_MAX][next_rand(&seed) % 2];
        taskq_buf_reset(&cur);
        ck_assert_int_eq(taskq_buf_append(&cur, src->data, src->len), 0);
        int edits = 1 + (int)(next_rand(&seed) % 4);
        for (int e = 0; e < edits && cur.len > 0; e++) {
            size_t at = next_rand(&seed) % cur.len;
            switch (next_rand(&seed) % 5) {
            case 0: /* replace a byte */
                cur.data[at] = random_byte(&seed);
                break;
            case 1: /* flip a bit */
                cur.data[at] ^= (uint8_t)(1u << (next_rand(&seed) % 8));
                break;
            case 2: /* insert a byte */
                ck_assert_int_eq(taskq_buf_append(&cur, "", 1), 0);
                memmove(cur.data + at + 1, cur.data + at, cur.len - at - 1);
                cur.data[at] = random_byte(&seed);
                break;
            case 3: /* delete a byte */
                memmove(cur.data + at, cur.data + at + 1, cur.len - at - 1);
                cur.len--;
                break;
            default: /* cut the end */
                cur.len = at;
                break;
            }
        }
        fuzz_one(cur.data, cur.len, n % 2 ? &small : NULL);
    }
    for (int type = TASKQ_MSG_MIN; type <= TASKQ_MSG_MAX; type++) {
        taskq_buf_fini(&base[type][0]);
        taskq_buf_fini(&base[type][1]);
    }
    taskq_buf_fini(&cur);
}
END_TEST

/* ---- Main ------------------------------------------------------------------ */

/* `check_proto --vector HEX`: print the result block a vector of these
 * bytes needs.  It runs as a test of its own so that the helpers' checks work. */
static const char *vector_hex;

START_TEST(test_print_vector)
{
    taskq_buf_t b = {0};
    taskq_limits_t lim = default_limits();
    unhex(vector_hex, &b);
    char *text = describe(b.data, b.len, &lim);
    fputs(text, stdout);
    free(text);
    taskq_buf_fini(&b);
}
END_TEST

static int print_vector(const char *hex)
{
    Suite *s = suite_create("vector");
    TCase *tc = tcase_create("print");
    tcase_add_test(tc, test_print_vector);
    suite_add_tcase(s, tc);
    vector_hex = hex;
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    if (failed)
        srunner_print(sr, CK_NORMAL);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static TCase *tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--vector") == 0)
        return print_vector(argv[2]);

    Suite *s = suite_create("proto");
    const int lo = TASKQ_MSG_MIN, hi = TASKQ_MSG_MAX + 1;
    TCase *tc;

    tc = tcase(s, "roundtrip", 30);
    tcase_add_loop_test(tc, test_roundtrip, lo, hi);
    tcase_add_loop_test(tc, test_wide_encodings, lo, hi);
    tcase_add_test(tc, test_client_hello);

    tc = tcase(s, "truncation", 30);
    tcase_add_loop_test(tc, test_truncated_prefixes, lo, hi);
    tcase_add_loop_test(tc, test_huge_lengths, lo, hi);
    tcase_add_test(tc, test_huge_lengths_top);

    tc = tcase(s, "types", 30);
    tcase_add_loop_test(tc, test_wrong_types, lo, hi);
    tcase_add_loop_test(tc, test_integer_ranges, lo, hi);

    tc = tcase(s, "limits", 30);
    tcase_add_loop_test(tc, test_string_limits, lo, hi);
    tcase_add_test(tc, test_batch_limits);
    tcase_add_test(tc, test_list_limits);
    tcase_add_loop_test(tc, test_frame_limit, lo, hi);
    tcase_add_loop_test(tc, test_depth_limits, lo, hi);
    tcase_add_test(tc, test_depth_cap);

    tc = tcase(s, "ranges", 30);
    tcase_add_test(tc, test_hello_roles);
    tcase_add_test(tc, test_submit_ranges);
    tcase_add_test(tc, test_outcome_ranges);
    tcase_add_test(tc, test_failed_ranges);

    tc = tcase(s, "shape", 30);
    tcase_add_test(tc, test_header);
    tcase_add_loop_test(tc, test_field_count, lo, hi);
    tcase_add_loop_test(tc, test_reserved_byte, lo, hi);
    tcase_add_test(tc, test_item_shape);

    tc = tcase(s, "api", 30);
    tcase_add_test(tc, test_error_names);
    tcase_add_test(tc, test_limits_default);
    tcase_add_test(tc, test_buffer);
    tcase_add_test(tc, test_spans);
    tcase_add_test(tc, test_object_check);
    tcase_add_test(tc, test_untouched_on_error);
    tcase_add_test(tc, test_iter_changed);
    tcase_add_test(tc, test_refused_ref);

    tc = tcase(s, "vectors", 30);
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_protocol_examples);

    tc = tcase(s, "random", 120);
    tcase_add_test(tc, test_random_bytes);
    tcase_add_test(tc, test_random_mutations);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
