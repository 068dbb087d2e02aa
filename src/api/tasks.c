/* tasks.c - the client face of the queue (SPEC §3): submit, read, long poll,
 * list, cancel, redrive, result. Handlers validate on the loop thread, then
 * hand an operation to the store; the answer leaves from the store's thread
 * once the change is durable. */
#include <stdio.h>
#include <string.h>

#include "api/common.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "queue/fingerprint.h"

#define MAX_BATCH 1000
#define MAX_LIST 1000

static ackd_api_t *api_of(void *data)
{
    return data;
}

/* --- submission --- */

/* Fills an item from one task object of a request; answers 422 and returns
 * -1 on a bad field. `prefix` names the item in messages ("tasks[3].").
 * payload_text: the payload already as text (api_body_object_with), taken
 * over; NULL: dumped from obj. */
static int decode_task(ackd_http_req_t *req, ackd_api_t *api, const ackd_queue_conf_t *q,
                       json_t *obj, char *payload_text, ackd_tq_item_t *it, const char *prefix,
                       int64_t now)
{
    static const char *const known[] = {"payload", "delay", "run_at", "priority", "max_attempts",
                                        "timeout", "callback_url", "idempotency_key", NULL};
    if (api_known_members(req, obj, known, prefix) != 0) {
        ackd_free(payload_text);
        return -1;
    }
    char field[96];
    json_t *v;
    ackd_task_t *t = &it->task;
    ackd_tq_task_init(api->tq, t, q, api_auth(req)->tenant, now);
    if (payload_text) {
        t->payload = payload_text;
    } else {
        json_t *payload = json_object_get(obj, "payload");
        char *text = json_dumps(payload ? payload : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        t->payload = ackd_strdup(text);
        free(text);
    }
#define BAD(name, expected)                                                                        \
    do {                                                                                           \
        snprintf(field, sizeof field, "%s%s", prefix, name);                                       \
        api_bad_field(req, field, expected);                                                       \
        return -1;                                                                                 \
    } while (0)
    int64_t ms;
    if ((v = json_object_get(obj, "delay"))) {
        if (api_duration(v, &ms) != 0)
            BAD("delay", "a duration up to 366 days: seconds as a number, or a string like "
                         "\"250ms\", \"30s\"");
        t->due_at = now + ms;
    }
    if ((v = json_object_get(obj, "run_at"))) {
        if (!json_is_string(v) || ackd_time_parse(json_string_value(v), &ms) != 0)
            BAD("run_at", "an RFC 3339 time like \"2026-11-24T10:00:00Z\"");
        if (json_object_get(obj, "delay"))
            BAD("run_at", "either delay or run_at, not both");
        if (ms > now + API_MAX_DELAY_MS)
            BAD("run_at", "a time within 366 days from now");
        t->due_at = ms > now ? ms : now;
    }
    if ((v = json_object_get(obj, "priority"))) {
        if (!json_is_integer(v) || json_integer_value(v) < -1000 || json_integer_value(v) > 1000)
            BAD("priority", "an integer -1000..1000");
        t->priority = (int)json_integer_value(v);
    }
    if ((v = json_object_get(obj, "max_attempts"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
            BAD("max_attempts", "an integer 1..1000");
        t->max_attempts = (int)json_integer_value(v);
    }
    if ((v = json_object_get(obj, "timeout"))) {
        if (api_duration_in(v, 100, API_MAX_LEASE_MS, &ms) != 0)
            BAD("timeout", "a duration from 100ms to 7 days");
        t->timeout_ms = ms;
    }
    if ((v = json_object_get(obj, "callback_url"))) {
        char why[256];
        if (!json_is_string(v))
            BAD("callback_url", "an http:// or https:// URL");
        const char *wrong = api_callback_url_problem(api, json_string_value(v), why, sizeof why);
        if (wrong)
            BAD("callback_url", wrong);
        ackd_free(t->callback_url);
        t->callback_url = ackd_strdup(json_string_value(v));
    }
    if ((v = json_object_get(obj, "idempotency_key"))) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255)
            BAD("idempotency_key", "a string of 1..255 characters");
        t->idem_key = ackd_strdup(json_string_value(v));
    }
#undef BAD
    t->correlation_id = ackd_strdup(ackd_http_req_id(req));
    const char *tp = api_traceparent(req);
    if (tp)
        t->traceparent = ackd_strdup(tp);
    return 0;
}

static void set_idempotency(ackd_http_req_t *req, ackd_tq_item_t *it, const char *queue,
                            const char *key, const char *fp_body, size_t fp_len)
{
    char scope[160];
    snprintf(scope, sizeof scope, "queue:%s", queue);
    it->idem_scope = ackd_strdup(scope);
    if (!it->task.idem_key)
        it->task.idem_key = ackd_strdup(key);
    ackd_fingerprint(ackd_http_req_method(req), ackd_http_req_path(req), fp_body, fp_len,
                     it->fingerprint);
}

static void log_accepted(const ackd_tq_item_t *it)
{
    ACKD_LOG(ACKD_LOG_DEBUG, "task accepted", LOG_TASK(&it->task),
             LOG_INT("replayed", it->replayed));
}

static ackd_http_response_t *on_enqueued(ackd_tq_op_t *op)
{
    if (op->status == ACKD_ECONFLICT) {
        /* a key repeated with two bodies in one batch has no task yet */
        json_t *extra = op->conflict_id[0] ? json_pack("{s:s}", "task_id", op->conflict_id) : NULL;
        return api_problem_response(422, "idempotency-mismatch",
                                    "Idempotency key reused with a different request", extra,
                                    op->detail);
    }
    if (op->status)
        return api_op_problem(op);
    ackd_http_response_t *r;
    if (op->nitems == 1 && !op->retry /* single submission */) {
        const ackd_tq_item_t *it = &op->items[0];
        log_accepted(it);
        /* the hot path: ids are [0-9a-z_], so the body needs no JSON encoder */
        char url[96], body[256];
        snprintf(url, sizeof url, "/v1/tasks/%s", it->task.id);
        int n = snprintf(body, sizeof body,
                         "{\"task_id\":\"%s\",\"status\":\"accepted\",\"status_url\":\"%s\"}",
                         it->task.id, url);
        r = ackd_http_response_new(202, "application/json");
        ackd_http_response_body(r, body, (size_t)n);
        ackd_http_response_header(r, "Location", url);
        api_retry_after(r, &it->task);
        if (it->replayed)
            ackd_http_response_header(r, "Idempotent-Replayed", "true");
    } else {
        ackd_buf_t b;
        ackd_jw_t w;
        ackd_jw_start(&w, &b, '{');
        ackd_jw_open(&w, "tasks", '[');
        bool all_replayed = true;
        for (int i = 0; i < op->nitems; i++) {
            const ackd_task_t *t = &op->items[i].task;
            all_replayed &= op->items[i].replayed;
            char url[96];
            snprintf(url, sizeof url, "/v1/tasks/%s", t->id);
            log_accepted(&op->items[i]);
            ackd_jw_open(&w, NULL, '{');
            ackd_jw_str(&w, "task_id", t->id);
            ackd_jw_str(&w, "status", "accepted");
            ackd_jw_str(&w, "status_url", url);
            if (op->items[i].replayed)
                ackd_jw_bool(&w, "replayed", true);
            ackd_jw_close(&w);
        }
        ackd_jw_close(&w);
        ackd_jw_close(&w);
        r = api_buf_response(202, &b);
        if (all_replayed) /* the whole batch again (under one Idempotency-Key, say) */
            ackd_http_response_header(r, "Idempotent-Replayed", "true");
    }
    return r;
}

/* Built on the committer: a submit's answer is a few snprintfs, and under
 * load the HTTP loop, not the committer, is what limits submits. */
API_ANSWER_HERE(on_enqueued)

static void on_submit(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = api_of(data);
    const ackd_queue_conf_t *q = api_path_queue(req, api);
    if (!q)
        return;
    char *payload_text;
    json_t *body = api_body_object_with(req, 0, "payload", &payload_text);
    if (!body)
        return;
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_ENQUEUE, on_enqueued_done, NULL);
    op->items = ackd_calloc(1, sizeof *op->items);
    op->nitems = 1;
    int64_t now = ackd_now_ms();
    if (decode_task(req, api, q, body, payload_text, &op->items[0], "", now) != 0) {
        json_decref(body);
        ackd_tq_op_free(op);
        return;
    }
    json_decref(body);
    const char *key;
    ackd_tq_item_t *it = &op->items[0];
    if (api_idempotency_key(req, &key) != 0) {
        ackd_tq_op_free(op);
        return;
    }
    if (key || it->task.idem_key) {
        size_t len;
        const char *b = ackd_http_req_body(req, &len);
        set_idempotency(req, it, q->name, key ? key : it->task.idem_key, b, len);
    }
    api_start(req, op);
}

