#include "data/phantom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

const fs_phantom_params fs_phantom_default_params = FS_PHANTOM_PARAMS_DEFAULT;

const char *const fs_phantom_class_names[] = {"background", "liver",        "spleen",
                                              "left kidney", "right kidney", "aorta",
                                              "stomach"};
const size_t fs_phantom_n_classes = FS_PHANTOM_N_CLASSES;

/* Portal-venous-like contrast, chosen so every class has its own intensity
 * inside the [-125, 275] HU window. */
const double fs_phantom_class_hu[] = {NAN, 60, 95, 150, 150, 200, 10};

/* Tissues without a label. */
#define HU_AIR (-1000.0)
#define HU_FAT (-100.0)
#define HU_MUSCLE 45.0
#define HU_GAS (-900.0)
#define HU_IVC 130.0
#define HU_SINUS_FAT (-60.0)
#define HU_BONE_CORTEX 900.0
#define HU_BONE_MARROW 450.0
#define HU_DISC 90.0
#define HU_CSF 15.0

/* Per-case random parameters come from this stream tag so that a phantom
 * seed shared with other consumers still gives unrelated numbers. */
#define PHANTOM_TAG 0x5048414e544f4dULL /* "PHANTOM" */

/* A smooth, deformed ellipsoid in normalised coordinates (x in [-1, 1]
 * patient right to left, y in [-1, 1] anterior to posterior, z in [0, 1]
 * feet to head). Cross-sections shrink as (1 - |t|^pe)^(1/pe) with
 * t = (z - zc) / hz (hz below or above the centre), the centre drifts and the
 * axes grow linearly in t, and a sinusoidal warp of each in-plane coordinate
 * by the other bends the outline; its phases move with t so the shape twists
 * from slice to slice. */
typedef struct {
    double cx, cy, a, b, theta;
    double zc, hz_lo, hz_hi, pe;
    double dcx, dcy, grow;
    double wa1, wf1, wp1, wa2, wf2, wp2, wz;
    double hu, tex;
    int cls;   /* label written, 0 for unlabelled tissue */
    int notch; /* kidneys: +1 / -1 hilum on the local -u / +u side, 0 none */
} shape;

/* A shape's cross-section at one slice. */
typedef struct {
    int on;
    double t, cx, cy, a, b, c, s, p1, p2, reach;
} xsec;

static void shape_at(const shape *o, double z, xsec *x) {
    double hz = z < o->zc ? o->hz_lo : o->hz_hi;
    double t = (z - o->zc) / hz;
    x->on = 0;
    if (fabs(t) >= 1) return;
    double sc = pow(1 - pow(fabs(t), o->pe), 1 / o->pe) * (1 + o->grow * t);
    if (sc < 0.05) return;
    x->on = 1;
    x->t = t;
    x->cx = o->cx + o->dcx * t;
    x->cy = o->cy + o->dcy * t;
    x->a = o->a * sc;
    x->b = o->b * sc;
    x->c = cos(o->theta);
    x->s = sin(o->theta);
    x->p1 = o->wp1 + o->wz * t;
    x->p2 = o->wp2 + o->wz * t;
    x->reach = fmax(x->a, x->b) * (1 + fmax(o->wa1, o->wa2)) + 1e-9;
}

/* Whether (x, y) lies inside; *ur, *vr get the local normalised coordinates. */
static inline int xsec_inside(const shape *o, const xsec *q, double x, double y, double *ur,
                              double *vr) {
    double dx = x - q->cx, dy = y - q->cy;
    if (fabs(dx) > q->reach || fabs(dy) > q->reach) return 0;
    double u = dx + o->wa1 * q->a * sin(o->wf1 * dy / q->b + q->p1);
    double v = dy + o->wa2 * q->b * sin(o->wf2 * dx / q->a + q->p2);
    *ur = (u * q->c + v * q->s) / q->a;
    *vr = (-u * q->s + v * q->c) / q->b;
    return *ur * *ur + *vr * *vr < 1;
}

/* Smooth texture: a sum of K plane waves of unit total variance, evaluated
 * separably (exp(i k.x) factors per axis) so a voxel costs a few multiplies. */
#define TEX_K 6
typedef struct {
    double *ex, *ey, *ez; /* [TEX_K][n][2]: cos, sin of the axis phase */
    double amp;
} texture;

