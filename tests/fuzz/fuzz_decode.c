/*
 * fuzz_decode.c - fuzz target: taskq_msg_decode over whole frames under
 * the default or the input's own limits; for a frame it accepts, every
 * item iterator over its lists, the payload and text checks, and a round
 * trip through the encoders.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "taskq_proto.h"

#define ERR(name) (-TASKQ_PERR_##name)
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* The frame being checked, for the spans that must point into it. */
typedef struct frame {
    const uint8_t *p;
    size_t len;
    const taskq_limits_t *lim;
} frame_t;

static bool inside(const frame_t *f, taskq_span_t s)
{
    uintptr_t p = (uintptr_t)s.ptr, start = (uintptr_t)f->p;
    return s.len == 0 || (p >= start && s.len <= f->len && p - start <= f->len - s.len);
}

static void check_name(const frame_t *f, taskq_span_t s, uint32_t max, bool nonempty)
{
    FUZZ_CHECK(inside(f, s), "a name outside the frame");
    FUZZ_CHECK(s.len <= max && (!nonempty || s.len > 0), "name of %zu bytes", s.len);
}

/* An embedded payload: one object within the depth limit. */
static void check_payload(const frame_t *f, taskq_span_t s)
{
    FUZZ_CHECK(s.len > 0 && inside(f, s), "a payload outside the frame");
    int rc = taskq_object_check(s.ptr, s.len, f->lim->max_depth);
    FUZZ_CHECK(rc == 0, "accepted payload fails taskq_object_check: %s", taskq_perr_name(rc));
}

/* The payload of a non-DONE outcome: one str within max_text. */
static void check_text(const frame_t *f, taskq_span_t s)
{
    taskq_span_t text;
    check_payload(f, s);
    FUZZ_CHECK(taskq_span_str(s, &text) == 0, "accepted text payload is not a str");
    FUZZ_CHECK(text.len <= f->lim->max_text, "text of %zu bytes", text.len);
}

/* Where an iterator stands, for checks that one list ends where the next
 * thing begins. */
static const uint8_t *at(const taskq_iter_t *it)
{
    return it->p;
}

/* Bytes of the array header at p (a list the decoder accepted). */
static size_t array_header(const uint8_t *p)
{
    return *p == 0xdc ? 3 : *p == 0xdd ? 5 : 1;
}

/* The names of a HELLO list, collected for the encoder. */
static taskq_span_t *names(const frame_t *f, taskq_iter_t *it, uint32_t *n)
{
    *n = it->left;
    taskq_span_t *v = malloc((*n ? *n : 1) * sizeof *v);
    FUZZ_CHECK(v, "out of memory");
    for (uint32_t k = 0; k < *n; k++) {
        FUZZ_CHECK(taskq_iter_str(it, &v[k]) == 1, "HELLO name %u", k);
        check_name(f, v[k], f->lim->max_name, true);
    }
    FUZZ_CHECK(taskq_iter_str(it, &v[0]) == 0, "HELLO list goes on");
    return v;
}

static int enc_hello(const frame_t *f, const taskq_hello_t *h, taskq_buf_t *out)
{
    taskq_iter_t qi = h->queues, fi = h->functions;
    uint32_t nq, nf;
    FUZZ_CHECK(h->role == TASKQ_ROLE_CLIENT || h->role == TASKQ_ROLE_WORKER, "role %u", h->role);
    bool worker = h->role == TASKQ_ROLE_WORKER;
    FUZZ_CHECK((h->client_id == 0) == worker, "client_id of role %u", h->role);
    FUZZ_CHECK(worker ? h->credit >= 1 && h->credit <= 10000 : h->credit == 0, "credit");
    FUZZ_CHECK(worker ? qi.left >= 1 && fi.left >= 1 : qi.left == 0 && fi.left == 0, "lists");
    FUZZ_CHECK(qi.left <= f->lim->max_list && fi.left <= f->lim->max_list, "lists too long");
    check_name(f, h->name, f->lim->max_name, true);
    check_name(f, h->host, f->lim->max_name, false);
    taskq_span_t *queues = names(f, &qi, &nq);
    FUZZ_CHECK(at(&qi) + array_header(at(&qi)) == at(&fi), "queues end where functions begin");
    taskq_span_t *functions = names(f, &fi, &nf);
    FUZZ_CHECK(at(&fi) == f->p + f->len, "functions end the frame");
    int rc = taskq_enc_hello(out, h, queues, nq, functions, nf);
    free(queues);
    free(functions);
    return rc;
}

