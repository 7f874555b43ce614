/*
 * future.c - futures and the SUBMIT batches that carry their tasks: submit,
 * flush, ACCEPTED and refusals, resolving, waiting, cancelling, attaching
 * to a job by id, and the accessors of taskq.h.
 */
#include <stdlib.h>
#include <string.h>

#include "client_impl.h"

const char taskq__cancel_mark = 0;

/* Room left in a SUBMIT frame for the array and message headers. */
#define SUBMIT_HEADER_MAX 64
/* Bytes an encoded task takes beyond its names and argument, at most. */
#define SUBMIT_ITEM_OVERHEAD 40
/* An open batch goes out once its tasks take this many bytes, whatever
 * their count: big arguments gain nothing from sharing a frame, and the
 * broker can start on them while later ones are still being submitted. */
#define SUBMIT_BATCH_BYTES (1u << 20)

static bool name_ok(const char *s)
{
    return s && s[0] && strnlen(s, 256) <= 255;
}

int taskq__spec_init(taskq__spec_t *spec, const char *function,
                     const taskq_submit_opts_t *opts)
{
    static const taskq_submit_opts_t none;
    if (!opts)
        opts = &none;
    const char *queue = opts->queue ? opts->queue : "default";
    uint32_t attempts = opts->max_attempts ? opts->max_attempts : 3;
    if (!name_ok(function) || !name_ok(queue) || opts->priority < -1000 ||
        opts->priority > 1000 || attempts > 1000)
        return TASKQ_EINVAL;
    *spec = (taskq__spec_t){
        .function = taskq_span_cstr(function),
        .queue = taskq_span_cstr(queue),
        .priority = opts->priority,
        .timeout_ms = opts->timeout_ms,
        .max_attempts = attempts,
    };
    return 0;
}

static void future_link(taskq_client_t *c, taskq_future_t *f)
{
    f->client = c;
    f->next = c->futures;
    if (c->futures)
        c->futures->prev = f;
    c->futures = f;
    c->n_pending++;
}

static taskq_future_t *future_alloc(void)
{
    taskq_future_t *f = calloc(1, sizeof *f);
    if (f) {
        f->state = TASKQ_STATE_PENDING;
        f->data = f->small;
    }
    return f;
}

/* Take a pending future with a job id out of the job table. */
static void jobs_unlink(taskq_client_t *c, taskq_future_t *f)
{
    taskq_future_t **head = taskq__jobs_find(&c->jobs, f->job_id);
    if (!head)
        return;
    if (*head == f) {
        if (f->twin)
            *head = f->twin;
        else
            taskq__jobs_remove(&c->jobs, f->job_id);
    } else {
        for (taskq_future_t *g = *head; g->twin; g = g->twin) {
            if (g->twin == f) {
                g->twin = f->twin;
                break;
            }
        }
    }
    f->twin = NULL;
}

/* Put a pending future with a job id into the job table (room reserved). */
static void jobs_link(taskq_client_t *c, taskq_future_t *f)
{
    taskq_future_t **head = taskq__jobs_find(&c->jobs, f->job_id);
    if (head) {
        f->twin = (*head)->twin;
        (*head)->twin = f;
    } else {
        taskq__jobs_insert(&c->jobs, f->job_id, f);
    }
}

void taskq__future_resolve(taskq_future_t *f, taskq_state_t state, int code,
                           uint32_t attempts, const void *data, size_t len)
{
    taskq_client_t *c = f->client;
    if (f->batch) {
        f->batch->futs[f->slot] = NULL;
        f->batch = NULL;
    } else if (f->job_id) {
        jobs_unlink(c, f);
    }
    bool text = state != TASKQ_STATE_DONE;
    uint8_t *p = len + text <= sizeof f->small ? f->small : malloc(len + text);
    if (p) {
        if (len)
            memcpy(p, data, len);
        if (text)
            p[len] = '\0';
    } else {
        state = TASKQ_STATE_FAILED;
        code = TASKQ_ENOMEM;
        len = 0;
        p = f->small;
        p[0] = '\0';
    }
    f->state = state;
    f->code = code;
    f->attempts = attempts;
    f->data = p;
    f->len = len;
    c->n_pending--;
    if (f->mapped)
        c->map_resolved++;
}

