/* debug.c - test aids behind [server] debug_endpoints (off by default).
 *
 *   GET|POST /debug/park?ms=N[&status=S]  parks the request; another thread
 *                                         answers it after N ms
 *   GET /debug/stream?chunks=N&ms=M       another thread streams N chunks, one per M ms
 *   POST /debug/echo                      answers the body back, with its length
 *   GET /debug/stats                      parked / answered / canceled counts
 *
 * They exercise the deferred-answer path from a thread that is not the loop,
 * as the store and dispatcher will. One thread serves every parked request
 * from a list ordered by due time. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/units.h"

typedef struct job {
    struct job *next;
    ackd_http_defer_t *d;
    int64_t due_us;
    int status;
    int chunks_left;  /* stream: chunks still to send; -1 for a plain answer */
    int chunk_no;
    int64_t interval_us;
    bool started;
    bool canceled;
} job_t;

struct ackd_debug {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *jobs;          /* sorted by due_us */
    bool stop;
    atomic_long parked, answered, canceled;
};

static void insert(ackd_debug_t *dbg, job_t *j)
{
    job_t **p = &dbg->jobs;
    while (*p && (*p)->due_us <= j->due_us)
        p = &(*p)->next;
    j->next = *p;
    *p = j;
}

/* Runs one due job outside the lock; returns 1 when the job is finished. */
static int run_job(ackd_debug_t *dbg, job_t *j)
{
    if (j->canceled) {
        ackd_http_defer_drop(j->d);
        atomic_fetch_add(&dbg->canceled, 1);
        return 1;
    }
    if (j->chunks_left < 0) {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"parked\":true,\"status\":%d}", j->status);
        ackd_http_response_t *r = ackd_http_response_new(j->status, "application/json");
        ackd_http_response_body(r, body, (size_t)n);
        ackd_http_defer_respond(j->d, r);
        atomic_fetch_add(&dbg->answered, 1);
        return 1;
    }
    if (!j->started) {
        ackd_http_defer_stream_start(j->d, ackd_http_response_new(200, "text/plain"));
        j->started = true;
    }
    if (j->chunks_left == 0) {
        ackd_http_defer_stream_end(j->d);
        atomic_fetch_add(&dbg->answered, 1);
        return 1;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "chunk %d\n", j->chunk_no++);
    ackd_http_defer_stream_write(j->d, line, (size_t)n);
    j->chunks_left--;
    return 0;
}

static void *debug_thread(void *arg)
{
    ackd_debug_t *dbg = arg;
    pthread_mutex_lock(&dbg->lock);
    while (!dbg->stop) {
        job_t *j = dbg->jobs;
        int64_t now = ackd_mono_us();
        if (!j) {
            pthread_cond_wait(&dbg->cond, &dbg->lock);
            continue;
        }
        if (j->due_us > now && !j->canceled) {
            int64_t wake = j->due_us - now;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wake / 1000000;
            ts.tv_nsec += (wake % 1000000) * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&dbg->cond, &dbg->lock, &ts);
            continue;
        }
        dbg->jobs = j->next;
        int done = run_job(dbg, j);
        if (done) {
            ackd_free(j);
        } else {
            j->due_us = now + j->interval_us;
            insert(dbg, j);
        }
    }
    /* stopping: whatever is parked is dropped */
    while (dbg->jobs) {
        job_t *j = dbg->jobs;
        dbg->jobs = j->next;
        ackd_http_defer_drop(j->d);
        ackd_free(j);
    }
    pthread_mutex_unlock(&dbg->lock);
    return NULL;
}

ackd_debug_t *ackd_debug_start(void)
{
    ackd_debug_t *dbg = ACKD_NEW(ackd_debug_t);
    pthread_mutex_init(&dbg->lock, NULL);
    pthread_cond_init(&dbg->cond, NULL);
    pthread_create(&dbg->thread, NULL, debug_thread, dbg);
    return dbg;
}

