/* bench_train: times one LoRA fine-tuning step of SAM through the C
 * training API (fs_train_step_batch: forward, 0.2 BCE + 0.8 Dice at the
 * low-res size, backward, AdamW) with random weights, ViT-B by default:
 * --batch images (1), one positive point prompt at the centre of each, a
 * disc of radius L/4 as every target (L = img / 4), LoRA rank 4 on q and v,
 * the mask decoder trained in full. Prints one JSON object per math mode,
 * one a line (one line unless --math lists several):
 *   {"backend", "img", "batch", "threads", "depth", "rank", "recompute",
 *    "math", "seconds" (best of --steps timed steps after --warmup),
 *    "median", "seconds_all", "images_per_s" (batch / seconds), "loss" (of
 *    the first step in this mode), "trainable", "gflop" (model FLOPs of a
 *    step, see below), "matmul_tflops" (the backend's product rate in this
 *    math mode: linear_forward through the table on M = N = K = --matmul-n,
 *    best of 3 after a warm-up, synchronised, after the timed steps),
 *    "matmul_n",
 *    "peak_rss_mb" (VmHWM of this process), "peak_device_mb" (cuda: the most
 *    device memory the backend held during the timed steps, the model,
 *    training state and activations included: the peak is reset after the
 *    warm-up; null elsewhere), "device"}
 * Model FLOPs of a step = 2 x batch x the encoder forward's matrix-product
 * FLOPs (bench_encoder_flops): the forward, and in the backward pass the
 * input gradients of every encoder product; the frozen base weights need no
 * weight gradients, and the LoRA adapters' and the mask decoder's products
 * (under 1% of the encoder's) are left out, as is recompute's second
 * forward (work done, not model FLOPs).
 * On cuda every clock read is preceded by fs_cuda_sync, so queued kernels
 * (the AdamW update included) are counted.
 * tests/bench/train_torch.py is the PyTorch twin. */
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/nn.h"
#include "sam/init.h"
#include "sam/sam.h"
#include "sam/train.h"

#include "bench_common.h"

