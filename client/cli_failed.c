/*
 * cli_failed.c - `taskq failed` (the failed jobs the broker keeps, with
 * the history of their attempts, as a table or JSON lines) and `taskq
 * retry` (queue failed jobs again, and with --wait print their outcomes as
 * `taskq wait` does).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_json.h"

/* Jobs asked for per FAILED request. */
#define PAGE_JOBS 1000

static const char failed_usage[] =
    "Usage: taskq failed [--json] [--limit N]\n"
    "\n"
    "Lists the failed jobs the broker keeps: jobs that failed, were lost or ran\n"
    "past their run limit on every attempt, whose outcome no client collected\n"
    "(the broker keeps them for its result retention time).  Each job shows its\n"
    "state, function, queue, attempts, when it finished (local time) and its\n"
    "error; under it, each attempt that ended without a result: the worker that\n"
    "held it (name@host[pid]), when it started, how long it ran, and why it\n"
    "ended:\n"
    "\n"
    "  JOB  STATE   FUNCTION  QUEUE    ATTEMPTS  FINISHED             ERROR\n"
    "   42  failed  render    default         2  2024-05-01 12:00:03  bad frame\n"
    "        attempt 1: w1@node1[4242], 2024-05-01 12:00:01, 1.2 s, worker died\n"
    "        attempt 2: w2@node2[977], 2024-05-01 12:00:02, 0.8 s, bad frame\n"
    "\n"
    "`taskq retry JOBID` queues a failed job again; `taskq wait JOBID` collects\n"
    "its outcome (the broker then forgets it).\n"
    "\n"
    "Options:\n"
    "  -j, --json      print one JSON object per job and line instead (see the\n"
    "                  README)\n"
    "  -n, --limit N   list the N oldest failed jobs at most (default: all)\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit status:\n"
    "  0    success (also when no job failed)\n"
    "  2    bad command line\n"
    "  125  no broker answered, or it could not list the jobs\n";

static const char retry_usage[] =
    "Usage: taskq retry [--wait] [--timeout S] JOBID...\n"
    "\n"
    "Queues failed jobs (see `taskq failed`) again under the same ids: each gets\n"
    "all its attempts again and keeps its history.  Prints \"job N queued again\"\n"
    "for each.  With --wait, then waits for their outcomes and prints each as\n"
    "one line of JSON, as `taskq wait` does (the \"queued again\" lines then go\n"
    "to standard error).  The outcomes stay with the broker: a job that fails\n"
    "again is listed by `taskq failed` again, and `taskq wait` collects it.\n"
    "\n"
    "Options:\n"
    "  -w, --wait        wait for the outcomes\n"
    "  -t, --timeout S   with --wait, stop waiting after S seconds (default: no\n"
    "                    limit)\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status:\n"
    "  0    every job was queued again (with --wait: and is done)\n"
    "  1    a job is not a failed job the broker keeps (with --wait: or it\n"
    "       failed again, was cancelled or lost)\n"
    "  2    bad command line\n"
    "  124  --timeout ran out before every job ended\n"
    "  125  no broker answered, or it refused (e.g. it cannot store tasks now)\n"
    "  130  interrupted by Ctrl-C while waiting (the jobs go on)\n";

/* Say why a request to the broker failed; returns CLI_EXIT_TASKQ. */
static int request_failed(const cli_ctx_t *ctx, const char *what, int rc)
{
    if (rc == TASKQ_ETIMEDOUT)
        cli_error(ctx, "%s: the broker at %s did not answer within %d ms", what, ctx->broker,
                  (int)ctx->connect_timeout_ms);
    else if (rc == TASKQ_ECLOSED)
        cli_error(ctx, "%s: lost the broker at %s", what, ctx->broker);
    else if (rc == TASKQ_EPROTO)
        cli_error(ctx, "%s: the broker at %s is too old for this command", what, ctx->broker);
    else
        cli_error(ctx, "%s: %s", what, taskq_strerror(rc));
    return CLI_EXIT_TASKQ;
}

/* ---- failed --------------------------------------------------------------- */

