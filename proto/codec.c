/*
 * codec.c - the validating decoder of protocol frames: a bounds-checked
 * msgpack cursor that reads one header at a time, the structural check of a
 * whole frame, the per-message field rules, and the item iterators.
 * It never allocates and never recurses.
 */
#include "taskq_proto.h"

#include <stdint.h>

/* max_depth values above this act as this; it sizes the skip stack. */
#define DEPTH_CAP 256
/* The protocol's own arrays that can enclose a payload: message, batch, item. */
#define FRAME_LEVELS 3
/* The deepest protocol structure: a FAILED_REPLY's message, job list, job,
 * history and entry arrays. */
#define PROTO_LEVELS 5
/* Field ranges of PROTOCOL.md sections 3.1 and 3.2. */
#define MAX_CREDIT 10000
#define MAX_PRIORITY 1000
#define MAX_ATTEMPTS 1000

#define ERR(name) (-TASKQ_PERR_##name)

/* A read position in a frame; p never passes end. */
typedef struct rd {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

enum kind { K_NIL, K_BOOL, K_FLOAT, K_UINT, K_NINT, K_STR, K_BIN, K_EXT, K_ARRAY, K_MAP, K_BAD };

/* One msgpack header.  Integers of any encoding become K_UINT (value >= 0)
 * or K_NINT (value < 0). */
typedef struct hdr {
    enum kind kind;
    uint64_t u;          /* K_UINT value */
    int64_t i;           /* K_NINT value */
    uint64_t n;          /* K_STR/K_BIN/K_EXT body bytes; K_ARRAY/K_MAP entries */
    const uint8_t *body; /* K_STR: first byte of the string */
} hdr_t;

/* Layout after a marker byte 0xc0..0xdf: the kind, the size of the length
 * or value field that follows, and for float and fixext the body size. */
static const struct marker {
    uint8_t kind, width, fixed;
} markers[32] = {
    {K_NIL, 0, 0},   {K_BAD, 0, 0},   {K_BOOL, 0, 0},  {K_BOOL, 0, 0},   /* c0-c3 */
    {K_BIN, 1, 0},   {K_BIN, 2, 0},   {K_BIN, 4, 0},                     /* c4-c6 */
    {K_EXT, 1, 0},   {K_EXT, 2, 0},   {K_EXT, 4, 0},                     /* c7-c9 */
    {K_FLOAT, 0, 4}, {K_FLOAT, 0, 8},                                    /* ca-cb */
    {K_UINT, 1, 0},  {K_UINT, 2, 0},  {K_UINT, 4, 0},  {K_UINT, 8, 0},   /* cc-cf */
    {K_NINT, 1, 0},  {K_NINT, 2, 0},  {K_NINT, 4, 0},  {K_NINT, 8, 0},   /* d0-d3 */
    {K_EXT, 0, 1},   {K_EXT, 0, 2},   {K_EXT, 0, 4},   {K_EXT, 0, 8},    /* d4-d7 */
    {K_EXT, 0, 16},                                                      /* d8 */
    {K_STR, 1, 0},   {K_STR, 2, 0},   {K_STR, 4, 0},                     /* d9-db */
    {K_ARRAY, 2, 0}, {K_ARRAY, 4, 0}, {K_MAP, 2, 0},   {K_MAP, 4, 0},    /* dc-df */
};

static uint64_t load_be(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < width; k++)
        v = v << 8 | p[k];
    return v;
}

/* A signed value of width bytes (0xd0..0xd3), sign-extended. */
static int64_t load_signed(uint64_t v, unsigned width)
{
    switch (width) {
    case 1: return (int8_t)v;
    case 2: return (int16_t)v;
    case 4: return (int32_t)v;
    default: return (int64_t)v;
    }
}

/*
 * Read one header and, for scalars, strings, bin and ext, their bodies.
 * Containers are left open: r->p is then at their first entry.  A length
 * that claims more bytes than remain is TRUNCATED (each array entry takes
 * at least one byte, each map entry two).
 */
