/* units_test.c - tests of src/base/units.c: durations, sizes, integers and
 * their shortest formatting. */
#include <stdint.h>

#include "base/error.h"
#include "base/units.h"
#include "../test.h"

static int64_t dur(const char *s)
{
    int64_t ms = -12345;
    return ackd_parse_duration_ms(s, &ms) == 0 ? ms : -1;
}

static int dur_rc(const char *s)
{
    int64_t ms = -12345;
    int rc = ackd_parse_duration_ms(s, &ms);
    return rc != 0 && ms != -12345 ? 99 : rc; /* a failure leaves *out alone */
}

static int size_rc(const char *s, uint64_t *out)
{
    *out = 777;
    int rc = ackd_parse_size(s, out);
    return rc != 0 && *out != 777 ? 99 : rc;
}

TEST(units_duration_parse)
{
    CHECK_INT(dur("250ms"), 250);
    CHECK_INT(dur("30s"), 30000);
    CHECK_INT(dur("5m"), 300000);
    CHECK_INT(dur("1h"), 3600000);
    CHECK_INT(dur("7d"), 7LL * 86400000);
    CHECK_INT(dur("1.5"), 1500);
    CHECK_INT(dur("0"), 0);
    CHECK_INT(dur("0ms"), 0);
    CHECK_INT(dur("1.5s"), 1500);
    CHECK_INT(dur("0.25m"), 15000);
    CHECK_INT(dur("2.5ms"), -1);
    CHECK_INT(dur("007s"), 7000);
}

TEST(units_duration_rejects)
{
    CHECK_INT(dur_rc(""), ACKD_EINVAL);
    CHECK_INT(dur_rc("-1s"), ACKD_EINVAL);
    CHECK_INT(dur_rc("+1s"), ACKD_EINVAL);
    CHECK_INT(dur_rc("5x"), ACKD_EINVAL);
    CHECK_INT(dur_rc("1.5ms"), ACKD_EINVAL);
    CHECK_INT(dur_rc("s"), ACKD_EINVAL);
    CHECK_INT(dur_rc(".5s"), ACKD_EINVAL);
    CHECK_INT(dur_rc("1.s"), ACKD_EINVAL);
    CHECK_INT(dur_rc("5 s"), ACKD_EINVAL);
    CHECK_INT(dur_rc(" 5s"), ACKD_EINVAL);
    CHECK_INT(dur_rc("5s "), ACKD_EINVAL);
    CHECK_INT(dur_rc("5S"), ACKD_EINVAL);
    CHECK_INT(dur_rc("1h30m"), ACKD_EINVAL);
    CHECK_INT(dur_rc("99999999999999999999d"), ACKD_ERANGE);
    /* 106751991167d = 9223372036828800000 ms fits in int64; one day more does not */
    CHECK_INT(dur_rc("106751991167d"), 0);
    CHECK_INT(dur_rc("106751991168d"), ACKD_ERANGE);
    CHECK_INT(dur_rc("9223372036854775807ms"), 0);
    CHECK_INT(dur_rc("9223372036854775808ms"), ACKD_ERANGE);
    CHECK_INT(dur_rc("18446744073709551615ms"), ACKD_ERANGE);
}

TEST(units_duration_large)
{
    /* Far beyond any configured bound, still exact. */
    CHECK_INT(dur("100000000d"), 100000000LL * 86400000);
    CHECK_INT(dur("9000000000000ms"), 9000000000000LL);
}

