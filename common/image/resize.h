/* Resizing 2-D planes exactly as torch.nn.functional.interpolate does on
 * CPU: the data plane's slices, SAM's inputs and position embeddings, and
 * the layer kernels' resize (whose backward must be its exact adjoint) all
 * use these, so they agree to the bit. */
#ifndef FS_IMAGE_RESIZE_H
#define FS_IMAGE_RESIZE_H

#include <stddef.h>
#include <stdint.h>

/* CUDA compiles this header too (common/nn/cuda/resize.cu): one source index
 * for every backend. */
#ifdef __CUDACC__
#define FS_RESIZE_HD __host__ __device__
#else
#define FS_RESIZE_HD
#endif

/* One axis of fs_resize_bilinear: output index d's source indices i0 <= i1
 * and the weight l1 of i1 (torch's float arithmetic: src = scale*(d+0.5)-0.5,
 * clamped, truncated), for code that must be its exact adjoint. scale = in /
 * out. Cheap enough to recompute per pixel, which keeps resizing free of
 * allocation. */
static inline FS_RESIZE_HD void fs_resize_linear_src(size_t in, float scale, size_t d, size_t *i0, size_t *i1,
                                                     float *l1) {
#ifdef __CUDA_ARCH__
    /* rounded step by step: a fused multiply-add would pick other pixels than the host */
    float src = __fsub_rn(__fmul_rn(scale, __fadd_rn((float)d, 0.5f)), 0.5f);
#else
    float src = scale * ((float)d + 0.5f) - 0.5f;
#endif
    if (src < 0) src = 0;
    size_t a = (size_t)src;
    if (a > in - 1) a = in - 1;
    float lam = src - (float)a;
    if (lam < 0) lam = 0;
    if (lam > 1) lam = 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = lam;
}

/* in [h, w] -> out [oh, ow]: bilinear resize exactly as
 * torch.nn.functional.interpolate(mode='bilinear', align_corners=False,
 * antialias=False) computes it on CPU for float32 (source index
 * (dst + 0.5) * in / out - 0.5 clamped at 0, float arithmetic). Sizes >= 1;
 * in and out must not overlap. */
void fs_resize_bilinear(const float *in, size_t h, size_t w, float *out, size_t oh, size_t ow);

/* in [h, w] -> out [oh, ow]: torch 'nearest' (not 'nearest-exact'):
 * src = min(floor(dst * (float)in / out), in - 1). For label maps. */
void fs_resize_nearest_u8(const uint8_t *in, size_t h, size_t w, uint8_t *out, size_t oh,
                          size_t ow);

#endif
