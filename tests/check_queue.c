/*
 * check_queue.c - unit tests of the broker's scheduler (daemon/queue.c)
 * and the pure modules it stands on: worker records (credit, held
 * attempts), the timer heap and the hash table.  No sockets, no clock:
 * the tests pass the time in.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "queue.h"
#include "timers.h"
#include "workers.h"

/* ---- Fixture: a queue, its worker table, and what the callbacks saw ---- */

#define MAX_SEEN 4096

typedef struct seen {
    uint64_t job;    /* job id */
    uint8_t status;  /* finished: its status */
    tqd_worker_t *w; /* assigned: the worker */
} seen_t;

static tqd_workers_t ws;
static tqd_queue_t q;
static seen_t finished[MAX_SEEN];
static size_t n_finished;
static seen_t assigned[MAX_SEEN];
static size_t n_assigned;
static char last_text[256];

static void on_finished(void *ctx, tqd_job_t *job)
{
    (void)ctx;
    ck_assert_uint_lt(n_finished, MAX_SEEN);
    finished[n_finished++] = (seen_t){job->id, job->status, NULL};
    taskq_span_t text;
    if (job->status != TASKQ_STATUS_DONE && taskq_span_str(tqd_job_payload(job), &text) == 0)
        snprintf(last_text, sizeof last_text, "%.*s", (int)text.len, (const char *)text.ptr);
}

static void on_assigned(void *ctx, tqd_worker_t *w, tqd_job_t *job)
{
    (void)ctx;
    if (n_assigned < MAX_SEEN)
        assigned[n_assigned++] = (seen_t){job->id, 0, w};
}

static void setup(void)
{
    tqd_workers_init(&ws);
    tqd_queue_events_t ev = {.finished = on_finished, .assigned = on_assigned, .ctx = NULL};
    tqd_queue_init(&q, &ws, 12345, &ev);
    n_finished = n_assigned = 0;
    last_text[0] = '\0';
}

static void teardown(void)
{
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);
}

/* Split a comma-separated list into spans pointing into s. */
static uint32_t split(const char *s, taskq_span_t *out, uint32_t max)
{
    uint32_t n = 0;
    while (*s && n < max) {
        size_t len = strcspn(s, ",");
        out[n++] = (taskq_span_t){(const uint8_t *)s, len};
        s += len + (s[len] == ',');
    }
    return n;
}

/* A connected worker serving queues x functions (comma-separated). */
static tqd_worker_t *add_worker(const char *name, uint32_t credit, const char *queues,
                                const char *functions)
{
    taskq_span_t qs[16], fs[16];
    uint32_t nq = split(queues, qs, 16), nf = split(functions, fs, 16);
    tqd_worker_t *w;
    ck_assert_int_eq(tqd_worker_new(taskq_span_cstr(name), taskq_span_cstr("host"), 4242, credit,
                                    qs, nq, fs, nf, &w),
                     0);
    ck_assert_int_eq(tqd_workers_add(&ws, w), 0);
    ck_assert_int_eq(tqd_queue_attach(&q, w), 0);
    return w;
}

/* Worker w left: what the broker does. */
static void remove_worker(tqd_worker_t *w, uint64_t now)
{
    tqd_queue_worker_gone(&q, w, false, now);
    tqd_workers_remove(&ws, w);
    tqd_worker_destroy(&w);
}

static tqd_job_t *submit(uint64_t client, const char *queue, const char *function, int32_t priority,
                         uint32_t max_attempts)
{
    static const uint8_t arg[] = {0x2a}; /* msgpack 42 */
    taskq_submit_item_t it = {
        .function = taskq_span_cstr(function),
        .queue = taskq_span_cstr(queue),
        .priority = priority,
        .timeout_ms = 0,
        .max_attempts = max_attempts,
        .arg = {arg, sizeof arg},
    };
    tqd_job_t *job;
    ck_assert_int_eq(tqd_queue_add(&q, client, &it, &job), 0);
    return job;
}

/* What the broker's flush does with a worker's unsent jobs: take them. */
static uint32_t take_unsent(tqd_worker_t *w)
{
    uint32_t n = w->n_unsent;
    w->n_unsent = 0;
    return n;
}

static int done(tqd_worker_t *w, uint64_t job, uint32_t attempt, uint8_t status, uint64_t now)
{
    static const uint8_t ok[] = {0x07};
    static const uint8_t err[] = "\xa4oops";
    taskq_done_item_t d = {job, attempt, status, {ok, sizeof ok}};
    if (status == TASKQ_DONE_ERROR)
        d.payload = (taskq_span_t){err, sizeof err - 1};
    return tqd_queue_done(&q, w, &d, now);
}

/* Run a credit-1 worker to exhaustion of n jobs, recording the order. */
static void run_one_by_one(tqd_worker_t *w, uint64_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tqd_queue_dispatch(&q, 0);
        ck_assert_uint_eq(w->n_unsent, 1);
        tqd_job_t *job = w->unsent[0];
        take_unsent(w);
        order[i] = job->id;
        ck_assert_int_eq(done(w, job->id, job->attempt, TASKQ_DONE_OK, 0), 0);
    }
}

/* ---- Scheduling order ------------------------------------------------- */

