/*
 * log.h - the daemon's log: one line per event on stderr, prefixed with its
 * syslog priority ("<3>" ... "<7>") so that journald keeps the level.  The
 * level is, with the stop flag, the daemon's only global state.
 */
#ifndef TQD_LOG_H
#define TQD_LOG_H

#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* Messages with a priority above this (less urgent) are not formatted. */
extern int tqd_log_level;

/*
 * Log one line at prio (LOG_ERR .. LOG_DEBUG).  The arguments are not
 * evaluated when the level filters the line out.
 */
#define TQD_LOG(prio, ...)                                                                         \
    do {                                                                                           \
        if ((prio) <= tqd_log_level)                                                               \
            tqd_log_write((prio), __VA_ARGS__);                                                    \
    } while (0)

/*
 * Format and write one line with one write(2), so lines of concurrent
 * writers to the same stream do not interleave.  Control characters (from
 * peer-supplied names, say) are replaced by '?'; lines longer than 1 KiB
 * are cut.  Use TQD_LOG rather than calling this directly.
 */
void tqd_log_write(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Parse a level name ("err", "warning", "notice", "info", "debug").
 * Returns 0 and sets *ret to its priority, or -EINVAL.
 */
int tqd_log_parse_level(const char *name, int *ret);

#endif /* TQD_LOG_H */
