/*
 * cli_call.c - `taskq call` (a registered function with a JSON argument),
 * `taskq wait` and `taskq cancel` (jobs by id, from any process), and the
 * JSON line each prints per outcome (also for `taskq retry --wait`).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_json.h"

static const char call_usage[] =
    "Usage: taskq call [OPTIONS] FUNC [JSON-ARG | -]\n"
    "\n"
    "Calls the function FUNC, which a worker registered, with JSON-ARG (default\n"
    "null; - reads the JSON from standard input) converted to msgpack, waits\n"
    "for the outcome, and prints the result as one line of JSON.  Options go\n"
    "before FUNC.\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q       the queue (default \"default\")\n"
    "  -t, --timeout S     run limit of each attempt, in seconds (default: none)\n"
    "  -a, --attempts N    deliveries before the task is given up, 1..1000\n"
    "                      (default 3)\n"
    "  -d, --detach        print the job id and return at once; `taskq wait ID`\n"
    "                      collects the outcome\n"
    "  -h, --help          this help\n"
    "\n"
    "JSON and msgpack: null, booleans, integers (signed 64-bit), floats,\n"
    "strings, arrays and objects map to their msgpack types; {\"$bin\": \"BASE64\"}\n"
    "is bin and {\"$ext\": [TYPE, \"BASE64\"]} is ext, both ways.  A result's map\n"
    "keys that are not strings print as their JSON text (1 -> \"1\").\n"
    "\n"
    "Ctrl-C cancels the task.\n"
    "\n"
    "Exit status:\n"
    "  0    done: the result (with --detach: the job id) is on standard output\n"
    "  1    the function failed, or the task was cancelled or lost\n"
    "  2    bad command line or JSON\n"
    "  124  the task ran past --timeout on every attempt\n"
    "  125  no broker answered, the broker refused the task, or another error\n"
    "  130  interrupted by Ctrl-C (the task is cancelled)\n";

static const char wait_usage[] =
    "Usage: taskq wait [--timeout S] JOBID...\n"
    "\n"
    "Waits for jobs submitted by any process (e.g. `taskq call --detach`) and\n"
    "prints each outcome as one line of JSON as it comes:\n"
    "  {\"job\": 42, \"state\": \"done\", \"attempts\": 1, \"result\": ...}\n"
    "  {\"job\": 43, \"state\": \"failed\", \"attempts\": 1, \"error\": \"...\"}\n"
    "States: done, failed, cancelled, lost, runlimit (ran past its run limit\n"
    "on every attempt), unknown (the broker does not know the id, or the\n"
    "outcome was already collected), closed (the broker went away), and\n"
    "pending (still running when --timeout ran out).  Waiting collects an\n"
    "outcome: the broker then forgets the job.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout S   stop waiting after S seconds (default: no limit)\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status:\n"
    "  0    every job is done\n"
    "  1    a job failed, was cancelled or lost, or is unknown\n"
    "  2    bad command line\n"
    "  124  --timeout ran out before every job ended\n"
    "  125  no broker answered, or it went away\n"
    "  130  interrupted by Ctrl-C (the jobs go on)\n";

static const char cancel_usage[] =
    "Usage: taskq cancel JOBID...\n"
    "\n"
    "Cancels jobs submitted by any process: a queued job is removed, a running\n"
    "one is stopped on its worker.  Prints one line of JSON per job: for a job\n"
    "it cancelled, {\"job\": 42, \"state\": \"cancelled\"} (the outcome stays with\n"
    "the broker, for `taskq wait`); for a job that had already ended, its\n"
    "outcome as `taskq wait` prints it (and collects it).\n"
    "\n"
    "Options:\n"
    "  -h, --help   this help\n"
    "\n"
    "Exit status:\n"
    "  0    every job is cancelled, or had already ended\n"
    "  1    a job is unknown to the broker\n"
    "  2    bad command line\n"
    "  125  no broker answered\n";

static const char *const state_names[] = {
    [TASKQ_STATE_PENDING] = "pending", [TASKQ_STATE_DONE] = "done",
    [TASKQ_STATE_FAILED] = "failed",   [TASKQ_STATE_CANCELLED] = "cancelled",
    [TASKQ_STATE_LOST] = "lost",       [TASKQ_STATE_RUNLIMIT] = "runlimit",
    [TASKQ_STATE_UNKNOWN] = "unknown", [TASKQ_STATE_REFUSED] = "refused",
    [TASKQ_STATE_CLOSED] = "closed",
};

const char *cli_state_name(taskq_state_t st)
{
    return (unsigned)st < sizeof state_names / sizeof state_names[0] ? state_names[st] : "?";
}

/* Print the outcome line of f (job: its id) to stdout.  Returns 0, or
 * CLI_EXIT_TASKQ after a message. */
