/* Writing JSON by hand with stdio: string escaping and numbers that round-trip. */
#ifndef FS_JSON_H
#define FS_JSON_H

#include <stdio.h>

/* A JSON string literal, escaped. */
void fs_json_string(FILE *f, const char *s);
/* A number with 17 significant digits; NaN and infinities as null. */
void fs_json_number(FILE *f, double v);

#endif
