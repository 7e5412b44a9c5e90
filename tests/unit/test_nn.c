/* nn: every entry of the fast CPU backend against the reference backend
 * (its naive twin) on random inputs, at sizes that are multiples of nothing,
 * single elements, batches, and the blocking edge cases of each kernel
 * (several row blocks of attention, several im2col chunks). Tolerance:
 * max |cpu - ref| <= 1e-4 * (1 + max |ref|) per output, the golden files'
 * forward tolerance. Each case prints its max error as a "#" line.
 * The backward entries are checked the same way, on pre-filled gradient
 * buffers (they accumulate) and with each gradient asked for alone (the
 * others NULL). */
#include "test.h"

#include "core/rng.h"
#include "nn/nn.h"

static fs_rng rng;

static float *rand_buf(size_t n, double lo, double hi) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)fs_rng_range(&rng, lo, hi);
    return p;
}

static float *nan_buf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = NAN; /* an entry that skips an output shows up */
    return p;
}

/* max |a - b| and max |b|; NaN anywhere makes the error infinite */
static double max_err(const float *a, const float *b, size_t n, double *scale) {
    double e = 0, s = 0;
    *scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d == d)) return INFINITY;
        if (d > e) e = d;
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    *scale = s;
    return e;
}

/* Compares n outputs; a macro so that CHECKF returns from the test. */
#define COMPARE(label, got, want, n)                                                                    \
    do {                                                                                                \
        double scale_, err_ = max_err(got, want, n, &scale_);                                           \
        printf("# %s %s: max err %.3g (max |ref| %.3g)\n", test_current, label, err_, scale_);          \
        CHECKF(err_ <= 1e-4 * (1.0 + scale_), "%s: max err %.3g, max |ref| %.3g", label, err_, scale_); \
    } while (0)

static void backend_lookup(void) {
    CHECK(fs_nn_backend("ref") == &fs_nn_ref);
    CHECK(fs_nn_backend("cpu") == &fs_nn_cpu);
    CHECK(fs_nn_backend("cuda") == NULL);
    CHECK(fs_nn_backend("") == NULL);
    CHECK(fs_nn_backend(NULL) == NULL);
    CHECK(!strcmp(fs_nn_cpu.name, "cpu") && !strcmp(fs_nn_ref.name, "ref"));
    /* every forward entry filled in (backward_entries checks the others) */
    const fs_nn_ops *c = &fs_nn_cpu;
    CHECK(c->linear_forward && c->layernorm_forward && c->gelu_forward && c->relu_forward);
    CHECK(c->attention_forward && c->attention_relpos_forward && c->patch_embed_forward);
    CHECK(c->conv3x3_forward && c->conv_transpose2x2_forward && c->resize_bilinear_forward);
}

static void linear(void) {
    static const size_t cases[][4] = {
        /* M, K, N, bias */
        {1, 1, 1, 1},   {7, 13, 5, 1},    {37, 65, 129, 0}, {300, 77, 33, 1},
        {20, 512, 1000, 1}, /* few rows: split by columns, N not a multiple of 16 */
        {517, 96, 130, 1},  /* split by rows */
        {3, 1000, 2, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], K = cases[c][1], N = cases[c][2];
        float *x = rand_buf(M * K, -1, 1), *w = rand_buf(N * K, -1, 1);
        float *b = cases[c][3] ? rand_buf(N, -1, 1) : NULL;
        float *o1 = nan_buf(M * N), *o2 = nan_buf(M * N);
        fs_nn_ref.linear_forward(o1, x, w, b, M, K, N);
        fs_nn_cpu.linear_forward(o2, x, w, b, M, K, N);
        char label[64];
        snprintf(label, sizeof label, "M%zu K%zu N%zu%s", M, K, N, b ? "" : " nobias");
        COMPARE(label, o2, o1, M * N);
        free(x), free(w), free(b), free(o1), free(o2);
    }
}

