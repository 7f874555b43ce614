/*
 * main.c - taskqd's command line and startup: one option table drives
 * parsing, validation and --help; then bind, load, report ready, serve
 * until SIGTERM/SIGINT.  Exit codes come from <sysexits.h>.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>
#include <zmq.h>

#include "broker.h"
#include "log.h"
#include "os.h"
#include "taskq.h"

typedef enum opt_kind {
    OPT_BIND,    /* an endpoint; repeatable */
    OPT_PATH,    /* a file name */
    OPT_UINT,    /* an unsigned integer within [min, max] */
    OPT_LEVEL,   /* a log level name */
    OPT_FLAG,    /* a flag: sets a bool */
    OPT_SYNC,    /* a synchronous level name: full or normal */
    OPT_MODE,    /* an octal file mode, 0 to 0777 */
    OPT_HELP,    /* print help, exit 0 */
    OPT_VERSION, /* print the version, exit 0 */
} opt_kind_t;

typedef struct opt_def {
    const char *name; /* long name, without "--" */
    int short_name;   /* single-letter alias, or 0 */
    opt_kind_t kind;  /* how the value is read */
    const char *arg;  /* the value's name in --help; NULL: a flag */
    uint32_t min;     /* OPT_UINT: smallest value */
    uint32_t max;     /* OPT_UINT: largest value */
    const char *def;  /* default, as it would be written; NULL: none */
    size_t field;     /* OPT_UINT, OPT_PATH, OPT_FLAG, OPT_SYNC, OPT_MODE: offset in tqd_config_t */
    const char *help; /* one line for --help */
} opt_def_t;

#define CFG(f) offsetof(tqd_config_t, f)

