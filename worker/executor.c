/*
 * executor.c - the frames of the pipe protocol (reading and writing), and
 * the executor process: limits, plugins, the lifeline watch, the
 * fatal-signal handler that tells an out-of-memory death from others, and
 * the loop that runs one task per REQUEST.
 */
#include "executor.h"
#include "log.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#include "exec.h"
#include "taskq.h"

#define ALT_STACK_SIZE (64 * 1024)

/* ---- Frames ------------------------------------------------------------ */

int tw_reader_read(tw_reader_t *r, int fd, uint32_t max_len)
{
    while (r->head_got < sizeof r->head || r->got < r->len) {
        uint8_t *dst;
        size_t want;
        if (r->head_got < sizeof r->head) {
            dst = r->head + r->head_got;
            want = sizeof r->head - r->head_got;
        } else {
            if (r->got == r->cap) {
                /* Grow with the bytes that arrive, not with the header's claim. */
                size_t cap = r->cap ? r->cap * 2 : 65536;
                if (cap > r->len)
                    cap = r->len;
                uint8_t *body = realloc(r->body, cap);
                if (!body)
                    return -ENOMEM;
                r->body = body;
                r->cap = cap;
            }
            dst = r->body + r->got;
            want = r->cap - r->got;
        }
        ssize_t n = read(fd, dst, want);
        if (n == 0)
            return -EPIPE;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        if (r->head_got < sizeof r->head) {
            r->head_got += (size_t)n;
            if (r->head_got == sizeof r->head) {
                memcpy(&r->type, r->head, sizeof r->type);
                memcpy(&r->len, r->head + sizeof r->type, sizeof r->len);
                if (r->len > max_len)
                    return -EPROTO;
            }
        } else {
            r->got += (size_t)n;
        }
    }
    return 1;
}

void tw_reader_next(tw_reader_t *r)
{
    r->head_got = 0;
    r->got = 0;
    r->type = 0;
    r->len = 0;
}

void tw_reader_fini(tw_reader_t *r)
{
    free(r->body);
    *r = (tw_reader_t){0};
}

int tw_writer_start(tw_writer_t *w, uint32_t type, const struct iovec *parts, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        if (parts[i].iov_len > TW_FRAME_MAX - len)
            return -EMSGSIZE;
        len += parts[i].iov_len;
    }
    uint32_t len32 = (uint32_t)len;
    memcpy(w->head, &type, sizeof type);
    memcpy(w->head + sizeof type, &len32, sizeof len32);
    w->iov[0] = (struct iovec){w->head, sizeof w->head};
    w->n = 1;
    for (int i = 0; i < n; i++) {
        if (parts[i].iov_len)
            w->iov[w->n++] = parts[i];
    }
    return 0;
}

int tw_writer_write(tw_writer_t *w, int fd)
{
    while (w->n > 0) {
        ssize_t k = writev(fd, w->iov, w->n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        int done = 0;
        while (done < w->n && (size_t)k >= w->iov[done].iov_len)
            k -= (ssize_t)w->iov[done++].iov_len;
        memmove(w->iov, w->iov + done, (size_t)(w->n - done) * sizeof *w->iov);
        w->n -= done;
        if (w->n) {
            w->iov[0].iov_base = (uint8_t *)w->iov[0].iov_base + k;
            w->iov[0].iov_len -= (size_t)k;
        }
    }
    return 1;
}

/* ---- Dying --------------------------------------------------------------- */

/*
 * What the fatal-signal handler reads: set once before the handler is
 * installed, apart from in_task, which brackets each task.  A signal
 * handler has no other way to reach it.  The handler's stack is kept here
 * too, for as long as the process lives.
 */
static struct {
    uint64_t mem_limit;
    uint64_t page_size;
    volatile sig_atomic_t in_task;
    void *alt_stack;
} dying;

/* Whether the process looks out of memory: the failed call before the
 * crash said so, or little of the address space limit is left. */
static bool out_of_memory(int err)
{
    if (err == ENOMEM)
        return true;
    char buf[64];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    uint64_t pages = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
        pages = pages * 10 + (uint64_t)(buf[i] - '0');
    return pages * dying.page_size + dying.mem_limit / 16 >= dying.mem_limit;
}

/* SA_RESETHAND restored the default action: raising the signal again ends
 * the process with it, as the supervisor expects to see. */
static void on_fatal(int sig)
{
    int err = errno;
    if (dying.in_task && dying.mem_limit && out_of_memory(err)) {
        static const uint32_t oom[2] = {TW_FRAME_OOM, 0};
        ssize_t n = write(TW_FD_REPLY, oom, sizeof oom);
        (void)n;
    }
    raise(sig);
}

static int catch_fatal_signals(const tw_config_t *cfg)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE};
    dying.mem_limit = cfg->mem_limit;
    dying.page_size = (uint64_t)sysconf(_SC_PAGESIZE);
    /* An alternate stack, so that a stack overflow is reported too. */
    stack_t ss = {.ss_sp = dying.alt_stack = malloc(ALT_STACK_SIZE), .ss_size = ALT_STACK_SIZE};
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
        return -1;
    struct sigaction sa = {.sa_handler = on_fatal, .sa_flags = SA_RESETHAND | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &sa, NULL);
    return 0;
}

