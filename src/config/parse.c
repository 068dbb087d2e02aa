/* parse.c - the INI text of ackd.conf: sections and key lines.
 *
 * inih splits key lines into name and value. It is fed by our own line
 * reader (read_line), which is what knows line numbers: inih 55 does not
 * pass them to the handler. The reader also handles [section] lines itself,
 * because inih neither reports an empty section nor keeps section names
 * longer than 50 bytes, and it strips indentation, so an indented line is
 * never taken as a continuation of the previous value. Lines are limited to
 * inih's buffer (198 characters); a longer one is reported, not cut. */
#include <ini.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "config/checks.h"
#include "config/loader.h"

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

typedef struct {
    const char *p;
    size_t n;
} word_t;

static size_t split_words(const char *s, size_t n, word_t *w, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && is_ws(s[i]))
            i++;
        if (i == n)
            break;
        size_t start = i;
        while (i < n && !is_ws(s[i]))
            i++;
        if (count < max)
            w[count] = (word_t){.p = s + start, .n = i - start};
        count++;
    }
    return count;
}

static bool word_is(word_t w, const char *s)
{
    return w.n == strlen(s) && memcmp(w.p, s, w.n) == 0;
}

static void enter(ackd_config_loader_t *ld, ackd_config_scope_t scope, ackd_config_section_t sec,
                  size_t obj)
{
    ld->scope = scope;
    ld->sec = sec;
    ld->obj = obj;
}

static void declare_queue(ackd_config_loader_t *ld, word_t name)
{
    ackd_config_t *cfg = ld->cfg;
    if (!ackd_config_name_ok(name.p, name.n)) {
        ackd_config_problem(ld,
                            "%s:%d: [queue %.*s]: expected a queue name of 1..64 of "
                            "A-Za-z0-9_.- (not . or ..)",
                            ld->name, ld->line, (int)name.n, name.p);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    for (size_t i = 0; i < cfg->nqueues; i++) {
        if (word_is(name, cfg->queues[i].name)) {
            ackd_config_problem(ld, "%s:%d: [queue %s]: duplicate queue (first on line %d)",
                                ld->name, ld->line, cfg->queues[i].name, cfg->queues[i].line);
            enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
            return;
        }
    }
    cfg->queues = ackd_realloc(cfg->queues, (cfg->nqueues + 1) * sizeof *cfg->queues);
    ackd_queue_conf_t *q = &cfg->queues[cfg->nqueues];
    *q = (ackd_queue_conf_t){.name = ackd_strndup(name.p, name.n), .line = ld->line};
    enter(ld, ACKD_CONFIG_IN_OPTIONS, ACKD_CONFIG_QUEUE, cfg->nqueues++);
    ackd_config_apply_defaults(ld, ACKD_CONFIG_QUEUE, ld->obj);
}

/* "/a/{id}/b": segments are literal pchars or a whole {name}; only the last
 * segment may be empty ("/" or "/a/"). */
static bool route_path_ok(const char *p, size_t n)
{
    static const char pchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "-._~!$&'()*+,;=:@%";
    if (n == 0 || p[0] != '/')
        return false;
    for (size_t i = 1; i <= n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        size_t sn = j - i;
        const char *s = p + i;
        if (sn == 0 && j < n)
            return false;
        if (sn && s[0] == '{') {
            if (sn < 3 || s[sn - 1] != '}')
                return false;
            for (size_t k = 1; k + 1 < sn; k++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
                            s[k]))
                    return false;
        } else {
            for (size_t k = 0; k < sn; k++)
                if (!s[k] || !strchr(pchar, s[k]))
                    return false;
        }
        i = j + 1;
    }
    return true;
}

/* The first {param} name that appears twice in a valid pattern (its length
 * in *len, the braces included), or NULL: a handler could read only one. */
static const char *repeated_param(const char *p, size_t n, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '{')
            continue;
        size_t a = strcspn(p + i, "}") + 1;
        for (size_t j = i + a; j < n; j++)
            if (p[j] == '{' && j + a <= n && memcmp(p + i, p + j, a) == 0) {
                *len = a;
                return p + i;
            }
        i += a - 1;
    }
    return NULL;
}

/* Same pattern: equal but for the names of {params}. */
static bool same_pattern(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a == '{' && *b == '{') {
            a += strcspn(a, "}");
            b += strcspn(b, "}");
            continue;
        }
        if (*a++ != *b++)
            return false;
    }
    return *a == *b;
}

