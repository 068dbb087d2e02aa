/* clock.h - wall and monotonic time in milliseconds, RFC 3339 formatting.
 *
 * Stored and shown times are wall-clock ms since the Unix epoch (UTC); timers
 * and durations use the monotonic clock. Any thread. */
#ifndef ACKD_BASE_CLOCK_H
#define ACKD_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* ms since the Unix epoch, wall clock. */
int64_t ackd_now_ms(void);
/* µs since an arbitrary start, monotonic. */
int64_t ackd_mono_us(void);
/* Writes "2026-11-24T10:00:00.123Z" (24 chars + NUL; out must hold 32). */
void ackd_time_format(int64_t ms, char *out, size_t outlen);
/* Parses an RFC 3339 time ("...Z" or "+hh:mm", optional fraction) to ms. */
int ackd_time_parse(const char *s, int64_t *out_ms);

#endif
