/* config_test.c - tests of src/config: defaults, every type, every kind of
 * error message, [keys], ACKD_* overrides and the print round trip. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/error.h"
#include "base/log.h"
#include "config/config.h"
#include "../test.h"

static char err[8192];

static int load_env(ackd_config_t *c, const char *text, char *const *envp)
{
    return ackd_config_load_string(c, "ackd.conf", text, envp, err, sizeof err);
}

static int load(ackd_config_t *c, const char *text)
{
    return load_env(c, text, NULL);
}

/* Loads text, expects exactly the one error message want. */
#define OWN                                                                                      \
    "is ackd's own (/v1/tasks, /v1/queues, /problems, /healthz, /readyz, /metrics, /ui, "         \
    "/openapi.json, /debug); "                                                                     \
    "put the route under another path"

static int fails_with(const char *text, const char *want)
{
    ackd_config_t c;
    int rc = load(&c, text);
    if (rc != ACKD_EINVAL || strcmp(err, want) != 0) {
        printf("    want: %s\n    got:  %s (rc %d)\n", want, err, rc);
        if (rc == 0)
            ackd_config_free(&c);
        return 0;
    }
    return c.queues == NULL && c.server.listen == NULL; /* left empty */
}

#define PAYMENTS "[queue payments]\nupstream = http://127.0.0.1:9000\n"
#define HASH1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HASH2 "FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210FEDCBA9876543210"

TEST(config_defaults)
{
    ackd_config_t c;
    CHECK_INT(load(&c, NULL), 0);
    CHECK_STR(err, "");
    CHECK(c.file == NULL);
    CHECK_STR(c.server.listen, "127.0.0.1:8080");
    CHECK_STR(c.server.listen_host, "127.0.0.1");
    CHECK_INT(c.server.listen_port, 8080);
    CHECK_INT(c.server.log_level, ACKD_LOG_INFO);
    CHECK(c.server.access_log);
    CHECK_INT(c.server.max_request_line, 8192);
    CHECK_INT(c.server.max_header_size, 8192);
    CHECK_INT(c.server.max_headers, 100);
    CHECK_INT(c.server.max_headers_total, 32768);
    CHECK_INT(c.server.max_body, 1 << 20);
    CHECK_INT(c.server.head_timeout_ms, 10000);
    CHECK_INT(c.server.body_timeout_ms, 10000);
    CHECK_INT(c.server.keepalive_timeout_ms, 30000);
    CHECK_INT(c.server.max_connections, 10000);
    CHECK_INT(c.server.max_requests_per_connection, 1000);
    CHECK_INT(c.server.shutdown_grace_ms, 10000);
    CHECK_INT(c.server.max_wait_ms, 60000);
    CHECK_INT(c.server.idempotency_ttl_ms, 24 * 3600 * 1000);
    CHECK(!c.server.debug_endpoints);
    CHECK_STR(c.storage.path, "./data/ackd.db");
    CHECK_INT(c.storage.sync, ACKD_SYNC_FULL);
    CHECK(c.webhooks.secrets == NULL);
    CHECK(c.webhooks.allow_private == NULL);
    CHECK_INT(c.webhooks.timeout_ms, 10000);
    CHECK_STR(c.webhooks.schedule, "5s 5m 30m 2h 5h 10h 10h");
    CHECK_INT(c.nqueues, 0);
    CHECK_INT(c.nroutes, 0);
    CHECK_INT(c.nkeys, 0);
    ackd_config_free(&c);
}

TEST(config_queue_and_route_defaults)
{
    ackd_config_t c;
    CHECK_INT(load(&c, "[queue emails]\n\n[route post /api/process-payment]\nqueue = emails\n"), 0);
    CHECK_INT(c.nqueues, 1);
    const ackd_queue_conf_t *q = ackd_config_queue(&c, "emails");
    CHECK(q != NULL);
    CHECK(ackd_config_queue(&c, "nope") == NULL);
    CHECK_STR(q->name, "emails");
    CHECK_INT(q->line, 1);
    CHECK(q->upstream == NULL && q->upstream_path == NULL && q->callback_url == NULL);
    CHECK_INT(q->max_attempts, 5);
    CHECK_INT(q->retry_base_ms, 1000);
    CHECK_INT(q->retry_cap_ms, 300000);
    CHECK_INT(q->attempt_timeout_ms, 30000);
    CHECK_INT(q->connect_timeout_ms, 5000);
    CHECK_INT(q->deadline_ms, 0);
    CHECK_INT(q->retention_ms, 7LL * 86400000);
    CHECK_INT(q->concurrency, 256); /* a burst of due tasks is bounded */
    CHECK(q->rate == 0);
    CHECK_INT(q->max_result_size, 1 << 20);
    CHECK_INT(c.nroutes, 1);
    const ackd_route_conf_t *r = &c.routes[0];
    CHECK_STR(r->method, "POST");
    CHECK_STR(r->path, "/api/process-payment");
    CHECK_INT(r->line, 3);
    CHECK_STR(r->queue, "emails");
    CHECK_INT(r->mode, ACKD_MODE_AUTO);
    CHECK_INT(r->wait_ms, 2000);
    CHECK_INT(r->max_wait_ms, 60000);
    CHECK_INT(r->sync_timeout_ms, 30000);
    CHECK(r->allow_async);
    CHECK(r->callback_url == NULL);
    ackd_config_free(&c);
}

