#include "data/transform.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/rng.h"

/* Four lanes with GCC's vector extensions (SSE2 on x86-64, NEON on arm64,
 * plain scalar code elsewhere). Every lane computes exactly what the scalar
 * tail computes for its element (same operations in the same order, no
 * fused multiply-add, no reassociation), so results do not depend on where
 * a row's vector part ends: a sample is the same whatever its position. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4), may_alias)); /* unaligned access */

static inline v4f load4(const float *p) { return *(const v4f_u *)p; }
static inline void store4(float *p, v4f v) { *(v4f_u *)p = v; }
static inline v4f splat(float x) { return (v4f){x, x, x, x}; }
/* max(v, 0) and min(v, 1) as the scalar clamp01 below computes them */
static inline v4f clamp01_4(v4f v) {
    v4i pos = v > splat(0);
    v = (v4f)((v4i)v & pos);
    v4i lt1 = v < splat(1);
    return (v4f)(((v4i)v & lt1) | ((v4i)splat(1) & ~lt1));
}
static inline float clamp01(float v) {
    v = v > 0 ? v : 0;
    return v < 1 ? v : 1;
}

/* floor for coordinates well inside the long range (callers bound them) */
static inline long floor_l(double v) {
    long i = (long)v;
    return i - (v < (double)i);
}

/* Coordinates far outside the slice are clamped before conversion so that
 * absurd maps cannot overflow a long; any value beyond the slice reads 0. */
static inline double clamp_coord(double v) { return v < -1e9 ? -1e9 : v > 1e9 ? 1e9 : v; }

/* ---- warps ---- */

/* The bilinear value from the four taps; a zero fraction returns the tap
 * exactly (the identity map copies the image bit for bit). */
static inline float lerp2(float p00, float p01, float p10, float p11, float fx, float fy) {
    const float top = p00 + fx * (p01 - p00), bot = p10 + fx * (p11 - p10);
    return top + fy * (bot - top);
}

/* One pixel by the general rule: taps outside the slice read 0. */
static inline float bilinear_edge(const float *src, long W, long H, double u, double v) {
    u = clamp_coord(u), v = clamp_coord(v);
    const long x0 = floor_l(u), y0 = floor_l(v);
    if (x0 < -1 || y0 < -1 || x0 >= W || y0 >= H) return 0;
    const float fx = (float)(u - (double)x0), fy = (float)(v - (double)y0);
    const int in_x0 = x0 >= 0, in_x1 = x0 + 1 < W, in_y0 = y0 >= 0, in_y1 = y0 + 1 < H;
    return lerp2(in_x0 && in_y0 ? src[y0 * W + x0] : 0, in_x1 && in_y0 ? src[y0 * W + x0 + 1] : 0,
                 in_x0 && in_y1 ? src[(y0 + 1) * W + x0] : 0, in_x1 && in_y1 ? src[(y0 + 1) * W + x0 + 1] : 0, fx, fy);
}

/* Source coordinates along a destination row are u0 + du c in float
 * (exact for whole-pixel maps; within 1e-3 pixels at 8192). A row is tame
 * when all of them lie within +-1e6, so the int conversions cannot
 * overflow: the common case. */
typedef struct {
    float u0, v0, du, dv;
    int tame;
} row_coords;

static inline row_coords row_start(const fs_affine *m, long ox, long y, size_t n) {
    const double u0 = m->a[0][1] * (double)y + m->t[0] + m->a[0][0] * (double)ox;
    const double v0 = m->a[1][1] * (double)y + m->t[1] + m->a[1][0] * (double)ox;
    const double u1 = u0 + m->a[0][0] * (double)(n - 1), v1 = v0 + m->a[1][0] * (double)(n - 1);
    row_coords rc = {(float)u0, (float)v0, (float)m->a[0][0], (float)m->a[1][0],
                     fabs(u0) < 1e6 && fabs(v0) < 1e6 && fabs(u1) < 1e6 && fabs(v1) < 1e6};
    return rc;
}