static void texture_init(texture *tx, fs_rng *r, double fmin, double fmax, double *mem,
                         size_t nx, size_t ny, size_t nz) {
    tx->ex = mem;
    tx->ey = tx->ex + TEX_K * nx * 2;
    tx->ez = tx->ey + TEX_K * ny * 2;
    tx->amp = sqrt(2.0 / TEX_K);
    for (int c = 0; c < TEX_K; c++) {
        /* random direction, frequency in cycles per unit of normalised length */
        double th = fs_rng_range(r, 0, 2 * M_PI), cz = fs_rng_range(r, -0.6, 0.6);
        double sz = sqrt(1 - cz * cz), f = 2 * M_PI * fs_rng_range(r, fmin, fmax);
        double kx = f * sz * cos(th), ky = f * sz * sin(th), kz = f * cz;
        double ph = fs_rng_range(r, 0, 2 * M_PI);
        for (size_t i = 0; i < nx; i++) {
            double x = ((double)i + 0.5) / (double)nx * 2 - 1;
            tx->ex[(c * nx + i) * 2] = cos(kx * x);
            tx->ex[(c * nx + i) * 2 + 1] = sin(kx * x);
        }
        for (size_t j = 0; j < ny; j++) {
            double y = ((double)j + 0.5) / (double)ny * 2 - 1;
            tx->ey[(c * ny + j) * 2] = cos(ky * y + ph);
            tx->ey[(c * ny + j) * 2 + 1] = sin(ky * y + ph);
        }
        for (size_t k = 0; k < nz; k++) {
            double z = ((double)k + 0.5) / (double)nz * 2; /* z spans 2 units like x, y */
            tx->ez[(c * nz + k) * 2] = cos(kz * z);
            tx->ez[(c * nz + k) * 2 + 1] = sin(kz * z);
        }
    }
}

/* Row factors: exp(i (ky y + kz z + ph)) for each wave, times the amplitude. */
static void texture_row(const texture *tx, size_t ny, size_t nz, size_t j, size_t k,
                        double row[TEX_K][2]) {
    for (int c = 0; c < TEX_K; c++) {
        const double *ey = tx->ey + (c * ny + j) * 2, *ez = tx->ez + (c * nz + k) * 2;
        row[c][0] = tx->amp * (ey[0] * ez[0] - ey[1] * ez[1]);
        row[c][1] = tx->amp * (ey[0] * ez[1] + ey[1] * ez[0]);
    }
}

static inline double texture_at(const texture *tx, size_t nx, size_t i,
                                const double row[TEX_K][2]) {
    double s = 0;
    for (int c = 0; c < TEX_K; c++) {
        const double *e = tx->ex + (c * nx + i) * 2;
        s += e[0] * row[c][1] + e[1] * row[c][0];
    }
    return s;
}

static inline double smoothstep(double a, double b, double x) {
    double t = (x - a) / (b - a);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return t * t * (3 - 2 * t);
}

/* ---- the case's anatomy ---- */

#define MAX_SHAPES 24

typedef struct {
    /* body outline: semi-axes, anterior/posterior, centre; layer thicknesses
     * as fractions of the radius */
    double bx, by_a, by_p, bcy, fat, wall, body_ph;
    /* spine: vertebral body centre and radius, disc phase (mm) */
    double xs, ys, rs, disc_ph;
    double noise_sigma;
    uint64_t noise_seed;
    shape sh[MAX_SHAPES];
    int n_sh;
} anatomy;

static shape *add_shape(anatomy *an) { return &an->sh[an->n_sh++]; }

static void warp_random(shape *o, fs_rng *r, double amount) {
    o->wa1 = amount * fs_rng_range(r, 0.3, 1);
    o->wa2 = amount * fs_rng_range(r, 0.3, 1);
    o->wf1 = fs_rng_range(r, 1.5, 3.5);
    o->wf2 = fs_rng_range(r, 1.5, 3.5);
    o->wp1 = fs_rng_range(r, 0, 2 * M_PI);
    o->wp2 = fs_rng_range(r, 0, 2 * M_PI);
    o->wz = fs_rng_range(r, -1.5, 1.5);
}

static void organ_hu(shape *o, fs_rng *r, int cls, double tex) {
    o->cls = cls;
    o->hu = fs_phantom_class_hu[cls] + fs_rng_range(r, -5, 5);
    o->tex = tex;
}

