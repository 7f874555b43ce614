/*
 * client_util.h - what the example clients pi_client and bootstrap share
 * besides their science: reading a count from the command line and the
 * clock they time their runs with.
 */
#ifndef TASKQ_EXAMPLE_CLIENT_UTIL_H
#define TASKQ_EXAMPLE_CLIENT_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* Parse an unsigned integer in [min, max]; false if it is not one. */
static inline bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
    if (!s || *s < '0' || *s > '9') /* strtoull would take " 1" and "-1" */
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

/* Seconds on the monotonic clock. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* TASKQ_EXAMPLE_CLIENT_UTIL_H */
