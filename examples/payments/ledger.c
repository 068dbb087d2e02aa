/* ledger.c - what the backend received and answered, for tests and demos.
 *
 * A call record is a JSON object kept in a ring of the last N calls: method,
 * path, query, every header (names lower-cased, repeats joined with ", "),
 * the body (as JSON when it parses, else as a string, capped), then the
 * answer: status, body, duration. Counters say how many calls arrived, how
 * many are in flight now and at most (so a test can check ackd's concurrency
 * limit), per path and per status. Attempts are counted per task (Task-Id,
 * else Idempotency-Key, else path and body) to drive the simulated failures,
 * and successful answers are kept per idempotency key so a retried charge is
 * answered with the first one's result instead of charging twice.
 *
 * The maps are capped (MAX_KEYS): past the cap they start over, which only
 * matters to a benchmark that sends more distinct tasks than that. */
#include <stdbool.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "payments.h"

#define MAX_PATHS 16
#define MAX_KEYS 100000
#define MAX_BODY_KEPT (64 * 1024) /* bytes of a body kept in a record */

typedef struct {
    char path[64];
    int64_t calls, in_flight, max_in_flight;
} path_stat_t;

struct pay_call {
    json_t *rec; /* the record; the ring holds another reference */
    path_stat_t *ps;
    int attempt;
    int64_t start_us; /* monotonic */
};

struct pay_ledger {
    json_t **ring; /* keep slots; the oldest at (next - count) */
    size_t keep, next, count;
    bool record; /* keep call records (off for benchmarks) */
    int64_t seq;
    int64_t calls, in_flight, max_in_flight, charges, replays, canceled;
    path_stat_t paths[MAX_PATHS + 1]; /* the last one collects other paths */
    size_t npaths;
    json_t *by_status; /* "200" -> count */
    json_t *attempts;  /* task key -> count */
    json_t *results;   /* path "\n" key -> stored answer */
};

pay_ledger_t *pay_ledger_new(size_t keep)
{
    pay_ledger_t *l = ACKD_NEW(pay_ledger_t);
    l->record = keep > 0;
    l->keep = keep ? keep : 1;
    l->ring = ackd_calloc(l->keep, sizeof *l->ring);
    l->by_status = json_object();
    l->attempts = json_object();
    l->results = json_object();
    return l;
}

static void ring_clear(pay_ledger_t *l)
{
    for (size_t i = 0; i < l->keep; i++) {
        json_decref(l->ring[i]);
        l->ring[i] = NULL;
    }
    l->next = l->count = 0;
}

void pay_ledger_free(pay_ledger_t *l)
{
    if (!l)
        return;
    ring_clear(l);
    ackd_free(l->ring);
    json_decref(l->by_status);
    json_decref(l->attempts);
    json_decref(l->results);
    ackd_free(l);
}

static path_stat_t *path_stat(pay_ledger_t *l, const char *path)
{
    for (size_t i = 0; i < l->npaths; i++)
        if (strcmp(l->paths[i].path, path) == 0)
            return &l->paths[i];
    if (l->npaths == MAX_PATHS || strlen(path) >= sizeof l->paths[0].path) {
        path_stat_t *other = &l->paths[MAX_PATHS];
        snprintf(other->path, sizeof other->path, "(other)");
        return other;
    }
    path_stat_t *ps = &l->paths[l->npaths++];
    snprintf(ps->path, sizeof ps->path, "%s", path);
    return ps;
}

