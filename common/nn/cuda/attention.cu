/* Fused attention, flash-attention style: scores are computed tile by tile
 * and folded into a running softmax (online max and sum), so the N x N map
 * is never stored. One kernel family serves both entries: the decoder's
 * plain attention (q, k, v separate, row stride H*D) and the encoder's
 * attention with decomposed relative positions (q, k, v interleaved in the
 * qkv linear's output, row stride 3*H*D).
 *
 * Work split: a group of G consecutive threads owns one query row (or, in
 * the backward's key kernel, one key row); each thread holds 16 of the
 * head's dims in registers, as four float4 chunks g, g+G, g+2G, g+3G of the
 * row (so the G threads of a group read G adjacent float4s of a shared
 * tile: no bank conflicts), and dot products are finished with G-wide
 * shuffles. G = 1, 2, 4, 8, 16 serves head dims up to 16, 32, 64, 128, 256;
 * dims beyond D are zero in registers and tiles, so they add nothing.
 *
 * Relative positions: score(i, j) = scale q_i.k_j + Th[i][ky_j] + Tw[i][kx_j]
 * with Th[i][ky] = q_i . rel_h[qy_i - ky + Hg - 1] and Tw likewise (the
 * unscaled q). A block computes Th and Tw of its own queries into shared
 * memory first ([Hg][R] and [Wg][R], column r for row r: conflict-free).
 *
 * Backward (the softmax statistics are not kept by the forward, so they are
 * recomputed):
 *   query kernel: pass 1 over the keys gives lse_i = log sum_j exp(s_ij) and
 *     delta_i = sum_j p_ij dout_i.v_j (= dout_i . out_i); pass 2 gives
 *     ds_ij = p_ij (dout_i.v_j - delta_i) and from it dq_i, and the sums of
 *     ds_ij by key row and column (dTh, dTw) that carry the gradient into the
 *     relative terms: dq_i += sum_ky dTh[i][ky] rel_h[..] + sum_kx dTw[i][kx]
 *     rel_w[..]. It stores lse, delta, Th, Tw (and dTh, dTw when the tables'
 *     gradients are wanted) in scratch of O(N (Hg + Wg)) per head.
 *   key kernel: each group owns a key j and loops over the queries:
 *     dv_j += p_ij dout_i, dk_j += scale ds_ij q_i.
 *   table kernel: drel_h[r] += sum over queries i and key rows ky with
 *     qy_i - ky + Hg - 1 = r of dTh[i][ky] q_i (likewise drel_w), summed in
 *     slices and then in slice order (deterministic).
 * Every gradient is owned by one thread, so none needs atomics. */
#include <math.h>
#include <stdio.h>

#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

namespace {

constexpr int DPT = 16;     /* head dims per thread */
constexpr int TILE = 32;    /* keys (or queries) per shared tile */
constexpr int CHUNK = 8;    /* keys folded into the running softmax at once */
constexpr int THREADS = 256;

struct AttnArgs {
    /* q, k, v at (batch 0, token 0, head 0); rows of tokens sq/sk/sv apart,
     * batches bq/bk/bv apart; the gradients share their input's layout */
    const float *q, *k, *v;
    long long sq, sk, sv, bq, bk, bv;
    float *o; /* forward output, and dout for the backward: [B, Nq, H*D] */
    const float *dout;
    long long so, bo;
    float *dq, *dk, *dv;
    int B, H, Nq, Nk, D;
    float scale;
    /* relative positions (NULL: none); then Nq = Nk = Hg * Wg */
    const float *rel_h, *rel_w;
    int Hg, Wg;
    /* backward scratch, [B*H*Nq] and [B*H*Nq][Hg or Wg] */
    float *lse, *delta, *th, *tw, *dth, *dtw;
};

template <int G>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

/* The thread's 16 dims of a row: dims 4 (g + G c) + e, c < 4, e < 4. */
template <int G>
__device__ __forceinline__ void load_row(float (&r)[DPT], const float *p, int D, int g) {
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            r[4 * c + e] = (p && d < D) ? p[d] : 0.0f;
        }
}