/* Pixel c of a row: image by the interior rule (or the edge rule near and
 * beyond the border), label by the nearest pixel, round half up. */
static inline void pair_at(const float *src, const uint8_t *lab, long W, long H, const row_coords *rc, size_t c,
                           float *o, uint8_t *ol) {
    const float u = rc->u0 + rc->du * (float)c, v = rc->v0 + rc->dv * (float)c;
    if (!rc->tame) {
        *o = bilinear_edge(src, W, H, u, v);
        if (ol) {
            const long xn = floor_l(clamp_coord((double)u + 0.5)), yn = floor_l(clamp_coord((double)v + 0.5));
            *ol = xn >= 0 && yn >= 0 && xn < W && yn < H ? lab[yn * W + xn] : 0;
        }
        return;
    }
    /* floor for u > -1 (anything at or below -1 fails the test) */
    const long xi = (long)(u + 1.0f) - 1, yi = (long)(v + 1.0f) - 1;
    const float fx = u - (float)xi, fy = v - (float)yi;
    if ((unsigned long)xi < (unsigned long)(W - 1) && (unsigned long)yi < (unsigned long)(H - 1)) {
        const float *s = src + yi * W + xi;
        *o = lerp2(s[0], s[1], s[W], s[W + 1], fx, fy);
    } else {
        *o = bilinear_edge(src, W, H, u, v);
    }
    if (ol) {
        const long xn = xi + (fx >= 0.5f), yn = yi + (fy >= 0.5f);
        *ol = xn >= 0 && yn >= 0 && xn < W && yn < H ? lab[yn * W + xn] : 0;
    }
}

#define WARP_AHEAD 3

/* Pixels [c, end) of one destination row. */
static inline void warp_span(const float *src, const uint8_t *lab, long W, long H, const row_coords *rc, float *out,
                             uint8_t *ol, size_t c, size_t end, long ahead) {
    const long last = W * H - 1;
    const v4f lane = {0, 1, 2, 3};
    const v4u wl = {(uint32_t)(W - 1), (uint32_t)(W - 1), (uint32_t)(W - 1), (uint32_t)(W - 1)};
    const v4u hl = {(uint32_t)(H - 1), (uint32_t)(H - 1), (uint32_t)(H - 1), (uint32_t)(H - 1)};
    if (rc->tame) {
        /* four pixels at a time while all four read inside the slice:
         * coordinates and interpolation vectorised, taps gathered */
        const v4f u0 = splat(rc->u0), v0 = splat(rc->v0), du = splat(rc->du), dv = splat(rc->dv);
        for (; c + 4 <= end; c += 4) {
            const v4f cf = splat((float)c) + lane;
            const v4f u = u0 + du * cf, v = v0 + dv * cf;
            const v4i xi = __builtin_convertvector(u + splat(1), v4i) - 1;
            const v4i yi = __builtin_convertvector(v + splat(1), v4i) - 1;
            const v4i in = ((v4u)xi < wl) & ((v4u)yi < hl);
            if (!(in[0] & in[1] & in[2] & in[3])) {
                for (size_t k = 0; k < 4; k++) pair_at(src, lab, W, H, rc, c + k, out + c + k, ol ? ol + c + k : NULL);
                continue;
            }
            const v4f fx = u - __builtin_convertvector(xi, v4f), fy = v - __builtin_convertvector(yi, v4f);
            const v4i at = yi * (int32_t)W + xi;
            /* Rotated rows cross the source's cache lines diagonally, which
             * the hardware does not prefetch: ask for the lines that a row
             * a few below will read (outside the slice: nothing to read). */
            const long pf = (long)at[0] + ahead;
            if (pf >= 0 && pf <= last) {
                __builtin_prefetch(src + pf);
                if (pf + W <= last) __builtin_prefetch(src + pf + W);
            }
            const v4f a00 = {src[at[0]], src[at[1]], src[at[2]], src[at[3]]};
            const v4f a01 = {src[at[0] + 1], src[at[1] + 1], src[at[2] + 1], src[at[3] + 1]};
            const v4f a10 = {src[at[0] + W], src[at[1] + W], src[at[2] + W], src[at[3] + W]};
            const v4f a11 = {src[at[0] + W + 1], src[at[1] + W + 1], src[at[2] + W + 1], src[at[3] + W + 1]};
            const v4f top = a00 + fx * (a01 - a00), bot = a10 + fx * (a11 - a10);
            store4(out + c, top + fy * (bot - top));
            if (ol) {
                /* a true comparison is -1 per lane */
                const v4i nat = at - (v4i)(fx >= splat(0.5f)) + ((v4i)(fy >= splat(0.5f)) & (int32_t)W);
                for (int k = 0; k < 4; k++) ol[c + (size_t)k] = lab[nat[k]];
            }
        }
    }
    for (; c < end; c++) pair_at(src, lab, W, H, rc, c, out + c, ol ? ol + c : NULL);
}

