/*
 * store_sqlite.c - the SQLite store: jobs and their failed attempts in one
 * database file in WAL mode, written in one transaction per loop turn
 * (group commit) with statements prepared once, read back at startup, and
 * reconciled from the queue after a commit that failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "os.h"
#include "store.h"

/*
 * The on-disk format.  Bump SCHEMA_VERSION for any change a previous
 * taskqd would misread; an open refuses a version it does not know, so a
 * newer version needs an upgrade step here before it is accepted.
 */
#define SCHEMA_VERSION 2 /* 2: jobs.owner */

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER);"
    "CREATE TABLE jobs(id INTEGER PRIMARY KEY, client_id INTEGER, req_id INTEGER,"
    " batch INTEGER, queue TEXT, function TEXT, priority INTEGER, timeout_ms INTEGER,"
    " max_attempts INTEGER, arg BLOB, state INTEGER, attempt INTEGER, worker TEXT,"
    " host TEXT, pid INTEGER, started_at INTEGER, status INTEGER, result BLOB,"
    " finished_at INTEGER, failures INTEGER, owner INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE attempts(job_id INTEGER, seq INTEGER, attempt INTEGER, worker TEXT,"
    " host TEXT, pid INTEGER, started_at INTEGER, ended_at INTEGER, cause TEXT,"
    " PRIMARY KEY(job_id, seq)) WITHOUT ROWID;"
    "INSERT INTO meta VALUES('next_id', 1);";

#define BUSY_TIMEOUT_MS 2     /* the loop must not wait on a lock for long */
#define DIRTY_MAX       65536 /* ids kept to reconcile; past it, every job is */
#define IDS_PER_SCAN    256   /* row ids read per step of a full reconcile */

/* The statements of the running broker, prepared once at open. */
enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_INSERT,
    ST_UPDATE,
    ST_ADD_ATTEMPT,
    ST_DELETE_JOBS,
    ST_DELETE_ATTEMPTS,
    ST_SET_META,
    ST_IDS_AFTER,
    ST_DELETE_ORPHANS,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_INSERT] = ("INSERT OR REPLACE INTO jobs(id, client_id, req_id, batch, queue, function,"
                   " priority, timeout_ms, max_attempts, arg, state, attempt, failures, owner)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13)"),
    /* worker, host, pid and started_at describe the current or last
     * attempt: a NULL (not running) keeps the last one.  A retry changes
     * the submitter and ends the job's place in the SUBMIT dedupe index. */
    [ST_UPDATE] = ("UPDATE jobs SET client_id = ?2, req_id = ?3, batch = ?4, state = ?5,"
                   " attempt = ?6, worker = coalesce(?7, worker), host = coalesce(?8, host),"
                   " pid = coalesce(?9, pid), started_at = coalesce(?10, started_at),"
                   " status = ?11, result = ?12, finished_at = ?13, failures = ?14 WHERE id = ?1"),
    [ST_ADD_ATTEMPT] = ("INSERT OR REPLACE INTO attempts(job_id, seq, attempt, worker, host, pid,"
                        " started_at, ended_at, cause) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
    [ST_DELETE_JOBS] = "DELETE FROM jobs WHERE id BETWEEN ?1 AND ?2",
    [ST_DELETE_ATTEMPTS] = "DELETE FROM attempts WHERE job_id BETWEEN ?1 AND ?2",
    [ST_SET_META] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [ST_IDS_AFTER] = "SELECT id FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_DELETE_ORPHANS] = "DELETE FROM attempts WHERE job_id NOT IN (SELECT id FROM jobs)",
};

/* A bounded vector of job ids, reused from turn to turn. */
typedef struct id_vec {
    uint64_t *v; /* the ids */
    size_t n;    /* entries of v */
    size_t cap;  /* allocated entries of v */
} id_vec_t;

typedef struct sqlite_store {
    tqd_store_t base;           /* first member: what the broker holds */
    sqlite3 *db;                /* the connection */
    sqlite3_stmt *st[ST_COUNT]; /* prepared statements */
    tqd_queue_t *q;             /* the queue recovered into: reconciled from */
    char *path;                 /* the database file */
    char *wal_path;             /* its write-ahead log */
    int lock_fd;                /* holds the flock of path.lock */
    int64_t wall_offset;        /* broker clock + wall_offset = Unix ms */
    uint64_t next_id_stored;    /* meta next_id as last committed */
    uint64_t del_lo;            /* forgotten ids not yet deleted: del_lo.. */
    uint64_t del_hi;            /* ..del_hi; 0: none */
    bool del_hist;              /* one of them had history rows */
    bool in_txn;                /* a transaction is open */
    bool failed;                /* a statement of this turn failed */
    bool failing;               /* no write succeeded since a commit failed */
    int64_t changes_at_begin;   /* sqlite3_total_changes64 when the transaction began */
    bool recovering;            /* inside recover: changes are only noted */
    bool resync;                /* reconcile every job, not just dirty ones */
    bool touched_overflow;      /* touched lost ids: a failure means resync */
    int err;                    /* SQLite code of this turn's failure */
    int bind_err;               /* first failed bind since the last step */
    char errmsg[256];           /* SQLite's message for it */
    id_vec_t touched;           /* ids recorded since the transaction began */
    id_vec_t dirty;             /* ids to reconcile (sorted, unique) */
} sqlite_store_t;

