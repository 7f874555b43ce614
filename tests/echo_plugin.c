/*
 * echo_plugin.c - a taskq-worker plugin for the command-line tests: the
 * function `echo` returns its argument unchanged, so `taskq call` can be
 * checked to round-trip every JSON type through msgpack and back.
 */
#include "taskq.h"

static int fn_echo(taskq_task_t *t, void *ud)
{
    size_t len;
    const void *arg = taskq_task_arg(t, &len);
    return taskq_task_set_result(t, arg, len);
}

int taskq_plugin_init(taskq_worker_t *w)
{
    return taskq_worker_register(w, "echo", fn_echo, NULL);
}
