/*
 * taskq_impl.h - declarations shared by every part of libtaskq (client and
 * worker): the monotonic clock, DEALER socket set-up and sending, host name,
 * and the mapping of wire error codes to TASKQ_E* codes.  Nothing here is
 * exported from the library.
 */
#ifndef TASKQ_IMPL_H
#define TASKQ_IMPL_H

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
 * Open a DEALER socket in ctx with the library's options (no high-water
 * marks, linger 0) and connect it to endpoint.  Returns 0, TASKQ_EINVAL
 * (endpoint not understood by ZeroMQ) or TASKQ_ESYS.
 */
int taskq__socket_open(void *ctx, const char *endpoint, void **ret_sock);

/* Close a socket after letting queued messages go out for up to linger_ms. */
void taskq__socket_close(void **sock, int linger_ms);

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
