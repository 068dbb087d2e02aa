/* main.c - the payments backend: arguments, loop, server, signals.
 *
 *   payments --listen 127.0.0.1:9090 [--ackd http://127.0.0.1:8080] [--ackd-key KEY]
 *            [--log-level debug|info|warn|error|off] [--keep-calls N] [--grace DURATION]
 *
 * Besides the work endpoints (work.c, checkout.c) it serves what tests and
 * demos inspect:
 *   GET  /healthz                      {"status": "ok"}
 *   GET  /api/calls?limit=N[&path=P][&task_id=T]   the last N call records, oldest first
 *   GET  /api/stats                    counters (ledger.c)
 *   POST /api/reset                    forgets calls, counters, attempts, results, carts
 *
 * SIGINT/SIGTERM: stop accepting, let calls in flight finish for the grace
 * period (parked "hang" calls are then dropped), exit 0. A second signal
 * stops the loop at once. Exit codes: 0 done, 1 runtime failure, 2 usage. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/units.h"
#include "payments.h"

#define USAGE                                                                                      \
    "usage: payments --listen HOST:PORT [--ackd URL] [--ackd-key KEY] [--log-level LEVEL]\n"       \
    "                [--keep-calls N] [--grace DURATION]\n"

typedef struct {
    char host[256];
    int port;
    char ackd_url[1024];
    const char *ackd_key;
    int log_level;
    int64_t keep_calls;
    int64_t grace_ms;
} options_t;

typedef struct {
    pay_app_t app;
    uv_signal_t sigint, sigterm;
    ackd_http_server_t *http;
    int stopping;
} daemon_t;

/* --- inspection endpoints --- */

static void on_healthz(ackd_http_req_t *req, void *data)
{
    (void)data;
    json_t *doc = json_pack("{s:s}", "status", "ok");
    ackd_http_respond_json(req, 200, doc);
    json_decref(doc);
}

static void on_calls(ackd_http_req_t *req, void *data)
{
    pay_app_t *app = data;
    int64_t limit = 20;
    const char *v = ackd_http_req_query_param(req, "limit");
    if (v && (ackd_parse_int(v, &limit) != 0 || limit < 0)) {
        ackd_http_respond_problem(req, 400, "bad-request", NULL, NULL,
                                  "limit must be a non-negative integer");
        return;
    }
    json_t *doc =
        pay_ledger_calls(app->ledger, (size_t)limit, ackd_http_req_query_param(req, "path"),
                         ackd_http_req_query_param(req, "task_id"));
    ackd_http_respond_json(req, 200, doc);
    json_decref(doc);
}

static void on_stats(ackd_http_req_t *req, void *data)
{
    pay_app_t *app = data;
    json_t *doc = pay_ledger_stats(app->ledger);
    json_object_set_new(doc, "carts", json_integer((json_int_t)json_object_size(app->carts)));
    ackd_http_respond_json(req, 200, doc);
    json_decref(doc);
}

static void on_reset(ackd_http_req_t *req, void *data)
{
    pay_app_t *app = data;
    pay_ledger_reset(app->ledger);
    json_object_clear(app->carts);
    ACKD_LOG(ACKD_LOG_INFO, "reset");
    json_t *doc = json_pack("{s:s}", "status", "reset");
    ackd_http_respond_json(req, 200, doc);
    json_decref(doc);
}

static const ackd_route_t routes[] = {
    {.method = "GET", .pattern = "/healthz", .handler = on_healthz},
    {.method = "POST", .pattern = "/api/process-payment", .handler = pay_on_process_payment},
    {.method = "POST", .pattern = "/api/send-email", .handler = pay_on_send_email},
    {.method = "POST", .pattern = "/api/notify-warehouse", .handler = pay_on_notify_warehouse},
    {.method = "POST", .pattern = "/api/checkout", .handler = pay_on_checkout},
    {.method = "GET", .pattern = "/api/calls", .handler = on_calls},
    {.method = "GET", .pattern = "/api/stats", .handler = on_stats},
    {.method = "POST", .pattern = "/api/reset", .handler = on_reset},
    {0},
};

/* --- arguments --- */

/* "127.0.0.1:9090", "[::1]:9090", "localhost:9090". */
static int parse_listen(const char *s, options_t *o)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    int64_t port;
    if (hlen == 0 || hlen >= sizeof o->host || ackd_parse_int(colon + 1, &port) != 0 || port < 0 ||
        port > 65535)
        return -1;
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    o->port = (int)port;
    return 0;
}

