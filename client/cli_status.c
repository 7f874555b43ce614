/*
 * cli_status.c - `taskq status` (the broker's counts, this client's own
 * jobs, and, for an admin, the queues and workers as aligned tables; or one
 * JSON document; once or refreshed in place with --watch) and `taskq ping`
 * (version and round-trip time).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <msgpack.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "cli_json.h"

#define INTERVAL_DEFAULT_MS 500
#define WATCH_INTERVAL_DEFAULT_MS 1000

static const char status_usage[] =
    "Usage: taskq status [--json] [--watch] [--interval S]\n"
    "\n"
    "Shows the broker's task counts, your own jobs (queued, running, and finished\n"
    "with outcomes not yet collected), its queues (queued, running, done, failed,\n"
    "retried, rate/s) and its workers (name, host, processes, busy, done, last\n"
    "seen) as aligned tables.  The processes of one taskq-worker (connections\n"
    "named NAME/0, NAME/1, ...) make one row.  rate/s is how many tasks ended\n"
    "(done or failed) per second between two samples of the counters.  The\n"
    "broker shows its queues and workers to admins only (see docs/SECURITY.md).\n"
    "\n"
    "Options:\n"
    "  -j, --json         print one JSON document instead (see the README)\n"
    "  -w, --watch        refresh in place, like top, until Ctrl-C; with --json,\n"
    "                     print one document per line at each refresh\n"
    "  -n, --interval S   with --watch, seconds between refreshes (default 1);\n"
    "                     without, seconds between the two samples the rates\n"
    "                     come from (default 0.5; 0 takes one sample and shows\n"
    "                     no rates)\n"
    "  -h, --help         this help\n"
    "\n"
    "Exit status:\n"
    "  0    success (with --watch: ended by Ctrl-C)\n"
    "  2    bad command line\n"
    "  125  no broker answered\n"
    "  130  interrupted by Ctrl-C between the two samples\n";

static const char ping_usage[] =
    "Usage: taskq ping\n"
    "\n"
    "Prints the broker's version and the round-trip time of one heartbeat:\n"
    "  taskqd 0.1.0 at tcp://127.0.0.1:7560: 0.215 ms\n"
    "\n"
    "Options:\n"
    "  -h, --help   this help\n"
    "\n"
    "Exit status:\n"
    "  0    the broker answered\n"
    "  2    bad command line\n"
    "  125  no broker answered\n";

/* ---- One sample of the broker's statistics ---------------------------- */

/* The counters of a queue, and of the whole broker, in this order. */
enum { C_QUEUED, C_RUNNING, C_DONE, C_FAILED, C_RETRIED, C_CANCELLED, C_LOST, C_TIMEDOUT, N_C };
static const char *const counter_names[N_C] = {"queued",  "running",   "done", "failed",
                                                "retried", "cancelled", "lost", "timedout"};
#define N_QUEUE_C 5 /* queues have the first five */

/* The asking client's own jobs (STATS "mine"), in this order. */
enum { M_QUEUED, M_RUNNING, M_RETAINED, N_M };
static const char *const mine_names[N_M] = {"queued", "running", "retained"};

typedef struct span {
    const char *p;
    size_t n;
} span_t;

typedef struct queue_row {
    span_t name;
    uint64_t c[N_QUEUE_C];
} queue_row_t;

/* The connections of one taskq-worker (or one other worker). */
typedef struct worker_row {
    span_t name;  /* without the /N of a taskq-worker's process */
    span_t host;
    uint32_t procs;
    uint64_t busy, credit, done;
    uint64_t last_seen_ms; /* the most recent of its connections */
    const msgpack_object *queues, *functions; /* of its first connection */
} worker_row_t;

