/*
 * exec.c - the built-in function `exec`: check the argument map, build the
 * command's argv and environment, start it with fork and execvp, feed its
 * stdin and drain its stdout and stderr in one poll loop, reap it with
 * wait4 and answer with the result map.
 */
#define _GNU_SOURCE /* pipe2, close_range */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"

extern char **environ;

/* Bytes written to stdin, or read from an output, per call. */
#define IO_CHUNK 65536
/* Bytes of a key, program or directory quoted in an error text. */
#define QUOTE_MAX 128

/* One name=value pair of the task's env (not NUL-terminated). */
typedef struct env_pair {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} env_pair_t;

/* The checked argument; pointers into the unpacked object. */
typedef struct exec_args {
    const msgpack_object_array *argv;
    const msgpack_object_str *cwd; /* NULL: the caller's */
    const char *in;                /* stdin bytes; NULL: none */
    size_t in_len;
    env_pair_t *env;               /* n_env pairs sorted by name (malloc'ed) */
    size_t n_env;
} exec_args_t;

/* What the child needs, built before fork so the child only copies
 * descriptors and calls execvp. */
typedef struct exec_plan {
    char **argv;  /* NULL-terminated */
    char **envp;  /* NULL-terminated */
    char *cwd;    /* NULL: stay */
    char *arena;  /* the strings argv, envp and cwd point into */
} exec_plan_t;

/* A captured output stream. */
typedef struct capture {
    int fd;       /* read end; -1 after end of file */
    char *data;
    size_t len, cap;
} capture_t;

/* What the child reports through its close-on-exec pipe when it fails. */
typedef struct child_failure {
    int in_chdir; /* 1: chdir failed, 0: execvp failed */
    int err;      /* errno */
} child_failure_t;

/* ---- Argument ---------------------------------------------------------- */

/* Copy len bytes of s into buf (cap >= QUOTE_MAX + 4) for an error text,
 * with bytes outside printable ASCII shown as '?' and a long s cut. */
static const char *quote(char *buf, const char *s, size_t len)
{
    size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;
    for (size_t i = 0; i < n; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    strcpy(buf + n, len > n ? "..." : "");
    return buf;
}

static bool str_is(const msgpack_object_str *s, const char *lit)
{
    return s->size == strlen(lit) && memcmp(s->ptr, lit, s->size) == 0;
}

static int env_pair_cmp(const void *a, const void *b)
{
    const env_pair_t *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int check_argv(taskq_task_t *t, const msgpack_object *o, exec_args_t *a)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
        o->via.array.size > TW_EXEC_MAX_ITEMS)
        return taskq_task_error(t, "exec: argv must be an array of 1 to %d str",
                                TW_EXEC_MAX_ITEMS);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *s = &o->via.array.ptr[i];
        if (s->type != MSGPACK_OBJECT_STR)
            return taskq_task_error(t, "exec: argv[%" PRIu32 "] is not a str", i);
        if (memchr(s->via.str.ptr, '\0', s->via.str.size))
            return taskq_task_error(t, "exec: argv[%" PRIu32 "] holds a NUL byte", i);
    }
    if (o->via.array.ptr[0].via.str.size == 0)
        return taskq_task_error(t, "exec: argv[0] is empty");
    a->argv = &o->via.array;
    return 0;
}

static int check_env(taskq_task_t *t, const msgpack_object *o, exec_args_t *a)
{
    char q[QUOTE_MAX + 4];
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size > TW_EXEC_MAX_ITEMS)
        return taskq_task_error(t, "exec: env must be a map of at most %d str: str pairs",
                                TW_EXEC_MAX_ITEMS);
    a->n_env = o->via.map.size;
    a->env = malloc((a->n_env ? a->n_env : 1) * sizeof *a->env);
    if (!a->env)
        return taskq_task_retry(t, "exec: out of memory");
    for (size_t i = 0; i < a->n_env; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
            return taskq_task_error(t, "exec: env must map str names to str values");
        const msgpack_object_str *ks = &k->via.str, *vs = &v->via.str;
        if (ks->size == 0 || memchr(ks->ptr, '=', ks->size) || memchr(ks->ptr, '\0', ks->size))
            return taskq_task_error(t, "exec: env name \"%s\" is empty or holds '=' or NUL",
                                    quote(q, ks->ptr, ks->size));
        if (memchr(vs->ptr, '\0', vs->size))
            return taskq_task_error(t, "exec: env value of \"%s\" holds a NUL byte",
                                    quote(q, ks->ptr, ks->size));
        a->env[i] = (env_pair_t){ks->ptr, ks->size, vs->ptr, vs->size};
    }
    qsort(a->env, a->n_env, sizeof *a->env, env_pair_cmp);
    for (size_t i = 1; i < a->n_env; i++)
        if (env_pair_cmp(&a->env[i - 1], &a->env[i]) == 0)
            return taskq_task_error(t, "exec: env names \"%s\" twice",
                                    quote(q, a->env[i].name, a->env[i].name_len));
    return 0;
}