TEST(units_size_parse)
{
    uint64_t v;
    CHECK_INT(size_rc("64k", &v), 0);
    CHECK_INT(v, 65536);
    CHECK_INT(size_rc("1m", &v), 0);
    CHECK_INT(v, 1 << 20);
    CHECK_INT(size_rc("512", &v), 0);
    CHECK_INT(v, 512);
    CHECK_INT(size_rc("2g", &v), 0);
    CHECK_INT(v, 2LL << 30);
    CHECK_INT(size_rc("0", &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(size_rc("8K", &v), 0);
    CHECK_INT(v, 8192);
    CHECK_INT(size_rc("1mb", &v), 0);
    CHECK_INT(v, 1 << 20);
    CHECK_INT(size_rc("1000000000000000000", &v), 0);
    CHECK(v == 1000000000000000000ULL);
    CHECK_INT(size_rc("17179869183g", &v), 0);
    CHECK(v == 17179869183ULL << 30);
}

TEST(units_size_rejects)
{
    uint64_t v;
    CHECK_INT(size_rc("", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("k", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("1t", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("-1", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("1.5k", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("1 k", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("1kk", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("1kbb", &v), ACKD_EINVAL);
    CHECK_INT(size_rc("18446744073709551616", &v), ACKD_ERANGE);
    CHECK_INT(size_rc("99999999999999999999", &v), ACKD_ERANGE);
    CHECK_INT(size_rc("17179869184g", &v), ACKD_ERANGE);
    CHECK_INT(size_rc("18014398509481984k", &v), ACKD_ERANGE);
}

TEST(units_int_parse)
{
    int64_t v;
    CHECK_INT(ackd_parse_int("42", &v), 0);
    CHECK_INT(v, 42);
    CHECK_INT(ackd_parse_int("-7", &v), 0);
    CHECK_INT(v, -7);
    CHECK_INT(ackd_parse_int("9223372036854775807", &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_INT(ackd_parse_int("9223372036854775808", &v), ACKD_ERANGE);
    CHECK_INT(ackd_parse_int("", &v), ACKD_EINVAL);
    CHECK_INT(ackd_parse_int("-", &v), ACKD_EINVAL);
    CHECK_INT(ackd_parse_int("12a", &v), ACKD_EINVAL);
    CHECK_INT(ackd_parse_int(" 1", &v), ACKD_EINVAL);
}

TEST(units_format)
{
    char s[32];
    ackd_format_duration(250, s, sizeof s);
    CHECK_STR(s, "250ms");
    ackd_format_duration(30000, s, sizeof s);
    CHECK_STR(s, "30s");
    ackd_format_duration(300000, s, sizeof s);
    CHECK_STR(s, "5m");
    ackd_format_duration(3600000, s, sizeof s);
    CHECK_STR(s, "1h");
    ackd_format_duration(7LL * 86400000, s, sizeof s);
    CHECK_STR(s, "7d");
    ackd_format_duration(1500, s, sizeof s);
    CHECK_STR(s, "1500ms");
    ackd_format_duration(90000, s, sizeof s);
    CHECK_STR(s, "90s");
    ackd_format_duration(0, s, sizeof s);
    CHECK_STR(s, "0ms");
    ackd_format_size(512, s, sizeof s);
    CHECK_STR(s, "512");
    ackd_format_size(65536, s, sizeof s);
    CHECK_STR(s, "64k");
    ackd_format_size(1 << 20, s, sizeof s);
    CHECK_STR(s, "1m");
    ackd_format_size(2ULL << 30, s, sizeof s);
    CHECK_STR(s, "2g");
    ackd_format_size(1536, s, sizeof s);
    CHECK_STR(s, "1536");
    ackd_format_size(0, s, sizeof s);
    CHECK_STR(s, "0");
    ackd_format_size(UINT64_MAX, s, sizeof s);
    CHECK_STR(s, "18446744073709551615");
}

TEST(units_format_parses_back)
{
    static const int64_t ms[] = {1, 999, 1000, 1001, 59999, 60000, 3600000, 86400000,
                                 86400001, 30LL * 86400000, 9000000000000LL};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        char s[32];
        int64_t back = -1;
        ackd_format_duration(ms[i], s, sizeof s);
        CHECK_INT(ackd_parse_duration_ms(s, &back), 0);
        CHECK_INT(back, ms[i]);
    }
    static const uint64_t bytes[] = {1, 1023, 1024, 1025, 1ULL << 20, 3ULL << 30, 1ULL << 60,
                                     (1ULL << 60) + 1};
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        char s[32];
        uint64_t back = 0;
        ackd_format_size(bytes[i], s, sizeof s);
        CHECK_INT(ackd_parse_size(s, &back), 0);
        CHECK(back == bytes[i]);
    }
}
