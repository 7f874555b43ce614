/*
 * taskq_proto.h - the taskq wire protocol, version 1: message types, wire
 * error codes, limits, and the codec (encoders that append msgpack to a
 * growable buffer, and one validating decoder per frame).
 *
 * proto/PROTOCOL.md is the normative description of the bytes; this header
 * is its C binding.  Nothing here depends on any other part of taskq.
 *
 * Thread rules: every function is reentrant; a buffer or a decoded message
 * is used by one thread at a time.
 */
#ifndef TASKQ_PROTO_H
#define TASKQ_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TASKQ_PROTO_VERSION 1

/* Message types: the second element of every frame. */
typedef enum taskq_msg_type {
    TASKQ_MSG_HELLO = 1,        /* peer -> broker: role and what it serves */
    TASKQ_MSG_WELCOME = 2,      /* broker -> peer: handshake accepted */
    TASKQ_MSG_HEARTBEAT = 3,    /* both ways: liveness */
    TASKQ_MSG_BYE = 4,          /* both ways: orderly disconnect */
    TASKQ_MSG_ERROR = 5,        /* broker -> peer: a request was refused */
    TASKQ_MSG_SUBMIT = 6,       /* client -> broker: a batch of tasks */
    TASKQ_MSG_ACCEPTED = 7,     /* broker -> client: job ids of a SUBMIT */
    TASKQ_MSG_RESULT = 8,       /* broker -> client: a batch of outcomes */
    TASKQ_MSG_CANCEL = 9,       /* client -> broker: cancel jobs */
    TASKQ_MSG_WATCH = 10,       /* client -> broker: send me these outcomes */
    TASKQ_MSG_STATS = 11,       /* client -> broker: ask for statistics */
    TASKQ_MSG_STATS_REPLY = 12, /* broker -> client: statistics map */
    TASKQ_MSG_TASKS = 13,       /* broker -> worker: a batch of attempts */
    TASKQ_MSG_DONE = 14,        /* worker -> broker: a batch of outcomes */
    TASKQ_MSG_ABANDON = 15,     /* broker -> worker: stop these attempts */
    TASKQ_MSG_ACK = 16,         /* client -> broker: outcomes received */
    TASKQ_MSG_FAILED = 17,      /* client -> broker: list failed jobs */
    TASKQ_MSG_FAILED_REPLY = 18, /* broker -> client: a page of failed jobs */
    TASKQ_MSG_RETRY = 19,       /* client -> broker: queue a failed job again */
} taskq_msg_type_t;

#define TASKQ_MSG_MIN TASKQ_MSG_HELLO
#define TASKQ_MSG_MAX TASKQ_MSG_RETRY

/* Most history entries of one job in FAILED_REPLY (PROTOCOL.md 3.9). */
#define TASKQ_PROTO_MAX_HISTORY 1000

/* Roles named in HELLO. */
typedef enum taskq_role {
    TASKQ_ROLE_CLIENT = 1,
    TASKQ_ROLE_WORKER = 2,
} taskq_role_t;

/* Outcome of a job, as carried in RESULT. */
typedef enum taskq_status {
    TASKQ_STATUS_DONE = 0,      /* payload: the handler's result object */
    TASKQ_STATUS_FAILED = 1,    /* payload: str, the handler's error text */
    TASKQ_STATUS_CANCELLED = 2, /* payload: str, who cancelled */
    TASKQ_STATUS_LOST = 3,      /* payload: str, attempts spent on dead workers */
    TASKQ_STATUS_TIMEDOUT = 4,  /* payload: str, run limit spent on every attempt */
    TASKQ_STATUS_UNKNOWN = 5,   /* payload: str; the broker has no such job */
} taskq_status_t;

#define TASKQ_STATUS_MAX TASKQ_STATUS_UNKNOWN

/* Outcome of one attempt, as carried in DONE. */
typedef enum taskq_done_status {
    TASKQ_DONE_OK = 0,    /* payload: the result object */
    TASKQ_DONE_ERROR = 1, /* payload: str, error text */
    TASKQ_DONE_RETURNED = 2, /* not started; payload ignored (nil) */
    TASKQ_DONE_RETRY = 3,    /* failed, worth another attempt; payload: str */
} taskq_done_status_t;

