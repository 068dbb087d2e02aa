/* buf.c - capped growable buffer (see buf.h). */
#include "base/buf.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

void ackd_buf_init(ackd_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void ackd_buf_free(ackd_buf_t *b)
{
    ackd_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ackd_buf_reset(ackd_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(ackd_buf_t *b, size_t extra)
{
    if (b->max && (extra > b->max || b->len > b->max - extra))
        return ACKD_E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = ackd_realloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int ackd_buf_append(ackd_buf_t *b, const void *data, size_t n)
{
    int rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ackd_buf_appendz(ackd_buf_t *b, const char *s)
{
    return ackd_buf_append(b, s, strlen(s));
}

int ackd_buf_appendc(ackd_buf_t *b, char c)
{
    return ackd_buf_append(b, &c, 1);
}

int ackd_buf_vprintf(ackd_buf_t *b, const char *fmt, va_list ap)
{
    /* format into the spare room first; only a line that does not fit is
     * formatted a second time, after growing */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return ACKD_EINVAL;
    if ((size_t)n < room) {
        if (b->max && b->len + (size_t)n > b->max) {
            b->data[b->len] = '\0';
            return ACKD_E2BIG;
        }
        b->len += (size_t)n;
        return 0;
    }
    int rc = reserve(b, (size_t)n);
    if (rc) {
        if (b->data)
            b->data[b->len] = '\0';
        return rc;
    }
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int ackd_buf_printf(ackd_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ackd_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int ackd_buf_append_json_str(ackd_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the bytes not yet appended */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        if (i > run && ackd_buf_append(b, s + run, i - run))
            return ACKD_E2BIG;
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        if (ackd_buf_append(b, esc, len))
            return ACKD_E2BIG;
    }
    return n > run ? ackd_buf_append(b, s + run, n - run) : 0;
}

char *ackd_buf_detach(ackd_buf_t *b, size_t *len)
{
    char *d = b->data ? b->data : ackd_strdup("");
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
