/*
 * check_netns.c - a remote host, simulated: a worker runs in its own
 * network namespace, joined to the test's namespace by a veth pair with
 * addresses of its own (10.213.X.Y/30), and serves tasks that a client
 * beside the broker submits.  Needs root and `ip`; skips (and passes) with
 * a message where namespaces cannot be created.
 */
#include <check.h>
#include <ifaddrs.h>
#include <msgpack.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "montecarlo.h"
#include "taskq.h"

/* The namespace and veth names, fixed by the suite's process (main) so that
 * it can remove them even when a test's process was killed. */
static char ns_name[64];
static char veth_root[16], veth_ns[16];
static char ns_path[128]; /* /run/netns/<ns_name> */
static char ip_path[64];
static bool ns_created;

/* The /30 both ends use: broker_addr in the test's namespace, worker_addr
 * in the worker's. */
static char broker_addr[32], worker_addr[32];

static th_broker_t broker;

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

/* Run `ip ARGS...` (NULL-terminated); true if it exits 0.  On failure its
 * output is printed unless quiet. */
static bool ip(bool quiet, ...)
{
    const char *argv[16];
    int n = 0;
    va_list ap;
    va_start(ap, quiet);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    char out[1024];
    int st = th_run(ip_path, argv, 10000, out, sizeof out);
    bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!ok && !quiet) {
        fprintf(stderr, "ip");
        for (int i = 0; i < n; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, ": %s", out[0] ? out : "failed\n");
    }
    return ok;
}

/* Remove the veth pair (both ends go together) and the namespace; every
 * step is allowed to find nothing there. */
static void netns_down(void)
{
    if (!ns_created)
        return;
    ip(true, "link", "del", veth_root, NULL);
    ip(true, "netns", "del", ns_name, NULL);
    ns_created = false;
}

/* Whether an address of this host lies in 10.213.x.b/30. */
static bool subnet_used(const struct ifaddrs *list, unsigned x, unsigned b)
{
    uint32_t net = (10u << 24) | (213u << 16) | (x << 8) | b;
    for (const struct ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET)
            continue;
        const struct sockaddr_in *in = (const void *)a->ifa_addr;
        uint32_t v = ntohl(in->sin_addr.s_addr);
        if ((v & ~3u) == net)
            return true;
    }
    return false;
}

/* Pick a /30 in 10.213.0.0/16 that no interface here uses, starting from
 * one that depends on the pid so that concurrent runs differ. */
static bool pick_subnet(void)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return false;
    bool found = false;
    for (unsigned k = 0; k < 64 && !found; k++) {
        unsigned idx = ((unsigned)getpid() + k) % 16384;
        unsigned x = idx / 64, b = (idx % 64) * 4;
        if (!subnet_used(list, x, b)) {
            snprintf(broker_addr, sizeof broker_addr, "10.213.%u.%u", x, b + 1);
            snprintf(worker_addr, sizeof worker_addr, "10.213.%u.%u", x, b + 2);
            found = true;
        }
    }
    freeifaddrs(list);
    return found;
}

/*
 * Create the namespace and the veth pair, and address and raise both ends.
 * Returns NULL, or why the host cannot make them (then the test is
 * skipped).  Failing to set them up once they exist is a real failure.
 */
static const char *netns_up(void)
{
    if (geteuid() != 0)
        return "not running as root";
    if (!ip_path[0])
        return "no `ip` command (iproute2) found";
    if (!pick_subnet())
        return "no free /30 in 10.213.0.0/16";
    if (!ip(false, "netns", "add", ns_name, NULL))
        return "`ip netns add` failed";
    ns_created = true;
    atexit(netns_down); /* in this process: a failed assertion exits it */
    if (!ip(false, "link", "add", veth_root, "type", "veth", "peer", "name", veth_ns, NULL))
        return "cannot create a veth pair";
    char cidr[40];
    snprintf(cidr, sizeof cidr, "%s/30", broker_addr);
    ck_assert(ip(false, "link", "set", veth_ns, "netns", ns_name, NULL));
    ck_assert(ip(false, "addr", "add", cidr, "dev", veth_root, NULL));
    ck_assert(ip(false, "link", "set", veth_root, "up", NULL));
    snprintf(cidr, sizeof cidr, "%s/30", worker_addr);
    ck_assert(ip(false, "-n", ns_name, "addr", "add", cidr, "dev", veth_ns, NULL));
    ck_assert(ip(false, "-n", ns_name, "link", "set", veth_ns, "up", NULL));
    ck_assert(ip(false, "-n", ns_name, "link", "set", "lo", "up", NULL));
    return NULL;
}

