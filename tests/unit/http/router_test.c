/* router_test.c - tests src/http/router.c: literal and {param} matching,
 * precedence, 404/405 with Allow, HEAD via GET, and what the table refuses. */
#include <string.h>

#include "../test.h"
#include "base/error.h"
#include "http/router.h"

static void h_a(ackd_http_req_t *req, void *data) { (void)req; (void)data; }
static void h_b(ackd_http_req_t *req, void *data) { (void)req; (void)data; }
static void h_c(ackd_http_req_t *req, void *data) { (void)req; (void)data; }

static int tag_tasks, tag_task, tag_stats, tag_cancel;

static const ackd_route_t table[] = {
    {.method = "GET", .pattern = "/healthz", .handler = h_a},
    {.method = "POST", .pattern = "/v1/tasks", .handler = h_a, .role = 1},
    {.method = "GET", .pattern = "/v1/tasks", .handler = h_b, .role = 2},
    {.method = "GET", .pattern = "/v1/tasks/{id}", .handler = h_c},
    {.method = "DELETE", .pattern = "/v1/tasks/{id}", .handler = h_a},
    {.method = NULL},
};

static ackd_router_t *new_router(void)
{
    ackd_router_t *r = ackd_router_new();
    if (ackd_router_add_table(r, table, &tag_tasks) != 0) {
        ackd_router_free(r);
        return NULL;
    }
    return r;
}

static void match(const ackd_router_t *r, const char *method, const char *path,
                  ackd_route_match_t *m)
{
    ackd_router_match(r, method, path, strlen(path), m);
}

/* The value of param i as a string (values are slices of the path). */
static const char *param(const ackd_route_match_t *m, size_t i, char *out, size_t outlen)
{
    size_t n = m->lens[i] < outlen - 1 ? m->lens[i] : outlen - 1;
    memcpy(out, m->values[i], n);
    out[n] = '\0';
    return out;
}

TEST(router_literal)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    match(r, "GET", "/healthz", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route && m.route->handler == h_a);
    CHECK(m.data == &tag_tasks);
    CHECK_INT(m.nparams, 0);

    match(r, "GET", "/v1/tasks", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_b);
    CHECK_INT(m.route->role, 2);
    match(r, "POST", "/v1/tasks", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_a);
    CHECK_INT(m.route->role, 1);
    CHECK_STR(m.route->pattern, "/v1/tasks");
    ackd_router_free(r);
}

TEST(router_not_found)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    const char *paths[] = {"/", "/nope", "/healthzz", "/health", "/v1", "/v1/tasks/a/b",
                           "healthz", "", "/HEALTHZ"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        match(r, "GET", paths[i], &m);
        CHECK_INT(m.status, 404);
        CHECK(m.route == NULL);
        CHECK_STR(m.allow, "");
    }
    ackd_router_free(r);
}

TEST(router_root_pattern)
{
    ackd_router_t *r = ackd_router_new();
    ackd_route_t root = {.method = "GET", .pattern = "/", .handler = h_a};
    CHECK_INT(ackd_router_add(r, &root, NULL), 0);
    ackd_route_match_t m;
    match(r, "GET", "/", &m);
    CHECK_INT(m.status, 200);
    match(r, "GET", "/x", &m);
    CHECK_INT(m.status, 404);
    ackd_router_free(r);
}

TEST(router_trailing_slash_is_404)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    match(r, "GET", "/healthz/", &m);
    CHECK_INT(m.status, 404);
    match(r, "GET", "/v1/tasks/", &m);
    CHECK_INT(m.status, 404); /* not the {id} route with an empty id */
    match(r, "GET", "/v1//tasks", &m);
    CHECK_INT(m.status, 404);
    match(r, "GET", "//healthz", &m);
    CHECK_INT(m.status, 404);
    ackd_router_free(r);
}

TEST(router_one_param)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    char buf[64];
    match(r, "GET", "/v1/tasks/tsk_01abc", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_c);
    CHECK_INT(m.nparams, 1);
    CHECK_STR(m.names[0], "id");
    CHECK_STR(param(&m, 0, buf, sizeof buf), "tsk_01abc");
    ackd_router_free(r);
}

TEST(router_params_point_into_path)
{
    ackd_router_t *r = ackd_router_new();
    ackd_route_t rt = {.method = "PUT", .pattern = "/q/{queue}/t/{task}/x/{n}", .handler = h_a};
    CHECK_INT(ackd_router_add(r, &rt, NULL), 0);
    const char *path = "/q/payments/t/tsk_9/x/%20a";
    ackd_route_match_t m;
    match(r, "PUT", path, &m);
    CHECK_INT(m.status, 200);
    CHECK_INT(m.nparams, 3);
    CHECK_STR(m.names[0], "queue");
    CHECK_STR(m.names[1], "task");
    CHECK_STR(m.names[2], "n");
    CHECK(m.values[0] == path + 3);
    CHECK_INT(m.lens[0], 8);
    CHECK(m.values[1] == path + 14);
    CHECK_INT(m.lens[1], 5);
    CHECK(m.values[2] == path + 22);
    CHECK_INT(m.lens[2], 4); /* not decoded: the router hands out raw slices */
    char buf[64];
    CHECK_STR(param(&m, 2, buf, sizeof buf), "%20a");
    ackd_router_free(r);
}

