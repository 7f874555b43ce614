/*
 * outbox.c - the broker's outgoing side: sending a frame with
 * ROUTER_MANDATORY (a gone connection is counted, not an error), ERROR
 * replies, and each turn's batches: ACCEPTED, RESULT per client, ABANDON
 * and TASKS per worker, and the BYE at shutdown.
 */
#include "outbox.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <zmq.h>

#include "broker_impl.h"
#include "log.h"
#include "os.h"
#include "taskq.h"

/* Upper bound of the bytes a RESULT or TASKS item adds besides its
 * payload, argument and function name. */
#define ITEM_OVERHEAD 48

/* The payload of a RESULT item with status UNKNOWN: a msgpack str. */
static const uint8_t unknown_payload[] = "\xab"
                                         "no such job";

static void free_frame(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Send b->out as the body of the message begun; a large one is given to
 * ZeroMQ without a copy, and b->out starts afresh.  A signal does not cut
 * a message in two: the body is sent again after EINTR, or the next
 * message's routing id would be taken for this one's body.  0 or -1
 * (errno). */
static int send_body(tqd_broker_t *b)
{
    zmq_msg_t m;
    if (b->out.len < TASKQ_ZEROCOPY_MIN ||
        zmq_msg_init_data(&m, b->out.data, b->out.len, free_frame, NULL) != 0) {
        int rc;
        while ((rc = zmq_send(b->sock, b->out.data, b->out.len, ZMQ_DONTWAIT)) < 0 &&
               errno == EINTR)
            ;
        return rc < 0 ? -1 : 0;
    }
    b->out = (taskq_buf_t){0};
    int rc;
    while ((rc = zmq_msg_send(&m, b->sock, ZMQ_DONTWAIT)) < 0 && errno == EINTR)
        ;
    if (rc >= 0)
        return 0;
    int err = errno;
    zmq_msg_close(&m);
    errno = err;
    return -1;
}

/* The routing id part of a message, again after EINTR.  0 or -1. */
static int send_rid(tqd_broker_t *b, const uint8_t *rid, size_t rid_len)
{
    int rc;
    while ((rc = zmq_send(b->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT)) < 0 &&
           errno == EINTR)
        ;
    return rc < 0 ? -1 : 0;
}

int tqd_outbox_send(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, int enc_rc)
{
    if (enc_rc < 0) {
        TQ_LOG(LOG_ERR, "out of memory encoding a message");
        return enc_rc;
    }
    if (rid_len == 0) {
        b->unroutable++;
        return -EHOSTUNREACH;
    }
    if (send_rid(b, rid, rid_len) < 0 || send_body(b) < 0) {
        int err = errno;
        if (err == EHOSTUNREACH)
            b->unroutable++;
        else
            TQ_LOG(LOG_WARNING, "cannot send a message: %s", zmq_strerror(err));
        return -err;
    }
    return 0;
}

void tqd_outbox_refuse(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const tqd_peer_t *p,
                       uint32_t code, uint64_t ref, const char *text)
{
    b->malformed++;
    if (p)
        TQ_LOG(LOG_INFO, "refused a message of " TQD_PEER_FMT ": %s: %s", TQD_PEER_ARGS(p),
               taskq_perr_name((int)code), text);
    else
        TQ_LOG(LOG_INFO, "refused a message of an unknown peer: %s: %s", taskq_perr_name((int)code),
               text);
    taskq_buf_reset(&b->out);
    tqd_outbox_send(b, rid, rid_len, taskq_enc_error(&b->out, code, ref, taskq_span_cstr(text)));
}

void tqd_outbox_refuse_peer(tqd_broker_t *b, tqd_peer_t *p, uint32_t code, uint64_t ref,
                            const char *text)
{
    tqd_outbox_refuse(b, p->rid, p->rid_len, p, code, ref, text);
}

int tqd_outbox_heartbeat(tqd_broker_t *b, const tqd_peer_t *p)
{
    taskq_buf_reset(&b->out);
    return tqd_outbox_send(b, p->rid, p->rid_len, taskq_enc_heartbeat(&b->out));
}

static void want_flush_client(tqd_broker_t *b, tqd_client_t *c)
{
    if (!c->peer.out_slot) {
        b->out_clients[b->n_out_clients++] = c;
        c->peer.out_slot = b->n_out_clients;
    }
}

void tqd_outbox_want_worker(tqd_broker_t *b, tqd_worker_t *w)
{
    if (!w->peer.out_slot) {
        b->out_workers[b->n_out_workers++] = w;
        w->peer.out_slot = b->n_out_workers;
    }
}

void tqd_outbox_owe(tqd_broker_t *b, tqd_client_t *c, uint64_t job, bool unknown)
{
    if (tqd_client_owe(c, job, unknown) < 0) {
        TQ_LOG(LOG_ERR,
               "out of memory: the outcome of job %" PRIu64 " is kept for WATCH but not sent now",
               job);
        return;
    }
    want_flush_client(b, c);
}

static void flush_accepted(tqd_broker_t *b)
{
    for (size_t i = 0; i < b->n_accepted; i++) {
        const tqd_accept_t *a = &b->accepted[i];
        tqd_client_t *c = tqd_clients_find(&b->clients, a->client_id);
        taskq_buf_reset(&b->out);
        int rc = taskq_enc_accepted(&b->out, a->req_id, a->first_job, a->count);
        tqd_outbox_send(b, c ? c->peer.rid : NULL, c ? c->peer.rid_len : 0, rc);
    }
    b->n_accepted = 0;
}

/* The RESULT item for o, or false if its job was queued again meanwhile
 * (RETRY: its new outcome will be owed).  A job that has gone meanwhile
 * (another client of the same owner acknowledged it in this turn) is
 * answered UNKNOWN: its outcome was collected, and a waiter must not wait
 * for it forever. */
static bool owed_item(const tqd_broker_t *b, const tqd_owed_t *o, taskq_result_item_t *ret)
{
    const tqd_job_t *job = o->unknown ? NULL : tqd_queue_find(&b->queue, o->job);
    if (!job) {
        *ret = (taskq_result_item_t){
            o->job, TASKQ_STATUS_UNKNOWN, 0, {unknown_payload, sizeof unknown_payload - 1}};
        return true;
    }
    if (job->state != TQD_JOB_FINISHED)
        return false;
    *ret = (taskq_result_item_t){job->id, job->status, job->attempt, tqd_job_payload(job)};
    return true;
}

/* Send c its owed outcomes: RESULT batches within the batch and frame
 * limits (normally one).  An unroutable client keeps them for WATCH. */
static void flush_client(tqd_broker_t *b, tqd_client_t *c)
{
    taskq_result_item_t r;
    uint32_t i = 0;
    while (i < c->n_owed) {
        size_t size = ITEM_OVERHEAD;
        uint32_t count = 0, j = i;
        for (; j < c->n_owed && count < b->limits.max_batch; j++) {
            if (!owed_item(b, &c->owed[j], &r))
                continue;
            size_t item = r.payload.len + ITEM_OVERHEAD;
            if (count > 0 && size + item > b->cfg.max_frame)
                break;
            size += item;
            count++;
        }
        if (count > 0) {
            taskq_buf_reset(&b->out);
            int rc = taskq_enc_result_begin(&b->out, count);
            for (uint32_t k = i; k < j && rc == 0; k++)
                if (owed_item(b, &c->owed[k], &r))
                    rc = taskq_enc_result_item(&b->out, &r);
            if (tqd_outbox_send(b, c->peer.rid, c->peer.rid_len, rc) == -EHOSTUNREACH)
                break;
        }
        i = j;
    }
    c->n_owed = 0;
}

/* Send w its ABANDON and TASKS batches, then record the attempts and arm
 * their run limits.  A worker that cannot be reached is gone (and freed). */
static void flush_worker(tqd_broker_t *b, tqd_worker_t *w)
{
    if (w->n_abandon) {
        taskq_buf_reset(&b->out);
        int rc = taskq_enc_abandon_begin(&b->out, w->n_abandon);
        for (uint32_t k = 0; k < w->n_abandon && rc == 0; k++)
            rc = taskq_enc_abandon_item(&b->out, &w->abandon[k]);
        if (tqd_outbox_send(b, w->peer.rid, w->peer.rid_len, rc) == -EHOSTUNREACH) {
            tqd_worker_leave(b, w, "connection closed", false);
            return;
        }
        w->n_abandon = 0;
    }
    uint32_t i = 0;
    while (i < w->n_unsent) {
        size_t size = ITEM_OVERHEAD;
        uint32_t j = i;
        for (; j < w->n_unsent && j - i < b->limits.max_batch; j++) {
            const tqd_job_t *job = w->unsent[j];
            size_t item = job->arg_len + job->lane->function_len + ITEM_OVERHEAD;
            if (j > i && size + item > b->cfg.max_frame)
                break;
            size += item;
        }
        taskq_buf_reset(&b->out);
        int rc = taskq_enc_tasks_begin(&b->out, j - i);
        for (uint32_t k = i; k < j && rc == 0; k++) {
            const tqd_job_t *job = w->unsent[k];
            taskq_task_item_t t = {
                .job_id = job->id,
                .attempt = job->attempt,
                .function = {job->lane->function, job->lane->function_len},
                .seed = tqd_hash_u64(job->id),
                .timeout_ms = job->timeout_ms,
                .arg = {job->arg, job->arg_len},
            };
            rc = taskq_enc_task_item(&b->out, &t);
        }
        rc = tqd_outbox_send(b, w->peer.rid, w->peer.rid_len, rc);
        if (rc < 0) {
            tqd_worker_leave(b, w, rc == -EHOSTUNREACH ? "connection closed" : "cannot send to it",
                             false);
            return;
        }
        i = j;
    }
    for (uint32_t k = 0; k < w->n_unsent; k++) {
        const tqd_job_t *job = w->unsent[k];
        if (job->timeout_ms && tqd_timers_add(&b->timers, b->now + job->timeout_ms,
                                              TQD_TIMER_RUN_LIMIT, job->id, job->deliveries) < 0)
            TQ_LOG(LOG_ERR, "out of memory: job %" PRIu64 " runs without its run limit", job->id);
    }
    w->n_unsent = 0;
}

void tqd_outbox_flush(tqd_broker_t *b)
{
    flush_accepted(b);
    if (!b->commit_failed) {
        for (size_t i = 0; i < b->n_out_clients; i++) {
            tqd_client_t *c = b->out_clients[i];
            if (c) {
                flush_client(b, c);
                c->peer.out_slot = 0;
            }
        }
        b->n_out_clients = 0;
    } else {
        /* Outcomes wait for a commit; drop the entries of freed clients. */
        size_t n = 0;
        for (size_t i = 0; i < b->n_out_clients; i++) {
            tqd_client_t *c = b->out_clients[i];
            if (c) {
                b->out_clients[n++] = c;
                c->peer.out_slot = n;
            }
        }
        b->n_out_clients = n;
    }
    /* Workers found gone here cause outcomes: they are owed to clients and
     * go out next turn, after the next commit. */
    for (size_t i = 0; i < b->n_out_workers; i++) {
        tqd_worker_t *w = b->out_workers[i];
        if (w) {
            w->peer.out_slot = 0;
            flush_worker(b, w);
        }
    }
    b->n_out_workers = 0;
}

void tqd_outbox_bye(tqd_broker_t *b)
{
    taskq_buf_reset(&b->out);
    int rc = taskq_enc_bye(&b->out, taskq_span_cstr("shutdown"));
    size_t clients = 0;
    for (size_t i = 0; i < b->workers.len; i++)
        tqd_outbox_send(b, b->workers.v[i]->peer.rid, b->workers.v[i]->peer.rid_len, rc);
    for (size_t i = 0; i < b->clients.len; i++) {
        const tqd_peer_t *p = &b->clients.v[i]->peer;
        if (p->rid_len) {
            tqd_outbox_send(b, p->rid, p->rid_len, rc);
            clients++;
        }
    }
    TQ_LOG(LOG_NOTICE, "shutting down: said BYE to %zu workers and %zu clients", b->workers.len,
            clients);
    tqd_os_notify("STOPPING=1");
}