typedef struct sample {
    void *buf;         /* the STATS_REPLY map */
    msgpack_unpacked u; /* buf unpacked; the spans and objects point into both */
    int64_t at_ms; /* monotonic time it was taken */
    span_t version;
    uint64_t uptime_ms, store_id, clients;
    span_t store;                           /* the store's name (empty: not said) */
    uint64_t store_bytes, storage_errors;   /* its size on disk, failed commits */
    bool store_ok;                          /* its commits succeed */
    uint64_t c[N_C];
    bool admin;                             /* the broker showed everything */
    bool has_mine;                          /* mine[] came with the sample */
    uint64_t mine[N_M];                     /* the asking client's own jobs */
    queue_row_t *q;
    size_t nq;
    worker_row_t *w;
    size_t nw;
} sample_t;

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* The uint at key in map m, 0 if it is absent or another type. */
static uint64_t get_uint(const msgpack_object *m, const char *key)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (key_is(&kv->key, key))
            return kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? kv->val.via.u64 : 0;
    }
    return 0;
}

/* The value at key in map m if it has type t, else NULL. */
static const msgpack_object *get(const msgpack_object *m, const char *key, msgpack_object_type t)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (key_is(&kv->key, key))
            return kv->val.type == t ? &kv->val : NULL;
    }
    return NULL;
}

static span_t get_str(const msgpack_object *m, const char *key)
{
    const msgpack_object *s = get(m, key, MSGPACK_OBJECT_STR);
    return s ? (span_t){s->via.str.ptr, s->via.str.size} : (span_t){"", 0};
}

