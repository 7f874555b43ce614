/*
 * swarm.c - the W6 swarm: many worker connections held by one process,
 * each a DEALER socket speaking the worker side of the protocol with the
 * codec of proto/ (HELLO with credit, heartbeats as a worker sends them,
 * DONE for every TASKS item), all served by one zmq_poll loop over the
 * sockets' ZMQ_FD descriptors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "taskq_proto.h"

/* Longest sleep of the loop: heartbeats are checked at least this often. */
#define SCAN_MS 50
/* How long BYE has to go out at the end. */
#define BYE_LINGER_MS 200

typedef struct conn {
    void *sock;      /* DEALER connected to the broker */
    int64_t sent_ms; /* when it last sent anything */
    bool welcomed;   /* WELCOME received since its last HELLO */
} conn_t;

typedef struct swarm {
    conn_t *conns;
    zmq_pollitem_t *items;  /* items[i] polls the ZMQ_FD of conns[i].sock */
    unsigned n;
    unsigned welcomed;      /* connections with their WELCOME */
    bool ready_said;        /* "ready" printed */
    uint32_t heartbeat_ms;  /* from WELCOME */
    taskq_buf_t hello;      /* the HELLO every connection sends */
    taskq_buf_t out;        /* the frame being built */
    taskq_buf_t text;       /* an error text as a msgpack str */
    taskq_limits_t lim;
    zmq_msg_t msg;          /* the frame being read */
} swarm_t;

static int64_t now_ms(void)
{
    return bench_now_ns() / 1000000;
}

/* Send s->out (or the HELLO) on connection c. */
static void send_frame(conn_t *c, const taskq_buf_t *frame, int64_t now)
{
    while (zmq_send(c->sock, frame->data, frame->len, ZMQ_DONTWAIT) < 0 && errno == EINTR)
        ;
    c->sent_ms = now;
}

/* Answer a TASKS batch with one DONE carrying every outcome. */
static void on_tasks(swarm_t *s, conn_t *c, taskq_iter_t it, int64_t now)
{
    taskq_buf_reset(&s->out);
    if (taskq_enc_done_begin(&s->out, it.left) != 0)
        return;
    taskq_task_item_t t;
    while (taskq_iter_task(&it, &t) > 0) {
        uint8_t square[9];
        const uint8_t *res;
        size_t len;
        const char *error;
        taskq_done_item_t d = {.job_id = t.job_id, .attempt = t.attempt,
                               .status = TASKQ_DONE_OK};
        if (bench_compute((const char *)t.function.ptr, t.function.len, t.arg.ptr, t.arg.len,
                          square, &res, &len, &error) == 0) {
            d.payload = (taskq_span_t){res, len};
        } else {
            taskq_buf_reset(&s->text);
            if (taskq_enc_str(&s->text, error, strlen(error)) != 0)
                return;
            d.status = TASKQ_DONE_ERROR;
            d.payload = (taskq_span_t){s->text.data, s->text.len};
        }
        if (taskq_enc_done_item(&s->out, &d) != 0)
            return;
    }
    send_frame(c, &s->out, now);
}

static void on_frame(swarm_t *s, conn_t *c, const void *data, size_t len, int64_t now)
{
    taskq_msg_t m;
    int rc = taskq_msg_decode(data, len, &s->lim, &m, NULL);
    if (rc != 0) {
        fprintf(stderr, "swarm: undecodable frame: %s\n", taskq_perr_name(rc));
        return;
    }
    switch (m.type) {
    case TASKQ_MSG_WELCOME:
        if (!c->welcomed) {
            c->welcomed = true;
            s->welcomed++;
            s->heartbeat_ms = m.u.welcome.heartbeat_ms;
        }
        if (!s->ready_said && s->welcomed == s->n) {
            printf("ready %" PRIu32 "\n", s->heartbeat_ms);
            fflush(stdout);
            s->ready_said = true;
        }
        break;
    case TASKQ_MSG_TASKS:
        on_tasks(s, c, m.u.tasks, now);
        break;
    case TASKQ_MSG_ERROR:
        if (m.u.error.code == TASKQ_PERR_HELLO_REQUIRED) {
            if (c->welcomed)
                s->welcomed--;
            c->welcomed = false;
            send_frame(c, &s->hello, now);
        } else {
            fprintf(stderr, "swarm: ERROR %s: %.*s\n", taskq_perr_name((int)m.u.error.code),
                    (int)m.u.error.text.len, (const char *)m.u.error.text.ptr);
        }
        break;
    case TASKQ_MSG_BYE:
        if (c->welcomed)
            s->welcomed--;
        c->welcomed = false; /* the broker is going: no more heartbeats */
        break;
    default: /* HEARTBEAT counts by arriving; ABANDON: every task is answered at once */
        break;
    }
}