/* Every draw happens in a fixed order: the case depends on nothing else. */
static void anatomy_draw(anatomy *an, fs_rng *r) {
    memset(an, 0, sizeof *an);
    an->bx = fs_rng_range(r, 0.80, 0.92);
    an->by_a = fs_rng_range(r, 0.62, 0.74);
    an->by_p = an->by_a * fs_rng_range(r, 0.85, 0.95);
    an->bcy = fs_rng_range(r, -0.02, 0.05);
    an->fat = fs_rng_range(r, 0.05, 0.12);
    an->wall = fs_rng_range(r, 0.035, 0.055);
    an->body_ph = fs_rng_range(r, 0, 2 * M_PI);
    an->xs = fs_rng_range(r, -0.02, 0.02);
    an->ys = an->bcy + an->by_p * fs_rng_range(r, 0.36, 0.44);
    an->rs = fs_rng_range(r, 0.09, 0.11);
    an->disc_ph = fs_rng_range(r, 0, 32);
    an->noise_sigma = fs_rng_range(r, 10, 16);
    an->noise_seed = fs_rng_u64(r);

    /* bowel gas pockets (unlabelled) */
    int n_gas = 3 + (int)fs_rng_below(r, 5);
    for (int g = 0; g < n_gas; g++) {
        shape *o = add_shape(an);
        double ang = fs_rng_range(r, 0, 2 * M_PI), rad = sqrt(fs_rng_uniform(r)) * 0.55;
        o->cx = rad * cos(ang) * an->bx;
        o->cy = an->bcy + rad * sin(ang) * an->by_a - 0.1;
        o->a = fs_rng_range(r, 0.025, 0.06);
        o->b = o->a * fs_rng_range(r, 0.6, 1.4);
        o->zc = fs_rng_range(r, 0.05, 0.7);
        o->hz_lo = o->hz_hi = fs_rng_range(r, 0.03, 0.08);
        o->pe = 2;
        warp_random(o, r, 0.1);
        o->hu = HU_GAS;
    }
    /* psoas muscles, growing toward the pelvis */
    for (int side = -1; side <= 1; side += 2) {
        shape *o = add_shape(an);
        o->cx = an->xs + side * (an->rs + fs_rng_range(r, 0.05, 0.08));
        o->cy = an->ys - fs_rng_range(r, 0.0, 0.04);
        o->a = fs_rng_range(r, 0.07, 0.09);
        o->b = o->a * fs_rng_range(r, 0.8, 1.0);
        o->zc = 0;
        o->hz_lo = 1;
        o->hz_hi = fs_rng_range(r, 0.6, 0.75);
        o->pe = 1.5;
        o->dcx = side * 0.03;
        warp_random(o, r, 0.05);
        o->hu = HU_MUSCLE;
        o->tex = 5;
    }
    /* inferior vena cava (unlabelled), right of the aorta */
    shape *ivc = add_shape(an);
    ivc->cx = an->xs - fs_rng_range(r, 0.08, 0.12);
    ivc->cy = an->ys - an->rs - fs_rng_range(r, 0.08, 0.11);
    ivc->a = fs_rng_range(r, 0.05, 0.065);
    ivc->b = ivc->a * fs_rng_range(r, 0.6, 0.85);
    ivc->zc = 0.5;
    ivc->hz_lo = ivc->hz_hi = 10;
    ivc->pe = 2;
    warp_random(ivc, r, 0.05);
    ivc->hu = HU_IVC;
    ivc->tex = 5;

    /* stomach: left upper quadrant, anterior, J-shaped (drifts right and
     * down) */
    shape *st = add_shape(an);
    st->cx = fs_rng_range(r, 0.15, 0.30);
    st->cy = fs_rng_range(r, -0.40, -0.25);
    st->a = fs_rng_range(r, 0.17, 0.24);
    st->b = fs_rng_range(r, 0.12, 0.17);
    st->theta = fs_rng_range(r, -0.4, 0.4);
    st->zc = fs_rng_range(r, 0.68, 0.78);
    st->hz_lo = fs_rng_range(r, 0.16, 0.22);
    st->hz_hi = fs_rng_range(r, 0.14, 0.2);
    st->pe = 2;
    st->dcx = fs_rng_range(r, 0.08, 0.16);
    st->dcy = fs_rng_range(r, -0.05, 0.05);
    warp_random(st, r, 0.15);
    organ_hu(st, r, FS_PHANTOM_STOMACH, 8);

    /* liver: right upper quadrant, extends across the midline superiorly and
     * often out of the top of the scan */
    shape *lv = add_shape(an);
    lv->cx = fs_rng_range(r, -0.45, -0.35);
    lv->cy = fs_rng_range(r, -0.15, 0.0);
    lv->a = fs_rng_range(r, 0.30, 0.38);
    lv->b = fs_rng_range(r, 0.34, 0.44);
    lv->theta = fs_rng_range(r, -0.3, 0.1);
    lv->zc = fs_rng_range(r, 0.68, 0.8);
    lv->hz_lo = fs_rng_range(r, 0.3, 0.42);
    lv->hz_hi = fs_rng_range(r, 0.35, 0.45);
    lv->pe = 3;
    lv->dcx = fs_rng_range(r, 0.05, 0.15);
    lv->dcy = fs_rng_range(r, -0.05, 0.05);
    lv->grow = fs_rng_range(r, 0.05, 0.2);
    warp_random(lv, r, 0.15);
    organ_hu(lv, r, FS_PHANTOM_LIVER, 6);

    /* spleen: left posterolateral, along the wall */
    shape *sp = add_shape(an);
    sp->cx = fs_rng_range(r, 0.48, 0.58);
    sp->cy = fs_rng_range(r, 0.08, 0.22);
    sp->a = fs_rng_range(r, 0.10, 0.14);
    sp->b = fs_rng_range(r, 0.18, 0.24);
    sp->theta = fs_rng_range(r, -0.7, -0.3);
    sp->zc = fs_rng_range(r, 0.62, 0.72);
    sp->hz_lo = sp->hz_hi = fs_rng_range(r, 0.14, 0.2);
    sp->pe = 2;
    sp->dcx = fs_rng_range(r, -0.04, 0.04);
    sp->dcy = fs_rng_range(r, -0.06, 0.0);
    warp_random(sp, r, 0.15);
    organ_hu(sp, r, FS_PHANTOM_SPLEEN, 5);

    /* kidneys: paired beside the spine, long axes tilted, the right one a
     * little lower; a hilum notch on the medial side */
    double kz = fs_rng_range(r, 0.38, 0.50), kdrop = fs_rng_range(r, 0.02, 0.08);
    for (int side = 1; side >= -1; side -= 2) {
        shape *k = add_shape(an);
        k->cx = an->xs + side * fs_rng_range(r, 0.30, 0.38);
        k->cy = an->ys + fs_rng_range(r, -0.07, 0.01);
        k->a = fs_rng_range(r, 0.10, 0.12);
        k->b = fs_rng_range(r, 0.14, 0.18);
        k->theta = side * fs_rng_range(r, 0.3, 0.6);
        k->zc = side > 0 ? kz : kz - kdrop;
        k->hz_lo = k->hz_hi = fs_rng_range(r, 0.17, 0.23);
        k->pe = 2;
        k->dcx = side * fs_rng_range(r, 0.0, 0.04);
        k->dcy = fs_rng_range(r, -0.03, 0.03);
        warp_random(k, r, 0.08);
        organ_hu(k, r, side > 0 ? FS_PHANTOM_KIDNEY_L : FS_PHANTOM_KIDNEY_R, 5);
        k->notch = side;
    }

    /* aorta: a tube in front of the spine, slightly left, ending at the
     * bifurcation */
    shape *ao = add_shape(an);
    double ra = fs_rng_range(r, 0.055, 0.07), zbif = fs_rng_range(r, 0.04, 0.18);
    ao->cx = an->xs + fs_rng_range(r, 0.02, 0.07);
    ao->cy = an->ys - an->rs - ra - fs_rng_range(r, 0.01, 0.03);
    ao->a = ra;
    ao->b = ra;
    ao->zc = 1;
    ao->hz_lo = 1 - zbif;
    ao->hz_hi = 10;
    ao->pe = 8;
    ao->dcx = fs_rng_range(r, -0.04, 0.04);
    ao->dcy = fs_rng_range(r, -0.04, 0.02);
    warp_random(ao, r, 0.02);
    organ_hu(ao, r, FS_PHANTOM_AORTA, 4);
}

