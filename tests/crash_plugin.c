/*
 * crash_plugin.c - a taskq-worker plugin for the pool tests: functions
 * that work, crash (SIGSEGV, abort), hang past their run limit, sleep, eat
 * memory, or break the executor's pipe protocol.  They leave notes (their pid, the jobs they ran) in the
 * directory named by $TASKQ_TEST_DIR, the tests' side channel.
 */
#include <fcntl.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "taskq.h"

/* Append (or with trunc, write) one line to $TASKQ_TEST_DIR/name. */
static void note(const char *name, bool trunc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void note(const char *name, bool trunc, const char *fmt, ...)
{
    const char *dir = getenv("TASKQ_TEST_DIR");
    char path[512], line[256];
    if (!dir)
        return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (trunc ? O_TRUNC : O_APPEND), 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    close(fd);
}

static int arg_int(taskq_task_t *t, int64_t *ret)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = -1;
    if (msgpack_unpack_next(&u, arg, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        if (u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && u.data.via.u64 <= INT64_MAX) {
            *ret = (int64_t)u.data.via.u64;
            rc = 0;
        } else if (u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *ret = u.data.via.i64;
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static int reply_pid(taskq_task_t *t)
{
    uint8_t buf[9];
    uint64_t pid = (uint64_t)getpid();
    buf[0] = 0xcf; /* uint 64, big-endian */
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)(pid >> (56 - 8 * i));
    return taskq_task_set_result(t, buf, sizeof buf);
}

/* A real invalid write, not a raised signal; the sanitizers stand aside. */
__attribute__((no_sanitize("address", "undefined"))) static void segfault(void)
{
    volatile int *volatile p = NULL;
    *p = 1;
}

/* work(i): the pid of the process that ran it; work(-1) dies of SIGSEGV. */
static int fn_work(taskq_task_t *t, void *ud)
{
    int64_t i;
    if (arg_int(t, &i) != 0)
        return taskq_task_error(t, "work: argument is not an integer");
    if (i == -1) {
        note("crash.pid", true, "%ld\n", (long)getpid());
        segfault();
    }
    return reply_pid(t);
}

static int fn_abort(taskq_task_t *t, void *ud)
{
    note("abort.pid", true, "%ld\n", (long)getpid());
    abort();
}

/* Waits for a signal that never comes, ignoring SIGTERM: in taskq-worker
 * only SIGKILL ends it. */
static int fn_hang(taskq_task_t *t, void *ud)
{
    signal(SIGTERM, SIG_IGN);
    note("hang.pid", true, "%ld\n", (long)getpid());
    while (!taskq_task_cancelled(t))
        pause();
    return taskq_task_error(t, "hang: abandoned");
}

/* sleep(ms): notes "job attempt pid supervisor" in runs.log, sleeps, and
 * returns the pid. */
static int fn_sleep(taskq_task_t *t, void *ud)
{
    int64_t ms;
    if (arg_int(t, &ms) != 0 || ms < 0)
        return taskq_task_error(t, "sleep: argument is not a duration in ms");
    note("runs.log", false, "%llu %u %ld %ld\n", (unsigned long long)taskq_task_job_id(t),
         taskq_task_attempt(t), (long)getpid(), (long)getppid());
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        continue;
    return reply_pid(t);
}

/* Allocate (without touching) 1 MiB blocks until one fails, then use the
 * failed one, as careless code does. */
__attribute__((no_sanitize("address", "undefined"))) static int fn_hog(taskq_task_t *t,
                                                                        void *ud)
{
    for (int i = 0; i < 1 << 20; i++) {
        volatile char *volatile p = malloc(1 << 20);
        p[0] = 1;
    }
    return reply_pid(t);
}

/* garble(k): write a broken frame on descriptor 4, the executor's reply
 * pipe to its supervisor (see worker/executor.h), and wait to be killed:
 * k = 0, a header claiming 4 GiB; 1, a REPLY with an unknown outcome; 2, a
 * REPLY whose result is not msgpack. */
static int fn_garble(taskq_task_t *t, void *ud)
{
    static const uint32_t frames[3][3] = {
        {2, 0xffffffffu, 0}, /* type REPLY, length 4 GiB */
        {2, 4, 7},           /* REPLY of 4 bytes: outcome 7 */
        {2, 5, 0},           /* REPLY of 5 bytes: outcome RESULT, then 0xc1 */
    };
    static const uint8_t never_used = 0xc1;
    int64_t k;
    if (arg_int(t, &k) != 0 || k < 0 || k > 2)
        return taskq_task_error(t, "garble: argument is not 0, 1 or 2");
    ssize_t n = write(4, frames[k], k == 0 ? 8 : 12);
    if (k == 2)
        n = write(4, &never_used, 1);
    (void)n;
    while (!taskq_task_cancelled(t))
        pause();
    return 0;
}

int taskq_plugin_init(taskq_worker_t *w)
{
    static const struct {
        const char *name;
        taskq_handler_fn fn;
    } fns[] = {{"work", fn_work}, {"abort", fn_abort}, {"hang", fn_hang},
               {"sleep", fn_sleep}, {"hog", fn_hog}, {"garble", fn_garble}};
    if (getenv("TASKQ_TEST_INIT_FAIL"))
        return TASKQ_EINVAL;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int rc = taskq_worker_register(w, fns[i].name, fns[i].fn, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}
