/* Backward entries of the CPU backend other than attention: the weight
 * gradients are A^T B products (fs_nn_cpu_gemm_tn), input gradients the
 * forward's product against the other operand, and the convolutions reuse
 * the forward's im2col layouts. Every gradient accumulates (+=) and a NULL
 * pointer skips its work (frozen weights, or an input that needs none).
 * Column sums and LayerNorm's dw/db are summed per thread, then reduced, so
 * no two threads ever add into the same float. */
#include "nn/cpu/cpu.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FS_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FS_VEC_CLONES
#endif

/* elementwise chunk, as the forward kernels */
#define SPAN 16384

void fs_nn_cpu_gemm_tn_serial(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                              const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        for (size_t i = 0; i < M; i++)
            for (size_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda,
                B, (blasint)ldb, beta, C, (blasint)ldc);
}

void fs_nn_cpu_gemm_tn(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                       size_t ldb, float beta, float *C, size_t ldc) {
    fs_nn_cpu_init();
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (nt <= 1 || flops < 4e6) {
        fs_nn_cpu_gemm_tn_serial(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* rows of C are columns of A: the same row/column choice as fs_nn_cpu_gemm */
    int by_rows = M >= (size_t)nt * 32;
#pragma omp parallel num_threads(nt)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
        if (by_rows) {
            size_t m0 = M * t / n, m1 = M * (t + 1) / n;
            fs_nn_cpu_gemm_tn_serial(m1 - m0, N, K, alpha, A + m0, lda, B, ldb, beta, C + m0 * ldc, ldc);
        } else {
            size_t blocks = (N + 15) / 16;
            size_t n0 = blocks * t / n * 16, n1 = blocks * (t + 1) / n * 16;
            if (n1 > N) n1 = N;
            if (n0 < n1) fs_nn_cpu_gemm_tn_serial(M, n1 - n0, K, alpha, A, lda, B + n0, ldb, beta, C + n0, ldc);
        }
    }
}

/* dst[N] += sum over m of src[m * ld + n] for m < M: each thread sums a
 * range of rows in double, then the partial sums are added in order. */
static void col_sums(float *dst, const float *src, size_t M, size_t N, size_t ld) {
    if (N == 0) return;
    int nt = M * N > 65536 && !omp_in_parallel() ? omp_get_max_threads() : 1;
    double *part = fs_nn_cpu_alloc((size_t)nt * N * sizeof(double), "column sums");
    for (size_t i = 0; i < (size_t)nt * N; i++) part[i] = 0.0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
        size_t m0 = M * t / n, m1 = M * (t + 1) / n;
        double *p = part + t * N;
        for (size_t m = m0; m < m1; m++) {
            const float *row = src + m * ld;
#pragma omp simd
            for (size_t j = 0; j < N; j++) p[j] += row[j];
        }
    }
    for (size_t j = 0; j < N; j++) {
        double s = 0.0;
        for (int t = 0; t < nt; t++) s += part[(size_t)t * N + j];
        dst[j] += (float)s;
    }
    free(part);
}

