/*
 * auth.h - who may connect and as what: the CurveZMQ allow-lists (one
 * directory of public keys per role, re-read on SIGHUP), the ZAP handler
 * that admits or refuses each CURVE handshake, and the owner of a task, a
 * keyed hash of the identity that submitted it (a CURVE key, a local
 * Unix user, or a client session) that isolation compares.
 */
#ifndef TQD_AUTH_H
#define TQD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Roles a key may hold: the allow-list directories it was found in. */
enum {
    TQD_ROLE_CLIENT = 1, /* --allow-clients: may submit and wait */
    TQD_ROLE_WORKER = 2, /* --allow-workers: may run tasks */
    TQD_ROLE_ADMIN = 4,  /* --admin-keys: a client that sees every task */
    TQD_ROLE_EXEC = 8,   /* --allow-exec: a client that may submit exec tasks */
};

#define TQD_KEY_LEN 32 /* a CURVE public key */

/* Where the allow-lists are; any may be NULL (no key holds that role). */
typedef struct tqd_auth_dirs {
    const char *clients;
    const char *workers;
    const char *admins;
    const char *exec;
} tqd_auth_dirs_t;

typedef struct tqd_auth tqd_auth_t;

/*
 * Bind the ZAP handler in zctx (it must exist before the first CURVE
 * socket binds) and load the allow-lists of dirs (copied).  Returns 0 and
 * *ret, or a negative errno after logging why (a directory that cannot be
 * read, a key file that is not a key).
 */
int tqd_auth_open(void *zctx, const tqd_auth_dirs_t *dirs, tqd_auth_t **ret);

/* Load the allow-lists of dirs as tqd_auth_open would, and forget them:
 * 0, or a negative errno after logging why (for --check-config). */
int tqd_auth_check(const tqd_auth_dirs_t *dirs);

/* The ZAP socket, to poll for ZMQ_POLLIN beside the broker's socket. */
void *tqd_auth_socket(const tqd_auth_t *a);

/* Answer every ZAP request waiting (non-blocking): a known key is
 * admitted with its Z85 text as user id, anything else refused (400). */
void tqd_auth_serve(tqd_auth_t *a);

/* Read the allow-lists again.  On an error the old lists stay (logged).
 * Returns 0 or a negative errno. */
int tqd_auth_reload(tqd_auth_t *a);

/* The roles of key (TQD_KEY_LEN bytes): 0 for an unknown key. */
unsigned tqd_auth_roles(const tqd_auth_t *a, const uint8_t *key);

/* CURVE handshakes refused so far (STATS keys_refused). */
uint64_t tqd_auth_refused(const tqd_auth_t *a);

/* Close the ZAP socket and free everything; NULL is fine. */
void tqd_auth_close(tqd_auth_t **a);

/* Kinds of identity an owner is made from. */
typedef enum tqd_ident_kind {
    TQD_IDENT_KEY = 1,     /* a CURVE public key */
    TQD_IDENT_UID = 2,     /* a local Unix user */
    TQD_IDENT_SESSION = 3, /* a client_id: one client process */
} tqd_ident_kind_t;

/*
 * The owner of what the identity (kind, n bytes at p) submits: SipHash-2-4
 * under a key derived from store_id, so the same identity owns its tasks
 * again after a restart; never 0 (the owner of rows that predate owners,
 * which only admins see).
 */
uint64_t tqd_owner_of(uint64_t store_id, tqd_ident_kind_t kind, const void *p, size_t n);

/* SipHash-2-4 of n bytes at p under the 16-byte key k. */
uint64_t tqd_siphash(const uint8_t k[16], const void *p, size_t n);

#endif /* TQD_AUTH_H */