static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.log_level = ACKD_LOG_INFO, .keep_calls = 1000, .grace_ms = 2000};
    snprintf(o->ackd_url, sizeof o->ackd_url, "http://127.0.0.1:8080");
    o->ackd_key = getenv("PAYMENTS_ACKD_KEY");
    bool listen = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "payments: %s needs a value\n" USAGE, a);
            return 2;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            if (parse_listen(v, o) != 0) {
                fprintf(stderr, "payments: --listen wants HOST:PORT, got \"%s\"\n", v);
                return 2;
            }
            listen = true;
        } else if (strcmp(a, "--ackd") == 0) {
            if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
                fprintf(stderr, "payments: --ackd wants an http:// URL, got \"%s\"\n", v);
                return 2;
            }
            snprintf(o->ackd_url, sizeof o->ackd_url, "%s", v);
            size_t n = strlen(o->ackd_url);
            while (n > 0 && o->ackd_url[n - 1] == '/')
                o->ackd_url[--n] = '\0';
        } else if (strcmp(a, "--ackd-key") == 0) {
            o->ackd_key = v;
        } else if (strcmp(a, "--log-level") == 0) {
            if (ackd_log_level_parse(v, &o->log_level) != 0) {
                fprintf(stderr, "payments: --log-level wants debug|info|warn|error|off\n");
                return 2;
            }
        } else if (strcmp(a, "--keep-calls") == 0) {
            if (ackd_parse_int(v, &o->keep_calls) != 0 || o->keep_calls < 0 ||
                o->keep_calls > 1000000) {
                fprintf(stderr, "payments: --keep-calls wants 0..1000000 (0: no call records)\n");
                return 2;
            }
        } else if (strcmp(a, "--grace") == 0) {
            if (ackd_parse_duration_ms(v, &o->grace_ms) != 0) {
                fprintf(stderr, "payments: --grace wants a duration (\"2s\")\n");
                return 2;
            }
        } else {
            fprintf(stderr, "payments: unknown argument \"%s\"\n" USAGE, a);
            return 2;
        }
    }
    if (!listen) {
        fprintf(stderr, "payments: --listen is required\n" USAGE);
        return 2;
    }
    return 0;
}

/* --- running --- */

static void on_http_stopped(void *data)
{
    daemon_t *d = data;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    pay_client_close(d->app.client);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_t *d = s->data;
    if (d->stopping++) {
        ACKD_LOG(ACKD_LOG_WARN, "second signal, stopping now", LOG_INT("signal", signum));
        uv_stop(s->loop);
        return;
    }
    ACKD_LOG(ACKD_LOG_INFO, "shutting down", LOG_INT("signal", signum),
             LOG_INT("connections", ackd_http_server_connections(d->http)));
    ackd_http_server_shutdown(d->http, on_http_stopped, d);
}

static int run(const options_t *o)
{
    ackd_log_level = o->log_level;
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "payments: libcurl failed to initialise\n");
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    daemon_t d = {
        .app = {.loop = &loop,
                .ackd_url = o->ackd_url,
                .ackd_key = o->ackd_key,
                .ledger = pay_ledger_new((size_t)o->keep_calls),
                .client = pay_client_new(&loop),
                .carts = json_object()},
    };
    ackd_router_t *router = ackd_router_new();
    int rc = ackd_router_add_table(router, routes, &d.app);
    if (rc) {
        fprintf(stderr, "payments: cannot build the route table (%d)\n", rc);
        return 1;
    }
    ackd_http_limits_t limits = ackd_http_limits_default;
    limits.shutdown_grace_ms = (uint64_t)o->grace_ms;
    limits.access_log = 0; /* the ledger logs each work call, with more */
    d.http = ackd_http_server_new(&loop, &limits, router);
    rc = ackd_http_server_listen(d.http, o->host, o->port);
    int status = 0;
    if (rc) {
        fprintf(stderr, "payments: cannot listen on %s:%d: %s\n", o->host, o->port,
                uv_strerror(rc));
        ackd_http_server_shutdown(d.http, on_http_stopped, &d);
        status = 1;
    }
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    if (!status) {
        uv_signal_start(&d.sigint, on_signal, SIGINT);
        uv_signal_start(&d.sigterm, on_signal, SIGTERM);
        ACKD_LOG(ACKD_LOG_INFO, "payments backend listening", LOG_STR("host", o->host),
                 LOG_INT("port", ackd_http_server_port(d.http)), LOG_STR("ackd", o->ackd_url));
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    if (d.stopping > 1)
        status = 1;
    else if (!status)
        ACKD_LOG(ACKD_LOG_INFO, "stopped");
    pay_client_free(d.app.client);
    pay_ledger_free(d.app.ledger);
    json_decref(d.app.carts);
    if (d.stopping <= 1) { /* after uv_stop handles are still open: leave them to exit */
        ackd_http_server_free(d.http);
        ackd_router_free(router);
        uv_loop_close(&loop);
    }
    curl_global_cleanup();
    return status;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    return run(&o);
}
