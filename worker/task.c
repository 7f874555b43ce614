/*
 * task.c - the task context a handler sees (argument, ids, seed, the
 * cancelled flag, result and error), and running a handler into the
 * outcome the I/O thread sends in DONE (or taskq_worker_call() returns).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_impl.h"

/* Outcome payloads that need no memory: nil, and the text of a failed
 * allocation as a msgpack str. */
static const uint8_t nil_object[] = {0xc0};
static const uint8_t oom_text[] = "\xad"
                                  "out of memory";

const void *taskq_task_arg(const taskq_task_t *t, size_t *ret_len)
{
    if (ret_len)
        *ret_len = t->arg_len;
    return t->arg;
}

const char *taskq_task_function(const taskq_task_t *t)
{
    return t->fn ? t->fn->name : "";
}

uint64_t taskq_task_job_id(const taskq_task_t *t)
{
    return t->job_id;
}

uint32_t taskq_task_attempt(const taskq_task_t *t)
{
    return t->attempt;
}

uint64_t taskq_task_seed(const taskq_task_t *t)
{
    return t->seed;
}

bool taskq_task_cancelled(const taskq_task_t *t)
{
    return atomic_load_explicit(&t->cancelled, memory_order_relaxed);
}

int taskq_task_set_result(taskq_task_t *t, const void *result, size_t len)
{
    if (!t || (!result && len) || taskq_object_check(result, len, t->limits->max_depth) != 0)
        return TASKQ_EINVAL;
    taskq_buf_reset(&t->out);
    t->set = true;
    t->status = TASKQ_DONE_OK;
    if (taskq_buf_append(&t->out, result, len) != 0) {
        t->status = TASKQ_DONE_ERROR;
        taskq_buf_reset(&t->out);
        return TASKQ_ENOMEM;
    }
    return 0;
}

/*
 * Make the outcome an error with text (len bytes, capped at max_text).
 * An error outcome whose buffer stays empty reports "out of memory".
 */
static void set_error(taskq_task_t *t, const char *text, size_t len)
{
    if (len > t->limits->max_text)
        len = t->limits->max_text;
    taskq_buf_reset(&t->out);
    t->set = true;
    t->status = TASKQ_DONE_ERROR;
    if (text && taskq_enc_str(&t->out, text, len) != 0)
        taskq_buf_reset(&t->out);
}

/* The body of taskq_task_error and taskq_task_retry: format the text and
 * make it the outcome, with status. */
static int set_error_v(taskq_task_t *t, uint8_t status, const char *fmt, va_list ap0)
{
    va_list ap;
    va_copy(ap, ap0);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = n > 0 ? (size_t)n : 0;
    if (len > t->limits->max_text)
        len = t->limits->max_text;
    char *text = malloc(len + 1);
    if (text) {
        va_copy(ap, ap0);
        vsnprintf(text, len + 1, fmt, ap);
        va_end(ap);
    }
    set_error(t, text, len);
    t->status = status;
    free(text);
    return TASKQ_EFAILED;
}

int taskq_task_error(taskq_task_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = set_error_v(t, TASKQ_DONE_ERROR, fmt, ap);
    va_end(ap);
    return rc;
}

int taskq_task_retry(taskq_task_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = set_error_v(t, TASKQ_DONE_RETRY, fmt, ap);
    va_end(ap);
    return rc;
}

/* Point t->payload at the outcome the handler left. */
static void task_payload(taskq_task_t *t)
{
    if (!t->set) {
        t->status = TASKQ_DONE_OK;
        t->payload = (taskq_span_t){nil_object, sizeof nil_object};
    } else if (t->out.len) {
        t->payload = (taskq_span_t){t->out.data, t->out.len};
    } else {
        t->status = TASKQ_DONE_ERROR;
        t->payload = (taskq_span_t){oom_text, sizeof oom_text - 1};
    }
}

void taskq__task_fail(taskq_task_t *t, const char *text)
{
    set_error(t, text, strlen(text));
    task_payload(t);
}

void taskq__task_run(taskq_task_t *t)
{
    if (!t->fn) {
        taskq__task_fail(t, "no such function");
        return;
    }
    if (taskq_task_cancelled(t)) {
        /* Abandoned before it started: the broker ignores this outcome. */
        taskq__task_fail(t, "abandoned before it started");
        return;
    }
    int rc = t->fn->handler(t, t->fn->userdata);
    if (rc != 0 && !(t->set && (t->status == TASKQ_DONE_ERROR || t->status == TASKQ_DONE_RETRY)))
        taskq_task_error(t, "handler returned %d", rc);
    task_payload(t);
}

int taskq__task_outcome(const taskq_task_t *t, void **ret_out, size_t *ret_len)
{
    taskq_span_t p = t->payload;
    int rc = 0;
    if (t->status != TASKQ_DONE_OK) {
        rc = t->status == TASKQ_DONE_RETRY ? TASKQ_ERETRY : TASKQ_EFAILED;
        /* Error payloads are msgpack strs (set_error and oom_text make
         * nothing else): hand out the text inside. */
        taskq_span_str(p, &p);
    }
    char *out = malloc(p.len + 1);
    if (!out)
        return TASKQ_ENOMEM;
    if (p.len)
        memcpy(out, p.ptr, p.len);
    out[p.len] = '\0';
    *ret_out = out;
    *ret_len = p.len;
    return rc;
}

void taskq__task_return(taskq_task_t *t)
{
    static const uint8_t nil = 0xc0;
    t->status = TASKQ_DONE_RETURNED;
    t->payload = (taskq_span_t){&nil, 1};
}

void taskq__task_free(taskq_task_t *t)
{
    taskq_buf_fini(&t->out);
    free(t);
}
