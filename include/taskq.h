/*
 * taskq.h - the public API of libtaskq: the client side (submit tasks,
 * wait on futures, map, cancel, fetch by job id, statistics, failed jobs)
 * and the worker side (register functions, run them for a broker).
 *
 * Conventions, for every function below unless its comment says otherwise:
 *  - Functions that can fail return int: 0 on success or a negative
 *    TASKQ_E* code; taskq_strerror() and taskq_errname() name it.
 *  - Output parameters (ret_*) are written only on success.
 *  - Destructors take a pointer to the handle, accept NULL and *NULL, and
 *    set the caller's pointer to NULL.
 *  - The library keeps no global state, never prints and never exits.
 *  - Timeouts are int32_t milliseconds; TASKQ_TIMEOUT_INFINITE waits forever
 *    and 0 polls.
 *  - Task arguments and results are single encoded msgpack objects.
 *
 * Threads: a taskq_client_t, and every future it made, is used by one
 * thread at a time (the caller serialises).  Different clients are
 * independent and may be used by different threads concurrently.  A
 * taskq_worker_t is driven by the thread that calls taskq_worker_run();
 * handlers run on the worker's own handler threads; taskq_worker_stop()
 * may be called from any thread or a signal handler.
 */
#ifndef TASKQ_H
#define TASKQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TASKQ_BUILDING) && defined(__GNUC__)
#define TASKQ_API __attribute__((visibility("default")))
#else
#define TASKQ_API
#endif

#define TASKQ_VERSION_MAJOR 0
#define TASKQ_VERSION_MINOR 1
#define TASKQ_VERSION_PATCH 0
#define TASKQ_VERSION_STRING "0.1.0"

/* The default broker endpoint of clients, workers and taskqd. */
#define TASKQ_DEFAULT_ENDPOINT "tcp://127.0.0.1:7560"

#define TASKQ_TIMEOUT_INFINITE ((int32_t)-1)

/* ---- Errors ------------------------------------------------------------ */

/*
 * Error codes: name, value, message.  Values are stable.  The first group
 * names a task's outcome, as taskq_future_wait() (and, for EFAILED and
 * ERETRY, taskq_worker_call()) reports it; the second is about the call or
 * the connection.
 */
#define TASKQ_ERRNO_MAP(X)                                                            \
    X(ETIMEDOUT, -1, "wait timed out; the task goes on")                              \
    X(EFAILED, -2, "the task's handler reported an error")                            \
    X(ECANCELED, -3, "the task was cancelled")                                        \
    X(ELOST, -4, "the task's attempts were used up by workers that died")              \
    X(ERUNLIMIT, -5, "the task's run limit expired on every attempt")                  \
    X(ENOJOB, -6, "the broker does not know this job")                                \
    X(ECLOSED, -7, "no connection to the broker")                                     \
    X(ERETRY, -8, "the handler asked for another attempt")                            \
    X(EINVAL, -20, "invalid argument")                                                \
    X(ENOMEM, -21, "out of memory")                                                   \
    X(EPROTO, -22, "protocol error")                                                  \
    X(EQUEUEFULL, -23, "the broker's queue is full")                                  \
    X(ETOOBIG, -24, "message or argument larger than the broker accepts")             \
    X(EDENIED, -25, "not allowed: the broker refused this key, role or request")     \
    X(ESTORAGE, -26, "the broker cannot store tasks right now")                       \
    X(EPENDING, -27, "the task has no outcome yet")                                   \
    X(ESTOPPED, -28, "stopped")                                                       \
    X(ESYS, -29, "operating system error")                                            \
    X(EREFUSED, -30, "the broker refused the request")

typedef enum taskq_error_code {
    TASKQ_OK = 0,
#define TASKQ_ERRNO_ENUM(name, value, text) TASKQ_##name = value,
    TASKQ_ERRNO_MAP(TASKQ_ERRNO_ENUM)
#undef TASKQ_ERRNO_ENUM
} taskq_error_code_t;

