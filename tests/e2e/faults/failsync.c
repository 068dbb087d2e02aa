/* failsync.c - a fault for the end-to-end tests, preloaded into ackd
 * (LD_PRELOAD): while the file named by ACKD_TEST_FAILSYNC exists, fsync
 * and fdatasync fail with EIO without syncing, as on a disk that lost a
 * write. Built by the test that uses it (test_store_full.py). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void)
{
    const char *flag = getenv("ACKD_TEST_FAILSYNC");
    return flag && access(flag, F_OK) == 0;
}

/* The real call, looked up once, unless the flag says fail. */
static int sync_or_fail(const char *name, int (**real)(int), int fd)
{
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!*real)
        *real = (int (*)(int))dlsym(RTLD_NEXT, name);
    return (*real)(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    return sync_or_fail("fdatasync", &real, fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    return sync_or_fail("fsync", &real, fd);
}
