/*
 * timers.h - the broker's deadlines: a binary min-heap of (when, kind, id,
 * gen) entries, never removed early.  A stale entry is recognised when it
 * fires because its gen no longer matches (for a run limit, gen is the
 * job's delivery count); tqd_timers_compact() drops stale entries in bulk.
 */
#ifndef TQD_TIMERS_H
#define TQD_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tqd_timer {
    uint64_t when; /* deadline, broker clock (ms) */
    uint64_t id;   /* what it is about (a job id, say), caller-defined */
    uint32_t gen;  /* generation it was set for, compared when it fires */
    uint32_t kind; /* caller-defined kind */
} tqd_timer_t;

/* Zero-initialise (or tqd_timers_init); free with tqd_timers_fini. */
typedef struct tqd_timers {
    tqd_timer_t *heap; /* heap[0] is the earliest */
    size_t len;        /* entries in use */
    size_t cap;        /* entries allocated */
} tqd_timers_t;

/* true if the entry is still wanted; ctx is the caller's. */
typedef bool tqd_timer_live_fn(void *ctx, const tqd_timer_t *t);

void tqd_timers_init(tqd_timers_t *h);
void tqd_timers_fini(tqd_timers_t *h);

/* Add a timer.  Returns 0 or -ENOMEM. */
int tqd_timers_add(tqd_timers_t *h, uint64_t when, uint32_t kind, uint64_t id, uint32_t gen);

/* true and *ret_when = the earliest deadline, or false if there is none. */
bool tqd_timers_next(const tqd_timers_t *h, uint64_t *ret_when);

/*
 * If the earliest timer is due (when <= now), remove it, copy it to *ret and
 * return true; otherwise return false.  Timers due at the same time come
 * out in no particular order.
 */
bool tqd_timers_pop(tqd_timers_t *h, uint64_t now, tqd_timer_t *ret);

/* Drop every entry for which live(ctx, entry) is false, in O(len). */
void tqd_timers_compact(tqd_timers_t *h, tqd_timer_live_fn *live, void *ctx);

#endif /* TQD_TIMERS_H */
