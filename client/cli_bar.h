/*
 * cli_bar.h - the progress bar of `taskq map`: one line on a terminal
 * (done/total, failed, rate, elapsed, ETA and a bar), redrawn in place at
 * most ten times a second and fitted to the terminal's width.
 */
#ifndef TASKQ_CLI_BAR_H
#define TASKQ_CLI_BAR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cli_bar cli_bar_t;

/*
 * Create a bar for total jobs that draws on fd (a terminal; for another
 * file the width is $COLUMNS, else 80).  Installs a SIGWINCH handler
 * (the width is read again after the terminal is resized) that
 * cli_bar_destroy() removes; one bar at a time, main thread only.
 * Nothing is drawn before the first cli_bar_update().  Returns 0 or
 * TASKQ_ENOMEM; the caller frees *ret with cli_bar_destroy().
 */
int cli_bar_new(int fd, size_t total, cli_bar_t **ret);

/*
 * Record the counts (done counts failed jobs too) and draw a frame if the
 * last one was drawn at least 100 ms ago (the first one at once).  A frame
 * is written with one write(): "\r", the line, and clear-to-end-of-line,
 * so the line never flickers, and it is narrower than the terminal, so it
 * never wraps.
 */
void cli_bar_update(cli_bar_t *b, size_t done, size_t failed);

/* Erase the line, if a frame is shown, so other output can be written at
 * the start of an empty line; the next cli_bar_update() draws it again. */
void cli_bar_clear(cli_bar_t *b);

/* Draw the last frame with the counts of the last update, now, and end
 * the line.  Later calls on b draw nothing. */
void cli_bar_finish(cli_bar_t *b);

/* Free the bar and restore SIGWINCH's previous action.  Accepts NULL and
 * *NULL; sets *b to NULL. */
void cli_bar_destroy(cli_bar_t **b);

#endif /* TASKQ_CLI_BAR_H */
