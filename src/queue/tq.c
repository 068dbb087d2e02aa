/* tq.c - the task state machine on the store's row primitives (see tq.h).
 *
 * Each apply_* runs inside the committer's batch transaction: it reads the
 * rows it needs, checks the transition is allowed (tenant, lease, state)
 * before writing anything, writes, and reports effects (a queue that got
 * work, a lease expiry, a task whose state changed) so the store can wake
 * claimers and watchers after the commit. */
#include "queue/tq.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/jscan.h"
#include "base/jw.h"
#include "base/log.h"
#include "queue/retry.h"
#include "queue/fingerprint.h"
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define EXPIRE_BATCH 256
#define PURGE_BATCH 500
#define MAX_CLAIM 100
#define PURGE_INTERVAL_MS 1000
#define EVENTS_PAGE 500 /* events read per run */
#define EARLY_BUCKETS 256

struct ackd_tq {
    ackd_store_t *store;
    const ackd_config_t *cfg;
    unsigned char token_key[32]; /* signs progress tokens; made at start-up */
    /* HMAC-SHA256 keyed with token_key, fetched and keyed once (a one-shot
     * HMAC() looks the algorithm up on every call: 2 % of the async route's
     * CPU); each token starts from a copy. Read-only after open: any thread. */
    EVP_MAC *mac;
    EVP_MAC_CTX *token_mac;
    /* tasks whose outcome was answered before its commit (early_*) */
    pthread_mutex_t early_lock;
    struct early_id *early[EARLY_BUCKETS];
    int nearly;                /* ids in it: a listing copies none when 0 */
};

const ackd_config_t *ackd_tq_config(const ackd_tq_t *tq)
{
    return tq->cfg;
}

int ackd_tq_store_health(ackd_tq_t *tq, int64_t *since)
{
    return ackd_store_health(tq->store, since);
}

bool ackd_tq_store_failed(const ackd_tq_op_t *op)
{
    return op->status == ACKD_EIO || op->status == ACKD_ENOSPC;
}

static const ackd_queue_conf_t *queue_conf(const ackd_tq_t *tq, const char *name)
{
    return ackd_config_queue(tq->cfg, name);
}

static int64_t default_lease_ms(const ackd_tq_t *tq, const ackd_task_t *t)
{
    if (t->timeout_ms > 0)
        return t->timeout_ms;
    const ackd_queue_conf_t *q = queue_conf(tq, t->queue);
    return q ? q->attempt_timeout_ms : 30000;
}

static int deny(ackd_tq_op_t *op, int status, const char *detail)
{
    op->status = status;
    op->detail = detail;
    return 0; /* not a store failure: the batch goes on */
}

/* Asks the store to wake the watchers of `key` after the commit: a task id,
 * or a queue's stream key (queue_key). */
static void note_changed(ackd_tq_op_t *op, const char *key)
{
    ackd_store_op_t *s = &op->base;
    if (s->nchanged_more && strcmp(s->changed_more[s->nchanged_more - 1], key) == 0)
        return;
    if (s->nchanged_more == op->cap_changed) {
        op->cap_changed = op->cap_changed ? op->cap_changed * 2 : 8;
        s->changed_more = ackd_realloc(s->changed_more, (size_t)op->cap_changed * ACKD_ID_MAX);
    }
    snprintf(s->changed_more[s->nchanged_more++], ACKD_ID_MAX, "%s", key);
}

/* The watch key of a queue's stream. Long names are cut: two queues sharing
 * a long prefix only wake each other's streams for nothing. */
static void queue_key(const char *queue, char out[ACKD_ID_MAX])
{
    snprintf(out, ACKD_ID_MAX, "q:%s", queue);
}

static bool queue_allowed(const ackd_tq_op_t *op, const char *queue)
{
    if (!op->allowed_queues)
        return true;
    for (char **q = op->allowed_queues; *q; q++)
        if (strcmp(*q, queue) == 0)
            return true;
    return false;
}

/* Loads op->id into op->task, hiding other tenants' tasks. */
static int load(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_task_clear(&op->task);
    int rc = b->task_get(c, op->id, &op->task);
    if (rc == ACKD_ENOENT ||
        (rc == 0 && ((op->tenant && strcmp(op->task.tenant, op->tenant) != 0) ||
                     !queue_allowed(op, op->task.queue)))) {
        ackd_task_clear(&op->task);
        deny(op, ACKD_ENOENT, "no such task");
        return 1;
    }
    return rc;
}

/* Fencing: the lease must be the task's current one and unexpired. */
static bool lease_holds(const ackd_tq_op_t *op, int64_t now)
{
    const ackd_task_t *t = &op->task;
    return t->state == ACKD_TASK_PROCESSING && strcmp(t->lease_id, op->lease_id) == 0 &&
           t->lease_expires_at > now;
}