/* Check the task's argument into *a (a->env to be freed by the caller
 * whatever the outcome); on failure the error is set on t. */
static int check_args(taskq_task_t *t, const msgpack_object *o, exec_args_t *a)
{
    static const char *const keys[] = {"argv", "stdin", "env", "cwd"};
    bool seen[4] = {false};
    char q[QUOTE_MAX + 4];

    if (o->type != MSGPACK_OBJECT_MAP)
        return taskq_task_error(t, "exec: the argument must be a map with argv");
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return taskq_task_error(t, "exec: argument keys must be str");
        size_t which = 0;
        while (which < 4 && !str_is(&k->via.str, keys[which]))
            which++;
        if (which == 4)
            return taskq_task_error(t, "exec: unknown key \"%s\" (known: argv, stdin, env, cwd)",
                                    quote(q, k->via.str.ptr, k->via.str.size));
        if (seen[which])
            return taskq_task_error(t, "exec: key \"%s\" appears twice", keys[which]);
        seen[which] = true;
        int rc = 0;
        switch (which) {
        case 0:
            rc = check_argv(t, v, a);
            break;
        case 1:
            if (v->type == MSGPACK_OBJECT_BIN) {
                a->in = v->via.bin.ptr ? v->via.bin.ptr : "";
                a->in_len = v->via.bin.size;
            } else if (v->type == MSGPACK_OBJECT_STR) {
                a->in = v->via.str.ptr ? v->via.str.ptr : "";
                a->in_len = v->via.str.size;
            } else {
                rc = taskq_task_error(t, "exec: stdin must be bin or str");
            }
            break;
        case 2:
            rc = check_env(t, v, a);
            break;
        default:
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
                memchr(v->via.str.ptr, '\0', v->via.str.size))
                rc = taskq_task_error(t, "exec: cwd must be a non-empty str without NUL");
            a->cwd = &v->via.str;
            break;
        }
        if (rc)
            return rc;
    }
    if (!a->argv)
        return taskq_task_error(t, "exec: the argument has no argv");
    return 0;
}

/* ---- Plan: argv, environment, cwd as C strings ------------------------- */

/* The variables every command gets unless the task's env sets them. */
enum { N_FIXED = 6 };
static const char *const fixed_names[N_FIXED] = {
    "TASKQ_JOB_ID", "TASKQ_ATTEMPT", "TASKQ_SEED",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"};
/* Room for one of them: the longest name, '=', 20 digits, NUL. */
#define FIXED_MAX 48

static bool in_env(const exec_args_t *a, const char *name, size_t len)
{
    env_pair_t key = {name, len, NULL, 0};
    return a->n_env && bsearch(&key, a->env, a->n_env, sizeof *a->env, env_pair_cmp);
}

static bool is_fixed(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FIXED; i++)
        if (strlen(fixed_names[i]) == len && memcmp(fixed_names[i], name, len) == 0)
            return true;
    return false;
}

/* Append s (len bytes) and a NUL at *p; return where it starts. */
static char *put(char **p, const char *s, size_t len)
{
    char *start = *p;
    memcpy(start, s, len);
    start[len] = '\0';
    *p = start + len + 1;
    return start;
}

static void plan_free(exec_plan_t *p)
{
    free(p->argv);
    free(p->envp);
    free(p->arena);
}

