/*
 * check_store.c - unit tests of the SQLite store (daemon/store_sqlite.c)
 * under the real queue, wired as the broker wires it: recovery after a
 * restart, the database lock, damaged files and rows, failed commits on a
 * full disk and their reconcile, and a throughput figure (printed only).
 */
#define _GNU_SOURCE /* unshare(2) */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "store.h"
#include "workers.h"

#define WALL ((int64_t)1700000000000) /* wall offset of the tests: Unix ms at clock 0 */

/* ---- Fixture: a temporary directory, a queue and its store -------------- */

static char dir[64];
static char db_path[128];
static bool mounted; /* a tmpfs is mounted on dir (in this test's namespace) */
static tqd_workers_t ws;
static tqd_queue_t q;
static tqd_store_t *st;

/* The queue's events, wired to the store as the broker wires them. */
static void on_changed(void *ctx, tqd_job_t *job)
{
    (void)ctx;
    tqd_store_changed(st, job);
}

static void on_finished(void *ctx, tqd_job_t *job)
{
    (void)ctx;
    (void)job;
}

static void on_assigned(void *ctx, tqd_worker_t *w, tqd_job_t *job)
{
    (void)ctx;
    (void)w;
    (void)job;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/check_store.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(db_path, sizeof db_path, "%s/taskq.db", dir);
    mounted = false;
}

static void teardown(void)
{
    if (mounted)
        umount2(dir, MNT_DETACH);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d))) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (e->d_name[0] != '.')
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Open the store at db_path into a fresh queue and recover, as the broker
 * starts: recover, then commit. */
static void start(tqd_sync_t sync, uint64_t now)
{
    char err[512] = "";
    int rc = tqd_store_sqlite_open(db_path, sync, WALL, &st, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %s (%s)", strerror(-rc), err);
    tqd_workers_init(&ws);
    tqd_queue_events_t ev = {
        .finished = on_finished, .assigned = on_assigned, .changed = on_changed};
    tqd_queue_init(&q, &ws, 99, &ev);
    q.wall_offset = WALL;
    ck_assert_int_eq(st->ops->recover(st, &q, now), 0);
    ck_assert_int_eq(st->ops->commit(st), 0);
}

/* Stop without a word to the store: close it, free the queue. */
static void stop(void)
{
    tqd_store_close(&st);
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);
}

static int commit(void)
{
    return st->ops->commit(st);
}

/* The argument of job id: a msgpack bin of len bytes (at least 8) that
 * starts with the id. */
static size_t make_arg(uint8_t *buf, uint64_t id, size_t len)
{
    buf[0] = 0xc5;
    buf[1] = (uint8_t)(len >> 8);
    buf[2] = (uint8_t)len;
    memset(buf + 3, 0x5a, len);
    memcpy(buf + 3, &id, sizeof id);
    return len + 3;
}

/* One SUBMIT of n tasks, as the handler does it: add each, mark the
 * first, then record them.  Returns the first job. */
static tqd_job_t *submit(uint64_t client, uint64_t req_id, uint32_t n, const char *queue,
                         const char *function, int32_t priority, uint32_t timeout_ms,
                         uint32_t max_attempts, size_t arg_len)
{
    static uint8_t arg[8192];
    tqd_job_t *first = NULL;
    for (uint32_t i = 0; i < n; i++) {
        taskq_submit_item_t it = {
            .function = taskq_span_cstr(function),
            .queue = taskq_span_cstr(queue),
            .priority = priority,
            .timeout_ms = timeout_ms,
            .max_attempts = max_attempts,
            .arg = {arg, make_arg(arg, q.next_id, arg_len)},
        };
        tqd_job_t *job;
        ck_assert_int_eq(tqd_queue_add(&q, client, &it, &job), 0);
        if (!first)
            first = job;
    }
    ck_assert_int_eq(tqd_queue_mark_submit(&q, first, req_id, n), 0);
    for (uint64_t id = first->id; id < first->id + n; id++)
        tqd_store_submitted(st, tqd_queue_find(&q, id));
    return first;
}