/* The thread's part of row . tile row t (a tile row is DMAX/4 float4s). */
template <int G>
__device__ __forceinline__ float dot_tile(const float (&r)[DPT], const float4 *tile, int t, int g) {
    const float4 *row = tile + t * (4 * G);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < 4; c++) {
        float4 x = row[g + G * c];
        s += r[4 * c] * x.x + r[4 * c + 1] * x.y + r[4 * c + 2] * x.z + r[4 * c + 3] * x.w;
    }
    return s;
}

/* acc += a * tile row t */
template <int G>
__device__ __forceinline__ void axpy_tile(float (&acc)[DPT], float a, const float4 *tile, int t, int g) {
    const float4 *row = tile + t * (4 * G);
#pragma unroll
    for (int c = 0; c < 4; c++) {
        float4 x = row[g + G * c];
        acc[4 * c] += a * x.x;
        acc[4 * c + 1] += a * x.y;
        acc[4 * c + 2] += a * x.z;
        acc[4 * c + 3] += a * x.w;
    }
}

/* The thread's part of r . p for a row p of D floats in global memory. */
template <int G>
__device__ __forceinline__ float dot_row(const float (&r)[DPT], const float *p, int D, int g) {
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            if (d < D) s += r[4 * c + e] * p[d];
        }
    return s;
}

/* acc += a * p for a row p of D floats in global memory */
template <int G>
__device__ __forceinline__ void axpy_row(float (&acc)[DPT], float a, const float *p, int D, int g) {
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            if (d < D) acc[4 * c + e] += a * p[d];
        }
}

/* Copies rows [r0, r0 + TILE) of a [n, D] matrix (rows `stride` apart) into a
 * zero-padded [TILE][16 G] shared tile; rows past n are zero. */
template <int G>
__device__ __forceinline__ void load_tile(float4 *tile, const float *base, long long stride, int r0, int n, int D) {
    constexpr int DMAX = DPT * G;
    float *t = reinterpret_cast<float *>(tile);
    for (int idx = threadIdx.x; idx < TILE * DMAX; idx += blockDim.x) {
        int row = idx / DMAX, d = idx % DMAX;
        t[idx] = (r0 + row < n && d < D) ? base[(long long)(r0 + row) * stride + d] : 0.0f;
    }
}

/* Th[ky][r] = q . rel_h[qy - ky + Hg - 1] and Tw[kx][r] likewise, into shared
 * sth [Hg][R] and stw [Wg][R] (zero for rows past Nq); also stored to
 * th/tw [row][Hg or Wg] when given (the backward's key kernel reads them). */
template <int G>
__device__ void rel_table(float *st, const float *rel, int T, int coord, const float (&q)[DPT], int D, int i,
                          bool valid, int r, int R, int g, float *t) {
    for (int k = 0; k < T; k++) {
        float part = valid ? dot_row<G>(q, rel + (long long)(coord - k + T - 1) * D, D, g) : 0.0f;
        part = group_sum<G>(part);
        if (g == 0) {
            st[k * R + r] = part;
            if (t && valid) t[(long long)i * T + k] = part;
        }
    }
}

template <int G>
__device__ void rel_tables(float *sth, float *stw, const float (&q)[DPT], const AttnArgs &a, int i, bool valid,
                           int r, int R, int g, float *th, float *tw) {
    rel_table<G>(sth, a.rel_h, a.Hg, valid ? i / a.Wg : 0, q, a.D, i, valid, r, R, g, th);
    rel_table<G>(stw, a.rel_w, a.Wg, valid ? i % a.Wg : 0, q, a.D, i, valid, r, R, g, tw);
}

/* ---- forward: grid (query blocks x B*H), R = blockDim / G queries each ----
 * shared: K and V tiles [TILE][16 G], then (rel) sth [Hg][R], stw [Wg][R] */
