/* jw.c - see jw.h. */
#include "base/jw.h"

#include <stdio.h>
#include <string.h>

#include "base/clock.h"

void ackd_jw_init(ackd_jw_t *w, ackd_buf_t *b)
{
    w->b = b;
    w->has_member = 0;
    w->is_array = 0;
    w->depth = 0;
}

void ackd_jw_start(ackd_jw_t *w, ackd_buf_t *b, char bracket)
{
    ackd_buf_init(b, 0);
    ackd_jw_init(w, b);
    ackd_jw_open(w, NULL, bracket);
}

/* The separator and the key before a value. */
static void lead(ackd_jw_t *w, const char *key)
{
    uint32_t bit = 1u << (w->depth & 31);
    if (w->depth > 0) {
        if (w->has_member & bit)
            ackd_buf_appendc(w->b, ',');
        w->has_member |= bit;
    }
    if (key) {
        ackd_buf_appendc(w->b, '"');
        ackd_buf_append_json_str(w->b, key, strlen(key));
        ackd_buf_append(w->b, "\":", 2);
    }
}

void ackd_jw_open(ackd_jw_t *w, const char *key, char bracket)
{
    lead(w, key);
    ackd_buf_appendc(w->b, bracket);
    w->depth++;
    uint32_t bit = 1u << (w->depth & 31);
    w->has_member &= ~bit;
    if (bracket == '[')
        w->is_array |= bit;
    else
        w->is_array &= ~bit;
}

void ackd_jw_close(ackd_jw_t *w)
{
    uint32_t bit = 1u << (w->depth & 31);
    ackd_buf_appendc(w->b, (w->is_array & bit) ? ']' : '}');
    w->depth--;
}

void ackd_jw_str(ackd_jw_t *w, const char *key, const char *s)
{
    if (!s)
        ackd_jw_null(w, key);
    else
        ackd_jw_strn(w, key, s, strlen(s));
}

void ackd_jw_strn(ackd_jw_t *w, const char *key, const char *s, size_t n)
{
    lead(w, key);
    ackd_buf_appendc(w->b, '"');
    ackd_buf_append_json_str(w->b, s, n);
    ackd_buf_appendc(w->b, '"');
}

void ackd_jw_int(ackd_jw_t *w, const char *key, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    lead(w, key);
    ackd_buf_append(w->b, num, (size_t)n);
}

void ackd_jw_bool(ackd_jw_t *w, const char *key, bool v)
{
    lead(w, key);
    ackd_buf_appendz(w->b, v ? "true" : "false");
}

void ackd_jw_null(ackd_jw_t *w, const char *key)
{
    lead(w, key);
    ackd_buf_append(w->b, "null", 4);
}

void ackd_jw_raw(ackd_jw_t *w, const char *key, const char *json)
{
    if (!json) {
        ackd_jw_null(w, key);
        return;
    }
    lead(w, key);
    ackd_buf_appendz(w->b, json);
}

void ackd_jw_rawn(ackd_jw_t *w, const char *key, const char *json, size_t n)
{
    lead(w, key);
    ackd_buf_append(w->b, json, n);
}

void ackd_jw_time(ackd_jw_t *w, const char *key, int64_t ms)
{
    if (ms <= 0) {
        ackd_jw_null(w, key);
        return;
    }
    char t[32];
    ackd_time_format(ms, t, sizeof t);
    ackd_jw_str(w, key, t);
}
