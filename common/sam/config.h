/* The SAM configuration: every hyper-parameter the forward pass needs.
 * Official presets (ViT-B/-L/-H), or read off a checkpoint: the safetensors
 * __metadata__ keys first, then inference from tensor shapes, then the
 * official defaults. */
#ifndef FS_SAM_CONFIG_H
#define FS_SAM_CONFIG_H

#include <stddef.h>

#include "io/checkpoint.h"

#define FS_SAM_MAX_DEPTH 64     /* encoder blocks */
#define FS_SAM_MAX_DEC_DEPTH 16 /* two-way transformer layers */
#define FS_SAM_MAX_MASKS 16     /* mask tokens (num_multimask + 1) */

typedef struct {
    /* image encoder (ViT) */
    size_t img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, window_size;
    unsigned char global_attn[FS_SAM_MAX_DEPTH]; /* 1: block i attends over the whole grid */
    size_t out_chans;                            /* neck output = prompt/decoder dim */
    /* prompt encoder */
    size_t mask_in_chans;
    /* mask decoder */
    size_t dec_depth, dec_mlp_dim, dec_heads, num_multimask, iou_hidden, iou_depth;
    float pixel_mean[3], pixel_std[3];
} fs_sam_config;

/* Derived sizes. */
static inline size_t fs_sam_grid(const fs_sam_config *c) { return c->img_size / c->patch_size; }
static inline size_t fs_sam_head_dim(const fs_sam_config *c) { return c->embed_dim / c->num_heads; }
static inline size_t fs_sam_num_masks(const fs_sam_config *c) { return c->num_multimask + 1; }

/* "vit_b", "vit_l", "vit_h": the official configurations. FS_ERR on another name. */
int fs_sam_config_preset(fs_sam_config *c, const char *name);
/* "vit_b" / "vit_l" / "vit_h" when c equals a preset's encoder, else "custom". */
const char *fs_sam_config_name(const fs_sam_config *c);
/* Reads the configuration of a checkpoint: __metadata__ keys, then shapes.
 * Fails (naming the file) when a needed tensor is absent or the shapes are
 * inconsistent. Does not check every tensor: fs_sam_params_load does. */
int fs_sam_config_from_ckpt(fs_sam_config *c, const fs_ckpt *ck);
/* The same with n extra metadata pairs (the same keys) that take precedence
 * over the file's: for .pth checkpoints, which carry no metadata, and for
 * what shapes cannot tell (dec_heads). */
int fs_sam_config_from_ckpt_meta(fs_sam_config *c, const fs_ckpt *ck, const char *const *keys,
                                 const char *const *vals, size_t n);
/* The official ViT-B configuration with n key/value pairs (the metadata
 * keys above) applied: a model built from scratch (fs_sam_create_random).
 * A depth other than 12 needs global_attn too. */
int fs_sam_config_from_keys(fs_sam_config *c, const char *const *keys, const char *const *vals, size_t n);
/* Sanity of the numbers (divisibility, bounds). */
int fs_sam_config_validate(const fs_sam_config *c);
/* "global_attn" as a comma list ("2,5,8,11") into buf. */
const char *fs_sam_config_global_str(const fs_sam_config *c, char *buf, size_t n);

#endif
