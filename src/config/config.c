/* config.c - loading ackd.conf and the ACKD_* variables into ackd_config_t.
 *
 * The order is: defaults (from the option table, options.c), the file
 * (parse.c, keys.c), the environment (env.c), then checks that span options
 * or sections (a route's queue exists, retry_base <= retry_cap, ...). Every
 * problem is collected with the file and line it comes from, so one run shows
 * them all (up to MAX_PROBLEMS). */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "config/loader.h"
#include "config/options.h"

#define MAX_PROBLEMS 20
#define MAX_FILE (4u << 20) /* bytes; a config with thousands of keys is far below */

void ackd_config_problem(ackd_config_loader_t *ld, const char *fmt, ...)
{
    if (ld->nproblems++ >= MAX_PROBLEMS)
        return;
    if (ld->problems.len)
        ackd_buf_appendc(&ld->problems, '\n');
    va_list ap;
    va_start(ap, fmt);
    ackd_buf_vprintf(&ld->problems, fmt, ap);
    va_end(ap);
}

void ackd_config_quote(ackd_buf_t *b, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(v);
    ackd_buf_appendc(b, '"');
    for (size_t i = 0; i < n && i < 80; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\') {
            ackd_buf_appendc(b, '\\');
            ackd_buf_appendc(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            ackd_buf_append(b, esc, 4);
        } else {
            ackd_buf_appendc(b, (char)c);
        }
    }
    if (n > 80)
        ackd_buf_appendz(b, "...");
    ackd_buf_appendc(b, '"');
}

void ackd_config_section_label(const ackd_config_t *cfg, ackd_config_section_t sec, size_t obj,
                               ackd_buf_t *b)
{
    switch (sec) {
    case ACKD_CONFIG_SERVER: ackd_buf_appendz(b, "[server]"); break;
    case ACKD_CONFIG_STORAGE: ackd_buf_appendz(b, "[storage]"); break;
    case ACKD_CONFIG_WEBHOOKS: ackd_buf_appendz(b, "[webhooks]"); break;
    case ACKD_CONFIG_QUEUE: ackd_buf_printf(b, "[queue %s]", cfg->queues[obj].name); break;
    case ACKD_CONFIG_ROUTE:
        ackd_buf_printf(b, "[route %s %s]", cfg->routes[obj].method, cfg->routes[obj].path);
        break;
    }
}

void ackd_config_at(const ackd_config_loader_t *ld, int line, ackd_config_section_t sec, size_t obj,
                    ackd_buf_t *b)
{
    ackd_buf_printf(b, "%s:%d: ", ld->name, line);
    ackd_config_section_label(ld->cfg, sec, obj, b);
    ackd_buf_appendc(b, ' ');
}

void *ackd_config_section_base(ackd_config_t *cfg, ackd_config_section_t sec, size_t obj)
{
    switch (sec) {
    case ACKD_CONFIG_SERVER: return &cfg->server;
    case ACKD_CONFIG_STORAGE: return &cfg->storage;
    case ACKD_CONFIG_WEBHOOKS: return &cfg->webhooks;
    case ACKD_CONFIG_QUEUE: return &cfg->queues[obj];
    case ACKD_CONFIG_ROUTE: return &cfg->routes[obj];
    }
    return NULL;
}

int ackd_config_seen_line(const ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj)
{
    for (size_t i = 0; i < ld->nseen; i++)
        if (ld->seen[i].opt == o && ld->seen[i].obj == obj)
            return ld->seen[i].line;
    return 0;
}

void ackd_config_mark_seen(ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj,
                           int line)
{
    if (ld->nseen == ld->capseen) {
        ld->capseen = ld->capseen ? 2 * ld->capseen : 32;
        ld->seen = ackd_realloc(ld->seen, ld->capseen * sizeof *ld->seen);
    }
    ld->seen[ld->nseen++] = (ackd_config_seen_t){.opt = o, .obj = obj, .line = line};
}

void ackd_config_apply_defaults(ackd_config_loader_t *ld, ackd_config_section_t sec, size_t obj)
{
    void *base = ackd_config_section_base(ld->cfg, sec, obj);
    for (size_t i = 0; i < ackd_config_nopts; i++) {
        const ackd_config_opt_t *o = &ackd_config_opts[i];
        if (o->section != sec || !o->def)
            continue;
        ackd_buf_t why;
        ackd_buf_init(&why, 0);
        if (ackd_config_opt_set(o, base, o->def, &why))
            ackd_config_problem(ld, "internal: default of %s: %s", o->name, why.data);
        ackd_buf_free(&why);
    }
}

