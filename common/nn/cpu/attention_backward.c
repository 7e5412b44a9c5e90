/* Attention backward on the CPU, blocked by query rows like the forward:
 * the full score map is never held. A task (batch, head, block of query
 * rows) recomputes its block's scores S (scale * Q K^T plus the relative
 * position terms) and P = softmax(S), then with single-threaded sgemms
 *   dP = dO V^T,   dV += P^T dO,   dS = P * (dP - rowsum(P * dP)),
 *   dQ += scale * dS K,   dK += scale * dS^T Q.
 * dQ's rows belong to the task alone. dK and dV of a head collect every
 * block's contribution: when a head has one block they go straight into
 * the caller's buffers (dK after centring, see add_centered); otherwise
 * each thread sums them in an [Nk, D] pair of its own and adds that into
 * the caller's under the head's lock when it moves to another head (tasks
 * are handed out in contiguous runs, so a thread flushes about twice per
 * call). Memory per thread: two blocks of scores (rb x Nk) plus that pair.
 *
 * Relative positions: s[i, (ky, kx)] also has q_i.rel_h[qy-ky+Hg-1] +
 * q_i.rel_w[qx-kx+Wg-1] (unscaled q). Summing dS over each key row gives
 * gh[i, qy-ky+Hg-1] (and over key columns gw[i, qx-kx+Wg-1]); then
 * dQ += gh rel_h + gw rel_w and drel_h += gh^T Q, drel_w += gw^T Q, small
 * products. The tables' gradients are summed per thread and added once. */
#include "nn/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *q, *k, *v, *dout;
    float *dq, *dk, *dv;                   /* each may be NULL */
    size_t ldq, ldk, ldv, ldo, lddq, lddk, lddv; /* row strides (elements) */
    size_t bsq, bsk, bsv, bso, bsdq, bsdk, bsdv; /* batch strides */
    size_t B, Nq, Nk, H, D;
    float scale;
    const float *rel_h, *rel_w; /* NULL: no relative positions */
    float *drel_h, *drel_w;     /* each may be NULL */
    size_t Hg, Wg;
} bwd_args;

typedef struct {
    float *s, *dp;             /* [rb, Nk]: P, then dP and dS */
    float *gk, *gv;            /* [Nk, D] dK, dV of the current head (gv only with several blocks) */
    double *mean;              /* [D] */
    float *relh, *relw;        /* [rb, nh], [rb, nw]: q.rel_h[r], q.rel_w[r]; then gh, gw */
    float *rh_row, *rw_row;    /* [Hg], [Wg] */
    float *grh, *grw;          /* [nh, D], [nw, D]: this thread's drel_h, drel_w */
    long head;                 /* b * H + h whose dK/dV gk, gv hold, or -1 */
} bwd_scratch;

