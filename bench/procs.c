/*
 * procs.c - the processes taskq-bench starts and stops by pid (taskqd, the
 * workers, the W5 clients, the W6 swarm), their logs, the broker's start
 * with its ready file, and what the bench reads from the broker's STATS.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.h>

#include "bench.h"

/* How long a broker has to write its ready file, and to answer a ping. */
#define START_LIMIT_MS 10000
/* How long a STATS request may take (1000 workers make a long reply). */
#define STATS_LIMIT_MS 10000
/* Lines of a child's log printed after a failure. */
#define LOG_TAIL 20

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void bench_work_path(bench_t *b, const char *name, char *buf)
{
    snprintf(buf, PATH_MAX, "%s/%u-%s", b->work, b->seq++, name);
}

static bench_child_t *find_child(bench_t *b, pid_t pid)
{
    for (size_t i = 0; i < BENCH_MAX_CHILDREN; i++)
        if (b->kids[i].pid == pid && pid > 0)
            return &b->kids[i];
    return NULL;
}

pid_t bench_spawn(bench_t *b, const char *label, char *const argv[], int in_fd, int out_fd)
{
    bench_child_t *k = NULL;
    for (size_t i = 0; !k && i < BENCH_MAX_CHILDREN; i++)
        if (b->kids[i].pid == 0)
            k = &b->kids[i];
    bench_log_t *made = realloc(b->made, (b->n_made + 1) * sizeof *made);
    if (!k || !made) {
        fprintf(stderr, "taskq-bench: %s\n", k ? "out of memory" : "too many processes");
        return -1;
    }
    b->made = made;
    bench_log_t *log = &made[b->n_made];
    snprintf(log->label, sizeof log->label, "%s", label);
    char name[64];
    snprintf(name, sizeof name, "%u-%s.log", b->seq++, label);
    for (char *p = name; *p; p++)
        if (*p == ' ' || *p == '/')
            *p = '_';
    snprintf(log->path, sizeof log->path, "%s/%s", b->logs, name);

    pid_t parent = getpid();
    fflush(NULL); /* or the child would write what is buffered here again */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "taskq-bench: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the parent may have
         * ZeroMQ threads. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
        if (fd < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out_fd >= 0 ? out_fd : fd, 1) < 0 ||
            dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], argv);
        static const char msg[] = "taskq-bench: exec failed\n";
        if (write(2, msg, sizeof msg - 1) < 0)
            _exit(127);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so that it holds before the child runs */
    k->pid = pid;
    k->log = b->n_made++;
    return pid;
}

/* If pid has exited: kill what is left of its process group (while the
 * unreaped leader keeps the group's id from being reused), reap it and
 * return its wait status.  -1 if it still runs. */
static int reaped(pid_t pid)
{
    siginfo_t si = {0};
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == EINTR)
        ;
    if (si.si_pid != pid)
        return -1;
    kill(-pid, SIGKILL);
    int status = -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Print the last LOG_TAIL lines of path. */
static void print_tail(const char *label, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char lines[LOG_TAIL][512];
    size_t n = 0;
    while (fgets(lines[n % LOG_TAIL], sizeof lines[0], f))
        n++;
    fclose(f);
    if (n == 0)
        return;
    fprintf(stderr, "---- %s (%s) ----\n", label, path);
    for (size_t i = n > LOG_TAIL ? n - LOG_TAIL : 0; i < n; i++)
        fputs(lines[i % LOG_TAIL], stderr);
}

