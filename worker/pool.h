/*
 * pool.h - taskq-worker's supervisor side: a pool of slots, each one
 * connection to the broker (a taskq_worker_t run on its own thread) and one
 * executor process that runs the slot's tasks, replaced when it crashes,
 * hangs past a run limit, or has run its share of tasks.
 */
#ifndef TW_POOL_H
#define TW_POOL_H

#include "executor.h"

typedef struct tw_pool tw_pool_t;

/*
 * Create the pool described by cfg (which must outlive it): cfg->procs
 * slots, or the CPUs this process may use less one (at least one).  Starts
 * the first executor and waits for its HELLO to learn the functions the
 * pool serves; a plugin that does not load stops everything here.
 * Returns 0, or the <sysexits.h> code taskq-worker should exit with after
 * logging why (the failed executor's own code, such as EX_CONFIG or
 * EX_SOFTWARE; EX_OSERR).  Main thread, before tw_pool_start().
 */
int tw_pool_new(const tw_config_t *cfg, tw_pool_t **ret_pool);

/*
 * Start every slot: its executor and its connection.  Signals should be
 * blocked in the calling thread first, so that the slots' threads inherit
 * the mask.  Returns 0 or -errno (then call tw_pool_stop() and
 * tw_pool_join()).
 */
int tw_pool_start(tw_pool_t *p);

/* A descriptor that becomes readable when a slot's thread ends; poll it
 * and then look at tw_pool_live().  Owned by the pool. */
int tw_pool_event_fd(const tw_pool_t *p);

/* How many slots' threads still run.  Also empties the event descriptor. */
unsigned tw_pool_live(tw_pool_t *p);

/* How many slots the pool has. */
unsigned tw_pool_size(const tw_pool_t *p);

/* Stop taking tasks: tasks held but not started go back to the broker;
 * running tasks go on.  Each slot ends when its task is done.  Idempotent;
 * any thread. */
void tw_pool_stop(tw_pool_t *p);

/* The grace period is over: kill the executors still running tasks (their
 * tasks are reported for another attempt) so that the slots end. */
void tw_pool_abort(tw_pool_t *p);

/* Kill every executor's process group with SIGKILL, now.  For a process
 * about to exit without tw_pool_join(). */
void tw_pool_kill(tw_pool_t *p);

/*
 * Wait for every slot's thread (after tw_pool_stop(), or after all ended)
 * and end the executors.  Returns 0, or the exit status a slot that ended
 * on its own calls for: EX_USAGE (an endpoint ZeroMQ does not take),
 * EX_NOPERM (the broker refused the pool's CURVE key or its HELLO),
 * EX_UNAVAILABLE (the broker refused the connection otherwise).
 */
int tw_pool_join(tw_pool_t *p);

/* Free a pool that was joined, or never started.  Accepts NULL. */
void tw_pool_destroy(tw_pool_t **p);

#endif /* TW_POOL_H */
