/* checks.c - the forms string options take: URLs, origins, paths, queue
 * names, webhook secrets, CIDR lists, retry schedules, host:port. Each check
 * accepts a value or not, and writes the canonical form that is stored and
 * printed (lists joined by one space, "60s" as "1m"). Pure; any thread. */
#include "config/checks.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/token.h"
#include "base/units.h"

int ackd_config_name_ok(const char *s, size_t n)
{
    if (n < 1 || n > 64 || (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.'))))
        return 0; /* "." and "..": a URL path cannot name them (a dot segment) */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits v at spaces, tabs and the characters of seps; calls each(word) on
 * every word and appends the words to canon joined by one space. */
static int each_word(const char *v, const char *seps, int (*each)(const char *w, size_t n),
                     ackd_buf_t *canon, size_t *count)
{
    *count = 0;
    const char *p = v;
    while (*p) {
        while (*p && (is_space(*p) || strchr(seps, *p)))
            p++;
        if (!*p)
            break;
        const char *w = p;
        while (*p && !is_space(*p) && !strchr(seps, *p))
            p++;
        size_t n = (size_t)(p - w);
        if (each(w, n))
            return ACKD_EINVAL;
        if ((*count)++)
            ackd_buf_appendc(canon, ' ');
        ackd_buf_append(canon, w, n);
    }
    return *count ? 0 : ACKD_EINVAL;
}

static int check_host_port(const char *h, size_t hn, const char *port, size_t pn, int min_port)
{
    if (hn == 0)
        return ACKD_EINVAL;
    if (h[0] == '[') {
        char a[64];
        struct in6_addr ip6;
        if (hn < 3 || hn - 2 >= sizeof a || h[hn - 1] != ']')
            return ACKD_EINVAL;
        memcpy(a, h + 1, hn - 2);
        a[hn - 2] = '\0';
        if (inet_pton(AF_INET6, a, &ip6) != 1)
            return ACKD_EINVAL;
    } else {
        for (size_t i = 0; i < hn; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_'))
                return ACKD_EINVAL;
        }
    }
    if (!port)
        return 0;
    char digits[8];
    int64_t n;
    if (pn == 0 || pn >= sizeof digits)
        return ACKD_EINVAL;
    memcpy(digits, port, pn);
    digits[pn] = '\0';
    if (digits[0] == '-' || ackd_parse_int(digits, &n) || n < min_port || n > 65535)
        return ACKD_EINVAL;
    return 0;
}

/* Splits "host:port" / "[v6]:port"; *port is NULL when there is none. */
static void split_host_port(const char *s, size_t n, size_t *hn, const char **port, size_t *pn)
{
    const char *colon = NULL;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close && (size_t)(close - s) + 1 < n && close[1] == ':')
            colon = close + 1;
    } else {
        colon = memchr(s, ':', n);
    }
    *hn = colon ? (size_t)(colon - s) : n;
    *port = colon ? colon + 1 : NULL;
    *pn = colon ? n - *hn - 1 : 0;
}

static const char *after_scheme(const char *v)
{
    if (strncasecmp(v, "http://", 7) == 0)
        return v + 7;
    if (strncasecmp(v, "https://", 8) == 0)
        return v + 8;
    return NULL;
}

static bool has_space_or_ctl(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || *v == 0x7f)
            return true;
    return false;
}

/* http(s)://host[:port], a trailing slash dropped. */
int ackd_config_check_origin(const char *v, ackd_buf_t *canon)
{
    const char *h = after_scheme(v);
    if (!h || has_space_or_ctl(v))
        return ACKD_EINVAL;
    size_t n = strlen(h);
    if (n && h[n - 1] == '/')
        n--;
    size_t hn, pn;
    const char *port;
    split_host_port(h, n, &hn, &port, &pn);
    if (check_host_port(h, hn, port, pn, 1))
        return ACKD_EINVAL;
    ackd_buf_append(canon, v, (size_t)(h - v) + n);
    return 0;
}

/* http(s)://host[:port][/path...] */
int ackd_config_check_url(const char *v, ackd_buf_t *canon)
{
    const char *h = after_scheme(v);
    if (!h || has_space_or_ctl(v))
        return ACKD_EINVAL;
    size_t n = strcspn(h, "/?#");
    size_t hn, pn;
    const char *port;
    split_host_port(h, n, &hn, &port, &pn);
    if (check_host_port(h, hn, port, pn, 1))
        return ACKD_EINVAL;
    ackd_buf_appendz(canon, v);
    return 0;
}

int ackd_config_check_abs_path(const char *v, ackd_buf_t *canon)
{
    if (v[0] != '/' || has_space_or_ctl(v))
        return ACKD_EINVAL;
    ackd_buf_appendz(canon, v);
    return 0;
}

int ackd_config_check_queue_name(const char *v, ackd_buf_t *canon)
{
    if (!ackd_config_name_ok(v, strlen(v)))
        return ACKD_EINVAL;
    ackd_buf_appendz(canon, v);
    return 0;
}

static int secret_ok(const char *w, size_t n)
{
    if (n <= 6 || memcmp(w, "whsec_", 6) != 0)
        return ACKD_EINVAL;
    /* Standard base64 with padding: groups of 4, '=' only at the end. */
    const char *b = w + 6;
    size_t bn = n - 6, pad = 0;
    if (bn % 4)
        return ACKD_EINVAL;
    for (size_t i = 0; i < bn; i++) {
        char c = b[i];
        if (c == '=') {
            pad++;
            continue;
        }
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok || pad)
            return ACKD_EINVAL;
    }
    return pad > 2 ? ACKD_EINVAL : 0;
}

