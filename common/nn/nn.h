/* The layer kernels of the SAM model, behind one interface: a table of
 * function pointers that every backend fills in.
 *   fs_nn_ref   plain loops, written for obviousness: the definition of
 *               correctness the others are tested against (common/nn/ref/)
 *   fs_nn_cpu   OpenBLAS sgemm, OpenMP, cache-blocked attention (common/nn/cpu/)
 *   (a CUDA backend fills the same table with device pointers)
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
} fs_nn_ops;

extern const fs_nn_ops fs_nn_ref;
extern const fs_nn_ops fs_nn_cpu;

/* "ref" or "cpu" (later "cuda"); NULL for an unknown name. */
const fs_nn_ops *fs_nn_backend(const char *name);

#endif