/* Narrows [*c0, *c1] to the columns c whose source coordinate s0 + ds c
 * along one axis lies in [lo, hi]. */
static void span_clip(double s0, double ds, double lo, double hi, double *c0, double *c1) {
    if (ds == 0) {
        if (s0 < lo || s0 > hi) *c1 = *c0;
        return;
    }
    double a = (lo - s0) / ds, b = (hi - s0) / ds;
    if (a > b) { const double t = a; a = b; b = t; }
    if (a > *c0) *c0 = a;
    if (b < *c1) *c1 = b;
}

static void warp_rows(const float *src, const uint8_t *lab, size_t sh, size_t sw, const fs_support *sup, float *dst,
                      uint8_t *dl, size_t dh, size_t dw, size_t ds, long ox, long oy, const fs_affine *m) {
    const long W = (long)sw, H = (long)sh;
    /* the source offset from a pixel to the same pixel WARP_AHEAD rows below */
    const double ay = WARP_AHEAD * m->a[1][1], ax = WARP_AHEAD * m->a[0][1];
    const long ahead = fabs(ay) < 1e6 && fabs(ax) < 1e6 ? (long)lround(ay) * W + (long)lround(ax) : 0;
    for (size_t r = 0; r < dh; r++) {
        const long y = oy + (long)r;
        const row_coords rc = row_start(m, ox, y, dw);
        float *out = dst + r * ds;
        uint8_t *ol = dl ? dl + r * ds : NULL;
        size_t c0 = 0, c1 = dw;
        if (sup) {
            /* Outside the support grown by two pixels every tap and the
             * nearest pixel read 0, so the result is +0 and label 0 there
             * whatever the rounding of the row's float coordinates. */
            const double u0 = m->a[0][1] * (double)y + m->t[0] + m->a[0][0] * (double)ox;
            const double v0 = m->a[1][1] * (double)y + m->t[1] + m->a[1][0] * (double)ox;
            double a = 0, b = (double)dw;
            span_clip(u0, m->a[0][0], (double)sup->x0 - 2, (double)sup->x1 + 2, &a, &b);
            span_clip(v0, m->a[1][0], (double)sup->y0 - 2, (double)sup->y1 + 2, &a, &b);
            if (!(a <= b) || sup->x0 > sup->x1) {
                c0 = c1 = 0;
            } else {
                a = floor(a) - 1;
                b = ceil(b) + 2;
                c0 = a <= 0 ? 0 : a >= (double)dw ? dw : (size_t)a;
                c1 = b <= 0 ? 0 : b >= (double)dw ? dw : (size_t)b;
                if (c1 < c0) c1 = c0;
            }
            memset(out, 0, c0 * sizeof *out);
            memset(out + c1, 0, (dw - c1) * sizeof *out);
            if (ol) {
                memset(ol, 0, c0);
                memset(ol + c1, 0, dw - c1);
            }
        }
        warp_span(src, lab, W, H, &rc, out, ol, c0, c1, ahead);
    }
}

