/* sqlite_vfs_test.c - tests src/store/sqlite_vfs.c, the VFS that gathers a
 * commit's WAL writes: every commit, small or larger than one gathered
 * write (120 KiB), is read back whole by another connection right after it
 * commits; the file passes SQLite's integrity check before and after a
 * checkpoint; and commits made by a process that then dies without closing
 * anything are all in the file (the sync wrote the gathered frames). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "store/sqlite_vfs.h"

typedef struct {
    char dir[64];
    char path[128];
} vfx_t;

static int vfx_open(vfx_t *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/ackd_vfs_test_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    return ackd_sqlite_vfs_register();
}

static void vfx_close(vfx_t *f)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char p[160];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* A writer as the store opens it: this VFS, WAL, synchronous FULL, no
 * automatic checkpoint. */
static sqlite3 *open_writer(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, ACKD_SQLITE_VFS) !=
            SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                     " PRAGMA wal_autocheckpoint = 0;"
                     " CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB);",
                     NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* Commits `rows` rows of `size` bytes each (bytes derived from the key). */
static int commit_rows(sqlite3 *db, int first, int rows, int size)
{
    sqlite3_stmt *s;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO t (k, v) VALUES (?, ?)", -1, &s, NULL) != SQLITE_OK)
        return -1;
    unsigned char *blob = malloc((size_t)size);
    int rc = 0;
    for (int i = 0; i < rows && rc == 0; i++) {
        for (int b = 0; b < size; b++)
            blob[b] = (unsigned char)((first + i) * 31 + b);
        sqlite3_bind_int(s, 1, first + i);
        sqlite3_bind_blob(s, 2, blob, size, SQLITE_STATIC);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    free(blob);
    return rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static long long query(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    return v;
}

/* Whether every row's bytes are the ones commit_rows wrote. */
static int rows_intact(sqlite3 *db)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT k, v FROM t", -1, &s, NULL) != SQLITE_OK)
        return 0;
    int ok = 1;
    while (ok && sqlite3_step(s) == SQLITE_ROW) {
        int k = sqlite3_column_int(s, 0);
        const unsigned char *v = sqlite3_column_blob(s, 1);
        int n = sqlite3_column_bytes(s, 1);
        for (int b = 0; b < n && ok; b++)
            ok = v[b] == (unsigned char)(k * 31 + b);
    }
    sqlite3_finalize(s);
    return ok;
}

static int integrity_ok(const char *path)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return 0;
    sqlite3_stmt *s;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK) {
        ok = sqlite3_step(s) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(s, 0), "ok") == 0;
        sqlite3_finalize(s);
    }
    ok = ok && rows_intact(db);
    sqlite3_close(db);
    return ok;
}

TEST(sqlite_vfs_commits_are_read_back_whole_by_another_connection)
{
    vfx_t f;
    CHECK_INT(vfx_open(&f), SQLITE_OK);
    sqlite3 *w = open_writer(f.path);
    CHECK(w != NULL);
    sqlite3 *r;
    CHECK_INT(sqlite3_open_v2(f.path, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    long long rows = 0, bytes = 0;
    int key = 0;
    for (int i = 0; i < 120; i++) {
        /* mostly small commits; every tenth ~200 KiB, over one gathered write */
        int n = i % 10 == 9 ? 50 : 1 + i % 4, size = i % 10 == 9 ? 4000 : 100 + 37 * (i % 7);
        CHECK_INT(commit_rows(w, key, n, size), 0);
        key += n;
        rows += n;
        bytes += (long long)n * size;
        CHECK(query(r, "SELECT COUNT(*) FROM t") == rows);
        CHECK(query(r, "SELECT SUM(LENGTH(v)) FROM t") == bytes);
    }
    CHECK(rows_intact(r));
    CHECK(integrity_ok(f.path));
    CHECK_INT(sqlite3_wal_checkpoint_v2(w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL), SQLITE_OK);
    CHECK_INT(commit_rows(w, key, 3, 500), 0); /* the WAL starts again from its beginning */
    CHECK(query(r, "SELECT COUNT(*) FROM t") == rows + 3);
    CHECK(integrity_ok(f.path));
    sqlite3_close(r);
    sqlite3_close(w);
    vfx_close(&f);
}

TEST(sqlite_vfs_commits_survive_a_process_that_dies)
{
    vfx_t f;
    CHECK_INT(vfx_open(&f), SQLITE_OK);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* 40 commits, then an open transaction with more in it, then death
         * without closing anything */
        sqlite3 *w = open_writer(f.path);
        int ok = w != NULL;
        for (int i = 0; ok && i < 40; i++)
            ok = commit_rows(w, i * 3, 3, 700 + i) == 0;
        ok = ok && sqlite3_exec(w, "BEGIN; INSERT INTO t (k, v) VALUES (100000, zeroblob(9000));",
                                NULL, NULL, NULL) == SQLITE_OK;
        _exit(ok ? 0 : 3);
    }
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sqlite3 *db;
    CHECK_INT(sqlite3_open_v2(f.path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    CHECK(query(db, "SELECT COUNT(*) FROM t") == 120);
    CHECK(query(db, "SELECT COUNT(*) FROM t WHERE k = 100000") == 0);
    sqlite3_close(db);
    CHECK(integrity_ok(f.path));
    vfx_close(&f);
}