static bool span_eq(span_t a, span_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

/* name without a trailing "/N" (N decimal digits). */
static span_t base_name(span_t name)
{
    size_t i = name.n;
    while (i > 0 && name.p[i - 1] >= '0' && name.p[i - 1] <= '9')
        i--;
    if (i < name.n && i > 1 && name.p[i - 1] == '/')
        return (span_t){name.p, i - 1};
    return name;
}

static void add_worker(sample_t *s, const msgpack_object *m)
{
    span_t name = base_name(get_str(m, "name")), host = get_str(m, "host");
    worker_row_t *r = NULL;
    for (size_t i = 0; i < s->nw && !r; i++)
        if (span_eq(s->w[i].name, name) && span_eq(s->w[i].host, host))
            r = &s->w[i];
    uint64_t seen = get_uint(m, "last_seen_ms");
    if (!r) {
        r = &s->w[s->nw++];
        *r = (worker_row_t){.name = name, .host = host, .last_seen_ms = seen,
                            .queues = get(m, "queues", MSGPACK_OBJECT_ARRAY),
                            .functions = get(m, "functions", MSGPACK_OBJECT_ARRAY)};
    }
    r->procs++;
    r->busy += get_uint(m, "running");
    r->credit += get_uint(m, "credit");
    r->done += get_uint(m, "done");
    if (seen < r->last_seen_ms)
        r->last_seen_ms = seen;
}

static void sample_fini(sample_t *s)
{
    if (s->buf)
        msgpack_unpacked_destroy(&s->u);
    free(s->buf);
    free(s->q);
    free(s->w);
    memset(s, 0, sizeof *s);
}

/* Take a sample, waiting up to timeout_ms in slices so that Ctrl-C ends
 * the wait.  Returns 0, or a TASKQ_E* code (TASKQ_ETIMEDOUT after Ctrl-C). */
static int sample_take(taskq_client_t *c, int32_t timeout_ms, sample_t *s)
{
    size_t len;
    memset(s, 0, sizeof *s);
    int64_t end = cli_now_ms() + timeout_ms;
    int rc;
    do {
        int64_t left = end - cli_now_ms();
        int32_t slice = left < 0 ? 0 : left < CLI_SLICE_MS ? (int32_t)left : CLI_SLICE_MS;
        rc = taskq_client_stats(c, slice, &s->buf, &len);
    } while (rc == TASKQ_ETIMEDOUT && !cli_interrupted() && cli_now_ms() < end);
    if (rc)
        return rc;
    s->at_ms = cli_now_ms();
    msgpack_unpacked_init(&s->u);
    size_t off = 0;
    const msgpack_object *m = &s->u.data;
    if (msgpack_unpack_next(&s->u, s->buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        m->type != MSGPACK_OBJECT_MAP) {
        sample_fini(s);
        return TASKQ_EPROTO;
    }
    s->version = get_str(m, "version");
    s->uptime_ms = get_uint(m, "uptime_ms");
    s->store_id = get_uint(m, "store_id");
    s->clients = get_uint(m, "clients");
    s->store = get_str(m, "store");
    s->store_bytes = get_uint(m, "store_bytes");
    s->storage_errors = get_uint(m, "storage_errors");
    const msgpack_object *ok = get(m, "store_ok", MSGPACK_OBJECT_BOOLEAN);
    s->store_ok = !ok || ok->via.boolean;
    for (int i = 0; i < N_C; i++)
        s->c[i] = get_uint(m, counter_names[i]);
    /* A broker that does not say is one from before isolation: it shows
     * everything, and has no "mine". */
    const msgpack_object *admin = get(m, "admin", MSGPACK_OBJECT_BOOLEAN);
    s->admin = !admin || admin->via.boolean;
    const msgpack_object *mine = get(m, "mine", MSGPACK_OBJECT_MAP);
    s->has_mine = mine != NULL;
    for (int i = 0; mine && i < N_M; i++)
        s->mine[i] = get_uint(mine, mine_names[i]);

    const msgpack_object *qs = get(m, "queues", MSGPACK_OBJECT_ARRAY);
    const msgpack_object *ws = get(m, "worker_list", MSGPACK_OBJECT_ARRAY);
    size_t nq = qs ? qs->via.array.size : 0, nw = ws ? ws->via.array.size : 0;
    s->q = calloc(nq + 1, sizeof *s->q);
    s->w = calloc(nw + 1, sizeof *s->w);
    if (!s->q || !s->w) {
        sample_fini(s);
        return TASKQ_ENOMEM;
    }
    for (size_t i = 0; i < nq; i++) {
        const msgpack_object *q = &qs->via.array.ptr[i];
        if (q->type != MSGPACK_OBJECT_MAP)
            continue;
        queue_row_t *r = &s->q[s->nq++];
        r->name = get_str(q, "name");
        for (int k = 0; k < N_QUEUE_C; k++)
            r->c[k] = get_uint(q, counter_names[k]);
    }
    for (size_t i = 0; i < nw; i++)
        if (ws->via.array.ptr[i].type == MSGPACK_OBJECT_MAP)
            add_worker(s, &ws->via.array.ptr[i]);
    return 0;
}

/* Tasks that ended (done or failed) per second from prev to s, given the
 * counters of both; NAN when there is no rate (no earlier sample, or the
 * broker restarted in between). */
static double rate(const sample_t *s, const sample_t *prev, const uint64_t *now,
                   const uint64_t *before)
{
    if (!prev || !prev->buf || s->store_id != prev->store_id || s->uptime_ms < prev->uptime_ms ||
        s->at_ms <= prev->at_ms)
        return NAN;
    uint64_t a = now[C_DONE] + now[C_FAILED];
    uint64_t b = before ? before[C_DONE] + before[C_FAILED] : 0;
    return a < b ? NAN : (double)(a - b) * 1000.0 / (double)(s->at_ms - prev->at_ms);
}

static double queue_rate(const sample_t *s, const sample_t *prev, const queue_row_t *q)
{
    const uint64_t *before = NULL;
    for (size_t i = 0; prev && i < prev->nq && !before; i++)
        if (span_eq(prev->q[i].name, q->name))
            before = prev->q[i].c;
    return rate(s, prev, q->c, before);
}

/* Whether the array of str a holds name. */
static bool holds(const msgpack_object *a, const char *name)
{
    for (uint32_t i = 0; a && i < a->via.array.size; i++)
        if (key_is(&a->via.array.ptr[i], name))
            return true;
    return false;
}

void cli_check_served(const cli_ctx_t *ctx, taskq_client_t *c, const char *function,
                      const char *queue)
{
    sample_t s;
    if (!queue)
        queue = "default";
    if (sample_take(c, ctx->connect_timeout_ms, &s) != 0)
        return;
    if (!s.admin) {
        /* The broker shows its workers to admins only: no telling. */
        sample_fini(&s);
        return;
    }
    const msgpack_object *ws = get(&s.u.data, "worker_list", MSGPACK_OBJECT_ARRAY);
    bool served = false;
    for (uint32_t i = 0; ws && i < ws->via.array.size && !served; i++) {
        const msgpack_object *w = &ws->via.array.ptr[i];
        served = w->type == MSGPACK_OBJECT_MAP &&
                 holds(get(w, "functions", MSGPACK_OBJECT_ARRAY), function) &&
                 holds(get(w, "queues", MSGPACK_OBJECT_ARRAY), queue);
    }
    sample_fini(&s);
    if (!served)
        cli_error(ctx, "no connected worker serves %s on queue \"%s\"; the task waits until "
                       "one does%s",
                  function, queue, strcmp(function, "exec") == 0 ? " (taskq-worker --exec)" : "");
}

/* ---- Text ---------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
    bool failed; /* out of memory: the text is cut */
} text_t;

static void put(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text_t *t, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && !t->failed; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
        } else if (t->p && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        } else {
            size_t cap = (t->cap ? t->cap : 4096) * 2 + (size_t)n;
            char *p = realloc(t->p, cap);
            if (!p)
                t->failed = true;
            t->p = p ? p : t->p;
            t->cap = p ? cap : t->cap;
        }
    }
}

