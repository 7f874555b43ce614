/*
 * client.c - the client object and its connection: handshake, heartbeats,
 * reconnects, the pump that does all I/O inside the caller's waits, the
 * handling of every message the broker sends a client, requests with a
 * reply (ping, stats, and admin.c's failed and retry).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <zmq.h>

#include "client_impl.h"

#define RECONNECT_LIMIT_DEFAULT_MS 30000
#define MAX_BATCH_DEFAULT 256
/* The protocol's default max_batch: the most a broker is sure to accept. */
#define MAX_BATCH_LIMIT 10000
/* Longest single sleep of the pump, so that the clock is re-read now and
 * then even when nothing is due. */
#define POLL_MAX_MS 60000
/* How long a destroyed client lets its BYE go out. */
#define BYE_LINGER_MS 100

int taskq__ids_reserve(taskq_client_t *c, size_t n)
{
    if (n <= c->ids_cap)
        return 0;
    uint64_t *ids = realloc(c->ids, n * sizeof *ids);
    if (!ids)
        return TASKQ_ENOMEM;
    c->ids = ids;
    c->ids_cap = n;
    return 0;
}

/* Send the frame in c->out if the connection is ready. */
static int send_out(taskq_client_t *c)
{
    return c->conn == TASKQ__CONN_READY ? taskq__send(c->sock, &c->out) : 0;
}

int taskq__send_jobs(taskq_client_t *c, uint8_t type, const uint64_t *ids, size_t n)
{
    if (c->conn != TASKQ__CONN_READY)
        return 0;
    for (size_t i = 0; i < n; i += c->max_batch) {
        uint32_t k = (uint32_t)(n - i < c->max_batch ? n - i : c->max_batch);
        taskq_buf_reset(&c->out);
        if (taskq_enc_jobs(&c->out, type, ids + i, k) != 0)
            return TASKQ_ENOMEM;
        int rc = send_out(c);
        if (rc)
            return rc;
    }
    return 0;
}

static int send_simple(taskq_client_t *c, uint8_t type)
{
    taskq_buf_reset(&c->out);
    int rc = type == TASKQ_MSG_HEARTBEAT ? taskq_enc_heartbeat(&c->out)
                                         : taskq_enc_bye(&c->out, taskq_span_cstr("closing"));
    return rc ? TASKQ_ENOMEM : send_out(c);
}

/* ---- Connection -------------------------------------------------------- */

/* Open a socket and send HELLO. */
static int conn_open(taskq_client_t *c, int64_t now)
{
    int rc = taskq__socket_open(c->ctx, c->endpoint, &c->curve, c, ++c->mon_seq, &c->sock,
                                &c->mon);
    if (rc)
        return rc;
    taskq_hello_t h = {
        .role = TASKQ_ROLE_CLIENT,
        .client_id = c->client_id,
        .name = taskq_span_cstr(c->name),
        .host = taskq_span_cstr(c->host),
        .pid = (uint32_t)getpid(),
    };
    taskq_buf_reset(&c->out);
    if (taskq_enc_hello(&c->out, &h, NULL, 0, NULL, 0) != 0 || taskq__send(c->sock, &c->out)) {
        taskq__socket_close(&c->sock, &c->mon, 0);
        return TASKQ_ENOMEM;
    }
    c->conn = TASKQ__CONN_HELLO;
    c->alive_at = now;
    return 0;
}

/* Close the socket and open a new one after delay_ms. */
static void conn_lost(taskq_client_t *c, int64_t now, int32_t delay_ms)
{
    taskq__socket_close(&c->sock, &c->mon, 0);
    c->conn = TASKQ__CONN_CLOSED;
    c->reconnect_at = now + delay_ms;
}

/*
 * The broker refused this client: its CURVE key (seen by the monitor), or
 * its HELLO (ERROR DENIED).  Asking again at once would be refused again:
 * what waits resolves TASKQ_EDENIED, and the client stays without a
 * connection until a later call needs the broker (taskq__pump).
 */
