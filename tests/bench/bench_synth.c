/* bench_synth: samples per second of exemplar-guided synthesis
 * (data/synth.h, default settings) on one thread, at the exemplars' size.
 *
 *   bench_synth --make-exemplars FILE.h5 [--size 512] [--count 8]
 *       writes exemplars for the benchmark: axial slices of phantom cases
 *       (data/phantom.h) at SIZE x SIZE, abdominal window [-160, 240] HU,
 *       each holding labelled organs (tests/bench/synth_numpy.py reads the
 *       same file);
 *   bench_synth --exemplars FILE.h5 [--samples N] [--reps R] [--seed S]
 *       times N samples (after a warm-up of 8) R times and keeps the best,
 *       in CPU seconds of the process (one thread: per-core throughput
 *       that other load on the machine disturbs less than wall time);
 *       prints one JSON object: {"size", "samples", "seconds" (CPU),
 *       "wall_seconds",
 *       "samples_per_s", "ms_per_sample", "threads", "objects_per_sample",
 *       "peak_rss_mb"}.
 * tests/bench/synth_numpy.py is the numpy + scipy.ndimage twin. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli.h"
#include "core/error.h"
#include "data/phantom.h"
#include "data/synth.h"

/* CPU time of this process: per-core throughput, robust to other load on
 * the machine (wall time is reported too). */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) mb = atof(line + 6) / 1024.0;
    if (f) fclose(f);
    return mb;
}

static int make_exemplars(const char *path, size_t size, size_t count) {
    fs_shard_meta meta = {.n_classes = fs_phantom_n_classes, .class_names = (char **)fs_phantom_class_names,
                          .provenance = "bench_synth: phantom cases, abdominal window"};
    snprintf(meta.dataset, sizeof meta.dataset, "demo");
    fs_slice_writer *w;
    if (fs_slice_writer_open(&w, path, &meta, size, size)) return FS_ERR;
    fs_phantom_params p = {size, size, 48, {1.5 * 128 / (double)size, 1.5 * 128 / (double)size, 3.0}};
    float *img = malloc(size * size * sizeof *img);
    size_t made = 0;
    for (size_t c = 0; made < count && c < 64; c++) {
        fs_volume ct, lab;
        if (fs_phantom_case(1, c, &p, &ct, &lab)) { free(img); fs_slice_writer_abort(w); return FS_ERR; }
        /* two slices per case, a third and two thirds of the way up */
        for (size_t z = p.nz / 3; z < p.nz && made < count; z += p.nz / 3) {
            const float *hu = (const float *)ct.data.data + z * size * size;
            const uint8_t *l = (const uint8_t *)lab.data.data + z * size * size;
            size_t fg = 0;
            for (size_t i = 0; i < size * size; i++) {
                float v = (hu[i] + 160.0f) / 400.0f;
                img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
                fg += l[i] != 0;
            }
            if (!fg) continue;
            char id[64];
            snprintf(id, sizeof id, "phantom%04zu", c);
            if (fs_slice_writer_add(w, img, l, id, (int32_t)z)) {
                free(img);
                fs_slice_writer_abort(w);
                return FS_ERR;
            }
            made++;
        }
        fs_volume_free(&ct);
        fs_volume_free(&lab);
    }
    free(img);
    return fs_slice_writer_commit(w);
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_MAKE = 256, O_EX, O_SIZE, O_COUNT, O_SAMPLES, O_REPS, O_SEED };
    static const struct option opts[] = {
        {"make-exemplars", required_argument, 0, O_MAKE}, {"exemplars", required_argument, 0, O_EX},
        {"size", required_argument, 0, O_SIZE}, {"count", required_argument, 0, O_COUNT},
        {"samples", required_argument, 0, O_SAMPLES}, {"reps", required_argument, 0, O_REPS},
        {"seed", required_argument, 0, O_SEED}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *make = NULL, *ex = NULL;
    long size = 512, count = 8, samples = 200, reps = 3;
    uint64_t seed = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MAKE: make = optarg; break;
        case O_EX: ex = optarg; break;
        case O_SIZE: size = fs_cli_long("size", optarg, 64, 4096); break;
        case O_COUNT: count = fs_cli_long("count", optarg, 1, 1000); break;
        case O_SAMPLES: samples = fs_cli_long("samples", optarg, 1, 10000000); break;
        case O_REPS: reps = fs_cli_long("reps", optarg, 1, 100); break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case 'h': puts("usage: bench_synth --make-exemplars FILE.h5 [--size N] [--count N]\n"
                       "       bench_synth --exemplars FILE.h5 [--samples N] [--reps N] [--seed N]");
            return 0;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (make) {
        if (make_exemplars(make, (size_t)size, (size_t)count)) fs_cli_die();
        return 0;
    }
    if (!ex) fs_cli_usage_error("--exemplars or --make-exemplars is required");
    omp_set_num_threads(1);
    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    cfg.seed = seed;
    fs_synth *s;
    if (fs_synth_open(&s, ex, NULL, &cfg)) fs_cli_die();
    size_t H, W;
    fs_synth_size(s, &H, &W);
    fs_sample smp = {0};
    for (uint64_t i = 0; i < 8; i++)
        if (fs_synth_sample(s, 1000000 + i, &smp)) fs_cli_die();
    double best = 1e30, best_wall = 1e30;
    size_t objects = 0;
    for (long r = 0; r < reps; r++) {
        objects = 0;
        double t0 = cpu_now(), w0 = now();
        for (long i = 0; i < samples; i++) {
            if (fs_synth_sample(s, (uint64_t)i, &smp)) fs_cli_die();
            objects += smp.n_objects;
        }
        double t = cpu_now() - t0, tw = now() - w0;
        if (t < best) best = t;
        if (tw < best_wall) best_wall = tw;
    }
    printf("{\"size\": %zu, \"samples\": %ld, \"seconds\": %.6f, \"wall_seconds\": %.6f, \"samples_per_s\": %.2f, "
           "\"ms_per_sample\": %.4f, \"threads\": 1, \"objects_per_sample\": %.3f, \"peak_rss_mb\": %.1f}\n",
           H, samples, best, best_wall, (double)samples / best, 1000.0 * best / (double)samples,
           (double)objects / (double)samples, peak_rss_mb());
    fs_sample_free(&smp);
    fs_synth_free(s);
    return 0;
}
