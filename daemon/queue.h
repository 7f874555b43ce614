/*
 * queue.h - jobs and their scheduling: the job table, lanes (queue,
 * function), priorities, round-robin between clients, dispatch to worker
 * credit, attempt fencing, retries, cancellation and retained outcomes.
 * No ZeroMQ and no clock of its own: the caller passes the time in.
 */
#ifndef TQD_QUEUE_H
#define TQD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashtab.h"
#include "taskq_proto.h"
#include "workers.h"

/*
 * Shape: a lane holds its non-empty priority levels, highest first; a level
 * holds a ring of flows, one per submitting client, and a cursor naming the
 * flow whose turn is next; a flow is a doubly linked FIFO of that client's
 * jobs.  Every step (add, take, cancel, requeue) is O(1) apart from finding
 * the place of a new priority level.
 */

#define TQD_MAX_LANES    65536 /* distinct (queue, function) pairs alive at once */
#define TQD_MAX_WATCHERS 64    /* clients WATCHing one job, besides its submitter */
#define TQD_IDLE_QUEUES  256   /* queue records kept for their counters while idle */

typedef enum tqd_job_state {
    TQD_JOB_QUEUED = 1,   /* waiting in its lane */
    TQD_JOB_RUNNING = 2,  /* its current attempt is held by a worker */
    TQD_JOB_FINISHED = 3, /* has an outcome, retained until ACK or expiry */
} tqd_job_state_t;

/* A named queue: its counters for STATS. */
typedef struct tqd_qinfo {
    uint64_t hash;     /* hash of the name */
    size_t index;      /* position in the queue vector */
    uint32_t lanes;    /* lanes of this queue that exist */
    uint32_t name_len; /* bytes of name */
    uint64_t queued;   /* jobs waiting now */
    uint64_t running;  /* jobs running now */
    uint64_t done;     /* jobs finished DONE since start */
    uint64_t failed;   /* jobs finished FAILED since start */
    uint64_t retried;  /* attempts superseded and queued again since start */
    uint8_t name[];    /* the queue name (not NUL-terminated) */
} tqd_qinfo_t;

struct tqd_level;

/* A (queue, function) pair: where its jobs wait. */
typedef struct tqd_lane {
    uint64_t hash;            /* hash of (queue, function) */
    uint64_t serial;          /* unique per lane ever made (hashing flows) */
    tqd_qinfo_t *queue;       /* its queue */
    struct tqd_level *levels; /* non-empty priority levels, highest first */
    size_t index;             /* position in the lane vector */
    uint32_t refs;            /* its jobs that are queued or running */
    bool idle;                /* refs was 0 at the last sweep */
    uint32_t function_len;    /* bytes of function */
    uint8_t function[];       /* the function name (not NUL-terminated) */
} tqd_lane_t;

struct tqd_flow;

/* One attempt that ended without a result (the worker died or went
 * silent, the run limit expired, the handler failed or asked for a retry,
 * the broker stopped), kept for `taskq failed`. */
typedef struct tqd_attempt_rec {
    uint64_t started_ms; /* Unix time (ms) it was sent to its worker; 0: unknown */
    uint64_t ended_ms;   /* Unix time (ms) it ended */
    uint32_t attempt;    /* its number */
    uint32_t pid;        /* the worker's process id; 0: unknown */
    taskq_span_t worker; /* the worker's name (may be empty: unknown) */
    taskq_span_t host;   /* the worker's host (same) */
    taskq_span_t cause;  /* why it ended */
} tqd_attempt_rec_t;

/* The failures of a job that had any: its names (which a finished job
 * otherwise no longer has) and its failed attempts, oldest first.  One
 * allocation for the names; one per entry (spans point into it). */
typedef struct tqd_history {
    taskq_span_t queue;      /* the job's queue name */
    taskq_span_t function;   /* the job's function name */
    tqd_attempt_rec_t **v;   /* entries */
    uint16_t n;              /* entries of v */
    uint16_t cap;            /* allocated entries of v */
    uint16_t stored;         /* entries the store has written (the store sets it) */
} tqd_history_t;

#define TQD_MAX_HISTORY 1000 /* entries kept per job (= most attempts) */

