/* qbench.c - the load generator of bench/queue/run.sh: HTTP/1.1 over plain
 * keep-alive sockets to ackd on 127.0.0.1, one "k=v ..." result line on
 * stdout (the format of ../shared/bench/peers), errors on stderr.
 *
 *   qbench fill    PORT QUEUE N BATCH PAYLOAD_FILE
 *       POST /v1/queues/QUEUE/tasks:batch with BATCH tasks a request, one
 *       request at a time, until N tasks are accepted (the pre-fill; its
 *       rate is the batched-enqueue figure).
 *   qbench work    PORT QUEUE WORKERS CONNS MAX SECS
 *       WORKERS worker loops (one thread each) drain QUEUE: a worker claims
 *       up to MAX tasks ({"max": MAX}, no wait) and completes each one with
 *       its own POST /v1/tasks/{id}/complete, keeping CONNS connections busy
 *       (a claim is sent ahead while fewer than CONNS claimed tasks are left,
 *       like a worker process with a pool of CONNS handlers). A worker stops
 *       when a claim answers 204 and its claimed tasks are completed; the
 *       run stops after SECS at the latest. Rate = completed / elapsed.
 *   qbench latency PORT QUEUE N GAP_US PAYLOAD_FILE
 *       N times: a worker connection sends a claim with {"wait": 30} (it
 *       parks), GAP_US later the producer connection submits one task; the
 *       time from the start of the submit call to the whole claim answer
 *       having arrived is one sample. The task is then completed, untimed.
 *
 * Every run is bounded: sockets have 30 s timeouts, work has SECS, and the
 * counts are finite. ackd closes a connection after
 * [server] max_requests_per_connection requests; run.sh raises that limit,
 * and this program reconnects when a connection is closed anyway. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ID_MAX 64

static int port;
static const char *queue;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "qbench: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "qbench: out of memory\n");
        exit(1);
    }
    return p;
}

static long parse_long(const char *s, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "qbench: %s must be a non-negative integer, got \"%s\"\n", name, s);
        exit(2);
    }
    return v;
}

/* The payload file's JSON, trailing whitespace removed. */
static char *read_payload(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            buf = xrealloc(buf, cap);
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        die("empty payload file");
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    return buf;
}

/* --- one keep-alive connection --- */

typedef struct {
    int fd;
    char *in;           /* received bytes */
    size_t inlen, incap;
    char *out;          /* request bytes not yet written */
    size_t outlen, outoff, outcap;
    /* the response at the front of `in`, once complete */
    int status;
    const char *body;
    size_t bodylen, total;
    int kind;           /* work mode: what is in flight (K_*) */
    int task;           /* work mode: index of the task being completed */
} conn_t;

static void conn_open(conn_t *c, bool nonblocking)
{
    c->fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS)
        die("connect 127.0.0.1");
    c->inlen = 0;
    c->outlen = c->outoff = 0;
}

static void conn_reopen(conn_t *c, bool nonblocking)
{
    close(c->fd);
    conn_open(c, nonblocking);
}

/* Appends a POST with a JSON body to the connection's output. */
static void conn_post(conn_t *c, const char *path, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, len);
    size_t need = c->outlen + (size_t)n + len;
    if (need > c->outcap) {
        c->outcap = need * 2;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, head, (size_t)n);
    memcpy(c->out + c->outlen + n, body, len);
    c->outlen = need;
}

/* Writes what it can; 1 when everything is out, 0 if more remains, -1 on error. */
static int conn_flush(conn_t *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w <= 0)
            return -1;
        c->outoff += (size_t)w;
    }
    c->outlen = c->outoff = 0;
    return 1;
}

/* 1 when a whole response is at the front of `in` (status, body and total
 * set), 0 if more bytes are needed. Exits on what it cannot frame. */
static int conn_parse(conn_t *c)
{
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->in) + 4;
    if (c->inlen < 12 || memcmp(c->in, "HTTP/1.", 7) != 0) {
        fprintf(stderr, "qbench: not an HTTP response: %.40s\n", c->in);
        exit(1);
    }
    c->status = atoi(c->in + 9);
    long cl = -1;
    for (char *p = c->in; p < end;) {
        char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (!eol)
            break;
        if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
            cl = strtol(p + 15, NULL, 10);
        else if (eol - p > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
            fprintf(stderr, "qbench: chunked responses are not supported\n");
            exit(1);
        }
        p = eol + 2;
    }
    if (cl < 0)
        cl = 0; /* 204, or a body-less answer */
    if (c->inlen < head + (size_t)cl)
        return 0;
    c->body = c->in + head;
    c->bodylen = (size_t)cl;
    c->total = head + (size_t)cl;
    return 1;
}