START_TEST(priority_first)
{
    tqd_job_t *low = submit(1, "default", "f", -5, 1);
    tqd_job_t *mid = submit(1, "default", "f", 0, 1);
    tqd_job_t *high = submit(1, "default", "f", 900, 1);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    uint64_t order[3];
    uint64_t ids[3] = {high->id, mid->id, low->id};
    run_one_by_one(w, order, 3);
    ck_assert_mem_eq(order, ids, sizeof ids);
    ck_assert_uint_eq(q.done, 3);
    ck_assert_uint_eq(q.queued, 0);
}
END_TEST

START_TEST(fifo_within_client)
{
    uint64_t ids[50], order[50];
    for (int i = 0; i < 50; i++)
        ids[i] = submit(7, "default", "f", 0, 1)->id;
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    run_one_by_one(w, order, 50);
    ck_assert_mem_eq(order, ids, sizeof ids);
}
END_TEST

START_TEST(round_robin_between_clients)
{
    /* Client 1 queues 100000 tasks first; client 2 then queues 10.  Taking
     * turns, client 2's tasks all run within the first 20 dispatches. */
    for (int i = 0; i < 100000; i++)
        submit(1, "default", "f", 0, 1);
    uint64_t small_first = 0;
    for (int i = 0; i < 10; i++) {
        tqd_job_t *j = submit(2, "default", "f", 0, 1);
        if (i == 0)
            small_first = j->id;
    }
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    uint64_t order[20];
    run_one_by_one(w, order, 20);
    int small = 0;
    for (int i = 0; i < 20; i++) {
        if (order[i] >= small_first)
            small++;
        /* Strict alternation: even turns client 1, odd turns client 2. */
        ck_assert_int_eq(order[i] >= small_first, i % 2 == 1);
    }
    ck_assert_int_eq(small, 10);
    ck_assert_uint_eq(q.queued, 100000 - 10);
}
END_TEST

START_TEST(priority_beats_round_robin)
{
    for (int i = 0; i < 5; i++)
        submit(1, "default", "f", 0, 1);
    tqd_job_t *urgent = submit(2, "default", "f", 10, 1);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    uint64_t order[1];
    run_one_by_one(w, order, 1);
    ck_assert_uint_eq(order[0], urgent->id);
}
END_TEST

/* ---- Lanes -------------------------------------------------------------- */

START_TEST(lane_matching)
{
    tqd_job_t *a = submit(1, "q1", "f1", 0, 1);
    tqd_job_t *b = submit(1, "q1", "f2", 0, 1); /* function nobody has yet */
    tqd_job_t *c = submit(1, "q2", "f1", 0, 1); /* queue w1 does not serve */
    tqd_worker_t *w1 = add_worker("w1", 10, "q1", "f1,f3");
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w1->n_unsent, 1);
    ck_assert_ptr_eq(w1->unsent[0], a);
    ck_assert_int_eq(b->state, TQD_JOB_QUEUED);
    ck_assert_int_eq(c->state, TQD_JOB_QUEUED);
    take_unsent(w1);

    /* A later worker with f2 on q1 and q2 takes only what it serves. */
    tqd_worker_t *w2 = add_worker("w2", 10, "q1,q2", "f2");
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w1->n_unsent, 0);
    ck_assert_uint_eq(w2->n_unsent, 1);
    ck_assert_ptr_eq(w2->unsent[0], b);
    ck_assert_int_eq(c->state, TQD_JOB_QUEUED);
    take_unsent(w2);

    /* New tasks in a lane made after both workers joined reach the right one. */
    tqd_job_t *d = submit(1, "q2", "f2", 0, 1);
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w1->n_unsent, 0);
    ck_assert_uint_eq(w2->n_unsent, 1);
    ck_assert_ptr_eq(w2->unsent[0], d);
    ck_assert_int_eq(c->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(q.queued, 1);
}
END_TEST

START_TEST(lane_ties_rotate)
{
    for (int i = 0; i < 4; i++) {
        submit(1, "default", "f", 0, 1);
        submit(1, "default", "g", 0, 1);
    }
    tqd_worker_t *w = add_worker("w", 1, "default", "f,g");
    uint64_t order[8];
    run_one_by_one(w, order, 8);
    /* Jobs of f have odd ids, of g even ones: the lanes alternate. */
    for (int i = 1; i < 8; i++)
        ck_assert_int_ne(order[i] % 2, order[i - 1] % 2);
}
END_TEST

START_TEST(sweep_frees_idle_lanes)
{
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    ck_assert_uint_eq(q.n_lanes, 1);
    ck_assert_uint_eq(w->n_lanes, 1);
    tqd_queue_sweep(&q);
    tqd_queue_sweep(&q);
    ck_assert_uint_eq(q.n_lanes, 1); /* in use */
    tqd_queue_dispatch(&q, 0);
    take_unsent(w);
    ck_assert_int_eq(done(w, j->id, 1, TASKQ_DONE_OK, 0), 0);
    tqd_queue_sweep(&q);
    ck_assert_uint_eq(q.n_lanes, 1); /* idle once: kept */
    tqd_queue_sweep(&q);
    ck_assert_uint_eq(q.n_lanes, 0);
    ck_assert_uint_eq(w->n_lanes, 0);
    ck_assert_uint_eq(q.n_queues, 1); /* its counters stay */
    ck_assert_uint_eq(q.queues[0]->done, 1);
    /* The lane comes back when needed. */
    submit(1, "default", "f", 0, 1);
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w->n_unsent, 1);
}
END_TEST