static const char *full_conf =
    "; every option, none at its default\n"
    "[server]\n"
    "listen = 0.0.0.0:9090\n"
    "log_level = warn\n"
    "access_log = no\n"
    "max_request_line = 16k\n"
    "max_header_size = 4096\n"
    "max_headers = 50\n"
    "max_headers_total = 1m\n"
    "max_body = 2m\n"
    "head_timeout = 5s\n"
    "body_timeout = 1500ms\n"
    "keepalive_timeout = 1m\n"
    "max_connections = 77\n"
    "max_requests_per_connection = 3\n"
    "shutdown_grace = 0\n"
    "max_wait = 2m\n"
    "idempotency_ttl = 7d\n"
    "debug_endpoints = true\n"
    "[storage]\n"
    "path = /var/lib/ackd/ackd.db\n"
    "sync = normal\n"
    "[webhooks]\n"
    "secrets = whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2VjcmV0\n"
    "allow_private = 10.0.0.0/8, 192.168.1.0/24 fd00::/8\n"
    "timeout = 3s\n"
    "schedule = \"1s 60s   1h\"\n"
    "[queue payments]\n"
    "upstream = https://pay.internal:8443/\n"
    "upstream_path = /charge\n"
    "max_attempts = 10\n"
    "retry_base = 250ms\n"
    "retry_cap = 1h\n"
    "attempt_timeout = 2m\n"
    "connect_timeout = 1s\n"
    "deadline = 1d\n"
    "retention = 30d\n"
    "concurrency = 8\n"
    "rate = 2.5\n"
    "max_result_size = 64k\n"
    "callback_url = https://hooks.example.com/ackd?x=1\n"
    "[queue emails]\n"
    "[route PUT /v1/orders/{id}]\n"
    "queue = payments\n"
    "mode = sync\n"
    "wait = 0\n"
    "max_wait = 10s\n"
    "sync_timeout = 45s\n"
    "allow_async = off\n"
    "callback_url = http://[::1]:7000/cb\n"
    "[keys]\n" HASH1 " = acme client\n" HASH2 " = acme worker payments, emails\n";

