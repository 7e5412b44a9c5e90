#include "preview.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/png.h"

#define GAP 4
#define ALPHA 0.4f

/* Twelve well-separated colours, cycled for more classes (class 1 first). */
static const uint8_t palette[12][3] = {
    {230, 25, 75},  {60, 180, 75},  {0, 130, 200},  {255, 225, 25}, {245, 130, 48}, {145, 30, 180},
    {70, 240, 240}, {240, 50, 230}, {210, 245, 60}, {250, 190, 212}, {0, 128, 128}, {170, 110, 40}};

static const uint8_t *colour(uint8_t cls) { return palette[(cls - 1) % 12]; }

typedef struct {
    uint8_t *rgb;
    size_t W, H; /* whole canvas */
} canvas;

static void put(canvas *c, long x, long y, const uint8_t *rgb) {
    if (x < 0 || y < 0 || (size_t)x >= c->W || (size_t)y >= c->H) return;
    memcpy(c->rgb + ((size_t)y * c->W + (size_t)x) * 3, rgb, 3);
}

static void tile(canvas *cv, const fs_sample *s, size_t ox, size_t oy, size_t f) {
    const size_t h = s->h, w = s->w;
    for (size_t y = 0; y < h * f; y++)
        for (size_t x = 0; x < w * f; x++) {
            const size_t sy = y / f, sx = x / f, i = sy * w + sx;
            float g = s->image[i] * 255.0f;
            float rgb[3] = {g, g, g};
            const uint8_t l = s->label[i];
            if (l) {
                const uint8_t *c = colour(l);
                /* an outline where a 4-neighbour differs: the object's edge stays visible */
                int edge = (sx > 0 && s->label[i - 1] != l) || (sx + 1 < w && s->label[i + 1] != l) ||
                           (sy > 0 && s->label[i - w] != l) || (sy + 1 < h && s->label[i + w] != l);
                float a = edge ? 1.0f : ALPHA;
                for (int k = 0; k < 3; k++) rgb[k] = (1 - a) * rgb[k] + a * (float)c[k];
            }
            uint8_t px[3];
            for (int k = 0; k < 3; k++) px[k] = (uint8_t)(rgb[k] < 0 ? 0 : rgb[k] > 255 ? 255 : rgb[k] + 0.5f);
            put(cv, (long)(ox + x), (long)(oy + y), px);
        }
    const long F = (long)f;
    for (size_t j = 0; j < s->n_objects; j++) {
        const fs_sample_object *o = &s->objects[j];
        const uint8_t *c = colour(o->cls);
        long x0 = (long)o->box[0] * F, y0 = (long)o->box[1] * F;
        long x1 = ((long)o->box[2] + 1) * F - 1, y1 = ((long)o->box[3] + 1) * F - 1;
        for (long x = x0; x <= x1; x++) {
            put(cv, (long)ox + x, (long)oy + y0, c);
            put(cv, (long)ox + x, (long)oy + y1, c);
        }
        for (long y = y0; y <= y1; y++) {
            put(cv, (long)ox + x0, (long)oy + y, c);
            put(cv, (long)ox + x1, (long)oy + y, c);
        }
    }
    static const uint8_t white[3] = {255, 255, 255}, dark[3] = {0, 0, 0};
    const long arm = F * 3 > 6 ? F * 3 : 6;
    for (size_t j = 0; j < s->n_objects; j++) {
        const fs_sample_object *o = &s->objects[j];
        long cx = (long)ox + (long)o->point[0] * F + F / 2, cy = (long)oy + (long)o->point[1] * F + F / 2;
        for (int pass = 0; pass < 2; pass++)
            for (long d = -arm; d <= arm; d++)
                for (long t = -1; t <= 1; t++) {
                    if (pass == 1 && t) continue; /* dark rim first, white line on top */
                    const uint8_t *col = pass ? white : dark;
                    put(cv, cx + d, cy + t, col);
                    put(cv, cx + t, cy + d, col);
                }
    }
}

int preview_write(const char *path, const fs_sample *samples, size_t n) {
    if (!n) return fs_error("cannot write '%s': no sample to preview", path);
    const size_t h = samples[0].h, w = samples[0].w, big = h > w ? h : w;
    size_t f = big < 256 ? (256 + big - 1) / big : 1;
    size_t cols = 1;
    while (cols * cols < n) cols++;
    const size_t rows = (n + cols - 1) / cols;
    canvas cv = {.W = cols * (w * f + GAP) + GAP, .H = rows * (h * f + GAP) + GAP};
    if (cv.W > 65535 || cv.H > 65535) return fs_error("cannot write '%s': a %zux%zu preview is too large", path, cv.H, cv.W);
    cv.rgb = malloc(cv.W * cv.H * 3);
    if (!cv.rgb) return fs_error("out of memory for a %zux%zu preview", cv.H, cv.W);
    memset(cv.rgb, 40, cv.W * cv.H * 3);
    for (size_t i = 0; i < n; i++)
        tile(&cv, &samples[i], GAP + (i % cols) * (w * f + GAP), GAP + (i / cols) * (h * f + GAP), f);
    int rc = fs_png_write(path, cv.rgb, cv.H, cv.W, 3);
    free(cv.rgb);
    return rc;
}
