/*
 * keys.c - CURVE key files: reading a key (from a file or as a literal),
 * the public key of a secret key, and writing a new pair (taskq keygen).
 * The format is described in keys.h.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

/* A key file is a few lines; anything much larger is something else. */
#define KEY_FILE_MAX 65536

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static void say(char *err, size_t cap, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void say(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* True if the n bytes at s are a key in Z85. */
static bool z85_span_ok(const char *s, size_t n)
{
    if (n != TQ_KEY_Z85_LEN)
        return false;
    char text[TQ_KEY_Z85_SIZE];
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || !strchr(z85_chars, s[i]))
            return false;
        text[i] = s[i];
    }
    text[n] = '\0';
    uint8_t bin[32];
    bool ok = zmq_z85_decode(bin, text) != NULL;
    explicit_bzero(bin, sizeof bin);
    explicit_bzero(text, sizeof text);
    return ok;
}

bool tq_key_is_z85(const char *s)
{
    return s && strnlen(s, TQ_KEY_Z85_LEN + 1) == TQ_KEY_Z85_LEN &&
           z85_span_ok(s, TQ_KEY_Z85_LEN);
}

static bool blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Find the key in the len bytes of a key file.  0 or -EINVAL. */
static int parse_key_file(const char *path, const char *buf, size_t len,
                          char z85[TQ_KEY_Z85_SIZE], char *err, size_t cap)
{
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t a = pos, b = end;
        line++;
        pos = end + 1;
        while (a < b && blank(buf[a]))
            a++;
        while (b > a && blank(buf[b - 1]))
            b--;
        if (a == b || buf[a] == '#')
            continue;
        if (!z85_span_ok(buf + a, b - a)) {
            say(err, cap, "%s: line %zu is not a CURVE key (40 Z85 characters)", path, line);
            return -EINVAL;
        }
        memcpy(z85, buf + a, TQ_KEY_Z85_LEN);
        z85[TQ_KEY_Z85_LEN] = '\0';
        return 0;
    }
    say(err, cap, "%s: no CURVE key in the file", path);
    return -EINVAL;
}

static int read_key_file(const char *path, char z85[TQ_KEY_Z85_SIZE], char *err, size_t cap)
{
    /* O_NONBLOCK: a FIFO must not hang the open; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        say(err, cap, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        say(err, cap, "%s: %s", path, strerror(e));
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        say(err, cap, "%s: %s", path, strerror(EISDIR));
        return -EISDIR;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        close(fd);
        say(err, cap, "%s: not a key file (%s)", path,
            S_ISREG(st.st_mode) ? "too large" : "not a regular file");
        return -EINVAL;
    }
    char *buf = malloc(KEY_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        say(err, cap, "%s: %s", path, strerror(ENOMEM));
        return -ENOMEM;
    }
    size_t len = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, KEY_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            say(err, cap, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEY_FILE_MAX) {
            rc = -EINVAL;
            say(err, cap, "%s: not a key file (too large)", path);
            break;
        }
    }
    close(fd);
    if (rc == 0)
        rc = parse_key_file(path, buf, len, z85, err, cap);
    /* The file may hold a secret key. */
    explicit_bzero(buf, len);
    free(buf);
    return rc;
}

int tq_key_read(const char *path_or_key, char z85[TQ_KEY_Z85_SIZE], char *err, size_t cap)
{
    struct stat st;
    if (!path_or_key || !path_or_key[0]) {
        say(err, cap, "no key file given");
        return -EINVAL;
    }
    if (tq_key_is_z85(path_or_key) && stat(path_or_key, &st) != 0) {
        memcpy(z85, path_or_key, TQ_KEY_Z85_SIZE);
        return 0;
    }
    return read_key_file(path_or_key, z85, err, cap);
}

int tq_key_public(const char secret[TQ_KEY_Z85_SIZE], char public_z85[TQ_KEY_Z85_SIZE])
{
    char pub[TQ_KEY_Z85_SIZE];
    if (!secret || !tq_key_is_z85(secret) || zmq_curve_public(pub, secret) != 0)
        return -EINVAL;
    memcpy(public_z85, pub, sizeof pub);
    return 0;
}

/* Give the open file fd exactly mode, write len bytes to it and flush them
 * to disk.  0 or -errno. */
static int fill_file(int fd, mode_t mode, const char *data, size_t len)
{
    /* The umask may have taken bits away; a key file's mode is part of
     * its meaning. */
    if (fchmod(fd, mode) != 0)
        return -errno;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return fsync(fd) != 0 ? -errno : 0;
}

/* Write len bytes to a file made for them: path itself (created with
 * O_EXCL), or, if temp, path + ".XXXXXX" made unique by mkstemp() (path
 * must have room for the suffix).  0 or -errno; on failure the file is
 * gone. */
