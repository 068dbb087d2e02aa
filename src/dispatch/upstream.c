/* upstream.c - one call to an upstream (see upstream.h).
 *
 * The request: the original method, path (or the route's upstream_path with
 * its {params} put in, or the queue's upstream_path),
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
#include "base/jscan.h"
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
    /* "name: value" in a buffer of the stack when it fits (curl copies it) */
    size_t nl = strlen(name), vl = strlen(value);
    char small[512];
    char *line = nl + vl + 3 <= sizeof small ? small : ackd_malloc(nl + vl + 3);
    memcpy(line, name, nl);
    memcpy(line + nl, ": ", 2);
    memcpy(line + nl + 2, value, vl + 1);
    struct curl_slist *grown = curl_slist_append(call->headers, line);
    if (line != small)
        ackd_free(line);
    if (!grown)
        return ACKD_EINVAL;
    call->headers = grown;
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
        json_t *had = s ? json_object_get(call->answer_headers, name) : NULL;
        if (s && !had) {
            json_object_set_new(call->answer_headers, name, s);
        } else if (s && strcmp(name, "set-cookie") == 0) {
            /* cookies cannot be joined (RFC 6265 §3): a list, one field each */
            if (json_is_string(had)) {
                json_t *list = json_pack("[O]", had);
                json_object_set_new(call->answer_headers, name, list);
                had = list;
            }
            json_array_append_new(had, s);
        } else if (s) {
            /* a field sent twice is one list (RFC 9110 §5.3) */
            char *joined = NULL;
            if (asprintf(&joined, "%s, %s", json_string_value(had), value) > 0)
                json_object_set_new(call->answer_headers, name, json_string(joined));
            free(joined);
            json_decref(s);
        }
    }
    return len;
}

/* The parts of a route task's stored request that a call needs
 * ({method, path, query, headers, body[, body_encoding]}, written by
 * api/routes.c). Strings point into `scratch` or into `tree`. */
typedef struct {
    const char *method, *path, *query;
    const char *upstream_path; /* the route's, its params put in (api/routes.c); NULL: none */
    const char **names, **values; /* the headers, nheaders of each */
    int nheaders;
    const char *fast_names[ACKD_JSCAN_MAX_MEMBERS], *fast_values[ACKD_JSCAN_MAX_MEMBERS];
    const char **heap;         /* owned: names and values when jansson read them */
    char *scratch;             /* owned: unescaped strings, each NUL-terminated */
    size_t used;
    json_t *tree;              /* owned: when jansson read it */
} stored_req_t;

static void stored_req_free(stored_req_t *r)
{
    ackd_free(r->heap);
    ackd_free(r->scratch);
    json_decref(r->tree);
}

/* A vouched string member's characters, NUL-terminated, in scratch. */
static const char *fast_string(stored_req_t *r, const ackd_jscan_member_t *m)
{
    if (m->value[0] != '"')
        return NULL;
    char *out = r->scratch + r->used;
    size_t n = ackd_jscan_string(m->value, m->value_len, out);
    out[n] = '\0';
    r->used += n + 1;
    return out;
}

/* The body, byte for byte as the client sent it (base/jbody.h). */
static int read_body(ackd_call_t *call)
{
    const char *doc = call->task.request;
    return ackd_jbody_read(doc, strlen(doc), &call->body, &call->body_len) ? 0 : ACKD_EINVAL;
}

/* Reads the stored request without a tree when jscan vouches for it and
 * its headers (jansson had been a seventh of the dispatcher's work). False:
 * unsure, use read_parsed. */
static bool read_fast(ackd_call_t *call, stored_req_t *r, int *rc)
{
    const char *doc = call->task.request;
    size_t len = strlen(doc);
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS], h[ACKD_JSCAN_MAX_MEMBERS];
    int n, nh = 0;
    if (!ackd_jscan_object(doc, len, m, &n))
        return false;
    const ackd_jscan_member_t *headers = NULL;
    r->scratch = ackd_malloc(len + 1);
    for (int i = 0; i < n; i++) {
        const ackd_jscan_member_t *mi = &m[i];
        const char **dst = NULL;
        if (mi->key_len == 6 && memcmp(mi->key, "method", 6) == 0)
            dst = &r->method;
        else if (mi->key_len == 4 && memcmp(mi->key, "path", 4) == 0)
            dst = &r->path;
        else if (mi->key_len == 5 && memcmp(mi->key, "query", 5) == 0)
            dst = &r->query;
        else if (mi->key_len == 13 && memcmp(mi->key, "upstream_path", 13) == 0)
            dst = &r->upstream_path;
        else if (mi->key_len == 7 && memcmp(mi->key, "headers", 7) == 0)
            headers = mi;
        if (dst && !(*dst = fast_string(r, mi)))
            goto unsure;
    }
    if (headers && (headers->value[0] != '{' ||
                    !ackd_jscan_object(headers->value, headers->value_len, h, &nh)))
        goto unsure;
    r->names = r->fast_names;
    r->values = r->fast_values;
    for (int i = 0; i < nh; i++) {
        char *name = r->scratch + r->used;
        memcpy(name, h[i].key, h[i].key_len);
        name[h[i].key_len] = '\0';
        r->used += h[i].key_len + 1;
        const char *value = fast_string(r, &h[i]);
        if (!value)
            goto unsure;
        r->names[r->nheaders] = name;
        r->values[r->nheaders++] = value;
    }
    *rc = read_body(call);
    return true;
