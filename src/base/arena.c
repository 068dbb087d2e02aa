/* arena.c - bump allocation for per-request memory (see arena.h). */
#include "base/arena.h"

#include <string.h>

#include "base/alloc.h"

struct ackd_arena_block {
    ackd_arena_block_t *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void ackd_arena_init(ackd_arena_t *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size;
}

void *ackd_arena_alloc(ackd_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    ackd_arena_block_t *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t size = n > a->block_size / 2 ? n : a->block_size;
        b = ackd_malloc(sizeof *b + size);
        b->used = 0;
        b->size = size;
        if (size == n && a->head) {
            /* a big one-off block goes behind the current one, which keeps its room */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *ackd_arena_strndup(ackd_arena_t *a, const char *s, size_t n)
{
    char *d = ackd_arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ackd_arena_strdup(ackd_arena_t *a, const char *s)
{
    return ackd_arena_strndup(a, s, strlen(s));
}

void ackd_arena_free(ackd_arena_t *a)
{
    ackd_arena_block_t *b = a->head;
    while (b) {
        ackd_arena_block_t *next = b->next;
        ackd_free(b);
        b = next;
    }
    a->head = NULL;
}
