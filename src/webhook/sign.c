/* sign.c - HMAC-SHA256 signatures of webhook messages (see sign.h). */
#include "webhook/sign.h"

#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/error.h"

static int sign_one(const char *secret, size_t slen, const char *content, size_t clen,
                    ackd_buf_t *out)
{
    if (slen <= 6 || strncmp(secret, "whsec_", 6) != 0)
        return ACKD_EINVAL;
    size_t keylen;
    unsigned char *key = ackd_base64_decode(secret + 6, slen - 6, &keylen);
    if (!key)
        return ACKD_EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)content, clen, md, &mdlen);
    ackd_free(key);
    char *b64 = ackd_base64_encode(md, mdlen);
    if (out->len)
        ackd_buf_appendc(out, ' ');
    ackd_buf_printf(out, "v1,%s", b64);
    ackd_free(b64);
    return 0;
}

int ackd_webhook_sign(const char *secrets, const char *msg_id, int64_t timestamp,
                      const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!secrets || !*secrets)
        return 0;
    ackd_buf_t content, sig;
    ackd_buf_init(&content, 0);
    ackd_buf_init(&sig, 0);
    ackd_buf_printf(&content, "%s.%lld.", msg_id, (long long)timestamp);
    ackd_buf_append(&content, body, len);
    int rc = 0;
    for (const char *p = secrets; *p && rc == 0;) {
        size_t n = strcspn(p, " ");
        if (n)
            rc = sign_one(p, n, content.data, content.len, &sig);
        p += n;
        while (*p == ' ')
            p++;
    }
    if (rc == 0 && sig.len < outlen)
        memcpy(out, sig.data, sig.len + 1);
    else if (rc == 0)
        rc = ACKD_E2BIG;
    ackd_buf_free(&content);
    ackd_buf_free(&sig);
    return rc;
}
