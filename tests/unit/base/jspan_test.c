/* jspan_test.c - tests src/base/jspan.c: members found in objects however
 * they are written (whitespace, escaped keys, nested values holding the
 * key, strings holding brackets), the raw span with its whitespace, array
 * elements, and nothing found in what is not an object or array. */
#include <string.h>

#include "../test.h"
#include "base/jspan.h"

static int member_is(const char *doc, const char *key, const char *want)
{
    ackd_json_span_t v;
    if (!ackd_json_member_raw(doc, strlen(doc), key, &v))
        return want == NULL;
    return want && v.n == strlen(want) && memcmp(v.p, want, v.n) == 0;
}

TEST(jspan_members)
{
    const char *doc = "{\"a\": {\"body\": 1, \"x\": \"}\"}, \"s\": \"a\\\"body\\\\\",\n"
                      "  \"body\" :  [0.10, {\"k\": \"]\"}] \n, \"z\":null}";
    CHECK(member_is(doc, "a", " {\"body\": 1, \"x\": \"}\"}"));
    CHECK(member_is(doc, "s", " \"a\\\"body\\\\\""));
    CHECK(member_is(doc, "body", "  [0.10, {\"k\": \"]\"}] \n")); /* whitespace kept */
    CHECK(member_is(doc, "z", "null"));
    CHECK(member_is(doc, "x", NULL));                               /* only the top level */
    CHECK(member_is(doc, "bod", NULL));
    CHECK(member_is("{\"p\\u0061yload\":[1]}", "payload", "[1]"));  /* keys compare as read */
    CHECK(member_is("{\"\\\"q\":2,\"q\":3}", "q", "3"));
    CHECK(member_is("{}", "a", NULL));
    CHECK(member_is(" { \"a\" : 1 } ", "a", " 1 "));
    CHECK(member_is("[{\"a\":1}]", "a", NULL));                     /* not an object */
    CHECK(member_is("\"a\"", "a", NULL));
    CHECK(member_is("", "a", NULL));
    CHECK(member_is("{\"a\":1", "a", "1"));                         /* cut short: no overrun */
    CHECK(member_is("{\"a", "a", NULL));
    ackd_json_span_t t = ackd_json_trim((ackd_json_span_t){" \r\n\t1.5 \n", 9});
    CHECK_INT(t.n, 3);
    CHECK(memcmp(t.p, "1.5", 3) == 0);
    t = ackd_json_trim((ackd_json_span_t){"  ", 2});
    CHECK_INT(t.n, 0);
}

TEST(jspan_elements)
{
    ackd_json_span_t e[4];
    const char *arr = "[ {\"a\": [1, 2]} , \"x,]\", 0.1e2,null ,[] ]";
    CHECK_INT(ackd_json_elements(arr, strlen(arr), e, 4), 5);
    CHECK(e[0].n == 13 && memcmp(e[0].p, "{\"a\": [1, 2]}", 13) == 0);
    CHECK(e[1].n == 5 && memcmp(e[1].p, "\"x,]\"", 5) == 0);
    CHECK(e[2].n == 5 && memcmp(e[2].p, "0.1e2", 5) == 0);
    CHECK(e[3].n == 4 && memcmp(e[3].p, "null", 4) == 0);
    CHECK_INT(ackd_json_elements("[]", 2, e, 4), 0);
    CHECK_INT(ackd_json_elements(" [ ] ", 5, e, 4), 0);
    CHECK_INT(ackd_json_elements("{}", 2, e, 4), -1);
    CHECK_INT(ackd_json_elements("", 0, e, 4), -1);
    CHECK_INT(ackd_json_elements("[1", 2, e, 4), 1);                 /* cut short */
}