/* Build the child's strings from a; 0 or TASKQ_ENOMEM. */
static int plan_build(taskq_task_t *t, const exec_args_t *a, exec_plan_t *p)
{
    size_t n_environ = 0, bytes = N_FIXED * FIXED_MAX;
    while (environ && environ[n_environ])
        n_environ++;
    for (uint32_t i = 0; i < a->argv->size; i++)
        bytes += a->argv->ptr[i].via.str.size + 1;
    for (size_t i = 0; i < a->n_env; i++)
        bytes += a->env[i].name_len + a->env[i].value_len + 2;
    if (a->cwd)
        bytes += a->cwd->size + 1;
    p->argv = malloc((a->argv->size + 1) * sizeof *p->argv);
    p->envp = malloc((n_environ + N_FIXED + a->n_env + 1) * sizeof *p->envp);
    p->arena = malloc(bytes);
    if (!p->argv || !p->envp || !p->arena)
        return TASKQ_ENOMEM;

    char *s = p->arena;
    for (uint32_t i = 0; i < a->argv->size; i++)
        p->argv[i] = put(&s, a->argv->ptr[i].via.str.ptr, a->argv->ptr[i].via.str.size);
    p->argv[a->argv->size] = NULL;
    p->cwd = a->cwd ? put(&s, a->cwd->ptr, a->cwd->size) : NULL;

    size_t n = 0;
    for (size_t i = 0; i < n_environ; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        if (!is_fixed(environ[i], len) && !in_env(a, environ[i], len))
            p->envp[n++] = environ[i];
    }
    const uint64_t fixed_values[N_FIXED] = {taskq_task_job_id(t), taskq_task_attempt(t),
                                            taskq_task_seed(t), 1, 1, 1};
    for (size_t i = 0; i < N_FIXED; i++) {
        if (in_env(a, fixed_names[i], strlen(fixed_names[i])))
            continue;
        int len = snprintf(s, FIXED_MAX, "%s=%" PRIu64, fixed_names[i], fixed_values[i]);
        p->envp[n++] = s;
        s += len + 1;
    }
    for (size_t i = 0; i < a->n_env; i++) {
        char *start = put(&s, a->env[i].name, a->env[i].name_len);
        s[-1] = '=';
        put(&s, a->env[i].value, a->env[i].value_len);
        p->envp[n++] = start;
    }
    p->envp[n] = NULL;
    return 0;
}

/* ---- Running the command ----------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* A close-on-exec pipe whose ends are above 2, so that the child's dup2
 * onto 0, 1 and 2 can never overwrite one it still needs. */
static int pipe_high(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] > 2)
            continue;
        int high = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (high < 0) {
            close(fds[0]);
            close(fds[1]);
            fds[0] = fds[1] = -1;
            return -1;
        }
        close(fds[i]);
        fds[i] = high;
    }
    return 0;
}

/* In the child: wire the pipes to 0, 1, 2, close everything else but the
 * failure pipe (close-on-exec), reset signals, enter cwd, exec.  Only
 * async-signal-safe calls; never returns. */
static void child_run(const exec_plan_t *p, int in_fd, int out_fd, int err_fd, int fail_fd,
                      int max_fd)
{
    child_failure_t f = {0, 0};
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
        f.err = errno;
        goto fail;
    }
    if ((fail_fd > 3 && close_range(3, (unsigned)fail_fd - 1, 0) != 0) ||
        close_range((unsigned)fail_fd + 1, ~0u, 0) != 0) {
        for (int fd = 3; fd < max_fd; fd++)
            if (fd != fail_fd)
                close(fd);
    }

    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (p->cwd && chdir(p->cwd) != 0) {
        f = (child_failure_t){1, errno};
        goto fail;
    }
    environ = p->envp;
    execvp(p->argv[0], p->argv);
    f.err = errno;
fail:
    while (write(fail_fd, &f, sizeof f) < 0 && errno == EINTR)
        ;
    _exit(127);
}

/* Read what c->fd has into c, keeping at most max bytes in all; at end of
 * file close it.  0, or -1 with errno ENOMEM. */
