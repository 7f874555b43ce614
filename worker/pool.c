/*
 * pool.c - taskq-worker's slots: one connection and one executor process
 * each.  The slot's handler forwards every task to its executor and turns
 * what happens (a reply, a crash, a run limit, a stop) into the task's
 * outcome; it starts, recycles and replaces executors, with backoff when
 * they keep dying.
 */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np, sigabbrev_np */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cpus.h"
#include "log.h"
#include "taskq.h"

#define TICK_MS 50            /* how often a waiting slot looks at its flags */
#define KILL_GRACE_MS 2000    /* from SIGTERM (or end of file) to SIGKILL */
#define HELLO_TIMEOUT_MS 60000 /* for an executor to load its plugins */
#define QUICK_DEATH_MS 1000   /* an executor dying younger than this died quickly */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define START_TRIES 3         /* executors a task waits for before it is retried */
#define REJOIN_MS 1000        /* after the broker's BYE, before connecting again */
#define LOW_FDS 10            /* pipes are moved above the descriptors executors get */

/* An executor process, as its slot sees it. */
typedef struct exproc {
    pid_t pid;          /* 0: none */
    int pidfd;          /* readable once the process has ended */
    int req_fd, rep_fd; /* our ends of the request and reply pipes */
    int64_t started_ms;
    uint32_t tasks;     /* tasks it has run */
} exproc_t;

typedef struct slot {
    tw_pool_t *pool;
    unsigned index;
    taskq_worker_t *w;
    pthread_t thread;
    bool started;       /* thread was created */
    exproc_t ex;
    atomic_int pid;     /* ex.pid, for tw_pool_kill() on another thread */
    tw_reader_t rd;     /* the frame being read from ex */
    int64_t spawn_at;   /* ms: no executor starts before this */
    int32_t backoff_ms; /* the delay after the next quick death */
    int result;         /* what taskq_worker_run() returned last */
    char why[512];      /* why the last executor failed to start */
    int died_status;    /* its wait status if it died before HELLO, else -1 */
} slot_t;

struct tw_pool {
    const tw_config_t *cfg;
    char host[256];
    char *argv[10 + 2 * TW_MAX_PLUGINS]; /* the executors' command line */
    char mem_arg[24], nice_arg[16];
    char *hello;          /* the first executor's HELLO body */
    const char *fns[1025]; /* pointers into hello, NULL-terminated */
    unsigned n;
    slot_t *slots;
    int lifeline[2];      /* read end for executors, write end kept */
    int event_fd;         /* a slot's thread ended */
    atomic_uint live;     /* slot threads running */
    atomic_bool stopping; /* take no new tasks */
    atomic_bool aborting; /* kill the running tasks too */
};

enum exchange { X_REPLY, X_DIED, X_BROKEN, X_CANCELLED, X_STOPPED };

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the time at, looking at the stop flag (and t's cancel flag)
 * every tick.  Returns false if they ended the wait. */
static bool wait_until(slot_t *s, taskq_task_t *t, int64_t at)
{
    for (int64_t now = now_ms(); now < at; now = now_ms()) {
        if (atomic_load(&s->pool->stopping) || (t && taskq_task_cancelled(t)))
            return false;
        poll(NULL, 0, (int)(at - now < TICK_MS ? at - now : TICK_MS));
    }
    return true;
}

/* ---- Executor processes -------------------------------------------------- */

/* Move fd above the descriptors an executor is given, close-on-exec. */
static int high_fd(int fd)
{
    if (fd < 0 || fd >= LOW_FDS)
        return fd;
    int h = fcntl(fd, F_DUPFD_CLOEXEC, LOW_FDS);
    close(fd);
    return h;
}

/* End s's executor: send first_sig (if not 0) to its process group and
 * give it KILL_GRACE_MS to end, then SIGKILL whatever is left of the group
 * and reap it.  Returns its wait status. */
static int ex_end(slot_t *s, int first_sig)
{
    exproc_t *ex = &s->ex;
    if (first_sig)
        kill(-ex->pid, first_sig);
    struct pollfd pf = {ex->pidfd, POLLIN, 0};
    poll(&pf, 1, KILL_GRACE_MS);
    /* The leader is at worst a zombie now, so its group id is still ours. */
    kill(-ex->pid, SIGKILL);
    int status = 0;
    while (waitpid(ex->pid, &status, 0) < 0 && errno == EINTR)
        continue;
    close(ex->pidfd);
    close(ex->rep_fd);
    if (ex->req_fd >= 0)
        close(ex->req_fd);
    atomic_store(&s->pid, 0);
    *ex = (exproc_t){0};
    tw_reader_next(&s->rd);
    return status;
}

/* Retire a healthy executor: end of file on its requests makes it exit. */
static void ex_retire(slot_t *s)
{
    close(s->ex.req_fd);
    s->ex.req_fd = -1;
    ex_end(s, 0);
}

/* Describe how an executor ended, for logs and task errors. */
static void describe(char *buf, size_t cap, const tw_pool_t *p, pid_t pid, int status, bool oom)
{
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = sigabbrev_np(sig);
        char mem[64] = "";
        if (oom)
            snprintf(mem, sizeof mem, " out of memory (--mem-limit %" PRIu64 " bytes):",
                     p->cfg->mem_limit);
        snprintf(buf, cap, "process %ld on %s%s killed by SIG%s (signal %d)", (long)pid, p->host,
                 mem, name ? name : "?", sig);
    } else {
        snprintf(buf, cap, "process %ld on %s exited with status %d", (long)pid, p->host,
                 WEXITSTATUS(status));
    }
}

