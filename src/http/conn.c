/* conn.c - one client connection: reading, framing checks, limits, timeouts.
 *
 * Phases of a connection, each with its timeout list (internal.h):
 *   head    bytes of a request head are arriving         (TL_HEAD, 408 at the end)
 *   body    a body is arriving                            (TL_BODY, 408 at the end)
 *   busy    the request is with its handler (maybe parked) (no timeout)
 *   idle    keep-alive between requests                   (TL_IDLE, closed silently)
 *   linger  answered for the last time, FIN sent, draining (TL_LINGER)
 * While busy, bytes that arrive are kept unparsed in `pending` and parsed
 * when the answer has been queued, so pipelined answers leave in order; the
 * socket stays read so that a client leaving is noticed and its parked
 * request canceled.
 *
 * Strictness (RFC 9112): llhttp is built in strict mode and rejects bad
 * tokens, obs-fold, bare CR/LF, bad chunk sizes, CL with TE and repeated CL;
 * this file adds what a parser cannot see on its own (several Host fields,
 * Transfer-Encoding on HTTP/1.0, codings other than a final chunked, control
 * characters in values), the line syntax llhttp 8 lets through (scan_head:
 * bare LF ending the request line or the head, empty field names, runs of
 * spaces in the request line) and every size limit. */
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "http/internal.h"

#define READ_BUF_SIZE 65536
#define LINGER_MS 2000

static llhttp_settings_t settings;
static int settings_ready;

static ackd_http_conn_t *conn_of(llhttp_t *p)
{
    return (ackd_http_conn_t *)p->data;
}

static int fail_with(ackd_http_conn_t *c, int status, const char *detail)
{
    c->error_status = status;
    c->error_detail = detail;
    return HPE_USER;
}

/* --- timeout lists --- */

static uint64_t list_timeout(const ackd_http_server_t *srv, int list)
{
    switch (list) {
    case TL_HEAD: return srv->limits.head_timeout_ms;
    case TL_BODY: return srv->limits.body_timeout_ms;
    case TL_IDLE: return srv->limits.keepalive_timeout_ms;
    default: return LINGER_MS;
    }
}

static void tlist_remove(ackd_http_conn_t *c)
{
    if (c->tlist == TL_NONE)
        return;
    conn_list_t *l = &c->srv->tlists[c->tlist];
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        l->head = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        l->tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->tlist = TL_NONE;
}

void ackd_http_conn_tlist_set(ackd_http_conn_t *c, int list)
{
    tlist_remove(c);
    if (list == TL_NONE)
        return;
    ackd_http_server_t *srv = c->srv;
    conn_list_t *l = &srv->tlists[list];
    int was_empty = l->head == NULL;
    c->tlist = list;
    c->deadline_ms = uv_now(srv->loop) + list_timeout(srv, list);
    c->tprev = l->tail;
    c->tnext = NULL;
    if (l->tail)
        l->tail->tnext = c;
    else
        l->head = c;
    l->tail = c;
    if (was_empty)
        ackd_http_server_timer_arm(srv);
}

/* --- llhttp callbacks: the request head --- */

static int on_message_begin(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    c->req = ackd_http_req_new(c);
    c->url_len = 0;
    c->headers_total = 0;
    ackd_buf_reset(&c->field);
    ackd_buf_reset(&c->value);
    c->value_seen = false;
    if (c->tlist != TL_HEAD)
        ackd_http_conn_tlist_set(c, TL_HEAD);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    ackd_http_conn_t *c = conn_of(p);
    c->url_len += len;
    /* the limit is on the whole request line: method SP target SP HTTP/1.x */
    size_t fixed = strlen(llhttp_method_name((llhttp_method_t)p->method)) + 1 + strlen(" HTTP/1.1");
    if (c->url_len + fixed > c->srv->limits.max_request_line ||
        ackd_buf_append(&c->value, at, len) != 0)
        return fail_with(c, 414, "the request line is longer than the server accepts");
    return 0;
}

