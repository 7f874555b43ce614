/*
 * socket.c - the ZeroMQ DEALER socket as clients and workers use it:
 * options, CURVE keys and the monitor of their handshake, connect, close,
 * non-blocking send and receive; and the host name peers announce in
 * HELLO.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "keys.h"
#include "taskq_impl.h"

int taskq__curve_init(taskq__curve_t *k, const char *server_key, const char *secret_key)
{
    memset(k, 0, sizeof *k);
    if (!server_key && !secret_key)
        return 0;
    if (!server_key || !secret_key || tq_key_read(server_key, k->server, NULL, 0) != 0 ||
        tq_key_read(secret_key, k->secret, NULL, 0) != 0 ||
        tq_key_public(k->secret, k->public_key) != 0) {
        taskq__curve_wipe(k);
        return TASKQ_EINVAL;
    }
    k->on = true;
    return 0;
}

void taskq__curve_wipe(taskq__curve_t *k)
{
    explicit_bzero(k, sizeof *k);
}

/* The handshake events the monitor reports. */
#define MONITOR_EVENTS                                                                  \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

/* Watch s's handshakes: a PAIR socket connected to its monitor. */
static int monitor_open(void *ctx, void *s, const void *owner, unsigned seq, void **ret_mon)
{
    char ep[80];
    snprintf(ep, sizeof ep, "inproc://taskq-monitor-%p-%u", owner, seq);
    if (zmq_socket_monitor(s, ep, MONITOR_EVENTS) != 0)
        return TASKQ_ESYS;
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    if (!mon || zmq_setsockopt(mon, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(mon, ep) != 0) {
        if (mon)
            zmq_close(mon);
        zmq_socket_monitor(s, NULL, 0);
        return TASKQ_ESYS;
    }
    *ret_mon = mon;
    return 0;
}

int taskq__socket_open(void *ctx, const char *endpoint, const taskq__curve_t *curve,
                       const void *owner, unsigned seq, void **ret_sock, void **ret_mon)
{
    *ret_mon = NULL;
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
    /* The keys go on before connect: they apply to connections made after.
     * The monitor is connected before too, so that no event is missed. */
    if (curve->on &&
        (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve->server, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve->public_key, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve->secret, 40) != 0 ||
         monitor_open(ctx, s, owner, seq, ret_mon) != 0)) {
        /* EINVAL here: this ZeroMQ has no CURVE. */
        zmq_close(s);
        return TASKQ_ESYS;
    }
    if (zmq_connect(s, endpoint) != 0) {
        int e = errno;
        taskq__socket_close(&s, ret_mon, 0);
        return e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO ? TASKQ_EINVAL
                                                                           : TASKQ_ESYS;
    }
    *ret_sock = s;
    return 0;
}

void taskq__socket_close(void **sock, void **mon, int linger_ms)
{
    if (*mon) {
        if (*sock)
            zmq_socket_monitor(*sock, NULL, 0);
        zmq_close(*mon);
        *mon = NULL;
    }
    if (!*sock)
        return;
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(*sock);
    *sock = NULL;
}

/* The text of a refused handshake, or NULL if the failure is not one that
 * reconnecting cannot mend. */
static const char *denial_text(uint16_t event, uint32_t value, char *buf, size_t cap)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        if (value == 400)
            return "the broker refused this key";
        snprintf(buf, cap, "the broker could not check this key (ZAP status %u)",
                 (unsigned)value);
        return buf;
    }
    switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "the broker does not use CURVE";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
    case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
        return "the CURVE handshake failed: the broker's key is not the server key given";
    default:
        return NULL;
    }
}

taskq__hs_t taskq__monitor_read(void *mon, char *text, size_t cap)
{
    taskq__hs_t seen = TASKQ__HS_NONE;
    if (!mon)
        return seen;
    zmq_msg_t m;
    zmq_msg_init(&m);
    /* An event is two frames: 6 bytes (uint16_t event, uint32_t value, in
     * host order), then the endpoint. */
    while (taskq__recv(mon, &m) > 0) {
        uint16_t event = 0;
        uint32_t value = 0;
        bool head = zmq_msg_size(&m) == 6;
        if (head) {
            memcpy(&event, zmq_msg_data(&m), 2);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        while (zmq_msg_more(&m) && taskq__recv(mon, &m) > 0)
            continue;
        if (!head)
            continue;
        char buf[96];
        const char *why;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            if (seen == TASKQ__HS_NONE)
                seen = TASKQ__HS_OK;
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            if (seen != TASKQ__HS_DENIED)
                seen = TASKQ__HS_DROPPED;
        } else if ((why = denial_text(event, value, buf, sizeof buf)) != NULL) {
            if (seen != TASKQ__HS_DENIED && cap)
                snprintf(text, cap, "%s", why);
            seen = TASKQ__HS_DENIED;
        }
    }
    zmq_msg_close(&m);
    return seen;
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