template <int G>
__global__ void __launch_bounds__(THREADS) attn_fwd_kernel(AttnArgs a, int qblocks) {
    extern __shared__ float4 smem[];
    const int R = blockDim.x / G, r = threadIdx.x / G, g = threadIdx.x % G;
    const int bh = blockIdx.x / qblocks, b = bh / a.H, h = bh % a.H;
    const int i = (blockIdx.x % qblocks) * R + r;
    const bool valid = i < a.Nq, rel = a.rel_h != nullptr;
    float4 *sk = smem, *sv = sk + TILE * 4 * G;
    float *sth = reinterpret_cast<float *>(sv + TILE * 4 * G), *stw = sth + (rel ? a.Hg * R : 0);

    float q[DPT], o[DPT];
    load_row<G>(q, valid ? a.q + b * a.bq + (long long)i * a.sq + h * a.D : nullptr, a.D, g);
    if (rel) rel_tables<G>(sth, stw, q, a, i, valid, r, R, g, nullptr, nullptr);
#pragma unroll
    for (int e = 0; e < DPT; e++) o[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const float *kb = a.k + b * a.bk + h * a.D, *vb = a.v + b * a.bv + h * a.D;

    for (int j0 = 0; j0 < a.Nk; j0 += TILE) {
        const int nk = min(TILE, a.Nk - j0);
        __syncthreads(); /* the previous tile is no longer read (and sth/stw are written) */
        load_tile<G>(sk, kb, a.sk, j0, a.Nk, a.D);
        load_tile<G>(sv, vb, a.sv, j0, a.Nk, a.D);
        __syncthreads();
        for (int c0 = 0; c0 < nk; c0 += CHUNK) {
            float s[CHUNK], mx = m;
#pragma unroll
            for (int c = 0; c < CHUNK; c++) {
                const int t = c0 + c;
                if (t < nk) { /* uniform over the block */
                    float x = group_sum<G>(dot_tile<G>(q, sk, t, g)) * a.scale;
                    if (rel) {
                        const int j = j0 + t;
                        x += sth[(j / a.Wg) * R + r] + stw[(j % a.Wg) * R + r];
                    }
                    s[c] = x;
                } else {
                    s[c] = -INFINITY;
                }
                mx = fmaxf(mx, s[c]);
            }
            const float corr = __expf(m - mx); /* 0 on the first chunk (m = -inf) */
            l *= corr;
#pragma unroll
            for (int e = 0; e < DPT; e++) o[e] *= corr;
#pragma unroll
            for (int c = 0; c < CHUNK; c++) {
                const float p = __expf(s[c] - mx); /* 0 for keys past the end */
                l += p;
                axpy_tile<G>(o, p, sv, c0 + c, g);
            }
            m = mx;
        }
    }
    if (!valid) return;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *out = a.o + b * a.bo + (long long)i * a.so + h * a.D;
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            if (d < a.D) out[d] = o[4 * c + e] * inv;
        }
}

/* ---- backward, query side: grid as the forward ----
 * shared: K, V tiles, then (rel) sth [Hg][R], stw [Wg][R], sdth [Hg][R], sdtw [Wg][R] */
