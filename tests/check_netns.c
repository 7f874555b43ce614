/*
 * check_netns.c - a remote host, simulated: a worker runs in its own
 * network namespace, joined to the test's namespace by a veth pair with
 * addresses of its own (10.213.X.Y/30), and serves tasks that a client
 * beside the broker submits.  Needs root and `ip`; skips (and passes) with
 * a message where namespaces cannot be created.
 */
#include <check.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "montecarlo.h"
#include "taskq.h"

/* Named after the suite's process (main) so that it can remove them even
 * when a test's process was killed. */
static th_netns_t netns;

static th_broker_t broker;

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

static void teardown(void)
{
    th_stop_all();
    th_netns_down(&netns);
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
    const char *why = th_netns_up(&netns);
    if (why) {
        th_netns_down(&netns);
        printf("check_netns: SKIPPED: %s; the remote-host test needs root, `ip` and "
               "network namespaces\n", why);
        fflush(stdout);
        return;
    }

    /* The broker listens only on its end of the veth pair. */
    char bind[64];
    snprintf(bind, sizeof bind, "tcp://%s:*", netns.root_addr);
    const char *const hb[] = {"--heartbeat-ms", "200", "--liveness", "3", "--insecure", NULL};
    ck_assert_int_eq(th_broker_start(&broker, bind, hb), 0);
    ck_assert_msg(strncmp(broker.endpoint, bind, strlen(bind) - 1) == 0, "bound %s",
                  broker.endpoint);

    /* `ip netns exec` enters the namespace and then execs the worker, so
     * the pid the harness gets is the worker's. */
    const char *const wargs[] = {"--broker", broker.endpoint, "--procs", "2",
                                 "--load", MONTECARLO_PATH, NULL};
    pid_t wpid = th_netns_spawn(&netns, TASKQ_WORKER_PATH, wargs);
    ck_assert_int_gt(wpid, 0);

    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(broker.endpoint, NULL, &c), 0);
    ck_assert_int_eq(th_wait_workers(c, 2, 20000), 0);

    /* The broker's workers are the process in the other namespace (the
     * supervisor holds the connections; `ip netns exec` keeps the host
     * name, so they report this host's). */
    ck_assert_msg(th_netns_has(&netns, wpid), "worker %d is not in %s", (int)wpid, netns.path);
    ck_assert(!th_netns_has(&netns, getpid()));
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

int main(void)
{
    th_netns_init(&netns);
    const th_case_t cases[] = {
        {"remote_worker", test_worker_in_other_namespace, 60, NULL, teardown},
    };
    int rc = th_run_suite("netns", cases, sizeof cases / sizeof cases[0]);
    th_netns_down(&netns); /* a test killed by its timeout had no chance to */
    return rc;
}
