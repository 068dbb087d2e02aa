/* client.c - libcurl multi on libuv (see client.h). */
#include "http/client.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"

typedef struct xfer {
    struct xfer *next, *prev;
    CURL *easy;
    ackd_http_client_done_fn done;
    void *data;
} xfer_t;

/* A socket's poll handle lives as long as the socket: curl drops its
 * interest (CURL_POLL_REMOVE) each time a kept-alive connection goes back to
 * its cache and takes it up again for the next request on it, so the handle
 * is only stopped then, and closed when curl closes the socket
 * (CURLOPT_CLOSESOCKETFUNCTION). That spares an allocation, an ioctl and a
 * deferred close per request.
 *
 * Nor is a handle that watches for reading stopped when curl drops its
 * interest: the next request on the connection wants the same, and
 * restarting a libuv poll handle costs epoll_ctl calls (two or three per
 * request: a fifth of the dispatcher's system calls). An idle connection
 * that becomes readable (the server closed it) stops its handle then;
 * curl finds it dead when it next looks. */
typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    ackd_http_client_t *c;
    int events;                  /* what the poll handle watches now; 0: stopped */
    bool idle;                   /* curl dropped its interest; the handle still reads */
} sock_t;

struct ackd_http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t *timer;           /* heap: closes after the client is freed */
    xfer_t *xfers;
    sock_t **socks;              /* by descriptor: the poll handle of each socket curl opened */
    int nsocks;
    int running;
    int cleaning;                /* inside curl_multi_cleanup: sockets are going anyway */
};

static void check_done(ackd_http_client_t *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        xfer_t *x;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, x->easy);
        if (x->prev)
            x->prev->next = x->next;
        else
            c->xfers = x->next;
        if (x->next)
            x->next->prev = x->prev;
        c->running--;
        ackd_http_client_done_fn done = x->done;
        CURL *easy = x->easy;
        void *data = x->data;
        ackd_free(x);
        done(easy, rc, data); /* may start new transfers */
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *s = h->data;
    if (s->idle) { /* not curl's now: it sees the closed connection itself */
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->c->multi, s->fd, flags, &running);
    check_done(s->c);
}

static void on_sock_closed(uv_handle_t *h)
{
    ackd_free(h->data);
}

/* The poll handle of fd, made on first use. */
static sock_t *sock_of(ackd_http_client_t *c, curl_socket_t fd)
{
    if (fd >= c->nsocks) {
        int n = c->nsocks ? c->nsocks : 64;
        while (n <= fd)
            n *= 2;
        c->socks = ackd_realloc(c->socks, (size_t)n * sizeof *c->socks);
        memset(c->socks + c->nsocks, 0, (size_t)(n - c->nsocks) * sizeof *c->socks);
        c->nsocks = n;
    }
    sock_t *s = c->socks[fd];
    if (!s) {
        s = ACKD_NEW(sock_t);
        s->fd = fd;
        s->c = c;
        uv_poll_init_socket(c->loop, &s->poll, fd);
        s->poll.data = s;
        c->socks[fd] = s;
    }
    return s;
}

