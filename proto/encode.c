/*
 * encode.c - the message encoders: msgpack-c's packer writes the shortest
 * encoding of every field into a taskq_buf_t, and payloads (arguments,
 * results, outcome texts, the stats map) are appended as the bytes they
 * already are.
 */
#include "taskq_proto.h"

#include <errno.h>
#include <msgpack.h>

/*
 * The packer's calls return what taskq_buf_write returned: 0 or -ENOMEM.
 * Encoders chain them with || and report any failure as -ENOMEM.
 */
static msgpack_packer packer(taskq_buf_t *b)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, taskq_buf_write);
    return pk;
}

/* The array header of a message with nfields elements, version and type. */
static int pack_head(msgpack_packer *pk, size_t nfields, uint8_t type)
{
    return msgpack_pack_array(pk, nfields) || msgpack_pack_uint8(pk, TASKQ_PROTO_VERSION) ||
           msgpack_pack_uint8(pk, type);
}

static int pack_span(msgpack_packer *pk, taskq_span_t s)
{
    return msgpack_pack_str(pk, s.len) || msgpack_pack_str_body(pk, s.ptr, s.len);
}

static int pack_names(msgpack_packer *pk, const taskq_span_t *names, uint32_t n)
{
    if (msgpack_pack_array(pk, n))
        return -ENOMEM;
    for (uint32_t k = 0; k < n; k++)
        if (pack_span(pk, names[k]))
            return -ENOMEM;
    return 0;
}

static int finish(int failed)
{
    return failed ? -ENOMEM : 0;
}

int taskq_enc_hello(taskq_buf_t *b, const taskq_hello_t *h, const taskq_span_t *queues,
                    uint32_t n_queues, const taskq_span_t *functions, uint32_t n_functions)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 10, TASKQ_MSG_HELLO) || msgpack_pack_uint8(&pk, h->role) ||
                msgpack_pack_uint64(&pk, h->client_id) || pack_span(&pk, h->name) ||
                pack_span(&pk, h->host) || msgpack_pack_uint32(&pk, h->pid) ||
                msgpack_pack_uint32(&pk, h->credit) || pack_names(&pk, queues, n_queues) ||
                pack_names(&pk, functions, n_functions));
}

int taskq_enc_welcome(taskq_buf_t *b, const taskq_welcome_t *w)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 7, TASKQ_MSG_WELCOME) || pack_span(&pk, w->version) ||
                msgpack_pack_uint64(&pk, w->store_id) ||
                msgpack_pack_uint32(&pk, w->heartbeat_ms) ||
                msgpack_pack_uint32(&pk, w->liveness) || msgpack_pack_uint32(&pk, w->max_frame));
}

int taskq_enc_heartbeat(taskq_buf_t *b)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 2, TASKQ_MSG_HEARTBEAT));
}

int taskq_enc_bye(taskq_buf_t *b, taskq_span_t reason)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_BYE) || pack_span(&pk, reason));
}

int taskq_enc_error(taskq_buf_t *b, uint32_t code, uint64_t ref, taskq_span_t text)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 5, TASKQ_MSG_ERROR) || msgpack_pack_uint32(&pk, code) ||
                msgpack_pack_uint64(&pk, ref) || pack_span(&pk, text));
}

int taskq_enc_submit_begin(taskq_buf_t *b, uint64_t req_id, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 4, TASKQ_MSG_SUBMIT) || msgpack_pack_uint64(&pk, req_id) ||
                msgpack_pack_array(&pk, count));
}

int taskq_enc_submit_item(taskq_buf_t *b, const taskq_submit_item_t *t)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 6) || pack_span(&pk, t->function) ||
                pack_span(&pk, t->queue) || msgpack_pack_int32(&pk, t->priority) ||
                msgpack_pack_uint32(&pk, t->timeout_ms) ||
                msgpack_pack_uint32(&pk, t->max_attempts) ||
                taskq_buf_append(b, t->arg.ptr, t->arg.len));
}

int taskq_enc_accepted(taskq_buf_t *b, uint64_t req_id, uint64_t first_job, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 5, TASKQ_MSG_ACCEPTED) || msgpack_pack_uint64(&pk, req_id) ||
                msgpack_pack_uint64(&pk, first_job) || msgpack_pack_uint32(&pk, count));
}

int taskq_enc_result_begin(taskq_buf_t *b, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_RESULT) || msgpack_pack_array(&pk, count));
}

int taskq_enc_result_item(taskq_buf_t *b, const taskq_result_item_t *r)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 4) || msgpack_pack_uint64(&pk, r->job_id) ||
                msgpack_pack_uint8(&pk, r->status) || msgpack_pack_uint32(&pk, r->attempts) ||
                taskq_buf_append(b, r->payload.ptr, r->payload.len));
}

