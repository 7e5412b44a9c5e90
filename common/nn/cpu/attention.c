/* Attention on the CPU without the full score matrix. Work is cut into
 * tasks of (batch, head, block of query rows); a task computes its block's
 * scores S = scale * Q_blk K^T with one sgemm, adds the decomposed relative
 * position terms, exponentiates each row in place and multiplies by V with
 * a second sgemm, normalising the block's output rows last (D values per
 * row instead of Nk). At the 64 x 64 global grid of ViT-B a block is 4 MB
 * per thread instead of the 64 MB of a head's scores (800 MB for 12 heads).
 *
 * Relative positions: the term for query (qy, qx) and key (ky, kx) is
 * q.rel_h[qy - ky + Hg - 1] + q.rel_w[qx - kx + Wg - 1]. For a block, one
 * small sgemm gives q.rel_h[j] for every j (and likewise for rel_w); each
 * query row then reads its Hg and Wg values from those and writes its row
 * of terms, onto which the first product accumulates. */
#include "nn/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>

typedef struct {
    const float *q, *k, *v;
    float *out;
    size_t ldq, ldk, ldv, ldo; /* row strides (elements) */
    size_t bsq, bsk, bsv, bso; /* batch strides */
    size_t Nq, Nk, H, D;
    float scale;
    const float *rel_h, *rel_w; /* NULL: no relative positions */
    size_t Hg, Wg;              /* query and key grid when rel_h is set */
} attn_args;

/* Rows per block: sgemm packs all of K (and V) on every call, so a block
 * must have enough rows to amortise that; past a few megabytes of scores
 * the gain is gone (measured on the 64 x 64 grid, head_dim 64: 16 rows
 * 40, 64 rows 57, 256 rows 61, 512 rows 60 GFLOP/s per core). 4 MB of
 * scores is 256 rows at 4096 keys, a whole 14 x 14 window. */
static size_t block_rows(size_t Nq, size_t Nk) {
    size_t target = (4u << 20) / (sizeof(float) * (Nk ? Nk : 1));
    if (target < 16) target = 16;
    if (target >= Nq) return Nq ? Nq : 1;
    size_t nblk = (Nq + target - 1) / target;
    return (Nq + nblk - 1) / nblk; /* even blocks, no ragged tail */
}

typedef struct {
    float *s, *relh, *relw, *rw_row, *rh_row, *inv;
} attn_scratch;

static void attn_task(const attn_args *a, attn_scratch *w, size_t b, size_t h, size_t r0, size_t rb) {
    size_t Nk = a->Nk, D = a->D;
    const float *Q = a->q + b * a->bsq + r0 * a->ldq + h * D;
    const float *K = a->k + b * a->bsk + h * D;
    const float *V = a->v + b * a->bsv + h * D;
    float *O = a->out + b * a->bso + r0 * a->ldo + h * D;

    if (a->rel_h) {
        /* The rel-pos terms are written into S first and the product is
         * accumulated onto them (beta = 1): sgemm would otherwise clear S in
         * a pass of its own, and adding the terms afterwards is another. */
        size_t Hg = a->Hg, Wg = a->Wg, nh = 2 * Hg - 1, nw = 2 * Wg - 1;
        fs_nn_cpu_gemm_serial(1, rb, nh, D, 1.0f, Q, a->ldq, a->rel_h, D, 0.0f, w->relh, nh);
        fs_nn_cpu_gemm_serial(1, rb, nw, D, 1.0f, Q, a->ldq, a->rel_w, D, 0.0f, w->relw, nw);
        for (size_t i = 0; i < rb; i++) {
            size_t qi = r0 + i, qy = qi / Wg, qx = qi % Wg;
            const float *ph = w->relh + i * nh + qy + Hg - 1; /* ph[-ky] */
            const float *pw = w->relw + i * nw + qx + Wg - 1; /* pw[-kx] */
            for (size_t ky = 0; ky < Hg; ky++) w->rh_row[ky] = ph[-(long)ky];
            for (size_t kx = 0; kx < Wg; kx++) w->rw_row[kx] = pw[-(long)kx];
            fs_nn_cpu_relpos_row(w->s + i * Nk, w->rh_row, w->rw_row, Hg, Wg);
        }
        fs_nn_cpu_gemm_serial(1, rb, Nk, D, a->scale, Q, a->ldq, K, a->ldk, 1.0f, w->s, Nk);
    } else {
        fs_nn_cpu_gemm_serial(1, rb, Nk, D, a->scale, Q, a->ldq, K, a->ldk, 0.0f, w->s, Nk);
    }
    for (size_t i = 0; i < rb; i++) w->inv[i] = 1.0f / fs_nn_cpu_softmax_row(w->s + i * Nk, Nk);
    fs_nn_cpu_gemm_serial(0, rb, D, Nk, 1.0f, w->s, Nk, V, a->ldv, 0.0f, O, a->ldo);
    for (size_t i = 0; i < rb; i++) {
        float *o = O + i * a->ldo, s = w->inv[i];
        for (size_t d = 0; d < D; d++) o[d] *= s;
    }
}

