/* api.c - assembles the route tables of every resource into one router. */
#include "api/api.h"
#include "api/common.h"
#include "base/alloc.h"

const char *const ackd_api_single_fields[] = {
    "authorization", "content-type", "idempotency-key", "callback-url",
    "x-request-id", "traceparent", "last-event-id", NULL,
};

int ackd_api_register(ackd_router_t *router, ackd_api_t *api)
{
    static const ackd_route_t *const tables[] = {ackd_api_ops_routes, ackd_api_problems_routes,
                                                 ackd_api_tasks_routes,
                                                 ackd_api_workers_routes, ackd_api_queues_routes,
                                                 ackd_api_events_routes,
                                                 ackd_api_deliveries_routes};
    int rc = ackd_guard_init(&api->guard, api->cfg->webhooks.allow_private);
    for (size_t i = 0; rc == 0 && i < sizeof tables / sizeof tables[0]; i++)
        rc = ackd_router_add_table(router, tables[i], api);
    if (rc == 0)
        rc = ackd_api_register_routes(router, api);
    ackd_router_set_authorize(router, api_authorize, api);
    if (rc == 0 && api->cfg->server.debug_endpoints) {
        api->debug = ackd_debug_start();
        rc = ackd_router_add_table(router, ackd_api_debug_routes, api->debug);
    }
    return rc;
}

void ackd_api_stop(ackd_api_t *api)
{
    ackd_free(api->route_ctxs);
    api->route_ctxs = NULL;
    ackd_guard_free(&api->guard);
    if (api->debug) {
        ackd_debug_stop(api->debug);
        api->debug = NULL;
    }
}
