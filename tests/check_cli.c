/*
 * check_cli.c - the taskq command-line tool end to end: the real taskq
 * binary run against a real taskqd and taskq-worker (--exec, and
 * echo_plugin.so for `call`) on loopback, its output captured byte for
 * byte; and the tool's JSON <-> msgpack conversions checked directly.
 */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli_json.h"
#include "harness.h"
#include "taskq.h"

static th_broker_t broker;
static taskq_client_t *client;

/* What one run of taskq did. */
typedef struct result {
    int status;          /* as from waitpid; -1 if it had to be killed */
    int64_t ms;          /* how long it ran */
    char out[256 << 10]; /* standard output, NUL added */
    size_t out_len;
    char err[16 << 10]; /* standard error, NUL added */
    size_t err_len;
} result_t;

static result_t res; /* large: kept off the stack */

#define ck_assert_exit(r, code)                                                            \
    do {                                                                                   \
        const result_t *r_ = (r);                                                          \
        ck_assert_msg(WIFEXITED(r_->status) && WEXITSTATUS(r_->status) == (code),          \
                      "status %d (exit %d), want exit %d; stdout: %s; stderr: %s",         \
                      r_->status, WIFEXITED(r_->status) ? WEXITSTATUS(r_->status) : -1,    \
                      code, r_->out, r_->err);                                             \
    } while (0)

static void path_of(char *buf, size_t cap, const char *tag, const char *ext)
{
    snprintf(buf, cap, "%s/%s.%s", broker.dir, tag, ext);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

/*
 * Start taskq --broker ENDPOINT args... through sh, which sends its
 * standard input from input (NULL: nothing) and its output to the files
 * TAG.out and TAG.err of the broker's directory.  Returns the pid (sh
 * execs taskq, so it is taskq's).
 */
static pid_t tq_spawn(const char *tag, const char *input, const char *const *args)
{
    char in[300], out[300], err[300];
    path_of(in, sizeof in, tag, "in");
    path_of(out, sizeof out, tag, "out");
    path_of(err, sizeof err, tag, "err");
    write_file(in, input ? input : "", input ? strlen(input) : 0);
    const char *argv[64] = {"-c", "i=$1 o=$2 e=$3; shift 3; exec \"$@\" <\"$i\" >\"$o\" 2>\"$e\"",
                            "sh", in, out, err, TASKQ_PATH, "--broker", broker.endpoint};
    size_t n = 9;
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = th_spawn("/bin/sh", argv);
    ck_assert_int_gt(pid, 0);
    return pid;
}

/* Wait up to timeout_ms for the taskq of tq_spawn(tag) and read what it
 * wrote into r. */
static void tq_collect(const char *tag, pid_t pid, int timeout_ms, int64_t t0, result_t *r)
{
    char path[300];
    r->status = th_wait_exit(pid, timeout_ms);
    r->ms = th_now_ms() - t0;
    path_of(path, sizeof path, tag, "out");
    r->out_len = read_file(path, r->out, sizeof r->out);
    path_of(path, sizeof path, tag, "err");
    r->err_len = read_file(path, r->err, sizeof r->err);
}

/* Run taskq args... to its end (at most 30 s) into res. */
static result_t *tq_in(const char *input, const char *const *args)
{
    int64_t t0 = th_now_ms();
    pid_t pid = tq_spawn("tq", input, args);
    tq_collect("tq", pid, 30000, t0, &res);
    return &res;
}

#define TQ(...) tq_in(NULL, (const char *const[]){__VA_ARGS__, NULL})
#define TQ_IN(input, ...) tq_in(input, (const char *const[]){__VA_ARGS__, NULL})

static void setup_broker(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    setenv("TASKQ_TEST_DIR", broker.dir, 1);
    ck_assert_int_eq(taskq_client_new(broker.endpoint, NULL, &client), 0);
}

/* A broker and a taskq-worker of two processes serving exec and echo. */
static void setup_pool(void)
{
    setup_broker();
    const char *const args[] = {"--broker", broker.endpoint, "--procs", "2", "--exec",
                                "--load",   ECHO_PLUGIN_PATH, NULL};
    ck_assert_int_gt(th_spawn(TASKQ_WORKER_PATH, args), 0);
    ck_assert_int_eq(th_wait_workers(client, 2, 20000), 0);
}

/* A broker and one test_worker named tw1 (square, fail, flaky, ...). */
static void setup_test_worker(void)
{
    setup_broker();
    const char *const args[] = {"--name", "tw1", NULL};
    ck_assert_int_gt(th_worker_start(broker.endpoint, args), 0);
    ck_assert_int_eq(th_wait_workers(client, 1, 20000), 0);
}

static void teardown(void)
{
    static const char *const tags[] = {"tq", "bg"}, *const exts[] = {"in", "out", "err"};
    taskq_client_destroy(&client);
    th_stop_all();
    char path[300];
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 3; k++) {
            path_of(path, sizeof path, tags[i], exts[k]);
            unlink(path);
        }
    path_of(path, sizeof path, "cmd", "pid");
    unlink(path);
    rmdir(broker.dir);
}

static uint64_t stat_of(const char *key)
{
    uint64_t v = 0;
    ck_assert_int_eq(th_stat(client, key, &v), 0);
    return v;
}

