/* sqlite.c - the embedded backend: one SQLite file in WAL mode.
 *
 * One writer connection (the committer's) and a few reader connections; WAL
 * lets readers see the last commit while the writer works. synchronous=FULL
 * fsyncs the WAL at every commit, so a commit that returned is on disk;
 * NORMAL (opt-in) may lose the last commits on power loss, never corrupts.
 *
 * Schema history (PRAGMA user_version):
 *   1  tasks, attempts, idempotency and their indexes.
 *   2  events (a task's history, for SSE), deliveries and delivery_tries
 *      (webhooks); tasks.event_seq, tasks.lease_ms. Existing tasks start at event 1
 *      (task.queued, implied by the row), so old files migrate in place.
 *   3  queue_counts: tasks per (queue, state), so GET /v1/queues (and what
 *      polls it: the dashboard, metrics) reads a few rows instead of counting
 *      the table. The writer sums the changes of a transaction in memory
 *      (inserts, changes of state, purges) and adds them just before its
 *      COMMIT: a handful of row updates per batch, not one per task (SQLite
 *      triggers cost 15 % of claim+complete throughput). tasks_ready carries
 *      created_at, so the oldest queued task is found in the index alone.
 *      events_queue is gone: a queue stream reads the events after its
 *      cursor by rowid (recent, few) and keeps its queue's; one b-tree less
 *      to write on every change of state.
 *   4  An attempt is written once, when it ends: the running one lives in
 *      the task row (attempts, lease_id, attempt_started_at), so a claim
 *      writes no attempts row and the end inserts one instead of updating
 *      it (open rows of processing tasks move into the row). tasks_due,
 *      which every queued task entered and left, becomes tasks_delayed:
 *      only tasks that were not due when written (delay, run_at, backoff)
 *      are in it, which is all the due timer needs. An immediate task has
 *      due_at = created_at and is claimable even if the wall clock steps
 *      back under it.
 *   5  task_bodies: a task's payload and a route task's request when they
 *      are large (over INLINE_BODIES_MAX bytes together), written once and
 *      read only by claims (and so by the dispatcher). Every change of state
 *      rewrites the task row whole, twice per task: with 4 KiB payloads,
 *      claim+complete went from ~8 000 to ~10 400/s. Small bodies stay in
 *      the row (tasks.payload, tasks.request): a second row per submit cost
 *      8 % of the submit rate and ~30 µs of idle latency for 200 bytes.
 *   6  queue_counts per (queue, tenant, state): a client key sees its own
 *      tenant's counts, not every tenant's; the others add them up (a few
 *      rows per queue).
 *   7  tasks_deadline: the queued tasks that have a deadline (a queue's
 *      `deadline`), so the expiry timer fails them when it passes, claimed
 *      or not. Tasks without one are not in it: nothing to write for them.
 * Checkpoints (copying the WAL back into the database file) run on a thread
 * of their own (ckpt_t below), not inside the committer's COMMIT.
 *
 * A new version appends a migration to `migrations`; opening an older file
 * runs the missing ones in one transaction, a newer file is refused. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "store/sqlite_vfs.h"
#include "store/store.h"

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE tasks ("
    " id TEXT PRIMARY KEY NOT NULL, tenant TEXT NOT NULL, queue TEXT NOT NULL,"
    " state INTEGER NOT NULL, priority INTEGER NOT NULL, due_at INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms INTEGER NOT NULL,"
    " lease_id TEXT, lease_expires_at INTEGER,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER,"
    " deadline_at INTEGER, payload TEXT, request TEXT, result TEXT, error TEXT,"
    " progress_pct INTEGER, progress_msg TEXT, correlation_id TEXT, traceparent TEXT,"
    " callback_url TEXT, idem_key TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX tasks_ready ON tasks(queue, priority DESC, due_at) WHERE state = 0;"
    "CREATE INDEX tasks_due ON tasks(due_at) WHERE state = 0;"
    "CREATE INDEX tasks_lease ON tasks(lease_expires_at) WHERE state = 1;"
    "CREATE INDEX tasks_tenant ON tasks(tenant, id);"
    "CREATE INDEX tasks_finished ON tasks(queue, finished_at) WHERE state >= 2;"
    "CREATE TABLE attempts ("
    " task_id TEXT NOT NULL, n INTEGER NOT NULL, started_at INTEGER NOT NULL,"
    " ended_at INTEGER, outcome TEXT, error TEXT, lease_id TEXT,"
    " PRIMARY KEY (task_id, n)) WITHOUT ROWID;"
    "CREATE TABLE idempotency ("
    " tenant TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, task_id TEXT NOT NULL, expires_at INTEGER NOT NULL,"
    " PRIMARY KEY (tenant, scope, key)) WITHOUT ROWID;"
    "CREATE INDEX idempotency_expiry ON idempotency(expires_at);",
    /* 2 */
    "ALTER TABLE tasks ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE tasks ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY, task_id TEXT NOT NULL, seq INTEGER NOT NULL, queue TEXT NOT NULL,"
    " type TEXT NOT NULL, at INTEGER NOT NULL, data TEXT);"
    "CREATE UNIQUE INDEX events_task ON events(task_id, seq);"
    "CREATE INDEX events_queue ON events(queue, id);"
    "CREATE TABLE deliveries ("
    " id TEXT PRIMARY KEY NOT NULL, task_id TEXT NOT NULL, url TEXT NOT NULL, type TEXT NOT NULL,"
    " body TEXT NOT NULL, tenant TEXT NOT NULL, queue TEXT NOT NULL, state INTEGER NOT NULL,"
    " tries INTEGER NOT NULL, next_at INTEGER, created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL, last_error TEXT, traceparent TEXT) WITHOUT ROWID;"
    "CREATE INDEX deliveries_due ON deliveries(next_at) WHERE state = 0;"
    "CREATE INDEX deliveries_task ON deliveries(task_id);"
    "CREATE TABLE delivery_tries ("
    " delivery_id TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER NOT NULL, duration_ms INTEGER,"
    " status INTEGER, error TEXT, excerpt TEXT, PRIMARY KEY (delivery_id, n)) WITHOUT ROWID;",
    /* 3 */
    "CREATE TABLE queue_counts ("
    " queue TEXT NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (queue, state)) WITHOUT ROWID;"
    "INSERT INTO queue_counts (queue, state, n) SELECT queue, state, COUNT(*) FROM tasks"
    " GROUP BY queue, state;"
    "DROP INDEX IF EXISTS tasks_ready;"
    "CREATE INDEX tasks_ready ON tasks(queue, priority DESC, due_at, created_at) WHERE state = 0;"
    "DROP INDEX IF EXISTS events_queue;",
    /* 4 */
    "ALTER TABLE tasks ADD COLUMN attempt_started_at INTEGER;"
    "UPDATE tasks SET attempt_started_at = (SELECT started_at FROM attempts a"
    " WHERE a.task_id = tasks.id AND a.n = tasks.attempts) WHERE state = 1;"
    "DELETE FROM attempts WHERE ended_at IS NULL;"
    "DROP INDEX IF EXISTS tasks_due;"
    "CREATE INDEX tasks_delayed ON tasks(due_at) WHERE state = 0 AND due_at > created_at;",
    /* 5 (the 512 is INLINE_BODIES_MAX) */
    "CREATE TABLE task_bodies ("
    " task_id TEXT PRIMARY KEY NOT NULL, payload TEXT, request TEXT) WITHOUT ROWID;"
    "INSERT INTO task_bodies (task_id, payload, request) SELECT id, payload, request FROM tasks"
    " WHERE COALESCE(LENGTH(payload), 0) + COALESCE(LENGTH(request), 0) > 512;"
    "UPDATE tasks SET payload = NULL, request = NULL"
    " WHERE id IN (SELECT task_id FROM task_bodies);",
    /* 6 */
    "CREATE TABLE queue_counts_6 ("
    " queue TEXT NOT NULL, tenant TEXT NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (queue, tenant, state)) WITHOUT ROWID;"
    "INSERT INTO queue_counts_6 (queue, tenant, state, n)"
    " SELECT queue, COALESCE(tenant, ''), state, COUNT(*) FROM tasks"
    " GROUP BY queue, COALESCE(tenant, ''), state;"
    "DROP TABLE queue_counts;"
    "ALTER TABLE queue_counts_6 RENAME TO queue_counts;",
    /* 7 (parenthesized: clang takes two literals in a list for a missing comma) */
    ("CREATE INDEX tasks_deadline ON tasks(deadline_at)"
     " WHERE state = 0 AND deadline_at IS NOT NULL;"),
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define TASK_COLS                                                                                  \
    "id, tenant, queue, state, priority, due_at, attempts, max_attempts, timeout_ms, lease_id,"    \
    " lease_expires_at, created_at, updated_at, finished_at, deadline_at, payload, request,"       \
    " result, error, progress_pct, progress_msg, correlation_id, traceparent, callback_url,"       \
    " idem_key, cancel_requested, event_seq, lease_ms, attempt_started_at"

