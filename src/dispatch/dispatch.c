/* dispatch.c - the push executor: claims, limits, libcurl on libuv.
 *
 * It runs on the HTTP server's loop (see dispatch.h for why). Its parts:
 *   inbox   claims answered by the store (on_inbox, woken by uv_async_send)
 *   curl    transfers run in http/client.c on this loop
 *   done    finished transfers become complete/fail operations (call_done)
 *   rate    a queue out of tokens waits for the next one (on_claim_timer)
 *   store failures  a claim the store could not commit (a full disk) is
 *           made again after a backoff (on_claim_timer); an outcome it could
 *           not record is recorded again (queue/redo.h), so a call that
 *           was made is not made again for want of its record
 * Everything here but on_claimed and on_result_recorded (store threads)
 * runs on the loop's thread. */
#include "dispatch/dispatch.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "dispatch/upstream.h"
#include "http/client.h"
#include "queue/redo.h"
#include "queue/retry.h"

#define MAX_CLAIM 100
#define MAX_INFLIGHT_UNLIMITED 10000 /* "unlimited" still bounds memory */
#define CLAIM_WAIT_MS 30000
/* Claims a queue keeps in the store: while one is answered and its calls
 * start, the other waits there, and the store hands it each task as the task
 * is written (one row write, not an insert, then a select and an update by
 * the next claim). A rate-limited queue keeps one: its tokens are counted
 * when a claim is made. */
#define CLAIMS_OUT 2
#define LEASE_MARGIN_MS 10000
#define EASY_POOL 64 /* finished easy handles kept for the next calls */
/* Waits after the store failed a claim or an outcome's record: doubled
 * per failure up to the max; back to none once a claim succeeds (claims) or
 * the store writes again (records). */

typedef struct qstate {
    struct ackd_dispatch *d;
    const ackd_queue_conf_t *conf;
    int inflight;
    int claiming;                 /* claims in the store, up to CLAIMS_OUT */
    int claim_room;               /* how many tasks they may bring */
    ackd_tq_op_t *claim[2];       /* those claims, to take back at stop */
    double tokens;                /* rate: calls that may start now */
    uint64_t refilled_ms;
    uint64_t claim_after;         /* uv_now: no claim before (the store failed one) */
    int64_t claim_backoff_ms;     /* 0, or the wait after the last failed claim */
    uv_timer_t claim_timer;       /* claims again: tokens came, or the backoff ended */
} qstate_t;

struct ackd_dispatch {
    const ackd_config_t *cfg;
    ackd_tq_t *tq;
    uv_loop_t *loop;              /* the HTTP server's */
    uv_async_t async;
    uv_timer_t grace_timer;
    ackd_http_client_t *client;
    qstate_t *queues;
    int nqueues;
    int inflight;
    /* the inbox, shared with store threads */
    pthread_mutex_t lock;
    ackd_tq_op_t **inbox;
    int ninbox, capinbox;
    bool closed;                  /* under lock: stopped, the inbox takes nothing */
    int64_t grace_ms;
    void (*calls_over)(void *);   /* at stop: no call runs any more */
    void *calls_over_data;
    bool stopping;                /* loop thread: no new claims */
    bool closing;                 /* loop thread: handles are closing */
    ackd_call_t *calls;           /* in flight */
    ackd_tq_redo_t unrecorded;   /* outcomes the store failed to record: recorded again */
    CURL *easy_pool[EASY_POOL];   /* reset handles: curl_easy_init is not free */
    int neasy;
};

static void maybe_claim(qstate_t *q);
static void begin_stop(struct ackd_dispatch *d);
static void on_grace_over(uv_timer_t *t);

/* --- finishing a call --- */

static void post_inbox(struct ackd_dispatch *d, ackd_tq_op_t *op);

/* Store thread: the complete or fail op of a call is done. One the store
 * failed goes back to the loop to be recorded again (on_inbox). */
static void on_result_recorded(ackd_tq_op_t *op)
{
    struct ackd_dispatch *d = op->data;
    if (ackd_tq_store_failed(op)) {
        post_inbox(d, op);
        return;
    }
    if (op->status)
        ACKD_LOG(ACKD_LOG_WARN, "upstream outcome not recorded", LOG_TASK_AS(op->id, &op->task),
                 LOG_STR("detail", op->detail));
    else if (op->kind == ACKD_TQ_FAIL && !op->replayed)
        ackd_tq_log_attempt_end(op, ACKD_LOG_INFO, "upstream attempt ended");
    ackd_tq_op_free(op);
}