/* HU and label of a voxel inside the body, outside the spine. */
static void paint_soft(const anatomy *an, const xsec *xs, double x, double y, double rb,
                       double cav, double t1, double t2, double *hu, int *lab) {
    if (rb >= 1 - an->fat) {
        *hu = HU_FAT + 5 * t1;
        return;
    }
    if (rb >= cav) {
        *hu = HU_MUSCLE + 5 * t1;
        return;
    }
    /* abdominal cavity: mesenteric fat mottled with bowel */
    *hu = HU_FAT + 5 + 125 * smoothstep(-0.5, 0.7, 0.75 * t2 + 0.65 * t1) + 6 * t1;
    for (int s = 0; s < an->n_sh; s++) {
        const shape *o = &an->sh[s];
        const xsec *q = &xs[s];
        double ur, vr;
        if (!q->on || !xsec_inside(o, q, x, y, &ur, &vr)) continue;
        if (o->notch && fabs(q->t) < 0.6) {
            double du = ur + o->notch * 0.95;
            if (du * du + vr * vr * 1.5 < 0.45 * 0.45) {
                *hu = HU_SINUS_FAT + 5 * t1;
                *lab = 0;
                continue;
            }
        }
        *hu = o->hu + o->tex * t1;
        *lab = o->cls;
    }
}