static int print_outcome(const cli_ctx_t *ctx, uint64_t job, const taskq_future_t *f)
{
    taskq_state_t st = taskq_future_state(f);
    json_t *line = json_object();
    int bad = !line || json_object_set_new(line, "job", json_integer((json_int_t)job)) ||
              json_object_set_new(line, "state", json_string(cli_state_name(st)));
    if (!bad && st != TASKQ_STATE_PENDING)
        bad = json_object_set_new(line, "attempts", json_integer(taskq_future_attempts(f)));
    if (!bad && st == TASKQ_STATE_DONE) {
        size_t len;
        const void *r = taskq_future_result(f, &len);
        json_t *v = NULL;
        bad = cli_msgpack_to_json(r, len, &v) || json_object_set_new(line, "result", v);
    } else if (!bad && st != TASKQ_STATE_PENDING && taskq_future_error(f)[0]) {
        bad = json_object_set_new(line, "error", cli_json_text(taskq_future_error(f)));
    }
    if (!bad)
        bad = cli_json_print(stdout, line);
    json_decref(line);
    if (bad)
        cli_error(ctx, "cannot print the outcome of job %llu", (unsigned long long)job);
    return bad ? CLI_EXIT_TASKQ : 0;
}

/* Encode the JSON argument (NULL: null; "-": standard input). */
static int call_arg(const cli_ctx_t *ctx, const char *json, void **arg, size_t *arg_len)
{
    char *in = NULL;
    size_t len = json ? strlen(json) : 4;
    if (json && strcmp(json, "-") == 0) {
        int rc = cli_read_stdin(ctx, CLI_ARG_MAX, &in, &len);
        if (rc)
            return rc;
        json = in;
    }
    char err[256];
    int rc = cli_json_to_msgpack(json ? json : "null", len, arg, arg_len, err, sizeof err);
    free(in);
    if (rc == TASKQ_EINVAL)
        return cli_usage(ctx, "call", "the argument is %s", err);
    if (rc) {
        cli_error(ctx, "%s", err);
        return CLI_EXIT_TASKQ;
    }
    return 0;
}

/*
 * call --detach: print f's job id once the broker took the task.  The
 * wait is pings after the SUBMIT (cli_check_served()'s round trip usually
 * brought the answer already).  The client never acknowledges outcomes
 * (leave_outcomes), so one that arrives meanwhile stays at the broker for
 * `taskq wait`.
 */
static int detach(const cli_ctx_t *ctx, taskq_client_t *c, taskq_future_t *f)
{
    int64_t end = cli_now_ms() + ctx->connect_timeout_ms;
    int rc = taskq_client_flush(c);
    int64_t left;
    while (rc == 0 && !taskq_future_job_id(f) && taskq_future_state(f) == TASKQ_STATE_PENDING &&
           (left = end - cli_now_ms()) > 0)
        rc = taskq_client_ping(c, (int32_t)left, NULL, NULL);
    uint64_t job = taskq_future_job_id(f);
    if (rc == 0 && job) {
        printf("%llu\n", (unsigned long long)job);
        return CLI_EXIT_OK;
    }
    if (rc == 0 && (rc = taskq_future_wait(f, 0)) != TASKQ_ETIMEDOUT)
        cli_report(ctx, f, rc); /* refused */
    else if (rc == TASKQ_ETIMEDOUT)
        cli_error(ctx, "the broker at %s did not take the task within %d ms", ctx->broker,
                  (int)ctx->connect_timeout_ms);
    else
        cli_error(ctx, "the broker at %s did not take the task: %s", ctx->broker,
                  taskq_strerror(rc));
    return CLI_EXIT_TASKQ;
}