static void conn_denied(taskq_client_t *c, int64_t now, const char *text)
{
    taskq__fail_all(c, TASKQ_STATE_REFUSED, TASKQ_EDENIED, text);
    conn_lost(c, now, 0);
    c->denied = true;
    c->denied_gen++;
    c->down = false;
}

/* The delay before the next reconnect; each call doubles the next one. */
static int32_t backoff_next(taskq_client_t *c)
{
    int32_t d = c->backoff_ms;
    c->backoff_ms = d * 2 < TASKQ__BACKOFF_MAX_MS ? d * 2 : TASKQ__BACKOFF_MAX_MS;
    return d;
}

static void on_welcome(taskq_client_t *c, const taskq_welcome_t *w)
{
    if (c->conn != TASKQ__CONN_HELLO)
        return;
    c->conn = TASKQ__CONN_READY;
    c->backoff_ms = TASKQ__BACKOFF_MIN_MS;
    c->hs_dropped = false;
    c->heartbeat_ms = w->heartbeat_ms ? w->heartbeat_ms : TASKQ__HEARTBEAT_MS;
    c->liveness = w->liveness ? w->liveness : TASKQ__LIVENESS;
    c->max_frame = w->max_frame;
    char *v = malloc(w->version.len + 1);
    if (v) {
        memcpy(v, w->version.ptr, w->version.len);
        v[w->version.len] = '\0';
        free(c->broker_version);
        c->broker_version = v;
    }
    if (c->have_store && c->store_id != w->store_id) {
        /* Job ids of another store may name other jobs: the ones waited
         * for are gone. */
        for (taskq_future_t *f = c->futures; f; f = f->next) {
            if (f->state == TASKQ_STATE_PENDING && f->job_id) {
                static const char text[] = "the broker restarted without this job";
                taskq__future_resolve(f, TASKQ_STATE_UNKNOWN, TASKQ_ENOJOB, 0, text,
                                      sizeof text - 1);
            }
        }
    }
    c->have_store = true;
    c->store_id = w->store_id;

    /* Everything not yet answered goes out again: SUBMITs not accepted,
     * WATCH for the jobs waited for, CANCEL for those asked to stop. */
    for (taskq__batch_t *b = c->sent_head, *next; b; b = next) {
        next = b->next;
        taskq__batch_send(c, b);
    }
    size_t n = 0, n_cancel = 0;
    if (taskq__ids_reserve(c, c->jobs.count) != 0)
        return;
    for (size_t i = 0; i < c->jobs.cap; i++) {
        if (c->jobs.slots[i].id)
            c->ids[n++] = c->jobs.slots[i].id;
    }
    taskq__send_jobs(c, TASKQ_MSG_WATCH, c->ids, n);
    for (size_t i = 0; i < n; i++) {
        for (const taskq_future_t *f = *taskq__jobs_find(&c->jobs, c->ids[i]); f; f = f->twin) {
            if (f->cancel) {
                c->ids[n_cancel++] = c->ids[i];
                break;
            }
        }
    }
    taskq__send_jobs(c, TASKQ_MSG_CANCEL, c->ids, n_cancel);
}

static taskq__batch_t *batch_find(const taskq_client_t *c, uint64_t req_id)
{
    taskq__batch_t *b = c->sent_head;
    while (b && b->req_id != req_id)
        b = b->next;
    return b;
}

