/* bench_encoder: times one forward pass of SAM's ViT image encoder
 * (ViT-B by default: 12 blocks, 8 windowed + 4 global, patch embedding,
 * neck) with random weights on one fs_nn_ops backend, and the machine's
 * sgemm rate in the same process. Prints one JSON object on stdout:
 *   {"backend", "img", "threads", "seconds" (best of --reps), "seconds_all",
 *    "gflop" (analytic count of the matrix products), "gflops",
 *    "sgemm_gflops" (2048^3 through the backend's threaded sgemm),
 *    "peak_rss_mb" (VmHWM of this process)}
 * The forward is the official ImageEncoderViT's sequence of operations
 * written against the kernel table; tests/bench/encoder_torch.py runs the
 * PyTorch one on the same configuration. */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli.h"
#include "core/rng.h"
#include "nn/cpu/cpu.h"
#include "nn/nn.h"

typedef struct {
    size_t img, patch, dim, depth, heads, mlp, window, out_chans;
    int global[64];
} enc_config;

typedef struct {
    float *ln1_w, *ln1_b, *rel_h, *rel_w, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *lin1_w, *lin1_b, *lin2_w, *lin2_b;
} block_w;

typedef struct {
    float *pos, *patch_w, *patch_b;
    block_w blk[64];
    float *neck0_w, *neck1_w, *neck1_b, *neck2_w, *neck3_w, *neck3_b;
} enc_weights;

/* per-kernel time, for --profile */
enum { T_PATCH, T_LN, T_QKV, T_ATTN_WIN, T_ATTN_GLOBAL, T_PROJ, T_MLP1, T_GELU, T_MLP2, T_MOVE, T_NECK, T_COUNT };
static const char *t_names[T_COUNT] = {"patch_embed", "layernorm", "qkv", "attn_windowed", "attn_global", "proj",
                                       "mlp.lin1", "gelu", "mlp.lin2", "partition+residual", "neck"};
static double t_acc[T_COUNT];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static fs_rng rng;

static float *param(size_t n, float amp) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_encoder: error: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)fs_rng_range(&rng, -amp, amp);
    return p;
}

