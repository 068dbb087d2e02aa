/* tq.h - the task queue: SPEC §1's state machine over the store.
 *
 *   queued -> processing -> completed | failed | canceled
 *   processing -> queued   (retryable failure, expired lease; due later while backing off)
 *   failed | canceled -> queued   (redrive)
 *
 * Every operation is an ackd_tq_op_t: the caller fills the inputs and calls
 * ackd_tq_run; the store applies it (in a group-commit transaction for
 * writes, on a reader for reads) and then calls op->cb on the store's thread
 * with the outputs, after the change is durable. The callback owns the op
 * and frees it with ackd_tq_op_free. Fencing: calls that carry a lease
 * change nothing unless the lease is the task's current, unexpired one.
 *
 * The transitions are written here once, on the store's row primitives, so
 * every backend shares them. Any thread may call ackd_tq_run. */
#ifndef ACKD_QUEUE_TQ_H
#define ACKD_QUEUE_TQ_H

#include <stdbool.h>
#include <stdint.h>

#include "base/jw.h"
#include "config/config.h"
#include "store/store.h"

typedef struct ackd_tq ackd_tq_t;

/* Inside ACKD_LOG: the fields that tie a line to a task (t: an ackd_task_t *),
 * so that every line about a task can be found by its id, its correlation id
 * (X-Request-ID) or its trace. LOG_TASK_AS names the id apart, for a task
 * whose row may not have been read (t's other fields NULL then). */
#define LOG_TASK_AS(task_id, t)                                                                    \
    (LOG_STR("task_id", (task_id)), LOG_STR("queue", (t)->queue),                                 \
     LOG_STR("correlation_id", (t)->correlation_id), LOG_STR("traceparent", (t)->traceparent))
#define LOG_TASK(t) LOG_TASK_AS((t)->id, (t))
typedef struct ackd_tq_op ackd_tq_op_t;
typedef void (*ackd_tq_cb)(ackd_tq_op_t *op);

typedef enum {
    ACKD_TQ_ENQUEUE,   /* items -> inserted (or replayed); with load_task, one item is
                        * then read back into task, and with wait_until waited on */
    ACKD_TQ_CLAIM,     /* queue, max, lease_ms, wait_until -> tasks */
    ACKD_TQ_HEARTBEAT, /* id, lease_id, lease_ms, progress -> task */
    ACKD_TQ_COMPLETE,  /* id, lease_id, result -> task */
    ACKD_TQ_FAIL,      /* id, lease_id, error, retry, retry_after_ms -> task */
    ACKD_TQ_CANCEL,    /* id -> task */
    ACKD_TQ_RETRY,     /* id -> task */
    ACKD_TQ_GET,       /* id [, wait_until] -> task, attempts */
    ACKD_TQ_LIST,      /* filter -> tasks */
    ACKD_TQ_STATS,     /* queue -> stats */
    ACKD_TQ_EVENTS,    /* id, after [, wait_until] -> task, events (SSE; streams with base.wake) */
    ACKD_TQ_QUEUE_EVENTS, /* queue -> events of its tasks from now on (a live SSE stream) */
    ACKD_TQ_PROGRESS,  /* id, token, progress -> task (push upstreams report progress) */
    ACKD_TQ_DELIVERIES,/* id -> deliveries with their tries */
    ACKD_TQ_REDELIVER, /* id -> the task's webhook is sent again */
    ACKD_TQ_DELIVERY_CLAIM,  /* max, lease_ms, wait_until -> deliveries due (the sender) */
    ACKD_TQ_DELIVERY_RECORD, /* delivery id, try, outcome (the sender) */
} ackd_tq_kind_t;

/* What the webhook sender learned from one try. */
enum { ACKD_DELIVERY_RETRY = 0, ACKD_DELIVERY_DONE = 1, ACKD_DELIVERY_GIVE_UP = 2 };

/* The pseudo-queue the webhook sender's claims park on. */
#define ACKD_TQ_WEBHOOK_QUEUE "\x01webhooks"

/* One task to enqueue. The caller fills `task` (ackd_tq_task_init gives the
 * defaults) and the idempotency fields; replayed/mismatch are outputs. */