/* After an executor died unexpectedly: a quick death doubles the delay
 * before the next start, a long life clears it. */
static void note_death(slot_t *s, int64_t started_ms)
{
    int64_t now = now_ms();
    if (now - started_ms >= QUICK_DEATH_MS)
        s->backoff_ms = 0;
    else if (s->backoff_ms == 0)
        s->backoff_ms = BACKOFF_MIN_MS;
    else if ((s->backoff_ms *= 2) > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->spawn_at = now + s->backoff_ms;
}

/* Check a HELLO body: names of 1..255 bytes, each NUL-terminated. */
static bool hello_ok(const tw_reader_t *r)
{
    size_t names = 0, start = 0;
    if (r->type != TW_FRAME_HELLO || r->len == 0 || r->body[r->len - 1] != '\0')
        return false;
    for (size_t i = 0; i < r->len; i++) {
        if (r->body[i] != '\0')
            continue;
        if (i == start || i - start > 255 || ++names > 1024)
            return false;
        start = i + 1;
    }
    return true;
}

/* Keep the first HELLO's names: the functions every slot announces. */
static int keep_names(tw_pool_t *p, const tw_reader_t *r)
{
    if (p->hello)
        return 0;
    if (!(p->hello = malloc(r->len)))
        return -ENOMEM;
    memcpy(p->hello, r->body, r->len);
    size_t n = 0;
    for (size_t i = 0; i < r->len; i += strlen(p->hello + i) + 1)
        p->fns[n++] = p->hello + i;
    p->fns[n] = NULL;
    return 0;
}

/* Read the new executor's HELLO.  0, or -1 with s->why set (the executor
 * is ended then). */
static int ex_hello(slot_t *s)
{
    tw_pool_t *p = s->pool;
    int64_t deadline = now_ms() + HELLO_TIMEOUT_MS;
    pid_t pid = s->ex.pid;
    for (;;) {
        int rc = tw_reader_read(&s->rd, s->ex.rep_fd, TW_FRAME_MAX);
        if (rc == 1 && hello_ok(&s->rd) && keep_names(p, &s->rd) == 0) {
            tw_reader_next(&s->rd);
            return 0;
        }
        if (rc == -EPIPE) {
            s->died_status = ex_end(s, 0);
            describe(s->why, sizeof s->why, p, pid, s->died_status, false);
            return -1;
        }
        if (rc != 0 || now_ms() > deadline || atomic_load(&p->aborting)) {
            ex_end(s, SIGKILL);
            snprintf(s->why, sizeof s->why, "process %ld on %s %s", (long)pid, p->host,
                     rc != 0 ? "sent a malformed HELLO" : "did not start in time");
            return -1;
        }
        struct pollfd pf = {s->ex.rep_fd, POLLIN, 0};
        poll(&pf, 1, TICK_MS);
    }
}

/* Start an executor for s and wait for its HELLO.  0, or -1 with s->why
 * (and s->died_status) set. */
static int ex_spawn(slot_t *s)
{
    tw_pool_t *p = s->pool;
    int req[2] = {-1, -1}, rep[2] = {-1, -1};
    s->died_status = -1;
    if (pipe2(req, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
        snprintf(s->why, sizeof s->why, "cannot make pipes: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        req[i] = high_fd(req[i]);
        rep[i] = high_fd(rep[i]);
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, req[0], TW_FD_REQUEST);
    posix_spawn_file_actions_adddup2(&fa, rep[1], TW_FD_REPLY);
    posix_spawn_file_actions_adddup2(&fa, p->lifeline[0], TW_FD_LIFELINE);
    posix_spawn_file_actions_addclosefrom_np(&fa, TW_FD_LIFELINE + 1);
    posix_spawnattr_init(&at);
    /* Its own process group (killed as one, with its commands), default
     * signal actions and an empty mask whatever this thread has. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &at, p->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(req[0]);
    close(rep[1]);
    req[0] = rep[1] = -1;
    if (rc != 0) {
        snprintf(s->why, sizeof s->why, "cannot start a process: %s", strerror(rc));
        goto fail;
    }
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        snprintf(s->why, sizeof s->why, "pidfd_open: %s", strerror(errno));
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        goto fail;
    }
    s->ex = (exproc_t){pid, pidfd, req[1], rep[0], now_ms(), 0};
    atomic_store(&s->pid, pid);
    fcntl(s->ex.req_fd, F_SETFL, O_NONBLOCK);
    fcntl(s->ex.rep_fd, F_SETFL, O_NONBLOCK);
    if (ex_hello(s) != 0)
        return -1;
    TQ_LOG(LOG_INFO, "slot %u: process %ld started", s->index, (long)pid);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (req[i] >= 0)
            close(req[i]);
        if (rep[i] >= 0)
            close(rep[i]);
    }
    return -1;
}

/* Start an executor for s; on failure, log why and put off the next try. */
static void slot_spawn(slot_t *s)
{
    if (ex_spawn(s) != 0) {
        TQ_LOG(LOG_WARNING, "slot %u: no executor: %s", s->index, s->why);
        note_death(s, now_ms());
    }
}

/* Give s a live executor before a task: reap one that died while idle,
 * start a new one (after the backoff delay) if needed.  0, or -1. */
static int slot_ready(slot_t *s, taskq_task_t *t)
{
    struct pollfd pf = {s->ex.pidfd, POLLIN, 0};
    if (s->ex.pid && poll(&pf, 1, 0) == 1) {
        pid_t pid = s->ex.pid;
        int64_t started = s->ex.started_ms;
        int status = ex_end(s, 0);
        describe(s->why, sizeof s->why, s->pool, pid, status, false);
        TQ_LOG(LOG_WARNING, "slot %u: idle %s", s->index, s->why);
        note_death(s, started);
    }
    for (int i = 0; i < START_TRIES && !s->ex.pid; i++) {
        if (!wait_until(s, t, s->spawn_at))
            return -1;
        slot_spawn(s);
    }
    return s->ex.pid ? 0 : -1;
}

/* ---- Running a task ------------------------------------------------------ */

/* Send the request in wr and read frames until the reply.  Notes an OOM
 * frame in *oom. */
static enum exchange exchange(slot_t *s, taskq_task_t *t, tw_writer_t *wr, bool *oom)
{
    bool writing = true, write_failed = false;
    for (;;) {
        if (writing) {
            int rc = tw_writer_write(wr, s->ex.req_fd);
            write_failed = rc < 0; /* gone: its end of file follows */
            writing = rc == 0;
        }
        int rc = tw_reader_read(&s->rd, s->ex.rep_fd, TW_FRAME_MAX);
        if (rc == 1 && s->rd.type == TW_FRAME_OOM && s->rd.len == 0) {
            *oom = true;
            tw_reader_next(&s->rd);
            continue;
        }
        if (rc == 1)
            return !writing && !write_failed && s->rd.type == TW_FRAME_REPLY ? X_REPLY : X_BROKEN;
        if (rc == -EPIPE)
            return X_DIED;
        if (rc < 0)
            return X_BROKEN;
        if (taskq_task_cancelled(t))
            return X_CANCELLED;
        if (atomic_load(&s->pool->aborting))
            return X_STOPPED;
        struct pollfd pf[2] = {{s->ex.rep_fd, POLLIN, 0}, {-1, POLLOUT, 0}};
        if (writing)
            pf[1].fd = s->ex.req_fd;
        poll(pf, 2, TICK_MS);
    }
}

/* Hand the executor's REPLY to the task.  0, or -1 if it is malformed. */
static int deliver(slot_t *s, taskq_task_t *t)
{
    const tw_reader_t *r = &s->rd;
    uint32_t outcome;
    if (r->len < sizeof outcome)
        return -1;
    memcpy(&outcome, r->body, sizeof outcome);
    const char *payload = (const char *)r->body + sizeof outcome;
    int len = (int)(r->len - sizeof outcome); /* below TW_FRAME_MAX */
    switch (outcome) {
    case TW_OUTCOME_RESULT: {
        int rc = taskq_task_set_result(t, payload, (size_t)len);
        if (rc == TASKQ_EINVAL)
            return -1;
        if (rc != 0)
            taskq_task_retry(t, "taskq-worker on %s: %s", s->pool->host, taskq_strerror(rc));
        return 0;
    }
    case TW_OUTCOME_ERROR:
        taskq_task_error(t, "%.*s", len, payload);
        return 0;
    case TW_OUTCOME_RETRY:
        taskq_task_retry(t, "%.*s", len, payload);
        return 0;
    default:
        return -1;
    }
}

/* The handler of every function the pool serves: run t in s's executor. */
static int proxy(taskq_task_t *t, void *ud)
{
    slot_t *s = ud;
    tw_pool_t *p = s->pool;
    if (slot_ready(s, t) != 0) {
        if (taskq_task_cancelled(t))
            return taskq_task_error(t, "abandoned");
        return taskq_task_retry(t, "taskq-worker on %s could not start a process: %s", p->host,
                                s->why);
    }
    const char *fn = taskq_task_function(t);
    size_t arg_len;
    const void *arg = taskq_task_arg(t, &arg_len);
    tw_request_head_t h = {taskq_task_job_id(t), taskq_task_seed(t), taskq_task_attempt(t),
                           (uint32_t)strlen(fn)};
    struct iovec parts[3] = {{&h, sizeof h}, {(void *)fn, h.fn_len}, {(void *)arg, arg_len}};
    tw_writer_t wr;
    if (tw_writer_start(&wr, TW_FRAME_REQUEST, parts, 3) != 0)
        return taskq_task_error(t, "the argument is larger than taskq-worker can carry");

    bool oom = false;
    enum exchange x = exchange(s, t, &wr, &oom);
    pid_t pid = s->ex.pid;
    int rc = 0;
    if (x == X_REPLY && deliver(s, t) == 0) {
        tw_reader_next(&s->rd);
        if (++s->ex.tasks == p->cfg->max_tasks) {
            ex_retire(s);
            TQ_LOG(LOG_INFO, "slot %u: process %ld retired after %u tasks", s->index, (long)pid,
                   p->cfg->max_tasks);
        }
    } else if (x == X_CANCELLED || x == X_STOPPED) {
        ex_end(s, SIGTERM);
        TQ_LOG(LOG_INFO, "slot %u: job %" PRIu64 " %s: process %ld stopped", s->index, h.job_id,
               x == X_CANCELLED ? "abandoned" : "cut short", (long)pid);
        rc = x == X_CANCELLED ? taskq_task_error(t, "abandoned")
                              : taskq_task_retry(t, "taskq-worker on %s stopped before the "
                                                    "task finished", p->host);
    } else {
        char why[400];
        int64_t started = s->ex.started_ms;
        int status = ex_end(s, x == X_DIED ? 0 : SIGKILL);
        if (x == X_DIED)
            describe(why, sizeof why, p, pid, status, oom);
        else
            snprintf(why, sizeof why, "process %ld on %s sent a malformed reply", (long)pid,
                     p->host);
        TQ_LOG(LOG_WARNING, "slot %u: job %" PRIu64 " (%s, attempt %u): %s", s->index, h.job_id,
               fn, h.attempt, why);
        note_death(s, started);
        rc = taskq_task_retry(t, "%s", why);
    }
    /* Replace the executor now, so that the pool is whole between tasks. */
    if (!s->ex.pid && !atomic_load(&p->stopping) && wait_until(s, NULL, s->spawn_at))
        slot_spawn(s);
    return rc;
}

/* ---- Slots --------------------------------------------------------------- */

static void *slot_main(void *arg)
{
    slot_t *s = arg;
    tw_pool_t *p = s->pool;
    if (!s->ex.pid)
        slot_spawn(s); /* if it fails, the first task tries again */
    while (!atomic_load(&p->stopping)) {
        s->result = taskq_worker_run(s->w);
        if (atomic_load(&p->stopping) || s->result != 0)
            break;
        TQ_LOG(LOG_NOTICE, "slot %u: the broker said goodbye; connecting again", s->index);
        wait_until(s, NULL, now_ms() + REJOIN_MS);
    }
    if (s->result != 0)
        TQ_LOG(LOG_ERR, "slot %u: cannot serve %s: %s (%s)", s->index, p->cfg->broker,
               taskq_strerror(s->result), taskq_errname(s->result));
    if (s->ex.pid)
        ex_retire(s);
    atomic_fetch_sub(&p->live, 1);
    uint64_t one = 1;
    ssize_t n = write(p->event_fd, &one, sizeof one);
    (void)n; /* a full counter still wakes the reader */
    return NULL;
}

/* The executors' command line: the pool's options they act on. */
static void build_argv(tw_pool_t *p)
{
    const tw_config_t *cfg = p->cfg;
    size_t n = 0;
    p->argv[n++] = (char *)cfg->argv0;
    p->argv[n++] = (char *)"--executor";
    p->argv[n++] = (char *)"--log-level";
    p->argv[n++] = (char *)cfg->log_level;
    if (cfg->exec)
        p->argv[n++] = (char *)"--exec";
    if (cfg->mem_limit) {
        snprintf(p->mem_arg, sizeof p->mem_arg, "%" PRIu64, cfg->mem_limit);
        p->argv[n++] = (char *)"--mem-limit";
        p->argv[n++] = p->mem_arg;
    }
    if (cfg->nice) {
        snprintf(p->nice_arg, sizeof p->nice_arg, "%" PRIu32, cfg->nice);
        p->argv[n++] = (char *)"--nice";
        p->argv[n++] = p->nice_arg;
    }
    for (size_t i = 0; i < cfg->n_plugins; i++) {
        p->argv[n++] = (char *)"--load";
        p->argv[n++] = (char *)cfg->plugins[i];
    }
    p->argv[n] = NULL;
}

/* Create slot i's connection, announcing every function of the pool. */
static int slot_init(tw_pool_t *p, unsigned i)
{
    const tw_config_t *cfg = p->cfg;
    slot_t *s = &p->slots[i];
    s->pool = p;
    s->index = i;
    char name[256];
    if (cfg->name)
        snprintf(name, sizeof name, "%s/%u", cfg->name, i);
    else
        snprintf(name, sizeof name, "%.200s-%ld/%u", p->host, (long)getpid(), i);
    static const char *const default_queues[] = {"default", NULL};
    taskq_worker_opts_t o = {
        .name = name,
        .threads = 1,
        .prefetch = 1,
        .queues = cfg->n_queues ? (const char **)cfg->queues : (const char **)default_queues,
        .curve_server_key = cfg->curve_server_key,
        .curve_key = cfg->curve_key,
    };
    int rc = taskq_worker_new(cfg->broker, &o, &s->w);
    for (size_t f = 0; rc == 0 && p->fns[f]; f++)
        rc = taskq_worker_register(s->w, p->fns[f], proxy, s);
    if (rc != 0)
        TQ_LOG(LOG_ERR, "cannot set up connection %u: %s", i, taskq_strerror(rc));
    return rc;
}

int tw_pool_new(const tw_config_t *cfg, tw_pool_t **ret_pool)
{
    tw_pool_t *p = calloc(1, sizeof *p);
    if (!p) {
        TQ_LOG(LOG_ERR, "out of memory");
        return EX_OSERR;
    }
    p->cfg = cfg;
    p->lifeline[0] = p->lifeline[1] = p->event_fd = -1;
    if (gethostname(p->host, sizeof p->host - 1) != 0)
        snprintf(p->host, sizeof p->host, "localhost");
    if (cfg->procs) {
        p->n = cfg->procs;
    } else {
        unsigned cpus = tw_cpus_usable();
        p->n = cpus > 1 ? cpus - 1 : 1;
    }
    build_argv(p);
    int code = EX_OSERR;
    p->slots = calloc(p->n, sizeof *p->slots);
    if (!p->slots || pipe2(p->lifeline, O_CLOEXEC) != 0 ||
        (p->lifeline[0] = high_fd(p->lifeline[0])) < 0 ||
        (p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        TQ_LOG(LOG_ERR, "cannot set up the pool: %s", strerror(errno));
        goto fail;
    }
    p->slots[0].pool = p;
    if (ex_spawn(&p->slots[0]) != 0) {
        /* The executor logged the details; pass its verdict on. */
        int st = p->slots[0].died_status;
        int exited = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : 0;
        TQ_LOG(LOG_ERR, "the first executor did not start: %s", p->slots[0].why);
        code = exited == EX_USAGE || exited == EX_CONFIG || exited == EX_OSERR ? exited
                                                                              : EX_SOFTWARE;
        goto fail;
    }
    for (unsigned i = 0; i < p->n; i++) {
        if (slot_init(p, i) != 0)
            goto fail;
    }
    *ret_pool = p;
    return 0;
fail:
    tw_pool_destroy(&p);
    return code;
}

int tw_pool_start(tw_pool_t *p)
{
    const tw_config_t *cfg = p->cfg;
    char fns[512] = "", queues[512] = "";
    for (size_t i = 0, len = 0; p->fns[i] && len < sizeof fns; i++)
        len += (size_t)snprintf(fns + len, sizeof fns - len, "%s%s", i ? ", " : "", p->fns[i]);
    for (size_t i = 0, len = 0; i < cfg->n_queues && len < sizeof queues; i++)
        len += (size_t)snprintf(queues + len, sizeof queues - len, "%s%s", i ? ", " : "",
                                cfg->queues[i]);
    TQ_LOG(LOG_NOTICE, "taskq-worker %s: %u process%s serving %s on %s for %s",
           TASKQ_VERSION_STRING, p->n, p->n == 1 ? "" : "es", fns,
           cfg->n_queues ? queues : "default", cfg->broker);
    for (unsigned i = 0; i < p->n; i++) {
        slot_t *s = &p->slots[i];
        atomic_fetch_add(&p->live, 1);
        int rc = pthread_create(&s->thread, NULL, slot_main, s);
        if (rc != 0) {
            atomic_fetch_sub(&p->live, 1);
            TQ_LOG(LOG_ERR, "cannot start slot %u: %s", i, strerror(rc));
            return -rc;
        }
        s->started = true;
    }
    return 0;
}

int tw_pool_event_fd(const tw_pool_t *p)
{
    return p->event_fd;
}

unsigned tw_pool_live(tw_pool_t *p)
{
    uint64_t v;
    ssize_t n = read(p->event_fd, &v, sizeof v);
    (void)n; /* empty already: nothing to clear */
    return atomic_load(&p->live);
}

unsigned tw_pool_size(const tw_pool_t *p)
{
    return p->n;
}

void tw_pool_stop(tw_pool_t *p)
{
    if (atomic_exchange(&p->stopping, true))
        return;
    for (unsigned i = 0; i < p->n; i++)
        taskq_worker_stop(p->slots[i].w);
}

void tw_pool_abort(tw_pool_t *p)
{
    atomic_store(&p->aborting, true);
}

void tw_pool_kill(tw_pool_t *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        pid_t pid = atomic_load(&p->slots[i].pid);
        if (pid > 0)
            kill(-pid, SIGKILL);
    }
}

int tw_pool_join(tw_pool_t *p)
{
    int code = 0;
    for (unsigned i = 0; p->slots && i < p->n; i++) {
        slot_t *s = &p->slots[i];
        if (s->started)
            pthread_join(s->thread, NULL);
        s->started = false;
        if (s->result != 0)
            code = s->result == TASKQ_EINVAL    ? EX_USAGE
                   : s->result == TASKQ_EDENIED ? EX_NOPERM
                                                : EX_UNAVAILABLE;
    }
    return code;
}

void tw_pool_destroy(tw_pool_t **pp)
{
    tw_pool_t *p = pp ? *pp : NULL;
    if (!p)
        return;
    *pp = NULL;
    tw_pool_join(p);
    for (unsigned i = 0; p->slots && i < p->n; i++) {
        slot_t *s = &p->slots[i];
        if (s->ex.pid)
            ex_retire(s);
        tw_reader_fini(&s->rd);
        taskq_worker_destroy(&s->w);
    }
    for (int i = 0; i < 2; i++) {
        if (p->lifeline[i] >= 0)
            close(p->lifeline[i]);
    }
    if (p->event_fd >= 0)
        close(p->event_fd);
    free(p->hello);
    free(p->slots);
    free(p);
}
