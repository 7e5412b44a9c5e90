/* data/preprocess: numpy percentiles, windowing, foreground normalisation,
 * torch-compatible resizing, label remapping. */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/preprocess.h"
#include "image/resize.h"

static double rel_tol(double v) { return 1e-12 * (fabs(v) + 1e-300) + 1e-300; }

/* Expected values from numpy 1.24 on the same float32 arrays
 * (np.percentile(a, q), default method). */
static void percentile_matches_numpy_constants(void) {
    static const float a0[10] = {3.5f, -1.25f, 7, 0, 2, 2, 10.75f, -4, 5.5f, 1};
    static const double q[9] = {0, 10, 25, 33.3, 50, 62.5, 90, 99.5, 100};
    static const double want[9] = {-4.0, -1.525, 0.25, 0.9969999999999999, 2.0, 2.9375,
                                   7.374999999999998, 10.58125, 10.75};
    float a[10];
    for (int i = 0; i < 9; i++) {
        memcpy(a, a0, sizeof a); /* reordered by each call */
        double got = fs_percentile(a, 10, q[i]);
        CHECKF(fabs(got - want[i]) <= rel_tol(want[i]), "q=%g: %.17g vs %.17g", q[i], got,
               want[i]);
    }
    /* float32 rounding of the difference, as numpy does it */
    float b[4] = {1e8f, 3, 1e8f + 8, 2.5f};
    CHECK_NEAR(fs_percentile(b, 4, 37), 11000002.999999987, 1e-6);
    float c[4] = {1e8f, 3, 1e8f + 8, 2.5f};
    CHECK_NEAR(fs_percentile(c, 4, 80), 100000003.2, 1e-6);
}

/* numpy.percentile(..., 95) values computed by hand. */
static void percentile_f64_like_numpy(void) {
    double v1[] = {4, 1, 3, 2};
    CHECK_NEAR(fs_percentile_f64(v1, 4, 95), 3.85, 1e-12);
    double v2[] = {7};
    CHECK(fs_percentile_f64(v2, 1, 95) == 7);
    double v3[21];
    for (int i = 0; i < 21; i++) v3[i] = (double)((i * 13) % 21); /* 0..20 permuted */
    CHECK_NEAR(fs_percentile_f64(v3, 21, 95), 19.0, 1e-12);
    double v4[] = {5, 5, 5, 0, 0, 5, 5, 5, 5, 5};
    CHECK(fs_percentile_f64(v4, 10, 95) == 5);
    CHECK(fs_percentile_f64(v4, 10, 0) == 0);
    /* the difference in float64, as numpy does it for a float64 array
     * (the float32 case above gives 11000002.999999987) */
    double v5[] = {1e8, 3, 1e8 + 8, 2.5};
    CHECK_NEAR(fs_percentile_f64(v5, 4, 37), 11000002.669999987, 1e-6);
}

static void percentile_properties(void) {
    enum { N = 1001 };
    static float v[N], w[N];
    fs_rng r;
    fs_rng_init(&r, 5, 0);
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < N; i++) {
        /* heavy ties: a third of the values are one of three levels */
        v[i] = i % 3 == 0 ? (float)(fs_rng_below(&r, 3) * 10) : (float)fs_rng_range(&r, -50, 50);
        if (v[i] < mn) mn = v[i];
        if (v[i] > mx) mx = v[i];
    }
    memcpy(w, v, sizeof v);
    CHECK(fs_percentile(w, N, 0) == mn);
    CHECK(fs_percentile(w, N, 100) == mx);
    CHECK(fs_percentile(w, N, -5) == mn);   /* clamped */
    CHECK(fs_percentile(w, N, 250) == mx);
    double prev = -INFINITY;
    for (double q = 0; q <= 100; q += 0.37) {
        double p = fs_percentile(w, N, q);
        CHECKF(p >= prev, "q=%g: %g < %g", q, p, prev);
        prev = p;
    }
    /* the multiset is preserved by the reordering */
    double s0 = 0, s1 = 0;
    for (int i = 0; i < N; i++) s0 += v[i], s1 += w[i];
    CHECK(s0 == s1);
    float one = 4.5f;
    CHECK(fs_percentile(&one, 1, 73) == 4.5);
    CHECK(isnan(fs_percentile(w, 0, 50)));
    w[17] = NAN;
    CHECK(isnan(fs_percentile(w, N, 50)));
    /* sorted and reverse-sorted input of constant values stay fast and exact */
    static float s[100000];
    for (int i = 0; i < 100000; i++) s[i] = (float)(100000 - i);
    CHECK_NEAR(fs_percentile(s, 100000, 50), 50000.5, 1e-9);
    for (int i = 0; i < 100000; i++) s[i] = 7;
    CHECK(fs_percentile(s, 100000, 31.4) == 7);
}

