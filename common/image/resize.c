/* Bilinear and nearest resizing of 2-D planes, as PyTorch computes them. */
#include "image/resize.h"

#include <math.h>
#include <string.h>

void fs_resize_bilinear(const float *in, size_t h, size_t w, float *out, size_t oh, size_t ow) {
    if (h == oh && w == ow) {
        memcpy(out, in, h * w * sizeof *in);
        return;
    }
    float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
    for (size_t y = 0; y < oh; y++) {
        size_t y0, y1;
        float h1;
        fs_resize_linear_src(h, sy, y, &y0, &y1, &h1);
        float h0 = 1.0f - h1;
        const float *r0 = in + y0 * w, *r1 = in + y1 * w;
        float *o = out + y * ow;
        for (size_t x = 0; x < ow; x++) {
            size_t x0, x1;
            float w1;
            fs_resize_linear_src(w, sx, x, &x0, &x1, &w1);
            float w0 = 1.0f - w1;
            float t0 = w0 * r0[x0] + w1 * r0[x1];
            float t1 = w0 * r1[x0] + w1 * r1[x1];
            o[x] = h0 * t0 + h1 * t1;
        }
    }
}

/* torch's nearest_idx: identity and exact 2x upsampling are special-cased,
 * otherwise floor(dst * scale) with a float scale. */
static size_t nearest_idx(size_t d, size_t in, size_t out) {
    if (in == out) return d;
    if (out == 2 * in) return d >> 1;
    float scale = (float)in / (float)out;
    size_t s = (size_t)floorf((float)d * scale);
    return s < in - 1 ? s : in - 1;
}

void fs_resize_nearest_u8(const uint8_t *in, size_t h, size_t w, uint8_t *out, size_t oh,
                          size_t ow) {
    for (size_t y = 0; y < oh; y++) {
        const uint8_t *r = in + nearest_idx(y, h, oh) * w;
        uint8_t *o = out + y * ow;
        for (size_t x = 0; x < ow; x++) o[x] = r[nearest_idx(x, w, ow)];
    }
}
