/* Synthetic shapes: signed-distance shapes painted over a textured
 * background (see shapes.h). */
#include "data/shapes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

enum { SH_ELLIPSE, SH_RECT, SH_POLYGON, SH_BLOB, SH_RING, SH_KINDS };
#define MAX_VERTS 9
#define N_HARM 4

typedef struct {
    int kind;
    double cx, cy, a, b, cs, sn; /* centre, half-axes, rotation */
    double inner;                /* ring: the hole's scale */
    size_t nv;
    double vx[MAX_VERTS], vy[MAX_VERTS]; /* polygon, in the rotated frame */
    double amp[N_HARM], ph[N_HARM];      /* blob harmonics 2 .. N_HARM+1 */
} shape;

/* Approximate signed distance in pixels, positive inside; exact sign. */
static double ellipse_sd(double u, double v, double a, double b) {
    double rho = sqrt((u * u) / (a * a) + (v * v) / (b * b));
    return (1.0 - rho) * (a < b ? a : b);
}

static double seg_dist(double px, double py, double x0, double y0, double x1, double y1) {
    double dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    double t = l2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / l2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double ex = x0 + t * dx - px, ey = y0 + t * dy - py;
    return sqrt(ex * ex + ey * ey);
}

static double shape_sd(const shape *s, double x, double y) {
    double dx = x - s->cx, dy = y - s->cy;
    double u = s->cs * dx + s->sn * dy, v = -s->sn * dx + s->cs * dy;
    switch (s->kind) {
    case SH_ELLIPSE: return ellipse_sd(u, v, s->a, s->b);
    case SH_RING: {
        double o = ellipse_sd(u, v, s->a, s->b), i = ellipse_sd(u, v, s->inner * s->a, s->inner * s->b);
        return o < -i ? o : -i;
    }
    case SH_RECT: {
        double ex = s->a - fabs(u), ey = s->b - fabs(v);
        if (ex >= 0 && ey >= 0) return ex < ey ? ex : ey;
        double ox = ex < 0 ? -ex : 0, oy = ey < 0 ? -ey : 0;
        return -sqrt(ox * ox + oy * oy);
    }
    case SH_POLYGON: {
        int inside = 0;
        double d = 1e30;
        for (size_t i = 0, j = s->nv - 1; i < s->nv; j = i++) {
            if ((s->vy[i] > v) != (s->vy[j] > v) &&
                u < (s->vx[j] - s->vx[i]) * (v - s->vy[i]) / (s->vy[j] - s->vy[i]) + s->vx[i])
                inside = !inside;
            double e = seg_dist(u, v, s->vx[i], s->vy[i], s->vx[j], s->vy[j]);
            if (e < d) d = e;
        }
        return inside ? d : -d;
    }
    default: { /* blob: a smooth radius around the centre */
        double th = atan2(v / s->b, u / s->a), rho = sqrt((u * u) / (s->a * s->a) + (v * v) / (s->b * s->b));
        double r = 1.0;
        for (int k = 0; k < N_HARM; k++) r += s->amp[k] * cos((k + 2) * th + s->ph[k]);
        return (r - rho) * (s->a < s->b ? s->a : s->b);
    }
    }
}

/* A smooth random field in about [-1, 1]: bilinear value noise on a cells x
 * cells lattice. */
typedef struct {
    size_t cells;
    double v[17 * 17];
} field;

static void field_init(field *f, fs_rng *r, size_t cells) {
    f->cells = cells < 1 ? 1 : cells > 16 ? 16 : cells;
    for (size_t i = 0; i < (f->cells + 1) * (f->cells + 1); i++) f->v[i] = fs_rng_range(r, -1, 1);
}

static double field_at(const field *f, double x, double y, double S) {
    double gx = x / S * (double)f->cells, gy = y / S * (double)f->cells;
    size_t ix = (size_t)gx, iy = (size_t)gy;
    if (ix >= f->cells) ix = f->cells - 1;
    if (iy >= f->cells) iy = f->cells - 1;
    double tx = gx - (double)ix, ty = gy - (double)iy;
    tx = tx * tx * (3 - 2 * tx); /* smoothstep: no creases along the lattice */
    ty = ty * ty * (3 - 2 * ty);
    size_t n = f->cells + 1;
    double a = f->v[iy * n + ix], b = f->v[iy * n + ix + 1], c = f->v[(iy + 1) * n + ix], d = f->v[(iy + 1) * n + ix + 1];
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty;
}

