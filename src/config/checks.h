/* checks.h - validation of the string forms of options (see checks.c).
 * Internal to src/config. Pure; any thread. */
#ifndef ACKD_CONFIG_CHECKS_H
#define ACKD_CONFIG_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Each takes a non-empty value; returns 0 and appends the canonical form to
 * canon, or ACKD_EINVAL. */

/* http(s)://host[:port], IPv6 hosts in brackets; a trailing '/' is dropped. */
int ackd_config_check_origin(const char *v, ackd_buf_t *canon);
/* http(s)://host[:port][/path][?query] */
int ackd_config_check_url(const char *v, ackd_buf_t *canon);
/* "/..." without spaces or control characters. */
int ackd_config_check_abs_path(const char *v, ackd_buf_t *canon);
/* 1..64 of [A-Za-z0-9_.-] */
int ackd_config_check_queue_name(const char *v, ackd_buf_t *canon);
/* whsec_<standard base64>, space-separated. */
int ackd_config_check_secrets(const char *v, ackd_buf_t *canon);
/* ADDR/BITS (IPv4 or IPv6), separated by spaces or commas. */
int ackd_config_check_cidrs(const char *v, ackd_buf_t *canon);
/* 1..50 durations (0..30d each), space-separated. */
int ackd_config_check_schedule(const char *v, ackd_buf_t *canon);
/* "tenant:whsec_... tenant:whsec_..." (tenant names as in [keys]). */
int ackd_config_check_tenant_secrets(const char *v, ackd_buf_t *canon);
/* HTTP field names (tokens) separated by spaces or commas; canonical form is
 * lower case, space-separated. */
int ackd_config_check_header_names(const char *v, ackd_buf_t *canon);

/* True for a queue or tenant name: 1..64 of [A-Za-z0-9_.-], but not "." or
 * "..", which a URL path cannot carry. */
int ackd_config_name_ok(const char *s, size_t n);

/* "host:port" or "[v6]:port", port 0..65535: *host (allocated, no brackets;
 * the caller frees it with ackd_free) and *port. 0 or ACKD_EINVAL. */
int ackd_config_parse_listen(const char *v, char **host, int *port);

/* ackd_format_duration, but "0" for 0. */
void ackd_config_format_duration(int64_t ms, char *out, size_t outlen);

#endif
