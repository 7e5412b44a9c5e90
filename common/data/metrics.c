/* DSC and HD95 (medpy semantics) over label volumes; see metrics.h. */
#include "data/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/preprocess.h"

/* Bits of the per-voxel flag buffer over the crop. */
enum { F_A = 1, F_B = 2, F_SA = 4, F_SB = 8 };

/* A half-open box [lo, hi) per axis, axes in array order (z, y, x). */
typedef struct {
    size_t lo[3], hi[3];
} box3;

static int check_shape(const size_t shape[3]) {
    if (!shape[0] || !shape[1] || !shape[2]) return fs_error("metrics: empty volume shape");
    if (shape[1] > SIZE_MAX / shape[2] || shape[0] > SIZE_MAX / (shape[1] * shape[2]))
        return fs_error("metrics: volume shape overflows");
    return FS_OK;
}

static int check_spacing(const double spacing[3]) {
    for (int a = 0; a < 3; a++)
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return fs_error("metrics: spacing %g along axis %d is not a positive number", spacing[a], a);
    return FS_OK;
}

/* ---- exact squared EDT ---- */

/* 1D lower envelope of parabolas g[p] + s2 (q - p)^2 over n samples; INFINITY
 * entries are not features. d may alias nothing; v, z are scratch of n and
 * n + 1 entries. */
static void edt_1d(const double *g, double *d, size_t n, double s2, long *v, double *z) {
    long k = -1;
    for (long q = 0; q < (long)n; q++) {
        if (isinf(g[q])) continue;
        if (k < 0) {
            k = 0;
            v[0] = q;
            z[0] = -INFINITY;
            z[1] = INFINITY;
            continue;
        }
        double x;
        for (;;) {
            long p = v[k];
            x = ((g[q] + s2 * (double)q * q) - (g[p] + s2 * (double)p * p)) / (2.0 * s2 * (double)(q - p));
            if (x <= z[k] && k > 0) k--;
            else break;
        }
        /* With k == 0, z[0] = -inf never exceeds x, so q always enters. */
        k++;
        v[k] = q;
        z[k] = x;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        for (size_t q = 0; q < n; q++) d[q] = INFINITY;
        return;
    }
    k = 0;
    for (long q = 0; q < (long)n; q++) {
        while (z[k + 1] < (double)q) k++;
        double t = (double)(q - v[k]);
        d[q] = g[v[k]] + s2 * t * t;
    }
}

int fs_metrics_edt_sq(double *f, const size_t shape[3], const double spacing[3]) {
    if (check_shape(shape) || check_spacing(spacing)) return FS_ERR;
    const size_t nz = shape[0], ny = shape[1], nx = shape[2];
    size_t maxn = nx > ny ? nx : ny;
    if (nz > maxn) maxn = nz;
    /* axis a of the array (0 z, 1 y, 2 x): length, stride, spacing */
    const size_t len[3] = {nz, ny, nx};
    const size_t stride[3] = {ny * nx, nx, 1};
    const double sp[3] = {spacing[2], spacing[1], spacing[0]};
    int failed = 0;
    /* x first: along a contiguous line the input is 0/INF only, so the
     * later passes see finite values on fewer lines' worth of work. */
    for (int a = 2; a >= 0; a--) {
        const size_t n = len[a], st = stride[a];
        const size_t nlines = nz * ny * nx / n;
        const double s2 = sp[a] * sp[a];
#pragma omp parallel reduction(| : failed)
        {
            double *g = malloc(maxn * sizeof *g), *d = malloc(maxn * sizeof *d);
            double *z = malloc((maxn + 1) * sizeof *z);
            long *v = malloc(maxn * sizeof *v);
            if (!g || !d || !z || !v) failed = 1;
#pragma omp for schedule(static)
            for (size_t line = 0; line < nlines; line++) {
                if (!g || !d || !z || !v) continue;
                /* the first element of the line: lines enumerate the other two axes */
                size_t base;
                if (a == 2) base = line * nx;
                else if (a == 1) base = (line / nx) * ny * nx + line % nx;
                else base = line;
                for (size_t i = 0; i < n; i++) g[i] = f[base + i * st];
                edt_1d(g, d, n, s2, v, z);
                for (size_t i = 0; i < n; i++) f[base + i * st] = d[i];
            }
            free(g);
            free(d);
            free(z);
            free(v);
        }
        if (failed) return fs_error("metrics: out of memory in the distance transform");
    }
    return FS_OK;
}

/* ---- HD95 over a crop ---- */

/* Object membership: cls < 0 means any non-zero value. */
static inline int in_obj(uint8_t v, int cls) { return cls < 0 ? v != 0 : v == (unsigned)cls; }

