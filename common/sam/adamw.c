/* AdamW, clipping and SAMed's schedule. */
#include <math.h>

#include "sam/adamw.h"

fs_adamw_config fs_adamw_defaults(double lr, double weight_decay) {
    return (fs_adamw_config){lr, 0.9, 0.999, 1e-8, weight_decay};
}

void fs_adamw_update(const fs_adamw_config *c, size_t t, float *p, const float *g, float *m, float *v, size_t n) {
    double b1 = c->beta1, b2 = c->beta2;
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    double step = c->lr / bc1, sbc2 = sqrt(bc2), decay = 1.0 - c->lr * c->weight_decay;
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        double pi = p[i] * decay;
        p[i] = (float)(pi - step * mi / (sqrt(vi) / sbc2 + c->eps));
    }
}

double fs_grad_sumsq(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
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
