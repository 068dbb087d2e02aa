/* http.h - the HTTP/1.1 server: what a handler sees and may do.
 *
 * One server runs on one libuv loop; that loop's thread owns every
 * connection, request and timer of the server. Handlers are called on the
 * loop thread and must not block. A handler answers either at once
 * (ackd_http_respond*) or later: ackd_http_defer() parks the request and
 * returns a handle through which any thread may answer or stream, woken on
 * the loop with uv_async_send (see "Deferred answers" below).
 *
 * Requests: one at a time per connection; pipelined requests wait, already
 * read, until the previous answer is queued, so answers leave in order.
 * Everything a request holds (headers, body, params, strings from
 * ackd_http_req_alloc) lives in its arena and is freed when its answer has
 * been queued or its connection is gone. */
#ifndef ACKD_HTTP_HTTP_H
#define ACKD_HTTP_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"

typedef struct ackd_http_server ackd_http_server_t;
typedef struct ackd_http_req ackd_http_req_t;
typedef struct ackd_http_defer ackd_http_defer_t;
typedef struct ackd_http_response ackd_http_response_t;
typedef struct ackd_router ackd_router_t;

/* Limits and timeouts; every byte count is a cap on what one client can make
 * the server hold. Defaults are in ackd_http_limits_default. */
typedef struct {
    size_t max_request_line;      /* bytes of method + target + version; 414 beyond */
    size_t max_header_size;       /* bytes of one field line; 431 beyond */
    size_t max_headers;           /* field lines per request; 431 beyond */
    size_t max_headers_total;     /* bytes of all field lines; 431 beyond */
    size_t max_body;              /* bytes of a request body; 413 beyond */
    uint64_t head_timeout_ms;     /* first byte to end of head; 408 beyond */
    uint64_t body_timeout_ms;     /* idle gap while reading a body; 408 beyond */
    uint64_t keepalive_timeout_ms;/* idle between requests; closed beyond */
    size_t max_connections;       /* 503 and close beyond */
    uint32_t max_requests_per_connection;
    uint64_t shutdown_grace_ms;   /* after ackd_http_server_shutdown */
    int access_log;               /* one info line per answered request */
    /* Field names (lower case, NULL-terminated; borrowed) that a request may
     * carry once: the same field again with another value is a 400, so no
     * two readers can take different values. Host and Content-Length are
     * always checked. NULL: none. */
    const char *const *single_fields;
} ackd_http_limits_t;

extern const ackd_http_limits_t ackd_http_limits_default;

/* --- the server (loop thread only, except where said) --- */

/* Creates a server on `loop` answering with `router` (borrowed; must outlive
 * the server). Does not listen yet. */
ackd_http_server_t *ackd_http_server_new(uv_loop_t *loop, const ackd_http_limits_t *limits,
                                         const ackd_router_t *router);
/* Binds and listens on host:port (IPv4 or IPv6 literal or name). 0 or a
 * negative libuv error (uv_strerror names it). */
int ackd_http_server_listen(ackd_http_server_t *srv, const char *host, int port);
/* The port actually bound (useful after listening on port 0). */
int ackd_http_server_port(const ackd_http_server_t *srv);
/* Stops accepting, closes idle connections, lets in-flight requests finish
 * for the grace period, then closes the rest. `done` runs on the loop thread
 * when the last handle of the server is closed; the loop then has nothing of
 * the server left and uv_run returns if nothing else holds it. */
void ackd_http_server_shutdown(ackd_http_server_t *srv, void (*done)(void *data), void *data);
/* Frees a server whose shutdown has completed. */
void ackd_http_server_free(ackd_http_server_t *srv);
/* Connections currently open (tests, metrics). */
size_t ackd_http_server_connections(const ackd_http_server_t *srv);

/* --- reading a request (loop thread, inside a handler or before deferring) --- */

const char *ackd_http_req_method(const ackd_http_req_t *req);
/* The target's path, as sent (not percent-decoded). */
const char *ackd_http_req_path(const ackd_http_req_t *req);
/* The query string without '?', "" when none. */
const char *ackd_http_req_query(const ackd_http_req_t *req);
/* The client's IP address as text ("127.0.0.1", "::1"); "" when the
 * connection is gone or the address cannot be read. Read once per
 * connection. */
const char *ackd_http_req_peer(ackd_http_req_t *req);
/* First value of a header (case-insensitive name), NULL when absent. */
const char *ackd_http_req_header(const ackd_http_req_t *req, const char *name);
/* Iterates headers: returns 0 and sets name/value for index i, -1 past the end. */
int ackd_http_req_header_at(const ackd_http_req_t *req, size_t i, const char **name,
                            const char **value);