/* Say how a child ended. */
static void report_end(const bench_t *b, const bench_child_t *k, int status)
{
    fprintf(stderr, "taskq-bench: %s (pid %d) ended with %s %d\n", b->made[k->log].label,
            (int)k->pid, WIFSIGNALED(status) ? "signal" : "status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

int bench_reap(bench_t *b, pid_t pid, int timeout_ms)
{
    bench_child_t *k = find_child(b, pid);
    if (!k)
        return -1;
    int status = -1;
    for (int waited = 0; (status = reaped(pid)) < 0 && waited < timeout_ms; waited += 10)
        bench_sleep_ms(10);
    if (status < 0) {
        fprintf(stderr, "taskq-bench: %s (pid %d) did not exit within %d s: killed\n",
                b->made[k->log].label, (int)pid, timeout_ms / 1000);
        kill(-pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        report_end(b, k, status);
    }
    k->pid = 0;
    return status;
}

int bench_stop(bench_t *b, pid_t pid, int timeout_ms)
{
    if (!find_child(b, pid))
        return -1;
    kill(pid, SIGTERM);
    return bench_reap(b, pid, timeout_ms);
}

void bench_stop_all(bench_t *b)
{
    for (;;) {
        bench_child_t *latest = NULL;
        for (size_t i = 0; i < BENCH_MAX_CHILDREN; i++)
            if (b->kids[i].pid > 0 && (!latest || b->kids[i].log > latest->log))
                latest = &b->kids[i];
        if (!latest)
            return;
        bench_stop(b, latest->pid, 5000);
    }
}

int bench_check_children(bench_t *b)
{
    for (size_t i = 0; i < BENCH_MAX_CHILDREN; i++) {
        bench_child_t *k = &b->kids[i];
        int status;
        if (k->pid <= 0 || (status = reaped(k->pid)) < 0)
            continue;
        fprintf(stderr, "taskq-bench: %s exited before its time\n", b->made[k->log].label);
        report_end(b, k, status);
        k->pid = 0;
        return -1;
    }
    return 0;
}

void bench_dump_logs(bench_t *b)
{
    for (size_t i = b->dump_from; i < b->n_made; i++)
        print_tail(b->made[i].label, b->made[i].path);
}

int bench_read(int fd, void *buf, size_t n, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    char *p = buf;
    while (n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int left = (int)((deadline - bench_now_ns()) / 1000000);
        if (left <= 0 || bench_interrupted)
            return -1;
        int rc = poll(&pfd, 1, left < 200 ? left : 200);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc <= 0)
            continue;
        ssize_t r = read(fd, p, n);
        if (r == 0 || (r < 0 && errno != EINTR))
            return -1;
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        }
    }
    return 0;
}

int bench_pipe(int fds[2])
{
    if (pipe(fds) != 0) {
        fprintf(stderr, "taskq-bench: pipe: %s\n", strerror(errno));
        return -1;
    }
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* ---- The broker ---------------------------------------------------------- */

/* The first line of the ready file at path, into buf.  0 or -1. */
static int read_ready(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = -1;
    if (fgets(buf, (int)cap, f)) {
        buf[strcspn(buf, "\r\n")] = '\0';
        rc = buf[0] ? 0 : -1;
    }
    fclose(f);
    return rc;
}

int bench_broker_start(bench_t *b, bench_broker_t *br, const char *const *args)
{
    static const char *const memory[] = {"--memory", NULL};
    *br = (bench_broker_t){0};
    if (b->o.broker) {
        snprintf(br->endpoint, sizeof br->endpoint, "%s", b->o.broker);
    } else {
        char ready[PATH_MAX];
        bench_work_path(b, "ready", ready);
        char *argv[32] = {(char *)b->o.taskqd, "--bind", "tcp://127.0.0.1:*", "--ready-file",
                          ready, "--log-level", "warning"};
        size_t n = 7;
        for (const char *const *a = args ? args : memory; *a && n < 31; a++)
            argv[n++] = (char *)*a;
        argv[n] = NULL;
        br->pid = bench_spawn(b, "taskqd", argv, -1, -1);
        if (br->pid < 0)
            return -1;
        for (int waited = 0; read_ready(ready, br->endpoint, sizeof br->endpoint) != 0;
             waited += 10) {
            if (bench_check_children(b) != 0 || bench_interrupted)
                return -1;
            if (waited >= START_LIMIT_MS) {
                fprintf(stderr, "taskq-bench: taskqd not ready within %d s\n",
                        START_LIMIT_MS / 1000);
                return -1;
            }
            bench_sleep_ms(10);
        }
    }
    taskq_client_opts_t opts = {.name = "taskq-bench", .max_batch = BENCH_BATCH};
    int rc = taskq_client_new(br->endpoint, &opts, &br->client);
    if (rc == 0)
        rc = taskq_client_ping(br->client, START_LIMIT_MS, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench: broker %s: %s\n", br->endpoint, taskq_strerror(rc));
        return -1;
    }
    return 0;
}

void bench_broker_stop(bench_t *b, bench_broker_t *br)
{
    taskq_client_destroy(&br->client);
    if (br->pid > 0)
        bench_stop(b, br->pid, 10000);
    br->pid = 0;
}

/* An unsigned integer value of the STATS map m under key, or 0. */
static uint64_t stat_uint(const msgpack_object *m, const char *key)
{
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? kv->val.via.u64 : 0;
    }
    return 0;
}

int bench_stats(bench_broker_t *br, bench_stats_t *ret)
{
    void *map;
    size_t len;
    int rc = taskq_client_stats(br->client, STATS_LIMIT_MS, &map, &len);
    if (rc != 0) {
        fprintf(stderr, "taskq-bench: STATS: %s\n", taskq_strerror(rc));
        return -1;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool ok = msgpack_unpack_next(&u, map, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
              u.data.type == MSGPACK_OBJECT_MAP;
    if (ok) {
        const msgpack_object *m = &u.data;
        *ret = (bench_stats_t){
            .cpu_us = stat_uint(m, "cpu_user_us") + stat_uint(m, "cpu_sys_us"),
            .rss_bytes = stat_uint(m, "rss_bytes"),
            .workers = stat_uint(m, "workers"),
            .queued = stat_uint(m, "queued"),
        };
    } else {
        fprintf(stderr, "taskq-bench: STATS reply is not a map\n");
    }
    msgpack_unpacked_destroy(&u);
    free(map);
    return ok ? 0 : -1;
}

int bench_wait_workers(bench_t *b, bench_broker_t *br, uint64_t n, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    bench_stats_t st = {0};
    while (!bench_interrupted && bench_check_children(b) == 0 && bench_stats(br, &st) == 0) {
        if (st.workers == n)
            return 0;
        if (bench_now_ns() >= deadline) {
            fprintf(stderr,
                    "taskq-bench: the broker has %" PRIu64 " workers, not %" PRIu64
                    ", after %d s\n",
                    st.workers, n, timeout_ms / 1000);
            return -1;
        }
        bench_sleep_ms(20);
    }
    return -1;
}