/* One task, from SUBMIT until its outcome is acknowledged or expires. */
typedef struct tqd_job {
    uint64_t id;           /* job id, > 0 */
    uint64_t client_id;    /* the submitting client */
    uint64_t owner;        /* who may see it (auth.h); 0: admins only */
    struct tqd_job *prev;  /* queued: flow FIFO; finished: retained list */
    struct tqd_job *next;  /* same */
    struct tqd_flow *flow; /* queued: its flow; else NULL */
    tqd_worker_t *worker;  /* running: holder of the current attempt; else NULL */
    tqd_lane_t *lane;      /* queued or running: its lane; finished: NULL */
    uint64_t *watchers;    /* client ids that WATCH it (not the submitter) */
    uint8_t *result;       /* finished: outcome payload; NULL: see tqd_job_payload */
    tqd_history_t *history; /* its failed attempts, or NULL if none */
    uint64_t finished_ms;  /* finished: when */
    uint64_t started_ms;   /* running: when the current attempt was sent */
    uint64_t req_id;       /* batch > 0: req_id of its SUBMIT */
    uint32_t batch;        /* first job of a SUBMIT: tasks in it; else 0 */
    uint32_t result_len;   /* bytes of result */
    uint32_t arg_len;      /* bytes of arg */
    uint32_t timeout_ms;   /* run limit of each attempt, 0: none */
    int16_t priority;      /* -1000..1000, larger first */
    uint16_t max_attempts; /* 1..1000 */
    uint16_t attempt;      /* the current attempt's number (returned ones reused) */
    uint16_t deliveries;   /* times dispatched (wraps): names a run-limit timer */
    uint16_t n_watchers;   /* entries of watchers */
    uint8_t state;         /* tqd_job_state_t */
    uint8_t status;        /* finished: taskq_status_t */
    uint8_t arg[];         /* the argument (one msgpack object), same allocation */
} tqd_job_t;

/* What the queue tells its owner. */
typedef struct tqd_queue_events {
    /* job has just finished (status, result set).  Its watchers are freed
     * when this returns.  The callback must not change the queue. */
    void (*finished)(void *ctx, tqd_job_t *job);
    /* Dispatch gave job (now RUNNING, in w's held and unsent sets) to w.
     * The callback must not change the queue. */
    void (*assigned)(void *ctx, tqd_worker_t *w, tqd_job_t *job);
    /* job changed state, attempt or history (every transition after
     * tqd_queue_add: dispatched, queued again, finished, retried); called
     * before finished or assigned.  The callback must not change the
     * queue.  May be NULL. */
    void (*changed)(void *ctx, tqd_job_t *job);
    void *ctx; /* passed to the callbacks */
} tqd_queue_events_t;

typedef struct tqd_queue {
    tqd_workers_t *workers; /* workers that lanes are matched against */
    tqd_queue_events_t ev;  /* callbacks */
    uint64_t seed;          /* hash seed for names */
    tqd_htab_t jobs;        /* id -> job */
    tqd_htab_t lane_index;  /* (queue, function) -> lane */
    tqd_htab_t queue_index; /* queue name -> qinfo */
    tqd_htab_t flows;       /* (lane, priority, client) -> flow */
    tqd_htab_t submits;     /* (client, req_id) -> first job of that SUBMIT */
    int64_t wall_offset;    /* added to the clock to get Unix time (ms) */
    tqd_lane_t **lanes;     /* every lane */
    tqd_qinfo_t **queues;   /* every queue record */
    size_t n_lanes;         /* entries of lanes */
    size_t cap_lanes;       /* allocated entries of lanes */
    size_t n_queues;        /* entries of queues */
    size_t cap_queues;      /* allocated entries of queues */
    tqd_job_t *oldest;      /* retained finished jobs, oldest first ... */
    tqd_job_t *newest;      /* ... to newest */
    uint64_t next_id;       /* id of the next job added */
    uint64_t lane_serial;   /* serial of the next lane made */
    uint64_t queued;        /* jobs waiting now */
    uint64_t running;       /* jobs running now */
    uint64_t retained;      /* finished jobs held now */
    uint64_t done;          /* jobs finished DONE since start */
    uint64_t failed;        /* jobs finished FAILED since start */
    uint64_t cancelled;     /* jobs finished CANCELLED since start */
    uint64_t lost;          /* jobs finished LOST since start */
    uint64_t timedout;      /* jobs finished TIMEDOUT since start */
    uint64_t retried;       /* attempts superseded and queued again */
    bool dispatch_needed;   /* work or credit appeared since the last dispatch */
} tqd_queue_t;