/* A JSON string of n bytes; bytes that are not valid UTF-8 become '?'. */
static json_t *text_doc(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *copy = ackd_strndup(s, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    j = json_stringn(copy, n);
    ackd_free(copy);
    return j;
}

static json_t *headers_doc(ackd_http_req_t *req)
{
    json_t *h = json_object();
    const char *name, *value;
    for (size_t i = 0; ackd_http_req_header_at(req, i, &name, &value) == 0; i++) {
        char lower[256];
        size_t n = strlen(name);
        if (n >= sizeof lower)
            n = sizeof lower - 1;
        for (size_t k = 0; k < n; k++)
            lower[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32 : name[k]);
        lower[n] = '\0';
        json_t *prev = json_object_get(h, lower);
        if (prev) {
            size_t plen = strlen(json_string_value(prev)), vlen = strlen(value);
            char *joined = ackd_malloc(plen + 2 + vlen + 1);
            memcpy(joined, json_string_value(prev), plen);
            memcpy(joined + plen, ", ", 2);
            memcpy(joined + plen + 2, value, vlen + 1);
            json_object_set_new(h, lower, text_doc(joined, plen + 2 + vlen));
            ackd_free(joined);
        } else {
            json_object_set_new(h, lower, text_doc(value, strlen(value)));
        }
    }
    return h;
}

/* The body as JSON when it parses, else as (capped) text; null when empty. */
static json_t *body_doc(const char *body, size_t len)
{
    if (len == 0)
        return json_null();
    if (len <= MAX_BODY_KEPT) {
        json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
        if (j)
            return j;
    }
    return text_doc(body, len < MAX_BODY_KEPT ? len : MAX_BODY_KEPT);
}

/* Task-Id, else Idempotency-Key, else path and body. Allocated. */
static char *task_key(ackd_http_req_t *req, const char *body, size_t len)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    const char *v;
    if ((v = ackd_http_req_header(req, "task-id")) != NULL) {
        ackd_buf_printf(&b, "t:%s", v);
    } else if ((v = ackd_http_req_header(req, "idempotency-key")) != NULL) {
        ackd_buf_printf(&b, "k:%s", v);
    } else {
        ackd_buf_printf(&b, "b:%s\n", ackd_http_req_path(req));
        ackd_buf_append(&b, body, len);
    }
    return ackd_buf_detach(&b, NULL);
}

static int count_attempt(pay_ledger_t *l, const char *key)
{
    if (json_object_size(l->attempts) >= MAX_KEYS)
        json_object_clear(l->attempts);
    json_t *n = json_object_get(l->attempts, key);
    json_int_t v = n ? json_integer_value(n) + 1 : 1;
    json_object_set_new_nocheck(l->attempts, key, json_integer(v));
    return (int)v;
}

static void ring_push(pay_ledger_t *l, json_t *rec)
{
    json_decref(l->ring[l->next]);
    l->ring[l->next] = json_incref(rec);
    l->next = (l->next + 1) % l->keep;
    if (l->count < l->keep)
        l->count++;
}

static json_t *call_doc(pay_ledger_t *l, ackd_http_req_t *req, int attempt, const char *body,
                        size_t len)
{
    char ts[32];
    ackd_time_format(ackd_now_ms(), ts, sizeof ts);
    const char *path = ackd_http_req_path(req), *query = ackd_http_req_query(req);
    return json_pack("{s:I, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:i, s:n}", "seq",
                     (json_int_t)++l->seq, "time", ts, "method", ackd_http_req_method(req), "path",
                     text_doc(path, strlen(path)), "query", text_doc(query, strlen(query)),
                     "request_id", ackd_http_req_id(req), "headers", headers_doc(req), "body",
                     body_doc(body, len), "attempt", attempt, "status");
}

pay_call_t *pay_ledger_begin(pay_ledger_t *l, ackd_http_req_t *req)
{
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    char *key = task_key(req, body, len);
    pay_call_t *c = ACKD_NEW(pay_call_t);
    c->attempt = count_attempt(l, key);
    ackd_free(key);
    c->start_us = ackd_mono_us();
    c->ps = path_stat(l, ackd_http_req_path(req));
    if (l->record) {
        c->rec = call_doc(l, req, c->attempt, body, len);
        ring_push(l, c->rec);
    }
    l->calls++;
    if (++l->in_flight > l->max_in_flight)
        l->max_in_flight = l->in_flight;
    c->ps->calls++;
    if (++c->ps->in_flight > c->ps->max_in_flight)
        c->ps->max_in_flight = c->ps->in_flight;
    return c;
}

int pay_call_attempt(const pay_call_t *c)
{
    return c->attempt;
}

static const char *header_of(const json_t *rec, const char *name)
{
    return json_string_value(json_object_get(json_object_get(rec, "headers"), name));
}

static void log_call(const pay_call_t *c, int status, double ms)
{
    const json_t *r = c->rec;
    ACKD_LOG(status == 0 ? ACKD_LOG_WARN : ACKD_LOG_INFO,
             status == 0 ? "call dropped: the connection closed before the answer"
                         : "call answered",
             LOG_STR("method", json_string_value(json_object_get(r, "method"))),
             LOG_STR("path", c->ps->path), LOG_INT("status", status),
             LOG_INT("attempt", c->attempt), LOG_STR("task_id", header_of(r, "task-id")),
             LOG_STR("idempotency_key", header_of(r, "idempotency-key")),
             LOG_STR("correlation_id", json_string_value(json_object_get(r, "request_id"))),
             LOG_DBL("duration_ms", ms));
}

