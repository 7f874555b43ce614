/*
 * cli_keygen.c - `taskq keygen`: write a new CURVE key pair, NAME.pub and
 * NAME.key, for a broker, a client or a worker.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keys.h"

static const char keygen_usage[] =
    "Usage: taskq keygen [--force] NAME\n"
    "\n"
    "Makes a new CURVE key pair and writes it to two files:\n"
    "  NAME.pub  the public key (mode 0644): give it to whoever must know the key\n"
    "  NAME.key  the secret key (mode 0600): keep it on this machine, private\n"
    "NAME may include a directory.  Then prints the public key.\n"
    "\n"
    "The broker runs with its secret key (taskqd --curve-secret BROKER.key) and\n"
    "directories of the public keys it lets in (--allow-clients DIR,\n"
    "--allow-workers DIR, ...).  Clients and workers give the broker's public key\n"
    "and their own secret key:\n"
    "  taskq --curve-server-key BROKER.pub --curve-key NAME.key status\n"
    "  taskq-worker --curve-server-key BROKER.pub --curve-key NAME.key --exec\n"
    "\n"
    "Options:\n"
    "  -f, --force  replace NAME.pub and NAME.key if they exist\n"
    "  -h, --help   this help\n"
    "\n"
    "Exit status:\n"
    "  0    the pair was written\n"
    "  1    NAME.pub or NAME.key exists (without --force), or a file could not be\n"
    "       written (then neither is left behind)\n"
    "  2    bad command line\n";

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cli_keygen(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    bool force = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            force = true;
            break;
        case 'h':
            fputs(keygen_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    if (optind >= argc)
        return cli_usage(ctx, "keygen", "give the NAME of the key pair");
    if (argc - optind > 1)
        return cli_usage(ctx, "keygen", "unexpected argument \"%s\"", argv[optind + 1]);
    const char *name = argv[optind];
    if (!name[0] || ends_with(name, "/"))
        return cli_usage(ctx, "keygen", "\"%s\" is not a file name", name);
    if (ends_with(name, ".pub") || ends_with(name, ".key"))
        return cli_usage(ctx, "keygen",
                         "give NAME without .pub or .key: keygen writes NAME.pub and NAME.key");

    char err[512];
    int rc = tq_key_write_pair(name, force, err, sizeof err);
    if (rc == -EEXIST) {
        cli_error(ctx, "keygen: %s; --force replaces %s.pub and %s.key", err, name, name);
        return CLI_EXIT_FAILED;
    }
    if (rc != 0) {
        cli_error(ctx, "keygen: %s", err);
        return CLI_EXIT_FAILED;
    }
    /* Read the public key back: what the file holds is what counts. */
    char pub_path[4200], pub[TQ_KEY_Z85_SIZE];
    snprintf(pub_path, sizeof pub_path, "%s.pub", name);
    if (tq_key_read(pub_path, pub, err, sizeof err) != 0) {
        cli_error(ctx, "keygen: %s", err);
        return CLI_EXIT_FAILED;
    }
    printf("wrote %s.pub and %s.key (secret, mode 0600)\npublic key: %s\n", name, name, pub);
    if (fflush(stdout) != 0) {
        cli_error(ctx, "keygen: cannot write to standard output: %s", strerror(errno));
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}
