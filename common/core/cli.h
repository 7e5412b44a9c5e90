/* Command-line conventions shared by every stage: GNU long options
 * (getopt_long), --help on stdout with exit 0, usage errors as one line on
 * stderr with exit 2, runtime errors as one line with exit 1. */
#ifndef FS_CLI_H
#define FS_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Sets the program name for logs and errors. Call first in main. */
void fs_cli_init(int argc, char **argv);
/* Prints "<prog>: <msg>\nTry '<prog> --help'." and exits FS_EXIT_USAGE. */
void fs_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Prints "<prog>: error: <fs_error_msg()>" and exits FS_EXIT_FAIL. */
void fs_cli_die(void) __attribute__((noreturn));
/* Handles getopt_long's '?' and ':' results (unknown option / missing
 * argument) with a usage error. */
void fs_cli_bad_option(int argc, char **argv);

/* Value parsers: option name for the message, exit with a usage error on
 * malformed or out-of-range input. */
double fs_cli_double(const char *opt, const char *s, double lo, double hi);
long fs_cli_long(const char *opt, const char *s, long lo, long hi);
/* "A,B": two numbers in [lo, hi] into out[0], out[1]; a usage error names
 * the expected form (e.g. "LO,HI") otherwise. */
void fs_cli_pair(const char *opt, const char *form, const char *s, double lo, double hi, double out[2]);
uint64_t fs_cli_u64(const char *opt, const char *s);
/* Comma-separated integer list ("1,2,3,8") into a malloc'd array. */
long *fs_cli_long_list(const char *opt, const char *s, size_t *count);

#endif
