/* The Segment Anything Model, forward pass exactly as the official PyTorch
 * code computes it (facebookresearch/segment-anything), on float32 with the
 * kernels of any fs_nn_ops backend.
 *
 * Every pointer these calls take is host memory, whatever the backend: a
 * device backend gets its inputs copied in and its results copied out.
 *
 * Layouts: images channels-first [B, 3, H, W] as torch; image embeddings
 * channels-last [B, g, g, D] (g = img_size / patch_size, D = out_chans),
 * the layout the decoder consumes; masks [n, H, W] row-major.
 *
 *   fs_sam *m;
 *   fs_sam_load(&m, "sam_vit_b_01ec64.pth", 0);
 *   fs_sam_encode_raw(m, ops, image, 1, h, w, embed);
 *   fs_sam_decode(m, ops, embed, &prompt, FS_SAM_MASKS_MULTI, low, iou, &n);
 *   fs_sam_postprocess(m, ops, low, n, h, w, orig_h, orig_w, masks);
 */
#ifndef FS_SAM_H
#define FS_SAM_H

#include <stddef.h>

#include "nn/nn.h"
#include "sam/config.h"
#include "sam/params.h"

/* Receives intermediate activations in the official layout (e.g.
 * "image_embeddings" [B, D, g, g]); data is valid during the call only. */
typedef void (*fs_sam_tap_fn)(void *ctx, const char *name, const float *data, int ndim, const size_t *shape);

/* The encoder's activations: the residual stream for the batch, and scratch
 * for one image (blocks run image by image), one allocation reused by every
 * block; memory grows with the batch by one [g, g, C] stream per image. */
typedef struct {
    size_t batch;
    float *mem;
    float *x;   /* [B, g, g, C] residual stream */
    float *xn;  /* [g, g, C] normalised / projected (one image) */
    float *win; /* [Gp * Gp, C] zero-padded windows (Gp: grid rounded up to the window) */
    float *qkv; /* [Gp * Gp, 3C] */
    float *att; /* [Gp * Gp, C] */
    float *hid; /* [g * g, mlp_ratio * C] */
    float *n1, *n2; /* [g, g, D] neck */
    float *pre, *emb; /* device staging of the input [B, 3, S, S] and output [B, g, g, D] (NULL on the host) */
} fs_sam_encoder_acts;

/* Where the model runs. p and image_pe are always host memory (what was
 * loaded; checkpoints and exports read them). On a host backend (ref, cpu)
 * the kernels read them directly. fs_sam_bind to a device backend (cuda,
 * guard) copies them to that backend's memory (dp, d_image_pe), where the
 * kernels read them from then on, and moves the activations there too. */
typedef struct fs_sam {
    fs_sam_config cfg;      /* as run: img_size may differ from the checkpoint's */
    fs_sam_config ckpt_cfg; /* as stored */
    fs_sam_params p;
    float *image_pe;        /* [g, g, D] dense positional encoding (get_dense_pe), channels-last */
    const fs_nn_ops *dev;   /* the device backend the model is bound to, NULL on the host */
    fs_sam_params dp;       /* p's copy in dev's memory (fields point into dp.arena) */
    float *d_image_pe;
    fs_sam_encoder_acts acts; /* in dev's memory when bound */
    float *dec_ws;            /* the mask decoder's workspace, kept between calls (a GPU
                                 allocation per prompt would synchronise the device) */
    size_t dec_ws_n;
    fs_sam_tap_fn tap;
    void *tap_ctx;
    size_t trainers; /* training states made on this model: they hold pointers into its
                        parameters, so the model cannot move while any exists */
} fs_sam;

/* Loads a .pth or .safetensors checkpoint (configuration read off it, every
 * tensor checked by name and shape). img_size 0 keeps the checkpoint's;
 * another multiple of the patch size resizes pos_embed and the global rel-pos
 * tables (SAMed's way). */