/* Bodies (payload + request) of up to this many bytes stay in the task row. */
#define INLINE_BODIES_MAX 512

/* What reads return: TASK_COLS without the bodies (NULL), for task_get and
 * lists, or with them from the row or from `task_bodies b` (claims). */
#define TASK_COLS_BEFORE_BODIES                                                                    \
    "t.id, t.tenant, t.queue, t.state, t.priority, t.due_at, t.attempts, t.max_attempts,"          \
    " t.timeout_ms, t.lease_id, t.lease_expires_at, t.created_at, t.updated_at, t.finished_at,"    \
    " t.deadline_at, "
#define TASK_COLS_AFTER_BODIES                                                                     \
    ", t.result, t.error, t.progress_pct, t.progress_msg, t.correlation_id, t.traceparent,"        \
    " t.callback_url, t.idem_key, t.cancel_requested, t.event_seq, t.lease_ms,"                    \
    " t.attempt_started_at"
#define TASK_COLS_NO_BODIES TASK_COLS_BEFORE_BODIES "NULL, NULL" TASK_COLS_AFTER_BODIES
#define TASK_COLS_WITH_BODIES                                                                      \
    TASK_COLS_BEFORE_BODIES "COALESCE(b.payload, t.payload), COALESCE(b.request, t.request)"       \
        TASK_COLS_AFTER_BODIES

/* a delivery with its task's correlation id (for log lines about it) */
#define DLV_COLS                                                                                   \
    "d.id, d.task_id, d.url, d.type, d.body, d.tenant, d.queue, d.state, d.tries, d.next_at,"      \
    " d.created_at, d.updated_at, d.last_error, d.traceparent, t.correlation_id"                   \
    " FROM deliveries d LEFT JOIN tasks t ON t.id = d.task_id"

enum {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_TASK_INSERT, S_TASK_GET, S_TASK_UPDATE, S_CLAIMABLE, S_EXPIRED, S_OVERDUE, S_NEXT_DUE,
    S_NEXT_EXPIRY,
    S_STATS_COUNTS, S_COUNT_ADD, S_TASK_STATE, S_STATS_OLDEST,
    S_PURGE_SELECT, S_PURGE_TASK, S_PURGE_ATTEMPTS, S_PURGE_BODIES, S_BODIES_INSERT,
    S_ATT_INSERT, S_ATT_LIST,
    S_IDEM_GET, S_IDEM_INSERT, S_IDEM_PURGE,
    S_EV_INSERT, S_EV_LIST, S_EV_QUEUE, S_EV_QUEUE_LAST, S_TASKS_AFTER, S_TASKS_LAST, S_PURGE_EVENTS, S_PURGE_TRIES, S_PURGE_DELIVERIES,
    S_DLV_INSERT, S_DLV_GET, S_DLV_UPDATE, S_DLV_DUE, S_DLV_LIST, S_TRY_INSERT, S_TRY_LIST,
    S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_TASK_INSERT] = "INSERT INTO tasks (" TASK_COLS ") VALUES "
                      "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_TASK_GET] = "SELECT " TASK_COLS_NO_BODIES " FROM tasks t WHERE id = ?",
    [S_TASK_UPDATE] = "UPDATE tasks SET state=?2, due_at=?3, attempts=?4, max_attempts=?5,"
                      " lease_id=?6, lease_expires_at=?7, updated_at=?8, finished_at=?9,"
                      " result=?10, error=?11, progress_pct=?12, progress_msg=?13,"
                      " cancel_requested=?14, lease_ms=?15, event_seq=?16, attempt_started_at=?17"
                      " WHERE id = ?1",
    [S_CLAIMABLE] = "SELECT " TASK_COLS_WITH_BODIES " FROM tasks t"
                    " LEFT JOIN task_bodies b ON b.task_id = t.id"
                    " WHERE t.queue = ?1 AND t.state = 0"
                    " AND (t.due_at <= ?2 OR t.due_at <= t.created_at)"
                    " ORDER BY t.priority DESC, t.due_at, t.created_at, t.id LIMIT ?3",
    [S_EXPIRED] = "SELECT id FROM tasks WHERE state = 1 AND lease_expires_at <= ?"
                  " ORDER BY lease_expires_at LIMIT ?",
    [S_NEXT_DUE] = "SELECT MIN(x) FROM (SELECT MIN(due_at) AS x FROM tasks WHERE state = 0 AND"
                   " due_at > created_at AND due_at > ?1 UNION ALL"
                   " SELECT MIN(next_at) FROM deliveries WHERE state = 0 AND next_at > ?1)",
    [S_OVERDUE] = "SELECT id FROM tasks WHERE state = 0 AND deadline_at IS NOT NULL"
                  " AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
    /* a lease that expires, or a deadline that passes (each from its index) */
    [S_NEXT_EXPIRY] = "SELECT MIN(t) FROM ("
                      "SELECT MIN(lease_expires_at) AS t FROM tasks WHERE state = 1 UNION ALL"
                      " SELECT MIN(deadline_at) FROM tasks"
                      " WHERE state = 0 AND deadline_at IS NOT NULL)",
    [S_STATS_COUNTS] = "SELECT state, SUM(n) FROM queue_counts WHERE queue = ?1"
                       " AND (?2 IS NULL OR tenant = ?2) GROUP BY state",
    [S_COUNT_ADD] = "INSERT INTO queue_counts (queue, tenant, state, n) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (queue, tenant, state) DO UPDATE SET n = n + ?4",
    [S_TASK_STATE] = "SELECT state FROM tasks WHERE id = ?",
    [S_STATS_OLDEST] = "SELECT MIN(created_at) FROM tasks INDEXED BY tasks_ready"
                       " WHERE queue = ? AND state = 0",
    [S_PURGE_SELECT] = "SELECT id, state, tenant FROM tasks WHERE queue = ? AND state >= 2"
                       " AND finished_at < ? ORDER BY finished_at LIMIT ?",
    [S_PURGE_TASK] = "DELETE FROM tasks WHERE id = ?",
    [S_PURGE_ATTEMPTS] = "DELETE FROM attempts WHERE task_id = ?",
    [S_PURGE_BODIES] = "DELETE FROM task_bodies WHERE task_id = ?",
    [S_BODIES_INSERT] = "INSERT INTO task_bodies (task_id, payload, request) VALUES (?, ?, ?)",
    [S_ATT_INSERT] = "INSERT INTO attempts (task_id, n, started_at, ended_at, outcome, error,"
                     " lease_id) VALUES (?,?,?,?,?,?,?)",
    [S_ATT_LIST] = "SELECT n, started_at, ended_at, outcome, error, lease_id FROM attempts"
                   " WHERE task_id = ? ORDER BY n",
    [S_IDEM_GET] = "SELECT fingerprint, task_id, expires_at FROM idempotency"
                   " WHERE tenant = ? AND scope = ? AND key = ?",
    [S_IDEM_INSERT] = "INSERT OR REPLACE INTO idempotency (tenant, scope, key, fingerprint,"
                      " task_id, expires_at) VALUES (?,?,?,?,?,?)",
    [S_EV_INSERT] = "INSERT INTO events (task_id, seq, queue, type, at, data) VALUES (?,?,?,?,?,?)",
    /* a completed task's result is stored once, on the task: the events
     * that report it take it from there */
    [S_EV_QUEUE] = "SELECT e.id, e.task_id, e.seq, e.type, e.at, e.data,"
                   " CASE WHEN e.type = 'task.completed' THEN t.result END"
                   " FROM events e LEFT JOIN tasks t ON t.id = e.task_id"
                   " WHERE e.queue = ? AND e.id > ? ORDER BY e.id LIMIT ?",
    [S_EV_QUEUE_LAST] = "SELECT MAX(id) FROM events",
    [S_TASKS_AFTER] = "SELECT id, created_at FROM tasks WHERE queue = ? AND id > ? ORDER BY id"
                      " LIMIT ?",
    [S_TASKS_LAST] = "SELECT MAX(id) FROM tasks WHERE queue = ?",
    [S_EV_LIST] = "SELECT e.seq, e.type, e.at, e.data,"
                  " CASE WHEN e.type = 'task.completed' THEN t.result END"
                  " FROM events e LEFT JOIN tasks t ON t.id = e.task_id"
                  " WHERE e.task_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
    [S_PURGE_EVENTS] = "DELETE FROM events WHERE task_id = ?",
    [S_PURGE_TRIES] = "DELETE FROM delivery_tries WHERE delivery_id IN"
                      " (SELECT id FROM deliveries WHERE task_id = ?)",
    [S_PURGE_DELIVERIES] = "DELETE FROM deliveries WHERE task_id = ?",
    [S_DLV_INSERT] = "INSERT INTO deliveries (id, task_id, url, type, body, tenant, queue, state,"
                     " tries, next_at, created_at, updated_at, last_error, traceparent)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_DLV_GET] = "SELECT " DLV_COLS " WHERE d.id = ?",
    [S_DLV_UPDATE] = "UPDATE deliveries SET state = ?2, tries = ?3, next_at = ?4, updated_at = ?5,"
                     " last_error = ?6 WHERE id = ?1",
    [S_DLV_DUE] = "SELECT id FROM deliveries WHERE state = 0 AND next_at <= ? ORDER BY next_at"
                  " LIMIT ?",
    [S_DLV_LIST] = "SELECT " DLV_COLS " WHERE d.task_id = ? ORDER BY d.created_at, d.id",
    [S_TRY_INSERT] = "INSERT INTO delivery_tries (delivery_id, n, at, duration_ms, status, error,"
                     " excerpt) VALUES (?,?,?,?,?,?,?)",
    [S_TRY_LIST] = "SELECT n, at, duration_ms, status, error, excerpt FROM delivery_tries"
                   " WHERE delivery_id = ? ORDER BY n",
    [S_IDEM_PURGE] = "DELETE FROM idempotency WHERE (tenant, scope, key) IN (SELECT tenant, scope,"
                     " key FROM idempotency WHERE expires_at < ? LIMIT ?)",
};

