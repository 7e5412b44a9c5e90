/* bench_train: times one LoRA fine-tuning step of SAM through the C
 * training API (fs_train_step_batch: forward, 0.2 BCE + 0.8 Dice at the
 * low-res size, backward, AdamW) with random weights, ViT-B by default:
 * batch 1, one positive point prompt at the centre, a disc of radius L/4 as
 * the target (L = img / 4), LoRA rank 4 on q and v, the mask decoder trained
 * in full. Prints one JSON object on stdout:
 *   {"backend", "img", "threads", "depth", "rank", "recompute", "seconds"
 *    (best of --steps timed steps after --warmup), "median", "seconds_all",
 *    "loss" (of the first step), "trainable", "peak_rss_mb" (VmHWM of this
 *    process)}
 * tests/bench/train_torch.py is the PyTorch twin.
 * --backend cpu+ref borrows the reference backward kernels where the CPU
 * backend has none (a functional check: those kernels are plain loops). */
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

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static fs_rng rng;

static float *buffer(size_t n, float amp) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_train: error: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = amp ? (float)fs_rng_range(&rng, -amp, amp) : 0.0f;
    return p;
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The CPU table with the reference backward kernels wherever it has none. */
static fs_nn_ops cpu_plus_ref(int *borrowed) {
    fs_nn_ops o = fs_nn_cpu;
    const fs_nn_ops *r = &fs_nn_ref;
    *borrowed = 0;
#define BORROW(f)                                                                                                      \
    if (!o.f) o.f = r->f, (*borrowed)++
    BORROW(linear_backward);
    BORROW(layernorm_backward);
    BORROW(gelu_backward);
    BORROW(relu_backward);
    BORROW(attention_backward);
    BORROW(attention_relpos_backward);
    BORROW(patch_embed_backward);
    BORROW(conv3x3_backward);
    BORROW(conv_transpose2x2_backward);
    BORROW(resize_bilinear_backward);
#undef BORROW
    o.name = *borrowed ? "cpu+ref" : "cpu";
    return o;
}

