/* record.c - helpers for the rows the store hands out (see store.h). */
#include <string.h>

#include "base/alloc.h"
#include "store/store.h"

static const char *const state_names[] = {"queued", "processing", "completed", "failed",
                                          "canceled"};

const char *ackd_task_state_name(int state)
{
    return state >= 0 && state <= ACKD_TASK_CANCELED ? state_names[state] : "unknown";
}

int ackd_task_state_parse(const char *s)
{
    for (int i = 0; i <= ACKD_TASK_CANCELED; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

#define TASK_STRINGS(t)                                                                           \
    {&(t)->tenant,      &(t)->queue,        &(t)->payload,  &(t)->request,                        \
     &(t)->result,      &(t)->error,        &(t)->progress_msg, &(t)->correlation_id,             \
     &(t)->traceparent, &(t)->callback_url, &(t)->idem_key}

void ackd_task_clear(ackd_task_t *t)
{
    char **fields[] = TASK_STRINGS(t);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        ackd_free(*fields[i]);
        *fields[i] = NULL;
    }
}

void ackd_task_copy(ackd_task_t *dst, const ackd_task_t *src)
{
    *dst = *src;
    char **fields[] = TASK_STRINGS(dst);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (*fields[i])
            *fields[i] = ackd_strdup(*fields[i]);
}

void ackd_attempt_clear(ackd_attempt_t *a)
{
    ackd_free(a->outcome);
    ackd_free(a->error);
    a->outcome = a->error = NULL;
}

void ackd_idem_clear(ackd_idem_t *i)
{
    ackd_free(i->tenant);
    ackd_free(i->scope);
    ackd_free(i->key);
    i->tenant = i->scope = i->key = NULL;
}

void ackd_event_clear(ackd_event_t *e)
{
    ackd_free(e->type);
    ackd_free(e->data);
    ackd_free(e->result);
    e->type = e->data = e->result = NULL;
}

void ackd_delivery_clear(ackd_delivery_t *d)
{
    char **fields[] = {&d->url,   &d->type,       &d->body,       &d->tenant,
                       &d->queue, &d->last_error, &d->traceparent, &d->correlation_id};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        ackd_free(*fields[i]);
        *fields[i] = NULL;
    }
}

void ackd_delivery_try_clear(ackd_delivery_try_t *t)
{
    ackd_free(t->error);
    ackd_free(t->excerpt);
    t->error = t->excerpt = NULL;
}
