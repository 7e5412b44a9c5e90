/* Synthesis transforms: each fast routine against its plain reference twin. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/metrics.h"
#include "data/transform.h"

/* The reference: fs_metrics_edt_sq over one slice with unit spacing, on
 * f[h, w] = (mask ? INFINITY : 0). */
static int reference_edt(const uint8_t *mask, size_t h, size_t w, size_t ms, double *f) {
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) f[y * w + x] = mask[y * ms + x] ? INFINITY : 0;
    const size_t shape[3] = {1, h, w};
    const double unit[3] = {1, 1, 1};
    return fs_metrics_edt_sq(f, shape, unit);
}

/* Random masks of several shapes and densities, a row stride wider than
 * the row, and the corner cases (no 0, a single 0, all 0). */
static void edt_mask_matches_reference(void) {
    fs_rng r;
    fs_rng_init(&r, 7, 0);
    enum { MAX = 70 };
    uint8_t *mask = malloc(MAX * (MAX + 3));
    double *f = malloc(MAX * MAX * sizeof *f);
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
        CHECK(reference_edt(mask, h, w, ms, f) == FS_OK);
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
    double f[MAX * MAX];
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
        CHECK(reference_edt(mask, h, w, ms, f) == FS_OK);
        size_t best = 0;
        double bd = -1;
        for (size_t i = 0; i < h * w; i++)
            if (f[i] > bd) bd = f[i], best = i;
        const size_t got = fs_edt2_argmax_mask(mask, h, w, ms, d, scratch);
        CHECKF(got == best, "trial %d (%zux%zu, kind %d): %zu, expected %zu", trial, h, w, kind, got, best);
    }
}

/* Sources with zero borders of random widths (or all zero, or none) under
 * random rotations, scales, flips and shifts: the same bytes as the full
 * warp, with and without labels. */
static void warp_support_matches_full(void) {
    fs_rng r;
    fs_rng_init(&r, 9, 0);
    enum { SH = 37, SW = 45, DH = 41, DW = 39 };
    float src[SH * SW], a[DH * DW], b[DH * DW];
    uint8_t lab[SH * SW], la[DH * DW], lb[DH * DW];
    for (int trial = 0; trial < 300; trial++) {
        const long x0 = (long)(fs_rng_uniform(&r) * SW), x1 = x0 + (long)(fs_rng_uniform(&r) * (double)(SW - x0));
        const long y0 = (long)(fs_rng_uniform(&r) * SH), y1 = y0 + (long)(fs_rng_uniform(&r) * (double)(SH - y0));
        const int empty = trial % 17 == 0;
        for (long y = 0; y < SH; y++)
            for (long x = 0; x < SW; x++) {
                const int in = !empty && x >= x0 && x <= x1 && y >= y0 && y <= y1;
                src[y * SW + x] = in ? (float)fs_rng_uniform(&r) : 0;
                lab[y * SW + x] = in && fs_rng_uniform(&r) < 0.5 ? (uint8_t)(1 + trial % 5) : 0;
            }
        if (!empty && trial % 3 == 0) src[y0 * SW + x0] = -0.0f; /* a zero that is not all zero bits */
        fs_support sup;
        fs_warp_support(src, lab, SH, SW, &sup);
        CHECK(empty ? sup.x0 > sup.x1 : sup.x0 >= x0 && sup.x1 <= x1 && sup.y0 >= y0 && sup.y1 <= y1);
        const double th = (fs_rng_uniform(&r) - 0.5) * 1.2, sc = 0.7 + fs_rng_uniform(&r) * 0.8;
        const double fx = trial % 2 ? -1 : 1;
        fs_affine m = {{{fx * cos(th) / sc, sin(th) / sc}, {-fx * sin(th) / sc, cos(th) / sc}},
                       {(fs_rng_uniform(&r) - 0.5) * 60, (fs_rng_uniform(&r) - 0.5) * 60}};
        if (trial % 5 == 0) m.a[0][1] = m.a[1][0] = 0; /* axis-aligned: a zero step along one axis */
        const long ox = (long)(fs_rng_uniform(&r) * 10) - 5, oy = (long)(fs_rng_uniform(&r) * 10) - 5;
        fs_warp_pair(src, lab, SH, SW, a, la, DH, DW, DW, ox, oy, &m);
        memset(b, 0x7f, sizeof b);
        memset(lb, 0x7f, sizeof lb);
        fs_warp_pair_support(src, lab, SH, SW, &sup, b, lb, DH, DW, DW, ox, oy, &m);
        CHECKF(!memcmp(a, b, sizeof a) && !memcmp(la, lb, sizeof la), "trial %d", trial);
        fs_warp_support(src, NULL, SH, SW, &sup);
        fs_warp_bilinear(src, SH, SW, a, DH, DW, DW, ox, oy, &m);
        fs_warp_pair_support(src, NULL, SH, SW, &sup, b, NULL, DH, DW, DW, ox, oy, &m);
        CHECKF(!memcmp(a, b, sizeof a), "trial %d, image only", trial);
    }
}

