/*
 * queue.c - the scheduler: job table, lanes, priority levels, per-client
 * flows, dispatch to worker credit, outcomes and their retention.
 */
#include "queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The jobs of one priority in one lane: a ring of flows. */
typedef struct tqd_level {
    struct tqd_level *prev;  /* higher priority, or NULL */
    struct tqd_level *next;  /* lower priority, or NULL */
    struct tqd_flow *cursor; /* the flow whose turn is next */
    int32_t priority;        /* priority of its jobs */
} tqd_level_t;

/* The jobs of one client at one priority in one lane, first in first out. */
typedef struct tqd_flow {
    struct tqd_flow *prev; /* ring of the level's flows */
    struct tqd_flow *next; /* same */
    tqd_level_t *level;    /* its level */
    tqd_lane_t *lane;      /* its lane */
    tqd_job_t *head;       /* next job to serve */
    tqd_job_t *tail;       /* last job added */
    uint64_t client_id;    /* the submitting client */
    uint64_t hash;         /* key hash in the flow index */
} tqd_flow_t;

/* The msgpack str a payload falls back to when storing it failed. */
static const uint8_t oom_payload[] = "\xb4"
                                     "broker out of memory";

void tqd_queue_init(tqd_queue_t *q, tqd_workers_t *workers, uint64_t seed,
                    const tqd_queue_events_t *ev)
{
    memset(q, 0, sizeof *q);
    q->workers = workers;
    q->ev = *ev;
    q->seed = seed;
    q->next_id = 1;
    q->lane_serial = 1;
}

