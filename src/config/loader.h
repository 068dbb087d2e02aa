/* loader.h - the state of one configuration load, shared by config.c
 * (defaults, checks, messages), parse.c (the file), keys.c ([keys] lines) and
 * env.c (ACKD_* variables). Internal to src/config; the main thread only. */
#ifndef ACKD_CONFIG_LOADER_H
#define ACKD_CONFIG_LOADER_H

#include <stddef.h>

#include "base/buf.h"
#include "config/config.h"
#include "config/options.h"

typedef enum {
    ACKD_CONFIG_IN_NOTHING, /* before the first [section] */
    ACKD_CONFIG_IN_SKIPPED, /* a section already reported as wrong: its lines are ignored */
    ACKD_CONFIG_IN_KEYS,
    ACKD_CONFIG_IN_OPTIONS, /* sec and obj say which */
} ackd_config_scope_t;

typedef struct {
    const ackd_config_opt_t *opt;
    size_t obj;
    int line;
} ackd_config_seen_t;

typedef struct {
    ackd_config_t *cfg;
    const char *name;          /* the file name as given, for messages */
    const char *pos;           /* next unread byte of the text */
    int line;                  /* line being handled, from 1 */
    ackd_config_scope_t scope; /* of the current section */
    ackd_config_section_t sec;
    size_t obj;                /* index of the current queue or route */
    ackd_buf_t problems;       /* one message per line */
    int nproblems;             /* all of them, also those not kept */
    ackd_config_seen_t *seen;  /* options set in the file, with their line */
    size_t nseen, capseen;
} ackd_config_loader_t;

/* Records one problem message (printf-style, without a newline). */
void ackd_config_problem(ackd_config_loader_t *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends v in double quotes, escaped, cut after 80 bytes: the `got "..."`. */
void ackd_config_quote(ackd_buf_t *b, const char *v);
/* Appends "[server]", "[queue payments]", "[route POST /api/x]". */
void ackd_config_section_label(const ackd_config_t *cfg, ackd_config_section_t sec, size_t obj,
                               ackd_buf_t *b);
/* The struct that holds section sec's options (obj: queue or route index). */
void *ackd_config_section_base(ackd_config_t *cfg, ackd_config_section_t sec, size_t obj);

/* Appends "ackd.conf:12: [queue payments] ": where a problem is. */
void ackd_config_at(const ackd_config_loader_t *ld, int line, ackd_config_section_t sec, size_t obj,
                    ackd_buf_t *b);
/* The line where the file set option o of object obj, or 0. Kept to report
 * repeats and to point problems that span options at a line. */
int ackd_config_seen_line(const ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj);
void ackd_config_mark_seen(ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj,
                           int line);
/* Sets every option of section sec (object obj) that has a default. */
void ackd_config_apply_defaults(ackd_config_loader_t *ld, ackd_config_section_t sec, size_t obj);
/* Sets option o of object obj from value; on failure records
 * `<prefix>expected ..., got "value"` and returns ACKD_EINVAL. */
int ackd_config_set(ackd_config_loader_t *ld, const ackd_config_opt_t *o, size_t obj,
                    const char *value, const char *prefix);

/* parse.c: reads the INI text into ld->cfg; returns inih's result (0, or the
 * first line inih itself refused). */
int ackd_config_parse(ackd_config_loader_t *ld, const char *text);
/* env.c: applies the ACKD_* variables of envp (NULL-terminated, may be NULL). */
void ackd_config_apply_env(ackd_config_loader_t *ld, char *const *envp);

/* keys.c: one `<sha256 hex> = <tenant> <role> [queue,...]` line of [keys]. */
void ackd_config_key_line(ackd_config_loader_t *ld, const char *name, const char *value);
/* keys.c: checks, once everything is read, that worker keys name real queues. */
void ackd_config_keys_validate(ackd_config_loader_t *ld);
/* keys.c: frees cfg->keys. */
void ackd_config_keys_free(ackd_config_t *cfg);

#endif
