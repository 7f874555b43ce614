/*
 * broker.c - the broker context's life cycle and its event loop.  Each
 * turn: read a bounded number of frames (handlers.c), fire due timers,
 * dispatch, commit the store, flush the turn's batches (outbox.c), expire
 * outcomes.  So everything a turn sends was committed first, and nothing
 * changes a dispatched job before its TASKS goes out.  It also owns the
 * routing index, recovery, and peers coming and going.
 */
#include "broker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "broker_impl.h"
#include "handlers.h"
#include "keys.h"
#include "log.h"
#include "os.h"
#include "outbox.h"

#define READ_BATCH 256 /* frames handled per loop turn at most */
#define LINGER_MS  200 /* how long closing the socket waits for output */
/* Output lists: every peer at most once, plus peers freed in this turn
 * (at most one per frame handled) whose entries are left NULL. */
#define OUT_CAP (TQD_MAX_PEERS + READ_BATCH)

/* ---- Routing ids -------------------------------------------------------- */

typedef struct rid_key {
    const uint8_t *p;
    size_t n;
} rid_key_t;

static bool peer_has_rid(const void *item, const void *key)
{
    const tqd_peer_t *p = item;
    const rid_key_t *k = key;
    return p->rid_len == k->n && memcmp(p->rid, k->p, k->n) == 0;
}

tqd_peer_t *tqd_route_find(const tqd_broker_t *b, const uint8_t *rid, size_t n)
{
    rid_key_t key = {rid, n};
    return tqd_htab_find(&b->peers, tqd_hash_bytes(rid, n, b->seed), peer_has_rid, &key);
}

void tqd_route_add(tqd_broker_t *b, tqd_peer_t *p, const uint8_t *rid, size_t n)
{
    memcpy(p->rid, rid, n);
    p->rid_len = (uint8_t)n;
    tqd_htab_insert(&b->peers, tqd_hash_bytes(rid, n, b->seed), p);
}

void tqd_route_drop(tqd_broker_t *b, tqd_peer_t *p)
{
    if (!p->rid_len)
        return;
    tqd_htab_remove(&b->peers, tqd_hash_bytes(p->rid, p->rid_len, b->seed), p);
    p->rid_len = 0;
}

/* ---- Peers coming and going ---------------------------------------------- */

static void client_free(tqd_broker_t *b, tqd_client_t *c)
{
    tqd_route_drop(b, &c->peer);
    if (c->peer.out_slot)
        b->out_clients[c->peer.out_slot - 1] = NULL;
    tqd_clients_remove(&b->clients, c);
}

/* The client's connection is gone; its record stays while it has jobs
 * running or queued, so their outcomes can be counted and found again. */
static void client_disconnect(tqd_broker_t *b, tqd_client_t *c)
{
    tqd_route_drop(b, &c->peer);
    if (c->active == 0)
        client_free(b, c);
}

void tqd_worker_leave(tqd_broker_t *b, tqd_worker_t *w, const char *why, bool said_bye)
{
    TQ_LOG(LOG_NOTICE, TQD_PEER_FMT " left (%s) holding %" PRIu32 " attempts",
           TQD_PEER_ARGS(&w->peer), why, w->used);
    tqd_queue_worker_gone(&b->queue, w, said_bye, b->now);
    tqd_route_drop(b, &w->peer);
    if (w->peer.out_slot)
        b->out_workers[w->peer.out_slot - 1] = NULL;
    tqd_workers_remove(&b->workers, w);
    tqd_worker_destroy(&w);
}

void tqd_peer_leave(tqd_broker_t *b, tqd_peer_t *p, const char *why)
{
    if (p->role == TASKQ_ROLE_WORKER) {
        tqd_worker_leave(b, (tqd_worker_t *)p, why, false);
    } else {
        TQ_LOG(LOG_INFO, TQD_PEER_FMT " left (%s)", TQD_PEER_ARGS(p), why);
        client_disconnect(b, (tqd_client_t *)p);
    }
}

