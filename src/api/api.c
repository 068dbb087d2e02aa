/* api.c - assembles the route tables of every resource into one router. */
#include "api/api.h"

int ackd_api_register(ackd_router_t *router, ackd_api_t *api)
{
    int rc = ackd_router_add_table(router, ackd_api_ops_routes, api);
    if (rc == 0 && api->cfg->server.debug_endpoints) {
        api->debug = ackd_debug_start();
        rc = ackd_router_add_table(router, ackd_api_debug_routes, api->debug);
    }
    return rc;
}

void ackd_api_stop(ackd_api_t *api)
{
    if (api->debug) {
        ackd_debug_stop(api->debug);
        api->debug = NULL;
    }
}
