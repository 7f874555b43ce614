/*
 * cli_map.c - `taskq map`: one `exec` task per input, like GNU parallel.
 * Owns the options, the inputs, the window of futures and the output held
 * back for input order, --halt-on-failures, Ctrl-C and the exit status;
 * the template is cli_template.c's, the joblog cli_joblog.c's.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli.h"
#include "cli_bar.h"
#include "cli_joblog.h"
#include "cli_template.h"

#define JOBS_MIN 16         /* --jobs default: at least this many tasks in flight */
#define JOBS_MAX 100000     /* --jobs upper bound */
#define FAILED_EXIT_MAX 101 /* the exit status counts failed jobs up to this */

static const char usage_text[] =
    "Usage: taskq map [OPTIONS] COMMAND... [::: ARG...]\n"
    "\n"
    "Runs COMMAND once per ARG after :::, or per line of standard input, as\n"
    "`exec` tasks on the workers (taskq-worker --exec), like GNU parallel.\n"
    "Each job's output is printed whole, in input order.\n"
    "\n"
    "Replacement strings in COMMAND:\n"
    "  {}    the input            {#}   its number, from 1\n"
    "  {.}   without extension    {/}   basename\n"
    "  {//}  dirname              {/.}  basename without extension\n"
    "Without any, the input is added as the last argument.  A COMMAND given as\n"
    "one word is split into words by the quoting rules of sh, several words are\n"
    "taken as they are; the replacements come after, so an input with spaces\n"
    "stays one argument.  No shell runs the command unless --shell.\n"
    "\n"
    "Options:\n"
    "  -j, --jobs N              tasks in flight (default: twice the credit of\n"
    "                            the workers serving exec on the queue when map\n"
    "                            starts, at least 16); in input order, no job\n"
    "                            starts 2 x N jobs ahead of one not yet printed\n"
    "      --unordered           print each job's output as soon as it ends\n"
    "      --shell               run each command line with sh -c (inputs are\n"
    "                            quoted for the shell)\n"
    "      --joblog FILE         write GNU parallel's joblog to FILE: Seq, Host\n"
    "                            (\":\"), Starttime, JobRuntime, Send, Receive,\n"
    "                            Exitval, Signal, Command\n"
    "      --resume-failed       with --joblog: keep the rows of the jobs that\n"
    "                            succeeded, run only the others (failed or never\n"
    "                            run) and add their rows\n"
    "      --halt-on-failures N  after N failed jobs submit no more and cancel\n"
    "                            the ones in flight\n"
    "      --bar, --no-bar       show or hide the progress bar on stderr\n"
    "                            (default: shown when stderr is a terminal)\n"
    "      --timeout S           run limit of each attempt of a job, in seconds\n"
    "      --queue Q             the queue (default \"default\")\n"
    "      --attempts N          deliveries of a job before it is given up\n"
    "                            (default 3): another attempt follows only a\n"
    "                            worker's death or a run past --timeout, never\n"
    "                            an exit status\n"
    "      --env NAME[=VALUE]    set NAME for the commands (repeatable); NAME\n"
    "                            alone passes its value here\n"
    "  -h, --help                this help\n"
    "\n"
    "The commands run in the current directory (it must exist on the workers).\n"
    "Ctrl-C cancels the jobs in flight (their workers stop them), says what was\n"
    "done and exits; a second Ctrl-C exits at once.\n"
    "\n"
    "Exit status: the number of failed jobs (a non-zero exit, a signal, or no\n"
    "result), at most 101; 2 bad command line; 125 no broker or another taskq\n"
    "error; 130 interrupted by Ctrl-C.\n";

/* One job, from its submission until its output is printed. */
typedef struct job {
    taskq_future_t *f;
    size_t k;              /* its place among the jobs of this run, from 0 */
    size_t seq;            /* its input's number, from 1: {#}, the joblog's Seq */
    char *cmd;             /* the command as shown in messages and the joblog */
    double submitted;      /* wall clock, seconds since the epoch */
    double ended;          /* when its outcome was seen */
    int code;              /* taskq_future_wait()'s outcome */
    bool cancelled;        /* cancelled by this run: no output, not counted */
    bool failed;           /* a non-zero exit, a signal, or no result */
    cli_exec_result_t res; /* when code is 0; spans into the future's result */
} job_t;

