/* response.c - serializing answers: status line, headers, bodies, problems.
 *
 * Every answer carries Date, Server, Content-Length (or chunked framing),
 * X-Request-ID and Connection: close when the connection ends after it. All
 * error answers are application/problem+json (RFC 9457) whose `type` is a
 * relative URI under /problems/. Loop thread only. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "http/internal.h"

const char *ackd_http_reason(int status)
{
    /* the IANA HTTP status code registry (RFC 9110 and its extensions) */
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    }
    /* an unregistered code: its class (RFC 9110 §15) */
    return status < 200   ? "Informational"
           : status < 300 ? "Success"
           : status < 400 ? "Redirection"
           : status < 500 ? "Client Error"
                          : "Server Error";
}

/* The problem type slug for statuses the HTTP layer answers by itself. */
static const char *problem_type(int status)
{
    switch (status) {
    case 400: return "bad-request";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 408: return "request-timeout";
    case 413: return "content-too-large";
    case 414: return "uri-too-long";
    case 417: return "expectation-failed";
    case 431: return "header-fields-too-large";
    case 501: return "not-implemented";
    case 503: return "service-unavailable";
    case 505: return "http-version-not-supported";
    }
    return status >= 500 ? "internal-error" : "bad-request";
}

void ackd_http_date_refresh(ackd_http_server_t *srv)
{
    time_t now = time(NULL);
    if ((uint64_t)now == srv->date_sec)
        return;
    srv->date_sec = (uint64_t)now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool body_allowed(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* "Name: value\r\n" by appends: answer heads are on every request's path,
 * and printf's machinery showed in profiles. */
static void field(ackd_buf_t *out, const char *name, size_t nlen, const char *value)
{
    ackd_buf_append(out, name, nlen);
    ackd_buf_appendz(out, value);
    ackd_buf_append(out, "\r\n", 2);
}

static void field_size(ackd_buf_t *out, const char *name, size_t nlen, size_t v)
{
    char digits[24], *p = digits + sizeof digits;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ackd_buf_append(out, name, nlen);
    ackd_buf_append(out, p, (size_t)(digits + sizeof digits - p));
    ackd_buf_append(out, "\r\n", 2);
}

#define LIT(s) s, sizeof s - 1

void ackd_http_write_head(ackd_http_req_t *req, int status, const char *content_type,
                          size_t content_length, bool chunked, ackd_buf_t *out)
{
    ackd_http_conn_t *c = req->conn;
    ackd_http_date_refresh(c->srv);
    if (c->srv->shutting_down || c->nrequests + 1 >= c->srv->limits.max_requests_per_connection)
        req->keepalive = false;
    char line[16] = "HTTP/1.1 000 ";
    line[7] = req->http_minor ? '1' : '0';
    line[9] = (char)('0' + status / 100 % 10);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    ackd_buf_append(out, line, 13);
    ackd_buf_appendz(out, ackd_http_reason(status));
    ackd_buf_append(out, LIT("\r\n"));
    field(out, LIT("Date: "), c->srv->date);
    ackd_buf_append(out, LIT("Server: ackd\r\n"));
    if (content_type)
        field(out, LIT("Content-Type: "), content_type);
    if (chunked)
        ackd_buf_append(out, LIT("Transfer-Encoding: chunked\r\n"));
    else if (body_allowed(status) && !req->streaming) /* an unframed stream ends with the close */
        field_size(out, LIT("Content-Length: "), content_length);
    if (req->id)
        field(out, LIT("X-Request-ID: "), req->id);
    for (int pass = 0; pass < 2; pass++) {
        for (const resp_header_t *h = pass ? req->extra_headers : req->resp_headers; h;
             h = h->next) {
            ackd_buf_appendz(out, h->name);
            field(out, LIT(": "), h->value);
        }
    }
    if (!req->keepalive)
        ackd_buf_append(out, LIT("Connection: close\r\n"));
    else if (req->http_minor == 0)
        ackd_buf_append(out, LIT("Connection: keep-alive\r\n"));
    ackd_buf_append(out, LIT("\r\n"));
}

int ackd_http_resp_header(ackd_http_req_t *req, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") || !*name)
        return ACKD_EINVAL;
    resp_header_t *h = ackd_arena_alloc(&req->arena, sizeof *h);
    h->name = ackd_arena_strdup(&req->arena, name);
    h->value = ackd_arena_strdup(&req->arena, value);
    h->next = NULL;
    if (req->resp_headers_tail)
        req->resp_headers_tail->next = h;
    else
        req->resp_headers = h;
    req->resp_headers_tail = h;
    return 0;
}

void ackd_http_respond(ackd_http_req_t *req, int status, const char *content_type,
                       const void *body, size_t len)
{
    ackd_http_conn_t *c = req->conn;
    if (!c || req->answered)
        return;
    if (!body_allowed(status)) {
        len = 0;
        content_type = NULL;
    }
    req->answered = true;
    req->status = status;
    ackd_buf_t out;
    ackd_buf_init(&out, 0);
    ackd_http_write_head(req, status, content_type, len, false, &out);
    if (!req->head && len)
        ackd_buf_append(&out, body, len);
    if (!req->keepalive)
        c->close_after_write = true;
    ackd_http_conn_write(c, &out);
    ackd_http_conn_request_done(c);
}

void ackd_http_respond_json(ackd_http_req_t *req, int status, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    ackd_http_respond(req, status, "application/json", text, text ? strlen(text) : 0);
    free(text);
}

static json_t *problem_json(int status, const char *type, const char *title, const char *detail,
                            const json_t *extra)
{
    char typebuf[128];
    snprintf(typebuf, sizeof typebuf, "/problems/%s", type);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", typebuf, "title",
                          title ? title : ackd_http_reason(status), "status", status, "detail",
                          detail ? detail : "");
    if (extra)
        json_object_update(p, (json_t *)extra);
    return p;
}

void ackd_http_respond_problem(ackd_http_req_t *req, int status, const char *type,
                               const char *title, const json_t *extra, const char *detail_fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof detail, detail_fmt, ap);
    va_end(ap);
    json_t *p = problem_json(status, type ? type : problem_type(status), title, detail, extra);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    ackd_http_respond(req, status, "application/problem+json", text, strlen(text));
    free(text);
}

void ackd_http_write_error(ackd_http_conn_t *c, int status, const char *detail, ackd_buf_t *out)
{
    ackd_http_date_refresh(c->srv);
    json_t *p = problem_json(status, problem_type(status), NULL, detail, NULL);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    size_t len = strlen(text);
    ackd_buf_printf(out,
                    "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: ackd\r\n"
                    "Content-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n%s",
                    status, ackd_http_reason(status), c->srv->date, len, text);
    free(text);
    ACKD_LOG(ACKD_LOG_INFO, "request refused", LOG_INT("status", status), LOG_STR("detail", detail));
}

void ackd_http_access_log(ackd_http_req_t *req)
{
    if (!req->conn || !req->conn->srv->limits.access_log)
        return;
    ACKD_LOG(ACKD_LOG_INFO, "request", LOG_STR("request_id", req->id),
             LOG_STR("method", req->method), LOG_STR("path", req->path),
             LOG_INT("status", req->status),
             LOG_DBL("duration_ms", (double)(ackd_mono_us() - req->start_us) / 1000.0));
}
