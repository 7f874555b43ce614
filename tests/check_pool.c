/*
 * check_pool.c - taskq-worker's process pool end to end: a real taskqd and
 * real taskq-worker processes loading crash_plugin.so, whose functions
 * crash, hang and sleep.  Crashes, run limits, stops, recycling, exec and
 * plugin errors are checked through libtaskq, the broker's statistics,
 * /proc, and the notes the plugin leaves in the test's directory.
 */
#include <check.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "taskq.h"

static const char *const fast_hb[] = {"--heartbeat-ms", "200", "--liveness", "3", NULL};
static const char *const notes[] = {"crash.pid", "abort.pid", "hang.pid", "runs.log"};

static th_broker_t broker;
static char host[256];

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

static void setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, fast_hb), 0);
    setenv("TASKQ_TEST_DIR", broker.dir, 1);
    gethostname(host, sizeof host - 1);
}

static void teardown(void)
{
    th_stop_all();
    char path[512];
    for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", broker.dir, notes[i]);
        unlink(path);
    }
    rmdir(broker.dir);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start taskq-worker with crash_plugin.so and the extra arguments. */
static pid_t pool(const char *const *extra)
{
    const char *args[32] = {"--broker", broker.endpoint, "--load", CRASH_PLUGIN_PATH,
                            "--log-level", "info"};
    size_t n = 6;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    pid_t pid = th_spawn(TASKQ_WORKER_PATH, args);
    ck_assert_int_gt(pid, 0);
    return pid;
}

static taskq_client_t *client(void)
{
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    return c;
}

/* Wait up to timeout_ms until parent has exactly n live children. */
static void wait_children(pid_t parent, unsigned n, int timeout_ms)
{
    unsigned have = 0;
    for (int64_t end = th_now_ms() + timeout_ms; th_now_ms() < end; pause_ms(20)) {
        if ((have = th_children_of(parent, NULL, 0)) == n)
            return;
    }
    ck_abort_msg("process %ld has %u children, want %u", (long)parent, have, n);
}

