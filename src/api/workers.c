/* workers.c - the worker face (SPEC §4): claim with long poll, heartbeat,
 * complete, fail. Every call after the claim carries the lease: a stale one
 * is a 409 and changes nothing. */
#include <stdio.h>
#include <string.h>

#include "api/common.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/token.h"

#define MAX_CLAIM 100

static void write_claimed(ackd_jw_t *w, const ackd_task_t *t)
{
    ackd_jw_open(w, NULL, '{');
    ackd_jw_str(w, "id", t->id);
    ackd_jw_str(w, "queue", t->queue);
    ackd_jw_int(w, "attempt", t->attempts);
    ackd_jw_str(w, "lease_id", t->lease_id);
    ackd_jw_time(w, "lease_expires_at", t->lease_expires_at);
    ackd_jw_str(w, "correlation_id", t->correlation_id);
    if (t->traceparent)
        ackd_jw_str(w, "traceparent", t->traceparent);
    if (t->request)
        ackd_jw_raw(w, "request", t->request);
    else
        ackd_jw_raw(w, "payload", t->payload);
    ackd_jw_close(w);
}

static ackd_http_response_t *on_claimed(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    if (op->ntasks == 0)
        return ackd_http_response_new(204, NULL);
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_open(&w, "tasks", '[');
    for (int i = 0; i < op->ntasks; i++) {
        const ackd_task_t *t = &op->tasks[i];
        ACKD_LOG(ACKD_LOG_DEBUG, "task claimed", LOG_TASK(t), LOG_INT("attempt", t->attempts));
        write_claimed(&w, t);
    }
    ackd_jw_close(&w);
    ackd_jw_close(&w);
    return api_buf_response(200, &b);
}

API_ANSWER(on_claimed)

static int queue_allowed(const ackd_auth_t *a, const char *queue)
{
    if (!a->queues || (a->role & ACKD_ROLE_ADMIN))
        return 1;
    for (char **q = a->queues; *q; q++)
        if (strcmp(*q, queue) == 0)
            return 1;
    return 0;
}

static void on_claim(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = data;
    const ackd_queue_conf_t *q = api_path_queue(req, api);
    if (!q)
        return;
    const char *name = q->name;
    if (!queue_allowed(api_auth(req), name)) {
        ackd_http_respond_problem(req, 403, "forbidden", "Forbidden", NULL,
                                  "this key may not claim from queue \"%s\"", name);
        return;
    }
    if (q->upstream) { /* SPEC §1: a queue has one executor */
        ackd_http_respond_problem(req, 409, "push-queue", "Queue is pushed to its upstream", NULL,
                                  "queue \"%s\" is pushed to %s; workers claim from queues "
                                  "without an upstream",
                                  name, q->upstream);
        return;
    }
    json_t *body = api_body_object(req, 1);
    if (!body)
        return;
    static const char *const known[] = {"max", "wait", "lease", NULL};
    if (api_known_members(req, body, known, "") != 0) {
        json_decref(body);
        return;
    }
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_CLAIM, on_claimed_done, NULL);
    op->queue = ackd_strdup(name);
    op->max = 1;
    json_t *v;
    int64_t ms;
    const char *bad = NULL, *expected = NULL;
    if ((v = json_object_get(body, "max"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_CLAIM)
            bad = "max", expected = "an integer 1..100";
        else
            op->max = (int)json_integer_value(v);
    }
    if (!bad && (v = json_object_get(body, "wait"))) {
        if (api_duration(v, &ms) != 0)
            bad = "wait", expected = "a duration: seconds, or a string like \"30s\"";
        else if (ms > 0)
            op->wait_until = ackd_now_ms() + (ms < api->cfg->server.max_wait_ms
                                                  ? ms
                                                  : api->cfg->server.max_wait_ms);
    }
    if (!bad && (v = json_object_get(body, "lease"))) {
        if (api_duration_in(v, 100, API_MAX_LEASE_MS, &ms) != 0)
            bad = "lease", expected = "a duration from 100ms to 7 days";
        else
            op->lease_ms = ms;
    }
    json_decref(body);
    if (bad) {
        ackd_tq_op_free(op);
        api_bad_field(req, bad, expected);
        return;
    }
    api_start(req, op);
}

/* heartbeat, complete and fail share the lease check and the answer */

static ackd_http_response_t *lease_call_answer(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    const ackd_task_t *t = &op->task;
    if (op->kind == ACKD_TQ_HEARTBEAT) {
        json_t *d = json_object();
        json_object_set_new(d, "id", json_string(t->id));
        api_time(d, "lease_expires_at", t->lease_expires_at);
        json_object_set_new(d, "cancel_requested", json_boolean(t->cancel_requested));
        return api_json_response(200, d);
    }
    if (op->replayed) { /* the worker sent its call again: it changed nothing */
        ackd_http_response_t *r = api_task_response(200, t);
        ackd_http_response_header(r, "Idempotent-Replayed", "true");
        return r;
    }
    ackd_tq_log_attempt_end(op, ACKD_LOG_INFO, "task attempt ended");
    return api_task_response(200, t);
}

