/* The threaded sgemm wrapper of the CPU backend and the entries that are
 * one matrix product plus data movement: linear, patch embedding (im2col),
 * 3x3 convolution (chunked im2col) and 2x2 transposed convolution (one
 * product, then a scatter). */
#include "nn/cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_blas(void) { openblas_set_num_threads(1); }

void fs_nn_cpu_init(void) { pthread_once(&init_once, init_blas); }

/* A few megabytes of scratch that cannot be had leave nothing sensible to
 * compute, and the kernels have no error return. */
void *fs_nn_cpu_alloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "fewsam: error: out of memory (%zu bytes for %s)\n", n, what);
        exit(1);
    }
    return p;
}

void fs_nn_cpu_gemm_serial(int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                           const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        /* BLAS would leave C untouched for beta = 1 and scale it otherwise; keep torch's meaning. */
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N,
                (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void fs_nn_cpu_gemm(int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                    const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    fs_nn_cpu_init();
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (nt <= 1 || flops < 4e6) {
        fs_nn_cpu_gemm_serial(trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Split the rows when there are enough of them for each thread to run
     * full register tiles; otherwise split the columns in multiples of 16. */
    int by_rows = M >= (size_t)nt * 32;
#pragma omp parallel num_threads(nt)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
        if (by_rows) {
            size_t m0 = M * t / n, m1 = M * (t + 1) / n;
            fs_nn_cpu_gemm_serial(trans_b, m1 - m0, N, K, alpha, A + m0 * lda, lda, B, ldb, beta, C + m0 * ldc,
                                  ldc);
        } else {
            size_t blocks = (N + 15) / 16;
            size_t n0 = blocks * t / n * 16, n1 = blocks * (t + 1) / n * 16;
            if (n1 > N) n1 = N;
            if (n0 < n1) {
                const float *Bp = trans_b ? B + n0 * ldb : B + n0;
                fs_nn_cpu_gemm_serial(trans_b, M, n1 - n0, K, alpha, A, lda, Bp, ldb, beta, C + n0, ldc);
            }
        }
    }
}

/* out[M, N] = inp[M, K] @ w[N, K]^T + bias[N] */
void fs_nn_cpu_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                              size_t N) {
    if (bias) {
#pragma omp parallel for schedule(static) if (M * N > 65536)
        for (size_t i = 0; i < M; i++) memcpy(out + i * N, bias, N * sizeof(float));
    }
    fs_nn_cpu_gemm(1, M, N, K, 1.0f, inp, K, w, K, bias ? 1.0f : 0.0f, out, N);
}

/* inp[B, Cin, Hi, Wi], w[C, Cin, P, P], b[C] -> out[B, Hi/P, Wi/P, C].
 * Each patch becomes one row of Cin*P*P values in the weight's order, and
 * the convolution is then a linear layer over the rows. */
void fs_nn_cpu_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                   size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C) {
    size_t Gh = Hi / P, Gw = Wi / P, M = B * Gh * Gw, K = Cin * P * P;
    float *col = fs_nn_cpu_alloc(M * K * sizeof(float), "patch embedding");
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t bi = 0; bi < B; bi++)
        for (size_t gy = 0; gy < Gh; gy++)
            for (size_t gx = 0; gx < Gw; gx++) {
                float *row = col + ((bi * Gh + gy) * Gw + gx) * K;
                for (size_t c = 0; c < Cin; c++)
                    for (size_t ky = 0; ky < P; ky++)
                        memcpy(row + (c * P + ky) * P, inp + ((bi * Cin + c) * Hi + gy * P + ky) * Wi + gx * P,
                               P * sizeof(float));
            }
    fs_nn_cpu_linear_forward(out, col, w, b, M, K, C);
    free(col);
}

/* inp[B, H, W, Cin], w[Cout, Cin, 3, 3] -> out[B, H, W, Cout], zero padding 1.
 * im2col over chunks of output pixels keeps the scratch to a few megabytes
 * per thread; the weights are reordered once to [Cout, (ky, kx, Cin)] so a
 * column row is nine contiguous copies of input pixels. */
/* Rows m0..m1 of the 3x3 im2col of src[B, H, W, Cc] (zero padding 1) into
 * col[m1 - m0, 9*Cc], in (ky, kx, c) order: the conv3x3 forward's columns and
 * its backward's (there applied to dout, and to inp for the weight gradient). */