TEST(router_match_uses_len_not_nul)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    const char *path = "/v1/tasks/abc?x=1"; /* the caller cuts off the query */
    ackd_router_match(r, "GET", path, strlen("/v1/tasks/abc"), &m);
    CHECK_INT(m.status, 200);
    CHECK_INT(m.lens[0], 3);
    ackd_router_match(r, "GET", "/healthzXYZ", strlen("/healthz"), &m);
    CHECK_INT(m.status, 200);
    ackd_router_free(r);
}

TEST(router_literal_beats_param)
{
    ackd_router_t *r = ackd_router_new();
    /* added params first, so order of addition cannot be what decides */
    ackd_route_t routes[] = {
        {.method = "GET", .pattern = "/v1/tasks/{id}", .handler = h_a},
        {.method = "GET", .pattern = "/v1/tasks/stats", .handler = h_b},
        {.method = "POST", .pattern = "/v1/tasks/{id}/cancel", .handler = h_a},
        {.method = "POST", .pattern = "/v1/{kind}/{id}/cancel", .handler = h_b},
        {.method = "POST", .pattern = "/v1/{kind}/stats/{op}", .handler = h_c},
    };
    void *tags[] = {&tag_task, &tag_stats, &tag_cancel, &tag_tasks, &tag_tasks};
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        CHECK_INT(ackd_router_add(r, &routes[i], tags[i]), 0);
    ackd_route_match_t m;
    match(r, "GET", "/v1/tasks/stats", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.data == &tag_stats);
    CHECK_INT(m.nparams, 0);
    match(r, "GET", "/v1/tasks/other", &m);
    CHECK(m.data == &tag_task);
    CHECK_INT(m.nparams, 1);
    match(r, "POST", "/v1/tasks/x/cancel", &m);
    CHECK(m.data == &tag_cancel);
    CHECK(m.route->handler == h_a);
    match(r, "POST", "/v1/queues/x/cancel", &m);
    CHECK(m.route->handler == h_b);
    CHECK_INT(m.nparams, 2);
    /* the earlier literal wins: /v1/tasks/{id}/cancel over /v1/{kind}/stats/{op} */
    match(r, "POST", "/v1/tasks/stats/cancel", &m);
    CHECK(m.route->handler == h_a);
    ackd_router_free(r);
}

TEST(router_405_with_allow)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    match(r, "PUT", "/v1/tasks", &m);
    CHECK_INT(m.status, 405);
    CHECK(m.route == NULL);
    CHECK_STR(m.allow, "POST, GET, HEAD");
    match(r, "POST", "/v1/tasks/abc", &m);
    CHECK_INT(m.status, 405);
    CHECK_STR(m.allow, "GET, HEAD, DELETE");
    match(r, "DELETE", "/healthz", &m);
    CHECK_INT(m.status, 405);
    CHECK_STR(m.allow, "GET, HEAD");
    ackd_router_free(r);
}

TEST(router_405_without_get_has_no_head)
{
    ackd_router_t *r = ackd_router_new();
    ackd_route_t rt = {.method = "POST", .pattern = "/v1/jobs", .handler = h_a};
    CHECK_INT(ackd_router_add(r, &rt, NULL), 0);
    ackd_route_match_t m;
    match(r, "GET", "/v1/jobs", &m);
    CHECK_INT(m.status, 405);
    CHECK_STR(m.allow, "POST");
    match(r, "HEAD", "/v1/jobs", &m);
    CHECK_INT(m.status, 405);
    ackd_router_free(r);
}

TEST(router_head_served_by_get)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    match(r, "HEAD", "/healthz", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_a);
    CHECK_STR(m.route->method, "GET");
    match(r, "HEAD", "/v1/tasks/abc", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_c);
    CHECK_INT(m.nparams, 1);
    ackd_router_free(r);
}

TEST(router_explicit_head_route)
{
    ackd_router_t *r = ackd_router_new();
    ackd_route_t get = {.method = "GET", .pattern = "/x", .handler = h_a};
    ackd_route_t head = {.method = "HEAD", .pattern = "/x", .handler = h_b};
    CHECK_INT(ackd_router_add(r, &get, NULL), 0);
    CHECK_INT(ackd_router_add(r, &head, NULL), 0);
    ackd_route_match_t m;
    match(r, "HEAD", "/x", &m);
    CHECK_INT(m.status, 200);
    match(r, "PUT", "/x", &m);
    CHECK_INT(m.status, 405);
    CHECK_STR(m.allow, "GET, HEAD"); /* HEAD once */
    ackd_router_free(r);
}

TEST(router_methods_are_case_sensitive)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_match_t m;
    match(r, "get", "/healthz", &m);
    CHECK_INT(m.status, 405);
    ackd_router_free(r);
}

