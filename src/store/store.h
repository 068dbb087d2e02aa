/* store.h - durable storage of tasks: one interface, several backends.
 *
 * Two parts:
 *  - ackd_store_backend_t, a table of row-level primitives (insert a task,
 *    read one for update, list claimable ids, ...) that each backend
 *    implements (sqlite.c; postgres.c later). Nothing outside src/store names
 *    a backend or writes SQL.
 *  - the store itself (store.c): a committer thread that owns the write
 *    connection and runs every write operation queued since its last commit
 *    in one transaction (group commit), and reader threads with their own
 *    connections, so reads never wait for the committer.
 *
 * Operations are ackd_store_op_t objects made by the caller (src/queue):
 * `apply` runs on the committer (or a reader) thread with a connection,
 * inside the batch transaction; `done` runs on the same thread after the
 * transaction is durable (or failed: op->rc < 0). Neither may block on the
 * network. Both are the caller's code, so the semantics of a task live in
 * one place for every backend.
 *
 * Thread rules: ackd_store_submit/read/cancel_parked may be called from any
 * thread. Primitives are called only from apply/done with the conn given. */
#ifndef ACKD_STORE_STORE_H
#define ACKD_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/id.h"

typedef enum {
    ACKD_TASK_QUEUED = 0,
    ACKD_TASK_PROCESSING = 1,
    ACKD_TASK_COMPLETED = 2,
    ACKD_TASK_FAILED = 3,
    ACKD_TASK_CANCELED = 4,
} ackd_task_state_t;

#define ACKD_TASK_TERMINAL(s) ((s) >= ACKD_TASK_COMPLETED)

/* One task row. Strings are owned (malloc'd) by the struct and may be NULL;
 * ackd_task_clear frees them. JSON columns hold JSON text. Times are ms since
 * the epoch; 0 means none. */
typedef struct {
    char id[ACKD_ID_MAX];
    char *tenant;
    char *queue;
    int state;                 /* ackd_task_state_t */
    int priority;              /* higher first */
    int64_t due_at;            /* queued: may run from then on */
    int attempts;              /* attempts started */
    int max_attempts;
    int64_t timeout_ms;        /* lease length for pull workers asked at submit, 0 = queue default */
    int64_t lease_ms;          /* length of the lease last granted; heartbeats extend by it */
    char lease_id[ACKD_ID_MAX];/* "" when no lease */
    int64_t lease_expires_at;
    int64_t created_at, updated_at, finished_at;
    int64_t deadline_at;       /* give up after; 0 = none */
    char *payload;             /* JSON: a queue task's payload */
    char *request;             /* JSON: a route task's request (method, path, ...) */
    char *result;              /* JSON */
    char *error;               /* JSON {"message": ..., "status": ...} */
    int progress_pct;          /* -1 when none */
    char *progress_msg;
    char *correlation_id;
    char *traceparent;
    char *callback_url;
    char *idem_key;
    bool cancel_requested;
    signed char stored_state;  /* the backend's: the state of the stored row + 1, as this
                                  struct last read or wrote it; 0 unknown (per-queue counts) */
    int event_seq;             /* number of the task's last event; 1 is task.queued */
    int64_t attempt_started_at;/* processing: when the running attempt (number `attempts`)
                                  started; 0 otherwise. Ended attempts are rows of their own. */
} ackd_task_t;

typedef struct {
    int n;                     /* 1-based */
    int64_t started_at, ended_at;
    char *outcome;             /* "completed", "failed", "retry", "lease_expired", "canceled"; NULL while running */
    char *error;               /* JSON or NULL */
    char lease_id[ACKD_ID_MAX];
} ackd_attempt_t;

/* One event of a task's history (SSE, timelines). Event 1, task.queued, is
 * not stored: it is the task's creation. */
typedef struct {
    int64_t id;                /* global order (queue streams) */
    char task_id[ACKD_ID_MAX]; /* set by queue_events */
    int seq;                   /* the task's own numbering */
    const char *queue;         /* event_insert: the task's queue (borrowed) */
    char *type;                /* "task.processing", "task.progress", ... */
    int64_t at;
    char *data;                /* JSON */
    char *result;              /* event_list, queue_events: for task.completed, the task's
                                  result (JSON), which data does not repeat (events
                                  stored before it was so still do); NULL otherwise */
} ackd_event_t;