/* Spine and back muscles, over whatever paint_soft put there. Returns 1 when
 * the voxel belongs to them. */
static int paint_spine(const anatomy *an, double x, double y, int disc, double t1,
                       double *hu) {
    double dx = x - an->xs, dy = y - an->ys, rs = an->rs;
    double r2 = dx * dx + dy * dy;
    if (r2 < rs * rs) {
        if (disc) *hu = HU_DISC + 5 * t1;
        else *hu = r2 > 0.8 * 0.8 * rs * rs ? HU_BONE_CORTEX : HU_BONE_MARROW + 30 * t1;
        return 1;
    }
    double yc = an->ys + rs + 0.045; /* spinal canal */
    double cy = y - yc;
    if (dx * dx + cy * cy < 0.04 * 0.04) {
        *hu = HU_CSF;
        return 1;
    }
    /* spinous process and laminae behind the canal */
    double sy = y - (yc + 0.10);
    if ((dx * dx) / (0.03 * 0.03) + (sy * sy) / (0.09 * 0.09) < 1 ||
        (fabs(cy) < 0.025 && fabs(dx) < 0.08 && fabs(dx) > 0.03)) {
        *hu = HU_BONE_CORTEX - 200;
        return 1;
    }
    /* paraspinal muscles either side */
    double px = fabs(dx) - 0.14, py = y - (yc + 0.06);
    if (px * px / (0.11 * 0.11) + py * py / (0.09 * 0.09) < 1) {
        *hu = HU_MUSCLE + 5 * t1;
        return 1;
    }
    return 0;
}

static int check_params(const fs_phantom_params *p) {
    size_t d[3] = {p->nx, p->ny, p->nz};
    for (int a = 0; a < 3; a++) {
        if (d[a] < FS_PHANTOM_MIN_DIM || d[a] > FS_PHANTOM_MAX_DIM)
            return fs_error("phantom: size %zux%zux%zu out of range (each axis %d..%d)",
                            p->nx, p->ny, p->nz, FS_PHANTOM_MIN_DIM, FS_PHANTOM_MAX_DIM);
        if (!(p->spacing[a] > 0 && p->spacing[a] <= 100))
            return fs_error("phantom: spacing %g x %g x %g mm out of range (0, 100]",
                            p->spacing[0], p->spacing[1], p->spacing[2]);
    }
    if ((double)p->nx * p->ny * p->nz > (double)(1u << 30))
        return fs_error("phantom: %zux%zux%zu voxels is too large", p->nx, p->ny, p->nz);
    return FS_OK;
}

static void set_geometry(fs_volume *v, const fs_phantom_params *p) {
    memcpy(v->spacing, p->spacing, sizeof v->spacing);
    memset(v->affine, 0, sizeof v->affine);
    /* LPS voxel axes in RAS world, centred on the origin */
    v->affine[0][0] = -p->spacing[0];
    v->affine[1][1] = -p->spacing[1];
    v->affine[2][2] = p->spacing[2];
    v->affine[0][3] = p->spacing[0] * (double)(p->nx - 1) / 2;
    v->affine[1][3] = p->spacing[1] * (double)(p->ny - 1) / 2;
    v->affine[2][3] = -p->spacing[2] * (double)(p->nz - 1) / 2;
    v->affine[3][3] = 1;
}