typedef struct {
    ackd_task_t task;          /* owned; task.id is the existing one when replayed */
    char *idem_scope;          /* "queue:NAME" or "route:METHOD /path"; owned; NULL: none */
    char fingerprint[65];
    bool replayed;             /* an earlier request with this key made the task */
} ackd_tq_item_t;

struct ackd_tq_op {
    ackd_store_op_t base;      /* first: the store's view */
    ackd_tq_t *tq;
    int kind;
    ackd_tq_cb cb;
    void *data;                /* the caller's */

    /* outcome: 0, ACKD_ENOENT (no such task for this caller), ACKD_ECONFLICT
     * (stale lease, wrong state, idempotency mismatch), ACKD_EIO */
    int status;
    const char *detail;        /* a sentence for problems: static, or detail_owned */
    char *detail_owned;        /* allocated only when a problem needs its own words */

    /* inputs */
    const char *tenant;        /* owner filter; NULL: any (admin, workers) */
    char **allowed_queues;     /* workers: queues they may touch; NULL: any */
    char id[ACKD_ID_MAX];
    char lease_id[ACKD_ID_MAX];
    char *queue;               /* owned */
    int max;
    int64_t lease_ms;          /* 0: the task's timeout or the queue's default */
    int64_t wait_until;        /* claim and get: wait until then (ms since epoch) */
    int progress_pct;          /* -1: not reported */
    char *progress_msg;        /* owned */
    char *result;              /* owned JSON; fail: the upstream's answer, kept on the task */
    char *error;               /* owned JSON */
    bool retry;
    bool replayed;             /* complete/fail, output: the same call ended this lease's
                                  attempt already; nothing changed, task is as it left it */
    signed char list_pass;     /* list, internal (in retry's padding): 1 - a listed task's
                                  outcome was answered before its commit: list again on the
                                  committer, after it; 2 - that second listing */
    int64_t retry_after_ms;
    bool with_attempts;
    bool load_task;            /* enqueue: read the (new or replayed) task back into task */
    bool early_answer;         /* enqueue waiting on its task: a push call's final outcome
                                  may reach it before its commit (ackd_tq_take_waiters) */
    bool record_early;         /* complete/fail: waiters got this outcome already; the op
                                  may wait for company, and reads of the task follow it */
    int flags;                 /* the caller's scratch (e.g. which Prefer applied) */
    int64_t applied_wait_ms;   /* the caller's scratch */

    /* enqueue */
    ackd_tq_item_t *items;
    int nitems;

    /* events (SSE) */
    int after;                 /* events after this id */
    ackd_event_t *events;      /* output */
    int nevents;
    bool heartbeat;            /* output: the wait ran out with nothing new */
    bool stop;                 /* set by the streamer (store thread): its client left */
    int cap_changed;           /* room in base.changed_more */

    /* what only one kind uses shares the room: a parked long poll is small */
    union {
        struct { /* LIST */
            ackd_task_filter_t filter; /* point its strings at queue and cursor */
            char cursor[ACKD_ID_MAX];
        };
        struct { /* QUEUE_EVENTS: cursors (0 / "" until the first run) */
            int64_t after_event;
            char after_task[ACKD_ID_MAX];
            bool cursor_set;
        };
        char token[65];        /* PROGRESS: the per-dispatch token */
        struct { /* DELIVERY_RECORD */
            ackd_delivery_try_t try_; /* the try (strings owned); n: the number it was
                                         claimed as (0: the delivery's count) */
            int outcome;       /* ACKD_DELIVERY_* */
            int64_t next_at;   /* when to retry */
        };
        struct { /* DELIVERIES, REDELIVER, DELIVERY_CLAIM: outputs */
            ackd_delivery_t *deliveries;
            int ndeliveries;
            ackd_delivery_try_t **tries;   /* tries[i] for deliveries[i] */
            int *ntries;
        };
        ackd_queue_stats_t stats;      /* STATS of one queue */
        char conflict_id[ACKD_ID_MAX]; /* ENQUEUE: the task behind an idempotency mismatch */
    };