/* A table: cells of rows x ncol strings, filled row by row (row 0 the
 * header); the first column (and the second with left2) is left-aligned,
 * the rest right-aligned. */
typedef struct table {
    size_t ncol, n, cap;
    char **cells;
    bool left2;
} table_t;

static void cell(table_t *tb, text_t *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Add the next cell; an allocation failure marks t failed. */
static void cell(table_t *tb, text_t *t, const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (tb->n < tb->cap && (tb->cells[tb->n] = strdup(buf)) != NULL)
        tb->n++;
    else
        t->failed = true;
}

/* Display columns of s: UTF-8 code points. */
static size_t columns(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void table_put(text_t *t, const table_t *tb)
{
    size_t width[8] = {0}, rows = tb->n / tb->ncol;
    for (size_t i = 0; i < rows * tb->ncol; i++)
        if (columns(tb->cells[i]) > width[i % tb->ncol])
            width[i % tb->ncol] = columns(tb->cells[i]);
    for (size_t r = 0; r < rows; r++) {
        for (size_t k = 0; k < tb->ncol; k++) {
            const char *s = tb->cells[r * tb->ncol + k];
            int pad = (int)(width[k] - columns(s));
            bool left = k == 0 || (k == 1 && tb->left2), last = k + 1 == tb->ncol;
            if (left)
                put(t, "%s%*s", s, last ? 0 : pad + 2, "");
            else
                put(t, "%*s%s%s", pad, "", s, last ? "" : "  ");
        }
        put(t, "\n");
    }
}

static int table_init(table_t *tb, size_t ncol, size_t rows, bool left2)
{
    *tb = (table_t){.ncol = ncol, .cap = ncol * (rows + 1), .left2 = left2};
    tb->cells = calloc(tb->cap, sizeof *tb->cells);
    return tb->cells ? 0 : TASKQ_ENOMEM;
}

static void table_fini(table_t *tb)
{
    for (size_t i = 0; i < tb->cap; i++)
        free(tb->cells[i]);
    free(tb->cells);
}

static void put_rate(char *buf, size_t cap, double r)
{
    if (isnan(r))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f", r);
}

static void put_duration(char *buf, size_t cap, uint64_t ms)
{
    unsigned long long s = ms / 1000;
    if (s < 60)
        snprintf(buf, cap, "%llu s", s);
    else if (s < 3600)
        snprintf(buf, cap, "%llu min %llu s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%llu h %llu min", s / 3600, s / 60 % 60);
    else
        snprintf(buf, cap, "%llu d %llu h", s / 86400, s / 3600 % 24);
}

/* The human form of s (rates against prev, which may be NULL). */
static void render(text_t *t, const cli_ctx_t *ctx, const sample_t *s, const sample_t *prev)
{
    char up[64], r[32];
    put_duration(up, sizeof up, s->uptime_ms);
    put(t, "taskqd %.*s at %s, up %s, %llu client%s\n", (int)s->version.n, s->version.p,
        ctx->broker, up, (unsigned long long)s->clients, s->clients == 1 ? "" : "s");
    double all = rate(s, prev, s->c, prev ? prev->c : NULL);
    snprintf(r, sizeof r, isnan(all) ? "" : " (%.1f/s)", all);
    put(t, "tasks: %llu queued, %llu running, %llu done%s\n",
        (unsigned long long)s->c[C_QUEUED], (unsigned long long)s->c[C_RUNNING],
        (unsigned long long)s->c[C_DONE], r);
    put(t, "       %llu failed, %llu retried, %llu cancelled, %llu lost, %llu timed out\n",
        (unsigned long long)s->c[C_FAILED], (unsigned long long)s->c[C_RETRIED],
        (unsigned long long)s->c[C_CANCELLED], (unsigned long long)s->c[C_LOST],
        (unsigned long long)s->c[C_TIMEDOUT]);
    if (s->has_mine)
        put(t, "yours: %llu queued, %llu running, %llu finished\n",
            (unsigned long long)s->mine[M_QUEUED], (unsigned long long)s->mine[M_RUNNING],
            (unsigned long long)s->mine[M_RETAINED]);
    if (s->store.n)
        put(t, "store: %.*s, %.1f MiB on disk, %s%s\n\n", (int)s->store.n, s->store.p,
            (double)s->store_bytes / 1048576.0,
            s->store_ok ? "ok" : "FAILING: new tasks are refused",
            s->storage_errors ? " (commits have failed since start)" : "");
    else
        put(t, "\n");

    if (!s->admin) {
        put(t, "queues and workers are shown to admins only\n");
        return;
    }
    table_t tb;
    if (s->nq == 0) {
        put(t, "no queues yet\n");
    } else if (table_init(&tb, 7, s->nq, false) == 0) {
        static const char *const head[] = {"QUEUE",  "QUEUED",  "RUNNING", "DONE",
                                           "FAILED", "RETRIED", "RATE/S"};
        for (size_t k = 0; k < 7; k++)
            cell(&tb, t, "%s", head[k]);
        for (size_t i = 0; i < s->nq; i++) {
            const queue_row_t *q = &s->q[i];
            cell(&tb, t, "%.*s", (int)q->name.n, q->name.p);
            for (int k = 0; k < N_QUEUE_C; k++)
                cell(&tb, t, "%llu", (unsigned long long)q->c[k]);
            put_rate(r, sizeof r, queue_rate(s, prev, q));
            cell(&tb, t, "%s", r);
        }
        table_put(t, &tb);
        table_fini(&tb);
    } else {
        t->failed = true;
    }
    put(t, "\n");
    if (s->nw == 0) {
        put(t, "no workers connected\n");
    } else if (table_init(&tb, 6, s->nw, true) == 0) {
        static const char *const head[] = {"WORKER", "HOST", "PROCS", "BUSY", "DONE",
                                           "LAST SEEN"};
        for (size_t k = 0; k < 6; k++)
            cell(&tb, t, "%s", head[k]);
        for (size_t i = 0; i < s->nw; i++) {
            const worker_row_t *w = &s->w[i];
            cell(&tb, t, "%.*s", (int)w->name.n, w->name.p);
            cell(&tb, t, "%.*s", (int)w->host.n, w->host.p);
            cell(&tb, t, "%u", (unsigned)w->procs);
            cell(&tb, t, "%llu", (unsigned long long)w->busy);
            cell(&tb, t, "%llu", (unsigned long long)w->done);
            cell(&tb, t, "%.1f s ago", (double)w->last_seen_ms / 1000.0);
        }
        table_put(t, &tb);
        table_fini(&tb);
    } else {
        t->failed = true;
    }
}

/* ---- JSON ------------------------------------------------------------- */

static json_t *str_json(span_t s)
{
    json_t *j = json_stringn(s.p, s.n);
    return j ? j : json_string("?");
}

static json_t *names_json(const msgpack_object *a)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && a && i < a->via.array.size; i++) {
        const msgpack_object *o = &a->via.array.ptr[i];
        if (o->type == MSGPACK_OBJECT_STR)
            json_array_append_new(arr, str_json((span_t){o->via.str.ptr, o->via.str.size}));
    }
    return arr;
}

