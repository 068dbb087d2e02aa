/* options.c - every configuration option, one row each, and how each type of
 * value is read, checked and written back (see options.h). Adding an option
 * is adding a row here and a field in config.h; parsing, ACKD_* overrides,
 * bounds and `ackd config print` follow from the row. */
#include "config/options.h"

#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/log.h"
#include "base/units.h"
#include "config/checks.h"
#include "config/config.h"

#define MS 1LL
#define SEC (1000 * MS)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define KIB 1024LL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* Enum fields are written through an int. */
_Static_assert(sizeof(ackd_sync_mode_t) == sizeof(int), "enum fields are int-sized");
_Static_assert(sizeof(ackd_route_mode_t) == sizeof(int), "enum fields are int-sized");
/* log_level's choices are in ACKD_LOG_* order. */
_Static_assert(ACKD_LOG_DEBUG == 0 && ACKD_LOG_OFF == 4, "log levels are 0..4");
_Static_assert(ACKD_MODE_SYNC == 0 && ACKD_MODE_ASYNC == 1 && ACKD_MODE_AUTO == 2, "mode order");
_Static_assert(ACKD_SYNC_FULL == 0 && ACKD_SYNC_NORMAL == 1, "sync order");

#define SRV(f) .section = ACKD_CONFIG_SERVER, .offset = offsetof(ackd_server_conf_t, f)
#define STO(f) .section = ACKD_CONFIG_STORAGE, .offset = offsetof(ackd_storage_conf_t, f)
#define WH(f) .section = ACKD_CONFIG_WEBHOOKS, .offset = offsetof(ackd_webhooks_conf_t, f)
#define Q(f) .section = ACKD_CONFIG_QUEUE, .offset = offsetof(ackd_queue_conf_t, f)
#define RT(f) .section = ACKD_CONFIG_ROUTE, .offset = offsetof(ackd_route_conf_t, f)
#define STR .type = ACKD_CONFIG_STRING
#define INT .type = ACKD_CONFIG_INT
#define DUR .type = ACKD_CONFIG_DURATION
#define SIZE .type = ACKD_CONFIG_SIZE
#define BOOL .type = ACKD_CONFIG_BOOL
#define ENUM .type = ACKD_CONFIG_ENUM
#define URL .check = ackd_config_check_url, .form = "an http:// or https:// URL"

