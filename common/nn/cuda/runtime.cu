/* The CUDA backend's runtime: device detection, the process's streams and
 * cuBLAS handles, error reporting, device memory helpers, the scratch buffer
 * and the cuBLAS wrappers. */
#include <unordered_map>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"

extern "C" {
#include "core/error.h"
}

static int g_available = -1;
static cudaStream_t g_stream;
static cublasHandle_t g_blas;
/* The side stream: products that need not wait for the main stream's next
 * kernels (weight gradients) run there, overlapping them. */
static cudaStream_t g_side;
static cublasHandle_t g_side_blas;
static cudaEvent_t g_fork, g_join;
static int g_streams = 1; /* FEWSAM_CUDA_STREAMS=0 turns the side stream off */
static int g_side_open;
static cublasLtHandle_t g_lt;
static int g_use_lt = 1; /* FEWSAM_CUDA_LT=0 turns the fused-bias products off */
static void *g_lt_ws;
static const size_t LT_WORKSPACE = (size_t)32 << 20; /* NVIDIA's advice for Hopper */
static int g_sync_each = -1; /* FEWSAM_CUDA_SYNC=1 */
static float *g_scratch;
static size_t g_scratch_n;
static float *g_ones;
static size_t g_ones_n;

enum { MATH_FP32, MATH_TF32, MATH_BF16 };
static int g_math = MATH_FP32;

/* Device bytes held through fs_cuda_alloc and the kernels' scratch, for the
 * benchmarks' peak-memory figures (cudaFree does not say how much it freed). */
static std::unordered_map<void *, size_t> g_sizes;
static size_t g_in_use, g_peak;

static void account(void *p, size_t bytes) {
    g_sizes[p] = bytes;
    g_in_use += bytes;
    if (g_in_use > g_peak) g_peak = g_in_use;
}

static void unaccount(void *p) {
    auto it = g_sizes.find(p);
    if (it == g_sizes.end()) return;
    g_in_use -= it->second;
    g_sizes.erase(it);
}

extern "C" size_t fs_cuda_mem_in_use(void) { return g_in_use; }
extern "C" size_t fs_cuda_mem_peak(void) { return g_peak; }
extern "C" void fs_cuda_mem_reset_peak(void) { g_peak = g_in_use; }

void fs_cu_die(const char *what, const char *msg) {
    fprintf(stderr, "fewsam cuda: %s: %s\n", what, msg);
    exit(1);
}

void fs_cu_check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) fs_cu_die(what, cudaGetErrorString(e));
}

void fs_cu_blas_check(cublasStatus_t s, const char *what) {
    if (s != CUBLAS_STATUS_SUCCESS) fs_cu_die(what, cublasGetStatusString(s));
}

extern "C" int fs_cuda_available(void) {
    if (g_available < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        g_available = e == cudaSuccess && n > 0;
        if (e != cudaSuccess) (void)cudaGetLastError(); /* clear it: "no GPU" is not an error here */
    }
    return g_available;
}

extern "C" const char *fs_cuda_device_name(void) {
    static char name[256];
    if (!fs_cuda_available()) return "none";
    if (!name[0]) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown";
        snprintf(name, sizeof name, "%s", p.name);
    }
    return name;
}

static void init_once(void) {
    if (g_stream) return;
    if (!fs_cuda_available()) fs_cu_die("init", "no usable GPU (cudaGetDeviceCount found none)");
    fs_cu_check(cudaSetDevice(0), "init: cudaSetDevice");
    /* a blocking stream: work on the legacy default stream still orders with it */
    fs_cu_check(cudaStreamCreate(&g_stream), "init: cudaStreamCreate");
    fs_cu_blas_check(cublasCreate(&g_blas), "init: cublasCreate");
    fs_cu_blas_check(cublasSetStream(g_blas, g_stream), "init: cublasSetStream");
    fs_cu_check(cudaStreamCreate(&g_side), "init: cudaStreamCreate (side)");
    fs_cu_blas_check(cublasCreate(&g_side_blas), "init: cublasCreate (side)");
    fs_cu_blas_check(cublasSetStream(g_side_blas, g_side), "init: cublasSetStream (side)");
    fs_cu_check(cudaEventCreateWithFlags(&g_fork, cudaEventDisableTiming), "init: cudaEventCreate");
    fs_cu_check(cudaEventCreateWithFlags(&g_join, cudaEventDisableTiming), "init: cudaEventCreate");
    fs_cu_blas_check(cublasLtCreate(&g_lt), "init: cublasLtCreate");
    fs_cu_check(cudaMalloc(&g_lt_ws, LT_WORKSPACE), "init: cublasLt workspace");
    account(g_lt_ws, LT_WORKSPACE);
    const char *s = getenv("FEWSAM_CUDA_SYNC");
    g_sync_each = s && s[0] == '1';
    const char *st = getenv("FEWSAM_CUDA_STREAMS");
    if (st && st[0] == '0') g_streams = 0;
    const char *lt = getenv("FEWSAM_CUDA_LT");
    if (lt && lt[0] == '0') g_use_lt = 0;
    const char *m = getenv("FEWSAM_CUDA_MATH");
    if (m && m[0] && fs_nn_cuda_set_math(m)) fs_cu_die("FEWSAM_CUDA_MATH", fs_error_msg());
}