/* Fills 0 at voxels carrying `bit`, INFINITY elsewhere. */
static void seed_features(double *f, const uint8_t *flags, size_t n, uint8_t bit) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) f[i] = (flags[i] & bit) ? 0.0 : INFINITY;
}

/* Distances (sqrt of f) at voxels carrying `bit`, appended to out. */
static size_t gather(const double *f, const uint8_t *flags, size_t n, uint8_t bit, double *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (flags[i] & bit) out[m++] = sqrt(f[i]);
    return m;
}

/* HD95 of {a == ca} and {b == cb} (or non-zero, for negative classes) inside
 * the box bb, which must contain both objects (both non-empty). Writes the
 * value with `spacing` to *mm and with unit spacing to *vox (either may be
 * NULL). Everything outside bb is background for both objects, so a crop
 * voxel whose neighbour lies outside bb borders background exactly as it
 * would in the full array (whether that neighbour is past the array edge,
 * medpy's border_value 0, or just past the box): the surfaces are those of
 * the full array, and the features and queries of both distance transforms
 * all lie inside bb, so the distances are too. */
static int hd95_box(const uint8_t *a, int ca, const uint8_t *b, int cb, const size_t shape[3],
                    const box3 *bb, const double spacing[3], double *mm, double *vox) {
    const size_t ny = shape[1], nx = shape[2];
    const size_t cz = bb->hi[0] - bb->lo[0], cy = bb->hi[1] - bb->lo[1], cx = bb->hi[2] - bb->lo[2];
    const size_t n = cz * cy * cx;
    uint8_t *flags = malloc(n);
    double *f = malloc(n * sizeof *f);
    double *dist = NULL;
    int rc = FS_ERR;
    if (!flags || !f) {
        fs_error("metrics: out of memory for a %zux%zux%zu crop", cz, cy, cx);
        goto done;
    }
#pragma omp parallel for schedule(static)
    for (size_t z = 0; z < cz; z++)
        for (size_t y = 0; y < cy; y++) {
            size_t src = ((bb->lo[0] + z) * ny + bb->lo[1] + y) * nx + bb->lo[2];
            uint8_t *dst = flags + (z * cy + y) * cx;
            for (size_t x = 0; x < cx; x++)
                dst[x] = (uint8_t)((in_obj(a[src + x], ca) ? F_A : 0) | (in_obj(b[src + x], cb) ? F_B : 0));
        }
    /* Surfaces: object voxels with a 6-neighbour outside the object or the box. */
    size_t na = 0, nb = 0;
#pragma omp parallel for schedule(static) reduction(+ : na, nb)
    for (size_t z = 0; z < cz; z++)
        for (size_t y = 0; y < cy; y++)
            for (size_t x = 0; x < cx; x++) {
                size_t i = (z * cy + y) * cx + x;
                uint8_t v = flags[i];
                if (!(v & (F_A | F_B))) continue;
                /* AND of the neighbours' bits; a neighbour outside the box has none */
                uint8_t all = F_A | F_B;
                all &= x > 0 ? flags[i - 1] : 0;
                all &= x + 1 < cx ? flags[i + 1] : 0;
                all &= y > 0 ? flags[i - cx] : 0;
                all &= y + 1 < cy ? flags[i + cx] : 0;
                all &= z > 0 ? flags[i - cx * cy] : 0;
                all &= z + 1 < cz ? flags[i + cx * cy] : 0;
                uint8_t s = 0;
                if ((v & F_A) && !(all & F_A)) s |= F_SA, na++;
                if ((v & F_B) && !(all & F_B)) s |= F_SB, nb++;
                flags[i] = v | s;
            }
    if (!na || !nb) {
        fs_error("metrics: hd95 of an empty object");
        goto done;
    }
    dist = malloc((na + nb) * sizeof *dist);
    if (!dist) {
        fs_error("metrics: out of memory for %zu surface distances", na + nb);
        goto done;
    }
    const size_t cshape[3] = {cz, cy, cx};
    const double unit[3] = {1, 1, 1};
    int same = spacing[0] == 1 && spacing[1] == 1 && spacing[2] == 1;
    for (int pass = 0; pass < 2; pass++) {
        double *target = pass == 0 ? mm : vox;
        if (!target) continue;
        if (pass == 1 && same && mm) {
            *vox = *mm;
            continue;
        }
        const double *sp = pass == 0 ? spacing : unit;
        seed_features(f, flags, n, F_SB);
        if (fs_metrics_edt_sq(f, cshape, sp)) goto done;
        size_t m = gather(f, flags, n, F_SA, dist);
        seed_features(f, flags, n, F_SA);
        if (fs_metrics_edt_sq(f, cshape, sp)) goto done;
        m += gather(f, flags, n, F_SB, dist + m);
        *target = fs_percentile_f64(dist, m, 95.0);
    }
    rc = FS_OK;
done:
    free(flags);
    free(f);
    free(dist);
    return rc;
}

