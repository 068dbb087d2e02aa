/* env.c - ACKD_* environment variables override options of the file.
 *
 *     ACKD_SERVER_<KEY>, ACKD_STORAGE_<KEY>, ACKD_WEBHOOKS_<KEY>
 *     ACKD_QUEUE_<NAME>_<KEY>            for a [queue NAME] of the file
 *     ACKD_ROUTE_<METHOD>_<PATH>_<KEY>   for a [route METHOD /PATH] of the file
 *
 * KEY is the option name upper-cased; NAME and PATH are upper-cased with
 * every character other than A-Z and 0-9 turned into '_', PATH without its
 * leading '/': ACKD_ROUTE_GET_V1_ORDERS__ID__WAIT is `wait` of
 * [route GET /v1/orders/{id}]. A variable under these prefixes that names no
 * option is an error, so typos do not pass silently; other ACKD_* variables
 * (ACKD_CONFIG, ...) are not ours and are ignored. */
#include <stdbool.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "config/loader.h"

/* Appends s upper-cased with every other character as '_'. */
static void mangle(ackd_buf_t *b, const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        ackd_buf_appendc(b, c);
    }
}

/* The option of section sec whose upper-cased name is key. */
static const ackd_config_opt_t *opt_for_env(ackd_config_section_t sec, const char *key)
{
    for (size_t i = 0; i < ackd_config_nopts; i++) {
        const ackd_config_opt_t *o = &ackd_config_opts[i];
        ackd_buf_t up;
        ackd_buf_init(&up, 0);
        mangle(&up, o->name);
        bool match = o->section == sec && strcmp(up.data, key) == 0;
        ackd_buf_free(&up);
        if (match)
            return o;
    }
    return NULL;
}

/* "POST_API_PROCESS_PAYMENT" for POST /api/process-payment, "PAYMENTS" for
 * queue payments: what follows ACKD_ROUTE_ or ACKD_QUEUE_. */
static void env_stem(const ackd_config_t *cfg, ackd_config_section_t sec, size_t obj,
                     ackd_buf_t *b)
{
    if (sec == ACKD_CONFIG_QUEUE) {
        mangle(b, cfg->queues[obj].name);
    } else {
        ackd_buf_appendz(b, cfg->routes[obj].method);
        ackd_buf_appendc(b, '_');
        mangle(b, cfg->routes[obj].path + 1);
    }
}

static void env_set(ackd_config_loader_t *ld, const char *var, const char *value,
                    const ackd_config_opt_t *o, size_t obj)
{
    ackd_buf_t prefix;
    ackd_buf_init(&prefix, 0);
    ackd_buf_printf(&prefix, "%s: ", var);
    ackd_config_set(ld, o, obj, value, prefix.data);
    ackd_buf_free(&prefix);
}

/* ACKD_QUEUE_<stem>_<KEY> / ACKD_ROUTE_<stem>_<KEY>: tries every declared
 * queue or route, since names and keys both hold '_'. */
static void env_many(ackd_config_loader_t *ld, const char *var, const char *rest,
                     const char *value, ackd_config_section_t sec)
{
    size_t n = sec == ACKD_CONFIG_QUEUE ? ld->cfg->nqueues : ld->cfg->nroutes;
    const ackd_config_opt_t *found = NULL;
    size_t found_obj = 0, matches = 0;
    ackd_buf_t stem, labels;
    ackd_buf_init(&stem, 0);
    ackd_buf_init(&labels, 0);
    for (size_t i = 0; i < n; i++) {
        ackd_buf_reset(&stem);
        env_stem(ld->cfg, sec, i, &stem);
        if (strncmp(rest, stem.data, stem.len) != 0 || rest[stem.len] != '_')
            continue;
        const ackd_config_opt_t *o = opt_for_env(sec, rest + stem.len + 1);
        if (!o)
            continue;
        if (matches++)
            ackd_buf_appendz(&labels, " and ");
        ackd_config_section_label(ld->cfg, sec, i, &labels);
        found = o;
        found_obj = i;
    }
    if (matches == 1)
        env_set(ld, var, value, found, found_obj);
    else if (matches > 1)
        ackd_config_problem(ld, "%s: ambiguous, names an option of %s", var, labels.data);
    else
        ackd_config_problem(ld, "%s: matches no option of a %s declared in the file", var,
                            sec == ACKD_CONFIG_QUEUE ? "[queue NAME]" : "[route METHOD /path]");
    ackd_buf_free(&stem);
    ackd_buf_free(&labels);
}

static void env_one(ackd_config_loader_t *ld, const char *var, const char *value)
{
    static const struct {
        const char *prefix, *label;
        ackd_config_section_t sec;
    } prefixes[] = {
        {.prefix = "ACKD_SERVER_", .label = "[server]", .sec = ACKD_CONFIG_SERVER},
        {.prefix = "ACKD_STORAGE_", .label = "[storage]", .sec = ACKD_CONFIG_STORAGE},
        {.prefix = "ACKD_WEBHOOKS_", .label = "[webhooks]", .sec = ACKD_CONFIG_WEBHOOKS},
        {.prefix = "ACKD_QUEUE_", .label = NULL, .sec = ACKD_CONFIG_QUEUE},
        {.prefix = "ACKD_ROUTE_", .label = NULL, .sec = ACKD_CONFIG_ROUTE},
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t pn = strlen(prefixes[i].prefix);
        if (strncmp(var, prefixes[i].prefix, pn) != 0)
            continue;
        if (!prefixes[i].label) {
            env_many(ld, var, var + pn, value, prefixes[i].sec);
            return;
        }
        const ackd_config_opt_t *o = opt_for_env(prefixes[i].sec, var + pn);
        if (o)
            env_set(ld, var, value, o, 0);
        else
            ackd_config_problem(ld, "%s: unknown variable, %s has no such option", var,
                                prefixes[i].label);
        return;
    }
}

void ackd_config_apply_env(ackd_config_loader_t *ld, char *const *envp)
{
    for (; envp && *envp; envp++) {
        const char *eq = strchr(*envp, '=');
        if (!eq || strncmp(*envp, "ACKD_", 5) != 0)
            continue;
        char *var = ackd_strndup(*envp, (size_t)(eq - *envp));
        env_one(ld, var, eq + 1);
        ackd_free(var);
    }
}
