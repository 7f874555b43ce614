/*
 * worker_impl.h - the inside of a taskq worker: the worker and task
 * structures shared by worker.c (connection, I/O loop, handler threads)
 * and task.c (the task context handlers see, and running a handler).
 */
#ifndef TASKQ_WORKER_IMPL_H
#define TASKQ_WORKER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../client/taskq_impl.h"

/* A registered function. */
typedef struct taskq__fn {
    char *name;               /* NUL-terminated, 1..max_name bytes */
    size_t len;               /* strlen(name) */
    taskq_handler_fn handler;
    void *userdata;
} taskq__fn_t;

/*
 * One attempt.  The I/O thread creates it from a TASKS item, hands it to
 * the handler threads through the pending queue, gets it back through the
 * done queue, sends its DONE item and frees it.
 */
struct taskq_task {
    struct taskq_task *next;          /* in the pending, done or outbox queue */
    struct taskq_task *hprev, *hnext; /* the I/O thread's list of held attempts */
    const taskq__fn_t *fn;            /* NULL: the function is not registered */
    uint64_t job_id;
    uint64_t seed;
    uint32_t attempt;
    uint64_t hello_seq;               /* the connection it came on */
    const taskq_limits_t *limits;     /* the worker's: max_text, max_depth */
    atomic_bool cancelled;            /* set by ABANDON */
    bool set;                         /* the handler set a result or an error */
    uint8_t status;                   /* TASKQ_DONE_* */
    taskq_span_t payload;             /* the outcome: into out, or static text */
    taskq_buf_t out;                  /* result, or error text as a msgpack str */
    size_t arg_len;
    uint8_t arg[];                    /* the argument, copied from TASKS */
};

/* Run t's handler (on a handler thread) and leave its outcome in
 * t->status and t->payload. */
void taskq__task_run(taskq_task_t *t);

/*
 * Copy the outcome taskq__task_run() left in t out for taskq_worker_call():
 * returns 0 (a result), TASKQ_EFAILED or TASKQ_ERETRY (a text) with a
 * malloc'ed, NUL-terminated copy in *ret_out, or TASKQ_ENOMEM.
 */
int taskq__task_outcome(const taskq_task_t *t, void **ret_out, size_t *ret_len);

/* Give t an error outcome with text, without running it. */
void taskq__task_fail(taskq_task_t *t, const char *text);

/* Mark t RETURNED: not started, for the broker to hand out again. */
void taskq__task_return(taskq_task_t *t);

/* Free a task. */
void taskq__task_free(taskq_task_t *t);

#endif /* TASKQ_WORKER_IMPL_H */
