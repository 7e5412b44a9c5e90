#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char log_prog[64] = "fewsam";
static fs_log_level log_level = FS_LOG_INFO;

void fs_log_init(const char *prog) {
    const char *base = strrchr(prog, '/');
    snprintf(log_prog, sizeof log_prog, "%s", base ? base + 1 : prog);
    const char *env = getenv("FEWSAM_LOG");
    if (env) {
        if (!strcmp(env, "error")) log_level = FS_LOG_ERROR;
        else if (!strcmp(env, "warn")) log_level = FS_LOG_WARN;
        else if (!strcmp(env, "debug")) log_level = FS_LOG_DEBUG;
        else log_level = FS_LOG_INFO;
    }
}

void fs_log_set_level(fs_log_level level) { log_level = level; }
const char *fs_log_prog(void) { return log_prog; }

void fs_log(fs_log_level level, const char *fmt, ...) {
    static const char *names[] = {"error", "warning", "", "debug"};
    if (level > log_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (level == FS_LOG_INFO) fprintf(stderr, "%s: %s\n", log_prog, line);
    else fprintf(stderr, "%s: %s: %s\n", log_prog, names[level], line);
}

void fs_progress(const char *what, size_t done, size_t total) {
    static int last_decile = -1;
    if (log_level < FS_LOG_INFO || total == 0) return;
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r%s: %s %zu/%zu", log_prog, what, done, total);
        if (done >= total) fputc('\n', stderr);
        return;
    }
    int decile = (int)(10 * done / total);
    if (done == 0) last_decile = -1;
    if (decile != last_decile) {
        last_decile = decile;
        fprintf(stderr, "%s: %s %zu/%zu\n", log_prog, what, done, total);
    }
}
