/* jw_test.c - tests src/base/jw.c: commas and nesting, every value kind,
 * escaping, stored JSON embedded as is, and that jansson reads the result
 * back to the same values. */
#include <jansson.h>
#include <string.h>

#include "../test.h"
#include "base/jw.h"

TEST(jw_writes_nested_documents_with_commas)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_str(&w, "id", "tsk_1");
    ackd_jw_int(&w, "n", -42);
    ackd_jw_bool(&w, "ok", true);
    ackd_jw_null(&w, "none");
    ackd_jw_str(&w, "nil", NULL);
    ackd_jw_raw(&w, "payload", "{\"a\":[1,2,{\"b\":\"}]\"}]}");
    ackd_jw_raw(&w, "result", NULL);
    ackd_jw_open(&w, "list", '[');
    ackd_jw_int(&w, NULL, 1);
    ackd_jw_open(&w, NULL, '{');
    ackd_jw_close(&w);
    ackd_jw_open(&w, NULL, '[');
    ackd_jw_close(&w);
    ackd_jw_str(&w, NULL, "x");
    ackd_jw_close(&w);
    ackd_jw_time(&w, "at", 0);
    ackd_jw_close(&w);
    CHECK_STR(b.data, "{\"id\":\"tsk_1\",\"n\":-42,\"ok\":true,\"none\":null,\"nil\":null,"
                      "\"payload\":{\"a\":[1,2,{\"b\":\"}]\"}]},\"result\":null,"
                      "\"list\":[1,{},[],\"x\"],\"at\":null}");
    json_error_t err;
    json_t *j = json_loads(b.data, 0, &err);
    CHECK(j != NULL);
    CHECK_INT(json_integer_value(json_object_get(j, "n")), -42);
    CHECK_INT(json_array_size(json_object_get(j, "list")), 4);
    json_decref(j);
    ackd_buf_free(&b);
}

TEST(jw_escapes_keys_and_strings_like_jansson)
{
    const char *s = "q\"uote\\ line\nfeed\ttab\x01 caf\xc3\xa9 /";
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jw_str(&w, "k\"ey", s);
    ackd_jw_close(&w);
    json_t *ref = json_pack("{s:s}", "k\"ey", s);
    char *text = json_dumps(ref, JSON_COMPACT);
    CHECK_STR(b.data, text);
    free(text);
    json_decref(ref);
    ackd_buf_free(&b);
}

TEST(jw_time_is_rfc3339_utc_millis)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_buf_init(&b, 0);
    ackd_jw_init(&w, &b);
    ackd_jw_time(&w, NULL, 1700000000123LL);
    CHECK_STR(b.data, "\"2023-11-14T22:13:20.123Z\"");
    ackd_buf_free(&b);
}

TEST(jw_top_level_array_of_values)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '[');
    for (int i = 0; i < 3; i++)
        ackd_jw_int(&w, NULL, i);
    ackd_jw_close(&w);
    CHECK_STR(b.data, "[0,1,2]");
    CHECK_INT(w.depth, 0);
    ackd_buf_free(&b);
}
