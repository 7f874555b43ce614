/*
 * exec.h - the built-in function `exec` of taskq-worker: run one command
 * with its arguments, input, environment and directory, and answer with its
 * exit status, its captured output and the resources it used.
 */
#ifndef TW_EXEC_H
#define TW_EXEC_H

#include <stddef.h>

#include "taskq.h"

/* The default cap on each captured output stream: 16 MiB. */
#define TW_EXEC_MAX_OUTPUT_DEFAULT ((size_t)16 << 20)
/* The most items argv, and env, may have. */
#define TW_EXEC_MAX_ITEMS 65536

/* How tw_exec_handler runs commands.  Zero-initialise; a zero field takes
 * its default. */
typedef struct tw_exec_config {
    size_t max_output; /* bytes kept of stdout, and of stderr (default 16 MiB) */
} tw_exec_config_t;

/*
 * The handler of `exec`; userdata points to a tw_exec_config_t (NULL takes
 * the defaults) that must outlive the worker it is registered on.
 *
 * Argument: a msgpack map with str keys
 *   argv  [str...]   required; 1..TW_EXEC_MAX_ITEMS items; argv[0] is not
 *                    empty; no item holds a NUL byte.  argv[0] is looked up
 *                    in the PATH of the command's environment (below) when
 *                    it has no '/'.  No shell is involved.
 *   stdin bin or str optional; written to the command's standard input,
 *                    which then reaches end of file (without stdin the
 *                    command reads end of file at once).
 *   env   {str: str} optional, at most TW_EXEC_MAX_ITEMS pairs; names are
 *                    not empty and hold no '=' or NUL, values no NUL; no
 *                    name twice.
 *   cwd   str        optional; the command's working directory (relative
 *                    to the caller's).
 * Any other key, a missing argv, or a wrong type is refused with an error
 * naming the key and what was expected.
 *
 * The command's environment is the caller's, with TASKQ_JOB_ID,
 * TASKQ_ATTEMPT and TASKQ_SEED (decimal) and OMP_NUM_THREADS,
 * OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set to 1, then the task's env on
 * top (it may replace any of those).  The command has exactly descriptors
 * 0, 1 and 2 (pipes to the caller), default signal dispositions, an empty
 * signal mask, and stays in the caller's process group so that killing
 * that group kills it too.
 *
 * The handler feeds stdin and collects stdout and stderr until both reach
 * end of file (a background process that keeps them open keeps the task
 * running), then reaps the command.  Each stream keeps its first
 * max_output bytes; the rest is read and dropped so the command never
 * blocks, and truncated is set.
 *
 * Result: a msgpack map
 *   exit       int   exit code, or -1 if a signal ended the command
 *   signal     int   the signal that ended it, or 0
 *   stdout     bin   captured standard output
 *   stderr     bin   captured standard error
 *   wall_ms    int   monotonic time from start to reaping
 *   user_ms    int   user CPU time of the command (and the children it
 *   sys_ms     int     reaped), and system CPU time
 *   maxrss_kb  int   its peak resident set size in KiB
 *   truncated  bool  stdout or stderr was cut at max_output
 * A command that ends with a non-zero exit or a signal is still a result.
 *
 * Errors (taskq_task_error): a malformed argument; a command that cannot be
 * started ("exec: cannot run \"prog\": No such file or directory") or whose
 * cwd cannot be entered ("exec: cannot enter directory \"dir\": ...").
 * Retries (taskq_task_retry): the caller is short of memory, descriptors or
 * processes.
 *
 * Threads: the caller's SIGPIPE is blocked in the calling thread during the
 * call (a command that stops reading stdin must not kill the caller).  The
 * command is started with fork(); between fork and execvp() the child
 * calls only async-signal-safe functions and allocates nothing, so the
 * caller may have other threads.  The caller must not ignore
 * SIGCHLD: the command could not be reaped, and the task would fail with
 * "exec: cannot reap ...".
 */
int tw_exec_handler(taskq_task_t *t, void *userdata);

#endif /* TW_EXEC_H */
