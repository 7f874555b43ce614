/*
 * conns.h - the connections under the broker's ROUTER socket, which
 * ZeroMQ does not show: a socket monitor reports each accept and
 * disconnect, and a message names its connection by descriptor.  Owns
 * the limits on connections: how many may be open, how long one may take
 * to say a valid HELLO, how many malformed messages it may send.  A
 * connection is dropped by shutting its descriptor down, which ZeroMQ
 * sees as the peer leaving.
 */
#ifndef TQD_CONNS_H
#define TQD_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tqd_conn {
    uint64_t since;     /* broker clock (ms) when it was accepted */
    uint16_t malformed; /* malformed messages it sent */
    uint8_t state;      /* CONN_* in conns.c */
} tqd_conn_t;

typedef struct tqd_conns {
    void *mon;                   /* PAIR socket receiving the monitor's events */
    tqd_conn_t *v;               /* by descriptor */
    size_t cap;                  /* entries of v */
    size_t open;                 /* connections open now */
    uint64_t next_due;           /* clock of the next deadline; UINT64_MAX: none */
    uint32_t handshake_ms;       /* time to a valid HELLO */
    uint32_t max_connections;    /* open at once */
    uint32_t max_malformed;      /* malformed messages before a drop */
    uint64_t handshake_timeouts; /* dropped for saying no HELLO in time */
    uint64_t refused;            /* closed at accept: too many open */
    uint64_t malformed_drops;    /* dropped after too many malformed messages */
} tqd_conns_t;

/*
 * Watch the connections of sock (a ROUTER in zctx, not yet bound) with the
 * given limits.  Returns 0 or a negative errno (logged).
 */
int tqd_conns_open(tqd_conns_t *c, void *zctx, void *sock, uint32_t handshake_ms,
                   uint32_t max_connections, uint32_t max_malformed);

/* The monitor socket, to poll for ZMQ_POLLIN. */
void *tqd_conns_socket(const tqd_conns_t *c);

/* Take in the connection events waiting (non-blocking), closing at once a
 * connection beyond the maximum. */
void tqd_conns_serve(tqd_conns_t *c, uint64_t now);

/* Drop the connections that have not said a valid HELLO within
 * handshake_ms of now, and those that sent too many malformed messages;
 * c->next_due says when to call it again (the loop polls until then). */
void tqd_conns_sweep(tqd_conns_t *c, uint64_t now);

/* The descriptor of the connection a received message (a zmq_msg_t *)
 * came from, or -1 (msg NULL, or ZeroMQ cannot tell). */
int tqd_conns_fd(const void *msg);

/* The CURVE public key (32 bytes) the ZAP handler admitted for the
 * connection msg came from.  false when there is none (no CURVE). */
bool tqd_conns_key(const void *msg, uint8_t key[32]);

/* Connection fd said a valid HELLO: the handshake deadline is met. */
void tqd_conns_hello(tqd_conns_t *c, int fd);

/*
 * Connection fd sent a malformed message.  Returns 0 (answer it as usual),
 * 1 (that was one too many: say so; the connection is dropped 100 ms
 * later) or 2 (the connection is already being dropped: say nothing).
 */
int tqd_conns_malformed(tqd_conns_t *c, int fd, uint64_t now);

/* Stop monitoring and free everything. */
void tqd_conns_close(tqd_conns_t *c);

#endif /* TQD_CONNS_H */
