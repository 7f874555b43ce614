/*
 * harness.h - process harness of the integration tests: starts the real
 * taskqd, test_worker and other binaries on loopback (or across a veth pair
 * into a network namespace), waits on real readiness (the broker's ready
 * file, the broker's statistics), and stops every process it started by
 * PID, also when a test fails or is killed.
 */
#ifndef TASKQ_TEST_HARNESS_H
#define TASKQ_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>

#include "taskq.h"

/* A broker started by the harness.  Zero-initialise before the first start. */
typedef struct th_broker {
    pid_t pid;                /* taskqd's pid, 0 once stopped */
    char dir[256];            /* private temporary directory */
    char endpoint[128];       /* bound endpoint read from the ready file */
    const char *const *argv;  /* the extra arguments of the last start */
} th_broker_t;

/*
 * Create the broker's private directory (/tmp/taskq-test-XXXXXX) in b->dir
 * unless it has one, so that a test can place files there (a --db path)
 * before the first start.  Returns 0, or -1 (the reason is printed).
 */
int th_broker_dir(th_broker_t *b);

/*
 * Start taskqd on tcp://127.0.0.1:* (or on bind, if not NULL) with the
 * extra arguments in argv (NULL-terminated, may be NULL), its ready file
 * and log in the private directory (created if needed), and wait up to
 * 10 s for the ready file.
 * Unless argv has --db or --memory, --memory is added, so that no test
 * writes a database where it did not mean to; --config '' keeps the
 * host's /etc/taskq/taskqd.conf out (a --config in argv comes later and
 * wins).  argv is kept in b->argv for th_broker_restart(): it must stay
 * valid as long as the broker may be restarted.  Returns 0, or -1 (the
 * reason is printed).
 */
int th_broker_start(th_broker_t *b, const char *bind, const char *const *argv);

/*
 * Start a stopped broker again as it last started: the same directory
 * (its log goes on in the same file), the same arguments, and its bound
 * endpoint (the same port), so that clients and workers find it where it
 * was.  Waits for the ready file, which taskqd writes anew.  Returns 0, or
 * -1 (the reason is printed; the port may have been taken meanwhile).
 */
int th_broker_restart(th_broker_t *b);

/* Send sig to the broker and reap it (bounded: SIGKILL after 5 s). Returns
 * the exit status as from waitpid, or -1. */
int th_broker_stop(th_broker_t *b, int sig);

/* Start a test_worker connected to endpoint with extra arguments (NULL-
 * terminated, may be NULL).  Returns its pid, or -1. */
pid_t th_worker_start(const char *endpoint, const char *const *argv);

/* Start the program at path with the arguments in argv (after argv[0],
 * NULL-terminated, may be NULL), its output going to a log that is printed
 * if the test fails, like the other children.  Returns its pid, or -1. */
pid_t th_spawn(const char *path, const char *const *argv);

/*
 * Run the program at path with argv (as th_spawn) to its end, waiting up to
 * timeout_ms (then SIGKILL), and copy what it wrote to stdout and stderr to
 * out (cap bytes with the NUL; cut if longer).  Returns the waitpid status,
 * or -1 if it could not be started or had to be killed.
 */
int th_run(const char *path, const char *const *argv, int timeout_ms, char *out, size_t cap);

/*
 * Fork a child process of the test that the harness records like the
 * processes it starts (killed by th_stop_all() or at exit, with
 * PR_SET_PDEATHSIG), its stdout and stderr going to a log printed if the
 * test fails.  In the child (return value 0) the harness forgets the
 * parent's processes, so the child must end with _exit() and must not use
 * Check's assertions, which report to the test's process.  Returns the
 * child's pid in the parent, 0 in the child, or -1.
 */
pid_t th_fork(void);

/* Send sig to pid, wait for it up to 5 s (then SIGKILL), reap it. Returns
 * the waitpid status or -1. */
int th_stop(pid_t pid, int sig);

/* Stop (SIGTERM, then SIGKILL) every process the harness started and still
 * runs, quietly.  A test that fails instead leaves them to the exit handler,
 * which kills them and prints their logs. */
void th_stop_all(void);

/* Wait up to timeout_ms for pid to exit by itself (then SIGKILL), reap it.
 * Returns the waitpid status, or -1 if it had to be killed. */
int th_wait_exit(pid_t pid, int timeout_ms);

/* Wait until the broker reports exactly n connected workers (bounded by
 * timeout_ms).  Returns 0 or -1. */
int th_wait_workers(taskq_client_t *c, unsigned n, int32_t timeout_ms);

/* Read an unsigned counter from the broker's STATS map ("running", ...).
 * Returns 0 and fills *ret, or -1. */
int th_stat(taskq_client_t *c, const char *key, uint64_t *ret);

/* Read a bool ("store_ok") from the broker's STATS map.  Returns 0 and
 * fills *ret, or -1. */
int th_stat_bool(taskq_client_t *c, const char *key, bool *ret);

/* Read a str ("store") from the broker's STATS map into buf (cap bytes
 * with the NUL; cut if longer).  Returns 0, or -1. */
int th_stat_str(taskq_client_t *c, const char *key, char *buf, size_t cap);

