/*
 * montecarlo.c - a taskq-worker plugin with one function, mc_integrate: a
 * Monte Carlo estimate of the integral of 1/(1+x^2) over [0, 1] (pi/4),
 * drawn from the task's own random stream.  pi_client fans it out.
 *
 *   taskq-worker --load examples/montecarlo.so
 *
 * Argument: {"samples": uint >= 1, "seed": uint or nil}; without a seed (or
 * with nil) the task's seed from the broker is used.  Result: {"sum": f64,
 * "sumsq": f64, "n": uint}, the sums of f(x_i) and f(x_i)^2 over n samples,
 * from which the caller gets the mean and its standard error exactly.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include <msgpack.h>
#include <taskq.h>

#include "montecarlo.h"

/* Samples drawn between two looks at taskq_task_cancelled(). */
#define CHUNK (UINT64_C(1) << 20)

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t len = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
           memcmp(k->via.str.ptr, name, len) == 0;
}

/* Read the argument map into *samples and *seed (left as it is when the
 * map has no seed or a nil one).  Returns NULL or why the argument is bad. */
static const char *parse_arg(const msgpack_object *o, uint64_t *samples, uint64_t *seed)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return "the argument is not a map";
    bool have_samples = false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (key_is(k, "samples")) {
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0)
                return "\"samples\" is not a positive integer";
            *samples = v->via.u64;
            have_samples = true;
        } else if (key_is(k, "seed")) {
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                *seed = v->via.u64;
            else if (v->type != MSGPACK_OBJECT_NIL)
                return "\"seed\" is neither an unsigned integer nor nil";
        } else {
            return "unknown key (only \"samples\" and \"seed\")";
        }
    }
    return have_samples ? NULL : "no \"samples\"";
}

static void pack_key(msgpack_packer *pk, const char *key)
{
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

static int mc_integrate(taskq_task_t *t, void *userdata)
{
    (void)userdata;
    size_t len;
    const char *arg = taskq_task_arg(t, &len);
    msgpack_unpacked in;
    msgpack_unpacked_init(&in);
    uint64_t samples = 0, seed = taskq_task_seed(t);
    const char *bad = msgpack_unpack_next(&in, arg, len, NULL) == MSGPACK_UNPACK_SUCCESS
                          ? parse_arg(&in.data, &samples, &seed)
                          : "the argument is not msgpack";
    msgpack_unpacked_destroy(&in);
    if (bad)
        return taskq_task_error(t, "mc_integrate: %s", bad);

    mc_rng_t rng;
    mc_rng_seed(&rng, seed);
    mc_sums_t acc = {0};
    while (acc.n < samples) {
        if (taskq_task_cancelled(t))
            return taskq_task_error(t, "mc_integrate: abandoned after %" PRIu64 " samples",
                                    acc.n);
        mc_draw(&rng, samples - acc.n < CHUNK ? samples - acc.n : CHUNK, &acc);
    }

    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_key(&pk, "sum");
    msgpack_pack_double(&pk, acc.sum);
    pack_key(&pk, "sumsq");
    msgpack_pack_double(&pk, acc.sumsq);
    pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, acc.n);
    int rc = taskq_task_set_result(t, out.data, out.size); /* copies the bytes */
    msgpack_sbuffer_destroy(&out);
    return rc;
}

int taskq_plugin_init(taskq_worker_t *w)
{
    return taskq_worker_register(w, "mc_integrate", mc_integrate, NULL);
}