static int rd_hdr(rd_t *r, hdr_t *h)
{
    const uint8_t *p = r->p;
    size_t avail = (size_t)(r->end - p);
    uint64_t body = 0;

    if (avail == 0)
        return ERR(TRUNCATED);
    uint8_t b = *p++;
    avail--;
    *h = (hdr_t){.kind = K_BAD};
    if (b <= 0x7f) {
        h->kind = K_UINT;
        h->u = b;
    } else if (b <= 0x8f) {
        h->kind = K_MAP;
        h->n = b & 0x0f;
    } else if (b <= 0x9f) {
        h->kind = K_ARRAY;
        h->n = b & 0x0f;
    } else if (b <= 0xbf) {
        h->kind = K_STR;
        h->n = body = b & 0x1f;
    } else if (b >= 0xe0) {
        h->kind = K_NINT;
        h->i = (int8_t)b;
    } else {
        struct marker m = markers[b - 0xc0];
        if (m.kind == K_BAD)
            return ERR(MALFORMED);
        if (avail < m.width)
            return ERR(TRUNCATED);
        uint64_t v = load_be(p, m.width);
        p += m.width;
        avail -= m.width;
        h->kind = m.kind;
        switch (m.kind) {
        case K_UINT:
            h->u = v;
            break;
        case K_NINT:
            h->i = load_signed(v, m.width);
            if (h->i >= 0) {
                h->kind = K_UINT;
                h->u = (uint64_t)h->i;
            }
            break;
        case K_FLOAT:
            body = m.fixed;
            break;
        case K_EXT: /* a type byte, then the data */
            h->n = m.fixed ? m.fixed : v;
            body = h->n + 1;
            break;
        case K_STR:
        case K_BIN:
            h->n = body = v;
            break;
        default: /* K_NIL, K_BOOL, K_ARRAY, K_MAP */
            h->n = v;
            break;
        }
    }
    if (h->kind == K_ARRAY || h->kind == K_MAP) {
        if (h->n > avail || (h->kind == K_MAP && 2 * h->n > avail))
            return ERR(TRUNCATED);
    } else if (body > avail) {
        return ERR(TRUNCATED);
    }
    h->body = p;
    r->p = p + body;
    return 0;
}

/*
 * Skip exactly one object, whose arrays and maps may nest at most levels
 * deep (a scalar is depth 0, [] is depth 1, [[]] depth 2).  The stack keeps
 * the entries still unread in each open container.
 */
static int rd_skip(rd_t *r, uint32_t levels)
{
    uint64_t left[DEPTH_CAP + FRAME_LEVELS];
    uint32_t depth = 0;
    hdr_t h;

    if (levels > DEPTH_CAP + FRAME_LEVELS)
        levels = DEPTH_CAP + FRAME_LEVELS;
    do {
        int rc = rd_hdr(r, &h);
        if (rc < 0)
            return rc;
        if (depth > 0)
            left[depth - 1]--;
        if (h.kind == K_ARRAY || h.kind == K_MAP) {
            if (depth == levels)
                return ERR(TOO_DEEP);
            if (h.n > 0)
                left[depth++] = h.kind == K_MAP ? 2 * h.n : h.n;
        }
        while (depth > 0 && left[depth - 1] == 0)
            depth--;
    } while (depth > 0);
    return 0;
}

static uint32_t depth_limit(uint32_t max_depth)
{
    return max_depth < DEPTH_CAP ? max_depth : DEPTH_CAP;
}

/* ---- Field readers: BAD_FIELD for the wrong type or range ------------- */

static int rd_uint(rd_t *r, uint64_t lo, uint64_t hi, uint64_t *ret)
{
    hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.kind != K_UINT || h.u < lo || h.u > hi)
        return ERR(BAD_FIELD);
    *ret = h.u;
    return 0;
}

static int rd_u64(rd_t *r, uint64_t *ret)
{
    return rd_uint(r, 0, UINT64_MAX, ret);
}

static int rd_u32(rd_t *r, uint32_t lo, uint32_t hi, uint32_t *ret)
{
    uint64_t v;
    int rc = rd_uint(r, lo, hi, &v);
    if (rc == 0)
        *ret = (uint32_t)v;
    return rc;
}

static int rd_u8(rd_t *r, uint8_t lo, uint8_t hi, uint8_t *ret)
{
    uint64_t v;
    int rc = rd_uint(r, lo, hi, &v);
    if (rc == 0)
        *ret = (uint8_t)v;
    return rc;
}

static int rd_i32(rd_t *r, int32_t lo, int32_t hi, int32_t *ret)
{
    hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.kind == K_UINT && hi >= 0 && h.u <= (uint64_t)hi && (int64_t)h.u >= lo)
        *ret = (int32_t)h.u;
    else if (h.kind == K_NINT && h.i >= lo && h.i <= hi)
        *ret = (int32_t)h.i;
    else
        return ERR(BAD_FIELD);
    return 0;
}