static void on_submit_batch(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = api_of(data);
    const ackd_queue_conf_t *q = api_path_queue(req, api);
    if (!q)
        return;
    json_t *body = api_body_object(req, 0);
    if (!body)
        return;
    static const char *const known[] = {"tasks", NULL};
    if (api_known_members(req, body, known, "") != 0) {
        json_decref(body);
        return;
    }
    json_t *arr = json_object_get(body, "tasks");
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > MAX_BATCH) {
        json_decref(body);
        api_bad_field(req, "tasks", "an array of 1..1000 task objects");
        return;
    }
    /* An Idempotency-Key covers the whole batch: task i is keyed "KEY#i",
     * fingerprinted with the whole body, so a repeat gets the same tasks and
     * any change to the batch is a mismatch */
    const char *batch_key;
    if (api_idempotency_key(req, &batch_key) != 0) {
        json_decref(body);
        return;
    }
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_ENQUEUE, on_enqueued_done, NULL);
    op->retry = true; /* marks a batch: the answer lists every task */
    size_t n = json_array_size(arr);
    op->items = ackd_calloc(n, sizeof *op->items);
    /* where each task's text is, to keep its payload as the client wrote it */
    size_t doc_len;
    const char *doc = ackd_http_req_body(req, &doc_len);
    ackd_json_span_t tasks, *elems = ackd_calloc(n, sizeof *elems);
    if (!ackd_json_member_raw(doc, doc_len, "tasks", &tasks) ||
        ackd_json_elements(tasks.p, tasks.n, elems, (int)n) != (int)n) {
        ackd_free(elems); /* cannot be, for a body jansson read */
        elems = NULL;
    }
    int64_t now = ackd_now_ms();
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "tasks[%zu].", i);
        json_t *item = json_array_get(arr, i);
        op->nitems = (int)i + 1;
        if (!json_is_object(item)) {
            snprintf(prefix, sizeof prefix, "tasks[%zu]", i);
            api_bad_field(req, prefix, "a task object");
            ackd_free(elems);
            json_decref(body);
            ackd_tq_op_free(op);
            return;
        }
        ackd_json_span_t payload;
        char *payload_text = NULL;
        if (elems && json_object_get(item, "payload") &&
            ackd_json_member_raw(elems[i].p, elems[i].n, "payload", &payload))
            payload_text = api_json_copy(payload);
        if (decode_task(req, api, q, item, payload_text, &op->items[i], prefix, now) != 0) {
            ackd_free(elems);
            json_decref(body);
            ackd_tq_op_free(op);
            return;
        }
        ackd_tq_item_t *it = &op->items[i];
        if (batch_key && it->task.idem_key) {
            char field[48];
            snprintf(field, sizeof field, "tasks[%zu].idempotency_key", i);
            api_bad_field(req, field, "no key of its own: the Idempotency-Key header covers "
                                       "the whole batch");
            ackd_free(elems);
            json_decref(body);
            ackd_tq_op_free(op);
            return;
        }
        if (batch_key) {
            char key[300];
            snprintf(key, sizeof key, "%s#%zu", batch_key, i);
            set_idempotency(req, it, q->name, key, doc, doc_len);
        } else if (it->task.idem_key) {
            char *text = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
            set_idempotency(req, it, q->name, it->task.idem_key, text, strlen(text));
            free(text);
        }
    }
    ackd_free(elems);
    json_decref(body);
    api_start(req, op);
}

