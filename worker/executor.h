/*
 * executor.h - taskq-worker's executor processes and the pipe protocol
 * between them and the supervisor; the configuration both processes are
 * started with; and the log both write to stderr.
 */
#ifndef TW_EXECUTOR_H
#define TW_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <syslog.h> /* LOG_ERR .. LOG_DEBUG */

/* ---- Configuration ----------------------------------------------------- */

#define TW_MAX_QUEUES 64  /* --queue options */
#define TW_MAX_PLUGINS 64 /* --load options */
#define TW_NAME_MAX 240   /* --name: leaves room for "/<slot>" within 255 */

/* What taskq-worker was asked to do, as read from its command line. */
typedef struct tw_config {
    const char *argv0;                      /* how the program was started */
    const char *broker;                     /* endpoint */
    uint32_t procs;                         /* pool size; 0: usable CPUs less one */
    const char *queues[TW_MAX_QUEUES + 1];  /* NULL-terminated; empty: "default" */
    size_t n_queues;
    const char *plugins[TW_MAX_PLUGINS];    /* --load paths, in order */
    size_t n_plugins;
    bool exec;                              /* serve the built-in `exec` */
    const char *name;                       /* connection names' stem; NULL: host-pid */
    uint32_t max_tasks;                     /* tasks per executor; 0: no limit */
    uint64_t mem_limit;                     /* RLIMIT_AS of executors, bytes; 0: none */
    uint32_t nice;                          /* added to executors' niceness */
    uint32_t grace_s;                       /* SIGTERM: time to finish running tasks */
    const char *log_level;                  /* --log-level as given, for executors */
    const char *curve_server_key;           /* the broker's public key (Z85); NULL: no CURVE */
    const char *curve_key;                  /* the pool's secret key (Z85) */
    bool executor;                          /* hidden: run as an executor */
} tw_config_t;

/* ---- The pipe protocol ------------------------------------------------- */

/*
 * An executor is the taskq-worker binary started with --executor and the
 * pool's options, with three descriptors from its supervisor:
 *   fd 3 (TW_FD_REQUEST)  read end of the request pipe: supervisor -> executor
 *   fd 4 (TW_FD_REPLY)    write end of the reply pipe: executor -> supervisor
 *   fd 5 (TW_FD_LIFELINE) read end of a pipe whose write end only the
 *                         supervisor holds: it hangs up when the supervisor
 *                         dies, however it dies, and the executor then kills
 *                         its process group (itself and the commands it ran).
 * It runs in a process group of its own, with stdin on /dev/null and the
 * supervisor's stdout and stderr, and applies --nice and --mem-limit to
 * itself before it loads plugins.  The first executor's HELLO fixes the
 * functions the whole pool announces; later ones are not compared with it.
 *
 * Each pipe carries frames.  A frame is an 8-byte header, two uint32_t in
 * the host's byte order (both ends are the same binary on the same host):
 * the frame type, then the body length in bytes (at most TW_FRAME_MAX);
 * then the body.  Integers inside bodies are in host order too.
 *
 * Executor -> supervisor:
 *   HELLO   once, when the plugins are loaded and their functions
 *           registered: the body is the function names, each followed by
 *           a NUL byte (1..1024 names of 1..255 bytes).  An executor that
 *           cannot start writes nothing and exits with a <sysexits.h> code
 *           after logging why (EX_CONFIG: a plugin does not load or lacks
 *           taskq_plugin_init; EX_SOFTWARE: a plugin's init failed).
 *   REPLY   the outcome of the last REQUEST: uint32_t outcome
 *           (TW_OUTCOME_*), then the payload, the rest of the body: the
 *           result (one msgpack object) or the error text (not
 *           NUL-terminated).
 *   OOM     empty body; written by the executor's fatal-signal handler
 *           when it dies of SIGSEGV, SIGBUS, SIGABRT, SIGILL or SIGFPE
 *           while running a task under --mem-limit and looks out of memory
 *           (errno is ENOMEM, or less than 1/16 of the limit is left).
 *           The executor's death follows.
 * Supervisor -> executor:
 *   REQUEST one task: tw_request_head_t, then fn_len bytes of function
 *           name, then the argument (one msgpack object) filling the rest.
 *
 * One REQUEST is outstanding at a time: the supervisor writes a REQUEST and
 * reads frames until the REPLY.  End of file on the request pipe tells the
 * executor to exit 0.  Both sides check every header and body against
 * these rules before using it.  A violation ends the exchange, never
 * crashes the reader: the supervisor kills an executor that breaks them
 * (the task is retried as after a crash), and an executor that receives a
 * broken REQUEST exits with EX_PROTOCOL.
 */