/*
 * Wire error codes: the code field of ERROR, and the (negated) return value
 * of taskq_msg_decode().  Values never change meaning once published.
 */
#define TASKQ_PERR_MAP(X)                                                          \
    X(TRUNCATED, 1, "message ends before its last byte")                           \
    X(MALFORMED, 2, "not one msgpack array of the expected shape")                 \
    X(VERSION, 3, "unsupported protocol version")                                  \
    X(UNKNOWN_TYPE, 4, "unknown message type")                                     \
    X(BAD_FIELD, 5, "a field has the wrong type or is out of range")               \
    X(TOO_BIG, 6, "message larger than the frame limit")                           \
    X(TOO_LONG, 7, "string longer than its limit")                                 \
    X(TOO_MANY, 8, "list longer than its limit")                                   \
    X(TOO_DEEP, 9, "payload nested deeper than the limit")                         \
    X(HELLO_REQUIRED, 10, "send HELLO first")                                      \
    X(UNEXPECTED, 11, "message not valid for this role or state")                  \
    X(QUEUE_FULL, 12, "the broker holds its maximum number of queued tasks")       \
    X(NOT_FOUND, 13, "no such job")                                                \
    X(DENIED, 14, "not allowed")                                                   \
    X(STORAGE, 15, "the broker cannot store tasks right now")                      \
    X(SHUTTING_DOWN, 16, "the broker is shutting down")                            \
    X(LIMIT, 17, "a broker limit was reached")                                     \
    X(INTERNAL, 18, "internal broker error")

typedef enum taskq_perr {
#define TASKQ_PERR_ENUM(name, value, text) TASKQ_PERR_##name = value,
    TASKQ_PERR_MAP(TASKQ_PERR_ENUM)
#undef TASKQ_PERR_ENUM
} taskq_perr_t;

/*
 * "TRUNCATED" etc., or "UNKNOWN" for a code not in the table.  The code may
 * also be negated, as taskq_msg_decode() returns it.  Never NULL.
 */
const char *taskq_perr_name(int code);
/* The table's message for a code (or its negation), or "unknown error
 * code".  Never NULL. */
const char *taskq_perr_text(int code);

/*
 * Limits the decoder enforces.  Lengths are in bytes.  The nesting depth
 * of an object counts every array or map as one level, whatever it holds:
 * a scalar is depth 0, [] and [7] are depth 1, [[]] and {"a": [7]} depth 2.
 * A payload's depth counts from the payload itself, not from the message
 * arrays around it.
 */
typedef struct taskq_limits {
    uint32_t max_frame;     /* whole message (default 64 MiB) */
    uint32_t max_name;      /* function, queue, worker/host name (default 255) */
    uint32_t max_text;      /* error, BYE and outcome texts (default 65536) */
    uint32_t max_batch;     /* items in SUBMIT/RESULT/TASKS/DONE/..., jobs in
                               FAILED_REPLY, FAILED limit (default 10000) */
    uint32_t max_list;      /* queues or functions in HELLO (default 1024) */
    uint32_t max_depth;     /* nesting of an embedded payload (default 64;
                               values above 256 act as 256) */
} taskq_limits_t;


/* The defaults listed above. */
void taskq_limits_default(taskq_limits_t *ret);

/* A run of bytes inside a decoded frame.  Strings are NOT NUL-terminated. */
typedef struct taskq_span {
    const uint8_t *ptr; /* first byte; may be NULL when len == 0 */
    size_t len;         /* byte count */
} taskq_span_t;

/*
 * A cursor over an already validated list inside a frame.  The taskq_iter_*
 * functions below return 1 and fill *ret with the next item, 0 at the end
 * of the list, or a negative TASKQ_PERR_* code if the bytes are not what
 * the decoder validated (which only happens if the frame changed).
 */
typedef struct taskq_iter {
    const uint8_t *p;   /* next item */
    const uint8_t *end; /* end of the frame */
    uint32_t left;      /* items not yet read */
} taskq_iter_t;

