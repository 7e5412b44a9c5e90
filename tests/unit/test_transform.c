/* Synthesis transforms: each fast routine against its plain reference twin. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/transform.h"

/* Random masks of several shapes and densities, a row stride wider than
 * the row, and the corner cases (no 0, a single 0, all 0). */
static void edt_mask_matches_reference(void) {
    fs_rng r;
    fs_rng_init(&r, 7, 0);
    enum { MAX = 70 };
    uint8_t *mask = malloc(MAX * (MAX + 3));
    double *f = malloc(MAX * MAX * sizeof *f), line[MAX + 1], env[MAX + 2];
    int idx[MAX + 1];
    int32_t *d = malloc(MAX * MAX * sizeof *d), scratch[3 * MAX];
    for (int trial = 0; trial < 400; trial++) {
        const size_t h = 1 + (size_t)(fs_rng_uniform(&r) * MAX), w = 1 + (size_t)(fs_rng_uniform(&r) * MAX);
        const size_t ms = w + (size_t)(trial % 4);
        const int kind = trial % 8;
        const double p0 = kind == 0 ? 0.002 : kind == 1 ? 0.5 : 0.05; /* chance of a 0 */
        for (size_t i = 0; i < h * ms; i++) mask[i] = kind == 2 ? 1 : kind == 3 ? 0 : fs_rng_uniform(&r) >= p0;
        if (kind == 4) {
            for (size_t i = 0; i < h * ms; i++) mask[i] = 1;
            mask[(size_t)(fs_rng_uniform(&r) * h) * ms + (size_t)(fs_rng_uniform(&r) * w)] = 0;
        }
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) f[y * w + x] = mask[y * ms + x] ? INFINITY : 0;
        fs_edt2_sq(f, h, w, line, env, idx);
        fs_edt2_sq_mask(mask, h, w, ms, d, scratch);
        int bad = 0;
        for (size_t i = 0; i < h * w && !bad; i++)
            bad = isinf(f[i]) ? d[i] != FS_EDT_NONE : (double)d[i] != f[i];
        CHECKF(!bad, "trial %d (%zux%zu, kind %d)", trial, h, w, kind);
    }
    free(mask);
    free(f);
    free(d);
}

/* The first largest value of the reference transform, on random masks and
 * on shapes with many ties (rectangles, discs, rings, bars). */
static void edt_argmax_matches_reference(void) {
    fs_rng r;
    fs_rng_init(&r, 8, 0);
    enum { MAX = 64 };
    uint8_t mask[MAX * (MAX + 2)];
    double f[MAX * MAX], line[MAX + 1], env[MAX + 2];
    int idx[MAX + 1];
    int32_t d[MAX * MAX], scratch[4 * MAX];
    for (int trial = 0; trial < 600; trial++) {
        const size_t h = 1 + (size_t)(fs_rng_uniform(&r) * MAX), w = 1 + (size_t)(fs_rng_uniform(&r) * MAX);
        const size_t ms = w + (size_t)(trial % 3);
        const int kind = trial % 6;
        const double cx = fs_rng_uniform(&r) * (double)w, cy = fs_rng_uniform(&r) * (double)h;
        const double rad = 1 + fs_rng_uniform(&r) * MAX / 2, ax = 0.3 + 2 * fs_rng_uniform(&r);
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                const double dx = ((double)x - cx) * ax, dy = (double)y - cy, q = sqrt(dx * dx + dy * dy);
                uint8_t v;
                switch (kind) {
                case 0: v = fs_rng_uniform(&r) >= 0.05; break;
                case 1: v = fabs(dx) < rad && fabs(dy) < rad / 2; break;
                case 2: v = q < rad; break;
                case 3: v = q < rad && q > rad / 3; break;
                case 4: v = ((x / 3) % 2 == 0) && y > 0; break;
                default: v = q < rad || fs_rng_uniform(&r) < 0.3; break;
                }
                mask[y * ms + x] = v;
            }
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) f[y * w + x] = mask[y * ms + x] ? INFINITY : 0;
        fs_edt2_sq(f, h, w, line, env, idx);
        size_t best = 0;
        double bd = -1;
        for (size_t i = 0; i < h * w; i++)
            if (f[i] > bd) bd = f[i], best = i;
        const size_t got = fs_edt2_argmax_mask(mask, h, w, ms, d, scratch);
        CHECKF(got == best, "trial %d (%zux%zu, kind %d): %zu, expected %zu", trial, h, w, kind, got, best);
    }
}

/* Long strips reach the largest distances the integers must hold. */
static void edt_mask_long_strips(void) {
    enum { L = 8192 };
    uint8_t *mask = malloc(3 * L);
    int32_t *d = malloc(3 * L * sizeof *d), *scratch = malloc(3 * L * sizeof *scratch);
    memset(mask, 1, 3 * L);
    mask[0] = 0;
    fs_edt2_sq_mask(mask, L, 3, 3, d, scratch); /* one 0 at the top left */
    CHECK(d[0] == 0 && d[(L - 1) * 3 + 2] == (int32_t)(L - 1) * (L - 1) + 4);
    fs_edt2_sq_mask(mask, 3, L, L, d, scratch);
    CHECK(d[0] == 0 && d[2 * L + L - 1] == (int32_t)(L - 1) * (L - 1) + 4);
    free(mask);
    free(d);
    free(scratch);
}

int main(void) {
    RUN(edt_mask_matches_reference);
    RUN(edt_argmax_matches_reference);
    RUN(edt_mask_long_strips);
    TEST_EXIT();
}
