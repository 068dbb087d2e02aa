/* checkout.c - the seed's hybrid checkout: answer what is fast, queue the rest.
 *
 *   POST /api/checkout {"cart_id", "amount", "currency", "email", "items": [...], "simulate"?}
 *     -> 201 {"order_id": "ord_...", "status": "reserved",
 *             "tasks": {"payment": "tsk_...", "email": "tsk_...", "warehouse": "tsk_..."},
 *             "replayed": false}
 *
 * The cart is validated and reserved here, in memory, at once. Payment,
 * confirmation e-mail and warehouse notification become three tasks in ackd
 * (POST {ackd}/v1/queues/{payments|emails|warehouse}/tasks), sent in parallel
 * through the loop's curl multi handle. The order id is derived from the cart
 * id (a hash), and each task carries Idempotency-Key: <order_id>-<leg>, so a
 * repeated checkout of the same cart gets the same order id and the same
 * three tasks back from ackd (Idempotent-Replayed), and the card is charged
 * once. A cart checked out again with other contents is refused (409), here
 * or, after a restart of this backend, by ackd's idempotency check (422).
 * ackd unreachable or refusing a task -> 502, naming which. "simulate" is
 * passed on to the payment task. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "payments.h"

#define MAX_CARTS 100000
#define NLEGS 3

static const struct {
    const char *name; /* key in "tasks", suffix of the idempotency key */
    const char *queue;
} leg_defs[NLEGS] = {{"payment", "payments"}, {"email", "emails"}, {"warehouse", "warehouse"}};

typedef struct checkout checkout_t;

typedef struct {
    checkout_t *co;
    int error;   /* 1: ackd could not be reached */
    long status; /* ackd's answer */
    int replayed;
    char *task_id;
    char *detail; /* why it failed */
} leg_t;

struct checkout {
    pay_app_t *app;
    ackd_http_defer_t *d; /* NULL once answered or the client left */
    pay_call_t *call;     /* NULL once recorded */
    int pending;          /* calls to ackd not answered yet, +1 while starting */
    char order_id[40];
    leg_t legs[NLEGS];
};

/* --- validation and reservation --- */

static int validate(const json_t *b, char *err, size_t errlen)
{
    const char *cart = json_string_value(json_object_get(b, "cart_id"));
    const json_t *amount = json_object_get(b, "amount");
    const char *email = json_string_value(json_object_get(b, "email"));
    const json_t *items = json_object_get(b, "items");
    const json_t *sim = json_object_get(b, "simulate");
    if (!cart || !*cart || strlen(cart) > 200)
        snprintf(err, errlen, "\"cart_id\" must be a string of 1..200 characters");
    else if (!json_is_number(amount) || json_number_value(amount) <= 0)
        snprintf(err, errlen, "\"amount\" must be a number greater than 0");
    else if (!pay_valid_currency(json_string_value(json_object_get(b, "currency"))))
        snprintf(err, errlen, "\"currency\" must be three upper-case letters (\"USD\")");
    else if (!email || !strchr(email, '@') || strlen(email) > 254)
        snprintf(err, errlen, "\"email\" must be an e-mail address");
    else if (!json_is_array(items) || json_array_size(items) == 0)
        snprintf(err, errlen, "\"items\" must be a non-empty array");
    else if (sim && !json_is_string(sim) && !json_is_null(sim))
        snprintf(err, errlen, "\"simulate\" must be a string");
    else
        return 0;
    return -1;
}