/* Message for a code; unknown codes give "unknown error".  Never NULL. */
TASKQ_API const char *taskq_strerror(int code);
/* "TASKQ_ETIMEDOUT" etc.; unknown codes give "TASKQ_E?".  Never NULL. */
TASKQ_API const char *taskq_errname(int code);
/* The library's version string, e.g. "0.1.0". */
TASKQ_API const char *taskq_version(void);

/* ---- Client ------------------------------------------------------------ */

typedef struct taskq_client taskq_client_t;
typedef struct taskq_future taskq_future_t;

/* Client options.  Zero-initialise; a zero field takes its default. */
typedef struct taskq_client_opts {
    const char *name;           /* shown in broker stats (default "client") */
    int32_t reconnect_limit_ms; /* how long to try to reach a broker that went
                                   away before failing waits with TASKQ_ECLOSED
                                   (default 30000; TASKQ_TIMEOUT_INFINITE: forever) */
    uint32_t max_batch;         /* tasks buffered before a SUBMIT is sent
                                   (default 256, at most 10000) */
    bool leave_outcomes;        /* never acknowledge outcomes, so that the
                                   broker keeps them for other processes
                                   (taskq_future_attach) until its result
                                   retention time; for submitters that
                                   detach (default false: an outcome this
                                   client received is acknowledged, and the
                                   broker forgets it) */
    const char *curve_server_key; /* the broker's CURVE public key: 40 Z85
                                   characters, or the path of its .pub file
                                   (from `taskq keygen`); NULL: no CURVE */
    const char *curve_key;      /* this client's CURVE secret key: 40 Z85
                                   characters, or the path of its .key file;
                                   set both or neither.  Read (and copied) by
                                   taskq_client_new(); the secret stays in
                                   the client's memory until it is destroyed */
} taskq_client_opts_t;

/*
 * Create a client for the broker at endpoint (a ZeroMQ endpoint such as
 * "tcp://host:7560" or "ipc:///run/taskq/taskq.sock"; NULL means
 * TASKQ_DEFAULT_ENDPOINT).  opts may be NULL.  Connecting is asynchronous:
 * this returns at once, and the handshake completes during later calls, so
 * a broker may start after its clients.  Use taskq_client_ping() to check
 * that a broker answers.
 * All I/O happens inside the client's calls (no background thread of the
 * library runs the protocol): the waiting calls (taskq_future_wait,
 * taskq_wait_any, taskq_map, ping, stats, failed, retry) exchange
 * messages, send heartbeats and reconnect.  If the broker goes away, a
 * waiting call reconnects with backoff (100 ms doubling up to 3.2 s),
 * sends again what was not yet accepted and asks again for the outcomes
 * it waits for; after reconnect_limit_ms spent waiting without a broker,
 * pending futures resolve TASKQ_ECLOSED (the client stays usable).
 * With curve_server_key and curve_key, connections use CurveZMQ
 * (encrypted, and the client authenticated by its key).  If the broker
 * refuses the key (it is in none of its allow-lists), does not use CURVE,
 * or answers the handshake with an ERROR DENIED (the key lacks the client
 * role, or was revoked), what waits resolves TASKQ_EDENIED at once instead
 * of waiting out reconnect_limit_ms, and the client does not reconnect
 * until a later call needs the broker: that call asks once more.
 * Errors: TASKQ_EINVAL (bad endpoint or option; only one of the CURVE keys
 * given; a key file that cannot be read or holds no key), TASKQ_ENOMEM,
 * TASKQ_ESYS (also: this ZeroMQ has no CURVE support).
 * The caller owns *ret_client and frees it with taskq_client_destroy().
 */
TASKQ_API int taskq_client_new(const char *endpoint, const taskq_client_opts_t *opts,
                               taskq_client_t **ret_client);

/*
 * Close the connection and free the client.  Futures the caller still holds
 * stay valid handles: pending ones resolve to TASKQ_ECLOSED; they must still
 * be destroyed with taskq_future_destroy().  Tasks already accepted by the
 * broker are not cancelled; buffered ones are never sent.  Sends BYE and
 * waits at most 100 ms for it to go out.
 */
