/* upstream.h - one upstream call: the request built from a task, the answer
 * captured, the outcome decided. Internal to src/dispatch; the dispatcher's
 * loop thread only. */
#ifndef ACKD_DISPATCH_UPSTREAM_H
#define ACKD_DISPATCH_UPSTREAM_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>

#include "base/buf.h"
#include "config/config.h"
#include "store/store.h"

typedef struct ackd_call {
    struct ackd_call *next, *prev; /* the dispatcher's list of calls in flight */
    ackd_task_t task;            /* owned: moved out of the claim */
    const ackd_queue_conf_t *conf;
    void *owner;                 /* the dispatcher's per-queue state */
    CURL *easy;                  /* the caller may set a handle to reuse (reset) before prepare */
    struct curl_slist *headers;
    char *body;                  /* request body, kept alive for curl */
    size_t body_len;
    ackd_buf_t answer;           /* capped at max_result_size */
    char errbuf[CURL_ERROR_SIZE]; /* curl's words for a failed call */
    bool too_large;
    char *content_type;
    json_t *answer_headers;      /* kept answer headers, lower-case names */
    int64_t retry_after_ms;
    int64_t started_us;
    char progress_url[160];      /* where the upstream may report progress */
    char progress_token[65];     /* and the token that authorises it */
} ackd_call_t;

/* What to do with the task after the call. */
typedef struct {
    int kind;                    /* ACKD_TQ_COMPLETE or ACKD_TQ_FAIL */
    bool retry;
    int64_t retry_after_ms;
    char *result;                /* owned JSON answer {status, content_type, headers, body} or NULL */
    char *error;                 /* owned JSON {message, status} or NULL */
    int http_status;             /* 0 when no answer */
} ackd_outcome_t;

/* Builds the easy handle for call->task. 0, or ACKD_EINVAL when the task
 * cannot be sent (a header value with CR/LF, a bad stored request): then
 * *why says so and the task should fail for good. */
int ackd_call_prepare(ackd_call_t *call, const char **why);
/* Decides the outcome of a finished transfer. */
void ackd_call_outcome(ackd_call_t *call, CURLcode rc, ackd_outcome_t *out);
void ackd_call_free(ackd_call_t *call);

#endif
