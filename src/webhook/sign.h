/* sign.h - Standard Webhooks signatures.
 *
 * The signed content is "<webhook-id>.<webhook-timestamp>.<body>"; each
 * secret ("whsec_" + base64 key bytes) gives "v1,<base64 HMAC-SHA256>", and
 * several secrets (rotation) give several signatures, space-separated, so a
 * receiver holding either the old or the new secret verifies. Any thread. */
#ifndef ACKD_WEBHOOK_SIGN_H
#define ACKD_WEBHOOK_SIGN_H

#include <stddef.h>
#include <stdint.h>

/* Writes the webhook-signature value into out. Returns 0, or ACKD_EINVAL when
 * a secret is malformed (out is then empty). secrets may be NULL or "": out
 * is then empty and 0 is returned (nothing to sign with). */
int ackd_webhook_sign(const char *secrets, const char *msg_id, int64_t timestamp,
                      const char *body, size_t len, char *out, size_t outlen);

#endif
