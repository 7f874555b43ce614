/*
 * os.h - the daemon's interface to the operating system: stop signals, the
 * monotonic clock, random bytes, the service manager (sd_notify) and the
 * ready file.  Everything Linux- or systemd-specific stays behind these.
 */
#ifndef TQD_OS_H
#define TQD_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Install the SIGTERM, SIGINT and SIGHUP handlers (they set a flag and wake the
 * descriptor of tqd_os_signal_fd(); no SA_RESTART) and ignore SIGPIPE.
 * Returns 0 or -errno.
 */
int tqd_os_signals(void);

/* A descriptor that becomes readable when a stop signal arrives (poll it
 * beside the socket), or -1 before tqd_os_signals(). */
int tqd_os_signal_fd(void);

/* true once SIGTERM or SIGINT arrived. */
bool tqd_os_stopping(void);

/* true once after each SIGHUP (the handler also wakes tqd_os_signal_fd,
 * which this drains): reload what can be reloaded. */
bool tqd_os_reload_requested(void);

/*
 * The Unix user at the other end of connection fd, as the kernel knows it:
 * SO_PEERCRED for a Unix socket; for TCP (IPv4 or 6), the owner of the
 * peer's socket if it is on this host (in this network namespace), asked
 * with sock_diag.  Returns 0 and *uid, -ENOENT for a connection from
 * another host, or -errno.
 */
int tqd_os_peer_uid(int fd, uint32_t *uid);

/* Milliseconds of CLOCK_MONOTONIC: the daemon's one clock. */
uint64_t tqd_os_now_ms(void);

/* Unix time in ms less tqd_os_now_ms(): add it to the clock to get the
 * wall time (for what is shown to people or stored across restarts). */
int64_t tqd_os_wall_offset_ms(void);

/*
 * Create the directory that holds the file at path, and its parents, with
 * mode 0750 where missing.  Returns 0 (also when it exists) or -errno.
 */
int tqd_os_make_parent(const char *path);

/* CPU time this process used (user and system, µs) and its resident set
 * now (bytes; 0 if /proc cannot tell). */
void tqd_os_usage(uint64_t *user_us, uint64_t *sys_us, uint64_t *rss_bytes);

/* Fill buf with len random bytes from getrandom(2).  Returns 0 or -errno. */
int tqd_os_random(void *buf, size_t len);

/*
 * Tell the service manager about a state change ("READY=1",
 * "STOPPING=1", "STATUS=..."), when the daemon was built with libsystemd
 * and runs under a manager that listens; otherwise do nothing.
 */
void tqd_os_notify(const char *state);

/*
 * How often the loop should report to the service manager (STATUS= with
 * live counts, and WATCHDOG=1 when the unit has WatchdogSec=): every
 * second, or half the watchdog interval if that is shorter; 0 when no
 * manager listens (or without libsystemd).
 */
uint64_t tqd_os_notify_interval_ms(void);

/* true if the service manager expects WATCHDOG=1 keep-alives. */
bool tqd_os_watchdog_enabled(void);

/*
 * Replace the file at path with len bytes of data atomically: write a
 * temporary file in the same directory, then rename it over path, so a
 * reader sees either no file or the whole content.  Returns 0 or -errno.
 */
int tqd_os_write_atomic(const char *path, const void *data, size_t len);

#endif /* TQD_OS_H */