/* Undo a SUBMIT of n tasks from first_id whose commit failed, as the broker
 * does: newest first, so that their ids are handed out again. */
static void unwind(uint64_t first_id, uint32_t n)
{
    for (uint64_t id = first_id + n; id-- > first_id;)
        tqd_queue_drop(&q, tqd_queue_find(&q, id));
}

static tqd_worker_t *add_worker(const char *name, const char *host, uint32_t pid, uint32_t credit,
                                const char *queue, const char *function)
{
    taskq_span_t qs = taskq_span_cstr(queue), fs = taskq_span_cstr(function);
    tqd_worker_t *w;
    ck_assert_int_eq(tqd_worker_new(taskq_span_cstr(name), taskq_span_cstr(host), pid, credit,
                                    &qs, 1, &fs, 1, &w),
                     0);
    ck_assert_int_eq(tqd_workers_add(&ws, w), 0);
    ck_assert_int_eq(tqd_queue_attach(&q, w), 0);
    return w;
}

/* Dispatch, then take what was assigned as the broker's flush does. */
static void dispatch(uint64_t now)
{
    tqd_queue_dispatch(&q, now);
    for (size_t i = 0; i < ws.len; i++)
        ws.v[i]->n_unsent = 0;
}

/* A short msgpack str (fixstr) of text into buf. */
static taskq_span_t fixstr(uint8_t *buf, const char *text)
{
    size_t len = strlen(text);
    ck_assert_uint_lt(len, 32);
    buf[0] = (uint8_t)(0xa0 | len);
    memcpy(buf + 1, text, len);
    return (taskq_span_t){buf, len + 1};
}

/* Worker w reports status for the current attempt of job. */
static void done(tqd_worker_t *w, tqd_job_t *job, uint8_t status, const char *text, uint64_t now)
{
    uint8_t buf[32];
    taskq_done_item_t d = {job->id, job->attempt, status, fixstr(buf, text)};
    ck_assert_int_eq(tqd_queue_done(&q, w, &d, now), 0);
}

static void forget(tqd_job_t *job)
{
    tqd_store_forgotten(st, job);
    tqd_queue_forget(&q, job);
}

static bool span_is(taskq_span_t s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

static bool span_has(taskq_span_t s, const char *text)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)s.len, (const char *)s.ptr);
    return strstr(buf, text) != NULL;
}

/* The job with id in state, at attempt. */
static tqd_job_t *job_in(uint64_t id, uint8_t state, uint16_t attempt)
{
    tqd_job_t *job = tqd_queue_find(&q, id);
    ck_assert_msg(job != NULL, "job %" PRIu64 " missing", id);
    ck_assert_msg(job->state == state, "job %" PRIu64 " in state %u, not %u", id,
                  (unsigned)job->state, (unsigned)state);
    ck_assert_uint_eq(job->attempt, attempt);
    return job;
}

/* Entry i of job's history. */
static void check_entry(const tqd_job_t *job, uint16_t i, uint32_t attempt, const char *worker,
                        const char *host, uint32_t pid, uint64_t started, uint64_t ended,
                        const char *cause)
{
    ck_assert_ptr_nonnull(job->history);
    ck_assert_uint_gt(job->history->n, i);
    const tqd_attempt_rec_t *a = job->history->v[i];
    ck_assert_uint_eq(a->attempt, attempt);
    ck_assert(span_is(a->worker, worker));
    ck_assert(span_is(a->host, host));
    ck_assert_uint_eq(a->pid, pid);
    ck_assert_uint_eq(a->started_ms, (uint64_t)WALL + started);
    ck_assert_uint_eq(a->ended_ms, (uint64_t)WALL + ended);
    ck_assert_msg(span_has(a->cause, cause), "cause %.*s lacks %s", (int)a->cause.len,
                  (const char *)a->cause.ptr, cause);
}

static void check_arg(const tqd_job_t *job, size_t len)
{
    uint8_t want[64];
    ck_assert_uint_eq(job->arg_len, make_arg(want, job->id, len));
    ck_assert_mem_eq(job->arg, want, job->arg_len);
}