static const opt_def_t opts[] = {
    {"bind", 'b', OPT_BIND, "ENDPOINT", 0, 0, TASKQ_DEFAULT_ENDPOINT, 0,
     "endpoint serving clients and workers; repeatable; port * picks a free one"},
    {"ready-file", 0, OPT_PATH, "PATH", 0, 0, NULL, CFG(ready_file),
     "once serving, write the bound endpoints there, one per line, atomically"},
    {"db", 0, OPT_PATH, "PATH", 0, 0, TQD_DEFAULT_DB, CFG(db_path),
     "SQLite database holding the tasks (its directory is created if missing)"},
    {"memory", 0, OPT_FLAG, NULL, 0, 0, NULL, CFG(memory),
     "keep tasks in memory only: a restart forgets them"},
    {"sync", 0, OPT_SYNC, "LEVEL", 0, 0, "full", CFG(sync),
     "full: a commit survives power loss; normal: survives a crash of taskqd"},
    {"heartbeat-ms", 0, OPT_UINT, "MS", 10, 600000, "1000", CFG(heartbeat_ms),
     "heartbeat interval in milliseconds"},
    {"liveness", 0, OPT_UINT, "N", 2, 100, "3", CFG(liveness),
     "heartbeats a worker may miss before it counts as dead"},
    {"max-queued", 0, OPT_UINT, "N", 1, 1000000000, "1000000", CFG(max_queued),
     "most tasks queued at once; a SUBMIT beyond is refused QUEUE_FULL"},
    {"max-retained", 0, OPT_UINT, "N", 1, 1000000000, "1000000", CFG(max_retained),
     "most unacknowledged outcomes kept; beyond, the oldest are forgotten"},
    {"max-frame", 0, OPT_UINT, "BYTES", 4096, 1073741824, "67108864", CFG(max_frame),
     "largest message accepted"},
    {"result-ttl", 0, OPT_UINT, "SECONDS", 1, 31536000, "86400", CFG(result_ttl_s),
     "how long an unacknowledged outcome is kept"},
    {"curve-secret", 0, OPT_PATH, "FILE", 0, 0, NULL, CFG(curve_secret),
     "the broker's CURVE secret key (taskq keygen): encrypt and authenticate every peer"},
    {"allow-clients", 0, OPT_PATH, "DIR", 0, 0, NULL, CFG(allow.clients),
     "with CURVE: public keys (*.pub) of the clients allowed in"},
    {"allow-workers", 0, OPT_PATH, "DIR", 0, 0, NULL, CFG(allow.workers),
     "with CURVE: public keys of the workers allowed in"},
    {"admin-keys", 0, OPT_PATH, "DIR", 0, 0, NULL, CFG(allow.admins),
     "with CURVE: public keys of clients that see and act on every task"},
    {"allow-exec", 0, OPT_PATH, "DIR", 0, 0, NULL, CFG(allow.exec),
     "with CURVE: public keys of clients that may submit exec tasks"},
    {"insecure", 0, OPT_FLAG, NULL, 0, 0, NULL, CFG(insecure),
     "allow plain TCP on addresses beyond loopback (no CURVE: anyone who can connect gets in)"},
    {"ipc-mode", 0, OPT_MODE, "MODE", 0, 0, "0660", CFG(ipc_mode),
     "file mode of ipc:// sockets (who on this host may connect)"},
    {"ipc-group", 0, OPT_PATH, "GROUP", 0, 0, NULL, CFG(ipc_group),
     "group of ipc:// sockets"},
    {"client-max-queued", 0, OPT_UINT, "N", 1, 1000000000, "1000000", CFG(client_max_queued),
     "most unfinished tasks of one client; a SUBMIT beyond is refused LIMIT"},
    {"client-max-bytes", 0, OPT_UINT, "BYTES", 1, 4294967295u, "1073741824",
     CFG(client_max_bytes), "most argument bytes of one client's unfinished tasks"},
    {"handshake-ms", 0, OPT_UINT, "MS", 100, 600000, "10000", CFG(handshake_ms),
     "a connection that says no valid HELLO within this time is dropped"},
    {"max-connections", 0, OPT_UINT, "N", 1, 1000000, "10000", CFG(max_connections),
     "connections open at once; more are closed as they come"},
    {"max-malformed", 0, OPT_UINT, "N", 0, 1000000, "100", CFG(max_malformed),
     "malformed messages a connection may send before it is dropped"},
    {"log-level", 0, OPT_LEVEL, "LEVEL", 0, 0, "notice", 0, "err, warning, notice, info or debug"},
    {"help", 'h', OPT_HELP, NULL, 0, 0, NULL, 0, "show this help and exit"},
    {"version", 'V', OPT_VERSION, NULL, 0, 0, NULL, 0, "show the version and exit"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: taskqd [OPTION]...\n"
               "Run the taskq broker: clients submit tasks, workers run them.\n\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def_t *o = &opts[i];
        char left[40];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(f, "  %-26s %s", left, o->help);
        if (o->kind == OPT_UINT)
            fprintf(f, " [%" PRIu32 "..%" PRIu32 ", default %s]", o->min, o->max, o->def);
        else if (o->def)
            fprintf(f, " [default %s]", o->def);
        fputc('\n', f);
    }
    fprintf(f,
            "\nExit status: 0 after SIGTERM or SIGINT; %d bad usage; %d cannot bind;\n"
            "%d system error; %d cannot write the ready file.\n",
            EX_USAGE, EX_UNAVAILABLE, EX_OSERR, EX_CANTCREAT);
}

