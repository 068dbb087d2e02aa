/* units.h - durations and sizes as people write them in config and requests.
 *
 * Durations: a non-negative integer or decimal with a unit: "250ms", "30s",
 * "5m", "1h", "7d"; a bare number means seconds ("1.5" = 1500 ms).
 * Sizes: an integer with an optional binary unit: "512", "64k", "1m", "2g"
 * (k = 1024). Both reject signs, empty strings, unknown units, trailing junk
 * and values that overflow. Pure functions; any thread. */
#ifndef ACKD_BASE_UNITS_H
#define ACKD_BASE_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parses a duration into milliseconds. 0 or ACKD_EINVAL / ACKD_ERANGE. */
int ackd_parse_duration_ms(const char *s, int64_t *out_ms);
/* Parses a size into bytes. 0 or ACKD_EINVAL / ACKD_ERANGE. */
int ackd_parse_size(const char *s, uint64_t *out_bytes);
/* Parses a base-10 integer, the whole string. 0 or ACKD_EINVAL / ACKD_ERANGE. */
int ackd_parse_int(const char *s, int64_t *out);

/* Writes the shortest exact form ("250ms", "30s", "5m", "1h", "7d"). */
void ackd_format_duration(int64_t ms, char *out, size_t outlen);
/* Writes the shortest exact form ("512", "64k", "1m", "2g"). */
void ackd_format_size(uint64_t bytes, char *out, size_t outlen);

#endif