cudaStream_t fs_cu_stream(void) {
    init_once();
    return g_stream;
}

cublasHandle_t fs_cu_blas(void) {
    init_once();
    return g_blas;
}

void fs_cu_launched(const char *kernel) {
    fs_cu_check(cudaGetLastError(), kernel);
    if (g_sync_each > 0) fs_cu_check(cudaDeviceSynchronize(), kernel); /* both streams */
}

cublasHandle_t fs_cu_side_begin(const char *what) {
    init_once();
    if (!g_streams) return g_blas;
    if (g_side_open) fs_cu_die(what, "the side stream is open already (fs_cu_side_end missing)");
    g_side_open = 1;
    fs_cu_check(cudaEventRecord(g_fork, g_stream), what);
    fs_cu_check(cudaStreamWaitEvent(g_side, g_fork, 0), what);
    return g_side_blas;
}

void fs_cu_side_end(const char *what) {
    if (!g_streams) return;
    if (!g_side_open) fs_cu_die(what, "the side stream is not open");
    g_side_open = 0;
    fs_cu_check(cudaEventRecord(g_join, g_side), what);
    fs_cu_check(cudaStreamWaitEvent(g_stream, g_join, 0), what);
}

extern "C" void fs_nn_cuda_set_streams(int on) { g_streams = on != 0; }
extern "C" void fs_nn_cuda_set_lt(int on) { g_use_lt = on != 0; }

int fs_cu_lt_on(void) { return g_use_lt; }

cublasLtHandle_t fs_cu_lt(void **workspace, size_t *bytes) {
    init_once();
    *workspace = g_lt_ws;
    *bytes = LT_WORKSPACE;
    return g_lt;
}

cublasComputeType_t fs_cu_compute_type(void) {
    return g_math == MATH_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
           : g_math == MATH_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                 : CUBLAS_COMPUTE_32F;
}

extern "C" int fs_nn_cuda_set_math(const char *mode) {
    if (!mode) return fs_error("cuda math mode: none given (fp32, tf32 or bf16)");
    if (!strcmp(mode, "fp32")) g_math = MATH_FP32;
    else if (!strcmp(mode, "tf32")) g_math = MATH_TF32;
    else if (!strcmp(mode, "bf16")) g_math = MATH_BF16;
    else return fs_error("unknown cuda math mode '%s' (fp32, tf32 or bf16)", mode);
    return FS_OK;
}

extern "C" const char *fs_nn_cuda_math(void) {
    return g_math == MATH_TF32 ? "tf32" : g_math == MATH_BF16 ? "bf16" : "fp32";
}

/* ---- memory helpers: errors are returned, not fatal ---- */

extern "C" void *fs_cuda_alloc(size_t bytes) {
    if (!fs_cuda_available()) {
        fs_error("cannot allocate %zu bytes on the GPU: no usable GPU", bytes);
        return NULL;
    }
    init_once();
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        fs_error("cannot allocate %zu bytes on the GPU: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    account(p, bytes ? bytes : 1);
    return p;
}

extern "C" void fs_cuda_free(void *p) {
    if (!p) return;
    unaccount(p);
    fs_cu_check(cudaFree(p), "fs_cuda_free");
}

static int copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what) {
    if (!bytes) return FS_OK;
    if (!fs_cuda_available()) return fs_error("%s: no usable GPU", what);
    init_once();
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, g_stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) return fs_error("%s of %zu bytes: %s", what, bytes, cudaGetErrorString(e));
    return FS_OK;
}

extern "C" int fs_cuda_to_device(void *dst, const void *src, size_t bytes) {
    return copy(dst, src, bytes, cudaMemcpyHostToDevice, "copy to the GPU");
}

extern "C" int fs_cuda_to_host(void *dst, const void *src, size_t bytes) {
    return copy(dst, src, bytes, cudaMemcpyDeviceToHost, "copy from the GPU");
}

