/*
 * tw_main.c - taskq-worker's options (one table drives the command line,
 * the config file, validation and --help: common/options.c), and the
 * supervisor's main thread: start the pool, then turn SIGTERM and SIGINT
 * into a graceful stop, a grace period, and a second SIGINT into an
 * immediate one.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"
#include "keys.h"
#include "log.h"
#include "options.h"
#include "pool.h"
#include "taskq.h"

/* ---- Options ------------------------------------------------------------- */

#define CFG(f) offsetof(tw_config_t, f)

static const tq_opt_t opts[] = {
    {"broker", 'b', TQ_OPT_STR, "ENDPOINT", 0, 1024, NULL, CFG(broker), 0,
     "the broker [default $TASKQ_BROKER, else " TASKQ_DEFAULT_ENDPOINT "]"},
    {"procs", 'p', TQ_OPT_UINT, "N", 1, 1024, NULL, CFG(procs), 0,
     "processes in the pool [default: the CPUs this process may use, less one]"},
    {"queue", 'q', TQ_OPT_LIST, "NAME", TW_MAX_QUEUES, 255, NULL, CFG(queues), CFG(n_queues),
     "serve this queue; repeatable [default: default]"},
    {"exec", 0, TQ_OPT_FLAG, NULL, 0, 0, NULL, CFG(exec), 0,
     "run shell commands: serve the built-in function exec"},
    {"load", 'l', TQ_OPT_LIST, "PLUGIN.so", TW_MAX_PLUGINS, 4096, NULL, CFG(plugins),
     CFG(n_plugins), "load a plugin (dlopen) and serve its functions; repeatable"},
    {"name", 'n', TQ_OPT_STR, "NAME", 0, TW_NAME_MAX, NULL, CFG(name), 0,
     "name shown in broker stats, with /SLOT added [default: HOST-PID]"},
    {"max-tasks-per-proc", 0, TQ_OPT_UINT, "N", 0, 1000000000, "0", CFG(max_tasks), 0,
     "replace a process after it ran N tasks; 0: never"},
    {"mem-limit", 0, TQ_OPT_SIZE, "SIZE", 0, 0, "0", CFG(mem_limit), 0,
     "address space limit of each process, e.g. 512M or 2G; 0: none"},
    {"nice", 0, TQ_OPT_UINT, "N", 0, 19, "0", CFG(nice), 0, "lower the processes' priority by N"},
    {"grace", 0, TQ_OPT_UINT, "S", 0, 86400, "30", CFG(grace_s), 0,
     "on SIGTERM, seconds the running tasks have to finish"},
    {"log-level", 0, TQ_OPT_LEVEL, "LEVEL", 0, 0, "notice", CFG(log_level), 0,
     "err, warning, notice, info or debug"},
    {"curve-server-key", 0, TQ_OPT_STR, "FILE", 0, 4096, NULL, CFG(curve_server_key), 0,
     "the broker's public key (its .pub file): use CurveZMQ; needs --curve-key"},
    {"curve-key", 0, TQ_OPT_STR, "FILE", 0, 4096, NULL, CFG(curve_key), 0,
     "this pool's secret key (a .key file from `taskq keygen`)"},
    {"executor", 0, TQ_OPT_FLAG, NULL, 0, 0, NULL, CFG(executor), 0, NULL},
    {"config", 0, TQ_OPT_CONFIG, "FILE", 0, 0, NULL, 0, 0,
     "read options from FILE (key = value; keys are the long options)"},
    {"check-config", 0, TQ_OPT_CHECK, NULL, 0, 0, NULL, 0, 0,
     "check the file and the options (key files, plugins) and exit"},
    {"help", 'h', TQ_OPT_HELP, NULL, 0, 0, NULL, 0, 0, "show this help and exit"},
    {"version", 'V', TQ_OPT_VERSION, NULL, 0, 0, NULL, 0, 0, "show the version and exit"},
};

