/*
 * worker.c - the worker: options and registered functions, the I/O loop
 * that owns the connection (handshake, heartbeats, reconnects, TASKS,
 * ABANDON, DONE) on the thread calling taskq_worker_run(), and the handler
 * threads that run attempts and hand outcomes back through a queue and an
 * eventfd; and taskq_worker_call(), which runs a handler without a broker.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.h>

#include "worker_impl.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 8000
/* How long the last DONE and BYE may take to go out when the run ends. */
#define FINAL_LINGER_MS 1000
/* The most a worker may announce: credit, queues, functions. */
#define CREDIT_MAX 10000
#define LIST_MAX 1024

struct taskq_worker {
    char *endpoint;
    taskq__curve_t curve;      /* CURVE keys, if on */
    char *name;                /* HELLO name */
    char host[TASKQ__HOST_MAX];
    uint32_t threads;          /* handler threads */
    uint32_t credit;           /* threads + prefetch */
    char **queues;             /* n_queues names */
    uint32_t n_queues;
    taskq__fn_t *fns;          /* n_fns registered functions */
    uint32_t n_fns;
    taskq_limits_t limits;     /* the protocol's: texts, results, DONE batches */
    taskq_limits_t recv_limits; /* for decoding: frames bounded by size alone */
    int wake_fd;               /* eventfd: outcomes ready, or stop */
    atomic_bool stop;          /* taskq_worker_stop() was called */
    atomic_bool running;       /* inside taskq_worker_run() */

    /* Shared with the handler threads, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* pending has attempts, or quit */
    taskq_task_t *pending_head, *pending_tail;
    taskq_task_t *done_head, *done_tail;
    bool quit;

    /* The I/O thread's. */
    void *ctx;
    void *sock;                /* NULL while waiting to reconnect */
    void *mon;                 /* its handshake events (CURVE only), or NULL */
    unsigned mon_seq;          /* sockets opened so far: names the monitor */
    bool ready;                /* WELCOME received on sock */
    uint64_t hello_seq;        /* HELLOs sent so far: names the connection */
    int64_t alive_at;          /* ms: last message from the broker, or HELLO */
    int64_t sent_at;           /* ms: last message sent */
    int64_t reconnect_at;      /* ms: when to open a new socket */
    int32_t backoff_ms;        /* next reconnect delay */
    uint32_t heartbeat_ms;
    uint32_t liveness;
    uint32_t max_frame;        /* the broker's frame limit */
    taskq_task_t *held;        /* every attempt received and not yet freed */
    taskq_task_t *outbox;      /* outcomes to send, oldest first, */
    taskq_task_t *outbox_tail; /*   kept while there is no socket */
    size_t n_busy;             /* attempts in pending, running or in done */
    int result;                /* what taskq_worker_run returns */
    bool leaving;              /* stop, BYE or refusal: take no new attempts */
    taskq_buf_t out;           /* frame being encoded */
};

static bool name_ok(const char *s)
{
    return s && s[0] && strnlen(s, 256) <= 255;
}

/* ---- Worker object ----------------------------------------------------- */

