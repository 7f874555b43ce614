/*
 * cli_template.c - the command template of `taskq map`: sh-like word
 * splitting of a one-word COMMAND, the replacement strings {} {#} {.} {/}
 * {//} {/.}, and the quoting of inputs for sh with --shell.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_template.h"
#include "taskq.h"

/*
 * Split s into words as sh does, without expansions: blanks separate
 * words; '...' keeps everything; "..." keeps everything but \" \\ \$ \`
 * and backslash-newline; a backslash outside quotes keeps the next
 * character.  Returns 0, TASKQ_EINVAL (an unterminated quote) or
 * TASKQ_ENOMEM; *ret is a malloc'ed array of malloc'ed words.
 */
static int split_words(const char *s, char ***ret, size_t *ret_n)
{
    size_t len = strlen(s), n = 0;
    char **words = calloc(len / 2 + 2, sizeof *words);
    char *w = malloc(len + 1);
    if (!words || !w) {
        free(words);
        free(w);
        return TASKQ_ENOMEM;
    }
    int rc = 0;
    const char *p = s;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            p++;
            continue;
        }
        size_t wl = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *q = strchr(p + 1, '\'');
                if (!q) {
                    rc = TASKQ_EINVAL;
                    goto out;
                }
                memcpy(w + wl, p + 1, (size_t)(q - p - 1));
                wl += (size_t)(q - p - 1);
                p = q + 1;
            } else if (*p == '"') {
                for (p++; *p != '"'; p++) {
                    if (!*p) {
                        rc = TASKQ_EINVAL;
                        goto out;
                    }
                    if (*p == '\\' && p[1] == '\n')
                        p++;
                    else if (*p == '\\' && strchr("\"\\$`", p[1]))
                        w[wl++] = *++p;
                    else
                        w[wl++] = *p;
                }
                p++;
            } else if (*p == '\\') {
                if (p[1] && p[1] != '\n')
                    w[wl++] = p[1];
                p += p[1] ? 2 : 1;
            } else {
                w[wl++] = *p++;
            }
        }
        if (!(words[n] = strndup(w, wl))) {
            rc = TASKQ_ENOMEM;
            goto out;
        }
        n++;
    }
out:
    free(w);
    if (rc) {
        while (n > 0)
            free(words[--n]);
        free(words);
        return rc;
    }
    *ret = words;
    *ret_n = n;
    return 0;
}

static const char *const repl_strings[] = {"{}", "{#}", "{.}", "{/}", "{//}", "{/.}"};
enum { R_INPUT, R_SEQ, R_NOEXT, R_BASE, R_DIR, R_BASE_NOEXT, R_N };

/* The replacement string at p, or -1. */
static int repl_at(const char *p)
{
    if (*p != '{')
        return -1;
    for (int i = 0; i < R_N; i++)
        if (strncmp(p, repl_strings[i], strlen(repl_strings[i])) == 0)
            return i;
    return -1;
}

/* The length of v[0..len-1] without its extension: a last '.' in its last
 * path component with something after it (GNU parallel's {.}). */
static size_t cut_ext(const char *v, size_t len)
{
    for (size_t i = len; i-- > 0 && v[i] != '/';)
        if (v[i] == '.')
            return i + 1 < len ? i : len;
    return len;
}

/* The value of replacement string r for input in, whose number is num
 * (in decimal): a span of in, of num or of a constant. */
static void repl_value(int r, const char *in, const char *num, const char **v, size_t *len)
{
    const char *slash = strrchr(in, '/');
    const char *base = slash ? slash + 1 : in;
    switch (r) {
    case R_SEQ:
        *v = num;
        *len = strlen(num);
        return;
    case R_NOEXT:
        *v = in;
        *len = cut_ext(in, strlen(in));
        return;
    case R_BASE:
        *v = base;
        *len = strlen(base);
        return;
    case R_DIR:
        /* As dirname(1): "." without a slash, "/" for "/x". */
        *v = !slash ? "." : slash == in ? "/" : in;
        *len = !slash || slash == in ? 1 : (size_t)(slash - in);
        return;
    case R_BASE_NOEXT:
        *v = base;
        *len = cut_ext(base, strlen(base));
        return;
    default:
        *v = in;
        *len = strlen(in);
    }
}

/* Write v as one word for sh: as it is if it holds only characters sh
 * leaves alone, else in single quotes. */
