/* jscan_fuzz.c - differential libFuzzer target for src/base/jscan.c: every
 * document the scanner vouches for must be one jansson (as ackd calls it:
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts as an object with the
 * same members in the same order, each member's minified text parsing to a
 * value equal to jansson's, and each string member unescaping
 * (ackd_jscan_string) to jansson's characters. (The converse is not required: the scanner may
 * be unsure of anything.) */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *doc = (const char *)data;
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n = -1;
    if (!ackd_jscan_object(doc, size, m, &n))
        return 0;
    json_error_t e;
    json_t *j = json_loadb(doc, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!j || !json_is_object(j) || json_object_size(j) != (size_t)n)
        abort();
    void *it = json_object_iter(j);
    for (int i = 0; i < n; i++, it = json_object_iter_next(j, it)) {
        if (!it)
            abort();
        const char *key = json_object_iter_key(it);
        if (strlen(key) != m[i].key_len || memcmp(key, m[i].key, m[i].key_len) != 0)
            abort();
        char *text = malloc(m[i].value_len + 1);
        size_t len = ackd_json_minify(m[i].value, m[i].value_len, text);
        if (strlen(text) != len)
            abort();
        json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
        if (!v || !json_equal(v, json_object_iter_value(it)))
            abort();
        json_decref(v);
        free(text);
        json_t *jv = json_object_iter_value(it);
        if (json_is_string(jv)) { /* a string member unescapes to jansson's characters */
            char *chars = malloc(m[i].value_len + 1);
            size_t cl = ackd_jscan_string(m[i].value, m[i].value_len, chars);
            if (cl != json_string_length(jv) || memcmp(chars, json_string_value(jv), cl) != 0)
                abort();
            free(chars);
        }
    }
    json_decref(j);
    return 0;
}