void fs_warp_bilinear(const float *src, size_t sh, size_t sw, float *dst, size_t dh, size_t dw, size_t ds, long ox,
                      long oy, const fs_affine *m) {
    warp_rows(src, NULL, sh, sw, NULL, dst, NULL, dh, dw, ds, ox, oy, m);
}

void fs_warp_pair(const float *src, const uint8_t *lab, size_t sh, size_t sw, float *dst, uint8_t *dl, size_t dh,
                  size_t dw, size_t ds, long ox, long oy, const fs_affine *m) {
    warp_rows(src, lab, sh, sw, NULL, dst, dl, dh, dw, ds, ox, oy, m);
}

/* 1 when x is +0.0 exactly (the bytes of zero; -0.0 counts as content).
 * memcpy, not a pointer cast: reading a float through a uint32_t pointer
 * breaks the aliasing rule; the copy compiles to the same load. */
static inline int is_zero_bits(const float *x) {
    uint32_t u;
    memcpy(&u, x, sizeof u);
    return u == 0;
}

void fs_warp_support(const float *src, const uint8_t *lab, size_t h, size_t w, fs_support *sup) {
    long x0 = (long)w, y0 = (long)h, x1 = -1, y1 = -1;
    for (size_t r = 0; r < h; r++) {
        const float *s = src + r * w;
        const uint8_t *l = lab ? lab + r * w : NULL;
        size_t a = 0, b = w;
        while (a < b && is_zero_bits(s + a) && (!l || !l[a])) a++;
        if (a == b) continue;
        while (b > a && is_zero_bits(s + b - 1) && (!l || !l[b - 1])) b--;
        if ((long)a < x0) x0 = (long)a;
        if ((long)b - 1 > x1) x1 = (long)b - 1;
        if (y0 > (long)r) y0 = (long)r;
        y1 = (long)r;
    }
    *sup = (fs_support){x0, y0, x1, y1};
}

void fs_warp_pair_support(const float *src, const uint8_t *lab, size_t sh, size_t sw, const fs_support *sup,
                          float *dst, uint8_t *dl, size_t dh, size_t dw, size_t ds, long ox, long oy,
                          const fs_affine *m) {
    warp_rows(src, lab, sh, sw, sup, dst, dl, dh, dw, ds, ox, oy, m);
}

void fs_warp_nearest_u8(const uint8_t *src, size_t sh, size_t sw, uint8_t *dst, size_t dh, size_t dw, size_t ds,
                        long ox, long oy, const fs_affine *m) {
    const long W = (long)sw, H = (long)sh;
    for (size_t r = 0; r < dh; r++) {
        const row_coords rc = row_start(m, ox, oy + (long)r, dw);
        uint8_t *out = dst + r * ds;
        for (size_t c = 0; c < dw; c++) {
            const float u = rc.u0 + rc.du * (float)c, v = rc.v0 + rc.dv * (float)c;
            long xn, yn;
            if (rc.tame) {
                const long xi = (long)(u + 1.0f) - 1, yi = (long)(v + 1.0f) - 1;
                xn = xi + (u - (float)xi >= 0.5f), yn = yi + (v - (float)yi >= 0.5f);
            } else {
                xn = floor_l(clamp_coord((double)u + 0.5)), yn = floor_l(clamp_coord((double)v + 0.5));
            }
            out[c] = xn >= 0 && yn >= 0 && xn < W && yn < H ? src[yn * W + xn] : 0;
        }
    }
}

/* ---- blur ---- */

