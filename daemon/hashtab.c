/*
 * hashtab.c - open-addressing pointer table with linear probing and
 * backward-shift deletion, plus the daemon's hash functions.
 */
#include "hashtab.h"

#include <errno.h>
#include <stdlib.h>

#define HTAB_MIN_CAP 16

void tqd_htab_init(tqd_htab_t *t)
{
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
}

void tqd_htab_fini(tqd_htab_t *t)
{
    free(t->slots);
    tqd_htab_init(t);
}

static void place(tqd_htab_slot_t *slots, size_t mask, uint64_t hash, void *item)
{
    size_t i = (size_t)hash & mask;
    while (slots[i].item)
        i = (i + 1) & mask;
    slots[i].hash = hash;
    slots[i].item = item;
}

int tqd_htab_reserve(tqd_htab_t *t, size_t n)
{
    size_t cap = t->slots ? t->mask + 1 : 0;
    if (n > SIZE_MAX / 8 - t->count)
        return -ENOMEM;
    size_t need = t->count + n;
    /* Keep the load at most 3/4: probes stay short with linear probing. */
    if (need * 4 <= cap * 3)
        return 0;
    size_t ncap = cap ? cap : HTAB_MIN_CAP;
    while (need * 4 > ncap * 3)
        ncap *= 2;
    tqd_htab_slot_t *slots = calloc(ncap, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        if (t->slots[i].item)
            place(slots, ncap - 1, t->slots[i].hash, t->slots[i].item);
    free(t->slots);
    t->slots = slots;
    t->mask = ncap - 1;
    return 0;
}

int tqd_htab_insert(tqd_htab_t *t, uint64_t hash, void *item)
{
    int rc = tqd_htab_reserve(t, 1);
    if (rc < 0)
        return rc;
    place(t->slots, t->mask, hash, item);
    t->count++;
    return 0;
}

void *tqd_htab_find(const tqd_htab_t *t, uint64_t hash, tqd_htab_eq_fn *eq, const void *key)
{
    if (!t->slots)
        return NULL;
    for (size_t i = (size_t)hash & t->mask; t->slots[i].item; i = (i + 1) & t->mask)
        if (t->slots[i].hash == hash && eq(t->slots[i].item, key))
            return t->slots[i].item;
    return NULL;
}

void tqd_htab_remove(tqd_htab_t *t, uint64_t hash, const void *item)
{
    if (!t->slots)
        return;
    size_t hole = (size_t)hash & t->mask;
    while (t->slots[hole].item != item) {
        if (!t->slots[hole].item)
            return;
        hole = (hole + 1) & t->mask;
    }
    /* Pull back every later item of the run that may live in the hole,
     * i.e. whose home slot is not cyclically in (hole, j]. */
    for (size_t j = (hole + 1) & t->mask; t->slots[j].item; j = (j + 1) & t->mask) {
        size_t home = (size_t)t->slots[j].hash & t->mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    t->slots[hole].item = NULL;
    t->slots[hole].hash = 0;
    t->count--;
}

void *tqd_htab_next(const tqd_htab_t *t, size_t *pos)
{
    if (!t->slots)
        return NULL;
    while (*pos <= t->mask) {
        void *item = t->slots[(*pos)++].item;
        if (item)
            return item;
    }
    return NULL;
}

uint64_t tqd_hash_u64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t tqd_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    /* FNV-1a over the bytes, then a full mix so that the low bits the table
     * uses depend on every byte. */
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3u;
    }
    return tqd_hash_u64(h);
}
