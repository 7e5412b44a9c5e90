/* Private to common/sam/: taps and shared helpers. */
#ifndef FS_SAM_INTERNAL_H
#define FS_SAM_INTERNAL_H

#include <string.h>

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

/* The token grid rounded up to whole attention windows (the zero-padded
 * grid windowed blocks run on). */
static inline size_t fs_sam_padded_grid(const fs_sam_config *c) {
    size_t g = fs_sam_grid(c), ws = c->window_size;
    return (g + ws - 1) / ws * ws;
}

/* The base tensors a training mode trains in full: the mask decoder's
 * (decoder full), and the encoders' (encoder full): the image encoder, and
 * the prompt encoder but for its Gaussian matrix (a buffer, not a
 * parameter, in the official code). */
static inline int fs_sam_is_decoder_tensor(const char *name) { return !strncmp(name, "mask_decoder.", 13); }
static inline int fs_sam_is_encoder_tensor(const char *name) {
    if (!strncmp(name, "image_encoder.", 14)) return 1;
    return !strncmp(name, "prompt_encoder.", 15) && !strstr(name, "positional_encoding_gaussian_matrix");
}

/* The dense positional encoding pe[g, g, D] (PositionEmbeddingRandom.forward). */
void fs_sam_dense_pe(const fs_sam *m, float *pe);
/* Frees the activations and the decoder's workspace (they live where the model does). */
void fs_sam_encoder_acts_free(fs_sam *m);

/* The backend whose memory holds the model's tensors (a host one when unbound). */
static inline const fs_nn_ops *fs_sam_mem(const fs_sam *m) { return m->dev ? m->dev : &fs_nn_cpu; }
/* The parameters and positional encoding the kernels read. */
static inline const fs_sam_params *fs_sam_kp(const fs_sam *m) { return m->dev ? &m->dp : &m->p; }
static inline const float *fs_sam_kpe(const fs_sam *m) { return m->dev ? m->d_image_pe : m->image_pe; }
/* The field of q that corresponds to the field of p that e binds: q has p's
 * layout (the device copy dp, a training state's gradients). */
static inline float **fs_sam_params_twin(fs_sam_params *q, const fs_sam_params *p, const fs_sam_tensor_info *e) {
    return (float **)((char *)q + ((const char *)e->slot - (const char *)p));
}
/* 1 when ops's kernels can read m where it is: bound to ops (a device
 * backend), or unbound (a host backend). */
static inline int fs_sam_bound_to(const fs_sam *m, const fs_nn_ops *ops) {
    return ops->device ? m->dev == ops : m->dev == NULL;
}
/* Binds m where ops runs when it is not there yet (a device backend, or a
 * host backend for a model bound to a device). */
int fs_sam_ensure_bound(fs_sam *m, const fs_nn_ops *ops);
/* Backend memory of n floats (zeroed), NULL with the error set. */
float *fs_sam_dalloc(const fs_sam *m, size_t n, const char *what);

#endif