static int capture_read(capture_t *c, size_t max, bool *truncated)
{
    char scratch[4096];
    char *dst = scratch;
    size_t room = sizeof scratch;
    if (c->len < max) {
        if (c->len == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : IO_CHUNK;
            if (cap > max)
                cap = max;
            char *data = realloc(c->data, cap);
            if (!data) {
                errno = ENOMEM;
                return -1;
            }
            c->data = data;
            c->cap = cap;
        }
        dst = c->data + c->len;
        room = c->cap - c->len;
    }
    ssize_t n = read(c->fd, dst, room);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0)
        close_fd(&c->fd);
    else if (dst == scratch)
        *truncated = true;
    else
        c->len += (size_t)n;
    return 0;
}

/* The outcome of a command. */
typedef struct exec_outcome {
    capture_t out, err;
    bool truncated;   /* out or err was cut */
    int status;       /* from wait4 */
    struct rusage ru; /* from wait4 */
    int64_t wall_ms;
} exec_outcome_t;

/*
 * Feed in (in_len bytes) to *in_fd and drain o->out and o->err until all
 * three are closed.  The write end is non-blocking so that a large stdin
 * never stalls the reads.  0, or -1 with errno set.
 */
static int pump(int *in_fd, const char *in, size_t in_len, exec_outcome_t *o, size_t max)
{
    size_t in_off = 0;
    if (in_len == 0)
        close_fd(in_fd);
    else if (fcntl(*in_fd, F_SETFL, O_NONBLOCK) != 0)
        return -1;
    while (*in_fd >= 0 || o->out.fd >= 0 || o->err.fd >= 0) {
        struct pollfd pf[3] = {
            {*in_fd, POLLOUT, 0}, {o->out.fd, POLLIN, 0}, {o->err.fd, POLLIN, 0}};
        if (poll(pf, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pf[0].revents) {
            size_t len = in_len - in_off < IO_CHUNK ? in_len - in_off : IO_CHUNK;
            ssize_t n = write(*in_fd, in + in_off, len);
            if (n > 0)
                in_off += (size_t)n;
            /* EPIPE and the like: the command stopped reading; so be it. */
            if (in_off == in_len || (n < 0 && errno != EINTR && errno != EAGAIN))
                close_fd(in_fd);
        }
        if ((pf[1].revents && capture_read(&o->out, max, &o->truncated) != 0) ||
            (pf[2].revents && capture_read(&o->err, max, &o->truncated) != 0))
            return -1;
    }
    return 0;
}

/*
 * Start the command and run it to its end into *o.  0, or TASKQ_EFAILED
 * with the outcome set on t: an error if it could not be started, a retry
 * if this process ran short of something.
 */
static int run(taskq_task_t *t, const exec_args_t *a, const exec_plan_t *p, exec_outcome_t *o,
               size_t max)
{
    char q[QUOTE_MAX + 4];
    const char *prog = quote(q, p->argv[0], strlen(p->argv[0]));
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, fail[2] = {-1, -1};
    struct rlimit rl;
    int max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                     ? (int)rl.rlim_cur : 65536;
    int64_t start = now_ms();
    pid_t pid = -1;
    if (pipe_high(in) == 0 && pipe_high(out) == 0 && pipe_high(err) == 0 &&
        pipe_high(fail) == 0 && (pid = fork()) == 0)
        child_run(p, in[0], out[1], err[1], fail[1], max_fd);
    int fork_errno = errno;
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&fail[1]);
    o->out.fd = out[0];
    o->err.fd = err[0];
    if (pid < 0) {
        close_fd(&in[1]);
        close_fd(&fail[0]);
        return taskq_task_retry(t, "exec: cannot start \"%s\": %s", prog, strerror(fork_errno));
    }

    /* End of file on the failure pipe means that execvp succeeded. */
    child_failure_t f;
    ssize_t n;
    while ((n = read(fail[0], &f, sizeof f)) < 0 && errno == EINTR)
        ;
    close_fd(&fail[0]);
    int rc = 0;
    if (n == (ssize_t)sizeof f) {
        char qd[QUOTE_MAX + 4];
        if (f.in_chdir)
            rc = taskq_task_error(t, "exec: cannot enter directory \"%s\": %s",
                                  quote(qd, p->cwd, strlen(p->cwd)), strerror(f.err));
        else
            rc = taskq_task_error(t, "exec: cannot run \"%s\": %s", prog, strerror(f.err));
    } else if (pump(&in[1], a->in, a->in_len, o, max) != 0) {
        rc = taskq_task_retry(t, "exec: cannot collect the output of \"%s\": %s", prog,
                              strerror(errno));
        kill(pid, SIGKILL);
    }
    close_fd(&in[1]);
    pid_t reaped;
    while ((reaped = wait4(pid, &o->status, 0, &o->ru)) < 0 && errno == EINTR)
        ;
    o->wall_ms = now_ms() - start;
    /* ECHILD: this process ignores SIGCHLD, so the status is lost. */
    if (reaped < 0 && rc == 0)
        rc = taskq_task_error(t, "exec: cannot reap \"%s\": %s", prog, strerror(errno));
    return rc;
}

