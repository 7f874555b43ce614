/*
 * check_faults.c - the durable broker under faults, with real processes:
 * taskqd killed in the middle of a run and restarted on its database, a
 * worker cut off by a network partition, a full disk under the database,
 * and a worker host whose processes are all killed.  Each test prints the
 * figures it measured (executions, repeats, timings) to stdout.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "taskq.h"

static th_broker_t broker;
static char db_path[300];
static const char *const durable[] = {"--db", db_path, "--heartbeat-ms", "100",
                                      "--liveness", "3", NULL};
/* The same on a namespace's veth address: plain TCP beyond loopback, which
 * the partition test's private link makes safe. */
static const char *const durable_veth[] = {"--db", db_path, "--heartbeat-ms", "100",
                                           "--liveness", "3", "--insecure", NULL};

/* Named after the suite's process (main) so that main can remove them
 * when a test's process was killed by its timeout. */
static th_netns_t netns;
static char disk_path[128]; /* mount point of the full-disk test's tmpfs */

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

/* Set ok to whether cond holds, polling it every 5 ms for up to ms. */
#define WAIT_FOR(ok, cond, ms)                                                    \
    for (int64_t end_ = th_now_ms() + (ms); !((ok) = (cond)) && th_now_ms() < end_;) \
    pause_ms(5)

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    snprintf(db_path, sizeof db_path, "%s/taskq.db", broker.dir);
}

static void teardown(void)
{
    th_stop_all();
    th_netns_down(&netns);
    umount2(disk_path, MNT_DETACH); /* both may find nothing */
    rmdir(disk_path);
    th_remove_dir(broker.dir);
}

/* A file in the broker's directory. */
static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", broker.dir, name);
}

/* Start the durable broker (on bind, or loopback), its database at db_path. */
static void start_broker(const char *bind)
{
    ck_assert_int_eq(th_broker_start(&broker, bind, durable), 0);
}

/* A client that waits out a broker restart. */
static taskq_client_t *client(void)
{
    taskq_client_opts_t o = {.reconnect_limit_ms = 60000};
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, &o, &c), 0);
    return c;
}

/* Start a test_worker with an execution log and the extra arguments. */
static pid_t worker(const char *exec_log, const char *const *extra)
{
    const char *args[16] = {"--exec-log", exec_log};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = th_worker_start(broker.endpoint, args);
    ck_assert_int_gt(pid, 0);
    return pid;
}

static bool stat_is(taskq_client_t *c, const char *key, uint64_t want)
{
    uint64_t v;
    return th_stat(c, key, &v) == 0 && v == want;
}

static uint64_t stat_of(taskq_client_t *c, const char *key)
{
    uint64_t v = 0;
    ck_assert_msg(th_stat(c, key, &v) == 0, "no stat %s", key);
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sort ids[0..n-1]; return how many distinct values they hold. */
static size_t sort_distinct(uint64_t *ids, size_t n)
{
    qsort(ids, n, sizeof *ids, cmp_u64);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += i == 0 || ids[i] != ids[i - 1];
    return d;
}

/* The job id of every line ("JOB ATTEMPT", as test_worker --exec-log
 * writes them) of the file at path, appended to the growing array *ids of
 * *len; lines of attempts above 1 are counted in *later. */
static void read_exec_log(const char *path, uint64_t **ids, size_t *len, size_t *later)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[128];
    while (fgets(line, sizeof line, f)) {
        unsigned long long job;
        unsigned attempt;
        ck_assert_msg(sscanf(line, "%llu %u", &job, &attempt) == 2, "%s: bad line %s", path,
                      line);
        uint64_t *more = realloc(*ids, (*len + 1) * sizeof **ids);
        ck_assert_ptr_nonnull(more);
        *ids = more;
        (*ids)[(*len)++] = job;
        *later += attempt > 1;
    }
    fclose(f);
}

