/* clock.c - time sources and RFC 3339 (see clock.h). */
#include "base/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/error.h"

int64_t ackd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ackd_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void ackd_time_format(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms / 1000);
    int milli = (int)(ms % 1000);
    if (milli < 0) {
        milli += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
}

static int digits(const char **pp, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*pp)[i];
        if (c < '0' || c > '9')
            return ACKD_EINVAL;
        v = v * 10 + (c - '0');
    }
    *pp += n;
    *out = v;
    return 0;
}

static int expect(const char **pp, const char *set)
{
    if (!**pp || !strchr(set, **pp))
        return ACKD_EINVAL;
    (*pp)++;
    return 0;
}

int ackd_time_parse(const char *s, int64_t *out_ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec, milli = 0;
    if (digits(&p, 4, &y) || expect(&p, "-") || digits(&p, 2, &mo) || expect(&p, "-") ||
        digits(&p, 2, &d) || expect(&p, "Tt ") || digits(&p, 2, &h) || expect(&p, ":") ||
        digits(&p, 2, &mi) || expect(&p, ":") || digits(&p, 2, &sec))
        return ACKD_EINVAL;
    if (*p == '.') {
        p++;
        int scale = 100, any = 0;
        for (; *p >= '0' && *p <= '9'; p++, any = 1) {
            milli += (*p - '0') * scale;
            scale /= 10;
        }
        if (!any)
            return ACKD_EINVAL;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (digits(&p, 2, &oh) || expect(&p, ":") || digits(&p, 2, &om))
            return ACKD_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return ACKD_EINVAL;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return ACKD_EINVAL;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + milli;
    return 0;
}
