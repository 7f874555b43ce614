/*
 * handlers.c - the broker's incoming side: decode a frame, refuse what is
 * malformed or unexpected, and handle each message by the sender's role:
 * HELLO (either), SUBMIT, CANCEL, WATCH, ACK, STATS, FAILED and RETRY
 * (clients), DONE (workers), HEARTBEAT and BYE (both).
 */
#include "handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "broker_impl.h"
#include "log.h"
#include "outbox.h"
#include "stats.h"
#include "taskq.h"

static size_t peer_count(const tqd_broker_t *b)
{
    return b->clients.len + b->workers.len;
}

uint32_t tqd_submit_unwind(tqd_broker_t *b, uint64_t first, uint32_t count)
{
    uint32_t dropped = 0;
    for (uint32_t i = count; i-- > 0;) {
        tqd_job_t *job = tqd_queue_find(&b->queue, first + i);
        /* Dispatched this turn counts too: its TASKS has not gone out. */
        if (job && job->state != TQD_JOB_FINISHED) {
            tqd_queue_drop(&b->queue, job);
            dropped++;
        }
    }
    return dropped;
}

static void on_hello(tqd_broker_t *b, tqd_peer_t *old, const uint8_t *rid, size_t rid_len,
                     const taskq_hello_t *h)
{
    if (old)
        tqd_peer_leave(b, old, "sent HELLO again");
    if (tqd_htab_reserve(&b->peers, 1) < 0) {
        tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
        return;
    }
    tqd_peer_t *p;
    if (h->role == TASKQ_ROLE_CLIENT) {
        tqd_client_t *c = tqd_clients_find(&b->clients, h->client_id);
        if (!c && peer_count(b) >= TQD_MAX_PEERS) {
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_LIMIT, 0, "too many peers");
            return;
        }
        if (!c && tqd_clients_add(&b->clients, h->client_id, &c) < 0) {
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        tqd_route_drop(b, &c->peer); /* a reconnect replaces the old connection */
        tqd_peer_set(&c->peer, TASKQ_ROLE_CLIENT, h->name, h->host, h->pid);
        p = &c->peer;
        TQ_LOG(LOG_INFO, TQD_PEER_FMT " connected (%" PRIu32 " jobs pending)", TQD_PEER_ARGS(p),
               c->active);
    } else {
        if (peer_count(b) >= TQD_MAX_PEERS) {
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_LIMIT, 0, "too many peers");
            return;
        }
        uint32_t nq = 0, nf = 0, max = b->limits.max_list;
        taskq_iter_t it = h->queues;
        while (nq < max && taskq_iter_str(&it, &b->names[nq]) > 0)
            nq++;
        it = h->functions;
        while (nf < max && taskq_iter_str(&it, &b->names[max + nf]) > 0)
            nf++;
        tqd_worker_t *w;
        if (tqd_worker_new(h->name, h->host, h->pid, h->credit, b->names, nq, b->names + max, nf,
                           &w) < 0) {
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        if (tqd_workers_add(&b->workers, w) < 0) {
            tqd_worker_destroy(&w);
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        if (tqd_queue_attach(&b->queue, w) < 0) {
            tqd_workers_remove(&b->workers, w);
            tqd_worker_destroy(&w);
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        p = &w->peer;
        TQ_LOG(LOG_NOTICE,
               TQD_PEER_FMT " joined with credit %" PRIu32 ", %" PRIu32 " queues, %" PRIu32
                            " functions",
               TQD_PEER_ARGS(p), w->credit, nq, nf);
    }
    p->last_seen = b->now;
    tqd_route_add(b, p, rid, rid_len);
    taskq_welcome_t wel = {
        .version = taskq_span_cstr(TASKQ_VERSION_STRING),
        .store_id = b->store->id,
        .heartbeat_ms = b->cfg.heartbeat_ms,
        .liveness = b->cfg.liveness,
        .max_frame = b->cfg.max_frame,
    };
    taskq_buf_reset(&b->out);
    tqd_outbox_send(b, rid, rid_len, taskq_enc_welcome(&b->out, &wel));
}

/* Room for one more ACCEPTED owed after the commit.  0 or -ENOMEM. */
static int accepted_reserve(tqd_broker_t *b)
{
    if (b->n_accepted < b->cap_accepted)
        return 0;
    size_t ncap = b->cap_accepted ? b->cap_accepted * 2 : 64;
    tqd_accept_t *v = realloc(b->accepted, ncap * sizeof *v);
    if (!v)
        return -ENOMEM;
    b->accepted = v;
    b->cap_accepted = ncap;
    return 0;
}

static void on_submit(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id, taskq_iter_t it)
{
    tqd_queue_t *q = &b->queue;
    uint32_t n = it.left;
    if (accepted_reserve(b) < 0) {
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_INTERNAL, req_id, "out of memory");
        return;
    }
    const tqd_job_t *seen = tqd_queue_find_submit(q, c->id, req_id);
    if (seen) {
        /* Sent again after a lost ACCEPTED: answer it, create nothing. */
        if (seen->batch != n) {
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_BAD_FIELD, req_id,
                                   "req_id names an earlier SUBMIT with another task count");
            return;
        }
        b->duplicates++;
        b->accepted[b->n_accepted++] = (tqd_accept_t){c->id, req_id, seen->id, n, true};
        return;
    }
    if (q->queued + n > b->cfg.max_queued) {
        char text[128];
        snprintf(text, sizeof text, "the broker holds its maximum of %" PRIu32 " queued tasks",
                 b->cfg.max_queued);
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_QUEUE_FULL, req_id, text);
        return;
    }
    uint64_t first = q->next_id;
    uint32_t added = 0;
    int rc = 0;
    taskq_submit_item_t item;
    tqd_job_t *job;
    while (added < n && (rc = taskq_iter_submit(&it, &item)) > 0 &&
           (rc = tqd_queue_add(q, c->id, &item, &job)) == 0)
        added++;
    if (added == n)
        rc = tqd_queue_mark_submit(q, tqd_queue_find(q, first), req_id, n);
    if (added < n || rc < 0) {
        tqd_submit_unwind(b, first, added);
        if (rc == -ENOSPC)
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id,
                                   "too many distinct (queue, function) pairs");
        else
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_INTERNAL, req_id, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        tqd_store_submitted(b->store, tqd_queue_find(q, first + i));
    c->active += n;
    b->accepted[b->n_accepted++] = (tqd_accept_t){c->id, req_id, first, n, false};
}

