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

/* Gradients of the forward above, recomputing each row's mean and rstd.
 * With xhat = (x - mean) * rstd and g = dout * w, the input gradient is
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 * (the two means are the paths through mean and var); dw += dout * xhat,
 * db += dout. Any of dinp, dw, db may be NULL. */
void fs_ref_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               size_t M, size_t C, float eps) {
    for (size_t m = 0; m < M; m++) {
        const float *x = inp + m * C, *dy = dout + m * C;
        double mean = 0, var = 0;
        for (size_t c = 0; c < C; c++) mean += x[c];
        mean /= (double)C;
        for (size_t c = 0; c < C; c++) var += ((double)x[c] - mean) * ((double)x[c] - mean);
        var /= (double)C;
        double rstd = 1.0 / sqrt(var + (double)eps);
        double mean_g = 0, mean_gx = 0;
        for (size_t c = 0; c < C; c++) {
            double xhat = ((double)x[c] - mean) * rstd, g = (double)dy[c] * w[c];
            mean_g += g;
            mean_gx += g * xhat;
        }
        mean_g /= (double)C;
        mean_gx /= (double)C;
        for (size_t c = 0; c < C; c++) {
            double xhat = ((double)x[c] - mean) * rstd, g = (double)dy[c] * w[c];
            if (dinp) dinp[m * C + c] += (float)(rstd * (g - mean_g - xhat * mean_gx));
            if (dw) dw[c] += (float)((double)dy[c] * xhat);
            if (db) db[c] += dy[c];
        }
    }
}
