/* payments.h - the seed scenario's example backend, built on ackd's HTTP layer.
 *
 * A plain synchronous-looking service: each call takes a while (every delay
 * is a uv timer on the one loop, the request parked meanwhile), answers JSON,
 * and can be told to fail in deterministic ways for demos and tests. It also
 * records what it received (/api/calls, /api/stats) so tests can check what
 * ackd forwarded, and it serves the hybrid checkout, which fans out three
 * tasks to ackd with libcurl's multi interface on the same loop.
 *
 *   ledger.c    call records, counters, attempts per task, stored results
 *   client.c    outgoing HTTP (libcurl multi driven by libuv)
 *   work.c      /api/process-payment, /api/send-email, /api/notify-warehouse
 *   checkout.c  /api/checkout
 *   main.c      arguments, loop, server, signals
 *
 * Everything runs on the loop thread; nothing here takes a lock. */
#ifndef PAYMENTS_H
#define PAYMENTS_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "http/http.h"
#include "http/router.h"

typedef struct pay_ledger pay_ledger_t;
typedef struct pay_call pay_call_t;
typedef struct pay_client pay_client_t;

/* What every handler reaches through its route data. */
typedef struct {
    uv_loop_t *loop;
    const char *ackd_url; /* base URL of ackd, no trailing '/' */
    const char *ackd_key; /* bearer key for ackd, NULL when none */
    pay_ledger_t *ledger;
    pay_client_t *client;
    json_t *carts; /* cart_id -> reservation (checkout.c) */
} pay_app_t;

/* --- ledger.c: what was received and answered --- */

/* Keeps the last `keep` call records; 0 keeps none (benchmarks), counters
 * and attempts are kept either way. */
pay_ledger_t *pay_ledger_new(size_t keep);
void pay_ledger_free(pay_ledger_t *l);
/* Records the arrival of a call (inside its handler): method, path, every
 * header, the body; counts it as in flight and counts the attempt of its
 * task. The task is named by the Task-Id header, else Idempotency-Key, else
 * the path and body. The call is the caller's until pay_ledger_end. */
pay_call_t *pay_ledger_begin(pay_ledger_t *l, ackd_http_req_t *req);
/* How many calls of this task arrived so far, this one included. */
int pay_call_attempt(const pay_call_t *c);
/* Records the answer (status 0: the client left first) and frees c. `answer`
 * is borrowed and may be NULL. */
void pay_ledger_end(pay_ledger_t *l, pay_call_t *c, int status, const json_t *answer);
/* The answer stored for (path, key) by a successful call, NULL when none;
 * borrowed. */
json_t *pay_ledger_result(pay_ledger_t *l, const char *path, const char *key);
/* Stores doc (not stolen) as the answer of (path, key) unless one is there
 * already; returns the stored one (borrowed), which is doc when it is new. */
json_t *pay_ledger_result_store(pay_ledger_t *l, const char *path, const char *key, json_t *doc);
/* Counts one new successful charge (stats.charges). */
void pay_ledger_count_charge(pay_ledger_t *l);
/* Forgets calls, counters, attempts and stored results; in-flight counts
 * stay true. */
void pay_ledger_reset(pay_ledger_t *l);
/* {"calls": [...]} : the last `limit` records, oldest first, optionally only
 * those of `path` and/or of Task-Id `task_id` (either may be NULL). New
 * reference. */
json_t *pay_ledger_calls(pay_ledger_t *l, size_t limit, const char *path, const char *task_id);
/* {calls, in_flight, max_in_flight, charges, replays, canceled, by_path,
 * by_status}. New reference. */
json_t *pay_ledger_stats(pay_ledger_t *l);
/* Counts one answer given from a stored result (stats.replays). */
void pay_ledger_count_replay(pay_ledger_t *l);

/* --- client.c: outgoing calls --- */

typedef struct {
    int error;              /* 1: no HTTP answer (connection, timeout, canceled) */
    const char *error_text; /* when error */
    long status;            /* HTTP status when !error */
    const char *body;       /* NUL-terminated, capped at 256 KiB */
    size_t len;
    int replayed; /* the answer carried Idempotent-Replayed: true */
} pay_reply_t;

/* Called once per call, on the loop thread; reply is valid during the call. */
typedef void (*pay_client_cb)(const pay_reply_t *reply, void *data);

pay_client_t *pay_client_new(uv_loop_t *loop);
/* POSTs body (application/json) to url with extra header lines ("Name:
 * value", NULL-terminated array, copied). 0, or -1 when the call cannot be
 * started, and then cb is never called. Connect timeout 2 s, total 5 s. */
int pay_client_post_json(pay_client_t *c, const char *url, const char *const *headers,
                         const char *body, pay_client_cb cb, void *data);
/* Aborts the calls in flight (their callbacks run with error "canceled") and
 * closes the client's handles. Free with pay_client_free once uv_run has
 * returned. */
void pay_client_close(pay_client_t *c);
void pay_client_free(pay_client_t *c);

/* --- work.c and checkout.c: the handlers --- */

void pay_on_process_payment(ackd_http_req_t *req, void *data);
void pay_on_send_email(ackd_http_req_t *req, void *data);
void pay_on_notify_warehouse(ackd_http_req_t *req, void *data);
void pay_on_checkout(ackd_http_req_t *req, void *data);

/* --- shared helpers (work.c) --- */

/* {"status": "error", "error": text}. New reference. */
json_t *pay_error_doc(const char *text);
/* Answers at once with a JSON body (not stolen), X-Payments-Attempt and any
 * extra header pair (name may be NULL), and ends the call's record. */
void pay_answer_now(pay_app_t *app, ackd_http_req_t *req, pay_call_t *call, int status,
                    const json_t *body, const char *hname, const char *hvalue);
/* The same as a response for a deferred request; ends the call's record. */
ackd_http_response_t *pay_answer_build(pay_app_t *app, pay_call_t *call, int status,
                                       const json_t *body, const char *hname, const char *hvalue);
/* Decodes the body as a JSON object; NULL (and err set) otherwise. */
json_t *pay_body_object(ackd_http_req_t *req, char *err, size_t errlen);
/* 1 when s is three upper-case letters (an ISO 4217 code's shape). */
int pay_valid_currency(const char *s);

#endif
