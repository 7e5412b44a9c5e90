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

/* The adjoint of the forward above, each gradient optional (NULL = not wanted):
 * dinp[M, K] += dout[M, N] @ w[N, K]
 * dw[N, K]   += dout[M, N]^T @ inp[M, K]
 * dbias[N]   += sum over m of dout[m, :] */
void fs_ref_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                            size_t M, size_t K, size_t N) {
    if (dinp)
        for (size_t m = 0; m < M; m++)
            for (size_t k = 0; k < K; k++) {
                double acc = 0;
                for (size_t n = 0; n < N; n++) acc += (double)dout[m * N + n] * w[n * K + k];
                dinp[m * K + k] += (float)acc;
            }
    if (dw)
        for (size_t n = 0; n < N; n++)
            for (size_t k = 0; k < K; k++) {
                double acc = 0;
                for (size_t m = 0; m < M; m++) acc += (double)dout[m * N + n] * inp[m * K + k];
                dw[n * K + k] += (float)acc;
            }
    if (dbias)
        for (size_t n = 0; n < N; n++) {
            double acc = 0;
            for (size_t m = 0; m < M; m++) acc += dout[m * N + n];
            dbias[n] += (float)acc;
        }
}