static void on_error(taskq_client_t *c, const taskq_error_t *e, int64_t now)
{
    int code = taskq__perr_code(e->code);
    switch (e->code) {
    case TASKQ_PERR_VERSION:
        c->fatal = TASKQ_EPROTO;
        taskq__fail_all(c, TASKQ_STATE_REFUSED, TASKQ_EPROTO,
                        TASKQ__VERSION_TEXT);
        conn_lost(c, now, 0);
        return;
    case TASKQ_PERR_HELLO_REQUIRED:
        /* The broker answers but forgot this client: no reason to wait. */
        conn_lost(c, now, 0);
        return;
    case TASKQ_PERR_SHUTTING_DOWN:
        /* What it refused is sent again to the broker that comes next. */
        conn_lost(c, now, backoff_next(c));
        return;
    }
    taskq__batch_t *b = e->ref ? batch_find(c, e->ref) : NULL;
    /* A broker older than a request's message type refuses it without
     * reading its req_id. */
    bool req = c->req_id && !c->req_done &&
               (e->ref == c->req_id || (!e->ref && e->code == TASKQ_PERR_UNKNOWN_TYPE));
    if (b) {
        taskq__batch_refuse(c, b, code, e->text);
    } else if (req) {
        c->req_done = true;
        c->req_rc = code;
    } else if (e->code == TASKQ_PERR_DENIED && (!e->ref || c->conn == TASKQ__CONN_HELLO)) {
        /* This client may not connect (its key lacks the role, or was
         * revoked): no reconnect would be let in either. */
        char text[320];
        if (e->text.len)
            snprintf(text, sizeof text, "the broker refused this client: %.*s",
                     (int)(e->text.len < 256 ? e->text.len : 256), (const char *)e->text.ptr);
        else
            snprintf(text, sizeof text, "the broker refused this client");
        conn_denied(c, now, text);
    } else if (c->conn == TASKQ__CONN_HELLO) {
        /* The broker refused the handshake: what waits cannot succeed. */
        char text[128];
        snprintf(text, sizeof text, "the broker refused the handshake: %s",
                 taskq_perr_text((int)e->code));
        taskq__fail_all(c, TASKQ_STATE_REFUSED, code, text);
        conn_lost(c, now, backoff_next(c));
    }
}

/* The reply of the request in progress, if it is one (a copy of data). */
static void on_reply(taskq_client_t *c, uint8_t type, uint64_t req_id, const void *data,
                     size_t len)
{
    if (!c->req_id || req_id != c->req_id || c->req_done || type != c->req->reply)
        return;
    c->req_done = true;
    c->req_rc = 0;
    if (type == TASKQ_MSG_ACCEPTED)
        return;
    c->reply = malloc(len ? len : 1);
    if (!c->reply) {
        c->req_rc = TASKQ_ENOMEM;
        return;
    }
    memcpy(c->reply, data, len);
    c->reply_len = len;
}

/* ACCEPTED of the RETRY in progress: [req_id, job_id, 1]. */
static void on_retry_accepted(taskq_client_t *c, uint64_t req_id, uint64_t first_job,
                              uint32_t count)
{
    on_reply(c, TASKQ_MSG_ACCEPTED, req_id, NULL, 0);
    taskq_future_t *f = c->req->future;
    if (count != 1 || first_job != f->job_id)
        c->req_rc = TASKQ_EPROTO;
    else if (f->state == TASKQ_STATE_PENDING)
        taskq__future_expect(c, f);
}

static void on_accepted(taskq_client_t *c, uint64_t req_id, uint64_t first_job, uint32_t count)
{
    taskq__batch_t *b = batch_find(c, req_id);
    if (!b) {
        if (c->req_id && req_id == c->req_id && !c->req_done &&
            c->req->reply == TASKQ_MSG_ACCEPTED)
            on_retry_accepted(c, req_id, first_job, count);
        return;
    }
    if (count != b->count)
        taskq__batch_refuse(c, b, TASKQ_EPROTO,
                            taskq_span_cstr("the broker accepted a different number of tasks"));
    else
        taskq__batch_accepted(c, b, first_job);
}