/* Open the n connections and send their HELLO.  0 or -1. */
static int swarm_open(swarm_t *s, void *ctx, const char *endpoint, uint32_t credit)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    taskq_span_t queue = taskq_span_cstr("default");
    taskq_span_t fns[] = {taskq_span_cstr("square"), taskq_span_cstr("echo")};
    taskq_hello_t h = {
        .role = TASKQ_ROLE_WORKER,
        .name = taskq_span_cstr("taskq-bench-swarm"),
        .host = taskq_span_cstr(host),
        .pid = (uint32_t)getpid(),
        .credit = credit,
    };
    if (taskq_enc_hello(&s->hello, &h, &queue, 1, fns, 2) != 0)
        return -1;
    int zero = 0;
    int64_t now = now_ms();
    for (unsigned i = 0; i < s->n; i++) {
        conn_t *c = &s->conns[i];
        c->sock = zmq_socket(ctx, ZMQ_DEALER);
        if (!c->sock || zmq_setsockopt(c->sock, ZMQ_SNDHWM, &zero, sizeof zero) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_RCVHWM, &zero, sizeof zero) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
            zmq_connect(c->sock, endpoint) != 0) {
            fprintf(stderr, "swarm: connection %u: %s\n", i, zmq_strerror(errno));
            return -1;
        }
        int fd;
        size_t len = sizeof fd;
        if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &len) != 0) {
            fprintf(stderr, "swarm: ZMQ_FD: %s\n", zmq_strerror(errno));
            return -1;
        }
        s->items[i] = (zmq_pollitem_t){.fd = fd, .events = ZMQ_POLLIN};
        send_frame(c, &s->hello, now);
    }
    return 0;
}

/*
 * Take in everything connection i holds, until ZMQ_EVENTS says nothing is
 * left.  A socket's ZMQ_FD signals new activity only (edge-triggered), and
 * any operation on the socket, a send included, may consume the signal:
 * so every visit to a socket ends with its queue drained.  Polling the
 * descriptors instead of the sockets spares zmq_poll a ZMQ_EVENTS query
 * (a system call) per socket per call, which with 1000 sockets would cost
 * the swarm more than the broker it measures.
 */
static void service(swarm_t *s, unsigned i, int64_t now)
{
    conn_t *c = &s->conns[i];
    for (;;) {
        int events = 0;
        size_t len = sizeof events;
        if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &events, &len) != 0 || !(events & ZMQ_POLLIN))
            return;
        while (zmq_msg_recv(&s->msg, c->sock, ZMQ_DONTWAIT) >= 0)
            on_frame(s, c, zmq_msg_data(&s->msg), zmq_msg_size(&s->msg), now);
    }
}

/* Heartbeat every welcomed connection that has been silent heartbeat_ms,
 * as a worker does (PROTOCOL.md section 4). */
static void heartbeats(swarm_t *s, int64_t now)
{
    taskq_buf_reset(&s->out);
    if (taskq_enc_heartbeat(&s->out) != 0)
        return;
    for (unsigned i = 0; i < s->n; i++) {
        conn_t *c = &s->conns[i];
        if (c->welcomed && now - c->sent_ms >= s->heartbeat_ms) {
            send_frame(c, &s->out, now);
            service(s, i, now);
        }
    }
}

static int swarm_loop(swarm_t *s)
{
    int64_t now = now_ms();
    for (unsigned i = 0; i < s->n; i++) /* what came before the first poll */
        service(s, i, now);
    while (!bench_interrupted) {
        if (zmq_poll(s->items, (int)s->n, SCAN_MS) < 0 && errno != EINTR) {
            fprintf(stderr, "swarm: zmq_poll: %s\n", zmq_strerror(errno));
            return -1;
        }
        now = now_ms();
        for (unsigned i = 0; i < s->n; i++)
            if (s->items[i].revents & ZMQ_POLLIN)
                service(s, i, now);
        heartbeats(s, now);
    }
    return 0;
}

/* Say BYE on every welcomed connection and close them all. */
static void swarm_close(swarm_t *s)
{
    taskq_buf_reset(&s->out);
    bool bye = taskq_enc_bye(&s->out, taskq_span_cstr("stopping")) == 0;
    int linger = BYE_LINGER_MS;
    for (unsigned i = 0; i < s->n; i++) {
        conn_t *c = &s->conns[i];
        if (!c->sock)
            continue;
        if (bye && c->welcomed) {
            send_frame(c, &s->out, 0);
            zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
        }
        zmq_close(c->sock);
    }
}

int bench_swarm_main(int argc, char **argv)
{
    char *end1, *end2;
    unsigned long n = argc == 5 ? strtoul(argv[3], &end1, 10) : 0;
    unsigned long credit = argc == 5 ? strtoul(argv[4], &end2, 10) : 0;
    if (n == 0 || n > 100000 || *end1 || credit == 0 || credit > 10000 || *end2) {
        fprintf(stderr, "usage: taskq-bench --run-swarm ENDPOINT N CREDIT\n");
        return 2;
    }
    bench_catch_signals();
    swarm_t s = {.n = (unsigned)n};
    taskq_limits_default(&s.lim);
    zmq_msg_init(&s.msg);
    s.conns = calloc(n, sizeof *s.conns);
    s.items = calloc(n, sizeof *s.items);
    void *ctx = zmq_ctx_new();
    int rc = s.conns && s.items && ctx ? 0 : -1;
    /* Each connection is a socket of the context: lift ZeroMQ's default
     * limit of 1023. */
    if (rc == 0 && zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)n + 16) != 0) {
        fprintf(stderr, "swarm: ZMQ_MAX_SOCKETS: %s\n", zmq_strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = swarm_open(&s, ctx, argv[2], (uint32_t)credit);
    if (rc == 0)
        rc = swarm_loop(&s);
    if (s.conns)
        swarm_close(&s);
    zmq_msg_close(&s.msg);
    if (ctx)
        zmq_ctx_term(ctx);
    taskq_buf_fini(&s.hello);
    taskq_buf_fini(&s.out);
    taskq_buf_fini(&s.text);
    free(s.conns);
    free(s.items);
    return rc == 0 ? 0 : 1;
}
