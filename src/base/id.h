/* id.h - task, lease and request ids.
 *
 * An id is a prefix ("tsk_", "lse_", "req_") and 26 characters of Crockford
 * base32 (lowercase) over 128 bits: 48 bits of ms since the epoch, then 80
 * random bits from a CSPRNG. So ids sort by creation time (and, from one
 * thread, strictly increase even within a millisecond), cannot be guessed,
 * and are URL-safe (the ULID layout). Any thread. */
#ifndef ACKD_BASE_ID_H
#define ACKD_BASE_ID_H

#include <stddef.h>
#include <stdint.h>

#define ACKD_ID_BODY_LEN 26
/* Enough for a prefix of up to 8 characters, the body and the NUL. */
#define ACKD_ID_MAX 40

/* Writes prefix + 26 characters into out (at least ACKD_ID_MAX bytes). */
void ackd_id_new(const char *prefix, char *out);
/* Same layout, random part from a fast per-thread generator seeded from the
 * CSPRNG: for ids that are labels, not capabilities (request ids). */
void ackd_id_new_label(const char *prefix, char *out);
/* Same with a given time, for tests and ordering. */
void ackd_id_new_at(const char *prefix, int64_t ms, char *out);
/* Fills buf with n cryptographically strong random bytes (OpenSSL's DRBG,
 * else the kernel; up to 64 bytes come from a per-thread pool of that
 * output, refilled 512 bytes at a time). Aborts if it cannot. */
void ackd_random_bytes(void *buf, size_t n);
/* 1 if s is prefix + 26 valid characters. */
int ackd_id_valid(const char *prefix, const char *s);
/* A 64-bit FNV-1a hash of an id (or any string), for hash tables keyed by
 * ids; not a secret. */
uint64_t ackd_id_hash(const char *s);

#endif
