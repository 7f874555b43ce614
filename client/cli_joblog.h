/*
 * cli_joblog.h - the joblog of `taskq map` (--joblog, --resume-failed):
 * GNU parallel's tab-separated file, one row per job ended, with the
 * columns Seq, Host, Starttime, JobRuntime, Send, Receive, Exitval,
 * Signal and Command.
 */
#ifndef TASKQ_CLI_JOBLOG_H
#define TASKQ_CLI_JOBLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cli.h"

/*
 * Start a new joblog at path (truncating a file there) with its header
 * line.  Returns 0 or TASKQ_ESYS (errno set); on success *ret is the open
 * file, which the caller closes with fclose().
 */
int cli_joblog_create(const char *path, FILE **ret);

/*
 * --resume-failed: set skip[seq - 1] for each input (seq from 1 to
 * ninputs) that the joblog at path says succeeded (Exitval and Signal 0),
 * and start the joblog again with the header and those rows, ready for
 * new rows.  The rows are written to a new file in the same directory,
 * with the old one's mode, that then replaces it, so that they are never
 * lost.  Malformed rows and rows for other inputs are dropped.  A missing
 * joblog is created as by cli_joblog_create().  Returns 0, TASKQ_ESYS
 * (errno set) or TASKQ_ENOMEM; on success *ret is the open file, which the
 * caller closes with fclose().  skip may be partly set on failure.
 */
int cli_joblog_resume(const char *path, bool *skip, size_t ninputs, FILE **ret);

/*
 * Write and flush the row of the job for input number seq, whose command
 * as shown is cmd, submitted and ended at those wall clock times (seconds
 * since the epoch).  res is its result, or NULL if it has none (the row
 * then says Exitval -1 and the time from submission to end).  The
 * command's tabs and newlines are written as \t and \n so that a row is
 * one line.  Does nothing if log is NULL.
 */
void cli_joblog_row(FILE *log, size_t seq, const char *cmd, double submitted, double ended,
                    const cli_exec_result_t *res);

#endif /* TASKQ_CLI_JOBLOG_H */
