/* tq_test.c - tests src/queue/tq.c: SPEC §1's state machine against a real
 * SQLite file with the real committer. Each test opens a task queue on a
 * fresh temporary directory, runs operations with ackd_tq_run and waits for
 * their callbacks (which run on a store thread) through a mutex and a
 * condition variable. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/id.h"
#include "base/log.h"
#include "queue/fingerprint.h"
#include "queue/tq.h"

/* q: fast retries and two attempts; slow: retries a second apart. */
#define CONF                                                                                       \
    "[storage]\npath = %s\n"                                                                       \
    "[queue q]\nmax_attempts = 2\nretry_base = 10ms\nretry_cap = 10ms\n"                            \
    "[queue slow]\nmax_attempts = 3\nretry_base = 1s\nretry_cap = 1s\n"

#define WAIT_MS 5000 /* longest wait for any callback before the test gives up */

typedef struct {
    char dir[64];
    char path[128];
    ackd_config_t cfg;
    ackd_tq_t *tq;
    int saved_log_level;
} fx_t;

static int fx_open(fx_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ackd_tq_test_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/ackd.db", f->dir);
    char text[512], err[1024];
    snprintf(text, sizeof text, CONF, f->path);
    if (ackd_config_load_string(&f->cfg, "tq_test.conf", text, NULL, err, sizeof err) != 0) {
        printf("    config: %s\n", err);
        return -1;
    }
    f->saved_log_level = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF; /* lease expiry warns; keep the test output clean */
    if (ackd_tq_open(&f->tq, &f->cfg, err, sizeof err) != 0) {
        printf("    open: %s\n", err);
        ackd_config_free(&f->cfg);
        return -1;
    }
    return 0;
}

static void fx_close(fx_t *f)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    ackd_tq_close(f->tq);
    ackd_config_free(&f->cfg);
    ackd_log_level = f->saved_log_level;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* --- waiting for callbacks --- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ackd_tq_op_t *op; /* set by the callback */
    int64_t done_us;  /* monotonic time of the callback */
} waiter_t;

static void on_done(ackd_tq_op_t *op)
{
    waiter_t *w = op->data;
    pthread_mutex_lock(&w->mu);
    w->op = op;
    w->done_us = ackd_mono_us();
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Starts op; the returned waiter is freed by await. */
static waiter_t *start(ackd_tq_op_t *op)
{
    waiter_t *w = ACKD_NEW(waiter_t);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    op->cb = on_done;
    op->data = w;
    ackd_tq_run(op);
    return w;
}

/* The finished op (the caller frees it), or NULL if its callback did not come
 * within WAIT_MS; then the waiter and the op are left to leak, since the
 * callback may still come. *done_us gets the callback's time. */
static ackd_tq_op_t *await_at(waiter_t *w, int64_t *done_us)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&w->mu);
    while (!w->op && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
        ;
    ackd_tq_op_t *op = w->op;
    pthread_mutex_unlock(&w->mu);
    if (!op) {
        printf("    no callback within %d ms\n", WAIT_MS);
        return NULL;
    }
    if (done_us)
        *done_us = w->done_us;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    ackd_free(w);
    return op;
}

static ackd_tq_op_t *await(waiter_t *w)
{
    return await_at(w, NULL);
}

static ackd_tq_op_t *run(ackd_tq_op_t *op)
{
    return await(start(op));
}