/* A batch: 1..max_batch items. */
static void check_batch(const frame_t *f, const taskq_iter_t *it)
{
    FUZZ_CHECK(it->left >= 1 && it->left <= f->lim->max_batch, "batch of %u", it->left);
}

static int enc_submit(const frame_t *f, uint64_t req_id, taskq_iter_t it, taskq_buf_t *out)
{
    taskq_submit_item_t t;
    check_batch(f, &it);
    int rc = taskq_enc_submit_begin(out, req_id, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_submit(&it, &t) == 1, "SUBMIT item %u", k);
        check_name(f, t.function, f->lim->max_name, true);
        check_name(f, t.queue, f->lim->max_name, true);
        FUZZ_CHECK(t.priority >= -1000 && t.priority <= 1000, "priority %d", (int)t.priority);
        FUZZ_CHECK(t.max_attempts >= 1 && t.max_attempts <= 1000, "max_attempts");
        check_payload(f, t.arg);
        rc = taskq_enc_submit_item(out, &t);
    }
    FUZZ_CHECK(taskq_iter_submit(&it, &t) == 0 && at(&it) == f->p + f->len, "SUBMIT end");
    return rc;
}

static int enc_result(const frame_t *f, taskq_iter_t it, taskq_buf_t *out)
{
    taskq_result_item_t r;
    check_batch(f, &it);
    int rc = taskq_enc_result_begin(out, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_result(&it, &r) == 1, "RESULT item %u", k);
        FUZZ_CHECK(r.status <= TASKQ_STATUS_MAX, "status %u", r.status);
        if (r.status == TASKQ_STATUS_DONE)
            check_payload(f, r.payload);
        else
            check_text(f, r.payload);
        rc = taskq_enc_result_item(out, &r);
    }
    FUZZ_CHECK(taskq_iter_result(&it, &r) == 0 && at(&it) == f->p + f->len, "RESULT end");
    return rc;
}

static int enc_jobs(const frame_t *f, uint8_t type, taskq_iter_t it, taskq_buf_t *out)
{
    check_batch(f, &it);
    uint32_t n = it.left;
    uint64_t *jobs = malloc(n * sizeof *jobs);
    FUZZ_CHECK(jobs, "out of memory");
    for (uint32_t k = 0; k < n; k++)
        FUZZ_CHECK(taskq_iter_u64(&it, &jobs[k]) == 1, "job %u", k);
    FUZZ_CHECK(taskq_iter_u64(&it, &jobs[0]) == 0 && at(&it) == f->p + f->len, "jobs end");
    int rc = taskq_enc_jobs(out, type, jobs, n);
    free(jobs);
    return rc;
}

static int enc_tasks(const frame_t *f, taskq_iter_t it, taskq_buf_t *out)
{
    taskq_task_item_t t;
    check_batch(f, &it);
    int rc = taskq_enc_tasks_begin(out, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_task(&it, &t) == 1, "TASKS item %u", k);
        check_name(f, t.function, f->lim->max_name, true);
        check_payload(f, t.arg);
        rc = taskq_enc_task_item(out, &t);
    }
    FUZZ_CHECK(taskq_iter_task(&it, &t) == 0 && at(&it) == f->p + f->len, "TASKS end");
    return rc;
}

