/*
 * outbox.h - the broker's outgoing side: sending one encoded frame,
 * ERROR replies, heartbeats, and the batches each turn owes (ACCEPTED,
 * RESULT per client, ABANDON and TASKS per worker, BYE at shutdown).
 * Everything encodes into b->out, so each call overwrites it.
 */
#ifndef TQD_OUTBOX_H
#define TQD_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/*
 * Send b->out, which the encoder that returned enc_rc just wrote, to the
 * connection rid (rid_len 0: none).  Returns 0, -EHOSTUNREACH if that
 * connection is gone (counted unroutable), or another negative errno
 * (logged).
 */
int tqd_outbox_send(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, int enc_rc);

/*
 * Refuse a message from connection rid, whose peer is p (NULL: unknown):
 * count it malformed, log it and answer ERROR (code, ref, text).
 */
void tqd_outbox_refuse(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const tqd_peer_t *p,
                       uint32_t code, uint64_t ref, const char *text);

/* tqd_outbox_refuse for a message from the known peer p. */
void tqd_outbox_refuse_peer(tqd_broker_t *b, tqd_peer_t *p, uint32_t code, uint64_t ref,
                            const char *text);

/* Send p a HEARTBEAT.  Returns as tqd_outbox_send. */
int tqd_outbox_heartbeat(tqd_broker_t *b, const tqd_peer_t *p);

/* List w for this turn's flush: it has ABANDON or TASKS items pending. */
void tqd_outbox_want_worker(tqd_broker_t *b, tqd_worker_t *w);

/*
 * Owe c the RESULT item of job (unknown: answer UNKNOWN) and list c for
 * the flush.  Out of memory is logged; the outcome then stays for WATCH.
 */
void tqd_outbox_owe(tqd_broker_t *b, tqd_client_t *c, uint64_t job, bool unknown);

/*
 * Send the turn's batches: ACCEPTED replies, then (unless the last commit
 * failed, when they wait) the RESULTs owed to clients, then each listed
 * worker's ABANDON and TASKS, recording those attempts in the store and
 * arming their run limits.  Workers found unreachable leave (freed).
 */
void tqd_outbox_flush(tqd_broker_t *b);

/* Send BYE "shutdown" to every connected peer and tell systemd. */
void tqd_outbox_bye(tqd_broker_t *b);

#endif /* TQD_OUTBOX_H */