/*
 * With the store closed, the database (read directly) holds exactly the
 * jobs of q with their state, history and next_id, and passes
 * PRAGMA integrity_check.
 */
static void check_db_matches(void)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);

    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT id, client_id, batch, state, attempt, status,"
                                        " result, failures,"
                                        " (SELECT count(*) FROM attempts WHERE job_id = id)"
                                        " FROM jobs ORDER BY id",
                                        -1, &s, NULL),
                     SQLITE_OK);
    size_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(s, 0);
        tqd_job_t *job = tqd_queue_find(&q, id);
        ck_assert_msg(job != NULL, "row %" PRIu64 " is not in the queue", id);
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(s, 1), job->client_id);
        ck_assert_uint_eq((uint64_t)sqlite3_column_int64(s, 2), job->batch);
        ck_assert_int_eq(sqlite3_column_int(s, 3), job->state);
        ck_assert_int_eq(sqlite3_column_int(s, 4), job->attempt);
        if (job->state == TQD_JOB_FINISHED) {
            taskq_span_t p = tqd_job_payload(job);
            ck_assert_int_eq(sqlite3_column_int(s, 5), job->status);
            ck_assert_uint_eq((size_t)sqlite3_column_bytes(s, 6), p.len);
            ck_assert_mem_eq(sqlite3_column_blob(s, 6), p.ptr, p.len);
        }
        int n = job->history ? job->history->n : 0;
        ck_assert_int_eq(sqlite3_column_int(s, 7), n);
        ck_assert_int_eq(sqlite3_column_int(s, 8), n);
        rows++;
    }
    ck_assert_int_eq(rc, SQLITE_DONE);
    sqlite3_finalize(s);
    ck_assert_uint_eq(rows, q.jobs.count);

    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'next_id'", -1, &s, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_uint_eq((uint64_t)sqlite3_column_int64(s, 0), q.next_id);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* Run SQL on the database directly (with the store closed). */
static void sql(const char *text)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", text, msg ? msg : "?");
    sqlite3_close(db);
}

/* ---- Recovery ------------------------------------------------------------ */

