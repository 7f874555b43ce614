/*
 * errors.c - names and texts of the wire error codes, the default limits,
 * the growable buffer the encoders write into, and small span helpers.
 */
#include "taskq_proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decode results are negated codes; accept both signs. */
static long long perr_abs(int code)
{
    return code < 0 ? -(long long)code : code;
}

const char *taskq_perr_name(int code)
{
    switch (perr_abs(code)) {
#define TASKQ_PERR_NAME(name, value, text) \
    case value:                            \
        return #name;
        TASKQ_PERR_MAP(TASKQ_PERR_NAME)
#undef TASKQ_PERR_NAME
    }
    return "UNKNOWN";
}

const char *taskq_perr_text(int code)
{
    switch (perr_abs(code)) {
#define TASKQ_PERR_TEXT(name, value, text) \
    case value:                            \
        return text;
        TASKQ_PERR_MAP(TASKQ_PERR_TEXT)
#undef TASKQ_PERR_TEXT
    }
    return "unknown error code";
}

void taskq_limits_default(taskq_limits_t *ret)
{
    *ret = (taskq_limits_t){
        .max_frame = 64u << 20,
        .max_name = 255,
        .max_text = 65536,
        .max_batch = 10000,
        .max_list = 1024,
        .max_depth = 64,
    };
}

void taskq_buf_fini(taskq_buf_t *b)
{
    free(b->data);
    *b = (taskq_buf_t){0};
}

int taskq_buf_append(taskq_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        uint8_t *d = realloc(b->data, cap);
        if (!d)
            return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int taskq_buf_write(void *data, const char *buf, size_t len)
{
    return taskq_buf_append(data, buf, len);
}

taskq_span_t taskq_span_cstr(const char *s)
{
    if (!s)
        return (taskq_span_t){NULL, 0};
    return (taskq_span_t){(const uint8_t *)s, strlen(s)};
}

bool taskq_span_eq(taskq_span_t a, const char *s)
{
    taskq_span_t b = taskq_span_cstr(s);
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