/* clang-format off */
const ackd_config_opt_t ackd_config_opts[] = {
    {SRV(listen), .name = "listen", .type = ACKD_CONFIG_LISTEN, .def = "127.0.0.1:8080", .doc = "address to listen on, host:port (IPv6 as [::1]:8080)"},
    {SRV(log_level), .name = "log_level", ENUM, .choices = "debug|info|warn|error|off", .def = "info", .doc = "least severe log level written to stderr"},
    {SRV(access_log), .name = "access_log", BOOL, .def = "on", .doc = "one info log line per request"},
    {SRV(max_request_line), .name = "max_request_line", SIZE, .min = 256, .max = MIB, .def = "8k", .doc = "longest request line; 414 beyond"},
    {SRV(max_header_size), .name = "max_header_size", SIZE, .min = 256, .max = MIB, .def = "8k", .doc = "longest single header field line; 431 beyond"},
    {SRV(max_headers), .name = "max_headers", INT, .min = 1, .max = 10000, .def = "100", .doc = "most header fields in one request; 431 beyond"},
    {SRV(max_headers_total), .name = "max_headers_total", SIZE, .min = KIB, .max = 16 * MIB, .def = "32k", .doc = "bytes of all header fields of one request; 431 beyond"},
    {SRV(max_body), .name = "max_body", SIZE, .min = 0, .max = GIB, .def = "1m", .doc = "largest request body; 413 beyond"},
    {SRV(head_timeout_ms), .name = "head_timeout", DUR, .min = 100 * MS, .max = HOUR, .def = "10s", .doc = "time to receive a whole request head; 408 beyond"},
    {SRV(body_timeout_ms), .name = "body_timeout", DUR, .min = 100 * MS, .max = HOUR, .def = "10s", .doc = "longest idle gap while reading a body; 408 beyond"},
    {SRV(keepalive_timeout_ms), .name = "keepalive_timeout", DUR, .min = 100 * MS, .max = HOUR, .def = "30s", .doc = "idle time between requests before a connection is closed"},
    {SRV(max_connections), .name = "max_connections", INT, .min = 1, .max = 1000000, .def = "10000", .doc = "open connections; new ones get 503 and are closed beyond"},
    {SRV(max_requests_per_connection), .name = "max_requests_per_connection", INT, .min = 1, .max = 1000000, .def = "1000", .doc = "requests served on one connection before it is closed"},
    {SRV(shutdown_grace_ms), .name = "shutdown_grace", DUR, .min = 0, .max = 10 * MIN, .def = "10s", .doc = "time in-flight requests get after SIGTERM"},
    {SRV(max_wait_ms), .name = "max_wait", DUR, .min = SEC, .max = HOUR, .def = "60s", .doc = "cap on any client wait (long polls, Prefer: wait)"},
    {SRV(idempotency_ttl_ms), .name = "idempotency_ttl", DUR, .min = SEC, .max = 30 * DAY, .def = "24h", .doc = "how long an Idempotency-Key maps to its task"},
    {SRV(debug_endpoints), .name = "debug_endpoints", BOOL, .def = "off", .doc = "serve /debug/... test aids; keep off in production"},

    {STO(path), .name = "path", STR, .min = 1, .form = "a file path", .def = "./data/ackd.db", .doc = "SQLite database file"},
    {STO(sync), .name = "sync", ENUM, .choices = "full|normal", .def = "full", .doc = "full: fsync every commit; normal: WAL without fsync (may lose recent tasks on power loss)"},

    {WH(secrets), .name = "secrets", STR, .check = ackd_config_check_secrets, .form = "space-separated whsec_<base64> secrets", .doc = "signing secrets, space-separated; each signs, so receivers with any of them verify (rotation)"},
    {WH(tenant_secrets), .name = "tenant_secrets", STR, .check = ackd_config_check_tenant_secrets, .form = "space-separated tenant:whsec_<base64> pairs", .doc = "a tenant's own signing secrets (several per tenant for rotation); a queue's webhook_secrets win"},
    {WH(allow_private), .name = "allow_private", STR, .check = ackd_config_check_cidrs, .form = "CIDRs like 10.0.0.0/8 fd00::/8, separated by spaces or commas", .doc = "CIDRs callbacks may target although private, loopback or link-local"},
    {WH(timeout_ms), .name = "timeout", DUR, .min = 100 * MS, .max = 5 * MIN, .def = "10s", .doc = "total time of one webhook delivery try"},
    {WH(schedule), .name = "schedule", STR, .min = 1, .check = ackd_config_check_schedule, .form = "1..50 space-separated durations like 5s 5m 30m (0..30d each)", .def = "5s 5m 30m 2h 5h 10h 10h", .doc = "delays between delivery tries; one try more than delays"},

    {Q(upstream), .name = "upstream", STR, .check = ackd_config_check_origin, .form = "an origin like http://host:port or https://host", .doc = "push: backend origin tasks are sent to; unset: workers pull"},
    {Q(upstream_path), .name = "upstream_path", STR, .check = ackd_config_check_abs_path, .form = "a path starting with /", .doc = "push: path sent upstream instead of the client's path"},
    {Q(max_attempts), .name = "max_attempts", INT, .min = 1, .max = 1000, .def = "5", .doc = "attempts before a task fails"},
    {Q(retry_base_ms), .name = "retry_base", DUR, .min = 10 * MS, .max = HOUR, .def = "1s", .doc = "first retry delay; doubles per attempt, with full jitter"},
    {Q(retry_cap_ms), .name = "retry_cap", DUR, .min = 10 * MS, .max = 30 * DAY, .def = "5m", .doc = "longest retry delay"},
    {Q(attempt_timeout_ms), .name = "attempt_timeout", DUR, .min = 100 * MS, .max = DAY, .def = "30s", .doc = "push: total time of one upstream call; pull: default lease"},
    {Q(connect_timeout_ms), .name = "connect_timeout", DUR, .min = 10 * MS, .max = 5 * MIN, .def = "5s", .doc = "push: TCP connect timeout"},
    {Q(deadline_ms), .name = "deadline", DUR, .min = 0, .max = 30 * DAY, .def = "0", .doc = "a task fails this long after creation; 0: no deadline"},
    {Q(retention_ms), .name = "retention", DUR, .min = SEC, .max = 365 * DAY, .def = "7d", .doc = "finished tasks and their results are purged after this"},
    {Q(concurrency), .name = "concurrency", INT, .min = 0, .max = 100000, .def = "256", .doc = "push: upstream calls in flight; 0: unlimited (10 000)"},
    {Q(rate), .name = "rate", .type = ACKD_CONFIG_DOUBLE, .min = 0, .max = 1000000, .def = "0", .doc = "push: upstream calls per second; 0: unlimited"},
    {Q(max_result_size), .name = "max_result_size", SIZE, .min = 0, .max = 64 * MIB, .def = "1m", .doc = "push: bytes of an upstream answer kept as the result"},
    {Q(forward_headers), .name = "forward_headers", STR, .check = ackd_config_check_header_names, .form = "header names separated by spaces or commas", .def = "accept accept-language user-agent", .doc = "push: client headers forwarded upstream (besides Content-Type and ackd's own)"},
    {Q(callback_url), .name = "callback_url", STR, URL, .doc = "default webhook URL for this queue's tasks"},
    {Q(webhook_secrets), .name = "webhook_secrets", STR, .check = ackd_config_check_secrets, .form = "space-separated whsec_<base64> secrets", .doc = "secrets for this queue's webhooks instead of [webhooks] secrets"},
    {Q(webhook_schedule), .name = "webhook_schedule", STR, .check = ackd_config_check_schedule, .form = "1..50 space-separated durations like 5s 5m 30m (0..30d each)", .doc = "webhook retry delays for this queue instead of [webhooks] schedule"},

    {RT(queue), .name = "queue", STR, .check = ackd_config_check_queue_name, .form = "a queue name (1..64 of A-Za-z0-9_.-)", .doc = "queue the route's requests become tasks of (required)"},
    {RT(mode), .name = "mode", ENUM, .choices = "sync|async|auto", .def = "auto", .doc = "sync: wait for the answer; async: 202 at once; auto: wait up to wait, then 202"},
    {RT(wait_ms), .name = "wait", DUR, .min = 0, .max = HOUR, .def = "2s", .doc = "auto: how long to wait for the answer before 202"},
    {RT(max_wait_ms), .name = "max_wait", DUR, .min = 0, .max = HOUR, .def = "60s", .doc = "cap on Prefer: wait=N"},
    {RT(sync_timeout_ms), .name = "sync_timeout", DUR, .min = 100 * MS, .max = HOUR, .def = "30s", .doc = "sync: 504 beyond"},
    {RT(allow_async), .name = "allow_async", BOOL, .def = "on", .doc = "sync: honour Prefer: respond-async"},
    {RT(callback_url), .name = "callback_url", STR, URL, .doc = "default webhook URL for this route's tasks"},
    {RT(upstream_path), .name = "upstream_path", STR, .check = ackd_config_check_abs_path, .form = "a path starting with /, with {params} of the route", .doc = "push: path sent upstream for this route (its {params} put in), instead of the queue's upstream_path or the client's path"},
};
/* clang-format on */

