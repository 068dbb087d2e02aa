/* common.h - what the resource files of src/api share: auth, JSON request
 * decoding, problem and task documents, answering a deferred request when an
 * operation finishes. Internal to src/api. */
#ifndef ACKD_API_COMMON_H
#define ACKD_API_COMMON_H

#include <jansson.h>

#include "api/api.h"
#include "base/jspan.h"
#include "base/jw.h"
#include "http/http.h"
#include "queue/tq.h"

/* Who is calling: set on the request by the authorize hook. */
typedef struct {
    const char *tenant;
    int role;                 /* ackd_role_t bits */
    char **queues;            /* workers: queues they may claim; NULL: any */
} ackd_auth_t;

const ackd_auth_t *api_auth(const ackd_http_req_t *req);
/* The tenant filter for reads: NULL for admins (they see every tenant). */
const char *api_tenant_filter(const ackd_http_req_t *req);
int api_authorize(ackd_http_req_t *req, int role, void *data);

/* Decodes the body as a JSON object; on failure answers 400 (with line and
 * column) or 415 and returns NULL. An empty body is {} when allow_empty. */
json_t *api_body_object(ackd_http_req_t *req, int allow_empty);
/* The same for a body with one bulky member (a task's payload, a worker's
 * result), which ackd keeps as the client wrote it: when the member is
 * there, it is null in the tree and *bulky_text has the client's text,
 * compact (malloc'd; never jansson's print of it, base/jspan.h). When
 * base/jscan.h vouches for the body, only the other members are parsed.
 * When the member is absent, *bulky_text is NULL. Both NULL: no bulky
 * member, api_body_object. */
json_t *api_body_object_with(ackd_http_req_t *req, int allow_empty, const char *bulky,
                             char **bulky_text);
/* The JSON text v (of a body jansson accepted) as ackd keeps a client's
 * JSON: the same tokens, without the whitespace between them (malloc'd). */
char *api_json_copy(ackd_json_span_t v);
/* The longest wait a request may ask for (delay, run_at, retry_after) and
 * the longest lease (timeout, lease): beyond them a value is a mistake, and
 * their milliseconds must not overflow. */
#define API_MAX_DELAY_MS (366LL * 24 * 3600 * 1000)
#define API_MAX_LEASE_MS (7LL * 24 * 3600 * 1000)
/* A duration given as seconds (number) or a string ("250ms", "30s"), at
 * most API_MAX_DELAY_MS. 0 or ACKD_EINVAL. */
int api_duration(const json_t *v, int64_t *ms);
/* api_duration within min_ms..max_ms. */
int api_duration_in(const json_t *v, int64_t min_ms, int64_t max_ms, int64_t *ms);
/* The {id} of the route when it is a task id; otherwise answers 404 (the
 * same as for a task that does not exist) and returns NULL. */
const char *api_task_id(ackd_http_req_t *req);
/* An operation's answer is built by a function
 *     ackd_http_response_t *fn(ackd_tq_op_t *op)
 * on the HTTP loop thread once the operation is done: the store's threads
 * only post it, so JSON work stays off the committer; op is freed after the
 * answer is written. api_answer_later posts op (store thread). */
void api_answer_later(ackd_tq_op_t *op, ackd_http_build_cb build);
/* clang-format off */
/* API_ANSWER(fn) defines fn_done, the operation callback that answers with
 * fn on the loop; ops carry no pointer for it. */
#define API_ANSWER(fn)                                                                           \
    static ackd_http_response_t *fn##_build(void *op) { return fn(op); }                        \
    static void fn##_done(ackd_tq_op_t *op) { api_answer_later(op, fn##_build); }
/* API_ANSWER_HERE(fn): the same, but fn runs on the store thread that ends
 * the op; for cheap answers of ops whose load is on the HTTP loop. */
#define API_ANSWER_HERE(fn)                                                                      \
    static void fn##_done(ackd_tq_op_t *op) { api_finish(op, fn(op)); }
/* clang-format on */
/* A new operation of `kind` on the request's task, seen with the caller's
 * tenant filter; NULL when the id is not one (404 answered). */
ackd_tq_op_t *api_task_op(ackd_http_req_t *req, ackd_api_t *api, int kind, ackd_tq_cb cb);
/* The configured queue the path's {queue} names; NULL when none (a 404
 * problem answered). */
const ackd_queue_conf_t *api_path_queue(ackd_http_req_t *req, ackd_api_t *api);
/* Answers 422 naming the field. */
void api_bad_field(ackd_http_req_t *req, const char *field, const char *expected);
/* The Idempotency-Key header into *key (NULL when absent): 0, or -1 after
 * answering 400 when it is not 1..255 characters. */
