/* NIfTI-1/NIfTI-2 reader and NIfTI-1 writer over zlib. gzread reads plain
 * files transparently, so one code path serves .nii and .nii.gz. Field
 * offsets follow the published nifti1.h / nifti2.h layouts. */
#include "io/nifti.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "core/fsutil.h"

#define NII1_HDR 348
#define NII2_HDR 540
/* Refuse grids above these before allocating: no single medical volume
 * comes close, and a hostile header must not make us try. */
#define NII_MAX_BYTES ((uint64_t)16 << 30)
#define NII_MAX_VOXELS ((uint64_t)1 << 31)
#define NII_CHUNK (1u << 20)

/* What the reader needs from either header version, in native types. */
typedef struct {
    int version;         /* 1 or 2 */
    int swap;            /* file byte order differs from ours */
    int64_t dim[8];
    int datatype;
    double pixdim[8];
    int64_t vox_offset;
    double scl_slope, scl_inter;
    int qform_code, sform_code;
    double quatern[3], qoffset[3];
    double srow[3][4];
} nii_hdr;

/* ---- byte-order helpers ------------------------------------------------ */

/* The n-byte field at h + off into v, in our byte order. */
static void get_raw(void *v, const unsigned char *h, size_t off, size_t n, int swap) {
    memcpy(v, h + off, n);
    if (swap) fs_byteswap(v, 1, n);
}
static int16_t get_i16(const unsigned char *h, size_t off, int s) { int16_t v; get_raw(&v, h, off, 2, s); return v; }
static int32_t get_i32(const unsigned char *h, size_t off, int s) { int32_t v; get_raw(&v, h, off, 4, s); return v; }
static int64_t get_i64(const unsigned char *h, size_t off, int s) { int64_t v; get_raw(&v, h, off, 8, s); return v; }
static double get_f32(const unsigned char *h, size_t off, int s) { float v; get_raw(&v, h, off, 4, s); return v; }
static double get_f64(const unsigned char *h, size_t off, int s) { double v; get_raw(&v, h, off, 8, s); return v; }

static void put_i16(unsigned char *h, size_t off, int v) { int16_t x = (int16_t)v; memcpy(h + off, &x, 2); }
static void put_i32(unsigned char *h, size_t off, int v) { int32_t x = v; memcpy(h + off, &x, 4); }
static void put_f32(unsigned char *h, size_t off, double v) { float x = (float)v; memcpy(h + off, &x, 4); }

/* ---- datatypes ---------------------------------------------------------- */

static const struct { int code; fs_dtype dtype; const char *name; } nii_types[] = {
    {2, FS_U8, "uint8"},     {4, FS_I16, "int16"},   {8, FS_I32, "int32"},
    {16, FS_F32, "float32"}, {64, FS_F64, "float64"}, {256, FS_I8, "int8"},
    {512, FS_U16, "uint16"}, {768, FS_U32, "uint32"}, {1024, FS_I64, "int64"},
    {1280, FS_U64, "uint64"},
};
#define N_NII_TYPES (sizeof nii_types / sizeof nii_types[0])

static const char *unsupported_type_name(int code) {
    switch (code) {
    case 0: return "unknown";
    case 1: return "binary";
    case 32: return "complex64";
    case 128: return "rgb24";
    case 1536: return "float128";
    case 1792: return "complex128";
    case 2048: return "complex256";
    case 2304: return "rgba32";
    default: return "unrecognised";
    }
}

/* ---- header parsing ----------------------------------------------------- */