/* Wait (bounded) until the broker counts want under key. */
static void wait_stat(const char *key, uint64_t want)
{
    uint64_t v = 0;
    for (int64_t end = th_now_ms() + 10000; th_now_ms() < end;) {
        if ((v = stat_of(key)) == want)
            return;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("broker's %s is %llu, want %llu", key, (unsigned long long)v,
                 (unsigned long long)want);
}

/* ---- run ------------------------------------------------------------- */

START_TEST(test_run_relays_bytes)
{
    /* NUL and 0xff bytes, no trailing newline, both streams. */
    result_t *r = TQ("run", "--", "sh", "-c",
                     "printf 'a\\000b\\377\\n'; printf 'no newline'; printf 'e\\001rr' >&2");
    ck_assert_exit(r, 0);
    static const char out[] = "a\0b\377\nno newline", err[] = "e\001rr";
    ck_assert_uint_eq(r->out_len, sizeof out - 1);
    ck_assert_int_eq(memcmp(r->out, out, sizeof out - 1), 0);
    ck_assert_uint_eq(r->err_len, sizeof err - 1);
    ck_assert_int_eq(memcmp(r->err, err, sizeof err - 1), 0);

    /* A larger output, whole and in order. */
    r = TQ("run", "seq", "1", "20000");
    ck_assert_exit(r, 0);
    static char want[160000];
    size_t n = 0;
    for (int i = 1; i <= 20000; i++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%d\n", i);
    ck_assert_uint_eq(r->out_len, n);
    ck_assert_int_eq(memcmp(r->out, want, n), 0);
    ck_assert_uint_eq(r->err_len, 0);
}
END_TEST

START_TEST(test_run_exit_status)
{
    result_t *r = TQ("run", "--", "sh", "-c", "echo out; exit 3");
    ck_assert_exit(r, 3);
    ck_assert_str_eq(r->out, "out\n");
    r = TQ("run", "false");
    ck_assert_exit(r, 1);

    /* Killed by a signal: 128 + its number, as a shell reports it. */
    r = TQ("run", "--", "sh", "-c", "kill -9 $$");
    ck_assert_exit(r, 128 + 9);
    ck_assert_uint_eq(r->out_len + r->err_len, 0);

    r = TQ("run", "no-such-command-here");
    ck_assert_exit(r, 127);
    ck_assert_ptr_nonnull(strstr(r->err, "cannot run \"no-such-command-here\""));
    r = TQ("run", "--cwd", "/no/such/dir", "true");
    ck_assert_exit(r, 126);
    ck_assert_ptr_nonnull(strstr(r->err, "cannot enter directory \"/no/such/dir\""));
}
END_TEST

START_TEST(test_run_env_stdin_cwd)
{
    /* The command runs in the caller's directory by default. */
    char cwd[4096], want[4200];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    result_t *r = TQ_IN("from stdin\n", "run", "--stdin", "--env", "GREETING=hi there", "--",
                        "sh", "-c", "cat; echo \"$GREETING\"; pwd");
    ck_assert_exit(r, 0);
    snprintf(want, sizeof want, "from stdin\nhi there\n%s\n", cwd);
    ck_assert_str_eq(r->out, want);

    r = TQ("run", "--cwd", "/", "--", "sh", "-c", "pwd; cat");
    ck_assert_exit(r, 0);
    ck_assert_str_eq(r->out, "/\n");
}
END_TEST

START_TEST(test_run_timeout)
{
    result_t *r = TQ("run", "--timeout", "0.5", "--attempts", "1", "sleep", "30");
    ck_assert_exit(r, 124);
    ck_assert_ptr_nonnull(strstr(r->err, "ran past its --timeout"));
    ck_assert_int_lt(r->ms, 10000);
}
END_TEST

/* The pid a command of the test wrote to cmd.pid (bounded wait). */
static pid_t wait_cmd_pid(void)
{
    char path[300], buf[64];
    path_of(path, sizeof path, "cmd", "pid");
    for (int64_t end = th_now_ms() + 10000; th_now_ms() < end;) {
        if (read_file(path, buf, sizeof buf) > 0 && strchr(buf, '\n'))
            return (pid_t)atol(buf);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("the command did not start");
    return -1;
}

static bool gone(pid_t pid, int timeout_ms)
{
    for (int64_t end = th_now_ms() + timeout_ms; th_now_ms() < end;) {
        if (kill(pid, 0) != 0)
            return true;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

START_TEST(test_run_sigint_cancels)
{
    const char *const args[] = {
        "run", "--", "sh", "-c", "echo $$ > \"$TASKQ_TEST_DIR/cmd.pid\"; exec sleep 60", NULL};
    int64_t t0 = th_now_ms();
    pid_t pid = tq_spawn("bg", NULL, args);
    pid_t cmd = wait_cmd_pid();
    ck_assert_int_eq(kill(pid, SIGINT), 0);
    tq_collect("bg", pid, 10000, t0, &res);
    ck_assert_exit(&res, 130);
    ck_assert_msg(strstr(res.err, "interrupted: job ") && strstr(res.err, " cancelled"), "%s",
                  res.err);
    /* The broker cancelled it, and the worker stopped the command. */
    ck_assert_msg(gone(cmd, 10000), "command %ld still runs", (long)cmd);
    wait_stat("running", 0);
    ck_assert_uint_eq(stat_of("queued"), 0);
    ck_assert_uint_eq(stat_of("cancelled"), 1);
}
END_TEST

/* ---- call ------------------------------------------------------------ */

/* Call echo with text and check that the JSON printed equals it. */
static void round_trip(const char *text)
{
    result_t *r = TQ("call", "echo", text);
    ck_assert_exit(r, 0);
    json_error_t e;
    json_t *want = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    json_t *got = json_loads(r->out, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    ck_assert_msg(want && got, "not JSON: %s (%s)", r->out, e.text);
    ck_assert_msg(json_equal(want, got), "sent %s, got %s", text, r->out);
    ck_assert_msg(r->out_len > 0 && r->out[r->out_len - 1] == '\n' &&
                      !memchr(r->out, '\n', r->out_len - 1),
                  "not one line: %s", r->out);
    json_decref(want);
    json_decref(got);
}

START_TEST(test_call_round_trips_json)
{
    round_trip("{\"int\": 1, \"neg\": -5, \"big\": 9007199254740993,"
               " \"max\": 9223372036854775807, \"min\": -9223372036854775808,"
               " \"float\": 1.5, \"tenth\": 0.1, \"tiny\": -2.5e-300, \"two\": 2.0,"
               " \"str\": \"h\\u00e9llo \\u2603 \\u0000 end\", \"empty\": \"\","
               " \"arr\": [1, [2, [3, []]], \"x\", null], \"map\": {\"a\": {\"b\": {}}},"
               " \"nil\": null, \"yes\": true, \"no\": false,"
               " \"bin\": {\"$bin\": \"AAEC/w==\"}, \"ext\": {\"$ext\": [5, \"AQI=\"]}}");
    static const char *const scalars[] = {"7", "-1", "0.25", "\"s\"", "null", "true",
                                          "false", "[]", "{}", "{\"$bin\": \"\"}"};
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        round_trip(scalars[i]);

    /* Floats print short; the argument can come from standard input. */
    result_t *r = TQ_IN("[0.1, 0.25, 3.0]", "call", "echo", "-");
    ck_assert_exit(r, 0);
    ck_assert_str_eq(r->out, "[0.1, 0.25, 3.0]\n");
    r = TQ("call", "echo");
    ck_assert_exit(r, 0);
    ck_assert_str_eq(r->out, "null\n");
}
END_TEST

START_TEST(test_call_errors)
{
    result_t *r = TQ("call", "echo", "{\"a\": ");
    ck_assert_exit(r, 2);
    ck_assert_ptr_nonnull(strstr(r->err, "not JSON"));
    r = TQ("call", "echo", "{\"$bin\": \"not base64!\"}");
    ck_assert_exit(r, 2);

    /* 64 nested arrays pass; 65 exceed the protocol's limit. */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = '\0';
    round_trip(deep);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = '\0';
    r = TQ("call", "echo", deep);
    ck_assert_exit(r, 2);
    ck_assert_ptr_nonnull(strstr(r->err, "nested deeper than 64"));

    /* The function's error, and a run limit. */
    r = TQ("call", "exec", "{\"argv\": 5}");
    ck_assert_exit(r, 1);
    ck_assert_msg(strstr(r->err, "failed: exec: argv must be an array"), "%s", r->err);
    r = TQ("call", "--timeout", "0.3", "--attempts", "1", "exec", "{\"argv\": [\"sleep\", \"30\"]}");
    ck_assert_exit(r, 124);
    r = TQ("call", "--attempts", "0", "echo");
    ck_assert_exit(r, 2);
}
END_TEST

/* ---- status, wait, cancel ---------------------------------------------- */

static json_t *parse(const result_t *r)
{
    json_error_t e;
    json_t *v = json_loads(r->out, 0, &e);
    ck_assert_msg(v != NULL, "not JSON: %s (%s)", r->out, e.text);
    return v;
}

static json_int_t int_at(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_integer(v), "no integer %s", key);
    return json_integer_value(v);
}

START_TEST(test_status_counts)
{
    enum { N = 5 };
    for (int i = 0; i < N; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", i);
        ck_assert_exit(TQ("call", "echo", arg), 0);
    }
    result_t *r = TQ("status", "--json");
    ck_assert_exit(r, 0);
    json_t *doc = parse(r);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "broker")), broker.endpoint);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "version")), TASKQ_VERSION_STRING);
    ck_assert_int_ge(int_at(doc, "interval_ms"), 500);
    const json_t *tasks = json_object_get(doc, "tasks");
    ck_assert_int_eq(int_at(tasks, "done"), N);
    ck_assert_int_eq(int_at(tasks, "queued"), 0);
    ck_assert_int_eq(int_at(tasks, "running"), 0);
    ck_assert_int_eq(int_at(tasks, "failed"), 0);
    ck_assert(json_is_number(json_object_get(tasks, "rate")));
    const json_t *store = json_object_get(doc, "store");
    ck_assert_str_eq(json_string_value(json_object_get(store, "name")), "memory");
    ck_assert(json_is_true(json_object_get(store, "ok")));
    ck_assert_int_eq(int_at(store, "errors"), 0);

    const json_t *queues = json_object_get(doc, "queues");
    ck_assert_uint_eq(json_array_size(queues), 1);
    const json_t *q = json_array_get(queues, 0);
    ck_assert_str_eq(json_string_value(json_object_get(q, "name")), "default");
    ck_assert_int_eq(int_at(q, "done"), N);

    /* One taskq-worker of two processes is one row. */
    const json_t *workers = json_object_get(doc, "workers");
    ck_assert_uint_eq(json_array_size(workers), 1);
    const json_t *w = json_array_get(workers, 0);
    ck_assert_int_eq(int_at(w, "processes"), 2);
    ck_assert_int_eq(int_at(w, "done"), N);
    ck_assert_int_eq(int_at(w, "busy"), 0);
    json_decref(doc);

    /* One sample: no rate. */
    r = TQ("status", "--json", "--interval", "0");
    ck_assert_exit(r, 0);
    doc = parse(r);
    ck_assert(json_is_null(json_object_get(doc, "interval_ms")));
    ck_assert(json_is_null(json_object_get(json_object_get(doc, "tasks"), "rate")));
    json_decref(doc);

    /* The tables. */
    r = TQ("status");
    ck_assert_exit(r, 0);
    ck_assert_msg(strstr(r->out, "QUEUE    QUEUED  RUNNING  DONE  FAILED  RETRIED  RATE/S\n"
                                 "default       0        0     5       0        0"),
                  "%s", r->out);
    ck_assert_msg(strstr(r->out, "WORKER") && strstr(r->out, "PROCS"), "%s", r->out);
    ck_assert_msg(strstr(r->out, "store: memory, 0.0 MiB on disk, ok\n"), "%s", r->out);

    r = TQ("ping");
    ck_assert_exit(r, 0);
    ck_assert_msg(strncmp(r->out, "taskqd " TASKQ_VERSION_STRING " at ", 13) == 0 &&
                      strstr(r->out, " ms\n"),
                  "%s", r->out);
}
END_TEST