/* A webhook message and the obligation to deliver it. */
enum { ACKD_DELIVERY_PENDING = 0, ACKD_DELIVERY_DELIVERED = 1, ACKD_DELIVERY_FAILED = 2 };

typedef struct {
    char id[ACKD_ID_MAX];      /* msg_...: the webhook-id, the same on every try */
    char task_id[ACKD_ID_MAX];
    char *url;
    char *type;                /* "task.completed", ... */
    char *body;                /* JSON, fixed at creation so every try signs the same bytes */
    char *tenant, *queue;
    char *traceparent;         /* the task's W3C trace context, sent along */
    char *correlation_id;      /* read: the task's (log lines); not stored with the delivery */
    int state;                 /* ACKD_DELIVERY_* */
    int tries;
    int64_t next_at;           /* pending: when the next try may start */
    int64_t created_at, updated_at;
    char *last_error;
} ackd_delivery_t;

typedef struct {
    int n;
    int64_t at;
    int64_t duration_ms;
    int status;                /* 0: no answer */
    char *error;
    char *excerpt;             /* the start of the receiver's answer */
} ackd_delivery_try_t;

typedef struct {
    char *tenant, *scope, *key;
    char fingerprint[65];      /* hex SHA-256 */
    char task_id[ACKD_ID_MAX];
    int64_t expires_at;
} ackd_idem_t;

/* Listing filter; NULL/empty fields do not filter. Newest first. */
typedef struct {
    const char *tenant;        /* NULL: all tenants (admin) */
    const char *queue;
    int state;                 /* -1: any */
    const char *before_id;     /* cursor: ids strictly older than this */
    int limit;
} ackd_task_filter_t;

typedef struct {
    int64_t counts[5];         /* per ackd_task_state_t */
    int64_t oldest_queued_at;  /* created_at of the oldest queued task, 0 if none */
} ackd_queue_stats_t;

void ackd_task_clear(ackd_task_t *t);
/* dst becomes a copy of src with strings of its own (clear it after). */
void ackd_task_copy(ackd_task_t *dst, const ackd_task_t *src);
void ackd_attempt_clear(ackd_attempt_t *a);
void ackd_idem_clear(ackd_idem_t *i);
void ackd_event_clear(ackd_event_t *e);
void ackd_delivery_clear(ackd_delivery_t *d);
void ackd_delivery_try_clear(ackd_delivery_try_t *t);
const char *ackd_task_state_name(int state);
/* "queued" -> ACKD_TASK_QUEUED; -1 when unknown. */
int ackd_task_state_parse(const char *s);

typedef struct ackd_store_conn ackd_store_conn_t;

/* The primitives a backend implements. Every function returns 0, ACKD_ENOENT
 * (no such row) or a negative error; the connection belongs to one thread. */