static void layernorm(void) {
    static const size_t cases[][2] = {{1, 1}, {13, 7}, {100, 768}, {3, 33}, {4097, 32}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], C = cases[c][1];
        /* an offset mean checks that the variance is taken about the mean */
        float *x = rand_buf(M * C, 40, 60), *w = rand_buf(C, -2, 2), *b = rand_buf(C, -1, 1);
        float *o1 = nan_buf(M * C), *o2 = nan_buf(M * C);
        fs_nn_ref.layernorm_forward(o1, x, w, b, M, C, 1e-6f);
        fs_nn_cpu.layernorm_forward(o2, x, w, b, M, C, 1e-6f);
        char label[64];
        snprintf(label, sizeof label, "M%zu C%zu", M, C);
        COMPARE(label, o2, o1, M * C);
        free(x), free(w), free(b), free(o1), free(o2);
    }
}

static void activations(void) {
    static const size_t sizes[] = {1, 17, 100003};
    for (size_t c = 0; c < 3; c++) {
        size_t n = sizes[c];
        float *x = rand_buf(n, -9, 9), *o1 = nan_buf(n), *o2 = nan_buf(n);
        char label[64];
        fs_nn_ref.gelu_forward(o1, x, n);
        fs_nn_cpu.gelu_forward(o2, x, n);
        snprintf(label, sizeof label, "gelu n%zu", n);
        COMPARE(label, o2, o1, n);
        /* in place */
        memcpy(o2, x, n * sizeof(float));
        fs_nn_cpu.gelu_forward(o2, o2, n);
        snprintf(label, sizeof label, "gelu in place n%zu", n);
        COMPARE(label, o2, o1, n);
        fs_nn_ref.relu_forward(o1, x, n);
        memcpy(o2, x, n * sizeof(float));
        fs_nn_cpu.relu_forward(o2, o2, n);
        snprintf(label, sizeof label, "relu n%zu", n);
        COMPARE(label, o2, o1, n);
        free(x), free(o1), free(o2);
    }
    /* GELU's tails and zero exactly */
    float x[5] = {0.0f, -30.0f, 30.0f, -5.5f, 1e-8f}, o[5];
    fs_nn_cpu.gelu_forward(o, x, 5);
    CHECK(o[0] == 0.0f && o[1] == 0.0f && o[2] == 30.0f);
    CHECK_NEAR(o[3], -5.5 * 0.5 * erfc(5.5 / sqrt(2.0)), 1e-6);
}

static void attention(void) {
    static const size_t cases[][5] = {
        /* B, Nq, Nk, H, D */
        {1, 1, 1, 1, 1}, {2, 7, 9, 3, 5}, {1, 300, 5, 2, 16}, {2, 5, 1100, 4, 8},
        {1, 1100, 37, 1, 3}, /* several row blocks with a short last one avoided */
        {1, 4096, 7, 8, 16}, /* the decoder's image-to-token shape */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Nq = cases[c][1], Nk = cases[c][2], H = cases[c][3], D = cases[c][4];
        size_t C = H * D;
        float *q = rand_buf(B * Nq * C, -2, 2), *k = rand_buf(B * Nk * C, -2, 2), *v = rand_buf(B * Nk * C, -1, 1);
        float *o1 = nan_buf(B * Nq * C), *o2 = nan_buf(B * Nq * C);
        float scale = 1.0f / sqrtf((float)D);
        fs_nn_ref.attention_forward(o1, q, k, v, B, Nq, Nk, H, D, scale);
        fs_nn_cpu.attention_forward(o2, q, k, v, B, Nq, Nk, H, D, scale);
        char label[80];
        snprintf(label, sizeof label, "B%zu Nq%zu Nk%zu H%zu D%zu", B, Nq, Nk, H, D);
        COMPARE(label, o2, o1, B * Nq * C);
        free(q), free(k), free(v), free(o1), free(o2);
    }
}

