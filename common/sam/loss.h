/* The training losses of SAMed-style fine-tuning, forward (the loss values)
 * and backward (the gradient with respect to the logits) in one call:
 *   prompted:    w_bce * BCE-with-logits (mean over every element)
 *              + w_dice * soft Dice (per prompt, then the mean over prompts)
 *   prompt-free: w_ce * cross-entropy (mean over pixels)
 *              + w_dice * Dice over classes (sums over the whole batch,
 *                then the mean over classes, background included)
 * with Dice = 1 - (2 sum(p t) + 1e-5) / (sum(p^2) + sum(t^2) + 1e-5),
 * p = sigmoid(logits) (prompted) or softmax over classes (prompt-free).
 * SAMed's weights are 0.2 and 0.8. Sums run in double. */
#ifndef FS_SAM_LOSS_H
#define FS_SAM_LOSS_H

#include <stddef.h>

#define FS_LOSS_DICE_SMOOTH 1e-5

typedef struct {
    double total;
    double xent; /* BCE (prompted) or cross-entropy (prompt-free), unweighted */
    double dice; /* the Dice term, unweighted */
} fs_loss_value;

typedef struct {
    double w_xent, w_dice; /* 0.2, 0.8 */
} fs_loss_weights;

/* SAMed's weights: 0.2 cross-entropy, 0.8 Dice. */
fs_loss_weights fs_loss_default_weights(void);

/* logits[N, HW], target[N, HW] (0 or 1; any value in [0, 1] works) ->
 * *out; dlogits[N, HW] (may be NULL) receives d total / d logits
 * (overwritten, not accumulated). */
void fs_loss_prompted(const float *logits, const float *target, size_t N, size_t HW, fs_loss_weights w,
                      fs_loss_value *out, float *dlogits);

/* logits[B, K, HW] (K classes), labels[B, HW] in [0, K) -> *out; dlogits
 * [B, K, HW] as above. Returns -1 (nothing written) when a label is out of
 * range, else 0. */
int fs_loss_semantic(const float *logits, const int *labels, size_t B, size_t K, size_t HW, fs_loss_weights w,
                     fs_loss_value *out, float *dlogits);

#endif
