/* fingerprint_test.c - tests src/queue/fingerprint.c: SHA-256 against the
 * FIPS 180-2 vectors, and fingerprints that tell requests apart by method,
 * path, body and where method ends and path begins. */
#include <string.h>

#include "../test.h"
#include "queue/fingerprint.h"

TEST(sha256_known_vectors)
{
    static const struct {
        const char *in, *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"The quick brown fox jumps over the lazy dog",
         "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
    };
    char out[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        memset(out, 'x', sizeof out);
        ackd_sha256_hex(v[i].in, strlen(v[i].in), out);
        CHECK_STR(out, v[i].hex);
    }
}

TEST(sha256_million_a)
{
    static char a[1000000];
    memset(a, 'a', sizeof a);
    char out[65];
    ackd_sha256_hex(a, sizeof a, out);
    CHECK_STR(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(sha256_binary_input)
{
    /* a NUL inside the data counts: length, not strlen */
    char a[65], b[65];
    ackd_sha256_hex("a\0b", 3, a);
    ackd_sha256_hex("a", 1, b);
    CHECK(strcmp(a, b) != 0);
    CHECK_INT(strlen(a), 64);
    CHECK_INT(strspn(a, "0123456789abcdef"), 64);
}

static void fp(const char *method, const char *path, const char *body, char out[65])
{
    ackd_fingerprint(method, path, body, body ? strlen(body) : 0, out);
}

TEST(fingerprint_equal_inputs_equal_output)
{
    char a[65], b[65];
    fp("POST", "/v1/queues/q/tasks", "{\"payload\":1}", a);
    fp("POST", "/v1/queues/q/tasks", "{\"payload\":1}", b);
    CHECK_STR(a, b);
    CHECK_INT(strlen(a), 64);
    CHECK_INT(strspn(a, "0123456789abcdef"), 64);
    /* an empty body is a body like any other */
    fp("POST", "/a", NULL, a);
    fp("POST", "/a", "", b);
    CHECK_STR(a, b);
}

TEST(fingerprint_differs_by_each_part)
{
    char base[65], other[65];
    fp("POST", "/v1/queues/q/tasks", "{\"payload\":1}", base);
    fp("PUT", "/v1/queues/q/tasks", "{\"payload\":1}", other);
    CHECK(strcmp(base, other) != 0);
    fp("POST", "/v1/queues/r/tasks", "{\"payload\":1}", other);
    CHECK(strcmp(base, other) != 0);
    fp("POST", "/v1/queues/q/tasks", "{\"payload\":2}", other);
    CHECK(strcmp(base, other) != 0);
    fp("POST", "/v1/queues/q/tasks", "{\"payload\":1} ", other);
    CHECK(strcmp(base, other) != 0);
    fp("POST", "/v1/queues/q/tasks", "", other);
    CHECK(strcmp(base, other) != 0);
}

TEST(fingerprint_split_point_matters)
{
    char a[65], b[65], c[65];
    fp("POST", "/a", "", a);
    fp("POS", "T/a", "", b);
    CHECK(strcmp(a, b) != 0);
    /* nor between path and body */
    fp("POST", "/a", "b", a);
    fp("POST", "/ab", "", b);
    CHECK(strcmp(a, b) != 0);
    /* and it is not the plain hash of the concatenation */
    ackd_sha256_hex("POST/a", 6, c);
    fp("POST", "/a", "", a);
    CHECK(strcmp(a, c) != 0);
}

TEST(fingerprint_is_sha256_over_nul_separated_parts)
{
    /* the documented layout: method NUL path NUL body */
    char a[65], b[65];
    fp("POST", "/a", "{}", a);
    ackd_sha256_hex("POST\0/a\0{}", 10, b);
    CHECK_STR(a, b);
}
