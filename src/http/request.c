/* request.c - a request's life: creation, accessors, routing, freeing.
 * Loop thread only. */
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "http/internal.h"

#define ARENA_BLOCK 768 /* a parked request keeps it: 10 000 long polls must stay small */

ackd_http_req_t *ackd_http_req_new(ackd_http_conn_t *c)
{
    ackd_arena_t arena;
    ackd_arena_init(&arena, ARENA_BLOCK);
    ackd_http_req_t *req = ackd_arena_alloc(&arena, sizeof *req);
    memset(req, 0, sizeof *req);
    req->arena = arena;
    req->conn = c;
    req->query = "";
    req->start_us = ackd_mono_us();
    ackd_buf_init(&req->body, c->srv->limits.max_body);
    return req;
}

void ackd_http_req_free(ackd_http_req_t *req)
{
    ackd_buf_free(&req->body);
    ackd_arena_t arena = req->arena; /* the request lives in its own arena */
    ackd_arena_free(&arena);
}

const char *ackd_http_req_method(const ackd_http_req_t *req) { return req->method; }
const char *ackd_http_req_path(const ackd_http_req_t *req) { return req->path; }
const char *ackd_http_req_query(const ackd_http_req_t *req) { return req->query; }
const char *ackd_http_req_id(const ackd_http_req_t *req) { return req->id; }
void ackd_http_req_set_auth(ackd_http_req_t *req, const void *auth) { req->auth = auth; }
const void *ackd_http_req_auth(const ackd_http_req_t *req) { return req->auth; }
uv_loop_t *ackd_http_req_loop(const ackd_http_req_t *req) { return req->conn->srv->loop; }

const char *ackd_http_req_peer(ackd_http_req_t *req)
{
    ackd_http_conn_t *c = req->conn;
    if (!c)
        return "";
    if (!c->peer[0]) {
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
            return "";
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) /* a dual-stack listener's IPv4 client */
                uv_inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, c->peer, sizeof c->peer);
            else
                uv_ip6_name(a, c->peer, sizeof c->peer);
        } else {
            uv_ip4_name((const struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        }
    }
    return c->peer;
}

void *ackd_http_req_alloc(ackd_http_req_t *req, size_t n)
{
    return ackd_arena_alloc(&req->arena, n);
}

char *ackd_http_req_strdup(ackd_http_req_t *req, const char *s)
{
    return ackd_arena_strdup(&req->arena, s);
}

const char *ackd_http_req_header(const ackd_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

int ackd_http_req_header_at(const ackd_http_req_t *req, size_t i, const char **name,
                            const char **value)
{
    if (i >= req->nheaders)
        return -1;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return 0;
}

const char *ackd_http_req_body(const ackd_http_req_t *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *ackd_http_req_param(const ackd_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

const char *ackd_http_req_param_raw(const ackd_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_raw[i];
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into the arena; '+' is a space when plus_space. */
static char *decode(ackd_arena_t *a, const char *s, size_t n, int plus_space)
{
    char *out = ackd_arena_alloc(a, n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (plus_space && s[i] == '+') {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

const char *ackd_http_req_query_param(const ackd_http_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = req->query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            ackd_arena_t *a = (ackd_arena_t *)&req->arena;
            return eq ? decode(a, eq + 1, len - klen - 1, 1) : "";
        }
        if (!end)
            break;
        p = end + 1;
    }
    return NULL;
}

/* X-Request-ID is echoed when it is short and printable, so it cannot smuggle
 * anything into our headers or logs; otherwise a fresh id is made. */
static void assign_id(ackd_http_req_t *req)
{
    const char *given = ackd_http_req_header(req, "x-request-id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n <= 128;
        for (size_t i = 0; ok && i < n; i++)
            ok = given[i] > 0x20 && given[i] < 0x7f;
        if (ok) {
            req->id = given; /* the header value lives in the arena already */
            return;
        }
    }
    char *id = ackd_arena_alloc(&req->arena, ACKD_ID_MAX);
    ackd_id_new_label("req_", id); /* a label, not a secret: no CSPRNG per request */
    req->id = id;
}

void ackd_http_req_dispatch(ackd_http_req_t *req)
{
    ackd_http_conn_t *c = req->conn;
    assign_id(req);
    ackd_route_match_t m;
    ackd_router_match(c->srv->router, req->method, req->path, strlen(req->path), &m);
    if (m.status == 404) {
        ackd_http_respond_problem(req, 404, "not-found", NULL, NULL, "no resource at %s",
                                  req->path);
        return;
    }
    if (m.status == 405) {
        ackd_http_resp_header(req, "Allow", m.allow);
        ackd_http_respond_problem(req, 405, "method-not-allowed", NULL, NULL,
                                  "%s is not allowed on %s; allowed: %s", req->method, req->path,
                                  m.allow);
        return;
    }
    req->nparams = m.nparams;
    for (size_t i = 0; i < m.nparams; i++) {
        req->param_names[i] = m.names[i];
        req->param_values[i] = decode(&req->arena, m.values[i], m.lens[i], 0);
        req->param_raw[i] = ackd_arena_strndup(&req->arena, m.values[i], m.lens[i]);
    }
    void *auth_data;
    ackd_http_authorize_fn authorize = ackd_router_authorize(c->srv->router, &auth_data);
    if (authorize && authorize(req, m.route->role, auth_data) != 0)
        return;
    m.route->handler(req, m.data);
}