/* The length of a segment separator at s, or 0: '/', and for the dot check
 * also what a backend may decode or read as one (%2f, a backslash, %5c). */
static int separator(const char *s)
{
    if (*s == '/' || *s == '\\')
        return 1;
    if (s[0] == '%' && ((s[1] == '2' && (s[2] == 'f' || s[2] == 'F')) ||
                        (s[1] == '5' && (s[2] == 'c' || s[2] == 'C'))))
        return 3;
    return 0;
}

/* Whether a path has a "." or ".." segment, a dot written as %2e too. A
 * route /api/{name} would take /api/.. with name "..", and the upstream (or
 * curl before it) would resolve it to /: out of the route's reach. Clients
 * resolve these before sending (RFC 3986 §5.2.4); a request that did not is
 * refused, as nginx refuses one that climbs above the root. Segments end at
 * what a backend may take for a slash (%2f, a backslash) as well. */
static bool has_dot_segment(const char *path)
{
    const char *s = path;
    while (*s) {
        s += separator(s);
        int dots = 0, other = 0;
        while (*s && !separator(s)) {
            if (*s == '.') {
                dots++;
                s++;
            } else if (s[0] == '%' && s[1] == '2' && (s[2] == 'e' || s[2] == 'E')) {
                dots++;
                s += 3;
            } else {
                other++;
                s++;
            }
        }
        if (!other && (dots == 1 || dots == 2))
            return true;
    }
    return false;
}

static int on_url_complete(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    ackd_http_req_t *req = c->req;
    req->target = ackd_arena_strndup(&req->arena, c->value.data ? c->value.data : "", c->value.len);
    ackd_buf_reset(&c->value);
    /* the absolute form (RFC 9112 §3.2.2: a server MUST accept it): what
     * follows the authority is the path; nothing follows: "/" */
    char *t = req->target;
    if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
        t += t[4] == ':' ? 7 : 8;
        t += strcspn(t, "/?");
        if (*t == '/') {
            req->target = t;
        } else { /* "" or "?query" */
            size_t n = strlen(t);
            req->target = ackd_arena_alloc(&req->arena, n + 2);
            req->target[0] = '/';
            memcpy(req->target + 1, t, n + 1);
        }
    }
    bool asterisk = req->target[0] == '*' && !req->target[1] &&
                    (p->method == HTTP_OPTIONS || p->method == HTTP_PRI); /* PRI: HTTP/2, a 505 */
    if (req->target[0] != '/' && !asterisk)
        return fail_with(c, 400, "the request target must be a path, like /v1/tasks");
    char *q = strchr(req->target, '?');
    if (q) {
        req->path = ackd_arena_strndup(&req->arena, req->target, (size_t)(q - req->target));
        req->query = q + 1;
    } else {
        req->path = req->target;
        req->query = "";
    }
    if (has_dot_segment(req->path))
        return fail_with(c, 400, "the path has a \".\" or \"..\" segment (%2e is a dot too): "
                                 "send it resolved, as RFC 3986 §5.2.4 does");
    return 0;
}

static int header_bytes(ackd_http_conn_t *c, size_t len)
{
    const ackd_http_limits_t *lim = &c->srv->limits;
    c->headers_total += len;
    if (c->headers_total > lim->max_headers_total)
        return fail_with(c, 431, "the header fields are larger in all than the server accepts");
    if (c->field.len + c->value.len + len > lim->max_header_size)
        return fail_with(c, 431, "a header field is larger than the server accepts");
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    ackd_http_conn_t *c = conn_of(p);
    int rc = header_bytes(c, len);
    if (rc)
        return rc;
    ackd_buf_append(&c->field, at, len);
    return 0;
}

/* A value span that follows a line break rather than a colon is an obs-fold
 * continuation (RFC 9112 §5.2), which llhttp joins silently: refuse it. */