/*
 * Set up an empty queue whose lanes are matched against the workers in
 * *workers (which must outlive it).  seed varies the name hashes.  Job ids
 * start at 1.  Allocates nothing until used.
 */
void tqd_queue_init(tqd_queue_t *q, tqd_workers_t *workers, uint64_t seed,
                    const tqd_queue_events_t *ev);

/* Free every job, lane and queue record.  No callbacks run. */
void tqd_queue_fini(tqd_queue_t *q);

/*
 * Add one task of a SUBMIT from client client_id: it gets the next job id
 * and waits at the back of the client's FIFO in its lane and priority.  The
 * argument is copied into the job.  Returns 0 and the job in *ret (owned by
 * the queue), -ENOSPC if a new lane is needed and TQD_MAX_LANES exist, or
 * -ENOMEM.  On error nothing changed (the job id is not used).
 */
int tqd_queue_add(tqd_queue_t *q, uint64_t client_id, const taskq_submit_item_t *item,
                  tqd_job_t **ret);

/*
 * Undo tqd_queue_add of a job that is still queued, or was dispatched in
 * this loop turn and not yet sent (its worker's credit is given back): it
 * is freed without an outcome, and if it had the last id handed out, that
 * id is reused.
 */
void tqd_queue_drop(tqd_queue_t *q, tqd_job_t *job);

/*
 * Mark job (just added) as the first of a SUBMIT (client, req_id) of
 * count tasks, so that the same SUBMIT sent again is found by
 * tqd_queue_find_submit while the job exists.  Returns 0 or -ENOMEM.
 */
int tqd_queue_mark_submit(tqd_queue_t *q, tqd_job_t *job, uint64_t req_id, uint32_t count);

/* The first job of SUBMIT req_id of client client_id, or NULL. */
tqd_job_t *tqd_queue_find_submit(const tqd_queue_t *q, uint64_t client_id, uint64_t req_id);

/* A job as a store keeps it, to be restored at startup. */
typedef struct tqd_job_rec {
    uint64_t id;                    /* job id */
    uint64_t client_id;             /* its submitter */
    uint64_t owner;                 /* who may see it (auth.h); 0: admins only */
    uint64_t req_id;                /* batch > 0: its SUBMIT's req_id */
    uint32_t batch;                 /* tasks of its SUBMIT if it was the first, else 0 */
    taskq_submit_item_t task;       /* function, queue, priority, timeout, attempts, arg */
    uint8_t state;                  /* tqd_job_state_t when stored */
    uint16_t attempt;               /* the current attempt's number when stored */
    tqd_attempt_rec_t running;      /* RUNNING: the attempt the stop interrupted
                                       (attempt, worker, host, pid, started_ms) */
    uint8_t status;                 /* FINISHED: taskq_status_t */
    taskq_span_t result;            /* FINISHED: outcome payload */
    uint64_t finished_ms;           /* FINISHED: when, on the broker's clock */
    const tqd_attempt_rec_t *hist;  /* its failed attempts, oldest first */
    uint16_t n_hist;                /* entries of hist */
} tqd_job_rec_t;

/*
 * Put a stored job back (before any client or worker is connected): a
 * queued job waits in its lane; a running one lost its attempt when the
 * broker stopped, so it is queued again with that attempt counted and an
 * entry in its history, or finishes LOST if it was its last; a finished
 * one is retained.  Everything in r is copied.  The changed callback runs
 * for a job whose state it changed (and finished, for one that is LOST:
 * no client is connected yet, so it only records it).  Returns 0 and
 * the job in *ret, -EEXIST for an id already there, -EINVAL for a record
 * out of range, -ENOSPC (too many lanes) or -ENOMEM.
 */
int tqd_queue_restore(tqd_queue_t *q, const tqd_job_rec_t *r, uint64_t now, tqd_job_t **ret);

/*
 * Queue a retained job that failed (FAILED, LOST or TIMEDOUT) again, under
 * the same id, at the back of its lane, with all its attempts available
 * again and its history kept.  It now belongs to client_id (who asked for
 * the retry), so its outcome goes there.  Returns 0, -ENOENT if job is not
 * a failed retained job, -EBUSY if a worker still holds one of its
 * attempts (abandoned, not yet reported: attempt numbers start again at 1,
 * so none may be out), -ENOSPC (too many lanes) or -ENOMEM (the job is
 * left as it was).
 */