typedef struct {
    const char *name;
    /* Opens the database (creating and migrating it) and returns a connection.
     * `writer` connections may write; readers only read. */
    int (*open)(const char *location, bool writer, bool sync_full, ackd_store_conn_t **out,
                char *err, size_t errlen);
    void (*close)(ackd_store_conn_t *c);
    int (*begin)(ackd_store_conn_t *c);
    int (*commit)(ackd_store_conn_t *c);
    int (*rollback)(ackd_store_conn_t *c);
    /* Commits a transaction that writes (a page, changing nothing): whether
     * writes work again after they failed (a full disk). Writer only. */
    int (*probe)(ackd_store_conn_t *c);
    /* Whether the transaction last committed changed a row (a commit of
     * reads only says nothing about whether writes work). */
    bool (*committed_writes)(ackd_store_conn_t *c);

    /* Sets t->stored_state, like task_get and task_update. */
    int (*task_insert)(ackd_store_conn_t *c, ackd_task_t *t);
    /* Reads a task, without its bodies (payload and request stay NULL: they
     * are written once, by task_insert, and only claims need them); in a
     * write transaction, locks it for update. */
    int (*task_get)(ackd_store_conn_t *c, const char *id, ackd_task_t *out);
    /* Writes the mutable fields of t (state, due, attempts, lease, times,
     * result, error, progress, cancel_requested, lease_ms, event_seq). */
    int (*task_update)(ackd_store_conn_t *c, ackd_task_t *t);
    /* The queued tasks of `queue` due at `now` (or due when written:
     * due_at <= created_at), by priority then due time, whole rows with
     * their payload and request, read for update like task_get (skipping
     * rows locked by others); out holds
     * `limit` tasks, each to be cleared by the caller. */
    int (*task_claimable)(ackd_store_conn_t *c, const char *queue, int64_t now, int limit,
                          ackd_task_t *out, int *n);
    /* Ids of processing tasks whose lease expired at `now`. */
    int (*task_expired)(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                        int *n);
    /* Earliest due time after `now` of a queued task that was not due when
     * written (due_at > created_at: delayed or backing off) or of a pending
     * delivery; 0 if none. */
    int (*next_due)(ackd_store_conn_t *c, int64_t now, int64_t *due_at);
    /* Earliest lease expiry of a processing task, or deadline of a queued
     * one; 0 if none. */
    int (*next_expiry)(ackd_store_conn_t *c, int64_t *expires_at);
    /* Ids of queued tasks whose deadline passed at `now`, earliest first. */
    int (*task_overdue)(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                        int *n);
    int (*task_list)(ackd_store_conn_t *c, const ackd_task_filter_t *f, ackd_task_t *out, int *n);
    /* A queue's counts per state, of one tenant's tasks (NULL: every
     * tenant's), and the created_at of its oldest queued task (any tenant's:
     * how long the queue keeps a task waiting now). */
    int (*queue_stats)(ackd_store_conn_t *c, const char *queue, const char *tenant,
                       ackd_queue_stats_t *out);
    /* Deletes up to `limit` terminal tasks of `queue` finished before `before`,
     * with their attempts, events and deliveries. */
    int (*purge)(ackd_store_conn_t *c, const char *queue, int64_t before, int limit, int *deleted);

    /* Records an attempt that ended (once, at its end: the running attempt
     * is the task's attempts, lease_id and attempt_started_at). */
    int (*attempt_insert)(ackd_store_conn_t *c, const char *task_id, const ackd_attempt_t *a);
    /* The ended attempts of a task, oldest first; *out is malloc'd (free each
     * with ackd_attempt_clear, then the array). */
    int (*attempt_list)(ackd_store_conn_t *c, const char *task_id, ackd_attempt_t **out, int *n);

    int (*idem_get)(ackd_store_conn_t *c, const char *tenant, const char *scope, const char *key,
                    ackd_idem_t *out);
    int (*idem_insert)(ackd_store_conn_t *c, const ackd_idem_t *i);
    int (*idem_purge)(ackd_store_conn_t *c, int64_t now, int limit, int *deleted);

    int (*event_insert)(ackd_store_conn_t *c, const char *task_id, const ackd_event_t *e);
    /* Events with seq > after, oldest first, at most limit; *out malloc'd. */
    int (*event_list)(ackd_store_conn_t *c, const char *task_id, int after, int limit,
                      ackd_event_t **out, int *n);

    /* Events of a queue's tasks with id > after, in order; *out malloc'd. */
    int (*queue_events)(ackd_store_conn_t *c, const char *queue, int64_t after, int limit,
                        ackd_event_t **out, int *n);
    /* Where a queue stream starts: the last event id and last task id ("" if none). */
    int (*queue_cursor)(ackd_store_conn_t *c, const char *queue, int64_t *last_event,
                        char *last_task);
    /* Ids (and creation times) of the queue's tasks created after task id `after`. */
    int (*tasks_after)(ackd_store_conn_t *c, const char *queue, const char *after, int limit,
                       char (*ids)[ACKD_ID_MAX], int64_t *created, int *n);

    int (*delivery_insert)(ackd_store_conn_t *c, const ackd_delivery_t *d);
    int (*delivery_get)(ackd_store_conn_t *c, const char *id, ackd_delivery_t *out);
    /* Writes state, tries, next_at, updated_at, last_error. */
    int (*delivery_update)(ackd_store_conn_t *c, const ackd_delivery_t *d);
    /* Ids of pending deliveries due at `now`, oldest due first. */
    int (*delivery_due)(ackd_store_conn_t *c, int64_t now, int limit, char (*ids)[ACKD_ID_MAX],
                        int *n);
    /* A task's deliveries, oldest first; *out malloc'd. */
    int (*delivery_list)(ackd_store_conn_t *c, const char *task_id, ackd_delivery_t **out, int *n);
    int (*delivery_try_insert)(ackd_store_conn_t *c, const char *delivery_id,
                               const ackd_delivery_try_t *t);
    int (*delivery_try_list)(ackd_store_conn_t *c, const char *delivery_id,
                             ackd_delivery_try_t **out, int *n);
} ackd_store_backend_t;