static bool same_text(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A complete or fail whose lease does not hold. The same call again, from a
 * worker that did not get the first answer (a timeout, a dropped
 * connection), is answered as the first was and changes nothing: the
 * attempt that lease ran ended that way, with that result or error. Anything
 * else is the fencing 409. */
static int lease_lost(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    const ackd_task_t *t = &op->task;
    if (t->state == ACKD_TASK_PROCESSING && strcmp(t->lease_id, op->lease_id) == 0)
        return deny(op, ACKD_ECONFLICT, "the lease expired");
    ackd_attempt_t *a = NULL;
    int n = 0;
    int rc = b->attempt_list(c, t->id, &a, &n);
    if (rc)
        return rc;
    const char *detail = "the lease expired or was superseded";
    for (int i = n - 1; i >= 0; i--) {
        if (strcmp(a[i].lease_id, op->lease_id) != 0)
            continue;
        const char *o = a[i].outcome ? a[i].outcome : "";
        bool again = op->kind == ACKD_TQ_COMPLETE
                         ? strcmp(o, "completed") == 0 && t->state == ACKD_TASK_COMPLETED &&
                               same_text(t->result, op->result ? op->result : "null")
                         : (strcmp(o, "retry") == 0 || strcmp(o, "failed") == 0 ||
                            strcmp(o, "canceled") == 0) &&
                               same_text(a[i].error, op->error);
        if (again)
            op->replayed = true;
        else if (strcmp(o, "lease_expired") == 0)
            detail = "the lease expired";
        else
            detail = "this lease's attempt already ended otherwise";
        break;
    }
    for (int i = 0; i < n; i++)
        ackd_attempt_clear(&a[i]);
    ackd_free(a);
    return op->replayed ? 0 : deny(op, ACKD_ECONFLICT, detail);
}

static void wake_if_due(ackd_store_op_t *s, const ackd_task_t *t, int64_t now)
{
    if (t->due_at <= now)
        s->woke_queue = t->queue; /* points into the op's task, alive until done */
    else
        s->due_hint = t->due_at;
}

/* --- enqueue --- */

static int apply_get(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c);
static int watch_task(ackd_tq_op_t *op);
static int lease_to(ackd_tq_op_t *op, const ackd_tq_op_t *claimer, const ackd_store_backend_t *b,
                    ackd_store_conn_t *c, ackd_task_t *t);

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* An earlier item of the same batch under the same idempotency key. */
static const ackd_tq_item_t *earlier_twin(const ackd_tq_op_t *op, int i)
{
    const ackd_tq_item_t *it = &op->items[i];
    for (int j = 0; j < i; j++) {
        const ackd_tq_item_t *o = &op->items[j];
        if (o->idem_scope && strcmp(o->idem_scope, it->idem_scope) == 0 &&
            same_str(o->task.idem_key, it->task.idem_key) &&
            same_str(o->task.tenant, it->task.tenant))
            return o;
    }
    return NULL;
}

static int apply_enqueue(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    /* idempotency first, so a mismatch writes nothing; a key repeated inside
     * one batch is judged against its first use there, as if sent earlier */
    for (int i = 0; i < op->nitems; i++) {
        ackd_tq_item_t *it = &op->items[i];
        if (!it->idem_scope)
            continue;
        ackd_idem_t prev = {0};
        bool twin_is_new = false;
        int rc = b->idem_get(c, it->task.tenant, it->idem_scope, it->task.idem_key, &prev);
        if (rc && rc != ACKD_ENOENT)
            return rc;
        if (rc == ACKD_ENOENT || prev.expires_at <= s->now) {
            const ackd_tq_item_t *twin = earlier_twin(op, i);
            if (!twin)
                continue;
            memcpy(prev.fingerprint, twin->fingerprint, sizeof prev.fingerprint);
            snprintf(prev.task_id, sizeof prev.task_id, "%s", twin->task.id);
            twin_is_new = !twin->replayed;
        }
        if (strcmp(prev.fingerprint, it->fingerprint) != 0) {
            /* a twin that is new in this batch will not exist: name no task */
            snprintf(op->conflict_id, sizeof op->conflict_id, "%s",
                     twin_is_new ? "" : prev.task_id);
            char detail[256];
            snprintf(detail, sizeof detail,
                     "key '%.128s' was first used for another request (method, path or body "
                     "differ)",
                     it->task.idem_key);
            ackd_free(op->detail_owned);
            op->detail_owned = ackd_strdup(detail);
            return deny(op, ACKD_ECONFLICT, op->detail_owned);
        }
        it->replayed = true;
        snprintf(it->task.id, sizeof it->task.id, "%s", prev.task_id);
    }
    int64_t ttl = op->tq->cfg->server.idempotency_ttl_ms;
    for (int i = 0; i < op->nitems; i++) {
        ackd_tq_item_t *it = &op->items[i];
        if (it->replayed)
            continue;
        /* A claim waiting on the queue takes a lone new task as it is
         * written: one row written leased, instead of a queued row, the
         * claim's query and a second write. The tasks of a batch request
         * are queued, so a claim's query orders them by priority. */
        ackd_tq_op_t *claimer = NULL;
        if (op->nitems == 1 && it->task.due_at <= s->now)
            claimer = (ackd_tq_op_t *)ackd_store_take_parked(it->task.queue);
        int rc = claimer ? lease_to(op, claimer, b, c, &it->task) : 0;
        if (rc == 0)
            rc = b->task_insert(c, &it->task);
        if (rc == 0 && claimer) {
            claimer->tasks = ackd_realloc(claimer->tasks,
                                          (size_t)(claimer->ntasks + 1) * sizeof *claimer->tasks);
            ackd_task_copy(&claimer->tasks[claimer->ntasks++], &it->task);
        }
        if (rc == 0 && it->idem_scope) {
            ackd_idem_t idem = {.tenant = it->task.tenant, .scope = it->idem_scope,
                                .key = it->task.idem_key, .expires_at = s->now + ttl};
            memcpy(idem.fingerprint, it->fingerprint, sizeof idem.fingerprint);
            snprintf(idem.task_id, sizeof idem.task_id, "%s", it->task.id);
            rc = b->idem_insert(c, &idem);
        }
        if (rc)
            return rc;
        if (i == 0 || strcmp(it->task.queue, op->items[i - 1].task.queue) != 0) {
            char key[ACKD_ID_MAX];
            queue_key(it->task.queue, key);
            note_changed(op, key); /* its stream shows task.queued */
        }
        if (claimer) {
            /* taken: nothing became due */
        } else if (it->task.due_at <= s->now) {
            if (s->woke_queue && strcmp(s->woke_queue, it->task.queue) != 0)
                s->woke_all = true;
            s->woke_queue = it->task.queue;
        } else if (!s->due_hint || it->task.due_at < s->due_hint) {
            s->due_hint = it->task.due_at;
        }
        /* a queued task's deadline is on the expiry timer */
        if (!claimer && it->task.deadline_at &&
            (!s->expiry_hint || it->task.deadline_at < s->expiry_hint))
            s->expiry_hint = it->task.deadline_at;
    }
    if (op->load_task && op->nitems == 1) {
        /* from now on this op is a (long-polling) read of its task: a wake-up
         * of the watch re-runs the read, not the insert */
        memcpy(op->id, op->items[0].task.id, ACKD_ID_MAX);
        s->apply = apply_get;
        if (op->items[0].replayed)
            return apply_get(s, b, c);
        /* a new task is the row just written: no need to read it back
         * (a wait watches it; an answer at once takes the item's copy) */
        if (op->wait_until > s->now)
            return watch_task(op);
        ackd_task_t *t = &op->items[0].task;
        ackd_task_clear(&op->task);
        op->task = *t;
        memset(t, 0, sizeof *t);
        memcpy(t->id, op->id, ACKD_ID_MAX);
        return 0;
    }
    return 0;
}

/* --- events and webhooks --- */

void ackd_tq_write_progress(ackd_jw_t *w, const ackd_task_t *t)
{
    if (t->progress_pct < 0 && !t->progress_msg) {
        ackd_jw_null(w, "progress");
        return;
    }
    ackd_jw_open(w, "progress", '{');
    if (t->progress_pct >= 0)
        ackd_jw_int(w, "percent", t->progress_pct);
    else
        ackd_jw_null(w, "percent");
    ackd_jw_str(w, "message", t->progress_msg);
    ackd_jw_close(w);
}

/* An event's data, written as {"task_id": ..., then the caller's members}
 * (task_id first, as SPEC §6a shows); add_event closes and stores it. */
typedef struct {
    ackd_buf_t b;
    ackd_jw_t w;
} event_data_t;

static ackd_jw_t *event_data(event_data_t *e, const ackd_task_t *t, const char *status)
{
    ackd_jw_start(&e->w, &e->b, '{');
    ackd_jw_str(&e->w, "task_id", t->id);
    ackd_jw_str(&e->w, "status", status);
    return &e->w;
}

/* Appends an event to the task's history; the caller writes the task after
 * (event_seq is part of the row). Frees data's buffer. */
static int add_event(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                     ackd_task_t *t, const char *type, event_data_t *data)
{
    if (t->event_seq < 1)
        t->event_seq = 1;
    t->event_seq++;
    ackd_jw_close(&data->w);
    ackd_event_t e = {.seq = t->event_seq, .queue = t->queue, .type = (char *)type,
                      .at = op->base.now, .data = data->b.data};
    int rc = b->event_insert(c, t->id, &e);
    char key[ACKD_ID_MAX];
    queue_key(t->queue, key);
    note_changed(op, key);
    ackd_buf_free(&data->b);
    return rc;
}

static const char *terminal_event(int state)
{
    return state == ACKD_TASK_COMPLETED ? "task.completed"
           : state == ACKD_TASK_FAILED  ? "task.failed"
                                        : "task.canceled";
}

/* The obligation to deliver the outcome, in the transaction that ends the
 * task: a restart cannot lose it. */
static int add_delivery(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                        const ackd_task_t *t)
{
    ackd_store_op_t *s = &op->base;
    const char *type = terminal_event(t->state);
    ackd_buf_t text;
    ackd_jw_t w;
    ackd_jw_start(&w, &text, '{');
    ackd_jw_str(&w, "type", type);
    ackd_jw_str(&w, "task_id", t->id);
    ackd_jw_str(&w, "queue", t->queue);
    ackd_jw_str(&w, "status", ackd_task_state_name(t->state));
    ackd_jw_int(&w, "attempts", t->attempts);
    ackd_jw_raw(&w, "result", t->result);
    ackd_jw_raw(&w, "error", t->error);
    ackd_jw_str(&w, "correlation_id", t->correlation_id);
    ackd_jw_time(&w, "timestamp", s->now);
    ackd_jw_close(&w);
    ackd_delivery_t d = {.url = t->callback_url, .type = (char *)type, .body = text.data,
                         .tenant = t->tenant, .queue = t->queue, .traceparent = t->traceparent,
                         .state = ACKD_DELIVERY_PENDING,
                         .next_at = s->now, .created_at = s->now, .updated_at = s->now};
    ackd_id_new("msg_", d.id);
    memcpy(d.task_id, t->id, ACKD_ID_MAX);
    int rc = b->delivery_insert(c, &d);
    ackd_buf_free(&text);
    if (!s->woke_queue)
        s->woke_queue = ACKD_TQ_WEBHOOK_QUEUE;
    else if (strcmp(s->woke_queue, ACKD_TQ_WEBHOOK_QUEUE) != 0)
        s->woke_all = true;
    return rc;
}

/* --- claim --- */

/* Leases t to `claimer` and records its task.processing event; op is the
 * operation running (the claim itself, or an enqueue handing its new task
 * to a waiting claim). The caller writes the row. */
static int lease_to(ackd_tq_op_t *op, const ackd_tq_op_t *claimer, const ackd_store_backend_t *b,
                    ackd_store_conn_t *c, ackd_task_t *t)
{
    ackd_store_op_t *s = &op->base;
    int64_t lease = claimer->lease_ms > 0 ? claimer->lease_ms : default_lease_ms(op->tq, t);
    t->lease_ms = lease; /* heartbeats without a lease extend by the same length */
    t->state = ACKD_TASK_PROCESSING;
    t->attempts++;
    ackd_id_new("lse_", t->lease_id);
    t->lease_expires_at = s->now + lease;
    t->updated_at = s->now;
    t->attempt_started_at = s->now; /* its attempts row is written when it ends */
    event_data_t ev;
    ackd_jw_int(event_data(&ev, t, "processing"), "attempt", t->attempts);
    if (!s->expiry_hint || t->lease_expires_at < s->expiry_hint)
        s->expiry_hint = t->lease_expires_at;
    return add_event(op, b, c, t, "task.processing", &ev);
}

/* Leases t, a row task_claimable read, to the claimer. */
static int claim_one(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                     ackd_task_t *t)
{
    int rc = lease_to(op, op, b, c, t);
    return rc ? rc : b->task_update(c, t);
}

static int apply_claim(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    /* at most MAX_CLAIM (the API caps max at the same 100, other callers
     * may not) */
    int max = op->max < 1 ? 1 : op->max > MAX_CLAIM ? MAX_CLAIM : op->max;
    ackd_task_t rows[MAX_CLAIM]; /* on the committer's stack: a parked claim holds no array */
    int n = 0;
    int rc = b->task_claimable(c, op->queue, s->now, max, rows, &n);
    if (rc)
        return rc;
    if (n == 0) {
        if (op->wait_until > s->now) {
            s->park_queue = op->queue;
            s->park_until = op->wait_until;
            s->room = max; /* an enqueue may hand it its task: ackd_store_take_parked */
        }
        return 0;
    }
    /* the op owns the rows from here, whatever happens below */
    op->tasks = ackd_calloc((size_t)n, sizeof *op->tasks);
    memcpy(op->tasks, rows, (size_t)n * sizeof *rows);
    op->ntasks = n;
    for (int i = 0; i < n; i++) {
        rc = claim_one(op, b, c, &op->tasks[i]);
        if (rc)
            return rc;
        note_changed(op, op->tasks[i].id); /* their streams get task.processing */
    }
    if (n < max)
        ackd_store_offer(s, op->queue, max - n);
    return 0;
}

/* --- worker calls on a leased task --- */

/* Records a progress report: an event, the row, and a wake-up for streams. */
static int progress_changed(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_task_t *t = &op->task;
    if (op->progress_pct >= 0 || op->progress_msg) {
        event_data_t ev;
        ackd_tq_write_progress(event_data(&ev, t, "processing"), t);
        int rc = add_event(op, b, c, t, "task.progress", &ev);
        if (rc)
            return rc;
        memcpy(op->base.changed_id, t->id, ACKD_ID_MAX);
    }
    return b->task_update(c, t);
}

static int apply_heartbeat(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    if (!lease_holds(op, s->now))
        return deny(op, ACKD_ECONFLICT, "the lease expired or was superseded");
    ackd_task_t *t = &op->task;
    int64_t lease = op->lease_ms > 0   ? op->lease_ms
                    : t->lease_ms > 0 ? t->lease_ms
                                      : default_lease_ms(op->tq, t);
    t->lease_ms = lease;
    t->lease_expires_at = s->now + lease;
    t->updated_at = s->now;
    if (op->progress_pct >= 0)
        t->progress_pct = op->progress_pct;
    if (op->progress_msg) {
        ackd_free(t->progress_msg);
        t->progress_msg = ackd_strdup(op->progress_msg);
    }
    s->expiry_hint = t->lease_expires_at;
    return progress_changed(op, b, c);
}

/* Moves the task to `state`, with its event (and for an end, the webhook
 * obligation), then writes it. */
static int finish(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                  int state, const char *outcome)
{
    ackd_store_op_t *s = &op->base;
    ackd_task_t *t = &op->task;
    int was = t->state;
    /* the running attempt ends here: its one attempts row */
    ackd_attempt_t ended = {.n = t->attempts, .started_at = t->attempt_started_at,
                            .ended_at = s->now, .outcome = (char *)outcome, .error = op->error};
    memcpy(ended.lease_id, t->lease_id, sizeof ended.lease_id);
    bool attempt_ends = outcome && was == ACKD_TASK_PROCESSING && t->attempts > 0;
    t->state = state;
    t->lease_id[0] = '\0';
    t->lease_expires_at = 0;
    t->attempt_started_at = 0;
    t->updated_at = s->now;
    if (ACKD_TASK_TERMINAL(state))
        t->finished_at = s->now;
    memcpy(s->changed_id, t->id, ACKD_ID_MAX);
    int rc;
    if (ACKD_TASK_TERMINAL(state)) {
        event_data_t ev;
        ackd_jw_t *w = event_data(&ev, t, ackd_task_state_name(state));
        ackd_jw_int(w, "attempts", t->attempts);
        /* a result is stored once, on the task (up to max_result_size: it
         * was twice the WAL and the file); the readers put it back into
         * the event (event_results) */
        if (state != ACKD_TASK_COMPLETED)
            ackd_jw_raw(w, "error", t->error);
        rc = add_event(op, b, c, t, terminal_event(state), &ev);
        if (rc == 0 && t->callback_url)
            rc = add_delivery(op, b, c, t);
    } else if (was == ACKD_TASK_PROCESSING) {
        event_data_t ev;
        ackd_jw_t *w = event_data(&ev, t, "queued");
        ackd_jw_int(w, "attempt", t->attempts);
        ackd_jw_raw(w, "error", t->error);
        ackd_jw_time(w, "next_attempt_at", t->due_at);
        rc = add_event(op, b, c, t, "task.retrying", &ev);
    } else {
        event_data_t ev;
        event_data(&ev, t, "queued");
        rc = add_event(op, b, c, t, "task.queued", &ev);
    }
    if (rc)
        return rc;
    rc = b->task_update(c, t);
    if (rc == 0 && attempt_ends)
        rc = b->attempt_insert(c, t->id, &ended);
    return rc;
}

static int apply_complete(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    if (!lease_holds(op, s->now))
        return lease_lost(op, b, c);
    ackd_free(op->task.result);
    op->task.result = op->result ? ackd_strdup(op->result) : ackd_strdup("null");
    ackd_free(op->task.error);
    op->task.error = NULL;
    return finish(op, b, c, ACKD_TASK_COMPLETED, "completed");
}

/* Back to the queue after a backoff, or failed for good. */
static int retry_or_fail(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                         bool retry, const char *retry_outcome, const char *final_outcome)
{
    ackd_store_op_t *s = &op->base;
    ackd_task_t *t = &op->task;
    ackd_free(t->error);
    t->error = op->error ? ackd_strdup(op->error) : NULL;
    bool past_deadline = t->deadline_at && t->deadline_at <= s->now;
    if (retry && t->attempts < t->max_attempts && !past_deadline && !t->cancel_requested) {
        const ackd_queue_conf_t *q = queue_conf(op->tq, t->queue);
        int64_t base = q ? q->retry_base_ms : 1000, cap = q ? q->retry_cap_ms : 300000;
        t->due_at = s->now + ackd_backoff_ms(base, cap, t->attempts, ackd_jitter(),
                                             op->retry_after_ms);
        int rc = finish(op, b, c, ACKD_TASK_QUEUED, retry_outcome);
        wake_if_due(s, t, s->now);
        return rc;
    }
    return finish(op, b, c, t->cancel_requested ? ACKD_TASK_CANCELED : ACKD_TASK_FAILED,
                  final_outcome);
}

static int apply_fail(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    if (!lease_holds(op, s->now))
        return lease_lost(op, b, c);
    if (op->result) {
        ackd_free(op->task.result);
        op->task.result = ackd_strdup(op->result);
    }
    return retry_or_fail(op, b, c, op->retry, "retry", "failed");
}

/* --- client calls --- */

static int apply_cancel(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    ackd_task_t *t = &op->task;
    if (ACKD_TASK_TERMINAL(t->state))
        return deny(op, ACKD_ECONFLICT, "the task has already finished");
    if (t->state == ACKD_TASK_PROCESSING) {
        /* the worker learns it from its next heartbeat; a failure then ends it */
        t->cancel_requested = true;
        t->updated_at = s->now;
        return b->task_update(c, t);
    }
    return finish(op, b, c, ACKD_TASK_CANCELED, NULL);
}

static int apply_retry(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    ackd_task_t *t = &op->task;
    if (t->state != ACKD_TASK_FAILED && t->state != ACKD_TASK_CANCELED)
        return deny(op, ACKD_ECONFLICT, "only failed or canceled tasks can be retried");
    const ackd_queue_conf_t *q = queue_conf(op->tq, t->queue);
    /* a redriven task gets a fresh allowance of attempts, and of time */
    t->max_attempts = t->attempts + (q ? q->max_attempts : 1);
    if (q && q->deadline_ms) {
        t->deadline_at = s->now + q->deadline_ms;
        if (!s->expiry_hint || t->deadline_at < s->expiry_hint)
            s->expiry_hint = t->deadline_at;
    }
    t->due_at = s->now;
    t->finished_at = 0;
    t->cancel_requested = false;
    ackd_free(t->error);
    t->error = NULL;
    ackd_free(t->result);
    t->result = NULL;
    rc = finish(op, b, c, ACKD_TASK_QUEUED, NULL);
    wake_if_due(s, t, s->now);
    return rc;
}

/* The ended attempts are rows; the running one is the task's own. */
static void add_running_attempt(ackd_tq_op_t *op)
{
    const ackd_task_t *t = &op->task;
    if (t->state != ACKD_TASK_PROCESSING || t->attempts < 1)
        return;
    if (op->nattempts > 0 && op->attempts[op->nattempts - 1].n >= t->attempts)
        return;
    op->attempts = ackd_realloc(op->attempts, (size_t)(op->nattempts + 1) * sizeof *op->attempts);
    ackd_attempt_t *a = &op->attempts[op->nattempts++];
    memset(a, 0, sizeof *a);
    a->n = t->attempts;
    a->started_at = t->attempt_started_at;
    memcpy(a->lease_id, t->lease_id, sizeof a->lease_id);
}

/* Asks the store to watch op->id until op->wait_until. */
static int watch_task(ackd_tq_op_t *op)
{
    ackd_store_op_t *s = &op->base;
    s->watch = true;
    memcpy(s->watch_id, op->id, ACKD_ID_MAX);
    s->watch_until = op->wait_until;
    s->takeable = op->early_answer;
    ackd_task_clear(&op->task); /* a waiter holds no row: the wake reads it again */
    return 0;
}

/* A task.completed event's data does not store the result (finish): it is
 * put back here, from the task, as the last member. An event stored
 * before that was so has it already. */
static void event_results(ackd_event_t *evs, int n)
{
    for (int i = 0; i < n; i++) {
        ackd_event_t *e = &evs[i];
        if (!e->result || !e->data)
            continue;
        size_t len = strlen(e->data);
        ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
        int nm = ACKD_JSCAN_MAX_MEMBERS;
        bool has = false;
        if (ackd_jscan_object(e->data, len, m, &nm)) {
            for (int k = 0; k < nm; k++)
                has |= m[k].key_len == 6 && memcmp(m[k].key, "result", 6) == 0;
        } else {
            json_t *old = json_loads(e->data, 0, NULL);
            has = !old || json_object_get(old, "result") != NULL;
            json_decref(old);
        }
        if (has || len < 2 || e->data[len - 1] != '}')
            continue;
        ackd_buf_t b;
        ackd_buf_init(&b, 0);
        ackd_buf_append(&b, e->data, len - 1);
        ackd_buf_appendz(&b, len > 2 ? ",\"result\":" : "\"result\":");
        ackd_buf_appendz(&b, e->result);
        ackd_buf_appendc(&b, '}');
        ackd_free(e->data);
        e->data = ackd_buf_detach(&b, NULL);
    }
}

/* A read, which for a long poll asks the store to watch the task. */
static int apply_get(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    if (!ACKD_TASK_TERMINAL(op->task.state) && op->wait_until > s->now && !s->parked_expired)
        return watch_task(op);
    op->waited_out = s->parked_expired;
    if (!op->with_attempts)
        return 0;
    rc = b->attempt_list(c, op->id, &op->attempts, &op->nattempts);
    if (rc == 0)
        add_running_attempt(op);
    if (rc == 0) /* and its events (progress among them); 1, task.queued, is the row itself */
        rc = b->event_list(c, op->id, 1, EVENTS_PAGE, &op->events, &op->nevents);
    if (rc == 0)
        event_results(op->events, op->nevents);
    return rc;
}

static char (*early_snapshot(ackd_tq_t *tq, int *n))[ACKD_ID_MAX];

/* Whether the listing holds a task of `ids` that it shows unfinished. */
static bool lists_one_of(const ackd_tq_op_t *op, char (*ids)[ACKD_ID_MAX], int n)
{
    for (int i = 0; i < op->ntasks; i++) {
        if (ACKD_TASK_TERMINAL(op->tasks[i].state))
            continue;
        for (int k = 0; k < n; k++)
            if (strcmp(op->tasks[i].id, ids[k]) == 0)
                return true;
    }
    return false;
}

static int apply_list(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    for (int i = 0; i < op->ntasks; i++)
        ackd_task_clear(&op->tasks[i]);
    ackd_free(op->tasks);
    op->ntasks = 0;
    /* A reader's listing may show a task whose outcome a client already
     * has while the commit recording it runs. The ids answered that way
     * are taken before the read starts (one recorded during the read may
     * be read either way); if the listing holds one, done_user sends the
     * op to the committer, which lists again after that commit. */
    int nearly = 0;
    char(*early)[ACKD_ID_MAX] = op->list_pass == 0 ? early_snapshot(op->tq, &nearly) : NULL;
    op->tasks = ackd_calloc((size_t)op->filter.limit + 1, sizeof *op->tasks);
    int rc = b->task_list(c, &op->filter, op->tasks, &op->ntasks);
    if (rc == 0 && lists_one_of(op, early, nearly))
        op->list_pass = 1;
    ackd_free(early);
    return rc;
}

static int apply_stats(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    if (op->queue)
        return b->queue_stats(c, op->queue, op->tenant, &op->stats);
    const ackd_config_t *cfg = op->tq->cfg;
    op->all_stats = ackd_calloc(cfg->nqueues + 1, sizeof *op->all_stats);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        int rc = b->queue_stats(c, cfg->queues[i].name, op->tenant, &op->all_stats[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* --- events (SSE) and progress --- */

#define SSE_HEARTBEAT_MS 15000

/* Reads the events after op->after; keeps watching while the task runs.
 * Event 1 (task.queued) is the task's creation and is made up here. */
static int apply_events(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    for (int i = 0; i < op->nevents; i++)
        ackd_event_clear(&op->events[i]);
    ackd_free(op->events);
    op->events = NULL;
    op->nevents = 0;
    op->heartbeat = false;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    ackd_event_t *stored = NULL;
    int n = 0;
    rc = b->event_list(c, op->id, op->after > 1 ? op->after : 1, EVENTS_PAGE, &stored, &n);
    if (rc)
        return rc;
    event_results(stored, n);
    int first = op->after < 1;
    op->events = ackd_calloc((size_t)n + 1, sizeof *op->events);
    if (first) {
        event_data_t ev;
        ackd_jw_str(event_data(&ev, &op->task, "queued"), "queue", op->task.queue);
        ackd_jw_close(&ev.w);
        op->events[0] = (ackd_event_t){.seq = 1, .type = ackd_strdup("task.queued"),
                                       .at = op->task.created_at,
                                       .data = ackd_buf_detach(&ev.b, NULL)};
        op->nevents = 1;
    }
    for (int i = 0; i < n; i++)
        op->events[op->nevents++] = stored[i];
    ackd_free(stored);
    if (op->nevents)
        op->after = op->events[op->nevents - 1].seq;
    else if (s->parked_expired)
        op->heartbeat = true;
    bool done = ACKD_TASK_TERMINAL(op->task.state) && op->after >= op->task.event_seq;
    if (!done && op->wait_until > 0 && !op->stop) {
        s->watch = true;
        memcpy(s->watch_id, op->id, ACKD_ID_MAX);
        s->watch_until = s->now + SSE_HEARTBEAT_MS;
    }
    return 0;
}

/* A queue's live stream: new tasks (task.queued, from their time-ordered
 * ids) and the events of its tasks, after the cursors taken when it began. */
static int apply_queue_events(ackd_store_op_t *s, const ackd_store_backend_t *b,
                              ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    for (int i = 0; i < op->nevents; i++)
        ackd_event_clear(&op->events[i]);
    ackd_free(op->events);
    op->events = NULL;
    op->nevents = 0;
    op->heartbeat = false;
    int rc = 0;
    if (!op->cursor_set) {
        rc = b->queue_cursor(c, op->queue, &op->after_event, op->after_task);
        op->cursor_set = true;
    } else {
        char ids[EVENTS_PAGE][ACKD_ID_MAX];
        int64_t created[EVENTS_PAGE];
        int nt = 0, ne = 0;
        ackd_event_t *evs = NULL;
        rc = b->tasks_after(c, op->queue, op->after_task, EVENTS_PAGE, ids, created, &nt);
        if (rc == 0)
            rc = b->queue_events(c, op->queue, op->after_event, EVENTS_PAGE, &evs, &ne);
        if (rc == 0)
            event_results(evs, ne);
        op->events = ackd_calloc((size_t)(nt + ne) + 1, sizeof *op->events);
        for (int i = 0; i < nt; i++) {
            char data[160];
            /* bounded: ids (< ACKD_ID_MAX) and queue names (<= 64) fit; gcc
             * cannot tell a row of ids from the whole array without them */
            snprintf(data, sizeof data,
                     "{\"task_id\":\"%.39s\",\"status\":\"queued\",\"queue\":\"%.64s\"}",
                     ids[i], op->queue);
            ackd_event_t *e = &op->events[op->nevents++];
            memcpy(e->task_id, ids[i], ACKD_ID_MAX);
            e->seq = 1;
            e->type = ackd_strdup("task.queued");
            e->at = created[i];
            e->data = ackd_strdup(data);
        }
        if (nt)
            memcpy(op->after_task, ids[nt - 1], ACKD_ID_MAX);
        for (int i = 0; i < ne; i++)
            op->events[op->nevents++] = evs[i];
        if (ne)
            op->after_event = evs[ne - 1].id;
        ackd_free(evs);
        if (op->nevents == 0 && s->parked_expired)
            op->heartbeat = true;
    }
    if (!op->stop) {
        s->watch = true;
        queue_key(op->queue, s->watch_id);
        s->watch_until = s->now + SSE_HEARTBEAT_MS;
    }
    return rc;
}

void ackd_tq_progress_token(const ackd_tq_t *tq, const char *task_id, const char *lease_id,
                            char out[65])
{
    unsigned char md[32];
    size_t len = 0;
    char msg[2 * ACKD_ID_MAX + 2];
    int n = snprintf(msg, sizeof msg, "%s.%s", task_id, lease_id);
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(tq->token_mac);
    if (!c || !EVP_MAC_update(c, (const unsigned char *)msg, (size_t)n) ||
        !EVP_MAC_final(c, md, &len, sizeof md) || len != sizeof md) {
        ACKD_LOG(ACKD_LOG_ERROR, "HMAC-SHA256 failed");
        abort();
    }
    EVP_MAC_CTX_free(c);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * len] = '\0';
}

static int apply_progress(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    ackd_task_t *t = &op->task;
    char expected[65];
    ackd_tq_progress_token(op->tq, t->id, t->lease_id, expected);
    if (t->state != ACKD_TASK_PROCESSING || strlen(op->token) != 64 ||
        CRYPTO_memcmp(expected, op->token, 64) != 0)
        return deny(op, ACKD_ECONFLICT, "the progress token is not valid for the running attempt");
    if (op->progress_pct >= 0)
        t->progress_pct = op->progress_pct;
    if (op->progress_msg) {
        ackd_free(t->progress_msg);
        t->progress_msg = ackd_strdup(op->progress_msg);
    }
    t->updated_at = s->now;
    return progress_changed(op, b, c);
}

/* --- webhooks --- */

static int apply_deliveries(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    rc = b->delivery_list(c, op->id, &op->deliveries, &op->ndeliveries);
    if (rc || op->ndeliveries == 0)
        return rc;
    op->tries = ackd_calloc((size_t)op->ndeliveries, sizeof *op->tries);
    op->ntries = ackd_calloc((size_t)op->ndeliveries, sizeof *op->ntries);
    for (int i = 0; i < op->ndeliveries && rc == 0; i++)
        rc = b->delivery_try_list(c, op->deliveries[i].id, &op->tries[i], &op->ntries[i]);
    return rc;
}

static int apply_redeliver(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    int rc = load(op, b, c);
    if (rc)
        return rc > 0 ? 0 : rc;
    if (!ACKD_TASK_TERMINAL(op->task.state))
        return deny(op, ACKD_ECONFLICT, "the task has not finished: there is nothing to deliver");
    rc = b->delivery_list(c, op->id, &op->deliveries, &op->ndeliveries);
    if (rc)
        return rc;
    if (op->ndeliveries == 0) {
        if (!op->task.callback_url)
            return deny(op, ACKD_ECONFLICT, "the task has no callback URL");
        return add_delivery(op, b, c, &op->task);
    }
    /* the last message goes out again, with the same webhook-id */
    ackd_delivery_t *d = &op->deliveries[op->ndeliveries - 1];
    d->state = ACKD_DELIVERY_PENDING;
    d->next_at = s->now;
    d->updated_at = s->now;
    s->woke_queue = ACKD_TQ_WEBHOOK_QUEUE;
    return b->delivery_update(c, d);
}

#define MAX_DELIVERY_CLAIM 64

static int apply_delivery_claim(ackd_store_op_t *s, const ackd_store_backend_t *b,
                                ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    char ids[MAX_DELIVERY_CLAIM][ACKD_ID_MAX];
    int n = 0, max = op->max > 0 && op->max < MAX_DELIVERY_CLAIM ? op->max : MAX_DELIVERY_CLAIM;
    int rc = b->delivery_due(c, s->now, max, ids, &n);
    if (rc)
        return rc;
    if (n == 0) {
        if (op->wait_until > s->now) {
            s->park_queue = ACKD_TQ_WEBHOOK_QUEUE;
            s->park_until = op->wait_until;
        }
        return 0;
    }
    op->deliveries = ackd_calloc((size_t)n, sizeof *op->deliveries);
    for (int i = 0; i < n && rc == 0; i++) {
        ackd_delivery_t *d = &op->deliveries[op->ndeliveries++];
        rc = b->delivery_get(c, ids[i], d);
        if (rc)
            break;
        /* a lease: if ackd dies mid-try, the delivery is due again after it */
        d->tries++;
        d->next_at = s->now + op->lease_ms;
        d->updated_at = s->now;
        rc = b->delivery_update(c, d);
        if (!s->due_hint || d->next_at < s->due_hint)
            s->due_hint = d->next_at;
    }
    return rc;
}

static int apply_delivery_record(ackd_store_op_t *s, const ackd_store_backend_t *b,
                                 ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    ackd_delivery_t d = {0};
    int rc = b->delivery_get(c, op->id, &d);
    if (rc == ACKD_ENOENT)
        return deny(op, ACKD_ENOENT, "no such delivery"); /* purged meanwhile */
    if (rc)
        return rc;
    /* the try's number is the one it was claimed as: recorded late (the
     * store failed at first), its delivery may have been claimed again
     * since, and that newer try decides what comes next */
    if (op->try_.n <= 0)
        op->try_.n = d.tries;
    bool current = op->try_.n == d.tries && d.state == ACKD_DELIVERY_PENDING;
    rc = b->delivery_try_insert(c, d.id, &op->try_);
    if (rc == 0 && current) {
        d.updated_at = s->now;
        ackd_free(d.last_error);
        d.last_error = op->try_.error ? ackd_strdup(op->try_.error) : NULL;
        if (op->outcome == ACKD_DELIVERY_DONE) {
            d.state = ACKD_DELIVERY_DELIVERED;
            d.next_at = 0;
        } else if (op->outcome == ACKD_DELIVERY_GIVE_UP) {
            d.state = ACKD_DELIVERY_FAILED;
            d.next_at = 0;
        } else {
            d.state = ACKD_DELIVERY_PENDING;
            d.next_at = op->next_at;
            s->due_hint = op->next_at;
        }
        rc = b->delivery_update(c, &d);
    }
    ackd_delivery_clear(&d);
    return rc;
}

/* --- internal work: lease expiry and retention --- */

/* Queued tasks whose deadline passed fail without running: "per task
 * overall", as a processing one that fails after it is not retried. */
static int fail_overdue(ackd_tq_op_t *op, const ackd_store_backend_t *b, ackd_store_conn_t *c,
                        bool *more)
{
    ackd_store_op_t *s = &op->base;
    char ids[EXPIRE_BATCH][ACKD_ID_MAX];
    int n = 0;
    int rc = b->task_overdue(c, s->now, EXPIRE_BATCH, ids, &n);
    *more = n == EXPIRE_BATCH;
    for (int i = 0; i < n && rc == 0; i++) {
        memcpy(op->id, ids[i], ACKD_ID_MAX);
        ackd_task_clear(&op->task);
        rc = b->task_get(c, op->id, &op->task);
        if (rc)
            break;
        ackd_task_t *t = &op->task;
        const ackd_queue_conf_t *q = queue_conf(op->tq, t->queue);
        char msg[200];
        snprintf(msg, sizeof msg,
                 "{\"message\":\"the deadline passed before the task could run (queue %s: "
                 "deadline = %lld ms)\",\"status\":null}",
                 t->queue, (long long)(q ? q->deadline_ms : t->deadline_at - t->created_at));
        ackd_free(op->error);
        op->error = ackd_strdup(msg);
        ackd_free(t->error);
        t->error = ackd_strdup(msg);
        rc = finish(op, b, c, ACKD_TASK_FAILED, NULL);
        ACKD_LOG(ACKD_LOG_WARN, "deadline passed", LOG_TASK(t), LOG_STR("status", "failed"));
        note_changed(op, t->id);
    }
    return rc;
}

static int apply_expire(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    bool more_overdue = false;
    int rc = fail_overdue(op, b, c, &more_overdue);
    if (rc)
        return rc;
    if (more_overdue)
        s->expiry_hint = s->now; /* more to do: come back at once */
    char ids[EXPIRE_BATCH][ACKD_ID_MAX];
    int n = 0;
    rc = b->task_expired(c, s->now, EXPIRE_BATCH, ids, &n);
    if (rc || n == 0) {
        s->changed_id[0] = '\0';
        return rc;
    }
    ackd_free(op->error);
    op->error = ackd_strdup("{\"message\":\"lease expired\",\"status\":null}");
    for (int i = 0; i < n && rc == 0; i++) {
        memcpy(op->id, ids[i], ACKD_ID_MAX);
        ackd_task_clear(&op->task);
        rc = b->task_get(c, op->id, &op->task);
        if (rc == 0) {
            op->retry_after_ms = 0;
            rc = retry_or_fail(op, b, c, true, "lease_expired", "lease_expired");
            note_changed(op, op->task.id);
        }
        if (rc == 0)
            ackd_tq_log_attempt_end(op, ACKD_LOG_WARN, "lease expired");
    }
    s->changed_id[0] = '\0';
    s->woke_queue = NULL;
    s->woke_all = true;
    if (n == EXPIRE_BATCH)
        s->expiry_hint = s->now; /* more to do: come back at once */
    return rc;
}

static int apply_purge(ackd_store_op_t *s, const ackd_store_backend_t *b, ackd_store_conn_t *c)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    const ackd_config_t *cfg = op->tq->cfg;
    bool more = false;
    for (size_t i = 0; i < cfg->nqueues; i++) {
        int deleted = 0;
        int rc = b->purge(c, cfg->queues[i].name, s->now - cfg->queues[i].retention_ms,
                          PURGE_BATCH, &deleted);
        if (rc)
            return rc;
        more |= deleted == PURGE_BATCH;
    }
    int deleted = 0;
    int rc = b->idem_purge(c, s->now, PURGE_BATCH, &deleted);
    more |= deleted == PURGE_BATCH;
    op->retry = more;
    return rc;
}

static void done_internal(ackd_store_op_t *s)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    if (op->kind == ACKD_TQ_STATS && op->retry && op->base.rc == 0) {
        /* purge found a full batch: another small batch, in its own commit */
        ackd_tq_op_t *again = ackd_tq_op_new(op->tq, ACKD_TQ_STATS, NULL, NULL);
        again->base.apply = apply_purge;
        again->base.done = done_internal;
        ackd_store_submit(op->tq->store, &again->base);
    }
    ackd_tq_op_free(op);
}

static ackd_store_op_t *make_expire_op(void *data)
{
    ackd_tq_op_t *op = ackd_tq_op_new(data, ACKD_TQ_FAIL, NULL, NULL);
    op->base.apply = apply_expire;
    op->base.done = done_internal;
    return &op->base;
}

static ackd_store_op_t *make_purge_op(void *data)
{
    /* kind STATS marks an internal purge for done_internal */
    ackd_tq_op_t *op = ackd_tq_op_new(data, ACKD_TQ_STATS, NULL, NULL);
    op->base.apply = apply_purge;
    op->base.done = done_internal;
    return &op->base;
}

/* --- outcomes answered before their commit --- */

/* The tasks whose outcome a client has and the store may not yet: reads
 * of them go through the committer until the recording op is done. */
typedef struct early_id {
    struct early_id *next;
    int refs;                  /* recording ops in flight for this task */
    char id[ACKD_ID_MAX];
} early_id_t;

static size_t early_hash(const char *id)
{
    return (size_t)(ackd_id_hash(id) % EARLY_BUCKETS);
}

static void early_add(ackd_tq_t *tq, const char *id)
{
    size_t b = early_hash(id);
    pthread_mutex_lock(&tq->early_lock);
    early_id_t *e = tq->early[b];
    while (e && strcmp(e->id, id) != 0)
        e = e->next;
    if (!e) {
        e = ACKD_NEW(early_id_t);
        memcpy(e->id, id, ACKD_ID_MAX);
        e->next = tq->early[b];
        tq->early[b] = e;
        tq->nearly++;
    }
    e->refs++;
    pthread_mutex_unlock(&tq->early_lock);
}

static void early_remove(ackd_tq_t *tq, const char *id)
{
    size_t b = early_hash(id);
    pthread_mutex_lock(&tq->early_lock);
    for (early_id_t **pe = &tq->early[b]; *pe; pe = &(*pe)->next) {
        early_id_t *e = *pe;
        if (strcmp(e->id, id) != 0)
            continue;
        if (--e->refs == 0) {
            *pe = e->next;
            ackd_free(e);
            tq->nearly--;
        }
        break;
    }
    pthread_mutex_unlock(&tq->early_lock);
}

/* The ids in the early set now (malloc'd; NULL and 0 when none). */
static char (*early_snapshot(ackd_tq_t *tq, int *n))[ACKD_ID_MAX]
{
    char(*ids)[ACKD_ID_MAX] = NULL;
    *n = 0;
    pthread_mutex_lock(&tq->early_lock);
    if (tq->nearly > 0) {
        ids = ackd_malloc((size_t)tq->nearly * sizeof *ids);
        for (size_t b = 0; b < EARLY_BUCKETS; b++)
            for (early_id_t *e = tq->early[b]; e; e = e->next)
                memcpy(ids[(*n)++], e->id, ACKD_ID_MAX);
    }
    pthread_mutex_unlock(&tq->early_lock);
    return ids;
}

static bool early_pending(ackd_tq_t *tq, const char *id)
{
    bool found = false;
    pthread_mutex_lock(&tq->early_lock);
    for (early_id_t *e = tq->early[early_hash(id)]; e && !found; e = e->next)
        found = strcmp(e->id, id) == 0;
    pthread_mutex_unlock(&tq->early_lock);
    return found;
}

ackd_tq_op_t *ackd_tq_take_waiters(ackd_tq_t *tq, const char *id)
{
    ackd_store_op_t *list = NULL;
    if (ackd_store_take_watchers(tq->store, id, &list) == 0)
        return NULL;
    early_add(tq, id);
    return (ackd_tq_op_t *)list;
}

void ackd_tq_answer_waiters(ackd_tq_op_t *list, const ackd_task_t *claimed, int state,
                            const char *result, const char *error)
{
    int64_t now = ackd_now_ms();
    for (ackd_store_op_t *s = &list->base, *next; s; s = next) {
        next = s->next;
        s->next = NULL;
        ackd_tq_op_t *op = (ackd_tq_op_t *)s;
        ackd_task_t *t = &op->task;
        ackd_task_clear(t); /* a waiter holds no row */
        memset(t, 0, sizeof *t);
        memcpy(t->id, claimed->id, ACKD_ID_MAX);
        t->tenant = claimed->tenant ? ackd_strdup(claimed->tenant) : NULL;
        t->queue = claimed->queue ? ackd_strdup(claimed->queue) : NULL;
        t->correlation_id = claimed->correlation_id ? ackd_strdup(claimed->correlation_id) : NULL;
        t->state = state;
        t->priority = claimed->priority;
        t->attempts = claimed->attempts;
        t->max_attempts = claimed->max_attempts;
        t->created_at = claimed->created_at;
        t->updated_at = t->finished_at = now;
        t->progress_pct = -1;
        t->result = result ? ackd_strdup(result) : NULL;
        t->error = error ? ackd_strdup(error) : NULL;
        s->watch = false;
        s->parked_expired = false;
        s->rc = 0;
        s->done(s);
    }
}

/* --- running --- */

static void done_user(ackd_store_op_t *s)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    if (s->rc < 0 && op->status == 0) {
        op->status = s->rc == ACKD_ENOSPC ? ACKD_ENOSPC : ACKD_EIO;
        op->detail = s->rc == ACKD_ENOSPC ? "the store cannot write: its disk is full"
                                          : "the store failed";
    }
    op->waited_out = op->waited_out || s->parked_expired;
    if (op->record_early)
        early_remove(op->tq, op->id); /* reads of the task need not follow it any more */
    if (op->kind == ACKD_TQ_LIST && op->list_pass == 1 && s->rc == 0) {
        op->list_pass = 2; /* see apply_list */
        ackd_store_submit(op->tq->store, s);
        return;
    }
    op->cb(op);
}