/* A change of queue_counts waiting for the transaction's COMMIT. */
typedef struct {
    char *queue;
    char *tenant;              /* "" for a task without one */
    int state;
    int64_t delta;
} count_delta_t;

/* The writer's checkpointer. SQLite's automatic checkpoint runs inside the
 * COMMIT that fills the WAL past 1000 pages, on the committer: it copies the
 * pages into the database file and fsyncs it there, a stall of several ms
 * every ~100 commits (it set the latency benchmark's p99). Instead the
 * writer's WAL hook wakes this thread, which runs a PASSIVE checkpoint on a
 * connection of its own while the committer goes on (WAL lets a checkpoint
 * run beside the writer). When it is done, the writer's next transaction
 * starts the WAL again from its beginning, so commits overwrite blocks the
 * file already has (an fdatasync that need not journal a new file size is
 * ~1/3 faster here). The thread is asked once when the WAL reaches
 * CKPT_PAGES and again only after CKPT_AGAIN more pages: asked after every
 * commit past the mark (as it first was), it ran checkpoints back to back
 * under steady writes, two fsyncs each, and the committer's own fdatasync
 * waited behind them. If the WAL still grows past CKPT_INLINE_PAGES (the
 * thread cannot keep up under sustained writes), the writer checkpoints
 * itself, between two of its transactions. */
#define CKPT_PAGES 1000
#define CKPT_INLINE_PAGES 2000
#define CKPT_AGAIN 250 /* pages the WAL grows before another checkpoint is asked for */

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool want, stop;
    sqlite3 *db;
    int woke_at;               /* writer thread only: WAL pages when it last woke the thread */
    int asks;                  /* writer thread only: times it woke the thread (tests) */
} ckpt_t;

struct ackd_store_conn {
    sqlite3 *db;
    bool writer;
    int lock_fd;               /* the writer's "<file>.lock", flock'd; -1 otherwise */
    ckpt_t *ckpt;              /* the writer's; NULL for readers */
    count_delta_t *deltas;     /* this transaction's, summed per (queue, state) */
    int ndeltas, capdeltas;
    sqlite3_stmt *st[S_COUNT];
    /* fail()'s log: an error repeated within ERR_LOG_EVERY_US is counted,
     * not logged (a full disk fails every batch until it has room again) */
    int err_code;              /* extended code of the last error logged */
    int64_t err_logged_us;     /* ackd_mono_us of that line */
    int64_t err_suppressed;    /* same errors since, not logged */
    sqlite3_int64 changes_at_begin; /* sqlite3_total_changes64 at BEGIN */
    bool committed_writes;     /* the last COMMIT had changed rows */
};

#define ERR_LOG_EVERY_US (10 * 1000000)

/* SQLite says a disk is full with SQLITE_FULL (ENOSPC); a quota (EDQUOT) or
 * a file-size limit (EFBIG: ulimit -f) come as an I/O error with that errno. */
static bool out_of_space(int code, int sys_errno)
{
    return (code & 0xff) == SQLITE_FULL ||
           ((code & 0xff) == SQLITE_IOERR &&
            (sys_errno == ENOSPC || sys_errno == EDQUOT || sys_errno == EFBIG));
}

static int fail(ackd_store_conn_t *c, const char *what)
{
    int code = sqlite3_extended_errcode(c->db);
    int vfs_errno = c->writer ? ackd_sqlite_vfs_take_errno() : 0;
    int sys = vfs_errno ? vfs_errno : sqlite3_system_errno(c->db);
    int64_t now = ackd_mono_us();
    if (code != c->err_code || c->err_logged_us == 0 || now - c->err_logged_us >= ERR_LOG_EVERY_US) {
        const char *sysmsg = sys ? strerrordesc_np(sys) : NULL;
        ACKD_LOG(ACKD_LOG_ERROR, "sqlite error", LOG_STR("op", what),
                 LOG_STR("error", sqlite3_errmsg(c->db)), LOG_STR("errno", sysmsg),
                 c->err_suppressed ? LOG_INT("repeats_not_logged", c->err_suppressed) : (void)0);
        c->err_code = code;
        c->err_logged_us = now;
        c->err_suppressed = 0;
    } else {
        c->err_suppressed++;
    }
    if (code == SQLITE_IOERR_FSYNC || code == SQLITE_IOERR_DIR_FSYNC)
        return ACKD_ESYNC;
    return out_of_space(code, sys) ? ACKD_ENOSPC : ACKD_EIO;
}

static sqlite3_stmt *stmt(ackd_store_conn_t *c, int which)
{
    if (!c->st[which] &&
        sqlite3_prepare_v3(c->db, sql[which], -1, SQLITE_PREPARE_PERSISTENT, &c->st[which], NULL) !=
            SQLITE_OK) {
        fail(c, sql[which]);
        return NULL;
    }
    sqlite3_reset(c->st[which]);
    sqlite3_clear_bindings(c->st[which]);
    return c->st[which];
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_time(sqlite3_stmt *s, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v ? ackd_strndup((const char *)v, (size_t)sqlite3_column_bytes(s, i)) : NULL;
}

static void col_id(sqlite3_stmt *s, int i, char *out)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    size_t n = v ? (size_t)sqlite3_column_bytes(s, i) : 0;
    if (n >= ACKD_ID_MAX)
        n = ACKD_ID_MAX - 1;
    if (n)
        memcpy(out, v, n);
    out[n] = '\0';
}