/* dinp[M, K] += dout[M, N] @ w[N, K]; dw[N, K] += dout^T @ inp; dbias[N] += column sums of dout */
void fs_nn_cpu_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, size_t M, size_t K, size_t N) {
    if (dinp) fs_nn_cpu_gemm(0, M, K, N, 1.0f, dout, N, w, K, 1.0f, dinp, K);
    if (dw) fs_nn_cpu_gemm_tn(N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
    if (dbias) col_sums(dbias, dout, M, N, N);
}

/* One row of LayerNorm's backward: mean and rstd recomputed as the forward
 * does; gw/gb are the calling thread's partial sums (either may be NULL). */
FS_VEC_CLONES
static void layernorm_grad_row(float *dx, float *gw, float *gb, const float *dy, const float *x, const float *w,
                               size_t C, float eps) {
    float mean, rstd;
    fs_nn_cpu_layernorm_stats(x, C, eps, &mean, &rstd);
    if (gw) {
#pragma omp simd
        for (size_t i = 0; i < C; i++) gw[i] += dy[i] * ((x[i] - mean) * rstd);
    }
    if (gb) {
#pragma omp simd
        for (size_t i = 0; i < C; i++) gb[i] += dy[i];
    }
    if (!dx) return;
    float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
    for (size_t i = 0; i < C; i++) {
        float g = dy[i] * w[i];
        sg += g;
        sgx += g * ((x[i] - mean) * rstd);
    }
    float mg = sg / (float)C, mgx = sgx / (float)C;
#pragma omp simd
    for (size_t i = 0; i < C; i++) dx[i] += rstd * (dy[i] * w[i] - mg - (x[i] - mean) * rstd * mgx);
}

/* inp[M, C] the forward input; dinp[M, C], dw[C], db[C] accumulate. */
void fs_nn_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, size_t M, size_t C, float eps) {
    if (M == 0 || C == 0 || (!dinp && !dw && !db)) return;
    int nt = M * C > SPAN ? omp_get_max_threads() : 1;
    int want = dw || db;
    /* per thread: dw partial [C], db partial [C] */
    float *part = want ? fs_nn_cpu_alloc((size_t)nt * 2 * C * sizeof(float), "layernorm partial sums") : NULL;
    if (part) memset(part, 0, (size_t)nt * 2 * C * sizeof(float));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
        size_t m0 = M * t / n, m1 = M * (t + 1) / n;
        float *gw = dw ? part + t * 2 * C : NULL, *gb = db ? part + t * 2 * C + C : NULL;
        for (size_t m = m0; m < m1; m++)
            layernorm_grad_row(dinp ? dinp + m * C : NULL, gw, gb, dout + m * C, inp + m * C, w, C, eps);
    }
    if (want) {
        for (size_t c = 0; c < C; c++) {
            float sw = 0.0f, sb = 0.0f;
            for (int t = 0; t < nt; t++) {
                sw += part[(size_t)t * 2 * C + c];
                sb += part[(size_t)t * 2 * C + C + c];
            }
            if (dw) dw[c] += sw;
            if (db) db[c] += sb;
        }
        free(part);
    }
}

/* dinp[n] += gelu'(inp) * dout */
void fs_nn_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    size_t chunks = (n + SPAN - 1) / SPAN;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        size_t i0 = c * SPAN, len = i0 + SPAN < n ? SPAN : n - i0;
        fs_nn_cpu_gelu_grad_span(dinp + i0, inp + i0, dout + i0, len);
    }
}

/* dinp[n] += (inp > 0) * dout */
void fs_nn_cpu_relu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > SPAN)
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

/* Shapes as the forward: inp[B, Cin, Hi, Wi], w[C, Cin, P, P], dout[B, Hi/P, Wi/P, C].
 * With the forward's patch rows col[M, Cin*P*P]: dw += dout^T col, db +=
 * column sums, and dcol = dout w scatters back to the (disjoint) patches. */
void fs_nn_cpu_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                    const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C) {
    size_t Gh = Hi / P, Gw = Wi / P, M = B * Gh * Gw, K = Cin * P * P;
    if (M == 0) return;
    if (db) col_sums(db, dout, M, C, C);
    if (!dw && !dinp) return;
    float *col = fs_nn_cpu_alloc(M * K * sizeof(float), "patch embedding backward");
    if (dw) {
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
        fs_nn_cpu_gemm_tn(C, K, M, 1.0f, dout, C, col, K, 1.0f, dw, K);
    }
    if (dinp) {
        fs_nn_cpu_gemm(0, M, K, C, 1.0f, dout, C, w, K, 0.0f, col, K);
#pragma omp parallel for collapse(2) schedule(static)
        for (size_t bi = 0; bi < B; bi++)
            for (size_t gy = 0; gy < Gh; gy++)
                for (size_t gx = 0; gx < Gw; gx++) {
                    const float *row = col + ((bi * Gh + gy) * Gw + gx) * K;
                    for (size_t c = 0; c < Cin; c++)
                        for (size_t ky = 0; ky < P; ky++) {
                            float *d = dinp + ((bi * Cin + c) * Hi + gy * P + ky) * Wi + gx * P;
                            const float *s = row + (c * P + ky) * P;
                            for (size_t kx = 0; kx < P; kx++) d[kx] += s[kx];
                        }
                }
    }
    free(col);
}

