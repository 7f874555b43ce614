/*
 * auth.c - the CurveZMQ allow-lists, the ZAP handler (RFC 27) that the
 * broker's loop serves on inproc://zeromq.zap.01, and task owners.
 */
#include "auth.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keys.h"
#include "log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES   7    /* version, id, domain, address, identity, mechanism, key */
#define MAX_KEYS     65536 /* keys in all allow-lists together */

typedef struct key_entry {
    uint8_t key[TQD_KEY_LEN];
    unsigned roles;
} key_entry_t;

struct tqd_auth {
    void *zap;           /* REP socket the ZAP requests come to */
    tqd_auth_dirs_t dirs; /* copies of the directory names */
    key_entry_t *keys;   /* sorted by key */
    size_t n_keys;       /* entries of keys */
    uint64_t refused;    /* handshakes refused */
};

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, TQD_KEY_LEN);
}

/* Add every *.pub key of dir to *v with role (merging a key already
 * there).  Returns 0 or a negative errno after logging why. */
static int load_dir(const char *dir, unsigned role, key_entry_t **v, size_t *n, size_t *cap)
{
    if (!dir)
        return 0;
    DIR *d = opendir(dir);
    if (!d) {
        int rc = -errno;
        TQ_LOG(LOG_ERR, "cannot read the key directory %s: %s", dir, strerror(errno));
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0)
            continue;
        char path[4096], z85[41], err[256];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) {
            TQ_LOG(LOG_ERR, "%s/%s: path too long", dir, e->d_name);
            rc = -ENAMETOOLONG;
            break;
        }
        uint8_t key[TQD_KEY_LEN];
        if ((rc = tq_key_read(path, z85, err, sizeof err)) < 0 || !zmq_z85_decode(key, z85)) {
            TQ_LOG(LOG_ERR, "%s", rc < 0 ? err : "not a key file");
            rc = rc < 0 ? rc : -EINVAL;
            break;
        }
        size_t i = 0;
        while (i < *n && memcmp((*v)[i].key, key, TQD_KEY_LEN) != 0)
            i++;
        if (i == *n) {
            if (*n == MAX_KEYS) {
                TQ_LOG(LOG_ERR, "more than %d keys in the allow-lists", MAX_KEYS);
                rc = -E2BIG;
                break;
            }
            if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 64;
                key_entry_t *nv = realloc(*v, ncap * sizeof *nv);
                if (!nv) {
                    rc = -ENOMEM;
                    break;
                }
                *v = nv;
                *cap = ncap;
            }
            memcpy((*v)[i].key, key, TQD_KEY_LEN);
            (*v)[i].roles = 0;
            (*n)++;
        }
        (*v)[i].roles |= role;
    }
    closedir(d);
    return rc;
}

/* Read every allow-list into a new sorted table.  0 or -errno (logged). */
static int load(const tqd_auth_dirs_t *dirs, key_entry_t **ret, size_t *ret_n)
{
    key_entry_t *v = NULL;
    size_t n = 0, cap = 0;
    int rc = load_dir(dirs->clients, TQD_ROLE_CLIENT, &v, &n, &cap);
    if (rc == 0)
        rc = load_dir(dirs->workers, TQD_ROLE_WORKER, &v, &n, &cap);
    if (rc == 0)
        rc = load_dir(dirs->admins, TQD_ROLE_ADMIN | TQD_ROLE_CLIENT, &v, &n, &cap);
    if (rc == 0)
        rc = load_dir(dirs->exec, TQD_ROLE_EXEC, &v, &n, &cap);
    if (rc < 0) {
        free(v);
        return rc;
    }
    if (n)
        qsort(v, n, sizeof *v, key_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
}

int tqd_auth_check(const tqd_auth_dirs_t *dirs)
{
    key_entry_t *v;
    size_t n;
    int rc = load(dirs, &v, &n);
    if (rc == 0)
        free(v);
    return rc;
}

static char *dup_or_null(const char *s, bool *failed)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *failed = true;
    return d;
}

static void free_dirs(tqd_auth_dirs_t *d)
{
    free((char *)d->clients);
    free((char *)d->workers);
    free((char *)d->admins);
    free((char *)d->exec);
}

int tqd_auth_open(void *zctx, const tqd_auth_dirs_t *dirs, tqd_auth_t **ret)
{
    tqd_auth_t *a = calloc(1, sizeof *a);
    if (!a) {
        TQ_LOG(LOG_ERR, "out of memory");
        return -ENOMEM;
    }
    bool failed = false;
    a->dirs.clients = dup_or_null(dirs->clients, &failed);
    a->dirs.workers = dup_or_null(dirs->workers, &failed);
    a->dirs.admins = dup_or_null(dirs->admins, &failed);
    a->dirs.exec = dup_or_null(dirs->exec, &failed);
    int rc = failed ? -ENOMEM : load(&a->dirs, &a->keys, &a->n_keys);
    if (rc == 0) {
        a->zap = zmq_socket(zctx, ZMQ_REP);
        int zero = 0;
        if (!a->zap || zmq_setsockopt(a->zap, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
            zmq_bind(a->zap, ZAP_ENDPOINT) < 0) {
            rc = -errno;
            TQ_LOG(LOG_ERR, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        }
    }
    if (rc < 0) {
        tqd_auth_close(&a);
        return rc;
    }
    TQ_LOG(LOG_NOTICE, "CURVE on: %zu keys allowed", a->n_keys);
    *ret = a;
    return 0;
}

void *tqd_auth_socket(const tqd_auth_t *a)
{
    return a->zap;
}

unsigned tqd_auth_roles(const tqd_auth_t *a, const uint8_t *key)
{
    const key_entry_t *e = a->n_keys ? bsearch(key, a->keys, a->n_keys, sizeof *a->keys, key_cmp)
                                     : NULL;
    return e ? e->roles : 0;
}

uint64_t tqd_auth_refused(const tqd_auth_t *a)
{
    return a ? a->refused : 0;
}

int tqd_auth_reload(tqd_auth_t *a)
{
    key_entry_t *v;
    size_t n;
    int rc = load(&a->dirs, &v, &n);
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "allow-lists not reloaded; the previous ones stay in force");
        return rc;
    }
    free(a->keys);
    a->keys = v;
    a->n_keys = n;
    TQ_LOG(LOG_NOTICE, "allow-lists reloaded: %zu keys", n);
    return 0;
}