/* The next slot of a growable result array (*arr, *n used, *cap room),
 * zeroed. */
static void *next_slot(void *arr_ptr, int *n, int *cap, size_t elem)
{
    void **arr = arr_ptr;
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = ackd_realloc(*arr, (size_t)*cap * elem);
    }
    void *slot = (char *)*arr + (size_t)(*n)++ * elem;
    memset(slot, 0, elem);
    return slot;
}

/* Runs a statement that returns no rows. */
static int exec_stmt(ackd_store_conn_t *c, sqlite3_stmt *s, const char *what)
{
    /* fail() before the reset: the error and its errno are the step's */
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(c, what);
    sqlite3_reset(s);
    return rc;
}

static int exec_simple(ackd_store_conn_t *c, int which)
{
    sqlite3_stmt *s = stmt(c, which);
    return s ? exec_stmt(c, s, sql[which]) : ACKD_EIO;
}

/* --- schema --- */

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
    sqlite3_stmt *s;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &s,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
        found = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_finalize(s);
    }
    return found;
}

/* Migration 2 was changed in place while ackd was unreleased: files written
 * by the first version of it have events without id and queue, and
 * deliveries without traceparent. They are given the columns here (the
 * events table rebuilt in id order, each event taking its task's queue), so
 * those files work instead of failing every change of state. */
static int repair(ackd_store_conn_t *c, char *err, size_t errlen)
{
    static const char rebuild_events[] =
        "BEGIN IMMEDIATE;"
        "ALTER TABLE events RENAME TO events_v2_early;"
        "CREATE TABLE events ("
        " id INTEGER PRIMARY KEY, task_id TEXT NOT NULL, seq INTEGER NOT NULL,"
        " queue TEXT NOT NULL, type TEXT NOT NULL, at INTEGER NOT NULL, data TEXT);"
        "CREATE UNIQUE INDEX events_task ON events(task_id, seq);"
        "INSERT INTO events (task_id, seq, queue, type, at, data)"
        " SELECT e.task_id, e.seq, COALESCE(t.queue, ''), e.type, e.at, e.data"
        " FROM events_v2_early e LEFT JOIN tasks t ON t.id = e.task_id"
        " ORDER BY e.at, e.task_id, e.seq;"
        "DROP TABLE events_v2_early;"
        "COMMIT;";
    char *msg = NULL;
    int rc = SQLITE_OK;
    if (!has_column(c->db, "deliveries", "traceparent"))
        rc = sqlite3_exec(c->db, "ALTER TABLE deliveries ADD COLUMN traceparent TEXT", NULL, NULL,
                          &msg);
    if (rc == SQLITE_OK && !has_column(c->db, "events", "queue"))
        rc = sqlite3_exec(c->db, rebuild_events, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "cannot bring the tables of an early schema 2 up to date: %s",
             msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return ACKD_EIO;
}

/* Every column the migrations give a new database must be in this one: a
 * file another build changed is refused at start, by name, instead of
 * failing requests one by one. */
static int check_columns(ackd_store_conn_t *c, const char *location, char *err, size_t errlen)
{
    sqlite3 *ref;
    int rc = ACKD_EIO;
    if (sqlite3_open(":memory:", &ref) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open an in-memory database: %s", sqlite3_errmsg(ref));
        sqlite3_close(ref);
        return rc;
    }
    for (int v = 0; v < SCHEMA_VERSION; v++)
        if (sqlite3_exec(ref, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "the schema does not build: %s", sqlite3_errmsg(ref));
            sqlite3_close(ref);
            return rc;
        }
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(ref,
                           "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p"
                           " WHERE m.type = 'table' ORDER BY m.name, p.cid",
                           -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot list the schema's columns: %s", sqlite3_errmsg(ref));
        sqlite3_close(ref);
        return rc;
    }
    rc = 0;
    while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(s, 0);
        const char *column = (const char *)sqlite3_column_text(s, 1);
        if (!has_column(c->db, table, column)) {
            snprintf(err, errlen,
                     "%s: table %s has no column %s, which schema version %d has (was the file "
                     "written by another build of ackd?)",
                     location, table, column, SCHEMA_VERSION);
            rc = ACKD_EINVAL;
        }
    }
    sqlite3_finalize(s);
    sqlite3_close(ref);
    return rc;
}