/* PRAGMA integrity_check of the database at path says "ok". */
static void assert_integrity(const char *path)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const char *verdict = (const char *)sqlite3_column_text(st, 0);
    ck_assert_ptr_nonnull(verdict);
    ck_assert_str_eq(verdict, "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Stop the broker with SIGTERM: it exits 0. */
static void stop_broker(void)
{
    int st = th_broker_stop(&broker, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "taskqd status %d", st);
}

/* ---- broker crash during a run ---------------------------------------- */

enum { CRASH_N = 20000 };

/*
 * The waiting client, in its own process: submit square(i) for every i,
 * wait for each, and write "i job code value" per task to path, then
 * "verdict ok" if every one was done right.  Returns the exit status.
 */
static int crash_client(const char *path)
{
    FILE *out = fopen(path, "w");
    if (!out)
        return 2;
    taskq_client_opts_t o = {.reconnect_limit_ms = 60000};
    taskq_client_t *c = NULL;
    taskq_future_t **fs = calloc(CRASH_N, sizeof *fs);
    int rc = fs ? taskq_client_new(broker.endpoint, &o, &c) : TASKQ_ENOMEM;
    for (size_t i = 0; rc == 0 && i < CRASH_N; i++) {
        uint8_t arg[16];
        size_t n = th_pack_int((int64_t)i, arg, sizeof arg);
        rc = taskq_submit(c, "square", arg, n, NULL, &fs[i]);
    }
    if (rc != 0) {
        fprintf(out, "verdict cannot submit: %s\n", taskq_strerror(rc));
        fclose(out);
        return 1;
    }
    size_t bad = 0;
    int64_t end = th_now_ms() + 100000;
    for (size_t i = 0; i < CRASH_N; i++) {
        int64_t left = end - th_now_ms();
        rc = taskq_future_wait(fs[i], left > 0 ? (int32_t)left : 0);
        uint64_t v = 0;
        size_t len;
        const void *r = taskq_future_result(fs[i], &len);
        if (rc == 0 && (!r || th_unpack_uint(r, len, &v) != 0))
            rc = TASKQ_EPROTO;
        fprintf(out, "%zu %llu %d %llu\n", i, (unsigned long long)taskq_future_job_id(fs[i]),
                rc, (unsigned long long)v);
        bad += rc != 0 || v != (uint64_t)i * i;
        taskq_future_destroy(&fs[i]);
    }
    fprintf(out, "verdict %s\n", bad ? "wrong results" : "ok");
    taskq_client_destroy(&c);
    free(fs);
    return fclose(out) == 0 && bad == 0 ? 0 : 1;
}

START_TEST(test_broker_crash)
{
    start_broker(NULL);
    char logs[3][300], out[300];
    for (int w = 0; w < 3; w++) {
        char name[32];
        snprintf(name, sizeof name, "exec-%d.log", w);
        path_in(logs[w], sizeof logs[w], name);
        worker(logs[w], NULL);
    }
    path_in(out, sizeof out, "client.out");
    /* Before this process makes a client of its own (ZeroMQ's threads do
     * not survive a fork). */
    pid_t cpid = th_fork();
    ck_assert_int_ge(cpid, 0);
    if (cpid == 0)
        _exit(crash_client(out));

    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 3, 20000), 0);
    uint64_t done = 0;
    for (int64_t end = th_now_ms() + 60000; done < CRASH_N / 4 && th_now_ms() < end;
         pause_ms(2))
        ck_assert_int_eq(th_stat(c, "done", &done), 0);
    ck_assert_msg(done >= CRASH_N / 4 && done < CRASH_N, "done %llu of %d at the kill",
                  (unsigned long long)done, CRASH_N);
    th_broker_stop(&broker, SIGKILL);
    int64_t t_restart = th_now_ms();
    ck_assert_int_eq(th_broker_restart(&broker), 0);
    uint64_t queued = stat_of(c, "queued"), recovered = queued + stat_of(c, "running");
    ck_assert_msg(recovered > 0, "the restarted broker holds no tasks");

    int st = th_wait_exit(cpid, 110000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client status %d", st);
    int64_t after_ms = th_now_ms() - t_restart;

    /* Every task's result exactly once, right, under a job id of its own. */
    FILE *f = fopen(out, "r");
    ck_assert_ptr_nonnull(f);
    uint64_t *jobs = calloc(CRASH_N, sizeof *jobs);
    ck_assert_ptr_nonnull(jobs);
    char line[128], verdict[64] = "";
    size_t lines = 0;
    while (fgets(line, sizeof line, f)) {
        size_t i;
        unsigned long long job, v;
        int rc;
        if (sscanf(line, "verdict %63[^\n]", verdict) == 1)
            break;
        ck_assert_int_eq(sscanf(line, "%zu %llu %d %llu", &i, &job, &rc, &v), 4);
        ck_assert_msg(i == lines, "result %zu in place %zu", i, lines);
        ck_assert_msg(rc == 0, "task %zu: %s", i, taskq_errname(rc));
        ck_assert_uint_eq(v, (uint64_t)i * i);
        ck_assert_uint_ne(job, 0);
        jobs[lines++] = job;
    }
    fclose(f);
    ck_assert_str_eq(verdict, "ok");
    ck_assert_uint_eq(lines, CRASH_N);
    ck_assert_uint_eq(sort_distinct(jobs, CRASH_N), CRASH_N);

    /* Executions: every job ran, none that the client does not know (a
     * resent SUBMIT made no second job); some may have run twice. */
    uint64_t *ran = NULL;
    size_t n_ran = 0, later = 0;
    for (int w = 0; w < 3; w++)
        read_exec_log(logs[w], &ran, &n_ran, &later);
    size_t distinct = sort_distinct(ran, n_ran);
    for (size_t i = 0; i < n_ran; i++)
        ck_assert_msg(bsearch(&ran[i], jobs, CRASH_N, sizeof *jobs, cmp_u64),
                      "job %llu ran but the client never had it", (unsigned long long)ran[i]);
    ck_assert_uint_eq(distinct, CRASH_N);
    uint64_t dups = stat_of(c, "duplicates");
    printf("broker crash: %d tasks, %zu executions (%zu repeated); %zu executions were of a "
           "later attempt; killed at done=%llu, %llu tasks recovered (%llu queued), the "
           "client finished %lld ms after the restart; %llu duplicate SUBMITs answered from "
           "the dedupe index\n",
           CRASH_N, n_ran, n_ran - distinct, later, (unsigned long long)done,
           (unsigned long long)recovered, (unsigned long long)queued, (long long)after_ms,
           (unsigned long long)dups);
    fflush(stdout);
    free(ran);
    free(jobs);
    taskq_client_destroy(&c);
    stop_broker();
    assert_integrity(db_path);
}
END_TEST