int fs_blur_radius(double sigma) {
    if (sigma > FS_BLUR_MAX_SIGMA) sigma = FS_BLUR_MAX_SIGMA;
    int r = (int)(3.0 * sigma + 0.5);
    return r > FS_BLUR_MAX_RADIUS ? FS_BLUR_MAX_RADIUS : r;
}

static inline long clampi(long i, long n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

void fs_blur(float *img, size_t h, size_t w, double sigma, float *tmp) {
    if (!(sigma >= 0.05)) return;
    const int R = fs_blur_radius(sigma), T = 2 * R + 1;
    float k[2 * FS_BLUR_MAX_RADIUS + 1];
    double sum = 0;
    for (int i = -R; i <= R; i++) sum += k[i + R] = (float)exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i < T; i++) k[i] = (float)(k[i] / sum);
    const long W = (long)w, Hh = (long)h;
    /* Every output is k[0] x[0] + k[1] x[1] + ... in tap order, whichever
     * loop computes it. */
    /* rows: img -> tmp; the interior four at a time, the edges with
     * replicated pixels */
    for (long r = 0; r < Hh; r++) {
        const float *in = img + r * W;
        float *out = tmp + r * W;
        long lo = R, hi = W - R; /* interior [lo, hi) */
        if (hi < lo) lo = hi = 0;
        long c = lo;
        for (; c + 4 <= hi; c += 4) {
            const float *s = in + c - R;
            v4f a = splat(k[0]) * load4(s);
            for (int t = 1; t < T; t++) a += splat(k[t]) * load4(s + t);
            store4(out + c, a);
        }
        for (; c < hi; c++) {
            const float *s = in + c - R;
            float a = k[0] * s[0];
            for (int t = 1; t < T; t++) a += k[t] * s[t];
            out[c] = a;
        }
        for (c = 0; c < W; c++) {
            if (c == lo && hi > lo) { c = hi - 1; continue; }
            float a = k[0] * in[clampi(c - R, W)];
            for (int t = 1; t < T; t++) a += k[t] * in[clampi(c + t - R, W)];
            out[c] = a;
        }
    }
    /* columns: tmp -> img, one output row as a weighted sum of T rows */
    const float *rows[2 * FS_BLUR_MAX_RADIUS + 1];
    for (long r = 0; r < Hh; r++) {
        for (int t = 0; t < T; t++) rows[t] = tmp + clampi(r + t - R, Hh) * W;
        float *out = img + r * W;
        long c = 0;
        for (; c + 4 <= W; c += 4) {
            v4f a = splat(k[0]) * load4(rows[0] + c);
            for (int t = 1; t < T; t++) a += splat(k[t]) * load4(rows[t] + c);
            store4(out + c, a);
        }
        for (; c < W; c++) {
            float a = k[0] * rows[0][c];
            for (int t = 1; t < T; t++) a += k[t] * rows[t][c];
            out[c] = a;
        }
    }
}

/* ---- intensities and noise ---- */

#define LUT_N 4096

static double log_tab[LUT_N + 1]; /* ln(i / LUT_N), i >= 1 */
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) {
    for (int i = 1; i <= LUT_N; i++) log_tab[i] = log((double)i / LUT_N);
}

/* 32 bits of noise for counter c: lowbias32 (a 32-bit multiply-xorshift
 * finaliser) of the base word xor c * golden (a bijection of c). */
static inline uint32_t noise_bits(uint32_t base, uint32_t c) {
    uint32_t z = base ^ (c * 0x9e3779b9u);
    z ^= z >> 16;
    z *= 0x7feb352du;
    z ^= z >> 15;
    z *= 0x846ca68bu;
    z ^= z >> 16;
    return z;
}

/* The same for four counters, given c * golden (kept by the caller as a
 * running sum: SSE2 has no 32-bit multiply to spare). */
static inline v4u noise_bits4(uint32_t base, v4u cg) {
    v4u z = (v4u){base, base, base, base} ^ cg;
    z ^= z >> 16;
    z *= 0x7feb352du;
    z ^= z >> 15;
    z *= 0x846ca68bu;
    z ^= z >> 16;
    return z;
}