API_ANSWER(lease_call_answer)

/* bulky: a member whose text the call stores as it is (complete's result),
 * handed back in *bulky_text (see api_body_object_with); NULL for none. */
static ackd_tq_op_t *lease_op(ackd_http_req_t *req, ackd_api_t *api, int kind, json_t **body,
                              const char *const *known, const char *bulky, char **bulky_text)
{
    const char *id = api_task_id(req);
    if (bulky_text)
        *bulky_text = NULL;
    if (!id)
        return NULL;
    *body = api_body_object_with(req, 0, bulky, bulky_text);
    if (!*body)
        return NULL;
    json_t *lease = json_object_get(*body, "lease_id");
    bool bad = api_known_members(req, *body, known, "") != 0;
    if (!bad && (!json_is_string(lease) || json_string_length(lease) >= ACKD_ID_MAX)) {
        api_bad_field(req, "lease_id", "the lease_id the claim returned");
        bad = true;
    }
    if (bad) {
        if (bulky_text) {
            ackd_free(*bulky_text);
            *bulky_text = NULL;
        }
        json_decref(*body);
        return NULL;
    }
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, kind, lease_call_answer_done, NULL);
    snprintf(op->id, sizeof op->id, "%s", id);
    snprintf(op->lease_id, sizeof op->lease_id, "%s", json_string_value(lease));
    const ackd_auth_t *a = api_auth(req);
    if (!(a->role & ACKD_ROLE_ADMIN))
        op->allowed_queues = a->queues;
    return op;
}

static char *dump(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *copy = ackd_strdup(text);
    free(text);
    return copy;
}

/* Reads the optional progress (0..100) and message of a heartbeat or a
 * progress report into op; returns the bad field's name, or NULL. */
static const char *read_progress(json_t *body, ackd_tq_op_t *op, const char **expected)
{
    json_t *v;
    if ((v = json_object_get(body, "progress")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 100) {
            *expected = "a number 0..100";
            return "progress";
        }
        op->progress_pct = (int)json_number_value(v);
    }
    if ((v = json_object_get(body, "message")) && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > 1024) {
            *expected = "a string of at most 1024 characters";
            return "message";
        }
        op->progress_msg = ackd_strdup(json_string_value(v));
    }
    return NULL;
}

static void on_heartbeat(ackd_http_req_t *req, void *data)
{
    json_t *body;
    static const char *const known[] = {"lease_id", "lease", "progress", "message", NULL};
    ackd_tq_op_t *op = lease_op(req, data, ACKD_TQ_HEARTBEAT, &body, known, NULL, NULL);
    if (!op)
        return;
    json_t *v;
    int64_t ms;
    const char *bad = NULL, *expected = NULL;
    if ((v = json_object_get(body, "lease"))) {
        if (api_duration_in(v, 100, API_MAX_LEASE_MS, &ms) != 0)
            bad = "lease", expected = "a duration from 100ms to 7 days";
        else
            op->lease_ms = ms;
    }
    if (!bad)
        bad = read_progress(body, op, &expected);
    json_decref(body);
    if (bad) {
        ackd_tq_op_free(op);
        api_bad_field(req, bad, expected);
        return;
    }
    api_start(req, op);
}

/* A route answer's headers must reach the client as given: an object of
 * field names (RFC 9110 tokens) and string values without CR, LF or NUL.
 * Returns what was expected (field names the culprit), or NULL. */
static const char *bad_answer_headers(json_t *headers, char *field, size_t n)
{
    if (!headers || json_is_null(headers))
        return NULL;
    snprintf(field, n, "response.headers");
    if (!json_is_object(headers))
        return "an object of header names and string values";
    const char *k;
    json_t *v;
    json_object_foreach(headers, k, v)
    {
        snprintf(field, n, "response.headers.%.100s", k);
        if (!ackd_token(k))
            return "a header name (letters, digits and !#$%&'*+-.^_`|~)";
        /* a list is one field per value (Set-Cookie) */
        size_t nvalues = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < nvalues; i++) {
            json_t *one = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(one) ||
                strlen(json_string_value(one)) != json_string_length(one) ||
                strpbrk(json_string_value(one), "\r\n"))
                return "a string (or a list of strings) without CR, LF or NUL";
        }
    }
    return NULL;
}

