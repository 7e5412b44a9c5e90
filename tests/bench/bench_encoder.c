/* bench_encoder: times fewsam's SAM image encoder (fs_sam_encode, ViT-B by
 * default: 12 blocks, 8 windowed + 4 global, patch embedding, neck) with
 * random weights on one fs_nn_ops backend, and the matrix-product rate of
 * that backend in the same process. Prints one JSON object per math mode,
 * one a line (one line unless --math lists several):
 *   {"backend", "img", "batch" (images per fs_sam_encode call), "threads",
 *    "depth", "math" (fp32, or the CUDA math mode), "seconds" (one call,
 *    best of --reps passes after one warm-up), "seconds_all", "images_per_s"
 *    (batch / seconds), "gflop" (analytic count of the matrix products of
 *    the call: batch x "gflop_per_image"), "gflop_per_image", "gflops",
 *    "sgemm_gflops" (host backends: 2048^3 through the CPU backend's
 *    threaded sgemm, best of 5 before and 3 after the encoder runs; null on
 *    a device backend), "matmul_tflops" (the backend's own product rate in
 *    this math mode: the sgemm figure on the host; on a device backend
 *    linear_forward through the table on M = N = K = --matmul-n, best of 3
 *    after a warm-up, synchronised, after the timed passes), "matmul_n",
 *    "peak_rss_mb" (VmHWM of this process), "peak_device_mb" (cuda: the
 *    most device memory the backend held during the timed passes, the model
 *    and its activations included: the peak is reset after the warm-up;
 *    null elsewhere), "device"}
 * On cuda every clock read is preceded by fs_cuda_sync, so queued kernels
 * are counted. --profile adds per-kernel seconds per pass on stderr (every
 * call through the table is timed, synchronised on cuda).
 * tests/bench/encoder_torch.py is the PyTorch twin. */
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

#include "bench_common.h"

/* Synchronised on cuda, so that a kernel's time is its own. */
static const fs_nn_ops *inner;
static double now(void) {
    if (inner) bench_sync(inner);
    return bench_now();
}

/* ---- a timing wrapper around the backend's table ---- */

enum { K_LINEAR, K_LN, K_GELU, K_ATT_WIN, K_ATT_GLOBAL, K_PATCH, K_CONV3, K_OTHER, K_COUNT };
static const char *k_names[K_COUNT] = {"linear", "layernorm", "gelu", "attention (windows)", "attention (global)",
                                       "patch_embed", "conv3x3", "other"};
static double k_time[K_COUNT];

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

/* ---- the host's sgemm rate ---- */

static fs_rng rng;

/* GFLOP/s of a 2048^3 sgemm through the CPU backend's threaded wrapper
 * (what the encoder's products get), best of `reps`. */
