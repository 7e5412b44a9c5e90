/* gpu: every entry of the CUDA backend (fs_nn_cuda) against the reference
 * backend on random inputs: forward and backward, odd sizes, single
 * elements, batches, pre-filled gradient buffers (the backward entries
 * accumulate) and each gradient asked for alone (the others NULL), the
 * fused attention at the global blocks' real size (64 x 64 tokens, 12 heads
 * of 64 dims), and the linear and convolution kernels again under the TF32
 * and BF16 math modes with looser tolerances, and with the side stream and
 * cublasLt off (the plain path) and on operands only 4-byte aligned (the
 * cublasLt plans depend on alignment); then the table's memory
 * entries, the tensor glue (bitwise equal to the reference, sum_rows within
 * 1e-6 relative) and the optimiser (AdamW over several steps within 1e-6
 * relative, the sum of squares within 1e-12 relative of the reference,
 * 1e-14 of a compensated sum, and repeatable bit for bit).
 * Tolerance of the layer kernels: max |gpu - ref| <= tol * (1 + max |ref|),
 * tol 1e-4 in fp32.
 * Each comparison prints its max error as a "#" line.
 * Without a usable GPU (or when cudaGetDeviceCount fails) every test
 * reports "skip <name>: no GPU" and the program exits 0. */
#include "../unit/test.h"

#include "core/error.h"
#include "core/rng.h"
#include "nn/cuda/cuda.h"
#include "nn/nn.h"

static fs_rng rng;
static int gpu;
static double tol = 1e-4;
static char cmp_msg[256];

#define GPU_ONLY()                          \
    do {                                    \
        if (!gpu) SKIP("no GPU");           \
    } while (0)

static void die_here(const char *what) {
    printf("FAIL %s: %s: %s\n", test_current, what, fs_error_msg());
    exit(1);
}

static float *rand_buf(size_t n, double lo, double hi) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = (float)fs_rng_range(&rng, lo, hi);
    return p;
}

static float *nan_buf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = NAN; /* an output the kernel skips shows up */
    return p;
}

static float *dev(const float *h, size_t n) {
    float *d = fs_cuda_alloc(n * sizeof(float));
    if (!d) die_here("fs_cuda_alloc");
    if (h && fs_cuda_to_device(d, h, n * sizeof(float))) die_here("fs_cuda_to_device");
    return d;
}

static float *dev_nan(size_t n) {
    float *h = nan_buf(n), *d = dev(h, n);
    free(h);
    return d;
}

/* 1 when the device buffer d[n] matches want[n]; prints the "#" line and
 * leaves the failure in cmp_msg. */
static int cmp_dev(const char *label, const float *d, const float *want, size_t n) {
    float *got = nan_buf(n);
    if (fs_cuda_to_host(got, d, n * sizeof(float))) die_here("fs_cuda_to_host");
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)got[i] - (double)want[i]);
        if (!(x == x)) x = INFINITY;
        if (x > e) e = x;
        if (fabs(want[i]) > s) s = fabs(want[i]);
    }
    free(got);
    printf("# %s %s: max err %.3g (max |ref| %.3g)\n", test_current, label, e, s);
    snprintf(cmp_msg, sizeof cmp_msg, "%s: max err %.3g, max |ref| %.3g, tol %.3g", label, e, s, tol);
    return e <= tol * (1.0 + s);
}

#define COMPARE(label, d, want, n) CHECKF(cmp_dev(label, d, want, n), "%s", cmp_msg)

/* A gradient buffer: a random pre-fill on both sides, or NULL when off. */
typedef struct {
    float *h, *d;
    size_t n;
} grad;

static grad grad_new(size_t n, int on) {
    grad g = {NULL, NULL, n};
    if (on) {
        g.h = rand_buf(n, -1, 1);
        g.d = dev(g.h, n);
    }
    return g;
}

static void grad_free(grad *g) {
    free(g->h);
    fs_cuda_free(g->d);
    g->h = g->d = NULL;
}

/* the gradient subsets each backward case runs: all, then each alone */
static const int masks[] = {7, 1, 2, 4};
#define N_MASKS 4

static const char *mask_name(int m) {
    return m == 7 ? "all" : m == 1 ? "first alone" : m == 2 ? "second alone" : "third alone";
}

static void tables(void) {
    GPU_ONLY();
    const fs_nn_ops *c = &fs_nn_cuda;
    CHECK(!strcmp(c->name, "cuda"));
    CHECK(c->linear_forward && c->layernorm_forward && c->gelu_forward && c->relu_forward);
    CHECK(c->attention_forward && c->attention_relpos_forward && c->patch_embed_forward);
    CHECK(c->conv3x3_forward && c->conv_transpose2x2_forward && c->resize_bilinear_forward);
    CHECK(c->linear_backward && c->layernorm_backward && c->gelu_backward && c->relu_backward);
    CHECK(c->attention_backward && c->attention_relpos_backward && c->patch_embed_backward);
    CHECK(c->conv3x3_backward && c->conv_transpose2x2_backward && c->resize_bilinear_backward);
    CHECK(c->device == 1 && c->available && c->available() == 1);
    CHECK(c->alloc && c->free && c->upload && c->download && c->copy && c->zero);
    CHECK(c->add && c->scale && c->add_rows && c->sum_rows && c->add_cols && c->take_cols);
    CHECK(c->window_partition && c->window_unpartition && c->crop && c->adamw_update && c->sumsq);
    CHECK(fs_nn_cuda_set_math("fp16") == FS_ERR && !strcmp(fs_nn_cuda_math(), "fp32"));
    printf("# device: %s\n", fs_cuda_device_name());
}

static void memory(void) {
    GPU_ONLY();
    size_t n = 1000003;
    float *h = rand_buf(n, -5, 5), *back = nan_buf(n);
    float *d = dev(h, n);
    CHECK(fs_cuda_to_host(back, d, n * sizeof(float)) == FS_OK);
    CHECK(!memcmp(h, back, n * sizeof(float)));
    CHECK(fs_cuda_memset(d, 0, n * sizeof(float)) == FS_OK);
    CHECK(fs_cuda_to_host(back, d, n * sizeof(float)) == FS_OK);
    for (size_t i = 0; i < n; i++) CHECK(back[i] == 0.0f);
    CHECK(fs_cuda_sync() == FS_OK);
    void *z = fs_cuda_alloc(0);
    CHECK(z != NULL);
    fs_cuda_free(z);
    fs_cuda_free(NULL);
    fs_cuda_free(d);
    free(h), free(back);
}