/* The contents of a note of the plugin ("" if it is missing). */
static void read_note(const char *name, char *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", broker.dir, name);
    size_t n = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/* Wait up to timeout_ms for a note holding a pid; return the pid. */
static pid_t wait_pid_note(const char *name, int timeout_ms)
{
    char buf[64];
    for (int64_t end = th_now_ms() + timeout_ms; th_now_ms() < end; pause_ms(20)) {
        read_note(name, buf, sizeof buf);
        if (strchr(buf, '\n'))
            return (pid_t)atol(buf);
    }
    ck_abort_msg("no note %s", name);
    return -1;
}

/* Lines in s, such as runs.log's ("job attempt pid supervisor"). */
static unsigned count_lines(const char *s)
{
    unsigned n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Check that a failure text names signal sig (as "SIGNAME (signal N)"), the
 * process of the note pid_note, and this host. */
static void assert_names_crash(const char *text, const char *signame, int sig,
                               const char *pid_note)
{
    char want[400];
    snprintf(want, sizeof want, "process %ld on %s killed by %s (signal %d)",
             (long)wait_pid_note(pid_note, 1000), host, signame, sig);
    ck_assert_msg(strstr(text, want), "error text \"%s\" lacks \"%s\"", text, want);
}

/* ---- (a) a crash costs only its task ---------------------------------- */

enum { MAP_N = 1000, CRASH_AT = 500 };

struct crash_map {
    uint8_t arg[16];
    size_t ok;           /* tasks done with a pid */
    int crash_code;      /* the crashing task's outcome */
    char crash_text[1024];
};

static int crash_input(size_t i, const void **arg, size_t *len, void *ud)
{
    struct crash_map *m = ud;
    *len = th_pack_int(i == CRASH_AT ? -1 : (int64_t)i, m->arg, sizeof m->arg);
    *arg = m->arg;
    return 0;
}

static int crash_output(size_t i, int code, const void *data, size_t len, void *ud)
{
    struct crash_map *m = ud;
    uint64_t pid;
    if (i == CRASH_AT) {
        m->crash_code = code;
        snprintf(m->crash_text, sizeof m->crash_text, "%.*s", (int)len, (const char *)data);
    } else if (code == 0 && th_unpack_uint(data, len, &pid) == 0 && pid > 0) {
        m->ok++;
    }
    return 0;
}

START_TEST(test_crash_costs_one_task)
{
    const char *const args[] = {"--procs", "3", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 3, 20000), 0);
    wait_children(sup, 3, 10000);

    taskq_submit_opts_t twice = {.max_attempts = 2};
    taskq_future_t *ab = th_submit_int(c, "abort", 0, &twice);
    struct crash_map m = {.crash_code = 1};
    taskq_map_opts_t mo = {.window = MAP_N, .task.max_attempts = 3};
    ck_assert_code(taskq_map(c, "work", MAP_N, crash_input, crash_output, &m, &mo),
                   TASKQ_EFAILED);
    ck_assert_uint_eq(m.ok, MAP_N - 1);
    ck_assert_code(m.crash_code, TASKQ_EFAILED);
    assert_names_crash(m.crash_text, "SIGSEGV", SIGSEGV, "crash.pid");

    ck_assert_code(taskq_future_wait(ab, 20000), TASKQ_EFAILED);
    ck_assert_uint_eq(taskq_future_attempts(ab), 2);
    assert_names_crash(taskq_future_error(ab), "SIGABRT", SIGABRT, "abort.pid");
    taskq_future_destroy(&ab);

    /* Two more attempts of the SIGSEGV task, one of the abort. */
    uint64_t retried = 0;
    ck_assert_int_eq(th_stat(c, "retried", &retried), 0);
    ck_assert_uint_eq(retried, 3);
    ck_assert_int_eq(kill(sup, 0), 0);
    wait_children(sup, 3, 10000);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_backoff_on_repeated_deaths)
{
    const char *const args[] = {"--procs", "1", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);

    /* Five crashes in a row: from the second on, each replacement died
     * within a second of its start, so the next start waits 100, 200, 400
     * ms, ... */
    enum { N = 5 };
    taskq_submit_opts_t once = {.max_attempts = 1};
    taskq_future_t *fs[N];
    int64_t t0 = th_now_ms();
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "work", -1, &once);
    for (int i = 0; i < N; i++) {
        ck_assert_code(taskq_future_wait(fs[i], 20000), TASKQ_EFAILED);
        ck_assert_ptr_nonnull(strstr(taskq_future_error(fs[i]), "SIGSEGV"));
        taskq_future_destroy(&fs[i]);
    }
    ck_assert_int_ge(th_now_ms() - t0, 100 + 200 + 400);
    ck_assert_int_eq(kill(sup, 0), 0);
    wait_children(sup, 1, 10000);
    taskq_future_t *f = th_submit_int(c, "work", 1, NULL);
    ck_assert_code(taskq_future_wait(f, 20000), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_broken_executor)
{
    const char *const args[] = {"--procs", "1", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    taskq_submit_opts_t once = {.max_attempts = 1};
    for (int k = 0; k < 3; k++) {
        taskq_future_t *f = th_submit_int(c, "garble", k, &once);
        ck_assert_code(taskq_future_wait(f, 20000), TASKQ_EFAILED);
        const char *text = taskq_future_error(f);
        ck_assert_msg(strstr(text, "sent a malformed reply"), "garble %d: %s", k, text);
        taskq_future_destroy(&f);
    }
    ck_assert_int_eq(kill(sup, 0), 0);
    wait_children(sup, 1, 10000);
    taskq_future_t *f = th_submit_int(c, "work", 1, NULL);
    ck_assert_code(taskq_future_wait(f, 20000), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- (b) a run limit kills the process -------------------------------- */

START_TEST(test_run_limit_kills_process)
{
    const char *const args[] = {"--procs", "1", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    wait_children(sup, 1, 10000);

    taskq_submit_opts_t o = {.timeout_ms = 300, .max_attempts = 1};
    taskq_future_t *f = th_submit_int(c, "hang", 0, &o);
    ck_assert_code(taskq_future_wait(f, 10000), TASKQ_ERUNLIMIT);
    taskq_future_destroy(&f);

    /* hang ignores SIGTERM: the SIGKILL after the grace ends it. */
    pid_t hung = wait_pid_note("hang.pid", 1000);
    ck_assert_msg(th_wait_gone(hung, 10000), "process %ld still runs", (long)hung);

    wait_children(sup, 1, 10000);
    f = th_submit_int(c, "work", 1, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_ne((pid_t)th_result_uint(f), hung);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- (c) SIGTERM lets running tasks finish ---------------------------- */

START_TEST(test_sigterm_finishes_running)
{
    const char *const args[] = {"--procs", "2", "--grace", "20", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);

    enum { N = 8 };
    taskq_submit_opts_t once = {.max_attempts = 1};
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = th_submit_int(c, "sleep", 1500, &once);
    ck_assert_code(taskq_client_flush(c), 0);

    /* Both processes have started a task: stop the pool. */
    char runs[4096];
    int64_t end = th_now_ms() + 10000;
    do {
        pause_ms(20);
        read_note("runs.log", runs, sizeof runs);
    } while (count_lines(runs) < 2 && th_now_ms() < end);
    ck_assert_uint_eq(count_lines(runs), 2);
    int st = th_stop(sup, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "taskq-worker status %d", st);

    /* The two that ran are done; another pool runs the rest. */
    uint64_t done = 0;
    for (int i = 0; i < 100 && done < 2; i++)
        ck_assert_int_eq(th_stat(c, "done", &done), 0);
    ck_assert_uint_eq(done, 2);
    pool(args);
    for (int i = 0; i < N; i++) {
        int rc = taskq_future_wait(fs[i], 30000);
        ck_assert_msg(rc == 0, "task %d: %s: %s", i, taskq_errname(rc), taskq_future_error(fs[i]));
        ck_assert_uint_eq(taskq_future_attempts(fs[i]), 1);
    }

    /* Each job ran once; the first pool ran exactly two. */
    read_note("runs.log", runs, sizeof runs);
    ck_assert_uint_eq(count_lines(runs), N);
    unsigned by_first = 0;
    for (const char *line = runs; *line; line = strchr(line, '\n') + 1) {
        unsigned long long job;
        long pid, parent;
        ck_assert_int_eq(sscanf(line, "%llu %*u %ld %ld", &job, &pid, &parent), 3);
        by_first += parent == sup;
        for (const char *other = runs; other < line; other = strchr(other, '\n') + 1)
            ck_assert_msg(strtoull(other, NULL, 10) != job, "job %llu ran twice", job);
    }
    ck_assert_uint_eq(by_first, 2);
    for (int i = 0; i < N; i++)
        taskq_future_destroy(&fs[i]);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- (d) --max-tasks-per-proc recycles -------------------------------- */

struct pids {
    uint8_t arg[16];
    size_t ok;
    uint64_t pid[100];
};

static int work_input(size_t i, const void **arg, size_t *len, void *ud)
{
    struct pids *p = ud;
    *len = th_pack_int((int64_t)i, p->arg, sizeof p->arg);
    *arg = p->arg;
    return 0;
}

static int work_output(size_t i, int code, const void *data, size_t len, void *ud)
{
    struct pids *p = ud;
    if (code == 0 && th_unpack_uint(data, len, &p->pid[i]) == 0)
        p->ok++;
    return 0;
}

START_TEST(test_max_tasks_per_proc)
{
    const char *const args[] = {"--procs", "2", "--max-tasks-per-proc", "10", "--nice", "3",
                                NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);
    struct pids p = {0};
    ck_assert_code(taskq_map(c, "work", 100, work_input, work_output, &p, NULL), 0);
    ck_assert_uint_eq(p.ok, 100);

    /* Every process ran at most 10 tasks, so at least 10 ran them. */
    unsigned distinct = 0;
    for (int i = 0; i < 100; i++) {
        unsigned same = 0, seen_before = 0;
        for (int j = 0; j < 100; j++) {
            same += p.pid[j] == p.pid[i];
            seen_before += j < i && p.pid[j] == p.pid[i];
        }
        ck_assert_uint_le(same, 10);
        distinct += seen_before == 0;
    }
    ck_assert_uint_ge(distinct, 10);
    wait_children(sup, 2, 10000);

    /* --nice 3 lowered the processes' priority (niceness is field 19). */
    pid_t kids[2];
    ck_assert_uint_eq(th_children_of(sup, kids, 2), 2);
    for (int i = 0; i < 2; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)kids[i]);
        FILE *f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        long niceness = 0;
        ck_assert_int_eq(sscanf(strrchr(buf, ')') + 2,
                                "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %ld",
                                &niceness),
                         1);
        int own = getpriority(PRIO_PROCESS, 0);
        ck_assert_int_eq(niceness, own + 3 > 19 ? 19 : own + 3);
    }
    taskq_client_destroy(&c);
}
END_TEST

/* ---- (e) exec runs only with --exec ----------------------------------- */

/* {argv: [argv...]} */
static void pack_exec(msgpack_sbuffer *sb, const char *const *argv)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t n = 0;
    while (argv[n])
        n++;
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "argv", 4);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++)
        msgpack_pack_str_with_body(&pk, argv[i], strlen(argv[i]));
}

/* The value of key in the msgpack map m into *ret: 0, or -1 if absent. */
static int map_get(const msgpack_object *m, const char *key, msgpack_object *ret)
{
    for (uint32_t i = 0; m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0) {
            *ret = kv->val;
            return 0;
        }
    }
    return -1;
}

START_TEST(test_exec_needs_flag)
{
    const char *const plain[] = {"--procs", "1", NULL};
    pid_t sup = pool(plain);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);

    static const char *const cmd[] = {"sh", "-c", "echo hello; echo $TASKQ_ATTEMPT >&2", NULL};
    msgpack_sbuffer sb;
    pack_exec(&sb, cmd);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "exec", sb.data, sb.size, NULL, &f), 0);
    ck_assert_code(taskq_future_wait(f, 500), TASKQ_ETIMEDOUT);
    uint64_t queued = 0, running = 1;
    ck_assert_int_eq(th_stat(c, "queued", &queued), 0);
    ck_assert_int_eq(th_stat(c, "running", &running), 0);
    ck_assert_uint_eq(queued, 1);
    ck_assert_uint_eq(running, 0);
    ck_assert_code(taskq_cancel(f), 0);
    ck_assert_code(taskq_future_wait(f, 5000), TASKQ_ECANCELED);
    taskq_future_destroy(&f);
    int st = th_stop(sup, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "taskq-worker status %d", st);

    const char *const with_exec[] = {"--procs", "1", "--exec", NULL};
    pool(with_exec);
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    ck_assert_code(taskq_submit(c, "exec", sb.data, sb.size, NULL, &f), 0);
    ck_assert_code(taskq_future_wait(f, 20000), 0);
    size_t len;
    const void *r = taskq_future_result(f, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert_int_eq(msgpack_unpack_next(&u, r, len, NULL), MSGPACK_UNPACK_SUCCESS);
    msgpack_object v;
    ck_assert_int_eq(map_get(&u.data, "exit", &v), 0);
    ck_assert_int_eq(v.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ck_assert_uint_eq(v.via.u64, 0);
    ck_assert_int_eq(map_get(&u.data, "stdout", &v), 0);
    ck_assert_int_eq(v.type, MSGPACK_OBJECT_BIN);
    ck_assert_int_eq(v.via.bin.size, 6);
    ck_assert_int_eq(memcmp(v.via.bin.ptr, "hello\n", 6), 0);
    ck_assert_int_eq(map_get(&u.data, "stderr", &v), 0);
    ck_assert_int_eq(v.type, MSGPACK_OBJECT_BIN);
    ck_assert_int_eq(v.via.bin.size, 2);
    ck_assert_int_eq(memcmp(v.via.bin.ptr, "1\n", 2), 0);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- plugin errors, usage, --mem-limit, a second SIGINT --------------- */

START_TEST(test_plugin_errors)
{
    char out[4096];
    const char *const missing[] = {"--broker", broker.endpoint, "--load", "/nonexistent/x.so",
                                   NULL};
    int st = th_run(TASKQ_WORKER_PATH, missing, 10000, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 78, "status %d: %s", st, out);
    ck_assert_msg(strstr(out, "cannot load plugin /nonexistent/x.so: /nonexistent/x.so"), "%s",
                  out);

    setenv("TASKQ_TEST_INIT_FAIL", "1", 1);
    const char *const failing[] = {"--broker", broker.endpoint, "--load", CRASH_PLUGIN_PATH,
                                   NULL};
    st = th_run(TASKQ_WORKER_PATH, failing, 10000, out, sizeof out);
    unsetenv("TASKQ_TEST_INIT_FAIL");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 70, "status %d: %s", st, out);
    ck_assert_msg(strstr(out, "plugin " CRASH_PLUGIN_PATH ": taskq_plugin_init failed"), "%s",
                  out);

    const char *const nothing[] = {"--broker", broker.endpoint, NULL};
    st = th_run(TASKQ_WORKER_PATH, nothing, 10000, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 64, "status %d: %s", st, out);
    const char *const bad_size[] = {"--exec", "--mem-limit", "12X", NULL};
    st = th_run(TASKQ_WORKER_PATH, bad_size, 10000, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 64, "status %d: %s", st, out);
    const char *const help[] = {"--help", NULL};
    st = th_run(TASKQ_WORKER_PATH, help, 10000, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "--max-tasks-per-proc N"));
}
END_TEST

