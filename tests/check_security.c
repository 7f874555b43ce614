/*
 * check_security.c - the broker's defences and the CURVE set-up end to
 * end, with the real taskqd, test_worker, taskq-worker and taskq programs:
 * hostile peers (malformed floods, idle and oversized connections, forged
 * outcomes, another Unix user reaching for a victim's jobs), CURVE roles
 * and isolation, encryption seen through a recording TCP proxy, the bind
 * policy, IPC socket permissions, per-client limits and the permission to
 * submit exec.
 */
#define _GNU_SOURCE /* memmem, pipe2, unshare */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "taskq.h"
#include "taskq_proto.h"

/* The code got (evaluated once) is want. */
#define ck_assert_code(got, want)                                                        \
    do {                                                                                 \
        int got_ = (got);                                                                \
        ck_assert_msg(got_ == (want), "%s: got %s (%s), want %s", #got,                  \
                      taskq_errname(got_), taskq_strerror(got_), taskq_errname(want));   \
    } while (0)

/* The wait status st (evaluated once) is that of exit(code). */
#define ck_assert_exit(st, code)                                                        \
    do {                                                                                \
        int st_ = (st);                                                                 \
        ck_assert_msg(st_ != -1 && WIFEXITED(st_) && WEXITSTATUS(st_) == (code),        \
                      "%s: wait status %d (exit %d), want exit %d", #st, st_,           \
                      st_ != -1 && WIFEXITED(st_) ? WEXITSTATUS(st_) : -1, (code));     \
    } while (0)

/* Set ok to whether cond holds, polling it every 5 ms for up to ms. */
#define WAIT_FOR(ok, cond, ms)                                                            \
    for (int64_t end_ = th_now_ms() + (ms); !((ok) = (cond)) && th_now_ms() < end_;) \
    pause_ms(5)

/* The user an attacker runs as: nobody. */
#define NOBODY 65534

static th_broker_t broker;

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void setup(void)
{
    memset(&broker, 0, sizeof broker);
}

static void teardown(void)
{
    th_stop_all();
    th_remove_dir(broker.dir);
}

static uint64_t stat_of(taskq_client_t *c, const char *key)
{
    uint64_t v = 0;
    ck_assert_msg(th_stat(c, key, &v) == 0, "no STATS key %s", key);
    return v;
}

/* The port of a tcp:// endpoint. */
static uint16_t endpoint_port(const char *ep)
{
    const char *colon = strrchr(ep, ':');
    ck_assert_ptr_nonnull(colon);
    long port = strtol(colon + 1, NULL, 10);
    ck_assert_msg(port > 0 && port < 65536, "no port in %s", ep);
    return (uint16_t)port;
}

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * Wait up to ms until the peer has closed each open descriptor of
 * fds[0..n-1] (end of file or a reset; what the broker's ZeroMQ writes on
 * a new connection, its greeting, is read and dropped).  Closed ones are
 * closed here too and set to -1.  Returns how many are still open.
 */
static unsigned wait_closed(int *fds, unsigned n, int ms)
{
    struct pollfd *pf = calloc(n ? n : 1, sizeof *pf);
    unsigned *idx = calloc(n ? n : 1, sizeof *idx);
    ck_assert(pf && idx);
    unsigned open_n = 0;
    for (int64_t end = th_now_ms() + ms;;) {
        open_n = 0;
        for (unsigned i = 0; i < n; i++) {
            if (fds[i] < 0)
                continue;
            pf[open_n] = (struct pollfd){.fd = fds[i], .events = POLLIN};
            idx[open_n++] = i;
        }
        int64_t left = end - th_now_ms();
        if (open_n == 0 || left <= 0)
            break;
        int r = poll(pf, open_n, (int)left);
        if (r < 0 && errno != EINTR)
            break;
        for (unsigned k = 0; r > 0 && k < open_n; k++) {
            if (!pf[k].revents)
                continue;
            char buf[512];
            ssize_t got = recv(pf[k].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                close(fds[idx[k]]);
                fds[idx[k]] = -1;
            }
        }
    }
    free(pf);
    free(idx);
    return open_n;
}

/* Whether needle occurs in the n bytes at hay. */
static bool contains(const void *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* ---- raw protocol ------------------------------------------------------ */

/* A raw DEALER of its own context.  Contexts are per socket so that a
 * socket can be opened in any thread or process. */
typedef struct raw {
    void *ctx, *sock;
} raw_t;

/* Open r connected to endpoint with linger 0 and reconnect_ivl (ms; -1:
 * never reconnect; 0: ZeroMQ's default).  0 or -1. */
static int raw_open(raw_t *r, const char *endpoint, int reconnect_ivl)
{
    r->ctx = zmq_ctx_new();
    r->sock = r->ctx ? zmq_socket(r->ctx, ZMQ_DEALER) : NULL;
    if (!r->sock)
        return -1;
    int linger = 0;
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (reconnect_ivl != 0)
        zmq_setsockopt(r->sock, ZMQ_RECONNECT_IVL, &reconnect_ivl, sizeof reconnect_ivl);
    return zmq_connect(r->sock, endpoint);
}

static void raw_close(raw_t *r)
{
    if (r->sock)
        zmq_close(r->sock);
    if (r->ctx)
        zmq_ctx_term(r->ctx);
    r->sock = r->ctx = NULL;
}

static int raw_send(raw_t *r, const taskq_buf_t *b)
{
    return zmq_send(r->sock, b->data, b->len, 0) == (int)b->len ? 0 : -1;
}

/*
 * Receive messages for up to ms until one of type want arrives (others,
 * heartbeats for instance, are skipped); it is decoded into *msg, pointing
 * into buf (cap bytes).  0, or -1 on a timeout or an undecodable frame.
 */
static int raw_expect(raw_t *r, uint8_t want, uint8_t *buf, size_t cap, taskq_msg_t *msg,
                      int ms)
{
    for (int64_t end = th_now_ms() + ms; th_now_ms() < end;) {
        zmq_pollitem_t it = {r->sock, 0, ZMQ_POLLIN, 0};
        int64_t left = end - th_now_ms();
        if (zmq_poll(&it, 1, left > 0 ? (long)left : 0) <= 0)
            continue;
        int n = zmq_recv(r->sock, buf, cap, ZMQ_DONTWAIT);
        if (n < 0 || (size_t)n > cap)
            continue;
        if (taskq_msg_decode(buf, (size_t)n, NULL, msg, NULL) != 0)
            return -1;
        if (msg->type == want)
            return 0;
    }
    return -1;
}

/* HELLO as a client (client_id) or, with client_id 0, as a worker serving
 * function fn in queue q, into b. */
static void enc_hello(taskq_buf_t *b, uint64_t client_id, const char *q, const char *fn)
{
    taskq_hello_t h = {
        .role = client_id ? TASKQ_ROLE_CLIENT : TASKQ_ROLE_WORKER,
        .client_id = client_id,
        .name = taskq_span_cstr("intruder"),
        .host = taskq_span_cstr("localhost"),
        .pid = (uint32_t)getpid(),
        .credit = client_id ? 0 : 1,
    };
    taskq_span_t queue = taskq_span_cstr(q), function = taskq_span_cstr(fn);
    taskq_buf_reset(b);
    taskq_enc_hello(b, &h, &queue, client_id ? 0 : 1, &function, client_id ? 0 : 1);
}

/* ---- the STATS map ----------------------------------------------------- */

/* The parts of a STATS map that tell an admin's view from another's. */
typedef struct stats_shape {
    bool has_mine;         /* "mine" is a map with queued, running, retained */
    uint64_t mine_running; /* its "running" */
    long queues;           /* entries of "queues", -1 if absent or no array */
    long worker_list;      /* entries of "worker_list", likewise */
    uint64_t workers;      /* "workers" */
} stats_shape_t;

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

static long array_len(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_ARRAY ? (long)o->via.array.size : -1;
}

/* Read the shape of the encoded map (len bytes at p).  0 or -1. */
static int parse_shape(const void *p, size_t len, stats_shape_t *ret)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = -1;
    if (msgpack_unpack_next(&u, p, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *mine = map_get(&u.data, "mine");
        const msgpack_object *w = map_get(&u.data, "workers");
        ret->has_mine = mine && mine->type == MSGPACK_OBJECT_MAP && map_get(mine, "queued") &&
                        map_get(mine, "running") && map_get(mine, "retained");
        const msgpack_object *mr = ret->has_mine ? map_get(mine, "running") : NULL;
        ret->mine_running = mr && mr->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? mr->via.u64 : 0;
        ret->queues = array_len(map_get(&u.data, "queues"));
        ret->worker_list = array_len(map_get(&u.data, "worker_list"));
        ret->workers = w && w->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? w->via.u64 : 0;
        rc = 0;
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static stats_shape_t stats_shape(taskq_client_t *c)
{
    void *buf;
    size_t len;
    int rc = taskq_client_stats(c, 5000, &buf, &len);
    ck_assert_code(rc, 0);
    stats_shape_t s = {0};
    ck_assert_int_eq(parse_shape(buf, len, &s), 0);
    free(buf);
    return s;
}

/* ---- keys -------------------------------------------------------------- */

/* The directory of one test's keys: keys/NAME.{pub,key} as `taskq keygen`
 * wrote them, and the allow-lists the broker reads. */
static char kdir[256];

/* The path of keys/NAME.EXT, in storage that lives as long as the test
 * (the options that name key files may keep the pointers). */
static const char *kfile(const char *name, const char *ext)
{
    static char pool[32][300];
    static unsigned used;
    char want[300];
    snprintf(want, sizeof want, "%s/keys/%s.%s", kdir, name, ext);
    for (unsigned i = 0; i < used; i++)
        if (strcmp(pool[i], want) == 0)
            return pool[i];
    ck_assert_uint_lt(used, 32);
    snprintf(pool[used], sizeof pool[used], "%s", want);
    return pool[used++];
}

/* The allow-list directory kdir/sub ("clients", ...), in storage that
 * lives as long as the test. */
static const char *kdir_of(const char *sub)
{
    static char pool[8][300];
    static unsigned used;
    char want[300];
    snprintf(want, sizeof want, "%s/%s", kdir, sub);
    for (unsigned i = 0; i < used; i++)
        if (strcmp(pool[i], want) == 0)
            return pool[i];
    ck_assert_uint_lt(used, 8);
    snprintf(pool[used], sizeof pool[used], "%s", want);
    return pool[used++];
}

/* The first key line of a key file, as the contract's reader rule says. */
static void key_line(const char *path, char z85[41])
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strcspn(s, "\r\n");
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0 || s[0] == '#')
            continue;
        ck_assert_msg(n == 40, "%s: key line of %zu characters", path, n);
        memcpy(z85, s, 40);
        z85[40] = '\0';
        found = true;
    }
    fclose(f);
    ck_assert_msg(found, "%s: no key line", path);
    uint8_t raw[32];
    ck_assert_msg(zmq_z85_decode(raw, z85) != NULL, "%s: not Z85", path);
}

/* `taskq keygen DIR/keys/NAME`: both files, their modes, their format,
 * and the public key is the secret key's. */