/* The pages of failed jobs received, in order. */
typedef struct pages {
    taskq_failed_t **v;
    size_t *n;
    size_t count, cap;
} pages_t;

static int pages_add(pages_t *p, taskq_failed_t *jobs, size_t n)
{
    if (p->count == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        taskq_failed_t **v = realloc(p->v, cap * sizeof *v);
        if (v)
            p->v = v;
        size_t *ns = v ? realloc(p->n, cap * sizeof *ns) : NULL;
        if (!ns)
            return TASKQ_ENOMEM;
        p->n = ns;
        p->cap = cap;
    }
    p->v[p->count] = jobs;
    p->n[p->count++] = n;
    return 0;
}

static void pages_free(pages_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        taskq_failed_free(&p->v[i]);
    free(p->v);
    free(p->n);
}

/* "2024-05-01 12:00:03" in local time, or "?" for 0. */
static void format_time(uint64_t unix_ms, char *buf, size_t cap)
{
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (unix_ms == 0 || !localtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, cap, "?");
}

/* "250 ms", "1.2 s", "3 min 5 s", "2 h 10 min". */
static void format_duration(uint64_t ms, char *buf, size_t cap)
{
    if (ms < 1000)
        snprintf(buf, cap, "%u ms", (unsigned)ms);
    else if (ms < 60000)
        snprintf(buf, cap, "%.1f s", (double)ms / 1000);
    else if (ms < 3600000)
        snprintf(buf, cap, "%u min %u s", (unsigned)(ms / 60000), (unsigned)(ms / 1000 % 60));
    else
        snprintf(buf, cap, "%llu h %u min", (unsigned long long)(ms / 3600000),
                 (unsigned)(ms / 60000 % 60));
}

