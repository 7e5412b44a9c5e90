#include "data/preprocess.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- percentile ---- */

/* One definition for float and double arrays: PERCENTILE(T, sel, name)
 * defines the quickselect sel and the percentile name over T.
 *
 * sel(v [n] without NaN, k): afterwards v[k] is the k-th smallest,
 * everything before it is <= and everything after it >=. Three-way
 * partitions keep runs of equal values (background, saturated voxels,
 * surface distances of 0) linear; pivots come from pseudo-random positions
 * so sorted or adversarially ordered input does not degrade to quadratic
 * time.
 *
 * name: numpy's virtual index (n - 1) * (q / 100), gamma its fractional
 * part, clamped to the last element; then numpy's _lerp on an array of T:
 * the difference is a T, the interpolation double, and from gamma 0.5 on
 * it works back from b. */
#define PERCENTILE(T, sel, name)                                                                  \
    static void sel(T *v, size_t n, size_t k) {                                                   \
        size_t lo = 0, hi = n;                                                                    \
        uint64_t s = 0x9e3779b97f4a7c15ULL;                                                       \
        while (hi - lo > 16) {                                                                    \
            size_t len = hi - lo;                                                                 \
            T c[3];                                                                               \
            for (int j = 0; j < 3; j++) {                                                         \
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;                                          \
                c[j] = v[lo + (size_t)(s % len)];                                                 \
            }                                                                                     \
            /* the median of the three */                                                         \
            if (c[0] > c[1]) { T t = c[0]; c[0] = c[1]; c[1] = t; }                               \
            if (c[1] > c[2]) c[1] = c[2];                                                         \
            const T p = c[0] > c[1] ? c[0] : c[1];                                                \
            /* [lo, lt) < p, [lt, i) == p, [gt, hi) > p */                                        \
            size_t lt = lo, i = lo, gt = hi;                                                      \
            while (i < gt) {                                                                      \
                T x = v[i];                                                                       \
                if (x < p) v[i++] = v[lt], v[lt++] = x;                                           \
                else if (x > p) v[i] = v[--gt], v[gt] = x;                                        \
                else i++;                                                                         \
            }                                                                                     \
            if (k < lt) hi = lt;                                                                  \
            else if (k >= gt) lo = gt;                                                            \
            else return;                                                                          \
        }                                                                                         \
        for (size_t i = lo + 1; i < hi; i++) {                                                    \
            T x = v[i];                                                                           \
            size_t j = i;                                                                         \
            while (j > lo && v[j - 1] > x) {                                                      \
                v[j] = v[j - 1];                                                                  \
                j--;                                                                              \
            }                                                                                     \
            v[j] = x;                                                                             \
        }                                                                                         \
    }                                                                                             \
    double name(T *v, size_t n, double q) {                                                       \
        if (n == 0 || isnan(q)) return NAN;                                                       \
        for (size_t i = 0; i < n; i++)                                                            \
            if (isnan(v[i])) return NAN;                                                          \
        if (q < 0) q = 0;                                                                         \
        if (q > 100) q = 100;                                                                     \
        double vi = (double)(n - 1) * (q / 100.0);                                                \
        size_t prev = vi >= (double)(n - 1) ? n - 1 : (size_t)floor(vi);                         \
        double gamma = vi >= (double)(n - 1) ? 0.0 : vi - (double)prev;                           \
        sel(v, n, prev);                                                                          \
        T a = v[prev], b = a;                                                                     \
        if (prev + 1 < n) {                                                                       \
            b = v[prev + 1];                                                                      \
            for (size_t i = prev + 2; i < n; i++)                                                 \
                if (v[i] < b) b = v[i];                                                           \
        }                                                                                         \
        T d = b - a;                                                                              \
        if (gamma >= 0.5) return (double)b - (double)d * (1.0 - gamma);                           \
        return (double)a + (double)d * gamma;                                                     \
    }

PERCENTILE(float, select_kth_f32, fs_percentile)
PERCENTILE(double, select_kth_f64, fs_percentile_f64)