int ackd_config_check_secrets(const char *v, ackd_buf_t *canon)
{
    size_t count;
    return each_word(v, "", secret_ok, canon, &count);
}

static int cidr_ok(const char *w, size_t n)
{
    char a[64];
    const char *slash = memchr(w, '/', n);
    if (!slash || (size_t)(slash - w) >= sizeof a)
        return ACKD_EINVAL;
    size_t an = (size_t)(slash - w), pn = n - an - 1;
    memcpy(a, w, an);
    a[an] = '\0';
    unsigned char ip[16];
    int max;
    if (inet_pton(AF_INET, a, ip) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, a, ip) == 1)
        max = 128;
    else
        return ACKD_EINVAL;
    char digits[4];
    int64_t bits;
    if (pn == 0 || pn >= sizeof digits)
        return ACKD_EINVAL;
    memcpy(digits, slash + 1, pn);
    digits[pn] = '\0';
    if (digits[0] == '-' || ackd_parse_int(digits, &bits) || bits > max)
        return ACKD_EINVAL;
    return 0;
}

int ackd_config_check_cidrs(const char *v, ackd_buf_t *canon)
{
    size_t count;
    return each_word(v, ",", cidr_ok, canon, &count);
}

static int delay_ok(const char *w, size_t n)
{
    char d[32];
    int64_t ms;
    if (n >= sizeof d)
        return ACKD_EINVAL;
    memcpy(d, w, n);
    d[n] = '\0';
    if (ackd_parse_duration_ms(d, &ms) || ms > 30LL * 86400000)
        return ACKD_EINVAL;
    return 0;
}

int ackd_config_check_schedule(const char *v, ackd_buf_t *canon)
{
    ackd_buf_t words;
    size_t count;
    ackd_buf_init(&words, 0);
    int rc = each_word(v, "", delay_ok, &words, &count);
    if (rc == 0 && count > 50)
        rc = ACKD_EINVAL;
    /* Canonical form: each delay in its shortest exact unit. */
    for (const char *p = words.data; rc == 0 && p && *p;) {
        size_t n = strcspn(p, " ");
        char d[32], f[32];
        int64_t ms = 0;
        memcpy(d, p, n);
        d[n] = '\0';
        ackd_parse_duration_ms(d, &ms);
        ackd_config_format_duration(ms, f, sizeof f);
        if (p != words.data)
            ackd_buf_appendc(canon, ' ');
        ackd_buf_appendz(canon, f);
        p += n + (p[n] == ' ');
    }
    ackd_buf_free(&words);
    return rc;
}

/* ---- reading and writing values ---- */

int ackd_config_parse_listen(const char *v, char **host, int *port)
{
    size_t n = strlen(v), hn, pn;
    const char *p;
    split_host_port(v, n, &hn, &p, &pn);
    if (!p || check_host_port(v, hn, p, pn, 0))
        return ACKD_EINVAL;
    int64_t num = 0;
    char digits[8];
    memcpy(digits, p, pn);
    digits[pn] = '\0';
    ackd_parse_int(digits, &num);
    *host = v[0] == '[' ? ackd_strndup(v + 1, hn - 2) : ackd_strndup(v, hn);
    *port = (int)num;
    return 0;
}

void ackd_config_format_duration(int64_t ms, char *out, size_t outlen)
{
    if (ms == 0)
        snprintf(out, outlen, "0");
    else
        ackd_format_duration(ms, out, outlen);
}

int ackd_config_check_header_names(const char *v, ackd_buf_t *canon)
{
    const char *p = v;
    int n = 0;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (!*p)
            break;
        if (n++)
            ackd_buf_appendc(canon, ' ');
        for (; *p && *p != ' ' && *p != ',' && *p != '\t'; p++) {
            char c = *p;
            if (!ackd_tchar(c))
                return ACKD_EINVAL;
            ackd_buf_appendc(canon, (char)((c >= 'A' && c <= 'Z') ? c + 32 : c));
        }
    }
    return n ? 0 : ACKD_EINVAL;
}

int ackd_config_check_tenant_secrets(const char *v, ackd_buf_t *canon)
{
    int n = 0;
    for (const char *p = v; *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (!len)
            break;
        const char *colon = memchr(p, ':', len);
        if (!colon || colon == p || colon - p > 64)
            return ACKD_EINVAL;
        for (const char *t = p; t < colon; t++)
            if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
                  *t == '_' || *t == '.' || *t == '-'))
                return ACKD_EINVAL;
        char secret[512];
        size_t slen = len - (size_t)(colon + 1 - p);
        if (slen == 0 || slen >= sizeof secret)
            return ACKD_EINVAL;
        memcpy(secret, colon + 1, slen);
        secret[slen] = '\0';
        ackd_buf_t tmp;
        ackd_buf_init(&tmp, 0);
        int rc = ackd_config_check_secrets(secret, &tmp);
        ackd_buf_free(&tmp);
        if (rc)
            return ACKD_EINVAL;
        if (n++)
            ackd_buf_appendc(canon, ' ');
        ackd_buf_append(canon, p, len);
        p += len;
    }
    return n ? 0 : ACKD_EINVAL;
}