/* ---- Credit -------------------------------------------------------------- */

START_TEST(credit_never_exceeded)
{
    tqd_job_t *jobs[10];
    for (int i = 0; i < 10; i++)
        jobs[i] = submit(1, "default", "f", 0, 1);
    tqd_worker_t *w = add_worker("w", 3, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w->used, 3);
    ck_assert_uint_eq(take_unsent(w), 3);
    q.dispatch_needed = true;
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w->used, 3);
    ck_assert_uint_eq(w->n_unsent, 0);
    ck_assert_uint_eq(q.running, 3);
    ck_assert_uint_eq(q.queued, 7);

    ck_assert_int_eq(done(w, jobs[1]->id, 1, TASKQ_DONE_OK, 0), 0);
    ck_assert_uint_eq(w->used, 2);
    ck_assert(!tqd_worker_holds(w, jobs[1]->id, 1));
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w->used, 3);
    ck_assert_uint_eq(w->n_unsent, 1);
    ck_assert_ptr_eq(w->unsent[0], jobs[3]);
    ck_assert_uint_eq(w->done, 1);
}
END_TEST

START_TEST(small_batch_spreads)
{
    tqd_worker_t *w[3];
    for (int i = 0; i < 3; i++)
        w[i] = add_worker("w", 10, "default", "f");
    for (int i = 0; i < 3; i++)
        submit(1, "default", "f", 0, 1);
    tqd_queue_dispatch(&q, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(w[i]->n_unsent, 1);
    /* More work than one round: the rest fills credit round by round. */
    for (int i = 0; i < 30; i++)
        submit(1, "default", "f", 0, 1);
    tqd_queue_dispatch(&q, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(w[i]->used, 10);
    ck_assert_uint_eq(q.queued, 3);
}
END_TEST

START_TEST(done_not_held_is_refused)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    tqd_worker_t *w = add_worker("w", 2, "default", "f");
    tqd_worker_t *liar = add_worker("liar", 2, "default", "g");
    tqd_queue_dispatch(&q, 0);
    ck_assert_int_eq(done(liar, j->id, 1, TASKQ_DONE_OK, 0), -ENOENT);
    ck_assert_int_eq(done(w, j->id, 2, TASKQ_DONE_OK, 0), -ENOENT);
    ck_assert_int_eq(done(w, 999, 1, TASKQ_DONE_OK, 0), -ENOENT);
    ck_assert_int_eq(j->state, TQD_JOB_RUNNING);
    ck_assert_uint_eq(w->used, 1);
    ck_assert_uint_eq(n_finished, 0);
}
END_TEST

START_TEST(error_fails_without_retry)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 5);
    tqd_worker_t *w = add_worker("w", 2, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_int_eq(done(w, j->id, 1, TASKQ_DONE_ERROR, 0), 0);
    ck_assert_uint_eq(n_finished, 1);
    ck_assert_uint_eq(finished[0].status, TASKQ_STATUS_FAILED);
    ck_assert_str_eq(last_text, "oops");
    ck_assert_uint_eq(q.failed, 1);
    ck_assert_uint_eq(q.retried, 0);
}
END_TEST

/* ---- Retries, fencing, loss ----------------------------------------------- */

START_TEST(requeue_goes_to_front)
{
    tqd_job_t *first = submit(1, "default", "f", 0, 3);
    tqd_job_t *second = submit(1, "default", "f", 0, 3);
    tqd_worker_t *w1 = add_worker("w1", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w1->unsent[0], first);
    remove_worker(w1, 10);
    ck_assert_int_eq(first->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(q.retried, 1);
    ck_assert_uint_eq(q.queues[0]->retried, 1);
    ck_assert_uint_eq(q.running, 0);
    ck_assert_uint_eq(q.queued, 2);

    tqd_worker_t *w2 = add_worker("w2", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w2->unsent[0], first); /* ahead of second */
    ck_assert_uint_eq(first->attempt, 2);
    ck_assert_int_eq(second->state, TQD_JOB_QUEUED);
}
END_TEST

START_TEST(requeue_takes_turn_first)
{
    /* A retried job whose client has nothing else queued at its priority
     * is served next, ahead of other clients' turns. */
    tqd_job_t *a = submit(1, "default", "f", 0, 3);
    for (int i = 0; i < 3; i++)
        submit(2, "default", "f", 0, 3);
    tqd_worker_t *w1 = add_worker("w1", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w1->unsent[0], a);
    remove_worker(w1, 0);
    tqd_worker_t *w2 = add_worker("w2", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w2->unsent[0], a);
}
END_TEST

START_TEST(stale_outcome_dropped)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 3);
    tqd_worker_t *w1 = add_worker("w1", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    take_unsent(w1);
    /* The run limit expires: the broker abandons attempt 1 and retries. */
    tqd_queue_supersede(&q, j, TASKQ_STATUS_TIMEDOUT, "late", 5);
    ck_assert_int_eq(j->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(w1->used, 1); /* keeps the credit until its DONE */
    tqd_worker_t *w2 = add_worker("w2", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w2->unsent[0], j);
    ck_assert_uint_eq(j->attempt, 2);

    ck_assert_int_eq(done(w1, j->id, 1, TASKQ_DONE_OK, 6), 1); /* stale */
    ck_assert_uint_eq(w1->used, 0);
    ck_assert_int_eq(j->state, TQD_JOB_RUNNING);
    ck_assert_uint_eq(n_finished, 0);
    ck_assert_int_eq(done(w2, j->id, 2, TASKQ_DONE_OK, 7), 0);
    ck_assert_int_eq(j->state, TQD_JOB_FINISHED);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_DONE);
    ck_assert_uint_eq(j->finished_ms, 7);
    ck_assert_uint_eq(n_finished, 1);
}
END_TEST