/* Lines in the file of tq_spawn(tag), read into res.out. */
static unsigned lines_of(const char *tag)
{
    char path[300];
    path_of(path, sizeof path, tag, "out");
    res.out_len = read_file(path, res.out, sizeof res.out);
    unsigned n = 0;
    for (size_t i = 0; i < res.out_len; i++)
        n += res.out[i] == '\n';
    return n;
}

START_TEST(test_status_watch)
{
    /* Not on a terminal, with --json: one document per refresh, with
     * rates from the second on, until Ctrl-C. */
    const char *const args[] = {"status", "--watch", "--json", "--interval", "0.2", NULL};
    int64_t t0 = th_now_ms();
    pid_t pid = tq_spawn("bg", NULL, args);
    for (int64_t end = th_now_ms() + 10000; lines_of("bg") < 3 && th_now_ms() < end;) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(kill(pid, SIGINT), 0);
    tq_collect("bg", pid, 10000, t0, &res);
    ck_assert_exit(&res, 0);
    unsigned n = 0;
    for (char *line = res.out; *line; line = strchr(line, '\n') + 1, n++) {
        json_error_t e;
        json_t *doc = json_loads(line, JSON_DISABLE_EOF_CHECK, &e);
        ck_assert_msg(doc != NULL, "not JSON: %s", line);
        const json_t *rate = json_object_get(json_object_get(doc, "tasks"), "rate");
        ck_assert(n == 0 ? json_is_null(rate) : json_is_number(rate));
        json_decref(doc);
    }
    ck_assert_uint_ge(n, 3);

    /* On a terminal of 40 columns: the alternate screen, frames drawn from
     * the top left, every line cut to the width, the screen given back. */
    char cmd[1024], typescript[300], log[256];
    snprintf(cmd, sizeof cmd,
             "stty cols 40 rows 20; timeout -s INT 1 %s --broker %s status --watch -n 0.2",
             TASKQ_PATH, broker.endpoint);
    path_of(typescript, sizeof typescript, "bg", "out");
    const char *const script[] = {"-q", "-e", "-c", cmd, typescript, NULL};
    th_run("/usr/bin/script", script, 20000, log, sizeof log);
    res.out_len = read_file(typescript, res.out, sizeof res.out);
    const char *frame = strstr(res.out, "\033[?1049h\033[?25l\033[H");
    ck_assert_msg(frame && strstr(frame, "WORKER") && strstr(frame, "\033[J"), "%s", res.out);
    ck_assert_ptr_nonnull(strstr(frame, "\033[?25h\033[?1049l"));
    for (const char *p = strstr(frame, "\033[H") + 3; *p && strncmp(p, "\033[J", 3) != 0;) {
        const char *eol = strstr(p, "\033[K");
        ck_assert_ptr_nonnull(eol);
        size_t cols = 0;
        for (const char *q = p; q < eol; q++)
            cols += ((unsigned char)*q & 0xc0) != 0x80;
        ck_assert_msg(cols <= 40, "a line of %zu columns: %.*s", cols, (int)(eol - p), p);
        p = eol + 3;
        p += strspn(p, "\r\n");
    }
}
END_TEST

