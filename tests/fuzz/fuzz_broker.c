/*
 * fuzz_broker.c - fuzz target: the broker's message handler, fed through
 * tqd_handle_frame on a real broker (memory store, ROUTER bound to an
 * inproc endpoint, DEALER peers), each loop turn ended by
 * tqd_broker_turn_end as tqd_broker_run does, on a clock the input moves.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <zmq.h>

#include "broker.h"
#include "fuzz.h"
#include "handlers.h"
#include "log.h"
#include "outbox.h"

#define SLOTS 8          /* routing ids an input can name */
#define DEALERS 4        /* the first ones, each with a DEALER connected */
#define HELD_MAX 1024    /* attempts a DEALER remembers */
#define ENDPOINT "inproc://fuzz-broker"
#define HASH_SEED 0x5eed /* fixed, so that an input replays the same way */
/* Frames handled in one turn at most: no more than the loop reads
 * (READ_BATCH in broker.c), which the broker's output lists are sized for. */
#define FRAMES_PER_TURN 64

enum { OP_MULTIPART = 1, OP_TURN = 2, OP_DONE = 3 };

/* A routing id and what its peer holds since its last HELLO or BYE. */
typedef struct slot {
    void *dealer;                        /* NULL: nobody behind this routing id */
    uint8_t rid[2];                      /* the routing id */
    uint32_t credit;                     /* credit of its last worker HELLO, else 0 */
    uint32_t holding;                    /* attempts received and not answered by DONE */
    bool untracked;                      /* more than HELD_MAX: held is incomplete */
    taskq_abandon_item_t held[HELD_MAX]; /* those attempts, oldest first */
    uint32_t n_held;                     /* entries of held */
} slot_t;

typedef struct fuzz {
    tqd_broker_t *b;          /* the broker */
    slot_t slots[SLOTS];      /* its peers */
    taskq_limits_t peer;      /* how clients and workers decode what it sends */
    taskq_buf_t done;         /* a DONE frame being written */
    taskq_buf_t payload;      /* the payload of its items */
    uint32_t frames;          /* frames handled in this turn */
} fuzz_t;

/*
 * The daemon's log (common/log.c writes it to stderr): here every line is
 * formatted, so that its arguments are read as taskqd would, and dropped
 * unless TASKQ_FUZZ_LOG is set in the environment (which also lists the
 * messages each DEALER receives).
 */
int tq_log_level = LOG_DEBUG;

void tq_log_write(int prio, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (getenv("TASKQ_FUZZ_LOG"))
        fprintf(stderr, "<%d>%s\n", prio, line);
}

/*
 * The broker's own state: every job queued or running is counted active by
 * the client it belongs to; a job waiting to be sent to a worker runs
 * there; an attempt a worker holds that is its job's current one is held
 * by the job's worker; retained outcomes stay within their limit after a
 * turn.
 */
static void check_state(const tqd_broker_t *b, bool turn_ended)
{
    uint64_t active = 0;
    for (size_t i = 0; i < b->clients.len; i++)
        active += b->clients.v[i]->active;
    FUZZ_CHECK(active == b->queue.queued + b->queue.running,
               "clients count %" PRIu64 " active jobs, the queue %" PRIu64 " queued and %" PRIu64
               " running",
               active, b->queue.queued, b->queue.running);
    for (size_t i = 0; i < b->workers.len; i++) {
        const tqd_worker_t *w = b->workers.v[i];
        for (uint32_t k = 0; k < w->n_unsent; k++)
            FUZZ_CHECK(w->unsent[k]->state == TQD_JOB_RUNNING && w->unsent[k]->worker == w,
                       "job %" PRIu64 " is to be sent to a worker it does not run at",
                       w->unsent[k]->id);
        size_t pos = 0;
        tqd_held_t h;
        while (tqd_worker_held_next(w, &pos, &h)) {
            const tqd_job_t *job = tqd_queue_find(&b->queue, h.job);
            FUZZ_CHECK(!job || job->state != TQD_JOB_RUNNING || job->attempt != h.attempt ||
                           job->worker == w,
                       "two workers hold attempt %" PRIu32 " of job %" PRIu64, h.attempt, h.job);
        }
    }
    FUZZ_CHECK(!turn_ended || b->queue.retained <= b->cfg.max_retained,
               "%" PRIu64 " outcomes retained", b->queue.retained);
}