const size_t ackd_config_nopts = sizeof ackd_config_opts / sizeof ackd_config_opts[0];

const ackd_config_opt_t *ackd_config_opt_find(ackd_config_section_t section, const char *name)
{
    for (size_t i = 0; i < ackd_config_nopts; i++) {
        const ackd_config_opt_t *o = &ackd_config_opts[i];
        if (o->section == section && strcmp(o->name, name) == 0)
            return o;
    }
    return NULL;
}

/* ---- reading and writing values ---- */

static void *field(void *base, const ackd_config_opt_t *o)
{
    return (char *)base + o->offset;
}

static void expected(const ackd_config_opt_t *o, ackd_buf_t *why)
{
    char lo[32], hi[32];
    switch (o->type) {
    case ACKD_CONFIG_STRING:
        ackd_buf_printf(why, "expected %s", o->form ? o->form : "a non-empty value");
        break;
    case ACKD_CONFIG_INT:
        ackd_buf_printf(why, "expected an integer %lld..%lld", (long long)o->min,
                        (long long)o->max);
        break;
    case ACKD_CONFIG_DOUBLE:
        ackd_buf_printf(why, "expected a number %lld..%lld", (long long)o->min, (long long)o->max);
        break;
    case ACKD_CONFIG_DURATION:
        ackd_config_format_duration(o->min, lo, sizeof lo);
        ackd_config_format_duration(o->max, hi, sizeof hi);
        ackd_buf_printf(why, "expected a duration like 250ms, 30s, 5m (%s..%s)", lo, hi);
        break;
    case ACKD_CONFIG_SIZE:
        ackd_format_size((uint64_t)o->min, lo, sizeof lo);
        ackd_format_size((uint64_t)o->max, hi, sizeof hi);
        ackd_buf_printf(why, "expected a size like 64k, 1m (%s..%s)", lo, hi);
        break;
    case ACKD_CONFIG_BOOL:
        ackd_buf_appendz(why, "expected on or off (or true/false, yes/no, 1/0)");
        break;
    case ACKD_CONFIG_ENUM:
        ackd_buf_printf(why, "expected one of %s", o->choices);
        break;
    case ACKD_CONFIG_LISTEN:
        ackd_buf_appendz(why, "expected host:port");
        break;
    }
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ACKD_EINVAL;
}

