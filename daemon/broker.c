/*
 * broker.c - the broker's event loop and message handlers.  Each turn:
 * receive and handle a bounded number of frames, fire due timers, commit
 * the store, dispatch, then flush the turn's batched replies (ACCEPTED,
 * one RESULT batch per client, one ABANDON and TASKS batch per worker).
 */
#include "broker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "os.h"
#include "stats.h"
#include "taskq.h"

#define READ_BATCH 256 /* frames handled per loop turn at most */
#define LINGER_MS  200 /* how long closing the socket waits for output */
/* Output lists: every peer at most once, plus peers freed in this turn
 * (at most one per frame handled) whose entries are left NULL. */
#define OUT_CAP (TQD_MAX_PEERS + READ_BATCH)
/* Upper bound of the bytes a RESULT or TASKS item adds besides its
 * payload, argument and function name. */
#define ITEM_OVERHEAD 48

enum { TIMER_TICK = 1, TIMER_RUN_LIMIT = 2 };

/* The payload of a RESULT item with status UNKNOWN: a msgpack str. */
static const uint8_t unknown_payload[] = "\xab"
                                         "no such job";

#define PEER_FMT "%s %.*s@%.*s[%" PRIu32 "]"
#define PEER_ARGS(p)                                                                               \
    (p)->role == TASKQ_ROLE_WORKER ? "worker" : "client", (int)(p)->name_len,                      \
        (const char *)(p)->name, (int)(p)->host_len, (const char *)(p)->host, (p)->pid

/* ---- Routing ids -------------------------------------------------------- */

typedef struct rid_key {
    const uint8_t *p;
    size_t n;
} rid_key_t;

static bool peer_has_rid(const void *item, const void *key)
{
    const tqd_peer_t *p = item;
    const rid_key_t *k = key;
    return p->rid_len == k->n && memcmp(p->rid, k->p, k->n) == 0;
}

static tqd_peer_t *peer_find(const tqd_broker_t *b, const uint8_t *rid, size_t n)
{
    rid_key_t key = {rid, n};
    return tqd_htab_find(&b->peers, tqd_hash_bytes(rid, n, b->seed), peer_has_rid, &key);
}

/* Route rid to p.  The caller reserved room in the index. */
static void peer_map(tqd_broker_t *b, tqd_peer_t *p, const uint8_t *rid, size_t n)
{
    memcpy(p->rid, rid, n);
    p->rid_len = (uint8_t)n;
    tqd_htab_insert(&b->peers, tqd_hash_bytes(rid, n, b->seed), p);
}

static void peer_unmap(tqd_broker_t *b, tqd_peer_t *p)
{
    if (!p->rid_len)
        return;
    tqd_htab_remove(&b->peers, tqd_hash_bytes(p->rid, p->rid_len, b->seed), p);
    p->rid_len = 0;
}

/* ---- Sending ------------------------------------------------------------ */

/*
 * Send b->out, which the encoder that returned enc_rc just wrote, to the
 * connection rid.  Returns 0, -EHOSTUNREACH if that connection is gone
 * (counted unroutable), or another negative errno (logged).
 */