/* early: route clients get this outcome before its commit (see
 * ackd_tq_take_waiters) */
static void record(struct ackd_dispatch *d, ackd_call_t *call, ackd_outcome_t *o, bool early)
{
    ackd_tq_op_t *op = ackd_tq_op_new(d->tq, o->kind, on_result_recorded, d);
    op->record_early = early;
    memcpy(op->id, call->task.id, ACKD_ID_MAX);
    memcpy(op->lease_id, call->task.lease_id, ACKD_ID_MAX);
    op->result = o->result;
    op->error = o->error;
    op->retry = o->retry;
    op->retry_after_ms = o->retry_after_ms;
    o->result = o->error = NULL; /* the op owns them now */
    ackd_tq_run(op);
}

static void call_done(CURL *easy, CURLcode rc, void *data)
{
    (void)easy;
    ackd_call_t *call = data;
    qstate_t *q = call->owner;
    struct ackd_dispatch *d = q->d;
    ackd_outcome_t o;
    ackd_call_outcome(call, rc, &o);
    ACKD_LOG(o.kind == ACKD_TQ_COMPLETE ? ACKD_LOG_INFO : ACKD_LOG_WARN, "upstream call",
             LOG_TASK(&call->task), LOG_INT("attempt", call->task.attempts),
             LOG_INT("status", o.http_status),
             LOG_STR("error", rc != CURLE_OK ? curl_easy_strerror(rc) : NULL),
             LOG_STR("outcome", o.kind == ACKD_TQ_COMPLETE ? "completed"
                                : o.retry                 ? "retryable"
                                                          : "final"),
             LOG_DBL("duration_ms", (double)(ackd_mono_us() - call->started_us) / 1000.0));
    /* An outcome that ends the task reaches a route's waiting client now,
     * while the op recording it goes to the commit (ackd_tq_take_waiters).
     * A retry stays invisible; a call that outlived its lease lost the task. */
    bool ends = o.kind == ACKD_TQ_COMPLETE || !o.retry;
    ackd_tq_op_t *waiters = NULL;
    if (ends && call->task.lease_expires_at > ackd_now_ms())
        waiters = ackd_tq_take_waiters(d->tq, call->task.id);
    if (waiters) {
        int state = o.kind == ACKD_TQ_COMPLETE    ? ACKD_TASK_COMPLETED
                    : call->task.cancel_requested ? ACKD_TASK_CANCELED
                                                  : ACKD_TASK_FAILED;
        char *result = o.result ? ackd_strdup(o.result) : NULL;
        char *error = o.error ? ackd_strdup(o.error) : NULL;
        record(d, call, &o, true);
        ackd_tq_answer_waiters(waiters, &call->task, state, result, error);
        ackd_free(result);
        ackd_free(error);
    } else {
        record(d, call, &o, false);
    }
    ackd_free(o.result);
    ackd_free(o.error);
    if (call->prev)
        call->prev->next = call->next;
    else
        d->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (call->easy && d->neasy < EASY_POOL) {
        curl_easy_reset(call->easy);
        d->easy_pool[d->neasy++] = call->easy;
        call->easy = NULL;
    }
    ackd_call_free(call);
    q->inflight--;
    d->inflight--;
    if (d->stopping) {
        /* not begin_stop() here: it frees the HTTP client, whose loop is
         * still running this callback; the grace timer calls it at once */
        if (d->inflight == 0)
            uv_timer_start(&d->grace_timer, on_grace_over, 0, 0);
        return;
    }
    maybe_claim(q);
}

/* An outcome the store failed to record: the same op again, the outcome
 * moved to it (the waiters, if any, had theirs; reads follow the store). */
static void record_again(void *owner, ackd_tq_op_t *old)
{
    struct ackd_dispatch *d = owner;
    ackd_tq_op_t *op = ackd_tq_op_new(d->tq, old->kind, on_result_recorded, d);
    memcpy(op->id, old->id, ACKD_ID_MAX);
    memcpy(op->lease_id, old->lease_id, ACKD_ID_MAX);
    op->result = old->result;
    op->error = old->error;
    op->retry = old->retry;
    op->retry_after_ms = old->retry_after_ms;
    old->result = old->error = NULL;
    ackd_tq_op_free(old);
    ackd_tq_run(op);
}

