/* nn.Linear on cuBLAS (fp32, or TF32 / BF16 tensor cores per
 * fs_nn_cuda_set_math). */
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

/* out[M, N] = inp[M, K] @ w[N, K]^T + bias[N]: the bias is written first and
 * the product added onto it (beta = 1). */
void fs_cuda_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                            size_t N) {
    if (!M || !N) return;
    if (bias) fs_cu_bias_rows(out, bias, M, N, "linear_forward");
    fs_cu_gemm("linear_forward", false, true, M, N, K, 1.0f, inp, K, w, K, bias ? 1.0f : 0.0f, out, N);
}

/* dinp[M, K] += dout[M, N] @ w[N, K]; dw[N, K] += dout^T @ inp;
 * dbias[N] += column sums of dout; each optional. */
void fs_cuda_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                             size_t M, size_t K, size_t N) {
    if (dinp) fs_cu_gemm("linear_backward (dinp)", false, false, M, K, N, 1.0f, dout, N, w, K, 1.0f, dinp, K);
    if (dw) fs_cu_gemm("linear_backward (dw)", true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
    if (dbias) fs_cu_colsum_add("linear_backward (dbias)", dbias, dout, M, N);
}
