/* events.c - server-sent events of a task (SSE, text/event-stream):
 * GET /v1/tasks/{id}/events sends the task's history and then each state or
 * progress change as it is committed, a comment every 15 s to keep proxies
 * from closing the stream, and ends after the terminal event. A client that
 * reconnects with Last-Event-ID gets only what came after it.
 *
 * The stream is a watch in the store: the committer re-reads the events
 * after each change of the task and this file's wake callback writes them,
 * from the store's thread, through the deferred request. */
#include <stdio.h>
#include <string.h>

#include "api/common.h"
#include "base/alloc.h"
#include "base/error.h"
#include "base/buf.h"

enum { STARTED = 1, QUEUE_STREAM = 2 };

static void release_op(void *arg)
{
    ackd_tq_op_free(arg);
}

/* An event's data as "data:" lines: JSON may hold line breaks between its
 * tokens (a route's result keeps the upstream's body as it came), and SSE
 * ends a field at any CR, LF or CRLF; the client joins the lines with LF,
 * which is the same JSON. */
static void append_data(ackd_buf_t *out, const char *data)
{
    while (true) {
        size_t n = strcspn(data, "\r\n");
        ackd_buf_append(out, "data: ", 6);
        ackd_buf_append(out, data, n);
        ackd_buf_appendc(out, '\n');
        data += n;
        if (!*data)
            return;
        data += data[0] == '\r' && data[1] == '\n' ? 2 : 1;
    }
}

/* Store thread: sends what apply found (or a heartbeat). */
static void send_events(ackd_tq_op_t *op)
{
    ackd_http_defer_t *d = op->data;
    if (!(op->flags & STARTED)) {
        ackd_http_response_t *r = ackd_http_response_new(200, "text/event-stream");
        ackd_http_response_header(r, "Cache-Control", "no-cache");
        ackd_http_response_header(r, "X-Accel-Buffering", "no");
        ackd_http_defer_stream_start(d, r);
        op->flags |= STARTED;
    }
    ackd_buf_t out;
    ackd_buf_init(&out, 0);
    for (int i = 0; i < op->nevents; i++) {
        const ackd_event_t *e = &op->events[i];
        if (!(op->flags & QUEUE_STREAM)) /* a queue stream is live only: no ids to resume from */
            ackd_buf_printf(&out, "id: %d\n", e->seq);
        ackd_buf_printf(&out, "event: %s\n", e->type);
        append_data(&out, e->data ? e->data : "{}");
        ackd_buf_appendc(&out, '\n');
    }
    if (op->heartbeat)
        ackd_buf_appendz(&out, ": keep-alive\n\n");
    if (out.len)
        ackd_http_defer_stream_write(d, out.data, out.len);
    ackd_buf_free(&out);
    /* sent: a waiting stream keeps nothing but its cursor (the next run
     * reads the task and its new events again) */
    ackd_task_clear(&op->task);
    for (int i = 0; i < op->nevents; i++)
        ackd_event_clear(&op->events[i]);
    ackd_free(op->events);
    op->events = NULL;
    op->nevents = 0;
}

static void on_events_wake(ackd_store_op_t *s)
{
    ackd_tq_op_t *op = (ackd_tq_op_t *)s;
    if (ackd_http_defer_canceled(op->data)) {
        op->stop = true; /* the next run ends the watch; done frees the op */
        return;
    }
    send_events(op);
}

static void on_events_done(ackd_tq_op_t *op)
{
    if (op->status && !(op->flags & STARTED)) {
        api_finish(op, api_op_problem(op));
        return;
    }
    if (op->status == 0)
        send_events(op);
    ackd_http_defer_stream_end_free(op->data, release_op, op);
}

/* An event id (digits); -1 when v is not one. */
static int parse_event_id(const char *v)
{
    long n = 0;
    if (!*v)
        return -1;
    for (; *v >= '0' && *v <= '9' && n < 1000000000; v++)
        n = n * 10 + (*v - '0');
    return *v ? -1 : (int)n;
}

static void on_task_events(ackd_http_req_t *req, void *data)
{
    /* Last-Event-ID is what a reconnecting EventSource sends back: one that
     * is not ours replays from the start. ?after= is typed by people: a
     * wrong one is said so. */
    int after = 0;
    const char *last = ackd_http_req_header(req, "last-event-id");
    const char *q = ackd_http_req_query_param(req, "after");
    if (last) {
        after = parse_event_id(last);
        if (after < 0)
            after = 0;
    } else if (q && (after = parse_event_id(q)) < 0) {
        api_bad_field(req, "after", "an event id (the id: of an event)");
        return;
    }
    ackd_tq_op_t *op = api_task_op(req, data, ACKD_TQ_EVENTS, on_events_done);
    if (!op)
        return;
    op->after = after;
    op->wait_until = 1; /* a stream: keep watching until the task ends */
    op->base.wake = on_events_wake;
    api_start(req, op);
}

/* GET /v1/queues/{queue}/events: every event of the queue's tasks from now
 * on, for dashboards (admin: it spans tenants). */
static void on_queue_events(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = data;
    const ackd_queue_conf_t *q = api_path_queue(req, api);
    if (!q)
        return;
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_QUEUE_EVENTS, on_events_done, NULL);
    op->queue = ackd_strdup(q->name);
    op->flags = QUEUE_STREAM;
    op->wait_until = 1;
    op->base.wake = on_events_wake;
    api_start(req, op);
}

const ackd_route_t ackd_api_events_routes[] = {
    {.method = "GET", .pattern = "/v1/queues/{queue}/events", .handler = on_queue_events,
     .role = ACKD_ROLE_ADMIN},
    {.method = "GET", .pattern = "/v1/tasks/{id}/events", .handler = on_task_events,
     .role = ACKD_ROLE_CLIENT},
    {0},
};
