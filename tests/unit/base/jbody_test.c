/* jbody_test.c - tests src/base/jbody.c: which bodies are JSON, text or
 * base64; that a JSON body comes out as the same value jansson reads; and
 * the UTF-8 check against the cases RFC 3629 rules out. */
#include <jansson.h>
#include <string.h>

#include "../test.h"
#include "base/alloc.h"
#include "base/jbody.h"

/* {"body": ...} as written for (ct, body, len); the caller frees it. */
static char *doc(const char *ct, const char *body, size_t len)
{
    ackd_buf_t b;
    ackd_jw_t w;
    ackd_jw_start(&w, &b, '{');
    ackd_jbody_write(&w, ct, body, len);
    ackd_jw_close(&w);
    return ackd_buf_detach(&b, NULL);
}

TEST(jbody_json_types)
{
    CHECK(ackd_jbody_is_json_type("application/json"));
    CHECK(ackd_jbody_is_json_type("Application/JSON; charset=utf-8"));
    CHECK(ackd_jbody_is_json_type("application/problem+json"));
    CHECK(ackd_jbody_is_json_type("application/json ; charset=utf-8"));
    CHECK(!ackd_jbody_is_json_type("text/plain"));
    CHECK(!ackd_jbody_is_json_type("application/jsonx"));
    CHECK(!ackd_jbody_is_json_type(NULL));
}

TEST(jbody_utf8_check)
{
    CHECK(ackd_utf8_valid("", 0));
    CHECK(ackd_utf8_valid("plain", 5));
    CHECK(ackd_utf8_valid("a\0b", 3));                      /* NUL is a character */
    CHECK(ackd_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
    CHECK(!ackd_utf8_valid("\xc0\xaf", 2));                 /* overlong '/' */
    CHECK(!ackd_utf8_valid("\xe0\x80\xaf", 3));             /* overlong, 3 bytes */
    CHECK(!ackd_utf8_valid("\xed\xa0\x80", 3));             /* a surrogate */
    CHECK(!ackd_utf8_valid("\xf4\x90\x80\x80", 4));         /* past U+10FFFF */
    CHECK(!ackd_utf8_valid("\x80", 1));                     /* a lone continuation */
    CHECK(!ackd_utf8_valid("\xc3", 1));                     /* cut short */
    CHECK(!ackd_utf8_valid("\xe2\x82", 2));
    CHECK(!ackd_utf8_valid("\xff", 1));
    /* agrees with jansson on every two-byte sequence */
    for (int a = 0; a < 256; a++) {
        for (int c = 0; c < 256; c++) {
            char s[2] = {(char)a, (char)c};
            json_t *j = json_stringn(s, 2);
            CHECK(ackd_utf8_valid(s, 2) == (j != NULL));
            json_decref(j);
        }
    }
}

TEST(jbody_kinds)
{
    /* JSON is embedded as it came, whitespace and all: never printed again */
    const char *spaced = "{ \"amount\" : 2.50, \"c\": [1, \"x y\"] }\n";
    char *d = doc("application/json", spaced, strlen(spaced));
    CHECK_STR(d, "{\"body\":{ \"amount\" : 2.50, \"c\": [1, \"x y\"] }\n}");
    ackd_free(d);
    d = doc("application/json", "[0.1, 1e2]", 10); /* not an object: the same */
    CHECK_STR(d, "{\"body\":[0.1, 1e2]}");
    ackd_free(d);
    d = doc("application/json", "{\"caf\xc3\xa9\": 0.1}", 14); /* what jansson must check */
    CHECK_STR(d, "{\"body\":{\"caf\xc3\xa9\": 0.1}}");
    ackd_free(d);
    d = doc("application/json", "{not json", 9); /* JSON that is not: kept as text */
    CHECK_STR(d, "{\"body\":\"{not json\"}");
    ackd_free(d);
    d = doc("application/json", " \"s\"", 4); /* a JSON string: as text, not as what it reads */
    CHECK_STR(d, "{\"body\":\" \\\"s\\\"\"}");
    ackd_free(d);
    d = doc("application/json", "null", 4); /* null would read as no body */
    CHECK_STR(d, "{\"body\":\"null\"}");
    ackd_free(d);
    d = doc("text/plain", "line\n\"q\"\x01", 9);
    CHECK_STR(d, "{\"body\":\"line\\n\\\"q\\\"\\u0001\"}");
    ackd_free(d);
    d = doc(NULL, "\xff\x00\x01", 3); /* not UTF-8: base64 */
    CHECK_STR(d, "{\"body_encoding\":\"base64\",\"body\":\"/wAB\"}");
    ackd_free(d);
    d = doc("application/json", "", 0);
    CHECK_STR(d, "{\"body\":null}");
    ackd_free(d);
}

/* Every body comes back byte for byte; JSON ones also read as their value. */
TEST(jbody_reads_back_byte_for_byte)
{
    static const struct {
        const char *ct, *body;
        size_t len;
        int as_json;
    } cases[] = {
        {"application/json", "{\"a\":{\"b\":[true,false,null,-1.5e3]},\"s\":\"\\\"\\\\\\/\\n\"}", 0, 1},
        {"application/json", "  {\"amount\": 0.10}\r\n", 0, 1},
        {"application/json", "{\"k\":\"\\u00e9\",\"big\":1}", 0, 1},
        {"application/json", "12", 0, 1},
        {"application/json", "\"just a string\"", 0, 0},
        {"application/json", "null", 0, 0},
        {"application/json", "{\"big\":123456789012345678901234}", 0, 0}, /* jansson: too big */
        {"application/json", "{broken", 0, 0},
        {"text/plain", "caf\xc3\xa9\n", 0, 0},
        {"text/plain", "a\0b", 3, 0},
        {NULL, "\xff\xfe\x00", 3, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        char *d = doc(cases[i].ct, cases[i].body, len);
        char *got;
        size_t got_len;
        CHECK(ackd_jbody_read(d, strlen(d), &got, &got_len));
        CHECK_INT(got_len, len);
        CHECK(memcmp(got, cases[i].body, len) == 0);
        ackd_free(got);
        json_t *stored = json_loads(d, JSON_ALLOW_NUL, NULL);
        json_t *want = json_loadb(cases[i].body, len, JSON_DECODE_ANY, NULL);
        CHECK(stored != NULL);
        CHECK(!cases[i].as_json || json_equal(json_object_get(stored, "body"), want));
        json_decref(stored);
        json_decref(want);
        ackd_free(d);
    }
    /* documents other writers made: jansson's compact print, no body, null */
    char *got;
    size_t n;
    CHECK(ackd_jbody_read("{\"status\":200,\"body\":{\"a\":[1,2]}}", 33, &got, &n));
    CHECK_INT(n, 11);
    CHECK(memcmp(got, "{\"a\":[1,2]}", 11) == 0);
    ackd_free(got);
    CHECK(ackd_jbody_read("{\"status\":200}", 14, &got, &n) && got == NULL && n == 0);
    CHECK(ackd_jbody_read("{\"body\":null}", 13, &got, &n) && got == NULL && n == 0);
    CHECK(!ackd_jbody_read("{\"body_encoding\":\"base64\",\"body\":\"!!\"}", 38, &got, &n));
}
