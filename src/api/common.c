/* common.c - auth, request decoding and documents shared by the API files. */
#include "api/common.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/id.h"
#include "base/jscan.h"
#include "base/units.h"
#include "queue/fingerprint.h"
#include "webhook/deliver.h"

/* --- auth --- */

static const ackd_auth_t anonymous = {.tenant = "default", .role = ACKD_ROLE_ADMIN};

const ackd_auth_t *api_auth(const ackd_http_req_t *req)
{
    const ackd_auth_t *a = ackd_http_req_auth(req);
    return a ? a : &anonymous;
}

const char *api_tenant_filter(const ackd_http_req_t *req)
{
    const ackd_auth_t *a = api_auth(req);
    return (a->role & ACKD_ROLE_ADMIN) ? NULL : a->tenant;
}

/* Keys are compared as SHA-256 hashes, every configured key every time, with
 * a constant-time comparison, so timing tells nothing about which matched. */
int api_authorize(ackd_http_req_t *req, int role, void *data)
{
    ackd_api_t *api = data;
    const ackd_config_t *cfg = api->cfg;
    if (role == 0 || cfg->nkeys == 0)
        return 0; /* public route, or no keys: loopback-only, everyone is admin */
    const char *h = ackd_http_req_header(req, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
        ackd_http_resp_header(req, "WWW-Authenticate", "Bearer");
        ackd_http_respond_problem(req, 401, "unauthorized", "Unauthorized", NULL,
                                  "send Authorization: Bearer <key>");
        return -1;
    }
    char hash[65];
    ackd_sha256_hex(h + 7, strlen(h + 7), hash);
    const ackd_key_conf_t *found = NULL;
    for (size_t i = 0; i < cfg->nkeys; i++)
        if (CRYPTO_memcmp(hash, cfg->keys[i].hash_hex, 64) == 0)
            found = &cfg->keys[i];
    if (!found) {
        ackd_http_resp_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        ackd_http_respond_problem(req, 401, "unauthorized", "Unauthorized", NULL,
                                  "the key is not valid");
        return -1;
    }
    if (!(found->role & ACKD_ROLE_ADMIN) && !(found->role & role)) {
        ackd_http_respond_problem(req, 403, "forbidden", "Forbidden", NULL,
                                  "this key's role may not call %s %s", ackd_http_req_method(req),
                                  ackd_http_req_path(req));
        return -1;
    }
    ackd_auth_t *a = ackd_http_req_alloc(req, sizeof *a);
    a->tenant = found->tenant;
    a->role = found->role;
    a->queues = (found->role & ACKD_ROLE_WORKER) ? found->queues : NULL;
    ackd_http_req_set_auth(req, a);
    return 0;
}

/* --- decoding --- */

json_t *api_body_object(ackd_http_req_t *req, int allow_empty)
{
    return api_body_object_with(req, allow_empty, NULL, NULL);
}

/* The member `bulky` of a vouched body: compact text, and null in the tree. */
static json_t *members_object(const ackd_jscan_member_t *m, int n, const char *bulky,
                              char **bulky_text)
{
    json_t *obj = json_object();
    size_t bulky_len = bulky ? strlen(bulky) : 0;
    for (int i = 0; i < n; i++) {
        json_t *v;
        if (bulky && m[i].key_len == bulky_len && memcmp(m[i].key, bulky, bulky_len) == 0) {
            *bulky_text = ackd_malloc(m[i].value_len + 1);
            ackd_json_minify(m[i].value, m[i].value_len, *bulky_text);
            v = json_null();
        } else if (!(v = json_loadb(m[i].value, m[i].value_len, JSON_DECODE_ANY, NULL))) {
            /* cannot happen for a vouched body; the full parse decides */
            json_decref(obj);
            ackd_free(*bulky_text);
            *bulky_text = NULL;
            return NULL;
        }
        json_object_setn_new(obj, m[i].key, m[i].key_len, v);
    }
    return obj;
}

/* jansson's reason for refusing a body, in a client's words where its own
 * are about itself ("without JSON_ALLOW_NUL", "too big integer"). */
