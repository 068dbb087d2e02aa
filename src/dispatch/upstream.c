/* upstream.c - one call to an upstream (see upstream.h).
 *
 * The request: the original method, path (or the queue's upstream_path),
 * query and body; Content-Type and the queue's forward_headers allowlist of
 * the client's headers; and ackd's own: Task-Id, Idempotency-Key (the
 * client's, else the task id, so the backend can dedupe retries), X-Request-ID,
 * traceparent and Task-Attempt. Queue tasks send their payload as a JSON POST.
 * Redirects are not followed; the answer is kept up to max_result_size. */
#include "dispatch/upstream.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/base64.h"
#include "base/error.h"
#include "base/jbody.h"
#include "base/jw.h"
#include "http/client.h"
#include "queue/tq.h"

/* Answer headers not worth keeping: about the hop, or recomputed on replay. */
static int dropped_answer_header(const char *name)
{
    static const char *const names[] = {"connection", "keep-alive", "transfer-encoding", "te",
                                        "trailer", "upgrade", "content-length", "date", "server",
                                        "content-type", "x-request-id", NULL};
    for (int i = 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static int add_header(ackd_call_t *call, const char *name, const char *value)
{
    if (has_crlf(name) || has_crlf(value))
        return ACKD_EINVAL;
    char *line;
    if (asprintf(&line, "%s: %s", name, value) < 0)
        return ACKD_EINVAL;
    call->headers = curl_slist_append(call->headers, line);
    free(line);
    return 0;
}

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, " ");
        if (len == n && strncasecmp(p, name, n) == 0)
            return 1;
        p += len;
        while (*p == ' ')
            p++;
    }
    return 0;
}

static size_t on_answer_body(char *data, size_t size, size_t n, void *userp)
{
    ackd_call_t *call = userp;
    if (call->conf->max_result_size == 0)
        return size * n; /* keep no answer body */
    if (ackd_buf_append(&call->answer, data, size * n) != 0) {
        call->too_large = true;
        return 0; /* aborts the transfer */
    }
    return size * n;
}

static size_t on_answer_header(char *data, size_t size, size_t n, void *userp)
{
    ackd_call_t *call = userp;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* a new status line (after a 100 Continue): start over */
        json_decref(call->answer_headers);
        call->answer_headers = json_object();
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon || colon == data)
        return len;
    char name[128], value[2048];
    size_t nl = (size_t)(colon - data);
    if (nl >= sizeof name)
        return len;
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)((data[i] >= 'A' && data[i] <= 'Z') ? data[i] + 32 : data[i]);
    name[nl] = '\0';
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= sizeof value)
        return len;
    memcpy(value, v, vl);
    value[vl] = '\0';
    if (strcmp(name, "content-type") == 0) {
        ackd_free(call->content_type);
        call->content_type = ackd_strdup(value);
    } else if (strcmp(name, "retry-after") == 0) {
        call->retry_after_ms = ackd_http_retry_after_ms(value);
    }
    if (!dropped_answer_header(name)) {
        json_t *s = json_stringn(value, vl); /* NULL unless valid UTF-8 */
        if (s)
            json_object_set_new(call->answer_headers, name, s);
    }
    return len;
}