static int send_out(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, int enc_rc)
{
    if (enc_rc < 0) {
        TQ_LOG(LOG_ERR, "out of memory encoding a message");
        return enc_rc;
    }
    if (rid_len == 0) {
        b->unroutable++;
        return -EHOSTUNREACH;
    }
    if (zmq_send(b->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(b->sock, b->out.data, b->out.len, ZMQ_DONTWAIT) < 0) {
        int err = errno;
        if (err == EHOSTUNREACH)
            b->unroutable++;
        else
            TQ_LOG(LOG_WARNING, "cannot send a message: %s", zmq_strerror(err));
        return -err;
    }
    return 0;
}

/* Refuse a message: count it and answer ERROR (code, ref, text). */
static void refuse(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const tqd_peer_t *p,
                   uint32_t code, uint64_t ref, const char *text)
{
    b->malformed++;
    if (p)
        TQ_LOG(LOG_INFO, "refused a message of " PEER_FMT ": %s: %s", PEER_ARGS(p),
                taskq_perr_name((int)code), text);
    else
        TQ_LOG(LOG_INFO, "refused a message of an unknown peer: %s: %s",
                taskq_perr_name((int)code), text);
    taskq_buf_reset(&b->out);
    send_out(b, rid, rid_len, taskq_enc_error(&b->out, code, ref, taskq_span_cstr(text)));
}

static void refuse_peer(tqd_broker_t *b, tqd_peer_t *p, uint32_t code, uint64_t ref,
                        const char *text)
{
    refuse(b, p->rid, p->rid_len, p, code, ref, text);
}

static int send_heartbeat(tqd_broker_t *b, const tqd_peer_t *p)
{
    taskq_buf_reset(&b->out);
    return send_out(b, p->rid, p->rid_len, taskq_enc_heartbeat(&b->out));
}

/* ---- Peers coming and going ---------------------------------------------- */

static void want_flush_client(tqd_broker_t *b, tqd_client_t *c)
{
    if (!c->peer.out_slot) {
        b->out_clients[b->n_out_clients++] = c;
        c->peer.out_slot = b->n_out_clients;
    }
}

static void want_flush_worker(tqd_broker_t *b, tqd_worker_t *w)
{
    if (!w->peer.out_slot) {
        b->out_workers[b->n_out_workers++] = w;
        w->peer.out_slot = b->n_out_workers;
    }
}

static size_t peer_count(const tqd_broker_t *b)
{
    return b->clients.len + b->workers.len;
}

static void client_free(tqd_broker_t *b, tqd_client_t *c)
{
    peer_unmap(b, &c->peer);
    if (c->peer.out_slot)
        b->out_clients[c->peer.out_slot - 1] = NULL;
    tqd_clients_remove(&b->clients, c);
}

/* The client's connection is gone; its record stays while it has jobs
 * running or queued, so their outcomes can be counted and found again. */
static void client_disconnect(tqd_broker_t *b, tqd_client_t *c)
{
    peer_unmap(b, &c->peer);
    if (c->active == 0)
        client_free(b, c);
}

/* A worker is gone: its attempts are superseded, its record freed. */
/* w left: why says how; said_bye for an orderly goodbye. */
static void worker_gone(tqd_broker_t *b, tqd_worker_t *w, const char *why, bool said_bye)
{
    TQ_LOG(LOG_NOTICE, PEER_FMT " left (%s) holding %" PRIu32 " attempts", PEER_ARGS(&w->peer),
            why, w->used);
    tqd_queue_worker_gone(&b->queue, w, said_bye, b->now);
    peer_unmap(b, &w->peer);
    if (w->peer.out_slot)
        b->out_workers[w->peer.out_slot - 1] = NULL;
    tqd_workers_remove(&b->workers, w);
    tqd_worker_destroy(&w);
}

static void peer_leave(tqd_broker_t *b, tqd_peer_t *p, const char *why)
{
    if (p->role == TASKQ_ROLE_WORKER) {
        worker_gone(b, (tqd_worker_t *)p, why, false);
    } else {
        TQ_LOG(LOG_INFO, PEER_FMT " left (%s)", PEER_ARGS(p), why);
        client_disconnect(b, (tqd_client_t *)p);
    }
}

/* ---- Outcomes ------------------------------------------------------------ */

static void owe(tqd_broker_t *b, tqd_client_t *c, uint64_t job, bool unknown)
{
    if (tqd_client_owe(c, job, unknown) < 0) {
        TQ_LOG(LOG_ERR,
                "out of memory: the outcome of job %" PRIu64 " is kept for WATCH but not sent now",
                job);
        return;
    }
    want_flush_client(b, c);
}

/* The queue finished a job: record it and owe it to its clients. */
static void on_finished(void *ctx, tqd_job_t *job)
{
    tqd_broker_t *b = ctx;
    tqd_store_finished(b->store, job);
    tqd_client_t *c = tqd_clients_find(&b->clients, job->client_id);
    if (c) {
        c->active--;
        if (c->peer.rid_len)
            owe(b, c, job->id, false);
        else if (c->active == 0)
            client_free(b, c);
    }
    for (uint16_t i = 0; i < job->n_watchers; i++) {
        tqd_client_t *w = tqd_clients_find(&b->clients, job->watchers[i]);
        if (w && w->peer.rid_len)
            owe(b, w, job->id, false);
    }
}

/* Dispatch gave a worker a job: it is owed a TASKS batch this turn. */
static void on_assigned(void *ctx, tqd_worker_t *w, tqd_job_t *job)
{
    (void)job;
    want_flush_worker(ctx, w);
}

/* Drop the still-queued jobs first .. first+count-1 (newest first, so
 * their ids are handed out again).  Returns how many were dropped. */
static uint32_t unwind(tqd_broker_t *b, uint64_t first, uint32_t count)
{
    uint32_t dropped = 0;
    for (uint32_t i = count; i-- > 0;) {
        tqd_job_t *job = tqd_queue_find(&b->queue, first + i);
        if (job && job->state == TQD_JOB_QUEUED) {
            tqd_queue_drop(&b->queue, job);
            dropped++;
        }
    }
    return dropped;
}

/* ---- Handlers ------------------------------------------------------------ */

static void on_hello(tqd_broker_t *b, tqd_peer_t *old, const uint8_t *rid, size_t rid_len,
                     const taskq_hello_t *h)
{
    if (old)
        peer_leave(b, old, "sent HELLO again");
    if (tqd_htab_reserve(&b->peers, 1) < 0) {
        refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
        return;
    }
    tqd_peer_t *p;
    if (h->role == TASKQ_ROLE_CLIENT) {
        tqd_client_t *c = tqd_clients_find(&b->clients, h->client_id);
        if (!c && peer_count(b) >= TQD_MAX_PEERS) {
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_LIMIT, 0, "too many peers");
            return;
        }
        if (!c && tqd_clients_add(&b->clients, h->client_id, &c) < 0) {
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        peer_unmap(b, &c->peer); /* a reconnect replaces the old connection */
        tqd_peer_set(&c->peer, TASKQ_ROLE_CLIENT, h->name, h->host, h->pid);
        p = &c->peer;
        TQ_LOG(LOG_INFO, PEER_FMT " connected (%" PRIu32 " jobs pending)", PEER_ARGS(p),
                c->active);
    } else {
        if (peer_count(b) >= TQD_MAX_PEERS) {
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_LIMIT, 0, "too many peers");
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
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        if (tqd_workers_add(&b->workers, w) < 0) {
            tqd_worker_destroy(&w);
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        if (tqd_queue_attach(&b->queue, w) < 0) {
            tqd_workers_remove(&b->workers, w);
            tqd_worker_destroy(&w);
            refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        p = &w->peer;
        TQ_LOG(LOG_NOTICE,
                PEER_FMT " joined with credit %" PRIu32 ", %" PRIu32 " queues, %" PRIu32
                         " functions",
                PEER_ARGS(p), w->credit, nq, nf);
    }
    p->last_seen = b->now;
    peer_map(b, p, rid, rid_len);
    taskq_welcome_t wel = {
        .version = taskq_span_cstr(TASKQ_VERSION_STRING),
        .store_id = b->store->id,
        .heartbeat_ms = b->cfg.heartbeat_ms,
        .liveness = b->cfg.liveness,
        .max_frame = b->cfg.max_frame,
    };
    taskq_buf_reset(&b->out);
    send_out(b, rid, rid_len, taskq_enc_welcome(&b->out, &wel));
}

static void on_submit(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id, taskq_iter_t it)
{
    tqd_queue_t *q = &b->queue;
    uint32_t n = it.left;
    if (q->queued + n > b->cfg.max_queued) {
        char text[128];
        snprintf(text, sizeof text, "the broker holds its maximum of %" PRIu32 " queued tasks",
                 b->cfg.max_queued);
        refuse_peer(b, &c->peer, TASKQ_PERR_QUEUE_FULL, req_id, text);
        return;
    }
    if (b->n_accepted == b->cap_accepted) {
        size_t ncap = b->cap_accepted ? b->cap_accepted * 2 : 64;
        tqd_accept_t *v = realloc(b->accepted, ncap * sizeof *v);
        if (!v) {
            refuse_peer(b, &c->peer, TASKQ_PERR_INTERNAL, req_id, "out of memory");
            return;
        }
        b->accepted = v;
        b->cap_accepted = ncap;
    }
    uint64_t first = q->next_id;
    uint32_t added = 0;
    int rc = 0;
    taskq_submit_item_t item;
    tqd_job_t *job;
    while (added < n && (rc = taskq_iter_submit(&it, &item)) > 0 &&
           (rc = tqd_queue_add(q, c->id, &item, &job)) == 0)
        added++;
    if (added < n) {
        unwind(b, first, added);
        if (rc == -ENOSPC)
            refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id,
                        "too many distinct (queue, function) pairs");
        else
            refuse_peer(b, &c->peer, TASKQ_PERR_INTERNAL, req_id, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        tqd_store_submitted(b->store, tqd_queue_find(q, first + i));
    c->active += n;
    b->accepted[b->n_accepted++] = (tqd_accept_t){c->id, req_id, first, n};
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
                want_flush_worker(b, job->worker);
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
            owe(b, c, id, !job);
            continue;
        }
        int rc = tqd_queue_watch(&b->queue, job, c->id);
        if (rc < 0) {
            char text[96];
            snprintf(text, sizeof text, "job %" PRIu64 ": %s", id,
                     rc == -ENOSPC ? "too many clients watch it" : "out of memory");
            refuse_peer(b, &c->peer, rc == -ENOSPC ? TASKQ_PERR_LIMIT : TASKQ_PERR_INTERNAL, 0,
                        text);
        }
    }
}

static void on_ack(tqd_broker_t *b, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (job && job->state == TQD_JOB_FINISHED) {
            tqd_store_forgotten(b->store, id);
            tqd_queue_forget(&b->queue, job);
        }
    }
}

static void on_stats(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id)
{
    taskq_buf_reset(&b->map);
    int rc = tqd_stats_encode(b, &b->map);
    if (rc == -EMSGSIZE) {
        refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id, "the statistics exceed the frame limit");
        return;
    }
    taskq_buf_reset(&b->out);
    if (rc == 0)
        rc = taskq_enc_stats_reply(&b->out, req_id, (taskq_span_t){b->map.data, b->map.len});
    send_out(b, c->peer.rid, c->peer.rid_len, rc);
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
        TQ_LOG(LOG_INFO, PEER_FMT " sent %" PRIu32 " DONE items for attempts it does not hold",
                PEER_ARGS(&w->peer), foreign);
    }
}