static const char *json_error_words(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_null_character:
        return "a string holds \\u0000 (a NUL character), which ackd does not take";
    case json_error_numeric_overflow:
        return strstr(e->text, "integer")
                   ? "an integer past 64 bits (beyond -9223372036854775808..9223372036854775807);"
                     " send it as a string"
                   : "a number too large for a double (past 1.8e308)";
    case json_error_invalid_utf8:
        return "the body is not UTF-8";
    default:
        return e->text;
    }
}

json_t *api_body_object_with(ackd_http_req_t *req, int allow_empty, const char *bulky,
                             char **bulky_text)
{
    if (bulky_text)
        *bulky_text = NULL;
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    if (len == 0 && allow_empty)
        return json_object();
    const char *ct = ackd_http_req_header(req, "content-type");
    if (ct && strncasecmp(ct, "application/json", 16) != 0 && !strstr(ct, "+json")) {
        ackd_http_respond_problem(req, 415, "unsupported-media-type", "Unsupported Media Type",
                                  NULL, "send the body as application/json, not %s", ct);
        return NULL;
    }
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n;
    json_t *fast;
    if (bulky && bulky_text && ackd_jscan_object(body, len, m, &n) &&
        (fast = members_object(m, n, bulky, bulky_text)))
        return fast;
    json_error_t e;
    /* any JSON value parses: a well-formed scalar or array is then a 422 for
     * not being an object, not a 400 for being malformed */
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!j) {
        json_t *extra = json_pack("{s:i, s:i}", "line", e.line, "column", e.column);
        ackd_http_respond_problem(req, 400, "malformed-json", "Malformed JSON", extra,
                                  "line %d, column %d: %s", e.line, e.column,
                                  json_error_words(&e));
        json_decref(extra);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ackd_http_respond_problem(req, 422, "invalid-request", "Invalid request", NULL,
                                  "the body must be a JSON object");
        return NULL;
    }
    ackd_json_span_t v;
    if (bulky && bulky_text && json_object_get(j, bulky) &&
        ackd_json_member_raw(body, len, bulky, &v)) {
        /* the client's text, not jansson's print of it (base/jspan.h) */
        *bulky_text = api_json_copy(v);
        json_object_set_new(j, bulky, json_null());
    }
    return j;
}

char *api_json_copy(ackd_json_span_t v)
{
    char *text = ackd_malloc(v.n + 1);
    ackd_json_minify(v.p, v.n, text);
    return text;
}

int api_duration(const json_t *v, int64_t *ms)
{
    /* bounded before the multiplication: 1e20 seconds was an overflow, a
     * due time in the past, and a task run at once */
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= API_MAX_DELAY_MS / 1000) {
        *ms = json_integer_value(v) * 1000;
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) >= 0 &&
        json_real_value(v) <= (double)(API_MAX_DELAY_MS / 1000)) {
        *ms = (int64_t)(json_real_value(v) * 1000.0);
        return 0;
    }
    if (json_is_string(v) && ackd_parse_duration_ms(json_string_value(v), ms) == 0 &&
        *ms <= API_MAX_DELAY_MS)
        return 0;
    return ACKD_EINVAL;
}

int api_duration_in(const json_t *v, int64_t min_ms, int64_t max_ms, int64_t *ms)
{
    return api_duration(v, ms) == 0 && *ms >= min_ms && *ms <= max_ms ? 0 : ACKD_EINVAL;
}

const char *api_task_id(ackd_http_req_t *req)
{
    const char *id = ackd_http_req_param(req, "id");
    if (ackd_id_valid("tsk_", id))
        return id;
    ackd_http_respond_problem(req, 404, "task-not-found", "Task not found", NULL,
                              "no task with id \"%s\"", id);
    return NULL;
}

ackd_tq_op_t *api_task_op(ackd_http_req_t *req, ackd_api_t *api, int kind, ackd_tq_cb cb)
{
    const char *id = api_task_id(req);
    if (!id)
        return NULL;
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, kind, cb, NULL);
    snprintf(op->id, sizeof op->id, "%s", id);
    op->tenant = api_tenant_filter(req);
    return op;
}

