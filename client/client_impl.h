/*
 * client_impl.h - the inside of a taskq client: the client and future
 * structures, SUBMIT batches, the job table (job id -> future), requests
 * with a reply, and the functions client.c, future.c, jobs.c, map.c and
 * admin.c share.
 */
#ifndef TASKQ_CLIENT_IMPL_H
#define TASKQ_CLIENT_IMPL_H

#include <stdbool.h>

#include "taskq_impl.h"

/* The text of futures failed by an ERROR VERSION. */
#define TASKQ__VERSION_TEXT "the broker speaks another protocol version"

/* Reconnect backoff of clients: first delay and cap, in milliseconds. */
#define TASKQ__BACKOFF_MIN_MS 100
#define TASKQ__BACKOFF_MAX_MS 3200

/*
 * The job table: an open-addressing hash (linear probing, power-of-two
 * capacity, load at most one half) from job id to the first pending future
 * of that job.  Id 0 marks an empty slot (job ids are positive).
 */
typedef struct taskq__job_slot {
    uint64_t id;       /* job id, 0 if the slot is empty */
    taskq_future_t *f; /* first pending future of the job */
} taskq__job_slot_t;

typedef struct taskq__jobs {
    taskq__job_slot_t *slots; /* cap slots */
    size_t cap;               /* 0 or a power of two */
    size_t count;             /* used slots */
} taskq__jobs_t;

/* Make room for n entries in all, so that inserting up to n never fails.
 * Returns 0 or TASKQ_ENOMEM. */
int taskq__jobs_reserve(taskq__jobs_t *t, size_t n);
/* The value slot of id, or NULL. */
taskq_future_t **taskq__jobs_find(const taskq__jobs_t *t, uint64_t id);
/* Insert id (not present; room reserved). */
void taskq__jobs_insert(taskq__jobs_t *t, uint64_t id, taskq_future_t *f);
/* Remove id if present. */
void taskq__jobs_remove(taskq__jobs_t *t, uint64_t id);
void taskq__jobs_fini(taskq__jobs_t *t);

/*
 * A SUBMIT batch.  While it is the client's open batch its tasks are
 * encoded in client->items; once flushed, frame holds the whole encoded
 * SUBMIT until ACCEPTED (or a refusal) arrives, so that it can be sent
 * again on a new connection.
 */
typedef struct taskq__batch {
    struct taskq__batch *next; /* next batch waiting for ACCEPTED */
    uint64_t req_id;           /* assigned when flushed */
    taskq_buf_t frame;         /* the encoded SUBMIT once flushed */
    uint32_t count;            /* tasks in the batch */
    taskq_future_t *futs[];    /* future of task i, NULL once destroyed, or
                                  TASKQ__CANCELLED if destroyed after a cancel */
} taskq__batch_t;

/* Slot value of a future destroyed after taskq_cancel(): its job is
 * cancelled as soon as ACCEPTED gives its id. */
extern const char taskq__cancel_mark;
#define TASKQ__CANCELLED ((taskq_future_t *)(uintptr_t)&taskq__cancel_mark)

struct taskq_future {
    taskq_client_t *client;        /* NULL once the client is destroyed */
    taskq_future_t *prev, *next;   /* the client's list of its futures */
    taskq_future_t *twin;          /* next pending future of the same job */
    taskq__batch_t *batch;         /* batch holding it until ACCEPTED, or NULL */
    uint32_t slot;                 /* its index in batch */
    uint32_t attempts;             /* from RESULT */
    uint64_t job_id;               /* 0 until ACCEPTED */
    taskq_state_t state;           /* PENDING until resolved */
    int code;                      /* what taskq_future_wait returns once resolved */
    bool cancel;                   /* taskq_cancel() was called */
    bool mapped;                   /* counted in client->map_resolved */
    size_t len;                    /* bytes of data (a text's NUL not counted) */
    uint8_t *data;                 /* result, or NUL-terminated text; small or malloc */
    uint8_t small[24];             /* inline storage for short results and texts */
};

/*
 * A request that waits for one reply: a ping (encode NULL: a HEARTBEAT,
 * answered by any HEARTBEAT), or a message with a req_id (STATS, FAILED,
 * RETRY) answered by a message of type reply with that req_id, or by an
 * ERROR with ref req_id.
 */
typedef struct taskq__req {
    /* Append the request with req_id to b; non-zero on failure (ENOMEM). */
    int (*encode)(taskq_buf_t *b, uint64_t req_id, const void *arg);
    const void *arg;        /* for encode */
    uint8_t reply;          /* TASKQ_MSG_STATS_REPLY, _FAILED_REPLY or _ACCEPTED */
    taskq_future_t *future; /* ACCEPTED of a RETRY: a pending future of its job,
                               put in the job table when ACCEPTED comes, so
                               that a RESULT right behind it finds it */
} taskq__req_t;

