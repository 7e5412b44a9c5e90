/* The CUDA backend's entries, one per fs_nn_ops field (shapes as in
 * nn/nn.h, every pointer a device pointer), and helpers shared between its
 * files. C++ linkage: only common/nn/cuda/ops.cu puts them in the table. */
#ifndef FS_NN_CUDA_KERNELS_H
#define FS_NN_CUDA_KERNELS_H

#include <stddef.h>

void fs_cuda_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                            size_t N);
void fs_cuda_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                               float eps);
void fs_cuda_gelu_forward(float *out, const float *inp, size_t n);
void fs_cuda_relu_forward(float *out, const float *inp, size_t n);
void fs_cuda_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                               size_t Nk, size_t H, size_t D, float scale);
void fs_cuda_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                      size_t Hg, size_t Wg, size_t H, size_t D, float scale);
void fs_cuda_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                 size_t Hi, size_t Wi, size_t P, size_t C);
void fs_cuda_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                             size_t Cout);
void fs_cuda_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                       size_t H, size_t W, size_t Cin, size_t Cout);
void fs_cuda_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                     size_t Wo);

void fs_cuda_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                             size_t M, size_t K, size_t N);
void fs_cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                                size_t M, size_t C, float eps);
void fs_cuda_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_cuda_relu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale);
void fs_cuda_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout,
                                       const float *qkv, const float *rel_h, const float *rel_w, size_t B, size_t Hg,
                                       size_t Wg, size_t H, size_t D, float scale);
void fs_cuda_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C);
void fs_cuda_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                              size_t H, size_t W, size_t Cin, size_t Cout);
void fs_cuda_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout);
void fs_cuda_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                      size_t Wo);

/* out[M, N] = bias[N] on every row (pointwise.cu). */
void fs_cu_bias_rows(float *out, const float *bias, size_t M, size_t N, const char *what);

/* ---- memory, tensor glue, optimiser (tensor.cu) ----
 * The memory entries of the table that differ from cuda.h's helpers
 * (available and free are those helpers): zeroed memory, and void copies
 * that exit on an error like the kernels. */
void *fs_cuda_ops_alloc(size_t bytes);
void fs_cuda_ops_upload(void *dst, const void *src, size_t bytes);
void fs_cuda_ops_download(void *dst, const void *src, size_t bytes);
void fs_cuda_ops_copy(void *dst, const void *src, size_t bytes);
void fs_cuda_ops_zero(void *p, size_t bytes);
void fs_cuda_add(float *out, const float *a, const float *b, size_t n);
void fs_cuda_scale(float *x, float f, size_t n);
void fs_cuda_add_rows(float *x, const float *row, size_t M, size_t N);
void fs_cuda_sum_rows(float *drow, const float *dx, size_t M, size_t N);
void fs_cuda_add_cols(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N);
void fs_cuda_take_cols(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N);
void fs_cuda_window_partition(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C);
void fs_cuda_window_unpartition(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc);
void fs_cuda_crop(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo);
void fs_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t);
double fs_cuda_sumsq(const float *x, size_t n);

#endif
