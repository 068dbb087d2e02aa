/* keys.c - the [keys] section: which bearer keys exist, whose they are and
 * what they may do. Each line is
 *
 *     <sha256 hex of the key> = <tenant> <role> [queue,queue,...]
 *
 * with role client, worker or admin; only worker keys list queues (those
 * they may claim), and they must. Keys themselves never appear in the file. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "base/alloc.h"
#include "config/checks.h"
#include "config/loader.h"

#define MAX_KEY_QUEUES 1024

static bool is_sep(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

/* Splits s at spaces, tabs and commas (commas only if commas_too). */
static char **split(const char *s, bool commas_too, size_t *n)
{
    char **v = NULL;
    *n = 0;
    while (*s) {
        while (*s && (commas_too ? is_sep(*s) : (*s == ' ' || *s == '\t')))
            s++;
        if (!*s)
            break;
        const char *w = s;
        while (*s && !(commas_too ? is_sep(*s) : (*s == ' ' || *s == '\t')))
            s++;
        v = ackd_realloc(v, (*n + 2) * sizeof *v);
        v[(*n)++] = ackd_strndup(w, (size_t)(s - w));
        v[*n] = NULL;
    }
    return v;
}

static void free_words(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        ackd_free(v[i]);
    ackd_free(v);
}

static bool hash_ok(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdefABCDEF", *s))
            return false;
    return true;
}

static int parse_role(const char *s)
{
    if (strcmp(s, "client") == 0)
        return ACKD_ROLE_CLIENT;
    if (strcmp(s, "worker") == 0)
        return ACKD_ROLE_WORKER;
    if (strcmp(s, "admin") == 0)
        return ACKD_ROLE_ADMIN;
    return 0;
}

/* Checks tenant, role and queues of a key's value; 0 or a problem recorded
 * with the prefix `at` ("ackd.conf:30: [keys] <hash>: "). */
static int check_value(ackd_config_loader_t *ld, const char *at, const char *value, char **w,
                       size_t nw, char **queues, size_t nq)
{
    ackd_buf_t got;
    ackd_buf_init(&got, 0);
    int bad = 1;
    if (nw < 2) {
        ackd_config_quote(&got, value);
        ackd_config_problem(ld, "%sexpected \"<tenant> <role> [queue,...]\", got %s", at, got.data);
    } else if (!ackd_config_name_ok(w[0], strlen(w[0]))) {
        ackd_config_quote(&got, w[0]);
        ackd_config_problem(ld, "%stenant: expected 1..64 of A-Za-z0-9_.-, got %s", at, got.data);
    } else if (!parse_role(w[1])) {
        ackd_config_quote(&got, w[1]);
        ackd_config_problem(ld, "%srole: expected one of client|worker|admin, got %s", at,
                            got.data);
    } else if (nq && parse_role(w[1]) != ACKD_ROLE_WORKER) {
        ackd_config_quote(&got, value);
        ackd_config_problem(ld, "%sonly worker keys list queues, got %s", at, got.data);
    } else if (!nq && parse_role(w[1]) == ACKD_ROLE_WORKER) {
        ackd_config_problem(ld, "%sa worker key needs the queues it may claim, like "
                                "\"<tenant> worker emails,reports\"", at);
    } else if (nq > MAX_KEY_QUEUES) {
        ackd_config_problem(ld, "%smore than %d queues", at, MAX_KEY_QUEUES);
    } else {
        bad = 0;
        for (size_t i = 0; i < nq && !bad; i++) {
            if (ackd_config_name_ok(queues[i], strlen(queues[i])))
                continue;
            ackd_config_quote(&got, queues[i]);
            ackd_config_problem(ld,
                                "%squeue: expected a queue name (1..64 of A-Za-z0-9_.-), got %s",
                                at, got.data);
            bad = 1;
        }
    }
    ackd_buf_free(&got);
    return bad;
}

static void add_key(ackd_config_t *cfg, const char *hash, const char *tenant, int role,
                    char **queues, int line)
{
    cfg->keys = ackd_realloc(cfg->keys, (cfg->nkeys + 1) * sizeof *cfg->keys);
    ackd_key_conf_t *k = &cfg->keys[cfg->nkeys++];
    *k = (ackd_key_conf_t){.tenant = ackd_strdup(tenant), .role = role, .queues = queues,
                           .line = line};
    for (int i = 0; i < 64; i++) {
        char c = hash[i];
        k->hash_hex[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    k->hash_hex[64] = '\0';
}

void ackd_config_key_line(ackd_config_loader_t *ld, const char *name, const char *value)
{
    ackd_config_t *cfg = ld->cfg;
    ackd_buf_t at;
    ackd_buf_init(&at, 0);
    ackd_buf_printf(&at, "%s:%d: [keys] %s: ", ld->name, ld->line, name);
    if (!hash_ok(name)) {
        ackd_config_problem(ld, "%sexpected the SHA-256 of the key as 64 hex characters",
                            at.data);
        ackd_buf_free(&at);
        return;
    }
    for (size_t i = 0; i < cfg->nkeys; i++) {
        if (strcasecmp(cfg->keys[i].hash_hex, name) == 0) {
            ackd_config_problem(ld, "%sduplicate key (first on line %d)", at.data,
                                cfg->keys[i].line);
            ackd_buf_free(&at);
            return;
        }
    }
    size_t nw, nq = 0;
    char **w = split(value, false, &nw);
    /* Queues: everything after the role, split at commas and spaces. */
    ackd_buf_t rest;
    ackd_buf_init(&rest, 0);
    for (size_t i = 2; i < nw; i++) {
        ackd_buf_appendz(&rest, w[i]);
        ackd_buf_appendc(&rest, ',');
    }
    char **queues = rest.data ? split(rest.data, true, &nq) : NULL;
    if (check_value(ld, at.data, value, w, nw, queues, nq) == 0) {
        add_key(cfg, name, w[0], parse_role(w[1]), queues, ld->line);
        queues = NULL;
    }
    free_words(queues);
    free_words(w);
    ackd_buf_free(&rest);
    ackd_buf_free(&at);
}

void ackd_config_keys_validate(ackd_config_loader_t *ld)
{
    ackd_config_t *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->nkeys; i++) {
        const ackd_key_conf_t *k = &cfg->keys[i];
        for (size_t j = 0; k->queues && k->queues[j]; j++) {
            if (!ackd_config_queue(cfg, k->queues[j]))
                ackd_config_problem(ld, "%s:%d: [keys] %s: no [queue %s] is configured",
                                    ld->name, k->line, k->hash_hex, k->queues[j]);
        }
    }
}

void ackd_config_keys_free(ackd_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nkeys; i++) {
        ackd_free(cfg->keys[i].tenant);
        free_words(cfg->keys[i].queues);
    }
    ackd_free(cfg->keys);
    cfg->keys = NULL;
    cfg->nkeys = 0;
}
