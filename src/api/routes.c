/* routes.c - the proxy face (SPEC §2): a configured `[route METHOD /path]`
 * turns the client's request into a task of its queue and answers, by the
 * route's mode and the client's Prefer header, either with the upstream's
 * own answer (when the task finishes inside the wait) or with 202 and a
 * status URL (or 504 for a sync route whose wait ran out).
 *
 *   mode   no Prefer            respond-async            wait=N
 *   sync   wait sync_timeout    202 if allow_async       wait min(N, sync_timeout)
 *   async  202 at once          202 at once              wait min(N, max_wait), else 202
 *   auto   wait `wait`          202 at once              wait min(N, max_wait), else 202
 *
 * The request is persisted before anything is answered: a client that times
 * out or leaves can still read the result. An Idempotency-Key maps to one
 * task; a repeat while it runs waits on the same task, a repeat after it
 * finished gets the stored answer again. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/common.h"
#include "base/alloc.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/jbody.h"
#include "base/jw.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "queue/fingerprint.h"

enum {
    F_SYNC = 1,           /* a wait that runs out is a 504, not a 202 */
    F_APPLIED_ASYNC = 2,  /* Preference-Applied: respond-async */
    F_APPLIED_WAIT = 4,   /* Preference-Applied: wait=N */
};

typedef struct {
    ackd_api_t *api;
    const ackd_route_conf_t *route;
    char scope[300];      /* idempotency scope: "route:POST /api/x" */
} route_ctx_t;

/* Request headers that are about this hop or about ackd, not the operation:
 * they are neither stored with the task nor sent upstream. */
static int is_private_header(const char *name)
{
    static const char *const names[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "host", "content-length", "expect", "authorization", "proxy-authorization",
        "prefer", "idempotency-key", "callback-url", "x-request-id", "traceparent", "tracestate",
        "cookie", NULL};
    for (int i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* Fields the client's Connection header names are about this hop too
 * (RFC 9110 §7.6.1): they go neither into the task nor upstream. */
static int named_by_connection(ackd_http_req_t *req, const char *name)
{
    const char *n, *v;
    size_t len = strlen(name);
    for (size_t i = 0; ackd_http_req_header_at(req, i, &n, &v) == 0; i++) {
        if (strcasecmp(n, "connection") != 0)
            continue;
        for (const char *p = v; *p;) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            size_t tl = strcspn(p, " \t,");
            if (tl == len && strncasecmp(p, name, len) == 0)
                return 1;
            p += tl;
        }
    }
    return 0;
}

/* The request as the task keeps it: {method, path, query, headers (names
 * lower-case, repeated fields joined with a comma, RFC 9110 §5.3), body}.
 * Written with the JSON writer (jansson trees here were a third of the
 * HTTP loop's work on an async route). */
typedef struct {
    const char *name;  /* as the client spelled it; written lower-case */
    const char *value;
    ackd_buf_t joined; /* used when the field repeats */
} kept_field_t;

/* The route's upstream_path with its {params} put in, each as the client
 * sent it (percent-encoded: one path segment stays one). */
static void write_upstream_path(ackd_jw_t *w, ackd_http_req_t *req, const char *tmpl)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    for (const char *p = tmpl; *p;) {
        const char *end = p[0] == '{' ? strchr(p, '}') : NULL;
        if (!end) {
            ackd_buf_appendc(&b, *p++);
            continue;
        }
        char *name = ackd_strndup(p + 1, (size_t)(end - p - 1));
        const char *v = ackd_http_req_param_raw(req, name); /* config checked it is one */
        ackd_buf_appendz(&b, v ? v : "");
        ackd_free(name);
        p = end + 1;
    }
    ackd_jw_strn(w, "upstream_path", b.data ? b.data : "", b.len);
    ackd_buf_free(&b);
}