const ackd_queue_conf_t *api_path_queue(ackd_http_req_t *req, ackd_api_t *api)
{
    const char *name = ackd_http_req_param(req, "queue");
    const ackd_queue_conf_t *q = ackd_config_queue(api->cfg, name);
    if (!q) {
        json_t *extra = json_pack("{s:s}", "queue", name);
        ackd_http_respond_problem(req, 404, "queue-not-found", "Queue not found", extra,
                                  "no queue named \"%s\" is configured", name);
        json_decref(extra);
    }
    return q;
}

void api_bad_field(ackd_http_req_t *req, const char *field, const char *expected)
{
    json_t *extra = json_pack("{s:s}", "field", field);
    ackd_http_respond_problem(req, 422, "invalid-field", "Invalid field", extra, "%s: expected %s",
                              field, expected);
    json_decref(extra);
}

int api_idempotency_key(ackd_http_req_t *req, const char **key)
{
    *key = ackd_http_req_header(req, "idempotency-key");
    if (!*key || (**key && strlen(*key) <= 255))
        return 0;
    ackd_http_respond_problem(req, 400, "bad-idempotency-key", "Bad Idempotency-Key", NULL,
                              "Idempotency-Key must be 1..255 characters");
    return -1;
}

/* n lower-case hex digits, not all zeros when nonzero is set */
static bool hex_field(const char *p, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
        any |= p[i] != '0';
    }
    return any || !nonzero;
}

const char *api_traceparent(ackd_http_req_t *req)
{
    const char *tp = ackd_http_req_header(req, "traceparent");
    if (!tp)
        return NULL;
    size_t n = strlen(tp);
    /* 00-<32 hex>-<16 hex>-<2 hex>; a later version may append "-..." */
    if (n < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || !hex_field(tp, 2, false) ||
        strncmp(tp, "ff", 2) == 0 || !hex_field(tp + 3, 32, true) ||
        !hex_field(tp + 36, 16, true) || !hex_field(tp + 53, 2, false))
        return NULL;
    if (n > 55 && (strncmp(tp, "00", 2) == 0 || tp[55] != '-' || n > 127))
        return NULL;
    return tp;
}

void api_retry_after(ackd_http_response_t *r, const ackd_task_t *t)
{
    int64_t wait_ms = t->state == ACKD_TASK_QUEUED ? t->due_at - ackd_now_ms() : 0;
    long long secs = wait_ms > 1000 ? (wait_ms + 999) / 1000 : 1;
    char v[24];
    snprintf(v, sizeof v, "%lld", secs);
    ackd_http_response_header(r, "Retry-After", v);
}

const char *api_callback_url_problem(const ackd_api_t *api, const char *url, char *buf, size_t n)
{
    char host[256], port[8];
    bool https;
    if (strlen(url) > 2048 ||
        ackd_wh_url_parts(url, host, sizeof host, port, sizeof port, &https) != 0)
        return "an http:// or https:// URL with a host, of at most 2048 characters";
    const char *why = ackd_guard_check_host(&api->guard, host);
    if (!why)
        return NULL;
    snprintf(buf, n,
             "a URL ackd may call: %s is a %s address (open it with [webhooks] allow_private)",
             host, why);
    return buf;
}

int api_known_members(ackd_http_req_t *req, json_t *obj, const char *const *known,
                      const char *prefix)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (ok)
            continue;
        char field[96], expected[256];
        snprintf(field, sizeof field, "%s%s", prefix, key);
        size_t n = (size_t)snprintf(expected, sizeof expected, "a known field (");
        for (int i = 0; known[i] && n < sizeof expected; i++)
            n += (size_t)snprintf(expected + n, sizeof expected - n, "%s%s", i ? ", " : "",
                                  known[i]);
        if (n < sizeof expected)
            snprintf(expected + n, sizeof expected - n, ")");
        api_bad_field(req, field, expected);
        return -1;
    }
    return 0;
}

