/* sqlite_vfs.c - see sqlite_vfs.h. */
#include "store/sqlite_vfs.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>

/* One write at most: the unix VFS writes at most 128 KiB per call (and
 * reports a short write as a full disk); a larger commit goes out in
 * several writes. */
#define GATHER_MAX (120u * 1024)

typedef struct {
    sqlite3_file base;         /* methods: io_methods below */
    sqlite3_file *real;        /* the platform's file, right after this struct */
    bool wal;                  /* gather this file's writes */
    unsigned char *buf;        /* sqlite3_malloc'd */
    size_t len, cap;
    sqlite3_int64 at;          /* file offset of buf[0] */
} gfile_t;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs gather_vfs;
static sqlite3_io_methods io_methods;

#define REAL(f) (((gfile_t *)(f))->real)
#define RM(f) (REAL(f)->pMethods)

/* The errno of this thread's last write that failed (see
 * ackd_sqlite_vfs_take_errno) */
static __thread int write_errno;

int ackd_sqlite_vfs_take_errno(void)
{
    int e = write_errno;
    write_errno = 0;
    return e;
}

static int real_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
    int rc = RM(file)->xWrite(REAL(file), data, amt, off);
    if (rc != SQLITE_OK)
        write_errno = errno;
    return rc;
}

static int flush(gfile_t *f)
{
    if (f->len == 0)
        return SQLITE_OK;
    int rc = real_write(&f->base, f->buf, (int)f->len, f->at);
    f->len = 0;
    return rc;
}

static int g_close(sqlite3_file *file)
{
    gfile_t *f = (gfile_t *)file;
    int rc = flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);
    sqlite3_free(f->buf);
    f->buf = NULL;
    f->cap = 0;
    return rc != SQLITE_OK ? rc : rc2;
}

static int g_read(sqlite3_file *file, void *out, int amt, sqlite3_int64 off)
{
    int rc = flush((gfile_t *)file);
    return rc != SQLITE_OK ? rc : RM(file)->xRead(REAL(file), out, amt, off);
}

static int g_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
    gfile_t *f = (gfile_t *)file;
    if (!f->wal || amt <= 0)
        return real_write(file, data, amt, off);
    size_t n = (size_t)amt;
    if (n > GATHER_MAX) {
        int rc = flush(f);
        return rc != SQLITE_OK ? rc : real_write(file, data, amt, off);
    }
    if (f->len > 0 && (off != f->at + (sqlite3_int64)f->len || f->len + n > GATHER_MAX)) {
        int rc = flush(f);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (f->len + n > f->cap) {
        size_t cap = GATHER_MAX; /* all at once: a buffer per WAL file */
        unsigned char *grown = sqlite3_realloc64(f->buf, cap);
        if (!grown) { /* write what we have and this piece as they are */
            int rc = flush(f);
            return rc != SQLITE_OK ? rc : real_write(file, data, amt, off);
        }
        f->buf = grown;
        f->cap = cap;
    }
    if (f->len == 0)
        f->at = off;
    memcpy(f->buf + f->len, data, n);
    f->len += n;
    return SQLITE_OK;
}

static int g_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    int rc = flush((gfile_t *)file);
    return rc != SQLITE_OK ? rc : RM(file)->xTruncate(REAL(file), size);
}

static int g_sync(sqlite3_file *file, int flags)
{
    int rc = flush((gfile_t *)file);
    return rc != SQLITE_OK ? rc : RM(file)->xSync(REAL(file), flags);
}

static int g_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    int rc = flush((gfile_t *)file);
    return rc != SQLITE_OK ? rc : RM(file)->xFileSize(REAL(file), size);
}

static int g_lock(sqlite3_file *file, int level)
{
    return RM(file)->xLock(REAL(file), level);
}

static int g_unlock(sqlite3_file *file, int level)
{
    return RM(file)->xUnlock(REAL(file), level);
}

static int g_check_reserved(sqlite3_file *file, int *out)
{
    return RM(file)->xCheckReservedLock(REAL(file), out);
}

