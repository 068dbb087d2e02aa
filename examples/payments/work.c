/* work.c - the slow endpoints a push queue sends its tasks to.
 *
 *   POST /api/process-payment  {"amount": >0, "currency": "USD", "order_id"?, "simulate"?}
 *        validate 100 ms, check balance 200 ms, execute 500 ms, update 100 ms
 *        -> 200 {"status": "success", "transaction_id": "txn_...", ...}
 *   POST /api/send-email       {"to", "template", "order_id"?, "simulate"?}
 *        send 100 ms -> 200 {"status": "sent", "message_id": "msg_..."}
 *   POST /api/notify-warehouse {"order_id", "items": [...], "simulate"?}
 *        notify 50 ms -> 200 {"status": "notified", "order_id": ...}
 *
 * A request is parked (ackd_http_defer) and walks its steps on one uv timer,
 * restarted per step; the last step answers. Nothing blocks the loop. An
 * invalid body is answered 400 after the first step, as a real service would
 * after validating.
 *
 * "simulate" makes deterministic failures, counted per task (Task-Id, else
 * Idempotency-Key, else path and body; see ledger.c), answered at once:
 *   "NNN"      (400..599) answer NNN every time
 *   "NNN:N"    answer NNN the first N attempts, then work normally
 *   "429:S"    answer 429 with Retry-After: S the first attempt, then work
 *   "hang"     never answer (until the client leaves); "hang:N" the first N attempts
 *   "fast"     answer 200 at once
 *   "delay:MS" answer 200 after MS ms instead of the usual steps
 *
 * Successful answers are kept per (path, Idempotency-Key or else Task-Id):
 * a repeat of a task that already succeeded gets the same answer at once,
 * with X-Payments-Replayed: true, and is not charged again. Every answer
 * carries X-Payments-Attempt. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/id.h"
#include "base/log.h"
#include "base/units.h"
#include "payments.h"

typedef struct {
    const char *name;
    uint64_t ms;
} step_t;

typedef struct {
    const char *path;
    const step_t *steps;
    int nsteps;
    /* 0, or -1 with err set: the body is not what this endpoint takes. */
    int (*validate)(const json_t *body, char *err, size_t errlen);
    /* The success answer for body. New reference. */
    json_t *(*succeed)(const json_t *body);
    bool charges; /* a new success counts in stats.charges */
} endpoint_t;

typedef enum { SIM_NONE, SIM_STATUS, SIM_THROTTLE, SIM_HANG, SIM_FAST, SIM_DELAY } sim_kind_t;

typedef struct {
    sim_kind_t kind;
    int status; /* SIM_STATUS: the status to answer */
    int64_t n;  /* attempts that fail, seconds (429), or ms (delay) */
} sim_t;

typedef struct {
    pay_app_t *app;
    const endpoint_t *ep;
    uv_timer_t timer;
    ackd_http_defer_t *d; /* NULL once answered or dropped */
    pay_call_t *call;     /* NULL once recorded */
    int refs;             /* the timer handle and the deferred answer */
    const step_t *steps;
    int nsteps, step; /* steps in the plan, steps done */
    step_t one;       /* the plan of "delay:MS" */
    json_t *body;     /* the decoded request; NULL when invalid */
    char *error;      /* why the body is invalid */
    char *key;        /* Idempotency-Key or Task-Id; NULL when neither */
    char *task_id;    /* for logs */
} job_t;

/* --- shared helpers --- */

json_t *pay_error_doc(const char *text)
{
    return json_pack("{s:s, s:s}", "status", "error", "error", text);
}

int pay_valid_currency(const char *s)
{
    return s && strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' &&
           s[2] >= 'A' && s[2] <= 'Z';
}