/* Rows per block: as the forward, about 4 MB of scores per matrix. */
static size_t block_rows(size_t Nq, size_t Nk) {
    size_t target = (4u << 20) / (sizeof(float) * (Nk ? Nk : 1));
    if (target < 16) target = 16;
    if (target >= Nq) return Nq ? Nq : 1;
    size_t nblk = (Nq + target - 1) / target;
    return (Nq + nblk - 1) / nblk;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FS_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FS_VEC_CLONES
#endif

/* g[n] <- p * (g - sum(p g) / sum(p)), sums and products in double */
FS_VEC_CLONES
static void softmax_grad_row(float *g, const float *p, size_t n) {
    double dot = 0.0, sum = 0.0;
#pragma omp simd reduction(+ : dot, sum)
    for (size_t j = 0; j < n; j++) {
        dot += (double)p[j] * (double)g[j];
        sum += (double)p[j];
    }
    double delta = dot / sum;
#pragma omp simd
    for (size_t j = 0; j < n; j++) g[j] = (float)((double)p[j] * ((double)g[j] - delta));
}

/* dst[j * ld + d] += g[j, d] - mean over j of g[., d], for g[Nk, D].
 * Every key's gradient is scale * sum_i dS_ij q_i and every row of dS sums
 * to zero, so dK sums to zero over the keys of a head (for any subset of
 * the queries): the key bias's gradient is zero in exact arithmetic. Float
 * products leave noise of about 1e-10 there, which AdamW (dividing by
 * sqrt(v) + 1e-8) turns into steps of about lr; removing the mean, a
 * projection onto what the exact dK satisfies, brings it to the rounding
 * of the final sums, as a double computation would. */
static void add_centered(float *dst, size_t ld, const float *g, size_t Nk, size_t D, double *mean) {
    for (size_t d = 0; d < D; d++) mean[d] = 0.0;
    for (size_t j = 0; j < Nk; j++)
        for (size_t d = 0; d < D; d++) mean[d] += g[j * D + d];
    for (size_t d = 0; d < D; d++) mean[d] /= (double)Nk;
    for (size_t j = 0; j < Nk; j++)
        for (size_t d = 0; d < D; d++) dst[j * ld + d] += (float)((double)g[j * D + d] - mean[d]);
}

/* adds the [Nk, D] pair of w into the caller's dK, dV of head `head` */
static void flush_head(const bwd_args *a, bwd_scratch *w, omp_lock_t *locks) {
    if (w->head < 0) return;
    size_t b = (size_t)w->head / a->H, h = (size_t)w->head % a->H, Nk = a->Nk, D = a->D;
    omp_set_lock(&locks[w->head]);
    if (a->dk) add_centered(a->dk + b * a->bsdk + h * D, a->lddk, w->gk, Nk, D, w->mean);
    if (a->dv) {
        float *dst = a->dv + b * a->bsdv + h * D;
        for (size_t j = 0; j < Nk; j++)
            for (size_t d = 0; d < D; d++) dst[j * a->lddv + d] += w->gv[j * D + d];
    }
    omp_unset_lock(&locks[w->head]);
    w->head = -1;
}

static void bwd_task(const bwd_args *a, bwd_scratch *w, omp_lock_t *locks, size_t nblk, size_t b, size_t h,
                     size_t r0, size_t rb) {
    size_t Nk = a->Nk, D = a->D;
    const float *Q = a->q + b * a->bsq + r0 * a->ldq + h * D;
    const float *K = a->k + b * a->bsk + h * D;
    const float *V = a->v + b * a->bsv + h * D;
    const float *dO = a->dout + b * a->bso + r0 * a->ldo + h * D;
    float *dQ = a->dq ? a->dq + b * a->bsdq + r0 * a->lddq + h * D : NULL;
    int rel = a->rel_h != NULL;
    size_t Hg = a->Hg, Wg = a->Wg, nh = rel ? 2 * Hg - 1 : 0, nw = rel ? 2 * Wg - 1 : 0;

    /* where this block's dK, dV go: with one block, dV straight to the
     * caller and dK via gk (to be centred); else both summed in gk, gv */
    float *dK = NULL, *dV = NULL;
    size_t ldv = D;
    if (nblk == 1) {
        if (a->dk) dK = w->gk;
        if (a->dv) dV = a->dv + b * a->bsdv + h * D, ldv = a->lddv;
    } else if (a->dk || a->dv) {
        long head = (long)(b * a->H + h);
        if (w->head != head) {
            flush_head(a, w, locks);
            if (a->dk) memset(w->gk, 0, Nk * D * sizeof(float));
            if (a->dv) memset(w->gv, 0, Nk * D * sizeof(float));
            w->head = head;
        }
        if (a->dk) dK = w->gk;
        if (a->dv) dV = w->gv;
    }

    /* P: the forward's scores, normalised in place */
    if (rel) {
        fs_nn_cpu_gemm_serial(1, rb, nh, D, 1.0f, Q, a->ldq, a->rel_h, D, 0.0f, w->relh, nh);
        fs_nn_cpu_gemm_serial(1, rb, nw, D, 1.0f, Q, a->ldq, a->rel_w, D, 0.0f, w->relw, nw);
        for (size_t i = 0; i < rb; i++) {
            size_t qi = r0 + i, qy = qi / Wg, qx = qi % Wg;
            const float *ph = w->relh + i * nh + qy + Hg - 1, *pw = w->relw + i * nw + qx + Wg - 1;
            for (size_t ky = 0; ky < Hg; ky++) w->rh_row[ky] = ph[-(long)ky];
            for (size_t kx = 0; kx < Wg; kx++) w->rw_row[kx] = pw[-(long)kx];
            fs_nn_cpu_relpos_row(w->s + i * Nk, w->rh_row, w->rw_row, Hg, Wg);
        }
        fs_nn_cpu_gemm_serial(1, rb, Nk, D, a->scale, Q, a->ldq, K, a->ldk, 1.0f, w->s, Nk);
    } else {
        fs_nn_cpu_gemm_serial(1, rb, Nk, D, a->scale, Q, a->ldq, K, a->ldk, 0.0f, w->s, Nk);
    }
    for (size_t i = 0; i < rb; i++) {
        float *p = w->s + i * Nk, inv = 1.0f / fs_nn_cpu_softmax_row(p, Nk);
#pragma omp simd
        for (size_t j = 0; j < Nk; j++) p[j] *= inv;
    }

    if (dV) fs_nn_cpu_gemm_tn_serial(Nk, D, rb, 1.0f, w->s, Nk, dO, a->ldo, 1.0f, dV, ldv);
    int need_ds = dQ || dK || (rel && (a->drel_h || a->drel_w));
    if (!need_ds) return;

    /* dS = P * (dP - rowsum(P * dP)), in place of dP. Each row of dS sums
     * to zero in exact arithmetic (the softmax ignores a shift of its
     * scores), which makes the key bias's gradient exactly zero; AdamW
     * turns any noise there into steps of up to lr, so the row is formed
     * in double, with the dot divided by the float P's own sum. */
    fs_nn_cpu_gemm_serial(1, rb, Nk, D, 1.0f, dO, a->ldo, V, a->ldv, 0.0f, w->dp, Nk);
    for (size_t i = 0; i < rb; i++) softmax_grad_row(w->dp + i * Nk, w->s + i * Nk, Nk);
    const float *dS = w->dp;
    if (dQ) fs_nn_cpu_gemm_serial(0, rb, D, Nk, a->scale, dS, Nk, K, a->ldk, 1.0f, dQ, a->lddq);
    if (dK) {
        fs_nn_cpu_gemm_tn_serial(Nk, D, rb, a->scale, dS, Nk, Q, a->ldq, nblk == 1 ? 0.0f : 1.0f, dK, D);
        if (nblk == 1) add_centered(a->dk + b * a->bsdk + h * D, a->lddk, dK, Nk, D, w->mean);
    }

    if (rel) {
        /* gh[i, qy-ky+Hg-1] = sum_kx dS[i, (ky, kx)], gw[i, qx-kx+Wg-1] = sum_ky dS[i, (ky, kx)],
         * zero at offsets no key reaches from this query */
        float *gh = w->relh, *gw = w->relw;
        memset(gh, 0, rb * nh * sizeof(float));
        memset(gw, 0, rb * nw * sizeof(float));
        for (size_t i = 0; i < rb; i++) {
            size_t qi = r0 + i, qy = qi / Wg, qx = qi % Wg;
            const float *ds = dS + i * Nk;
            float *cs = w->rw_row;
            memset(cs, 0, Wg * sizeof(float));
            for (size_t ky = 0; ky < Hg; ky++) {
                const float *r = ds + ky * Wg;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (size_t kx = 0; kx < Wg; kx++) {
                    s += r[kx];
                    cs[kx] += r[kx];
                }
                gh[i * nh + qy + Hg - 1 - ky] = s;
            }
            for (size_t kx = 0; kx < Wg; kx++) gw[i * nw + qx + Wg - 1 - kx] = cs[kx];
        }
        if (dQ) {
            fs_nn_cpu_gemm_serial(0, rb, D, nh, 1.0f, gh, nh, a->rel_h, D, 1.0f, dQ, a->lddq);
            fs_nn_cpu_gemm_serial(0, rb, D, nw, 1.0f, gw, nw, a->rel_w, D, 1.0f, dQ, a->lddq);
        }
        if (a->drel_h) fs_nn_cpu_gemm_tn_serial(nh, D, rb, 1.0f, gh, nh, Q, a->ldq, 1.0f, w->grh, D);
        if (a->drel_w) fs_nn_cpu_gemm_tn_serial(nw, D, rb, 1.0f, gw, nw, Q, a->ldq, 1.0f, w->grw, D);
    }
}

static void bwd_run(const bwd_args *a) {
    fs_nn_cpu_init();
    int rel = a->rel_h != NULL;
    int want_rel = rel && (a->drel_h || a->drel_w);
    if (a->B == 0 || a->Nq == 0 || a->Nk == 0 || a->H == 0 || a->D == 0) return;
    if (!a->dq && !a->dk && !a->dv && !want_rel) return;
    size_t pairs = a->B * a->H;
    size_t rb = block_rows(a->Nq, a->Nk), nblk = (a->Nq + rb - 1) / rb;
    /* Few (batch, head) pairs and few keys (the decoder's image-to-token
     * attention): cut the queries finer so every thread has work; the
     * flushes cost Nk * D each, small next to a block when Nk is small. */
    size_t nt = (size_t)omp_get_max_threads();
    if (pairs * nblk < nt && a->Nq >= 64) {
        size_t want = (nt + pairs - 1) / pairs, most = a->Nq / 32;
        if (want > most) want = most;
        if (want > nblk) {
            rb = (a->Nq + want - 1) / want;
            nblk = (a->Nq + rb - 1) / rb;
        }
    }
    size_t ntask = pairs * nblk;
    size_t nh = rel ? 2 * a->Hg - 1 : 0, nw = rel ? 2 * a->Wg - 1 : 0;
    int acc = nblk > 1 && (a->dk || a->dv);
    omp_lock_t *locks = NULL;
    if (acc) {
        locks = fs_nn_cpu_alloc(pairs * sizeof *locks, "attention backward locks");
        for (size_t i = 0; i < pairs; i++) omp_init_lock(&locks[i]);
    }
#pragma omp parallel if (ntask > 1)
    {
        bwd_scratch w = {0};
        w.head = -1;
        w.s = fs_nn_cpu_alloc(rb * a->Nk * sizeof(float), "attention backward scores");
        w.dp = fs_nn_cpu_alloc(rb * a->Nk * sizeof(float), "attention backward scores");
        if (a->dk) {
            w.gk = fs_nn_cpu_alloc(a->Nk * a->D * sizeof(float), "attention backward dK");
            w.mean = fs_nn_cpu_alloc(a->D * sizeof(double), "attention backward dK");
        }
        if (acc) w.gv = fs_nn_cpu_alloc(a->Nk * a->D * sizeof(float), "attention backward dV");
        if (rel) {
            w.relh = fs_nn_cpu_alloc(rb * nh * sizeof(float), "attention backward rel-pos");
            w.relw = fs_nn_cpu_alloc(rb * nw * sizeof(float), "attention backward rel-pos");
            w.rh_row = fs_nn_cpu_alloc(a->Hg * sizeof(float), "attention backward rel-pos");
            w.rw_row = fs_nn_cpu_alloc(a->Wg * sizeof(float), "attention backward rel-pos");
            w.grh = fs_nn_cpu_alloc(nh * a->D * sizeof(float), "attention backward rel-pos");
            w.grw = fs_nn_cpu_alloc(nw * a->D * sizeof(float), "attention backward rel-pos");
            memset(w.grh, 0, nh * a->D * sizeof(float));
            memset(w.grw, 0, nw * a->D * sizeof(float));
        }
        /* static: contiguous runs of tasks, so a thread meets few heads */
#pragma omp for schedule(static)
        for (size_t t = 0; t < ntask; t++) {
            size_t blk = t % nblk, h = (t / nblk) % a->H, b = t / (nblk * a->H);
            size_t r0 = blk * rb, n = r0 + rb <= a->Nq ? rb : a->Nq - r0;
            bwd_task(a, &w, locks, nblk, b, h, r0, n);
        }
        if (acc) flush_head(a, &w, locks);
        if (want_rel) {
#pragma omp critical(fs_nn_cpu_relpos_grad)
            {
                if (a->drel_h)
                    for (size_t i = 0; i < nh * a->D; i++) a->drel_h[i] += w.grh[i];
                if (a->drel_w)
                    for (size_t i = 0; i < nw * a->D; i++) a->drel_w[i] += w.grw[i];
            }
        }
        free(w.s), free(w.dp), free(w.gk), free(w.gv), free(w.mean);
        free(w.relh), free(w.relw), free(w.rh_row), free(w.rw_row), free(w.grh), free(w.grw);
    }
    if (locks) {
        for (size_t i = 0; i < pairs; i++) omp_destroy_lock(&locks[i]);
        free(locks);
    }
}

/* Shapes as the forward: q[B, Nq, H*D], k/v[B, Nk, H*D], dout[B, Nq, H*D];
 * dq, dk, dv (each optional) accumulate. */
void fs_nn_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                  const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale) {
    size_t C = H * D;
    bwd_args a = {.q = q, .k = k, .v = v, .dout = dout, .dq = dq, .dk = dk, .dv = dv,
                  .ldq = C, .ldk = C, .ldv = C, .ldo = C, .lddq = C, .lddk = C, .lddv = C,
                  .bsq = Nq * C, .bsk = Nk * C, .bsv = Nk * C, .bso = Nq * C,
                  .bsdq = Nq * C, .bsdk = Nk * C, .bsdv = Nk * C,
                  .B = B, .Nq = Nq, .Nk = Nk, .H = H, .D = D, .scale = scale};
    bwd_run(&a);
}

