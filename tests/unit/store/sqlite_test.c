/* sqlite_test.c - tests src/store/sqlite.c through its primitive table,
 * without the committer: schema creation and versioning, the task row round
 * trip, the claim order, the timer queries, purging and idempotency rows.
 * Each test works on a fresh file in its own temporary directory. */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "base/alloc.h"
#include "base/error.h"
#include "base/log.h"
#include "store/store.h"

static const ackd_store_backend_t *const B = &ackd_store_sqlite;

typedef struct {
    char dir[64];
    char path[128];
    ackd_store_conn_t *c;
    char err[512];
} fx_t;

/* A fresh directory and the file's path in it; nothing opened. */
static int fx_path(fx_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ackd_sqlite_test_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/ackd.db", f->dir);
    return 0;
}

static int fx_open(fx_t *f)
{
    if (fx_path(f) != 0)
        return -1;
    return B->open(f->path, true, true, &f->c, f->err, sizeof f->err);
}

static void fx_close(fx_t *f)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    if (f->c)
        B->close(f->c);
    f->c = NULL;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* The first column of the first row of `sql`, read with a connection of
 * our own; -1 on error. */
static int count_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return v;
}

/* PRAGMA user_version of the file. */
static int user_version(const char *path)
{
    return count_sql(path, "PRAGMA user_version");
}

static int exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* A queued task with the given order keys; strings owned by the result. */
static ackd_task_t mk(const char *id, const char *queue, int state, int priority, int64_t due)
{
    ackd_task_t t = {0};
    snprintf(t.id, sizeof t.id, "%s", id);
    t.tenant = ackd_strdup("t1");
    t.queue = ackd_strdup(queue);
    t.state = state;
    t.priority = priority;
    t.due_at = due;
    t.max_attempts = 3;
    t.created_at = t.updated_at = 10;
    t.progress_pct = -1;
    t.payload = ackd_strdup("{}");
    return t;
}

static int insert(fx_t *f, const char *id, const char *queue, int state, int priority, int64_t due)
{
    ackd_task_t t = mk(id, queue, state, priority, due);
    int rc = B->task_insert(f->c, &t);
    ackd_task_clear(&t);
    return rc;
}

/* --- schema --- */

#define CURRENT_SCHEMA 7

