/*
 * fuzz_object.c - fuzz target: taskq_object_check and taskq_span_str
 * against a reference written separately (recursive, where the codec keeps
 * its own stack), and objects both accept against msgpack-c's unpacker.
 */
#include <msgpack.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "taskq_proto.h"

#define ERR(name) (-TASKQ_PERR_##name)
/* Depths above this act as this (taskq_proto.h). */
#define DEPTH_CAP 256
/* msgpack-c's unpacker nests at most this many containers. */
#define MSGPACK_DEPTH 32

typedef struct ref {
    const uint8_t *p;
    const uint8_t *end;
} ref_t;

/* A big-endian length or value of width bytes, or false if they are not
 * all there. */
static bool ref_uint(ref_t *r, unsigned width, uint64_t *ret)
{
    if ((size_t)(r->end - r->p) < width)
        return false;
    *ret = 0;
    for (unsigned k = 0; k < width; k++)
        *ret = *ret << 8 | *r->p++;
    return true;
}

/*
 * Read one object that may open at most room more containers.  Returns 0
 * with its depth in *depth and whether it is a str in *str, or the error:
 * TRUNCATED for a length past the end (an array entry takes at least one
 * byte and a map entry two, so a count is checked when it is read),
 * MALFORMED for 0xc1, TOO_DEEP for a container that would pass room.
 */
static int ref_object(ref_t *r, uint32_t room, uint32_t *depth, bool *str)
{
    uint64_t n = 0, skip = 0, extra = 0;
    unsigned width = 0;
    int container = 0; /* 1 array, 2 map */

    *depth = 0;
    *str = false;
    if (r->p == r->end)
        return ERR(TRUNCATED);
    uint8_t b = *r->p++;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        /* fixint, nil, bool: nothing follows */
    } else if (b <= 0x8f) {
        container = 2, n = b & 0x0f;
    } else if (b <= 0x9f) {
        container = 1, n = b & 0x0f;
    } else if (b <= 0xbf) {
        *str = true, skip = b & 0x1f;
    } else {
        switch (b) {
        case 0xc1: return ERR(MALFORMED);
        case 0xc4: case 0xc5: case 0xc6: width = 1u << (b - 0xc4); break;
        case 0xc7: case 0xc8: case 0xc9: width = 1u << (b - 0xc7), extra = 1; break;
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xcd: case 0xce: case 0xcf: skip = 1u << (b - 0xcc); break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: skip = 1u << (b - 0xd0); break;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: skip = 1 + (1u << (b - 0xd4)); break;
        case 0xd9: case 0xda: case 0xdb: *str = true, width = 1u << (b - 0xd9); break;
        case 0xdc: case 0xdd: container = 1, width = 2u << (b - 0xdc); break;
        default: container = 2, width = 2u << (b - 0xde); break; /* 0xde, 0xdf */
        }
        if (width) {
            uint64_t v;
            if (!ref_uint(r, width, &v))
                return ERR(TRUNCATED);
            if (container)
                n = v;
            else
                skip = v + extra;
        }
    }
    size_t avail = (size_t)(r->end - r->p);
    if (!container) {
        if (skip > avail)
            return ERR(TRUNCATED);
        r->p += skip;
        return 0;
    }
    if (n * container > avail)
        return ERR(TRUNCATED);
    if (room == 0)
        return ERR(TOO_DEEP);
    for (uint64_t k = 0; k < n * container; k++) {
        uint32_t d;
        bool s;
        int rc = ref_object(r, room - 1, &d, &s);
        if (rc < 0)
            return rc;
        if (d > *depth)
            *depth = d;
    }
    *depth += 1;
    return 0;
}

/* What msgpack-c makes of the first object: true and its size if it
 * unpacks. */
static bool msgpack_size(const uint8_t *buf, size_t len, size_t *ret)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    bool ok = msgpack_unpack_next(&u, (const char *)buf, len, &off) == MSGPACK_UNPACK_SUCCESS;
    msgpack_unpacked_destroy(&u);
    *ret = off;
    return ok;
}

/*
 * Input: a byte choosing max_depth (0-239 as it is, 240-254 from 256 up in
 * steps of 64, 255 for UINT32_MAX), then the object's bytes.
 */
FUZZ_TARGET(object)
{
    if (size == 0)
        return 0;
    uint32_t max_depth = data[0] < 240 ? data[0]
                         : data[0] < 255 ? DEPTH_CAP + 64u * (data[0] - 240u)
                                         : UINT32_MAX;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf, "out of memory");
    memcpy(buf, data + 1, len);

    ref_t r = {buf, buf + len};
    uint32_t depth;
    bool str;
    int want = ref_object(&r, max_depth < DEPTH_CAP ? max_depth : DEPTH_CAP, &depth, &str);
    bool whole = want == 0; /* the first object was read to its end */
    size_t end = (size_t)(r.p - buf);
    if (whole && end != len)
        want = ERR(MALFORMED);
    int rc = taskq_object_check(buf, len, max_depth);
    FUZZ_CHECK(rc == want, "taskq_object_check %s, reference %s", taskq_perr_name(rc),
               taskq_perr_name(want));

    taskq_span_t text;
    bool is_str = want == 0 && str;
    FUZZ_CHECK((taskq_span_str((taskq_span_t){buf, len}, &text) == 0) == is_str,
               "taskq_span_str disagrees (str %d)", is_str);
    if (is_str)
        FUZZ_CHECK(text.ptr + text.len == buf + len && text.len < len, "str body");

    /* An object read whole (maybe with bytes after it) unpacks in
     * msgpack-c to the same size, as deep as msgpack-c goes. */
    size_t got;
    if (whole && depth <= MSGPACK_DEPTH)
        FUZZ_CHECK(msgpack_size(buf, len, &got) && got == end,
                   "msgpack-c reads %zu bytes, the codec %zu", got, end);
    free(buf);
    return 0;
}