static bool has_ctl(const char *v)
{
    for (; *v; v++)
        if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f)
            return true;
    return false;
}

int ackd_config_set(ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj,
                    const char *value, const char *prefix)
{
    ackd_buf_t why;
    ackd_buf_init(&why, 0);
    void *base = ackd_config_section_base(ld->cfg, o->section, obj);
    int rc = has_ctl(value) ? ACKD_EINVAL : ackd_config_opt_set(o, base, value, &why);
    if (rc) {
        if (!why.len)
            ackd_buf_appendz(&why, "unexpected control character");
        ackd_buf_appendz(&why, ", got ");
        ackd_config_quote(&why, value);
        ackd_config_problem(ld, "%s%s", prefix, why.data);
    }
    ackd_buf_free(&why);
    return rc;
}

/* Complains that option a's value exceeds option b's, at the line that set
 * a (or b, or the section). */
static void check_order(ackd_config_loader_t *ld, ackd_config_section_t sec, size_t obj,
                        const char *a, const char *b)
{
    const ackd_config_opt_t *oa = ackd_config_opt_find(sec, a), *ob = ackd_config_opt_find(sec, b);
    void *base = ackd_config_section_base(ld->cfg, sec, obj);
    int64_t va = *(int64_t *)((char *)base + oa->offset);
    int64_t vb = *(int64_t *)((char *)base + ob->offset);
    if (va <= vb)
        return;
    int line = ackd_config_seen_line(ld, oa, obj);
    if (!line)
        line = ackd_config_seen_line(ld, ob, obj);
    if (!line)
        line = sec == ACKD_CONFIG_QUEUE ? ld->cfg->queues[obj].line : ld->cfg->routes[obj].line;
    ackd_buf_t msg;
    ackd_buf_init(&msg, 0);
    ackd_config_at(ld, line, sec, obj, &msg);
    ackd_buf_printf(&msg, "%s: ", a);
    ackd_config_opt_format(oa, base, &msg);
    ackd_buf_printf(&msg, " is more than %s ", b);
    ackd_config_opt_format(ob, base, &msg);
    ackd_config_problem(ld, "%s", msg.data);
    ackd_buf_free(&msg);
}

static void check_route_queue(ackd_config_loader_t *ld, size_t i)
{
    const ackd_route_conf_t *r = &ld->cfg->routes[i];
    if (r->queue && ackd_config_queue(ld->cfg, r->queue))
        return;
    ackd_buf_t msg;
    ackd_buf_init(&msg, 0);
    ackd_config_at(ld, r->line, ACKD_CONFIG_ROUTE, i, &msg);
    if (r->queue)
        ackd_config_problem(ld, "%squeue: no [queue %s] is configured", msg.data, r->queue);
    else
        ackd_config_problem(ld, "%squeue: missing; a route needs queue = NAME", msg.data);
    ackd_buf_free(&msg);
}

/* A route's upstream_path: its queue pushes, and every {name} in it is one
 * of the route's own parameters. */
static void check_route_upstream_path(ackd_config_loader_t *ld, size_t i)
{
    const ackd_route_conf_t *r = &ld->cfg->routes[i];
    const ackd_queue_conf_t *q = r->queue ? ackd_config_queue(ld->cfg, r->queue) : NULL;
    if (!r->upstream_path || !q)
        return;
    ackd_buf_t at;
    ackd_buf_init(&at, 0);
    ackd_config_at(ld, r->line, ACKD_CONFIG_ROUTE, i, &at);
    if (!q->upstream)
        ackd_config_problem(ld, "%supstream_path: [queue %s] has no upstream (its workers pull)",
                            at.data, q->name);
    for (const char *p = r->upstream_path; (p = strchr(p, '{'));) {
        const char *end = strchr(p, '}');
        size_t n = end ? (size_t)(end - p + 1) : strlen(p); /* "{name}", braces and all */
        if (!end || !memmem(r->path, strlen(r->path), p, n)) {
            ackd_config_problem(ld, "%supstream_path: %.*s is not a parameter of %s", at.data,
                                (int)n, p, r->path);
            break;
        }
        p += n;
    }
    ackd_buf_free(&at);
}

static void validate(ackd_config_loader_t *ld)
{
    ackd_config_t *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nqueues; i++)
        check_order(ld, ACKD_CONFIG_QUEUE, i, "retry_base", "retry_cap");
    for (size_t i = 0; i < cfg->nroutes; i++) {
        check_route_queue(ld, i);
        check_route_upstream_path(ld, i);
        check_order(ld, ACKD_CONFIG_ROUTE, i, "wait", "max_wait");
    }
    ackd_config_keys_validate(ld);
}

