/*
 * check_cli_map.c - `taskq map` end to end: a real taskqd and a real
 * taskq-worker --exec --procs 2, driven through the taskq binary from sh
 * (inputs on stdin, outputs in files of the test's directory).  Exit
 * status, joblog, --resume-failed, ordering, --halt-on-failures,
 * replacement strings, the progress bar under a pseudo-terminal, Ctrl-C.
 */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "taskq.h"

static const char *const fast_hb[] = {"--heartbeat-ms", "200", "--liveness", "3", NULL};

static th_broker_t broker;
static taskq_client_t *client;

static void setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, fast_hb), 0);
    const char *args[] = {"--broker", broker.endpoint, "--exec", "--procs", "2", NULL};
    ck_assert_int_gt(th_spawn(TASKQ_WORKER_PATH, args), 0);
    ck_assert_int_eq(taskq_client_new(broker.endpoint, NULL, &client), 0);
    ck_assert_int_eq(th_wait_workers(client, 2, 20000), 0);
    /* The commands and their files live in the test's directory. */
    ck_assert_int_eq(chdir(broker.dir), 0);
    setenv("TASKQ_BROKER", broker.endpoint, 1);
    setenv("TASKQ", TASKQ_CLI_PATH, 1);
}

static void teardown(void)
{
    taskq_client_destroy(&client);
    th_stop_all();
    DIR *d = opendir(broker.dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            unlink(e->d_name);
    if (d)
        closedir(d);
    ck_assert_int_eq(chdir("/"), 0);
    rmdir(broker.dir);
}

/* Run script with sh in the test's directory ($TASKQ is the taskq binary,
 * $TASKQ_BROKER the broker) and return its exit status, or -1 if it did
 * not exit normally within timeout_ms. */
static int sh(const char *script, int timeout_ms)
{
    char out[4096];
    const char *args[] = {"-c", script, NULL};
    int st = th_run("/bin/sh", args, timeout_ms, out, sizeof out);
    if (out[0])
        fprintf(stderr, "sh -c '%s' said: %s\n", script, out);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The whole file at path (malloc'ed, NUL-terminated), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Does text hold the line line? */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && p[n] == '\n')
            return true;
    return false;
}

/* Wait until the broker has nothing queued or running (bounded). */
static bool broker_idle(int timeout_ms)
{
    uint64_t queued = 1, running = 1;
    int64_t end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        if (th_stat(client, "queued", &queued) == 0 && th_stat(client, "running", &running) == 0 &&
            queued == 0 && running == 0)
            return true;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "broker: %llu queued, %llu running\n", (unsigned long long)queued,
            (unsigned long long)running);
    return false;
}

/* ---- exit status, joblog, --resume-failed ------------------------------- */

#define FAILING "sh -c \"echo {}; [ \\$(( {} % 333 )) -ne 0 ]\""

START_TEST(test_failures_joblog_resume)
{
    /* 333, 666 and 999 fail. */
    ck_assert_int_eq(sh("seq 1 1000 | \"$TASKQ\" map --no-bar --joblog jl '" FAILING
                        "' > out 2> err",
                        120000),
                     3);
    char *out = slurp("out"), *err = slurp("err"), *log = slurp("jl");
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(log);
    ck_assert_str_eq(err, "");
    char want[16];
    const char *p = out;
    for (int i = 1; i <= 1000; i++) {
        snprintf(want, sizeof want, "%d\n", i);
        ck_assert_msg(strncmp(p, want, strlen(want)) == 0, "output line %d is wrong", i);
        p += strlen(want);
    }
    ck_assert_str_eq(p, "");

    ck_assert_uint_eq(count_lines(log), 1001);
    const char *header =
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";
    ck_assert_int_eq(strncmp(log, header, strlen(header)), 0);
    bool seen[1001] = {false};
    char *save = NULL;
    for (char *row = strtok_r(log + strlen(header), "\n", &save); row;
         row = strtok_r(NULL, "\n", &save)) {
        int seq, exitval, sig, n = 0;
        double start, runtime;
        char cmd[200];
        ck_assert_msg(sscanf(row, "%d\t:\t%lf\t%lf\t0\t0\t%d\t%d\t%n", &seq, &start, &runtime,
                             &exitval, &sig, &n) == 5 && n > 0,
                      "bad row \"%s\"", row);
        ck_assert_int_ge(seq, 1);
        ck_assert_int_le(seq, 1000);
        ck_assert_msg(!seen[seq], "job %d twice", seq);
        seen[seq] = true;
        ck_assert_int_eq(exitval, seq % 333 == 0);
        ck_assert_int_eq(sig, 0);
        ck_assert_double_gt(start, 1.6e9);
        ck_assert_double_ge(runtime, 0);
        /* Starttime has 3 decimals, JobRuntime is %10.3f. */
        const char *f3 = strchr(strchr(strchr(row, '\t') + 1, '\t') + 1, '\t') + 1;
        ck_assert_msg(f3[10] == '\t' && f3[6] == '.', "JobRuntime in \"%s\"", row);
        snprintf(cmd, sizeof cmd, "sh -c 'echo %d; [ $(( %d %% 333 )) -ne 0 ]'", seq, seq);
        ck_assert_str_eq(row + n, cmd);
    }
    free(out);
    free(err);
    free(log);

    /* The rerun runs exactly the three that failed, and logs them. */
    ck_assert_int_eq(sh("seq 1 1000 | \"$TASKQ\" map --no-bar --joblog jl --resume-failed "
                        "'sh -c \"echo {} >> ran; echo again {}\"' > out",
                        120000),
                     0);
    out = slurp("out");
    char *ran = slurp("ran");
    log = slurp("jl");
    ck_assert_str_eq(out, "again 333\nagain 666\nagain 999\n");
    ck_assert_uint_eq(count_lines(ran), 3);
    ck_assert(has_line(ran, "333") && has_line(ran, "666") && has_line(ran, "999"));
    ck_assert_uint_eq(count_lines(log), 1001);
    ck_assert_ptr_nonnull(strstr(log, "\tsh -c 'echo 666 >> ran; echo again 666'\n"));
    ck_assert_ptr_null(strstr(log, "\tsh -c 'echo 666; [ $(( 666 % 333 )) -ne 0 ]'\n"));
    ck_assert_ptr_nonnull(strstr(log, "\tsh -c 'echo 665; [ $(( 665 % 333 )) -ne 0 ]'\n"));
    free(out);
    free(ran);
    free(log);

    /* Nothing is left to run. */
    ck_assert_int_eq(sh("seq 1 1000 | \"$TASKQ\" map --no-bar --joblog jl --resume-failed "
                        "'sh -c \"echo {} >> ran\"'",
                        60000),
                     0);
    ran = slurp("ran");
    ck_assert_uint_eq(count_lines(ran), 3);
    free(ran);
}
END_TEST

/* ---- output order ---------------------------------------------------------- */

/* A command for job N that sleeps 0, 10, 20 or 30 ms, so that jobs end
 * out of order, and then prints 50 lines "N.i". */
static void write_chatty(void)
{
    FILE *f = fopen("chatty", "w");
    ck_assert_ptr_nonnull(f);
    fputs("sleep 0.0$(( $1 % 4 ))\n"
          "i=0; while [ $i -lt 50 ]; do echo $1.$i; i=$((i+1)); done\n",
          f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_ordered_output)
{
    write_chatty();
    ck_assert_int_eq(sh("seq 1 200 | \"$TASKQ\" map --no-bar sh chatty > out", 120000), 0);
    char *out = slurp("out");
    ck_assert_ptr_nonnull(out);
    const char *p = out;
    char want[32];
    for (int n = 1; n <= 200; n++) {
        for (int i = 0; i < 50; i++) {
            snprintf(want, sizeof want, "%d.%d\n", n, i);
            ck_assert_msg(strncmp(p, want, strlen(want)) == 0, "expected %s at offset %zu",
                          want, (size_t)(p - out));
            p += strlen(want);
        }
    }
    ck_assert_str_eq(p, "");
    free(out);
}
END_TEST

START_TEST(test_unordered_output)
{
    write_chatty();
    ck_assert_int_eq(sh("seq 1 200 | \"$TASKQ\" map --no-bar --unordered sh chatty > out", 120000),
                     0);
    char *out = slurp("out");
    ck_assert_ptr_nonnull(out);
    bool seen[201] = {false};
    const char *p = out;
    for (int job = 0; job < 200; job++) {
        int n, i, len;
        ck_assert_int_eq(sscanf(p, "%d.%d\n%n", &n, &i, &len), 2);
        ck_assert_msg(n >= 1 && n <= 200 && !seen[n], "job %d twice or unknown", n);
        seen[n] = true;
        /* The job's 50 lines come together. */
        char want[32];
        for (i = 0; i < 50; i++) {
            snprintf(want, sizeof want, "%d.%d\n", n, i);
            ck_assert_msg(strncmp(p, want, strlen(want)) == 0, "job %d interleaved", n);
            p += strlen(want);
        }
    }
    ck_assert_str_eq(p, "");
    free(out);
}
END_TEST

/* ---- --halt-on-failures ---------------------------------------------------- */

START_TEST(test_halt_on_failures)
{
    ck_assert_int_eq(sh("seq 1 1000 | \"$TASKQ\" map --no-bar --halt-on-failures 1 --joblog jl "
                        "'sh -c \"echo {} >> ran; exit $(( {} == 3 ))\"' 2> err",
                        60000),
                     1);
    char *ran = slurp("ran"), *err = slurp("err"), *log = slurp("jl");
    size_t runs = count_lines(ran), rows = count_lines(log) - 1;
    ck_assert_msg(runs >= 3 && runs < 100, "%zu jobs ran", runs);
    ck_assert_uint_le(rows, runs);
    ck_assert_ptr_nonnull(strstr(err, "stopped"));
    ck_assert(broker_idle(10000));
    free(ran);
    free(err);
    free(log);

    /* --resume-failed runs job 3 and the ones that never ran (or were
     * cancelled): every input that has no successful row. */
    ck_assert_int_eq(sh("seq 1 1000 | \"$TASKQ\" map --no-bar --joblog jl --resume-failed "
                        "'sh -c \"echo {} >> ran2\"'",
                        120000),
                     0);
    ran = slurp("ran2");
    ck_assert_uint_eq(count_lines(ran), 1000 - (rows - 1));
    ck_assert(has_line(ran, "3"));
    free(ran);
    log = slurp("jl");
    ck_assert_uint_eq(count_lines(log), 1001);
    free(log);
}
END_TEST

/* ---- replacement strings and words ----------------------------------------- */

START_TEST(test_replacement_strings)
{
    ck_assert_int_eq(sh("\"$TASKQ\" map --no-bar 'echo {} {#} {.} {/} {//} {/.}' "
                        "::: a/b.txt 'x y' /z c.tar.gz > out",
                        60000),
                     0);
    char *out = slurp("out");
    ck_assert_str_eq(out, "a/b.txt 1 a/b b.txt a b\n"
                          "x y 2 x y x y . x y\n"
                          "/z 3 /z z / z\n"
                          "c.tar.gz 4 c.tar c.tar.gz . c.tar\n");
    free(out);

    /* An input is one argument whatever it holds; without {} it comes last;
     * several words are taken as they are. */
    ck_assert_int_eq(sh("\"$TASKQ\" map --no-bar 'printf \"[%s]\"' ::: 'a  b' \"it's\" > out && "
                        "\"$TASKQ\" map --no-bar printf '<%s|%s>' 'two words' ::: x >> out",
                        60000),
                     0);
    out = slurp("out");
    ck_assert_str_eq(out, "[a  b][it's]<two words|x>");
    free(out);

    /* --shell: one shell line, the input quoted for it. */
    ck_assert_int_eq(sh("\"$TASKQ\" map --no-bar --shell 'echo {} | tr a-z A-Z; echo {#}' "
                        "::: \"it's\" '$HOME' > out",
                        60000),
                     0);
    out = slurp("out");
    ck_assert_str_eq(out, "IT'S\n1\n$HOME\n2\n");
    free(out);
}
END_TEST

/* ---- the progress bar ------------------------------------------------------ */

START_TEST(test_progress_bar)
{
    /* script gives taskq a pseudo-terminal for stdout and stderr, whose
     * width is unset: COLUMNS says 60. */
    ck_assert_int_eq(sh("COLUMNS=60 script -qfec '"
                        "seq 1 1000 | \"$TASKQ\" map sh -c \"exit \\$(( {} % 500 == 0 ))\" "
                        "> /dev/null' /dev/null < /dev/null > tty",
                        120000),
                     2);
    char *tty = slurp("tty");
    ck_assert_ptr_nonnull(tty);
    size_t frames = 0;
    const char *last = NULL;
    for (const char *p = strchr(tty, '\r'); p; p = strchr(p + 1, '\r')) {
        const char *end = strstr(p, "\033[K");
        if (!end)
            continue;
        ck_assert_msg(end - p - 1 < 60, "frame of %d columns", (int)(end - p - 1));
        if (end > p + 1) {
            frames++;
            last = p + 1;
        }
    }
    ck_assert_uint_ge(frames, 1);
    ck_assert_msg(strncmp(last, "1000/1000 100%  2 failed", 24) == 0, "last frame: %.60s",
                  last);
    /* The last frame ends its line. */
    ck_assert_ptr_nonnull(strstr(last, "\033[K\r\n"));
    free(tty);
}
END_TEST

/* ---- Ctrl-C ----------------------------------------------------------------- */

START_TEST(test_sigint_cancels)
{
    const char *args[] = {"-c", "exec \"$TASKQ\" map --no-bar 'sh -c \"echo {} >> started; "
                                "exec sleep 60\"' ::: $(seq 1 100) 2> err",
                          NULL};
    pid_t pid = th_spawn("/bin/sh", args);
    ck_assert_int_gt(pid, 0);
    /* Both worker processes have started a job. */
    char *started = NULL;
    int64_t end = th_now_ms() + 20000;
    while (th_now_ms() < end && count_lines(started) < 2) {
        free(started);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
        started = slurp("started");
    }
    ck_assert_uint_eq(count_lines(started), 2);
    free(started);

    kill(pid, SIGINT);
    int st = th_wait_exit(pid, 10000);
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 130, "status %d", st);
    char *err = slurp("err");
    ck_assert_ptr_nonnull(strstr(err, "interrupted: 0 done (0 failed), "));
    free(err);
    ck_assert(broker_idle(10000));
    uint64_t cancelled = 0;
    ck_assert_int_eq(th_stat(client, "cancelled", &cancelled), 0);
    ck_assert_uint_ge(cancelled, 2);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"failures_joblog_resume", test_failures_joblog_resume, 300, setup, teardown},
        {"ordered", test_ordered_output, 120, setup, teardown},
        {"unordered", test_unordered_output, 120, setup, teardown},
        {"halt", test_halt_on_failures, 300, setup, teardown},
        {"replacements", test_replacement_strings, 60, setup, teardown},
        {"bar", test_progress_bar, 120, setup, teardown},
        {"sigint", test_sigint_cancels, 60, setup, teardown},
    };
    return th_run_suite("cli_map", cases, sizeof cases / sizeof cases[0]);
}