static int enc_done(const frame_t *f, taskq_iter_t it, taskq_buf_t *out)
{
    taskq_done_item_t d;
    check_batch(f, &it);
    int rc = taskq_enc_done_begin(out, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_done(&it, &d) == 1, "DONE item %u", k);
        FUZZ_CHECK(d.status <= TASKQ_DONE_RETRY, "status %u", d.status);
        if (d.status == TASKQ_DONE_ERROR || d.status == TASKQ_DONE_RETRY)
            check_text(f, d.payload);
        else
            check_payload(f, d.payload);
        rc = taskq_enc_done_item(out, &d);
    }
    FUZZ_CHECK(taskq_iter_done(&it, &d) == 0 && at(&it) == f->p + f->len, "DONE end");
    return rc;
}

static int enc_abandon(const frame_t *f, taskq_iter_t it, taskq_buf_t *out)
{
    taskq_abandon_item_t a;
    check_batch(f, &it);
    int rc = taskq_enc_abandon_begin(out, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_abandon(&it, &a) == 1, "ABANDON item %u", k);
        rc = taskq_enc_abandon_item(out, &a);
    }
    FUZZ_CHECK(taskq_iter_abandon(&it, &a) == 0 && at(&it) == f->p + f->len, "ABANDON end");
    return rc;
}

static int enc_failed_reply(const frame_t *f, uint64_t req_id, taskq_iter_t it,
                            taskq_buf_t *out)
{
    taskq_failed_item_t j;
    taskq_history_item_t e;
    FUZZ_CHECK(it.left <= f->lim->max_batch, "FAILED_REPLY of %u jobs", it.left);
    int rc = taskq_enc_failed_reply_begin(out, req_id, it.left);
    for (uint32_t k = 0, n = it.left; k < n && rc == 0; k++) {
        FUZZ_CHECK(taskq_iter_failed(&it, &j) == 1, "FAILED_REPLY job %u", k);
        FUZZ_CHECK(j.status == TASKQ_STATUS_FAILED || j.status == TASKQ_STATUS_LOST ||
                       j.status == TASKQ_STATUS_TIMEDOUT,
                   "status %u", j.status);
        check_name(f, j.function, f->lim->max_name, true);
        check_name(f, j.queue, f->lim->max_name, true);
        check_text(f, j.payload);
        FUZZ_CHECK(j.history.left <= TASKQ_PROTO_MAX_HISTORY, "history of %u", j.history.left);
        rc = taskq_enc_failed_item(out, &j, j.history.left);
        for (uint32_t h = 0, nh = j.history.left; h < nh && rc == 0; h++) {
            FUZZ_CHECK(taskq_iter_history(&j.history, &e) == 1, "history entry %u", h);
            check_name(f, e.worker, f->lim->max_name, false);
            check_name(f, e.host, f->lim->max_name, false);
            check_name(f, e.cause, f->lim->max_text, false);
            rc = taskq_enc_history_item(out, &e);
        }
        FUZZ_CHECK(taskq_iter_history(&j.history, &e) == 0 && at(&j.history) == at(&it),
                   "a history ends where the next job begins");
    }
    FUZZ_CHECK(taskq_iter_failed(&it, &j) == 0 && at(&it) == f->p + f->len, "jobs end");
    return rc;
}