/* Gaussian noise for voxel pairs (2m, 2m+1): one hash gives both normals. */
static void add_noise(float *hu, size_t n, uint64_t seed, double sigma) {
    for (size_t m = 0; m < (n + 1) / 2; m++) {
        uint64_t h = fs_hash64(seed, 1, m);
        double u1 = ((double)(h >> 32) + 0.5) * 0x1.0p-32;
        double u2 = ((double)(h & 0xffffffffu) + 0.5) * 0x1.0p-32;
        double rr = sigma * sqrt(-2 * log(u1));
        double a = 2 * M_PI * u2;
        size_t i = 2 * m;
        double v0 = hu[i] + rr * cos(a);
        hu[i] = (float)(v0 < -1024 ? -1024 : v0 > 3071 ? 3071 : v0);
        if (i + 1 < n) {
            double v1 = hu[i + 1] + rr * sin(a);
            hu[i + 1] = (float)(v1 < -1024 ? -1024 : v1 > 3071 ? 3071 : v1);
        }
    }
}

int fs_phantom_case(uint64_t seed, size_t case_index, const fs_phantom_params *p,
                    fs_volume *ct_hu, fs_volume *label) {
    if (!p) p = &fs_phantom_default_params;
    memset(ct_hu, 0, sizeof *ct_hu);
    memset(label, 0, sizeof *label);
    if (check_params(p) != FS_OK) return FS_ERR;
    size_t nx = p->nx, ny = p->ny, nz = p->nz;
    size_t shape3[3] = {nz, ny, nx};
    double *texmem = malloc(2 * TEX_K * (nx + ny + nz) * 2 * sizeof *texmem);
    if (!texmem || fs_tensor_alloc(&ct_hu->data, FS_F32, 3, shape3) != FS_OK ||
        fs_tensor_alloc(&label->data, FS_U8, 3, shape3) != FS_OK) {
        free(texmem);
        fs_tensor_free(&ct_hu->data);
        fs_tensor_free(&label->data);
        return fs_error("phantom: out of memory for %zux%zux%zu voxels", nx, ny, nz);
    }
    set_geometry(ct_hu, p);
    set_geometry(label, p);

    fs_rng r;
    fs_rng_init(&r, fs_hash64(seed, PHANTOM_TAG, case_index), 0);
    anatomy an;
    anatomy_draw(&an, &r);
    texture organ_tex, bowel_tex;
    texture_init(&organ_tex, &r, 0.8, 2.5, texmem, nx, ny, nz);
    texture_init(&bowel_tex, &r, 2.0, 5.0, texmem + TEX_K * (nx + ny + nz) * 2, nx, ny, nz);

    float *hu = ct_hu->data.data;
    uint8_t *lab = label->data.data;
    xsec xs[MAX_SHAPES];
    for (size_t k = 0; k < nz; k++) {
        double z = ((double)k + 0.5) / (double)nz;
        for (int s = 0; s < an.n_sh; s++) shape_at(&an.sh[s], z, &xs[s]);
        double bscale = 1 + 0.03 * sin(2 * M_PI * 0.7 * z + an.body_ph);
        double bx = an.bx * bscale, bya = an.by_a * bscale, byp = an.by_p * bscale;
        double cav = 1 - an.fat - an.wall;
        double zmm = ((double)k + 0.5) * p->spacing[2];
        int disc = fmod(zmm + an.disc_ph, 32.0) < 6.0;
        for (size_t j = 0; j < ny; j++) {
            double y = ((double)j + 0.5) / (double)ny * 2 - 1;
            double dy = y - an.bcy, by = dy > 0 ? byp : bya;
            double row1[TEX_K][2], row2[TEX_K][2];
            texture_row(&organ_tex, ny, nz, j, k, row1);
            texture_row(&bowel_tex, ny, nz, j, k, row2);
            size_t base = (k * ny + j) * nx;
            for (size_t i = 0; i < nx; i++) {
                double x = ((double)i + 0.5) / (double)nx * 2 - 1;
                double rb = sqrt((x / bx) * (x / bx) + (dy / by) * (dy / by));
                if (rb >= 1) {
                    hu[base + i] = (float)HU_AIR;
                    continue;
                }
                double t1 = texture_at(&organ_tex, nx, i, row1);
                double v = 0;
                int l = 0;
                if (!paint_spine(&an, x, y, disc, t1, &v)) {
                    double t2 = texture_at(&bowel_tex, nx, i, row2);
                    paint_soft(&an, xs, x, y, rb, cav, t1, t2, &v, &l);
                }
                hu[base + i] = (float)v;
                lab[base + i] = (uint8_t)l;
            }
        }
    }
    free(texmem);
    add_noise(hu, nx * ny * nz, an.noise_seed, an.noise_sigma);
    return FS_OK;
}