/* The body (NUL-terminated for convenience; len excludes the NUL). */
const char *ackd_http_req_body(const ackd_http_req_t *req, size_t *len);
/* A {param} of the matched route pattern, percent-decoded; NULL when absent. */
const char *ackd_http_req_param(const ackd_http_req_t *req, const char *name);
/* The same as the client sent it, still percent-encoded. */
const char *ackd_http_req_param_raw(const ackd_http_req_t *req, const char *name);
/* A query parameter, percent-decoded ('+' as space); NULL when absent. */
const char *ackd_http_req_query_param(const ackd_http_req_t *req, const char *name);
/* The request id: X-Request-ID as sent (when sane) or a generated req_... id. */
const char *ackd_http_req_id(const ackd_http_req_t *req);
/* Memory that lives as long as the request. */
void *ackd_http_req_alloc(ackd_http_req_t *req, size_t n);
char *ackd_http_req_strdup(ackd_http_req_t *req, const char *s);
/* Opaque per-request slot for the auth layer (tenant, role), set by it. */
void ackd_http_req_set_auth(ackd_http_req_t *req, const void *auth);
const void *ackd_http_req_auth(const ackd_http_req_t *req);
/* The loop the request lives on. */
uv_loop_t *ackd_http_req_loop(const ackd_http_req_t *req);

/* --- answering at once (loop thread, inside the handler) --- */

/* Adds a response header; name and value are copied. CR or LF in either is
 * refused (ACKD_EINVAL). */
int ackd_http_resp_header(ackd_http_req_t *req, const char *name, const char *value);
/* Answers with a body (copied). content_type may be NULL for no body. */
void ackd_http_respond(ackd_http_req_t *req, int status, const char *content_type,
                       const void *body, size_t len);
/* Answers with JSON (application/json); does not steal the reference. */
void ackd_http_respond_json(ackd_http_req_t *req, int status, const json_t *body);
/* Answers application/problem+json (RFC 9457): type is the slug under
 * /problems/ ("not-found"), detail is printf-style. `extra` (may be NULL) adds
 * members (task_id, status_url, ...); not stolen. */
void ackd_http_respond_problem(ackd_http_req_t *req, int status, const char *type,
                               const char *title, const json_t *extra, const char *detail_fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* --- deferred answers (any thread once deferred) ---
 *
 * ackd_http_defer parks the request (loop thread, inside its handler) and
 * returns a handle. The completer (whoever got the handle) finishes it exactly
 * once with ackd_http_defer_respond, ackd_http_defer_stream_end or
 * ackd_http_defer_drop; until then the handle stays valid even if the client
 * leaves. If the client disconnects first, on_cancel(d, data) runs on the loop
 * thread (once): the completer should forget the handle and drop it (or, if it
 * is already answering, its answer is discarded). on_cancel can race with the
 * completer's final call on another thread, so it must find `d` in the
 * completer's own structure under the completer's own lock (whoever removes
 * it from there finishes it) and not trust memory that the completer frees.
 * Responses built for a handle are copied into it; the completer keeps
 * nothing. */
typedef void (*ackd_http_cancel_cb)(ackd_http_defer_t *d, void *data);

ackd_http_defer_t *ackd_http_defer(ackd_http_req_t *req, ackd_http_cancel_cb on_cancel, void *data);
/* 1 once the client is gone (any thread; advisory). */
int ackd_http_defer_canceled(const ackd_http_defer_t *d);

/* A response under construction, for any thread. */
ackd_http_response_t *ackd_http_response_new(int status, const char *content_type);
int ackd_http_response_header(ackd_http_response_t *r, const char *name, const char *value);
void ackd_http_response_body(ackd_http_response_t *r, const void *body, size_t len);
/* Takes the buffer's storage as the body (no copy); b is left empty. */
void ackd_http_response_body_take(ackd_http_response_t *r, ackd_buf_t *b);
/* Takes ownership of r; finishes d. */
void ackd_http_defer_respond(ackd_http_defer_t *d, ackd_http_response_t *r);
/* Same, then runs release(arg) on the loop thread once the answer has been
 * written or discarded: after that, on_cancel can no longer run, so memory
 * that on_cancel reads may be freed by release. */
void ackd_http_defer_respond_free(ackd_http_defer_t *d, ackd_http_response_t *r,
                                  void (*release)(void *arg), void *arg);
/* Same, but the response is built on the loop thread, when the answer is
 * applied: build(arg) (skipped when the client is gone), then release(arg).
 * Lets a completer hand over its state instead of formatting on its own
 * thread. A NULL response from build becomes a 500 problem. */
typedef ackd_http_response_t *(*ackd_http_build_cb)(void *arg);
void ackd_http_defer_respond_later(ackd_http_defer_t *d, ackd_http_build_cb build,
                                   void (*release)(void *arg), void *arg);
/* Starts a streamed (chunked) answer with r's status and headers; takes r. */
void ackd_http_defer_stream_start(ackd_http_defer_t *d, ackd_http_response_t *r);
/* Sends one chunk (copied); ignored once the client is gone. */
void ackd_http_defer_stream_write(ackd_http_defer_t *d, const void *data, size_t len);
/* Ends the stream; finishes d. */
void ackd_http_defer_stream_end(ackd_http_defer_t *d);
/* Same, then release(arg) on the loop thread (see ackd_http_defer_respond_free). */
void ackd_http_defer_stream_end_free(ackd_http_defer_t *d, void (*release)(void *arg), void *arg);
/* Finishes d without answering (after on_cancel, or to close the connection). */
void ackd_http_defer_drop(ackd_http_defer_t *d);

/* Reason phrase of a status code ("Not Found"). */
const char *ackd_http_reason(int status);

#endif