static void on_client_msg(tqd_broker_t *b, tqd_client_t *c, const taskq_msg_t *m)
{
    switch (m->type) {
    case TASKQ_MSG_HEARTBEAT:
        send_heartbeat(b, &c->peer);
        break;
    case TASKQ_MSG_BYE:
        peer_leave(b, &c->peer, "said BYE");
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
    default:
        refuse_peer(b, &c->peer, TASKQ_PERR_UNEXPECTED, 0, "not a message a client sends");
        break;
    }
}

static void on_worker_msg(tqd_broker_t *b, tqd_worker_t *w, const taskq_msg_t *m)
{
    switch (m->type) {
    case TASKQ_MSG_HEARTBEAT:
        break;
    case TASKQ_MSG_BYE:
        worker_gone(b, w, "said BYE", true);
        break;
    case TASKQ_MSG_DONE:
        on_done(b, w, m->u.done);
        break;
    default:
        refuse_peer(b, &w->peer, TASKQ_PERR_UNEXPECTED, 0, "not a message a worker sends");
        break;
    }
}

/* One frame from connection rid; multipart: the peer sent more than one. */
static void handle(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const void *data,
                   size_t len, bool multipart)
{
    tqd_peer_t *p = peer_find(b, rid, rid_len);
    if (p)
        p->last_seen = b->now;
    taskq_msg_t m;
    int rc = multipart ? -TASKQ_PERR_MALFORMED : taskq_msg_decode(data, len, &b->limits, &m, NULL);
    if (rc < 0) {
        const char *text = rc == -TASKQ_PERR_VERSION ? "supported: 1"
                           : multipart               ? "a message is one frame"
                                                     : taskq_perr_text(-rc);
        refuse(b, rid, rid_len, p, (uint32_t)-rc, multipart ? 0 : taskq_msg_ref(data, len), text);
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
    else if (!p)
        refuse(b, rid, rid_len, NULL, TASKQ_PERR_HELLO_REQUIRED, 0, "send HELLO first");
    else if (p->role == TASKQ_ROLE_CLIENT)
        on_client_msg(b, (tqd_client_t *)p, &m);
    else
        on_worker_msg(b, (tqd_worker_t *)p, &m);
}

static void read_frames(tqd_broker_t *b)
{
    for (int n = 0; n < READ_BATCH; n++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, b->sock, ZMQ_DONTWAIT) < 0) {
            if (errno != EAGAIN && errno != EINTR)
                TQ_LOG(LOG_ERR, "cannot receive: %s", zmq_strerror(errno));
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        bool have_body = zmq_msg_more(&rid) && zmq_msg_recv(&body, b->sock, ZMQ_DONTWAIT) >= 0;
        bool multipart = have_body && zmq_msg_more(&body);
        if (multipart) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            while (zmq_msg_recv(&extra, b->sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&extra))
                ;
            zmq_msg_close(&extra);
        }
        size_t rid_len = zmq_msg_size(&rid);
        if (have_body && rid_len > 0 && rid_len <= TQD_PEER_ID_MAX)
            handle(b, zmq_msg_data(&rid), rid_len, zmq_msg_data(&body), zmq_msg_size(&body),
                   multipart);
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

/* ---- Timers -------------------------------------------------------------- */

static void tick(tqd_broker_t *b)
{
    uint64_t silence = (uint64_t)b->cfg.liveness * b->cfg.heartbeat_ms;
    /* Backwards: removal moves the last record into the hole. */
    for (size_t i = b->workers.len; i-- > 0;) {
        tqd_worker_t *w = b->workers.v[i];
        if (b->now - w->peer.last_seen > silence)
            worker_gone(b, w, "silent", false);
        else if (send_heartbeat(b, &w->peer) == -EHOSTUNREACH)
            worker_gone(b, w, "connection closed", false);
    }
    for (size_t i = b->clients.len; i-- > 0;) {
        tqd_client_t *c = b->clients.v[i];
        if (c->active == 0 && !c->peer.out_slot && b->now - c->peer.last_seen > silence) {
            TQ_LOG(LOG_DEBUG, PEER_FMT " forgotten (silent, no jobs)", PEER_ARGS(&c->peer));
            client_free(b, c);
        }
    }
    tqd_queue_sweep(&b->queue);
    /* Cannot fail: the tick entry was just popped, so the heap has room. */
    if (tqd_timers_add(&b->timers, b->now + b->cfg.heartbeat_ms, TIMER_TICK, 0, 0) < 0)
        TQ_LOG(LOG_ERR, "cannot arm the heartbeat timer");
}

static void run_limit(tqd_broker_t *b, uint64_t job_id, uint32_t delivery)
{
    tqd_job_t *job = tqd_queue_find(&b->queue, job_id);
    if (!job || job->state != TQD_JOB_RUNNING || job->deliveries != delivery)
        return;
    if (tqd_worker_owe_abandon(job->worker, job_id, job->attempt) == 0)
        want_flush_worker(b, job->worker);
    else
        TQ_LOG(LOG_ERR, "out of memory: no ABANDON for job %" PRIu64, job_id);
    char why[128];
    snprintf(why, sizeof why, "run limit of %" PRIu32 " ms expired on attempt %u of %u",
             job->timeout_ms, (unsigned)job->attempt, (unsigned)job->max_attempts);
    TQ_LOG(LOG_INFO, "job %" PRIu64 ": %s", job_id, why);
    tqd_queue_supersede(&b->queue, job, TASKQ_STATUS_TIMEDOUT, why, b->now);
}

static bool timer_live(void *ctx, const tqd_timer_t *t)
{
    const tqd_broker_t *b = ctx;
    if (t->kind != TIMER_RUN_LIMIT)
        return true;
    const tqd_job_t *job = tqd_queue_find(&b->queue, t->id);
    return job && job->state == TQD_JOB_RUNNING && job->deliveries == t->gen;
}

static void fire_timers(tqd_broker_t *b)
{
    tqd_timer_t t;
    while (tqd_timers_pop(&b->timers, b->now, &t)) {
        if (t.kind == TIMER_TICK)
            tick(b);
        else
            run_limit(b, t.id, t.gen);
    }
}

/* ---- Commit and flush ------------------------------------------------------ */

static void commit(tqd_broker_t *b)
{
    int rc = b->store->ops->commit(b->store);
    if (rc == 0) {
        if (b->commit_failed)
            TQ_LOG(LOG_NOTICE, "the %s store commits again", b->store->ops->name);
        b->commit_failed = false;
        return;
    }
    if (!b->commit_failed)
        TQ_LOG(LOG_ERR, "the %s store cannot commit: %s; refusing tasks", b->store->ops->name,
                strerror(-rc));
    b->commit_failed = true;
    for (size_t i = 0; i < b->n_accepted; i++) {
        const tqd_accept_t *a = &b->accepted[i];
        uint32_t dropped = unwind(b, a->first_job, a->count);
        tqd_client_t *c = tqd_clients_find(&b->clients, a->client_id);
        if (c) {
            c->active -= dropped;
            refuse_peer(b, &c->peer, TASKQ_PERR_STORAGE, a->req_id,
                        "the broker cannot store tasks right now");
        }
    }
    b->n_accepted = 0;
}

static void flush_accepted(tqd_broker_t *b)
{
    for (size_t i = 0; i < b->n_accepted; i++) {
        const tqd_accept_t *a = &b->accepted[i];
        tqd_client_t *c = tqd_clients_find(&b->clients, a->client_id);
        taskq_buf_reset(&b->out);
        int rc = taskq_enc_accepted(&b->out, a->req_id, a->first_job, a->count);
        send_out(b, c ? c->peer.rid : NULL, c ? c->peer.rid_len : 0, rc);
    }
    b->n_accepted = 0;
}

/* The RESULT item for o, or false if its job has gone meanwhile. */
static bool owed_item(const tqd_broker_t *b, const tqd_owed_t *o, taskq_result_item_t *ret)
{
    if (o->unknown) {
        *ret = (taskq_result_item_t){
            o->job, TASKQ_STATUS_UNKNOWN, 0, {unknown_payload, sizeof unknown_payload - 1}};
        return true;
    }
    const tqd_job_t *job = tqd_queue_find(&b->queue, o->job);
    if (!job || job->state != TQD_JOB_FINISHED)
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
            if (send_out(b, c->peer.rid, c->peer.rid_len, rc) == -EHOSTUNREACH)
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
        if (send_out(b, w->peer.rid, w->peer.rid_len, rc) == -EHOSTUNREACH) {
            worker_gone(b, w, "connection closed", false);
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
        rc = send_out(b, w->peer.rid, w->peer.rid_len, rc);
        if (rc < 0) {
            worker_gone(b, w, rc == -EHOSTUNREACH ? "connection closed" : "cannot send to it", false);
            return;
        }
        i = j;
    }
    for (uint32_t k = 0; k < w->n_unsent; k++) {
        const tqd_job_t *job = w->unsent[k];
        tqd_store_dispatched(b->store, job);
        if (job->timeout_ms && tqd_timers_add(&b->timers, b->now + job->timeout_ms, TIMER_RUN_LIMIT,
                                              job->id, job->deliveries) < 0)
            TQ_LOG(LOG_ERR, "out of memory: job %" PRIu64 " runs without its run limit", job->id);
    }
    w->n_unsent = 0;
}

static void flush(tqd_broker_t *b)
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
    /* Run-limit entries of finished attempts stay until they fire; drop
     * them in bulk once they outnumber the running jobs. */
    if (b->timers.len > 2 * b->queue.running + 64)
        tqd_timers_compact(&b->timers, timer_live, b);
}