static void epilog(FILE *f)
{
    fprintf(f,
            "\nEach process runs one task at a time.  A process that crashes costs only its\n"
            "task, which is retried (or fails naming the signal, the process and the host);\n"
            "a task over its run limit has its process killed; either way a new process\n"
            "takes its place.  SIGTERM or SIGINT: take no new tasks, let the running ones\n"
            "finish within --grace, exit 0.  A second SIGINT: kill them and exit %d.\n"
            "Exit status: %d bad usage or configuration (also: a key file that cannot be\n"
            "read); %d a plugin does not load; %d a plugin's init failed; %d the broker\n"
            "refused the pool; %d the broker refused the pool's key; %d system error.\n",
            128 + SIGINT, EX_USAGE, EX_CONFIG, EX_SOFTWARE, EX_UNAVAILABLE, EX_NOPERM, EX_OSERR);
}

static const tq_optspec_t spec = {
    .prog = "taskq-worker",
    .opts = opts,
    .n_opts = sizeof opts / sizeof opts[0],
    .synopsis = "Usage: taskq-worker [OPTION]... (--load PLUGIN.so | --exec)...\n"
                "Run a pool of processes that take tasks from a taskq broker.\n\n",
    .epilog = epilog,
    .width = 30,
    .version = "taskq-worker " TASKQ_VERSION_STRING,
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The keys read from --curve-server-key and --curve-key (Z85), which cfg
 * then points to, and the pool's public key. */
static char server_z85[TQ_KEY_Z85_SIZE], secret_z85[TQ_KEY_Z85_SIZE];
static char public_z85[TQ_KEY_Z85_SIZE];

/* Check and read the CURVE key files once, for every slot.  0, or -1 after
 * printing why. */
static int read_keys(tw_config_t *cfg)
{
    const char *sk = cfg->curve_server_key, *ck = cfg->curve_key;
    char err[512];
    if (!sk && !ck)
        return 0;
    if (!sk || !ck) {
        fprintf(stderr, "taskq-worker: --curve-server-key and --curve-key go together: the "
                        "broker's public key and this pool's secret key\n");
    } else if (ends_with(ck, ".pub")) {
        fprintf(stderr, "taskq-worker: --curve-key wants this pool's secret key (NAME.key), "
                        "not %s\n", ck);
    } else if (ends_with(sk, ".key")) {
        fprintf(stderr, "taskq-worker: --curve-server-key wants the broker's public key "
                        "(NAME.pub), not %s; a secret key stays with its owner\n", sk);
    } else if (tq_key_read(sk, server_z85, err, sizeof err) != 0) {
        fprintf(stderr, "taskq-worker: cannot read the broker's public key: %s\n", err);
    } else if (tq_key_read(ck, secret_z85, err, sizeof err) != 0 ||
               tq_key_public(secret_z85, public_z85) != 0) {
        fprintf(stderr, "taskq-worker: cannot read this pool's secret key: %s\n", err);
    } else {
        cfg->curve_server_key = server_z85;
        cfg->curve_key = secret_z85;
        return 0;
    }
    return -1;
}

/* After the options: the environment's broker, and what the options must
 * say together.  Returns -1 to go on, or EX_USAGE after saying why. */
static int check_config(tw_config_t *cfg, bool check)
{
    if (!cfg->broker) {
        const char *env = getenv("TASKQ_BROKER");
        cfg->broker = env && env[0] ? env : TASKQ_DEFAULT_ENDPOINT;
    }
    if (!cfg->executor && !cfg->exec && cfg->n_plugins == 0) {
        fprintf(stderr, "taskq-worker: nothing to serve: give --load PLUGIN.so or --exec\n");
        return EX_USAGE;
    }
    if (read_keys(cfg) < 0)
        return EX_USAGE;
    /* A plugin named by its path must be there (dlopen searches for others). */
    for (size_t i = 0; check && i < cfg->n_plugins; i++) {
        if (strchr(cfg->plugins[i], '/') && access(cfg->plugins[i], R_OK) != 0) {
            fprintf(stderr, "taskq-worker: --load: cannot read %s: %s\n", cfg->plugins[i],
                    strerror(errno));
            return EX_USAGE;
        }
    }
    return -1;
}

/* ---- The supervisor's main thread --------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for the slots to end, acting on stop signals.  Returns 0, or the
 * exit status if this loop itself failed. */
static int supervise(tw_pool_t *pool, int sig_fd, const tw_config_t *cfg)
{
    bool stopping = false, aborted = false;
    int64_t deadline = 0;
    unsigned live;
    while ((live = tw_pool_live(pool)) > 0) {
        bool stop = false;
        if (!stopping && live < tw_pool_size(pool)) {
            TQ_LOG(LOG_ERR, "a connection ended on its own: stopping the pool");
            stop = true;
        }
        int timeout = -1;
        if (stopping && !aborted)
            timeout = deadline > now_ms() ? (int)(deadline - now_ms()) : 0;
        struct pollfd pf[2] = {{sig_fd, POLLIN, 0}, {tw_pool_event_fd(pool), POLLIN, 0}};
        if (!stop && poll(pf, 2, timeout) < 0 && errno != EINTR) {
            TQ_LOG(LOG_ERR, "poll: %s", strerror(errno));
            tw_pool_kill(pool);
            return EX_OSERR;
        }
        struct signalfd_siginfo si;
        if (!stop && (pf[0].revents & POLLIN) && read(sig_fd, &si, sizeof si) == sizeof si) {
            const char *name = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
            if (stopping && si.ssi_signo == SIGINT) {
                TQ_LOG(LOG_NOTICE, "second SIGINT: stopping at once");
                tw_pool_kill(pool);
                _exit(128 + SIGINT); /* leave the threads where they are */
            }
            if (!stopping) {
                TQ_LOG(LOG_NOTICE, "%s: taking no new tasks; running ones have %" PRIu32 " s",
                       name, cfg->grace_s);
                stop = true;
            }
        }
        if (stop && !stopping) {
            stopping = true;
            deadline = now_ms() + (int64_t)cfg->grace_s * 1000;
            tw_pool_stop(pool);
        }
        if (stopping && !aborted && now_ms() >= deadline) {
            TQ_LOG(LOG_NOTICE, "grace period over: stopping the running tasks");
            tw_pool_abort(pool);
            aborted = true;
        }
    }
    return 0;
}

/* Run the pool until it is stopped.  Returns the exit code. */
static int run(const tw_config_t *cfg)
{

    /* The stop signals are read from a signalfd by this thread; the slots'
     * threads inherit the blocked mask.  Writes to a dead executor's pipe
     * fail with EPIPE instead of killing the supervisor. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    int sig_fd = -1;
    if (sigprocmask(SIG_BLOCK, &stop, NULL) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
        (sig_fd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        TQ_LOG(LOG_ERR, "cannot set up signals: %s", strerror(errno));
        return EX_OSERR;
    }
    if (cfg->curve_key)
        TQ_LOG(LOG_NOTICE, "CurveZMQ on: this pool's public key is %s", public_z85);
    tw_pool_t *pool = NULL;
    int code = tw_pool_new(cfg, &pool);
    if (code == 0) {
        if (tw_pool_start(pool) != 0) {
            tw_pool_stop(pool);
            code = EX_OSERR;
        } else {
            code = supervise(pool, sig_fd, cfg);
        }
        int joined = tw_pool_join(pool);
        if (code == 0)
            code = joined;
        if (code == EX_NOPERM && cfg->curve_key)
            TQ_LOG(LOG_ERR, "the broker at %s refused this pool's key (public key %s); its "
                   "administrator can let it in by adding the key's .pub file to the broker's "
                   "--allow-workers directory", cfg->broker, public_z85);
        else if (code == EX_NOPERM)
            TQ_LOG(LOG_ERR, "the broker at %s refused this pool (a broker on another host "
                   "wants CURVE keys: --curve-server-key and --curve-key)", cfg->broker);
        tw_pool_destroy(&pool);
        TQ_LOG(LOG_NOTICE, "taskq-worker stopped");
    }
    close(sig_fd);
    return code;
}

int main(int argc, char **argv)
{
    tw_config_t cfg = {.argv0 = argv[0]};
    tq_opts_t st;
    int code = tq_opts_parse(&spec, &st, argc, argv, &cfg);
    if (code < 0)
        code = check_config(&cfg, st.check);
    if (code < 0 && st.check) {
        puts("taskq-worker: configuration ok");
        code = EX_OK;
    }
    if (code < 0)
        code = cfg.executor ? tw_executor_main(&cfg) : run(&cfg);
    tq_opts_fini(&st);
    return code;
}