START_TEST(returned_keeps_its_attempt)
{
    /* A single-attempt job handed back unstarted is not lost: it goes to
     * the front, and its next delivery carries the same attempt number. */
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    tqd_job_t *other = submit(1, "default", "f", 0, 1);
    tqd_worker_t *w1 = add_worker("w1", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    take_unsent(w1);
    ck_assert_uint_eq(j->deliveries, 1);
    ck_assert_int_eq(done(w1, j->id, 1, TASKQ_DONE_RETURNED, 3), 0);
    ck_assert_int_eq(j->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(w1->used, 0);
    ck_assert_uint_eq(w1->credit, 0); /* gave up its slot: gets nothing more */
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w1->n_unsent, 0);
    ck_assert_uint_eq(q.retried, 0);
    ck_assert_uint_eq(q.running, 0);
    ck_assert_uint_eq(n_finished, 0);
    /* A second report of the same attempt is a lie now: w1 gave it back. */
    ck_assert_int_eq(done(w1, j->id, 1, TASKQ_DONE_OK, 4), -ENOENT);

    tqd_worker_t *w2 = add_worker("w2", 1, "default", "f");
    remove_worker(w1, 5);
    tqd_queue_dispatch(&q, 0);
    ck_assert_ptr_eq(w2->unsent[0], j); /* ahead of other */
    ck_assert_uint_eq(j->attempt, 1);
    ck_assert_uint_eq(j->deliveries, 2); /* a new run-limit timer generation */
    ck_assert_int_eq(other->state, TQD_JOB_QUEUED);
    ck_assert_int_eq(done(w2, j->id, 1, TASKQ_DONE_OK, 6), 0);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_DONE);
}
END_TEST

START_TEST(bye_gives_back_held_attempts)
{
    /* A worker that says BYE has reported all it started: what it still
     * holds goes back without using up an attempt. */
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    tqd_worker_t *w1 = add_worker("w1", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    take_unsent(w1);
    tqd_queue_worker_gone(&q, w1, true, 5);
    tqd_workers_remove(&ws, w1);
    tqd_worker_destroy(&w1);
    ck_assert_int_eq(j->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(j->attempt, 0);
    ck_assert_uint_eq(q.retried, 0);
    ck_assert_uint_eq(n_finished, 0);
}
END_TEST

START_TEST(retry_until_failed)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 2);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    static const uint8_t why[] = "\xa5" "crash";
    for (uint32_t attempt = 1; attempt <= 2; attempt++) {
        tqd_queue_dispatch(&q, 0);
        ck_assert_uint_eq(take_unsent(w), 1);
        taskq_done_item_t d = {j->id, attempt, TASKQ_DONE_RETRY, {why, sizeof why - 1}};
        ck_assert_int_eq(tqd_queue_done(&q, w, &d, attempt), 0);
    }
    ck_assert_uint_eq(q.retried, 1);
    ck_assert_uint_eq(n_finished, 1);
    ck_assert_uint_eq(finished[0].status, TASKQ_STATUS_FAILED);
    ck_assert_str_eq(last_text, "crash");
    ck_assert_uint_eq(w->used, 0);
}
END_TEST

START_TEST(lost_after_max_attempts)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 2);
    for (int i = 0; i < 2; i++) {
        tqd_worker_t *w = add_worker(i ? "second" : "first", 1, "default", "f");
        tqd_queue_dispatch(&q, 0);
        ck_assert_ptr_eq(w->unsent[0], j);
        remove_worker(w, 100);
    }
    ck_assert_int_eq(j->state, TQD_JOB_FINISHED);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_LOST);
    ck_assert_uint_eq(j->attempt, 2);
    ck_assert_uint_eq(q.lost, 1);
    ck_assert_uint_eq(q.retried, 1);
    ck_assert_uint_eq(q.running, 0);
    ck_assert_ptr_nonnull(strstr(last_text, "second"));
    ck_assert_ptr_nonnull(strstr(last_text, "host"));
    ck_assert_ptr_nonnull(strstr(last_text, "4242"));
    ck_assert_uint_eq(n_finished, 1);
    ck_assert_uint_eq(finished[0].status, TASKQ_STATUS_LOST);
}
END_TEST

START_TEST(timedout_on_last_attempt)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    tqd_queue_supersede(&q, j, TASKQ_STATUS_TIMEDOUT, "run limit expired", 9);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_TIMEDOUT);
    ck_assert_str_eq(last_text, "run limit expired");
    ck_assert_uint_eq(q.timedout, 1);
    ck_assert_uint_eq(w->used, 1);
    ck_assert_int_eq(done(w, j->id, 1, TASKQ_DONE_OK, 10), 1);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_TIMEDOUT);
}
END_TEST

/* ---- Cancel, watch, drop, forget --------------------------------------- */

