/*
 * check_keys.c - CURVE keys: the key files of common/keys.c (a pair
 * written and read back, file modes, no overwrite without force, literal
 * keys, files that hold no key) and libtaskq's use of them, against a raw
 * ZeroMQ ROUTER on loopback standing in for the broker: the CURVE
 * handshake completes and HELLO arrives; a key refused at the ZAP step, a
 * broker without CURVE, and ERROR DENIED in answer to HELLO end client
 * waits and taskq_worker_run() with TASKQ_EDENIED at once; a wrong server
 * key ends in TASKQ_ECLOSED with a hint.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"
#include "taskq.h"
#include "taskq_proto.h"

#define ck_assert_code(got, want)                                                       \
    ck_assert_msg((got) == (want), "%s: got %s (%s), want %s", #got, taskq_errname(got), \
                  taskq_strerror(got), taskq_errname(want))

static char dir[64];

static void dir_setup(void)
{
    strcpy(dir, "/tmp/check_keys.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* dir/name into buf. */
static const char *in_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Write text to dir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    in_dir(path, sizeof path, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- key files ----------------------------------------------------------- */

START_TEST(test_pair_round_trip)
{
    char base[128], pub_path[160], key_path[160], err[512] = "";
    in_dir(base, sizeof base, "alice");
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), 0);
    snprintf(pub_path, sizeof pub_path, "%s.pub", base);
    snprintf(key_path, sizeof key_path, "%s.key", base);

    struct stat st;
    ck_assert_int_eq(stat(key_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(stat(pub_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0644);

    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], derived[TQ_KEY_Z85_SIZE];
    ck_assert_int_eq(tq_key_read(pub_path, pub, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(key_path, sec, err, sizeof err), 0);
    ck_assert_int_eq(strlen(pub), 40);
    ck_assert_int_eq(strlen(sec), 40);
    ck_assert_str_ne(pub, sec);
    ck_assert_int_eq(tq_key_public(sec, derived), 0);
    ck_assert_str_eq(derived, pub);

    /* The documented layout: a comment naming the key, then the key. */
    char text[256];
    FILE *f = fopen(pub_path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, "# taskq CURVE public key \"alice\"\n%s\n", pub);
    ck_assert_str_eq(text, want);
    f = fopen(key_path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    snprintf(want, sizeof want, "# taskq CURVE secret key \"alice\"; keep this file private\n%s\n",
             sec);
    ck_assert_str_eq(text, want);

    /* A second pair is another key. */
    char base2[128], other[TQ_KEY_Z85_SIZE], path2[160];
    in_dir(base2, sizeof base2, "bob");
    ck_assert_int_eq(tq_key_write_pair(base2, false, err, sizeof err), 0);
    snprintf(path2, sizeof path2, "%s.pub", base2);
    ck_assert_int_eq(tq_key_read(path2, other, err, sizeof err), 0);
    ck_assert_str_ne(other, pub);
}
END_TEST

START_TEST(test_modes_despite_umask)
{
    char base[128], path[160], err[512];
    mode_t old = umask(0277);
    in_dir(base, sizeof base, "strict");
    int rc = tq_key_write_pair(base, false, err, sizeof err);
    umask(old);
    ck_assert_int_eq(rc, 0);
    struct stat st;
    snprintf(path, sizeof path, "%s.key", base);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    snprintf(path, sizeof path, "%s.pub", base);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0644);
}
END_TEST

START_TEST(test_no_overwrite_without_force)
{
    char base[128], pub_path[160], key_path[160], err[512] = "";
    char pub1[TQ_KEY_Z85_SIZE], pub2[TQ_KEY_Z85_SIZE], sec1[TQ_KEY_Z85_SIZE],
        sec2[TQ_KEY_Z85_SIZE];
    in_dir(base, sizeof base, "carol");
    snprintf(pub_path, sizeof pub_path, "%s.pub", base);
    snprintf(key_path, sizeof key_path, "%s.key", base);
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(pub_path, pub1, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(key_path, sec1, err, sizeof err), 0);

    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -EEXIST);
    ck_assert_msg(strstr(err, "carol.pub") && strstr(err, "exists"), "message: %s", err);
    ck_assert_int_eq(tq_key_read(pub_path, pub2, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(key_path, sec2, err, sizeof err), 0);
    ck_assert_str_eq(pub1, pub2);
    ck_assert_str_eq(sec1, sec2);

    /* Either file alone is enough to refuse, and nothing is added. */
    ck_assert_int_eq(unlink(pub_path), 0);
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -EEXIST);
    ck_assert_int_eq(access(pub_path, F_OK), -1);
    ck_assert_int_eq(tq_key_read(key_path, sec2, err, sizeof err), 0);
    ck_assert_str_eq(sec1, sec2);
    ck_assert_int_eq(unlink(key_path), 0);
    write_file("carol.pub", "not a key\n");
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -EEXIST);
    ck_assert_int_eq(access(key_path, F_OK), -1);

    /* force replaces both. */
    ck_assert_int_eq(tq_key_write_pair(base, true, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(pub_path, pub2, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_read(key_path, sec2, err, sizeof err), 0);
    ck_assert_str_ne(pub1, pub2);
    char derived[TQ_KEY_Z85_SIZE];
    ck_assert_int_eq(tq_key_public(sec2, derived), 0);
    ck_assert_str_eq(derived, pub2);
    struct stat st;
    ck_assert_int_eq(stat(key_path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
}
END_TEST

START_TEST(test_write_failures)
{
    char base[128], err[512] = "";
    /* No such directory: nothing is written. */
    in_dir(base, sizeof base, "missing/dave");
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "dave.key") != NULL, "message: %s", err);
    ck_assert_int_eq(tq_key_write_pair("", false, err, sizeof err), -EINVAL);
    in_dir(base, sizeof base, "sub/");
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -EINVAL);

    /* A directory where the public key goes: refused without force; with
     * force, the secret key, already in place when the public one cannot
     * be, is taken away again. */
    char path[160];
    in_dir(base, sizeof base, "erin");
    snprintf(path, sizeof path, "%s.pub", base);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    ck_assert_int_eq(tq_key_write_pair(base, false, err, sizeof err), -EEXIST);
    ck_assert_int_eq(tq_key_write_pair(base, true, err, sizeof err), -EISDIR);
    snprintf(path, sizeof path, "%s.key", base);
    ck_assert_int_eq(access(path, F_OK), -1);
    /* No temporary file is left behind either. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s' | grep -v '^erin.pub$')\"", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_literal_keys)
{
    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], got[TQ_KEY_Z85_SIZE], err[512];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    ck_assert(tq_key_is_z85(pub));
    ck_assert_int_eq(tq_key_read(pub, got, err, sizeof err), 0);
    ck_assert_str_eq(got, pub);
    ck_assert_int_eq(tq_key_read(sec, got, err, sizeof err), 0);
    ck_assert_str_eq(got, sec);

    /* Not Z85 (',' is not in the alphabet), or 39 characters: a path. */
    char bad[TQ_KEY_Z85_SIZE];
    memcpy(bad, pub, sizeof bad);
    bad[7] = ',';
    ck_assert(!tq_key_is_z85(bad));
    ck_assert_int_eq(tq_key_read(bad, got, err, sizeof err), -ENOENT);
    bad[7] = pub[7];
    bad[39] = '\0';
    ck_assert(!tq_key_is_z85(bad));
    ck_assert_int_eq(tq_key_read(bad, got, err, sizeof err), -ENOENT);
    ck_assert_int_eq(tq_key_read("", got, err, sizeof err), -EINVAL);
    ck_assert_int_eq(tq_key_read(NULL, got, err, sizeof err), -EINVAL);
    /* Z85 characters that overflow 32 bits in a group do not decode. */
    ck_assert(!tq_key_is_z85("########################################"));

    /* A file whose name is 40 Z85 characters is read as a file. */
    char cwd[512];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    char name[TQ_KEY_Z85_SIZE];
    memcpy(name, "abcdefghijklmnopqrstuvwxyz0123456789ABCD", sizeof name);
    ck_assert(tq_key_is_z85(name));
    char text[64];
    snprintf(text, sizeof text, "%s\n", pub);
    FILE *f = fopen(name, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    int rc = tq_key_read(name, got, err, sizeof err);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(got, pub);
}
END_TEST

START_TEST(test_file_layouts)
{
    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], got[TQ_KEY_Z85_SIZE], err[512];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    char text[512];

    /* Comments (also indented), blank lines, blanks around the key, CRLF,
     * no final newline; what follows the key is not read. */
    snprintf(text, sizeof text, "\n   # a comment\n\t\n#another\r\n  \t%s \t\r\nanything\n", pub);
    ck_assert_int_eq(tq_key_read(write_file("a.pub", text), got, err, sizeof err), 0);
    ck_assert_str_eq(got, pub);
    ck_assert_int_eq(tq_key_read(write_file("b.pub", pub), got, err, sizeof err), 0);
    ck_assert_str_eq(got, pub);
}
END_TEST

START_TEST(test_garbage_files)
{
    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], got[TQ_KEY_Z85_SIZE], err[512];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    char text[512];
    const char *path;

    path = write_file("empty.pub", "");
    ck_assert_int_eq(tq_key_read(path, got, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, path) && strstr(err, "no CURVE key"), "message: %s", err);
    path = write_file("comments.pub", "# only\n\n  # comments\n");
    ck_assert_int_eq(tq_key_read(path, got, err, sizeof err), -EINVAL);

    snprintf(text, sizeof text, "# short\n%.39s\n", pub);
    path = write_file("short.pub", text);
    ck_assert_int_eq(tq_key_read(path, got, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "line 2") != NULL, "message: %s", err);
    snprintf(text, sizeof text, "%sX\n", pub);
    ck_assert_int_eq(tq_key_read(write_file("long.pub", text), got, err, sizeof err), -EINVAL);
    snprintf(text, sizeof text, "%.20s %.19s\n", pub, pub + 20);
    ck_assert_int_eq(tq_key_read(write_file("space.pub", text), got, err, sizeof err), -EINVAL);
    snprintf(text, sizeof text, "%.39s\"\n", pub);
    ck_assert_int_eq(tq_key_read(write_file("quote.pub", text), got, err, sizeof err), -EINVAL);
    snprintf(text, sizeof text, "%.39s~\n", pub);
    ck_assert_int_eq(tq_key_read(write_file("tilde.pub", text), got, err, sizeof err), -EINVAL);
    /* A line before the key that is not a comment. */
    snprintf(text, sizeof text, "public key:\n%s\n", pub);
    ck_assert_int_eq(tq_key_read(write_file("label.pub", text), got, err, sizeof err), -EINVAL);
    /* Binary: the key with a NUL inside. */
    char bin[48];
    memcpy(bin, pub, 40);
    bin[10] = '\0';
    char bpath[128];
    in_dir(bpath, sizeof bpath, "nul.pub");
    FILE *f = fopen(bpath, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(bin, 1, 40, f);
    fclose(f);
    ck_assert_int_eq(tq_key_read(bpath, got, err, sizeof err), -EINVAL);
    /* Large files are not key files. */
    in_dir(bpath, sizeof bpath, "big.pub");
    f = fopen(bpath, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 4000; i++)
        fputs("# padding padding padding\n", f);
    fprintf(f, "%s\n", pub);
    fclose(f);
    ck_assert_int_eq(tq_key_read(bpath, got, err, sizeof err), -EINVAL);

    /* Files that cannot be read as such. */
    in_dir(bpath, sizeof bpath, "none.pub");
    ck_assert_int_eq(tq_key_read(bpath, got, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, bpath) != NULL, "message: %s", err);
    ck_assert_int_eq(tq_key_read(dir, got, err, sizeof err), -EISDIR);
    in_dir(bpath, sizeof bpath, "fifo.pub");
    ck_assert_int_eq(mkfifo(bpath, 0600), 0);
    ck_assert_int_eq(tq_key_read(bpath, got, err, sizeof err), -EINVAL);
    if (geteuid() != 0) {
        path = write_file("locked.key", sec);
        ck_assert_int_eq(chmod(path, 0), 0);
        ck_assert_int_eq(tq_key_read(path, got, err, sizeof err), -EACCES);
    }
    /* err may be left out. */
    ck_assert_int_eq(tq_key_read(bpath, got, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(test_public_from_secret)
{
    for (int i = 0; i < 20; i++) {
        char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], got[TQ_KEY_Z85_SIZE];
        ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
        ck_assert_int_eq(tq_key_public(sec, got), 0);
        ck_assert_str_eq(got, pub);
    }
    char got[TQ_KEY_Z85_SIZE] = "unchanged";
    char short_key[TQ_KEY_Z85_SIZE] = "tooshort";
    char bad_key[TQ_KEY_Z85_SIZE] = "abcdefghijklmnopqrstuvwxyz0123456789ABC,";
    ck_assert_int_eq(tq_key_public(short_key, got), -EINVAL);
    ck_assert_int_eq(tq_key_public(bad_key, got), -EINVAL);
    ck_assert_int_eq(tq_key_public(NULL, got), -EINVAL);
    ck_assert_str_eq(got, "unchanged");
}
END_TEST

/* ---- libtaskq with CURVE, against a raw ROUTER --------------------------- */

/* What the stand-in broker does. */
typedef enum fake_mode {
    FAKE_SILENT,      /* record what comes, answer nothing */
    FAKE_DENY_HELLO,  /* answer every HELLO with ERROR DENIED */
} fake_mode_t;

typedef struct fake {
    void *ctx;
    void *router;
    void *zap;               /* REP on inproc://zeromq.zap.01, or NULL */
    int zap_status;          /* what the ZAP handler answers: 200, 400... */
    fake_mode_t mode;
    bool curve;              /* the ROUTER is a CURVE server */
    char endpoint[128];
    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE]; /* the broker's keys */
    atomic_bool stop;
    atomic_int hellos;       /* HELLO frames received */
    atomic_int hello_role;   /* role of the last one */
    atomic_int zap_requests; /* ZAP requests answered */
    pthread_t thread, zap_thread;
    bool zap_started;
} fake_t;

static fake_t fake;

/* The ZAP handler: answers every request with fake.zap_status. */
static void *zap_main(void *arg)
{
    (void)arg;
    for (;;) {
        char frames[8][512];
        int len[8], n = 0, more = 1;
        while (more) {
            int r = zmq_recv(fake.zap, frames[n < 7 ? n : 7], sizeof frames[0], 0);
            if (r < 0)
                return NULL; /* the context is shut down */
            len[n < 7 ? n : 7] = r < (int)sizeof frames[0] ? r : (int)sizeof frames[0];
            if (n < 7)
                n++;
            size_t sz = sizeof more;
            zmq_getsockopt(fake.zap, ZMQ_RCVMORE, &more, &sz);
        }
        char status[8];
        snprintf(status, sizeof status, "%d", fake.zap_status);
        zmq_send(fake.zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(fake.zap, frames[1], (size_t)len[1], ZMQ_SNDMORE); /* request id */
        zmq_send(fake.zap, status, strlen(status), ZMQ_SNDMORE);
        zmq_send(fake.zap, "denied by the test", 18, ZMQ_SNDMORE);
        zmq_send(fake.zap, "", 0, ZMQ_SNDMORE);
        zmq_send(fake.zap, "", 0, 0);
        atomic_fetch_add(&fake.zap_requests, 1);
    }
}

/* The ROUTER's loop: read [identity, frame]; count HELLOs and answer them
 * as fake.mode says. */
static void *fake_main(void *arg)
{
    (void)arg;
    taskq_limits_t lim;
    taskq_limits_default(&lim);
    taskq_buf_t out = {0};
    while (!atomic_load(&fake.stop)) {
        zmq_pollitem_t item = {fake.router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 50) <= 0)
            continue;
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, fake.router, 0) < 0 || !zmq_msg_more(&id) ||
            zmq_msg_recv(&body, fake.router, 0) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        taskq_msg_t m;
        if (taskq_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &lim, &m, NULL) == 0 &&
            m.type == TASKQ_MSG_HELLO) {
            atomic_store(&fake.hello_role, m.u.hello.role);
            atomic_fetch_add(&fake.hellos, 1);
            taskq_buf_reset(&out);
            if (fake.mode == FAKE_DENY_HELLO &&
                taskq_enc_error(&out, TASKQ_PERR_DENIED, 0,
                                taskq_span_cstr("this key lacks the role")) == 0 &&
                zmq_msg_send(&id, fake.router, ZMQ_SNDMORE) >= 0)
                zmq_send(fake.router, out.data, out.len, 0);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    taskq_buf_fini(&out);
    return NULL;
}

/* Start the stand-in broker: CURVE server or not, with a ZAP handler
 * answering zap_status (0: none), behaving as mode says. */
static void fake_start(bool curve, int zap_status, fake_mode_t mode)
{
    memset(&fake, 0, sizeof fake);
    fake.curve = curve;
    fake.zap_status = zap_status;
    fake.mode = mode;
    fake.ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(fake.ctx);
    ck_assert_int_eq(zmq_curve_keypair(fake.pub, fake.sec), 0);
    if (zap_status) {
        fake.zap = zmq_socket(fake.ctx, ZMQ_REP);
        ck_assert_int_eq(zmq_bind(fake.zap, "inproc://zeromq.zap.01"), 0);
        ck_assert_int_eq(pthread_create(&fake.zap_thread, NULL, zap_main, NULL), 0);
        fake.zap_started = true;
    }
    fake.router = zmq_socket(fake.ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(fake.router, ZMQ_LINGER, &zero, sizeof zero);
    if (curve) {
        ck_assert_int_eq(zmq_setsockopt(fake.router, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
        ck_assert_int_eq(zmq_setsockopt(fake.router, ZMQ_CURVE_SECRETKEY, fake.sec, 40), 0);
    }
    ck_assert_int_eq(zmq_bind(fake.router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof fake.endpoint;
    ck_assert_int_eq(zmq_getsockopt(fake.router, ZMQ_LAST_ENDPOINT, fake.endpoint, &len), 0);
    ck_assert_int_eq(pthread_create(&fake.thread, NULL, fake_main, NULL), 0);
}

static void fake_stop(void)
{
    atomic_store(&fake.stop, true);
    pthread_join(fake.thread, NULL);
    zmq_close(fake.router);
    if (fake.zap_started) {
        zmq_ctx_shutdown(fake.ctx); /* ends the ZAP handler's recv */
        pthread_join(fake.zap_thread, NULL);
        zmq_close(fake.zap);
    }
    zmq_ctx_term(fake.ctx);
}

/* Wait up to ms for n HELLOs at the stand-in broker. */
static bool hellos_reach(int n, int ms)
{
    int64_t end = now_ms() + ms;
    while (atomic_load(&fake.hellos) < n && now_ms() < end)
        usleep(10000);
    return atomic_load(&fake.hellos) >= n;
}

/* A client key pair written to dir/client; the secret key's path. */
static const char *client_keys(char *pub)
{
    static char key_path[160];
    char base[128], pub_path[160], err[512];
    in_dir(base, sizeof base, "client");
    ck_assert_int_eq(tq_key_write_pair(base, true, err, sizeof err), 0);
    snprintf(key_path, sizeof key_path, "%s.key", base);
    snprintf(pub_path, sizeof pub_path, "%s.pub", base);
    ck_assert_int_eq(tq_key_read(pub_path, pub, err, sizeof err), 0);
    return key_path;
}

/* A client of the stand-in broker with CURVE keys: the broker's public key
 * as a literal, ours as a file. */
static taskq_client_t *curve_client(int32_t reconnect_limit_ms)
{
    char pub[TQ_KEY_Z85_SIZE];
    taskq_client_opts_t o = {
        .curve_server_key = fake.pub,
        .curve_key = client_keys(pub),
        .reconnect_limit_ms = reconnect_limit_ms,
    };
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(fake.endpoint, &o, &c), 0);
    return c;
}

static int echo(taskq_task_t *t, void *ud)
{
    (void)t;
    (void)ud;
    return 0;
}

/* taskq_worker_run() of a CURVE worker of the stand-in broker. */
static int curve_worker_run(int64_t *took_ms)
{
    char pub[TQ_KEY_Z85_SIZE];
    taskq_worker_opts_t o = {.curve_server_key = fake.pub, .curve_key = client_keys(pub)};
    taskq_worker_t *w = NULL;
    ck_assert_code(taskq_worker_new(fake.endpoint, &o, &w), 0);
    ck_assert_code(taskq_worker_register(w, "echo", echo, NULL), 0);
    int64_t start = now_ms();
    int rc = taskq_worker_run(w);
    *took_ms = now_ms() - start;
    taskq_worker_destroy(&w);
    return rc;
}

START_TEST(test_curve_handshake_completes)
{
    fake_start(true, 0, FAKE_SILENT);
    taskq_client_t *c = curve_client(0);
    /* The broker never answers: the wait runs out, but HELLO went through
     * the CURVE handshake. */
    ck_assert_code(taskq_client_ping(c, 300, NULL, NULL), TASKQ_ETIMEDOUT);
    ck_assert(hellos_reach(1, 5000));
    ck_assert_int_eq(atomic_load(&fake.hello_role), TASKQ_ROLE_CLIENT);
    taskq_client_destroy(&c);
    fake_stop();
}
END_TEST

static void *run_worker(void *w)
{
    taskq_worker_run(w);
    return NULL;
}

START_TEST(test_curve_worker_handshake_completes)
{
    fake_start(true, 0, FAKE_SILENT);
    char pub[TQ_KEY_Z85_SIZE];
    taskq_worker_opts_t o = {.curve_server_key = fake.pub, .curve_key = client_keys(pub)};
    taskq_worker_t *w = NULL;
    ck_assert_code(taskq_worker_new(fake.endpoint, &o, &w), 0);
    ck_assert_code(taskq_worker_register(w, "echo", echo, NULL), 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_worker, w), 0);
    ck_assert(hellos_reach(1, 5000));
    ck_assert_int_eq(atomic_load(&fake.hello_role), TASKQ_ROLE_WORKER);
    taskq_worker_stop(w);
    pthread_join(t, NULL);
    taskq_worker_destroy(&w);
    fake_stop();
}
END_TEST

START_TEST(test_key_refused_by_zap)
{
    fake_start(true, 400, FAKE_SILENT);
    taskq_client_t *c = curve_client(TASKQ_TIMEOUT_INFINITE);
    int64_t start = now_ms();
    ck_assert_code(taskq_client_ping(c, 20000, NULL, NULL), TASKQ_EDENIED);
    ck_assert_int_lt(now_ms() - start, 5000);
    ck_assert_int_ge(atomic_load(&fake.zap_requests), 1);
    ck_assert_int_eq(atomic_load(&fake.hellos), 0);

    /* A wait fails the same way, and asks again (once) before it does. */
    int asked = atomic_load(&fake.zap_requests);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "echo", "\xc0", 1, NULL, &f), 0);
    start = now_ms();
    ck_assert_code(taskq_future_wait(f, 20000), TASKQ_EDENIED);
    ck_assert_int_lt(now_ms() - start, 5000);
    ck_assert_int_eq(taskq_future_state(f), TASKQ_STATE_REFUSED);
    ck_assert_str_eq(taskq_future_error(f), "the broker refused this key");
    ck_assert_int_gt(atomic_load(&fake.zap_requests), asked);
    taskq_future_destroy(&f);

    /* Refused, the client does not keep knocking. */
    asked = atomic_load(&fake.zap_requests);
    usleep(500000);
    ck_assert_int_eq(atomic_load(&fake.zap_requests), asked);
    taskq_client_destroy(&c);
    fake_stop();
}
END_TEST

START_TEST(test_worker_key_refused_by_zap)
{
    fake_start(true, 400, FAKE_SILENT);
    int64_t took;
    ck_assert_code(curve_worker_run(&took), TASKQ_EDENIED);
    ck_assert_int_lt(took, 5000);
    ck_assert_int_eq(atomic_load(&fake.hellos), 0);
    fake_stop();
}
END_TEST

START_TEST(test_broker_without_curve)
{
    fake_start(false, 0, FAKE_SILENT);
    taskq_client_t *c = curve_client(TASKQ_TIMEOUT_INFINITE);
    int64_t start = now_ms();
    ck_assert_code(taskq_client_ping(c, 20000, NULL, NULL), TASKQ_EDENIED);
    ck_assert_int_lt(now_ms() - start, 5000);
    taskq_client_destroy(&c);
    int64_t took;
    ck_assert_code(curve_worker_run(&took), TASKQ_EDENIED);
    ck_assert_int_lt(took, 5000);
    fake_stop();
}
END_TEST

START_TEST(test_error_denied_in_answer_to_hello)
{
    fake_start(true, 0, FAKE_DENY_HELLO);
    taskq_client_t *c = curve_client(TASKQ_TIMEOUT_INFINITE);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "echo", "\xc0", 1, NULL, &f), 0);
    int64_t start = now_ms();
    ck_assert_code(taskq_future_wait(f, 20000), TASKQ_EDENIED);
    ck_assert_int_lt(now_ms() - start, 5000);
    ck_assert_msg(strstr(taskq_future_error(f), "this key lacks the role") != NULL, "text: %s",
                  taskq_future_error(f));
    taskq_future_destroy(&f);
    /* A later call asks again, and is refused again. */
    int before = atomic_load(&fake.hellos);
    ck_assert_code(taskq_client_ping(c, 20000, NULL, NULL), TASKQ_EDENIED);
    ck_assert_int_gt(atomic_load(&fake.hellos), before);
    taskq_client_destroy(&c);

    int64_t took;
    ck_assert_code(curve_worker_run(&took), TASKQ_EDENIED);
    ck_assert_int_lt(took, 5000);
    ck_assert_int_eq(atomic_load(&fake.hello_role), TASKQ_ROLE_WORKER);
    fake_stop();
}
END_TEST

START_TEST(test_wrong_server_key)
{
    fake_start(true, 0, FAKE_SILENT);
    /* Another broker's public key: the handshake cannot complete, and the
     * broker closes the connection without a reason. */
    char other_pub[TQ_KEY_Z85_SIZE], other_sec[TQ_KEY_Z85_SIZE], pub[TQ_KEY_Z85_SIZE];
    ck_assert_int_eq(zmq_curve_keypair(other_pub, other_sec), 0);
    taskq_client_opts_t o = {
        .curve_server_key = other_pub,
        .curve_key = client_keys(pub),
        .reconnect_limit_ms = 1500,
    };
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new(fake.endpoint, &o, &c), 0);
    taskq_future_t *f = NULL;
    ck_assert_code(taskq_submit(c, "echo", "\xc0", 1, NULL, &f), 0);
    ck_assert_code(taskq_future_wait(f, 20000), TASKQ_ECLOSED);
    ck_assert_msg(strstr(taskq_future_error(f), "CURVE handshake") != NULL, "text: %s",
                  taskq_future_error(f));
    ck_assert_int_eq(atomic_load(&fake.hellos), 0);
    taskq_future_destroy(&f);
    taskq_client_destroy(&c);
    fake_stop();
}
END_TEST