static void keygen(const char *name)
{
    char base[300], out[2048];
    snprintf(base, sizeof base, "%s/keys/%s", kdir, name);
    const char *const args[] = {"keygen", base, NULL};
    int st = th_run(TASKQ_PATH, args, 20000, out, sizeof out);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "taskq keygen %s: status %d: %s", base, st, out);
    struct stat sp, sk;
    ck_assert_int_eq(stat(kfile(name, "pub"), &sp), 0);
    ck_assert_int_eq(stat(kfile(name, "key"), &sk), 0);
    ck_assert_uint_eq(sp.st_mode & 07777, 0644);
    ck_assert_uint_eq(sk.st_mode & 07777, 0600);
    char pub[41], sec[41], derived[41];
    key_line(kfile(name, "pub"), pub);
    key_line(kfile(name, "key"), sec);
    ck_assert_int_eq(zmq_curve_public(derived, sec), 0);
    ck_assert_str_eq(derived, pub);
    ck_assert_msg(strstr(out, pub) != NULL, "keygen did not print the public key: %s", out);
    /* A second run does not overwrite the pair. */
    st = th_run(TASKQ_PATH, args, 20000, out, sizeof out);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) != 0,
                  "taskq keygen overwrote %s: %s", base, out);
    char again[41];
    key_line(kfile(name, "key"), again);
    ck_assert_str_eq(again, sec);
}

/* Copy keys/NAME.pub into the allow-list directory sub. */
static void allow(const char *name, const char *sub)
{
    char to[300], buf[512];
    snprintf(to, sizeof to, "%s/%s/%s.pub", kdir, sub, name);
    FILE *in = fopen(kfile(name, "pub"), "r"), *out = fopen(to, "w");
    ck_assert(in && out);
    size_t n = fread(buf, 1, sizeof buf, in);
    ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

static const char *const key_subdirs[] = {"keys", "clients", "workers", "admin", "exec"};

/* Make kdir with its subdirectories and a key pair for each name. */
static void keys_make(const char *const *names)
{
    snprintf(kdir, sizeof kdir, "/tmp/taskq-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(kdir));
    for (size_t i = 0; i < sizeof key_subdirs / sizeof key_subdirs[0]; i++) {
        char d[300];
        snprintf(d, sizeof d, "%s/%s", kdir, key_subdirs[i]);
        ck_assert_int_eq(mkdir(d, 0700), 0);
    }
    for (size_t i = 0; names[i]; i++)
        keygen(names[i]);
}

static void keys_remove(void)
{
    if (!kdir[0])
        return;
    for (size_t i = 0; i < sizeof key_subdirs / sizeof key_subdirs[0]; i++) {
        char d[300];
        snprintf(d, sizeof d, "%s/%s", kdir, key_subdirs[i]);
        th_remove_dir(d);
    }
    rmdir(kdir);
    kdir[0] = '\0';
}

static void keys_teardown(void)
{
    teardown();
    keys_remove();
}

/* The CURVE options of a client or worker: server, the broker's public
 * key, and key, this side's secret key (key files or Z85 text). */
static void client_curve(taskq_client_opts_t *o, const char *server, const char *key)
{
    o->curve_server_key = server;
    o->curve_key = key;
}

static void worker_curve(taskq_worker_opts_t *o, const char *server, const char *key)
{
    o->curve_server_key = server;
    o->curve_key = key;
}

/* A client of endpoint with the key pair name (NULL: no CURVE). */
static taskq_client_t *kclient(const char *endpoint, const char *name, int32_t reconnect_ms,
                               bool leave)
{
    taskq_client_opts_t o = {.reconnect_limit_ms = reconnect_ms, .leave_outcomes = leave};
    if (name)
        client_curve(&o, kfile("server", "pub"), kfile(name, "key"));
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(endpoint, &o, &c), 0);
    return c;
}

/* Arguments of a CURVE broker (static storage, as th_broker_start keeps
 * them): the server key, the allow-lists, and extra (NULL-terminated). */
static const char *const *curve_args(bool with_exec, const char *const *extra)
{
    static const char *args[24];
    size_t n = 0;
    args[n++] = "--curve-secret";
    args[n++] = kfile("server", "key");
    args[n++] = "--allow-clients";
    args[n++] = kdir_of("clients");
    args[n++] = "--allow-workers";
    args[n++] = kdir_of("workers");
    args[n++] = "--admin-keys";
    args[n++] = kdir_of("admin");
    if (with_exec) {
        args[n++] = "--allow-exec";
        args[n++] = kdir_of("exec");
    }
    for (size_t i = 0; extra && extra[i] && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return args;
}

/* ---- an in-process worker on a thread ---------------------------------- */

static int fn_echo(taskq_task_t *t, void *ud)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    return taskq_task_set_result(t, arg, len);
}

static int fn_square(taskq_task_t *t, void *ud)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    int64_t x;
    if (th_unpack_int(arg, len, &x) != 0)
        return taskq_task_error(t, "square: not an integer");
    uint8_t out[16];
    size_t n = th_pack_int(x * x, out, sizeof out);
    return taskq_task_set_result(t, out, n);
}

/* Sleep the argument's milliseconds (returning early when abandoned);
 * the result is the argument. */
static int fn_sleep(taskq_task_t *t, void *ud)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    int64_t ms;
    if (th_unpack_int(arg, len, &ms) != 0 || ms < 0 || ms > 60000)
        return taskq_task_error(t, "sleep: not a duration");
    for (int64_t slept = 0; slept < ms && !taskq_task_cancelled(t); slept += 5)
        pause_ms(5);
    return taskq_task_set_result(t, arg, len);
}

/* The function whose name must not be visible on an encrypted wire. */
#define CANARY_FN "plaintext_canary_fn"
#define CANARY_ARG "canary-argument-5e1f0c9a"

typedef struct wthread {
    taskq_worker_t *w;
    pthread_t thread;
    atomic_bool done;
    int rc;
} wthread_t;

static void *wthread_main(void *p)
{
    wthread_t *wt = p;
    wt->rc = taskq_worker_run(wt->w);
    atomic_store(&wt->done, true);
    return NULL;
}

/* Start a worker for endpoint with the key pair key_name (NULL: no CURVE)
 * on a thread: square, sleep, echo and CANARY_FN in queue "default". */
static void wthread_start(wthread_t *wt, const char *endpoint, const char *key_name)
{
    memset(wt, 0, sizeof *wt);
    atomic_init(&wt->done, false);
    taskq_worker_opts_t o = {.threads = 4, .name = "in-process"};
    if (key_name)
        worker_curve(&o, kfile("server", "pub"), kfile(key_name, "key"));
    ck_assert_code(taskq_worker_new(endpoint, &o, &wt->w), 0);
    ck_assert_code(taskq_worker_register(wt->w, "square", fn_square, NULL), 0);
    ck_assert_code(taskq_worker_register(wt->w, "sleep", fn_sleep, NULL), 0);
    ck_assert_code(taskq_worker_register(wt->w, "echo", fn_echo, NULL), 0);
    ck_assert_code(taskq_worker_register(wt->w, CANARY_FN, fn_echo, NULL), 0);
    ck_assert_int_eq(pthread_create(&wt->thread, NULL, wthread_main, wt), 0);
}

/* Wait up to ms for the worker's run to return: its code, or 1 if it
 * still runs. */
static int wthread_wait(wthread_t *wt, int ms)
{
    bool ok;
    WAIT_FOR(ok, atomic_load(&wt->done), ms);
    return ok ? wt->rc : 1;
}

/* Stop the worker, join its thread, free it; the run's code. */
static int wthread_stop(wthread_t *wt)
{
    taskq_worker_stop(wt->w);
    pthread_join(wt->thread, NULL);
    taskq_worker_destroy(&wt->w);
    return wt->rc;
}

/* ---- 1. hostile peers -------------------------------------------------- */

enum {
    IDLE_TCP = 450,       /* plain TCP connections that never speak */
    IDLE_ZMQ = 50,        /* DEALERs that complete the ZMTP greeting, never HELLO */
    FLOOD_SOCKETS = 8,    /* DEALERs sending malformed messages */
    FLOOD_MSGS = 10000,   /* malformed messages over all of them */
    HUGE_FRAMES = 256,    /* 1 MiB frames, over 16 times --max-frame */
    MAP_N = 1000,         /* the normal client's tasks */
    MAX_MALFORMED = 50,   /* taskqd --max-malformed */
};

/* The victim's jobs, as the attacker process learns them through a pipe. */
typedef struct victim_ids {
    uint32_t n;
    uint64_t holder_client_id; /* a client_id the victim's side holds */
    uint64_t failed_id;        /* a failed job the broker retains */
    uint64_t done_id;          /* a done job the broker retains */
    uint64_t ids[32];          /* all of them */
} victim_ids_t;