int taskq_enc_jobs(taskq_buf_t *b, uint8_t type, const uint64_t *jobs, uint32_t count)
{
    msgpack_packer pk = packer(b);
    if (pack_head(&pk, 3, type) || msgpack_pack_array(&pk, count))
        return -ENOMEM;
    for (uint32_t k = 0; k < count; k++)
        if (msgpack_pack_uint64(&pk, jobs[k]))
            return -ENOMEM;
    return 0;
}

int taskq_enc_stats(taskq_buf_t *b, uint64_t req_id)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_STATS) || msgpack_pack_uint64(&pk, req_id));
}

int taskq_enc_stats_reply(taskq_buf_t *b, uint64_t req_id, taskq_span_t map)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 4, TASKQ_MSG_STATS_REPLY) || msgpack_pack_uint64(&pk, req_id) ||
                taskq_buf_append(b, map.ptr, map.len));
}

int taskq_enc_tasks_begin(taskq_buf_t *b, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_TASKS) || msgpack_pack_array(&pk, count));
}

int taskq_enc_task_item(taskq_buf_t *b, const taskq_task_item_t *t)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 6) || msgpack_pack_uint64(&pk, t->job_id) ||
                msgpack_pack_uint32(&pk, t->attempt) || pack_span(&pk, t->function) ||
                msgpack_pack_uint64(&pk, t->seed) || msgpack_pack_uint32(&pk, t->timeout_ms) ||
                taskq_buf_append(b, t->arg.ptr, t->arg.len));
}

int taskq_enc_done_begin(taskq_buf_t *b, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_DONE) || msgpack_pack_array(&pk, count));
}

int taskq_enc_done_item(taskq_buf_t *b, const taskq_done_item_t *d)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 4) || msgpack_pack_uint64(&pk, d->job_id) ||
                msgpack_pack_uint32(&pk, d->attempt) || msgpack_pack_uint8(&pk, d->status) ||
                taskq_buf_append(b, d->payload.ptr, d->payload.len));
}

int taskq_enc_abandon_begin(taskq_buf_t *b, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 3, TASKQ_MSG_ABANDON) || msgpack_pack_array(&pk, count));
}

int taskq_enc_abandon_item(taskq_buf_t *b, const taskq_abandon_item_t *a)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 2) || msgpack_pack_uint64(&pk, a->job_id) ||
                msgpack_pack_uint32(&pk, a->attempt));
}

int taskq_enc_failed(taskq_buf_t *b, uint64_t req_id, uint64_t after, uint32_t limit)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 5, TASKQ_MSG_FAILED) || msgpack_pack_uint64(&pk, req_id) ||
                msgpack_pack_uint64(&pk, after) || msgpack_pack_uint32(&pk, limit));
}

int taskq_enc_failed_reply_begin(taskq_buf_t *b, uint64_t req_id, uint32_t count)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 4, TASKQ_MSG_FAILED_REPLY) ||
                msgpack_pack_uint64(&pk, req_id) || msgpack_pack_array(&pk, count));
}

int taskq_enc_failed_item(taskq_buf_t *b, const taskq_failed_item_t *f, uint32_t n_history)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 8) || msgpack_pack_uint64(&pk, f->job_id) ||
                msgpack_pack_uint8(&pk, f->status) || pack_span(&pk, f->function) ||
                pack_span(&pk, f->queue) || msgpack_pack_uint32(&pk, f->attempts) ||
                msgpack_pack_uint64(&pk, f->finished_ms) ||
                taskq_buf_append(b, f->payload.ptr, f->payload.len) ||
                msgpack_pack_array(&pk, n_history));
}

int taskq_enc_history_item(taskq_buf_t *b, const taskq_history_item_t *h)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_array(&pk, 7) || msgpack_pack_uint32(&pk, h->attempt) ||
                pack_span(&pk, h->worker) || pack_span(&pk, h->host) ||
                msgpack_pack_uint32(&pk, h->pid) || msgpack_pack_uint64(&pk, h->started_ms) ||
                msgpack_pack_uint64(&pk, h->ended_ms) || pack_span(&pk, h->cause));
}

int taskq_enc_retry(taskq_buf_t *b, uint64_t req_id, uint64_t job_id)
{
    msgpack_packer pk = packer(b);
    return finish(pack_head(&pk, 4, TASKQ_MSG_RETRY) || msgpack_pack_uint64(&pk, req_id) ||
                msgpack_pack_uint64(&pk, job_id));
}

int taskq_enc_str(taskq_buf_t *b, const char *text, size_t len)
{
    msgpack_packer pk = packer(b);
    return finish(msgpack_pack_str(&pk, len) || msgpack_pack_str_body(&pk, text, len));
}
