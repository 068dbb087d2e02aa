/* client.h - outgoing HTTP calls: libcurl's multi interface driven by a
 * libuv loop (curl's multi-uv pattern): no thread per call, connections kept
 * alive and reused by curl's connection cache.
 *
 * A client belongs to one loop and is used only from that loop's thread.
 * The caller prepares an easy handle; the client runs it and calls `done`
 * once with curl's result; the caller then owns the handle again. */
#ifndef ACKD_HTTP_CLIENT_H
#define ACKD_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

typedef struct ackd_http_client ackd_http_client_t;
typedef void (*ackd_http_client_done_fn)(CURL *easy, CURLcode rc, void *data);

ackd_http_client_t *ackd_http_client_new(uv_loop_t *loop);
/* Starts a transfer. CURLOPT_PRIVATE is the client's: keep your state in data. */
void ackd_http_client_start(ackd_http_client_t *c, CURL *easy, ackd_http_client_done_fn done,
                            void *data);
/* Transfers running now. */
int ackd_http_client_running(const ackd_http_client_t *c);
/* Abandons every running transfer (done is not called; their easy handles
 * are removed from the client but stay their owners' to clean up) and frees
 * the client. Its uv handles are closed: run the
 * loop afterwards so they finish closing. */
void ackd_http_client_free(ackd_http_client_t *c);

/* A Retry-After value (delay-seconds or an HTTP-date) as ms from now; 0 when
 * absent, past or malformed; capped at a day. Any thread. */
int64_t ackd_http_retry_after_ms(const char *value);

/* What went wrong with a call that got no complete answer, for a person: a
 * sentence about `peer` ("the upstream", "the receiver") followed by curl's
 * own detail in parentheses (errbuf: the handle's CURLOPT_ERRORBUFFER, or
 * NULL), e.g. "the upstream closed the connection before its answer was
 * complete (transfer closed with 97 bytes remaining to read)". Into buf,
 * which it returns. Any thread. */
const char *ackd_http_client_error(CURLcode rc, const char *errbuf, const char *peer, char *buf,
                                   size_t n);

#endif
