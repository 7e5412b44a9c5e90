/* nn.Linear on cuBLAS (fp32, or TF32 / BF16 tensor cores per
 * fs_nn_cuda_set_math): the forward through cublasLt with the bias in the
 * epilogue, the backward's weight gradient on the side stream. */
#include <limits.h>
#include <stdint.h>
#include <unordered_map>

#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

namespace {

/* A cublasLt plan depends on the shape, the math and how aligned the
 * operands are (the heuristic assumes 256-byte alignment unless told). */
struct LtKey {
    size_t M, N, K;
    int compute;
    unsigned align_w, align_in, align_out;
    bool operator==(const LtKey &o) const {
        return M == o.M && N == o.N && K == o.K && compute == o.compute && align_w == o.align_w &&
               align_in == o.align_in && align_out == o.align_out;
    }
};

struct LtKeyHash {
    size_t operator()(const LtKey &k) const {
        size_t h = k.M * 1000003u ^ k.N * 10007u ^ k.K * 131u ^ (size_t)k.compute;
        return h ^ ((size_t)k.align_w << 40) ^ ((size_t)k.align_in << 48) ^ ((size_t)k.align_out << 56);
    }
};

struct LtPlan {
    bool ok; /* false: no algorithm (or it failed once): use the plain path */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lw, lin, lout;
    cublasLtMatmulAlgo_t algo;
};

std::unordered_map<LtKey, LtPlan, LtKeyHash> g_plans;

unsigned alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

/* Row-major out[M, N] = inp[M, K] @ w[N, K]^T is column-major
 * out^T[N, M] = op_T(w as a K x N matrix) @ (inp as a K x M matrix); the
 * epilogue's bias runs along D's rows, the N output features. */
LtPlan build(const LtKey &k) {
    LtPlan p = {};
    const cublasOperation_t T = CUBLAS_OP_T, Nop = CUBLAS_OP_N;
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    if (cublasLtMatmulDescCreate(&p.desc, (cublasComputeType_t)k.compute, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
        return p;
    bool good = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &T, sizeof T) ==
                    CUBLAS_STATUS_SUCCESS &&
                cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &Nop, sizeof Nop) ==
                    CUBLAS_STATUS_SUCCESS &&
                cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) ==
                    CUBLAS_STATUS_SUCCESS &&
                cublasLtMatrixLayoutCreate(&p.lw, CUDA_R_32F, k.K, k.N, (int64_t)k.K) == CUBLAS_STATUS_SUCCESS &&
                cublasLtMatrixLayoutCreate(&p.lin, CUDA_R_32F, k.K, k.M, (int64_t)k.K) == CUBLAS_STATUS_SUCCESS &&
                cublasLtMatrixLayoutCreate(&p.lout, CUDA_R_32F, k.N, k.M, (int64_t)k.N) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulPreference_t pref = nullptr;
    void *ws;
    size_t ws_bytes;
    cublasLtHandle_t lt = fs_cu_lt(&ws, &ws_bytes);
    good = good && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
    uint32_t aw = k.align_w, ai = k.align_in, ao = k.align_out;
    good = good &&
           cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                sizeof ws_bytes) == CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof aw) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ai, sizeof ai) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ao, sizeof ao) ==
               CUBLAS_STATUS_SUCCESS &&
           cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ao, sizeof ao) ==
               CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulHeuristicResult_t r = {};
    int found = 0;
    good = good && cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.lw, p.lin, p.lout, p.lout, pref, 1, &r, &found) ==
                       CUBLAS_STATUS_SUCCESS;
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    p.ok = good && found > 0 && r.state == CUBLAS_STATUS_SUCCESS;
    if (p.ok) p.algo = r.algo;
    return p;
}

/* out = inp @ w^T + bias in one cublasLt call; false when it cannot (the
 * caller then takes the plain path). */
bool lt_linear(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K, size_t N,
               const char *what) {
    if (!fs_cu_lt_on() || !bias || K == 0 || M > INT_MAX || N > INT_MAX || K > INT_MAX) return false;
    if (alignment(bias) < 16) return false;
    LtKey key = {M, N, K, (int)fs_cu_compute_type(), alignment(w), alignment(inp), alignment(out)};
    auto it = g_plans.find(key);
    if (it == g_plans.end()) it = g_plans.emplace(key, build(key)).first;
    LtPlan &p = it->second;
    if (!p.ok) return false;
    if (cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
        CUBLAS_STATUS_SUCCESS) {
        p.ok = false;
        return false;
    }
    void *ws;
    size_t ws_bytes;
    cublasLtHandle_t lt = fs_cu_lt(&ws, &ws_bytes);
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasLtMatmul(lt, p.desc, &one, w, p.lw, inp, p.lin, &zero, out, p.lout, out, p.lout, &p.algo,
                                      ws, ws_bytes, fs_cu_stream());
    if (s != CUBLAS_STATUS_SUCCESS) { /* refused before launching: nothing was written */
        p.ok = false;
        return false;
    }
    fs_cu_launched(what);
    return true;
}

} /* namespace */

/* out[M, N] = inp[M, K] @ w[N, K]^T + bias[N]; without cublasLt the bias is
 * written first and the product added onto it (beta = 1). */
void fs_cuda_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                            size_t N) {
    const char *what = "linear_forward";
    if (!M || !N) return;
    if (lt_linear(out, inp, w, bias, M, K, N, what)) return;
    if (bias) fs_cu_bias_rows(out, bias, M, N, what);
    fs_cu_gemm(what, false, true, M, N, K, 1.0f, inp, K, w, K, bias ? 1.0f : 0.0f, out, N);
}

/* dinp[M, K] += dout[M, N] @ w[N, K]; dw[N, K] += dout^T @ inp;
 * dbias[N] += column sums of dout; each optional. The dw product runs on
 * the side stream beside the dinp one: neither reads what the other
 * writes. */
void fs_cuda_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                             size_t M, size_t K, size_t N) {
    const bool side = dinp && dw; /* alone, either product runs on the main stream */
    if (dw) {
        cublasHandle_t h = side ? fs_cu_side_begin("linear_backward") : fs_cu_blas();
        fs_cu_gemm_on(h, "linear_backward (dw)", true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
    }
    if (dinp) fs_cu_gemm("linear_backward (dinp)", false, false, M, K, N, 1.0f, dout, N, w, K, 1.0f, dinp, K);
    if (side) fs_cu_side_end("linear_backward");
    if (dbias) fs_cu_colsum_add("linear_backward (dbias)", dbias, dout, M, N);
}
