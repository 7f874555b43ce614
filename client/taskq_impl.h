/*
 * taskq_impl.h - declarations shared by every part of libtaskq (client and
 * worker): the monotonic clock, DEALER socket set-up (with CURVE keys and
 * a monitor of the handshake) and sending, host name, and the mapping of
 * wire error codes to TASKQ_E* codes.  Nothing here is exported from the
 * library.
 */
#ifndef TASKQ_IMPL_H
#define TASKQ_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "taskq.h"
#include "taskq_proto.h"

/* The defaults a peer uses until the broker's WELCOME says otherwise. */
#define TASKQ__HEARTBEAT_MS 1000
#define TASKQ__LIVENESS 3
#define TASKQ__HOST_MAX 256

/* Monotonic time in microseconds. */
static inline int64_t taskq__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Monotonic time in milliseconds. */
static inline int64_t taskq__now_ms(void)
{
    return taskq__now_us() / 1000;
}

/*
 * CURVE keys of a client or worker (opts.curve_server_key, opts.curve_key),
 * in Z85 (40 characters and a NUL).  on is false when neither is given.
 */
typedef struct taskq__curve {
    bool on;
    char server[41];     /* the broker's public key */
    char public_key[41]; /* ours, derived from secret */
    char secret[41];     /* ours */
} taskq__curve_t;

/*
 * Fill k from the two options (a Z85 key, or the path of a key file each):
 * both NULL, CURVE off; both set, CURVE on.  Returns 0, or TASKQ_EINVAL
 * when only one is set or a key cannot be read.
 */
int taskq__curve_init(taskq__curve_t *k, const char *server_key, const char *secret_key);

/* Forget the keys (the secret is overwritten). */
void taskq__curve_wipe(taskq__curve_t *k);

/*
 * Open a DEALER socket in ctx with the library's options (no high-water
 * marks, linger 0) and, if curve->on, the CURVE keys, and connect it to
 * endpoint.  With CURVE, *ret_mon gets a PAIR socket receiving the
 * DEALER's handshake events (zmq_socket_monitor on an inproc endpoint
 * named after owner and seq, which must differ between the sockets of one
 * context), so that a broker refusing the key is told apart from a broker
 * that does not answer; without CURVE *ret_mon is NULL and nothing else
 * changes.  Returns 0, TASKQ_EINVAL (endpoint not understood by ZeroMQ) or
 * TASKQ_ESYS.
 */
int taskq__socket_open(void *ctx, const char *endpoint, const taskq__curve_t *curve,
                       const void *owner, unsigned seq, void **ret_sock, void **ret_mon);

/* Close a socket (and its monitor, if any) after letting queued messages
 * go out for up to linger_ms.  Accepts NULL sockets. */
void taskq__socket_close(void **sock, void **mon, int linger_ms);

/* What the handshake events of a socket said (taskq__monitor_read). */
typedef enum taskq__hs {
    TASKQ__HS_NONE = 0,   /* nothing of note */
    TASKQ__HS_OK,         /* a handshake succeeded */
    TASKQ__HS_DROPPED,    /* a connection closed during the handshake, with
                             no reason given (a broker that does not know
                             our server key closes it so) */
    TASKQ__HS_DENIED,     /* the broker refused our key, or does not use
                             CURVE: reconnecting would not help */
} taskq__hs_t;

/*
 * Read the events waiting on mon (from taskq__socket_open; NULL: none)
 * without blocking and return the most telling one (DENIED over DROPPED
 * over OK); for DENIED, a text for people goes to text (cap bytes).
 */
taskq__hs_t taskq__monitor_read(void *mon, char *text, size_t cap);

/* Send one frame without blocking.  Returns 0 or TASKQ_ESYS. */
int taskq__send(void *sock, const taskq_buf_t *frame);

/*
 * Like taskq__send, but a frame of TASKQ_ZEROCOPY_MIN bytes or more is
 * handed to ZeroMQ without a copy: its bytes then belong to the message
 * and *frame is left empty (the next encode allocates anew).
 */
int taskq__send_take(void *sock, taskq_buf_t *frame);

/* Receive one frame without blocking into msg (initialised by the caller).
 * Returns 1 when a frame was read, 0 when none is waiting, TASKQ_ESYS. */
int taskq__recv(void *sock, void *zmq_msg);

/* The host name (NUL-terminated, at most max_name bytes) into buf. */
void taskq__hostname(char buf[TASKQ__HOST_MAX]);

/* The TASKQ_E* code for a wire error code (TASKQ_PERR_*) of an ERROR. */
int taskq__perr_code(uint32_t perr);

#endif /* TASKQ_IMPL_H */
