/* api.h - the HTTP API of ackd: one route table per resource file.
 *
 * ackd_api_register puts every route of the API on a router. The context
 * carries what the handlers need (configuration now; the store, waiters and
 * dispatcher as they come) and outlives the server. Main thread, at start-up. */
#ifndef ACKD_API_API_H
#define ACKD_API_API_H

#include <stdbool.h>
#include <stdatomic.h>

#include "config/config.h"
#include "http/router.h"
#include "queue/tq.h"
#include "webhook/guard.h"

typedef struct ackd_debug ackd_debug_t;

typedef struct {
    const ackd_config_t *cfg;
    ackd_tq_t *tq;            /* the task queue (store and semantics) */
    atomic_bool ready;        /* /readyz answers 200 once start-up is complete */
    atomic_bool draining;     /* set at shutdown: /readyz answers 503 */
    ackd_debug_t *debug;      /* test aids, only with [server] debug_endpoints */
    void *route_ctxs;         /* one per configured route (routes.c) */
    ackd_guard_t guard;       /* callback addresses ackd will not call (the webhook rule) */
} ackd_api_t;

/* Registers the whole API. 0 or a negative ACKD_E* code. */
int ackd_api_register(ackd_router_t *router, ackd_api_t *api);
/* Stops what the API started (threads of the debug endpoints). */
void ackd_api_stop(ackd_api_t *api);

/* The request fields the API reads as one value (ackd_http_limits_t's
 * single_fields): the same field twice with different values is a 400, not
 * a guess at which one counts. */
extern const char *const ackd_api_single_fields[];

/* Per-resource tables, registered by ackd_api_register. */
extern const ackd_route_t ackd_api_ops_routes[];
extern const ackd_route_t ackd_api_problems_routes[];
extern const ackd_route_t ackd_api_debug_routes[];

ackd_debug_t *ackd_debug_start(void);
void ackd_debug_stop(ackd_debug_t *d);

#endif