/* The fused pass, scalar and four-wide (the same operations per element);
 * the flags are constant per call, so each combination compiles to its own
 * branch-free loops. */
static inline __attribute__((always_inline)) void photometric(float *x, size_t n, int lin, int gam, int noi, float c,
                                                              float off, const float *lut, float scale, uint32_t base,
                                                              uint32_t c0) {
    size_t i = 0;
    const uint32_t gold = 0x9e3779b9u;
    v4u cg = ((v4u){c0, c0 + 1, c0 + 2, c0 + 3}) * gold;
    for (; i + 4 <= n; i += 4) {
        v4f v = load4(x + i);
        if (lin) v = clamp01_4(splat(c) * v + splat(off));
        if (gam) {
            if (!lin) v = clamp01_4(v); /* already in [0, 1] after the linear step */
            const v4f f = v * splat((float)LUT_N);
            const v4i j = __builtin_convertvector(f, v4i);
            const v4f fr = f - __builtin_convertvector(j, v4f);
            const v4f l0 = {lut[j[0]], lut[j[1]], lut[j[2]], lut[j[3]]};
            const v4f l1 = {lut[j[0] + 1], lut[j[1] + 1], lut[j[2] + 1], lut[j[3] + 1]};
            v = l0 + fr * (l1 - l0);
        }
        if (noi) {
            const v4u z = noise_bits4(base, cg);
            cg += 4 * gold;
            const v4u sum = (z & 0xff) + ((z >> 8) & 0xff) + ((z >> 16) & 0xff) + (z >> 24);
            v = clamp01_4(v + splat(scale) * (__builtin_convertvector((v4i)sum, v4f) - splat(510.0f)));
        }
        store4(x + i, v);
    }
    for (; i < n; i++) {
        float v = x[i];
        if (lin) v = clamp01(c * v + off);
        if (gam) {
            if (!lin) v = clamp01(v);
            const float f = v * (float)LUT_N;
            const int j = (int)f;
            const float fr = f - (float)j;
            v = lut[j] + fr * (lut[j + 1] - lut[j]);
        }
        if (noi) {
            const uint32_t z = noise_bits(base, c0 + (uint32_t)i);
            const uint32_t sum = (z & 0xff) + ((z >> 8) & 0xff) + ((z >> 16) & 0xff) + (z >> 24);
            v = clamp01(v + scale * ((float)(int32_t)sum - 510.0f));
        }
        x[i] = v;
    }
}

void fs_intensity_noise(float *x, size_t n, double contrast, double pivot, double brightness, double gamma,
                        double sigma, uint64_t key, uint64_t stream, uint64_t counter0) {
    const int lin = contrast != 1 || brightness != 0, gam = gamma != 1, noi = sigma != 0;
    const float c = (float)contrast, off = (float)(pivot - contrast * pivot + brightness);
    float lut[LUT_N + 2];
    if (gam) {
        /* x^gamma as exp(gamma ln x) with the logarithms tabulated once:
         * the table is rebuilt per call, and exp costs a third of pow */
        pthread_once(&log_once, log_init);
        lut[0] = 0;
        for (int i = 1; i <= LUT_N; i++) lut[i] = (float)exp(gamma * log_tab[i]);
        lut[LUT_N + 1] = lut[LUT_N];
    }
    /* four uniform bytes: mean 4 * 127.5, variance 4 (256^2 - 1) / 12 */
    const float scale = (float)(sigma / sqrt(4.0 * (256.0 * 256.0 - 1.0) / 12.0));
    /* counters run in blocks of 2^32 with one base word each */
    for (size_t done = 0; done < n;) {
        const uint64_t ctr = counter0 + done;
        const uint64_t room = ((uint64_t)1 << 32) - (ctr & 0xffffffffu);
        const size_t m = n - done < room ? n - done : (size_t)room;
        const uint32_t base = noi ? (uint32_t)fs_hash64(key, stream, ctr >> 32) : 0;
        float *xx = x + done;
        const uint32_t c0 = (uint32_t)ctr;
        switch (lin | gam << 1 | noi << 2) {
        case 0: break;
        case 1: photometric(xx, m, 1, 0, 0, c, off, lut, scale, base, c0); break;
        case 2: photometric(xx, m, 0, 1, 0, c, off, lut, scale, base, c0); break;
        case 3: photometric(xx, m, 1, 1, 0, c, off, lut, scale, base, c0); break;
        case 4: photometric(xx, m, 0, 0, 1, c, off, lut, scale, base, c0); break;
        case 5: photometric(xx, m, 1, 0, 1, c, off, lut, scale, base, c0); break;
        case 6: photometric(xx, m, 0, 1, 1, c, off, lut, scale, base, c0); break;
        default: photometric(xx, m, 1, 1, 1, c, off, lut, scale, base, c0); break;
        }
        done += m;
    }
}