static int migrate(ackd_store_conn_t *c, char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int version = 0;
    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    if (version > SCHEMA_VERSION) {
        snprintf(err, errlen, "the database has schema version %d, newer than this ackd (%d)",
                 version, SCHEMA_VERSION);
        return ACKD_EINVAL;
    }
    if (version == SCHEMA_VERSION)
        return 0;
    char *msg = NULL;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto failed;
    for (int v = version; v < SCHEMA_VERSION; v++)
        if (sqlite3_exec(c->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK)
            goto failed;
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (sqlite3_exec(c->db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
        goto failed;
    return 0;
failed:
    snprintf(err, errlen, "cannot migrate the database to schema version %d: %s", SCHEMA_VERSION,
             msg ? msg : sqlite3_errmsg(c->db));
    sqlite3_free(msg);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return ACKD_EIO;
}

static void *ckpt_main(void *arg)
{
    pthread_setname_np(pthread_self(), "ackd-checkpoint"); /* top -H, perf, gdb */
    ckpt_t *k = arg;
    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        if (!k->want) {
            pthread_cond_wait(&k->wake, &k->lock);
            continue;
        }
        k->want = false;
        pthread_mutex_unlock(&k->lock);
        int rc = sqlite3_wal_checkpoint_v2(k->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            ACKD_LOG(ACKD_LOG_WARN, "sqlite checkpoint failed", LOG_STR("error", sqlite3_errmsg(k->db)));
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* The writer, after each commit: the WAL holds `pages` pages. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
    ckpt_t *k = arg;
    if (pages >= CKPT_INLINE_PAGES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (pages < CKPT_PAGES) {
        k->woke_at = 0; /* the WAL started again */
    } else if (k->woke_at == 0 || pages >= k->woke_at + CKPT_AGAIN) {
        k->woke_at = pages;
        k->asks++;
        pthread_mutex_lock(&k->lock);
        k->want = true;
        pthread_cond_signal(&k->wake);
        pthread_mutex_unlock(&k->lock);
    }
    return SQLITE_OK;
}

int ackd_sqlite_checkpoint_asks(const ackd_store_conn_t *c)
{
    return c->ckpt ? c->ckpt->asks : 0;
}

static void ckpt_stop(ckpt_t *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->lock);
    pthread_cond_destroy(&k->wake);
    ackd_free(k);
}

static int ckpt_start(ackd_store_conn_t *c, const char *location, bool sync_full, char *err,
                      size_t errlen)
{
    ckpt_t *k = ACKD_NEW(ckpt_t);
    if (sqlite3_open_v2(location, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(k->db, sync_full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s for checkpoints: %s", location,
                 k->db ? sqlite3_errmsg(k->db) : "out of memory");
        sqlite3_close(k->db);
        ackd_free(k);
        return ACKD_EIO;
    }
    sqlite3_busy_timeout(k->db, 5000);
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->wake, NULL);
    pthread_create(&k->thread, NULL, ckpt_main, k);
    c->ckpt = k;
    sqlite3_wal_hook(c->db, on_wal, k); /* replaces SQLite's automatic checkpoint */
    return 0;
}

static void sq_close(ackd_store_conn_t *c)
{
    if (!c)
        return;
    if (c->ckpt) {
        sqlite3_wal_hook(c->db, NULL, NULL);
        ckpt_stop(c->ckpt);
    }
    for (int i = 0; i < c->ndeltas; i++)
        ackd_free(c->deltas[i].queue);
    ackd_free(c->deltas);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    if (c->lock_fd >= 0)
        close(c->lock_fd); /* releases the flock */
    ackd_free(c);
}

/* One ackd per database file. A second one would write the same file with
 * parked claims, timers and counts of its own, blind to the first's writes:
 * its start is refused instead. The lock is an flock on "<file>.lock" (not
 * on the database: closing any descriptor of that file would drop SQLite's
 * own POSIX locks), held while the writer is open and released by the
 * kernel if the process dies; the file holds the holder's pid, for the
 * message. Other programs (sqlite3, backups) still open the database. */
static int lock_file(const char *location, int *fd_out, char *err, size_t errlen)
{
    *fd_out = -1;
    if (location[0] == ':' || strncmp(location, "file:", 5) == 0)
        return 0; /* in memory or a URI: nothing to guard */
    char path[4096];
    if (snprintf(path, sizeof path, "%s.lock", location) >= (int)sizeof path) {
        snprintf(err, errlen, "cannot use %s: the path is too long", location);
        return ACKD_EIO;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return ACKD_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "cannot use %s: another process%s%s%s is serving it (it holds %s); one ackd "
                     "per database file",
                     location, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "", path);
        else
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(fd);
        return ACKD_EIO;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        /* the lock holds without the pid; only the message would lack it */
    }
    *fd_out = fd;
    return 0;
}

static int sq_open(const char *location, bool writer, bool sync_full, ackd_store_conn_t **out,
                   char *err, size_t errlen)
{
    ackd_store_conn_t *c = ACKD_NEW(ackd_store_conn_t);
    c->writer = writer;
    c->lock_fd = -1;
    if (writer && lock_file(location, &c->lock_fd, err, errlen) != 0) {
        ackd_free(c);
        return ACKD_EIO;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    /* the writer gathers each commit's WAL writes into one (sqlite_vfs.h);
     * only with FULL, where frames are synced before other connections
     * can know of them */
    const char *vfs = writer && sync_full && ackd_sqlite_vfs_register() == SQLITE_OK
                          ? ACKD_SQLITE_VFS
                          : NULL;
    if (sqlite3_open_v2(location, &c->db, flags, vfs) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", location,
                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sq_close(c);
        return ACKD_EIO;
    }
    sqlite3_busy_timeout(c->db, 5000);
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA temp_store = MEMORY;"
             " PRAGMA cache_size = -16384;%s",
             sync_full ? "FULL" : "NORMAL", writer ? "" : " PRAGMA query_only = 1;");
    char *msg = NULL;
    if (sqlite3_exec(c->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot set up %s: %s", location, msg ? msg : "?");
        sqlite3_free(msg);
        sq_close(c);
        return ACKD_EIO;
    }
    if (writer && (migrate(c, err, errlen) != 0 || repair(c, err, errlen) != 0 ||
                   check_columns(c, location, err, errlen) != 0)) {
        sq_close(c);
        return ACKD_EIO;
    }
    if (writer && ckpt_start(c, location, sync_full, err, errlen) != 0) {
        sq_close(c);
        return ACKD_EIO;
    }
    *out = c;
    return 0;
}

/* --- queue counts --- */

static void count_add(ackd_store_conn_t *c, const char *queue, const char *tenant, int state,
                      int64_t delta)
{
    if (!tenant)
        tenant = "";
    for (int i = 0; i < c->ndeltas; i++) {
        count_delta_t *d = &c->deltas[i];
        if (d->state == state && strcmp(d->queue, queue) == 0 && strcmp(d->tenant, tenant) == 0) {
            d->delta += delta;
            return;
        }
    }
    if (c->ndeltas == c->capdeltas) {
        c->capdeltas = c->capdeltas ? c->capdeltas * 2 : 8;
        c->deltas = ackd_realloc(c->deltas, (size_t)c->capdeltas * sizeof *c->deltas);
    }
    c->deltas[c->ndeltas++] =
        (count_delta_t){ackd_strdup(queue), ackd_strdup(tenant), state, delta};
}

static void counts_forget(ackd_store_conn_t *c)
{
    for (int i = 0; i < c->ndeltas; i++) {
        ackd_free(c->deltas[i].queue);
        ackd_free(c->deltas[i].tenant);
    }
    c->ndeltas = 0;
}

/* Writes the summed changes; in the transaction, just before COMMIT. */
static int counts_flush(ackd_store_conn_t *c)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < c->ndeltas; i++) {
        if (c->deltas[i].delta == 0)
            continue;
        sqlite3_stmt *s = stmt(c, S_COUNT_ADD);
        if (!s)
            rc = ACKD_EIO;
        else {
            bind_text(s, 1, c->deltas[i].queue);
            bind_text(s, 2, c->deltas[i].tenant);
            sqlite3_bind_int(s, 3, c->deltas[i].state);
            sqlite3_bind_int64(s, 4, c->deltas[i].delta);
            rc = exec_stmt(c, s, "queue counts");
        }
    }
    counts_forget(c);
    return rc;
}

static int sq_begin(ackd_store_conn_t *c)
{
    counts_forget(c);
    c->changes_at_begin = sqlite3_total_changes64(c->db);
    return exec_simple(c, S_BEGIN);
}

static int sq_commit(ackd_store_conn_t *c)
{
    int rc = counts_flush(c);
    c->committed_writes = sqlite3_total_changes64(c->db) != c->changes_at_begin;
    return rc ? rc : exec_simple(c, S_COMMIT);
}

static bool sq_committed_writes(ackd_store_conn_t *c)
{
    return c->committed_writes;
}

static int sq_rollback(ackd_store_conn_t *c)
{
    counts_forget(c);
    if (sqlite3_get_autocommit(c->db))
        return 0;
    return exec_simple(c, S_ROLLBACK);
}

/* One transaction that writes a page and commits: the schema version is set
 * to what it is (SQLite rewrites the header page anyway). */
static int sq_probe(ackd_store_conn_t *c)
{
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", SCHEMA_VERSION);
    int rc = sq_begin(c);
    if (rc == 0 && sqlite3_exec(c->db, pragma, NULL, NULL, NULL) != SQLITE_OK)
        rc = fail(c, pragma);
    if (rc == 0)
        rc = sq_commit(c);
    if (rc)
        sq_rollback(c);
    return rc;
}

/* Outside BEGIN/COMMIT (tests, one-off writes) every statement is its own
 * transaction: its count change is written at once. */
static int counts_autocommit(ackd_store_conn_t *c, int rc)
{
    if (rc == 0 && sqlite3_get_autocommit(c->db))
        return counts_flush(c);
    return rc;
}

/* --- tasks --- */

static int task_insert_row(ackd_store_conn_t *c, const ackd_task_t *t);

static int sq_task_insert(ackd_store_conn_t *c, ackd_task_t *t)
{
    int rc = task_insert_row(c, t);
    if (rc == 0) {
        count_add(c, t->queue, t->tenant, t->state, 1);
        t->stored_state = (signed char)(t->state + 1);
    }
    return counts_autocommit(c, rc);
}

static int task_insert_row(ackd_store_conn_t *c, const ackd_task_t *t)
{
    sqlite3_stmt *s = stmt(c, S_TASK_INSERT);
    if (!s)
        return ACKD_EIO;
    int i = 1;
    bind_text(s, i++, t->id);
    bind_text(s, i++, t->tenant);
    bind_text(s, i++, t->queue);
    sqlite3_bind_int(s, i++, t->state);
    sqlite3_bind_int(s, i++, t->priority);
    sqlite3_bind_int64(s, i++, t->due_at);
    sqlite3_bind_int(s, i++, t->attempts);
    sqlite3_bind_int(s, i++, t->max_attempts);
    sqlite3_bind_int64(s, i++, t->timeout_ms);
    bind_text(s, i++, t->lease_id[0] ? t->lease_id : NULL);
    bind_time(s, i++, t->lease_expires_at);
    sqlite3_bind_int64(s, i++, t->created_at);
    sqlite3_bind_int64(s, i++, t->updated_at);
    bind_time(s, i++, t->finished_at);
    bind_time(s, i++, t->deadline_at);
    size_t bodies = (t->payload ? strlen(t->payload) : 0) + (t->request ? strlen(t->request) : 0);
    bool out_of_row = bodies > INLINE_BODIES_MAX;
    bind_text(s, i++, out_of_row ? NULL : t->payload);
    bind_text(s, i++, out_of_row ? NULL : t->request);
    bind_text(s, i++, t->result);
    bind_text(s, i++, t->error);
    if (t->progress_pct >= 0)
        sqlite3_bind_int(s, i++, t->progress_pct);
    else
        sqlite3_bind_null(s, i++);
    bind_text(s, i++, t->progress_msg);
    bind_text(s, i++, t->correlation_id);
    bind_text(s, i++, t->traceparent);
    bind_text(s, i++, t->callback_url);
    bind_text(s, i++, t->idem_key);
    sqlite3_bind_int(s, i++, t->cancel_requested);
    sqlite3_bind_int(s, i++, t->event_seq > 0 ? t->event_seq : 1);
    sqlite3_bind_int64(s, i++, t->lease_ms);
    bind_time(s, i++, t->attempt_started_at);
    int rc = exec_stmt(c, s, "task insert");
    if (rc || !out_of_row)
        return rc;
    s = stmt(c, S_BODIES_INSERT);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, t->id);
    bind_text(s, 2, t->payload);
    bind_text(s, 3, t->request);
    return exec_stmt(c, s, "task bodies insert");
}

static void read_task(sqlite3_stmt *s, ackd_task_t *t)
{
    int i = 0;
    memset(t, 0, sizeof *t);
    col_id(s, i++, t->id);
    t->tenant = col_text(s, i++);
    t->queue = col_text(s, i++);
    t->state = sqlite3_column_int(s, i++);
    t->stored_state = (signed char)(t->state + 1);
    t->priority = sqlite3_column_int(s, i++);
    t->due_at = sqlite3_column_int64(s, i++);
    t->attempts = sqlite3_column_int(s, i++);
    t->max_attempts = sqlite3_column_int(s, i++);
    t->timeout_ms = sqlite3_column_int64(s, i++);
    col_id(s, i++, t->lease_id);
    t->lease_expires_at = sqlite3_column_int64(s, i++);
    t->created_at = sqlite3_column_int64(s, i++);
    t->updated_at = sqlite3_column_int64(s, i++);
    t->finished_at = sqlite3_column_int64(s, i++);
    t->deadline_at = sqlite3_column_int64(s, i++);
    t->payload = col_text(s, i++);
    t->request = col_text(s, i++);
    t->result = col_text(s, i++);
    t->error = col_text(s, i++);
    t->progress_pct = sqlite3_column_type(s, i) == SQLITE_NULL ? -1 : sqlite3_column_int(s, i);
    i++;
    t->progress_msg = col_text(s, i++);
    t->correlation_id = col_text(s, i++);
    t->traceparent = col_text(s, i++);
    t->callback_url = col_text(s, i++);
    t->idem_key = col_text(s, i++);
    t->cancel_requested = sqlite3_column_int(s, i++) != 0;
    t->event_seq = sqlite3_column_int(s, i++);
    t->lease_ms = sqlite3_column_int64(s, i++);
    t->attempt_started_at = sqlite3_column_int64(s, i++);
}

static int sq_task_get(ackd_store_conn_t *c, const char *id, ackd_task_t *out)
{
    sqlite3_stmt *s = stmt(c, S_TASK_GET);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_task(s, out);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? ACKD_ENOENT : fail(c, "task get");
}

/* The state the task's row has now (before the update): as read or written
 * through this struct, else read again. */
static int stored_state(ackd_store_conn_t *c, const ackd_task_t *t, int *state)
{
    if (t->stored_state > 0) {
        *state = t->stored_state - 1;
        return 0;
    }
    sqlite3_stmt *s = stmt(c, S_TASK_STATE);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, t->id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *state = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? ACKD_ENOENT : fail(c, "task state");
}

static int task_update_row(ackd_store_conn_t *c, const ackd_task_t *t);

static int sq_task_update(ackd_store_conn_t *c, ackd_task_t *t)
{
    int before = 0;
    int rc = stored_state(c, t, &before);
    if (rc == 0)
        rc = task_update_row(c, t);
    if (rc == 0 && before != t->state) {
        count_add(c, t->queue, t->tenant, before, -1);
        count_add(c, t->queue, t->tenant, t->state, 1);
    }
    if (rc == 0)
        t->stored_state = (signed char)(t->state + 1);
    return counts_autocommit(c, rc);
}

static int task_update_row(ackd_store_conn_t *c, const ackd_task_t *t)
{
    sqlite3_stmt *s = stmt(c, S_TASK_UPDATE);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, t->id);
    sqlite3_bind_int(s, 2, t->state);
    sqlite3_bind_int64(s, 3, t->due_at);
    sqlite3_bind_int(s, 4, t->attempts);
    sqlite3_bind_int(s, 5, t->max_attempts);
    bind_text(s, 6, t->lease_id[0] ? t->lease_id : NULL);
    bind_time(s, 7, t->lease_expires_at);
    sqlite3_bind_int64(s, 8, t->updated_at);
    bind_time(s, 9, t->finished_at);
    bind_text(s, 10, t->result);
    bind_text(s, 11, t->error);
    if (t->progress_pct >= 0)
        sqlite3_bind_int(s, 12, t->progress_pct);
    else
        sqlite3_bind_null(s, 12);
    bind_text(s, 13, t->progress_msg);
    sqlite3_bind_int(s, 14, t->cancel_requested);
    sqlite3_bind_int64(s, 15, t->lease_ms);
    sqlite3_bind_int(s, 16, t->event_seq > 0 ? t->event_seq : 1);
    bind_time(s, 17, t->attempt_started_at);
    return exec_stmt(c, s, "task update");
}