/* call --detach: the job id it prints. */
static uint64_t detach(const char *fn, const char *arg)
{
    result_t *r = TQ("call", "--detach", fn, arg);
    ck_assert_exit(r, 0);
    char *end;
    uint64_t id = strtoull(r->out, &end, 10);
    ck_assert_msg(id > 0 && strcmp(end, "\n") == 0, "%s", r->out);
    return id;
}

/* Check that the outcome line s is of job id in state (and NUL-terminated). */
static json_t *outcome(const char *s, uint64_t id, const char *state)
{
    json_error_t e;
    json_t *v = json_loads(s, JSON_DISABLE_EOF_CHECK, &e);
    ck_assert_msg(v != NULL, "not JSON: %s", s);
    ck_assert_int_eq(int_at(v, "job"), (json_int_t)id);
    ck_assert_str_eq(json_string_value(json_object_get(v, "state")), state);
    return v;
}

START_TEST(test_wait_and_cancel_by_id)
{
    static const char sleeper[] = "{\"argv\": [\"sleep\", \"60\"]}";
    char id_text[32];

    /* A job that is done, waited for from another process. */
    uint64_t id = detach("echo", "{\"n\": 42}");
    snprintf(id_text, sizeof id_text, "%llu", (unsigned long long)id);
    result_t *r = TQ("wait", id_text);
    ck_assert_exit(r, 0);
    json_t *v = outcome(r->out, id, "done");
    ck_assert_int_eq(int_at(json_object_get(v, "result"), "n"), 42);
    ck_assert_int_eq(int_at(v, "attempts"), 1);
    json_decref(v);

    /* A running job: one process waits for it while another cancels it. */
    id = detach("exec", sleeper);
    snprintf(id_text, sizeof id_text, "%llu", (unsigned long long)id);
    wait_stat("running", 1);
    int64_t t0 = th_now_ms();
    const char *const wait_args[] = {"wait", id_text, NULL};
    pid_t waiter = tq_spawn("bg", NULL, wait_args);
    r = TQ("cancel", id_text);
    ck_assert_exit(r, 0);
    json_decref(outcome(r->out, id, "cancelled"));
    tq_collect("bg", waiter, 10000, t0, &res);
    ck_assert_exit(&res, 1);
    json_decref(outcome(res.out, id, "cancelled"));
    wait_stat("running", 0);

    /* Cancel, then wait: the cancel leaves the outcome to be collected;
     * once collected, the job is unknown. */
    id = detach("exec", sleeper);
    snprintf(id_text, sizeof id_text, "%llu", (unsigned long long)id);
    ck_assert_exit(TQ("cancel", id_text), 0);
    r = TQ("wait", id_text);
    ck_assert_exit(r, 1);
    json_decref(outcome(r->out, id, "cancelled"));
    r = TQ("wait", id_text);
    ck_assert_exit(r, 1);
    json_decref(outcome(r->out, id, "unknown"));
    r = TQ("cancel", "999999");
    ck_assert_exit(r, 1);
    json_decref(outcome(r->out, 999999, "unknown"));

    /* wait --timeout gives up on a job that goes on. */
    id = detach("exec", sleeper);
    snprintf(id_text, sizeof id_text, "%llu", (unsigned long long)id);
    r = TQ("wait", "--timeout", "0.3", id_text);
    ck_assert_exit(r, 124);
    json_decref(outcome(r->out, id, "pending"));
    ck_assert_int_lt(r->ms, 10000);
    ck_assert_exit(TQ("cancel", id_text), 0);
    wait_stat("running", 0);
    ck_assert_uint_eq(stat_of("queued"), 0);

    ck_assert_exit(TQ("wait", "12x"), 2);
    ck_assert_exit(TQ("cancel"), 2);
}
END_TEST