static const ackd_store_apply_fn appliers[] = {
    [ACKD_TQ_ENQUEUE] = apply_enqueue, [ACKD_TQ_CLAIM] = apply_claim,
    [ACKD_TQ_HEARTBEAT] = apply_heartbeat, [ACKD_TQ_COMPLETE] = apply_complete,
    [ACKD_TQ_FAIL] = apply_fail, [ACKD_TQ_CANCEL] = apply_cancel,
    [ACKD_TQ_RETRY] = apply_retry, [ACKD_TQ_GET] = apply_get,
    [ACKD_TQ_LIST] = apply_list, [ACKD_TQ_STATS] = apply_stats,
    [ACKD_TQ_EVENTS] = apply_events, [ACKD_TQ_PROGRESS] = apply_progress,
    [ACKD_TQ_QUEUE_EVENTS] = apply_queue_events,
    [ACKD_TQ_DELIVERIES] = apply_deliveries, [ACKD_TQ_REDELIVER] = apply_redeliver,
    [ACKD_TQ_DELIVERY_CLAIM] = apply_delivery_claim,
    [ACKD_TQ_DELIVERY_RECORD] = apply_delivery_record,
};

ackd_tq_op_t *ackd_tq_op_new(ackd_tq_t *tq, ackd_tq_kind_t kind, ackd_tq_cb cb, void *data)
{
    ackd_tq_op_t *op = ACKD_NEW(ackd_tq_op_t);
    op->tq = tq;
    op->kind = kind;
    op->cb = cb;
    op->data = data;
    op->progress_pct = -1;
    op->task.progress_pct = -1;
    if (kind == ACKD_TQ_LIST)
        op->filter.state = -1;
    op->base.apply = appliers[kind];
    op->base.done = done_user;
    op->base.heap_idx = -1;
    return op;
}

