/* internal.h - structures shared by the files of src/http only.
 *
 * Ownership: the server owns its connections; a connection owns at most one
 * request at a time (the one being read or answered); a request owns its
 * arena and, while parked, shares its defer handle with the completer (see
 * defer.c for the reference counting). Everything here is touched by the
 * server's loop thread only, except ackd_http_defer_t's queue fields. */
#ifndef ACKD_HTTP_INTERNAL_H
#define ACKD_HTTP_INTERNAL_H

#include <llhttp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/id.h"
#include "http/http.h"
#include "http/router.h"

typedef struct ackd_http_conn ackd_http_conn_t;

/* States of the head line scanner (conn.c, scan_head); HS_START is 0. */
enum { HS_START = 0, HS_REQLINE, HS_REQLINE_SP, HS_LINE_START, HS_FIELD, HS_CR, HS_DONE };

/* Timeout lists: every list has one fixed timeout, so appending at the tail
 * keeps each list sorted by deadline and one timer on the earliest head
 * serves all connections (no timer per connection). */
enum { TL_NONE = -1, TL_HEAD = 0, TL_BODY, TL_IDLE, TL_LINGER, TL_COUNT };

typedef struct {
    ackd_http_conn_t *head, *tail;
} conn_list_t;

typedef struct {
    const char *name, *value;
} header_t;

typedef struct resp_header {
    struct resp_header *next;
    const char *name, *value;
} resp_header_t;

struct ackd_http_req {
    ackd_http_conn_t *conn;      /* NULL once the connection is gone */
    ackd_arena_t arena;
    const char *method;
    char *target;                /* as sent, the absolute form made a path */
    char *path;                  /* target up to '?' */
    char *query;                 /* after '?', "" when none */
    int http_minor;              /* 0 or 1 */
    header_t *headers;
    size_t nheaders, capheaders;
    ackd_buf_t body;
    size_t nparams;
    const char *param_names[ACKD_ROUTER_MAX_PARAMS];
    char *param_values[ACKD_ROUTER_MAX_PARAMS]; /* percent-decoded */
    char *param_raw[ACKD_ROUTER_MAX_PARAMS];    /* as sent */
    const char *id;              /* X-Request-ID as sent (sane) or generated; in the arena */
    const void *auth;
    int64_t start_us;            /* monotonic, first byte of the request */
    int status;                  /* answered status, for the log */
    resp_header_t *resp_headers, *resp_headers_tail;
    const resp_header_t *extra_headers; /* a deferred answer's own, during write_head only */
    bool head;                   /* HEAD: answer without a body */
    bool keepalive;              /* the client allows reuse */
    bool expect_continue;
    bool answered;               /* the answer is queued (or the stream started) */
    bool streaming;
    ackd_http_defer_t *defer;
    /* framing checks while reading the head */
    int n_host, n_content_length, n_transfer_encoding;
    bool te_chunked_last, te_other;
};

struct ackd_http_conn {
    uv_tcp_t tcp;
    ackd_http_server_t *srv;
    llhttp_t parser;
    ackd_http_req_t *req;        /* being read or answered */
    ackd_buf_t pending;          /* bytes read but not parsed while a request is answered */
    ackd_buf_t field, value;     /* the header line being read */
    ackd_http_conn_t *prev, *next;    /* all connections */
    ackd_http_conn_t *tprev, *tnext;  /* its timeout list */
    int tlist;                   /* TL_* or TL_NONE */
    uint64_t deadline_ms;        /* loop time */
    uint32_t nrequests;
    size_t url_len, headers_total;
    const char *feed_base;       /* start of the bytes llhttp is parsing now */
    char last_nonws;             /* last non-blank byte of earlier reads */
    unsigned char head_scan;     /* HS_*: where scan_head is in the current head */
    unsigned char head_after_cr; /* the HS_* state after the LF of a CRLF */
    int error_status;            /* set by a parser callback before HPE_USER */
    const char *error_detail;
    size_t writes_pending;
    bool reading;                /* uv_read_start active */
    bool closing;                /* uv_close called */
    bool close_after_write;      /* answer then FIN */
    bool value_seen;             /* a header value callback since the last field */
    bool dispatched;             /* the current request is with its handler */
    bool in_feed;                /* inside conn_feed: answers do not re-enter it */
    bool shutdown_started;       /* FIN queued */
    bool trailer_pause;          /* paused at the last chunk to scan its trailer lines */
    char peer[48];               /* the client's address, read once when asked; "" until */
};

typedef struct defer_op defer_op_t;

struct ackd_http_server {
    uv_loop_t *loop;
    ackd_http_limits_t limits;
    const ackd_router_t *router;
    uv_tcp_t listener;
    bool listening;
    int port;
    ackd_http_conn_t *conns;     /* all open connections */
    size_t nconns;
    conn_list_t tlists[TL_COUNT];
    uv_timer_t timer;            /* fires at the earliest deadline */
    uv_async_t async;            /* deferred answers from other threads */
    uv_mutex_t ops_lock;
    defer_op_t *ops_head, *ops_tail;
    bool async_closed;           /* under ops_lock: no more operations are read */
    char *read_buf;              /* one read buffer per loop: a read is parsed before the next */
    bool read_buf_busy;
    char date[40];               /* "Date: ..." value, refreshed once per second */
    uint64_t date_sec;
    bool shutting_down;
    uv_timer_t grace_timer;
    int handles_open;            /* listener, timer, async, grace timer */
    void (*shutdown_done)(void *);
    void *shutdown_data;
};

/* conn.c */
void ackd_http_conn_accept(ackd_http_server_t *srv);
void ackd_http_conn_close(ackd_http_conn_t *c);
void ackd_http_conn_expire(ackd_http_conn_t *c, int list);
/* Called once the current request's answer is queued: frees it and reads on. */
void ackd_http_conn_request_done(ackd_http_conn_t *c);
void ackd_http_conn_write(ackd_http_conn_t *c, ackd_buf_t *out);
void ackd_http_conn_tlist_set(ackd_http_conn_t *c, int list);

/* response.c */
/* Serializes status line and headers (and Content-Length unless chunked)
 * into out for req. */
void ackd_http_write_head(ackd_http_req_t *req, int status, const char *content_type,
                          size_t content_length, bool chunked, ackd_buf_t *out);
/* Answers a framing/limit error on a connection with no usable request. */
void ackd_http_conn_fail(ackd_http_conn_t *c, int status, const char *detail);
/* Serializes a problem answer that closes the connection. */
void ackd_http_write_error(ackd_http_conn_t *c, int status, const char *detail, ackd_buf_t *out);
void ackd_http_date_refresh(ackd_http_server_t *srv);
void ackd_http_access_log(ackd_http_req_t *req);

/* request.c */
ackd_http_req_t *ackd_http_req_new(ackd_http_conn_t *c);
void ackd_http_req_free(ackd_http_req_t *req);
/* Runs the router and the handler for a fully read request. */
void ackd_http_req_dispatch(ackd_http_req_t *req);

/* defer.c */
void ackd_http_defer_close_queue(ackd_http_server_t *srv);
/* The connection of a parked request is gone: cancel its handle. */
void ackd_http_defer_cancel(ackd_http_defer_t *d);
void ackd_http_defer_apply_pending(ackd_http_server_t *srv);

/* Adopts a connected socket as a new connection (tests and fuzzing). */
int ackd_http_server_adopt(ackd_http_server_t *srv, uv_os_sock_t fd);

/* server.c */
void ackd_http_server_conn_closed(ackd_http_server_t *srv);
void ackd_http_server_timer_arm(ackd_http_server_t *srv);

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

#endif