/* Read exactly n bytes from fd within ms.  0 or -1. */
static int read_full(int fd, void *p, size_t n, int ms)
{
    size_t got = 0;
    for (int64_t end = th_now_ms() + ms; got < n;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int64_t left = end - th_now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return -1;
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

#define ATTACK_FAIL(code, ...)            \
    do {                                  \
        fprintf(stderr, "attacker: ");    \
        fprintf(stderr, __VA_ARGS__);     \
        fputc('\n', stderr);              \
        rc = (code);                      \
        goto out;                         \
    } while (0)

/*
 * The attacker, another Unix user (nobody) on the same host, in a process
 * of its own: reads the victim's ids from fd, then speaks the raw
 * protocol (and libtaskq) to reach them.  Returns its exit status: 0 if
 * every attempt was turned away as the contract says.
 */
static int attacker_main(int fd, const char *endpoint)
{
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0) {
        perror("attacker: dropping root");
        return 2;
    }
    victim_ids_t v;
    if (read_full(fd, &v, sizeof v, 30000) != 0 || v.n == 0 || v.n > 32) {
        fprintf(stderr, "attacker: no ids from the test\n");
        return 3;
    }
    int rc = 0;
    raw_t r = {0}, thief = {0};
    taskq_buf_t b = {0};
    taskq_client_t *c = NULL;
    taskq_future_t *f = NULL;
    static uint8_t buf[1 << 20];
    taskq_msg_t m;
    if (raw_open(&r, endpoint, 0) != 0 || raw_open(&thief, endpoint, 0) != 0)
        ATTACK_FAIL(4, "cannot open sockets");

    /* A HELLO with the client_id another identity holds. */
    enc_hello(&b, v.holder_client_id, NULL, NULL);
    raw_send(&thief, &b);
    if (raw_expect(&thief, TASKQ_MSG_ERROR, buf, sizeof buf, &m, 5000) != 0)
        ATTACK_FAIL(5, "HELLO with the victim's client_id got no ERROR");
    if (m.u.error.code != TASKQ_PERR_DENIED)
        ATTACK_FAIL(6, "HELLO with the victim's client_id: ERROR %s, want DENIED",
                    taskq_perr_name((int)m.u.error.code));

    enc_hello(&b, 0xa77ac4e5ull, NULL, NULL);
    raw_send(&r, &b);
    if (raw_expect(&r, TASKQ_MSG_WELCOME, buf, sizeof buf, &m, 5000) != 0)
        ATTACK_FAIL(7, "no WELCOME");

    /* WATCH: each id is UNKNOWN, as if it did not exist. */
    taskq_buf_reset(&b);
    taskq_enc_jobs(&b, TASKQ_MSG_WATCH, v.ids, v.n);
    raw_send(&r, &b);
    unsigned seen = 0;
    while (seen < v.n) {
        if (raw_expect(&r, TASKQ_MSG_RESULT, buf, sizeof buf, &m, 5000) != 0)
            ATTACK_FAIL(8, "RESULT for %u of %u watched ids", seen, v.n);
        taskq_result_item_t it;
        while (taskq_iter_result(&m.u.results, &it) == 1) {
            if (it.status != TASKQ_STATUS_UNKNOWN)
                ATTACK_FAIL(9, "WATCH of the victim's job %llu: status %u, want UNKNOWN",
                            (unsigned long long)it.job_id, it.status);
            seen++;
        }
    }

    /* CANCEL and ACK: ignored (the test checks the jobs afterwards). */
    taskq_buf_reset(&b);
    taskq_enc_jobs(&b, TASKQ_MSG_CANCEL, v.ids, v.n);
    raw_send(&r, &b);
    taskq_buf_reset(&b);
    taskq_enc_jobs(&b, TASKQ_MSG_ACK, v.ids, v.n);
    raw_send(&r, &b);

    /* RETRY of the victim's failed job: NOT_FOUND. */
    taskq_buf_reset(&b);
    taskq_enc_retry(&b, 41, v.failed_id);
    raw_send(&r, &b);
    if (raw_expect(&r, TASKQ_MSG_ERROR, buf, sizeof buf, &m, 5000) != 0)
        ATTACK_FAIL(10, "RETRY of the victim's job got no ERROR");
    if (m.u.error.code != TASKQ_PERR_NOT_FOUND || m.u.error.ref != 41)
        ATTACK_FAIL(11, "RETRY of the victim's job: ERROR %s ref %llu, want NOT_FOUND ref 41",
                    taskq_perr_name((int)m.u.error.code), (unsigned long long)m.u.error.ref);

    /* FAILED lists none of the victim's jobs. */
    taskq_buf_reset(&b);
    taskq_enc_failed(&b, 42, 0, 1000);
    raw_send(&r, &b);
    if (raw_expect(&r, TASKQ_MSG_FAILED_REPLY, buf, sizeof buf, &m, 5000) != 0)
        ATTACK_FAIL(12, "no FAILED_REPLY");
    taskq_failed_item_t fi;
    while (taskq_iter_failed(&m.u.failed_reply.jobs, &fi) == 1)
        for (uint32_t i = 0; i < v.n; i++)
            if (fi.job_id == v.ids[i])
                ATTACK_FAIL(13, "FAILED lists the victim's job %llu",
                            (unsigned long long)fi.job_id);

    /* STATS: the totals and "mine", no queues, no workers. */
    taskq_buf_reset(&b);
    taskq_enc_stats(&b, 43);
    raw_send(&r, &b);
    if (raw_expect(&r, TASKQ_MSG_STATS_REPLY, buf, sizeof buf, &m, 5000) != 0)
        ATTACK_FAIL(14, "no STATS_REPLY");
    stats_shape_t s = {0};
    if (parse_shape(m.u.stats_reply.map.ptr, m.u.stats_reply.map.len, &s) != 0 ||
        !s.has_mine || s.queues != 0 || s.worker_list != 0)
        ATTACK_FAIL(15, "STATS for another user: mine %d, %ld queues, %ld workers listed",
                    s.has_mine, s.queues, s.worker_list);

    /* Through libtaskq: the victim's done job is unknown. */
    taskq_client_opts_t o = {.reconnect_limit_ms = 5000};
    if (taskq_client_new(endpoint, &o, &c) != 0 || taskq_future_attach(c, v.done_id, &f) != 0)
        ATTACK_FAIL(16, "libtaskq client");
    int w = taskq_future_wait(f, 5000);
    if (w != TASKQ_ENOJOB)
        ATTACK_FAIL(17, "attach to the victim's job: %s, want TASKQ_ENOJOB", taskq_errname(w));
out:
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
    taskq_buf_fini(&b);
    raw_close(&r);
    raw_close(&thief);
    return rc;
}

/* A small xorshift generator, one per thread. */
static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 32);
}

/* A msgpack packer appending to b. */
static void packer(msgpack_packer *pk, taskq_buf_t *b)
{
    taskq_buf_reset(b);
    msgpack_packer_init(pk, b, taskq_buf_write);
}

/* A SUBMIT of one task: function fn, argument an integer, or an array
 * nested depth deep. */
static void enc_submit_one(taskq_buf_t *b, const char *fn, unsigned depth)
{
    msgpack_packer pk;
    packer(&pk, b);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, TASKQ_MSG_SUBMIT);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_str_with_body(&pk, fn, strlen(fn));
    msgpack_pack_str_with_body(&pk, "default", 7);
    msgpack_pack_int64(&pk, 0);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_uint64(&pk, 1);
    for (unsigned i = 0; i < depth; i++)
        msgpack_pack_array(&pk, 1);
    msgpack_pack_int64(&pk, 5);
}

/* One malformed message of a shape picked by k and the generator, in b. */
static void garbage(taskq_buf_t *b, unsigned k, uint64_t *rng)
{
    msgpack_packer pk;
    /* Ids far above any job of the test: the two flood sockets that said
     * HELLO are clients of the test's own user, whose CANCEL and ACK
     * would count. */
    uint64_t ids[3] = {(1ull << 40) + rnd(rng), 1ull << 41, (1ull << 42) + k};
    char name[300];
    switch (k % 16) {
    case 0: /* random bytes */
        taskq_buf_reset(b);
        for (unsigned i = 0, n = 1 + rnd(rng) % 64; i < n; i++) {
            uint8_t byte = (uint8_t)rnd(rng);
            taskq_buf_append(b, &byte, 1);
        }
        break;
    case 1: /* a valid SUBMIT cut short */
        enc_submit_one(b, "square", 0);
        b->len = 1 + rnd(rng) % (b->len - 1);
        break;
    case 2: /* a SUBMIT whose req_id and tasks have the wrong types */
        packer(&pk, b);
        msgpack_pack_array(&pk, 4);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, TASKQ_MSG_SUBMIT);
        msgpack_pack_str_with_body(&pk, "req", 3);
        msgpack_pack_double(&pk, 2.5);
        break;
    case 3: /* a top level that is no array */
        packer(&pk, b);
        if (k & 16) {
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str_with_body(&pk, "k", 1);
            msgpack_pack_int64(&pk, -1);
        } else {
            msgpack_pack_str_with_body(&pk, "hello", 5);
        }
        break;
    case 4: /* an unknown message type */
        packer(&pk, b);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, 20 + rnd(rng) % 200);
        break;
    case 5: /* another protocol version, or a version of the wrong type */
        packer(&pk, b);
        msgpack_pack_array(&pk, 2);
        if (k & 16)
            msgpack_pack_str_with_body(&pk, "1", 1);
        else
            msgpack_pack_uint64(&pk, 2 + rnd(rng) % 100);
        msgpack_pack_uint64(&pk, TASKQ_MSG_HELLO);
        break;
    case 6: { /* DONE before HELLO */
        taskq_done_item_t d = {.job_id = ids[0], .attempt = 1, .status = TASKQ_DONE_OK,
                               .payload = taskq_span_cstr("\xc0")};
        taskq_buf_reset(b);
        taskq_enc_done_begin(b, 1);
        taskq_enc_done_item(b, &d);
        break;
    }
    case 7: /* CANCEL before HELLO */
        taskq_buf_reset(b);
        taskq_enc_jobs(b, TASKQ_MSG_CANCEL, ids, 3);
        break;
    case 8: /* ACK before HELLO */
        taskq_buf_reset(b);
        taskq_enc_jobs(b, TASKQ_MSG_ACK, ids, 3);
        break;
    case 9: /* WATCH before HELLO */
        taskq_buf_reset(b);
        taskq_enc_jobs(b, TASKQ_MSG_WATCH, ids, 3);
        break;
    case 10: /* a valid HEARTBEAT with a byte after it */
        taskq_buf_reset(b);
        taskq_enc_heartbeat(b);
        taskq_buf_append(b, "\x00", 1);
        break;
    case 11: /* an argument nested deeper than the limit */
        enc_submit_one(b, "square", 80);
        break;
    case 12: /* [] and [1] */
        packer(&pk, b);
        msgpack_pack_array(&pk, k & 16 ? 1 : 0);
        if (k & 16)
            msgpack_pack_uint64(&pk, 1);
        break;
    case 13: /* a HEARTBEAT with a field too many */
        packer(&pk, b);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, TASKQ_MSG_HEARTBEAT);
        msgpack_pack_uint64(&pk, 5);
        break;
    case 14: /* a function name over max_name */
        memset(name, 'n', 299);
        name[299] = '\0';
        enc_submit_one(b, name, 0);
        break;
    default: { /* a message only the broker sends */
        taskq_result_item_t it = {.job_id = ids[0], .status = TASKQ_STATUS_DONE,
                                  .attempts = 1, .payload = taskq_span_cstr("\x01")};
        taskq_buf_reset(b);
        taskq_enc_result_begin(b, 1);
        taskq_enc_result_item(b, &it);
        break;
    }
    }
}

/* What the flood thread did. */
typedef struct flood {
    char endpoint[128];
    int64_t deadline;     /* stop sending by then */
    unsigned sent;        /* malformed messages queued (multipart ones once) */
    unsigned multipart;   /* of which multipart */
    unsigned replies;     /* ERROR replies read */
    unsigned huge_sent;   /* 1 MiB frames queued */
    int too_big;          /* the ERROR code answering a frame just over --max-frame */
    int64_t ms;           /* how long it took */
    atomic_bool done;     /* set at the end */
    char why[200];        /* set if it could not do its part */
} flood_t;

/* Send with flags, waiting for room up to the flood's deadline.  0 or -1. */
static int flood_send(flood_t *fl, void *sock, const void *p, size_t n, int flags)
{
    while (th_now_ms() < fl->deadline) {
        if (zmq_send(sock, p, n, flags | ZMQ_DONTWAIT) == (int)n)
            return 0;
        if (zmq_errno() != EAGAIN)
            return -1;
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLOUT, 0};
        zmq_poll(&it, 1, 20);
    }
    return -1;
}

/* Read and count whatever the broker answered on sock. */
static void flood_drain(flood_t *fl, void *sock)
{
    uint8_t buf[4096];
    for (int i = 0; i < 10000 && zmq_recv(sock, buf, sizeof buf, ZMQ_DONTWAIT) >= 0; i++)
        fl->replies++;
}

/*
 * The flood: a frame just over --max-frame (ERROR TOO_BIG expected), 1 MiB
 * frames over twice the limit (the transport drops their connections),
 * then FLOOD_MSGS malformed messages of every shape over FLOOD_SOCKETS
 * DEALERs that reconnect quickly when the broker drops them; the first two
 * say a valid HELLO first.  Never asserts (it runs beside the test's
 * thread); fl->why says what went wrong.
 */
