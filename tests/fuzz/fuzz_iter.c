/*
 * fuzz_iter.c - fuzz target: the item iterators, taskq_span_str and
 * taskq_msg_ref over arbitrary bytes (as from a caller that builds a
 * taskq_iter_t itself), and the error names of any code.  They must stay
 * inside the bytes and fail with a code.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "taskq_proto.h"

enum { STR, U64, SUBMIT, RESULT, TASK, DONE, ABANDON, FAILED, HISTORY, KINDS };

/* The next item of an iterator of this kind: its spans go to spans (empty
 * where it has fewer than three), a FAILED_REPLY job's history to history. */
static int next(int kind, taskq_iter_t *it, taskq_span_t spans[3], taskq_iter_t *history)
{
    union {
        taskq_span_t str;
        uint64_t u64;
        taskq_submit_item_t submit;
        taskq_result_item_t result;
        taskq_task_item_t task;
        taskq_done_item_t done;
        taskq_abandon_item_t abandon;
        taskq_failed_item_t failed;
        taskq_history_item_t history;
    } x;
    int rc;
    memset(spans, 0, 3 * sizeof *spans);
    switch (kind) {
    case STR:
        if ((rc = taskq_iter_str(it, &x.str)) > 0)
            spans[0] = x.str;
        return rc;
    case U64:
        return taskq_iter_u64(it, &x.u64);
    case SUBMIT:
        if ((rc = taskq_iter_submit(it, &x.submit)) > 0)
            spans[0] = x.submit.function, spans[1] = x.submit.queue, spans[2] = x.submit.arg;
        return rc;
    case RESULT:
        if ((rc = taskq_iter_result(it, &x.result)) > 0)
            spans[0] = x.result.payload;
        return rc;
    case TASK:
        if ((rc = taskq_iter_task(it, &x.task)) > 0)
            spans[0] = x.task.function, spans[1] = x.task.arg;
        return rc;
    case DONE:
        if ((rc = taskq_iter_done(it, &x.done)) > 0)
            spans[0] = x.done.payload;
        return rc;
    case ABANDON:
        return taskq_iter_abandon(it, &x.abandon);
    case FAILED:
        if ((rc = taskq_iter_failed(it, &x.failed)) > 0) {
            spans[0] = x.failed.function, spans[1] = x.failed.queue, spans[2] = x.failed.payload;
            *history = x.failed.history;
        }
        return rc;
    default:
        if ((rc = taskq_iter_history(it, &x.history)) > 0)
            spans[0] = x.history.worker, spans[1] = x.history.host, spans[2] = x.history.cause;
        return rc;
    }
}

/* Spans an item returns lie in the bytes its iterator just passed over. */
static void check_span(taskq_span_t s, const uint8_t *from, const uint8_t *to)
{
    uintptr_t p = (uintptr_t)s.ptr;
    FUZZ_CHECK(s.len == 0 || (p >= (uintptr_t)from && s.len <= (uintptr_t)to - p),
               "a span outside its item");
}

/* Run an iterator to its end or its first error; the items it returns
 * move it forward, an error or the end leaves it as it was. */
static void drain(int kind, taskq_iter_t it)
{
    taskq_span_t spans[3];
    taskq_iter_t history;
    for (;;) {
        taskq_iter_t before = it;
        int rc = next(kind, &it, spans, &history);
        FUZZ_CHECK(rc <= 1 && rc >= -TASKQ_PERR_TOO_DEEP, "iterator returned %d", rc);
        if (rc <= 0) {
            FUZZ_CHECK(memcmp(&it, &before, sizeof it) == 0, "iterator moved on %d", rc);
            FUZZ_CHECK(rc < 0 || before.left == 0, "end with %u items left", before.left);
            return;
        }
        FUZZ_CHECK(it.p > before.p && it.p <= it.end && it.end == before.end, "position");
        FUZZ_CHECK(it.left == before.left - 1, "count");
        for (size_t k = 0; k < 3; k++)
            check_span(spans[k], before.p, it.p);
        if (kind == FAILED) {
            FUZZ_CHECK(history.end == it.end, "history bounds");
            drain(HISTORY, history);
        }
    }
}

/*
 * Input: a byte choosing the iterator (its value modulo KINDS, in the
 * order of the enum above), four bytes of the item count (big-endian; also
 * the code whose names are asked), then the bytes iterated over.
 */
FUZZ_TARGET(iter)
{
    if (size < 5)
        return 0;
    int kind = data[0] % KINDS;
    uint32_t left = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 |
                    data[4];
    size_t len = size - 5;
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf, "out of memory");
    memcpy(buf, data + 5, len);

    drain(kind, (taskq_iter_t){buf, buf + len, left});

    taskq_span_t text;
    if (taskq_span_str((taskq_span_t){buf, len}, &text) == 0)
        check_span(text, buf, buf + len);
    (void)taskq_msg_ref(buf, len);
    /* A peer's ERROR code is named in the broker's log, whatever it is. */
    FUZZ_CHECK(taskq_perr_name((int)left) && taskq_perr_text((int)left), "no name for a code");
    free(buf);
    return 0;
}