TASKQ_API void taskq_client_destroy(taskq_client_t **client);

/*
 * Round trip to the broker: waits up to timeout_ms for the handshake (if
 * not done yet) and a heartbeat reply.  Writes the round-trip time in
 * microseconds to *ret_rtt_us and the broker's version string (owned by the
 * client, valid until the next call on it) to *ret_version; either may be
 * NULL.  Errors: TASKQ_ETIMEDOUT, TASKQ_EPROTO (the broker speaks another
 * protocol version), TASKQ_ECLOSED (reconnect_limit_ms ran out),
 * TASKQ_EDENIED (the broker refused this client's key or handshake).
 */
TASKQ_API int taskq_client_ping(taskq_client_t *c, int32_t timeout_ms, uint32_t *ret_rtt_us,
                                const char **ret_version);

/* Options of one task.  Zero-initialise; a zero field takes its default. */
typedef struct taskq_submit_opts {
    const char *queue;     /* queue name (default "default") */
    int32_t priority;      /* -1000..1000, larger runs first (default 0) */
    uint32_t timeout_ms;   /* run limit of each attempt (default 0: none) */
    uint32_t max_attempts; /* deliveries before the task is given up (default 3) */
} taskq_submit_opts_t;

/*
 * Submit one call of function with arg (arg_len bytes: one encoded msgpack
 * object; the bytes are copied).  Returns at once with a future in
 * *ret_future; the task is buffered and sent with the next batch, which
 * goes out when max_batch tasks are buffered, at taskq_client_flush(), or
 * at the start of any call that waits.  opts may be NULL.
 * Errors: TASKQ_EINVAL (empty or too long function/queue name, arg not one
 * msgpack object, option out of range), TASKQ_ENOMEM.  A refusal by the
 * broker (TASKQ_EQUEUEFULL, TASKQ_ETOOBIG, ...) is reported by the future;
 * so is a task too large for the broker's frame limit, which is refused
 * without being sent.  The caller owns *ret_future.
 */
TASKQ_API int taskq_submit(taskq_client_t *c, const char *function, const void *arg,
                           size_t arg_len, const taskq_submit_opts_t *opts,
                           taskq_future_t **ret_future);

/* Send buffered tasks now without waiting (before the handshake is done
 * they go out as soon as it is).  Errors: TASKQ_ENOMEM, TASKQ_ESYS. */
TASKQ_API int taskq_client_flush(taskq_client_t *c);

/*
 * Attach a future to an existing job by id (a job submitted by another
 * process, or before a restart).  The broker sends its outcome when it has
 * one; an id the broker does not know resolves to TASKQ_ENOJOB.  Several
 * futures may wait for the same job.
 * Errors: TASKQ_EINVAL (job_id 0), TASKQ_ENOMEM.  The caller owns *ret_future.
 */
TASKQ_API int taskq_future_attach(taskq_client_t *c, uint64_t job_id,
                                  taskq_future_t **ret_future);

/* Outcome states of a future. */
typedef enum taskq_state {
    TASKQ_STATE_PENDING = 0,  /* no outcome yet */
    TASKQ_STATE_DONE,         /* result available */
    TASKQ_STATE_FAILED,       /* handler error; text in taskq_future_error() */
    TASKQ_STATE_CANCELLED,    /* cancelled before it finished */
    TASKQ_STATE_LOST,         /* attempts used up by dead workers */
    TASKQ_STATE_RUNLIMIT,     /* run limit expired on every attempt */
    TASKQ_STATE_UNKNOWN,      /* the broker does not know the job */
    TASKQ_STATE_REFUSED,      /* the broker refused the submit */
    TASKQ_STATE_CLOSED,       /* connection failed before an outcome */
} taskq_state_t;

