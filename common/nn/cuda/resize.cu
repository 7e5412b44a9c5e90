/* Bilinear resize, align_corners=False (F.interpolate), forward and its
 * adjoint, with the source index of fs_resize_bilinear (image/resize.h)
 * so that every backend picks the same source pixels. The backward
 * gathers: each input pixel scans the few output pixels that can reach it
 * and sums their terms itself (deterministic, no atomics). */
#include "image/resize.h"
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

/* out[n, y, x] = h0 (w0 in[y0, x0] + w1 in[y0, x1]) + h1 (w0 in[y1, x0] + w1 in[y1, x1]) */
__global__ void resize_fwd_kernel(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho, size_t Wo,
                                  float sy, float sx) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < N * Ho * Wo;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t x = idx % Wo, y = (idx / Wo) % Ho, n = idx / (Wo * Ho);
        size_t y0, y1, x0, x1;
        float h1, w1;
        fs_resize_linear_src(Hi, sy, y, &y0, &y1, &h1);
        fs_resize_linear_src(Wi, sx, x, &x0, &x1, &w1);
        float h0 = 1.0f - h1, w0 = 1.0f - w1;
        const float *r0 = inp + (n * Hi + y0) * Wi, *r1 = inp + (n * Hi + y1) * Wi;
        float t0 = w0 * r0[x0] + w1 * r0[x1];
        float t1 = w0 * r1[x0] + w1 * r1[x1];
        out[idx] = h0 * t0 + h1 * t1;
    }
}

/* The output indices along one axis that can use input index i as a source:
 * src = scale (d + 0.5) - 0.5 must lie in [i - 1, i + 1), widened by two
 * for rounding; the last input index also takes every clamped output.
 * Candidates are then checked with fs_resize_linear_src itself. */
__device__ __forceinline__ void out_range(size_t i, size_t in, size_t out, float scale, long *lo, long *hi) {
    long a = (long)floorf(((float)i - 0.5f) / scale - 0.5f) - 2;
    long b = (long)ceilf(((float)i + 1.5f) / scale - 0.5f) + 2;
    if (a < 0) a = 0;
    if (b > (long)out - 1 || i == in - 1) b = (long)out - 1;
    *lo = a;
    *hi = b;
}

/* The weight of input index i in output d's interpolation along one axis. */
__device__ __forceinline__ float axis_weight(size_t in, float scale, size_t d, size_t i) {
    size_t i0, i1;
    float l1;
    fs_resize_linear_src(in, scale, d, &i0, &i1, &l1);
    return (i0 == i ? 1.0f - l1 : 0.0f) + (i1 == i ? l1 : 0.0f);
}

/* dinp[n, yi, xi] += sum over outputs (y, x) of wy(y, yi) wx(x, xi) dout[n, y, x] */
__global__ void resize_bwd_kernel(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                  size_t Wo, float sy, float sx) {
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < N * Hi * Wi;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t xi = idx % Wi, yi = (idx / Wi) % Hi, n = idx / (Wi * Hi);
        long ylo, yhi, xlo, xhi;
        out_range(yi, Hi, Ho, sy, &ylo, &yhi);
        out_range(xi, Wi, Wo, sx, &xlo, &xhi);
        const float *g = dout + n * Ho * Wo;
        float acc = 0.0f;
        for (long y = ylo; y <= yhi; y++) {
            float wy = axis_weight(Hi, sy, (size_t)y, yi);
            if (wy == 0.0f) continue;
            float row = 0.0f;
            for (long x = xlo; x <= xhi; x++) {
                float wx = axis_weight(Wi, sx, (size_t)x, xi);
                if (wx != 0.0f) row += wx * g[(size_t)y * Wo + (size_t)x];
            }
            acc += wy * row;
        }
        dinp[idx] += acc;
    }
}

void fs_cuda_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                     size_t Wo) {
    size_t n = N * Ho * Wo;
    if (!n || !Hi || !Wi) return;
    resize_fwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(out, inp, N, Hi, Wi, Ho, Wo,
                                                                        (float)Hi / (float)Ho, (float)Wi / (float)Wo);
    fs_cu_launched("resize_bilinear_forward");
}

void fs_cuda_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                      size_t Wo) {
    size_t n = N * Hi * Wi;
    if (!n || !Ho || !Wo || !dinp) return;
    resize_bwd_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(dinp, dout, N, Hi, Wi, Ho, Wo,
                                                                        (float)Hi / (float)Ho, (float)Wi / (float)Wo);
    fs_cu_launched("resize_bilinear_backward");
}
