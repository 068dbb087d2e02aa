/* fingerprint.c - SHA-256 fingerprints with OpenSSL's libcrypto. */
#include "queue/fingerprint.h"

#include <openssl/evp.h>
#include <string.h>

static void hex(const unsigned char *d, unsigned n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void ackd_fingerprint(const char *method, const char *path, const void *body, size_t len,
                      char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    /* NUL separators: "POST" + "/a" never collides with "POS" + "T/a" */
    EVP_DigestUpdate(ctx, method, strlen(method) + 1);
    EVP_DigestUpdate(ctx, path, strlen(path) + 1);
    EVP_DigestUpdate(ctx, body, len);
    EVP_DigestFinal_ex(ctx, md, &n);
    EVP_MD_CTX_free(ctx);
    hex(md, n, out);
}

void ackd_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    hex(md, n, out);
}
