#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[1024];

int fs_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return FS_ERR;
}

int fs_error_wrap(const char *fmt, ...) {
    char prefix[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    snprintf(err_buf, sizeof err_buf, "%s: %s", prefix, old);
    return FS_ERR;
}

int fs_error_errno(const char *fmt, ...) {
    int e = errno;
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *why = e == ENOENT ? "no such file" : strerror(e);
    snprintf(err_buf, sizeof err_buf, "%s: %s", what, why);
    return FS_ERR;
}

const char *fs_error_msg(void) { return err_buf[0] ? err_buf : "unknown error"; }
void fs_error_clear(void) { err_buf[0] = 0; }