static bool is_fold(const ackd_http_conn_t *c, const char *at, size_t len)
{
    if (len == 0)
        return false; /* an empty value: llhttp reports it at the next line's start */
    const char *q = at;
    while (q > c->feed_base && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    char prev = q > c->feed_base ? q[-1] : c->last_nonws;
    return prev == '\n';
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    ackd_http_conn_t *c = conn_of(p);
    if (is_fold(c, at, len))
        return fail_with(c, 400, "obsolete line folding in a header field");
    int rc = header_bytes(c, len);
    if (rc)
        return rc;
    ackd_buf_append(&c->value, at, len);
    return 0;
}

/* Records what framing needs from Transfer-Encoding: "chunked" must be the
 * last coding; any other coding is one we cannot decode. */
static void note_transfer_encoding(ackd_http_req_t *req, const char *v)
{
    const char *p = v;
    req->te_chunked_last = false;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t' && *p != ';')
            p++;
        size_t n = (size_t)(p - start);
        while (*p && *p != ',')
            p++; /* skip parameters */
        if (n == 0)
            continue;
        if (n == 7 && strncasecmp(start, "chunked", 7) == 0) {
            if (req->te_chunked_last)
                req->te_other = true; /* chunked twice */
            req->te_chunked_last = true;
        } else {
            if (req->te_chunked_last)
                req->te_other = true;
            req->te_chunked_last = false;
            req->te_other = true;
        }
    }
}