/* A JSON number of a rate rounded to 0.01, or null. */
static json_t *rate_json(double r)
{
    return isnan(r) ? json_null() : json_real(round(r * 100) / 100);
}

/* {"name": name (unless NULL), counters..., "rate": r}. */
static json_t *counters_json(const span_t *name, const uint64_t *c, int n, double r)
{
    json_t *o = json_object();
    if (o && name)
        json_object_set_new(o, "name", str_json(*name));
    for (int k = 0; o && k < n; k++)
        json_object_set_new(o, counter_names[k], json_integer((json_int_t)c[k]));
    if (o)
        json_object_set_new(o, "rate", rate_json(r));
    return o;
}

/* The document `status --json` prints (README, "taskq status"). */
static json_t *doc_json(const cli_ctx_t *ctx, const sample_t *s, const sample_t *prev)
{
    json_t *doc = json_object(), *queues = json_array(), *workers = json_array();
    if (!doc || !queues || !workers) {
        json_decref(doc);
        json_decref(queues);
        json_decref(workers);
        return NULL;
    }
    json_object_set_new(doc, "broker", json_string(ctx->broker));
    json_object_set_new(doc, "version", str_json(s->version));
    json_object_set_new(doc, "uptime_ms", json_integer((json_int_t)s->uptime_ms));
    json_object_set_new(doc, "interval_ms", prev && prev->buf
                                                ? json_integer(s->at_ms - prev->at_ms)
                                                : json_null());
    json_object_set_new(doc, "clients", json_integer((json_int_t)s->clients));
    json_object_set_new(doc, "store",
                        json_pack("{s:o, s:I, s:b, s:I}", "name", str_json(s->store), "bytes",
                                  (json_int_t)s->store_bytes, "ok", s->store_ok, "errors",
                                  (json_int_t)s->storage_errors));
    json_object_set_new(doc, "tasks",
                        counters_json(NULL, s->c, N_C,
                                      rate(s, prev, s->c, prev ? prev->c : NULL)));
    json_object_set_new(doc, "admin", json_boolean(s->admin));
    json_object_set_new(doc, "yours",
                        s->has_mine ? json_pack("{s:I, s:I, s:I}", "queued",
                                                (json_int_t)s->mine[M_QUEUED], "running",
                                                (json_int_t)s->mine[M_RUNNING], "finished",
                                                (json_int_t)s->mine[M_RETAINED])
                                    : json_null());
    for (size_t i = 0; i < s->nq; i++) {
        json_array_append_new(queues, counters_json(&s->q[i].name, s->q[i].c, N_QUEUE_C,
                                                    queue_rate(s, prev, &s->q[i])));
    }
    for (size_t i = 0; i < s->nw; i++) {
        const worker_row_t *w = &s->w[i];
        json_t *o = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "name",
                              str_json(w->name), "host", str_json(w->host), "processes",
                              (json_int_t)w->procs, "busy", (json_int_t)w->busy, "credit",
                              (json_int_t)w->credit, "done", (json_int_t)w->done,
                              "last_seen_ms", (json_int_t)w->last_seen_ms, "queues",
                              names_json(w->queues), "functions", names_json(w->functions));
        json_array_append_new(workers, o);
    }
    json_object_set_new(doc, "queues", queues);
    json_object_set_new(doc, "workers", workers);
    return doc;
}