/* A str of at most max bytes (TOO_LONG), non-empty if required (BAD_FIELD). */
static int rd_str(rd_t *r, uint32_t max, bool nonempty, taskq_span_t *ret)
{
    hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.kind != K_STR)
        return ERR(BAD_FIELD);
    if (h.n > max)
        return ERR(TOO_LONG);
    if (nonempty && h.n == 0)
        return ERR(BAD_FIELD);
    *ret = (taskq_span_t){h.body, (size_t)h.n};
    return 0;
}

/* Any one object nested at most max_depth deep: its encoded bytes. */
static int rd_payload(rd_t *r, uint32_t max_depth, taskq_span_t *ret)
{
    const uint8_t *start = r->p;
    int rc = rd_skip(r, depth_limit(max_depth));
    if (rc < 0)
        return rc;
    *ret = (taskq_span_t){start, (size_t)(r->p - start)};
    return 0;
}

/* The payload of a non-DONE outcome: one str of at most max_text bytes. */
static int rd_text_payload(rd_t *r, uint32_t max_text, taskq_span_t *ret)
{
    const uint8_t *start = r->p;
    taskq_span_t text;
    int rc = rd_str(r, max_text, false, &text);
    if (rc < 0)
        return rc;
    *ret = (taskq_span_t){start, (size_t)(r->p - start)};
    return 0;
}

/* The array of one batch item: BAD_FIELD if not an array, MALFORMED if it
 * has the wrong number of fields. */
static int rd_item(rd_t *r, uint64_t nfields)
{
    hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.kind != K_ARRAY)
        return ERR(BAD_FIELD);
    return h.n == nfields ? 0 : ERR(MALFORMED);
}

/* ---- Items: shared by the decoder (with its limits) and the iterators -- */

/* Reads one item at r into *ret (only on success). */
typedef int item_fn(rd_t *r, const taskq_limits_t *lim, void *ret);

static int item_name(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    return rd_str(r, lim->max_name, true, ret);
}

static int item_job(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    return rd_u64(r, ret);
}

static int item_submit(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_submit_item_t t;
    int rc;
    if ((rc = rd_item(r, 6)) < 0 ||
        (rc = rd_str(r, lim->max_name, true, &t.function)) < 0 ||
        (rc = rd_str(r, lim->max_name, true, &t.queue)) < 0 ||
        (rc = rd_i32(r, -MAX_PRIORITY, MAX_PRIORITY, &t.priority)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.timeout_ms)) < 0 ||
        (rc = rd_u32(r, 1, MAX_ATTEMPTS, &t.max_attempts)) < 0 ||
        (rc = rd_payload(r, lim->max_depth, &t.arg)) < 0)
        return rc;
    *(taskq_submit_item_t *)ret = t;
    return 0;
}

static int item_result(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_result_item_t t;
    int rc;
    if ((rc = rd_item(r, 4)) < 0 || (rc = rd_u64(r, &t.job_id)) < 0 ||
        (rc = rd_u8(r, 0, TASKQ_STATUS_MAX, &t.status)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.attempts)) < 0)
        return rc;
    rc = t.status == TASKQ_STATUS_DONE ? rd_payload(r, lim->max_depth, &t.payload)
                                       : rd_text_payload(r, lim->max_text, &t.payload);
    if (rc < 0)
        return rc;
    *(taskq_result_item_t *)ret = t;
    return 0;
}

static int item_task(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_task_item_t t;
    int rc;
    if ((rc = rd_item(r, 6)) < 0 || (rc = rd_u64(r, &t.job_id)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.attempt)) < 0 ||
        (rc = rd_str(r, lim->max_name, true, &t.function)) < 0 ||
        (rc = rd_u64(r, &t.seed)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.timeout_ms)) < 0 ||
        (rc = rd_payload(r, lim->max_depth, &t.arg)) < 0)
        return rc;
    *(taskq_task_item_t *)ret = t;
    return 0;
}