static void attention_relpos(void) {
    static const size_t cases[][6] = {
        /* B, Hg, Wg, H, D, rel */
        {1, 1, 1, 1, 1, 1},  {4, 3, 3, 2, 16, 1}, /* the tiny config's 3x3 windows */
        {2, 5, 7, 3, 5, 1},  {3, 14, 14, 2, 64, 1}, /* ViT-B's windows */
        {1, 64, 64, 2, 8, 1},                        /* the global grid: many row blocks */
        {2, 9, 4, 2, 6, 1},  {2, 4, 6, 3, 7, 0},    /* no relative positions */
        {1, 37, 29, 1, 4, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Hg = cases[c][1], Wg = cases[c][2], H = cases[c][3], D = cases[c][4];
        size_t N = Hg * Wg, C = H * D;
        /* large enough values that the softmax needs its max subtraction */
        float *qkv = rand_buf(B * N * 3 * C, -3, 3);
        float *rh = cases[c][5] ? rand_buf((2 * Hg - 1) * D, -1, 1) : NULL;
        float *rw = cases[c][5] ? rand_buf((2 * Wg - 1) * D, -1, 1) : NULL;
        float *o1 = nan_buf(B * N * C), *o2 = nan_buf(B * N * C);
        float scale = 1.0f / sqrtf((float)D);
        fs_nn_ref.attention_relpos_forward(o1, qkv, rh, rw, B, Hg, Wg, H, D, scale);
        fs_nn_cpu.attention_relpos_forward(o2, qkv, rh, rw, B, Hg, Wg, H, D, scale);
        char label[80];
        snprintf(label, sizeof label, "B%zu grid %zux%zu H%zu D%zu%s", B, Hg, Wg, H, D, rh ? "" : " norel");
        COMPARE(label, o2, o1, B * N * C);
        free(qkv), free(rh), free(rw), free(o1), free(o2);
    }
}

static void patch_embed(void) {
    static const size_t cases[][6] = {
        /* B, Cin, Hi, Wi, P, C */
        {2, 3, 16, 24, 8, 5}, {1, 1, 3, 3, 1, 7}, {1, 3, 32, 32, 16, 33}, {3, 2, 10, 15, 5, 19},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Cin = cases[c][1], Hi = cases[c][2], Wi = cases[c][3], P = cases[c][4],
               C = cases[c][5];
        size_t no = B * (Hi / P) * (Wi / P) * C;
        float *x = rand_buf(B * Cin * Hi * Wi, -2, 2), *w = rand_buf(C * Cin * P * P, -1, 1), *b = rand_buf(C, -1, 1);
        float *o1 = nan_buf(no), *o2 = nan_buf(no);
        fs_nn_ref.patch_embed_forward(o1, x, w, b, B, Cin, Hi, Wi, P, C);
        fs_nn_cpu.patch_embed_forward(o2, x, w, b, B, Cin, Hi, Wi, P, C);
        char label[80];
        snprintf(label, sizeof label, "B%zu Cin%zu %zux%zu P%zu C%zu", B, Cin, Hi, Wi, P, C);
        COMPARE(label, o2, o1, no);
        free(x), free(w), free(b), free(o1), free(o2);
    }
}

static void conv3x3(void) {
    static const size_t cases[][5] = {
        /* B, H, W, Cin, Cout */
        {1, 1, 1, 1, 1}, {2, 5, 7, 3, 4}, {1, 9, 11, 17, 6},
        {1, 40, 50, 256, 8}, /* several im2col chunks */
        {3, 2, 1, 5, 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        float *x = rand_buf(B * H * W * Cin, -1, 1), *w = rand_buf(Cout * Cin * 9, -1, 1);
        float *o1 = nan_buf(B * H * W * Cout), *o2 = nan_buf(B * H * W * Cout);
        fs_nn_ref.conv3x3_forward(o1, x, w, B, H, W, Cin, Cout);
        fs_nn_cpu.conv3x3_forward(o2, x, w, B, H, W, Cin, Cout);
        char label[80];
        snprintf(label, sizeof label, "B%zu %zux%zu Cin%zu Cout%zu", B, H, W, Cin, Cout);
        COMPARE(label, o2, o1, B * H * W * Cout);
        free(x), free(w), free(o1), free(o2);
    }
}

static void conv_transpose2x2(void) {
    static const size_t cases[][5] = {
        /* B, H, W, Cin, Cout */
        {1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {1, 16, 16, 32, 8},
        {1, 30, 30, 8, 512}, /* several chunks */
        {2, 7, 3, 13, 11},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        size_t no = B * 4 * H * W * Cout;
        float *x = rand_buf(B * H * W * Cin, -1, 1), *w = rand_buf(Cin * Cout * 4, -1, 1), *b = rand_buf(Cout, -1, 1);
        float *o1 = nan_buf(no), *o2 = nan_buf(no);
        fs_nn_ref.conv_transpose2x2_forward(o1, x, w, b, B, H, W, Cin, Cout);
        fs_nn_cpu.conv_transpose2x2_forward(o2, x, w, b, B, H, W, Cin, Cout);
        char label[80];
        snprintf(label, sizeof label, "B%zu %zux%zu Cin%zu Cout%zu", B, H, W, Cin, Cout);
        COMPARE(label, o2, o1, no);
        free(x), free(w), free(b), free(o1), free(o2);
    }
}

static void resize_bilinear(void) {
    static const size_t cases[][5] = {
        /* N, Hi, Wi, Ho, Wo */
        {2, 5, 7, 11, 3}, {1, 1, 1, 4, 4}, {3, 32, 32, 70, 60}, {1, 256, 256, 64, 64}, {2, 9, 13, 9, 13},
        {1, 3, 200, 1, 7},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t N = cases[c][0], Hi = cases[c][1], Wi = cases[c][2], Ho = cases[c][3], Wo = cases[c][4];
        float *x = rand_buf(N * Hi * Wi, -5, 5), *o1 = nan_buf(N * Ho * Wo), *o2 = nan_buf(N * Ho * Wo);
        fs_nn_ref.resize_bilinear_forward(o1, x, N, Hi, Wi, Ho, Wo);
        fs_nn_cpu.resize_bilinear_forward(o2, x, N, Hi, Wi, Ho, Wo);
        char label[80];
        snprintf(label, sizeof label, "N%zu %zux%zu -> %zux%zu", N, Hi, Wi, Ho, Wo);
        COMPARE(label, o2, o1, N * Ho * Wo);
        free(x), free(o1), free(o2);
    }
}

/* ---- backward entries ----
 * Each case fills every gradient buffer with the same random values for
 * both backends (the entries accumulate), runs the reference once with all
 * gradients, then the CPU backend with all of them and with each one alone
 * (the others NULL), comparing every gradient it was given. */

#define MAX_G 4

typedef struct {
    int n;
    const char *name[MAX_G];
    size_t len[MAX_G];
    float *pre[MAX_G], *ref[MAX_G], *cpu[MAX_G];
} grads;

static float *copy_buf(const float *src, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    memcpy(p, src, n * sizeof(float));
    return p;
}

static void grads_add(grads *g, const char *name, size_t n) {
    int i = g->n++;
    g->name[i] = name;
    g->len[i] = n;
    g->pre[i] = rand_buf(n, -1, 1);
    g->ref[i] = copy_buf(g->pre[i], n);
    g->cpu[i] = copy_buf(g->pre[i], n);
}

static void grads_free(grads *g) {
    for (int i = 0; i < g->n; i++) free(g->pre[i]), free(g->ref[i]), free(g->cpu[i]);
    g->n = 0;
}

/* the backend's buffer i when mask selects it, else NULL; the CPU buffers
 * are reset to the pre-filled values by grads_reset before each call */
static float *gsel(grads *g, int i, unsigned mask, int cpu) {
    if (i >= g->n || !(mask & (1u << i))) return NULL;
    return cpu ? g->cpu[i] : g->ref[i];
}

static void grads_reset(grads *g) {
    for (int i = 0; i < g->n; i++) memcpy(g->cpu[i], g->pre[i], g->len[i] * sizeof(float));
}

/* masks to run the CPU backend with: all gradients, then each alone */
static int grads_masks(const grads *g, unsigned *m) {
    int k = 0;
    m[k++] = (1u << g->n) - 1;
    for (int i = 0; g->n > 1 && i < g->n; i++) m[k++] = 1u << i;
    return k;
}

/* Compares the CPU buffers selected by mask against the reference. */
#define COMPARE_GRADS(g, mask, what)                                                                \
    do {                                                                                            \
        for (int i_ = 0; i_ < (g)->n; i_++) {                                                       \
            if (!((mask) & (1u << i_))) continue;                                                   \
            char l_[160];                                                                           \
            snprintf(l_, sizeof l_, "%s d%s%s", what, (g)->name[i_], (mask) == (1u << i_) && (g)->n > 1 ? " alone" : ""); \
            COMPARE(l_, (g)->cpu[i_], (g)->ref[i_], (g)->len[i_]);                                  \
        }                                                                                           \
    } while (0)

static void backend_backward_entries(void) {
    const fs_nn_ops *c = &fs_nn_cpu;
    CHECK(c->linear_backward && c->layernorm_backward && c->gelu_backward && c->relu_backward);
    CHECK(c->attention_backward && c->attention_relpos_backward && c->patch_embed_backward);
    CHECK(c->conv3x3_backward && c->conv_transpose2x2_backward && c->resize_bilinear_backward);
}

static void linear_backward(void) {
    static const size_t cases[][4] = {
        /* M, K, N, bias */
        {1, 1, 1, 1},       {7, 13, 5, 1},  {37, 65, 129, 0}, {300, 77, 33, 1},
        {20, 512, 1000, 1}, {517, 96, 130, 1},
        {2000, 300, 20, 1}, /* few weight rows: dw split by columns */
        {600, 200, 300, 0}, /* dw split by rows */
        {3, 1000, 2, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], K = cases[c][1], N = cases[c][2];
        float *x = rand_buf(M * K, -1, 1), *w = rand_buf(N * K, -1, 1), *dy = rand_buf(M * N, -1, 1);
        grads g = {0};
        grads_add(&g, "inp", M * K);
        grads_add(&g, "w", N * K);
        if (cases[c][3]) grads_add(&g, "bias", N);
        fs_nn_ref.linear_backward(g.ref[0], g.ref[1], gsel(&g, 2, 7, 0), dy, x, w, M, K, N);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int k = 0; k < nm; k++) {
            grads_reset(&g);
            fs_nn_cpu.linear_backward(gsel(&g, 0, masks[k], 1), gsel(&g, 1, masks[k], 1), gsel(&g, 2, masks[k], 1),
                                      dy, x, w, M, K, N);
            char label[64];
            snprintf(label, sizeof label, "M%zu K%zu N%zu", M, K, N);
            COMPARE_GRADS(&g, masks[k], label);
        }
        grads_free(&g);
        free(x), free(w), free(dy);
    }
}

static void layernorm_backward(void) {
    static const size_t cases[][2] = {{1, 1}, {13, 7}, {100, 768}, {3, 33}, {4097, 32}, {257, 256}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t M = cases[c][0], C = cases[c][1];
        float *x = rand_buf(M * C, 40, 60), *w = rand_buf(C, -2, 2), *dy = rand_buf(M * C, -1, 1);
        grads g = {0};
        grads_add(&g, "inp", M * C);
        grads_add(&g, "w", C);
        grads_add(&g, "b", C);
        fs_nn_ref.layernorm_backward(g.ref[0], g.ref[1], g.ref[2], dy, x, w, M, C, 1e-6f);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int k = 0; k < nm; k++) {
            grads_reset(&g);
            fs_nn_cpu.layernorm_backward(gsel(&g, 0, masks[k], 1), gsel(&g, 1, masks[k], 1), gsel(&g, 2, masks[k], 1),
                                         dy, x, w, M, C, 1e-6f);
            char label[64];
            snprintf(label, sizeof label, "M%zu C%zu", M, C);
            COMPARE_GRADS(&g, masks[k], label);
        }
        grads_free(&g);
        free(x), free(w), free(dy);
    }
}

static void activations_backward(void) {
    static const size_t sizes[] = {1, 17, 100003};
    for (size_t c = 0; c < 3; c++) {
        size_t n = sizes[c];
        float *x = rand_buf(n, -9, 9), *dy = rand_buf(n, -1, 1), *pre = rand_buf(n, -1, 1);
        float *g1 = copy_buf(pre, n), *g2 = copy_buf(pre, n);
        char label[64];
        fs_nn_ref.gelu_backward(g1, x, dy, n);
        fs_nn_cpu.gelu_backward(g2, x, dy, n);
        snprintf(label, sizeof label, "gelu n%zu", n);
        COMPARE(label, g2, g1, n);
        memcpy(g1, pre, n * sizeof(float)), memcpy(g2, pre, n * sizeof(float));
        fs_nn_ref.relu_backward(g1, x, dy, n);
        fs_nn_cpu.relu_backward(g2, x, dy, n);
        snprintf(label, sizeof label, "relu n%zu", n);
        COMPARE(label, g2, g1, n);
        free(x), free(dy), free(pre), free(g1), free(g2);
    }
    /* GELU's derivative: 0 far left, 1 far right, 1/2 at 0 */
    float x[3] = {-30.0f, 30.0f, 0.0f}, dy[3] = {1, 1, 1}, g[3] = {0, 0, 0};
    fs_nn_cpu.gelu_backward(g, x, dy, 3);
    CHECK_NEAR(g[0], 0.0, 1e-7);
    CHECK_NEAR(g[1], 1.0, 1e-6);
    CHECK_NEAR(g[2], 0.5, 1e-7);
}

static void attention_backward(void) {
    static const size_t cases[][5] = {
        /* B, Nq, Nk, H, D */
        {1, 1, 1, 1, 1},     {2, 7, 9, 3, 5},     {1, 300, 5, 2, 16}, {2, 5, 1100, 4, 8},
        {1, 1100, 37, 1, 3}, /* one head, many queries: cut into blocks for the threads */
        {2, 2000, 1100, 2, 4}, /* several row blocks per head: dK, dV summed across blocks */
        {1, 4096, 7, 8, 16},   /* the decoder's image-to-token shape */
        {2, 7, 4096, 8, 16},   /* and token-to-image */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Nq = cases[c][1], Nk = cases[c][2], H = cases[c][3], D = cases[c][4];
        size_t C = H * D;
        float *q = rand_buf(B * Nq * C, -2, 2), *k = rand_buf(B * Nk * C, -2, 2), *v = rand_buf(B * Nk * C, -1, 1);
        float *dy = rand_buf(B * Nq * C, -1, 1);
        float scale = 1.0f / sqrtf((float)D);
        grads g = {0};
        grads_add(&g, "q", B * Nq * C);
        grads_add(&g, "k", B * Nk * C);
        grads_add(&g, "v", B * Nk * C);
        fs_nn_ref.attention_backward(g.ref[0], g.ref[1], g.ref[2], dy, q, k, v, B, Nq, Nk, H, D, scale);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int m = 0; m < nm; m++) {
            grads_reset(&g);
            fs_nn_cpu.attention_backward(gsel(&g, 0, masks[m], 1), gsel(&g, 1, masks[m], 1),
                                         gsel(&g, 2, masks[m], 1), dy, q, k, v, B, Nq, Nk, H, D, scale);
            char label[80];
            snprintf(label, sizeof label, "B%zu Nq%zu Nk%zu H%zu D%zu", B, Nq, Nk, H, D);
            COMPARE_GRADS(&g, masks[m], label);
        }
        grads_free(&g);
        free(q), free(k), free(v), free(dy);
    }
}