/* ---- Output ------------------------------------------------------------- */

/* A frame for a terminal of rows x cols: from the top left, every line cut
 * to cols and cleared to its end, at most rows - 1 lines (a newline on the
 * last row would scroll), the rest of the screen cleared; one write, so
 * the terminal never shows half a frame. */
static int draw(const text_t *frame, int rows, int cols)
{
    text_t out = {0};
    put(&out, "\033[H");
    const char *p = frame->p, *end = frame->p + frame->len;
    char more[64];
    for (int line = 0; p < end && line < rows - 1; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end, *next = nl ? nl + 1 : end;
        if (line == rows - 2 && next < end) {
            size_t left = 0;
            for (const char *q = p; q < end; q++)
                left += *q == '\n';
            snprintf(more, sizeof more, "(%zu more lines: enlarge the terminal)", left);
            p = more;
            stop = more + strlen(more);
            next = end;
        }
        /* Cut at cols code points, never inside one. */
        const char *q = p;
        for (int col = 0; q < stop; q++)
            if (((unsigned char)*q & 0xc0) != 0x80 && col++ == cols)
                break;
        put(&out, "%.*s\033[K\n", (int)(q - p), p);
        p = next;
    }
    put(&out, "\033[J");
    int rc = out.failed ? -1 : cli_write_all(STDOUT_FILENO, out.p, out.len);
    free(out.p);
    return rc;
}

