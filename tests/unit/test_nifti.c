/* io/nifti: reading real scans, round trips, hand-built headers (byte order,
 * qform, NIfTI-2, scaling, extensions), a cross-check against nibabel, and
 * the errors bad files must produce. */
#include "test.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "data/volume.h"
#include "io/nifti.h"

static char scratch[512];

static const char *spath(const char *name) {
    static char buf[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", scratch, name);
    return buf[slot];
}

static const char *shared_path(const char *rel) {
    static char buf[2][1024];
    static int slot;
    slot = (slot + 1) % 2;
    snprintf(buf[slot], sizeof buf[slot], "%s/data/%s", test_shared_dir(), rel);
    return buf[slot];
}

#define FLAIR "brats/BraTS15_pat0001/BraTS15_pat0001_flair.nii.gz"
#define SEG "brats/BraTS15_pat0001/BraTS15_pat0001_seg.nii.gz"
#define SYN_IMG "synapse/RawData/Training/img/img0001.nii.gz"
#define SYN_LAB "synapse/RawData/Training/label/label0001.nii.gz"

/* ---- a raw header builder, independent of the library's writer ---------- */

typedef struct {
    int version, swap;
    int64_t dim[8];
    int datatype;
    double pixdim[8];
    double vox_offset; /* 0: right after the header and extension flag */
    double slope, inter;
    int qform_code, sform_code;
    double quatern[3], qoffset[3], srow[3][4];
    const char *magic; /* NULL: the standard single-file magic */
} raw_hdr;

static void raw_default(raw_hdr *r, int version, int datatype, int ni, int nj, int nk) {
    memset(r, 0, sizeof *r);
    r->version = version;
    r->datatype = datatype;
    r->dim[0] = 3;
    r->dim[1] = ni;
    r->dim[2] = nj;
    r->dim[3] = nk;
    for (int i = 4; i < 8; i++) r->dim[i] = 1;
    for (int i = 0; i < 8; i++) r->pixdim[i] = 1;
}

static void put(unsigned char *h, size_t off, const void *v, size_t n, int swap) {
    memcpy(h + off, v, n);
    if (swap)
        for (size_t i = 0; i < n / 2; i++) {
            unsigned char t = h[off + i];
            h[off + i] = h[off + n - 1 - i];
            h[off + n - 1 - i] = t;
        }
}
static void put16(unsigned char *h, size_t off, int v, int s) { int16_t x = (int16_t)v; put(h, off, &x, 2, s); }
static void put32(unsigned char *h, size_t off, int v, int s) { int32_t x = v; put(h, off, &x, 4, s); }
static void put64(unsigned char *h, size_t off, int64_t v, int s) { put(h, off, &v, 8, s); }
static void putf(unsigned char *h, size_t off, double v, int s) { float x = (float)v; put(h, off, &x, 4, s); }
static void putd(unsigned char *h, size_t off, double v, int s) { put(h, off, &v, 8, s); }

/* Writes header + extension flag + padding + data (native elements of elsize
 * bytes, swapped when r->swap); keep only `keep` bytes of voxel data when
 * keep != (size_t)-1. Gzipped when the name ends in .gz. */
static int write_raw(const char *path, const raw_hdr *r, const void *data, size_t elsize, size_t numel, size_t keep) {
    unsigned char h[1024];
    memset(h, 0, sizeof h);
    int s = r->swap;
    size_t hs = r->version == 1 ? 348 : 540;
    size_t off = r->vox_offset > 0 ? (size_t)r->vox_offset : hs + 4;
    if (r->version == 1) {
        put32(h, 0, 348, s);
        for (int i = 0; i < 8; i++) put16(h, 40 + 2 * i, (int)r->dim[i], s);
        put16(h, 70, r->datatype, s);
        put16(h, 72, (int)elsize * 8, s);
        for (int i = 0; i < 8; i++) putf(h, 76 + 4 * i, r->pixdim[i], s);
        putf(h, 108, r->vox_offset, s);
        putf(h, 112, r->slope, s);
        putf(h, 116, r->inter, s);
        put16(h, 252, r->qform_code, s);
        put16(h, 254, r->sform_code, s);
        for (int i = 0; i < 3; i++) putf(h, 256 + 4 * i, r->quatern[i], s);
        for (int i = 0; i < 3; i++) putf(h, 268 + 4 * i, r->qoffset[i], s);
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < 4; c++) putf(h, 280 + 16 * a + 4 * c, r->srow[a][c], s);
        memcpy(h + 344, r->magic ? r->magic : "n+1", 4);
    } else {
        put32(h, 0, 540, s);
        memcpy(h + 4, r->magic ? r->magic : "n+2\0\r\n\032\n", 8);
        put16(h, 12, r->datatype, s);
        put16(h, 14, (int)elsize * 8, s);
        for (int i = 0; i < 8; i++) put64(h, 16 + 8 * i, r->dim[i], s);
        for (int i = 0; i < 8; i++) putd(h, 104 + 8 * i, r->pixdim[i], s);
        put64(h, 168, (int64_t)off, s);
        putd(h, 176, r->slope, s);
        putd(h, 184, r->inter, s);
        put32(h, 344, r->qform_code, s);
        put32(h, 348, r->sform_code, s);
        for (int i = 0; i < 3; i++) putd(h, 352 + 8 * i, r->quatern[i], s);
        for (int i = 0; i < 3; i++) putd(h, 376 + 8 * i, r->qoffset[i], s);
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < 4; c++) putd(h, 400 + 32 * a + 8 * c, r->srow[a][c], s);
    }
    size_t nbytes = elsize * numel;
    unsigned char *buf = malloc(off + nbytes + 1);
    if (!buf) return -1;
    memset(buf, 0x5a, off); /* junk in any extension area: must be skipped */
    memcpy(buf, h, hs);
    memset(buf + hs, 0, 4);
    memcpy(buf + off, data, nbytes);
    if (s)
        for (size_t e = 0; e < numel; e++) put(buf + off, e * elsize, buf + off + e * elsize, elsize, 1);
    size_t total = off + (keep == (size_t)-1 ? nbytes : keep);
    size_t n = strlen(path);
    int rc = 0;
    if (n > 3 && !strcmp(path + n - 3, ".gz")) {
        gzFile gz = gzopen(path, "wb");
        if (!gz || gzwrite(gz, buf, (unsigned)total) != (int)total) rc = -1;
        if (gz) gzclose(gz);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, total, f) != total) rc = -1;
        if (f) fclose(f);
    }
    free(buf);
    return rc;
}

