/*
 * errors.c - names and messages of the library's error codes, generated
 * from the TASKQ_ERRNO_MAP table in taskq.h, the version string, and the
 * mapping from wire error codes (ERROR messages) to library codes.
 */
#include "client_impl.h"

const char *taskq_strerror(int code)
{
    switch (code) {
    case TASKQ_OK:
        return "success";
#define TASKQ_ERRNO_TEXT(name, value, text) \
    case TASKQ_##name:                      \
        return text;
        TASKQ_ERRNO_MAP(TASKQ_ERRNO_TEXT)
#undef TASKQ_ERRNO_TEXT
    }
    return "unknown error";
}

const char *taskq_errname(int code)
{
    switch (code) {
    case TASKQ_OK:
        return "TASKQ_OK";
#define TASKQ_ERRNO_NAME(name, value, text) \
    case TASKQ_##name:                      \
        return "TASKQ_" #name;
        TASKQ_ERRNO_MAP(TASKQ_ERRNO_NAME)
#undef TASKQ_ERRNO_NAME
    }
    return "TASKQ_E?";
}

const char *taskq_version(void)
{
    return TASKQ_VERSION_STRING;
}

int taskq__perr_code(uint32_t perr)
{
    switch (perr) {
    case TASKQ_PERR_QUEUE_FULL:
        return TASKQ_EQUEUEFULL;
    case TASKQ_PERR_TOO_BIG:
    case TASKQ_PERR_TOO_LONG:
    case TASKQ_PERR_TOO_MANY:
    case TASKQ_PERR_TOO_DEEP:
        return TASKQ_ETOOBIG;
    case TASKQ_PERR_STORAGE:
        return TASKQ_ESTORAGE;
    case TASKQ_PERR_DENIED:
        return TASKQ_EDENIED;
    case TASKQ_PERR_NOT_FOUND:
        return TASKQ_ENOJOB;
    case TASKQ_PERR_TRUNCATED:
    case TASKQ_PERR_MALFORMED:
    case TASKQ_PERR_VERSION:
    case TASKQ_PERR_UNKNOWN_TYPE:
    case TASKQ_PERR_BAD_FIELD:
    case TASKQ_PERR_UNEXPECTED:
    case TASKQ_PERR_HELLO_REQUIRED:
        return TASKQ_EPROTO;
    default:
        return TASKQ_EREFUSED;
    }
}