/* Read value into cfg as option o says.  0, or -1 after printing why. */
static int apply(const opt_def_t *o, const char *value, tqd_config_t *cfg)
{
    switch (o->kind) {
    case OPT_BIND:
        if (cfg->n_binds == TQD_MAX_BINDS) {
            fprintf(stderr, "taskqd: at most %d --bind options\n", TQD_MAX_BINDS);
            return -1;
        }
        cfg->binds[cfg->n_binds++] = value;
        return 0;
    case OPT_PATH:
        *(const char **)((char *)cfg + o->field) = value;
        return 0;
    case OPT_UINT: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (value[0] < '0' || value[0] > '9' || *end || errno || v < o->min || v > o->max) {
            fprintf(stderr,
                    "taskqd: --%s wants a whole number from %" PRIu32 " to %" PRIu32 ", not '%s'\n",
                    o->name, o->min, o->max, value);
            return -1;
        }
        *(uint32_t *)((char *)cfg + o->field) = (uint32_t)v;
        return 0;
    }
    case OPT_FLAG:
        *(bool *)((char *)cfg + o->field) = true;
        return 0;
    case OPT_SYNC:
        if (strcmp(value, "full") != 0 && strcmp(value, "normal") != 0) {
            fprintf(stderr, "taskqd: --%s wants full or normal, not '%s'\n", o->name, value);
            return -1;
        }
        *(tqd_sync_t *)((char *)cfg + o->field) = value[0] == 'f' ? TQD_SYNC_FULL : TQD_SYNC_NORMAL;
        return 0;
    case OPT_MODE: {
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 8);
        if (value[0] < '0' || value[0] > '7' || *end || errno || v > 0777) {
            fprintf(stderr, "taskqd: --%s wants an octal mode such as 0660, not '%s'\n", o->name,
                    value);
            return -1;
        }
        *(uint32_t *)((char *)cfg + o->field) = (uint32_t)v;
        return 0;
    }
    case OPT_LEVEL:
        if (tq_log_parse_level(value, &tq_log_level) < 0) {
            fprintf(stderr, "taskqd: --%s wants one of %s, not '%s'\n", o->name, o->help, value);
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

/* Is endpoint reachable from this host only: ipc://, inproc://, or TCP
 * on a loopback address? */
static bool endpoint_is_local(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return true;
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *host = ep + 6, *colon = strrchr(host, ':');
    size_t n = colon ? (size_t)(colon - host) : 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    char h[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof h)
        return false;
    memcpy(h, host, n);
    h[n] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcmp(h, "localhost") == 0 || strcmp(h, "lo") == 0;
}

/* The options that go together, and the safe default: without CURVE, only
 * endpoints of this host.  Returns -1 to go on, or EX_USAGE after saying
 * why. */
static int check_security(tqd_config_t *cfg)
{
    const tqd_auth_dirs_t *d = &cfg->allow;
    bool lists = d->clients || d->workers || d->admins || d->exec;
    if (lists && !cfg->curve_secret) {
        fprintf(stderr, "taskqd: allow-lists (--allow-clients, --allow-workers, --admin-keys, "
                        "--allow-exec) need --curve-secret\n");
        return EX_USAGE;
    }
    if (cfg->curve_secret && !d->clients && !d->workers && !d->admins) {
        fprintf(stderr, "taskqd: --curve-secret without --allow-clients, --allow-workers or "
                        "--admin-keys would let nobody in\n");
        return EX_USAGE;
    }
    for (size_t i = 0; i < cfg->n_binds && !cfg->curve_secret && !cfg->insecure; i++) {
        if (!endpoint_is_local(cfg->binds[i])) {
            fprintf(stderr,
                    "taskqd: refusing to serve %s without encryption: anyone who can reach it\n"
                    "could submit tasks and read results.  Set up CURVE keys:\n"
                    "  taskq keygen /etc/taskq/server      (then clients/, workers/ dirs of .pub "
                    "files)\n"
                    "  taskqd --curve-secret /etc/taskq/server.key --allow-clients DIR "
                    "--allow-workers DIR ...\n"
                    "or bind a loopback or ipc:// endpoint, or pass --insecure on a trusted "
                    "network.\n",
                    cfg->binds[i]);
            return EX_USAGE;
        }
    }
    cfg->ipc_gid = -1;
    if (cfg->ipc_group) {
        struct group *g = getgrnam(cfg->ipc_group);
        if (!g) {
            fprintf(stderr, "taskqd: --ipc-group: no group named '%s'\n", cfg->ipc_group);
            return EX_USAGE;
        }
        cfg->ipc_gid = g->gr_gid;
    }
    return -1;
}

/*
 * Fill cfg from the defaults and argv.  Returns -1 to go on, or the exit
 * code to leave with (EX_OK after --help or --version, EX_USAGE).
 */
static int parse_args(int argc, char **argv, tqd_config_t *cfg)
{
    struct option longopts[N_OPTS + 1];
    char shortopts[2 * N_OPTS + 2] = ":";
    size_t ns = 1;
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_def_t *o = &opts[i];
        longopts[i] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL,
                                      o->short_name ? o->short_name : 256 + (int)i};
        if (o->short_name) {
            shortopts[ns++] = (char)o->short_name;
            if (o->arg)
                shortopts[ns++] = ':';
        }
        if (o->def && o->kind != OPT_BIND && apply(o, o->def, cfg) < 0)
            return EX_SOFTWARE;
    }
    longopts[N_OPTS] = (struct option){0};
    shortopts[ns] = '\0';

    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == '?' || c == ':') {
            fprintf(stderr, "taskqd: %s '%s'; see taskqd --help\n",
                    c == '?' ? "unknown option" : "missing value for", argv[optind - 1]);
            return EX_USAGE;
        }
        const opt_def_t *o = NULL;
        for (size_t i = 0; i < N_OPTS && !o; i++)
            if (c == (opts[i].short_name ? opts[i].short_name : 256 + (int)i))
                o = &opts[i];
        if (o->kind == OPT_HELP) {
            usage(stdout);
            return EX_OK;
        }
        if (o->kind == OPT_VERSION) {
            printf("taskqd %s (protocol %d)\n", TASKQ_VERSION_STRING, TASKQ_PROTO_VERSION);
            return EX_OK;
        }
        if (apply(o, optarg, cfg) < 0)
            return EX_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "taskqd: unexpected argument '%s'; see taskqd --help\n", argv[optind]);
        return EX_USAGE;
    }
    if (cfg->n_binds == 0)
        cfg->binds[cfg->n_binds++] = TASKQ_DEFAULT_ENDPOINT;
    return check_security(cfg);
}