START_TEST(cancel_queued)
{
    tqd_job_t *a = submit(1, "default", "f", 0, 1);
    tqd_job_t *b = submit(1, "default", "f", 0, 1);
    tqd_job_t *c = submit(1, "default", "f", 0, 1);
    tqd_queue_cancel(&q, b, 3);
    ck_assert_int_eq(b->state, TQD_JOB_FINISHED);
    ck_assert_uint_eq(b->status, TASKQ_STATUS_CANCELLED);
    ck_assert_uint_eq(q.queued, 2);
    ck_assert_uint_eq(q.cancelled, 1);
    ck_assert_uint_eq(q.retained, 1);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    uint64_t order[2], ids[2] = {a->id, c->id};
    run_one_by_one(w, order, 2);
    ck_assert_mem_eq(order, ids, sizeof ids);
    /* Cancel the only job of a flow, level and lane: the lane empties. */
    tqd_job_t *d = submit(3, "default", "f", 77, 1);
    tqd_queue_cancel(&q, d, 4);
    ck_assert_ptr_null(q.lanes[0]->levels);
}
END_TEST

START_TEST(cancel_running)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 3);
    tqd_worker_t *w = add_worker("w", 1, "default", "f");
    tqd_queue_dispatch(&q, 0);
    tqd_queue_cancel(&q, j, 3);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_CANCELLED);
    ck_assert_ptr_null(j->worker);
    ck_assert_uint_eq(q.running, 0);
    /* The worker holds the attempt until its DONE, which is stale. */
    ck_assert_uint_eq(w->used, 1);
    submit(1, "default", "f", 0, 1);
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(take_unsent(w), 1); /* the first, not the next one */
    ck_assert_int_eq(done(w, j->id, 1, TASKQ_DONE_OK, 4), 1);
    ck_assert_uint_eq(j->status, TASKQ_STATUS_CANCELLED);
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(take_unsent(w), 1);
}
END_TEST

START_TEST(watch_and_forget)
{
    tqd_job_t *j = submit(1, "default", "f", 0, 1);
    ck_assert_int_eq(tqd_queue_watch(&q, j, 1), 0); /* the submitter: no entry */
    ck_assert_uint_eq(j->n_watchers, 0);
    ck_assert_int_eq(tqd_queue_watch(&q, j, 2), 0);
    ck_assert_int_eq(tqd_queue_watch(&q, j, 2), 0);
    ck_assert_uint_eq(j->n_watchers, 1);
    for (uint64_t c = 3; c < 3 + TQD_MAX_WATCHERS - 1; c++)
        ck_assert_int_eq(tqd_queue_watch(&q, j, c), 0);
    ck_assert_int_eq(tqd_queue_watch(&q, j, 999), -ENOSPC);
    tqd_queue_cancel(&q, j, 1);
    ck_assert_uint_eq(j->n_watchers, 0);
    ck_assert_ptr_eq(q.oldest, j);
    uint64_t id = j->id;
    tqd_queue_forget(&q, j);
    ck_assert_ptr_null(tqd_queue_find(&q, id));
    ck_assert_ptr_null(q.oldest);
    ck_assert_uint_eq(q.retained, 0);
}
END_TEST

START_TEST(drop_reuses_ids)
{
    tqd_job_t *a = submit(1, "default", "f", 0, 1);
    tqd_job_t *b = submit(1, "default", "f", 0, 1);
    uint64_t bid = b->id;
    tqd_queue_drop(&q, b);
    ck_assert_ptr_null(tqd_queue_find(&q, bid));
    ck_assert_uint_eq(q.queued, 1);
    ck_assert_uint_eq(submit(1, "default", "f", 0, 1)->id, bid);
    ck_assert_uint_eq(a->id, 1);
    ck_assert_uint_eq(n_finished, 0);
}
END_TEST

START_TEST(retained_in_finishing_order)
{
    tqd_job_t *j[3];
    for (int i = 0; i < 3; i++)
        j[i] = submit(1, "default", "f", 0, 1);
    tqd_queue_cancel(&q, j[2], 1);
    tqd_queue_cancel(&q, j[0], 2);
    tqd_queue_cancel(&q, j[1], 3);
    ck_assert_ptr_eq(q.oldest, j[2]);
    tqd_queue_forget(&q, j[0]); /* from the middle */
    ck_assert_ptr_eq(q.oldest, j[2]);
    ck_assert_ptr_eq(q.oldest->next, j[1]);
    ck_assert_ptr_eq(q.newest, j[1]);
}
END_TEST

/* ---- Worker records ---------------------------------------------------- */

START_TEST(worker_held_set)
{
    tqd_worker_t *w = add_worker("w", 1000, "default", "f");
    /* Many held attempts (the set grows), then release every other one. */
    for (uint32_t i = 1; i <= 1000; i++) {
        ck_assert_int_eq(tqd_worker_reserve(w), 0);
        tqd_worker_hold(w, i, i % 7 + 1, NULL);
    }
    ck_assert_int_eq(tqd_worker_reserve(w), -ENOSPC);
    for (uint32_t i = 1; i <= 1000; i += 2)
        ck_assert(tqd_worker_release(w, i, i % 7 + 1));
    ck_assert(!tqd_worker_release(w, 1, 1 % 7 + 1));
    for (uint32_t i = 1; i <= 1000; i++)
        ck_assert(tqd_worker_holds(w, i, i % 7 + 1) == (i % 2 == 0));
    ck_assert(!tqd_worker_holds(w, 2, 1));
    ck_assert_uint_eq(w->used, 500);
    size_t pos = 0, n = 0;
    tqd_held_t h;
    while (tqd_worker_held_next(w, &pos, &h))
        n++;
    ck_assert_uint_eq(n, 500);
}
END_TEST

