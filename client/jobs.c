/*
 * jobs.c - the client's job table: job id -> first pending future of that
 * job, an open-addressing hash with linear probing and backward-shift
 * deletion, so lookups and removals never allocate.
 */
#include <stdint.h>
#include <stdlib.h>

#include "client_impl.h"

static size_t job_home(const taskq__jobs_t *t, uint64_t id)
{
    /* Fibonacci hashing spreads the consecutive ids the broker hands out. */
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (t->cap - 1);
}

int taskq__jobs_reserve(taskq__jobs_t *t, size_t n)
{
    if (n * 2 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < n * 2)
        cap *= 2;
    taskq__job_slot_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return TASKQ_ENOMEM;
    taskq__jobs_t grown = {slots, cap, 0};
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].id)
            taskq__jobs_insert(&grown, t->slots[i].id, t->slots[i].f);
    }
    free(t->slots);
    *t = grown;
    return 0;
}

/* The index of id's slot, or SIZE_MAX. */
static size_t job_index(const taskq__jobs_t *t, uint64_t id)
{
    if (!t->cap || !id)
        return SIZE_MAX;
    for (size_t i = job_home(t, id);; i = (i + 1) & (t->cap - 1)) {
        if (t->slots[i].id == id)
            return i;
        if (!t->slots[i].id)
            return SIZE_MAX;
    }
}

taskq_future_t **taskq__jobs_find(const taskq__jobs_t *t, uint64_t id)
{
    size_t i = job_index(t, id);
    return i == SIZE_MAX ? NULL : &t->slots[i].f;
}

void taskq__jobs_insert(taskq__jobs_t *t, uint64_t id, taskq_future_t *f)
{
    size_t i = job_home(t, id);
    while (t->slots[i].id)
        i = (i + 1) & (t->cap - 1);
    t->slots[i].id = id;
    t->slots[i].f = f;
    t->count++;
}

void taskq__jobs_remove(taskq__jobs_t *t, uint64_t id)
{
    size_t hole = job_index(t, id);
    if (hole == SIZE_MAX)
        return;
    size_t mask = t->cap - 1;
    /* Move back every later entry of the cluster whose home position does
     * not lie cyclically in (hole, j], so probes never meet a gap early. */
    for (size_t j = (hole + 1) & mask; t->slots[j].id; j = (j + 1) & mask) {
        size_t home = job_home(t, t->slots[j].id);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].id = 0;
    t->slots[hole].f = NULL;
    t->count--;
}

void taskq__jobs_fini(taskq__jobs_t *t)
{
    free(t->slots);
    *t = (taskq__jobs_t){0};
}
