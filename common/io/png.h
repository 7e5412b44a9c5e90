/* 8-bit PNG images (previews): grey or RGB, written to a temporary name and
 * renamed into place (fs_atomic_open), so a reader never sees half a file. */
#ifndef FS_PNG_H
#define FS_PNG_H

#include <stddef.h>
#include <stdint.h>

/* pixels [h, w, channels] row-major, channels 1 (grey) or 3 (RGB);
 * 1 <= h, w <= 65535. */
int fs_png_write(const char *path, const uint8_t *pixels, size_t h, size_t w, int channels);

#endif
