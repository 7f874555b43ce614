/*
 * stats.h - the STATS_REPLY map (PROTOCOL.md section 3.7): totals, per-queue
 * counters, per-worker state, the broker's error counters, and what of
 * them a client that is not an admin may see.
 */
#ifndef TQD_STATS_H
#define TQD_STATS_H

#include "broker.h"
#include "taskq_proto.h"

/*
 * Append the statistics map of b, as client c may see it, to out (one
 * msgpack map): an admin sees everything; another client the totals, its
 * own tasks' counts ("mine") and no per-queue or per-worker lists.
 * Returns 0, -EMSGSIZE if the map would exceed b's max_frame (out then
 * holds a partial map and must be reset), or -ENOMEM.
 */
int tqd_stats_encode(const tqd_broker_t *b, const tqd_client_t *c, taskq_buf_t *out);

#endif /* TQD_STATS_H */