static int item_done(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_done_item_t t;
    int rc;
    if ((rc = rd_item(r, 4)) < 0 || (rc = rd_u64(r, &t.job_id)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.attempt)) < 0 ||
        (rc = rd_u8(r, 0, TASKQ_DONE_RETRY, &t.status)) < 0)
        return rc;
    bool text = t.status == TASKQ_DONE_ERROR || t.status == TASKQ_DONE_RETRY;
    rc = text ? rd_text_payload(r, lim->max_text, &t.payload)
              : rd_payload(r, lim->max_depth, &t.payload);
    if (rc < 0)
        return rc;
    *(taskq_done_item_t *)ret = t;
    return 0;
}

static int item_abandon(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_abandon_item_t t;
    int rc;
    if ((rc = rd_item(r, 2)) < 0 || (rc = rd_u64(r, &t.job_id)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.attempt)) < 0)
        return rc;
    *(taskq_abandon_item_t *)ret = t;
    return 0;
}

static int item_history(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_history_item_t t;
    int rc;
    if ((rc = rd_item(r, 7)) < 0 || (rc = rd_u32(r, 0, UINT32_MAX, &t.attempt)) < 0 ||
        (rc = rd_str(r, lim->max_name, false, &t.worker)) < 0 ||
        (rc = rd_str(r, lim->max_name, false, &t.host)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.pid)) < 0 || (rc = rd_u64(r, &t.started_ms)) < 0 ||
        (rc = rd_u64(r, &t.ended_ms)) < 0 || (rc = rd_str(r, lim->max_text, false, &t.cause)) < 0)
        return rc;
    *(taskq_history_item_t *)ret = t;
    return 0;
}

/*
 * A list of items: more than limit entries is TOO_MANY, fewer than min or
 * more than max is BAD_FIELD.  Every item is validated now; *ret lets the
 * caller read them again later.
 */
static int rd_list(rd_t *r, const taskq_limits_t *lim, item_fn *fn, uint32_t limit,
                   uint32_t min, uint32_t max, taskq_iter_t *ret)
{
    union {
        taskq_span_t name;
        uint64_t job;
        taskq_submit_item_t submit;
        taskq_result_item_t result;
        taskq_task_item_t task;
        taskq_done_item_t done;
        taskq_abandon_item_t abandon;
        taskq_history_item_t history;
        taskq_failed_item_t failed;
    } scratch;
    hdr_t h;
    int rc = rd_hdr(r, &h);
    if (rc < 0)
        return rc;
    if (h.kind != K_ARRAY)
        return ERR(BAD_FIELD);
    if (h.n > limit)
        return ERR(TOO_MANY);
    if (h.n < min || h.n > max)
        return ERR(BAD_FIELD);
    taskq_iter_t it = {r->p, r->end, (uint32_t)h.n};
    for (uint64_t k = 0; k < h.n; k++)
        if ((rc = fn(r, lim, &scratch)) < 0)
            return rc;
    *ret = it;
    return 0;
}

static int rd_batch(rd_t *r, const taskq_limits_t *lim, item_fn *fn, taskq_iter_t *ret)
{
    return rd_list(r, lim, fn, lim->max_batch, 1, UINT32_MAX, ret);
}

/* A FAILED_REPLY job, whose history is a list of its own. */
static int item_failed(rd_t *r, const taskq_limits_t *lim, void *ret)
{
    taskq_failed_item_t t;
    int rc;
    if ((rc = rd_item(r, 8)) < 0 || (rc = rd_u64(r, &t.job_id)) < 0 ||
        (rc = rd_u8(r, TASKQ_STATUS_FAILED, TASKQ_STATUS_TIMEDOUT, &t.status)) < 0)
        return rc;
    /* A cancelled job is not a failed one. */
    if (t.status == TASKQ_STATUS_CANCELLED)
        return ERR(BAD_FIELD);
    if ((rc = rd_str(r, lim->max_name, true, &t.function)) < 0 ||
        (rc = rd_str(r, lim->max_name, true, &t.queue)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &t.attempts)) < 0 ||
        (rc = rd_u64(r, &t.finished_ms)) < 0 ||
        (rc = rd_text_payload(r, lim->max_text, &t.payload)) < 0 ||
        (rc = rd_list(r, lim, item_history, TASKQ_PROTO_MAX_HISTORY, 0, UINT32_MAX,
                      &t.history)) < 0)
        return rc;
    *(taskq_failed_item_t *)ret = t;
    return 0;
}

/* ---- Messages ---------------------------------------------------------- */