TEST(config_every_type)
{
    ackd_config_t c;
    CHECK_INT(load(&c, full_conf), 0);
    const ackd_server_conf_t *s = &c.server;
    CHECK_STR(s->listen, "0.0.0.0:9090");
    CHECK_STR(s->listen_host, "0.0.0.0");
    CHECK_INT(s->listen_port, 9090);
    CHECK_INT(s->log_level, ACKD_LOG_WARN);
    CHECK(!s->access_log);
    CHECK_INT(s->max_request_line, 16384);
    CHECK_INT(s->max_header_size, 4096);
    CHECK_INT(s->max_headers, 50);
    CHECK_INT(s->max_headers_total, 1 << 20);
    CHECK_INT(s->max_body, 2 << 20);
    CHECK_INT(s->head_timeout_ms, 5000);
    CHECK_INT(s->body_timeout_ms, 1500);
    CHECK_INT(s->keepalive_timeout_ms, 60000);
    CHECK_INT(s->max_connections, 77);
    CHECK_INT(s->max_requests_per_connection, 3);
    CHECK_INT(s->shutdown_grace_ms, 0);
    CHECK_INT(s->max_wait_ms, 120000);
    CHECK_INT(s->idempotency_ttl_ms, 7LL * 86400000);
    CHECK(s->debug_endpoints);
    CHECK_STR(c.storage.path, "/var/lib/ackd/ackd.db");
    CHECK_INT(c.storage.sync, ACKD_SYNC_NORMAL);
    CHECK_STR(c.webhooks.secrets, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2VjcmV0");
    CHECK_STR(c.webhooks.allow_private, "10.0.0.0/8 192.168.1.0/24 fd00::/8");
    CHECK_INT(c.webhooks.timeout_ms, 3000);
    CHECK_STR(c.webhooks.schedule, "1s 1m 1h");
    CHECK_INT(c.nqueues, 2);
    const ackd_queue_conf_t *q = ackd_config_queue(&c, "payments");
    CHECK(q != NULL);
    CHECK_STR(q->upstream, "https://pay.internal:8443");
    CHECK_STR(q->upstream_path, "/charge");
    CHECK_INT(q->max_attempts, 10);
    CHECK_INT(q->retry_base_ms, 250);
    CHECK_INT(q->retry_cap_ms, 3600000);
    CHECK_INT(q->attempt_timeout_ms, 120000);
    CHECK_INT(q->connect_timeout_ms, 1000);
    CHECK_INT(q->deadline_ms, 86400000);
    CHECK_INT(q->retention_ms, 30LL * 86400000);
    CHECK_INT(q->concurrency, 8);
    CHECK(q->rate == 2.5);
    CHECK_INT(q->max_result_size, 65536);
    CHECK_STR(q->callback_url, "https://hooks.example.com/ackd?x=1");
    CHECK(ackd_config_queue(&c, "emails")->upstream == NULL);
    const ackd_route_conf_t *r = &c.routes[0];
    CHECK_STR(r->method, "PUT");
    CHECK_STR(r->path, "/v1/orders/{id}");
    CHECK_STR(r->queue, "payments");
    CHECK_INT(r->mode, ACKD_MODE_SYNC);
    CHECK_INT(r->wait_ms, 0);
    CHECK_INT(r->max_wait_ms, 10000);
    CHECK_INT(r->sync_timeout_ms, 45000);
    CHECK(!r->allow_async);
    CHECK_STR(r->callback_url, "http://[::1]:7000/cb");
    CHECK_INT(c.nkeys, 2);
    CHECK_STR(c.keys[0].hash_hex, HASH1);
    CHECK_STR(c.keys[0].tenant, "acme");
    CHECK_INT(c.keys[0].role, ACKD_ROLE_CLIENT);
    CHECK(c.keys[0].queues == NULL);
    CHECK_INT(c.keys[0].line, 52);
    CHECK_STR(c.keys[1].hash_hex,
              "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
    CHECK_INT(c.keys[1].role, ACKD_ROLE_WORKER);
    CHECK_STR(c.keys[1].queues[0], "payments");
    CHECK_STR(c.keys[1].queues[1], "emails");
    CHECK(c.keys[1].queues[2] == NULL);
    ackd_config_free(&c);
}

TEST(config_listen_forms)
{
    ackd_config_t c;
    CHECK_INT(load(&c, "[server]\nlisten = [::1]:8443\n"), 0);
    CHECK_STR(c.server.listen_host, "::1");
    CHECK_INT(c.server.listen_port, 8443);
    ackd_config_free(&c);
    CHECK_INT(load(&c, "[server]\nlisten = localhost:0\n"), 0);
    CHECK_STR(c.server.listen_host, "localhost");
    CHECK_INT(c.server.listen_port, 0);
    ackd_config_free(&c);
    const char *bad[] = {"8080", ":8080", "host:", "host:65536", "::1:80", "[::1]", "[zz]:80",
                         "a b:80", "host:-1", "host:80x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], want[256];
        snprintf(text, sizeof text, "[server]\nlisten = %s\n", bad[i]);
        snprintf(want, sizeof want,
                 "ackd.conf:2: [server] listen: expected host:port, got \"%s\"", bad[i]);
        CHECK(fails_with(text, want));
    }
}

TEST(config_file_syntax)
{
    ackd_config_t c;
    /* BOM, CRLF, indentation, comments, ':' separator, inline comments. */
    const char *text = "\xEF\xBB\xBF[server]\r\n"
                       "  # indented comment\r\n"
                       "\tlisten : 127.0.0.1:1234 ; inline comment\r\n"
                       "   max_headers = 7\r\n"
                       "[ queue   q1 ]   ; trailing comment\n"
                       "max_attempts=2";
    CHECK_INT(load(&c, text), 0);
    CHECK_INT(c.server.listen_port, 1234);
    CHECK_INT(c.server.max_headers, 7);
    CHECK_INT(c.queues[0].max_attempts, 2);
    CHECK_INT(c.queues[0].line, 5);
    ackd_config_free(&c);
}

TEST(config_error_messages_per_type)
{
    CHECK(fails_with(PAYMENTS "max_attempts = lots\n",
                     "ackd.conf:3: [queue payments] max_attempts: expected an integer 1..1000, "
                     "got \"lots\""));
    CHECK(fails_with(PAYMENTS "max_attempts = 1001\n",
                     "ackd.conf:3: [queue payments] max_attempts: expected an integer 1..1000, "
                     "got \"1001\""));
    CHECK(fails_with("[server]\nhead_timeout = 2h\n",
                     "ackd.conf:2: [server] head_timeout: expected a duration like 250ms, 30s, "
                     "5m (100ms..1h), got \"2h\""));
    CHECK(fails_with("[server]\nhead_timeout = 10 s\n",
                     "ackd.conf:2: [server] head_timeout: expected a duration like 250ms, 30s, "
                     "5m (100ms..1h), got \"10 s\""));
    CHECK(fails_with(PAYMENTS "deadline = soon\n",
                     "ackd.conf:3: [queue payments] deadline: expected a duration like 250ms, "
                     "30s, 5m (0..30d), got \"soon\""));
    CHECK(fails_with("[server]\nmax_body = 2g\n",
                     "ackd.conf:2: [server] max_body: expected a size like 64k, 1m (0..1g), "
                     "got \"2g\""));
    CHECK(fails_with("[server]\nmax_request_line = 100\n",
                     "ackd.conf:2: [server] max_request_line: expected a size like 64k, 1m "
                     "(256..1m), got \"100\""));
    CHECK(fails_with("[server]\naccess_log = maybe\n",
                     "ackd.conf:2: [server] access_log: expected on or off (or true/false, "
                     "yes/no, 1/0), got \"maybe\""));
    CHECK(fails_with("[storage]\nsync = always\n",
                     "ackd.conf:2: [storage] sync: expected one of full|normal, got \"always\""));
    CHECK(fails_with("[server]\nlog_level = loud\n",
                     "ackd.conf:2: [server] log_level: expected one of "
                     "debug|info|warn|error|off, got \"loud\""));
    CHECK(fails_with(PAYMENTS "rate = -1\n",
                     "ackd.conf:3: [queue payments] rate: expected a number 0..1000000, got "
                     "\"-1\""));
    CHECK(fails_with(PAYMENTS "rate = nan\n",
                     "ackd.conf:3: [queue payments] rate: expected a number 0..1000000, got "
                     "\"nan\""));
    CHECK(fails_with(PAYMENTS "rate = 0x10\n",
                     "ackd.conf:3: [queue payments] rate: expected a number 0..1000000, got "
                     "\"0x10\""));
    CHECK(fails_with("[storage]\npath =\n",
                     "ackd.conf:2: [storage] path: expected a file path, got \"\""));
    CHECK(fails_with("[queue q]\nupstream = ftp://x\n",
                     "ackd.conf:2: [queue q] upstream: expected an origin like http://host:port "
                     "or https://host, got \"ftp://x\""));
    CHECK(fails_with("[queue q]\nupstream = http://x/path\n",
                     "ackd.conf:2: [queue q] upstream: expected an origin like http://host:port "
                     "or https://host, got \"http://x/path\""));
    CHECK(fails_with("[queue q]\nupstream_path = charge\n",
                     "ackd.conf:2: [queue q] upstream_path: expected a path starting with /, got "
                     "\"charge\""));
    CHECK(fails_with("[queue q]\ncallback_url = https://\n",
                     "ackd.conf:2: [queue q] callback_url: expected an http:// or https:// URL, "
                     "got \"https://\""));
    CHECK(fails_with("[webhooks]\nsecrets = whsec_abc\n",
                     "ackd.conf:2: [webhooks] secrets: expected space-separated whsec_<base64> "
                     "secrets, got \"whsec_abc\""));
    CHECK(fails_with("[webhooks]\nsecrets = c2VjcmV0\n",
                     "ackd.conf:2: [webhooks] secrets: expected space-separated whsec_<base64> "
                     "secrets, got \"c2VjcmV0\""));
    CHECK(fails_with("[webhooks]\nallow_private = 10.0.0.0/33\n",
                     "ackd.conf:2: [webhooks] allow_private: expected CIDRs like 10.0.0.0/8 "
                     "fd00::/8, separated by spaces or commas, got \"10.0.0.0/33\""));
    CHECK(fails_with("[webhooks]\nallow_private = 10.0.0.0\n",
                     "ackd.conf:2: [webhooks] allow_private: expected CIDRs like 10.0.0.0/8 "
                     "fd00::/8, separated by spaces or commas, got \"10.0.0.0\""));
    CHECK(fails_with("[webhooks]\nschedule = 5s 5x\n",
                     "ackd.conf:2: [webhooks] schedule: expected 1..50 space-separated durations "
                     "like 5s 5m 30m (0..30d each), got \"5s 5x\""));
    CHECK(fails_with("[server]\nlisten = \"a\tb\"\n",
                     "ackd.conf:2: [server] listen: expected host:port, got \"a\\x09b\""));
}

TEST(config_error_structure)
{
    CHECK(fails_with("[server]\nlisne = 1\n", "ackd.conf:2: [server] lisne: unknown option"));
    CHECK(fails_with("[server]\n\n[serve]\nlisten = x\n",
                     "ackd.conf:3: [serve]: unknown section; expected [server], [storage], "
                     "[webhooks], [queue NAME], [route METHOD /path] or [keys]"));
    CHECK(fails_with("listen = 1:2\n",
                     "ackd.conf:1: listen: option outside any section (put it under [server], "
                     "...)"));
    CHECK(fails_with("[server]\njust words\n",
                     "ackd.conf:2: expected key = value or [section], got \"just words\""));
    CHECK(fails_with("[server\n", "ackd.conf:1: expected ] at the end of the section name"));
    CHECK(fails_with("[server] x\n", "ackd.conf:1: unexpected text after ]"));
    CHECK(fails_with("[server]\n= 5\n", "ackd.conf:2: expected a name before ="));
    CHECK(fails_with("[server]\nmax_headers ;x= 5\n",
                     "ackd.conf:2: expected key = value (\" ;\" starts a comment)"));
    CHECK(fails_with("[server]\nmax_headers = 5\nmax_headers = 6\n",
                     "ackd.conf:3: [server] max_headers: set twice (first on line 2)"));
    CHECK(fails_with("[queue a]\n[queue a]\n",
                     "ackd.conf:2: [queue a]: duplicate queue (first on line 1)"));
    CHECK(fails_with("[queue bad/name]\n",
                     "ackd.conf:1: [queue bad/name]: expected a queue name of 1..64 of "
                     "A-Za-z0-9_.- (not . or ..)"));
    CHECK(fails_with("[queue ..]\n", "ackd.conf:1: [queue ..]: expected a queue name of 1..64 "
                                     "of A-Za-z0-9_.- (not . or ..)"));
    CHECK(fails_with("[queue .]\n", "ackd.conf:1: [queue .]: expected a queue name of 1..64 "
                                    "of A-Za-z0-9_.- (not . or ..)"));
    {
        ackd_config_t ok;
        CHECK_INT(load(&ok, "[queue ...]\n[queue .a]\n"), 0); /* dots that are not a segment */
        ackd_config_free(&ok);
    }
    CHECK(fails_with("[queue a]\n[route POST /x/{id}]\nqueue = a\n[route post /x/{other}]\n",
                     "ackd.conf:4: [route POST /x/{other}]: duplicate route (first on line 2)"));
    CHECK(fails_with("[queue a]\nupstream = http://127.0.0.1:1\n[route GET /x/{id}]\nqueue = a\n"
                     "upstream_path = /in/{id}/{idd}\n",
                     "ackd.conf:3: [route GET /x/{id}] upstream_path: {idd} is not a parameter "
                     "of /x/{id}"));
    CHECK(fails_with("[queue a]\nupstream = http://127.0.0.1:1\n[route GET /x/{id}]\nqueue = a\n"
                     "upstream_path = /in/{id\n",
                     "ackd.conf:3: [route GET /x/{id}] upstream_path: {id is not a parameter "
                     "of /x/{id}"));
    CHECK(fails_with("[queue a]\n[route GET /x/{id}]\nqueue = a\nupstream_path = /in/{id}\n",
                     "ackd.conf:2: [route GET /x/{id}] upstream_path: [queue a] has no upstream "
                     "(its workers pull)"));
    {
        ackd_config_t ok;
        CHECK_INT(load(&ok, "[queue a]\nupstream = http://127.0.0.1:1\n[route GET /x/{id}/{i}]\n"
                            "queue = a\nupstream_path = /in/{i}/{id}/{i}\n"), 0);
        CHECK_STR(ok.routes[0].upstream_path, "/in/{i}/{id}/{i}");
        ackd_config_free(&ok);
    }
    CHECK(fails_with("[queue a]\n[route GET /x/{id}/y/{id}]\nqueue = a\n",
                     "ackd.conf:2: [route GET /x/{id}/y/{id}]: the parameter {id} appears twice"));
    {
        ackd_config_t ok;
        CHECK_INT(load(&ok, "[queue a]\n[route GET /x/{id}/{ids}/{i}]\nqueue = a\n"), 0);
        ackd_config_free(&ok);
    }
    CHECK(fails_with("[queue a]\n[route GET /v1/tasks]\nqueue = a\n",
                     "ackd.conf:2: [route GET /v1/tasks]: /v1/tasks is ackd's own (/v1/tasks, "
                     "/v1/queues, /problems, /healthz, /readyz, /metrics, /ui, /openapi.json, "
                     "/debug); put the route under another path"));
    static const char *const own[][2] = {
        {"[route POST /problems/{x}]\n", "ackd.conf:1: [route POST /problems/{x}]: /problems "},
        {"[route GET /metrics]\n", "ackd.conf:1: [route GET /metrics]: /metrics "},
        {"[route PUT /ui]\n", "ackd.conf:1: [route PUT /ui]: /ui "},
        {"[route GET /openapi.json]\n", "ackd.conf:1: [route GET /openapi.json]: /openapi.json "},
        {"[route POST /v1/queues/{q}/tasks]\n", "ackd.conf:1: [route POST /v1/queues/{q}/tasks]: "
                                                "/v1/queues "},
    };
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        char want[512];
        snprintf(want, sizeof want, "%s%s", own[i][1], OWN);
        CHECK(fails_with(own[i][0], want));
    }
    /* only the whole first segment is ackd's */
    ackd_config_t c;
    CHECK(load(&c, "[queue a]\n[route GET /v1/orders]\nqueue = a\n[route GET /api/v1]\nqueue = a\n"
                   "[route GET /uix]\nqueue = a\n[route GET /]\nqueue = a\n"
                   "[route GET /v1/tasksx]\nqueue = a\n") == 0);
    CHECK(c.nroutes == 5);
    ackd_config_free(&c);
    CHECK(fails_with("[route FETCH /x]\n",
                     "ackd.conf:1: [route FETCH /x]: expected a method GET|POST|PUT|PATCH|DELETE"));
    CHECK(fails_with("[route GET x]\n",
                     "ackd.conf:1: [route GET x]: expected a path like /api/orders/{id} "
                     "(segments of URL characters or a whole {param})"));
    CHECK(fails_with("[route GET /a/{id]\n",
                     "ackd.conf:1: [route GET /a/{id]: expected a path like /api/orders/{id} "
                     "(segments of URL characters or a whole {param})"));
    /* A long line: inih's line buffer holds 198 characters. */
    char text[512] = "[server]\nlisten = ";
    memset(text + strlen(text), 'a', 250);
    CHECK(fails_with(text, "ackd.conf:2: line is longer than 198 characters"));
}

TEST(config_cross_checks)
{
    CHECK(fails_with("[queue a]\n\n[route POST /api/pay]\nmode = sync\n",
                     "ackd.conf:3: [route POST /api/pay] queue: missing; a route needs queue = "
                     "NAME"));
    CHECK(fails_with("[route POST /api/pay]\nqueue = payments\n",
                     "ackd.conf:1: [route POST /api/pay] queue: no [queue payments] is "
                     "configured"));
    CHECK(fails_with("[queue a]\nretry_cap = 1s\nretry_base = 2s\n",
                     "ackd.conf:3: [queue a] retry_base: 2s is more than retry_cap 1s"));
    CHECK(fails_with("[queue a]\nretry_base = 10m\n",
                     "ackd.conf:2: [queue a] retry_base: 10m is more than retry_cap 5m"));
    CHECK(fails_with("[queue a]\n[route GET /a]\nqueue = a\nwait = 2m\n",
                     "ackd.conf:4: [route GET /a] wait: 2m is more than max_wait 1m"));
    /* The route may come before its queue. */
    ackd_config_t c;
    CHECK_INT(load(&c, "[route GET /a]\nqueue = late\n[queue late]\n"), 0);
    ackd_config_free(&c);
}

TEST(config_keys_section)
{
    CHECK(fails_with("[keys]\nabc = t client\n",
                     "ackd.conf:2: [keys] abc: expected the SHA-256 of the key as 64 hex "
                     "characters"));
    CHECK(fails_with("[keys]\n" HASH1 " = t\n",
                     "ackd.conf:2: [keys] " HASH1 ": expected \"<tenant> <role> [queue,...]\", "
                     "got \"t\""));
    CHECK(fails_with("[keys]\n" HASH1 " = t root\n",
                     "ackd.conf:2: [keys] " HASH1 ": role: expected one of client|worker|admin, "
                     "got \"root\""));
    CHECK(fails_with("[keys]\n" HASH1 " = t/x admin\n",
                     "ackd.conf:2: [keys] " HASH1 ": tenant: expected 1..64 of A-Za-z0-9_.-, "
                     "got \"t/x\""));
    CHECK(fails_with("[keys]\n" HASH1 " = t client q\n",
                     "ackd.conf:2: [keys] " HASH1 ": only worker keys list queues, got \"t "
                     "client q\""));
    CHECK(fails_with("[keys]\n" HASH1 " = t worker\n",
                     "ackd.conf:2: [keys] " HASH1 ": a worker key needs the queues it may "
                     "claim, like \"<tenant> worker emails,reports\""));
    CHECK(fails_with("[keys]\n" HASH1 " = t worker nope\n",
                     "ackd.conf:2: [keys] " HASH1 ": no [queue nope] is configured"));
    CHECK(fails_with("[keys]\n" HASH1 " = t admin\n" HASH1 " = u admin\n",
                     "ackd.conf:3: [keys] " HASH1 ": duplicate key (first on line 2)"));
    ackd_config_t c;
    CHECK_INT(load(&c, "[keys]\n" HASH2 " = ops admin\n[queue a]\n[queue b]\n[keys]\n" HASH1
                       " = w1 worker a,b\n"),
              0);
    CHECK_INT(c.nkeys, 2);
    CHECK_INT(c.keys[0].role, ACKD_ROLE_ADMIN);
    CHECK_STR(c.keys[0].hash_hex,
              "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
    CHECK_STR(c.keys[1].queues[1], "b");
    CHECK_INT(c.keys[1].line, 6);
    ackd_config_free(&c);
}

TEST(config_many_problems)
{
    char text[4096] = "[server]\n";
    for (int i = 0; i < 25; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "bogus%d = 1\n", i);
    ackd_config_t c;
    CHECK_INT(load(&c, text), ACKD_EINVAL);
    int lines = 1;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, 21);
    CHECK(strncmp(err, "ackd.conf:2: [server] bogus0: unknown option\n", 45) == 0);
    CHECK(strstr(err, "ackd.conf:21: [server] bogus19: unknown option\n(5 more problems not shown)"));
}

TEST(config_env_overrides)
{
    char *env[] = {
        "PATH=/usr/bin",
        "ACKD_CONFIG=/etc/ackd.conf", /* not a setting prefix: ignored */
        "ACKD_SERVER_LISTEN=[::]:7000",
        "ACKD_SERVER_MAX_REQUESTS_PER_CONNECTION=9",
        "ACKD_STORAGE_PATH=/tmp/x.db",
        "ACKD_WEBHOOKS_TIMEOUT=250ms",
        "ACKD_QUEUE_PAY_MENTS_V2_MAX_ATTEMPTS=3",
        "ACKD_QUEUE_PAY_MENTS_V2_UPSTREAM=",
        "ACKD_ROUTE_POST_API_PROCESS_PAYMENT_MODE=async",
        "ACKD_ROUTE_GET_V1_ORDERS__ID__WAIT=1s",
        NULL,
    };
    ackd_config_t c;
    CHECK_INT(load_env(&c,
                       "[queue pay-ments.v2]\nupstream = http://a:1\nmax_attempts = 7\n"
                       "[route POST /api/process-payment]\nqueue = pay-ments.v2\n"
                       "[route GET /v1/orders/{id}]\nqueue = pay-ments.v2\n",
                       env),
              0);
    CHECK_STR(c.server.listen_host, "::");
    CHECK_INT(c.server.listen_port, 7000);
    CHECK_INT(c.server.max_requests_per_connection, 9);
    CHECK_STR(c.storage.path, "/tmp/x.db");
    CHECK_INT(c.webhooks.timeout_ms, 250);
    CHECK_INT(c.queues[0].max_attempts, 3);
    CHECK(c.queues[0].upstream == NULL);
    CHECK_INT(c.routes[0].mode, ACKD_MODE_ASYNC);
    CHECK_INT(c.routes[1].wait_ms, 1000);
    ackd_config_free(&c);

    /* Without a file, the server still takes its variables. */
    char *env2[] = {"ACKD_SERVER_LOG_LEVEL=debug", NULL};
    CHECK_INT(ackd_config_load(&c, NULL, env2, err, sizeof err), 0);
    CHECK_INT(c.server.log_level, ACKD_LOG_DEBUG);
    ackd_config_free(&c);
}

TEST(config_env_errors)
{
    ackd_config_t c;
    char *bad_value[] = {"ACKD_SERVER_LISTEN=nowhere", NULL};
    CHECK_INT(load_env(&c, NULL, bad_value), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_SERVER_LISTEN: expected host:port, got \"nowhere\"");

    char *typo[] = {"ACKD_SERVER_LISTN=1.2.3.4:5", NULL};
    CHECK_INT(load_env(&c, NULL, typo), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_SERVER_LISTN: unknown variable, [server] has no such option");

    char *no_queue[] = {"ACKD_QUEUE_EMAILS_RATE=5", NULL};
    CHECK_INT(load_env(&c, "[queue other]\n", no_queue), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_QUEUE_EMAILS_RATE: matches no option of a [queue NAME] declared in the "
                   "file");

    char *bad_queue_value[] = {"ACKD_QUEUE_EMAILS_RATE=fast", NULL};
    CHECK_INT(load_env(&c, "[queue emails]\n", bad_queue_value), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_QUEUE_EMAILS_RATE: expected a number 0..1000000, got \"fast\"");

    char *route_typo[] = {"ACKD_ROUTE_POST_X_MODDE=sync", NULL};
    CHECK_INT(load_env(&c, "[queue q]\n[route POST /x]\nqueue = q\n", route_typo), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_ROUTE_POST_X_MODDE: matches no option of a [route METHOD /path] "
                   "declared in the file");

    char *ambiguous[] = {"ACKD_QUEUE_A_B_RATE=1", NULL};
    CHECK_INT(load_env(&c, "[queue a-b]\n[queue a.b]\n", ambiguous), ACKD_EINVAL);
    CHECK_STR(err, "ACKD_QUEUE_A_B_RATE: ambiguous, names an option of [queue a-b] and [queue a.b]");

    /* Cross checks see the overridden values. */
    char *cross[] = {"ACKD_QUEUE_Q_RETRY_CAP=100ms", NULL};
    CHECK_INT(load_env(&c, "[queue q]\n", cross), ACKD_EINVAL);
    CHECK_STR(err, "ackd.conf:1: [queue q] retry_base: 1s is more than retry_cap 100ms");
}

static char *print_to_string(const ackd_config_t *c)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    ackd_config_print(c, f);
    fclose(f);
    return s;
}

TEST(config_print_round_trip)
{
    const char *texts[] = {NULL, full_conf, "[storage]\npath = \"\"x\"\"\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        ackd_config_t a, b;
        CHECK_INT(load(&a, texts[i]), 0);
        char *printed = print_to_string(&a);
        CHECK(strstr(printed, "[server]\n# address to listen on"));
        if (i == 1)
            CHECK(strstr(printed, "\n[keys]\n# <sha256 hex of the key> = <tenant> "
                                  "<client|worker|admin> [queue,...]\n" HASH1 " = acme client\n"));
        int rc = ackd_config_load_string(&b, "printed", printed, NULL, err, sizeof err);
        if (rc)
            printf("    %s\n", err);
        CHECK_INT(rc, 0);
        char *again = print_to_string(&b);
        CHECK_STR(again, printed);
        CHECK(memcmp(&a.server.max_request_line, &b.server.max_request_line,
                     sizeof a.server - offsetof(ackd_server_conf_t, max_request_line)) == 0);
        CHECK_INT(a.nqueues, b.nqueues);
        for (size_t j = 0; j < a.nqueues; j++) {
            CHECK(a.queues[j].rate == b.queues[j].rate);
            CHECK_INT(a.queues[j].retry_cap_ms, b.queues[j].retry_cap_ms);
        }
        CHECK_INT(a.nroutes, b.nroutes);
        CHECK_INT(a.nkeys, b.nkeys);
        free(printed);
        free(again);
        ackd_config_free(&a);
        ackd_config_free(&b);
    }
}

TEST(config_rate_prints_exactly)
{
    ackd_config_t a, b;
    CHECK_INT(load(&a, "[queue q]\nrate = 0.1\n[queue r]\nrate = 333333.33333333331\n"), 0);
    char *printed = print_to_string(&a);
    CHECK(strstr(printed, "rate = 0.1\n"));
    CHECK_INT(ackd_config_load_string(&b, "p", printed, NULL, err, sizeof err), 0);
    CHECK(a.queues[0].rate == b.queues[0].rate);
    CHECK(a.queues[1].rate == b.queues[1].rate);
    free(printed);
    ackd_config_free(&a);
    ackd_config_free(&b);
}

TEST(config_load_file)
{
    char path[] = "/tmp/ackd_config_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "[server]\nmax_headers = 12\n[queue q]\nmax_attempts = 0\n";
    CHECK_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    ackd_config_t c;
    CHECK_INT(ackd_config_load(&c, path, NULL, err, sizeof err), ACKD_EINVAL);
    char want[256];
    snprintf(want, sizeof want,
             "%s:4: [queue q] max_attempts: expected an integer 1..1000, got \"0\"", path);
    CHECK_STR(err, want);
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, text, 26), 26);
    close(fd);
    CHECK_INT(ackd_config_load(&c, path, NULL, err, sizeof err), 0);
    CHECK_STR(c.file, path);
    CHECK_INT(c.server.max_headers, 12);
    ackd_config_free(&c);
    unlink(path);
    CHECK(ackd_config_load(&c, "/nonexistent/ackd.conf", NULL, err, sizeof err) != 0);
    CHECK_STR(err, "/nonexistent/ackd.conf: cannot open: No such file or directory");
}

TEST(config_err_truncates_safely)
{
    char small[16];
    ackd_config_t c;
    CHECK_INT(ackd_config_load_string(&c, "ackd.conf", "[nope]\n", NULL, small, sizeof small),
              ACKD_EINVAL);
    CHECK_STR(small, "ackd.conf:1: [n");
}