extern const ackd_store_backend_t ackd_store_sqlite;
/* Tests: how many times a SQLite writer connection asked its checkpoint
 * thread for a checkpoint. Its thread only. */
int ackd_sqlite_checkpoint_asks(const ackd_store_conn_t *c);

/* --- the store --- */

typedef struct ackd_store ackd_store_t;
typedef struct ackd_store_op ackd_store_op_t;

typedef int (*ackd_store_apply_fn)(ackd_store_op_t *op, const ackd_store_backend_t *b,
                                   ackd_store_conn_t *c);
typedef void (*ackd_store_done_fn)(ackd_store_op_t *op);

/* A claim that found nothing may wait: the store keeps it ("parked") and
 * runs `apply` again, in the transaction that makes a task of its queue due,
 * or at `park_until` with an empty answer. */
struct ackd_store_op {
    ackd_store_apply_fn apply;
    ackd_store_done_fn done;
    int rc;                    /* what apply returned, or the commit error */
    int64_t now;               /* ms, set by the store before apply */
    /* parking (claims only) */
    const char *park_queue;    /* set by apply to park; NULL: finished */
    int64_t park_until;        /* ms since the epoch */
    bool parked_expired;       /* set when done runs because the wait ran out */
    /* set by the op's maker (they fill padding here: waiters are many):
     * takeable - a watch its maker may end before the change it waits
     *            for commits (ackd_store_take_watchers);
     * lazy     - nobody waits for this op's answer (a push call's result
     *            whose client already has it): the committer may hold it
     *            up to ACKD_STORE_LAZY_US for company, to share the next
     *            commit */
    bool takeable;
    bool lazy;
    /* a claim that parks or is offered (ackd_store_offer): how many more
     * tasks it takes (ackd_store_take_parked counts them down); 0 otherwise */
    int room;
    /* streaming watches (SSE): called on the committer thread after each
     * re-run of apply that keeps watching; NULL for plain long polls */
    ackd_store_done_fn wake;
    /* watching (long polls): set by apply to wait; apply runs again (outside
     * a transaction) when task `watch_id` changes, or at watch_until with
     * parked_expired set; done runs once apply no longer asks to watch */
    bool watch;
    char watch_id[ACKD_ID_MAX];
    int64_t watch_until;
    /* effects apply reports, so the store can wake others */
    const char *woke_queue;    /* a task of this queue became due now */
    bool woke_all;             /* tasks of several queues became due now */
    int64_t due_hint;          /* a task will become due at this time */
    int64_t expiry_hint;       /* a lease will expire at this time */
    char changed_id[ACKD_ID_MAX]; /* this task changed state: wake its watchers */
    char (*changed_more)[ACKD_ID_MAX]; /* more changed tasks (owned by the op's maker) */
    int nchanged_more;
    /* the store's bookkeeping (under its lock) */
    ackd_store_op_t *next;     /* batch, parked list or watch chain */
    ackd_store_op_t *prev;
    int heap_idx;              /* in the deadline heap, -1 when not */
    int where;                 /* nowhere, parked, watching, firing */
};

/* How long a batch of lazy operations alone waits for an eager one. */
#define ACKD_STORE_LAZY_US 500