static ackd_tq_op_t *new_op(fx_t *f, ackd_tq_kind_t kind)
{
    return ackd_tq_op_new(f->tq, kind, on_done, NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* --- operations --- */

/* An enqueue op of n tasks for tenant in queue (not started). */
static ackd_tq_op_t *enqueue_op(fx_t *f, const char *tenant, const char *queue, int n)
{
    ackd_tq_op_t *op = new_op(f, ACKD_TQ_ENQUEUE);
    op->items = ackd_calloc((size_t)n, sizeof *op->items);
    op->nitems = n;
    int64_t now = ackd_now_ms();
    for (int i = 0; i < n; i++) {
        ackd_tq_task_init(f->tq, &op->items[i].task, ackd_config_queue(&f->cfg, queue), tenant,
                          now);
        op->items[i].task.payload = ackd_strdup("{\"n\":1}");
    }
    return op;
}

/* Enqueues one task; its id into id. Returns the op's status, or 1 if its
 * callback never came. */
static int enqueue(fx_t *f, const char *tenant, const char *queue, char *id)
{
    ackd_tq_op_t *op = run(enqueue_op(f, tenant, queue, 1));
    if (!op)
        return 1;
    int status = op->status;
    snprintf(id, ACKD_ID_MAX, "%s", op->items[0].task.id);
    ackd_tq_op_free(op);
    return status;
}

static ackd_tq_op_t *claim_op(fx_t *f, const char *queue, int max, int64_t lease_ms,
                              int64_t wait_ms)
{
    ackd_tq_op_t *op = new_op(f, ACKD_TQ_CLAIM);
    op->queue = ackd_strdup(queue);
    op->max = max;
    op->lease_ms = lease_ms;
    op->wait_until = wait_ms ? ackd_now_ms() + wait_ms : 0;
    return op;
}

/* Claims one task of queue (waiting up to wait_ms); its id and lease into id
 * and lease. Returns the number claimed, or -1 when the call failed. */
static int claim1(fx_t *f, const char *queue, int64_t lease_ms, int64_t wait_ms, char *id,
                  char *lease)
{
    ackd_tq_op_t *op = run(claim_op(f, queue, 1, lease_ms, wait_ms));
    if (!op || op->status != 0)
        return -1;
    int n = op->ntasks;
    if (n == 1) {
        snprintf(id, ACKD_ID_MAX, "%s", op->tasks[0].id);
        snprintf(lease, ACKD_ID_MAX, "%s", op->tasks[0].lease_id);
    }
    ackd_tq_op_free(op);
    return n;
}

/* An op on task id, with a lease when lease is not NULL (not started). */
static ackd_tq_op_t *task_op(fx_t *f, ackd_tq_kind_t kind, const char *id, const char *lease)
{
    ackd_tq_op_t *op = new_op(f, kind);
    snprintf(op->id, sizeof op->id, "%s", id);
    if (lease)
        snprintf(op->lease_id, sizeof op->lease_id, "%s", lease);
    return op;
}

/* Runs op and returns its status (1: no callback); frees it. */
static int status_of(ackd_tq_op_t *op)
{
    ackd_tq_op_t *done = run(op);
    if (!done)
        return 1;
    int status = done->status;
    ackd_tq_op_free(done);
    return status;
}

/* A task of queue "q" with this priority that was canceled (a redrive makes
 * it due again); its id into id. Returns the first failing op's status. */
static int canceled_task(fx_t *f, int priority, char *id)
{
    ackd_tq_op_t *op = enqueue_op(f, "t1", "q", 1);
    op->items[0].task.priority = priority;
    ackd_tq_op_t *done = run(op);
    if (!done)
        return 1;
    int rc = done->status;
    snprintf(id, ACKD_ID_MAX, "%s", done->items[0].task.id);
    ackd_tq_op_free(done);
    return rc ? rc : status_of(task_op(f, ACKD_TQ_CANCEL, id, NULL));
}

static int complete(fx_t *f, const char *id, const char *lease, const char *result)
{
    ackd_tq_op_t *op = task_op(f, ACKD_TQ_COMPLETE, id, lease);
    op->result = result ? ackd_strdup(result) : NULL;
    return status_of(op);
}

static int fail(fx_t *f, const char *id, const char *lease, bool retry, int64_t retry_after_ms)
{
    ackd_tq_op_t *op = task_op(f, ACKD_TQ_FAIL, id, lease);
    op->error = ackd_strdup("{\"message\":\"boom\",\"status\":null}");
    op->retry = retry;
    op->retry_after_ms = retry_after_ms;
    return status_of(op);
}

/* Reads task id as tenant (NULL: any) with its attempts: the finished op, or
 * NULL. */
static ackd_tq_op_t *get_as(fx_t *f, const char *id, const char *tenant)
{
    ackd_tq_op_t *op = task_op(f, ACKD_TQ_GET, id, NULL);
    op->tenant = tenant;
    op->with_attempts = true;
    return run(op);
}

static ackd_tq_op_t *get(fx_t *f, const char *id)
{
    return get_as(f, id, NULL);
}

/* The state of task id, or -100 when it cannot be read. */
static int state_of(fx_t *f, const char *id)
{
    ackd_tq_op_t *op = get(f, id);
    int state = op && op->status == 0 ? op->task.state : -100;
    ackd_tq_op_free(op);
    return state;
}

/* Counts of queue's tasks per state. */
static ackd_queue_stats_t stats(fx_t *f, const char *queue)
{
    ackd_queue_stats_t st = {{-1, -1, -1, -1, -1}, -1};
    ackd_tq_op_t *op = new_op(f, ACKD_TQ_STATS);
    op->queue = ackd_strdup(queue);
    if ((op = run(op))) {
        st = op->stats;
        ackd_tq_op_free(op);
    }
    return st;
}

/* Runs the fixture around a body, so a failed CHECK in the body still closes
 * the queue and removes the directory. */
#define TQ_TEST(name)                                                                              \
    static void name##_body(fx_t *f);                                                              \
    TEST(name)                                                                                     \
    {                                                                                              \
        fx_t f;                                                                                    \
        CHECK_INT(fx_open(&f), 0);                                                                 \
        name##_body(&f);                                                                           \
        fx_close(&f);                                                                              \
    }                                                                                              \
    static void name##_body(fx_t *f)

/* --- enqueue and read --- */

TQ_TEST(tq_enqueue_then_get)
{
    int64_t before = ackd_now_ms();
    char id[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK(ackd_id_valid("tsk_", id));
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_STR(op->task.id, id);
    CHECK_STR(op->task.tenant, "t1");
    CHECK_STR(op->task.queue, "q");
    CHECK_INT(op->task.state, ACKD_TASK_QUEUED);
    CHECK_INT(op->task.attempts, 0);
    CHECK_INT(op->task.max_attempts, 2);
    CHECK(op->task.due_at >= before && op->task.due_at <= ackd_now_ms());
    CHECK(op->task.payload == NULL); /* a read leaves the body: claims carry it */
    CHECK(op->task.lease_id[0] == '\0');
    CHECK_INT(op->nattempts, 0);
    ackd_tq_op_free(op);

    op = get(f, "tsk_00000000000000000000000000");
    CHECK(op != NULL);
    CHECK_INT(op->status, ACKD_ENOENT);
    ackd_tq_op_free(op);

    ackd_queue_stats_t st = stats(f, "q");
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1);
    CHECK_INT(st.counts[ACKD_TASK_PROCESSING], 0);
    CHECK(st.oldest_queued_at >= before);
}

/* An operation that fails part-way leaves nothing behind: here the second
 * task of a batch has the first one's id, so its insert fails after the
 * first one's succeeded. The batch is rolled back. */
TQ_TEST(tq_operation_failing_part_way_changes_nothing)
{
    char kept[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", kept), 0);
    ackd_tq_op_t *op = enqueue_op(f, "t1", "q", 2);
    memcpy(op->items[1].task.id, op->items[0].task.id, ACKD_ID_MAX);
    char first[ACKD_ID_MAX];
    memcpy(first, op->items[0].task.id, ACKD_ID_MAX);
    int saved = ackd_log_level;
    ackd_log_level = ACKD_LOG_OFF; /* the refused insert and the rollback log errors */
    op = run(op);
    ackd_log_level = saved;
    CHECK(op != NULL);
    CHECK_INT(op->status, ACKD_EIO);
    ackd_tq_op_free(op);
    op = get(f, first);
    CHECK(op != NULL);
    CHECK_INT(op->status, ACKD_ENOENT); /* its first task was not committed */
    ackd_tq_op_free(op);
    ackd_queue_stats_t st = stats(f, "q");
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1); /* nor counted */
    /* and the store goes on */
    char next[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", next), 0);
    st = stats(f, "q");
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 2);
}

/* --- claim --- */

TQ_TEST(tq_claim_sets_lease_and_attempt)
{
    char id[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    int64_t before = ackd_now_ms();
    ackd_tq_op_t *op = run(claim_op(f, "q", 5, 30000, 0));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 1);
    ackd_task_t *t = &op->tasks[0];
    CHECK_STR(t->id, id);
    CHECK_STR(t->payload, "{\"n\":1}");
    CHECK_INT(t->state, ACKD_TASK_PROCESSING);
    CHECK_INT(t->attempts, 1);
    CHECK(ackd_id_valid("lse_", t->lease_id));
    CHECK(t->lease_expires_at >= before + 30000 && t->lease_expires_at <= ackd_now_ms() + 30000);
    CHECK_STR(t->payload, "{\"n\":1}");
    char lease[ACKD_ID_MAX];
    snprintf(lease, sizeof lease, "%s", t->lease_id);
    ackd_tq_op_free(op);

    /* nothing left: an empty answer at once */
    op = run(claim_op(f, "q", 5, 30000, 0));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 0);
    ackd_tq_op_free(op);

    op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_PROCESSING);
    CHECK_STR(op->task.lease_id, lease);
    CHECK_INT(op->nattempts, 1);
    CHECK_INT(op->attempts[0].n, 1);
    CHECK_STR(op->attempts[0].lease_id, lease);
    CHECK(op->attempts[0].started_at >= before);
    CHECK(op->attempts[0].outcome == NULL);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_PROCESSING], 1);
}

TQ_TEST(tq_claim_by_priority_and_max)
{
    ackd_tq_op_t *op = enqueue_op(f, "t1", "q", 4);
    int prio[4] = {1, 7, 3, 7};
    for (int i = 0; i < 4; i++)
        op->items[i].task.priority = prio[i];
    op->items[3].task.due_at -= 10; /* same priority as [1], due earlier */
    char ids[4][ACKD_ID_MAX];
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, 0);
    for (int i = 0; i < 4; i++)
        snprintf(ids[i], ACKD_ID_MAX, "%s", op->items[i].task.id);
    ackd_tq_op_free(op);

    CHECK((op = run(claim_op(f, "q", 3, 30000, 0))) != NULL);
    CHECK_INT(op->ntasks, 3);
    CHECK_STR(op->tasks[0].id, ids[3]);
    CHECK_STR(op->tasks[1].id, ids[1]);
    CHECK_STR(op->tasks[2].id, ids[2]);
    /* each its own lease */
    CHECK(strcmp(op->tasks[0].lease_id, op->tasks[1].lease_id) != 0);
    ackd_tq_op_free(op);
    CHECK((op = run(claim_op(f, "q", 3, 30000, 0))) != NULL);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, ids[0]);
    ackd_tq_op_free(op);
    /* another queue's claim sees none of them */
    char cid[ACKD_ID_MAX], clease[ACKD_ID_MAX];
    CHECK_INT(claim1(f, "slow", 30000, 0, cid, clease), 0);
}