/* Drops the parsed response from the front of `in`. */
static void conn_consume(conn_t *c)
{
    memmove(c->in, c->in + c->total, c->inlen - c->total);
    c->inlen -= c->total;
}

/* Reads once; the byte count, 0 at EOF, -1 on error or EAGAIN (errno). */
static ssize_t conn_read(conn_t *c)
{
    if (c->incap - c->inlen < 65536) {
        c->incap = c->incap ? c->incap * 2 : 131072;
        c->in = xrealloc(c->in, c->incap);
    }
    return recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
}

/* Blocking: sends the queued request and waits for a whole response. */
static void conn_roundtrip_send(conn_t *c)
{
    if (conn_flush(c) != 1)
        die("send");
}

static void conn_wait_response(conn_t *c)
{
    while (!conn_parse(c)) {
        ssize_t r = conn_read(c);
        if (r <= 0)
            die(r == 0 ? "the server closed the connection" : "recv");
        c->inlen += (size_t)r;
    }
}

static void expect_2xx(conn_t *c, const char *what)
{
    if (c->status < 200 || c->status > 299) {
        fprintf(stderr, "qbench: %s answered %d: %.*s\n", what, c->status, (int)c->bodylen,
                c->body);
        exit(1);
    }
}

/* --- fill --- */

static int cmd_fill(long n, long batch, const char *payload)
{
    size_t plen = strlen(payload), cap = (size_t)batch * (plen + 16) + 32;
    char *body = malloc(cap);
    char path[256];
    snprintf(path, sizeof path, "/v1/queues/%s/tasks:batch", queue);
    conn_t c = {0};
    conn_open(&c, false);
    double t0 = now_s();
    long done = 0;
    while (done < n) {
        long k = n - done < batch ? n - done : batch;
        size_t len = 0;
        len += (size_t)sprintf(body + len, "{\"tasks\":[");
        for (long i = 0; i < k; i++)
            len += (size_t)sprintf(body + len, "%s{\"payload\":%s}", i ? "," : "", payload);
        len += (size_t)sprintf(body + len, "]}");
        conn_post(&c, path, body, len);
        conn_roundtrip_send(&c);
        conn_wait_response(&c);
        expect_2xx(&c, "tasks:batch");
        conn_consume(&c);
        done += k;
    }
    double el = now_s() - t0;
    printf("fill jobs=%ld batch=%ld secs=%.3f jobs_per_s=%.0f\n", done, batch, el, done / el);
    free(body);
    return 0;
}

/* --- work --- */

enum { K_IDLE = 0, K_CLAIM, K_COMPLETE };

typedef struct {
    char id[ID_MAX], lease[ID_MAX];
} task_t;

static int nconns, claim_max;
static double deadline;
static atomic_long completed, claims, empty_claims, errors;

typedef struct {
    pthread_t thread;
    conn_t *conns;
    task_t *tasks;         /* claimed, not yet sent for completion: [head, tail) */
    int head, tail, cap;
    int inflight_completes;
    bool claim_inflight, drained;
    double finished_at;
} worker_t;

static pthread_barrier_t start_line;
static double started_at;

static void push_claimed(worker_t *w, const char *body, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    json_t *arr = doc ? json_object_get(doc, "tasks") : NULL;
    if (!json_is_array(arr)) {
        fprintf(stderr, "qbench: claim answer without tasks: %.*s\n", (int)len, body);
        exit(1);
    }
    size_t n = json_array_size(arr);
    if (w->tail + (int)n > w->cap) {
        /* compact, then grow */
        memmove(w->tasks, w->tasks + w->head, (size_t)(w->tail - w->head) * sizeof *w->tasks);
        w->tail -= w->head;
        w->head = 0;
        if (w->tail + (int)n > w->cap) {
            w->cap = (w->tail + (int)n) * 2;
            w->tasks = xrealloc(w->tasks, (size_t)w->cap * sizeof *w->tasks);
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(t, "id"));
        const char *lease = json_string_value(json_object_get(t, "lease_id"));
        if (!id || !lease) {
            fprintf(stderr, "qbench: claimed task without id or lease_id\n");
            exit(1);
        }
        task_t *dst = &w->tasks[w->tail++];
        snprintf(dst->id, sizeof dst->id, "%s", id);
        snprintf(dst->lease, sizeof dst->lease, "%s", lease);
    }
    json_decref(doc);
}

static void send_claim(worker_t *w, conn_t *c)
{
    char path[256], body[64];
    snprintf(path, sizeof path, "/v1/queues/%s/claim", queue);
    int n = snprintf(body, sizeof body, "{\"max\":%d}", claim_max);
    conn_post(c, path, body, (size_t)n);
    c->kind = K_CLAIM;
    w->claim_inflight = true;
}

