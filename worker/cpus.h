/*
 * cpus.h - how many CPUs this process may use: the CPUs of its affinity
 * mask, capped by the CPU quota of its cgroup (v2 cpu.max, or v1
 * cpu.cfs_quota_us) and of that cgroup's ancestors.
 */
#ifndef TW_CPUS_H
#define TW_CPUS_H

/*
 * The CPUs this process may use: the count of CPUs in its affinity mask
 * (sched_getaffinity; the online CPUs if that fails), capped by
 * tw_cpus_quota() of /proc/self/cgroup and /proc/self/mountinfo.  At
 * least 1.  Reads /proc and /sys; never fails.  Any thread.
 */
unsigned tw_cpus_usable(void);

/*
 * The CPUs a cgroup quota allows, or 0 if no quota limits them.
 * cgroup_text is the text of /proc/self/cgroup, mountinfo_text that of
 * /proc/self/mountinfo (both NUL-terminated).  For every cgroup2 mount,
 * and every cgroup (v1) mount with the cpu controller, the process's
 * cgroup in that hierarchy is found under the mount point (the mount's
 * root taken off its path; a cgroup outside the mount is ignored), and
 * the quota files of that cgroup and each parent up to the mount point
 * are read: v2 cpu.max "QUOTA PERIOD" ("max" is no limit), v1
 * cpu.cfs_quota_us (-1 is no limit) with cpu.cfs_period_us.  Each quota
 * allows ceil(QUOTA / PERIOD) CPUs; the smallest wins.  Missing or
 * unreadable files count as no limit.  Any thread.
 */
unsigned tw_cpus_quota(const char *cgroup_text, const char *mountinfo_text);

#endif /* TW_CPUS_H */