/* The body to send: a route task's stored body as it came, or the payload. */
static int request_body(ackd_call_t *call, json_t *req, const char **ct)
{
    json_t *body = req ? json_object_get(req, "body") : NULL;
    const char *enc = req ? json_string_value(json_object_get(req, "body_encoding")) : NULL;
    if (!req) {
        call->body = ackd_strdup(call->task.payload ? call->task.payload : "null");
        call->body_len = strlen(call->body);
        *ct = "application/json";
        return 0;
    }
    if (!body || json_is_null(body))
        return 0;
    if (json_is_string(body) && enc && strcmp(enc, "base64") == 0) {
        call->body = ackd_base64_decode(json_string_value(body), json_string_length(body),
                                        &call->body_len);
        return call->body ? 0 : ACKD_EINVAL;
    }
    if (json_is_string(body)) {
        call->body = ackd_strndup(json_string_value(body), json_string_length(body));
        call->body_len = json_string_length(body);
        return 0;
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    call->body = ackd_strdup(text);
    call->body_len = strlen(text);
    free(text);
    return 0;
}

int ackd_call_prepare(ackd_call_t *call, const char **why)
{
    const ackd_task_t *t = &call->task;
    const ackd_queue_conf_t *q = call->conf;
    json_t *req = t->request ? json_loads(t->request, 0, NULL) : NULL;
    if (t->request && !req) {
        *why = "the stored request cannot be read";
        return ACKD_EINVAL;
    }
    const char *method = req ? json_string_value(json_object_get(req, "method")) : "POST";
    const char *path = req ? json_string_value(json_object_get(req, "path")) : "/";
    const char *query = req ? json_string_value(json_object_get(req, "query")) : "";
    json_t *headers = req ? json_object_get(req, "headers") : NULL;
    const char *ct = headers ? json_string_value(json_object_get(headers, "content-type")) : NULL;
    if (q->upstream_path)
        path = q->upstream_path;
    ackd_buf_init(&call->answer, q->max_result_size ? q->max_result_size : 1);
    call->answer_headers = json_object();
    int rc = request_body(call, req, &ct);
    if (rc) {
        json_decref(req);
        *why = "the stored request body cannot be decoded";
        return rc;
    }
    char *url;
    if (asprintf(&url, "%s%s%s%s", q->upstream, path ? path : "/", query && *query ? "?" : "",
                 query ? query : "") < 0) {
        json_decref(req);
        *why = "out of memory";
        return ACKD_EINVAL;
    }
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", t->attempts);
    rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(headers, k, v)
    {
        if (json_is_string(v) && strcmp(k, "content-type") != 0 && in_list(q->forward_headers, k))
            rc |= add_header(call, k, json_string_value(v));
    }
    if (ct)
        rc |= add_header(call, "Content-Type", ct);
    rc |= add_header(call, "Task-Id", t->id);
    rc |= add_header(call, "Task-Attempt", attempt);
    rc |= add_header(call, "Idempotency-Key", t->idem_key ? t->idem_key : t->id);
    if (t->correlation_id)
        rc |= add_header(call, "X-Request-ID", t->correlation_id);
    if (t->traceparent)
        rc |= add_header(call, "traceparent", t->traceparent);
    if (call->progress_token[0]) {
        rc |= add_header(call, "Task-Progress-URL", call->progress_url);
        rc |= add_header(call, "Task-Progress-Token", call->progress_token);
    }
    call->headers = curl_slist_append(call->headers, "Expect:"); /* no 100-continue round trip */
    if (rc) {
        free(url);
        json_decref(req);
        *why = "a forwarded header value holds CR or LF";
        return ACKD_EINVAL;
    }

    CURL *e = call->easy ? call->easy : curl_easy_init();
    call->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)q->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)q->attempt_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_answer_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_answer_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (call->body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
        }
        if (strcmp(method, "GET") != 0 || call->body)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    free(url);
    json_decref(req);
    return 0;
}

static char *error_json(const char *message, int status)
{
    json_t *j = json_pack("{s:s, s:o}", "message", message,
                          "status", status ? json_integer(status) : json_null());
    char *text = json_dumps(j, JSON_COMPACT);
    char *copy = ackd_strdup(text);
    free(text);
    json_decref(j);
    return copy;
}

/* {status, content_type, headers, body}: what a route client gets back.
 * Written with the JSON writer (jansson parsing the body and printing the
 * whole answer was a tenth of the dispatcher's work). */
static char *answer_json(ackd_call_t *call, int status)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_int(&w, "status", status);
    ackd_jw_str(&w, "content_type", call->content_type);
    ackd_jw_open(&w, "headers", '{');
    const char *k;
    json_t *v;
    json_object_foreach(call->answer_headers, k, v)
    {
        ackd_jw_strn(&w, k, json_string_value(v), json_string_length(v));
    }
    ackd_jw_close(&w);
    ackd_jbody_write(&w, call->content_type, call->answer.data, call->answer.len);
    ackd_jw_close(&w);
    return ackd_buf_detach(&b, NULL);
}

void ackd_call_outcome(ackd_call_t *call, CURLcode rc, ackd_outcome_t *out)
{
    memset(out, 0, sizeof *out);
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    out->http_status = (int)status;
    out->kind = ACKD_TQ_FAIL;
    if (call->too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "the upstream's answer is larger than max_result_size (%llu bytes)",
                 (unsigned long long)call->conf->max_result_size);
        out->error = error_json(msg, (int)status);
        return; /* final: the same call would give the same answer */
    }
    if (rc != CURLE_OK) {
        out->retry = true;
        out->error = error_json(curl_easy_strerror(rc), 0);
        return;
    }
    out->result = answer_json(call, (int)status);
    if (status >= 200 && status < 400) {
        out->kind = ACKD_TQ_COMPLETE;
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "the upstream answered %ld", status);
    out->error = error_json(msg, (int)status);
    out->retry = status == 408 || status == 425 || status == 429 || status >= 500;
    out->retry_after_ms = call->retry_after_ms;
}

void ackd_call_free(ackd_call_t *call)
{
    if (!call)
        return;
    if (call->easy)
        curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    ackd_free(call->body);
    ackd_buf_free(&call->answer);
    ackd_free(call->content_type);
    json_decref(call->answer_headers);
    ackd_task_clear(&call->task);
    ackd_free(call);
}