static void on_cancel(tqd_broker_t *b, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (!job || job->state == TQD_JOB_FINISHED)
            continue;
        if (job->state == TQD_JOB_RUNNING) {
            if (tqd_worker_owe_abandon(job->worker, id, job->attempt) == 0)
                tqd_outbox_want_worker(b, job->worker);
            else
                TQ_LOG(LOG_ERR, "out of memory: no ABANDON for job %" PRIu64, id);
        }
        tqd_queue_cancel(&b->queue, job, b->now);
    }
}

static void on_watch(tqd_broker_t *b, tqd_client_t *c, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (!job || job->state == TQD_JOB_FINISHED) {
            tqd_outbox_owe(b, c, id, !job);
            continue;
        }
        int rc = tqd_queue_watch(&b->queue, job, c->id);
        if (rc < 0) {
            char text[96];
            snprintf(text, sizeof text, "job %" PRIu64 ": %s", id,
                     rc == -ENOSPC ? "too many clients watch it" : "out of memory");
            tqd_outbox_refuse_peer(b, &c->peer,
                                   rc == -ENOSPC ? TASKQ_PERR_LIMIT : TASKQ_PERR_INTERNAL, 0, text);
        }
    }
}

static void on_ack(tqd_broker_t *b, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (job && job->state == TQD_JOB_FINISHED) {
            tqd_store_forgotten(b->store, job);
            tqd_queue_forget(&b->queue, job);
        }
    }
}

static void on_stats(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id)
{
    taskq_buf_reset(&b->map);
    int rc = tqd_stats_encode(b, &b->map);
    if (rc == -EMSGSIZE) {
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id,
                               "the statistics exceed the frame limit");
        return;
    }
    taskq_buf_reset(&b->out);
    if (rc == 0)
        rc = taskq_enc_stats_reply(&b->out, req_id, (taskq_span_t){b->map.data, b->map.len});
    tqd_outbox_send(b, c->peer.rid, c->peer.rid_len, rc);
}

static int job_id_cmp(const void *a, const void *b)
{
    uint64_t x = (*(tqd_job_t *const *)a)->id, y = (*(tqd_job_t *const *)b)->id;
    return (x > y) - (x < y);
}

/* Append one job of a FAILED_REPLY with its history to out, or return
 * -EMSGSIZE (out unchanged) if the reply would pass the frame limit. */
