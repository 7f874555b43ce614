/*
 * cli_json.h - JSON <-> msgpack for the taskq tool (call, wait, cancel,
 * status), with jansson: task arguments typed as JSON, results printed as
 * JSON, and JSON printed with floats as short as they can be.
 */
#ifndef TASKQ_CLI_JSON_H
#define TASKQ_CLI_JSON_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* The protocol's payload nesting limit (PROTOCOL.md, max_depth). */
#define CLI_JSON_MAX_DEPTH 64

/*
 * The mapping, both ways:
 *   null, true, false  <-> nil, bool
 *   integer            <-> int (a msgpack uint above 2^63-1 prints as a
 *                          float: JSON integers are read as signed 64-bit)
 *   number with . or e <-> float 64 (float 32 prints as its double value;
 *                          NaN and the infinities print as the strings
 *                          "NaN", "Infinity", "-Infinity")
 *   string             <-> str (UTF-8; \u0000 allowed)
 *   array, object      <-> array, map with str keys
 *   {"$bin": "BASE64"} <-> bin
 *   {"$ext": [TYPE, "BASE64"]} <-> ext of TYPE (-128..127)
 * An object with the single key "$bin" or "$ext" is always read as that
 * form.  A str that is not valid UTF-8 prints as the $bin form.  A map key
 * that is not a str prints as the compact JSON text of its value (1 ->
 * "1", true -> "true", [1,2] -> "[1,2]"); if two keys print the same, the
 * later value is kept.
 */

/*
 * Parse text (len bytes holding one JSON value) and encode it as one
 * msgpack object into *ret (malloc'ed, caller frees) of *ret_len bytes.
 * Errors: TASKQ_EINVAL (not JSON, a bad $bin or $ext form, nested deeper
 * than CLI_JSON_MAX_DEPTH), with a message in err (cap bytes, always
 * NUL-terminated); TASKQ_ENOMEM.
 */
int cli_json_to_msgpack(const char *text, size_t len, void **ret, size_t *ret_len, char *err,
                        size_t cap);

/*
 * Convert buf (len bytes holding exactly one msgpack object) into a new
 * jansson value in *ret (caller releases it with json_decref()).
 * Errors: TASKQ_EPROTO (not one msgpack object, or nested deeper than
 * CLI_JSON_MAX_DEPTH), TASKQ_ENOMEM.
 */
int cli_msgpack_to_json(const void *buf, size_t len, json_t **ret);

/*
 * Write v to out as one line of JSON and a newline, every float with the
 * fewest digits that read back as the same double (a document of 0.1 and
 * 0.25 prints them so, not as 0.10000000000000001).  Returns 0, or
 * TASKQ_ESYS if out refused the write.
 */
int cli_json_print(FILE *out, const json_t *v);

/* A new JSON string of text (error texts, names), in which bytes that are
 * not UTF-8 become '?'; NULL if out of memory. */
json_t *cli_json_text(const char *text);

#endif /* TASKQ_CLI_JSON_H */
