/*
 * cli_template.h - the command template of `taskq map`: the words of
 * COMMAND, and the argv and the shown command line of the job for one
 * input, with the replacement strings {} {#} {.} {/} {//} {/.} expanded.
 */
#ifndef TASKQ_CLI_TEMPLATE_H
#define TASKQ_CLI_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cli_template {
    char **words;  /* its words, or with shell its one line */
    size_t nwords;
    bool shell;    /* each job runs its line with sh -c */
    bool has_repl; /* a word holds a replacement string */
} cli_template_t;

/*
 * Set up t from the command's words[0..n-1] (n >= 1; they stay the
 * caller's): with shell, the words joined by spaces (as GNU parallel
 * does); else one word is split by sh's quoting rules, without expansions,
 * and several words are the argv as they are (the calling shell split
 * them already).  Returns 0, TASKQ_EINVAL (one word with a quote that is
 * not closed) or TASKQ_ENOMEM.  On success t->nwords is 0 if the one word
 * held only blanks.  Whatever it returns, free t with cli_template_fini().
 */
int cli_template_init(cli_template_t *t, char **words, size_t n, bool shell);

/* Free what t holds and zero it.  Safe on a zeroed t and twice. */
void cli_template_fini(cli_template_t *t);

/*
 * The job for input in, whose number is seq ({#}): its argv into
 * *ret_argv and *ret_argc (malloc'ed words; free them with
 * cli_template_argv_free()) and the command as shown in messages and the
 * joblog into *ret_cmd (malloc'ed; the caller frees it).  Without a
 * replacement string the input is added as the last argument.  With
 * shell the argv is sh -c LINE and the values put into LINE are quoted
 * for sh.  Returns 0 or TASKQ_ENOMEM; the outputs are written only on
 * success.
 */
int cli_template_build(const cli_template_t *t, const char *in, size_t seq, char ***ret_argv,
                       size_t *ret_argc, char **ret_cmd);

/* Free argv[0..argc-1] and argv, as cli_template_build() returns them.
 * Elements may be NULL. */
void cli_template_argv_free(char **argv, size_t argc);

#endif /* TASKQ_CLI_TEMPLATE_H */
