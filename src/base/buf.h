/* buf.h - growable byte buffer with a hard cap (curl's dynbuf idea).
 *
 * Every buffer fed by the network is created with a cap; appending past it
 * fails with ACKD_E2BIG and leaves the buffer unchanged, so too much input
 * becomes a 4xx, never an out-of-memory. The data is always NUL-terminated
 * (the terminator is not counted in len). A buffer is owned by whoever
 * embeds it; not thread-safe. */
#ifndef ACKD_BASE_BUF_H
#define ACKD_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data;   /* NULL until the first append */
    size_t len;   /* bytes used, excluding the terminator */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard cap on len; 0 means unlimited (for our own output) */
} ackd_buf_t;

void ackd_buf_init(ackd_buf_t *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void ackd_buf_free(ackd_buf_t *b);
/* Keeps the storage, forgets the content. */
void ackd_buf_reset(ackd_buf_t *b);
int ackd_buf_append(ackd_buf_t *b, const void *data, size_t n);
int ackd_buf_appendz(ackd_buf_t *b, const char *s);
int ackd_buf_appendc(ackd_buf_t *b, char c);
int ackd_buf_printf(ackd_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ackd_buf_vprintf(ackd_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s as the inside of a JSON string (escaped, without quotes). */
int ackd_buf_append_json_str(ackd_buf_t *b, const char *s, size_t n);
/* Hands the storage over to the caller (free with ackd_free); the buffer is
 * left empty. Returns "" (allocated) for an empty buffer. */
char *ackd_buf_detach(ackd_buf_t *b, size_t *len);

#endif