void ackd_tq_log_attempt_end(const ackd_tq_op_t *op, int level, const char *msg)
{
    const ackd_task_t *t = &op->task;
    if (t->state == ACKD_TASK_FAILED && level < ACKD_LOG_WARN)
        level = ACKD_LOG_WARN;
    if (level < ackd_log_level)
        return;
    json_t *err =
        t->state != ACKD_TASK_COMPLETED && t->error ? json_loads(t->error, 0, NULL) : NULL;
    const char *why = json_string_value(json_object_get(err, "message"));
    ACKD_LOG(level, msg, LOG_TASK(t), LOG_INT("attempt", t->attempts),
             LOG_INT("max_attempts", t->max_attempts),
             LOG_STR("status", ackd_task_state_name(t->state)),
             t->state == ACKD_TASK_QUEUED ? LOG_INT("retry_in_ms", t->due_at - op->base.now)
                                          : (void)0,
             LOG_STR("error", why));
    json_decref(err);
}

void ackd_tq_op_free(ackd_tq_op_t *op)
{
    if (!op)
        return;
    ackd_task_clear(&op->task);
    for (int i = 0; i < op->ntasks; i++)
        ackd_task_clear(&op->tasks[i]);
    ackd_free(op->tasks);
    for (int i = 0; i < op->nattempts; i++)
        ackd_attempt_clear(&op->attempts[i]);
    ackd_free(op->attempts);
    for (int i = 0; i < op->nitems; i++) {
        ackd_task_clear(&op->items[i].task);
        ackd_free(op->items[i].idem_scope);
    }
    ackd_free(op->items);
    ackd_free(op->detail_owned);
    ackd_free(op->all_stats);
    for (int i = 0; i < op->nevents; i++)
        ackd_event_clear(&op->events[i]);
    ackd_free(op->events);
    if (op->kind == ACKD_TQ_DELIVERIES || op->kind == ACKD_TQ_REDELIVER ||
        op->kind == ACKD_TQ_DELIVERY_CLAIM) {
        for (int i = 0; i < op->ndeliveries; i++) {
            ackd_delivery_clear(&op->deliveries[i]);
            if (op->tries) {
                for (int k = 0; k < op->ntries[i]; k++)
                    ackd_delivery_try_clear(&op->tries[i][k]);
                ackd_free(op->tries[i]);
            }
        }
        ackd_free(op->deliveries);
        ackd_free(op->tries);
        ackd_free(op->ntries);
    }
    if (op->kind == ACKD_TQ_DELIVERY_RECORD)
        ackd_delivery_try_clear(&op->try_);
    ackd_free(op->queue);
    ackd_free(op->progress_msg);
    ackd_free(op->result);
    ackd_free(op->error);
    ackd_free(op->base.changed_more);
    ackd_free(op);
}

