#include "sam/slice.h"

#include <math.h>
#include <string.h>

#include "image/resize.h"

fs_sam_frame fs_sam_slice_frame(const fs_sam *m, size_t h, size_t w) {
    fs_sam_frame f = {h, w, 0, 0, 0};
    size_t s = m->cfg.img_size, longest = h > w ? h : w;
    f.scale = (double)s / (double)longest;
    /* ResizeLongestSide.get_preprocess_shape: int(x * scale + 0.5) */
    f.in_h = (size_t)((double)h * f.scale + 0.5);
    f.in_w = (size_t)((double)w * f.scale + 0.5);
    if (f.in_h < 1) f.in_h = 1;
    if (f.in_w < 1) f.in_w = 1;
    return f;
}

void fs_sam_slice_image(const fs_sam_frame *f, const float *slice, float *img) {
    size_t n = f->in_h * f->in_w;
    fs_resize_bilinear(slice, f->h, f->w, img, f->in_h, f->in_w);
    for (size_t i = 0; i < n; i++) {
        float v = img[i] < 0 ? 0 : img[i] > 1 ? 1 : img[i];
        img[i] = 255.0f * v;
    }
    memcpy(img + n, img, n * sizeof *img);
    memcpy(img + 2 * n, img, n * sizeof *img);
}
