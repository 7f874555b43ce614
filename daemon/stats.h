/*
 * stats.h - the STATS_REPLY map (PROTOCOL.md section 3.7): totals, per-queue
 * counters, per-worker state and the broker's error counters.
 */
#ifndef TQD_STATS_H
#define TQD_STATS_H

#include "broker.h"
#include "taskq_proto.h"

/*
 * Append the statistics map of b to out (one msgpack map).  Returns 0,
 * -EMSGSIZE if the map would exceed b's max_frame (out then holds a partial
 * map and must be reset), or -ENOMEM.
 */
int tqd_stats_encode(const tqd_broker_t *b, taskq_buf_t *out);

#endif /* TQD_STATS_H */
