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