/* Resolve f with a RESULT item (its status range checked by the decoder). */
static void resolve_result(taskq_future_t *f, const taskq_result_item_t *r)
{
    static const struct {
        taskq_state_t state;
        int code;
    } outcome[] = {
        [TASKQ_STATUS_DONE] = {TASKQ_STATE_DONE, 0},
        [TASKQ_STATUS_FAILED] = {TASKQ_STATE_FAILED, TASKQ_EFAILED},
        [TASKQ_STATUS_CANCELLED] = {TASKQ_STATE_CANCELLED, TASKQ_ECANCELED},
        [TASKQ_STATUS_LOST] = {TASKQ_STATE_LOST, TASKQ_ELOST},
        [TASKQ_STATUS_TIMEDOUT] = {TASKQ_STATE_RUNLIMIT, TASKQ_ERUNLIMIT},
        [TASKQ_STATUS_UNKNOWN] = {TASKQ_STATE_UNKNOWN, TASKQ_ENOJOB},
    };
    taskq_span_t data = r->payload;
    if (r->status != TASKQ_STATUS_DONE && taskq_span_str(r->payload, &data) != 0)
        data = (taskq_span_t){NULL, 0};
    taskq__future_resolve(f, outcome[r->status].state, outcome[r->status].code, r->attempts,
                          data.ptr, data.len);
}

static void on_result(taskq_client_t *c, taskq_iter_t it)
{
    bool ack = !c->leave_outcomes && taskq__ids_reserve(c, it.left) == 0;
    size_t n = 0;
    taskq_result_item_t r;
    while (taskq_iter_result(&it, &r) > 0) {
        taskq_future_t **head;
        while ((head = taskq__jobs_find(&c->jobs, r.job_id)) != NULL)
            resolve_result(*head, &r);
        if (ack)
            c->ids[n++] = r.job_id;
    }
    taskq__send_jobs(c, TASKQ_MSG_ACK, c->ids, n);
}

static void on_message(taskq_client_t *c, const void *data, size_t len, int64_t now)
{
    taskq_msg_t m;
    c->alive_at = now;
    if (taskq_msg_decode(data, len, &c->limits, &m, NULL) != 0)
        return;
    switch (m.type) {
    case TASKQ_MSG_WELCOME:
        on_welcome(c, &m.u.welcome);
        break;
    case TASKQ_MSG_HEARTBEAT:
        c->pong = true;
        break;
    case TASKQ_MSG_BYE:
        conn_lost(c, now, backoff_next(c));
        break;
    case TASKQ_MSG_ERROR:
        on_error(c, &m.u.error, now);
        break;
    case TASKQ_MSG_ACCEPTED:
        on_accepted(c, m.u.accepted.req_id, m.u.accepted.first_job, m.u.accepted.count);
        break;
    case TASKQ_MSG_RESULT:
        on_result(c, m.u.results);
        break;
    case TASKQ_MSG_STATS_REPLY:
        on_reply(c, m.type, m.u.stats_reply.req_id, m.u.stats_reply.map.ptr,
                 m.u.stats_reply.map.len);
        break;
    case TASKQ_MSG_FAILED_REPLY:
        on_reply(c, m.type, m.u.failed_reply.req_id, data, len);
        break;
    default:
        break;
    }
}

/* Act on the handshake events of the socket (CURVE only). */
static void on_monitor(taskq_client_t *c, int64_t now)
{
    char text[128];
    switch (taskq__monitor_read(c->mon, text, sizeof text)) {
    case TASKQ__HS_DENIED:
        conn_denied(c, now, text);
        break;
    case TASKQ__HS_DROPPED:
        c->hs_dropped = true;
        break;
    case TASKQ__HS_OK:
        c->hs_dropped = false;
        break;
    default:
        break;
    }
}

/* Handle every frame waiting on the socket, and its handshake events. */
static int drain(taskq_client_t *c)
{
    int64_t now = taskq__now_ms();
    zmq_msg_t m;
    int rc = 0;
    zmq_msg_init(&m);
    while (c->sock && (rc = taskq__recv(c->sock, &m)) > 0)
        on_message(c, zmq_msg_data(&m), zmq_msg_size(&m), now);
    zmq_msg_close(&m);
    if (c->mon)
        on_monitor(c, now);
    return rc < 0 ? rc : 0;
}

/* ---- The pump ---------------------------------------------------------- */

static int64_t silence_limit(const taskq_client_t *c)
{
    return (int64_t)c->liveness * c->heartbeat_ms;
}

