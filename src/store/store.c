/* store.c - the group committer, the reader pool, parked claims and watches.
 *
 * The committer thread owns the write connection. Each turn of its loop:
 *   1. take every operation queued since the last turn (the batch),
 *   2. BEGIN; apply each; serve the parked claims of queues that a change in
 *      this batch made ready, in the same transaction; COMMIT (one fsync),
 *   3. run `done` of each finished operation (answers leave only now),
 *   4. wake the watchers of the tasks that changed, and fire what is due
 *      (wait deadlines, delayed tasks, lease expiry, purges),
 *   5. sleep until the next operation or the next deadline.
 * Many concurrent requests share one commit, so durability does not cost
 * throughput: the batch grows while the previous fsync runs.
 *
 * One mutex guards the incoming queue, the parked lists, the watch table
 * and the deadline heap; it is never held while SQL runs. */
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

/* W_FIRING_*: taken off by fire_deadlines, answered outside the lock; no
 * longer parked or watching, so ackd_store_unpark leaves it (and its owner
 * does not free it: its done callback is coming) */
enum { W_NONE = 0, W_PARKED, W_WATCHING, W_FIRING_PARKED, W_FIRING_WATCH };

#define WATCH_BUCKETS_MIN 1024

typedef struct {
    char *queue;
    ackd_store_op_t *head;     /* parked claims, oldest first */
    ackd_store_op_t *tail;
} parked_list_t;

/* The batch being run (committer only): what ackd_store_take_parked
 * needs to know of it. */
typedef struct {
    struct ackd_store *store;
    const char *woke[64];      /* queues made due by the batch's ops so far */
    int nwoke;
    bool woke_all;
    ackd_store_op_t *taken;    /* claims given tasks by take_parked, oldest first */
    ackd_store_op_t *taken_tail;
    /* queues take_parked found no claim on: only the committer parks, after
     * the batch, so the answer holds until then (and the lock is not taken
     * again per task) */
    const char *missed[8];
    int nmissed;
    /* claims of this batch that drained their queue with room left: later
     * tasks of the same batch go to them (ackd_store_offer) */
    ackd_store_op_t *open[8];
    const char *open_queue[8];
    int nopen;
} batch_t;

typedef struct reader {
    pthread_t thread;
    ackd_store_conn_t *conn;
    struct ackd_store *store;
} reader_t;

struct ackd_store {
    const ackd_store_backend_t *b;
    ackd_store_conn_t *wconn;
    ackd_store_hooks_t hooks;
    pthread_t committer;
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* committer: work or a nearer deadline */
    ackd_store_op_t *in_head, *in_tail;
    int in_eager;              /* ops in the incoming queue that are not lazy */
    int64_t lazy_until;        /* mono us: lazy ops alone wait until then; 0 none */
    bool lazy_waiting;         /* the committer sleeps on lazy ops: an eager op wakes it */
    bool stop;
    /* parked claims by queue */
    parked_list_t *parked;     /* one per queue that ever had a parked claim */
    int nparked_queues, cap_parked;
    /* watches: chained hash on task id */
    ackd_store_op_t **watch_buckets;
    size_t nbuckets, nwatches;
    /* deadlines of parked claims and watches: binary min-heap */
    ackd_store_op_t **heap;
    int heap_len, heap_cap;
    int64_t next_due;          /* a delayed task becomes due; 0 none */
    int64_t next_expiry;       /* a lease expires; 0 none */
    int64_t next_purge;
    bool recheck_timers;       /* ask the backend for next_due/next_expiry */
    bool draining;             /* shutting down: waits end at once, but for */
    bool drained_all;          /* route clients' (takeable), until this is set */
    /* health (ackd_store_health): the committer writes, any thread reads */
    _Atomic int write_rc;      /* 0, or the error of the last batch: writes are failing */
    _Atomic int64_t failing_since;
    /* while failing (committer only): timed work and the probe wait until
     * retry_at (ms since the epoch); the wait doubles per failed probe */
    int64_t retry_at, retry_ms;
    int64_t failed_batches, fail_logged_at;
    bool failed_since_probe;   /* a batch failed after the last probe */
    /* readers */
    reader_t *readers;
    int nreaders;
    pthread_mutex_t rlock;
    pthread_cond_t rwake;
    ackd_store_op_t *r_head, *r_tail;
    bool rstop;
};

const ackd_store_backend_t *ackd_store_backend(const ackd_store_t *s)
{
    return s->b;
}

/* --- deadline heap (lock held) --- */

static int64_t deadline_of(const ackd_store_op_t *op)
{
    return op->where == W_PARKED ? op->park_until : op->watch_until;
}

static void heap_swap(ackd_store_t *s, int i, int j)
{
    ackd_store_op_t *t = s->heap[i];
    s->heap[i] = s->heap[j];
    s->heap[j] = t;
    s->heap[i]->heap_idx = i;
    s->heap[j]->heap_idx = j;
}