/* One preference of a Prefer header: name [= value] *( ";" parameter ). */
static void prefer_one(const char *h, size_t n, api_prefer_t *out)
{
    size_t name = strcspn(h, "=; \t");
    if (name > n)
        name = n;
    if (name == 13 && strncasecmp(h, "respond-async", 13) == 0) {
        out->respond_async = 1;
        return;
    }
    if (name != 4 || strncasecmp(h, "wait", 4) != 0)
        return;
    size_t i = name;
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    if (i >= n || h[i] != '=')
        return;
    i++;
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    int quoted = i < n && h[i] == '"';
    i += quoted;
    long long secs = 0;
    size_t digits = 0;
    for (; i < n && h[i] >= '0' && h[i] <= '9'; i++, digits++) {
        if (secs > 1000000000)
            return;
        secs = secs * 10 + (h[i] - '0');
    }
    if (quoted) {
        if (i >= n || h[i] != '"')
            return;
        i++;
    }
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    if (digits == 0 || (i < n && h[i] != ';') || out->wait_ms >= 0)
        return;
    out->wait_ms = secs * 1000;
}

/* Every Prefer field, in order (a list field: RFC 7240 §2 allows several);
 * a preference given twice counts the first time. */
void api_prefer(ackd_http_req_t *req, api_prefer_t *out)
{
    out->respond_async = 0;
    out->wait_ms = -1;
    const char *name, *h;
    for (size_t f = 0; ackd_http_req_header_at(req, f, &name, &h) == 0; f++) {
        if (strcasecmp(name, "prefer") != 0)
            continue;
        while (*h) {
            while (*h == ' ' || *h == '\t' || *h == ',')
                h++;
            size_t n = strcspn(h, ",");
            if (n)
                prefer_one(h, n, out);
            h += n;
        }
    }
}

int64_t api_wait_ms(ackd_http_req_t *req, int64_t max_wait_ms, int *from_prefer)
{
    int64_t ms = 0;
    *from_prefer = 0;
    const char *q = ackd_http_req_query_param(req, "wait");
    if (q) {
        if (ackd_parse_duration_ms(q, &ms) != 0 || ms < 0) {
            api_bad_field(req, "wait", "a duration: seconds, or a string like \"30s\"");
            return -1;
        }
    } else {
        api_prefer_t p;
        api_prefer(req, &p);
        if (p.wait_ms >= 0) {
            ms = p.wait_ms;
            *from_prefer = 1;
        }
    }
    return ms > max_wait_ms ? max_wait_ms : ms;
}

/* --- documents --- */

json_t *api_json_text(const char *text)
{
    if (!text)
        return json_null();
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    return j ? j : json_string(text);
}

void api_time(json_t *obj, const char *key, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(obj, key, json_null());
        return;
    }
    char buf[32];
    ackd_time_format(ms, buf, sizeof buf);
    json_object_set_new(obj, key, json_string(buf));
}

void api_write_task(ackd_jw_t *w, const ackd_task_t *t, int64_t now)
{
    char self[96];
    int n = snprintf(self, sizeof self, "/v1/tasks/%s", t->id);
    ackd_jw_str(w, "id", t->id);
    ackd_jw_str(w, "queue", t->queue);
    ackd_jw_str(w, "status", ackd_task_state_name(t->state));
    ackd_jw_int(w, "attempts", t->attempts);
    ackd_jw_int(w, "max_attempts", t->max_attempts);
    ackd_jw_int(w, "priority", t->priority);
    ackd_jw_time(w, "created_at", t->created_at);
    ackd_jw_time(w, "updated_at", t->updated_at);
    ackd_jw_time(w, "next_attempt_at",
                 t->state == ACKD_TASK_QUEUED && t->due_at > now ? t->due_at : 0);
    ackd_tq_write_progress(w, t);
    ackd_jw_str(w, "correlation_id", t->correlation_id);
    if (t->traceparent)
        ackd_jw_str(w, "traceparent", t->traceparent);
    ackd_jw_str(w, "callback_url", t->callback_url);
    ackd_jw_raw(w, "result", t->result);
    ackd_jw_raw(w, "error", t->error);
    if (t->cancel_requested)
        ackd_jw_bool(w, "cancel_requested", true);
    ackd_jw_open(w, "links", '{');
    ackd_jw_str(w, "self", self);
    snprintf(self + n, sizeof self - (size_t)n, "/result");
    ackd_jw_str(w, "result", self);
    snprintf(self + n, sizeof self - (size_t)n, "/events");
    ackd_jw_str(w, "events", self);
    ackd_jw_close(w);
}