/* ---- linear ---- */

static void linear(void) {
    GPU_ONLY();
    static const size_t cases[][4] = {
        /* M, K, N, bias */
        {1, 1, 1, 1}, {7, 13, 5, 1}, {37, 65, 129, 0}, {300, 77, 33, 1}, {20, 512, 1000, 1}, {512, 768, 2304, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], K = cases[c][1], N = cases[c][2];
        float *x = rand_buf(M * K, -1, 1), *w = rand_buf(N * K, -1, 1);
        float *b = cases[c][3] ? rand_buf(N, -1, 1) : NULL;
        float *o = nan_buf(M * N), *dx = dev(x, M * K), *dw = dev(w, N * K), *db = b ? dev(b, N) : NULL;
        float *dout = dev_nan(M * N);
        fs_nn_ref.linear_forward(o, x, w, b, M, K, N);
        fs_nn_cuda.linear_forward(dout, dx, dw, db, M, K, N);
        char label[96];
        snprintf(label, sizeof label, "forward M%zu K%zu N%zu%s", M, K, N, b ? "" : " nobias");
        COMPARE(label, dout, o, M * N);
        /* backward (the largest case forward only: the reference is slow there) */
        if (M * K * N <= 30000000) {
            float *g = rand_buf(M * N, -1, 1), *dg = dev(g, M * N);
            for (int mi = 0; mi < N_MASKS; mi++) {
                int m = masks[mi];
                grad gi = grad_new(M * K, m & 1), gw = grad_new(N * K, m & 2), gb = grad_new(N, m & 4);
                fs_nn_ref.linear_backward(gi.h, gw.h, gb.h, g, x, w, M, K, N);
                fs_nn_cuda.linear_backward(gi.d, gw.d, gb.d, dg, dx, dw, M, K, N);
                snprintf(label, sizeof label, "backward M%zu K%zu N%zu %s", M, K, N, mask_name(m));
                if (gi.h) COMPARE(label, gi.d, gi.h, M * K);
                if (gw.h) COMPARE(label, gw.d, gw.h, N * K);
                if (gb.h) COMPARE(label, gb.d, gb.h, N);
                grad_free(&gi), grad_free(&gw), grad_free(&gb);
            }
            free(g), fs_cuda_free(dg);
        }
        free(x), free(w), free(b), free(o);
        fs_cuda_free(dx), fs_cuda_free(dw), fs_cuda_free(db), fs_cuda_free(dout);
    }
}

/* The plain path: no side stream, no cublasLt (bias kernel + GemmEx). */
static void linear_plain(void) {
    GPU_ONLY();
    fs_nn_cuda_set_lt(0);
    fs_nn_cuda_set_streams(0);
    linear();
    fs_nn_cuda_set_lt(1);
    fs_nn_cuda_set_streams(1);
}

/* Operands one float past an allocation's start: 4-byte aligned only, as
 * views into a larger tensor can be (cublasLt must pick an algorithm that
 * allows it, or fall back). */
static void linear_unaligned(void) {
    GPU_ONLY();
    static const size_t cases[][3] = {{7, 13, 5}, {300, 77, 33}, {256, 768, 768}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], K = cases[c][1], N = cases[c][2];
        float *x = rand_buf(M * K, -1, 1), *w = rand_buf(N * K, -1, 1), *b = rand_buf(N, -1, 1);
        float *o = nan_buf(M * N);
        /* [0]: at an allocation's start; [1]: one float past it */
        float *xin[2] = {dev(x, M * K), dev_nan(M * K + 1)}, *wt[2] = {dev(w, N * K), dev_nan(N * K + 1)};
        float *out[2] = {dev_nan(M * N), dev_nan(M * N + 1)}, *db = dev_nan(N + 1);
        CHECK(fs_cuda_to_device(xin[1] + 1, x, M * K * sizeof(float)) == FS_OK);
        CHECK(fs_cuda_to_device(wt[1] + 1, w, N * K * sizeof(float)) == FS_OK);
        CHECK(fs_cuda_to_device(db + 1, b, N * sizeof(float)) == FS_OK);
        fs_nn_ref.linear_forward(o, x, w, b, M, K, N);
        for (int k = 0; k < 4; k++) { /* input, weight, output unaligned in turn, then all three */
            int ui = k == 0 || k == 3, uw = k == 1 || k == 3, uo = k == 2 || k == 3;
            float *dst = out[uo] + uo;
            fs_nn_cuda.linear_forward(dst, xin[ui] + ui, wt[uw] + uw, db + 1, M, K, N);
            char label[96];
            snprintf(label, sizeof label, "unaligned in %d w %d out %d: M%zu K%zu N%zu", ui, uw, uo, M, K, N);
            COMPARE(label, dst, o, M * N);
        }
        free(x), free(w), free(b), free(o);
        for (int i = 0; i < 2; i++) fs_cuda_free(xin[i]), fs_cuda_free(wt[i]), fs_cuda_free(out[i]);
        fs_cuda_free(db);
    }
}

/* ---- layernorm ---- */