static void send_frame(void *s, const void *p, size_t n, bool more)
{
    while (zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0) < 0 && errno == EINTR)
        ;
}

/* Answer one ZAP request whose frames are f[0..n-1]. */
static void answer(tqd_auth_t *a, zmq_msg_t *f, int n)
{
    const char *status = "400", *text = "malformed ZAP request";
    char user[41] = "";
    if (n == ZAP_FRAMES && zmq_msg_size(&f[0]) == 3 && memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0 &&
        zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == TQD_KEY_LEN) {
        const uint8_t *key = zmq_msg_data(&f[6]);
        if (tqd_auth_roles(a, key)) {
            status = "200";
            text = "OK";
            zmq_z85_encode(user, key, TQD_KEY_LEN);
        } else {
            text = "unknown key";
        }
    }
    if (status[0] != '2') {
        a->refused++;
        char z85[41] = "?";
        if (n == ZAP_FRAMES && zmq_msg_size(&f[6]) == TQD_KEY_LEN)
            zmq_z85_encode(z85, zmq_msg_data(&f[6]), TQD_KEY_LEN);
        TQ_LOG(LOG_NOTICE, "refused a CURVE handshake from %.*s: %s (key %s)",
               n > 3 ? (int)zmq_msg_size(&f[3]) : 0, n > 3 ? (char *)zmq_msg_data(&f[3]) : "",
               text, z85);
    }
    send_frame(a->zap, "1.0", 3, true);
    send_frame(a->zap, n > 1 ? zmq_msg_data(&f[1]) : "", n > 1 ? zmq_msg_size(&f[1]) : 0, true);
    send_frame(a->zap, status, 3, true);
    send_frame(a->zap, text, strlen(text), true);
    send_frame(a->zap, user, strlen(user), true);
    send_frame(a->zap, "", 0, false);
}

void tqd_auth_serve(tqd_auth_t *a)
{
    for (int served = 0; served < 256; served++) {
        zmq_msg_t f[ZAP_FRAMES];
        int n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, a->zap, n ? 0 : ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                if (n == 0)
                    return; /* nothing waiting (or EINTR: the next turn) */
                break;
            }
            more = zmq_msg_more(&m);
            if (n < ZAP_FRAMES)
                f[n] = m;
            else
                zmq_msg_close(&m);
            n++;
        }
        int kept = n < ZAP_FRAMES ? n : ZAP_FRAMES;
        answer(a, f, n); /* reads only f[0 .. min(n, ZAP_FRAMES) - 1] */
        for (int i = 0; i < kept; i++)
            zmq_msg_close(&f[i]);
    }
}

void tqd_auth_close(tqd_auth_t **pa)
{
    tqd_auth_t *a = pa ? *pa : NULL;
    if (!a)
        return;
    if (a->zap)
        zmq_close(a->zap);
    free_dirs(&a->dirs);
    free(a->keys);
    free(a);
    *pa = NULL;
}

/* ---- Owners --------------------------------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void sip_round(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = ROTL(v[1], 13);
    v[1] ^= v[0];
    v[0] = ROTL(v[0], 32);
    v[2] += v[3];
    v[3] = ROTL(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = ROTL(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = ROTL(v[1], 17);
    v[1] ^= v[2];
    v[2] = ROTL(v[2], 32);
}

static uint64_t load_le(const uint8_t *p, size_t n)
{
    uint64_t x = 0;
    for (size_t i = n; i-- > 0;)
        x = x << 8 | p[i];
    return x;
}

uint64_t tqd_siphash(const uint8_t k[16], const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le(k, 8), k1 = load_le(k + 8, 8);
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575u, k1 ^ 0x646f72616e646f6du,
                     k0 ^ 0x6c7967656e657261u, k1 ^ 0x7465646279746573u};
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le(p + i, 8);
        v[3] ^= m;
        sip_round(v);
        sip_round(v);
        v[0] ^= m;
    }
    uint64_t last = (uint64_t)(n & 0xff) << 56 | load_le(p + whole, n - whole);
    v[3] ^= last;
    sip_round(v);
    sip_round(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t tqd_owner_of(uint64_t store_id, tqd_ident_kind_t kind, const void *p, size_t n)
{
    uint8_t k[16] = "taskq-owner-v1\0";
    for (int i = 0; i < 8; i++)
        k[i] ^= (uint8_t)(store_id >> (8 * i));
    uint8_t buf[1 + 64];
    if (n > 64)
        n = 64;
    buf[0] = (uint8_t)kind;
    memcpy(buf + 1, p, n);
    uint64_t h = tqd_siphash(k, buf, 1 + n);
    return h ? h : 1;
}