/* Shapes as the forward: inp[B, H, W, Cin], w[Cout, Cin, 3, 3], dout[B, H, W, Cout].
 * dinp is the 3x3 convolution of dout with the flipped, transposed kernel
 * w'[ci, co, ky, kx] = w[co, ci, 2-ky, 2-kx] (padding 1 again), computed as
 * the forward (chunked im2col of dout, one product per chunk) but added
 * onto dinp. dw is dout^T im2col(inp), summed per thread over chunks. */
void fs_nn_cpu_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                                size_t H, size_t W, size_t Cin, size_t Cout) {
    fs_nn_cpu_init();
    size_t M = B * H * W;
    if (M == 0 || Cin == 0 || Cout == 0) return;
    if (dinp) {
        size_t K = 9 * Cout;
        /* wf[ci, (k, co)] = w[co, ci, 8 - k] */
        float *wf = fs_nn_cpu_alloc(Cin * K * sizeof(float), "conv3x3 backward weights");
        for (size_t co = 0; co < Cout; co++)
            for (size_t ci = 0; ci < Cin; ci++)
                for (size_t k = 0; k < 9; k++) wf[ci * K + k * Cout + co] = w[(co * Cin + ci) * 9 + (8 - k)];
        fs_nn_cpu_conv3x3_gemm(dinp, dout, wf, M, H, W, Cout, Cin, 1.0f);
        free(wf);
    }
    if (dw) {
        size_t K = 9 * Cin, chunk = fs_nn_cpu_conv_chunk(K), nchunks = (M + chunk - 1) / chunk;
        int nt = omp_get_max_threads();
        if ((size_t)nt > nchunks) nt = (int)nchunks;
        /* per thread: gw[Cout, (k, ci)] in the forward's reordered layout */
        float *gw = fs_nn_cpu_alloc((size_t)nt * Cout * K * sizeof(float), "conv3x3 weight gradients");
        memset(gw, 0, (size_t)nt * Cout * K * sizeof(float));
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *col = fs_nn_cpu_alloc(chunk * K * sizeof(float), "conv3x3 backward columns");
            float *g = gw + (size_t)omp_get_thread_num() * Cout * K;
#pragma omp for schedule(dynamic, 1)
            for (size_t c = 0; c < nchunks; c++) {
                size_t m0 = c * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
                fs_nn_cpu_im2col3x3(col, inp, m0, m1, H, W, Cin);
                fs_nn_cpu_gemm_tn_serial(Cout, K, m1 - m0, 1.0f, dout + m0 * Cout, Cout, col, K, 1.0f, g, K);
            }
            free(col);
        }
#pragma omp parallel for schedule(static) if (Cout * K > SPAN)
        for (size_t co = 0; co < Cout; co++)
            for (size_t ci = 0; ci < Cin; ci++)
                for (size_t k = 0; k < 9; k++) {
                    float s = 0.0f;
                    for (int t = 0; t < nt; t++) s += gw[((size_t)t * Cout + co) * K + k * Cin + ci];
                    dw[(co * Cin + ci) * 9 + k] += s;
                }
        free(gw);
    }
}

/* Shapes as the forward: inp[B, H, W, Cin], w[Cin, Cout, 2, 2], dout[B, 2H, 2W, Cout].
 * Input pixel m alone writes its 2x2 output block, so gathering that block
 * as g[m, (co, dy, dx)] (the weight's own column order) makes both
 * gradients single products with w viewed as [Cin, 4 Cout]:
 * dinp += g w^T, dw += inp^T g. */
