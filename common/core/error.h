/* Errors: library code returns FS_OK / FS_ERR and leaves a one-line message
 * (what went wrong first, then where) in a thread-local buffer; executables
 * print it and exit. Messages read like "cannot open 'x.nii.gz': no such file". */
#ifndef FS_ERROR_H
#define FS_ERROR_H

#define FS_OK 0
#define FS_ERR (-1)

/* Process exit codes shared by every stage. */
enum { FS_EXIT_OK = 0, FS_EXIT_FAIL = 1, FS_EXIT_USAGE = 2 };

/* Sets the message (printf-style) and returns FS_ERR so callers can write
 * `return fs_error("...")`. */
int fs_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefixes the current message: "context: old message". Returns FS_ERR. */
int fs_error_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets "<what>: <strerror(errno)>" with errno read at the call. Returns FS_ERR. */
int fs_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *fs_error_msg(void);
void fs_error_clear(void);

#endif
