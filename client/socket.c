/*
 * socket.c - the ZeroMQ DEALER socket as clients and workers use it:
 * options, connect, close, non-blocking send and receive; and the host name
 * peers announce in HELLO.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "taskq_impl.h"

int taskq__socket_open(void *ctx, const char *endpoint, void **ret_sock)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return TASKQ_ESYS;
    /* Unbounded queues: batches are bounded by the callers, and a message
     * refused by a full queue would be a message lost.  Linger 0: a socket
     * is closed when its peer has gone quiet, and what is still queued is
     * sent again on the next connection. */
    int zero = 0;
    if (zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0) {
        zmq_close(s);
        return TASKQ_ESYS;
    }
    if (zmq_connect(s, endpoint) != 0) {
        int e = errno;
        zmq_close(s);
        return e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO ? TASKQ_EINVAL
                                                                           : TASKQ_ESYS;
    }
    *ret_sock = s;
    return 0;
}

void taskq__socket_close(void **sock, int linger_ms)
{
    if (!*sock)
        return;
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(*sock);
    *sock = NULL;
}

int taskq__send(void *sock, const taskq_buf_t *frame)
{
    while (zmq_send(sock, frame->data, frame->len, ZMQ_DONTWAIT) < 0) {
        if (errno != EINTR)
            return TASKQ_ESYS;
    }
    return 0;
}

static void free_frame(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int taskq__send_take(void *sock, taskq_buf_t *frame)
{
    if (frame->len < TASKQ_ZEROCOPY_MIN)
        return taskq__send(sock, frame);
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, frame->data, frame->len, free_frame, NULL) != 0)
        return taskq__send(sock, frame);
    *frame = (taskq_buf_t){0};
    while (zmq_msg_send(&m, sock, ZMQ_DONTWAIT) < 0) {
        if (errno != EINTR) {
            zmq_msg_close(&m);
            return TASKQ_ESYS;
        }
    }
    return 0;
}

int taskq__recv(void *sock, void *zmq_msg)
{
    for (;;) {
        if (zmq_msg_recv(zmq_msg, sock, ZMQ_DONTWAIT) >= 0)
            return 1;
        if (errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            return TASKQ_ESYS;
    }
}

void taskq__hostname(char buf[TASKQ__HOST_MAX])
{
    if (gethostname(buf, TASKQ__HOST_MAX) != 0 || buf[0] == '\0')
        strcpy(buf, "localhost");
    buf[TASKQ__HOST_MAX - 1] = '\0';
}
