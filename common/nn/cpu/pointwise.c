/* Elementwise and per-row kernels of the CPU backend: GELU, ReLU,
 * LayerNorm, the softmax and relative-position rows of attention, bilinear
 * resize. The hot loops are compiled for AVX-512, AVX2 and baseline x86-64
 * and picked at load time, so one binary runs everywhere and uses the
 * widest vectors the machine has. expf and erff are replaced by polynomial
 * forms the compiler can vectorise (errors below 5e-7 absolute). */
#include "image/resize.h"
#include "nn/cpu/cpu.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FS_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FS_VEC_CLONES
#endif

/* exp(x) by range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-6
 * polynomial for exp(r) (Cephes' coefficients); inputs are clamped to the
 * range of normal floats. */
static inline __attribute__((always_inline)) float vexp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick: no libm call, vectorises */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* erf(x) as x P(x^2) / Q(x^2) on [-4, 4] (erf is 1 to float precision
 * beyond); max absolute error about 4e-7. */
static inline __attribute__((always_inline)) float verf(float x) {
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    return x * p / q;
}

FS_VEC_CLONES
float fs_nn_cpu_softmax_row(float *s, size_t n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (size_t i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) {
        float e = vexp(s[i] - mx);
        s[i] = e;
        sum += e;
    }
    return sum;
}

FS_VEC_CLONES
void fs_nn_cpu_relpos_row(float *s, const float *rh, const float *rw, size_t Hg, size_t Wg) {
    for (size_t ky = 0; ky < Hg; ky++) {
        float h = rh[ky];
        float *row = s + ky * Wg;
#pragma omp simd
        for (size_t kx = 0; kx < Wg; kx++) row[kx] = h + rw[kx];
    }
}

/* out[n] = gelu(inp[n]) (erf form); out may equal inp. */
FS_VEC_CLONES
static void gelu_span(float *out, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + verf(x * 0.70710678118654752f));
    }
}

FS_VEC_CLONES
static void layernorm_row(float *out, const float *x, const float *w, const float *b, size_t C, float eps) {
    float mean, rstd;
    fs_nn_cpu_layernorm_stats(x, C, eps, &mean, &rstd);
#pragma omp simd
    for (size_t i = 0; i < C; i++) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

/* dinp[n] += gelu'(x) * dout[n], gelu'(x) = Phi(x) + x phi(x) with the
 * same erf as the forward and phi(x) = exp(-x^2/2) / sqrt(2 pi). */
FS_VEC_CLONES
void fs_nn_cpu_gelu_grad_span(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + verf(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * vexp(-0.5f * x * x);
        dinp[i] += (cdf + x * pdf) * dout[i];
    }
}

/* Chunks of 16K elements: large enough to amortise scheduling, small enough
 * to balance two threads on short tensors. */
#define SPAN 16384

void fs_nn_cpu_gelu_forward(float *out, const float *inp, size_t n) {
    size_t chunks = (n + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        size_t i0 = c * SPAN, len = i0 + SPAN < n ? SPAN : n - i0;
        gelu_span(out + i0, inp + i0, len);
    }
}

void fs_nn_cpu_relu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > SPAN)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* out[M, C] = layernorm(inp[M, C]) * w + b over the last axis */
void fs_nn_cpu_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                                 float eps) {
#pragma omp parallel for schedule(static) if (M * C > SPAN)
    for (size_t i = 0; i < M; i++) layernorm_row(out + i * C, inp + i * C, w, b, C, eps);
}

/* One axis of the resize: output o reads sources i0[o] (weight 1 - l1[o])
 * and i1[o] (weight l1[o]), torch's align_corners=False arithmetic
 * (fs_resize_linear_src), shared with the backward so it is the exact adjoint. */
void fs_nn_cpu_resize_axis(size_t in, size_t outn, size_t *i0, size_t *i1, float *l1) {
    float scale = (float)in / (float)outn;
    for (size_t o = 0; o < outn; o++) fs_resize_linear_src(in, scale, o, &i0[o], &i1[o], &l1[o]);
}

/* inp[N, Hi, Wi] -> out[N, Ho, Wo], bilinear, align_corners=False */
void fs_nn_cpu_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                       size_t Wo) {
    if (N == 0 || Ho == 0 || Wo == 0) return;
    size_t *ix = fs_nn_cpu_alloc(2 * (Ho + Wo) * sizeof(size_t), "resize tables");
    float *lam = fs_nn_cpu_alloc((Ho + Wo) * sizeof(float), "resize tables");
    size_t *y0 = ix, *y1 = ix + Ho, *x0 = ix + 2 * Ho, *x1 = ix + 2 * Ho + Wo;
    float *ly = lam, *lx = lam + Ho;
    fs_nn_cpu_resize_axis(Hi, Ho, y0, y1, ly);
    fs_nn_cpu_resize_axis(Wi, Wo, x0, x1, lx);
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * Wo > SPAN)
    for (size_t p = 0; p < N; p++)
        for (size_t oy = 0; oy < Ho; oy++) {
            const float *r0 = inp + (p * Hi + y0[oy]) * Wi, *r1 = inp + (p * Hi + y1[oy]) * Wi;
            float wy = ly[oy];
            float *dst = out + (p * Ho + oy) * Wo;
            for (size_t ox = 0; ox < Wo; ox++) {
                float wx = lx[ox];
                float top = (1.0f - wx) * r0[x0[ox]] + wx * r0[x1[ox]];
                float bot = (1.0f - wx) * r1[x0[ox]] + wx * r1[x1[ox]];
                dst[ox] = (1.0f - wy) * top + wy * bot;
            }
        }
    free(ix);
    free(lam);
}
