/*
 * main.c - taskqd's options and startup: one option table drives the
 * command line, the config file, validation and --help (common/options.c);
 * then bind, load, report ready, serve until SIGTERM/SIGINT.  Exit codes
 * come from <sysexits.h>.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
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
#include "keys.h"
#include "log.h"
#include "options.h"
#include "os.h"
#include "taskq.h"

/* What the option table fills: the broker's settings and main's own. */
typedef struct taskqd_opts {
    tqd_config_t cfg;      /* the broker's settings */
    const char *log_level; /* --log-level as given (it sets tq_log_level) */
} taskqd_opts_t;

/* The one TQ_OPT_CUSTOM option: --sync. */
static const char *parse_sync(const tq_opt_t *o, const char *value, void *field)
{
    if (strcmp(value, "full") != 0 && strcmp(value, "normal") != 0)
        return "full or normal";
    *(tqd_sync_t *)field = value[0] == 'f' ? TQD_SYNC_FULL : TQD_SYNC_NORMAL;
    return NULL;
}

#define CFG(f) offsetof(taskqd_opts_t, cfg.f)

static const tq_opt_t opts[] = {
    {"bind", 'b', TQ_OPT_LIST, "ENDPOINT", TQD_MAX_BINDS, 0, TASKQ_DEFAULT_ENDPOINT, CFG(binds),
     CFG(n_binds), "endpoint serving clients and workers; repeatable; port * picks a free one"},
    {"ready-file", 0, TQ_OPT_STR, "PATH", 0, 0, NULL, CFG(ready_file), 0,
     "once serving, write the bound endpoints there, one per line, atomically"},
    {"db", 0, TQ_OPT_STR, "PATH", 0, 0, TQD_DEFAULT_DB, CFG(db_path), 0,
     "SQLite database holding the tasks (its directory is created if missing)"},
    {"memory", 0, TQ_OPT_FLAG, NULL, 0, 0, NULL, CFG(memory), 0,
     "keep tasks in memory only: a restart forgets them"},
    {"sync", 0, TQ_OPT_CUSTOM, "LEVEL", 0, 0, "full", CFG(sync), 0,
     "full: a commit survives power loss; normal: survives a crash of taskqd"},
    {"heartbeat-ms", 0, TQ_OPT_UINT, "MS", 10, 600000, "1000", CFG(heartbeat_ms), 0,
     "heartbeat interval in milliseconds"},
    {"liveness", 0, TQ_OPT_UINT, "N", 2, 100, "3", CFG(liveness), 0,
     "heartbeats a worker may miss before it counts as dead"},
    {"max-queued", 0, TQ_OPT_UINT, "N", 1, 1000000000, "1000000", CFG(max_queued), 0,
     "most tasks queued at once; a SUBMIT beyond is refused QUEUE_FULL"},
    {"max-retained", 0, TQ_OPT_UINT, "N", 1, 1000000000, "1000000", CFG(max_retained), 0,
     "most unacknowledged outcomes kept; beyond, the oldest are forgotten"},
    {"max-frame", 0, TQ_OPT_UINT, "BYTES", 4096, 1073741824, "67108864", CFG(max_frame), 0,
     "largest message accepted"},
    {"result-ttl", 0, TQ_OPT_UINT, "SECONDS", 1, 31536000, "86400", CFG(result_ttl_s), 0,
     "how long an unacknowledged outcome is kept"},
    {"curve-secret", 0, TQ_OPT_STR, "FILE", 0, 0, NULL, CFG(curve_secret), 0,
     "the broker's CURVE secret key (taskq keygen): encrypt and authenticate every peer"},
    {"allow-clients", 0, TQ_OPT_STR, "DIR", 0, 0, NULL, CFG(allow.clients), 0,
     "with CURVE: public keys (*.pub) of the clients allowed in"},
    {"allow-workers", 0, TQ_OPT_STR, "DIR", 0, 0, NULL, CFG(allow.workers), 0,
     "with CURVE: public keys of the workers allowed in"},
    {"admin-keys", 0, TQ_OPT_STR, "DIR", 0, 0, NULL, CFG(allow.admins), 0,
     "with CURVE: public keys of clients that see and act on every task"},
    {"allow-exec", 0, TQ_OPT_STR, "DIR", 0, 0, NULL, CFG(allow.exec), 0,
     "with CURVE: public keys of clients that may submit exec tasks"},
    {"insecure", 0, TQ_OPT_FLAG, NULL, 0, 0, NULL, CFG(insecure), 0,
     "allow plain TCP on addresses beyond loopback (no CURVE: anyone who can connect gets in)"},
    {"ipc-mode", 0, TQ_OPT_MODE, "MODE", 0, 0777, "0660", CFG(ipc_mode), 0,
     "file mode of ipc:// sockets (who on this host may connect)"},
    {"ipc-group", 0, TQ_OPT_STR, "GROUP", 0, 0, NULL, CFG(ipc_group), 0,
     "group of ipc:// sockets"},
    {"worker-user", 0, TQ_OPT_LIST, "USER", TQD_MAX_WORKER_USERS, 0, NULL, CFG(worker_users),
     CFG(n_worker_users),
     "without CURVE: a local user that may serve as a worker besides root and taskqd's own; "
     "repeatable"},
    {"client-max-queued", 0, TQ_OPT_UINT, "N", 1, 1000000000, "1000000",
     CFG(client_max_queued), 0,
     "most unfinished tasks of one client; a SUBMIT beyond is refused LIMIT"},
    {"client-max-bytes", 0, TQ_OPT_UINT, "BYTES", 1, 4294967295u, "1073741824",
     CFG(client_max_bytes), 0, "most argument bytes of one client's unfinished tasks"},
    {"handshake-ms", 0, TQ_OPT_UINT, "MS", 100, 600000, "10000", CFG(handshake_ms), 0,
     "a connection that says no valid HELLO within this time is dropped"},
    {"max-connections", 0, TQ_OPT_UINT, "N", 1, 1000000, "10000", CFG(max_connections), 0,
     "connections open at once; more are closed as they come"},
    {"max-malformed", 0, TQ_OPT_UINT, "N", 0, 1000000, "100", CFG(max_malformed), 0,
     "malformed messages a connection may send before it is dropped"},
    {"log-level", 0, TQ_OPT_LEVEL, "LEVEL", 0, 0, "notice", offsetof(taskqd_opts_t, log_level),
     0, "err, warning, notice, info or debug; SIGHUP re-reads it from the config file"},
    {"config", 0, TQ_OPT_CONFIG, "FILE", 0, 0, "/etc/taskq/taskqd.conf", 0, 0,
     "read options from FILE (key = value; the default only if it exists; '': none)"},
    {"check-config", 0, TQ_OPT_CHECK, NULL, 0, 0, NULL, 0, 0,
     "check the file and the options (keys, directories, group) and exit"},
    {"help", 'h', TQ_OPT_HELP, NULL, 0, 0, NULL, 0, 0, "show this help and exit"},
    {"version", 'V', TQ_OPT_VERSION, NULL, 0, 0, NULL, 0, 0, "show the version and exit"},
};

