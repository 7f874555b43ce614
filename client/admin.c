/*
 * admin.c - requests about jobs that are no longer a client's own futures:
 * listing the failed jobs the broker retains (FAILED, one page per call,
 * copied into one allocation) and queueing one of them again (RETRY).
 */
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"

/* The most jobs one FAILED may ask for: the protocol's default max_batch. */
#define FAILED_LIMIT_MAX 10000

typedef struct failed_args {
    uint64_t after;
    uint32_t limit;
} failed_args_t;

static int encode_failed(taskq_buf_t *b, uint64_t req_id, const void *arg)
{
    const failed_args_t *a = arg;
    return taskq_enc_failed(b, req_id, a->after, a->limit);
}

static int encode_retry(taskq_buf_t *b, uint64_t req_id, const void *arg)
{
    return taskq_enc_retry(b, req_id, *(const uint64_t *)arg);
}

/* Copies of spans as NUL-terminated strings, at the end of a page. */
typedef struct strings {
    char *p;
} strings_t;

static const char *str_copy(strings_t *s, taskq_span_t v)
{
    char *out = s->p;
    if (v.len)
        memcpy(out, v.ptr, v.len);
    out[v.len] = '\0';
    s->p += v.len + 1;
    return out;
}

/* The outcome's text of a job (its payload is one str: checked by the
 * decoder). */
static taskq_span_t job_error(const taskq_failed_item_t *j)
{
    taskq_span_t text = {NULL, 0};
    taskq_span_str(j->payload, &text);
    return text;
}

/* Bytes a page of the jobs in it takes beyond its array of jobs: the
 * histories, then the strings.  Fails only if the frame changed. */
static int page_size(taskq_iter_t it, size_t *ret_entries, size_t *ret_chars)
{
    taskq_failed_item_t j;
    taskq_history_item_t e;
    size_t entries = 0, chars = 0;
    int rc;
    while ((rc = taskq_iter_failed(&it, &j)) == 1) {
        chars += j.function.len + j.queue.len + job_error(&j).len + 3;
        entries += j.history.left;
        while ((rc = taskq_iter_history(&j.history, &e)) == 1)
            chars += e.worker.len + e.host.len + e.cause.len + 3;
        if (rc < 0)
            return rc;
    }
    *ret_entries = entries;
    *ret_chars = chars;
    return rc;
}

static taskq_state_t failed_state(uint8_t status)
{
    return status == TASKQ_STATUS_LOST       ? TASKQ_STATE_LOST
           : status == TASKQ_STATUS_TIMEDOUT ? TASKQ_STATE_RUNLIMIT
                                             : TASKQ_STATE_FAILED;
}

/* Copy the jobs of a FAILED_REPLY into one allocation. */
static int page_copy(taskq_iter_t it, taskq_failed_t **ret_jobs, size_t *ret_count)
{
    size_t n = it.left, entries, chars;
    if (page_size(it, &entries, &chars) < 0)
        return TASKQ_EPROTO;
    if (n == 0) {
        *ret_jobs = NULL;
        *ret_count = 0;
        return 0;
    }
    /* Both arrays hold pointers and 64-bit integers: the attempts start
     * aligned right after the jobs, and the strings need no alignment. */
    taskq_failed_t *jobs = malloc(n * sizeof *jobs + entries * sizeof(taskq_failed_attempt_t) +
                                  chars);
    if (!jobs)
        return TASKQ_ENOMEM;
    taskq_failed_attempt_t *at = (taskq_failed_attempt_t *)(jobs + n);
    strings_t s = {(char *)(at + entries)};
    taskq_failed_item_t j;
    taskq_history_item_t e;
    for (size_t k = 0; taskq_iter_failed(&it, &j) == 1; k++) {
        jobs[k] = (taskq_failed_t){
            .job_id = j.job_id,
            .state = failed_state(j.status),
            .function = str_copy(&s, j.function),
            .queue = str_copy(&s, j.queue),
            .attempts = j.attempts,
            .finished_ms = j.finished_ms,
            .error = str_copy(&s, job_error(&j)),
            .history = at,
            .n_history = j.history.left,
        };
        while (taskq_iter_history(&j.history, &e) == 1) {
            *at++ = (taskq_failed_attempt_t){
                .attempt = e.attempt,
                .worker = str_copy(&s, e.worker),
                .host = str_copy(&s, e.host),
                .pid = e.pid,
                .started_ms = e.started_ms,
                .ended_ms = e.ended_ms,
                .cause = str_copy(&s, e.cause),
            };
        }
    }
    *ret_jobs = jobs;
    *ret_count = n;
    return 0;
}

int taskq_client_failed(taskq_client_t *c, uint64_t after, uint32_t limit, int32_t timeout_ms,
                        taskq_failed_t **ret_jobs, size_t *ret_count)
{
    if (!c || !ret_jobs || !ret_count || limit == 0 || limit > FAILED_LIMIT_MAX)
        return TASKQ_EINVAL;
    const failed_args_t args = {after, limit};
    const taskq__req_t req = {
        .encode = encode_failed, .arg = &args, .reply = TASKQ_MSG_FAILED_REPLY};
    int rc = taskq__request(c, timeout_ms, &req, NULL);
    if (rc)
        return rc;
    /* The reply decoded once already, with the same limits. */
    taskq_msg_t m;
    if (taskq_msg_decode(c->reply, c->reply_len, &c->limits, &m, NULL) != 0)
        rc = TASKQ_EPROTO;
    else
        rc = page_copy(m.u.failed_reply.jobs, ret_jobs, ret_count);
    free(c->reply);
    c->reply = NULL;
    return rc;
}

void taskq_failed_free(taskq_failed_t **jobs)
{
    if (!jobs)
        return;
    free(*jobs);
    *jobs = NULL;
}

int taskq_client_retry(taskq_client_t *c, uint64_t job_id, int32_t timeout_ms,
                       taskq_future_t **ret_future)
{
    if (!c || !job_id || !ret_future)
        return TASKQ_EINVAL;
    if (c->fatal)
        return c->fatal;
    taskq_future_t *f;
    int rc = taskq__future_new(c, job_id, false, &f);
    if (rc)
        return rc;
    const taskq__req_t req = {
        .encode = encode_retry, .arg = &job_id, .reply = TASKQ_MSG_ACCEPTED, .future = f};
    rc = taskq__request(c, timeout_ms, &req, NULL);
    if (rc == TASKQ_ENOJOB && c->req_sends > 1) {
        /* An earlier send may have queued the job again before its
         * connection went: follow the job rather than say it is gone. */
        taskq_future_destroy(&f);
        return taskq_future_attach(c, job_id, ret_future);
    }
    if (rc) {
        taskq_future_destroy(&f);
        return rc;
    }
    *ret_future = f;
    return 0;
}