/* HELLO: [1, 1, role, client_id, name, host, pid, credit, [queue...], [function...]] */
typedef struct taskq_hello {
    uint8_t role;            /* TASKQ_ROLE_* */
    uint64_t client_id;      /* random per client object; 0 for workers */
    taskq_span_t name;       /* free-form peer name, <= max_name */
    taskq_span_t host;       /* host name, <= max_name */
    uint32_t pid;            /* process id on that host */
    uint32_t credit;         /* worker: max attempts held at once; client: 0 */
    taskq_iter_t queues;     /* worker: queue names (str) */
    taskq_iter_t functions;  /* worker: function names (str) */
} taskq_hello_t;

/* WELCOME: [1, 2, broker_version, store_id, heartbeat_ms, liveness, max_frame] */
typedef struct taskq_welcome {
    taskq_span_t version;  /* broker software version, e.g. "0.1.0" */
    uint64_t store_id;     /* identity of the job-id space (see PROTOCOL.md) */
    uint32_t heartbeat_ms; /* heartbeat interval both sides use */
    uint32_t liveness;     /* missed intervals before a peer is dead */
    uint32_t max_frame;    /* largest frame the broker accepts */
} taskq_welcome_t;

/* ERROR: [1, 5, code, ref, text] */
typedef struct taskq_error {
    uint32_t code;     /* TASKQ_PERR_* */
    uint64_t ref;      /* req_id of the refused request, or a job id, or 0 */
    taskq_span_t text; /* human-readable detail */
} taskq_error_t;

/* One task of SUBMIT: [function, queue, priority, timeout_ms, max_attempts, arg] */
typedef struct taskq_submit_item {
    taskq_span_t function; /* non-empty, <= max_name */
    taskq_span_t queue;    /* non-empty, <= max_name */
    int32_t priority;      /* -1000..1000, larger first */
    uint32_t timeout_ms;   /* per-attempt run limit, 0 = none */
    uint32_t max_attempts; /* 1..1000 */
    taskq_span_t arg;      /* one encoded msgpack object */
} taskq_submit_item_t;

/* One entry of RESULT: [job_id, status, attempts, payload] */
typedef struct taskq_result_item {
    uint64_t job_id;      /* the job */
    uint8_t status;       /* TASKQ_STATUS_* */
    uint32_t attempts;    /* attempts started so far */
    taskq_span_t payload; /* one encoded msgpack object (str unless DONE) */
} taskq_result_item_t;

/* One entry of TASKS: [job_id, attempt, function, seed, timeout_ms, arg] */
typedef struct taskq_task_item {
    uint64_t job_id;       /* the job */
    uint32_t attempt;      /* 1 for the first delivery */
    taskq_span_t function; /* function to call */
    uint64_t seed;         /* deterministic per job, distinct between jobs */
    uint32_t timeout_ms;   /* run limit of this attempt, 0 = none */
    taskq_span_t arg;      /* one encoded msgpack object */
} taskq_task_item_t;

/* One entry of DONE: [job_id, attempt, status, payload] */
typedef struct taskq_done_item {
    uint64_t job_id;      /* the job */
    uint32_t attempt;     /* the attempt this outcome belongs to */
    uint8_t status;       /* TASKQ_DONE_* */
    taskq_span_t payload; /* one encoded msgpack object (str for ERROR) */
} taskq_done_item_t;

/* One entry of ABANDON: [job_id, attempt] */
typedef struct taskq_abandon_item {
    uint64_t job_id;  /* the job */
    uint32_t attempt; /* the attempt to stop */
} taskq_abandon_item_t;

/* One entry of a failed job's history:
 * [attempt, worker, host, pid, started_ms, ended_ms, cause] */
typedef struct taskq_history_item {
    uint32_t attempt;     /* the attempt's number */
    taskq_span_t worker;  /* its worker's name, <= max_name; empty: unknown */
    taskq_span_t host;    /* that worker's host, <= max_name; empty: unknown */
    uint32_t pid;         /* that worker's process id; 0: unknown */
    uint64_t started_ms;  /* Unix time (ms) the attempt was sent; 0: unknown */
    uint64_t ended_ms;    /* Unix time (ms) it ended */
    taskq_span_t cause;   /* why it ended, <= max_text */
} taskq_history_item_t;

/* One job of FAILED_REPLY:
 * [job_id, status, function, queue, attempts, finished_ms, payload, [entry...]] */