unsure:
    ackd_free(r->scratch);
    memset(r, 0, sizeof *r);
    return false;
}

/* The same with jansson, for anything jscan is unsure of. */
static int read_parsed(ackd_call_t *call, stored_req_t *r)
{
    json_t *req = json_loads(call->task.request, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return ACKD_EINVAL;
    }
    r->tree = req;
    r->method = json_string_value(json_object_get(req, "method"));
    r->path = json_string_value(json_object_get(req, "path"));
    r->query = json_string_value(json_object_get(req, "query"));
    r->upstream_path = json_string_value(json_object_get(req, "upstream_path"));
    json_t *headers = json_object_get(req, "headers");
    size_t nh = json_object_size(headers);
    r->heap = ackd_calloc(2 * nh + 1, sizeof *r->heap);
    r->names = r->heap;
    r->values = r->heap + nh;
    const char *k;
    json_t *v;
    json_object_foreach(headers, k, v)
    {
        if (json_is_string(v)) {
            r->names[r->nheaders] = k;
            r->values[r->nheaders++] = json_string_value(v);
        }
    }
    return read_body(call);
}

/* What the route recorded about the hop (api/routes.c): always sent. */
static bool is_forwarded_field(const char *name)
{
    return strcmp(name, "x-forwarded-for") == 0 || strcmp(name, "x-forwarded-host") == 0 ||
           strcmp(name, "x-forwarded-proto") == 0;
}

int ackd_call_prepare(ackd_call_t *call, const char **why)
{
    const ackd_task_t *t = &call->task;
    const ackd_queue_conf_t *q = call->conf;
    stored_req_t req;
    memset(&req, 0, sizeof req);
    const char *ct = NULL;
    int rc = 0;
    if (!t->request) {
        /* a queue task: its payload as a JSON POST */
        req.method = "POST";
        req.path = "/";
        call->body = ackd_strdup(t->payload ? t->payload : "null");
        call->body_len = strlen(call->body);
        ct = "application/json";
    } else if (!read_fast(call, &req, &rc)) {
        rc = read_parsed(call, &req);
        if (rc && !req.tree) {
            *why = "the stored request cannot be read";
            return rc;
        }
    }
    if (rc) {
        stored_req_free(&req);
        *why = "the stored request body cannot be decoded";
        return rc;
    }
    for (int i = 0; i < req.nheaders; i++)
        if (strcmp(req.names[i], "content-type") == 0)
            ct = req.values[i];
    const char *method = req.method ? req.method : "POST";
    const char *path = req.upstream_path ? req.upstream_path
                       : q->upstream_path ? q->upstream_path
                                          : req.path;
    const char *query = req.query;
    ackd_buf_init(&call->answer, q->max_result_size ? q->max_result_size : 1);
    call->answer_headers = json_object();
    char *url;
    if (asprintf(&url, "%s%s%s%s", q->upstream, path ? path : "/", query && *query ? "?" : "",
                 query ? query : "") < 0) {
        stored_req_free(&req);
        *why = "out of memory";
        return ACKD_EINVAL;
    }
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%d", t->attempts);
    for (int i = 0; i < req.nheaders; i++) {
        const char *name = req.names[i];
        if (strcmp(name, "content-type") != 0 &&
            (in_list(q->forward_headers, name) || is_forwarded_field(name)))
            rc |= add_header(call, name, req.values[i]);
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
        stored_req_free(&req);
        *why = "a forwarded header value holds CR or LF";
        return ACKD_EINVAL;
    }

    CURL *e = call->easy ? call->easy : curl_easy_init();
    call->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* the client's path, not curl's cleaning of it */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    call->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
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
    stored_req_free(&req);
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
        if (json_is_array(v)) { /* Set-Cookie, several times */
            ackd_jw_open(&w, k, '[');
            size_t i;
            json_t *one;
            json_array_foreach(v, i, one)
            {
                ackd_jw_strn(&w, NULL, json_string_value(one), json_string_length(one));
            }
            ackd_jw_close(&w);
        } else {
            ackd_jw_strn(&w, k, json_string_value(v), json_string_length(v));
        }
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
        char msg[CURL_ERROR_SIZE + 96];
        out->error = error_json(ackd_http_client_error(rc, call->errbuf, "the upstream", msg,
                                                       sizeof msg),
                                0);
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
