/* bench_encoder: times fewsam's SAM image encoder (fs_sam_encode, ViT-B by
 * default: 12 blocks, 8 windowed + 4 global, patch embedding, neck) with
 * random weights on one fs_nn_ops backend, and the machine's sgemm rate in
 * the same process. Prints one JSON object on stdout:
 *   {"backend", "img", "threads", "depth", "seconds" (best of --reps passes
 *    after one warm-up), "seconds_all", "gflop" (analytic count of the
 *    matrix products), "gflops", "sgemm_gflops" (2048^3 through the CPU
 *    backend's threaded sgemm, best of 5 before and 3 after the encoder
 *    runs), "peak_rss_mb" (VmHWM of this process)}
 * --profile adds per-kernel seconds per pass on stderr (every call through
 * the table is timed). tests/bench/encoder_torch.py is the PyTorch twin. */
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/cpu.h"
#include "nn/nn.h"
#include "sam/init.h"
#include "sam/sam.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- a timing wrapper around the backend's table ---- */

enum { K_LINEAR, K_LN, K_GELU, K_ATT_WIN, K_ATT_GLOBAL, K_PATCH, K_CONV3, K_OTHER, K_COUNT };
static const char *k_names[K_COUNT] = {"linear", "layernorm", "gelu", "attention (windows)", "attention (global)",
                                       "patch_embed", "conv3x3", "other"};
static double k_time[K_COUNT];
static const fs_nn_ops *inner;

static void t_linear(float *o, const float *x, const float *w, const float *b, size_t M, size_t K, size_t N) {
    double t = now();
    inner->linear_forward(o, x, w, b, M, K, N);
    k_time[K_LINEAR] += now() - t;
}
static void t_ln(float *o, const float *x, const float *w, const float *b, size_t M, size_t C, float eps) {
    double t = now();
    inner->layernorm_forward(o, x, w, b, M, C, eps);
    k_time[K_LN] += now() - t;
}
static void t_gelu(float *o, const float *x, size_t n) {
    double t = now();
    inner->gelu_forward(o, x, n);
    k_time[K_GELU] += now() - t;
}
static void t_relpos(float *o, const float *qkv, const float *rh, const float *rw, size_t B, size_t Hg, size_t Wg,
                     size_t H, size_t D, float scale) {
    double t = now();
    inner->attention_relpos_forward(o, qkv, rh, rw, B, Hg, Wg, H, D, scale);
    k_time[B > 1 || Hg <= 14 ? K_ATT_WIN : K_ATT_GLOBAL] += now() - t;
}
static void t_patch(float *o, const float *x, const float *w, const float *b, size_t B, size_t Cin, size_t Hi,
                    size_t Wi, size_t P, size_t C) {
    double t = now();
    inner->patch_embed_forward(o, x, w, b, B, Cin, Hi, Wi, P, C);
    k_time[K_PATCH] += now() - t;
}
static void t_conv3(float *o, const float *x, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                    size_t Cout) {
    double t = now();
    inner->conv3x3_forward(o, x, w, B, H, W, Cin, Cout);
    k_time[K_CONV3] += now() - t;
}

static fs_nn_ops timed_ops(const fs_nn_ops *ops) {
    inner = ops;
    fs_nn_ops t = *ops;
    t.linear_forward = t_linear;
    t.layernorm_forward = t_ln;
    t.gelu_forward = t_gelu;
    t.attention_relpos_forward = t_relpos;
    t.patch_embed_forward = t_patch;
    t.conv3x3_forward = t_conv3;
    return t;
}

/* ---- the model with random weights ---- */

static fs_rng rng;

static float *buffer(size_t n, float amp) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_encoder: error: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = amp ? (float)fs_rng_range(&rng, -amp, amp) : 0.0f;
    return p;
}

/* Matrix-product FLOPs of one forward (2 per multiply-add), counted as the
 * official model computes: windowed blocks run qkv/proj on the zero-padded
 * windows; rel-pos terms as the official einsums. */