/* Print text on one line: control characters become spaces. */
static void put_line_text(const char *text)
{
    for (const char *p = text; *p; p++)
        putchar((unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p);
}

/* "w1@node1[4242]", as much of it as is known. */
static void put_worker(const taskq_failed_attempt_t *a)
{
    if (!a->worker[0] && !a->host[0] && !a->pid) {
        fputs("unknown worker", stdout);
        return;
    }
    put_line_text(a->worker[0] ? a->worker : "?");
    if (a->host[0]) {
        putchar('@');
        put_line_text(a->host);
    }
    if (a->pid)
        printf("[%u]", (unsigned)a->pid);
}

static void put_attempt(const taskq_failed_attempt_t *a)
{
    char start[32], took[32];
    format_time(a->started_ms, start, sizeof start);
    if (a->started_ms && a->ended_ms >= a->started_ms)
        format_duration(a->ended_ms - a->started_ms, took, sizeof took);
    else
        snprintf(took, sizeof took, "?");
    printf("      attempt %u: ", (unsigned)a->attempt);
    put_worker(a);
    printf(", %s, %s, ", start, took);
    put_line_text(a->cause);
    putchar('\n');
}

/* Column widths of the table: job, state, function, queue, attempts. */
typedef struct widths {
    int job, state, function, queue, attempts;
} widths_t;

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static void print_table(const pages_t *p)
{
    widths_t w = {3, 5, 8, 5, 8};
    char num[32];
    for (size_t i = 0; i < p->count; i++) {
        for (size_t k = 0; k < p->n[i]; k++) {
            const taskq_failed_t *j = &p->v[i][k];
            w.job = max_int(w.job, snprintf(num, sizeof num, "%llu",
                                            (unsigned long long)j->job_id));
            w.state = max_int(w.state, (int)strlen(cli_state_name(j->state)));
            w.function = max_int(w.function, (int)strlen(j->function));
            w.queue = max_int(w.queue, (int)strlen(j->queue));
            w.attempts = max_int(w.attempts, snprintf(num, sizeof num, "%u",
                                                      (unsigned)j->attempts));
        }
    }
    printf("%*s  %-*s  %-*s  %-*s  %*s  %-19s  ERROR\n", w.job, "JOB", w.state, "STATE",
           w.function, "FUNCTION", w.queue, "QUEUE", w.attempts, "ATTEMPTS", "FINISHED");
    for (size_t i = 0; i < p->count; i++) {
        for (size_t k = 0; k < p->n[i]; k++) {
            const taskq_failed_t *j = &p->v[i][k];
            char finished[32];
            format_time(j->finished_ms, finished, sizeof finished);
            printf("%*llu  %-*s  ", w.job, (unsigned long long)j->job_id, w.state,
                   cli_state_name(j->state));
            printf("%-*s  %-*s  %*u  %-19s  ", w.function, j->function, w.queue, j->queue,
                   w.attempts, (unsigned)j->attempts, finished);
            put_line_text(j->error);
            putchar('\n');
            for (size_t h = 0; h < j->n_history; h++)
                put_attempt(&j->history[h]);
        }
    }
}

static int set_int(json_t *o, const char *key, uint64_t v)
{
    return json_object_set_new(o, key, json_integer((json_int_t)v));
}

static int set_text(json_t *o, const char *key, const char *text)
{
    return json_object_set_new(o, key, cli_json_text(text));
}

/* One job as a JSON object, or NULL if out of memory. */
static json_t *job_json(const taskq_failed_t *j)
{
    json_t *o = json_object(), *hist = json_array();
    int bad = !o || !hist || set_int(o, "job", j->job_id) ||
              json_object_set_new(o, "state", json_string(cli_state_name(j->state))) ||
              set_text(o, "function", j->function) || set_text(o, "queue", j->queue) ||
              set_int(o, "attempts", j->attempts) || set_int(o, "finished_ms", j->finished_ms) ||
              set_text(o, "error", j->error);
    for (size_t h = 0; !bad && h < j->n_history; h++) {
        const taskq_failed_attempt_t *a = &j->history[h];
        json_t *e = json_object();
        bad = !e || json_array_append_new(hist, e) || set_int(e, "attempt", a->attempt) ||
              set_text(e, "worker", a->worker) || set_text(e, "host", a->host) ||
              set_int(e, "pid", a->pid) || set_int(e, "started_ms", a->started_ms) ||
              set_int(e, "ended_ms", a->ended_ms) || set_text(e, "cause", a->cause);
    }
    if (!bad) {
        bad = json_object_set_new(o, "history", hist);
        hist = NULL;
    }
    json_decref(hist);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_json(const cli_ctx_t *ctx, const taskq_failed_t *jobs, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        json_t *o = job_json(&jobs[k]);
        int bad = !o || cli_json_print(stdout, o);
        json_decref(o);
        if (bad) {
            cli_error(ctx, "cannot print job %llu", (unsigned long long)jobs[k].job_id);
            return CLI_EXIT_TASKQ;
        }
    }
    return 0;
}

/* Read the list page by page: JSON lines go out as pages come, the table
 * once every page is in (its columns fit the widest entry). */
static int list_failed(const cli_ctx_t *ctx, taskq_client_t *c, bool json, uint64_t limit)
{
    pages_t pages = {0};
    uint64_t after = 0, total = 0;
    int rc = 0;
    while (rc == 0 && total < limit) {
        taskq_failed_t *jobs;
        size_t n;
        uint32_t want = limit - total < PAGE_JOBS ? (uint32_t)(limit - total) : PAGE_JOBS;
        int err = taskq_client_failed(c, after, want, ctx->connect_timeout_ms, &jobs, &n);
        if (err) {
            rc = request_failed(ctx, "cannot list the failed jobs", err);
            break;
        }
        if (n == 0)
            break;
        if (jobs[n - 1].job_id <= after || n > want) {
            cli_error(ctx, "the broker at %s sent failed jobs out of order", ctx->broker);
            taskq_failed_free(&jobs);
            rc = CLI_EXIT_TASKQ;
            break;
        }
        after = jobs[n - 1].job_id;
        total += n;
        if (json) {
            rc = print_json(ctx, jobs, n);
            taskq_failed_free(&jobs);
        } else if (pages_add(&pages, jobs, n) != 0) {
            taskq_failed_free(&jobs);
            cli_error(ctx, "out of memory");
            rc = CLI_EXIT_TASKQ;
        }
    }
    if (rc == 0 && !json) {
        if (total)
            print_table(&pages);
        else
            puts("No failed jobs.");
    }
    pages_free(&pages);
    return rc;
}

int cli_failed(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"limit", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    bool json = false;
    uint64_t limit = UINT64_MAX;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":jn:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'n':
            if (cli_parse_uint(optarg, 1, UINT64_MAX, &limit) != 0)
                return cli_usage(ctx, "failed", "--limit wants a number of jobs, not \"%s\"",
                                 optarg);
            break;
        case 'h':
            fputs(failed_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    if (optind < argc)
        return cli_usage(ctx, "failed", "unexpected argument \"%s\"", argv[optind]);
    taskq_client_t *client = NULL;
    int rc = cli_connect(ctx, &client);
    if (rc == 0)
        rc = list_failed(ctx, client, json, limit);
    taskq_client_destroy(&client);
    return rc;
}

/* ---- retry ------------------------------------------------------------- */

/* Queue each job again; fs[i] gets the future of ids[i], or NULL if it was
 * refused.  Returns 0, CLI_EXIT_FAILED (a job is not a failed one) or
 * CLI_EXIT_TASKQ (a refusal, or no broker: the rest is not tried). */
static int retry_all(const cli_ctx_t *ctx, taskq_client_t *c, const uint64_t *ids, size_t n,
                     bool wait, taskq_future_t **fs)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "job %llu", (unsigned long long)ids[i]);
        int err = taskq_client_retry(c, ids[i], ctx->connect_timeout_ms, &fs[i]);
        if (err == 0) {
            fprintf(wait ? stderr : stdout, "job %llu queued again\n",
                    (unsigned long long)ids[i]);
        } else if (err == TASKQ_ENOJOB) {
            cli_error(ctx, "%s: the broker keeps no failed job with this id (taskq failed)",
                      what);
            rc = rc ? rc : CLI_EXIT_FAILED;
        } else if (err == TASKQ_ESTORAGE || err == TASKQ_EREFUSED || err == TASKQ_EDENIED) {
            cli_error(ctx, "%s: the broker refused: %s", what, taskq_strerror(err));
            rc = CLI_EXIT_TASKQ;
        } else {
            return request_failed(ctx, what, err);
        }
    }
    fflush(stdout);
    return rc;
}