/* An object's (or the background's) appearance: a level and a texture. */
typedef struct {
    double level, amp, gx, gy, freq, phase;
    int tex; /* 0 flat, 1 smooth noise, 2 ramp, 3 stripes, 4 speckle */
    field f;
} look;

static void look_init(look *l, fs_rng *r, double level, double S) {
    l->level = level;
    l->tex = (int)fs_rng_below(r, 5);
    l->amp = fs_rng_range(r, 0.02, 0.12);
    double ang = fs_rng_range(r, 0, 2 * M_PI);
    l->gx = cos(ang) / S;
    l->gy = sin(ang) / S;
    l->freq = fs_rng_range(r, 0.15, 0.6);
    l->phase = fs_rng_range(r, 0, 2 * M_PI);
    field_init(&l->f, r, 2 + fs_rng_below(r, 7));
}

static double look_at(const look *l, fs_rng *r, double x, double y, double S) {
    switch (l->tex) {
    case 1: return l->level + l->amp * field_at(&l->f, x, y, S);
    case 2: return l->level + 2 * l->amp * ((x - S / 2) * l->gx + (y - S / 2) * l->gy);
    case 3: return l->level + 0.6 * l->amp * sin(l->freq * (x * l->gx + y * l->gy) * S + l->phase);
    case 4: return l->level + 0.8 * l->amp * fs_rng_range(r, -1, 1);
    default: return l->level;
    }
}

size_t fs_shapes_min_area(const fs_shapes_params *p) {
    size_t a = p->size * p->size / 400;
    return a < 6 ? 6 : a;
}

int fs_shapes_validate(const fs_shapes_params *p) {
    if (p->size < FS_SHAPES_MIN_SIZE || p->size > FS_SHAPES_MAX_SIZE)
        return fs_error("shapes: slice size %zu outside %d..%d", p->size, FS_SHAPES_MIN_SIZE, FS_SHAPES_MAX_SIZE);
    if (!p->max_objects || p->max_objects > FS_SHAPES_MAX_OBJECTS)
        return fs_error("shapes: %zu objects a slice, expected 1..%d", p->max_objects, FS_SHAPES_MAX_OBJECTS);
    return FS_OK;
}

/* A random shape of kind k with half-size around r, centred at (cx, cy). */
static void shape_init(shape *s, fs_rng *r, int k, double cx, double cy, double rad) {
    memset(s, 0, sizeof *s);
    s->kind = k;
    s->cx = cx;
    s->cy = cy;
    double asp = fs_rng_range(r, 0.45, 1.0);
    s->a = rad;
    s->b = rad * asp;
    double rot = fs_rng_range(r, 0, M_PI);
    s->cs = cos(rot);
    s->sn = sin(rot);
    s->inner = fs_rng_range(r, 0.35, 0.7);
    if (k == SH_RING && s->b * (1 - s->inner) < 1.5) s->inner = 1 - 1.5 / s->b; /* a visible band */
    if (k == SH_POLYGON) {
        s->nv = 3 + fs_rng_below(r, MAX_VERTS - 2);
        double t[MAX_VERTS];
        for (size_t i = 0; i < s->nv; i++) t[i] = fs_rng_range(r, 0, 2 * M_PI);
        for (size_t i = 1; i < s->nv; i++) /* sorted angles: a star-shaped, simple polygon */
            for (size_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
                double x = t[j];
                t[j] = t[j - 1];
                t[j - 1] = x;
            }
        for (size_t i = 0; i < s->nv; i++) {
            double rr = fs_rng_range(r, 0.55, 1.0);
            s->vx[i] = rr * s->a * cos(t[i]);
            s->vy[i] = rr * s->b * sin(t[i]);
        }
    }
    if (k == SH_BLOB)
        for (int i = 0; i < N_HARM; i++) {
            s->amp[i] = fs_rng_range(r, 0, 0.22 / (i + 1));
            s->ph[i] = fs_rng_range(r, 0, 2 * M_PI);
        }
}