/* Collects the first column of each row as ids. */
static int collect_ids(ackd_store_conn_t *c, sqlite3_stmt *s, int limit, char (*ids)[ACKD_ID_MAX],
                       int *n, const char *what)
{
    int rc;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW)
        col_id(s, 0, ids[(*n)++]);
    sqlite3_reset(s);
    return (*n == limit || rc == SQLITE_DONE) ? 0 : fail(c, what);
}

static int sq_task_claimable(ackd_store_conn_t *c, const char *queue, int64_t now, int limit,
                             ackd_task_t *out, int *n)
{
    sqlite3_stmt *s = stmt(c, S_CLAIMABLE);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int(s, 3, limit);
    int rc = SQLITE_DONE;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW)
        read_task(s, &out[(*n)++]);
    sqlite3_reset(s);
    if (*n == limit || rc == SQLITE_DONE)
        return 0;
    while (*n > 0)
        ackd_task_clear(&out[--*n]);
    return fail(c, "claimable");
}

/* Ids of tasks whose time (a lease's end, a deadline) came at `now`. */
static int ids_due(ackd_store_conn_t *c, int which, int64_t now, int limit,
                   char (*ids)[ACKD_ID_MAX], int *n)
{
    sqlite3_stmt *s = stmt(c, which);
    if (!s)
        return ACKD_EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    return collect_ids(c, s, limit, ids, n, sql[which]);
}

static int sq_task_expired(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                           int *n)
{
    return ids_due(c, S_EXPIRED, now, limit, ids, n);
}

static int sq_task_overdue(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                           int *n)
{
    return ids_due(c, S_OVERDUE, now, limit, ids, n);
}

static int single_int64(ackd_store_conn_t *c, sqlite3_stmt *s, int64_t *out, const char *what)
{
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(c, what);
}

static int sq_next_due(ackd_store_conn_t *c, int64_t now, int64_t *due_at)
{
    sqlite3_stmt *s = stmt(c, S_NEXT_DUE);
    if (!s)
        return ACKD_EIO;
    sqlite3_bind_int64(s, 1, now);
    return single_int64(c, s, due_at, "next due");
}

static int sq_next_expiry(ackd_store_conn_t *c, int64_t *expires_at)
{
    sqlite3_stmt *s = stmt(c, S_NEXT_EXPIRY);
    return s ? single_int64(c, s, expires_at, "next expiry") : ACKD_EIO;
}

