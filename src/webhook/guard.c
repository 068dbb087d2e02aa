/* guard.c - the callback address guard (see guard.h). */
#include "webhook/guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

static int parse_cidr(const char *s, size_t n, ackd_cidr_t *c)
{
    char buf[64];
    if (n >= sizeof buf)
        return ACKD_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || slash[1] == '\0')
            return ACKD_EINVAL;
        bits = (int)b;
    }
    memset(c, 0, sizeof *c);
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = bits < 0 ? 32 : bits;
        return c->bits <= 32 ? 0 : ACKD_EINVAL;
    }
    if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = bits < 0 ? 128 : bits;
        return c->bits <= 128 ? 0 : ACKD_EINVAL;
    }
    return ACKD_EINVAL;
}

int ackd_guard_init(ackd_guard_t *g, const char *allow)
{
    memset(g, 0, sizeof *g);
    for (const char *p = allow; p && *p;) {
        size_t n = strcspn(p, " ,");
        if (n) {
            g->allow = ackd_realloc(g->allow, (size_t)(g->nallow + 1) * sizeof *g->allow);
            if (parse_cidr(p, n, &g->allow[g->nallow]) != 0) {
                ackd_guard_free(g);
                return ACKD_EINVAL;
            }
            g->nallow++;
        }
        p += n;
        while (*p == ' ' || *p == ',')
            p++;
    }
    return 0;
}

void ackd_guard_free(ackd_guard_t *g)
{
    ackd_free(g->allow);
    g->allow = NULL;
    g->nallow = 0;
}

static int in_prefix(const uint8_t *a, const uint8_t *p, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, p, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (p[full] & mask);
}

/* Why an IPv4 address is not public, or NULL. */
static const char *v4_class(const uint8_t *a)
{
    static const struct {
        uint8_t net[4];
        int bits;
        const char *why;
    } ranges[] = {
        {{0, 0, 0, 0}, 8, "unspecified"},        {{10, 0, 0, 0}, 8, "private"},
        {{100, 64, 0, 0}, 10, "CGNAT"},          {{127, 0, 0, 0}, 8, "loopback"},
        {{169, 254, 0, 0}, 16, "link-local"},    {{172, 16, 0, 0}, 12, "private"},
        {{192, 0, 0, 0}, 24, "reserved"},        {{192, 168, 0, 0}, 16, "private"},
        {{198, 18, 0, 0}, 15, "reserved"},       {{224, 0, 0, 0}, 4, "multicast"},
        {{240, 0, 0, 0}, 4, "reserved"},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (in_prefix(a, ranges[i].net, ranges[i].bits))
            return ranges[i].why;
    return NULL;
}

static const char *v6_class(const uint8_t *a)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t ula[1] = {0xfc}, ll[2] = {0xfe, 0x80}, mc[1] = {0xff};
    if (memcmp(a, zero, 16) == 0)
        return "unspecified";
    if (memcmp(a, loop, 16) == 0)
        return "loopback";
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return v4_class(a + 12); /* the IPv4 address inside decides */
    if (in_prefix(a, ula, 7))
        return "private";
    if (in_prefix(a, ll, 10))
        return "link-local";
    if (in_prefix(a, mc, 8))
        return "multicast";
    return NULL;
}

const char *ackd_guard_check(const ackd_guard_t *g, const struct sockaddr *sa)
{
    const uint8_t *a;
    int family = sa->sa_family;
    if (family == AF_INET)
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (family == AF_INET6)
        a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    else
        return "not an IP address";
    const char *why = family == AF_INET ? v4_class(a) : v6_class(a);
    if (!why)
        return NULL;
    for (int i = 0; i < g->nallow; i++) {
        const ackd_cidr_t *c = &g->allow[i];
        if (c->family == family && in_prefix(a, c->addr, c->bits))
            return NULL;
        /* an IPv4 range also opens the IPv4-mapped form */
        if (c->family == AF_INET && family == AF_INET6 && in_prefix(a + 12, c->addr, c->bits) &&
            v6_class(a) == v4_class(a + 12))
            return NULL;
    }
    return why;
}

const char *ackd_guard_check_host(const ackd_guard_t *g, const char *host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        return NULL;
    return ackd_guard_check(g, (const struct sockaddr *)&ss);
}