static void box_empty(box3 *b) {
    for (int a = 0; a < 3; a++) b->lo[a] = SIZE_MAX, b->hi[a] = 0;
}

static void box_add(box3 *b, size_t z, size_t y, size_t x) {
    const size_t c[3] = {z, y, x};
    for (int a = 0; a < 3; a++) {
        if (c[a] < b->lo[a]) b->lo[a] = c[a];
        if (c[a] + 1 > b->hi[a]) b->hi[a] = c[a] + 1;
    }
}

static void box_union(box3 *b, const box3 *o) {
    for (int a = 0; a < 3; a++) {
        if (o->lo[a] < b->lo[a]) b->lo[a] = o->lo[a];
        if (o->hi[a] > b->hi[a]) b->hi[a] = o->hi[a];
    }
}

/* ---- public entry points ---- */

double fs_metrics_dsc(const uint8_t *a, const uint8_t *b, const size_t shape[3]) {
    size_t n = shape[0] * shape[1] * shape[2], na = 0, nb = 0, nab = 0;
    for (size_t i = 0; i < n; i++) {
        int x = a[i] != 0, y = b[i] != 0;
        na += x;
        nb += y;
        nab += x & y;
    }
    return na + nb ? 2.0 * (double)nab / (double)(na + nb) : 0.0;
}

int fs_metrics_hd95(const uint8_t *a, const uint8_t *b, const size_t shape[3], const double spacing[3],
                    double *out) {
    if (check_shape(shape) || check_spacing(spacing)) return FS_ERR;
    box3 ba, bb;
    box_empty(&ba);
    box_empty(&bb);
    for (size_t z = 0; z < shape[0]; z++)
        for (size_t y = 0; y < shape[1]; y++)
            for (size_t x = 0; x < shape[2]; x++) {
                size_t i = (z * shape[1] + y) * shape[2] + x;
                if (a[i]) box_add(&ba, z, y, x);
                if (b[i]) box_add(&bb, z, y, x);
            }
    if (!ba.hi[0]) return fs_error("hd95: the first mask is empty");
    if (!bb.hi[0]) return fs_error("hd95: the second mask is empty");
    box_union(&ba, &bb);
    return hd95_box(a, -1, b, -1, shape, &ba, spacing, out, NULL);
}

/* Per-class voxel counts (prediction, truth, both) and bounding boxes. */
typedef struct {
    size_t np, nt, ni;
    box3 bp, bt;
} class_stats;

static void stats_empty(class_stats *s) {
    memset(s, 0, sizeof *s);
    box_empty(&s->bp);
    box_empty(&s->bt);
}

/* The scores of class cls from its stats, with the empty-mask convention. */
static int class_scores(const uint8_t *pred, const uint8_t *truth, const size_t shape[3], const double spacing[3],
                        unsigned cls, const class_stats *s, fs_class_scores *o) {
    memset(o, 0, sizeof *o);
    o->n_pred = s->np;
    o->n_truth = s->nt;
    if (!s->np) return FS_OK; /* DSC 0, HD95 0 */
    if (!s->nt) {
        o->dsc = 1.0;
        return FS_OK;
    }
    o->dsc = 2.0 * (double)s->ni / (double)(s->np + s->nt);
    box3 bb = s->bp;
    box_union(&bb, &s->bt);
    return hd95_box(pred, (int)cls, truth, (int)cls, shape, &bb, spacing, &o->hd95_mm, &o->hd95_vox);
}