void fs_nn_cpu_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                          const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout) {
    size_t M = B * H * W, N4 = 4 * Cout;
    if (M == 0 || Cout == 0) return;
    if (db) col_sums(db, dout, 4 * M, Cout, Cout);
    if (!dinp && !dw) return;
    float *g = fs_nn_cpu_alloc(M * N4 * sizeof(float), "conv_transpose2x2 backward");
#pragma omp parallel for schedule(static) if (M * N4 > SPAN)
    for (size_t m = 0; m < M; m++) {
        size_t x = m % W, y = (m / W) % H, bi = m / (W * H);
        float *row = g + m * N4;
        for (size_t k = 0; k < 4; k++) {
            const float *s = dout + ((bi * 2 * H + 2 * y + (k >> 1)) * 2 * W + 2 * x + (k & 1)) * Cout;
            for (size_t co = 0; co < Cout; co++) row[co * 4 + k] = s[co];
        }
    }
    if (dinp) fs_nn_cpu_gemm(1, M, Cin, N4, 1.0f, g, N4, w, N4, 1.0f, dinp, Cin);
    if (dw) fs_nn_cpu_gemm_tn(Cin, N4, M, 1.0f, inp, Cin, g, N4, 1.0f, dw, N4);
    free(g);
}

/* dinp[N, Hi, Wi] += resize^T dout[N, Ho, Wo], separably: each output row
 * is first folded onto the input columns (t[N, Ho, Wi], parallel over
 * rows), then the rows of t onto the input rows (parallel over planes and
 * column blocks, so every thread owns the floats it adds to). */
void fs_nn_cpu_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                        size_t Wo) {
    if (N == 0 || Hi == 0 || Wi == 0 || Ho == 0 || Wo == 0) return;
    size_t *ix = fs_nn_cpu_alloc(2 * (Ho + Wo) * sizeof(size_t), "resize tables");
    float *lam = fs_nn_cpu_alloc((Ho + Wo) * sizeof(float), "resize tables");
    size_t *y0 = ix, *y1 = ix + Ho, *x0 = ix + 2 * Ho, *x1 = ix + 2 * Ho + Wo;
    float *ly = lam, *lx = lam + Ho;
    fs_nn_cpu_resize_axis(Hi, Ho, y0, y1, ly);
    fs_nn_cpu_resize_axis(Wi, Wo, x0, x1, lx);
    float *t = fs_nn_cpu_alloc(N * Ho * Wi * sizeof(float), "resize backward");
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * (Wo + Wi) > SPAN)
    for (size_t p = 0; p < N; p++)
        for (size_t oy = 0; oy < Ho; oy++) {
            float *r = t + (p * Ho + oy) * Wi;
            const float *gr = dout + (p * Ho + oy) * Wo;
            memset(r, 0, Wi * sizeof(float));
            for (size_t ox = 0; ox < Wo; ox++) {
                float gv = gr[ox], w1 = lx[ox];
                r[x0[ox]] += gv * (1.0f - w1);
                r[x1[ox]] += gv * w1;
            }
        }
    size_t cb = 256, ncb = (Wi + cb - 1) / cb;
#pragma omp parallel for collapse(2) schedule(static) if (N * Ho * Wi > SPAN)
    for (size_t p = 0; p < N; p++)
        for (size_t b = 0; b < ncb; b++) {
            size_t c0 = b * cb, c1 = c0 + cb < Wi ? c0 + cb : Wi;
            for (size_t oy = 0; oy < Ho; oy++) {
                const float *r = t + (p * Ho + oy) * Wi;
                float *d0 = dinp + (p * Hi + y0[oy]) * Wi, *d1 = dinp + (p * Hi + y1[oy]) * Wi;
                float h1 = ly[oy], h0 = 1.0f - h1;
                for (size_t c = c0; c < c1; c++) d0[c] += h0 * r[c];
                for (size_t c = c0; c < c1; c++) d1[c] += h1 * r[c];
            }
        }
    free(t);
    free(ix);
    free(lam);
}