    /* outputs */
    ackd_task_t task;
    ackd_task_t *tasks;        /* claim, list */
    int ntasks;
    ackd_attempt_t *attempts;
    int nattempts;
    ackd_queue_stats_t *all_stats; /* STATS with queue NULL: one per configured queue */
    bool waited_out;           /* a claim or long poll whose wait ran out */
};

/* Opens the store named by cfg->storage and starts its threads. */
int ackd_tq_open(ackd_tq_t **out, const ackd_config_t *cfg, char *err, size_t errlen);
/* Finishes queued work, answers waiters as timed out, stops the threads. */
void ackd_tq_close(ackd_tq_t *tq);
/* Shutdown: answers every waiting claim and long poll now, ends streams,
 * and answers new waits at once. A route client waiting for its own task
 * waits on (its call may finish inside the grace) until a call with all,
 * once no push call runs. Any thread. */
void ackd_tq_drain(ackd_tq_t *tq, bool all);
const ackd_config_t *ackd_tq_config(const ackd_tq_t *tq);
/* Whether the store can write (ackd_store_health): 0, or the error that
 * makes its commits fail (ACKD_ENOSPC: out of space) since *since. Any
 * thread. */
int ackd_tq_store_health(ackd_tq_t *tq, int64_t *since);
/* Whether a finished op failed because the store could not commit (a full
 * disk, an I/O error), not because it was denied (a stale lease, a task
 * gone): the same op may be tried again later. */
bool ackd_tq_store_failed(const ackd_tq_op_t *op);

ackd_tq_op_t *ackd_tq_op_new(ackd_tq_t *tq, ackd_tq_kind_t kind, ackd_tq_cb cb, void *data);
/* A task's progress as the member "progress" ({percent, message} or null),
 * as status documents and task.progress events show it. Any thread. */
void ackd_tq_write_progress(ackd_jw_t *w, const ackd_task_t *t);
void ackd_tq_op_free(ackd_tq_op_t *op);
/* Logs what an attempt's end (a complete or fail op that was applied, an
 * expired lease) made of op->task: its state, and when a retry is due or
 * why it failed; at least at `level`, a failed task at warn. Any thread. */
void ackd_tq_log_attempt_end(const ackd_tq_op_t *op, int level, const char *msg);
/* Fills a task with the defaults of its queue (state queued, due now,
 * max_attempts, ...) and a fresh id; the caller then sets what it has. */
void ackd_tq_task_init(ackd_tq_t *tq, ackd_task_t *t, const ackd_queue_conf_t *q,
                       const char *tenant, int64_t now);
/* The token a push upstream presents to report progress on task_id under
 * lease_id (HMAC with a key made at start-up). out: 64 hex + NUL. */
void ackd_tq_progress_token(const ackd_tq_t *tq, const char *task_id, const char *lease_id,
                            char out[65]);
/* Answering a route's client before the commit (push dispatch). A call
 * that ends task `id` for good (completed, or failed without a retry) takes
 * the enqueues waiting on it with early_answer (ackd_tq_take_waiters), runs
 * the complete or fail operation that records the outcome with
 * record_early set, and only then hands the waiters the upstream's answer
 * (ackd_tq_answer_waiters): the request itself was durable before the call,
 * and if ackd dies before the result is, the task runs again (same
 * Idempotency-Key) when its lease expires. Until that operation commits,
 * reads of the task go through the committer, after it, so a client never
 * reads an older state than the answer it got. Any thread. */
ackd_tq_op_t *ackd_tq_take_waiters(ackd_tq_t *tq, const char *id);
/* Answers (and hands over) the list: each waiter's task becomes `claimed`
 * (as its claim returned it) in `state`, with result and error copied;
 * their cb runs on this thread. */
void ackd_tq_answer_waiters(ackd_tq_op_t *list, const ackd_task_t *claimed, int state,
                            const char *result, const char *error);
/* Starts the operation. Its cb runs exactly once, on a store thread. */
void ackd_tq_run(ackd_tq_op_t *op);
/* The client of a waiting claim or long poll left: if the op was still
 * waiting it is taken back and freed here (returns 1; cb will not run);
 * otherwise its cb is running or ran (returns 0). */
int ackd_tq_abandon(ackd_tq_op_t *op);

#endif
