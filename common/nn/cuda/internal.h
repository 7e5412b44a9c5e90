/* Internals of the CUDA backend shared by its .cu files (C++ only): the
 * process's stream and cuBLAS handle, error checks that exit, the scratch
 * buffer, and the row-major matrix-product wrappers over cuBLAS. */
#ifndef FS_NN_CUDA_INTERNAL_H
#define FS_NN_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>

/* The stream and handle every kernel runs on; the first call creates them
 * (and exits with a message when there is no usable GPU). */
cudaStream_t fs_cu_stream(void);
cublasHandle_t fs_cu_blas(void);

/* The side stream, for work that need not hold up the main stream's next
 * kernels: fs_cu_side_begin makes it wait for everything queued on the main
 * stream so far and returns its cuBLAS handle; fs_cu_side_end makes the main
 * stream wait for what was queued on it since. Work between the two must not
 * touch the scratch buffer or anything the main stream writes meanwhile.
 * With FEWSAM_CUDA_STREAMS=0 (or fs_nn_cuda_set_streams(0)) both are no-ops
 * and the handle is the main one. */
cublasHandle_t fs_cu_side_begin(const char *what);
void fs_cu_side_end(const char *what);

/* cublasLt: whether it is on (FEWSAM_CUDA_LT, fs_nn_cuda_set_lt), its handle
 * and workspace, and the compute type of the math mode. */
int fs_cu_lt_on(void);
cublasLtHandle_t fs_cu_lt(void **workspace, size_t *bytes);
cublasComputeType_t fs_cu_compute_type(void);

/* Print "fewsam cuda: <what>: <error string>" and exit(1) on an error. */
void fs_cu_check(cudaError_t e, const char *what);
void fs_cu_blas_check(cublasStatus_t s, const char *what);
/* After a kernel launch: a launch error (or, with FEWSAM_CUDA_SYNC=1, any
 * error of the kernel itself) exits naming the kernel. */
void fs_cu_launched(const char *kernel);
/* Exit with "fewsam cuda: <what>: <msg>". */
[[noreturn]] void fs_cu_die(const char *what, const char *msg);

/* A device buffer of at least n floats, owned by the backend and valid until
 * the next call: an entry takes it once and carves its pieces from it. Every
 * kernel that touches it runs on the main stream, so reusing it across
 * entries is ordered. */
float *fs_cu_scratch(size_t n, const char *what);

/* Row-major C[M, N] = alpha * op(A) @ op(B) + beta * C with op(A)[M, K]
 * (A stored [K, M] when ta) and op(B)[K, N] (B stored [N, K] when tb);
 * lda, ldb, ldc are the stored rows' lengths. Uses the math mode of
 * fs_nn_cuda_set_math. */
void fs_cu_gemm(const char *what, bool ta, bool tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* The same on a given handle (the side stream's). */
void fs_cu_gemm_on(cublasHandle_t h, const char *what, bool ta, bool tb, size_t M, size_t N, size_t K, float alpha,
                   const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* out[cols] += column sums of x[rows, cols] (a gemv with a ones vector). */
void fs_cu_colsum_add(const char *what, float *out, const float *x, size_t rows, size_t cols);

/* Blocks for a grid-stride loop over n items. */
static inline unsigned fs_cu_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return (unsigned)b;
}

#endif