static void attention_relpos_backward(void) {
    static const size_t cases[][6] = {
        /* B, Hg, Wg, H, D, rel */
        {1, 1, 1, 1, 1, 1},   {4, 3, 3, 2, 16, 1}, /* the tiny config's 3x3 windows */
        {2, 5, 7, 3, 5, 1},   {3, 14, 14, 2, 64, 1}, /* ViT-B's windows */
        {1, 64, 64, 2, 8, 1},                         /* the global grid: many row blocks */
        {2, 40, 33, 1, 4, 1},                         /* B > 1 with several blocks per head */
        {2, 9, 4, 2, 6, 1},   {2, 4, 6, 3, 7, 0},     /* no relative positions */
        {1, 37, 29, 1, 4, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Hg = cases[c][1], Wg = cases[c][2], H = cases[c][3], D = cases[c][4];
        size_t N = Hg * Wg, C = H * D, rel = cases[c][5];
        float *qkv = rand_buf(B * N * 3 * C, -3, 3), *dy = rand_buf(B * N * C, -1, 1);
        float *rh = rel ? rand_buf((2 * Hg - 1) * D, -1, 1) : NULL;
        float *rw = rel ? rand_buf((2 * Wg - 1) * D, -1, 1) : NULL;
        float scale = 1.0f / sqrtf((float)D);
        grads g = {0};
        grads_add(&g, "qkv", B * N * 3 * C);
        if (rel) {
            grads_add(&g, "rel_h", (2 * Hg - 1) * D);
            grads_add(&g, "rel_w", (2 * Wg - 1) * D);
        }
        fs_nn_ref.attention_relpos_backward(g.ref[0], gsel(&g, 1, 7, 0), gsel(&g, 2, 7, 0), dy, qkv, rh, rw, B, Hg,
                                            Wg, H, D, scale);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int m = 0; m < nm; m++) {
            grads_reset(&g);
            fs_nn_cpu.attention_relpos_backward(gsel(&g, 0, masks[m], 1), gsel(&g, 1, masks[m], 1),
                                                gsel(&g, 2, masks[m], 1), dy, qkv, rh, rw, B, Hg, Wg, H, D, scale);
            char label[80];
            snprintf(label, sizeof label, "B%zu grid %zux%zu H%zu D%zu%s", B, Hg, Wg, H, D, rel ? "" : " norel");
            COMPARE_GRADS(&g, masks[m], label);
        }
        grads_free(&g);
        free(qkv), free(dy), free(rh), free(rw);
    }
}