/* Array length of each message type, version and type included. */
static const uint8_t msg_fields[TASKQ_MSG_MAX + 1] = {
    [TASKQ_MSG_HELLO] = 10,    [TASKQ_MSG_WELCOME] = 7, [TASKQ_MSG_HEARTBEAT] = 2,
    [TASKQ_MSG_BYE] = 3,       [TASKQ_MSG_ERROR] = 5,   [TASKQ_MSG_SUBMIT] = 4,
    [TASKQ_MSG_ACCEPTED] = 5,  [TASKQ_MSG_RESULT] = 3,  [TASKQ_MSG_CANCEL] = 3,
    [TASKQ_MSG_WATCH] = 3,     [TASKQ_MSG_STATS] = 3,   [TASKQ_MSG_STATS_REPLY] = 4,
    [TASKQ_MSG_TASKS] = 3,     [TASKQ_MSG_DONE] = 3,    [TASKQ_MSG_ABANDON] = 3,
    [TASKQ_MSG_ACK] = 3,       [TASKQ_MSG_FAILED] = 5,  [TASKQ_MSG_FAILED_REPLY] = 4,
    [TASKQ_MSG_RETRY] = 4,
};

static int dec_hello(rd_t *r, const taskq_limits_t *lim, taskq_hello_t *h)
{
    int rc;
    if ((rc = rd_u8(r, TASKQ_ROLE_CLIENT, TASKQ_ROLE_WORKER, &h->role)) < 0 ||
        (rc = rd_u64(r, &h->client_id)) < 0)
        return rc;
    bool worker = h->role == TASKQ_ROLE_WORKER;
    if ((h->client_id == 0) != worker)
        return ERR(BAD_FIELD);
    /* A worker serves 1..max_list names of each kind, a client none. */
    uint32_t min = worker ? 1 : 0, max = worker ? UINT32_MAX : 0;
    if ((rc = rd_str(r, lim->max_name, true, &h->name)) < 0 ||
        (rc = rd_str(r, lim->max_name, false, &h->host)) < 0 ||
        (rc = rd_u32(r, 0, UINT32_MAX, &h->pid)) < 0 ||
        (rc = rd_u32(r, worker ? 1 : 0, worker ? MAX_CREDIT : 0, &h->credit)) < 0 ||
        (rc = rd_list(r, lim, item_name, lim->max_list, min, max, &h->queues)) < 0 ||
        (rc = rd_list(r, lim, item_name, lim->max_list, min, max, &h->functions)) < 0)
        return rc;
    return 0;
}

static int dec_fields(rd_t *r, const taskq_limits_t *lim, taskq_msg_t *m)
{
    int rc;
    switch (m->type) {
    case TASKQ_MSG_HELLO:
        return dec_hello(r, lim, &m->u.hello);
    case TASKQ_MSG_WELCOME:
        if ((rc = rd_str(r, lim->max_name, false, &m->u.welcome.version)) < 0 ||
            (rc = rd_u64(r, &m->u.welcome.store_id)) < 0 ||
            (rc = rd_u32(r, 0, UINT32_MAX, &m->u.welcome.heartbeat_ms)) < 0 ||
            (rc = rd_u32(r, 0, UINT32_MAX, &m->u.welcome.liveness)) < 0)
            return rc;
        return rd_u32(r, 0, UINT32_MAX, &m->u.welcome.max_frame);
    case TASKQ_MSG_HEARTBEAT:
        return 0;
    case TASKQ_MSG_BYE:
        return rd_str(r, lim->max_text, false, &m->u.bye);
    case TASKQ_MSG_ERROR:
        if ((rc = rd_u32(r, 0, UINT32_MAX, &m->u.error.code)) < 0 ||
            (rc = rd_u64(r, &m->u.error.ref)) < 0)
            return rc;
        return rd_str(r, lim->max_text, false, &m->u.error.text);
    case TASKQ_MSG_SUBMIT:
        if ((rc = rd_u64(r, &m->u.submit.req_id)) < 0)
            return rc;
        return rd_batch(r, lim, item_submit, &m->u.submit.tasks);
    case TASKQ_MSG_ACCEPTED:
        if ((rc = rd_u64(r, &m->u.accepted.req_id)) < 0 ||
            (rc = rd_u64(r, &m->u.accepted.first_job)) < 0)
            return rc;
        return rd_u32(r, 0, UINT32_MAX, &m->u.accepted.count);
    case TASKQ_MSG_RESULT:
        return rd_batch(r, lim, item_result, &m->u.results);
    case TASKQ_MSG_CANCEL:
    case TASKQ_MSG_WATCH:
    case TASKQ_MSG_ACK:
        return rd_batch(r, lim, item_job, &m->u.jobs);
    case TASKQ_MSG_STATS:
        return rd_u64(r, &m->u.stats_req);
    case TASKQ_MSG_STATS_REPLY: {
        hdr_t h;
        if ((rc = rd_u64(r, &m->u.stats_reply.req_id)) < 0)
            return rc;
        rd_t peek = *r;
        if ((rc = rd_hdr(&peek, &h)) < 0)
            return rc;
        if (h.kind != K_MAP)
            return ERR(BAD_FIELD);
        return rd_payload(r, lim->max_depth, &m->u.stats_reply.map);
    }
    case TASKQ_MSG_TASKS:
        return rd_batch(r, lim, item_task, &m->u.tasks);
    case TASKQ_MSG_DONE:
        return rd_batch(r, lim, item_done, &m->u.done);
    case TASKQ_MSG_ABANDON:
        return rd_batch(r, lim, item_abandon, &m->u.abandon);
    case TASKQ_MSG_FAILED:
        if ((rc = rd_u64(r, &m->u.failed.req_id)) < 0 ||
            (rc = rd_u64(r, &m->u.failed.after)) < 0)
            return rc;
        return rd_u32(r, 1, lim->max_batch, &m->u.failed.limit);
    case TASKQ_MSG_FAILED_REPLY:
        if ((rc = rd_u64(r, &m->u.failed_reply.req_id)) < 0)
            return rc;
        return rd_list(r, lim, item_failed, lim->max_batch, 0, UINT32_MAX,
                       &m->u.failed_reply.jobs);
    default: /* TASKQ_MSG_RETRY: the type was checked by the caller */
        if ((rc = rd_u64(r, &m->u.retry.req_id)) < 0)
            return rc;
        return rd_u64(r, &m->u.retry.job_id);
    }
}

