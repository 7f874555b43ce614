/*
 * broker.h - the broker context (socket, scheduler, peer tables, timers,
 * store, counters) and its event loop.  One thread runs everything in
 * daemon/; the context is passed explicitly to every part.
 */
#ifndef TQD_BROKER_H
#define TQD_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "clients.h"
#include "conns.h"
#include "hashtab.h"
#include "queue.h"
#include "store.h"
#include "taskq_proto.h"
#include "timers.h"
#include "workers.h"

#define TQD_MAX_BINDS 16    /* --bind options */
#define TQD_MAX_WORKER_USERS 16 /* --worker-user options */
#define TQD_MAX_PEERS 10000 /* client and worker records at once */
#define TQD_DEFAULT_DB "./taskq-data/taskq.db" /* --db when not given */

/* The broker's settings (see the option table in main.c). */
typedef struct tqd_config {
    const char *binds[TQD_MAX_BINDS]; /* endpoints to bind */
    size_t n_binds;                   /* entries of binds */
    const char *ready_file;           /* where to write bound endpoints, or NULL */
    const char *db_path;              /* SQLite database (unless memory) */
    bool memory;                      /* keep tasks in memory only */
    tqd_sync_t sync;                  /* SQLite synchronous level */
    uint32_t heartbeat_ms;            /* heartbeat interval */
    uint32_t liveness;                /* missed heartbeats before a peer is gone */
    uint32_t max_queued;              /* queued tasks, broker-wide */
    uint32_t max_retained;            /* finished outcomes kept, broker-wide */
    uint32_t max_frame;               /* largest frame accepted */
    uint32_t result_ttl_s;            /* retention of unacknowledged outcomes */
    const char *curve_secret;         /* the broker's CURVE secret key file, or NULL */
    tqd_auth_dirs_t allow;            /* allow-list directories (with curve_secret) */
    bool insecure;                    /* allow plain TCP beyond loopback */
    uint32_t ipc_mode;                /* mode of ipc:// socket files */
    const char *ipc_group;            /* group of ipc:// socket files, or NULL */
    uint32_t client_max_queued;       /* unfinished tasks per client */
    uint32_t client_max_bytes;        /* argument bytes of a client's unfinished tasks */
    uint32_t handshake_ms;            /* time a connection has to say a valid HELLO */
    uint32_t max_connections;         /* connections open at once */
    uint32_t max_malformed;           /* malformed messages before a connection is dropped */
    int64_t ipc_gid;                  /* group id of ipc_group, resolved by the caller */
    const char *worker_users[TQD_MAX_WORKER_USERS]; /* local users trusted as workers */
    size_t n_worker_users;            /* entries of worker_users */
    uint32_t worker_uids[TQD_MAX_WORKER_USERS]; /* their uids, resolved by the caller */
    void (*reload)(void *arg);        /* on SIGHUP, before the allow-lists; or NULL */
    void *reload_arg;                 /* its argument */
} tqd_config_t;

/* An ACCEPTED reply owed once the turn's commit succeeds. */
typedef struct tqd_accept {
    uint64_t client_id; /* the submitting client */
    uint64_t req_id;    /* the SUBMIT's (or RETRY's) req_id */
    uint64_t first_job; /* id of its first task */
    uint32_t count;     /* tasks in it */
    bool repeat;        /* a SUBMIT accepted before, or a RETRY: nothing to unwind */
} tqd_accept_t;