static int have_numpy(void) {
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

/* 200 random percentiles of random data against numpy itself. */
static void percentile_vs_numpy_random(void) {
    if (!have_numpy()) SKIP("/usr/bin/python3 with numpy not available");
    const char *dir = test_tmp_dir("preprocess_pct");
    enum { N = 12347, NQ = 200 };
    static float v[N], w[N];
    static double q[NQ], want[NQ];
    fs_rng r;
    fs_rng_init(&r, 99, 1);
    for (int i = 0; i < N; i++) {
        double u = fs_rng_normal(&r) * 300;
        /* quantise half of them so ties are common, as in real images */
        v[i] = i & 1 ? (float)round(u / 8) * 8 : (float)u;
    }
    for (int i = 0; i < NQ; i++) q[i] = i < 4 ? (double)(i * 100 / 3) : fs_rng_range(&r, 0, 100);
    char pv[600], pq[600], po[600], cmd[2400];
    snprintf(pv, sizeof pv, "%s/v.f32", dir);
    snprintf(pq, sizeof pq, "%s/q.f64", dir);
    snprintf(po, sizeof po, "%s/out.f64", dir);
    FILE *f = fopen(pv, "wb");
    CHECK(f && fwrite(v, sizeof v, 1, f) == 1 && fclose(f) == 0);
    f = fopen(pq, "wb");
    CHECK(f && fwrite(q, sizeof q, 1, f) == 1 && fclose(f) == 0);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; "
             "v=np.fromfile('%s',dtype=np.float32); q=np.fromfile('%s',dtype=np.float64); "
             "np.array([np.percentile(v,x) for x in q],dtype=np.float64).tofile('%s')\"",
             pv, pq, po);
    CHECK(system(cmd) == 0);
    f = fopen(po, "rb");
    CHECK(f && fread(want, sizeof want, 1, f) == 1);
    fclose(f);
    for (int i = 0; i < NQ; i++) {
        memcpy(w, v, sizeof v);
        double got = fs_percentile(w, N, q[i]);
        CHECKF(fabs(got - want[i]) <= 1e-12 * (fabs(want[i]) + 1),
               "q=%.17g: %.17g vs numpy %.17g", q[i], got, want[i]);
    }
}

static void window01_clips_and_scales(void) {
    float x[6] = {-1000, -125, 75, 275, 3000, NAN};
    fs_window01(x, 6, FS_CT_WINDOW_LO, FS_CT_WINDOW_HI);
    CHECK(x[0] == 0 && x[1] == 0);
    CHECK_NEAR(x[2], 0.5, 1e-7);
    CHECK(x[3] == 1 && x[4] == 1);
    CHECK(x[5] == 0);
}

enum { NZ = 10, NY = 12, NX = 14, NV = NZ * NY * NX };

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int in_ball(int k, int j, int i) {
    double dz = k - 4.5, dy = j - 5.5, dx = i - 6.5;
    return dz * dz / 16 + dy * dy / 25 + dx * dx / 36 < 1;
}

static void normalize_foreground_constant_background(void) {
    static float x[NV], orig[NV], fg[NV];
    size_t m = 0;
    for (int k = 0; k < NZ; k++)
        for (int j = 0; j < NY; j++)
            for (int i = 0; i < NX; i++) {
                size_t v = ((size_t)k * NY + j) * NX + i;
                /* distinct foreground values, some below the background */
                x[v] = in_ball(k, j, i) ? (float)(m * 3 % 1009) - 100.0f : -7.5f;
                if (in_ball(k, j, i)) fg[m++] = x[v];
            }
    CHECK(m > 100 && m < NV / 2);
    memcpy(orig, x, sizeof x);
    double lo = fs_percentile(fg, m, FS_FG_PERCENTILE_LO);
    double hi = fs_percentile(fg, m, FS_FG_PERCENTILE_HI);
    float bg = 0;
    size_t n_fg = 0;
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, FS_FG_PERCENTILE_LO, FS_FG_PERCENTILE_HI, &bg,
                                  &n_fg) == FS_OK);
    CHECK(bg == -7.5f);
    CHECK(n_fg == m);
    size_t at0 = 0, at1 = 0;
    for (size_t v = 0; v < NV; v++) {
        CHECK(x[v] >= 0 && x[v] <= 1);
        if (orig[v] == -7.5f) CHECK(x[v] == 0);
        else {
            double want = (orig[v] - lo) / (hi - lo);
            want = want < 0 ? 0 : want > 1 ? 1 : want;
            CHECK_NEAR(x[v], want, 1e-6);
            at0 += x[v] == 0;
            at1 += x[v] == 1;
        }
    }
    /* the robust range clips about 0.5% of the foreground at each end */
    CHECK(at0 >= 1 && at0 <= m / 100 + 1);
    CHECK(at1 >= 1 && at1 <= m / 100 + 1);
    /* percentiles that fall on order statistics: the 4th smallest and 4th
     * largest foreground values map to 0 and 1, the 3 beyond each are clipped */
    memcpy(x, orig, sizeof x);
    double plo = 300.0 / (double)(m - 1), phi = 100.0 - plo;
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, plo, phi, &bg, &n_fg) == FS_OK);
    /* fg holds the foreground values (reordered): sort them */
    qsort(fg, m, sizeof *fg, cmp_float);
    float v4 = fg[3], v4r = fg[m - 4];
    size_t below = 0, above = 0, at_lo = 0, at_hi = 0;
    for (size_t v = 0; v < NV; v++) {
        if (orig[v] == -7.5f) continue;
        below += orig[v] < v4;
        above += orig[v] > v4r;
        if (orig[v] == v4) {
            at_lo++;
            CHECK_NEAR(x[v], 0, 1e-6);
        }
        if (orig[v] == v4r) {
            at_hi++;
            CHECK_NEAR(x[v], 1, 1e-6);
        }
        if (orig[v] < v4) CHECK(x[v] == 0);
        if (orig[v] > v4r) CHECK(x[v] == 1);
    }
    CHECK(below == 3 && above == 3 && at_lo == 1 && at_hi == 1);
}