/* Append p to a vector of pointers.  0 or -ENOMEM. */
static int vec_push(void ***v, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void **nv = realloc(*v, ncap * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = p;
    return 0;
}

static bool span_is(taskq_span_t s, const uint8_t *p, size_t len)
{
    return s.len == len && (len == 0 || memcmp(s.ptr, p, len) == 0);
}

/* ---- Jobs ---------------------------------------------------------------- */

static bool job_has_id(const void *item, const void *key)
{
    return ((const tqd_job_t *)item)->id == *(const uint64_t *)key;
}

tqd_job_t *tqd_queue_find(const tqd_queue_t *q, uint64_t id)
{
    return tqd_htab_find(&q->jobs, tqd_hash_u64(id), job_has_id, &id);
}

/* ---- SUBMIT index --------------------------------------------------------- */

typedef struct submit_key {
    uint64_t client_id;
    uint64_t req_id;
} submit_key_t;

static bool job_is_submit(const void *item, const void *key)
{
    const tqd_job_t *job = item;
    const submit_key_t *k = key;
    return job->client_id == k->client_id && job->req_id == k->req_id;
}

static uint64_t submit_hash(uint64_t client_id, uint64_t req_id)
{
    return tqd_hash_u64(client_id ^ tqd_hash_u64(req_id));
}

int tqd_queue_mark_submit(tqd_queue_t *q, tqd_job_t *job, uint64_t req_id, uint32_t count)
{
    if (tqd_htab_insert(&q->submits, submit_hash(job->client_id, req_id), job) < 0)
        return -ENOMEM;
    job->req_id = req_id;
    job->batch = count;
    return 0;
}

tqd_job_t *tqd_queue_find_submit(const tqd_queue_t *q, uint64_t client_id, uint64_t req_id)
{
    submit_key_t key = {client_id, req_id};
    return tqd_htab_find(&q->submits, submit_hash(client_id, req_id), job_is_submit, &key);
}

static void submit_unmark(tqd_queue_t *q, tqd_job_t *job)
{
    if (!job->batch)
        return;
    tqd_htab_remove(&q->submits, submit_hash(job->client_id, job->req_id), job);
    job->batch = 0;
}

/* ---- History ------------------------------------------------------------- */

bool tqd_status_failed(uint8_t status)
{
    return status == TASKQ_STATUS_FAILED || status == TASKQ_STATUS_LOST ||
           status == TASKQ_STATUS_TIMEDOUT;
}

static void history_free(tqd_history_t *h)
{
    if (!h)
        return;
    for (uint16_t i = 0; i < h->n; i++)
        free(h->v[i]);
    free(h->v);
    free(h);
}

/* job's history, made with these names if it has none; NULL on ENOMEM. */
static tqd_history_t *history_get(tqd_job_t *job, taskq_span_t queue, taskq_span_t function)
{
    if (job->history)
        return job->history;
    tqd_history_t *h = calloc(1, sizeof *h + queue.len + function.len);
    if (!h)
        return NULL;
    uint8_t *names = (uint8_t *)(h + 1);
    memcpy(names, queue.ptr, queue.len);
    memcpy(names + queue.len, function.ptr, function.len);
    h->queue = (taskq_span_t){names, queue.len};
    h->function = (taskq_span_t){names + queue.len, function.len};
    job->history = h;
    return h;
}

/* Append a copy of a to h (beyond TQD_MAX_HISTORY entries, or out of
 * memory, the entry is not kept). */
static void history_push(tqd_history_t *h, const tqd_attempt_rec_t *a)
{
    if (h->n >= TQD_MAX_HISTORY)
        return;
    if (h->n == h->cap) {
        uint16_t ncap = h->cap ? (uint16_t)(h->cap * 2) : 4;
        tqd_attempt_rec_t **v = realloc(h->v, ncap * sizeof *v);
        if (!v)
            return;
        h->v = v;
        h->cap = ncap;
    }
    tqd_attempt_rec_t *e = malloc(sizeof *e + a->worker.len + a->host.len + a->cause.len);
    if (!e)
        return;
    *e = *a;
    uint8_t *p = (uint8_t *)(e + 1);
    taskq_span_t *spans[] = {&e->worker, &e->host, &e->cause};
    for (size_t i = 0; i < 3; i++) {
        if (spans[i]->len)
            memcpy(p, spans[i]->ptr, spans[i]->len);
        spans[i]->ptr = p;
        p += spans[i]->len;
    }
    h->v[h->n++] = e;
}

static void job_free(tqd_queue_t *q, tqd_job_t *job)
{
    tqd_htab_remove(&q->jobs, tqd_hash_u64(job->id), job);
    submit_unmark(q, job);
    history_free(job->history);
    free(job->watchers);
    free(job->result);
    free(job);
}

taskq_span_t tqd_job_payload(const tqd_job_t *job)
{
    if (job->result)
        return (taskq_span_t){job->result, job->result_len};
    return (taskq_span_t){oom_payload, sizeof oom_payload - 1};
}

/* ---- Queue records and lanes ------------------------------------------- */

static bool qinfo_has_name(const void *item, const void *key)
{
    const tqd_qinfo_t *qi = item;
    return span_is(*(const taskq_span_t *)key, qi->name, qi->name_len);
}

static tqd_qinfo_t *qinfo_get(tqd_queue_t *q, taskq_span_t name)
{
    uint64_t hash = tqd_hash_bytes(name.ptr, name.len, q->seed);
    tqd_qinfo_t *qi = tqd_htab_find(&q->queue_index, hash, qinfo_has_name, &name);
    if (qi)
        return qi;
    qi = calloc(1, sizeof *qi + name.len);
    if (!qi)
        return NULL;
    qi->hash = hash;
    qi->name_len = (uint32_t)name.len;
    memcpy(qi->name, name.ptr, name.len);
    qi->index = q->n_queues;
    if (tqd_htab_reserve(&q->queue_index, 1) < 0 ||
        vec_push((void ***)&q->queues, &q->n_queues, &q->cap_queues, qi) < 0) {
        free(qi);
        return NULL;
    }
    tqd_htab_insert(&q->queue_index, hash, qi);
    return qi;
}

static void qinfo_free(tqd_queue_t *q, tqd_qinfo_t *qi)
{
    tqd_htab_remove(&q->queue_index, qi->hash, qi);
    q->queues[qi->index] = q->queues[--q->n_queues];
    q->queues[qi->index]->index = qi->index;
    free(qi);
}

typedef struct lane_key {
    taskq_span_t queue;
    taskq_span_t function;
} lane_key_t;

static bool lane_has_key(const void *item, const void *key)
{
    const tqd_lane_t *l = item;
    const lane_key_t *k = key;
    return span_is(k->function, l->function, l->function_len) &&
           span_is(k->queue, l->queue->name, l->queue->name_len);
}

static taskq_span_t lane_queue(const tqd_lane_t *l)
{
    return (taskq_span_t){l->queue->name, l->queue->name_len};
}

static taskq_span_t lane_function(const tqd_lane_t *l)
{
    return (taskq_span_t){l->function, l->function_len};
}

/* Take lane out of every worker's list, the index and the vector; free it. */
static void lane_free(tqd_queue_t *q, tqd_lane_t *lane)
{
    for (size_t i = 0; i < q->workers->len; i++)
        tqd_worker_remove_lane(q->workers->v[i], lane);
    tqd_htab_remove(&q->lane_index, lane->hash, lane);
    q->lanes[lane->index] = q->lanes[--q->n_lanes];
    q->lanes[lane->index]->index = lane->index;
    lane->queue->lanes--;
    free(lane);
}

/* The lane of (queue, function), made and given to the workers that serve
 * it if new.  NULL with *err = -ENOSPC or -ENOMEM. */
static tqd_lane_t *lane_get(tqd_queue_t *q, taskq_span_t queue, taskq_span_t function, int *err)
{
    lane_key_t key = {queue, function};
    uint64_t hash =
        tqd_hash_bytes(function.ptr, function.len, tqd_hash_bytes(queue.ptr, queue.len, q->seed));
    tqd_lane_t *lane = tqd_htab_find(&q->lane_index, hash, lane_has_key, &key);
    if (lane)
        return lane;
    *err = -ENOSPC;
    if (q->n_lanes >= TQD_MAX_LANES)
        return NULL;
    *err = -ENOMEM;
    tqd_qinfo_t *qi = qinfo_get(q, queue);
    if (!qi)
        return NULL;
    lane = calloc(1, sizeof *lane + function.len);
    if (!lane)
        return NULL;
    lane->hash = hash;
    lane->serial = q->lane_serial++;
    lane->queue = qi;
    lane->function_len = (uint32_t)function.len;
    memcpy(lane->function, function.ptr, function.len);
    lane->index = q->n_lanes;
    if (tqd_htab_reserve(&q->lane_index, 1) < 0 ||
        vec_push((void ***)&q->lanes, &q->n_lanes, &q->cap_lanes, lane) < 0) {
        free(lane);
        return NULL;
    }
    tqd_htab_insert(&q->lane_index, hash, lane);
    qi->lanes++;
    for (size_t i = 0; i < q->workers->len; i++) {
        tqd_worker_t *w = q->workers->v[i];
        if (tqd_worker_serves(w, queue, function) && tqd_worker_add_lane(w, lane) < 0) {
            lane_free(q, lane);
            return NULL;
        }
    }
    return lane;
}

int tqd_queue_attach(tqd_queue_t *q, tqd_worker_t *w)
{
    for (size_t i = 0; i < q->n_lanes; i++) {
        tqd_lane_t *lane = q->lanes[i];
        if (tqd_worker_serves(w, lane_queue(lane), lane_function(lane)) &&
            tqd_worker_add_lane(w, lane) < 0)
            return -ENOMEM;
    }
    q->dispatch_needed = true;
    return 0;
}

void tqd_queue_sweep(tqd_queue_t *q)
{
    /* Backwards, because freeing moves the last lane into the hole. */
    for (size_t i = q->n_lanes; i-- > 0;) {
        tqd_lane_t *lane = q->lanes[i];
        if (lane->refs)
            lane->idle = false;
        else if (!lane->idle)
            lane->idle = true;
        else
            lane_free(q, lane);
    }
    for (size_t i = q->n_queues; i-- > 0 && q->n_queues > TQD_IDLE_QUEUES;)
        if (q->queues[i]->lanes == 0)
            qinfo_free(q, q->queues[i]);
}

/* The current attempt of job (queued or running: it has its lane) ended
 * without a result, for cause: add it to the job's history. */
static void history_add(tqd_queue_t *q, tqd_job_t *job, const char *cause, uint64_t now)
{
    tqd_history_t *h = history_get(job, lane_queue(job->lane), lane_function(job->lane));
    if (!h)
        return;
    tqd_attempt_rec_t a = {
        .started_ms = job->started_ms ? (uint64_t)((int64_t)job->started_ms + q->wall_offset) : 0,
        .ended_ms = (uint64_t)((int64_t)now + q->wall_offset),
        .attempt = job->attempt,
        .cause = {(const uint8_t *)cause, strlen(cause)},
    };
    if (job->worker) {
        const tqd_peer_t *p = &job->worker->peer;
        a.worker = (taskq_span_t){p->name, p->name_len};
        a.host = (taskq_span_t){p->host, p->host_len};
        a.pid = p->pid;
    }
    history_push(h, &a);
}

/* ---- Levels and flows -------------------------------------------------- */

typedef struct flow_key {
    const tqd_lane_t *lane;
    int32_t priority;
    uint64_t client_id;
} flow_key_t;

static bool flow_has_key(const void *item, const void *key)
{
    const tqd_flow_t *f = item;
    const flow_key_t *k = key;
    return f->lane == k->lane && f->client_id == k->client_id && f->level->priority == k->priority;
}

static uint64_t flow_hash(const flow_key_t *k)
{
    return tqd_hash_u64(k->lane->serial ^ tqd_hash_u64(k->client_id) ^
                        ((uint64_t)(uint32_t)k->priority << 40));
}

/* The level of priority in lane, made (in order) if missing; NULL on OOM. */
static tqd_level_t *level_get(tqd_lane_t *lane, int32_t priority)
{
    tqd_level_t *prev = NULL, *l = lane->levels;
    while (l && l->priority > priority) {
        prev = l;
        l = l->next;
    }
    if (l && l->priority == priority)
        return l;
    tqd_level_t *nl = calloc(1, sizeof *nl);
    if (!nl)
        return NULL;
    nl->priority = priority;
    nl->prev = prev;
    nl->next = l;
    if (l)
        l->prev = nl;
    if (prev)
        prev->next = nl;
    else
        lane->levels = nl;
    return nl;
}

static void level_free(tqd_lane_t *lane, tqd_level_t *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        lane->levels = l->next;
    if (l->next)
        l->next->prev = l->prev;
    free(l);
}

/*
 * Queue job in its flow: at the back, or at the front for a retry.  A new
 * flow joins its level's ring just before the cursor (last in the current
 * round of clients), except for a retry, which takes the cursor: the job
 * was at the front before.  Returns 0 or -ENOMEM (nothing changed).
 */
static int flow_push(tqd_queue_t *q, tqd_job_t *job, bool front)
{
    flow_key_t key = {job->lane, job->priority, job->client_id};
    uint64_t hash = flow_hash(&key);
    tqd_flow_t *f = tqd_htab_find(&q->flows, hash, flow_has_key, &key);
    if (!f) {
        if (tqd_htab_reserve(&q->flows, 1) < 0)
            return -ENOMEM;
        f = calloc(1, sizeof *f);
        if (!f)
            return -ENOMEM;
        tqd_level_t *l = level_get(job->lane, job->priority);
        if (!l) {
            free(f);
            return -ENOMEM;
        }
        f->level = l;
        f->lane = job->lane;
        f->client_id = job->client_id;
        f->hash = hash;
        if (l->cursor) {
            f->next = l->cursor;
            f->prev = l->cursor->prev;
            f->prev->next = f;
            f->next->prev = f;
        } else {
            f->next = f->prev = f;
        }
        if (!l->cursor || front)
            l->cursor = f;
        tqd_htab_insert(&q->flows, hash, f);
    }
    job->flow = f;
    if (front) {
        job->prev = NULL;
        job->next = f->head;
        if (f->head)
            f->head->prev = job;
        else
            f->tail = job;
        f->head = job;
    } else {
        job->next = NULL;
        job->prev = f->tail;
        if (f->tail)
            f->tail->next = job;
        else
            f->head = job;
        f->tail = job;
    }
    return 0;
}

/* Take a queued job out of its flow; free the flow (and level) if empty. */
static void flow_unlink(tqd_queue_t *q, tqd_job_t *job)
{
    tqd_flow_t *f = job->flow;
    if (job->prev)
        job->prev->next = job->next;
    else
        f->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        f->tail = job->prev;
    job->prev = job->next = NULL;
    job->flow = NULL;
    if (f->head)
        return;
    tqd_level_t *l = f->level;
    if (f->next == f) {
        level_free(f->lane, l);
    } else {
        if (l->cursor == f)
            l->cursor = f->next;
        f->prev->next = f->next;
        f->next->prev = f->prev;
    }
    tqd_htab_remove(&q->flows, f->hash, f);
    free(f);
}

/* ---- Adding and dropping ----------------------------------------------- */

static void changed(tqd_queue_t *q, tqd_job_t *job)
{
    if (q->ev.changed)
        q->ev.changed(q->ev.ctx, job);
}

/* Make job id of client_id from item, queued at the back of its client's
 * FIFO.  0, -ENOSPC (no lane to be had) or -ENOMEM; nothing changed then. */
static int job_enqueue(tqd_queue_t *q, uint64_t id, uint64_t client_id,
                       const taskq_submit_item_t *item, tqd_job_t **ret)
{
    int rc;
    tqd_lane_t *lane = lane_get(q, item->queue, item->function, &rc);
    if (!lane)
        return rc;
    if (tqd_htab_reserve(&q->jobs, 1) < 0)
        return -ENOMEM;
    tqd_job_t *job = calloc(1, sizeof *job + item->arg.len);
    if (!job)
        return -ENOMEM;
    job->id = id;
    job->client_id = client_id;
    job->lane = lane;
    job->priority = (int16_t)item->priority;
    job->max_attempts = (uint16_t)item->max_attempts;
    job->timeout_ms = item->timeout_ms;
    job->arg_len = (uint32_t)item->arg.len;
    if (item->arg.len)
        memcpy(job->arg, item->arg.ptr, item->arg.len);
    job->state = TQD_JOB_QUEUED;
    if (flow_push(q, job, false) < 0) {
        free(job);
        return -ENOMEM;
    }
    tqd_htab_insert(&q->jobs, tqd_hash_u64(job->id), job);
    lane->refs++;
    lane->idle = false;
    lane->queue->queued++;
    q->queued++;
    q->dispatch_needed = true;
    *ret = job;
    return 0;
}

int tqd_queue_add(tqd_queue_t *q, uint64_t client_id, const taskq_submit_item_t *item,
                  tqd_job_t **ret)
{
    int rc = job_enqueue(q, q->next_id, client_id, item, ret);
    if (rc == 0)
        q->next_id++;
    return rc;
}

void tqd_queue_drop(tqd_queue_t *q, tqd_job_t *job)
{
    if (job->state == TQD_JOB_RUNNING) {
        tqd_worker_unsend(job->worker, job);
        job->lane->queue->running--;
        q->running--;
        q->dispatch_needed = true;
    } else {
        flow_unlink(q, job);
        job->lane->queue->queued--;
        q->queued--;
    }
    job->lane->refs--;
    if (job->id == q->next_id - 1)
        q->next_id--;
    job_free(q, job);
}

/* Take a finished job out of the retained list. */
static void retained_unlink(tqd_queue_t *q, tqd_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        q->oldest = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        q->newest = job->prev;
    job->prev = job->next = NULL;
    q->retained--;
}

/* Append a finished job to the retained list (newest last). */
static void retained_push(tqd_queue_t *q, tqd_job_t *job)
{
    job->next = NULL;
    job->prev = q->newest;
    if (q->newest)
        q->newest->next = job;
    else
        q->oldest = job;
    q->newest = job;
    q->retained++;
}

/* ---- Outcomes ---------------------------------------------------------- */

/* Give job its outcome: leave its lane or worker, store the payload, count
 * it, retain it, and tell the owner. */
static void finish(tqd_queue_t *q, tqd_job_t *job, uint8_t status, const void *payload, size_t len,
                   uint64_t now)
{
    tqd_qinfo_t *qi = job->lane->queue;
    if (job->state == TQD_JOB_QUEUED) {
        flow_unlink(q, job);
        qi->queued--;
        q->queued--;
    } else {
        qi->running--;
        q->running--;
        job->worker = NULL;
    }
    job->lane->refs--;
    job->lane = NULL;
    job->result = len ? malloc(len) : NULL;
    if (job->result) {
        memcpy(job->result, payload, len);
        job->result_len = (uint32_t)len;
    } else if (status == TASKQ_STATUS_DONE) {
        status = TASKQ_STATUS_FAILED;
    }
    switch (status) {
    case TASKQ_STATUS_DONE:
        qi->done++;
        q->done++;
        break;
    case TASKQ_STATUS_FAILED:
        qi->failed++;
        q->failed++;
        break;
    case TASKQ_STATUS_CANCELLED:
        q->cancelled++;
        break;
    case TASKQ_STATUS_LOST:
        q->lost++;
        break;
    default:
        q->timedout++;
        break;
    }
    job->state = TQD_JOB_FINISHED;
    job->status = status;
    job->finished_ms = now;
    retained_push(q, job);
    changed(q, job);
    q->ev.finished(q->ev.ctx, job);
    free(job->watchers);
    job->watchers = NULL;
    job->n_watchers = 0;
}

/* finish() with a str payload holding text. */
static void finish_text(tqd_queue_t *q, tqd_job_t *job, uint8_t status, const char *text,
                        uint64_t now)
{
    taskq_buf_t b = {0};
    if (taskq_enc_str(&b, text, strlen(text)) == 0)
        finish(q, job, status, b.data, b.len, now);
    else
        finish(q, job, status, NULL, 0, now);
    taskq_buf_fini(&b);
}

void tqd_queue_forget(tqd_queue_t *q, tqd_job_t *job)
{
    retained_unlink(q, job);
    job_free(q, job);
}

int tqd_queue_watch(tqd_queue_t *q, tqd_job_t *job, uint64_t client_id)
{
    if (client_id == job->client_id)
        return 0;
    for (uint16_t i = 0; i < job->n_watchers; i++)
        if (job->watchers[i] == client_id)
            return 0;
    if (job->n_watchers >= TQD_MAX_WATCHERS)
        return -ENOSPC;
    uint64_t *v = realloc(job->watchers, (job->n_watchers + 1u) * sizeof *v);
    if (!v)
        return -ENOMEM;
    v[job->n_watchers++] = client_id;
    job->watchers = v;
    return 0;
}

/* ---- Running ----------------------------------------------------------- */

/* The lane of w whose head has the highest priority; among equals, the
 * first after the one served last. */
static tqd_lane_t *pick_lane(tqd_worker_t *w)
{
    tqd_lane_t *best = NULL;
    uint32_t best_i = 0;
    for (uint32_t k = 1; k <= w->n_lanes; k++) {
        uint32_t i = (uint32_t)(((uint64_t)w->lane_cursor + k) % w->n_lanes);
        tqd_lane_t *l = w->lanes[i];
        if (l->levels && (!best || l->levels->priority > best->levels->priority)) {
            best = l;
            best_i = i;
        }
    }
    if (best)
        w->lane_cursor = best_i;
    return best;
}

/* Give the next job of lane to w (which has room reserved). */
static void assign_next(tqd_queue_t *q, tqd_lane_t *lane, tqd_worker_t *w, uint64_t now)
{
    tqd_level_t *l = lane->levels;
    tqd_flow_t *f = l->cursor;
    tqd_job_t *job = f->head;
    l->cursor = f->next;
    flow_unlink(q, job);
    job->state = TQD_JOB_RUNNING;
    job->attempt++;
    job->deliveries++;
    job->worker = w;
    job->started_ms = now;
    lane->queue->queued--;
    lane->queue->running++;
    q->queued--;
    q->running++;
    tqd_worker_hold(w, job->id, job->attempt, job);
    changed(q, job);
    q->ev.assigned(q->ev.ctx, w, job);
}

void tqd_queue_dispatch(tqd_queue_t *q, uint64_t now)
{
    if (!q->dispatch_needed)
        return;
    q->dispatch_needed = false;
    tqd_workers_t *ws = q->workers;
    size_t m = 0;
    for (size_t k = 0; k < ws->len && q->queued > 0; k++) {
        tqd_worker_t *w = ws->v[(ws->rr + k) % ws->len];
        if (w->used < w->credit && w->n_lanes > 0)
            ws->scratch[m++] = w;
    }
    if (ws->len)
        ws->rr = (ws->rr + 1) % ws->len;
    while (m > 0 && q->queued > 0) {
        size_t keep = 0;
        for (size_t i = 0; i < m && q->queued > 0; i++) {
            tqd_worker_t *w = ws->scratch[i];
            tqd_lane_t *lane = pick_lane(w);
            if (!lane || tqd_worker_reserve(w) < 0)
                continue;
            assign_next(q, lane, w, now);
            if (w->used < w->credit)
                ws->scratch[keep++] = w;
        }
        m = keep;
    }
}

/* Put a running job back at the front of its client's FIFO.  On ENOMEM it
 * finishes with status instead. */
static void requeue(tqd_queue_t *q, tqd_job_t *job, uint8_t status, uint64_t now)
{
    job->worker = NULL;
    job->state = TQD_JOB_QUEUED;
    if (flow_push(q, job, true) < 0) {
        job->state = TQD_JOB_RUNNING;
        finish(q, job, status, NULL, 0, now);
        return;
    }
    job->lane->queue->running--;
    job->lane->queue->queued++;
    q->running--;
    q->queued++;
    q->dispatch_needed = true;
    changed(q, job);
}

/* The current attempt was never started: the next delivery reuses its
 * number, so handing work back costs the job none of its attempts.
 * Fencing still holds, as the worker no longer holds this attempt. */
static void give_back(tqd_queue_t *q, tqd_job_t *job, uint64_t now)
{
    job->attempt--;
    requeue(q, job, TASKQ_STATUS_LOST, now);
}

int tqd_queue_done(tqd_queue_t *q, tqd_worker_t *w, const taskq_done_item_t *d, uint64_t now)
{
    if (!tqd_worker_release(w, d->job_id, d->attempt))
        return -ENOENT;
    if (d->status == TASKQ_DONE_RETURNED)
        w->credit = 0; /* the worker is draining: it takes nothing more */
    w->done++;
    q->dispatch_needed = true;
    tqd_job_t *job = tqd_queue_find(q, d->job_id);
    if (!job || job->state != TQD_JOB_RUNNING || job->attempt != d->attempt)
        return 1;
    if (d->status == TASKQ_DONE_RETURNED) {
        give_back(q, job, now);
        return 0;
    }
    if (d->status != TASKQ_DONE_OK) {
        taskq_span_t why = {0};
        taskq_span_str(d->payload, &why);
        char text[1024];
        snprintf(text, sizeof text, "%.*s", (int)why.len, (const char *)why.ptr);
        if (d->status == TASKQ_DONE_RETRY) {
            tqd_queue_supersede(q, job, TASKQ_STATUS_FAILED, text, now);
            return 0;
        }
        history_add(q, job, text, now);
    }
    finish(q, job, d->status == TASKQ_DONE_OK ? TASKQ_STATUS_DONE : TASKQ_STATUS_FAILED,
           d->payload.ptr, d->payload.len, now);
    return 0;
}

void tqd_queue_cancel(tqd_queue_t *q, tqd_job_t *job, uint64_t now)
{
    finish_text(q, job, TASKQ_STATUS_CANCELLED, "cancelled by a client", now);
}

void tqd_queue_supersede(tqd_queue_t *q, tqd_job_t *job, uint8_t status, const char *why,
                         uint64_t now)
{
    history_add(q, job, why, now);
    if (job->attempt >= job->max_attempts) {
        finish_text(q, job, status, why, now);
        return;
    }
    requeue(q, job, status, now);
    if (job->state == TQD_JOB_QUEUED) {
        job->lane->queue->retried++;
        q->retried++;
    }
}

void tqd_queue_worker_gone(tqd_queue_t *q, tqd_worker_t *w, bool said_bye, uint64_t now)
{
    size_t pos = 0;
    tqd_held_t h;
    while (tqd_worker_held_next(w, &pos, &h)) {
        tqd_job_t *job = tqd_queue_find(q, h.job);
        if (!job || job->state != TQD_JOB_RUNNING || job->attempt != h.attempt)
            continue;
        if (said_bye) {
            give_back(q, job, now);
            continue;
        }
        char why[1024];
        snprintf(why, sizeof why, "worker %.*s on %.*s (pid %u) went away during attempt %u of %u",
                 (int)w->peer.name_len, (const char *)w->peer.name, (int)w->peer.host_len,
                 (const char *)w->peer.host, w->peer.pid, (unsigned)job->attempt,
                 (unsigned)job->max_attempts);
        tqd_queue_supersede(q, job, TASKQ_STATUS_LOST, why, now);
    }
}

/* ---- Restoring and retrying ------------------------------------------- */

static bool rec_valid(const tqd_job_rec_t *r)
{
    const taskq_submit_item_t *t = &r->task;
    return r->id > 0 && r->client_id > 0 && t->queue.len > 0 && t->function.len > 0 &&
           t->priority >= -1000 && t->priority <= 1000 && t->max_attempts >= 1 &&
           t->max_attempts <= 1000 && r->attempt <= t->max_attempts &&
           r->n_hist <= TQD_MAX_HISTORY &&
           (r->state == TQD_JOB_QUEUED ||
            (r->state == TQD_JOB_RUNNING && r->attempt >= 1) ||
            (r->state == TQD_JOB_FINISHED && r->status <= TASKQ_STATUS_TIMEDOUT));
}

/* A finished job from r: retained, not in any lane. */
static int restore_finished(tqd_queue_t *q, const tqd_job_rec_t *r, tqd_job_t **ret)
{
    if (tqd_htab_reserve(&q->jobs, 1) < 0)
        return -ENOMEM;
    tqd_job_t *job = calloc(1, sizeof *job + r->task.arg.len);
    if (!job)
        return -ENOMEM;
    job->id = r->id;
    job->client_id = r->client_id;
    job->priority = (int16_t)r->task.priority;
    job->max_attempts = (uint16_t)r->task.max_attempts;
    job->timeout_ms = r->task.timeout_ms;
    job->attempt = r->attempt;
    job->arg_len = (uint32_t)r->task.arg.len;
    if (r->task.arg.len)
        memcpy(job->arg, r->task.arg.ptr, r->task.arg.len);
    if (r->result.len) {
        job->result = malloc(r->result.len);
        if (!job->result) {
            free(job);
            return -ENOMEM;
        }
        memcpy(job->result, r->result.ptr, r->result.len);
        job->result_len = (uint32_t)r->result.len;
    }
    if ((r->n_hist || tqd_status_failed(r->status)) &&
        !history_get(job, r->task.queue, r->task.function)) {
        free(job->result);
        free(job);
        return -ENOMEM;
    }
    job->state = TQD_JOB_FINISHED;
    job->status = r->status;
    job->finished_ms = r->finished_ms;
    tqd_htab_insert(&q->jobs, tqd_hash_u64(job->id), job);
    retained_push(q, job);
    *ret = job;
    return 0;
}

int tqd_queue_restore(tqd_queue_t *q, const tqd_job_rec_t *r, uint64_t now, tqd_job_t **ret)
{
    if (!rec_valid(r))
        return -EINVAL;
    if (tqd_queue_find(q, r->id))
        return -EEXIST;
    tqd_job_t *job;
    int rc = r->state == TQD_JOB_FINISHED ? restore_finished(q, r, &job)
                                          : job_enqueue(q, r->id, r->client_id, &r->task, &job);
    if (rc < 0)
        return rc;
    job->owner = r->owner;
    if (r->batch && tqd_queue_mark_submit(q, job, r->req_id, r->batch) < 0) {
        if (job->state == TQD_JOB_FINISHED)
            tqd_queue_forget(q, job);
        else
            tqd_queue_drop(q, job);
        return -ENOMEM;
    }
    if (r->id >= q->next_id)
        q->next_id = r->id + 1;
    job->attempt = r->attempt;
    if (r->n_hist) {
        tqd_history_t *h = history_get(job, r->task.queue, r->task.function);
        for (uint16_t i = 0; h && i < r->n_hist; i++)
            history_push(h, &r->hist[i]);
        if (h)
            h->stored = h->n;
    }
    if (r->state == TQD_JOB_RUNNING) {
        /* Queued as if its worker had died when the broker stopped. */
        char why[160];
        snprintf(why, sizeof why, "the broker stopped during attempt %u of %u",
                 (unsigned)r->attempt, (unsigned)r->task.max_attempts);
        tqd_history_t *h = history_get(job, r->task.queue, r->task.function);
        if (h) {
            tqd_attempt_rec_t a = r->running;
            a.attempt = r->attempt;
            a.ended_ms = (uint64_t)((int64_t)now + q->wall_offset);
            a.cause = (taskq_span_t){(const uint8_t *)why, strlen(why)};
            history_push(h, &a);
        }
        if (job->attempt >= job->max_attempts) {
            finish_text(q, job, TASKQ_STATUS_LOST, why, now);
        } else {
            job->lane->queue->retried++;
            q->retried++;
            changed(q, job);
        }
    }
    *ret = job;
    return 0;
}

/* Whether a connected worker still holds one of job's attempts (one it
 * was told to abandon and has not reported yet). */
static bool attempt_held(const tqd_queue_t *q, const tqd_job_t *job)
{
    for (size_t i = 0; i < q->workers->len; i++)
        for (uint32_t a = 1; a <= job->attempt; a++)
            if (tqd_worker_holds(q->workers->v[i], job->id, a))
                return true;
    return false;
}

int tqd_queue_retry(tqd_queue_t *q, tqd_job_t *job, uint64_t client_id)
{
    if (job->state != TQD_JOB_FINISHED || !tqd_status_failed(job->status) || !job->history)
        return -ENOENT;
    /* Attempt numbers start again at 1: none may still be out there, or
     * its late outcome would pass for the new attempt's. */
    if (attempt_held(q, job))
        return -EBUSY;
    int rc;
    tqd_lane_t *lane = lane_get(q, job->history->queue, job->history->function, &rc);
    if (!lane)
        return rc;
    /* Its SUBMIT was answered long ago: no resend can still name it. */
    submit_unmark(q, job);
    retained_unlink(q, job);
    job->client_id = client_id;
    job->lane = lane;
    job->state = TQD_JOB_QUEUED;
    if (flow_push(q, job, false) < 0) {
        job->lane = NULL;
        job->state = TQD_JOB_FINISHED;
        retained_push(q, job);
        return -ENOMEM;
    }
    free(job->result);
    job->result = NULL;
    job->result_len = 0;
    job->status = 0;
    job->attempt = 0;
    lane->refs++;
    lane->idle = false;
    lane->queue->queued++;
    q->queued++;
    q->dispatch_needed = true;
    changed(q, job);
    return 0;
}

void tqd_queue_fini(tqd_queue_t *q)
{
    size_t pos = 0;
    tqd_job_t *job;
    while ((job = tqd_htab_next(&q->jobs, &pos))) {
        history_free(job->history);
        free(job->watchers);
        free(job->result);
        free(job);
    }
    pos = 0;
    tqd_flow_t *f;
    while ((f = tqd_htab_next(&q->flows, &pos)))
        free(f);
    for (size_t i = 0; i < q->n_lanes; i++) {
        while (q->lanes[i]->levels)
            level_free(q->lanes[i], q->lanes[i]->levels);
        free(q->lanes[i]);
    }
    for (size_t i = 0; i < q->n_queues; i++)
        free(q->queues[i]);
    free(q->lanes);
    free(q->queues);
    tqd_htab_fini(&q->jobs);
    tqd_htab_fini(&q->lane_index);
    tqd_htab_fini(&q->queue_index);
    tqd_htab_fini(&q->flows);
    tqd_htab_fini(&q->submits);
    memset(q, 0, sizeof *q);
}