START_TEST(restart_recovers_jobs)
{
    start(TQD_SYNC_FULL, 1000);
    uint64_t store_id = st->id;
    ck_assert_uint_ne(store_id, 0);
    ck_assert_uint_eq(submit(7, 100, 5, "default", "f", 0, 0, 3, 8)->id, 1); /* 1..5 */
    ck_assert_uint_eq(submit(8, 200, 2, "other", "g", 5, 1500, 1, 8)->id, 6); /* 6, 7 */
    ck_assert_uint_eq(submit(9, 300, 1, "hq", "h", 0, 0, 2, 8)->id, 8);
    ck_assert_uint_eq(submit(10, 400, 1, "spare", "f", 0, 0, 1, 8)->id, 9);
    ck_assert_int_eq(commit(), 0);

    tqd_worker_t *w1 = add_worker("w1", "hostA", 4242, 2, "default", "f");
    tqd_worker_t *w2 = add_worker("w2", "hostB", 4343, 1, "other", "g");
    tqd_worker_t *w3 = add_worker("w3", "hostC", 4444, 1, "hq", "h");
    (void)w2;
    dispatch(2000); /* w1: 1, 2; w2: 6; w3: 8 */
    done(w1, tqd_queue_find(&q, 1), TASKQ_DONE_OK, "r1", 3000);
    done(w3, tqd_queue_find(&q, 8), TASKQ_DONE_RETRY, "flaky", 3100);
    ck_assert_int_eq(commit(), 0);
    dispatch(3200); /* w1: 3; w3: 8 again */
    done(w3, job_in(8, TQD_JOB_RUNNING, 2), TASKQ_DONE_ERROR, "broken", 3300);
    /* The highest id is forgotten: it must not be handed out again. */
    tqd_job_t *j9 = tqd_queue_find(&q, 9);
    tqd_queue_cancel(&q, j9, 3400);
    forget(j9);
    ck_assert_int_eq(commit(), 0);
    job_in(2, TQD_JOB_RUNNING, 1);
    job_in(3, TQD_JOB_RUNNING, 1);
    job_in(6, TQD_JOB_RUNNING, 1);
    ck_assert_uint_gt(tqd_store_size(st), 4096);
    stop();

    /* A restart: the broker stopped without a word. */
    start(TQD_SYNC_FULL, 5000);
    ck_assert_uint_eq(st->id, store_id);
    ck_assert_uint_eq(q.next_id, 10);
    ck_assert_ptr_null(tqd_queue_find(&q, 9));
    ck_assert_uint_eq(q.queued, 5);
    ck_assert_uint_eq(q.running, 0);
    ck_assert_uint_eq(q.retained, 3);

    /* Finished: retained with payload, time and SUBMIT. */
    tqd_job_t *j1 = job_in(1, TQD_JOB_FINISHED, 1);
    uint8_t buf[32];
    ck_assert_uint_eq(j1->status, TASKQ_STATUS_DONE);
    taskq_span_t want = fixstr(buf, "r1");
    ck_assert_uint_eq(j1->result_len, want.len);
    ck_assert_mem_eq(j1->result, want.ptr, want.len);
    ck_assert_uint_eq(j1->finished_ms, 3000);
    ck_assert_uint_eq(j1->client_id, 7);
    ck_assert_ptr_eq(tqd_queue_find_submit(&q, 7, 100), j1);
    ck_assert_uint_eq(j1->batch, 5);

    /* Running with attempts left: queued again, the attempt counted. */
    tqd_job_t *j2 = job_in(2, TQD_JOB_QUEUED, 1);
    tqd_job_t *j3 = job_in(3, TQD_JOB_QUEUED, 1);
    ck_assert_uint_eq(j2->history->n, 1);
    check_entry(j2, 0, 1, "w1", "hostA", 4242, 2000, 5000, "broker stopped");
    check_entry(j3, 0, 1, "w1", "hostA", 4242, 3200, 5000, "broker stopped");
    check_arg(j3, 8);

    /* Running on its last attempt: LOST. */
    tqd_job_t *j6 = job_in(6, TQD_JOB_FINISHED, 1);
    ck_assert_uint_eq(j6->status, TASKQ_STATUS_LOST);
    check_entry(j6, 0, 1, "w2", "hostB", 4343, 2000, 5000, "broker stopped");
    ck_assert_ptr_eq(tqd_queue_find_submit(&q, 8, 200), j6);

    /* Queued: its task as submitted. */
    tqd_job_t *j7 = job_in(7, TQD_JOB_QUEUED, 0);
    ck_assert_int_eq(j7->priority, 5);
    ck_assert_uint_eq(j7->timeout_ms, 1500);
    ck_assert_uint_eq(j7->max_attempts, 1);
    ck_assert(span_is((taskq_span_t){j7->lane->queue->name, j7->lane->queue->name_len}, "other"));
    ck_assert(span_is((taskq_span_t){j7->lane->function, j7->lane->function_len}, "g"));
    check_arg(j7, 8);

    /* Failed with its history and names. */
    tqd_job_t *j8 = job_in(8, TQD_JOB_FINISHED, 2);
    ck_assert_uint_eq(j8->status, TASKQ_STATUS_FAILED);
    ck_assert_uint_eq(j8->history->n, 2);
    check_entry(j8, 0, 1, "w3", "hostC", 4444, 2000, 3100, "flaky");
    check_entry(j8, 1, 2, "w3", "hostC", 4444, 3200, 3300, "broken");
    ck_assert(span_is(j8->history->queue, "hq"));
    ck_assert(span_is(j8->history->function, "h"));
    ck_assert_ptr_eq(tqd_queue_find_submit(&q, 9, 300), j8);
    ck_assert_ptr_null(tqd_queue_find_submit(&q, 10, 400));

    /* The queued jobs keep their order: the requeued ones first (by id). */
    tqd_worker_t *w = add_worker("w4", "hostD", 1, 10, "default", "f");
    tqd_queue_dispatch(&q, 6000);
    ck_assert_uint_eq(w->n_unsent, 4);
    for (uint32_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(w->unsent[i]->id, 2 + i);
        ck_assert_uint_eq(w->unsent[i]->attempt, i < 2 ? 2 : 1);
    }
    w->n_unsent = 0;
    ck_assert_int_eq(commit(), 0);
    stop();

    /* A second restart finds what the first one wrote back: one more
     * interrupted attempt each, nothing repeated. */
    start(TQD_SYNC_FULL, 7000);
    ck_assert_uint_eq(q.next_id, 10);
    j2 = job_in(2, TQD_JOB_QUEUED, 2);
    ck_assert_uint_eq(j2->history->n, 2);
    check_entry(j2, 0, 1, "w1", "hostA", 4242, 2000, 5000, "broker stopped");
    check_entry(j2, 1, 2, "w4", "hostD", 1, 6000, 7000, "broker stopped");
    tqd_job_t *j4 = job_in(4, TQD_JOB_QUEUED, 1);
    ck_assert_uint_eq(j4->history->n, 1);
    j6 = job_in(6, TQD_JOB_FINISHED, 1);
    ck_assert_uint_eq(j6->history->n, 1);
    ck_assert_uint_eq(job_in(8, TQD_JOB_FINISHED, 2)->history->n, 2);
    ck_assert_int_eq(commit(), 0);
    tqd_store_close(&st);
    check_db_matches();
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);
}
END_TEST