static void epilog(FILE *f)
{
    fprintf(f,
            "\nSIGHUP re-reads the allow-lists, and the log level from the config file (the\n"
            "only option it re-reads).  Exit status: 0 after SIGTERM or SIGINT, or when\n"
            "--check-config finds no fault; %d bad usage or configuration; %d cannot bind;\n"
            "%d system error; %d cannot write the ready file.\n",
            EX_USAGE, EX_UNAVAILABLE, EX_OSERR, EX_CANTCREAT);
}

#define STR_(x) #x
#define STR(x) STR_(x)

static const tq_optspec_t spec = {
    .prog = "taskqd",
    .opts = opts,
    .n_opts = sizeof opts / sizeof opts[0],
    .synopsis = "Usage: taskqd [OPTION]...\n"
                "Run the taskq broker: clients submit tasks, workers run them.\n\n",
    .epilog = epilog,
    .width = 26,
    .version = "taskqd " TASKQ_VERSION_STRING " (protocol " STR(TASKQ_PROTO_VERSION) ")",
    .custom = parse_sync,
};

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
    for (size_t i = 0; i < cfg->n_worker_users; i++) {
        struct passwd *pw = getpwnam(cfg->worker_users[i]);
        if (!pw) {
            fprintf(stderr, "taskqd: --worker-user: no user named '%s'\n", cfg->worker_users[i]);
            return EX_USAGE;
        }
        cfg->worker_uids[i] = pw->pw_uid;
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

/* --check-config: the key file and the allow-lists the broker will read
 * can be read, and hold keys.  Returns -1 to go on, or EX_USAGE after
 * saying why. */
static int check_readable(const tqd_config_t *cfg)
{
    char key[TQ_KEY_Z85_SIZE], err[512];
    if (cfg->curve_secret && tq_key_read(cfg->curve_secret, key, err, sizeof err) != 0) {
        fprintf(stderr, "taskqd: --curve-secret: %s\n", err);
        return EX_USAGE;
    }
    const tqd_auth_dirs_t *a = &cfg->allow;
    const char *const dirs[] = {a->clients, a->workers, a->admins, a->exec};
    const char *const names[] = {"allow-clients", "allow-workers", "admin-keys", "allow-exec"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        DIR *d = dirs[i] ? opendir(dirs[i]) : NULL;
        if (dirs[i] && !d) {
            fprintf(stderr, "taskqd: --%s: cannot read %s: %s\n", names[i], dirs[i],
                    strerror(errno));
            return EX_USAGE;
        }
        if (d)
            closedir(d);
    }
    /* Every key file in them, as the broker will load them (it says why
     * one is not a key). */
    return tqd_auth_check(a) < 0 ? EX_USAGE : -1;
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

/* SIGHUP, from the broker's loop: the log level from the config file (the
 * allow-lists are the broker's). */
static void reload(void *arg)
{
    tq_opts_t *st = arg;
    if (st->config && tq_opts_reload(&spec, st, sizeof(taskqd_opts_t)) == 0)
        TQ_LOG(LOG_NOTICE, "log level re-read from %s", st->config);
}

/* Bind, load, report ready and serve until SIGTERM or SIGINT.  Returns the
 * exit code. */
static int serve(const tqd_config_t *cfg)
{
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
    if (tqd_broker_new(cfg, &b) < 0)
        return EX_OSERR;

    char ready[TQD_MAX_BINDS * 260] = "";
    size_t len = 0;
    for (size_t i = 0; i < cfg->n_binds; i++) {
        char ep[256];
        rc = tqd_broker_bind(b, cfg->binds[i], ep, sizeof ep);
        if (rc < 0) {
            TQ_LOG(LOG_ERR, "cannot bind %s: %s", cfg->binds[i], zmq_strerror(-rc));
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
    if (cfg->ready_file && (rc = tqd_os_write_atomic(cfg->ready_file, ready, len)) < 0) {
        TQ_LOG(LOG_ERR, "cannot write the ready file %s: %s", cfg->ready_file, strerror(-rc));
        tqd_broker_destroy(&b);
        return EX_CANTCREAT;
    }
    tqd_os_notify("READY=1\nSTATUS=serving");
    TQ_LOG(LOG_NOTICE, "taskqd %s ready (store %s, id %016" PRIx64 ")", TASKQ_VERSION_STRING,
            b->store->ops->name, b->store->id);

    rc = tqd_broker_run(b);
    if (cfg->ready_file)
        unlink(cfg->ready_file);
    tqd_broker_destroy(&b);
    return rc < 0 ? EX_OSERR : EX_OK;
}

int main(int argc, char **argv)
{
    /* Payloads come and go in bursts: keep freed memory for the next ones
     * instead of returning it to the kernel and faulting it in again. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    taskqd_opts_t o = {0};
    tq_opts_t st;
    int code = tq_opts_parse(&spec, &st, argc, argv, &o);
    if (code < 0)
        code = check_security(&o.cfg);
    if (code < 0 && st.check && (code = check_readable(&o.cfg)) < 0) {
        puts("taskqd: configuration ok");
        code = EX_OK;
    }
    if (code < 0) {
        o.cfg.reload = reload;
        o.cfg.reload_arg = &st;
        code = serve(&o.cfg);
    }
    tq_opts_fini(&st);
    return code;
}