/* Loop thread: the store failed to record an outcome. */
static void unrecorded_add(struct ackd_dispatch *d, ackd_tq_op_t *op)
{
    if (d->stopping) {
        ACKD_LOG(ACKD_LOG_WARN, "upstream outcome not recorded at shutdown: the task runs again "
                 "when its lease expires", LOG_TASK_AS(op->id, &op->task),
                 LOG_STR("detail", op->detail));
        ackd_tq_op_free(op);
        return;
    }
    bool first = false;
    int64_t wait = ackd_tq_redo_add(&d->unrecorded, op, &first);
    if (wait)
        ACKD_LOG(first ? ACKD_LOG_WARN : ACKD_LOG_DEBUG,
                 "upstream outcome not recorded: the store failed; recording it again",
                 LOG_TASK_AS(op->id, &op->task), LOG_STR("detail", op->detail),
                 LOG_INT("retry_in_ms", wait));
}

/* --- starting calls --- */

static void start_call(qstate_t *q, ackd_task_t *task)
{
    struct ackd_dispatch *d = q->d;
    ackd_call_t *call = ACKD_NEW(ackd_call_t);
    call->task = *task; /* moved: the claim op no longer owns its strings */
    memset(task, 0, sizeof *task);
    call->conf = q->conf;
    call->owner = q;
    call->started_us = ackd_mono_us();
    /* a long call may report progress back to us, for this attempt only */
    const ackd_server_conf_t *srv = &d->cfg->server;
    const char *host = srv->listen_host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "127.0.0.1";
    snprintf(call->progress_url, sizeof call->progress_url, "http://%s%s%s:%d/v1/tasks/%s/progress",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", srv->listen_port,
             call->task.id);
    ackd_tq_progress_token(d->tq, call->task.id, call->task.lease_id, call->progress_token);
    const char *why = NULL;
    if (d->neasy > 0)
        call->easy = d->easy_pool[--d->neasy];
    if (ackd_call_prepare(call, &why) != 0) {
        ACKD_LOG(ACKD_LOG_ERROR, "task cannot be sent upstream", LOG_TASK(&call->task),
                 LOG_STR("detail", why));
        ackd_outcome_t o = {.kind = ACKD_TQ_FAIL, .retry = false};
        json_t *err = json_pack("{s:s, s:n}", "message", why, "status");
        char *text = json_dumps(err, JSON_COMPACT);
        o.error = ackd_strdup(text);
        free(text);
        json_decref(err);
        record(d, call, &o, false);
        ackd_free(o.error);
        ackd_call_free(call);
        return;
    }
    q->inflight++;
    d->inflight++;
    call->next = d->calls;
    if (d->calls)
        d->calls->prev = call;
    d->calls = call;
    ackd_http_client_start(d->client, call->easy, call_done, call);
}

static void on_claim_timer(uv_timer_t *t)
{
    maybe_claim(t->data);
}

/* Tokens for the rate limit: refilled continuously, at most one second's
 * worth. Refilled up to now before any are spent, so that the time a claim
 * sat parked is not counted again after it took its tasks. */
static void rate_refill(qstate_t *q)
{
    double rate = q->conf->rate;
    uint64_t now = uv_now(q->d->loop);
    double burst = rate < 1 ? 1 : rate;
    q->tokens += (double)(now - q->refilled_ms) * rate / 1000.0;
    if (q->tokens > burst)
        q->tokens = burst;
    q->refilled_ms = now;
}

static int rate_allows(qstate_t *q)
{
    double rate = q->conf->rate;
    if (rate <= 0)
        return MAX_CLAIM;
    rate_refill(q);
    if (q->tokens >= 1)
        return (int)q->tokens;
    uint64_t wait = (uint64_t)((1.0 - q->tokens) * 1000.0 / rate) + 1;
    uv_timer_start(&q->claim_timer, on_claim_timer, wait, 0);
    return 0;
}

static void on_claimed(ackd_tq_op_t *op);

static void maybe_claim(qstate_t *q)
{
    struct ackd_dispatch *d = q->d;
    int most = q->conf->rate > 0 ? 1 : CLAIMS_OUT;
    if (q->claim_after && uv_now(d->loop) < q->claim_after)
        return; /* the claim timer claims again */
    while (!d->stopping && q->claiming < most) {
        int limit = q->conf->concurrency > 0 ? q->conf->concurrency : MAX_INFLIGHT_UNLIMITED;
        int slots = limit - q->inflight - q->claim_room;
        if (slots <= 0)
            return; /* a finishing call claims again */
        int tokens = rate_allows(q);
        if (tokens <= 0)
            return; /* the rate timer claims again */
        int n = slots < tokens ? slots : tokens;
        if (n > MAX_CLAIM)
            n = MAX_CLAIM;
        ackd_tq_op_t *op = ackd_tq_op_new(d->tq, ACKD_TQ_CLAIM, on_claimed, q);
        op->queue = ackd_strdup(q->conf->name);
        op->max = n;
        op->lease_ms = q->conf->connect_timeout_ms + q->conf->attempt_timeout_ms + LEASE_MARGIN_MS;
        op->wait_until = ackd_now_ms() + CLAIM_WAIT_MS;
        q->claim[q->claiming++] = op;
        q->claim_room += n;
        ackd_tq_run(op);
    }
}

