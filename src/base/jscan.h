/* jscan.h - a JSON object's members found without building a tree.
 *
 * A single submit is a small object around a client's payload; parsing it
 * into a jansson tree and dumping the payload back to text was 28 % of the
 * HTTP loop's time in the submit benchmark. ackd_jscan_object walks the body
 * once, checks it completely, and hands back each top-level member's key
 * and the span of its value.
 *
 * It vouches only for documents inside a subset that it checks completely
 * and that jansson (JSON_REJECT_DUPLICATES) reads with the same meaning:
 * ASCII only, no \u escapes, integers of at most 18 digits, reals whose
 * magnitude stays far from overflow, nesting depth at most 64, objects of
 * at most 32 members with no key twice and no backslash in a key. For
 * anything else, every malformed document included, it answers "unsure"
 * and the caller parses with jansson, which also writes the error
 * messages. tests/fuzz/jscan_fuzz.c checks that every vouched document is
 * one jansson accepts, with the same members and values.
 *
 * Pure functions on caller memory: any thread, no allocation. */
#ifndef ACKD_BASE_JSCAN_H
#define ACKD_BASE_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#define ACKD_JSCAN_MAX_MEMBERS 32

typedef struct {
    const char *key;   /* the key's characters, without quotes (no escapes in them) */
    size_t key_len;
    const char *value; /* the value's text, from its first to its last character */
    size_t value_len;
} ackd_jscan_member_t;

/* True if the document is an object inside the vouched subset; then
 * members[0..*n) are its members in document order. False: unsure. */
bool ackd_jscan_object(const char *doc, size_t len, ackd_jscan_member_t *members, int *n);

/* The characters of a string value that ackd_jscan_object vouched for
 * (its span, quotes included), unescaped into out, which needs len bytes;
 * returns how many (no NUL is added). Its escapes are the eight short
 * ones: a vouched string has no \u. */
size_t ackd_jscan_string(const char *span, size_t len, char *out);

/* Copies the JSON text in[0..len) to out without the whitespace between
 * tokens (strings are copied as they are); returns the length written. out
 * needs len + 1 bytes and is NUL-terminated. For text that is valid JSON,
 * such as a vouched member's value. */
size_t ackd_json_minify(const char *in, size_t len, char *out);

#endif
