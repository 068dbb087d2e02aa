/* fingerprint.h - what makes two requests "the same" for idempotency:
 * SHA-256 over method, path and body, as lower-case hex. Any thread. */
#ifndef ACKD_QUEUE_FINGERPRINT_H
#define ACKD_QUEUE_FINGERPRINT_H

#include <stddef.h>

/* out gets 64 hex digits and a NUL. */
void ackd_fingerprint(const char *method, const char *path, const void *body, size_t len,
                      char out[65]);
/* SHA-256 of data as lower-case hex (key hashes). */
void ackd_sha256_hex(const void *data, size_t len, char out[65]);

#endif
