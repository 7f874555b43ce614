/*
 * clients.h - client records and their table, found by client_id (which
 * survives reconnects) or by position; and what each owner's unfinished
 * jobs take.  A record holds the routing id of
 * the client's current connection, how many of its jobs are unfinished,
 * and the RESULT items the broker owes it this turn.  No ZeroMQ here.
 */
#ifndef TQD_CLIENTS_H
#define TQD_CLIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashtab.h"
#include "peer.h"

/* One RESULT item owed: the job's outcome, or UNKNOWN for an unknown id. */
typedef struct tqd_owed {
    uint64_t job; /* job id */
    bool unknown; /* true: answer UNKNOWN (the broker has no such job) */
} tqd_owed_t;

typedef struct tqd_client {
    tqd_peer_t peer;   /* first member: the routing index points here */
    uint64_t id;       /* client_id from HELLO, never 0 */
    uint64_t owner;    /* owner of what it submits (auth.h); 0 until its HELLO */
    uint32_t active;   /* its jobs that are queued or running */
    bool admin;        /* sees and acts on every job */
    bool exec_ok;      /* may submit exec tasks */
    uint32_t n_owed;   /* entries of owed */
    uint32_t cap_owed; /* allocated entries of owed */
    tqd_owed_t *owed;  /* RESULT items owed this turn, in order */
    size_t index;      /* position in its table */
} tqd_client_t;

/* What one owner's unfinished jobs take, whatever client submitted them:
 * the per-client caps count these. */
typedef struct tqd_usage {
    uint64_t owner; /* auth.h */
    uint64_t bytes; /* argument bytes of its queued and running jobs */
    uint64_t tasks; /* its queued and running jobs */
} tqd_usage_t;

typedef struct tqd_clients {
    tqd_htab_t by_id; /* client_id -> record */
    tqd_htab_t usage; /* owner -> tqd_usage_t, while it has unfinished jobs */
    tqd_client_t **v; /* every record, for sweeps */
    size_t len;       /* entries of v */
    size_t cap;       /* allocated entries of v */
} tqd_clients_t;

/* Zero-initialise (or call this); tqd_clients_fini frees every record. */
void tqd_clients_init(tqd_clients_t *t);
void tqd_clients_fini(tqd_clients_t *t);

/*
 * Create the record of client id (not already in the table) and list it;
 * the table owns it.  Returns 0 and the record in *ret, or -ENOMEM.
 */
int tqd_clients_add(tqd_clients_t *t, uint64_t id, tqd_client_t **ret);

/* The record of client id, or NULL. */
tqd_client_t *tqd_clients_find(const tqd_clients_t *t, uint64_t id);

/* Take c out of the table and free it. */
void tqd_clients_remove(tqd_clients_t *t, tqd_client_t *c);

/* The usage of owner, or NULL if it has no unfinished jobs. */
const tqd_usage_t *tqd_usage_find(const tqd_clients_t *t, uint64_t owner);

/* Count tasks jobs of owner with bytes of arguments as unfinished (or,
 * negative, as finished).  Returns 0, or -ENOMEM (then nothing changed;
 * only an increase can fail). */
int tqd_usage_add(tqd_clients_t *t, uint64_t owner, int64_t tasks, int64_t bytes);

/* Owe c a RESULT item.  Returns 0 or -ENOMEM. */
int tqd_client_owe(tqd_client_t *c, uint64_t job, bool unknown);

#endif /* TQD_CLIENTS_H */