static int bind_exit_code(int err)
{
    switch (err) {
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
        return EX_USAGE;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case ENODEV:
        return EX_UNAVAILABLE;
    default:
        return EX_OSERR;
    }
}

int main(int argc, char **argv)
{
    /* Payloads come and go in bursts: keep freed memory for the next ones
     * instead of returning it to the kernel and faulting it in again. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    tqd_config_t cfg;
    int code = parse_args(argc, argv, &cfg);
    if (code >= 0)
        return code;
    int rc = tqd_os_signals();
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot install signal handlers: %s", strerror(-rc));
        return EX_OSERR;
    }
    /* Every connection is a descriptor: allow as many as the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    tqd_broker_t *b;
    if (tqd_broker_new(&cfg, &b) < 0)
        return EX_OSERR;

    char ready[TQD_MAX_BINDS * 260] = "";
    size_t len = 0;
    for (size_t i = 0; i < cfg.n_binds; i++) {
        char ep[256];
        rc = tqd_broker_bind(b, cfg.binds[i], ep, sizeof ep);
        if (rc < 0) {
            TQ_LOG(LOG_ERR, "cannot bind %s: %s", cfg.binds[i], zmq_strerror(-rc));
            tqd_broker_destroy(&b);
            return bind_exit_code(-rc);
        }
        len += (size_t)snprintf(ready + len, sizeof ready - len, "%s\n", ep);
        TQ_LOG(LOG_NOTICE, "serving on %s", ep);
    }
    if (tqd_broker_recover(b) < 0) {
        tqd_broker_destroy(&b);
        return EX_IOERR;
    }
    if (cfg.ready_file && (rc = tqd_os_write_atomic(cfg.ready_file, ready, len)) < 0) {
        TQ_LOG(LOG_ERR, "cannot write the ready file %s: %s", cfg.ready_file, strerror(-rc));
        tqd_broker_destroy(&b);
        return EX_CANTCREAT;
    }
    tqd_os_notify("READY=1\nSTATUS=serving");
    TQ_LOG(LOG_NOTICE, "taskqd %s ready (store %s, id %016" PRIx64 ")", TASKQ_VERSION_STRING,
            b->store->ops->name, b->store->id);

    rc = tqd_broker_run(b);
    if (cfg.ready_file)
        unlink(cfg.ready_file);
    tqd_broker_destroy(&b);
    return rc < 0 ? EX_OSERR : EX_OK;
}