static char *request_json(ackd_http_req_t *req, const ackd_route_conf_t *route)
{
    kept_field_t few[32], *fields = few;
    const char *name, *value;
    size_t total = 0;
    while (ackd_http_req_header_at(req, total, &name, &value) == 0)
        total++;
    if (total > sizeof few / sizeof few[0])
        fields = ackd_malloc(total * sizeof *fields);
    int nfields = 0;
    for (size_t i = 0; ackd_http_req_header_at(req, i, &name, &value) == 0; i++) {
        if (strlen(name) >= 256 || is_private_header(name) || named_by_connection(req, name))
            continue;
        int f = 0;
        while (f < nfields && strcasecmp(fields[f].name, name) != 0)
            f++;
        if (f < nfields) {
            ackd_buf_t *j = &fields[f].joined;
            if (!j->data)
                ackd_buf_append(j, fields[f].value, strlen(fields[f].value));
            ackd_buf_append(j, ", ", 2);
            ackd_buf_append(j, value, strlen(value));
            continue;
        }
        fields[nfields].name = name;
        fields[nfields].value = value;
        ackd_buf_init(&fields[nfields++].joined, 0);
    }
    ackd_buf_t out;
    ackd_jw_t w;
    ackd_jw_start(&w, &out, '{');
    ackd_jw_str(&w, "method", ackd_http_req_method(req));
    ackd_jw_str(&w, "path", ackd_http_req_path(req));
    ackd_jw_str(&w, "query", ackd_http_req_query(req));
    if (route->upstream_path)
        write_upstream_path(&w, req, route->upstream_path);
    ackd_jw_open(&w, "headers", '{');
    /* this hop, as proxies tell it (nginx's $proxy_add_x_forwarded_for):
     * the client's address after the chain it sent; the host and scheme it
     * asked for, unless a proxy in front of ackd said them already */
    const char *peer = ackd_http_req_peer(req);
    bool has_xff = false, has_host = false, has_proto = false;
    for (int f = 0; f < nfields; f++) {
        char lower[256];
        size_t n = strlen(fields[f].name);
        for (size_t k = 0; k <= n; k++) {
            char c = fields[f].name[k];
            lower[k] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        /* a value that is not UTF-8 is left out, as jansson's json_string
         * refused it before */
        ackd_buf_t *j = &fields[f].joined;
        bool xff = strcmp(lower, "x-forwarded-for") == 0;
        has_xff |= xff;
        has_host |= strcmp(lower, "x-forwarded-host") == 0;
        has_proto |= strcmp(lower, "x-forwarded-proto") == 0;
        if (xff && *peer) {
            if (!j->data)
                ackd_buf_append(j, fields[f].value, strlen(fields[f].value));
            ackd_buf_append(j, ", ", 2);
            ackd_buf_append(j, peer, strlen(peer));
        }
        const char *v = j->data ? j->data : fields[f].value;
        size_t vl = j->data ? j->len : strlen(v);
        if (ackd_utf8_valid(v, vl))
            ackd_jw_strn(&w, lower, v, vl);
        ackd_buf_free(j);
    }
    if (!has_xff && *peer)
        ackd_jw_str(&w, "x-forwarded-for", peer);
    const char *host = ackd_http_req_header(req, "host");
    if (!has_host && host && ackd_utf8_valid(host, strlen(host)))
        ackd_jw_str(&w, "x-forwarded-host", host);
    if (!has_proto)
        ackd_jw_str(&w, "x-forwarded-proto", "http");
    ackd_jw_close(&w);
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    ackd_jbody_write(&w, ackd_http_req_header(req, "content-type"), body, len);
    ackd_jw_close(&w);
    if (fields != few)
        ackd_free(fields);
    return ackd_buf_detach(&out, NULL);
}

/* Decides how long to wait and what a wait that runs out means. */
static int64_t plan_wait(const ackd_route_conf_t *r, const api_prefer_t *p, int *flags)
{
    *flags = 0;
    int64_t w;
    switch (r->mode) {
    case ACKD_MODE_SYNC:
        if (p->respond_async && r->allow_async) {
            *flags |= F_APPLIED_ASYNC;
            if (p->wait_ms < 0)
                return 0;
            *flags |= F_APPLIED_WAIT;
            return p->wait_ms < r->max_wait_ms ? p->wait_ms : r->max_wait_ms;
        }
        *flags |= F_SYNC;
        if (p->wait_ms >= 0) {
            *flags |= F_APPLIED_WAIT;
            return p->wait_ms < r->sync_timeout_ms ? p->wait_ms : r->sync_timeout_ms;
        }
        return r->sync_timeout_ms;
    case ACKD_MODE_ASYNC:
    case ACKD_MODE_AUTO:
    default:
        if (p->wait_ms >= 0) {
            *flags |= F_APPLIED_WAIT | (p->respond_async ? F_APPLIED_ASYNC : 0);
            return p->wait_ms < r->max_wait_ms ? p->wait_ms : r->max_wait_ms;
        }
        if (p->respond_async) {
            *flags |= F_APPLIED_ASYNC;
            return 0;
        }
        if (r->mode == ACKD_MODE_ASYNC)
            return 0;
        w = r->wait_ms;
        return w;
    }
}

/* --- answering --- */

static void preference_headers(ackd_http_response_t *r, const ackd_tq_op_t *op, int waited)
{
    char pa[64] = "";
    if ((op->flags & F_APPLIED_ASYNC) && !waited)
        snprintf(pa, sizeof pa, "respond-async");
    if (op->flags & F_APPLIED_WAIT) {
        size_t n = strlen(pa);
        snprintf(pa + n, sizeof pa - n, "%swait=%lld", n ? ", " : "",
                 (long long)(op->applied_wait_ms / 1000));
    }
    if (pa[0])
        ackd_http_response_header(r, "Preference-Applied", pa);
    ackd_http_response_header(r, "Vary", "Prefer");
}

/* Replays a stored upstream answer {status, content_type, headers, body}. */
ackd_http_response_t *api_replay_result(const char *result_text, const char *task_id)
{
    json_t *res = api_json_text(result_text);
    json_t *st = json_object_get(res, "status");
    int status = json_is_integer(st) ? (int)json_integer_value(st) : 200;
    const char *ct = json_string_value(json_object_get(res, "content_type"));
    ackd_http_response_t *r = ackd_http_response_new(status, ct);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(res, "headers"), k, v)
    {
        /* ackd writes these itself (X-Request-ID is the client's request id) */
        static const char *const own[] = {"content-type", "content-length", "transfer-encoding",
                                          "connection", "keep-alive", "x-request-id", "date",
                                          "server", NULL};
        int skip = 0;
        for (int i = 0; !skip && own[i]; i++)
            skip = strcasecmp(k, own[i]) == 0;
        if (skip)
            continue;
        if (json_is_string(v)) {
            ackd_http_response_header(r, k, json_string_value(v));
        } else if (json_is_array(v)) { /* Set-Cookie: one field per cookie */
            size_t i;
            json_t *one;
            json_array_foreach(v, i, one)
            {
                if (json_is_string(one))
                    ackd_http_response_header(r, k, json_string_value(one));
            }
        }
    }
    char *body = NULL; /* the bytes the backend sent (base/jbody.h) */
    size_t len;
    if (result_text && ackd_jbody_read(result_text, strlen(result_text), &body, &len) && body)
        ackd_http_response_body(r, body, len);
    ackd_free(body);
    ackd_http_response_header(r, "Task-Id", task_id);
    json_decref(res);
    return r;
}