/* The index of (job, attempt) in what s holds, or -1. */
static long held_index(const slot_t *s, uint64_t job, uint32_t attempt)
{
    for (uint32_t k = 0; k < s->n_held; k++)
        if (s->held[k].job_id == job && s->held[k].attempt == attempt)
            return k;
    return -1;
}

/* s stops holding its attempt at index k. */
static void held_drop(slot_t *s, uint32_t k)
{
    s->n_held--;
    s->holding--;
    memmove(s->held + k, s->held + k + 1, (s->n_held - k) * sizeof *s->held);
}

/* What s's peer says in a frame, as far as what it holds goes: HELLO and
 * BYE start afresh, DONE answers attempts. */
static void peer_says(const fuzz_t *f, slot_t *s, const uint8_t *data, size_t len)
{
    taskq_msg_t m;
    if (taskq_msg_decode(data, len, &f->b->limits, &m, NULL) < 0)
        return;
    if (m.type == TASKQ_MSG_HELLO || m.type == TASKQ_MSG_BYE) {
        bool worker = m.type == TASKQ_MSG_HELLO && m.u.hello.role == TASKQ_ROLE_WORKER;
        s->credit = worker ? m.u.hello.credit : 0;
        s->holding = s->n_held = 0;
        s->untracked = false;
    } else if (m.type == TASKQ_MSG_DONE) {
        taskq_done_item_t d;
        long k;
        while (taskq_iter_done(&m.u.done, &d) > 0)
            if ((k = held_index(s, d.job_id, d.attempt)) >= 0)
                held_drop(s, (uint32_t)k);
    }
}

/* A frame the broker sent to s: its peer must be able to decode it, and it
 * must be a message the broker sends.  A worker remembers its attempts. */
static void received(fuzz_t *f, slot_t *s, const uint8_t *data, size_t len)
{
    taskq_msg_t m;
    int rc = taskq_msg_decode(data, len, &f->peer, &m, NULL);
    FUZZ_CHECK(rc == 0, "the broker sent a frame its peers refuse: %s", taskq_perr_name(rc));
    if (getenv("TASKQ_FUZZ_LOG"))
        fprintf(stderr, "%.2s received type %u (%zu bytes)\n", (const char *)s->rid, m.type, len);
    switch (m.type) {
    case TASKQ_MSG_WELCOME:
    case TASKQ_MSG_HEARTBEAT:
    case TASKQ_MSG_BYE:
    case TASKQ_MSG_ACCEPTED:
    case TASKQ_MSG_RESULT:
    case TASKQ_MSG_STATS_REPLY:
    case TASKQ_MSG_ABANDON:
    case TASKQ_MSG_FAILED_REPLY:
        break;
    case TASKQ_MSG_ERROR:
        FUZZ_CHECK(strcmp(taskq_perr_name((int)m.u.error.code), "UNKNOWN") != 0,
                   "ERROR with code %" PRIu32, m.u.error.code);
        break;
    case TASKQ_MSG_TASKS: {
        taskq_task_item_t t;
        while ((rc = taskq_iter_task(&m.u.tasks, &t)) > 0) {
            FUZZ_CHECK(s->untracked || held_index(s, t.job_id, t.attempt) < 0,
                       "attempt %" PRIu32 " of job %" PRIu64 " sent again to %.2s", t.attempt,
                       t.job_id, (const char *)s->rid);
            s->holding++;
            if (s->n_held < HELD_MAX)
                s->held[s->n_held++] = (taskq_abandon_item_t){t.job_id, t.attempt};
            else
                s->untracked = true;
        }
        FUZZ_CHECK(rc == 0, "TASKS item: %s", taskq_perr_name(rc));
        FUZZ_CHECK(s->untracked || s->holding <= s->credit,
                   "%.2s holds %" PRIu32 " attempts with credit %" PRIu32, (const char *)s->rid,
                   s->holding, s->credit);
        break;
    }
    default:
        FUZZ_CHECK(false, "the broker sent a message of type %u", m.type);
    }
}

/* Read and check everything the broker sent, so that nothing piles up. */
static void drain(fuzz_t *f)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (size_t k = 0; k < DEALERS; k++) {
        slot_t *s = &f->slots[k];
        for (;;) {
            if (zmq_msg_recv(&msg, s->dealer, ZMQ_DONTWAIT) < 0) {
                /* libFuzzer's timer signal may interrupt a read. */
                if (errno == EINTR)
                    continue;
                FUZZ_CHECK(errno == EAGAIN, "cannot read a DEALER: %s", zmq_strerror(errno));
                break;
            }
            FUZZ_CHECK(!zmq_msg_more(&msg), "the broker sent a multipart message");
            received(f, s, zmq_msg_data(&msg), zmq_msg_size(&msg));
        }
    }
    zmq_msg_close(&msg);
}