/* ---- Outcomes ------------------------------------------------------------ */

/* The queue changed a job: the store records it for this turn's commit. */
static void on_changed(void *ctx, tqd_job_t *job)
{
    tqd_broker_t *b = ctx;
    tqd_store_changed(b->store, job);
}

/* The queue finished a job: owe it to its clients. */
static void on_finished(void *ctx, tqd_job_t *job)
{
    tqd_broker_t *b = ctx;
    tqd_client_t *c = tqd_clients_find(&b->clients, job->client_id);
    tqd_usage_add(&b->clients, job->owner, -1, -(int64_t)job->arg_len);
    if (c) {
        c->active--;
        if (c->peer.rid_len)
            tqd_outbox_owe(b, c, job->id, false);
        else if (c->active == 0)
            client_free(b, c);
    }
    for (uint16_t i = 0; i < job->n_watchers; i++) {
        tqd_client_t *w = tqd_clients_find(&b->clients, job->watchers[i]);
        if (w && w->peer.rid_len)
            tqd_outbox_owe(b, w, job->id, false);
    }
}

/* Dispatch gave a worker a job: it is owed a TASKS batch this turn. */
static void on_assigned(void *ctx, tqd_worker_t *w, tqd_job_t *job)
{
    (void)job;
    tqd_outbox_want_worker(ctx, w);
}

static void read_frames(tqd_broker_t *b)
{
    for (int n = 0; n < READ_BATCH; n++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, b->sock, ZMQ_DONTWAIT) < 0) {
            if (errno != EAGAIN && errno != EINTR)
                TQ_LOG(LOG_ERR, "cannot receive: %s", zmq_strerror(errno));
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        bool have_body = zmq_msg_more(&rid) && zmq_msg_recv(&body, b->sock, ZMQ_DONTWAIT) >= 0;
        bool multipart = have_body && zmq_msg_more(&body);
        if (multipart) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            while (zmq_msg_recv(&extra, b->sock, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&extra))
                ;
            zmq_msg_close(&extra);
        }
        size_t rid_len = zmq_msg_size(&rid);
        if (have_body && rid_len > 0 && rid_len <= TQD_PEER_ID_MAX)
            tqd_handle_frame(b, zmq_msg_data(&rid), rid_len, zmq_msg_data(&body),
                             zmq_msg_size(&body), multipart, &body);
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

/* ---- Timers -------------------------------------------------------------- */

static void tick(tqd_broker_t *b)
{
    uint64_t silence = (uint64_t)b->cfg.liveness * b->cfg.heartbeat_ms;
    /* Backwards: removal moves the last record into the hole. */
    for (size_t i = b->workers.len; i-- > 0;) {
        tqd_worker_t *w = b->workers.v[i];
        if (b->now - w->peer.last_seen > silence)
            tqd_worker_leave(b, w, "silent", false);
        else if (tqd_outbox_heartbeat(b, &w->peer) == -EHOSTUNREACH)
            tqd_worker_leave(b, w, "connection closed", false);
    }
    for (size_t i = b->clients.len; i-- > 0;) {
        tqd_client_t *c = b->clients.v[i];
        if (c->active == 0 && !c->peer.out_slot && b->now - c->peer.last_seen > silence) {
            TQ_LOG(LOG_DEBUG, TQD_PEER_FMT " forgotten (silent, no jobs)", TQD_PEER_ARGS(&c->peer));
            client_free(b, c);
        }
    }
    tqd_queue_sweep(&b->queue);
    /* Cannot fail: the tick entry was just popped, so the heap has room. */
    if (tqd_timers_add(&b->timers, b->now + b->cfg.heartbeat_ms, TQD_TIMER_TICK, 0, 0) < 0)
        TQ_LOG(LOG_ERR, "cannot arm the heartbeat timer");
}