/* Act on the timers due at now: reconnect, liveness, heartbeat, and the
 * limit of time without a broker. */
static void tick(taskq_client_t *c, int64_t now)
{
    if (c->fatal || c->denied)
        return;
    if (!c->sock) {
        if (now >= c->reconnect_at && conn_open(c, now) != 0)
            c->reconnect_at = now + backoff_next(c);
    } else if (now - c->alive_at >= silence_limit(c)) {
        conn_lost(c, now, backoff_next(c));
    } else if (c->conn == TASKQ__CONN_READY && now - c->alive_at >= c->heartbeat_ms &&
               now - c->hb_sent_at >= c->heartbeat_ms) {
        send_simple(c, TASKQ_MSG_HEARTBEAT);
        c->hb_sent_at = now;
    }
    bool waiting = c->n_pending || c->n_waiting;
    if (c->conn == TASKQ__CONN_READY || !waiting) {
        c->down = false;
    } else if (!c->down) {
        c->down = true;
        c->down_since = now;
    } else if (c->reconnect_limit_ms >= 0 && now - c->down_since >= c->reconnect_limit_ms) {
        taskq__fail_all(c, TASKQ_STATE_CLOSED, TASKQ_ECLOSED,
                        c->hs_dropped ? "the broker closed the connection during the CURVE "
                                        "handshake (is the server key the broker's public key?)"
                                      : "the broker could not be reached");
        c->down = false;
        c->closed_gen++;
    }
}

/* When tick() has something to do next. */
static int64_t next_timer(const taskq_client_t *c)
{
    int64_t t = INT64_MAX;
    if (c->fatal || c->denied)
        return t;
    if (!c->sock) {
        t = c->reconnect_at;
    } else {
        t = c->alive_at + silence_limit(c);
        if (c->conn == TASKQ__CONN_READY) {
            int64_t last = c->alive_at > c->hb_sent_at ? c->alive_at : c->hb_sent_at;
            if (last + c->heartbeat_ms < t)
                t = last + c->heartbeat_ms;
        }
    }
    if (c->down && c->reconnect_limit_ms >= 0 && c->down_since + c->reconnect_limit_ms < t)
        t = c->down_since + c->reconnect_limit_ms;
    return t;
}

int32_t taskq__remaining(int64_t deadline)
{
    if (deadline < 0)
        return TASKQ_TIMEOUT_INFINITE;
    int64_t left = deadline - taskq__now_ms();
    return left > 0 ? (int32_t)left : 0;
}

int taskq__pump(taskq_client_t *c, int32_t timeout_ms, taskq__cond_fn cond, const void *arg)
{
    int64_t now = taskq__now_ms();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now + timeout_ms;
    /* Silence between waits is not the broker's: nobody listened. */
    c->alive_at += now - c->left_at;
    c->hb_sent_at += now - c->left_at;
    /* After a refusal, a call that needs the broker asks once more (the
     * broker's allow-lists may have changed). */
    if (c->denied && (c->n_pending || c->n_waiting)) {
        c->denied = false;
        c->reconnect_at = now;
        c->backoff_ms = TASKQ__BACKOFF_MIN_MS;
    }
    int rc = taskq__flush(c);
    if (!rc)
        rc = drain(c);
    while (!rc) {
        now = taskq__now_ms();
        tick(c, now);
        if (cond(c, arg))
            break;
        if (now >= deadline) {
            rc = TASKQ_ETIMEDOUT;
            break;
        }
        int64_t until = next_timer(c);
        if (deadline < until)
            until = deadline;
        long wait = until - now < POLL_MAX_MS ? (long)(until - now) : POLL_MAX_MS;
        if (wait < 0)
            wait = 0;
        if (c->sock) {
            zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
            if (zmq_poll(items, c->mon ? 2 : 1, wait) < 0 && errno != EINTR)
                rc = TASKQ_ESYS;
        } else {
            poll(NULL, 0, (int)wait);
        }
        if (!rc)
            rc = drain(c);
    }
    c->left_at = taskq__now_ms();
    return rc;
}