static void heap_up(ackd_store_t *s, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (deadline_of(s->heap[parent]) <= deadline_of(s->heap[i]))
            break;
        heap_swap(s, i, parent);
        i = parent;
    }
}

static void heap_down(ackd_store_t *s, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->heap_len && deadline_of(s->heap[l]) < deadline_of(s->heap[m]))
            m = l;
        if (r < s->heap_len && deadline_of(s->heap[r]) < deadline_of(s->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

static void heap_push(ackd_store_t *s, ackd_store_op_t *op)
{
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = ackd_realloc(s->heap, (size_t)s->heap_cap * sizeof *s->heap);
    }
    op->heap_idx = s->heap_len;
    s->heap[s->heap_len++] = op;
    heap_up(s, op->heap_idx);
}

static void heap_remove(ackd_store_t *s, ackd_store_op_t *op)
{
    int i = op->heap_idx;
    if (i < 0)
        return;
    op->heap_idx = -1;
    s->heap_len--;
    if (i == s->heap_len)
        return;
    s->heap[i] = s->heap[s->heap_len];
    s->heap[i]->heap_idx = i;
    heap_up(s, i);
    heap_down(s, s->heap[i]->heap_idx);
}

/* --- parked claims (lock held) --- */

static parked_list_t *parked_list(ackd_store_t *s, const char *queue, bool create)
{
    for (int i = 0; i < s->nparked_queues; i++)
        if (strcmp(s->parked[i].queue, queue) == 0)
            return &s->parked[i];
    if (!create)
        return NULL;
    if (s->nparked_queues == s->cap_parked) {
        /* grows under the lock; nobody keeps a list pointer across it */
        s->cap_parked = s->cap_parked ? s->cap_parked * 2 : 16;
        s->parked = ackd_realloc(s->parked, (size_t)s->cap_parked * sizeof *s->parked);
    }
    parked_list_t *l = &s->parked[s->nparked_queues++];
    l->queue = ackd_strdup(queue);
    l->head = l->tail = NULL;
    return l;
}

static void park(ackd_store_t *s, ackd_store_op_t *op)
{
    if (s->draining)
        op->park_until = 0;
    parked_list_t *l = parked_list(s, op->park_queue, true);
    op->where = W_PARKED;
    op->next = NULL;
    op->prev = l->tail;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    heap_push(s, op);
}

static void unpark_locked(ackd_store_t *s, ackd_store_op_t *op)
{
    parked_list_t *l = parked_list(s, op->park_queue, false);
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        l->tail = op->prev;
    op->next = op->prev = NULL;
    op->where = W_NONE;
    heap_remove(s, op);
}

/* --- watches (lock held) --- */

static size_t hash_id(const char *id, size_t nbuckets)
{
    return (size_t)(ackd_id_hash(id) & (nbuckets - 1));
}

static void watch_link(ackd_store_t *s, ackd_store_op_t *op)
{
    size_t b = hash_id(op->watch_id, s->nbuckets);
    op->prev = NULL;
    op->next = s->watch_buckets[b];
    if (op->next)
        op->next->prev = op;
    s->watch_buckets[b] = op;
}

static void watch_grow(ackd_store_t *s)
{
    ackd_store_op_t **old = s->watch_buckets;
    size_t oldn = s->nbuckets;
    s->nbuckets = oldn * 2;
    s->watch_buckets = ackd_calloc(s->nbuckets, sizeof *s->watch_buckets);
    for (size_t i = 0; i < oldn; i++) {
        for (ackd_store_op_t *op = old[i], *next; op; op = next) {
            next = op->next;
            watch_link(s, op);
        }
    }
    ackd_free(old);
}

static void watch_add(ackd_store_t *s, ackd_store_op_t *op)
{
    if (s->draining && (!op->takeable || s->drained_all))
        op->watch_until = 0;
    if (s->nwatches >= s->nbuckets * 2)
        watch_grow(s);
    op->where = W_WATCHING;
    watch_link(s, op);
    s->nwatches++;
    heap_push(s, op);
}

static void watch_remove(ackd_store_t *s, ackd_store_op_t *op)
{
    size_t b = hash_id(op->watch_id, s->nbuckets);
    if (op->prev)
        op->prev->next = op->next;
    else
        s->watch_buckets[b] = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    op->where = W_NONE;
    s->nwatches--;
    heap_remove(s, op);
}

/* Moves the watchers of `id` (only the takeable ones if asked) onto *out
 * (a list through ->next); returns how many. */
static int watch_take(ackd_store_t *s, const char *id, bool only_takeable, ackd_store_op_t **out)
{
    int n = 0;
    size_t b = hash_id(id, s->nbuckets);
    ackd_store_op_t *op = s->watch_buckets[b];
    while (op) {
        ackd_store_op_t *next = op->next;
        if (strcmp(op->watch_id, id) == 0 && (op->takeable || !only_takeable)) {
            watch_remove(s, op);
            op->next = *out;
            *out = op;
            n++;
        }
        op = next;
    }
    return n;
}

/* --- public entry points --- */

static void append_in(ackd_store_t *s, ackd_store_op_t *op)
{
    op->next = NULL;
    if (s->in_tail)
        s->in_tail->next = op;
    else
        s->in_head = op;
    s->in_tail = op;
    if (!op->lazy)
        s->in_eager++;
}

void ackd_store_submit(ackd_store_t *s, ackd_store_op_t *op)
{
    op->heap_idx = -1;
    op->where = W_NONE;
    pthread_mutex_lock(&s->lock);
    bool was_empty = s->in_head == NULL;
    append_in(s, op);
    if (was_empty || (s->lazy_waiting && !op->lazy))
        pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

int ackd_store_unpark(ackd_store_t *s, ackd_store_op_t *op)
{
    int was_waiting = 0;
    pthread_mutex_lock(&s->lock);
    if (op->where == W_PARKED) {
        unpark_locked(s, op);
        was_waiting = 1;
    } else if (op->where == W_WATCHING) {
        watch_remove(s, op);
        was_waiting = 1;
    }
    pthread_mutex_unlock(&s->lock);
    return was_waiting;
}

int ackd_store_take_watchers(ackd_store_t *s, const char *id, ackd_store_op_t **out)
{
    pthread_mutex_lock(&s->lock);
    int n = watch_take(s, id, true, out);
    pthread_mutex_unlock(&s->lock);
    return n;
}

void ackd_store_read(ackd_store_t *s, ackd_store_op_t *op)
{
    op->next = NULL;
    pthread_mutex_lock(&s->rlock);
    if (s->r_tail)
        s->r_tail->next = op;
    else
        s->r_head = op;
    s->r_tail = op;
    pthread_cond_signal(&s->rwake);
    pthread_mutex_unlock(&s->rlock);
}

/* --- the committer --- */

static void note_effects(ackd_store_t *s, ackd_store_op_t *op, bool *woke_all, const char **woke,
                         int *nwoke, int maxwoke)
{
    if (op->woke_all)
        *woke_all = true;
    if (op->woke_queue && *nwoke < maxwoke)
        woke[(*nwoke)++] = op->woke_queue;
    else if (op->woke_queue)
        *woke_all = true;
    if (op->due_hint && (s->next_due == 0 || op->due_hint < s->next_due))
        s->next_due = op->due_hint;
    if (op->expiry_hint && (s->next_expiry == 0 || op->expiry_hint < s->next_expiry))
        s->next_expiry = op->expiry_hint;
}

static void reset_effects(ackd_store_op_t *op)
{
    op->watch = false;
    op->nchanged_more = 0;
    op->woke_queue = NULL;
    op->woke_all = false;
    op->due_hint = 0;
    op->expiry_hint = 0;
    op->changed_id[0] = '\0';
    op->park_queue = NULL;
}

/* Runs parked claims of the woken queues inside the open transaction; the
 * ones that got work join `finished`, the others go back to `reparks`. */
static void serve_parked(ackd_store_t *s, int64_t now, bool all, const char **woke, int nwoke,
                         ackd_store_op_t **finished, ackd_store_op_t **reparks)
{
    ackd_store_op_t *taken = NULL;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nparked_queues; i++) {
        parked_list_t *l = &s->parked[i];
        bool hit = all;
        for (int k = 0; !hit && k < nwoke; k++)
            hit = strcmp(woke[k], l->queue) == 0;
        while (hit && l->head) {
            ackd_store_op_t *op = l->head;
            unpark_locked(s, op);
            op->next = taken;
            taken = op;
        }
    }
    pthread_mutex_unlock(&s->lock);
    /* oldest first: the list was built reversed */
    ackd_store_op_t *rev = NULL;
    while (taken) {
        ackd_store_op_t *n = taken->next;
        taken->next = rev;
        rev = taken;
        taken = n;
    }
    for (ackd_store_op_t *op = rev, *next; op; op = next) {
        next = op->next;
        const char *queue = op->park_queue;
        reset_effects(op);
        op->now = now;
        op->rc = op->apply(op, s->b, s->wconn);
        if (op->park_queue) {
            op->next = *reparks;
            *reparks = op;
        } else {
            (void)queue;
            op->next = *finished;
            *finished = op;
        }
    }
}

/* Claims of this batch that found nothing before a later operation of the
 * same batch made their queue ready: they are not on the parked lists yet,
 * so serve_parked cannot see them. They run again here, oldest first, in the
 * same transaction; those still empty-handed stay in `reparks`. */
static void serve_batch_reparks(ackd_store_t *s, int64_t now, bool all, const char **woke,
                                int nwoke, ackd_store_op_t **finished, ackd_store_op_t **reparks)
{
    ackd_store_op_t *oldest = NULL;
    while (*reparks) { /* the list was built newest first */
        ackd_store_op_t *op = *reparks;
        *reparks = op->next;
        op->next = oldest;
        oldest = op;
    }
    for (ackd_store_op_t *op = oldest, *next; op; op = next) {
        next = op->next;
        bool hit = all;
        for (int k = 0; !hit && k < nwoke; k++)
            hit = strcmp(woke[k], op->park_queue) == 0;
        if (hit) {
            reset_effects(op);
            op->now = now;
            op->rc = op->apply(op, s->b, s->wconn);
        }
        if (op->park_queue) {
            op->next = *reparks;
            *reparks = op;
        } else {
            op->next = *finished;
            *finished = op;
        }
    }
}

static void run_read(ackd_store_t *s, ackd_store_op_t *op, ackd_store_conn_t *c)
{
    op->now = ackd_now_ms();
    op->rc = op->apply ? op->apply(op, s->b, c) : 0;
    op->done(op);
}

/* A watcher woke (or its wait ran out): it reads again and either waits on
 * or finishes. Committer thread, between batches, so nothing is missed. */
static void rerun_watch(ackd_store_t *s, ackd_store_op_t *op)
{
    reset_effects(op);
    op->now = ackd_now_ms();
    op->rc = op->apply(op, s->b, s->wconn);
    if (op->watch && op->rc == 0) {
        /* apply decides whether a wait that ran out ends the watch (long
         * polls) or goes on (streams, which send a heartbeat); shutting
         * down, none goes on: a stream ends with what it read (a watch
         * added again would expire at once, again and again) */
        pthread_mutex_lock(&s->lock);
        bool go_on = !s->draining || (op->takeable && !s->drained_all);
        pthread_mutex_unlock(&s->lock);
        if (go_on) {
            if (op->wake)
                op->wake(op);
            pthread_mutex_lock(&s->lock);
            watch_add(s, op);
            pthread_mutex_unlock(&s->lock);
            return;
        }
    }
    op->watch = false;
    op->done(op);
}

/* Deadlines that passed: parked claims answer empty, watches re-read. */
static void fire_deadlines(ackd_store_t *s, int64_t now)
{
    ackd_store_op_t *due = NULL;
    pthread_mutex_lock(&s->lock);
    while (s->heap_len > 0 && deadline_of(s->heap[0]) <= now) {
        ackd_store_op_t *op = s->heap[0];
        int was = op->where;
        if (was == W_PARKED)
            unpark_locked(s, op);
        else
            watch_remove(s, op);
        op->where = was == W_PARKED ? W_FIRING_PARKED : W_FIRING_WATCH;
        op->next = due;
        due = op;
    }
    pthread_mutex_unlock(&s->lock);
    for (ackd_store_op_t *op = due, *next; op; op = next) {
        next = op->next;
        /* where stays W_FIRING_*: it was written under the lock, which
         * ackd_store_unpark reads it under, and it says what matters (no
         * longer parked or watching) */
        int was = op->where;
        op->parked_expired = true;
        if (was == W_FIRING_PARKED) {
            op->park_queue = NULL;
            op->rc = 0;
            op->done(op);
        } else {
            rerun_watch(s, op);
        }
    }
}

static void wake_watchers(ackd_store_t *s, char (*ids)[ACKD_ID_MAX], int n)
{
    ackd_store_op_t *list = NULL;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < n; i++)
        watch_take(s, ids[i], false, &list);
    pthread_mutex_unlock(&s->lock);
    for (ackd_store_op_t *op = list, *next; op; op = next) {
        next = op->next;
        op->parked_expired = false;
        rerun_watch(s, op);
    }
}

