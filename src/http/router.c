/* router.c - pattern matching for the route tables (see router.h).
 *
 * Routes are kept in a flat array; ackd has a few dozen, so a linear scan
 * over pre-split segments is cheaper than any tree would be to maintain. */
#include "http/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

#define MAX_SEGMENTS 16

typedef struct {
    const char *text; /* literal text, or the param name */
    size_t len;
    int param;
} segment_t;

typedef struct {
    ackd_route_t route; /* strings owned */
    void *data;
    segment_t segs[MAX_SEGMENTS];
    size_t nsegs;
} entry_t;

static void entry_free(entry_t *e);

struct ackd_router {
    entry_t *entries;
    size_t n, cap;
    ackd_http_authorize_fn authorize;
    void *authorize_data;
};

ackd_router_t *ackd_router_new(void)
{
    return ACKD_NEW(ackd_router_t);
}

void ackd_router_free(ackd_router_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        entry_free(&r->entries[i]);
    ackd_free(r->entries);
    ackd_free(r);
}

/* Splits "/a/{b}/c" into segments pointing into the (owned) pattern. */
static int split(const char *pattern, segment_t *segs, size_t *nsegs)
{
    if (pattern[0] != '/')
        return ACKD_EINVAL;
    size_t n = 0;
    const char *p = pattern + 1;
    while (1) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 && (end || n > 0))
            return ACKD_EINVAL; /* empty segment: "//" or a trailing slash */
        if (len > 0) {
            if (n == MAX_SEGMENTS)
                return ACKD_EINVAL;
            segment_t *s = &segs[n++];
            s->param = 0;
            s->text = NULL;
            *nsegs = n; /* so a later error frees what this one allocates */
            if (p[0] == '{') {
                if (len < 3 || p[len - 1] != '}' || memchr(p + 1, '{', len - 2) ||
                    memchr(p + 1, '}', len - 2))
                    return ACKD_EINVAL;
                s->text = ackd_strndup(p + 1, len - 2); /* owned: names are handed out */
                s->len = len - 2;
                s->param = 1;
            } else {
                if (memchr(p, '{', len) || memchr(p, '}', len))
                    return ACKD_EINVAL;
                s->text = p;
                s->len = len;
                s->param = 0;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    *nsegs = n;
    return 0;
}

int ackd_router_add(ackd_router_t *r, const ackd_route_t *route, void *data)
{
    entry_t e = {.data = data};
    e.route = *route;
    e.route.method = ackd_strdup(route->method);
    e.route.pattern = ackd_strdup(route->pattern);
    size_t params = 0;
    int rc = split(e.route.pattern, e.segs, &e.nsegs);
    for (size_t i = 0; rc == 0 && i < e.nsegs; i++)
        params += (size_t)e.segs[i].param;
    if (rc == 0 && params > ACKD_ROUTER_MAX_PARAMS)
        rc = ACKD_EINVAL;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        if (strcmp(r->entries[i].route.method, e.route.method) == 0 &&
            strcmp(r->entries[i].route.pattern, e.route.pattern) == 0)
            rc = ACKD_EEXIST;
    }
    if (rc) {
        entry_free(&e);
        return rc;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 32;
        r->entries = ackd_realloc(r->entries, r->cap * sizeof *r->entries);
    }
    r->entries[r->n++] = e;
    return 0;
}

int ackd_router_add_table(ackd_router_t *r, const ackd_route_t *table, void *data)
{
    for (; table->method; table++) {
        int rc = ackd_router_add(r, table, data);
        if (rc)
            return rc;
    }
    return 0;
}

void ackd_router_set_authorize(ackd_router_t *r, ackd_http_authorize_fn fn, void *data)
{
    r->authorize = fn;
    r->authorize_data = data;
}

ackd_http_authorize_fn ackd_router_authorize(const ackd_router_t *r, void **data)
{
    *data = r->authorize_data;
    return r->authorize;
}

/* Score of a match: a bit per literal segment, earlier segments weigh more. */
static void entry_free(entry_t *e)
{
    for (size_t i = 0; i < e->nsegs; i++)
        if (e->segs[i].param)
            ackd_free((char *)e->segs[i].text);
    ackd_free((char *)e->route.method);
    ackd_free((char *)e->route.pattern);
}

static long match_entry(const entry_t *e, const segment_t *path, size_t n)
{
    if (e->nsegs != n)
        return -1;
    long score = 0;
    for (size_t i = 0; i < n; i++) {
        const segment_t *s = &e->segs[i];
        if (s->param) {
            if (path[i].len == 0)
                return -1; /* "/v1/tasks/" is not /v1/tasks/{id} with an empty id */
            score <<= 1;
            continue;
        }
        if (s->len != path[i].len || memcmp(s->text, path[i].text, s->len) != 0)
            return -1;
        score = (score << 1) | 1;
    }
    return score;
}

static void allow_add(char *allow, size_t cap, const char *method)
{
    if (strstr(allow, method))
        return;
    size_t len = strlen(allow);
    snprintf(allow + len, cap - len, "%s%s", len ? ", " : "", method);
}

void ackd_router_match(const ackd_router_t *r, const char *method, const char *path, size_t len,
                       ackd_route_match_t *m)
{
    segment_t segs[MAX_SEGMENTS];
    size_t n = 0;
    memset(m, 0, sizeof *m);
    m->status = 404;
    if (len == 0 || path[0] != '/')
        return;
    /* split the request path; "/" is zero segments, a trailing slash is an
     * empty segment, which no pattern has, so it is a 404 */
    size_t i = 1;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (j == i && j == len && n == 0)
            break;
        if (n == MAX_SEGMENTS)
            return;
        segs[n].text = path + i;
        segs[n].len = j - i;
        segs[n].param = 0;
        n++;
        i = j + 1;
    }
    int is_head = strcmp(method, "HEAD") == 0;
    const entry_t *best = NULL;
    long best_score = -1;
    bool any_path = false;
    for (size_t k = 0; k < r->n; k++) {
        const entry_t *e = &r->entries[k];
        long score = match_entry(e, segs, n);
        if (score < 0)
            continue;
        any_path = true;
        const char *em = e->route.method;
        int same = strcmp(em, method) == 0 || (is_head && strcmp(em, "GET") == 0);
        if (same && score > best_score) {
            best = e;
            best_score = score;
        }
    }
    if (!best) {
        if (!any_path)
            return;
        /* a 405: only now is the Allow list worth building */
        for (size_t k = 0; k < r->n; k++) {
            const entry_t *e = &r->entries[k];
            if (match_entry(e, segs, n) < 0)
                continue;
            allow_add(m->allow, sizeof m->allow, e->route.method);
            if (strcmp(e->route.method, "GET") == 0)
                allow_add(m->allow, sizeof m->allow, "HEAD");
        }
        m->status = 405;
        return;
    }
    m->status = 200;
    m->route = &best->route;
    m->data = best->data;
    for (size_t k = 0; k < n; k++) {
        if (!best->segs[k].param)
            continue;
        m->names[m->nparams] = best->segs[k].text;
        m->values[m->nparams] = segs[k].text;
        m->lens[m->nparams] = segs[k].len;
        m->nparams++;
    }
}
