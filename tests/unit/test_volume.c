/* data/volume: axis codes (checked against nibabel's aff2axcodes) and
 * reorientation that keeps every voxel at its world position. */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "data/volume.h"
#include "io/nifti.h"

static char scratch[512];

static const char *spath(const char *name) {
    static char buf[2][1024];
    static int slot;
    slot = (slot + 1) % 2;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", scratch, name);
    return buf[slot];
}

static const char *shared_path(const char *rel) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/data/%s", test_shared_dir(), rel);
    return buf;
}

static void set_affine(double A[4][4], const double m[3][4]) {
    memset(A, 0, sizeof(double[4][4]));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) A[r][c] = m[r][c];
    A[3][3] = 1;
}

static void world(const double A[4][4], double i, double j, double k, double out[3]) {
    for (int r = 0; r < 3; r++) out[r] = A[r][0] * i + A[r][1] * j + A[r][2] * k + A[r][3];
}

static void axcodes_basic(void) {
    double A[4][4];
    char c[3];
    double ras[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    set_affine(A, ras);
    CHECK(fs_volume_axcodes(A, c) == FS_OK && !memcmp(c, "RAS", 3));
    double lps[3][4] = {{-1, 0, 0, 5}, {0, -1, 0, 239}, {0, 0, 1, 0}};
    set_affine(A, lps);
    CHECK(fs_volume_axcodes(A, c) == FS_OK && !memcmp(c, "LPS", 3));
    double psr[3][4] = {{0, 0, 2, 0}, {-1, 0, 0, 0}, {0, 3, 0, 0}};
    set_affine(A, psr);
    CHECK(fs_volume_axcodes(A, c) == FS_OK && !memcmp(c, "PSR", 3));
    /* 30 degrees about z with very anisotropic voxels: still RAS */
    double t = M_PI / 6;
    double rot[3][4] = {{cos(t) * 0.5, -sin(t) * 7, 0, 0}, {sin(t) * 0.5, cos(t) * 7, 0, 0}, {0, 0, 3, 0}};
    set_affine(A, rot);
    CHECK(fs_volume_axcodes(A, c) == FS_OK && !memcmp(c, "RAS", 3));
    /* 60 degrees: i now points mostly anterior, j mostly left */
    t = M_PI / 3;
    double rot60[3][4] = {{cos(t), -sin(t), 0, 0}, {sin(t), cos(t), 0, 0}, {0, 0, 1, 0}};
    set_affine(A, rot60);
    CHECK(fs_volume_axcodes(A, c) == FS_OK);
    CHECKF(!memcmp(c, "ALS", 3), "%.3s", c);
}

static void axcodes_errors(void) {
    double A[4][4];
    char c[3];
    double sing[3][4] = {{1, 1, 0, 0}, {0, 0, 0, 0}, {0, 0, 1, 0}}; /* i and j parallel */
    set_affine(A, sing);
    CHECK(fs_volume_axcodes(A, c) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "singular"), "%s", fs_error_msg());
    double zero[3][4] = {{1, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
    set_affine(A, zero);
    CHECK(fs_volume_axcodes(A, c) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "zero direction"), "%s", fs_error_msg());
    double nan_[3][4] = {{NAN, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    set_affine(A, nan_);
    CHECK(fs_volume_axcodes(A, c) == FS_ERR);
}

/* Random general (non-orthogonal, sheared, oblique) affines against
 * nibabel.orientations.aff2axcodes. */
static void axcodes_match_nibabel(void) {
    if (system("/usr/bin/python3 -c 'import nibabel' >/dev/null 2>&1") != 0)
        SKIP("python3-nibabel is not importable by /usr/bin/python3");
    enum { N = 400 };
    static double aff[N][4][4];
    fs_rng rng;
    fs_rng_init(&rng, 2024, 1);
    FILE *f = fopen(spath("affines.txt"), "w");
    CHECK(f != NULL);
    for (int n = 0; n < N; n++) {
        memset(aff[n], 0, sizeof aff[n]);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) aff[n][r][c] = fs_rng_range(&rng, -1, 1) * (c == 3 ? 100 : 1);
        if (n % 2) /* half of them close to a signed permutation, as scanners write */
            for (int c = 0; c < 3; c++) {
                int r = (int)((c + n / 2) % 3);
                aff[n][r][c] += (fs_rng_uniform(&rng) < 0.5 ? -4 : 4);
            }
        for (int c = 0; c < 3; c++) {
            double s = fs_rng_range(&rng, 0.3, 5);
            for (int r = 0; r < 3; r++) aff[n][r][c] *= s;
        }
        aff[n][3][3] = 1;
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++) fprintf(f, "%.17g%c", aff[n][r][c], c == 3 ? '\n' : ' ');
    }
    fclose(f);
    char cmd[2600];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np, nibabel as nib, sys\n"
             "a = np.loadtxt('%s').reshape(-1, 4, 4)\n"
             "open('%s', 'w').write(''.join(''.join(str(x) for x in nib.aff2axcodes(m)) + '\\n' for m in a))\"",
             spath("affines.txt"), spath("codes.txt"));
    CHECK(system(cmd) == 0);
    f = fopen(spath("codes.txt"), "r");
    CHECK(f != NULL);
    char want[16];
    int n = 0, bad = 0;
    while (n < N && fscanf(f, "%15s", want) == 1) {
        char c[3];
        if (fs_volume_axcodes(aff[n], c) != FS_OK || memcmp(c, want, 3)) {
            if (bad++ < 3) printf("  affine %d: ours %.3s, nibabel %s\n", n, c, want);
        }
        n++;
    }
    fclose(f);
    CHECK(n == N);
    CHECKF(bad == 0, "%d of %d affines disagree with nibabel", bad, N);
}

