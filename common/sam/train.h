/* Training SAM: LoRA on the image encoder, the mask decoder trained in full,
 * with LoRA or frozen, BCE/CE + Dice losses, AdamW. The state owns one allocation per
 * role (llm.c style): the LoRA adapters, the gradients of every trainable
 * tensor, the AdamW moments, the activations saved for the backward pass;
 * fs_train_tensor entries point into them.
 *
 *   fs_train_config tc;
 *   fs_train_config_default(&tc);
 *   fs_train *t;
 *   fs_train_create(&t, model, &tc);          // prints the trainable count
 *   for (it = 0; it < max_it; it++) {
 *       fs_train_batch b = {...};
 *       fs_loss_value loss;
 *       fs_train_step_batch(t, ops, &b, fs_lr_samed(0.005, it, 250, max_it), &loss);
 *   }
 *   for (i = 0; i < fs_train_tensor_count(t); i++) save(fs_train_tensor_at(t, i));
 *
 * Activation memory, ViT-B at 1024 (64x64 tokens, 70x70 window-padded),
 * batch 1, store mode (the default): per block the qkv and attention outputs
 * on the padded grid, the post-attention stream and the MLP's pre-GELU
 * hidden, 123 MB a block, 1.5 GB for 12; the 13 block inputs 164 MB;
 * backward scratch 0.3 GB; the decoder tape of one prompt set 0.14 GB; with
 * the model (0.37 GB) and gradients and moments (0.05 GB) about 2.6 GB, and
 * about 2 GB more per image of the batch (a quarter of that at 512 px).
 * recompute = 1 keeps only the block inputs and reruns each block's forward
 * in the backward pass (one more encoder forward): about 1.2 GB at batch 1,
 * 0.6 GB more per image. Global-attention maps are never stored: the
 * attention kernels recompute scores. */
#ifndef FS_SAM_TRAIN_H
#define FS_SAM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"
#include "sam/adamw.h"
#include "sam/lora.h"
#include "sam/loss.h"
#include "sam/sam.h"

typedef enum {
    FS_TRAIN_DECODER_FULL,   /* every mask_decoder.* tensor trained (default) */
    FS_TRAIN_DECODER_FROZEN, /* the decoder's weights frozen (gradients still flow through it) */
    FS_TRAIN_DECODER_LORA,   /* the decoder's weights frozen, LoRA adapters (the encoder's rank and
                                scale) on its attention q/k/v/out projections trained */
} fs_train_decoder_mode;

/* What trains in the encoders. */
typedef enum {
    FS_TRAIN_ENCODER_LORA,   /* LoRA adapters on the image encoder, base weights frozen (default) */
    FS_TRAIN_ENCODER_FULL,   /* every image-encoder parameter (patch embedding, pos_embed, rel-pos
                                tables, norms, qkv/proj/MLP weights and biases, neck) and the prompt
                                encoder's embeddings (point, not-a-point, no-mask); no adapters. The
                                Gaussian matrix of the positional encoding is a buffer, as in torch,
                                and the mask downscaling gets no gradient (no mask prompts) */
    FS_TRAIN_ENCODER_FROZEN, /* nothing: no adapters, no encoder backward pass */
} fs_train_encoder_mode;

typedef struct {
    fs_train_encoder_mode encoder; /* lora */
    fs_lora_config lora;          /* rank 4, scale 1, q and v (targets 0 unless encoder is lora) */
    fs_train_decoder_mode decoder; /* full */
    size_t batch;                 /* most images per step: activations are sized for it (1) */
    int recompute;                /* 1: keep only block inputs, recompute in backward (0) */
    fs_loss_weights loss;         /* 0.2 / 0.8 */
    fs_adamw_config adamw;        /* betas 0.9/0.999, eps 1e-8, wd 0.1 (SPEC); lr set per step */
    float clip;                   /* global gradient-norm clipping, <= 0 off (off) */
    uint64_t seed;                /* LoRA A initialisation (0) */
} fs_train_config;

void fs_train_config_default(fs_train_config *c);

/* "full", "lora", "frozen": the trainer's --decoder and --encoder words, the
 * checkpoint's "decoder" and "encoder" metadata. */
const char *fs_train_decoder_mode_name(fs_train_decoder_mode m);
const char *fs_train_encoder_mode_name(fs_train_encoder_mode m);
/* The mode a word names; FS_ERR (the error says what was expected) for another. */
int fs_train_decoder_mode_parse(const char *s, fs_train_decoder_mode *m);
int fs_train_encoder_mode_parse(const char *s, fs_train_encoder_mode *m);