START_TEST(retry_survives_restart)
{
    start(TQD_SYNC_NORMAL, 1000);
    tqd_job_t *job = submit(7, 1, 1, "default", "f", 0, 0, 1, 8);
    tqd_worker_t *w = add_worker("w", "h", 1, 1, "default", "f");
    dispatch(1100);
    done(w, job, TASKQ_DONE_ERROR, "bad", 1200);
    ck_assert_int_eq(commit(), 0);
    ck_assert_int_eq(tqd_queue_retry(&q, job, 11), 0);
    ck_assert_int_eq(commit(), 0);
    stop();

    start(TQD_SYNC_NORMAL, 2000);
    job = job_in(1, TQD_JOB_QUEUED, 0);
    ck_assert_uint_eq(job->client_id, 11);
    ck_assert_uint_eq(job->batch, 0);
    ck_assert_ptr_null(tqd_queue_find_submit(&q, 7, 1));
    ck_assert_uint_eq(job->history->n, 1);
    check_entry(job, 0, 1, "w", "h", 1, 1100, 1200, "bad");
    stop();
}
END_TEST

START_TEST(forgotten_ranges_deleted)
{
    /* Runs of consecutive ids and lone ones, with and without history. */
    start(TQD_SYNC_NORMAL, 0);
    submit(1, 1, 20, "default", "f", 0, 0, 2, 8);
    tqd_worker_t *w = add_worker("w", "h", 1, 100, "default", "f");
    dispatch(10);
    for (uint64_t id = 1; id <= 20; id++)
        done(w, tqd_queue_find(&q, id), id % 3 ? TASKQ_DONE_OK : TASKQ_DONE_ERROR, "x", 20);
    ck_assert_int_eq(commit(), 0);
    static const uint64_t gone[] = {2, 3, 4, 5, 9, 7, 12, 13, 14, 20};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        forget(tqd_queue_find(&q, gone[i]));
    ck_assert_int_eq(commit(), 0);
    tqd_store_close(&st);
    check_db_matches();
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);
}
END_TEST

/* ---- Opening ------------------------------------------------------------- */

START_TEST(second_open_busy)
{
    start(TQD_SYNC_FULL, 0);
    tqd_store_t *other = NULL;
    char err[512] = "";
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &other, err, sizeof err),
                     -EBUSY);
    ck_assert_ptr_null(other);
    ck_assert_msg(strstr(err, "in use by another taskqd") && strstr(err, db_path), "%s", err);
    stop();
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &other, err, sizeof err),
                     0);
    tqd_store_close(&other);
    ck_assert_ptr_null(other);
}
END_TEST

