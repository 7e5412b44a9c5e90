/* Reference nn.Linear: plain loops with double accumulation. */
#include "nn/ref/ref.h"

/* out[M, N] = inp[M, K] @ w[N, K]^T + bias[N] */
void fs_ref_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                           size_t N) {
    for (size_t m = 0; m < M; m++) {
        const float *x = inp + m * K;
        for (size_t n = 0; n < N; n++) {
            const float *wr = w + n * K;
            double acc = bias ? bias[n] : 0.0;
            for (size_t k = 0; k < K; k++) acc += (double)x[k] * wr[k];
            out[m * N + n] = (float)acc;
        }
    }
}