static void run_limit(tqd_broker_t *b, uint64_t job_id, uint32_t delivery)
{
    tqd_job_t *job = tqd_queue_find(&b->queue, job_id);
    if (!job || job->state != TQD_JOB_RUNNING || job->deliveries != delivery)
        return;
    if (tqd_worker_owe_abandon(job->worker, job_id, job->attempt) == 0)
        tqd_outbox_want_worker(b, job->worker);
    else
        TQ_LOG(LOG_ERR, "out of memory: no ABANDON for job %" PRIu64, job_id);
    char why[128];
    snprintf(why, sizeof why, "run limit of %" PRIu32 " ms expired on attempt %u of %u",
             job->timeout_ms, (unsigned)job->attempt, (unsigned)job->max_attempts);
    TQ_LOG(LOG_INFO, "job %" PRIu64 ": %s", job_id, why);
    tqd_queue_supersede(&b->queue, job, TASKQ_STATUS_TIMEDOUT, why, b->now);
}

static bool timer_live(void *ctx, const tqd_timer_t *t)
{
    const tqd_broker_t *b = ctx;
    if (t->kind != TQD_TIMER_RUN_LIMIT)
        return true;
    const tqd_job_t *job = tqd_queue_find(&b->queue, t->id);
    return job && job->state == TQD_JOB_RUNNING && job->deliveries == t->gen;
}

/* Run-limit entries of finished attempts stay until they fire; drop them
 * in bulk once they outnumber the running jobs. */
static void compact_timers(tqd_broker_t *b)
{
    if (b->timers.len > 2 * b->queue.running + 64)
        tqd_timers_compact(&b->timers, timer_live, b);
}

static void fire_timers(tqd_broker_t *b)
{
    tqd_timer_t t;
    while (tqd_timers_pop(&b->timers, b->now, &t)) {
        if (t.kind == TQD_TIMER_TICK)
            tick(b);
        else
            run_limit(b, t.id, t.gen);
    }
}

/* ---- Commit and outcomes -------------------------------------------------- */

static void commit(tqd_broker_t *b)
{
    int rc = b->store->ops->commit(b->store);
    if (rc >= 0) {
        b->commit_failed = false;
        if (rc == 0 && b->store_failing)
            TQ_LOG(LOG_NOTICE, "the %s store commits again", b->store->ops->name);
        b->store_failing = rc == TQD_STORE_UNPROVEN;
        return;
    }
    if (!b->store_failing)
        TQ_LOG(LOG_ERR, "the %s store cannot commit: %s; refusing tasks", b->store->ops->name,
                strerror(-rc));
    b->commit_failed = b->store_failing = true;
    b->storage_errors++;
    for (size_t i = 0; i < b->n_accepted; i++) {
        const tqd_accept_t *a = &b->accepted[i];
        uint32_t dropped = a->repeat ? 0 : tqd_submit_unwind(b, a->first_job, a->count);
        tqd_client_t *c = tqd_clients_find(&b->clients, a->client_id);
        if (c) {
            c->active -= dropped;
            tqd_outbox_refuse_peer(b, &c->peer, TASKQ_PERR_STORAGE, a->req_id,
                                   "the broker cannot store tasks right now");
        }
    }
    b->n_accepted = 0;
}

/* Forget outcomes past their retention time, and the oldest ones beyond
 * max_retained. */
static void expire_outcomes(tqd_broker_t *b)
{
    uint64_t ttl = (uint64_t)b->cfg.result_ttl_s * 1000u;
    tqd_job_t *job;
    while ((job = b->queue.oldest) &&
           (b->now - job->finished_ms >= ttl || b->queue.retained > b->cfg.max_retained)) {
        if (b->now - job->finished_ms < ttl)
            b->evicted++;
        tqd_store_forgotten(b->store, job);
        tqd_queue_forget(&b->queue, job);
    }
}

/* ---- Loop ---------------------------------------------------------------- */

/* Milliseconds the next poll may wait: 0 while work is pending, else up to
 * the earliest deadline (there always is one: the heartbeat). */