static void terminal_size(int *rows, int *cols)
{
    struct winsize ws;
    *rows = 24;
    *cols = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *rows = ws.ws_row;
        *cols = ws.ws_col;
    }
}

/* Wait ms in slices; false if Ctrl-C came. */
static bool pause_ms(int32_t ms)
{
    for (int64_t end = cli_now_ms() + ms; !cli_interrupted();) {
        int64_t left = end - cli_now_ms();
        if (left <= 0)
            return true;
        poll(NULL, 0, left < CLI_SLICE_MS ? (int)left : CLI_SLICE_MS);
    }
    return false;
}

typedef struct status_opts {
    bool json, watch;
    int32_t interval_ms;
} status_opts_t;

/* Print one sample (against prev) as the options say; screen: a terminal
 * to draw on.  Returns 0 or -1. */
static int show(const cli_ctx_t *ctx, const status_opts_t *o, const sample_t *s,
                const sample_t *prev, bool screen, const char *trouble)
{
    if (o->json) {
        json_t *doc = doc_json(ctx, s, prev);
        int rc = doc && cli_json_print(stdout, doc) == 0 && fflush(stdout) == 0 ? 0 : -1;
        json_decref(doc);
        return rc;
    }
    text_t t = {0};
    if (trouble)
        put(&t, "%s\n", trouble);
    if (s->buf)
        render(&t, ctx, s, prev);
    int rc = -1;
    if (!t.failed && screen) {
        int rows, cols;
        terminal_size(&rows, &cols);
        rc = draw(&t, rows, cols);
    } else if (!t.failed) {
        if (o->watch)
            put(&t, "\n");
        rc = t.failed ? -1 : cli_write_all(STDOUT_FILENO, t.p, t.len);
    }
    free(t.p);
    return rc;
}