size_t fs_shapes_slice(uint64_t seed, size_t index, const fs_shapes_params *p, float *image, uint8_t *label) {
    size_t S = p->size, n = S * S;
    double Sd = (double)S;
    fs_rng r;
    fs_rng_init(&r, seed, fs_hash64(0x7368617065ULL /* "shape" */, index, 0));
    double *img = malloc(n * sizeof *img);
    if (!img) { /* tiny allocation; an empty slice rather than a crash */
        memset(image, 0, n * sizeof *image);
        memset(label, 0, n);
        return 0;
    }
    /* background */
    look bg;
    look_init(&bg, &r, fs_rng_range(&r, 0.0, 0.6), Sd);
    bg.amp = fs_rng_range(&r, 0.0, 0.2);
    if (bg.tex == 4) bg.amp *= 0.5;
    for (size_t y = 0; y < S; y++)
        for (size_t x = 0; x < S; x++) img[y * S + x] = look_at(&bg, &r, (double)x + 0.5, (double)y + 0.5, Sd);
    memset(label, 0, n);

    size_t n_obj = 1 + fs_rng_below(&r, p->max_objects);
    int container = n_obj > 1 && fs_rng_uniform(&r) < 0.5;
    double ccx = Sd / 2, ccy = Sd / 2, crad = Sd / 2;
    for (size_t o = 0; o < n_obj; o++) {
        shape s;
        int kind = (int)fs_rng_below(&r, SH_KINDS);
        double rad, cx, cy;
        if (o == 0 && container) {
            kind = fs_rng_uniform(&r) < 0.5 ? SH_ELLIPSE : SH_BLOB;
            rad = fs_rng_range(&r, 0.32, 0.48) * Sd;
            cx = Sd / 2 + fs_rng_range(&r, -0.1, 0.1) * Sd;
            cy = Sd / 2 + fs_rng_range(&r, -0.1, 0.1) * Sd;
            ccx = cx;
            ccy = cy;
            crad = rad;
        } else {
            /* sizes log-uniform: small objects as often as large ones */
            rad = exp(fs_rng_range(&r, log(0.05), log(container ? 0.2 : 0.3))) * Sd;
            if (rad < 2.5) rad = 2.5;
            double spread = container ? 0.75 * crad : 0.5 * Sd;
            cx = ccx + fs_rng_range(&r, -spread, spread);
            cy = ccy + fs_rng_range(&r, -spread, spread);
        }
        shape_init(&s, &r, kind, cx, cy, rad);
        /* the object's level: against the mean of what it covers, usually a
         * clear step, sometimes a faint one */
        double under = 0;
        size_t cnt = 0;
        int x0 = (int)floor(cx - rad - 2), x1 = (int)ceil(cx + rad + 2);
        int y0 = (int)floor(cy - rad - 2), y1 = (int)ceil(cy + rad + 2);
        x0 = x0 < 0 ? 0 : x0;
        y0 = y0 < 0 ? 0 : y0;
        x1 = x1 > (int)S ? (int)S : x1;
        y1 = y1 > (int)S ? (int)S : y1;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++)
                if (shape_sd(&s, x + 0.5, y + 0.5) >= 0) {
                    under += img[(size_t)y * S + (size_t)x];
                    cnt++;
                }
        if (!cnt) continue;
        under /= (double)cnt;
        double step = fs_rng_uniform(&r) < 0.2 ? fs_rng_range(&r, 0.05, 0.1) : fs_rng_range(&r, 0.1, 0.5);
        double up = under + step, down = under - step, level;
        if (up > 0.98) level = down;
        else if (down < 0.02) level = up;
        else level = fs_rng_uniform(&r) < 0.5 ? up : down;
        look lk;
        look_init(&lk, &r, level, Sd);
        if (lk.amp > 0.6 * step) lk.amp = 0.6 * step; /* texture must not hide the edge */
        double soft = fs_rng_uniform(&r) < 0.3 ? 0.3 : fs_rng_range(&r, 0.5, 2.0);
        uint8_t id = (uint8_t)(o + 1);
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                double sd = shape_sd(&s, x + 0.5, y + 0.5);
                double al = 0.5 + sd / (2 * soft);
                if (al <= 0) continue;
                if (al > 1) al = 1;
                size_t i = (size_t)y * S + (size_t)x;
                img[i] = img[i] * (1 - al) + look_at(&lk, &r, x + 0.5, y + 0.5, Sd) * al;
                if (sd >= 0) label[i] = id;
            }
    }
    /* objects mostly hidden by later ones lose their label */
    size_t area[FS_SHAPES_MAX_OBJECTS + 1] = {0}, kept = 0, min_area = fs_shapes_min_area(p);
    for (size_t i = 0; i < n; i++) area[label[i]]++;
    for (size_t i = 0; i < n; i++)
        if (label[i] && area[label[i]] < min_area) label[i] = 0;
    for (size_t k = 1; k <= n_obj; k++) kept += area[k] >= min_area;
    double sigma = fs_rng_range(&r, 0.0, 0.05);
    for (size_t i = 0; i < n; i++) {
        double v = img[i] + sigma * fs_rng_normal(&r);
        image[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
    free(img);
    return kept;
}