/* Fills hdr from the raw bytes of a NIfTI-1 (348) or NIfTI-2 (540) header. */
static int parse_header(const char *path, const unsigned char *h, nii_hdr *hdr) {
    int s = hdr->swap;
    if (hdr->version == 1) {
        const char *m = (const char *)h + 344;
        if (!memcmp(m, "ni1", 4)) return fs_error("cannot read '%s': two-file NIfTI (.hdr/.img pair) is not supported", path);
        if (memcmp(m, "n+1", 4)) return fs_error("cannot read '%s': bad magic (not a NIfTI-1 file)", path);
        for (int i = 0; i < 8; i++) hdr->dim[i] = get_i16(h, 40 + 2 * i, s);
        hdr->datatype = get_i16(h, 70, s);
        for (int i = 0; i < 8; i++) hdr->pixdim[i] = get_f32(h, 76 + 4 * i, s);
        double off = get_f32(h, 108, s);
        hdr->vox_offset = isfinite(off) && off > 0 && off < 1e9 ? (int64_t)off : 0;
        hdr->scl_slope = get_f32(h, 112, s);
        hdr->scl_inter = get_f32(h, 116, s);
        hdr->qform_code = get_i16(h, 252, s);
        hdr->sform_code = get_i16(h, 254, s);
        for (int i = 0; i < 3; i++) hdr->quatern[i] = get_f32(h, 256 + 4 * i, s);
        for (int i = 0; i < 3; i++) hdr->qoffset[i] = get_f32(h, 268 + 4 * i, s);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) hdr->srow[r][c] = get_f32(h, 280 + 16 * r + 4 * c, s);
        /* Many writers leave vox_offset at 0 in single files; the data then
         * start right after the header and its 4-byte extension flag. */
        if (hdr->vox_offset < NII1_HDR + 4) hdr->vox_offset = NII1_HDR + 4;
    } else {
        const char *m = (const char *)h + 4;
        if (!memcmp(m, "ni2", 4)) return fs_error("cannot read '%s': two-file NIfTI (.hdr/.img pair) is not supported", path);
        if (memcmp(m, "n+2", 4)) return fs_error("cannot read '%s': bad magic (not a NIfTI-2 file)", path);
        hdr->datatype = get_i16(h, 12, s);
        for (int i = 0; i < 8; i++) hdr->dim[i] = get_i64(h, 16 + 8 * i, s);
        for (int i = 0; i < 8; i++) hdr->pixdim[i] = get_f64(h, 104 + 8 * i, s);
        hdr->vox_offset = get_i64(h, 168, s);
        hdr->scl_slope = get_f64(h, 176, s);
        hdr->scl_inter = get_f64(h, 184, s);
        hdr->qform_code = get_i32(h, 344, s);
        hdr->sform_code = get_i32(h, 348, s);
        for (int i = 0; i < 3; i++) hdr->quatern[i] = get_f64(h, 352 + 8 * i, s);
        for (int i = 0; i < 3; i++) hdr->qoffset[i] = get_f64(h, 376 + 8 * i, s);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) hdr->srow[r][c] = get_f64(h, 400 + 32 * r + 8 * c, s);
        if (hdr->vox_offset < NII2_HDR + 4) hdr->vox_offset = NII2_HDR + 4;
    }
    return FS_OK;
}

/* Spacing along voxel axis a: |pixdim[a+1]|, with 1 where the header leaves
 * it unset (0 or garbage) so the geometry stays invertible. */
static double voxel_size(const nii_hdr *hdr, int a) {
    double v = fabs(hdr->pixdim[a + 1]);
    return isfinite(v) && v > 0 ? v : 1.0;
}

/* The NIfTI "method 2" affine: rotation from the unit quaternion (b, c, d)
 * with a = sqrt(1 - b^2 - c^2 - d^2), columns scaled by the voxel sizes and
 * the third by qfac (the sign of pixdim[0]) for left-handed grids. */
