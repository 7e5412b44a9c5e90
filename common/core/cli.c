#include "core/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

void fs_cli_init(int argc, char **argv) {
    (void)argc;
    fs_log_init(argv[0]);
    opterr = 0; /* getopt's own messages are replaced by fs_cli_bad_option */
}

void fs_cli_usage_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", fs_log_prog());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", fs_log_prog());
    exit(FS_EXIT_USAGE);
}

void fs_cli_die(void) {
    fprintf(stderr, "%s: error: %s\n", fs_log_prog(), fs_error_msg());
    exit(FS_EXIT_FAIL);
}

void fs_cli_bad_option(int argc, char **argv) {
    const char *arg = optind - 1 < argc ? argv[optind - 1] : "?";
    if (optopt && optopt < 256 && arg[0] == '-' && arg[1] != '-')
        fs_cli_usage_error("unknown or incomplete option '-%c'", optopt);
    fs_cli_usage_error("unknown option or missing value: '%s'", arg);
}

double fs_cli_double(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) fs_cli_usage_error("--%s: '%s' is not a number", opt, s);
    if (!(v >= lo && v <= hi)) fs_cli_usage_error("--%s: %s is outside [%g, %g]", opt, s, lo, hi);
    return v;
}

void fs_cli_pair(const char *opt, const char *form, const char *s, double lo, double hi, double out[2]) {
    const char *comma = strchr(s, ',');
    if (!comma) fs_cli_usage_error("--%s: expected %s, got '%s'", opt, form, s);
    char a[64];
    snprintf(a, sizeof a, "%.*s", (int)(comma - s), s);
    out[0] = fs_cli_double(opt, a, lo, hi);
    out[1] = fs_cli_double(opt, comma + 1, lo, hi);
}

long fs_cli_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) fs_cli_usage_error("--%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi) fs_cli_usage_error("--%s: %s is outside [%ld, %ld]", opt, s, lo, hi);
    return v;
}

uint64_t fs_cli_u64(const char *opt, const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') fs_cli_usage_error("--%s: '%s' is not a non-negative integer", opt, s);
    return (uint64_t)v;
}

long *fs_cli_long_list(const char *opt, const char *s, size_t *count) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    long *v = malloc(cap * sizeof *v);
    char *copy = strdup(s), *save = NULL;
    *count = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        v[(*count)++] = fs_cli_long(opt, tok, 0, 1L << 40);
    free(copy);
    if (*count == 0) fs_cli_usage_error("--%s: empty list", opt);
    return v;
}
