/* base64.h - standard base64 (RFC 4648 §4, with padding), for bodies that
 * are not text. Pure functions; any thread. */
#ifndef ACKD_BASE_BASE64_H
#define ACKD_BASE_BASE64_H

#include <stddef.h>

/* Returns a NUL-terminated encoding (free with ackd_free). */
char *ackd_base64_encode(const void *data, size_t len);
/* Decodes into a new buffer (free with ackd_free); *len gets its length.
 * NULL when the input is not valid base64. */
void *ackd_base64_decode(const char *text, size_t textlen, size_t *len);

#endif