static void teardown(void)
{
    th_stop_all();
    netns_down();
    if (broker.dir[0])
        rmdir(broker.dir);
}

/* Whether the msgpack object o is the str s. */
static bool is_str(const msgpack_object *o, const char *s)
{
    size_t len = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == len &&
           memcmp(o->via.str.ptr, s, len) == 0;
}

/* Read the broker's worker_list: the pid and host of each worker into
 * pids[] and hosts[] (at most cap).  Returns how many workers there are, or
 * -1. */
static int worker_list(taskq_client_t *c, uint64_t *pids, char (*hosts)[256], int cap)
{
    void *buf;
    size_t len;
    if (taskq_client_stats(c, 5000, &buf, &len) != 0)
        return -1;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int n = -1;
    if (msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (!is_str(&kv->key, "worker_list") || kv->val.type != MSGPACK_OBJECT_ARRAY)
                continue;
            n = (int)kv->val.via.array.size;
            for (int w = 0; w < n && w < cap; w++) {
                const msgpack_object *m = &kv->val.via.array.ptr[w];
                pids[w] = 0;
                hosts[w][0] = '\0';
                for (uint32_t j = 0; m->type == MSGPACK_OBJECT_MAP && j < m->via.map.size; j++) {
                    const msgpack_object *k = &m->via.map.ptr[j].key, *v = &m->via.map.ptr[j].val;
                    if (is_str(k, "pid") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                        pids[w] = v->via.u64;
                    else if (is_str(k, "host") && v->type == MSGPACK_OBJECT_STR)
                        snprintf(hosts[w], 256, "%.*s", (int)v->via.str.size, v->via.str.ptr);
                }
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    free(buf);
    return n;
}

/* Whether pid runs in the network namespace at path. */
static bool in_netns(pid_t pid, const char *path)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/%d/ns/net", (int)pid);
    struct stat a, b;
    return stat(proc, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static size_t pack_mc_arg(uint64_t samples, uint64_t seed, uint8_t *buf, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 7);
    msgpack_pack_str_body(&pk, "samples", 7);
    msgpack_pack_uint64(&pk, samples);
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "seed", 4);
    msgpack_pack_uint64(&pk, seed);
    size_t n = sb.size <= cap ? sb.size : 0;
    memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

/* The "sum" of an mc_integrate result. */
static double result_sum(taskq_future_t *f)
{
    size_t len;
    const void *r = taskq_future_result(f, &len);
    ck_assert_ptr_nonnull(r);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ck_assert(msgpack_unpack_next(&u, r, len, NULL) == MSGPACK_UNPACK_SUCCESS);
    ck_assert_int_eq(u.data.type, MSGPACK_OBJECT_MAP);
    double sum = -1;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (is_str(&kv->key, "sum") && kv->val.type == MSGPACK_OBJECT_FLOAT64)
            sum = kv->val.via.f64;
    }
    msgpack_unpacked_destroy(&u);
    return sum;
}

START_TEST(test_worker_in_other_namespace)
{
    memset(&broker, 0, sizeof broker);
    const char *why = netns_up();
    if (why) {
        netns_down();
        printf("check_netns: SKIPPED: %s; the remote-host test needs root, `ip` and "
               "network namespaces\n", why);
        fflush(stdout);
        return;
    }

    /* The broker listens only on its end of the veth pair. */
    char bind[64];
    snprintf(bind, sizeof bind, "tcp://%s:*", broker_addr);
    const char *const hb[] = {"--heartbeat-ms", "200", "--liveness", "3", NULL};
    ck_assert_int_eq(th_broker_start(&broker, bind, hb), 0);
    ck_assert_msg(strncmp(broker.endpoint, bind, strlen(bind) - 1) == 0, "bound %s",
                  broker.endpoint);

    /* `ip netns exec` enters the namespace and then execs the worker, so
     * the pid the harness gets is the worker's. */
    const char *const wargs[] = {"netns", "exec", ns_name, TASKQ_WORKER_PATH,
                                 "--broker", broker.endpoint, "--procs", "2",
                                 "--load", MONTECARLO_PATH, NULL};
    pid_t wpid = th_spawn(ip_path, wargs);
    ck_assert_int_gt(wpid, 0);

    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);

    /* The broker's workers are the process in the other namespace (the
     * supervisor holds the connections; `ip netns exec` keeps the host
     * name, so they report this host's). */
    ck_assert_msg(in_netns(wpid, ns_path), "worker %d is not in %s", (int)wpid, ns_path);
    ck_assert(!in_netns(getpid(), ns_path));
    uint64_t pids[2];
    char hosts[2][256], here[256] = "";
    gethostname(here, sizeof here);
    ck_assert_int_eq(worker_list(c, pids, hosts, 2), 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(pids[i], (uint64_t)wpid);
        ck_assert_str_eq(hosts[i], here);
    }

    /* Tasks cross the veth pair both ways and come back right: each sum is
     * the one this process computes from the same seed. */
    enum { N = 16, SAMPLES = 100000 };
    taskq_future_t *fs[N];
    for (int i = 0; i < N; i++) {
        uint8_t arg[64];
        size_t n = pack_mc_arg(SAMPLES, 1000 + (uint64_t)i, arg, sizeof arg);
        ck_assert_code(taskq_submit(c, "mc_integrate", arg, n, NULL, &fs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        int rc = taskq_future_wait(fs[i], 20000);
        ck_assert_msg(rc == 0, "task %d: %s: %s", i, taskq_errname(rc), taskq_future_error(fs[i]));
        mc_rng_t rng;
        mc_rng_seed(&rng, 1000 + (uint64_t)i);
        mc_sums_t want = {0};
        mc_draw(&rng, SAMPLES, &want);
        ck_assert(result_sum(fs[i]) == want.sum);
        taskq_future_destroy(&fs[i]);
    }
    uint64_t done = 0;
    ck_assert_int_eq(th_stat(c, "done", &done), 0);
    ck_assert_uint_eq(done, N);
    taskq_client_destroy(&c);

    int st = th_stop(wpid, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status %d", st);
    st = th_broker_stop(&broker, SIGTERM);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "broker status %d", st);
}
END_TEST

/* The first of the usual places of iproute2's `ip` that exists. */
static void find_ip(void)
{
    static const char *const places[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        if (access(places[i], X_OK) == 0) {
            snprintf(ip_path, sizeof ip_path, "%s", places[i]);
            return;
        }
    }
}

int main(void)
{
    /* Names from this process's pid: unique while it runs, and known here
     * so that whatever a killed test left is removed below.  Interface
     * names have at most 15 characters. */
    int pid = (int)getpid();
    snprintf(ns_name, sizeof ns_name, "taskq-test-%d", pid);
    snprintf(ns_path, sizeof ns_path, "/run/netns/%s", ns_name);
    snprintf(veth_root, sizeof veth_root, "tqv%dr", pid);
    snprintf(veth_ns, sizeof veth_ns, "tqv%dn", pid);
    find_ip();

    Suite *s = suite_create("netns");
    TCase *tc = tcase_create("remote_worker");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_worker_in_other_namespace);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    /* A test killed by its timeout had no chance to clean up. */
    ns_created = access(ns_path, F_OK) == 0 || if_nametoindex(veth_root) != 0;
    netns_down();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