/* --- worker calls --- */

TQ_TEST(tq_complete_with_wrong_lease_conflicts)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_STR(cid, id);
    char wrong[ACKD_ID_MAX];
    ackd_id_new("lse_", wrong);
    CHECK_INT(complete(f, id, wrong, "{\"x\":1}"), ACKD_ECONFLICT);
    CHECK_INT(complete(f, id, "", "{\"x\":1}"), ACKD_ECONFLICT);
    CHECK_INT(fail(f, id, wrong, true, 0), ACKD_ECONFLICT);
    ackd_tq_op_t *hb = task_op(f, ACKD_TQ_HEARTBEAT, id, wrong);
    hb->progress_pct = 10;
    CHECK_INT(status_of(hb), ACKD_ECONFLICT);
    /* nothing changed */
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_PROCESSING);
    CHECK_STR(op->task.lease_id, lease);
    CHECK(op->task.result == NULL);
    CHECK(op->task.error == NULL);
    CHECK_INT(op->task.progress_pct, -1);
    CHECK_INT(op->task.attempts, 1);
    CHECK_INT(op->nattempts, 1);
    CHECK(op->attempts[0].outcome == NULL);
    ackd_tq_op_free(op);
}

TQ_TEST(tq_complete_finishes_the_task)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    int64_t before = ackd_now_ms();
    CHECK_INT(complete(f, id, lease, "{\"charged\":true}"), 0);
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_COMPLETED);
    CHECK_STR(op->task.result, "{\"charged\":true}");
    CHECK(op->task.lease_id[0] == '\0');
    CHECK_INT(op->task.lease_expires_at, 0);
    CHECK(op->task.finished_at >= before);
    CHECK_INT(op->nattempts, 1);
    CHECK_STR(op->attempts[0].outcome, "completed");
    CHECK(op->attempts[0].ended_at >= before);
    ackd_tq_op_free(op);
    /* the lease ended with the task: a second complete is fenced off */
    CHECK_INT(complete(f, id, lease, "{}"), ACKD_ECONFLICT);
    CHECK_INT(fail(f, id, lease, false, 0), ACKD_ECONFLICT);
    /* a complete without a result stores JSON null */
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(complete(f, id, lease, NULL), 0);
    CHECK((op = get(f, id)) != NULL);
    CHECK_STR(op->task.result, "null");
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_COMPLETED], 2);
}

TQ_TEST(tq_heartbeat_extends_lease)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 1000, 0, cid, lease), 1);
    ackd_tq_op_t *op = task_op(f, ACKD_TQ_HEARTBEAT, id, lease);
    op->lease_ms = 60000;
    op->progress_pct = 50;
    op->progress_msg = ackd_strdup("halfway");
    int64_t before = ackd_now_ms();
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(op->task.lease_expires_at >= before + 60000);
    ackd_tq_op_free(op);
    CHECK((op = get(f, id)) != NULL);
    CHECK(op->task.lease_expires_at >= before + 60000);
    CHECK_STR(op->task.lease_id, lease); /* the same lease, longer */
    CHECK_INT(op->task.progress_pct, 50);
    CHECK_STR(op->task.progress_msg, "halfway");
    ackd_tq_op_free(op);
    /* a heartbeat without a length extends by the one granted last */
    op = task_op(f, ACKD_TQ_HEARTBEAT, id, lease);
    before = ackd_now_ms();
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(op->task.lease_expires_at >= before + 60000);
    CHECK(op->task.lease_expires_at <= ackd_now_ms() + 60000);
    CHECK_INT(op->task.progress_pct, 50); /* unreported progress is kept */
    ackd_tq_op_free(op);
    /* past the original second, the lease still holds */
    sleep_ms(1100);
    CHECK_INT(state_of(f, id), ACKD_TASK_PROCESSING);
    CHECK_INT(complete(f, id, lease, "{}"), 0);
}

TQ_TEST(tq_fail_with_retry_backs_off)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "slow", id), 0);
    CHECK_INT(claim1(f, "slow", 30000, 0, cid, lease), 1);
    int64_t before = ackd_now_ms();
    CHECK_INT(fail(f, id, lease, true, 0), 0);
    int64_t after = ackd_now_ms();
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_QUEUED);
    CHECK_INT(op->task.attempts, 1);
    /* slow: base 1 s, so the first retry is due within [now, now + 1 s] */
    CHECK(op->task.due_at >= before);
    CHECK(op->task.due_at <= after + 1000);
    CHECK(op->task.lease_id[0] == '\0');
    CHECK_STR(op->task.error, "{\"message\":\"boom\",\"status\":null}");
    CHECK(op->task.finished_at == 0);
    CHECK_INT(op->nattempts, 1);
    CHECK_STR(op->attempts[0].outcome, "retry");
    CHECK_STR(op->attempts[0].error, "{\"message\":\"boom\",\"status\":null}");
    int64_t due = op->task.due_at;
    ackd_tq_op_free(op);
    /* not claimable before it is due */
    if (due > ackd_now_ms() + 50)
        CHECK_INT(claim1(f, "slow", 30000, 0, cid, lease), 0);
    /* a worker's later Retry-After wins over the backoff */
    CHECK_INT(claim1(f, "slow", 30000, 2000, cid, lease), 1);
    CHECK_STR(cid, id);
    before = ackd_now_ms();
    CHECK_INT(fail(f, id, lease, true, 60000), 0);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_QUEUED);
    CHECK_INT(op->task.attempts, 2);
    CHECK(op->task.due_at >= before + 60000);
    CHECK(op->task.due_at <= ackd_now_ms() + 60000);
    CHECK_INT(op->nattempts, 2);
    ackd_tq_op_free(op);
}

TQ_TEST(tq_fail_after_max_attempts)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(fail(f, id, lease, true, 0), 0);
    CHECK_INT(state_of(f, id), ACKD_TASK_QUEUED);
    /* the retry is due within 10 ms: a waiting claim gets it */
    CHECK_INT(claim1(f, "q", 30000, 2000, cid, lease), 1);
    CHECK_STR(cid, id);
    int64_t before = ackd_now_ms();
    CHECK_INT(fail(f, id, lease, true, 0), 0); /* attempt 2 of 2 */
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_FAILED);
    CHECK_INT(op->task.attempts, 2);
    CHECK(op->task.finished_at >= before);
    CHECK_STR(op->task.error, "{\"message\":\"boom\",\"status\":null}");
    CHECK_INT(op->nattempts, 2);
    CHECK_STR(op->attempts[0].outcome, "retry");
    CHECK_STR(op->attempts[1].outcome, "failed");
    ackd_tq_op_free(op);
    /* a failure the worker calls final ends the task at its first attempt */
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(fail(f, id, lease, false, 0), 0);
    CHECK_INT(state_of(f, id), ACKD_TASK_FAILED);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_FAILED], 2);
}

/* --- client calls --- */

