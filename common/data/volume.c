/* Volume geometry: axis codes of an affine and reorientation by permuting
 * and flipping voxel axes (no resampling, so values are copied bit for bit). */
#include "data/volume.h"

#include <math.h>
#include <string.h>

#include "core/error.h"

void fs_volume_free(fs_volume *v) {
    if (!v) return;
    fs_tensor_free(&v->data);
    memset(v, 0, sizeof *v);
}

static double det3(const double m[3][3]) {
    return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
           m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/* Replaces m by its orthogonal polar factor U V^T (what nibabel gets from the
 * SVD) with Newton's iteration X <- (X + X^-T) / 2. */
static int polar3(double m[3][3]) {
    for (int it = 0; it < 200; it++) {
        double d = det3(m);
        if (!isfinite(d) || fabs(d) < 1e-12) return FS_ERR;
        /* X^-T = cofactor(X) / det */
        double cof[3][3];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                int r1 = (r + 1) % 3, r2 = (r + 2) % 3, c1 = (c + 1) % 3, c2 = (c + 2) % 3;
                cof[r][c] = m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1];
            }
        double change = 0;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                double v = 0.5 * (m[r][c] + cof[r][c] / d);
                change += fabs(v - m[r][c]);
                m[r][c] = v;
            }
        if (change < 1e-15) break;
    }
    return FS_OK;
}

int fs_volume_axcodes(const double affine[4][4], char codes[3]) {
    static const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
    double R[3][3];
    for (int c = 0; c < 3; c++) {
        double n = 0;
        for (int r = 0; r < 3; r++) n += affine[r][c] * affine[r][c];
        n = sqrt(n);
        if (!isfinite(n)) return fs_error("cannot orient: non-finite affine");
        if (n == 0) return fs_error("cannot orient: voxel axis %d has a zero direction in the affine", c);
        for (int r = 0; r < 3; r++) R[r][c] = affine[r][c] / n;
    }
    if (fabs(det3(R)) < 1e-6 || polar3(R))
        return fs_error("cannot orient: singular affine (voxel axes are not independent)");
    /* Axis by axis, in voxel order as nibabel does: take the world axis the
     * column points along most, then remove that world axis from play. */
    int used[3] = {0, 0, 0};
    for (int c = 0; c < 3; c++) {
        int best = -1;
        for (int r = 0; r < 3; r++)
            if (!used[r] && (best < 0 || fabs(R[r][c]) > fabs(R[best][c]))) best = r;
        used[best] = 1;
        codes[c] = R[best][c] >= 0 ? pos[best] : neg[best];
    }
    return FS_OK;
}

/* World axis (0 = L/R, 1 = P/A, 2 = I/S) of a code letter, sign in *dir. */
static int code_axis(char ch, int *dir) {
    switch (ch) {
    case 'R': *dir = 1; return 0;
    case 'L': *dir = -1; return 0;
    case 'A': *dir = 1; return 1;
    case 'P': *dir = -1; return 1;
    case 'S': *dir = 1; return 2;
    case 'I': *dir = -1; return 2;
    default: return -1;
    }
}