/* A claim of q for `max` tasks is back: answered, or taken back at stop (and
 * freed: only its address is compared). */
static void claim_back(qstate_t *q, const ackd_tq_op_t *op, int max)
{
    for (int k = 0; k < q->claiming; k++) {
        if (q->claim[k] == op) {
            q->claim[k] = q->claim[--q->claiming];
            q->claim[q->claiming] = NULL;
            q->claim_room -= max;
            return;
        }
    }
}

/* --- the inbox --- */

/* Store thread: a claim finished. */
static void on_claimed(ackd_tq_op_t *op)
{
    qstate_t *q = op->data;
    post_inbox(q->d, op);
}

/* Store thread: a claim, or an outcome to record again, for the loop. */
static void post_inbox(struct ackd_dispatch *d, ackd_tq_op_t *op)
{
    pthread_mutex_lock(&d->lock);
    if (d->closed) {
        pthread_mutex_unlock(&d->lock);
        ackd_tq_op_free(op); /* leased tasks come back when their leases expire */
        return;
    }
    if (d->ninbox == d->capinbox) {
        d->capinbox = d->capinbox ? d->capinbox * 2 : 16;
        d->inbox = ackd_realloc(d->inbox, (size_t)d->capinbox * sizeof *d->inbox);
    }
    d->inbox[d->ninbox++] = op;
    uv_async_send(&d->async); /* under the lock, as the webhook sender's (sender.c) */
    pthread_mutex_unlock(&d->lock);
}

/* A claim the store failed: the queue claims again after a backoff. */
static void claim_failed(qstate_t *q, const ackd_tq_op_t *op)
{
    int64_t b = q->claim_backoff_ms;
    q->claim_backoff_ms =
        ackd_backoff_next_ms(b, ACKD_STORE_RETRY_MIN_MS, ACKD_STORE_RETRY_MAX_MS);
    q->claim_after = uv_now(q->d->loop) + (uint64_t)q->claim_backoff_ms;
    if (b == 0)
        ACKD_LOG(ACKD_LOG_WARN, "claims fail: the store failed; claiming again after a backoff",
                 LOG_STR("queue", q->conf->name), LOG_STR("detail", op->detail));
    uv_timer_start(&q->claim_timer, on_claim_timer, (uint64_t)q->claim_backoff_ms, 0);
}

static void claim_works(qstate_t *q)
{
    ACKD_LOG(ACKD_LOG_INFO, "claims work again", LOG_STR("queue", q->conf->name));
    q->claim_backoff_ms = 0;
    q->claim_after = 0;
}

static void on_inbox(uv_async_t *a)
{
    struct ackd_dispatch *d = a->data;
    pthread_mutex_lock(&d->lock);
    ackd_tq_op_t **ops = d->inbox;
    int n = d->ninbox;
    d->inbox = NULL;
    d->ninbox = d->capinbox = 0;
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n; i++) {
        ackd_tq_op_t *op = ops[i];
        if (op->kind != ACKD_TQ_CLAIM) {
            unrecorded_add(d, op);
            continue;
        }
        qstate_t *q = op->data;
        claim_back(q, op, op->max);
        if (ackd_tq_store_failed(op))
            claim_failed(q, op);
        else if (q->claim_backoff_ms)
            claim_works(q);
        if (op->status == 0) {
            if (q->conf->rate > 0)
                rate_refill(q);
            for (int k = 0; k < op->ntasks; k++) {
                if (q->conf->rate > 0)
                    q->tokens -= 1;
                start_call(q, &op->tasks[k]);
            }
        }
        ackd_tq_op_free(op);
        maybe_claim(q);
    }
    ackd_free(ops);
}

/* --- stopping --- */

static void on_grace_over(uv_timer_t *t)
{
    begin_stop(t->data);
}

/* Calls still running are abandoned (their leases expire and the tasks run
 * again); then the dispatcher's handles are closed: it keeps the loop
 * running no longer. */
