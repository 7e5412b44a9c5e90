/* Reference LayerNorm over the last axis (biased variance, as torch). */
#include <math.h>

#include "nn/ref/ref.h"

/* out[M, C] = (inp - mean) / sqrt(var + eps) * w + b */
void fs_ref_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                              float eps) {
    for (size_t m = 0; m < M; m++) {
        const float *x = inp + m * C;
        float *y = out + m * C;
        double mean = 0, var = 0;
        for (size_t c = 0; c < C; c++) mean += x[c];
        mean /= (double)C;
        for (size_t c = 0; c < C; c++) var += ((double)x[c] - mean) * ((double)x[c] - mean);
        var /= (double)C;
        double rstd = 1.0 / sqrt(var + (double)eps);
        for (size_t c = 0; c < C; c++) y[c] = (float)(((double)x[c] - mean) * rstd * w[c] + b[c]);
    }
}