typedef struct map {
    const cli_ctx_t *ctx;
    taskq_client_t *c;
    taskq_submit_opts_t task;
    cli_template_t tpl; /* the command template */
    bool unordered;
    char **env;
    int envc;
    char *cwd;

    char **inputs; /* into argv or stdin_buf */
    size_t ninputs;
    char *stdin_buf;
    bool *skip;    /* --resume-failed: the input succeeded before */
    size_t next;   /* next input to consider */
    size_t total;  /* jobs of this run */

    size_t jobs;            /* slots of the window */
    job_t *slots;           /* jobs in flight */
    taskq_future_t **fs;    /* their futures, NULL for a free slot */
    size_t *free_slots;
    size_t nfree;
    job_t *held;            /* ordered: ended jobs by k % (2 * jobs) */
    size_t submitted;       /* jobs submitted (k of the next one) */
    size_t printed;         /* ordered: jobs whose output is out */

    size_t done, failed, cancelled;
    uint64_t halt_after;
    bool stopping;          /* submit no more; cancel what is in flight */
    int fatal;              /* the broker is lost: a TASKQ_E* code */
    FILE *joblog;
    cli_bar_t *bar;
    bool stdout_tty;
} map_t;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the inputs ---------------------------------------------------------- */

/* Read standard input whole and split it into lines (a last line without
 * a newline counts).  Returns 0, TASKQ_ESYS (errno set) or TASKQ_ENOMEM. */
static int read_lines(map_t *m)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return TASKQ_ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                return TASKQ_ENOMEM;
            }
            buf = bigger;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return TASKQ_ESYS;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    lines += len > 0 && buf[len - 1] != '\n';
    m->inputs = calloc(lines ? lines : 1, sizeof *m->inputs);
    if (!m->inputs) {
        free(buf);
        return TASKQ_ENOMEM;
    }
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (nl)
            *nl = '\0';
        m->inputs[m->ninputs++] = p;
        p = nl ? nl + 1 : buf + len;
    }
    m->stdin_buf = buf;
    return 0;
}

/* ---- the broker's workers ------------------------------------------------- */

static bool obj_is_str(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *o, const char *key)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (obj_is_str(&o->via.map.ptr[i].key, key))
            return &o->via.map.ptr[i].val;
    return NULL;
}

static bool array_has(const msgpack_object *o, const char *s)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (obj_is_str(&o->via.array.ptr[i], s))
            return true;
    return false;
}

#define CREDIT_UNKNOWN UINT64_MAX /* the broker shows workers to admins only */

/* The credit of the workers connected now that serve exec on queue, from
 * the broker's statistics; 0 if none or the statistics cannot be had,
 * CREDIT_UNKNOWN if this client may not see the workers. */
static uint64_t exec_credit(taskq_client_t *c, int32_t timeout_ms, const char *queue)
{
    void *buf;
    size_t len;
    if (taskq_client_stats(c, timeout_ms, &buf, &len) != 0)
        return 0;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t sum = 0;
    size_t off = 0;
    if (msgpack_unpack_next(&up, buf, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *admin = map_get(&up.data, "admin");
        if (admin && admin->type == MSGPACK_OBJECT_BOOLEAN && !admin->via.boolean)
            sum = CREDIT_UNKNOWN; /* the worker list is for admins */
        const msgpack_object *list = map_get(&up.data, "worker_list");
        for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY &&
                             i < list->via.array.size; i++) {
            const msgpack_object *w = &list->via.array.ptr[i];
            const msgpack_object *credit = map_get(w, "credit");
            if (credit && credit->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                array_has(map_get(w, "functions"), "exec") &&
                array_has(map_get(w, "queues"), queue))
                sum += credit->via.u64;
        }
    }
    msgpack_unpacked_destroy(&up);
    free(buf);
    return sum;
}

/* ---- the window ----------------------------------------------------------- */

/* Submit the next job that is to run into a free slot.  Returns 0 or a
 * TASKQ_E* code (the message is printed). */