/* End the loop turn, check the broker, and move the clock on by advance
 * ms for the next turn's frames. */
static void turn(fuzz_t *f, uint64_t advance)
{
    tqd_broker_turn_end(f->b);
    drain(f);
    check_state(f->b, true);
    f->frames = 0;
    f->b->now += advance;
}

/* One frame from s, from a buffer of its exact size so that a read past
 * its end is caught. */
static void handle(fuzz_t *f, slot_t *s, const uint8_t *data, size_t len, bool multipart)
{
    if (f->frames == FRAMES_PER_TURN)
        turn(f, 0);
    uint8_t *frame = malloc(len ? len : 1);
    FUZZ_CHECK(frame, "out of memory");
    memcpy(frame, data, len);
    if (!multipart)
        peer_says(f, s, frame, len);
    tqd_handle_frame(f->b, s->rid, sizeof s->rid, frame, len, multipart, NULL);
    free(frame);
    f->frames++;
    drain(f);
    check_state(f->b, false);
}

/* The payload of a DONE item with this status and a body of size bytes
 * (0: a small one), written into f->payload. */
static taskq_span_t payload(fuzz_t *f, uint8_t status, size_t size)
{
    static const uint8_t zeros[255 * 256];
    uint8_t bin16[] = {0xc5, (uint8_t)(size >> 8), (uint8_t)size};
    taskq_buf_t *p = &f->payload;
    int rc;
    taskq_buf_reset(p);
    if (status == TASKQ_DONE_RETURNED)
        rc = taskq_buf_append(p, "\xc0", 1);
    else if (status != TASKQ_DONE_OK)
        rc = size ? taskq_enc_str(p, (const char *)zeros, size) : taskq_enc_str(p, "boom", 4);
    else if (size == 0)
        rc = taskq_buf_append(p, "\x07", 1);
    else if ((rc = taskq_buf_append(p, bin16, sizeof bin16)) == 0)
        rc = taskq_buf_append(p, zeros, size);
    FUZZ_CHECK(rc == 0, "out of memory");
    return (taskq_span_t){p->data, p->len};
}

/* s answers the oldest of the attempts it holds, up to (arg >> 2) + 1,
 * with status arg & 3 and payloads of 256 * size bytes. */
static void send_done(fuzz_t *f, slot_t *s, uint8_t arg, uint8_t size)
{
    uint8_t status = arg & 3;
    uint32_t n = (uint32_t)(arg >> 2) + 1;
    if (n > s->n_held)
        n = s->n_held;
    if (n == 0)
        return;
    taskq_span_t body = payload(f, status, 256u * size);
    taskq_buf_reset(&f->done);
    int rc = taskq_enc_done_begin(&f->done, n);
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        taskq_done_item_t d = {s->held[k].job_id, s->held[k].attempt, status, body};
        rc = taskq_enc_done_item(&f->done, &d);
    }
    FUZZ_CHECK(rc == 0, "out of memory");
    handle(f, s, f->done.data, f->done.len, false);
}

