/*
 * harness.c - starts and stops the real taskqd, test_worker and other
 * processes for the integration tests.  Every child is recorded so that an
 * atexit handler kills whatever a failed test left behind, and every child
 * gets PR_SET_PDEATHSIG so a test killed by its timeout takes them along.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
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

static void remember(pid_t pid, const char *log)
{
    if (!atexit_set) {
        atexit(cleanup_children);
        atexit_set = true;
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

/* fork + exec path with argv, stdout/stderr appended to log. */
static pid_t spawn(const char *path, char *const *argv, const char *log)
{
    pid_t parent = getpid();
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
        execv(path, argv);
        _exit(127);
    }
    remember(pid, log);
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

int th_broker_start(th_broker_t *b, const char *bind, const char *const *argv)
{
    if (!b->dir[0]) {
        snprintf(b->dir, sizeof b->dir, "/tmp/taskq-test-XXXXXX");
        if (!mkdtemp(b->dir)) {
            perror("mkdtemp");
            return -1;
        }
    }
    char ready[300], log[300];
    snprintf(ready, sizeof ready, "%s/ready", b->dir);
    snprintf(log, sizeof log, "%s/taskqd.log", b->dir);
    unlink(ready);

    char *args[64];
    int n = 0;
    args[n++] = (char *)TASKQD_PATH;
    args[n++] = (char *)"--bind";
    args[n++] = (char *)(bind ? bind : "tcp://127.0.0.1:*");
    args[n++] = (char *)"--ready-file";
    args[n++] = ready;
    args[n++] = (char *)"--log-level";
    args[n++] = (char *)"info";
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

/* Find key in the STATS map and read it as an unsigned integer. */
static int map_uint(const msgpack_object *map, const char *key, uint64_t *ret)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return -1;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            *ret = kv->val.via.u64;
            return 0;
        }
    }
    return -1;
}

int th_stat(taskq_client_t *c, const char *key, uint64_t *ret)
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
    if (msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS)
        rc = map_uint(&u.data, key, ret);
    msgpack_unpacked_destroy(&u);
    free(buf);
    return rc;
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