static int parse_enum(const char *s, const char *choices, int *out)
{
    size_t n = strlen(s);
    int i = 0;
    for (const char *p = choices; *p; i++) {
        size_t cn = strcspn(p, "|");
        if (cn == n && n && strncasecmp(p, s, n) == 0) {
            *out = i;
            return 0;
        }
        p += cn + (p[cn] == '|');
    }
    return ACKD_EINVAL;
}

static void enum_name(const char *choices, int v, ackd_buf_t *out)
{
    const char *p = choices;
    for (int i = 0; *p; i++) {
        size_t cn = strcspn(p, "|");
        if (i == v) {
            ackd_buf_append(out, p, cn);
            return;
        }
        p += cn + (p[cn] == '|');
    }
    ackd_buf_appendz(out, "?");
}

/* Digits, one optional fraction and exponent: what strtod reads, minus
 * signs, hex, inf and nan. */
static int parse_double(const char *s, double *out)
{
    if (!((*s >= '0' && *s <= '9') || *s == '.'))
        return ACKD_EINVAL;
    if (strspn(s, "0123456789.eE+-") != strlen(s))
        return ACKD_EINVAL;
    char *end;
    double d = strtod(s, &end);
    if (*end || !isfinite(d))
        return ACKD_EINVAL;
    *out = d;
    return 0;
}

static void set_string(char **f, const char *v)
{
    ackd_free(*f);
    *f = v ? ackd_strdup(v) : NULL;
}

static int set_listen(ackd_server_conf_t *srv, const char *v)
{
    char *host;
    int port;
    if (ackd_config_parse_listen(v, &host, &port))
        return ACKD_EINVAL;
    set_string(&srv->listen, v);
    ackd_free(srv->listen_host);
    srv->listen_host = host;
    srv->listen_port = port;
    return 0;
}

static int set_string_opt(const ackd_config_opt_t *o, void *base, const char *v)
{
    if (!*v) {
        if (o->min > 0)
            return ACKD_EINVAL;
        set_string(field(base, o), NULL);
        return 0;
    }
    if (!o->check) {
        set_string(field(base, o), v);
        return 0;
    }
    ackd_buf_t canon;
    ackd_buf_init(&canon, 0);
    int rc = o->check(v, &canon);
    if (rc == 0)
        set_string(field(base, o), canon.data ? canon.data : "");
    ackd_buf_free(&canon);
    return rc;
}