static void send_complete(worker_t *w, conn_t *c)
{
    task_t *t = &w->tasks[w->head++];
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/tasks/%s/complete", t->id);
    int n = snprintf(body, sizeof body, "{\"lease_id\":\"%s\"}", t->lease);
    conn_post(c, path, body, (size_t)n);
    c->kind = K_COMPLETE;
    w->inflight_completes++;
}

/* Gives an idle connection its next request, if there is one. */
static void schedule(worker_t *w, conn_t *c)
{
    int pending = w->tail - w->head;
    /* claim ahead while fewer tasks are left than connections to keep busy */
    if (!w->claim_inflight && !w->drained && pending < nconns) {
        send_claim(w, c);
        return;
    }
    if (pending > 0)
        send_complete(w, c);
}

static void on_response(worker_t *w, conn_t *c)
{
    if (c->kind == K_CLAIM) {
        w->claim_inflight = false;
        atomic_fetch_add(&claims, 1);
        if (c->status == 200) {
            push_claimed(w, c->body, c->bodylen);
        } else if (c->status == 204) {
            atomic_fetch_add(&empty_claims, 1);
            w->drained = true;
        } else {
            fprintf(stderr, "qbench: claim answered %d: %.*s\n", c->status, (int)c->bodylen,
                    c->body);
            atomic_fetch_add(&errors, 1);
            w->drained = true;
        }
    } else if (c->kind == K_COMPLETE) {
        w->inflight_completes--;
        if (c->status == 200) {
            atomic_fetch_add(&completed, 1);
        } else if (atomic_fetch_add(&errors, 1) < 5) {
            fprintf(stderr, "qbench: complete answered %d: %.*s\n", c->status, (int)c->bodylen,
                    c->body);
        }
    }
    c->kind = K_IDLE;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    struct pollfd *pfd = calloc((size_t)nconns, sizeof *pfd);
    pthread_barrier_wait(&start_line);
    for (;;) {
        bool busy = false;
        for (int i = 0; i < nconns; i++) {
            conn_t *c = &w->conns[i];
            if (c->kind == K_IDLE)
                schedule(w, c);
            if (c->kind != K_IDLE) {
                busy = true;
                if (c->outlen && conn_flush(c) < 0)
                    die("send");
            }
        }
        if (!busy || now_s() > deadline)
            break;
        for (int i = 0; i < nconns; i++) {
            pfd[i].fd = w->conns[i].kind == K_IDLE ? -1 : w->conns[i].fd;
            pfd[i].events = POLLIN | (w->conns[i].outlen ? POLLOUT : 0);
            pfd[i].revents = 0;
        }
        if (poll(pfd, (nfds_t)nconns, 1000) < 0 && errno != EINTR)
            die("poll");
        for (int i = 0; i < nconns; i++) {
            conn_t *c = &w->conns[i];
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            for (;;) {
                ssize_t r = conn_read(c);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                if (r <= 0) {
                    /* closed (request limit): the request in flight is lost;
                     * a lost complete leaves its task to lease expiry */
                    atomic_fetch_add(&errors, 1);
                    if (c->kind == K_CLAIM)
                        w->claim_inflight = false;
                    if (c->kind == K_COMPLETE)
                        w->inflight_completes--;
                    c->kind = K_IDLE;
                    conn_reopen(c, true);
                    break;
                }
                c->inlen += (size_t)r;
                if (conn_parse(c)) {
                    on_response(w, c);
                    conn_consume(c);
                    break;
                }
            }
        }
    }
    w->finished_at = now_s();
    free(pfd);
    return NULL;
}

static int cmd_work(int nworkers, double secs)
{
    worker_t *ws = calloc((size_t)nworkers, sizeof *ws);
    pthread_barrier_init(&start_line, NULL, (unsigned)nworkers + 1);
    for (int i = 0; i < nworkers; i++) {
        ws[i].conns = calloc((size_t)nconns, sizeof *ws[i].conns);
        for (int k = 0; k < nconns; k++)
            conn_open(&ws[i].conns[k], true);
        pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
    }
    usleep(100 * 1000); /* let the connections settle */
    started_at = now_s();
    deadline = started_at + secs;
    pthread_barrier_wait(&start_line);
    double last = started_at;
    for (int i = 0; i < nworkers; i++) {
        pthread_join(ws[i].thread, NULL);
        if (ws[i].finished_at > last)
            last = ws[i].finished_at;
    }
    double el = last - started_at;
    long done = atomic_load(&completed);
    printf("claim+complete jobs=%ld workers=%d conns=%d max=%d claims=%ld secs=%.3f "
           "jobs_per_s=%.0f errors=%ld%s\n",
           done, nworkers, nconns, claim_max, atomic_load(&claims), el, done / el,
           atomic_load(&errors), now_s() > deadline ? " TIMED_OUT" : "");
    return atomic_load(&errors) ? 1 : 0;
}