void fs_nn_cpu_im2col3x3(float *col, const float *src, size_t m0, size_t m1, size_t H, size_t W, size_t Cc) {
    size_t K = 9 * Cc;
    for (size_t m = m0; m < m1; m++) {
        size_t x = m % W, y = (m / W) % H, bi = m / (W * H);
        float *row = col + (m - m0) * K;
        for (size_t ky = 0; ky < 3; ky++)
            for (size_t kx = 0; kx < 3; kx++) {
                float *dst = row + (ky * 3 + kx) * Cc;
                long sy = (long)y + (long)ky - 1, sx = (long)x + (long)kx - 1;
                if (sy < 0 || sy >= (long)H || sx < 0 || sx >= (long)W)
                    memset(dst, 0, Cc * sizeof(float));
                else
                    memcpy(dst, src + ((bi * H + (size_t)sy) * W + (size_t)sx) * Cc, Cc * sizeof(float));
            }
    }
}

size_t fs_nn_cpu_conv_chunk(size_t K) {
    size_t chunk = (2u << 20) / ((K ? K : 1) * sizeof(float)); /* about 2 MB of columns per chunk */
    return chunk < 16 ? 16 : chunk;
}

void fs_nn_cpu_conv3x3_gemm(float *out, const float *in, const float *wm, size_t M, size_t H, size_t W, size_t Cc,
                            size_t N, float beta) {
    size_t K = 9 * Cc, chunk = fs_nn_cpu_conv_chunk(K), nchunks = (M + chunk - 1) / chunk;
#pragma omp parallel
    {
        float *col = fs_nn_cpu_alloc(chunk * K * sizeof(float), "conv3x3 columns");
#pragma omp for schedule(dynamic, 1)
        for (size_t c = 0; c < nchunks; c++) {
            size_t m0 = c * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
            fs_nn_cpu_im2col3x3(col, in, m0, m1, H, W, Cc);
            fs_nn_cpu_gemm_serial(1, m1 - m0, N, K, 1.0f, col, K, wm, K, beta, out + m0 * N, N);
        }
        free(col);
    }
}

void fs_nn_cpu_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W,
                               size_t Cin, size_t Cout) {
    fs_nn_cpu_init();
    size_t K = 9 * Cin, M = B * H * W;
    float *wr = fs_nn_cpu_alloc(Cout * K * sizeof(float), "conv3x3 weights");
    for (size_t co = 0; co < Cout; co++)
        for (size_t ci = 0; ci < Cin; ci++)
            for (size_t k = 0; k < 9; k++) wr[co * K + k * Cin + ci] = w[(co * Cin + ci) * 9 + k];
    fs_nn_cpu_conv3x3_gemm(out, inp, wr, M, H, W, Cin, Cout, 0.0f);
    free(wr);
}

/* inp[B, H, W, Cin], w[Cin, Cout, 2, 2], b[Cout] -> out[B, 2H, 2W, Cout].
 * With the weights reordered to [(dy, dx, Cout), Cin] one product gives, per
 * input pixel, its four output pixels' channel vectors side by side; they
 * are then copied to their places. Chunked so the scratch stays small. */
void fs_nn_cpu_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                         size_t H, size_t W, size_t Cin, size_t Cout) {
    fs_nn_cpu_init();
    size_t N4 = 4 * Cout, M = B * H * W;
    float *wr = fs_nn_cpu_alloc(N4 * Cin * sizeof(float), "conv_transpose2x2 weights");
    for (size_t ci = 0; ci < Cin; ci++)
        for (size_t co = 0; co < Cout; co++)
            for (size_t k = 0; k < 4; k++) wr[(k * Cout + co) * Cin + ci] = w[(ci * Cout + co) * 4 + k];
    size_t chunk = (1u << 20) / (N4 * sizeof(float));
    if (chunk < 16) chunk = 16;
    size_t nchunks = (M + chunk - 1) / chunk;
#pragma omp parallel
    {
        float *tmp = fs_nn_cpu_alloc(chunk * N4 * sizeof(float), "conv_transpose2x2 scratch");
#pragma omp for schedule(dynamic, 1)
        for (size_t c = 0; c < nchunks; c++) {
            size_t m0 = c * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
            fs_nn_cpu_gemm_serial(1, m1 - m0, N4, Cin, 1.0f, inp + m0 * Cin, Cin, wr, Cin, 0.0f, tmp, N4);
            for (size_t m = m0; m < m1; m++) {
                size_t x = m % W, y = (m / W) % H, bi = m / (W * H);
                const float *src = tmp + (m - m0) * N4;
                for (size_t k = 0; k < 4; k++) {
                    size_t dy = k >> 1, dx = k & 1;
                    float *dst = out + ((bi * 2 * H + 2 * y + dy) * 2 * W + 2 * x + dx) * Cout;
                    const float *s = src + k * Cout;
                    if (b)
                        for (size_t co = 0; co < Cout; co++) dst[co] = s[co] + b[co];
                    else
                        memcpy(dst, s, Cout * sizeof(float));
                }
            }
        }
        free(tmp);
    }
    free(wr);
}