template <int G>
__global__ void __launch_bounds__(THREADS) attn_bwd_q_kernel(AttnArgs a, int qblocks) {
    extern __shared__ float4 smem[];
    const int R = blockDim.x / G, r = threadIdx.x / G, g = threadIdx.x % G;
    const int bh = blockIdx.x / qblocks, b = bh / a.H, h = bh % a.H;
    const int i = (blockIdx.x % qblocks) * R + r;
    const bool valid = i < a.Nq, rel = a.rel_h != nullptr;
    float4 *sk = smem, *sv = sk + TILE * 4 * G;
    float *sth = reinterpret_cast<float *>(sv + TILE * 4 * G);
    float *stw = sth + (rel ? a.Hg * R : 0), *sdth = stw + (rel ? a.Wg * R : 0);
    float *sdtw = sdth + (rel ? a.Hg * R : 0);
    const long long row = (long long)bh * a.Nq + i; /* index into the scratch */

    float q[DPT], go[DPT], dq[DPT];
    load_row<G>(q, valid ? a.q + b * a.bq + (long long)i * a.sq + h * a.D : nullptr, a.D, g);
    load_row<G>(go, valid ? a.dout + b * a.bo + (long long)i * a.so + h * a.D : nullptr, a.D, g);
    if (rel) {
        rel_tables<G>(sth, stw, q, a, i, valid, r, R, g, a.th + (long long)bh * a.Nq * a.Hg,
                      a.tw + (long long)bh * a.Nq * a.Wg);
        if (g == 0) {
            for (int ky = 0; ky < a.Hg; ky++) sdth[ky * R + r] = 0.0f;
            for (int kx = 0; kx < a.Wg; kx++) sdtw[kx * R + r] = 0.0f;
        }
    }
    const float *kb = a.k + b * a.bk + h * a.D, *vb = a.v + b * a.bv + h * a.D;

    /* pass 1: running max m, sum l, and t = sum exp(s - m) dout.v */
    float m = -INFINITY, l = 0.0f, t = 0.0f;
    for (int j0 = 0; j0 < a.Nk; j0 += TILE) {
        const int nk = min(TILE, a.Nk - j0);
        __syncthreads();
        load_tile<G>(sk, kb, a.sk, j0, a.Nk, a.D);
        load_tile<G>(sv, vb, a.sv, j0, a.Nk, a.D);
        __syncthreads();
        for (int c0 = 0; c0 < nk; c0 += CHUNK) {
            float s[CHUNK], dp[CHUNK], mx = m;
#pragma unroll
            for (int c = 0; c < CHUNK; c++) {
                const int tt = c0 + c;
                if (tt < nk) {
                    float x = group_sum<G>(dot_tile<G>(q, sk, tt, g)) * a.scale;
                    if (rel) {
                        const int j = j0 + tt;
                        x += sth[(j / a.Wg) * R + r] + stw[(j % a.Wg) * R + r];
                    }
                    s[c] = x;
                    dp[c] = group_sum<G>(dot_tile<G>(go, sv, tt, g));
                } else {
                    s[c] = -INFINITY;
                    dp[c] = 0.0f;
                }
                mx = fmaxf(mx, s[c]);
            }
            const float corr = __expf(m - mx);
            l *= corr;
            t *= corr;
#pragma unroll
            for (int c = 0; c < CHUNK; c++) {
                const float p = __expf(s[c] - mx);
                l += p;
                t += p * dp[c];
            }
            m = mx;
        }
    }
    const float lse = l > 0.0f ? m + logf(l) : INFINITY; /* INFINITY: p = 0 everywhere */
    const float delta = l > 0.0f ? t / l : 0.0f;
    if (valid && g == 0) {
        a.lse[row] = lse;
        a.delta[row] = delta;
    }

    /* pass 2: ds, and from it dq and the relative tables' sums */
#pragma unroll
    for (int e = 0; e < DPT; e++) dq[e] = 0.0f;
    for (int j0 = 0; j0 < a.Nk; j0 += TILE) {
        const int nk = min(TILE, a.Nk - j0);
        __syncthreads();
        load_tile<G>(sk, kb, a.sk, j0, a.Nk, a.D);
        load_tile<G>(sv, vb, a.sv, j0, a.Nk, a.D);
        __syncthreads();
        for (int tt = 0; tt < nk; tt++) {
            const int j = j0 + tt;
            float x = group_sum<G>(dot_tile<G>(q, sk, tt, g)) * a.scale;
            int ky = 0, kx = 0;
            if (rel) {
                ky = j / a.Wg;
                kx = j % a.Wg;
                x += sth[ky * R + r] + stw[kx * R + r];
            }
            const float dp = group_sum<G>(dot_tile<G>(go, sv, tt, g));
            const float ds = __expf(x - lse) * (dp - delta);
            axpy_tile<G>(dq, ds, sk, tt, g);
            if (rel && g == 0) { /* column r is this group's alone */
                sdth[ky * R + r] += ds;
                sdtw[kx * R + r] += ds;
            }
        }
    }
#pragma unroll
    for (int e = 0; e < DPT; e++) dq[e] *= a.scale;
    if (rel) {
        __syncwarp(); /* lane g = 0's sums, read by the whole group */
        if (valid) {
            const int qy = i / a.Wg, qx = i % a.Wg;
            for (int ky = 0; ky < a.Hg; ky++) {
                const float coef = sdth[ky * R + r];
                axpy_row<G>(dq, coef, a.rel_h + (long long)(qy - ky + a.Hg - 1) * a.D, a.D, g);
                if (a.dth && g == 0) a.dth[row * a.Hg + ky] = coef;
            }
            for (int kx = 0; kx < a.Wg; kx++) {
                const float coef = sdtw[kx * R + r];
                axpy_row<G>(dq, coef, a.rel_w + (long long)(qx - kx + a.Wg - 1) * a.D, a.D, g);
                if (a.dtw && g == 0) a.dtw[row * a.Wg + kx] = coef;
            }
        }
    }
    if (!valid || !a.dq) return;
    float *out = a.dq + b * a.bq + (long long)i * a.sq + h * a.D;
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            if (d < a.D) out[d] += dq[4 * c + e];
        }
}