json_t *pay_body_object(ackd_http_req_t *req, char *err, size_t errlen)
{
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    json_error_t e;
    json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!j) {
        if (len)
            snprintf(err, errlen, "the body is not valid JSON: %s (line %d, column %d)", e.text,
                     e.line, e.column);
        else
            snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

static void attempt_header(const pay_call_t *call, char *out, size_t outlen)
{
    snprintf(out, outlen, "%d", pay_call_attempt(call));
}

void pay_answer_now(pay_app_t *app, ackd_http_req_t *req, pay_call_t *call, int status,
                    const json_t *body, const char *hname, const char *hvalue)
{
    char attempt[16];
    attempt_header(call, attempt, sizeof attempt);
    ackd_http_resp_header(req, "X-Payments-Attempt", attempt);
    if (hname)
        ackd_http_resp_header(req, hname, hvalue);
    pay_ledger_end(app->ledger, call, status, body);
    ackd_http_respond_json(req, status, body);
}

ackd_http_response_t *pay_answer_build(pay_app_t *app, pay_call_t *call, int status,
                                       const json_t *body, const char *hname, const char *hvalue)
{
    char attempt[16];
    attempt_header(call, attempt, sizeof attempt);
    ackd_http_response_t *r = ackd_http_response_new(status, "application/json");
    ackd_http_response_header(r, "X-Payments-Attempt", attempt);
    if (hname)
        ackd_http_response_header(r, hname, hvalue);
    char *text = json_dumps(body, JSON_COMPACT);
    ackd_http_response_body(r, text, strlen(text));
    free(text);
    pay_ledger_end(app->ledger, call, status, body);
    return r;
}

/* --- the endpoints --- */

static const char *str_field(const json_t *body, const char *name)
{
    return json_string_value(json_object_get(body, name));
}

static int optional_string(const json_t *body, const char *name, char *err, size_t errlen)
{
    const json_t *v = json_object_get(body, name);
    if (v && !json_is_string(v) && !json_is_null(v)) {
        snprintf(err, errlen, "\"%s\" must be a string", name);
        return -1;
    }
    return 0;
}

static int validate_payment(const json_t *body, char *err, size_t errlen)
{
    const json_t *amount = json_object_get(body, "amount");
    if (!json_is_number(amount) || json_number_value(amount) <= 0) {
        snprintf(err, errlen, "\"amount\" must be a number greater than 0");
        return -1;
    }
    if (!pay_valid_currency(str_field(body, "currency"))) {
        snprintf(err, errlen, "\"currency\" must be three upper-case letters (\"USD\")");
        return -1;
    }
    return optional_string(body, "order_id", err, errlen);
}

static json_t *succeed_payment(const json_t *body)
{
    char txn[ACKD_ID_MAX];
    ackd_id_new("txn_", txn);
    json_t *doc =
        json_pack("{s:s, s:s, s:O, s:s}", "status", "success", "transaction_id", txn, "amount",
                  json_object_get(body, "amount"), "currency", str_field(body, "currency"));
    if (str_field(body, "order_id"))
        json_object_set(doc, "order_id", json_object_get(body, "order_id"));
    return doc;
}

static int validate_email(const json_t *body, char *err, size_t errlen)
{
    const char *to = str_field(body, "to");
    if (!to || !strchr(to, '@')) {
        snprintf(err, errlen, "\"to\" must be an e-mail address");
        return -1;
    }
    const char *tpl = str_field(body, "template");
    if (!tpl || !*tpl) {
        snprintf(err, errlen, "\"template\" must be a non-empty string");
        return -1;
    }
    return optional_string(body, "order_id", err, errlen);
}

static json_t *succeed_email(const json_t *body)
{
    char id[ACKD_ID_MAX];
    ackd_id_new("msg_", id);
    return json_pack("{s:s, s:s, s:O}", "status", "sent", "message_id", id, "to",
                     json_object_get(body, "to"));
}

static int validate_warehouse(const json_t *body, char *err, size_t errlen)
{
    const char *order = str_field(body, "order_id");
    if (!order || !*order) {
        snprintf(err, errlen, "\"order_id\" must be a non-empty string");
        return -1;
    }
    if (!json_is_array(json_object_get(body, "items"))) {
        snprintf(err, errlen, "\"items\" must be an array");
        return -1;
    }
    return 0;
}

static json_t *succeed_warehouse(const json_t *body)
{
    return json_pack("{s:s, s:O}", "status", "notified", "order_id",
                     json_object_get(body, "order_id"));
}

static const step_t payment_steps[] = {
    {"validate", 100}, {"check balance", 200}, {"execute", 500}, {"update", 100}};
static const step_t email_steps[] = {{"send", 100}};
static const step_t warehouse_steps[] = {{"notify", 50}};

static const endpoint_t payment_ep = {.path = "/api/process-payment",
                                      .steps = payment_steps,
                                      .nsteps = 4,
                                      .validate = validate_payment,
                                      .succeed = succeed_payment,
                                      .charges = true};
static const endpoint_t email_ep = {.path = "/api/send-email",
                                    .steps = email_steps,
                                    .nsteps = 1,
                                    .validate = validate_email,
                                    .succeed = succeed_email};
static const endpoint_t warehouse_ep = {.path = "/api/notify-warehouse",
                                        .steps = warehouse_steps,
                                        .nsteps = 1,
                                        .validate = validate_warehouse,
                                        .succeed = succeed_warehouse};

/* --- simulate --- */

static int parse_count(const char *s, int64_t max, int64_t *out)
{
    return ackd_parse_int(s, out) == 0 && *out >= 0 && *out <= max ? 0 : -1;
}

static int parse_sim(const json_t *v, sim_t *sim, char *err, size_t errlen)
{
    *sim = (sim_t){.kind = SIM_NONE};
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    char head[16];
    const char *colon = s ? strchr(s, ':') : NULL;
    const char *arg = colon ? colon + 1 : NULL;
    size_t hlen = s ? (colon ? (size_t)(colon - s) : strlen(s)) : sizeof head;
    if (hlen >= sizeof head)
        goto bad;
    memcpy(head, s, hlen);
    head[hlen] = '\0';
    if (strcmp(head, "fast") == 0 && !arg) {
        sim->kind = SIM_FAST;
        return 0;
    }
    if (strcmp(head, "hang") == 0) {
        sim->kind = SIM_HANG;
        sim->n = INT64_MAX;
        if (!arg || parse_count(arg, 1000000, &sim->n) == 0)
            return 0;
        goto bad;
    }
    if (strcmp(head, "delay") == 0 && arg) {
        sim->kind = SIM_DELAY;
        if (parse_count(arg, 600000, &sim->n) == 0)
            return 0;
        goto bad;
    }
    int64_t status;
    if (ackd_parse_int(head, &status) != 0 || status < 400 || status > 599)
        goto bad;
    sim->status = (int)status;
    if (status == 429) {
        sim->kind = SIM_THROTTLE;
        sim->n = 1;
        if (!arg || parse_count(arg, 86400, &sim->n) == 0)
            return 0;
        goto bad;
    }
    sim->kind = SIM_STATUS;
    sim->n = INT64_MAX;
    if (!arg || parse_count(arg, 1000000, &sim->n) == 0)
        return 0;
bad:
    snprintf(err, errlen,
             "\"simulate\" must be \"fast\", \"hang\", \"hang:N\", \"delay:MS\", \"NNN\" or "
             "\"NNN:N\" (a status 400..599 the first N times), or \"429:S\"");
    return -1;
}

static const char *sim_text(int status)
{
    switch (status) {
    case 400:
    case 402: return "card declined";
    case 503: return "payment processor unavailable";
    default: return NULL;
    }
}

/* --- jobs: a parked request walking its steps --- */

static void job_unref(job_t *j)
{
    if (--j->refs > 0)
        return;
    json_decref(j->body);
    ackd_free(j->error);
    ackd_free(j->key);
    ackd_free(j->task_id);
    ackd_free(j);
}

static void on_timer_closed(uv_handle_t *h)
{
    job_unref(h->data);
}

static void on_released(void *arg)
{
    job_unref(arg);
}

static void job_stop_timer(job_t *j)
{
    if (!uv_is_closing((uv_handle_t *)&j->timer))
        uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}

/* The client left (loop thread). Once answered, the answer is on its way and
 * on_released will free the job; otherwise the job ends here. */
static void on_cancel(ackd_http_defer_t *d, void *data)
{
    job_t *j = data;
    if (!j->d)
        return;
    j->d = NULL;
    ackd_http_defer_drop(d);
    pay_ledger_end(j->app->ledger, j->call, 0, NULL);
    j->call = NULL;
    job_stop_timer(j);
    job_unref(j);
}

static void job_answer(job_t *j, int status, const json_t *body, const char *hname,
                       const char *hvalue)
{
    ackd_http_response_t *r = pay_answer_build(j->app, j->call, status, body, hname, hvalue);
    j->call = NULL;
    ackd_http_defer_t *d = j->d;
    j->d = NULL;
    ackd_http_defer_respond_free(d, r, on_released, j);
    job_stop_timer(j);
}

/* The success answer, stored under the job's key; a key that already has
 * one (a concurrent repeat finished first) gets that one. Sets *replayed. */
static json_t *succeed(pay_app_t *app, const endpoint_t *ep, const json_t *body, const char *key,
                       bool *replayed)
{
    json_t *doc = ep->succeed(body);
    json_t *answer = doc;
    if (key)
        answer = pay_ledger_result_store(app->ledger, ep->path, key, doc);
    *replayed = answer != doc;
    json_incref(answer);
    json_decref(doc);
    if (*replayed)
        pay_ledger_count_replay(app->ledger);
    else if (ep->charges)
        pay_ledger_count_charge(app->ledger);
    return answer;
}

static void on_step(uv_timer_t *t)
{
    job_t *j = t->data;
    const step_t *done = &j->steps[j->step++];
    ACKD_LOG(ACKD_LOG_DEBUG, "step done", LOG_STR("path", j->ep->path), LOG_STR("step", done->name),
             LOG_INT("ms", done->ms), LOG_STR("task_id", j->task_id));
    if (j->error) {
        json_t *doc = pay_error_doc(j->error);
        job_answer(j, 400, doc, NULL, NULL);
        json_decref(doc);
        return;
    }
    if (j->step < j->nsteps) {
        uv_timer_start(&j->timer, on_step, j->steps[j->step].ms, 0);
        return;
    }
    bool replayed;
    json_t *doc = succeed(j->app, j->ep, j->body, j->key, &replayed);
    job_answer(j, 200, doc, replayed ? "X-Payments-Replayed" : NULL, "true");
    json_decref(doc);
}

/* Parks req as a job that walks `steps` (none: it hangs until the client
 * leaves). Takes body. A delay_ms >= 0 replaces the steps by one delay. */
static void job_start(pay_app_t *app, const endpoint_t *ep, ackd_http_req_t *req, pay_call_t *call,
                      json_t *body, const char *error, const char *key, const step_t *steps,
                      int nsteps, int64_t delay_ms)
{
    job_t *j = ACKD_NEW(job_t);
    j->app = app;
    j->ep = ep;
    j->call = call;
    j->body = body;
    j->error = error ? ackd_strdup(error) : NULL;
    j->key = key ? ackd_strdup(key) : NULL;
    const char *task = ackd_http_req_header(req, "task-id");
    j->task_id = task ? ackd_strdup(task) : NULL;
    j->refs = 2;
    uv_timer_init(app->loop, &j->timer);
    j->timer.data = j;
    j->steps = steps;
    j->nsteps = nsteps;
    if (delay_ms >= 0) {
        j->one = (step_t){.name = "delay", .ms = (uint64_t)delay_ms};
        j->steps = &j->one;
        j->nsteps = 1;
    }
    j->d = ackd_http_defer(req, on_cancel, j);
    if (j->nsteps > 0)
        uv_timer_start(&j->timer, on_step, j->steps[0].ms, 0);
}

/* --- the handler shared by the three endpoints --- */

/* Answers a simulated failure at once; 0 when sim does not fail this attempt. */
static int simulate_failure(pay_app_t *app, ackd_http_req_t *req, pay_call_t *call,
                            const sim_t *sim)
{
    int attempt = pay_call_attempt(call);
    char text[96], retry[24];
    if (sim->kind == SIM_STATUS && attempt <= sim->n) {
        const char *t = sim_text(sim->status);
        if (!t) {
            snprintf(text, sizeof text, "simulated failure: %d %s", sim->status,
                     ackd_http_reason(sim->status));
            t = text;
        }
        json_t *doc = pay_error_doc(t);
        pay_answer_now(app, req, call, sim->status, doc, NULL, NULL);
        json_decref(doc);
        return 1;
    }
    if (sim->kind == SIM_THROTTLE && attempt == 1) {
        snprintf(retry, sizeof retry, "%lld", (long long)sim->n);
        snprintf(text, sizeof text, "rate limited: retry after %lld s", (long long)sim->n);
        json_t *doc = pay_error_doc(text);
        pay_answer_now(app, req, call, 429, doc, "Retry-After", retry);
        json_decref(doc);
        return 1;
    }
    return 0;
}

static void serve(ackd_http_req_t *req, pay_app_t *app, const endpoint_t *ep)
{
    pay_call_t *call = pay_ledger_begin(app->ledger, req);
    char err[256] = "";
    sim_t sim = {.kind = SIM_NONE};
    json_t *body = pay_body_object(req, err, sizeof err);
    if (body && (ep->validate(body, err, sizeof err) != 0 ||
                 parse_sim(json_object_get(body, "simulate"), &sim, err, sizeof err) != 0)) {
        json_decref(body);
        body = NULL;
    }
    if (!body) {
        job_start(app, ep, req, call, NULL, err, NULL, ep->steps, 1, -1);
        return;
    }
    const char *key = ackd_http_req_header(req, "idempotency-key");
    if (!key)
        key = ackd_http_req_header(req, "task-id");
    json_t *done = key ? pay_ledger_result(app->ledger, ep->path, key) : NULL;
    if (done) {
        pay_ledger_count_replay(app->ledger);
        pay_answer_now(app, req, call, 200, done, "X-Payments-Replayed", "true");
        json_decref(body);
        return;
    }
    if (simulate_failure(app, req, call, &sim)) {
        json_decref(body);
        return;
    }
    int attempt = pay_call_attempt(call);
    switch (sim.kind) {
    case SIM_HANG:
        if (attempt <= sim.n) {
            job_start(app, ep, req, call, body, NULL, key, NULL, 0, -1);
            return;
        }
        break;
    case SIM_FAST: {
        bool replayed;
        json_t *doc = succeed(app, ep, body, key, &replayed);
        pay_answer_now(app, req, call, 200, doc, replayed ? "X-Payments-Replayed" : NULL, "true");
        json_decref(doc);
        json_decref(body);
        return;
    }
    case SIM_DELAY: job_start(app, ep, req, call, body, NULL, key, NULL, 0, sim.n); return;
    default: break;
    }
    job_start(app, ep, req, call, body, NULL, key, ep->steps, ep->nsteps, -1);
}

void pay_on_process_payment(ackd_http_req_t *req, void *data)
{
    serve(req, data, &payment_ep);
}

void pay_on_send_email(ackd_http_req_t *req, void *data)
{
    serve(req, data, &email_ep);
}

void pay_on_notify_warehouse(ackd_http_req_t *req, void *data)
{
    serve(req, data, &warehouse_ep);
}
