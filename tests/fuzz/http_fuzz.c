/* http_fuzz.c - libFuzzer target for the HTTP parser glue and the connection
 * state machine (src/http/conn.c and what it calls).
 *
 * Each input is the byte stream of one client connection, typically several
 * pipelined requests. It is written into one end of a socketpair whose other
 * end the real server adopts (ackd_http_server_adopt), so every byte goes
 * through libuv reads, llhttp, the framing checks, the limits, routing,
 * handlers, deferred and streamed answers, and the close paths. The server,
 * its router and the loop live for the whole run; each input must leave
 * nothing behind (no connection, no parked handle, no queued operation), so
 * LeakSanitizer can hold every input to account.
 *
 * Phases of one input:
 *   send    write the input (non-blocking, 64 KiB at most), turning the loop
 *           and draining the answers, then let the loop settle so deferred
 *           answers and pipelined requests run
 *   eof     shutdown(SHUT_WR): the server sees the client leave
 *   close   close the peer and turn the loop until the connection is gone
 * The oracles besides the sanitizers: whatever the server writes starts
 * with a status line, and the connection is gone soon after the client.
 * HTTP_FUZZ_ECHO=1 copies the answers to stderr when replaying an input. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "http/http.h"
#include "http/internal.h"
#include "http/router.h"

#define INPUT_CAP 65536
#define SETTLE_TURNS 16    /* quiet loop turns before the client half-closes */
#define MAX_TURNS 4096     /* bound on loop turns per phase */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static bool echo_output; /* HTTP_FUZZ_ECHO=1: copy the server's answers to stderr */
static ackd_router_t *router;
static ackd_http_server_t *srv;

/* --- handlers --- */

static void on_health(ackd_http_req_t *req, void *data)
{
    (void)data;
    static const char body[] = "{\"status\":\"ok\"}";
    ackd_http_respond(req, 200, "application/json", body, sizeof body - 1);
}

/* Echoes the body, a route param, a query param and a request header. */
static void on_echo(ackd_http_req_t *req, void *data)
{
    (void)data;
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    const char *id = ackd_http_req_param(req, "id");
    const char *q = ackd_http_req_query_param(req, "q");
    const char *h = ackd_http_req_header(req, "x-echo");
    if (id)
        ackd_http_resp_header(req, "X-Id", id); /* may be refused (CR/LF): fine */
    if (q)
        ackd_http_resp_header(req, "X-Q", q);
    if (h)
        ackd_http_resp_header(req, "X-Echo", h);
    const char *name, *value;
    for (size_t i = 0; ackd_http_req_header_at(req, i, &name, &value) == 0; i++)
        (void)ackd_http_req_strdup(req, value);
    ackd_http_respond(req, 200, "application/octet-stream", body, len);
}

static void on_problem(ackd_http_req_t *req, void *data)
{
    (void)data;
    ackd_http_respond_problem(req, 409, "conflict", NULL, NULL, "path %s query %s",
                              ackd_http_req_path(req), ackd_http_req_query(req));
}

/* Parked requests, completed on the next loop turn by a zero timer. */
enum { DEFER_RESPOND, DEFER_STREAM, DEFER_EMPTY, DEFER_DROP };

typedef struct parked {
    struct parked *next;
    ackd_http_defer_t *d;
    int kind;
} parked_t;

static parked_t *parked;
static size_t nparked;
static uv_timer_t complete_timer;
static uv_timer_t tick_timer; /* bounds a blocking loop turn */

static void complete(ackd_http_defer_t *d, int kind)
{
    static const char body[] = "{\"deferred\":true}";
    ackd_http_response_t *r;
    switch (kind) {
    case DEFER_RESPOND:
        r = ackd_http_response_new(201, "application/json");
        ackd_http_response_header(r, "X-Deferred", "1");
        ackd_http_response_body(r, body, sizeof body - 1);
        ackd_http_defer_respond(d, r);
        break;
    case DEFER_STREAM:
        r = ackd_http_response_new(200, "text/event-stream");
        ackd_http_defer_stream_start(d, r);
        ackd_http_defer_stream_write(d, "data: 1\n\n", 9);
        ackd_http_defer_stream_write(d, "data: 2\n\n", 9);
        ackd_http_defer_stream_end(d);
        break;
    case DEFER_EMPTY:
        ackd_http_defer_stream_end(d); /* ended before started: 204 */
        break;
    default:
        ackd_http_defer_drop(d);
        break;
    }
}

static void on_complete_timer(uv_timer_t *t)
{
    (void)t;
    while (parked) {
        parked_t *p = parked;
        parked = p->next;
        nparked--;
        complete(p->d, p->kind);
        ackd_free(p);
    }
}

/* The client left: whoever takes d off the list finishes it. */
static void on_cancel(ackd_http_defer_t *d, void *data)
{
    (void)data;
    for (parked_t **pp = &parked; *pp; pp = &(*pp)->next) {
        if ((*pp)->d == d) {
            parked_t *p = *pp;
            *pp = p->next;
            nparked--;
            ackd_free(p);
            ackd_http_defer_drop(d);
            return;
        }
    }
}