TQ_TEST(tq_cancel)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    ackd_tq_op_t *op = run(task_op(f, ACKD_TQ_CANCEL, id, NULL));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->task.state, ACKD_TASK_CANCELED);
    ackd_tq_op_free(op);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_CANCELED);
    CHECK(op->task.finished_at > 0);
    ackd_tq_op_free(op);
    /* a canceled task is not handed out */
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 0);
    /* terminal: canceled, completed */
    CHECK_INT(status_of(task_op(f, ACKD_TQ_CANCEL, id, NULL)), ACKD_ECONFLICT);
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(complete(f, id, lease, "{}"), 0);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_CANCEL, id, NULL)), ACKD_ECONFLICT);
    CHECK_INT(state_of(f, id), ACKD_TASK_COMPLETED);
    /* processing: marked, and the worker's next failure ends it as canceled */
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_CANCEL, id, NULL)), 0);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_PROCESSING);
    CHECK(op->task.cancel_requested);
    ackd_tq_op_free(op);
    CHECK_INT(fail(f, id, lease, true, 0), 0);
    CHECK_INT(state_of(f, id), ACKD_TASK_CANCELED);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_CANCEL, "tsk_00000000000000000000000000", NULL)),
              ACKD_ENOENT);
}

TQ_TEST(tq_retry_redrives_failed_and_canceled)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    /* only failed or canceled tasks */
    CHECK_INT(status_of(task_op(f, ACKD_TQ_RETRY, id, NULL)), ACKD_ECONFLICT);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_RETRY, id, NULL)), ACKD_ECONFLICT);
    CHECK_INT(fail(f, id, lease, false, 0), 0);
    CHECK_INT(state_of(f, id), ACKD_TASK_FAILED);

    int64_t before = ackd_now_ms();
    ackd_tq_op_t *op = run(task_op(f, ACKD_TQ_RETRY, id, NULL));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    ackd_tq_op_free(op);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_QUEUED);
    CHECK(op->task.due_at >= before && op->task.due_at <= ackd_now_ms());
    CHECK_INT(op->task.finished_at, 0);
    CHECK(op->task.error == NULL);
    CHECK_INT(op->task.attempts, 1);
    CHECK_INT(op->task.max_attempts, 1 + 2); /* a fresh allowance of the queue's attempts */
    ackd_tq_op_free(op);
    /* it runs again as attempt 2 */
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_STR(cid, id);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.attempts, 2);
    CHECK_INT(op->nattempts, 2);
    ackd_tq_op_free(op);
    CHECK_INT(complete(f, id, lease, "{}"), 0);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_RETRY, id, NULL)), ACKD_ECONFLICT);

    /* canceled -> queued */
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_CANCEL, id, NULL)), 0);
    CHECK_INT(status_of(task_op(f, ACKD_TQ_RETRY, id, NULL)), 0);
    CHECK_INT(state_of(f, id), ACKD_TASK_QUEUED);
}

/* --- idempotency --- */

/* One task with an idempotency key and the fingerprint of body. */
static ackd_tq_op_t *idem_op(fx_t *f, const char *tenant, const char *scope, const char *key,
                             const char *body)
{
    ackd_tq_op_t *op = enqueue_op(f, tenant, "q", 1);
    ackd_tq_item_t *it = &op->items[0];
    it->idem_scope = ackd_strdup(scope);
    it->task.idem_key = ackd_strdup(key);
    ackd_fingerprint("POST", "/v1/queues/q/tasks", body, strlen(body), it->fingerprint);
    return op;
}

TQ_TEST(tq_idempotency_replay_and_mismatch)
{
    ackd_tq_op_t *op = run(idem_op(f, "t1", "queue:q", "k1", "{\"a\":1}"));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK(!op->items[0].replayed);
    char first[ACKD_ID_MAX];
    snprintf(first, sizeof first, "%s", op->items[0].task.id);
    ackd_tq_op_free(op);

    /* the same request again: the same task, nothing new */
    CHECK((op = run(idem_op(f, "t1", "queue:q", "k1", "{\"a\":1}"))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(op->items[0].replayed);
    CHECK_STR(op->items[0].task.id, first);
    ackd_tq_op_free(op);

    /* another request under the same key: a conflict naming the first task */
    CHECK((op = run(idem_op(f, "t1", "queue:q", "k1", "{\"a\":2}"))) != NULL);
    CHECK_INT(op->status, ACKD_ECONFLICT);
    CHECK_STR(op->conflict_id, first);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_QUEUED], 1);

    /* the key is scoped by tenant and by scope */
    CHECK((op = run(idem_op(f, "t2", "queue:q", "k1", "{\"a\":2}"))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(!op->items[0].replayed);
    CHECK(strcmp(op->items[0].task.id, first) != 0);
    ackd_tq_op_free(op);
    CHECK((op = run(idem_op(f, "t1", "route:POST /pay", "k1", "{\"a\":2}"))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(!op->items[0].replayed);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_QUEUED], 3);

    /* the replay holds whatever became of the task */
    char cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    ackd_tq_op_t *c = run(claim_op(f, "q", 10, 30000, 0));
    CHECK(c != NULL);
    for (int i = 0; i < c->ntasks; i++)
        if (strcmp(c->tasks[i].id, first) == 0) {
            snprintf(cid, sizeof cid, "%s", c->tasks[i].id);
            snprintf(lease, sizeof lease, "%s", c->tasks[i].lease_id);
        }
    ackd_tq_op_free(c);
    CHECK_INT(complete(f, first, lease, "{}"), 0);
    CHECK((op = run(idem_op(f, "t1", "queue:q", "k1", "{\"a\":1}"))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(op->items[0].replayed);
    CHECK_STR(op->items[0].task.id, first);
    ackd_tq_op_free(op);
    CHECK_INT(state_of(f, first), ACKD_TASK_COMPLETED);
}

TQ_TEST(tq_idempotency_mismatch_in_batch_writes_nothing)
{
    ackd_tq_op_t *op = run(idem_op(f, "t1", "queue:q", "k1", "{\"a\":1}"));
    CHECK(op != NULL);
    ackd_tq_op_free(op);
    /* a batch whose second item reuses k1 for another body: nothing of it is kept */
    op = enqueue_op(f, "t1", "q", 3);
    for (int i = 0; i < 3; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        op->items[i].idem_scope = ackd_strdup("queue:q");
        op->items[i].task.idem_key = ackd_strdup(key);
        ackd_fingerprint("POST", "/b", "x", 1, op->items[i].fingerprint);
    }
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, ACKD_ECONFLICT);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_QUEUED], 1);
    /* and k0, which it never stored, is still free */
    CHECK((op = run(idem_op(f, "t1", "queue:q", "k0", "{\"a\":1}"))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(!op->items[0].replayed);
    ackd_tq_op_free(op);
}

TQ_TEST(tq_idempotency_repeated_key_within_one_batch)
{
    /* two items of one batch with the same key and body are one task */
    ackd_tq_op_t *op = enqueue_op(f, "t1", "q", 2);
    for (int i = 0; i < 2; i++) {
        op->items[i].idem_scope = ackd_strdup("queue:q");
        op->items[i].task.idem_key = ackd_strdup("dup");
        ackd_fingerprint("POST", "/b", "same", 4, op->items[i].fingerprint);
    }
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, 0);
    CHECK(!op->items[0].replayed);
    CHECK(op->items[1].replayed);
    CHECK_STR(op->items[1].task.id, op->items[0].task.id);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_QUEUED], 1);
    /* with different bodies they conflict, and nothing is written */
    op = enqueue_op(f, "t1", "q", 2);
    for (int i = 0; i < 2; i++) {
        op->items[i].idem_scope = ackd_strdup("queue:q");
        op->items[i].task.idem_key = ackd_strdup("dup2");
        ackd_fingerprint("POST", "/b", i ? "one" : "two", 3, op->items[i].fingerprint);
    }
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, ACKD_ECONFLICT);
    CHECK_STR(op->conflict_id, ""); /* the first use was never stored */
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_QUEUED], 1);
}