START_TEST(worker_serves)
{
    tqd_worker_t *w = add_worker("w", 1, "b,a,c", "zz,x");
    ck_assert(tqd_worker_serves(w, taskq_span_cstr("a"), taskq_span_cstr("x")));
    ck_assert(tqd_worker_serves(w, taskq_span_cstr("c"), taskq_span_cstr("zz")));
    ck_assert(!tqd_worker_serves(w, taskq_span_cstr("d"), taskq_span_cstr("x")));
    ck_assert(!tqd_worker_serves(w, taskq_span_cstr("a"), taskq_span_cstr("z")));
    ck_assert(!tqd_worker_serves(w, taskq_span_cstr("ab"), taskq_span_cstr("x")));
}
END_TEST

/* ---- Timer heap -------------------------------------------------------- */

START_TEST(timers_order)
{
    tqd_timers_t h;
    tqd_timers_init(&h);
    uint64_t when;
    ck_assert(!tqd_timers_next(&h, &when));
    srand(7);
    for (uint32_t i = 0; i < 1000; i++)
        ck_assert_int_eq(tqd_timers_add(&h, (uint64_t)(rand() % 5000), 1, i, 0), 0);
    ck_assert(tqd_timers_next(&h, &when));
    tqd_timer_t t;
    if (when > 0)
        ck_assert(!tqd_timers_pop(&h, when - 1, &t));
    uint64_t last = 0;
    size_t n = 0;
    while (tqd_timers_pop(&h, 2500, &t)) {
        ck_assert_uint_ge(t.when, last);
        ck_assert_uint_le(t.when, 2500);
        last = t.when;
        n++;
    }
    ck_assert(tqd_timers_next(&h, &when));
    ck_assert_uint_gt(when, 2500);
    while (tqd_timers_pop(&h, UINT64_MAX, &t)) {
        ck_assert_uint_ge(t.when, last);
        last = t.when;
        n++;
    }
    ck_assert_uint_eq(n, 1000);
    tqd_timers_fini(&h);
}
END_TEST

/* Live: entries whose gen matches current[id] (lazy invalidation). */
static uint32_t current[100];

static bool gen_live(void *ctx, const tqd_timer_t *t)
{
    (void)ctx;
    return t->gen == current[t->id];
}

START_TEST(timers_invalidation)
{
    tqd_timers_t h;
    tqd_timers_init(&h);
    /* Each id re-armed three times: only the last generation counts. */
    for (uint32_t gen = 1; gen <= 3; gen++)
        for (uint64_t id = 0; id < 100; id++) {
            ck_assert_int_eq(tqd_timers_add(&h, 1000 - id * 3 + gen, 2, id, gen), 0);
            current[id] = gen;
        }
    ck_assert_uint_eq(h.len, 300);
    tqd_timers_compact(&h, gen_live, NULL);
    ck_assert_uint_eq(h.len, 100);
    tqd_timer_t t;
    uint64_t last = 0;
    size_t n = 0;
    while (tqd_timers_pop(&h, UINT64_MAX, &t)) {
        ck_assert_uint_eq(t.gen, 3);
        ck_assert_uint_ge(t.when, last);
        last = t.when;
        n++;
    }
    ck_assert_uint_eq(n, 100);
    tqd_timers_fini(&h);
}
END_TEST

/* ---- Hash table ---------------------------------------------------------- */

static bool u64_eq(const void *item, const void *key)
{
    return *(const uint64_t *)item == *(const uint64_t *)key;
}

START_TEST(htab_collisions)
{
    enum { N = 2000 };
    static uint64_t items[N];
    tqd_htab_t t;
    tqd_htab_init(&t);
    /* Only 8 distinct hashes: long runs, wrap-around and backward shifts. */
    for (uint64_t i = 0; i < N; i++) {
        items[i] = i;
        ck_assert_int_eq(tqd_htab_insert(&t, (i % 8) * 0x1111111111111111u, &items[i]), 0);
    }
    for (uint64_t i = 0; i < N; i += 3)
        tqd_htab_remove(&t, (i % 8) * 0x1111111111111111u, &items[i]);
    for (uint64_t i = 0; i < N; i++) {
        void *found = tqd_htab_find(&t, (i % 8) * 0x1111111111111111u, u64_eq, &items[i]);
        if (i % 3 == 0)
            ck_assert_ptr_null(found);
        else
            ck_assert_ptr_eq(found, &items[i]);
    }
    size_t pos = 0, n = 0;
    while (tqd_htab_next(&t, &pos))
        n++;
    ck_assert_uint_eq(n, t.count);
    ck_assert_uint_eq(t.count, N - (N + 2) / 3);
    tqd_htab_fini(&t);
}
END_TEST


/* ---- History, retry, the SUBMIT index, restore ---------------------------- */

static const char *span_text(taskq_span_t s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s", (int)s.len, (const char *)s.ptr);
    return buf;
}

