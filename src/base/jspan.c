/* jspan.c - see jspan.h. */
#include "base/jspan.h"

#include <jansson.h>
#include <string.h>

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* p at a '"': the byte after the closing quote (or end). */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

/* p at a value's first byte: the byte after its last. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return end;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            char c = *p;
            if (c == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
        p++; /* a number, true, false, null */
    return p;
}

/* Whether the key span k[0..n) (quotes included) reads as `key`. */
static bool key_is(const char *k, size_t n, const char *key)
{
    size_t klen = strlen(key);
    if (n < 2)
        return false;
    if (!memchr(k, '\\', n))
        return n - 2 == klen && memcmp(k + 1, key, klen) == 0;
    json_t *s = json_loadb(k, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    bool yes = json_is_string(s) && json_string_length(s) == klen &&
               memcmp(json_string_value(s), key, klen) == 0;
    json_decref(s);
    return yes;
}

bool ackd_json_member_raw(const char *doc, size_t len, const char *key, ackd_json_span_t *out)
{
    const char *end = doc + len, *p = skip_ws(doc, end);
    if (p >= end || *p != '{')
        return false;
    p++;
    while (true) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return false; /* '}': no such member */
        const char *k = p;
        p = skip_string(p, end);
        bool match = key_is(k, (size_t)(p - k), key);
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return false;
        const char *v = ++p;
        p = skip_value(skip_ws(p, end), end);
        p = skip_ws(p, end);
        if (match) {
            out->p = v;
            out->n = (size_t)(p - v);
            return true;
        }
        if (p >= end || *p != ',')
            return false;
        p++;
    }
}

int ackd_json_elements(const char *arr, size_t len, ackd_json_span_t *out, int max)
{
    const char *end = arr + len, *p = skip_ws(arr, end);
    if (p >= end || *p != '[')
        return -1;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']')
        return 0;
    int n = 0;
    while (p < end) {
        const char *v = p;
        p = skip_value(v, end);
        if (n < max) {
            out[n].p = v;
            out[n].n = (size_t)(p - v);
        }
        n++;
        p = skip_ws(p, end);
        if (p >= end || *p != ',')
            break;
        p = skip_ws(p + 1, end);
    }
    return n;
}

ackd_json_span_t ackd_json_trim(ackd_json_span_t s)
{
    while (s.n > 0 && is_ws(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_ws(s.p[s.n - 1]))
        s.n--;
    return s;
}