START_TEST(test_mem_limit)
{
#ifndef __SANITIZE_ADDRESS__ /* AddressSanitizer cannot run under an address space limit */
    const char *const args[] = {"--procs", "1", "--mem-limit", "256M", NULL};
    pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    taskq_submit_opts_t once = {.max_attempts = 1};
    taskq_future_t *f = th_submit_int(c, "hog", 0, &once);
    ck_assert_code(taskq_future_wait(f, 20000), TASKQ_EFAILED);
    const char *text = taskq_future_error(f);
    ck_assert_msg(strstr(text, "out of memory (--mem-limit 268435456 bytes): killed by SIGSEGV"),
                  "%s", text);
    taskq_future_destroy(&f);
    f = th_submit_int(c, "work", 1, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
#endif
}
END_TEST

START_TEST(test_grace_over)
{
    const char *const args[] = {"--procs", "1", "--grace", "1", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    taskq_submit_opts_t once = {.max_attempts = 1};
    taskq_future_t *f = th_submit_int(c, "hang", 0, &once);
    ck_assert_code(taskq_client_flush(c), 0);
    wait_pid_note("hang.pid", 10000);

    /* 1 s of grace, then 2 s between SIGTERM (ignored) and SIGKILL. */
    int64_t t0 = th_now_ms();
    kill(sup, SIGTERM);
    int st = th_wait_exit(sup, 10000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "taskq-worker status %d", st);
    ck_assert_int_ge(th_now_ms() - t0, 1000);
    ck_assert_code(taskq_future_wait(f, 10000), TASKQ_EFAILED);
    char want[400];
    snprintf(want, sizeof want, "taskq-worker on %s stopped before the task finished", host);
    ck_assert_str_eq(taskq_future_error(f), want);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_second_sigint_stops_at_once)
{
    const char *const args[] = {"--procs", "1", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 1, 20000), 0);
    taskq_future_t *f = th_submit_int(c, "hang", 0, NULL);
    ck_assert_code(taskq_client_flush(c), 0);
    pid_t hung = wait_pid_note("hang.pid", 10000);

    /* The first SIGINT starts a graceful stop that hang would hold up for
     * the 30 s grace; one of the next ones ends it. */
    int64_t t0 = th_now_ms();
    siginfo_t si = {0};
    for (int i = 0; i < 50 && si.si_pid != sup; i++) {
        kill(sup, SIGINT);
        pause_ms(100);
        waitid(P_PID, (id_t)sup, &si, WEXITED | WNOHANG | WNOWAIT);
    }
    int st = th_wait_exit(sup, 1000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 130, "taskq-worker status %d", st);
    ck_assert_int_lt(th_now_ms() - t0, 5000);
    ck_assert_msg(th_wait_gone(hung, 5000), "process %ld survived", (long)hung);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- the broker restarts; the supervisor dies -------------------------- */

START_TEST(test_broker_restart)
{
    const char *const args[] = {"--procs", "2", NULL};
    pid_t sup = pool(args);
    taskq_client_opts_t co = {.reconnect_limit_ms = 20000};
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, &co, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);

    /* A stopped broker says BYE; a killed one just goes away. */
    static const int sigs[] = {SIGTERM, SIGKILL};
    for (int i = 0; i < 2; i++) {
        th_broker_stop(&broker, sigs[i]);
        ck_assert_int_eq(th_broker_start(&broker, broker.endpoint, fast_hb), 0);
        ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);
        taskq_future_t *f = th_submit_int(c, "work", 1, NULL);
        ck_assert_code(taskq_future_wait(f, 20000), 0);
        taskq_future_destroy(&f);
    }
    ck_assert_int_eq(kill(sup, 0), 0);
    wait_children(sup, 2, 10000);
    taskq_client_destroy(&c);
}
END_TEST