/* ---- acknowledged means durable --------------------------------------- */

enum { ACK_BATCH = 10 };

/*
 * The submitting client, in its own process: until the file stop_path
 * exists (at most 60 s), submit batches of ACK_BATCH tasks nobody serves,
 * and append the job id of each task the broker accepted to log_path, one
 * write per batch once all of it was accepted.  Then write "SUBMITTED
 * ACCEPTED" to sum_path.  Returns the exit status.
 */
static int ack_client(const char *log_path, const char *stop_path, const char *sum_path)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    taskq_client_opts_t o = {.reconnect_limit_ms = 60000};
    taskq_client_t *c = NULL;
    if (fd < 0 || taskq_client_new(broker.endpoint, &o, &c) != 0)
        return 2;
    unsigned long submitted = 0, accepted = 0;
    int64_t end = th_now_ms() + 60000;
    for (int round = 0; round < 100000 && th_now_ms() < end && access(stop_path, F_OK) != 0;
         round++) {
        taskq_future_t *fs[ACK_BATCH];
        for (int i = 0; i < ACK_BATCH; i++) {
            uint8_t arg[16];
            size_t n = th_pack_int(round * ACK_BATCH + i, arg, sizeof arg);
            if (taskq_submit(c, "square", arg, n, NULL, &fs[i]) != 0)
                return 3;
        }
        submitted += ACK_BATCH;
        char buf[ACK_BATCH * 24];
        size_t len = 0;
        for (int i = 0; i < ACK_BATCH; i++) {
            int rc = th_wait_accepted(fs[i], 30000);
            if (rc == 0) {
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%llu\n",
                                        (unsigned long long)taskq_future_job_id(fs[i]));
                accepted++;
            } else {
                fprintf(stderr, "task %d of round %d: %s\n", i, round, taskq_errname(rc));
            }
            taskq_future_destroy(&fs[i]);
        }
        if (write(fd, buf, len) != (ssize_t)len)
            return 4;
    }
    taskq_client_destroy(&c);
    close(fd);
    FILE *sum = fopen(sum_path, "w");
    if (!sum)
        return 5;
    fprintf(sum, "%lu %lu\n", submitted, accepted);
    return fclose(sum) == 0 ? 0 : 6;
}

