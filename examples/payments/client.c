/* client.c - outgoing HTTP calls without blocking the loop.
 *
 * libcurl's multi interface driven by libuv, the pattern of curl's
 * docs/examples/multi-uv.c: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll per socket) and when to call it
 * back (CURLMOPT_TIMERFUNCTION -> one uv_timer); we feed readiness and
 * timeouts back with curl_multi_socket_action and collect finished transfers
 * with curl_multi_info_read. Connections are kept alive and reused by the
 * multi handle. Loop thread only. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "payments.h"

#define MAX_REPLY (256 * 1024) /* bytes of an answer kept; ackd's answers are small */

typedef struct sock {
    struct sock *prev, *next;
    uv_poll_t poll;
    curl_socket_t fd;
    pay_client_t *client;
    bool closed;
} sock_t;

typedef struct xfer {
    struct xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    ackd_buf_t body;
    int replayed;
    pay_client_cb cb;
    void *data;
    char errbuf[CURL_ERROR_SIZE];
} xfer_t;

struct pay_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    xfer_t *xfers; /* in flight */
    sock_t *socks; /* watched */
    bool closing;
};

/* --- the sockets curl wants watched --- */

static void on_sock_closed(uv_handle_t *h)
{
    ackd_free(h->data);
}

static void sock_close(pay_client_t *c, sock_t *s)
{
    if (s->closed)
        return;
    s->closed = true;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void finish(pay_client_t *c, xfer_t *x, CURLcode result);

static void drain(pay_client_t *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        xfer_t *x = NULL;
        CURLcode result = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        finish(c, x, result);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    pay_client_t *c = s->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    drain(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    pay_client_t *c = userp;
    sock_t *s = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            if (!c->closing) /* not from inside curl_multi_cleanup */
                curl_multi_assign(c->multi, fd, NULL);
            sock_close(c, s);
        }
        return 0;
    }
    if (c->closing)
        return -1;
    if (!s) {
        s = ACKD_NEW(sock_t);
        s->fd = fd;
        s->client = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            ackd_free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (action & CURL_POLL_IN)
        events |= UV_READABLE;
    if (action & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* --- curl's timer --- */

static void on_timer(uv_timer_t *t)
{
    pay_client_t *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(c);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pay_client_t *c = userp;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* --- transfers --- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (ackd_buf_append(&x->body, ptr, n) != 0)
        return 0; /* past the cap: abort (CURLE_WRITE_ERROR) */
    return n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nitems;
    static const char name[] = "idempotent-replayed:";
    if (n > sizeof name - 1 && strncasecmp(ptr, name, sizeof name - 1) == 0) {
        const char *v = ptr + sizeof name - 1;
        while (*v == ' ' || *v == '\t')
            v++;
        x->replayed = strncasecmp(v, "true", 4) == 0;
    }
    return n;
}

static void xfer_free(xfer_t *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    ackd_buf_free(&x->body);
    ackd_free(x);
}

static void unlink_xfer(pay_client_t *c, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

static void finish(pay_client_t *c, xfer_t *x, CURLcode result)
{
    unlink_xfer(c, x);
    curl_multi_remove_handle(c->multi, x->easy);
    pay_reply_t r = {.replayed = x->replayed};
    if (result != CURLE_OK) {
        r.error = 1;
        r.error_text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(result);
    } else {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
        r.body = x->body.data ? x->body.data : "";
        r.len = x->body.len;
    }
    x->cb(&r, x->data);
    xfer_free(x);
}

pay_client_t *pay_client_new(uv_loop_t *loop)
{
    pay_client_t *c = ACKD_NEW(pay_client_t);
    c->loop = loop;
    c->multi = curl_multi_init();
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

int pay_client_post_json(pay_client_t *c, const char *url, const char *const *headers,
                         const char *body, pay_client_cb cb, void *data)
{
    if (c->closing)
        return -1;
    xfer_t *x = ACKD_NEW(xfer_t);
    x->easy = curl_easy_init();
    if (!x->easy) {
        ackd_free(x);
        return -1;
    }
    ackd_buf_init(&x->body, MAX_REPLY);
    x->cb = cb;
    x->data = data;
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers = curl_slist_append(x->headers, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++)
        x->headers = curl_slist_append(x->headers, headers[i]);
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        xfer_free(x);
        return -1;
    }
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    return 0;
}

void pay_client_close(pay_client_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    while (c->xfers) {
        xfer_t *x = c->xfers;
        snprintf(x->errbuf, sizeof x->errbuf, "canceled: the backend is stopping");
        finish(c, x, CURLE_ABORTED_BY_CALLBACK);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c, c->socks);
    uv_close((uv_handle_t *)&c->timer, NULL);
}

void pay_client_free(pay_client_t *c)
{
    if (!c)
        return;
    c->closing = true;
    if (c->multi) /* not closed: the loop was stopped short */
        curl_multi_cleanup(c->multi);
    ackd_free(c);
}