static void *flood_main(void *p)
{
    flood_t *fl = p;
    int64_t t0 = th_now_ms();
    void *ctx = zmq_ctx_new();
    void *socks[FLOOD_SOCKETS] = {0};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    taskq_buf_t b = {0};
    uint8_t *huge = calloc(1, 1 << 20);
    int linger = 0, ivl = 10, hwm = 4;
    if (!ctx || !huge) {
        snprintf(fl->why, sizeof fl->why, "out of memory");
        goto out;
    }
    for (int i = 0; i < FLOOD_SOCKETS; i++) {
        socks[i] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(socks[i], ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        if (zmq_connect(socks[i], fl->endpoint) != 0) {
            snprintf(fl->why, sizeof fl->why, "connect: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
    }

    /* Just over the limit (and under twice it): refused with TOO_BIG. */
    huge[0] = 0x92;
    flood_send(fl, socks[0], huge, 100 * 1024, 0);
    fl->too_big = -1;
    zmq_pollitem_t it = {socks[0], 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 5000) == 1) {
        uint8_t reply[4096];
        int n = zmq_recv(socks[0], reply, sizeof reply, 0);
        taskq_msg_t m;
        if (n > 0 && n <= (int)sizeof reply &&
            taskq_msg_decode(reply, (size_t)n, NULL, &m, NULL) == 0 &&
            m.type == TASKQ_MSG_ERROR)
            fl->too_big = (int)m.u.error.code;
    }

    /* 1 MiB frames: the transport refuses them by their size, so the
     * broker never holds them.  A small send queue keeps this process's
     * memory small too. */
    huge[0] = 0x92;
    void *hs[4];
    for (int i = 0; i < 4; i++) {
        hs[i] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(hs[i], ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(hs[i], ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(hs[i], ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_connect(hs[i], fl->endpoint);
    }
    for (unsigned i = 0; i < HUGE_FRAMES && flood_send(fl, hs[i % 4], huge, 1 << 20, 0) == 0;
         i++)
        fl->huge_sent++;

    /* Valid HELLOs, then garbage, on the first two sockets. */
    for (int i = 0; i < 2; i++) {
        enc_hello(&b, 0x6a7ba9e0ull + (uint64_t)i, NULL, NULL);
        flood_send(fl, socks[i], b.data, b.len, 0);
    }
    for (unsigned i = 0; i < FLOOD_MSGS; i++) {
        void *s = socks[i % FLOOD_SOCKETS];
        garbage(&b, i / FLOOD_SOCKETS, &rng);
        int rc;
        if (i % 50 == 49) { /* two or three frames in one message */
            rc = flood_send(fl, s, b.data, b.len, ZMQ_SNDMORE);
            if (rc == 0 && (i & 64))
                rc = flood_send(fl, s, "\x92\x01\x03", 3, ZMQ_SNDMORE);
            if (rc == 0)
                rc = flood_send(fl, s, b.data, b.len, 0);
            fl->multipart += rc == 0;
        } else {
            rc = flood_send(fl, s, b.data, b.len, 0);
        }
        if (rc != 0) {
            snprintf(fl->why, sizeof fl->why, "sent %u of %d malformed messages by the deadline",
                     fl->sent, FLOOD_MSGS);
            break;
        }
        fl->sent++;
        if (i % 64 == 0)
            for (int k = 0; k < FLOOD_SOCKETS; k++)
                flood_drain(fl, socks[k]);
    }
    for (int k = 0; k < FLOOD_SOCKETS; k++)
        flood_drain(fl, socks[k]);
    for (int i = 0; i < 4; i++)
        zmq_close(hs[i]);
out:
    for (int i = 0; i < FLOOD_SOCKETS; i++)
        if (socks[i])
            zmq_close(socks[i]);
    if (ctx)
        zmq_ctx_term(ctx);
    taskq_buf_fini(&b);
    free(huge);
    fl->ms = th_now_ms() - t0;
    atomic_store(&fl->done, true);
    return NULL;
}


/* The resident memory a broker may keep after the attack.  The broker in
 * memory holds ~1,000 tasks and a few hundred connections, which take a
 * few tens of MiB; the attack offers 256 MiB in 1 MiB frames (which it
 * must not buffer), 10,000 malformed messages and 500 idle connections
 * (whose state it must free).  Under AddressSanitizer, its shadow memory
 * and its quarantine of freed blocks (256 MiB by default) come on top. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_BOUND ((uint64_t)512 << 20)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_BOUND ((uint64_t)512 << 20)
#endif
#endif
#ifndef RSS_BOUND
#define RSS_BOUND ((uint64_t)256 << 20)
#endif

START_TEST(test_hostile_peer)
{
    /* Room for the idle connections, in this process and in the broker,
     * which inherits the limit. */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_cur >= IDLE_TCP + IDLE_ZMQ * 3 + 200,
                  "RLIMIT_NOFILE hard limit %llu is too low for the idle connections",
                  (unsigned long long)rl.rlim_cur);

    /* --max-malformed is MAX_MALFORMED. */
    static const char *const args[] = {"--handshake-ms", "1000", "--max-malformed", "50",
                                       "--max-frame", "65536", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);

    /* The attacker first, before this process has ZeroMQ threads; it
     * waits for the victim's ids. */
    bool as_root = geteuid() == 0;
    int ids_pipe[2] = {-1, -1};
    pid_t attacker = 0;
    if (as_root) {
        ck_assert_int_eq(pipe2(ids_pipe, O_CLOEXEC), 0);
        attacker = th_fork();
        ck_assert_int_ge(attacker, 0);
        if (attacker == 0) {
            close(ids_pipe[1]);
            _exit(attacker_main(ids_pipe[0], broker.endpoint));
        }
        close(ids_pipe[0]);
    } else {
        printf("hostile_peer: skipped the other-user attack: not running as root\n");
    }

    const char *const main_args[] = {"--threads", "4", "--prefetch", "4", NULL};
    const char *const slow_args[] = {"--queue", "slow", "--threads", "2", NULL};
    pid_t w_main = th_worker_start(broker.endpoint, main_args);
    pid_t w_slow = th_worker_start(broker.endpoint, slow_args);
    ck_assert(w_main > 0 && w_slow > 0);
    taskq_client_t *c = kclient(broker.endpoint, NULL, 30000, false);
    ck_assert_int_eq(th_wait_workers(c, 2, 10000), 0);

    /* The victim (this process's user) keeps its outcomes at the broker:
     * done squares, a failed job, two running sleeps and four squares in
     * a queue nobody serves yet. */
    taskq_client_t *v = kclient(broker.endpoint, NULL, 30000, true);
    victim_ids_t ids = {0};
    taskq_future_t *done_f[4], *fail_f, *slow_f[2], *queued_f[4];
    taskq_submit_opts_t slow_q = {.queue = "slow"}, vq = {.queue = "victim-q"};
    for (int i = 0; i < 4; i++)
        done_f[i] = th_submit_int(v, "square", 5 + i, NULL);
    fail_f = th_submit_int(v, "fail", 42, NULL);
    for (int i = 0; i < 4; i++) {
        ck_assert_code(taskq_future_wait(done_f[i], 10000), 0);
        ck_assert_int_eq(th_result_int(done_f[i]), (5 + i) * (5 + i));
        ids.ids[ids.n++] = taskq_future_job_id(done_f[i]);
    }
    ck_assert_code(taskq_future_wait(fail_f, 10000), TASKQ_EFAILED);
    ids.failed_id = ids.ids[ids.n++] = taskq_future_job_id(fail_f);
    ids.done_id = ids.ids[0];
    for (int i = 0; i < 2; i++)
        slow_f[i] = th_submit_int(v, "sleep", 4000, &slow_q);
    for (int i = 0; i < 4; i++)
        queued_f[i] = th_submit_int(v, "square", 100 + i, &vq);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(th_wait_accepted(slow_f[i], 5000), 0);
        ids.ids[ids.n++] = taskq_future_job_id(slow_f[i]);
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(th_wait_accepted(queued_f[i], 5000), 0);
        ids.ids[ids.n++] = taskq_future_job_id(queued_f[i]);
    }
    bool ok;
    WAIT_FOR(ok, stat_of(c, "running") == 2, 5000);
    ck_assert_msg(ok, "the victim's sleeps are not running");

    /* A raw client of this user holds a client_id (with a task). */
    raw_t holder = {0};
    taskq_buf_t b = {0};
    static uint8_t rbuf[1 << 16];
    taskq_msg_t m;
    ck_assert_int_eq(raw_open(&holder, broker.endpoint, 0), 0);
    ids.holder_client_id = 0x401de40000000001ull;
    enc_hello(&b, ids.holder_client_id, NULL, NULL);
    ck_assert_int_eq(raw_send(&holder, &b), 0);
    ck_assert_int_eq(raw_expect(&holder, TASKQ_MSG_WELCOME, rbuf, sizeof rbuf, &m, 5000), 0);
    taskq_submit_item_t item = {.function = taskq_span_cstr("square"),
                                .queue = taskq_span_cstr("victim-q"),
                                .max_attempts = 1,
                                .arg = taskq_span_cstr("\x03")};
    taskq_buf_reset(&b);
    taskq_enc_submit_begin(&b, 1, 1);
    taskq_enc_submit_item(&b, &item);
    ck_assert_int_eq(raw_send(&holder, &b), 0);
    ck_assert_int_eq(raw_expect(&holder, TASKQ_MSG_ACCEPTED, rbuf, sizeof rbuf, &m, 5000), 0);
    uint64_t holder_job = m.u.accepted.first_job;

    /* (d) A worker that was given nothing reports outcomes for the
     * victim's running and queued jobs, and for made-up ids. */
    raw_t liar = {0};
    ck_assert_int_eq(raw_open(&liar, broker.endpoint, 0), 0);
    enc_hello(&b, 0, "liar-q", "nothing");
    ck_assert_int_eq(raw_send(&liar, &b), 0);
    ck_assert_int_eq(raw_expect(&liar, TASKQ_MSG_WELCOME, rbuf, sizeof rbuf, &m, 5000), 0);
    uint64_t malformed0 = stat_of(c, "malformed");
    uint8_t forged[16];
    size_t forged_len = th_pack_int(999999, forged, sizeof forged);
    taskq_buf_reset(&b);
    taskq_enc_done_begin(&b, ids.n - 5 + 1);
    for (uint32_t i = 5; i < ids.n; i++) {
        taskq_done_item_t d = {.job_id = ids.ids[i], .attempt = 1, .status = TASKQ_DONE_OK,
                               .payload = {forged, forged_len}};
        taskq_enc_done_item(&b, &d);
    }
    taskq_done_item_t made_up = {.job_id = 1ull << 50, .attempt = 1, .status = TASKQ_DONE_OK,
                                 .payload = {forged, forged_len}};
    taskq_enc_done_item(&b, &made_up);
    ck_assert_int_eq(raw_send(&liar, &b), 0);
    WAIT_FOR(ok, stat_of(c, "malformed") > malformed0, 5000);
    ck_assert_msg(ok, "forged DONE items not counted as malformed (%llu before, %llu now)",
                  (unsigned long long)malformed0, (unsigned long long)stat_of(c, "malformed"));
    raw_close(&liar);

    /* One connection over --max-malformed is disconnected: a DEALER that
     * does not reconnect sees its connection end. */
    raw_t bad = {0};
    ck_assert_int_eq(raw_open(&bad, broker.endpoint, -1), 0);
    ck_assert_int_eq(zmq_socket_monitor(bad.sock, "inproc://bad-monitor",
                                        ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED),
                     0);
    void *mon = zmq_socket(bad.ctx, ZMQ_PAIR);
    ck_assert_int_eq(zmq_connect(mon, "inproc://bad-monitor"), 0);
    for (int i = 0; i < MAX_MALFORMED + 10; i++)
        ck_assert_int_eq(zmq_send(bad.sock, "\xc1", 1, 0), 1);
    unsigned bad_errors = 0;
    bool gone = false;
    for (int64_t end = th_now_ms() + 5000; !gone && th_now_ms() < end;) {
        zmq_pollitem_t its[2] = {{bad.sock, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(its, 2, 100) <= 0)
            continue;
        if (its[0].revents & ZMQ_POLLIN)
            bad_errors += zmq_recv(bad.sock, rbuf, sizeof rbuf, ZMQ_DONTWAIT) >= 0;
        if (its[1].revents & ZMQ_POLLIN)
            gone = true; /* the only events asked for: the connection ended */
    }
    ck_assert_msg(gone, "a connection that sent %d malformed messages (limit %d) was not "
                  "disconnected within 5 s", MAX_MALFORMED + 10, MAX_MALFORMED);
    ck_assert_msg(bad_errors >= MAX_MALFORMED && bad_errors <= MAX_MALFORMED + 10,
                  "%u ERROR replies to %d malformed messages", bad_errors, MAX_MALFORMED + 10);
    zmq_close(mon);
    raw_close(&bad);

    /* (e) The attacker goes: send it the ids (the holder says it is alive
     * first, so that the broker holds its client_id). */
    if (as_root) {
        taskq_buf_reset(&b);
        taskq_enc_heartbeat(&b);
        raw_send(&holder, &b);
        ck_assert_int_eq(write(ids_pipe[1], &ids, sizeof ids), (ssize_t)sizeof ids);
        close(ids_pipe[1]);
    }

    /* (b) Idle connections: plain TCP ones that say nothing, and DEALERs
     * that finish the ZMTP greeting and say no HELLO (and do not
     * reconnect once dropped). */
    uint16_t port = endpoint_port(broker.endpoint);
    static int idle[IDLE_TCP];
    for (int i = 0; i < IDLE_TCP; i++) {
        idle[i] = tcp_connect(port);
        ck_assert_msg(idle[i] >= 0, "idle connection %d: %s", i, strerror(errno));
    }
    int64_t idle_opened = th_now_ms();
    void *zctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(zctx);
    int max_sockets = IDLE_ZMQ + 16, linger = 0, no_reconnect = -1;
    zmq_ctx_set(zctx, ZMQ_MAX_SOCKETS, max_sockets);
    void *zidle[IDLE_ZMQ];
    for (int i = 0; i < IDLE_ZMQ; i++) {
        zidle[i] = zmq_socket(zctx, ZMQ_DEALER);
        ck_assert_ptr_nonnull(zidle[i]);
        zmq_setsockopt(zidle[i], ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(zidle[i], ZMQ_RECONNECT_IVL, &no_reconnect, sizeof no_reconnect);
        ck_assert_int_eq(zmq_connect(zidle[i], broker.endpoint), 0);
    }

    /* (a) and (c): the flood, on its own thread, while a normal client
     * runs its tasks here. */
    uint64_t rss0 = stat_of(c, "rss_bytes");
    static flood_t fl;
    memset(&fl, 0, sizeof fl);
    atomic_init(&fl.done, false);
    snprintf(fl.endpoint, sizeof fl.endpoint, "%s", broker.endpoint);
    fl.deadline = th_now_ms() + 25000;
    pthread_t flood_thread;
    ck_assert_int_eq(pthread_create(&flood_thread, NULL, flood_main, &fl), 0);

    /* Maps of MAP_N tasks, as long as the flood lasts (at most 50). */
    th_squares_t sq = {0};
    taskq_map_opts_t mo = {.window = 200, .timeout_ms = 30000};
    int64_t t_map = th_now_ms();
    unsigned rounds = 0;
    do {
        ck_assert_code(taskq_map(c, "square", MAP_N, th_sq_input, th_sq_output, &sq, &mo), 0);
        ck_assert_uint_eq(sq.wrong, 0);
        rounds++;
    } while (!atomic_load(&fl.done) && rounds < 50);
    int64_t map_ms = th_now_ms() - t_map;
    pthread_join(flood_thread, NULL);
    ck_assert_msg(fl.why[0] == '\0', "flood: %s", fl.why);
    ck_assert_msg(fl.too_big == TASKQ_PERR_TOO_BIG, "a frame over --max-frame: ERROR %s",
                  fl.too_big < 0 ? "(none)" : taskq_perr_name(fl.too_big));

    /* The attacker's verdict. */
    if (as_root) {
        int st = th_wait_exit(attacker, 30000);
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "the attacker (uid %d) reached the victim's jobs: status %d (its log "
                      "says how)", NOBODY, st);
    }

    /* The idle connections were dropped: every plain one sees its end. */
    unsigned still_open = wait_closed(idle, IDLE_TCP, 10000);
    int64_t idle_ms = th_now_ms() - idle_opened;
    ck_assert_msg(still_open == 0, "%u of %d idle connections still open after %lld ms",
                  still_open, IDLE_TCP, (long long)idle_ms);
    /* The DEALERs connected a little later (zmq_connect is asynchronous):
     * wait for their drops too before closing them. */
    WAIT_FOR(ok, stat_of(c, "handshake_timeouts") >= IDLE_TCP + IDLE_ZMQ, 10000);
    for (int i = 0; i < IDLE_ZMQ; i++)
        zmq_close(zidle[i]);
    zmq_ctx_term(zctx);
    raw_close(&holder);

    /* Connections fall back to the real peers: two workers, c and v. */
    uint64_t conns = 0;
    WAIT_FOR(ok, (conns = stat_of(c, "connections")) <= 4, 10000);
    uint64_t timeouts = stat_of(c, "handshake_timeouts");
    uint64_t malformed = stat_of(c, "malformed"), disconnects = stat_of(c, "malformed_disconnects");
    uint64_t rss = stat_of(c, "rss_bytes"), denied = stat_of(c, "denied");
    printf("hostile_peer: in %lld ms, %u malformed messages sent (%u multipart, %u ERROR "
           "replies read) and %u 1 MiB frames; the broker counted %llu malformed, %llu "
           "malformed disconnects, %llu handshake timeouts, %llu denied; %d idle connections "
           "all closed within %lld ms; %u tasks right in %lld ms meanwhile; %llu connections "
           "open after; RSS %llu MiB before, %llu MiB after (bound %llu MiB)\n",
           (long long)fl.ms, fl.sent, fl.multipart, fl.replies, fl.huge_sent,
           (unsigned long long)malformed, (unsigned long long)disconnects,
           (unsigned long long)timeouts, (unsigned long long)denied, IDLE_TCP + IDLE_ZMQ,
           (long long)idle_ms, rounds * MAP_N, (long long)map_ms, (unsigned long long)conns,
           (unsigned long long)(rss0 >> 20), (unsigned long long)(rss >> 20),
           (unsigned long long)(RSS_BOUND >> 20));
    fflush(stdout);
    ck_assert_msg(ok, "%llu connections open, want at most 4", (unsigned long long)conns);
    /* Each idle connection was dropped for saying no HELLO in time (the
     * flood's sockets may add to that). */
    ck_assert_msg(timeouts >= IDLE_TCP + IDLE_ZMQ, "handshake_timeouts %llu, want >= %d",
                  (unsigned long long)timeouts, IDLE_TCP + IDLE_ZMQ);
    ck_assert_msg(malformed >= FLOOD_MSGS / 10, "malformed %llu after %u sent",
                  (unsigned long long)malformed, fl.sent);
    ck_assert_uint_gt(disconnects, 0);
    ck_assert_msg(rss > 0 && rss < RSS_BOUND, "broker RSS %llu MiB, bound %llu MiB",
                  (unsigned long long)(rss >> 20), (unsigned long long)(RSS_BOUND >> 20));
    if (as_root)
        ck_assert_uint_gt(denied, 0);

    /* The victim's jobs are untouched: the sleeps come from the real
     * worker, the queued squares run once a worker serves their queue,
     * the retained outcomes are still there, the failed job still failed. */
    for (int i = 0; i < 2; i++) {
        ck_assert_code(taskq_future_wait(slow_f[i], 15000), 0);
        ck_assert_int_eq(th_result_int(slow_f[i]), w_slow); /* test_worker's sleep: its pid */
        ck_assert_uint_eq(taskq_future_attempts(slow_f[i]), 1);
    }
    const char *const vq_args[] = {"--queue", "victim-q", NULL};
    ck_assert_int_gt(th_worker_start(broker.endpoint, vq_args), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_code(taskq_future_wait(queued_f[i], 15000), 0);
        ck_assert_int_eq(th_result_int(queued_f[i]), (100 + i) * (100 + i));
    }
    taskq_client_t *v2 = kclient(broker.endpoint, NULL, 30000, true);
    for (int i = 0; i < 4; i++) {
        taskq_future_t *f = NULL;
        ck_assert_code(taskq_future_attach(v2, ids.ids[i], &f), 0);
        ck_assert_code(taskq_future_wait(f, 5000), 0);
        ck_assert_int_eq(th_result_int(f), (5 + i) * (5 + i));
        taskq_future_destroy(&f);
    }
    taskq_future_t *hf = NULL;
    ck_assert_code(taskq_future_attach(v2, holder_job, &hf), 0);
    ck_assert_code(taskq_future_wait(hf, 10000), 0);
    ck_assert_int_eq(th_result_int(hf), 9);
    taskq_future_destroy(&hf);
    taskq_failed_t *failed = NULL;
    size_t n_failed = 0;
    ck_assert_code(taskq_client_failed(c, 0, 100, 5000, &failed, &n_failed), 0);
    ck_assert_uint_eq(n_failed, 1);
    ck_assert_uint_eq(failed[0].job_id, ids.failed_id);
    ck_assert_int_eq(failed[0].state, TASKQ_STATE_FAILED);
    taskq_failed_free(&failed);

    for (int i = 0; i < 4; i++)
        taskq_future_destroy(&done_f[i]);
    for (int i = 0; i < 4; i++)
        taskq_future_destroy(&queued_f[i]);
    for (int i = 0; i < 2; i++)
        taskq_future_destroy(&slow_f[i]);
    taskq_future_destroy(&fail_f);
    taskq_buf_fini(&b);
    taskq_client_destroy(&v2);
    taskq_client_destroy(&v);
    taskq_client_destroy(&c);
    int st = th_broker_stop(&broker, SIGTERM);
    ck_assert_exit(st, 0);
}
END_TEST

/* ---- 2. CURVE roles ---------------------------------------------------- */

static const char *const role_keys[] = {"server", "client1", "client2", "worker1",
                                        "admin1", "unknown", NULL};

/* Keys for the role tests, and a CURVE broker on loopback. */
static void curve_broker(bool with_exec, const char *const *extra)
{
    keys_make(role_keys);
    allow("client1", "clients");
    allow("client2", "clients");
    allow("worker1", "workers");
    allow("admin1", "admin");
    if (with_exec)
        allow("client1", "exec");
    ck_assert_int_eq(th_broker_start(&broker, "tcp://127.0.0.1:*", curve_args(with_exec, extra)),
                     0);
}

/* Start taskq-worker --exec with the key pair name; its pid. */
static pid_t pool_start(const char *name)
{
    const char *const args[] = {"--broker", broker.endpoint, "--procs", "1", "--exec",
                                "--curve-server-key", kfile("server", "pub"),
                                "--curve-key", kfile(name, "key"), NULL};
    pid_t pid = th_spawn(TASKQ_WORKER_PATH, args);
    ck_assert_int_gt(pid, 0);
    return pid;
}

START_TEST(test_curve_roles)
{
    curve_broker(false, NULL);
    const char *ep = broker.endpoint;

    /* Options: both keys or neither, and real keys. */
    taskq_client_opts_t half = {0}, junk = {0};
    client_curve(&half, NULL, kfile("client1", "key"));
    client_curve(&junk, kfile("server", "pub"), "/nonexistent/taskq.key");
    taskq_client_t *bad = NULL;
    ck_assert_code(taskq_client_new(ep, &half, &bad), TASKQ_EINVAL);
    ck_assert_code(taskq_client_new(ep, &junk, &bad), TASKQ_EINVAL);
    taskq_worker_opts_t whalf = {0};
    worker_curve(&whalf, kfile("server", "pub"), NULL);
    taskq_worker_t *wbad = NULL;
    ck_assert_code(taskq_worker_new(ep, &whalf, &wbad), TASKQ_EINVAL);

    /* The admin watches the broker; worker1 serves; client1 gets results. */
    taskq_client_t *admin = kclient(ep, "admin1", 10000, false);
    ck_assert_code(taskq_client_ping(admin, 5000, NULL, NULL), 0);
    wthread_t w1;
    wthread_start(&w1, ep, "worker1");
    ck_assert_int_eq(th_wait_workers(admin, 1, 10000), 0);
    taskq_client_t *c1 = kclient(ep, "client1", 10000, true);
    taskq_future_t *f = th_submit_int(c1, "square", 12, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_eq(th_result_int(f), 144);
    taskq_future_destroy(&f);

    /* An unknown key, and a client's key registering as a worker: refused
     * within a bounded time, never counted as workers. */
    const char *const refused[] = {"unknown", "client1"};
    int64_t run_ms[2], pool_ms[2];
    for (int i = 0; i < 2; i++) {
        wthread_t wx;
        int64_t t0 = th_now_ms();
        wthread_start(&wx, ep, refused[i]);
        int rc = 1;
        for (int64_t end = t0 + 5000; rc == 1 && th_now_ms() < end;) {
            ck_assert_uint_eq(stat_of(admin, "workers"), 1);
            rc = wthread_wait(&wx, 50);
        }
        int64_t took = th_now_ms() - t0;
        wthread_stop(&wx);
        ck_assert_msg(rc == TASKQ_EDENIED, "worker with the %s key: run returned %s after %lld ms",
                      refused[i], rc == 1 ? "nothing" : taskq_errname(rc), (long long)took);
        run_ms[i] = took;
        ck_assert_uint_eq(stat_of(admin, "workers"), 1);

        int64_t t1 = th_now_ms();
        pid_t pool = pool_start(refused[i]);
        int st = th_wait_exit(pool, 10000);
        pool_ms[i] = th_now_ms() - t1;
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 77,
                      "taskq-worker with the %s key: status %d after %lld ms, want exit 77",
                      refused[i], st, (long long)pool_ms[i]);
        ck_assert_uint_eq(stat_of(admin, "workers"), 1);
    }

    /* A client with an unknown key is refused at once; one with a
     * worker's key cannot be a client; one without keys gets nothing. */
    taskq_client_t *cu = kclient(ep, "unknown", 10000, false);
    int64_t t0 = th_now_ms();
    ck_assert_code(taskq_client_ping(cu, 5000, NULL, NULL), TASKQ_EDENIED);
    ck_assert_int_lt(th_now_ms() - t0, 5000);
    taskq_client_destroy(&cu);
    taskq_client_t *cw = kclient(ep, "worker1", 10000, false);
    f = th_submit_int(cw, "square", 3, NULL);
    ck_assert_code(taskq_future_wait(f, 5000), TASKQ_EDENIED);
    taskq_future_destroy(&f);
    taskq_client_destroy(&cw);
    taskq_client_t *none = kclient(ep, NULL, 2000, false);
    t0 = th_now_ms();
    int rc = taskq_client_ping(none, 1000, NULL, NULL);
    int64_t none_ms = th_now_ms() - t0;
    ck_assert_msg(rc != 0, "a client without keys got an answer");
    ck_assert_int_lt(none_ms, 3000);
    printf("curve_roles: worker refused in %lld ms (unknown key) and %lld ms (client key); "
           "taskq-worker exited 77 in %lld and %lld ms; a client without keys: ping %s "
           "after %lld ms\n",
           (long long)run_ms[0], (long long)run_ms[1], (long long)pool_ms[0],
           (long long)pool_ms[1], taskq_errname(rc), (long long)none_ms);
    fflush(stdout);
    f = th_submit_int(none, "square", 4, NULL);
    rc = taskq_future_wait(f, 1000);
    ck_assert_msg(rc != 0, "a client without keys got a result");
    taskq_future_destroy(&f);
    taskq_client_destroy(&none);
    const char *const cli[] = {"--broker", ep, "--curve-server-key", kfile("server", "pub"),
                               "--curve-key", kfile("unknown", "key"), "ping", NULL};
    char out[2048];
    int st = th_run(TASKQ_PATH, cli, 15000, out, sizeof out);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 125 &&
                      strstr(out, "refused this key"),
                  "taskq ping with an unknown key: status %d: %s", st, out);

    /* client2 can neither wait on nor cancel client1's job; the admin can
     * wait on it. */
    taskq_future_t *job = th_submit_int(c1, "sleep", 1500, NULL);
    ck_assert_int_eq(th_wait_accepted(job, 5000), 0);
    uint64_t id = taskq_future_job_id(job);
    taskq_client_t *c2 = kclient(ep, "client2", 10000, false);
    taskq_future_t *f2 = NULL, *fa = NULL;
    bool ok;
    WAIT_FOR(ok, stat_of(admin, "running") == 1, 5000);
    ck_assert_msg(ok, "client1's sleep is not running");
    ck_assert_uint_eq(stats_shape(c1).mine_running, 1);
    ck_assert_uint_eq(stats_shape(c2).mine_running, 0);
    ck_assert_code(taskq_future_attach(c2, id, &f2), 0);
    ck_assert_code(taskq_cancel(f2), 0);
    ck_assert_code(taskq_future_wait(f2, 5000), TASKQ_ENOJOB);
    ck_assert_code(taskq_future_attach(admin, id, &fa), 0);
    ck_assert_code(taskq_future_wait(job, 10000), 0);
    ck_assert_int_eq(th_result_int(job), 1500);
    ck_assert_code(taskq_future_wait(fa, 10000), 0);
    ck_assert_int_eq(th_result_int(fa), 1500);
    taskq_future_destroy(&fa);
    taskq_future_destroy(&f2);
    ck_assert_uint_gt(stat_of(admin, "denied"), 0);

    /* STATS: the admin sees queues and workers; client2 sees totals and
     * its own counts only. */
    stats_shape_t sa = stats_shape(admin), s2 = stats_shape(c2);
    ck_assert_int_gt(sa.queues, 0);
    ck_assert_int_eq(sa.worker_list, 1);
    ck_assert_msg(s2.has_mine, "no \"mine\" map in a client's STATS");
    ck_assert_int_eq(s2.queues, 0);
    ck_assert_int_eq(s2.worker_list, 0);
    ck_assert_uint_eq(s2.workers, 1);

    taskq_future_destroy(&job);
    taskq_client_destroy(&c2);
    taskq_client_destroy(&c1);
    ck_assert_code(wthread_stop(&w1), 0);
    taskq_client_destroy(&admin);
}
END_TEST

/* ---- 3. encryption on the wire ----------------------------------------- */

/* A TCP relay from a port of its own to the broker's, recording every
 * byte both ways. */
typedef struct proxy {
    int lfd;
    uint16_t port;        /* where it listens */
    uint16_t target;      /* the broker's port */
    int wake[2];          /* written to stop it */
    pthread_t thread;
    uint8_t *rec;         /* the bytes relayed */
    size_t rec_len, rec_cap;
    unsigned conns;       /* connections relayed */
} proxy_t;

enum { PROXY_PAIRS = 16, PROXY_REC_MAX = 32 << 20 };

/* Relay what from has to to, recording it.  false once either is done. */
static bool relay(proxy_t *px, int from, int to)
{
    uint8_t buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return false;
    if (px->rec_len + (size_t)n <= PROXY_REC_MAX) {
        if (px->rec_len + (size_t)n > px->rec_cap) {
            size_t cap = px->rec_cap ? px->rec_cap * 2 : 1 << 16;
            while (cap < px->rec_len + (size_t)n)
                cap *= 2;
            uint8_t *more = realloc(px->rec, cap);
            if (!more)
                return false;
            px->rec = more;
            px->rec_cap = cap;
        }
        memcpy(px->rec + px->rec_len, buf, (size_t)n);
        px->rec_len += (size_t)n;
    }
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void *proxy_main(void *p)
{
    proxy_t *px = p;
    int side[PROXY_PAIRS][2];
    for (int i = 0; i < PROXY_PAIRS; i++)
        side[i][0] = side[i][1] = -1;
    for (;;) {
        struct pollfd pf[2 + 2 * PROXY_PAIRS];
        int who[2 + 2 * PROXY_PAIRS];
        nfds_t n = 0;
        pf[n++] = (struct pollfd){.fd = px->wake[0], .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
        for (int i = 0; i < PROXY_PAIRS; i++) {
            for (int s = 0; s < 2 && side[i][0] >= 0; s++) {
                who[n] = i * 2 + s;
                pf[n++] = (struct pollfd){.fd = side[i][s], .events = POLLIN};
            }
        }
        if (poll(pf, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[0].revents)
            break;
        if (pf[1].revents & POLLIN) {
            int a = accept4(px->lfd, NULL, NULL, SOCK_CLOEXEC);
            int slot = -1;
            for (int i = 0; i < PROXY_PAIRS && slot < 0; i++)
                if (side[i][0] < 0)
                    slot = i;
            int bfd = a >= 0 && slot >= 0 ? tcp_connect(px->target) : -1;
            if (bfd < 0) {
                if (a >= 0)
                    close(a);
            } else {
                side[slot][0] = a;
                side[slot][1] = bfd;
                px->conns++;
            }
        }
        for (nfds_t k = 2; k < n; k++) {
            int i = who[k] / 2, s = who[k] % 2;
            if (!pf[k].revents || side[i][0] < 0)
                continue;
            if (!relay(px, side[i][s], side[i][1 - s])) {
                close(side[i][0]);
                close(side[i][1]);
                side[i][0] = side[i][1] = -1;
            }
        }
    }
    for (int i = 0; i < PROXY_PAIRS; i++) {
        if (side[i][0] >= 0) {
            close(side[i][0]);
            close(side[i][1]);
        }
    }
    return NULL;
}

static void proxy_start(proxy_t *px, uint16_t target)
{
    memset(px, 0, sizeof *px);
    px->target = target;
    px->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(px->lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    ck_assert_int_eq(bind(px->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(px->lfd, 16), 0);
    ck_assert_int_eq(getsockname(px->lfd, (struct sockaddr *)&sa, &len), 0);
    px->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pipe2(px->wake, O_CLOEXEC), 0);
    ck_assert_int_eq(pthread_create(&px->thread, NULL, proxy_main, px), 0);
}

static void proxy_stop(proxy_t *px)
{
    ck_assert_int_eq(write(px->wake[1], "x", 1), 1);
    pthread_join(px->thread, NULL);
    close(px->lfd);
    close(px->wake[0]);
    close(px->wake[1]);
}

/*
 * Run one CANARY_FN task through a worker connected via a recording proxy
 * (keys: the worker's and the client's key pair names, NULL for none) and
 * return the proxy's record in *px (the caller frees px->rec).
 */
static void canary_run(proxy_t *px, const char *worker_key, const char *client_key)
{
    proxy_start(px, endpoint_port(broker.endpoint));
    char via[64];
    snprintf(via, sizeof via, "tcp://127.0.0.1:%u", (unsigned)px->port);
    wthread_t w;
    wthread_start(&w, via, worker_key);
    taskq_client_t *c = kclient(broker.endpoint, client_key, 10000, false);
    uint8_t arg[64];
    size_t len = 0;
    arg[len++] = (uint8_t)(0xa0 | strlen(CANARY_ARG));
    memcpy(arg + len, CANARY_ARG, strlen(CANARY_ARG));
    len += strlen(CANARY_ARG);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, CANARY_FN, arg, len, NULL, &f), 0);
    ck_assert_code(taskq_future_wait(f, 15000), 0);
    size_t rlen;
    const void *r = taskq_future_result(f, &rlen);
    ck_assert_uint_eq(rlen, len);
    ck_assert_int_eq(memcmp(r, arg, len), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
    ck_assert_code(wthread_stop(&w), 0);
    proxy_stop(px);
    ck_assert_uint_ge(px->conns, 1);
}

START_TEST(test_curve_encrypted)
{
    curve_broker(false, NULL);
    proxy_t px;
    canary_run(&px, "worker1", "client1");
    size_t curve_bytes = px.rec_len;
    bool name = contains(px.rec, px.rec_len, CANARY_FN);
    bool argument = contains(px.rec, px.rec_len, CANARY_ARG);
    free(px.rec);
    ck_assert_msg(curve_bytes > 256, "only %zu bytes went through the proxy", curve_bytes);
    ck_assert_msg(!name, "the function name crossed the CURVE connection in plain text");
    ck_assert_msg(!argument, "the argument crossed the CURVE connection in plain text");
    th_broker_stop(&broker, SIGTERM);

    /* The same without CURVE shows both: the check can see plain text. */
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    canary_run(&px, NULL, NULL);
    name = contains(px.rec, px.rec_len, CANARY_FN);
    argument = contains(px.rec, px.rec_len, CANARY_ARG);
    printf("curve_encrypted: %zu bytes relayed with CURVE, %zu without\n", curve_bytes,
           px.rec_len);
    free(px.rec);
    ck_assert_msg(name && argument, "plain text run: name seen %d, argument seen %d", name,
                  argument);
}
END_TEST

/* ---- 4. bind policy ---------------------------------------------------- */

/*
 * Run taskqd with args in a network namespace of its own, so that a bind
 * on every address reaches nothing outside it, its output in log.
 * Returns its pid, or 0 where no namespace can be made (not root).
 */
static pid_t taskqd_isolated(const char *const *args, const char *log)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = th_fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        char made = unshare(CLONE_NEWNET) == 0;
        if (write(p[1], &made, 1) != 1 || !made)
            _exit(125);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        char *argv[32];
        size_t n = 0;
        argv[n++] = (char *)TASKQD_PATH;
        for (size_t i = 0; args[i] && n < 31; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(TASKQD_PATH, argv);
        _exit(127);
    }
    close(p[1]);
    char made = 0;
    int got = read_full(p[0], &made, 1, 10000);
    close(p[0]);
    if (got != 0 || !made) {
        th_wait_exit(pid, 5000);
        return 0;
    }
    return pid;
}

static void read_file(const char *path, char *buf, size_t cap)
{
    size_t n = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/* taskqd with args must refuse to start: exit 64, saying how to set up
 * keys.  In a namespace of its own where one can be made. */
static void expect_refused(const char *const *args)
{
    char log[300], out[4096];
    snprintf(log, sizeof log, "%s/refused.log", broker.dir);
    pid_t pid = taskqd_isolated(args, log);
    int st;
    if (pid > 0) {
        st = th_wait_exit(pid, 10000);
        read_file(log, out, sizeof out);
    } else {
        st = th_run(TASKQD_PATH, args, 10000, out, sizeof out);
    }
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 64,
                  "taskqd %s %s: status %d, want exit 64; it said: %s", args[2], args[3], st,
                  out);
    ck_assert_msg(strstr(out, "--curve-secret") && strstr(out, "keygen"),
                  "the refusal does not say how to set up keys: %s", out);
}

/* Whether child pid has exited (without reaping it). */
static bool has_exited(pid_t pid)
{
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == pid;
}

/* taskqd with args starts (in a namespace of its own) and stops on
 * SIGTERM with 0.  False if no namespace can be made here. */
static bool expect_starts_isolated(const char *const *args)
{
    char log[300], ready[300], out[4096];
    snprintf(log, sizeof log, "%s/isolated.log", broker.dir);
    snprintf(ready, sizeof ready, "%s/isolated.ready", broker.dir);
    unlink(ready);
    const char *full[32] = {"--memory", "--ready-file", ready};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 31; i++)
        full[n++] = args[i];
    full[n] = NULL;
    pid_t pid = taskqd_isolated(full, log);
    if (pid == 0)
        return false;
    bool ok;
    WAIT_FOR(ok, access(ready, F_OK) == 0 || has_exited(pid), 10000);
    read_file(log, out, sizeof out);
    ck_assert_msg(access(ready, F_OK) == 0, "taskqd %s %s did not start: %s", args[0], args[1],
                  out);
    int st = th_stop(pid, SIGTERM);
    ck_assert_exit(st, 0);
    return true;
}

START_TEST(test_bind_policy)
{
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    const char *const any[] = {"--memory", "--bind", "tcp://0.0.0.0:*", NULL};
    const char *const star[] = {"--memory", "--bind", "tcp://*:*", NULL};
    /* 10.213.0.1 is not this host's: a broker that tried to bind it would
     * exit 69 (cannot bind), so 64 says the policy refused it first. */
    const char *const two[] = {"--memory", "--bind", "tcp://127.0.0.1:*", "--bind",
                               "tcp://10.213.0.1:*", NULL};
    expect_refused(any);
    expect_refused(star);
    expect_refused(two);

    const char *const insecure[] = {"--bind", "tcp://0.0.0.0:*", "--insecure", NULL};
    if (!expect_starts_isolated(insecure))
        printf("bind_policy: skipped starting on 0.0.0.0 with --insecure: no network "
               "namespace can be made here (not root)\n");

    /* Loopback addresses, the loopback interface and ipc:// always start. */
    const char *const loopbacks[] = {"tcp://127.0.0.1:*", "tcp://127.0.0.2:*", "tcp://lo:*",
                                     NULL};
    for (int i = 0; loopbacks[i]; i++) {
        ck_assert_msg(th_broker_start(&broker, loopbacks[i], NULL) == 0, "%s refused",
                      loopbacks[i]);
        taskq_client_t *c = kclient(broker.endpoint, NULL, 5000, false);
        ck_assert_code(taskq_client_ping(c, 5000, NULL, NULL), 0);
        taskq_client_destroy(&c);
        ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);
    }
    char ipc[300];
    snprintf(ipc, sizeof ipc, "ipc://%s/taskq.sock", broker.dir);
    ck_assert_int_eq(th_broker_start(&broker, ipc, NULL), 0);
    taskq_client_t *c = kclient(broker.endpoint, NULL, 5000, false);
    ck_assert_code(taskq_client_ping(c, 5000, NULL, NULL), 0);
    taskq_client_destroy(&c);
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);
}
END_TEST

/* With a server key, every address is allowed without --insecure. */
START_TEST(test_bind_policy_curve)
{
    if (geteuid() != 0) {
        printf("bind_policy_curve: skipped: no network namespace without root\n");
        return;
    }
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    const char *const names[] = {"server", NULL};
    keys_make(names);
    const char *const args[] = {"--bind", "tcp://0.0.0.0:*", "--curve-secret",
                                kfile("server", "key"), "--allow-clients",
                                kdir_of("clients"), NULL};
    ck_assert(expect_starts_isolated(args));
}
END_TEST

/* ---- 5. IPC socket permissions ----------------------------------------- */

/* Whether uid nobody may connect to the socket at path (in a process of
 * its own).  Needs root. */
static bool nobody_connects(const char *path)
{
    pid_t pid = th_fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
            _exit(2);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            _exit(0);
        fprintf(stderr, "connect %s as nobody: %s\n", path, strerror(errno));
        _exit(errno == EACCES ? 1 : 3);
    }
    int st = th_wait_exit(pid, 5000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) <= 1, "status %d", st);
    return WEXITSTATUS(st) == 0;
}