static int set_value(const ackd_config_opt_t *o, void *base, const char *v)
{
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    int e;
    switch (o->type) {
    case ACKD_CONFIG_STRING:
        return set_string_opt(o, base, v);
    case ACKD_CONFIG_LISTEN:
        return set_listen(base, v);
    case ACKD_CONFIG_INT:
        if (ackd_parse_int(v, &i) || i < o->min || i > o->max)
            return ACKD_EINVAL;
        *(int *)field(base, o) = (int)i;
        return 0;
    case ACKD_CONFIG_DURATION:
        if (ackd_parse_duration_ms(v, &i) || i < o->min || i > o->max)
            return ACKD_EINVAL;
        *(int64_t *)field(base, o) = i;
        return 0;
    case ACKD_CONFIG_SIZE:
        if (ackd_parse_size(v, &u) || u < (uint64_t)o->min || u > (uint64_t)o->max)
            return ACKD_EINVAL;
        *(uint64_t *)field(base, o) = u;
        return 0;
    case ACKD_CONFIG_DOUBLE:
        if (parse_double(v, &d) || d < (double)o->min || d > (double)o->max)
            return ACKD_EINVAL;
        *(double *)field(base, o) = d;
        return 0;
    case ACKD_CONFIG_BOOL:
        if (parse_bool(v, &b))
            return ACKD_EINVAL;
        *(bool *)field(base, o) = b;
        return 0;
    case ACKD_CONFIG_ENUM:
        if (parse_enum(v, o->choices, &e))
            return ACKD_EINVAL;
        *(int *)field(base, o) = e;
        return 0;
    }
    return ACKD_EINVAL;
}

int ackd_config_opt_set(const ackd_config_opt_t *o, void *base, const char *text, ackd_buf_t *why)
{
    int rc = set_value(o, base, text);
    if (rc)
        expected(o, why);
    return rc;
}

static void format_double(double d, ackd_buf_t *out)
{
    char s[64];
    /* The shortest of %.15g and %.17g that reads back exactly. */
    snprintf(s, sizeof s, "%.15g", d);
    if (strtod(s, NULL) != d)
        snprintf(s, sizeof s, "%.17g", d);
    ackd_buf_appendz(out, s);
}

void ackd_config_opt_format(const ackd_config_opt_t *o, const void *base, ackd_buf_t *out)
{
    const void *f = (const char *)base + o->offset;
    char s[64];
    switch (o->type) {
    case ACKD_CONFIG_STRING:
    case ACKD_CONFIG_LISTEN:
        if (*(char *const *)f)
            ackd_buf_appendz(out, *(char *const *)f);
        return;
    case ACKD_CONFIG_INT:
        ackd_buf_printf(out, "%d", *(const int *)f);
        return;
    case ACKD_CONFIG_DURATION:
        ackd_config_format_duration(*(const int64_t *)f, s, sizeof s);
        ackd_buf_appendz(out, s);
        return;
    case ACKD_CONFIG_SIZE:
        ackd_format_size(*(const uint64_t *)f, s, sizeof s);
        ackd_buf_appendz(out, s);
        return;
    case ACKD_CONFIG_DOUBLE:
        format_double(*(const double *)f, out);
        return;
    case ACKD_CONFIG_BOOL:
        ackd_buf_appendz(out, *(const bool *)f ? "on" : "off");
        return;
    case ACKD_CONFIG_ENUM:
        enum_name(o->choices, *(const int *)f, out);
        return;
    }
}

void ackd_config_opt_free(const ackd_config_opt_t *o, void *base)
{
    if (o->type == ACKD_CONFIG_LISTEN) {
        ackd_server_conf_t *srv = base;
        ackd_free(srv->listen_host);
        srv->listen_host = NULL;
        srv->listen_port = 0;
    }
    if (o->type == ACKD_CONFIG_STRING || o->type == ACKD_CONFIG_LISTEN) {
        char **f = field(base, o);
        ackd_free(*f);
        *f = NULL;
    }
}
