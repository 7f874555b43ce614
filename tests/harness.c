/*
 * harness.c - starts and stops the real taskqd, test_worker and other
 * processes for the integration tests, and the network namespaces some of
 * them run in.  Every child is recorded so that an atexit handler kills
 * whatever a failed test left behind, and every child gets PR_SET_PDEATHSIG
 * so a test killed by its timeout takes them along.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <msgpack.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 64

static pid_t children[MAX_CHILDREN];
static char log_paths[MAX_CHILDREN][300];
static bool atexit_set;

int th_run_suite(const char *name, const th_case_t *cases, size_t n)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].setup || cases[i].teardown)
            tcase_add_checked_fixture(tc, cases[i].setup, cases[i].teardown);
        tcase_set_timeout(tc, cases[i].timeout_s);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* On exit (a failed assertion exits the test's process): kill what is left
 * and show the logs of the children, which explain most failures. */
static void cleanup_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
        children[i] = 0;
        if (!log_paths[i][0])
            continue;
        FILE *f = fopen(log_paths[i], "r");
        if (!f)
            continue;
        fprintf(stderr, "---- %s ----\n", log_paths[i]);
        char line[512];
        int n = 0;
        while (fgets(line, sizeof line, f) && n++ < 200)
            fputs(line, stderr);
        fclose(f);
    }
}

/* A restarted broker appends to its log: it takes the slot of the log's
 * earlier process, so that the log is printed once. */
static void remember(pid_t pid, const char *log)
{
    if (!atexit_set) {
        atexit(cleanup_children);
        atexit_set = true;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] <= 0 && strcmp(log_paths[i], log) == 0) {
            children[i] = pid;
            return;
        }
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0 || (children[i] < 0 && !log_paths[i][0])) {
            children[i] = pid;
            snprintf(log_paths[i], sizeof log_paths[i], "%s", log);
            return;
        }
    }
}

/* The child stays in the table with pid -1 so that its log is still
 * printed or removed at the end. */
static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = -1;
}

/* Fork a child that dies with its parent, its stdout and stderr appended
 * to log, and record it.  Returns as fork() does. */
static pid_t fork_logged(const char *log)
{
    pid_t parent = getpid();
    fflush(NULL); /* or the child would write the parent's buffered output again */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        return 0;
    }
    remember(pid, log);
    return pid;
}

/* fork + exec path with argv, stdout/stderr appended to log. */
static pid_t spawn(const char *path, char *const *argv, const char *log)
{
    pid_t pid = fork_logged(log);
    if (pid == 0) {
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

pid_t th_fork(void)
{
    static unsigned seq;
    char log[300];
    snprintf(log, sizeof log, "/tmp/taskq-test-fork-%d-%u.log", (int)getpid(), seq++);
    pid_t pid = fork_logged(log);
    if (pid == 0) {
        /* The parent's processes are the parent's to stop and report. */
        memset(children, 0, sizeof children);
        memset(log_paths, 0, sizeof log_paths);
    }
    return pid;
}

int th_stop(pid_t pid, int sig)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    return th_wait_exit(pid, 5000);
}

int th_wait_exit(pid_t pid, int timeout_ms)
{
    int status = -1;
    for (int i = 0; i < timeout_ms / 10; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            forget(pid);
            return status;
        }
        if (r < 0)
            break;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    forget(pid);
    return -1;
}

void th_stop_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0)
            th_stop(children[i], SIGTERM);
        if (log_paths[i][0]) {
            unlink(log_paths[i]);
            log_paths[i][0] = '\0';
        }
    }
}

static int read_ready(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = -1;
    if (fgets(out, (int)cap, f)) {
        out[strcspn(out, "\r\n")] = '\0';
        rc = out[0] ? 0 : -1;
    }
    fclose(f);
    return rc;
}

