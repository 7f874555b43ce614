/*
 * check_config.c - the option driver (common/options.c) on a table with
 * every kind of option: config files that hold every kind of value,
 * sections, comments and repeated options; the command line over the
 * file (a list given there replaces the file's); files and command lines
 * that are wrong, each with its exact message; re-reading the log level.
 * Then the real programs: taskqd and taskq-worker --check-config on good
 * and bad files (exit 0 or 64, and what they say, without binding or
 * opening the store), and taskqd re-reading its log level on SIGHUP.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "keys.h"
#include "log.h"
#include "options.h"

/* ---- A table with every kind ---------------------------------------------- */

typedef struct tcfg {
    const char *str;     /* any string */
    const char *name;    /* 1 to 8 bytes */
    const char *item[3]; /* repeatable */
    size_t n_item;
    bool flag;
    uint32_t num;  /* 10 to 100 */
    uint64_t size; /* bytes */
    uint32_t mode;
    const char *level;
    int color; /* custom: red 1, blue 2 */
    bool hidden;
} tcfg_t;

static const char *parse_color(const tq_opt_t *o, const char *value, void *field)
{
    if (strcmp(value, "red") != 0 && strcmp(value, "blue") != 0)
        return "red or blue";
    *(int *)field = value[0] == 'r' ? 1 : 2;
    return NULL;
}

#define F(f) offsetof(tcfg_t, f)
#define CONFIG_ROW 10

static tq_opt_t opts[] = {
    {"str", 's', TQ_OPT_STR, "S", 0, 0, "dflt", F(str), 0, "any string"},
    {"name", 0, TQ_OPT_STR, "NAME", 0, 8, NULL, F(name), 0, "a name"},
    {"item", 'i', TQ_OPT_LIST, "ITEM", 3, 16, "none", F(item), F(n_item), "repeatable"},
    {"flag", 'f', TQ_OPT_FLAG, NULL, 0, 0, NULL, F(flag), 0, "a flag"},
    {"num", 'n', TQ_OPT_UINT, "N", 10, 100, "42", F(num), 0, "a number"},
    {"size", 0, TQ_OPT_SIZE, "SIZE", 0, 0, "1K", F(size), 0, "a size"},
    {"mode", 0, TQ_OPT_MODE, "MODE", 0, 0777, "0640", F(mode), 0, "a mode"},
    {"log-level", 0, TQ_OPT_LEVEL, "LEVEL", 0, 0, "notice", F(level), 0, "a level"},
    {"color", 0, TQ_OPT_CUSTOM, "COLOR", 0, 0, "red", F(color), 0, "red or blue"},
    {"hidden", 0, TQ_OPT_FLAG, NULL, 0, 0, NULL, F(hidden), 0, NULL},
    {"config", 'c', TQ_OPT_CONFIG, "FILE", 0, 0, NULL, 0, 0, "read FILE"},
    {"check-config", 0, TQ_OPT_CHECK, NULL, 0, 0, NULL, 0, 0, "check"},
    {"help", 'h', TQ_OPT_HELP, NULL, 0, 0, NULL, 0, 0, "help"},
    {"version", 'V', TQ_OPT_VERSION, NULL, 0, 0, NULL, 0, 0, "version"},
};

static void epilog(FILE *f)
{
    fprintf(f, "\nThe end.\n");
}

static const tq_optspec_t spec = {
    .prog = "test",
    .opts = opts,
    .n_opts = sizeof opts / sizeof opts[0],
    .synopsis = "Usage: test [OPTION]...\n\n",
    .epilog = epilog,
    .width = 20,
    .version = "test 1.0",
    .custom = parse_color,
};

/* ---- Fixture: a directory, captured output ---------------------------------- */

static char dir[64];
static char out[8192], err[4096]; /* what the last call said */
static tcfg_t cfg;
static tq_opts_t st;