/* The datatype code stored in a NIfTI-1 file (native byte order assumed). */
static int stored_datatype(const char *path) {
    unsigned char h[348];
    gzFile gz = gzopen(path, "rb");
    if (!gz) return -1;
    int n = gzread(gz, h, sizeof h);
    gzclose(gz);
    if (n != (int)sizeof h) return -1;
    int16_t dt;
    memcpy(&dt, h + 70, 2);
    return dt;
}

static int affine_near(const double a[4][4], const double b[4][4], double tol) {
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a[r][c] - b[r][c]) > tol) return 0;
    return 1;
}

static void print_affine(const double a[4][4]) {
    for (int r = 0; r < 4; r++) printf("  [%g %g %g %g]\n", a[r][0], a[r][1], a[r][2], a[r][3]);
}

static int have_shared(void) { return fs_is_file(shared_path(FLAIR)) && fs_is_file(shared_path(SYN_IMG)); }

static void minmax(const fs_tensor *t, double *lo, double *hi) {
    const float *p = t->data;
    size_t n = fs_tensor_numel(t);
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < *lo) *lo = p[i];
        if (p[i] > *hi) *hi = p[i];
    }
}

/* Voxel counts of labels 0..15 (values must be integral). */
static int label_counts(const fs_tensor *t, size_t counts[16]) {
    const float *p = t->data;
    memset(counts, 0, 16 * sizeof counts[0]);
    for (size_t i = 0; i < fs_tensor_numel(t); i++) {
        if (p[i] != floorf(p[i]) || p[i] < 0 || p[i] > 15) return -1;
        counts[(int)p[i]]++;
    }
    return 0;
}

/* ---- real data ----------------------------------------------------------- */

