/*
 * cli_json.c - JSON <-> msgpack with jansson and msgpack-c, the $bin and
 * $ext forms with their base64, and printing JSON with short floats.
 */
#include "cli_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "taskq.h"

static const char b64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- base64 (RFC 4648, with padding) ---------------------------------- */

/* A new jansson string of the base64 of p[0..n-1], or NULL. */
static json_t *b64_encode(const uint8_t *p, size_t n)
{
    size_t len = (n + 2) / 3 * 4;
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    char *o = s;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *o++ = b64_digits[v >> 18];
        *o++ = b64_digits[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_digits[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? b64_digits[v & 63] : '=';
    }
    json_t *j = json_stringn(s, len);
    free(s);
    return j;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64_digits, c) : NULL;
    return p ? (int)(p - b64_digits) : -1;
}

/* Decode s (n chars; padding optional) into out (room for n * 3 / 4
 * bytes); the length goes to *ret_len.  Returns 0 or -1 if s is not
 * base64. */
static int b64_decode(const char *s, size_t n, uint8_t *out, size_t *ret_len)
{
    while (n > 0 && s[n - 1] == '=' && n % 4 != 1)
        n--;
    if (n % 4 == 1)
        return -1;
    size_t len = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[len++] = (uint8_t)(acc >> 16);
            out[len++] = (uint8_t)(acc >> 8);
            out[len++] = (uint8_t)acc;
        }
    }
    if (n % 4 == 2) {
        out[len++] = (uint8_t)(acc >> 4);
    } else if (n % 4 == 3) {
        out[len++] = (uint8_t)(acc >> 10);
        out[len++] = (uint8_t)(acc >> 2);
    }
    *ret_len = len;
    return 0;
}

/* ---- JSON -> msgpack --------------------------------------------------- */

typedef struct to_mp {
    msgpack_packer pk;
    char *err;
    size_t cap;
} to_mp_t;

static int fail(to_mp_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(to_mp_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, t->cap, fmt, ap);
    va_end(ap);
    return TASKQ_EINVAL;
}

/* Pack the base64 string b as bin, or as ext of type (ext true). */
static int pack_b64(to_mp_t *t, const json_t *b, bool ext, int type)
{
    const char *form = ext ? "$ext" : "$bin";
    if (!json_is_string(b))
        return fail(t, "the %s form wants a base64 string", form);
    size_t n = json_string_length(b), len;
    uint8_t *bytes = malloc(n / 4 * 3 + 3);
    if (!bytes)
        return TASKQ_ENOMEM;
    int rc = 0;
    if (b64_decode(json_string_value(b), n, bytes, &len) != 0)
        rc = fail(t, "the %s form holds \"%.40s\", which is not base64", form,
                  json_string_value(b));
    else if (ext)
        rc = msgpack_pack_ext_with_body(&t->pk, bytes, len, (int8_t)type) ? TASKQ_ENOMEM : 0;
    else
        rc = msgpack_pack_bin_with_body(&t->pk, bytes, len) ? TASKQ_ENOMEM : 0;
    free(bytes);
    return rc;
}

/* An object {"$bin": ...} or {"$ext": ...}: packed, returns 1 (or an
 * error); any other object: returns 0. */
static int pack_special(to_mp_t *t, const json_t *v)
{
    if (json_object_size(v) != 1)
        return 0;
    const json_t *b = json_object_get(v, "$bin");
    int rc;
    if (b)
        return (rc = pack_b64(t, b, false, 0)) != 0 ? rc : 1;
    const json_t *e = json_object_get(v, "$ext");
    if (!e)
        return 0;
    const json_t *type = json_array_get(e, 0);
    if (json_array_size(e) != 2 || !json_is_integer(type) || json_integer_value(type) < -128 ||
        json_integer_value(type) > 127)
        return fail(t, "the $ext form is [TYPE, \"BASE64\"] with TYPE in -128..127");
    rc = pack_b64(t, json_array_get(e, 1), true, (int)json_integer_value(type));
    return rc != 0 ? rc : 1;
}

/* Pack v, a value inside depth containers. */
static int pack_json(to_mp_t *t, const json_t *v, int depth)
{
    msgpack_packer *pk = &t->pk;
    int bad = 0;
    switch (json_typeof(v)) {
    case JSON_NULL:
        bad = msgpack_pack_nil(pk);
        break;
    case JSON_TRUE:
        bad = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        bad = msgpack_pack_false(pk);
        break;
    case JSON_INTEGER:
        bad = msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        bad = msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_STRING:
        bad = msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_ARRAY: {
        if (depth >= CLI_JSON_MAX_DEPTH)
            return fail(t, "the value is nested deeper than %d levels", CLI_JSON_MAX_DEPTH);
        size_t i;
        const json_t *item;
        bad = msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, item) {
            int rc = pack_json(t, item, depth + 1);
            if (rc)
                return rc;
        }
        break;
    }
    case JSON_OBJECT: {
        int rc = pack_special(t, v);
        if (rc)
            return rc < 0 ? rc : 0;
        if (depth >= CLI_JSON_MAX_DEPTH)
            return fail(t, "the value is nested deeper than %d levels", CLI_JSON_MAX_DEPTH);
        const char *key;
        size_t key_len;
        json_t *item;
        bad = msgpack_pack_map(pk, json_object_size(v));
        json_object_keylen_foreach((json_t *)v, key, key_len, item) {
            if (msgpack_pack_str_with_body(pk, key, key_len))
                return TASKQ_ENOMEM;
            if ((rc = pack_json(t, item, depth + 1)) != 0)
                return rc;
        }
        break;
    }
    }
    return bad ? TASKQ_ENOMEM : 0;
}