typedef struct taskq_failed_item {
    uint64_t job_id;       /* the job */
    uint8_t status;        /* TASKQ_STATUS_FAILED, _LOST or _TIMEDOUT */
    taskq_span_t function; /* non-empty, <= max_name */
    taskq_span_t queue;    /* non-empty, <= max_name */
    uint32_t attempts;     /* attempts it used */
    uint64_t finished_ms;  /* Unix time (ms) it got its outcome */
    taskq_span_t payload;  /* one encoded msgpack str: the outcome's text */
    taskq_iter_t history;  /* taskq_history_item_t, oldest first, 0..1000 */
} taskq_failed_item_t;

/* A decoded frame.  Spans and iterators point into the frame's bytes. */
typedef struct taskq_msg {
    uint8_t type; /* TASKQ_MSG_* */
    union {
        taskq_hello_t hello;
        taskq_welcome_t welcome;
        taskq_error_t error;
        taskq_span_t bye;                 /* BYE: [1, 4, reason] */
        struct {
            uint64_t req_id;              /* client-chosen, echoed in ACCEPTED */
            taskq_iter_t tasks;           /* taskq_submit_item_t */
        } submit;
        struct {
            uint64_t req_id;              /* the SUBMIT's req_id */
            uint64_t first_job;           /* job id of its first task */
            uint32_t count;               /* jobs first_job .. first_job+count-1 */
        } accepted;
        taskq_iter_t results;             /* RESULT: taskq_result_item_t */
        taskq_iter_t jobs;                /* CANCEL, WATCH, ACK: uint64 job ids */
        uint64_t stats_req;               /* STATS: [1, 11, req_id] */
        struct {
            uint64_t req_id;              /* the STATS req_id */
            taskq_span_t map;             /* one encoded msgpack map */
        } stats_reply;
        taskq_iter_t tasks;               /* TASKS: taskq_task_item_t */
        taskq_iter_t done;                /* DONE: taskq_done_item_t */
        taskq_iter_t abandon;             /* ABANDON: taskq_abandon_item_t */
        struct {
            uint64_t req_id;              /* client-chosen, echoed in the reply */
            uint64_t after;               /* list jobs with ids above this */
            uint32_t limit;               /* at most this many, 1..max_batch */
        } failed;                         /* FAILED: [1, 17, req_id, after, limit] */
        struct {
            uint64_t req_id;              /* the FAILED req_id */
            taskq_iter_t jobs;            /* taskq_failed_item_t, 0..max_batch */
        } failed_reply;                   /* FAILED_REPLY: [1, 18, req_id, [job...]] */
        struct {
            uint64_t req_id;              /* client-chosen, echoed in ACCEPTED */
            uint64_t job_id;              /* the failed job to queue again */
        } retry;                          /* RETRY: [1, 19, req_id, job_id] */
    } u;
} taskq_msg_t;

/*
 * Decode and validate one frame against lim (NULL: the defaults).  Checks,
 * in this order, the first failure giving the result:
 *  1. the frame size (TOO_BIG);
 *  2. the structure of the whole frame: exactly one complete msgpack
 *     array.  TRUNCATED when the bytes end early or a declared array, map,
 *     str, bin or ext length exceeds the bytes left (so every proper prefix
 *     of a valid frame is TRUNCATED); MALFORMED for the reserved byte 0xc1,
 *     bytes after the array, or a top level that is not a non-empty array;
 *     TOO_DEEP when anything nests more than max_depth + 3 levels (the 3
 *     being the message, batch and item arrays that can hold a payload),
 *     or more than 5 (the arrays of a FAILED_REPLY history entry) if that
 *     is more;
 *  3. the version: element 0 must be the integer 1 (VERSION otherwise,
 *     whatever element 0 holds);
 *  4. a frame with element 0 only is MALFORMED; element 1 must be an
 *     integer in TASKQ_MSG_MIN..TASKQ_MSG_MAX (UNKNOWN_TYPE otherwise);
 *  5. the number of elements the type has (MALFORMED);
 *  6. the fields, in order, and the items of lists in order: the wrong
 *     msgpack type or a value out of range is BAD_FIELD (also an empty
 *     batch, an empty name where one is required, a batch item that is
 *     not an array, the HELLO role rules of PROTOCOL.md section 3.1, a
 *     non-DONE outcome whose payload is not a str, a FAILED limit outside
 *     1..max_batch, and a FAILED_REPLY status other than FAILED, LOST or
 *     TIMEDOUT); a string over its limit is TOO_LONG (names, worker and
 *     host: max_name; BYE reason, ERROR text, outcome texts and history
 *     causes: max_text); a list over its limit is TOO_MANY (batches and
 *     FAILED_REPLY jobs: max_batch; HELLO lists: max_list; a history:
 *     TASKQ_PROTO_MAX_HISTORY); a batch item or history entry with the
 *     wrong number of fields is MALFORMED; a payload (argument, result,
 *     stats map) nested deeper than max_depth is TOO_DEEP.
 * Integers may use any msgpack encoding that holds the value.
 * Never reads outside [buf, buf+len), never allocates, never asserts.
 * Returns 0 and fills *ret, or a negative TASKQ_PERR_* code (then *ret is
 * untouched).  *ret points into buf: keep buf alive while using it.
 * When the result is not TRUNCATED, *ret_type (if non-NULL) receives the
 * message type if the frame starts with an array whose elements 0 and 1
 * are the version 1 and a known type (even when a later check fails,
 * TOO_BIG included), else 0, so a broker can say which message it refused.
 * After TRUNCATED, *ret_type is untouched.
 */
