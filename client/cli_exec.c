/*
 * cli_exec.c - the argument and the result of the built-in `exec` function
 * (worker/exec.h) as the taskq tool sends and reads them: encoding
 * {argv, env, cwd, stdin}, the --env option, and decoding {exit, signal,
 * stdout, stderr, ...}.
 */
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cli.h"

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* The length of the name of a "NAME=VALUE" item, or 0 if it has none. */
static size_t env_name_len(const char *item)
{
    const char *eq = strchr(item, '=');
    return eq ? (size_t)(eq - item) : 0;
}

/* true if a later item of env[i+1..envc-1] sets the same name as env[i]. */
static bool env_overridden(char *const *env, int envc, int i)
{
    size_t n = env_name_len(env[i]);
    for (int j = i + 1; j < envc; j++)
        if (env_name_len(env[j]) == n && memcmp(env[i], env[j], n) == 0)
            return true;
    return false;
}

int cli_exec_arg_env(char *const *argv, int argc, char *const *env, int envc, const char *cwd,
                     const void *stdin_data, size_t stdin_len, void **out, size_t *out_len)
{
    if (argc < 1 || envc < 0 || !out || !out_len)
        return TASKQ_EINVAL;
    uint32_t nenv = 0;
    for (int i = 0; i < envc; i++) {
        if (env_name_len(env[i]) == 0)
            return TASKQ_EINVAL;
        nenv += !env_overridden(env, envc, i);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    int bad = msgpack_pack_map(&pk, 1 + (nenv > 0) + (cwd != NULL) + (stdin_data != NULL));
    bad |= pack_str(&pk, "argv") | msgpack_pack_array(&pk, (size_t)argc);
    for (int i = 0; i < argc; i++)
        bad |= pack_str(&pk, argv[i]);
    if (nenv > 0) {
        bad |= pack_str(&pk, "env") | msgpack_pack_map(&pk, nenv);
        for (int i = 0; i < envc; i++) {
            if (env_overridden(env, envc, i))
                continue;
            size_t n = env_name_len(env[i]);
            bad |= msgpack_pack_str_with_body(&pk, env[i], n) | pack_str(&pk, env[i] + n + 1);
        }
    }
    if (cwd)
        bad |= pack_str(&pk, "cwd") | pack_str(&pk, cwd);
    if (stdin_data)
        bad |= pack_str(&pk, "stdin") | msgpack_pack_bin_with_body(&pk, stdin_data, stdin_len);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return TASKQ_ENOMEM;
    }
    *out = sb.data;
    *out_len = sb.size;
    return 0;
}

int cli_exec_arg(char *const *argv, int argc, const char *cwd, const void *stdin_data,
                 size_t stdin_len, void **out, size_t *out_len)
{
    return cli_exec_arg_env(argv, argc, NULL, 0, cwd, stdin_data, stdin_len, out, out_len);
}

int cli_env_item(const char *opt, char **ret)
{
    if (!opt || !ret || opt[0] == '\0' || opt[0] == '=')
        return TASKQ_EINVAL;
    char *item;
    if (strchr(opt, '=')) {
        item = strdup(opt);
    } else {
        const char *value = getenv(opt);
        if (!value)
            return TASKQ_EINVAL;
        size_t n = strlen(opt), m = strlen(value);
        item = malloc(n + m + 2);
        if (item) {
            memcpy(item, opt, n);
            item[n] = '=';
            memcpy(item + n + 1, value, m + 1);
        }
    }
    if (!item)
        return TASKQ_ENOMEM;
    *ret = item;
    return 0;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static int read_int(const msgpack_object *v, int64_t *ret)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        *ret = (int64_t)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *ret = v->via.i64;
    else
        return TASKQ_EPROTO;
    return 0;
}

/* stdout and stderr are bin, but a str is accepted too (same bytes). */
static int read_bytes(const msgpack_object *v, const uint8_t **ret, size_t *ret_len)
{
    if (v->type == MSGPACK_OBJECT_BIN) {
        *ret = (const uint8_t *)v->via.bin.ptr;
        *ret_len = v->via.bin.size;
    } else if (v->type == MSGPACK_OBJECT_STR) {
        *ret = (const uint8_t *)v->via.str.ptr;
        *ret_len = v->via.str.size;
    } else {
        return TASKQ_EPROTO;
    }
    return 0;
}

int cli_exec_result(const void *buf, size_t len, cli_exec_result_t *ret)
{
    if (!buf || !ret)
        return TASKQ_EINVAL;
    /* msgpack_unpack_next() leaves str and bin objects pointing into buf,
     * so the spans stay valid after the unpacked zone is freed. */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = TASKQ_EPROTO;
    if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        up.data.type != MSGPACK_OBJECT_MAP)
        goto out;

    cli_exec_result_t r = {.exit = -1};
    bool have_exit = false, have_signal = false, have_out = false, have_err = false;
    const msgpack_object_map *m = &up.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        int64_t n;
        if (key_is(k, "exit")) {
            if (read_int(v, &r.exit) < 0)
                goto out;
            have_exit = true;
        } else if (key_is(k, "signal")) {
            if (read_int(v, &r.signal) < 0)
                goto out;
            have_signal = true;
        } else if (key_is(k, "stdout")) {
            if (read_bytes(v, &r.out, &r.out_len) < 0)
                goto out;
            have_out = true;
        } else if (key_is(k, "stderr")) {
            if (read_bytes(v, &r.err, &r.err_len) < 0)
                goto out;
            have_err = true;
        } else if (key_is(k, "wall_ms")) {
            if (read_int(v, &n) < 0 || n < 0)
                goto out;
            r.wall_ms = (uint64_t)n;
        } else if (key_is(k, "truncated")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                goto out;
            r.truncated = v->via.boolean;
        }
        /* Other keys (user_ms, sys_ms, maxrss_kb, later additions) are
         * not needed by the tool. */
    }
    if (have_exit && have_signal && have_out && have_err) {
        *ret = r;
        rc = 0;
    }
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}