int cli_retry(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"wait", no_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    bool wait = false;
    int32_t timeout_ms = TASKQ_TIMEOUT_INFINITE;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":wt:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            wait = true;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &timeout_ms) != 0)
                return cli_usage(ctx, "retry", "--timeout wants seconds, not \"%s\"", optarg);
            break;
        case 'h':
            fputs(retry_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    if (timeout_ms != TASKQ_TIMEOUT_INFINITE && !wait)
        return cli_usage(ctx, "retry", "--timeout limits --wait; add --wait");
    uint64_t *ids;
    size_t n;
    int rc = cli_parse_ids(ctx, "retry", argc, argv, &ids, &n);
    if (rc)
        return rc;
    taskq_future_t **fs = calloc(n, sizeof *fs);
    if (!fs) {
        free(ids);
        cli_error(ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    /* The outcomes stay at the broker, for `taskq failed` and `taskq wait`. */
    cli_ctx_t cctx = *ctx;
    cctx.leave_outcomes = true;
    taskq_client_t *client = NULL;
    rc = cli_connect(&cctx, &client);
    if (rc == 0)
        rc = retry_all(ctx, client, ids, n, wait, fs);
    if (wait && client && rc != CLI_EXIT_TASKQ) {
        cli_sigint_catch();
        int w = cli_wait_outcomes(ctx, fs, ids, n, timeout_ms);
        rc = w > rc ? w : rc;
    }
    for (size_t i = 0; i < n; i++)
        taskq_future_destroy(&fs[i]);
    free(fs);
    free(ids);
    taskq_client_destroy(&client);
    return rc;
}
