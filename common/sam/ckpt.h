/* The training checkpoint (schemas/checkpoint.md): a safetensors file with
 * every trainable tensor under its name, the AdamW moments
 * ("adamw.m.<name>", "adamw.v.<name>"), and __metadata__ saying what it is
 * (schema "fewsam.checkpoint", version 1), how far training got (step), the
 * model-level configuration (LoRA rank, scale and targets, decoder mode,
 * input size) and a fingerprint of the base weights, plus whatever settings
 * the caller adds (the trainer's schedule, batch, seed, ...).
 *
 *   trainer:   fs_sam_ckpt_save(path, t, m, fp, &extra)       every N steps and at the end
 *              fs_sam_ckpt_read_meta + fs_sam_ckpt_restore     --resume
 *   predictor: fs_sam_ckpt_read_meta (for img_size), fs_sam_load, fs_sam_ckpt_apply
 */
#ifndef FS_SAM_CKPT_H
#define FS_SAM_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "sam/lora.h"
#include "sam/sam.h"
#include "sam/train.h"

#define FS_SAM_CKPT_SCHEMA "fewsam.checkpoint"
#define FS_SAM_CKPT_VERSION 1
#define FS_SAM_CKPT_MAX_META 64

/* String metadata (safetensors __metadata__ is a map of strings). */
typedef struct {
    size_t n;
    char key[FS_SAM_CKPT_MAX_META][48];
    char val[FS_SAM_CKPT_MAX_META][1024];
} fs_sam_ckpt_meta;

/* Sets (or replaces) key; FS_ERR when the table is full or the value too long. */
int fs_sam_ckpt_meta_set(fs_sam_ckpt_meta *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* NULL when absent. */
const char *fs_sam_ckpt_meta_get(const fs_sam_ckpt_meta *m, const char *key);

/* What the model-level keys say. */
typedef struct {
    size_t step;                   /* AdamW steps taken */
    size_t img_size;
    fs_lora_config lora;
    fs_train_decoder_mode decoder;
    fs_train_encoder_mode encoder; /* "encoder" key; lora when absent (files from before it) */
    uint64_t base_fingerprint;
} fs_sam_ckpt_info;

/* A 64-bit hash of the base model: its configuration (all but the input
 * size) and the bytes of a few tensors that no input size changes and no
 * training touches (patch embedding, first qkv, last MLP, neck, the
 * prompt encoder's Gaussian matrix, two decoder tensors). Call it on a
 * freshly loaded model, before training or merging changes its weights. */
uint64_t fs_sam_fingerprint(const fs_sam *m);

/* "q,v", "q,k,v", ...: the targets as fs_lora_parse_targets reads them ("none" for 0). */
const char *fs_sam_ckpt_targets_str(unsigned targets, char *buf, size_t n);

/* Writes t's tensors and moments atomically. The model-level keys (schema,
 * version, step, img_size, lora_*, decoder, encoder, base_fingerprint, model) come
 * from t, m and fp and override the same keys in extra (may be NULL). */
int fs_sam_ckpt_save(const char *path, fs_train *t, const fs_sam *m, uint64_t fp, const fs_sam_ckpt_meta *extra);

/* Reads the metadata of a checkpoint (not its tensors), checking the schema
 * and version: the model-level keys, parsed into *info (may be NULL), and
 * into *meta (may be NULL) those keys and the n_keys keys asked for that the
 * file has. Errors name the file. */
int fs_sam_ckpt_read_meta(const char *path, const char *const *keys, size_t n_keys, fs_sam_ckpt_meta *meta,
                          fs_sam_ckpt_info *info);

/* Restores every trainable tensor of t, its moments and the step count from
 * a checkpoint written for the same configuration (t was created with the
 * checkpoint's LoRA and decoder settings): every name and shape must match
 * and nothing else may be there. Values are copied bit for bit. */
int fs_sam_ckpt_restore(const char *path, fs_train *t);

/* Inference: puts a checkpoint onto a freshly loaded base model m. Refuses
 * another base (fingerprint) or input size; the trained base tensors
 * (decoder; image and prompt encoder when it was trained in full) replace
 * the loaded ones, and the LoRA adapters are merged into the encoder's
 * weights (fs_lora_merge), so the unchanged forward pass runs. *info (may
 * be NULL) receives the checkpoint's model-level keys. */
int fs_sam_ckpt_apply(const char *path, fs_sam *m, fs_sam_ckpt_info *info);

#endif
