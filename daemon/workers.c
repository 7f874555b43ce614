/*
 * workers.c - worker records: announced names, held attempts (an
 * open-addressing set sized to twice the attempts held), served lanes and
 * the per-turn output owed; and the table of connected workers.
 */
#include "workers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "queue.h"

static int span_cmp(const taskq_span_t *a, const taskq_span_t *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->ptr, b->ptr, n) : 0;
    if (c)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

static int span_qsort_cmp(const void *a, const void *b)
{
    return span_cmp(a, b);
}

static bool span_in(const taskq_span_t *sorted, uint32_t n, taskq_span_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = span_cmp(&sorted[mid], &key);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Copy n names into spans at out, their bytes at *bytes (advanced). */
static void copy_names(taskq_span_t *out, const taskq_span_t *in, uint32_t n, uint8_t **bytes)
{
    for (uint32_t i = 0; i < n; i++) {
        if (in[i].len)
            memcpy(*bytes, in[i].ptr, in[i].len);
        out[i] = (taskq_span_t){*bytes, in[i].len};
        *bytes += in[i].len;
    }
    qsort(out, n, sizeof *out, span_qsort_cmp);
}

int tqd_worker_new(taskq_span_t name, taskq_span_t host, uint32_t pid, uint32_t credit,
                   const taskq_span_t *queues, uint32_t n_queues, const taskq_span_t *functions,
                   uint32_t n_functions, tqd_worker_t **ret)
{
    /* One allocation: the record, the name spans, then the name bytes. */
    size_t bytes = 0;
    for (uint32_t i = 0; i < n_queues; i++)
        bytes += queues[i].len;
    for (uint32_t i = 0; i < n_functions; i++)
        bytes += functions[i].len;
    size_t spans = ((size_t)n_queues + n_functions) * sizeof(taskq_span_t);
    tqd_worker_t *w = calloc(1, sizeof *w + spans + bytes);
    if (!w)
        return -ENOMEM;
    tqd_peer_set(&w->peer, TASKQ_ROLE_WORKER, name, host, pid);
    w->credit = credit;
    w->queues = (taskq_span_t *)(w + 1);
    w->functions = w->queues + n_queues;
    w->n_queues = n_queues;
    w->n_functions = n_functions;
    uint8_t *p = (uint8_t *)(w->functions + n_functions);
    copy_names(w->queues, queues, n_queues, &p);
    copy_names(w->functions, functions, n_functions, &p);
    *ret = w;
    return 0;
}

void tqd_worker_destroy(tqd_worker_t **w)
{
    if (!w || !*w)
        return;
    free((*w)->held);
    free((*w)->lanes);
    free((*w)->unsent);
    free((*w)->abandon);
    free(*w);
    *w = NULL;
}

bool tqd_worker_serves(const tqd_worker_t *w, taskq_span_t queue, taskq_span_t function)
{
    return span_in(w->queues, w->n_queues, queue) &&
           span_in(w->functions, w->n_functions, function);
}

static size_t held_home(uint32_t mask, uint64_t job, uint32_t attempt)
{
    return (size_t)(tqd_hash_u64(job ^ ((uint64_t)attempt << 48)) & mask);
}

static void held_place(tqd_held_t *set, uint32_t mask, tqd_held_t h)
{
    size_t i = held_home(mask, h.job, h.attempt);
    while (set[i].job)
        i = (i + 1) & mask;
    set[i] = h;
}

/* Grow a vector of n used entries to hold one more.  0 or -ENOMEM. */
static int grow(void **v, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *nv = realloc(*v, (size_t)ncap * size);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    *cap = ncap;
    return 0;
}

int tqd_worker_reserve(tqd_worker_t *w)
{
    if (w->used >= w->credit)
        return -ENOSPC;
    uint32_t cap = w->held ? w->held_mask + 1 : 0;
    /* The set stays at most half full, so probes are short. */
    if ((w->used + 1) * 2 > cap) {
        uint32_t ncap = cap ? cap * 2 : 16;
        tqd_held_t *set = calloc(ncap, sizeof *set);
        if (!set)
            return -ENOMEM;
        for (uint32_t i = 0; i < cap; i++)
            if (w->held[i].job)
                held_place(set, ncap - 1, w->held[i]);
        free(w->held);
        w->held = set;
        w->held_mask = ncap - 1;
    }
    return grow((void **)&w->unsent, &w->cap_unsent, w->n_unsent, sizeof *w->unsent);
}

void tqd_worker_hold(tqd_worker_t *w, uint64_t job_id, uint32_t attempt, struct tqd_job *job)
{
    held_place(w->held, w->held_mask, (tqd_held_t){job_id, attempt});
    w->used++;
    w->unsent[w->n_unsent++] = job;
}

void tqd_worker_unsend(tqd_worker_t *w, const struct tqd_job *job)
{
    for (uint32_t i = 0; i < w->n_unsent; i++) {
        if (w->unsent[i] == job) {
            memmove(&w->unsent[i], &w->unsent[i + 1],
                    (w->n_unsent - i - 1) * sizeof *w->unsent);
            w->n_unsent--;
            tqd_worker_release(w, job->id, job->attempt);
            return;
        }
    }
}

/* Slot of (job_id, attempt) in the held set, or -1. */
static long held_find(const tqd_worker_t *w, uint64_t job_id, uint32_t attempt)
{
    if (!w->held || job_id == 0)
        return -1;
    for (size_t i = held_home(w->held_mask, job_id, attempt); w->held[i].job;
         i = (i + 1) & w->held_mask)
        if (w->held[i].job == job_id && w->held[i].attempt == attempt)
            return (long)i;
    return -1;
}

bool tqd_worker_holds(const tqd_worker_t *w, uint64_t job_id, uint32_t attempt)
{
    return held_find(w, job_id, attempt) >= 0;
}

bool tqd_worker_release(tqd_worker_t *w, uint64_t job_id, uint32_t attempt)
{
    long found = held_find(w, job_id, attempt);
    if (found < 0)
        return false;
    /* Backward-shift deletion, as in hashtab.c. */
    size_t hole = (size_t)found, mask = w->held_mask;
    for (size_t j = (hole + 1) & mask; w->held[j].job; j = (j + 1) & mask) {
        size_t home = held_home(w->held_mask, w->held[j].job, w->held[j].attempt);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            w->held[hole] = w->held[j];
            hole = j;
        }
    }
    w->held[hole] = (tqd_held_t){0, 0};
    w->used--;
    return true;
}