/* Start a broker on ipc://dir/taskq.sock with args; the socket's stat. */
static struct stat ipc_start(const char *dir, const char *const *args)
{
    static char ep[300];
    snprintf(ep, sizeof ep, "ipc://%s/taskq.sock", dir);
    ck_assert_int_eq(th_broker_start(&broker, ep, args), 0);
    struct stat st;
    ck_assert_int_eq(stat(ep + 6, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    return st;
}

START_TEST(test_ipc_mode)
{
    /* The broker's directory holds the socket; open to all, so that the
     * socket's mode decides who may connect. */
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    ck_assert_int_eq(chmod(broker.dir, 0755), 0);
    const char *dir = broker.dir;
    bool root = geteuid() == 0;
    char sock[300];
    snprintf(sock, sizeof sock, "%s/taskq.sock", dir);

    const char *const m600[] = {"--ipc-mode", "0600", NULL};
    struct stat st = ipc_start(dir, m600);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    if (root)
        ck_assert_msg(!nobody_connects(sock), "nobody connected to a 0600 socket");
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    st = ipc_start(dir, NULL);
    ck_assert_uint_eq(st.st_mode & 07777, 0660);
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    const char *const m666[] = {"--ipc-mode", "0666", NULL};
    st = ipc_start(dir, m666);
    ck_assert_uint_eq(st.st_mode & 07777, 0666);
    if (root)
        ck_assert_msg(nobody_connects(sock), "nobody could not connect to a 0666 socket");
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    struct group *g = getgrnam("nogroup");
    if (!g)
        g = getgrnam("daemon");
    ck_assert_msg(g != NULL, "neither group nogroup nor daemon exists");
    static char gname[64];
    snprintf(gname, sizeof gname, "%s", g->gr_name);
    gid_t gid = g->gr_gid;
    const char *const grp[] = {"--ipc-group", gname, NULL};
    st = ipc_start(dir, grp);
    ck_assert_uint_eq(st.st_gid, gid);
    ck_assert_uint_eq(st.st_mode & 07777, 0660);
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    char ep[320], out[2048];
    snprintf(ep, sizeof ep, "ipc://%s/other.sock", dir);
    const char *const nogrp[] = {"--memory", "--bind", ep, "--ipc-group",
                                 "taskq-no-such-group", NULL};
    ck_assert_exit(th_run(TASKQD_PATH, nogrp, 10000, out, sizeof out), 64);
    const char *const badmode[] = {"--memory", "--bind", ep, "--ipc-mode", "0999", NULL};
    ck_assert_exit(th_run(TASKQD_PATH, badmode, 10000, out, sizeof out), 64);
}
END_TEST

/* ---- 6. per-client limits ---------------------------------------------- */

/* Submit n tasks of fn with the argument arg (len bytes) in one batch;
 * the futures go to fs. */
static void submit_batch(taskq_client_t *c, const char *fn, const void *arg, size_t len,
                         unsigned n, taskq_future_t **fs)
{
    for (unsigned i = 0; i < n; i++)
        ck_assert_code(taskq_submit(c, fn, arg, len, NULL, &fs[i]), 0);
    ck_assert_code(taskq_client_flush(c), 0);
}

START_TEST(test_client_limits)
{
    const char *const args[] = {"--client-max-queued", "10", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, args), 0);
    taskq_client_t *c = kclient(broker.endpoint, NULL, 5000, false);
    uint8_t arg[16];
    size_t len = th_pack_int(1, arg, sizeof arg);
    taskq_future_t *fs[11];

    /* 11 in one SUBMIT: refused whole. */
    submit_batch(c, "square", arg, len, 11, fs);
    for (int i = 0; i < 11; i++) {
        ck_assert_code(taskq_future_wait(fs[i], 5000), TASKQ_EREFUSED);
        ck_assert_int_eq(taskq_future_state(fs[i]), TASKQ_STATE_REFUSED);
        taskq_future_destroy(&fs[i]);
    }
    ck_assert_uint_eq(stat_of(c, "queued"), 0);
    /* 10 fit; the 11th does not. */
    submit_batch(c, "square", arg, len, 10, fs);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(th_wait_accepted(fs[i], 5000), 0);
    submit_batch(c, "square", arg, len, 1, &fs[10]);
    ck_assert_code(taskq_future_wait(fs[10], 5000), TASKQ_EREFUSED);
    for (int i = 0; i < 11; i++)
        taskq_future_destroy(&fs[i]);
    ck_assert_uint_ge(stat_of(c, "client_limits"), 2);
    taskq_client_destroy(&c);
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    /* Argument bytes: two 60,000-byte arguments fit in 150,000, a third
     * does not. */
    const char *const bytes[] = {"--client-max-bytes", "150000", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, bytes), 0);
    c = kclient(broker.endpoint, NULL, 5000, false);
    enum { BIG = 60000 };
    uint8_t *big = malloc(BIG + 5);
    ck_assert_ptr_nonnull(big);
    big[0] = 0xdb; /* str 32 */
    big[1] = 0;
    big[2] = 0;
    big[3] = (uint8_t)(BIG >> 8);
    big[4] = (uint8_t)(BIG & 0xff);
    memset(big + 5, 'b', BIG);
    submit_batch(c, "echo", big, BIG + 5, 2, fs);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(th_wait_accepted(fs[i], 5000), 0);
    submit_batch(c, "echo", big, BIG + 5, 1, &fs[2]);
    ck_assert_code(taskq_future_wait(fs[2], 5000), TASKQ_EREFUSED);
    for (int i = 0; i < 3; i++)
        taskq_future_destroy(&fs[i]);
    free(big);
    ck_assert_uint_ge(stat_of(c, "client_limits"), 1);
    taskq_client_destroy(&c);
    ck_assert_exit(th_broker_stop(&broker, SIGTERM), 0);