int taskq_worker_new(const char *endpoint, const taskq_worker_opts_t *opts,
                     taskq_worker_t **ret_worker)
{
    static const char *const default_queues[] = {"default", NULL};
    static const taskq_worker_opts_t none;
    if (!opts)
        opts = &none;
    if (!endpoint)
        endpoint = TASKQ_DEFAULT_ENDPOINT;
    const char *const *queues = opts->queues ? opts->queues : default_queues;
    uint32_t threads = opts->threads ? opts->threads : 1;
    uint32_t prefetch = opts->prefetch ? opts->prefetch : 1;
    uint32_t n_queues = 0;
    while (queues[n_queues] && n_queues <= LIST_MAX) {
        if (!name_ok(queues[n_queues]))
            return TASKQ_EINVAL;
        n_queues++;
    }
    if (!ret_worker || !endpoint[0] || (opts->name && !name_ok(opts->name)) || n_queues == 0 ||
        n_queues > LIST_MAX || threads > CREDIT_MAX || prefetch > CREDIT_MAX - threads)
        return TASKQ_EINVAL;

    taskq_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return TASKQ_ENOMEM;
    w->wake_fd = -1;
    int rc = taskq__curve_init(&w->curve, opts->curve_server_key, opts->curve_key);
    if (rc)
        goto fail;
    w->threads = threads;
    w->credit = threads + prefetch;
    taskq_limits_default(&w->limits);
    w->recv_limits = w->limits;
    w->recv_limits.max_frame = UINT32_MAX;
    w->recv_limits.max_batch = UINT32_MAX;
    taskq__hostname(w->host);
    if (opts->name) {
        w->name = strdup(opts->name);
    } else if ((w->name = malloc(256)) != NULL) {
        /* "<host>-<pid>", within max_name. */
        snprintf(w->name, 256, "%.200s-%ld", w->host, (long)getpid());
    }
    w->endpoint = strdup(endpoint);
    w->queues = calloc(n_queues, sizeof *w->queues);
    rc = TASKQ_ENOMEM;
    if (!w->name || !w->endpoint || !w->queues)
        goto fail;
    for (w->n_queues = 0; w->n_queues < n_queues; w->n_queues++) {
        if (!(w->queues[w->n_queues] = strdup(queues[w->n_queues])))
            goto fail;
    }
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0 || pthread_mutex_init(&w->mu, NULL) != 0) {
        rc = TASKQ_ESYS;
        goto fail;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        rc = TASKQ_ESYS;
        goto fail;
    }
    *ret_worker = w;
    return 0;
fail:
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    for (uint32_t i = 0; i < w->n_queues; i++)
        free(w->queues[i]);
    free(w->queues);
    free(w->endpoint);
    free(w->name);
    taskq__curve_wipe(&w->curve);
    free(w);
    return rc;
}

void taskq_worker_destroy(taskq_worker_t **wp)
{
    if (!wp || !*wp)
        return;
    taskq_worker_t *w = *wp;
    *wp = NULL;
    for (uint32_t i = 0; i < w->n_fns; i++)
        free(w->fns[i].name);
    for (uint32_t i = 0; i < w->n_queues; i++)
        free(w->queues[i]);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    close(w->wake_fd);
    taskq_buf_fini(&w->out);
    free(w->fns);
    free(w->queues);
    free(w->endpoint);
    free(w->name);
    taskq__curve_wipe(&w->curve);
    free(w);
}

int taskq_worker_register(taskq_worker_t *w, const char *function, taskq_handler_fn handler,
                          void *userdata)
{
    if (!w || !handler || !name_ok(function) || w->n_fns >= LIST_MAX ||
        atomic_load(&w->running))
        return TASKQ_EINVAL;
    for (uint32_t i = 0; i < w->n_fns; i++) {
        if (strcmp(w->fns[i].name, function) == 0)
            return TASKQ_EINVAL;
    }
    taskq__fn_t *fns = realloc(w->fns, (w->n_fns + 1) * sizeof *fns);
    if (!fns)
        return TASKQ_ENOMEM;
    w->fns = fns;
    char *name = strdup(function);
    if (!name)
        return TASKQ_ENOMEM;
    fns[w->n_fns++] = (taskq__fn_t){name, strlen(name), handler, userdata};
    return 0;
}

void taskq_worker_stop(taskq_worker_t *w)
{
    int saved = errno;
    uint64_t one = 1;
    atomic_store(&w->stop, true);
    ssize_t n = write(w->wake_fd, &one, sizeof one);
    (void)n; /* a full counter already wakes the loop */
    errno = saved;
}

/* ---- Handler threads --------------------------------------------------- */

