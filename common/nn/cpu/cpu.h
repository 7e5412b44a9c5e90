/* Internals of the fast CPU backend (fs_nn_cpu): the entries of the table,
 * the threaded sgemm wrapper they share, and vectorised math helpers.
 *
 * Threading model: OpenBLAS is kept single-threaded (set once, on the first
 * call into this backend) and all parallelism comes from OpenMP, so that
 * OpenBLAS's spinning worker threads never compete with OpenMP's for the
 * same cores. Large products are split over the OpenMP team by rows (or by
 * columns when there are few rows); attention is parallel over (batch, head,
 * block of query rows) with one single-threaded sgemm per task. */
#ifndef FS_NN_CPU_H
#define FS_NN_CPU_H

#include <math.h>
#include <stddef.h>

/* Makes OpenBLAS single-threaded, once per process. */
void fs_nn_cpu_init(void);

/* malloc that exits with a one-line error naming `what` when memory is out
 * (the kernels' signatures cannot report failure). */
void *fs_nn_cpu_alloc(size_t n, const char *what);

/* C[M, N] = alpha * A[M, K] @ op(B) + beta * C, row-major with leading
 * dimensions; op(B) = B[N, K]^T when trans_b, else B[K, N]. Splits the work
 * over the OpenMP team unless already inside a parallel region or tiny. */
void fs_nn_cpu_gemm(int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                    const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* The same, always on the calling thread (for use inside parallel regions). */
void fs_nn_cpu_gemm_serial(int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                           const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* C[M, N] = alpha * A[K, M]^T @ B[K, N] + beta * C (the weight gradients'
 * product: a sum over the rows of A and B), row-major with leading
 * dimensions. The threaded form splits C by rows or columns as
 * fs_nn_cpu_gemm does. */
void fs_nn_cpu_gemm_tn(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, const float *B,
                       size_t ldb, float beta, float *C, size_t ldc);
void fs_nn_cpu_gemm_tn_serial(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                              const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* Row kernels, vectorised for the running CPU. */
/* s[n] <- exp(s - max s); returns the sum of the new values. */
float fs_nn_cpu_softmax_row(float *s, size_t n);
/* s[ky*Wg + kx] = rh[ky] + rw[kx] for a Hg x Wg key grid. */
void fs_nn_cpu_relpos_row(float *s, const float *rh, const float *rw, size_t Hg, size_t Wg);
/* dinp[n] += gelu'(inp) * dout. */
void fs_nn_cpu_gelu_grad_span(float *dinp, const float *inp, const float *dout, size_t n);

void fs_nn_cpu_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                              size_t N);
void fs_nn_cpu_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                                 float eps);
void fs_nn_cpu_gelu_forward(float *out, const float *inp, size_t n);
void fs_nn_cpu_relu_forward(float *out, const float *inp, size_t n);
void fs_nn_cpu_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                                 size_t Nk, size_t H, size_t D, float scale);
void fs_nn_cpu_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w,
                                        size_t B, size_t Hg, size_t Wg, size_t H, size_t D, float scale);
void fs_nn_cpu_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                   size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C);
void fs_nn_cpu_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W,
                               size_t Cin, size_t Cout);
void fs_nn_cpu_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                         size_t H, size_t W, size_t Cin, size_t Cout);
void fs_nn_cpu_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                       size_t Wo);

/* Backward entries (shapes and semantics in nn/nn.h): every gradient
 * accumulates, and a NULL gradient pointer skips that gradient's work. */
void fs_nn_cpu_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, size_t M, size_t K, size_t N);
void fs_nn_cpu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, size_t M, size_t C, float eps);
void fs_nn_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_nn_cpu_relu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_nn_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale);
void fs_nn_cpu_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout,
                                         const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                         size_t Hg, size_t Wg, size_t H, size_t D, float scale);
void fs_nn_cpu_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                    const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C);
void fs_nn_cpu_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                                size_t H, size_t W, size_t Cin, size_t Cout);
void fs_nn_cpu_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                          const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout);
void fs_nn_cpu_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                        size_t Wo);

/* A LayerNorm row's mean and 1 / sqrt(biased variance + eps), two passes in
 * float: the forward and the backward (which recomputes them) share it, so
 * they normalise alike. */
static inline void fs_nn_cpu_layernorm_stats(const float *x, size_t C, float eps, float *mean, float *rstd) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < C; i++) sum += x[i];
    float m = sum / (float)C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (size_t i = 0; i < C; i++) {
        float d = x[i] - m;
        ss += d * d;
    }
    *mean = m;
    *rstd = 1.0f / sqrtf(ss / (float)C + eps);
}

/* The 3x3, padding-1 im2col of channels-last rows m0..m1 (gemm.c). */
void fs_nn_cpu_im2col3x3(float *col, const float *src, size_t m0, size_t m1, size_t H, size_t W, size_t Cc);
/* Rows of im2col columns per chunk for K = 9 * channels (about 2 MB). */
size_t fs_nn_cpu_conv_chunk(size_t K);
/* A 3x3 padding-1 convolution as chunked im2col products (threaded):
 * out[M, N] = beta * out + im2col(in)[M, 9 Cc] @ wm[N, 9 Cc]^T, with in[B, H,
 * W, Cc] channels-last (M = B H W) and wm's columns in (ky, kx, c) order. The
 * forward, and the backward's input gradient with the flipped kernel. */
void fs_nn_cpu_conv3x3_gemm(float *out, const float *in, const float *wm, size_t M, size_t H, size_t W, size_t Cc,
                            size_t N, float beta);

/* One axis of the bilinear resize's sources and weights (pointwise.c). */
void fs_nn_cpu_resize_axis(size_t in, size_t outn, size_t *i0, size_t *i1, float *l1);

#endif