static void resolve_text(taskq_future_t *f, taskq_state_t state, int code, const char *text)
{
    taskq__future_resolve(f, state, code, 0, text, strlen(text));
}

static void batch_free(taskq__batch_t *b)
{
    taskq_buf_fini(&b->frame);
    free(b);
}

void taskq__batch_drop(taskq_client_t *c, taskq__batch_t *b)
{
    taskq__batch_t **p = &c->sent_head, *prev = NULL;
    while (*p != b) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = b->next;
    if (c->sent_tail == b)
        c->sent_tail = prev;
    batch_free(b);
}

void taskq__batch_refuse(taskq_client_t *c, taskq__batch_t *b, int code, taskq_span_t text)
{
    for (uint32_t i = 0; i < b->count; i++) {
        taskq_future_t *f = b->futs[i];
        if (f && f != TASKQ__CANCELLED)
            taskq__future_resolve(f, TASKQ_STATE_REFUSED, code, 0, text.ptr, text.len);
    }
    taskq__batch_drop(c, b);
}

void taskq__batch_accepted(taskq_client_t *c, taskq__batch_t *b, uint64_t first_job)
{
    size_t n = 0;
    bool room = taskq__ids_reserve(c, b->count) == 0;
    for (uint32_t i = 0; i < b->count; i++) {
        taskq_future_t *f = b->futs[i];
        uint64_t id = first_job + i;
        if (!f)
            continue;
        if (f != TASKQ__CANCELLED) {
            f->batch = NULL;
            f->job_id = id;
            jobs_link(c, f);
        }
        if ((f == TASKQ__CANCELLED || f->cancel) && room)
            c->ids[n++] = id;
    }
    taskq__send_jobs(c, TASKQ_MSG_CANCEL, c->ids, n);
    taskq__batch_drop(c, b);
}

bool taskq__batch_send(taskq_client_t *c, taskq__batch_t *b)
{
    if (b->frame.len > c->max_frame) {
        taskq__batch_refuse(c, b, TASKQ_ETOOBIG,
                            taskq_span_cstr("the batch is larger than the broker's frame limit"));
        return false;
    }
    if (c->conn == TASKQ__CONN_READY)
        taskq__send(c->sock, &b->frame);
    return true;
}

int taskq__flush(taskq_client_t *c)
{
    taskq__batch_t *b = c->open;
    if (!b)
        return 0;
    b->req_id = ++c->next_req;
    if (taskq_enc_submit_begin(&b->frame, b->req_id, b->count) != 0 ||
        taskq_buf_append(&b->frame, c->items.data, c->items.len) != 0) {
        taskq_buf_fini(&b->frame);
        return TASKQ_ENOMEM;
    }
    taskq_buf_reset(&c->items);
    c->open = NULL;
    if (c->sent_tail)
        c->sent_tail->next = b;
    else
        c->sent_head = b;
    c->sent_tail = b;
    taskq__batch_send(c, b);
    return 0;
}

void taskq__fail_all(taskq_client_t *c, taskq_state_t state, int code, const char *text)
{
    for (taskq_future_t *f = c->futures; f; f = f->next) {
        if (f->state == TASKQ_STATE_PENDING)
            resolve_text(f, state, code, text);
    }
    if (c->open) {
        batch_free(c->open);
        c->open = NULL;
        taskq_buf_reset(&c->items);
    }
    while (c->sent_head)
        taskq__batch_drop(c, c->sent_head);
}