/* --- reading --- */

static ackd_http_response_t *on_got(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    api_write_task(&w, &op->task, ackd_now_ms());
    if (op->with_attempts) {
        api_write_attempts(&w, "history", op->attempts, op->nattempts);
        ackd_jw_open(&w, "events", '[');
        ackd_jw_open(&w, NULL, '{');
        ackd_jw_int(&w, "id", 1);
        ackd_jw_str(&w, "type", "task.queued");
        ackd_jw_time(&w, "at", op->task.created_at);
        ackd_jw_close(&w);
        for (int i = 0; i < op->nevents; i++) {
            const ackd_event_t *e = &op->events[i];
            ackd_jw_open(&w, NULL, '{');
            ackd_jw_int(&w, "id", e->seq);
            ackd_jw_str(&w, "type", e->type);
            ackd_jw_time(&w, "at", e->at);
            ackd_jw_raw(&w, "data", e->data);
            ackd_jw_close(&w);
        }
        ackd_jw_close(&w);
    }
    ackd_jw_close(&w);
    ackd_http_response_t *r = api_buf_response(200, &b);
    if (op->retry_after_ms) { /* the wait came from Prefer */
        char pa[48];
        snprintf(pa, sizeof pa, "wait=%lld", (long long)(op->retry_after_ms / 1000));
        ackd_http_response_header(r, "Preference-Applied", pa);
    }
    return r;
}