/* The photometric pass against the documented formula computed plainly:
 * noise bit for bit (every counter hashed directly, blocks of 2^32
 * counters crossed), gamma within the table's 2e-4 of pow. */
static uint32_t ref_noise_bits(uint64_t key, uint64_t stream, uint64_t ctr) {
    uint32_t z = (uint32_t)fs_hash64(key, stream, ctr >> 32) ^ ((uint32_t)ctr * 0x9e3779b9u);
    z ^= z >> 16;
    z *= 0x7feb352du;
    z ^= z >> 15;
    z *= 0x846ca68bu;
    z ^= z >> 16;
    return z;
}

static float ref_clamp01(float v) { return v > 0 ? (v < 1 ? v : 1) : 0; }

static void photometric_matches_reference(void) {
    enum { N = 1003 };
    float x[N], y[N];
    fs_rng r;
    fs_rng_init(&r, 10, 0);
    for (int i = 0; i < N; i++) x[i] = (float)fs_rng_uniform(&r);
    const double sigma = 0.03;
    const float scale = (float)(sigma / sqrt(4.0 * (256.0 * 256.0 - 1.0) / 12.0));
    for (int trial = 0; trial < 4; trial++) {
        /* the last two start just below a 2^32 block boundary */
        const uint64_t c0 = trial < 2 ? (uint64_t)trial * 77 : ((uint64_t)(trial + 5) << 32) - 500;
        const uint64_t key = 1234 + (uint64_t)trial, stream = 3;
        memcpy(y, x, sizeof y);
        fs_noise(y, N, sigma, key, stream, c0);
        int bad = 0;
        for (int i = 0; i < N && !bad; i++) {
            const uint32_t z = ref_noise_bits(key, stream, c0 + (uint64_t)i);
            const uint32_t sum = (z & 0xff) + ((z >> 8) & 0xff) + ((z >> 16) & 0xff) + (z >> 24);
            bad = y[i] != ref_clamp01(x[i] + scale * ((float)(int32_t)sum - 510.0f));
        }
        CHECKF(!bad, "noise, trial %d", trial);
        const double contrast = 1.1, pivot = 0.4, brightness = -0.05, gamma = trial % 2 ? 0.8 : 1.25;
        memcpy(y, x, sizeof y);
        fs_intensity_noise(y, N, contrast, pivot, brightness, gamma, sigma, key, stream, c0);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double v = contrast * (x[i] - pivot) + pivot + brightness;
            v = pow(v < 0 ? 0 : v > 1 ? 1 : v, gamma);
            const uint32_t z = ref_noise_bits(key, stream, c0 + (uint64_t)i);
            const uint32_t sum = (z & 0xff) + ((z >> 8) & 0xff) + ((z >> 16) & 0xff) + (z >> 24);
            v += scale * ((double)sum - 510.0);
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            if (fabs(v - y[i]) > worst) worst = fabs(v - y[i]);
        }
        CHECKF(worst <= 2.5e-4, "chain, trial %d: off by %g", trial, worst);
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
    RUN(warp_support_matches_full);
    RUN(photometric_matches_reference);
    TEST_EXIT();
}
