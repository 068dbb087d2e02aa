/* defer.c - parked requests answered from any thread.
 *
 * A handle has two owners: the connection (until the answer is written or
 * the client leaves) and the completer (until its final call). It is freed
 * when both have let go, so neither side can touch freed memory whatever the
 * order. Completers never touch the request: they post operations to the
 * server's queue and wake the loop with uv_async_send, the one libuv call
 * that is thread-safe; the loop applies them in order. An operation for a
 * client that has gone is discarded. */
#include <string.h>

#include "base/alloc.h"
#include "http/internal.h"

enum { OP_RESPOND, OP_STREAM_START, OP_STREAM_WRITE, OP_STREAM_END, OP_DROP };

struct ackd_http_defer {
    atomic_int refs;
    atomic_int canceled;
    ackd_http_server_t *srv;
    ackd_http_req_t *req;        /* loop thread only; NULL once finished or gone */
    ackd_http_cancel_cb on_cancel;
    void *data;
};

struct ackd_http_response {
    int status;
    char *content_type;
    resp_header_t *headers, *tail; /* strings owned (malloc'd) */
    ackd_buf_t body;
};

struct defer_op {
    defer_op_t *next;
    ackd_http_defer_t *d;
    int kind;
    ackd_http_response_t *resp;  /* RESPOND, STREAM_START */
    char *data;                  /* STREAM_WRITE */
    size_t len;
    ackd_http_build_cb build;    /* RESPOND built on the loop (resp NULL until then) */
    void (*release)(void *);     /* runs after the final operation, on the loop */
    void *release_arg;
};

static void unref(ackd_http_defer_t *d)
{
    if (atomic_fetch_sub(&d->refs, 1) == 1)
        ackd_free(d);
}

ackd_http_response_t *ackd_http_response_new(int status, const char *content_type)
{
    ackd_http_response_t *r = ACKD_NEW(ackd_http_response_t);
    r->status = status;
    r->content_type = content_type ? ackd_strdup(content_type) : NULL;
    ackd_buf_init(&r->body, 0);
    return r;
}

