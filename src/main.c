/* main.c - the ackd binary: one table of subcommands.
 *
 *   ackd serve [--config FILE]     the server
 *   ackd config check FILE         validate a configuration, print it resolved
 *   ackd version
 *
 * Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad configuration. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <uv.h>

#include "api/api.h"
#include "base/log.h"
#include "config/config.h"
#include "dispatch/dispatch.h"
#include "webhook/sender.h"
#include "http/http.h"
#include "http/router.h"

#define ACKD_VERSION "0.1.0"

extern char **environ;

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command_t;

static int load_config(ackd_config_t *cfg, const char *file)
{
    char err[4096];
    if (ackd_config_load(cfg, file, environ, err, sizeof err) != 0) {
        fprintf(stderr, "%s", err);
        if (err[0] && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        return 2;
    }
    return 0;
}

/* --- serve --- */

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    ackd_http_server_t *http;
    ackd_api_t *api;
    ackd_dispatch_t *dispatch;
    ackd_webhook_sender_t *sender;
    int64_t grace_ms;
    int stopping;
} daemon_t;

static void on_http_stopped(void *data)
{
    daemon_t *d = data;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

/* No push call runs any more: route clients still waiting get their answer
 * now (202, or 504 with the status URL), while connections may still carry
 * it (the HTTP server's grace is a little longer than the dispatcher's). */
static void on_calls_over(void *data)
{
    daemon_t *d = data;
    ackd_tq_drain(d->api->tq, true);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_t *d = s->data;
    if (d->stopping++) {
        ACKD_LOG(ACKD_LOG_WARN, "second signal, exiting now", LOG_INT("signal", signum));
        exit(1);
    }
    ACKD_LOG(ACKD_LOG_INFO, "shutting down", LOG_INT("signal", signum),
             LOG_INT("connections", ackd_http_server_connections(d->http)));
    atomic_store(&d->api->draining, true);
    /* no new upstream calls nor webhooks (a draining store answers their
     * waiting claims at once: they would claim again and again); those
     * running get the grace, as requests do */
    ackd_dispatch_stop(d->dispatch, d->grace_ms, on_calls_over, d);
    ackd_webhook_sender_stop(d->sender, d->grace_ms);
    ackd_tq_drain(d->api->tq, false);
    ackd_http_server_shutdown(d->http, on_http_stopped, d);
}

/* Creates the folder that holds the database file, like mkdir -p. */
static int make_parent_dir(const char *path, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create %.512s: %s", dir, strerror(errno));
    return -1;
}

static int is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

#define SHUTDOWN_ANSWER_MS 500

static ackd_http_limits_t limits_from(const ackd_server_conf_t *s)
{
    return (ackd_http_limits_t){
        .max_request_line = s->max_request_line,
        .max_header_size = s->max_header_size,
        .max_headers = (size_t)s->max_headers,
        .max_headers_total = s->max_headers_total,
        .max_body = s->max_body,
        .head_timeout_ms = (uint64_t)s->head_timeout_ms,
        .body_timeout_ms = (uint64_t)s->body_timeout_ms,
        .keepalive_timeout_ms = (uint64_t)s->keepalive_timeout_ms,
        .max_connections = (size_t)s->max_connections,
        .max_requests_per_connection = (uint32_t)s->max_requests_per_connection,
        /* the answers the end of the dispatcher's grace makes still leave */
        .shutdown_grace_ms = (uint64_t)s->shutdown_grace_ms + SHUTDOWN_ANSWER_MS,
        .access_log = s->access_log,
        .single_fields = ackd_api_single_fields,
    };
}

/* A start that failed once the server existed: closes what was opened, in
 * the order of a stop; 1. */
static int start_failed(daemon_t *d, ackd_router_t *router)
{
    ackd_http_server_shutdown(d->http, NULL, NULL);
    if (d->sender)
        ackd_webhook_sender_stop(d->sender, 0);
    uv_run(&d->loop, UV_RUN_DEFAULT); /* the handles close */
    ackd_api_stop(d->api);
    if (d->sender)
        ackd_webhook_sender_join(d->sender);
    ackd_tq_close(d->api->tq);
    ackd_webhook_sender_free(d->sender);
    ackd_http_server_free(d->http);
    ackd_router_free(router);
    uv_loop_close(&d->loop);
    return 1;
}

static int serve(const ackd_config_t *cfg)
{
    ackd_log_level = cfg->server.log_level;
    if (cfg->nkeys == 0 && !is_loopback(cfg->server.listen_host)) {
        fprintf(stderr,
                "%s: [server] listen: no [keys] are configured, so ackd listens on loopback only "
                "(got \"%s\"); add keys or listen on 127.0.0.1\n",
                cfg->file ? cfg->file : "ackd", cfg->server.listen);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* a file-size limit (ulimit -f) is a full disk to the store: the write
     * fails with EFBIG and the batch is rolled back, instead of the process
     * being killed mid-commit (PostgreSQL ignores it for the same reason) */
    signal(SIGXFSZ, SIG_IGN);

    char err[1024];
    if (make_parent_dir(cfg->storage.path, err, sizeof err) != 0) {
        fprintf(stderr, "ackd: %s\n", err);
        return 1;
    }
    ackd_tq_t *tq;
    if (ackd_tq_open(&tq, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "ackd: [storage] %s\n", err);
        return 1;
    }
    /* Listening comes before anything that claims work (the webhook sender,
     * the dispatcher): a start that fails on a port in use must not have
     * leased tasks it will never run, nor sent a webhook. Connections wait
     * in the backlog until the loop runs. */
    daemon_t d = {.grace_ms = cfg->server.shutdown_grace_ms};
    ackd_api_t api = {.cfg = cfg, .tq = tq};
    d.api = &api;
    uv_loop_init(&d.loop);
    ackd_router_t *router = ackd_router_new();
    int rc = ackd_api_register(router, &api);
    if (rc) {
        fprintf(stderr, "ackd: cannot build the route table (%d)\n", rc);
        ackd_api_stop(&api);
        ackd_router_free(router);
        ackd_tq_close(tq);
        return 1;
    }
    ackd_http_limits_t limits = limits_from(&cfg->server);
    d.http = ackd_http_server_new(&d.loop, &limits, router);
    rc = ackd_http_server_listen(d.http, cfg->server.listen_host, cfg->server.listen_port);
    if (rc) {
        ACKD_LOG(ACKD_LOG_ERROR, "cannot listen", LOG_STR("listen", cfg->server.listen),
                 LOG_STR("error", uv_strerror(rc)));
        fprintf(stderr, "ackd: cannot listen on %s: %s\n", cfg->server.listen, uv_strerror(rc));
        return start_failed(&d, router);
    }
    if (ackd_webhook_sender_start(&d.sender, cfg, tq) != 0)
        return start_failed(&d, router);
    ackd_webhook_sender_t *sender = d.sender;
    if (ackd_dispatch_start(&d.dispatch, cfg, tq, &d.loop) != 0)
        return start_failed(&d, router);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    atomic_store(&api.ready, true);
    ACKD_LOG(ACKD_LOG_INFO, "listening", LOG_STR("listen", cfg->server.listen),
             LOG_INT("port", ackd_http_server_port(d.http)), LOG_STR("version", ACKD_VERSION));

    /* until the server and the dispatcher (stopped by on_signal) are done */
    uv_run(&d.loop, UV_RUN_DEFAULT);

    ackd_api_stop(&api);
    ackd_webhook_sender_join(sender);
    ackd_tq_close(tq); /* answers the claims still parked: after the stops, before the frees */
    ackd_dispatch_free(d.dispatch);
    ackd_webhook_sender_free(sender);
    ackd_http_server_free(d.http);
    ackd_router_free(router);
    uv_loop_close(&d.loop);
    ACKD_LOG(ACKD_LOG_INFO, "stopped");
    return 0;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

static int cmd_serve(int argc, char **argv)
{
    const char *file = getenv("ACKD_CONFIG");
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (is_help(argv[i])) {
            printf("usage: ackd serve [--config FILE]\n"
                   "FILE defaults to $ACKD_CONFIG; with neither, the built-in defaults and "
                   "the ACKD_* variables.\n");
            return 0;
        } else {
            fprintf(stderr, "ackd serve: unknown argument \"%s\"\nusage: ackd serve [--config FILE]\n",
                    argv[i]);
            return 2;
        }
    }
    ackd_config_t cfg;
    int rc = load_config(&cfg, file);
    if (rc)
        return rc;
    rc = serve(&cfg);
    ackd_config_free(&cfg);
    return rc;
}

static int cmd_config(int argc, char **argv)
{
    if (argc >= 1 && is_help(argv[argc - 1])) {
        printf("usage: ackd config check FILE\n");
        return 0;
    }
    if (argc != 2 || strcmp(argv[0], "check") != 0) {
        fprintf(stderr, "usage: ackd config check FILE\n");
        return 2;
    }
    ackd_config_t cfg;
    int rc = load_config(&cfg, argv[1]);
    if (rc)
        return rc;
    ackd_config_print(&cfg, stdout);
    ackd_config_free(&cfg);
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("ackd %s (libuv %s)\n", ACKD_VERSION, uv_version_string());
    return 0;
}

static const command_t commands[] = {
    {.name = "serve", .run = cmd_serve, .usage = "serve [--config FILE]   run the server"},
    {.name = "config", .run = cmd_config, .usage = "config check FILE       validate and print a configuration"},
    {.name = "version", .run = cmd_version, .usage = "version                 print the version"},
    {0},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ackd COMMAND [ARGS]\n\ncommands:\n");
    for (const command_t *c = commands; c->name; c++)
        fprintf(out, "  ackd %s\n", c->usage);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    if (is_help(argv[1])) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return cmd_version(0, NULL);
    for (const command_t *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0)
            return c->run(argc - 2, argv + 2);
    fprintf(stderr, "ackd: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