static void setup(fuzz_t *f, uint8_t flags)
{
    tqd_config_t cfg = {
        .memory = true,
        .sync = TQD_SYNC_NORMAL,
        .heartbeat_ms = flags & 0x10 ? 10 : 1000,
        .liveness = flags & 0x10 ? 2 : 3,
        .max_queued = flags & 0x02 ? 8 : 1000000,
        .max_retained = flags & 0x04 ? 4 : 1000000,
        .max_frame = flags & 0x01 ? 4096 : 64u << 20,
        .result_ttl_s = flags & 0x08 ? 1 : 86400,
        .client_max_queued = flags & 0x20 ? 16 : 1000000,
        .client_max_bytes = flags & 0x20 ? 4096 : 1u << 30,
        .handshake_ms = 10000,
        .max_connections = 100,
        .max_malformed = 100,
        .ipc_mode = 0660,
        .ipc_gid = -1,
    };
    char bound[64];
    FUZZ_CHECK(tqd_broker_new(&cfg, &f->b) == 0, "cannot create the broker");
    /* Nothing is hashed yet: the fixed seed applies from the start. */
    f->b->seed = f->b->queue.seed = HASH_SEED;
    FUZZ_CHECK(tqd_broker_bind(f->b, ENDPOINT, bound, sizeof bound) == 0, "cannot bind: %s",
               zmq_strerror(errno));
    taskq_limits_default(&f->peer);
    f->peer.max_frame = f->peer.max_batch = UINT32_MAX;

    int zero = 0;
    for (size_t k = 0; k < SLOTS; k++) {
        slot_t *s = &f->slots[k];
        s->rid[0] = k < DEALERS ? 'p' : 'x';
        s->rid[1] = (uint8_t)('0' + k);
        if (k >= DEALERS)
            continue;
        s->dealer = zmq_socket(f->b->zctx, ZMQ_DEALER);
        FUZZ_CHECK(s->dealer &&
                       zmq_setsockopt(s->dealer, ZMQ_ROUTING_ID, s->rid, sizeof s->rid) == 0 &&
                       zmq_setsockopt(s->dealer, ZMQ_LINGER, &zero, sizeof zero) == 0 &&
                       zmq_connect(s->dealer, ENDPOINT) == 0,
                   "cannot connect a DEALER: %s", zmq_strerror(errno));
    }
    /* The ROUTER takes the inproc connections in when it next processes
     * its commands, which asking for its events does. */
    int events;
    size_t events_len = sizeof events;
    FUZZ_CHECK(zmq_getsockopt(f->b->sock, ZMQ_EVENTS, &events, &events_len) == 0, "events");
}

/* The broker stops as tqd_broker_run does after SIGTERM, saying BYE to
 * every peer, and everything is freed. */
static void teardown(fuzz_t *f)
{
    tqd_outbox_bye(f->b);
    drain(f);
    for (size_t k = 0; k < DEALERS; k++)
        zmq_close(f->slots[k].dealer);
    tqd_broker_destroy(&f->b);
    taskq_buf_fini(&f->done);
    taskq_buf_fini(&f->payload);
}

/* The byte at *pos, moving on; 0 past the end. */
static uint8_t next_byte(const uint8_t *data, size_t size, size_t *pos)
{
    return *pos < size ? data[(*pos)++] : 0;
}

/*
 * Input: a configuration byte (bit 0: max_frame 4096; bit 1: max_queued 8;
 * bit 2: max_retained 4; bit 3: result_ttl 1 s; bit 4: heartbeat 10 ms and
 * liveness 2), then records, each an op byte whose bits 3-5 name a routing
 * id (0-3 have a DEALER behind them, 4-7 nobody) and whose bits 0-2 say:
 *   2 TURN: one byte t; end the loop turn, then move the clock t*t ms on;
 *   3 DONE: bytes s and z; the DEALER answers the oldest (s >> 2) + 1
 *     attempts it holds with status s & 3 and a payload of 256 * z bytes
 *     (bin for OK, str for ERROR and RETRY; 0: a small one);
 *   1 MULTIPART, anything else FRAME: a 2-byte big-endian length, then
 *     that many bytes, handled as one frame from that routing id (for
 *     MULTIPART, as the first of several).
 * Whatever the input, the broker must not crash, leak or hang; must send
 * only frames its peers decode; must never give a worker more attempts
 * than its credit, nor an attempt it still holds; must let only the holder
 * of a job's current attempt hold that attempt (fencing); and must keep
 * its counts consistent (check_state, received).
 */
FUZZ_TARGET(broker)
{
    if (size == 0)
        return 0;
    fuzz_t *f = calloc(1, sizeof *f);
    FUZZ_CHECK(f, "out of memory");
    setup(f, data[0]);
    size_t pos = 1;
    while (pos < size) {
        uint8_t op = next_byte(data, size, &pos), arg, z;
        slot_t *s = &f->slots[op >> 3 & 7];
        switch (op & 7) {
        case OP_TURN:
            arg = next_byte(data, size, &pos);
            turn(f, (uint64_t)arg * arg);
            break;
        case OP_DONE:
            arg = next_byte(data, size, &pos);
            z = next_byte(data, size, &pos);
            send_done(f, s, arg, z);
            break;
        default: {
            size_t len = next_byte(data, size, &pos);
            len = len << 8 | next_byte(data, size, &pos);
            if (len > size - pos)
                len = size - pos;
            handle(f, s, data + pos, len, (op & 7) == OP_MULTIPART);
            pos += len;
            break;
        }
        }
    }
    turn(f, 0);
    teardown(f);
    free(f);
    return 0;
}
