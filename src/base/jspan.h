/* jspan.h - where a member's or an element's text lies in a JSON document,
 * so that ackd can keep a client's JSON as the client wrote it.
 *
 * jansson reads a document into a tree; printing the tree back does not
 * give the client's text: a real is printed with 17 digits (0.1 becomes
 * 0.10000000000000001), 1.0e2 becomes 100.0, escapes change. A payload, a
 * result or a body that ackd stores and hands on must stay the client's
 * text, so after jansson has checked a document, these find the text of
 * the parts ackd keeps.
 *
 * Only for text that a JSON parser accepted (jansson, or ackd_jscan_object
 * vouched for it): they check nothing and, on other text, find nothing
 * useful (never reading outside [doc, doc + len)).
 *
 * Pure functions on caller memory: any thread. */
#ifndef ACKD_BASE_JSPAN_H
#define ACKD_BASE_JSPAN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *p;
    size_t n;
} ackd_json_span_t;

/* The value of the top-level member `key` of the object doc[0..len): from
 * the first byte after its ':' to the last before the ',' or '}' that ends
 * it, so the whitespace around the value is in it (ackd_json_trim takes it
 * off). A key written with escapes is compared as it reads. False when the
 * object has no such member, or doc is not an object. */
bool ackd_json_member_raw(const char *doc, size_t len, const char *key, ackd_json_span_t *out);
/* The elements of the array arr[0..len), trimmed, into out[0..max); returns
 * how many the array has (which may be more than max), or -1 when arr is not
 * an array. */
int ackd_json_elements(const char *arr, size_t len, ackd_json_span_t *out, int max);
/* s without the JSON whitespace around it. */
ackd_json_span_t ackd_json_trim(ackd_json_span_t s);

#endif