int fs_volume_reorient(fs_volume *v, const char *target) {
    if (!target || strlen(target) != 3)
        return fs_error("invalid orientation '%s': want three letters, one of each L/R, P/A, I/S", target ? target : "(null)");
    int tworld[3], tdir[3], seen[3] = {0, 0, 0};
    for (int t = 0; t < 3; t++) {
        tworld[t] = code_axis(target[t], &tdir[t]);
        if (tworld[t] < 0 || seen[tworld[t]]++)
            return fs_error("invalid orientation '%s': want three letters, one of each L/R, P/A, I/S", target);
    }
    fs_tensor *d = &v->data;
    if (d->ndim != 3) return fs_error("cannot reorient: volume data must be 3D [nk, nj, ni], not %dD", d->ndim);
    char codes[3];
    if (fs_volume_axcodes(v->affine, codes)) return FS_ERR;

    /* New axis t takes old axis perm[t], reversed when flip[t]. */
    int perm[3], flip[3];
    for (int t = 0; t < 3; t++) {
        for (int s = 0; s < 3; s++) {
            int dir = 0, w = code_axis(codes[s], &dir);
            if (w == tworld[t]) { perm[t] = s; flip[t] = dir != tdir[t]; }
        }
    }
    if (perm[0] == 0 && perm[1] == 1 && perm[2] == 2 && !flip[0] && !flip[1] && !flip[2]) return FS_OK;

    /* Old sizes and strides (in elements) along voxel axes i, j, k. */
    size_t n[3] = {d->shape[2], d->shape[1], d->shape[0]};
    ptrdiff_t stride[3] = {1, (ptrdiff_t)n[0], (ptrdiff_t)(n[0] * n[1])};
    size_t nn[3];
    ptrdiff_t step[3], start = 0;
    for (int t = 0; t < 3; t++) {
        int s = perm[t];
        nn[t] = n[s];
        step[t] = flip[t] ? -stride[s] : stride[s];
        if (flip[t] && n[s] > 0) start += (ptrdiff_t)(n[s] - 1) * stride[s];
    }

    fs_tensor out;
    size_t shape[3] = {nn[2], nn[1], nn[0]};
    if (fs_tensor_alloc(&out, d->dtype, 3, shape)) return fs_error_wrap("cannot reorient");
    size_t es = fs_dtype_size(d->dtype);
    const unsigned char *src = d->data;
    unsigned char *dst = out.data;
    /* Walk the new grid in storage order; the source pointer follows the
     * permuted, possibly reversed strides. Element size picks the copy. */
    for (size_t k = 0; k < nn[2]; k++)
        for (size_t j = 0; j < nn[1]; j++) {
            ptrdiff_t o = start + (ptrdiff_t)k * step[2] + (ptrdiff_t)j * step[1];
            unsigned char *row = dst + ((k * nn[1] + j) * nn[0]) * es;
            switch (es) {
            case 1:
                for (size_t i = 0; i < nn[0]; i++) row[i] = src[o + (ptrdiff_t)i * step[0]];
                break;
            case 2:
                for (size_t i = 0; i < nn[0]; i++) memcpy(row + 2 * i, src + 2 * (o + (ptrdiff_t)i * step[0]), 2);
                break;
            case 4:
                for (size_t i = 0; i < nn[0]; i++) memcpy(row + 4 * i, src + 4 * (o + (ptrdiff_t)i * step[0]), 4);
                break;
            case 8:
                for (size_t i = 0; i < nn[0]; i++) memcpy(row + 8 * i, src + 8 * (o + (ptrdiff_t)i * step[0]), 8);
                break;
            default:
                for (size_t i = 0; i < nn[0]; i++)
                    memcpy(row + es * i, src + es * (size_t)(o + (ptrdiff_t)i * step[0]), es);
            }
        }

    /* Old index along s = flip ? (n_s - 1 - u_t) : u_t, so world position is
     * kept with column t = +-old column s and the offset moved to the far end
     * of every flipped axis. */
    double A[4][4];
    memcpy(A, v->affine, sizeof A);
    double sp[3];
    for (int t = 0; t < 3; t++) {
        int s = perm[t];
        sp[t] = v->spacing[s];
        for (int r = 0; r < 3; r++) A[r][t] = flip[t] ? -v->affine[r][s] : v->affine[r][s];
        if (flip[t])
            for (int r = 0; r < 3; r++) A[r][3] += v->affine[r][s] * (double)(n[s] - 1);
    }
    fs_tensor_free(d);
    *d = out;
    memcpy(v->affine, A, sizeof A);
    memcpy(v->spacing, sp, sizeof sp);
    return FS_OK;
}

int fs_volume_canonical(fs_volume *v) { return fs_volume_reorient(v, FS_CANONICAL); }
