/* The CUDA backend's memory entries, the tensor glue between layers and the
 * AdamW step (nn/nn.h), computing what common/nn/ref/tensor.c computes:
 *   - copies, the partition/crop kernels, add, scale, add_rows, add_cols and
 *     take_cols round exactly as the host loops (products are kept out of
 *     fused multiply-adds where the host rounds twice), so they match the
 *     reference bit for bit;
 *   - sum_rows adds the rows of each column in row order, one thread per
 *     column, the reference's order: bitwise equal too, and deterministic;
 *   - adamw_update does the reference's double arithmetic operation by
 *     operation (round-to-nearest intrinsics, no contraction);
 *   - sumsq is a two-stage reduction in double with a fixed shape for a
 *     given n: the same result run to run, within rounding of the host's
 *     sequential sum.
 * The row kernels run a 2-D grid-stride loop, columns across the threads
 * of a block and rows across blocks, so that neither a few long rows nor
 * many short ones leave the GPU idle; indices are size_t throughout. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

extern "C" {
#include "core/error.h"
}

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* r over rows (grid y, block y), j over columns (grid x, block x) */
#define ROWS_STRIDE(r, rows, j, cols)                                                                \
    for (size_t r = blockIdx.y * (size_t)blockDim.y + threadIdx.y; r < (rows);                      \
         r += (size_t)gridDim.y * blockDim.y)                                                        \
        for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < (cols);                  \
             j += (size_t)gridDim.x * blockDim.x)

namespace {

struct launch2d {
    dim3 grid, block;
};

/* 256 threads a block: as many of them across the columns as the columns
 * use (a multiple of 32), the rest across rows. */
launch2d rows_launch(size_t rows, size_t cols) {
    unsigned bx = 32;
    while (bx < 256 && bx < cols) bx *= 2;
    unsigned by = 256 / bx;
    size_t gx = (cols + bx - 1) / bx, gy = (rows + by - 1) / by;
    if (gx > 65535u * 8u) gx = 65535u * 8u;
    if (gy > 65535u) gy = 65535u;
    launch2d l;
    l.grid = dim3((unsigned)gx, (unsigned)gy);
    l.block = dim3(bx, by);
    return l;
}

/* ---- memory ---- */

void die_fs(const char *what) { fs_cu_die(what, fs_error_msg()); }

/* 1 when [a, a+na) and [b, b+nb) share a byte */
bool overlaps(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + nb && y < x + na;
}

}  // namespace

void *fs_cuda_ops_alloc(size_t bytes) {
    void *p = fs_cuda_alloc(bytes);
    if (!p) return NULL;
    if (fs_cuda_memset(p, 0, bytes) != FS_OK) {
        fs_cuda_free(p);
        return NULL;
    }
    return p;
}

void fs_cuda_ops_upload(void *dst, const void *src, size_t bytes) {
    if (bytes && fs_cuda_to_device(dst, src, bytes) != FS_OK) die_fs("upload");
}

void fs_cuda_ops_download(void *dst, const void *src, size_t bytes) {
    if (bytes && fs_cuda_to_host(dst, src, bytes) != FS_OK) die_fs("download");
}

/* Queued on the stream like a kernel. Overlapping ranges (the host
 * backends' memmove allows them; cudaMemcpy does not) go through scratch. */
void fs_cuda_ops_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    cudaStream_t s = fs_cu_stream();
    if (overlaps(dst, bytes, src, bytes)) {
        void *tmp = fs_cu_scratch((bytes + sizeof(float) - 1) / sizeof(float), "copy");
        fs_cu_check(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, s), "copy");
        src = tmp;
    }
    fs_cu_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "copy");
    fs_cu_launched("copy");
}

void fs_cuda_ops_zero(void *p, size_t bytes) {
    if (!bytes) return;
    if (fs_cuda_memset(p, 0, bytes) != FS_OK) die_fs("zero");
    fs_cu_launched("zero");
}

/* ---- elementwise ---- */

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float *x, float f, size_t n) {
    GRID_STRIDE(i, n) x[i] *= f;
}

void fs_cuda_add(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    add_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(out, a, b, n);
    fs_cu_launched("add");
}

void fs_cuda_scale(float *x, float f, size_t n) {
    if (!n) return;
    scale_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(x, f, n);
    fs_cu_launched("scale");
}

/* ---- rows and columns ---- */

__global__ void add_rows_kernel(float *x, const float *row, size_t M, size_t N) {
    ROWS_STRIDE(m, M, j, N) x[m * N + j] += row[j];
}