void api_write_attempts(ackd_jw_t *w, const char *key, const ackd_attempt_t *a, int n)
{
    ackd_jw_open(w, key, '[');
    for (int i = 0; i < n; i++) {
        ackd_jw_open(w, NULL, '{');
        ackd_jw_int(w, "attempt", a[i].n);
        ackd_jw_time(w, "started_at", a[i].started_at);
        ackd_jw_time(w, "ended_at", a[i].ended_at);
        ackd_jw_str(w, "outcome", a[i].outcome);
        ackd_jw_raw(w, "error", a[i].error);
        ackd_jw_close(w);
    }
    ackd_jw_close(w);
}

ackd_http_response_t *api_task_response(int status, const ackd_task_t *t)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    api_write_task(&w, t, ackd_now_ms());
    ackd_jw_close(&w);
    return api_buf_response(status, &b);
}

/* --- responses --- */

ackd_http_response_t *api_buf_response(int status, ackd_buf_t *body)
{
    ackd_http_response_t *r = ackd_http_response_new(status, "application/json");
    ackd_http_response_body_take(r, body);
    return r;
}

ackd_http_response_t *api_json_response(int status, json_t *body)
{
    ackd_http_response_t *r = ackd_http_response_new(status, "application/json");
    /* ENCODE_ANY: a body may be any JSON value (a worker's result "ok", null) */
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    ackd_http_response_body(r, text, strlen(text));
    free(text);
    json_decref(body);
    return r;
}

ackd_http_response_t *api_problem_response(int status, const char *type, const char *title,
                                           json_t *extra, const char *detail)
{
    char t[128];
    snprintf(t, sizeof t, "/problems/%s", type);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", t, "title", title, "status", status,
                          "detail", detail ? detail : "");
    if (extra) {
        /* extra members never replace type, title, status or detail */
        json_object_update_missing(p, extra);
        json_decref(extra);
    }
    ackd_http_response_t *r = ackd_http_response_new(status, "application/problem+json");
    char *text = json_dumps(p, JSON_COMPACT);
    ackd_http_response_body(r, text, strlen(text));
    free(text);
    json_decref(p);
    return r;
}

ackd_http_response_t *api_op_problem(const ackd_tq_op_t *op)
{
    switch (op->status) {
    case ACKD_ENOENT:
        return api_problem_response(404, "task-not-found", "Task not found", NULL, op->detail);
    case ACKD_ECONFLICT:
        return api_problem_response(409, "conflict", "Conflict",
                                    json_pack("{s:s}", "task_id", op->id), op->detail);
    default: {
        /* the store could not commit (a full disk, an I/O error): nothing of
         * the request was kept, and it may be sent again */
        ackd_http_response_t *r = api_problem_response(
            503, "store-unavailable", "Store unavailable", NULL,
            op->detail ? op->detail : "the store failed");
        ackd_http_response_header(r, "Retry-After", "1");
        return r;
    }
    }
}

static void release_op(void *arg)
{
    ackd_tq_op_free(arg);
}

void api_answer_later(ackd_tq_op_t *op, ackd_http_build_cb build)
{
    ackd_http_defer_respond_later(op->data, build, release_op, op);
}

void api_finish(ackd_tq_op_t *op, ackd_http_response_t *r)
{
    ackd_http_defer_respond_free(op->data, r, release_op, op);
}

/* Loop thread: the client left. A waiting op is taken back; one that is
 * already finishing answers into the void and is freed after. */
static void on_client_gone(ackd_http_defer_t *d, void *data)
{
    if (ackd_tq_abandon(data))
        ackd_http_defer_drop(d);
}

void api_start(ackd_http_req_t *req, ackd_tq_op_t *op)
{
    op->data = ackd_http_defer(req, on_client_gone, op);
    ackd_tq_run(op);
}
