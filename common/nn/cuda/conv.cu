/* Convolutions as matrix products: the patch embedding and the 3x3
 * convolution unfold their input into a column matrix (im2col, in scratch)
 * and multiply it with the torch-layout weight read as [Cout, Cin*k*k];
 * the transposed 2x2 convolution multiplies first and scatters the
 * [pixels, Cout*4] product into the 2x2 output blocks. Backward passes are
 * the adjoint gathers (no atomics: each input element sums its own terms). */
#include "nn/cuda/internal.h"
#include "nn/cuda/kernels.h"

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ---- patch embedding: inp[B, Cin, Hi, Wi] -> cols[B*Ho*Wo, Cin*P*P] ---- */

/* cols[(n Ho + oy) Wo + ox][(ci P + ky) P + kx] = inp[n, ci, oy P + ky, ox P + kx] */
__global__ void patch_im2col_kernel(float *cols, const float *inp, size_t B, size_t Cin, size_t Hi, size_t Wi,
                                    size_t P) {
    size_t Ho = Hi / P, Wo = Wi / P, K = Cin * P * P;
    GRID_STRIDE(idx, B * Ho * Wo * K) {
        size_t m = idx / K, k = idx % K;
        size_t kx = k % P, ky = (k / P) % P, ci = k / (P * P);
        size_t ox = m % Wo, oy = (m / Wo) % Ho, n = m / (Wo * Ho);
        cols[idx] = inp[((n * Cin + ci) * Hi + oy * P + ky) * Wi + ox * P + kx];
    }
}

/* dinp[n, ci, y, x] += dcols[(n Ho + y/P) Wo + x/P][(ci P + y%P) P + x%P]
 * (patches do not overlap: each input pixel has exactly one term) */
__global__ void patch_col2im_kernel(float *dinp, const float *dcols, size_t B, size_t Cin, size_t Hi, size_t Wi,
                                    size_t P) {
    size_t Ho = Hi / P, Wo = Wi / P, K = Cin * P * P;
    GRID_STRIDE(idx, B * Cin * Hi * Wi) {
        size_t x = idx % Wi, y = (idx / Wi) % Hi, ci = (idx / (Wi * Hi)) % Cin, n = idx / (Wi * Hi * Cin);
        size_t m = (n * Ho + y / P) * Wo + x / P, k = (ci * P + y % P) * P + x % P;
        dinp[idx] += dcols[m * K + k];
    }
}

void fs_cuda_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                 size_t Hi, size_t Wi, size_t P, size_t C) {
    const char *what = "patch_embed_forward";
    size_t M = B * (Hi / P) * (Wi / P), K = Cin * P * P;
    if (!M || !C) return;
    float *cols = fs_cu_scratch(M * K, what);
    patch_im2col_kernel<<<fs_cu_blocks(M * K, 256), 256, 0, fs_cu_stream()>>>(cols, inp, B, Cin, Hi, Wi, P);
    fs_cu_launched(what);
    if (b) fs_cu_bias_rows(out, b, M, C, what);
    fs_cu_gemm(what, false, true, M, C, K, 1.0f, cols, K, w, K, b ? 1.0f : 0.0f, out, C);
}

void fs_cuda_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C) {
    const char *what = "patch_embed_backward";
    size_t M = B * (Hi / P) * (Wi / P), K = Cin * P * P;
    if (!M || !C) return;
    if (db) fs_cu_colsum_add(what, db, dout, M, C);
    if (!dw && !dinp) return;
    float *cols = fs_cu_scratch(M * K, what); /* the columns for dw, then dcols for dinp */
    if (dw) {
        patch_im2col_kernel<<<fs_cu_blocks(M * K, 256), 256, 0, fs_cu_stream()>>>(cols, inp, B, Cin, Hi, Wi, P);
        fs_cu_launched(what);
        /* dw[C, K] += dout^T [C, M] @ cols [M, K] */
        fs_cu_gemm(what, true, false, C, K, M, 1.0f, dout, C, cols, K, 1.0f, dw, K);
    }
    if (dinp) {
        /* dcols[M, K] = dout[M, C] @ w[C, K] (stream order: after the dw product) */
        fs_cu_gemm(what, false, false, M, K, C, 1.0f, dout, C, w, K, 0.0f, cols, K);
        size_t n = B * Cin * Hi * Wi;
        patch_col2im_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(dinp, cols, B, Cin, Hi, Wi, P);
        fs_cu_launched(what);
    }
}