static int submit_one(map_t *m)
{
    while (m->skip && m->skip[m->next])
        m->next++;
    size_t seq = m->next + 1;
    char **argv = NULL, *cmd = NULL;
    size_t argc = 0;
    void *arg = NULL;
    size_t arg_len = 0;
    taskq_future_t *f = NULL;
    int rc = cli_template_build(&m->tpl, m->inputs[m->next], seq, &argv, &argc, &cmd);
    if (rc == 0)
        rc = cli_exec_arg_env(argv, (int)argc, m->env, m->envc, m->cwd, NULL, 0, &arg,
                              &arg_len);
    if (rc == 0)
        rc = taskq_submit(m->c, "exec", arg, arg_len, &m->task, &f);
    cli_template_argv_free(argv, argc);
    free(arg);
    if (rc) {
        cli_error(m->ctx, "cannot submit job %zu: %s", seq, taskq_strerror(rc));
        free(cmd);
        return rc;
    }
    size_t s = m->free_slots[--m->nfree];
    m->slots[s] = (job_t){.f = f, .k = m->submitted++, .seq = seq, .cmd = cmd,
                          .submitted = wall_now()};
    m->fs[s] = f;
    m->next++;
    return 0;
}

static bool may_submit(const map_t *m)
{
    return !m->stopping && !m->fatal && m->submitted < m->total && m->nfree > 0 &&
           (m->unordered || m->submitted - m->printed < 2 * m->jobs);
}

/* Submit no more, and cancel the jobs in flight. */
static void stop(map_t *m)
{
    m->stopping = true;
    for (size_t s = 0; s < m->jobs; s++)
        if (m->fs[s])
            taskq_cancel(m->fs[s]);
}

/* Read the outcome of a job whose future resolved and count it. */
static void finish(map_t *m, job_t *j)
{
    j->ended = wall_now();
    j->code = taskq_future_wait(j->f, 0);
    if (j->code == TASKQ_ECANCELED && m->stopping) {
        j->cancelled = true;
        m->cancelled++;
        return;
    }
    if (j->code == 0) {
        size_t len = 0;
        const void *r = taskq_future_result(j->f, &len);
        if (cli_exec_result(r, len, &j->res) != 0)
            j->code = TASKQ_EPROTO;
    }
    j->failed = j->code != 0 || j->res.exit != 0 || j->res.signal != 0;
    m->done++;
    m->failed += j->failed;
    if (j->code == TASKQ_ECLOSED && !m->fatal) {
        m->fatal = j->code;
        cli_bar_clear(m->bar);
        cli_error(m->ctx, "lost the broker at %s: %s", m->ctx->broker,
                  taskq_strerror(j->code));
    }
    if (m->halt_after && m->failed >= m->halt_after && !m->stopping)
        stop(m);
}

static void write_out(FILE *f, const uint8_t *p, size_t len)
{
    if (len == 0)
        return;
    fwrite(p, 1, len, f);
    fflush(f);
}

/* Print the output of an ended job whole, log it, and free it. */
static void emit(map_t *m, job_t *j)
{
    if (!j->cancelled) {
        bool text = j->code != 0 || j->res.err_len > 0 || j->res.truncated;
        if (text || (j->res.out_len > 0 && m->stdout_tty))
            cli_bar_clear(m->bar);
        if (j->code == 0) {
            const cli_exec_result_t *r = &j->res;
            write_out(stdout, r->out, r->out_len);
            write_out(stderr, r->err, r->err_len);
            /* The bar would overwrite a last line left open on the terminal. */
            const uint8_t *last = r->err_len                      ? &r->err[r->err_len - 1]
                                  : r->out_len && m->stdout_tty ? &r->out[r->out_len - 1]
                                                                : NULL;
            if (m->bar && last && *last != '\n')
                fputc('\n', stderr);
            if (r->truncated)
                cli_error(m->ctx, "job %zu (%s): output cut at the worker's limit", j->seq,
                          j->cmd);
        } else if (j->code == TASKQ_EFAILED) {
            cli_error(m->ctx, "job %zu (%s): %s", j->seq, j->cmd, taskq_future_error(j->f));
        } else if (j->code != TASKQ_ECLOSED) {
            const char *why = j->code == TASKQ_EPROTO ? "" : taskq_future_error(j->f);
            cli_error(m->ctx, "job %zu (%s): %s%s%s", j->seq, j->cmd, taskq_strerror(j->code),
                      why[0] ? ": " : "", why);
        }
        cli_joblog_row(m->joblog, j->seq, j->cmd, j->submitted, j->ended,
                       j->code == 0 ? &j->res : NULL);
    }
    taskq_future_destroy(&j->f);
    free(j->cmd);
    j->cmd = NULL;
}