API_ANSWER(on_got)

/* ?history: absent, false or 0: off; true, 1 or bare (?history): on; -1
 * for anything else. */
static int history_param(const char *h)
{
    if (!h || strcmp(h, "false") == 0 || strcmp(h, "0") == 0)
        return 0;
    if (!*h || strcmp(h, "true") == 0 || strcmp(h, "1") == 0)
        return 1;
    return -1;
}

static void on_get(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = api_of(data);
    int from_prefer;
    int64_t wait = api_wait_ms(req, api->cfg->server.max_wait_ms, &from_prefer);
    if (wait < 0)
        return;
    int history = history_param(ackd_http_req_query_param(req, "history"));
    if (history < 0) {
        api_bad_field(req, "history", "true or false");
        return;
    }
    ackd_tq_op_t *op = api_task_op(req, api, ACKD_TQ_GET, on_got_done);
    if (!op)
        return;
    if (wait > 0)
        op->wait_until = ackd_now_ms() + wait;
    if (from_prefer)
        op->retry_after_ms = wait > 0 ? wait : 1; /* echoed in Preference-Applied */
    op->with_attempts = history;
    api_start(req, op);
}

static ackd_http_response_t *on_result_ready(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    const ackd_task_t *t = &op->task;
    if (t->state == ACKD_TASK_FAILED && t->result && api_result_is_answer(t->result)) {
        return api_replay_result(t->result, t->id); /* the final 4xx as given */
    }
    if (t->state != ACKD_TASK_COMPLETED) {
        int failed = ACKD_TASK_TERMINAL(t->state);
        char detail[128];
        snprintf(detail, sizeof detail, "the task is %s%s", ackd_task_state_name(t->state),
                 failed ? " and has no result" : "; its result is not ready yet");
        ackd_http_response_t *r = api_problem_response(
            409, failed ? "no-result" : "result-not-ready",
            failed ? "No result" : "Result not ready",
            json_pack("{s:s, s:s}", "task_id", t->id, "task_status",
                      ackd_task_state_name(t->state)),
            detail);
        if (!failed)
            api_retry_after(r, t);
        return r;
    }
    if (api_result_is_answer(t->result)) {
        return api_replay_result(t->result, t->id); /* the original response */
    }
    json_t *res = api_json_text(t->result);
    ackd_http_response_t *r = api_json_response(200, res);
    ackd_http_response_header(r, "Task-Id", t->id);
    return r;
}

API_ANSWER(on_result_ready)

static void on_result(ackd_http_req_t *req, void *data)
{
    ackd_tq_op_t *op = api_task_op(req, api_of(data), ACKD_TQ_GET, on_result_ready_done);
    if (op)
        api_start(req, op);
}