START_TEST(test_bad_key_options)
{
    char pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE], path[160];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    const char *key_path = client_keys(path);
    const char *garbage = write_file("garbage.pub", "garbage\n");
    in_dir(path, sizeof path, "missing.pub");
    const struct {
        const char *server, *key;
    } bad[] = {
        {pub, NULL}, {NULL, sec}, {NULL, key_path}, {garbage, sec},
        {pub, garbage}, {path, sec}, {pub, "short"}, {"", sec},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        taskq_client_opts_t co = {.curve_server_key = bad[i].server, .curve_key = bad[i].key};
        taskq_client_t *c = NULL;
        ck_assert_msg(taskq_client_new("tcp://127.0.0.1:1", &co, &c) == TASKQ_EINVAL,
                      "client case %zu", i);
        ck_assert_ptr_null(c);
        taskq_worker_opts_t wo = {.curve_server_key = bad[i].server, .curve_key = bad[i].key};
        taskq_worker_t *w = NULL;
        ck_assert_msg(taskq_worker_new("tcp://127.0.0.1:1", &wo, &w) == TASKQ_EINVAL,
                      "worker case %zu", i);
        ck_assert_ptr_null(w);
    }
    /* Literal keys, and key files, both work. */
    taskq_client_opts_t co = {.curve_server_key = pub, .curve_key = sec};
    taskq_client_t *c = NULL;
    ck_assert_code(taskq_client_new("tcp://127.0.0.1:1", &co, &c), 0);
    taskq_client_destroy(&c);
    co.curve_key = key_path;
    ck_assert_code(taskq_client_new("tcp://127.0.0.1:1", &co, &c), 0);
    taskq_client_destroy(&c);
    taskq_worker_opts_t wo = {.curve_server_key = pub, .curve_key = key_path};
    taskq_worker_t *w = NULL;
    ck_assert_code(taskq_worker_new("tcp://127.0.0.1:1", &wo, &w), 0);
    taskq_worker_destroy(&w);
}
END_TEST