/*
 * Wait up to timeout_ms for the future's outcome.  Returns 0 when the task
 * is done (result in taskq_future_result()), or: TASKQ_ETIMEDOUT (the wait
 * ran out; the task goes on and the future can be waited on again),
 * TASKQ_EFAILED (handler error, see taskq_future_error()), TASKQ_ECANCELED,
 * TASKQ_ELOST, TASKQ_ERUNLIMIT, TASKQ_ENOJOB, TASKQ_ECLOSED (broker
 * unreachable beyond reconnect_limit_ms, or the client was destroyed), or
 * the code of the broker's refusal (TASKQ_EQUEUEFULL, TASKQ_ETOOBIG, ...;
 * TASKQ_EPROTO if the broker speaks another protocol version; TASKQ_EDENIED
 * if it refused this client's key or handshake, see taskq_client_new(), or
 * this task, e.g. `exec` for a client not allowed to run it), or
 * TASKQ_ENOMEM if the outcome could not be copied (state FAILED).
 * Once resolved, every later wait returns the same code at once.
 * While waiting, the client keeps its connection alive, reconnects with
 * backoff if the broker goes away, and processes outcomes of other futures.
 */
TASKQ_API int taskq_future_wait(taskq_future_t *f, int32_t timeout_ms);

/*
 * Wait up to timeout_ms until at least one of fs[0..n-1] (futures of the
 * same client; NULL entries are skipped) has an outcome; write its index to
 * *ret_index and return 0.  Already resolved futures count, so remove a
 * future from the array once handled.  Errors: TASKQ_ETIMEDOUT,
 * TASKQ_EINVAL (n == 0, no non-NULL future, or futures of different clients).
 */
TASKQ_API int taskq_wait_any(taskq_future_t *const *fs, size_t n, int32_t timeout_ms,
                             size_t *ret_index);

/*
 * Ask the broker to cancel the task: a queued task is removed, a running
 * one is abandoned at its worker.  The future then resolves to
 * TASKQ_ECANCELED, unless the task finished first (then it keeps that
 * outcome).  Returns 0 once the request is sent (or remembered: a task not
 * yet accepted is cancelled as soon as the broker gives its job id, and
 * cancels are sent again after a reconnect); 0 without doing anything if
 * the future has already resolved and has a job id; TASKQ_EINVAL if it
 * resolved without one (refused, or closed before it was accepted).
 * Destroying a future after cancelling it does not withdraw the cancel.
 */
TASKQ_API int taskq_cancel(taskq_future_t *f);

/* The state now, without waiting or doing I/O. */
TASKQ_API taskq_state_t taskq_future_state(const taskq_future_t *f);

/* The broker's job id, or 0 if the broker has not acknowledged it yet. */
TASKQ_API uint64_t taskq_future_job_id(const taskq_future_t *f);

/* Attempts the broker started for the task (valid once resolved). */
TASKQ_API uint32_t taskq_future_attempts(const taskq_future_t *f);

/*
 * The result of a DONE future: one encoded msgpack object, owned by the
 * future and valid until it is destroyed; *ret_len gets its length.
 * Returns NULL (and leaves *ret_len) if the future is not DONE.
 */
TASKQ_API const void *taskq_future_result(const taskq_future_t *f, size_t *ret_len);

/*
 * Text explaining a non-DONE outcome (the handler's error message, why the
 * task was lost, ...), owned by the future; "" when there is none.
 */
TASKQ_API const char *taskq_future_error(const taskq_future_t *f);

/*
 * Free a future.  If its task is still running it goes on; its outcome is
 * simply not delivered to this process.
 */
TASKQ_API void taskq_future_destroy(taskq_future_t **f);