static ackd_http_response_t *accepted(const ackd_task_t *t)
{
    char url[96];
    snprintf(url, sizeof url, "/v1/tasks/%s", t->id);
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_str(&w, "task_id", t->id);
    ackd_jw_str(&w, "status", "accepted");
    ackd_jw_str(&w, "status_url", url);
    ackd_jw_close(&w);
    ackd_http_response_t *r = ackd_http_response_new(202, "application/json");
    ackd_http_response_body_take(r, &b);
    ackd_http_response_header(r, "Location", url);
    api_retry_after(r, t);
    ackd_http_response_header(r, "Task-Id", t->id);
    return r;
}

static ackd_http_response_t *route_answer(ackd_tq_op_t *op)
{
    if (op->status == ACKD_ECONFLICT && op->conflict_id[0]) {
        return api_problem_response(422, "idempotency-mismatch",
                                    "Idempotency key reused with a different request",
                                    json_pack("{s:s}", "task_id", op->conflict_id), op->detail);
    }
    if (op->status)
        return api_op_problem(op);
    const ackd_task_t *t = &op->task;
    int replayed = op->nitems == 1 && op->items[0].replayed;
    char url[96];
    snprintf(url, sizeof url, "/v1/tasks/%s", t->id);
    ackd_http_response_t *r;
    int waited = 0;
    if (ACKD_TASK_TERMINAL(t->state) && t->result) {
        r = api_replay_result(t->result, t->id); /* the backend's own answer */
        waited = 1;
    } else if (ACKD_TASK_TERMINAL(t->state)) {
        json_t *extra = json_pack("{s:s, s:s, s:s, s:o}", "task_id", t->id, "status_url", url,
                                  "task_status", ackd_task_state_name(t->state), "error",
                                  api_json_text(t->error));
        r = api_problem_response(502, "task-failed", "The task failed", extra,
                                 "the operation did not succeed; see the task's error");
        ackd_http_response_header(r, "Task-Id", t->id);
        waited = 1;
    } else if (op->flags & F_SYNC) {
        json_t *extra = json_pack("{s:s, s:s}", "task_id", t->id, "status_url", url);
        r = api_problem_response(504, "sync-timeout", "The answer did not come in time", extra,
                                 "the task is still running; its result will be at status_url");
        ackd_http_response_header(r, "Location", url);
        ackd_http_response_header(r, "Task-Id", t->id);
    } else {
        r = accepted(t);
    }
    preference_headers(r, op, waited);
    if (replayed)
        ackd_http_response_header(r, "Idempotent-Replayed", "true");
    ACKD_LOG(ACKD_LOG_INFO, "route answered", LOG_TASK(t),
             LOG_STR("status", ackd_task_state_name(t->state)), LOG_INT("replayed", replayed));
    return r;
}