static int write_new_file(char *path, bool temp, mode_t mode, const char *data, size_t len)
{
    int fd;
    if (temp) {
        strcat(path, ".XXXXXX");
        fd = mkstemp(path); /* mode 0600 */
        if (fd >= 0)
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    } else {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, mode);
    }
    if (fd < 0)
        return -errno;
    int rc = fill_file(fd, mode, data, len);
    if (close(fd) != 0 && rc == 0 && errno != EINTR)
        rc = -errno;
    if (rc != 0)
        unlink(path);
    return rc;
}

/* Flush the directory entry of path (best effort: a directory that cannot
 * be opened or synced does not undo what was written). */
static void sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* The key's name for the comment line: the last part of base, with
 * characters that would break the line or the quotes replaced. */
static void comment_name(const char *base, char *out, size_t cap)
{
    const char *slash = strrchr(base, '/');
    const char *name = slash ? slash + 1 : base;
    size_t n = 0;
    for (; name[n] && n + 1 < cap; n++) {
        unsigned char ch = (unsigned char)name[n];
        out[n] = ch < 0x20 || ch == 0x7f || ch == '"' ? '?' : (char)ch;
    }
    out[n] = '\0';
}

static void write_failed(const char *path, int rc, char *err, size_t cap)
{
    if (rc == -EEXIST)
        say(err, cap, "%s already exists", path);
    else
        say(err, cap, "cannot write %s: %s", path, strerror(-rc));
}

int tq_key_write_pair(const char *base, bool force, char *err, size_t cap)
{
    /* Room for the ".XXXXXX" of the temporary files --force writes. */
    char pub_path[PATH_MAX], key_path[PATH_MAX], pub_tmp[PATH_MAX + 8], key_tmp[PATH_MAX + 8];
    size_t blen = base ? strlen(base) : 0;
    if (blen == 0 || base[blen - 1] == '/') {
        say(err, cap, "\"%s\" does not name a key: give a file name without .pub or .key",
            base ? base : "");
        return -EINVAL;
    }
    if ((size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", base) >= sizeof pub_path ||
        (size_t)snprintf(key_path, sizeof key_path, "%s.key", base) >= sizeof key_path) {
        say(err, cap, "%s: %s", base, strerror(ENAMETOOLONG));
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (!force) {
        /* O_EXCL below closes the race with another writer. */
        const char *there = lstat(pub_path, &st) == 0   ? pub_path
                            : lstat(key_path, &st) == 0 ? key_path
                                                        : NULL;
        if (there) {
            say(err, cap, "%s already exists", there);
            return -EEXIST;
        }
    }

    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE];
    if (zmq_curve_keypair(pub, sec) != 0) {
        int e = errno ? errno : ENOTSUP;
        say(err, cap, "cannot make a CURVE key pair: %s (is ZeroMQ built with CURVE?)",
            strerror(e));
        return -e;
    }
    char name[256], key_text[512], pub_text[512];
    comment_name(base, name, sizeof name);
    int key_len = snprintf(key_text, sizeof key_text,
                           "# taskq CURVE secret key \"%s\"; keep this file private\n%s\n", name,
                           sec);
    int pub_len = snprintf(pub_text, sizeof pub_text, "# taskq CURVE public key \"%s\"\n%s\n",
                           name, pub);
    explicit_bzero(sec, sizeof sec);

    /* Without force: each file created with O_EXCL, the secret first (a
     * public key alone would be useless).  With force: both written to
     * temporary files beside them, then renamed over the old pair, so
     * that a failure before the renames leaves the old pair whole. */
    strcpy(key_tmp, key_path);
    strcpy(pub_tmp, pub_path);
    int rc = write_new_file(key_tmp, force, 0600, key_text, (size_t)key_len);
    explicit_bzero(key_text, sizeof key_text);
    if (rc != 0) {
        write_failed(key_path, rc, err, cap);
        return rc;
    }
    rc = write_new_file(pub_tmp, force, 0644, pub_text, (size_t)pub_len);
    if (rc != 0) {
        unlink(key_tmp);
        write_failed(pub_path, rc, err, cap);
        return rc;
    }
    if (force) {
        if (rename(key_tmp, key_path) != 0) {
            rc = -errno;
            unlink(key_tmp);
            unlink(pub_tmp);
            say(err, cap, "cannot replace %s: %s", key_path, strerror(-rc));
            return rc;
        }
        if (rename(pub_tmp, pub_path) != 0) {
            /* The new secret key without its public key would be half a
             * pair: take it away too. */
            rc = -errno;
            unlink(pub_tmp);
            unlink(key_path);
            say(err, cap, "cannot replace %s: %s", pub_path, strerror(-rc));
            return rc;
        }
    }
    sync_parent(key_path);
    return 0;
}