/*
 * taskq_map: run function over n inputs with at most window tasks in
 * flight, and hand the outcomes back in input order.
 *
 * input(i, &arg, &arg_len, ud) is called once per input in order
 * (i = 0..n-1) when there is room in the window; it sets *arg to one
 * encoded msgpack object that must stay valid until the next call to input
 * (the library copies it) and returns 0, or non-zero to stop the map.
 * output(i, code, data, len, ud) is called once per input in order i =
 * 0..n-1: code is 0 and data/len the result object when the task is done,
 * otherwise the task's error code with data/len the error text (not NUL-
 * terminated).  data is valid only during the call.  Returning non-zero
 * stops the map.  Stopping cancels the map's tasks still in flight.
 * The callbacks run on the calling thread between the map's waits; they may
 * use the client (submit, wait, ...) but must not start another taskq_map
 * on it.
 */
typedef int (*taskq_map_input_fn)(size_t i, const void **arg, size_t *arg_len, void *ud);
typedef int (*taskq_map_output_fn)(size_t i, int code, const void *data, size_t len,
                                   void *ud);
/* Called as outcomes arrive (once per batch of them, before they are handed
 * to output) with how many are done, in any order, of total. */
typedef void (*taskq_progress_fn)(size_t done, size_t total, void *ud);

typedef struct taskq_map_opts {
    taskq_submit_opts_t task;   /* options of every task */
    size_t window;              /* max tasks in flight (default 4096) */
    int32_t timeout_ms;         /* for the whole map (default: infinite) */
    taskq_progress_fn progress; /* optional */
} taskq_map_opts_t;

/*
 * Run the map described above.  opts may be NULL.  Returns 0 if every task
 * was done; otherwise the first non-zero code an output was given (the map
 * still delivers every outcome), TASKQ_ESTOPPED if a callback stopped it,
 * TASKQ_ETIMEDOUT if timeout_ms ran out (unfinished tasks are cancelled),
 * TASKQ_ECLOSED or TASKQ_EPROTO as soon as an output was given that code
 * (no broker, or one that speaks another protocol: the rest would fail the
 * same way), or TASKQ_EINVAL (bad name or option, or an input that is not
 * one msgpack object) / TASKQ_ENOMEM.
 */
TASKQ_API int taskq_map(taskq_client_t *c, const char *function, size_t n,
                        taskq_map_input_fn input, taskq_map_output_fn output, void *ud,
                        const taskq_map_opts_t *opts);

/*
 * Ask the broker for statistics.  On success *ret_map is a malloc'ed buffer
 * holding one encoded msgpack map (keys documented in proto/PROTOCOL.md,
 * "STATS_REPLY") and *ret_len its length; the caller frees it with free().
 * Errors: TASKQ_ETIMEDOUT, TASKQ_ECLOSED, TASKQ_ENOMEM, TASKQ_EPROTO,
 * TASKQ_EDENIED (as for taskq_client_ping()).
 */
TASKQ_API int taskq_client_stats(taskq_client_t *c, int32_t timeout_ms, void **ret_map,
                                 size_t *ret_len);

/* ---- Failed jobs ------------------------------------------------------- */

/*
 * A failed job is one whose outcome is TASKQ_STATE_FAILED, _LOST or
 * _RUNLIMIT and that the broker still retains (until a client collects
 * the outcome, or for the broker's result retention time).  Its history
 * lists the attempts that ended without a result.  Strings are
 * NUL-terminated copies of what the broker sent (a NUL byte inside one
 * ends it early); times are Unix time in milliseconds.
 */
typedef struct taskq_failed_attempt {
    uint32_t attempt;     /* its number: 1 for the first delivery */
    const char *worker;   /* the worker that held it, "" if unknown */
    const char *host;     /* that worker's host, "" if unknown */
    uint32_t pid;         /* that worker's process id, 0 if unknown */
    uint64_t started_ms;  /* when it was sent to the worker, 0 if unknown */
    uint64_t ended_ms;    /* when it ended */
    const char *cause;    /* why it ended (the handler's error, the worker
                             died, the run limit expired, ...) */
} taskq_failed_attempt_t;

