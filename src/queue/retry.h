/* retry.h - when to try again: exponential backoff with full jitter.
 *
 * delay(n) = random(0 .. min(cap, base * 2^(n-1))) for the n-th failed
 * attempt (SPEC §5), and a Retry-After the worker or upstream asked for wins
 * when it is later. Pure functions; any thread. */
#ifndef ACKD_QUEUE_RETRY_H
#define ACKD_QUEUE_RETRY_H

#include <stdint.h>

/* The ceiling of the n-th delay (n >= 1), in ms, without jitter. */
int64_t ackd_backoff_ceiling_ms(int64_t base_ms, int64_t cap_ms, int n);
/* The jittered delay: jitter in [0, 1) picks the point in [0, ceiling]. The
 * result is at least retry_after_ms. */
int64_t ackd_backoff_ms(int64_t base_ms, int64_t cap_ms, int n, double jitter,
                        int64_t retry_after_ms);
/* A wait after one more failure in a row, without jitter: min_ms after
 * none (prev_ms 0), then doubled, at most max_ms (the dispatcher's and the
 * webhook sender's claims and records when the store fails). */
int64_t ackd_backoff_next_ms(int64_t prev_ms, int64_t min_ms, int64_t max_ms);
/* Its bounds when the store fails (a full disk): 100 ms doubling to 2 s. */
#define ACKD_STORE_RETRY_MIN_MS 100
#define ACKD_STORE_RETRY_MAX_MS 2000
/* A uniform random number in [0, 1) from the kernel's generator. */
double ackd_jitter(void);

#endif