static void usage(void) {
    printf("Usage: bench_train [--img N] [--backend cpu|ref|cpu+ref] [--steps N] [--warmup N] [--depth N]\n"
           "                   [--rank N] [--recompute] [--probe]\n"
           "Times one SAM LoRA training step (random ViT-B weights); prints one JSON object.\n"
           "  --img N       input size, a multiple of 16 (default 512)\n"
           "  --backend B   fs_nn_ops backend (default cpu); cpu+ref: the CPU backend with the\n"
           "                reference backward kernels where it has none (slow; a functional check)\n"
           "  --steps N     timed steps after the warm-up; best and median reported (default 3)\n"
           "  --warmup N    untimed steps first (default 1)\n"
           "  --depth N     encoder blocks (default 12; global blocks 2, 5, 8, 11)\n"
           "  --rank N      LoRA rank on q and v (default 4)\n"
           "  --recompute   keep only block inputs; recompute in the backward pass\n"
           "  --probe       print 1 if the backend can train (every backward kernel), else 0\n"
           "Threads: OMP_NUM_THREADS.\n");
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    long img = 512, steps = 3, warmup = 1, depth = 12, rank = 4;
    const char *backend = "cpu";
    int recompute = 0, probe = 0;
    static const struct option opts[] = {
        {"img", required_argument, 0, 'i'},   {"backend", required_argument, 0, 'b'},
        {"steps", required_argument, 0, 's'}, {"warmup", required_argument, 0, 'w'},
        {"depth", required_argument, 0, 'd'}, {"rank", required_argument, 0, 'k'},
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
        case 'c': recompute = 1; break;
        case 'p': probe = 1; break;
        case 'h': usage(); return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (img % 16) fs_cli_usage_error("--img %ld is not a multiple of the patch size 16", img);
    fs_nn_ops mixed;
    const fs_nn_ops *nn;
    if (!strcmp(backend, "cpu+ref")) {
        int borrowed;
        mixed = cpu_plus_ref(&borrowed);
        nn = &mixed;
        if (borrowed) fprintf(stderr, "bench_train: %d backward kernels borrowed from 'ref'\n", borrowed);
    } else if (!(nn = fs_nn_backend(backend))) {
        fs_cli_usage_error("unknown backend '%s' (cpu, ref or cpu+ref)", backend);
    }
    if (probe) {
        printf("%d\n", fs_train_backend_ok(nn));
        return 0;
    }
    if (!fs_train_backend_ok(nn)) {
        fprintf(stderr, "bench_train: error: backend '%s' has no backward kernels yet (--backend cpu+ref borrows "
                        "the reference ones)\n", nn->name);
        return 1;
    }

    fs_sam_config cfg;
    if (fs_sam_config_preset(&cfg, "vit_b")) fs_cli_die();
    cfg.img_size = (size_t)img;
    cfg.depth = (size_t)depth;
    if (fs_sam_config_validate(&cfg)) fs_cli_die();

    fs_rng_init(&rng, 1, 0);
    fs_sam *m;
    if (fs_sam_create_random(&m, &cfg, 1)) m = NULL; /* the trainer's --init random */
    if (!m) fs_cli_die();
    fs_train_config tc;
    fs_train_config_default(&tc);
    tc.lora.rank = (size_t)rank;
    tc.lora.targets = FS_LORA_QV;
    tc.decoder = FS_TRAIN_DECODER_FULL;
    tc.batch = 1;
    tc.recompute = recompute;
    fs_log_set_level(FS_LOG_WARN);
    fs_train *t;
    if (fs_train_create(&t, m, &tc)) fs_cli_die();

    size_t S = cfg.img_size, L = 4 * fs_sam_grid(&cfg);
    float *images = buffer(3 * S * S, 2.0f), *target = buffer(L * L, 0);
    double c = ((double)L - 1) / 2, r = (double)L / 4;
    for (size_t y = 0; y < L; y++)
        for (size_t x = 0; x < L; x++)
            target[y * L + x] = ((double)y - c) * ((double)y - c) + ((double)x - c) * ((double)x - c) <= r * r;
    float point[2] = {(float)S / 2, (float)S / 2};
    int label = 1;
    fs_sam_prompt pr = {point, &label, 1, NULL};
    size_t item_image = 0;
    fs_train_batch b = {.images = images, .n_images = 1, .prompts = &pr, .item_image = &item_image, .n_items = 1,
                        .targets = target};

    double all[200], sorted[200], first_loss = NAN;
    for (long s = -warmup; s < steps; s++) {
        fs_loss_value loss;
        double t0 = now();
        if (fs_train_step_batch(t, nn, &b, 1e-4, &loss)) fs_cli_die();
        double dt = now() - t0;
        if (!isfinite(loss.total)) {
            fprintf(stderr, "bench_train: error: non-finite loss at step %ld\n", s + warmup);
            return 1;
        }
        if (isnan(first_loss)) first_loss = loss.total;
        if (s >= 0) all[s] = dt;
    }
    memcpy(sorted, all, (size_t)steps * sizeof *all);
    qsort(sorted, (size_t)steps, sizeof *sorted, cmp_double);
    double median = steps % 2 ? sorted[steps / 2] : 0.5 * (sorted[steps / 2 - 1] + sorted[steps / 2]);
    double rss = peak_rss_mb();
    printf("{\"backend\": \"%s\", \"img\": %zu, \"threads\": %d, \"depth\": %zu, \"rank\": %ld, \"recompute\": %d, "
           "\"seconds\": %.4f, \"median\": %.4f, \"seconds_all\": [",
           nn->name, S, omp_get_max_threads(), cfg.depth, rank, recompute, sorted[0], median);
    for (long s = 0; s < steps; s++) printf("%s%.4f", s ? ", " : "", all[s]);
    printf("], \"loss\": %.6f, \"trainable\": %zu, \"peak_rss_mb\": %.1f}\n", first_loss, fs_train_param_count(t),
           rss);
    fs_train_free(t);
    fs_sam_free(m);
    free(images), free(target);
    return 0;
}
