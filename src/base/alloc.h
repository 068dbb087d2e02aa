/* alloc.h - the one allocator wrapper.
 *
 * Out-of-memory is not a recoverable condition in ackd: every buffer fed by the
 * network has a cap (see buf.h), so running out of memory means the machine is
 * broken. These wrappers abort with a message instead of returning NULL, so no
 * caller checks for NULL. Any thread may call them. */
#ifndef ACKD_BASE_ALLOC_H
#define ACKD_BASE_ALLOC_H

#include <stddef.h>

void *ackd_malloc(size_t n);
void *ackd_calloc(size_t count, size_t n);
void *ackd_realloc(void *p, size_t n);
char *ackd_strdup(const char *s);
/* Copies at most n bytes of s and NUL-terminates; s need not be terminated. */
char *ackd_strndup(const char *s, size_t n);
void ackd_free(void *p);

#define ACKD_NEW(type) ((type *)ackd_calloc(1, sizeof(type)))

#endif