START_TEST(garbage_refused)
{
    char err[512] = "";
    tqd_store_t *s = NULL;
    /* Bytes that are not a database. */
    FILE *f = fopen(db_path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 512; i++)
        fputs("not a database at all\n", f);
    fclose(f);
    int rc = tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err);
    ck_assert_int_lt(rc, 0);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, db_path), "%s", err);
    printf("garbage file: %s\n", err);

    /* A database of something else. */
    unlink(db_path);
    sql("CREATE TABLE jobs(x); INSERT INTO jobs VALUES(1)");
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "not a taskq database"), "%s", err);

    /* A schema version from the future. */
    unlink(db_path);
    start(TQD_SYNC_FULL, 0);
    stop();
    sql("UPDATE meta SET value = 99 WHERE key = 'schema'");
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err),
                     -EINVAL);
    ck_assert_msg(strstr(err, "version 99"), "%s", err);

    /* A database of schema version 1, from before jobs had owners: it is
     * upgraded in place, and then opens as the current version. */
    sql("UPDATE meta SET value = 1 WHERE key = 'schema'; ALTER TABLE jobs DROP COLUMN owner");
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err), 0);
    tqd_store_close(&s);
    sql("UPDATE jobs SET owner = owner"); /* the column is back */
    ck_assert_int_eq(tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err), 0);
    tqd_store_close(&s);

    /* A taskq database whose job pages are scribbled over (its meta
     * table intact): opening or recovering it fails. */
    start(TQD_SYNC_FULL, 0);
    submit(1, 1, 200, "default", "f", 0, 0, 1, 64);
    ck_assert_int_eq(commit(), 0);
    stop();
    int fd = open(db_path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    uint8_t junk[4096];
    memset(junk, 0xa5, sizeof junk);
    for (off_t off = 5 * 4096; off < 64 * 1024; off += 4096)
        ck_assert_int_eq(pwrite(fd, junk, sizeof junk, off), (ssize_t)sizeof junk);
    close(fd);
    rc = tqd_store_sqlite_open(db_path, TQD_SYNC_FULL, WALL, &s, err, sizeof err);
    if (rc == 0) {
        tqd_workers_init(&ws);
        tqd_queue_events_t ev = {.finished = on_finished, .assigned = on_assigned};
        tqd_queue_init(&q, &ws, 99, &ev);
        rc = s->ops->recover(s, &q, 0);
        tqd_store_close(&s);
        tqd_queue_fini(&q);
        tqd_workers_fini(&ws);
        snprintf(err, sizeof err, "recovery failed");
    }
    ck_assert_int_lt(rc, 0);
    printf("damaged pages: %s (%s)\n", err, strerror(-rc));
    fflush(stdout);
}
END_TEST

START_TEST(damaged_rows_skipped)
{
    start(TQD_SYNC_FULL, 0);
    submit(1, 1, 4, "default", "f", 0, 0, 3, 8);
    ck_assert_int_eq(commit(), 0);
    stop();
    sql("UPDATE jobs SET priority = 5000 WHERE id = 2;"
        "UPDATE jobs SET state = 2, attempt = 70000 WHERE id = 3;"
        "UPDATE jobs SET state = 3, status = 1, result = NULL, finished_at = -5,"
        " max_attempts = 1e30 WHERE id = 4;"
        "INSERT INTO jobs(id) VALUES(50);"
        "UPDATE jobs SET failures = 1 WHERE id = 1;"
        "INSERT INTO attempts VALUES(1, 0, 1, 'w', 'h', -5, 0, 0, 'bad pid');"
        "INSERT INTO attempts VALUES(77, 0, 1, 'w', 'h', 1, 0, 0, 'no job');");
    start(TQD_SYNC_FULL, 100);
    tqd_job_t *j1 = job_in(1, TQD_JOB_QUEUED, 0);
    ck_assert(!j1->history || j1->history->n == 0);
    for (uint64_t id = 2; id <= 4; id++)
        ck_assert_ptr_null(tqd_queue_find(&q, id));
    ck_assert_ptr_null(tqd_queue_find(&q, 50));
    ck_assert_uint_eq(q.next_id, 51);
    stop();

    /* The skipped rows stay for a person to look at; job 1's bad history
     * row was rewritten from the queue. */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT (SELECT count(*) FROM jobs),"
                                        " (SELECT count(*) FROM attempts WHERE job_id = 1),"
                                        " (SELECT failures FROM jobs WHERE id = 1)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(s, 0), 5);
    ck_assert_int_eq(sqlite3_column_int(s, 1), 0);
    ck_assert_int_eq(sqlite3_column_int(s, 2), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}
END_TEST

/* ---- Failed commits ------------------------------------------------------ */

/*
 * Mount a tmpfs of the given size on dir, in a mount namespace of this
 * test's own process (so it goes away with it).  false, with a message,
 * where that is not allowed.
 */
static bool mount_tmpfs(const char *opts)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", dir, "tmpfs", 0, opts) < 0) {
        printf("skipped: cannot mount a small tmpfs (%s); run as root to test a full disk\n",
               strerror(errno));
        fflush(stdout);
        return false;
    }
    mounted = true;
    return true;
}