/* Print, in input order, the held jobs whose turn has come. */
static void emit_ready(map_t *m)
{
    job_t *j;
    while (m->printed < m->submitted && (j = &m->held[m->printed % (2 * m->jobs)])->f) {
        emit(m, j);
        m->printed++;
    }
}

/* Take the jobs that ended out of their slots: print them (--unordered)
 * or hold them until their turn. */
static void collect(map_t *m)
{
    for (size_t s = 0; s < m->jobs; s++) {
        if (!m->fs[s] || taskq_future_state(m->fs[s]) == TASKQ_STATE_PENDING)
            continue;
        job_t *j = &m->slots[s];
        finish(m, j);
        m->fs[s] = NULL;
        m->free_slots[m->nfree++] = s;
        if (m->unordered)
            emit(m, j);
        else
            m->held[j->k % (2 * m->jobs)] = *j;
    }
    if (!m->unordered)
        emit_ready(m);
}

/*
 * Run the jobs; returns when all have ended, when the cancels of Ctrl-C are
 * confirmed (or CLI_CANCEL_WAIT_MS ran out), or at once when the broker is
 * lost.  A job that cannot be submitted stops the run like
 * --halt-on-failures.
 */
static void run(map_t *m)
{
    struct timespec t0;
    int64_t deadline = -1;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int64_t now = (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000;
        if (cli_interrupted() && deadline < 0) {
            stop(m);
            deadline = now + CLI_CANCEL_WAIT_MS;
        }
        while (may_submit(m)) {
            int rc = submit_one(m);
            if (rc) {
                m->fatal = rc;
                stop(m);
            }
        }
        cli_bar_update(m->bar, m->done, m->failed);
        bool busy = m->nfree < m->jobs;
        if (!busy && (m->stopping || m->fatal || m->submitted == m->total))
            return;
        if ((m->fatal && !m->stopping) || (deadline >= 0 && now >= deadline))
            return;
        size_t i;
        int rc = taskq_wait_any(m->fs, m->jobs, CLI_SLICE_MS, &i);
        if (rc == 0) {
            collect(m);
        } else if (rc != TASKQ_ETIMEDOUT) {
            cli_error(m->ctx, "waiting for the jobs: %s", taskq_strerror(rc));
            m->fatal = rc;
            return;
        }
    }
}

/* ---- the command ---------------------------------------------------------- */

/* Set up the template from the command's words (cli_template_init()).
 * Returns 0 or CLI_EXIT_USAGE / CLI_EXIT_TASKQ (the message is printed). */