static int sq_task_list(ackd_store_conn_t *c, const ackd_task_filter_t *f, ackd_task_t *out, int *n)
{
    char q[1024]; /* the longest, every filter on, is ~520 bytes */
    int len = snprintf(q, sizeof q, "SELECT " TASK_COLS_NO_BODIES " FROM tasks t WHERE 1");
    if (f->tenant)
        len += snprintf(q + len, sizeof q - (size_t)len, " AND tenant = :tenant");
    if (f->queue)
        len += snprintf(q + len, sizeof q - (size_t)len, " AND queue = :queue");
    if (f->state >= 0)
        len += snprintf(q + len, sizeof q - (size_t)len, " AND state = :state");
    if (f->before_id)
        len += snprintf(q + len, sizeof q - (size_t)len, " AND id < :before");
    snprintf(q + len, sizeof q - (size_t)len, " ORDER BY id DESC LIMIT :limit");
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(c->db, q, -1, &s, NULL) != SQLITE_OK)
        return fail(c, "task list");
    if (f->tenant)
        bind_text(s, sqlite3_bind_parameter_index(s, ":tenant"), f->tenant);
    if (f->queue)
        bind_text(s, sqlite3_bind_parameter_index(s, ":queue"), f->queue);
    if (f->state >= 0)
        sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":state"), f->state);
    if (f->before_id)
        bind_text(s, sqlite3_bind_parameter_index(s, ":before"), f->before_id);
    sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":limit"), f->limit);
    int rc;
    *n = 0;
    while (*n < f->limit && (rc = sqlite3_step(s)) == SQLITE_ROW)
        read_task(s, &out[(*n)++]);
    sqlite3_finalize(s);
    return (*n == f->limit || rc == SQLITE_DONE) ? 0 : ACKD_EIO;
}

static int sq_queue_stats(ackd_store_conn_t *c, const char *queue, const char *tenant,
                          ackd_queue_stats_t *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = stmt(c, S_STATS_COUNTS);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    if (tenant)
        bind_text(s, 2, tenant);
    else
        sqlite3_bind_null(s, 2);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int state = sqlite3_column_int(s, 0);
        if (state >= 0 && state < 5)
            out->counts[state] = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return fail(c, "queue stats");
    s = stmt(c, S_STATS_OLDEST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    return single_int64(c, s, &out->oldest_queued_at, "queue oldest");
}

static int sq_purge(ackd_store_conn_t *c, const char *queue, int64_t before, int limit, int *deleted)
{
    char(*ids)[ACKD_ID_MAX] = ackd_malloc((size_t)limit * ACKD_ID_MAX);
    int *states = ackd_malloc((size_t)limit * sizeof *states);
    char **tenants = ackd_calloc((size_t)limit, sizeof *tenants);
    sqlite3_stmt *s = stmt(c, S_PURGE_SELECT);
    int n = 0, rc = s ? 0 : ACKD_EIO;
    if (rc == 0) {
        bind_text(s, 1, queue);
        sqlite3_bind_int64(s, 2, before);
        sqlite3_bind_int(s, 3, limit);
        int step;
        while (n < limit && (step = sqlite3_step(s)) == SQLITE_ROW) {
            snprintf(ids[n], ACKD_ID_MAX, "%s", (const char *)sqlite3_column_text(s, 0));
            const char *tenant = (const char *)sqlite3_column_text(s, 2);
            tenants[n] = ackd_strdup(tenant ? tenant : "");
            states[n++] = sqlite3_column_int(s, 1);
        }
        if (n < limit && step != SQLITE_DONE)
            rc = fail(c, "purge select");
        sqlite3_reset(s);
    }
    static const int cascade[] = {S_PURGE_ATTEMPTS, S_PURGE_EVENTS, S_PURGE_TRIES,
                                  S_PURGE_DELIVERIES, S_PURGE_BODIES, S_PURGE_TASK};
    for (int i = 0; rc == 0 && i < n; i++) {
        for (size_t k = 0; rc == 0 && k < sizeof cascade / sizeof cascade[0]; k++) {
            sqlite3_stmt *d = stmt(c, cascade[k]);
            if (!d)
                rc = ACKD_EIO;
            else {
                bind_text(d, 1, ids[i]);
                rc = exec_stmt(c, d, sql[cascade[k]]);
            }
        }
        if (rc == 0)
            count_add(c, queue, tenants[i], states[i], -1);
    }
    for (int i = 0; i < n; i++)
        ackd_free(tenants[i]);
    ackd_free(tenants);
    ackd_free(ids);
    ackd_free(states);
    *deleted = rc == 0 ? n : 0;
    return counts_autocommit(c, rc);
}

/* --- attempts --- */

static int sq_attempt_insert(ackd_store_conn_t *c, const char *task_id, const ackd_attempt_t *a)
{
    sqlite3_stmt *s = stmt(c, S_ATT_INSERT);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, task_id);
    sqlite3_bind_int(s, 2, a->n);
    sqlite3_bind_int64(s, 3, a->started_at);
    bind_time(s, 4, a->ended_at);
    bind_text(s, 5, a->outcome);
    bind_text(s, 6, a->error);
    bind_text(s, 7, a->lease_id[0] ? a->lease_id : NULL);
    return exec_stmt(c, s, "attempt insert");
}

static int sq_attempt_list(ackd_store_conn_t *c, const char *task_id, ackd_attempt_t **out, int *n)
{
    sqlite3_stmt *s = stmt(c, S_ATT_LIST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, task_id);
    int cap = 0, rc;
    *n = 0;
    *out = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ackd_attempt_t *a = next_slot(out, n, &cap, sizeof **out);
        a->n = sqlite3_column_int(s, 0);
        a->started_at = sqlite3_column_int64(s, 1);
        a->ended_at = sqlite3_column_int64(s, 2);
        a->outcome = col_text(s, 3);
        a->error = col_text(s, 4);
        col_id(s, 5, a->lease_id);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(c, "attempt list");
}

/* --- idempotency --- */

static int sq_idem_get(ackd_store_conn_t *c, const char *tenant, const char *scope, const char *key,
                       ackd_idem_t *out)
{
    sqlite3_stmt *s = stmt(c, S_IDEM_GET);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, tenant);
    bind_text(s, 2, scope);
    bind_text(s, 3, key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        const unsigned char *fp = sqlite3_column_text(s, 0);
        snprintf(out->fingerprint, sizeof out->fingerprint, "%s", fp ? (const char *)fp : "");
        col_id(s, 1, out->task_id);
        out->expires_at = sqlite3_column_int64(s, 2);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? ACKD_ENOENT : fail(c, "idempotency get");
}

static int sq_idem_insert(ackd_store_conn_t *c, const ackd_idem_t *i)
{
    sqlite3_stmt *s = stmt(c, S_IDEM_INSERT);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, i->tenant);
    bind_text(s, 2, i->scope);
    bind_text(s, 3, i->key);
    bind_text(s, 4, i->fingerprint);
    bind_text(s, 5, i->task_id);
    sqlite3_bind_int64(s, 6, i->expires_at);
    return exec_stmt(c, s, "idempotency insert");
}

static int sq_idem_purge(ackd_store_conn_t *c, int64_t now, int limit, int *deleted)
{
    sqlite3_stmt *s = stmt(c, S_IDEM_PURGE);
    if (!s)
        return ACKD_EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    int rc = exec_stmt(c, s, "idempotency purge");
    *deleted = rc == 0 ? sqlite3_changes(c->db) : 0;
    return rc;
}

/* --- events --- */

static int sq_event_insert(ackd_store_conn_t *c, const char *task_id, const ackd_event_t *e)
{
    sqlite3_stmt *s = stmt(c, S_EV_INSERT);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, task_id);
    sqlite3_bind_int(s, 2, e->seq);
    bind_text(s, 3, e->queue);
    bind_text(s, 4, e->type);
    sqlite3_bind_int64(s, 5, e->at);
    bind_text(s, 6, e->data);
    return exec_stmt(c, s, "event insert");
}

static int sq_queue_events(ackd_store_conn_t *c, const char *queue, int64_t after, int limit,
                           ackd_event_t **out, int *n)
{
    sqlite3_stmt *s = stmt(c, S_EV_QUEUE);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int(s, 3, limit);
    int cap = 0, rc;
    *n = 0;
    *out = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ackd_event_t *e = next_slot(out, n, &cap, sizeof **out);
        e->id = sqlite3_column_int64(s, 0);
        col_id(s, 1, e->task_id);
        e->seq = sqlite3_column_int(s, 2);
        e->type = col_text(s, 3);
        e->at = sqlite3_column_int64(s, 4);
        e->data = col_text(s, 5);
        e->result = col_text(s, 6);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(c, "queue events");
}

