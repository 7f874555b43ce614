/*
 * check_exec.c - unit tests of the built-in function `exec`
 * (worker/exec.c): commands run through taskq_worker_call() on a worker
 * that is never connected, checking the result map, the command's
 * environment, descriptors and signals, output caps, and refusals.
 */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"
#include "taskq.h"

/* ---- Fixture: a worker with `exec`, and the last call's outcome -------- */

static taskq_worker_t *w;
static tw_exec_config_t cfg;

typedef struct outcome {
    int code;           /* what taskq_worker_call returned */
    char *data;         /* result object or error text */
    size_t len;
    msgpack_unpacked u; /* the result, when code is 0 */
} outcome_t;

static outcome_t o;

static void setup(void)
{
    cfg = (tw_exec_config_t){0};
    ck_assert_int_eq(taskq_worker_new(NULL, NULL, &w), 0);
    ck_assert_int_eq(taskq_worker_register(w, "exec", tw_exec_handler, &cfg), 0);
    memset(&o, 0, sizeof o);
    msgpack_unpacked_init(&o.u);
}

static void teardown(void)
{
    msgpack_unpacked_destroy(&o.u);
    free(o.data);
    taskq_worker_destroy(&w);
}

/* Run exec with the argument in sb as job 42, attempt 2, and keep the
 * outcome in o (a result is unpacked and must be a 9-key map). */
static void call_sb(msgpack_sbuffer *sb)
{
    free(o.data);
    o.data = NULL;
    void *out;
    o.code = taskq_worker_call(w, "exec", 42, 2, 12345678901234ULL, sb->data, sb->size, &out,
                               &o.len);
    msgpack_sbuffer_destroy(sb);
    ck_assert_msg(o.code == 0 || o.code == TASKQ_EFAILED || o.code == TASKQ_ERETRY,
                  "taskq_worker_call: %s", taskq_errname(o.code));
    o.data = out;
    if (o.code == 0) {
        ck_assert_int_eq(msgpack_unpack_next(&o.u, o.data, o.len, NULL), MSGPACK_UNPACK_SUCCESS);
        ck_assert_int_eq(o.u.data.type, MSGPACK_OBJECT_MAP);
        ck_assert_uint_eq(o.u.data.via.map.size, 9);
    }
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/*
 * Run exec on a command: argv NULL-terminated; stdin in (in_len bytes)
 * unless in is NULL; env a NULL-terminated list of name, value, ... or
 * NULL; cwd or NULL.
 */
static void run_cmd(const char *const *argv, const char *in, size_t in_len,
                    const char *const *env, const char *cwd)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (in != NULL) + (env != NULL) + (cwd != NULL));
    size_t argc = 0;
    while (argv[argc])
        argc++;
    pack_cstr(&pk, "argv");
    msgpack_pack_array(&pk, argc);
    for (size_t i = 0; i < argc; i++)
        pack_cstr(&pk, argv[i]);
    if (in) {
        pack_cstr(&pk, "stdin");
        msgpack_pack_bin_with_body(&pk, in, in_len);
    }
    if (env) {
        size_t n = 0;
        while (env[2 * n])
            n++;
        pack_cstr(&pk, "env");
        msgpack_pack_map(&pk, n);
        for (size_t i = 0; i < 2 * n; i++)
            pack_cstr(&pk, env[i]);
    }
    if (cwd) {
        pack_cstr(&pk, "cwd");
        pack_cstr(&pk, cwd);
    }
    call_sb(&sb);
}

/* Run `sh -c script`. */
static void run_sh(const char *script)
{
    const char *argv[] = {"sh", "-c", script, NULL};
    run_cmd(argv, NULL, 0, NULL, NULL);
}

/* The result's value for key; fails the test if the call did not give a
 * result or the key is missing. */
