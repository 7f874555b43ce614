/*
 * cli.h - what the parts of the taskq command-line tool share: the global
 * options, connecting with a clear message when no broker answers, the
 * exit codes, and one entry point per command (cli_<command>.c).
 */
#ifndef TASKQ_CLI_H
#define TASKQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "taskq.h"

/* Exit codes of the tool (documented in `taskq --help` and the README).
 * `run` passes its command's status through instead, and `map` exits with
 * the number of failed jobs (at most 101). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1       /* the task (call, wait) failed or was cancelled */
#define CLI_EXIT_USAGE 2        /* bad command line */
#define CLI_EXIT_TIMEOUT 124    /* --timeout ran out */
#define CLI_EXIT_TASKQ 125      /* no broker, refused request or key, system error */
#define CLI_EXIT_NOEXEC 126     /* run: the command could not be started */
#define CLI_EXIT_NOTFOUND 127   /* run: the command was not found */
#define CLI_EXIT_INTERRUPTED 130 /* Ctrl-C */

/* The global options, read before the command name. */
typedef struct cli_ctx {
    const char *prog;           /* "taskq", for messages */
    const char *broker;         /* --broker, else $TASKQ_BROKER, else the default */
    int32_t connect_timeout_ms; /* how long to wait for a first answer (5000) */
    bool leave_outcomes;        /* the client acknowledges no outcome (detach) */
    const char *curve_server_key; /* --curve-server-key, else $TASKQ_CURVE_SERVER_KEY:
                                     the broker's public key file; NULL: no CURVE */
    const char *curve_key;      /* --curve-key, else $TASKQ_CURVE_KEY: this
                                   client's secret key file; NULL: no CURVE */
} cli_ctx_t;

/*
 * Create a client for ctx->broker (with ctx's CURVE keys, if any) and
 * check that a broker answers within ctx->connect_timeout_ms.  On failure
 * prints, e.g., "taskq: no answer from tcp://127.0.0.1:7560 within 5 s —
 * is taskqd running?" or "taskq: the broker at ... refused this key (...)"
 * and returns CLI_EXIT_TASKQ (CLI_EXIT_USAGE for an endpoint ZeroMQ does
 * not accept, only one of the CURVE keys, or a key file that cannot be
 * read); on success returns 0 and the client in *ret (caller destroys it).
 */
int cli_connect(const cli_ctx_t *ctx, taskq_client_t **ret);