static void open_creates_schema_body(fx_t *f)
{
    CHECK_INT(user_version(f->path), CURRENT_SCHEMA);
    /* the tables exist: an empty read succeeds */
    ackd_task_t t = {0};
    CHECK_INT(B->task_get(f->c, "tsk_none", &t), ACKD_ENOENT);
    CHECK_INT(insert(f, "tsk_a", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    B->close(f->c);
    f->c = NULL;
    /* reopening an up-to-date file changes nothing and keeps the rows */
    CHECK_INT(B->open(f->path, true, true, &f->c, f->err, sizeof f->err), 0);
    CHECK_INT(user_version(f->path), CURRENT_SCHEMA);
    CHECK_INT(B->task_get(f->c, "tsk_a", &t), 0);
    CHECK_STR(t.queue, "q");
    ackd_task_clear(&t);
    /* a reader opens the existing file and can read but not write */
    ackd_store_conn_t *r = NULL;
    CHECK_INT(B->open(f->path, false, true, &r, f->err, sizeof f->err), 0);
    CHECK_INT(B->task_get(r, "tsk_a", &t), 0);
    ackd_task_clear(&t);
    int saved = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF; /* the refused write logs an error */
    int rc = insert(&(fx_t){.c = r}, "tsk_b", "q", ACKD_TASK_QUEUED, 0, 1);
    ackd_log_level = saved;
    B->close(r);
    CHECK(rc < 0);
}

TEST(sqlite_open_creates_current_schema)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    open_creates_schema_body(&f);
    fx_close(&f);
}

static void newer_schema_refused_body(fx_t *f)
{
    int newer = CURRENT_SCHEMA + 1;
    char sql[96], want[48];
    snprintf(sql, sizeof sql, "CREATE TABLE x(a); PRAGMA user_version = %d;", newer);
    snprintf(want, sizeof want, "schema version %d", newer);
    CHECK_INT(exec_sql(f->path, sql), SQLITE_OK);
    CHECK_INT(user_version(f->path), newer);
    f->err[0] = '\0';
    CHECK(B->open(f->path, true, true, &f->c, f->err, sizeof f->err) < 0);
    CHECK(f->c == NULL);
    CHECK(strstr(f->err, want) != NULL);
    CHECK(strstr(f->err, "newer") != NULL);
    /* and left alone */
    CHECK_INT(user_version(f->path), newer);
}

TEST(sqlite_newer_schema_refused)
{
    fx_t f;
    CHECK_INT(fx_path(&f), 0);
    newer_schema_refused_body(&f);
    fx_close(&f);
}

/* The tables of schema version 1, as it shipped them. */
#define SCHEMA_V1_TABLES \
    "CREATE TABLE tasks (id TEXT PRIMARY KEY NOT NULL, tenant TEXT NOT NULL, queue TEXT NOT NULL," \
    " state INTEGER NOT NULL, priority INTEGER NOT NULL, due_at INTEGER NOT NULL," \
    " attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, timeout_ms INTEGER NOT NULL," \
    " lease_id TEXT, lease_expires_at INTEGER, created_at INTEGER NOT NULL," \
    " updated_at INTEGER NOT NULL, finished_at INTEGER, deadline_at INTEGER, payload TEXT," \
    " request TEXT, result TEXT, error TEXT, progress_pct INTEGER, progress_msg TEXT," \
    " correlation_id TEXT, traceparent TEXT, callback_url TEXT, idem_key TEXT," \
    " cancel_requested INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;" \
    "CREATE TABLE attempts (task_id TEXT NOT NULL, n INTEGER NOT NULL," \
    " started_at INTEGER NOT NULL," \
    " ended_at INTEGER, outcome TEXT, error TEXT, lease_id TEXT, PRIMARY KEY (task_id, n))" \
    " WITHOUT ROWID;" \
    "CREATE TABLE idempotency (tenant TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL," \
    " fingerprint TEXT NOT NULL, task_id TEXT NOT NULL, expires_at INTEGER NOT NULL," \
    " PRIMARY KEY (tenant, scope, key)) WITHOUT ROWID;"

/* A file written by schema version 1. */
static const char schema_v1[] =
    SCHEMA_V1_TABLES
    "INSERT INTO tasks (id, tenant, queue, state, priority, due_at, attempts, max_attempts,"
    " timeout_ms, created_at, updated_at, payload) VALUES ('tsk_old', 't1', 'q', 2, 0, 5, 1, 3,"
    " 0, 5, 6, '{\"v\":1}');"
    /* a task in its second attempt: the first ended, the second's row is open */
    "INSERT INTO tasks (id, tenant, queue, state, priority, due_at, attempts, max_attempts,"
    " timeout_ms, lease_id, lease_expires_at, created_at, updated_at, payload) VALUES"
    " ('tsk_run', 't1', 'q', 1, 0, 5, 2, 3, 0, 'lse_2', 90000, 5, 30, '{}');"
    "INSERT INTO attempts VALUES ('tsk_run', 1, 10, 20, 'retry', NULL, 'lse_1');"
    "INSERT INTO attempts VALUES ('tsk_run', 2, 30, NULL, NULL, NULL, 'lse_2');"
    /* a queued task with a 602-byte payload */
    "INSERT INTO tasks (id, tenant, queue, state, priority, due_at, attempts, max_attempts,"
    " timeout_ms, created_at, updated_at, payload) VALUES ('tsk_big', 't1', 'q', 0, 0, 5, 0, 3,"
    " 0, 5, 5, '\"' || printf('%.600c', 'x') || '\"');"
    "PRAGMA user_version = 1;";

static void migrates_v1_body(fx_t *f)
{
    CHECK_INT(exec_sql(f->path, schema_v1), SQLITE_OK);
    CHECK_INT(B->open(f->path, true, true, &f->c, f->err, sizeof f->err), 0);
    CHECK_INT(user_version(f->path), CURRENT_SCHEMA);
    ackd_task_t t = {0};
    CHECK_INT(B->task_get(f->c, "tsk_old", &t), 0);
    /* v5: a small payload stays in its row, a large one moved to task_bodies;
     * task_get reads neither */
    CHECK(t.payload == NULL);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM tasks WHERE id = 'tsk_old'"
                                 " AND payload = '{\"v\":1}'"), 1);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM task_bodies WHERE task_id = 'tsk_big'"
                                 " AND LENGTH(payload) = 602 AND request IS NULL"), 1);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM tasks WHERE id = 'tsk_big'"
                                 " AND payload IS NULL"), 1);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM task_bodies"), 1);
    CHECK_INT(t.state, ACKD_TASK_COMPLETED);
    CHECK_INT(t.event_seq, 1); /* old tasks start at their implied task.queued */
    ackd_task_clear(&t);
    ackd_queue_stats_t st; /* v3 counted what was there, v6 per tenant */
    CHECK_INT(B->queue_stats(f->c, "q", NULL, &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED], 1);
    CHECK_INT(st.counts[ACKD_TASK_PROCESSING], 1);
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1); /* tsk_big */
    CHECK_INT(B->queue_stats(f->c, "q", "t1", &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED] + st.counts[ACKD_TASK_QUEUED], 2);
    CHECK_INT(B->queue_stats(f->c, "q", "t2", &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED] + st.counts[ACKD_TASK_QUEUED], 0);
    ackd_task_t rows[2];
    int nrows = 0;
    CHECK_INT(B->task_claimable(f->c, "q", 10, 2, rows, &nrows), 0);
    CHECK_INT(nrows, 1);
    int big_ok = strcmp(rows[0].id, "tsk_big") == 0 && rows[0].payload &&
                 strlen(rows[0].payload) == 602;
    for (int i = 0; i < nrows; i++)
        ackd_task_clear(&rows[i]);
    CHECK(big_ok);
    /* v4: the running attempt moved into its task's row, the ended one stays */
    CHECK_INT(B->task_get(f->c, "tsk_run", &t), 0);
    CHECK_INT(t.attempt_started_at, 30);
    CHECK_STR(t.lease_id, "lse_2");
    ackd_task_clear(&t);
    ackd_attempt_t *atts = NULL;
    int na = 0;
    CHECK_INT(B->attempt_list(f->c, "tsk_run", &atts, &na), 0);
    int one_ended = na == 1 && atts[0].n == 1 && atts[0].ended_at == 20;
    for (int i = 0; i < na; i++)
        ackd_attempt_clear(&atts[i]);
    ackd_free(atts);
    CHECK(one_ended);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'tasks_due'"), 0);
    /* the new tables work */
    ackd_event_t e = {.seq = 2, .queue = "q", .type = "task.processing", .at = 7, .data = "{}"};
    CHECK_INT(B->event_insert(f->c, "tsk_old", &e), 0);
    ackd_event_t *evs = NULL;
    int n = 0;
    CHECK_INT(B->event_list(f->c, "tsk_old", 1, 10, &evs, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(evs[0].type, "task.processing");
    ackd_event_clear(&evs[0]);
    ackd_free(evs);
}

TEST(sqlite_migrates_schema_v1_in_place)
{
    fx_t f;
    CHECK_INT(fx_path(&f), 0);
    migrates_v1_body(&f);
    fx_close(&f);
}

/* The first shape of schema 2, which its migration had before it was
 * changed in place (unreleased): events without id and queue, deliveries
 * without traceparent. Files like it are repaired when opened. */
static const char schema_v2_early[] =
    SCHEMA_V1_TABLES
    "ALTER TABLE tasks ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE tasks ADD COLUMN lease_ms INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE events ( task_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,"
    " at INTEGER NOT NULL, data TEXT, PRIMARY KEY (task_id, seq)) WITHOUT ROWID;"
    "CREATE TABLE deliveries (id TEXT PRIMARY KEY NOT NULL, task_id TEXT NOT NULL,"
    " url TEXT NOT NULL,"
    " type TEXT NOT NULL, body TEXT NOT NULL, tenant TEXT NOT NULL, queue TEXT NOT NULL,"
    " state INTEGER NOT NULL, tries INTEGER NOT NULL, next_at INTEGER, created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL, last_error TEXT) WITHOUT ROWID;"
    "CREATE TABLE delivery_tries (delivery_id TEXT NOT NULL, n INTEGER NOT NULL,"
    " at INTEGER NOT NULL,"
    " duration_ms INTEGER, status INTEGER, error TEXT, excerpt TEXT,"
    " PRIMARY KEY (delivery_id, n)) WITHOUT ROWID;"
    "INSERT INTO tasks (id, tenant, queue, state, priority, due_at, attempts, max_attempts,"
    " timeout_ms, created_at, updated_at, payload, event_seq) VALUES ('tsk_e', 't1', 'pay', 2, 0,"
    " 5, 1, 3, 0, 5, 9, '1', 3);"
    "INSERT INTO events VALUES ('tsk_e', 2, 'task.processing', 6, '{}');"
    "INSERT INTO events VALUES ('tsk_e', 3, 'task.completed', 9, '{}');"
    "PRAGMA user_version = 2;";

static void repairs_v2_early_body(fx_t *f)
{
    CHECK_INT(exec_sql(f->path, schema_v2_early), SQLITE_OK);
    CHECK_INT(B->open(f->path, true, true, &f->c, f->err, sizeof f->err), 0);
    CHECK_INT(user_version(f->path), CURRENT_SCHEMA);
    /* the old events kept, in order, with their task's queue */
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM events WHERE task_id = 'tsk_e'"
                                 " AND queue = 'pay' AND id = seq - 1"), 2);
    /* and new ones go in, as do deliveries with a traceparent */
    ackd_event_t e = {.seq = 4, .queue = "pay", .type = "task.progress", .at = 10, .data = "{}"};
    CHECK_INT(B->event_insert(f->c, "tsk_e", &e), 0);
    ackd_event_t *evs = NULL;
    int n = 0;
    CHECK_INT(B->event_list(f->c, "tsk_e", 1, 10, &evs, &n), 0);
    CHECK_INT(n, 3);
    for (int i = 0; i < n; i++)
        ackd_event_clear(&evs[i]);
    ackd_free(evs);
    ackd_delivery_t d = {.id = "msg_1", .task_id = "tsk_e", .url = "http://127.0.0.1:9/h",
                         .type = "task.completed", .body = "{}", .tenant = "t1", .queue = "pay",
                         .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                         .next_at = 1, .created_at = 1, .updated_at = 1};
    CHECK_INT(B->delivery_insert(f->c, &d), 0);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM deliveries WHERE traceparent IS NOT NULL"),
              1);
}