/* Check the fields of m (decoded from f) and encode them into out. */
static void reencode(const frame_t *f, const taskq_msg_t *m, taskq_buf_t *out)
{
    const taskq_span_t *bye = &m->u.bye;
    int rc;
    switch (m->type) {
    case TASKQ_MSG_HELLO:
        rc = enc_hello(f, &m->u.hello, out);
        break;
    case TASKQ_MSG_WELCOME:
        check_name(f, m->u.welcome.version, f->lim->max_name, false);
        rc = taskq_enc_welcome(out, &m->u.welcome);
        break;
    case TASKQ_MSG_HEARTBEAT:
        rc = taskq_enc_heartbeat(out);
        break;
    case TASKQ_MSG_BYE:
        check_name(f, *bye, f->lim->max_text, false);
        rc = taskq_enc_bye(out, *bye);
        break;
    case TASKQ_MSG_ERROR:
        check_name(f, m->u.error.text, f->lim->max_text, false);
        rc = taskq_enc_error(out, m->u.error.code, m->u.error.ref, m->u.error.text);
        break;
    case TASKQ_MSG_SUBMIT:
        rc = enc_submit(f, m->u.submit.req_id, m->u.submit.tasks, out);
        break;
    case TASKQ_MSG_ACCEPTED:
        rc = taskq_enc_accepted(out, m->u.accepted.req_id, m->u.accepted.first_job,
                                m->u.accepted.count);
        break;
    case TASKQ_MSG_RESULT:
        rc = enc_result(f, m->u.results, out);
        break;
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        rc = enc_jobs(f, m->type, m->u.jobs, out);
        break;
    case TASKQ_MSG_STATS:
        rc = taskq_enc_stats(out, m->u.stats_req);
        break;
    case TASKQ_MSG_STATS_REPLY:
        check_payload(f, m->u.stats_reply.map);
        FUZZ_CHECK((m->u.stats_reply.map.ptr[0] & 0xf0) == 0x80 ||
                       m->u.stats_reply.map.ptr[0] == 0xde || m->u.stats_reply.map.ptr[0] == 0xdf,
                   "stats is not a map");
        rc = taskq_enc_stats_reply(out, m->u.stats_reply.req_id, m->u.stats_reply.map);
        break;
    case TASKQ_MSG_TASKS:
        rc = enc_tasks(f, m->u.tasks, out);
        break;
    case TASKQ_MSG_DONE:
        rc = enc_done(f, m->u.done, out);
        break;
    case TASKQ_MSG_ABANDON:
        rc = enc_abandon(f, m->u.abandon, out);
        break;
    case TASKQ_MSG_FAILED:
        FUZZ_CHECK(m->u.failed.limit >= 1 && m->u.failed.limit <= f->lim->max_batch, "limit");
        rc = taskq_enc_failed(out, m->u.failed.req_id, m->u.failed.after, m->u.failed.limit);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        rc = enc_failed_reply(f, m->u.failed_reply.req_id, m->u.failed_reply.jobs, out);
        break;
    case TASKQ_MSG_RETRY:
        rc = taskq_enc_retry(out, m->u.retry.req_id, m->u.retry.job_id);
        break;
    default:
        FUZZ_CHECK(false, "decoded type %u", m->type);
    }
    FUZZ_CHECK(rc == 0, "encoder failed: %d", rc);
}

/* The req_id taskq_msg_ref() must find in an accepted frame. */
static uint64_t ref_of(const taskq_msg_t *m)
{
    switch (m->type) {
    case TASKQ_MSG_SUBMIT: return m->u.submit.req_id;
    case TASKQ_MSG_STATS: return m->u.stats_req;
    case TASKQ_MSG_FAILED: return m->u.failed.req_id;
    case TASKQ_MSG_RETRY: return m->u.retry.req_id;
    default: return 0;
    }
}

/* The input's limits: defaults, with the values the flags name replaced. */
static size_t read_limits(const uint8_t *data, size_t size, taskq_limits_t *lim, bool *null)
{
    uint32_t *fields[] = {&lim->max_frame, &lim->max_name, &lim->max_text,
                          &lim->max_batch, &lim->max_list, &lim->max_depth};
    size_t pos = 1;
    taskq_limits_default(lim);
    *null = size > 0 && (data[0] & 0x40);
    for (unsigned k = 0; k < 6 && size > 0; k++) {
        if (!(data[0] & (1u << k)))
            continue;
        uint32_t v = 0;
        for (unsigned i = 0; i < 4; i++, pos++)
            v = v << 8 | (pos < size ? data[pos] : 0);
        *fields[k] = v;
    }
    return pos < size ? pos : size;
}

/*
 * Input: a flags byte, then a 4-byte big-endian value for each of its bits
 * 0-5 that is set (max_frame, max_name, max_text, max_batch, max_list,
 * max_depth replace the default); bit 6 passes NULL limits instead.  The
 * rest is the frame.
 */