void ackd_tq_task_init(ackd_tq_t *tq, ackd_task_t *t, const ackd_queue_conf_t *q,
                       const char *tenant, int64_t now)
{
    (void)tq;
    memset(t, 0, sizeof *t);
    ackd_id_new("tsk_", t->id);
    t->tenant = ackd_strdup(tenant);
    t->queue = ackd_strdup(q->name);
    t->state = ACKD_TASK_QUEUED;
    t->due_at = now;
    t->max_attempts = q->max_attempts;
    t->created_at = t->updated_at = now;
    t->deadline_at = q->deadline_ms ? now + q->deadline_ms : 0;
    t->progress_pct = -1;
    if (q->callback_url)
        t->callback_url = ackd_strdup(q->callback_url);
}

void ackd_tq_run(ackd_tq_op_t *op)
{
    bool read_only = op->kind == ACKD_TQ_LIST || op->kind == ACKD_TQ_STATS ||
                     op->kind == ACKD_TQ_DELIVERIES ||
                     ((op->kind == ACKD_TQ_GET || op->kind == ACKD_TQ_EVENTS) &&
                      op->wait_until == 0);
    /* a task whose outcome a client got before its commit is read after
     * that commit: the committer runs its ops in order */
    if (read_only && op->kind != ACKD_TQ_LIST && op->kind != ACKD_TQ_STATS &&
        early_pending(op->tq, op->id))
        read_only = false;
    if (op->record_early)
        op->base.lazy = true;
    if (read_only)
        ackd_store_read(op->tq->store, &op->base);
    else
        ackd_store_submit(op->tq->store, &op->base);
}