/* Shapes as the forward: qkv[B, Hg*Wg, 3, H, D], dout[B, Hg*Wg, H*D];
 * dqkv (optional) accumulates its q, k and v parts; drel_h[2Hg-1, D] and
 * drel_w[2Wg-1, D] accumulate when non-NULL and the tables are given. */
void fs_nn_cpu_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout,
                                         const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                         size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    size_t C = H * D, N = Hg * Wg, ld = 3 * C;
    int rel = rel_h && rel_w;
    bwd_args a = {.q = qkv, .k = qkv + C, .v = qkv + 2 * C, .dout = dout,
                  .dq = dqkv, .dk = dqkv ? dqkv + C : NULL, .dv = dqkv ? dqkv + 2 * C : NULL,
                  .ldq = ld, .ldk = ld, .ldv = ld, .ldo = C, .lddq = ld, .lddk = ld, .lddv = ld,
                  .bsq = N * ld, .bsk = N * ld, .bsv = N * ld, .bso = N * C,
                  .bsdq = N * ld, .bsdk = N * ld, .bsdv = N * ld,
                  .B = B, .Nq = N, .Nk = N, .H = H, .D = D, .scale = scale,
                  .rel_h = rel ? rel_h : NULL, .rel_w = rel ? rel_w : NULL,
                  .drel_h = rel ? drel_h : NULL, .drel_w = rel ? drel_w : NULL, .Hg = Hg, .Wg = Wg};
    bwd_run(&a);
}