int taskq_msg_decode(const void *buf, size_t len, const taskq_limits_t *lim,
                     taskq_msg_t *ret, uint8_t *ret_type);

/*
 * For a frame taskq_msg_decode() refused: the req_id of a SUBMIT, STATS,
 * FAILED or RETRY whose version, type and req_id fields can still be read,
 * so that the ERROR reply can name the request; 0 otherwise.
 * Bounds-checked like the decoder.
 */
uint64_t taskq_msg_ref(const void *buf, size_t len);

/* HELLO queues and functions. */
int taskq_iter_str(taskq_iter_t *it, taskq_span_t *ret);
/* CANCEL, WATCH and ACK job ids. */
int taskq_iter_u64(taskq_iter_t *it, uint64_t *ret);
int taskq_iter_submit(taskq_iter_t *it, taskq_submit_item_t *ret);
int taskq_iter_result(taskq_iter_t *it, taskq_result_item_t *ret);
int taskq_iter_task(taskq_iter_t *it, taskq_task_item_t *ret);
int taskq_iter_done(taskq_iter_t *it, taskq_done_item_t *ret);
int taskq_iter_abandon(taskq_iter_t *it, taskq_abandon_item_t *ret);
/* FAILED_REPLY jobs, and the history of one of them. */
int taskq_iter_failed(taskq_iter_t *it, taskq_failed_item_t *ret);
int taskq_iter_history(taskq_iter_t *it, taskq_history_item_t *ret);

/*
 * Read a msgpack str object (a payload of a non-DONE status, for instance)
 * as text.  Returns 0 and fills *ret with its bytes, or TASKQ_PERR_BAD_FIELD
 * if the span is not exactly one str object.
 */
int taskq_span_str(taskq_span_t obj, taskq_span_t *ret);

/*
 * Check that [buf, buf+len) is exactly one msgpack object nested at most
 * max_depth deep (depth as for taskq_limits_t; values above 256 act as
 * 256).
 * Returns 0 or a negative TASKQ_PERR_* code: TRUNCATED (len 0, or the
 * object ends early), MALFORMED (0xc1, or bytes after the object),
 * TOO_DEEP.  Never allocates.  Clients use it on arguments before sending
 * them.
 */
int taskq_object_check(const void *buf, size_t len, uint32_t max_depth);

/* ---- Encoding ---------------------------------------------------------- */

/* A growable byte buffer.  Zero-initialise it; free with taskq_buf_fini. */
/* Frames at least this large are handed to ZeroMQ without a copy
 * (zmq_msg_init_data) by the senders that can give their buffer away:
 * below it, copying is cheaper than a fresh allocation per frame. */
#define TASKQ_ZEROCOPY_MIN 16384

typedef struct taskq_buf {
    uint8_t *data; /* bytes written so far; owned by the buffer */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
} taskq_buf_t;

