/* sender.c - the webhook sender's thread (see sender.h).
 *
 * Loop phases: inbox (claims answered by the store, and records it failed),
 * resolve (one lookup per try, on libuv's thread pool), guard (every address
 * checked), call (http/client.c), record (the try and what follows, as a
 * store operation; one the store fails is recorded again after a backoff,
 * so a delivered webhook is not sent again when its lease runs out). */
#include "webhook/sender.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/units.h"
#include "http/client.h"
#include "queue/redo.h"
#include "queue/retry.h"
#include "webhook/deliver.h"

#define MAX_INFLIGHT 256
#define CLAIM_WAIT_MS 30000
#define LEASE_MARGIN_MS 10000

struct ackd_webhook_sender {
    const ackd_config_t *cfg;
    ackd_tq_t *tq;
    ackd_guard_t guard;
    int64_t *schedule;
    int nschedule;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t grace_timer;
    ackd_http_client_t *client;
    int inflight;                 /* resolving or calling */
    bool claiming;
    ackd_tq_op_t *claim;
    /* a claim the store failed (a full disk): the next waits claim_backoff_ms */
    int64_t claim_backoff_ms;
    uint64_t claim_after;         /* uv_now */
    uv_timer_t claim_timer;
    ackd_wh_call_t *calls;
    pthread_mutex_t lock;         /* the inbox, shared with store threads */
    ackd_tq_op_t **inbox;
    int ninbox, capinbox;
    ackd_tq_redo_t unrecorded;   /* tries the store failed to record: recorded again */
    bool closed, stop_requested;
    int64_t grace_ms;
    bool stopping, closing;
};

static void maybe_claim(ackd_webhook_sender_t *s);
static void begin_stop(ackd_webhook_sender_t *s);
static void on_grace_over(uv_timer_t *t);

static void post_inbox(ackd_webhook_sender_t *s, ackd_tq_op_t *op);

/* Store thread: a try was recorded, or the store failed to (back to the
 * loop, to be recorded again). */
static void on_recorded(ackd_tq_op_t *op)
{
    if (ackd_tq_store_failed(op)) {
        post_inbox(op->data, op);
        return;
    }
    ackd_tq_op_free(op);
}

static void unlink_call(ackd_webhook_sender_t *s, ackd_wh_call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        s->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    s->inflight--;
}

/* Records the try and frees the call; then claims more. */
static void finish(ackd_webhook_sender_t *s, ackd_wh_call_t *call, ackd_delivery_try_t *t,
                   int outcome, int64_t next_at)
{
    ackd_tq_op_t *op = ackd_tq_op_new(s->tq, ACKD_TQ_DELIVERY_RECORD, on_recorded, s);
    memcpy(op->id, call->d.id, ACKD_ID_MAX);
    op->try_ = *t;
    op->try_.n = call->d.tries; /* the number this try was claimed as */
    op->outcome = outcome;
    op->next_at = next_at;
    ACKD_LOG(outcome == ACKD_DELIVERY_DONE ? ACKD_LOG_INFO : ACKD_LOG_WARN, "webhook try",
             LOG_TASK_AS(call->d.task_id, &call->d), LOG_STR("delivery_id", call->d.id),
             LOG_INT("try", call->d.tries), LOG_INT("status", t->status),
             LOG_STR("error", t->error),
             LOG_STR("outcome", outcome == ACKD_DELIVERY_DONE     ? "delivered"
                                : outcome == ACKD_DELIVERY_RETRY ? "retry"
                                                                 : "given up"));
    ackd_tq_run(op);
    unlink_call(s, call);
    ackd_wh_free(call);
    if (s->stopping) {
        /* not begin_stop() here: it frees the HTTP client, whose loop may
         * be running this from a done callback; the grace timer calls it */
        if (s->inflight == 0)
            uv_timer_start(&s->grace_timer, on_grace_over, 0, 0);
        return;
    }
    maybe_claim(s);
}

static void refuse(ackd_webhook_sender_t *s, ackd_wh_call_t *call, const char *why, int outcome,
                   int64_t next_at)
{
    ackd_delivery_try_t t = {.at = ackd_now_ms(), .error = ackd_strdup(why)};
    finish(s, call, &t, outcome, next_at);
}

#define MAX_SCHEDULE 64

