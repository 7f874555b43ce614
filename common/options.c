/*
 * options.c - the option driver: a program's option table read by
 * getopt_long for the command line, by libinih for the config file, and
 * for defaults, validation and --help.  The rules are in options.h.
 */
#include "options.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include <ini.h>

#include "log.h"

/* A value read from a file, kept as long as the configuration points to it. */
struct tq_opts_str {
    struct tq_opts_str *next;
    char s[];
};

/* Say what is wrong: on stderr after the program's name, or to the log
 * during a reload; while a file is read, only its first error is kept in
 * st->held, to be said once the order of the errors is known. */
static void say(const tq_optspec_t *s, tq_opts_t *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const tq_optspec_t *s, tq_opts_t *st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (st->held && !st->held[0])
        strcpy(st->held, msg); /* as large as msg */
    else if (st->held)
        return;
    else if (st->logging)
        TQ_LOG(LOG_ERR, "%s", msg);
    else
        fprintf(stderr, "%s: %s\n", s->prog, msg);
}

/* A whole number in base (8 or 10) and nothing else: no sign, no blank. */
static bool whole(const char *v, int base, unsigned long long *ret)
{
    char *end;
    errno = 0;
    *ret = strtoull(v, &end, base);
    return v[0] >= '0' && v[0] < '0' + base && !*end && !errno;
}

/* SIZE ("512M", "2G", "1048576") in bytes.  0 or -1. */
static int parse_size(const char *s, uint64_t *ret)
{
    static const char units[] = "KMGT";
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || errno)
        return -1;
    if (*end) {
        const char *u = strchr(units, end[0] & ~0x20);
        if (!u || end[1])
            return -1;
        for (const char *k = units; k <= u; k++) {
            if (v > UINT64_MAX / 1024)
                return -1;
            v *= 1024;
        }
    }
    *ret = v;
    return 0;
}

/* Read value (NULL: a bare flag) into cfg as o says; where names it in
 * messages ("--name" or "FILE:LINE: name:").  0, or -1 after saying why. */
static int apply(const tq_optspec_t *s, tq_opts_t *st, const tq_opt_t *o, const char *value,
                 void *cfg, const char *where)
{
    static const char *const flags[] = {"false", "true", "no", "yes", "off", "on", "0", "1"};
    char *field = (char *)cfg + o->field, want[128];
    unsigned long long v;
    switch (o->kind) {
    case TQ_OPT_STR:
    case TQ_OPT_LIST: {
        size_t len = strlen(value), *n = (size_t *)((char *)cfg + o->count);
        if (o->max && (len == 0 || len > o->max)) {
            snprintf(want, sizeof want, "1 to %" PRIu32 " bytes", o->max);
            break;
        }
        if (o->kind == TQ_OPT_STR) {
            *(const char **)field = value;
        } else if (*n == o->min) {
            say(s, st, "%s may be given at most %" PRIu32 " times", where, o->min);
            return -1;
        } else {
            ((const char **)field)[(*n)++] = value;
        }
        return 0;
    }
    case TQ_OPT_FLAG:
        for (size_t i = 0; i < sizeof flags / sizeof flags[0] && value; i++) {
            if (strcasecmp(value, flags[i]) == 0) {
                *(bool *)field = i % 2;
                return 0;
            }
        }
        if (!value) {
            *(bool *)field = true;
            return 0;
        }
        snprintf(want, sizeof want, "true or false (yes or no, on or off, 1 or 0)");
        break;
    case TQ_OPT_UINT:
        if (whole(value, 10, &v) && v >= o->min && v <= o->max) {
            *(uint32_t *)field = (uint32_t)v;
            return 0;
        }
        snprintf(want, sizeof want, "a whole number from %" PRIu32 " to %" PRIu32, o->min,
                 o->max);
        break;
    case TQ_OPT_SIZE:
        if (parse_size(value, (uint64_t *)field) == 0)
            return 0;
        snprintf(want, sizeof want, "a size such as 512M or 2G");
        break;
    case TQ_OPT_MODE:
        if (whole(value, 8, &v) && v <= o->max) {
            *(uint32_t *)field = (uint32_t)v;
            return 0;
        }
        snprintf(want, sizeof want, "an octal mode such as 0660");
        break;
    case TQ_OPT_LEVEL:
        if (tq_log_parse_level(value, &tq_log_level) == 0) {
            *(const char **)field = value;
            return 0;
        }
        snprintf(want, sizeof want, "one of err, warning, notice, info or debug");
        break;
    case TQ_OPT_CUSTOM: {
        const char *w = s->custom(o, value, field);
        if (!w)
            return 0;
        snprintf(want, sizeof want, "%s", w);
        break;
    }
    default:
        return 0;
    }
    say(s, st, "%s wants %s, not '%s'", where, want, value);
    return -1;
}

/* Apply the defaults but those of lists.  0, or -1 after saying why. */
static int apply_defaults(const tq_optspec_t *s, tq_opts_t *st, void *cfg)
{
    for (size_t i = 0; i < s->n_opts; i++) {
        const tq_opt_t *o = &s->opts[i];
        char where[80];
        snprintf(where, sizeof where, "--%s", o->name);
        if (o->def && o->kind != TQ_OPT_LIST && o->kind < TQ_OPT_CHECK &&
            apply(s, st, o, o->def, cfg, where) < 0)
            return -1;
    }
    return 0;
}