/* --- waiting claims --- */

/* Two write ops that do nothing, one after the other. The first may share a
 * batch with what was submitted before it, and its callback runs before that
 * batch parks its claims; the second runs in a later batch, so once its
 * callback ran, everything submitted before the first has been applied and
 * parked (the committer is one thread). */
static int barrier(fx_t *f)
{
    int rc = status_of(task_op(f, ACKD_TQ_CANCEL, "tsk_00000000000000000000000000", NULL));
    if (rc != ACKD_ENOENT)
        return rc;
    return status_of(task_op(f, ACKD_TQ_CANCEL, "tsk_00000000000000000000000000", NULL));
}

TQ_TEST(tq_claim_waits_and_is_woken_by_enqueue)
{
    ackd_tq_op_t *claim = claim_op(f, "q", 1, 30000, 10000);
    waiter_t *w = start(claim);
    CHECK_INT(barrier(f), ACKD_ENOENT); /* the claim is parked now */
    int64_t t0 = ackd_mono_us();
    ackd_tq_op_t *enq = run(enqueue_op(f, "t1", "q", 1));
    CHECK(enq != NULL);
    CHECK_INT(enq->status, 0);
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(w, &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, enq->items[0].task.id);
    CHECK_INT(op->tasks[0].state, ACKD_TASK_PROCESSING);
    CHECK(!op->waited_out);
    /* served in the enqueue's commit: no timer, no second fsync */
    CHECK(done_us - t0 < 1000 * 1000);
    ackd_tq_op_free(enq);
    ackd_tq_op_free(op);
}

/* --- a gate that holds the committer inside one batch --- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool inside, open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static int gate_apply(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    (void)s, (void)b, (void)c;
    pthread_mutex_lock(&gate.mu);
    gate.inside = true;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    return 0;
}

/* Holds the committer in a batch of its own until gate_open. */
static waiter_t *gate_close(fx_t *f)
{
    pthread_mutex_lock(&gate.mu);
    gate.inside = gate.open = false;
    pthread_mutex_unlock(&gate.mu);
    ackd_tq_op_t *op = new_op(f, ACKD_TQ_CANCEL);
    op->base.apply = gate_apply;
    waiter_t *w = start(op);
    pthread_mutex_lock(&gate.mu);
    while (!gate.inside)
        pthread_cond_wait(&gate.cv, &gate.mu);
    pthread_mutex_unlock(&gate.mu);
    return w;
}

static void gate_open(waiter_t *w)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    ackd_tq_op_free(await(w));
}

TQ_TEST(tq_claim_in_the_same_batch_as_enqueue)
{
    /* the claim comes first in the batch, finds nothing and would park; the
     * enqueue after it in the same transaction must still serve it */
    waiter_t *g = gate_close(f);
    waiter_t *wc = start(claim_op(f, "q", 1, 30000, 3000));
    waiter_t *we = start(enqueue_op(f, "t1", "q", 1));
    int64_t t0 = ackd_mono_us();
    gate_open(g);
    ackd_tq_op_t *enq = await(we);
    CHECK(enq != NULL);
    CHECK_INT(enq->status, 0);
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(wc, &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, enq->items[0].task.id);
    CHECK(done_us - t0 < 1000 * 1000);
    ackd_tq_op_free(enq);
    ackd_tq_op_free(op);
}

/* A parked claim takes lone new tasks as they are written, in the order
 * they come, up to its max: inserted leased, one row write each. */
TQ_TEST(tq_waiting_claim_takes_lone_tasks_as_they_are_written)
{
    waiter_t *wc = start(claim_op(f, "q", 3, 30000, 10000));
    CHECK_INT(barrier(f), ACKD_ENOENT); /* the claim is parked now */
    waiter_t *g = gate_close(f);        /* the four enqueues share one batch */
    waiter_t *we[4];
    for (int i = 0; i < 4; i++) {
        ackd_tq_op_t *e = enqueue_op(f, "t1", "q", 1);
        if (i == 3)
            e->items[0].task.priority = 9; /* a claim's query would take it first */
        we[i] = start(e);
    }
    int64_t before = ackd_now_ms();
    gate_open(g);
    ackd_tq_op_t *enq[4];
    for (int i = 0; i < 4; i++) {
        CHECK((enq[i] = await(we[i])) != NULL);
        CHECK_INT(enq[i]->status, 0);
    }
    ackd_tq_op_t *op = await(wc);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 3);
    for (int i = 0; i < 3 && op->ntasks == 3; i++) {
        ackd_task_t *t = &op->tasks[i];
        CHECK_STR(t->id, enq[i]->items[0].task.id);
        CHECK_INT(t->state, ACKD_TASK_PROCESSING);
        CHECK_INT(t->attempts, 1);
        CHECK(t->lease_id[0] != '\0');
        CHECK(t->lease_expires_at >= before + 30000);
        CHECK_STR(t->payload, "{\"n\":1}"); /* the claim hands the payload over */
    }
    /* the fourth found the claim full: queued */
    CHECK_INT(state_of(f, enq[3]->items[0].task.id), ACKD_TASK_QUEUED);
    ackd_queue_stats_t st = stats(f, "q");
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1);
    CHECK_INT(st.counts[ACKD_TASK_PROCESSING], 3);
    /* the stored row holds the lease the claim answered, and the history
     * shows the attempt starting */
    ackd_tq_op_t *g0 = get(f, op->tasks[0].id);
    CHECK(g0 != NULL);
    CHECK_INT(g0->task.state, ACKD_TASK_PROCESSING);
    CHECK_STR(g0->task.lease_id, op->tasks[0].lease_id);
    CHECK(g0->task.attempt_started_at >= before);
    ackd_tq_op_free(g0);
    ackd_tq_op_t *ev = run(task_op(f, ACKD_TQ_EVENTS, op->tasks[0].id, NULL));
    CHECK(ev != NULL);
    CHECK_INT(ev->nevents, 2);
    if (ev->nevents == 2) {
        CHECK_STR(ev->events[0].type, "task.queued");
        CHECK_STR(ev->events[1].type, "task.processing");
        CHECK(strstr(ev->events[1].data, "\"attempt\":1") != NULL);
    }
    ackd_tq_op_free(ev);
    CHECK_INT(complete(f, op->tasks[0].id, op->tasks[0].lease_id, "{}"), 0);
    CHECK_INT(state_of(f, op->tasks[0].id), ACKD_TASK_COMPLETED);
    ackd_tq_op_free(op);
    for (int i = 0; i < 4; i++)
        ackd_tq_op_free(enq[i]);
}

/* The tasks of one batch request are queued, so a waiting claim picks among
 * them by priority. */
TQ_TEST(tq_waiting_claim_orders_a_batch_request_by_priority)
{
    waiter_t *wc = start(claim_op(f, "q", 1, 30000, 10000));
    CHECK_INT(barrier(f), ACKD_ENOENT);
    ackd_tq_op_t *enq = enqueue_op(f, "t1", "q", 3);
    int prio[3] = {0, 5, 1};
    for (int i = 0; i < 3; i++)
        enq->items[i].task.priority = prio[i];
    CHECK((enq = run(enq)) != NULL);
    CHECK_INT(enq->status, 0);
    ackd_tq_op_t *op = await(wc);
    CHECK(op != NULL);
    CHECK_INT(op->ntasks, 1);
    if (op->ntasks == 1)
        CHECK_STR(op->tasks[0].id, enq->items[1].task.id);
    ackd_tq_op_free(op);
    ackd_tq_op_free(enq);
}