static const msgpack_object *field(const char *key)
{
    ck_assert_msg(o.code == 0, "no result: %s: %s", taskq_errname(o.code), o.data);
    const msgpack_object_map *m = &o.u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++)
        if (m->ptr[i].key.type == MSGPACK_OBJECT_STR &&
            m->ptr[i].key.via.str.size == strlen(key) &&
            memcmp(m->ptr[i].key.via.str.ptr, key, strlen(key)) == 0)
            return &m->ptr[i].val;
    ck_abort_msg("no %s in the result", key);
    return NULL;
}

static int64_t int_field(const char *key)
{
    const msgpack_object *v = field(key);
    ck_assert_msg(v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                  v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER, "%s is not an int", key);
    return v->via.i64;
}

static bool bool_field(const char *key)
{
    const msgpack_object *v = field(key);
    ck_assert_msg(v->type == MSGPACK_OBJECT_BOOLEAN, "%s is not a bool", key);
    return v->via.boolean;
}

/* A bin field; its length in *len. */
static const char *bin_field(const char *key, size_t *len)
{
    const msgpack_object *v = field(key);
    ck_assert_msg(v->type == MSGPACK_OBJECT_BIN, "%s is not bin", key);
    *len = v->via.bin.size;
    return v->via.bin.ptr;
}

/* Assert that a bin field holds exactly the text want. */
static void ck_bin_text(const char *key, const char *want)
{
    size_t len;
    const char *got = bin_field(key, &len);
    ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0, "%s is \"%.*s\", not \"%s\"",
                  key, (int)len, got, want);
}

/* Assert that the call failed (code) with a text containing want. */
static void ck_error(int code, const char *want)
{
    ck_assert_msg(o.code == code, "got %s, want %s", taskq_errname(o.code), taskq_errname(code));
    ck_assert_msg(strstr(o.data, want) != NULL, "error \"%s\" lacks \"%s\"", o.data, want);
}

/* ---- Results ----------------------------------------------------------- */

START_TEST(exit_codes)
{
    run_sh("exit 0");
    ck_assert_int_eq(int_field("exit"), 0);
    ck_assert_int_eq(int_field("signal"), 0);
    ck_assert(!bool_field("truncated"));
    ck_bin_text("stdout", "");
    ck_bin_text("stderr", "");
    ck_assert_int_ge(int_field("wall_ms"), 0);
    ck_assert_int_ge(int_field("user_ms"), 0);
    ck_assert_int_ge(int_field("sys_ms"), 0);
    ck_assert_int_gt(int_field("maxrss_kb"), 0);

    run_sh("echo out; echo err >&2; exit 3");
    ck_assert_int_eq(int_field("exit"), 3);
    ck_assert_int_eq(int_field("signal"), 0);
    ck_bin_text("stdout", "out\n");
    ck_bin_text("stderr", "err\n");
}
END_TEST

START_TEST(killed_by_signal)
{
    run_sh("kill -9 $$");
    ck_assert_int_eq(int_field("exit"), -1);
    ck_assert_int_eq(int_field("signal"), SIGKILL);
}
END_TEST

START_TEST(wall_time)
{
    const char *argv[] = {"sleep", "0.2", NULL};
    run_cmd(argv, NULL, 0, NULL, NULL);
    ck_assert_int_eq(int_field("exit"), 0);
    ck_assert_int_ge(int_field("wall_ms"), 200);
}
END_TEST

