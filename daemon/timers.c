/*
 * timers.c - the binary min-heap of deadlines, keyed by time, with bulk
 * removal of stale entries.
 */
#include "timers.h"

#include <errno.h>
#include <stdlib.h>

void tqd_timers_init(tqd_timers_t *h)
{
    h->heap = NULL;
    h->len = 0;
    h->cap = 0;
}

void tqd_timers_fini(tqd_timers_t *h)
{
    free(h->heap);
    tqd_timers_init(h);
}

static void sift_up(tqd_timer_t *heap, size_t i)
{
    tqd_timer_t t = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent].when <= t.when)
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = t;
}

static void sift_down(tqd_timer_t *heap, size_t len, size_t i)
{
    tqd_timer_t t = heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len)
            break;
        if (c + 1 < len && heap[c + 1].when < heap[c].when)
            c++;
        if (t.when <= heap[c].when)
            break;
        heap[i] = heap[c];
        i = c;
    }
    heap[i] = t;
}

int tqd_timers_add(tqd_timers_t *h, uint64_t when, uint32_t kind, uint64_t id, uint32_t gen)
{
    if (h->len == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        tqd_timer_t *heap = realloc(h->heap, ncap * sizeof *heap);
        if (!heap)
            return -ENOMEM;
        h->heap = heap;
        h->cap = ncap;
    }
    h->heap[h->len] = (tqd_timer_t){.when = when, .id = id, .gen = gen, .kind = kind};
    sift_up(h->heap, h->len++);
    return 0;
}

bool tqd_timers_next(const tqd_timers_t *h, uint64_t *ret_when)
{
    if (h->len == 0)
        return false;
    *ret_when = h->heap[0].when;
    return true;
}

bool tqd_timers_pop(tqd_timers_t *h, uint64_t now, tqd_timer_t *ret)
{
    if (h->len == 0 || h->heap[0].when > now)
        return false;
    *ret = h->heap[0];
    h->heap[0] = h->heap[--h->len];
    if (h->len > 0)
        sift_down(h->heap, h->len, 0);
    return true;
}

void tqd_timers_compact(tqd_timers_t *h, tqd_timer_live_fn *live, void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++)
        if (live(ctx, &h->heap[i]))
            h->heap[n++] = h->heap[i];
    h->len = n;
    /* Floyd's bottom-up heap construction. */
    for (size_t i = n / 2; i-- > 0;)
        sift_down(h->heap, n, i);
}