/* ---- backward, key side: grid (key blocks x B*H), R keys per block ----
 * shared: Q and dout tiles [TILE][16 G], lse and delta [TILE], then (rel)
 * Th rows [TILE][Hg] and Tw rows [TILE][Wg] of the tile's queries */
template <int G>
__global__ void __launch_bounds__(THREADS) attn_bwd_kv_kernel(AttnArgs a, int kblocks) {
    extern __shared__ float4 smem[];
    const int R = blockDim.x / G, r = threadIdx.x / G, g = threadIdx.x % G;
    const int bh = blockIdx.x / kblocks, b = bh / a.H, h = bh % a.H;
    const int j = (blockIdx.x % kblocks) * R + r;
    const bool valid = j < a.Nk, rel = a.rel_h != nullptr;
    float4 *sq = smem, *sdo = sq + TILE * 4 * G;
    float *slse = reinterpret_cast<float *>(sdo + TILE * 4 * G), *sdelta = slse + TILE;
    float *sth = sdelta + TILE, *stw = sth + (rel ? TILE * a.Hg : 0);

    float k[DPT], v[DPT], dk[DPT], dv[DPT];
    load_row<G>(k, valid ? a.k + b * a.bk + (long long)j * a.sk + h * a.D : nullptr, a.D, g);
    load_row<G>(v, valid ? a.v + b * a.bv + (long long)j * a.sv + h * a.D : nullptr, a.D, g);
#pragma unroll
    for (int e = 0; e < DPT; e++) dk[e] = dv[e] = 0.0f;
    const int ky = rel && valid ? j / a.Wg : 0, kx = rel && valid ? j % a.Wg : 0;
    const float *qb = a.q + b * a.bq + h * a.D, *dob = a.dout + b * a.bo + h * a.D;
    const float *lse = a.lse + (long long)bh * a.Nq, *delta = a.delta + (long long)bh * a.Nq;

    for (int i0 = 0; i0 < a.Nq; i0 += TILE) {
        const int nq = min(TILE, a.Nq - i0);
        __syncthreads();
        load_tile<G>(sq, qb, a.sq, i0, a.Nq, a.D);
        load_tile<G>(sdo, dob, a.so, i0, a.Nq, a.D);
        for (int x = threadIdx.x; x < TILE; x += blockDim.x) {
            slse[x] = x < nq ? lse[i0 + x] : INFINITY;
            sdelta[x] = x < nq ? delta[i0 + x] : 0.0f;
        }
        if (rel) {
            const float *th = a.th + ((long long)bh * a.Nq + i0) * a.Hg;
            const float *tw = a.tw + ((long long)bh * a.Nq + i0) * a.Wg;
            for (int x = threadIdx.x; x < nq * a.Hg; x += blockDim.x) sth[x] = th[x];
            for (int x = threadIdx.x; x < nq * a.Wg; x += blockDim.x) stw[x] = tw[x];
        }
        __syncthreads();
        for (int t = 0; t < nq; t++) {
            float s = group_sum<G>(dot_tile<G>(k, sq, t, g)) * a.scale;
            if (rel) s += sth[t * a.Hg + ky] + stw[t * a.Wg + kx];
            const float p = __expf(s - slse[t]);
            const float dp = group_sum<G>(dot_tile<G>(v, sdo, t, g));
            const float ds = p * (dp - sdelta[t]);
            axpy_tile<G>(dv, p, sdo, t, g);
            axpy_tile<G>(dk, ds, sq, t, g);
        }
    }
    if (!valid) return;
    float *gk = a.dk ? a.dk + b * a.bk + (long long)j * a.sk + h * a.D : nullptr;
    float *gv = a.dv ? a.dv + b * a.bv + (long long)j * a.sv + h * a.D : nullptr;
#pragma unroll
    for (int c = 0; c < 4; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (g + G * c) + e;
            if (d < a.D) {
                if (gk) gk[d] += a.scale * dk[4 * c + e];
                if (gv) gv[d] += dv[4 * c + e];
            }
        }
}

