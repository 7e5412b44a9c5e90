/* Reference attention kernels. Scores are materialised one query row at a
 * time (a row of Nk doubles), so a global-attention grid of 64x64 tokens
 * needs 4096 doubles of scratch, not the 4096^2 map. */
#include <math.h>
#include <stdlib.h>

#include "nn/ref/ref.h"

/* row[n] <- softmax(row[n]) in place (max-subtracted). */
static void softmax_row(double *row, size_t n) {
    double mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < n; j++)
        if (row[j] > mx) mx = row[j];
    for (size_t j = 0; j < n; j++) {
        row[j] = exp(row[j] - mx);
        sum += row[j];
    }
    for (size_t j = 0; j < n; j++) row[j] /= sum;
}

/* q[B, Nq, H*D], k/v[B, Nk, H*D] -> out[B, Nq, H*D]:
 * per head, softmax(q k^T * scale) v. */
void fs_ref_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                              size_t Nk, size_t H, size_t D, float scale) {
    size_t C = H * D;
    double *row = malloc((Nk ? Nk : 1) * sizeof *row);
    if (!row) abort(); /* a few kB: only reachable when the process is already out of memory */
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < Nq; i++) {
                const float *qi = q + (b * Nq + i) * C + h * D;
                for (size_t j = 0; j < Nk; j++) {
                    const float *kj = k + (b * Nk + j) * C + h * D;
                    double s = 0;
                    for (size_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                    row[j] = s * scale;
                }
                softmax_row(row, Nk);
                float *o = out + (b * Nq + i) * C + h * D;
                for (size_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (size_t j = 0; j < Nk; j++) acc += row[j] * v[(b * Nk + j) * C + h * D + d];
                    o[d] = (float)acc;
                }
            }
    free(row);
}

/* qkv[B, Hg*Wg, 3, H, D], rel_h[2Hg-1, D], rel_w[2Wg-1, D] -> out[B, Hg*Wg, H*D].
 * score(q=(qy,qx), k=(ky,kx)) = scale * q.k + q.rel_h[qy-ky+Hg-1] + q.rel_w[qx-kx+Wg-1]
 * with the unscaled q in the relative terms (add_decomposed_rel_pos). */
void fs_ref_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                     size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    size_t N = Hg * Wg, C = H * D;
    /* one score row, plus q's projections onto every relative offset */
    double *row = malloc((N + (2 * Hg - 1) + (2 * Wg - 1)) * sizeof *row);
    if (!row) abort();
    double *qrh = row + N, *qrw = qrh + (2 * Hg - 1);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < N; i++) {
                const float *qi = qkv + ((b * N + i) * 3 + 0) * C + h * D;
                size_t qy = i / Wg, qx = i % Wg;
                if (rel_h) {
                    for (size_t r = 0; r < 2 * Hg - 1; r++) {
                        double s = 0;
                        for (size_t d = 0; d < D; d++) s += (double)qi[d] * rel_h[r * D + d];
                        qrh[r] = s;
                    }
                    for (size_t r = 0; r < 2 * Wg - 1; r++) {
                        double s = 0;
                        for (size_t d = 0; d < D; d++) s += (double)qi[d] * rel_w[r * D + d];
                        qrw[r] = s;
                    }
                }
                for (size_t j = 0; j < N; j++) {
                    const float *kj = qkv + ((b * N + j) * 3 + 1) * C + h * D;
                    double s = 0;
                    for (size_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                    s *= scale;
                    if (rel_h) {
                        size_t ky = j / Wg, kx = j % Wg;
                        s += qrh[qy + Hg - 1 - ky] + qrw[qx + Wg - 1 - kx];
                    }
                    row[j] = s;
                }
                softmax_row(row, N);
                float *o = out + (b * N + i) * C + h * D;
                for (size_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (size_t j = 0; j < N; j++) acc += row[j] * qkv[((b * N + j) * 3 + 2) * C + h * D + d];
                    o[d] = (float)acc;
                }
            }
    free(row);
}