/* Paths ackd answers itself, now or in the releases planned (metrics, the
 * dashboard, the OpenAPI document): a route there would be shadowed, or
 * would break on an upgrade. Below /v1 only ackd's own collections are
 * taken, so an API of one's own may still be versioned /v1/orders. Returns
 * the taken prefix, or NULL. */
static const char *reserved_prefix(const char *p, size_t n)
{
    static const char *const own[] = {"/v1/tasks", "/v1/queues", "/problems", "/healthz",
                                      "/readyz",   "/metrics",   "/ui",       "/openapi.json",
                                      "/debug"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        size_t k = strlen(own[i]);
        if (n >= k && strncmp(p, own[i], k) == 0 && (n == k || p[k] == '/'))
            return own[i];
    }
    return NULL;
}

static void declare_route(ackd_config_loader_t *ld, word_t method, word_t path)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    ackd_config_t *cfg = ld->cfg;
    char m[8] = "";
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (method.n == strlen(methods[i]) && strncasecmp(method.p, methods[i], method.n) == 0)
            snprintf(m, sizeof m, "%s", methods[i]);
    bool path_ok = route_path_ok(path.p, path.n);
    if (!m[0] || !path_ok) {
        ackd_config_problem(ld, "%s:%d: [route %.*s %.*s]: expected %s", ld->name, ld->line,
                            (int)method.n, method.p, (int)path.n, path.p,
                            !m[0] ? "a method GET|POST|PUT|PATCH|DELETE"
                                  : "a path like /api/orders/{id} (segments of URL characters or "
                                    "a whole {param})");
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    size_t plen;
    const char *twice = repeated_param(path.p, path.n, &plen);
    if (twice) {
        ackd_config_problem(ld, "%s:%d: [route %s %.*s]: the parameter %.*s appears twice",
                            ld->name, ld->line, m, (int)path.n, path.p, (int)plen, twice);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    const char *own = reserved_prefix(path.p, path.n);
    if (own) {
        ackd_config_problem(ld,
                            "%s:%d: [route %s %.*s]: %s is ackd's own (/v1/tasks, /v1/queues, "
                            "/problems, /healthz, /readyz, /metrics, /ui, /openapi.json, /debug); "
                            "put the route under another path",
                            ld->name, ld->line, m, (int)path.n, path.p, own);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    char *p = ackd_strndup(path.p, path.n);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (strcmp(cfg->routes[i].method, m) == 0 && same_pattern(cfg->routes[i].path, p)) {
            ackd_config_problem(ld, "%s:%d: [route %s %s]: duplicate route (first on line %d)",
                                ld->name, ld->line, m, p, cfg->routes[i].line);
            ackd_free(p);
            enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
            return;
        }
    }
    cfg->routes = ackd_realloc(cfg->routes, (cfg->nroutes + 1) * sizeof *cfg->routes);
    ackd_route_conf_t *r = &cfg->routes[cfg->nroutes];
    *r = (ackd_route_conf_t){.method = ackd_strdup(m), .path = p, .line = ld->line};
    enter(ld, ACKD_CONFIG_IN_OPTIONS, ACKD_CONFIG_ROUTE, cfg->nroutes++);
    ackd_config_apply_defaults(ld, ACKD_CONFIG_ROUTE, ld->obj);
}

/* The text between [ and ]. */
static void on_section(ackd_config_loader_t *ld, const char *s, size_t n)
{
    word_t w[4];
    size_t nw = split_words(s, n, w, 4);
    if (nw == 1 && word_is(w[0], "server"))
        enter(ld, ACKD_CONFIG_IN_OPTIONS, ACKD_CONFIG_SERVER, 0);
    else if (nw == 1 && word_is(w[0], "storage"))
        enter(ld, ACKD_CONFIG_IN_OPTIONS, ACKD_CONFIG_STORAGE, 0);
    else if (nw == 1 && word_is(w[0], "webhooks"))
        enter(ld, ACKD_CONFIG_IN_OPTIONS, ACKD_CONFIG_WEBHOOKS, 0);
    else if (nw == 1 && word_is(w[0], "keys"))
        enter(ld, ACKD_CONFIG_IN_KEYS, 0, 0);
    else if (nw == 2 && word_is(w[0], "queue"))
        declare_queue(ld, w[1]);
    else if (nw == 3 && word_is(w[0], "route"))
        declare_route(ld, w[1], w[2]);
    else {
        ackd_config_problem(ld,
                            "%s:%d: [%.*s]: unknown section; expected [server], [storage], "
                            "[webhooks], [queue NAME], [route METHOD /path] or [keys]",
                            ld->name, ld->line, (int)n, s);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
    }
}

/* Handles a [section] line; complains about text after the ]. */
static void section_line(ackd_config_loader_t *ld, const char *s, size_t n)
{
    const char *close = memchr(s, ']', n);
    if (!close) {
        ackd_config_problem(ld, "%s:%d: expected ] at the end of the section name", ld->name,
                            ld->line);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    const char *rest = close + 1, *end = s + n;
    while (rest < end && is_ws(*rest))
        rest++;
    if (rest < end && *rest != ';' && *rest != '#') {
        ackd_config_problem(ld, "%s:%d: unexpected text after ]", ld->name, ld->line);
        enter(ld, ACKD_CONFIG_IN_SKIPPED, 0, 0);
        return;
    }
    on_section(ld, s + 1, (size_t)(close - s - 1));
}

/* inih's reader: hands inih one line per call, so its line count is ours.
 * Blank lines, comments, [sections] and malformed lines are dealt with here
 * and reach inih as an empty line; key lines reach it without indentation. */
static char *read_line(char *str, int num, void *stream)
{
    ackd_config_loader_t *ld = stream;
    if (!*ld->pos || num < 2)
        return NULL;
    const char *s = ld->pos;
    size_t n = strcspn(s, "\n");
    ld->pos = s + n + (s[n] == '\n');
    ld->line++;
    if (ld->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    while (n && is_ws(*s))
        s++, n--;
    while (n && is_ws(s[n - 1]))
        n--;
    str[0] = '\0';
    if (n == 0 || *s == ';' || *s == '#')
        return str;
    if (*s == '[') {
        section_line(ld, s, n);
        return str;
    }
    if (!memchr(s, '=', n) && !memchr(s, ':', n)) {
        ackd_buf_t got;
        ackd_buf_init(&got, 0);
        char *line = ackd_strndup(s, n);
        ackd_config_quote(&got, line);
        ackd_config_problem(ld, "%s:%d: expected key = value or [section], got %s", ld->name,
                            ld->line, got.data);
        ackd_free(line);
        ackd_buf_free(&got);
        return str;
    }
    if (n + 2 > (size_t)num) {
        ackd_config_problem(ld, "%s:%d: line is longer than %d characters", ld->name, ld->line,
                            num - 2);
        return str;
    }
    memcpy(str, s, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/* Drops one pair of surrounding double quotes: schedule = "5s 5m". */
static const char *unquote(const char *v, char **owned)
{
    size_t n = strlen(v);
    *owned = NULL;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        return *owned = ackd_strndup(v + 1, n - 2);
    return v;
}

static void on_option(ackd_config_loader_t *ld, const char *name, const char *value)
{
    ackd_buf_t msg;
    ackd_buf_init(&msg, 0);
    ackd_config_at(ld, ld->line, ld->sec, ld->obj, &msg);
    ackd_buf_printf(&msg, "%s: ", name);
    const ackd_config_opt_t *o = ackd_config_opt_find(ld->sec, name);
    int first;
    if (!o) {
        ackd_config_problem(ld, "%sunknown option", msg.data);
    } else if ((first = ackd_config_seen_line(ld, o, ld->obj)) != 0) {
        ackd_config_problem(ld, "%sset twice (first on line %d)", msg.data, first);
    } else {
        ackd_config_mark_seen(ld, o, ld->obj, ld->line);
        ackd_config_set(ld, o, ld->obj, value, msg.data);
    }
    ackd_buf_free(&msg);
}

static int on_pair(void *user, const char *section, const char *name, const char *raw)
{
    ackd_config_loader_t *ld = user;
    (void)section; /* ld->sec: inih never sees our section lines */
    char *owned;
    const char *value = unquote(raw, &owned);
    if (!*name)
        ackd_config_problem(ld, "%s:%d: expected a name before =", ld->name, ld->line);
    else if (ld->scope == ACKD_CONFIG_IN_NOTHING)
        ackd_config_problem(ld, "%s:%d: %s: option outside any section (put it under [server], "
                                "...)", ld->name, ld->line, name);
    else if (ld->scope == ACKD_CONFIG_IN_KEYS)
        ackd_config_key_line(ld, name, value);
    else if (ld->scope == ACKD_CONFIG_IN_OPTIONS)
        on_option(ld, name, value);
    ackd_free(owned);
    return 1;
}

int ackd_config_parse(ackd_config_loader_t *ld, const char *text)
{
    ld->pos = text;
    return ini_parse_stream(read_line, ld, on_pair, ld);
}