int th_broker_dir(th_broker_t *b)
{
    if (b->dir[0])
        return 0;
    snprintf(b->dir, sizeof b->dir, "/tmp/taskq-test-XXXXXX");
    if (!mkdtemp(b->dir)) {
        perror("mkdtemp");
        b->dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Whether argv names a store (--db PATH, --db=PATH, --memory). */
static bool names_store(const char *const *argv)
{
    for (size_t i = 0; argv && argv[i]; i++) {
        if (strcmp(argv[i], "--memory") == 0 || strcmp(argv[i], "--db") == 0 ||
            strncmp(argv[i], "--db=", 5) == 0)
            return true;
    }
    return false;
}

int th_broker_start(th_broker_t *b, const char *bind, const char *const *argv)
{
    if (th_broker_dir(b) != 0)
        return -1;
    b->argv = argv;
    char ready[300], log[300];
    snprintf(ready, sizeof ready, "%s/ready", b->dir);
    snprintf(log, sizeof log, "%s/taskqd.log", b->dir);
    unlink(ready);

    char *args[64];
    int n = 0;
    args[n++] = (char *)TASKQD_PATH;
    args[n++] = (char *)"--config"; /* none: not the host's /etc/taskq/taskqd.conf */
    args[n++] = (char *)"";
    args[n++] = (char *)"--bind";
    args[n++] = (char *)(bind ? bind : "tcp://127.0.0.1:*");
    args[n++] = (char *)"--ready-file";
    args[n++] = ready;
    args[n++] = (char *)"--log-level";
    args[n++] = (char *)"info";
    if (!names_store(argv))
        args[n++] = (char *)"--memory";
    for (int i = 0; argv && argv[i] && n < 62; i++)
        args[n++] = (char *)argv[i];
    args[n] = NULL;

    b->pid = spawn(TASKQD_PATH, args, log);
    if (b->pid < 0) {
        perror("fork");
        return -1;
    }
    for (int i = 0; i < 1000; i++) {
        if (read_ready(ready, b->endpoint, sizeof b->endpoint) == 0)
            return 0;
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            fprintf(stderr, "taskqd exited before it was ready (status %d); log: %s\n",
                    status, log);
            forget(b->pid);
            b->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "taskqd not ready within 10 s; log: %s\n", log);
    return -1;
}

int th_broker_restart(th_broker_t *b)
{
    char endpoint[sizeof b->endpoint];
    snprintf(endpoint, sizeof endpoint, "%s", b->endpoint);
    return th_broker_start(b, endpoint, b->argv);
}

int th_broker_stop(th_broker_t *b, int sig)
{
    int st = th_stop(b->pid, sig);
    b->pid = 0;
    return st;
}

pid_t th_worker_start(const char *endpoint, const char *const *argv)
{
    static unsigned seq;
    char log[300];
    snprintf(log, sizeof log, "/tmp/taskq-test-worker-%d-%u.log", (int)getpid(), seq++);
    char *args[64];
    int n = 0;
    args[n++] = (char *)TEST_WORKER_PATH;
    args[n++] = (char *)"--broker";
    args[n++] = (char *)endpoint;
    for (int i = 0; argv && argv[i] && n < 62; i++)
        args[n++] = (char *)argv[i];
    args[n] = NULL;
    return spawn(TEST_WORKER_PATH, args, log);
}

/* Argument vector {path, argv..., NULL} in args (cap entries). */
static void build_args(char **args, size_t cap, const char *path, const char *const *argv)
{
    size_t n = 0;
    args[n++] = (char *)path;
    for (size_t i = 0; argv && argv[i] && n < cap - 1; i++)
        args[n++] = (char *)argv[i];
    args[n] = NULL;
}

pid_t th_spawn(const char *path, const char *const *argv)
{
    static unsigned seq;
    const char *base = strrchr(path, '/');
    char log[300];
    snprintf(log, sizeof log, "/tmp/taskq-test-%s-%d-%u.log", base ? base + 1 : path,
             (int)getpid(), seq++);
    char *args[64];
    build_args(args, 64, path, argv);
    return spawn(path, args, log);
}

int th_run(const char *path, const char *const *argv, int timeout_ms, char *out, size_t cap)
{
    static unsigned seq;
    char log[300];
    snprintf(log, sizeof log, "/tmp/taskq-test-run-%d-%u.log", (int)getpid(), seq++);
    unlink(log);
    char *args[64];
    build_args(args, 64, path, argv);
    pid_t pid = spawn(path, args, log);
    int status = pid > 0 ? th_wait_exit(pid, timeout_ms) : -1;
    size_t n = 0;
    FILE *f = fopen(log, "r");
    if (f) {
        n = fread(out, 1, cap - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    unlink(log);
    return status;
}

/* The value of key in the msgpack map m, or NULL. */
static const msgpack_object *map_find(const msgpack_object *m, const char *key)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

/* What to read from a STATS map: key (of the map, or with worker_pid, of
 * that worker's worker_list entry) as the msgpack type want, into one of
 * the outputs. */
struct stat_query {
    const char *key;
    pid_t worker_pid;     /* 0: a key of the map itself */
    msgpack_object_type want;
    uint64_t *u;
    bool *b;
    char *s;
    size_t cap;
};

static int query_value(const msgpack_object *v, const struct stat_query *q)
{
    if (!v || v->type != q->want)
        return -1;
    if (q->u)
        *q->u = v->via.u64;
    else if (q->b)
        *q->b = v->via.boolean;
    else
        snprintf(q->s, q->cap, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    return 0;
}

/* The worker_list entry of the worker whose pid is pid, or NULL. */
static const msgpack_object *find_worker(const msgpack_object *map, pid_t pid)
{
    const msgpack_object *list = map_find(map, "worker_list");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *w = &list->via.array.ptr[i];
        const msgpack_object *p = map_find(w, "pid");
        if (p && p->type == MSGPACK_OBJECT_POSITIVE_INTEGER && p->via.u64 == (uint64_t)pid)
            return w;
    }
    return NULL;
}

static int stat_query(taskq_client_t *c, const struct stat_query *q)
{
    void *buf;
    size_t len;
    int rc = taskq_client_stats(c, 5000, &buf, &len);
    if (rc != 0) {
        fprintf(stderr, "stats: %s\n", taskq_strerror(rc));
        return -1;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = -1;
    if (msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *m = q->worker_pid ? find_worker(&u.data, q->worker_pid) : &u.data;
        if (m)
            rc = query_value(map_find(m, q->key), q);
    }
    msgpack_unpacked_destroy(&u);
    free(buf);
    return rc;
}

int th_stat(taskq_client_t *c, const char *key, uint64_t *ret)
{
    struct stat_query q = {.key = key, .want = MSGPACK_OBJECT_POSITIVE_INTEGER, .u = ret};
    return stat_query(c, &q);
}

int th_stat_bool(taskq_client_t *c, const char *key, bool *ret)
{
    struct stat_query q = {.key = key, .want = MSGPACK_OBJECT_BOOLEAN, .b = ret};
    return stat_query(c, &q);
}

int th_stat_str(taskq_client_t *c, const char *key, char *buf, size_t cap)
{
    struct stat_query q = {.key = key, .want = MSGPACK_OBJECT_STR, .s = buf, .cap = cap};
    return stat_query(c, &q);
}

int th_worker_stat(taskq_client_t *c, pid_t pid, const char *key, uint64_t *ret)
{
    struct stat_query q = {
        .key = key, .worker_pid = pid, .want = MSGPACK_OBJECT_POSITIVE_INTEGER, .u = ret};
    return stat_query(c, &q);
}

int th_wait_workers(taskq_client_t *c, unsigned n, int32_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    uint64_t have = 0;
    while (th_now_ms() < end) {
        if (th_stat(c, "workers", &have) == 0 && have == n)
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "broker has %llu workers, expected %u\n", (unsigned long long)have, n);
    return -1;
}

size_t th_pack_int(int64_t v, uint8_t *buf, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_int64(&pk, v);
    size_t n = sb.size <= cap ? sb.size : 0;
    memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

int th_unpack_uint(const void *buf, size_t len, uint64_t *ret)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len &&
        u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *ret = u.data.via.u64;
        rc = 0;
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int th_unpack_int(const void *buf, size_t len, int64_t *ret)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -1;
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len) {
        if (u.data.type == MSGPACK_OBJECT_POSITIVE_INTEGER && u.data.via.u64 <= INT64_MAX) {
            *ret = (int64_t)u.data.via.u64;
            rc = 0;
        } else if (u.data.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            *ret = u.data.via.i64;
            rc = 0;
        }
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int th_wait_accepted(taskq_future_t *f, int32_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        if (taskq_future_job_id(f) != 0)
            return 0;
        int rc = taskq_future_wait(f, 10);
        if (rc != TASKQ_ETIMEDOUT && taskq_future_job_id(f) == 0)
            return rc;
        if (th_now_ms() >= end)
            return taskq_future_job_id(f) != 0 ? 0 : TASKQ_ETIMEDOUT;
    }
}

/* The state letter and the parent of process pid from /proc/PID/stat;
 * false if it is gone. */
static bool proc_stat(pid_t pid, char *state, long *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
    return rp && sscanf(rp + 1, " %c %ld", state, ppid) == 2;
}

unsigned th_children_of(pid_t parent, pid_t *pids, unsigned cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        pid_t pid = (pid_t)atol(e->d_name);
        char state;
        long ppid;
        if (proc_stat(pid, &state, &ppid) && ppid == parent && state != 'Z') {
            if (n < cap)
                pids[n] = pid;
            n++;
        }
    }
    closedir(d);
    return n;
}

bool th_wait_gone(pid_t pid, int timeout_ms)
{
    for (int64_t end = th_now_ms() + timeout_ms; th_now_ms() < end; sleep_ms(10)) {
        char state;
        long ppid;
        if (!proc_stat(pid, &state, &ppid) || state == 'Z')
            return true;
    }
    return false;
}

unsigned th_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned n = 0;
    int ch;
    while ((ch = getc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

void th_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- network namespaces ------------------------------------------------ */

/* The namespace th_netns_up made, for the exit handler. */
static th_netns_t *netns_made;

/* Run `ip` with the arguments in argv (NULL-terminated); true if it exits
 * 0.  On failure its output is printed unless quiet. */
static bool ip_run(const th_netns_t *ns, bool quiet, const char *const *argv)
{
    char out[1024];
    int st = th_run(ns->ip_path, argv, 10000, out, sizeof out);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && !quiet) {
        fprintf(stderr, "ip");
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, ": %s", out[0] ? out : "failed\n");
    }
    return ok;
}

#define IP(ns, quiet, ...) ip_run(ns, quiet, (const char *const[]){__VA_ARGS__, NULL})

void th_netns_init(th_netns_t *ns)
{
    static const char *const places[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    memset(ns, 0, sizeof *ns);
    /* Interface names have at most 15 characters. */
    int pid = (int)getpid();
    snprintf(ns->name, sizeof ns->name, "taskq-test-%d", pid);
    snprintf(ns->path, sizeof ns->path, "/run/netns/%s", ns->name);
    snprintf(ns->veth_root, sizeof ns->veth_root, "tqv%dr", pid);
    snprintf(ns->veth_ns, sizeof ns->veth_ns, "tqv%dn", pid);
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        if (access(places[i], X_OK) == 0) {
            snprintf(ns->ip_path, sizeof ns->ip_path, "%s", places[i]);
            break;
        }
    }
}

void th_netns_down(th_netns_t *ns)
{
    /* Also what a test's process made and could not remove (killed by its
     * timeout) is found by name. */
    if (!ns->ip_path[0] || (!ns->created && access(ns->path, F_OK) != 0 &&
                            if_nametoindex(ns->veth_root) == 0))
        return;
    IP(ns, true, "link", "del", ns->veth_root);
    IP(ns, true, "netns", "del", ns->name);
    ns->created = false;
}

static void netns_down_at_exit(void)
{
    if (netns_made)
        th_netns_down(netns_made);
}

/* Whether an address of this host lies in 10.213.x.b/30. */
static bool subnet_used(const struct ifaddrs *list, unsigned x, unsigned b)
{
    uint32_t net = (10u << 24) | (213u << 16) | (x << 8) | b;
    for (const struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET)
            continue;
        const struct sockaddr_in *in = (const void *)a->ifa_addr;
        if ((ntohl(in->sin_addr.s_addr) & ~3u) == net)
            return true;
    }
    return false;
}

/* Pick a /30 in 10.213.0.0/16 that no interface here uses, starting from
 * one that depends on the pid so that concurrent runs differ. */
static bool pick_subnet(th_netns_t *ns)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return false;
    bool found = false;
    for (unsigned k = 0; k < 64 && !found; k++) {
        unsigned idx = ((unsigned)getpid() + k) % 16384;
        unsigned x = idx / 64, b = (idx % 64) * 4;
        if (!subnet_used(list, x, b)) {
            snprintf(ns->root_addr, sizeof ns->root_addr, "10.213.%u.%u", x, b + 1);
            snprintf(ns->ns_addr, sizeof ns->ns_addr, "10.213.%u.%u", x, b + 2);
            found = true;
        }
    }
    freeifaddrs(list);
    return found;
}

const char *th_netns_up(th_netns_t *ns)
{
    if (geteuid() != 0)
        return "not running as root";
    if (!ns->ip_path[0])
        return "no `ip` command (iproute2) found";
    if (!pick_subnet(ns))
        return "no free /30 in 10.213.0.0/16";
    if (!IP(ns, false, "netns", "add", ns->name))
        return "`ip netns add` failed";
    ns->created = true;
    if (!netns_made)
        atexit(netns_down_at_exit); /* a failed assertion exits the test's process */
    netns_made = ns;
    if (!IP(ns, false, "link", "add", ns->veth_root, "type", "veth", "peer", "name", ns->veth_ns))
        return "cannot create a veth pair";
    char root_cidr[40], ns_cidr[40];
    snprintf(root_cidr, sizeof root_cidr, "%s/30", ns->root_addr);
    snprintf(ns_cidr, sizeof ns_cidr, "%s/30", ns->ns_addr);
    ck_assert(IP(ns, false, "link", "set", ns->veth_ns, "netns", ns->name));
    ck_assert(IP(ns, false, "addr", "add", root_cidr, "dev", ns->veth_root));
    ck_assert(IP(ns, false, "link", "set", ns->veth_root, "up"));
    ck_assert(IP(ns, false, "-n", ns->name, "addr", "add", ns_cidr, "dev", ns->veth_ns));
    ck_assert(IP(ns, false, "-n", ns->name, "link", "set", ns->veth_ns, "up"));
    ck_assert(IP(ns, false, "-n", ns->name, "link", "set", "lo", "up"));
    return NULL;
}

int th_netns_link(th_netns_t *ns, bool up)
{
    return IP(ns, false, "link", "set", ns->veth_root, up ? "up" : "down") ? 0 : -1;
}

pid_t th_netns_spawn(const th_netns_t *ns, const char *path, const char *const *argv)
{
    const char *args[64] = {"netns", "exec", ns->name, path};
    size_t n = 4;
    for (size_t i = 0; argv && argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    return th_spawn(ns->ip_path, args);
}

bool th_netns_has(const th_netns_t *ns, pid_t pid)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/%d/ns/net", (int)pid);
    struct stat a, b;
    return stat(proc, &a) == 0 && stat(ns->path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

taskq_future_t *th_submit_int(taskq_client_t *c, const char *fn, int64_t v,
                              const taskq_submit_opts_t *opts)
{
    uint8_t arg[16];
    size_t n = th_pack_int(v, arg, sizeof arg);
    taskq_future_t *f = NULL;
    int rc = taskq_submit(c, fn, arg, n, opts, &f);
    ck_assert_msg(rc == 0, "taskq_submit: %s", taskq_errname(rc));
    return f;
}

/* The bytes of a done future's result (the test fails if it has none). */
static const void *result_of(taskq_future_t *f, size_t *len)
{
    const void *r = taskq_future_result(f, len);
    ck_assert_ptr_nonnull(r);
    return r;
}

int64_t th_result_int(taskq_future_t *f)
{
    size_t len;
    const void *r = result_of(f, &len);
    int64_t v;
    ck_assert_int_eq(th_unpack_int(r, len, &v), 0);
    return v;
}

uint64_t th_result_uint(taskq_future_t *f)
{
    size_t len;
    const void *r = result_of(f, &len);
    uint64_t v;
    ck_assert_int_eq(th_unpack_uint(r, len, &v), 0);
    return v;
}

int th_sq_input(size_t i, const void **arg, size_t *len, void *squares)
{
    th_squares_t *s = squares;
    *len = th_pack_int((int64_t)i, s->arg, sizeof s->arg);
    *arg = s->arg;
    return 0;
}

int th_sq_output(size_t i, int code, const void *data, size_t len, void *squares)
{
    th_squares_t *s = squares;
    int64_t v;
    if (code != 0 || th_unpack_int(data, len, &v) != 0 || v != (int64_t)(i * i))
        s->wrong++;
    return 0;
}
