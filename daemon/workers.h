/*
 * workers.h - connected workers and their table.  A worker record holds
 * what the worker announced (names, credit, the queues and functions it
 * serves), the attempts it holds (job, attempt): its credit in use, the
 * lanes it can be given tasks from, and what the broker owes it this turn
 * (attempts assigned but not yet sent, ABANDON items).  No ZeroMQ here.
 */
#ifndef TQD_WORKERS_H
#define TQD_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"
#include "taskq_proto.h"

struct tqd_job;
struct tqd_lane;

/* One attempt a worker holds. */
typedef struct tqd_held {
    uint64_t job;     /* job id; 0 marks an empty slot */
    uint32_t attempt; /* attempt number */
} tqd_held_t;

typedef struct tqd_worker {
    tqd_peer_t peer;               /* first member: the routing index points here */
    uint32_t credit;               /* most attempts it holds at once (HELLO;
                                      0 once it RETURNED one: draining) */
    uint32_t used;                 /* attempts it holds now: credit in use */
    uint64_t done;                 /* DONE items it returned for attempts it held */
    tqd_held_t *held;              /* open-addressing set of held attempts */
    uint32_t held_mask;            /* capacity of held - 1 (0 while held is NULL) */
    uint32_t n_queues;             /* entries of queues */
    uint32_t n_functions;          /* entries of functions */
    taskq_span_t *queues;          /* queues it serves, sorted; bytes owned by the record */
    taskq_span_t *functions;       /* functions it has, sorted; same */
    struct tqd_lane **lanes;       /* existing lanes it serves; kept by the queue */
    uint32_t n_lanes;              /* entries of lanes */
    uint32_t cap_lanes;            /* allocated entries of lanes */
    uint32_t lane_cursor;          /* index of the lane served last (ties rotate) */
    uint32_t n_unsent;             /* entries of unsent */
    uint32_t cap_unsent;           /* allocated entries of unsent */
    uint32_t n_abandon;            /* entries of abandon */
    uint32_t cap_abandon;          /* allocated entries of abandon */
    struct tqd_job **unsent;       /* jobs assigned this turn, not yet sent in TASKS */
    taskq_abandon_item_t *abandon; /* ABANDON items owed this turn */
    size_t index;                  /* position in its table */
} tqd_worker_t;

/*
 * Create a worker record from the fields of its HELLO.  Names are copied
 * (and sorted); the routing id is left empty for the caller to set.
 * Returns 0 and the record in *ret (free with tqd_worker_destroy), or
 * -ENOMEM.
 */
int tqd_worker_new(taskq_span_t name, taskq_span_t host, uint32_t pid, uint32_t credit,
                   const taskq_span_t *queues, uint32_t n_queues, const taskq_span_t *functions,
                   uint32_t n_functions, tqd_worker_t **ret);

/* Free a record (not the jobs it points to) and set *w to NULL; NULL is fine. */
void tqd_worker_destroy(tqd_worker_t **w);

/* true if the worker serves queue and has function (bytewise names). */
bool tqd_worker_serves(const tqd_worker_t *w, taskq_span_t queue, taskq_span_t function);

/*
 * Make room to hold one more attempt.  Returns 0, -ENOSPC if its credit is
 * all in use, or -ENOMEM.  After 0, tqd_worker_hold() cannot fail.
 */
int tqd_worker_reserve(tqd_worker_t *w);

/*
 * Record that the worker holds (job_id, attempt) and that job must be sent
 * to it in this turn's TASKS.  Call tqd_worker_reserve() first.
 */
void tqd_worker_hold(tqd_worker_t *w, uint64_t job_id, uint32_t attempt, struct tqd_job *job);

/* Take back job (its current attempt), held and not yet sent: it leaves
 * the unsent list and frees its credit.  Nothing if it is not unsent. */
void tqd_worker_unsend(tqd_worker_t *w, const struct tqd_job *job);

/* Stop holding (job_id, attempt): frees one credit.  false if not held. */
bool tqd_worker_release(tqd_worker_t *w, uint64_t job_id, uint32_t attempt);

/* true if the worker holds (job_id, attempt). */
bool tqd_worker_holds(const tqd_worker_t *w, uint64_t job_id, uint32_t attempt);

/*
 * Iterate the held attempts: start with *pos = 0; returns true and fills
 * *ret until the end.  The set must not change during the iteration.
 */
bool tqd_worker_held_next(const tqd_worker_t *w, size_t *pos, tqd_held_t *ret);

/* Add lane to the lanes it serves.  Returns 0 or -ENOMEM. */
int tqd_worker_add_lane(tqd_worker_t *w, struct tqd_lane *lane);

/* Remove lane from the lanes it serves, if there. */
void tqd_worker_remove_lane(tqd_worker_t *w, const struct tqd_lane *lane);

/* Owe the worker an ABANDON item for (job_id, attempt).  0 or -ENOMEM. */
int tqd_worker_owe_abandon(tqd_worker_t *w, uint64_t job_id, uint32_t attempt);

/* The table of connected workers, in arrival order (removal swaps). */
typedef struct tqd_workers {
    tqd_worker_t **v;       /* the workers */
    tqd_worker_t **scratch; /* dispatch's candidate list; same capacity as v */
    size_t len;             /* entries of v */
    size_t cap;             /* allocated entries of v and scratch */
    size_t rr;              /* where the next dispatch starts (rotates) */
} tqd_workers_t;

/* Zero-initialise (or call this); tqd_workers_fini destroys every record listed. */
void tqd_workers_init(tqd_workers_t *t);
void tqd_workers_fini(tqd_workers_t *t);

/* List w; the table owns it until tqd_workers_remove().  0 or -ENOMEM. */
int tqd_workers_add(tqd_workers_t *t, tqd_worker_t *w);

/* Take w out of the table; the caller owns it again. */
void tqd_workers_remove(tqd_workers_t *t, tqd_worker_t *w);

#endif /* TQD_WORKERS_H */
