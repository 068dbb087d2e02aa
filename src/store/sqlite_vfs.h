/* sqlite_vfs.h - the SQLite VFS the writer connection opens its files with.
 *
 * SQLite writes a commit to the WAL one piece at a time: a 24-byte frame
 * header, then the 4 KiB page, for every page the transaction changed, and
 * then syncs. A batch of the group committer changes 10 to 30 pages, so a
 * commit was 20 to 60 pwrite calls before its fdatasync, and those calls
 * were a large part of the committer's CPU (the kernel's half of it).
 *
 * "ackd-wal" wraps the platform's VFS and changes one thing: the writes to
 * a WAL file that follow each other in the file are gathered in memory and
 * written with one call, before anything else touches that file (a sync, a
 * read, a truncate, a size query, a file control, a close). SQLite updates
 * the WAL index, which tells other connections (the readers, the
 * checkpointer) which frames exist, only after it has synced the frames
 * (synchronous = FULL), so no other connection can look for a frame still
 * in the buffer; for that reason the store uses this VFS only with
 * `[storage] sync = full` (with NORMAL there is no sync before the index
 * moves). Durability is unchanged: nothing was durable before the sync,
 * and the sync writes the gathered frames first.
 *
 * Register once, from any thread, before opening a connection with it. */
#ifndef ACKD_STORE_SQLITE_VFS_H
#define ACKD_STORE_SQLITE_VFS_H

#define ACKD_SQLITE_VFS "ackd-wal"

/* Registers the VFS (not as the default); SQLITE_OK or an SQLite error. */
int ackd_sqlite_vfs_register(void);

/* The errno of the calling thread's last write through this VFS that
 * failed, or 0; cleared by the call. A write that fails for a full disk, a
 * quota or a file-size limit reaches the connection as a bare I/O error,
 * and sqlite3_system_errno does not always have it. */
int ackd_sqlite_vfs_take_errno(void);

#endif