extern "C" int fs_cuda_memset(void *p, int byte, size_t bytes) {
    if (!bytes) return FS_OK;
    if (!fs_cuda_available()) return fs_error("GPU memset: no usable GPU");
    init_once();
    cudaError_t e = cudaMemsetAsync(p, byte, bytes, g_stream);
    if (e != cudaSuccess) return fs_error("GPU memset of %zu bytes: %s", bytes, cudaGetErrorString(e));
    return FS_OK;
}

extern "C" int fs_cuda_sync(void) {
    if (!fs_cuda_available()) return fs_error("GPU sync: no usable GPU");
    init_once();
    cudaError_t e = cudaStreamSynchronize(g_stream);
    if (e != cudaSuccess) return fs_error("GPU kernels failed: %s", cudaGetErrorString(e));
    return FS_OK;
}

/* ---- scratch and the ones vector: grown, never shrunk ---- */

/* Replaces *buf by one of at least n floats (the old contents are dropped).
 * Kernels queued earlier may still read the old buffer: wait for them. */
static void grow(float **buf, size_t *cap, size_t n, const char *what) {
    if (n <= *cap && *buf) return;
    cudaStream_t s = fs_cu_stream();
    if (*buf) {
        fs_cu_check(cudaStreamSynchronize(s), what);
        unaccount(*buf);
        fs_cu_check(cudaFree(*buf), what);
        *buf = NULL;
        *cap = 0;
    }
    size_t want = n + n / 4 + 1024; /* headroom: the next larger request rarely reallocates */
    cudaError_t e = cudaMalloc((void **)buf, want * sizeof(float));
    if (e != cudaSuccess) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot allocate %zu bytes of scratch: %s", want * sizeof(float),
                 cudaGetErrorString(e));
        fs_cu_die(what, msg);
    }
    account(*buf, want * sizeof(float));
    *cap = want;
}

float *fs_cu_scratch(size_t n, const char *what) {
    grow(&g_scratch, &g_scratch_n, n, what);
    return g_scratch;
}

__global__ void fill_kernel(float *p, float v, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = v;
}

static const float *ones(size_t n, const char *what) {
    if (n > g_ones_n || !g_ones) {
        grow(&g_ones, &g_ones_n, n, what);
        fill_kernel<<<fs_cu_blocks(g_ones_n, 256), 256, 0, fs_cu_stream()>>>(g_ones, 1.0f, g_ones_n);
        fs_cu_launched(what);
    }
    return g_ones;
}

/* ---- cuBLAS ---- */

static int dim(size_t n, const char *what) {
    if (n > (size_t)INT_MAX) fs_cu_die(what, "matrix dimension too large for cuBLAS");
    return (int)n;
}

void fs_cu_gemm(const char *what, bool ta, bool tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    fs_cu_gemm_on(fs_cu_blas(), what, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void fs_cu_gemm_on(cublasHandle_t h, const char *what, bool ta, bool tb, size_t M, size_t N, size_t K, float alpha,
                   const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (beta == 1.0f) return;
        /* an empty sum: C = beta * C, which cuBLAS does for k = 0 */
    }
    cublasComputeType_t ct = fs_cu_compute_type();
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap
     * the operands; a stored row-major matrix read column-major is its
     * transpose, so the transpose flags carry over unchanged. */
    cublasStatus_t s = cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    dim(N, what), dim(M, what), dim(K, what), &alpha, B, CUDA_R_32F,
                                    dim(ldb ? ldb : 1, what), A, CUDA_R_32F, dim(lda ? lda : 1, what), &beta, C,
                                    CUDA_R_32F, dim(ldc ? ldc : 1, what), ct, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof msg, "cublasGemmEx (M %zu N %zu K %zu): %s", M, N, K, cublasGetStatusString(s));
        fs_cu_die(what, msg);
    }
    fs_cu_launched(what);
}

void fs_cu_colsum_add(const char *what, float *out, const float *x, size_t rows, size_t cols) {
    if (rows == 0 || cols == 0) return;
    const float one = 1.0f;
    const float *o = ones(rows, what);
    /* x[rows, cols] row-major is the column-major [cols, rows] matrix: out += x^T 1 */
    cublasStatus_t s = cublasSgemv(fs_cu_blas(), CUBLAS_OP_N, dim(cols, what), dim(rows, what), &one, x,
                                   dim(cols, what), o, 1, &one, out, 1);
    if (s != CUBLAS_STATUS_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof msg, "cublasSgemv (column sums): %s", cublasGetStatusString(s));
        fs_cu_die(what, msg);
    }
    fs_cu_launched(what);
}
