/* cuBLAS / cublasLt emulation: column-major GEMM and GEMV on the host, fp32
 * accumulation (fused multiply-adds in k order, as a GPU's dot products
 * run), inputs rounded to TF32 (10 mantissa bits) or BF16 (7) under the fast
 * compute types. Work is queued on the handle's stream like a kernel, with
 * alpha / beta read at the call (host pointer mode). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <vector>

#include "cublasLt.h"
#include "internal.h"

struct EmuBlas {
    cudaStream_t stream;
};
struct EmuLt {
    int dummy;
};
struct EmuLtDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta, tb;
    uint32_t epilogue;
    const void *bias;
};
struct EmuLtLayout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct EmuLtPref {
    uint64_t ws;
    uint32_t align[4];
};

namespace {

int mantissa_bits(cublasComputeType_t c) {
    switch (c) {
    case CUBLAS_COMPUTE_32F_FAST_TF32: return 10;
    case CUBLAS_COMPUTE_32F_FAST_16BF: return 7;
    case CUBLAS_COMPUTE_32F_FAST_16F: return 10;
    default: return 23;
    }
}

bool compute_ok(cublasComputeType_t c) {
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_TF32 ||
           c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_16F;
}

/* round to `bits` mantissa bits, to nearest even */
inline float round_mant(float x, int bits) {
    if (bits >= 23 || !isfinite(x)) return x;
    uint32_t u;
    memcpy(&u, &x, 4);
    int shift = 23 - bits;
    uint32_t lsb = (u >> shift) & 1u;
    u += ((1u << (shift - 1)) - 1u) + lsb;
    u &= ~((1u << shift) - 1u);
    float r;
    memcpy(&r, &u, 4);
    return r;
}

/* op(X)[r, c] of a column-major X with leading dimension ld */
inline float at(const float *X, bool t, int64_t ld, int64_t r, int64_t c) { return t ? X[c + r * ld] : X[r + c * ld]; }

/* D[m, n] = alpha op(A) op(B) + beta C (+ bias[r]); C not read when beta == 0 */
void gemm_host(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
               const float *B, int64_t ldb, float beta, const float *C, int64_t ldc, float *D, int64_t ldd,
               const float *bias, int bits) {
    std::vector<float> pa((size_t)m * k), pb((size_t)n * k);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t l = 0; l < k; l++) pa[(size_t)i * k + l] = round_mant(at(A, ta, lda, i, l), bits);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++)
        for (int64_t l = 0; l < k; l++) pb[(size_t)j * k + l] = round_mant(at(B, tb, ldb, l, j), bits);
    /* read all of C before writing D (they may be the same matrix) */
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t j = 0; j < n; j++) {
        const float *bj = &pb[(size_t)j * k];
        for (int64_t i = 0; i < m; i++) {
            const float *ai = &pa[(size_t)i * k];
            float s = 0.0f;
            for (int64_t l = 0; l < k; l++) s = fmaf(ai[l], bj[l], s);
            float r = alpha * s;
            if (beta != 0.0f) r = fmaf(beta, C[i + j * ldc], r);
            if (bias) r += bias[i];
            D[i + j * ldd] = r;
        }
    }
}

size_t extent(int64_t rows, int64_t cols, int64_t ld) {
    if (rows <= 0 || cols <= 0) return 0;
    return (size_t)((cols - 1) * ld + rows) * sizeof(float);
}

unsigned align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new EmuBlas{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t h, cudaStream_t *s) {
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return "an unknown internal error has occurred";
    }
}

