/*
 * broker_impl.h - what the parts of the broker (broker.c, handlers.c,
 * outbox.c) share besides the context in broker.h: the peer log format,
 * the timer kinds, and the routing index with peers coming and going.
 */
#ifndef TQD_BROKER_IMPL_H
#define TQD_BROKER_IMPL_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* printf format and arguments naming a peer: "worker name@host[pid]". */
#define TQD_PEER_FMT "%s %.*s@%.*s[%" PRIu32 "]"
#define TQD_PEER_ARGS(p)                                                                           \
    (p)->role == TASKQ_ROLE_WORKER ? "worker" : "client", (int)(p)->name_len,                      \
        (const char *)(p)->name, (int)(p)->host_len, (const char *)(p)->host, (p)->pid

/* Kinds of the broker's timers: the heartbeat tick (one, re-armed each
 * time) and a job's run limit (id: the job, gen: its delivery). */
enum { TQD_TIMER_TICK = 1, TQD_TIMER_RUN_LIMIT = 2 };

/* The peer whose connection has routing id rid (n bytes), or NULL. */
tqd_peer_t *tqd_route_find(const tqd_broker_t *b, const uint8_t *rid, size_t n);

/*
 * Route rid (n bytes, at most TQD_PEER_ID_MAX) to p and copy it into p.
 * The caller reserved room in b->peers (tqd_htab_reserve); cannot fail.
 */
void tqd_route_add(tqd_broker_t *b, tqd_peer_t *p, const uint8_t *rid, size_t n);

/* Stop routing p's connection to p and mark p unconnected; fine if it
 * was not routed. */
void tqd_route_drop(tqd_broker_t *b, tqd_peer_t *p);

/*
 * Worker w left: why says how (logged), said_bye for an orderly goodbye.
 * Its attempts are superseded, its record unrouted and freed: w is
 * invalid afterwards.
 */
void tqd_worker_leave(tqd_broker_t *b, tqd_worker_t *w, const char *why, bool said_bye);

/*
 * Peer p's connection is gone (why is logged).  A worker leaves as with
 * tqd_worker_leave; a client's record stays while it has jobs queued or
 * running, and is freed otherwise.  p may be invalid afterwards.
 */
void tqd_peer_leave(tqd_broker_t *b, tqd_peer_t *p, const char *why);

#endif /* TQD_BROKER_IMPL_H */