void ackd_debug_stop(ackd_debug_t *dbg)
{
    pthread_mutex_lock(&dbg->lock);
    dbg->stop = true;
    pthread_cond_signal(&dbg->cond);
    pthread_mutex_unlock(&dbg->lock);
    pthread_join(dbg->thread, NULL);
    pthread_mutex_destroy(&dbg->lock);
    pthread_cond_destroy(&dbg->cond);
    ackd_free(dbg);
}

/* The client left: called on the loop thread. The job may already be
 * finished and freed by the debug thread (its answer is then in flight), so
 * it is looked up by handle under the lock rather than trusted. */
static void on_cancel(ackd_http_defer_t *d, void *data)
{
    ackd_debug_t *dbg = data;
    pthread_mutex_lock(&dbg->lock);
    for (job_t **p = &dbg->jobs; *p; p = &(*p)->next) {
        job_t *j = *p;
        if (j->d != d)
            continue;
        /* move it to the front, due now, so it is dropped at once */
        *p = j->next;
        j->canceled = true;
        j->due_us = 0;
        j->next = dbg->jobs;
        dbg->jobs = j;
        break;
    }
    pthread_cond_signal(&dbg->cond);
    pthread_mutex_unlock(&dbg->lock);
}

static int64_t query_int(ackd_http_req_t *req, const char *name, int64_t dflt, int64_t lo, int64_t hi)
{
    const char *v = ackd_http_req_query_param(req, name);
    int64_t n;
    if (!v || ackd_parse_int(v, &n) != 0)
        return dflt;
    return n < lo ? lo : n > hi ? hi : n;
}

static void park(ackd_http_req_t *req, ackd_debug_t *dbg, int64_t delay_us, int status, int chunks,
                 int64_t interval_us)
{
    job_t *j = ACKD_NEW(job_t);
    j->status = status;
    j->chunks_left = chunks;
    j->interval_us = interval_us;
    j->due_us = ackd_mono_us() + delay_us;
    pthread_mutex_lock(&dbg->lock);
    j->d = ackd_http_defer(req, on_cancel, dbg);
    insert(dbg, j);
    pthread_cond_signal(&dbg->cond);
    pthread_mutex_unlock(&dbg->lock);
    atomic_fetch_add(&dbg->parked, 1);
}

static void on_park(ackd_http_req_t *req, void *data)
{
    int64_t ms = query_int(req, "ms", 100, 0, 600000);
    int status = (int)query_int(req, "status", 200, 200, 599);
    park(req, data, ms * 1000, status, -1, 0);
}

static void on_stream(ackd_http_req_t *req, void *data)
{
    int chunks = (int)query_int(req, "chunks", 3, 0, 100000);
    int64_t ms = query_int(req, "ms", 50, 0, 600000);
    park(req, data, 0, 200, chunks, ms * 1000);
}

static void on_echo(ackd_http_req_t *req, void *data)
{
    (void)data;
    size_t len;
    const char *body = ackd_http_req_body(req, &len);
    char n[32];
    snprintf(n, sizeof n, "%zu", len);
    ackd_http_resp_header(req, "X-Body-Length", n);
    const char *ct = ackd_http_req_header(req, "content-type");
    ackd_http_respond(req, 200, ct ? ct : "application/octet-stream", body, len);
}

static void on_stats(ackd_http_req_t *req, void *data)
{
    ackd_debug_t *dbg = data;
    json_t *j = json_pack("{s:I, s:I, s:I}", "parked", (json_int_t)atomic_load(&dbg->parked),
                          "answered", (json_int_t)atomic_load(&dbg->answered), "canceled",
                          (json_int_t)atomic_load(&dbg->canceled));
    ackd_http_respond_json(req, 200, j);
    json_decref(j);
}

const ackd_route_t ackd_api_debug_routes[] = {
    {.method = "GET", .pattern = "/debug/park", .handler = on_park},
    {.method = "POST", .pattern = "/debug/park", .handler = on_park},
    {.method = "GET", .pattern = "/debug/stream", .handler = on_stream},
    {.method = "POST", .pattern = "/debug/echo", .handler = on_echo},
    {.method = "GET", .pattern = "/debug/stats", .handler = on_stats},
    {0},
};
