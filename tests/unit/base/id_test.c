/* id_test.c - tests src/base/id.c: layout, charset, ordering by time,
 * randomness and validation. */
#include <string.h>

#include "../test.h"
#include "base/clock.h"
#include "base/id.h"

static const char charset[] = "0123456789abcdefghjkmnpqrstvwxyz";

TEST(id_layout_and_charset)
{
    char id[ACKD_ID_MAX];
    for (int i = 0; i < 200; i++) {
        ackd_id_new("tsk_", id);
        CHECK_INT(strlen(id), 4 + ACKD_ID_BODY_LEN);
        CHECK(strncmp(id, "tsk_", 4) == 0);
        CHECK_INT(strspn(id + 4, charset), ACKD_ID_BODY_LEN);
        CHECK(id[4] <= '7'); /* the first digit carries 3 bits */
        CHECK(ackd_id_valid("tsk_", id));
    }
    ackd_id_new("", id);
    CHECK_INT(strlen(id), ACKD_ID_BODY_LEN);
    CHECK(ackd_id_valid("", id));
    ackd_id_new("longpfx_", id); /* the longest prefix ACKD_ID_MAX is sized for */
    CHECK_INT(strlen(id), 8 + ACKD_ID_BODY_LEN);
    CHECK(ackd_id_valid("longpfx_", id));
}

TEST(id_no_ambiguous_letters)
{
    char id[ACKD_ID_MAX];
    for (int i = 0; i < 500; i++) {
        ackd_id_new("", id);
        CHECK(strpbrk(id, "ilouILOU") == NULL);
        for (const char *p = id; *p; p++)
            CHECK(!(*p >= 'A' && *p <= 'Z'));
    }
}

TEST(id_time_prefix_is_exact)
{
    char id[ACKD_ID_MAX];
    ackd_id_new_at("", 0, id);
    CHECK(strncmp(id, "0000000000", 10) == 0); /* 48 bits of time = 10 digits (incl. 2 spare) */
    ackd_id_new_at("", 1, id);
    CHECK(strncmp(id, "0000000001", 10) == 0);
    ackd_id_new_at("", 32, id);
    CHECK(strncmp(id, "0000000010", 10) == 0);
    /* 2^48 - 1 ms, the largest time: all 48 bits set */
    ackd_id_new_at("", (int64_t)((1ULL << 48) - 1), id);
    CHECK(strncmp(id, "7zzzzzzzzz", 10) == 0);
}

TEST(id_ordered_by_time)
{
    char a[ACKD_ID_MAX], b[ACKD_ID_MAX];
    int64_t base = 1763971200000; /* 2025-11-24 */
    const int64_t steps[] = {1, 2, 31, 32, 33, 1000, 86400000, 1LL << 40};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        for (int k = 0; k < 20; k++) {
            ackd_id_new_at("tsk_", base, a);
            ackd_id_new_at("tsk_", base + steps[i], b);
            CHECK(strcmp(a, b) < 0);
        }
    }
    /* same ms: the time part is equal, only the random part differs */
    ackd_id_new_at("tsk_", base, a);
    ackd_id_new_at("tsk_", base, b);
    CHECK(strncmp(a, b, 4 + 10) == 0);
    CHECK(strcmp(a, b) != 0);
}

TEST(id_new_uses_current_time)
{
    char before[ACKD_ID_MAX], id[ACKD_ID_MAX], after[ACKD_ID_MAX];
    ackd_id_new_at("", ackd_now_ms() - 1, before);
    ackd_id_new("", id);
    ackd_id_new_at("", ackd_now_ms() + 1, after);
    CHECK(strncmp(before, id, 10) <= 0);
    CHECK(strncmp(id, after, 10) <= 0);
}

TEST(id_unguessable)
{
    enum { N = 1000 };
    static char ids[N][ACKD_ID_MAX];
    /* across milliseconds the 80 random bits are fresh: every digit of the
     * random tail takes several values over N ids (16 digits) */
    for (int i = 0; i < N; i++)
        ackd_id_new_at("req_", 1700000000000 + 2 * i, ids[i]);
    for (int pos = 4 + 10; pos < 4 + ACKD_ID_BODY_LEN; pos++) {
        int seen[32] = {0}, distinct = 0;
        for (int i = 0; i < N; i++) {
            const char *c = strchr(charset, ids[i][pos]);
            CHECK(c != NULL);
            if (!seen[c - charset]++)
                distinct++;
        }
        CHECK(distinct >= 16);
    }
}

TEST(id_monotonic_within_a_millisecond)
{
    enum { N = 1000 };
    static char ids[N][ACKD_ID_MAX];
    for (int i = 0; i < N; i++)
        ackd_id_new_at("tsk_", 1700000000001, ids[i]);
    /* strictly increasing, so tasks of one millisecond keep their order */
    for (int i = 1; i < N; i++)
        CHECK(strcmp(ids[i - 1], ids[i]) < 0);
    /* and the steps are random, so the next id cannot be derived: the last
     * five digits (25 bits) of consecutive ids do not move in lockstep */
    int distinct_tails = 0;
    for (int i = 1; i < N; i++)
        distinct_tails += strcmp(ids[i - 1] + 4 + 21, ids[i] + 4 + 21) != 0;
    CHECK(distinct_tails > N - 10);
}

TEST(id_random_bytes)
{
    unsigned char a[32], b[32];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    ackd_random_bytes(a, sizeof a);
    ackd_random_bytes(b, sizeof b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    ackd_random_bytes(a, 0); /* nothing to do */
}

TEST(id_valid)
{
    char id[ACKD_ID_MAX];
    ackd_id_new("tsk_", id);
    CHECK(ackd_id_valid("tsk_", id));
    CHECK(!ackd_id_valid("lse_", id));      /* wrong prefix */
    CHECK(!ackd_id_valid("", id));          /* prefix counts in the length */
    CHECK(!ackd_id_valid("tsk_", id + 4));  /* no prefix */
    CHECK(ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fav"));
    CHECK(ackd_id_valid("tsk_", "tsk_7zzzzzzzzzzzzzzzzzzzzzzzzz"));
    CHECK(!ackd_id_valid("tsk_", "tsk_8zzzzzzzzzzzzzzzzzzzzzzzzz")); /* > 128 bits */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fa"));   /* 25 */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fav0")); /* 27 */
    CHECK(!ackd_id_valid("tsk_", "tsk_01ARZ3NDEKTSV4RRFFQ69G5FAV"));  /* upper case */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fau"));  /* u */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fai"));  /* i */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fal"));  /* l */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fao"));  /* o */
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fa-"));
    CHECK(!ackd_id_valid("tsk_", "tsk_01arz3ndektsv4rrffq69g5fa "));
    CHECK(!ackd_id_valid("tsk_", ""));
    CHECK(!ackd_id_valid("tsk_", "tsk_"));
    CHECK(!ackd_id_valid("tsk_", "TSK_01arz3ndektsv4rrffq69g5fav"));
}
