/* id.c - time-ordered random ids (see id.h). */
#include "base/id.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include <sys/random.h>

#include "base/clock.h"

static const char crockford[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* OpenSSL's DRBG (seeded and reseeded from the kernel) costs no system
 * call per id; the kernel is asked directly only if it ever fails. */
static void random_fill(void *buf, size_t n)
{
    if (n <= (size_t)INT32_MAX && RAND_bytes(buf, (int)n) == 1)
        return;
    unsigned char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            perror("getrandom");
            abort();
        }
        p += got;
        n -= (size_t)got;
    }
}

/* Small requests (ids, leases: 4 to 10 bytes, one or two per task) come
 * from a per-thread pool refilled 512 bytes at a time: RAND_bytes costs
 * about the same for 4 bytes as for 512 (it was 3 % of the committer's
 * time in claim+complete). The pool holds DRBG output like any other;
 * ackd never forks after start, so no two processes share a pool. */
#define POOL_SIZE 512
static _Thread_local unsigned char pool[POOL_SIZE];
static _Thread_local size_t pool_left;

void ackd_random_bytes(void *buf, size_t n)
{
    if (n > 64) {
        random_fill(buf, n);
        return;
    }
    if (pool_left < n) {
        random_fill(pool, POOL_SIZE);
        pool_left = POOL_SIZE;
    }
    unsigned char *src = pool + (POOL_SIZE - pool_left);
    memcpy(buf, src, n);
    memset(src, 0, n); /* bytes handed out do not stay behind */
    pool_left -= n;
}

static void encode(const char *prefix, const unsigned char b[16], char *out);

/* Within one millisecond, ids of a thread keep increasing: the random part
 * grows by a random step of 1..2^32 from the previous one (ULID's monotonic
 * mode, with a random step so the next id cannot be guessed from the last). */
static _Thread_local int64_t last_ms = -1;
static _Thread_local unsigned char last_rand[10];

static void next_random(int64_t ms, unsigned char r[10])
{
    if (ms != last_ms) {
        ackd_random_bytes(r, 10);
        r[0] &= 0x7f; /* room to grow within the millisecond */
    } else {
        uint32_t step;
        ackd_random_bytes(&step, sizeof step);
        uint64_t carry = (uint64_t)step + 1;
        memcpy(r, last_rand, 10);
        for (int i = 9; i >= 0 && carry; i--) {
            carry += r[i];
            r[i] = (unsigned char)carry;
            carry >>= 8;
        }
    }
    last_ms = ms;
    memcpy(last_rand, r, 10);
}

void ackd_id_new_at(const char *prefix, int64_t ms, char *out)
{
    unsigned char b[16];
    uint64_t t = (uint64_t)ms;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(t >> (40 - 8 * i));
    next_random(ms, b + 6);
    encode(prefix, b, out);
}

/* prefix + 26 base32 digits of the 128 bits (big-endian in b); the first
 * digit carries the top 3 bits. */
static void encode(const char *prefix, const unsigned char b[16], char *out)
{
    size_t plen = strlen(prefix);
    memcpy(out, prefix, plen);
    char *o = out + plen;
    unsigned __int128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | b[i];
    for (int i = ACKD_ID_BODY_LEN - 1; i >= 0; i--) {
        o[i] = crockford[(unsigned)(v & 31)];
        v >>= 5;
    }
    o[ACKD_ID_BODY_LEN] = '\0';
}

/* xorshift128+: fast, not for secrets; seeded once per thread. */
static _Thread_local uint64_t xs[2];

static uint64_t xs_next(void)
{
    if (!xs[0] && !xs[1])
        ackd_random_bytes(xs, sizeof xs);
    uint64_t a = xs[0], b = xs[1];
    xs[0] = b;
    a ^= a << 23;
    xs[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return xs[1] + b;
}

void ackd_id_new_label(const char *prefix, char *out)
{
    unsigned char b[16];
    uint64_t t = (uint64_t)ackd_now_ms(), r1 = xs_next(), r2 = xs_next();
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(t >> (40 - 8 * i));
    memcpy(b + 6, &r1, 8);
    memcpy(b + 14, &r2, 2);
    encode(prefix, b, out);
}

void ackd_id_new(const char *prefix, char *out)
{
    ackd_id_new_at(prefix, ackd_now_ms(), out);
}

int ackd_id_valid(const char *prefix, const char *s)
{
    size_t plen = strlen(prefix);
    if (strncmp(s, prefix, plen) != 0 || strlen(s) != plen + ACKD_ID_BODY_LEN)
        return 0;
    for (const char *p = s + plen; *p; p++)
        if (!strchr(crockford, *p))
            return 0;
    return s[plen] <= '7';
}

uint64_t ackd_id_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
