/* error.c - names for the ACKD_E* codes. */
#include "base/error.h"

const char *ackd_strerror(int code)
{
    switch (code) {
    case ACKD_OK: return "ok";
    case ACKD_EINVAL: return "invalid input";
    case ACKD_ERANGE: return "out of range";
    case ACKD_E2BIG: return "too large";
    case ACKD_ENOENT: return "not found";
    case ACKD_EEXIST: return "already exists";
    case ACKD_ECONFLICT: return "conflict";
    case ACKD_EIO: return "i/o error";
    case ACKD_ETIMEDOUT: return "timed out";
    case ACKD_ECANCELED: return "canceled";
    case ACKD_ECLOSED: return "closed";
    case ACKD_EAGAIN: return "try again";
    case ACKD_ENOSPC: return "no space left for the store";
    case ACKD_ESYNC: return "a sync of the store failed";
    }
    return "unknown error";
}