/* Connection states: no socket (waiting to reconnect), HELLO sent, ready. */
typedef enum taskq__conn {
    TASKQ__CONN_CLOSED,
    TASKQ__CONN_HELLO,
    TASKQ__CONN_READY,
} taskq__conn_t;

struct taskq_client {
    void *ctx;                     /* ZeroMQ context, one per client */
    void *sock;                    /* DEALER, NULL while waiting to reconnect */
    void *mon;                     /* its handshake events (CURVE only), or NULL */
    unsigned mon_seq;              /* sockets opened so far: names the monitor */
    taskq__curve_t curve;          /* CURVE keys, if on */
    char *endpoint;                /* broker endpoint */
    char *name;                    /* HELLO name */
    char host[TASKQ__HOST_MAX];    /* HELLO host */
    uint64_t client_id;            /* random, non-zero, the same on every HELLO */
    int32_t reconnect_limit_ms;    /* < 0: reconnect forever */
    uint32_t max_batch;            /* tasks per SUBMIT */
    bool leave_outcomes;           /* never send ACK (opts.leave_outcomes) */
    taskq_limits_t limits;         /* for decoding what the broker sends */

    /* Connection. */
    taskq__conn_t conn;
    int64_t alive_at;              /* ms: last sign of life (see taskq__pump) */
    int64_t left_at;               /* ms: when the last pump returned */
    int64_t hb_sent_at;            /* ms: last HEARTBEAT sent */
    int64_t reconnect_at;          /* ms: when to open a new socket (CLOSED) */
    int32_t backoff_ms;            /* next reconnect delay */
    uint32_t heartbeat_ms;         /* from WELCOME, or the default */
    uint32_t liveness;             /* from WELCOME, or the default */
    uint32_t max_frame;            /* the broker's frame limit */
    bool have_store;               /* store_id is known */
    uint64_t store_id;             /* store under which job ids were given */
    char *broker_version;          /* from WELCOME, NUL-terminated */
    bool down;                     /* counting time without a broker */
    int64_t down_since;            /* ms: start of that time */
    uint32_t closed_gen;           /* bumped when reconnect_limit_ms ran out */
    int fatal;                     /* TASKQ_EPROTO after ERROR VERSION, else 0 */
    bool denied;                   /* the broker refused this client (its key, or
                                      its HELLO): no reconnect until a call
                                      needs the broker again */
    uint32_t denied_gen;           /* bumped at every refusal */
    bool hs_dropped;               /* the last CURVE handshake ended with no
                                      reason given (a hint for ECLOSED) */

    /* Submits. */
    uint64_t next_req;             /* last req_id used (SUBMIT and STATS) */
    taskq__batch_t *open;          /* batch being filled, or NULL */
    taskq_buf_t items;             /* encoded tasks of the open batch */
    taskq__batch_t *sent_head;     /* flushed batches waiting for ACCEPTED, */
    taskq__batch_t *sent_tail;     /*   oldest first */

    /* Futures. */
    taskq__jobs_t jobs;            /* job id -> pending future */
    taskq_future_t *futures;       /* every future of the client */
    size_t n_pending;              /* futures still PENDING */
    size_t n_waiting;              /* ping/stats calls in progress */
    size_t map_resolved;           /* mapped futures resolved so far */

    /* The request in progress (one at a time). */
    bool pong;                     /* a HEARTBEAT arrived (ping) */
    const taskq__req_t *req;       /* NULL when none is in progress */
    uint64_t req_id;               /* its req_id as last sent, or 0 */
    uint32_t req_sends;            /* how many times the last request was sent */
    bool req_done;                 /* its answer came */
    int req_rc;                    /* the answer: 0 or a TASKQ_E* code */
    uint8_t *reply;                /* STATS: the map; FAILED: the whole reply
                                      frame (malloc) */
    size_t reply_len;

    /* Scratch. */
    taskq_buf_t out;               /* frame being encoded */
    uint64_t *ids;                 /* job ids for ACK, WATCH, CANCEL */
    size_t ids_cap;
};

/* What the client's tasks are, validated once (taskq_submit, taskq_map). */
typedef struct taskq__spec {
    taskq_span_t function;
    taskq_span_t queue;
    int32_t priority;
    uint32_t timeout_ms;
    uint32_t max_attempts;
} taskq__spec_t;