void pay_ledger_end(pay_ledger_t *l, pay_call_t *c, int status, const json_t *answer)
{
    int64_t us = ackd_mono_us() - c->start_us;
    double ms = (double)us / 1000.0;
    if (status) {
        json_object_set_new(c->rec, "status", json_integer(status));
        char key[16];
        snprintf(key, sizeof key, "%d", status);
        json_t *n = json_object_get(l->by_status, key);
        json_object_set_new(l->by_status, key, json_integer(n ? json_integer_value(n) + 1 : 1));
    } else {
        json_object_set_new(c->rec, "canceled", json_true());
        l->canceled++;
    }
    if (answer)
        json_object_set_new(c->rec, "answer", json_deep_copy(answer));
    json_object_set_new(c->rec, "duration_ms", json_integer((json_int_t)((us + 500) / 1000)));
    json_object_set_new(c->rec, "duration_us", json_integer((json_int_t)us));
    l->in_flight--;
    c->ps->in_flight--;
    log_call(c, status, ms);
    json_decref(c->rec);
    ackd_free(c);
}

static char *result_key(const char *path, const char *key)
{
    size_t a = strlen(path), b = strlen(key);
    char *k = ackd_malloc(a + 1 + b + 1);
    memcpy(k, path, a);
    k[a] = '\n';
    memcpy(k + a + 1, key, b + 1);
    return k;
}

json_t *pay_ledger_result(pay_ledger_t *l, const char *path, const char *key)
{
    char *k = result_key(path, key);
    json_t *doc = json_object_get(l->results, k);
    ackd_free(k);
    return doc;
}

json_t *pay_ledger_result_store(pay_ledger_t *l, const char *path, const char *key, json_t *doc)
{
    char *k = result_key(path, key);
    json_t *have = json_object_get(l->results, k);
    if (!have) {
        if (json_object_size(l->results) >= MAX_KEYS)
            json_object_clear(l->results);
        json_object_set_nocheck(l->results, k, doc);
        have = doc;
    }
    ackd_free(k);
    return have;
}

void pay_ledger_count_charge(pay_ledger_t *l)
{
    l->charges++;
}

void pay_ledger_count_replay(pay_ledger_t *l)
{
    l->replays++;
}

void pay_ledger_reset(pay_ledger_t *l)
{
    ring_clear(l);
    l->calls = l->charges = l->replays = l->canceled = 0;
    l->max_in_flight = l->in_flight;
    for (size_t i = 0; i <= MAX_PATHS; i++) {
        l->paths[i].calls = 0;
        l->paths[i].max_in_flight = l->paths[i].in_flight;
    }
    json_object_clear(l->by_status);
    json_object_clear(l->attempts);
    json_object_clear(l->results);
}

static int matches(const json_t *rec, const char *path, const char *task_id)
{
    if (path && strcmp(json_string_value(json_object_get(rec, "path")), path) != 0)
        return 0;
    if (task_id) {
        const char *t = header_of(rec, "task-id");
        if (!t || strcmp(t, task_id) != 0)
            return 0;
    }
    return 1;
}

json_t *pay_ledger_calls(pay_ledger_t *l, size_t limit, const char *path, const char *task_id)
{
    /* walk newest to oldest, then reverse so the answer reads in order */
    json_t **picked = ackd_calloc(l->count ? l->count : 1, sizeof *picked);
    size_t n = 0;
    for (size_t i = 0; i < l->count && n < limit; i++) {
        json_t *rec = l->ring[(l->next + l->keep - 1 - i) % l->keep];
        if (matches(rec, path, task_id))
            picked[n++] = rec;
    }
    json_t *arr = json_array();
    while (n > 0)
        json_array_append(arr, picked[--n]);
    ackd_free(picked);
    return json_pack("{s:o}", "calls", arr);
}

json_t *pay_ledger_stats(pay_ledger_t *l)
{
    json_t *by_path = json_object();
    for (size_t i = 0; i <= MAX_PATHS; i++) {
        const path_stat_t *ps = &l->paths[i];
        if (!ps->path[0] || (ps->calls == 0 && ps->in_flight == 0 && ps->max_in_flight == 0))
            continue;
        json_object_set_new(by_path, ps->path,
                            json_pack("{s:I, s:I, s:I}", "calls", (json_int_t)ps->calls,
                                      "in_flight", (json_int_t)ps->in_flight, "max_in_flight",
                                      (json_int_t)ps->max_in_flight));
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:O}", "calls", (json_int_t)l->calls,
                     "in_flight", (json_int_t)l->in_flight, "max_in_flight",
                     (json_int_t)l->max_in_flight, "charges", (json_int_t)l->charges, "replays",
                     (json_int_t)l->replays, "canceled", (json_int_t)l->canceled, "by_path",
                     by_path, "by_status", l->by_status);
}
