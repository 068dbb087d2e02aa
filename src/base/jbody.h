/* jbody.h - an HTTP body as ackd stores it in JSON documents.
 *
 * A route task's request and an upstream's answer keep their body as the
 * member "body": the JSON value itself when the content type is JSON
 * (application/json or +json) and the body parses, else a string when the
 * bytes are UTF-8, else their base64 with "body_encoding": "base64" beside
 * it. A JSON body is embedded byte for byte as the client (or the upstream)
 * sent it, whitespace included, never printed again by jansson (which
 * writes 0.1 as 0.10000000000000001): what ackd forwards or replays is the
 * bytes it got, and a status document shows the same text.
 *
 * Pure functions on caller memory: any thread. */
#ifndef ACKD_BASE_JBODY_H
#define ACKD_BASE_JBODY_H

#include <stdbool.h>
#include <stddef.h>

#include "base/jw.h"

/* Whether content type ct (may be NULL) names JSON. */
bool ackd_jbody_is_json_type(const char *ct);
/* Whether s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). NUL bytes are allowed. */
bool ackd_utf8_valid(const char *s, size_t n);
/* Writes the member "body" (and "body_encoding" when base64) into the
 * object w is in; an empty body is null. */
void ackd_jbody_write(ackd_jw_t *w, const char *ct, const char *body, size_t len);
/* The body bytes of a document doc[0..len) that holds one (see above; any
 * object with "body", whoever wrote it): *body (owned, NUL-terminated) and
 * *body_len; NULL and 0 when it has none or it is null. False when the body
 * cannot be decoded (bad base64). */
bool ackd_jbody_read(const char *doc, size_t len, char **body, size_t *body_len);

#endif