static void begin_stop(struct ackd_dispatch *d)
{
    if (d->closing)
        return;
    d->closing = true;
    ackd_http_client_free(d->client); /* abandons the calls still running */
    d->client = NULL;
    for (ackd_call_t *c = d->calls; c;) {
        ackd_call_t *next = c->next;
        ACKD_LOG(ACKD_LOG_WARN, "upstream call abandoned at shutdown", LOG_TASK(&c->task));
        ackd_call_free(c);
        c = next;
    }
    d->calls = NULL;
    while (d->neasy > 0)
        curl_easy_cleanup(d->easy_pool[--d->neasy]);
    if (d->calls_over)
        d->calls_over(d->calls_over_data);
    pthread_mutex_lock(&d->lock);
    d->closed = true; /* store threads free their claims themselves from now on */
    ackd_tq_op_t **ops = d->inbox;
    int n = d->ninbox;
    d->inbox = NULL;
    d->ninbox = d->capinbox = 0;
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n; i++)
        ackd_tq_op_free(ops[i]);
    ackd_free(ops);
    ops = ackd_tq_redo_take(&d->unrecorded, &n);
    for (int i = 0; i < n; i++) {
        ACKD_LOG(ACKD_LOG_WARN, "upstream outcome not recorded at shutdown: the task runs again "
                 "when its lease expires", LOG_TASK_AS(ops[i]->id, &ops[i]->task));
        ackd_tq_op_free(ops[i]);
    }
    ackd_free(ops);
    uv_close((uv_handle_t *)&d->async, NULL);
    uv_close((uv_handle_t *)&d->grace_timer, NULL);
    uv_close((uv_handle_t *)&d->unrecorded.timer, NULL);
    for (int i = 0; i < d->nqueues; i++)
        uv_close((uv_handle_t *)&d->queues[i].claim_timer, NULL);
}

int ackd_dispatch_start(ackd_dispatch_t **out, const ackd_config_t *cfg, ackd_tq_t *tq,
                        uv_loop_t *loop)
{
    *out = NULL;
    int n = 0;
    for (size_t i = 0; i < cfg->nqueues; i++)
        n += cfg->queues[i].upstream != NULL;
    if (n == 0)
        return 0;
    struct ackd_dispatch *d = ACKD_NEW(struct ackd_dispatch);
    d->cfg = cfg;
    d->tq = tq;
    d->loop = loop;
    uv_async_init(loop, &d->async, on_inbox);
    d->async.data = d;
    uv_timer_init(loop, &d->grace_timer);
    d->grace_timer.data = d;
    ackd_tq_redo_init(&d->unrecorded, loop, tq, record_again, d);
    pthread_mutex_init(&d->lock, NULL);
    d->client = ackd_http_client_new(loop);
    d->queues = ackd_calloc((size_t)n, sizeof *d->queues);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        if (!cfg->queues[i].upstream)
            continue;
        qstate_t *q = &d->queues[d->nqueues++];
        q->d = d;
        q->conf = &cfg->queues[i];
        q->tokens = q->conf->rate > 0 ? (q->conf->rate < 1 ? 1 : q->conf->rate) : 0;
        uv_timer_init(loop, &q->claim_timer);
        q->claim_timer.data = q;
        q->refilled_ms = uv_now(loop);
    }
    for (int i = 0; i < d->nqueues; i++)
        maybe_claim(&d->queues[i]);
    ACKD_LOG(ACKD_LOG_INFO, "dispatcher started", LOG_INT("queues", d->nqueues));
    *out = d;
    return 0;
}

void ackd_dispatch_stop(ackd_dispatch_t *d, int64_t grace_ms, void (*calls_over)(void *),
                        void *data)
{
    if (!d) {
        if (calls_over)
            calls_over(data);
        return;
    }
    if (d->stopping)
        return;
    d->stopping = true;
    d->grace_ms = grace_ms;
    d->calls_over = calls_over;
    d->calls_over_data = data;
    for (int i = 0; i < d->nqueues; i++) {
        qstate_t *q = &d->queues[i];
        for (int k = q->claiming - 1; k >= 0; k--) {
            ackd_tq_op_t *op = q->claim[k];
            int max = op->max;
            if (ackd_tq_abandon(op)) /* freed */
                claim_back(q, op, max);
        }
    }
    if (d->inflight == 0)
        begin_stop(d);
    else
        uv_timer_start(&d->grace_timer, on_grace_over, (uint64_t)d->grace_ms, 0);
}

void ackd_dispatch_free(ackd_dispatch_t *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    ackd_free(d->queues);
    ackd_free(d);
}