static void on_complete(ackd_http_req_t *req, void *data)
{
    json_t *body;
    char *result_text;
    static const char *const known[] = {"lease_id", "result", "response", NULL};
    ackd_tq_op_t *op =
        lease_op(req, data, ACKD_TQ_COMPLETE, &body, known, "result", &result_text);
    if (!op)
        return;
    json_t *v = json_object_get(body, "response");
    if (v) {
        ackd_free(result_text); /* a route task's answer wins over a result */
        /* a route task's answer: {status, headers, body} */
        json_t *st = json_object_get(v, "status");
        char field[160];
        const char *expected = NULL;
        if (!json_is_object(v) || !json_is_integer(st) || json_integer_value(st) < 100 ||
            json_integer_value(st) > 599) {
            snprintf(field, sizeof field, "response");
            expected = "{status: 100..599, headers?, body?}";
        } else {
            expected = bad_answer_headers(json_object_get(v, "headers"), field, sizeof field);
        }
        if (expected) {
            json_decref(body);
            ackd_tq_op_free(op);
            api_bad_field(req, field, expected);
            return;
        }
        /* the body as the worker wrote it (a request jansson accepted) */
        size_t len;
        const char *text = ackd_http_req_body(req, &len);
        ackd_json_span_t resp, body_span;
        char *body_json = NULL;
        if (ackd_json_member_raw(text, len, "response", &resp) &&
            ackd_json_member_raw(resp.p, resp.n, "body", &body_span))
            body_json = api_json_copy(body_span);
        op->result = api_answer_from_worker(v, body_json);
        ackd_free(body_json);
    } else if (result_text) {
        op->result = result_text;
    } else {
        v = json_object_get(body, "result");
        op->result = dump(v ? v : json_null());
    }
    json_decref(body);
    api_start(req, op);
}

static void on_fail(ackd_http_req_t *req, void *data)
{
    json_t *body;
    static const char *const known[] = {"lease_id", "error", "retry", "retry_after", NULL};
    ackd_tq_op_t *op = lease_op(req, data, ACKD_TQ_FAIL, &body, known, NULL, NULL);
    if (!op)
        return;
    op->retry = true;
    json_t *v;
    int64_t ms;
    const char *bad = NULL, *expected = NULL;
    if ((v = json_object_get(body, "retry"))) {
        if (!json_is_boolean(v))
            bad = "retry", expected = "true or false";
        else
            op->retry = json_is_true(v);
    }
    if (!bad && (v = json_object_get(body, "retry_after"))) {
        if (api_duration(v, &ms) != 0)
            bad = "retry_after",
            expected = "a duration up to 366 days: seconds, or a string like \"30s\"";
        else
            op->retry_after_ms = ms;
    }
    v = json_object_get(body, "error");
    size_t len;
    const char *text = ackd_http_req_body(req, &len);
    ackd_json_span_t span;
    if (json_is_object(v) && ackd_json_member_raw(text, len, "error", &span)) {
        op->error = api_json_copy(span); /* the worker's own object, as it wrote it */
    } else {
        json_t *err = json_pack("{s:s, s:n}", "message",
                                json_is_string(v) ? json_string_value(v) : "failed", "status");
        op->error = dump(err);
        json_decref(err);
    }
    json_decref(body);
    if (bad) {
        ackd_tq_op_free(op);
        api_bad_field(req, bad, expected);
        return;
    }
    api_start(req, op);
}

/* POST /v1/tasks/{id}/progress: a push upstream reports progress on the
 * call it is serving, authorised by the Task-Progress-Token ackd sent with
 * that call (no API key: the token is valid for that attempt only). */
static ackd_http_response_t *on_progress_recorded(ackd_tq_op_t *op)
{
    if (op->status == ACKD_ECONFLICT)
        return api_problem_response(403, "invalid-progress-token", "Forbidden", NULL, op->detail);
    if (op->status)
        return api_op_problem(op);
    return api_task_response(200, &op->task);
}

API_ANSWER(on_progress_recorded)

static void on_progress(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = data;
    const char *id = api_task_id(req);
    const char *token = ackd_http_req_header(req, "task-progress-token");
    if (!id)
        return;
    if (!token || strlen(token) != 64) {
        ackd_http_respond_problem(req, 401, "unauthorized", "Unauthorized", NULL,
                                  "send the Task-Progress-Token header ackd gave the call");
        return;
    }
    json_t *body = api_body_object(req, 0);
    if (!body)
        return;
    static const char *const known[] = {"progress", "message", NULL};
    if (api_known_members(req, body, known, "") != 0) {
        json_decref(body);
        return;
    }
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_PROGRESS, on_progress_recorded_done, NULL);
    snprintf(op->id, sizeof op->id, "%s", id);
    snprintf(op->token, sizeof op->token, "%s", token);
    const char *expected = NULL;
    const char *bad = read_progress(body, op, &expected);
    json_decref(body);
    if (!bad && op->progress_pct < 0 && !op->progress_msg)
        bad = "progress", expected = "progress and/or message";
    if (bad) {
        ackd_tq_op_free(op);
        api_bad_field(req, bad, expected);
        return;
    }
    api_start(req, op);
}

#define WORKER (ACKD_ROLE_WORKER)

const ackd_route_t ackd_api_workers_routes[] = {
    {.method = "POST", .pattern = "/v1/queues/{queue}/claim", .handler = on_claim, .role = WORKER},
    {.method = "POST", .pattern = "/v1/tasks/{id}/heartbeat", .handler = on_heartbeat,
     .role = WORKER},
    {.method = "POST", .pattern = "/v1/tasks/{id}/complete", .handler = on_complete,
     .role = WORKER},
    {.method = "POST", .pattern = "/v1/tasks/{id}/fail", .handler = on_fail, .role = WORKER},
    {.method = "POST", .pattern = "/v1/tasks/{id}/progress", .handler = on_progress, .role = 0},
    {0},
};
