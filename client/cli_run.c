/*
 * cli_run.c - `taskq run`: one command as an `exec` task on a worker, its
 * output relayed byte for byte and its exit status passed through.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char run_usage[] =
    "Usage: taskq run [OPTIONS] [--] CMD [ARGS...]\n"
    "\n"
    "Runs CMD with ARGS (no shell: write sh -c '...' for one) on a worker that\n"
    "serves `exec` (taskq-worker --exec), in the current directory, relays its\n"
    "standard output and error byte for byte once it ends, and exits with its\n"
    "exit status.\n"
    "\n"
    "Options:\n"
    "  -q, --queue Q           the queue (default \"default\")\n"
    "  -t, --timeout S         run limit of each attempt, in seconds (default:\n"
    "                          none); the worker stops the command when it is over\n"
    "  -a, --attempts N        deliveries before the task is given up, 1..1000\n"
    "                          (default 3); another attempt follows only a worker's\n"
    "                          death or a run past --timeout, never an exit status\n"
    "  -e, --env NAME[=VALUE]  set NAME in the command's environment (repeatable;\n"
    "                          NAME alone passes this shell's value); the command\n"
    "                          otherwise has the worker's environment\n"
    "  -C, --cwd DIR           run in DIR instead of the current directory\n"
    "  -i, --stdin             send standard input (read to its end) as the\n"
    "                          command's input; without it the command reads none\n"
    "  -h, --help              this help\n"
    "\n"
    "Ctrl-C cancels the task (the worker stops the command) and exits 130; a\n"
    "second Ctrl-C exits at once.\n"
    "\n"
    "Exit status:\n"
    "  N      the command's exit status\n"
    "  128+N  the command was killed by signal N\n"
    "  2      bad command line\n"
    "  124    the command ran past --timeout on every attempt\n"
    "  125    no broker answered, the task was refused, lost or cancelled,\n"
    "         or another taskq error\n"
    "  126    the command could not be started (e.g. DIR is missing on the\n"
    "         worker, or CMD is not executable)\n"
    "  127    CMD was not found\n"
    "  130    interrupted by Ctrl-C\n";

typedef struct run_opts {
    taskq_submit_opts_t task;
    char **env;     /* "NAME=VALUE" items, malloc'ed */
    int envc;
    const char *cwd; /* NULL: the current directory */
    bool with_stdin;
} run_opts_t;

/* The `exec` argument for argv[0..argc-1] with the options. */
static int build_arg(const cli_ctx_t *ctx, const run_opts_t *o, char **argv, int argc,
                     void **arg, size_t *arg_len)
{
    char *cwd = NULL, *input = NULL;
    size_t input_len = 0;
    int rc = 0;
    if (!o->cwd && !(cwd = getcwd(NULL, 0))) {
        cli_error(ctx, "cannot get the current directory: %s", strerror(errno));
        return CLI_EXIT_TASKQ;
    }
    if (o->with_stdin)
        rc = cli_read_stdin(ctx, CLI_ARG_MAX, &input, &input_len);
    if (rc == 0 && cli_exec_arg_env(argv, argc, o->env, o->envc, o->cwd ? o->cwd : cwd, input,
                                    input_len, arg, arg_len) != 0) {
        cli_error(ctx, "out of memory");
        rc = CLI_EXIT_TASKQ;
    }
    free(cwd);
    free(input);
    return rc;
}

/* Relay a done `exec` task's output; return the command's status. */
static int relay(const cli_ctx_t *ctx, const taskq_future_t *f)
{
    size_t len;
    const void *r = taskq_future_result(f, &len);
    cli_exec_result_t res;
    if (cli_exec_result(r, len, &res) != 0) {
        cli_error(ctx, "job %llu: the worker's answer is not an exec result",
                  (unsigned long long)taskq_future_job_id(f));
        return CLI_EXIT_TASKQ;
    }
    fflush(stdout);
    if (cli_write_all(STDOUT_FILENO, res.out, res.out_len) != 0 ||
        cli_write_all(STDERR_FILENO, res.err, res.err_len) != 0) {
        cli_error(ctx, "cannot write the command's output: %s", strerror(errno));
        return CLI_EXIT_TASKQ;
    }
    if (res.truncated)
        cli_error(ctx, "job %llu: the command's output was cut at the worker's limit",
                  (unsigned long long)taskq_future_job_id(f));
    if (res.signal > 0)
        return 128 + (int)(res.signal & 127);
    return (int)(res.exit & 255);
}