static void patch_embed_backward(void) {
    static const size_t cases[][6] = {
        /* B, Cin, Hi, Wi, P, C */
        {2, 3, 16, 24, 8, 5}, {1, 1, 3, 3, 1, 7}, {1, 3, 32, 32, 16, 33}, {3, 2, 10, 15, 5, 19},
        {1, 3, 128, 112, 16, 64},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], Cin = cases[c][1], Hi = cases[c][2], Wi = cases[c][3], P = cases[c][4],
               C = cases[c][5];
        size_t no = B * (Hi / P) * (Wi / P) * C;
        float *x = rand_buf(B * Cin * Hi * Wi, -2, 2), *w = rand_buf(C * Cin * P * P, -1, 1), *dy = rand_buf(no, -1, 1);
        grads g = {0};
        grads_add(&g, "inp", B * Cin * Hi * Wi);
        grads_add(&g, "w", C * Cin * P * P);
        grads_add(&g, "b", C);
        fs_nn_ref.patch_embed_backward(g.ref[0], g.ref[1], g.ref[2], dy, x, w, B, Cin, Hi, Wi, P, C);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int m = 0; m < nm; m++) {
            grads_reset(&g);
            fs_nn_cpu.patch_embed_backward(gsel(&g, 0, masks[m], 1), gsel(&g, 1, masks[m], 1),
                                           gsel(&g, 2, masks[m], 1), dy, x, w, B, Cin, Hi, Wi, P, C);
            char label[80];
            snprintf(label, sizeof label, "B%zu Cin%zu %zux%zu P%zu C%zu", B, Cin, Hi, Wi, P, C);
            COMPARE_GRADS(&g, masks[m], label);
        }
        grads_free(&g);
        free(x), free(w), free(dy);
    }
}