/* The structure of a whole frame (len > 0): one complete array and nothing
 * after it.  No payload can sit deeper than FRAME_LEVELS + max_depth, and
 * no protocol array deeper than PROTO_LEVELS. */
static int check_frame(const uint8_t *buf, size_t len, uint32_t max_depth)
{
    rd_t r = {buf, buf + len};
    if (!((buf[0] >= 0x90 && buf[0] <= 0x9f) || buf[0] == 0xdc || buf[0] == 0xdd))
        return ERR(MALFORMED);
    uint32_t levels = depth_limit(max_depth) + FRAME_LEVELS;
    int rc = rd_skip(&r, levels > PROTO_LEVELS ? levels : PROTO_LEVELS);
    if (rc < 0)
        return rc;
    return r.p == r.end ? 0 : ERR(MALFORMED);
}

/* The message type if the frame starts [1, type, ...] with a known type,
 * else 0. */
static uint8_t peek_type(const uint8_t *buf, size_t len)
{
    rd_t r = {buf, buf + len};
    hdr_t h;
    uint64_t v;
    if (rd_hdr(&r, &h) < 0 || h.kind != K_ARRAY || h.n < 2 ||
        rd_uint(&r, TASKQ_PROTO_VERSION, TASKQ_PROTO_VERSION, &v) < 0 ||
        rd_uint(&r, TASKQ_MSG_MIN, TASKQ_MSG_MAX, &v) < 0)
        return 0;
    return (uint8_t)v;
}

uint64_t taskq_msg_ref(const void *buf, size_t len)
{
    rd_t r = {buf, (const uint8_t *)buf + len};
    hdr_t h;
    uint64_t type, ref;
    if (rd_hdr(&r, &h) < 0 || h.kind != K_ARRAY || h.n < 3 ||
        rd_uint(&r, TASKQ_PROTO_VERSION, TASKQ_PROTO_VERSION, &type) < 0 ||
        rd_uint(&r, TASKQ_MSG_MIN, TASKQ_MSG_MAX, &type) < 0 ||
        (type != TASKQ_MSG_SUBMIT && type != TASKQ_MSG_STATS && type != TASKQ_MSG_FAILED &&
         type != TASKQ_MSG_RETRY) ||
        rd_u64(&r, &ref) < 0)
        return 0;
    return ref;
}