static void setup(void)
{
    strcpy(dir, "/tmp/check_config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    memset(&st, 0, sizeof st);
}

static void teardown(void)
{
    th_stop_all();
    tq_opts_fini(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* dir/name, in buf (at least 256 bytes). */
static char *in_dir(char *buf, const char *name)
{
    snprintf(buf, 256, "%s/%s", dir, name);
    return buf;
}

/* Write text to dir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    FILE *f = fopen(in_dir(path, name), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static void read_into(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
}

static int saved_out = -1, saved_err = -1;

/* Send stdout and stderr to files until release(), which reads them into
 * out and err. */
static void capture(void)
{
    char po[256], pe[256];
    fflush(stdout);
    fflush(stderr);
    int fo = open(in_dir(po, "stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(in_dir(pe, "stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert(fo >= 0 && fe >= 0);
    saved_out = dup(1);
    saved_err = dup(2);
    dup2(fo, 1);
    dup2(fe, 2);
    close(fo);
    close(fe);
}

static void release(void)
{
    char po[256], pe[256];
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    read_into(in_dir(po, "stdout"), out, sizeof out);
    read_into(in_dir(pe, "stderr"), err, sizeof err);
}

/* tq_opts_parse of "test" with args (NULL-terminated, may be NULL) into
 * cfg and st; what it said goes to out and err. */
static int parse(const char *const *args)
{
    char *argv[32] = {(char *)"test"};
    int argc = 1;
    while (args && args[argc - 1])
        argv[argc] = (char *)args[argc - 1], argc++;
    tq_opts_fini(&st);
    memset(&cfg, 0, sizeof cfg);
    capture();
    int code = tq_opts_parse(&spec, &st, argc, argv, &cfg);
    release();
    return code;
}

/* parse() with --config path and then args. */
static int parse_file(const char *path, const char *const *args)
{
    const char *all[32] = {"--config", path};
    for (size_t i = 0; args && args[i]; i++)
        all[i + 2] = args[i];
    return parse(all);
}

/* ---- Good files, and the command line over them ------------------------------- */

START_TEST(every_kind)
{
    const char *path = write_file("t.conf", "\xEF\xBB\xBF# a comment\n"
                                            "; another one\n"
                                            "\n"
                                            "[test]\n"
                                            "str = hello world   ; and a comment after it\n"
                                            "    name = abc\n"
                                            "item = one\n"
                                            "\titem = two\n"
                                            "flag = yes\n"
                                            "num = 99\n"
                                            "size = 2M\n"
                                            "mode = 0600\n"
                                            "log-level = debug\n"
                                            "color = blue\n");
    ck_assert_int_eq(parse_file(path, NULL), -1);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(st.config, path);
    ck_assert(!st.check);
    ck_assert_str_eq(cfg.str, "hello world");
    ck_assert_str_eq(cfg.name, "abc");
    ck_assert_uint_eq(cfg.n_item, 2);
    ck_assert_str_eq(cfg.item[0], "one");
    ck_assert_str_eq(cfg.item[1], "two");
    ck_assert(cfg.flag);
    ck_assert_uint_eq(cfg.num, 99);
    ck_assert_uint_eq(cfg.size, 2 << 20);
    ck_assert_uint_eq(cfg.mode, 0600);
    ck_assert_str_eq(cfg.level, "debug");
    ck_assert_int_eq(tq_log_level, LOG_DEBUG);
    ck_assert_int_eq(cfg.color, 2);

    /* Without the section, and with `key: value`, the same. */
    path = write_file("t.conf", "num: 12\nitem=x\n");
    ck_assert_int_eq(parse_file(path, NULL), -1);
    ck_assert_uint_eq(cfg.num, 12);
    ck_assert_uint_eq(cfg.n_item, 1);
    ck_assert_str_eq(cfg.item[0], "x");
}
END_TEST

START_TEST(defaults)
{
    ck_assert_int_eq(parse(NULL), -1);
    ck_assert_str_eq(err, "");
    ck_assert_ptr_null(st.config);
    ck_assert_str_eq(cfg.str, "dflt");
    ck_assert_ptr_null(cfg.name);
    ck_assert_uint_eq(cfg.n_item, 1);
    ck_assert_str_eq(cfg.item[0], "none");
    ck_assert(!cfg.flag);
    ck_assert_uint_eq(cfg.num, 42);
    ck_assert_uint_eq(cfg.size, 1024);
    ck_assert_uint_eq(cfg.mode, 0640);
    ck_assert_str_eq(cfg.level, "notice");
    ck_assert_int_eq(tq_log_level, LOG_NOTICE);
    ck_assert_int_eq(cfg.color, 1);
}
END_TEST

START_TEST(flag_words)
{
    static const char *const words[] = {"true", "yes", "on", "1", "TRUE", "Yes",
                                        "false", "no", "off", "0", "False", "OFF"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "flag = %s\n", words[i]);
        ck_assert_int_eq(parse_file(write_file("t.conf", text), NULL), -1);
        ck_assert_msg(cfg.flag == (i < 6), "flag = %s gave %d", words[i], cfg.flag);
    }
    /* The bare flag on the command line sets what the file cleared. */
    const char *const args[] = {"--flag", NULL};
    ck_assert_int_eq(parse_file(write_file("t.conf", "flag = off\n"), args), -1);
    ck_assert(cfg.flag);
}
END_TEST

START_TEST(argv_over_file)
{
    const char *path = write_file("t.conf", "str = file\nnum = 20\nitem = a\nitem = b\n"
                                            "size = 1G\n");
    /* Each value from the command line wins; a list given there replaces
     * all the file's values. */
    const char *const a1[] = {"--num", "30", "-i", "x", "--size=3K", NULL};
    ck_assert_int_eq(parse_file(path, a1), -1);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(cfg.str, "file");
    ck_assert_uint_eq(cfg.num, 30);
    ck_assert_uint_eq(cfg.size, 3072);
    ck_assert_uint_eq(cfg.n_item, 1);
    ck_assert_str_eq(cfg.item[0], "x");
    ck_assert(st.on_argv & (1u << 2));

    /* Not given there, the file's list stays, in the file's order. */
    const char *const a2[] = {"-n", "11", NULL};
    ck_assert_int_eq(parse_file(path, a2), -1);
    ck_assert_uint_eq(cfg.num, 11);
    ck_assert_uint_eq(cfg.n_item, 2);
    ck_assert_str_eq(cfg.item[0], "a");
    ck_assert_str_eq(cfg.item[1], "b");

    /* Two on the command line, however placed around --config. */
    const char *const a3[] = {"-i", "p", "--config", path, "-iq", "--check-config", NULL};
    ck_assert_int_eq(parse(a3), -1);
    ck_assert_uint_eq(cfg.n_item, 2);
    ck_assert_str_eq(cfg.item[0], "p");
    ck_assert_str_eq(cfg.item[1], "q");
    ck_assert(st.check);

    /* The last of a single value wins, in the file as on the command line. */
    path = write_file("t.conf", "num = 20\nnum = 21\n");
    const char *const a4[] = {"--num", "50", "--num", "60", NULL};
    ck_assert_int_eq(parse_file(path, NULL), -1);
    ck_assert_uint_eq(cfg.num, 21);
    ck_assert_int_eq(parse_file(path, a4), -1);
    ck_assert_uint_eq(cfg.num, 60);
}
END_TEST

START_TEST(default_file)
{
    char def[256], other[256];
    in_dir(def, "default.conf");
    opts[CONFIG_ROW].def = def;
    /* Not there: nothing read. */
    ck_assert_int_eq(parse(NULL), -1);
    ck_assert_ptr_null(st.config);
    ck_assert_uint_eq(cfg.num, 42);
    /* There: read. */
    write_file("default.conf", "num = 77\n");
    ck_assert_int_eq(parse(NULL), -1);
    ck_assert_str_eq(st.config, def);
    ck_assert_uint_eq(cfg.num, 77);
    /* --config '' reads none; --config FILE reads FILE instead. */
    const char *const none[] = {"--config", "", NULL};
    ck_assert_int_eq(parse(none), -1);
    ck_assert_ptr_null(st.config);
    ck_assert_uint_eq(cfg.num, 42);
    write_file("other.conf", "num = 88\n");
    const char *const named[] = {"-c", in_dir(other, "other.conf"), NULL};
    ck_assert_int_eq(parse(named), -1);
    ck_assert_str_eq(st.config, other);
    ck_assert_uint_eq(cfg.num, 88);
    opts[CONFIG_ROW].def = NULL;
}
END_TEST

/* ---- Bad files ----------------------------------------------------------------- */

START_TEST(bad_files)
{
    static const struct {
        const char *line; /* line 3 of the file */
        const char *says; /* after "test: PATH:3: " */
    } cases[] = {
        {"bogus = 1", "unknown option 'bogus'"},
        {"num = fast", "num: wants a whole number from 10 to 100, not 'fast'"},
        {"num = 101", "num: wants a whole number from 10 to 100, not '101'"},
        {"num = 9", "num: wants a whole number from 10 to 100, not '9'"},
        {"num = -20", "num: wants a whole number from 10 to 100, not '-20'"},
        {"num = 12abc", "num: wants a whole number from 10 to 100, not '12abc'"},
        {"flag = maybe", "flag: wants true or false (yes or no, on or off, 1 or 0), not 'maybe'"},
        {"flag =", "flag: wants true or false (yes or no, on or off, 1 or 0), not ''"},
        {"[other]", "unknown section [other]; only [test] may be given"},
        {"[]", "unknown section []; only [test] may be given"},
        {"just words", "not 'key = value', '[test]' or a comment"},
        {"[test", "not 'key = value', '[test]' or a comment"},
        {"help = 1", "help: only on the command line"},
        {"version = yes", "version: only on the command line"},
        {"config = other.conf", "config: only on the command line"},
        {"check-config = true", "check-config: only on the command line"},
        {"hidden = yes", "unknown option 'hidden'"},
        {"name = ninechars", "name: wants 1 to 8 bytes, not 'ninechars'"},
        {"name =", "name: wants 1 to 8 bytes, not ''"},
        {"item = 12345678901234567", "item: wants 1 to 16 bytes, not '12345678901234567'"},
        {"size = 2X", "size: wants a size such as 512M or 2G, not '2X'"},
        {"size = 99999999999T", "size: wants a size such as 512M or 2G, not '99999999999T'"},
        {"mode = 0999", "mode: wants an octal mode such as 0660, not '0999'"},
        {"mode = 01777", "mode: wants an octal mode such as 0660, not '01777'"},
        {"log-level = loud", "log-level: wants one of err, warning, notice, info or debug, not "
                             "'loud'"},
        {"color = green", "color: wants red or blue, not 'green'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256], want[512];
        snprintf(text, sizeof text, "# line 1\nstr = fine\n%s\nnum = 50\n", cases[i].line);
        const char *path = write_file("bad.conf", text);
        snprintf(want, sizeof want, "test: %s:3: %s\n", path, cases[i].says);
        ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
        ck_assert_str_eq(err, want);
    }
}
END_TEST

START_TEST(bad_file_limits)
{
    char want[512], text[512];
    /* A fourth value of a list of at most three. */
    const char *path = write_file("t.conf", "item = a\nitem = b\nitem = c\nitem = d\n");
    snprintf(want, sizeof want, "test: %s:4: item: may be given at most 3 times\n", path);
    ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);

    /* A line longer than inih reads at once is refused, not cut in two. */
    memset(text, 0, sizeof text);
    strcpy(text, "str = ");
    memset(text + 6, 'x', 400);
    strcat(text, "\nnum = 50\n");
    path = write_file("t.conf", text);
    ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
    snprintf(want, sizeof want, "test: %s:1: line longer than ", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "said %s", err);
    /* One that fits is read whole. */
    text[6 + 150] = '\0';
    ck_assert_int_eq(parse_file(write_file("t.conf", text), NULL), -1);
    ck_assert_uint_eq(strlen(cfg.str), 150);

    /* A file that cannot be read. */
    char missing[256];
    in_dir(missing, "missing.conf");
    snprintf(want, sizeof want, "test: cannot read %s: No such file or directory\n", missing);
    ck_assert_int_eq(parse_file(missing, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);
    snprintf(want, sizeof want, "test: cannot read %s: Is a directory\n", dir);
    ck_assert_int_eq(parse_file(dir, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(first_error_only)
{
    char want[512];
    /* A line inih cannot parse before a bad value: only the first said. */
    const char *path = write_file("t.conf", "num = 50\nwhat is this\nnum = 5\nbogus = 1\n");
    snprintf(want, sizeof want, "test: %s:2: not 'key = value', '[test]' or a comment\n", path);
    ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);
    /* A bad value before such a line. */
    path = write_file("t.conf", "num = 5\nwhat is this\n[other]\n");
    snprintf(want, sizeof want,
             "test: %s:1: num: wants a whole number from 10 to 100, not '5'\n", path);
    ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);
    /* An empty section of another name is an error too, at its line. */
    path = write_file("t.conf", "[test]\nnum = 50\n[other]\n");
    snprintf(want, sizeof want, "test: %s:3: unknown section [other]; only [test] may be given\n",
             path);
    ck_assert_int_eq(parse_file(path, NULL), EX_USAGE);
    ck_assert_str_eq(err, want);
    /* The file is wrong: the command line's values are not even looked at. */
    const char *const args[] = {"--num", "7", NULL};
    ck_assert_int_eq(parse_file(path, args), EX_USAGE);
    ck_assert_str_eq(err, want);
}
END_TEST

/* ---- The command line ------------------------------------------------------------ */

START_TEST(bad_command_lines)
{
    static const struct {
        const char *args[5];
        const char *says;
    } cases[] = {
        {{"--bogus"}, "test: unknown option '--bogus'; see test --help\n"},
        {{"--num"}, "test: missing value for '--num'; see test --help\n"},
        {{"extra"}, "test: unexpected argument 'extra'; see test --help\n"},
        {{"--num", "5"}, "test: --num wants a whole number from 10 to 100, not '5'\n"},
        {{"-n", "x"}, "test: --num wants a whole number from 10 to 100, not 'x'\n"},
        {{"--name", ""}, "test: --name wants 1 to 8 bytes, not ''\n"},
        {{"--color", "green"}, "test: --color wants red or blue, not 'green'\n"},
        {{"--log-level", "loud"},
         "test: --log-level wants one of err, warning, notice, info or debug, not 'loud'\n"},
        {{"-i", "a", "-i", "b"}, ""},
        {{"--bogus", "--help"}, "test: unknown option '--bogus'; see test --help\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = parse(cases[i].args);
        ck_assert_int_eq(code, cases[i].says[0] ? EX_USAGE : -1);
        ck_assert_str_eq(err, cases[i].says);
        ck_assert_str_eq(out, "");
    }
    const char *const many[] = {"-i", "a", "-i", "b", "-i", "c", "-i", "d", NULL};
    ck_assert_int_eq(parse(many), EX_USAGE);
    ck_assert_str_eq(err, "test: --item may be given at most 3 times\n");
}
END_TEST

START_TEST(help_and_version)
{
    const char *const help[] = {"--help", "--bogus-after-help", NULL};
    ck_assert_int_eq(parse(help), EX_OK);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(out, "Usage: test [OPTION]...\n\n"
                          "  -s, --str S          any string [default dflt]\n"
                          "      --name NAME      a name\n"
                          "  -i, --item ITEM      repeatable [default none]\n"
                          "  -f, --flag           a flag\n"
                          "  -n, --num N          a number [10..100, default 42]\n"
                          "      --size SIZE      a size [default 1K]\n"
                          "      --mode MODE      a mode [default 0640]\n"
                          "      --log-level LEVEL a level [default notice]\n"
                          "      --color COLOR    red or blue [default red]\n"
                          "  -c, --config FILE    read FILE\n"
                          "      --check-config   check\n"
                          "  -h, --help           help\n"
                          "  -V, --version        version\n"
                          "\nThe end.\n");
    const char *const version[] = {"-V", NULL};
    ck_assert_int_eq(parse(version), EX_OK);
    ck_assert_str_eq(out, "test 1.0\n");
    /* --help even when the file is wrong: it is not read. */
    const char *path = write_file("t.conf", "bogus = 1\n");
    const char *const h[] = {"-h", NULL};
    ck_assert_int_eq(parse_file(path, h), EX_OK);
    ck_assert_str_eq(err, "");
}
END_TEST

/* ---- Reloading the level ---------------------------------------------------------- */

START_TEST(reload_level)
{
    const char *path = write_file("t.conf", "num = 50\nlog-level = info\n");
    ck_assert_int_eq(parse_file(path, NULL), -1);
    ck_assert_int_eq(tq_log_level, LOG_INFO);

    write_file("t.conf", "num = 50\nlog-level = debug\n");
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), 0);
    ck_assert_int_eq(tq_log_level, LOG_DEBUG);

    /* A file gone wrong: logged, the level as it was. */
    write_file("t.conf", "num = 50\nlog-level = loud\n");
    capture();
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), -1);
    release();
    char want[512];
    snprintf(want, sizeof want,
             "<3>%s:2: log-level: wants one of err, warning, notice, info or debug, not 'loud'\n",
             path);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(tq_log_level, LOG_DEBUG);
    write_file("t.conf", "num = 5\nlog-level = err\n");
    capture();
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), -1);
    release();
    ck_assert_ptr_nonnull(strstr(err, "t.conf:1: num: wants"));
    ck_assert_int_eq(tq_log_level, LOG_DEBUG);

    /* No longer in the file: the default. */
    write_file("t.conf", "num = 50\n");
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), 0);
    ck_assert_int_eq(tq_log_level, LOG_NOTICE);

    /* Given on the command line: that one stays. */
    write_file("t.conf", "log-level = info\n");
    const char *const args[] = {"--log-level", "err", NULL};
    ck_assert_int_eq(parse_file(path, args), -1);
    ck_assert_int_eq(tq_log_level, LOG_ERR);
    write_file("t.conf", "log-level = debug\n");
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), 0);
    ck_assert_int_eq(tq_log_level, LOG_ERR);

    /* No file: nothing to do. */
    ck_assert_int_eq(parse(NULL), -1);
    ck_assert_int_eq(tq_opts_reload(&spec, &st, sizeof(tcfg_t)), 0);
    ck_assert_int_eq(tq_log_level, LOG_NOTICE);
}
END_TEST