/* Fill the file system of dir with dir/filler until it has no room left. */
static void fill_disk(char *filler, size_t cap)
{
    snprintf(filler, cap, "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    static const uint8_t block[65536];
    for (size_t chunk = sizeof block; chunk >= 512; chunk /= 8)
        for (int i = 0; i < 100000 && write(fd, block, chunk) == (ssize_t)chunk; i++)
            continue;
    ck_assert_int_eq(errno, ENOSPC);
    close(fd);
}

START_TEST(full_disk_then_reconcile)
{
    if (!mount_tmpfs("size=1m"))
        return;
    char filler[256];
    start(TQD_SYNC_FULL, 1000);
    submit(1, 1, 20, "default", "f", 0, 0, 3, 512);
    ck_assert_int_eq(commit(), 0);
    tqd_worker_t *w = add_worker("w", "h", 1, 100, "default", "f");
    fill_disk(filler, sizeof filler);

    /* A turn that cannot be committed: a SUBMIT, dispatches, outcomes, a
     * retry with history, ACKs. */
    dispatch(2000);
    for (uint64_t id = 1; id <= 5; id++)
        done(w, tqd_queue_find(&q, id), TASKQ_DONE_OK, "ok", 3000);
    done(w, tqd_queue_find(&q, 6), TASKQ_DONE_RETRY, "again", 3000);
    for (uint64_t id = 1; id <= 3; id++)
        forget(tqd_queue_find(&q, id));
    tqd_job_t *first = submit(2, 2, 30, "default", "f", 0, 0, 1, 4000);
    uint64_t first_id = first->id;
    ck_assert_int_eq(commit(), -ENOSPC);
    unwind(first_id, 30);
    ck_assert_uint_eq(q.next_id, 21);

    /* Another turn while the disk is full (it may or may not fit in the
     * log space the failed one left). */
    forget(tqd_queue_find(&q, 4));
    done(w, tqd_queue_find(&q, 7), TASKQ_DONE_ERROR, "nope", 3500);
    int rc = commit();
    ck_assert_msg(rc == 0 || rc == -ENOSPC, "commit: %s", strerror(-rc));

    /* Room again: the next commit succeeds and the database matches. */
    ck_assert_int_eq(unlink(filler), 0);
    ck_assert_int_eq(commit(), 0);
    submit(2, 3, 5, "default", "f", 0, 0, 1, 8);
    ck_assert_int_eq(commit(), 0);
    tqd_store_close(&st);
    check_db_matches();
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);

    /* And a restart reads it back. */
    start(TQD_SYNC_FULL, 4000);
    ck_assert_uint_eq(q.next_id, 26);
    ck_assert_ptr_null(tqd_queue_find(&q, 4));
    job_in(5, TQD_JOB_FINISHED, 1);
    ck_assert_uint_eq(job_in(6, TQD_JOB_QUEUED, 1)->history->n, 1);
    tqd_job_t *j7 = job_in(7, TQD_JOB_FINISHED, 1);
    ck_assert_uint_eq(j7->status, TASKQ_STATUS_FAILED);
    ck_assert_uint_eq(j7->history->n, 1);
    check_entry(job_in(8, TQD_JOB_QUEUED, 1), 0, 1, "w", "h", 1, 2000, 4000, "broker stopped");
    stop();
}
END_TEST

