/* log.h - one JSON object per line on stderr.
 *
 * ACKD_LOG checks the level before evaluating any field, so a disabled line
 * costs one comparison (Redis's serverLog idea):
 *
 *     ACKD_LOG(ACKD_LOG_INFO, "request done",
 *              LOG_STR("method", m), LOG_INT("status", 200));
 *
 * Each line is written with one write(2), so lines from several threads do not
 * interleave. Any thread. The level is process-wide, set once at start-up. */
#ifndef ACKD_BASE_LOG_H
#define ACKD_BASE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef enum {
    ACKD_LOG_DEBUG = 0,
    ACKD_LOG_INFO = 1,
    ACKD_LOG_WARN = 2,
    ACKD_LOG_ERROR = 3,
    ACKD_LOG_OFF = 4,
} ackd_log_level_t;

extern int ackd_log_level;

typedef struct {
    ackd_buf_t b;
} ackd_logline_t;

/* "debug" | "info" | "warn" | "error" | "off" -> level, or ACKD_EINVAL. */
int ackd_log_level_parse(const char *s, int *out);
const char *ackd_log_level_name(int level);
/* Sends log lines to fd instead of stderr (tests). */
void ackd_log_set_fd(int fd);

void ackd_log_begin(ackd_logline_t *l, int level, const char *msg);
void ackd_log_str(ackd_logline_t *l, const char *key, const char *val);
void ackd_log_strn(ackd_logline_t *l, const char *key, const char *val, size_t n);
void ackd_log_int(ackd_logline_t *l, const char *key, int64_t val);
void ackd_log_double(ackd_logline_t *l, const char *key, double val);
void ackd_log_end(ackd_logline_t *l);

#define ACKD_LOG(level, msg, ...)                                                                  \
    do {                                                                                           \
        if ((level) >= ackd_log_level) {                                                           \
            ackd_logline_t log_line_;                                                              \
            ackd_log_begin(&log_line_, (level), (msg));                                            \
            __VA_ARGS__;                                                                           \
            ackd_log_end(&log_line_);                                                              \
        }                                                                                          \
    } while (0)

#define LOG_STR(k, v) ackd_log_str(&log_line_, (k), (v))
#define LOG_STRN(k, v, n) ackd_log_strn(&log_line_, (k), (v), (n))
#define LOG_INT(k, v) ackd_log_int(&log_line_, (k), (int64_t)(v))
#define LOG_DBL(k, v) ackd_log_double(&log_line_, (k), (double)(v))

#endif