/* A task an earlier operation of the same batch made due is older than a
 * new one: the waiting claim gets it, not the new task. */
/* A claim that found fewer tasks than its max emptied its queue: the lone
 * tasks written after it in the same batch go to it as they are written, up
 * to its max, after the ones its query found (an earlier op of the batch
 * made one of those due). */
TQ_TEST(tq_claim_with_room_takes_the_later_tasks_of_its_batch)
{
    char a[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", a), 0);
    waiter_t *g = gate_close(f);
    waiter_t *wb = start(enqueue_op(f, "t1", "q", 1)); /* queued: due before the claim runs */
    int64_t before = ackd_now_ms();
    waiter_t *wc = start(claim_op(f, "q", 4, 30000, 0));
    waiter_t *we[3];
    for (int i = 0; i < 3; i++)
        we[i] = start(enqueue_op(f, "t1", "q", 1));
    gate_open(g);
    ackd_tq_op_t *b = await(wb), *enq[3];
    CHECK(b != NULL);
    for (int i = 0; i < 3; i++)
        CHECK((enq[i] = await(we[i])) != NULL);
    ackd_tq_op_t *op = await(wc);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 4);
    const char *want[4] = {a, b ? b->items[0].task.id : "", enq[0] ? enq[0]->items[0].task.id : "",
                           enq[1] ? enq[1]->items[0].task.id : ""};
    for (int i = 0; i < 4 && op->ntasks == 4; i++) {
        CHECK_STR(op->tasks[i].id, want[i]);
        CHECK_INT(op->tasks[i].state, ACKD_TASK_PROCESSING);
        CHECK(op->tasks[i].lease_expires_at >= before + 30000);
        ackd_tq_op_t *row = get(f, op->tasks[i].id);
        CHECK(row != NULL);
        if (row) {
            CHECK_INT(row->task.state, ACKD_TASK_PROCESSING);
            CHECK_STR(row->task.lease_id, op->tasks[i].lease_id);
        }
        ackd_tq_op_free(row);
    }
    /* the last found the claim full */
    char left[ACKD_ID_MAX] = "";
    if (enq[2]) {
        snprintf(left, sizeof left, "%s", enq[2]->items[0].task.id);
        CHECK_INT(state_of(f, left), ACKD_TASK_QUEUED);
    }
    ackd_queue_stats_t st = stats(f, "q");
    CHECK_INT(st.counts[ACKD_TASK_QUEUED], 1);
    CHECK_INT(st.counts[ACKD_TASK_PROCESSING], 4);
    if (op->ntasks == 4)
        CHECK_INT(complete(f, op->tasks[3].id, op->tasks[3].lease_id, "{}"), 0);
    ackd_tq_op_free(op);
    ackd_tq_op_free(b);
    for (int i = 0; i < 3; i++)
        ackd_tq_op_free(enq[i]);
    /* a claim its query filled takes nothing more */
    g = gate_close(f);
    wc = start(claim_op(f, "q", 1, 30000, 0));
    wb = start(enqueue_op(f, "t1", "q", 1));
    gate_open(g);
    b = await(wb);
    op = await(wc);
    CHECK(op != NULL && b != NULL);
    if (op && b) {
        CHECK_INT(op->ntasks, 1);
        if (op->ntasks == 1)
            CHECK_STR(op->tasks[0].id, left);
        CHECK_INT(state_of(f, b->items[0].task.id), ACKD_TASK_QUEUED);
    }
    ackd_tq_op_free(op);
    ackd_tq_op_free(b);
}

/* ... but not once a later op of the batch made an older task due again */
TQ_TEST(tq_claim_with_room_leaves_new_tasks_behind_an_older_due_one)
{
    char old[ACKD_ID_MAX];
    CHECK_INT(canceled_task(f, 0, old), 0);
    char a[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", a), 0);
    waiter_t *g = gate_close(f);
    waiter_t *wc = start(claim_op(f, "q", 4, 30000, 0)); /* takes a, with room left */
    waiter_t *wr = start(task_op(f, ACKD_TQ_RETRY, old, NULL)); /* canceled -> queued, due now */
    waiter_t *we = start(enqueue_op(f, "t1", "q", 1));
    gate_open(g);
    ackd_tq_op_t *r = await(wr), *enq = await(we), *op = await(wc);
    CHECK(r != NULL && enq != NULL && op != NULL);
    if (r && enq && op) {
        CHECK_INT(r->status, 0);
        CHECK_INT(op->ntasks, 1);
        if (op->ntasks == 1)
            CHECK_STR(op->tasks[0].id, a);
        CHECK_INT(state_of(f, old), ACKD_TASK_QUEUED);
        CHECK_INT(state_of(f, enq->items[0].task.id), ACKD_TASK_QUEUED);
    }
    ackd_tq_op_free(r);
    ackd_tq_op_free(enq);
    ackd_tq_op_free(op);
}

TQ_TEST(tq_waiting_claim_takes_an_older_due_task_before_a_new_one)
{
    /* the redriven task comes first by the claim's order (priority, then
     * due time): with equal priorities the new task, due since it was made
     * on this thread, may be a millisecond earlier than the redrive's batch */
    char old[ACKD_ID_MAX];
    CHECK_INT(canceled_task(f, 5, old), 0);
    waiter_t *wc = start(claim_op(f, "q", 1, 30000, 10000));
    CHECK_INT(barrier(f), ACKD_ENOENT);
    waiter_t *g = gate_close(f);
    waiter_t *wr = start(task_op(f, ACKD_TQ_RETRY, old, NULL)); /* canceled -> queued, due now */
    waiter_t *we = start(enqueue_op(f, "t1", "q", 1));
    gate_open(g);
    ackd_tq_op_t *r = await(wr), *enq = await(we);
    CHECK(r != NULL && enq != NULL);
    CHECK_INT(r->status, 0);
    CHECK_INT(enq->status, 0);
    ackd_tq_op_t *op = await(wc);
    CHECK(op != NULL);
    CHECK_INT(op->ntasks, 1);
    if (op->ntasks == 1)
        CHECK_STR(op->tasks[0].id, old);
    CHECK_INT(state_of(f, enq->items[0].task.id), ACKD_TASK_QUEUED);
    ackd_tq_op_free(op);
    ackd_tq_op_free(r);
    ackd_tq_op_free(enq);
}

TQ_TEST(tq_claim_wait_runs_out_empty)
{
    int64_t t0 = ackd_mono_us();
    waiter_t *w = start(claim_op(f, "q", 1, 30000, 150));
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(w, &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 0);
    CHECK(op->waited_out);
    CHECK(done_us - t0 >= 140 * 1000);
    CHECK(done_us - t0 < 2000 * 1000);
    ackd_tq_op_free(op);
    /* a task enqueued later is still there for the next claim */
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_STR(cid, id);
}

TQ_TEST(tq_claim_woken_when_delayed_task_becomes_due)
{
    ackd_tq_op_t *enq = enqueue_op(f, "t1", "q", 1);
    enq->items[0].task.due_at = ackd_now_ms() + 200;
    CHECK((enq = run(enq)) != NULL);
    CHECK_INT(enq->status, 0);
    int64_t t0 = ackd_mono_us();
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(start(claim_op(f, "q", 1, 30000, 3000)), &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, enq->items[0].task.id);
    CHECK(done_us - t0 >= 150 * 1000);  /* not before it was due */
    CHECK(done_us - t0 < 1500 * 1000);  /* and not at the end of the wait */
    ackd_tq_op_free(op);
    ackd_tq_op_free(enq);
}

static int abandoned_cb_runs;

static void on_abandoned(ackd_tq_op_t *op)
{
    abandoned_cb_runs++;
    ackd_tq_op_free(op);
}

TQ_TEST(tq_claim_abandoned_while_parked)
{
    ackd_tq_op_t *claim = claim_op(f, "q", 1, 30000, 10000);
    claim->cb = on_abandoned; /* must never run: abandon takes the op back */
    abandoned_cb_runs = 0;
    ackd_tq_run(claim);
    CHECK_INT(barrier(f), ACKD_ENOENT);
    CHECK_INT(ackd_tq_abandon(claim), 1);
    /* the task goes to the next claimer, not the one that left */
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    CHECK_STR(cid, id);
    CHECK_INT(abandoned_cb_runs, 0);
}

/* --- long poll --- */

TQ_TEST(tq_get_wait_returns_on_completion)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    ackd_tq_op_t *g = task_op(f, ACKD_TQ_GET, id, NULL);
    g->wait_until = ackd_now_ms() + 10000;
    waiter_t *w = start(g);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1); /* not terminal: still waiting */
    int64_t t0 = ackd_mono_us();
    CHECK_INT(complete(f, id, lease, "{\"r\":1}"), 0);
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(w, &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->task.state, ACKD_TASK_COMPLETED);
    CHECK_STR(op->task.result, "{\"r\":1}");
    CHECK(!op->waited_out);
    CHECK(done_us - t0 < 1000 * 1000);
    ackd_tq_op_free(op);
}