/* curl closes a socket: its poll handle goes first. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    ackd_http_client_t *c = clientp;
    if (fd >= 0 && fd < c->nsocks && c->socks[fd]) {
        sock_t *s = c->socks[fd];
        c->socks[fd] = NULL;
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, on_sock_closed);
    }
    return close(fd);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    ackd_http_client_t *c = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s && s->events == UV_READABLE) {
            s->idle = true; /* kept reading: see sock_t */
        } else if (s) {
            uv_poll_stop(&s->poll); /* kept until curl closes the socket */
            s->events = 0;
        }
        if (!c->cleaning)
            curl_multi_assign(c->multi, fd, NULL);
        return 0;
    }
    if (!s) {
        s = sock_of(c, fd);
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    s->idle = false;
    if (events != s->events) {
        uv_poll_start(&s->poll, events, on_poll);
        s->events = events;
    }
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    ackd_http_client_t *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_timer_change(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    ackd_http_client_t *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(c->timer);
    else
        uv_timer_start(c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

ackd_http_client_t *ackd_http_client_new(uv_loop_t *loop)
{
    ackd_http_client_t *c = ACKD_NEW(ackd_http_client_t);
    c->loop = loop;
    c->timer = ACKD_NEW(uv_timer_t);
    uv_timer_init(loop, c->timer);
    c->timer->data = c;
    c->multi = curl_multi_init();
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* the default cache (4 x the transfers running) shrinks as a burst
     * drains and closes connections that the next burst opens again: a
     * 30 000-task drain opened ~3 000 connections a second, 12 % of the
     * dispatcher's CPU. Idle connections still expire after curl's
     * CURLOPT_MAXAGE_CONN (118 s). */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 512L);
    return c;
}

void ackd_http_client_start(ackd_http_client_t *c, CURL *easy, ackd_http_client_done_fn done,
                            void *data)
{
    xfer_t *x = ACKD_NEW(xfer_t);
    x->easy = easy;
    x->done = done;
    x->data = data;
    x->next = c->xfers;
    if (c->xfers)
        c->xfers->prev = x;
    c->xfers = x;
    c->running++;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, c);
    curl_multi_add_handle(c->multi, easy);
}

int ackd_http_client_running(const ackd_http_client_t *c)
{
    return c->running;
}

static void on_timer_closed(uv_handle_t *h)
{
    ackd_free(h);
}

void ackd_http_client_free(ackd_http_client_t *c)
{
    for (xfer_t *x = c->xfers, *next; x; x = next) {
        next = x->next;
        curl_multi_remove_handle(c->multi, x->easy);
        ackd_free(x); /* the owner frees its easy handle with its own state */
    }
    c->timer->data = NULL;
    c->cleaning = 1;
    curl_multi_cleanup(c->multi); /* closes the cached connections (on_close_socket) */
    /* the poll handles left: its own, not every poll handle of a loop it
     * shares (the dispatcher's is the HTTP server's) */
    for (int fd = 0; fd < c->nsocks; fd++) {
        sock_t *s = c->socks[fd];
        if (s && !uv_is_closing((uv_handle_t *)&s->poll))
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
    }
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
    ackd_free(c->socks);
    ackd_free(c);
}

int64_t ackd_http_retry_after_ms(const char *v)
{
    if (!v)
        return 0;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        int64_t secs = 0;
        for (; *v >= '0' && *v <= '9' && secs < 86400; v++)
            secs = secs * 10 + (*v - '0');
        return (secs < 86400 ? secs : 86400) * 1000;
    }
    time_t when = curl_getdate(v, NULL), now = time(NULL); /* an HTTP-date */
    if (when <= now)
        return 0;
    return (when - now < 86400 ? (int64_t)(when - now) : 86400) * 1000;
}

const char *ackd_http_client_error(CURLcode rc, const char *errbuf, const char *peer, char *buf,
                                   size_t n)
{
    const char *pre = "the call to ", *post = " failed";
    switch (rc) {
    case CURLE_COULDNT_CONNECT: pre = "could not connect to ", post = ""; break;
    case CURLE_COULDNT_RESOLVE_HOST: pre = "could not resolve the host name of ", post = ""; break;
    case CURLE_OPERATION_TIMEDOUT: pre = "", post = " did not answer in time"; break;
    case CURLE_GOT_NOTHING: pre = "", post = " closed the connection without answering"; break;
    case CURLE_PARTIAL_FILE:
        pre = "", post = " closed the connection before its answer was complete";
        break;
    case CURLE_SEND_ERROR: pre = "the connection to ", post = " broke while sending"; break;
    case CURLE_RECV_ERROR: pre = "the connection to ", post = " broke while receiving"; break;
    case CURLE_UNSUPPORTED_PROTOCOL: /* "Received HTTP/0.9 when not allowed" */
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
        pre = "", post = " answered with something that is not HTTP";
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION: pre = "the TLS handshake with ", post = " failed"; break;
    default: break;
    }
    snprintf(buf, n, "%s%s%s (%s)", pre, peer, post,
             errbuf && *errbuf ? errbuf : curl_easy_strerror(rc));
    return buf;
}