static int load(ackd_config_t *out, const char *name, const char *text, char *const *envp,
                char *err, size_t errlen)
{
    ackd_config_loader_t ld = {.cfg = out, .name = name ? name : "(config)"};
    ackd_buf_init(&ld.problems, 0);
    ackd_config_apply_defaults(&ld, ACKD_CONFIG_SERVER, 0);
    ackd_config_apply_defaults(&ld, ACKD_CONFIG_STORAGE, 0);
    ackd_config_apply_defaults(&ld, ACKD_CONFIG_WEBHOOKS, 0);
    if (text) {
        int rc = ackd_config_parse(&ld, text);
        /* read_line passes inih only lines it accepts, so a line inih
         * refuses is one nobody reported yet (inih names only the first). */
        if (rc > 0)
            ackd_config_problem(&ld, "%s:%d: expected key = value (\" ;\" starts a comment)",
                                ld.name, rc);
        else if (rc < 0)
            ackd_config_problem(&ld, "%s: cannot parse (inih error %d)", ld.name, rc);
    }
    ackd_config_apply_env(&ld, envp);
    validate(&ld);
    ackd_free(ld.seen);
    int rc = 0;
    if (ld.nproblems) {
        if (ld.nproblems > MAX_PROBLEMS)
            ackd_buf_printf(&ld.problems, "\n(%d more problems not shown)",
                            ld.nproblems - MAX_PROBLEMS);
        if (errlen)
            snprintf(err, errlen, "%s", ld.problems.data);
        ackd_config_free(out);
        rc = ACKD_EINVAL;
    } else if (errlen) {
        err[0] = '\0';
    }
    ackd_buf_free(&ld.problems);
    return rc;
}

int ackd_config_load_string(ackd_config_t *out, const char *name, const char *text,
                            char *const *envp, char *err, size_t errlen)
{
    *out = (ackd_config_t){0};
    return load(out, name, text, envp, err, errlen);
}

/* Reads the whole file; refuses NUL bytes and files over MAX_FILE. */
static int read_file(const char *file, ackd_buf_t *b, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        return ACKD_EIO;
    }
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = ackd_buf_append(b, chunk, n);
    if (rc) {
        snprintf(err, errlen, "%s: larger than %u bytes", file, MAX_FILE);
    } else if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", file, strerror(errno));
        rc = ACKD_EIO;
    } else if (b->len && strlen(b->data) != b->len) {
        snprintf(err, errlen, "%s: contains a NUL byte; is it a text file?", file);
        rc = ACKD_EINVAL;
    }
    fclose(f);
    return rc;
}

int ackd_config_load(ackd_config_t *out, const char *file, char *const *envp, char *err,
                     size_t errlen)
{
    *out = (ackd_config_t){0};
    if (!file)
        return load(out, NULL, NULL, envp, err, errlen);
    ackd_buf_t text;
    ackd_buf_init(&text, MAX_FILE);
    int rc = read_file(file, &text, err, errlen);
    if (rc == 0) {
        rc = load(out, file, text.data ? text.data : "", envp, err, errlen);
        if (rc == 0)
            out->file = ackd_strdup(file);
    }
    ackd_buf_free(&text);
    return rc;
}

void ackd_config_free(ackd_config_t *cfg)
{
    for (size_t i = 0; i < ackd_config_nopts; i++) {
        const ackd_config_opt_t *o = &ackd_config_opts[i];
        size_t n = o->section == ACKD_CONFIG_QUEUE   ? cfg->nqueues
                   : o->section == ACKD_CONFIG_ROUTE ? cfg->nroutes
                                                     : 1;
        for (size_t j = 0; j < n; j++)
            ackd_config_opt_free(o, ackd_config_section_base(cfg, o->section, j));
    }
    for (size_t i = 0; i < cfg->nqueues; i++)
        ackd_free(cfg->queues[i].name);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        ackd_free(cfg->routes[i].method);
        ackd_free(cfg->routes[i].path);
    }
    ackd_config_keys_free(cfg);
    ackd_free(cfg->queues);
    ackd_free(cfg->routes);
    ackd_free(cfg->file);
    *cfg = (ackd_config_t){0};
}

const ackd_queue_conf_t *ackd_config_queue(const ackd_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nqueues; i++)
        if (strcmp(cfg->queues[i].name, name) == 0)
            return &cfg->queues[i];
    return NULL;
}
