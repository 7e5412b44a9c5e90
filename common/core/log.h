/* Logging to stderr, prefixed with the program name so that the interleaved
 * output of a pipeline's processes stays readable. Level from FEWSAM_LOG
 * (error, warn, info, debug) or fs_log_set_level. */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <stddef.h>

typedef enum { FS_LOG_ERROR = 0, FS_LOG_WARN, FS_LOG_INFO, FS_LOG_DEBUG } fs_log_level;

void fs_log_init(const char *prog);
void fs_log_set_level(fs_log_level level);
const char *fs_log_prog(void);
void fs_log(fs_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define fs_info(...) fs_log(FS_LOG_INFO, __VA_ARGS__)
#define fs_warn(...) fs_log(FS_LOG_WARN, __VA_ARGS__)
#define fs_debug(...) fs_log(FS_LOG_DEBUG, __VA_ARGS__)

/* A progress line: redrawn in place on a terminal, one line per 10% otherwise
 * (logs stay short). done == total ends the line. */
void fs_progress(const char *what, size_t done, size_t total);

#endif