/* ---- failed and retry -------------------------------------------------- */

/* The JSON line of job id in the output of `taskq failed --json`, or NULL
 * (caller releases it); *ret_lines gets the number of lines. */
static json_t *failed_line(const char *out, uint64_t id, size_t *ret_lines)
{
    json_t *found = NULL;
    size_t lines = 0;
    for (const char *p = out; *p; lines++) {
        json_error_t e;
        json_t *v = json_loads(p, JSON_DISABLE_EOF_CHECK, &e);
        ck_assert_msg(v != NULL, "not JSON: %s", p);
        if (!found && int_at(v, "job") == (json_int_t)id)
            found = json_incref(v);
        json_decref(v);
        const char *eol = strchr(p, '\n');
        ck_assert_ptr_nonnull(eol);
        p = eol + 1;
    }
    *ret_lines = lines;
    return found;
}

static const char *str_at(const json_t *obj, const char *key)
{
    const char *v = json_string_value(json_object_get(obj, key));
    ck_assert_msg(v != NULL, "no string %s", key);
    return v;
}

/* Check history entry i of a failed job's JSON: its attempt, the test
 * worker that ran it, sane times, and its cause. */
static void check_entry(const json_t *job, size_t i, json_int_t attempt, const char *cause)
{
    const json_t *e = json_array_get(json_object_get(job, "history"), i);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(int_at(e, "attempt"), attempt);
    ck_assert_str_eq(str_at(e, "worker"), "tw1");
    ck_assert_str_ne(str_at(e, "host"), "");
    ck_assert_int_gt(int_at(e, "pid"), 0);
    ck_assert_int_gt(int_at(e, "started_ms"), 0);
    ck_assert_int_ge(int_at(e, "ended_ms"), int_at(e, "started_ms"));
    ck_assert_str_eq(str_at(e, "cause"), cause);
}