/* ---- Result ------------------------------------------------------------ */

static int pack_key(msgpack_packer *pk, const char *key)
{
    return msgpack_pack_str_with_body(pk, key, strlen(key));
}

static uint64_t tv_ms(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static int set_result(taskq_task_t *t, const exec_outcome_t *o)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool signalled = WIFSIGNALED(o->status);
    /* Every pack call returns 0 or -1 (out of memory): or them together. */
    int bad = msgpack_pack_map(&pk, 9);
    bad |= pack_key(&pk, "exit") |
           msgpack_pack_int(&pk, signalled ? -1 : WEXITSTATUS(o->status));
    bad |= pack_key(&pk, "signal") | msgpack_pack_int(&pk, signalled ? WTERMSIG(o->status) : 0);
    bad |= pack_key(&pk, "stdout") | msgpack_pack_bin_with_body(&pk, o->out.data, o->out.len);
    bad |= pack_key(&pk, "stderr") | msgpack_pack_bin_with_body(&pk, o->err.data, o->err.len);
    bad |= pack_key(&pk, "wall_ms") | msgpack_pack_uint64(&pk, (uint64_t)o->wall_ms);
    bad |= pack_key(&pk, "user_ms") | msgpack_pack_uint64(&pk, tv_ms(o->ru.ru_utime));
    bad |= pack_key(&pk, "sys_ms") | msgpack_pack_uint64(&pk, tv_ms(o->ru.ru_stime));
    bad |= pack_key(&pk, "maxrss_kb") | msgpack_pack_uint64(&pk, (uint64_t)o->ru.ru_maxrss);
    bad |= pack_key(&pk, "truncated") |
           (o->truncated ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
    int rc = bad ? TASKQ_ENOMEM : taskq_task_set_result(t, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rc == TASKQ_ENOMEM)
        return taskq_task_retry(t, "exec: out of memory for the result");
    return rc;
}

/* ---- Handler ----------------------------------------------------------- */

int tw_exec_handler(taskq_task_t *t, void *userdata)
{
    const tw_exec_config_t *cfg = userdata;
    size_t max = cfg && cfg->max_output ? cfg->max_output : TW_EXEC_MAX_OUTPUT_DEFAULT;
    size_t arg_len;
    const void *arg = taskq_task_arg(t, &arg_len);
    exec_args_t a = {0};
    exec_plan_t p = {0};
    exec_outcome_t o = {.out.fd = -1, .err.fd = -1};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);

    int rc;
    if (msgpack_unpack_next(&u, arg, arg_len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        rc = taskq_task_error(t, "exec: cannot decode the argument");
    } else if ((rc = check_args(t, &u.data, &a)) != 0) {
        /* The error is set. */
    } else if (plan_build(t, &a, &p) != 0) {
        rc = taskq_task_retry(t, "exec: out of memory");
    } else {
        /* A command that stops reading its stdin must not kill this
         * process with SIGPIPE: block it here and take back the one the
         * failed write raised, unless one was already pending. */
        sigset_t pipe_set, old_mask, pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
        bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;

        rc = run(t, &a, &p, &o, max);
        if (rc == 0)
            rc = set_result(t, &o);

        if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            const struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    }
    close_fd(&o.out.fd);
    close_fd(&o.err.fd);
    free(o.out.data);
    free(o.err.data);
    plan_free(&p);
    free(a.env);
    msgpack_unpacked_destroy(&u);
    return rc;
}
