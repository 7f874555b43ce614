/*
 * cli_main.c - the taskq command: global options, command dispatch, the
 * main --help and --version, and what the commands share: connecting (with
 * CURVE keys if given) with a clear message, usage errors, option values,
 * and Ctrl-C.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keys.h"

#define CONNECT_TIMEOUT_DEFAULT_MS 5000
#define SECONDS_MAX 2000000.0

static volatile sig_atomic_t interrupted;

static const char usage_text[] =
    "Usage: taskq [--broker ENDPOINT] [--connect-timeout S]\n"
    "             [--curve-server-key FILE --curve-key FILE] COMMAND [ARGS...]\n"
    "       taskq --help | --version | help COMMAND\n"
    "\n"
    "Runs shell commands and calls functions on the workers of a taskq broker.\n"
    "\n"
    "Commands:\n"
    "  run     run one command on a worker; relay its output and exit status\n"
    "  map     run a command once per input line or argument, like GNU parallel\n"
    "  call    call a registered function with a JSON argument; print the result\n"
    "  wait    wait for jobs by id and print their outcomes\n"
    "  cancel  cancel jobs by id\n"
    "  failed  the failed jobs the broker keeps, with the history of their attempts\n"
    "  retry   queue failed jobs again by id\n"
    "  status  queues and workers of the broker, once or refreshed (--watch)\n"
    "  ping    the broker's version and the round-trip time\n"
    "  keygen  write a new CURVE key pair, NAME.pub and NAME.key\n"
    "\n"
    "Options:\n"
    "  -b, --broker ENDPOINT   the broker (default: $TASKQ_BROKER, else\n"
    "                          " TASKQ_DEFAULT_ENDPOINT ")\n"
    "      --connect-timeout S how long to wait for the broker to answer\n"
    "                          (default 5)\n"
    "      --curve-server-key FILE\n"
    "                          the broker's public key (its .pub file, or the key\n"
    "                          itself): talk to it with CurveZMQ (default:\n"
    "                          $TASKQ_CURVE_SERVER_KEY); needs --curve-key\n"
    "      --curve-key FILE    this client's secret key (a .key file from `taskq\n"
    "                          keygen`; default: $TASKQ_CURVE_KEY)\n"
    "  -h, --help              this help; `taskq COMMAND --help` for a command\n"
    "  -V, --version           the version of taskq\n"
    "\n"
    "Exit status:\n"
    "  0    success\n"
    "  1    the task failed or was cancelled (call, wait, cancel, retry)\n"
    "  2    bad command line\n"
    "  124  --timeout ran out\n"
    "  125  no broker answered, the broker refused (the request, or this key),\n"
    "       or another taskq error\n"
    "  126  run: the command could not be started\n"
    "  127  run: the command was not found\n"
    "  130  interrupted by Ctrl-C\n"
    "run passes its command's exit status through (128 + N for signal N);\n"
    "map exits with the number of failed jobs (at most 101).\n";

static const struct {
    const char *name;
    int (*fn)(const cli_ctx_t *, int, char **);
} commands[] = {
    {"run", cli_run},       {"map", cli_map},       {"call", cli_call},   {"wait", cli_wait},
    {"cancel", cli_cancel}, {"failed", cli_failed}, {"retry", cli_retry}, {"status", cli_status},
    {"ping", cli_ping},     {"keygen", cli_keygen},
};

void cli_error(const cli_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", ctx->prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage(const cli_ctx_t *ctx, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s %s: ", ctx->prog, cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", ctx->prog, cmd);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_bad_option(const cli_ctx_t *ctx, char *const *argv, int c)
{
    /* getopt_long() has moved past the option it refused. */
    const char *opt = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        return cli_usage(ctx, argv[0], "option %s needs a value", opt);
    if (optopt && opt[0] == '-' && opt[1] != '-')
        return cli_usage(ctx, argv[0], "unknown option -%c", optopt);
    return cli_usage(ctx, argv[0], "unknown option %s", opt);
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_parse_seconds(const char *s, int32_t *ret_ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= 0 && v <= SECONDS_MAX))
        return TASKQ_EINVAL;
    *ret_ms = (int32_t)ceil(v * 1000);
    return 0;
}

