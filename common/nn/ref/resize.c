/* Reference bilinear resize (F.interpolate bilinear, align_corners=False). */
#include <stdlib.h>

#include "image/resize.h"
#include "nn/ref/ref.h"

/* inp[N, Hi, Wi] -> out[N, Ho, Wo]; fs_resize_bilinear is torch's
 * align_corners=False arithmetic (source (d + 0.5) * in / out - 0.5,
 * clamped at 0). */
void fs_ref_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                    size_t Wo) {
    for (size_t n = 0; n < N; n++) fs_resize_bilinear(inp + n * Hi * Wi, Hi, Wi, out + n * Ho * Wo, Ho, Wo);
}

/* dinp[N, Hi, Wi] += resize^T dout[N, Ho, Wo]: each output pixel hands its
 * gradient back to its four sources with the forward's weights
 * (h0 w0, h0 w1, h1 w0, h1 w1); sums are kept in a double plane. */
void fs_ref_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                     size_t Wo) {
    size_t plane = Hi * Wi;
    double *acc = malloc((plane ? plane : 1) * sizeof *acc);
    if (!acc) abort(); /* one plane of scratch */
    float sy = (float)Hi / (float)Ho, sx = (float)Wi / (float)Wo;
    for (size_t n = 0; n < N; n++) {
        const float *g = dout + n * Ho * Wo;
        for (size_t i = 0; i < Hi * Wi; i++) acc[i] = 0;
        for (size_t y = 0; y < Ho; y++) {
            size_t y0, y1;
            float h1;
            fs_resize_linear_src(Hi, sy, y, &y0, &y1, &h1);
            float h0 = 1.0f - h1;
            for (size_t x = 0; x < Wo; x++) {
                size_t x0, x1;
                float w1;
                fs_resize_linear_src(Wi, sx, x, &x0, &x1, &w1);
                float w0 = 1.0f - w1;
                double gv = g[y * Wo + x];
                acc[y0 * Wi + x0] += gv * h0 * w0;
                acc[y0 * Wi + x1] += gv * h0 * w1;
                acc[y1 * Wi + x0] += gv * h1 * w0;
                acc[y1 * Wi + x1] += gv * h1 * w1;
            }
        }
        float *d = dinp + n * Hi * Wi;
        for (size_t i = 0; i < Hi * Wi; i++) d[i] += (float)acc[i];
    }
    free(acc);
}
