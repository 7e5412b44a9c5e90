#include "data/prompts.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "data/metrics.h"

size_t fs_prompt_count(const uint8_t *label, size_t h, size_t w, uint8_t cls) {
    size_t n = 0;
    for (size_t i = 0; i < h * w; i++) n += label[i] == cls;
    return n;
}

int fs_prompt_point(const uint8_t *label, size_t h, size_t w, uint8_t cls, double *x, double *y) {
    if (!fs_prompt_count(label, h, w, cls)) return fs_error("class %u is absent from the slice", cls);
    double *f = malloc(h * w * sizeof *f);
    if (!f) return fs_error("out of memory");
    /* Features are the pixels outside the object: the transform then gives
     * each object pixel its distance to the background. */
    for (size_t i = 0; i < h * w; i++) f[i] = label[i] == cls ? INFINITY : 0;
    size_t shape[3] = {1, h, w};
    double spacing[3] = {1, 1, 1};
    if (fs_metrics_edt_sq(f, shape, spacing)) { free(f); return FS_ERR; }
    size_t best = 0;
    double best_d = -1;
    for (size_t i = 0; i < h * w; i++) {
        if (label[i] != cls) continue;
        /* An object that fills the slice has no background: every pixel is
         * infinitely deep, and the first one wins. */
        if (f[i] > best_d) { best_d = f[i]; best = i; }
    }
    free(f);
    *x = (double)(best % w);
    *y = (double)(best / w);
    return FS_OK;
}

int fs_prompt_box(const uint8_t *label, size_t h, size_t w, uint8_t cls, double jitter, fs_rng *rng,
                  double box[4]) {
    size_t x0 = w, y0 = h, x1 = 0, y1 = 0, n = 0;
    for (size_t r = 0; r < h; r++)
        for (size_t c = 0; c < w; c++) {
            if (label[r * w + c] != cls) continue;
            n++;
            if (c < x0) x0 = c;
            if (c > x1) x1 = c;
            if (r < y0) y0 = r;
            if (r > y1) y1 = r;
        }
    if (!n) return fs_error("class %u is absent from the slice", cls);
    box[0] = (double)x0;
    box[1] = (double)y0;
    box[2] = (double)x1;
    box[3] = (double)y1;
    if (jitter > 0 && rng) fs_prompt_box_jitter(box, h, w, jitter, rng);
    return FS_OK;
}

void fs_prompt_box_jitter(double box[4], size_t h, size_t w, double jitter, fs_rng *rng) {
    double lim[4] = {(double)w - 1, (double)h - 1, (double)w - 1, (double)h - 1};
    for (int i = 0; i < 4; i++) {
        box[i] += fs_rng_range(rng, -jitter, jitter);
        box[i] = box[i] < 0 ? 0 : box[i] > lim[i] ? lim[i] : box[i];
    }
    if (box[2] < box[0]) { double t = box[0]; box[0] = box[2]; box[2] = t; }
    if (box[3] < box[1]) { double t = box[1]; box[1] = box[3]; box[3] = t; }
}
