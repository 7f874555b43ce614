/*
 * store_mem.c - the memory store: the queue itself is the only copy of the
 * tasks, so there is nothing to record, recover or commit.
 */
#include <errno.h>
#include <stdlib.h>

#include "os.h"
#include "store.h"

static int mem_recover(tqd_store_t *s, tqd_queue_t *q, uint64_t now)
{
    (void)s;
    (void)q;
    (void)now;
    return 0;
}

static int mem_commit(tqd_store_t *s)
{
    (void)s;
    return 0;
}

static void mem_close(tqd_store_t *s)
{
    free(s);
}

static const tqd_store_ops_t mem_ops = {
    .name = "memory",
    .recover = mem_recover,
    .commit = mem_commit,
    .close = mem_close,
};

int tqd_store_mem_open(tqd_store_t **ret)
{
    tqd_store_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->ops = &mem_ops;
    do {
        int rc = tqd_os_random(&s->id, sizeof s->id);
        if (rc < 0) {
            free(s);
            return rc;
        }
    } while (s->id == 0);
    *ret = s;
    return 0;
}

void tqd_store_close(tqd_store_t **s)
{
    if (!s || !*s)
        return;
    (*s)->ops->close(*s);
    *s = NULL;
}