int tqd_queue_retry(tqd_queue_t *q, tqd_job_t *job, uint64_t client_id);

/* true for the statuses `taskq failed` lists: FAILED, LOST, TIMEDOUT. */
bool tqd_status_failed(uint8_t status);

/* The job with this id (queued, running or retained), or NULL. */
tqd_job_t *tqd_queue_find(const tqd_queue_t *q, uint64_t id);

/*
 * Give a newly connected worker (already in the worker table) every lane
 * it serves.  Returns 0 or -ENOMEM.
 */
int tqd_queue_attach(tqd_queue_t *q, tqd_worker_t *w);

/*
 * Fill free worker credit, if anything changed since the last call: in
 * rounds, each worker with free credit gets one job per round from the
 * highest-priority head among its lanes (ties rotate between lanes), until
 * no worker can take more.  The first worker of a round rotates between
 * calls.  Each job goes RUNNING with the next attempt number (started at
 * now) and is added
 * to its worker's held and unsent sets; the assigned callback hears of it.
 */
void tqd_queue_dispatch(tqd_queue_t *q, uint64_t now);

/*
 * One DONE item from worker w.  If w does not hold (job, attempt), returns
 * -ENOENT and changes nothing (the worker is lying: count it as malformed).
 * Otherwise the credit is freed and, if that attempt is the job's current
 * one, the job finishes DONE (status OK) or FAILED (status ERROR) with the
 * item's payload, or (status RETURNED: the worker never started it) goes
 * back to the front of its client's FIFO without using up an attempt, and
 * 0 is returned; else the outcome is stale: returns 1.  A RETURNED item
 * also sets w's credit to 0: a worker that hands work back is draining.  A RETRY item
 * supersedes the attempt: the job is queued again, or finishes FAILED
 * with the item's text if that was its last attempt.
 */
int tqd_queue_done(tqd_queue_t *q, tqd_worker_t *w, const taskq_done_item_t *d, uint64_t now);

/*
 * Cancel a queued or running job: it leaves its lane (or its worker's
 * attempt stops counting) and finishes CANCELLED.  A running job's worker
 * still holds the attempt: the caller sends it ABANDON first.
 */
void tqd_queue_cancel(tqd_queue_t *q, tqd_job_t *job, uint64_t now);

/*
 * The current attempt of a running job no longer counts (its worker died,
 * or its run limit expired).  If the job has attempts left it goes back to
 * the front of its client's FIFO (counted retried); otherwise it finishes
 * with status (LOST or TIMEDOUT) and the text why.
 */
void tqd_queue_supersede(tqd_queue_t *q, tqd_job_t *job, uint8_t status, const char *why,
                         uint64_t now);

/*
 * Worker w is gone.  If it said BYE, it has reported every attempt it
 * started (PROTOCOL.md section 5), so the attempts it still holds go back
 * as if RETURNED.  Otherwise (it died) every job whose current attempt it
 * holds is superseded (LOST), naming the worker in the text.  w is left as
 * it was, for the caller to remove from the table and destroy.
 */
void tqd_queue_worker_gone(tqd_queue_t *q, tqd_worker_t *w, bool said_bye, uint64_t now);

/*
 * Client client_id wants the outcome of an unfinished job too.  Returns 0
 * (also when it is the submitter or already watches), -ENOSPC if
 * TQD_MAX_WATCHERS watch it already, or -ENOMEM.
 */
int tqd_queue_watch(tqd_queue_t *q, tqd_job_t *job, uint64_t client_id);

/* Free a finished job (acknowledged, expired or evicted). */
void tqd_queue_forget(tqd_queue_t *q, tqd_job_t *job);

/*
 * Free lanes that had no jobs at this sweep and the previous one, and idle
 * queue records beyond TQD_IDLE_QUEUES.  Call it now and then (the broker
 * does at every heartbeat).
 */
void tqd_queue_sweep(tqd_queue_t *q);

/*
 * The outcome payload of a finished job: its stored bytes, or, if the
 * broker ran out of memory storing them, a str saying so.
 */
taskq_span_t tqd_job_payload(const tqd_job_t *job);

#endif /* TQD_QUEUE_H */
