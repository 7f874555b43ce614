/*
 * store.h - where the broker keeps tasks.  The broker reports each change
 * (submitted, dispatched, finished, forgotten) and commits once per loop
 * turn before it sends ACCEPTED or RESULT (group commit).  This version has
 * the memory store; a durable store implements the same operations.
 */
#ifndef TQD_STORE_H
#define TQD_STORE_H

#include <stdint.h>

#include "queue.h"

typedef struct tqd_store tqd_store_t;

/*
 * A store's operations.  Recording hooks may be NULL when a store has
 * nothing to record.  Recording cannot fail on the spot: a store that
 * fails to record remembers it and reports it from the next commit.
 */
typedef struct tqd_store_ops {
    const char *name; /* for logs, e.g. "memory" */
    /* Load stored jobs into q at startup: queued and running ones queued
     * again, finished ones retained.  Returns 0 or a negative errno. */
    int (*recover)(tqd_store_t *s, tqd_queue_t *q);
    /* A job was accepted (it is queued). */
    void (*submitted)(tqd_store_t *s, const tqd_job_t *job);
    /* A job's attempt job->attempt was sent to a worker. */
    void (*dispatched)(tqd_store_t *s, const tqd_job_t *job);
    /* A job has its outcome (status, result). */
    void (*finished)(tqd_store_t *s, const tqd_job_t *job);
    /* A finished job was acknowledged, expired or evicted: drop it. */
    void (*forgotten)(tqd_store_t *s, uint64_t job_id);
    /* Make everything recorded since the last commit durable.  Returns 0 or
     * a negative errno; the broker then refuses that turn's SUBMITs with
     * STORAGE and holds back outcomes until a commit succeeds. */
    int (*commit)(tqd_store_t *s);
    /* Free the store. */
    void (*close)(tqd_store_t *s);
} tqd_store_ops_t;

struct tqd_store {
    const tqd_store_ops_t *ops; /* its operations */
    uint64_t id;                /* store_id of WELCOME: the job-id space */
};

/*
 * Open the memory store: nothing survives the process, so its id is a new
 * random non-zero value.  Returns 0 and *ret (close with tqd_store_close),
 * or a negative errno.
 */
int tqd_store_mem_open(tqd_store_t **ret);

/* Close s (NULL is fine) and set *s to NULL. */
void tqd_store_close(tqd_store_t **s);

/* The recording hooks, skipping those a store leaves NULL. */
static inline void tqd_store_submitted(tqd_store_t *s, const tqd_job_t *job)
{
    if (s->ops->submitted)
        s->ops->submitted(s, job);
}

static inline void tqd_store_dispatched(tqd_store_t *s, const tqd_job_t *job)
{
    if (s->ops->dispatched)
        s->ops->dispatched(s, job);
}

static inline void tqd_store_finished(tqd_store_t *s, const tqd_job_t *job)
{
    if (s->ops->finished)
        s->ops->finished(s, job);
}

static inline void tqd_store_forgotten(tqd_store_t *s, uint64_t job_id)
{
    if (s->ops->forgotten)
        s->ops->forgotten(s, job_id);
}

#endif /* TQD_STORE_H */
