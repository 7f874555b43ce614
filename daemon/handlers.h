/*
 * handlers.h - the broker's incoming side: decoding one frame and
 * handling it by message type and sender role (HELLO, SUBMIT, CANCEL,
 * WATCH, ACK, STATS, DONE, HEARTBEAT, BYE), refusing what is wrong.
 */
#ifndef TQD_HANDLERS_H
#define TQD_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/*
 * Handle one frame (data, len bytes; borrowed) from connection rid;
 * multipart says the peer sent more than one frame, which is refused.
 * msg is the received zmq_msg_t, which tells the connection's descriptor
 * and CURVE key, or NULL (a test feeding bytes: a remote session).
 * Errors are answered with ERROR or logged, never returned.
 */
void tqd_handle_frame(tqd_broker_t *b, const uint8_t *rid, size_t rid_len, const void *data,
                      size_t len, bool multipart, const void *msg);

/*
 * Undo a SUBMIT: drop the still-queued jobs first .. first+count-1
 * (newest first, so their ids are handed out again) and take them out of
 * their owner's usage.  Returns how many were dropped; the caller adjusts
 * the client's active count.
 */
uint32_t tqd_submit_unwind(tqd_broker_t *b, uint64_t first, uint32_t count);

/*
 * The allow-lists were read again: a peer whose key lost the role it
 * connected in is told DENIED and forgotten; clients' admin and exec
 * rights follow their keys.
 */
void tqd_auth_recheck(tqd_broker_t *b);

#endif /* TQD_HANDLERS_H */