static void conv3x3_backward(void) {
    static const size_t cases[][5] = {
        /* B, H, W, Cin, Cout */
        {1, 1, 1, 1, 1}, {2, 5, 7, 3, 4}, {1, 9, 11, 17, 6},
        {1, 40, 50, 256, 8}, /* several im2col chunks of the input */
        {1, 30, 20, 8, 256}, /* several im2col chunks of the output gradient */
        {3, 2, 1, 5, 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        float *x = rand_buf(B * H * W * Cin, -1, 1), *w = rand_buf(Cout * Cin * 9, -1, 1);
        float *dy = rand_buf(B * H * W * Cout, -1, 1);
        grads g = {0};
        grads_add(&g, "inp", B * H * W * Cin);
        grads_add(&g, "w", Cout * Cin * 9);
        fs_nn_ref.conv3x3_backward(g.ref[0], g.ref[1], dy, x, w, B, H, W, Cin, Cout);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int m = 0; m < nm; m++) {
            grads_reset(&g);
            fs_nn_cpu.conv3x3_backward(gsel(&g, 0, masks[m], 1), gsel(&g, 1, masks[m], 1), dy, x, w, B, H, W, Cin,
                                       Cout);
            char label[80];
            snprintf(label, sizeof label, "B%zu %zux%zu Cin%zu Cout%zu", B, H, W, Cin, Cout);
            COMPARE_GRADS(&g, masks[m], label);
        }
        grads_free(&g);
        free(x), free(w), free(dy);
    }
}

