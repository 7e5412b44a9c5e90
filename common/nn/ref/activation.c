/* Reference activations: exact (erf) GELU as nn.GELU(), and ReLU. */
#include <math.h>

#include "nn/ref/ref.h"

/* out[n] = x * 0.5 * (1 + erf(x / sqrt(2))); out may equal inp. */
void fs_ref_gelu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2)));
    }
}

/* out[n] = max(x, 0); out may equal inp. */
void fs_ref_relu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* dinp[n] += gelu'(x) * dout with gelu'(x) = Phi(x) + x * phi(x), Phi and
 * phi the standard normal cdf and density. */
void fs_ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const double inv_sqrt_2pi = 0.5 * M_2_SQRTPI * M_SQRT1_2; /* 1 / sqrt(2 pi) */
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2)), pdf = inv_sqrt_2pi * exp(-0.5 * x * x);
        dinp[i] += (float)((cdf + x * pdf) * dout[i]);
    }
}

/* dinp[n] += (x > 0) * dout (the subgradient 0 at x = 0, as torch). */
void fs_ref_relu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (inp[i] > 0.0f) dinp[i] += dout[i];
}