static void put_quoted(FILE *out, const char *v, size_t len)
{
    static const char safe[] = "_@%+=:,./-";
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                (v[i] >= '0' && v[i] <= '9') || (v[i] && strchr(safe, v[i]));
    if (plain) {
        fwrite(v, 1, len, out);
        return;
    }
    fputc('\'', out);
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\'')
            fputs("'\\''", out);
        else
            fputc(v[i], out);
    }
    fputc('\'', out);
}

/* Expand the replacement strings of word for input in (number num) into
 * a malloc'ed string, quoting the values for sh if quote.  NULL: ENOMEM. */
static char *expand(const char *word, const char *in, const char *num, bool quote)
{
    char *s = NULL;
    size_t len;
    FILE *out = open_memstream(&s, &len);
    if (!out)
        return NULL;
    for (const char *p = word; *p;) {
        int r = repl_at(p);
        if (r < 0) {
            fputc(*p++, out);
            continue;
        }
        const char *v;
        size_t vlen;
        repl_value(r, in, num, &v, &vlen);
        if (quote)
            put_quoted(out, v, vlen);
        else
            fwrite(v, 1, vlen, out);
        p += strlen(repl_strings[r]);
    }
    if (fclose(out) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void cli_template_argv_free(char **argv, size_t argc)
{
    for (size_t i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

int cli_template_init(cli_template_t *t, char **words, size_t n, bool shell)
{
    int rc = 0;
    *t = (cli_template_t){.shell = shell};
    if (!shell && n == 1) {
        rc = split_words(words[0], &t->words, &t->nwords);
    } else if (!shell) {
        if ((t->words = calloc(n, sizeof *t->words)) != NULL)
            for (t->nwords = 0; t->nwords < n; t->nwords++)
                if (!(t->words[t->nwords] = strdup(words[t->nwords])))
                    break;
        rc = t->words && t->nwords == n ? 0 : TASKQ_ENOMEM;
    } else {
        size_t len = 0;
        for (size_t i = 0; i < n; i++)
            len += strlen(words[i]) + 1;
        char *line = malloc(len + 1), *q = line;
        if ((t->words = malloc(sizeof *t->words)) != NULL && line) {
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen(words[i]);
                if (i)
                    *q++ = ' ';
                memcpy(q, words[i], l);
                q += l;
            }
            *q = '\0';
            t->words[t->nwords++] = line;
        } else {
            free(line);
            rc = TASKQ_ENOMEM;
        }
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < t->nwords; i++)
        for (const char *p = t->words[i]; *p && !t->has_repl; p++)
            t->has_repl = repl_at(p) >= 0;
    return 0;
}

void cli_template_fini(cli_template_t *t)
{
    if (t->words)
        cli_template_argv_free(t->words, t->nwords);
    *t = (cli_template_t){0};
}

int cli_template_build(const cli_template_t *t, const char *in, size_t seq, char ***ret_argv,
                       size_t *ret_argc, char **ret_cmd)
{
    char num[24];
    snprintf(num, sizeof num, "%zu", seq);
    size_t n = t->shell ? 3 : t->nwords + !t->has_repl;
    char **argv = calloc(n, sizeof *argv);
    char *cmd = NULL;
    size_t cmd_len;
    FILE *out = NULL;
    if (!argv)
        return TASKQ_ENOMEM;
    if (t->shell) {
        /* The input goes after the line when it names none, as a word. */
        char *line = expand(t->words[0], in, num, true);
        out = line ? open_memstream(&cmd, &cmd_len) : NULL;
        if (out) {
            fputs(line, out);
            if (!t->has_repl) {
                fputc(' ', out);
                put_quoted(out, in, strlen(in));
            }
        }
        free(line);
        if (!out || fclose(out) != 0)
            goto fail;
        argv[0] = strdup("sh");
        argv[1] = strdup("-c");
        argv[2] = strdup(cmd);
        if (!argv[0] || !argv[1] || !argv[2])
            goto fail;
    } else {
        for (size_t i = 0; i < t->nwords; i++)
            if (!(argv[i] = expand(t->words[i], in, num, false)))
                goto fail;
        if (!t->has_repl && !(argv[t->nwords] = strdup(in)))
            goto fail;
        if (!(out = open_memstream(&cmd, &cmd_len)))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (i)
                fputc(' ', out);
            put_quoted(out, argv[i], strlen(argv[i]));
        }
        if (fclose(out) != 0)
            goto fail;
    }
    *ret_argv = argv;
    *ret_argc = n;
    *ret_cmd = cmd;
    return 0;
fail:
    free(cmd);
    cli_template_argv_free(argv, n);
    return TASKQ_ENOMEM;
}
