/* Private to common/sam/: taps and shared helpers. */
#ifndef FS_SAM_INTERNAL_H
#define FS_SAM_INTERNAL_H

#include "sam/sam.h"

/* LayerNorm eps: 1e-6 in the encoder and every LayerNorm2d, torch's default
 * 1e-5 in the two-way transformer. */
#define FS_SAM_EPS_ENC 1e-6f
#define FS_SAM_EPS_DEC 1e-5f

/* Emits data as is with shape [d0, .., d(ndim-1)] (ndim <= 4). */
void fs_sam_tap(const fs_sam *m, const char *name, const float *data, int ndim, size_t d0, size_t d1, size_t d2,
                size_t d3);
/* Emits a channels-last x[B, H, W, C] as [B, C, H, W]. */
void fs_sam_tap_chw(const fs_sam *m, const char *name, const float *x, size_t B, size_t H, size_t W, size_t C);

/* The dense positional encoding pe[g, g, D] (PositionEmbeddingRandom.forward). */
void fs_sam_dense_pe(const fs_sam *m, float *pe);
void fs_sam_encoder_acts_free(fs_sam_encoder_acts *a);

#endif