static void layernorm(void) {
    GPU_ONLY();
    static const size_t cases[][2] = {{1, 1}, {13, 7}, {100, 768}, {3, 33}, {4097, 32}, {1000, 256}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], C = cases[c][1];
        /* an offset mean checks that the variance is taken about the mean */
        float *x = rand_buf(M * C, 40, 60), *w = rand_buf(C, -2, 2), *b = rand_buf(C, -1, 1), *o = nan_buf(M * C);
        float *dx = dev(x, M * C), *dw = dev(w, C), *db = dev(b, C), *dout = dev_nan(M * C);
        fs_nn_ref.layernorm_forward(o, x, w, b, M, C, 1e-6f);
        fs_nn_cuda.layernorm_forward(dout, dx, dw, db, M, C, 1e-6f);
        char label[96];
        snprintf(label, sizeof label, "forward M%zu C%zu", M, C);
        COMPARE(label, dout, o, M * C);
        float *g = rand_buf(M * C, -1, 1), *dg = dev(g, M * C);
        for (int mi = 0; mi < N_MASKS; mi++) {
            int m = masks[mi];
            grad gi = grad_new(M * C, m & 1), gw = grad_new(C, m & 2), gb = grad_new(C, m & 4);
            fs_nn_ref.layernorm_backward(gi.h, gw.h, gb.h, g, x, w, M, C, 1e-6f);
            fs_nn_cuda.layernorm_backward(gi.d, gw.d, gb.d, dg, dx, dw, M, C, 1e-6f);
            snprintf(label, sizeof label, "backward M%zu C%zu %s", M, C, mask_name(m));
            if (gi.h) COMPARE(label, gi.d, gi.h, M * C);
            if (gw.h) COMPARE(label, gw.d, gw.h, C);
            if (gb.h) COMPARE(label, gb.d, gb.h, C);
            grad_free(&gi), grad_free(&gw), grad_free(&gb);
        }
        free(x), free(w), free(b), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dw), fs_cuda_free(db), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

/* ---- activations ---- */