/* A 4 x 3 x 5 (i, j, k) volume whose values are their own linear index, with
 * an RAS affine that is slightly oblique and anisotropic. */
static void make_indexed(fs_volume *v, fs_dtype dt) {
    size_t shape[3] = {5, 3, 4};
    fs_tensor_alloc(&v->data, dt, 3, shape);
    for (size_t i = 0; i < 60; i++) fs_tensor_set(&v->data, i, (double)i);
    v->spacing[0] = 0.5;
    v->spacing[1] = 1.5;
    v->spacing[2] = 4;
    double m[3][4] = {{0.5, 0.1, 0, -10}, {0, 1.5, -0.3, 20}, {0.02, 0, 4, 30}};
    set_affine(v->affine, m);
}

/* Every voxel of w (reoriented from v) holds the value of the voxel of v at
 * the same world position. */
static int same_world(const fs_volume *v, const fs_volume *w) {
    size_t ni = w->data.shape[2], nj = w->data.shape[1], nk = w->data.shape[0];
    size_t oi = v->data.shape[2], oj = v->data.shape[1];
    for (size_t k = 0; k < nk; k++)
        for (size_t j = 0; j < nj; j++)
            for (size_t i = 0; i < ni; i++) {
                size_t idx = (size_t)fs_tensor_get(&w->data, (k * nj + j) * ni + i);
                double a[3], b[3];
                world(w->affine, (double)i, (double)j, (double)k, a);
                world(v->affine, (double)(idx % oi), (double)(idx / oi % oj), (double)(idx / (oi * oj)), b);
                for (int r = 0; r < 3; r++)
                    if (fabs(a[r] - b[r]) > 1e-9) return 0;
            }
    return 1;
}

static void reorient_keeps_world_positions(void) {
    /* every one of the 48 orientations, the named ones first */
    char targets[48][4] = {"LPS", "LAS", "SRA", "ASL"};
    int nt = 4;
    const char *pairs[3] = {"LR", "PA", "IS"};
    int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int p = 0; p < 6; p++)
        for (int s = 0; s < 8; s++) {
            char t[4];
            for (int a = 0; a < 3; a++) t[a] = pairs[perms[p][a]][(s >> a) & 1];
            t[3] = 0;
            int dup = 0;
            for (int q = 0; q < nt; q++) dup |= !strcmp(targets[q], t);
            if (!dup) memcpy(targets[nt++], t, 4);
        }
    CHECK(nt == 48);
    for (int t = 0; t < nt; t++) {
        fs_volume v, w;
        make_indexed(&v, FS_F32);
        make_indexed(&w, FS_F32);
        CHECKF(fs_volume_reorient(&w, targets[t]) == FS_OK, "%s: %s", targets[t], fs_error_msg());
        char c[3];
        CHECK(fs_volume_axcodes(w.affine, c) == FS_OK);
        CHECKF(!memcmp(c, targets[t], 3), "target %s gave %.3s", targets[t], c);
        CHECK(fs_tensor_numel(&w.data) == 60);
        /* spacing follows the axes: the I/S axis is the 4 mm one */
        for (int a = 0; a < 3; a++) {
            double want = strchr("LR", targets[t][a]) ? 0.5 : strchr("PA", targets[t][a]) ? 1.5 : 4;
            CHECKF(w.spacing[a] == want, "%s axis %d spacing %g", targets[t], a, w.spacing[a]);
            size_t n = strchr("LR", targets[t][a]) ? 4 : strchr("PA", targets[t][a]) ? 3 : 5;
            CHECK(w.data.shape[2 - a] == n);
        }
        CHECKF(same_world(&v, &w), "%s moved voxels", targets[t]);
        /* and back again: identical bytes and geometry */
        CHECK(fs_volume_reorient(&w, "RAS") == FS_OK);
        CHECK(fs_shape_equal(&v.data, &w.data) && !memcmp(v.data.data, w.data.data, 240));
        for (int r = 0; r < 4; r++)
            for (int col = 0; col < 4; col++) CHECK_NEAR(w.affine[r][col], v.affine[r][col], 1e-12);
        for (int a = 0; a < 3; a++) CHECK(w.spacing[a] == v.spacing[a]);
        fs_volume_free(&v);
        fs_volume_free(&w);
    }
}

