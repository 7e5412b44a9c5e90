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

/* ---- backward ----
 * For one query row with probabilities p = softmax(s) and output o = sum_j p_j v_j:
 *   dv_j += p_j * dout
 *   dp_j  = dout . v_j
 *   ds_j  = p_j * (dp_j - sum_l p_l dp_l) = p_j * (dp_j - dout . o)
 * and ds then flows into whatever built the score s_j. The probabilities are
 * recomputed one row at a time; dk and dv collect contributions from every
 * query, so they are summed in double scratch ([N, D] per head) and added to
 * the caller's float buffers once per head. */

/* adds the double scratch g[n, D] into the rows of dst (row stride C) */
static void add_rows(float *dst, size_t C, const double *g, size_t n, size_t D) {
    for (size_t j = 0; j < n; j++)
        for (size_t d = 0; d < D; d++) dst[j * C + d] += (float)g[j * D + d];
}

/* ds[n] <- p_j * (dp_j - dout . o) given p[n] and dp[n] = dout . v_j. */
static void softmax_row_backward(double *ds, const double *p, const double *dp, size_t n) {
    double dot = 0; /* sum_l p_l dp_l = dout . o */
    for (size_t j = 0; j < n; j++) dot += p[j] * dp[j];
    for (size_t j = 0; j < n; j++) ds[j] = p[j] * (dp[j] - dot);
}

/* Shapes as fs_ref_attention_forward; dq, dk, dv (each optional) accumulate. */
void fs_ref_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale) {
    size_t C = H * D, nk = Nk ? Nk : 1;
    /* p, dp, ds rows; dk, dv scratch */
    double *p = malloc((3 * nk + 2 * nk * D) * sizeof *p);
    if (!p) abort();
    double *dp = p + nk, *ds = dp + nk, *gk = ds + nk, *gv = gk + nk * D;
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            const float *qb = q + b * Nq * C + h * D, *kb = k + b * Nk * C + h * D, *vb = v + b * Nk * C + h * D;
            for (size_t i = 0; i < nk * D; i++) gk[i] = gv[i] = 0;
            for (size_t i = 0; i < Nq; i++) {
                const float *qi = qb + i * C, *go = dout + (b * Nq + i) * C + h * D;
                for (size_t j = 0; j < Nk; j++) {
                    double s = 0, t = 0;
                    for (size_t d = 0; d < D; d++) {
                        s += (double)qi[d] * kb[j * C + d];
                        t += (double)go[d] * vb[j * C + d];
                    }
                    p[j] = s * scale;
                    dp[j] = t;
                }
                softmax_row(p, Nk);
                softmax_row_backward(ds, p, dp, Nk);
                /* s_j = scale * q_i . k_j */
                for (size_t j = 0; j < Nk; j++)
                    for (size_t d = 0; d < D; d++) {
                        gv[j * D + d] += p[j] * go[d];
                        gk[j * D + d] += scale * ds[j] * qi[d];
                    }
                if (dq) {
                    float *gq = dq + (b * Nq + i) * C + h * D;
                    for (size_t d = 0; d < D; d++) {
                        double acc = 0;
                        for (size_t j = 0; j < Nk; j++) acc += ds[j] * kb[j * C + d];
                        gq[d] += (float)(scale * acc);
                    }
                }
            }
            if (dk) add_rows(dk + b * Nk * C + h * D, C, gk, Nk, D);
            if (dv) add_rows(dv + b * Nk * C + h * D, C, gv, Nk, D);
        }
    free(p);
}

/* Shapes as fs_ref_attention_relpos_forward; dqkv accumulates (its q, k and v
 * parts), drel_h/drel_w accumulate when non-NULL (and rel_h/rel_w are given).
 * With s_j = scale * q.k_j + q.rel_h[qy-ky+Hg-1] + q.rel_w[qx-kx+Wg-1]:
 *   dq         += scale * sum_j ds_j k_j + sum_j ds_j (rel_h[..] + rel_w[..])
 *   dk_j       += scale * ds_j q
 *   drel_h[r]  += (sum of ds_j over keys j with qy-ky+Hg-1 = r) * q
 *   drel_w[r]  += (sum of ds_j over keys j with qx-kx+Wg-1 = r) * q
 * The per-row sums by key row (dh[ky]) and key column (dw[kx]) keep the
 * relative terms O(N (Hg + Wg) D) per query, as the forward's projections. */