/* "ord_" and 24 hex digits of SHA-256(cart_id): stable across restarts. */
static void order_id_of(const char *cart, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(cart, strlen(cart), md, &n, EVP_sha256(), NULL);
    char hex[25];
    for (int i = 0; i < 12; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(out, outlen, "ord_%s", hex);
}

/* Reserves the cart; -1 when it was reserved before with other contents. */
static int reserve(pay_app_t *app, const json_t *b, const char *order_id)
{
    const char *cart = json_string_value(json_object_get(b, "cart_id"));
    json_t *what =
        json_pack("{s:O, s:O, s:O, s:O, s:O?}", "amount", json_object_get(b, "amount"), "currency",
                  json_object_get(b, "currency"), "email", json_object_get(b, "email"), "items",
                  json_object_get(b, "items"), "simulate", json_object_get(b, "simulate"));
    char *fp = json_dumps(what, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(what);
    const json_t *have = json_object_get(app->carts, cart);
    int rc = 0;
    if (have) {
        rc = strcmp(json_string_value(json_object_get(have, "fingerprint")), fp) == 0 ? 0 : -1;
    } else {
        if (json_object_size(app->carts) >= MAX_CARTS)
            json_object_clear(app->carts);
        char ts[32];
        ackd_time_format(ackd_now_ms(), ts, sizeof ts);
        json_object_set_new(app->carts, cart,
                            json_pack("{s:s, s:s, s:s}", "order_id", order_id, "fingerprint", fp,
                                      "reserved_at", ts));
    }
    free(fp);
    return rc;
}

/* --- the answer --- */

static void free_checkout(void *arg)
{
    checkout_t *co = arg;
    for (int i = 0; i < NLEGS; i++) {
        ackd_free(co->legs[i].task_id);
        ackd_free(co->legs[i].detail);
    }
    ackd_free(co);
}

static json_t *tasks_doc(const checkout_t *co)
{
    json_t *t = json_object();
    for (int i = 0; i < NLEGS; i++)
        if (co->legs[i].task_id)
            json_object_set_new(t, leg_defs[i].name, json_string(co->legs[i].task_id));
    return t;
}

static json_t *failure_doc(const checkout_t *co, const char *text)
{
    json_t *doc = pay_error_doc(text);
    json_object_set_new(doc, "order_id", json_string(co->order_id));
    json_object_set_new(doc, "tasks", tasks_doc(co));
    return doc;
}

/* What the checkout answers, once every call to ackd is done. */
static int outcome(const checkout_t *co, json_t **doc, int *all_replayed)
{
    char text[512];
    *all_replayed = 0;
    for (int i = 0; i < NLEGS; i++) {
        const leg_t *leg = &co->legs[i];
        if (leg->error) {
            snprintf(text, sizeof text, "cannot reach ackd at %s for the %s task: %s",
                     co->app->ackd_url, leg_defs[i].name, leg->detail);
            *doc = failure_doc(co, text);
            return 502;
        }
    }
    for (int i = 0; i < NLEGS; i++) {
        const leg_t *leg = &co->legs[i];
        if (leg->status == 422) {
            snprintf(text, sizeof text,
                     "this cart was checked out before with other contents (ackd refused the %s "
                     "task: %s)",
                     leg_defs[i].name, leg->detail ? leg->detail : "");
            *doc = failure_doc(co, text);
            return 409;
        }
    }
    *all_replayed = 1;
    for (int i = 0; i < NLEGS; i++) {
        const leg_t *leg = &co->legs[i];
        if (leg->status < 200 || leg->status > 299 || !leg->task_id) {
            *all_replayed = 0;
            snprintf(text, sizeof text, "ackd answered %ld to the %s task: %s", leg->status,
                     leg_defs[i].name, leg->detail ? leg->detail : "no task id");
            *doc = failure_doc(co, text);
            return 502;
        }
        *all_replayed &= leg->replayed;
    }
    *doc = json_pack("{s:s, s:s, s:o, s:b}", "order_id", co->order_id, "status", "reserved",
                     "tasks", tasks_doc(co), "replayed", *all_replayed);
    return 201;
}

static void finish(checkout_t *co)
{
    if (!co->d) { /* the client left; nothing to answer */
        free_checkout(co);
        return;
    }
    json_t *doc;
    int replayed;
    int status = outcome(co, &doc, &replayed);
    ACKD_LOG(status == 201 ? ACKD_LOG_INFO : ACKD_LOG_WARN, "checkout",
             LOG_STR("order_id", co->order_id), LOG_INT("status", status),
             LOG_STR("payment_task", co->legs[0].task_id), LOG_INT("replayed", replayed));
    ackd_http_response_t *r = pay_answer_build(co->app, co->call, status, doc,
                                               replayed ? "Idempotent-Replayed" : NULL, "true");
    json_decref(doc);
    co->call = NULL;
    ackd_http_defer_t *d = co->d;
    co->d = NULL;
    ackd_http_defer_respond_free(d, r, free_checkout, co);
}

static void on_cancel(ackd_http_defer_t *d, void *data)
{
    checkout_t *co = data;
    if (!co->d)
        return; /* answered: free_checkout runs once the answer is discarded */
    co->d = NULL;
    ackd_http_defer_drop(d);
    pay_ledger_end(co->app->ledger, co->call, 0, NULL);
    co->call = NULL;
}

/* --- the calls to ackd --- */

static char *problem_detail(const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *d = json_string_value(json_object_get(j, "detail"));
    if (!d)
        d = json_string_value(json_object_get(j, "title"));
    char *out = d ? ackd_strdup(d) : ackd_strndup(body, len < 200 ? len : 200);
    json_decref(j);
    return out;
}

static void on_leg_done(const pay_reply_t *r, void *data)
{
    leg_t *leg = data;
    checkout_t *co = leg->co;
    if (r->error) {
        leg->error = 1;
        leg->detail = ackd_strdup(r->error_text);
    } else {
        leg->status = r->status;
        leg->replayed = r->replayed;
        json_t *j = json_loadb(r->body, r->len, 0, NULL);
        const char *id = json_string_value(json_object_get(j, "task_id"));
        if (id && r->status >= 200 && r->status <= 299)
            leg->task_id = ackd_strdup(id);
        else
            leg->detail = problem_detail(r->body, r->len);
        json_decref(j);
    }
    if (--co->pending == 0)
        finish(co);
}

static json_t *payload_of(int leg, const json_t *b, const char *order_id)
{
    switch (leg) {
    case 0:
        return json_pack("{s:O, s:O, s:s, s:O*}", "amount", json_object_get(b, "amount"),
                         "currency", json_object_get(b, "currency"), "order_id", order_id,
                         "simulate", json_object_get(b, "simulate"));
    case 1:
        return json_pack("{s:O, s:s, s:s}", "to", json_object_get(b, "email"), "template",
                         "order-confirmation", "order_id", order_id);
    default:
        return json_pack("{s:s, s:O}", "order_id", order_id, "items", json_object_get(b, "items"));
    }
}

static void start_leg(checkout_t *co, int i, const json_t *b, ackd_http_req_t *req)
{
    pay_app_t *app = co->app;
    leg_t *leg = &co->legs[i];
    leg->co = co;
    char url[1024], key[128], rid[192], auth[512], trace[256];
    snprintf(url, sizeof url, "%s/v1/queues/%s/tasks", app->ackd_url, leg_defs[i].queue);
    snprintf(key, sizeof key, "Idempotency-Key: %s-%s", co->order_id, leg_defs[i].name);
    snprintf(rid, sizeof rid, "X-Request-ID: %s", ackd_http_req_id(req));
    const char *headers[5] = {key, rid};
    size_t n = 2;
    const char *tp = ackd_http_req_header(req, "traceparent");
    if (tp && strlen(tp) < 200) {
        snprintf(trace, sizeof trace, "traceparent: %s", tp);
        headers[n++] = trace;
    }
    if (app->ackd_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", app->ackd_key);
        headers[n++] = auth;
    }
    json_t *body = json_pack("{s:o}", "payload", payload_of(i, b, co->order_id));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (pay_client_post_json(app->client, url, headers, text, on_leg_done, leg) == 0) {
        co->pending++;
    } else {
        leg->error = 1;
        leg->detail = ackd_strdup("the call could not be started");
    }
    free(text);
}

void pay_on_checkout(ackd_http_req_t *req, void *data)
{
    pay_app_t *app = data;
    pay_call_t *call = pay_ledger_begin(app->ledger, req);
    char err[256];
    json_t *b = pay_body_object(req, err, sizeof err);
    if (!b || validate(b, err, sizeof err) != 0) {
        json_t *doc = pay_error_doc(err);
        pay_answer_now(app, req, call, 400, doc, NULL, NULL);
        json_decref(doc);
        json_decref(b);
        return;
    }
    checkout_t *co = ACKD_NEW(checkout_t);
    co->app = app;
    co->call = call;
    order_id_of(json_string_value(json_object_get(b, "cart_id")), co->order_id,
                sizeof co->order_id);
    if (reserve(app, b, co->order_id) != 0) {
        json_t *doc = pay_error_doc("this cart was checked out before with other contents");
        json_object_set_new(doc, "order_id", json_string(co->order_id));
        pay_answer_now(app, req, call, 409, doc, NULL, NULL);
        json_decref(doc);
        json_decref(b);
        ackd_free(co);
        return;
    }
    co->d = ackd_http_defer(req, on_cancel, co);
    co->pending = 1; /* held while starting, so no answer races the loop below */
    for (int i = 0; i < NLEGS; i++)
        start_leg(co, i, b, req);
    json_decref(b);
    if (--co->pending == 0)
        finish(co);
}
