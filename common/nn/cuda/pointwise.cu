/* Elementwise kernels: exact (erf) GELU and ReLU, forward and backward.
 * Grid-stride loops over n (size_t), so any n fits one launch. */
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__global__ void gelu_fwd_kernel(float *out, const float *inp, size_t n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
}

__global__ void relu_fwd_kernel(float *out, const float *inp, size_t n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        out[i] = x > 0.0f ? x : 0.0f;
    }
}

/* dinp += (Phi(x) + x phi(x)) dout */
__global__ void gelu_bwd_kernel(float *dinp, const float *inp, const float *dout, size_t n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        dinp[i] += (cdf + x * pdf) * dout[i];
    }
}

__global__ void relu_bwd_kernel(float *dinp, const float *inp, const float *dout, size_t n) {
    GRID_STRIDE(i, n) {
        if (inp[i] > 0.0f) dinp[i] += dout[i];
    }
}

/* out[M, N] = bias broadcast over the rows */
__global__ void bias_rows_kernel(float *out, const float *bias, size_t M, size_t N) {
    GRID_STRIDE(i, M * N) out[i] = bias[i % N];
}

void fs_cuda_gelu_forward(float *out, const float *inp, size_t n) {
    if (!n) return;
    gelu_fwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(out, inp, n);
    fs_cu_launched("gelu_forward");
}

void fs_cuda_relu_forward(float *out, const float *inp, size_t n) {
    if (!n) return;
    relu_fwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(out, inp, n);
    fs_cu_launched("relu_forward");
}

void fs_cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    if (!n || !dinp) return;
    gelu_bwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(dinp, inp, dout, n);
    fs_cu_launched("gelu_backward");
}

void fs_cuda_relu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    if (!n || !dinp) return;
    relu_bwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(dinp, inp, dout, n);
    fs_cu_launched("relu_backward");
}

void fs_cu_bias_rows(float *out, const float *bias, size_t M, size_t N, const char *what) {
    if (!M || !N) return;
    bias_rows_kernel<<<fs_cu_blocks(M * N, 256), 256, 0, fs_cu_stream()>>>(out, bias, M, N);
    fs_cu_launched(what);
}