TEST(sqlite_repairs_an_early_schema_2)
{
    fx_t f;
    CHECK_INT(fx_path(&f), 0);
    repairs_v2_early_body(&f);
    fx_close(&f);
}

/* A file whose tables lack a column the schema has is refused at open, by
 * table and column, instead of failing requests later. */
static void refuses_missing_column_body(fx_t *f)
{
    B->close(f->c);
    f->c = NULL;
    CHECK_INT(exec_sql(f->path, "ALTER TABLE task_bodies DROP COLUMN request"), SQLITE_OK);
    CHECK(B->open(f->path, true, true, &f->c, f->err, sizeof f->err) < 0);
    CHECK(f->c == NULL);
    CHECK(strstr(f->err, f->path) != NULL);
    CHECK(strstr(f->err, "table task_bodies has no column request") != NULL);
}

TEST(sqlite_refuses_a_file_missing_a_column)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    refuses_missing_column_body(&f);
    fx_close(&f);
}

TEST(sqlite_open_missing_dir_fails_with_message)
{
    ackd_store_conn_t *c = NULL;
    char err[256] = "";
    CHECK(B->open("/nonexistent-ackd-dir/x/ackd.db", true, true, &c, err, sizeof err) < 0);
    CHECK(c == NULL);
    CHECK(strstr(err, "/nonexistent-ackd-dir/x/ackd.db") != NULL);
}

/* --- task rows --- */