static double encoder_flops(const fs_sam_config *c) {
    double C = (double)c->embed_dim, g = (double)fs_sam_grid(c), T = g * g, D = C / (double)c->num_heads;
    double f = 2 * T * C * 3.0 * (double)(c->patch_size * c->patch_size);
    for (size_t i = 0; i < c->depth; i++) {
        double Tq, n, r;
        if (c->global_attn[i]) {
            Tq = T, n = T, r = g;
        } else {
            double ws = (double)c->window_size, nw = ceil(g / ws);
            Tq = nw * nw * ws * ws, n = ws * ws, r = ws;
        }
        f += 2 * Tq * C * 3 * C;                                                     /* qkv */
        f += (Tq / n) * (double)c->num_heads * (4 * n * n * D + 2 * n * 2 * r * D); /* attention, rel-pos */
        f += 2 * Tq * C * C;                                                         /* proj */
        f += 2 * 2 * T * C * C * (double)c->mlp_ratio;                               /* mlp */
    }
    double O = (double)c->out_chans;
    return f + 2 * T * C * O + 2 * T * O * O * 9; /* neck */
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

/* GFLOP/s of a 2048^3 sgemm through the CPU backend's threaded wrapper
 * (what the encoder's products get), best of `reps`. */
static double sgemm_rate(int reps) {
    size_t n = 2048;
    float *a = buffer(n * n, 1), *b = buffer(n * n, 1), *c = buffer(n * n, 0);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fs_nn_cpu_gemm(1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * (double)n * n * n / best / 1e9;
}

static void usage(void) {
    printf("Usage: bench_encoder [--img N] [--backend cpu|ref] [--reps N] [--depth N] [--profile]\n"
           "Times fewsam's SAM ViT-B image encoder (random weights); prints one JSON object.\n"
           "  --img N       input size, a multiple of 16 (default 1024)\n"
           "  --backend B   fs_nn_ops backend (default cpu)\n"
           "  --reps N      timed passes after one warm-up; the best is reported (default 2)\n"
           "  --depth N     encoder blocks (default 12; global blocks 2, 5, 8, 11)\n"
           "  --profile     per-kernel seconds per pass on stderr\n"
           "Threads: OMP_NUM_THREADS.\n");
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    long img = 1024, reps = 2, depth = 12;
    const char *backend = "cpu";
    int profile = 0;
    static const struct option opts[] = {{"img", required_argument, 0, 'i'},   {"backend", required_argument, 0, 'b'},
                                         {"reps", required_argument, 0, 'r'},  {"depth", required_argument, 0, 'd'},
                                         {"profile", no_argument, 0, 'p'},     {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': img = fs_cli_long("--img", optarg, 16, 4096); break;
        case 'b': backend = optarg; break;
        case 'r': reps = fs_cli_long("--reps", optarg, 1, 100); break;
        case 'd': depth = fs_cli_long("--depth", optarg, 1, 12); break;
        case 'p': profile = 1; break;
        case 'h': usage(); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (img % 16) fs_cli_usage_error("--img %ld is not a multiple of the patch size 16", img);
    const fs_nn_ops *nn = fs_nn_backend(backend);
    if (!nn) fs_cli_usage_error("unknown backend '%s' (ref or cpu)", backend);

    fs_sam_config cfg;
    if (fs_sam_config_preset(&cfg, "vit_b")) fs_cli_die();
    cfg.img_size = (size_t)img;
    cfg.depth = (size_t)depth;
    if (fs_sam_config_validate(&cfg)) fs_cli_die();

    fs_rng_init(&rng, 1, 0);
    double sgemm = sgemm_rate(5);
    fs_sam *m;
    if (fs_sam_create_random(&m, &cfg, 1)) m = NULL; /* the trainer's --init random */
    if (!m) fs_cli_die();
    size_t S = cfg.img_size, g = fs_sam_grid(&cfg);
    float *pre = buffer(3 * S * S, 2.0f), *embed = buffer(g * g * cfg.out_chans, 0);
    fs_nn_ops tops = timed_ops(nn);
    const fs_nn_ops *run = profile ? &tops : nn;

    double best = 1e30, all[100];
    for (long r = -1; r < reps; r++) {
        if (r == 0) memset(k_time, 0, sizeof k_time);
        double t0 = now();
        if (fs_sam_encode(m, run, pre, 1, embed)) fs_cli_die();
        double t = now() - t0;
        if (!isfinite(embed[0])) {
            fprintf(stderr, "bench_encoder: error: the encoder produced a non-finite value\n");
            return 1;
        }
        if (r >= 0) {
            all[r] = t;
            if (t < best) best = t;
        }
    }
    double gflop = encoder_flops(&cfg) / 1e9;
    double rss = peak_rss_mb(); /* before the sgemm buffers below add to it */
    /* measured again after the runs: a busy moment must not lower the peak */
    double sgemm2 = sgemm_rate(3);
    if (sgemm2 > sgemm) sgemm = sgemm2;
    if (profile) {
        double sum = 0;
        for (int k = 0; k < K_COUNT; k++) sum += k_time[k];
        fprintf(stderr, "per pass (mean of %ld), img %zu, %d threads:\n", reps, S, omp_get_max_threads());
        for (int k = 0; k < K_COUNT; k++)
            if (k_time[k] > 0) fprintf(stderr, "  %-22s %7.3f s\n", k_names[k], k_time[k] / (double)reps);
        double total = 0;
        for (long r = 0; r < reps; r++) total += all[r];
        fprintf(stderr, "  %-22s %7.3f s\n", "outside the kernels", (total - sum) / (double)reps);
    }
    printf("{\"backend\": \"%s\", \"img\": %zu, \"threads\": %d, \"depth\": %zu, \"seconds\": %.4f, "
           "\"seconds_all\": [",
           nn->name, S, omp_get_max_threads(), cfg.depth, best);
    for (long r = 0; r < reps; r++) printf("%s%.4f", r ? ", " : "", all[r]);
    printf("], \"gflop\": %.2f, \"gflops\": %.2f, \"sgemm_gflops\": %.2f, \"peak_rss_mb\": %.1f}\n", gflop,
           gflop / best, sgemm, rss);
    fs_sam_free(m);
    free(pre), free(embed);
    return 0;
}
