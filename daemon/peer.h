/*
 * peer.h - what clients and workers have in common: the routing id of their
 * connection, the identity they announced in HELLO (and the CURVE key they
 * proved), when the broker last heard from them, and their place in the
 * broker's list of peers with output pending.  Both records embed it as
 * their first member.
 */
#ifndef TQD_PEER_H
#define TQD_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "taskq_proto.h"

/* Longest routing id ZeroMQ gives, and longest name or host (max_name). */
#define TQD_PEER_ID_MAX 255

typedef struct tqd_peer {
    uint8_t role;                  /* TASKQ_ROLE_CLIENT or TASKQ_ROLE_WORKER */
    uint8_t rid_len;               /* routing id length; 0: not connected */
    uint8_t name_len;              /* bytes of name */
    uint8_t host_len;              /* bytes of host */
    bool has_key;                  /* connected with CURVE: key is set */
    uint32_t pid;                  /* process id it announced */
    uint64_t last_seen;            /* broker clock (ms) of its last message */
    size_t out_slot;               /* 1 + index in the broker's pending-output list, or 0 */
    uint8_t rid[TQD_PEER_ID_MAX];  /* ZeroMQ routing id of its connection */
    uint8_t name[TQD_PEER_ID_MAX]; /* name from HELLO */
    uint8_t host[TQD_PEER_ID_MAX]; /* host from HELLO */
    uint8_t key[32];               /* its CURVE public key (has_key) */
} tqd_peer_t;

/*
 * Fill the identity of p from a HELLO.  name and host must be at most
 * TQD_PEER_ID_MAX bytes (the decoder's max_name guarantees it); longer
 * ones are cut.  The routing id and the rest are left alone.
 */
static inline void tqd_peer_set(tqd_peer_t *p, uint8_t role, taskq_span_t name, taskq_span_t host,
                                uint32_t pid)
{
    p->role = role;
    p->name_len = (uint8_t)(name.len < TQD_PEER_ID_MAX ? name.len : TQD_PEER_ID_MAX);
    p->host_len = (uint8_t)(host.len < TQD_PEER_ID_MAX ? host.len : TQD_PEER_ID_MAX);
    if (p->name_len)
        memcpy(p->name, name.ptr, p->name_len);
    if (p->host_len)
        memcpy(p->host, host.ptr, p->host_len);
    p->pid = pid;
}

#endif /* TQD_PEER_H */
