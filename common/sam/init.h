/* SAM without a checkpoint: a model built from a configuration with a
 * seeded random initialisation (to pretrain from scratch), and the other
 * way round, a model's weights written as a plain SAM checkpoint (official
 * state-dict names, the configuration in __metadata__) that fs_sam_load,
 * the predictor and the trainer read like any released one. */
#ifndef FS_SAM_INIT_H
#define FS_SAM_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "sam/sam.h"

/* A model of configuration c, every tensor drawn from seed (one random
 * stream per tensor, so a tensor's values do not depend on the others):
 * weights of linears and convolutions and pos_embed truncated normal
 * (std 0.02, cut at 2 std), biases and the rel-pos tables zero, LayerNorm
 * weights one, the prompt and mask-decoder embeddings (point, not-a-point,
 * no-mask, IoU and mask tokens) N(0, 1) as nn.Embedding, and the prompt
 * encoder's Gaussian matrix N(0, 1) (PositionEmbeddingRandom, scale 1). */
int fs_sam_create_random(fs_sam **out, const fs_sam_config *c, uint64_t seed);

/* Writes every tensor of m (at m's input size) to a safetensors file,
 * atomically, with the configuration keys (img_size, patch_size, embed_dim,
 * depth, num_heads, window_size, global_attn, out_chans, dec_depth,
 * dec_mlp_dim, dec_heads, num_multimask, iou_hidden, mask_in_chans) and n
 * extra string pairs (e.g. how the weights were made) in __metadata__. */
int fs_sam_export(const char *path, const fs_sam *m, const char *const *keys, const char *const *vals, size_t n);

#endif
