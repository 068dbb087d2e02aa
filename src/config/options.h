/* options.h - the option table behind config.c (internal to src/config).
 *
 * One row per option of [server], [storage], [webhooks], [queue NAME] and
 * [route METHOD /path]: its name, type, bounds, default (as written in a
 * file), doc line and where it lives in the section's struct. The loader
 * (config.c) uses the rows to parse file lines and ACKD_* variables, and to
 * print the effective configuration. [keys] lines are not options; config.c
 * handles them. Pure data and pure functions; any thread. */
#ifndef ACKD_CONFIG_OPTIONS_H
#define ACKD_CONFIG_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef enum {
    ACKD_CONFIG_SERVER,
    ACKD_CONFIG_STORAGE,
    ACKD_CONFIG_WEBHOOKS,
    ACKD_CONFIG_QUEUE,
    ACKD_CONFIG_ROUTE,
} ackd_config_section_t;

typedef enum {
    ACKD_CONFIG_STRING,   /* char *; NULL when empty unless min = 1 (required) */
    ACKD_CONFIG_INT,      /* int, min..max */
    ACKD_CONFIG_DURATION, /* int64_t ms, min..max ms */
    ACKD_CONFIG_SIZE,     /* uint64_t bytes, min..max bytes */
    ACKD_CONFIG_BOOL,     /* bool: on/off, true/false, yes/no, 1/0 */
    ACKD_CONFIG_ENUM,     /* int-sized enum; the value is the index in choices */
    ACKD_CONFIG_LISTEN,   /* char * host:port, also fills listen_host/listen_port */
    ACKD_CONFIG_DOUBLE,   /* double, min..max */
} ackd_config_type_t;

/* Validates a non-empty string value and appends its canonical form to
 * canon. Returns 0 or ACKD_EINVAL. */
typedef int (*ackd_config_check_cb)(const char *value, ackd_buf_t *canon);

typedef struct {
    ackd_config_section_t section;
    const char *name;
    ackd_config_type_t type;
    int64_t min, max;           /* see the types above; unused for bool, enum, listen */
    const char *def;            /* default as written in a file; NULL: unset (string) */
    const char *doc;            /* one line, printed as a comment above the option */
    size_t offset;              /* into the section's struct */
    const char *choices;        /* enum: "full|normal" */
    ackd_config_check_cb check; /* string: validation and canonical form */
    const char *form;           /* string: what check accepts, for messages */
} ackd_config_opt_t;

extern const ackd_config_opt_t ackd_config_opts[];
extern const size_t ackd_config_nopts;

/* The option `name` of a section, or NULL. */
const ackd_config_opt_t *ackd_config_opt_find(ackd_config_section_t section, const char *name);

/* Parses text (NUL-terminated, already trimmed) into the option's field of
 * the section struct at base, replacing (and freeing) the previous value. On
 * failure returns ACKD_EINVAL, leaves the field unchanged and appends to why
 * the expected form, e.g. "expected an integer 1..1000". */
int ackd_config_opt_set(const ackd_config_opt_t *o, void *base, const char *text, ackd_buf_t *why);

/* Appends the field's value in the form ackd_config_opt_set reads back. */
void ackd_config_opt_format(const ackd_config_opt_t *o, const void *base, ackd_buf_t *out);

/* Frees what the field owns (strings) and clears it. */
void ackd_config_opt_free(const ackd_config_opt_t *o, void *base);

#endif
