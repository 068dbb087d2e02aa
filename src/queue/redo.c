/* redo.c - see redo.h. */
#include "queue/redo.h"

#include "base/alloc.h"
#include "queue/retry.h"

static void on_timer(uv_timer_t *t)
{
    ackd_tq_redo_t *r = t->data;
    int n;
    ackd_tq_op_t **ops = ackd_tq_redo_take(r, &n);
    if (ackd_tq_store_health(r->tq, NULL) == 0)
        r->backoff_ms = 0; /* the store writes again: a new failure starts over */
    for (int i = 0; i < n; i++)
        r->again(r->owner, ops[i]);
    ackd_free(ops);
}

void ackd_tq_redo_init(ackd_tq_redo_t *r, uv_loop_t *loop, ackd_tq_t *tq,
                       void (*again)(void *owner, ackd_tq_op_t *op), void *owner)
{
    *r = (ackd_tq_redo_t){.tq = tq, .again = again, .owner = owner};
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
}

int64_t ackd_tq_redo_add(ackd_tq_redo_t *r, ackd_tq_op_t *op, bool *first)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->ops = ackd_realloc(r->ops, (size_t)r->cap * sizeof *r->ops);
    }
    r->ops[r->n++] = op;
    if (r->n > 1)
        return 0; /* the timer runs them all */
    *first = r->backoff_ms == 0;
    r->backoff_ms = ackd_backoff_next_ms(r->backoff_ms, ACKD_STORE_RETRY_MIN_MS,
                                         ACKD_STORE_RETRY_MAX_MS);
    uv_timer_start(&r->timer, on_timer, (uint64_t)r->backoff_ms, 0);
    return r->backoff_ms;
}

ackd_tq_op_t **ackd_tq_redo_take(ackd_tq_redo_t *r, int *n)
{
    ackd_tq_op_t **ops = r->ops;
    *n = r->n;
    r->ops = NULL;
    r->n = r->cap = 0;
    return ops;
}
