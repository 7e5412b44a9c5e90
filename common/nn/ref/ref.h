/* The reference backend's kernels, one per fs_nn_ops entry (shapes as in
 * nn/nn.h). Plain loops accumulating in double: slow, but the definition of
 * correctness for the other backends. */
#ifndef FS_NN_REF_H
#define FS_NN_REF_H

#include <stddef.h>

void fs_ref_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                           size_t N);
void fs_ref_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                              float eps);
void fs_ref_gelu_forward(float *out, const float *inp, size_t n);
void fs_ref_relu_forward(float *out, const float *inp, size_t n);
void fs_ref_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                              size_t Nk, size_t H, size_t D, float scale);
void fs_ref_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                     size_t Hg, size_t Wg, size_t H, size_t D, float scale);
void fs_ref_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                size_t Hi, size_t Wi, size_t P, size_t C);
void fs_ref_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                            size_t Cout);
void fs_ref_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                      size_t H, size_t W, size_t Cin, size_t Cout);
void fs_ref_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                    size_t Wo);

/* ---- backward (nn/nn.h): gradients accumulate (+=); a NULL gradient
 * pointer is not computed ---- */
void fs_ref_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                            size_t M, size_t K, size_t N);
void fs_ref_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               size_t M, size_t C, float eps);
void fs_ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_ref_relu_backward(float *dinp, const float *inp, const float *dout, size_t n);
void fs_ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale);
void fs_ref_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout, const float *qkv,
                                      const float *rel_h, const float *rel_w, size_t B, size_t Hg, size_t Wg,
                                      size_t H, size_t D, float scale);
void fs_ref_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C);
void fs_ref_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                             size_t H, size_t W, size_t Cin, size_t Cout);
void fs_ref_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                       const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout);
void fs_ref_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                     size_t Wo);

/* ---- memory, tensor glue, optimiser (nn/nn.h): host memory; the cpu
 * backend shares these ---- */
int fs_ref_available(void);
void *fs_ref_alloc(size_t bytes);
void fs_ref_free(void *p);
void fs_ref_memcpy(void *dst, const void *src, size_t bytes);
void fs_ref_zero(void *p, size_t bytes);
void fs_ref_add(float *out, const float *a, const float *b, size_t n);
void fs_ref_scale(float *x, float f, size_t n);
void fs_ref_add_rows(float *x, const float *row, size_t M, size_t N);
void fs_ref_sum_rows(float *drow, const float *dx, size_t M, size_t N);
void fs_ref_add_cols(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N);
void fs_ref_take_cols(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N);
void fs_ref_window_partition(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C);
void fs_ref_window_unpartition(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc);
void fs_ref_crop(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo);
void fs_ref_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t);
double fs_ref_sumsq(const float *x, size_t n);

/* The memory, glue and optimiser fields of a host backend's table. */
#define FS_REF_HOST_ENTRIES                                                                                            \
    .device = 0, .available = fs_ref_available, .alloc = fs_ref_alloc, .free = fs_ref_free,                           \
    .upload = fs_ref_memcpy, .download = fs_ref_memcpy, .copy = fs_ref_memcpy, .zero = fs_ref_zero,                  \
    .add = fs_ref_add, .scale = fs_ref_scale, .add_rows = fs_ref_add_rows, .sum_rows = fs_ref_sum_rows,              \
    .add_cols = fs_ref_add_cols, .take_cols = fs_ref_take_cols, .window_partition = fs_ref_window_partition,         \
    .window_unpartition = fs_ref_window_unpartition, .crop = fs_ref_crop, .adamw_update = fs_ref_adamw_update,       \
    .sumsq = fs_ref_sumsq

#endif
