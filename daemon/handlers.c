/*
 * handlers.c - the broker's incoming side: decode a frame, refuse what is
 * malformed or unexpected, and handle each message by the sender's role:
 * HELLO (either), SUBMIT, CANCEL, WATCH, ACK, STATS, FAILED and RETRY
 * (clients), DONE (workers), HEARTBEAT and BYE (both).  Also who a peer
 * is (its identity at HELLO) and what it may see and do: a client acts
 * on its own tasks only, unless it is an admin.
 */
#include "handlers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_impl.h"
#include "conns.h"
#include "log.h"
#include "os.h"
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
            tqd_usage_add(&b->clients, job->owner, -1, -(int64_t)job->arg_len);
            tqd_queue_drop(&b->queue, job);
            dropped++;
        }
    }
    return dropped;
}

/* A message that breaks the protocol came from connection rid (msg):
 * count it against the connection.  Returns true if it is not to be
 * answered as usual: the connection passed its malformed-message limit
 * (told LIMIT now) or had already. */
static bool strike(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const tqd_peer_t *p,
                   const void *msg)
{
    int rc = tqd_conns_malformed(&b->conns, tqd_conns_fd(msg), b->now);
    if (rc == 1) {
        char text[96];
        snprintf(text, sizeof text, "more than %" PRIu32 " malformed messages: disconnecting",
                 b->cfg.max_malformed);
        tqd_outbox_refuse(b, rid, rid_len, p, TASKQ_PERR_LIMIT, 0, text);
    } else if (rc == 2) {
        b->malformed++;
    }
    return rc != 0;
}

/* Who is at the other end of a HELLO, and what it may do. */
typedef struct ident {
    uint64_t owner;  /* owner of what it submits */
    unsigned roles;  /* TQD_ROLE_* it holds */
    bool has_key;    /* proved a CURVE key */
    uint8_t key[32]; /* that key */
} ident_t;

/*
 * With CURVE, the key the ZAP handler admitted decides.  Without, a local
 * connection (loopback TCP, IPC) is its Unix user: a client that may
 * submit exec tasks; root and the broker's own user are also admins, and
 * they and the --worker-user users may be workers.  Anything else (plain TCP from another host, allowed by
 * --insecure) is its session alone, client or worker.
 */
static void identify(const tqd_broker_t *b, const void *msg, const taskq_hello_t *h, ident_t *id)
{
    memset(id, 0, sizeof *id);
    if (b->auth) {
        if (tqd_conns_key(msg, id->key)) {
            id->has_key = true;
            id->roles = tqd_auth_roles(b->auth, id->key);
            id->owner = tqd_owner_of(b->store->id, TQD_IDENT_KEY, id->key, sizeof id->key);
        }
        return;
    }
    uint32_t uid;
    if (tqd_os_peer_uid(tqd_conns_fd(msg), &uid) == 0) {
        /* A worker is handed every user's tasks: locally, only root, the
         * broker's own user and the --worker-user ones may be one without
         * a key. */
        bool admin = uid == 0 || uid == (uint32_t)geteuid(), worker = admin;
        for (size_t i = 0; i < b->cfg.n_worker_users && !worker; i++)
            worker = uid == b->cfg.worker_uids[i];
        id->owner = tqd_owner_of(b->store->id, TQD_IDENT_UID, &uid, sizeof uid);
        id->roles = TQD_ROLE_CLIENT | TQD_ROLE_EXEC | (admin ? TQD_ROLE_ADMIN : 0) |
                    (worker ? TQD_ROLE_WORKER : 0);
    } else {
        /* From another host over plain TCP: --insecure said to trust it. */
        id->roles = TQD_ROLE_CLIENT | TQD_ROLE_WORKER;
        id->owner = tqd_owner_of(b->store->id, TQD_IDENT_SESSION, &h->client_id,
                                 sizeof h->client_id);
    }
}

static void deny(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const tqd_peer_t *p,
                 uint64_t ref, const char *text)
{
    b->denied++;
    tqd_outbox_refuse(b, rid, rid_len, p, TASKQ_PERR_DENIED, ref, text);
}