/* ---- the relative tables' gradients ----
 * part[slice][r][d] = sum over rows p = bh * N + i of this slice with
 * kk = coord(i) + T - 1 - r in [0, T) of dT[p][kk] q[p][d]; grid (2T-1, slices),
 * one thread per dim. coord is qy (axis 0, T = Hg) or qx (axis 1, T = Wg). */
__global__ void relpos_table_grad_kernel(float *part, const float *dT, AttnArgs a, int T, int axis,
                                         long long rows_per_slice) {
    const int r = blockIdx.x, RT = 2 * T - 1, d = threadIdx.x, N = a.Nq;
    const long long P = (long long)a.B * a.H * N;
    const long long p0 = blockIdx.y * rows_per_slice, p1 = min(P, p0 + rows_per_slice);
    float acc = 0.0f;
    for (long long p = p0; p < p1; p++) {
        const int bh = (int)(p / N), i = (int)(p % N);
        const int coord = axis ? i % a.Wg : i / a.Wg;
        const int kk = coord + T - 1 - r;
        if (kk < 0 || kk >= T) continue; /* uniform over the block */
        if (d < a.D) {
            const int b = bh / a.H, h = bh % a.H;
            acc += dT[p * T + kk] * a.q[b * a.bq + (long long)i * a.sq + h * a.D + d];
        }
    }
    if (d < a.D) part[((long long)blockIdx.y * RT + r) * a.D + d] = acc;
}

/* drel[n] += sum over slices of part[slice][n], in slice order */
__global__ void sum_slices_kernel(float *drel, const float *part, int n, int slices) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    if (x >= n) return;
    float acc = 0.0f;
    for (int s = 0; s < slices; s++) acc += part[(long long)s * n + x];
    drel[x] += acc;
}

/* ---- host side ---- */

int checked(size_t n, const char *what) {
    if (n > 0x7fffffff) fs_cu_die(what, "size too large");
    return (int)n;
}

int group_for(size_t D, const char *what) {
    if (D <= 16) return 1;
    if (D <= 32) return 2;
    if (D <= 64) return 4;
    if (D <= 128) return 8;
    if (D <= 256) return 16;
    fs_cu_die(what, "head dim above 256 is not supported");
}

/* Threads per block for a kernel with `fixed` bytes of shared memory plus
 * `per_row` bytes per row (R = threads / G rows): THREADS, halved until it
 * fits the device's opt-in limit. Sets the kernel's limit when above 48 KiB. */
template <typename K>
int block_for(K kernel, int G, size_t fixed, size_t per_row, size_t *smem, const char *what) {
    static int limit = -1;
    if (limit < 0) {
        int dev = 0;
        fs_cu_check(cudaGetDevice(&dev), what);
        fs_cu_check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), what);
    }
    for (int threads = THREADS; threads >= 32 && threads >= G; threads /= 2) {
        size_t bytes = fixed + per_row * (size_t)(threads / G);
        if (bytes <= (size_t)limit) {
            if (bytes > 48 * 1024)
                fs_cu_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                            what);
            *smem = bytes;
            return threads;
        }
    }
    fs_cu_die(what, "the relative-position tables do not fit in shared memory (grid too large)");
}

/* The grid of a kernel whose blocks own threads / G rows each of n rows, for
 * every one of the B*H heads; *per_head is the number of blocks per head. */
unsigned grid_for(int threads, int G, int n, const AttnArgs &a, int *per_head, const char *what) {
    int R = threads / G;
    *per_head = (n + R - 1) / R;
    long long blocks = (long long)*per_head * a.B * a.H;
    if (blocks > 0x7fffffff) fs_cu_die(what, "too many blocks");
    return (unsigned)blocks;
}

template <int G>
void launch_fwd(const AttnArgs &a, const char *what) {
    const bool rel = a.rel_h != nullptr;
    size_t smem;
    int threads = block_for(attn_fwd_kernel<G>, G, 2 * TILE * DPT * G * sizeof(float),
                            rel ? (size_t)(a.Hg + a.Wg) * sizeof(float) : 0, &smem, what);
    int qblocks;
    unsigned blocks = grid_for(threads, G, a.Nq, a, &qblocks, what);
    attn_fwd_kernel<G><<<blocks, threads, smem, fs_cu_stream()>>>(a, qblocks);
    fs_cu_launched(what);
}

