/* The layer kernels of the SAM model, behind one interface: a table of
 * function pointers that every backend fills in.
 *   fs_nn_ref   plain loops, written for obviousness: the definition of
 *               correctness the others are tested against (common/nn/ref/)
 *   fs_nn_cpu   OpenBLAS sgemm, OpenMP, cache-blocked attention (common/nn/cpu/)
 *   fs_nn_guard the cpu kernels on memory the host may not touch: the device
 *               path's check without a GPU (common/nn/guard/)
 *   fs_nn_cuda  cuBLAS and CUDA kernels on device memory (common/nn/cuda/,
 *               only in the programs of the CUDA build)
 * llm.c's conventions: <layer>_forward(out, inp, params..., dims), float32,
 * row-major, sizes as size_t; every entry states its shapes. Activations of
 * the image encoder are channels-last ([B, H, W, C]), as the official
 * ViT code keeps them.
 *
 * Backward entries (llm.c's <layer>_backward(dinp, dparams..., dout,
 * saved..., dims)): gradients ACCUMULATE (+=) into the d* buffers, which the
 * caller zeroes; a parameter gradient pointer is NULL for a frozen tensor,
 * and dinp is NULL when nothing upstream needs it. Kernels recompute what is
 * cheap (LayerNorm statistics, softmax rows) instead of storing them. */
#ifndef FS_NN_H
#define FS_NN_H

#include <stddef.h>