static int decode(const uint8_t *buf, size_t len, const taskq_limits_t *lim, taskq_msg_t *m)
{
    hdr_t h;
    uint64_t v;
    int rc;

    if (len > lim->max_frame)
        return ERR(TOO_BIG);
    if (len == 0)
        return ERR(TRUNCATED);
    rd_t r = {buf, buf + len};
    if ((rc = check_frame(buf, len, lim->max_depth)) < 0 || (rc = rd_hdr(&r, &h)) < 0)
        return rc;
    if (h.n == 0)
        return ERR(MALFORMED);
    if (rd_uint(&r, TASKQ_PROTO_VERSION, TASKQ_PROTO_VERSION, &v) < 0)
        return ERR(VERSION);
    if (h.n < 2)
        return ERR(MALFORMED);
    if (rd_uint(&r, TASKQ_MSG_MIN, TASKQ_MSG_MAX, &v) < 0)
        return ERR(UNKNOWN_TYPE);
    m->type = (uint8_t)v;
    if (h.n != msg_fields[m->type])
        return ERR(MALFORMED);
    return dec_fields(&r, lim, m);
}

int taskq_msg_decode(const void *buf, size_t len, const taskq_limits_t *lim,
                     taskq_msg_t *ret, uint8_t *ret_type)
{
    taskq_limits_t defaults;
    taskq_msg_t m = {0};

    if (!lim) {
        taskq_limits_default(&defaults);
        lim = &defaults;
    }
    int rc = decode(buf, len, lim, &m);
    if (rc == 0)
        *ret = m;
    if (ret_type && rc != ERR(TRUNCATED))
        *ret_type = rc == 0 ? m.type : peek_type(buf, len);
    return rc;
}

/* ---- Iterators and helpers --------------------------------------------- */

/* Items were checked against the decoder's limits already; re-reading them
 * only needs the shape. */
static const taskq_limits_t no_limits = {
    .max_frame = UINT32_MAX,
    .max_name = UINT32_MAX,
    .max_text = UINT32_MAX,
    .max_batch = UINT32_MAX,
    .max_list = UINT32_MAX,
    .max_depth = DEPTH_CAP,
};

static int iter_next(taskq_iter_t *it, item_fn *fn, void *ret)
{
    if (it->left == 0)
        return 0;
    rd_t r = {it->p, it->end};
    int rc = fn(&r, &no_limits, ret);
    if (rc < 0)
        return rc;
    it->p = r.p;
    it->left--;
    return 1;
}

int taskq_iter_str(taskq_iter_t *it, taskq_span_t *ret)
{
    return iter_next(it, item_name, ret);
}

int taskq_iter_u64(taskq_iter_t *it, uint64_t *ret)
{
    return iter_next(it, item_job, ret);
}

int taskq_iter_submit(taskq_iter_t *it, taskq_submit_item_t *ret)
{
    return iter_next(it, item_submit, ret);
}

int taskq_iter_result(taskq_iter_t *it, taskq_result_item_t *ret)
{
    return iter_next(it, item_result, ret);
}

int taskq_iter_task(taskq_iter_t *it, taskq_task_item_t *ret)
{
    return iter_next(it, item_task, ret);
}

int taskq_iter_done(taskq_iter_t *it, taskq_done_item_t *ret)
{
    return iter_next(it, item_done, ret);
}

int taskq_iter_abandon(taskq_iter_t *it, taskq_abandon_item_t *ret)
{
    return iter_next(it, item_abandon, ret);
}

int taskq_iter_failed(taskq_iter_t *it, taskq_failed_item_t *ret)
{
    return iter_next(it, item_failed, ret);
}

int taskq_iter_history(taskq_iter_t *it, taskq_history_item_t *ret)
{
    return iter_next(it, item_history, ret);
}

int taskq_span_str(taskq_span_t obj, taskq_span_t *ret)
{
    taskq_span_t text;
    if (obj.len == 0)
        return ERR(BAD_FIELD);
    rd_t r = {obj.ptr, obj.ptr + obj.len};
    if (rd_str(&r, UINT32_MAX, false, &text) < 0 || r.p != r.end)
        return ERR(BAD_FIELD);
    *ret = text;
    return 0;
}

int taskq_object_check(const void *buf, size_t len, uint32_t max_depth)
{
    if (len == 0)
        return ERR(TRUNCATED);
    rd_t r = {buf, (const uint8_t *)buf + len};
    int rc = rd_skip(&r, depth_limit(max_depth));
    if (rc < 0)
        return rc;
    return r.p == r.end ? 0 : ERR(MALFORMED);
}