void fs_intensity(float *x, size_t n, double contrast, double pivot, double brightness, double gamma) {
    fs_intensity_noise(x, n, contrast, pivot, brightness, gamma, 0, 0, 0, 0);
}

void fs_noise(float *x, size_t n, double sigma, uint64_t key, uint64_t stream, uint64_t counter0) {
    fs_intensity_noise(x, n, 1, 0, 0, 1, sigma, key, stream, counter0);
}

/* ---- distance transform ---- */

/* Meijster's separator: the first column at which the parabola of column
 * u lies below that of column i < u (floor division). */
static inline int32_t edt_sep(int32_t i, int32_t u, const int32_t *f) {
    const int32_t n = u * u - i * i + f[u] - f[i], d = 2 * (u - i);
    return n >= 0 ? n / d : -((-n + d - 1) / d);
}

/* One row: d[x] = min over i of (x - i)^2 + f[i]; s, t scratch of n. */
static void edt_row_envelope(const int32_t *f, int32_t *d, int32_t n, int32_t *s, int32_t *t) {
    int32_t q = 0;
    s[0] = 0;
    t[0] = 0;
    for (int32_t u = 1; u < n; u++) {
        while (q >= 0) {
            const int32_t x = t[q], a = x - s[q], b = x - u;
            if (a * a + f[s[q]] <= b * b + f[u]) break;
            q--;
        }
        if (q < 0) {
            q = 0;
            s[0] = u;
        } else {
            const int32_t w = 1 + edt_sep(s[q], u, f);
            if (w < n) {
                q++;
                s[q] = u;
                t[q] = w;
            }
        }
    }
    for (int32_t u = n - 1; u >= 0; u--) {
        const int32_t a = u - s[q];
        d[u] = a * a + f[s[q]];
        if (u == t[q]) q--;
    }
}

/* The column pass: d[r, c] = distance down or up column c to its nearest
 * 0 of the mask. A column without a 0 gets distances of at least h + w:
 * larger than any true one, so the envelope never picks it while some
 * column has a 0 (and the squares stay below 2^31 for sides up to 8192).
 * Returns whether the mask has a 0 at all. */