static void conv_transpose2x2_backward(void) {
    static const size_t cases[][5] = {
        /* B, H, W, Cin, Cout */
        {1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {1, 16, 16, 32, 8}, {1, 30, 30, 8, 512}, {2, 7, 3, 13, 11},
        {2, 32, 32, 64, 16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t B = cases[c][0], H = cases[c][1], W = cases[c][2], Cin = cases[c][3], Cout = cases[c][4];
        size_t no = B * 4 * H * W * Cout;
        float *x = rand_buf(B * H * W * Cin, -1, 1), *w = rand_buf(Cin * Cout * 4, -1, 1), *dy = rand_buf(no, -1, 1);
        grads g = {0};
        grads_add(&g, "inp", B * H * W * Cin);
        grads_add(&g, "w", Cin * Cout * 4);
        grads_add(&g, "b", Cout);
        fs_nn_ref.conv_transpose2x2_backward(g.ref[0], g.ref[1], g.ref[2], dy, x, w, B, H, W, Cin, Cout);
        unsigned masks[MAX_G + 1];
        int nm = grads_masks(&g, masks);
        for (int m = 0; m < nm; m++) {
            grads_reset(&g);
            fs_nn_cpu.conv_transpose2x2_backward(gsel(&g, 0, masks[m], 1), gsel(&g, 1, masks[m], 1),
                                                 gsel(&g, 2, masks[m], 1), dy, x, w, B, H, W, Cin, Cout);
            char label[80];
            snprintf(label, sizeof label, "B%zu %zux%zu Cin%zu Cout%zu", B, H, W, Cin, Cout);
            COMPARE_GRADS(&g, masks[m], label);
        }
        grads_free(&g);
        free(x), free(w), free(dy);
    }
}

static void resize_bilinear_backward(void) {
    static const size_t cases[][5] = {
        /* N, Hi, Wi, Ho, Wo */
        {2, 5, 7, 11, 3}, {1, 1, 1, 4, 4},      {3, 32, 32, 70, 60}, {1, 256, 256, 64, 64}, {2, 9, 13, 9, 13},
        {1, 3, 200, 1, 7}, {1, 64, 600, 256, 1000}, /* several column blocks */
        {6, 256, 256, 1024, 1024},                   /* the masks' upscaling */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t N = cases[c][0], Hi = cases[c][1], Wi = cases[c][2], Ho = cases[c][3], Wo = cases[c][4];
        float *dy = rand_buf(N * Ho * Wo, -5, 5), *pre = rand_buf(N * Hi * Wi, -1, 1);
        float *g1 = copy_buf(pre, N * Hi * Wi), *g2 = copy_buf(pre, N * Hi * Wi);
        fs_nn_ref.resize_bilinear_backward(g1, dy, N, Hi, Wi, Ho, Wo);
        fs_nn_cpu.resize_bilinear_backward(g2, dy, N, Hi, Wi, Ho, Wo);
        char label[80];
        snprintf(label, sizeof label, "N%zu %zux%zu -> %zux%zu", N, Hi, Wi, Ho, Wo);
        COMPARE(label, g2, g1, N * Hi * Wi);
        free(dy), free(pre), free(g1), free(g2);
    }
}

int main(void) {
    fs_rng_init(&rng, 20240611, 7);
    RUN(backend_lookup);
    RUN(linear);
    RUN(layernorm);
    RUN(activations);
    RUN(attention);
    RUN(attention_relpos);
    RUN(patch_embed);
    RUN(conv3x3);
    RUN(conv_transpose2x2);
    RUN(resize_bilinear);
    RUN(backend_backward_entries);
    RUN(linear_backward);
    RUN(layernorm_backward);
    RUN(activations_backward);
    RUN(attention_backward);
    RUN(attention_relpos_backward);
    RUN(patch_embed_backward);
    RUN(conv3x3_backward);
    RUN(conv_transpose2x2_backward);
    RUN(resize_bilinear_backward);
    TEST_EXIT();
}
