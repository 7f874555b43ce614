/*
 * stats.c - encodes the STATS_REPLY map with msgpack-c's packer writing
 * into a taskq_buf_t.
 */
#include "stats.h"

#include <errno.h>
#include <msgpack.h>
#include <string.h>

#include "os.h"
#include "taskq.h"

/* Room kept for the STATS_REPLY header around the map. */
#define REPLY_HEADROOM 32

static int pack_str(msgpack_packer *pk, const void *p, size_t n)
{
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, p, n) ? -ENOMEM : 0;
}

static int pack_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    return pack_str(pk, key, strlen(key)) || msgpack_pack_uint64(pk, v) ? -ENOMEM : 0;
}

static int pack_names(msgpack_packer *pk, const char *key, const taskq_span_t *names, uint32_t n)
{
    if (pack_str(pk, key, strlen(key)) || msgpack_pack_array(pk, n))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        if (pack_str(pk, names[i].ptr, names[i].len))
            return -ENOMEM;
    return 0;
}

static int pack_queue(msgpack_packer *pk, const tqd_qinfo_t *qi)
{
    if (msgpack_pack_map(pk, 6) || pack_str(pk, "name", 4) ||
        pack_str(pk, qi->name, qi->name_len) || pack_uint(pk, "queued", qi->queued) ||
        pack_uint(pk, "running", qi->running) || pack_uint(pk, "done", qi->done) ||
        pack_uint(pk, "failed", qi->failed) || pack_uint(pk, "retried", qi->retried))
        return -ENOMEM;
    return 0;
}

static int pack_worker(msgpack_packer *pk, const tqd_worker_t *w, uint64_t now)
{
    const tqd_peer_t *p = &w->peer;
    if (msgpack_pack_map(pk, 9) || pack_str(pk, "name", 4) || pack_str(pk, p->name, p->name_len) ||
        pack_str(pk, "host", 4) || pack_str(pk, p->host, p->host_len) ||
        pack_uint(pk, "pid", p->pid) || pack_uint(pk, "credit", w->credit) ||
        pack_uint(pk, "running", w->used) || pack_uint(pk, "done", w->done) ||
        pack_names(pk, "functions", w->functions, w->n_functions) ||
        pack_names(pk, "queues", w->queues, w->n_queues) ||
        pack_uint(pk, "last_seen_ms", now - p->last_seen))
        return -ENOMEM;
    return 0;
}

/* The "mine" map: c's own jobs, queued, running and finished. */
static int pack_mine(msgpack_packer *pk, const tqd_broker_t *b, const tqd_client_t *c)
{
    uint64_t n[4] = {0};
    size_t pos = 0;
    const tqd_job_t *job;
    while ((job = tqd_htab_next(&b->queue.jobs, &pos)))
        if (job->owner == c->owner && job->state <= TQD_JOB_FINISHED)
            n[job->state]++;
    return pack_str(pk, "mine", 4) || msgpack_pack_map(pk, 3) ||
                   pack_uint(pk, "queued", n[TQD_JOB_QUEUED]) ||
                   pack_uint(pk, "running", n[TQD_JOB_RUNNING]) ||
                   pack_uint(pk, "retained", n[TQD_JOB_FINISHED])
               ? -ENOMEM
               : 0;
}

int tqd_stats_encode(const tqd_broker_t *b, const tqd_client_t *c, taskq_buf_t *out)
{
    const tqd_queue_t *q = &b->queue;
    bool all = c->admin;
    size_t start = out->len, limit = b->cfg.max_frame - REPLY_HEADROOM;
    size_t clients = 0;
    for (size_t i = 0; i < b->clients.len; i++)
        clients += b->clients.v[i]->peer.rid_len > 0;

    msgpack_packer pk;
    msgpack_packer_init(&pk, out, taskq_buf_write);
    const char *store = b->store->ops->name;
    uint64_t user_us, sys_us, rss;
    tqd_os_usage(&user_us, &sys_us, &rss);
    if (msgpack_pack_map(&pk, 37) || pack_str(&pk, "version", 7) ||
        pack_str(&pk, TASKQ_VERSION_STRING, strlen(TASKQ_VERSION_STRING)) ||
        pack_uint(&pk, "uptime_ms", b->now - b->started) ||
        pack_uint(&pk, "store_id", b->store->id) || pack_uint(&pk, "queued", q->queued) ||
        pack_uint(&pk, "running", q->running) || pack_uint(&pk, "done", q->done) ||
        pack_uint(&pk, "failed", q->failed) || pack_uint(&pk, "retried", q->retried) ||
        pack_uint(&pk, "cancelled", q->cancelled) || pack_uint(&pk, "lost", q->lost) ||
        pack_uint(&pk, "timedout", q->timedout) || pack_uint(&pk, "malformed", b->malformed) ||
        pack_uint(&pk, "stale", b->stale) || pack_uint(&pk, "unroutable", b->unroutable) ||
        pack_uint(&pk, "retained", q->retained) || pack_uint(&pk, "evicted", b->evicted) ||
        pack_uint(&pk, "clients", clients) || pack_uint(&pk, "workers", b->workers.len) ||
        pack_str(&pk, "store", 5) || pack_str(&pk, store, strlen(store)) ||
        pack_uint(&pk, "store_bytes", tqd_store_size(b->store)) ||
        pack_str(&pk, "store_ok", 8) ||
        (b->store_failing ? msgpack_pack_false(&pk) : msgpack_pack_true(&pk)) ||
        pack_uint(&pk, "storage_errors", b->storage_errors) ||
        pack_uint(&pk, "duplicates", b->duplicates) || pack_uint(&pk, "cpu_user_us", user_us) ||
        pack_uint(&pk, "cpu_sys_us", sys_us) || pack_uint(&pk, "rss_bytes", rss) ||
        pack_uint(&pk, "connections", b->conns.open) ||
        pack_uint(&pk, "handshake_timeouts", b->conns.handshake_timeouts) ||
        pack_uint(&pk, "connections_refused", b->conns.refused) ||
        pack_uint(&pk, "malformed_disconnects", b->conns.malformed_drops) ||
        pack_uint(&pk, "keys_refused", tqd_auth_refused(b->auth)) ||
        pack_uint(&pk, "denied", b->denied) || pack_uint(&pk, "client_limits", b->client_limits) ||
        pack_str(&pk, "admin", 5) || (all ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk)) ||
        pack_mine(&pk, b, c) < 0)
        return -ENOMEM;

    size_t n_queues = all ? q->n_queues : 0, n_workers = all ? b->workers.len : 0;
    if (pack_str(&pk, "queues", 6) || msgpack_pack_array(&pk, n_queues))
        return -ENOMEM;
    for (size_t i = 0; i < n_queues; i++) {
        if (pack_queue(&pk, q->queues[i]) < 0)
            return -ENOMEM;
        if (out->len - start > limit)
            return -EMSGSIZE;
    }
    if (pack_str(&pk, "worker_list", 11) || msgpack_pack_array(&pk, n_workers))
        return -ENOMEM;
    for (size_t i = 0; i < n_workers; i++) {
        if (pack_worker(&pk, b->workers.v[i], b->now) < 0)
            return -ENOMEM;
        if (out->len - start > limit)
            return -EMSGSIZE;
    }
    return out->len - start > limit ? -EMSGSIZE : 0;
}
