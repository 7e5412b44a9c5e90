/* What bench_encoder and bench_train share: the clock, peak RSS, the
 * analytic FLOP count of the image encoder, and the device side of a
 * benchmark (the math mode, synchronisation, device memory, the matmul rate
 * of a backend's linear_forward).
 *
 * Both programs are compiled once and linked twice: build/bench/ (no CUDA
 * library) and build/cuda-bench/ (libfewsam_cuda.a pulled in through
 * -Wl,--undefined=fs_nn_cuda). The CUDA runtime's entries are therefore
 * reached only through weak references, NULL in the CPU build, and every
 * use below tests the address first. */
#ifndef FS_BENCH_COMMON_H
#define FS_BENCH_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/cuda/cuda.h"
#include "nn/nn.h"
#include "sam/config.h"
#include "sam/init.h"
#include "sam/sam.h"

/* Weak: resolved only in the CUDA build (declared in nn/cuda/cuda.h). */
extern int fs_cuda_sync(void) __attribute__((weak));
extern size_t fs_cuda_mem_peak(void) __attribute__((weak));
extern void fs_cuda_mem_reset_peak(void) __attribute__((weak));
extern const char *fs_cuda_device_name(void) __attribute__((weak));
extern int fs_nn_cuda_set_math(const char *mode) __attribute__((weak));
extern const char *fs_nn_cuda_math(void) __attribute__((weak));

/* n floats drawn uniformly from [-amp, amp] (zeros when amp is 0). */
static inline float *bench_buffer(fs_rng *r, size_t n, float amp) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fs_error("out of memory (%zu floats)", n);
        fs_cli_die();
    }
    for (size_t i = 0; i < n; i++) p[i] = amp ? (float)fs_rng_range(r, -amp, amp) : 0.0f;
    return p;
}

static inline double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Peak resident set of this process in MB (VmHWM). */
static inline double bench_peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* Matrix-product FLOPs of one image through the encoder (2 per
 * multiply-add), counted as the official model computes: windowed blocks
 * run qkv/proj on the zero-padded windows; rel-pos terms as the official
 * einsums; the patch embedding and the neck's convolutions as products. */
static inline double bench_encoder_flops(const fs_sam_config *c) {
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

/* 1 when ops is the CUDA backend of this program (the CUDA build). */
static inline int bench_is_cuda(const fs_nn_ops *ops) {
    return ops && !strcmp(ops->name, "cuda") && fs_cuda_sync && fs_nn_cuda_set_math && fs_nn_cuda_math;
}

/* Waits for every queued kernel, so that a clock read after it counts them
 * (the host backends and guard run synchronously). */
static inline void bench_sync(const fs_nn_ops *ops) {
    if (bench_is_cuda(ops) && fs_cuda_sync()) fs_cli_die();
}

/* Up to 3 math modes from a comma-separated list (fp32, tf32, bf16), in
 * order; a usage error for anything else, or for a mode other than fp32 on
 * a backend that is not cuda (the host kernels compute in fp32 only). */
typedef struct {
    int n;
    char mode[3][8];
} bench_maths;

static inline void bench_parse_maths(bench_maths *m, const char *list, const char *backend) {
    m->n = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        char w[16];
        if (len == 0 || len >= sizeof w)
            fs_cli_usage_error("--math '%s': expected fp32, tf32 or bf16, comma-separated", list);
        memcpy(w, p, len);
        w[len] = 0;
        if (strcmp(w, "fp32") && strcmp(w, "tf32") && strcmp(w, "bf16"))
            fs_cli_usage_error("--math: unknown mode '%s' (fp32, tf32 or bf16)", w);
        if (strcmp(w, "fp32") && strcmp(backend, "cuda"))
            fs_cli_usage_error("--math %s needs --backend cuda (backend '%s' computes in fp32)", w, backend);
        if (m->n == 3) fs_cli_usage_error("--math '%s': at most 3 modes", list);
        snprintf(m->mode[m->n++], sizeof m->mode[0], "%s", w);
        p += len;
        if (*p == ',') p++;
    }
    if (!m->n) fs_cli_usage_error("--math: no mode given");
}

/* The backend --backend names: an unknown name is a usage error, a known
 * one that cannot run here ("no usable GPU") a runtime error. */
static inline const fs_nn_ops *bench_backend(const char *name) {
    const fs_nn_ops *nn = fs_nn_backend(name);
    if (!nn) {
        if (strcmp(name, "cuda")) fs_cli_usage_error("%s", fs_error_msg());
        fs_cli_die();
    }
    return nn;
}

