/* dispatch.h - push executor: tasks of queues with an `upstream` are sent to
 * it as HTTP requests.
 *
 * The dispatcher is an internal worker on the HTTP server's libuv loop,
 * which drives libcurl's multi interface (no thread per call; connections
 * are kept alive and reused). It shares the loop, as a proxy's worker does,
 * so that a sync route's answer goes from the upstream's socket to the
 * client's without crossing threads: on this 2-core VM every wake-up of a
 * sleeping thread costs the waker ~40 us, and a thread of its own cost the
 * sync face one (sync p50 -35-40 us; async throughput unchanged, bench/proxy).
 * For each upstream queue it keeps one claim
 * parked in the store, sized by the queue's free concurrency and rate
 * tokens: the commit that makes a task due hands it over at once; delayed
 * and backing-off tasks arrive when the store's due timer fires.
 *
 * Outcome of a call: 2xx/3xx completes the task with the answer stored;
 * connection errors, timeouts, 408, 425, 429 and 5xx fail the attempt for a
 * retry with backoff (Retry-After honoured); other 4xx fail the task with the
 * answer stored. Each call holds the task's lease (attempt timeout plus a
 * margin), so if ackd dies mid-call the task comes back when it expires.
 *
 * Every function here: on the loop's thread. */
#ifndef ACKD_DISPATCH_DISPATCH_H
#define ACKD_DISPATCH_DISPATCH_H

#include <uv.h>

#include "config/config.h"
#include "queue/tq.h"

typedef struct ackd_dispatch ackd_dispatch_t;

/* Starts the dispatcher on `loop` when some queue has an upstream (it
 * claims at once); *out is NULL (and 0 returned) when none does. */
int ackd_dispatch_start(ackd_dispatch_t **out, const ackd_config_t *cfg, ackd_tq_t *tq,
                        uv_loop_t *loop);
/* Stops claiming, lets calls in flight finish for up to grace_ms, aborts the
 * rest (their leases expire and the tasks run again) and closes its handles,
 * so the loop no longer runs for it; then calls calls_over(data) (NULL:
 * none), on the loop thread, perhaps before returning. Returns at once; run
 * the loop until it ends. Again: nothing. NULL d: calls_over at once. */
void ackd_dispatch_stop(ackd_dispatch_t *d, int64_t grace_ms, void (*calls_over)(void *),
                        void *data);
/* Frees the stopped dispatcher. Call after closing the task queue: a claim
 * the store still held when the dispatcher stopped is answered (and freed
 * by its callback, which reads the dispatcher) only as the queue closes. */
void ackd_dispatch_free(ackd_dispatch_t *d);

#endif