int fs_metrics_case(const uint8_t *pred, const uint8_t *truth, const size_t shape[3], const double spacing[3],
                    size_t n_classes, fs_class_scores *out) {
    if (check_shape(shape) || check_spacing(spacing)) return FS_ERR;
    if (n_classes < 2 || n_classes > 256) return fs_error("metrics: %zu classes (need 2 to 256)", n_classes);
    class_stats *st = malloc(n_classes * sizeof *st);
    if (!st) return fs_error("metrics: out of memory");
    for (size_t c = 0; c < n_classes; c++) stats_empty(&st[c]);
    for (size_t z = 0; z < shape[0]; z++)
        for (size_t y = 0; y < shape[1]; y++) {
            size_t row = (z * shape[1] + y) * shape[2];
            for (size_t x = 0; x < shape[2]; x++) {
                uint8_t p = pred[row + x], t = truth[row + x];
                if (p == t) {
                    if (!p || p >= n_classes) continue;
                    class_stats *s = &st[p];
                    s->np++, s->nt++, s->ni++;
                    box_add(&s->bp, z, y, x);
                    box_add(&s->bt, z, y, x);
                    continue;
                }
                if (p && p < n_classes) st[p].np++, box_add(&st[p].bp, z, y, x);
                if (t && t < n_classes) st[t].nt++, box_add(&st[t].bt, z, y, x);
            }
        }
    int rc = FS_OK;
    for (size_t c = 1; c < n_classes && rc == FS_OK; c++)
        rc = class_scores(pred, truth, shape, spacing, (unsigned)c, &st[c], &out[c - 1]);
    free(st);
    return rc;
}

int fs_metrics_class(const uint8_t *pred, const uint8_t *truth, const size_t shape[3], const double spacing[3],
                     unsigned cls, fs_class_scores *out) {
    if (check_shape(shape) || check_spacing(spacing)) return FS_ERR;
    if (cls < 1 || cls > 255) return fs_error("metrics: class %u is not in 1..255", cls);
    class_stats s;
    stats_empty(&s);
    for (size_t z = 0; z < shape[0]; z++)
        for (size_t y = 0; y < shape[1]; y++)
            for (size_t x = 0; x < shape[2]; x++) {
                size_t i = (z * shape[1] + y) * shape[2] + x;
                int p = pred[i] == cls, t = truth[i] == cls;
                if (p) s.np++, box_add(&s.bp, z, y, x);
                if (t) s.nt++, box_add(&s.bt, z, y, x);
                s.ni += p & t;
            }
    return class_scores(pred, truth, shape, spacing, cls, &s, out);
}

/* ---- brute force, for tests ---- */

/* Surface voxels of the full array (no cropping), as coordinates (z, y, x). */
static size_t surface_list(const uint8_t *m, const size_t shape[3], size_t *coords) {
    const size_t nz = shape[0], ny = shape[1], nx = shape[2];
    size_t k = 0;
    for (size_t z = 0; z < nz; z++)
        for (size_t y = 0; y < ny; y++)
            for (size_t x = 0; x < nx; x++) {
                size_t i = (z * ny + y) * nx + x;
                if (!m[i]) continue;
                int inner = x > 0 && x + 1 < nx && y > 0 && y + 1 < ny && z > 0 && z + 1 < nz && m[i - 1] &&
                            m[i + 1] && m[i - nx] && m[i + nx] && m[i - nx * ny] && m[i + nx * ny];
                if (inner) continue;
                if (coords) {
                    coords[3 * k] = z;
                    coords[3 * k + 1] = y;
                    coords[3 * k + 2] = x;
                }
                k++;
            }
    return k;
}

int fs_metrics_hd95_naive(const uint8_t *a, const uint8_t *b, const size_t shape[3], const double spacing[3],
                          double *out) {
    if (check_shape(shape) || check_spacing(spacing)) return FS_ERR;
    size_t na = surface_list(a, shape, NULL), nb = surface_list(b, shape, NULL);
    if (!na) return fs_error("hd95: the first mask is empty");
    if (!nb) return fs_error("hd95: the second mask is empty");
    size_t *ca = malloc(3 * na * sizeof *ca), *cb = malloc(3 * nb * sizeof *cb);
    double *d = malloc((na + nb) * sizeof *d);
    if (!ca || !cb || !d) {
        free(ca);
        free(cb);
        free(d);
        return fs_error("hd95: out of memory");
    }
    surface_list(a, shape, ca);
    surface_list(b, shape, cb);
    const double sp[3] = {spacing[2], spacing[1], spacing[0]}; /* z, y, x */
    for (int dir = 0; dir < 2; dir++) {
        const size_t *from = dir ? cb : ca, *to = dir ? ca : cb;
        size_t nf = dir ? nb : na, nt = dir ? na : nb;
        for (size_t i = 0; i < nf; i++) {
            double best = INFINITY;
            for (size_t j = 0; j < nt; j++) {
                double s = 0;
                for (int ax = 0; ax < 3; ax++) {
                    double t = ((double)from[3 * i + ax] - (double)to[3 * j + ax]) * sp[ax];
                    s += t * t;
                }
                if (s < best) best = s;
            }
            d[(dir ? na : 0) + i] = sqrt(best);
        }
    }
    *out = fs_percentile_f64(d, na + nb, 95.0);
    free(ca);
    free(cb);
    free(d);
    return FS_OK;
}