static void reorient_explicit_lps(void) {
    /* RAS -> LPS flips i and j: new (i, j, k) = old (ni-1-i, nj-1-j, k) */
    fs_volume v, w;
    make_indexed(&v, FS_I32);
    make_indexed(&w, FS_I32);
    CHECK(fs_volume_canonical(&w) == FS_OK);
    const int32_t *a = v.data.data, *b = w.data.data;
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 4; i++) CHECK(b[(k * 3 + j) * 4 + i] == a[(k * 3 + (2 - j)) * 4 + (3 - i)]);
    /* column 0 negated, offset moved by old column 0 * 3 and column 1 * 2 */
    CHECK_NEAR(w.affine[0][0], -0.5, 0);
    CHECK_NEAR(w.affine[1][1], -1.5, 0);
    CHECK_NEAR(w.affine[0][3], -10 + 0.5 * 3 + 0.1 * 2, 1e-12);
    CHECK_NEAR(w.affine[1][3], 20 + 1.5 * 2, 1e-12);
    CHECK_NEAR(w.affine[2][3], 30 + 0.02 * 3, 1e-12);
    CHECK(w.affine[3][0] == 0 && w.affine[3][3] == 1);
    fs_volume_free(&v);
    fs_volume_free(&w);
}

static void reorient_any_dtype(void) {
    fs_dtype dts[] = {FS_U8, FS_I16, FS_U32, FS_F64, FS_U64};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        fs_volume v, w;
        make_indexed(&v, dts[d]);
        make_indexed(&w, dts[d]);
        CHECK(fs_volume_reorient(&w, "SLA") == FS_OK);
        CHECK(w.data.dtype == dts[d]);
        CHECKF(same_world(&v, &w), "%s", fs_dtype_name(dts[d]));
        CHECK(fs_volume_reorient(&w, "RAS") == FS_OK);
        CHECK(!memcmp(v.data.data, w.data.data, fs_tensor_nbytes(&v.data)));
        fs_volume_free(&v);
        fs_volume_free(&w);
    }
}

static void reorient_noop_and_invalid(void) {
    fs_volume v;
    make_indexed(&v, FS_F32);
    void *before = v.data.data;
    CHECK(fs_volume_reorient(&v, "RAS") == FS_OK);
    CHECK(v.data.data == before); /* already there: nothing copied */
    const char *bad[] = {"LPX", "LLS", "LRS", "LP", "LPSS", "", "lps", "SPS"};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        CHECKF(fs_volume_reorient(&v, bad[b]) == FS_ERR, "'%s' accepted", bad[b]);
        CHECKF(strstr(fs_error_msg(), "invalid orientation"), "%s", fs_error_msg());
    }
    CHECK(fs_volume_reorient(&v, NULL) == FS_ERR);
    CHECK(v.data.data == before && v.affine[0][0] == 0.5); /* untouched */
    /* a degenerate affine cannot be oriented */
    for (int r = 0; r < 3; r++) v.affine[r][1] = 2 * v.affine[r][0];
    CHECK(fs_volume_canonical(&v) == FS_ERR);
    fs_volume_free(&v);
}

#define FLAIR "brats/BraTS15_pat0001/BraTS15_pat0001_flair.nii.gz"
#define SYN_IMG "synapse/RawData/Training/img/img0001.nii.gz"
#define SYN_LAB "synapse/RawData/Training/label/label0001.nii.gz"

