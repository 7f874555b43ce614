/*
 * store.h - where the broker keeps tasks.  The broker reports each change
 * (submitted, dispatched, finished, forgotten) and commits once per loop
 * turn before it sends ACCEPTED, RESULT or TASKS (group commit).  Two
 * stores implement it: memory (store_mem.c) and SQLite (store_sqlite.c).
 */
#ifndef TQD_STORE_H
#define TQD_STORE_H

#include <stdint.h>

#include "queue.h"

typedef struct tqd_store tqd_store_t;

/*
 * A store's operations.  Recording hooks may be NULL when a store has
 * nothing to record.  Recording cannot fail on the spot: a store that
 * fails to record remembers it and reports it from the next commit; a
 * failed commit leaves the store consistent with the queue again at the
 * next commit that succeeds (the store re-reads the jobs it could not
 * write from the queue it recovered into).
 */
typedef struct tqd_store_ops {
    const char *name; /* for logs and STATS, e.g. "memory", "sqlite" */
    /* Load the stored jobs into q (tqd_queue_restore), set q->next_id past
     * every id the store ever gave out, and keep q to reconcile with after a
     * failed commit.  Called once, before any recording hook.  now is the
     * broker's clock.  Returns 0 or a negative errno. */
    int (*recover)(tqd_store_t *s, tqd_queue_t *q, uint64_t now);
    /* A job was accepted (it is queued); its SUBMIT's req_id and batch are
     * in the job when it is the first of its batch. */
    void (*submitted)(tqd_store_t *s, const tqd_job_t *job);
    /* A job changed state, attempt or history (dispatched, queued again,
     * finished, retried): write its mutable part, and its history entries
     * from job->history->stored on (then set stored to n). */
    void (*changed)(tqd_store_t *s, tqd_job_t *job);
    /* A finished job was acknowledged, expired or evicted: drop it (and
     * its history).  job is freed right after the call. */
    void (*forgotten)(tqd_store_t *s, const tqd_job_t *job);
    /* Make everything recorded since the last commit durable, with one
     * transaction.  Returns 0; TQD_STORE_UNPROVEN when that succeeded but
     * nothing was written since a commit failed, so the store may still be
     * unable to write (a full disk); or a negative errno (-ENOSPC for a
     * full disk, -EIO for other database errors): the broker then refuses
     * that turn's SUBMITs with STORAGE and holds back outcomes until a
     * commit succeeds. */
    int (*commit)(tqd_store_t *s);
    /* Bytes the store takes on disk now (0 for memory). */
    uint64_t (*size)(tqd_store_t *s);
    /* Free the store. */
    void (*close)(tqd_store_t *s);
} tqd_store_ops_t;

#define TQD_STORE_UNPROVEN 1 /* commit: durable, but no write has shown the store works again */

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

/* SQLite synchronous levels (--sync). */
typedef enum tqd_sync { TQD_SYNC_NORMAL = 1, TQD_SYNC_FULL = 2 } tqd_sync_t;

/*
 * Open (creating it and its schema if needed) the SQLite database at path
 * in WAL mode with the given synchronous level.  Its store_id is kept in
 * the database: a new random non-zero value when it is created.
 * wall_offset is added to the broker's monotonic clock (ms) to get Unix
 * time in ms; times are stored as Unix time.  The directory must exist.
 * Returns 0 and *ret, or a negative errno with a message of at most cap
 * bytes in err (the path and SQLite's reason).
 */
int tqd_store_sqlite_open(const char *path, tqd_sync_t sync, int64_t wall_offset,
                          tqd_store_t **ret, char *err, size_t cap);

/* Close s (NULL is fine) and set *s to NULL. */
void tqd_store_close(tqd_store_t **s);

/* The recording hooks, skipping those a store leaves NULL. */
static inline void tqd_store_submitted(tqd_store_t *s, const tqd_job_t *job)
{
    if (s->ops->submitted)
        s->ops->submitted(s, job);
}

static inline void tqd_store_changed(tqd_store_t *s, tqd_job_t *job)
{
    if (s->ops->changed)
        s->ops->changed(s, job);
}

static inline void tqd_store_forgotten(tqd_store_t *s, const tqd_job_t *job)
{
    if (s->ops->forgotten)
        s->ops->forgotten(s, job);
}

static inline uint64_t tqd_store_size(tqd_store_t *s)
{
    return s->ops->size ? s->ops->size(s) : 0;
}

#endif /* TQD_STORE_H */