START_TEST(history_of_failed_attempts)
{
    q.wall_offset = 1000000;
    tqd_worker_t *w = add_worker("w1", 1, "default", "f");
    tqd_job_t *job = submit(1, "default", "f", 0, 3);
    uint64_t id = job->id;
    tqd_queue_dispatch(&q, 10);
    take_unsent(w);
    ck_assert_ptr_null(job->history);
    remove_worker(w, 25); /* attempt 1 lost with its worker */
    ck_assert_ptr_nonnull(job->history);
    w = add_worker("w2", 1, "default", "f");
    tqd_queue_dispatch(&q, 30);
    take_unsent(w);
    ck_assert_int_eq(done(w, id, 2, TASKQ_DONE_ERROR, 40), 0);
    ck_assert_uint_eq(n_finished, 1);
    ck_assert_uint_eq(finished[0].status, TASKQ_STATUS_FAILED);
    const tqd_history_t *h = job->history;
    char buf[256];
    ck_assert_uint_eq(h->n, 2);
    ck_assert_str_eq(span_text(h->queue, buf, sizeof buf), "default");
    ck_assert_str_eq(span_text(h->function, buf, sizeof buf), "f");
    ck_assert_uint_eq(h->v[0]->attempt, 1);
    ck_assert_str_eq(span_text(h->v[0]->worker, buf, sizeof buf), "w1");
    ck_assert_str_eq(span_text(h->v[0]->host, buf, sizeof buf), "host");
    ck_assert_uint_eq(h->v[0]->pid, 4242);
    ck_assert_uint_eq(h->v[0]->started_ms, 1000010);
    ck_assert_uint_eq(h->v[0]->ended_ms, 1000025);
    ck_assert_ptr_nonnull(strstr(span_text(h->v[0]->cause, buf, sizeof buf), "went away"));
    ck_assert_uint_eq(h->v[1]->attempt, 2);
    ck_assert_str_eq(span_text(h->v[1]->worker, buf, sizeof buf), "w2");
    ck_assert_str_eq(span_text(h->v[1]->cause, buf, sizeof buf), "oops");
}
END_TEST

START_TEST(retry_failed_job)
{
    tqd_worker_t *w = add_worker("w1", 1, "default", "f");
    tqd_job_t *job = submit(1, "default", "f", 0, 1);
    uint64_t id = job->id;
    tqd_queue_dispatch(&q, 0);
    take_unsent(w);
    ck_assert_int_eq(tqd_queue_retry(&q, job, 2), -ENOENT); /* running: not failed */
    ck_assert_int_eq(done(w, id, 1, TASKQ_DONE_ERROR, 5), 0);
    ck_assert_uint_eq(q.retained, 1);
    /* Its lane may be swept while it is retained: retry makes it again. */
    tqd_queue_sweep(&q);
    tqd_queue_sweep(&q);
    ck_assert_int_eq(tqd_queue_retry(&q, job, 2), 0);
    ck_assert_uint_eq(q.retained, 0);
    ck_assert_uint_eq(q.queued, 1);
    ck_assert_uint_eq(job->client_id, 2);
    ck_assert_uint_eq(job->attempt, 0);
    tqd_queue_dispatch(&q, 10);
    ck_assert_uint_eq(take_unsent(w), 1);
    ck_assert_uint_eq(job->attempt, 1);
    ck_assert_int_eq(done(w, id, 1, TASKQ_DONE_OK, 20), 0);
    ck_assert_uint_eq(finished[n_finished - 1].status, TASKQ_STATUS_DONE);
    ck_assert_uint_eq(job->history->n, 1); /* kept across the retry */
    ck_assert_int_eq(tqd_queue_retry(&q, job, 2), -ENOENT); /* succeeded: not failed */
}
END_TEST

START_TEST(submit_index)
{
    tqd_job_t *a = submit(7, "default", "f", 0, 1);
    submit(7, "default", "f", 0, 1);
    ck_assert_int_eq(tqd_queue_mark_submit(&q, a, 99, 2), 0);
    ck_assert_ptr_eq(tqd_queue_find_submit(&q, 7, 99), a);
    ck_assert_ptr_null(tqd_queue_find_submit(&q, 8, 99));
    ck_assert_ptr_null(tqd_queue_find_submit(&q, 7, 98));
    tqd_queue_drop(&q, tqd_queue_find(&q, a->id + 1));
    tqd_queue_drop(&q, a);
    ck_assert_ptr_null(tqd_queue_find_submit(&q, 7, 99));
}
END_TEST

