/* token.h - the token of HTTP's grammar (RFC 9110 §5.6.2): what a field
 * name is made of, for names that come from a configuration or a worker
 * rather than through the parser. Pure: any thread. */
#ifndef ACKD_BASE_TOKEN_H
#define ACKD_BASE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* tchar: a letter, a digit or one of !#$%&'*+-.^_`|~ */
static inline bool ackd_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One or more tchars. */
static inline bool ackd_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!ackd_tchar(*s))
            return false;
    return true;
}

#endif