FUZZ_TARGET(decode)
{
    taskq_limits_t lim, wide;
    bool null;
    size_t skip = read_limits(data, size, &lim, &null);
    size_t len = size - skip;
    /* A copy of exactly the frame's bytes, so that any read past either
     * end is caught. */
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf, "out of memory");
    memcpy(buf, data + skip, len);
    if (null)
        taskq_limits_default(&lim);

    taskq_msg_t m, untouched;
    memset(&m, 0xa5, sizeof m);
    untouched = m;
    uint8_t type = 0xee;
    int rc = taskq_msg_decode(buf, len, null ? NULL : &lim, &m, &type);
    FUZZ_CHECK(rc <= 0 && rc >= ERR(TOO_DEEP), "decode returned %d", rc);
    if (rc < 0) {
        FUZZ_CHECK(memcmp(&m, &untouched, sizeof m) == 0, "*ret written on %s",
                   taskq_perr_name(rc));
        if (rc == ERR(TRUNCATED))
            FUZZ_CHECK(type == 0xee, "ret_type written after TRUNCATED");
        else if (rc == ERR(VERSION) || rc == ERR(UNKNOWN_TYPE))
            FUZZ_CHECK(type == 0, "ret_type %u after %s", type, taskq_perr_name(rc));
        else if (rc == ERR(BAD_FIELD) || rc == ERR(TOO_LONG) || rc == ERR(TOO_MANY))
            FUZZ_CHECK(type >= TASKQ_MSG_MIN && type <= TASKQ_MSG_MAX, "ret_type %u", type);
        else
            FUZZ_CHECK(type <= TASKQ_MSG_MAX, "ret_type %u", type);
        free(buf);
        return 0;
    }
    FUZZ_CHECK(type == m.type, "ret_type %u for a decoded %u", type, m.type);
    FUZZ_CHECK(taskq_msg_ref(buf, len) == ref_of(&m), "taskq_msg_ref of type %u", m.type);

    /* Accepted under some limits, accepted under any limits as large. */
    taskq_limits_default(&wide);
    wide = (taskq_limits_t){
        .max_frame = MAX(wide.max_frame, lim.max_frame),
        .max_name = MAX(wide.max_name, lim.max_name),
        .max_text = MAX(wide.max_text, lim.max_text),
        .max_batch = MAX(wide.max_batch, lim.max_batch),
        .max_list = MAX(wide.max_list, lim.max_list),
        .max_depth = MAX(wide.max_depth, lim.max_depth),
    };
    taskq_msg_t m2;
    FUZZ_CHECK(taskq_msg_decode(buf, len, &wide, &m2, NULL) == 0, "refused with larger limits");

    /* The fields encode back to a frame no longer than the input that
     * decodes to the same fields.  One as long is the same bytes, as every
     * encoding but the shortest takes more bytes, except a positive value
     * in int 16, 32 or 64 (0xd1-0xd3), which is as long in uint 16, 32 or
     * 64 (0xcd-0xcf), as the encoders write it. */
    frame_t f = {buf, len, &lim};
    taskq_buf_t out = {0}, again = {0};
    reencode(&f, &m, &out);
    FUZZ_CHECK(out.len <= len, "encoded %zu bytes from %zu", out.len, len);
    for (size_t k = 0; out.len == len && k < len; k++) {
        bool signed_wide = buf[k] >= 0xd1 && buf[k] <= 0xd3 && out.data[k] == buf[k] - 4;
        FUZZ_CHECK(out.data[k] == buf[k] || signed_wide, "byte %zu of a shortest encoding changed",
                   k);
    }
    rc = taskq_msg_decode(out.data, out.len, &lim, &m2, NULL);
    FUZZ_CHECK(rc == 0, "the encoding of accepted fields is refused: %s", taskq_perr_name(rc));
    frame_t f2 = {out.data, out.len, &lim};
    reencode(&f2, &m2, &again);
    FUZZ_CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0,
               "fields changed through encode and decode");
    taskq_buf_fini(&out);
    taskq_buf_fini(&again);
    free(buf);
    return 0;
}