/* Delays from "5s 5m 30m" into out; returns how many. */
static int parse_delays(const char *text, int64_t *out, int max)
{
    int n = 0;
    for (const char *p = text; p && *p && n < max;) {
        size_t len = strcspn(p, " ");
        char item[32];
        if (len && len < sizeof item) {
            memcpy(item, p, len);
            item[len] = '\0';
            if (ackd_parse_duration_ms(item, &out[n]) == 0)
                n++;
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    return n;
}

/* The queue's own webhook settings win over [webhooks]. */
static const ackd_queue_conf_t *queue_of(const ackd_webhook_sender_t *s, const ackd_wh_call_t *call)
{
    return call->d.queue ? ackd_config_queue(s->cfg, call->d.queue) : NULL;
}

/* The secrets that sign a delivery: its queue's, else its tenant's, else
 * [webhooks] secrets. buf holds a tenant's list. */
static const char *secrets_for(const ackd_webhook_sender_t *s, const ackd_wh_call_t *call,
                               char *buf, size_t buflen)
{
    const ackd_queue_conf_t *q = queue_of(s, call);
    if (q && q->webhook_secrets)
        return q->webhook_secrets;
    const char *pairs = s->cfg->webhooks.tenant_secrets;
    size_t used = 0, tlen = call->d.tenant ? strlen(call->d.tenant) : 0;
    buf[0] = '\0';
    for (const char *p = pairs; tlen && p && *p;) {
        size_t len = strcspn(p, " ");
        if (len > tlen + 1 && strncmp(p, call->d.tenant, tlen) == 0 && p[tlen] == ':' &&
            used + len - tlen + 1 < buflen) {
            used += (size_t)snprintf(buf + used, buflen - used, "%s%.*s", used ? " " : "",
                                     (int)(len - tlen - 1), p + tlen + 1);
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    return used ? buf : s->cfg->webhooks.secrets;
}

static int schedule_for(const ackd_webhook_sender_t *s, const ackd_wh_call_t *call, int64_t *out)
{
    const ackd_queue_conf_t *q = queue_of(s, call);
    if (q && q->webhook_schedule)
        return parse_delays(q->webhook_schedule, out, MAX_SCHEDULE);
    int n = s->nschedule < MAX_SCHEDULE ? s->nschedule : MAX_SCHEDULE;
    memcpy(out, s->schedule, (size_t)n * sizeof *out);
    return n;
}

static void on_done(CURL *easy, CURLcode rc, void *data)
{
    (void)easy;
    ackd_wh_call_t *call = data;
    ackd_webhook_sender_t *s = call->owner;
    ackd_delivery_try_t t;
    int outcome = ACKD_DELIVERY_GIVE_UP;
    int64_t next_at = 0, schedule[MAX_SCHEDULE];
    int nschedule = schedule_for(s, call, schedule);
    ackd_wh_outcome(call, rc, schedule, nschedule, ackd_now_ms(), &t, &outcome, &next_at);
    finish(s, call, &t, outcome, next_at);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    ackd_wh_call_t *call = req->data;
    ackd_webhook_sender_t *s = call->owner;
    if (status == UV_ECANCELED || s->closing) {
        uv_freeaddrinfo(res);
        unlink_call(s, call);
        ackd_wh_free(call);
        return;
    }
    if (status < 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot resolve %s: %s", call->host, uv_strerror(status));
        /* DNS trouble is usually passing: the schedule decides */
        int64_t schedule[MAX_SCHEDULE];
        int nschedule = schedule_for(s, call, schedule);
        int idx = call->d.tries - 1;
        if (idx < nschedule)
            refuse(s, call, why, ACKD_DELIVERY_RETRY, ackd_now_ms() + schedule[idx]);
        else
            refuse(s, call, why, ACKD_DELIVERY_GIVE_UP, 0);
        return;
    }
    char why[512];
    char tenant_secrets[1024];
    int rc = ackd_wh_prepare(call, &s->cfg->webhooks,
                             secrets_for(s, call, tenant_secrets, sizeof tenant_secrets), &s->guard,
                             res, why, sizeof why);
    uv_freeaddrinfo(res);
    if (rc) {
        refuse(s, call, why, ACKD_DELIVERY_GIVE_UP, 0);
        return;
    }
    call->started_us = ackd_mono_us();
    ackd_http_client_start(s->client, call->easy, on_done, call);
}

static void start_delivery(ackd_webhook_sender_t *s, ackd_delivery_t *d)
{
    ackd_wh_call_t *call = ACKD_NEW(ackd_wh_call_t);
    call->d = *d; /* moved */
    memset(d, 0, sizeof *d);
    call->owner = s;
    call->next = s->calls;
    if (s->calls)
        s->calls->prev = call;
    s->calls = call;
    s->inflight++;
    const char *why;
    if (ackd_wh_parse_url(call, &why) != 0) {
        refuse(s, call, why, ACKD_DELIVERY_GIVE_UP, 0);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    call->gai.data = call;
    int rc = uv_getaddrinfo(&s->loop, &call->gai, on_resolved, call->host, call->port, &hints);
    if (rc)
        refuse(s, call, uv_strerror(rc), ACKD_DELIVERY_RETRY, ackd_now_ms() + 1000);
}

/* Store thread: a claim finished. */
static void on_claimed(ackd_tq_op_t *op)
{
    post_inbox(op->data, op);
}

/* Store thread: hands op to the loop. */
static void post_inbox(ackd_webhook_sender_t *s, ackd_tq_op_t *op)
{
    pthread_mutex_lock(&s->lock);
    if (s->closed) {
        pthread_mutex_unlock(&s->lock);
        ackd_tq_op_free(op); /* their leases run out and they are tried again */
        return;
    }
    if (s->ninbox == s->capinbox) {
        s->capinbox = s->capinbox ? s->capinbox * 2 : 8;
        s->inbox = ackd_realloc(s->inbox, (size_t)s->capinbox * sizeof *s->inbox);
    }
    s->inbox[s->ninbox++] = op;
    /* under the lock: once the sender has set `closed` (under it), no wake-up
     * is on its way. Sent after the unlock, one could reach a loop that had
     * stopped and been closed meanwhile: libuv aborts on the closed eventfd
     * (a silent SIGABRT at shutdown, twice in the ASan runs) */
    uv_async_send(&s->async);
    pthread_mutex_unlock(&s->lock);
}

static void maybe_claim(ackd_webhook_sender_t *s)
{
    if (s->stopping || s->claiming || s->inflight >= MAX_INFLIGHT)
        return;
    if (s->claim_after && uv_now(&s->loop) < s->claim_after)
        return; /* the claim timer claims again */
    ackd_tq_op_t *op = ackd_tq_op_new(s->tq, ACKD_TQ_DELIVERY_CLAIM, on_claimed, s);
    op->max = MAX_INFLIGHT - s->inflight;
    op->lease_ms = s->cfg->webhooks.timeout_ms + LEASE_MARGIN_MS;
    op->wait_until = ackd_now_ms() + CLAIM_WAIT_MS;
    s->claiming = true;
    s->claim = op;
    ackd_tq_run(op);
}

static void on_grace_over(uv_timer_t *t)
{
    begin_stop(t->data);
}

static void on_claim_timer(uv_timer_t *t)
{
    maybe_claim(t->data);
}

/* A claim came back: after a store failure (not a denial) the next waits. */
static void claim_back(ackd_webhook_sender_t *s, const ackd_tq_op_t *op)
{
    if (ackd_tq_store_failed(op)) {
        int64_t b = s->claim_backoff_ms;
        s->claim_backoff_ms =
            ackd_backoff_next_ms(b, ACKD_STORE_RETRY_MIN_MS, ACKD_STORE_RETRY_MAX_MS);
        s->claim_after = uv_now(&s->loop) + (uint64_t)s->claim_backoff_ms;
        if (b == 0)
            ACKD_LOG(ACKD_LOG_WARN, "webhook claims fail: the store failed; claiming again after "
                     "a backoff", LOG_STR("detail", op->detail));
        uv_timer_start(&s->claim_timer, on_claim_timer, (uint64_t)s->claim_backoff_ms, 0);
    } else if (s->claim_backoff_ms) {
        ACKD_LOG(ACKD_LOG_INFO, "webhook claims work again");
        s->claim_backoff_ms = 0;
        s->claim_after = 0;
    }
}

/* A try the store failed to record, recorded again by a new op (the same
 * try, the same number). */
static void record_again(void *owner, ackd_tq_op_t *old)
{
    ackd_webhook_sender_t *s = owner;
    ackd_tq_op_t *op = ackd_tq_op_new(s->tq, ACKD_TQ_DELIVERY_RECORD, on_recorded, s);
    memcpy(op->id, old->id, ACKD_ID_MAX);
    op->try_ = old->try_;
    op->outcome = old->outcome;
    op->next_at = old->next_at;
    memset(&old->try_, 0, sizeof old->try_); /* moved */
    ackd_tq_op_free(old);
    ackd_tq_run(op);
}

/* Loop thread: the store failed to record a try. */
static void unrecorded_add(ackd_webhook_sender_t *s, ackd_tq_op_t *op)
{
    bool first = false;
    int64_t wait = ackd_tq_redo_add(&s->unrecorded, op, &first);
    if (wait)
        ACKD_LOG(first ? ACKD_LOG_WARN : ACKD_LOG_DEBUG,
                 "webhook try not recorded: the store failed; recording it again",
                 LOG_STR("delivery_id", op->id), LOG_STR("detail", op->detail),
                 LOG_INT("retry_in_ms", wait));
}

static void drop_unrecorded(ackd_webhook_sender_t *s)
{
    int n;
    ackd_tq_op_t **ops = ackd_tq_redo_take(&s->unrecorded, &n);
    for (int i = 0; i < n; i++) {
        ACKD_LOG(ACKD_LOG_WARN, "webhook try not recorded at shutdown: the delivery is tried "
                 "again when its lease expires", LOG_STR("delivery_id", ops[i]->id));
        ackd_tq_op_free(ops[i]);
    }
    ackd_free(ops);
}

static void on_inbox(uv_async_t *a)
{
    ackd_webhook_sender_t *s = a->data;
    pthread_mutex_lock(&s->lock);
    ackd_tq_op_t **ops = s->inbox;
    int n = s->ninbox;
    s->inbox = NULL;
    s->ninbox = s->capinbox = 0;
    bool stop = s->stop_requested;
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < n; i++) {
        ackd_tq_op_t *op = ops[i];
        if (op->kind == ACKD_TQ_DELIVERY_RECORD) {
            unrecorded_add(s, op);
            continue;
        }
        s->claiming = false;
        s->claim = NULL;
        claim_back(s, op);
        for (int k = 0; op->status == 0 && k < op->ndeliveries; k++)
            start_delivery(s, &op->deliveries[k]);
        ackd_tq_op_free(op);
    }
    ackd_free(ops);
    if (stop && !s->stopping) {
        s->stopping = true;
        if (s->claiming && ackd_tq_abandon(s->claim)) {
            s->claiming = false;
            s->claim = NULL;
        }
        if (s->inflight == 0)
            begin_stop(s);
        else
            uv_timer_start(&s->grace_timer, on_grace_over, (uint64_t)s->grace_ms, 0);
        return;
    }
    maybe_claim(s);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void begin_stop(ackd_webhook_sender_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    ackd_http_client_free(s->client);
    s->client = NULL;
    for (ackd_wh_call_t *c = s->calls, *next; c; c = next) {
        next = c->next;
        if (c->easy) {
            unlink_call(s, c);
            ackd_wh_free(c);
        } else {
            uv_cancel((uv_req_t *)&c->gai); /* on_resolved frees it */
        }
    }
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    ackd_tq_op_t **ops = s->inbox;
    int n = s->ninbox;
    s->inbox = NULL;
    s->ninbox = s->capinbox = 0;
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < n; i++)
        ackd_tq_op_free(ops[i]);
    ackd_free(ops);
    drop_unrecorded(s);
    uv_walk(&s->loop, close_handle, NULL);
}

static void thread_main(void *arg)
{
    pthread_setname_np(pthread_self(), "ackd-webhooks"); /* top -H, perf, gdb */
    ackd_webhook_sender_t *s = arg;
    maybe_claim(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void parse_schedule(ackd_webhook_sender_t *s, const char *text)
{
    s->schedule = ackd_calloc(MAX_SCHEDULE, sizeof *s->schedule);
    s->nschedule = parse_delays(text, s->schedule, MAX_SCHEDULE);
}

int ackd_webhook_sender_start(ackd_webhook_sender_t **out, const ackd_config_t *cfg, ackd_tq_t *tq)
{
    ackd_webhook_sender_t *s = ACKD_NEW(ackd_webhook_sender_t);
    s->cfg = cfg;
    s->tq = tq;
    if (ackd_guard_init(&s->guard, cfg->webhooks.allow_private) != 0) {
        ackd_free(s);
        return -1; /* the config check rules this out */
    }
    parse_schedule(s, cfg->webhooks.schedule);
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->async, on_inbox);
    s->async.data = s;
    uv_timer_init(&s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    uv_timer_init(&s->loop, &s->claim_timer);
    s->claim_timer.data = s;
    ackd_tq_redo_init(&s->unrecorded, &s->loop, tq, record_again, s);
    pthread_mutex_init(&s->lock, NULL);
    s->client = ackd_http_client_new(&s->loop);
    int rc = uv_thread_create(&s->thread, thread_main, s);
    if (rc)
        return rc;
    *out = s;
    return 0;
}

void ackd_webhook_sender_stop(ackd_webhook_sender_t *s, int64_t grace_ms)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    bool first = !s->stop_requested;
    s->stop_requested = true;
    if (first)
        s->grace_ms = grace_ms;
    pthread_mutex_unlock(&s->lock);
    if (first)
        uv_async_send(&s->async);
}

void ackd_webhook_sender_join(ackd_webhook_sender_t *s)
{
    if (!s)
        return;
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
}

void ackd_webhook_sender_free(ackd_webhook_sender_t *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    ackd_guard_free(&s->guard);
    ackd_free(s->schedule);
    ackd_free(s);
}