/* ---- The real programs ----------------------------------------------------------------- */

/* Run path with args for up to 20 s into out; returns its exit code, or -1
 * if it did not exit. */
static int run(const char *path, const char *const *args)
{
    int status = th_run(path, args, 20000, out, sizeof out);
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A CURVE key pair dir/server.{key,pub} and allow-list directories. */
static void make_keys(void)
{
    char base[256], err_[256], d[256];
    ck_assert_msg(tq_key_write_pair(in_dir(base, "server"), false, err_, sizeof err_) == 0, "%s",
                  err_);
    ck_assert_int_eq(mkdir(in_dir(d, "clients"), 0700), 0);
    ck_assert_int_eq(mkdir(in_dir(d, "workers"), 0700), 0);
}

START_TEST(taskqd_check_config)
{
    make_keys();
    char text[2048], want[1024];
    snprintf(text, sizeof text,
             "# taskqd, checked\n"
             "[taskqd]\n"
             "bind = ipc://%s/taskqd.sock\n"
             "bind = tcp://127.0.0.1:*\n"
             "db = %s/db/taskq.db\n"
             "sync = normal\n"
             "heartbeat-ms = 500\n"
             "curve-secret = %s/server.key\n"
             "allow-clients = %s/clients\n"
             "allow-workers = %s/workers\n"
             "ipc-mode = 0600\n"
             "insecure = no\n"
             "log-level = info\n",
             dir, dir, dir, dir, dir);
    const char *path = write_file("taskqd.conf", text);
    const char *const args[] = {"--config", path, "--check-config", NULL};
    ck_assert_int_eq(run(TASKQD_PATH, args), 0);
    ck_assert_str_eq(out, "taskqd: configuration ok\n");
    /* Checked, not served: no socket, no database. */
    char p[256];
    ck_assert(!exists(in_dir(p, "taskqd.sock")));
    ck_assert(!exists(in_dir(p, "db")));

    /* Wrong values, each with its message and 64. */
    static const struct {
        const char *line;
        const char *says; /* after "taskqd: " */
    } cases[] = {
        {"heartbeat-ms = fast", "@:3: heartbeat-ms: wants a whole number from 10 to 600000, "
                                "not 'fast'"},
        {"sync = sometimes", "@:3: sync: wants full or normal, not 'sometimes'"},
        {"worker-count = 3", "@:3: unknown option 'worker-count'"},
        {"[taskq-worker]", "@:3: unknown section [taskq-worker]; only [taskqd] may be given"},
        {"check-config = yes", "@:3: check-config: only on the command line"},
        {"allow-clients = /nonexistent/dir",
         "allow-lists (--allow-clients, --allow-workers, --admin-keys, --allow-exec) need "
         "--curve-secret"},
        {"curve-secret = /nonexistent.key", "--curve-secret without --allow-clients, "
                                            "--allow-workers or --admin-keys would let nobody in"},
        {"ipc-group = no-such-group-here", "--ipc-group: no group named 'no-such-group-here'"},
        {"bind = tcp://0.0.0.0:*", "refusing to serve tcp://0.0.0.0:* without encryption"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "# bad\nmemory = true\n%s\n", cases[i].line);
        path = write_file("bad.conf", text);
        const char *at = strchr(cases[i].says, '@');
        if (at)
            snprintf(want, sizeof want, "taskqd: %s%s\n", path, at + 1);
        else
            snprintf(want, sizeof want, "taskqd: %s", cases[i].says);
        const char *const bad[] = {"--check-config", "--config", path, NULL};
        ck_assert_int_eq(run(TASKQD_PATH, bad), EX_USAGE);
        ck_assert_msg(at ? strcmp(out, want) == 0 : strncmp(out, want, strlen(want)) == 0,
                      "said:\n%swant:\n%s", out, want);
    }

    /* Key file and directories that cannot be read. */
    snprintf(text, sizeof text, "curve-secret = %s/missing.key\nallow-clients = %s/clients\n",
             dir, dir);
    const char *const a1[] = {"--check-config", "--config", write_file("bad.conf", text), NULL};
    ck_assert_int_eq(run(TASKQD_PATH, a1), EX_USAGE);
    ck_assert_msg(strncmp(out, "taskqd: --curve-secret: ", 24) == 0 && strstr(out, "missing.key"),
                  "said %s", out);
    snprintf(text, sizeof text,
             "curve-secret = %s/server.key\nallow-clients = %s/clients\n"
             "allow-workers = %s/nodir\n", dir, dir, dir);
    const char *const a2[] = {"--check-config", "--config", write_file("bad.conf", text), NULL};
    ck_assert_int_eq(run(TASKQD_PATH, a2), EX_USAGE);
    snprintf(want, sizeof want,
             "taskqd: --allow-workers: cannot read %s/nodir: No such file or directory\n", dir);
    ck_assert_str_eq(out, want);

    /* The command line's --bind replaces the file's refused one; its
     * values override the file's. */
    path = write_file("bad.conf", "bind = tcp://0.0.0.0:*\nheartbeat-ms = fast\n");
    const char *const a3[] = {"--config", path, "--bind", "tcp://127.0.0.1:*", "--check-config",
                              NULL};
    ck_assert_int_eq(run(TASKQD_PATH, a3), EX_USAGE); /* the file is still read */
    path = write_file("bad.conf", "bind = tcp://0.0.0.0:*\nheartbeat-ms = 15\n");
    const char *const a4[] = {"--config", path, "--bind", "tcp://127.0.0.1:*", "--check-config",
                              "--heartbeat-ms", "20", NULL};
    ck_assert_int_eq(run(TASKQD_PATH, a4), 0);
    ck_assert_str_eq(out, "taskqd: configuration ok\n");

    /* Bad usage on the command line, as before. */
    const char *const a5[] = {"--check-config", "--config", "", "--liveness", "1", NULL};
    ck_assert_int_eq(run(TASKQD_PATH, a5), EX_USAGE);
    ck_assert_str_eq(out, "taskqd: --liveness wants a whole number from 2 to 100, not '1'\n");
}
END_TEST

START_TEST(worker_check_config)
{
    make_keys();
    char text[2048], want[1024];
    snprintf(text, sizeof text,
             "[taskq-worker]\n"
             "broker = tcp://127.0.0.1:9\n"
             "procs = 2\n"
             "queue = a\n"
             "queue = b\n"
             "exec = yes\n"
             "mem-limit = 512M\n"
             "nice = 5\n"
             "log-level = debug\n"
             "curve-server-key = %s/server.pub\n"
             "curve-key = %s/server.key\n",
             dir, dir);
    const char *path = write_file("worker.conf", text);
    const char *const good[] = {"--config", path, "--check-config", NULL};
    ck_assert_int_eq(run(TASKQ_WORKER_PATH, good), 0);
    ck_assert_str_eq(out, "taskq-worker: configuration ok\n");
    /* The command line's queue replaces both of the file's. */
    const char *const good2[] = {"--config", path, "-q", "c", "--check-config", NULL};
    ck_assert_int_eq(run(TASKQ_WORKER_PATH, good2), 0);

    static const struct {
        const char *text;
        const char *says; /* after "taskq-worker: "; @ is the file */
    } cases[] = {
        {"exec = yes\nnice = 20\n", "@:2: nice: wants a whole number from 0 to 19, not '20'"},
        {"exec = 2\n", "@:1: exec: wants true or false (yes or no, on or off, 1 or 0), not '2'"},
        {"exec = yes\nmem-limit = lots\n", "@:2: mem-limit: wants a size such as 512M or 2G, "
                                           "not 'lots'"},
        {"[taskqd]\nexec = yes\n", "@:1: unknown section [taskqd]; only [taskq-worker] may be "
                                   "given"},
        {"exec = yes\nexecutor = yes\n", "@:2: unknown option 'executor'"},
        {"exec = yes\nhelp = yes\n", "@:2: help: only on the command line"},
        {"procs = 2\n", "nothing to serve: give --load PLUGIN.so or --exec"},
        {"load = /nonexistent/plugin.so\n", "--load: cannot read /nonexistent/plugin.so: No such "
                                            "file or directory"},
        {"exec = on\ncurve-key = /nonexistent.key\n",
         "--curve-server-key and --curve-key go together: the broker's public key and this "
         "pool's secret key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        path = write_file("bad.conf", cases[i].text);
        const char *at = strchr(cases[i].says, '@');
        snprintf(want, sizeof want, "taskq-worker: %s%s\n", at ? path : "",
                 at ? at + 1 : cases[i].says);
        const char *const bad[] = {"--config", path, "--check-config", NULL};
        ck_assert_int_eq(run(TASKQ_WORKER_PATH, bad), EX_USAGE);
        ck_assert_str_eq(out, want);
    }
}
END_TEST

/* ---- taskqd re-reads its log level on SIGHUP -------------------------------------------- */

/* Wait up to timeout_ms until the file at path holds want (its text then
 * in buf).  Returns whether it did. */
static bool wait_text(const char *path, const char *want, char *buf, size_t cap, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    do {
        read_into(path, buf, cap);
        if (strstr(buf, want))
            return true;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    } while (th_now_ms() < end);
    return false;
}

static unsigned count(const char *text, const char *what)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, what)); p++)
        n++;
    return n;
}

