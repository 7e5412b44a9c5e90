/* Host memory, the tensor glue between layers and the optimiser step, as
 * plain loops. Both host backends (ref and cpu) use these: the loops are
 * memory-bound, and these are the definitions the CUDA versions are
 * compared against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/ref/ref.h"

int fs_ref_available(void) { return 1; }

void *fs_ref_alloc(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) fs_error("out of memory (%zu MiB)", bytes >> 20);
    return p;
}

void fs_ref_free(void *p) { free(p); }

void fs_ref_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

void fs_ref_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

void fs_ref_add(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void fs_ref_scale(float *x, float f, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= f;
}

void fs_ref_add_rows(float *x, const float *row, size_t M, size_t N) {
    for (size_t m = 0; m < M; m++)
        for (size_t j = 0; j < N; j++) x[m * N + j] += row[j];
}

void fs_ref_sum_rows(float *drow, const float *dx, size_t M, size_t N) {
    /* rows in order, one column at a time: the order a GPU thread per column uses */
    for (size_t j = 0; j < N; j++) {
        float s = drow[j];
        for (size_t m = 0; m < M; m++) s += dx[m * N + j];
        drow[j] = s;
    }
}

void fs_ref_add_cols(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N) {
    for (size_t m = 0; m < M; m++)
        for (size_t j = 0; j < N; j++) out[m * ldo + off + j] += f * in[m * N + j];
}

void fs_ref_take_cols(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N) {
    for (size_t m = 0; m < M; m++)
        for (size_t j = 0; j < N; j++) out[m * N + j] = f * in[m * ldi + off + j];
}

void fs_ref_window_partition(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C) {
    size_t nw = (g + ws - 1) / ws;
    for (size_t b = 0; b < B; b++)
        for (size_t wy = 0; wy < nw; wy++)
            for (size_t wx = 0; wx < nw; wx++)
                for (size_t iy = 0; iy < ws; iy++)
                    for (size_t ix = 0; ix < ws; ix++) {
                        size_t y = wy * ws + iy, xx = wx * ws + ix;
                        float *dst = win + ((((b * nw + wy) * nw + wx) * ws + iy) * ws + ix) * C;
                        if (y < g && xx < g) memcpy(dst, x + ((b * g + y) * g + xx) * C, C * sizeof *dst);
                        else memset(dst, 0, C * sizeof *dst);
                    }
}

void fs_ref_window_unpartition(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc) {
    size_t nw = (g + ws - 1) / ws;
    for (size_t b = 0; b < B; b++)
        for (size_t y = 0; y < g; y++)
            for (size_t xx = 0; xx < g; xx++) {
                size_t wy = y / ws, wx = xx / ws, iy = y % ws, ix = xx % ws;
                const float *src = win + ((((b * nw + wy) * nw + wx) * ws + iy) * ws + ix) * C;
                float *dst = x + ((b * g + y) * g + xx) * C;
                if (acc)
                    for (size_t c = 0; c < C; c++) dst[c] += src[c];
                else
                    memcpy(dst, src, C * sizeof *dst);
            }
}

void fs_ref_crop(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo) {
    (void)h;
    for (size_t y = 0; y < ho; y++) memmove(out + y * wo, x + y * w, wo * sizeof *out);
}

void fs_ref_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t) {
    double lr = hyper[0], b1 = hyper[1], b2 = hyper[2], eps = hyper[3], wd = hyper[4];
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    double step = lr / bc1, sbc2 = sqrt(bc2), decay = 1.0 - lr * wd;
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        double pi = p[i] * decay;
        p[i] = (float)(pi - step * mi / (sqrt(vi) / sbc2 + eps));
    }
}

double fs_ref_sumsq(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}