/* ---- 3x3 convolution, padding 1: inp[B, H, W, Cin] -> cols[B*H*W, Cin*9] ---- */

/* cols[(n H + y) W + x][ci 9 + ky 3 + kx] = inp[n, y + ky - 1, x + kx - 1, ci] or 0 */
__global__ void conv3_im2col_kernel(float *cols, const float *inp, size_t B, size_t H, size_t W, size_t Cin) {
    size_t K = Cin * 9;
    GRID_STRIDE(idx, B * H * W * K) {
        size_t m = idx / K, k = idx % K;
        size_t ci = k / 9, t = k % 9, ky = t / 3, kx = t % 3;
        size_t x = m % W, y = (m / W) % H, n = m / (W * H);
        long iy = (long)y + (long)ky - 1, ix = (long)x + (long)kx - 1;
        float v = 0.0f;
        if (iy >= 0 && iy < (long)H && ix >= 0 && ix < (long)W) v = inp[((n * H + (size_t)iy) * W + (size_t)ix) * Cin + ci];
        cols[idx] = v;
    }
}

/* dinp[n, iy, ix, ci] += sum over (ky, kx) with output (iy - ky + 1, ix - kx + 1)
 * inside the image of dcols[that output][ci 9 + ky 3 + kx] */
__global__ void conv3_col2im_kernel(float *dinp, const float *dcols, size_t B, size_t H, size_t W, size_t Cin) {
    size_t K = Cin * 9;
    GRID_STRIDE(idx, B * H * W * Cin) {
        size_t ci = idx % Cin, m = idx / Cin;
        size_t ix = m % W, iy = (m / W) % H, n = m / (W * H);
        float acc = 0.0f;
        for (int ky = 0; ky < 3; ky++) {
            long y = (long)iy - ky + 1;
            if (y < 0 || y >= (long)H) continue;
            for (int kx = 0; kx < 3; kx++) {
                long x = (long)ix - kx + 1;
                if (x < 0 || x >= (long)W) continue;
                acc += dcols[((n * H + (size_t)y) * W + (size_t)x) * K + ci * 9 + (size_t)(ky * 3 + kx)];
            }
        }
        dinp[idx] += acc;
    }
}

void fs_cuda_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                             size_t Cout) {
    const char *what = "conv3x3_forward";
    size_t M = B * H * W, K = Cin * 9;
    if (!M || !Cout) return;
    float *cols = fs_cu_scratch(M * K, what);
    conv3_im2col_kernel<<<fs_cu_blocks(M * K, 256), 256, 0, fs_cu_stream()>>>(cols, inp, B, H, W, Cin);
    fs_cu_launched(what);
    fs_cu_gemm(what, false, true, M, Cout, K, 1.0f, cols, K, w, K, 0.0f, out, Cout);
}

void fs_cuda_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                              size_t H, size_t W, size_t Cin, size_t Cout) {
    const char *what = "conv3x3_backward";
    size_t M = B * H * W, K = Cin * 9;
    if (!M || !Cout || (!dw && !dinp)) return;
    float *cols = fs_cu_scratch(M * K, what);
    if (dw) {
        conv3_im2col_kernel<<<fs_cu_blocks(M * K, 256), 256, 0, fs_cu_stream()>>>(cols, inp, B, H, W, Cin);
        fs_cu_launched(what);
        fs_cu_gemm(what, true, false, Cout, K, M, 1.0f, dout, Cout, cols, K, 1.0f, dw, K);
    }
    if (dinp) {
        fs_cu_gemm(what, false, false, M, K, Cout, 1.0f, dout, Cout, w, K, 0.0f, cols, K);
        size_t n = M * Cin;
        conv3_col2im_kernel<<<fs_cu_blocks(n, 256), 256, 0, fs_cu_stream()>>>(dinp, cols, B, H, W, Cin);
        fs_cu_launched(what);
    }
}

