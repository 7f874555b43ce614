/*
 * conns.c - connection accounting from the ROUTER's socket monitor, the
 * connection limits, and what a received message says about its
 * connection (descriptor, CURVE key).
 */
#include "conns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

#include "log.h"

enum {
    CONN_NONE = 0,    /* no connection on this descriptor (that we know of) */
    CONN_WAITING = 1, /* accepted, no valid HELLO yet */
    CONN_HELLO = 2,   /* said a valid HELLO */
    CONN_DROPPED = 3, /* shut down by us, its disconnect not yet seen */
    CONN_DOOMED = 4,  /* too many malformed messages: dropped at the next sweep */
};

#define MONITOR_EP "inproc://taskqd-connections"
#define EVENTS_PER_SERVE 1024
#define DOOM_DELAY_MS 100 /* time for the last ERROR to go out before a drop */

/* A signal while ZeroMQ processes a socket's pending commands, before the
 * call does anything, gives EINTR: these calls are made again. */
static int monitor(void *sock)
{
    int rc, tries = 0;
    while ((rc = zmq_socket_monitor(sock, MONITOR_EP,
                                    ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED)) < 0 &&
           errno == EINTR && ++tries < 100)
        ;
    return rc;
}

static int connect_events(void *mon)
{
    int rc, tries = 0;
    while ((rc = zmq_connect(mon, MONITOR_EP)) < 0 && errno == EINTR && ++tries < 100)
        ;
    return rc;
}

int tqd_conns_open(tqd_conns_t *c, void *zctx, void *sock, uint32_t handshake_ms,
                   uint32_t max_connections, uint32_t max_malformed)
{
    memset(c, 0, sizeof *c);
    c->handshake_ms = handshake_ms;
    c->max_connections = max_connections;
    c->max_malformed = max_malformed;
    /* No high-water mark on the event pipe: a lost event would leave the
     * count of open connections wrong for good.  ZeroMQ's own handshake
     * timer is a backstop a second behind the sweep, which does the
     * dropping (and counting). */
    c->next_due = UINT64_MAX;
    int ivl = (int)handshake_ms + 1000, zero = 0;
    int rc = zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl);
    if (rc == 0)
        rc = monitor(sock);
    if (rc == 0 && (!(c->mon = zmq_socket(zctx, ZMQ_PAIR)) ||
                    zmq_setsockopt(c->mon, ZMQ_RCVHWM, &zero, sizeof zero) < 0 ||
                    zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
                    connect_events(c->mon) < 0))
        rc = -1;
    if (rc < 0) {
        int err = errno;
        TQ_LOG(LOG_ERR, "cannot monitor the connections: %s", zmq_strerror(err));
        tqd_conns_close(c);
        return -err;
    }
    return 0;
}

void *tqd_conns_socket(const tqd_conns_t *c)
{
    return c->mon;
}

/* The entry of descriptor fd, growing the table; NULL if out of memory. */
static tqd_conn_t *entry(tqd_conns_t *c, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= c->cap) {
        size_t ncap = c->cap ? c->cap : 256;
        while (ncap <= (size_t)fd)
            ncap *= 2;
        tqd_conn_t *v = realloc(c->v, ncap * sizeof *v);
        if (!v)
            return NULL;
        memset(v + c->cap, 0, (ncap - c->cap) * sizeof *v);
        c->v = v;
        c->cap = ncap;
    }
    return &c->v[fd];
}

static bool is_open(const tqd_conn_t *e)
{
    return e->state == CONN_WAITING || e->state == CONN_HELLO || e->state == CONN_DOOMED;
}

static void drop(tqd_conns_t *c, int fd, tqd_conn_t *e)
{
    if (is_open(e))
        c->open--;
    e->state = CONN_DROPPED;
    shutdown(fd, SHUT_RDWR);
}

