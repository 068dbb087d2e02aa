/* jw.h - a JSON writer for documents built many times a second.
 *
 * Claims, task documents and event records were jansson trees built only to
 * be printed, which made the JSON library the largest user of CPU on the
 * claim/complete path. The writer appends to an ackd_buf_t in the order the
 * members are written and keeps the commas; strings are escaped as jansson
 * escapes them, and JSON texts that ackd itself stored (payloads, results,
 * errors: always written by jansson) are embedded as they are.
 *
 * `key` is the member name inside an object and NULL inside an array or at
 * the top. Nesting is limited to 32 levels. The writer and its buffer belong
 * to the caller; not thread-safe. */
#ifndef ACKD_BASE_JW_H
#define ACKD_BASE_JW_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct {
    ackd_buf_t *b;
    uint32_t has_member; /* bit d: the container at depth d has a member already */
    uint32_t is_array;   /* bit d: the container at depth d is an array */
    int depth;
} ackd_jw_t;

void ackd_jw_init(ackd_jw_t *w, ackd_buf_t *b);
/* ackd_buf_init(b, 0) + ackd_jw_init + ackd_jw_open(w, NULL, bracket): a new
 * document in a new buffer. */
void ackd_jw_start(ackd_jw_t *w, ackd_buf_t *b, char bracket);
/* Opens an object ('{') or an array ('['); ackd_jw_close closes the innermost. */
void ackd_jw_open(ackd_jw_t *w, const char *key, char bracket);
void ackd_jw_close(ackd_jw_t *w);
/* A string (NULL: null). */
void ackd_jw_str(ackd_jw_t *w, const char *key, const char *s);
/* A string of n bytes (NUL bytes escaped); the caller has checked that
 * they are UTF-8. */
void ackd_jw_strn(ackd_jw_t *w, const char *key, const char *s, size_t n);
void ackd_jw_int(ackd_jw_t *w, const char *key, long long v);
void ackd_jw_bool(ackd_jw_t *w, const char *key, bool v);
void ackd_jw_null(ackd_jw_t *w, const char *key);
/* A JSON text ackd stored (NULL: null), embedded without parsing. */
void ackd_jw_raw(ackd_jw_t *w, const char *key, const char *json);
/* The same for json[0..n), which need not end with a NUL. */
void ackd_jw_rawn(ackd_jw_t *w, const char *key, const char *json, size_t n);
/* A time as RFC 3339 UTC with milliseconds; ms <= 0 is null. */
void ackd_jw_time(ackd_jw_t *w, const char *key, int64_t ms);

#endif