/* ---- transposed 2x2 convolution, stride 2 ----
 * tmp[B*H*W, Cout*4] = inp[B*H*W, Cin] @ w[Cin, Cout*4], column co*4 + ky*2 + kx */

/* out[n, 2y + ky, 2x + kx, co] = tmp[(n H + y) W + x][co 4 + ky 2 + kx] + b[co] */
__global__ void convt_scatter_kernel(float *out, const float *tmp, const float *b, size_t B, size_t H, size_t W,
                                     size_t Cout) {
    size_t Wo = 2 * W, Ho = 2 * H;
    GRID_STRIDE(idx, B * Ho * Wo * Cout) {
        size_t co = idx % Cout, p = idx / Cout;
        size_t ox = p % Wo, oy = (p / Wo) % Ho, n = p / (Wo * Ho);
        size_t m = (n * H + oy / 2) * W + ox / 2, k = co * 4 + (oy % 2) * 2 + ox % 2;
        out[idx] = tmp[m * Cout * 4 + k] + (b ? b[co] : 0.0f);
    }
}

/* the adjoint: dtmp[(n H + y) W + x][co 4 + ky 2 + kx] = dout[n, 2y + ky, 2x + kx, co] */
__global__ void convt_gather_kernel(float *dtmp, const float *dout, size_t B, size_t H, size_t W, size_t Cout) {
    size_t Wo = 2 * W, Ho = 2 * H;
    GRID_STRIDE(idx, B * Ho * Wo * Cout) {
        size_t co = idx % Cout, p = idx / Cout;
        size_t ox = p % Wo, oy = (p / Wo) % Ho, n = p / (Wo * Ho);
        size_t m = (n * H + oy / 2) * W + ox / 2, k = co * 4 + (oy % 2) * 2 + ox % 2;
        dtmp[m * Cout * 4 + k] = dout[idx];
    }
}

void fs_cuda_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                       size_t H, size_t W, size_t Cin, size_t Cout) {
    const char *what = "conv_transpose2x2_forward";
    size_t M = B * H * W, N4 = Cout * 4;
    if (!M || !Cout) return;
    float *tmp = fs_cu_scratch(M * N4, what);
    fs_cu_gemm(what, false, false, M, N4, Cin, 1.0f, inp, Cin, w, N4, 0.0f, tmp, N4);
    convt_scatter_kernel<<<fs_cu_blocks(M * N4, 256), 256, 0, fs_cu_stream()>>>(out, tmp, b, B, H, W, Cout);
    fs_cu_launched(what);
}

void fs_cuda_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                        const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout) {
    const char *what = "conv_transpose2x2_backward";
    size_t M = B * H * W, N4 = Cout * 4;
    if (!M || !Cout) return;
    if (db) fs_cu_colsum_add(what, db, dout, M * 4, Cout);
    if (!dinp && !dw) return;
    float *dtmp = fs_cu_scratch(M * N4, what);
    convt_gather_kernel<<<fs_cu_blocks(M * N4, 256), 256, 0, fs_cu_stream()>>>(dtmp, dout, B, H, W, Cout);
    fs_cu_launched(what);
    /* dinp[M, Cin] += dtmp[M, 4 Cout] @ w[Cin, 4 Cout]^T */
    if (dinp) fs_cu_gemm(what, false, true, M, Cin, N4, 1.0f, dtmp, N4, w, N4, 1.0f, dinp, Cin);
    /* dw[Cin, 4 Cout] += inp[M, Cin]^T @ dtmp[M, 4 Cout] */
    if (dw) fs_cu_gemm(what, true, false, Cin, N4, M, 1.0f, inp, Cin, dtmp, N4, 1.0f, dw, N4);
}