static sqlite_store_t *store_of(tqd_store_t *base)
{
    return (sqlite_store_t *)base;
}

/* Append id.  Returns 0 or -ENOSPC when the vector is full (DIRTY_MAX)
 * or cannot grow. */
static int vec_push(id_vec_t *v, uint64_t id)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 256;
        uint64_t *nv = ncap <= DIRTY_MAX ? realloc(v->v, ncap * sizeof *nv) : NULL;
        if (!nv)
            return -ENOSPC;
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = id;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sort v and drop repeated ids. */
static void sort_unique(id_vec_t *v)
{
    qsort(v->v, v->n, sizeof *v->v, cmp_id);
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++)
        if (k == 0 || v->v[k - 1] != v->v[i])
            v->v[k++] = v->v[i];
    v->n = k;
}

/* Reconcile id at the next commit.  Past DIRTY_MAX ids, the next commit
 * reconciles every job instead. */
static void mark_dirty(sqlite_store_t *s, uint64_t id)
{
    if (!s->resync && vec_push(&s->dirty, id) < 0) {
        s->resync = true;
        s->dirty.n = 0;
    }
}

/* ---- Statements ------------------------------------------------------- */

/* Remember the first failure of this turn with SQLite's message. */
static void fail(sqlite_store_t *s, int rc, const char *msg)
{
    if (s->failed)
        return;
    s->failed = true;
    s->err = rc;
    snprintf(s->errmsg, sizeof s->errmsg, "%s", msg);
}

/* The binds keep their first failure for run() to report. */
static void bind_i64(sqlite_store_t *s, sqlite3_stmt *st, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(st, i, v);
    if (rc != SQLITE_OK && s->bind_err == SQLITE_OK)
        s->bind_err = rc;
}

static void bind_null(sqlite_store_t *s, sqlite3_stmt *st, int i)
{
    int rc = sqlite3_bind_null(st, i);
    if (rc != SQLITE_OK && s->bind_err == SQLITE_OK)
        s->bind_err = rc;
}

/* Bytes bound as TEXT or BLOB; the caller keeps them until run().  An
 * empty span binds an empty value, not NULL. */
static void bind_bytes(sqlite_store_t *s, sqlite3_stmt *st, int i, taskq_span_t b, bool text)
{
    const void *p = b.len ? (const void *)b.ptr : "";
    int rc = b.len > INT32_MAX ? SQLITE_TOOBIG
             : text            ? sqlite3_bind_text(st, i, p, (int)b.len, SQLITE_STATIC)
                               : sqlite3_bind_blob(st, i, p, (int)b.len, SQLITE_STATIC);
    if (rc != SQLITE_OK && s->bind_err == SQLITE_OK)
        s->bind_err = rc;
}

/* Step a writing statement to its end.  Nothing runs once this turn has
 * failed.  Returns true if it ran. */
