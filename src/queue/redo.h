/* redo.h - store operations to commit again. What a loop's worker (the push
 * dispatcher, the webhook sender) learned and the store then failed to
 * commit (a full disk) is kept and committed again after a backoff, 100 ms
 * doubling to 2 s, from the start again once the store writes: an upstream
 * answer or a webhook try is neither lost nor fetched (sent) a second time.
 *
 * The list and its timer belong to one libuv loop: every function here, on
 * that loop's thread. The owner closes the timer with its other handles. */
#ifndef ACKD_QUEUE_REDO_H
#define ACKD_QUEUE_REDO_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "queue/tq.h"

typedef struct {
    ackd_tq_t *tq;
    ackd_tq_op_t **ops;        /* owned, until run again */
    int n, cap;
    int64_t backoff_ms;        /* the present wait; 0: none yet since the store wrote */
    uv_timer_t timer;
    void (*again)(void *owner, ackd_tq_op_t *op); /* runs op anew; owns it */
    void *owner;
} ackd_tq_redo_t;

void ackd_tq_redo_init(ackd_tq_redo_t *r, uv_loop_t *loop, ackd_tq_t *tq,
                       void (*again)(void *owner, ackd_tq_op_t *op), void *owner);
/* Keeps op (which the store failed) to run again. Returns the wait when op
 * starts one (the caller logs: *first says whether it is the first since
 * the store last wrote), 0 when a wait is on already. */
int64_t ackd_tq_redo_add(ackd_tq_redo_t *r, ackd_tq_op_t *op, bool *first);
/* The ops still kept, handed to the caller (at shutdown); *n of them. */
ackd_tq_op_t **ackd_tq_redo_take(ackd_tq_redo_t *r, int *n);

#endif