static int sq_queue_cursor(ackd_store_conn_t *c, const char *queue, int64_t *last_event,
                           char *last_task)
{
    sqlite3_stmt *s = stmt(c, S_EV_QUEUE_LAST);
    int rc = s ? single_int64(c, s, last_event, "last event") : ACKD_EIO;
    if (rc)
        return rc;
    s = stmt(c, S_TASKS_LAST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    rc = sqlite3_step(s);
    last_task[0] = '\0';
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        col_id(s, 0, last_task);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(c, "last task");
}

static int sq_tasks_after(ackd_store_conn_t *c, const char *queue, const char *after, int limit,
                          char (*ids)[ACKD_ID_MAX], int64_t *created, int *n)
{
    sqlite3_stmt *s = stmt(c, S_TASKS_AFTER);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, queue);
    bind_text(s, 2, after);
    sqlite3_bind_int(s, 3, limit);
    int rc;
    *n = 0;
    while (*n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        col_id(s, 0, ids[*n]);
        created[*n] = sqlite3_column_int64(s, 1);
        (*n)++;
    }
    sqlite3_reset(s);
    return (*n == limit || rc == SQLITE_DONE) ? 0 : fail(c, "tasks after");
}

static int sq_event_list(ackd_store_conn_t *c, const char *task_id, int after, int limit,
                         ackd_event_t **out, int *n)
{
    sqlite3_stmt *s = stmt(c, S_EV_LIST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, task_id);
    sqlite3_bind_int(s, 2, after);
    sqlite3_bind_int(s, 3, limit);
    int cap = 0, rc;
    *n = 0;
    *out = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ackd_event_t *e = next_slot(out, n, &cap, sizeof **out);
        e->seq = sqlite3_column_int(s, 0);
        e->type = col_text(s, 1);
        e->at = sqlite3_column_int64(s, 2);
        e->data = col_text(s, 3);
        e->result = col_text(s, 4);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(c, "event list");
}

/* --- deliveries --- */

static int sq_delivery_insert(ackd_store_conn_t *c, const ackd_delivery_t *d)
{
    sqlite3_stmt *s = stmt(c, S_DLV_INSERT);
    if (!s)
        return ACKD_EIO;
    int i = 1;
    bind_text(s, i++, d->id);
    bind_text(s, i++, d->task_id);
    bind_text(s, i++, d->url);
    bind_text(s, i++, d->type);
    bind_text(s, i++, d->body);
    bind_text(s, i++, d->tenant);
    bind_text(s, i++, d->queue);
    sqlite3_bind_int(s, i++, d->state);
    sqlite3_bind_int(s, i++, d->tries);
    bind_time(s, i++, d->next_at);
    sqlite3_bind_int64(s, i++, d->created_at);
    sqlite3_bind_int64(s, i++, d->updated_at);
    bind_text(s, i++, d->last_error);
    bind_text(s, i++, d->traceparent);
    return exec_stmt(c, s, "delivery insert");
}

static void read_delivery(sqlite3_stmt *s, ackd_delivery_t *d)
{
    int i = 0;
    memset(d, 0, sizeof *d);
    col_id(s, i++, d->id);
    col_id(s, i++, d->task_id);
    d->url = col_text(s, i++);
    d->type = col_text(s, i++);
    d->body = col_text(s, i++);
    d->tenant = col_text(s, i++);
    d->queue = col_text(s, i++);
    d->state = sqlite3_column_int(s, i++);
    d->tries = sqlite3_column_int(s, i++);
    d->next_at = sqlite3_column_int64(s, i++);
    d->created_at = sqlite3_column_int64(s, i++);
    d->updated_at = sqlite3_column_int64(s, i++);
    d->last_error = col_text(s, i++);
    d->traceparent = col_text(s, i++);
    d->correlation_id = col_text(s, i++);
}

static int sq_delivery_get(ackd_store_conn_t *c, const char *id, ackd_delivery_t *out)
{
    sqlite3_stmt *s = stmt(c, S_DLV_GET);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_delivery(s, out);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? ACKD_ENOENT : fail(c, "delivery get");
}

static int sq_delivery_update(ackd_store_conn_t *c, const ackd_delivery_t *d)
{
    sqlite3_stmt *s = stmt(c, S_DLV_UPDATE);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, d->id);
    sqlite3_bind_int(s, 2, d->state);
    sqlite3_bind_int(s, 3, d->tries);
    bind_time(s, 4, d->next_at);
    sqlite3_bind_int64(s, 5, d->updated_at);
    bind_text(s, 6, d->last_error);
    return exec_stmt(c, s, "delivery update");
}

static int sq_delivery_due(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                           int *n)
{
    sqlite3_stmt *s = stmt(c, S_DLV_DUE);
    if (!s)
        return ACKD_EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, limit);
    return collect_ids(c, s, limit, ids, n, "delivery due");
}

static int sq_delivery_list(ackd_store_conn_t *c, const char *task_id, ackd_delivery_t **out,
                            int *n)
{
    sqlite3_stmt *s = stmt(c, S_DLV_LIST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, task_id);
    int cap = 0, rc;
    *n = 0;
    *out = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_delivery(s, next_slot(out, n, &cap, sizeof **out));
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(c, "delivery list");
}

static int sq_delivery_try_insert(ackd_store_conn_t *c, const char *delivery_id,
                                  const ackd_delivery_try_t *t)
{
    sqlite3_stmt *s = stmt(c, S_TRY_INSERT);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, delivery_id);
    sqlite3_bind_int(s, 2, t->n);
    sqlite3_bind_int64(s, 3, t->at);
    sqlite3_bind_int64(s, 4, t->duration_ms);
    if (t->status)
        sqlite3_bind_int(s, 5, t->status);
    else
        sqlite3_bind_null(s, 5);
    bind_text(s, 6, t->error);
    bind_text(s, 7, t->excerpt);
    return exec_stmt(c, s, "delivery try insert");
}

static int sq_delivery_try_list(ackd_store_conn_t *c, const char *delivery_id,
                                ackd_delivery_try_t **out, int *n)
{
    sqlite3_stmt *s = stmt(c, S_TRY_LIST);
    if (!s)
        return ACKD_EIO;
    bind_text(s, 1, delivery_id);
    int cap = 0, rc;
    *n = 0;
    *out = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        ackd_delivery_try_t *t = next_slot(out, n, &cap, sizeof **out);
        t->n = sqlite3_column_int(s, 0);
        t->at = sqlite3_column_int64(s, 1);
        t->duration_ms = sqlite3_column_int64(s, 2);
        t->status = sqlite3_column_int(s, 3);
        t->error = col_text(s, 4);
        t->excerpt = col_text(s, 5);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail(c, "delivery try list");
}

const ackd_store_backend_t ackd_store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .probe = sq_probe,
    .committed_writes = sq_committed_writes,
    .task_insert = sq_task_insert,
    .task_get = sq_task_get,
    .task_update = sq_task_update,
    .task_claimable = sq_task_claimable,
    .task_expired = sq_task_expired,
    .next_due = sq_next_due,
    .next_expiry = sq_next_expiry,
    .task_overdue = sq_task_overdue,
    .task_list = sq_task_list,
    .queue_stats = sq_queue_stats,
    .purge = sq_purge,
    .attempt_insert = sq_attempt_insert,
    .attempt_list = sq_attempt_list,
    .idem_get = sq_idem_get,
    .idem_insert = sq_idem_insert,
    .idem_purge = sq_idem_purge,
    .event_insert = sq_event_insert,
    .event_list = sq_event_list,
    .queue_events = sq_queue_events,
    .queue_cursor = sq_queue_cursor,
    .tasks_after = sq_tasks_after,
    .delivery_insert = sq_delivery_insert,
    .delivery_get = sq_delivery_get,
    .delivery_update = sq_delivery_update,
    .delivery_due = sq_delivery_due,
    .delivery_list = sq_delivery_list,
    .delivery_try_insert = sq_delivery_try_insert,
    .delivery_try_list = sq_delivery_try_list,
};