/* Timers the store runs by itself: expiry, delayed tasks, purges; `held`
 * while writes fail: their times are only read again. */
static void internal_ops(ackd_store_t *s, int64_t now, bool held)
{
    if (s->recheck_timers) {
        s->b->next_due(s->wconn, now, &s->next_due);
        s->b->next_expiry(s->wconn, &s->next_expiry);
        s->recheck_timers = false;
    }
    if (held)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->next_expiry && s->next_expiry <= now && s->hooks.make_expire_op) {
        ackd_store_op_t *op = s->hooks.make_expire_op(s->hooks.data);
        if (op) {
            op->heap_idx = -1;
            append_in(s, op);
        }
        s->next_expiry = 0;
        s->recheck_timers = true;
    }
    if (s->next_due && s->next_due <= now) {
        s->next_due = 0;
        s->recheck_timers = true;
    }
    if (s->next_purge && s->next_purge <= now && s->hooks.make_purge_op) {
        ackd_store_op_t *op = s->hooks.make_purge_op(s->hooks.data);
        if (op) {
            op->heap_idx = -1;
            append_in(s, op);
        }
        s->next_purge = now + s->hooks.purge_interval_ms;
    }
    pthread_mutex_unlock(&s->lock);
}

static int64_t min_nonzero(int64_t a, int64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* `held`: writes fail, so the timed work waits for the next probe. */
static void sleep_until_work(ackd_store_t *s, bool held)
{
    int64_t until = held ? s->retry_at : min_nonzero(s->next_due, s->next_expiry);
    if (!held)
        until = min_nonzero(until, s->next_purge);
    if (s->heap_len > 0)
        until = min_nonzero(until, deadline_of(s->heap[0]));
    if (until == 0) {
        pthread_cond_wait(&s->wake, &s->lock);
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(until / 1000), .tv_nsec = (long)(until % 1000) * 1000000};
    pthread_cond_timedwait(&s->wake, &s->lock, &ts);
}

/* Only lazy operations are queued: sleeps until an eager one comes or
 * ACKD_STORE_LAZY_US after the first, and returns true; false when that
 * time has passed (run them now). Lock held. */
static bool wait_for_company(ackd_store_t *s)
{
    int64_t now = ackd_mono_us();
    if (s->lazy_until == 0)
        s->lazy_until = now + ACKD_STORE_LAZY_US;
    if (now >= s->lazy_until)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + (s->lazy_until - now) * 1000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    s->lazy_waiting = true;
    pthread_cond_timedwait(&s->wake, &s->lock, &ts);
    s->lazy_waiting = false;
    return true;
}

static bool due_timer_fired(ackd_store_t *s, int64_t now)
{
    return s->next_due && s->next_due <= now;
}

#define MAX_WOKE ((int)(sizeof ((batch_t *)0)->woke / sizeof(const char *)))

/* The batch this committer thread runs, for take_parked; NULL outside one. */
static __thread batch_t *running;

ackd_store_op_t *ackd_store_take_parked(const char *queue)
{
    batch_t *bt = running;
    if (!bt || bt->woke_all)
        return NULL;
    ackd_store_t *s = bt->store;
    for (int k = 0; k < bt->nwoke; k++)
        if (strcmp(bt->woke[k], queue) == 0)
            return NULL;
    for (int k = 0; k < bt->nopen; k++) {
        if (bt->open[k]->room > 0 && strcmp(bt->open_queue[k], queue) == 0) {
            bt->open[k]->room--;
            return bt->open[k];
        }
    }
    for (int k = 0; k < bt->nmissed; k++)
        if (strcmp(bt->missed[k], queue) == 0)
            return NULL;
    for (ackd_store_op_t *op = bt->taken; op; op = op->next) {
        if (op->room > 0 && strcmp(op->park_queue, queue) == 0) {
            op->room--;
            return op;
        }
    }
    pthread_mutex_lock(&s->lock);
    parked_list_t *l = s->draining ? NULL : parked_list(s, queue, false);
    ackd_store_op_t *op = l ? l->head : NULL;
    while (op && op->room <= 0)
        op = op->next;
    if (op)
        unpark_locked(s, op); /* ours now: ackd_store_unpark leaves it */
    pthread_mutex_unlock(&s->lock);
    if (!op) {
        if (bt->nmissed < (int)(sizeof bt->missed / sizeof bt->missed[0]))
            bt->missed[bt->nmissed++] = queue; /* the enqueue's task: alive all batch */
        return NULL;
    }
    op->room--;
    op->next = NULL; /* park_queue stays set while the batch runs */
    if (bt->taken_tail)
        bt->taken_tail->next = op;
    else
        bt->taken = op;
    bt->taken_tail = op;
    return op;
}

void ackd_store_offer(ackd_store_op_t *op, const char *queue, int room)
{
    batch_t *bt = running;
    if (!bt || room <= 0 || bt->nopen == (int)(sizeof bt->open / sizeof bt->open[0]))
        return;
    /* the queue has nothing due now: what an earlier op made due was taken */
    for (int k = 0; k < bt->nwoke; k++) {
        if (strcmp(bt->woke[k], queue) == 0)
            bt->woke[k--] = bt->woke[--bt->nwoke];
    }
    op->room = room;
    bt->open[bt->nopen] = op;
    bt->open_queue[bt->nopen++] = queue;
}

/* The error of the first operation of the list whose apply failed, or 0. */
static int first_failure(const ackd_store_op_t *list)
{
    for (const ackd_store_op_t *op = list; op; op = op->next)
        if (op->rc < 0)
            return op->rc;
    return 0;
}

/* A commit's sync failed. Its frames may be on disk or not, and the kernel
 * may have marked the pages it could not write as clean: a later commit
 * that syncs would then report success over a hole that recovery stops at,
 * losing what was acknowledged after it. So ackd stops here, like
 * PostgreSQL's PANIC on a failed fsync, without answering the batch (its
 * clients get no answer, not a false one), and recovery at the next start
 * reads the log as the disk has it. */
static void sync_failed(void)
{
    ACKD_LOG(ACKD_LOG_ERROR,
             "fatal: a commit could not be synced to disk; ackd stops without answering it, so "
             "that nothing it acknowledges later can be lost. Check the disk, then start ackd "
             "again: it recovers what is on disk",
             LOG_INT("exit_code", ACKD_EXIT_SYNC));
    _exit(ACKD_EXIT_SYNC);
}

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 1000
#define FAIL_LOG_EVERY_MS 10000

int ackd_store_health(ackd_store_t *s, int64_t *since)
{
    int rc = atomic_load(&s->write_rc);
    if (since)
        *since = rc ? atomic_load(&s->failing_since) : 0;
    return rc;
}

/* Committer: a commit (a batch's or a probe's) succeeded or failed with rc.
 * Writes count as working again after a batch commits, or after a probe
 * commits with no batch failing since the probe before: a probe writes one
 * page, which may fit where batches do not. A failing store logs when
 * writes begin to fail, every FAIL_LOG_EVERY_MS while they do, and when they
 * work again, not once per batch. */
static void note_write(ackd_store_t *s, int rc, const char *why, bool probe)
{
    int64_t now = ackd_now_ms();
    int was = atomic_load(&s->write_rc);
    if (rc == 0 && !was)
        return;
    if (probe) {
        if (rc || s->failed_since_probe)
            s->retry_ms = s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->retry_ms * 2;
        s->retry_at = now + s->retry_ms;
    }
    if (rc == 0) {
        if (probe && s->failed_since_probe) {
            s->failed_since_probe = false;
            return;
        }
        ACKD_LOG(ACKD_LOG_WARN, "store writes work again",
                 LOG_INT("failed_batches", s->failed_batches),
                 LOG_INT("failing_ms", now - atomic_load(&s->failing_since)));
        s->failed_batches = 0;
        atomic_store(&s->failing_since, 0);
        atomic_store(&s->write_rc, 0);
        return;
    }
    s->failed_since_probe = !probe;
    if (!probe)
        s->failed_batches++;
    if (!was) {
        atomic_store(&s->failing_since, now);
        s->retry_ms = RETRY_MIN_MS;
        s->retry_at = now + s->retry_ms;
        s->fail_logged_at = now;
        ACKD_LOG(ACKD_LOG_ERROR, "store writes fail: operations are answered with an error",
                 LOG_STR("error", ackd_strerror(rc)), LOG_STR("detail", why));
    } else if (now - s->fail_logged_at >= FAIL_LOG_EVERY_MS) {
        s->fail_logged_at = now;
        ACKD_LOG(ACKD_LOG_ERROR, "store writes still fail", LOG_STR("error", ackd_strerror(rc)),
                 LOG_INT("failed_batches", s->failed_batches),
                 LOG_INT("failing_ms", now - atomic_load(&s->failing_since)));
    }
    atomic_store(&s->write_rc, rc);
}

static void run_batch(ackd_store_t *s, ackd_store_op_t *batch, int64_t now, bool timer_woke)
{
    const ackd_store_backend_t *b = s->b;
    batch_t bt = {.store = s, .woke_all = timer_woke};
    const char **woke = bt.woke;
    ackd_store_op_t *finished = NULL, *reparks = NULL, *watchers = NULL;
    size_t nchanged = 0, capchanged = 0;
    char (*changed)[ACKD_ID_MAX] = NULL;

    running = &bt;
    int rc = b->begin(s->wconn);
    for (ackd_store_op_t *op = batch, *next; op; op = next) {
        next = op->next;
        reset_effects(op);
        op->now = now;
        op->rc = rc ? rc : op->apply(op, b, s->wconn);
        note_effects(s, op, &bt.woke_all, woke, &bt.nwoke, MAX_WOKE);
        if (op->park_queue) {
            op->next = reparks;
            reparks = op;
        } else if (op->watch && op->rc == 0) {
            if (op->wake)
                op->wake(op); /* a stream's first events (its apply only reads) */
            op->next = watchers;
            watchers = op;
        } else {
            op->watch = false;
            op->next = finished;
            finished = op;
        }
    }
    ackd_store_op_t *served = NULL; /* claims that waited: answered first */
    if (rc == 0 && (bt.woke_all || bt.nwoke)) {
        serve_parked(s, now, bt.woke_all, woke, bt.nwoke, &served, &reparks);
        serve_batch_reparks(s, now, bt.woke_all, woke, bt.nwoke, &finished, &reparks);
    }
    running = NULL;
    for (int k = 0; k < bt.nopen; k++)
        bt.open[k]->room = 0;
    /* claims handed tasks as they were written: served too, oldest last
     * (served is newest first) */
    for (ackd_store_op_t *op = bt.taken, *next; op; op = next) {
        next = op->next;
        reset_effects(op); /* its parking run's; park_queue too */
        op->room = 0;
        op->now = now;
        op->rc = 0;
        op->next = served;
        served = op;
    }
    /* both lists are newest first and are reversed below: served goes at
     * the tail of finished, so its answers leave first */
    if (served) {
        ackd_store_op_t **tail = &finished;
        while (*tail)
            tail = &(*tail)->next;
        *tail = served;
    }
    for (ackd_store_op_t *op = finished; op; op = op->next) {
        note_effects(s, op, &bt.woke_all, woke, &bt.nwoke, MAX_WOKE);
        for (int k = -1; k < op->nchanged_more; k++) {
            const char *id = k < 0 ? op->changed_id : op->changed_more[k];
            if (!id[0])
                continue;
            if (nchanged == capchanged) {
                capchanged = capchanged ? capchanged * 2 : 64;
                changed = ackd_realloc(changed, capchanged * sizeof *changed);
            }
            memcpy(changed[nchanged++], id, ACKD_ID_MAX);
        }
    }
    /* An operation that failed part-way (a store error, not a denial) may
     * have written half of its change, and SQLite advises a ROLLBACK after an
     * I/O, disk-full or memory error anyway: the whole batch is rolled back
     * and every operation in it answered with the error, so nothing
     * half-done is committed. (A savepoint per operation would keep the
     * others, but cost 15 % of the submit rate.) */
    const char *failed = NULL;
    if (rc == 0 && ((rc = first_failure(finished)) || (rc = first_failure(reparks))))
        failed = "an operation failed: the batch is rolled back";
    if (rc == 0 && (rc = b->commit(s->wconn)))
        failed = "store commit failed";
    if (rc == ACKD_ESYNC)
        sync_failed(); /* does not return */
    if (rc) {
        b->rollback(s->wconn);
        nchanged = 0;
        s->recheck_timers = true;
    }
    /* a batch of reads commits whatever the disk: it proves nothing */
    if (rc || b->committed_writes(s->wconn))
        note_write(s, rc, failed ? failed : "the transaction could not begin", false);
    /* answers leave only now that the batch is durable (or failed) */
    ackd_store_op_t *rev = NULL;
    while (finished) {
        ackd_store_op_t *n = finished->next;
        finished->next = rev;
        rev = finished;
        finished = n;
    }
    for (ackd_store_op_t *op = rev, *next; op; op = next) {
        next = op->next;
        if (rc)
            op->rc = rc;
        op->done(op);
    }
    pthread_mutex_lock(&s->lock);
    for (ackd_store_op_t *op = reparks, *next; op; op = next) {
        next = op->next;
        if (rc) {
            op->park_queue = NULL;
            op->rc = rc;
            op->next = finished;
            finished = op;
            continue;
        }
        park(s, op);
    }
    for (ackd_store_op_t *op = watchers, *next; op; op = next) {
        next = op->next;
        if (rc) {
            op->watch = false;
            op->rc = rc;
            op->next = finished;
            finished = op;
            continue;
        }
        watch_add(s, op);
    }
    pthread_mutex_unlock(&s->lock);
    for (ackd_store_op_t *op = finished, *next; op; op = next) {
        next = op->next;
        op->done(op);
    }
    if (nchanged)
        wake_watchers(s, changed, (int)nchanged);
    ackd_free(changed);
}

static void *committer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "ackd-committer"); /* top -H, perf, gdb */
    ackd_store_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop || s->in_head) {
        int64_t now = ackd_now_ms();
        /* while writes fail, the store's own timed writes wait for a probe
         * that commits (see ackd_store_health) */
        bool failing = atomic_load(&s->write_rc) != 0;
        bool held = failing && now < s->retry_at;
        if (failing && !held && !s->stop) {
            pthread_mutex_unlock(&s->lock);
            int rc = s->b->probe(s->wconn);
            if (rc == ACKD_ESYNC)
                sync_failed();
            note_write(s, rc, "a probe write failed", true);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        bool timers_due = (s->heap_len > 0 && deadline_of(s->heap[0]) <= now) ||
                          (!held && ((s->next_expiry && s->next_expiry <= now) ||
                                     (s->next_purge && s->next_purge <= now) ||
                                     due_timer_fired(s, now)));
        if (!s->in_head && !timers_due && !s->recheck_timers) {
            if (s->stop)
                break;
            sleep_until_work(s, held);
            continue;
        }
        if (s->in_head && s->in_eager == 0 && !timers_due && !s->recheck_timers && !s->stop &&
            !s->draining && wait_for_company(s))
            continue;
        s->lazy_until = 0;
        ackd_store_op_t *batch = s->in_head;
        s->in_head = s->in_tail = NULL;
        s->in_eager = 0;
        bool due_fired = !held && due_timer_fired(s, now);
        pthread_mutex_unlock(&s->lock);

        internal_ops(s, now, held);
        pthread_mutex_lock(&s->lock);
        /* internal_ops may have queued an expiry or purge op; ops submitted
         * while it ran (the lock was free) come along, so the batch's time
         * is read again: an op never runs at a time before it was sent */
        if (s->in_head) {
            ackd_store_op_t *extra = s->in_head;
            s->in_head = s->in_tail = NULL;
            s->in_eager = 0;
            if (!batch) {
                batch = extra;
            } else {
                ackd_store_op_t *t = batch;
                while (t->next)
                    t = t->next;
                t->next = extra;
            }
            int64_t later = ackd_now_ms();
            if (later > now)
                now = later;
        }
        pthread_mutex_unlock(&s->lock);
        if (batch || due_fired)
            run_batch(s, batch, now, due_fired);
        fire_deadlines(s, ackd_now_ms());
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- readers --- */

static void *reader_main(void *arg)
{
    pthread_setname_np(pthread_self(), "ackd-reader"); /* top -H, perf, gdb */
    reader_t *r = arg;
    ackd_store_t *s = r->store;
    pthread_mutex_lock(&s->rlock);
    for (;;) {
        while (!s->r_head && !s->rstop)
            pthread_cond_wait(&s->rwake, &s->rlock);
        if (!s->r_head)
            break;
        ackd_store_op_t *op = s->r_head;
        s->r_head = op->next;
        if (!s->r_head)
            s->r_tail = NULL;
        pthread_mutex_unlock(&s->rlock);
        run_read(s, op, r->conn);
        pthread_mutex_lock(&s->rlock);
    }
    pthread_mutex_unlock(&s->rlock);
    return NULL;
}

/* --- life cycle --- */

int ackd_store_open(ackd_store_t **out, const ackd_store_backend_t *backend, const char *location,
                    bool sync_full, int readers, const ackd_store_hooks_t *hooks, char *err,
                    size_t errlen)
{
    ackd_store_t *s = ACKD_NEW(ackd_store_t);
    s->b = backend;
    if (hooks)
        s->hooks = *hooks;
    int rc = backend->open(location, true, sync_full, &s->wconn, err, errlen);
    if (rc) {
        ackd_free(s);
        return rc;
    }
    s->nreaders = readers > 0 ? readers : 1;
    s->readers = ackd_calloc((size_t)s->nreaders, sizeof *s->readers);
    for (int i = 0; i < s->nreaders; i++) {
        rc = backend->open(location, false, sync_full, &s->readers[i].conn, err, errlen);
        if (rc) {
            for (int k = 0; k < i; k++)
                backend->close(s->readers[k].conn);
            backend->close(s->wconn);
            ackd_free(s->readers);
            ackd_free(s);
            return rc;
        }
        s->readers[i].store = s;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->rwake, NULL);
    s->nbuckets = WATCH_BUCKETS_MIN;
    s->watch_buckets = ackd_calloc(s->nbuckets, sizeof *s->watch_buckets);
    /* start-up recovery: leases that expired while we were down are handled
     * on the first turn, delayed tasks are found by the first recheck */
    s->next_expiry = 1;
    s->recheck_timers = true;
    if (s->hooks.make_purge_op && s->hooks.purge_interval_ms > 0)
        s->next_purge = ackd_now_ms() + s->hooks.purge_interval_ms;
    pthread_create(&s->committer, NULL, committer_main, s);
    for (int i = 0; i < s->nreaders; i++)
        pthread_create(&s->readers[i].thread, NULL, reader_main, &s->readers[i]);
    *out = s;
    return 0;
}

/* Lock held: the waiters' deadlines become now (parked claims, long polls,
 * streams; and, with all, the takeable watches of route clients, whose call
 * may still finish), then the heap is made again. */
static void expire_waiters_locked(ackd_store_t *s, bool all)
{
    for (int i = 0; i < s->heap_len; i++) {
        ackd_store_op_t *op = s->heap[i];
        if (op->where == W_PARKED)
            op->park_until = 0;
        else if (all || !op->takeable)
            op->watch_until = 0;
    }
    for (int i = s->heap_len / 2 - 1; i >= 0; i--)
        heap_down(s, i);
    pthread_cond_signal(&s->wake);
}

void ackd_store_drain_waiters(ackd_store_t *s, bool all)
{
    pthread_mutex_lock(&s->lock);
    s->draining = true;
    s->drained_all |= all;
    expire_waiters_locked(s, s->drained_all);
    pthread_mutex_unlock(&s->lock);
}

void ackd_store_close(ackd_store_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    s->draining = s->drained_all = true;
    expire_waiters_locked(s, true);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->committer, NULL);
    fire_deadlines(s, INT64_MAX);
    pthread_mutex_lock(&s->rlock);
    s->rstop = true;
    pthread_cond_broadcast(&s->rwake);
    pthread_mutex_unlock(&s->rlock);
    for (int i = 0; i < s->nreaders; i++) {
        pthread_join(s->readers[i].thread, NULL);
        s->b->close(s->readers[i].conn);
    }
    s->b->close(s->wconn);
    for (int i = 0; i < s->nparked_queues; i++)
        ackd_free(s->parked[i].queue);
    ackd_free(s->parked);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->rlock);
    pthread_cond_destroy(&s->rwake);
    ackd_free(s->watch_buckets);
    ackd_free(s->heap);
    ackd_free(s->readers);
    ackd_free(s);
}