static void real_volumes_canonical(void) {
    if (!fs_is_file(shared_path(FLAIR)) || !fs_is_file(shared_path(SYN_IMG)))
        SKIP("no shared data under %s", test_shared_dir());
    fs_volume v;
    CHECKF(fs_nifti_read(shared_path(FLAIR), &v) == FS_OK, "%s", fs_error_msg());
    void *before = v.data.data;
    CHECK(fs_volume_canonical(&v) == FS_OK);
    CHECK(v.data.data == before); /* BraTS is stored LPS already */
    CHECK(v.data.shape[0] == 155 && v.data.shape[1] == 240 && v.data.shape[2] == 240);
    fs_volume_free(&v);

    fs_volume s, c;
    CHECKF(fs_nifti_read(shared_path(SYN_IMG), &s) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_nifti_read(shared_path(SYN_IMG), &c) == FS_OK);
    CHECK(fs_volume_canonical(&c) == FS_OK);
    CHECK(c.data.shape[0] == 30 && c.data.shape[1] == 101 && c.data.shape[2] == 122);
    char codes[3];
    CHECK(fs_volume_axcodes(c.affine, codes) == FS_OK && !memcmp(codes, "LPS", 3));
    const float *a = s.data.data, *b = c.data.data;
    for (size_t k = 0; k < 30; k++)
        for (size_t j = 0; j < 101; j++)
            for (size_t i = 0; i < 122; i++)
                CHECK(b[(k * 101 + j) * 122 + i] == a[(k * 101 + (100 - j)) * 122 + (121 - i)]);
    double p[3], q[3];
    world(c.affine, 0, 0, 0, p);
    world(s.affine, 121, 100, 0, q);
    for (int r = 0; r < 3; r++) CHECK_NEAR(p[r], q[r], 1e-9);
    fs_volume_free(&s);
    fs_volume_free(&c);
}

/* A label volume rewritten by hand in another orientation (i <- old j,
 * j <- old i reversed) and saved as NIfTI canonicalises to exactly the
 * canonicalised original. */
static void real_label_hand_reoriented(void) {
    if (!fs_is_file(shared_path(SYN_LAB))) SKIP("no shared data under %s", test_shared_dir());
    fs_volume o;
    CHECKF(fs_nifti_read(shared_path(SYN_LAB), &o) == FS_OK, "%s", fs_error_msg());
    size_t ni = o.data.shape[2], nj = o.data.shape[1], nk = o.data.shape[0];
    fs_volume h;
    size_t shape[3] = {nk, ni, nj}; /* new i runs over old j, new j over old i */
    CHECK(fs_tensor_alloc(&h.data, FS_U8, 3, shape) == FS_OK);
    const float *src = o.data.data;
    uint8_t *dst = h.data.data;
    for (size_t k = 0; k < nk; k++)
        for (size_t jj = 0; jj < ni; jj++)
            for (size_t ii = 0; ii < nj; ii++)
                dst[(k * ni + jj) * nj + ii] = (uint8_t)src[(k * nj + ii) * ni + (ni - 1 - jj)];
    /* old (i, j, k) = (ni-1-jj, ii, k) */
    memcpy(h.affine, o.affine, sizeof h.affine);
    for (int r = 0; r < 3; r++) {
        h.affine[r][0] = o.affine[r][1];
        h.affine[r][1] = -o.affine[r][0];
        h.affine[r][3] = o.affine[r][3] + o.affine[r][0] * (double)(ni - 1);
    }
    h.spacing[0] = o.spacing[1];
    h.spacing[1] = o.spacing[0];
    h.spacing[2] = o.spacing[2];
    const char *p = spath("label_swapped.nii.gz");
    CHECKF(fs_nifti_write(p, &h) == FS_OK, "%s", fs_error_msg());
    fs_volume_free(&h);
    fs_volume r;
    CHECKF(fs_nifti_read(p, &r) == FS_OK, "%s", fs_error_msg());
    char c[3];
    CHECK(fs_volume_axcodes(r.affine, c) == FS_OK && !memcmp(c, "ALS", 3));
    CHECK(fs_volume_canonical(&r) == FS_OK);
    CHECK(fs_volume_canonical(&o) == FS_OK);
    CHECK(fs_shape_equal(&o.data, &r.data));
    CHECK(!memcmp(o.data.data, r.data.data, fs_tensor_nbytes(&o.data)));
    for (int row = 0; row < 4; row++)
        for (int col = 0; col < 4; col++) CHECK_NEAR(r.affine[row][col], o.affine[row][col], 1e-4);
    for (int a = 0; a < 3; a++) CHECK_NEAR(r.spacing[a], o.spacing[a], 1e-6);
    fs_volume_free(&o);
    fs_volume_free(&r);
}

int main(void) {
    snprintf(scratch, sizeof scratch, "%s", test_tmp_dir("volume"));
    RUN(axcodes_basic);
    RUN(axcodes_errors);
    RUN(axcodes_match_nibabel);
    RUN(reorient_keeps_world_positions);
    RUN(reorient_explicit_lps);
    RUN(reorient_any_dtype);
    RUN(reorient_noop_and_invalid);
    RUN(real_volumes_canonical);
    RUN(real_label_hand_reoriented);
    TEST_EXIT();
}