/* --- answers before the commit (push calls with a route's client waiting) --- */

/* Whether w's callback ran within ms (the op stays in w for await). */
static bool answered_within(waiter_t *w, int ms)
{
    int64_t end = ackd_mono_us() + (int64_t)ms * 1000;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool done = w->op != NULL;
        pthread_mutex_unlock(&w->mu);
        if (done || ackd_mono_us() >= end)
            return done;
        sleep_ms(5);
    }
}

TQ_TEST(tq_early_answer_leaves_before_the_commit_and_reads_follow_it)
{
    /* a route's enqueue waiting on its task, and a plain long poll on it */
    ackd_tq_op_t *enq = enqueue_op(f, "t1", "q", 1);
    enq->load_task = true;
    enq->early_answer = true;
    enq->wait_until = ackd_now_ms() + 10000;
    char id[ACKD_ID_MAX];
    snprintf(id, sizeof id, "%s", enq->items[0].task.id);
    waiter_t *we = start(enq);
    ackd_tq_op_t *lp = task_op(f, ACKD_TQ_GET, id, NULL);
    lp->wait_until = ackd_now_ms() + 10000;
    waiter_t *wl = start(lp);
    ackd_tq_op_t *claim = run(claim_op(f, "q", 1, 30000, 0));
    CHECK(claim != NULL);
    CHECK_INT(claim->ntasks, 1);
    CHECK_INT(barrier(f), ACKD_ENOENT); /* both watches are back after the claim's wake */
    CHECK(ackd_tq_take_waiters(f->tq, "tsk_00000000000000000000000000") == NULL);

    waiter_t *g = gate_close(f); /* from here on nothing commits */
    ackd_tq_op_t *list = ackd_tq_take_waiters(f->tq, id);
    CHECK(list == enq);          /* the route's waiter only, not the long poll */
    CHECK(list->base.next == NULL);
    ackd_tq_op_t *rec = task_op(f, ACKD_TQ_COMPLETE, id, claim->tasks[0].lease_id);
    rec->result = ackd_strdup("{\"r\":1}");
    rec->record_early = true;
    waiter_t *wr = start(rec);
    ackd_tq_answer_waiters(list, &claim->tasks[0], ACKD_TASK_COMPLETED, "{\"r\":1}", NULL);
    ackd_tq_op_t *got = await(we); /* answered while the committer is held */
    CHECK(got != NULL);
    CHECK_INT(got->status, 0);
    CHECK_INT(got->task.state, ACKD_TASK_COMPLETED);
    CHECK_STR(got->task.result, "{\"r\":1}");
    CHECK_STR(got->task.queue, "q");
    /* a read of the task now follows the recording op: no answer before the
     * commit; the long poll reports committed states only */
    waiter_t *wg = start(task_op(f, ACKD_TQ_GET, id, NULL));
    CHECK(!answered_within(wg, 150));
    CHECK(!answered_within(wl, 0));
    gate_open(g);
    ackd_tq_op_t *r = await(wr);
    CHECK(r != NULL);
    CHECK_INT(r->status, 0);
    ackd_tq_op_t *read = await(wg);
    CHECK(read != NULL);
    CHECK_INT(read->task.state, ACKD_TASK_COMPLETED);
    CHECK_STR(read->task.result, "{\"r\":1}");
    ackd_tq_op_t *polled = await(wl);
    CHECK(polled != NULL);
    CHECK_INT(polled->task.state, ACKD_TASK_COMPLETED);
    ackd_tq_op_free(got);
    ackd_tq_op_free(r);
    ackd_tq_op_free(read);
    ackd_tq_op_free(polled);
    ackd_tq_op_free(claim);
}

TQ_TEST(tq_lazy_record_alone_still_commits)
{
    /* nothing else comes: the lazy op's wait for company ends by itself */
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    ackd_tq_op_t *rec = task_op(f, ACKD_TQ_COMPLETE, id, lease);
    rec->record_early = true;
    int64_t t0 = ackd_mono_us(), done_us = 0;
    ackd_tq_op_t *op = await_at(start(rec), &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    CHECK(done_us - t0 < 1000 * 1000);
    ackd_tq_op_free(op);
    CHECK_INT(state_of(f, id), ACKD_TASK_COMPLETED);
}

/* --- lease expiry --- */

TQ_TEST(tq_lease_expiry_requeues_then_fails)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 50, 0, cid, lease), 1);
    sleep_ms(200);
    ackd_tq_op_t *op = get(f, id);
    CHECK(op != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_QUEUED);
    CHECK_INT(op->task.attempts, 1);
    CHECK(op->task.lease_id[0] == '\0');
    CHECK(strstr(op->task.error, "lease expired") != NULL);
    CHECK_INT(op->nattempts, 1);
    CHECK_STR(op->attempts[0].outcome, "lease_expired");
    ackd_tq_op_free(op);
    /* the worker that lost its lease can no longer change the task */
    CHECK_INT(complete(f, id, lease, "{}"), ACKD_ECONFLICT);
    CHECK_INT(state_of(f, id), ACKD_TASK_QUEUED);

    /* the second (last) attempt expires too: failed */
    char lease2[ACKD_ID_MAX];
    CHECK_INT(claim1(f, "q", 50, 2000, cid, lease2), 1);
    CHECK_STR(cid, id);
    CHECK(strcmp(lease, lease2) != 0);
    sleep_ms(200);
    CHECK((op = get(f, id)) != NULL);
    CHECK_INT(op->task.state, ACKD_TASK_FAILED);
    CHECK_INT(op->task.attempts, 2);
    CHECK(op->task.finished_at > 0);
    CHECK(strstr(op->task.error, "lease expired") != NULL);
    CHECK_INT(op->nattempts, 2);
    CHECK_STR(op->attempts[1].outcome, "lease_expired");
    ackd_tq_op_free(op);
    CHECK_INT(complete(f, id, lease2, "{}"), ACKD_ECONFLICT);
}