int cli_json_to_msgpack(const char *text, size_t len, void **ret, size_t *ret_len, char *err,
                        size_t cap)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
                           &je);
    if (!v) {
        snprintf(err, cap, "not JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        return TASKQ_EINVAL;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    to_mp_t t = {.err = err, .cap = cap};
    msgpack_packer_init(&t.pk, &sb, msgpack_sbuffer_write);
    if (cap)
        err[0] = '\0';
    int rc = pack_json(&t, v, 0);
    json_decref(v);
    if (rc) {
        msgpack_sbuffer_destroy(&sb);
        if (rc == TASKQ_ENOMEM)
            snprintf(err, cap, "out of memory");
        return rc;
    }
    *ret = sb.data;
    *ret_len = sb.size;
    return 0;
}

/* ---- msgpack -> JSON --------------------------------------------------- */

/* The fewest significant digits (1..17) that print d so that it reads
 * back as d. */
static int shortest_digits(double d)
{
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* The digits the floats of v need: the most any of them needs. */
static int digits_needed(const json_t *v)
{
    int most = 0, p;
    size_t i;
    const char *key;
    const json_t *item;
    switch (json_typeof(v)) {
    case JSON_REAL:
        return shortest_digits(json_real_value(v));
    case JSON_ARRAY:
        json_array_foreach(v, i, item) {
            if ((p = digits_needed(item)) > most)
                most = p;
        }
        return most;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, key, item) {
            if ((p = digits_needed(item)) > most)
                most = p;
        }
        return most;
    default:
        return 0;
    }
}

static size_t dump_flags(const json_t *v)
{
    int p = digits_needed(v);
    return JSON_ENCODE_ANY | (p ? JSON_REAL_PRECISION(p) : 0);
}

/* A reader of msgpack bytes.  msgpack-c's unpacker stops at 32 levels
 * of nesting, fewer than the protocol's 64, so the tool reads results
 * itself. */
typedef struct reader {
    const uint8_t *p, *end;
    bool bad; /* not msgpack, or nested too deep (else a NULL is ENOMEM) */
} reader_t;

static bool take(reader_t *r, size_t n, const uint8_t **ret)
{
    if ((size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    *ret = r->p;
    r->p += n;
    return true;
}

/* A big-endian unsigned integer of n bytes (1, 2, 4, 8). */
static bool take_uint(reader_t *r, size_t n, uint64_t *ret)
{
    const uint8_t *b;
    if (!take(r, n, &b))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | b[i];
    *ret = v;
    return true;
}

static json_t *read_value(reader_t *r, int depth);

/* {name: value}, taking value; NULL if value is. */
static json_t *wrap(const char *name, json_t *value)
{
    json_t *obj = value ? json_object() : NULL;
    if (obj && json_object_set_new(obj, name, value) == 0)
        return obj;
    json_decref(obj);
    if (!obj)
        json_decref(value);
    return NULL;
}

static json_t *from_float(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

/* n bytes: a str (as a string if it is UTF-8, else like bin), a bin, or
 * an ext of the type read first. */
static json_t *read_bytes(reader_t *r, size_t n, char kind)
{
    const uint8_t *type = NULL, *b;
    if ((kind == 'e' && !take(r, 1, &type)) || !take(r, n, &b))
        return NULL;
    if (kind == 's') {
        json_t *s = json_stringn((const char *)b, n);
        if (s)
            return s;
    }
    if (kind != 'e')
        return wrap("$bin", b64_encode(b, n));
    json_t *pair = json_array();
    if (!pair || json_array_append_new(pair, json_integer((int8_t)*type)) != 0 ||
        json_array_append_new(pair, b64_encode(b, n)) != 0) {
        json_decref(pair);
        return NULL;
    }
    return wrap("$ext", pair);
}

/* Set obj[key] = value (taken), the key converted as cli_json.h says. */
static int set_member(json_t *obj, json_t *key, json_t *value)
{
    int rc = -1;
    if (json_is_string(key)) {
        rc = json_object_setn_new(obj, json_string_value(key), json_string_length(key), value);
    } else {
        char *text = json_dumps(key, dump_flags(key) | JSON_COMPACT);
        if (text)
            rc = json_object_set_new(obj, text, value);
        else
            json_decref(value);
        free(text);
    }
    json_decref(key);
    return rc;
}

/* n items of an array, or with map n key-value pairs. */
static json_t *read_container(reader_t *r, uint64_t n, bool map, int depth)
{
    if (depth >= CLI_JSON_MAX_DEPTH) {
        r->bad = true;
        return NULL;
    }
    json_t *c = map ? json_object() : json_array();
    for (uint64_t i = 0; c && i < n; i++) {
        json_t *key = map ? read_value(r, depth + 1) : NULL;
        json_t *value = !map || key ? read_value(r, depth + 1) : NULL;
        int rc = -1;
        if (value)
            rc = map ? set_member(c, key, value) : json_array_append_new(c, value);
        else
            json_decref(key);
        if (rc != 0) {
            json_decref(c);
            c = NULL;
        }
    }
    return c;
}

/* The next object, inside depth containers; NULL if the bytes are not
 * msgpack, nest too deep, or memory ran out. */
static json_t *read_value(reader_t *r, int depth)
{
    const uint8_t *b;
    uint64_t v;
    if (!take(r, 1, &b))
        return NULL;
    uint8_t t = *b;
    if (t <= 0x7f)
        return json_integer(t);
    if (t >= 0xe0)
        return json_integer((int8_t)t);
    if (t <= 0x8f)
        return read_container(r, t & 0x0f, true, depth);
    if (t <= 0x9f)
        return read_container(r, t & 0x0f, false, depth);
    if (t <= 0xbf)
        return read_bytes(r, t & 0x1f, 's');
    switch (t) {
    case 0xc0:
        return json_null();
    case 0xc2:
    case 0xc3:
        return json_boolean(t == 0xc3);
    case 0xc4: case 0xc5: case 0xc6: /* bin 8, 16, 32 */
        return take_uint(r, (size_t)1 << (t - 0xc4), &v) ? read_bytes(r, v, 'b') : NULL;
    case 0xc7: case 0xc8: case 0xc9: /* ext 8, 16, 32 */
        return take_uint(r, (size_t)1 << (t - 0xc7), &v) ? read_bytes(r, v, 'e') : NULL;
    case 0xca: { /* float 32 */
        if (!take_uint(r, 4, &v))
            return NULL;
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, sizeof f);
        return from_float(f);
    }
    case 0xcb: { /* float 64 */
        if (!take_uint(r, 8, &v))
            return NULL;
        double d;
        memcpy(&d, &v, sizeof d);
        return from_float(d);
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf: /* uint 8..64 */
        if (!take_uint(r, (size_t)1 << (t - 0xcc), &v))
            return NULL;
        return v <= INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: { /* int 8..64 */
        size_t n = (size_t)1 << (t - 0xd0);
        if (!take_uint(r, n, &v))
            return NULL;
        /* Sign-extend from n bytes. */
        uint64_t sign = (uint64_t)1 << (8 * n - 1);
        return json_integer((json_int_t)((v ^ sign) - sign));
    }
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: /* fixext 1..16 */
        return read_bytes(r, (size_t)1 << (t - 0xd4), 'e');
    case 0xd9: case 0xda: case 0xdb: /* str 8, 16, 32 */
        return take_uint(r, (size_t)1 << (t - 0xd9), &v) ? read_bytes(r, v, 's') : NULL;
    case 0xdc: case 0xdd: /* array 16, 32 */
        return take_uint(r, (size_t)2 << (t - 0xdc), &v) ? read_container(r, v, false, depth)
                                                        : NULL;
    case 0xde: case 0xdf: /* map 16, 32 */
        return take_uint(r, (size_t)2 << (t - 0xde), &v) ? read_container(r, v, true, depth)
                                                        : NULL;
    default: /* 0xc1: never used */
        r->bad = true;
        return NULL;
    }
}

int cli_msgpack_to_json(const void *buf, size_t len, json_t **ret)
{
    reader_t r = {buf, (const uint8_t *)buf + len, false};
    json_t *v = read_value(&r, 0);
    if (v && r.p == r.end) {
        *ret = v;
        return 0;
    }
    json_decref(v);
    return v || r.bad ? TASKQ_EPROTO : TASKQ_ENOMEM;
}

int cli_json_print(FILE *out, const json_t *v)
{
    if (json_dumpf(v, out, dump_flags(v)) != 0 || fputc('\n', out) == EOF)
        return TASKQ_ESYS;
    return 0;
}

json_t *cli_json_text(const char *text)
{
    json_t *s = json_string(text);
    if (s)
        return s;
    char *ascii = strdup(text);
    if (!ascii)
        return NULL;
    for (char *p = ascii; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    s = json_string(ascii);
    free(ascii);
    return s;
}
