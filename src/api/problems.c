/* problems.c - the pages behind problem types (SPEC §6a: "`type` is a
 * relative URI under /problems/ that ackd serves as a short human-readable
 * page"): GET /problems lists them, GET /problems/{type} explains one.
 * Public (no key needed): they hold no data, only what an answer means and
 * what to do about it. Every type any layer answers with has an entry here;
 * tests/e2e/test_problems.py reads the sources to hold that true. */
#include <string.h>

#include "api/api.h"
#include "base/buf.h"
#include "http/http.h"

typedef struct {
    const char *type;
    int status;
    const char *title;
    const char *text;          /* HTML: what happened, what to do */
} problem_page_t;

static const problem_page_t pages[] = {
    /* the HTTP layer */
    {"bad-request", 400, "Bad Request",
     "The request is not valid HTTP/1.1: a malformed request line or header, a bad chunk, or "
     "both <code>Content-Length</code> and <code>Transfer-Encoding</code>. ackd answers and "
     "closes the connection. Fix the client; sending the same bytes again gets the same answer."},
    {"request-timeout", 408, "Request Timeout",
     "The client sent the request's head or body too slowly (<code>[server] head_timeout</code>, "
     "<code>body_timeout</code>). Nothing was done. Send the request again, all of it at once."},
    {"content-too-large", 413, "Content Too Large",
     "The body is larger than <code>[server] max_body</code>. Nothing was done. Send less, or "
     "raise the limit."},
    {"uri-too-long", 414, "URI Too Long",
     "The request line is longer than <code>[server] max_request_line</code>. Nothing was done."},
    {"expectation-failed", 417, "Expectation Failed",
     "The request carried an <code>Expect</code> header other than <code>100-continue</code>, "
     "the only expectation ackd meets. Nothing was done."},
    {"header-fields-too-large", 431, "Request Header Fields Too Large",
     "The request's headers are too many or too large (<code>[server] max_header_size</code>, "
     "<code>max_headers</code>). Nothing was done."},
    {"not-found", 404, "Not Found",
     "No resource has this path: neither the API nor a configured <code>[route]</code>. Check the "
     "path; the API is listed in the README and in each answer's links."},
    {"method-not-allowed", 405, "Method Not Allowed",
     "The path exists, but not with this method. The <code>Allow</code> header of the answer "
     "lists the methods it has."},
    {"internal-error", 500, "Internal Server Error",
     "ackd failed in a way it did not expect. Nothing that was acknowledged is lost. The log has "
     "a line with the same <code>X-Request-ID</code>; please report it."},
    {"not-implemented", 501, "Not Implemented",
     "The request uses a method ackd does not know, or a transfer coding other than "
     "<code>chunked</code>. Nothing was done."},
    {"service-unavailable", 503, "Service Unavailable",
     "ackd already has as many connections as <code>[server] max_connections</code> allows; "
     "the new one is answered this and closed. Nothing was done. Try again shortly."},
    {"http-version-not-supported", 505, "HTTP Version Not Supported",
     "ackd speaks HTTP/1.0 and HTTP/1.1. Nothing was done."},
    /* authentication */
    {"unauthorized", 401, "Unauthorized",
     "The request carries no valid API key. Send <code>Authorization: Bearer &lt;key&gt;</code> "
     "with a key from the server's <code>[keys]</code>. Nothing was done."},
    {"forbidden", 403, "Forbidden",
     "The key is valid, but its role may not make this call (a <code>client</code> key claiming "
     "tasks, a <code>worker</code> key claiming from a queue it was not given, an "
     "<code>admin</code>-only stream). Nothing was done."},
    {"invalid-progress-token", 403, "Invalid progress token",
     "A progress report for a push task carried a <code>Task-Progress-Token</code> that is not the "
     "one ackd sent with this attempt of this task: a token is good for one attempt only. Nothing "
     "was recorded."},
    /* requests */
    {"malformed-json", 400, "Malformed JSON",
     "The body is not valid JSON (or has a key twice). The problem's <code>line</code> and "
     "<code>column</code> say where. Nothing was done."},
    {"unsupported-media-type", 415, "Unsupported Media Type",
     "The API takes JSON bodies only: send <code>Content-Type: application/json</code>. Nothing "
     "was done."},
    {"invalid-request", 422, "Invalid request",
     "The body is JSON, but not an object where the call takes one. Nothing was done."},
    {"invalid-field", 422, "Invalid field",
     "One field of the request, named in the problem's <code>field</code>, is unknown, of the "
     "wrong type or out of range; the detail says what was expected. Nothing was done."},
    {"bad-idempotency-key", 400, "Bad Idempotency-Key",
     "The <code>Idempotency-Key</code> header is empty or longer than 255 characters. Nothing "
     "was done."},
    {"bad-callback-url", 400, "Bad Callback-URL",
     "The callback URL is not an absolute <code>http://</code> or <code>https://</code> URL. "
     "Nothing was done. (A host that resolves to a private, loopback or link-local address is "
     "refused when the webhook is sent, unless <code>[webhooks] allow_private</code> opens it; "
     "the task's deliveries record that.)"},
    {"idempotency-mismatch", 422, "Idempotency key reused with a different request",
     "This <code>Idempotency-Key</code> was first used, within its lifetime, for a request with "
     "another method, path or body. The problem's <code>task_id</code> is the task the key "
     "belongs to. Use a new key for a new request. Nothing was done."},
    /* tasks and queues */
    {"queue-not-found", 404, "Queue not found",
     "No <code>[queue]</code> of this name is configured. Nothing was done."},
    {"push-queue", 409, "Queue is pushed to its upstream",
     "The queue has an <code>upstream</code>: ackd itself sends its tasks there, and a queue has "
     "one executor, so workers cannot claim from it. Claim from a queue without "
     "<code>upstream</code>. Nothing was done."},
    {"task-not-found", 404, "Task not found",
     "No task with this id is visible to this key: it never existed, it belongs to another "
     "tenant, or its retention ran out and it was purged."},
    {"conflict", 409, "Conflict",
     "The task is not in a state that allows this call (cancelling a finished task, redriving "
     "one that did not fail), or the lease is no longer the task's: it expired or another claim "
     "took the task, or the attempt it ran already ended another way. Nothing was changed. A "
     "worker that gets this for its lease must drop the task. (The same <code>complete</code> or "
     "<code>fail</code> sent again, after a lost answer, is not this: it is answered 200 with "
     "<code>Idempotent-Replayed: true</code>.)"},
    {"result-not-ready", 409, "Result not ready",
     "The task has no result yet. Try again after the <code>Retry-After</code> seconds, or "
     "long-poll <code>GET /v1/tasks/{id}?wait=30</code>."},
    {"no-result", 409, "No result",
     "The task ended without a result (it failed or was canceled); its status document has the "
     "error."},
    {"task-failed", 502, "The task failed",
     "A route's task failed for good while the client waited: its upstream answered with an "
     "error that is not retried, or every attempt failed. The problem's <code>error</code> and "
     "the task's status URL say how."},
    {"sync-timeout", 504, "The answer did not come in time",
     "The route's wait ran out before the upstream answered. The task goes on: fetch its outcome "
     "from the problem's <code>status_url</code>; repeating the request with the same "
     "<code>Idempotency-Key</code> attaches to the same task."},
    /* the server */
    {"store-unavailable", 503, "Store unavailable",
     "The store could not commit the change (its disk is full, or it failed to write). Nothing "
     "was acknowledged and nothing was done. Try again after the <code>Retry-After</code> "
     "seconds; <code>/readyz</code> says when writes work again."},
    {"not-ready", 503, "Not ready",
     "The server is starting, shutting down, or cannot write to its store; the detail says "
     "which. Send traffic elsewhere until <code>/readyz</code> answers 200."},
};