/* The lifeline watch: when the supervisor is gone, take this process group
 * (this executor and any command it started) down with it. */
static void *watch_lifeline(void *arg)
{
    struct pollfd p = {TW_FD_LIFELINE, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        continue;
    kill(0, SIGKILL);
    return NULL;
}

static int start_lifeline_watch(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the main thread */
    pthread_attr_t attr;
    pthread_t tid;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        rc = pthread_create(&tid, &attr, watch_lifeline, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ---- Starting ------------------------------------------------------------ */

static bool has_function(const taskq_worker_t *w, const char *name)
{
    const char *f;
    for (size_t i = 0; (f = taskq_worker_function(w, i)) != NULL; i++) {
        if (strcmp(f, name) == 0)
            return true;
    }
    return false;
}

/* Load every plugin and let it register its functions.  Returns 0 or the
 * exit status, after logging why. */
static int load_plugins(const tw_config_t *cfg, taskq_worker_t *w)
{
    for (size_t i = 0; i < cfg->n_plugins; i++) {
        const char *path = cfg->plugins[i];
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            TQ_LOG(LOG_ERR, "cannot load plugin %s: %s", path, dlerror());
            return EX_CONFIG;
        }
        int (*init)(taskq_worker_t *) = (int (*)(taskq_worker_t *))dlsym(h, "taskq_plugin_init");
        if (!init) {
            TQ_LOG(LOG_ERR, "plugin %s has no taskq_plugin_init: %s", path, dlerror());
            return EX_CONFIG;
        }
        bool had_exec = has_function(w, "exec");
        int rc = init(w);
        if (rc != 0) {
            TQ_LOG(LOG_ERR, "plugin %s: taskq_plugin_init failed: %s (%d)", path,
                   taskq_strerror(rc), rc);
            return EX_SOFTWARE;
        }
        if (!had_exec && has_function(w, "exec")) {
            TQ_LOG(LOG_ERR, "plugin %s registers \"exec\", the name of the built-in function",
                   path);
            return EX_CONFIG;
        }
    }
    return 0;
}

static int write_frame(uint32_t type, const struct iovec *parts, int n)
{
    tw_writer_t wr;
    int rc = tw_writer_start(&wr, type, parts, n);
    while (rc == 0)
        rc = tw_writer_write(&wr, TW_FD_REPLY);
    return rc < 0 ? rc : 0;
}

static int send_hello(const taskq_worker_t *w)
{
    const char *f;
    size_t len = 0;
    for (size_t i = 0; (f = taskq_worker_function(w, i)) != NULL; i++)
        len += strlen(f) + 1;
    char *body = malloc(len);
    if (!body)
        return -ENOMEM;
    len = 0;
    for (size_t i = 0; (f = taskq_worker_function(w, i)) != NULL; i++) {
        size_t n = strlen(f) + 1;
        memcpy(body + len, f, n);
        len += n;
    }
    struct iovec names = {body, len};
    int rc = write_frame(TW_FRAME_HELLO, &names, 1);
    free(body);
    return rc;
}

/* ---- Serving ------------------------------------------------------------- */

/* Run the REQUEST in r and write its REPLY.  0, -EPROTO (not a valid
 * REQUEST) or the error of writing. */
static int run_request(taskq_worker_t *w, const tw_reader_t *r)
{
    tw_request_head_t h;
    if (r->type != TW_FRAME_REQUEST || r->len < sizeof h)
        return -EPROTO;
    memcpy(&h, r->body, sizeof h);
    if (h.fn_len == 0 || h.fn_len > 255 || h.fn_len > r->len - sizeof h)
        return -EPROTO;
    char fn[256];
    memcpy(fn, r->body + sizeof h, h.fn_len);
    fn[h.fn_len] = '\0';
    size_t skip = sizeof h + h.fn_len;

    void *out = NULL;
    size_t out_len = 0;
    dying.in_task = 1;
    int rc = taskq_worker_call(w, fn, h.job_id, h.attempt, h.seed, r->body + skip,
                               r->len - skip, &out, &out_len);
    dying.in_task = 0;
    uint32_t outcome = rc == 0 ? TW_OUTCOME_RESULT
                       : rc == TASKQ_ERETRY || rc == TASKQ_ENOMEM ? TW_OUTCOME_RETRY
                                                                  : TW_OUTCOME_ERROR;
    const char *text = rc == TASKQ_ENOMEM ? "out of memory"
                       : rc == TASKQ_EINVAL ? "no such function, or a malformed argument"
                                            : NULL;
    struct iovec parts[2] = {{&outcome, sizeof outcome},
                             {text ? (void *)text : out, text ? strlen(text) : out_len}};
    int wrc = write_frame(TW_FRAME_REPLY, parts, 2);
    if (wrc == -EMSGSIZE) {
        static const char big[] = "the result is larger than taskq-worker can carry";
        outcome = TW_OUTCOME_ERROR;
        parts[1] = (struct iovec){(void *)big, sizeof big - 1};
        wrc = write_frame(TW_FRAME_REPLY, parts, 2);
    }
    free(out);
    return wrc;
}

static int serve(taskq_worker_t *w)
{
    tw_reader_t r = {0};
    int rc;
    for (;;) {
        while ((rc = tw_reader_read(&r, TW_FD_REQUEST, TW_FRAME_MAX)) == 0)
            continue;
        if (rc < 0 || (rc = run_request(w, &r)) < 0)
            break;
        tw_reader_next(&r);
    }
    tw_reader_fini(&r);
    if (rc == -EPIPE)
        return 0; /* the supervisor closed the request pipe: leave */
    TQ_LOG(LOG_ERR, "executor %ld: pipe to the supervisor: %s", (long)getpid(), strerror(-rc));
    return EX_PROTOCOL;
}

int tw_executor_main(const tw_config_t *cfg)
{
    for (int fd = TW_FD_REQUEST; fd <= TW_FD_LIFELINE; fd++) {
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            TQ_LOG(LOG_ERR, "--executor is taskq-worker's own: descriptors 3 to 5 are missing");
            return EX_USAGE;
        }
    }
    errno = 0;
    if (cfg->nice && nice((int)cfg->nice) == -1 && errno)
        TQ_LOG(LOG_WARNING, "cannot lower the priority by %u: %s", cfg->nice, strerror(errno));
    struct rlimit rl = {cfg->mem_limit, cfg->mem_limit};
    if (cfg->mem_limit && setrlimit(RLIMIT_AS, &rl) != 0) {
        TQ_LOG(LOG_ERR, "cannot set the memory limit: %s", strerror(errno));
        return EX_OSERR;
    }
    if (start_lifeline_watch() != 0 || catch_fatal_signals(cfg) != 0) {
        TQ_LOG(LOG_ERR, "executor %ld cannot start: %s", (long)getpid(), strerror(errno));
        return EX_OSERR;
    }
    taskq_worker_t *w = NULL;
    int rc = taskq_worker_new(NULL, NULL, &w);
    if (rc != 0) {
        TQ_LOG(LOG_ERR, "executor %ld cannot start: %s", (long)getpid(), taskq_strerror(rc));
        return EX_OSERR;
    }
    tw_exec_config_t exec_cfg = {0};
    int code = load_plugins(cfg, w);
    if (!code && cfg->exec && (rc = taskq_worker_register(w, "exec", tw_exec_handler,
                                                          &exec_cfg)) != 0) {
        TQ_LOG(LOG_ERR, "cannot register exec: %s", taskq_strerror(rc));
        code = EX_SOFTWARE;
    }
    if (!code && !taskq_worker_function(w, 0)) {
        TQ_LOG(LOG_ERR, "the plugins registered no function: nothing to serve");
        code = EX_CONFIG;
    }
    if (!code && (rc = send_hello(w)) != 0) {
        TQ_LOG(LOG_ERR, "executor %ld: pipe to the supervisor: %s", (long)getpid(),
               strerror(-rc));
        code = EX_PROTOCOL;
    }
    if (!code)
        code = serve(w);
    taskq_worker_destroy(&w);
    return code;
}