static void on_hello(tqd_broker_t *b, tqd_peer_t *old, const uint8_t *rid, size_t rid_len,
                     const taskq_hello_t *h, const void *msg)
{
    if (old)
        tqd_peer_leave(b, old, "sent HELLO again");
    ident_t id;
    identify(b, msg, h, &id);
    unsigned need = h->role == TASKQ_ROLE_CLIENT ? TQD_ROLE_CLIENT : TQD_ROLE_WORKER;
    if (!(id.roles & need)) {
        deny(b, rid, rid_len, NULL, 0,
             b->auth ? (need == TQD_ROLE_CLIENT ? "this key is not allowed to connect as a client"
                                                : "this key is not allowed to connect as a worker")
                     : "without CURVE keys, only root, the broker's own user and its "
                       "--worker-user users may serve as workers on this host");
        return;
    }
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
        if (c && c->owner && c->owner != id.owner) {
            deny(b, rid, rid_len, NULL, 0, "this client_id belongs to another identity");
            return;
        }
        if (!c && tqd_clients_add(&b->clients, h->client_id, &c) < 0) {
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_INTERNAL, 0, "out of memory");
            return;
        }
        tqd_route_drop(b, &c->peer); /* a reconnect replaces the old connection */
        tqd_peer_set(&c->peer, TASKQ_ROLE_CLIENT, h->name, h->host, h->pid);
        c->owner = id.owner;
        c->admin = (id.roles & TQD_ROLE_ADMIN) != 0;
        c->exec_ok = (id.roles & TQD_ROLE_EXEC) != 0;
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
    p->has_key = id.has_key;
    memcpy(p->key, id.key, sizeof p->key);
    p->last_seen = b->now;
    tqd_route_add(b, p, rid, rid_len);
    tqd_conns_hello(&b->conns, tqd_conns_fd(msg));
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
    const tqd_usage_t *u = tqd_usage_find(&b->clients, c->owner);
    uint64_t had_tasks = u ? u->tasks : 0, had_bytes = u ? u->bytes : 0;
    if (had_tasks + n > b->cfg.client_max_queued) {
        char text[128];
        snprintf(text, sizeof text, "this client may have at most %" PRIu32 " unfinished tasks",
                 b->cfg.client_max_queued);
        b->client_limits++;
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id, text);
        return;
    }
    if (q->queued + n > b->cfg.max_queued) {
        char text[128];
        snprintf(text, sizeof text, "the broker holds its maximum of %" PRIu32 " queued tasks",
                 b->cfg.max_queued);
        tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_QUEUE_FULL, req_id, text);
        return;
    }
    uint64_t first = q->next_id, bytes = 0;
    uint32_t added = 0;
    int rc = 0;
    taskq_submit_item_t item;
    tqd_job_t *job;
    while (added < n && (rc = taskq_iter_submit(&it, &item)) > 0) {
        if (!c->exec_ok && taskq_span_eq(item.function, "exec")) {
            rc = -EPERM;
            break;
        }
        if (had_bytes + bytes + item.arg.len > b->cfg.client_max_bytes) {
            rc = -EDQUOT;
            break;
        }
        if ((rc = tqd_queue_add(q, c->id, &item, &job)) != 0)
            break;
        job->owner = c->owner;
        bytes += item.arg.len;
        added++;
    }
    if (added == n)
        rc = tqd_queue_mark_submit(q, tqd_queue_find(q, first), req_id, n);
    /* Counted as a whole (one lookup), before an unwind takes back job by
     * job what it drops.  (If counting fails, the owner has no entry, and
     * taking back is a no-op.) */
    if (added > 0 && tqd_usage_add(&b->clients, c->owner, added, (int64_t)bytes) < 0 && rc == 0)
        rc = -ENOMEM;
    if (added < n || rc < 0) {
        tqd_submit_unwind(b, first, added);
        if (rc == -EPERM) {
            b->denied++;
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_DENIED, req_id,
                                   "this client may not submit exec tasks");
        } else if (rc == -EDQUOT) {
            char text[128];
            snprintf(text, sizeof text,
                     "this client's unfinished tasks may hold at most %" PRIu32
                     " bytes of arguments",
                     b->cfg.client_max_bytes);
            b->client_limits++;
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_LIMIT, req_id, text);
        } else if (rc == -ENOSPC)
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

/* May client c see and act on job?  Its own jobs, or any for an admin. */
static bool may_see(tqd_broker_t *b, const tqd_client_t *c, const tqd_job_t *job)
{
    if (c->admin || job->owner == c->owner)
        return true;
    b->denied++;
    return false;
}

