/*
 * keys.h - CURVE key files, shared by libtaskq, taskqd, taskq-worker and
 * the taskq tool.
 *
 * `taskq keygen NAME` writes a pair: NAME.pub (mode 0644) and NAME.key
 * (mode 0600), each holding one key as 40 Z85 characters (ZeroMQ's
 * encoding of its 32 bytes) under a comment line:
 *
 *     # taskq CURVE public key "NAME"
 *     <40 Z85 characters>
 *
 *     # taskq CURVE secret key "NAME"; keep this file private
 *     <40 Z85 characters>
 *
 * Reading: empty lines and lines whose first non-blank character is '#'
 * are skipped; the first other line, without its surrounding blanks, must
 * be exactly 40 Z85 characters that decode; anything else is an error.
 * Lines after the key are not read.  A secret key yields its public key
 * too (tq_key_public).
 *
 * Keys are passed around as Z85 text: char[41], NUL-terminated.  Every
 * function here is thread-safe and keeps no state.
 */
#ifndef TASKQ_KEYS_H
#define TASKQ_KEYS_H

#include <stdbool.h>
#include <stddef.h>

/* Characters of a key in Z85, and the size of a buffer holding one. */
#define TQ_KEY_Z85_LEN 40
#define TQ_KEY_Z85_SIZE 41

/* True if s is exactly 40 Z85 characters that decode to a key. */
bool tq_key_is_z85(const char *s);

/*
 * Read a key file, or take a literal: a string of exactly 40 Z85
 * characters is the key itself, unless a file of that name exists (paths
 * may be made of Z85 characters too).  Returns 0 and the key in z85 (41
 * bytes, NUL-terminated), or -errno (-ENOENT, -EACCES, -EISDIR, ...) when
 * the file cannot be read, or -EINVAL when it holds no key as described
 * above; err (cap bytes, may be NULL if cap is 0) then gets a message for
 * people that names the file.
 */
int tq_key_read(const char *path_or_key, char z85[TQ_KEY_Z85_SIZE], char *err, size_t cap);

/* The public key (Z85) of a secret key (Z85).  0 or -EINVAL. */
int tq_key_public(const char secret[TQ_KEY_Z85_SIZE], char public_z85[TQ_KEY_Z85_SIZE]);

/*
 * Make a new key pair and write it to base.pub and base.key (base may
 * include a directory; its last component names the key in the files'
 * comments).  Both files are flushed to disk.  Without force, they are
 * created with O_CREAT|O_EXCL: an existing base.pub or base.key is left
 * alone and -EEXIST returned.  With force, both are written to temporary
 * files beside them, then renamed over the old ones.  Never leaves a new
 * file of the pair without the other: if the second cannot be written (or
 * renamed into place) the first is removed.  Returns 0, or -errno with a
 * message in err.
 */
int tq_key_write_pair(const char *base, bool force, char *err, size_t cap);

#endif /* TASKQ_KEYS_H */