    /* Connections: the broker closes those beyond 5 as it accepts them. */
    const char *const conns[] = {"--max-connections", "5", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, conns), 0);
    uint16_t port = endpoint_port(broker.endpoint);
    int fds[10];
    for (int i = 0; i < 10; i++) {
        fds[i] = tcp_connect(port);
        ck_assert_int_ge(fds[i], 0);
    }
    /* Five are closed; then the other five stay open a while. */
    unsigned open_n = 10;
    for (int64_t end = th_now_ms() + 5000; open_n > 5 && th_now_ms() < end;)
        open_n = wait_closed(fds, 10, 50);
    ck_assert_uint_eq(open_n, 5);
    ck_assert_uint_eq(wait_closed(fds, 10, 300), 5);
    for (int i = 0; i < 10; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* With them gone, a client is served, and sees the refusals. */
    c = kclient(broker.endpoint, NULL, 10000, false);
    ck_assert_code(taskq_client_ping(c, 10000, NULL, NULL), 0);
    ck_assert_uint_ge(stat_of(c, "connections_refused"), 5);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- 7. permission to submit exec -------------------------------------- */

/* The argument of exec: {"argv": ["echo", word]}. */
static size_t exec_arg(uint8_t *buf, size_t cap, const char *word)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "argv", 4);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "echo", 4);
    msgpack_pack_str_with_body(&pk, word, strlen(word));
    size_t n = sb.size <= cap ? sb.size : 0;
    memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