typedef struct taskq_failed {
    uint64_t job_id;                        /* the job */
    taskq_state_t state;                    /* TASKQ_STATE_FAILED, _LOST or _RUNLIMIT */
    const char *function;                   /* the function it called */
    const char *queue;                      /* its queue */
    uint32_t attempts;                      /* attempts it used */
    uint64_t finished_ms;                   /* when it reached this outcome */
    const char *error;                      /* the outcome's text, as
                                               taskq_future_error() gives it */
    const taskq_failed_attempt_t *history;  /* n_history entries, oldest first
                                               (at most 1000) */
    size_t n_history;
} taskq_failed_t;

/*
 * One page of the failed jobs the broker retains, of every client: those
 * with a job id above after, in id order, at most limit (1..10000) of them.
 * Waits up to timeout_ms for the answer.  On success *ret_jobs is an array
 * of *ret_count jobs (NULL and 0 when none is left), held with all its
 * strings and histories in one allocation that the caller frees with
 * taskq_failed_free().  The broker may send fewer than limit jobs before
 * the end (to keep its reply within its frame limit), so to read the whole
 * list, start with after = 0 and call again with after = the last job_id
 * received until a call gives 0 jobs.  Listing changes nothing at the
 * broker.
 * Errors: TASKQ_EINVAL (limit out of range), TASKQ_ETIMEDOUT,
 * TASKQ_ECLOSED, TASKQ_ENOMEM, TASKQ_EPROTO (the broker speaks another
 * protocol version, or is too old to list failed jobs), TASKQ_EREFUSED
 * (a job alone is too large for a reply), TASKQ_EDENIED (as for
 * taskq_client_ping()).
 */
TASKQ_API int taskq_client_failed(taskq_client_t *c, uint64_t after, uint32_t limit,
                                  int32_t timeout_ms, taskq_failed_t **ret_jobs,
                                  size_t *ret_count);

/* Free a page of taskq_client_failed() and set *jobs to NULL. */
TASKQ_API void taskq_failed_free(taskq_failed_t **jobs);

/*
 * Queue the failed job job_id again under the same id (another process may
 * have submitted it): its outcome is dropped, it gets all its attempts
 * again, and its history is kept.  Waits up to timeout_ms for the broker
 * to confirm (it does so once the job is stored), then returns 0 with a
 * future of the job's new outcome in *ret_future, as taskq_future_attach()
 * would give (the caller owns it).  Errors, where nothing is queued again:
 * TASKQ_ENOJOB (the broker retains no failed job with this id: unknown,
 * collected, expired, or already queued again), TASKQ_ESTORAGE (the broker
 * cannot store it now), TASKQ_EINVAL (job_id 0), TASKQ_ETIMEDOUT (no answer
 * yet: the job may or may not be queued again), TASKQ_ECLOSED,
 * TASKQ_ENOMEM, TASKQ_EPROTO (as for taskq_client_failed()), or another
 * refusal (TASKQ_EREFUSED, ...).  If the connection was lost after the
 * request went out and the broker then answers that it holds no such
 * failed job, the first request may have taken effect: the call then
 * succeeds, and the future resolves to the job's outcome, or to
 * TASKQ_ENOJOB if the broker does not know it.
 */
TASKQ_API int taskq_client_retry(taskq_client_t *c, uint64_t job_id, int32_t timeout_ms,
                                 taskq_future_t **ret_future);

/* ---- Worker ------------------------------------------------------------ */

typedef struct taskq_worker taskq_worker_t;
typedef struct taskq_task taskq_task_t;

/*
 * A task handler.  It reads the argument and context from t and sets a
 * result with taskq_task_set_result() or an error with taskq_task_error(),
 * then returns 0.  Returning N != 0 without setting an error reports the
 * error "handler returned N".  A handler that sets nothing and returns 0
 * returns nil.  A set error wins over the return value.
 * Handlers run on the worker's handler threads (opts.threads of them, so
 * several run concurrently when threads > 1) and must not call
 * taskq_worker_* functions other than taskq_worker_stop().  t is valid only
 * during the call.
 */
typedef int (*taskq_handler_fn)(taskq_task_t *t, void *userdata);