static void normalize_foreground_other_backgrounds(void) {
    static float x[NV];
    float bg;
    size_t n_fg;
    /* corners disagree, but the minimum fills > 10% of the volume */
    for (size_t v = 0; v < NV; v++) x[v] = v % 4 == 0 ? -3.0f : (float)(v % 97);
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, 0.5, 99.5, &bg, &n_fg) == FS_OK);
    CHECK(bg == -3.0f);
    CHECK(n_fg == NV - NV / 4);
    for (size_t v = 0; v < NV; v += 4) CHECK(x[v] == 0);
    /* no background at all: every voxel is foreground */
    for (size_t v = 0; v < NV; v++) x[v] = (float)((v * 37) % 1001);
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, 0, 100, &bg, &n_fg) == FS_OK);
    CHECK(isnan(bg));
    CHECK(n_fg == NV);
    double mn = 1, mx = 0;
    for (size_t v = 0; v < NV; v++) mn = fmin(mn, x[v]), mx = fmax(mx, x[v]);
    CHECK(mn == 0 && mx == 1); /* percentiles 0 and 100: min -> 0, max -> 1 */
}

static void normalize_foreground_rejects_constant(void) {
    static float x[NV];
    for (size_t v = 0; v < NV; v++) x[v] = 12.5f;
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, 0.5, 99.5, NULL, NULL) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "no foreground") != NULL);
    CHECK(x[0] == 12.5f); /* left unchanged */
    /* background plus a constant foreground: empty range */
    for (size_t v = 0; v < NV; v++) x[v] = v % 3 == 0 ? 40.0f : 0.0f;
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, 0.5, 99.5, NULL, NULL) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "constant") != NULL);
    CHECK(x[0] == 40.0f && x[1] == 0.0f);
    CHECK(fs_normalize_foreground(x, NZ, NY, NX, 60, 50, NULL, NULL) == FS_ERR);
}

static void bilinear_matches_torch(void) {
    const float in[4] = {1, 2, 3, 4};
    float out[16];
    static const float want[16] = {1,   1.25f, 1.75f, 2,    1.5f, 1.75f, 2.25f, 2.5f,
                                   2.5f, 2.75f, 3.25f, 3.5f, 3,    3.25f, 3.75f, 4};
    fs_resize_bilinear(in, 2, 2, out, 4, 4);
    for (int i = 0; i < 16; i++) CHECK_NEAR(out[i], want[i], 1e-6);
    /* 4x4 -> 2x2 averages 2x2 blocks (source index 0.5 and 2.5) */
    float big[16], small[4];
    for (int i = 0; i < 16; i++) big[i] = (float)i;
    fs_resize_bilinear(big, 4, 4, small, 2, 2);
    CHECK_NEAR(small[0], 2.5, 1e-6);
    CHECK_NEAR(small[1], 4.5, 1e-6);
    CHECK_NEAR(small[2], 10.5, 1e-6);
    CHECK_NEAR(small[3], 12.5, 1e-6);
    /* 1x3 -> 1x5: sources 0 (clamped), 0.4, 1.0, 1.6, 2.2 (clamped to the edge) */
    const float row[3] = {0, 10, 20};
    float row5[5];
    fs_resize_bilinear(row, 1, 3, row5, 1, 5);
    static const float want5[5] = {0, 4, 10, 16, 20};
    for (int i = 0; i < 5; i++) CHECK_NEAR(row5[i], want5[i], 1e-5);
    /* identity */
    float same[16];
    fs_resize_bilinear(big, 4, 4, same, 4, 4);
    CHECK(!memcmp(same, big, sizeof big));
}

