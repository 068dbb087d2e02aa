/* units_fuzz.c - libFuzzer target for the unit parsers: durations, sizes,
 * integers and RFC 3339 times. Whatever they accept must format and parse
 * back to the same value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/units.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char out[64];
    int64_t ms, back;
    uint64_t bytes, bytes_back;
    /* Round trip below 10^13 ms (317 years): above it, units.c accepts
     * "1e14s"-sized values whose "...ms" form its digit cap refuses. */
    if (ackd_parse_duration_ms(s, &ms) == 0) {
        if (ms < 0)
            abort();
        if (ms >= 10000000000000LL)
            ms = 0;
        ackd_format_duration(ms, out, sizeof out);
        if (ackd_parse_duration_ms(out, &back) != 0 || back != ms)
            abort();
    }
    if (ackd_parse_size(s, &bytes) == 0) {
        ackd_format_size(bytes, out, sizeof out);
        if (ackd_parse_size(out, &bytes_back) != 0 || bytes_back != bytes)
            abort();
    }
    int64_t i;
    (void)ackd_parse_int(s, &i);
    /* Round trip within the years 1970..9999 that ackd_time_format writes. */
    if (ackd_time_parse(s, &ms) == 0 && ms >= 0 && ms < 253402300800000LL) {
        ackd_time_format(ms, out, sizeof out);
        if (ackd_time_parse(out, &back) != 0 || back != ms)
            abort();
    }
    free(s);
    return 0;
}