/* --- latency --- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmd_latency(long n, long gap_us, const char *payload)
{
    conn_t wc = {0}, pc = {0};
    conn_open(&wc, false);
    conn_open(&pc, false);
    char claim_path[256], submit_path[256];
    snprintf(claim_path, sizeof claim_path, "/v1/queues/%s/claim", queue);
    snprintf(submit_path, sizeof submit_path, "/v1/queues/%s/tasks", queue);
    size_t blen = strlen(payload) + 16;
    char *body = malloc(blen);
    int bl = snprintf(body, blen, "{\"payload\":%s}", payload);
    static const char claim_body[] = "{\"max\":1,\"wait\":30}";
    double *lat = calloc((size_t)n, sizeof *lat);
    for (long i = 0; i < n; i++) {
        conn_post(&wc, claim_path, claim_body, sizeof claim_body - 1);
        conn_roundtrip_send(&wc);
        struct timespec gap = {.tv_sec = gap_us / 1000000, .tv_nsec = (gap_us % 1000000) * 1000};
        nanosleep(&gap, NULL); /* the claim parks meanwhile */
        double t0 = now_s();
        conn_post(&pc, submit_path, body, (size_t)bl);
        conn_roundtrip_send(&pc);
        conn_wait_response(&wc);
        double t1 = now_s();
        lat[i] = t1 - t0;
        if (wc.status != 200) {
            fprintf(stderr, "qbench: claim %ld answered %d (the task did not reach the parked "
                            "claim): %.*s\n",
                    i, wc.status, (int)wc.bodylen, wc.body);
            return 1;
        }
        json_t *doc = json_loadb(wc.body, wc.bodylen, 0, NULL);
        json_t *t = json_array_get(json_object_get(doc, "tasks"), 0);
        char path[128], cbody[128];
        snprintf(path, sizeof path, "/v1/tasks/%s/complete",
                 json_string_value(json_object_get(t, "id")));
        int cl = snprintf(cbody, sizeof cbody, "{\"lease_id\":\"%s\"}",
                          json_string_value(json_object_get(t, "lease_id")));
        json_decref(doc);
        conn_consume(&wc);
        conn_wait_response(&pc);
        expect_2xx(&pc, "submit");
        conn_consume(&pc);
        conn_post(&wc, path, cbody, (size_t)cl);
        conn_roundtrip_send(&wc);
        conn_wait_response(&wc);
        expect_2xx(&wc, "complete");
        conn_consume(&wc);
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("latency jobs=%ld p50_us=%.0f p99_us=%.0f max_us=%.0f\n", n, lat[n / 2] * 1e6,
           lat[(long)((double)n * 0.99)] * 1e6, lat[n - 1] * 1e6);
    free(lat);
    free(body);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: qbench fill PORT QUEUE N BATCH PAYLOAD_FILE\n"
                        "       qbench work PORT QUEUE WORKERS CONNS MAX SECS\n"
                        "       qbench latency PORT QUEUE N GAP_US PAYLOAD_FILE\n");
        return 2;
    }
    port = (int)parse_long(argv[2], "PORT");
    queue = argv[3];
    if (strcmp(argv[1], "fill") == 0 && argc == 7)
        return cmd_fill(parse_long(argv[4], "N"), parse_long(argv[5], "BATCH"),
                        read_payload(argv[6]));
    if (strcmp(argv[1], "work") == 0 && argc == 8) {
        nconns = (int)parse_long(argv[5], "CONNS");
        claim_max = (int)parse_long(argv[6], "MAX");
        int nworkers = (int)parse_long(argv[4], "WORKERS");
        if (nconns < 1 || claim_max < 1 || nworkers < 1) {
            fprintf(stderr, "qbench: WORKERS, CONNS and MAX must be at least 1\n");
            return 2;
        }
        return cmd_work(nworkers, (double)parse_long(argv[7], "SECS"));
    }
    if (strcmp(argv[1], "latency") == 0 && argc == 7) {
        long n = parse_long(argv[4], "N");
        if (n < 1) {
            fprintf(stderr, "qbench: N must be at least 1\n");
            return 2;
        }
        return cmd_latency(n, parse_long(argv[5], "GAP_US"), read_payload(argv[6]));
    }
    fprintf(stderr, "qbench: unknown mode or wrong argument count\n");
    return 2;
}