START_TEST(test_acknowledged_is_durable)
{
    start_broker(NULL);
    char log[300], stop[300], sum[300];
    path_in(log, sizeof log, "acked.log");
    path_in(stop, sizeof stop, "stop");
    path_in(sum, sizeof sum, "acked.sum");
    pid_t cpid = th_fork();
    ck_assert_int_ge(cpid, 0);
    if (cpid == 0)
        _exit(ack_client(log, stop, sum));

    /* Kill the broker in the middle of the stream, and let the stream go
     * on for a while after the restart. */
    bool ok;
    WAIT_FOR(ok, th_count_lines(log) >= 500, 30000);
    ck_assert_msg(ok, "only %u acknowledged ids", th_count_lines(log));
    th_broker_stop(&broker, SIGKILL);
    unsigned before_kill = th_count_lines(log);
    ck_assert_int_eq(th_broker_restart(&broker), 0);
    WAIT_FOR(ok, th_count_lines(log) >= before_kill + 500, 30000);
    ck_assert_msg(ok, "%u acknowledged ids after the restart", th_count_lines(log) - before_kill);
    int fd = open(stop, O_WRONLY | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    int st = th_wait_exit(cpid, 40000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client status %d", st);

    unsigned long submitted = 0, accepted = 0;
    FILE *f = fopen(sum, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%lu %lu", &submitted, &accepted), 2);
    fclose(f);
    ck_assert_uint_eq(accepted, submitted);

    size_t n = 0;
    uint64_t *ids = NULL;
    f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    unsigned long long id;
    while (fscanf(f, "%llu", &id) == 1) {
        uint64_t *more = realloc(ids, (n + 1) * sizeof *ids);
        ck_assert_ptr_nonnull(more);
        ids = more;
        ids[n++] = id;
    }
    fclose(f);
    ck_assert_uint_eq(n, accepted);
    ck_assert_uint_eq(sort_distinct(ids, n), n);

    /* The broker holds exactly the acknowledged tasks, and knows each id:
     * WATCH answers every one after the restart, so a job it does not
     * know, attached last, resolves after the answers of the others. */
    taskq_client_t *c = client();
    ck_assert_uint_eq(stat_of(c, "queued"), n);
    taskq_future_t **fs = calloc(n, sizeof *fs);
    ck_assert_ptr_nonnull(fs);
    for (size_t i = 0; i < n; i++)
        ck_assert_code(taskq_future_attach(c, ids[i], &fs[i]), 0);
    taskq_future_t *none = NULL;
    ck_assert_code(taskq_future_attach(c, ids[n - 1] + 1000000, &none), 0);
    ck_assert_code(taskq_future_wait(none, 10000), TASKQ_ENOJOB);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(taskq_future_state(fs[i]) == TASKQ_STATE_PENDING,
                      "acknowledged job %llu: state %d after the restart",
                      (unsigned long long)ids[i], (int)taskq_future_state(fs[i]));
        ck_assert_code(taskq_future_wait(fs[i], 0), TASKQ_ETIMEDOUT);
        taskq_future_destroy(&fs[i]);
    }
    taskq_future_destroy(&none);
    printf("acknowledged means durable: %zu ids acknowledged (%u before the kill), all %zu "
           "pending after the restart; %llu duplicate SUBMITs answered from the dedupe index\n",
           n, before_kill, n, (unsigned long long)stat_of(c, "duplicates"));
    fflush(stdout);
    free(fs);
    free(ids);
    taskq_client_destroy(&c);
    stop_broker();
    assert_integrity(db_path);
}
END_TEST

/* ---- network partition ------------------------------------------------- */

enum { PART_HELD = 3, PART_NEW = 5, PART_SLEEP_MS = 2000 };

START_TEST(test_partition)
{
    const char *why = th_netns_up(&netns);
    if (why) {
        th_netns_down(&netns);
        printf("check_faults: partition: SKIPPED: %s; the partition test needs root, `ip` "
               "and network namespaces\n", why);
        fflush(stdout);
        return;
    }
    char bind[64];
    snprintf(bind, sizeof bind, "tcp://%s:*", netns.root_addr);
    ck_assert_int_eq(th_broker_start(&broker, bind, durable_veth), 0);

    /* The remote worker alone first, so that it holds the tasks: two run
     * (threads), one waits (prefetch). */
    char remote_log[300], local_logs[2][300];
    path_in(remote_log, sizeof remote_log, "exec-remote.log");
    const char *const rargs[] = {"--broker", broker.endpoint, "--threads", "2",
                                 "--queue", "default", "--queue", "remote",
                                 "--exec-log", remote_log, NULL};
    pid_t remote = th_netns_spawn(&netns, TEST_WORKER_PATH, rargs);
    ck_assert_int_gt(remote, 0);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    ck_assert_msg(th_netns_has(&netns, remote), "worker %d is not in %s", (int)remote,
                  netns.path);
    taskq_future_t *held[PART_HELD];
    for (int i = 0; i < PART_HELD; i++)
        held[i] = th_submit_int(c, "sleep", PART_SLEEP_MS, NULL);
    ck_assert_code(taskq_client_flush(c), 0);
    bool ok;
    uint64_t running = 0;
    WAIT_FOR(ok, th_worker_stat(c, remote, "running", &running) == 0 && running == PART_HELD &&
                     th_count_lines(remote_log) == 2, 10000);
    ck_assert_msg(ok, "the remote worker holds %llu tasks and started %u",
                  (unsigned long long)running, th_count_lines(remote_log));

    const char *const largs[] = {"--threads", "2", NULL};
    pid_t local[2];
    for (int w = 0; w < 2; w++) {
        char name[32];
        snprintf(name, sizeof name, "exec-local-%d.log", w);
        path_in(local_logs[w], sizeof local_logs[w], name);
        local[w] = worker(local_logs[w], largs);
    }
    ck_assert_int_eq(th_wait_workers(c, 3, 20000), 0);

    /* Cut: the broker declares the remote worker dead after liveness x
     * heartbeat and hands its tasks to the others. */
    int64_t t_cut = th_now_ms();
    ck_assert_int_eq(th_netns_link(&netns, false), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 10000), 0);
    int64_t dead_ms = th_now_ms() - t_cut;
    WAIT_FOR(ok, stat_is(c, "running", PART_HELD), 10000);
    ck_assert_msg(ok, "the tasks of the cut-off worker were not handed out again");

    /* Restore the link while the remote worker's handlers still run: its
     * results come late, over its new connection, and must be dropped. */
    int64_t t_restore = th_now_ms();
    ck_assert_int_eq(th_netns_link(&netns, true), 0);
    int64_t cut_ms = t_restore - t_cut;
    for (int i = 0; i < PART_HELD; i++) {
        int rc = taskq_future_wait(held[i], 20000);
        ck_assert_msg(rc == 0, "task %d: %s: %s", i, taskq_errname(rc),
                      taskq_future_error(held[i]));
        pid_t by = (pid_t)th_result_uint(held[i]);
        ck_assert_msg(by == local[0] || by == local[1], "task %d done by %d (remote %d)", i,
                      (int)by, (int)remote);
        ck_assert_uint_eq(taskq_future_attempts(held[i]), 2);
        taskq_future_destroy(&held[i]);
    }

    /* It rejoins and takes new work: tasks only it serves. */
    ck_assert_int_eq(th_wait_workers(c, 3, 30000), 0);
    int64_t rejoin_ms = th_now_ms() - t_restore;
    uint64_t done_before = 0, done_after = 0;
    ck_assert_int_eq(th_worker_stat(c, remote, "done", &done_before), 0);
    taskq_submit_opts_t there = {.queue = "remote"};
    for (int i = 0; i < PART_NEW; i++) {
        taskq_future_t *f = th_submit_int(c, "pid", i, &there);
        ck_assert_code(taskq_future_wait(f, 20000), 0);
        ck_assert_int_eq((pid_t)th_result_uint(f), remote);
        taskq_future_destroy(&f);
    }
    ck_assert_int_eq(th_worker_stat(c, remote, "done", &done_after), 0);
    ck_assert_uint_ge(done_after, done_before + PART_NEW);

    /* Each outcome counted once: the late ones were not. */
    ck_assert_uint_eq(stat_of(c, "done"), PART_HELD + PART_NEW);
    unsigned local_runs = th_count_lines(local_logs[0]) + th_count_lines(local_logs[1]);
    ck_assert_uint_eq(local_runs, PART_HELD);
    printf("network partition: link cut for %lld ms, worker declared dead after %lld ms; "
           "its %d tasks finished by the others (%u executions there, %u started by it "
           "before the cut); rejoined %lld ms after the link came back; stale outcomes "
           "dropped: %llu; its done count %llu -> %llu\n",
           (long long)cut_ms, (long long)dead_ms, PART_HELD, local_runs,
           th_count_lines(remote_log) - PART_NEW, (long long)rejoin_ms,
           (unsigned long long)stat_of(c, "stale"), (unsigned long long)done_before,
           (unsigned long long)done_after);
    fflush(stdout);
    taskq_client_destroy(&c);
    stop_broker();
}
END_TEST

/* ---- full disk ---------------------------------------------------------- */

enum { DISK_HELD = 50, DISK_TRIES = 200, DISK_NEW = 10, BLOB = 8192 };

/* Fill the file system of path with the file at path until it has no
 * space left.  Returns the bytes written. */
static size_t fill_disk(const char *path)
{
    static char block[65536];
    memset(block, 'x', sizeof block);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    size_t total = 0;
    ssize_t w = 0;
    for (int i = 0; i < 100000; i++) {
        w = write(fd, block, sizeof block);
        if (w <= 0)
            break;
        total += (size_t)w;
    }
    ck_assert_msg(w < 0 && errno == ENOSPC, "the disk did not fill: %s", strerror(errno));
    close(fd);
    return total;
}

/* An echo task whose argument is a str of BLOB bytes, and the argument. */
static taskq_future_t *submit_blob(taskq_client_t *c, uint8_t *arg, size_t *len)
{
    arg[0] = 0xdb; /* str 32, big-endian length */
    arg[1] = 0;
    arg[2] = 0;
    arg[3] = BLOB >> 8;
    arg[4] = BLOB & 0xff;
    memset(arg + 5, 'b', BLOB);
    *len = BLOB + 5;
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "echo", arg, *len, NULL, &f), 0);
    return f;
}

