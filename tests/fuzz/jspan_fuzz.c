/* jspan_fuzz.c - differential libFuzzer target for src/base/jspan.c. On any
 * input the span finders must stay inside it (ASan). On a document jansson
 * accepts (as ackd reads bodies: JSON_REJECT_DUPLICATES | JSON_DECODE_ANY),
 * they must find what jansson finds: for an object, every member by its
 * key as jansson decoded it, its span parsing to a value equal to jansson's;
 * for an array, as many elements, each parsing to jansson's element. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/jspan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

static void same_value(ackd_json_span_t s, json_t *want)
{
    json_t *v = json_loadb(s.p, s.n, FLAGS, NULL);
    if (!v || !json_equal(v, want))
        abort();
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *doc = (const char *)data;
    ackd_json_span_t s, elems[64];
    /* anything: no read outside the input */
    (void)ackd_json_member_raw(doc, size, "body", &s);
    (void)ackd_json_member_raw(doc, size, "a", &s);
    (void)ackd_json_elements(doc, size, elems, 64);
    json_t *j = json_loadb(doc, size, FLAGS, NULL);
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            if (!ackd_json_member_raw(doc, size, key, &s))
                abort();
            same_value(ackd_json_trim(s), v);
        }
    } else if (json_is_array(j)) {
        int n = ackd_json_elements(doc, size, elems, 64);
        if (n != (int)json_array_size(j))
            abort();
        for (int i = 0; i < n && i < 64; i++)
            same_value(elems[i], json_array_get(j, (size_t)i));
    }
    json_decref(j);
    return 0;
}
