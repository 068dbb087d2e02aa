/* arena.h - a bump allocator for things that die together (a request).
 *
 * Allocations are freed all at once by ackd_arena_reset/ackd_arena_free;
 * individual frees do not exist. The first block is inline-sized by the
 * creator; larger requests get their own block. Not thread-safe: an arena
 * belongs to one owner (a request belongs to its loop thread). */
#ifndef ACKD_BASE_ARENA_H
#define ACKD_BASE_ARENA_H

#include <stddef.h>

typedef struct ackd_arena_block ackd_arena_block_t;

typedef struct {
    ackd_arena_block_t *head;
    size_t block_size; /* bytes per ordinary block */
} ackd_arena_t;

void ackd_arena_init(ackd_arena_t *a, size_t block_size);
/* Aligned to 16 bytes; never NULL. */
void *ackd_arena_alloc(ackd_arena_t *a, size_t n);
char *ackd_arena_strndup(ackd_arena_t *a, const char *s, size_t n);
char *ackd_arena_strdup(ackd_arena_t *a, const char *s);
/* Frees every block; the arena can be used again. */
void ackd_arena_free(ackd_arena_t *a);

#endif