static void attn_run(const attn_args *a, size_t B) {
    fs_nn_cpu_init();
    if (B == 0 || a->Nq == 0 || a->H == 0 || a->D == 0) return;
    if (a->Nk == 0) { /* softmax over no keys: nothing to average, zeros */
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < a->Nq; i++)
                for (size_t j = 0; j < a->H * a->D; j++) a->out[b * a->bso + i * a->ldo + j] = 0.0f;
        return;
    }
    size_t rb = block_rows(a->Nq, a->Nk);
    size_t nblk = (a->Nq + rb - 1) / rb;
    size_t ntask = B * a->H * nblk;
    size_t nh = a->rel_h ? 2 * a->Hg - 1 : 0, nw = a->rel_h ? 2 * a->Wg - 1 : 0;
#pragma omp parallel if (ntask > 1)
    {
        attn_scratch w;
        w.s = fs_nn_cpu_alloc(rb * (a->Nk ? a->Nk : 1) * sizeof(float), "attention scores");
        w.relh = fs_nn_cpu_alloc((rb * nh + 1) * sizeof(float), "attention rel-pos");
        w.relw = fs_nn_cpu_alloc((rb * nw + 1) * sizeof(float), "attention rel-pos");
        w.rh_row = fs_nn_cpu_alloc((a->Hg + 1) * sizeof(float), "attention rel-pos");
        w.rw_row = fs_nn_cpu_alloc((a->Wg + 1) * sizeof(float), "attention rel-pos");
        w.inv = fs_nn_cpu_alloc(rb * sizeof(float), "attention sums");
#pragma omp for schedule(dynamic, 1)
        for (size_t t = 0; t < ntask; t++) {
            size_t blk = t % nblk, h = (t / nblk) % a->H, b = t / (nblk * a->H);
            size_t r0 = blk * rb, n = r0 + rb <= a->Nq ? rb : a->Nq - r0;
            attn_task(a, &w, b, h, r0, n);
        }
        free(w.s);
        free(w.relh);
        free(w.relw);
        free(w.rh_row);
        free(w.rw_row);
        free(w.inv);
    }
}

/* q[B, Nq, H*D], k[B, Nk, H*D], v[B, Nk, H*D] -> out[B, Nq, H*D] */
void fs_nn_cpu_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                                 size_t Nk, size_t H, size_t D, float scale) {
    size_t C = H * D;
    attn_args a = {.q = q, .k = k, .v = v, .out = out,
                   .ldq = C, .ldk = C, .ldv = C, .ldo = C,
                   .bsq = Nq * C, .bsk = Nk * C, .bsv = Nk * C, .bso = Nq * C,
                   .Nq = Nq, .Nk = Nk, .H = H, .D = D, .scale = scale};
    attn_run(&a, B);
}

/* qkv[B, Hg*Wg, 3, H, D], rel_h[2Hg-1, D], rel_w[2Wg-1, D] -> out[B, Hg*Wg, H*D] */
void fs_nn_cpu_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w,
                                        size_t B, size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    size_t C = H * D, N = Hg * Wg, ld = 3 * C;
    attn_args a = {.q = qkv, .k = qkv + C, .v = qkv + 2 * C, .out = out,
                   .ldq = ld, .ldk = ld, .ldv = ld, .ldo = C,
                   .bsq = N * ld, .bsk = N * ld, .bsv = N * ld, .bso = N * C,
                   .Nq = N, .Nk = N, .H = H, .D = D, .scale = scale,
                   .rel_h = rel_h && rel_w ? rel_h : NULL, .rel_w = rel_w, .Hg = Hg, .Wg = Wg};
    attn_run(&a, B);
}