/* Worker options.  Zero-initialise; a zero field takes its default. */
typedef struct taskq_worker_opts {
    const char *name;     /* shown in broker stats (default "<host>-<pid>") */
    uint32_t threads;     /* handler threads (default 1) */
    uint32_t prefetch;    /* extra tasks held beyond threads (default 1);
                             credit = threads + prefetch */
    const char **queues;  /* NULL-terminated list of queues (default {"default"}) */
    const char *curve_server_key; /* the broker's CURVE public key: 40 Z85
                                     characters, or the path of its .pub
                                     file; NULL: no CURVE */
    const char *curve_key;        /* this worker's CURVE secret key: 40 Z85
                                     characters, or the path of its .key
                                     file; set both or neither.  Read (and
                                     copied) by taskq_worker_new() */
} taskq_worker_opts_t;

/*
 * Create a worker for the broker at endpoint (NULL: TASKQ_DEFAULT_ENDPOINT).
 * opts may be NULL.  Nothing is connected until taskq_worker_run().
 * With curve_server_key and curve_key, connections use CurveZMQ.
 * Errors: TASKQ_EINVAL (bad name or queue, more than 1024 queues,
 * threads + prefetch above 10000, only one of the CURVE keys given, a key
 * file that cannot be read or holds no key), TASKQ_ENOMEM, TASKQ_ESYS.
 * Free with taskq_worker_destroy().
 */
TASKQ_API int taskq_worker_new(const char *endpoint, const taskq_worker_opts_t *opts,
                               taskq_worker_t **ret_worker);

/* Free a worker that is not running. */
TASKQ_API void taskq_worker_destroy(taskq_worker_t **w);

/*
 * Register handler for function (name copied) before taskq_worker_run().
 * userdata is passed to every call.  Errors: TASKQ_EINVAL (empty or too
 * long name, already registered, worker running), TASKQ_ENOMEM.
 */
TASKQ_API int taskq_worker_register(taskq_worker_t *w, const char *function,
                                    taskq_handler_fn handler, void *userdata);

/*
 * Connect, announce the registered functions, and run tasks until
 * taskq_worker_stop() or until the broker says goodbye (BYE).  Heartbeats
 * flow while handlers run, however long they take.  If the broker stops
 * answering, the worker reconnects with exponential backoff (1 s doubling up to 8 s)
 * and announces itself again; tasks it held but had not started are left
 * to the broker, which hands them out again.  On stop, the worker takes no
 * new tasks, hands the tasks it holds but has not started back to the
 * broker (which gives them to other workers without using up one of their
 * attempts), waits for running handlers to return, reports their outcomes,
 * sends BYE and returns.  After
 * the broker's BYE, it waits for running handlers and returns 0.
 * Returns 0, or TASKQ_EINVAL (no function registered, already running, or
 * an endpoint ZeroMQ does not understand), TASKQ_ESYS (also: this ZeroMQ
 * has no CURVE support), or the code of the broker's refusal of the
 * handshake (TASKQ_EPROTO if it speaks another protocol version, ...).
 * TASKQ_EDENIED: the broker refused this worker, at once rather than after
 * reconnects: its CURVE key is in none of the broker's allow-lists, the
 * broker does not use CURVE, or it answered HELLO with ERROR DENIED (the key
 * lacks the worker role) or later revoked the key.  Running handlers are
 * waited for first.
 */
TASKQ_API int taskq_worker_run(taskq_worker_t *w);

/* Make taskq_worker_run() return.  Async-signal-safe; any thread. */
TASKQ_API void taskq_worker_stop(taskq_worker_t *w);