static void on_defer(ackd_http_req_t *req, void *data)
{
    (void)data;
    const char *kind = ackd_http_req_param(req, "kind");
    parked_t *p = ACKD_NEW(parked_t);
    p->kind = strcmp(kind, "stream") == 0  ? DEFER_STREAM
              : strcmp(kind, "empty") == 0 ? DEFER_EMPTY
              : strcmp(kind, "drop") == 0  ? DEFER_DROP
                                           : DEFER_RESPOND;
    p->d = ackd_http_defer(req, on_cancel, NULL);
    p->next = parked;
    parked = p;
    nparked++;
    uv_timer_start(&complete_timer, on_complete_timer, 0, 0);
}

static const ackd_route_t routes[] = {
    {.method = "GET", .pattern = "/healthz", .handler = on_health},
    {.method = "POST", .pattern = "/echo", .handler = on_echo},
    {.method = "PUT", .pattern = "/echo/{id}", .handler = on_echo},
    {.method = "GET", .pattern = "/echo/{id}", .handler = on_echo},
    {.method = "DELETE", .pattern = "/v1/tasks/{id}", .handler = on_problem},
    {.method = "GET", .pattern = "/defer/{kind}", .handler = on_defer},
    {.method = "POST", .pattern = "/defer/{kind}", .handler = on_defer},
    {.method = NULL},
};

/* --- the client end --- */

typedef struct {
    int fd;
    bool eof;          /* the server closed its side */
    size_t received;
    char first[8];     /* the first bytes of the output */
} peer_t;

static void peer_drain(peer_t *p)
{
    char buf[16384];
    while (!p->eof) {
        ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            size_t have = p->received < sizeof p->first ? p->received : sizeof p->first;
            size_t take = sizeof p->first - have;
            memcpy(p->first + have, buf, (size_t)n < take ? (size_t)n : take);
            p->received += (size_t)n;
            if (echo_output)
                fwrite(buf, 1, (size_t)n, stderr);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            p->eof = true; /* FIN, or reset by the server's close */
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void turn(peer_t *p)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    peer_drain(p);
}

static bool server_idle(void)
{
    return ackd_http_server_connections(srv) == 0;
}

/* Nothing of the input is left anywhere: no connection, no parked request,
 * no operation waiting for the loop. */
static bool all_gone(void)
{
    uv_mutex_lock(&srv->ops_lock);
    bool ops = srv->ops_head != NULL;
    uv_mutex_unlock(&srv->ops_lock);
    return server_idle() && nparked == 0 && !ops;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    echo_output = getenv("HTTP_FUZZ_ECHO") != NULL;
    ackd_log_level = ACKD_LOG_OFF; /* "request refused" lines would drown the fuzzer's */
    uv_loop_init(&loop);
    uv_timer_init(&loop, &complete_timer);
    uv_timer_init(&loop, &tick_timer);
    router = ackd_router_new();
    if (ackd_router_add_table(router, routes, NULL) != 0)
        abort();
    ackd_http_limits_t lim = ackd_http_limits_default;
    lim.max_request_line = 512;
    lim.max_header_size = 512;
    lim.max_headers = 16;
    lim.max_headers_total = 2048;
    lim.max_body = 4096;
    lim.head_timeout_ms = 200;
    lim.body_timeout_ms = 200;
    lim.keepalive_timeout_ms = 200;
    lim.max_connections = 4;
    lim.max_requests_per_connection = 8;
    lim.shutdown_grace_ms = 200;
    lim.access_log = 0;
    srv = ackd_http_server_new(&loop, &lim, router);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_CAP)
        size = INPUT_CAP;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (ackd_http_server_adopt(srv, sv[0]) != 0)
        abort();
    peer_t p = {.fd = sv[1]};

    /* send: write what fits, turn the loop, repeat; then let it settle */
    size_t off = 0;
    int quiet = 0;
    for (int i = 0; i < MAX_TURNS && !p.eof && !server_idle(); i++) {
        if (off < size) {
            ssize_t n = send(p.fd, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                break; /* the server closed on us */
        }
        size_t before = p.received;
        turn(&p);
        quiet = off == size && p.received == before && nparked == 0 ? quiet + 1 : 0;
        if (quiet >= SETTLE_TURNS)
            break;
    }

    /* eof: the client half-closes and reads what is left */
    shutdown(p.fd, SHUT_WR);
    for (int i = 0; i < MAX_TURNS && !p.eof && !server_idle(); i++)
        turn(&p);

    if (p.received && memcmp(p.first, "HTTP/1.", p.received < 7 ? p.received : 7) != 0) {
        fprintf(stderr, "http_fuzz: output does not start with a status line\n");
        abort();
    }

    /* close: the client is gone; the server must let go of everything */
    close(p.fd);
    for (int i = 0; i < MAX_TURNS && !all_gone(); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    /* timeouts (200 ms, lingering 2 s) are the last resort */
    for (int i = 0; i < 64 && !all_gone(); i++) {
        uv_timer_start(&tick_timer, on_tick, 50, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick_timer);
    if (!all_gone()) {
        fprintf(stderr, "http_fuzz: connection still open after the client left (%zu open, %zu parked)\n",
                ackd_http_server_connections(srv), nparked);
        abort();
    }
    return 0;
}