START_TEST(full_disk_past_dirty_limit)
{
    /* More ids fail to commit than the store remembers one by one: the
     * next commit reconciles every job and row. */
    if (!mount_tmpfs("size=48m"))
        return;
    char filler[256];
    start(TQD_SYNC_NORMAL, 1000);
    submit(1, 1, 70000, "default", "f", 0, 0, 2, 8);
    ck_assert_int_eq(commit(), 0);
    tqd_worker_t *w = add_worker("w", "h", 1, 100000, "default", "f");
    fill_disk(filler, sizeof filler);
    dispatch(2000);
    for (uint64_t id = 1; id <= 100; id++)
        done(w, tqd_queue_find(&q, id), id % 2 ? TASKQ_DONE_OK : TASKQ_DONE_RETRY, "x", 3000);
    for (uint64_t id = 1; id <= 99; id += 2)
        forget(tqd_queue_find(&q, id));
    /* More than the log of the first turn holds, whatever it reuses. */
    uint64_t first_id = submit(2, 2, 600, "default", "f", 0, 0, 1, 8000)->id;
    ck_assert_int_eq(commit(), -ENOSPC);
    unwind(first_id, 600);
    ck_assert_int_eq(unlink(filler), 0);
    ck_assert_int_eq(commit(), 0);
    tqd_store_close(&st);
    check_db_matches();
    tqd_queue_fini(&q);
    tqd_workers_fini(&ws);
}
END_TEST

/* ---- Throughput (printed, not asserted) ----------------------------------- */

/* Cycles per second of submit, dispatch, outcome, forget with batch
 * cycles per commit (one loop turn) over turns turns. */
static double cycles_per_second(tqd_sync_t sync, uint32_t batch, uint32_t turns)
{
    static int run;
    snprintf(db_path, sizeof db_path, "%s/perf%d.db", dir, run++);
    start(sync, 0);
    tqd_worker_t *w = add_worker("w", "h", 1, 1u << 20, "default", "f");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t t = 0; t < turns; t++) {
        tqd_job_t *first = submit(1, t + 1, batch, "default", "f", 0, 0, 1, 16);
        uint64_t first_id = first->id;
        dispatch(t);
        for (uint64_t id = first_id; id < first_id + batch; id++)
            done(w, tqd_queue_find(&q, id), TASKQ_DONE_OK, "r", t);
        for (uint64_t id = first_id; id < first_id + batch; id++)
            forget(tqd_queue_find(&q, id));
        ck_assert_int_eq(commit(), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    stop();
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return (double)batch * turns / s;
}

START_TEST(throughput)
{
    static const struct {
        tqd_sync_t sync;
        const char *name;
    } levels[] = {{TQD_SYNC_NORMAL, "normal"}, {TQD_SYNC_FULL, "full"}};
    for (size_t i = 0; i < 2; i++) {
        double big = cycles_per_second(levels[i].sync, 1000, 20);
        double one = cycles_per_second(levels[i].sync, 1, 200);
        printf("store throughput, sync %s: %.0f cycles/s at 1000 per commit, %.0f cycles/s at "
               "1 per commit (submit + 2 changes + forget)\n",
               levels[i].name, big, one);
    }
    fflush(stdout);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("recovery");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, restart_recovers_jobs);
    tcase_add_test(tc, retry_survives_restart);
    tcase_add_test(tc, forgotten_ranges_deleted);
    suite_add_tcase(s, tc);

    tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, second_open_busy);
    tcase_add_test(tc, garbage_refused);
    tcase_add_test(tc, damaged_rows_skipped);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, full_disk_then_reconcile);
    tcase_add_test(tc, full_disk_past_dirty_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("throughput");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, throughput);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