static int encode_failed(const tqd_broker_t *b, taskq_buf_t *out, const tqd_job_t *job)
{
    const tqd_history_t *h = job->history;
    size_t start = out->len;
    taskq_failed_item_t f = {
        .job_id = job->id,
        .status = job->status,
        .function = h->function,
        .queue = h->queue,
        .attempts = job->attempt,
        .finished_ms = (uint64_t)((int64_t)job->finished_ms + b->wall_offset),
        .payload = tqd_job_payload(job),
    };
    int rc = taskq_enc_failed_item(out, &f, h->n);
    for (uint16_t i = 0; i < h->n && rc == 0; i++) {
        const tqd_attempt_rec_t *a = h->v[i];
        taskq_history_item_t e = {
            .attempt = a->attempt,
            .worker = a->worker,
            .host = a->host,
            .pid = a->pid,
            .started_ms = a->started_ms,
            .ended_ms = a->ended_ms,
            .cause = a->cause,
        };
        rc = taskq_enc_history_item(out, &e);
    }
    if (rc == 0 && out->len > b->cfg.max_frame - 64) {
        out->len = start;
        return -EMSGSIZE;
    }
    return rc;
}

/* FAILED: the retained jobs that failed, after the given id, in id order;
 * as many as limit and the frame allow (an empty page ends the list). */
static void on_failed(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id, uint64_t after,
                      uint32_t limit)
{
    size_t n = 0;
    tqd_job_t **v = malloc(((size_t)b->queue.retained + 1) * sizeof *v);
    if (!v) {
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_INTERNAL, req_id, "out of memory");
        return;
    }
    for (tqd_job_t *job = b->queue.oldest; job; job = job->next)
        if (job->id > after && tqd_status_failed(job->status) && job->history)
            v[n++] = job;
    qsort(v, n, sizeof *v, job_id_cmp);
    if (n > limit)
        n = limit;
    /* The count comes first on the wire: encode the items into the
     * scratch buffer, then the header and the items into out. */
    uint32_t fit = 0;
    int rc = 0;
    taskq_buf_reset(&b->map);
    for (; fit < n; fit++)
        if ((rc = encode_failed(b, &b->map, v[fit])) < 0)
            break;
    free(v);
    if (rc < 0 && (rc != -EMSGSIZE || fit == 0)) {
        tqd_outbox_refuse_peer(b, &c->peer, rc == -EMSGSIZE ? TASKQ_PERR_LIMIT : TASKQ_PERR_INTERNAL,
                               req_id, rc == -EMSGSIZE ? "a failed job exceeds the frame limit"
                                                       : "out of memory");
        return;
    }
    taskq_buf_reset(&b->out);
    rc = taskq_enc_failed_reply_begin(&b->out, req_id, fit);
    if (rc == 0 && b->map.len)
        rc = taskq_buf_write(&b->out, (const char *)b->map.data, b->map.len);
    tqd_outbox_send(b, c->peer.rid, c->peer.rid_len, rc);
}

/* RETRY: queue a failed job again; ACCEPTED [req_id, job, 1] after the
 * commit, and its outcome goes to the client that asked. */
static void on_retry(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id, uint64_t id)
{
    tqd_job_t *job = tqd_queue_find(&b->queue, id);
    int rc = accepted_reserve(b);
    if (rc == 0)
        rc = job ? tqd_queue_retry(&b->queue, job, c->id) : -ENOENT;
    if (rc < 0) {
        char text[128];
        snprintf(text, sizeof text, "job %" PRIu64 ": %s", id,
                 rc == -ENOENT  ? "the broker holds no failed job with this id"
                 : rc == -EBUSY ? "a worker still runs an abandoned attempt of it; try again "
                                  "once that worker has reported it"
                 : rc == -ENOSPC ? "too many distinct (queue, function) pairs"
                                 : "out of memory");
        tqd_outbox_refuse_peer(b, &c->peer,
                               rc == -ENOENT                    ? TASKQ_PERR_NOT_FOUND
                               : rc == -ENOSPC || rc == -EBUSY ? TASKQ_PERR_LIMIT
                                                                : TASKQ_PERR_INTERNAL,
                               req_id, text);
        return;
    }
    c->active++;
    TQ_LOG(LOG_INFO, "job %" PRIu64 " queued again by " TQD_PEER_FMT, id, TQD_PEER_ARGS(&c->peer));
    b->accepted[b->n_accepted++] = (tqd_accept_t){c->id, req_id, id, 1, true};
}

static void on_done(tqd_broker_t *b, tqd_worker_t *w, taskq_iter_t it)
{
    taskq_done_item_t d;
    uint32_t foreign = 0;
    while (taskq_iter_done(&it, &d) > 0) {
        int rc = tqd_queue_done(&b->queue, w, &d, b->now);
        if (rc < 0)
            foreign++;
        else if (rc == 1)
            b->stale++;
    }
    if (foreign) {
        b->malformed += foreign;
        TQ_LOG(LOG_INFO, TQD_PEER_FMT " sent %" PRIu32 " DONE items for attempts it does not hold",
               TQD_PEER_ARGS(&w->peer), foreign);
    }
}