/* Forget outcomes past their retention time, and the oldest ones beyond
 * max_retained. */
static void expire_outcomes(tqd_broker_t *b)
{
    uint64_t ttl = (uint64_t)b->cfg.result_ttl_s * 1000u;
    tqd_job_t *job;
    while ((job = b->queue.oldest) &&
           (b->now - job->finished_ms >= ttl || b->queue.retained > b->cfg.max_retained)) {
        if (b->now - job->finished_ms < ttl)
            b->evicted++;
        tqd_store_forgotten(b->store, job->id);
        tqd_queue_forget(&b->queue, job);
    }
}

/* ---- Loop ---------------------------------------------------------------- */

/* Milliseconds the next poll may wait: 0 while work is pending, else up to
 * the earliest deadline (there always is one: the heartbeat). */
static long poll_timeout(const tqd_broker_t *b)
{
    if (b->n_accepted || b->n_out_workers || (b->n_out_clients && !b->commit_failed) ||
        (b->queue.dispatch_needed && b->queue.queued))
        return 0;
    uint64_t when;
    if (!tqd_timers_next(&b->timers, &when))
        return -1;
    return when <= b->now ? 0 : (long)(when - b->now);
}

static void say_bye(tqd_broker_t *b)
{
    taskq_buf_reset(&b->out);
    int rc = taskq_enc_bye(&b->out, taskq_span_cstr("shutdown"));
    size_t clients = 0;
    for (size_t i = 0; i < b->workers.len; i++)
        send_out(b, b->workers.v[i]->peer.rid, b->workers.v[i]->peer.rid_len, rc);
    for (size_t i = 0; i < b->clients.len; i++) {
        const tqd_peer_t *p = &b->clients.v[i]->peer;
        if (p->rid_len) {
            send_out(b, p->rid, p->rid_len, rc);
            clients++;
        }
    }
    TQ_LOG(LOG_NOTICE, "shutting down: said BYE to %zu workers and %zu clients", b->workers.len,
            clients);
    tqd_os_notify("STOPPING=1");
}

