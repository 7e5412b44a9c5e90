/* Reference bilinear resize (F.interpolate bilinear, align_corners=False). */
#include "data/preprocess.h"
#include "nn/ref/ref.h"

/* inp[N, Hi, Wi] -> out[N, Ho, Wo]; fs_resize_bilinear is torch's
 * align_corners=False arithmetic (source (d + 0.5) * in / out - 0.5,
 * clamped at 0). */
void fs_ref_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                    size_t Wo) {
    for (size_t n = 0; n < N; n++) fs_resize_bilinear(inp + n * Hi * Wi, Hi, Wi, out + n * Ho * Wo, Ho, Wo);
}