int ackd_tq_abandon(ackd_tq_op_t *op)
{
    if (!ackd_store_unpark(op->tq->store, &op->base))
        return 0;
    ackd_tq_op_free(op);
    return 1;
}

int ackd_tq_open(ackd_tq_t **out, const ackd_config_t *cfg, char *err, size_t errlen)
{
    ackd_tq_t *tq = ACKD_NEW(ackd_tq_t);
    tq->cfg = cfg;
    ackd_random_bytes(tq->token_key, sizeof tq->token_key);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    tq->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    tq->token_mac = tq->mac ? EVP_MAC_CTX_new(tq->mac) : NULL;
    if (!tq->token_mac ||
        !EVP_MAC_init(tq->token_mac, tq->token_key, sizeof tq->token_key, params)) {
        snprintf(err, errlen, "OpenSSL has no HMAC-SHA256");
        EVP_MAC_CTX_free(tq->token_mac);
        EVP_MAC_free(tq->mac);
        ackd_free(tq);
        return ACKD_EIO;
    }
    pthread_mutex_init(&tq->early_lock, NULL);
    ackd_store_hooks_t hooks = {
        .make_expire_op = make_expire_op,
        .make_purge_op = make_purge_op,
        .data = tq,
        .purge_interval_ms = PURGE_INTERVAL_MS,
    };
    int rc = ackd_store_open(&tq->store, &ackd_store_sqlite, cfg->storage.path,
                             cfg->storage.sync == ACKD_SYNC_FULL, 2, &hooks, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&tq->early_lock);
        EVP_MAC_CTX_free(tq->token_mac);
        EVP_MAC_free(tq->mac);
        ackd_free(tq);
        return rc;
    }
    *out = tq;
    return 0;
}

void ackd_tq_drain(ackd_tq_t *tq, bool all)
{
    ackd_store_drain_waiters(tq->store, all);
}

void ackd_tq_close(ackd_tq_t *tq)
{
    if (!tq)
        return;
    ackd_store_close(tq->store);
    for (int i = 0; i < EARLY_BUCKETS; i++) {
        for (struct early_id *e = tq->early[i], *next; e; e = next) {
            next = e->next;
            ackd_free(e);
        }
    }
    pthread_mutex_destroy(&tq->early_lock);
    EVP_MAC_CTX_free(tq->token_mac);
    EVP_MAC_free(tq->mac);
    ackd_free(tq);
}
