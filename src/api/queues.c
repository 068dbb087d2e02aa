/* queues.c - GET /v1/queues: each configured queue with its counts per
 * state and the age of its oldest queued task; GET /v1/queues/{queue}: one
 * of them. A client key counts its own tenant's tasks; workers (who serve
 * every tenant's) and admins count all. The oldest queued task is any
 * tenant's: it says how long the queue keeps a task waiting now. */
#include <string.h>

#include "api/common.h"
#include "base/alloc.h"
#include "base/clock.h"

static ackd_http_response_t *on_stats(ackd_tq_op_t *op)
{
    if (op->status)
        return api_op_problem(op);
    const ackd_config_t *cfg = ackd_tq_config(op->tq);
    int64_t now = ackd_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; i < cfg->nqueues; i++) {
        const ackd_queue_conf_t *q = &cfg->queues[i];
        if (op->queue && strcmp(op->queue, q->name) != 0)
            continue;
        const ackd_queue_stats_t *s = op->queue ? &op->stats : &op->all_stats[i];
        json_t *counts = json_object();
        for (int st = 0; st <= ACKD_TASK_CANCELED; st++)
            json_object_set_new(counts, ackd_task_state_name(st), json_integer(s->counts[st]));
        json_t *d = json_pack("{s:s, s:s, s:o}", "name", q->name, "executor",
                              q->upstream ? "upstream" : "pull", "counts", counts);
        json_object_set_new(d, "oldest_queued_age_ms",
                            s->oldest_queued_at ? json_integer(now - s->oldest_queued_at)
                                                : json_null());
        json_array_append_new(arr, d);
    }
    if (op->queue) { /* one queue: its document alone */
        json_t *one = json_incref(json_array_get(arr, 0));
        json_decref(arr);
        return api_json_response(200, one);
    }
    return api_json_response(200, json_pack("{s:o}", "queues", arr));
}

API_ANSWER(on_stats)

static ackd_tq_op_t *stats_op(ackd_http_req_t *req, ackd_api_t *api)
{
    ackd_tq_op_t *op = ackd_tq_op_new(api->tq, ACKD_TQ_STATS, on_stats_done, NULL);
    const ackd_auth_t *a = api_auth(req);
    if (!(a->role & (ACKD_ROLE_ADMIN | ACKD_ROLE_WORKER)))
        op->tenant = a->tenant;
    return op;
}

static void on_queues(ackd_http_req_t *req, void *data)
{
    api_start(req, stats_op(req, data));
}

static void on_queue(ackd_http_req_t *req, void *data)
{
    ackd_api_t *api = data;
    const ackd_queue_conf_t *q = api_path_queue(req, api);
    if (!q)
        return;
    ackd_tq_op_t *op = stats_op(req, api);
    op->queue = ackd_strdup(q->name);
    api_start(req, op);
}

const ackd_route_t ackd_api_queues_routes[] = {
    {.method = "GET", .pattern = "/v1/queues", .handler = on_queues,
     .role = ACKD_ROLE_CLIENT | ACKD_ROLE_WORKER},
    {.method = "GET", .pattern = "/v1/queues/{queue}", .handler = on_queue,
     .role = ACKD_ROLE_CLIENT | ACKD_ROLE_WORKER},
    {0},
};
