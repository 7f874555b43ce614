/*
 * hashtab.h - an open-addressing hash table of pointers (linear probing,
 * backward-shift deletion, no tombstones), and the hash functions the
 * daemon uses.  The caller computes hashes and says how an item matches a
 * key, so one table type indexes jobs, lanes, flows, clients and peers.
 * Lookups never allocate.
 */
#ifndef TQD_HASHTAB_H
#define TQD_HASHTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tqd_htab_slot {
    uint64_t hash; /* the item's hash, kept to probe and to move it */
    void *item;    /* NULL: empty slot */
} tqd_htab_slot_t;

/* Zero-initialise (or tqd_htab_init); free with tqd_htab_fini. */
typedef struct tqd_htab {
    tqd_htab_slot_t *slots; /* capacity mask+1, a power of two; NULL when empty */
    size_t mask;            /* capacity - 1 */
    size_t count;           /* items stored */
} tqd_htab_t;

/* true if item has the key the caller looks for. */
typedef bool tqd_htab_eq_fn(const void *item, const void *key);

void tqd_htab_init(tqd_htab_t *t);
/* Free the slots (not the items). */
void tqd_htab_fini(tqd_htab_t *t);

/*
 * Make room for n more items so that the next n inserts cannot fail.
 * Returns 0 or -ENOMEM.
 */
int tqd_htab_reserve(tqd_htab_t *t, size_t n);

/*
 * Add item (not NULL) under hash.  The table does not check for an equal
 * key: the caller looks up first.  Returns 0 or -ENOMEM.
 */
int tqd_htab_insert(tqd_htab_t *t, uint64_t hash, void *item);

/* The first item under hash for which eq(item, key) holds, or NULL. */
void *tqd_htab_find(const tqd_htab_t *t, uint64_t hash, tqd_htab_eq_fn *eq, const void *key);

/* Remove exactly item (stored under hash); nothing if it is not there. */
void tqd_htab_remove(tqd_htab_t *t, uint64_t hash, const void *item);

/*
 * Iterate: start with *pos = 0; each call returns the next item, or NULL at
 * the end.  The table must not change during the iteration.
 */
void *tqd_htab_next(const tqd_htab_t *t, size_t *pos);

/* SplitMix64 of x: a bijective 64-bit mix, also the per-job seed formula. */
uint64_t tqd_hash_u64(uint64_t x);

/* Hash of n bytes at p; seed varies the function (per process, say). */
uint64_t tqd_hash_bytes(const void *p, size_t n, uint64_t seed);

#endif /* TQD_HASHTAB_H */
