/* gpu: every entry of the CUDA backend (fs_nn_cuda) against the reference
 * backend on random inputs: forward and backward, odd sizes, single
 * elements, batches, pre-filled gradient buffers (the backward entries
 * accumulate) and each gradient asked for alone (the others NULL), the
 * fused attention at the global blocks' real size (64 x 64 tokens, 12 heads
 * of 64 dims), and the linear and convolution kernels again under the TF32
 * and BF16 math modes with looser tolerances.
 * Tolerance: max |gpu - ref| <= tol * (1 + max |ref|), tol 1e-4 in fp32.
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

int main(void) {
    fs_rng_init(&rng, 7, 0);
    gpu = fs_cuda_available();
    RUN(tables);
    RUN(memory);
    RUN(linear);
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
    TEST_EXIT();
}
