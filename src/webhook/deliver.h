/* deliver.h - one webhook try: the request and what its answer means.
 *
 * POST of the stored body with webhook-id (the delivery's id, the same on
 * every try), webhook-timestamp and webhook-signature; only to the addresses
 * the guard accepted (pinned with CURLOPT_RESOLVE); no redirects; at most
 * 64 KiB of the answer read. 2xx: delivered. 410: stopped, with the reason
 * recorded. Connection errors, timeouts, 408, 429 and 5xx: tried again on the
 * schedule (with jitter; a later Retry-After wins) until it runs out. Other
 * answers: failed. Internal to the dispatcher's loop thread. */
#ifndef ACKD_WEBHOOK_DELIVER_H
#define ACKD_WEBHOOK_DELIVER_H

#include <curl/curl.h>
#include <netdb.h>
#include <stdbool.h>
#include <uv.h>

#include "base/buf.h"
#include "config/config.h"
#include "store/store.h"
#include "webhook/guard.h"

#define ACKD_WEBHOOK_MAX_ANSWER (64 * 1024)

typedef struct ackd_wh_call {
    int kind;                    /* first: tells the dispatcher's transfers apart */
    struct ackd_wh_call *next, *prev;
    ackd_delivery_t d;           /* owned: moved out of the claim */
    void *owner;
    uv_getaddrinfo_t gai;        /* the one lookup of the host */
    char host[256];
    char port[8];
    bool https;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *resolve;
    ackd_buf_t answer;           /* capped at ACKD_WEBHOOK_MAX_ANSWER */
    char errbuf[CURL_ERROR_SIZE]; /* curl's words for a failed call */
    bool answer_full;
    int64_t retry_after_ms;
    int64_t started_us;
} ackd_wh_call_t;

/* Reads scheme, host and port of the delivery's URL. ACKD_EINVAL (and *why)
 * when it is not an http(s) URL. */
int ackd_wh_parse_url(ackd_wh_call_t *call, const char **why);
/* The host (an IPv6 literal without brackets), port and scheme of an
 * http(s) URL, read by curl's parser, the one the call will use. 0 or
 * ACKD_EINVAL. Any thread. */
int ackd_wh_url_parts(const char *url, char *host, size_t hostn, char *port, size_t portn,
                      bool *https);
/* Checks every resolved address with the guard and builds the request
 * pinned to them, signed with `secrets` (the queue's, else [webhooks]'). ACKD_EINVAL (and *why, into why_buf) when refused. */
int ackd_wh_prepare(ackd_wh_call_t *call, const ackd_webhooks_conf_t *conf, const char *secrets,
                    const ackd_guard_t *guard, const struct addrinfo *addrs, char *why_buf,
                    size_t why_len);
/* The try's record and what follows (ACKD_DELIVERY_* of tq.h). schedule:
 * delays between tries in ms. */
void ackd_wh_outcome(ackd_wh_call_t *call, CURLcode rc, const int64_t *schedule, int nschedule,
                     int64_t now, ackd_delivery_try_t *try_, int *outcome, int64_t *next_at);
void ackd_wh_free(ackd_wh_call_t *call);

#endif