bool tqd_worker_held_next(const tqd_worker_t *w, size_t *pos, tqd_held_t *ret)
{
    if (!w->held)
        return false;
    while (*pos <= w->held_mask) {
        tqd_held_t h = w->held[(*pos)++];
        if (h.job) {
            *ret = h;
            return true;
        }
    }
    return false;
}

int tqd_worker_add_lane(tqd_worker_t *w, struct tqd_lane *lane)
{
    int rc = grow((void **)&w->lanes, &w->cap_lanes, w->n_lanes, sizeof *w->lanes);
    if (rc < 0)
        return rc;
    w->lanes[w->n_lanes++] = lane;
    return 0;
}

void tqd_worker_remove_lane(tqd_worker_t *w, const struct tqd_lane *lane)
{
    for (uint32_t i = 0; i < w->n_lanes; i++) {
        if (w->lanes[i] == lane) {
            w->lanes[i] = w->lanes[--w->n_lanes];
            if (w->lane_cursor >= w->n_lanes)
                w->lane_cursor = 0;
            return;
        }
    }
}

int tqd_worker_owe_abandon(tqd_worker_t *w, uint64_t job_id, uint32_t attempt)
{
    int rc = grow((void **)&w->abandon, &w->cap_abandon, w->n_abandon, sizeof *w->abandon);
    if (rc < 0)
        return rc;
    w->abandon[w->n_abandon++] = (taskq_abandon_item_t){job_id, attempt};
    return 0;
}

void tqd_workers_init(tqd_workers_t *t)
{
    memset(t, 0, sizeof *t);
}

void tqd_workers_fini(tqd_workers_t *t)
{
    for (size_t i = 0; i < t->len; i++)
        tqd_worker_destroy(&t->v[i]);
    free(t->v);
    free(t->scratch);
    tqd_workers_init(t);
}

int tqd_workers_add(tqd_workers_t *t, tqd_worker_t *w)
{
    if (t->len == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        tqd_worker_t **v = realloc(t->v, ncap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        tqd_worker_t **s = realloc(t->scratch, ncap * sizeof *s);
        if (!s)
            return -ENOMEM;
        t->scratch = s;
        t->cap = ncap;
    }
    w->index = t->len;
    t->v[t->len++] = w;
    return 0;
}

void tqd_workers_remove(tqd_workers_t *t, tqd_worker_t *w)
{
    size_t i = w->index;
    t->v[i] = t->v[--t->len];
    t->v[i]->index = i;
}
