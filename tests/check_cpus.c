/*
 * check_cpus.c - unit tests of the CPU count taskq-worker starts its pool
 * from (worker/cpus.c): cgroup quotas read from fake cgroup trees in a
 * temporary directory, and the real count under taskset.
 *
 * `check_cpus --usable` prints tw_cpus_usable(): the tests run it that way
 * under taskset.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpus.h"

/* ---- Fixture: a temporary directory to hold fake cgroup trees ---------- */

static char root[64];

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/check_cpus.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write text to root/rel, making the directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *slash = strchr(path + strlen(root) + 1, '/'); slash;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
        *slash = '/';
    }
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A mountinfo line for a cgroup2 mount of root/dir whose root is mroot. */
static const char *v2_mount(char *buf, size_t cap, const char *mroot, const char *dir)
{
    snprintf(buf, cap, "30 23 0:26 %s %s/%s rw,nosuid,nodev,noexec shared:4 - cgroup2 cgroup2 "
             "rw,nsdelegate\n", mroot, root, dir);
    return buf;
}

/* A mountinfo line for a v1 mount of root/dir with the controllers opts. */
static const char *v1_mount(char *buf, size_t cap, const char *dir, const char *opts)
{
    snprintf(buf, cap, "40 31 0:37 / %s/%s rw,nosuid - cgroup cgroup rw,%s\n", root, dir, opts);
    return buf;
}

/* ---- cgroup v2 --------------------------------------------------------- */

START_TEST(v2_quota)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/", "cg2");
    put("cg2/a/b/cpu.max", "150000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b\n", mi), 2);
    put("cg2/a/b/cpu.max", "50000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b\n", mi), 1);
    put("cg2/a/b/cpu.max", "200000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b\n", mi), 2);
}
END_TEST

START_TEST(v2_max_is_no_limit)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/", "cg2");
    put("cg2/a/b/cpu.max", "max 100000\n");
    put("cg2/a/cpu.max", "max 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b\n", mi), 0);
    /* No files at all: no limit either. */
    ck_assert_uint_eq(tw_cpus_quota("0::/x/y\n", mi), 0);
}
END_TEST

/* The smallest quota of the cgroup and its parents wins. */
START_TEST(v2_nested_parents)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/", "cg2");
    put("cg2/a/b/c/cpu.max", "max 100000\n");
    put("cg2/a/b/cpu.max", "400000 100000\n");
    put("cg2/a/cpu.max", "250000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b/c\n", mi), 3);
    put("cg2/a/b/c/cpu.max", "100000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b/c\n", mi), 1);
    /* The mount point's own cpu.max counts (a container's cgroup mounted
     * as the root of its view). */
    put("cg2/a/b/c/cpu.max", "max 100000\n");
    put("cg2/cpu.max", "200000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a/b/c\n", mi), 2);
}
END_TEST

/* A mount whose root is a sub-cgroup: paths are made relative to it, and
 * a cgroup outside it is not counted. */
START_TEST(v2_mount_root)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/docker/x", "cg2");
    put("cg2/inner/cpu.max", "300000 100000\n");
    put("cg2/cpu.max", "max 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/docker/x/inner\n", mi), 3);
    put("cg2/cpu.max", "200000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/docker/x\n", mi), 2);
    ck_assert_uint_eq(tw_cpus_quota("0::/docker/xy\n", mi), 0);
    ck_assert_uint_eq(tw_cpus_quota("0::/elsewhere\n", mi), 0);

    /* Outside the cgroup namespace. */
    v2_mount(mi, sizeof mi, "/", "cg2");
    ck_assert_uint_eq(tw_cpus_quota("0::/../../inner\n", mi), 0);
}
END_TEST

/* mountinfo escapes a space in a mount point as \040. */
START_TEST(v2_escaped_mount_point)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/", "cg\\0402");
    put("cg 2/a/cpu.max", "300000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a\n", mi), 3);
}
END_TEST

/* ---- cgroup v1, hybrid, garbage ---------------------------------------- */