START_TEST(test_exec_permission)
{
    curve_broker(true, NULL);
    pool_start("worker1");
    taskq_client_t *c1 = kclient(broker.endpoint, "client1", 10000, false);
    taskq_client_t *c2 = kclient(broker.endpoint, "client2", 10000, false);
    uint8_t arg[128];
    size_t len = exec_arg(arg, sizeof arg, "exec-allowed-word");
    taskq_future_t *f1 = NULL, *f2 = NULL;
    ck_assert_code(taskq_submit(c1, "exec", arg, len, NULL, &f1), 0);
    ck_assert_code(taskq_submit(c2, "exec", arg, len, NULL, &f2), 0);
    ck_assert_code(taskq_future_wait(f2, 5000), TASKQ_EDENIED);
    ck_assert_int_eq(taskq_future_state(f2), TASKQ_STATE_REFUSED);
    ck_assert_code(taskq_future_wait(f1, 15000), 0);
    size_t rlen;
    const void *r = taskq_future_result(f1, &rlen);
    ck_assert_msg(contains(r, rlen, "exec-allowed-word"), "exec's output is not in its result");
    taskq_future_destroy(&f1);
    taskq_future_destroy(&f2);
    /* client2 may still submit other functions. */
    f2 = th_submit_int(c2, "square", 2, NULL);
    ck_assert_int_eq(th_wait_accepted(f2, 5000), 0);
    taskq_future_destroy(&f2);
    taskq_client_destroy(&c1);
    taskq_client_destroy(&c2);
}
END_TEST

