/* router.h - maps METHOD + path to a handler, from static tables.
 *
 * Patterns are literal segments and {param} segments: "/v1/tasks/{id}/cancel".
 * When several patterns match a path, the one with a literal segment earliest
 * wins ("/v1/tasks/stats" beats "/v1/tasks/{id}"). A path that matches some
 * pattern but not for this method is a 405 with Allow; no pattern is a 404.
 * HEAD is served by the GET handler with the body left out.
 *
 * Built once at start-up on the main thread, then read-only: any thread may
 * match concurrently. The router copies patterns; `data` is borrowed. */
#ifndef ACKD_HTTP_ROUTER_H
#define ACKD_HTTP_ROUTER_H

#include <stddef.h>

#include "http/http.h"

#define ACKD_ROUTER_MAX_PARAMS 8

typedef void (*ackd_http_handler_fn)(ackd_http_req_t *req, void *data);

/* One line of a route table. role is a bit set of ackd_role_t values that
 * may call it (0: anyone, no key needed). */
typedef struct {
    const char *method;
    const char *pattern;
    ackd_http_handler_fn handler;
    int role;
} ackd_route_t;

/* Decides whether a request may reach a handler needing `role`. Returns 0 to
 * go on; otherwise it has answered (401/403) and the handler is not called. */
typedef int (*ackd_http_authorize_fn)(ackd_http_req_t *req, int role, void *data);

typedef struct {
    int status;              /* 200 matched, 404, 405 */
    const ackd_route_t *route;
    void *data;
    size_t nparams;
    const char *names[ACKD_ROUTER_MAX_PARAMS];
    const char *values[ACKD_ROUTER_MAX_PARAMS]; /* point into the matched path; not decoded */
    size_t lens[ACKD_ROUTER_MAX_PARAMS];
    char allow[96];          /* for 405: "GET, HEAD, POST" */
} ackd_route_match_t;

ackd_router_t *ackd_router_new(void);
void ackd_router_free(ackd_router_t *r);
/* Adds one route; `data` is passed to its handler. ACKD_EINVAL for a bad
 * pattern, ACKD_EEXIST when method+pattern is taken. */
int ackd_router_add(ackd_router_t *r, const ackd_route_t *route, void *data);
/* Adds every line of a table (terminated by a line with method NULL). */
int ackd_router_add_table(ackd_router_t *r, const ackd_route_t *table, void *data);
void ackd_router_set_authorize(ackd_router_t *r, ackd_http_authorize_fn fn, void *data);
ackd_http_authorize_fn ackd_router_authorize(const ackd_router_t *r, void **data);
/* Matches path (no query) of length len. */
void ackd_router_match(const ackd_router_t *r, const char *method, const char *path, size_t len,
                       ackd_route_match_t *m);

#endif