/* The exit status of a task that did not end done (rc its code). */
static int failure_status(const taskq_future_t *f, int rc)
{
    if (rc == TASKQ_ERUNLIMIT)
        return CLI_EXIT_TIMEOUT;
    if (rc != TASKQ_EFAILED)
        return CLI_EXIT_TASKQ;
    /* exec's own errors: "exec: cannot run \"prog\": <strerror>" when the
     * command could not be started. */
    const char *text = taskq_future_error(f);
    const char *enoent = strerror(ENOENT);
    size_t n = strlen(text), m = strlen(enoent);
    if (strncmp(text, "exec: cannot run ", 17) == 0 && n > m && strcmp(text + n - m, enoent) == 0)
        return CLI_EXIT_NOTFOUND;
    return strncmp(text, "exec: ", 6) == 0 ? CLI_EXIT_NOEXEC : CLI_EXIT_TASKQ;
}

static int run(const cli_ctx_t *ctx, const run_opts_t *o, char **argv, int argc)
{
    void *arg;
    size_t arg_len;
    int rc = build_arg(ctx, o, argv, argc, &arg, &arg_len);
    if (rc)
        return rc;
    taskq_client_t *client = NULL;
    taskq_future_t *f = NULL;
    if ((rc = cli_connect(ctx, &client)) != 0) {
        free(arg);
        return rc;
    }
    cli_sigint_catch();
    rc = taskq_submit(client, "exec", arg, arg_len, &o->task, &f);
    free(arg);
    if (rc == 0)
        cli_check_served(ctx, client, "exec", o->task.queue);
    if (rc == TASKQ_EINVAL) {
        rc = cli_usage(ctx, "run", "\"%s\" is not a queue name (1 to 255 bytes)",
                       o->task.queue);
    } else if (rc) {
        cli_error(ctx, "cannot submit: %s", taskq_strerror(rc));
        rc = CLI_EXIT_TASKQ;
    } else if ((rc = cli_await(ctx, f)) == 0) {
        rc = relay(ctx, f);
    } else if (rc < 0) {
        cli_report(ctx, f, rc);
        rc = failure_status(f, rc);
    }
    taskq_future_destroy(&f);
    taskq_client_destroy(&client);
    return rc;
}

int cli_run(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"queue", required_argument, NULL, 'q'}, {"timeout", required_argument, NULL, 't'},
        {"attempts", required_argument, NULL, 'a'}, {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, 'C'},   {"stdin", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},        {0},
    };
    run_opts_t o = {0};
    bool help = false;
    int rc = 0, c;
    int32_t ms;
    uint64_t n;
    char **env = calloc((size_t)argc, sizeof *env);
    if (!env) {
        cli_error(ctx, "out of memory");
        return CLI_EXIT_TASKQ;
    }
    o.env = env;
    opterr = 0;
    while (rc == 0 && !help && (c = getopt_long(argc, argv, "+:q:t:a:e:C:ih", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            o.task.queue = optarg;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &ms) != 0)
                rc = cli_usage(ctx, "run", "--timeout wants seconds, not \"%s\"", optarg);
            else
                o.task.timeout_ms = (uint32_t)ms;
            break;
        case 'a':
            if (cli_parse_uint(optarg, 1, 1000, &n) != 0)
                rc = cli_usage(ctx, "run", "--attempts wants 1..1000, not \"%s\"", optarg);
            else
                o.task.max_attempts = (uint32_t)n;
            break;
        case 'e':
            rc = cli_env_item(optarg, &env[o.envc]);
            if (rc == 0) {
                o.envc++;
            } else if (rc == TASKQ_EINVAL) {
                rc = cli_usage(ctx, "run", "--env %s: %s", optarg,
                               strchr(optarg, '=') ? "the name is empty"
                                                   : "not set here; write NAME=VALUE");
            } else {
                cli_error(ctx, "out of memory");
                rc = CLI_EXIT_TASKQ;
            }
            break;
        case 'C':
            o.cwd = optarg;
            break;
        case 'i':
            o.with_stdin = true;
            break;
        case 'h':
            fputs(run_usage, stdout);
            help = true;
            break;
        default:
            rc = cli_bad_option(ctx, argv, c);
            break;
        }
    }
    if (rc == 0 && !help && optind >= argc)
        rc = cli_usage(ctx, "run", "which command? (taskq run [OPTIONS] -- CMD [ARGS...])");
    if (rc == 0 && !help && o.cwd && !o.cwd[0])
        rc = cli_usage(ctx, "run", "--cwd wants a directory");
    if (rc == 0 && !help)
        rc = run(ctx, &o, argv + optind, argc - optind);
    for (int i = 0; i < o.envc; i++)
        free(env[i]);
    free(env);
    return rc;
}
