/*
 * cli_map.c - `taskq map`: one `exec` task per input, like GNU parallel.
 * Owns the command template and its replacement strings, the window of
 * futures and the output held back for input order, the joblog and
 * --resume-failed, --halt-on-failures, the progress bar, and Ctrl-C.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli.h"
#include "cli_bar.h"

#define JOBS_MIN 16         /* --jobs default: at least this many tasks in flight */
#define JOBS_MAX 100000     /* --jobs upper bound */
#define FAILED_EXIT_MAX 101 /* the exit status counts failed jobs up to this */
#define JOBLOG_HEADER "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

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
    char **words; /* the template: its words, or with --shell its one line */
    size_t nwords;
    bool shell, has_repl, unordered;
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

/* ---- the command template ------------------------------------------------ */

/*
 * Split s into words as sh does, without expansions: blanks separate
 * words; '...' keeps everything; "..." keeps everything but \" \\ \$ \`
 * and backslash-newline; a backslash outside quotes keeps the next
 * character.  Returns 0, TASKQ_EINVAL (an unterminated quote) or
 * TASKQ_ENOMEM; *ret is a malloc'ed array of malloc'ed words.
 */
static int split_words(const char *s, char ***ret, size_t *ret_n)
{
    size_t len = strlen(s), n = 0;
    char **words = calloc(len / 2 + 2, sizeof *words);
    char *w = malloc(len + 1);
    if (!words || !w) {
        free(words);
        free(w);
        return TASKQ_ENOMEM;
    }
    int rc = 0;
    const char *p = s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            p++;
            continue;
        }
        size_t wl = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q) {
                    rc = TASKQ_EINVAL;
                    goto out;
                }
                memcpy(w + wl, p + 1, (size_t)(q - p - 1));
                wl += (size_t)(q - p - 1);
                p = q + 1;
            } else if (*p == '"') {
                for (p++; *p != '"'; p++) {
                    if (!*p) {
                        rc = TASKQ_EINVAL;
                        goto out;
                    }
                    if (*p == '\\' && p[1] == '\n')
                        p++;
                    else if (*p == '\\' && strchr("\"\\$`", p[1]))
                        w[wl++] = *++p;
                    else
                        w[wl++] = *p;
                }
                p++;
            } else if (*p == '\\') {
                if (p[1] && p[1] != '\n')
                    w[wl++] = p[1];
                p += p[1] ? 2 : 1;
            } else {
                w[wl++] = *p++;
            }
        }
        if (!(words[n] = strndup(w, wl))) {
            rc = TASKQ_ENOMEM;
            goto out;
        }
        n++;
    }
out:
    free(w);
    if (rc) {
        while (n > 0)
            free(words[--n]);
        free(words);
        return rc;
    }
    *ret = words;
    *ret_n = n;
    return 0;
}

static const char *const repl_strings[] = {"{}", "{#}", "{.}", "{/}", "{//}", "{/.}"};
enum { R_INPUT, R_SEQ, R_NOEXT, R_BASE, R_DIR, R_BASE_NOEXT, R_N };

/* The replacement string at p, or -1. */
static int repl_at(const char *p)
{
    if (*p != '{')
        return -1;
    for (int i = 0; i < R_N; i++)
        if (strncmp(p, repl_strings[i], strlen(repl_strings[i])) == 0)
            return i;
    return -1;
}

/* The length of v[0..len-1] without its extension: a last '.' in its last
 * path component with something after it (GNU parallel's {.}). */
static size_t cut_ext(const char *v, size_t len)
{
    for (size_t i = len; i-- > 0 && v[i] != '/';)
        if (v[i] == '.')
            return i + 1 < len ? i : len;
    return len;
}

/* The value of replacement string r for input in, whose number is num
 * (in decimal): a span of in, of num or of a constant. */
static void repl_value(int r, const char *in, const char *num, const char **v, size_t *len)
{
    const char *slash = strrchr(in, '/');
    const char *base = slash ? slash + 1 : in;
    switch (r) {
    case R_SEQ:
        *v = num;
        *len = strlen(num);
        return;
    case R_NOEXT:
        *v = in;
        *len = cut_ext(in, strlen(in));
        return;
    case R_BASE:
        *v = base;
        *len = strlen(base);
        return;
    case R_DIR:
        /* As dirname(1): "." without a slash, "/" for "/x". */
        *v = !slash ? "." : slash == in ? "/" : in;
        *len = !slash || slash == in ? 1 : (size_t)(slash - in);
        return;
    case R_BASE_NOEXT:
        *v = base;
        *len = cut_ext(base, strlen(base));
        return;
    default:
        *v = in;
        *len = strlen(in);
    }
}

/* Write v as one word for sh: as it is if it holds only characters sh
 * leaves alone, else in single quotes. */
