/* jscan.c - see jscan.h. One pass over the text with an explicit stack;
 * every rule that could make jansson read a document differently (or
 * refuse it) makes this scanner answer "unsure" instead. */
#include "base/jscan.h"

#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *p, *end;
} cur_t;

typedef struct {
    const char *s;
    size_t len;
} span_t;

static void skip_ws(cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool is_digit(const cur_t *c)
{
    return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

/* A string from its opening quote: printable ASCII and the escapes other
 * than \u (jansson refuses \u0000 and lone surrogates: not checked here). */
static bool scan_string(cur_t *c, bool *escaped)
{
    c->p++;
    *escaped = false;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"')
            return true;
        if (ch < 0x20 || ch >= 0x80)
            return false;
        if (ch == '\\') {
            if (c->p >= c->end)
                return false;
            char e = *c->p++;
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                e != 'r' && e != 't')
                return false;
            *escaped = true;
        }
    }
    return false;
}

/* RFC 8259's number, and only where jansson cannot overflow: an integer of
 * at most 18 digits (json_int_t is 64 bits); a real below 10^305, from its
 * integer digits plus its exponent (a double reaches 1.8e308; underflow is
 * not an error for jansson). */
static bool scan_number(cur_t *c)
{
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (!is_digit(c))
        return false;
    int int_digits = 0;
    if (*c->p == '0') {
        c->p++;
        int_digits = 1;
    } else {
        while (is_digit(c)) {
            c->p++;
            int_digits++;
        }
    }
    bool real = false;
    long exp = 0;
    if (c->p < c->end && *c->p == '.') {
        real = true;
        c->p++;
        if (!is_digit(c))
            return false;
        while (is_digit(c))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        real = true;
        c->p++;
        int sign = 1;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            sign = *c->p++ == '-' ? -1 : 1;
        int digits = 0;
        while (is_digit(c)) {
            exp = exp * 10 + (*c->p++ - '0');
            if (++digits > 3)
                return false;
        }
        if (digits == 0)
            return false;
        exp *= sign;
    }
    if (!real)
        return int_digits <= 18;
    return int_digits + exp <= 305;
}

static bool scan_literal(cur_t *c, const char *word, size_t len)
{
    if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0)
        return false;
    c->p += len;
    return true;
}

static bool scan_scalar(cur_t *c)
{
    bool escaped;
    switch (*c->p) {
    case '"':
        return scan_string(c, &escaped);
    case 't':
        return scan_literal(c, "true", 4);
    case 'f':
        return scan_literal(c, "false", 5);
    case 'n':
        return scan_literal(c, "null", 4);
    default:
        return scan_number(c);
    }
}

/* A key, the colon and the whitespace up to the value; the key must be
 * new in its object (compared as written: keys with escapes are refused). */
static bool scan_key(cur_t *c, span_t *keys, int *nkeys, span_t *out)
{
    if (*c->p != '"' || *nkeys == ACKD_JSCAN_MAX_MEMBERS)
        return false;
    const char *k = c->p + 1;
    bool escaped;
    if (!scan_string(c, &escaped) || escaped)
        return false;
    size_t len = (size_t)(c->p - 1 - k);
    for (int i = 0; i < *nkeys; i++)
        if (keys[i].len == len && memcmp(keys[i].s, k, len) == 0)
            return false;
    keys[(*nkeys)++] = (span_t){k, len};
    *out = (span_t){k, len};
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':')
        return false;
    c->p++;
    skip_ws(c);
    return c->p < c->end;
}

bool ackd_jscan_object(const char *doc, size_t len, ackd_jscan_member_t *members, int *n)
{
    cur_t c = {doc, doc + len};
    char kind[MAX_DEPTH];
    int nkeys[MAX_DEPTH];
    span_t keys[MAX_DEPTH][ACKD_JSCAN_MAX_MEMBERS];
    *n = 0;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return false;
    c.p++;
    kind[0] = '{';
    nkeys[0] = 0;
    int depth = 1;
    bool first = true; /* nothing read yet in the innermost container */
    for (;;) {
        skip_ws(&c);
        if (c.p >= c.end)
            return false;
        bool in_object = kind[depth - 1] == '{';
        if (*c.p == (in_object ? '}' : ']')) {
            c.p++;
            if (--depth == 0) {
                skip_ws(&c);
                return c.p == c.end;
            }
        } else {
            if (!first) {
                if (*c.p != ',')
                    return false;
                c.p++;
                skip_ws(&c);
                if (c.p >= c.end)
                    return false;
            }
            if (in_object) {
                span_t key;
                if (!scan_key(&c, keys[depth - 1], &nkeys[depth - 1], &key))
                    return false;
                if (depth == 1)
                    members[*n] = (ackd_jscan_member_t){.key = key.s, .key_len = key.len,
                                                        .value = c.p};
            }
            if (*c.p == '{' || *c.p == '[') {
                if (depth == MAX_DEPTH)
                    return false;
                kind[depth] = *c.p++;
                nkeys[depth] = 0;
                depth++;
                first = true;
                continue;
            }
            if (!scan_scalar(&c))
                return false;
        }
        first = false;
        if (depth == 1) { /* a member of the document's object is complete */
            members[*n].value_len = (size_t)(c.p - members[*n].value);
            (*n)++;
        }
    }
}

size_t ackd_json_minify(const char *in, size_t len, char *out)
{
    size_t o = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (in_string) {
            out[o++] = ch;
            if (ch == '\\' && i + 1 < len)
                out[o++] = in[++i];
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
            out[o++] = ch;
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            out[o++] = ch;
        }
    }
    out[o] = '\0';
    return o;
}

size_t ackd_jscan_string(const char *span, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 1; i + 1 < len; i++) {
        char ch = span[i];
        if (ch == '\\' && i + 2 < len) {
            ch = span[++i];
            switch (ch) {
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            default: break; /* '"', '\\', '/' stand for themselves */
            }
        }
        out[n++] = ch;
    }
    return n;
}
