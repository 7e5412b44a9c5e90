/* AdamW, clipping and SAMed's schedule. */
#include <math.h>

#include "sam/adamw.h"

fs_adamw_config fs_adamw_defaults(double lr, double weight_decay) {
    return (fs_adamw_config){lr, 0.9, 0.999, 1e-8, weight_decay};
}

float fs_grad_clip_factor(double norm, float max_norm) {
    if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

double fs_lr_samed(double base, size_t it, size_t warmup, size_t max_it) {
    if (warmup && it < warmup) return base * (double)(it + 1) / (double)warmup;
    double shift = (double)(it - warmup);
    if (!max_it) return base;
    double f = 1.0 - shift / (double)max_it;
    return f > 0 ? base * pow(f, 0.9) : 0.0;
}
