/* clock_test.c - tests src/base/clock.c: RFC 3339 formatting and parsing,
 * offsets, fractions, bad inputs, and the clocks themselves. */
#include <string.h>

#include "../test.h"
#include "base/clock.h"
#include "base/error.h"

static int64_t parse_ok(const char *s)
{
    int64_t ms = -12345;
    if (ackd_time_parse(s, &ms) != 0) {
        ackd_test_fail(__FILE__, __LINE__, "\"%s\" refused", s);
        return -12345;
    }
    return ms;
}

TEST(clock_format_known_times)
{
    char out[32];
    ackd_time_format(0, out, sizeof out);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    ackd_time_format(1763978400123, out, sizeof out);
    CHECK_STR(out, "2025-11-24T10:00:00.123Z");
    CHECK_INT(strlen(out), 24);
    ackd_time_format(951782400000, out, sizeof out); /* leap day */
    CHECK_STR(out, "2000-02-29T00:00:00.000Z");
    ackd_time_format(-1, out, sizeof out); /* just before the epoch */
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    ackd_time_format(-1000, out, sizeof out);
    CHECK_STR(out, "1969-12-31T23:59:59.000Z");
}

TEST(clock_format_truncates_safely)
{
    char out[8];
    memset(out, 'x', sizeof out);
    ackd_time_format(0, out, sizeof out);
    CHECK_STR(out, "1970-01");
}

TEST(clock_parse_known_times)
{
    CHECK_INT(parse_ok("1970-01-01T00:00:00Z"), 0);
    CHECK_INT(parse_ok("2025-11-24T10:00:00.123Z"), 1763978400123);
    CHECK_INT(parse_ok("2025-11-24t10:00:00.123z"), 1763978400123); /* lower case allowed */
    CHECK_INT(parse_ok("2025-11-24 10:00:00.123Z"), 1763978400123); /* RFC 3339 §5.6 note */
    CHECK_INT(parse_ok("2000-02-29T00:00:00Z"), 951782400000);
    CHECK_INT(parse_ok("1969-12-31T23:59:59.999Z"), -1);
}

TEST(clock_parse_fractions)
{
    CHECK_INT(parse_ok("2025-11-24T10:00:00.1Z"), 1763978400100);
    CHECK_INT(parse_ok("2025-11-24T10:00:00.12Z"), 1763978400120);
    CHECK_INT(parse_ok("2025-11-24T10:00:00.123456789Z"), 1763978400123); /* truncated to ms */
    CHECK_INT(parse_ok("2025-11-24T10:00:00.999999Z"), 1763978400999);
    CHECK_INT(parse_ok("2025-11-24T10:00:00.000Z"), 1763978400000);
}

TEST(clock_parse_offsets)
{
    int64_t utc = parse_ok("2025-11-24T10:00:00Z");
    CHECK_INT(parse_ok("2025-11-24T10:00:00+00:00"), utc);
    CHECK_INT(parse_ok("2025-11-24T10:00:00-00:00"), utc);
    CHECK_INT(parse_ok("2025-11-24T11:00:00+01:00"), utc);
    CHECK_INT(parse_ok("2025-11-24T05:30:00-04:30"), utc);
    CHECK_INT(parse_ok("2025-11-24T15:45:00.000+05:45"), utc);
    CHECK_INT(parse_ok("2025-11-23T23:00:00-11:00"), utc); /* across midnight */
    CHECK_INT(parse_ok("2025-11-25T00:00:00+14:00"), utc);
}

TEST(clock_round_trip)
{
    const int64_t times[] = {0, 1, 999, 1000, 86399999, 951782400000, 1763978400123,
                             4102444799999 /* 2099-12-31T23:59:59.999Z */, -1, -86400000};
    char out[32];
    for (size_t i = 0; i < sizeof times / sizeof *times; i++) {
        ackd_time_format(times[i], out, sizeof out);
        int64_t back = -1;
        CHECK_INT(ackd_time_parse(out, &back), 0);
        CHECK_INT(back, times[i]);
    }
    /* and a sweep of odd values */
    for (int64_t t = 1700000000000; t < 1700000000000 + 400LL * 86400000; t += 86400000 + 3607001) {
        ackd_time_format(t, out, sizeof out);
        int64_t back = -1;
        CHECK_INT(ackd_time_parse(out, &back), 0);
        CHECK_INT(back, t);
    }
}

TEST(clock_parse_bad_inputs)
{
    const char *bad[] = {
        "",
        "2025",
        "2025-11-24",                   /* a date is not a time */
        "2025-11-24T10:00:00",          /* no offset */
        "2025-11-24T10:00Z",            /* no seconds */
        "2025-11-24T10:00:00.Z",        /* empty fraction */
        "2025-11-24T10:00:00ZZ",        /* trailing junk */
        "2025-11-24T10:00:00Z ",
        " 2025-11-24T10:00:00Z",
        "2025-11-24X10:00:00Z",         /* bad separator */
        "2025/11/24T10:00:00Z",
        "25-11-24T10:00:00Z",
        "2025-1-24T10:00:00Z",
        "2025-11-24T1:00:00Z",
        "2025-00-24T10:00:00Z",         /* month 0 */
        "2025-13-24T10:00:00Z",         /* month 13 */
        "2025-11-00T10:00:00Z",         /* day 0 */
        "2025-11-32T10:00:00Z",         /* day 32 */
        "2025-11-24T24:00:00Z",         /* hour 24 */
        "2025-11-24T10:60:00Z",         /* minute 60 */
        "2025-11-24T10:00:61Z",         /* second 61 */
        "2025-11-24T10:00:00+0100",     /* offset without colon */
        "2025-11-24T10:00:00+01",
        "2025-11-24T10:00:00+1:00",
        "2025-11-24T10:00:00 +01:00",
        "2025-11-24T10:00:00UTC",
        "2025-11-24T10:0a:00Z",
        "-025-11-24T10:00:00Z",
        "2025-11-24T10:00:00.12a3Z",
        "2025-11-24T10:00:00,123Z",     /* comma fraction */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms = 777;
        int rc = ackd_time_parse(bad[i], &ms);
        if (rc != ACKD_EINVAL)
            ackd_test_fail(__FILE__, __LINE__, "\"%s\" accepted (%d)", bad[i], rc);
        else if (ms != 777)
            ackd_test_fail(__FILE__, __LINE__, "\"%s\": output written on failure", bad[i]);
    }
}

TEST(clock_wall_and_monotonic)
{
    int64_t now = ackd_now_ms();
    CHECK(now > 1700000000000); /* after 2023-11 */
    int64_t m1 = ackd_mono_us();
    int64_t m2 = ackd_mono_us();
    CHECK(m2 >= m1);
    char out[32];
    ackd_time_format(now, out, sizeof out);
    int64_t back = 0;
    CHECK_INT(ackd_time_parse(out, &back), 0);
    CHECK_INT(back, now);
}
