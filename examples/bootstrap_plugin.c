/*
 * bootstrap_plugin.c - a taskq-worker plugin with one function,
 * bootstrap_fit: simulate a data set from a straight line plus Gaussian
 * noise, fit it by least squares, and bootstrap the fit's standard errors.
 * The bootstrap client fans it out over many data sets.
 *
 *   taskq-worker --load examples/bootstrap.so
 *
 * Argument and result are described in bootstrap.h, which does the work.
 */
#include <msgpack.h>
#include <taskq.h>

#include "bootstrap.h"

static bool cancelled(void *t)
{
    return taskq_task_cancelled(t);
}

static int bootstrap_fit(taskq_task_t *t, void *userdata)
{
    (void)userdata;
    size_t len;
    const char *arg = taskq_task_arg(t, &len);
    msgpack_unpacked in;
    msgpack_unpacked_init(&in);
    bs_params_t p = {.seed = taskq_task_seed(t)};
    const char *bad = msgpack_unpack_next(&in, arg, len, NULL) == MSGPACK_UNPACK_SUCCESS
                          ? bs_params_parse(&in.data, &p)
                          : "the argument is not msgpack";
    msgpack_unpacked_destroy(&in);
    if (bad)
        return taskq_task_error(t, "bootstrap_fit: %s", bad);

    bs_result_t r;
    int rc = bs_run(&p, cancelled, t, &r);
    if (rc == TASKQ_ECANCELED)
        return taskq_task_error(t, "bootstrap_fit: abandoned");
    if (rc != 0)
        return taskq_task_error(t, "bootstrap_fit: %s", taskq_strerror(rc));

    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    bs_result_pack(&r, &out);
    rc = taskq_task_set_result(t, out.data, out.size); /* copies the bytes */
    msgpack_sbuffer_destroy(&out);
    return rc;
}

int taskq_plugin_init(taskq_worker_t *w)
{
    return taskq_worker_register(w, "bootstrap_fit", bootstrap_fit, NULL);
}