static long poll_timeout(const tqd_broker_t *b)
{
    if (b->n_accepted || b->n_out_workers || (b->n_out_clients && !b->commit_failed) ||
        (b->queue.dispatch_needed && b->queue.queued))
        return 0;
    uint64_t when;
    if (!tqd_timers_next(&b->timers, &when))
        return -1;
    if (b->notify_ms && b->notify_at < when)
        when = b->notify_at;
    if (b->conns.next_due < when)
        when = b->conns.next_due;
    return when <= b->now ? 0 : (long)(when - b->now);
}

/* Tell the service manager how things stand, and that the loop turns. */
static void report(tqd_broker_t *b)
{
    if (!b->notify_ms || b->now < b->notify_at)
        return;
    b->notify_at = b->now + b->notify_ms;
    size_t clients = 0;
    for (size_t i = 0; i < b->clients.len; i++)
        clients += b->clients.v[i]->peer.rid_len > 0;
    char state[256];
    snprintf(state, sizeof state,
             "%sSTATUS=serving: %" PRIu64 " queued, %" PRIu64 " running, %zu workers, %zu clients%s",
             b->watchdog ? "WATCHDOG=1\n" : "", b->queue.queued, b->queue.running,
             b->workers.len, clients, b->store_failing ? "; the store is failing" : "");
    tqd_os_notify(state);
}

void tqd_broker_turn_end(tqd_broker_t *b)
{
    fire_timers(b);
    tqd_queue_dispatch(&b->queue, b->now);
    commit(b);
    tqd_outbox_flush(b);
    compact_timers(b);
    expire_outcomes(b);
}

int tqd_broker_run(tqd_broker_t *b)
{
    while (!tqd_os_stopping()) {
        zmq_pollitem_t items[4] = {{.socket = b->sock, .events = ZMQ_POLLIN},
                                   {.socket = tqd_conns_socket(&b->conns), .events = ZMQ_POLLIN},
                                   {.fd = tqd_os_signal_fd(), .events = ZMQ_POLLIN},
                                   {.socket = b->auth ? tqd_auth_socket(b->auth) : NULL,
                                    .events = ZMQ_POLLIN}};
        int n = b->auth ? 4 : 3;
        int rc = zmq_poll(items, n, poll_timeout(b));
        if (rc < 0 && errno != EINTR) {
            int err = errno;
            TQ_LOG(LOG_ERR, "cannot poll the socket: %s", zmq_strerror(err));
            return -err;
        }
        b->now = tqd_os_now_ms();
        if (tqd_os_reload_requested()) {
            tqd_os_notify("RELOADING=1");
            if (b->cfg.reload)
                b->cfg.reload(b->cfg.reload_arg);
            if (b->auth && tqd_auth_reload(b->auth) == 0)
                tqd_auth_recheck(b);
            tqd_os_notify("READY=1");
        }
        if (b->auth)
            tqd_auth_serve(b->auth);
        /* Connection events first: a connection's accept is then always
         * seen before its first message. */
        tqd_conns_serve(&b->conns, b->now);
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            read_frames(b);
        tqd_broker_turn_end(b);
        tqd_conns_sweep(&b->conns, b->now);
        report(b);
    }
    tqd_outbox_bye(b);
    return 0;
}

/* ---- Life cycle ------------------------------------------------------------ */

static int set_int(void *sock, int opt, int value)
{
    return zmq_setsockopt(sock, opt, &value, sizeof value);
}

static int open_store(tqd_broker_t *b)
{
    if (b->cfg.memory) {
        int rc = tqd_store_mem_open(&b->store);
        if (rc < 0)
            TQ_LOG(LOG_ERR, "cannot open the memory store: %s", strerror(-rc));
        return rc;
    }
    int rc = tqd_os_make_parent(b->cfg.db_path);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot create the directory of %s: %s", b->cfg.db_path, strerror(-rc));
        return rc;
    }
    char err[512];
    rc = tqd_store_sqlite_open(b->cfg.db_path, b->cfg.sync, b->wall_offset, &b->store, err,
                               sizeof err);
    if (rc < 0)
        TQ_LOG(LOG_ERR, "%s", err);
    return rc;
}