#define NPAGES (sizeof pages / sizeof pages[0])

static const char head[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width\">"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:2em auto;"
    "padding:0 1em}code{background:#f3f3f3;padding:0 .2em}</style>";

static void respond_page(ackd_http_req_t *req, ackd_buf_t *b)
{
    ackd_buf_appendz(b, "</body></html>\n");
    ackd_http_resp_header(req, "Cache-Control", "max-age=3600");
    ackd_http_respond(req, 200, "text/html; charset=utf-8", b->data, b->len);
    ackd_buf_free(b);
}

static void on_problem(ackd_http_req_t *req, void *data)
{
    (void)data;
    const char *type = ackd_http_req_param(req, "type");
    for (size_t i = 0; i < NPAGES; i++) {
        const problem_page_t *p = &pages[i];
        if (strcmp(p->type, type) != 0)
            continue;
        ackd_buf_t b;
        ackd_buf_init(&b, 0);
        ackd_buf_printf(&b,
                        "%s<title>%s</title></head><body>"
                        "<h1>%s</h1><p><code>/problems/%s</code> &middot; HTTP %d</p>"
                        "<p>%s</p><p><a href=\"/problems\">Every problem type</a></p>",
                        head, p->title, p->title, p->type, p->status, p->text);
        respond_page(req, &b);
        return;
    }
    ackd_http_respond_problem(req, 404, "not-found", NULL, NULL, "no problem type \"%s\"", type);
}

static void on_problems(ackd_http_req_t *req, void *data)
{
    (void)data;
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    ackd_buf_printf(&b,
                    "%s<title>Problem types</title></head><body><h1>Problem types</h1>"
                    "<p>Every error ackd answers is an <code>application/problem+json</code> "
                    "document (RFC 9457) whose <code>type</code> is one of these.</p><ul>",
                    head);
    for (size_t i = 0; i < NPAGES; i++)
        ackd_buf_printf(&b, "<li><a href=\"/problems/%s\">%s</a> (%d)</li>", pages[i].type,
                        pages[i].title, pages[i].status);
    ackd_buf_appendz(&b, "</ul>");
    respond_page(req, &b);
}

const ackd_route_t ackd_api_problems_routes[] = {
    {.method = "GET", .pattern = "/problems", .handler = on_problems},
    {.method = "GET", .pattern = "/problems/{type}", .handler = on_problem},
    {0},
};
