/* jbody.c - see jbody.h. */
#include "base/jbody.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/base64.h"
#include "base/jscan.h"

bool ackd_jbody_is_json_type(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
           (n >= 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

bool ackd_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t len;
        unsigned int cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false; /* a continuation byte, an overlong lead, or past U+10FFFF */
        }
        if ((size_t)(end - p) < len)
            return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += len;
    }
    return true;
}

/* A JSON body jscan cannot vouch for (an array, a scalar, non-ASCII, ...):
 * jansson reads it and prints it compact. False when it does not parse. */
static bool write_parsed(ackd_jw_t *w, const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (!j)
        return false;
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (!text)
        return false;
    ackd_jw_raw(w, "body", text);
    free(text);
    return true;
}

void ackd_jbody_write(ackd_jw_t *w, const char *ct, const char *body, size_t len)
{
    if (len == 0) {
        ackd_jw_null(w, "body");
        return;
    }
    if (ackd_jbody_is_json_type(ct)) {
        ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
        int n;
        if (ackd_jscan_object(body, len, m, &n)) {
            char *min = ackd_malloc(len + 1);
            ackd_json_minify(body, len, min);
            ackd_jw_raw(w, "body", min);
            ackd_free(min);
            return;
        }
        if (write_parsed(w, body, len))
            return;
    }
    if (ackd_utf8_valid(body, len)) {
        ackd_jw_strn(w, "body", body, len);
        return;
    }
    char *b64 = ackd_base64_encode(body, len);
    ackd_jw_str(w, "body_encoding", "base64");
    ackd_jw_str(w, "body", b64);
    ackd_free(b64);
}