int fs_sam_load(fs_sam **out, const char *ckpt_path, size_t img_size);
/* The same with configuration overrides: n key/value pairs with the
 * safetensors __metadata__ keys (e.g. "dec_heads"="4" for a small .pth). */
int fs_sam_load_meta(fs_sam **out, const char *ckpt_path, size_t img_size, const char *const *keys,
                     const char *const *vals, size_t n);
void fs_sam_free(fs_sam *m);
/* Puts the model where ops runs: for a device backend, copies p and
 * image_pe into its memory (again, when already bound: call it after
 * changing p on the host); for a host backend, releases any device copy.
 * Refused (FS_ERR) while a training state of the model exists, unless the
 * model stays on the host.
 * The inference calls below bind on their own when handed another
 * backend; a training state (sam/train.h) needs the model bound first. */
int fs_sam_bind(fs_sam *m, const fs_nn_ops *ops);
/* fn NULL switches taps off (and with them the transposes they cost). */
void fs_sam_set_tap(fs_sam *m, fs_sam_tap_fn fn, void *ctx);

/* img[B, 3, h, w] pixel values in [0, 255] -> out[B, 3, S, S] (S = img_size):
 * (x - pixel_mean) / pixel_std, zero-padded bottom/right (Sam.preprocess). */
int fs_sam_preprocess(const fs_sam *m, const float *img, size_t B, size_t h, size_t w, float *out);

/* pre[B, 3, S, S] preprocessed -> embed[B, g, g, D]. */
int fs_sam_encode(fs_sam *m, const fs_nn_ops *ops, const float *pre, size_t B, float *embed);
/* img[B, 3, h, w] in [0, 255] (h, w <= S) -> embed[B, g, g, D]. */
int fs_sam_encode_raw(fs_sam *m, const fs_nn_ops *ops, const float *img, size_t B, size_t h, size_t w, float *embed);

/* One prompt set in the input frame (S x S pixels, x then y). No points and
 * no box is the prompt-free (semantic) case: no sparse tokens at all. */
typedef struct {
    const float *points; /* [n_points, 2] (x, y) */
    const int *labels;   /* [n_points]: 1 foreground, 0 background, -1 not a point */
    size_t n_points;
    const float *box;    /* [4] x0, y0, x1, y1, or NULL */
} fs_sam_prompt;

typedef enum {
    FS_SAM_MASKS_SINGLE, /* multimask_output=False: mask token 0 */
    FS_SAM_MASKS_MULTI,  /* multimask_output=True: tokens 1..num_multimask */
    FS_SAM_MASKS_ALL     /* every mask token (prompt-free multi-class use) */
} fs_sam_mask_mode;

/* Masks that decode returns for a mode. */
size_t fs_sam_mask_count(const fs_sam *m, fs_sam_mask_mode mode);
/* Sparse tokens of a prompt: points (+1 padding point when there is no box) + 2 per box. */
size_t fs_sam_sparse_count(const fs_sam_prompt *pr);
/* sparse[fs_sam_sparse_count(pr), D] (PromptEncoder._embed_points/_embed_boxes). */
int fs_sam_embed_prompt(const fs_sam *m, const fs_sam_prompt *pr, float *sparse);

/* One image's embedding embed[g, g, D] and one prompt set -> low-res mask
 * logits low[n, 4g, 4g] and predicted IoU iou[n], n = fs_sam_mask_count(mode)
 * (stored in *n_out when not NULL). Dense prompt: no_mask_embed. */
int fs_sam_decode(fs_sam *m, const fs_nn_ops *ops, const float *embed, const fs_sam_prompt *pr,
                  fs_sam_mask_mode mode, float *low, float *iou, size_t *n_out);

/* Sam.postprocess_masks: low[n, 4g, 4g] -> bilinear to S x S -> crop to
 * in_h x in_w -> bilinear to out[n, orig_h, orig_w]. */
int fs_sam_postprocess(const fs_sam *m, const fs_nn_ops *ops, const float *low, size_t n, size_t in_h, size_t in_w,
                       size_t orig_h, size_t orig_w, float *out);

#endif