static void on_cancel(tqd_broker_t *b, tqd_client_t *c, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (!job || job->state == TQD_JOB_FINISHED || !may_see(b, c, job))
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
        if (job && !may_see(b, c, job))
            job = NULL; /* answered as if there were no such job */
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

static void on_ack(tqd_broker_t *b, tqd_client_t *c, taskq_iter_t it)
{
    uint64_t id;
    while (taskq_iter_u64(&it, &id) > 0) {
        tqd_job_t *job = tqd_queue_find(&b->queue, id);
        if (job && job->state == TQD_JOB_FINISHED && may_see(b, c, job)) {
            tqd_store_forgotten(b->store, job);
            tqd_queue_forget(&b->queue, job);
        }
    }
}

static void on_stats(tqd_broker_t *b, tqd_client_t *c, uint64_t req_id)
{
    taskq_buf_reset(&b->map);
    int rc = tqd_stats_encode(b, c, &b->map);
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
        if (job->id > after && tqd_status_failed(job->status) && job->history &&
            (c->admin || job->owner == c->owner))
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
    if (job && !may_see(b, c, job))
        job = NULL;
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
    tqd_usage_add(&b->clients, job->owner, 1, job->arg_len);
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

static void on_client_msg(tqd_broker_t *b, tqd_client_t *c, const taskq_msg_t *m,
                          const void *msg)
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
        on_cancel(b, c, m->u.jobs);
        break;
    case TASKQ_MSG_WATCH:
        on_watch(b, c, m->u.jobs);
        break;
    case TASKQ_MSG_ACK:
        on_ack(b, c, m->u.jobs);
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
        if (!strike(b, c->peer.rid, c->peer.rid_len, &c->peer, msg))
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_UNEXPECTED, 0,
                                   "not a message a client sends");
        break;
    }
}

static void on_worker_msg(tqd_broker_t *b, tqd_worker_t *w, const taskq_msg_t *m,
                          const void *msg)
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
        if (!strike(b, w->peer.rid, w->peer.rid_len, &w->peer, msg))
            tqd_outbox_refuse_peer(b, &w->peer, TASKQ_PERR_UNEXPECTED, 0,
                                   "not a message a worker sends");
        break;
    }
}

void tqd_auth_recheck(tqd_broker_t *b)
{
    if (!b->auth)
        return;
    for (size_t i = b->workers.len; i-- > 0;) {
        tqd_worker_t *w = b->workers.v[i];
        if (w->peer.has_key && !(tqd_auth_roles(b->auth, w->peer.key) & TQD_ROLE_WORKER)) {
            deny(b, w->peer.rid, w->peer.rid_len, &w->peer, 0, "key revoked");
            tqd_worker_leave(b, w, "its key was revoked", false);
        }
    }
    for (size_t i = b->clients.len; i-- > 0;) {
        tqd_client_t *c = b->clients.v[i];
        if (!c->peer.has_key || !c->peer.rid_len)
            continue;
        unsigned roles = tqd_auth_roles(b->auth, c->peer.key);
        c->admin = (roles & TQD_ROLE_ADMIN) != 0;
        c->exec_ok = (roles & TQD_ROLE_EXEC) != 0;
        if (!(roles & TQD_ROLE_CLIENT)) {
            deny(b, c->peer.rid, c->peer.rid_len, &c->peer, 0, "key revoked");
            tqd_peer_leave(b, &c->peer, "its key was revoked");
        }
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
                      size_t len, bool multipart, const void *msg)
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
        if (strike(b, rid, rid_len, p, msg))
            return;
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
    if (m.type == TASKQ_MSG_HELLO) {
        on_hello(b, p, rid, rid_len, &m.u.hello, msg);
    } else if (!p && m.type == TASKQ_MSG_DONE) {
        late_done(b, rid, rid_len, m.u.done.left);
    } else if (!p) {
        if (!strike(b, rid, rid_len, NULL, msg))
            tqd_outbox_refuse(b, rid, rid_len, NULL, TASKQ_PERR_HELLO_REQUIRED, 0,
                              "send HELLO first");
    } else if (p->role == TASKQ_ROLE_CLIENT) {
        on_client_msg(b, (tqd_client_t *)p, &m, msg);
    } else {
        on_worker_msg(b, (tqd_worker_t *)p, &m, msg);
    }
}