static int set_template(map_t *m, char **words, size_t n, bool shell)
{
    int rc = cli_template_init(&m->tpl, words, n, shell);
    if (rc == TASKQ_EINVAL)
        return cli_usage(m->ctx, "map", "COMMAND has a quote that is not closed");
    if (rc) {
        cli_error(m->ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    if (m->tpl.nwords == 0)
        return cli_usage(m->ctx, "map", "COMMAND is empty");
    return 0;
}

/* Open the joblog (resuming from it with --resume-failed).  Returns 0 or
 * CLI_EXIT_TASKQ (the message is printed). */
static int open_joblog(map_t *m, const char *path, bool resume)
{
    int rc = resume ? cli_joblog_resume(path, m->skip, m->ninputs, &m->joblog)
                    : cli_joblog_create(path, &m->joblog);
    if (rc == 0)
        return 0;
    cli_error(m->ctx, "cannot write the joblog %s: %s", path,
              rc == TASKQ_ESYS ? strerror(errno) : taskq_strerror(rc));
    return CLI_EXIT_TASKQ;
}

/* Allocate the window of m->jobs slots.  Returns 0 or TASKQ_ENOMEM. */
static int window_new(map_t *m)
{
    m->slots = calloc(m->jobs, sizeof *m->slots);
    m->fs = calloc(m->jobs, sizeof *m->fs);
    m->free_slots = calloc(m->jobs, sizeof *m->free_slots);
    if (!m->unordered)
        m->held = calloc(2 * m->jobs, sizeof *m->held);
    if (!m->slots || !m->fs || !m->free_slots || (!m->unordered && !m->held))
        return TASKQ_ENOMEM;
    for (size_t s = m->jobs; s-- > 0;)
        m->free_slots[m->nfree++] = s;
    return 0;
}

/* After run(): print what ended but waits behind a job that did not, and
 * let go of the jobs still in flight (cancelled, or lost with the broker). */
static void drain(map_t *m)
{
    for (size_t k = m->printed; m->held && k < m->submitted; k++)
        if (m->held[k % (2 * m->jobs)].f)
            emit(m, &m->held[k % (2 * m->jobs)]);
    for (size_t s = 0; s < m->jobs; s++) {
        if (!m->fs[s])
            continue;
        m->cancelled += m->stopping;
        taskq_future_destroy(&m->slots[s].f);
        free(m->slots[s].cmd);
        m->fs[s] = NULL;
    }
}

static void map_free(map_t *m)
{
    cli_bar_destroy(&m->bar);
    if (m->joblog)
        fclose(m->joblog);
    taskq_client_destroy(&m->c);
    cli_template_fini(&m->tpl);
    for (int i = 0; i < m->envc; i++)
        free(m->env[i]);
    free(m->env);
    free(m->cwd);
    if (m->stdin_buf)
        free(m->inputs);
    free(m->stdin_buf);
    free(m->skip);
    free(m->slots);
    free(m->fs);
    free(m->free_slots);
    free(m->held);
}

/* Everything after the command line is read: connect, run, report. */
static int map_main(map_t *m, const char *joblog, bool resume, int bar)
{
    if (resume && !(m->skip = calloc(m->ninputs ? m->ninputs : 1, sizeof *m->skip))) {
        cli_error(m->ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    int rc = cli_connect(m->ctx, &m->c);
    if (rc)
        return rc;
    if (joblog && (rc = open_joblog(m, joblog, resume)) != 0)
        return rc;
    m->total = m->ninputs;
    for (size_t i = 0; m->skip && i < m->ninputs; i++)
        m->total -= m->skip[i];
    if (m->total == 0)
        return CLI_EXIT_OK;

    if (m->jobs == 0) {
        uint64_t credit = exec_credit(m->c, m->ctx->connect_timeout_ms, m->task.queue);
        if (credit == CREDIT_UNKNOWN)
            credit = 0; /* not shown to this client: the minimum window */
        else if (credit == 0)
            cli_error(m->ctx, "no worker serves exec on queue \"%s\" now; the jobs wait for "
                              "one (taskq-worker --exec)",
                      m->task.queue);
        m->jobs = credit * 2 > JOBS_MIN ? (size_t)credit * 2 : JOBS_MIN;
    }
    if (m->jobs > m->total)
        m->jobs = m->total;
    if (!(m->cwd = getcwd(NULL, 0))) {
        cli_error(m->ctx, "cannot read the current directory: %s", strerror(errno));
        return CLI_EXIT_TASKQ;
    }
    if (window_new(m) != 0 ||
        ((bar > 0 || (bar < 0 && isatty(STDERR_FILENO))) &&
         cli_bar_new(STDERR_FILENO, m->total, &m->bar) != 0)) {
        cli_error(m->ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    m->stdout_tty = isatty(STDOUT_FILENO);

    cli_sigint_catch();
    run(m);
    drain(m);
    cli_bar_update(m->bar, m->done, m->failed);
    cli_bar_finish(m->bar);
    size_t not_started = m->total - m->submitted;
    if (cli_interrupted()) {
        cli_error(m->ctx, "interrupted: %zu done (%zu failed), %zu cancelled, %zu not started",
                  m->done, m->failed, m->cancelled, not_started);
        return CLI_EXIT_INTERRUPTED;
    }
    if (m->fatal)
        return CLI_EXIT_TASKQ;
    if (m->stopping)
        cli_error(m->ctx, "stopped by --halt-on-failures %llu: %zu done (%zu failed), "
                          "%zu cancelled, %zu not started",
                  (unsigned long long)m->halt_after, m->done, m->failed, m->cancelled,
                  not_started);
    return m->failed < FAILED_EXIT_MAX ? (int)m->failed : FAILED_EXIT_MAX;
}

enum {
    OPT_UNORDERED = 256,
    OPT_SHELL,
    OPT_JOBLOG,
    OPT_RESUME_FAILED,
    OPT_HALT,
    OPT_BAR,
    OPT_NO_BAR,
    OPT_TIMEOUT,
    OPT_QUEUE,
    OPT_ATTEMPTS,
    OPT_ENV,
};

int cli_map(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"jobs", required_argument, NULL, 'j'},
        {"unordered", no_argument, NULL, OPT_UNORDERED},
        {"shell", no_argument, NULL, OPT_SHELL},
        {"joblog", required_argument, NULL, OPT_JOBLOG},
        {"resume-failed", no_argument, NULL, OPT_RESUME_FAILED},
        {"halt-on-failures", required_argument, NULL, OPT_HALT},
        {"bar", no_argument, NULL, OPT_BAR},
        {"no-bar", no_argument, NULL, OPT_NO_BAR},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"attempts", required_argument, NULL, OPT_ATTEMPTS},
        {"env", required_argument, NULL, OPT_ENV},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    map_t m = {.ctx = ctx, .task.queue = "default"};
    const char *joblog = NULL;
    bool resume = false, shell = false;
    int bar = -1, c, rc = 0;
    uint64_t v = 0;
    int32_t ms = 0;
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "+:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (cli_parse_uint(optarg, 1, JOBS_MAX, &v) != 0)
                rc = cli_usage(ctx, "map", "--jobs wants 1 to %d, not \"%s\"", JOBS_MAX, optarg);
            m.jobs = (size_t)v;
            break;
        case OPT_UNORDERED:
            m.unordered = true;
            break;
        case OPT_SHELL:
            shell = true;
            break;
        case OPT_JOBLOG:
            joblog = optarg;
            break;
        case OPT_RESUME_FAILED:
            resume = true;
            break;
        case OPT_HALT:
            if (cli_parse_uint(optarg, 0, UINT32_MAX, &m.halt_after) != 0)
                rc = cli_usage(ctx, "map", "--halt-on-failures wants a count, not \"%s\"",
                               optarg);
            break;
        case OPT_BAR:
        case OPT_NO_BAR:
            bar = c == OPT_BAR;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_seconds(optarg, &ms) != 0)
                rc = cli_usage(ctx, "map", "--timeout wants seconds, not \"%s\"", optarg);
            m.task.timeout_ms = (uint32_t)ms;
            break;
        case OPT_QUEUE:
            m.task.queue = optarg;
            break;
        case OPT_ATTEMPTS:
            if (cli_parse_uint(optarg, 1, 1000, &v) != 0)
                rc = cli_usage(ctx, "map", "--attempts wants 1 to 1000, not \"%s\"", optarg);
            m.task.max_attempts = (uint32_t)v;
            break;
        case OPT_ENV: {
            char **more = realloc(m.env, ((size_t)m.envc + 1) * sizeof *more);
            if (more)
                m.env = more;
            int erc = more ? cli_env_item(optarg, &m.env[m.envc]) : TASKQ_ENOMEM;
            if (erc == 0)
                m.envc++;
            else if (erc == TASKQ_EINVAL)
                rc = cli_usage(ctx, "map", "--env %s: %s", optarg,
                               optarg[0] && optarg[0] != '=' ? "not set here"
                                                             : "the name is empty");
            else
                rc = CLI_EXIT_TASKQ;
            break;
        }
        case 'h':
            fputs(usage_text, stdout);
            map_free(&m);
            return CLI_EXIT_OK;
        default:
            rc = cli_bad_option(ctx, argv, c);
        }
    }
    if (rc == 0 && resume && !joblog)
        rc = cli_usage(ctx, "map", "--resume-failed needs --joblog FILE");

    int sep = optind;
    while (sep < argc && strcmp(argv[sep], ":::") != 0)
        sep++;
    for (int i = sep + 1; rc == 0 && i < argc; i++)
        if (strcmp(argv[i], ":::") == 0)
            rc = cli_usage(ctx, "map", "only one ::: list of inputs is supported");
    if (rc == 0 && sep == optind)
        rc = cli_usage(ctx, "map", "no COMMAND given");
    if (rc == 0)
        rc = set_template(&m, argv + optind, (size_t)(sep - optind), shell);
    if (rc == 0 && sep < argc) {
        m.inputs = argv + sep + 1;
        m.ninputs = (size_t)(argc - sep - 1);
    } else if (rc == 0 && (rc = read_lines(&m)) != 0) {
        cli_error(ctx, "cannot read the inputs from standard input: %s",
                  rc == TASKQ_ESYS ? strerror(errno) : taskq_strerror(rc));
        rc = CLI_EXIT_TASKQ;
    }
    if (rc == 0)
        rc = map_main(&m, joblog, resume, bar);
    map_free(&m);
    return rc;
}