/* One trainable tensor: the parameter, its gradient and AdamW moments.
 * param, grad, m and v are host memory; on a device backend they hold what
 * the last fs_train_pull copied out, and fs_train_push copies them back in;
 * dparam .. dv are the kernels' copies (the same pointers on the host). */
typedef struct {
    char name[96]; /* the official / golden name */
    int ndim;
    size_t shape[4];
    size_t numel;
    float *param; /* in the model's host arena (base tensors) or the LoRA arena */
    float *grad, *m, *v;
    float *dparam, *dgrad, *dm, *dv;
    int in_graph; /* 0 when the loss never reaches it (the IoU head: no loss uses the
                     predicted IoU). AdamW skips it, as torch skips a None gradient */
} fs_train_tensor;

typedef struct fs_train fs_train;

/* Trainable parameter counts for a configuration, without a model: the
 * encoder's adapters, and the decoder's weights (full) or adapters (lora);
 * the encoders' in full mode are in fs_train_param_count. */
void fs_train_count_params(const fs_sam_config *c, const fs_train_config *tc, size_t *lora, size_t *decoder);

/* 1 when ops has every backward kernel training needs. */
int fs_train_backend_ok(const fs_nn_ops *ops);

/* A training state for model m (which it modifies in place: the decoder's
 * weights are trained where they are). LoRA adapters are initialised from
 * tc->seed (B zero). The state lives where the model is bound
 * (fs_sam_bind): bind m to a device backend before, not after. */
int fs_train_create(fs_train **out, fs_sam *m, const fs_train_config *tc);
void fs_train_free(fs_train *t);

/* A batch. images[n_images, 3, S, S] preprocessed (fs_sam_preprocess).
 * Prompted (prompts != NULL): n_items prompt sets, item_image[n_items] says
 * which image each belongs to, targets[n_items, L, L] (L = 4 g, the low-res
 * logit size) binary masks; each set is decoded on its own with
 * multimask_output=False.
 * Prompt-free (prompts == NULL): one decoder pass per image without sparse
 * tokens, every mask token's mask a class logit; labels[n_images, L, L] in
 * [0, num_mask_tokens). */
typedef struct {
    const float *images;
    size_t n_images;
    const fs_sam_prompt *prompts;
    const size_t *item_image;
    size_t n_items;
    const float *targets;
    const int *labels;
    float *logits_out; /* optional: [n_items, 1, L, L] or [n_images, K, L, L] */
} fs_train_batch;

/* Forward and backward: the loss in *loss, gradients ADDED to the tensors'
 * grad (call fs_train_zero_grad first; several calls accumulate). Emits
 * "grad.act.image_embeddings" [B, D, g, g] and "grad.act.blocks.{i}"
 * [B, g, g, C] through the model's tap when one is set. */
int fs_train_forward_backward(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, fs_loss_value *loss);
/* The loss only (no gradients). */
int fs_train_loss(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, fs_loss_value *loss);
void fs_train_zero_grad(fs_train *t);
/* grad *= f (gradient accumulation over n micro-batches: f = 1/n, since
 * each loss is already a mean over its own batch). */
void fs_train_scale_grad(fs_train *t, float f);
/* Clipping (when configured) and one AdamW update at learning rate lr;
 * increments the step counter. */
void fs_train_step(fs_train *t, double lr);
/* zero_grad + forward_backward + step. */
int fs_train_step_batch(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, double lr, fs_loss_value *loss);

/* Device backends: copy every trainable tensor's parameter, gradient and
 * moments out to the host views (pull: before reading or saving them) or
 * back in (push: after writing them, e.g. on resume). Host backends: no-ops. */
void fs_train_pull(fs_train *t);
void fs_train_push(fs_train *t);
/* Trainable tensors (LoRA first, the encoder's then the decoder's, then base tensors in state_dict order:
 * image encoder, prompt encoder, mask decoder). */
size_t fs_train_tensor_count(const fs_train *t);
fs_train_tensor *fs_train_tensor_at(fs_train *t, size_t i);
fs_train_tensor *fs_train_find(fs_train *t, const char *name);
size_t fs_train_param_count(const fs_train *t);
/* AdamW steps taken (restore it with the moments on resume). */
size_t fs_train_steps(const fs_train *t);
void fs_train_set_steps(fs_train *t, size_t steps);
/* The configuration the state was created with. */
const fs_train_config *fs_train_get_config(const fs_train *t);
/* The adapters (to save them, or to merge them for inference). */
fs_lora *fs_train_lora(fs_train *t);
/* The global gradient norm of the last fs_train_step (before clipping). */
double fs_train_last_grad_norm(const fs_train *t);

#endif