static int edt_columns(const uint8_t *mask, size_t h, size_t w, size_t ms, int32_t *d) {
    const int32_t far = (int32_t)(h + w);
    const v4i one = {1, 1, 1, 1};
    int any = 0;
    for (size_t r = 0; r < h; r++) {
        const uint8_t *m = mask + r * ms;
        int32_t *cur = d + r * w;
        const int32_t *prev = r ? cur - w : NULL;
        size_t c = 0;
        v4i seen = {0, 0, 0, 0};
        for (; c + 4 <= w; c += 4) {
            const v4i in = (v4i){m[c], m[c + 1], m[c + 2], m[c + 3]} != 0; /* -1 inside */
            v4i up = {far, far, far, far};
            if (prev) {
                __builtin_memcpy(&up, prev + c, sizeof up);
                up += one;
            }
            seen |= ~in;
            const v4i v = up & in;
            __builtin_memcpy(cur + c, &v, sizeof v);
        }
        any |= seen[0] | seen[1] | seen[2] | seen[3];
        for (; c < w; c++) {
            any |= !m[c];
            cur[c] = m[c] ? (prev ? prev[c] + 1 : far) : 0;
        }
    }
    if (!any) return 0;
    for (size_t r = h - 1; r-- > 0;) {
        int32_t *cur = d + r * w;
        const int32_t *next = cur + w;
        size_t c = 0;
        for (; c + 4 <= w; c += 4) {
            v4i a, b;
            __builtin_memcpy(&a, cur + c, sizeof a);
            __builtin_memcpy(&b, next + c, sizeof b);
            b += one;
            const v4i lt = a < b;
            a = (a & lt) | (b & ~lt);
            __builtin_memcpy(cur + c, &a, sizeof a);
        }
        for (; c < w; c++)
            if (next[c] + 1 < cur[c]) cur[c] = next[c] + 1;
    }
    return 1;
}

/* Row r of the transform in place, from its column distances. */
static void edt_row(int32_t *row, size_t w, int32_t *scratch) {
    int32_t *f = scratch, *s = scratch + w, *t = scratch + 2 * w;
    for (size_t c = 0; c < w; c++) f[c] = row[c] * row[c];
    edt_row_envelope(f, row, (int32_t)w, s, t);
}

void fs_edt2_sq_mask(const uint8_t *mask, size_t h, size_t w, size_t ms, int32_t *d, int32_t *scratch) {
    if (!edt_columns(mask, h, w, ms, d)) {
        for (size_t i = 0; i < h * w; i++) d[i] = FS_EDT_NONE;
        return;
    }
    for (size_t r = 0; r < h; r++) edt_row(d + r * w, w, scratch);
}

size_t fs_edt2_argmax_mask(const uint8_t *mask, size_t h, size_t w, size_t ms, int32_t *d, int32_t *scratch) {
    if (!edt_columns(mask, h, w, ms, d)) return 0;
    /* A pixel is no farther from the nearest 0 than from the nearest 0 in
     * its column or in its row: ub[r] bounds row r's largest value, and
     * rows that cannot beat the best found so far are never transformed.
     * The most promising row goes first. */
    int32_t *ub = scratch + 3 * w;
    size_t top = 0;
    for (size_t r = 0; r < h; r++) {
        const uint8_t *m = mask + r * ms;
        const int32_t *g = d + r * w;
        int32_t *hd = scratch; /* distance along the row, left then right */
        int32_t run = (int32_t)(h + w), best = 0;
        for (size_t c = 0; c < w; c++) hd[c] = run = m[c] ? run + 1 : 0;
        run = (int32_t)(h + w);
        for (size_t c = w; c-- > 0;) {
            run = m[c] ? run + 1 : 0;
            int32_t v = hd[c] < run ? hd[c] : run;
            if (g[c] < v) v = g[c];
            if (v > best) best = v;
        }
        ub[r] = best;
        if (best > ub[top]) top = r;
    }
    size_t at = top * w;
    int32_t best = -1;
    for (size_t k = 0; k <= h; k++) {
        /* k == 0: the top row; then every other row in order */
        const size_t r = k == 0 ? top : k - 1;
        if (k && r == top) continue;
        if ((int64_t)ub[r] * ub[r] < best || ((int64_t)ub[r] * ub[r] == best && r * w > at)) continue;
        int32_t *row = d + r * w;
        edt_row(row, w, scratch);
        for (size_t c = 0; c < w; c++)
            if (row[c] > best || (row[c] == best && r * w + c < at)) best = row[c], at = r * w + c;
    }
    return at;
}
