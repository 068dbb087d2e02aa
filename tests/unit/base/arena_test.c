/* arena_test.c - tests src/base/arena.c: alignment, blocks, big one-offs,
 * string copies and reuse after free. */
#include <stdint.h>
#include <string.h>

#include "../test.h"
#include "base/arena.h"

TEST(arena_alignment_and_distinct)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 256);
    char *prev = NULL;
    for (size_t n = 1; n < 100; n += 7) {
        char *p = ackd_arena_alloc(&a, n);
        CHECK(p != NULL);
        CHECK_INT((uintptr_t)p % 16, 0);
        memset(p, 0xab, n); /* writable over its whole size (ASan checks) */
        CHECK(p != prev);
        prev = p;
    }
    ackd_arena_free(&a);
    CHECK(a.head == NULL);
}

TEST(arena_allocations_do_not_overlap)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 128);
    unsigned char *ptrs[200];
    size_t sizes[200];
    for (int i = 0; i < 200; i++) {
        sizes[i] = (size_t)(i % 40) + 1;
        ptrs[i] = ackd_arena_alloc(&a, sizes[i]);
        memset(ptrs[i], i, sizes[i]);
    }
    for (int i = 0; i < 200; i++)
        for (size_t k = 0; k < sizes[i]; k++)
            CHECK_INT(ptrs[i][k], (unsigned char)i);
    ackd_arena_free(&a);
}

TEST(arena_zero_size)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 64);
    void *p = ackd_arena_alloc(&a, 0);
    CHECK(p != NULL);
    ackd_arena_free(&a);
}

TEST(arena_big_allocation_keeps_current_block)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 1024);
    char *small1 = ackd_arena_alloc(&a, 16);
    char *big = ackd_arena_alloc(&a, 100000);
    memset(big, 'b', 100000);
    char *small2 = ackd_arena_alloc(&a, 16);
    /* the big one got its own block; the next small one follows the first */
    CHECK(small2 == small1 + 16);
    CHECK_INT(big[99999], 'b');
    ackd_arena_free(&a);
}

TEST(arena_big_first_allocation)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 1024);
    char *big = ackd_arena_alloc(&a, 5000);
    memset(big, 1, 5000);
    char *s = ackd_arena_alloc(&a, 16);
    memset(s, 2, 16);
    CHECK_INT(big[4999], 1);
    ackd_arena_free(&a);
}

TEST(arena_strings)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 64);
    char *s = ackd_arena_strdup(&a, "hello");
    CHECK_STR(s, "hello");
    char *t = ackd_arena_strndup(&a, "abcdef", 3);
    CHECK_STR(t, "abc");
    char *e = ackd_arena_strndup(&a, "xyz", 0);
    CHECK_STR(e, "");
    /* the source need not be terminated */
    char raw[4] = {'w', 'x', 'y', 'z'};
    char *r = ackd_arena_strndup(&a, raw, 4);
    CHECK_STR(r, "wxyz");
    char longs[300];
    memset(longs, 'L', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    char *l = ackd_arena_strdup(&a, longs);
    CHECK_STR(l, longs);
    CHECK_STR(s, "hello"); /* earlier strings are untouched */
    ackd_arena_free(&a);
}

TEST(arena_reuse_after_free)
{
    ackd_arena_t a;
    ackd_arena_init(&a, 256);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 50; i++)
            memset(ackd_arena_alloc(&a, 100), round, 100);
        ackd_arena_free(&a);
        CHECK(a.head == NULL);
        CHECK_INT(a.block_size, 256);
    }
    ackd_arena_free(&a); /* freeing an empty arena is fine */
}