static void qform_affine(const nii_hdr *hdr, double A[4][4]) {
    double b = hdr->quatern[0], c = hdr->quatern[1], d = hdr->quatern[2];
    double a = 1.0 - (b * b + c * c + d * d);
    if (a < 1e-7) { /* numerically a 180-degree turn: renormalise (b, c, d) */
        double n = sqrt(b * b + c * c + d * d);
        if (n > 0) { b /= n; c /= n; d /= n; }
        a = 0;
    } else {
        a = sqrt(a);
    }
    double R[3][3] = {
        {a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
        {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
        {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b},
    };
    double qfac = hdr->pixdim[0] < 0 ? -1.0 : 1.0;
    double z[3] = {voxel_size(hdr, 0), voxel_size(hdr, 1), voxel_size(hdr, 2) * qfac};
    memset(A, 0, sizeof(double[4][4]));
    for (int r = 0; r < 3; r++) {
        for (int col = 0; col < 3; col++) A[r][col] = R[r][col] * z[col];
        A[r][3] = hdr->qoffset[r];
    }
    A[3][3] = 1;
}

static void best_affine(const nii_hdr *hdr, double A[4][4]) {
    memset(A, 0, sizeof(double[4][4]));
    if (hdr->sform_code > 0) {
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) A[r][c] = hdr->srow[r][c];
        A[3][3] = 1;
    } else if (hdr->qform_code > 0) {
        qform_affine(hdr, A);
    } else {
        for (int a = 0; a < 3; a++) A[a][a] = voxel_size(hdr, a);
        A[3][3] = 1;
    }
}

/* Checks dims and datatype; on success sets the voxel grid and type. */
static int check_geometry(const char *path, const nii_hdr *hdr, size_t n[3], fs_dtype *dt, size_t *elsize) {
    int64_t nd = hdr->dim[0];
    if (nd < 2 || nd > 7) return fs_error("cannot read '%s': bad dim[0] = %lld (want a 3D volume)", path, (long long)nd);
    for (int i = 1; i <= nd; i++)
        if (hdr->dim[i] <= 0)
            return fs_error("cannot read '%s': bad dimension dim[%d] = %lld", path, i, (long long)hdr->dim[i]);
    for (int i = 4; i <= nd; i++)
        if (hdr->dim[i] != 1)
            return fs_error("cannot read '%s': %lldD image with dim[%d] = %lld (only 3D volumes are supported)", path,
                            (long long)nd, i, (long long)hdr->dim[i]);
    int found = 0;
    for (size_t t = 0; t < N_NII_TYPES; t++)
        if (nii_types[t].code == hdr->datatype) { *dt = nii_types[t].dtype; found = 1; }
    if (!found)
        return fs_error("cannot read '%s': unsupported datatype %d (%s)", path, hdr->datatype,
                        unsupported_type_name(hdr->datatype));
    *elsize = fs_dtype_size(*dt);
    uint64_t numel = 1;
    for (int a = 0; a < 3; a++) {
        uint64_t d = a < nd ? (uint64_t)hdr->dim[a + 1] : 1;
        if (d > NII_MAX_BYTES || numel > NII_MAX_BYTES / d)
            return fs_error("cannot read '%s': absurd dimensions %lld x %lld x %lld", path, (long long)hdr->dim[1],
                            (long long)hdr->dim[2], (long long)(nd >= 3 ? hdr->dim[3] : 1));
        numel *= d;
        n[a] = (size_t)d;
    }
    uint64_t widest = *elsize > 4 ? *elsize : 4; /* raw bytes, or the F32 copy */
    if (numel >= NII_MAX_VOXELS || numel > NII_MAX_BYTES / widest)
        return fs_error("cannot read '%s': absurd dimensions %zu x %zu x %zu (limit 2^31 voxels, %llu GiB)", path,
                        n[0], n[1], n[2], (unsigned long long)(NII_MAX_BYTES >> 30));
    return FS_OK;
}

/* Raw elements (file order, already native-endian) into floats with scaling;
 * memcpy keeps unaligned sources legal. */
#define NII_CONVERT(T)                                              \
    for (size_t i = 0; i < count; i++) {                            \
        T x;                                                        \
        memcpy(&x, src + sizeof(T) * i, sizeof(T));                 \
        dst[i] = (float)((double)x * slope + inter);                \
    }                                                               \
    break

static void convert_chunk(fs_dtype dt, const unsigned char *src, size_t count, double slope, double inter, float *dst) {
    switch (dt) {
    case FS_U8: NII_CONVERT(uint8_t);
    case FS_I8: NII_CONVERT(int8_t);
    case FS_U16: NII_CONVERT(uint16_t);
    case FS_I16: NII_CONVERT(int16_t);
    case FS_U32: NII_CONVERT(uint32_t);
    case FS_I32: NII_CONVERT(int32_t);
    case FS_U64: NII_CONVERT(uint64_t);
    case FS_I64: NII_CONVERT(int64_t);
    case FS_F32: NII_CONVERT(float);
    case FS_F64: NII_CONVERT(double);
    default: break;
    }
}

/* Reads exactly n bytes; returns bytes read, or -1 on a stream error. */
static long long read_full(gzFile gz, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > NII_CHUNK ? NII_CHUNK : n - got;
        int r = gzread(gz, (unsigned char *)buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

static int stream_error(const char *path, gzFile gz, const char *what) {
    int errnum = 0;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_ERRNO) return fs_error_errno("cannot read '%s' (%s)", path, what);
    return fs_error("cannot read '%s': corrupt gzip data in %s (%s)", path, what, msg && *msg ? msg : "zlib error");
}

static int read_voxels(const char *path, gzFile gz, const nii_hdr *hdr, fs_dtype dt, size_t elsize,
                       double slope, double inter, fs_tensor *out) {
    size_t numel = fs_tensor_numel(out);
    unsigned long long expect = (unsigned long long)numel * elsize;
    unsigned char *chunk = malloc(NII_CHUNK);
    if (!chunk) return fs_error("out of memory reading '%s'", path);
    float *dst = out->data;
    size_t per = NII_CHUNK / elsize, done = 0;
    int rc = FS_OK;
    while (done < numel) {
        size_t cnt = numel - done < per ? numel - done : per;
        long long r = read_full(gz, chunk, cnt * elsize);
        if (r < 0) { rc = stream_error(path, gz, "voxel data"); break; }
        if ((size_t)r < cnt * elsize) {
            int errnum = 0;
            gzerror(gz, &errnum);
            const char *kind = errnum == Z_BUF_ERROR ? "truncated gzip stream" : "truncated";
            rc = fs_error("cannot read '%s': %s (expected %llu bytes of voxel data, got %llu)", path, kind, expect,
                          (unsigned long long)(done * elsize + (size_t)r));
            break;
        }
        if (hdr->swap) fs_byteswap(chunk, cnt, elsize);
        convert_chunk(dt, chunk, cnt, slope, inter, dst + done);
        done += cnt;
    }
    if (rc == FS_OK) {
        /* One more read lets zlib reach the gzip trailer and verify its CRC,
         * which catches damage that still inflates to the right length. */
        int r = gzread(gz, chunk, 64);
        if (r < 0) rc = stream_error(path, gz, "voxel data");
    }
    free(chunk);
    return rc;
}

int fs_nifti_read(const char *path, fs_volume *vol) {
    memset(vol, 0, sizeof *vol);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fs_error_errno("cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return fs_error_errno("cannot open '%s'", path); }
    if (S_ISDIR(st.st_mode)) { close(fd); return fs_error("cannot open '%s': is a directory", path); }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) { close(fd); return fs_error("cannot open '%s': out of memory", path); }
    gzbuffer(gz, 256 * 1024);

    int rc = FS_ERR;
    unsigned char h[NII2_HDR];
    nii_hdr hdr;
    memset(&hdr, 0, sizeof hdr);
    long long got = read_full(gz, h, 4);
    if (got < 0) { stream_error(path, gz, "header"); goto done; }
    if (got < 4) { fs_error("cannot read '%s': truncated header (%lld bytes)", path, got); goto done; }
    int32_t sz;
    memcpy(&sz, h, 4);
    int32_t szs = sz;
    fs_byteswap(&szs, 1, 4);
    if (sz == NII1_HDR || szs == NII1_HDR) hdr.version = 1;
    else if (sz == NII2_HDR || szs == NII2_HDR) hdr.version = 2;
    else { fs_error("cannot read '%s': not a NIfTI file (bad header size %d)", path, (int)sz); goto done; }
    hdr.swap = sz != NII1_HDR && sz != NII2_HDR;
    size_t hsize = hdr.version == 1 ? NII1_HDR : NII2_HDR;
    got = read_full(gz, h + 4, hsize - 4);
    if (got < 0) { stream_error(path, gz, "header"); goto done; }
    if ((size_t)got < hsize - 4) {
        fs_error("cannot read '%s': truncated header (%lld of %zu bytes)", path, got + 4, hsize);
        goto done;
    }
    if (parse_header(path, h, &hdr)) goto done;

    size_t n[3] = {0, 0, 0}, elsize = 1;
    fs_dtype dt = FS_U8;
    if (check_geometry(path, &hdr, n, &dt, &elsize)) goto done;
    unsigned long long nbytes = (unsigned long long)n[0] * n[1] * n[2] * elsize;
    /* An uncompressed file can be checked against its size before we
     * allocate anything. */
    if (gzdirect(gz) && (unsigned long long)st.st_size < (unsigned long long)hdr.vox_offset + nbytes) {
        unsigned long long have = (unsigned long long)st.st_size > (unsigned long long)hdr.vox_offset
                                      ? (unsigned long long)st.st_size - (unsigned long long)hdr.vox_offset : 0;
        fs_error("cannot read '%s': truncated (expected %llu bytes of voxel data, got %llu)", path, nbytes, have);
        goto done;
    }

    double slope = hdr.scl_slope, inter = hdr.scl_inter;
    if (slope == 0 || !isfinite(slope)) {
        slope = 1;
        inter = 0;
    } else if (!isfinite(inter)) {
        fs_error("cannot read '%s': valid scl_slope %g but invalid scl_inter", path, slope);
        goto done;
    }

    /* Skip extensions up to the data. */
    for (int64_t skip = hdr.vox_offset - (int64_t)hsize; skip > 0;) {
        unsigned char tmp[4096];
        size_t want = skip > (int64_t)sizeof tmp ? sizeof tmp : (size_t)skip;
        got = read_full(gz, tmp, want);
        if (got < 0) { stream_error(path, gz, "header extensions"); goto done; }
        if ((size_t)got < want) {
            fs_error("cannot read '%s': truncated (file ends before vox_offset %lld)", path, (long long)hdr.vox_offset);
            goto done;
        }
        skip -= (int64_t)want;
    }

    size_t shape[3] = {n[2], n[1], n[0]};
    if (fs_tensor_alloc(&vol->data, FS_F32, 3, shape)) { fs_error_wrap("cannot read '%s'", path); goto done; }
    if (read_voxels(path, gz, &hdr, dt, elsize, slope, inter, &vol->data)) {
        fs_tensor_free(&vol->data);
        goto done;
    }
    for (int a = 0; a < 3; a++) vol->spacing[a] = voxel_size(&hdr, a);
    best_affine(&hdr, vol->affine);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(vol->affine[r][c])) {
                fs_tensor_free(&vol->data);
                fs_error("cannot read '%s': non-finite value in the %s affine", path,
                         hdr.sform_code > 0 ? "sform" : "qform");
                goto done;
            }
    rc = FS_OK;
done:
    gzclose_r(gz);
    if (rc != FS_OK) memset(vol, 0, sizeof *vol);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

static void inv3(const double m[3][3], double out[3][3], double *det) {
    double d = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
               m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    *det = d;
    if (d == 0) return;
    out[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / d;
    out[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / d;
    out[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / d;
    out[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / d;
    out[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / d;
    out[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / d;
    out[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / d;
    out[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / d;
    out[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / d;
}

/* The nearest orthogonal matrix (polar factor) by Newton's iteration
 * X <- (X + X^-T) / 2; the qform can only hold a rotation (+ reflection). */
static int polar3(double m[3][3]) {
    for (int it = 0; it < 100; it++) {
        double inv[3][3], det, change = 0;
        inv3(m, inv, &det);
        if (!isfinite(det) || fabs(det) < 1e-12) return FS_ERR;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                double v = 0.5 * (m[r][c] + inv[c][r]);
                change += fabs(v - m[r][c]);
                m[r][c] = v;
            }
        if (change < 1e-14) break;
    }
    return FS_OK;
}

/* Quaternion (b, c, d) and qfac for the rotation part of A; falls back to the
 * identity when A has no usable rotation (the sform still carries it). */
static void affine_to_quatern(const double A[4][4], double q[3], double *qfac) {
    double R[3][3];
    q[0] = q[1] = q[2] = 0;
    *qfac = 1;
    for (int c = 0; c < 3; c++) {
        double n = sqrt(A[0][c] * A[0][c] + A[1][c] * A[1][c] + A[2][c] * A[2][c]);
        if (!(n > 0) || !isfinite(n)) return;
        for (int r = 0; r < 3; r++) R[r][c] = A[r][c] / n;
    }
    if (polar3(R)) return;
    double inv[3][3], det;
    inv3(R, inv, &det);
    if (det < 0) { /* left-handed grid: reflect k, recorded as qfac = -1 */
        *qfac = -1;
        for (int r = 0; r < 3; r++) R[r][2] = -R[r][2];
    }
    double a = R[0][0] + R[1][1] + R[2][2] + 1, b, c, d;
    if (a > 0.5) {
        a = 0.5 * sqrt(a);
        b = 0.25 * (R[2][1] - R[1][2]) / a;
        c = 0.25 * (R[0][2] - R[2][0]) / a;
        d = 0.25 * (R[1][0] - R[0][1]) / a;
    } else {
        double xd = 1 + R[0][0] - (R[1][1] + R[2][2]);
        double yd = 1 + R[1][1] - (R[0][0] + R[2][2]);
        double zd = 1 + R[2][2] - (R[0][0] + R[1][1]);
        if (xd > 1) {
            b = 0.5 * sqrt(xd);
            c = 0.25 * (R[0][1] + R[1][0]) / b;
            d = 0.25 * (R[0][2] + R[2][0]) / b;
            a = 0.25 * (R[2][1] - R[1][2]) / b;
        } else if (yd > 1) {
            c = 0.5 * sqrt(yd);
            b = 0.25 * (R[0][1] + R[1][0]) / c;
            d = 0.25 * (R[1][2] + R[2][1]) / c;
            a = 0.25 * (R[0][2] - R[2][0]) / c;
        } else {
            d = 0.5 * sqrt(zd);
            b = 0.25 * (R[0][2] + R[2][0]) / d;
            c = 0.25 * (R[1][2] + R[2][1]) / d;
            a = 0.25 * (R[1][0] - R[0][1]) / d;
        }
        if (a < 0) { b = -b; c = -c; d = -d; }
    }
    q[0] = b;
    q[1] = c;
    q[2] = d;
}

static int nii_code_for(fs_dtype dt) {
    for (size_t t = 0; t < N_NII_TYPES; t++)
        if (nii_types[t].dtype == dt) return nii_types[t].code;
    return 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static void build_header(const fs_volume *vol, int code, unsigned char h[NII1_HDR + 4]) {
    memset(h, 0, NII1_HDR + 4);
    const fs_tensor *t = &vol->data;
    put_i32(h, 0, NII1_HDR);
    h[38] = 'r'; /* "regular", as ANALYZE readers expect */
    put_i16(h, 40, 3);
    put_i16(h, 42, (int)t->shape[2]);
    put_i16(h, 44, (int)t->shape[1]);
    put_i16(h, 46, (int)t->shape[0]);
    for (int i = 4; i < 8; i++) put_i16(h, 40 + 2 * i, 1);
    put_i16(h, 70, code);
    put_i16(h, 72, (int)(8 * fs_dtype_size(t->dtype)));
    double q[3], qfac;
    affine_to_quatern(vol->affine, q, &qfac);
    put_f32(h, 76, qfac);
    for (int a = 0; a < 3; a++) put_f32(h, 80 + 4 * a, vol->spacing[a]);
    for (int i = 4; i < 8; i++) put_f32(h, 76 + 4 * i, 1);
    put_f32(h, 108, NII1_HDR + 4);
    put_f32(h, 112, 1);
    put_f32(h, 116, 0);
    h[123] = 2; /* NIFTI_UNITS_MM */
    memcpy(h + 148, "fewsam", 6);
    put_i16(h, 252, 1);
    put_i16(h, 254, 1);
    for (int i = 0; i < 3; i++) put_f32(h, 256 + 4 * i, q[i]);
    for (int i = 0; i < 3; i++) put_f32(h, 268 + 4 * i, vol->affine[i][3]);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) put_f32(h, 280 + 16 * r + 4 * c, vol->affine[r][c]);
    memcpy(h + 344, "n+1", 4);
    /* bytes 348..351: extension flag, all zero (no extensions) */
}

static int write_all(gzFile gz, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n > 0) {
        unsigned want = n > NII_CHUNK ? NII_CHUNK : (unsigned)n;
        int w = gzwrite(gz, p, want);
        if (w <= 0) return FS_ERR;
        p += w;
        n -= (size_t)w;
    }
    return FS_OK;
}

int fs_nifti_write(const char *path, const fs_volume *vol) {
    const fs_tensor *t = &vol->data;
    if (t->ndim != 3) return fs_error("cannot write '%s': volume data must be 3D [nk, nj, ni], not %dD", path, t->ndim);
    int code = nii_code_for(t->dtype);
    if (!code) return fs_error("cannot write '%s': dtype %s has no NIfTI equivalent", path, fs_dtype_name(t->dtype));
    for (int a = 0; a < 3; a++)
        if (t->shape[a] == 0 || t->shape[a] > 32767)
            return fs_error("cannot write '%s': dimension %zu does not fit NIfTI-1 (1..32767)", path, t->shape[a]);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(vol->affine[r][c])) return fs_error("cannot write '%s': non-finite affine", path);

    char tmp[4200];
    if (fs_tmp_path(tmp, sizeof tmp, path)) return FS_ERR;
    int gzip = has_suffix(path, ".gz");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return fs_error_errno("cannot write '%s'", path);
    gzFile gz = gzdopen(fd, gzip ? "wb6" : "wbT");
    if (!gz) {
        close(fd);
        unlink(tmp);
        return fs_error("cannot write '%s': out of memory", path);
    }
    gzbuffer(gz, 256 * 1024);
    unsigned char h[NII1_HDR + 4];
    build_header(vol, code, h);
    int bad = write_all(gz, h, sizeof h) || write_all(gz, t->data, fs_tensor_nbytes(t));
    int zerr = 0;
    const char *zmsg = bad ? gzerror(gz, &zerr) : NULL;
    char why[256] = "";
    if (bad) snprintf(why, sizeof why, "%s", zerr == Z_ERRNO ? strerror(errno) : zmsg ? zmsg : "write failed");
    int cr = gzclose_w(gz);
    if (!bad && cr != Z_OK) {
        bad = 1;
        snprintf(why, sizeof why, "%s", cr == Z_ERRNO ? strerror(errno) : "close failed");
    }
    if (bad) {
        unlink(tmp);
        return fs_error("cannot write '%s': %s", path, why);
    }
    return fs_commit(tmp, path);
}