/* ---- Config files ------------------------------------------------------- */

typedef struct file {
    const tq_optspec_t *s;
    tq_opts_t *st;
    void *cfg;
    FILE *f;
    int line;          /* the line being parsed */
    int bad;           /* the first line found wrong here; 0: none */
    char error[1024];  /* what is wrong with it */
} file_t;

static const char *keep(tq_opts_t *st, const char *value)
{
    size_t len = strlen(value) + 1;
    struct tq_opts_str *k = malloc(sizeof *k + len);
    if (!k)
        return NULL;
    memcpy(k->s, value, len);
    k->next = st->strings;
    st->strings = k;
    return k->s;
}

/*
 * inih's reader: the next line, counted, without its leading blanks (or a
 * UTF-8 byte order mark), so that inih never takes an indented line for
 * the continuation of the one before.  Checks what inih would let by: a
 * line too long for its buffer, a section other than [PROG] (also with no
 * keys in it).  Ends the file at the first error.
 */
static char *read_line(char *str, int num, void *stream)
{
    file_t *c = stream;
    if (c->bad || !fgets(str, num, c->f))
        return NULL;
    c->line++;
    size_t len = strlen(str), skip = 0;
    int next;
    if (len == (size_t)num - 1 && str[len - 1] != '\n' && (next = getc(c->f)) != '\n' &&
        next != EOF) {
        say(c->s, c->st, "%s:%d: line longer than %d characters", c->st->config, c->line,
            num - 2);
        c->bad = c->line;
        return NULL;
    }
    if (c->line == 1 && strncmp(str, "\xEF\xBB\xBF", 3) == 0)
        skip = 3;
    skip += strspn(str + skip, " \t");
    memmove(str, str + skip, len - skip + 1);
    const char *end = str[0] == '[' ? strchr(str, ']') : NULL;
    size_t n = end ? (size_t)(end - str - 1) : 0;
    if (end && (n != strlen(c->s->prog) || strncmp(str + 1, c->s->prog, n) != 0)) {
        say(c->s, c->st, "%s:%d: unknown section [%.*s]; only [%s] may be given",
            c->st->config, c->line, (int)n, str + 1, c->s->prog);
        c->bad = c->line;
        return NULL;
    }
    return str;
}

/* inih's handler: one key = value.  1, or 0 after saying why. */
static int on_value(void *user, const char *section, const char *name, const char *value)
{
    file_t *c = user;
    const tq_optspec_t *s = c->s;
    const tq_opt_t *o = NULL;
    for (size_t i = 0; i < s->n_opts && !o; i++)
        if (s->opts[i].help && strcmp(s->opts[i].name, name) == 0)
            o = &s->opts[i];
    char where[1024];
    snprintf(where, sizeof where, "%s:%d: %s:", c->st->config, c->line, name);
    if (!o)
        say(s, c->st, "%s:%d: unknown option '%s'", c->st->config, c->line, name);
    else if (o->kind >= TQ_OPT_CHECK)
        say(s, c->st, "%s only on the command line", where);
    else if (!(value = keep(c->st, value)))
        say(s, c->st, "%s out of memory", where);
    else if (apply(s, c->st, o, value, c->cfg, where) == 0)
        return 1;
    c->bad = c->line;
    return 0;
}

/* Apply st->config to cfg.  0, or -1 after saying why. */
static int read_file(const tq_optspec_t *s, tq_opts_t *st, void *cfg)
{
    file_t c = {.s = s, .st = st, .cfg = cfg, .f = fopen(st->config, "r")};
    if (!c.f) {
        say(s, st, "cannot read %s: %s", st->config, strerror(errno));
        return -1;
    }
    st->held = c.error;
    int rc = ini_parse_stream(read_line, &c, on_value, &c);
    int err = ferror(c.f) ? errno : 0;
    fclose(c.f);
    st->held = NULL;
    /* inih goes on after a line it cannot parse (and calls on_value for
     * later ones): such a line comes first if it comes before c.bad. */
    if (rc > 0 && (!c.bad || rc < c.bad))
        say(s, st, "%s:%d: not 'key = value', '[%s]' or a comment", st->config, rc, s->prog);
    else if (c.bad)
        say(s, st, "%s", c.error);
    else if (err || rc)
        say(s, st, "cannot read %s: %s", st->config, strerror(err ? err : ENOMEM));
    return c.bad || err || rc ? -1 : 0;
}

/* ---- Command line --------------------------------------------------------- */