void fs_ref_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout, const float *qkv,
                                      const float *rel_h, const float *rel_w, size_t B, size_t Hg, size_t Wg,
                                      size_t H, size_t D, float scale) {
    size_t N = Hg * Wg, C = H * D, RH = 2 * Hg - 1, RW = 2 * Wg - 1;
    int rel = rel_h != NULL; /* the forward adds both tables or neither */
    /* rows p, dp, ds [N]; per-head dk, dv [N, D]; q's projections qrh [RH],
     * qrw [RW]; ds summed by key row dh [Hg] and column dw [Wg]; the tables'
     * gradients over the whole call grh [RH, D], grw [RW, D] */
    size_t n_scratch = 3 * N + 2 * N * D + RH + RW + Hg + Wg + (RH + RW) * D;
    double *p = malloc(n_scratch * sizeof *p);
    if (!p) abort();
    double *dp = p + N, *ds = dp + N, *gk = ds + N, *gv = gk + N * D;
    double *qrh = gv + N * D, *qrw = qrh + RH, *dh = qrw + RW, *dw = dh + Hg;
    double *grh = dw + Wg, *grw = grh + RH * D;
    for (size_t i = 0; i < (RH + RW) * D; i++) grh[i] = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++) {
            for (size_t i = 0; i < N * D; i++) gk[i] = gv[i] = 0;
            for (size_t i = 0; i < N; i++) {
                const float *qi = qkv + ((b * N + i) * 3 + 0) * C + h * D;
                const float *go = dout + (b * N + i) * C + h * D;
                size_t qy = i / Wg, qx = i % Wg;
                if (rel) {
                    for (size_t r = 0; r < RH; r++) {
                        double s = 0;
                        for (size_t d = 0; d < D; d++) s += (double)qi[d] * rel_h[r * D + d];
                        qrh[r] = s;
                    }
                    for (size_t r = 0; r < RW; r++) {
                        double s = 0;
                        for (size_t d = 0; d < D; d++) s += (double)qi[d] * rel_w[r * D + d];
                        qrw[r] = s;
                    }
                }
                for (size_t j = 0; j < N; j++) {
                    const float *kj = qkv + ((b * N + j) * 3 + 1) * C + h * D;
                    const float *vj = qkv + ((b * N + j) * 3 + 2) * C + h * D;
                    double s = 0, t = 0;
                    for (size_t d = 0; d < D; d++) {
                        s += (double)qi[d] * kj[d];
                        t += (double)go[d] * vj[d];
                    }
                    s *= scale;
                    if (rel) s += qrh[qy + Hg - 1 - j / Wg] + qrw[qx + Wg - 1 - j % Wg];
                    p[j] = s;
                    dp[j] = t;
                }
                softmax_row(p, N);
                softmax_row_backward(ds, p, dp, N);
                for (size_t j = 0; j < N; j++)
                    for (size_t d = 0; d < D; d++) {
                        gv[j * D + d] += p[j] * go[d];
                        gk[j * D + d] += scale * ds[j] * qi[d];
                    }
                if (rel) {
                    for (size_t y = 0; y < Hg; y++) dh[y] = 0;
                    for (size_t x = 0; x < Wg; x++) dw[x] = 0;
                    for (size_t j = 0; j < N; j++) {
                        dh[j / Wg] += ds[j];
                        dw[j % Wg] += ds[j];
                    }
                    for (size_t ky = 0; ky < Hg; ky++)
                        for (size_t d = 0; d < D; d++) grh[(qy + Hg - 1 - ky) * D + d] += dh[ky] * qi[d];
                    for (size_t kx = 0; kx < Wg; kx++)
                        for (size_t d = 0; d < D; d++) grw[(qx + Wg - 1 - kx) * D + d] += dw[kx] * qi[d];
                }
                if (dqkv) {
                    float *gq = dqkv + ((b * N + i) * 3 + 0) * C + h * D;
                    for (size_t d = 0; d < D; d++) {
                        double acc = 0;
                        for (size_t j = 0; j < N; j++) acc += ds[j] * qkv[((b * N + j) * 3 + 1) * C + h * D + d];
                        acc *= scale;
                        if (rel) {
                            for (size_t ky = 0; ky < Hg; ky++) acc += dh[ky] * rel_h[(qy + Hg - 1 - ky) * D + d];
                            for (size_t kx = 0; kx < Wg; kx++) acc += dw[kx] * rel_w[(qx + Wg - 1 - kx) * D + d];
                        }
                        gq[d] += (float)acc;
                    }
                }
            }
            if (dqkv) {
                add_rows(dqkv + (b * N * 3 + 1) * C + h * D, 3 * C, gk, N, D);
                add_rows(dqkv + (b * N * 3 + 2) * C + h * D, 3 * C, gv, N, D);
            }
        }
    if (rel && drel_h)
        for (size_t i = 0; i < RH * D; i++) drel_h[i] += (float)grh[i];
    if (rel && drel_w)
        for (size_t i = 0; i < RW * D; i++) drel_w[i] += (float)grw[i];
    free(p);
}