/* one thread per column, rows in order (the reference's order) */
__global__ void sum_rows_kernel(float *drow, const float *dx, size_t M, size_t N) {
    GRID_STRIDE(j, N) {
        float s = drow[j];
        const float *p = dx + j;
#pragma unroll 8
        for (size_t m = 0; m < M; m++) s += p[m * N];
        drow[j] = s;
    }
}

/* __fmul_rn keeps the product out of a fused multiply-add: the host rounds it first */
__global__ void add_cols_kernel(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N) {
    ROWS_STRIDE(m, M, j, N) out[m * ldo + off + j] += __fmul_rn(f, in[m * N + j]);
}

__global__ void take_cols_kernel(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N) {
    ROWS_STRIDE(m, M, j, N) out[m * N + j] = f * in[m * ldi + off + j];
}

void fs_cuda_add_rows(float *x, const float *row, size_t M, size_t N) {
    if (!M || !N) return;
    launch2d l = rows_launch(M, N);
    add_rows_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(x, row, M, N);
    fs_cu_launched("add_rows");
}

void fs_cuda_sum_rows(float *drow, const float *dx, size_t M, size_t N) {
    if (!M || !N) return;
    /* 128 threads a block: more blocks when the columns are few */
    sum_rows_kernel<<<fs_cu_blocks(N, 128), 128, 0, fs_cu_stream()>>>(drow, dx, M, N);
    fs_cu_launched("sum_rows");
}

void fs_cuda_add_cols(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N) {
    if (!M || !N) return;
    launch2d l = rows_launch(M, N);
    add_cols_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(out, ldo, off, in, f, M, N);
    fs_cu_launched("add_cols");
}

void fs_cuda_take_cols(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N) {
    if (!M || !N) return;
    launch2d l = rows_launch(M, N);
    take_cols_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(out, in, ldi, off, f, M, N);
    fs_cu_launched("take_cols");
}

/* ---- windows and crops: one row per token (or image row), C columns ---- */

/* win[B, nw, nw, ws, ws, C] from x[B, g, g, C], zero past the grid */
__global__ void window_partition_kernel(float *win, const float *x, size_t B, size_t g, size_t ws, size_t nw,
                                        size_t C) {
    size_t tokens = B * nw * nw * ws * ws;
    ROWS_STRIDE(t, tokens, c, C) {
        size_t r = t, ix = r % ws;
        r /= ws;
        size_t iy = r % ws;
        r /= ws;
        size_t wx = r % nw;
        r /= nw;
        size_t wy = r % nw, b = r / nw;
        size_t y = wy * ws + iy, xx = wx * ws + ix;
        win[t * C + c] = y < g && xx < g ? x[((b * g + y) * g + xx) * C + c] : 0.0f;
    }
}

/* x[B, g, g, C] = (or +=) the matching window token */
__global__ void window_unpartition_kernel(float *x, const float *win, size_t B, size_t g, size_t ws, size_t nw,
                                          size_t C, int acc) {
    size_t tokens = B * g * g;
    ROWS_STRIDE(t, tokens, c, C) {
        size_t xx = t % g, r = t / g;
        size_t y = r % g, b = r / g;
        size_t wy = y / ws, wx = xx / ws, iy = y % ws, ix = xx % ws;
        float v = win[((((b * nw + wy) * nw + wx) * ws + iy) * ws + ix) * C + c];
        if (acc) x[t * C + c] += v;
        else x[t * C + c] = v;
    }
}

__global__ void crop_kernel(float *out, const float *x, size_t w, size_t ho, size_t wo) {
    ROWS_STRIDE(y, ho, j, wo) out[y * wo + j] = x[y * w + j];
}

void fs_cuda_window_partition(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C) {
    if (!B || !g || !ws || !C) return;
    size_t nw = (g + ws - 1) / ws;
    launch2d l = rows_launch(B * nw * nw * ws * ws, C);
    window_partition_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(win, x, B, g, ws, nw, C);
    fs_cu_launched("window_partition");
}

void fs_cuda_window_unpartition(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc) {
    if (!B || !g || !ws || !C) return;
    size_t nw = (g + ws - 1) / ws;
    launch2d l = rows_launch(B * g * g, C);
    window_unpartition_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(x, win, B, g, ws, nw, C, acc);
    fs_cu_launched("window_unpartition");
}

/* In place (out == x, as the host's row-by-row memmove allows) the rows
 * would race: crop into scratch and copy back. */