static void help(const tq_optspec_t *s)
{
    fputs(s->synopsis, stdout);
    for (size_t i = 0; i < s->n_opts; i++) {
        const tq_opt_t *o = &s->opts[i];
        if (!o->help)
            continue;
        char left[64];
        snprintf(left, sizeof left, "%c%c%s--%s%s%s", o->short_name ? '-' : ' ',
                 o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
                 o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-*s %s", s->width, left, o->help);
        if (o->kind == TQ_OPT_UINT && o->def)
            printf(" [%" PRIu32 "..%" PRIu32 ", default %s]", o->min, o->max, o->def);
        else if (o->def)
            printf(" [default %s]", o->def);
        putchar('\n');
    }
    if (s->epilog)
        s->epilog(stdout);
}

int tq_opts_parse(const tq_optspec_t *s, tq_opts_t *st, int argc, char **argv, void *cfg)
{
    struct option longopts[TQ_OPTS_MAX + 1];
    char shortopts[2 * TQ_OPTS_MAX + 2] = ":";
    size_t ns = 1, n_args = 0;
    const char *config = NULL;
    assert(s->n_opts <= TQ_OPTS_MAX);
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < s->n_opts; i++) {
        const tq_opt_t *o = &s->opts[i];
        longopts[i] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL,
                                      o->short_name ? o->short_name : 256 + (int)i};
        if (o->short_name) {
            shortopts[ns++] = (char)o->short_name;
            if (o->arg)
                shortopts[ns++] = ':';
        }
        if (o->kind == TQ_OPT_CONFIG && o->def && access(o->def, F_OK) == 0)
            config = o->def;
    }
    longopts[s->n_opts] = (struct option){0};
    shortopts[ns] = '\0';

    /* First the command line's syntax, --help, --version and --config; its
     * values wait for the file's, which they override. */
    struct arg {
        const tq_opt_t *o;
        const char *value;
    } *args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        say(s, st, "out of memory");
        return EX_OSERR;
    }
    int c, code = -1;
    optind = 0; /* glibc: start afresh */
    opterr = 0;
    while (code < 0 && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == '?' || c == ':') {
            say(s, st, "%s '%s'; see %s --help",
                c == '?' ? "unknown option" : "missing value for", argv[optind - 1], s->prog);
            code = EX_USAGE;
            break;
        }
        size_t i = 0;
        while (c != (s->opts[i].short_name ? s->opts[i].short_name : 256 + (int)i))
            i++;
        const tq_opt_t *o = &s->opts[i];
        st->on_argv |= UINT64_C(1) << i;
        if (o->kind == TQ_OPT_HELP) {
            help(s);
            code = EX_OK;
        } else if (o->kind == TQ_OPT_VERSION) {
            puts(s->version);
            code = EX_OK;
        } else if (o->kind == TQ_OPT_CHECK) {
            st->check = true;
        } else if (o->kind == TQ_OPT_CONFIG) {
            config = optarg;
        } else {
            args[n_args++] = (struct arg){o, optarg};
        }
    }
    if (code < 0 && optind < argc) {
        say(s, st, "unexpected argument '%s'; see %s --help", argv[optind], s->prog);
        code = EX_USAGE;
    }
    if (code < 0 && apply_defaults(s, st, cfg) < 0)
        code = EX_SOFTWARE;
    if (code < 0 && config && config[0]) {
        st->config = config;
        if (read_file(s, st, cfg) < 0)
            code = EX_USAGE;
    }

    /* Then the command line: a list given there drops the file's values. */
    for (size_t i = 0; i < s->n_opts; i++)
        if (s->opts[i].kind == TQ_OPT_LIST && (st->on_argv >> i & 1))
            *(size_t *)((char *)cfg + s->opts[i].count) = 0;
    for (size_t k = 0; k < n_args && code < 0; k++) {
        char where[80];
        snprintf(where, sizeof where, "--%s", args[k].o->name);
        if (apply(s, st, args[k].o, args[k].value, cfg, where) < 0)
            code = EX_USAGE;
    }
    free(args);
    for (size_t i = 0; i < s->n_opts && code < 0; i++) {
        const tq_opt_t *o = &s->opts[i];
        if (o->kind == TQ_OPT_LIST && o->def && *(size_t *)((char *)cfg + o->count) == 0 &&
            apply(s, st, o, o->def, cfg, "a default") < 0)
            code = EX_SOFTWARE;
    }
    return code;
}

int tq_opts_reload(const tq_optspec_t *s, tq_opts_t *st, size_t cfg_size)
{
    if (!st->config)
        return 0;
    int level = tq_log_level, rc = -1;
    tq_opts_t scratch = {.config = st->config, .logging = true};
    void *cfg = calloc(1, cfg_size);
    if (!cfg)
        TQ_LOG(LOG_ERR, "cannot re-read %s: out of memory", st->config);
    else if (apply_defaults(s, &scratch, cfg) == 0 && read_file(s, &scratch, cfg) == 0)
        rc = 0;
    bool on_argv = false; /* the command line's level stays */
    for (size_t i = 0; i < s->n_opts; i++)
        on_argv |= s->opts[i].kind == TQ_OPT_LEVEL && (st->on_argv >> i & 1);
    if (rc < 0 || on_argv)
        tq_log_level = level;
    free(cfg);
    tq_opts_fini(&scratch);
    return rc;
}

void tq_opts_fini(tq_opts_t *st)
{
    while (st->strings) {
        struct tq_opts_str *k = st->strings;
        st->strings = k->next;
        free(k);
    }
}