/* With a secret key: CURVE server on every endpoint, and the ZAP handler
 * with the allow-lists deciding who gets in.  0 or -errno (logged). */
static int curve_setup(tqd_broker_t *b)
{
    if (!b->cfg.curve_secret)
        return 0;
    char secret[41], err[512];
    int rc = tq_key_read(b->cfg.curve_secret, secret, err, sizeof err);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "--curve-secret: %s", err);
        return rc;
    }
    rc = tqd_auth_open(b->zctx, &b->cfg.allow, &b->auth);
    if (rc == 0 && (set_int(b->sock, ZMQ_CURVE_SERVER, 1) < 0 ||
                    zmq_setsockopt(b->sock, ZMQ_CURVE_SECRETKEY, secret, 40) < 0)) {
        rc = -errno;
        TQ_LOG(LOG_ERR, "cannot enable CURVE: %s", zmq_strerror(errno));
    }
    memset(secret, 0, sizeof secret);
    return rc;
}

int tqd_broker_new(const tqd_config_t *cfg, tqd_broker_t **ret)
{
    tqd_broker_t *b = calloc(1, sizeof *b);
    if (!b) {
        TQ_LOG(LOG_ERR, "out of memory");
        return -ENOMEM;
    }
    b->cfg = *cfg;
    taskq_limits_default(&b->limits);
    b->limits.max_frame = cfg->max_frame;
    tqd_workers_init(&b->workers);
    tqd_clients_init(&b->clients);
    tqd_timers_init(&b->timers);
    tqd_htab_init(&b->peers);
    b->now = b->started = tqd_os_now_ms();
    b->wall_offset = tqd_os_wall_offset_ms();
    b->notify_ms = tqd_os_notify_interval_ms();
    b->watchdog = tqd_os_watchdog_enabled();

    int rc = open_store(b);
    if (rc < 0)
        goto fail;
    rc = tqd_os_random(&b->seed, sizeof b->seed);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot read random bytes: %s", strerror(-rc));
        goto fail;
    }
    tqd_queue_events_t ev = {
        .finished = on_finished, .assigned = on_assigned, .changed = on_changed, .ctx = b};
    tqd_queue_init(&b->queue, &b->workers, b->seed, &ev);
    b->queue.wall_offset = b->wall_offset;
    b->names = calloc(2 * (size_t)b->limits.max_list, sizeof *b->names);
    b->out_clients = calloc(OUT_CAP, sizeof *b->out_clients);
    b->out_workers = calloc(OUT_CAP, sizeof *b->out_workers);
    rc = -ENOMEM;
    if (!b->names || !b->out_clients || !b->out_workers ||
        tqd_timers_add(&b->timers, b->now + cfg->heartbeat_ms, TQD_TIMER_TICK, 0, 0) < 0) {
        TQ_LOG(LOG_ERR, "out of memory");
        goto fail;
    }

    b->zctx = zmq_ctx_new();
    b->sock = b->zctx ? zmq_socket(b->zctx, ZMQ_ROUTER) : NULL;
    int64_t maxmsg = 2 * (int64_t)cfg->max_frame;
    if (!b->sock || set_int(b->sock, ZMQ_ROUTER_MANDATORY, 1) < 0 ||
        set_int(b->sock, ZMQ_SNDHWM, 0) < 0 || set_int(b->sock, ZMQ_RCVHWM, 0) < 0 ||
        set_int(b->sock, ZMQ_LINGER, LINGER_MS) < 0 ||
        zmq_setsockopt(b->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0) {
        rc = -errno;
        TQ_LOG(LOG_ERR, "cannot create the ROUTER socket: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = tqd_conns_open(&b->conns, b->zctx, b->sock, cfg->handshake_ms,
                             cfg->max_connections, cfg->max_malformed)) < 0 ||
        (rc = curve_setup(b)) < 0)
        goto fail;
    *ret = b;
    return 0;