/* Rectangular, non-integer ratios against the formula in double precision. */
static void bilinear_general_sizes(void) {
    enum { H = 5, W = 7 };
    float in[H * W];
    for (int i = 0; i < H * W; i++) in[i] = (float)((i * 13) % 17) - 3.0f;
    const size_t sizes[4][2] = {{9, 4}, {3, 11}, {1, 1}, {13, 7}};
    for (int s = 0; s < 4; s++) {
        size_t oh = sizes[s][0], ow = sizes[s][1];
        float out[13 * 11];
        fs_resize_bilinear(in, H, W, out, oh, ow);
        for (size_t y = 0; y < oh; y++)
            for (size_t x = 0; x < ow; x++) {
                double sy = fmax(0, ((double)y + 0.5) * H / oh - 0.5);
                double sx = fmax(0, ((double)x + 0.5) * W / ow - 0.5);
                size_t y0 = (size_t)sy, x0 = (size_t)sx;
                if (y0 > H - 1) y0 = H - 1;
                if (x0 > W - 1) x0 = W - 1;
                size_t y1 = y0 < H - 1 ? y0 + 1 : y0, x1 = x0 < W - 1 ? x0 + 1 : x0;
                double ly = fmin(1, sy - y0), lx = fmin(1, sx - x0);
                double want = (1 - ly) * ((1 - lx) * in[y0 * W + x0] + lx * in[y0 * W + x1]) +
                              ly * ((1 - lx) * in[y1 * W + x0] + lx * in[y1 * W + x1]);
                CHECKF(fabs(out[y * ow + x] - want) < 1e-5, "%zux%zu at (%zu,%zu): %g vs %g",
                       oh, ow, y, x, out[y * ow + x], want);
            }
    }
}

static void nearest_matches_torch(void) {
    const uint8_t row3[3] = {10, 20, 30};
    uint8_t out5[5];
    fs_resize_nearest_u8(row3, 1, 3, out5, 1, 5);
    static const uint8_t want5[5] = {10, 10, 20, 20, 30}; /* indices 0,0,1,1,2 */
    CHECK(!memcmp(out5, want5, 5));
    const uint8_t row5[5] = {1, 2, 3, 4, 5};
    uint8_t out3[3];
    fs_resize_nearest_u8(row5, 1, 5, out3, 1, 3); /* floor(d * 5/3): 0, 1, 3 */
    CHECK(out3[0] == 1 && out3[1] == 2 && out3[2] == 4);
    uint8_t out8[8];
    fs_resize_nearest_u8(row5, 1, 4, out8, 1, 8); /* exact 2x: d >> 1 */
    static const uint8_t want8[8] = {1, 1, 2, 2, 3, 3, 4, 4};
    CHECK(!memcmp(out8, want8, 8));
    /* 2D: rows and columns follow the same rule independently */
    const uint8_t img[6] = {1, 2, 3, 4, 5, 6}; /* 2x3 */
    uint8_t o[4 * 5];
    fs_resize_nearest_u8(img, 2, 3, o, 4, 5);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++) CHECK(o[y * 5 + x] == img[(y >> 1) * 3 + want5[x] / 10 - 1]);
    uint8_t id[6];
    fs_resize_nearest_u8(img, 2, 3, id, 2, 3);
    CHECK(!memcmp(id, img, 6));
}

static void remap_labels(void) {
    uint8_t map[256];
    for (int i = 0; i < 256; i++) map[i] = 0;
    map[1] = 7; /* spleen */
    map[8] = 1; /* aorta */
    uint8_t lab[6] = {0, 1, 8, 4, 255, 1};
    fs_remap_labels(lab, 6, map);
    static const uint8_t want[6] = {0, 7, 1, 0, 0, 7};
    CHECK(!memcmp(lab, want, 6));
}

int main(void) {
    RUN(percentile_matches_numpy_constants);
    RUN(percentile_f64_like_numpy);
    RUN(percentile_properties);
    RUN(percentile_vs_numpy_random);
    RUN(window01_clips_and_scales);
    RUN(normalize_foreground_constant_background);
    RUN(normalize_foreground_other_backgrounds);
    RUN(normalize_foreground_rejects_constant);
    RUN(bilinear_matches_torch);
    RUN(bilinear_general_sizes);
    RUN(nearest_matches_torch);
    RUN(remap_labels);
    TEST_EXIT();
}