int tqd_broker_run(tqd_broker_t *b)
{
    while (!tqd_os_stopping()) {
        zmq_pollitem_t items[2] = {{.socket = b->sock, .events = ZMQ_POLLIN},
                                   {.fd = tqd_os_signal_fd(), .events = ZMQ_POLLIN}};
        int rc = zmq_poll(items, items[1].fd >= 0 ? 2 : 1, poll_timeout(b));
        if (rc < 0 && errno != EINTR) {
            int err = errno;
            TQ_LOG(LOG_ERR, "cannot poll the socket: %s", zmq_strerror(err));
            return -err;
        }
        b->now = tqd_os_now_ms();
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            read_frames(b);
        fire_timers(b);
        commit(b);
        tqd_queue_dispatch(&b->queue);
        flush(b);
        expire_outcomes(b);
    }
    say_bye(b);
    return 0;
}

/* ---- Life cycle ------------------------------------------------------------ */

static int set_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

int tqd_broker_new(const tqd_config_t *cfg, tqd_broker_t **ret)
{
    tqd_broker_t *b = calloc(1, sizeof *b);
    if (!b) {
        TQ_LOG(LOG_ERR, "out of memory");
        return -ENOMEM;
    }
    b->cfg = *cfg;
    taskq_limits_default(&b->limits);
    b->limits.max_frame = cfg->max_frame;
    tqd_workers_init(&b->workers);
    tqd_clients_init(&b->clients);
    tqd_timers_init(&b->timers);
    tqd_htab_init(&b->peers);
    b->now = b->started = tqd_os_now_ms();

    int rc = tqd_store_mem_open(&b->store);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot open the memory store: %s", strerror(-rc));
        goto fail;
    }
    rc = tqd_os_random(&b->seed, sizeof b->seed);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot read random bytes: %s", strerror(-rc));
        goto fail;
    }
    tqd_queue_events_t ev = {.finished = on_finished, .assigned = on_assigned, .ctx = b};
    tqd_queue_init(&b->queue, &b->workers, b->seed, &ev);
    b->names = calloc(2 * (size_t)b->limits.max_list, sizeof *b->names);
    b->out_clients = calloc(OUT_CAP, sizeof *b->out_clients);
    b->out_workers = calloc(OUT_CAP, sizeof *b->out_workers);
    rc = -ENOMEM;
    if (!b->names || !b->out_clients || !b->out_workers ||
        tqd_timers_add(&b->timers, b->now + cfg->heartbeat_ms, TIMER_TICK, 0, 0) < 0) {
        TQ_LOG(LOG_ERR, "out of memory");
        goto fail;
    }

    b->zctx = zmq_ctx_new();
    b->sock = b->zctx ? zmq_socket(b->zctx, ZMQ_ROUTER) : NULL;
    int64_t maxmsg = 2 * (int64_t)cfg->max_frame;
    if (!b->sock || set_int(b->sock, ZMQ_ROUTER_MANDATORY, 1) < 0 ||
        set_int(b->sock, ZMQ_SNDHWM, 0) < 0 || set_int(b->sock, ZMQ_RCVHWM, 0) < 0 ||
        set_int(b->sock, ZMQ_LINGER, LINGER_MS) < 0 ||
        zmq_setsockopt(b->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0) {
        rc = -errno;
        TQ_LOG(LOG_ERR, "cannot create the ROUTER socket: %s", zmq_strerror(errno));
        goto fail;
    }
    *ret = b;
    return 0;
fail:
    tqd_broker_destroy(&b);
    return rc;
}