fail:
    tqd_broker_destroy(&b);
    return rc;
}

int tqd_broker_bind(tqd_broker_t *b, const char *endpoint, char *ret, size_t cap)
{
    bool ipc = strncmp(endpoint, "ipc://", 6) == 0 && endpoint[6] != '@';
    /* The socket file is created with the umask: make it no more open
     * than ipc_mode from the start, then set the mode and group. */
    mode_t old = ipc ? umask(~(mode_t)b->cfg.ipc_mode & 0777) : 0;
    /* A signal while ZeroMQ processes its socket's commands, before it
     * does anything, gives EINTR: binding again is safe. */
    int rc, tries = 0;
    while ((rc = zmq_bind(b->sock, endpoint) < 0 ? -errno : 0) == -EINTR && ++tries < 100 &&
           !tqd_os_stopping())
        ;
    if (ipc)
        umask(old);
    size_t len = cap;
    if (rc == 0 && zmq_getsockopt(b->sock, ZMQ_LAST_ENDPOINT, ret, &len) < 0)
        rc = -errno;
    if (rc == 0 && ipc) {
        const char *path = ret + 6;
        if (chmod(path, (mode_t)b->cfg.ipc_mode) < 0)
            rc = -errno;
        else if (b->cfg.ipc_group && chown(path, (uid_t)-1, (gid_t)b->cfg.ipc_gid) < 0)
            rc = -errno;
    }
    return rc;
}

int tqd_broker_recover(tqd_broker_t *b)
{
    b->now = tqd_os_now_ms();
    int rc = b->store->ops->recover(b->store, &b->queue, b->now);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot load the %s store: %s", b->store->ops->name, strerror(-rc));
        return rc;
    }
    /* Each client with jobs queued or running gets its record back, as it
     * had before the stop: its outcomes are counted, and found again when
     * it reconnects. */
    size_t pos = 0;
    tqd_job_t *job;
    while ((job = tqd_htab_next(&b->queue.jobs, &pos))) {
        if (job->state == TQD_JOB_FINISHED)
            continue;
        tqd_client_t *c = tqd_clients_find(&b->clients, job->client_id);
        if (!c && (rc = tqd_clients_add(&b->clients, job->client_id, &c)) < 0) {
            TQ_LOG(LOG_ERR, "out of memory loading the %s store", b->store->ops->name);
            return rc;
        }
        c->active++;
        c->owner = job->owner; /* only the same identity takes the record back */
        if ((rc = tqd_usage_add(&b->clients, job->owner, 1, job->arg_len)) < 0) {
            TQ_LOG(LOG_ERR, "out of memory loading the %s store", b->store->ops->name);
            return rc;
        }
    }
    rc = b->store->ops->commit(b->store);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "cannot write the %s store: %s", b->store->ops->name, strerror(-rc));
        return rc;
    }
    return 0;
}

void tqd_broker_destroy(tqd_broker_t **pb)
{
    tqd_broker_t *b = pb ? *pb : NULL;
    if (!b)
        return;
    tqd_conns_close(&b->conns);
    tqd_auth_close(&b->auth);
    if (b->sock)
        zmq_close(b->sock);
    if (b->zctx)
        zmq_ctx_term(b->zctx);
    tqd_queue_fini(&b->queue);
    tqd_workers_fini(&b->workers);
    tqd_clients_fini(&b->clients);
    tqd_timers_fini(&b->timers);
    tqd_htab_fini(&b->peers);
    taskq_buf_fini(&b->out);
    taskq_buf_fini(&b->map);
    free(b->names);
    free(b->accepted);
    free(b->out_clients);
    free(b->out_workers);
    tqd_store_close(&b->store);
    free(b);
    *pb = NULL;
}