int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end || errno || v < min || v > max)
        return TASKQ_EINVAL;
    *ret = v;
    return 0;
}

int cli_read_stdin(const cli_ctx_t *ctx, size_t max, char **ret, size_t *ret_len)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        if (len + 1 >= cap) {
            size_t want = cap ? cap * 2 : 65536;
            char *more = realloc(buf, want);
            if (!more) {
                free(buf);
                cli_error(ctx, "out of memory");
                return CLI_EXIT_TASKQ;
            }
            buf = more;
            cap = want;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - 1 - len);
        if (n == 0)
            break;
        if (n > 0 && (len += (size_t)n) > max) {
            free(buf);
            cli_error(ctx, "standard input holds more than the %zu MiB a task can take",
                      max >> 20);
            return CLI_EXIT_TASKQ;
        }
        if (n < 0 && (errno != EINTR || cli_interrupted())) {
            int rc = cli_interrupted() ? CLI_EXIT_INTERRUPTED : CLI_EXIT_TASKQ;
            if (rc == CLI_EXIT_TASKQ)
                cli_error(ctx, "cannot read standard input: %s", strerror(errno));
            free(buf);
            return rc;
        }
    }
    buf[len] = '\0';
    *ret = buf;
    *ret_len = len;
    return 0;
}

int cli_write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void on_sigint(int sig)
{
    if (interrupted) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    interrupted = 1;
}

void cli_sigint_catch(void)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

bool cli_interrupted(void)
{
    return interrupted;
}