static void on_client_msg(tqd_broker_t *b, tqd_client_t *c, const taskq_msg_t *m)
{
    switch (m->type) {
    case TASKQ_MSG_HEARTBEAT:
        tqd_outbox_heartbeat(b, &c->peer);
        break;
    case TASKQ_MSG_BYE:
        tqd_peer_leave(b, &c->peer, "said BYE");
        break;
    case TASKQ_MSG_SUBMIT:
        on_submit(b, c, m->u.submit.req_id, m->u.submit.tasks);
        break;
    case TASKQ_MSG_CANCEL:
        on_cancel(b, m->u.jobs);
        break;
    case TASKQ_MSG_WATCH:
        on_watch(b, c, m->u.jobs);
        break;
    case TASKQ_MSG_ACK:
        on_ack(b, m->u.jobs);
        break;
    case TASKQ_MSG_STATS:
        on_stats(b, c, m->u.stats_req);
        break;
    case TASKQ_MSG_FAILED:
        on_failed(b, c, m->u.failed.req_id, m->u.failed.after, m->u.failed.limit);
        break;
    case TASKQ_MSG_RETRY:
        on_retry(b, c, m->u.retry.req_id, m->u.retry.job_id);
        break;
    default:
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_UNEXPECTED, 0,
                               "not a message a client sends");
        break;
    }
}

static void on_worker_msg(tqd_broker_t *b, tqd_worker_t *w, const taskq_msg_t *m)
{
    switch (m->type) {
    case TASKQ_MSG_HEARTBEAT:
        break;
    case TASKQ_MSG_BYE:
        tqd_worker_leave(b, w, "said BYE", true);
        break;
    case TASKQ_MSG_DONE:
        on_done(b, w, m->u.done);
        break;
    default:
        tqd_outbox_refuse_peer(b, &w->peer, TASKQ_PERR_UNEXPECTED, 0,
                               "not a message a worker sends");
        break;
    }
}

/* DONE from a connection the broker does not know: a worker it declared
 * dead (silent, a partition) reports late.  Those attempts were superseded
 * when it was declared dead, so the outcomes are dropped, counted stale,
 * and the worker is told to say HELLO again. */
static void late_done(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, uint32_t items)
{
    b->stale += items;
    TQ_LOG(LOG_INFO, "dropped %" PRIu32 " late outcomes from a worker no longer known", items);
    taskq_buf_reset(&b->out);
    tqd_outbox_send(b, rid, rid_len,
                    taskq_enc_error(&b->out, TASKQ_PERR_HELLO_REQUIRED, 0,
                                    taskq_span_cstr("send HELLO first")));
}

void tqd_handle_frame(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const void *data,
                      size_t len, bool multipart)
{
    tqd_peer_t *p = tqd_route_find(b, rid, rid_len);
    if (p)
        p->last_seen = b->now;
    taskq_msg_t m;
    int rc = multipart ? -TASKQ_PERR_MALFORMED : taskq_msg_decode(data, len, &b->limits, &m, NULL);
    if (rc < 0) {
        const char *text = rc == -TASKQ_PERR_VERSION ? "supported: 1"
                           : multipart               ? "a message is one frame"
                                                     : taskq_perr_text(-rc);
        tqd_outbox_refuse(b, rid, rid_len, p, (uint32_t)-rc,
                          multipart ? 0 : taskq_msg_ref(data, len), text);
        return;
    }
    if (m.type == TASKQ_MSG_ERROR) {
        /* Never answered: two confused peers must not trade ERRORs forever. */
        b->malformed++;
        TQ_LOG(LOG_INFO, "ignored an ERROR %s sent to the broker",
                taskq_perr_name((int)m.u.error.code));
        return;
    }
    if (m.type == TASKQ_MSG_HELLO)
        on_hello(b, p, rid, rid_len, &m.u.hello);
    else if (!p && m.type == TASKQ_MSG_DONE)
        late_done(b, rid, rid_len, m.u.done.left);
    else if (!p)
        tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_HELLO_REQUIRED, 0, "send HELLO first");
    else if (p->role == TASKQ_ROLE_CLIENT)
        on_client_msg(b, (tqd_client_t *)p, &m);
    else
        on_worker_msg(b, (tqd_worker_t *)p, &m);
}
