/* retry_test.c - tests src/queue/retry.c: the backoff ceiling doubles from
 * the base and stops at the cap, the jittered delay stays in [0, ceiling]
 * and covers it, and a later Retry-After wins. */
#include <stdint.h>

#include "../test.h"
#include "queue/retry.h"

TEST(backoff_ceiling_doubles_then_caps)
{
    static const struct {
        int n;
        int64_t want;
    } cases[] = {
        {1, 100},   {2, 200},   {3, 400},    {4, 800},    {5, 1600},
        {6, 3200},  {7, 6400},  {8, 10000},  {9, 10000},  {30, 10000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_INT(ackd_backoff_ceiling_ms(100, 10000, cases[i].n), cases[i].want);
    /* a cap that is not a power-of-two multiple of the base is reached exactly */
    CHECK_INT(ackd_backoff_ceiling_ms(1000, 300000, 9), 256000);
    CHECK_INT(ackd_backoff_ceiling_ms(1000, 300000, 10), 300000);
    /* base above the cap: the cap */
    CHECK_INT(ackd_backoff_ceiling_ms(5000, 1000, 1), 1000);
}

TEST(backoff_next_starts_at_min_doubles_and_stops_at_max)
{
    int64_t w = 0;
    static const int64_t want[] = {100, 200, 400, 800, 1600, 2000, 2000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        w = ackd_backoff_next_ms(w, 100, 2000);
        CHECK_INT(w, want[i]);
    }
    /* no overflow near the top of the range */
    CHECK_INT(ackd_backoff_next_ms(INT64_MAX / 2 + 1, 1, INT64_MAX), INT64_MAX);
}

TEST(backoff_ceiling_n_below_one_is_first_attempt)
{
    CHECK_INT(ackd_backoff_ceiling_ms(100, 10000, 0), 100);
    CHECK_INT(ackd_backoff_ceiling_ms(100, 10000, -1), 100);
    CHECK_INT(ackd_backoff_ceiling_ms(100, 10000, INT32_MIN), 100);
}

TEST(backoff_ceiling_no_overflow_for_large_n)
{
    /* the config's widest range: base 10 ms, cap 30 days */
    CHECK_INT(ackd_backoff_ceiling_ms(10, 30LL * 86400 * 1000, 1000), 30LL * 86400 * 1000);
    CHECK_INT(ackd_backoff_ceiling_ms(10, 30LL * 86400 * 1000, INT32_MAX),
              30LL * 86400 * 1000);
    /* no cap to speak of: doubling must stop before int64 overflows */
    int64_t big = ackd_backoff_ceiling_ms(1000, INT64_MAX, 100);
    CHECK(big > 0);
    CHECK(big <= INT64_MAX);
    CHECK(big >= INT64_MAX / 2);
    CHECK_INT(ackd_backoff_ceiling_ms(1, INT64_MAX, 64), INT64_MAX);
    CHECK_INT(ackd_backoff_ceiling_ms(3, INT64_MAX - 1, 1000), INT64_MAX - 1);
    /* a zero base stays zero and returns at once, whatever n */
    CHECK_INT(ackd_backoff_ceiling_ms(0, 1000, INT32_MAX), 0);
    /* a jittered delay on such a ceiling stays in range */
    int64_t d = ackd_backoff_ms(1000, INT64_MAX, 100, 0.999999, 0);
    CHECK(d >= 0);
}

TEST(backoff_jitter_endpoints)
{
    CHECK_INT(ackd_backoff_ms(100, 10000, 3, 0.0, 0), 0);
    CHECK_INT(ackd_backoff_ms(100, 10000, 3, 0.5, 0), 200);
    int64_t top = ackd_backoff_ms(100, 10000, 3, 0.9999999, 0);
    CHECK(top >= 399 && top <= 400);
}

TEST(backoff_jitter_within_ceiling_and_spread)
{
    enum { DRAWS = 20000, BINS = 10 };
    const int64_t base = 100, cap = 5000;
    for (int n = 1; n <= 8; n++) {
        int64_t ceiling = ackd_backoff_ceiling_ms(base, cap, n);
        int bins[BINS] = {0};
        int64_t lo = INT64_MAX, hi = -1;
        for (int i = 0; i < DRAWS; i++) {
            double j = ackd_jitter();
            CHECK(j >= 0.0 && j < 1.0);
            int64_t d = ackd_backoff_ms(base, cap, n, j, 0);
            CHECK(d >= 0 && d <= ceiling);
            if (d < lo)
                lo = d;
            if (d > hi)
                hi = d;
            int b = (int)(d * BINS / (ceiling + 1));
            bins[b]++;
        }
        /* full jitter: the draws reach both ends and fill every tenth */
        CHECK(lo <= ceiling / 20);
        CHECK(hi >= ceiling - ceiling / 20 - 1);
        for (int b = 0; b < BINS; b++)
            CHECK(bins[b] > DRAWS / BINS / 2);
    }
}

TEST(jitter_is_uniform_and_not_constant)
{
    double sum = 0, prev = -1;
    int repeats = 0;
    for (int i = 0; i < 10000; i++) {
        double j = ackd_jitter();
        CHECK(j >= 0.0 && j < 1.0);
        sum += j;
        repeats += j == prev;
        prev = j;
    }
    CHECK(sum / 10000 > 0.45 && sum / 10000 < 0.55);
    CHECK(repeats < 3);
}

TEST(backoff_retry_after_wins_when_later)
{
    /* later than any jittered value: it wins */
    CHECK_INT(ackd_backoff_ms(100, 10000, 1, 0.99, 60000), 60000);
    /* earlier than the jittered value: the backoff wins */
    CHECK_INT(ackd_backoff_ms(100, 10000, 4, 0.5, 10), 400);
    /* zero means none */
    CHECK_INT(ackd_backoff_ms(100, 10000, 4, 0.5, 0), 400);
    /* over many draws the result is never below retry_after */
    for (int i = 0; i < 1000; i++) {
        int64_t d = ackd_backoff_ms(100, 10000, 5, ackd_jitter(), 700);
        CHECK(d >= 700 && d <= 1600);
    }
}