/* ---- Client ------------------------------------------------------------ */

int taskq_client_new(const char *endpoint, const taskq_client_opts_t *opts,
                     taskq_client_t **ret_client)
{
    static const taskq_client_opts_t none;
    if (!opts)
        opts = &none;
    if (!endpoint)
        endpoint = TASKQ_DEFAULT_ENDPOINT;
    const char *name = opts->name ? opts->name : "client";
    if (!ret_client || !endpoint[0] || !name[0] || strnlen(name, 256) > 255 ||
        opts->max_batch > MAX_BATCH_LIMIT ||
        (opts->reconnect_limit_ms < 0 && opts->reconnect_limit_ms != TASKQ_TIMEOUT_INFINITE))
        return TASKQ_EINVAL;

    taskq_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return TASKQ_ENOMEM;
    int rc = taskq__curve_init(&c->curve, opts->curve_server_key, opts->curve_key);
    if (rc)
        goto fail;
    rc = TASKQ_ENOMEM;
    c->reconnect_limit_ms =
        opts->reconnect_limit_ms ? opts->reconnect_limit_ms : RECONNECT_LIMIT_DEFAULT_MS;
    c->max_batch = opts->max_batch ? opts->max_batch : MAX_BATCH_DEFAULT;
    c->leave_outcomes = opts->leave_outcomes;
    /* What the broker sends is bounded by the frame size alone. */
    taskq_limits_default(&c->limits);
    c->max_frame = c->limits.max_frame;
    c->limits.max_frame = UINT32_MAX;
    c->limits.max_batch = UINT32_MAX;
    c->heartbeat_ms = TASKQ__HEARTBEAT_MS;
    c->liveness = TASKQ__LIVENESS;
    c->backoff_ms = TASKQ__BACKOFF_MIN_MS;
    taskq__hostname(c->host);
    c->endpoint = strdup(endpoint);
    c->name = strdup(name);
    if (!c->endpoint || !c->name || taskq__ids_reserve(c, c->max_batch) != 0)
        goto fail;
    while (!c->client_id) {
        if (getrandom(&c->client_id, sizeof c->client_id, 0) != sizeof c->client_id &&
            errno != EINTR) {
            rc = TASKQ_ESYS;
            goto fail;
        }
    }
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        rc = TASKQ_ESYS;
        goto fail;
    }
    c->left_at = taskq__now_ms();
    rc = conn_open(c, c->left_at);
    if (rc)
        goto fail;
    *ret_client = c;
    return 0;
fail:
    taskq_client_destroy(&c);
    return rc;
}

void taskq_client_destroy(taskq_client_t **cp)
{
    if (!cp || !*cp)
        return;
    taskq_client_t *c = *cp;
    *cp = NULL;
    taskq__futures_detach(c);
    if (c->conn == TASKQ__CONN_READY && send_simple(c, TASKQ_MSG_BYE) == 0)
        taskq__socket_close(&c->sock, &c->mon, BYE_LINGER_MS);
    else
        taskq__socket_close(&c->sock, &c->mon, 0);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    taskq__jobs_fini(&c->jobs);
    taskq_buf_fini(&c->items);
    taskq_buf_fini(&c->out);
    free(c->reply);
    free(c->ids);
    free(c->broker_version);
    free(c->endpoint);
    free(c->name);
    taskq__curve_wipe(&c->curve);
    free(c);
}

int taskq_client_flush(taskq_client_t *c)
{
    return c ? taskq__flush(c) : TASKQ_EINVAL;
}

/* ---- Requests: ping and stats ------------------------------------------ */

/* A request's wait ends when its answer came, or when the connection it
 * was sent on is no more. */
typedef struct request {
    uint32_t closed_gen; /* c->closed_gen when the call started */
    uint32_t denied_gen; /* c->denied_gen when the call started */
    bool sent;           /* false: waiting for the handshake */
} request_t;