START_TEST(test_full_disk)
{
    if (geteuid() != 0) {
        printf("check_faults: full_disk: SKIPPED: not running as root; the full-disk test "
               "mounts a small tmpfs\n");
        fflush(stdout);
        return;
    }
    ck_assert_int_eq(mkdir(disk_path, 0700), 0);
    if (mount("tmpfs", disk_path, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        printf("check_faults: full_disk: SKIPPED: cannot mount a tmpfs: %s\n", strerror(errno));
        fflush(stdout);
        rmdir(disk_path);
        return;
    }
    snprintf(db_path, sizeof db_path, "%s/taskq.db", disk_path);
    start_broker(NULL);
    taskq_client_t *c = client();
    char store[32] = "";
    ck_assert_int_eq(th_stat_str(c, "store", store, sizeof store), 0);
    ck_assert_str_eq(store, "sqlite");

    /* Tasks accepted while there is space, waiting for a worker. */
    taskq_future_t *held[DISK_HELD], *blobs[DISK_TRIES];
    for (int i = 0; i < DISK_HELD; i++)
        held[i] = th_submit_int(c, "square", i, NULL);
    for (int i = 0; i < DISK_HELD; i++)
        ck_assert_code(th_wait_accepted(held[i], 10000), 0);

    /* Fill the disk: a SUBMIT is refused (once what SQLite had reserved is
     * used up), and said so. */
    char filler[300];
    snprintf(filler, sizeof filler, "%s/filler", disk_path);
    size_t filled = fill_disk(filler);
    uint8_t blob[BLOB + 5];
    size_t blob_len = 0;
    int n_blobs = 0, rc = 0;
    for (; n_blobs < DISK_TRIES; n_blobs++) {
        blobs[n_blobs] = submit_blob(c, blob, &blob_len);
        rc = th_wait_accepted(blobs[n_blobs], 10000);
        if (rc != 0)
            break;
    }
    ck_assert_code(rc, TASKQ_ESTORAGE);
    ck_assert_int_eq(taskq_future_state(blobs[n_blobs]), TASKQ_STATE_REFUSED);
    char refusal[256];
    snprintf(refusal, sizeof refusal, "%s", taskq_future_error(blobs[n_blobs]));
    taskq_future_destroy(&blobs[n_blobs]);
    bool store_ok = true;
    ck_assert_int_eq(th_stat_bool(c, "store_ok", &store_ok), 0);
    bool ok_after_refusal = store_ok;
    uint64_t errors_full = stat_of(c, "storage_errors");
    ck_assert_uint_ge(errors_full, 1);

    /* The work it holds is still served while the disk stays full. */
    char log[300];
    path_in(log, sizeof log, "exec.log");
    worker(log, NULL);
    bool ok;
    WAIT_FOR(ok, th_count_lines(log) >= (unsigned)(DISK_HELD + n_blobs), 20000);
    ck_assert_msg(ok, "%u of %d held tasks ran while the disk was full", th_count_lines(log),
                  DISK_HELD + n_blobs);

    /* Space returns: new SUBMITs are accepted, everything finishes. */
    ck_assert_int_eq(unlink(filler), 0);
    taskq_future_t *fresh[DISK_NEW];
    for (int i = 0; i < DISK_NEW; i++)
        fresh[i] = th_submit_int(c, "square", 1000 + i, NULL);
    for (int i = 0; i < DISK_NEW; i++) {
        ck_assert_code(taskq_future_wait(fresh[i], 20000), 0);
        ck_assert_uint_eq(th_result_uint(fresh[i]), (uint64_t)(1000 + i) * (1000 + i));
        taskq_future_destroy(&fresh[i]);
    }
    for (int i = 0; i < DISK_HELD; i++) {
        ck_assert_code(taskq_future_wait(held[i], 20000), 0);
        ck_assert_uint_eq(th_result_uint(held[i]), (uint64_t)i * i);
        taskq_future_destroy(&held[i]);
    }
    for (int i = 0; i < n_blobs; i++) {
        ck_assert_code(taskq_future_wait(blobs[i], 20000), 0);
        size_t len;
        const void *r = taskq_future_result(blobs[i], &len);
        ck_assert_uint_eq(len, blob_len);
        ck_assert_int_eq(memcmp(r, blob, len), 0);
        taskq_future_destroy(&blobs[i]);
    }
    ck_assert_int_eq(th_stat_bool(c, "store_ok", &store_ok), 0);
    ck_assert(store_ok);
    printf("full disk: filler of %zu bytes; %d more SUBMITs of %d bytes accepted before the "
           "refusal \"%s\" (%s); store_ok %s right after it; storage_errors %llu then, %llu "
           "at the end; %d held tasks ran while full; all %d done after space returned; "
           "store_bytes %llu\n",
           filled, n_blobs, BLOB, refusal, taskq_errname(TASKQ_ESTORAGE),
           ok_after_refusal ? "true" : "false", (unsigned long long)errors_full, (unsigned long long)stat_of(c, "storage_errors"),
           DISK_HELD + n_blobs, DISK_HELD + n_blobs + DISK_NEW,
           (unsigned long long)stat_of(c, "store_bytes"));
    fflush(stdout);
    taskq_client_destroy(&c);
    stop_broker();
    assert_integrity(db_path);
    ck_assert_int_eq(umount2(disk_path, 0), 0);
    ck_assert_int_eq(rmdir(disk_path), 0);
    /* Checked last, so that the rest was checked whatever it says. */
    ck_assert_msg(!ok_after_refusal,
                  "store_ok was true right after a STORAGE refusal, the disk still full");
}
END_TEST

/* ---- restart of a worker host ------------------------------------------ */

enum { HOST_N = 9, HOST_PROCS = 3, HOST_HELD = 6, HOST_SLEEP_MS = 1500 };

START_TEST(test_worker_host_restart)
{
    start_broker(NULL);
    /* crash_plugin's sleep notes "job attempt pid supervisor" in runs.log. */
    setenv("TASKQ_TEST_DIR", broker.dir, 1);
    char runs[300], log[300];
    path_in(runs, sizeof runs, "runs.log");
    path_in(log, sizeof log, "exec.log");
    const char *const pargs[] = {"--broker", broker.endpoint, "--load", CRASH_PLUGIN_PATH,
                                 "--procs", "3", NULL};
    pid_t sup = th_spawn(TASKQ_WORKER_PATH, pargs);
    ck_assert_int_gt(sup, 0);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, HOST_PROCS, 20000), 0);

    /* The pool holds two tasks per process (one running, one prefetched);
     * the other worker takes the rest. */
    taskq_future_t *fs[HOST_N];
    for (int i = 0; i < HOST_N; i++)
        fs[i] = th_submit_int(c, "sleep", HOST_SLEEP_MS, NULL);
    ck_assert_code(taskq_client_flush(c), 0);
    bool ok;
    WAIT_FOR(ok, th_count_lines(runs) == HOST_PROCS && stat_is(c, "running", HOST_HELD), 10000);
    ck_assert_msg(ok, "the pool started %u tasks", th_count_lines(runs));
    const char *const targs[] = {"--threads", "3", NULL};
    pid_t other = worker(log, targs);
    ck_assert_int_eq(th_wait_workers(c, HOST_PROCS + 1, 20000), 0);
    WAIT_FOR(ok, stat_is(c, "running", HOST_N), 10000);
    ck_assert_msg(ok, "the other worker did not take the queued tasks");

    /* The host goes down: every process of the pool at once. */
    pid_t kids[HOST_PROCS];
    ck_assert_uint_eq(th_children_of(sup, kids, HOST_PROCS), HOST_PROCS);
    kill(sup, SIGKILL);
    for (int i = 0; i < HOST_PROCS; i++)
        kill(kids[i], SIGKILL);
    int64_t t_kill = th_now_ms();
    th_wait_exit(sup, 5000);
    for (int i = 0; i < HOST_PROCS; i++)
        ck_assert_msg(th_wait_gone(kids[i], 5000), "process %d survived", (int)kids[i]);

    for (int i = 0; i < HOST_N; i++) {
        int rc = taskq_future_wait(fs[i], 30000);
        ck_assert_msg(rc == 0, "task %d: %s: %s", i, taskq_errname(rc), taskq_future_error(fs[i]));
        ck_assert_int_eq((pid_t)th_result_uint(fs[i]), other);
        taskq_future_destroy(&fs[i]);
    }
    int64_t finish_ms = th_now_ms() - t_kill;
    ck_assert_uint_eq(stat_of(c, "done"), HOST_N);
    ck_assert_uint_eq(stat_of(c, "lost"), 0);
    ck_assert_uint_eq(th_count_lines(log), HOST_N);
    ck_assert_int_eq(th_wait_workers(c, 1, 10000), 0);
    printf("worker host restart: %d tasks; the killed host held %d (%d running); all %d "
           "finished by the other worker %lld ms after the kill, each done once; %u "
           "executions\n",
           HOST_N, HOST_HELD, HOST_PROCS, HOST_N, (long long)finish_ms,
           th_count_lines(runs) + th_count_lines(log));
    fflush(stdout);
    taskq_client_destroy(&c);
    stop_broker();
}
END_TEST

int main(void)
{
    th_netns_init(&netns);
    snprintf(disk_path, sizeof disk_path, "/tmp/taskq-test-disk-%d", (int)getpid());
    const th_case_t cases[] = {
        {"broker_crash", test_broker_crash, 150, setup, teardown},
        {"acknowledged", test_acknowledged_is_durable, 120, setup, teardown},
        {"partition", test_partition, 90, setup, teardown},
        {"full_disk", test_full_disk, 90, setup, teardown},
        {"host_restart", test_worker_host_restart, 90, setup, teardown},
    };
    int rc = th_run_suite("faults", cases, sizeof cases / sizeof cases[0]);
    /* A test killed by its timeout had no chance to clean up. */
    th_netns_down(&netns);
    umount2(disk_path, MNT_DETACH);
    rmdir(disk_path);
    return rc;
}