START_TEST(stdin_to_stdout)
{
    static const char in[] = "binary\0input\n";
    const char *argv[] = {"cat", NULL};
    run_cmd(argv, in, sizeof in - 1, NULL, NULL);
    size_t len;
    const char *out = bin_field("stdout", &len);
    ck_assert_uint_eq(len, sizeof in - 1);
    ck_assert(memcmp(out, in, len) == 0);

    /* stdin may be a str too; without stdin the command reads EOF. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_cstr(&pk, "argv");
    msgpack_pack_array(&pk, 1);
    pack_cstr(&pk, "cat");
    pack_cstr(&pk, "stdin");
    pack_cstr(&pk, "text");
    call_sb(&sb);
    ck_bin_text("stdout", "text");
    run_cmd(argv, NULL, 0, NULL, NULL);
    ck_bin_text("stdout", "");
    ck_assert_int_eq(int_field("exit"), 0);
}
END_TEST

/* A command that never reads a large stdin neither blocks the call nor
 * kills this process with SIGPIPE, and leaves no SIGPIPE pending. */
START_TEST(stdin_not_read)
{
    size_t len = 4 << 20;
    char *in = calloc(1, len);
    ck_assert_ptr_nonnull(in);
    const char *argv[] = {"true", NULL};
    run_cmd(argv, in, len, NULL, NULL);
    free(in);
    ck_assert_int_eq(int_field("exit"), 0);
    sigset_t pending, mask;
    sigpending(&pending);
    ck_assert(!sigismember(&pending, SIGPIPE));
    sigprocmask(SIG_SETMASK, NULL, &mask);
    ck_assert(!sigismember(&mask, SIGPIPE));
}
END_TEST

/* ---- Environment, directory, descriptors, signals ---------------------- */

START_TEST(env_and_cwd)
{
    char dir[] = "/tmp/check_exec.XXXXXX", real[PATH_MAX], want[PATH_MAX + 16];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_nonnull(realpath(dir, real));
    const char *argv[] = {"sh", "-c", "echo \"$FOO\"; pwd -P", NULL};
    const char *env[] = {"FOO", "bar baz", NULL};
    run_cmd(argv, NULL, 0, env, dir);
    rmdir(dir);
    snprintf(want, sizeof want, "bar baz\n%s\n", real);
    ck_bin_text("stdout", want);
}
END_TEST

START_TEST(taskq_variables)
{
    /* The caller's own values do not reach the command, but its other
     * variables do. */
    setenv("OMP_NUM_THREADS", "8", 1);
    setenv("CHECK_EXEC_INHERITED", "yes", 1);
    run_sh("echo $TASKQ_JOB_ID $TASKQ_ATTEMPT $TASKQ_SEED $OMP_NUM_THREADS "
           "$OPENBLAS_NUM_THREADS $MKL_NUM_THREADS $CHECK_EXEC_INHERITED");
    ck_bin_text("stdout", "42 2 12345678901234 1 1 1 yes\n");
    /* Each name appears once. */
    run_sh("env | grep -c '^OMP_NUM_THREADS='");
    ck_bin_text("stdout", "1\n");
}
END_TEST

START_TEST(env_overrides)
{
    const char *argv[] = {"sh", "-c", "echo $OMP_NUM_THREADS $MKL_NUM_THREADS $TASKQ_SEED", NULL};
    const char *env[] = {"OMP_NUM_THREADS", "4", "TASKQ_SEED", "7", NULL};
    run_cmd(argv, NULL, 0, env, NULL);
    ck_bin_text("stdout", "4 1 7\n");
}
END_TEST

/* argv[0] is looked up in the command's own PATH. */
START_TEST(path_from_env)
{
    const char *argv[] = {"sh", "-c", "true", NULL};
    const char *env[] = {"PATH", "/nonexistent", NULL};
    run_cmd(argv, NULL, 0, env, NULL);
    ck_error(TASKQ_EFAILED, "exec: cannot run \"sh\": No such file or directory");
}
END_TEST

/* The command has 0, 1 and 2 only, whatever this process has open (the
 * executor keeps its pipes on 3 and 4; Check has its own); ls adds one
 * for the directory it reads. */
START_TEST(no_descriptor_leaked)
{
    int fd = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_ge(dup(fd), 0);
    ck_assert_int_eq(dup2(fd, 200), 200);
    const char *argv[] = {"ls", "/proc/self/fd", NULL};
    run_cmd(argv, NULL, 0, NULL, NULL);
    ck_bin_text("stdout", "0\n1\n2\n3\n");
}
END_TEST

/* Signals this process ignores or blocks are back to their defaults in
 * the command, and it stays in this process group. */
START_TEST(signals_and_group)
{
    signal(SIGINT, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    run_sh("kill -INT $$; exit 7");
    ck_assert_int_eq(int_field("signal"), SIGINT);
    run_sh("kill -TERM $$; exit 7");
    ck_assert_int_eq(int_field("signal"), SIGTERM);

    char want[32];
    snprintf(want, sizeof want, "%d\n", (int)getpgrp());
    run_sh("cut -d' ' -f5 /proc/$$/stat");
    ck_bin_text("stdout", want);
}
END_TEST

/* ---- Output ------------------------------------------------------------ */

START_TEST(output_capped)
{
    cfg.max_output = 1000;
    run_sh("head -c 100000 /dev/zero; echo short >&2");
    ck_assert_int_eq(int_field("exit"), 0);
    size_t len;
    bin_field("stdout", &len);
    ck_assert_uint_eq(len, 1000);
    ck_bin_text("stderr", "short\n");
    ck_assert(bool_field("truncated"));

    /* Exactly the cap is not truncated. */
    run_sh("head -c 1000 /dev/zero");
    bin_field("stdout", &len);
    ck_assert_uint_eq(len, 1000);
    ck_assert(!bool_field("truncated"));

    run_sh("head -c 1001 /dev/zero >&2");
    bin_field("stderr", &len);
    ck_assert_uint_eq(len, 1000);
    ck_assert(bool_field("truncated"));
}
END_TEST

/* stderr fills first while stdin is still being written and stdout must
 * be drained: a loop that handled one stream at a time would deadlock. */
START_TEST(large_streams_at_once)
{
    size_t in_len = 3 << 20;
    char *in = malloc(in_len);
    ck_assert_ptr_nonnull(in);
    for (size_t i = 0; i < in_len; i++)
        in[i] = (char)(i * 7 + i / 65536);
    const char *argv[] = {"sh", "-c", "head -c 2000000 /dev/zero >&2; cat", NULL};
    run_cmd(argv, in, in_len, NULL, NULL);
    size_t len;
    const char *out = bin_field("stdout", &len);
    ck_assert_uint_eq(len, in_len);
    ck_assert(memcmp(out, in, in_len) == 0);
    free(in);
    bin_field("stderr", &len);
    ck_assert_uint_eq(len, 2000000);
    ck_assert(!bool_field("truncated"));
}
END_TEST

/* ---- Refusals ---------------------------------------------------------- */

START_TEST(command_not_started)
{
    const char *missing[] = {"/nonexistent/prog", "x", NULL};
    run_cmd(missing, NULL, 0, NULL, NULL);
    ck_error(TASKQ_EFAILED, "exec: cannot run \"/nonexistent/prog\": No such file or directory");

    const char *unknown[] = {"check-exec-no-such-command", NULL};
    run_cmd(unknown, NULL, 0, NULL, NULL);
    ck_error(TASKQ_EFAILED, "cannot run \"check-exec-no-such-command\": No such file");

    char path[] = "/tmp/check_exec.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    chmod(path, 0600);
    const char *not_exec[] = {path, NULL};
    run_cmd(not_exec, NULL, 0, NULL, NULL);
    unlink(path);
    ck_error(TASKQ_EFAILED, "Permission denied");
}
END_TEST

START_TEST(bad_cwd)
{
    const char *argv[] = {"true", NULL};
    run_cmd(argv, NULL, 0, NULL, "/nonexistent/dir");
    ck_error(TASKQ_EFAILED,
             "exec: cannot enter directory \"/nonexistent/dir\": No such file or directory");
}
END_TEST

/* A process that ignores SIGCHLD cannot learn how its command ended. */
START_TEST(sigchld_ignored)
{
    signal(SIGCHLD, SIG_IGN);
    run_sh("exit 3");
    ck_error(TASKQ_EFAILED, "exec: cannot reap \"sh\": No child processes");
}
END_TEST

/* Malformed arguments, as msgpack bytes, and the error each gets. */
static const struct {
    const char *arg; /* encoded argument */
    size_t len;
    const char *error; /* part of the error text */
} malformed[] = {
#define M(bytes, error) {bytes, sizeof bytes - 1, error}
    M("\x07", "the argument must be a map"),                                   /* 7 */
    M("\x80", "the argument has no argv"),                                     /* {} */
    M("\x81\xa4" "argv\x90", "argv must be an array of 1 to"),                 /* {argv: []} */
    M("\x81\xa4" "argv\xa2ls", "argv must be an array"),                       /* {argv: "ls"} */
    M("\x81\xa4" "argv\x92\xa2ls\x07", "argv[1] is not a str"),                /* [ls, 7] */
    M("\x81\xa4" "argv\x91\xa3l\0s", "argv[0] holds a NUL byte"),              /* ["l\0s"] */
    M("\x81\xa4" "argv\x91\xa0", "argv[0] is empty"),                          /* [""] */
    M("\x82\xa4" "argv\x91\xa2ls\xa5stdin\x07", "stdin must be bin or str"),   /* stdin: 7 */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x90", "env must be a map"),         /* env: [] */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x81\xa1" "A\x07",
      "env must map str names to str values"),                                 /* {A: 7} */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x81\xa3" "A=B\xa0",
      "env name \"A=B\" is empty or holds '='"),                               /* {"A=B": ""} */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x81\xa0\xa0", "env name \"\" is empty"),
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x81\xa1" "A\xa2x\0",
      "env value of \"A\" holds a NUL byte"),                                  /* {A: "x\0"} */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "env\x82\xa1" "A\xa0\xa1" "A\xa0",
      "env names \"A\" twice"),                                                /* {A:"", A:""} */
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "cwd\x07", "cwd must be a non-empty str"),
    M("\x82\xa4" "argv\x91\xa2ls\xa3" "cwd\xa0", "cwd must be a non-empty str"),
    M("\x82\xa4" "argv\x91\xa2ls\xa4" "argz\x90",
      "unknown key \"argz\" (known: argv, stdin, env, cwd)"),                  /* argz: [] */
    M("\x82\xa4" "argv\x91\xa2ls\x07\x90", "argument keys must be str"),       /* 7: [] */
    M("\x82\xa4" "argv\x91\xa2ls\xa4" "argv\x91\xa2ls", "key \"argv\" appears twice"),