/* Validate a function name and submit options into *spec.  TASKQ_EINVAL. */
int taskq__spec_init(taskq__spec_t *spec, const char *function,
                     const taskq_submit_opts_t *opts);

/* taskq_submit() once the spec is valid; mapped marks a future of
 * taskq_map (counted in c->map_resolved when it resolves). */
int taskq__submit(taskq_client_t *c, const taskq__spec_t *spec, const void *arg,
                  size_t arg_len, bool mapped, taskq_future_t **ret_future);

/* Send the open batch if it holds tasks.  0, TASKQ_ENOMEM or TASKQ_ESYS. */
int taskq__flush(taskq_client_t *c);

/* Send a batch's SUBMIT if the connection is ready; a batch larger than the
 * broker's frame limit is refused here.  Returns false if it was refused
 * (and freed). */
bool taskq__batch_send(taskq_client_t *c, taskq__batch_t *b);

/* Unlink b from the sent list and free it. */
void taskq__batch_drop(taskq_client_t *c, taskq__batch_t *b);

/* Resolve every future of batch b (sent list) as refused with code and
 * text, then drop b. */
void taskq__batch_refuse(taskq_client_t *c, taskq__batch_t *b, int code, taskq_span_t text);

/* Handle ACCEPTED: give b's futures their job ids, then drop b. */
void taskq__batch_accepted(taskq_client_t *c, taskq__batch_t *b, uint64_t first_job);

/* Resolve a pending future: take it out of the job table or its batch,
 * copy data (a result for DONE, else text), update the client's counters.
 * If data cannot be copied the future resolves FAILED with TASKQ_ENOMEM. */
void taskq__future_resolve(taskq_future_t *f, taskq_state_t state, int code,
                           uint32_t attempts, const void *data, size_t len);

/*
 * A new pending future of job_id (room in the job table reserved).  watch:
 * it enters the job table and a WATCH asks for the outcome
 * (taskq_future_attach); otherwise it stays out of the table until
 * taskq__future_expect().  Returns 0 or TASKQ_ENOMEM.
 */
int taskq__future_new(taskq_client_t *c, uint64_t job_id, bool watch,
                      taskq_future_t **ret_future);

/* Put a pending future made with watch false into the job table, so that
 * the next RESULT for its job resolves it. */
void taskq__future_expect(taskq_client_t *c, taskq_future_t *f);

/* Resolve every pending future of the client (buffered, sent, accepted),
 * and drop every batch. */
void taskq__fail_all(taskq_client_t *c, taskq_state_t state, int code, const char *text);

/* Resolve pending futures TASKQ_ECLOSED and cut every future loose from
 * the client (taskq_client_destroy). */
void taskq__futures_detach(taskq_client_t *c);

/* Send a CANCEL, WATCH or ACK for ids (in batches of max_batch) if the
 * connection is ready.  0, TASKQ_ENOMEM or TASKQ_ESYS. */
int taskq__send_jobs(taskq_client_t *c, uint8_t type, const uint64_t *ids, size_t n);

/* Make room for n ids in c->ids.  0 or TASKQ_ENOMEM. */
int taskq__ids_reserve(taskq_client_t *c, size_t n);

/*
 * Run the client's I/O until cond(c, arg) holds or timeout_ms passes:
 * flush the open batch, receive and handle messages, send heartbeats,
 * reconnect.  Returns 0 once cond holds, TASKQ_ETIMEDOUT, or TASKQ_ESYS.
 */
typedef bool (*taskq__cond_fn)(const taskq_client_t *c, const void *arg);
int taskq__pump(taskq_client_t *c, int32_t timeout_ms, taskq__cond_fn cond, const void *arg);

/* The ms left before deadline (< 0: none) for a pump, at least 0. */
int32_t taskq__remaining(int64_t deadline);

/*
 * Run req until its answer comes, sending it again (with a new req_id) on
 * every new connection, for up to timeout_ms.  Returns 0 when answered
 * (for STATS and FAILED the reply's bytes are then in c->reply, which the
 * caller takes or frees), the answer's TASKQ_E* code (an ERROR), or
 * TASKQ_ETIMEDOUT, TASKQ_ECLOSED (reconnect_limit_ms ran out), TASKQ_EPROTO
 * (the broker speaks another protocol version), TASKQ_ENOMEM, TASKQ_ESYS.
 * *ret_sent_us (may be NULL) gets the time of the last send, in µs.
 */
int taskq__request(taskq_client_t *c, int32_t timeout_ms, const taskq__req_t *req,
                   int64_t *ret_sent_us);

#endif /* TASKQ_CLIENT_IMPL_H */