typedef struct fs_nn_ops {
    const char *name;

    /* nn.Linear: out[M, N] = inp[M, K] @ w[N, K]^T + bias[N] (bias may be NULL). */
    void (*linear_forward)(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                           size_t N);

    /* LayerNorm over the last axis: out[M, C] = (inp - mean) / sqrt(var + eps) * w + b
     * (biased variance, as torch). LayerNorm2d over channels of a
     * channels-last tensor is the same call with M = B*H*W. */
    void (*layernorm_forward)(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                              float eps);

    /* Exact GELU (erf form, nn.GELU()) and ReLU, elementwise over n; out may equal inp. */
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*relu_forward)(float *out, const float *inp, size_t n);

    /* Multi-head attention without projections (the decoder's Attention after
     * q/k/v projections): q[B, Nq, H*D], k[B, Nk, H*D], v[B, Nk, H*D];
     * out[B, Nq, H*D] = softmax(q_h k_h^T * scale) v_h per head h. */
    void (*attention_forward)(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                              size_t Nk, size_t H, size_t D, float scale);

    /* The image encoder's attention on a Hg x Wg token grid (a window, or the
     * whole grid for global blocks) with decomposed relative position terms:
     * qkv[B, Hg*Wg, 3, H, D] (the qkv linear's output, as the official
     * reshape reads it); rel_h[2*Hg-1, D], rel_w[2*Wg-1, D];
     * attn[b,h,(qy,qx),(ky,kx)] = scale * q.k + q.rel_h[qy-ky+Hg-1] + q.rel_w[qx-kx+Wg-1]
     * with the unscaled q in the rel-pos terms, softmax over keys, times v;
     * out[B, Hg*Wg, H*D] (heads concatenated, before the output projection).
     * rel_h/rel_w NULL means no relative positions. */
    void (*attention_relpos_forward)(float *out, const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                     size_t Hg, size_t Wg, size_t H, size_t D, float scale);

    /* Patch embedding, Conv2d(Cin, C, kernel P, stride P): inp[B, Cin, Hi, Wi]
     * (channels-first image, Hi and Wi multiples of P), w[C, Cin, P, P], b[C];
     * out[B, Hi/P, Wi/P, C] (channels-last). */
    void (*patch_embed_forward)(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                size_t Hi, size_t Wi, size_t P, size_t C);

    /* Conv2d(Cin, Cout, 3, padding 1, bias False) channels-last:
     * inp[B, H, W, Cin], w[Cout, Cin, 3, 3] (torch layout); out[B, H, W, Cout]. */
    void (*conv3x3_forward)(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                            size_t Cout);

    /* ConvTranspose2d(Cin, Cout, 2, stride 2) channels-last: inp[B, H, W, Cin],
     * w[Cin, Cout, 2, 2] (torch layout), b[Cout]; out[B, 2H, 2W, Cout]. */
    void (*conv_transpose2x2_forward)(float *out, const float *inp, const float *w, const float *b, size_t B,
                                      size_t H, size_t W, size_t Cin, size_t Cout);

    /* Bilinear resize, align_corners=False, no antialias (F.interpolate):
     * inp[N, Hi, Wi] -> out[N, Ho, Wo], N independent planes. */
    void (*resize_bilinear_forward)(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                    size_t Wo);

    /* ---- backward ---- */

    /* dinp[M, K] += dout[M, N] @ w[N, K]; dw[N, K] += dout^T @ inp;
     * dbias[N] += column sums of dout. */
    void (*linear_backward)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                            size_t M, size_t K, size_t N);
    /* inp[M, C] is the forward input (mean and rstd are recomputed). */
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               size_t M, size_t C, float eps);
    /* inp is the forward input: dinp[i] += f'(inp[i]) * dout[i]. */
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);
    void (*relu_backward)(float *dinp, const float *inp, const float *dout, size_t n);
    /* Shapes as attention_forward; the softmax is recomputed. */
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale);
    /* Shapes as attention_relpos_forward: dqkv[B, Hg*Wg, 3, H, D]; drel_h
     * [2*Hg-1, D] and drel_w [2*Wg-1, D] (NULL when frozen). Scores are
     * recomputed block by block: the full map of a global block is never held. */
    void (*attention_relpos_backward)(float *dqkv, float *drel_h, float *drel_w, const float *dout, const float *qkv,
                                      const float *rel_h, const float *rel_w, size_t B, size_t Hg, size_t Wg,
                                      size_t H, size_t D, float scale);
    /* Shapes as patch_embed_forward. */
    void (*patch_embed_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C);
    /* Shapes as conv3x3_forward. */
    void (*conv3x3_backward)(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                             size_t H, size_t W, size_t Cin, size_t Cout);
    /* Shapes as conv_transpose2x2_forward. */
    void (*conv_transpose2x2_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                       const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout);
    /* Shapes as resize_bilinear_forward: dinp[N, Hi, Wi] += resize^T dout[N, Ho, Wo]. */
    void (*resize_bilinear_backward)(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                     size_t Wo);

    /* ---- memory ----
     * Where the tensors handed to the kernels live. device 0: host memory
     * (the host may read and write it between calls; the entries below are
     * calloc, free and memcpy). device 1: memory the host must not touch;
     * only these entries move data in and out of it. Kernels are queued in
     * order; download waits for every kernel queued before it. */
    int device;
    /* 1 when the backend can run here (a GPU present, for instance). */
    int (*available)(void);
    /* Zeroed memory, NULL with fs_error set when it cannot be had. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*upload)(void *dst, const void *src, size_t bytes);   /* host -> backend memory */
    void (*download)(void *dst, const void *src, size_t bytes); /* backend memory -> host */
    void (*copy)(void *dst, const void *src, size_t bytes);     /* within backend memory */
    void (*zero)(void *p, size_t bytes);

    /* ---- tensor glue: the small loops between layers, here so that the
     * model's data never has to visit the host ---- */
    /* out[n] = a[n] + b[n]; out may equal a or b. */
    void (*add)(float *out, const float *a, const float *b, size_t n);
    /* x[n] *= f. */
    void (*scale)(float *x, float f, size_t n);
    /* x[M, N] += row[N] on every row (a broadcast add: pos_embed, no_mask_embed). */
    void (*add_rows)(float *x, const float *row, size_t M, size_t N);
    /* drow[N] += column sums of dx[M, N] (add_rows' adjoint). */
    void (*sum_rows)(float *drow, const float *dx, size_t M, size_t N);
    /* out[M, ldo] columns off .. off+N-1 += f * in[M, N]. */
    void (*add_cols)(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N);
    /* out[M, N] = f * in[M, ldi] columns off .. off+N-1. */
    void (*take_cols)(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N);
    /* The image encoder's windows: x[B, g, g, C] -> win[B * nw * nw, ws, ws, C]
     * (nw = ceil(g / ws)), tokens past the grid zero (window_partition). */
    void (*window_partition)(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C);
    /* The inverse, cropping the padding: x[B, g, g, C] = win (acc 0) or
     * x += win (acc 1: window_unpartition followed by the residual add). */
    void (*window_unpartition)(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc);
    /* x[h, w] row-major -> out[ho, wo] = x[:ho, :wo] (ho <= h, wo <= w). */
    void (*crop)(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo);

    /* ---- optimiser ----
     * One AdamW step (torch.optim.AdamW) at step t >= 1 on p[n], g[n], m[n],
     * v[n]; hyper = {lr, beta1, beta2, eps, weight_decay}, math in double. */
    void (*adamw_update)(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t);
    /* Sum of squares of x[n] in double (a global gradient norm); waits for the kernels before it. */
    double (*sumsq)(const float *x, size_t n);
} fs_nn_ops;

extern const fs_nn_ops fs_nn_ref;
extern const fs_nn_ops fs_nn_cpu;
/* The cpu kernels on guarded memory: a device backend whose "device" is
 * host pages the host cannot touch outside a kernel call, and whose entries
 * check that every pointer they get lies inside memory it allocated. Host
 * code that reads model memory directly, or hands a host buffer to a
 * kernel, crashes or stops with a message here, as it would on a GPU
 * (common/nn/guard/). */
extern const fs_nn_ops fs_nn_guard;

/* "ref", "cpu", "guard" or "cuda" (when the CUDA variant of a program is
 * linked and a GPU is present); NULL with fs_error set otherwise. */
const fs_nn_ops *fs_nn_backend(const char *name);

#endif