/* Selects the math mode for the products that follow (cuda only; fp32 is a
 * no-op elsewhere). The CUDA runtime is started first, so that its reading
 * of FEWSAM_CUDA_MATH at first use cannot override the choice. */
static inline void bench_set_math(const fs_nn_ops *ops, const char *mode) {
    if (!bench_is_cuda(ops)) return;
    if (fs_cuda_sync() || fs_nn_cuda_set_math(mode)) fs_cli_die();
}

/* The math mode in effect ("fp32" off cuda). */
static inline const char *bench_math(const fs_nn_ops *ops) {
    if (!bench_is_cuda(ops)) return "fp32";
    if (fs_cuda_sync()) fs_cli_die();
    return fs_nn_cuda_math();
}

/* What both programs settle once the backend is known: the math modes
 * when --math was not given (on cuda the current mode, FEWSAM_CUDA_MATH or
 * fp32, rather than fp32), the product-rate size when --matmul-n was not
 * given, and the configuration: ViT-B at img px with depth blocks. */
static inline void bench_prepare(const fs_nn_ops *nn, bench_maths *maths, const char *math, long *matmul_n,
                                 fs_sam_config *cfg, long img, long depth) {
    int cuda = bench_is_cuda(nn);
    if (!math && cuda) {
        maths->n = 1;
        snprintf(maths->mode[0], sizeof maths->mode[0], "%s", bench_math(nn));
    }
    if (!*matmul_n) *matmul_n = cuda ? 8192 : 512;
    if (fs_sam_config_preset(cfg, "vit_b")) fs_cli_die();
    cfg->img_size = (size_t)img;
    cfg->depth = (size_t)depth;
    if (fs_sam_config_validate(cfg)) fs_cli_die();
}

/* The model with random weights, as the trainer's --init random makes it. */
static inline fs_sam *bench_model(const fs_sam_config *cfg) {
    fs_sam *m;
    if (fs_sam_create_random(&m, cfg, 1)) fs_cli_die();
    return m;
}

static inline const char *bench_device_name(const fs_nn_ops *ops) {
    if (bench_is_cuda(ops) && fs_cuda_device_name) return fs_cuda_device_name();
    return ops->device ? "host memory (guard)" : "cpu";
}

/* Device memory accounting (cuda only; the others report -1 = unknown). */
static inline void bench_reset_peak(const fs_nn_ops *ops) {
    if (bench_is_cuda(ops) && fs_cuda_mem_reset_peak) fs_cuda_mem_reset_peak();
}
static inline double bench_peak_device_mb(const fs_nn_ops *ops) {
    if (bench_is_cuda(ops) && fs_cuda_mem_peak) return (double)fs_cuda_mem_peak() / 1048576.0;
    return -1;
}

/* Prints a double, or null when negative / not finite (for the JSON). */
static inline void bench_print_num(const char *key, double v, int prec) {
    if (v < 0 || !isfinite(v)) printf("\"%s\": null", key);
    else printf("\"%s\": %.*f", key, prec, v);
}

/* TFLOP/s of out[n, n] = a[n, n] @ b[n, n]^T through ops->linear_forward on
 * random data in the backend's memory (alloc/upload when ops is a device
 * backend), in the current math mode: best of reps after one warm-up, each
 * product bracketed by bench_sync. Every buffer is freed before return. */
static inline double bench_matmul_tflops(const fs_nn_ops *ops, size_t n, int reps) {
    size_t bytes = n * n * sizeof(float);
    fs_rng r;
    fs_rng_init(&r, 7, 0);
    float *h = bench_buffer(&r, n * n, 1), *a, *b, *c;
    if (ops->device) {
        a = ops->alloc(bytes), b = ops->alloc(bytes), c = ops->alloc(bytes);
        if (!a || !b || !c) fs_cli_die();
        ops->upload(a, h, bytes);
        ops->upload(b, h, bytes);
    } else {
        a = h, b = bench_buffer(&r, n * n, 1), c = bench_buffer(&r, n * n, 0);
    }
    double best = 1e30;
    for (int i = -1; i < reps; i++) {
        bench_sync(ops);
        double t0 = bench_now();
        ops->linear_forward(c, a, b, NULL, n, n, n);
        bench_sync(ops);
        double t = bench_now() - t0;
        if (i >= 0 && t < best) best = t;
    }
    if (ops->device) {
        ops->free(a), ops->free(b), ops->free(c);
        free(h);
    } else {
        free(h), free(b), free(c);
    }
    return 2.0 * (double)n * (double)n * (double)n / best / 1e12;
}

#endif