/* "5 s", "0.5 s": a timeout in messages. */
static void format_seconds(int32_t ms, char *buf, size_t cap)
{
    if (ms % 1000 == 0)
        snprintf(buf, cap, "%d s", (int)(ms / 1000));
    else
        snprintf(buf, cap, "%g s", ms / 1000.0);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Read ctx's CURVE keys into server and secret (Z85), after checking that
 * they go together and that neither is the other kind of key file.
 * Returns 0 (also without CURVE), or CLI_EXIT_USAGE after a message. */
static int read_curve_keys(const cli_ctx_t *ctx, char server[TQ_KEY_Z85_SIZE],
                           char secret[TQ_KEY_Z85_SIZE])
{
    const char *sk = ctx->curve_server_key, *ck = ctx->curve_key;
    if (!sk && !ck)
        return 0;
    char err[512];
    if (!sk || !ck) {
        cli_error(ctx, "--curve-server-key and --curve-key (or $TASKQ_CURVE_SERVER_KEY and "
                       "$TASKQ_CURVE_KEY) go together: the broker's public key and this "
                       "client's secret key");
    } else if (ends_with(ck, ".pub")) {
        cli_error(ctx, "--curve-key wants this client's secret key (NAME.key), not %s", ck);
    } else if (ends_with(sk, ".key")) {
        cli_error(ctx, "--curve-server-key wants the broker's public key (NAME.pub), not %s; "
                       "a secret key stays with its owner",
                  sk);
    } else if (tq_key_read(sk, server, err, sizeof err) != 0) {
        cli_error(ctx, "cannot read the broker's public key: %s", err);
    } else if (tq_key_read(ck, secret, err, sizeof err) != 0) {
        cli_error(ctx, "cannot read this client's secret key: %s", err);
    } else {
        return 0;
    }
    return CLI_EXIT_USAGE;
}

/* True for an endpoint on this machine (ipc, inproc, loopback TCP), which
 * a broker may serve without CURVE. */
static bool endpoint_local(const char *ep)
{
    static const char *const local[] = {"ipc://", "inproc://", "tcp://127.", "tcp://localhost:",
                                        "tcp://[::1]:", "tcp://lo:"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
        if (strncmp(ep, local[i], strlen(local[i])) == 0)
            return true;
    }
    return false;
}

int cli_connect(const cli_ctx_t *ctx, taskq_client_t **ret)
{
    char server[TQ_KEY_Z85_SIZE], secret[TQ_KEY_Z85_SIZE];
    int rc = read_curve_keys(ctx, server, secret);
    if (rc)
        return rc;
    bool curve = ctx->curve_key != NULL;
    taskq_client_opts_t opts = {
        .name = "taskq",
        .leave_outcomes = ctx->leave_outcomes,
        .curve_server_key = curve ? server : NULL,
        .curve_key = curve ? secret : NULL,
    };
    taskq_client_t *c = NULL;
    rc = taskq_client_new(ctx->broker, &opts, &c);
    char public_key[TQ_KEY_Z85_SIZE] = "";
    if (curve && tq_key_public(secret, public_key) != 0)
        public_key[0] = '\0';
    explicit_bzero(secret, sizeof secret);
    if (rc == TASKQ_EINVAL) {
        cli_error(ctx, "%s is not a broker endpoint ZeroMQ understands (e.g. %s, "
                       "ipc:///run/taskq/taskq.sock)",
                  ctx->broker, TASKQ_DEFAULT_ENDPOINT);
        return CLI_EXIT_USAGE;
    }
    if (rc == 0)
        rc = taskq_client_ping(c, ctx->connect_timeout_ms, NULL, NULL);
    if (rc == 0) {
        *ret = c;
        return 0;
    }
    char within[32];
    format_seconds(ctx->connect_timeout_ms, within, sizeof within);
    if ((rc == TASKQ_ETIMEDOUT || rc == TASKQ_ECLOSED) && !curve && !endpoint_local(ctx->broker))
        cli_error(ctx, "no answer from %s within %s — is taskqd running? (a broker on another "
                       "host needs its public key and this client's key: --curve-server-key "
                       "and --curve-key)",
                  ctx->broker, within);
    else if ((rc == TASKQ_ETIMEDOUT || rc == TASKQ_ECLOSED) && curve)
        cli_error(ctx, "no answer from %s within %s — is taskqd running, and is %s its public "
                       "key?",
                  ctx->broker, within, ctx->curve_server_key);
    else if (rc == TASKQ_ETIMEDOUT || rc == TASKQ_ECLOSED)
        cli_error(ctx, "no answer from %s within %s — is taskqd running? (if it uses CURVE: "
                       "--curve-server-key and --curve-key)",
                  ctx->broker, within);
    else if (rc == TASKQ_EDENIED && curve)
        cli_error(ctx, "the broker at %s refused this key (%s, public key %s); the broker's "
                       "administrator can let it in by adding its .pub file to the broker's "
                       "--allow-clients directory",
                  ctx->broker, ctx->curve_key, public_key);
    else if (rc == TASKQ_EDENIED)
        cli_error(ctx, "the broker at %s refused this client", ctx->broker);
    else if (rc == TASKQ_EPROTO)
        cli_error(ctx, "the broker at %s speaks another protocol version; use a taskq of the "
                       "broker's version",
                  ctx->broker);
    else
        cli_error(ctx, "cannot talk to the broker at %s: %s", ctx->broker, taskq_strerror(rc));
    taskq_client_destroy(&c);
    return CLI_EXIT_TASKQ;
}

int cli_await(const cli_ctx_t *ctx, taskq_future_t *f)
{
    int rc;
    while ((rc = taskq_future_wait(f, CLI_SLICE_MS)) == TASKQ_ETIMEDOUT && !cli_interrupted())
        continue;
    if (rc != TASKQ_ETIMEDOUT)
        return rc;
    taskq_cancel(f);
    rc = taskq_future_wait(f, CLI_CANCEL_WAIT_MS);
    uint64_t job = taskq_future_job_id(f);
    if (rc == TASKQ_ECANCELED)
        cli_error(ctx, "interrupted: job %llu cancelled", (unsigned long long)job);
    else if (rc == TASKQ_ETIMEDOUT)
        cli_error(ctx, "interrupted: job %llu: the broker did not confirm the cancel within "
                       "%d s",
                  (unsigned long long)job, CLI_CANCEL_WAIT_MS / 1000);
    else
        cli_error(ctx, "interrupted: job %llu had already ended: %s",
                  (unsigned long long)job, rc ? taskq_strerror(rc) : "done");
    return CLI_EXIT_INTERRUPTED;
}

void cli_report(const cli_ctx_t *ctx, const taskq_future_t *f, int rc)
{
    unsigned long long job = taskq_future_job_id(f);
    const char *text = taskq_future_error(f);
    const char *sep = text[0] ? ": " : "";
    switch (rc) {
    case TASKQ_EFAILED:
        cli_error(ctx, "job %llu failed%s%s", job, sep, text);
        break;
    case TASKQ_ECANCELED:
        cli_error(ctx, "job %llu was cancelled%s%s", job, sep, text);
        break;
    case TASKQ_ELOST:
        cli_error(ctx, "job %llu was lost%s%s", job, sep, text);
        break;
    case TASKQ_ERUNLIMIT:
        cli_error(ctx, "job %llu ran past its --timeout on every attempt%s%s", job, sep, text);
        break;
    case TASKQ_ENOJOB:
        cli_error(ctx, "job %llu: the broker no longer knows it (was it restarted?)", job);
        break;
    case TASKQ_ECLOSED:
        cli_error(ctx, "lost the broker at %s%s%s", ctx->broker, sep, text);
        break;
    case TASKQ_EDENIED:
        /* The whole connection ("the broker refused this key"), or this
         * task (e.g. exec for a client not allowed to run it). */
        if (strncmp(text, "the broker ", 11) == 0)
            cli_error(ctx, "%s (%s)", text, ctx->curve_key ? ctx->curve_key : ctx->broker);
        else
            cli_error(ctx, "the broker refused the task%s%s", sep, text);
        break;
    default:
        cli_error(ctx, "the broker refused the task: %s%s%s", taskq_strerror(rc), sep, text);
        break;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"connect-timeout", required_argument, NULL, 'T'},
        {"curve-server-key", required_argument, NULL, 'S'},
        {"curve-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    const char *env = getenv("TASKQ_BROKER");
    const char *env_server_key = getenv("TASKQ_CURVE_SERVER_KEY");
    const char *env_key = getenv("TASKQ_CURVE_KEY");
    cli_ctx_t ctx = {
        .prog = "taskq",
        .broker = env && env[0] ? env : TASKQ_DEFAULT_ENDPOINT,
        .connect_timeout_ms = CONNECT_TIMEOUT_DEFAULT_MS,
        .curve_server_key = env_server_key && env_server_key[0] ? env_server_key : NULL,
        .curve_key = env_key && env_key[0] ? env_key : NULL,
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:b:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            ctx.broker = optarg;
            break;
        case 'T':
            if (cli_parse_seconds(optarg, &ctx.connect_timeout_ms) != 0 ||
                ctx.connect_timeout_ms == 0) {
                cli_error(&ctx, "--connect-timeout wants seconds above 0, not \"%s\"", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'S':
        case 'K':
            if (!optarg[0]) {
                cli_error(&ctx, "--%s wants a key file",
                          c == 'S' ? "curve-server-key" : "curve-key");
                return CLI_EXIT_USAGE;
            }
            *(c == 'S' ? &ctx.curve_server_key : &ctx.curve_key) = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        case 'V':
            printf("taskq %s (libtaskq %s)\n", TASKQ_VERSION_STRING, taskq_version());
            return CLI_EXIT_OK;
        default: {
            const char *opt = argv[optind - 1];
            if (c == ':')
                cli_error(&ctx, "option %s needs a value", opt);
            else
                cli_error(&ctx, "unknown option %s", opt);
            fprintf(stderr, "Try 'taskq --help'.\n");
            return CLI_EXIT_USAGE;
        }
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return CLI_EXIT_USAGE;
    }

    /* `taskq help CMD` is `taskq CMD --help`. */
    char *help_argv[] = {NULL, "--help", NULL};
    char *name = argv[optind];
    int cargc = argc - optind;
    char **cargv = argv + optind;
    if (strcmp(name, "help") == 0) {
        if (cargc < 2) {
            fputs(usage_text, stdout);
            return CLI_EXIT_OK;
        }
        name = help_argv[0] = argv[optind + 1];
        cargc = 2;
        cargv = help_argv;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name) == 0) {
            optind = 0; /* glibc: start over on the command's arguments */
            return commands[i].fn(&ctx, cargc, cargv);
        }
    }
    cli_error(&ctx, "unknown command \"%s\"; the commands are run, map, call, wait, cancel, "
                    "failed, retry, status, ping and keygen (taskq --help)",
              name);
    return CLI_EXIT_USAGE;
}