int taskq__submit(taskq_client_t *c, const taskq__spec_t *spec, const void *arg,
                  size_t arg_len, bool mapped, taskq_future_t **ret_future)
{
    if ((!arg && arg_len) || taskq_object_check(arg, arg_len, c->limits.max_depth) != 0)
        return TASKQ_EINVAL;
    size_t budget = c->max_frame - SUBMIT_HEADER_MAX;
    size_t size = arg_len + spec->function.len + spec->queue.len + SUBMIT_ITEM_OVERHEAD;
    if (c->open && (c->open->count == c->max_batch || c->items.len + size > budget)) {
        int rc = taskq__flush(c);
        if (rc)
            return rc;
    }
    if (taskq__jobs_reserve(&c->jobs, c->n_pending + 1) != 0)
        return TASKQ_ENOMEM;
    taskq_future_t *f = future_alloc();
    if (!f)
        return TASKQ_ENOMEM;
    f->mapped = mapped;
    if (size > budget || c->fatal) {
        future_link(c, f);
        if (c->fatal)
            resolve_text(f, TASKQ_STATE_REFUSED, c->fatal, TASKQ__VERSION_TEXT);
        else
            resolve_text(f, TASKQ_STATE_REFUSED, TASKQ_ETOOBIG,
                         "the task is larger than the broker's frame limit");
        *ret_future = f;
        return 0;
    }
    if (!c->open) {
        c->open = calloc(1, sizeof *c->open + c->max_batch * sizeof c->open->futs[0]);
        if (!c->open) {
            free(f);
            return TASKQ_ENOMEM;
        }
    }
    taskq_submit_item_t item = {
        .function = spec->function,
        .queue = spec->queue,
        .priority = spec->priority,
        .timeout_ms = spec->timeout_ms,
        .max_attempts = spec->max_attempts,
        .arg = {arg, arg_len},
    };
    size_t len = c->items.len;
    if (taskq_enc_submit_item(&c->items, &item) != 0) {
        c->items.len = len;
        free(f);
        return TASKQ_ENOMEM;
    }
    taskq__batch_t *b = c->open;
    f->batch = b;
    f->slot = b->count;
    b->futs[b->count++] = f;
    future_link(c, f);
    /* A failure here is not the caller's: the batch stays open and goes out
     * with the next submit or wait. */
    if (b->count == c->max_batch || c->items.len >= SUBMIT_BATCH_BYTES)
        taskq__flush(c);
    *ret_future = f;
    return 0;
}

int taskq_submit(taskq_client_t *c, const char *function, const void *arg, size_t arg_len,
                 const taskq_submit_opts_t *opts, taskq_future_t **ret_future)
{
    taskq__spec_t spec;
    if (!c || !ret_future || taskq__spec_init(&spec, function, opts) != 0)
        return TASKQ_EINVAL;
    return taskq__submit(c, &spec, arg, arg_len, false, ret_future);
}

int taskq__future_new(taskq_client_t *c, uint64_t job_id, bool watch,
                      taskq_future_t **ret_future)
{
    if (taskq__jobs_reserve(&c->jobs, c->n_pending + 1) != 0)
        return TASKQ_ENOMEM;
    taskq_future_t *f = future_alloc();
    if (!f)
        return TASKQ_ENOMEM;
    future_link(c, f);
    f->job_id = job_id;
    if (c->fatal) {
        resolve_text(f, TASKQ_STATE_REFUSED, c->fatal, TASKQ__VERSION_TEXT);
    } else if (watch) {
        jobs_link(c, f);
        taskq__send_jobs(c, TASKQ_MSG_WATCH, &job_id, 1);
    }
    *ret_future = f;
    return 0;
}

void taskq__future_expect(taskq_client_t *c, taskq_future_t *f)
{
    jobs_link(c, f);
}

int taskq_future_attach(taskq_client_t *c, uint64_t job_id, taskq_future_t **ret_future)
{
    if (!c || !job_id || !ret_future)
        return TASKQ_EINVAL;
    return taskq__future_new(c, job_id, true, ret_future);
}

static bool future_resolved(const taskq_client_t *c, const void *arg)
{
    const taskq_future_t *f = arg;
    return f->state != TASKQ_STATE_PENDING;
}