static cublasStatus_t gemm_common(const char *fn, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                  int n, int k, float alpha, const float *A, int lda, const float *B, int ldb,
                                  float beta, float *C, int ldc, int bits) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    bool tA = ta == CUBLAS_OP_T, tB = tb == CUBLAS_OP_T;
    int64_t arows = tA ? k : m, acols = tA ? m : k, brows = tB ? n : k, bcols = tB ? k : n;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1)) {
        emu::error("%s: leading dimension too small (m %d n %d k %d lda %d ldb %d ldc %d)", fn, m, n, k, lda, ldb,
                   ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (k > 0 && alpha != 0.0f) {
        emu::check_device_range(fn, "A", A, extent(arows, acols, lda));
        emu::check_device_range(fn, "B", B, extent(brows, bcols, ldb));
    }
    emu::check_device_range(fn, "C", C, extent(m, n, ldc));
    emu::enqueue(h->stream, [=] {
        if (k == 0 || alpha == 0.0f) {
            for (int64_t j = 0; j < n; j++)
                for (int64_t i = 0; i < m; i++) C[i + j * ldc] = beta == 0.0f ? 0.0f : beta * C[i + j * ldc];
            return;
        }
        gemm_host(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, C, ldc, nullptr, bits);
    });
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F || !compute_ok(compute))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return gemm_common("cublasGemmEx", h, ta, tb, m, n, k, *(const float *)alpha, (const float *)A, lda,
                       (const float *)B, ldb, *(const float *)beta, (float *)C, ldc, mantissa_bits(compute));
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    return gemm_common("cublasSgemm", h, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc, 23);
}

cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t t, int m, int n, const float *alpha, const float *A,
                           int lda, const float *x, int incx, const float *beta, float *y, int incy) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || lda < (m > 1 ? m : 1) || incx == 0 || incy == 0 || (t != CUBLAS_OP_N && t != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *alpha, be = *beta;
    bool tr = t == CUBLAS_OP_T;
    int64_t lx = tr ? m : n, ly = tr ? n : m;
    emu::check_device_range("cublasSgemv", "A", A, extent(m, n, lda));
    emu::check_device_range("cublasSgemv", "x", incx > 0 ? x : x + (lx - 1) * incx,
                            ((lx - 1) * (int64_t)abs(incx) + 1) * sizeof(float));
    emu::check_device_range("cublasSgemv", "y", incy > 0 ? y : y + (ly - 1) * incy,
                            ((ly - 1) * (int64_t)abs(incy) + 1) * sizeof(float));
    emu::enqueue(h->stream, [=] {
        int64_t xs = incx > 0 ? 0 : (lx - 1) * -(int64_t)incx, ys = incy > 0 ? 0 : (ly - 1) * -(int64_t)incy;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < ly; r++) {
            float s = 0.0f;
            for (int64_t c = 0; c < lx; c++) {
                float a = tr ? A[c + r * (int64_t)lda] : A[r + c * (int64_t)lda];
                s = fmaf(a, x[xs + c * incx], s);
            }
            float *yr = &y[ys + r * incy];
            *yr = be == 0.0f ? al * s : fmaf(be, *yr, al * s);
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cublasLt ---- */

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new EmuLt{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (!compute_ok(compute) || scale != CUDA_R_32F) return CUBLAS_STATUS_INVALID_VALUE;
    *d = new EmuLtDesc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *buf, size_t bytes) {
    if (!d) return CUBLAS_STATUS_NOT_INITIALIZED;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (bytes != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(a == CUBLASLT_MATMUL_DESC_TRANSA ? &d->ta : &d->tb, buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, 4);
        if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS)
            return CUBLAS_STATUS_NOT_SUPPORTED; /* not emulated */
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (bytes != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, sizeof(void *));
        return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (type != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < (int64_t)(rows > 1 ? rows : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    *l = new EmuLtLayout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new EmuLtPref{0, {256, 256, 256, 256}}; /* the defaults: 256-byte alignment assumed */
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t bytes) {
    if (!p) return CUBLAS_STATUS_NOT_INITIALIZED;
    switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        if (bytes != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->ws, buf, 8);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
        if (bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, 4);
        return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_SUCCESS;
    }
}

/* shapes of op(A) [m, k], op(B) [k, n], C and D [m, n] */
static bool lt_shapes(const EmuLtDesc *op, const EmuLtLayout *a, const EmuLtLayout *b, const EmuLtLayout *c,
                      const EmuLtLayout *d, int64_t *m, int64_t *n, int64_t *k) {
    int64_t am = op->ta == CUBLAS_OP_T ? a->cols : a->rows, ak = op->ta == CUBLAS_OP_T ? a->rows : a->cols;
    int64_t bk = op->tb == CUBLAS_OP_T ? b->cols : b->rows, bn = op->tb == CUBLAS_OP_T ? b->rows : b->cols;
    if (ak != bk || (int64_t)c->rows != am || (int64_t)c->cols != bn || (int64_t)d->rows != am ||
        (int64_t)d->cols != bn)
        return false;
    *m = am, *n = bn, *k = ak;
    return true;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t *results, int *found) {
    if (!h || !op || !a || !b || !c || !d || !pref || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    int64_t m, n, k;
    *found = 0;
    if (!lt_shapes(op, a, b, c, d, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    memset(&results[0], 0, sizeof results[0]);
    /* the algorithm remembers the alignments it was chosen for */
    for (int i = 0; i < 4; i++) results[0].algo.data[i] = pref->align[i];
    results[0].algo.data[4] = 0xE11E; /* tag */
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
    if (!h || !op || !Adesc || !Bdesc || !Cdesc || !Ddesc) return CUBLAS_STATUS_INVALID_VALUE;
    int64_t m, n, k;
    if (!lt_shapes(op, Adesc, Bdesc, Cdesc, Ddesc, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (algo && algo->data[4] == 0xE11E) {
        const void *ptrs[4] = {A, B, C, D};
        for (int i = 0; i < 4; i++)
            if (align_of(ptrs[i]) < algo->data[i]) {
                emu::error("cublasLtMatmul: operand %c at %p is %u-byte aligned but its algorithm was chosen for %u "
                           "bytes (a GPU fails or faults here)",
                           "ABCD"[i], ptrs[i], align_of(ptrs[i]), (unsigned)algo->data[i]);
                return CUBLAS_STATUS_NOT_SUPPORTED;
            }
    }
    if (op->epilogue == CUBLASLT_EPILOGUE_BIAS && !op->bias) {
        emu::error("cublasLtMatmul: bias epilogue without a bias pointer");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    EmuLtDesc dd = *op; /* the descriptor as it is now */
    EmuLtLayout la = *Adesc, lb = *Bdesc, lc = *Cdesc, ld = *Ddesc;
    const float *bias = dd.epilogue == CUBLASLT_EPILOGUE_BIAS ? (const float *)dd.bias : nullptr;
    emu::check_device_range("cublasLtMatmul", "A", A, extent(la.rows, la.cols, la.ld));
    emu::check_device_range("cublasLtMatmul", "B", B, extent(lb.rows, lb.cols, lb.ld));
    if (be != 0.0f) emu::check_device_range("cublasLtMatmul", "C", C, extent(lc.rows, lc.cols, lc.ld));
    emu::check_device_range("cublasLtMatmul", "D", D, extent(ld.rows, ld.cols, ld.ld));
    if (bias) emu::check_device_range("cublasLtMatmul", "bias", bias, (size_t)m * sizeof(float));
    if (workspace_bytes && !emu::is_device_range(workspace, workspace_bytes))
        emu::error("cublasLtMatmul: workspace is not device memory");
    int bits = mantissa_bits(dd.compute);
    emu::enqueue(stream, [=] {
        gemm_host(dd.ta == CUBLAS_OP_T, dd.tb == CUBLAS_OP_T, m, n, k, al, (const float *)A, la.ld, (const float *)B,
                  lb.ld, be, (const float *)C, lc.ld, (float *)D, ld.ld, bias, bits);
    });
    return CUBLAS_STATUS_SUCCESS;
}
