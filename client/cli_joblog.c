/*
 * cli_joblog.c - the joblog of `taskq map`, in GNU parallel's format:
 * writing its rows, and for --resume-failed reading which jobs succeeded
 * and rewriting it with their rows into a new file renamed over the old.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_joblog.h"

#define JOBLOG_HEADER "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

/* Trimmed field equal to "0"? */
static bool field_zero(const char *f)
{
    while (*f == ' ')
        f++;
    return f[0] == '0' && (f[1] == '\0' || f[1] == ' ');
}

int cli_joblog_create(const char *path, FILE **ret)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return TASKQ_ESYS;
    fputs(JOBLOG_HEADER, f);
    fflush(f);
    *ret = f;
    return 0;
}

int cli_joblog_resume(const char *path, bool *skip, size_t ninputs, FILE **ret)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return errno == ENOENT ? cli_joblog_create(path, ret) : TASKQ_ESYS;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 8);
    if (!tmp) {
        fclose(in);
        return TASKQ_ENOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", 8);
    struct stat st;
    int fd = mkstemp(tmp);
    FILE *out = NULL;
    if (fd >= 0 && fstat(fileno(in), &st) == 0 && fchmod(fd, st.st_mode & 07777) == 0)
        out = fdopen(fd, "w");
    int rc = out ? 0 : TASKQ_ESYS;
    if (!out && fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (out)
        fputs(JOBLOG_HEADER, out);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (out && (n = getline(&line, &cap, in)) > 0) {
        char *f[9], *save = NULL, *copy = strdup(line);
        if (!copy) {
            rc = TASKQ_ENOMEM;
            break;
        }
        size_t nf = 0;
        for (char *t = strtok_r(copy, "\t", &save); t && nf < 9; t = strtok_r(NULL, "\t", &save))
            f[nf++] = t;
        char *end;
        unsigned long long seq = nf == 9 ? strtoull(f[0], &end, 10) : 0;
        if (seq >= 1 && seq <= ninputs && *end == '\0' && field_zero(f[6]) &&
            field_zero(f[7]) && !skip[seq - 1]) {
            skip[seq - 1] = true;
            fputs(line, out);
            if (line[n - 1] != '\n')
                fputc('\n', out);
        }
        free(copy);
    }
    free(line);
    if (ferror(in) && !rc)
        rc = TASKQ_ESYS;
    fclose(in);
    if (!rc && (fflush(out) != 0 || rename(tmp, path) != 0))
        rc = TASKQ_ESYS;
    if (rc) {
        int e = errno;
        if (out) {
            fclose(out);
            unlink(tmp);
        }
        errno = e;
    } else {
        *ret = out;
    }
    free(tmp);
    return rc;
}

void cli_joblog_row(FILE *log, size_t seq, const char *cmd, double submitted, double ended,
                    const cli_exec_result_t *res)
{
    if (!log)
        return;
    double runtime = res ? (double)res->wall_ms / 1000.0 : ended - submitted;
    double start = ended - runtime;
    if (start < submitted)
        start = submitted;
    fprintf(log, "%zu\t:\t%.3f\t%10.3f\t0\t0\t%lld\t%lld\t", seq, start, runtime,
            res ? (long long)res->exit : -1LL, res ? (long long)res->signal : 0LL);
    for (const char *p = cmd; *p; p++) {
        if (*p == '\t')
            fputs("\\t", log);
        else if (*p == '\n')
            fputs("\\n", log);
        else
            fputc(*p, log);
    }
    fputc('\n', log);
    fflush(log);
}
