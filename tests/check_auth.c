/*
 * check_auth.c - the broker's allow-lists and ZAP handler (daemon/auth.c),
 * task owners (SipHash-2-4 against the reference vectors), and the Unix
 * user at the other end of a local connection (daemon/os.c).
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "auth.h"
#include "keys.h"
#include "os.h"

/* ---- SipHash and owners ------------------------------------------------- */

START_TEST(siphash_vectors)
{
    /* The reference implementation's vectors: key 00..0f, message 00..n-1. */
    uint8_t k[16], m[16];
    for (int i = 0; i < 16; i++)
        k[i] = m[i] = (uint8_t)i;
    ck_assert_uint_eq(tqd_siphash(k, m, 0), 0x726fdb47dd0e0e31u);
    ck_assert_uint_eq(tqd_siphash(k, m, 1), 0x74f839c593dc67fdu);
    ck_assert_uint_eq(tqd_siphash(k, m, 15), 0xa129ca6149be45e5u);
}
END_TEST

START_TEST(owners)
{
    uint32_t uid = 1000;
    uint64_t a = tqd_owner_of(7, TQD_IDENT_UID, &uid, sizeof uid);
    ck_assert_uint_ne(a, 0);
    ck_assert_uint_eq(a, tqd_owner_of(7, TQD_IDENT_UID, &uid, sizeof uid));
    /* The same bytes as another kind, or under another store, are another owner. */
    ck_assert_uint_ne(a, tqd_owner_of(7, TQD_IDENT_SESSION, &uid, sizeof uid));
    ck_assert_uint_ne(a, tqd_owner_of(8, TQD_IDENT_UID, &uid, sizeof uid));
    uid = 1001;
    ck_assert_uint_ne(a, tqd_owner_of(7, TQD_IDENT_UID, &uid, sizeof uid));
}
END_TEST

/* ---- Allow-lists ----------------------------------------------------------- */

static char root[64];

/* root/dir/name.pub and .key, made with keygen; the public key in pub
 * (binary) if not NULL. */
static void make_key(const char *dir, const char *name, uint8_t pub[32])
{
    char base[256], err[256], z85[41];
    snprintf(base, sizeof base, "%s/%s", root, dir);
    mkdir(base, 0700);
    snprintf(base, sizeof base, "%s/%s/%s", root, dir, name);
    ck_assert_msg(tq_key_write_pair(base, false, err, sizeof err) == 0, "%s", err);
    strcat(base, ".pub");
    ck_assert_int_eq(tq_key_read(base, z85, err, sizeof err), 0);
    if (pub)
        ck_assert_ptr_nonnull(zmq_z85_decode(pub, z85));
}