int taskq_future_wait(taskq_future_t *f, int32_t timeout_ms)
{
    if (!f)
        return TASKQ_EINVAL;
    if (f->state == TASKQ_STATE_PENDING) {
        int rc = taskq__pump(f->client, timeout_ms, future_resolved, f);
        if (rc)
            return rc;
    }
    return f->code;
}

typedef struct any_arg {
    taskq_future_t *const *fs;
    size_t n;
} any_arg_t;

static bool any_resolved(const taskq_client_t *c, const void *arg)
{
    const any_arg_t *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        if (a->fs[i] && a->fs[i]->state != TASKQ_STATE_PENDING)
            return true;
    }
    return false;
}

int taskq_wait_any(taskq_future_t *const *fs, size_t n, int32_t timeout_ms, size_t *ret_index)
{
    if (!fs || !ret_index)
        return TASKQ_EINVAL;
    any_arg_t a = {fs, n};
    taskq_client_t *c = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!fs[i])
            continue;
        if (c && fs[i]->client && fs[i]->client != c)
            return TASKQ_EINVAL;
        if (fs[i]->client)
            c = fs[i]->client;
    }
    /* Every pending future has a client; none pending means one resolved
     * (or there is no future at all). */
    if (!c && !any_resolved(NULL, &a))
        return TASKQ_EINVAL;
    if (!any_resolved(c, &a)) {
        int rc = taskq__pump(c, timeout_ms, any_resolved, &a);
        if (rc)
            return rc;
    }
    for (size_t i = 0;; i++) {
        if (fs[i] && fs[i]->state != TASKQ_STATE_PENDING) {
            *ret_index = i;
            return 0;
        }
    }
}

int taskq_cancel(taskq_future_t *f)
{
    if (!f)
        return TASKQ_EINVAL;
    if (f->state != TASKQ_STATE_PENDING)
        return f->job_id ? 0 : TASKQ_EINVAL;
    f->cancel = true;
    /* Without a job id yet, ACCEPTED sends the CANCEL; while reconnecting,
     * WELCOME does. */
    return f->job_id ? taskq__send_jobs(f->client, TASKQ_MSG_CANCEL, &f->job_id, 1) : 0;
}

taskq_state_t taskq_future_state(const taskq_future_t *f)
{
    return f ? f->state : TASKQ_STATE_UNKNOWN;
}

uint64_t taskq_future_job_id(const taskq_future_t *f)
{
    return f ? f->job_id : 0;
}

uint32_t taskq_future_attempts(const taskq_future_t *f)
{
    return f ? f->attempts : 0;
}

const void *taskq_future_result(const taskq_future_t *f, size_t *ret_len)
{
    if (!f || f->state != TASKQ_STATE_DONE)
        return NULL;
    if (ret_len)
        *ret_len = f->len;
    return f->data;
}

const char *taskq_future_error(const taskq_future_t *f)
{
    if (!f || f->state == TASKQ_STATE_PENDING || f->state == TASKQ_STATE_DONE)
        return "";
    return (const char *)f->data;
}

void taskq_future_destroy(taskq_future_t **fp)
{
    if (!fp || !*fp)
        return;
    taskq_future_t *f = *fp;
    *fp = NULL;
    taskq_client_t *c = f->client;
    if (c) {
        if (f->state == TASKQ_STATE_PENDING) {
            if (f->batch)
                f->batch->futs[f->slot] = f->cancel ? TASKQ__CANCELLED : NULL;
            else if (f->job_id)
                jobs_unlink(c, f);
            c->n_pending--;
        }
        if (f->prev)
            f->prev->next = f->next;
        else
            c->futures = f->next;
        if (f->next)
            f->next->prev = f->prev;
    }
    if (f->data != f->small)
        free(f->data);
    free(f);
}

void taskq__futures_detach(taskq_client_t *c)
{
    taskq__fail_all(c, TASKQ_STATE_CLOSED, TASKQ_ECLOSED, "the client was destroyed");
    for (taskq_future_t *f = c->futures; f; f = f->next)
        f->client = NULL;
    c->futures = NULL;
}