static void put_quoted(FILE *out, const char *v, size_t len)
{
    static const char safe[] = "_@%+=:,./-";
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                (v[i] >= '0' && v[i] <= '9') || (v[i] && strchr(safe, v[i]));
    if (plain) {
        fwrite(v, 1, len, out);
        return;
    }
    fputc('\'', out);
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\'')
            fputs("'\\''", out);
        else
            fputc(v[i], out);
    }
    fputc('\'', out);
}

/* Expand the replacement strings of word for input in (number num) into
 * a malloc'ed string, quoting the values for sh if quote.  NULL: ENOMEM. */
static char *expand(const char *word, const char *in, const char *num, bool quote)
{
    char *s = NULL;
    size_t len;
    FILE *out = open_memstream(&s, &len);
    if (!out)
        return NULL;
    for (const char *p = word; *p;) {
        int r = repl_at(p);
        if (r < 0) {
            fputc(*p++, out);
            continue;
        }
        const char *v;
        size_t vlen;
        repl_value(r, in, num, &v, &vlen);
        if (quote)
            put_quoted(out, v, vlen);
        else
            fwrite(v, 1, vlen, out);
        p += strlen(repl_strings[r]);
    }
    if (fclose(out) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void free_words(char **w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(w[i]);
    free(w);
}

/*
 * The argv of the job for input in (number seq) into *ret_argv/ret_argc
 * (malloc'ed words) and the command as shown into *ret_cmd.  Returns 0 or
 * TASKQ_ENOMEM.
 */
static int build(const map_t *m, const char *in, size_t seq, char ***ret_argv, size_t *ret_argc,
                 char **ret_cmd)
{
    char num[24];
    snprintf(num, sizeof num, "%zu", seq);
    size_t n = m->shell ? 3 : m->nwords + !m->has_repl;
    char **argv = calloc(n, sizeof *argv);
    char *cmd = NULL;
    size_t cmd_len;
    FILE *out = NULL;
    if (!argv)
        return TASKQ_ENOMEM;
    if (m->shell) {
        /* The input goes after the line when it names none, as a word. */
        char *line = expand(m->words[0], in, num, true);
        out = line ? open_memstream(&cmd, &cmd_len) : NULL;
        if (out) {
            fputs(line, out);
            if (!m->has_repl) {
                fputc(' ', out);
                put_quoted(out, in, strlen(in));
            }
        }
        free(line);
        if (!out || fclose(out) != 0)
            goto fail;
        argv[0] = strdup("sh");
        argv[1] = strdup("-c");
        argv[2] = strdup(cmd);
        if (!argv[0] || !argv[1] || !argv[2])
            goto fail;
    } else {
        for (size_t i = 0; i < m->nwords; i++)
            if (!(argv[i] = expand(m->words[i], in, num, false)))
                goto fail;
        if (!m->has_repl && !(argv[m->nwords] = strdup(in)))
            goto fail;
        if (!(out = open_memstream(&cmd, &cmd_len)))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc(' ', out);
            put_quoted(out, argv[i], strlen(argv[i]));
        }
        if (fclose(out) != 0)
            goto fail;
    }
    *ret_argv = argv;
    *ret_argc = n;
    *ret_cmd = cmd;
    return 0;
fail:
    free(cmd);
    free_words(argv, n);
    return TASKQ_ENOMEM;
}

/* ---- inputs and the joblog ------------------------------------------------ */

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

/* Trimmed field equal to "0"? */
static bool field_zero(const char *f)
{
    while (*f == ' ')
        f++;
    return f[0] == '0' && (f[1] == '\0' || f[1] == ' ');
}

/* Start a new joblog at path with its header.  Returns 0 or TASKQ_ESYS. */
static int joblog_create(map_t *m, const char *path)
{
    if (!(m->joblog = fopen(path, "w")))
        return TASKQ_ESYS;
    fputs(JOBLOG_HEADER, m->joblog);
    fflush(m->joblog);
    return 0;
}

/*
 * --resume-failed: mark the inputs that the joblog at path says succeeded
 * (Exitval and Signal 0), and start the joblog again with the header and
 * their rows (written to a new file that then replaces it, so that they
 * are never lost), ready for the new rows.  A missing joblog is a new one.
 * Returns 0 or TASKQ_ESYS (errno set) / TASKQ_ENOMEM.
 */
static int joblog_resume(map_t *m, const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return errno == ENOENT ? joblog_create(m, path) : TASKQ_ESYS;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    if (!tmp) {
        fclose(in);
        return TASKQ_ENOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", 8);
    struct stat st;
    int fd = mkstemp(tmp);
    FILE *out = NULL;
    if (fd >= 0 && fstat(fileno(in), &st) == 0 && fchmod(fd, st.st_mode & 07777) == 0)
        out = fdopen(fd, "w");
    int rc = out ? 0 : TASKQ_ESYS;
    if (!out && fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (out)
        fputs(JOBLOG_HEADER, out);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (out && (n = getline(&line, &cap, in)) > 0) {
        char *f[9], *save = NULL, *copy = strdup(line);
        if (!copy) {
            rc = TASKQ_ENOMEM;
            break;
        }
        size_t nf = 0;
        for (char *t = strtok_r(copy, "\t", &save); t && nf < 9; t = strtok_r(NULL, "\t", &save))
            f[nf++] = t;
        char *end;
        unsigned long long seq = nf == 9 ? strtoull(f[0], &end, 10) : 0;
        if (seq >= 1 && seq <= m->ninputs && *end == '\0' && field_zero(f[6]) &&
            field_zero(f[7]) && !m->skip[seq - 1]) {
            m->skip[seq - 1] = true;
            fputs(line, out);
            if (line[n - 1] != '\n')
                fputc('\n', out);
        }
        free(copy);
    }
    free(line);
    if (ferror(in) && !rc)
        rc = TASKQ_ESYS;
    fclose(in);
    if (!rc && (fflush(out) != 0 || rename(tmp, path) != 0))
        rc = TASKQ_ESYS;
    if (rc) {
        int e = errno;
        if (out) {
            fclose(out);
            unlink(tmp);
        }
        errno = e;
    } else {
        m->joblog = out;
    }
    free(tmp);
    return rc;
}

/* One row of the joblog for job j: GNU parallel's columns; the command's
 * tabs and newlines are written as \t and \n so that a row is one line. */
static void joblog_row(map_t *m, const job_t *j)
{
    if (!m->joblog)
        return;
    bool have = j->code == 0;
    double runtime = have ? (double)j->res.wall_ms / 1000.0 : j->ended - j->submitted;
    double start = j->ended - runtime;
    if (start < j->submitted)
        start = j->submitted;
    fprintf(m->joblog, "%zu\t:\t%.3f\t%10.3f\t0\t0\t%lld\t%lld\t", j->seq, start, runtime,
            have ? (long long)j->res.exit : -1LL, have ? (long long)j->res.signal : 0LL);
    for (const char *p = j->cmd; *p; p++) {
        if (*p == '\t')
            fputs("\\t", m->joblog);
        else if (*p == '\n')
            fputs("\\n", m->joblog);
        else
            fputc(*p, m->joblog);
    }
    fputc('\n', m->joblog);
    fflush(m->joblog);
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

/* The credit of the workers connected now that serve exec on queue, from
 * the broker's statistics; 0 if none or unknown. */
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
    int rc = build(m, m->inputs[m->next], seq, &argv, &argc, &cmd);
    if (rc == 0)
        rc = cli_exec_arg_env(argv, (int)argc, m->env, m->envc, m->cwd, NULL, 0, &arg,
                              &arg_len);
    if (rc == 0)
        rc = taskq_submit(m->c, "exec", arg, arg_len, &m->task, &f);
    free_words(argv, argc);
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
        joblog_row(m, j);
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

/*
 * Set up the template from the command's words: with --shell, the words
 * joined by spaces (as GNU parallel does); else one word is split by sh's
 * quoting rules, and several words are the argv as they are (the calling
 * shell split them already).  Returns 0 or CLI_EXIT_USAGE / CLI_EXIT_TASKQ.
 */
static int set_template(map_t *m, char **words, size_t n)
{
    int rc = 0;
    if (!m->shell && n == 1) {
        rc = split_words(words[0], &m->words, &m->nwords);
        if (rc == TASKQ_EINVAL)
            return cli_usage(m->ctx, "map", "COMMAND has a quote that is not closed");
        if (rc == 0 && m->nwords == 0)
            return cli_usage(m->ctx, "map", "COMMAND is empty");
    } else if (!m->shell) {
        if ((m->words = calloc(n, sizeof *m->words)) != NULL)
            for (m->nwords = 0; m->nwords < n; m->nwords++)
                if (!(m->words[m->nwords] = strdup(words[m->nwords])))
                    break;
        rc = m->words && m->nwords == n ? 0 : TASKQ_ENOMEM;
    } else {
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += strlen(words[i]) + 1;
        char *line = malloc(len + 1), *q = line;
        if ((m->words = malloc(sizeof *m->words)) != NULL && line) {
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen(words[i]);
                if (i)
                    *q++ = ' ';
                memcpy(q, words[i], l);
                q += l;
            }
            *q = '\0';
            m->words[m->nwords++] = line;
        } else {
            free(line);
            rc = TASKQ_ENOMEM;
        }
    }
    if (rc) {
        cli_error(m->ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    for (size_t i = 0; i < m->nwords; i++)
        for (const char *p = m->words[i]; *p && !m->has_repl; p++)
            m->has_repl = repl_at(p) >= 0;
    return 0;
}

/* Open the joblog (resuming from it with --resume-failed).  Returns 0 or
 * CLI_EXIT_TASKQ (the message is printed). */
static int open_joblog(map_t *m, const char *path, bool resume)
{
    int rc = resume ? joblog_resume(m, path) : joblog_create(m, path);
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
    if (m->words)
        free_words(m->words, m->nwords);
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
        if (credit == 0)
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
    bool resume = false;
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
            m.shell = true;
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
        rc = set_template(&m, argv + optind, (size_t)(sep - optind));
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