/* ---- windowing ---- */

void fs_window01(float *x, size_t n, float lo, float hi) {
    if (!(hi > lo)) {
        memset(x, 0, n * sizeof *x);
        return;
    }
    float scale = 1.0f / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!(v > lo)) v = lo; /* also NaN */
        if (v > hi) v = hi;
        x[i] = (v - lo) * scale;
    }
}

/* ---- foreground normalisation ---- */

/* The background value of x [nz, ny, nx]; 0 when there is none. */
static int find_background(const float *x, size_t nz, size_t ny, size_t nx, size_t n,
                           float *bg) {
    float c[8];
    size_t ks[2] = {0, nz - 1}, js[2] = {0, ny - 1}, is[2] = {0, nx - 1};
    for (int m = 0; m < 8; m++)
        c[m] = x[(ks[m >> 2] * ny + js[(m >> 1) & 1]) * nx + is[m & 1]];
    int best = 0;
    float best_v = 0;
    for (int a = 0; a < 8; a++) {
        int cnt = 0;
        for (int b = 0; b < 8; b++) cnt += c[a] == c[b];
        if (cnt > best) best = cnt, best_v = c[a];
    }
    if (best >= 5) {
        *bg = best_v;
        return 1;
    }
    float mn = INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] < mn) mn = x[i];
    if (mn == INFINITY) return 0; /* all NaN (or +inf) */
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) cnt += x[i] == mn;
    if (cnt > n / 10) {
        *bg = mn;
        return 1;
    }
    return 0;
}

int fs_normalize_foreground(float *x, size_t nz, size_t ny, size_t nx, double p_lo,
                            double p_hi, float *background, size_t *n_fg) {
    if (nz == 0 || ny == 0 || nx == 0) return fs_error("normalisation: empty volume");
    if (ny > SIZE_MAX / nx || nz > SIZE_MAX / (ny * nx) ||
        nz * ny * nx > SIZE_MAX / sizeof(float))
        return fs_error("normalisation: volume size %zux%zux%zu overflows", nz, ny, nx);
    if (!(p_lo >= 0 && p_lo < p_hi && p_hi <= 100))
        return fs_error("normalisation: percentiles %g and %g are not 0 <= lo < hi <= 100",
                        p_lo, p_hi);
    size_t n = nz * ny * nx;
    float bg = 0;
    int has_bg = find_background(x, nz, ny, nx, n, &bg);

    float *fg = malloc(n * sizeof *fg);
    if (!fg) return fs_error("normalisation: out of memory for %zu voxels", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i]) && !(has_bg && x[i] == bg)) fg[m++] = x[i];
    if (m == 0) {
        free(fg);
        if (has_bg)
            return fs_error("normalisation: no foreground voxel (all %zu voxels equal the "
                            "background value %g)", n, (double)bg);
        return fs_error("normalisation: no foreground voxel (all %zu voxels are NaN)", n);
    }
    double lo = fs_percentile(fg, m, p_lo);
    double hi = fs_percentile(fg, m, p_hi);
    free(fg);
    if (!(hi > lo) || !isfinite(hi - lo))
        return fs_error("normalisation: foreground intensity range [%g, %g] (percentiles "
                        "%g..%g of %zu voxels) is empty: constant image", lo, hi, p_lo,
                        p_hi, m);
    double scale = 1.0 / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (isnan(v) || (has_bg && v == bg)) {
            x[i] = 0;
            continue;
        }
        double y = ((double)v - lo) * scale;
        x[i] = y <= 0 ? 0.0f : y >= 1 ? 1.0f : (float)y;
    }
    if (background) *background = has_bg ? bg : NAN;
    if (n_fg) *n_fg = m;
    return FS_OK;
}

void fs_remap_labels(uint8_t *lab, size_t n, const uint8_t map[256]) {
    for (size_t i = 0; i < n; i++) lab[i] = map[lab[i]];
}
