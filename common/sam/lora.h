/* LoRA adapters on the image encoder's linears (SAMed's formulation):
 *   out[..., part] += scale * (x A^T) B^T,  A [r, in], B [out_part, r]
 * where part is the q, k or v third of a block's qkv output, or the whole
 * output of proj, mlp.lin1, mlp.lin2. Base weights stay frozen. New adapters
 * start with A Kaiming-uniform (bound 1/sqrt(in), torch's kaiming_uniform_
 * with a = sqrt(5)) drawn from a seed and B zero, so the adapted model
 * starts as the base model.
 * Names: image_encoder.blocks.{i}.attn.lora.{q,k,v}_{A,B} (as SAMed's
 * golden file), image_encoder.blocks.{i}.attn.proj.lora_{A,B},
 * image_encoder.blocks.{i}.mlp.lin{1,2}.lora_{A,B}.
 * With cfg.decoder set, the mask decoder's attention modules get adapters
 * too, on q_proj, k_proj, v_proj and out_proj of every layer's self_attn,
 * cross_attn_token_to_image and cross_attn_image_to_token and of
 * final_attn_token_to_image (same rank and scale): named
 * mask_decoder.transformer.layers.{i}.self_attn.q_proj.lora_{A,B},
 * mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_{A,B}. */
#ifndef FS_SAM_LORA_H
#define FS_SAM_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "sam/config.h"
#include "sam/params.h"

/* Adapter slots of one encoder block. */
enum { FS_LORA_Q, FS_LORA_K, FS_LORA_V, FS_LORA_PROJ, FS_LORA_LIN1, FS_LORA_LIN2, FS_LORA_NSLOTS };
#define FS_LORA_BIT(s) (1u << (s))
#define FS_LORA_QV (FS_LORA_BIT(FS_LORA_Q) | FS_LORA_BIT(FS_LORA_V))
#define FS_LORA_QKV (FS_LORA_QV | FS_LORA_BIT(FS_LORA_K))
#define FS_LORA_ALL ((1u << FS_LORA_NSLOTS) - 1)

typedef struct {
    size_t rank;      /* 4 */
    float scale;      /* 1 */
    unsigned targets; /* FS_LORA_BIT(slot)s; FS_LORA_QV by default; 0: no adapters */
    int decoder;      /* 1: adapters on the decoder's attention projections too (0); the
                         trainer sets it from its decoder mode */
} fs_lora_config;

/* Decoder adapter projections of one attention module. */
enum { FS_LORA_DEC_Q, FS_LORA_DEC_K, FS_LORA_DEC_V, FS_LORA_DEC_OUT, FS_LORA_DEC_NPROJ };
/* Decoder attention modules: 3 per two-way layer (self_attn, token to image,
 * image to token) then the final token-to-image attention. */
#define FS_LORA_DEC_MAX_ATTN (3 * FS_SAM_MAX_DEC_DEPTH + 1)

typedef struct {
    float *A[FS_LORA_DEC_NPROJ], *B[FS_LORA_DEC_NPROJ]; /* NULL without decoder adapters */
} fs_lora_attn;

typedef struct {
    float *A[FS_LORA_NSLOTS], *B[FS_LORA_NSLOTS]; /* NULL where the slot has no adapter */
} fs_lora_block;

typedef struct {
    fs_lora_config cfg;
    size_t depth;
    fs_lora_block blocks[FS_SAM_MAX_DEPTH];
    size_t n_dec_attn;                     /* 3 dec_depth + 1 with decoder adapters, else 0 */
    fs_lora_attn dec[FS_LORA_DEC_MAX_ATTN]; /* [3 l + {0 self, 1 t2i, 2 i2t}], [3 dec_depth]: final */
    fs_sam_table table; /* names, shapes, offsets into arena (slots unbound) */
    float *arena;
} fs_lora;

/* rank 4, scale 1, q and v. */
fs_lora_config fs_lora_default_config(void);
/* "qv" (or "q,v"), "qkv" (or "q,k,v"), "all" (qkv, proj, lin1, lin2), "none",
 * or a comma list of q, k, v, proj, lin1, lin2. FS_ERR on anything else. */
int fs_lora_parse_targets(const char *s, unsigned *targets);

/* Input and output widths of slot s for configuration c. */
void fs_lora_slot_dims(const fs_sam_config *c, int s, size_t *in, size_t *out);
/* "q", "k", "v", "proj", "lin1", "lin2". */
const char *fs_lora_slot_name(int s);

/* Input and output widths of decoder projection j (FS_LORA_DEC_*) of
 * attention module a (index as fs_lora.dec). */
void fs_lora_dec_dims(const fs_sam_config *c, size_t a, int j, size_t *in, size_t *out);

/* The adapters' table for c (without allocating them). */
int fs_lora_table_build(fs_sam_table *t, const fs_sam_config *c, const fs_lora_config *lc);
/* Allocates (zeroed) and binds the adapters. */
int fs_lora_alloc(fs_lora *l, const fs_sam_config *c, const fs_lora_config *lc);
void fs_lora_free(fs_lora *l);
/* A Kaiming-uniform from (seed, tensor index, element), B zero. */
void fs_lora_init(fs_lora *l, uint64_t seed);
/* Folds the adapters into the base weights, W[part] += scale * B A, for
 * inference with the unmodified forward pass. */
void fs_lora_merge(const fs_lora *l, const fs_sam_config *c, fs_sam_params *p);

#endif