static void on_event(tqd_conns_t *c, uint16_t event, int fd, uint64_t now)
{
    tqd_conn_t *e = entry(c, fd);
    if (event == ZMQ_EVENT_ACCEPTED) {
        if (!e || c->open >= c->max_connections) {
            c->refused++;
            if (e)
                e->state = CONN_DROPPED;
            shutdown(fd, SHUT_RDWR);
            TQ_LOG(LOG_WARNING, "closed a new connection: %zu are open, the most allowed",
                   c->open);
            return;
        }
        *e = (tqd_conn_t){.since = now, .state = CONN_WAITING};
        c->open++;
        if (now + c->handshake_ms < c->next_due)
            c->next_due = now + c->handshake_ms;
    } else if (event == ZMQ_EVENT_DISCONNECTED && e) {
        /* ZeroMQ's own handshake timer (ZMQ_HANDSHAKE_IVL) closes one that
         * never finished the ZMTP or CURVE handshake. */
        if (e->state == CONN_WAITING && now - e->since >= c->handshake_ms)
            c->handshake_timeouts++;
        if (is_open(e))
            c->open--;
        e->state = CONN_NONE;
    }
}

void tqd_conns_serve(tqd_conns_t *c, uint64_t now)
{
    for (int n = 0; n < EVENTS_PER_SERVE; n++) {
        zmq_msg_t head, addr;
        zmq_msg_init(&head);
        if (zmq_msg_recv(&head, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&head);
            return;
        }
        zmq_msg_init(&addr);
        if (zmq_msg_more(&head))
            zmq_msg_recv(&addr, c->mon, 0);
        if (zmq_msg_size(&head) == 6) {
            const uint8_t *p = zmq_msg_data(&head);
            uint16_t event;
            uint32_t value;
            memcpy(&event, p, 2);
            memcpy(&value, p + 2, 4);
            on_event(c, event, (int)value, now);
        }
        zmq_msg_close(&addr);
        zmq_msg_close(&head);
    }
}

void tqd_conns_sweep(tqd_conns_t *c, uint64_t now)
{
    if (now < c->next_due)
        return;
    c->next_due = UINT64_MAX;
    for (size_t fd = 0; fd < c->cap; fd++) {
        tqd_conn_t *e = &c->v[fd];
        if (e->state == CONN_WAITING && now - e->since >= c->handshake_ms) {
            c->handshake_timeouts++;
            drop(c, (int)fd, e);
            TQ_LOG(LOG_INFO, "dropped a connection that said no HELLO within %u ms",
                   c->handshake_ms);
        } else if (e->state == CONN_DOOMED && now - e->since >= DOOM_DELAY_MS) {
            drop(c, (int)fd, e);
        } else if (e->state == CONN_WAITING || e->state == CONN_DOOMED) {
            uint64_t due = e->since + (e->state == CONN_WAITING ? c->handshake_ms : DOOM_DELAY_MS);
            if (due < c->next_due)
                c->next_due = due;
        }
    }
}

int tqd_conns_fd(const void *msg)
{
    return msg ? zmq_msg_get((zmq_msg_t *)msg, ZMQ_SRCFD) : -1;
}

bool tqd_conns_key(const void *msg, uint8_t key[32])
{
    const char *user = msg ? zmq_msg_gets((zmq_msg_t *)msg, "User-Id") : NULL;
    return user && strlen(user) == 40 && zmq_z85_decode(key, user) != NULL;
}

void tqd_conns_hello(tqd_conns_t *c, int fd)
{
    if (fd >= 0 && (size_t)fd < c->cap && c->v[fd].state == CONN_WAITING)
        c->v[fd].state = CONN_HELLO;
}

int tqd_conns_malformed(tqd_conns_t *c, int fd, uint64_t now)
{
    if (fd < 0 || (size_t)fd >= c->cap)
        return 0;
    tqd_conn_t *e = &c->v[fd];
    if (e->state == CONN_DOOMED)
        return 2;
    if (e->state != CONN_WAITING && e->state != CONN_HELLO)
        return 0;
    if (++e->malformed <= c->max_malformed)
        return 0;
    /* Dropped at the next sweep, so that the ERROR saying why goes out
     * first. */
    c->malformed_drops++;
    e->state = CONN_DOOMED;
    e->since = now;
    if (now + DOOM_DELAY_MS < c->next_due)
        c->next_due = now + DOOM_DELAY_MS;
    TQ_LOG(LOG_NOTICE, "dropping a connection after %u malformed messages", c->max_malformed);
    return 1;
}

void tqd_conns_close(tqd_conns_t *c)
{
    if (c->mon)
        zmq_close(c->mon);
    free(c->v);
    memset(c, 0, sizeof *c);
}