static ackd_http_response_t *on_listed(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    int64_t now = ackd_now_ms();
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_open(&w, "tasks", '[');
    int shown = op->ntasks > op->filter.limit ? op->filter.limit : op->ntasks;
    for (int i = 0; i < shown; i++) {
        ackd_jw_open(&w, NULL, '{');
        api_write_task(&w, &op->tasks[i], now);
        ackd_jw_close(&w);
    }
    ackd_jw_close(&w);
    ackd_jw_str(&w, "next_cursor",
                shown == op->filter.limit && shown > 0 ? op->tasks[shown - 1].id : NULL);
    ackd_jw_close(&w);
    return api_buf_response(200, &b);
}

API_ANSWER(on_listed)

static void on_list(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = api_of(data);
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_LIST, on_listed_done, NULL);
    ackd_task_filter_t *f = &op->filter;
    f->tenant = api_tenant_filter(req);
    f->limit = 50;
    const char *v;
    /* the op keeps its own copies: a client that leaves frees the request */
    if ((v = ackd_http_req_query_param(req, "queue")) && *v)
        f->queue = op->queue = ackd_strdup(v);
    if ((v = ackd_http_req_query_param(req, "status")) && *v) {
        f->state = ackd_task_state_parse(v);
        if (f->state < 0) {
            ackd_tq_op_free(op);
            api_bad_field(req, "status", "one of queued, processing, completed, failed, canceled");
            return;
        }
    }
    if ((v = ackd_http_req_query_param(req, "cursor")) && *v) {
        if (!ackd_id_valid("tsk_", v)) {
            ackd_tq_op_free(op);
            api_bad_field(req, "cursor", "a next_cursor value from an earlier page");
            return;
        }
        snprintf(op->cursor, sizeof op->cursor, "%s", v);
        f->before_id = op->cursor;
    }
    if ((v = ackd_http_req_query_param(req, "limit"))) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end || n < 1 || n > MAX_LIST) {
            ackd_tq_op_free(op);
            api_bad_field(req, "limit", "an integer 1..1000");
            return;
        }
        f->limit = (int)n;
    }
    api_start(req, op);
}

/* --- changing --- */

static ackd_http_response_t *on_changed(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    ACKD_LOG(ACKD_LOG_INFO,
             op->kind == ACKD_TQ_RETRY                  ? "task redriven"
             : op->task.state == ACKD_TASK_PROCESSING ? "task cancel requested"
                                                      : "task canceled",
             LOG_TASK(&op->task), LOG_STR("status", ackd_task_state_name(op->task.state)));
    return api_task_response(op->kind == ACKD_TQ_RETRY ? 202 : 200, &op->task);
}

API_ANSWER(on_changed)

static void on_cancel(ackd_http_req_t *req, void *data)
{
    ackd_tq_op_t *op = api_task_op(req, api_of(data), ACKD_TQ_CANCEL, on_changed_done);
    if (op)
        api_start(req, op);
}

static void on_retry(ackd_http_req_t *req, void *data)
{
    ackd_tq_op_t *op = api_task_op(req, api_of(data), ACKD_TQ_RETRY, on_changed_done);
    if (op)
        api_start(req, op);
}

#define CLIENT (ACKD_ROLE_CLIENT)

const ackd_route_t ackd_api_tasks_routes[] = {
    {.method = "POST", .pattern = "/v1/queues/{queue}/tasks", .handler = on_submit, .role = CLIENT},
    {.method = "POST", .pattern = "/v1/queues/{queue}/tasks:batch", .handler = on_submit_batch,
     .role = CLIENT},
    {.method = "GET", .pattern = "/v1/tasks", .handler = on_list, .role = CLIENT},
    {.method = "GET", .pattern = "/v1/tasks/{id}", .handler = on_get, .role = CLIENT},
    {.method = "GET", .pattern = "/v1/tasks/{id}/result", .handler = on_result, .role = CLIENT},
    {.method = "POST", .pattern = "/v1/tasks/{id}/cancel", .handler = on_cancel, .role = CLIENT},
    {.method = "POST", .pattern = "/v1/tasks/{id}/retry", .handler = on_retry, .role = CLIENT},
    {0},
};