template <int G>
void launch_bwd(const AttnArgs &a, const char *what) {
    const bool rel = a.rel_h != nullptr;
    size_t smem;
    int threads = block_for(attn_bwd_q_kernel<G>, G, 2 * TILE * DPT * G * sizeof(float),
                            rel ? 2 * (size_t)(a.Hg + a.Wg) * sizeof(float) : 0, &smem, what);
    int qblocks;
    unsigned blocks = grid_for(threads, G, a.Nq, a, &qblocks, what);
    attn_bwd_q_kernel<G><<<blocks, threads, smem, fs_cu_stream()>>>(a, qblocks);
    fs_cu_launched(what);
    if (!a.dk && !a.dv) return;
    size_t fixed = (2 * TILE * DPT * G + 2 * TILE + (rel ? (size_t)TILE * (a.Hg + a.Wg) : 0)) * sizeof(float);
    threads = block_for(attn_bwd_kv_kernel<G>, G, fixed, 0, &smem, what);
    int kblocks;
    blocks = grid_for(threads, G, a.Nk, a, &kblocks, what);
    attn_bwd_kv_kernel<G><<<blocks, threads, smem, fs_cu_stream()>>>(a, kblocks);
    fs_cu_launched(what);
}

void dispatch(const AttnArgs &a, bool backward, const char *what) {
    switch (group_for((size_t)a.D, what)) {
    case 1: backward ? launch_bwd<1>(a, what) : launch_fwd<1>(a, what); break;
    case 2: backward ? launch_bwd<2>(a, what) : launch_fwd<2>(a, what); break;
    case 4: backward ? launch_bwd<4>(a, what) : launch_fwd<4>(a, what); break;
    case 8: backward ? launch_bwd<8>(a, what) : launch_fwd<8>(a, what); break;
    default: backward ? launch_bwd<16>(a, what) : launch_fwd<16>(a, what); break;
    }
}

/* drel [2T-1, D] += the table gradient of axis (0: rel_h, 1: rel_w) */
void table_grad(float *drel, float *part, const float *dT, const AttnArgs &a, int T, int axis, const char *what,
                int slices) {
    long long P = (long long)a.B * a.H * a.Nq;
    long long per = (P + slices - 1) / slices;
    int RT = 2 * T - 1, threads = (a.D + 31) / 32 * 32;
    relpos_table_grad_kernel<<<dim3((unsigned)RT, (unsigned)slices), threads, 0, fs_cu_stream()>>>(part, dT, a, T,
                                                                                                   axis, per);
    fs_cu_launched(what);
    int n = RT * a.D;
    sum_slices_kernel<<<(unsigned)((n + 255) / 256), 256, 0, fs_cu_stream()>>>(drel, part, n, slices);
    fs_cu_launched(what);
}

/* Scratch of the backward: lse, delta [BH*Nq]; th, tw; dth, dtw; parts. */
void run_backward(AttnArgs a, float *drel_h, float *drel_w, const char *what) {
    const bool rel = a.rel_h != nullptr, tables = rel && (drel_h || drel_w);
    const size_t rows = (size_t)a.B * a.H * a.Nq;
    const size_t hw = rel ? (size_t)a.Hg + a.Wg : 0;
    int slices = 1;
    if (tables) { /* about 256 rows a slice, at most 64 slices */
        long long s = ((long long)rows + 255) / 256;
        slices = (int)(s < 1 ? 1 : s > 64 ? 64 : s);
    }
    size_t parts = tables ? (size_t)slices * (2 * (size_t)a.Hg - 1 + 2 * (size_t)a.Wg - 1) * a.D : 0;
    float *s = fs_cu_scratch(2 * rows + rows * hw * (tables ? 2 : 1) + parts, what);
    a.lse = s;
    a.delta = s + rows;
    a.th = rel ? a.delta + rows : nullptr;
    a.tw = rel ? a.th + rows * a.Hg : nullptr;
    a.dth = tables ? a.tw + rows * a.Wg : nullptr;
    a.dtw = tables ? a.dth + rows * a.Hg : nullptr;
    float *part = tables ? a.dtw + rows * a.Wg : nullptr;
    dispatch(a, true, what);
    if (drel_h) table_grad(drel_h, part, a.dth, a, a.Hg, 0, what, slices);
    if (drel_w) {
        /* the slice partials of rel_h are summed already (stream order) */
        table_grad(drel_w, part, a.dtw, a, a.Wg, 1, what, slices);
    }
}

} /* namespace */

