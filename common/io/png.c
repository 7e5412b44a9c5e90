#include "io/png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>

#include "core/error.h"
#include "core/fsutil.h"

/* libpng reports errors by longjmp; the message is kept for fs_error. */
typedef struct {
    jmp_buf jmp;
    char msg[256];
} png_err;

static void on_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "libpng error");
    longjmp(e->jmp, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* Writes to an open stream; everything libpng touches lives in this frame,
 * so the longjmp target never sees a clobbered local. */
static int write_stream(FILE *f, const char *path, const uint8_t *pixels, size_t h, size_t w, int channels) {
    png_err err = {.msg = ""};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
    if (!png) return fs_error("cannot write '%s': out of memory", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return fs_error("cannot write '%s': out of memory", path);
    }
    if (setjmp(err.jmp)) {
        png_destroy_write_struct(&png, &info);
        return fs_error("cannot write '%s': %s", path, err.msg);
    }
    png_init_io(png, f);
    png_set_compression_level(png, 6);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (size_t r = 0; r < h; r++) png_write_row(png, (png_const_bytep)(pixels + r * w * (size_t)channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return FS_OK;
}

int fs_png_write(const char *path, const uint8_t *pixels, size_t h, size_t w, int channels) {
    if (channels != 1 && channels != 3) return fs_error("cannot write '%s': %d channels (1 or 3)", path, channels);
    if (h < 1 || w < 1 || h > 65535 || w > 65535)
        return fs_error("cannot write '%s': image of %zux%zu out of range", path, h, w);
    fs_atomic_file af;
    if (fs_atomic_open(&af, path)) return FS_ERR;
    int rc = write_stream(af.f, path, pixels, h, w, channels);
    if (fs_atomic_close(&af, rc == FS_OK)) rc = FS_ERR;
    return rc;
}