/* A client connects and is answered: taskqd has logged its HELLO (at info). */
static void client_hello(const char *endpoint)
{
    taskq_client_t *c = NULL;
    uint64_t running;
    ck_assert_int_eq(taskq_client_new(endpoint, NULL, &c), 0);
    ck_assert_int_eq(th_stat(c, "running", &running), 0);
    taskq_client_destroy(&c);
}

START_TEST(taskqd_sighup_level)
{
    char conf[256], ready[256], log[256], text[1024], buf[65536];
    in_dir(conf, "taskqd.conf");
    in_dir(ready, "ready");
    in_dir(log, "taskqd.log");
    snprintf(text, sizeof text, "bind = tcp://127.0.0.1:*\nmemory = yes\nready-file = %s\n",
             ready);
    write_file("taskqd.conf", text);
    pid_t pid = th_fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(TASKQD_PATH, TASKQD_PATH, "--config", conf, (char *)NULL);
        _exit(127);
    }
    ck_assert_msg(wait_text(ready, "\n", buf, sizeof buf, 10000), "taskqd not ready");
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "%.*s", (int)strcspn(buf, "\n"), buf);

    /* At notice (the default), a client's arrival is not logged. */
    client_hello(endpoint);
    read_into(log, buf, sizeof buf);
    ck_assert_msg(count(buf, " connected (") == 0, "log:\n%s", buf);

    /* The file says info now: after SIGHUP, it is. */
    strcat(text, "log-level = info\n");
    write_file("taskqd.conf", text);
    ck_assert_int_eq(kill(pid, SIGHUP), 0);
    ck_assert_msg(wait_text(log, "log level re-read from", buf, sizeof buf, 5000), "log:\n%s",
                  buf);
    client_hello(endpoint);
    read_into(log, buf, sizeof buf);
    ck_assert_msg(count(buf, " connected (") == 1, "log:\n%s", buf);

    /* A file gone wrong: said, and the level stays. */
    write_file("taskqd.conf", "log-level = loud\n");
    ck_assert_int_eq(kill(pid, SIGHUP), 0);
    ck_assert_msg(wait_text(log, "log-level: wants one of", buf, sizeof buf, 5000), "log:\n%s",
                  buf);
    client_hello(endpoint);
    read_into(log, buf, sizeof buf);
    ck_assert_msg(count(buf, " connected (") == 2, "log:\n%s", buf);

    ck_assert_int_eq(th_stop(pid, SIGTERM), 0);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"every_kind", every_kind, 30, setup, teardown},
        {"defaults", defaults, 30, setup, teardown},
        {"flag_words", flag_words, 30, setup, teardown},
        {"argv_over_file", argv_over_file, 30, setup, teardown},
        {"default_file", default_file, 30, setup, teardown},
        {"bad_files", bad_files, 30, setup, teardown},
        {"bad_file_limits", bad_file_limits, 30, setup, teardown},
        {"first_error_only", first_error_only, 30, setup, teardown},
        {"bad_command_lines", bad_command_lines, 30, setup, teardown},
        {"help_and_version", help_and_version, 30, setup, teardown},
        {"reload_level", reload_level, 30, setup, teardown},
        {"taskqd_check_config", taskqd_check_config, 60, setup, teardown},
        {"worker_check_config", worker_check_config, 60, setup, teardown},
        {"taskqd_sighup_level", taskqd_sighup_level, 60, setup, teardown},
    };
    return th_run_suite("config", cases, sizeof cases / sizeof cases[0]);
}
