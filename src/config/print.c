/* print.c - the effective configuration as an INI file (`ackd config print`).
 * Every option of every section is written with its value, under a comment
 * with its doc line, so the output documents itself and loads back equal. */
#include <string.h>

#include "base/buf.h"
#include "config/config.h"
#include "config/options.h"

/* A value wrapped in quotes would lose them on reading; one more pair keeps
 * them. */
static void print_value(FILE *out, const char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        fprintf(out, "\"%s\"\n", v);
    else
        fprintf(out, "%s\n", v);
}

static void print_options(FILE *out, ackd_config_section_t sec, const void *base)
{
    ackd_buf_t v;
    ackd_buf_init(&v, 0);
    for (size_t i = 0; i < ackd_config_nopts; i++) {
        const ackd_config_opt_t *o = &ackd_config_opts[i];
        if (o->section != sec)
            continue;
        ackd_buf_reset(&v);
        ackd_config_opt_format(o, base, &v);
        if (o->def && o->def[0])
            fprintf(out, "# %s (default %s)\n%s = ", o->doc, o->def, o->name);
        else
            fprintf(out, "# %s\n%s = ", o->doc, o->name);
        print_value(out, v.data ? v.data : "");
    }
    ackd_buf_free(&v);
}

static void print_keys(const ackd_config_t *cfg, FILE *out)
{
    fputs("[keys]\n# <sha256 hex of the key> = <tenant> <client|worker|admin> [queue,...]\n", out);
    for (size_t i = 0; i < cfg->nkeys; i++) {
        const ackd_key_conf_t *k = &cfg->keys[i];
        const char *role = k->role == ACKD_ROLE_WORKER  ? "worker"
                           : k->role == ACKD_ROLE_ADMIN ? "admin"
                                                        : "client";
        fprintf(out, "%s = %s %s", k->hash_hex, k->tenant, role);
        for (size_t j = 0; k->queues && k->queues[j]; j++)
            fprintf(out, "%c%s", j ? ',' : ' ', k->queues[j]);
        fputc('\n', out);
    }
}

void ackd_config_print(const ackd_config_t *cfg, FILE *out)
{
    fputs("# ackd configuration: effective values (defaults, file, ACKD_* variables)\n\n", out);
    fputs("[server]\n", out);
    print_options(out, ACKD_CONFIG_SERVER, &cfg->server);
    fputs("\n[storage]\n", out);
    print_options(out, ACKD_CONFIG_STORAGE, &cfg->storage);
    fputs("\n[webhooks]\n", out);
    print_options(out, ACKD_CONFIG_WEBHOOKS, &cfg->webhooks);
    for (size_t i = 0; i < cfg->nqueues; i++) {
        fprintf(out, "\n[queue %s]\n", cfg->queues[i].name);
        print_options(out, ACKD_CONFIG_QUEUE, &cfg->queues[i]);
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        fprintf(out, "\n[route %s %s]\n", cfg->routes[i].method, cfg->routes[i].path);
        print_options(out, ACKD_CONFIG_ROUTE, &cfg->routes[i]);
    }
    fputc('\n', out);
    print_keys(cfg, out);
}
