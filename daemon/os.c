/*
 * os.c - signals, clocks, randomness, sd_notify, directories, atomic file
 * replacement and the user at the other end of a local connection, for the
 * daemon.  Holds the stop and reload flags, the only state a signal
 * handler touches.
 */
#define _GNU_SOURCE 1 /* struct ucred (SO_PEERCRED) */
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef TASKQ_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;
/* Self-pipe: the handler writes a byte so that a poll that started just
 * before the signal arrived wakes up at once instead of at its timeout. */
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        reload_requested = 1;
    else
        stop_requested = 1;
    if (wake_pipe[1] >= 0 && write(wake_pipe[1], "", 1) < 0) {
        /* The pipe is full: a wake-up is already pending. */
    }
    errno = saved;
}

int tqd_os_signals(void)
{
    if (wake_pipe[0] < 0) {
        if (pipe(wake_pipe) < 0)
            return -errno;
        for (int i = 0; i < 2; i++) {
            fcntl(wake_pipe[i], F_SETFD, FD_CLOEXEC);
            fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0)
        return -errno;
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        return -errno;
    return 0;
}

int tqd_os_signal_fd(void)
{
    return wake_pipe[0];
}

bool tqd_os_stopping(void)
{
    return stop_requested != 0;
}

bool tqd_os_reload_requested(void)
{
    char buf[64];
    while (wake_pipe[0] >= 0 && !stop_requested && read(wake_pipe[0], buf, sizeof buf) > 0)
        ; /* drained: the descriptor wakes the next poll only for a new signal */
    if (!reload_requested)
        return false;
    reload_requested = 0;
    return true;
}

/* The owner of the loopback TCP socket whose local end is (src) and whose
 * remote end is (dst), asked of the kernel with sock_diag (as ss(8) does). */
static int tcp_owner(const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                     uint32_t *uid)
{
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = (uint8_t)src->ss_family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (src->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;
        msg.req.id.idiag_sport = s->sin_port;
        msg.req.id.idiag_dport = d->sin_port;
        memcpy(msg.req.id.idiag_src, &s->sin_addr, 4);
        memcpy(msg.req.id.idiag_dst, &d->sin_addr, 4);
    } else {
        const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;
        msg.req.id.idiag_sport = s->sin6_port;
        msg.req.id.idiag_dport = d->sin6_port;
        memcpy(msg.req.id.idiag_src, &s->sin6_addr, 16);
        memcpy(msg.req.id.idiag_dst, &d->sin6_addr, 16);
    }
    int rc = -ENOENT;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        rc = -errno;
    } else {
        /* One reply: the socket's inet_diag_msg, or an error. */
        long buf[1024];
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n = poll(&pfd, 1, 100) == 1 ? recv(fd, buf, sizeof buf, 0) : -1;
        const struct nlmsghdr *h = (const void *)buf;
        if (n >= (ssize_t)sizeof *h && NLMSG_OK(h, (size_t)n) &&
            h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
            h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
            const struct inet_diag_msg *d = NLMSG_DATA(h);
            *uid = d->idiag_uid;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

int tqd_os_peer_uid(int fd, uint32_t *uid)
{
    struct sockaddr_storage local, peer;
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&local, &ll) < 0)
        return -EBADF;
    if (local.ss_family == AF_UNIX) {
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
            return -errno;
        *uid = cred.uid;
        return 0;
    }
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
        return -errno;
    if (local.ss_family != AF_INET && local.ss_family != AF_INET6)
        return -ENOENT;
    /* The other end is on this host if the kernel holds its socket: it is
     * found in this network namespace, whatever the address (loopback, or
     * one of the host's own).  A remote peer's socket is not. */
    return tcp_owner(&peer, &local, uid);
}

uint64_t tqd_os_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t tqd_os_wall_offset_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return wall - (int64_t)tqd_os_now_ms();
}

int tqd_os_make_parent(const char *path)
{
    char dir[4096];
    size_t len = strlen(path);
    while (len > 0 && path[len - 1] != '/')
        len--;
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof dir)
        return len == 0 ? 0 : -ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = '\0';
    for (char *p = dir + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(dir, 0750) < 0 && errno != EEXIST)
                return -errno;
            if (end)
                return 0;
            *p = '/';
        }
    }
}

void tqd_os_usage(uint64_t *user_us, uint64_t *sys_us, uint64_t *rss_bytes)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
    *sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    *rss_bytes = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return;
    unsigned long size, resident;
    if (fscanf(f, "%lu %lu", &size, &resident) == 2)
        *rss_bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
    fclose(f);
}

int tqd_os_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void tqd_os_notify(const char *state)
{
#ifdef TASKQ_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

uint64_t tqd_os_notify_interval_ms(void)
{
#ifdef TASKQ_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t half = usec / 2000u;
        return half < 1 ? 1 : half < 1000 ? half : 1000;
    }
    const char *sock = getenv("NOTIFY_SOCKET");
    return sock && *sock ? 1000 : 0;
#else
    return 0;
#endif
}

bool tqd_os_watchdog_enabled(void)
{
#ifdef TASKQ_HAVE_SYSTEMD
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0;
#else
    return false;
#endif
}

int tqd_os_write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp)
        return -ENAMETOOLONG;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -errno;
    const uint8_t *p = data;
    size_t left = len;
    int rc = 0;
    while (left > 0 && rc == 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0) {
            p += n;
            left -= (size_t)n;
        }
    }
    /* mkstemp creates the file 0600; readers such as a test harness or a
     * script running as another user of the group need to read it. */
    if (rc == 0 && fchmod(fd, 0644) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}
