/* AdamW's settings, global-norm gradient clipping, and SAMed's
 * learning-rate schedule. The update itself is the backends' adamw_update
 * and the norm their sumsq (nn/nn.h), on memory wherever the model lives:
 * exactly torch.optim.AdamW at step t (1 for the first step), m and v zero
 * before it:
 *   p -= lr * wd * p
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps) */
#ifndef FS_SAM_ADAMW_H
#define FS_SAM_ADAMW_H

#include <stddef.h>

typedef struct {
    double lr, beta1, beta2, eps, weight_decay; /* double: 1 - 0.999f is not 0.001 */
} fs_adamw_config;

/* torch's defaults with the given lr and weight decay (betas 0.9/0.999, eps 1e-8). */
fs_adamw_config fs_adamw_defaults(double lr, double weight_decay);

/* The factor that clip_grad_norm_ applies: max_norm / (norm + 1e-6) when
 * norm > max_norm, else 1 (max_norm <= 0: no clipping). */
float fs_grad_clip_factor(double norm, float max_norm);

/* SAMed's schedule at iteration it (0-based): linear warm-up
 * base * (it + 1) / warmup for it < warmup, then poly decay
 * base * (1 - (it - warmup) / max_it)^0.9 (never below 0). warmup 0: no
 * warm-up. SPEC defaults: base 0.005, warmup 250. */
double fs_lr_samed(double base, size_t it, size_t warmup, size_t max_it);

#endif
