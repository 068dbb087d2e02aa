/* deliveries.c - webhook deliveries of a task: every try recorded
 * (GET /v1/tasks/{id}/deliveries) and a manual send again
 * (POST /v1/tasks/{id}/redeliver, admin). */
#include <stdio.h>
#include <string.h>

#include "api/common.h"
#include "base/clock.h"
#include "base/error.h"

static const char *delivery_state(int state)
{
    return state == ACKD_DELIVERY_DELIVERED ? "delivered"
           : state == ACKD_DELIVERY_FAILED  ? "failed"
                                            : "pending";
}

static json_t *try_doc(const ackd_delivery_try_t *t)
{
    json_t *d = json_object();
    json_object_set_new(d, "try", json_integer(t->n));
    api_time(d, "at", t->at);
    json_object_set_new(d, "status", t->status ? json_integer(t->status) : json_null());
    json_object_set_new(d, "duration_ms", json_integer(t->duration_ms));
    json_object_set_new(d, "error", t->error ? json_string(t->error) : json_null());
    json_object_set_new(d, "response_excerpt", t->excerpt ? json_string(t->excerpt) : json_null());
    return d;
}

static ackd_http_response_t *on_listed(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    json_t *arr = json_array();
    for (int i = 0; i < op->ndeliveries; i++) {
        const ackd_delivery_t *dl = &op->deliveries[i];
        json_t *d = json_object();
        json_object_set_new(d, "id", json_string(dl->id));
        json_object_set_new(d, "type", json_string(dl->type));
        json_object_set_new(d, "url", json_string(dl->url));
        json_object_set_new(d, "status", json_string(delivery_state(dl->state)));
        json_object_set_new(d, "tries", json_integer(dl->tries));
        api_time(d, "created_at", dl->created_at);
        api_time(d, "next_try_at", dl->state == ACKD_DELIVERY_PENDING ? dl->next_at : 0);
        json_object_set_new(d, "last_error", dl->last_error ? json_string(dl->last_error)
                                                            : json_null());
        json_t *tries = json_array();
        for (int k = 0; op->tries && k < op->ntries[i]; k++)
            json_array_append_new(tries, try_doc(&op->tries[i][k]));
        json_object_set_new(d, "attempts", tries);
        json_array_append_new(arr, d);
    }
    return api_json_response(200, json_pack("{s:s, s:o}", "task_id", op->id, "deliveries", arr));
}

API_ANSWER(on_listed)

static void on_deliveries(ackd_http_req_t *req, void *data)
{
    ackd_tq_op_t *op = api_task_op(req, data, ACKD_TQ_DELIVERIES, on_listed_done);
    if (op)
        api_start(req, op);
}

static ackd_http_response_t *on_redelivered(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    char url[128];
    snprintf(url, sizeof url, "/v1/tasks/%s/deliveries", op->id);
    ackd_http_response_t *r = api_json_response(
        202, json_pack("{s:s, s:s, s:s}", "task_id", op->id, "status", "scheduled",
                       "deliveries_url", url));
    ackd_http_response_header(r, "Location", url);
    return r;
}

API_ANSWER(on_redelivered)

static void on_redeliver(ackd_http_req_t *req, void *data)
{
    ackd_tq_op_t *op = api_task_op(req, data, ACKD_TQ_REDELIVER, on_redelivered_done);
    if (op)
        api_start(req, op);
}

const ackd_route_t ackd_api_deliveries_routes[] = {
    {.method = "GET", .pattern = "/v1/tasks/{id}/deliveries", .handler = on_deliveries,
     .role = ACKD_ROLE_CLIENT},
    {.method = "POST", .pattern = "/v1/tasks/{id}/redeliver", .handler = on_redeliver,
     .role = ACKD_ROLE_ADMIN},
    {0},
};
