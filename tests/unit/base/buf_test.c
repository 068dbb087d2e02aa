/* buf_test.c - tests src/base/buf.c: growth, the hard cap, termination,
 * printf, JSON escaping and detaching. */
#include <string.h>

#include "../test.h"
#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"

TEST(buf_empty)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    ackd_buf_reset(&b); /* fine on a buffer that never allocated */
    ackd_buf_free(&b);
    ackd_buf_free(&b); /* and twice */
    CHECK(b.data == NULL);
}

TEST(buf_append_grows_and_terminates)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK_INT(ackd_buf_appendz(&b, "hello"), 0);
    CHECK_INT(b.len, 5);
    CHECK_STR(b.data, "hello");
    CHECK_INT(ackd_buf_appendc(&b, ' '), 0);
    CHECK_INT(ackd_buf_append(&b, "worldXXX", 5), 0);
    CHECK_STR(b.data, "hello world");
    CHECK_INT(b.len, 11);
    CHECK(b.cap > b.len);
    for (int i = 0; i < 10000; i++)
        CHECK_INT(ackd_buf_appendc(&b, (char)('a' + i % 26)), 0);
    CHECK_INT(b.len, 10011);
    CHECK(b.cap > b.len);
    CHECK_INT(b.data[b.len], '\0');
    CHECK_INT(b.data[11], 'a');
    CHECK_INT(b.data[b.len - 1], 'a' + 9999 % 26);
    ackd_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
}

TEST(buf_append_zero_bytes)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 4);
    CHECK_INT(ackd_buf_append(&b, NULL, 0), 0);
    CHECK(b.data != NULL);
    CHECK_STR(b.data, "");
    ackd_buf_free(&b);
}

TEST(buf_binary_data)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK_INT(ackd_buf_append(&b, "a\0b", 3), 0);
    CHECK_INT(b.len, 3);
    CHECK(memcmp(b.data, "a\0b", 4) == 0);
    ackd_buf_free(&b);
}

TEST(buf_cap_is_hard)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 8);
    CHECK_INT(ackd_buf_appendz(&b, "12345"), 0);
    CHECK_INT(ackd_buf_appendz(&b, "6789"), ACKD_E2BIG);
    CHECK_INT(b.len, 5); /* unchanged by the refused append */
    CHECK_STR(b.data, "12345");
    CHECK_INT(ackd_buf_appendz(&b, "678"), 0); /* exactly the cap is fine */
    CHECK_INT(b.len, 8);
    CHECK_INT(ackd_buf_appendc(&b, 'x'), ACKD_E2BIG);
    CHECK_INT(ackd_buf_printf(&b, "%d", 1), ACKD_E2BIG);
    CHECK_STR(b.data, "12345678");
    ackd_buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK_STR(b.data, "");
    CHECK_INT(ackd_buf_appendz(&b, "abcdefgh"), 0);
    ackd_buf_free(&b);
}

TEST(buf_cap_huge_append_does_not_wrap)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 16);
    CHECK_INT(ackd_buf_appendz(&b, "abc"), 0);
    CHECK_INT(ackd_buf_append(&b, "x", (size_t)-1), ACKD_E2BIG);
    CHECK_INT(ackd_buf_append(&b, "x", (size_t)-1 - 2), ACKD_E2BIG);
    CHECK_INT(b.len, 3);
    ackd_buf_free(&b);
}

TEST(buf_reset_keeps_storage)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK_INT(ackd_buf_appendz(&b, "some text"), 0);
    char *data = b.data;
    size_t cap = b.cap;
    ackd_buf_reset(&b);
    CHECK(b.data == data);
    CHECK_INT(b.cap, cap);
    CHECK_INT(b.len, 0);
    CHECK_STR(b.data, "");
    CHECK_INT(ackd_buf_appendz(&b, "new"), 0);
    CHECK_STR(b.data, "new");
    ackd_buf_free(&b);
}

TEST(buf_printf)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK_INT(ackd_buf_printf(&b, "%s=%d", "a", 42), 0);
    CHECK_INT(ackd_buf_printf(&b, ";%zx", (size_t)255), 0);
    CHECK_STR(b.data, "a=42;ff");
    CHECK_INT(b.len, 7);
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_INT(ackd_buf_printf(&b, "[%s]", big), 0);
    CHECK_INT(b.len, 7 + 2 + sizeof big - 1);
    CHECK_INT(b.data[b.len - 1], ']');
    CHECK_INT(b.data[b.len], '\0');
    ackd_buf_free(&b);
}

TEST(buf_json_escaping)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    const char in[] = "a\"b\\c\nd\re\tf\x01g\x7fh\0i/\xc3\xa9\b\f";
    CHECK_INT(ackd_buf_append_json_str(&b, in, sizeof in - 1), 0);
    CHECK_STR(b.data,
              "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007fh\\u0000i/\xc3\xa9\\b\\f");
    ackd_buf_free(&b);
}

TEST(buf_json_escaping_respects_cap)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 5);
    CHECK_INT(ackd_buf_append_json_str(&b, "\x01\x02", 2), ACKD_E2BIG);
    CHECK(b.len <= 5);
    ackd_buf_free(&b);
}

TEST(buf_detach)
{
    ackd_buf_t b;
    ackd_buf_init(&b, 0);
    CHECK_INT(ackd_buf_appendz(&b, "owned"), 0);
    size_t len = 0;
    char *s = ackd_buf_detach(&b, &len);
    CHECK_INT(len, 5);
    CHECK_STR(s, "owned");
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    CHECK_INT(b.cap, 0);
    ackd_free(s);
    /* an empty buffer detaches to an allocated "" */
    s = ackd_buf_detach(&b, &len);
    CHECK(s != NULL);
    CHECK_INT(len, 0);
    CHECK_STR(s, "");
    ackd_free(s);
    /* the buffer is usable again */
    CHECK_INT(ackd_buf_appendz(&b, "again"), 0);
    s = ackd_buf_detach(&b, NULL);
    CHECK_STR(s, "again");
    ackd_free(s);
}