TQ_TEST(tq_lease_expiry_wakes_waiting_claim)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "t1", "q", id), 0);
    CHECK_INT(claim1(f, "q", 100, 0, cid, lease), 1);
    /* the next worker waits; the task comes back to it when the lease runs out */
    int64_t t0 = ackd_mono_us();
    int64_t done_us = 0;
    ackd_tq_op_t *op = await_at(start(claim_op(f, "q", 1, 30000, 4000)), &done_us);
    CHECK(op != NULL);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, id);
    CHECK_INT(op->tasks[0].attempts, 2);
    CHECK(done_us - t0 < 2000 * 1000);
    ackd_tq_op_free(op);
}

/* --- tenants --- */

TQ_TEST(tq_tenant_filter_hides_other_tenants)
{
    char id[ACKD_ID_MAX], cid[ACKD_ID_MAX], lease[ACKD_ID_MAX];
    CHECK_INT(enqueue(f, "alice", "q", id), 0);
    ackd_tq_op_t *op = get_as(f, id, "bob");
    CHECK(op != NULL);
    CHECK_INT(op->status, ACKD_ENOENT);
    CHECK(op->task.payload == NULL); /* nothing of it leaks */
    ackd_tq_op_free(op);
    CHECK((op = get_as(f, id, "alice")) != NULL);
    CHECK_INT(op->status, 0);
    ackd_tq_op_free(op);
    op = task_op(f, ACKD_TQ_CANCEL, id, NULL);
    op->tenant = "bob";
    CHECK_INT(status_of(op), ACKD_ENOENT);
    CHECK_INT(state_of(f, id), ACKD_TASK_QUEUED);
    /* a worker limited to other queues cannot touch it either */
    CHECK_INT(claim1(f, "q", 30000, 0, cid, lease), 1);
    char *only_slow[] = {(char *)"slow", NULL};
    op = task_op(f, ACKD_TQ_COMPLETE, id, lease);
    op->allowed_queues = only_slow;
    CHECK_INT(status_of(op), ACKD_ENOENT);
    CHECK_INT(state_of(f, id), ACKD_TASK_PROCESSING);
    /* bob's listing does not show it */
    op = new_op(f, ACKD_TQ_LIST);
    op->filter.tenant = "bob";
    op->filter.limit = 10;
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 0);
    ackd_tq_op_free(op);
    op = new_op(f, ACKD_TQ_LIST);
    op->filter.tenant = "alice";
    op->filter.limit = 10;
    CHECK((op = run(op)) != NULL);
    CHECK_INT(op->ntasks, 1);
    CHECK_STR(op->tasks[0].id, id);
    ackd_tq_op_free(op);
}

TQ_TEST(tq_claim_max_beyond_the_batch_limit)
{
    /* the API caps max at 100; a caller that asks for more gets at most that
     * many, and nothing overruns */
    ackd_tq_op_t *op = run(enqueue_op(f, "t1", "q", 150));
    CHECK(op != NULL);
    CHECK_INT(op->status, 0);
    ackd_tq_op_free(op);
    CHECK((op = run(claim_op(f, "q", 1000, 30000, 0))) != NULL);
    CHECK_INT(op->status, 0);
    CHECK_INT(op->ntasks, 100);
    ackd_tq_op_free(op);
    CHECK((op = run(claim_op(f, "q", 1000, 30000, 0))) != NULL);
    CHECK_INT(op->ntasks, 50);
    ackd_tq_op_free(op);
    CHECK_INT(stats(f, "q").counts[ACKD_TASK_PROCESSING], 150);
}

/* --- webhook deliveries --- */

/* Claims the due deliveries with lease_ms; the first one's id into id and its
 * try number into tries. Returns how many were claimed, or -1. */
static int claim_delivery(fx_t *f, int64_t lease_ms, char *id, int *tries)
{
    ackd_tq_op_t *op = new_op(f, ACKD_TQ_DELIVERY_CLAIM);
    op->max = 8;
    op->lease_ms = lease_ms;
    if (!(op = run(op)) || op->status != 0) {
        ackd_tq_op_free(op);
        return -1;
    }
    int n = op->ndeliveries;
    if (n > 0) {
        snprintf(id, ACKD_ID_MAX, "%s", op->deliveries[0].id);
        *tries = op->deliveries[0].tries;
    }
    ackd_tq_op_free(op);
    return n;
}

static int record_try(fx_t *f, const char *id, int n, int status, int outcome)
{
    ackd_tq_op_t *op = task_op(f, ACKD_TQ_DELIVERY_RECORD, id, NULL);
    op->try_.n = n;
    op->try_.at = ackd_now_ms();
    op->try_.status = status;
    op->outcome = outcome;
    op->next_at = ackd_now_ms() + 60000;
    return status_of(op);
}

/* A try recorded late (the store had failed), after its delivery's lease
 * ran out and it was claimed again, keeps its own number and leaves the
 * state to the newer try. */
TQ_TEST(tq_a_late_delivery_record_leaves_the_state_to_the_newer_try)
{
    ackd_tq_op_t *op = enqueue_op(f, "t1", "q", 1);
    op->items[0].task.callback_url = ackd_strdup("http://hooks.example/h");
    op = run(op);
    CHECK(op && op->status == 0);
    char tid[ACKD_ID_MAX], lease[ACKD_ID_MAX], did[ACKD_ID_MAX], did2[ACKD_ID_MAX];
    snprintf(tid, sizeof tid, "%s", op->items[0].task.id);
    ackd_tq_op_free(op);
    CHECK_INT(claim1(f, "q", 30000, 0, tid, lease), 1);
    CHECK_INT(complete(f, tid, lease, "{\"ok\":true}"), 0);
    int tries = 0, tries2 = 0;
    CHECK_INT(claim_delivery(f, 1, did, &tries), 1);    /* a 1 ms lease */
    CHECK_INT(tries, 1);
    usleep(20000);
    CHECK_INT(claim_delivery(f, 30000, did2, &tries2), 1); /* claimed again: try 2 */
    CHECK_STR(did2, did);
    CHECK_INT(tries2, 2);
    /* try 1 delivered, recorded late: its row, but the delivery stays try 2's */
    CHECK_INT(record_try(f, did, 1, 200, ACKD_DELIVERY_DONE), 0);
    op = run(task_op(f, ACKD_TQ_DELIVERIES, tid, NULL));
    CHECK(op && op->status == 0 && op->ndeliveries == 1);
    CHECK_INT(op->deliveries[0].state, ACKD_DELIVERY_PENDING);
    CHECK_INT(op->ntries[0], 1);
    CHECK_INT(op->tries[0][0].n, 1);
    CHECK_INT(op->tries[0][0].status, 200);
    ackd_tq_op_free(op);
    /* try 2 ends it */
    CHECK_INT(record_try(f, did, 2, 200, ACKD_DELIVERY_DONE), 0);
    op = run(task_op(f, ACKD_TQ_DELIVERIES, tid, NULL));
    CHECK(op && op->status == 0);
    CHECK_INT(op->deliveries[0].state, ACKD_DELIVERY_DELIVERED);
    CHECK_INT(op->ntries[0], 2);
    CHECK_INT(op->tries[0][1].n, 2);
    ackd_tq_op_free(op);
}