static bool run(sqlite_store_t *s, sqlite3_stmt *st)
{
    int rc = s->bind_err;
    s->bind_err = SQLITE_OK;
    if (s->failed)
        return false;
    if (rc != SQLITE_OK) {
        fail(s, rc, sqlite3_errstr(rc));
        return false;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        fail(s, rc, sqlite3_errmsg(s->db));
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

/* Open this turn's transaction if it is not open.  false if this turn
 * cannot write (it failed). */
static bool begin(sqlite_store_t *s)
{
    if (s->in_txn || s->failed)
        return !s->failed;
    s->changes_at_begin = sqlite3_total_changes64(s->db);
    s->in_txn = run(s, s->st[ST_BEGIN]);
    return s->in_txn;
}

static taskq_span_t span_of(const uint8_t *p, size_t len)
{
    return (taskq_span_t){p, len};
}

/* Write the mutable columns of job's row. */
static void write_state(sqlite_store_t *s, const tqd_job_t *job)
{
    sqlite3_stmt *st = s->st[ST_UPDATE];
    bind_i64(s, st, 1, (int64_t)job->id);
    bind_i64(s, st, 2, (int64_t)job->client_id);
    bind_i64(s, st, 3, (int64_t)job->req_id);
    bind_i64(s, st, 4, job->batch);
    bind_i64(s, st, 5, job->state);
    bind_i64(s, st, 6, job->attempt);
    const tqd_worker_t *w = job->state == TQD_JOB_RUNNING ? job->worker : NULL;
    if (w) {
        bind_bytes(s, st, 7, span_of(w->peer.name, w->peer.name_len), true);
        bind_bytes(s, st, 8, span_of(w->peer.host, w->peer.host_len), true);
        bind_i64(s, st, 9, w->peer.pid);
        bind_i64(s, st, 10, (int64_t)job->started_ms + s->wall_offset);
    } else {
        for (int i = 7; i <= 10; i++)
            bind_null(s, st, i);
    }
    if (job->state == TQD_JOB_FINISHED) {
        bind_i64(s, st, 11, job->status);
        bind_bytes(s, st, 12, tqd_job_payload(job), false);
        bind_i64(s, st, 13, (int64_t)job->finished_ms + s->wall_offset);
    } else {
        for (int i = 11; i <= 13; i++)
            bind_null(s, st, i);
    }
    bind_i64(s, st, 14, job->history ? job->history->n : 0);
    run(s, st);
}

/* Insert job's history entries from..n and count them stored. */
static void write_history(sqlite_store_t *s, const tqd_job_t *job, uint16_t from)
{
    tqd_history_t *h = job->history;
    sqlite3_stmt *st = s->st[ST_ADD_ATTEMPT];
    for (uint16_t i = from; i < h->n && !s->failed; i++) {
        const tqd_attempt_rec_t *a = h->v[i];
        bind_i64(s, st, 1, (int64_t)job->id);
        bind_i64(s, st, 2, i);
        bind_i64(s, st, 3, a->attempt);
        bind_bytes(s, st, 4, a->worker, true);
        bind_bytes(s, st, 5, a->host, true);
        bind_i64(s, st, 6, a->pid);
        bind_i64(s, st, 7, (int64_t)a->started_ms);
        bind_i64(s, st, 8, (int64_t)a->ended_ms);
        bind_bytes(s, st, 9, a->cause, true);
        run(s, st);
    }
    h->stored = h->n;
}

/* Delete the rows of ids lo..hi from jobs (ST_DELETE_JOBS) or attempts
 * (ST_DELETE_ATTEMPTS). */
static void delete_ids(sqlite_store_t *s, int which, uint64_t lo, uint64_t hi)
{
    sqlite3_stmt *st = s->st[which];
    bind_i64(s, st, 1, (int64_t)lo);
    bind_i64(s, st, 2, (int64_t)hi);
    run(s, st);
}

static void flush_deletes(sqlite_store_t *s)
{
    if (s->del_hi == 0)
        return;
    delete_ids(s, ST_DELETE_JOBS, s->del_lo, s->del_hi);
    if (s->del_hist)
        delete_ids(s, ST_DELETE_ATTEMPTS, s->del_lo, s->del_hi);
    s->del_hi = 0;
}

/* ---- Recording hooks --------------------------------------------------- */

/* Note that this transaction writes id: if it fails, id is reconciled. */
static void touch(sqlite_store_t *s, uint64_t id)
{
    if (!s->touched_overflow && vec_push(&s->touched, id) < 0)
        s->touched_overflow = true;
}

static void sql_submitted(tqd_store_t *base, const tqd_job_t *job)
{
    sqlite_store_t *s = store_of(base);
    touch(s, job->id);
    if (!begin(s))
        return;
    sqlite3_stmt *st = s->st[ST_INSERT];
    const tqd_lane_t *lane = job->lane;
    bind_i64(s, st, 1, (int64_t)job->id);
    bind_i64(s, st, 2, (int64_t)job->client_id);
    bind_i64(s, st, 3, (int64_t)job->req_id);
    bind_i64(s, st, 4, job->batch);
    bind_bytes(s, st, 5, span_of(lane->queue->name, lane->queue->name_len), true);
    bind_bytes(s, st, 6, span_of(lane->function, lane->function_len), true);
    bind_i64(s, st, 7, job->priority);
    bind_i64(s, st, 8, job->timeout_ms);
    bind_i64(s, st, 9, job->max_attempts);
    bind_bytes(s, st, 10, span_of(job->arg, job->arg_len), false);
    bind_i64(s, st, 11, job->state);
    bind_i64(s, st, 12, job->attempt);
    bind_i64(s, st, 13, (int64_t)job->owner);
    run(s, st);
}

static void sql_changed(tqd_store_t *base, tqd_job_t *job)
{
    sqlite_store_t *s = store_of(base);
    /* While recover steps through the table, nothing is written to it:
     * the commit that follows recovery reconciles these. */
    if (s->recovering) {
        mark_dirty(s, job->id);
        return;
    }
    touch(s, job->id);
    if (begin(s)) {
        write_state(s, job);
        if (job->history)
            write_history(s, job, job->history->stored);
    } else if (job->history) {
        job->history->stored = job->history->n; /* reconcile rewrites them all */
    }
}

static void sql_forgotten(tqd_store_t *base, const tqd_job_t *job)
{
    sqlite_store_t *s = store_of(base);
    touch(s, job->id);
    if (!begin(s))
        return;
    /* Runs of consecutive ids (expiry of the oldest, a batch of ACKs)
     * become one range delete. */
    if (s->del_hi && job->id == s->del_hi + 1) {
        s->del_hi = job->id;
        s->del_hist |= job->history != NULL;
        return;
    }
    flush_deletes(s);
    s->del_lo = s->del_hi = job->id;
    s->del_hist = job->history != NULL;
}

/* ---- Commit and reconcile ------------------------------------------------ */

/* Make the row of id match the queue: rewrite it from the job, or delete
 * it if the queue no longer has the job. */
static void reconcile_id(sqlite_store_t *s, uint64_t id)
{
    tqd_job_t *job = tqd_queue_find(s->q, id);
    if (job)
        write_state(s, job);
    else
        delete_ids(s, ST_DELETE_JOBS, id, id);
    delete_ids(s, ST_DELETE_ATTEMPTS, id, id);
    if (job && job->history)
        write_history(s, job, 0);
}

/* Reconcile every row and every job: after more failures than the dirty
 * set could name. */
static void reconcile_all(sqlite_store_t *s)
{
    size_t pos = 0;
    tqd_job_t *job;
    while (!s->failed && (job = tqd_htab_next(&s->q->jobs, &pos)))
        reconcile_id(s, job->id);
    /* Rows of jobs the queue no longer has, a page of ids at a time so
     * that no SELECT is open while rows are deleted. */
    uint64_t after = 0;
    for (size_t got = IDS_PER_SCAN; got == IDS_PER_SCAN && !s->failed;) {
        uint64_t ids[IDS_PER_SCAN];
        sqlite3_stmt *st = s->st[ST_IDS_AFTER];
        bind_i64(s, st, 1, (int64_t)after);
        bind_i64(s, st, 2, IDS_PER_SCAN);
        int rc;
        got = 0;
        while (got < IDS_PER_SCAN && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ids[got++] = (uint64_t)sqlite3_column_int64(st, 0);
        if (got < IDS_PER_SCAN && rc != SQLITE_DONE)
            fail(s, rc, sqlite3_errmsg(s->db));
        sqlite3_reset(st);
        for (size_t i = 0; i < got; i++)
            if (!tqd_queue_find(s->q, ids[i]))
                delete_ids(s, ST_DELETE_JOBS, ids[i], ids[i]);
        if (got)
            after = ids[got - 1];
    }
    run(s, s->st[ST_DELETE_ORPHANS]);
}

static void reconcile(sqlite_store_t *s)
{
    if (!begin(s))
        return;
    if (s->resync) {
        reconcile_all(s);
        return;
    }
    for (size_t i = 0; i < s->dirty.n && !s->failed; i++)
        reconcile_id(s, s->dirty.v[i]);
}

static void write_meta(sqlite_store_t *s, const char *key, int64_t value)
{
    sqlite3_stmt *st = s->st[ST_SET_META];
    bind_bytes(s, st, 1, taskq_span_cstr(key), true);
    bind_i64(s, st, 2, value);
    run(s, st);
}

static int sql_commit(tqd_store_t *base)
{
    sqlite_store_t *s = store_of(base);
    flush_deletes(s);
    if (s->resync || s->dirty.n)
        reconcile(s);
    uint64_t next_id = s->q ? s->q->next_id : s->next_id_stored;
    if (next_id != s->next_id_stored && begin(s))
        write_meta(s, "next_id", (int64_t)next_id);
    if (!s->in_txn && !s->failed)
        return s->failing ? TQD_STORE_UNPROVEN : 0;
    bool wrote = sqlite3_total_changes64(s->db) != s->changes_at_begin;
    run(s, s->st[ST_COMMIT]);
    s->in_txn = false;
    if (!s->failed) {
        s->next_id_stored = next_id;
        s->touched.n = s->dirty.n = 0;
        s->touched_overflow = s->resync = false;
        /* A transaction that changed no row (deleting rows a failed one
         * never wrote, say) proves nothing about a full disk. */
        s->failing = s->failing && !wrote;
        return s->failing ? TQD_STORE_UNPROVEN : 0;
    }
    /* A failed statement or COMMIT may have ended the transaction already
     * (SQLite rolls back by itself on a full disk, say). */
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->del_hi = 0;
    if (s->touched_overflow) {
        s->resync = true;
        s->dirty.n = 0;
    } else {
        sort_unique(&s->touched);
        for (size_t i = 0; i < s->touched.n; i++)
            mark_dirty(s, s->touched.v[i]);
        sort_unique(&s->dirty);
    }
    s->touched.n = 0;
    s->touched_overflow = false;
    if (!s->failing)
        TQ_LOG(LOG_ERR, "%s: cannot write: %s", s->path, s->errmsg);
    s->failing = true;
    s->failed = false;
    return (s->err & 0xff) == SQLITE_FULL ? -ENOSPC : -EIO;
}

/* ---- Recovery ---------------------------------------------------------- */

static const char select_jobs_sql[] =
    "SELECT id, client_id, req_id, batch, queue, function, priority, timeout_ms, max_attempts,"
    " arg, state, attempt, worker, host, pid, started_at, status, result, finished_at, failures,"
    " owner FROM jobs ORDER BY id";
static const char select_attempts_sql[] =
    "SELECT attempt, worker, host, pid, started_at, ended_at, cause FROM attempts"
    " WHERE job_id = ?1 ORDER BY seq LIMIT ?2";

#define TIME_MAX  (INT64_MAX / 4) /* stored times beyond it are damage */
#define CAUSE_MAX 65536           /* longest history cause read back */

/* Column i as an integer in lo..hi; *bad is set if it is not. */
static int64_t col_int(sqlite3_stmt *st, int i, int64_t lo, int64_t hi, bool *bad)
{
    int64_t v = sqlite3_column_int64(st, i);
    if (v < lo || v > hi)
        *bad = true;
    return v;
}

/* Column i's bytes, valid until the statement steps or resets. */
static taskq_span_t col_span(sqlite3_stmt *st, int i)
{
    const uint8_t *p = sqlite3_column_blob(st, i);
    return (taskq_span_t){p, (size_t)sqlite3_column_bytes(st, i)};
}

/* The history of the job being read: entries and the bytes of their names. */
typedef struct hist_buf {
    tqd_attempt_rec_t v[TQD_MAX_HISTORY]; /* entries */
    uint8_t *bytes;                       /* worker, host, cause of each, in order */
    size_t len;                           /* bytes used */
    size_t cap;                           /* bytes allocated */
} hist_buf_t;

static int hist_append(hist_buf_t *h, taskq_span_t *t)
{
    if (h->len + t->len > h->cap) {
        size_t ncap = h->cap ? h->cap : 4096;
        while (ncap < h->len + t->len)
            ncap *= 2;
        uint8_t *nb = realloc(h->bytes, ncap);
        if (!nb)
            return -ENOMEM;
        h->bytes = nb;
        h->cap = ncap;
    }
    if (t->len)
        memcpy(h->bytes + h->len, t->ptr, t->len);
    h->len += t->len;
    t->ptr = NULL; /* set once every entry is in: the bytes may move */
    return 0;
}

/*
 * Read the history rows of job id into h, oldest first.  A row out of
 * range is left out and sets *damaged.  Returns the entries read,
 * -ENOMEM, or -EIO (SQLite's message logged).
 */
static int load_history(sqlite_store_t *s, sqlite3_stmt *st, uint64_t id, hist_buf_t *h,
                        bool *damaged)
{
    sqlite3_bind_int64(st, 1, (int64_t)id);
    sqlite3_bind_int64(st, 2, TQD_MAX_HISTORY);
    h->len = 0;
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bool bad = false;
        tqd_attempt_rec_t *a = &h->v[n];
        a->attempt = (uint32_t)col_int(st, 0, 0, UINT32_MAX, &bad);
        a->worker = col_span(st, 1);
        a->host = col_span(st, 2);
        a->pid = (uint32_t)col_int(st, 3, 0, UINT32_MAX, &bad);
        a->started_ms = (uint64_t)col_int(st, 4, 0, TIME_MAX, &bad);
        a->ended_ms = (uint64_t)col_int(st, 5, 0, TIME_MAX, &bad);
        a->cause = col_span(st, 6);
        if (bad || a->worker.len > TQD_PEER_ID_MAX || a->host.len > TQD_PEER_ID_MAX ||
            a->cause.len > CAUSE_MAX) {
            *damaged = true;
            continue;
        }
        if (hist_append(h, &a->worker) < 0 || hist_append(h, &a->host) < 0 ||
            hist_append(h, &a->cause) < 0) {
            sqlite3_reset(st);
            return -ENOMEM;
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        TQ_LOG(LOG_ERR, "%s: cannot read the history of job %" PRIu64 ": %s", s->path, id,
               sqlite3_errmsg(s->db));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        taskq_span_t *t[3] = {&h->v[i].worker, &h->v[i].host, &h->v[i].cause};
        for (int k = 0; k < 3; k++) {
            t[k]->ptr = h->bytes + off;
            off += t[k]->len;
        }
    }
    return n;
}

/* Counts of a recovery, for its log line. */
typedef struct recovered {
    uint64_t queued;   /* stored queued, queued again */
    uint64_t requeued; /* stored running, queued again */
    uint64_t lost;     /* stored running on its last attempt: LOST */
    uint64_t retained; /* stored finished, retained */
    uint64_t skipped;  /* rows out of range, left in the table */
} recovered_t;

/*
 * Fill r from the current row of st (the columns of select_jobs_sql).
 * Spans point into the row.  Returns false if a value is out of range.
 */
static bool row_to_rec(sqlite_store_t *s, sqlite3_stmt *st, uint64_t now, tqd_job_rec_t *r,
                       int64_t *failures)
{
    bool bad = false;
    memset(r, 0, sizeof *r);
    r->id = (uint64_t)col_int(st, 0, 1, INT64_MAX, &bad);
    r->client_id = (uint64_t)sqlite3_column_int64(st, 1);
    r->req_id = (uint64_t)sqlite3_column_int64(st, 2);
    r->batch = (uint32_t)col_int(st, 3, 0, UINT32_MAX, &bad);
    r->task.queue = col_span(st, 4);
    r->task.function = col_span(st, 5);
    r->task.priority = (int32_t)col_int(st, 6, INT32_MIN, INT32_MAX, &bad);
    r->task.timeout_ms = (uint32_t)col_int(st, 7, 0, UINT32_MAX, &bad);
    r->task.max_attempts = (uint32_t)col_int(st, 8, 0, UINT32_MAX, &bad);
    r->task.arg = col_span(st, 9);
    r->state = (uint8_t)col_int(st, 10, 0, UINT8_MAX, &bad);
    r->attempt = (uint16_t)col_int(st, 11, 0, UINT16_MAX, &bad);
    if (r->state == TQD_JOB_RUNNING) {
        r->running.attempt = r->attempt;
        r->running.worker = col_span(st, 12);
        r->running.host = col_span(st, 13);
        r->running.pid = (uint32_t)col_int(st, 14, 0, UINT32_MAX, &bad);
        r->running.started_ms = (uint64_t)col_int(st, 15, 0, TIME_MAX, &bad);
    }
    if (r->state == TQD_JOB_FINISHED) {
        r->status = (uint8_t)col_int(st, 16, 0, UINT8_MAX, &bad);
        r->result = col_span(st, 17);
        bool bad_time = false;
        int64_t at = col_int(st, 18, 0, TIME_MAX, &bad_time);
        int64_t t = bad_time ? 0 : at - s->wall_offset;
        r->finished_ms = t < 0 ? 0 : (uint64_t)t > now ? now : (uint64_t)t;
        bad |= bad_time;
    }
    *failures = col_int(st, 19, 0, INT64_MAX, &bad);
    r->owner = (uint64_t)sqlite3_column_int64(st, 20);
    return !bad;
}

/* Restore the job of the current row of st.  Returns 0 (also for a row
 * skipped as damaged) or a negative errno that stops recovery. */
static int recover_row(sqlite_store_t *s, sqlite3_stmt *st, sqlite3_stmt *hist_st,
                       hist_buf_t *h, uint64_t now, recovered_t *c)
{
    tqd_job_rec_t r;
    int64_t failures;
    bool damaged = false;
    if (!row_to_rec(s, st, now, &r, &failures)) {
        TQ_LOG(LOG_WARNING, "%s: job %" PRId64 " has values out of range; skipped", s->path,
               (int64_t)sqlite3_column_int64(st, 0));
        c->skipped++;
        return 0;
    }
    if (failures > 0) {
        int n = load_history(s, hist_st, r.id, h, &damaged);
        if (n < 0)
            return n;
        r.hist = h->v;
        r.n_hist = (uint16_t)n;
        damaged |= n != failures;
    }
    tqd_job_t *job;
    int rc = tqd_queue_restore(s->q, &r, now, &job);
    if (rc == -EINVAL || rc == -EEXIST) {
        TQ_LOG(LOG_WARNING, "%s: job %" PRIu64 " cannot be restored (%s); skipped", s->path,
               r.id, strerror(-rc));
        c->skipped++;
        return 0;
    }
    if (rc < 0) {
        TQ_LOG(LOG_ERR, "%s: cannot restore job %" PRIu64 ": %s", s->path, r.id, strerror(-rc));
        return rc;
    }
    /* History rows left out or missing: rewrite them from the job. */
    if (damaged) {
        TQ_LOG(LOG_WARNING, "%s: job %" PRIu64 " has damaged history rows; rewriting them",
               s->path, r.id);
        mark_dirty(s, r.id);
    }
    if (r.state == TQD_JOB_FINISHED)
        c->retained++;
    else if (r.state != TQD_JOB_RUNNING)
        c->queued++;
    else if (job->state == TQD_JOB_FINISHED)
        c->lost++;
    else
        c->requeued++;
    return 0;
}

static int sql_recover(tqd_store_t *base, tqd_queue_t *q, uint64_t now)
{
    sqlite_store_t *s = store_of(base);
    s->q = q;
    hist_buf_t *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    sqlite3_stmt *st = NULL, *hist_st = NULL;
    int rc = sqlite3_prepare_v2(s->db, select_jobs_sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, select_attempts_sql, -1, &hist_st, NULL);
    recovered_t c = {0};
    uint64_t max_id = 0;
    int ret = 0;
    s->recovering = true;
    if (rc == SQLITE_OK) {
        while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id > 0 && (uint64_t)id > max_id)
                max_id = (uint64_t)id;
            ret = recover_row(s, st, hist_st, h, now, &c);
        }
    }
    s->recovering = false;
    if (ret == 0 && rc != SQLITE_DONE) {
        TQ_LOG(LOG_ERR, "%s: cannot read the jobs: %s", s->path, sqlite3_errmsg(s->db));
        ret = -EIO;
    }
    sqlite3_finalize(st);
    sqlite3_finalize(hist_st);
    free(h->bytes);
    free(h);
    if (ret < 0)
        return ret;
    q->next_id = s->next_id_stored > max_id ? s->next_id_stored : max_id + 1;
    TQ_LOG(LOG_NOTICE,
           "%s: recovered %" PRIu64 " queued, %" PRIu64 " requeued, %" PRIu64 " lost, %" PRIu64
           " retained jobs (%" PRIu64 " skipped); next id %" PRIu64,
           s->path, c.queued, c.requeued, c.lost, c.retained, c.skipped, q->next_id);
    return 0;
}

/* ---- Size and close ---------------------------------------------------- */

static uint64_t sql_size(tqd_store_t *base)
{
    sqlite_store_t *s = store_of(base);
    uint64_t total = 0;
    struct stat sb;
    if (stat(s->path, &sb) == 0)
        total += (uint64_t)sb.st_size;
    if (stat(s->wal_path, &sb) == 0)
        total += (uint64_t)sb.st_size;
    return total;
}

static void sql_close(tqd_store_t *base)
{
    sqlite_store_t *s = store_of(base);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    /* The last connection to close checkpoints the log into the database
     * and removes it. */
    if (sqlite3_close(s->db) != SQLITE_OK)
        TQ_LOG(LOG_ERR, "%s: cannot close: %s", s->path, sqlite3_errmsg(s->db));
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->touched.v);
    free(s->dirty.v);
    free(s->path);
    free(s->wal_path);
    free(s);
}

