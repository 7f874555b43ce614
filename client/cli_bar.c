/*
 * cli_bar.c - the progress bar of `taskq map`: composes the line from the
 * counts and the clock, drops the fields that do not fit the terminal, and
 * draws it in place on a terminal, following its width through SIGWINCH.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli_bar.h"
#include "taskq.h"

#define BAR_PERIOD_MS 100
#define BAR_LINE_MAX 512 /* widest line drawn, whatever the terminal says */
#define BAR_MIN_INNER 10 /* the bar itself is shown only with this many cells */

static volatile sig_atomic_t resized;

static void on_winch(int sig)
{
    (void)sig;
    resized = 1;
}

struct cli_bar {
    int fd;
    size_t total, done, failed;
    int64_t start_ms, drawn_ms; /* drawn_ms: -1 before the first frame */
    int width;                  /* columns of the terminal */
    bool shown;                 /* a frame is on the line now */
    bool finished;
    struct sigaction old_winch;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void read_width(cli_bar_t *b)
{
    struct winsize ws;
    const char *cols = getenv("COLUMNS");
    if (ioctl(b->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        b->width = ws.ws_col;
    else if (cols && atoi(cols) > 0)
        b->width = atoi(cols);
    else
        b->width = 80;
}

int cli_bar_new(int fd, size_t total, cli_bar_t **ret)
{
    cli_bar_t *b = calloc(1, sizeof *b);
    if (!b)
        return TASKQ_ENOMEM;
    b->fd = fd;
    b->total = total;
    b->start_ms = now_ms();
    b->drawn_ms = -1;
    read_width(b);
    resized = 0;
    struct sigaction sa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, &b->old_winch);
    *ret = b;
    return 0;
}

void cli_bar_destroy(cli_bar_t **b)
{
    if (!b || !*b)
        return;
    sigaction(SIGWINCH, &(*b)->old_winch, NULL);
    free(*b);
    *b = NULL;
}

/* "M:SS", or "H:MM:SS" from an hour on. */
static void fmt_duration(char *buf, size_t cap, int64_t s)
{
    if (s >= 3600)
        snprintf(buf, cap, "%lld:%02d:%02d", (long long)(s / 3600), (int)(s / 60 % 60),
                 (int)(s % 60));
    else
        snprintf(buf, cap, "%d:%02d", (int)(s / 60), (int)(s % 60));
}

enum { F_COUNT, F_FAILED, F_RATE, F_ELAPSED, F_ETA, F_BAR, F_N };

/*
 * Compose the line into line (at most max columns; every character is one
 * column).  Fields that do not fit are left out, the least useful first:
 * the bar, the elapsed time, the rate, the ETA, the failed count; the
 * count itself is cut as a last resort.
 */
static void compose(const cli_bar_t *b, int64_t now, char *line, size_t max)
{
    char f[F_N][64];
    double secs = (double)(now - b->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)b->done / secs : 0;
    unsigned pct = b->total ? (unsigned)(b->done * 100 / b->total) : 100;
    snprintf(f[F_COUNT], sizeof f[F_COUNT], "%zu/%zu %u%%", b->done, b->total, pct);
    snprintf(f[F_FAILED], sizeof f[F_FAILED], "%zu failed", b->failed);
    snprintf(f[F_RATE], sizeof f[F_RATE], "%.1f/s", rate);
    char t[32];
    fmt_duration(t, sizeof t, (int64_t)secs);
    snprintf(f[F_ELAPSED], sizeof f[F_ELAPSED], "%s elapsed", t);
    if (b->done >= b->total)
        fmt_duration(t, sizeof t, 0);
    else if (b->done > 0 && rate > 0)
        fmt_duration(t, sizeof t, (int64_t)((double)(b->total - b->done) / rate + 0.5));
    else
        snprintf(t, sizeof t, "-:--");
    snprintf(f[F_ETA], sizeof f[F_ETA], "ETA %s", t);

    static const int drop_order[] = {F_BAR, F_ELAPSED, F_RATE, F_ETA, F_FAILED};
    bool on[F_N] = {true, true, true, true, true, true};
    size_t ndrop = 0;
    for (;;) {
        size_t len = 0;
        for (int i = 0; i < F_BAR; i++)
            if (on[i])
                len += strlen(f[i]) + (len ? 2 : 0);
        /* The bar takes what is left, "  [" and "]" included. */
        if (on[F_BAR] && len + 4 + BAR_MIN_INNER <= max) {
            size_t inner = max - len - 4;
            size_t fill = b->total ? (size_t)((double)inner * (double)b->done /
                                              (double)b->total) : inner;
            if (fill > inner)
                fill = inner;
            char *p = line;
            for (int i = 0; i < F_BAR; i++)
                p += sprintf(p, "%s%s", p == line ? "" : "  ", f[i]);
            p += sprintf(p, "  [");
            memset(p, '#', fill);
            memset(p + fill, ' ', inner - fill);
            strcpy(p + inner, "]");
            return;
        }
        if (!on[F_BAR] && len <= max) {
            char *p = line;
            *p = '\0';
            for (int i = 0; i < F_BAR; i++)
                if (on[i])
                    p += sprintf(p, "%s%s", p == line ? "" : "  ", f[i]);
            return;
        }
        if (ndrop == sizeof drop_order / sizeof drop_order[0])
            break;
        on[drop_order[ndrop++]] = false;
    }
    snprintf(line, max + 1, "%s", f[F_COUNT]);
}

static void write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void draw(cli_bar_t *b, int64_t now, bool last)
{
    if (resized) {
        resized = 0;
        read_width(b);
    }
    /* One column short of the width: a line that fills the last column
     * would make some terminals wrap. */
    size_t max = (size_t)b->width - 1;
    if (max > BAR_LINE_MAX)
        max = BAR_LINE_MAX;
    char frame[BAR_LINE_MAX + 16];
    frame[0] = '\r';
    size_t len = 1;
    if (max > 0) {
        compose(b, now, frame + 1, max);
        len += strlen(frame + 1);
    }
    len += (size_t)sprintf(frame + len, "\033[K%s", last ? "\n" : "");
    write_all(b->fd, frame, len);
    b->drawn_ms = now;
    b->shown = !last;
}

void cli_bar_update(cli_bar_t *b, size_t done, size_t failed)
{
    if (!b || b->finished)
        return;
    b->done = done;
    b->failed = failed;
    int64_t now = now_ms();
    if (b->drawn_ms < 0 || now - b->drawn_ms >= BAR_PERIOD_MS)
        draw(b, now, false);
}

void cli_bar_clear(cli_bar_t *b)
{
    if (!b || !b->shown)
        return;
    write_all(b->fd, "\r\033[K", 4);
    b->shown = false;
}

void cli_bar_finish(cli_bar_t *b)
{
    if (!b || b->finished)
        return;
    draw(b, now_ms(), true);
    b->finished = true;
}