void taskq_buf_fini(taskq_buf_t *b);
/* Forget the contents, keep the allocation. */
static inline void taskq_buf_reset(taskq_buf_t *b) { b->len = 0; }
/* Append raw bytes. 0 or -ENOMEM (errno value, not a PERR code). */
int taskq_buf_append(taskq_buf_t *b, const void *data, size_t len);
/* msgpack-c write callback (msgpack_packer_write); data is a taskq_buf_t *. */
int taskq_buf_write(void *data, const char *buf, size_t len);

/*
 * Encoders.  Each appends one complete message (or, for the _begin/_item
 * pairs, the message header and then one item per call: a _begin announces
 * how many items follow, and exactly that many _item calls must follow)
 * to b.  Strings are (pointer, length) spans; payloads (arg, result) are
 * encoded msgpack objects copied in as they are.  Every encoder returns 0
 * or -ENOMEM; the buffer may hold a partial message after -ENOMEM.
 * Encoders do not check limits: the sender is responsible for that.
 */
int taskq_enc_hello(taskq_buf_t *b, const taskq_hello_t *h,
                    const taskq_span_t *queues, uint32_t n_queues,
                    const taskq_span_t *functions, uint32_t n_functions);
int taskq_enc_welcome(taskq_buf_t *b, const taskq_welcome_t *w);
int taskq_enc_heartbeat(taskq_buf_t *b);
int taskq_enc_bye(taskq_buf_t *b, taskq_span_t reason);
int taskq_enc_error(taskq_buf_t *b, uint32_t code, uint64_t ref, taskq_span_t text);
int taskq_enc_submit_begin(taskq_buf_t *b, uint64_t req_id, uint32_t count);
int taskq_enc_submit_item(taskq_buf_t *b, const taskq_submit_item_t *t);
int taskq_enc_accepted(taskq_buf_t *b, uint64_t req_id, uint64_t first_job, uint32_t count);
int taskq_enc_result_begin(taskq_buf_t *b, uint32_t count);
int taskq_enc_result_item(taskq_buf_t *b, const taskq_result_item_t *r);
/* CANCEL, WATCH or ACK with a list of job ids. */
int taskq_enc_jobs(taskq_buf_t *b, uint8_t type, const uint64_t *jobs, uint32_t count);
int taskq_enc_stats(taskq_buf_t *b, uint64_t req_id);
/* map: one encoded msgpack map, copied in as it is. */
int taskq_enc_stats_reply(taskq_buf_t *b, uint64_t req_id, taskq_span_t map);
int taskq_enc_tasks_begin(taskq_buf_t *b, uint32_t count);
int taskq_enc_task_item(taskq_buf_t *b, const taskq_task_item_t *t);
int taskq_enc_done_begin(taskq_buf_t *b, uint32_t count);
int taskq_enc_done_item(taskq_buf_t *b, const taskq_done_item_t *d);
int taskq_enc_abandon_begin(taskq_buf_t *b, uint32_t count);
int taskq_enc_abandon_item(taskq_buf_t *b, const taskq_abandon_item_t *a);
int taskq_enc_failed(taskq_buf_t *b, uint64_t req_id, uint64_t after, uint32_t limit);
int taskq_enc_failed_reply_begin(taskq_buf_t *b, uint64_t req_id, uint32_t count);
/* One job of a FAILED_REPLY: its fields (f->history is not read) and the
 * header of its history of n_history entries; exactly n_history
 * taskq_enc_history_item() calls must follow, oldest entry first. */
int taskq_enc_failed_item(taskq_buf_t *b, const taskq_failed_item_t *f, uint32_t n_history);
int taskq_enc_history_item(taskq_buf_t *b, const taskq_history_item_t *h);
int taskq_enc_retry(taskq_buf_t *b, uint64_t req_id, uint64_t job_id);

/* Append one msgpack str object holding text (for non-DONE payloads). */
int taskq_enc_str(taskq_buf_t *b, const char *text, size_t len);

/* Convenience: a span over a NUL-terminated string (NULL gives an empty span). */
taskq_span_t taskq_span_cstr(const char *s);
/* true if the span holds exactly the NUL-terminated string s (NULL: ""). */
bool taskq_span_eq(taskq_span_t a, const char *s);

#endif /* TASKQ_PROTO_H */
