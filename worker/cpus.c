/*
 * cpus.c - the CPUs this process may use: its affinity mask, and the CPU
 * quota of its cgroup found through /proc/self/cgroup and
 * /proc/self/mountinfo.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_ALLOC */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpus.h"

/* The most this reads of /proc/self/mountinfo, and of a quota file. */
#define MOUNTINFO_MAX ((size_t)16 << 20)
#define QUOTA_FILE_MAX 4096

/* The text of a file (NUL-terminated, malloc'ed), or NULL if it cannot be
 * read whole within max bytes.  /proc files report no size: read to EOF. */
static char *read_text(const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 == cap) {
            char *bigger = cap < max ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
        } else if (n == 0) {
            buf[len] = '\0';
            break;
        } else {
            len += (size_t)n;
        }
    }
    close(fd);
    return buf;
}

/* Whether the comma-separated list (len bytes) has word as an item. */
static bool list_has(const char *list, size_t len, const char *word)
{
    size_t wlen = strlen(word);
    const char *end = list + len;
    while (list < end) {
        const char *comma = memchr(list, ',', (size_t)(end - list));
        const char *item_end = comma ? comma : end;
        if ((size_t)(item_end - list) == wlen && memcmp(list, word, wlen) == 0)
            return true;
        list = item_end + 1;
    }
    return false;
}

/* Parse an unsigned decimal at *p (after blanks), moving *p past it. */
static bool parse_u64(const char **p, uint64_t *ret)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
    if (**p < '0' || **p > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(*p, &end, 10);
    if (errno)
        return false;
    *p = end;
    *ret = v;
    return true;
}

/* The CPUs quota microseconds per period allow, or 0 for no limit. */
static unsigned quota_cpus(uint64_t quota, uint64_t period)
{
    if (quota == 0 || period == 0)
        return 0;
    uint64_t n = quota / period + (quota % period != 0);
    return n > UINT_MAX ? UINT_MAX : (unsigned)n;
}

/* Parse n unsigned decimals from the start of the file dir/name into
 * vals; false if it cannot be read or does not start with them. */
static bool read_numbers(const char *dir, const char *name, uint64_t *vals, int n)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return false;
    char *text = read_text(path, QUOTA_FILE_MAX);
    const char *p = text;
    bool ok = text != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = parse_u64(&p, &vals[i]);
    free(text);
    return ok;
}

/* The CPUs the quota of the cgroup at dir allows, or 0. */
static unsigned read_quota(const char *dir, bool v2)
{
    uint64_t v[2];
    /* v2 "max PERIOD" and v1 "-1" do not parse: no limit. */
    bool ok = v2 ? read_numbers(dir, "cpu.max", v, 2)
                 : read_numbers(dir, "cpu.cfs_quota_us", v, 1) &&
                       read_numbers(dir, "cpu.cfs_period_us", v + 1, 1);
    return ok ? quota_cpus(v[0], v[1]) : 0;
}

/* The smallest limit of the cgroup at mount + rel and its parents up to
 * the mount point, or 0. */
static unsigned walk_up(const char *mount, const char *rel, bool v2)
{
    char dir[PATH_MAX];
    size_t mount_len = strlen(mount);
    if (strcmp(rel, "/") == 0)
        rel = "";
    if (snprintf(dir, sizeof dir, "%s%s", mount, rel) >= (int)sizeof dir)
        return 0;
    unsigned best = 0;
    for (;;) {
        unsigned n = read_quota(dir, v2);
        if (n && (best == 0 || n < best))
            best = n;
        char *slash = strrchr(dir + mount_len, '/');
        if (!slash)
            return best;
        *slash = '\0';
    }
}

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

/*
 * This process's cgroup in the v2 hierarchy ("0::PATH"), or in the v1
 * hierarchy that has the cpu controller ("N:cpu,cpuacct:PATH"), made
 * relative to root, the mount's root, into buf.  False if there is none,
 * or it is not under root (it is outside the mount's view).
 */
static bool cgroup_rel(const char *text, bool v2, const char *root, char *buf, size_t cap)
{
    size_t root_len = strcmp(root, "/") == 0 ? 0 : strlen(root);
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        const char *c1 = memchr(line, ':', (size_t)(end - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
        bool match = c2 && (v2 ? c1 - line == 1 && line[0] == '0' && c2 == c1 + 1
                               : list_has(c1 + 1, (size_t)(c2 - c1 - 1), "cpu"));
        if (match) {
            const char *path = c2 + 1;
            size_t len = (size_t)(end - path);
            if (len < root_len || memcmp(path, root, root_len) != 0 ||
                (len > root_len && path[root_len] != '/') || len - root_len >= cap)
                return false;
            memcpy(buf, path + root_len, len - root_len);
            buf[len - root_len] = '\0';
            /* A cgroup outside this namespace shows as "/../..". */
            for (const char *d = strstr(buf, "/.."); d; d = strstr(d + 1, "/.."))
                if (d[3] == '/' || d[3] == '\0')
                    return false;
            return true;
        }
        line = *end ? end + 1 : end;
    }
    return false;
}

unsigned tw_cpus_quota(const char *cgroup_text, const char *mountinfo_text)
{
    char *copy = strdup(mountinfo_text);
    unsigned best = 0;
    char *line_save = NULL;
    for (char *line = copy ? strtok_r(copy, "\n", &line_save) : NULL; line;
         line = strtok_r(NULL, "\n", &line_save)) {
        /* ID PARENT MAJ:MIN ROOT MOUNT OPTIONS [TAGS...] - FSTYPE SOURCE SUPEROPTS */
        char *f[5] = {NULL}, *fstype = NULL, *superopts = NULL, *save = NULL;
        int i = 0;
        for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            if (i < 5)
                f[i++] = tok;
            else if (strcmp(tok, "-") == 0 && (fstype = strtok_r(NULL, " ", &save)) != NULL &&
                     strtok_r(NULL, " ", &save) != NULL)
                superopts = strtok_r(NULL, " ", &save);
        }
        if (!superopts)
            continue;
        bool v2 = strcmp(fstype, "cgroup2") == 0;
        if (!v2 && !(strcmp(fstype, "cgroup") == 0 &&
                     list_has(superopts, strlen(superopts), "cpu")))
            continue;
        char *root = f[3], *mount = f[4], rel[PATH_MAX];
        unescape(root);
        unescape(mount);
        if (!cgroup_rel(cgroup_text, v2, root, rel, sizeof rel))
            continue;
        unsigned n = walk_up(mount, rel, v2);
        if (n && (best == 0 || n < best))
            best = n;
    }
    free(copy);
    return best;
}

/* The CPUs in this thread's affinity mask (sized for up to 2^20 CPUs),
 * or the online CPUs. */
static unsigned affinity_cpus(void)
{
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set)
            break;
        size_t size = CPU_ALLOC_SIZE(ncpu);
        int rc = sched_getaffinity(0, size, set);
        int err = errno;
        int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (rc == 0 && count > 0)
            return (unsigned)count;
        if (rc == 0 || err != EINVAL)
            break;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

unsigned tw_cpus_usable(void)
{
    unsigned n = affinity_cpus();
    char *cgroup = read_text("/proc/self/cgroup", MOUNTINFO_MAX);
    char *mountinfo = read_text("/proc/self/mountinfo", MOUNTINFO_MAX);
    unsigned quota = cgroup && mountinfo ? tw_cpus_quota(cgroup, mountinfo) : 0;
    free(cgroup);
    free(mountinfo);
    return quota && quota < n ? quota : n;
}