/* Read an unsigned field ("done", "running", ...) of the worker_list entry
 * of the worker whose pid is pid.  Returns 0 and fills *ret, or -1 (also
 * when the broker lists no such worker). */
int th_worker_stat(taskq_client_t *c, pid_t pid, const char *key, uint64_t *ret);

/* Wait up to timeout_ms until the broker has accepted f (it has a job id)
 * or f has resolved (refused, closed).  Returns 0 once accepted, the code
 * of its outcome if it resolved without a job id, or TASKQ_ETIMEDOUT. */
int th_wait_accepted(taskq_future_t *f, int32_t timeout_ms);

/* Live (not zombie) child processes of parent, from /proc; the first cap
 * of their pids go to pids (which may be NULL).  Returns how many. */
unsigned th_children_of(pid_t parent, pid_t *pids, unsigned cap);

/* Wait up to timeout_ms until pid has ended (gone, or a zombie nobody
 * reaps), for processes that are not the test's children.  Returns
 * whether it did. */
bool th_wait_gone(pid_t pid, int timeout_ms);

/* Lines in the file at path (0 if it cannot be read). */
unsigned th_count_lines(const char *path);

/* Remove the files in dir and then dir itself (one level: what a test
 * leaves in a broker's private directory).  Missing is fine. */
void th_remove_dir(const char *dir);

/*
 * A network namespace joined to the test's namespace by a veth pair, for
 * workers on a simulated remote host.  Needs root and iproute2's `ip`.
 */
typedef struct th_netns {
    char name[64];       /* namespace name (taskq-test-<pid>) */
    char path[128];      /* /run/netns/<name> */
    char veth_root[16];  /* the end in the test's namespace */
    char veth_ns[16];    /* the end inside the namespace */
    char root_addr[32];  /* address of veth_root (a /30 in 10.213.0.0/16) */
    char ns_addr[32];    /* address of veth_ns */
    char ip_path[64];    /* the `ip` program, "" if there is none */
    bool created;        /* the namespace exists (as far as we know) */
} th_netns_t;

/* Name the namespace and the veth ends after the calling process's pid and
 * find `ip`.  Call it in the suite's main process, before the tests fork,
 * so that main can remove what a test killed by its timeout left
 * (th_netns_down). */
void th_netns_init(th_netns_t *ns);

/*
 * Create the namespace and the veth pair, address both ends in a /30 that
 * no interface here uses, and raise them (and the namespace's loopback).
 * Returns NULL, or why this host cannot (then skip the test).  A failure
 * once they exist fails the test.  Registers th_netns_down for exit.
 */
const char *th_netns_up(th_netns_t *ns);

/* Remove the veth pair and the namespace if they exist (also when another
 * process of the suite made them); quiet. */
void th_netns_down(th_netns_t *ns);

/* Raise (up) or lower the test's end of the veth pair: lowered, packets
 * between the namespace and the test's namespace are dropped silently, as
 * in a network partition.  Returns 0, or -1 (printed). */
int th_netns_link(th_netns_t *ns, bool up);

/* Start the program at path with argv (as th_spawn) inside the namespace,
 * through `ip netns exec`, which execs it: the pid is the program's.
 * Returns its pid, or -1. */
pid_t th_netns_spawn(const th_netns_t *ns, const char *path, const char *const *argv);

/* Whether process pid runs in the namespace. */
bool th_netns_has(const th_netns_t *ns, pid_t pid);

/* One TCase of a suite: a single test with its timeout and its checked
 * fixture (setup and teardown may be NULL). */
typedef struct th_case {
    const char *name;
    const TTest *test;
    int timeout_s;
    void (*setup)(void);
    void (*teardown)(void);
} th_case_t;

/* Build suite name from the n cases, run it (Check's default fork mode)
 * and return EXIT_SUCCESS if every test passed, else EXIT_FAILURE. */
int th_run_suite(const char *name, const th_case_t *cases, size_t n);

/* Monotonic milliseconds. */
int64_t th_now_ms(void);

/* msgpack helpers for arguments and results. */
size_t th_pack_int(int64_t v, uint8_t *buf, size_t cap);
int th_unpack_int(const void *buf, size_t len, int64_t *ret);
int th_unpack_uint(const void *buf, size_t len, uint64_t *ret);

/* A taskq_map over square(i) (test_worker's "square"): th_sq_input makes
 * the argument i, th_sq_output counts the results that are not i*i. */
typedef struct th_squares {
    size_t wrong;    /* results missing or wrong */
    uint8_t arg[16]; /* the argument being made */
} th_squares_t;
int th_sq_input(size_t i, const void **arg, size_t *len, void *squares);
int th_sq_output(size_t i, int code, const void *data, size_t len, void *squares);

/* Submit fn(v) on c with opts (may be NULL); the test fails if that is
 * refused.  The caller owns the future. */
taskq_future_t *th_submit_int(taskq_client_t *c, const char *fn, int64_t v,
                              const taskq_submit_opts_t *opts);

/* The integer result of a done future (the test fails if it has none). */
int64_t th_result_int(taskq_future_t *f);
uint64_t th_result_uint(taskq_future_t *f);

#endif
