/*
 * log.h - the log of the taskq programs (taskqd, taskq-worker): one line
 * per event on stderr, prefixed with its syslog priority ("<3>" ... "<7>")
 * so that journald keeps the level.  The level is, with a stop flag, a
 * program's only global state.  Never used by libtaskq, which does not
 * print.
 */
#ifndef TQ_LOG_H
#define TQ_LOG_H

#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* Messages with a priority above this (less urgent) are not formatted. */
extern int tq_log_level;

/*
 * Log one line at prio (LOG_ERR .. LOG_DEBUG).  The arguments are not
 * evaluated when the level filters the line out.
 */
#define TQ_LOG(prio, ...)                                                                         \
    do {                                                                                           \
        if ((prio) <= tq_log_level)                                                               \
            tq_log_write((prio), __VA_ARGS__);                                                    \
    } while (0)

/*
 * Format and write one line with one write(2), so lines of concurrent
 * writers to the same stream do not interleave.  Control characters (from
 * peer-supplied names, say) are replaced by '?'; lines longer than 1 KiB
 * are cut.  Use TQ_LOG rather than calling this directly.
 */
void tq_log_write(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parse a level name ("err", "warning", "notice", "info", "debug").
 * Returns 0 and sets *ret to its priority, or -EINVAL.
 */
int tq_log_parse_level(const char *name, int *ret);

#endif /* TQ_LOG_H */