START_TEST(test_supervisor_killed)
{
    const char *const args[] = {"--procs", "2", "--exec", NULL};
    pid_t sup = pool(args);
    taskq_client_t *c = client();
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);
    wait_children(sup, 2, 10000);
    pid_t kids[2];
    ck_assert_uint_eq(th_children_of(sup, kids, 2), 2);

    /* A command started by exec dies with its process too. */
    static const char *const cmd[] = {"sh", "-c", "echo $$ > \"$TASKQ_TEST_DIR/hang.pid\"; "
                                                  "exec sleep 60", NULL};
    msgpack_sbuffer sb;
    pack_exec(&sb, cmd);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "exec", sb.data, sb.size, NULL, &f), 0);
    ck_assert_code(taskq_client_flush(c), 0);
    pid_t command = wait_pid_note("hang.pid", 10000);

    th_stop(sup, SIGKILL);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(th_wait_gone(kids[i], 5000), "process %ld survived", (long)kids[i]);
    ck_assert_msg(th_wait_gone(command, 5000), "command %ld survived", (long)command);
    msgpack_sbuffer_destroy(&sb);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"crash", test_crash_costs_one_task, 120, setup, teardown},
        {"backoff", test_backoff_on_repeated_deaths, 60, setup, teardown},
        {"broken_executor", test_broken_executor, 60, setup, teardown},
        {"run_limit", test_run_limit_kills_process, 60, setup, teardown},
        {"sigterm", test_sigterm_finishes_running, 90, setup, teardown},
        {"recycle", test_max_tasks_per_proc, 60, setup, teardown},
        {"exec", test_exec_needs_flag, 60, setup, teardown},
        {"plugin_errors", test_plugin_errors, 60, setup, teardown},
        {"mem_limit", test_mem_limit, 60, setup, teardown},
        {"grace", test_grace_over, 60, setup, teardown},
        {"second_sigint", test_second_sigint_stops_at_once, 60, setup, teardown},
        {"broker_restart", test_broker_restart, 90, setup, teardown},
        {"supervisor_killed", test_supervisor_killed, 60, setup, teardown},
    };
    return th_run_suite("pool", cases, sizeof cases / sizeof cases[0]);
}
