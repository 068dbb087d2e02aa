/* guard.h - which addresses callbacks may reach.
 *
 * A callback host is resolved once; if any of its addresses is private,
 * loopback, link-local (the cloud metadata address 169.254.169.254 among
 * them), CGNAT, multicast, unspecified or reserved — or an IPv4-mapped or
 * NAT64 form of these — the callback is refused, unless the address is in a
 * range `[webhooks] allow_private` opens. ackd then connects only to the
 * addresses it checked (no second lookup an attacker could answer
 * differently). Built once; read-only after: any thread. */
#ifndef ACKD_WEBHOOK_GUARD_H
#define ACKD_WEBHOOK_GUARD_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    int family;                /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
} ackd_cidr_t;

typedef struct {
    ackd_cidr_t *allow;
    int nallow;
} ackd_guard_t;

/* Parses "10.0.0.0/8 127.0.0.0/8 fd00::/8" (spaces or commas). 0 or ACKD_EINVAL. */
int ackd_guard_init(ackd_guard_t *g, const char *allow_private);
void ackd_guard_free(ackd_guard_t *g);
/* NULL when sa may be reached; else why not ("loopback", "private", ...). */
const char *ackd_guard_check(const ackd_guard_t *g, const struct sockaddr *sa);
/* The same for a host written as an address ("127.0.0.1", "::1"); NULL for
 * a name, which is checked once it is resolved. */
const char *ackd_guard_check_host(const ackd_guard_t *g, const char *host);

#endif