static const tqd_store_ops_t sqlite_ops = {
    .name = "sqlite",
    .recover = sql_recover,
    .submitted = sql_submitted,
    .changed = sql_changed,
    .forgotten = sql_forgotten,
    .commit = sql_commit,
    .size = sql_size,
    .close = sql_close,
};

/* ---- Open -------------------------------------------------------------- */

/* Describe a failed SQLite call at open in err; returns a negative errno. */
static int open_error(sqlite_store_t *s, int rc, const char *what, char *err, size_t cap)
{
    snprintf(err, cap, "%s: %s: %s", s->path, what,
             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_PERM:
    case SQLITE_READONLY:
        return -EACCES;
    case SQLITE_NOTADB:
        return -EINVAL;
    case SQLITE_CANTOPEN:
        return s->db && sqlite3_system_errno(s->db) > 0 ? -sqlite3_system_errno(s->db) : -EACCES;
    default:
        return -EIO;
    }
}

/* One integer of the meta table into *ret.  Returns SQLITE_OK,
 * SQLITE_NOTFOUND if the key is missing, or SQLite's error. */
static int read_meta(sqlite3 *db, const char *key, int64_t *ret)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    sqlite3_finalize(st);
    return rc;
}

/* The single integer the query returns, or SQLite's error. */
static int query_int(sqlite3 *db, const char *sql, int64_t *ret)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Create the schema in an empty database, with a new store_id.  Returns
 * SQLITE_OK or SQLite's error. */