API_ANSWER(route_answer)

static void on_route(ackd_http_req_t *req, void *data)
{
    route_ctx_t *ctx = data;
    ackd_api_t *api = ctx->api;
    const ackd_route_conf_t *route = ctx->route;
    const ackd_queue_conf_t *q = ackd_config_queue(api->cfg, route->queue);
    const char *key;
    if (api_idempotency_key(req, &key) != 0)
        return;
    const char *cb = ackd_http_req_header(req, "callback-url");
    char why[256];
    const char *wrong = cb ? api_callback_url_problem(api, cb, why, sizeof why) : NULL;
    if (wrong) {
        ackd_http_respond_problem(req, 400, "bad-callback-url", "Bad Callback-URL", NULL,
                                  "Callback-URL must be %s", wrong);
        return;
    }
    api_prefer_t prefer;
    api_prefer(req, &prefer);
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_ENQUEUE, route_answer_done, NULL);
    int64_t now = ackd_now_ms();
    int64_t wait = plan_wait(route, &prefer, &op->flags);
    op->applied_wait_ms = prefer.wait_ms;
    op->load_task = true;
    op->early_answer = true;
    if (wait > 0)
        op->wait_until = now + wait;
    op->items = ackd_calloc(1, sizeof *op->items);
    op->nitems = 1;
    ackd_tq_item_t *it = &op->items[0];
    ackd_task_t *t = &it->task;
    ackd_tq_task_init(api->tq, t, q, api_auth(req)->tenant, now);
    t->request = request_json(req, route);
    t->correlation_id = ackd_strdup(ackd_http_req_id(req));
    const char *tp = api_traceparent(req);
    if (tp)
        t->traceparent = ackd_strdup(tp);
    const char *callback = cb ? cb : route->callback_url;
    if (callback) {
        ackd_free(t->callback_url);
        t->callback_url = ackd_strdup(callback);
    }
    if (key) {
        size_t len;
        const char *body = ackd_http_req_body(req, &len);
        it->idem_scope = ackd_strdup(ctx->scope);
        t->idem_key = ackd_strdup(key);
        /* the query goes to the upstream too, so it is part of "the same
         * request" (without one, the fingerprint is the path's, as before) */
        const char *query = ackd_http_req_query(req);
        const char *path = ackd_http_req_path(req);
        char *target = NULL;
        if (*query) {
            size_t pn = strlen(path), qn = strlen(query);
            target = ackd_malloc(pn + qn + 2);
            memcpy(target, path, pn);
            target[pn] = '?';
            memcpy(target + pn + 1, query, qn + 1);
        }
        ackd_fingerprint(ackd_http_req_method(req), target ? target : path, body, len,
                         it->fingerprint);
        ackd_free(target);
    }
    api_start(req, op);
}