static int on_header_value_complete(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    ackd_http_req_t *req = c->req;
    if (req->nheaders + 1 > c->srv->limits.max_headers)
        return fail_with(c, 431, "the request has more header fields than the server accepts");
    for (size_t i = 0; i < c->value.len; i++) {
        unsigned char ch = (unsigned char)c->value.data[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail_with(c, 400, "a header value holds a control character");
    }
    if (req->nheaders == req->capheaders) {
        size_t cap = req->capheaders ? req->capheaders * 2 : 8;
        header_t *h = ackd_arena_alloc(&req->arena, cap * sizeof *h);
        if (req->nheaders)
            memcpy(h, req->headers, req->nheaders * sizeof *h);
        req->headers = h;
        req->capheaders = cap;
    }
    header_t *h = &req->headers[req->nheaders++];
    h->name = ackd_arena_strndup(&req->arena, c->field.data ? c->field.data : "", c->field.len);
    /* trailing whitespace is not part of a field value (llhttp keeps it) */
    size_t vlen = c->value.len;
    while (vlen && (c->value.data[vlen - 1] == ' ' || c->value.data[vlen - 1] == '\t'))
        vlen--;
    h->value = ackd_arena_strndup(&req->arena, c->value.data ? c->value.data : "", vlen);
    if (strcasecmp(h->name, "host") == 0)
        req->n_host++;
    else if (strcasecmp(h->name, "content-length") == 0)
        req->n_content_length++;
    else if (strcasecmp(h->name, "transfer-encoding") == 0) {
        req->n_transfer_encoding++;
        note_transfer_encoding(req, h->value);
    } else if (strcasecmp(h->name, "expect") == 0) {
        if (strcasecmp(h->value, "100-continue") != 0)
            return fail_with(c, 417, "the only expectation the server meets is 100-continue");
        req->expect_continue = true;
    }
    ackd_buf_reset(&c->field);
    ackd_buf_reset(&c->value);
    return 0;
}

/* A field named in limits.single_fields, repeated with another value. */
static int check_single_fields(ackd_http_conn_t *c, ackd_http_req_t *req)
{
    const char *const *single = c->srv->limits.single_fields;
    if (!single)
        return 0;
    for (size_t i = 1; i < req->nheaders; i++) {
        const header_t *h = &req->headers[i];
        for (size_t j = 0; j < i; j++) {
            const header_t *e = &req->headers[j];
            if (strcasecmp(h->name, e->name) != 0 || strcmp(h->value, e->value) == 0)
                continue;
            for (const char *const *s = single; *s; s++)
                if (strcasecmp(*s, h->name) == 0) {
                    char msg[160];
                    snprintf(msg, sizeof msg,
                             "the request has two %.64s fields with different values", h->name);
                    return fail_with(c, 400, ackd_arena_strndup(&req->arena, msg, strlen(msg)));
                }
            break;
        }
    }
    return 0;
}

static int check_framing(ackd_http_conn_t *c, ackd_http_req_t *req)
{
    if (req->n_host > 1)
        return fail_with(c, 400, "the request has more than one Host field");
    if (req->http_minor == 1 && req->n_host == 0)
        return fail_with(c, 400, "an HTTP/1.1 request needs a Host field");
    if (req->n_content_length > 1)
        return fail_with(c, 400, "the request has more than one Content-Length field");
    if (req->n_transfer_encoding) {
        if (req->n_content_length)
            return fail_with(c, 400, "Content-Length and Transfer-Encoding together");
        if (req->http_minor == 0)
            return fail_with(c, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (!req->te_chunked_last)
            return fail_with(c, 400, "Transfer-Encoding must end with chunked");
        if (req->te_other)
            return fail_with(c, 501, "the only transfer coding the server accepts is chunked");
    }
    return check_single_fields(c, req);
}

static int on_headers_complete(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    ackd_http_req_t *req = c->req;
    /* the head is in the request's arena now; the line buffers go, rather
     * than wait with a parked request (~160 bytes for each of 10 000 long
     * polls or streams; a trailer or the next head allocates them again) */
    ackd_buf_free(&c->field);
    ackd_buf_free(&c->value);
    if (p->http_major != 1)
        return fail_with(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
    req->http_minor = p->http_minor;
    req->method = llhttp_method_name((llhttp_method_t)p->method);
    req->head = p->method == HTTP_HEAD;
    int rc = check_framing(c, req);
    if (rc)
        return rc;
    int has_body = req->n_transfer_encoding || (req->n_content_length && p->content_length > 0);
    if (req->n_content_length && p->content_length > c->srv->limits.max_body)
        return fail_with(c, 413, "the request body is larger than the server accepts");
    if (has_body) {
        if (req->expect_continue && req->http_minor == 1) {
            ackd_buf_t out;
            ackd_buf_init(&out, 0);
            ackd_buf_appendz(&out, "HTTP/1.1 100 Continue\r\n\r\n");
            ackd_http_conn_write(c, &out);
        }
        ackd_http_conn_tlist_set(c, TL_BODY);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    ackd_http_conn_t *c = conn_of(p);
    if (c->req->body.len + len > c->srv->limits.max_body ||
        ackd_buf_append(&c->req->body, at, len) != 0)
        return fail_with(c, 413, "the request body is larger than the server accepts");
    ackd_http_conn_tlist_set(c, TL_BODY); /* the idle gap starts again */
    return 0;
}

/* The last chunk: its trailer section follows, lines with the same syntax
 * as the head's fields; pause so the line scanner can check them first. */
static int on_chunk_header(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    if (p->content_length != 0)
        return 0;
    c->trailer_pause = true;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    ackd_http_conn_t *c = conn_of(p);
    c->head_scan = HS_START; /* the next bytes are the next request's head */
    c->req->keepalive = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED; /* one request at a time: dispatch before reading on */
}

static void settings_init(void)
{
    if (settings_ready)
        return;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_url_complete = on_url_complete;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    settings.on_chunk_header = on_chunk_header;
    settings_ready = 1;
}

/* --- the head's line syntax ---
 *
 * llhttp 8 lets through some head syntax RFC 9112 forbids: a bare LF ending
 * the request line or the head, an empty field name, runs of spaces in the
 * request line, obs-fold of an empty value. Before bytes of a head reach the
 * parser they go through this scanner, which knows only lines: every line
 * ends with CRLF, the request line has single spaces, a field line starts
 * with a name (not a colon, not whitespace). It stops at the empty line
 * ending the head and starts again when the message is complete. */

static const char *scan_head(ackd_http_conn_t *c, const char *data, size_t len)
{
    for (size_t i = 0; i < len && c->head_scan != HS_DONE; i++) {
        char ch = data[i];
        switch (c->head_scan) {
        case HS_START: /* empty lines before the request line are ignored */
            if (ch == '\r') {
                c->head_scan = HS_CR;
                c->head_after_cr = HS_START;
            } else if (ch == '\n') {
                return "bare LF in the request head";
            } else if (ch == ' ' || ch == '\t') {
                return "the request line is malformed";
            } else {
                c->head_scan = HS_REQLINE;
            }
            break;
        case HS_REQLINE:
        case HS_REQLINE_SP:
            if (ch == ' ') {
                if (c->head_scan == HS_REQLINE_SP)
                    return "the request line is malformed";
                c->head_scan = HS_REQLINE_SP;
            } else if (ch == '\r') {
                if (c->head_scan == HS_REQLINE_SP)
                    return "the request line is malformed";
                c->head_scan = HS_CR;
                c->head_after_cr = HS_LINE_START;
            } else if (ch == '\n') {
                return "bare LF in the request head";
            } else {
                c->head_scan = HS_REQLINE;
            }
            break;
        case HS_LINE_START:
            if (ch == '\r') {
                c->head_scan = HS_CR;
                c->head_after_cr = HS_DONE;
            } else if (ch == '\n') {
                return "bare LF in the request head";
            } else if (ch == ' ' || ch == '\t') {
                return "obsolete line folding in a header field";
            } else if (ch == ':') {
                return "a header field has an empty name";
            } else {
                c->head_scan = HS_FIELD;
            }
            break;
        case HS_FIELD:
            if (ch == '\r') {
                c->head_scan = HS_CR;
                c->head_after_cr = HS_LINE_START;
            } else if (ch == '\n') {
                return "bare LF in the request head";
            }
            break;
        case HS_CR:
            if (ch != '\n')
                return "bare CR in the request head";
            c->head_scan = c->head_after_cr;
            break;
        }
    }
    return NULL;
}

/* --- feeding bytes --- */

static void read_start(ackd_http_conn_t *c);
static void finish_writes(ackd_http_conn_t *c);

static void parse_error(ackd_http_conn_t *c, enum llhttp_errno err)
{
    int status = 400;
    const char *detail = llhttp_get_error_reason(&c->parser);
    if (c->error_status) {
        /* one of our callbacks refused: llhttp reports HPE_USER for span
         * callbacks but HPE_CB_<NAME> for the others (headers complete,
         * value complete), so the recorded status is what counts */
        status = c->error_status;
        detail = c->error_detail;
    } else if (err == HPE_PAUSED_H2_UPGRADE) { /* "PRI * HTTP/2.0": prior knowledge */
        status = 505;
        detail = "this server speaks HTTP/1.1 and HTTP/1.0, not HTTP/2";
    } else if (err == HPE_INVALID_METHOD) {
        status = 501;
        detail = "the request method is not one the server knows";
    }
    ackd_http_conn_fail(c, status, detail ? detail : "the request is malformed");
}

/* Keeps the last byte that is not blank, for is_fold across reads. */
static void remember_last(ackd_http_conn_t *c, const char *data, size_t len)
{
    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t'))
        len--;
    if (len)
        c->last_nonws = data[len - 1];
}

static void conn_feed(ackd_http_conn_t *c, const char *data, size_t len)
{
    while (len > 0 && !c->closing && !c->close_after_write) {
        if (c->req && c->req->method && c->dispatched) {
            /* the current request is with its handler: keep the rest for later */
            size_t cap = c->srv->limits.max_request_line + c->srv->limits.max_headers_total;
            if (c->pending.len + len > cap + READ_BUF_SIZE) {
                uv_read_stop((uv_stream_t *)&c->tcp); /* back-pressure until answered */
                c->reading = false;
            }
            ackd_buf_append(&c->pending, data, len);
            return;
        }
        if (c->head_scan != HS_DONE) {
            const char *bad = scan_head(c, data, len);
            if (bad) {
                ackd_http_conn_fail(c, 400, bad);
                return;
            }
        }
        c->feed_base = data;
        enum llhttp_errno err = llhttp_execute(&c->parser, data, len);
        if (err == HPE_OK) {
            remember_last(c, data, len);
            return;
        }
        if (err != HPE_PAUSED) {
            parse_error(c, err);
            return;
        }
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        remember_last(c, data, used);
        data += used;
        len -= used;
        llhttp_resume(&c->parser);
        if (c->trailer_pause) {
            c->trailer_pause = false;
            c->head_scan = HS_LINE_START; /* the trailer section: field lines, then CRLF */
            continue;
        }
        c->dispatched = true;
        ackd_http_conn_tlist_set(c, TL_NONE);
        ackd_http_req_dispatch(c->req);
    }
}

/* Parses what arrived while the previous request was answered. */
static void conn_resume(ackd_http_conn_t *c)
{
    if (c->pending.len == 0)
        return;
    size_t len;
    char *data = ackd_buf_detach(&c->pending, &len);
    ackd_buf_init(&c->pending, 0);
    c->in_feed = true;
    conn_feed(c, data, len);
    c->in_feed = false;
    ackd_free(data);
    if (!c->reading && !c->closing && !c->close_after_write && !c->dispatched) {
        read_start(c); /* the backlog is gone: back to the socket */
    }
}

void ackd_http_conn_request_done(ackd_http_conn_t *c)
{
    ackd_http_req_t *req = c->req;
    bool keep = req->keepalive && !c->close_after_write;
    ackd_http_access_log(req);
    ackd_http_req_free(req);
    c->req = NULL;
    c->dispatched = false;
    c->nrequests++;
    if (!keep || c->srv->shutting_down || c->nrequests >= c->srv->limits.max_requests_per_connection) {
        c->close_after_write = true;
        finish_writes(c);
        return;
    }
    ackd_http_conn_tlist_set(c, TL_IDLE);
    if (!c->in_feed)
        conn_resume(c);
}

/* --- the socket --- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    ackd_http_server_t *srv = ((ackd_http_conn_t *)h->data)->srv;
    if (!srv->read_buf_busy) {
        srv->read_buf_busy = true;
        buf->base = srv->read_buf;
    } else {
        buf->base = ackd_malloc(READ_BUF_SIZE);
    }
    buf->len = READ_BUF_SIZE;
}

static void release_buf(ackd_http_server_t *srv, const uv_buf_t *buf)
{
    if (buf->base == srv->read_buf)
        srv->read_buf_busy = false;
    else
        ackd_free(buf->base);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    ackd_http_conn_t *c = s->data;
    ackd_http_server_t *srv = c->srv;
    if (n > 0 && !c->close_after_write) {
        c->in_feed = true;
        conn_feed(c, buf->base, (size_t)n);
        c->in_feed = false;
    } else if (n < 0) {
        /* EOF or error: a parked request's client is gone, a lingering close is done */
        ackd_http_conn_close(c);
    }
    release_buf(srv, buf);
}

static void read_start(ackd_http_conn_t *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        ackd_http_conn_close(c);
}

typedef struct {
    uv_write_t w;
    ackd_http_conn_t *conn;
    char *data;
} write_req_t;

static void on_write(uv_write_t *w, int status)
{
    write_req_t *wr = CONTAINER_OF(w, write_req_t, w);
    ackd_http_conn_t *c = wr->conn;
    ackd_free(wr->data);
    ackd_free(wr);
    c->writes_pending--;
    if (status < 0)
        ackd_http_conn_close(c);
}

void ackd_http_conn_write(ackd_http_conn_t *c, ackd_buf_t *out)
{
    if (c->closing || out->len == 0) {
        ackd_buf_free(out);
        return;
    }
    size_t off = 0;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n > 0)
            off = (size_t)n;
        if (off == out->len) {
            ackd_buf_free(out);
            return;
        }
    }
    write_req_t *wr = ACKD_NEW(write_req_t);
    wr->conn = c;
    size_t len;
    char *data = ackd_buf_detach(out, &len);
    wr->data = data;
    uv_buf_t b = uv_buf_init(data + off, (unsigned)(len - off));
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        ackd_free(data);
        ackd_free(wr);
        ackd_http_conn_close(c);
        return;
    }
    c->writes_pending++;
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    ackd_http_conn_t *c = sr->data;
    ackd_free(sr);
    if (c->closing)
        return;
    if (status < 0) {
        ackd_http_conn_close(c);
        return;
    }
    /* FIN sent after the last answer: drain what the client still sends so
     * the kernel does not reset the connection under the answer */
    ackd_http_conn_tlist_set(c, TL_LINGER);
    read_start(c);
}

