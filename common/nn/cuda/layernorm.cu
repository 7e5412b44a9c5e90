/* LayerNorm over the last axis, one warp per row, fp32 accumulation.
 * The backward's dw and db are column sums over the rows: each block sums a
 * slice of rows into a partial row, and a second kernel adds the partials in
 * a fixed order (deterministic, no atomics). */
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* The row's mean and 1/sqrt(var + eps) (biased variance, two passes). */
__device__ __forceinline__ void row_stats(const float *x, int C, int lane, float eps, float *mean, float *rstd) {
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    float mu = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = x[c] - mu;
        v += d * d;
    }
    v = warp_sum(v) / (float)C;
    *mean = mu;
    *rstd = 1.0f / sqrtf(v + eps);
}

/* out[M, C] = (inp - mean) * rstd * w + b */
__global__ void ln_fwd_kernel(float *out, const float *inp, const float *w, const float *b, int M, int C,
                              float eps) {
    int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (row >= M) return; /* whole warps leave together */
    const float *x = inp + (size_t)row * C;
    float *y = out + (size_t)row * C;
    float mean, rstd;
    row_stats(x, C, lane, eps, &mean, &rstd);
    for (int c = lane; c < C; c += 32) y[c] = (x[c] - mean) * rstd * w[c] + b[c];
}

/* Per row: dinp += rstd * (g - mean(g) - xhat * mean(g xhat)) with
 * g = dout * w; the row's mean and rstd go to stats[2 row], [2 row + 1]
 * for the parameter kernel when it runs. */
__global__ void ln_bwd_rows_kernel(float *dinp, float *stats, const float *dout, const float *inp, const float *w,
                                   int M, int C, float eps) {
    int row = (int)((blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (row >= M) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float mean, rstd;
    row_stats(x, C, lane, eps, &mean, &rstd);
    if (stats && lane == 0) {
        stats[2 * (size_t)row] = mean;
        stats[2 * (size_t)row + 1] = rstd;
    }
    if (!dinp) return;
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = dy[c] * w[c];
        sg += g;
        sgx += g * (x[c] - mean) * rstd;
    }
    float mg = warp_sum(sg) / (float)C, mgx = warp_sum(sgx) / (float)C;
    float *dx = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float xhat = (x[c] - mean) * rstd;
        dx[c] += rstd * (dy[c] * w[c] - mg - xhat * mgx);
    }
}

/* Block (32, 8) over 32 columns and slice blockIdx.y of the rows:
 * part_w[slice, c] = sum dout * xhat, part_b[slice, c] = sum dout. */
__global__ void ln_bwd_params_kernel(float *part_w, float *part_b, const float *dout, const float *inp,
                                     const float *stats, int M, int C, int rows_per_slice) {
    __shared__ float sw[8][33], sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows_per_slice, r1 = min(M, r0 + rows_per_slice);
    float aw = 0.0f, ab = 0.0f;
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float g = dout[(size_t)r * C + c];
            float xhat = (inp[(size_t)r * C + c] - stats[2 * (size_t)r]) * stats[2 * (size_t)r + 1];
            aw += g * xhat;
            ab += g;
        }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int k = 1; k < 8; k++) {
            aw += sw[k][threadIdx.x];
            ab += sb[k][threadIdx.x];
        }
        part_w[(size_t)blockIdx.y * C + c] = aw;
        part_b[(size_t)blockIdx.y * C + c] = ab;
    }
}

/* dw[c] += sum over slices of part_w[., c] (likewise db), in slice order */
__global__ void ln_bwd_reduce_kernel(float *dw, float *db, const float *part_w, const float *part_b, int C,
                                     int slices) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int s = 0; s < slices; s++) {
        aw += part_w[(size_t)s * C + c];
        ab += part_b[(size_t)s * C + c];
    }
    if (dw) dw[c] += aw;
    if (db) db[c] += ab;
}

static int checked_int(size_t n, const char *what) {
    if (n > 0x7fffffff) fs_cu_die(what, "size too large");
    return (int)n;
}

void fs_cuda_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                               float eps) {
    if (!M || !C) return;
    int m = checked_int(M, "layernorm_forward"), c = checked_int(C, "layernorm_forward");
    unsigned blocks = (unsigned)((M + 7) / 8); /* 8 warps (rows) per block */
    ln_fwd_kernel<<<blocks, 256, 0, fs_cu_stream()>>>(out, inp, w, b, m, c, eps);
    fs_cu_launched("layernorm_forward");
}

void fs_cuda_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                                size_t M, size_t C, float eps) {
    if (!M || !C || (!dinp && !dw && !db)) return;
    int m = checked_int(M, "layernorm_backward"), c = checked_int(C, "layernorm_backward");
    int params = dw || db;
    /* about 32 rows per slice, at most 256 slices */
    int slices = (int)((M + 31) / 32);
    if (slices > 256) slices = 256;
    int rows_per_slice = (m + slices - 1) / slices;
    slices = (m + rows_per_slice - 1) / rows_per_slice;
    float *stats = NULL, *part_w = NULL, *part_b = NULL;
    if (params) {
        stats = fs_cu_scratch(2 * M + 2 * (size_t)slices * C, "layernorm_backward");
        part_w = stats + 2 * M;
        part_b = part_w + (size_t)slices * C;
    }
    unsigned blocks = (unsigned)((M + 7) / 8);
    ln_bwd_rows_kernel<<<blocks, 256, 0, fs_cu_stream()>>>(dinp, stats, dout, inp, w, m, c, eps);
    fs_cu_launched("layernorm_backward (rows)");
    if (!params) return;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)slices), block(32, 8);
    ln_bwd_params_kernel<<<grid, block, 0, fs_cu_stream()>>>(part_w, part_b, dout, inp, stats, m, c, rows_per_slice);
    fs_cu_launched("layernorm_backward (dw, db)");
    ln_bwd_reduce_kernel<<<(unsigned)((C + 255) / 256), 256, 0, fs_cu_stream()>>>(dw, db, part_w, part_b, c,
                                                                                  slices);
    fs_cu_launched("layernorm_backward (reduce)");
}
