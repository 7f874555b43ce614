/*
 * clients.c - the client table: a hash by client_id plus a vector for
 * sweeps, and each client's list of RESULT items owed this turn.
 */
#include "clients.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void tqd_clients_init(tqd_clients_t *t)
{
    memset(t, 0, sizeof *t);
    tqd_htab_init(&t->by_id);
    tqd_htab_init(&t->usage);
}

void tqd_clients_fini(tqd_clients_t *t)
{
    for (size_t i = 0; i < t->len; i++) {
        free(t->v[i]->owed);
        free(t->v[i]);
    }
    free(t->v);
    size_t pos = 0;
    tqd_usage_t *u;
    while ((u = tqd_htab_next(&t->usage, &pos)))
        free(u);
    tqd_htab_fini(&t->by_id);
    tqd_htab_fini(&t->usage);
    tqd_clients_init(t);
}

static bool usage_of(const void *item, const void *key)
{
    return ((const tqd_usage_t *)item)->owner == *(const uint64_t *)key;
}

const tqd_usage_t *tqd_usage_find(const tqd_clients_t *t, uint64_t owner)
{
    return tqd_htab_find(&t->usage, tqd_hash_u64(owner), usage_of, &owner);
}

int tqd_usage_add(tqd_clients_t *t, uint64_t owner, int64_t tasks, int64_t bytes)
{
    tqd_usage_t *u = tqd_htab_find(&t->usage, tqd_hash_u64(owner), usage_of, &owner);
    if (!u) {
        if (tasks <= 0)
            return 0;
        if (!(u = calloc(1, sizeof *u)))
            return -ENOMEM;
        u->owner = owner;
        if (tqd_htab_insert(&t->usage, tqd_hash_u64(owner), u) < 0) {
            free(u);
            return -ENOMEM;
        }
    }
    u->tasks += (uint64_t)tasks;
    u->bytes += (uint64_t)bytes;
    if (u->tasks == 0) {
        tqd_htab_remove(&t->usage, tqd_hash_u64(owner), u);
        free(u);
    }
    return 0;
}

static bool client_has_id(const void *item, const void *key)
{
    return ((const tqd_client_t *)item)->id == *(const uint64_t *)key;
}

tqd_client_t *tqd_clients_find(const tqd_clients_t *t, uint64_t id)
{
    return tqd_htab_find(&t->by_id, tqd_hash_u64(id), client_has_id, &id);
}

int tqd_clients_add(tqd_clients_t *t, uint64_t id, tqd_client_t **ret)
{
    if (t->len == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        tqd_client_t **v = realloc(t->v, ncap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = ncap;
    }
    tqd_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->peer.role = TASKQ_ROLE_CLIENT;
    c->id = id;
    if (tqd_htab_insert(&t->by_id, tqd_hash_u64(id), c) < 0) {
        free(c);
        return -ENOMEM;
    }
    c->index = t->len;
    t->v[t->len++] = c;
    *ret = c;
    return 0;
}

void tqd_clients_remove(tqd_clients_t *t, tqd_client_t *c)
{
    tqd_htab_remove(&t->by_id, tqd_hash_u64(c->id), c);
    size_t i = c->index;
    t->v[i] = t->v[--t->len];
    t->v[i]->index = i;
    free(c->owed);
    free(c);
}

int tqd_client_owe(tqd_client_t *c, uint64_t job, bool unknown)
{
    if (c->n_owed == c->cap_owed) {
        uint32_t ncap = c->cap_owed ? c->cap_owed * 2 : 16;
        tqd_owed_t *v = realloc(c->owed, (size_t)ncap * sizeof *v);
        if (!v)
            return -ENOMEM;
        c->owed = v;
        c->cap_owed = ncap;
    }
    c->owed[c->n_owed++] = (tqd_owed_t){job, unknown};
    return 0;
}
