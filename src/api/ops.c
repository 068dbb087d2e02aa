/* ops.c - operational endpoints: liveness and readiness. */
#include "api/api.h"

#include "base/clock.h"
#include "base/error.h"

static void on_healthz(ackd_http_req_t *req, void *data)
{
    (void)data;
    static const char body[] = "{\"status\":\"ok\"}";
    ackd_http_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void on_readyz(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = data;
    int64_t since = 0;
    int store = ackd_tq_store_health(api->tq, &since);
    if (store && atomic_load(&api->ready) && !atomic_load(&api->draining)) {
        char at[32];
        ackd_time_format(since, at, sizeof at);
        ackd_http_resp_header(req, "Retry-After", "1");
        ackd_http_respond_problem(req, 503, "not-ready", "Not ready", NULL,
                                  "the store cannot write (%s) since %s",
                                  store == ACKD_ENOSPC ? "its disk is full" : ackd_strerror(store),
                                  at);
        return;
    }
    if (atomic_load(&api->ready) && !atomic_load(&api->draining)) {
        static const char body[] = "{\"status\":\"ready\"}";
        ackd_http_respond(req, 200, "application/json", body, sizeof body - 1);
        return;
    }
    ackd_http_resp_header(req, "Retry-After", "1");
    ackd_http_respond_problem(req, 503, "not-ready", "Not ready", NULL, "%s",
                              atomic_load(&api->draining) ? "the server is shutting down"
                                                          : "the server is starting");
}

const ackd_route_t ackd_api_ops_routes[] = {
    {.method = "GET", .pattern = "/healthz", .handler = on_healthz},
    {.method = "GET", .pattern = "/readyz", .handler = on_readyz},
    {0},
};
