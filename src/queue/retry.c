/* retry.c - backoff arithmetic (see retry.h). */
#include "queue/retry.h"

#include "base/id.h"

int64_t ackd_backoff_ceiling_ms(int64_t base_ms, int64_t cap_ms, int n)
{
    if (n < 1)
        n = 1;
    int64_t d = base_ms;
    /* jumps to the cap before 2d could pass it (or overflow, for caps near
     * INT64_MAX); stops at once on a zero base, so a huge n costs nothing */
    for (int i = 1; i < n && d > 0 && d < cap_ms; i++)
        d = d > cap_ms / 2 ? cap_ms : d * 2;
    return d < cap_ms ? d : cap_ms;
}

int64_t ackd_backoff_next_ms(int64_t prev_ms, int64_t min_ms, int64_t max_ms)
{
    if (prev_ms <= 0)
        return min_ms;
    return prev_ms > max_ms / 2 ? max_ms : prev_ms * 2;
}

int64_t ackd_backoff_ms(int64_t base_ms, int64_t cap_ms, int n, double jitter,
                        int64_t retry_after_ms)
{
    int64_t ceiling = ackd_backoff_ceiling_ms(base_ms, cap_ms, n);
    int64_t d = (int64_t)((double)ceiling * jitter);
    return d > retry_after_ms ? d : retry_after_ms;
}

double ackd_jitter(void)
{
    uint64_t r;
    ackd_random_bytes(&r, sizeof r);
    return (double)(r >> 11) / (double)(1ull << 53);
}