START_TEST(restore_records)
{
    static const uint8_t arg[] = {0x2a}, res[] = {0x07};
    tqd_job_rec_t r = {
        .id = 10,
        .client_id = 3,
        .req_id = 5,
        .batch = 2,
        .task = {.function = taskq_span_cstr("f"), .queue = taskq_span_cstr("default"),
                 .max_attempts = 2, .arg = {arg, sizeof arg}},
        .state = TQD_JOB_QUEUED,
    };
    tqd_job_t *job;
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), 0);
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), -EEXIST);
    ck_assert_ptr_eq(tqd_queue_find_submit(&q, 3, 5), job);
    /* Running on its last attempt when the broker stopped: LOST. */
    r.id = 11;
    r.batch = 0;
    r.state = TQD_JOB_RUNNING;
    r.attempt = 2;
    r.running = (tqd_attempt_rec_t){.started_ms = 50, .pid = 9, .worker = taskq_span_cstr("w")};
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), 0);
    ck_assert_uint_eq(job->state, TQD_JOB_FINISHED);
    ck_assert_uint_eq(job->status, TASKQ_STATUS_LOST);
    ck_assert_uint_eq(job->history->n, 1);
    ck_assert_uint_eq(job->history->v[0]->pid, 9);
    /* Running with an attempt left: queued again, attempt counted. */
    r.id = 12;
    r.attempt = 1;
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), 0);
    ck_assert_uint_eq(job->state, TQD_JOB_QUEUED);
    ck_assert_uint_eq(job->attempt, 1);
    ck_assert_uint_eq(q.queued, 2);
    /* Finished: retained with its payload. */
    r.id = 40;
    r.state = TQD_JOB_FINISHED;
    r.status = TASKQ_STATUS_DONE;
    r.result = (taskq_span_t){res, sizeof res};
    r.finished_ms = 90;
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), 0);
    ck_assert_uint_eq(tqd_job_payload(job).len, 1);
    ck_assert_uint_eq(q.next_id, 41);
    /* Out of range: refused, not trusted. */
    r.id = 41;
    r.task.max_attempts = 0;
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), -EINVAL);
    r.task.max_attempts = 2;
    r.state = 9;
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), -EINVAL);
    r.state = TQD_JOB_QUEUED;
    r.task.queue = taskq_span_cstr("");
    ck_assert_int_eq(tqd_queue_restore(&q, &r, 100, &job), -EINVAL);
    /* The queued ones run, oldest first. */
    tqd_worker_t *w = add_worker("w1", 4, "default", "f");
    tqd_queue_dispatch(&q, 200);
    ck_assert_uint_eq(take_unsent(w), 2);
    ck_assert_uint_eq(assigned[0].job, 10);
    ck_assert_uint_eq(assigned[1].job, 12);
}
END_TEST


/* A commit that fails unwinds the turn's SUBMITs, some of them dispatched
 * in that turn but not sent: their credit comes back. */
START_TEST(drop_dispatched_unsent)
{
    tqd_worker_t *w = add_worker("w1", 4, "default", "f");
    tqd_job_t *a = submit(1, "default", "f", 0, 1);
    tqd_job_t *b = submit(1, "default", "f", 0, 1);
    tqd_queue_dispatch(&q, 0);
    ck_assert_uint_eq(w->n_unsent, 2);
    ck_assert_uint_eq(w->used, 2);
    uint64_t ida = a->id, idb = b->id;
    tqd_queue_drop(&q, b);
    tqd_queue_drop(&q, a);
    ck_assert_uint_eq(w->n_unsent, 0);
    ck_assert_uint_eq(w->used, 0);
    ck_assert_uint_eq(q.running, 0);
    ck_assert_uint_eq(q.queued, 0);
    ck_assert_ptr_null(tqd_queue_find(&q, ida));
    ck_assert_ptr_null(tqd_queue_find(&q, idb));
    ck_assert(!tqd_worker_holds(w, ida, 1));
    ck_assert_uint_eq(q.next_id, ida); /* both ids are given out again */
}
END_TEST

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("order");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, priority_first);
    tcase_add_test(tc, fifo_within_client);
    tcase_add_test(tc, round_robin_between_clients);
    tcase_add_test(tc, priority_beats_round_robin);
    suite_add_tcase(s, tc);

    tc = tcase_create("lanes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, lane_matching);
    tcase_add_test(tc, lane_ties_rotate);
    tcase_add_test(tc, sweep_frees_idle_lanes);
    suite_add_tcase(s, tc);

    tc = tcase_create("credit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, credit_never_exceeded);
    tcase_add_test(tc, small_batch_spreads);
    tcase_add_test(tc, done_not_held_is_refused);
    tcase_add_test(tc, error_fails_without_retry);
    suite_add_tcase(s, tc);

    tc = tcase_create("retries");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, requeue_goes_to_front);
    tcase_add_test(tc, requeue_takes_turn_first);
    tcase_add_test(tc, stale_outcome_dropped);
    tcase_add_test(tc, returned_keeps_its_attempt);
    tcase_add_test(tc, bye_gives_back_held_attempts);
    tcase_add_test(tc, retry_until_failed);
    tcase_add_test(tc, lost_after_max_attempts);
    tcase_add_test(tc, timedout_on_last_attempt);
    suite_add_tcase(s, tc);

    tc = tcase_create("outcomes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, cancel_queued);
    tcase_add_test(tc, cancel_running);
    tcase_add_test(tc, watch_and_forget);
    tcase_add_test(tc, drop_reuses_ids);
    tcase_add_test(tc, retained_in_finishing_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("durability");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, history_of_failed_attempts);
    tcase_add_test(tc, retry_failed_job);
    tcase_add_test(tc, submit_index);
    tcase_add_test(tc, restore_records);
    tcase_add_test(tc, drop_dispatched_unsent);
    suite_add_tcase(s, tc);

    tc = tcase_create("workers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, worker_held_set);
    tcase_add_test(tc, worker_serves);
    suite_add_tcase(s, tc);

    tc = tcase_create("containers");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, timers_order);
    tcase_add_test(tc, timers_invalidation);
    tcase_add_test(tc, htab_collisions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