static double sgemm_rate(int reps) {
    size_t n = 2048;
    float *a = bench_buffer(&rng, n * n, 1), *b = bench_buffer(&rng, n * n, 1), *c = bench_buffer(&rng, n * n, 0);
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
    printf("Usage: bench_encoder [--img N] [--batch N] [--backend cpu|ref|guard|cuda] [--math LIST] [--reps N]\n"
           "                     [--depth N] [--matmul-n N] [--profile]\n"
           "Times fewsam's SAM ViT-B image encoder (random weights); prints one JSON object per math mode.\n"
           "  --img N       input size, a multiple of 16 (default 1024)\n"
           "  --batch N     images per fs_sam_encode call (default 1)\n"
           "  --backend B   fs_nn_ops backend (default cpu; cuda in the CUDA build, build/cuda-bench/)\n"
           "  --math LIST   comma-separated matrix-product modes, each measured in turn: fp32, tf32,\n"
           "                bf16 (cuda only; default: the backend's current mode)\n"
           "  --reps N      timed passes after one warm-up; the best is reported (default 2)\n"
           "  --depth N     encoder blocks (default 12; global blocks 2, 5, 8, 11)\n"
           "  --matmul-n N  size of the device backend's product-rate test (default 8192 on cuda, else 512)\n"
           "  --profile     per-kernel seconds per pass on stderr\n"
           "Threads: OMP_NUM_THREADS.\n");
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    long img = 1024, reps = 2, depth = 12, batch = 1, matmul_n = 0;
    const char *backend = "cpu", *math = NULL;
    int profile = 0;
    static const struct option opts[] = {{"img", required_argument, 0, 'i'},   {"backend", required_argument, 0, 'b'},
                                         {"reps", required_argument, 0, 'r'},  {"depth", required_argument, 0, 'd'},
                                         {"batch", required_argument, 0, 'n'}, {"math", required_argument, 0, 'm'},
                                         {"matmul-n", required_argument, 0, 'g'},
                                         {"profile", no_argument, 0, 'p'},     {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': img = fs_cli_long("--img", optarg, 16, 4096); break;
        case 'b': backend = optarg; break;
        case 'r': reps = fs_cli_long("--reps", optarg, 1, 100); break;
        case 'd': depth = fs_cli_long("--depth", optarg, 1, 12); break;
        case 'n': batch = fs_cli_long("--batch", optarg, 1, 64); break;
        case 'm': math = optarg; break;
        case 'g': matmul_n = fs_cli_long("--matmul-n", optarg, 16, 32768); break;
        case 'p': profile = 1; break;
        case 'h': usage(); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (img % 16) fs_cli_usage_error("--img %ld is not a multiple of the patch size 16", img);
    bench_maths maths;
    bench_parse_maths(&maths, math ? math : "fp32", backend);
    const fs_nn_ops *nn = bench_backend(backend);
    fs_sam_config cfg;
    bench_prepare(nn, &maths, math, &matmul_n, &cfg, img, depth);

    fs_rng_init(&rng, 1, 0);
    /* the host's sgemm rate: measured for the host backends only (it is not
     * what a device backend's products get) */
    double sgemm = nn->device ? -1 : sgemm_rate(5);
    fs_sam *m = bench_model(&cfg);
    fs_nn_ops tops = timed_ops(nn);
    const fs_nn_ops *run = profile ? &tops : nn;
    if (nn->device && fs_sam_bind(m, run)) fs_cli_die(); /* the table encode gets: no rebinding per call */
    size_t S = cfg.img_size, g = fs_sam_grid(&cfg), B = (size_t)batch;
    size_t n_embed = B * g * g * cfg.out_chans;
    float *pre = bench_buffer(&rng, B * 3 * S * S, 2.0f), *embed = bench_buffer(&rng, n_embed, 0);
    double gflop1 = bench_encoder_flops(&cfg) / 1e9, gflop = gflop1 * (double)B;

    for (int k = 0; k < maths.n; k++) {
        bench_set_math(nn, maths.mode[k]);
        double best = 1e30, all[100];
        for (long r = -1; r < reps; r++) {
            if (r == 0) {
                memset(k_time, 0, sizeof k_time);
                bench_reset_peak(nn); /* the held model and activations stay in the peak */
            }
            double t0 = now();
            if (fs_sam_encode(m, run, pre, B, embed)) fs_cli_die();
            double t = now() - t0;
            for (size_t i = 0; i < n_embed; i++)
                if (!isfinite(embed[i])) {
                    fprintf(stderr, "bench_encoder: error: the encoder produced a non-finite value (element %zu)\n",
                            i);
                    return 1;
                }
            if (r >= 0) {
                all[r] = t;
                if (t < best) best = t;
            }
        }
        double peak_dev = bench_peak_device_mb(nn);
        double rss = bench_peak_rss_mb(); /* before the sgemm buffers below add to it */
        /* after the readings: its buffers must not count in either peak */
        double mm = nn->device ? bench_matmul_tflops(nn, (size_t)matmul_n, 3) : -1;
        if (!nn->device) {
            /* measured again after the runs: a busy moment must not lower the peak */
            double sgemm2 = sgemm_rate(3);
            if (sgemm2 > sgemm) sgemm = sgemm2;
            mm = sgemm / 1e3;
        }
        if (profile) {
            double sum = 0;
            for (int q = 0; q < K_COUNT; q++) sum += k_time[q];
            fprintf(stderr, "per pass (mean of %ld), img %zu, batch %zu, math %s, %d threads:\n", reps, S, B,
                    bench_math(nn), omp_get_max_threads());
            for (int q = 0; q < K_COUNT; q++)
                if (k_time[q] > 0) fprintf(stderr, "  %-22s %7.3f s\n", k_names[q], k_time[q] / (double)reps);
            double total = 0;
            for (long r = 0; r < reps; r++) total += all[r];
            fprintf(stderr, "  %-22s %7.3f s\n", "outside the kernels", (total - sum) / (double)reps);
        }
        printf("{\"backend\": \"%s\", \"img\": %zu, \"batch\": %zu, \"threads\": %d, \"depth\": %zu, "
               "\"math\": \"%s\", \"seconds\": %.4f, \"seconds_all\": [",
               nn->name, S, B, omp_get_max_threads(), cfg.depth, bench_math(nn), best);
        for (long r = 0; r < reps; r++) printf("%s%.4f", r ? ", " : "", all[r]);
        printf("], \"images_per_s\": %.3f, \"gflop\": %.2f, \"gflop_per_image\": %.2f, \"gflops\": %.2f, ",
               (double)B / best, gflop, gflop1, gflop / best);
        bench_print_num("sgemm_gflops", nn->device ? -1 : sgemm, 2);
        printf(", ");
        bench_print_num("matmul_tflops", mm, 3);
        printf(", \"matmul_n\": %ld, \"peak_rss_mb\": %.1f, ", nn->device ? matmul_n : 2048L, rss);
        bench_print_num("peak_device_mb", peak_dev, 1);
        printf(", \"device\": \"%s\"}\n", bench_device_name(nn));
        fflush(stdout);
    }
    fs_sam_free(m);
    free(pre), free(embed);
    return 0;
}