#undef M
};

START_TEST(malformed_argument)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, malformed[_i].arg, malformed[_i].len);
    call_sb(&sb);
    ck_error(TASKQ_EFAILED, malformed[_i].error);
}
END_TEST

/* Byte values outside printable ASCII in a quoted key are shown as '?',
 * and a long key is cut. */
START_TEST(unknown_key_quoted)
{
    char key[300];
    memset(key, 'k', sizeof key);
    key[0] = '\n';
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, key, sizeof key);
    msgpack_pack_nil(&pk);
    call_sb(&sb);
    ck_error(TASKQ_EFAILED, "unknown key \"?kkk");
    ck_error(TASKQ_EFAILED, "kkk...\"");
    ck_assert_uint_lt(o.len, 250);
}
END_TEST

static Suite *exec_suite(void)
{
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("results");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, exit_codes);
    tcase_add_test(tc, killed_by_signal);
    tcase_add_test(tc, wall_time);
    tcase_add_test(tc, stdin_to_stdout);
    tcase_add_test(tc, stdin_not_read);
    suite_add_tcase(s, tc);

    tc = tcase_create("environment");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, env_and_cwd);
    tcase_add_test(tc, taskq_variables);
    tcase_add_test(tc, env_overrides);
    tcase_add_test(tc, path_from_env);
    tcase_add_test(tc, no_descriptor_leaked);
    tcase_add_test(tc, signals_and_group);
    suite_add_tcase(s, tc);

    tc = tcase_create("output");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, output_capped);
    tcase_add_test(tc, large_streams_at_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, command_not_started);
    tcase_add_test(tc, bad_cwd);
    tcase_add_test(tc, sigchld_ignored);
    tcase_add_loop_test(tc, malformed_argument, 0, sizeof malformed / sizeof malformed[0]);
    tcase_add_test(tc, unknown_key_quoted);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(exec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
