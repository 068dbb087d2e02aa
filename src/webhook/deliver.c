/* deliver.c - one webhook try (see deliver.h). */
#include "webhook/deliver.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "http/client.h"
#include "queue/retry.h"
#include "queue/tq.h"
#include "webhook/sign.h"

#define EXCERPT 256

int ackd_wh_url_parts(const char *url, char *host, size_t hostn, char *port, size_t portn,
                      bool *https)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *h = NULL, *p = NULL;
    int rc = ACKD_EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
        strlen(h) < hostn && strlen(p) < portn) {
        /* an IPv6 literal comes back in brackets */
        size_t n = strlen(h);
        if (h[0] == '[' && n > 2 && h[n - 1] == ']') {
            memcpy(host, h + 1, n - 2);
            host[n - 2] = '\0';
        } else {
            memcpy(host, h, n + 1);
        }
        snprintf(port, portn, "%s", p);
        *https = strcmp(scheme, "https") == 0;
        rc = 0;
    }
    curl_free(scheme);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return rc;
}

int ackd_wh_parse_url(ackd_wh_call_t *call, const char **why)
{
    *why = "the callback URL is not a valid http(s) URL";
    return ackd_wh_url_parts(call->d.url, call->host, sizeof call->host, call->port,
                             sizeof call->port, &call->https);
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    ackd_wh_call_t *call = userp;
    if (ackd_buf_append(&call->answer, data, size * n) != 0) {
        call->answer_full = true;
        return 0; /* enough read: stop */
    }
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    ackd_wh_call_t *call = userp;
    size_t len = size * n;
    if (len > 12 && strncasecmp(data, "retry-after:", 12) == 0) {
        char value[128];
        size_t vl = len - 12 < sizeof value - 1 ? len - 12 : sizeof value - 1;
        memcpy(value, data + 12, vl);
        value[vl] = '\0';
        value[strcspn(value, "\r\n")] = '\0';
        call->retry_after_ms = ackd_http_retry_after_ms(value);
    }
    return len;
}

static void header(ackd_wh_call_t *call, const char *name, const char *value)
{
    char line[2048];
    snprintf(line, sizeof line, "%s: %s", name, value);
    call->headers = curl_slist_append(call->headers, line);
}

int ackd_wh_prepare(ackd_wh_call_t *call, const ackd_webhooks_conf_t *conf, const char *secrets,
                    const ackd_guard_t *guard, const struct addrinfo *addrs, char *why_buf,
                    size_t why_len)
{
    char pin[2048];
    int len = snprintf(pin, sizeof pin, "%s:%s:", call->host, call->port);
    int naddrs = 0;
    for (const struct addrinfo *a = addrs; a; a = a->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *raw = a->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        inet_ntop(a->ai_family, raw, text, sizeof text);
        const char *why = ackd_guard_check(guard, a->ai_addr);
        if (why) {
            snprintf(why_buf, why_len,
                     "the callback host %s resolves to %s, a %s address (open it with [webhooks] "
                     "allow_private)",
                     call->host, text, why);
            return ACKD_EINVAL;
        }
        if (len < (int)sizeof pin - 50)
            len += snprintf(pin + len, sizeof pin - (size_t)len, "%s%s%s%s", naddrs ? "," : "",
                            a->ai_family == AF_INET6 ? "[" : "", text,
                            a->ai_family == AF_INET6 ? "]" : "");
        naddrs++;
    }
    if (naddrs == 0) {
        snprintf(why_buf, why_len, "the callback host %s has no address", call->host);
        return ACKD_EINVAL;
    }
    call->resolve = curl_slist_append(NULL, pin);

    int64_t ts = ackd_now_ms() / 1000;
    char sig[1024], tsbuf[24];
    snprintf(tsbuf, sizeof tsbuf, "%lld", (long long)ts);
    ackd_webhook_sign(secrets, call->d.id, ts, call->d.body, strlen(call->d.body), sig,
                      sizeof sig);
    header(call, "Content-Type", "application/json");
    header(call, "User-Agent", "ackd-webhooks/0.1");
    header(call, "webhook-id", call->d.id);
    header(call, "webhook-timestamp", tsbuf);
    if (sig[0])
        header(call, "webhook-signature", sig);
    /* the task's correlation id travels with its webhook too (SPEC §5); the
     * body holds it, fixed when the delivery was committed */
    json_t *doc = json_loads(call->d.body, 0, NULL);
    const char *cid = json_string_value(json_object_get(doc, "correlation_id"));
    if (cid && *cid && strlen(cid) < 256 && !strpbrk(cid, "\r\n"))
        header(call, "X-Request-ID", cid);
    json_decref(doc);
    if (call->d.traceparent && strlen(call->d.traceparent) < 128 &&
        !strpbrk(call->d.traceparent, "\r\n"))
        header(call, "traceparent", call->d.traceparent);
    call->headers = curl_slist_append(call->headers, "Expect:");

    ackd_buf_init(&call->answer, ACKD_WEBHOOK_MAX_ANSWER);
    CURL *e = curl_easy_init();
    call->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, call->d.url);
    curl_easy_setopt(e, CURLOPT_RESOLVE, call->resolve);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    call->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->d.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(call->d.body));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)conf->timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    return 0;
}