/* ---- the taskq tool ----------------------------------------------------- */

/* Run `ENV taskq ARGS` (shell fragments; env may be "") with output to
 * dir/out and dir/err; returns its exit status, with the outputs
 * (NUL-terminated) in out and err (cap bytes each). */
static int taskq_env_cmd(const char *env, const char *args, char *out, char *err, size_t cap)
{
    char cmd[3072], path[160];
    snprintf(cmd, sizeof cmd, "%s '%s' %s >'%s/out' 2>'%s/err' </dev/null", env, TASKQ_PATH,
             args, dir, dir);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st), "%s did not exit", cmd);
    char *bufs[2] = {out, err};
    const char *names[2] = {"out", "err"};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(in_dir(path, sizeof path, names[i]), "r");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(bufs[i], 1, cap - 1, f);
        bufs[i][n] = '\0';
        fclose(f);
    }
    return WEXITSTATUS(st);
}

static int taskq_cmd(const char *args, char *out, char *err, size_t cap)
{
    return taskq_env_cmd("", args, out, err, cap);
}

START_TEST(test_cli_keygen)
{
    char out[4096], err[4096], args[512], pub[TQ_KEY_Z85_SIZE], sec[TQ_KEY_Z85_SIZE];
    char base[128], path[160], msg[512];
    in_dir(base, sizeof base, "frank");
    snprintf(args, sizeof args, "keygen '%s'", base);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 0);
    snprintf(path, sizeof path, "%s.pub", base);
    ck_assert_int_eq(tq_key_read(path, pub, msg, sizeof msg), 0);
    snprintf(path, sizeof path, "%s.key", base);
    ck_assert_int_eq(tq_key_read(path, sec, msg, sizeof msg), 0);
    char want[1024];
    snprintf(want, sizeof want, "wrote %s.pub and %s.key (secret, mode 0600)\npublic key: %s\n",
             base, base, pub);
    ck_assert_str_eq(out, want);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);

    /* Not again without --force; the pair is left as it was. */
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 1);
    ck_assert_msg(strstr(err, "already exists") && strstr(err, "--force"), "stderr: %s", err);
    char again[TQ_KEY_Z85_SIZE];
    ck_assert_int_eq(tq_key_read(path, again, msg, sizeof msg), 0);
    ck_assert_str_eq(again, sec);
    snprintf(args, sizeof args, "keygen --force '%s'", base);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 0);
    ck_assert_int_eq(tq_key_read(path, again, msg, sizeof msg), 0);
    ck_assert_str_ne(again, sec);

    /* Usage errors. */
    ck_assert_int_eq(taskq_cmd("keygen", out, err, sizeof out), 2);
    snprintf(args, sizeof args, "keygen '%s.key'", base);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 2);
    ck_assert_int_eq(taskq_cmd("keygen a b", out, err, sizeof out), 2);
    ck_assert_int_eq(taskq_cmd("keygen --bogus x", out, err, sizeof out), 2);
    ck_assert_int_eq(taskq_cmd("keygen --help", out, err, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "Usage: taskq keygen"));
    snprintf(args, sizeof args, "keygen '%s/missing/x'", dir);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 1);
}
END_TEST

