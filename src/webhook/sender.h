/* sender.h - the webhook sender: delivers the outcome of finished tasks.
 *
 * Its own thread and libuv loop, with http/client.c for the calls. It keeps a
 * claim for due deliveries parked in the store: the commit that ends a task
 * with a callback URL hands the delivery over at once, and a retry's due time
 * wakes it through the store's due timer. Each claimed delivery holds a lease
 * (the timeout plus a margin) in its next_at, so a crash mid-try only delays
 * it: delivery is at least once. Start and stop from the main thread. */
#ifndef ACKD_WEBHOOK_SENDER_H
#define ACKD_WEBHOOK_SENDER_H

#include "config/config.h"
#include "queue/tq.h"

typedef struct ackd_webhook_sender ackd_webhook_sender_t;

int ackd_webhook_sender_start(ackd_webhook_sender_t **out, const ackd_config_t *cfg,
                              ackd_tq_t *tq);
/* Stops claiming (at once: a draining store would answer a waiting claim at
 * once, again and again) and lets tries in flight finish for up to
 * grace_ms; the rest are abandoned (tried again after their lease). Returns
 * at once; a second call does nothing. Any thread. */
void ackd_webhook_sender_stop(ackd_webhook_sender_t *s, int64_t grace_ms);
/* Waits until the stopped sender's thread has ended. Before the task queue
 * closes. */
void ackd_webhook_sender_join(ackd_webhook_sender_t *s);
/* Frees the stopped sender, after the task queue closed (a claim still held
 * by the store is answered as it closes, and its callback reads the sender). */
void ackd_webhook_sender_free(ackd_webhook_sender_t *s);

#endif