static void real_brats_flair(void) {
    if (!have_shared()) SKIP("no shared data under %s", test_shared_dir());
    fs_volume v;
    CHECKF(fs_nifti_read(shared_path(FLAIR), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(v.data.dtype == FS_F32 && v.data.ndim == 3);
    CHECK(v.data.shape[0] == 155 && v.data.shape[1] == 240 && v.data.shape[2] == 240);
    CHECK(stored_datatype(shared_path(FLAIR)) == 16);
    char c[3];
    CHECK(fs_volume_axcodes(v.affine, c) == FS_OK);
    CHECKF(!memcmp(c, "LPS", 3), "%.3s", c);
    for (int a = 0; a < 3; a++) CHECK_NEAR(v.spacing[a], 1, 0);
    CHECK_NEAR(v.affine[1][3], 239, 1e-6);
    double lo, hi;
    minmax(&v.data, &lo, &hi);
    CHECK_NEAR(lo, -3.6243944, 1e-6);
    CHECK_NEAR(hi, 9.155817, 1e-5);
    fs_volume_free(&v);
    CHECK(v.data.data == NULL);
}

static void real_brats_seg(void) {
    if (!have_shared()) SKIP("no shared data under %s", test_shared_dir());
    fs_volume v;
    CHECKF(fs_nifti_read(shared_path(SEG), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(stored_datatype(shared_path(SEG)) == 2);
    CHECK(v.data.shape[0] == 155 && v.data.shape[1] == 240 && v.data.shape[2] == 240);
    size_t n[16];
    CHECK(label_counts(&v.data, n) == 0);
    size_t want[16] = {8816276, 26371, 53050, 818, 31485};
    for (int l = 0; l < 16; l++) CHECKF(n[l] == want[l], "label %d: %zu voxels, want %zu", l, n[l], want[l]);
    fs_volume_free(&v);
}

static void real_synapse_img(void) {
    if (!have_shared()) SKIP("no shared data under %s", test_shared_dir());
    fs_volume v;
    CHECKF(fs_nifti_read(shared_path(SYN_IMG), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(stored_datatype(shared_path(SYN_IMG)) == 4);
    CHECK(v.data.shape[0] == 30 && v.data.shape[1] == 101 && v.data.shape[2] == 122);
    char c[3];
    CHECK(fs_volume_axcodes(v.affine, c) == FS_OK);
    CHECKF(!memcmp(c, "RAS", 3), "%.3s", c);
    for (int a = 0; a < 3; a++) CHECK_NEAR(v.spacing[a], 3, 0);
    CHECK_NEAR(v.affine[0][3], -177.95632935, 1e-5);
    double lo, hi;
    minmax(&v.data, &lo, &hi);
    CHECK(lo == -1100 && hi == 1207);
    fs_volume_free(&v);
}

static void real_synapse_label(void) {
    if (!have_shared()) SKIP("no shared data under %s", test_shared_dir());
    fs_volume v;
    CHECKF(fs_nifti_read(shared_path(SYN_LAB), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(v.data.shape[0] == 30 && v.data.shape[1] == 101 && v.data.shape[2] == 122);
    size_t n[16];
    CHECK(label_counts(&v.data, n) == 0);
    size_t want[16] = {303697, 9452, 3947, 3676, 1333, 0, 38634, 4675, 997, 1368, 901, 644, 152, 184};
    for (int l = 0; l < 16; l++) CHECKF(n[l] == want[l], "label %d: %zu voxels, want %zu", l, n[l], want[l]);
    fs_volume_free(&v);
}

/* ---- round trips ----------------------------------------------------------- */

/* A right-handed, slightly oblique affine whose column norms are the spacing
 * (nearly LPS). */
static void oblique_affine(double A[4][4], const double sp[3]) {
    double th = 0.2, ph = -0.15;
    double R[3][3] = {{-cos(th), -sin(th), 0}, {sin(th) * cos(ph), -cos(th) * cos(ph), -sin(ph)},
                      {sin(th) * sin(ph), -cos(th) * sin(ph), cos(ph)}};
    memset(A, 0, sizeof(double[4][4]));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) A[r][c] = R[r][c] * sp[c];
    A[0][3] = 91.5;
    A[1][3] = -126.25;
    A[2][3] = -72;
    A[3][3] = 1;
}

/* Values representable in every dtype under test, including signed ones. */
static double sample_value(fs_dtype dt, size_t i) {
    double v = (double)((i * 37) % 101);
    if (dt == FS_I8 || dt == FS_I16 || dt == FS_I32 || dt == FS_I64 || dt == FS_F32 || dt == FS_F64) v -= 50;
    if (dt == FS_F32 || dt == FS_F64) v += 0.25;
    if (dt == FS_I16 || dt == FS_U16 || dt == FS_I32 || dt == FS_U32) v *= 300;
    return v;
}

static void roundtrip_all_dtypes(void) {
    fs_dtype dts[] = {FS_U8, FS_I8, FS_I16, FS_U16, FS_I32, FS_U32, FS_I64, FS_U64, FS_F32, FS_F64};
    int codes[] = {2, 256, 4, 512, 8, 768, 1024, 1280, 16, 64};
    const char *exts[] = {".nii", ".nii.gz"};
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
        for (int e = 0; e < 2; e++) {
            fs_volume v, r;
            size_t shape[3] = {5, 4, 7}; /* nk, nj, ni */
            CHECK(fs_tensor_alloc(&v.data, dts[d], 3, shape) == FS_OK);
            for (size_t i = 0; i < 140; i++) fs_tensor_set(&v.data, i, sample_value(dts[d], i));
            v.spacing[0] = 0.8;
            v.spacing[1] = 1.25;
            v.spacing[2] = 3;
            oblique_affine(v.affine, v.spacing);
            char name[64];
            snprintf(name, sizeof name, "rt_%s%s", fs_dtype_name(dts[d]), exts[e]);
            const char *p = spath(name);
            CHECKF(fs_nifti_write(p, &v) == FS_OK, "%s", fs_error_msg());
            CHECKF(stored_datatype(p) == codes[d], "%s: datatype %d", name, stored_datatype(p));
            CHECKF(fs_nifti_read(p, &r) == FS_OK, "%s", fs_error_msg());
            CHECK(r.data.dtype == FS_F32 && r.data.shape[0] == 5 && r.data.shape[1] == 4 && r.data.shape[2] == 7);
            for (size_t i = 0; i < 140; i++)
                CHECKF(fs_tensor_get(&r.data, i) == sample_value(dts[d], i), "%s voxel %zu: %g", name, i,
                       fs_tensor_get(&r.data, i));
            for (int a = 0; a < 3; a++) CHECK_NEAR(r.spacing[a], v.spacing[a], 1e-6);
            CHECKF(affine_near(r.affine, v.affine, 1e-4), "%s", name);
            fs_volume_free(&v);
            fs_volume_free(&r);
        }
}

/* The writer's qform must describe the same geometry as its sform: patch
 * sform_code to 0 in a written file and the qform alone must give the affine
 * back, for a right-handed oblique grid and a left-handed one (qfac -1). */
static void written_qform_matches_sform(void) {
    for (int hand = 0; hand < 2; hand++) {
        fs_volume v, r;
        size_t shape[3] = {3, 4, 5};
        CHECK(fs_tensor_alloc(&v.data, FS_I16, 3, shape) == FS_OK);
        v.spacing[0] = 0.7;
        v.spacing[1] = 0.9;
        v.spacing[2] = 2.5;
        oblique_affine(v.affine, v.spacing);
        if (hand)
            for (int rr = 0; rr < 3; rr++) v.affine[rr][0] = -v.affine[rr][0]; /* now left-handed */
        const char *p = spath("qform.nii");
        CHECK(fs_nifti_write(p, &v) == FS_OK);
        FILE *f = fopen(p, "r+b");
        CHECK(f != NULL);
        int16_t zero = 0;
        fseek(f, 254, SEEK_SET);
        fwrite(&zero, 2, 1, f);
        fclose(f);
        CHECKF(fs_nifti_read(p, &r) == FS_OK, "%s", fs_error_msg());
        if (!affine_near(r.affine, v.affine, 1e-5)) {
            print_affine(r.affine);
            print_affine(v.affine);
        }
        CHECKF(affine_near(r.affine, v.affine, 1e-5), "qform of a %s-handed affine", hand ? "left" : "right");
        fs_volume_free(&v);
        fs_volume_free(&r);
    }
}

/* ---- hand-built headers --------------------------------------------------- */

static void scaling_applied(void) {
    int16_t raw[24];
    for (int i = 0; i < 24; i++) raw[i] = (int16_t)(i * 100 - 1000);
    raw_hdr h;
    raw_default(&h, 1, 4, 4, 3, 2);
    h.slope = 2;
    h.inter = -1000;
    fs_volume v;
    CHECK(write_raw(spath("scl.nii.gz"), &h, raw, 2, 24, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("scl.nii.gz"), &v) == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 24; i++) CHECK(((float *)v.data.data)[i] == raw[i] * 2.0f - 1000.0f);
    fs_volume_free(&v);
    /* slope 0 and slope NaN both mean "no scaling", even with an intercept */
    double slopes[2] = {0, NAN};
    for (int s = 0; s < 2; s++) {
        h.slope = slopes[s];
        h.inter = 7;
        CHECK(write_raw(spath("scl0.nii"), &h, raw, 2, 24, (size_t)-1) == 0);
        CHECKF(fs_nifti_read(spath("scl0.nii"), &v) == FS_OK, "%s", fs_error_msg());
        for (int i = 0; i < 24; i++) CHECK(((float *)v.data.data)[i] == raw[i]);
        fs_volume_free(&v);
    }
    /* fractional slope on float data */
    float fr[24];
    for (int i = 0; i < 24; i++) fr[i] = (float)i / 3;
    raw_default(&h, 1, 16, 4, 3, 2);
    h.slope = 0.5;
    h.inter = 1;
    CHECK(write_raw(spath("sclf.nii"), &h, fr, 4, 24, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("sclf.nii"), &v) == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 24; i++) CHECK_NEAR(((float *)v.data.data)[i], fr[i] * 0.5 + 1, 1e-6);
    fs_volume_free(&v);
}

static void big_endian_file(void) {
    /* every multi-byte type, written byte-swapped with a byte-swapped header */
    struct { int code; size_t es; } types[] = {{4, 2}, {512, 2}, {8, 4}, {768, 4}, {16, 4}, {64, 8}, {1024, 8}};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        unsigned char data[60 * 8];
        double want[60];
        for (int i = 0; i < 60; i++) {
            double x = i * 1001 % 4099;
            if (types[t].code == 4 || types[t].code == 8 || types[t].code == 1024) x -= 2000;
            if (types[t].code == 16 || types[t].code == 64) x = x / 8 - 100;
            want[i] = x;
            switch (types[t].code) {
            case 4: { int16_t v = (int16_t)x; memcpy(data + 2 * i, &v, 2); break; }
            case 512: { uint16_t v = (uint16_t)x; memcpy(data + 2 * i, &v, 2); break; }
            case 8: { int32_t v = (int32_t)x; memcpy(data + 4 * i, &v, 4); break; }
            case 768: { uint32_t v = (uint32_t)x; memcpy(data + 4 * i, &v, 4); break; }
            case 16: { float v = (float)x; memcpy(data + 4 * i, &v, 4); break; }
            case 64: memcpy(data + 8 * i, &x, 8); break;
            default: { int64_t v = (int64_t)x; memcpy(data + 8 * i, &v, 8); break; }
            }
        }
        raw_hdr h;
        raw_default(&h, 1, types[t].code, 5, 4, 3);
        h.swap = 1;
        h.pixdim[1] = 0.5;
        h.pixdim[2] = 0.75;
        h.pixdim[3] = 2;
        h.sform_code = 1;
        double S[3][4] = {{-0.5, 0, 0, 10}, {0, 0.75, 0, -20}, {0, 0, 2, 30.5}};
        memcpy(h.srow, S, sizeof S);
        CHECK(write_raw(spath("be.nii"), &h, data, types[t].es, 60, (size_t)-1) == 0);
        fs_volume v;
        CHECKF(fs_nifti_read(spath("be.nii"), &v) == FS_OK, "%s", fs_error_msg());
        CHECK(v.data.shape[0] == 3 && v.data.shape[1] == 4 && v.data.shape[2] == 5);
        for (int i = 0; i < 60; i++)
            CHECKF(((float *)v.data.data)[i] == (float)want[i], "type %d voxel %d: %g vs %g", types[t].code, i,
                   ((float *)v.data.data)[i], want[i]);
        CHECK_NEAR(v.spacing[0], 0.5, 0);
        CHECK_NEAR(v.spacing[1], 0.75, 0);
        CHECK_NEAR(v.spacing[2], 2, 0);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) CHECK_NEAR(v.affine[r][c], S[r][c], 1e-6);
        fs_volume_free(&v);
    }
}

static void qform_only_known_rotation(void) {
    /* 90 degrees about z: a = cos 45, d = sin 45; qfac -1 flips k. */
    raw_hdr h;
    raw_default(&h, 1, 2, 2, 2, 2);
    h.qform_code = 1;
    h.sform_code = 0;
    h.quatern[2] = sqrt(0.5);
    h.pixdim[0] = -1;
    h.pixdim[1] = 2;
    h.pixdim[2] = 3;
    h.pixdim[3] = 4;
    h.qoffset[0] = 10;
    h.qoffset[1] = -20;
    h.qoffset[2] = 5;
    h.srow[0][0] = 99; /* ignored: sform_code is 0 */
    unsigned char d[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(write_raw(spath("q.nii"), &h, d, 1, 8, (size_t)-1) == 0);
    fs_volume v;
    CHECKF(fs_nifti_read(spath("q.nii"), &v) == FS_OK, "%s", fs_error_msg());
    double want[4][4] = {{0, -3, 0, 10}, {2, 0, 0, -20}, {0, 0, -4, 5}, {0, 0, 0, 1}};
    if (!affine_near(v.affine, want, 1e-6)) print_affine(v.affine);
    CHECK(affine_near(v.affine, want, 1e-6));
    char c[3];
    CHECK(fs_volume_axcodes(v.affine, c) == FS_OK && !memcmp(c, "ALI", 3));
    fs_volume_free(&v);

    /* qform_code 0 and sform_code 0: diag(pixdim) */
    h.qform_code = 0;
    CHECK(write_raw(spath("q0.nii"), &h, d, 1, 8, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("q0.nii"), &v) == FS_OK, "%s", fs_error_msg());
    double diag[4][4] = {{2, 0, 0, 0}, {0, 3, 0, 0}, {0, 0, 4, 0}, {0, 0, 0, 1}};
    CHECK(affine_near(v.affine, diag, 0));
    fs_volume_free(&v);
}

static void nifti2_file(void) {
    for (int swap = 0; swap < 2; swap++) {
        double data[2 * 3 * 4];
        for (int i = 0; i < 24; i++) data[i] = i * 0.125 - 1;
        raw_hdr h;
        raw_default(&h, 2, 64, 4, 3, 2);
        h.swap = swap;
        h.pixdim[1] = 1.5;
        h.pixdim[2] = 1.5;
        h.pixdim[3] = 5;
        h.slope = 2;
        h.inter = 0.5;
        h.sform_code = 2;
        double S[3][4] = {{0, 0, 5, -1}, {-1.5, 0, 0, 2}, {0, 1.5, 0, 3}};
        memcpy(h.srow, S, sizeof S);
        const char *p = spath(swap ? "n2be.nii.gz" : "n2.nii");
        CHECK(write_raw(p, &h, data, 8, 24, (size_t)-1) == 0);
        fs_volume v;
        CHECKF(fs_nifti_read(p, &v) == FS_OK, "%s", fs_error_msg());
        CHECK(v.data.shape[0] == 2 && v.data.shape[1] == 3 && v.data.shape[2] == 4);
        for (int i = 0; i < 24; i++) CHECK(((float *)v.data.data)[i] == (float)(data[i] * 2 + 0.5));
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) CHECK(v.affine[r][c] == S[r][c]);
        CHECK(v.spacing[2] == 5);
        char c[3];
        CHECK(fs_volume_axcodes(v.affine, c) == FS_OK && !memcmp(c, "PSR", 3));
        fs_volume_free(&v);
    }
}

static void dims_variants(void) {
    unsigned char d[24];
    for (int i = 0; i < 24; i++) d[i] = (unsigned char)i;
    raw_hdr h;
    fs_volume v;
    /* 4D with one volume */
    raw_default(&h, 1, 2, 4, 3, 2);
    h.dim[0] = 4;
    CHECK(write_raw(spath("d4.nii"), &h, d, 1, 24, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("d4.nii"), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(v.data.shape[0] == 2 && ((float *)v.data.data)[23] == 23);
    fs_volume_free(&v);
    /* 2D: one slice */
    raw_default(&h, 1, 2, 4, 6, 99);
    h.dim[0] = 2;
    h.pixdim[3] = 0; /* unset for 2D images */
    CHECK(write_raw(spath("d2.nii"), &h, d, 1, 24, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("d2.nii"), &v) == FS_OK, "%s", fs_error_msg());
    CHECK(v.data.shape[0] == 1 && v.data.shape[1] == 6 && v.data.shape[2] == 4);
    CHECK(v.spacing[2] == 1 && v.affine[2][2] == 1);
    fs_volume_free(&v);
    /* a real time series is refused */
    raw_default(&h, 1, 2, 2, 2, 2);
    h.dim[0] = 4;
    h.dim[4] = 3;
    CHECK(write_raw(spath("d4t.nii"), &h, d, 1, 24, (size_t)-1) == 0);
    CHECK(fs_nifti_read(spath("d4t.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "d4t.nii") && strstr(fs_error_msg(), "3D"), "%s", fs_error_msg());
    /* dim[0] 1 and 8 */
    int bad0[2] = {1, 8};
    for (int b = 0; b < 2; b++) {
        raw_default(&h, 1, 2, 24, 1, 1);
        h.dim[0] = bad0[b];
        CHECK(write_raw(spath("d1.nii"), &h, d, 1, 24, (size_t)-1) == 0);
        CHECK(fs_nifti_read(spath("d1.nii"), &v) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), "dim[0]"), "%s", fs_error_msg());
    }
}

static void vox_offset_honoured(void) {
    uint16_t d[8] = {1, 2, 3, 4, 5, 6, 7, 65535};
    raw_hdr h;
    raw_default(&h, 1, 512, 2, 2, 2);
    h.vox_offset = 480; /* 128 bytes of (junk) extension space */
    CHECK(write_raw(spath("ext.nii.gz"), &h, d, 2, 8, (size_t)-1) == 0);
    fs_volume v;
    CHECKF(fs_nifti_read(spath("ext.nii.gz"), &v) == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 8; i++) CHECK(((float *)v.data.data)[i] == d[i]);
    fs_volume_free(&v);
    /* vox_offset 0 (as in the shared BraTS files): data right after the header */
    h.vox_offset = 0;
    CHECK(write_raw(spath("ext0.nii"), &h, d, 2, 8, (size_t)-1) == 0);
    CHECKF(fs_nifti_read(spath("ext0.nii"), &v) == FS_OK, "%s", fs_error_msg());
    for (int i = 0; i < 8; i++) CHECK(((float *)v.data.data)[i] == d[i]);
    fs_volume_free(&v);
}

/* ---- nibabel cross-check ------------------------------------------------- */

static const char *nib_script =
    "import sys, numpy as np, nibabel as nib\n"
    "d = sys.argv[1]\n"
    "rng = np.random.default_rng(7)\n"
    "def rot(th, ph):\n"
    "    a = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])\n"
    "    b = np.array([[1, 0, 0], [0, np.cos(ph), -np.sin(ph)], [0, np.sin(ph), np.cos(ph)]])\n"
    "    return a @ b\n"
    "def aff(R, z, t):\n"
    "    A = np.eye(4); A[:3, :3] = R * np.array(z); A[:3, 3] = t; return A\n"
    "cases = []\n"
    "# int16, slope 2 / inter -1000, LAS oblique\n"
    "A = aff(rot(0.1, 0.05) @ np.diag([-1, 1, 1]), [0.9, 0.9, 2.5], [100.5, -80.25, 40])\n"
    "img = nib.Nifti1Image(rng.integers(-3000, 3000, (9, 8, 7)).astype(np.int16), A)\n"
    "img.header.set_slope_inter(2, -1000)\n"
    "cases.append(('i16_scaled.nii.gz', img))\n"
    "# float64, permuted axes\n"
    "A = aff(np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]]) @ rot(0.2, 0), [1.1, 1.2, 1.3], [-5, 6, -7])\n"
    "cases.append(('f64.nii', nib.Nifti1Image(rng.normal(size=(6, 5, 4)) * 1e3, A)))\n"
    "# uint16 big-endian\n"
    "hdr = nib.Nifti1Header(endianness='>')\n"
    "A = aff(rot(-0.3, 0.4), [2, 2, 2], [1, 2, 3])\n"
    "cases.append(('u16_be.nii.gz', nib.Nifti1Image(rng.integers(0, 65535, (5, 7, 3)).astype(np.uint16), A, header=hdr)))\n"
    "# int8 4D with one volume, qform only\n"
    "img = nib.Nifti1Image(rng.integers(-128, 127, (4, 5, 6, 1)).astype(np.int8), None)\n"
    "img.set_qform(aff(rot(0.7, -0.2) @ np.diag([1, 1, -1]), [0.5, 0.6, 3], [9, -9, 0]), code=1)\n"
    "img.set_sform(None, code=0)\n"
    "cases.append(('i8_qform.nii', img))\n"
    "# NIfTI-2 float32\n"
    "A = aff(rot(1.2, 0.3), [0.8, 0.8, 1.6], [0, 50, -50])\n"
    "cases.append(('n2_f32.nii.gz', nib.Nifti2Image(rng.normal(size=(7, 6, 5)).astype(np.float32), A)))\n"
    "# NIfTI-2 int32 big-endian\n"
    "hdr = nib.Nifti2Header(endianness='>')\n"
    "A = aff(np.diag([-1, -1, 1]), [3, 3, 3], [0, 239, 0])\n"
    "cases.append(('n2_i32_be.nii', nib.Nifti2Image(rng.integers(-2**30, 2**30, (3, 4, 5)).astype(np.int32), A, header=hdr)))\n"
    "# uint32 and int64 with slope\n"
    "A = aff(rot(2.5, -1.0), [1, 2, 3], [4, 5, 6])\n"
    "cases.append(('u32.nii.gz', nib.Nifti1Image(rng.integers(0, 2**32 - 1, (4, 4, 4), dtype=np.uint64).astype(np.uint32), A)))\n"
    "img = nib.Nifti1Image(rng.integers(-10**6, 10**6, (3, 5, 4)).astype(np.int64), A, dtype=np.int64)\n"
    "img.header.set_slope_inter(0.5, 3)\n"
    "cases.append(('i64_scaled.nii', img))\n"
    "with open(d + '/cases.txt', 'w') as f:\n"
    "    for name, img in cases:\n"
    "        img.to_filename(d + '/' + name)\n"
    "        back = nib.load(d + '/' + name)\n"
    "        x = np.asarray(back.get_fdata(), dtype=np.float32)\n"
    "        x = x.reshape(x.shape[:3])\n"
    "        open(d + '/' + name + '.bin', 'wb').write(x.astype('<f4').tobytes(order='F'))\n"
    "        a = back.affine\n"
    "        f.write('%s %d %d %d %s %s\\n' % (name, *x.shape, ''.join(nib.aff2axcodes(a)),\n"
    "                ' '.join('%.17g' % v for v in a[:3].ravel())))\n";

static int have_nibabel(void) { return system("/usr/bin/python3 -c 'import nibabel' >/dev/null 2>&1") == 0; }

static void nibabel_cross_check(void) {
    if (!have_nibabel()) SKIP("python3-nibabel is not importable by /usr/bin/python3");
    const char *sp = spath("nib.py");
    FILE *f = fopen(sp, "w");
    CHECK(f != NULL);
    fputs(nib_script, f);
    fclose(f);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' 2>&1", sp, scratch);
    CHECK(system(cmd) == 0);
    FILE *cases = fopen(spath("cases.txt"), "r");
    CHECK(cases != NULL);
    char name[128], codes[8];
    size_t ni, nj, nk;
    int ncases = 0;
    while (fscanf(cases, "%127s %zu %zu %zu %7s", name, &ni, &nj, &nk, codes) == 5) {
        double A[4][4] = {{0}};
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) CHECK(fscanf(cases, "%lf", &A[r][c]) == 1);
        A[3][3] = 1;
        fs_volume v;
        int rc = fs_nifti_read(spath(name), &v);
        CHECKF(rc == FS_OK, "%s", fs_error_msg());
        CHECKF(v.data.shape[0] == nk && v.data.shape[1] == nj && v.data.shape[2] == ni, "%s shape", name);
        if (!affine_near(v.affine, A, 1e-4)) {
            print_affine(v.affine);
            print_affine(A);
        }
        CHECKF(affine_near(v.affine, A, 1e-4), "%s affine", name);
        char c[3];
        CHECK(fs_volume_axcodes(v.affine, c) == FS_OK);
        CHECKF(!memcmp(c, codes, 3), "%s axcodes %.3s, nibabel %s", name, c, codes);
        if (strstr(name, "_be.")) { /* make sure nibabel did write big-endian */
            gzFile gz = gzopen(spath(name), "rb");
            unsigned char first[4] = {0};
            CHECK(gz && gzread(gz, first, 4) == 4);
            gzclose(gz);
            CHECKF(first[0] == 0 && first[1] == 0, "%s is not big-endian", name);
        }
        char bin[160];
        snprintf(bin, sizeof bin, "%s.bin", name);
        unsigned char *ref;
        size_t sz;
        CHECK(fs_read_file(spath(bin), &ref, &sz) == FS_OK);
        CHECK(sz == fs_tensor_nbytes(&v.data));
        const float *want = (const float *)ref, *got = v.data.data;
        size_t bad = 0;
        for (size_t i = 0; i < sz / 4; i++)
            if (fabsf(want[i] - got[i]) > 1e-6f * fabsf(want[i])) bad++;
        free(ref);
        fs_volume_free(&v);
        CHECKF(bad == 0, "%s: %zu voxels differ from nibabel", name, bad);
        ncases++;
    }
    fclose(cases);
    CHECK(ncases == 8);
}

/* ---- errors ---------------------------------------------------------------- */

static void err_missing_file(void) {
    fs_volume v;
    CHECK(fs_nifti_read(spath("nope.nii.gz"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "cannot open '") && strstr(fs_error_msg(), "nope.nii.gz': no such file"), "%s",
           fs_error_msg());
    CHECK(v.data.data == NULL);
}

static void err_truncated_real_gz(void) {
    if (!have_shared()) SKIP("no shared data under %s", test_shared_dir());
    unsigned char *buf;
    size_t n;
    CHECK(fs_read_file(shared_path(SYN_IMG), &buf, &n) == FS_OK);
    const char *p = spath("half.nii.gz");
    FILE *f = fopen(p, "wb");
    CHECK(f && fwrite(buf, 1, n / 2, f) == n / 2);
    fclose(f);
    fs_volume v;
    CHECK(fs_nifti_read(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), p) && strstr(fs_error_msg(), "truncated"), "%s", fs_error_msg());
    CHECK(v.data.data == NULL);

    /* damage in the middle of the deflate stream, full length kept */
    for (size_t i = n / 2; i < n / 2 + 64; i++) buf[i] ^= 0xa5;
    p = spath("corrupt.nii.gz");
    f = fopen(p, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n);
    fclose(f);
    CHECK(fs_nifti_read(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), p) && (strstr(fs_error_msg(), "corrupt") || strstr(fs_error_msg(), "truncated")),
           "%s", fs_error_msg());

    free(buf);

    /* the gzip trailer's CRC is checked too */
    CHECK(fs_read_file(shared_path(SYN_LAB), &buf, &n) == FS_OK);
    buf[n - 6] ^= 0xff; /* a CRC byte */
    p = spath("badcrc.nii.gz");
    f = fopen(p, "wb");
    CHECK(f && fwrite(buf, 1, n, f) == n);
    fclose(f);
    free(buf);
    CHECK(fs_nifti_read(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), p) && strstr(fs_error_msg(), "corrupt"), "%s", fs_error_msg());
}

static void err_truncated_plain(void) {
    float d[64] = {0};
    raw_hdr h;
    raw_default(&h, 1, 16, 4, 4, 4);
    fs_volume v;
    const char *names[2] = {"trunc.nii", "trunc.nii.gz"};
    for (int g = 0; g < 2; g++) {
        CHECK(write_raw(spath(names[g]), &h, d, 4, 64, 100) == 0);
        CHECK(fs_nifti_read(spath(names[g]), &v) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), names[g]) && strstr(fs_error_msg(), "truncated") &&
                   strstr(fs_error_msg(), "expected 256 bytes of voxel data, got 100"),
               "%s", fs_error_msg());
    }
    /* header cut short */
    FILE *f = fopen(spath("short.nii"), "wb");
    fwrite("\x5c\x01\x00\x00nifti", 1, 9, f);
    fclose(f);
    CHECK(fs_nifti_read(spath("short.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "truncated header"), "%s", fs_error_msg());
    /* empty file and a text file */
    f = fopen(spath("empty.nii"), "wb");
    fclose(f);
    CHECK(fs_nifti_read(spath("empty.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "empty.nii"), "%s", fs_error_msg());
    f = fopen(spath("text.nii"), "wb");
    fputs("this is not an image at all, just some text padding it out well past 348 bytes. ", f);
    for (int i = 0; i < 8; i++) fputs("more text, more text, more text, more text, more text. ", f);
    fclose(f);
    CHECK(fs_nifti_read(spath("text.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "text.nii") && strstr(fs_error_msg(), "not a NIfTI"), "%s", fs_error_msg());
}

static void err_bad_magic(void) {
    unsigned char d[8] = {0};
    raw_hdr h;
    raw_default(&h, 1, 2, 2, 2, 2);
    h.magic = "n+9";
    CHECK(write_raw(spath("magic.nii"), &h, d, 1, 8, (size_t)-1) == 0);
    fs_volume v;
    CHECK(fs_nifti_read(spath("magic.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "magic.nii") && strstr(fs_error_msg(), "bad magic"), "%s", fs_error_msg());
    h.magic = "ni1";
    CHECK(write_raw(spath("pair.nii"), &h, d, 1, 8, (size_t)-1) == 0);
    CHECK(fs_nifti_read(spath("pair.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "two-file"), "%s", fs_error_msg());
    raw_default(&h, 2, 2, 2, 2, 2);
    h.magic = "n+1\0\0\0\0";
    CHECK(write_raw(spath("magic2.nii"), &h, d, 1, 8, (size_t)-1) == 0);
    CHECK(fs_nifti_read(spath("magic2.nii"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "bad magic"), "%s", fs_error_msg());
}

static void err_absurd_dims(void) {
    unsigned char d[8] = {0};
    raw_hdr h;
    fs_volume v;
    /* NIfTI-1's largest grid is petabytes of float: refused from the header */
    raw_default(&h, 1, 16, 32767, 32767, 32767);
    CHECK(write_raw(spath("huge1.nii.gz"), &h, d, 4, 2, (size_t)-1) == 0);
    CHECK(fs_nifti_read(spath("huge1.nii.gz"), &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "huge1.nii.gz") && strstr(fs_error_msg(), "absurd dimensions"), "%s",
           fs_error_msg());
    /* NIfTI-2 with dim[1] = 2^31, and with a product that overflows 64 bits */
    int64_t big[2][3] = {{(int64_t)1 << 31, 1, 1}, {(int64_t)1 << 40, (int64_t)1 << 40, (int64_t)1 << 40}};
    for (int b = 0; b < 2; b++) {
        raw_default(&h, 2, 2, 1, 1, 1);
        for (int a = 0; a < 3; a++) h.dim[a + 1] = big[b][a];
        CHECK(write_raw(spath("huge2.nii"), &h, d, 1, 8, (size_t)-1) == 0);
        CHECK(fs_nifti_read(spath("huge2.nii"), &v) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), "absurd dimensions"), "%s", fs_error_msg());
    }
    /* zero and negative sizes */
    int bad[2] = {0, -5};
    for (int b = 0; b < 2; b++) {
        raw_default(&h, 1, 2, 2, bad[b], 2);
        CHECK(write_raw(spath("neg.nii"), &h, d, 1, 8, (size_t)-1) == 0);
        CHECK(fs_nifti_read(spath("neg.nii"), &v) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), "dim[2]"), "%s", fs_error_msg());
    }
}

static void err_unsupported_datatype(void) {
    unsigned char d[64] = {0};
    int codes[3] = {32, 128, 7};
    const char *names[3] = {"complex64", "rgb24", "unrecognised"};
    for (int c = 0; c < 3; c++) {
        raw_hdr h;
        raw_default(&h, 1, codes[c], 2, 2, 2);
        CHECK(write_raw(spath("dt.nii"), &h, d, 1, 8, (size_t)-1) == 0);
        fs_volume v;
        CHECK(fs_nifti_read(spath("dt.nii"), &v) == FS_ERR);
        CHECKF(strstr(fs_error_msg(), "dt.nii") && strstr(fs_error_msg(), "unsupported datatype") &&
                   strstr(fs_error_msg(), names[c]),
               "%s", fs_error_msg());
    }
}

/* Counts directory entries (hidden ones included) to catch stray temporaries. */
static size_t count_entries(const char *dir) {
    char **names;
    size_t n;
    if (fs_list_dir(dir, &names, &n)) return (size_t)-1;
    fs_free_list(names, n);
    return n;
}

static void err_write_leaves_nothing(void) {
    fs_volume v;
    size_t shape[3] = {2, 2, 2};
    CHECK(fs_tensor_alloc(&v.data, FS_F32, 3, shape) == FS_OK);
    for (int a = 0; a < 3; a++) v.spacing[a] = 1;
    memset(v.affine, 0, sizeof v.affine);
    for (int a = 0; a < 4; a++) v.affine[a][a] = 1;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/w", scratch);
    CHECK(fs_mkdirs(dir) == FS_OK);
    char p[700];
    /* into a directory that does not exist */
    snprintf(p, sizeof p, "%s/missing/out.nii.gz", dir);
    CHECK(fs_nifti_write(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), p) && strstr(fs_error_msg(), "no such file"), "%s", fs_error_msg());
    CHECK(count_entries(dir) == 0);
    /* onto a name taken by a directory: the rename fails, the temporary goes */
    snprintf(p, sizeof p, "%s/taken.nii", dir);
    CHECK(fs_mkdirs(p) == FS_OK);
    CHECK(fs_nifti_write(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "taken.nii"), "%s", fs_error_msg());
    CHECK(count_entries(dir) == 1);
    /* a dtype NIfTI cannot hold */
    fs_tensor_free(&v.data);
    CHECK(fs_tensor_alloc(&v.data, FS_F16, 3, shape) == FS_OK);
    snprintf(p, sizeof p, "%s/half.nii", dir);
    CHECK(fs_nifti_write(p, &v) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "half.nii") && strstr(fs_error_msg(), "f16"), "%s", fs_error_msg());
    CHECK(count_entries(dir) == 1);
    /* a successful write leaves exactly the file */
    fs_tensor_free(&v.data);
    CHECK(fs_tensor_alloc(&v.data, FS_U8, 3, shape) == FS_OK);
    snprintf(p, sizeof p, "%s/ok.nii.gz", dir);
    CHECK(fs_nifti_write(p, &v) == FS_OK);
    CHECK(count_entries(dir) == 2 && fs_is_file(p));
    fs_volume_free(&v);
}

int main(void) {
    snprintf(scratch, sizeof scratch, "%s", test_tmp_dir("nifti"));
    RUN(real_brats_flair);
    RUN(real_brats_seg);
    RUN(real_synapse_img);
    RUN(real_synapse_label);
    RUN(roundtrip_all_dtypes);
    RUN(written_qform_matches_sform);
    RUN(scaling_applied);
    RUN(big_endian_file);
    RUN(qform_only_known_rotation);
    RUN(nifti2_file);
    RUN(dims_variants);
    RUN(vox_offset_honoured);
    RUN(nibabel_cross_check);
    RUN(err_missing_file);
    RUN(err_truncated_real_gz);
    RUN(err_truncated_plain);
    RUN(err_bad_magic);
    RUN(err_absurd_dims);
    RUN(err_unsupported_datatype);
    RUN(err_write_leaves_nothing);
    TEST_EXIT();
}
