/* jscan_test.c - tests src/base/jscan.c: the members and spans of a
 * vouched object, minifying, and every rule that makes the scanner unsure
 * (so the caller falls back to jansson): malformed text, duplicate keys at
 * any depth, \u escapes, non-ASCII, numbers jansson could overflow, depth.
 * tests/fuzz/jscan_fuzz.c checks the same against jansson itself. */
#include <stdio.h>
#include <string.h>

#include "../test.h"
#include "base/jscan.h"

static bool scan(const char *doc, ackd_jscan_member_t *m, int *n)
{
    return ackd_jscan_object(doc, strlen(doc), m, n);
}

static bool sure(const char *doc)
{
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n;
    return scan(doc, m, &n);
}

static void check_member(const ackd_jscan_member_t *m, const char *key, const char *value)
{
    CHECK_INT((int)m->key_len, (int)strlen(key));
    CHECK(memcmp(m->key, key, m->key_len) == 0);
    CHECK_INT((int)m->value_len, (int)strlen(value));
    CHECK(memcmp(m->value, value, m->value_len) == 0);
}

TEST(jscan_finds_members_and_value_spans)
{
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n = -1;
    CHECK(scan(" {\"payload\" : {\"a\": [1, 2.5e-3, {\"b\": \"}]\\\"\"}], \"c\": null},"
               "\n \"delay\":-0 ,\"run_at\":\"2026-11-24T10:00:00Z\", \"x\":[] ,\"y\":{},"
               "\"t\":true,\"f\":false}\r\n",
               m, &n));
    CHECK_INT(n, 7);
    check_member(&m[0], "payload", "{\"a\": [1, 2.5e-3, {\"b\": \"}]\\\"\"}], \"c\": null}");
    check_member(&m[1], "delay", "-0");
    check_member(&m[2], "run_at", "\"2026-11-24T10:00:00Z\"");
    check_member(&m[3], "x", "[]");
    check_member(&m[4], "y", "{}");
    check_member(&m[5], "t", "true");
    check_member(&m[6], "f", "false");
    CHECK(scan("{}", m, &n));
    CHECK_INT(n, 0);
}

TEST(jscan_minify_drops_whitespace_between_tokens_only)
{
    const char *in = " { \"a b\" : [ 1 ,\n\t2 ] , \"c\\\" d\" : \"e \\\\ \" } ";
    char out[64];
    size_t len = ackd_json_minify(in, strlen(in), out);
    CHECK_STR(out, "{\"a b\":[1,2],\"c\\\" d\":\"e \\\\ \"}");
    CHECK_INT((int)len, (int)strlen(out));
}

TEST(jscan_is_unsure_of_malformed_documents)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,\"a\":1}", "{\"a\":1 \"b\":2}",
        "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}",
        "{\"a\":1e}", "{\"a\":-}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}",
        "{\"a\":1}x", "{\"a\":1}}", "{a:1}", "{'a':1}", "{\"a\":\"x}", "{\"a\":\"\\x\"}",
        "{\"a\":\"tab\there\"}", "{\"a\":[1]]", "{\"a\":{]}", "{\"a\":NaN}", "{\"a\":1}\x01",
        NULL};
    for (int i = 0; bad[i]; i++)
        if (sure(bad[i]))
            CHECK_STR(bad[i], "(unsure)");
    /* a NUL inside the text */
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n;
    CHECK(!ackd_jscan_object("{\"a\":\"x\0y\"}", 11, m, &n));
}

TEST(jscan_is_unsure_where_jansson_might_differ)
{
    CHECK(!sure("[1,2]"));              /* not an object: the caller's 422 */
    CHECK(!sure("\"x\""));
    CHECK(!sure("{\"a\":1,\"a\":2}"));  /* duplicates, at the top */
    CHECK(!sure("{\"a\":{\"b\":1,\"b\":1}}"));          /* and nested */
    CHECK(!sure("{\"a\":[{\"b\":1},{\"c\":1,\"c\":2}]}")); /* and in arrays */
    CHECK(sure("{\"a\":{\"b\":1},\"b\":{\"a\":1}}"));     /* same key, other objects */
    CHECK(!sure("{\"a\\/b\":1}"));      /* keys with escapes are compared decoded */
    CHECK(sure("{\"a\":\"\\/\\n\"}"));   /* values may have them */
    CHECK(!sure("{\"a\":\"\\u00e9\"}")); /* \u: \u0000 and lone surrogates are refused */
    CHECK(!sure("{\"a\":\"caf\xc3\xa9\"}")); /* non-ASCII: UTF-8 checks */
    CHECK(sure("{\"a\":123456789012345678}"));     /* 18 digits fit json_int_t */
    CHECK(!sure("{\"a\":1234567890123456789}"));   /* 19 may not */
    CHECK(!sure("{\"a\":-9223372036854775809}"));
    CHECK(sure("{\"a\":9e299,\"b\":1e-999,\"c\":0.5}")); /* underflow is no error */
    CHECK(sure("{\"a\":99999.5e300}"));             /* < 10^305 */
    CHECK(!sure("{\"a\":999999.5e300}"));           /* near overflow: jansson decides */
    CHECK(!sure("{\"a\":1e1000}"));
    CHECK(!sure("{\"a\":1.0e0001}"));               /* exponents of 4 digits */
    /* 32 members are fine, 33 are left to jansson */
    char doc[1024] = "{";
    for (int i = 0; i < 33; i++)
        snprintf(doc + strlen(doc), sizeof doc - strlen(doc), "%s\"k%d\":%d", i ? "," : "", i, i);
    CHECK(!sure(strcat(doc, "}")));
    char *cut = strstr(doc, ",\"k32\"");
    strcpy(cut, "}");
    CHECK(sure(doc));
    /* depth 64 is fine, 65 is left to jansson */
    char deep[256] = "{\"a\":";
    for (int i = 0; i < 63; i++)
        strcat(deep, "[");
    for (int i = 0; i < 63; i++)
        strcat(deep, "]");
    CHECK(sure(strcat(deep, "}")));
    strcpy(deep, "{\"a\":");
    for (int i = 0; i < 64; i++)
        strcat(deep, "[");
    for (int i = 0; i < 64; i++)
        strcat(deep, "]");
    CHECK(!sure(strcat(deep, "}")));
}

TEST(jscan_string_unescapes_the_short_escapes)
{
    const char *doc = "{\"s\":\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\",\"e\":\"\",\"p\":\"plain\"}";
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n = 0;
    CHECK(ackd_jscan_object(doc, strlen(doc), m, &n));
    CHECK_INT(n, 3);
    char out[64];
    size_t len = ackd_jscan_string(m[0].value, m[0].value_len, out);
    CHECK_INT((int)len, 17);
    CHECK(memcmp(out, "a\"b\\c/d\be\ff\ng\rh\ti", 17) == 0);
    CHECK_INT((int)ackd_jscan_string(m[1].value, m[1].value_len, out), 0);
    len = ackd_jscan_string(m[2].value, m[2].value_len, out);
    CHECK_INT((int)len, 5);
    CHECK(memcmp(out, "plain", 5) == 0);
}
