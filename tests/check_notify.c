/*
 * check_notify.c - taskqd and its service manager: the test is the
 * manager's end of the sd_notify protocol (a datagram socket named by
 * NOTIFY_SOCKET, with WATCHDOG_USEC set) and sees a real taskqd say
 * READY=1 once serving, STATUS= with live counts, WATCHDOG=1 from its
 * loop, RELOADING=1 and READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM.
 * Skipped when taskqd was built without libsystemd.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static th_broker_t broker;
static int notify_fd = -1;
static char notify_path[108];

static void setup(void)
{
    memset(&broker, 0, sizeof broker);
    ck_assert_int_eq(th_broker_dir(&broker), 0);
    ck_assert_uint_lt(strlen(broker.dir) + sizeof "/notify", sizeof notify_path);
    memcpy(notify_path, broker.dir, strlen(broker.dir));
    memcpy(notify_path + strlen(broker.dir), "/notify", sizeof "/notify");
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(notify_fd, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, notify_path, sizeof a.sun_path);
    ck_assert_int_eq(bind(notify_fd, (struct sockaddr *)&a, sizeof a), 0);
}

static void teardown(void)
{
    th_stop_all();
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    th_remove_dir(broker.dir);
}

/* Datagrams seen so far, one after another (each ends with '\n'). */
static char seen[65536];
static size_t seen_len;

/* Read datagrams until one contains want, for up to timeout_ms.  Returns
 * true if seen. */
static bool wait_for(const char *want, int timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (int i = 0; i < 100000 && th_now_ms() < end; i++) {
        if (strstr(seen, want))
            return true;
        struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
        setsockopt(notify_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t n = recv(notify_fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (seen_len + (size_t)n + 2 < sizeof seen) {
            memcpy(seen + seen_len, buf, (size_t)n);
            seen_len += (size_t)n;
            seen[seen_len++] = '\n';
            seen[seen_len] = '\0';
        }
    }
    return strstr(seen, want) != NULL;
}

START_TEST(notify_protocol)
{
    seen_len = 0;
    seen[0] = '\0';
    setenv("NOTIFY_SOCKET", notify_path, 1);
    setenv("WATCHDOG_USEC", "400000", 1); /* 0.4 s: a keep-alive every 0.2 s */
    ck_assert_int_eq(th_broker_start(&broker, NULL, NULL), 0);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    if (!wait_for("READY=1", 5000)) {
        printf("check_notify: SKIPPED: taskqd sent nothing to NOTIFY_SOCKET (built without "
               "libsystemd?)\n");
        fflush(stdout);
        return;
    }
    ck_assert_msg(wait_for("STATUS=serving: 0 queued, 0 running, 0 workers, 0 clients", 3000),
                  "no STATUS with counts in:\n%s", seen);

    /* The counts are live: a worker joins. */
    pid_t w = th_worker_start(broker.endpoint, NULL);
    ck_assert_int_gt(w, 0);
    ck_assert_msg(wait_for(", 1 workers,", 5000), "the STATUS did not follow:\n%s", seen);

    /* WATCHDOG=1 keeps coming, from the loop: several within a second. */
    int64_t start = th_now_ms();
    size_t before = 0;
    for (const char *p = seen; (p = strstr(p, "WATCHDOG=1")); p++)
        before++;
    wait_for("never sent", 1000);
    size_t after = 0;
    for (const char *p = seen; (p = strstr(p, "WATCHDOG=1")); p++)
        after++;
    ck_assert_msg(after >= before + 3, "%zu keep-alives in %lld ms", after - before,
                  (long long)(th_now_ms() - start));

    ck_assert_int_eq(kill(broker.pid, SIGHUP), 0);
    ck_assert_msg(wait_for("RELOADING=1\nREADY=1\n", 3000),
                  "no RELOADING=1 then READY=1 after SIGHUP:\n%s", seen);

    int status = th_broker_stop(&broker, SIGTERM);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    ck_assert_msg(wait_for("STOPPING=1", 2000), "no STOPPING=1 on SIGTERM:\n%s", seen);
}
END_TEST

int main(void)
{
    const th_case_t cases[] = {{"notify_protocol", notify_protocol, 30, setup, teardown}};
    return th_run_suite("notify", cases, sizeof cases / sizeof cases[0]);
}