static void activations(void) {
    GPU_ONLY();
    static const size_t sizes[] = {1, 17, 100003};
    for (size_t c = 0; c < 3; c++) {
        size_t n = sizes[c];
        float *x = rand_buf(n, -9, 9), *o = nan_buf(n), *g = rand_buf(n, -1, 1);
        float *dx = dev(x, n), *dout = dev_nan(n), *dg = dev(g, n);
        char label[64];
        for (int relu = 0; relu < 2; relu++) {
            const char *name = relu ? "relu" : "gelu";
            (relu ? fs_nn_ref.relu_forward : fs_nn_ref.gelu_forward)(o, x, n);
            (relu ? fs_nn_cuda.relu_forward : fs_nn_cuda.gelu_forward)(dout, dx, n);
            snprintf(label, sizeof label, "%s n%zu", name, n);
            COMPARE(label, dout, o, n);
            /* in place */
            float *dy = dev(x, n);
            (relu ? fs_nn_cuda.relu_forward : fs_nn_cuda.gelu_forward)(dy, dy, n);
            snprintf(label, sizeof label, "%s in place n%zu", name, n);
            COMPARE(label, dy, o, n);
            fs_cuda_free(dy);
            grad gi = grad_new(n, 1);
            (relu ? fs_nn_ref.relu_backward : fs_nn_ref.gelu_backward)(gi.h, x, g, n);
            (relu ? fs_nn_cuda.relu_backward : fs_nn_cuda.gelu_backward)(gi.d, dx, dg, n);
            snprintf(label, sizeof label, "%s backward n%zu", name, n);
            COMPARE(label, gi.d, gi.h, n);
            grad_free(&gi);
        }
        free(x), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

/* ---- attention ---- */

static void attention(void) {
    GPU_ONLY();
    static const size_t cases[][5] = {
        /* B, Nq, Nk, H, D: every thread-group width (D up to 16, 32, 64,
         * 128, 256), partial tiles, the decoder's shapes */
        {1, 1, 1, 1, 1},  {2, 7, 9, 3, 5},     {1, 300, 5, 2, 16},  {2, 5, 1100, 4, 8}, {1, 33, 40, 2, 32},
        {1, 65, 70, 2, 48}, {1, 20, 17, 1, 100}, {1, 9, 11, 2, 200}, {1, 4096, 7, 8, 16}, {1, 7, 4096, 8, 32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Nq = cases[c][1], Nk = cases[c][2], H = cases[c][3], D = cases[c][4];
        size_t C = H * D, nq = B * Nq * C, nk = B * Nk * C;
        float *q = rand_buf(nq, -1, 1), *k = rand_buf(nk, -1, 1), *v = rand_buf(nk, -1, 1), *o = nan_buf(nq);
        float *dq = dev(q, nq), *dk = dev(k, nk), *dv = dev(v, nk), *dout = dev_nan(nq);
        float scale = 1.0f / sqrtf((float)D);
        fs_nn_ref.attention_forward(o, q, k, v, B, Nq, Nk, H, D, scale);
        fs_nn_cuda.attention_forward(dout, dq, dk, dv, B, Nq, Nk, H, D, scale);
        char label[128];
        snprintf(label, sizeof label, "forward B%zu Nq%zu Nk%zu H%zu D%zu", B, Nq, Nk, H, D);
        COMPARE(label, dout, o, nq);
        float *g = rand_buf(nq, -1, 1), *dg = dev(g, nq);
        for (int mi = 0; mi < N_MASKS; mi++) {
            int m = masks[mi];
            grad gq = grad_new(nq, m & 1), gk = grad_new(nk, m & 2), gv = grad_new(nk, m & 4);
            fs_nn_ref.attention_backward(gq.h, gk.h, gv.h, g, q, k, v, B, Nq, Nk, H, D, scale);
            fs_nn_cuda.attention_backward(gq.d, gk.d, gv.d, dg, dq, dk, dv, B, Nq, Nk, H, D, scale);
            snprintf(label, sizeof label, "backward B%zu Nq%zu Nk%zu H%zu D%zu %s", B, Nq, Nk, H, D, mask_name(m));
            if (gq.h) COMPARE(label, gq.d, gq.h, nq);
            if (gk.h) COMPARE(label, gk.d, gk.h, nk);
            if (gv.h) COMPARE(label, gv.d, gv.h, nk);
            grad_free(&gq), grad_free(&gk), grad_free(&gv);
        }
        free(q), free(k), free(v), free(o), free(g);
        fs_cuda_free(dq), fs_cuda_free(dk), fs_cuda_free(dv), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

/* One relative-position attention case against `want` (the reference, or
 * for the largest case the fast CPU backend, itself tested against it). */
static void relpos_case(const fs_nn_ops *want, size_t B, size_t Hg, size_t Wg, size_t H, size_t D, int rel,
                        int backward) {
    size_t N = Hg * Wg, C = H * D, nqkv = B * N * 3 * C, no = B * N * C, nh = (2 * Hg - 1) * D,
           nw = (2 * Wg - 1) * D;
    float *qkv = rand_buf(nqkv, -1, 1), *rh = rel ? rand_buf(nh, -0.5, 0.5) : NULL;
    float *rw = rel ? rand_buf(nw, -0.5, 0.5) : NULL, *o = nan_buf(no);
    float *dqkv = dev(qkv, nqkv), *drh = rel ? dev(rh, nh) : NULL, *drw = rel ? dev(rw, nw) : NULL;
    float *dout = dev_nan(no);
    float scale = 1.0f / sqrtf((float)D);
    want->attention_relpos_forward(o, qkv, rh, rw, B, Hg, Wg, H, D, scale);
    fs_nn_cuda.attention_relpos_forward(dout, dqkv, drh, drw, B, Hg, Wg, H, D, scale);
    char label[160];
    snprintf(label, sizeof label, "forward B%zu %zux%zu H%zu D%zu%s vs %s", B, Hg, Wg, H, D, rel ? "" : " norel",
             want->name);
    COMPARE(label, dout, o, no);
    if (backward) {
        float *g = rand_buf(no, -1, 1), *dg = dev(g, no);
        for (int mi = 0; mi < N_MASKS; mi++) {
            int m = masks[mi];
            if (!rel && m != 7 && m != 1) continue;
            grad gx = grad_new(nqkv, m & 1), gh = grad_new(nh, rel && (m & 2)), gw = grad_new(nw, rel && (m & 4));
            want->attention_relpos_backward(gx.h, gh.h, gw.h, g, qkv, rh, rw, B, Hg, Wg, H, D, scale);
            fs_nn_cuda.attention_relpos_backward(gx.d, gh.d, gw.d, dg, dqkv, drh, drw, B, Hg, Wg, H, D, scale);
            snprintf(label, sizeof label, "backward B%zu %zux%zu H%zu D%zu%s %s vs %s", B, Hg, Wg, H, D,
                     rel ? "" : " norel", mask_name(m), want->name);
            if (gx.h) COMPARE(label, gx.d, gx.h, nqkv);
            if (gh.h) COMPARE(label, gh.d, gh.h, nh);
            if (gw.h) COMPARE(label, gw.d, gw.h, nw);
            grad_free(&gx), grad_free(&gh), grad_free(&gw);
        }
        free(g), fs_cuda_free(dg);
    }
    free(qkv), free(rh), free(rw), free(o);
    fs_cuda_free(dqkv), fs_cuda_free(drh), fs_cuda_free(drw), fs_cuda_free(dout);
}

static void attention_relpos(void) {
    GPU_ONLY();
    static const size_t cases[][6] = {
        /* B, Hg, Wg, H, D, rel */
        {1, 1, 1, 1, 1, 1}, {2, 3, 5, 2, 5, 1}, {1, 4, 4, 1, 16, 0}, {3, 7, 6, 2, 33, 1}, {2, 14, 14, 2, 64, 1},
        {1, 9, 13, 3, 80, 1}, {2, 5, 3, 1, 130, 1}, {1, 17, 15, 2, 64, 1}, {1, 6, 20, 1, 24, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        relpos_case(&fs_nn_ref, cases[c][0], cases[c][1], cases[c][2], cases[c][3], cases[c][4], (int)cases[c][5],
                    1);
        if (test_failed_flag) return;
    }
}

/* The global blocks' real size: 64 x 64 tokens, 12 heads of 64 dims. The
 * CPU backend stands in for the reference here (the reference's double
 * loops take minutes at this size); test_nn checks it against the
 * reference. */
static void attention_global(void) {
    GPU_ONLY();
    const fs_nn_ops *want = fs_nn_cpu.attention_relpos_backward && fs_nn_cpu.attention_relpos_forward
                                ? &fs_nn_cpu
                                : &fs_nn_ref;
    relpos_case(want, 1, 64, 64, 12, 64, 1, 1);
}

/* ---- convolutions ---- */

static void patch_embed(void) {
    GPU_ONLY();
    static const size_t cases[][6] = {
        /* B, Cin, Hi, Wi, P, C */
        {1, 1, 2, 2, 2, 1}, {2, 3, 12, 8, 4, 5}, {1, 3, 32, 48, 16, 20}, {1, 3, 64, 64, 16, 768},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Cin = cases[c][1], Hi = cases[c][2], Wi = cases[c][3], P = cases[c][4], C = cases[c][5];
        size_t ni = B * Cin * Hi * Wi, nw = C * Cin * P * P, no = B * (Hi / P) * (Wi / P) * C;
        float *x = rand_buf(ni, -1, 1), *w = rand_buf(nw, -1, 1), *b = rand_buf(C, -1, 1), *o = nan_buf(no);
        float *dx = dev(x, ni), *dw = dev(w, nw), *db = dev(b, C), *dout = dev_nan(no);
        fs_nn_ref.patch_embed_forward(o, x, w, b, B, Cin, Hi, Wi, P, C);
        fs_nn_cuda.patch_embed_forward(dout, dx, dw, db, B, Cin, Hi, Wi, P, C);
        char label[128];
        snprintf(label, sizeof label, "forward B%zu Cin%zu %zux%zu P%zu C%zu", B, Cin, Hi, Wi, P, C);
        COMPARE(label, dout, o, no);
        float *g = rand_buf(no, -1, 1), *dg = dev(g, no);
        for (int mi = 0; mi < N_MASKS; mi++) {
            int m = masks[mi];
            grad gi = grad_new(ni, m & 1), gw = grad_new(nw, m & 2), gb = grad_new(C, m & 4);
            fs_nn_ref.patch_embed_backward(gi.h, gw.h, gb.h, g, x, w, B, Cin, Hi, Wi, P, C);
            fs_nn_cuda.patch_embed_backward(gi.d, gw.d, gb.d, dg, dx, dw, B, Cin, Hi, Wi, P, C);
            snprintf(label, sizeof label, "backward B%zu Cin%zu %zux%zu P%zu C%zu %s", B, Cin, Hi, Wi, P, C,
                     mask_name(m));
            if (gi.h) COMPARE(label, gi.d, gi.h, ni);
            if (gw.h) COMPARE(label, gw.d, gw.h, nw);
            if (gb.h) COMPARE(label, gb.d, gb.h, C);
            grad_free(&gi), grad_free(&gw), grad_free(&gb);
        }
        free(x), free(w), free(b), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dw), fs_cuda_free(db), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

static void conv3x3(void) {
    GPU_ONLY();
    static const size_t cases[][5] = {
        /* B, H, W, Cin, Cout */
        {1, 1, 1, 1, 1}, {2, 5, 7, 3, 4}, {1, 16, 16, 32, 17}, {1, 1, 9, 5, 2}, {1, 32, 32, 64, 64},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        size_t ni = B * H * W * Cin, nw = Cout * Cin * 9, no = B * H * W * Cout;
        float *x = rand_buf(ni, -1, 1), *w = rand_buf(nw, -1, 1), *o = nan_buf(no);
        float *dx = dev(x, ni), *dw = dev(w, nw), *dout = dev_nan(no);
        fs_nn_ref.conv3x3_forward(o, x, w, B, H, W, Cin, Cout);
        fs_nn_cuda.conv3x3_forward(dout, dx, dw, B, H, W, Cin, Cout);
        char label[128];
        snprintf(label, sizeof label, "forward B%zu %zux%zu Cin%zu Cout%zu", B, H, W, Cin, Cout);
        COMPARE(label, dout, o, no);
        float *g = rand_buf(no, -1, 1), *dg = dev(g, no);
        for (int mi = 0; mi < 3; mi++) { /* two gradients: all, each alone */
            int m = masks[mi];
            grad gi = grad_new(ni, m & 1), gw = grad_new(nw, m & 2);
            fs_nn_ref.conv3x3_backward(gi.h, gw.h, g, x, w, B, H, W, Cin, Cout);
            fs_nn_cuda.conv3x3_backward(gi.d, gw.d, dg, dx, dw, B, H, W, Cin, Cout);
            snprintf(label, sizeof label, "backward B%zu %zux%zu Cin%zu Cout%zu %s", B, H, W, Cin, Cout,
                     mask_name(m));
            if (gi.h) COMPARE(label, gi.d, gi.h, ni);
            if (gw.h) COMPARE(label, gw.d, gw.h, nw);
            grad_free(&gi), grad_free(&gw);
        }
        free(x), free(w), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dw), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

static void conv_transpose2x2(void) {
    GPU_ONLY();
    static const size_t cases[][6] = {
        /* B, H, W, Cin, Cout, bias */
        {1, 1, 1, 1, 1, 1}, {2, 3, 5, 7, 6, 1}, {1, 8, 8, 32, 16, 0}, {1, 32, 32, 256, 64, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        size_t ni = B * H * W * Cin, nw = Cin * Cout * 4, no = B * 4 * H * W * Cout;
        float *x = rand_buf(ni, -1, 1), *w = rand_buf(nw, -1, 1), *b = cases[c][5] ? rand_buf(Cout, -1, 1) : NULL;
        float *o = nan_buf(no), *dx = dev(x, ni), *dw = dev(w, nw), *db = b ? dev(b, Cout) : NULL;
        float *dout = dev_nan(no);
        fs_nn_ref.conv_transpose2x2_forward(o, x, w, b, B, H, W, Cin, Cout);
        fs_nn_cuda.conv_transpose2x2_forward(dout, dx, dw, db, B, H, W, Cin, Cout);
        char label[128];
        snprintf(label, sizeof label, "forward B%zu %zux%zu Cin%zu Cout%zu%s", B, H, W, Cin, Cout,
                 b ? "" : " nobias");
        COMPARE(label, dout, o, no);
        float *g = rand_buf(no, -1, 1), *dg = dev(g, no);
        for (int mi = 0; mi < N_MASKS; mi++) {
            int m = masks[mi];
            grad gi = grad_new(ni, m & 1), gw = grad_new(nw, m & 2), gb = grad_new(Cout, m & 4);
            fs_nn_ref.conv_transpose2x2_backward(gi.h, gw.h, gb.h, g, x, w, B, H, W, Cin, Cout);
            fs_nn_cuda.conv_transpose2x2_backward(gi.d, gw.d, gb.d, dg, dx, dw, B, H, W, Cin, Cout);
            snprintf(label, sizeof label, "backward B%zu %zux%zu Cin%zu Cout%zu %s", B, H, W, Cin, Cout,
                     mask_name(m));
            if (gi.h) COMPARE(label, gi.d, gi.h, ni);
            if (gw.h) COMPARE(label, gw.d, gw.h, nw);
            if (gb.h) COMPARE(label, gb.d, gb.h, Cout);
            grad_free(&gi), grad_free(&gw), grad_free(&gb);
        }
        free(x), free(w), free(b), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dw), fs_cuda_free(db), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

static void resize_bilinear(void) {
    GPU_ONLY();
    static const size_t cases[][5] = {
        /* N, Hi, Wi, Ho, Wo */
        {1, 1, 1, 1, 1},     {2, 5, 7, 5, 7},   {1, 4, 6, 16, 24},   {3, 17, 9, 5, 4},
        {2, 7, 3, 11, 13},   {1, 1, 5, 3, 9},   {1, 256, 256, 1024, 1024}, {1, 1024, 1024, 256, 256},
        {4, 64, 64, 224, 224}, {1, 9, 2, 9, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t N = cases[c][0], Hi = cases[c][1], Wi = cases[c][2], Ho = cases[c][3], Wo = cases[c][4];
        size_t ni = N * Hi * Wi, no = N * Ho * Wo;
        float *x = rand_buf(ni, -1, 1), *o = nan_buf(no), *dx = dev(x, ni), *dout = dev_nan(no);
        fs_nn_ref.resize_bilinear_forward(o, x, N, Hi, Wi, Ho, Wo);
        fs_nn_cuda.resize_bilinear_forward(dout, dx, N, Hi, Wi, Ho, Wo);
        char label[128];
        snprintf(label, sizeof label, "forward N%zu %zux%zu -> %zux%zu", N, Hi, Wi, Ho, Wo);
        COMPARE(label, dout, o, no);
        float *g = rand_buf(no, -1, 1), *dg = dev(g, no);
        grad gi = grad_new(ni, 1);
        fs_nn_ref.resize_bilinear_backward(gi.h, g, N, Hi, Wi, Ho, Wo);
        fs_nn_cuda.resize_bilinear_backward(gi.d, dg, N, Hi, Wi, Ho, Wo);
        snprintf(label, sizeof label, "backward N%zu %zux%zu -> %zux%zu", N, Hi, Wi, Ho, Wo);
        COMPARE(label, gi.d, gi.h, ni);
        grad_free(&gi);
        free(x), free(o), free(g);
        fs_cuda_free(dx), fs_cuda_free(dout), fs_cuda_free(dg);
    }
}

/* ---- the cuBLAS kernels under the tensor-core math modes ---- */

static void with_math(const char *mode, double t, void (*fn)(void)) {
    if (fs_nn_cuda_set_math(mode) != FS_OK) {
        printf("FAIL %s: %s\n", test_current, fs_error_msg());
        test_failed_flag = 1;
        return;
    }
    double saved = tol;
    tol = t;
    fn();
    tol = saved;
    fs_nn_cuda_set_math("fp32");
}

/* TF32 rounds the inputs to 10 mantissa bits, BF16 to 7 */
static void linear_tf32(void) { GPU_ONLY(); with_math("tf32", 5e-3, linear); }
static void conv_tf32(void) {
    GPU_ONLY();
    with_math("tf32", 5e-3, patch_embed);
    if (!test_failed_flag) with_math("tf32", 5e-3, conv3x3);
    if (!test_failed_flag) with_math("tf32", 5e-3, conv_transpose2x2);
}
static void linear_bf16(void) { GPU_ONLY(); with_math("bf16", 4e-2, linear); }
static void conv_bf16(void) {
    GPU_ONLY();
    with_math("bf16", 4e-2, patch_embed);
    if (!test_failed_flag) with_math("bf16", 4e-2, conv3x3);
    if (!test_failed_flag) with_math("bf16", 4e-2, conv_transpose2x2);
}

/* ---- the table's memory entries, tensor glue and optimiser ---- */

/* 1 when the device buffer d[n] equals want[n] bit for bit; the first
 * difference goes to cmp_msg. */
static int same_dev(const char *label, const float *d, const float *want, size_t n) {
    float *got = nan_buf(n);
    fs_nn_cuda.download(got, d, n * sizeof(float));
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float))) bad = i;
    printf("# %s %s: %s\n", test_current, label, bad == n ? "bitwise equal" : "differs");
    if (bad < n)
        snprintf(cmp_msg, sizeof cmp_msg, "%s: element %zu of %zu is %.9g, reference %.9g", label, bad, n,
                 (double)got[bad], (double)want[bad]);
    free(got);
    return bad == n;
}

/* 1 when every |d[i] - want[i]| <= rel * |want[i]| (exact where want is 0) */
static int rel_dev(const char *label, const float *d, const float *want, size_t n, double rel) {
    float *got = nan_buf(n);
    fs_nn_cuda.download(got, d, n * sizeof(float));
    double worst = 0;
    size_t at = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]), lim = rel * fabs((double)want[i]);
        if (!(e <= lim)) ok = 0;
        double r = want[i] != 0 ? e / fabs((double)want[i]) : (e == 0 ? 0 : INFINITY);
        if (!(r <= worst)) worst = r, at = i;
    }
    printf("# %s %s: max rel err %.3g\n", test_current, label, worst);
    snprintf(cmp_msg, sizeof cmp_msg, "%s: element %zu of %zu is %.9g, reference %.9g (rel err %.3g > %.3g)", label,
             at, n, n ? (double)got[at] : 0.0, n ? (double)want[at] : 0.0, worst, rel);
    free(got);
    return ok;
}

#define SAME(label, d, want, n) CHECKF(same_dev(label, d, want, n), "%s", cmp_msg)
#define NEAR_REL(label, d, want, n, rel) CHECKF(rel_dev(label, d, want, n, rel), "%s", cmp_msg)

/* device copy of h[n] through the table's own entries */
static float *tdev(const float *h, size_t n) {
    float *d = fs_nn_cuda.alloc(n * sizeof(float));
    if (!d) die_here("alloc");
    if (h) fs_nn_cuda.upload(d, h, n * sizeof(float));
    return d;
}

static void table_memory(void) {
    GPU_ONLY();
    const fs_nn_ops *c = &fs_nn_cuda;
    size_t n = 1000003;
    /* alloc zeroes, at an odd byte count too */
    unsigned char *zb = malloc(4099), *one = malloc(4099);
    void *z = c->alloc(4099);
    CHECK(z != NULL);
    memset(one, 0xab, 4099);
    c->download(one, z, 4099);
    memset(zb, 0, 4099);
    CHECK(!memcmp(one, zb, 4099));
    c->free(z);
    void *z0 = c->alloc(0);
    CHECK(z0 != NULL);
    c->free(z0);
    c->free(NULL);
    free(zb), free(one);
    /* upload, download, copy: bitwise */
    float *h = rand_buf(n, -5, 5), *want = malloc(n * sizeof(float));
    float *a = tdev(h, n), *b = tdev(NULL, n);
    SAME("upload/download", a, h, n);
    c->copy(b, a, n * sizeof(float));
    SAME("copy", b, h, n);
    /* zero an odd byte range inside: 4 * 1000 + 3 bytes from float 17 */
    memcpy(want, h, n * sizeof(float));
    memset((char *)(want + 17), 0, 4003);
    c->zero((char *)(b + 17), 4003);
    SAME("zero of 4003 bytes at float 17", b, want, n);
    /* an overlapping copy moves like memmove, both directions */
    memcpy(want, h, n * sizeof(float));
    memmove(want + 5, want, (n - 5) * sizeof(float));
    c->copy(a + 5, a, (n - 5) * sizeof(float));
    SAME("overlapping copy forward", a, want, n);
    memmove(want, want + 1000, (n - 1000) * sizeof(float));
    c->copy(a, a + 1000, (n - 1000) * sizeof(float));
    SAME("overlapping copy backward", a, want, n);
    /* n == 0 does nothing */
    c->copy(b, a, 0), c->zero(b, 0), c->upload(b, h, 0), c->download(want, b, 0);
    c->free(a), c->free(b);
    free(h), free(want);
}

static void glue_pointwise(void) {
    GPU_ONLY();
    static const size_t sizes[] = {1, 17, 1000003};
    for (size_t k = 0; k < 3; k++) {
        size_t n = sizes[k];
        float *a = rand_buf(n, -3, 3), *b = rand_buf(n, -3, 3), *o = nan_buf(n);
        float *da = tdev(a, n), *db = tdev(b, n), *dout = dev_nan(n);
        char label[64];
        fs_nn_ref.add(o, a, b, n);
        fs_nn_cuda.add(dout, da, db, n);
        snprintf(label, sizeof label, "add n%zu", n);
        SAME(label, dout, o, n);
        /* in place: out == a */
        fs_nn_cuda.add(da, da, db, n);
        snprintf(label, sizeof label, "add in place n%zu", n);
        SAME(label, da, o, n);
        fs_nn_ref.scale(o, -0.37f, n);
        fs_nn_cuda.scale(da, -0.37f, n);
        snprintf(label, sizeof label, "scale n%zu", n);
        SAME(label, da, o, n);
        free(a), free(b), free(o);
        fs_cuda_free(da), fs_cuda_free(db), fs_cuda_free(dout);
    }
    /* n == 0 launches nothing and touches nothing */
    fs_nn_cuda.add(NULL, NULL, NULL, 0);
    fs_nn_cuda.scale(NULL, 2.0f, 0);
    CHECK(fs_cuda_sync() == FS_OK);
}

static void glue_rows(void) {
    GPU_ONLY();
    static const size_t cases[][2] = {
        /* M, N */
        {1, 1}, {1, 5}, {37, 1000}, {1000, 7}, {3, 200003}, {4096, 256}, {70001, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t M = cases[k][0], N = cases[k][1];
        float *x = rand_buf(M * N, -1, 1), *row = rand_buf(N, -1, 1), *acc = rand_buf(N, -1, 1);
        float *dx = tdev(x, M * N), *drow = tdev(row, N), *dacc = tdev(acc, N);
        char label[64];
        fs_nn_ref.add_rows(x, row, M, N);
        fs_nn_cuda.add_rows(dx, drow, M, N);
        snprintf(label, sizeof label, "add_rows M%zu N%zu", M, N);
        SAME(label, dx, x, M * N);
        /* the adjoint into a pre-filled row (it accumulates) */
        fs_nn_ref.sum_rows(acc, x, M, N);
        fs_nn_cuda.sum_rows(dacc, dx, M, N);
        snprintf(label, sizeof label, "sum_rows M%zu N%zu", M, N);
        NEAR_REL(label, dacc, acc, N, 1e-6);
        free(x), free(row), free(acc);
        fs_cuda_free(dx), fs_cuda_free(drow), fs_cuda_free(dacc);
    }
}

static void glue_cols(void) {
    GPU_ONLY();
    static const size_t cases[][4] = {
        /* M, ld, off, N */
        {1, 1, 0, 1}, {33, 100, 17, 50}, {5, 9, 0, 9}, {1000, 768, 512, 256}, {7, 3000, 2999, 1}, {2, 70000, 3, 65537},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t M = cases[k][0], ld = cases[k][1], off = cases[k][2], N = cases[k][3];
        float *wide = rand_buf(M * ld, -2, 2), *narrow = rand_buf(M * N, -2, 2), *o = nan_buf(M * N);
        float *dwide = tdev(wide, M * ld), *dnarrow = tdev(narrow, M * N), *dout = dev_nan(M * N);
        char label[96];
        fs_nn_ref.add_cols(wide, ld, off, narrow, 0.3f, M, N);
        fs_nn_cuda.add_cols(dwide, ld, off, dnarrow, 0.3f, M, N);
        snprintf(label, sizeof label, "add_cols M%zu ld%zu off%zu N%zu", M, ld, off, N);
        SAME(label, dwide, wide, M * ld);
        fs_nn_ref.take_cols(o, wide, ld, off, -1.7f, M, N);
        fs_nn_cuda.take_cols(dout, dwide, ld, off, -1.7f, M, N);
        snprintf(label, sizeof label, "take_cols M%zu ld%zu off%zu N%zu", M, ld, off, N);
        SAME(label, dout, o, M * N);
        free(wide), free(narrow), free(o);
        fs_cuda_free(dwide), fs_cuda_free(dnarrow), fs_cuda_free(dout);
    }
}

static void glue_windows(void) {
    GPU_ONLY();
    static const size_t cases[][4] = {
        /* B, g, ws, C: padded grids, an exact fit, SAM's 64 / 14 */
        {1, 1, 1, 1}, {2, 14, 4, 5}, {1, 8, 4, 3}, {3, 5, 7, 2}, {1, 64, 14, 32}, {2, 13, 1, 4},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t B = cases[k][0], g = cases[k][1], ws = cases[k][2], C = cases[k][3];
        size_t nw = (g + ws - 1) / ws, nx = B * g * g * C, nwin = B * nw * nw * ws * ws * C;
        float *x = rand_buf(nx, -1, 1), *win = nan_buf(nwin), *back = nan_buf(nx);
        float *dx = tdev(x, nx), *dwin = dev_nan(nwin), *dback = dev_nan(nx);
        char label[96];
        fs_nn_ref.window_partition(win, x, B, g, ws, C);
        fs_nn_cuda.window_partition(dwin, dx, B, g, ws, C);
        snprintf(label, sizeof label, "partition B%zu g%zu ws%zu C%zu", B, g, ws, C);
        SAME(label, dwin, win, nwin);
        /* acc 0 over a NaN buffer: every token written */
        fs_nn_ref.window_unpartition(back, win, B, g, ws, C, 0);
        fs_nn_cuda.window_unpartition(dback, dwin, B, g, ws, C, 0);
        snprintf(label, sizeof label, "unpartition B%zu g%zu ws%zu C%zu", B, g, ws, C);
        SAME(label, dback, back, nx);
        CHECK(!memcmp(back, x, nx * sizeof(float))); /* the reference's round trip */
        /* acc 1: onto a random residual */
        float *win2 = rand_buf(nwin, -1, 1), *dwin2 = tdev(win2, nwin);
        fs_nn_ref.window_unpartition(x, win2, B, g, ws, C, 1);
        fs_nn_cuda.window_unpartition(dx, dwin2, B, g, ws, C, 1);
        snprintf(label, sizeof label, "unpartition acc B%zu g%zu ws%zu C%zu", B, g, ws, C);
        SAME(label, dx, x, nx);
        free(x), free(win), free(back), free(win2);
        fs_cuda_free(dx), fs_cuda_free(dwin), fs_cuda_free(dback), fs_cuda_free(dwin2);
    }
}

static void glue_crop(void) {
    GPU_ONLY();
    static const size_t cases[][4] = {
        /* h, w, ho, wo */
        {1, 1, 1, 1}, {37, 41, 30, 29}, {9, 5, 9, 5}, {1024, 1024, 1000, 700}, {6, 3, 2, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t h = cases[k][0], w = cases[k][1], ho = cases[k][2], wo = cases[k][3];
        float *x = rand_buf(h * w, -1, 1), *o = nan_buf(ho * wo);
        float *dx = tdev(x, h * w), *dout = dev_nan(ho * wo);
        char label[96];
        fs_nn_ref.crop(o, x, h, w, ho, wo);
        fs_nn_cuda.crop(dout, dx, h, w, ho, wo);
        snprintf(label, sizeof label, "crop %zux%zu -> %zux%zu", h, w, ho, wo);
        SAME(label, dout, o, ho * wo);
        /* in place, as the host's memmove allows */
        fs_nn_cuda.crop(dx, dx, h, w, ho, wo);
        snprintf(label, sizeof label, "crop in place %zux%zu -> %zux%zu", h, w, ho, wo);
        SAME(label, dx, o, ho * wo);
        free(x), free(o);
        fs_cuda_free(dx), fs_cuda_free(dout);
    }
}

static void adamw(void) {
    GPU_ONLY();
    static const size_t sizes[] = {1, 1000, 100003};
    const double hyper[5] = {1e-3, 0.9, 0.999, 1e-8, 0.01};
    for (size_t k = 0; k < 3; k++) {
        size_t n = sizes[k];
        float *p = rand_buf(n, -1, 1), *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
        float *dp = tdev(p, n), *dm = tdev(NULL, n), *dv = tdev(NULL, n);
        char label[96];
        for (size_t t = 1; t <= 6; t++) {
            /* gradients of varied scale, a few exactly zero */
            float *g = rand_buf(n, -1, 1);
            for (size_t i = 0; i < n; i++) g[i] = i % 97 == 5 ? 0.0f : g[i] * (float)(1 + i % 7) * 0.1f;
            float *dg = tdev(g, n);
            fs_nn_ref.adamw_update(p, g, m, v, n, hyper, t);
            fs_nn_cuda.adamw_update(dp, dg, dm, dv, n, hyper, t);
            free(g), fs_cuda_free(dg);
        }
        snprintf(label, sizeof label, "p n%zu after 6 steps", n);
        NEAR_REL(label, dp, p, n, 1e-6);
        snprintf(label, sizeof label, "m n%zu after 6 steps", n);
        NEAR_REL(label, dm, m, n, 1e-6);
        snprintf(label, sizeof label, "v n%zu after 6 steps", n);
        NEAR_REL(label, dv, v, n, 1e-6);
        free(p), free(m), free(v);
        fs_cuda_free(dp), fs_cuda_free(dm), fs_cuda_free(dv);
    }
    fs_nn_cuda.adamw_update(NULL, NULL, NULL, NULL, 0, hyper, 1);
}

/* The sum of squares with a compensated (Neumaier) sum: accurate to a few
 * ulps, where the reference's sequential sum drifts by about n * 1e-18
 * relative (7e-13 at n = 1e6). */
static double sumsq_accurate(const float *x, size_t n) {
    double s = 0, c = 0;
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i] * x[i], t = s + v;
        c += fabs(s) >= fabs(v) ? (s - t) + v : (v - t) + s;
        s = t;
    }
    return s + c;
}

static void sumsq(void) {
    GPU_ONLY();
    static const size_t sizes[] = {1, 255, 257, 100003, 1000000, 3000017};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        float *x = rand_buf(n, -3, 3), *dx = tdev(x, n);
        double want = fs_nn_ref.sumsq(x, n), exact = sumsq_accurate(x, n);
        double got = fs_nn_cuda.sumsq(dx, n), again = fs_nn_cuda.sumsq(dx, n);
        printf("# %s n%zu: %.17g, reference %.17g (rel err %.3g), compensated %.17g (rel err %.3g)\n", test_current, n,
               got, want, fabs(got - want) / want, exact, fabs(got - exact) / exact);
        if (n <= 1000000) CHECKF(fabs(got - want) <= 1e-12 * want, "n %zu: %.17g vs reference %.17g", n, got, want);
        CHECKF(fabs(got - exact) <= 1e-14 * exact, "n %zu: %.17g vs compensated sum %.17g", n, got, exact);
        CHECKF(memcmp(&got, &again, sizeof got) == 0, "n %zu: %.17g then %.17g (not repeatable)", n, got, again);
        /* it waits for the kernels queued before it */
        fs_nn_cuda.scale(dx, 2.0f, n);
        double scaled = fs_nn_cuda.sumsq(dx, n);
        CHECKF(fabs(scaled - 4 * exact) <= 4e-14 * exact, "n %zu after scale 2: %.17g vs %.17g", n, scaled,
               4 * exact);
        free(x), fs_cuda_free(dx);
    }
    CHECK(fs_nn_cuda.sumsq(NULL, 0) == 0.0);
}

int main(void) {
    fs_rng_init(&rng, 7, 0);
    gpu = fs_cuda_available();
    RUN(tables);
    RUN(memory);
    RUN(linear);
    RUN(linear_plain);
    RUN(linear_unaligned);
    RUN(layernorm);
    RUN(activations);
    RUN(attention);
    RUN(attention_relpos);
    RUN(attention_global);
    RUN(patch_embed);
    RUN(conv3x3);
    RUN(conv_transpose2x2);
    RUN(resize_bilinear);
    RUN(linear_tf32);
    RUN(conv_tf32);
    RUN(linear_bf16);
    RUN(conv_bf16);
    RUN(table_memory);
    RUN(glue_pointwise);
    RUN(glue_rows);
    RUN(glue_cols);
    RUN(glue_windows);
    RUN(glue_crop);
    RUN(adamw);
    RUN(sumsq);
    TEST_EXIT();
}