static int create_schema(sqlite3 *db)
{
    uint64_t id = 0;
    while (id == 0)
        if (tqd_os_random(&id, sizeof id) < 0)
            return SQLITE_IOERR;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO meta VALUES('schema', ?1), ('store_id', ?2)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, SCHEMA_VERSION);
        sqlite3_bind_int64(st, 2, (int64_t)id);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Take path.lock so that one taskqd at a time uses the database. */
static int lock_db(sqlite_store_t *s, char *err, size_t cap)
{
    size_t len = strlen(s->path);
    char *lock_path = malloc(len + sizeof ".lock");
    if (!lock_path)
        return -ENOMEM;
    memcpy(lock_path, s->path, len);
    memcpy(lock_path + len, ".lock", sizeof ".lock");
    int rc = 0;
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = -errno;
        snprintf(err, cap, "%s: cannot open its lock file %s: %s", s->path, lock_path,
                 strerror(-rc));
    } else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY)
            snprintf(err, cap, "%s: in use by another taskqd (%s is locked)", s->path,
                     lock_path);
        else
            snprintf(err, cap, "%s: cannot lock %s: %s", s->path, lock_path, strerror(-rc));
    }
    free(lock_path);
    return rc;
}

/* Configure the connection, check or create the schema, read the meta
 * values and prepare the statements.  Returns 0 or a negative errno with
 * the reason in err. */