/*
 * Run the handler registered for function once, in the calling thread, as
 * attempt `attempt` of job job_id with the given seed and argument (arg_len
 * bytes: one encoded msgpack object; copied), without a broker: this is
 * how a process that is not connected (a sandbox, a test) runs the
 * functions a worker has.  Inside the call the handler sees exactly these
 * values through taskq_task_*(); taskq_task_cancelled() stays false.
 *
 * Returns the handler's outcome:
 *  - 0: a result.  *ret_out is one encoded msgpack object (nil if the
 *    handler set nothing) of *ret_len bytes.
 *  - TASKQ_EFAILED: the handler reported an error (taskq_task_error(), or
 *    a non-zero return).  *ret_out is its text, *ret_len bytes long.
 *  - TASKQ_ERETRY: the handler asked for another attempt
 *    (taskq_task_retry()).  *ret_out is its text, as above.
 * In these three cases *ret_out is malloc'ed, followed by a NUL byte not
 * counted in *ret_len, and the caller frees it with free().
 * Errors, where neither output is written: TASKQ_EINVAL (w, ret_out or
 * ret_len NULL, function not registered, arg not one msgpack object nested
 * at most 64 deep), TASKQ_ENOMEM.
 * Threads: the call only reads the registered functions, so it may run
 * concurrently with itself and with taskq_worker_run() on the same worker,
 * but not with taskq_worker_register().  The worker need never be run.
 */
TASKQ_API int taskq_worker_call(taskq_worker_t *w, const char *function, uint64_t job_id,
                                uint32_t attempt, uint64_t seed, const void *arg,
                                size_t arg_len, void **ret_out, size_t *ret_len);

/*
 * The name of the i-th function registered on w (from 0, in the order of
 * registration), owned by w and valid until it is destroyed; NULL when i is
 * past the last one.  Same thread rules as taskq_worker_call().
 */
TASKQ_API const char *taskq_worker_function(const taskq_worker_t *w, size_t i);

/* The task's argument: one encoded msgpack object, valid during the call. */
TASKQ_API const void *taskq_task_arg(const taskq_task_t *t, size_t *ret_len);
/* The function name the task called. */
TASKQ_API const char *taskq_task_function(const taskq_task_t *t);
/* The broker's job id. */
TASKQ_API uint64_t taskq_task_job_id(const taskq_task_t *t);
/* 1 for the first delivery, 2 for the first retry, ... */
TASKQ_API uint32_t taskq_task_attempt(const taskq_task_t *t);
/*
 * A 64-bit seed for random number generators: the same for every attempt
 * of the job and distinct between jobs, so forked workers never share one
 * random state and a rerun of the same job draws the same numbers.
 */
TASKQ_API uint64_t taskq_task_seed(const taskq_task_t *t);
/*
 * true once the broker asked to abandon this attempt (cancelled, or its run
 * limit expired): a long handler should check it and return early.
 */
TASKQ_API bool taskq_task_cancelled(const taskq_task_t *t);

/* Set the result (one encoded msgpack object; copied), replacing an earlier
 * result or error.  TASKQ_EINVAL if it is not one object (nested at most 64
 * deep), TASKQ_ENOMEM. */
TASKQ_API int taskq_task_set_result(taskq_task_t *t, const void *result, size_t len);

/* Set an error with a printf-style message (copied, cut at 65536 bytes),
 * replacing an earlier result; returns TASKQ_EFAILED so a handler can
 * `return taskq_task_error(t, "...")`. */
TASKQ_API int taskq_task_error(taskq_task_t *t, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Report that this attempt failed in a way another attempt may not (a
 * crashed helper process, a transient resource shortage): the broker
 * queues the task again if it has attempts left, and otherwise resolves it
 * TASKQ_EFAILED with this message.  printf-style, copied, cut like
 * taskq_task_error(); replaces an earlier result or error.  Returns
 * TASKQ_EFAILED so a handler can `return taskq_task_retry(t, "...")`.
 */
TASKQ_API int taskq_task_retry(taskq_task_t *t, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * The entry point of a worker plugin: a shared object that taskq-worker
 * loads with --load exports this function, which registers the plugin's
 * functions on w with taskq_worker_register() and returns 0 (or a negative
 * TASKQ_E* code to refuse to load).
 */
int taskq_plugin_init(taskq_worker_t *w);

#ifdef __cplusplus
}
#endif

#endif /* TASKQ_H */
