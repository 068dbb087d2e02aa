/* server.c - the listener, the shared timer, the wake-up handle, shutdown.
 *
 * Loop phases as they touch the server: accept (on_connection), read and
 * parse (conn.c), deferred answers posted by other threads (on_async), and
 * timeouts (on_timer, one timer armed at the earliest deadline of the
 * timeout lists). Loop thread only. */
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "http/internal.h"

#define READ_BUF_SIZE 65536

const ackd_http_limits_t ackd_http_limits_default = {
    .max_request_line = 8 * 1024,
    .max_header_size = 8 * 1024,
    .max_headers = 100,
    .max_headers_total = 32 * 1024,
    .max_body = 1024 * 1024,
    .head_timeout_ms = 10000,
    .body_timeout_ms = 10000,
    .keepalive_timeout_ms = 30000,
    .max_connections = 10000,
    .max_requests_per_connection = 1000,
    .shutdown_grace_ms = 10000,
    .access_log = 1,
};

static void on_timer(uv_timer_t *t)
{
    ackd_http_server_t *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    for (int l = 0; l < TL_COUNT; l++) {
        ackd_http_conn_t *c;
        while ((c = srv->tlists[l].head) && c->deadline_ms <= now)
            ackd_http_conn_expire(c, l); /* takes c off the list */
    }
    ackd_http_server_timer_arm(srv);
}

void ackd_http_server_timer_arm(ackd_http_server_t *srv)
{
    if (uv_is_closing((uv_handle_t *)&srv->timer))
        return;
    uint64_t earliest = UINT64_MAX;
    for (int l = 0; l < TL_COUNT; l++) {
        ackd_http_conn_t *c = srv->tlists[l].head;
        if (c && c->deadline_ms < earliest)
            earliest = c->deadline_ms;
    }
    if (earliest == UINT64_MAX) {
        uv_timer_stop(&srv->timer);
        return;
    }
    uint64_t now = uv_now(srv->loop);
    uint64_t due = earliest > now ? earliest - now : 0;
    /* re-arm only when this deadline is earlier than what is armed */
    if (uv_is_active((uv_handle_t *)&srv->timer) && uv_timer_get_due_in(&srv->timer) <= due)
        return;
    uv_timer_start(&srv->timer, on_timer, due, 0);
}

static void on_async(uv_async_t *a)
{
    ackd_http_defer_apply_pending(a->data);
}

ackd_http_server_t *ackd_http_server_new(uv_loop_t *loop, const ackd_http_limits_t *limits,
                                         const ackd_router_t *router)
{
    ackd_http_server_t *srv = ACKD_NEW(ackd_http_server_t);
    srv->loop = loop;
    srv->limits = *limits;
    srv->router = router;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    uv_timer_init(loop, &srv->timer);
    srv->timer.data = srv;
    uv_timer_init(loop, &srv->grace_timer);
    srv->grace_timer.data = srv;
    uv_async_init(loop, &srv->async, on_async);
    srv->async.data = srv;
    uv_mutex_init(&srv->ops_lock);
    srv->handles_open = 4;
    srv->read_buf = ackd_malloc(READ_BUF_SIZE);
    return srv;
}

static void on_connection(uv_stream_t *l, int status)
{
    ackd_http_server_t *srv = l->data;
    if (status < 0) {
        ACKD_LOG(ACKD_LOG_WARN, "accept failed", LOG_STR("error", uv_strerror(status)));
        return;
    }
    ackd_http_conn_accept(srv);
}

int ackd_http_server_listen(ackd_http_server_t *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    if (rc && strcmp(host, "localhost") == 0)
        rc = uv_ip4_addr("127.0.0.1", port, (struct sockaddr_in *)&ss);
    if (rc)
        return rc;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc)
        return rc;
    rc = uv_listen((uv_stream_t *)&srv->listener, 4096, on_connection);
    if (rc)
        return rc;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    srv->listening = true;
    return 0;
}

int ackd_http_server_port(const ackd_http_server_t *srv)
{
    return srv->port;
}

size_t ackd_http_server_connections(const ackd_http_server_t *srv)
{
    return srv->nconns;
}

static void on_handle_closed(uv_handle_t *h)
{
    ackd_http_server_t *srv = h->data;
    if (--srv->handles_open == 0 && srv->shutdown_done)
        srv->shutdown_done(srv->shutdown_data);
}

/* Everything is closed but the server's own handles: close them. */
static void close_handles(ackd_http_server_t *srv)
{
    if (uv_is_closing((uv_handle_t *)&srv->timer))
        return;
    ackd_http_defer_close_queue(srv);
    uv_close((uv_handle_t *)&srv->timer, on_handle_closed);
    uv_close((uv_handle_t *)&srv->grace_timer, on_handle_closed);
    uv_close((uv_handle_t *)&srv->async, on_handle_closed);
}

void ackd_http_server_conn_closed(ackd_http_server_t *srv)
{
    if (srv->shutting_down && srv->nconns == 0)
        close_handles(srv);
}

static void on_grace_over(uv_timer_t *t)
{
    ackd_http_server_t *srv = t->data;
    ACKD_LOG(ACKD_LOG_WARN, "shutdown grace period over, closing connections",
             LOG_INT("connections", srv->nconns));
    for (ackd_http_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        ackd_http_conn_close(c);
    }
}

void ackd_http_server_shutdown(ackd_http_server_t *srv, void (*done)(void *data), void *data)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    srv->shutdown_done = done;
    srv->shutdown_data = data;
    uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
    /* idle connections and half-read requests go now; answered ones after their answer */
    for (ackd_http_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (!c->dispatched)
            ackd_http_conn_close(c);
    }
    if (srv->nconns == 0) {
        close_handles(srv);
        return;
    }
    uv_timer_start(&srv->grace_timer, on_grace_over, srv->limits.shutdown_grace_ms, 0);
}

void ackd_http_server_free(ackd_http_server_t *srv)
{
    if (!srv)
        return;
    uv_mutex_destroy(&srv->ops_lock);
    ackd_free(srv->read_buf);
    ackd_free(srv);
}
