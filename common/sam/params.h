/* SAM's parameters: the table of every state-dict tensor (official name and
 * shape) generated from a configuration, one float arena holding them all,
 * and a struct of pointers into it. Loading is strict: every tensor of the
 * table must be in the checkpoint with exactly its shape, and nothing else
 * may be. */
#ifndef FS_SAM_PARAMS_H
#define FS_SAM_PARAMS_H

#include <stddef.h>

#include "io/checkpoint.h"
#include "sam/config.h"

typedef struct {
    char name[96];
    int ndim;
    size_t shape[4];
    size_t numel;
    size_t offset; /* floats from the arena start */
    float **slot;  /* the fs_sam_params pointer it binds (NULL for a bare table) */
} fs_sam_tensor_info;

typedef struct {
    fs_sam_tensor_info *v;
    size_t n;
    size_t total; /* floats */
} fs_sam_table;

/* nn.Linear */
typedef struct {
    float *w, *b;
} fs_sam_linear;

typedef struct {
    float *norm1_w, *norm1_b;
    float *rel_pos_h, *rel_pos_w; /* [2*g-1, head_dim], g = grid (global) or window */
    fs_sam_linear qkv, proj;
    float *norm2_w, *norm2_b;
    fs_sam_linear lin1, lin2;
} fs_sam_block_params;

/* the decoder's Attention: q/k/v to the internal dim, out back */
typedef struct {
    fs_sam_linear q, k, v, out;
} fs_sam_attn_params;

typedef struct {
    fs_sam_attn_params self_attn, cross_t2i, cross_i2t;
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b, *norm3_w, *norm3_b, *norm4_w, *norm4_b;
    fs_sam_linear lin1, lin2;
} fs_sam_twoway_params;

/* the decoder's MLP (hypernetworks, IoU head): iou_depth linears, ReLU between */
typedef struct {
    fs_sam_linear layers[8];
} fs_sam_mlp_params;

typedef struct {
    /* image encoder */
    float *pos_embed; /* [1, g, g, C] */
    fs_sam_linear patch;
    fs_sam_block_params blocks[FS_SAM_MAX_DEPTH];
    float *neck0_w, *neck1_w, *neck1_b, *neck2_w, *neck3_w, *neck3_b;
    /* prompt encoder */
    float *pe_gaussian;    /* [2, C/2] */
    float *point_embed[4]; /* [1, C]: negative, positive, box corner 1, box corner 2 */
    float *not_a_point, *no_mask;
    float *md0_w, *md0_b, *md1_w, *md1_b, *md3_w, *md3_b, *md4_w, *md4_b, *md6_w, *md6_b;
    /* mask decoder */
    fs_sam_twoway_params layers[FS_SAM_MAX_DEC_DEPTH];
    fs_sam_attn_params final_attn;
    float *norm_final_w, *norm_final_b;
    float *iou_token, *mask_tokens;
    float *up0_w, *up0_b, *up1_w, *up1_b, *up3_w, *up3_b;
    fs_sam_mlp_params hyper[FS_SAM_MAX_MASKS];
    fs_sam_mlp_params iou_head;

    fs_sam_table table;
    float *arena; /* table.total floats */
} fs_sam_params;

/* The table for c, in the official state_dict order. */
int fs_sam_table_build(fs_sam_table *t, const fs_sam_config *c);
void fs_sam_table_free(fs_sam_table *t);
/* Index of a name in the table, or -1. */
long fs_sam_table_find(const fs_sam_table *t, const char *name);

/* Builds the table, allocates the arena (zeroed) and points every field at
 * its slot. */
int fs_sam_params_alloc(fs_sam_params *p, const fs_sam_config *c);
void fs_sam_params_free(fs_sam_params *p);

/* Checks that the checkpoint holds exactly the tensors of ck_cfg's table,
 * with their shapes (errors name the tensor and both shapes). Cheap: call it
 * before allocating anything the size of the model. */
int fs_sam_params_check(const fs_ckpt *ck, const fs_sam_config *ck_cfg);

/* Reads a checkpoint whose own configuration is ck_cfg into p (allocated for
 * cfg). cfg may differ from ck_cfg in img_size only: pos_embed and the global
 * blocks' rel-pos tables are then resized bilinearly (align_corners=False), as
 * SAMed runs the 1024-px model at 512. Every tensor of ck_cfg's table must be
 * present with its exact shape; unknown tensors are errors too. */
int fs_sam_params_load(fs_sam_params *p, const fs_sam_config *cfg, fs_ckpt *ck, const fs_sam_config *ck_cfg);

#endif
