/* error.h - the one error convention.
 *
 * Functions that can fail return int: 0 on success or a negative ACKD_E* code.
 * ackd_strerror() names a code for logs and messages. */
#ifndef ACKD_BASE_ERROR_H
#define ACKD_BASE_ERROR_H

enum {
    ACKD_OK = 0,
    ACKD_EINVAL = -1,    /* malformed input */
    ACKD_ERANGE = -2,    /* well-formed but out of bounds */
    ACKD_E2BIG = -3,     /* a capped buffer or limit was exceeded */
    ACKD_ENOENT = -4,    /* no such object */
    ACKD_EEXIST = -5,    /* already exists */
    ACKD_ECONFLICT = -6, /* state does not allow it (stale lease, wrong state) */
    ACKD_EIO = -7,       /* storage or system I/O failed */
    ACKD_ETIMEDOUT = -8,
    ACKD_ECANCELED = -9,
    ACKD_ECLOSED = -10,  /* the peer or the object is gone */
    ACKD_EAGAIN = -11,
    ACKD_ENOSPC = -12,   /* storage is out of space (a full disk, a quota, a file-size limit) */
    ACKD_ESYNC = -13,    /* a sync failed: what was written may or may not be on disk */
};

const char *ackd_strerror(int code);

#endif