int api_idempotency_key(ackd_http_req_t *req, const char **key);
/* The request's traceparent when it is one W3C Trace Context can parse
 * (version-traceid-parentid-flags, lower-case hex, ids not all zeros), else
 * NULL: an invalid one is neither kept nor passed on (the spec's rule: a
 * field that does not parse starts a new trace). */
const char *api_traceparent(ackd_http_req_t *req);
/* Retry-After for a task that is not done: the seconds until it may run
 * (due_at: delayed, or backing off after a failure), at least 1. */
void api_retry_after(ackd_http_response_t *r, const ackd_task_t *t);
/* What is wrong with a callback URL a client gave, into buf, or NULL: not
 * http(s), longer than 2048, or a host written as an address the webhook
 * guard refuses (127.0.0.1, 10.1.2.3, [::1], 169.254.169.254, 127.1): refused
 * now rather than at delivery. A host name is checked when the delivery
 * resolves it. */
const char *api_callback_url_problem(const ackd_api_t *api, const char *url, char *buf, size_t n);
/* Every member of obj must be one of known (NULL-terminated): else a 422
 * naming the first other one (prefix + name) and listing the known ones,
 * and -1. A misspelt field is refused, not ignored. */
int api_known_members(ackd_http_req_t *req, json_t *obj, const char *const *known,
                      const char *prefix);
/* The preferences of a Prefer header (RFC 7240) that ackd honours. A
 * preference it cannot read is ignored, as the RFC asks. */
typedef struct {
    int respond_async;
    int64_t wait_ms;           /* wait=N (delta-seconds, quotes allowed); -1: none */
} api_prefer_t;
void api_prefer(ackd_http_req_t *req, api_prefer_t *out);
/* ?wait=N (a duration) or else Prefer: wait=N, capped by max_wait; 0 when
 * neither. Sets *from_prefer when the Prefer header gave it. -1 when ?wait
 * is not a duration: 422 answered. */
int64_t api_wait_ms(ackd_http_req_t *req, int64_t max_wait_ms, int *from_prefer);

/* Documents. */
/* The members of a task's status document (SPEC §3), inside an object the
 * caller opened. */
void api_write_task(ackd_jw_t *w, const ackd_task_t *t, int64_t now);
/* An array of attempts, as `key`. */
void api_write_attempts(ackd_jw_t *w, const char *key, const ackd_attempt_t *a, int n);
/* 200/202 with the task's status document. */
ackd_http_response_t *api_task_response(int status, const ackd_task_t *t);
/* Parses stored JSON text; NULL text is JSON null. */
json_t *api_json_text(const char *text);
void api_time(json_t *obj, const char *key, int64_t ms);

/* Responses built on store threads. */
ackd_http_response_t *api_json_response(int status, json_t *body /* stolen */);
/* A JSON answer from a buffer the writer filled; the buffer is left empty. */
ackd_http_response_t *api_buf_response(int status, ackd_buf_t *body);
ackd_http_response_t *api_problem_response(int status, const char *type, const char *title,
                                           json_t *extra /* stolen, may be NULL */,
                                           const char *detail);
/* Maps an operation's failed status to a problem response. */
ackd_http_response_t *api_op_problem(const ackd_tq_op_t *op);
/* Answers the op's deferred request (op->data) with r, from any thread, and
 * frees op on the loop once the answer is out (for ops that stream). */
void api_finish(ackd_tq_op_t *op, ackd_http_response_t *r);
/* Defers req and runs op; a client leaving abandons a waiting op. */
void api_start(ackd_http_req_t *req, ackd_tq_op_t *op);

/* An upstream answer stored as {status, content_type, headers, body}, as a
 * response again, with Task-Id. Any thread. */
ackd_http_response_t *api_replay_result(const char *result_text, const char *task_id);
/* 1 when a stored result is an HTTP answer (route tasks, pushed tasks). */
int api_result_is_answer(const char *result_text);
/* A worker's checked {status, headers, body} in the stored form (malloc'd
 * text); body_json: the body member's text as the worker wrote it (NULL:
 * none), kept as it is (base/jspan.h). */
char *api_answer_from_worker(json_t *response, const char *body_json);
int ackd_api_register_routes(ackd_router_t *router, ackd_api_t *api);

extern const ackd_route_t ackd_api_tasks_routes[];
extern const ackd_route_t ackd_api_workers_routes[];
extern const ackd_route_t ackd_api_queues_routes[];
extern const ackd_route_t ackd_api_events_routes[];
extern const ackd_route_t ackd_api_deliveries_routes[];

#endif
