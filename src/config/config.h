/* config.h - ackd's configuration: one INI file plus ACKD_* overrides.
 *
 * Sections (SPEC §6): [server], [storage], [queue NAME] (many),
 * [route METHOD /path] (many), [webhooks], [keys]. Every option lives in one
 * static table (config.c: name, type, bounds, default, doc line, offset), which
 * drives parsing, environment overrides, validation and `ackd config check`.
 *
 * Loading happens once, on the main thread, before any socket opens. The
 * loaded ackd_config_t is immutable afterwards and may be read from any thread.
 * It owns all its strings; free it with ackd_config_free. */
#ifndef ACKD_CONFIG_CONFIG_H
#define ACKD_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { ACKD_ROLE_CLIENT = 1, ACKD_ROLE_WORKER = 2, ACKD_ROLE_ADMIN = 4 } ackd_role_t;
typedef enum { ACKD_MODE_SYNC = 0, ACKD_MODE_ASYNC = 1, ACKD_MODE_AUTO = 2 } ackd_route_mode_t;
typedef enum { ACKD_SYNC_FULL = 0, ACKD_SYNC_NORMAL = 1 } ackd_sync_mode_t;

typedef struct {
    char *listen;                  /* "host:port"; IPv6 as "[::1]:8080" */
    char *listen_host;             /* derived from listen */
    int listen_port;               /* derived from listen */
    int log_level;                 /* ACKD_LOG_* */
    bool access_log;               /* one info line per request */
    uint64_t max_request_line;     /* bytes; 414 beyond */
    uint64_t max_header_size;      /* bytes of one field line; 431 beyond */
    int max_headers;               /* fields per request; 431 beyond */
    uint64_t max_headers_total;    /* bytes of all fields; 431 beyond */
    uint64_t max_body;             /* bytes; 413 beyond */
    int64_t head_timeout_ms;       /* whole request head; 408 beyond */
    int64_t body_timeout_ms;       /* idle gap while reading a body; 408 beyond */
    int64_t keepalive_timeout_ms;  /* idle connection between requests; closed beyond */
    int max_connections;           /* 503 and close beyond */
    int max_requests_per_connection;
    int64_t shutdown_grace_ms;     /* in-flight requests get this long after SIGTERM */
    int64_t max_wait_ms;           /* cap on any client wait (long polls, Prefer: wait) */
    int64_t idempotency_ttl_ms;
    bool debug_endpoints;          /* /debug/... test aids; off in production */
} ackd_server_conf_t;

typedef struct {
    char *path;                    /* SQLite file, or later a postgres:// URL */
    ackd_sync_mode_t sync;         /* full: fsync every commit; normal: WAL without fsync */
} ackd_storage_conf_t;

typedef struct {
    char *name;
    int line;                      /* where the section starts, for messages */
    char *upstream;                /* http://host:port for push, NULL for pull */
    char *upstream_path;           /* path rewrite, NULL keeps the client's path */
    int max_attempts;
    int64_t retry_base_ms, retry_cap_ms;
    int64_t attempt_timeout_ms;    /* push: total time of one call; pull: default lease */
    int64_t connect_timeout_ms;    /* push: TCP connect */
    int64_t deadline_ms;           /* overall, from creation; 0 = none */
    int64_t retention_ms;          /* terminal tasks are purged after this */
    int concurrency;               /* push: in-flight calls; 0 = unlimited */
    double rate;                   /* push: calls per second; 0 = unlimited */
    uint64_t max_result_size;      /* push: bytes of an upstream answer kept */
    char *forward_headers;         /* push: client headers sent upstream, space-separated, lower case */
    char *callback_url;            /* default webhook for the queue's tasks */
    char *webhook_secrets;         /* signs this queue's webhooks instead of [webhooks] secrets */
    char *webhook_schedule;        /* this queue's webhook retry delays instead of [webhooks] schedule */
} ackd_queue_conf_t;

typedef struct {
    char *method;                  /* "POST", upper case */
    char *path;                    /* "/api/process-payment", may hold {params} */
    int line;
    char *queue;                   /* the queue it feeds (must exist) */
    ackd_route_mode_t mode;
    int64_t wait_ms;               /* auto: how long to wait before 202 */
    int64_t max_wait_ms;           /* cap for Prefer: wait=N */
    int64_t sync_timeout_ms;       /* sync: 504 beyond */
    bool allow_async;              /* sync: honour Prefer: respond-async */
    char *callback_url;            /* default webhook for this route */
    char *upstream_path;           /* push: the path sent upstream, {params} of the route put
                                      in as the client sent them; NULL: the queue's */
} ackd_route_conf_t;

typedef struct {
    char *secrets;                 /* whsec_... secrets, space-separated; each signs */
    char *tenant_secrets;          /* "tenant:whsec_... tenant:whsec_..." for tenants' own */
    char *allow_private;           /* CIDR list callbacks may target despite the guard */
    int64_t timeout_ms;
    char *schedule;                /* retry delays, e.g. "5s 5m 30m 2h 5h 10h 10h" */
} ackd_webhooks_conf_t;

typedef struct {
    char hash_hex[65];             /* SHA-256 of the bearer key, lower-case hex */
    char *tenant;
    int role;                      /* ACKD_ROLE_* */
    char **queues;                 /* worker keys: queues it may claim; NULL-terminated */
    int line;
} ackd_key_conf_t;

typedef struct {
    char *file;                    /* the file loaded, NULL when none */
    ackd_server_conf_t server;
    ackd_storage_conf_t storage;
    ackd_webhooks_conf_t webhooks;
    ackd_queue_conf_t *queues;
    size_t nqueues;
    ackd_route_conf_t *routes;
    size_t nroutes;
    ackd_key_conf_t *keys;
    size_t nkeys;
} ackd_config_t;

/* Loads defaults, then `file` (may be NULL: defaults only), then the ACKD_*
 * variables of `envp` (may be NULL), then validates. On error returns
 * ACKD_EINVAL, writes one message per problem into err (e.g.
 * `ackd.conf:12: [queue payments] max_attempts: expected an integer 1..1000,
 * got "lots"`) and leaves *out empty. */
int ackd_config_load(ackd_config_t *out, const char *file, char *const *envp, char *err,
                     size_t errlen);
/* Same, from a string (tests, fuzzing); `name` is used in messages. */
int ackd_config_load_string(ackd_config_t *out, const char *name, const char *text,
                            char *const *envp, char *err, size_t errlen);
/* Writes the effective configuration as an INI file that loads back equal. */
void ackd_config_print(const ackd_config_t *cfg, FILE *out);
void ackd_config_free(ackd_config_t *cfg);

const ackd_queue_conf_t *ackd_config_queue(const ackd_config_t *cfg, const char *name);

#endif