/* The start of the answer, as text a status document can show. */
static char *excerpt(const ackd_buf_t *b)
{
    size_t n = b->len < EXCERPT ? b->len : EXCERPT;
    char *out = ackd_malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b->data[i];
        out[i] = (c >= 0x20 && c < 0x7f) || c == '\n' ? (char)c : '?';
    }
    out[n] = '\0';
    return out;
}

void ackd_wh_outcome(ackd_wh_call_t *call, CURLcode rc, const int64_t *schedule, int nschedule,
                     int64_t now, ackd_delivery_try_t *t, int *outcome, int64_t *next_at)
{
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    memset(t, 0, sizeof *t);
    t->at = now;
    t->duration_ms = (ackd_mono_us() - call->started_us) / 1000;
    t->status = (int)status;
    if (call->answer.len)
        t->excerpt = excerpt(&call->answer);
    bool answered = status > 0 && (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && call->answer_full));
    bool retry;
    char msg[CURL_ERROR_SIZE + 128];
    if (!answered) {
        ackd_http_client_error(rc, call->errbuf, "the receiver", msg, sizeof msg);
        retry = true;
    } else if (status >= 200 && status < 300) {
        *outcome = ACKD_DELIVERY_DONE;
        return;
    } else if (status == 410) {
        t->error = ackd_strdup("the receiver answered 410 Gone: no more tries");
        *outcome = ACKD_DELIVERY_GIVE_UP;
        return;
    } else {
        char *to = NULL;
        if (status >= 300 && status < 400)
            curl_easy_getinfo(call->easy, CURLINFO_REDIRECT_URL, &to);
        if (to)
            snprintf(msg, sizeof msg,
                     "the receiver answered %ld, a redirect to %.200s that ackd does not follow: "
                     "give the final URL as the callback",
                     status, to);
        else
            snprintf(msg, sizeof msg, "the receiver answered %ld", status);
        retry = status == 408 || status == 429 || status >= 500;
    }
    t->error = ackd_strdup(msg);
    int index = call->d.tries - 1; /* the delay after the n-th try */
    if (!retry || index >= nschedule) {
        if (retry) {
            char gave[sizeof msg + 64];
            snprintf(gave, sizeof gave, "%s; gave up after %d tries", msg, call->d.tries);
            ackd_free(t->error);
            t->error = ackd_strdup(gave);
        }
        *outcome = ACKD_DELIVERY_GIVE_UP;
        return;
    }
    /* the scheduled delay, ±20 % so receivers coming back are not stampeded */
    int64_t delay = schedule[index];
    delay = (int64_t)((double)delay * (0.8 + 0.4 * ackd_jitter()));
    if (call->retry_after_ms > delay)
        delay = call->retry_after_ms;
    *outcome = ACKD_DELIVERY_RETRY;
    *next_at = now + delay;
}

void ackd_wh_free(ackd_wh_call_t *call)
{
    if (!call)
        return;
    if (call->easy)
        curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    curl_slist_free_all(call->resolve);
    ackd_buf_free(&call->answer);
    ackd_delivery_clear(&call->d);
    ackd_free(call);
}
