/* jbody.c - see jbody.h. */
#include "base/jbody.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/base64.h"
#include "base/jscan.h"
#include "base/jspan.h"

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

/* Whether body[0..len) is JSON text: jscan vouches for it, or jansson
 * reads it (\u0000 and integers past 64 bits it does not: those bodies are
 * kept as strings, which keeps their bytes too). */
static bool is_json_text(const char *body, size_t len)
{
    ackd_jscan_member_t m[ACKD_JSCAN_MAX_MEMBERS];
    int n;
    if (ackd_jscan_object(body, len, m, &n))
        return true;
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    json_decref(j);
    return j != NULL;
}

void ackd_jbody_write(ackd_jw_t *w, const char *ct, const char *body, size_t len)
{
    if (len == 0) {
        ackd_jw_null(w, "body");
        return;
    }
    /* the text itself, whitespace and all (ackd_jbody_read gives it back
     * whole); a body that is just `null` would read as none, and a JSON
     * string as the bytes it stands for: those are kept as strings */
    ackd_json_span_t all = ackd_json_trim((ackd_json_span_t){body, len});
    if (ackd_jbody_is_json_type(ct) && all.n > 0 && all.p[0] != '"' &&
        !(all.n == 4 && memcmp(all.p, "null", 4) == 0) && is_json_text(body, len)) {
        ackd_jw_rawn(w, "body", body, len);
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

bool ackd_jbody_read(const char *doc, size_t len, char **body, size_t *body_len)
{
    *body = NULL;
    *body_len = 0;
    ackd_json_span_t raw, enc;
    if (!ackd_json_member_raw(doc, len, "body", &raw))
        return true;
    ackd_json_span_t v = ackd_json_trim(raw);
    if (v.n == 0 || (v.n == 4 && memcmp(v.p, "null", 4) == 0))
        return true;
    if (v.p[0] != '"') { /* JSON as the client or the upstream wrote it */
        *body = ackd_strndup(raw.p, raw.n);
        *body_len = raw.n;
        return true;
    }
    json_t *s = json_loadb(v.p, v.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!json_is_string(s)) {
        json_decref(s);
        return false;
    }
    bool base64 = ackd_json_member_raw(doc, len, "body_encoding", &enc) &&
                  (enc = ackd_json_trim(enc)).n == 8 && memcmp(enc.p, "\"base64\"", 8) == 0;
    if (base64)
        *body = ackd_base64_decode(json_string_value(s), json_string_length(s), body_len);
    else
        *body = ackd_strndup(json_string_value(s), *body_len = json_string_length(s));
    json_decref(s);
    return *body != NULL;
}