/* Hooks the upper layer gives the store for its own periodic work. */
typedef struct {
    /* Makes an op that returns expired leases to their queues (run when a
     * lease expires); NULL: none. */
    ackd_store_op_t *(*make_expire_op)(void *data);
    /* Makes an op that purges old rows (run every purge_interval_ms, and
     * again at once while the last run set op->rc to 1: more to purge). */
    ackd_store_op_t *(*make_purge_op)(void *data);
    void *data;
    int64_t purge_interval_ms;
} ackd_store_hooks_t;

/* Opens the store at `location` with `readers` reader threads. err gets a
 * message on failure. Starts the committer. */
int ackd_store_open(ackd_store_t **out, const ackd_store_backend_t *backend, const char *location,
                    bool sync_full, int readers, const ackd_store_hooks_t *hooks, char *err,
                    size_t errlen);
/* Stops the threads after finishing queued operations; parked claims and
 * watches are answered as if their wait ran out. */
void ackd_store_close(ackd_store_t *s);

/* For shutdown: ends waits now (parked claims answer empty, watches answer
 * their current state) and new ones at once. Takeable watches (a route
 * client waiting for its own call, which may finish inside the grace) wait
 * on until a call with all (once no call can finish any more). Any thread. */
void ackd_store_drain_waiters(ackd_store_t *s, bool all);
/* Queues a write operation for the next group commit. Any thread. */
void ackd_store_submit(ackd_store_t *s, ackd_store_op_t *op);
/* Queues a read-only operation to a reader thread (no transaction is
 * committed; done runs after apply). Any thread. */
void ackd_store_read(ackd_store_t *s, ackd_store_op_t *op);
/* Takes back a parked claim or a watch (its client left). Returns 1 if it was
 * still waiting: the caller now owns op and its done will not run; 0 if it
 * is already finishing (its done runs or ran). Any thread. */
int ackd_store_unpark(ackd_store_t *s, ackd_store_op_t *op);

/* Takes the watches of task `id` marked `takeable` out of the store and
 * prepends them to *out (a list through ->next); returns how many. The
 * caller now finishes each (sets its outputs and calls its done) instead of
 * the store. Used to hand a waiting client an outcome while the commit
 * recording it still runs. Any thread. */
int ackd_store_take_watchers(ackd_store_t *s, const char *id, ackd_store_op_t **out);

/* For an apply function on the committer, inside a batch: hands a task
 * being written now straight to a claim waiting on `queue`, so it is
 * inserted already leased instead of queued and claimed by a second write.
 * Returns the claim parked longest on `queue` with room left (one unit of it
 * taken), or NULL when there is none, or when an earlier operation of this
 * batch made a task of that queue due (or a delayed task's time came): that
 * task is older and goes first, by the claim's own query. A claim taken is
 * off its parked list; the store answers it with this batch, before the
 * batch's own operations, without running its apply again. The caller adds
 * the task to it and must not report woke_queue for it. */
ackd_store_op_t *ackd_store_take_parked(const char *queue);

/* For a claim's apply on the committer, inside a batch: the claim took fewer
 * tasks than it asked for, so nothing of `queue` is due now. Until the batch
 * ends, take_parked hands it up to `room` more of the lone tasks the batch's
 * later ops write to that queue, unless one of those ops makes an older task
 * due first. The claim is answered with its batch as usual. */
void ackd_store_offer(ackd_store_op_t *op, const char *queue, int room);

/* The exit status of a server whose commit could not be synced (the store
 * stops the process at once: see store.c, sync_failed). EX_IOERR. */
#define ACKD_EXIT_SYNC 74

/* Whether the store can write: 0 while its commits succeed; after a batch
 * failed, that batch's error (ACKD_ENOSPC: out of space) until a commit
 * succeeds again, and *since (if not NULL) gets when writes began failing
 * (ms since the epoch). While writes fail, the store's own timed work
 * (lease expiry, purges, delayed tasks) waits, and the committer tries a
 * small write every second or less (backend probe) to notice the disk has
 * room again even when nobody submits. Any thread. */
int ackd_store_health(ackd_store_t *s, int64_t *since);

/* The backend (for apply functions and tests). */
const ackd_store_backend_t *ackd_store_backend(const ackd_store_t *s);

#endif