#define TW_FD_REQUEST 3
#define TW_FD_REPLY 4
#define TW_FD_LIFELINE 5

#define TW_FRAME_HELLO 1
#define TW_FRAME_REPLY 2
#define TW_FRAME_OOM 3
#define TW_FRAME_REQUEST 4

/* The largest body: a result or argument as large as the largest frame a
 * broker may allow (1 GiB), and room for the fields around it. */
#define TW_FRAME_MAX ((uint32_t)(1u << 30) + 65536u)

#define TW_OUTCOME_RESULT 0 /* payload: the result */
#define TW_OUTCOME_ERROR 1  /* payload: error text; the task fails */
#define TW_OUTCOME_RETRY 2  /* payload: error text; another attempt may work */

/* The fixed start of a REQUEST body. */
typedef struct tw_request_head {
    uint64_t job_id;  /* the broker's job id */
    uint64_t seed;    /* the task's seed */
    uint32_t attempt; /* 1 on the first delivery */
    uint32_t fn_len;  /* function name bytes that follow, 1..255 */
} tw_request_head_t;

/* A frame being read.  Zero-initialise; free with tw_reader_fini(). */
typedef struct tw_reader {
    uint8_t head[8];  /* the header as read so far */
    size_t head_got;  /* header bytes read */
    uint32_t type;    /* valid once the header is complete */
    uint32_t len;     /* body length, valid once the header is complete */
    uint8_t *body;    /* body bytes read so far, owned by the reader */
    size_t got;       /* body bytes read */
    size_t cap;       /* bytes allocated at body */
} tw_reader_t;

/*
 * Read from fd (blocking or not) toward the next frame.  Returns 1 once a
 * whole frame is in r (type, len, body), 0 if fd has no more bytes for
 * now, or -EPIPE (end of file: the writer is gone), -EPROTO (a length over
 * max_len), -ENOMEM, -errno of read(2).  The body buffer grows as bytes
 * arrive, so a lying header costs no memory.  Call tw_reader_next() before
 * reading the frame after.
 */
int tw_reader_read(tw_reader_t *r, int fd, uint32_t max_len);

/* Forget the frame held by r, keeping its buffer. */
void tw_reader_next(tw_reader_t *r);

/* Free r's buffer; r may be used again. */
void tw_reader_fini(tw_reader_t *r);

/* A frame being written: the header and up to three body parts. */
typedef struct tw_writer {
    uint8_t head[8];
    struct iovec iov[4]; /* what is left to write */
    int n;               /* entries of iov in use */
} tw_writer_t;

/*
 * Prepare a frame of type whose body is parts[0..n-1] (n <= 3) one after
 * the other.  The parts' memory must stay valid until the frame is
 * written.  Returns 0, or -EMSGSIZE if the body exceeds TW_FRAME_MAX.
 */
int tw_writer_start(tw_writer_t *w, uint32_t type, const struct iovec *parts, int n);

/* Write what fd takes of the frame.  Returns 1 once it is all written, 0 if
 * fd is full, or -errno of writev(2) (-EPIPE: the reader is gone). */
int tw_writer_write(tw_writer_t *w, int fd);

/* ---- The executor process ---------------------------------------------- */

/*
 * Run as an executor (taskq-worker --executor): apply cfg->nice and
 * cfg->mem_limit to this process, load cfg->plugins in order and call
 * their taskq_plugin_init(), register the built-in `exec` if cfg->exec,
 * send HELLO, then serve REQUESTs one at a time with taskq_worker_call()
 * until the request pipe ends.  Returns the process's exit status: 0, or a
 * <sysexits.h> code after logging why.  Single-threaded apart from the
 * lifeline watch.
 */
int tw_executor_main(const tw_config_t *cfg);

#endif /* TW_EXECUTOR_H */