START_TEST(test_failed_and_retry)
{
    char fail_id[32], flaky_id[32], want[128];
    size_t lines;

    ck_assert_exit(TQ("failed"), 0);
    ck_assert_str_eq(res.out, "No failed jobs.\n");
    /* A handler error ends a job at once; flaky asks for another attempt
     * every time, so it fails on its last. */
    uint64_t fail = detach("fail", "5");
    result_t *r = TQ("call", "--detach", "--attempts", "2", "flaky", "10");
    ck_assert_exit(r, 0);
    uint64_t flaky = strtoull(r->out, NULL, 10);
    snprintf(fail_id, sizeof fail_id, "%llu", (unsigned long long)fail);
    snprintf(flaky_id, sizeof flaky_id, "%llu", (unsigned long long)flaky);
    wait_stat("failed", 2);

    int64_t now_ms = (int64_t)time(NULL) * 1000;
    r = TQ("failed", "--json");
    ck_assert_exit(r, 0);
    json_t *v = failed_line(r->out, fail, &lines);
    ck_assert_uint_eq(lines, 2);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(str_at(v, "state"), "failed");
    ck_assert_str_eq(str_at(v, "function"), "fail");
    ck_assert_str_eq(str_at(v, "queue"), "default");
    ck_assert_str_eq(str_at(v, "error"), "failed on purpose (5)");
    ck_assert_int_eq(int_at(v, "attempts"), 1);
    ck_assert_int_lt(llabs(int_at(v, "finished_ms") - now_ms), 60000);
    ck_assert_uint_eq(json_array_size(json_object_get(v, "history")), 1);
    check_entry(v, 0, 1, "failed on purpose (5)");
    json_decref(v);
    v = failed_line(r->out, flaky, &lines);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(str_at(v, "error"), "transient failure on attempt 2");
    ck_assert_int_eq(int_at(v, "attempts"), 2);
    ck_assert_uint_eq(json_array_size(json_object_get(v, "history")), 2);
    check_entry(v, 0, 1, "transient failure on attempt 1");
    check_entry(v, 1, 2, "transient failure on attempt 2");
    json_decref(v);

    /* --limit: the oldest first. */
    r = TQ("failed", "--json", "--limit", "1");
    ck_assert_exit(r, 0);
    v = failed_line(r->out, fail < flaky ? fail : flaky, &lines);
    ck_assert_uint_eq(lines, 1);
    ck_assert_ptr_nonnull(v);
    json_decref(v);

    /* The table: a row per job, a line per attempt under it. */
    r = TQ("failed");
    ck_assert_exit(r, 0);
    ck_assert_msg(strstr(r->out, "JOB  STATE   FUNCTION  QUEUE    ATTEMPTS  FINISHED "), "%s",
                  r->out);
    snprintf(want, sizeof want, "%s  failed  fail ", fail_id);
    ck_assert_msg(strstr(r->out, want), "no row \"%s\" in:\n%s", want, r->out);
    ck_assert_msg(strstr(r->out, "  failed on purpose (5)\n      attempt 1: tw1@"), "%s", r->out);
    ck_assert_msg(strstr(r->out, ", transient failure on attempt 2\n"), "%s", r->out);

    /* retry --wait runs it again: it fails again, and its history grows. */
    r = TQ("retry", "--wait", fail_id);
    ck_assert_exit(r, 1);
    json_decref(outcome(r->out, fail, "failed"));
    snprintf(want, sizeof want, "job %s queued again\n", fail_id);
    ck_assert_str_eq(r->err, want);
    r = TQ("failed", "--json");
    ck_assert_exit(r, 0);
    v = failed_line(r->out, fail, &lines);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(json_array_size(json_object_get(v, "history")), 2);
    check_entry(v, 0, 1, "failed on purpose (5)");
    check_entry(v, 1, 1, "failed on purpose (5)");
    json_decref(v);

    /* Without --wait it only says so; a second retry of a job that runs
     * again is refused, as is one of an unknown job. */
    r = TQ("retry", flaky_id);
    ck_assert_exit(r, 0);
    snprintf(want, sizeof want, "job %s queued again\n", flaky_id);
    ck_assert_str_eq(r->out, want);
    r = TQ("retry", "999999");
    ck_assert_exit(r, 1);
    ck_assert_str_eq(r->err, "taskq: job 999999: the broker keeps no failed job with this id "
                             "(taskq failed)\n");

    /* Collecting the outcomes takes the jobs off the list. */
    wait_stat("failed", 4);
    ck_assert_exit(TQ("wait", fail_id, flaky_id), 1);
    ck_assert_exit(TQ("failed"), 0);
    ck_assert_str_eq(res.out, "No failed jobs.\n");
    r = TQ("retry", "--wait", "--timeout", "5", fail_id);
    ck_assert_exit(r, 1);
    ck_assert_str_eq(r->out, "");

    ck_assert_exit(TQ("retry"), 2);
    ck_assert_exit(TQ("retry", "--timeout", "1", fail_id), 2);
    ck_assert_exit(TQ("failed", "--limit", "0"), 2);
    ck_assert_exit(TQ("failed", "extra"), 2);
}
END_TEST