static int setup_db(sqlite_store_t *s, tqd_sync_t sync, char *err, size_t cap)
{
    sqlite3 *db = s->db;
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* Look before changing anything: a file of something else is left
     * as it is. */
    int64_t tables = 0, meta = 0;
    int rc = query_int(db, "SELECT count(*) FROM sqlite_master", &tables);
    if (rc == SQLITE_OK)
        rc = query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'meta'", &meta);
    if (rc != SQLITE_OK)
        return open_error(s, rc, "cannot read the schema", err, cap);
    if (tables > 0 && meta == 0) {
        snprintf(err, cap, "%s: not a taskq database (it has no meta table)", s->path);
        return -EINVAL;
    }
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        bool wal = rc == SQLITE_ROW &&
                   sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
        sqlite3_finalize(st);
        if (rc == SQLITE_ROW && !wal) {
            snprintf(err, cap, "%s: cannot use WAL mode", s->path);
            return -EIO;
        }
    }
    if (rc != SQLITE_ROW)
        return open_error(s, rc, "cannot use WAL mode", err, cap);
    rc = sqlite3_exec(db,
                      sync == TQD_SYNC_FULL ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                      NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA journal_size_limit=67108864", NULL, NULL, NULL);
    if (rc == SQLITE_OK && tables == 0)
        rc = create_schema(db);
    if (rc != SQLITE_OK)
        return open_error(s, rc, tables ? "cannot configure" : "cannot create the schema", err,
                          cap);
    int64_t version = 0, store_id = 0, next_id = 0;
    rc = read_meta(db, "schema", &version);
    if (rc == SQLITE_OK)
        rc = read_meta(db, "store_id", &store_id);
    if (rc == SQLITE_OK)
        rc = read_meta(db, "next_id", &next_id);
    if (rc == SQLITE_NOTFOUND || (rc == SQLITE_OK && store_id == 0)) {
        snprintf(err, cap, "%s: not a taskq database (no schema, store_id or next_id in meta)",
                 s->path);
        return -EINVAL;
    }
    if (rc != SQLITE_OK)
        return open_error(s, rc, "cannot read the meta table", err, cap);
    if (version == 1) {
        /* Version 1 had no owners: its jobs become visible to admins only. */
        rc = sqlite3_exec(db,
                          "BEGIN IMMEDIATE;"
                          "ALTER TABLE jobs ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;"
                          "UPDATE meta SET value = 2 WHERE key = 'schema';"
                          "COMMIT",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            if (!sqlite3_get_autocommit(db))
                sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return open_error(s, rc, "cannot upgrade the schema from version 1", err, cap);
        }
        version = 2;
    }
    if (version != SCHEMA_VERSION) {
        snprintf(err, cap, "%s: schema version %" PRId64 " is not %d, the one this taskqd knows",
                 s->path, version, SCHEMA_VERSION);
        return -EINVAL;
    }
    s->base.id = (uint64_t)store_id;
    s->next_id_stored = next_id > 0 ? (uint64_t)next_id : 1;
    for (int i = 0; i < ST_COUNT && rc == SQLITE_OK; i++)
        rc = sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
    if (rc != SQLITE_OK)
        return open_error(s, rc, "cannot prepare its statements (damaged schema?)", err, cap);
    return 0;
}