static void finish_writes(ackd_http_conn_t *c)
{
    if (c->shutdown_started || c->closing)
        return;
    c->shutdown_started = true;
    ackd_http_conn_tlist_set(c, TL_NONE);
    uv_shutdown_t *sr = ACKD_NEW(uv_shutdown_t);
    sr->data = c;
    if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        ackd_free(sr);
        ackd_http_conn_close(c);
    }
}

void ackd_http_conn_fail(ackd_http_conn_t *c, int status, const char *detail)
{
    if (c->closing || c->close_after_write)
        return;
    ackd_buf_t out;
    ackd_buf_init(&out, 0);
    ackd_http_write_error(c, status, detail, &out);
    if (c->req && !c->dispatched) {
        ackd_http_req_free(c->req);
        c->req = NULL;
    }
    c->close_after_write = true;
    ackd_http_conn_write(c, &out);
    finish_writes(c);
}

static void on_close(uv_handle_t *h)
{
    ackd_http_conn_t *c = h->data;
    ackd_http_server_t *srv = c->srv;
    ackd_buf_free(&c->pending);
    ackd_buf_free(&c->field);
    ackd_buf_free(&c->value);
    ackd_free(c);
    srv->nconns--;
    ackd_http_server_conn_closed(srv);
}

void ackd_http_conn_close(ackd_http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    ackd_http_server_t *srv = c->srv;
    tlist_remove(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->req) {
        if (c->req->defer)
            ackd_http_defer_cancel(c->req->defer);
        ackd_http_req_free(c->req);
        c->req = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void ackd_http_conn_expire(ackd_http_conn_t *c, int list)
{
    if (list == TL_HEAD || list == TL_BODY) {
        ackd_http_conn_tlist_set(c, TL_NONE);
        ackd_http_conn_fail(c, 408, list == TL_HEAD ? "the request head did not arrive in time"
                                                    : "the request body stopped arriving");
    } else {
        ackd_http_conn_close(c);
    }
}

/* Takes a connected socket: from accept, or an fd handed in (tests, fuzzing). */
static ackd_http_conn_t *conn_new(ackd_http_server_t *srv)
{
    settings_init();
    ackd_http_conn_t *c = ACKD_NEW(ackd_http_conn_t);
    c->srv = srv;
    c->tlist = TL_NONE;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    ackd_buf_init(&c->field, 0); /* header_bytes() caps field and value */
    ackd_buf_init(&c->value, 0);
    ackd_buf_init(&c->pending, 0);
    return c;
}

static void conn_start(ackd_http_conn_t *c)
{
    ackd_http_server_t *srv = c->srv;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    uv_tcp_nodelay(&c->tcp, 1);
    read_start(c);
    if (srv->nconns > srv->limits.max_connections || srv->shutting_down) {
        ackd_http_conn_fail(c, 503, "the server is at its connection limit");
        return;
    }
    ackd_http_conn_tlist_set(c, TL_HEAD);
}

static void on_reject_close(uv_handle_t *h)
{
    ackd_http_conn_t *c = h->data;
    ackd_buf_free(&c->pending);
    ackd_free(c);
}

void ackd_http_conn_accept(ackd_http_server_t *srv)
{
    ackd_http_conn_t *c = conn_new(srv);
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_close);
        return;
    }
    conn_start(c);
}

int ackd_http_server_adopt(ackd_http_server_t *srv, uv_os_sock_t fd)
{
    ackd_http_conn_t *c = conn_new(srv);
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_close);
        return rc;
    }
    conn_start(c);
    return 0;
}
