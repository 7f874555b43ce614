/*
 * options.h - the option driver of the taskq programs (taskqd,
 * taskq-worker).  Each program describes its options once, in a table of
 * tq_opt_t; this module reads that table to parse the command line
 * (getopt_long), to parse a config file (libinih), to apply defaults, to
 * validate every value with a message naming where it came from, and to
 * print --help.
 *
 * Config files are INI: `key = value` lines whose keys are the long option
 * names, `#` and `;` comment lines, blank lines, and at most the section
 * [PROG] (the program's name; any other section is an error).  Leading
 * blanks are ignored, so there are no continuation lines.  Flags take
 * true/false, yes/no, on/off or 1/0.  A repeatable option (TQ_OPT_LIST) may
 * repeat; any other option given twice keeps its last value.  Options of
 * the kinds from TQ_OPT_CHECK on (--check-config, --config, --help,
 * --version) and hidden options are command-line only.
 *
 * Precedence: the command line, then the file, then the defaults.  A
 * repeatable option given on the command line replaces every value the
 * file gave it.
 *
 * Messages go to stderr as "PROG: --name wants ..., not 'VALUE'" for the
 * command line and "PROG: FILE:LINE: name: wants ..., not 'VALUE'" for a
 * file.
 */
#ifndef TQ_OPTIONS_H
#define TQ_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TQ_OPTS_MAX 64 /* options in one table */

typedef enum tq_opt_kind {
    TQ_OPT_STR,    /* const char *; max: most bytes (then at least 1), 0: any string */
    TQ_OPT_LIST,   /* TQ_OPT_STR, repeatable: const char *[min] with a size_t count */
    TQ_OPT_FLAG,   /* bool, set by the bare option or a file's true/false/... */
    TQ_OPT_UINT,   /* uint32_t, a decimal number from min to max */
    TQ_OPT_SIZE,   /* uint64_t bytes, decimal with an optional K, M, G or T (1024s) */
    TQ_OPT_MODE,   /* uint32_t, an octal file mode up to max */
    TQ_OPT_LEVEL,  /* const char *, a log level name; also sets tq_log_level */
    TQ_OPT_CUSTOM, /* whatever tq_optspec_t.custom reads into the field */
    /* Command line only: */
    TQ_OPT_CHECK,   /* --check-config: sets tq_opts_t.check */
    TQ_OPT_CONFIG,  /* --config FILE: the file to read; "" none; def: read if it exists */
    TQ_OPT_HELP,    /* print --help to stdout, exit 0 */
    TQ_OPT_VERSION, /* print tq_optspec_t.version, exit 0 */
} tq_opt_kind_t;

/*
 * One option.  field and count are offsets (offsetof) in the program's
 * configuration struct.
 */
typedef struct tq_opt {
    const char *name; /* long name, without "--"; the key in a config file */
    int short_name;   /* single-letter alias, or 0 */
    tq_opt_kind_t kind;
    const char *arg;  /* the value's name in --help; NULL: takes no value */
    uint32_t min;     /* TQ_OPT_UINT: smallest value; TQ_OPT_LIST: most values */
    uint32_t max;     /* TQ_OPT_UINT, TQ_OPT_MODE: largest; TQ_OPT_STR, _LIST: longest */
    const char *def;  /* default, written as a value would be; NULL: none (a list's
                       * default applies when neither the file nor argv gave one) */
    size_t field;     /* where the value goes */
    size_t count;     /* TQ_OPT_LIST: offset of its size_t count */
    const char *help; /* one line for --help; NULL: hidden (and not in files) */
} tq_opt_t;

/* A program's options and the words around them. */
typedef struct tq_optspec {
    const char *prog;         /* message prefix, and the one section files may have */
    const tq_opt_t *opts;     /* the table */
    size_t n_opts;            /* its rows, at most TQ_OPTS_MAX */
    const char *synopsis;     /* --help: what comes before the options */
    void (*epilog)(FILE *f);  /* --help: prints what follows them; may be NULL */
    int width;                /* --help: width of the options' column */
    const char *version;      /* --version: the line printed */
    /* TQ_OPT_CUSTOM options: read value into field.  Returns NULL, or what
     * o wants, for the message ("full or normal"). */
    const char *(*custom)(const tq_opt_t *o, const char *value, void *field);
} tq_optspec_t;

/* What a parse found out besides the configuration. */
typedef struct tq_opts {
    const char *config;           /* the config file read, or NULL */
    bool check;                   /* --check-config was given */
    uint64_t on_argv;             /* bit i: option i was on the command line */
    bool logging;                 /* report errors through TQ_LOG (a reload) */
    char *held;                   /* while a file is read: its first error */
    struct tq_opts_str *strings;  /* copies of the file's values */
} tq_opts_t;

/*
 * Fill cfg (zeroed, or with the fields the table does not name already
 * set) from the defaults, the config file and argv, in that order; argv's
 * syntax, --help and --version are looked at first, so that --help works
 * whatever the file holds.  Initialises *st, which holds the file's values
 * that cfg points to until tq_opts_fini (cfg's other strings point into
 * argv and the table).  Uses getopt_long's globals (restarting it): main
 * thread only.  Returns -1 to go on, or the exit code to leave with: EX_OK
 * after --help or --version (printed to stdout), EX_USAGE after printing
 * what is wrong, EX_SOFTWARE for a table whose default is not valid,
 * EX_OSERR when out of memory.
 */
int tq_opts_parse(const tq_optspec_t *s, tq_opts_t *st, int argc, char **argv, void *cfg);

/*
 * Read the config file of st again (nothing if there is none) into a
 * scratch configuration of cfg_size bytes, for what a reload may change:
 * the log level (TQ_OPT_LEVEL sets tq_log_level), unless the command line
 * gave it.  Errors are logged (LOG_ERR) and leave the level as it was.
 * Returns 0, or -1 after an error.
 */
int tq_opts_reload(const tq_optspec_t *s, tq_opts_t *st, size_t cfg_size);

/* Free the file's values (cfg's pointers to them then dangle).  st may be
 * zeroed or already finished. */
void tq_opts_fini(tq_opts_t *st);

#endif /* TQ_OPTIONS_H */