static bool request_over(const taskq_client_t *c, const request_t *r)
{
    return c->fatal || c->closed_gen != r->closed_gen || c->denied_gen != r->denied_gen;
}

static bool request_answered(const taskq_client_t *c)
{
    return c->req->encode ? c->req_done : c->pong;
}

static bool request_ready(const taskq_client_t *c, const void *arg)
{
    const request_t *r = arg;
    if (request_over(c, r))
        return true;
    if (!r->sent)
        return c->conn == TASKQ__CONN_READY;
    return c->conn != TASKQ__CONN_READY || request_answered(c);
}

/* Send req on the connection that is ready. */
static int request_send(taskq_client_t *c, const taskq__req_t *req)
{
    c->req_sends++;
    if (!req->encode) {
        c->pong = false;
        int rc = send_simple(c, TASKQ_MSG_HEARTBEAT);
        c->hb_sent_at = taskq__now_ms();
        return rc;
    }
    c->req_id = ++c->next_req;
    c->req_done = false;
    taskq_buf_reset(&c->out);
    return req->encode(&c->out, c->req_id, req->arg) ? TASKQ_ENOMEM : send_out(c);
}

int taskq__request(taskq_client_t *c, int32_t timeout_ms, const taskq__req_t *req,
                   int64_t *ret_sent_us)
{
    if (c->fatal)
        return c->fatal;
    int64_t deadline = timeout_ms < 0 ? -1 : taskq__now_ms() + timeout_ms;
    request_t r = {c->closed_gen, c->denied_gen, false};
    int rc;
    c->req = req;
    c->req_sends = 0;
    c->n_waiting++;
    for (;;) {
        r.sent = false;
        rc = taskq__pump(c, taskq__remaining(deadline), request_ready, &r);
        if (rc || request_over(c, &r))
            break;
        rc = request_send(c, req);
        if (ret_sent_us)
            *ret_sent_us = taskq__now_us();
        r.sent = true;
        if (!rc)
            rc = taskq__pump(c, taskq__remaining(deadline), request_ready, &r);
        if (rc || request_over(c, &r) || request_answered(c))
            break;
    }
    c->n_waiting--;
    if (!rc && request_over(c, &r))
        rc = c->fatal                          ? c->fatal
             : c->denied_gen != r.denied_gen ? TASKQ_EDENIED
                                             : TASKQ_ECLOSED;
    if (!rc && req->encode)
        rc = c->req_rc;
    if (rc) {
        free(c->reply);
        c->reply = NULL;
    }
    c->req = NULL;
    c->req_id = 0;
    return rc;
}

static int encode_stats(taskq_buf_t *b, uint64_t req_id, const void *arg)
{
    return taskq_enc_stats(b, req_id);
}

int taskq_client_ping(taskq_client_t *c, int32_t timeout_ms, uint32_t *ret_rtt_us,
                      const char **ret_version)
{
    if (!c)
        return TASKQ_EINVAL;
    static const taskq__req_t ping = {0};
    int64_t sent_us;
    int rc = taskq__request(c, timeout_ms, &ping, &sent_us);
    if (rc)
        return rc;
    if (ret_rtt_us) {
        int64_t rtt = taskq__now_us() - sent_us;
        *ret_rtt_us = rtt < UINT32_MAX ? (uint32_t)rtt : UINT32_MAX;
    }
    if (ret_version)
        *ret_version = c->broker_version ? c->broker_version : "";
    return 0;
}

int taskq_client_stats(taskq_client_t *c, int32_t timeout_ms, void **ret_map, size_t *ret_len)
{
    if (!c || !ret_map || !ret_len)
        return TASKQ_EINVAL;
    static const taskq__req_t stats = {.encode = encode_stats, .reply = TASKQ_MSG_STATS_REPLY};
    int rc = taskq__request(c, timeout_ms, &stats, NULL);
    if (!rc) {
        *ret_map = c->reply;
        *ret_len = c->reply_len;
        c->reply = NULL;
    }
    return rc;
}
