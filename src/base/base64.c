/* base64.c - base64 with OpenSSL's block coder (see base64.h). */
#include "base/base64.h"

#include <openssl/evp.h>
#include <stdint.h>

#include "base/alloc.h"

char *ackd_base64_encode(const void *data, size_t len)
{
    char *out = ackd_malloc((len + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

void *ackd_base64_decode(const char *text, size_t textlen, size_t *len)
{
    if (textlen % 4 != 0 || textlen > INT32_MAX)
        return NULL;
    unsigned char *out = ackd_malloc(textlen / 4 * 3 + 1);
    int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)textlen);
    if (n < 0) {
        ackd_free(out);
        return NULL;
    }
    for (size_t i = textlen; i > 0 && text[i - 1] == '='; i--)
        n--; /* EVP_DecodeBlock counts padding as zero bytes */
    *len = (size_t)n;
    return out;
}