START_TEST(test_cli_curve_options)
{
    char out[4096], err[4096], args[1024], pub[TQ_KEY_Z85_SIZE];
    const char *key = client_keys(pub);
    char server_pub[160];
    fake_start(true, 400, FAKE_SILENT);
    const char *server = write_file("broker.pub", fake.pub);
    snprintf(server_pub, sizeof server_pub, "%s", server);

    /* Refused at the ZAP step: 125 at once, naming the key. */
    snprintf(args, sizeof args,
             "--broker '%s' --connect-timeout 20 --curve-server-key '%s' --curve-key '%s' ping",
             fake.endpoint, server_pub, key);
    int64_t start = now_ms();
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 125);
    ck_assert_int_lt(now_ms() - start, 10000);
    ck_assert_msg(strstr(err, "taskq: the broker at ") && strstr(err, "refused this key") &&
                      strstr(err, pub),
                  "stderr: %s", err);

    /* The same keys from the environment. */
    snprintf(args, sizeof args, "--broker '%s' --connect-timeout 20 status", fake.endpoint);
    char env[1024];
    snprintf(env, sizeof env, "TASKQ_CURVE_SERVER_KEY='%s' TASKQ_CURVE_KEY='%s'", server_pub,
             key);
    ck_assert_int_eq(taskq_env_cmd(env, args, out, err, sizeof out), 125);
    ck_assert_msg(strstr(err, "refused this key") != NULL, "stderr: %s", err);
    fake_stop();

    /* Keys that do not go together, or cannot be read: bad usage. */
    snprintf(args, sizeof args, "--curve-key '%s' ping", key);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(err, "go together"));
    snprintf(args, sizeof args, "--curve-server-key '%s' --curve-key '%s/none.key' ping",
             server_pub, dir);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(err, "none.key"));
    /* A public key where the secret one belongs. */
    snprintf(args, sizeof args, "--curve-server-key '%s' --curve-key '%s' ping", server_pub,
             server_pub);
    ck_assert_int_eq(taskq_cmd(args, out, err, sizeof out), 2);
    ck_assert_int_eq(taskq_cmd("--help", out, err, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--curve-server-key"));
    ck_assert_ptr_nonnull(strstr(out, "keygen"));
}
END_TEST

static TCase *tcase(Suite *s, const char *name, double timeout)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase(s, "files", 30);
    tcase_add_test(tc, test_pair_round_trip);
    tcase_add_test(tc, test_modes_despite_umask);
    tcase_add_test(tc, test_no_overwrite_without_force);
    tcase_add_test(tc, test_write_failures);
    tcase_add_test(tc, test_literal_keys);
    tcase_add_test(tc, test_file_layouts);
    tcase_add_test(tc, test_garbage_files);
    tcase_add_test(tc, test_public_from_secret);

    tc = tcase(s, "curve", 60);
    tcase_add_test(tc, test_bad_key_options);
    tcase_add_test(tc, test_curve_handshake_completes);
    tcase_add_test(tc, test_curve_worker_handshake_completes);
    tcase_add_test(tc, test_key_refused_by_zap);
    tcase_add_test(tc, test_worker_key_refused_by_zap);
    tcase_add_test(tc, test_broker_without_curve);
    tcase_add_test(tc, test_error_denied_in_answer_to_hello);
    tcase_add_test(tc, test_wrong_server_key);

    tc = tcase(s, "cli", 60);
    tcase_add_test(tc, test_cli_keygen);
    tcase_add_test(tc, test_cli_curve_options);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
