/*
 * log.c - the programs' stderr log with syslog priority prefixes, and the
 * log level it filters on.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int tq_log_level = LOG_NOTICE;

static const struct {
    const char *name;
    int prio;
} levels[] = {
    {"err", LOG_ERR},   {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
    {"info", LOG_INFO}, {"debug", LOG_DEBUG},
};

int tq_log_parse_level(const char *name, int *ret)
{
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(name, levels[i].name) == 0) {
            *ret = levels[i].prio;
            return 0;
        }
    }
    return -EINVAL;
}

void tq_log_write(int prio, const char *fmt, ...)
{
    char line[1024];
    int head = snprintf(line, sizeof line, "<%d>", prio);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + head, sizeof line - (size_t)head - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)head + (size_t)n;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    for (size_t i = (size_t)head; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[len++] = '\n';
    /* A failed log write has nowhere to be reported. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