static fs_rng rng;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    printf("Usage: bench_train [--img N] [--batch N] [--backend cpu|ref|guard|cuda] [--math LIST]\n"
           "                   [--steps N] [--warmup N] [--depth N] [--rank N] [--recompute] [--matmul-n N]\n"
           "                   [--probe]\n"
           "Times one SAM LoRA training step (random ViT-B weights); prints one JSON object per math mode.\n"
           "  --img N       input size, a multiple of 16 (default 512)\n"
           "  --batch N     images per step, one point prompt each (default 1)\n"
           "  --backend B   fs_nn_ops backend (default cpu; cuda in the CUDA build, build/cuda-bench/)\n"
           "  --math LIST   comma-separated matrix-product modes, each measured in turn: fp32, tf32,\n"
           "                bf16 (cuda only; default: the backend's current mode)\n"
           "  --steps N     timed steps after the warm-up; best and median reported (default 3)\n"
           "  --warmup N    untimed steps first, in each math mode (default 1)\n"
           "  --depth N     encoder blocks (default 12; global blocks 2, 5, 8, 11)\n"
           "  --rank N      LoRA rank on q and v (default 4)\n"
           "  --recompute   keep only block inputs; recompute in the backward pass\n"
           "  --matmul-n N  size of the product-rate test (default 8192 on cuda, else 512)\n"
           "  --probe       print 1 if the backend can train (every backward kernel), else 0\n"
           "Threads: OMP_NUM_THREADS.\n");
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    long img = 512, steps = 3, warmup = 1, depth = 12, rank = 4, batch = 1, matmul_n = 0;
    const char *backend = "cpu", *math = NULL;
    int recompute = 0, probe = 0;
    static const struct option opts[] = {
        {"img", required_argument, 0, 'i'},   {"backend", required_argument, 0, 'b'},
        {"steps", required_argument, 0, 's'}, {"warmup", required_argument, 0, 'w'},
        {"depth", required_argument, 0, 'd'}, {"rank", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'n'}, {"math", required_argument, 0, 'm'},
        {"matmul-n", required_argument, 0, 'g'},
        {"recompute", no_argument, 0, 'c'},   {"probe", no_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'i': img = fs_cli_long("--img", optarg, 16, 4096); break;
        case 'b': backend = optarg; break;
        case 's': steps = fs_cli_long("--steps", optarg, 1, 100); break;
        case 'w': warmup = fs_cli_long("--warmup", optarg, 0, 100); break;
        case 'd': depth = fs_cli_long("--depth", optarg, 1, 12); break;
        case 'k': rank = fs_cli_long("--rank", optarg, 1, 256); break;
        case 'n': batch = fs_cli_long("--batch", optarg, 1, 64); break;
        case 'm': math = optarg; break;
        case 'g': matmul_n = fs_cli_long("--matmul-n", optarg, 16, 32768); break;
        case 'c': recompute = 1; break;
        case 'p': probe = 1; break;
        case 'h': usage(); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (img % 16) fs_cli_usage_error("--img %ld is not a multiple of the patch size 16", img);
    bench_maths maths;
    bench_parse_maths(&maths, math ? math : "fp32", backend);
    const fs_nn_ops *nn = bench_backend(backend);
    if (probe) {
        printf("%d\n", fs_train_backend_ok(nn));
        return 0;
    }
    if (!fs_train_backend_ok(nn)) {
        fprintf(stderr, "bench_train: error: backend '%s' lacks backward kernels training needs\n", nn->name);
        return 1;
    }
    fs_sam_config cfg;
    bench_prepare(nn, &maths, math, &matmul_n, &cfg, img, depth);

    fs_rng_init(&rng, 1, 0);
    fs_sam *m = bench_model(&cfg);
    size_t B = (size_t)batch;
    fs_train_config tc;
    fs_train_config_default(&tc);
    tc.lora.rank = (size_t)rank;
    tc.lora.targets = FS_LORA_QV;
    tc.decoder = FS_TRAIN_DECODER_FULL;
    tc.batch = B;
    tc.recompute = recompute;
    fs_log_set_level(FS_LOG_WARN);
    fs_train *t;
    /* the training state lives where the model is bound: bind first */
    if ((nn->device && fs_sam_bind(m, nn)) || fs_train_create(&t, m, &tc)) fs_cli_die();

    size_t S = cfg.img_size, L = 4 * fs_sam_grid(&cfg);
    float *images = bench_buffer(&rng, B * 3 * S * S, 2.0f), *target = bench_buffer(&rng, B * L * L, 0);
    double c = ((double)L - 1) / 2, r = (double)L / 4;
    for (size_t y = 0; y < L; y++)
        for (size_t x = 0; x < L; x++)
            target[y * L + x] = ((double)y - c) * ((double)y - c) + ((double)x - c) * ((double)x - c) <= r * r;
    for (size_t i = 1; i < B; i++) memcpy(target + i * L * L, target, L * L * sizeof *target);
    float point[2] = {(float)S / 2, (float)S / 2};
    int label = 1;
    fs_sam_prompt pr[64];
    size_t item_image[64];
    for (size_t i = 0; i < B; i++) {
        pr[i] = (fs_sam_prompt){point, &label, 1, NULL};
        item_image[i] = i;
    }
    fs_train_batch b = {.images = images, .n_images = B, .prompts = pr, .item_image = item_image, .n_items = B,
                        .targets = target};
    double gflop = 2.0 * (double)B * bench_encoder_flops(&cfg) / 1e9;

    for (int k = 0; k < maths.n; k++) {
        bench_set_math(nn, maths.mode[k]);
        double all[200], sorted[200], first_loss = NAN;
        for (long s = -warmup; s < steps; s++) {
            if (s == 0) bench_reset_peak(nn); /* the held state stays in the peak */
            fs_loss_value loss;
            bench_sync(nn);
            double t0 = bench_now();
            if (fs_train_step_batch(t, nn, &b, 1e-4, &loss)) fs_cli_die();
            bench_sync(nn);
            double dt = bench_now() - t0;
            if (!isfinite(loss.total)) {
                fprintf(stderr, "bench_train: error: non-finite loss at step %ld (math %s)\n", s + warmup,
                        maths.mode[k]);
                return 1;
            }
            if (isnan(first_loss)) first_loss = loss.total;
            if (s >= 0) all[s] = dt;
        }
        double peak_dev = bench_peak_device_mb(nn);
        memcpy(sorted, all, (size_t)steps * sizeof *all);
        qsort(sorted, (size_t)steps, sizeof *sorted, cmp_double);
        double median = steps % 2 ? sorted[steps / 2] : 0.5 * (sorted[steps / 2 - 1] + sorted[steps / 2]);
        double rss = bench_peak_rss_mb();
        /* after the readings: its buffers must not count in either peak */
        double mm = bench_matmul_tflops(nn, (size_t)matmul_n, 3);
        printf("{\"backend\": \"%s\", \"img\": %zu, \"batch\": %zu, \"threads\": %d, \"depth\": %zu, \"rank\": %ld, "
               "\"recompute\": %d, \"math\": \"%s\", \"seconds\": %.4f, \"median\": %.4f, \"seconds_all\": [",
               nn->name, S, B, omp_get_max_threads(), cfg.depth, rank, recompute, bench_math(nn), sorted[0],
               median);
        for (long s = 0; s < steps; s++) printf("%s%.4f", s ? ", " : "", all[s]);
        printf("], \"images_per_s\": %.3f, \"loss\": %.6f, \"trainable\": %zu, \"gflop\": %.2f, ",
               (double)B / sorted[0], first_loss, fs_train_param_count(t), gflop);
        bench_print_num("matmul_tflops", mm, 3);
        printf(", \"matmul_n\": %ld, \"peak_rss_mb\": %.1f, ", matmul_n, rss);
        bench_print_num("peak_device_mb", peak_dev, 1);
        printf(", \"device\": \"%s\"}\n", bench_device_name(nn));
        fflush(stdout);
    }
    fs_train_free(t);
    fs_sam_free(m);
    free(images), free(target);
    return 0;
}