/* q[B, Nq, H*D], k/v[B, Nk, H*D], rows H*D apart (dout and the gradients alike) */
static AttnArgs plain_args(const float *q, const float *k, const float *v, size_t B, size_t Nq, size_t Nk, size_t H,
                           size_t D, float scale, const char *what) {
    long long C = (long long)(H * D);
    AttnArgs a = {};
    a.q = q, a.k = k, a.v = v;
    a.sq = a.sk = a.sv = a.so = C;
    a.bq = a.bo = (long long)Nq * C;
    a.bk = a.bv = (long long)Nk * C;
    a.B = checked(B, what), a.H = checked(H, what), a.Nq = checked(Nq, what), a.Nk = checked(Nk, what);
    a.D = checked(D, what), a.scale = scale;
    return a;
}

/* q[B, Nq, H*D], k/v[B, Nk, H*D] -> out[B, Nq, H*D] */
void fs_cuda_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                               size_t Nk, size_t H, size_t D, float scale) {
    const char *what = "attention_forward";
    if (!B || !Nq || !H || !D) return;
    if (!Nk) { /* an empty softmax: the reference gives zeros */
        fs_cu_check(cudaMemsetAsync(out, 0, B * Nq * H * D * sizeof(float), fs_cu_stream()), what);
        return;
    }
    AttnArgs a = plain_args(q, k, v, B, Nq, Nk, H, D, scale, what);
    a.o = out;
    dispatch(a, false, what);
}

void fs_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale) {
    const char *what = "attention_backward";
    if (!B || !Nq || !Nk || !H || !D || (!dq && !dk && !dv)) return;
    AttnArgs a = plain_args(q, k, v, B, Nq, Nk, H, D, scale, what);
    a.dout = dout;
    a.dq = dq, a.dk = dk, a.dv = dv;
    run_backward(a, nullptr, nullptr, what);
}

/* qkv[B, N, 3, H, D] -> out[B, N, H*D], N = Hg*Wg */
static AttnArgs relpos_args(const float *qkv, const float *rel_h, const float *rel_w, size_t B, size_t Hg, size_t Wg,
                            size_t H, size_t D, float scale, const char *what) {
    long long C = (long long)(H * D), N = (long long)(Hg * Wg);
    AttnArgs a = {};
    a.q = qkv, a.k = qkv + C, a.v = qkv + 2 * C;
    a.sq = a.sk = a.sv = 3 * C;
    a.bq = a.bk = a.bv = N * 3 * C;
    a.so = C, a.bo = N * C;
    a.B = checked(B, what), a.H = checked(H, what), a.Nq = a.Nk = checked((size_t)N, what);
    a.D = checked(D, what), a.scale = scale;
    if (rel_h && rel_w) {
        a.rel_h = rel_h, a.rel_w = rel_w;
        a.Hg = checked(Hg, what), a.Wg = checked(Wg, what);
    }
    return a;
}

void fs_cuda_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                      size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    const char *what = "attention_relpos_forward";
    if (!B || !Hg || !Wg || !H || !D) return;
    AttnArgs a = relpos_args(qkv, rel_h, rel_w, B, Hg, Wg, H, D, scale, what);
    a.o = out;
    dispatch(a, false, what);
}

void fs_cuda_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout,
                                       const float *qkv, const float *rel_h, const float *rel_w, size_t B, size_t Hg,
                                       size_t Wg, size_t H, size_t D, float scale) {
    const char *what = "attention_relpos_backward";
    if (!B || !Hg || !Wg || !H || !D) return;
    if (!rel_h || !rel_w) drel_h = drel_w = nullptr; /* no tables: nothing to differentiate */
    if (!dqkv && !drel_h && !drel_w) return;
    AttnArgs a = relpos_args(qkv, rel_h, rel_w, B, Hg, Wg, H, D, scale, what);
    a.dout = dout;
    if (dqkv) {
        long long C = (long long)(H * D);
        a.dq = dqkv, a.dk = dqkv + C, a.dv = dqkv + 2 * C;
    }
    run_backward(a, drel_h, drel_w, what);
}