/* ---- no broker, usage ------------------------------------------------ */

START_TEST(test_no_broker)
{
    th_broker_stop(&broker, SIGTERM);
    static const char *const cmds[][4] = {
        {"ping"},       {"status"},      {"run", "true"}, {"call", "echo"},
        {"wait", "1"},  {"cancel", "1"}, {"failed"},      {"retry", "1"},
    };
    char want[300];
    snprintf(want, sizeof want,
             "taskq: no answer from %s within 1 s — is taskqd running? (if it uses CURVE: "
             "--curve-server-key and --curve-key)\n",
             broker.endpoint);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        result_t *r = TQ("--connect-timeout", "1", cmds[i][0], cmds[i][1]);
        ck_assert_exit(r, 125);
        ck_assert_str_eq(r->err, want);
        ck_assert_msg(r->ms >= 1000 && r->ms < 4000, "%s took %lld ms", cmds[i][0],
                      (long long)r->ms);
    }
}
END_TEST

START_TEST(test_help_and_usage)
{
    static const char *const cmds[] = {"run",    "map",   "call",   "wait", "cancel",
                                       "failed", "retry", "status", "ping"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char usage[64];
        snprintf(usage, sizeof usage, "Usage: taskq %s", cmds[i]);
        result_t *r = TQ(cmds[i], "--help");
        ck_assert_exit(r, 0);
        ck_assert_msg(strncmp(r->out, usage, strlen(usage)) == 0, "%s", r->out);
        ck_assert_msg(strstr(r->out, "Exit status"), "%s --help: %s", cmds[i], r->out);
        r = TQ("help", cmds[i]);
        ck_assert_exit(r, 0);
        ck_assert_msg(strncmp(r->out, usage, strlen(usage)) == 0, "%s", r->out);
    }
    result_t *r = TQ("--help");
    ck_assert_exit(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "Exit status"));
    r = TQ("--version");
    ck_assert_exit(r, 0);
    ck_assert_str_eq(r->out, "taskq " TASKQ_VERSION_STRING " (libtaskq " TASKQ_VERSION_STRING ")\n");

    ck_assert_exit(TQ("frobnicate"), 2);
    r = TQ("status", "--bogus");
    ck_assert_exit(r, 2);
    ck_assert_str_eq(r->err, "taskq status: unknown option --bogus\nTry 'taskq status --help'.\n");
    ck_assert_exit(TQ("run"), 2);
    ck_assert_exit(TQ("call"), 2);
    ck_assert_exit(TQ("--connect-timeout", "x", "ping"), 2);
}
END_TEST

/* ---- JSON <-> msgpack, directly ------------------------------------------ */

/* msgpack built by fill, converted to JSON and printed compactly. */
static char *to_json_text(void (*fill)(msgpack_packer *))
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fill(&pk);
    json_t *v = NULL;
    ck_assert_int_eq(cli_msgpack_to_json(sb.data, sb.size, &v), 0);
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    msgpack_sbuffer_destroy(&sb);
    return text;
}

static void odd_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    msgpack_pack_int(pk, 1);
    msgpack_pack_str_with_body(pk, "one", 3);
    msgpack_pack_int(pk, -2);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_int(pk, 3);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 4);
    msgpack_pack_double(pk, 0.5);
    msgpack_pack_int(pk, 5);
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
    msgpack_pack_int(pk, 6);
    msgpack_pack_bin_with_body(pk, "\x01", 1);
    msgpack_pack_int(pk, 7);
}

static void odd_values(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 7);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_float(pk, 0.5f);
    msgpack_pack_double(pk, NAN);
    msgpack_pack_double(pk, -INFINITY);
    msgpack_pack_str_with_body(pk, "\xff\xfe", 2); /* not UTF-8 */
    msgpack_pack_ext_with_body(pk, "\x00\x01\x02", 3, -3);
    msgpack_pack_str_with_body(pk, "a\0b", 3);
}