void fs_cuda_crop(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo) {
    if (!ho || !wo) return;
    size_t n = ho * wo;
    float *dst = out;
    if (overlaps(out, n * sizeof(float), x, ((ho - 1) * w + wo) * sizeof(float))) {
        if (out == x && wo == w) return; /* nothing moves */
        dst = fs_cu_scratch(n, "crop");
    }
    launch2d l = rows_launch(ho, wo);
    crop_kernel<<<l.grid, l.block, 0, fs_cu_stream()>>>(dst, x, w, ho, wo);
    fs_cu_launched("crop");
    if (dst != out) {
        fs_cu_check(cudaMemcpyAsync(out, dst, n * sizeof(float), cudaMemcpyDeviceToDevice, fs_cu_stream()), "crop");
        fs_cu_launched("crop");
    }
}

/* ---- optimiser ---- */

/* The reference's expression, each operation rounded as the host rounds it:
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
 * p = p decay - step m / (sqrt(v) / sbc2 + eps). */
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, double b1, double c1, double b2,
                             double c2, double eps, double step, double sbc2, double decay) {
    GRID_STRIDE(i, n) {
        double gi = g[i];
        double mi = __dadd_rn(__dmul_rn(b1, (double)m[i]), __dmul_rn(c1, gi));
        double vi = __dadd_rn(__dmul_rn(b2, (double)v[i]), __dmul_rn(__dmul_rn(c2, gi), gi));
        m[i] = (float)mi;
        v[i] = (float)vi;
        double pi = __dmul_rn((double)p[i], decay);
        double den = __dadd_rn(__ddiv_rn(__dsqrt_rn(vi), sbc2), eps);
        p[i] = (float)__dsub_rn(pi, __ddiv_rn(__dmul_rn(step, mi), den));
    }
}

void fs_cuda_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t) {
    if (!n) return;
    double lr = hyper[0], b1 = hyper[1], b2 = hyper[2], eps = hyper[3], wd = hyper[4];
    /* the step's scalars on the host, as the reference computes them */
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    double step = lr / bc1, sbc2 = sqrt(bc2), decay = 1.0 - lr * wd;
    adamw_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(p, g, m, v, n, b1, 1.0 - b1, b2, 1.0 - b2, eps,
                                                                  step, sbc2, decay);
    fs_cu_launched("adamw_update");
}

enum { SUMSQ_THREADS = 256, SUMSQ_MAX_BLOCKS = 1024 };

/* Tree sum of the block's values in shared memory, in a fixed order; the
 * total ends in s[0]. */
__device__ void block_sum(double *s) {
    for (unsigned k = SUMSQ_THREADS / 2; k > 0; k >>= 1) {
        __syncthreads();
        if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
    }
    __syncthreads();
}

/* part[block] = sum of x[i]^2 over the block's grid-stride share */
__global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    __shared__ double s[SUMSQ_THREADS];
    double a = 0.0;
    GRID_STRIDE(i, n) {
        double xi = x[i];
        a += xi * xi; /* exact product (48 bits): a fused add rounds the same */
    }
    s[threadIdx.x] = a;
    block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

/* one block: out[0] = sum of part[nparts] */
__global__ void sumsq_final_kernel(double *out, const double *part, unsigned nparts) {
    __shared__ double s[SUMSQ_THREADS];
    double a = 0.0;
    for (unsigned i = threadIdx.x; i < nparts; i += SUMSQ_THREADS) a += part[i];
    s[threadIdx.x] = a;
    block_sum(s);
    if (threadIdx.x == 0) out[0] = s[0];
}

double fs_cuda_sumsq(const float *x, size_t n) {
    if (!n) return 0.0;
    unsigned blocks = fs_cu_blocks(n, SUMSQ_THREADS);
    if (blocks > SUMSQ_MAX_BLOCKS) blocks = SUMSQ_MAX_BLOCKS;
    /* doubles carved from the float scratch (cudaMalloc aligns it) */
    double *part = (double *)fs_cu_scratch(2 * ((size_t)blocks + 1), "sumsq");
    double *total = part + blocks;
    cudaStream_t s = fs_cu_stream();
    sumsq_partial_kernel<<<blocks, SUMSQ_THREADS, 0, s>>>(part, x, n);
    fs_cu_launched("sumsq");
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, s>>>(total, part, blocks);
    fs_cu_launched("sumsq");
    double r = 0.0;
    fs_cu_check(cudaMemcpyAsync(&r, total, sizeof r, cudaMemcpyDeviceToHost, s), "sumsq");
    fs_cu_check(cudaStreamSynchronize(s), "sumsq");
    return r;
}