/* Copy root/from/name.pub into root/to/. */
static void copy_pub(const char *from, const char *name, const char *to)
{
    char src[256], dst[256], buf[256];
    snprintf(src, sizeof src, "%s/%s/%s.pub", root, from, name);
    snprintf(dst, sizeof dst, "%s/%s", root, to);
    mkdir(dst, 0700);
    snprintf(dst, sizeof dst, "%s/%s/%s.pub", root, to, name);
    FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    size_t n = fread(buf, 1, sizeof buf, in);
    ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

static void path_of(char *buf, size_t cap, const char *dir)
{
    snprintf(buf, cap, "%s/%s", root, dir);
}

static void setup(void)
{
    strcpy(root, "/tmp/taskq-auth-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
}

START_TEST(roles_and_reload)
{
    uint8_t c1[32], w1[32], a1[32], stranger[32];
    make_key("clients", "c1", c1);
    make_key("workers", "w1", w1);
    make_key("admin", "a1", a1);
    make_key("elsewhere", "stranger", stranger);
    copy_pub("clients", "c1", "exec");
    char clients[128], workers[128], admins[128], exec[128];
    path_of(clients, sizeof clients, "clients");
    path_of(workers, sizeof workers, "workers");
    path_of(admins, sizeof admins, "admin");
    path_of(exec, sizeof exec, "exec");
    /* The secret key files lie beside the public ones: only *.pub counts. */
    tqd_auth_dirs_t dirs = {clients, workers, admins, exec};
    void *ctx = zmq_ctx_new();
    tqd_auth_t *a;
    ck_assert_int_eq(tqd_auth_open(ctx, &dirs, &a), 0);
    ck_assert_uint_eq(tqd_auth_roles(a, c1), TQD_ROLE_CLIENT | TQD_ROLE_EXEC);
    ck_assert_uint_eq(tqd_auth_roles(a, w1), TQD_ROLE_WORKER);
    ck_assert_uint_eq(tqd_auth_roles(a, a1), TQD_ROLE_ADMIN | TQD_ROLE_CLIENT);
    ck_assert_uint_eq(tqd_auth_roles(a, stranger), 0);

    /* Revoke c1's exec right, let the stranger in as a worker. */
    char p[256];
    snprintf(p, sizeof p, "%s/c1.pub", exec);
    ck_assert_int_eq(unlink(p), 0);
    copy_pub("elsewhere", "stranger", "workers");
    ck_assert_int_eq(tqd_auth_reload(a), 0);
    ck_assert_uint_eq(tqd_auth_roles(a, c1), TQD_ROLE_CLIENT);
    ck_assert_uint_eq(tqd_auth_roles(a, stranger), TQD_ROLE_WORKER);

    /* A damaged key file: the reload fails and the lists in force stay. */
    snprintf(p, sizeof p, "%s/broken.pub", workers);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("# not a key\nhello\n", f);
    fclose(f);
    ck_assert_int_lt(tqd_auth_reload(a), 0);
    ck_assert_uint_eq(tqd_auth_roles(a, stranger), TQD_ROLE_WORKER);
    ck_assert_uint_eq(tqd_auth_roles(a, c1), TQD_ROLE_CLIENT);
    tqd_auth_close(&a);
    ck_assert_ptr_null(a);

    /* The same damage refuses a start. */
    ck_assert_int_lt(tqd_auth_open(ctx, &dirs, &a), 0);
    tqd_auth_dirs_t missing = {"/nonexistent/taskq-keys", NULL, NULL, NULL};
    ck_assert_int_lt(tqd_auth_open(ctx, &missing, &a), 0);
    zmq_ctx_term(ctx);
}
END_TEST

/* Connect a CURVE DEALER with the key pair at root/dir/name to endpoint
 * (server's public key in Z85), send one frame, and serve ZAP for up to
 * 2 s.  Returns the User-Id the ROUTER saw, or "" if nothing arrived. */
static void exchange(void *ctx, tqd_auth_t *a, void *router, const char *endpoint,
                     const char *server_pub, const char *dir, const char *name, char user[64])
{
    char path[256], secret[41], public_z85[41], err[256];
    snprintf(path, sizeof path, "%s/%s/%s.key", root, dir, name);
    ck_assert_int_eq(tq_key_read(path, secret, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_public(secret, public_z85), 0);
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, public_z85, 40);
    zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, secret, 40);
    ck_assert_int_eq(zmq_connect(d, endpoint), 0);
    ck_assert_int_eq(zmq_send(d, "hi", 2, ZMQ_DONTWAIT), 2);
    user[0] = '\0';
    for (int i = 0; i < 200 && !user[0]; i++) {
        zmq_pollitem_t items[2] = {{.socket = tqd_auth_socket(a), .events = ZMQ_POLLIN},
                                   {.socket = router, .events = ZMQ_POLLIN}};
        zmq_poll(items, 2, 10);
        tqd_auth_serve(a);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, router, ZMQ_DONTWAIT) >= 0) {
            const char *u = zmq_msg_gets(&m, "User-Id");
            if (!zmq_msg_more(&m) && u)
                snprintf(user, 64, "%s", u);
        }
        zmq_msg_close(&m);
    }
    zmq_close(d);
}

START_TEST(zap_admits_known_keys)
{
    uint8_t c1[32];
    make_key("clients", "c1", c1);
    make_key("elsewhere", "stranger", NULL);
    make_key("server", "server", NULL);
    char clients[128], path[256], secret[41], server_pub[41], err[256];
    path_of(clients, sizeof clients, "clients");
    tqd_auth_dirs_t dirs = {clients, NULL, NULL, NULL};
    void *ctx = zmq_ctx_new();
    tqd_auth_t *a;
    ck_assert_int_eq(tqd_auth_open(ctx, &dirs, &a), 0);
    snprintf(path, sizeof path, "%s/server/server.key", root);
    ck_assert_int_eq(tq_key_read(path, secret, err, sizeof err), 0);
    ck_assert_int_eq(tq_key_public(secret, server_pub), 0);
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, secret, 40);
    ck_assert_int_eq(zmq_bind(r, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t len = sizeof ep;
    zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &len);

    char user[64], want[41];
    exchange(ctx, a, r, ep, server_pub, "clients", "c1", user);
    zmq_z85_encode(want, c1, 32);
    ck_assert_str_eq(user, want);
    ck_assert_uint_eq(tqd_auth_refused(a), 0);

    exchange(ctx, a, r, ep, server_pub, "elsewhere", "stranger", user);
    ck_assert_str_eq(user, "");
    ck_assert_uint_ge(tqd_auth_refused(a), 1);
    zmq_close(r);
    tqd_auth_close(&a);
    zmq_ctx_term(ctx);
}
END_TEST

/* ---- Who is at the other end ------------------------------------------------ */

START_TEST(peer_uid_local)
{
    uint32_t uid = 12345;
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(tqd_os_peer_uid(sv[0], &uid), 0);
    ck_assert_uint_eq(uid, geteuid());
    close(sv[0]);
    close(sv[1]);

    /* Loopback TCP: the kernel's socket table names the client's owner. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = accept(l, NULL, NULL);
    ck_assert_int_ge(s, 0);
    uid = 12345;
    ck_assert_int_eq(tqd_os_peer_uid(s, &uid), 0);
    ck_assert_uint_eq(uid, geteuid());
    close(s);
    close(c);
    close(l);
    ck_assert_int_eq(tqd_os_peer_uid(-1, &uid), -EBADF);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("owners");
    tcase_add_test(tc, siphash_vectors);
    tcase_add_test(tc, owners);
    tcase_add_test(tc, peer_uid_local);
    suite_add_tcase(s, tc);
    tc = tcase_create("allow-lists");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, roles_and_reload);
    tcase_add_test(tc, zap_admits_known_keys);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
