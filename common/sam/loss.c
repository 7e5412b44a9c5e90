/* BCE + soft Dice (prompted) and CE + Dice (prompt-free), with gradients. */
#include <math.h>
#include <stdlib.h>

#include "sam/loss.h"

fs_loss_weights fs_loss_default_weights(void) { return (fs_loss_weights){0.2, 0.8}; }

static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

/* log(1 + exp(x)) without overflow */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

void fs_loss_prompted(const float *logits, const float *target, size_t N, size_t HW, fs_loss_weights w,
                      fs_loss_value *out, float *dlogits) {
    double bce = 0, dice = 0, total_n = (double)N * (double)HW;
    for (size_t n = 0; n < N; n++) {
        const float *x = logits + n * HW, *t = target + n * HW;
        double inter = 0, pp = 0, tt = 0;
        for (size_t i = 0; i < HW; i++) {
            double p = sigmoid(x[i]);
            /* BCE with logits: softplus(x) - t x */
            bce += softplus(x[i]) - (double)t[i] * x[i];
            inter += p * t[i];
            pp += p * p;
            tt += (double)t[i] * t[i];
        }
        double num = 2 * inter + FS_LOSS_DICE_SMOOTH, den = pp + tt + FS_LOSS_DICE_SMOOTH;
        dice += 1.0 - num / den;
        if (!dlogits) continue;
        /* d dice_n / d p_i = -(2 t_i den - num 2 p_i) / den^2, times 1/N for the mean;
         * d bce / d x_i = (p_i - t_i) / (N HW); dp/dx = p (1 - p) */
        double cd = w.w_dice / (double)N, cb = w.w_xent / total_n;
        for (size_t i = 0; i < HW; i++) {
            double p = sigmoid(x[i]);
            double ddp = -(2.0 * t[i] * den - num * 2.0 * p) / (den * den);
            dlogits[n * HW + i] = (float)(cb * (p - t[i]) + cd * ddp * p * (1.0 - p));
        }
    }
    out->xent = N ? bce / total_n : 0;
    out->dice = N ? dice / (double)N : 0;
    out->total = w.w_xent * out->xent + w.w_dice * out->dice;
}

int fs_loss_semantic(const float *logits, const int *labels, size_t B, size_t K, size_t HW, fs_loss_weights w,
                     fs_loss_value *out, float *dlogits) {
    for (size_t i = 0; i < B * HW; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= K) return -1;
    double *inter = calloc(4 * K + 1, sizeof *inter);
    if (!inter) abort(); /* 4K doubles: only reachable when already out of memory */
    double *ss = inter + K, *tt = ss + K;
    double ce = 0, npix = (double)B * (double)HW;
    /* pass 1: softmax per pixel, CE and the per-class sums */
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < HW; i++) {
            const float *x = logits + b * K * HW + i;
            double mx = -INFINITY, z = 0;
            for (size_t k = 0; k < K; k++)
                if (x[k * HW] > mx) mx = x[k * HW];
            for (size_t k = 0; k < K; k++) z += exp(x[k * HW] - mx);
            int lab = labels[b * HW + i];
            ce += log(z) + mx - x[(size_t)lab * HW];
            for (size_t k = 0; k < K; k++) {
                double sk = exp(x[k * HW] - mx) / z;
                ss[k] += sk * sk;
                if ((size_t)lab == k) {
                    inter[k] += sk;
                    tt[k] += 1;
                }
            }
        }
    double dice = 0;
    for (size_t k = 0; k < K; k++)
        dice += 1.0 - (2 * inter[k] + FS_LOSS_DICE_SMOOTH) / (ss[k] + tt[k] + FS_LOSS_DICE_SMOOTH);
    out->xent = npix > 0 ? ce / npix : 0;
    out->dice = K ? dice / (double)K : 0;
    out->total = w.w_xent * out->xent + w.w_dice * out->dice;
    if (dlogits) {
        /* pass 2: g_k = d loss / d s_k, then the softmax Jacobian:
         * d/dx_j = s_j (g_j - sum_k s_k g_k) */
        double *g = calloc(K + 1, sizeof *g);
        if (!g) abort();
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < HW; i++) {
                const float *x = logits + b * K * HW + i;
                float *dx = dlogits + b * K * HW + i;
                double mx = -INFINITY, z = 0;
                for (size_t k = 0; k < K; k++)
                    if (x[k * HW] > mx) mx = x[k * HW];
                for (size_t k = 0; k < K; k++) z += exp(x[k * HW] - mx);
                int lab = labels[b * HW + i];
                double sg = 0;
                for (size_t k = 0; k < K; k++) {
                    double sk = exp(x[k * HW] - mx) / z, t = (size_t)lab == k ? 1.0 : 0.0;
                    double num = 2 * inter[k] + FS_LOSS_DICE_SMOOTH, den = ss[k] + tt[k] + FS_LOSS_DICE_SMOOTH;
                    g[k] = w.w_dice / (double)K * (-(2.0 * t * den - num * 2.0 * sk) / (den * den));
                    sg += sk * g[k];
                }
                for (size_t k = 0; k < K; k++) {
                    double sk = exp(x[k * HW] - mx) / z, t = (size_t)lab == k ? 1.0 : 0.0;
                    /* CE: (s_k - t_k) / npix */
                    dx[k * HW] = (float)(sk * (g[k] - sg) + w.w_xent * (sk - t) / npix);
                }
            }
        free(g);
    }
    free(inter);
    return 0;
}