static int g_file_control(sqlite3_file *file, int op, void *arg)
{
    int rc = flush((gfile_t *)file);
    return rc != SQLITE_OK ? rc : RM(file)->xFileControl(REAL(file), op, arg);
}

static int g_sector_size(sqlite3_file *file)
{
    return RM(file)->xSectorSize(REAL(file));
}

static int g_device_characteristics(sqlite3_file *file)
{
    return RM(file)->xDeviceCharacteristics(REAL(file));
}

static int g_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out)
{
    return RM(file)->xShmMap(REAL(file), region, size, extend, out);
}

static int g_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    return RM(file)->xShmLock(REAL(file), offset, n, flags);
}

static void g_shm_barrier(sqlite3_file *file)
{
    RM(file)->xShmBarrier(REAL(file));
}

static int g_shm_unmap(sqlite3_file *file, int delete_flag)
{
    return RM(file)->xShmUnmap(REAL(file), delete_flag);
}

static int g_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **out)
{
    int rc = flush((gfile_t *)file);
    if (rc != SQLITE_OK)
        return rc;
    if (RM(file)->iVersion < 3) {
        *out = NULL; /* no memory map: SQLite reads instead */
        return SQLITE_OK;
    }
    return RM(file)->xFetch(REAL(file), off, amt, out);
}

static int g_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    return RM(file)->iVersion < 3 ? SQLITE_OK : RM(file)->xUnfetch(REAL(file), off, p);
}

static int g_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void)vfs;
    gfile_t *f = (gfile_t *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        f->base.pMethods = NULL; /* SQLite will not close a file that did not open */
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (f->real->pMethods->iVersion < 2) { /* no shared memory: WAL cannot work anyway */
        f->real->pMethods->xClose(f->real);
        f->base.pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &io_methods;
    return SQLITE_OK;
}

static int g_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int g_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int g_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *g_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return real_vfs->xDlOpen(real_vfs, name);
}

static void g_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    real_vfs->xDlError(real_vfs, n, out);
}

static void (*g_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void g_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    real_vfs->xDlClose(real_vfs, h);
}

static int g_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int g_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return real_vfs->xSleep(real_vfs, us);
}

static int g_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int g_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    int e = ackd_sqlite_vfs_take_errno();
    if (e)
        return e;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int g_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_OK;

static void do_register(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs || real_vfs->iVersion < 2 || !real_vfs->xCurrentTimeInt64) {
        register_rc = SQLITE_ERROR;
        return;
    }
    io_methods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = g_close,
        .xRead = g_read,
        .xWrite = g_write,
        .xTruncate = g_truncate,
        .xSync = g_sync,
        .xFileSize = g_file_size,
        .xLock = g_lock,
        .xUnlock = g_unlock,
        .xCheckReservedLock = g_check_reserved,
        .xFileControl = g_file_control,
        .xSectorSize = g_sector_size,
        .xDeviceCharacteristics = g_device_characteristics,
        .xShmMap = g_shm_map,
        .xShmLock = g_shm_lock,
        .xShmBarrier = g_shm_barrier,
        .xShmUnmap = g_shm_unmap,
        .xFetch = g_fetch,
        .xUnfetch = g_unfetch,
    };
    gather_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)((sizeof(gfile_t) + 7) & ~(size_t)7) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = ACKD_SQLITE_VFS,
        .xOpen = g_open,
        .xDelete = g_delete,
        .xAccess = g_access,
        .xFullPathname = g_full_pathname,
        .xDlOpen = g_dlopen,
        .xDlError = g_dlerror,
        .xDlSym = g_dlsym,
        .xDlClose = g_dlclose,
        .xRandomness = g_randomness,
        .xSleep = g_sleep,
        .xCurrentTime = g_current_time,
        .xGetLastError = g_last_error,
        .xCurrentTimeInt64 = g_current_time_int64,
    };
    register_rc = sqlite3_vfs_register(&gather_vfs, 0);
}

int ackd_sqlite_vfs_register(void)
{
    pthread_once(&once, do_register);
    return register_rc;
}