static void *handler_main(void *arg)
{
    taskq_worker_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending_head && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit)
            break;
        taskq_task_t *t = w->pending_head;
        w->pending_head = t->next;
        if (!w->pending_head)
            w->pending_tail = NULL;
        pthread_mutex_unlock(&w->mu);

        taskq__task_run(t);

        pthread_mutex_lock(&w->mu);
        t->next = NULL;
        bool wake = !w->done_head;
        if (w->done_tail)
            w->done_tail->next = t;
        else
            w->done_head = t;
        w->done_tail = t;
        /* Only the first outcome of a batch needs to wake the I/O loop. */
        if (wake) {
            uint64_t one = 1;
            ssize_t n = write(w->wake_fd, &one, sizeof one);
            (void)n;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- Held attempts and outcomes (I/O thread) --------------------------- */

static void held_remove(taskq_worker_t *w, taskq_task_t *t)
{
    if (t->hprev)
        t->hprev->hnext = t->hnext;
    else
        w->held = t->hnext;
    if (t->hnext)
        t->hnext->hprev = t->hprev;
}

static void outbox_push(taskq_worker_t *w, taskq_task_t *t)
{
    t->next = NULL;
    if (w->outbox_tail)
        w->outbox_tail->next = t;
    else
        w->outbox = t;
    w->outbox_tail = t;
}

/* Free attempts queued but not started: the broker gives them to another
 * worker once this connection is over. */
/* Take back the attempts no handler has started.  With give_back they are
 * reported RETURNED, so the broker hands them to another worker without
 * using up an attempt; otherwise they are dropped (the connection is gone
 * and the broker supersedes them itself). */
static void take_back_pending(taskq_worker_t *w, bool give_back)
{
    pthread_mutex_lock(&w->mu);
    taskq_task_t *t = w->pending_head;
    w->pending_head = w->pending_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (t) {
        taskq_task_t *next = t->next;
        w->n_busy--;
        if (give_back) {
            taskq__task_return(t);
            outbox_push(w, t);
        } else {
            held_remove(w, t);
            taskq__task_free(t);
        }
        t = next;
    }
}

/* Move the outcomes the handler threads finished to the outbox. */
static void collect_done(taskq_worker_t *w)
{
    pthread_mutex_lock(&w->mu);
    taskq_task_t *t = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (t) {
        taskq_task_t *next = t->next;
        outbox_push(w, t);
        w->n_busy--;
        t = next;
    }
}

static int send_out(taskq_worker_t *w, int64_t now)
{
    w->sent_at = now;
    return taskq__send_take(w->sock, &w->out);
}

/* Free the outcomes of attempts received before the last HELLO: the broker
 * has superseded them, and a restarted broker may have given the same job
 * id and attempt to another job (PROTOCOL.md section 4). */
static void drop_foreign(taskq_worker_t *w)
{
    taskq_task_t **p = &w->outbox;
    w->outbox_tail = NULL;
    while (*p) {
        taskq_task_t *t = *p;
        if (t->hello_seq == w->hello_seq) {
            w->outbox_tail = t;
            p = &t->next;
        } else {
            *p = t->next;
            held_remove(w, t);
            taskq__task_free(t);
        }
    }
}

/*
 * Once the handshake is done, send the outbox as DONE messages, each within
 * the broker's batch and frame limits, and free what was sent.
 */
static void send_outbox(taskq_worker_t *w, int64_t now)
{
    static const char too_big[] = "the result is larger than the broker's frame limit";
    size_t budget = w->max_frame / 2;
    if (!w->ready)
        return;
    drop_foreign(w);
    while (w->outbox) {
        uint32_t count = 0;
        size_t bytes = 0;
        for (taskq_task_t *t = w->outbox; t && count < w->limits.max_batch; t = t->next) {
            if (t->payload.len > budget)
                taskq__task_fail(t, too_big);
            if (count && bytes + t->payload.len > budget)
                break;
            bytes += t->payload.len + 32;
            count++;
        }
        taskq_buf_reset(&w->out);
        int rc = taskq_enc_done_begin(&w->out, count);
        taskq_task_t *t = w->outbox;
        for (uint32_t i = 0; i < count; i++, t = t->next) {
            taskq_done_item_t d = {t->job_id, t->attempt, t->status, t->payload};
            if (!rc)
                rc = taskq_enc_done_item(&w->out, &d);
        }
        if (rc || send_out(w, now) != 0)
            return;
        for (uint32_t i = 0; i < count; i++) {
            t = w->outbox;
            w->outbox = t->next;
            held_remove(w, t);
            taskq__task_free(t);
        }
        if (!w->outbox)
            w->outbox_tail = NULL;
    }
}

/* ---- Connection (I/O thread) ------------------------------------------- */

static int send_hello(taskq_worker_t *w, int64_t now)
{
    taskq_span_t *spans = malloc((w->n_queues + w->n_fns) * sizeof *spans);
    if (!spans)
        return TASKQ_ENOMEM;
    for (uint32_t i = 0; i < w->n_queues; i++)
        spans[i] = taskq_span_cstr(w->queues[i]);
    for (uint32_t i = 0; i < w->n_fns; i++)
        spans[w->n_queues + i] = (taskq_span_t){(const uint8_t *)w->fns[i].name, w->fns[i].len};
    taskq_hello_t h = {
        .role = TASKQ_ROLE_WORKER,
        .name = taskq_span_cstr(w->name),
        .host = taskq_span_cstr(w->host),
        .pid = (uint32_t)getpid(),
        .credit = w->credit,
    };
    taskq_buf_reset(&w->out);
    int rc = taskq_enc_hello(&w->out, &h, spans, w->n_queues, spans + w->n_queues, w->n_fns);
    free(spans);
    return rc ? TASKQ_ENOMEM : send_out(w, now);
}

static int conn_open(taskq_worker_t *w, int64_t now)
{
    int rc = taskq__socket_open(w->ctx, w->endpoint, &w->curve, w, ++w->mon_seq, &w->sock,
                                &w->mon);
    w->hello_seq++;
    if (!rc && (rc = send_hello(w, now)) != 0)
        taskq__socket_close(&w->sock, &w->mon, 0);
    if (rc)
        return rc;
    w->ready = false;
    w->alive_at = now;
    return 0;
}

/* Close the socket; open a new one after delay_ms.  Attempts not started
 * are dropped: the broker requeues them when it sees this worker gone. */
static void conn_lost(taskq_worker_t *w, int64_t now, int32_t delay_ms)
{
    taskq__socket_close(&w->sock, &w->mon, 0);
    w->ready = false;
    w->reconnect_at = now + delay_ms;
    take_back_pending(w, false);
}

static int32_t backoff_next(taskq_worker_t *w)
{
    int32_t d = w->backoff_ms;
    w->backoff_ms = d * 2 < BACKOFF_MAX_MS ? d * 2 : BACKOFF_MAX_MS;
    return d;
}

/* Stop taking attempts and end the run once the running ones are done. */
static void leave(taskq_worker_t *w, int result)
{
    if (!w->leaving) {
        w->leaving = true;
        w->result = result;
        take_back_pending(w, w->ready);
    }
}

static const taskq__fn_t *fn_find(const taskq_worker_t *w, taskq_span_t name)
{
    for (uint32_t i = 0; i < w->n_fns; i++) {
        if (w->fns[i].len == name.len && memcmp(w->fns[i].name, name.ptr, name.len) == 0)
            return &w->fns[i];
    }
    return NULL;
}

/* ---- Calling a handler without a broker -------------------------------- */

const char *taskq_worker_function(const taskq_worker_t *w, size_t i)
{
    return w && i < w->n_fns ? w->fns[i].name : NULL;
}

int taskq_worker_call(taskq_worker_t *w, const char *function, uint64_t job_id,
                      uint32_t attempt, uint64_t seed, const void *arg, size_t arg_len,
                      void **ret_out, size_t *ret_len)
{
    if (!w || !function || !arg || !ret_out || !ret_len ||
        taskq_object_check(arg, arg_len, w->limits.max_depth) != 0)
        return TASKQ_EINVAL;
    const taskq__fn_t *fn = fn_find(w, taskq_span_cstr(function));
    if (!fn)
        return TASKQ_EINVAL;
    taskq_task_t *t = malloc(sizeof *t + arg_len);
    if (!t)
        return TASKQ_ENOMEM;
    *t = (taskq_task_t){
        .fn = fn,
        .job_id = job_id,
        .seed = seed,
        .attempt = attempt,
        .limits = &w->limits,
        .arg_len = arg_len,
    };
    atomic_init(&t->cancelled, false);
    memcpy(t->arg, arg, arg_len);
    taskq__task_run(t);
    int rc = taskq__task_outcome(t, ret_out, ret_len);
    taskq__task_free(t);
    return rc;
}

static void on_tasks(taskq_worker_t *w, taskq_iter_t it)
{
    taskq_task_t *head = NULL, *tail = NULL;
    size_t n = 0;
    taskq_task_item_t item;
    while (taskq_iter_task(&it, &item) > 0) {
        taskq_task_t *t = malloc(sizeof *t + item.arg.len);
        if (!t)
            continue; /* the broker supersedes it when this worker goes */
        *t = (taskq_task_t){
            .fn = fn_find(w, item.function),
            .job_id = item.job_id,
            .seed = item.seed,
            .attempt = item.attempt,
            .hello_seq = w->hello_seq,
            .limits = &w->limits,
            .arg_len = item.arg.len,
        };
        atomic_init(&t->cancelled, false);
        memcpy(t->arg, item.arg.ptr, item.arg.len);
        t->hnext = w->held;
        if (w->held)
            w->held->hprev = t;
        w->held = t;
        if (!t->fn || w->leaving) {
            /* Every attempt received gets its DONE: a worker on its way
             * out hands new ones straight back. */
            if (w->leaving)
                taskq__task_return(t);
            else
                taskq__task_fail(t, "no such function");
            outbox_push(w, t);
            continue;
        }
        if (tail)
            tail->next = t;
        else
            head = t;
        tail = t;
        n++;
    }
    if (!head)
        return;
    w->n_busy += n;
    pthread_mutex_lock(&w->mu);
    if (w->pending_tail)
        w->pending_tail->next = head;
    else
        w->pending_head = head;
    w->pending_tail = tail;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void on_abandon(taskq_worker_t *w, taskq_iter_t it)
{
    taskq_abandon_item_t a;
    while (taskq_iter_abandon(&it, &a) > 0) {
        for (taskq_task_t *t = w->held; t; t = t->hnext) {
            if (t->job_id == a.job_id && t->attempt == a.attempt)
                atomic_store(&t->cancelled, true);
        }
    }
}

static void on_error(taskq_worker_t *w, const taskq_error_t *e, int64_t now)
{
    if (e->code == TASKQ_PERR_HELLO_REQUIRED)
        conn_lost(w, now, 0);
    else if (e->code == TASKQ_PERR_VERSION || e->code == TASKQ_PERR_DENIED || !w->ready)
        /* A refused handshake would be refused again; so would a worker
         * whose key was revoked. */
        leave(w, taskq__perr_code(e->code));
}

static void on_message(taskq_worker_t *w, const void *data, size_t len, int64_t now)
{
    taskq_msg_t m;
    w->alive_at = now;
    if (taskq_msg_decode(data, len, &w->recv_limits, &m, NULL) != 0)
        return;
    switch (m.type) {
    case TASKQ_MSG_WELCOME:
        w->ready = true;
        w->backoff_ms = BACKOFF_MIN_MS;
        w->heartbeat_ms = m.u.welcome.heartbeat_ms ? m.u.welcome.heartbeat_ms : TASKQ__HEARTBEAT_MS;
        w->liveness = m.u.welcome.liveness ? m.u.welcome.liveness : TASKQ__LIVENESS;
        w->max_frame = m.u.welcome.max_frame;
        break;
    case TASKQ_MSG_TASKS:
        on_tasks(w, m.u.tasks);
        break;
    case TASKQ_MSG_ABANDON:
        on_abandon(w, m.u.abandon);
        break;
    case TASKQ_MSG_BYE:
        w->ready = false; /* the broker is leaving: nothing more to tell it */
        leave(w, 0);
        break;
    case TASKQ_MSG_ERROR:
        on_error(w, &m.u.error, now);
        break;
    default:
        break;
    }
}

static int drain(taskq_worker_t *w, int64_t now)
{
    zmq_msg_t m;
    int rc = 0;
    zmq_msg_init(&m);
    while (w->sock && (rc = taskq__recv(w->sock, &m)) > 0)
        on_message(w, zmq_msg_data(&m), zmq_msg_size(&m), now);
    zmq_msg_close(&m);
    /* CURVE: a broker that refuses the key, or does not use CURVE, would
     * refuse every reconnect too. */
    if (w->mon && taskq__monitor_read(w->mon, NULL, 0) == TASKQ__HS_DENIED) {
        leave(w, TASKQ_EDENIED);
        taskq__socket_close(&w->sock, &w->mon, 0);
        w->ready = false;
    }
    return rc < 0 ? rc : 0;
}

/* ---- The I/O loop ------------------------------------------------------ */

/* Act on the timers due at now; return the ms until the next one. */
static int64_t tick(taskq_worker_t *w, int64_t now)
{
    int64_t silence = (int64_t)w->liveness * w->heartbeat_ms;
    if (!w->sock) {
        if (now < w->reconnect_at)
            return w->reconnect_at - now;
        if (conn_open(w, now) != 0) {
            w->reconnect_at = now + backoff_next(w);
            return w->reconnect_at - now;
        }
    }
    if (now - w->alive_at >= silence) {
        conn_lost(w, now, backoff_next(w));
        return w->reconnect_at - now;
    }
    if (w->ready && now - w->sent_at >= w->heartbeat_ms) {
        taskq_buf_reset(&w->out);
        if (taskq_enc_heartbeat(&w->out) == 0)
            send_out(w, now);
    }
    int64_t next = w->alive_at + silence;
    if (w->ready && w->sent_at + w->heartbeat_ms < next)
        next = w->sent_at + w->heartbeat_ms;
    return next > now ? next - now : 0;
}

static int io_loop(taskq_worker_t *w)
{
    int rc = conn_open(w, taskq__now_ms());
    if (rc)
        return rc;
    for (;;) {
        int64_t now = taskq__now_ms();
        if (atomic_load(&w->stop))
            leave(w, 0);
        collect_done(w);
        send_outbox(w, now);
        if (w->leaving && w->n_busy == 0)
            break;
        int64_t wait = w->leaving && !w->sock ? -1 : tick(w, now);
        zmq_pollitem_t items[3] = {
            {NULL, w->wake_fd, ZMQ_POLLIN, 0},
            {w->sock, 0, ZMQ_POLLIN, 0},
            {w->mon, 0, ZMQ_POLLIN, 0},
        };
        int n_items = !w->sock ? 1 : w->mon ? 3 : 2;
        if (zmq_poll(items, n_items, (long)wait) < 0 && errno != EINTR)
            return TASKQ_ESYS;
        if (items[0].revents & ZMQ_POLLIN) {
            uint64_t v;
            ssize_t n = read(w->wake_fd, &v, sizeof v);
            (void)n; /* the counter is only a doorbell */
        }
        rc = drain(w, taskq__now_ms());
        if (rc)
            return rc;
    }
    /* Say goodbye, and give the last DONE and the BYE time to go out, only
     * to a broker that is there and is not leaving itself. */
    int linger = 0;
    if (w->ready && w->result == 0 && atomic_load(&w->stop)) {
        taskq_buf_reset(&w->out);
        if (taskq_enc_bye(&w->out, taskq_span_cstr("stopping")) == 0 &&
            send_out(w, taskq__now_ms()) == 0)
            linger = FINAL_LINGER_MS;
    }
    taskq__socket_close(&w->sock, &w->mon, linger);
    return w->result;
}

int taskq_worker_run(taskq_worker_t *w)
{
    if (!w || w->n_fns == 0 || atomic_exchange(&w->running, true))
        return TASKQ_EINVAL;
    w->quit = false;
    w->leaving = false;
    w->result = 0;
    w->n_busy = 0;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->heartbeat_ms = TASKQ__HEARTBEAT_MS;
    w->liveness = TASKQ__LIVENESS;
    w->max_frame = w->limits.max_frame;

    pthread_t *tids = calloc(w->threads, sizeof *tids);
    uint32_t started = 0;
    int rc = TASKQ_ENOMEM;
    w->ctx = zmq_ctx_new();
    if (tids && w->ctx) {
        rc = 0;
        while (started < w->threads && !rc) {
            if (pthread_create(&tids[started], NULL, handler_main, w) == 0)
                started++;
            else
                rc = TASKQ_ESYS;
        }
    } else if (tids) {
        rc = TASKQ_ESYS;
    }
    if (!rc)
        rc = io_loop(w);

    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (uint32_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    take_back_pending(w, false);
    collect_done(w);
    while (w->outbox) {
        taskq_task_t *t = w->outbox;
        w->outbox = t->next;
        held_remove(w, t);
        taskq__task_free(t);
    }
    w->outbox_tail = NULL;
    taskq__socket_close(&w->sock, &w->mon, 0);
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    w->ctx = NULL;
    /* A stop during this run is used up; the next run starts afresh. */
    uint64_t v;
    ssize_t n = read(w->wake_fd, &v, sizeof v);
    (void)n;
    atomic_store(&w->stop, false);
    atomic_store(&w->running, false);
    return rc;
}