typedef struct tqd_broker {
    tqd_config_t cfg;           /* settings */
    taskq_limits_t limits;      /* decoder limits (max_frame from cfg) */
    void *zctx;                 /* ZeroMQ context */
    void *sock;                 /* the ROUTER socket */
    tqd_store_t *store;         /* where tasks are kept */
    tqd_auth_t *auth;           /* allow-lists and ZAP handler; NULL without CURVE */
    tqd_conns_t conns;          /* connections and their limits */
    tqd_workers_t workers;      /* connected workers */
    tqd_clients_t clients;      /* known clients */
    tqd_queue_t queue;          /* jobs and scheduling */
    tqd_timers_t timers;        /* deadlines */
    tqd_htab_t peers;           /* routing id -> tqd_peer_t (client or worker) */
    uint64_t seed;              /* hash seed of this process */
    uint64_t now;               /* clock of this loop turn (ms) */
    uint64_t started;           /* clock at startup (ms) */
    taskq_buf_t out;            /* frame being encoded */
    taskq_buf_t map;            /* scratch: STATS map or FAILED_REPLY items */
    taskq_span_t *names;        /* HELLO name scratch, 2 * max_list entries */
    tqd_accept_t *accepted;     /* ACCEPTED owed after this turn's commit */
    size_t n_accepted;          /* entries of accepted */
    size_t cap_accepted;        /* allocated entries of accepted */
    tqd_client_t **out_clients; /* clients owed RESULTs (NULL: gone); TQD_MAX_PEERS */
    tqd_worker_t **out_workers; /* workers owed TASKS/ABANDON (NULL: gone); same */
    size_t n_out_clients;       /* entries of out_clients */
    size_t n_out_workers;       /* entries of out_workers */
    int64_t wall_offset;        /* added to now to get Unix time (ms) */
    uint64_t notify_ms;         /* interval of service-manager reports; 0: none */
    uint64_t notify_at;         /* clock of the next report */
    bool watchdog;              /* the reports include WATCHDOG=1 */
    bool commit_failed;         /* the last commit failed: outcomes wait */
    bool store_failing;         /* no write succeeded since a commit failed */
    uint64_t malformed;         /* refused or undecodable messages */
    uint64_t stale;             /* outcomes of superseded attempts dropped */
    uint64_t unroutable;        /* messages to peers that had gone */
    uint64_t evicted;           /* outcomes forgotten early (max_retained) */
    uint64_t storage_errors;    /* commits that failed */
    uint64_t duplicates;        /* SUBMITs answered from the SUBMIT index */
    uint64_t denied;            /* requests refused or ignored for want of permission */
    uint64_t client_limits;     /* SUBMITs refused by a per-client cap */
} tqd_broker_t;

/*
 * Create a broker: open the store, create the ROUTER socket with its
 * options, arm the heartbeat timer.  Nothing is bound yet.  Returns 0 and
 * *ret (free with tqd_broker_destroy), or a negative errno (logged).
 */
int tqd_broker_new(const tqd_config_t *cfg, tqd_broker_t **ret);

/*
 * Bind endpoint and write the endpoint actually bound (ZMQ_LAST_ENDPOINT,
 * with the port a '*' picked) to ret, a buffer of cap bytes.  An ipc://
 * socket file gets cfg.ipc_mode and cfg.ipc_group.  Returns 0 or a
 * negative errno from zmq_bind, chmod or chown (logged by the caller).
 */
int tqd_broker_bind(tqd_broker_t *b, const char *endpoint, char *ret, size_t cap);

/* Load the store's jobs.  Returns 0 or a negative errno (logged). */
int tqd_broker_recover(tqd_broker_t *b);

/*
 * The rest of a loop turn once its frames are read (tqd_handle_frame):
 * fire due timers, dispatch, commit, flush what is owed, expire outcomes,
 * all at the clock b->now.  tqd_broker_run calls it every turn; a test can
 * drive the broker turn by turn with it.
 */
void tqd_broker_turn_end(tqd_broker_t *b);

/*
 * Serve until SIGTERM or SIGINT, then send BYE "shutdown" to every peer.
 * Returns 0, or a negative errno if polling the socket failed (logged).
 */
int tqd_broker_run(tqd_broker_t *b);

/* Close the socket (short linger) and free everything; NULL is fine. */
void tqd_broker_destroy(tqd_broker_t **b);

#endif /* TQD_BROKER_H */
