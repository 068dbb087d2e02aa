/* units.c - duration and size parsing (see units.h). */
#include "base/units.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"

int ackd_parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (*p < '0' || *p > '9')
        return ACKD_EINVAL;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > (uint64_t)INT64_MAX)
            return ACKD_ERANGE;
    }
    if (*p)
        return ACKD_EINVAL;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* Reads digits with an optional fraction, scaled by 1000 (milli-units).
 * Digits past the third decimal are accepted and ignored. */
static int parse_milli(const char **pp, unsigned __int128 *out)
{
    const char *p = *pp;
    if (*p < '0' || *p > '9')
        return ACKD_EINVAL;
    unsigned __int128 whole = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (unsigned)(*p - '0');
        if (whole > (unsigned __int128)UINT64_MAX)
            return ACKD_ERANGE;
    }
    unsigned frac = 0, scale = 100;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return ACKD_EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
            frac += (unsigned)(*p - '0') * scale;
            scale /= 10;
        }
    }
    *out = whole * 1000 + frac;
    *pp = p;
    return 0;
}

int ackd_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000}};
    const char *p = s;
    unsigned __int128 milli;
    int rc = parse_milli(&p, &milli);
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(p, units[i].unit) != 0)
            continue;
        /* milli is the value times 1000, so the result is milli * unit / 1000 */
        unsigned __int128 v = milli * units[i].ms;
        if (v % 1000 != 0)
            return ACKD_EINVAL; /* a fraction of a millisecond */
        if (v / 1000 > (unsigned __int128)INT64_MAX)
            return ACKD_ERANGE;
        *out_ms = (int64_t)(v / 1000);
        return 0;
    }
    return ACKD_EINVAL;
}

int ackd_parse_size(const char *s, uint64_t *out_bytes)
{
    const char *p = s;
    if (*p < '0' || *p > '9')
        return ACKD_EINVAL;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ACKD_ERANGE;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': shift = 10; p++; break;
    case 'm': case 'M': shift = 20; p++; break;
    case 'g': case 'G': shift = 30; p++; break;
    default: return ACKD_EINVAL;
    }
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p)
        return ACKD_EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return ACKD_ERANGE;
    *out_bytes = v << shift;
    return 0;
}

void ackd_format_duration(int64_t ms, char *out, size_t outlen)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(out, outlen, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "%lldms", (long long)ms);
}

void ackd_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char *units = "gmk";
    for (int i = 0; i < 3; i++) {
        unsigned shift = (unsigned)(30 - 10 * i);
        if (bytes != 0 && bytes % (1ull << shift) == 0) {
            snprintf(out, outlen, "%llu%c", (unsigned long long)(bytes >> shift), units[i]);
            return;
        }
    }
    snprintf(out, outlen, "%llu", (unsigned long long)bytes);
}
