/*
 * map.c - taskq_map: a window of tasks in flight over the client's
 * futures, refilled as outcomes arrive, with outcomes handed back in input
 * order.
 */
#include <stdlib.h>

#include "client_impl.h"

#define WINDOW_DEFAULT 4096

/* The map's state: futures of inputs head..tail-1 in a ring of window. */
typedef struct map {
    taskq_client_t *c;
    taskq_future_t **ring;
    size_t window;
    size_t head; /* next input whose outcome is handed back */
    size_t tail; /* next input to submit */
} map_t;

static taskq_future_t **map_slot(map_t *m, size_t i)
{
    return &m->ring[i % m->window];
}

static bool map_moved(const taskq_client_t *c, const void *arg)
{
    return c->map_resolved != *(const size_t *)arg;
}

static bool batches_out(const taskq_client_t *c, const void *arg)
{
    return !c->sent_head || c->conn != TASKQ__CONN_READY;
}

/*
 * Cancel the tasks still in flight and free their futures.  Tasks whose
 * SUBMIT is not accepted yet are cancelled as their ACCEPTED arrives, so
 * wait (a heartbeat interval at most) for those answers.
 */
static void map_cancel(map_t *m)
{
    taskq_client_t *c = m->c;
    size_t n = 0;
    bool room = taskq__ids_reserve(c, m->tail - m->head) == 0;
    for (size_t i = m->head; i < m->tail; i++) {
        taskq_future_t **f = map_slot(m, i);
        if ((*f)->state == TASKQ_STATE_PENDING) {
            (*f)->cancel = true;
            if ((*f)->job_id && room)
                c->ids[n++] = (*f)->job_id;
        }
        taskq_future_destroy(f);
    }
    taskq__send_jobs(c, TASKQ_MSG_CANCEL, c->ids, n);
    taskq__pump(c, (int32_t)c->heartbeat_ms, batches_out, NULL);
}

int taskq_map(taskq_client_t *c, const char *function, size_t n, taskq_map_input_fn input,
              taskq_map_output_fn output, void *ud, const taskq_map_opts_t *opts)
{
    static const taskq_map_opts_t none;
    taskq__spec_t spec;
    if (!opts)
        opts = &none;
    if (!c || !input || !output || taskq__spec_init(&spec, function, &opts->task) != 0)
        return TASKQ_EINVAL;
    if (n == 0)
        return 0;
    map_t m = {.c = c, .window = opts->window ? opts->window : WINDOW_DEFAULT};
    if (m.window > n)
        m.window = n;
    m.ring = calloc(m.window, sizeof *m.ring);
    if (!m.ring)
        return TASKQ_ENOMEM;
    int64_t deadline = opts->timeout_ms > 0 ? taskq__now_ms() + opts->timeout_ms : -1;
    size_t base = c->map_resolved, reported = 0;
    int first = 0, rc = 0;

    while (m.head < n) {
        while (m.tail < n && m.tail - m.head < m.window) {
            const void *arg;
            size_t len;
            if (input(m.tail, &arg, &len, ud) != 0) {
                rc = TASKQ_ESTOPPED;
                goto stop;
            }
            rc = taskq__submit(c, &spec, arg, len, true, map_slot(&m, m.tail));
            if (rc)
                goto stop;
            m.tail++;
        }
        size_t done = c->map_resolved - base;
        if (opts->progress && done != reported) {
            reported = done;
            opts->progress(done, n, ud);
        }
        while (m.head < m.tail && (*map_slot(&m, m.head))->state != TASKQ_STATE_PENDING) {
            taskq_future_t **f = map_slot(&m, m.head);
            int code = (*f)->code;
            int stop = output(m.head, code, (*f)->data, (*f)->len, ud);
            taskq_future_destroy(f);
            m.head++;
            if (code && !first)
                first = code;
            if (stop) {
                rc = TASKQ_ESTOPPED;
                goto stop;
            }
            /* Without a broker, with one that speaks another protocol or
             * that refuses this client, the rest would fail the same way
             * after as long a wait. */
            if (code == TASKQ_ECLOSED || code == TASKQ_EPROTO || code == TASKQ_EDENIED) {
                rc = code;
                goto stop;
            }
        }
        if (m.head == m.tail)
            continue;
        size_t seen = c->map_resolved;
        rc = taskq__pump(c, taskq__remaining(deadline), map_moved, &seen);
        if (rc)
            goto stop;
    }
    free(m.ring);
    return first;
stop:
    map_cancel(&m);
    free(m.ring);
    return rc;
}