TEST(router_duplicate_is_eexist)
{
    ackd_router_t *r = new_router();
    CHECK(r);
    ackd_route_t dup = {.method = "GET", .pattern = "/v1/tasks/{id}", .handler = h_b};
    CHECK_INT(ackd_router_add(r, &dup, NULL), ACKD_EEXIST);
    ackd_route_t dup2 = {.method = "GET", .pattern = "/healthz", .handler = h_a};
    CHECK_INT(ackd_router_add(r, &dup2, NULL), ACKD_EEXIST);
    /* the same pattern under another method is fine */
    ackd_route_t put = {.method = "PUT", .pattern = "/healthz", .handler = h_a};
    CHECK_INT(ackd_router_add(r, &put, NULL), 0);
    /* the refused duplicate did not replace the original */
    ackd_route_match_t m;
    match(r, "GET", "/v1/tasks/1", &m);
    CHECK(m.route->handler == h_c);
    ackd_router_free(r);
}

TEST(router_table_stops_at_first_error)
{
    static const ackd_route_t bad[] = {
        {.method = "GET", .pattern = "/a", .handler = h_a},
        {.method = "GET", .pattern = "/a", .handler = h_b},
        {.method = "GET", .pattern = "/c", .handler = h_c},
        {.method = NULL},
    };
    ackd_router_t *r = ackd_router_new();
    CHECK_INT(ackd_router_add_table(r, bad, NULL), ACKD_EEXIST);
    ackd_route_match_t m;
    match(r, "GET", "/a", &m);
    CHECK_INT(m.status, 200);
    CHECK(m.route->handler == h_a);
    match(r, "GET", "/c", &m);
    CHECK_INT(m.status, 404);
    ackd_router_free(r);
}

TEST(router_bad_patterns_are_einval)
{
    const char *bad[] = {
        "",             /* empty */
        "healthz",      /* not absolute */
        "//x",          /* empty segment */
        "/x//y",        /* empty segment */
        "/x/",          /* trailing slash */
        "/{}",          /* empty param name */
        "/{id",         /* unclosed */
        "/id}",         /* stray brace */
        "/{a}{b}",      /* two params in one segment */
        "/x{id}",       /* param not a whole segment */
        "/{id}x",       /* param not a whole segment */
        "/{i{d}",       /* brace in a name */
        "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", /* 17 segments */
        "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", /* 9 params */
    };
    ackd_router_t *r = ackd_router_new();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ackd_route_t rt = {.method = "GET", .pattern = bad[i], .handler = h_a};
        int rc = ackd_router_add(r, &rt, NULL);
        if (rc != ACKD_EINVAL)
            ackd_test_fail(__FILE__, __LINE__, "pattern \"%s\": %d", bad[i], rc);
    }
    /* nothing was added */
    ackd_route_match_t m;
    match(r, "GET", "/x/", &m);
    CHECK_INT(m.status, 404);
    match(r, "GET", "/x", &m);
    CHECK_INT(m.status, 404);
    ackd_router_free(r);
}

TEST(router_limits_are_inclusive)
{
    ackd_router_t *r = ackd_router_new();
    ackd_route_t sixteen = {.method = "GET", .pattern = "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p",
                            .handler = h_a};
    ackd_route_t eight = {.method = "GET", .pattern = "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}",
                          .handler = h_b};
    CHECK_INT(ackd_router_add(r, &sixteen, NULL), 0);
    CHECK_INT(ackd_router_add(r, &eight, NULL), 0);
    ackd_route_match_t m;
    match(r, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", &m);
    CHECK_INT(m.status, 200);
    match(r, "GET", "/1/2/3/4/5/6/7/8", &m);
    CHECK_INT(m.status, 200);
    CHECK_INT(m.nparams, ACKD_ROUTER_MAX_PARAMS);
    CHECK_STR(m.names[7], "h");
    CHECK_INT(m.values[7][0], '8');
    /* a path longer than any pattern can be is a 404, not an overflow */
    match(r, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z", &m);
    CHECK_INT(m.status, 404);
    ackd_router_free(r);
}

TEST(router_copies_patterns)
{
    char method[8] = "GET", pattern[32] = "/v1/{name}";
    ackd_router_t *r = ackd_router_new();
    ackd_route_t rt = {.method = method, .pattern = pattern, .handler = h_a};
    CHECK_INT(ackd_router_add(r, &rt, NULL), 0);
    memset(method, 'X', sizeof method - 1);
    memset(pattern, 'X', sizeof pattern - 1);
    ackd_route_match_t m;
    match(r, "GET", "/v1/z", &m);
    CHECK_INT(m.status, 200);
    CHECK_STR(m.names[0], "name");
    CHECK_STR(m.route->pattern, "/v1/{name}");
    ackd_router_free(r);
}

static int authorize_stub(ackd_http_req_t *req, int role, void *data)
{
    (void)req;
    (void)role;
    (void)data;
    return 0;
}

TEST(router_authorize_hook)
{
    ackd_router_t *r = ackd_router_new();
    void *data = &tag_tasks;
    CHECK(ackd_router_authorize(r, &data) == NULL);
    CHECK(data == NULL);
    ackd_router_set_authorize(r, authorize_stub, &tag_stats);
    CHECK(ackd_router_authorize(r, &data) == authorize_stub);
    CHECK(data == &tag_stats);
    ackd_router_free(r);
}