int tqd_broker_bind(tqd_broker_t *b, const char *endpoint, char *ret, size_t cap)
{
    if (zmq_bind(b->sock, endpoint) < 0)
        return -errno;
    size_t len = cap;
    if (zmq_getsockopt(b->sock, ZMQ_LAST_ENDPOINT, ret, &len) < 0)
        return -errno;
    return 0;
}

int tqd_broker_recover(tqd_broker_t *b)
{
    int rc = b->store->ops->recover(b->store, &b->queue);
    if (rc < 0)
        TQ_LOG(LOG_ERR, "cannot load the %s store: %s", b->store->ops->name, strerror(-rc));
    return rc;
}

void tqd_broker_destroy(tqd_broker_t **pb)
{
    tqd_broker_t *b = pb ? *pb : NULL;
    if (!b)
        return;
    if (b->sock)
        zmq_close(b->sock);
    if (b->zctx)
        zmq_ctx_term(b->zctx);
    tqd_queue_fini(&b->queue);
    tqd_workers_fini(&b->workers);
    tqd_clients_fini(&b->clients);
    tqd_timers_fini(&b->timers);
    tqd_htab_fini(&b->peers);
    taskq_buf_fini(&b->out);
    taskq_buf_fini(&b->map);
    free(b->names);
    free(b->accepted);
    free(b->out_clients);
    free(b->out_workers);
    tqd_store_close(&b->store);
    free(b);
    *pb = NULL;
}