static int watch(const cli_ctx_t *ctx, taskq_client_t *c, const status_opts_t *o)
{
    bool screen = !o->json && isatty(STDOUT_FILENO);
    static const char enter[] = "\033[?1049h\033[?25l", leave[] = "\033[?25h\033[?1049l";
    if (screen && cli_write_all(STDOUT_FILENO, enter, sizeof enter - 1) != 0)
        return CLI_EXIT_TASKQ;
    sample_t prev = {0}, s;
    int rc = 0;
    char trouble[256];
    do {
        int got = sample_take(c, ctx->connect_timeout_ms, &s);
        if (got != 0 && cli_interrupted())
            break;
        if (got != 0) {
            /* Keep the last good sample on screen under the complaint. */
            snprintf(trouble, sizeof trouble, "taskq: no statistics from %s: %s (retrying)",
                     ctx->broker, taskq_strerror(got));
            if (o->json)
                fprintf(stderr, "%s\n", trouble);
            else if (show(ctx, o, &prev, NULL, screen, trouble) != 0)
                rc = CLI_EXIT_TASKQ;
            continue;
        }
        if (show(ctx, o, &s, &prev, screen, NULL) != 0)
            rc = CLI_EXIT_TASKQ;
        sample_fini(&prev);
        prev = s;
    } while (rc == 0 && pause_ms(o->interval_ms));
    sample_fini(&prev);
    if (screen)
        cli_write_all(STDOUT_FILENO, leave, sizeof leave - 1);
    if (rc)
        cli_error(ctx, "cannot write the status");
    return rc;
}

int cli_status(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"watch", no_argument, NULL, 'w'},
        {"interval", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    status_opts_t o = {.interval_ms = -1};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":jwn:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o.json = true;
            break;
        case 'w':
            o.watch = true;
            break;
        case 'n':
            if (cli_parse_seconds(optarg, &o.interval_ms) != 0)
                return cli_usage(ctx, "status", "--interval wants seconds, not \"%s\"", optarg);
            break;
        case 'h':
            fputs(status_usage, stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(ctx, argv, c);
        }
    }
    if (optind < argc)
        return cli_usage(ctx, "status", "unexpected argument \"%s\"", argv[optind]);
    if (o.interval_ms < 0)
        o.interval_ms = o.watch ? WATCH_INTERVAL_DEFAULT_MS : INTERVAL_DEFAULT_MS;
    if (o.watch && o.interval_ms < CLI_SLICE_MS)
        return cli_usage(ctx, "status", "--watch refreshes at most every 0.1 s");

    taskq_client_t *client = NULL;
    int rc = cli_connect(ctx, &client);
    if (rc)
        return rc;
    cli_sigint_catch();
    if (o.watch) {
        rc = watch(ctx, client, &o);
        taskq_client_destroy(&client);
        return rc;
    }
    sample_t first = {0}, second = {0};
    int got = o.interval_ms > 0 ? sample_take(client, ctx->connect_timeout_ms, &first) : 0;
    if (got == 0 && !pause_ms(o.interval_ms))
        rc = CLI_EXIT_INTERRUPTED;
    if (got == 0 && rc == 0)
        got = sample_take(client, ctx->connect_timeout_ms, &second);
    if (got != 0 && cli_interrupted()) {
        rc = CLI_EXIT_INTERRUPTED;
    } else if (got != 0) {
        cli_error(ctx, "no statistics from %s: %s", ctx->broker, taskq_strerror(got));
        rc = CLI_EXIT_TASKQ;
    } else if (rc == 0 && show(ctx, &o, &second, &first, false, NULL) != 0) {
        cli_error(ctx, "cannot write the status");
        rc = CLI_EXIT_TASKQ;
    }
    sample_fini(&first);
    sample_fini(&second);
    taskq_client_destroy(&client);
    return rc;
}

int cli_ping(const cli_ctx_t *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c != 'h')
            return cli_bad_option(ctx, argv, c);
        fputs(ping_usage, stdout);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage(ctx, "ping", "unexpected argument \"%s\"", argv[optind]);
    taskq_client_t *client = NULL;
    int rc = cli_connect(ctx, &client);
    if (rc)
        return rc;
    /* The first round trip included the handshake; time a second one. */
    uint32_t rtt_us;
    const char *version;
    rc = taskq_client_ping(client, ctx->connect_timeout_ms, &rtt_us, &version);
    if (rc == 0)
        printf("taskqd %s at %s: %.3f ms\n", version, ctx->broker, rtt_us / 1000.0);
    else
        cli_error(ctx, "no answer from %s: %s", ctx->broker, taskq_strerror(rc));
    taskq_client_destroy(&client);
    return rc ? CLI_EXIT_TASKQ : CLI_EXIT_OK;
}