static void too_deep(msgpack_packer *pk)
{
    for (int i = 0; i < 65; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}

START_TEST(test_json_conversions)
{
    char *text = to_json_text(odd_keys);
    ck_assert_str_eq(text, "{\"1\":\"one\",\"-2\":null,\"true\":3,\"null\":4,\"0.5\":5,"
                           "\"[1,2]\":6,\"{\\\"$bin\\\":\\\"AQ==\\\"}\":7}");
    free(text);
    text = to_json_text(odd_values);
    ck_assert_str_eq(text, "[1.8446744073709552e19,0.5,\"NaN\",\"-Infinity\",{\"$bin\":\"//4=\"},"
                           "{\"$ext\":[-3,\"AAEC\"]},\"a\\u0000b\"]");
    free(text);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    too_deep(&pk);
    json_t *v = NULL;
    ck_assert_int_eq(cli_msgpack_to_json(sb.data, sb.size, &v), TASKQ_EPROTO);
    ck_assert_int_eq(cli_msgpack_to_json(sb.data, sb.size - 1, &v), TASKQ_EPROTO);
    msgpack_sbuffer_destroy(&sb);

    /* base64 of every length up to 7 bytes, both ways. */
    for (size_t n = 0; n <= 7; n++) {
        static const uint8_t bytes[] = {0xfb, 0xff, 0x00, 0x10, 0x83, 0x7e, 0x40};
        msgpack_sbuffer_init(&sb);
        msgpack_pack_bin_with_body(&pk, bytes, n);
        ck_assert_int_eq(cli_msgpack_to_json(sb.data, sb.size, &v), 0);
        char *json = json_dumps(v, JSON_ENCODE_ANY);
        void *back;
        size_t len;
        char err[128];
        ck_assert_int_eq(cli_json_to_msgpack(json, strlen(json), &back, &len, err, sizeof err), 0);
        ck_assert_uint_eq(len, sb.size);
        ck_assert_int_eq(memcmp(back, sb.data, len), 0);
        free(back);
        free(json);
        json_decref(v);
        msgpack_sbuffer_destroy(&sb);
    }

    void *out;
    size_t len;
    char err[128];
    static const char *const bad[] = {"{\"$bin\": 5}", "{\"$bin\": \"A\"}",
                                      "{\"$ext\": [300, \"\"]}", "{\"$ext\": 1}", "[1,",
                                      "{\"a\": 1, \"a\": 2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(cli_json_to_msgpack(bad[i], strlen(bad[i]), &out, &len, err, sizeof err),
                         TASKQ_EINVAL);
        ck_assert_msg(err[0], "no message for %s", bad[i]);
    }
    /* A map that merely holds a "$bin" key among others stays a map. */
    static const char two[] = "{\"$bin\": \"AA==\", \"x\": 1}";
    ck_assert_int_eq(cli_json_to_msgpack(two, strlen(two), &out, &len, err, sizeof err), 0);
    ck_assert_int_eq(((uint8_t *)out)[0], 0x82);
    free(out);
}
END_TEST


/* A broker on a database, with one test_worker named tw1. */
static void setup_durable(void)
{
    static char db[300];
    static const char *args[] = {"--db", db, NULL};
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    snprintf(db, sizeof db, "%s/taskq.db", broker.dir);
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);
    setenv("TASKQ_TEST_DIR", broker.dir, 1);
    ck_assert_int_eq(taskq_client_new(broker.endpoint, NULL, &client), 0);
    const char *const wargs[] = {"--name", "tw1", NULL};
    ck_assert_int_gt(th_worker_start(broker.endpoint, wargs), 0);
    ck_assert_int_eq(th_wait_workers(client, 1, 20000), 0);
}

/* Outcomes nobody collected, and failed jobs with their history, outlive
 * a crash of the broker: `taskq wait` and `taskq failed` find them after
 * the restart. */
START_TEST(test_outcomes_survive_restart)
{
    char done_id[32];
    uint64_t done = detach("echo", "{\"n\": 7}");
    uint64_t fail = detach("fail", "3");
    snprintf(done_id, sizeof done_id, "%llu", (unsigned long long)done);
    wait_stat("done", 1);
    wait_stat("failed", 1);
    ck_assert_int_eq(th_broker_stop(&broker, SIGKILL) != -1, 1);
    ck_assert_int_eq(th_broker_restart(&broker), 0);

    size_t lines;
    result_t *r = TQ("failed", "--json");
    ck_assert_exit(r, 0);
    json_t *v = failed_line(r->out, fail, &lines);
    ck_assert_uint_eq(lines, 1);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(str_at(v, "error"), "failed on purpose (3)");
    check_entry(v, 0, 1, "failed on purpose (3)");
    json_decref(v);

    r = TQ("wait", done_id);
    ck_assert_exit(r, 0);
    v = outcome(r->out, done, "done");
    ck_assert_int_eq(int_at(json_object_get(v, "result"), "n"), 7);
    json_decref(v);
    /* Collected: gone, also for the next process that asks. */
    r = TQ("wait", done_id);
    ck_assert_exit(r, 1);
    json_decref(outcome(r->out, done, "unknown"));
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"run_bytes", test_run_relays_bytes, 60, setup_pool, teardown},
        {"run_status", test_run_exit_status, 60, setup_pool, teardown},
        {"run_options", test_run_env_stdin_cwd, 60, setup_pool, teardown},
        {"run_timeout", test_run_timeout, 60, setup_pool, teardown},
        {"run_sigint", test_run_sigint_cancels, 60, setup_pool, teardown},
        {"call_json", test_call_round_trips_json, 120, setup_pool, teardown},
        {"call_errors", test_call_errors, 60, setup_pool, teardown},
        {"status", test_status_counts, 60, setup_pool, teardown},
        {"status_watch", test_status_watch, 60, setup_pool, teardown},
        {"wait_cancel", test_wait_and_cancel_by_id, 90, setup_pool, teardown},
        {"failed_retry", test_failed_and_retry, 120, setup_test_worker, teardown},
        {"restart", test_outcomes_survive_restart, 120, setup_durable, teardown},
        {"no_broker", test_no_broker, 60, setup_broker, teardown},
        {"help", test_help_and_usage, 60, setup_broker, teardown},
        {"json", test_json_conversions, 30, NULL, NULL},
    };
    return th_run_suite("cli", cases, sizeof cases / sizeof cases[0]);
}