static float *ones(size_t n, float v) {
    float *p = param(n, 0);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

static size_t grid(const enc_config *c) { return c->img / c->patch; }

static void init_weights(enc_weights *w, const enc_config *c) {
    size_t C = c->dim, g = grid(c), D = C / c->heads, H = C * c->mlp;
    w->pos = param(g * g * C, 0.02f);
    w->patch_w = param(C * 3 * c->patch * c->patch, 0.02f);
    w->patch_b = param(C, 0.02f);
    for (size_t i = 0; i < c->depth; i++) {
        block_w *b = &w->blk[i];
        size_t r = c->global[i] ? g : c->window;
        b->ln1_w = ones(C, 1), b->ln1_b = param(C, 0.02f);
        b->rel_h = param((2 * r - 1) * D, 0.02f), b->rel_w = param((2 * r - 1) * D, 0.02f);
        b->qkv_w = param(3 * C * C, 0.02f), b->qkv_b = param(3 * C, 0.02f);
        b->proj_w = param(C * C, 0.02f), b->proj_b = param(C, 0.02f);
        b->ln2_w = ones(C, 1), b->ln2_b = param(C, 0.02f);
        b->lin1_w = param(H * C, 0.02f), b->lin1_b = param(H, 0.02f);
        b->lin2_w = param(C * H, 0.02f), b->lin2_b = param(C, 0.02f);
    }
    size_t O = c->out_chans;
    w->neck0_w = param(O * C, 0.02f);
    w->neck1_w = ones(O, 1), w->neck1_b = param(O, 0.02f);
    w->neck2_w = param(O * O * 9, 0.02f);
    w->neck3_w = ones(O, 1), w->neck3_b = param(O, 0.02f);
}

/* Matrix-product FLOPs of one forward (2 per multiply-add), counted the
 * way the official model computes: windowed blocks run qkv/proj on the
 * zero-padded windows; rel-pos terms as the official einsums. */
static double encoder_flops(const enc_config *c) {
    double C = (double)c->dim, g = (double)grid(c), T = g * g, D = C / (double)c->heads;
    double f = 2 * T * C * 3.0 * (double)(c->patch * c->patch);
    for (size_t i = 0; i < c->depth; i++) {
        double Tq, n, r;
        if (c->global[i]) {
            Tq = T, n = T, r = g;
        } else {
            double ws = (double)c->window, nw = ceil(g / ws);
            Tq = nw * nw * ws * ws, n = ws * ws, r = ws;
        }
        f += 2 * Tq * C * 3 * C;                                   /* qkv */
        f += (Tq / n) * (double)c->heads * (4 * n * n * D + 2 * n * 2 * r * D); /* attention + rel-pos */
        f += 2 * Tq * C * C;                                       /* proj */
        f += 2 * 2 * T * C * C * (double)c->mlp;                   /* mlp */
    }
    double O = (double)c->out_chans;
    f += 2 * T * C * O + 2 * T * O * O * 9;
    return f;
}

typedef struct {
    float *x, *t, *win, *qkv, *att, *proj, *hid, *neck_a, *neck_b;
} enc_buffers;

static void alloc_buffers(enc_buffers *b, const enc_config *c) {
    size_t C = c->dim, g = grid(c), T = g * g, ws = c->window, gp = (g + ws - 1) / ws * ws;
    size_t Tmax = gp * gp > T ? gp * gp : T;
    b->x = param(T * C, 0), b->t = param(T * C, 0), b->win = param(Tmax * C, 0);
    b->qkv = param(Tmax * 3 * C, 0), b->att = param(Tmax * C, 0), b->proj = param(Tmax * C, 0);
    b->hid = param(T * C * c->mlp, 0);
    b->neck_a = param(T * c->out_chans, 0), b->neck_b = param(T * c->out_chans, 0);
}

/* dst[n] += src[n] */
static void add_inplace(float *dst, const float *src, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

#define TIMED(slot, stmt)            \
    do {                             \
        double t0_ = now();          \
        stmt;                        \
        t_acc[slot] += now() - t0_;  \
    } while (0)

/* img[1, 3, S, S] -> out[1, g, g, out_chans] (channels-last) */
static float *encoder_forward(const fs_nn_ops *nn, const enc_config *c, const enc_weights *w, enc_buffers *b,
                              const float *img) {
    size_t C = c->dim, g = grid(c), T = g * g, heads = c->heads, D = C / heads, ws = c->window;
    size_t gp = (g + ws - 1) / ws * ws, nwx = gp / ws, nW = nwx * nwx;
    float scale = 1.0f / sqrtf((float)D);
    TIMED(T_PATCH, nn->patch_embed_forward(b->x, img, w->patch_w, w->patch_b, 1, 3, c->img, c->img, c->patch, C));
    TIMED(T_MOVE, add_inplace(b->x, w->pos, T * C));
    for (size_t i = 0; i < c->depth; i++) {
        const block_w *bw = &w->blk[i];
        TIMED(T_LN, nn->layernorm_forward(b->t, b->x, bw->ln1_w, bw->ln1_b, T, C, 1e-6f));
        if (c->global[i]) {
            TIMED(T_QKV, nn->linear_forward(b->qkv, b->t, bw->qkv_w, bw->qkv_b, T, C, 3 * C));
            TIMED(T_ATTN_GLOBAL,
                  nn->attention_relpos_forward(b->att, b->qkv, bw->rel_h, bw->rel_w, 1, g, g, heads, D, scale));
            TIMED(T_PROJ, nn->linear_forward(b->proj, b->att, bw->proj_w, bw->proj_b, T, C, C));
            TIMED(T_MOVE, add_inplace(b->x, b->proj, T * C));
        } else {
            /* window_partition with zero padding bottom/right */
            double t0 = now();
#pragma omp parallel for collapse(2) schedule(static)
            for (size_t wy = 0; wy < gp; wy++)
                for (size_t wx = 0; wx < gp; wx++) {
                    size_t win = (wy / ws) * nwx + wx / ws, tok = (wy % ws) * ws + wx % ws;
                    float *dst = b->win + (win * ws * ws + tok) * C;
                    if (wy < g && wx < g)
                        memcpy(dst, b->t + (wy * g + wx) * C, C * sizeof(float));
                    else
                        memset(dst, 0, C * sizeof(float));
                }
            t_acc[T_MOVE] += now() - t0;
            size_t Tq = nW * ws * ws;
            TIMED(T_QKV, nn->linear_forward(b->qkv, b->win, bw->qkv_w, bw->qkv_b, Tq, C, 3 * C));
            TIMED(T_ATTN_WIN,
                  nn->attention_relpos_forward(b->att, b->qkv, bw->rel_h, bw->rel_w, nW, ws, ws, heads, D, scale));
            TIMED(T_PROJ, nn->linear_forward(b->proj, b->att, bw->proj_w, bw->proj_b, Tq, C, C));
            /* window_unpartition (crop) fused with the residual add */
            t0 = now();
#pragma omp parallel for collapse(2) schedule(static)
            for (size_t y = 0; y < g; y++)
                for (size_t x = 0; x < g; x++) {
                    size_t win = (y / ws) * nwx + x / ws, tok = (y % ws) * ws + x % ws;
                    const float *src = b->proj + (win * ws * ws + tok) * C;
                    float *dst = b->x + (y * g + x) * C;
                    for (size_t k = 0; k < C; k++) dst[k] += src[k];
                }
            t_acc[T_MOVE] += now() - t0;
        }
        size_t Hd = C * c->mlp;
        TIMED(T_LN, nn->layernorm_forward(b->t, b->x, bw->ln2_w, bw->ln2_b, T, C, 1e-6f));
        TIMED(T_MLP1, nn->linear_forward(b->hid, b->t, bw->lin1_w, bw->lin1_b, T, C, Hd));
        TIMED(T_GELU, nn->gelu_forward(b->hid, b->hid, T * Hd));
        TIMED(T_MLP2, nn->linear_forward(b->proj, b->hid, bw->lin2_w, bw->lin2_b, T, Hd, C));
        TIMED(T_MOVE, add_inplace(b->x, b->proj, T * C));
    }
    size_t O = c->out_chans;
    double t0 = now();
    nn->linear_forward(b->neck_a, b->x, w->neck0_w, NULL, T, C, O);
    nn->layernorm_forward(b->neck_a, b->neck_a, w->neck1_w, w->neck1_b, T, O, 1e-6f);
    nn->conv3x3_forward(b->neck_b, b->neck_a, w->neck2_w, 1, g, g, O, O);
    nn->layernorm_forward(b->neck_b, b->neck_b, w->neck3_w, w->neck3_b, T, O, 1e-6f);
    t_acc[T_NECK] += now() - t0;
    return b->neck_b;
}

/* Peak resident set of this process in MB (VmHWM). */
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* GFLOP/s of a 2048^3 sgemm through the backend's threaded wrapper (what
 * the encoder's products get), best of three. */
static double sgemm_rate(void) {
    size_t n = 2048;
    float *a = param(n * n, 1), *bm = param(n * n, 1), *cm = param(n * n, 0);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        fs_nn_cpu_gemm(1, n, n, n, 1.0f, a, n, bm, n, 0.0f, cm, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    free(a), free(bm), free(cm);
    return 2.0 * (double)n * n * n / best / 1e9;
}

static void usage(void) {
    printf("Usage: bench_encoder [--img N] [--backend cpu|ref] [--reps N] [--depth N] [--profile]\n"
           "Times SAM ViT-B's image encoder (random weights) on one backend; prints JSON.\n"
           "  --img N       input size (default 1024; the grid is N/16)\n"
           "  --backend B   fs_nn_ops backend (default cpu)\n"
           "  --reps N      timed passes after one warm-up; the best is reported (default 2)\n"
           "  --depth N     encoder blocks (default 12; global blocks are 2, 5, 8, 11)\n"
           "  --profile     per-kernel times of the timed passes on stderr\n"
           "Threads: OMP_NUM_THREADS.\n");
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enc_config c = {.img = 1024, .patch = 16, .dim = 768, .depth = 12, .heads = 12, .mlp = 4, .window = 14,
                    .out_chans = 256};
    const char *backend = "cpu";
    long reps = 2;
    int profile = 0;
    static const struct option opts[] = {{"img", required_argument, 0, 'i'},   {"backend", required_argument, 0, 'b'},
                                         {"reps", required_argument, 0, 'r'},  {"depth", required_argument, 0, 'd'},
                                         {"profile", no_argument, 0, 'p'},     {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': c.img = (size_t)fs_cli_long("--img", optarg, 16, 4096); break;
        case 'b': backend = optarg; break;
        case 'r': reps = fs_cli_long("--reps", optarg, 1, 1000); break;
        case 'd': c.depth = (size_t)fs_cli_long("--depth", optarg, 1, 64); break;
        case 'p': profile = 1; break;
        case 'h': usage(); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (c.img % c.patch) fs_cli_usage_error("--img must be a multiple of %zu", c.patch);
    const fs_nn_ops *nn = fs_nn_backend(backend);
    if (!nn) fs_cli_usage_error("unknown backend '%s' (ref or cpu)", backend);
    for (size_t i = 0; i < c.depth; i++) c.global[i] = i % 3 == 2;

    fs_rng_init(&rng, 1, 0);
    double sgemm = sgemm_rate();
    enc_weights w;
    init_weights(&w, &c);
    enc_buffers b;
    alloc_buffers(&b, &c);
    float *img = param(3 * c.img * c.img, 2.0f);

    double best = 1e30, all[1000];
    for (long r = -1; r < reps; r++) {
        if (r == 0) memset(t_acc, 0, sizeof t_acc);
        double t0 = now();
        float *out = encoder_forward(nn, &c, &w, &b, img);
        double t = now() - t0;
        if (!isfinite(out[0])) {
            fprintf(stderr, "bench_encoder: error: the encoder produced a non-finite value\n");
            return 1;
        }
        if (r >= 0) {
            all[r] = t;
            if (t < best) best = t;
        }
    }
    double gflop = encoder_flops(&c) / 1e9;
    if (profile) {
        double tot = 0;
        for (int k = 0; k < T_COUNT; k++) tot += t_acc[k];
        for (int k = 0; k < T_COUNT; k++)
            fprintf(stderr, "  %-20s %7.3f s/pass %5.1f%%\n", t_names[k], t_acc[k] / (double)reps,
                    100 * t_acc[k] / tot);
    }
    printf("{\"backend\": \"%s\", \"img\": %zu, \"threads\": %d, \"depth\": %zu, \"seconds\": %.4f, "
           "\"seconds_all\": [",
           nn->name, c.img, omp_get_max_threads(), c.depth, best);
    for (long r = 0; r < reps; r++) printf("%s%.4f", r ? ", " : "", all[r]);
    printf("], \"gflop\": %.2f, \"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"peak_rss_mb\": %.1f}\n", gflop,
           gflop / best, sgemm, peak_rss_mb());
    return 0;
}