int cli_call(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"queue", required_argument, NULL, 'q'},   {"timeout", required_argument, NULL, 't'},
        {"attempts", required_argument, NULL, 'a'}, {"detach", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},          {0},
    };
    taskq_submit_opts_t so = {0};
    bool detached = false;
    int32_t ms;
    uint64_t n;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:q:t:a:dh", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            so.queue = optarg;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &ms) != 0)
                return cli_usage(ctx, "call", "--timeout wants seconds, not \"%s\"", optarg);
            so.timeout_ms = (uint32_t)ms;
            break;
        case 'a':
            if (cli_parse_uint(optarg, 1, 1000, &n) != 0)
                return cli_usage(ctx, "call", "--attempts wants 1..1000, not \"%s\"", optarg);
            so.max_attempts = (uint32_t)n;
            break;
        case 'd':
            detached = true;
            break;
        case 'h':
            fputs(call_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    if (optind >= argc)
        return cli_usage(ctx, "call", "which function? (taskq call FUNC [JSON-ARG])");
    if (argc - optind > 2)
        return cli_usage(ctx, "call", "one JSON argument at most; quote it, and put options "
                                      "before FUNC");
    const char *fn = argv[optind];
    void *arg = NULL;
    size_t arg_len = 0;
    int rc = call_arg(ctx, argv[optind + 1], &arg, &arg_len);
    if (rc)
        return rc;

    taskq_client_t *client = NULL;
    taskq_future_t *f = NULL;
    /* A detaching client leaves the outcome to `taskq wait`, even if it
     * arrives before this process is gone. */
    cli_ctx_t cctx = *ctx;
    cctx.leave_outcomes = detached;
    if ((rc = cli_connect(&cctx, &client)) != 0) {
        free(arg);
        return rc;
    }
    cli_sigint_catch();
    rc = taskq_submit(client, fn, arg, arg_len, &so, &f);
    free(arg);
    if (rc == 0)
        cli_check_served(ctx, client, fn, so.queue);
    if (rc == TASKQ_EINVAL) {
        rc = cli_usage(ctx, "call", "\"%s\" is not a function name, or \"%s\" not a queue name "
                                    "(1 to 255 bytes)",
                       fn, so.queue ? so.queue : "default");
    } else if (rc) {
        cli_error(ctx, "cannot submit: %s", taskq_strerror(rc));
        rc = CLI_EXIT_TASKQ;
    } else if (detached) {
        rc = detach(ctx, client, f);
    } else if ((rc = cli_await(ctx, f)) == 0) {
        size_t len;
        const void *r = taskq_future_result(f, &len);
        json_t *v = NULL;
        rc = cli_msgpack_to_json(r, len, &v) == 0 && cli_json_print(stdout, v) == 0
                 ? CLI_EXIT_OK
                 : CLI_EXIT_TASKQ;
        if (rc)
            cli_error(ctx, "cannot print the result of job %llu as JSON",
                      (unsigned long long)taskq_future_job_id(f));
        json_decref(v);
    } else if (rc < 0) {
        cli_report(ctx, f, rc);
        rc = rc == TASKQ_ERUNLIMIT                                                ? CLI_EXIT_TIMEOUT
             : rc == TASKQ_EFAILED || rc == TASKQ_ECANCELED || rc == TASKQ_ELOST ? CLI_EXIT_FAILED
                                                                                 : CLI_EXIT_TASKQ;
    }
    taskq_future_destroy(&f);
    taskq_client_destroy(&client);
    return rc;
}

/* ---- wait and cancel ---------------------------------------------------- */