static void roundtrip_body(fx_t *f)
{
    ackd_task_t t = {0}, g = {0};
    snprintf(t.id, sizeof t.id, "tsk_roundtrip");
    t.tenant = ackd_strdup("tenant-a");
    t.queue = ackd_strdup("payments");
    t.state = ACKD_TASK_PROCESSING;
    t.priority = -7;
    t.due_at = 1700000000123;
    t.attempts = 2;
    t.max_attempts = 9;
    t.timeout_ms = 45000;
    snprintf(t.lease_id, sizeof t.lease_id, "lse_abc");
    t.lease_expires_at = 1700000045123;
    t.created_at = 1700000000001;
    t.updated_at = 1700000000002;
    t.finished_at = 1700000000003;
    t.deadline_at = 1700000999999;
    t.payload = ackd_strdup("{\"amount\":100,\"s\":\"\\u00e9\"}");
    t.request = ackd_strdup("{\"method\":\"POST\",\"path\":\"/pay\"}");
    t.result = ackd_strdup("{\"ok\":true}");
    t.error = ackd_strdup("{\"message\":\"boom\",\"status\":502}");
    t.progress_pct = 42;
    t.progress_msg = ackd_strdup("halfway");
    t.correlation_id = ackd_strdup("req-123");
    t.traceparent = ackd_strdup("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    t.callback_url = ackd_strdup("https://example.com/cb");
    t.idem_key = ackd_strdup("key-1");
    t.cancel_requested = true;
    t.attempt_started_at = 1700000000100;
    CHECK_INT(B->task_insert(f->c, &t), 0);
    CHECK_INT(B->task_get(f->c, t.id, &g), 0);
    CHECK_STR(g.id, t.id);
    CHECK_STR(g.tenant, t.tenant);
    CHECK_STR(g.queue, t.queue);
    CHECK_INT(g.state, t.state);
    CHECK_INT(g.priority, t.priority);
    CHECK_INT(g.due_at, t.due_at);
    CHECK_INT(g.attempts, t.attempts);
    CHECK_INT(g.max_attempts, t.max_attempts);
    CHECK_INT(g.timeout_ms, t.timeout_ms);
    CHECK_STR(g.lease_id, t.lease_id);
    CHECK_INT(g.lease_expires_at, t.lease_expires_at);
    CHECK_INT(g.created_at, t.created_at);
    CHECK_INT(g.updated_at, t.updated_at);
    CHECK_INT(g.finished_at, t.finished_at);
    CHECK_INT(g.deadline_at, t.deadline_at);
    CHECK(g.payload == NULL && g.request == NULL); /* bodies: read by claims only */
    CHECK_STR(g.result, t.result);
    CHECK_STR(g.error, t.error);
    CHECK_INT(g.progress_pct, t.progress_pct);
    CHECK_STR(g.progress_msg, t.progress_msg);
    CHECK_STR(g.correlation_id, t.correlation_id);
    CHECK_STR(g.traceparent, t.traceparent);
    CHECK_STR(g.callback_url, t.callback_url);
    CHECK_STR(g.idem_key, t.idem_key);
    CHECK(g.cancel_requested);
    CHECK_INT(g.attempt_started_at, t.attempt_started_at);
    ackd_task_clear(&g);

    /* update writes the mutable fields, including clearing them */
    t.state = ACKD_TASK_QUEUED;
    t.due_at = 5;
    t.attempts = 3;
    t.max_attempts = 12;
    t.lease_id[0] = '\0';
    t.lease_expires_at = 0;
    t.updated_at = 6;
    t.finished_at = 0;
    ackd_free(t.result);
    t.result = NULL;
    ackd_free(t.error);
    t.error = ackd_strdup("{\"message\":\"again\"}");
    t.progress_pct = -1;
    ackd_free(t.progress_msg);
    t.progress_msg = NULL;
    t.cancel_requested = false;
    t.lease_ms = 7000;
    t.event_seq = 4;
    t.attempt_started_at = 0;
    int64_t asked = t.timeout_ms;
    t.timeout_ms = asked + 1;
    /* immutable ones (the timeout asked at submit, the payload) are not touched by an update */
    ackd_free(t.payload);
    t.payload = ackd_strdup("{\"changed\":1}");
    CHECK_INT(B->task_update(f->c, &t), 0);
    CHECK_INT(B->task_get(f->c, t.id, &g), 0);
    CHECK_INT(g.state, ACKD_TASK_QUEUED);
    CHECK_INT(g.due_at, 5);
    CHECK_INT(g.attempts, 3);
    CHECK_INT(g.max_attempts, 12);
    CHECK_STR(g.lease_id, "");
    CHECK_INT(g.lease_expires_at, 0);
    CHECK_INT(g.updated_at, 6);
    CHECK_INT(g.finished_at, 0);
    CHECK(g.result == NULL);
    CHECK_STR(g.error, "{\"message\":\"again\"}");
    CHECK_INT(g.progress_pct, -1);
    CHECK(g.progress_msg == NULL);
    CHECK(!g.cancel_requested);
    CHECK_INT(g.lease_ms, 7000);
    CHECK_INT(g.event_seq, 4);
    CHECK_INT(g.attempt_started_at, 0);
    CHECK_INT(g.timeout_ms, asked);
    CHECK(g.payload == NULL);
    ackd_task_clear(&g);
    /* the bodies as inserted (an update cannot touch them), now that it is queued */
    ackd_task_t rows[2];
    int nrows = 0;
    CHECK_INT(B->task_claimable(f->c, "payments", 1700000000123, 2, rows, &nrows), 0);
    CHECK_INT(nrows, 1);
    int bodies_ok = strcmp(rows[0].payload, "{\"amount\":100,\"s\":\"\\u00e9\"}") == 0 &&
                    strcmp(rows[0].request, "{\"method\":\"POST\",\"path\":\"/pay\"}") == 0 &&
                    strcmp(rows[0].correlation_id, "req-123") == 0;
    for (int i = 0; i < nrows; i++)
        ackd_task_clear(&rows[i]);
    CHECK(bodies_ok);
    CHECK_INT(B->task_get(f->c, t.id, &g), 0);
    CHECK_INT(g.created_at, 1700000000001);
    CHECK_STR(g.correlation_id, "req-123");
    ackd_task_clear(&g);
    ackd_task_clear(&t);

    /* a minimal row reads back NULLs as NULL, none as 0 / -1 */
    t = mk("tsk_min", "q", ACKD_TASK_QUEUED, 0, 1);
    ackd_free(t.payload);
    t.payload = NULL;
    CHECK_INT(B->task_insert(f->c, &t), 0);
    ackd_task_clear(&t);
    CHECK_INT(B->task_get(f->c, "tsk_min", &g), 0);
    CHECK(g.payload == NULL && g.result == NULL && g.error == NULL && g.request == NULL);
    CHECK(g.correlation_id == NULL && g.traceparent == NULL && g.callback_url == NULL);
    CHECK(g.idem_key == NULL && g.progress_msg == NULL);
    CHECK_STR(g.lease_id, "");
    CHECK_INT(g.lease_expires_at, 0);
    CHECK_INT(g.finished_at, 0);
    CHECK_INT(g.deadline_at, 0);
    CHECK_INT(g.progress_pct, -1);
    ackd_task_clear(&g);

    /* duplicate ids are refused */
    int saved = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF;
    int rc = insert(f, "tsk_min", "q", ACKD_TASK_QUEUED, 0, 1);
    ackd_log_level = saved;
    CHECK(rc < 0);
    CHECK_INT(B->task_get(f->c, "tsk_nope", &g), ACKD_ENOENT);
}

TEST(sqlite_task_roundtrip_every_field)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    roundtrip_body(&f);
    fx_close(&f);
}