/* Without CURVE, a local client may submit exec. */
START_TEST(test_exec_local)
{
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    taskq_client_t *c = kclient(broker.endpoint, NULL, 5000, false);
    uint8_t arg[128];
    size_t len = exec_arg(arg, sizeof arg, "local");
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "exec", arg, len, NULL, &f), 0);
    ck_assert_int_eq(th_wait_accepted(f, 5000), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
}
END_TEST

/* ---- 9. Revoking keys ------------------------------------------------------ */

/* Removing a key's .pub and SIGHUP: the broker re-reads the allow-lists;
 * the connected worker and client with that key are told DENIED and
 * forgotten, and the key cannot come back; the other keys go on. */
START_TEST(test_curve_revoke)
{
    curve_broker(false, NULL);
    const char *ep = broker.endpoint;
    taskq_client_t *admin = kclient(ep, "admin1", 10000, false);
    ck_assert_code(taskq_client_ping(admin, 5000, NULL, NULL), 0);
    wthread_t w1;
    wthread_start(&w1, ep, "worker1");
    ck_assert_int_eq(th_wait_workers(admin, 1, 10000), 0);
    taskq_client_t *c1 = kclient(ep, "client1", 10000, false);
    taskq_future_t *f = th_submit_int(c1, "square", 9, NULL);
    ck_assert_code(taskq_future_wait(f, 10000), 0);
    ck_assert_int_eq(th_result_int(f), 81);
    taskq_future_destroy(&f);

    char path[400];
    snprintf(path, sizeof path, "%s/workers/worker1.pub", kdir);
    ck_assert_int_eq(unlink(path), 0);
    snprintf(path, sizeof path, "%s/clients/client1.pub", kdir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(kill(broker.pid, SIGHUP), 0);

    /* The worker's run ends DENIED; the broker counts no worker. */
    int rc = 1;
    for (int64_t end = th_now_ms() + 10000; rc == 1 && th_now_ms() < end;)
        rc = wthread_wait(&w1, 50);
    wthread_stop(&w1);
    ck_assert_msg(rc == TASKQ_EDENIED, "the revoked worker's run returned %s",
                  rc == 1 ? "nothing" : taskq_errname(rc));
    ck_assert_uint_eq(stat_of(admin, "workers"), 0);

    /* The connected client is refused from now on, and so is a new one. */
    ck_assert_code(taskq_client_ping(c1, 5000, NULL, NULL), TASKQ_EDENIED);
    taskq_client_t *again = kclient(ep, "client1", 10000, false);
    ck_assert_code(taskq_client_ping(again, 5000, NULL, NULL), TASKQ_EDENIED);
    ck_assert_uint_ge(stat_of(admin, "keys_refused"), 1);

    /* The other keys are untouched. */
    taskq_client_t *c2 = kclient(ep, "client2", 10000, false);
    ck_assert_code(taskq_client_ping(c2, 5000, NULL, NULL), 0);
    taskq_client_destroy(&c2);
    taskq_client_destroy(&again);
    taskq_client_destroy(&c1);
    taskq_client_destroy(&admin);
}
END_TEST

/* ---- 8. Local workers without CURVE ------------------------------------ */

static int noop_handler(taskq_task_t *t, void *userdata)
{
    (void)t;
    (void)userdata;
    return 0;
}

/* A process of uid nobody that serves as a worker of endpoint; it exits 0
 * if the broker refused it DENIED, 1 for another end of its run. */
static pid_t nobody_worker(const char *endpoint)
{
    pid_t pid = th_fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
            _exit(2);
        taskq_worker_t *w;
        if (taskq_worker_new(endpoint, NULL, &w) != 0 ||
            taskq_worker_register(w, "noop", noop_handler, NULL) != 0)
            _exit(3);
        int rc = taskq_worker_run(w);
        fprintf(stderr, "worker as nobody: %s\n", taskq_strerror(rc));
        _exit(rc == TASKQ_EDENIED ? 0 : 1);
    }
    return pid;
}

/* A worker is handed every user's tasks: without keys, another local user
 * may be one only when --worker-user names it. */
START_TEST(test_local_workers)
{
    if (geteuid() != 0) {
        printf("check_security: local_workers: SKIPPED: needs root to run as another user\n");
        return;
    }
    /* Each worker is forked before this process has a ZeroMQ context (and
     * its threads), so that the child's allocator is in a sane state. */
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    pid_t w = nobody_worker(broker.endpoint);
    taskq_client_t *c = kclient(broker.endpoint, NULL, 5000, false);
    int st = th_wait_exit(w, 10000);
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "a worker of uid nobody was not refused: status %d", st);
    ck_assert_uint_eq(stat_of(c, "workers"), 0);
    ck_assert_uint_ge(stat_of(c, "denied"), 1);
    taskq_client_destroy(&c);
    th_broker_stop(&broker, SIGTERM);

    static const char *const trusted[] = {"--worker-user", "nobody", NULL};
    ck_assert_int_eq(th_broker_start(&broker, NULL, trusted), 0);
    w = nobody_worker(broker.endpoint);
    c = kclient(broker.endpoint, NULL, 5000, false);
    bool ok = false;
    WAIT_FOR(ok, stat_of(c, "workers") == 1, 10000);
    ck_assert_msg(ok, "the worker of uid nobody named by --worker-user did not join");
    ck_assert_int_eq(kill(w, SIGKILL), 0);
    th_wait_exit(w, 5000);
    taskq_client_destroy(&c);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {
        {"local_workers", test_local_workers, 60, setup, teardown},
        {"curve_revoke", test_curve_revoke, 60, setup, keys_teardown},
        {"hostile_peer", test_hostile_peer, 90, setup, teardown},
        {"curve_roles", test_curve_roles, 60, setup, keys_teardown},
        {"curve_encrypted", test_curve_encrypted, 60, setup, keys_teardown},
        {"bind_policy", test_bind_policy, 60, setup, teardown},
        {"bind_policy_curve", test_bind_policy_curve, 30, setup, keys_teardown},
        {"ipc_mode", test_ipc_mode, 60, setup, teardown},
        {"client_limits", test_client_limits, 60, setup, teardown},
        {"exec_permission", test_exec_permission, 60, setup, keys_teardown},
        {"exec_local", test_exec_local, 30, setup, teardown},
    };
    return th_run_suite("security", cases, sizeof cases / sizeof cases[0]);
}