int ackd_http_response_header(ackd_http_response_t *r, const char *name, const char *value)
{
    if (!*name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return -1;
    resp_header_t *h = ACKD_NEW(resp_header_t);
    h->name = ackd_strdup(name);
    h->value = ackd_strdup(value);
    if (r->tail)
        r->tail->next = h;
    else
        r->headers = h;
    r->tail = h;
    return 0;
}

void ackd_http_response_body(ackd_http_response_t *r, const void *body, size_t len)
{
    ackd_buf_reset(&r->body);
    ackd_buf_append(&r->body, body, len);
}

void ackd_http_response_body_take(ackd_http_response_t *r, ackd_buf_t *b)
{
    ackd_buf_free(&r->body);
    r->body = *b;
    ackd_buf_init(b, b->max);
}

static void response_free(ackd_http_response_t *r)
{
    if (!r)
        return;
    for (resp_header_t *h = r->headers, *next; h; h = next) {
        next = h->next;
        ackd_free((char *)h->name);
        ackd_free((char *)h->value);
        ackd_free(h);
    }
    ackd_free(r->content_type);
    ackd_buf_free(&r->body);
    ackd_free(r);
}

ackd_http_defer_t *ackd_http_defer(ackd_http_req_t *req, ackd_http_cancel_cb on_cancel, void *data)
{
    ackd_http_defer_t *d = ACKD_NEW(ackd_http_defer_t);
    atomic_init(&d->refs, 2);
    atomic_init(&d->canceled, 0);
    d->srv = req->conn->srv;
    d->req = req;
    d->on_cancel = on_cancel;
    d->data = data;
    req->defer = d;
    return d;
}

int ackd_http_defer_canceled(const ackd_http_defer_t *d)
{
    return atomic_load(&((ackd_http_defer_t *)d)->canceled);
}

void ackd_http_defer_cancel(ackd_http_defer_t *d)
{
    d->req = NULL;
    atomic_store(&d->canceled, 1);
    if (d->on_cancel)
        d->on_cancel(d, d->data);
    unref(d); /* the connection's reference */
}

static void op_free(defer_op_t *op)
{
    if (op->release)
        op->release(op->release_arg);
    response_free(op->resp);
    ackd_free(op->data);
    ackd_free(op);
}

static void post_op(ackd_http_defer_t *d, defer_op_t *op);

static void post(ackd_http_defer_t *d, int kind, ackd_http_response_t *resp, const void *data,
                 size_t len)
{
    defer_op_t *op = ACKD_NEW(defer_op_t);
    op->d = d;
    op->kind = kind;
    op->resp = resp;
    if (data) {
        op->data = ackd_malloc(len);
        memcpy(op->data, data, len);
        op->len = len;
    }
    post_op(d, op);
}

static void post_op(ackd_http_defer_t *d, defer_op_t *op)
{
    int kind = op->kind;
    ackd_http_server_t *srv = d->srv;
    uv_mutex_lock(&srv->ops_lock);
    if (srv->async_closed) {
        /* the server is gone: nobody will read this */
        uv_mutex_unlock(&srv->ops_lock);
        int final = kind == OP_RESPOND || kind == OP_STREAM_END || kind == OP_DROP;
        op_free(op);
        if (final)
            unref(d);
        return;
    }
    if (srv->ops_tail)
        srv->ops_tail->next = op;
    else
        srv->ops_head = op;
    srv->ops_tail = op;
    uv_async_send(&srv->async); /* under the lock: async_closed is set under it */
    uv_mutex_unlock(&srv->ops_lock);
}

void ackd_http_defer_respond(ackd_http_defer_t *d, ackd_http_response_t *r)
{
    post(d, OP_RESPOND, r, NULL, 0);
}

/* A final operation that runs release(arg) on the loop once applied. */
static void post_final(ackd_http_defer_t *d, int kind, ackd_http_response_t *r,
                       ackd_http_build_cb build, void (*release)(void *arg), void *arg)
{
    defer_op_t *op = ACKD_NEW(defer_op_t);
    op->d = d;
    op->kind = kind;
    op->resp = r;
    op->build = build;
    op->release = release;
    op->release_arg = arg;
    post_op(d, op);
}

void ackd_http_defer_respond_free(ackd_http_defer_t *d, ackd_http_response_t *r,
                                  void (*release)(void *arg), void *arg)
{
    post_final(d, OP_RESPOND, r, NULL, release, arg);
}

void ackd_http_defer_respond_later(ackd_http_defer_t *d, ackd_http_build_cb build,
                                   void (*release)(void *arg), void *arg)
{
    post_final(d, OP_RESPOND, NULL, build, release, arg);
}

void ackd_http_defer_stream_start(ackd_http_defer_t *d, ackd_http_response_t *r)
{
    post(d, OP_STREAM_START, r, NULL, 0);
}

void ackd_http_defer_stream_write(ackd_http_defer_t *d, const void *data, size_t len)
{
    if (len)
        post(d, OP_STREAM_WRITE, NULL, data, len);
}

void ackd_http_defer_stream_end(ackd_http_defer_t *d)
{
    post(d, OP_STREAM_END, NULL, NULL, 0);
}

void ackd_http_defer_stream_end_free(ackd_http_defer_t *d, void (*release)(void *arg), void *arg)
{
    post_final(d, OP_STREAM_END, NULL, NULL, release, arg);
}

void ackd_http_defer_drop(ackd_http_defer_t *d)
{
    post(d, OP_DROP, NULL, NULL, 0);
}

/* --- applied on the loop thread --- */

/* The connection lets go of the handle: the request is answered. */
static void finish(ackd_http_defer_t *d)
{
    d->req->defer = NULL;
    d->req = NULL;
    unref(d);
}

static void stream_start(ackd_http_req_t *req, ackd_http_response_t *r)
{
    ackd_http_conn_t *c = req->conn;
    bool chunked = req->http_minor == 1;
    if (!chunked)
        req->keepalive = false; /* HTTP/1.0: the end of the stream is the close */
    req->streaming = true;
    req->status = r->status;
    ackd_buf_t out;
    ackd_buf_init(&out, 0);
    req->extra_headers = r->headers; /* written straight from the answer: nothing copied */
    ackd_http_write_head(req, r->status, r->content_type, 0, chunked, &out);
    req->extra_headers = NULL;
    ackd_http_conn_write(c, &out);
}

static void stream_write(ackd_http_req_t *req, const char *data, size_t len)
{
    if (!req->streaming || req->head)
        return;
    ackd_buf_t out;
    ackd_buf_init(&out, 0);
    if (req->http_minor == 1)
        ackd_buf_printf(&out, "%zx\r\n", len);
    ackd_buf_append(&out, data, len);
    if (req->http_minor == 1)
        ackd_buf_append(&out, "\r\n", 2);
    ackd_http_conn_write(req->conn, &out);
}

static void stream_end(ackd_http_req_t *req)
{
    ackd_http_conn_t *c = req->conn;
    if (req->streaming && req->http_minor == 1 && !req->head) {
        ackd_buf_t out;
        ackd_buf_init(&out, 0);
        ackd_buf_appendz(&out, "0\r\n\r\n");
        ackd_http_conn_write(c, &out);
    }
    req->answered = true;
    if (!req->keepalive)
        c->close_after_write = true;
}

static void apply(defer_op_t *op)
{
    ackd_http_defer_t *d = op->d;
    ackd_http_req_t *req = d->req;
    int final = op->kind == OP_RESPOND || op->kind == OP_STREAM_END || op->kind == OP_DROP;
    if (req && !req->answered) {
        ackd_http_conn_t *c = req->conn;
        switch (op->kind) {
        case OP_RESPOND:
            if (op->build && !(op->resp = op->build(op->release_arg))) {
                finish(d);
                ackd_http_respond_problem(req, 500, "internal-error", NULL, NULL,
                                          "the answer could not be built");
                break;
            }
            finish(d);
            req->extra_headers = op->resp->headers;
            ackd_http_respond(req, op->resp->status, op->resp->content_type, op->resp->body.data,
                              op->resp->body.len); /* frees req: no reset of extra_headers */
            break;
        case OP_STREAM_START:
            if (!req->streaming)
                stream_start(req, op->resp);
            break;
        case OP_STREAM_WRITE:
            stream_write(req, op->data, op->len);
            break;
        case OP_STREAM_END:
            if (!req->streaming) {
                finish(d);
                ackd_http_respond(req, 204, NULL, NULL, 0);
                break;
            }
            stream_end(req);
            finish(d);
            ackd_http_conn_request_done(c);
            break;
        case OP_DROP:
            finish(d);
            if (req->streaming) {
                /* a stream cut short cannot be framed as complete: close */
                c->close_after_write = true;
                req->keepalive = false;
                ackd_http_conn_request_done(c);
            } else {
                ackd_http_respond_problem(req, 500, "internal-error", NULL, NULL,
                                          "the request was abandoned before an answer was ready");
            }
            break;
        }
    }
    if (final)
        unref(d); /* the completer's reference, carried by its final operation */
    op_free(op);
}

void ackd_http_defer_apply_pending(ackd_http_server_t *srv)
{
    uv_mutex_lock(&srv->ops_lock);
    defer_op_t *op = srv->ops_head;
    srv->ops_head = srv->ops_tail = NULL;
    uv_mutex_unlock(&srv->ops_lock);
    while (op) {
        defer_op_t *next = op->next;
        apply(op);
        op = next;
    }
}

/* Marks the queue closed and discards what is left (the server is stopping). */
void ackd_http_defer_close_queue(ackd_http_server_t *srv)
{
    uv_mutex_lock(&srv->ops_lock);
    srv->async_closed = true;
    uv_mutex_unlock(&srv->ops_lock);
    ackd_http_defer_apply_pending(srv);
}