static void transaction_body(fx_t *f)
{
    ackd_task_t g = {0};
    CHECK_INT(B->begin(f->c), 0);
    CHECK_INT(insert(f, "tsk_rolled", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    CHECK_INT(B->task_get(f->c, "tsk_rolled", &g), 0); /* visible inside */
    ackd_task_clear(&g);
    CHECK_INT(B->rollback(f->c), 0);
    CHECK_INT(B->task_get(f->c, "tsk_rolled", &g), ACKD_ENOENT);
    CHECK_INT(B->rollback(f->c), 0); /* no transaction: a no-op */
    CHECK_INT(B->begin(f->c), 0);
    CHECK_INT(insert(f, "tsk_kept", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    CHECK_INT(B->commit(f->c), 0);
    CHECK_INT(B->task_get(f->c, "tsk_kept", &g), 0);
    ackd_task_clear(&g);
}

TEST(sqlite_begin_commit_rollback)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    transaction_body(&f);
    fx_close(&f);
}

/* --- a full disk --- */

/* The process may write no byte past `limit` in any file (a full disk, as
 * ulimit -f makes one: EFBIG, which SIGXFSZ would turn into a kill). */
static void limit_file_size(rlim_t limit)
{
    struct rlimit r;
    getrlimit(RLIMIT_FSIZE, &r);
    r.rlim_cur = limit;
    setrlimit(RLIMIT_FSIZE, &r);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void full_disk_body(fx_t *f)
{
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    /* a read-only transaction commits nothing; a write does */
    CHECK_INT(B->begin(f->c), 0);
    ackd_task_t t = {0};
    CHECK_INT(B->task_get(f->c, "tsk_none", &t), ACKD_ENOENT);
    CHECK_INT(B->commit(f->c), 0);
    CHECK(!B->committed_writes(f->c));
    CHECK_INT(B->begin(f->c), 0);
    CHECK_INT(insert(f, "tsk_a", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    CHECK_INT(B->commit(f->c), 0);
    CHECK(B->committed_writes(f->c));

    off_t size = file_size(wal);
    CHECK(size > 0);
    int saved = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF; /* the failed commit logs an error */
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    limit_file_size((rlim_t)size);
    /* a commit that needs room the file may not have fails as out of space,
     * not as a bare I/O error, and leaves nothing behind */
    ackd_task_t big = mk("tsk_big", "q", ACKD_TASK_QUEUED, 0, 1);
    ackd_free(big.payload);
    big.payload = ackd_malloc(20002);
    memset(big.payload, 'x', 20002);
    big.payload[0] = big.payload[20000] = '"';
    big.payload[20001] = '\0';
    CHECK_INT(B->begin(f->c), 0);
    CHECK_INT(B->task_insert(f->c, &big), 0);
    CHECK_INT(B->commit(f->c), ACKD_ENOSPC);
    CHECK_INT(B->rollback(f->c), 0);
    limit_file_size(RLIM_INFINITY);
    signal(SIGXFSZ, old);
    ackd_log_level = saved;
    CHECK_INT(B->task_get(f->c, "tsk_big", &t), ACKD_ENOENT);
    /* with room again, the probe and the same write commit */
    CHECK_INT(B->probe(f->c), 0);
    CHECK_INT(B->begin(f->c), 0);
    CHECK_INT(B->task_insert(f->c, &big), 0);
    CHECK_INT(B->commit(f->c), 0);
    CHECK_INT(B->task_get(f->c, "tsk_big", &t), 0);
    ackd_task_clear(&t);
    ackd_task_clear(&big);
}

TEST(sqlite_full_disk_is_out_of_space_and_the_probe_sees_room_again)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    full_disk_body(&f);
    fx_close(&f);
}

/* --- claim order and timers --- */

/* task_claimable's rows reduced to their ids (and checked whole) */
static int claimable(fx_t *f, const char *queue, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                     int *n)
{
    ackd_task_t rows[16];
    int rc = B->task_claimable(f->c, queue, now, limit, rows, n);
    for (int i = 0; rc == 0 && i < *n; i++) {
        memcpy(ids[i], rows[i].id, ACKD_ID_MAX);
        if (rows[i].state != ACKD_TASK_QUEUED || strcmp(rows[i].queue, queue) != 0 ||
            !rows[i].payload || rows[i].stored_state != ACKD_TASK_QUEUED + 1)
            rc = -1; /* whole rows, as task_get reads them */
        ackd_task_clear(&rows[i]);
    }
    return rc;
}

static void claimable_body(fx_t *f)
{
    /* now = 1000 */
    CHECK_INT(insert(f, "tsk_a", "q", ACKD_TASK_QUEUED, 0, 100), 0);
    CHECK_INT(insert(f, "tsk_b", "q", ACKD_TASK_QUEUED, 5, 300), 0);
    CHECK_INT(insert(f, "tsk_c", "q", ACKD_TASK_QUEUED, 5, 200), 0);
    CHECK_INT(insert(f, "tsk_d", "q", ACKD_TASK_QUEUED, 0, 50), 0);
    CHECK_INT(insert(f, "tsk_e", "q", ACKD_TASK_QUEUED, 9, 5000), 0);     /* not due yet */
    CHECK_INT(insert(f, "tsk_f", "other", ACKD_TASK_QUEUED, 9, 10), 0);   /* other queue */
    CHECK_INT(insert(f, "tsk_g", "q", ACKD_TASK_PROCESSING, 9, 10), 0);   /* taken */
    CHECK_INT(insert(f, "tsk_h", "q", ACKD_TASK_COMPLETED, 9, 10), 0);    /* done */
    CHECK_INT(insert(f, "tsk_i", "q", ACKD_TASK_QUEUED, -3, 1), 0);
    CHECK_INT(insert(f, "tsk_j", "q", ACKD_TASK_QUEUED, 0, 1000), 0);     /* due exactly now */

    char ids[16][ACKD_ID_MAX];
    int n = -1;
    CHECK_INT(claimable(f, "q", 1000, 16, ids, &n), 0);
    static const char *const want[] = {"tsk_c", "tsk_b", "tsk_d", "tsk_a", "tsk_j", "tsk_i"};
    CHECK_INT(n, 6);
    for (int i = 0; i < n; i++)
        CHECK_STR(ids[i], want[i]);
    CHECK_INT(claimable(f, "q", 1000, 2, ids, &n), 0);
    CHECK_INT(n, 2);
    CHECK_STR(ids[0], "tsk_c");
    CHECK_STR(ids[1], "tsk_b");
    CHECK_INT(claimable(f, "q", 5000, 1, ids, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(ids[0], "tsk_e");
    CHECK_INT(claimable(f, "nobody", 5000, 16, ids, &n), 0);
    CHECK_INT(n, 0);
    /* a wall clock that stepped back to 0: the tasks written as due (due_at
     * <= created_at, here tsk_i: 1 <= 10) stay claimable, the delayed wait */
    CHECK_INT(claimable(f, "q", 0, 16, ids, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(ids[0], "tsk_i");

    /* next_due: the earliest due time strictly after now of a task that was
     * delayed when written (due_at > created_at = 10) */
    int64_t due = -1;
    CHECK_INT(B->next_due(f->c, 1000, &due), 0);
    CHECK_INT(due, 5000);
    CHECK_INT(B->next_due(f->c, 5000, &due), 0);
    CHECK_INT(due, 0);
    CHECK_INT(B->next_due(f->c, 0, &due), 0);
    CHECK_INT(due, 50); /* tsk_d; tsk_i (1) and tsk_f (10) were due when written */
    /* and it is read from the small index of delayed tasks */
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM tasks INDEXED BY tasks_delayed"
                                 " WHERE state = 0 AND due_at > created_at"), 6);
}

TEST(sqlite_claimable_by_priority_then_due)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    claimable_body(&f);
    fx_close(&f);
}

static int insert_leased(fx_t *f, const char *id, int state, int64_t expires)
{
    ackd_task_t t = mk(id, "q", state, 0, 1);
    snprintf(t.lease_id, sizeof t.lease_id, "lse_%s", id);
    t.lease_expires_at = expires;
    int rc = B->task_insert(f->c, &t);
    ackd_task_clear(&t);
    return rc;
}

static void expiry_body(fx_t *f)
{
    int64_t at = -1;
    CHECK_INT(B->next_expiry(f->c, &at), 0);
    CHECK_INT(at, 0); /* none */
    CHECK_INT(insert_leased(f, "tsk_l1", ACKD_TASK_PROCESSING, 3000), 0);
    CHECK_INT(insert_leased(f, "tsk_l2", ACKD_TASK_PROCESSING, 2000), 0);
    CHECK_INT(insert_leased(f, "tsk_l3", ACKD_TASK_PROCESSING, 4000), 0);
    /* a lease left on a row that is no longer processing does not count */
    CHECK_INT(insert_leased(f, "tsk_l4", ACKD_TASK_COMPLETED, 100), 0);
    CHECK_INT(insert_leased(f, "tsk_l5", ACKD_TASK_QUEUED, 100), 0);
    CHECK_INT(B->next_expiry(f->c, &at), 0);
    CHECK_INT(at, 2000);

    char ids[8][ACKD_ID_MAX];
    int n = -1;
    CHECK_INT(B->task_expired(f->c, 1999, 8, ids, &n), 0);
    CHECK_INT(n, 0);
    CHECK_INT(B->task_expired(f->c, 3000, 8, ids, &n), 0); /* <= now: expired */
    CHECK_INT(n, 2);
    CHECK_STR(ids[0], "tsk_l2");
    CHECK_STR(ids[1], "tsk_l1");
    CHECK_INT(B->task_expired(f->c, 9999, 1, ids, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(ids[0], "tsk_l2");
}

TEST(sqlite_next_expiry_and_expired)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    expiry_body(&f);
    fx_close(&f);
}

/* A queue's deadline: queued tasks that have one are on the expiry timer
 * too, and are found when it passes; tasks without one, or no longer
 * queued, are not. */
static int insert_deadline(fx_t *f, const char *id, int state, int64_t deadline)
{
    ackd_task_t t = mk(id, "q", state, 0, 1);
    t.deadline_at = deadline;
    if (state == ACKD_TASK_PROCESSING) {
        snprintf(t.lease_id, sizeof t.lease_id, "lse_%s", id);
        t.lease_expires_at = 9000;
    }
    int rc = B->task_insert(f->c, &t);
    ackd_task_clear(&t);
    return rc;
}

TEST(sqlite_deadlines_are_on_the_expiry_timer)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    CHECK_INT(insert_deadline(&f, "tsk_d1", ACKD_TASK_QUEUED, 3000), 0);
    CHECK_INT(insert_deadline(&f, "tsk_d2", ACKD_TASK_QUEUED, 2000), 0);
    CHECK_INT(insert_deadline(&f, "tsk_d3", ACKD_TASK_QUEUED, 0), 0);          /* none */
    CHECK_INT(insert_deadline(&f, "tsk_d4", ACKD_TASK_PROCESSING, 1000), 0);   /* running */
    CHECK_INT(insert_deadline(&f, "tsk_d5", ACKD_TASK_COMPLETED, 500), 0);     /* ended */
    int64_t at = -1;
    CHECK_INT(B->next_expiry(f.c, &at), 0);
    CHECK_INT(at, 2000); /* tsk_d2's deadline, before tsk_d4's lease (9000) */
    char ids[8][ACKD_ID_MAX];
    int n = -1;
    CHECK_INT(B->task_overdue(f.c, 1999, 8, ids, &n), 0);
    CHECK_INT(n, 0);
    CHECK_INT(B->task_overdue(f.c, 5000, 8, ids, &n), 0);
    CHECK_INT(n, 2);
    CHECK_STR(ids[0], "tsk_d2");
    CHECK_STR(ids[1], "tsk_d1");
    CHECK_INT(B->task_overdue(f.c, 5000, 1, ids, &n), 0);
    CHECK_INT(n, 1);
    /* once it is no longer queued, it leaves the timer */
    ackd_task_t t = {0};
    CHECK_INT(B->task_get(f.c, "tsk_d2", &t), 0);
    t.state = ACKD_TASK_FAILED;
    t.finished_at = 2000;
    CHECK_INT(B->task_update(f.c, &t), 0);
    ackd_task_clear(&t);
    CHECK_INT(B->next_expiry(f.c, &at), 0);
    CHECK_INT(at, 3000);
    CHECK_INT(count_sql(f.path, "SELECT COUNT(*) FROM pragma_index_list('tasks')"
                                " WHERE name = 'tasks_deadline' AND partial = 1"),
              1);
    fx_close(&f);
}

/* --- listing and stats --- */

static void list_stats_body(fx_t *f)
{
    CHECK_INT(insert(f, "tsk_01", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    CHECK_INT(insert(f, "tsk_02", "q", ACKD_TASK_COMPLETED, 0, 1), 0);
    CHECK_INT(insert(f, "tsk_03", "q", ACKD_TASK_QUEUED, 0, 1), 0);
    CHECK_INT(insert(f, "tsk_04", "r", ACKD_TASK_FAILED, 0, 1), 0);
    ackd_task_t t = mk("tsk_05", "q", ACKD_TASK_QUEUED, 0, 1);
    ackd_free(t.tenant);
    t.tenant = ackd_strdup("t2");
    t.created_at = 5;
    CHECK_INT(B->task_insert(f->c, &t), 0);
    ackd_task_clear(&t);

    ackd_task_t out[8];
    int n = -1;
    ackd_task_filter_t all = {.state = -1, .limit = 8};
    CHECK_INT(B->task_list(f->c, &all, out, &n), 0);
    CHECK_INT(n, 5);
    CHECK_STR(out[0].id, "tsk_05"); /* newest first */
    CHECK_STR(out[4].id, "tsk_01");
    for (int i = 0; i < n; i++)
        ackd_task_clear(&out[i]);

    ackd_task_filter_t fl = {.tenant = "t1", .queue = "q", .state = ACKD_TASK_QUEUED,
                             .before_id = "tsk_03", .limit = 8};
    CHECK_INT(B->task_list(f->c, &fl, out, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(out[0].id, "tsk_01");
    ackd_task_clear(&out[0]);
    fl.before_id = NULL;
    fl.limit = 1;
    CHECK_INT(B->task_list(f->c, &fl, out, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(out[0].id, "tsk_03");
    ackd_task_clear(&out[0]);

    ackd_queue_stats_t st;
    CHECK_INT(B->queue_stats(f->c, "q", NULL, &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 3);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED], 1);
    CHECK_INT(st.counts[ACKD_TASK_FAILED], 0);
    CHECK_INT(st.oldest_queued_at, 5);
    CHECK_INT(B->queue_stats(f->c, "empty", NULL, &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 0);
    CHECK_INT(st.oldest_queued_at, 0);
}

TEST(sqlite_list_and_stats)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    list_stats_body(&f);
    fx_close(&f);
}

/* --- attempts and purge --- */

static int insert_finished(fx_t *f, const char *id, const char *queue, int state,
                           int64_t finished)
{
    ackd_task_t t = mk(id, queue, state, 0, 1);
    t.finished_at = finished;
    t.attempts = 1;
    ackd_free(t.payload);
    t.payload = ackd_malloc(1001);
    memset(t.payload, '7', 1000); /* a number of 1000 digits: over INLINE_BODIES_MAX */
    t.payload[1000] = '\0';
    int rc = B->task_insert(f->c, &t);
    ackd_attempt_t a = {.n = 1, .started_at = 1, .ended_at = finished, .outcome = "completed"};
    if (rc == 0)
        rc = B->attempt_insert(f->c, id, &a);
    ackd_task_clear(&t);
    return rc;
}

static void attempts_body(fx_t *f)
{
    CHECK_INT(insert(f, "tsk_att", "q", ACKD_TASK_PROCESSING, 0, 1), 0);
    /* attempts are written once, when they end */
    ackd_attempt_t a1 = {.n = 1, .started_at = 100, .ended_at = 200, .outcome = "retry",
                         .error = "{\"message\":\"x\"}"};
    snprintf(a1.lease_id, sizeof a1.lease_id, "lse_1");
    ackd_attempt_t a2 = {.n = 2, .started_at = 300, .ended_at = 400, .outcome = "completed"};
    CHECK_INT(B->attempt_insert(f->c, "tsk_att", &a2), 0); /* out of order on purpose */
    CHECK_INT(B->attempt_insert(f->c, "tsk_att", &a1), 0);
    int saved = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF;
    int again = B->attempt_insert(f->c, "tsk_att", &a1); /* an attempt ends once */
    ackd_log_level = saved;
    CHECK(again < 0);
    ackd_attempt_t *list = NULL;
    int n = 0;
    CHECK_INT(B->attempt_list(f->c, "tsk_att", &list, &n), 0);
    CHECK_INT(n, 2);
    int ok = list[0].n == 1 && list[0].started_at == 100 && list[0].ended_at == 200 &&
             list[0].outcome && strcmp(list[0].outcome, "retry") == 0 && list[0].error &&
             strcmp(list[0].error, "{\"message\":\"x\"}") == 0 &&
             strcmp(list[0].lease_id, "lse_1") == 0 && list[1].n == 2 &&
             list[1].started_at == 300 && list[1].ended_at == 400 && list[1].outcome &&
             strcmp(list[1].outcome, "completed") == 0 && list[1].error == NULL &&
             list[1].lease_id[0] == '\0';
    for (int i = 0; i < n; i++)
        ackd_attempt_clear(&list[i]);
    ackd_free(list);
    CHECK(ok);
    CHECK_INT(B->attempt_list(f->c, "tsk_none", &list, &n), 0);
    CHECK_INT(n, 0);
    ackd_free(list);
}

TEST(sqlite_attempts_roundtrip)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    attempts_body(&f);
    fx_close(&f);
}

static bool exists(fx_t *f, const char *id)
{
    ackd_task_t t = {0};
    int rc = B->task_get(f->c, id, &t);
    ackd_task_clear(&t);
    return rc == 0;
}

static int attempts_of(fx_t *f, const char *id)
{
    ackd_attempt_t *list = NULL;
    int n = -1;
    B->attempt_list(f->c, id, &list, &n);
    for (int i = 0; i < n; i++)
        ackd_attempt_clear(&list[i]);
    ackd_free(list);
    return n;
}

static void purge_body(fx_t *f)
{
    CHECK_INT(insert_finished(f, "tsk_old_done", "q", ACKD_TASK_COMPLETED, 100), 0);
    CHECK_INT(insert_finished(f, "tsk_old_failed", "q", ACKD_TASK_FAILED, 200), 0);
    CHECK_INT(insert_finished(f, "tsk_old_canceled", "q", ACKD_TASK_CANCELED, 300), 0);
    CHECK_INT(insert_finished(f, "tsk_new_done", "q", ACKD_TASK_COMPLETED, 5000), 0);
    CHECK_INT(insert_finished(f, "tsk_edge", "q", ACKD_TASK_COMPLETED, 1000), 0);
    CHECK_INT(insert_finished(f, "tsk_old_queued", "q", ACKD_TASK_QUEUED, 0), 0);
    CHECK_INT(insert_finished(f, "tsk_old_processing", "q", ACKD_TASK_PROCESSING, 0), 0);
    CHECK_INT(insert_finished(f, "tsk_other_queue", "r", ACKD_TASK_COMPLETED, 100), 0);

    int deleted = -1;
    CHECK_INT(B->purge(f->c, "q", 1000, 2, &deleted), 0); /* a small batch: oldest first */
    CHECK_INT(deleted, 2);
    CHECK(!exists(f, "tsk_old_done"));
    CHECK(!exists(f, "tsk_old_failed"));
    CHECK(exists(f, "tsk_old_canceled"));
    CHECK_INT(attempts_of(f, "tsk_old_done"), 0);
    /* and its body (insert_finished gives each a body too large for its row) */
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM task_bodies WHERE task_id = 'tsk_old_done'"),
              0);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM task_bodies WHERE task_id = 'tsk_edge'"),
              1);
    CHECK_INT(B->purge(f->c, "q", 1000, 100, &deleted), 0);
    CHECK_INT(deleted, 1);
    CHECK(!exists(f, "tsk_old_canceled"));
    CHECK_INT(B->purge(f->c, "q", 1000, 100, &deleted), 0);
    CHECK_INT(deleted, 0);
    /* finished exactly at the limit, recent, unfinished, other queue: kept */
    CHECK(exists(f, "tsk_edge"));
    CHECK(exists(f, "tsk_new_done"));
    CHECK(exists(f, "tsk_old_queued"));
    CHECK(exists(f, "tsk_old_processing"));
    CHECK(exists(f, "tsk_other_queue"));
    CHECK_INT(attempts_of(f, "tsk_new_done"), 1);
    CHECK_INT(attempts_of(f, "tsk_old_queued"), 1);
    /* the counts followed the deletes */
    ackd_queue_stats_t st;
    CHECK_INT(B->queue_stats(f->c, "q", NULL, &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED], 2);
    CHECK_INT(st.counts[ACKD_TASK_FAILED], 0);
    CHECK_INT(st.counts[ACKD_TASK_CANCELED], 0);
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1);
    CHECK_INT(st.counts[ACKD_TASK_PROCESSING], 1);
    CHECK_INT(B->queue_stats(f->c, "r", NULL, &st), 0);
    CHECK_INT(st.counts[ACKD_TASK_COMPLETED], 1);
}

/* The counts of GET /v1/queues are kept by the store on every change of
 * state, per tenant, so they equal a full count of the table after any mix
 * of changes (inserts, changes of state, purges), for each tenant and for
 * all of them. */
static void counts_follow_body(fx_t *f)
{
    for (int i = 0; i < 30; i++) {
        char id[32];
        snprintf(id, sizeof id, "tsk_c%02d", i);
        ackd_task_t t = mk(id, i % 3 ? "q" : "r", ACKD_TASK_QUEUED, 0, 0);
        ackd_free(t.tenant);
        t.tenant = ackd_strdup(i % 5 ? "t1" : "t2");
        CHECK_INT(B->task_insert(f->c, &t), 0);
        ackd_task_clear(&t);
    }
    for (int i = 0; i < 30; i += 2) { /* half move on: processing, then an end */
        char id[32];
        snprintf(id, sizeof id, "tsk_c%02d", i);
        ackd_task_t t = {0};
        CHECK_INT(B->task_get(f->c, id, &t), 0);
        t.state = ACKD_TASK_PROCESSING;
        CHECK_INT(B->task_update(f->c, &t), 0);
        if (i % 4 == 0) {
            t.state = i % 8 ? ACKD_TASK_FAILED : ACKD_TASK_COMPLETED;
            t.finished_at = 10;
        }
        t.attempts = 2; /* an update that keeps the state changes no count */
        CHECK_INT(B->task_update(f->c, &t), 0);
        ackd_task_clear(&t);
    }
    int deleted = 0;
    CHECK_INT(B->purge(f->c, "q", 1000, 3, &deleted), 0);
    CHECK(deleted > 0);
    const char *queues[] = {"q", "r"};
    const char *tenants[] = {NULL, "t1", "t2", "t3"};
    for (int k = 0; k < 2; k++) {
        for (int m = 0; m < 4; m++) {
            ackd_queue_stats_t st;
            CHECK_INT(B->queue_stats(f->c, queues[k], tenants[m], &st), 0);
            for (int state = 0; state <= ACKD_TASK_CANCELED; state++) {
                char q[200];
                snprintf(q, sizeof q,
                         "SELECT COUNT(*) FROM tasks WHERE queue = '%s' AND state = %d%s%s%s",
                         queues[k], state, tenants[m] ? " AND tenant = '" : "",
                         tenants[m] ? tenants[m] : "", tenants[m] ? "'" : "");
                CHECK_INT(st.counts[state], count_sql(f->path, q));
            }
        }
    }
}

TEST(sqlite_queue_counts_follow_every_change)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    counts_follow_body(&f);
    fx_close(&f);
}

TEST(sqlite_purge_only_old_terminal)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    purge_body(&f);
    fx_close(&f);
}

/* --- idempotency --- */

static int idem_put(fx_t *f, const char *tenant, const char *key, const char *task_id,
                    int64_t expires)
{
    ackd_idem_t i = {.tenant = (char *)tenant, .scope = (char *)"queue:q", .key = (char *)key,
                     .expires_at = expires};
    snprintf(i.fingerprint, sizeof i.fingerprint, "%064d", (int)expires);
    snprintf(i.task_id, sizeof i.task_id, "%s", task_id);
    return B->idem_insert(f->c, &i);
}

static void idem_body(fx_t *f)
{
    ackd_idem_t got;
    memset(&got, 0, sizeof got);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k1", &got), ACKD_ENOENT);
    CHECK_INT(idem_put(f, "t1", "k1", "tsk_1", 1000), 0);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k1", &got), 0);
    CHECK_STR(got.task_id, "tsk_1");
    CHECK_INT(got.expires_at, 1000);
    char want[65];
    snprintf(want, sizeof want, "%064d", 1000);
    CHECK_STR(got.fingerprint, want);
    ackd_idem_clear(&got);
    /* the scope is (tenant, scope, key): each part separates */
    CHECK_INT(B->idem_get(f->c, "t2", "queue:q", "k1", &got), ACKD_ENOENT);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:r", "k1", &got), ACKD_ENOENT);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k2", &got), ACKD_ENOENT);
    /* inserting again under the same scope replaces (an expired key reused) */
    CHECK_INT(idem_put(f, "t1", "k1", "tsk_1b", 3000), 0);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k1", &got), 0);
    CHECK_STR(got.task_id, "tsk_1b");
    CHECK_INT(got.expires_at, 3000);
    CHECK_INT(idem_put(f, "t2", "k1", "tsk_2", 1500), 0);
    CHECK_INT(idem_put(f, "t1", "k3", "tsk_3", 2000), 0);
    /* purge deletes keys that expired before now, in batches */
    int deleted = -1;
    CHECK_INT(B->idem_purge(f->c, 1000, 10, &deleted), 0);
    CHECK_INT(deleted, 0);
    CHECK_INT(B->idem_purge(f->c, 2500, 1, &deleted), 0);
    CHECK_INT(deleted, 1);
    CHECK_INT(B->idem_purge(f->c, 2500, 10, &deleted), 0);
    CHECK_INT(deleted, 1);
    CHECK_INT(B->idem_get(f->c, "t2", "queue:q", "k1", &got), ACKD_ENOENT);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k3", &got), ACKD_ENOENT);
    CHECK_INT(B->idem_get(f->c, "t1", "queue:q", "k1", &got), 0);
    CHECK_STR(got.task_id, "tsk_1b");
}

TEST(sqlite_idempotency_rows)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    idem_body(&f);
    fx_close(&f);
}

/* --- checkpoints --- */

/* Checkpoints happen without the writer asking (its WAL hook hands them to
 * a thread, or runs one itself past a bound), so the WAL is started again
 * and stays small: 3 000 commits of a few pages each would leave a WAL of
 * over 36 MB without them. The rows stay readable from a new connection. */
static void wal_reused_body(fx_t *f)
{
    for (int i = 0; i < 3000; i++) {
        char id[32];
        snprintf(id, sizeof id, "tsk_w%05d", i);
        CHECK_INT(insert(f, id, "q", ACKD_TASK_QUEUED, 0, i), 0);
    }
    char wal[200];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    struct stat st;
    CHECK_INT(stat(wal, &st), 0);
    CHECK(st.st_size < 16 * 1024 * 1024);
    CHECK_INT(count_sql(f->path, "SELECT COUNT(*) FROM tasks"), 3000);
    /* asked when the WAL reaches its mark and then per 250 pages more, not
     * after every commit past the mark (back-to-back checkpoints, two
     * fsyncs each, slowed the commits they ran beside) */
    int asks = ackd_sqlite_checkpoint_asks(f->c);
    CHECK(asks >= 1);
    CHECK(asks < 60);
}

TEST(sqlite_wal_is_checkpointed_off_the_writer_and_reused)
{
    fx_t f;
    CHECK_INT(fx_open(&f), 0);
    wal_reused_body(&f);
    fx_close(&f);
}