/* One handler per configured route; contexts live as long as the API. */
int ackd_api_register_routes(ackd_router_t *router, ackd_api_t *api)
{
    const ackd_config_t *cfg = api->cfg;
    if (cfg->nroutes == 0)
        return 0;
    route_ctx_t *ctxs = ackd_calloc(cfg->nroutes, sizeof *ctxs);
    api->route_ctxs = ctxs;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const ackd_route_conf_t *r = &cfg->routes[i];
        ctxs[i].api = api;
        ctxs[i].route = r;
        snprintf(ctxs[i].scope, sizeof ctxs[i].scope, "route:%s %s", r->method, r->path);
        ackd_route_t entry = {.method = r->method, .pattern = r->path, .handler = on_route,
                              .role = ACKD_ROLE_CLIENT};
        int rc = ackd_router_add(router, &entry, &ctxs[i]);
        if (rc) {
            ACKD_LOG(ACKD_LOG_ERROR, "route clashes with the API", LOG_STR("method", r->method),
                     LOG_STR("path", r->path));
            return rc;
        }
    }
    return 0;
}

int api_result_is_answer(const char *result_text)
{
    json_t *res = api_json_text(result_text);
    int yes = json_is_object(res) && json_is_integer(json_object_get(res, "status")) &&
              json_object_get(res, "content_type") != NULL;
    json_decref(res);
    return yes;
}

char *api_answer_from_worker(json_t *response, const char *body_json)
{
    json_t *headers = json_object_get(response, "headers");
    json_t *body = json_object_get(response, "body");
    const char *ct = NULL;
    json_t *hdrs = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(headers, k, v)
    {
        if (strcasecmp(k, "content-type") == 0 && json_is_string(v))
            ct = json_string_value(v);
        else if (json_is_string(v) || json_is_array(v)) /* checked by the caller */
            json_object_set(hdrs, k, v);
    }
    if (!body_json || strcmp(body_json, "null") == 0)
        body_json = NULL;
    else if (!ct)
        ct = json_is_string(body) ? "text/plain; charset=utf-8" : "application/json";
    char *htext = json_dumps(hdrs, JSON_COMPACT);
    json_decref(hdrs);
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_int(&w, "status", json_integer_value(json_object_get(response, "status")));
    ackd_jw_str(&w, "content_type", ct);
    ackd_jw_raw(&w, "headers", htext);
    ackd_jw_raw(&w, "body", body_json);
    ackd_jw_close(&w);
    free(htext);
    return b.data;
}