int cli_parse_ids(const cli_ctx_t *ctx, const char *cmd, int argc, char **argv,
                  uint64_t **ret, size_t *ret_n)
{
    if (optind >= argc)
        return cli_usage(ctx, cmd, "which jobs? (taskq %s JOBID...)", cmd);
    size_t n = (size_t)(argc - optind);
    uint64_t *ids = calloc(n, sizeof *ids);
    if (!ids) {
        cli_error(ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    for (size_t i = 0; i < n; i++) {
        if (cli_parse_uint(argv[optind + (int)i], 1, INT64_MAX, &ids[i]) != 0) {
            free(ids);
            return cli_usage(ctx, cmd, "\"%s\" is not a job id", argv[optind + (int)i]);
        }
    }
    *ret = ids;
    *ret_n = n;
    return 0;
}

/* Connect and attach a future to each of the n jobs. */
static int attach_all(const cli_ctx_t *ctx, const uint64_t *ids, size_t n,
                      taskq_client_t **ret_client, taskq_future_t ***ret_fs)
{
    taskq_future_t **fs = calloc(n, sizeof *fs);
    if (!fs) {
        cli_error(ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    int rc = cli_connect(ctx, ret_client);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (taskq_future_attach(*ret_client, ids[i], &fs[i]) != 0) {
            cli_error(ctx, "out of memory");
            rc = CLI_EXIT_TASKQ;
        }
    }
    *ret_fs = fs;
    return rc;
}

static void detach_all(taskq_client_t **client, taskq_future_t **fs, size_t n, uint64_t *ids)
{
    for (size_t i = 0; i < n; i++)
        taskq_future_destroy(&fs[i]);
    free(fs);
    free(ids);
    taskq_client_destroy(client);
}

int cli_wait_outcomes(const cli_ctx_t *ctx, taskq_future_t **fs, const uint64_t *ids, size_t n,
                      int32_t timeout_ms)
{
    /* Print outcomes as they come; handled futures leave the array. */
    bool failed = false, closed = false;
    int64_t left = timeout_ms;
    size_t open = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        open += fs[i] != NULL;
    while (open > 0 && rc == 0) {
        size_t i;
        int32_t slice = left >= 0 && left < CLI_SLICE_MS ? (int32_t)left : CLI_SLICE_MS;
        int w = taskq_wait_any(fs, n, slice, &i);
        if (w == TASKQ_ETIMEDOUT) {
            if (cli_interrupted())
                rc = CLI_EXIT_INTERRUPTED;
            else if (left >= 0 && (left -= slice) <= 0)
                break;
            continue;
        }
        int code = taskq_future_wait(fs[i], 0);
        failed |= code != 0;
        closed |= code == TASKQ_ECLOSED || code == TASKQ_EPROTO;
        rc = print_outcome(ctx, ids[i], fs[i]);
        taskq_future_destroy(&fs[i]);
        open--;
    }
    bool pending = false;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (fs[i]) {
            pending = true;
            rc = print_outcome(ctx, ids[i], fs[i]);
        }
    }
    if (closed)
        cli_error(ctx, "lost the broker at %s", ctx->broker);
    if (rc == 0)
        rc = closed ? CLI_EXIT_TASKQ : pending ? CLI_EXIT_TIMEOUT : failed ? CLI_EXIT_FAILED : 0;
    return rc;
}

int cli_wait(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int32_t timeout_ms = TASKQ_TIMEOUT_INFINITE;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (cli_parse_seconds(optarg, &timeout_ms) != 0)
                return cli_usage(ctx, "wait", "--timeout wants seconds, not \"%s\"", optarg);
            break;
        case 'h':
            fputs(wait_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    uint64_t *ids;
    size_t n;
    int rc = cli_parse_ids(ctx, "wait", argc, argv, &ids, &n);
    if (rc)
        return rc;
    taskq_client_t *client = NULL;
    taskq_future_t **fs = NULL;
    rc = attach_all(ctx, ids, n, &client, &fs);
    if (rc) {
        detach_all(&client, fs, n, ids);
        return rc;
    }
    cli_sigint_catch();
    rc = cli_wait_outcomes(ctx, fs, ids, n, timeout_ms);
    detach_all(&client, fs, n, ids);
    return rc;
}

int cli_cancel(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c != 'h')
            return cli_bad_option(ctx, argv, c);
        fputs(cancel_usage, stdout);
        return CLI_EXIT_OK;
    }
    uint64_t *ids;
    size_t n;
    int rc = cli_parse_ids(ctx, "cancel", argc, argv, &ids, &n);
    if (rc)
        return rc;
    taskq_client_t *client = NULL;
    taskq_future_t **fs = NULL;
    rc = attach_all(ctx, ids, n, &client, &fs);

    /* Two round trips after the WATCHes: the broker answers a heartbeat at
     * once but sends the outcomes a WATCH asks for (of jobs that have one,
     * or that it does not know) at the end of its loop turn, so they come
     * before the answer to a heartbeat sent after the first answer. */
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (taskq_client_ping(client, ctx->connect_timeout_ms, NULL, NULL) != 0) {
            cli_error(ctx, "no answer from %s", ctx->broker);
            rc = CLI_EXIT_TASKQ;
        }
    }
    bool unknown = false;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        taskq_state_t st = taskq_future_state(fs[i]);
        if (st != TASKQ_STATE_PENDING) {
            unknown |= st == TASKQ_STATE_UNKNOWN;
            rc = print_outcome(ctx, ids[i], fs[i]);
        } else if (taskq_cancel(fs[i]) != 0) {
            cli_error(ctx, "cannot send the cancel of job %llu", (unsigned long long)ids[i]);
            rc = CLI_EXIT_TASKQ;
        } else {
            rc = printf("{\"job\": %llu, \"state\": \"cancelled\"}\n",
                        (unsigned long long)ids[i]) < 0
                     ? CLI_EXIT_TASKQ
                     : 0;
        }
    }
    /* The client goes without waiting for the CANCELLED outcomes: had it
     * received them it would have acknowledged them, and the broker would
     * forget the jobs before a `taskq wait` could see how they ended. */
    detach_all(&client, fs, n, ids);
    return rc ? rc : unknown ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