START_TEST(v1_cfs_quota)
{
    char mi[1024], line[512];
    snprintf(mi, sizeof mi, "%s", v1_mount(line, sizeof line, "memory", "memory"));
    strcat(mi, v1_mount(line, sizeof line, "cpu,cpuacct", "cpu,cpuacct"));
    const char *cg = "6:memory:/docker/x\n5:cpu,cpuacct:/docker/x\n0::/\n";
    put("cpu,cpuacct/docker/x/cpu.cfs_quota_us", "200000\n");
    put("cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n");
    put("memory/docker/x/cpu.cfs_quota_us", "100000\n");
    put("memory/docker/x/cpu.cfs_period_us", "100000\n");
    ck_assert_uint_eq(tw_cpus_quota(cg, mi), 2);
    put("cpu,cpuacct/docker/x/cpu.cfs_quota_us", "-1\n");
    ck_assert_uint_eq(tw_cpus_quota(cg, mi), 0);
    put("cpu,cpuacct/docker/cpu.cfs_quota_us", "350000\n");
    put("cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
    ck_assert_uint_eq(tw_cpus_quota(cg, mi), 4);
}
END_TEST

/* Both hierarchies mounted: whichever has the cpu controller limits. */
START_TEST(hybrid)
{
    char mi[1024], line[512];
    snprintf(mi, sizeof mi, "%s", v2_mount(line, sizeof line, "/", "unified"));
    strcat(mi, v1_mount(line, sizeof line, "cpu", "cpu"));
    const char *cg = "1:cpu:/job\n0::/job\n";
    put("unified/job/cpu.stat", "");
    put("cpu/job/cpu.cfs_quota_us", "150000\n");
    put("cpu/job/cpu.cfs_period_us", "100000\n");
    ck_assert_uint_eq(tw_cpus_quota(cg, mi), 2);
    put("unified/job/cpu.max", "100000 100000\n");
    ck_assert_uint_eq(tw_cpus_quota(cg, mi), 1);
}
END_TEST

START_TEST(garbage)
{
    char mi[512];
    v2_mount(mi, sizeof mi, "/", "cg2");
    ck_assert_uint_eq(tw_cpus_quota("", ""), 0);
    ck_assert_uint_eq(tw_cpus_quota("0::/a\n", "nonsense\n- cgroup2\n1 2 3 4 5 - cgroup2\n"), 0);
    ck_assert_uint_eq(tw_cpus_quota("garbage", mi), 0);
    put("cg2/a/cpu.max", "lots 100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a\n", mi), 0);
    put("cg2/a/cpu.max", "100000 0\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a\n", mi), 0);
    put("cg2/a/cpu.max", "100000\n");
    ck_assert_uint_eq(tw_cpus_quota("0::/a\n", mi), 0);
}
END_TEST

/* ---- The real count ---------------------------------------------------- */

/* The CPUs in this process's affinity mask; the first one in *ret_first. */
static unsigned affinity(int *ret_first)
{
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(0, sizeof set, &set), 0);
    for (int i = CPU_SETSIZE - 1; i >= 0; i--)
        if (CPU_ISSET(i, &set))
            *ret_first = i;
    return (unsigned)CPU_COUNT(&set);
}

START_TEST(usable_within_affinity)
{
    int first;
    unsigned n = tw_cpus_usable();
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, affinity(&first));
}
END_TEST

START_TEST(usable_under_taskset)
{
    if (system("command -v taskset >/dev/null 2>&1") != 0) {
        fprintf(stderr, "check_cpus: taskset not found; usable_under_taskset skipped\n");
        return;
    }
    char exe[PATH_MAX], cmd[PATH_MAX + 64], out[32] = "";
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(len, 0);
    exe[len] = '\0';
    int first;
    affinity(&first);
    snprintf(cmd, sizeof cmd, "taskset -c %d '%s' --usable", first, exe);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(out, sizeof out, p));
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_str_eq(out, "1\n");
}
END_TEST

static Suite *cpus_suite(void)
{
    Suite *s = suite_create("cpus");
    TCase *tc = tcase_create("quota");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, v2_quota);
    tcase_add_test(tc, v2_max_is_no_limit);
    tcase_add_test(tc, v2_nested_parents);
    tcase_add_test(tc, v2_mount_root);
    tcase_add_test(tc, v2_escaped_mount_point);
    tcase_add_test(tc, v1_cfs_quota);
    tcase_add_test(tc, hybrid);
    tcase_add_test(tc, garbage);
    suite_add_tcase(s, tc);

    tc = tcase_create("usable");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, usable_within_affinity);
    tcase_add_test(tc, usable_under_taskset);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--usable") == 0) {
        printf("%u\n", tw_cpus_usable());
        return EXIT_SUCCESS;
    }
    SRunner *sr = srunner_create(cpus_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
