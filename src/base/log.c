/* log.c - JSON-lines logging (see log.h). */
#include "base/log.h"

#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"

int ackd_log_level = ACKD_LOG_INFO;
static int log_fd = 2;

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

int ackd_log_level_parse(const char *s, int *out)
{
    for (int i = 0; i <= ACKD_LOG_OFF; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return ACKD_EINVAL;
}

const char *ackd_log_level_name(int level)
{
    return level >= 0 && level <= ACKD_LOG_OFF ? names[level] : "?";
}

void ackd_log_set_fd(int fd)
{
    log_fd = fd;
}

void ackd_log_begin(ackd_logline_t *l, int level, const char *msg)
{
    char ts[32];
    ackd_time_format(ackd_now_ms(), ts, sizeof ts);
    ackd_buf_init(&l->b, 64 * 1024);
    ackd_buf_printf(&l->b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, ackd_log_level_name(level));
    ackd_buf_append_json_str(&l->b, msg, strlen(msg));
    ackd_buf_appendc(&l->b, '"');
}

void ackd_log_strn(ackd_logline_t *l, const char *key, const char *val, size_t n)
{
    if (!val)
        return;
    ackd_buf_printf(&l->b, ",\"%s\":\"", key);
    ackd_buf_append_json_str(&l->b, val, n);
    ackd_buf_appendc(&l->b, '"');
}

void ackd_log_str(ackd_logline_t *l, const char *key, const char *val)
{
    if (val)
        ackd_log_strn(l, key, val, strlen(val));
}

void ackd_log_int(ackd_logline_t *l, const char *key, int64_t val)
{
    ackd_buf_printf(&l->b, ",\"%s\":%lld", key, (long long)val);
}

void ackd_log_double(ackd_logline_t *l, const char *key, double val)
{
    ackd_buf_printf(&l->b, ",\"%s\":%.3f", key, val);
}

void ackd_log_end(ackd_logline_t *l)
{
    ackd_buf_append(&l->b, "}\n", 2);
    const char *p = l->b.data;
    size_t n = l->b.len;
    while (n) {
        ssize_t w = write(log_fd, p, n);
        if (w <= 0)
            break;
        p += w;
        n -= (size_t)w;
    }
    ackd_buf_free(&l->b);
}