int tqd_store_sqlite_open(const char *path, tqd_sync_t sync, int64_t wall_offset,
                          tqd_store_t **ret, char *err, size_t cap)
{
    sqlite_store_t *s = calloc(1, sizeof *s);
    size_t len = strlen(path);
    if (!s || !(s->path = strdup(path)) || !(s->wal_path = malloc(len + sizeof "-wal"))) {
        snprintf(err, cap, "%s: out of memory", path);
        if (s)
            free(s->path);
        free(s);
        return -ENOMEM;
    }
    memcpy(s->wal_path, path, len);
    memcpy(s->wal_path + len, "-wal", sizeof "-wal");
    s->base.ops = &sqlite_ops;
    s->wall_offset = wall_offset;
    s->lock_fd = -1;
    int rc = lock_db(s, err, cap);
    if (rc == 0) {
        /* Tasks and results are the users' data: the file (and the WAL and
         * shared-memory files SQLite gives the same mode) is the broker's
         * alone.  An existing file keeps the mode its owner gave it. */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
        int src = sqlite3_open_v2(path, &s->db,
                                  SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                  NULL);
        rc = src == SQLITE_OK ? setup_db(s, sync, err, cap)
                              : open_error(s, src, "cannot open", err, cap);
    }
    if (rc < 0) {
        sql_close(&s->base);
        return rc;
    }
    *ret = &s->base;
    return 0;
}