/* Print "taskq: " + the formatted message + newline to stderr. */
void cli_error(const cli_ctx_t *ctx, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * A bad command line: print "taskq CMD: " + the message, then "Try 'taskq
 * CMD --help'.", to stderr and return CLI_EXIT_USAGE.
 */
int cli_usage(const cli_ctx_t *ctx, const char *cmd, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/*
 * The option getopt_long() just refused, for commands that parse with
 * opterr = 0 and an optstring starting with ':' (after any '+'): c is what
 * getopt_long() returned ('?' unknown option, ':' missing value) and argv
 * the command's arguments.  Prints as cli_usage() does and returns
 * CLI_EXIT_USAGE.
 */
int cli_bad_option(const cli_ctx_t *ctx, char *const *argv, int c);

/* Monotonic milliseconds. */
int64_t cli_now_ms(void);

/* Parse a duration in seconds ("5", "0.25") of at most 2,000,000 s into
 * milliseconds (rounded up, so that "0.0001" is not 0).  Returns 0 or
 * TASKQ_EINVAL. */
int cli_parse_seconds(const char *s, int32_t *ret_ms);

/* Parse a decimal integer in min..max.  Returns 0 or TASKQ_EINVAL. */
int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/*
 * Read all of standard input into *ret (malloc'ed, caller frees; a NUL
 * byte follows the *ret_len bytes read).  More than max bytes, a read
 * error, or Ctrl-C: prints why and returns CLI_EXIT_TASKQ
 * (CLI_EXIT_INTERRUPTED after Ctrl-C).
 */
int cli_read_stdin(const cli_ctx_t *ctx, size_t max, char **ret, size_t *ret_len);

/* Write all of p[0..n-1] to the descriptor fd, going on after signals.
 * Returns 0, or -1 with errno set. */
int cli_write_all(int fd, const void *p, size_t n);

/* The most a task's argument can take: the protocol's frame limit. */
#define CLI_ARG_MAX ((size_t)64 << 20)

/*
 * Ctrl-C.  cli_sigint_catch() installs a SIGINT handler (without
 * SA_RESTART) that sets a flag, which cli_interrupted() reads; a second
 * SIGINT restores the default action and raises it again, so the process
 * ends at once.  Waiting loops wait in slices of CLI_SLICE_MS to notice
 * the flag.  Main thread only.
 */
#define CLI_SLICE_MS 100
void cli_sigint_catch(void);
bool cli_interrupted(void);

/* How long a command that was interrupted, or that cancels, waits for the
 * broker to confirm its cancels. */
#define CLI_CANCEL_WAIT_MS 2000

/*
 * Wait for f's outcome without a time limit, in slices, until it resolves
 * or Ctrl-C comes.  On Ctrl-C: cancel the task at the broker (which stops
 * it on its worker), wait up to CLI_CANCEL_WAIT_MS for the outcome, print
 * "taskq: interrupted: job N cancelled" (or what became of it instead)
 * and return CLI_EXIT_INTERRUPTED.  Otherwise return what
 * taskq_future_wait() returned: 0 or a negative TASKQ_E* code.
 */
int cli_await(const cli_ctx_t *ctx, taskq_future_t *f);

/*
 * Warn on stderr when no connected worker serves function on queue (NULL:
 * "default"), since its task would wait until one comes: "taskq: no
 * connected worker serves exec on queue \"default\"; ...".  Best effort:
 * silent if the broker's statistics do not come within the connect
 * timeout.  (cli_status.c)
 */
void cli_check_served(const cli_ctx_t *ctx, taskq_client_t *c, const char *function,
                      const char *queue);

/*
 * Print to stderr why f's task did not end done, rc being the non-zero
 * code taskq_future_wait() gave, e.g. "taskq: job 42 failed: TEXT" or
 * "taskq: lost the broker at ENDPOINT: TEXT".
 */
void cli_report(const cli_ctx_t *ctx, const taskq_future_t *f, int rc);

/*
 * The job ids argv[optind..argc-1] (after getopt) into a new array *ret of
 * *ret_n ids (caller frees).  None, or one that is not a job id: prints
 * as cli_usage() does for command cmd and returns CLI_EXIT_USAGE; out of
 * memory: CLI_EXIT_TASKQ.  (cli_call.c)
 */
int cli_parse_ids(const cli_ctx_t *ctx, const char *cmd, int argc, char **argv,
                  uint64_t **ret, size_t *ret_n);

/* "done", "failed", "lost", "runlimit", ...: a state as `taskq wait` and
 * `taskq failed` print it. */
const char *cli_state_name(taskq_state_t st);

/*
 * `taskq wait` for futures of one client: wait for fs[0..n-1] (futures of
 * the jobs ids[0..n-1]; NULL entries are skipped) up to timeout_ms
 * (TASKQ_TIMEOUT_INFINITE: no limit) in slices, printing each outcome as
 * one line of JSON as it comes and destroying its future; the ones still
 * pending at the end print as "pending".  Call cli_sigint_catch() first:
 * Ctrl-C stops the wait (the jobs go on).  Returns the exit status of
 * `taskq wait`: 0 (every job done), CLI_EXIT_FAILED, CLI_EXIT_TIMEOUT,
 * CLI_EXIT_TASKQ (the broker went away) or CLI_EXIT_INTERRUPTED.
 * (cli_call.c)
 */
int cli_wait_outcomes(const cli_ctx_t *ctx, taskq_future_t **fs, const uint64_t *ids, size_t n,
                      int32_t timeout_ms);

/*
 * The built-in `exec` function's argument and result (cli_exec.c).
 *
 * cli_exec_arg: encode {argv, cwd, stdin} (cwd NULL: not sent; stdin NULL:
 * not sent) as the argument of an `exec` task into *out (malloc'ed, caller
 * frees).  Returns 0, TASKQ_EINVAL (argc < 1) or TASKQ_ENOMEM.
 *
 * cli_exec_result: read an `exec` result map.  Spans point into buf, which
 * must outlive *ret.  Returns 0, or TASKQ_EPROTO if buf is not a result
 * map of the documented shape.
 */
typedef struct cli_exec_result {
    int64_t exit;          /* exit code, -1 if killed by a signal */
    int64_t signal;        /* 0, or the signal that killed it */
    const uint8_t *out;    /* stdout bytes */
    size_t out_len;
    const uint8_t *err;    /* stderr bytes */
    size_t err_len;
    uint64_t wall_ms;      /* wall time of the command */
    bool truncated;        /* an output hit the worker's cap */
} cli_exec_result_t;

int cli_exec_arg(char *const *argv, int argc, const char *cwd, const void *stdin_data,
                 size_t stdin_len, void **out, size_t *out_len);
int cli_exec_result(const void *buf, size_t len, cli_exec_result_t *ret);

/*
 * cli_exec_arg_env: the same with an environment for the command: env[0..
 * envc-1] are "NAME=VALUE" strings (sent as the `env` map when envc > 0; a
 * name given twice takes its last value).  cli_exec_arg is this with no env.
 * Returns 0, TASKQ_EINVAL (an item without '=' or with an empty name) or
 * TASKQ_ENOMEM.
 *
 * cli_env_item: turn the value of an `--env NAME[=VALUE]` option into a
 * malloc'ed "NAME=VALUE" in *ret (caller frees): NAME alone takes the
 * value NAME has in this process.  Returns 0, TASKQ_EINVAL (empty name, or
 * NAME alone and not set here) or TASKQ_ENOMEM.
 */
int cli_exec_arg_env(char *const *argv, int argc, char *const *env, int envc, const char *cwd,
                     const void *stdin_data, size_t stdin_len, void **out, size_t *out_len);
int cli_env_item(const char *opt, char **ret);

/*
 * Commands.  Each gets the arguments after its name (argv[0] is the
 * command name itself, as for getopt), parses its own options, handles
 * --help, and returns the process exit status.
 */
int cli_run(const cli_ctx_t *ctx, int argc, char **argv);
int cli_map(const cli_ctx_t *ctx, int argc, char **argv);
int cli_call(const cli_ctx_t *ctx, int argc, char **argv);
int cli_wait(const cli_ctx_t *ctx, int argc, char **argv);
int cli_cancel(const cli_ctx_t *ctx, int argc, char **argv);
int cli_status(const cli_ctx_t *ctx, int argc, char **argv);
int cli_ping(const cli_ctx_t *ctx, int argc, char **argv);
int cli_failed(const cli_ctx_t *ctx, int argc, char **argv);
int cli_retry(const cli_ctx_t *ctx, int argc, char **argv);
int cli_keygen(const cli_ctx_t *ctx, int argc, char **argv);

#endif /* TASKQ_CLI_H */
