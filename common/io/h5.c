/* HDF5 files over the 1.10 C API (numbered names: the unversioned macros map
 * to the 1.8 API on Debian). Every handle opened in a function is closed in
 * that function, so closing the file really closes it. */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"

/* Nothing fewsam stores comes near this; a larger size means a corrupt or
 * hostile file, refused before allocating. */
#define H5_MAX_BYTES ((uint64_t)64 << 30)
#define H5_MAX_STRINGS ((uint64_t)1 << 28)
#define H5_MAX_STRLEN ((size_t)1 << 20)

struct fs_h5 {
    hid_t file;
    int created;
    char path[4096];
    char tmp[4096];
};

static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static void h5_init_once(void) {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void h5_init(void) { pthread_once(&h5_once, h5_init_once); }

/* The innermost message on HDF5's error stack (where the problem was found),
 * read right after the failing call, before another API call clears it. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc && e->desc[0]) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}
static const char *h5_reason(void) {
    static _Thread_local char buf[256];
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf[0] ? buf : "HDF5 library error";
}

/* "'file': <what>: <hdf5 reason>" */
static int h5_fail(const fs_h5 *f, const char *what, const char *name) {
    const char *why = h5_reason();
    return fs_error("'%s': %s '%s': %s", f->path, what, name, why);
}

const char *fs_h5_path(const fs_h5 *f) { return f ? f->path : "?"; }

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* Objects left open would otherwise keep the file open after H5Fclose. */
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
    /* Some file systems (NFS, Lustre) lack flock; do not fail there. */
    H5Pset_file_locking(fapl, 1, 1);
#endif
    return fapl;
}

static fs_h5 *h5_new(const char *path) {
    if (strlen(path) >= sizeof ((fs_h5 *)0)->path) {
        fs_error("path too long: '%s'", path);
        return NULL;
    }
    fs_h5 *f = calloc(1, sizeof *f);
    if (!f) {
        fs_error("out of memory opening '%s'", path);
        return NULL;
    }
    f->file = -1;
    strcpy(f->path, path);
    return f;
}

int fs_h5_create(fs_h5 **out, const char *path) {
    *out = NULL;
    h5_init();
    fs_h5 *f = h5_new(path);
    if (!f) return FS_ERR;
    if (fs_tmp_path(f->tmp, sizeof f->tmp, path)) { free(f); return FS_ERR; }
    /* Probe with open(2) first: its errno says more than HDF5's stack. */
    int fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        fs_error_errno("cannot create '%s'", path);
        free(f);
        return FS_ERR;
    }
    close(fd);
    hid_t fapl = make_fapl();
    f->file = H5Fcreate(f->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f->file < 0) fs_error("cannot create '%s': %s", path, h5_reason());
    H5Pclose(fapl);
    if (f->file < 0) {
        unlink(f->tmp);
        free(f);
        return FS_ERR;
    }
    f->created = 1;
    *out = f;
    return FS_OK;
}

int fs_h5_open(fs_h5 **out, const char *path) {
    *out = NULL;
    h5_init();
    struct stat st;
    if (stat(path, &st) != 0) return fs_error_errno("cannot open '%s'", path);
    if (!S_ISREG(st.st_mode)) return fs_error("cannot open '%s': not a regular file", path);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return fs_error("cannot open '%s': not an HDF5 file", path);
    }
    fs_h5 *f = h5_new(path);
    if (!f) return FS_ERR;
    hid_t fapl = make_fapl();
    f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f->file < 0) fs_error("cannot open '%s': %s", path, h5_reason());
    H5Pclose(fapl);
    if (f->file < 0) {
        free(f);
        return FS_ERR;
    }
    *out = f;
    return FS_OK;
}

int fs_h5_commit(fs_h5 *f) {
    if (!f) return fs_error("fs_h5_commit: no file");
    if (!f->created) {
        fs_error("'%s': opened read-only, nothing to commit", f->path);
        fs_h5_close(f);
        return FS_ERR;
    }
    herr_t rc = H5Fclose(f->file);
    f->file = -1;
    if (rc < 0) {
        fs_error("cannot write '%s': %s", f->path, h5_reason());
        unlink(f->tmp);
        free(f);
        return FS_ERR;
    }
    int fd = open(f->tmp, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    int ok = fs_commit(f->tmp, f->path);
    free(f);
    return ok;
}

void fs_h5_close(fs_h5 *f) {
    if (!f) return;
    if (f->file >= 0) {
        H5Fclose(f->file);
        H5Eclear2(H5E_DEFAULT);
    }
    if (f->created) unlink(f->tmp);
    free(f);
}

/* ---- dtypes ---- */

static hid_t mem_type(fs_dtype d) {
    switch (d) {
    case FS_U8: return H5T_NATIVE_UINT8;
    case FS_I8: return H5T_NATIVE_INT8;
    case FS_U16: return H5T_NATIVE_UINT16;
    case FS_I16: return H5T_NATIVE_INT16;
    case FS_U32: return H5T_NATIVE_UINT32;
    case FS_I32: return H5T_NATIVE_INT32;
    case FS_U64: return H5T_NATIVE_UINT64;
    case FS_I64: return H5T_NATIVE_INT64;
    case FS_F32: return H5T_NATIVE_FLOAT;
    case FS_F64: return H5T_NATIVE_DOUBLE;
    default: return -1;
    }
}

/* Little-endian standard types on disk, whatever the host. */
static hid_t file_type(fs_dtype d) {
    switch (d) {
    case FS_U8: return H5T_STD_U8LE;
    case FS_I8: return H5T_STD_I8LE;
    case FS_U16: return H5T_STD_U16LE;
    case FS_I16: return H5T_STD_I16LE;
    case FS_U32: return H5T_STD_U32LE;
    case FS_I32: return H5T_STD_I32LE;
    case FS_U64: return H5T_STD_U64LE;
    case FS_I64: return H5T_STD_I64LE;
    case FS_F32: return H5T_IEEE_F32LE;
    case FS_F64: return H5T_IEEE_F64LE;
    default: return -1;
    }
}

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

/* Maps a stored type to a dtype; FS_ERR (message set) when unsupported. */
static int stored_dtype(const fs_h5 *f, const char *name, hid_t type, fs_dtype *d) {
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (c == H5T_INTEGER) {
        int sign = H5Tget_sign(type) == H5T_SGN_2;
        switch (size) {
        case 1: *d = sign ? FS_I8 : FS_U8; return FS_OK;
        case 2: *d = sign ? FS_I16 : FS_U16; return FS_OK;
        case 4: *d = sign ? FS_I32 : FS_U32; return FS_OK;
        case 8: *d = sign ? FS_I64 : FS_U64; return FS_OK;
        }
    } else if (c == H5T_FLOAT) {
        if (size == 4) { *d = FS_F32; return FS_OK; }
        if (size == 8) { *d = FS_F64; return FS_OK; }
    }
    return fs_error("'%s': dataset '%s' has an unsupported type (%zu-byte %s)", f->path, name, size,
                    class_name(c));
}

/* ---- objects ---- */

static int valid_name(const char *name) { return name && name[0] && strlen(name) < 1024; }

int fs_h5_has(fs_h5 *f, const char *name) {
    if (!f || f->file < 0 || !valid_name(name)) return 0;
    if (!strcmp(name, "/")) return 1;
    char buf[1024];
    strcpy(buf, name);
    /* H5Lexists wants every intermediate link to exist: check them in turn. */
    size_t len = strlen(buf);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        htri_t e = H5Lexists(f->file, buf, H5P_DEFAULT);
        if (e > 0 && c == 0) e = H5Oexists_by_name(f->file, buf, H5P_DEFAULT);
        buf[i] = c;
        if (e <= 0) {
            H5Eclear2(H5E_DEFAULT);
            return 0;
        }
    }
    return 1;
}

static hid_t open_object(fs_h5 *f, const char *name, const char *kind) {
    if (!f || f->file < 0) {
        fs_error("HDF5 file is not open");
        return -1;
    }
    if (!valid_name(name)) {
        fs_error("'%s': invalid object name", f->path);
        return -1;
    }
    if (!fs_h5_has(f, name)) {
        fs_error("'%s': missing %s '%s'", f->path, kind, name);
        return -1;
    }
    hid_t o = H5Oopen(f->file, name, H5P_DEFAULT);
    if (o < 0) h5_fail(f, "cannot open", name);
    return o;
}

static hid_t open_dataset(fs_h5 *f, const char *name) {
    hid_t o = open_object(f, name, "dataset");
    if (o < 0) return o;
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        fs_error("'%s': '%s' is not a dataset", f->path, name);
        return -1;
    }
    return o;
}

/* Shape of a dataset's dataspace; ndim 0 for a scalar. */
static int dset_shape(fs_h5 *f, const char *name, hid_t d, int *ndim, hsize_t dims[FS_MAX_DIMS],
                      hsize_t maxdims[FS_MAX_DIMS]) {
    hid_t sp = H5Dget_space(d);
    if (sp < 0) return h5_fail(f, "cannot read the shape of", name);
    H5S_class_t cls = H5Sget_simple_extent_type(sp);
    int rc = FS_OK;
    if (cls == H5S_SCALAR) {
        *ndim = 0;
    } else if (cls == H5S_SIMPLE) {
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd < 0 || nd > FS_MAX_DIMS) {
            rc = fs_error("'%s': dataset '%s' has %d dimensions (at most %d supported)", f->path, name, nd,
                          FS_MAX_DIMS);
        } else {
            hsize_t md[H5S_MAX_RANK];
            H5Sget_simple_extent_dims(sp, dims, maxdims ? maxdims : md);
            *ndim = nd;
        }
    } else {
        rc = fs_error("'%s': dataset '%s' is empty (null dataspace)", f->path, name);
    }
    H5Sclose(sp);
    return rc;
}

/* Byte count of ndim dims of esize bytes, refusing overflow and absurd sizes. */
static int sane_bytes(fs_h5 *f, const char *name, int ndim, const hsize_t *dims, size_t esize, size_t *bytes) {
    uint64_t b = esize;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] && b > H5_MAX_BYTES / dims[i])
            return fs_error("'%s': dataset '%s' is absurdly large (over %llu GiB)", f->path, name,
                            (unsigned long long)(H5_MAX_BYTES >> 30));
        b *= dims[i];
    }
    if (b > H5_MAX_BYTES || b > SIZE_MAX)
        return fs_error("'%s': dataset '%s' is absurdly large (over %llu GiB)", f->path, name,
                        (unsigned long long)(H5_MAX_BYTES >> 30));
    *bytes = (size_t)b;
    return FS_OK;
}

/* Chunks hold one row of dim 0 so a slice reads by itself; rows under 4 KiB
 * share a chunk (a table of a million tiny chunks is slow), 1-D data chunk
 * 4096 elements, and a row over 1 GiB is split (HDF5 caps chunks at 4 GiB). */
static void chunk_dims(int ndim, const size_t *shape, size_t esize, int extendable, hsize_t *chunk) {
    if (ndim == 1) {
        size_t c = shape[0] < 4096 ? shape[0] : 4096;
        chunk[0] = extendable ? 4096 : (c ? c : 1);
        return;
    }
    size_t row = esize;
    for (int i = 1; i < ndim; i++) {
        chunk[i] = shape[i] ? shape[i] : 1;
        row *= chunk[i];
    }
    size_t rows = row < 4096 ? 4096 / row : 1;
    if (!extendable && rows > shape[0]) rows = shape[0] ? shape[0] : 1;
    chunk[0] = rows;
    while (row > ((size_t)1 << 30)) {
        int big = 1;
        for (int i = 2; i < ndim; i++)
            if (chunk[i] > chunk[big]) big = i;
        row = row / chunk[big] * ((chunk[big] + 1) / 2);
        chunk[big] = (chunk[big] + 1) / 2;
    }
}

/* Creates dataset `name` of dtype/shape; extendable: dim 0 unlimited. */
static hid_t create_dataset(fs_h5 *f, const char *name, fs_dtype dtype, int ndim, const size_t *shape,
                            int extendable) {
    if (!f || f->file < 0 || !f->created) {
        fs_error("'%s': not open for writing", f ? f->path : "?");
        return -1;
    }
    if (!valid_name(name)) {
        fs_error("'%s': invalid dataset name", f->path);
        return -1;
    }
    if (mem_type(dtype) < 0) {
        fs_error("'%s': cannot store dataset '%s' of dtype %s (HDF5 files hold u8..i64, f32, f64)", f->path, name,
                 fs_dtype_name(dtype));
        return -1;
    }
    if (ndim < 0 || ndim > FS_MAX_DIMS || (extendable && ndim < 1)) {
        fs_error("'%s': dataset '%s': bad rank %d", f->path, name, ndim);
        return -1;
    }
    if (fs_h5_has(f, name)) {
        fs_error("'%s': dataset '%s' already exists", f->path, name);
        return -1;
    }
    hsize_t dims[FS_MAX_DIMS], maxdims[FS_MAX_DIMS], chunk[FS_MAX_DIMS];
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = maxdims[i] = shape[i];
        numel *= shape[i];
    }
    if (extendable) maxdims[0] = H5S_UNLIMITED;
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t d = -1;
    if (space < 0 || dcpl < 0 || lcpl < 0) {
        h5_fail(f, "cannot create dataset", name);
        goto done;
    }
    H5Pset_create_intermediate_group(lcpl, 1);
    /* Empty fixed-size datasets cannot be chunked (chunk > extent): contiguous. */
    if (ndim > 0 && (extendable || numel > 0)) {
        chunk_dims(ndim, shape, fs_dtype_size(dtype), extendable, chunk);
        if (H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, 4) < 0) {
            h5_fail(f, "cannot set up compression for dataset", name);
            goto done;
        }
    }
    d = H5Dcreate2(f->file, name, file_type(dtype), space, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0) h5_fail(f, "cannot create dataset", name);
done:
    if (space >= 0) H5Sclose(space);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (lcpl >= 0) H5Pclose(lcpl);
    return d;
}

int fs_h5_write(fs_h5 *f, const char *name, const fs_tensor *t) {
    hid_t d = create_dataset(f, name, t->dtype, t->ndim, t->shape, 0);
    if (d < 0) return FS_ERR;
    int rc = FS_OK;
    if (fs_tensor_numel(t) > 0 && H5Dwrite(d, mem_type(t->dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
        rc = h5_fail(f, "cannot write dataset", name);
    H5Dclose(d);
    return rc;
}

int fs_h5_append(fs_h5 *f, const char *name, const fs_tensor *rows) {
    if (rows->ndim < 1) return fs_error("'%s': cannot append a scalar to '%s'", f->path, name);
    hid_t d;
    if (!fs_h5_has(f, name)) {
        size_t shape[FS_MAX_DIMS];
        memcpy(shape, rows->shape, sizeof shape);
        shape[0] = 0;
        d = create_dataset(f, name, rows->dtype, rows->ndim, shape, 1);
    } else {
        d = open_dataset(f, name);
    }
    if (d < 0) return FS_ERR;
    int rc = FS_OK, ndim;
    hsize_t dims[FS_MAX_DIMS], maxdims[FS_MAX_DIMS];
    hid_t type = -1, fsp = -1, msp = -1;
    fs_dtype dt;
    if (dset_shape(f, name, d, &ndim, dims, maxdims)) { rc = FS_ERR; goto done; }
    type = H5Dget_type(d);
    if (type < 0 || stored_dtype(f, name, type, &dt)) { rc = FS_ERR; goto done; }
    if (dt != rows->dtype) {
        rc = fs_error("'%s': cannot append %s rows to dataset '%s' of %s", f->path, fs_dtype_name(rows->dtype),
                      name, fs_dtype_name(dt));
        goto done;
    }
    int same = ndim == rows->ndim;
    for (int i = 1; same && i < ndim; i++) same = dims[i] == rows->shape[i];
    if (!same) {
        char buf[128];
        rc = fs_error("'%s': cannot append rows %s to dataset '%s': trailing shape differs", f->path,
                      fs_shape_str(rows, buf, sizeof buf), name);
        goto done;
    }
    if (maxdims[0] != H5S_UNLIMITED) {
        rc = fs_error("'%s': dataset '%s' is not extendable", f->path, name);
        goto done;
    }
    if (rows->shape[0] == 0) goto done;
    hsize_t start[FS_MAX_DIMS] = {0}, count[FS_MAX_DIMS];
    start[0] = dims[0];
    for (int i = 0; i < ndim; i++) count[i] = rows->shape[i];
    dims[0] += rows->shape[0];
    if (H5Dset_extent(d, dims) < 0) { rc = h5_fail(f, "cannot extend dataset", name); goto done; }
    fsp = H5Dget_space(d);
    msp = H5Screate_simple(ndim, count, NULL);
    if (fsp < 0 || msp < 0 || H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dwrite(d, mem_type(dt), msp, fsp, H5P_DEFAULT, rows->data) < 0)
        rc = h5_fail(f, "cannot append to dataset", name);
done:
    if (msp >= 0) H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    if (type >= 0) H5Tclose(type);
    H5Dclose(d);
    return rc;
}

/* Opens a numeric dataset and reads its dtype and shape. */
static hid_t open_numeric(fs_h5 *f, const char *name, fs_dtype *dtype, int *ndim, hsize_t dims[FS_MAX_DIMS],
                          hsize_t maxdims[FS_MAX_DIMS]) {
    hid_t d = open_dataset(f, name);
    if (d < 0) return d;
    hid_t type = H5Dget_type(d);
    int rc = type < 0 ? h5_fail(f, "cannot read the type of", name) : stored_dtype(f, name, type, dtype);
    if (type >= 0) H5Tclose(type);
    if (!rc) rc = dset_shape(f, name, d, ndim, dims, maxdims);
    if (rc) {
        H5Dclose(d);
        return -1;
    }
    return d;
}

int fs_h5_info(fs_h5 *f, const char *name, fs_dtype *dtype, int *ndim, size_t shape[FS_MAX_DIMS]) {
    hsize_t dims[FS_MAX_DIMS];
    hid_t d = open_numeric(f, name, dtype, ndim, dims, NULL);
    if (d < 0) return FS_ERR;
    H5Dclose(d);
    for (int i = 0; i < FS_MAX_DIMS; i++) shape[i] = i < *ndim ? (size_t)dims[i] : 0;
    return FS_OK;
}

int fs_h5_read(fs_h5 *f, const char *name, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    fs_dtype dt;
    int ndim;
    hsize_t dims[FS_MAX_DIMS];
    hid_t d = open_numeric(f, name, &dt, &ndim, dims, NULL);
    if (d < 0) return FS_ERR;
    size_t bytes, shape[FS_MAX_DIMS];
    int rc = sane_bytes(f, name, ndim, dims, fs_dtype_size(dt), &bytes);
    for (int i = 0; i < ndim; i++) shape[i] = (size_t)dims[i];
    if (!rc) rc = fs_tensor_alloc(out, dt, ndim, shape);
    if (!rc && bytes > 0 && H5Dread(d, mem_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data) < 0) {
        rc = h5_fail(f, "cannot read dataset", name);
        fs_tensor_free(out);
    }
    H5Dclose(d);
    return rc;
}

int fs_h5_read_rows(fs_h5 *f, const char *name, size_t start, size_t count, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    fs_dtype dt;
    int ndim;
    hsize_t dims[FS_MAX_DIMS];
    hid_t d = open_numeric(f, name, &dt, &ndim, dims, NULL);
    if (d < 0) return FS_ERR;
    int rc = FS_OK;
    hid_t fsp = -1, msp = -1;
    if (ndim < 1) {
        rc = fs_error("'%s': dataset '%s' is a scalar, it has no rows", f->path, name);
        goto done;
    }
    if (start > dims[0] || count > dims[0] - start) {
        rc = fs_error("'%s': rows [%zu, %zu) out of range for dataset '%s' of %llu rows", f->path, start,
                      start + count, name, (unsigned long long)dims[0]);
        goto done;
    }
    hsize_t hstart[FS_MAX_DIMS] = {0};
    size_t shape[FS_MAX_DIMS], bytes;
    hstart[0] = start;
    dims[0] = count;
    for (int i = 0; i < ndim; i++) shape[i] = (size_t)dims[i];
    if ((rc = sane_bytes(f, name, ndim, dims, fs_dtype_size(dt), &bytes))) goto done;
    if ((rc = fs_tensor_alloc(out, dt, ndim, shape))) goto done;
    if (!bytes) goto done;
    fsp = H5Dget_space(d);
    msp = H5Screate_simple(ndim, dims, NULL);
    if (fsp < 0 || msp < 0 || H5Sselect_hyperslab(fsp, H5S_SELECT_SET, hstart, NULL, dims, NULL) < 0 ||
        H5Dread(d, mem_type(dt), msp, fsp, H5P_DEFAULT, out->data) < 0) {
        rc = h5_fail(f, "cannot read rows of dataset", name);
        fs_tensor_free(out);
    }
done:
    if (msp >= 0) H5Sclose(msp);
    if (fsp >= 0) H5Sclose(fsp);
    H5Dclose(d);
    return rc;
}

/* ---- attributes ---- */

static int attr_fail(const fs_h5 *f, const char *obj, const char *key, const char *what) {
    const char *why = h5_reason();
    return fs_error("'%s': %s attribute '%s' on '%s': %s", f->path, what, key, obj, why);
}

/* Creates (replacing any old one) attribute key on obj and writes it. */
static int attr_write(fs_h5 *f, const char *obj, const char *key, hid_t ftype, hid_t mtype, hid_t space,
                      const void *buf) {
    if (!f || f->file < 0 || !f->created) return fs_error("'%s': not open for writing", f ? f->path : "?");
    if (!key || !key[0]) return fs_error("'%s': empty attribute name", f->path);
    hid_t o = open_object(f, obj, "object");
    if (o < 0) return FS_ERR;
    int rc = FS_OK;
    htri_t e = H5Aexists(o, key);
    if (e > 0 && H5Adelete(o, key) < 0) rc = attr_fail(f, obj, key, "cannot replace");
    hid_t a = -1;
    if (!rc) {
        a = H5Acreate2(o, key, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, mtype, buf) < 0) rc = attr_fail(f, obj, key, "cannot write");
    }
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    return rc;
}

static hid_t vlen_str_type(H5T_cset_t cset) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, cset);
    return t;
}

int fs_h5_attr_set_str(fs_h5 *f, const char *obj, const char *key, const char *val) {
    if (!val) val = "";
    hid_t t = vlen_str_type(H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = attr_write(f, obj, key, t, t, sp, &val);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

static int attr_set_array(fs_h5 *f, const char *obj, const char *key, hid_t ft, hid_t mt, const void *v,
                          size_t n) {
    if (n == 0) return fs_error("'%s': attribute '%s' on '%s': no values", f->path, key, obj);
    hsize_t dim = n;
    /* One value is stored as a scalar: h5py then reads 1, not [1]. */
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    int rc = attr_write(f, obj, key, ft, mt, sp, v);
    H5Sclose(sp);
    return rc;
}

int fs_h5_attr_set_f64(fs_h5 *f, const char *obj, const char *key, const double *v, size_t n) {
    return attr_set_array(f, obj, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, n);
}

int fs_h5_attr_set_i64(fs_h5 *f, const char *obj, const char *key, const int64_t *v, size_t n) {
    return attr_set_array(f, obj, key, H5T_STD_I64LE, H5T_NATIVE_INT64, v, n);
}

/* Opens attribute key on obj; sets a message naming both when missing. */
static hid_t open_attr(fs_h5 *f, const char *obj, const char *key, hid_t *o) {
    *o = open_object(f, obj, "object");
    if (*o < 0) return -1;
    htri_t e = H5Aexists(*o, key);
    if (e <= 0) {
        H5Eclear2(H5E_DEFAULT);
        fs_error("'%s': missing attribute '%s' on '%s'", f->path, key, obj);
        H5Oclose(*o);
        return -1;
    }
    hid_t a = H5Aopen(*o, key, H5P_DEFAULT);
    if (a < 0) {
        attr_fail(f, obj, key, "cannot open");
        H5Oclose(*o);
    }
    return a;
}

static hssize_t attr_npoints(hid_t a) {
    hid_t sp = H5Aget_space(a);
    if (sp < 0) return -1;
    hssize_t n = H5Sget_simple_extent_type(sp) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n;
}

/* Trims a fixed-length string at its first NUL (null-terminated or
 * null-padded) or its trailing spaces (space-padded). */
static void trim_fixed(char *s, size_t size, H5T_str_t pad) {
    s[size] = 0;
    size_t len = strlen(s);
    if (pad == H5T_STR_SPACEPAD)
        while (len && s[len - 1] == ' ') s[--len] = 0;
}

int fs_h5_attr_get_str(fs_h5 *f, const char *obj, const char *key, char **val) {
    *val = NULL;
    hid_t o, a = open_attr(f, obj, key, &o);
    if (a < 0) return FS_ERR;
    int rc = FS_OK;
    hid_t type = H5Aget_type(a), mt = -1, sp = -1;
    if (type < 0 || H5Tget_class(type) != H5T_STRING) {
        rc = fs_error("'%s': attribute '%s' on '%s' is not a string", f->path, key, obj);
        goto done;
    }
    if (attr_npoints(a) != 1) {
        rc = fs_error("'%s': attribute '%s' on '%s' is not a single string", f->path, key, obj);
        goto done;
    }
    if (H5Tis_variable_str(type) > 0) {
        char *p = NULL;
        mt = vlen_str_type(H5Tget_cset(type));
        sp = H5Aget_space(a);
        if (H5Aread(a, mt, &p) < 0) {
            rc = attr_fail(f, obj, key, "cannot read");
            goto done;
        }
        *val = strdup(p ? p : "");
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &p);
    } else {
        size_t size = H5Tget_size(type);
        if (size > H5_MAX_STRLEN) {
            rc = fs_error("'%s': attribute '%s' on '%s' is an absurdly long string", f->path, key, obj);
            goto done;
        }
        char *buf = calloc(1, size + 1);
        mt = H5Tcopy(type);
        if (!buf || H5Aread(a, mt, buf) < 0) {
            rc = buf ? attr_fail(f, obj, key, "cannot read") : fs_error("out of memory");
            free(buf);
            goto done;
        }
        trim_fixed(buf, size, H5Tget_strpad(type));
        *val = buf;
    }
    if (!*val) rc = fs_error("out of memory");
done:
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}

static int attr_get_array(fs_h5 *f, const char *obj, const char *key, void *v, size_t n, int allow_float,
                          hid_t mt) {
    hid_t o, a = open_attr(f, obj, key, &o);
    if (a < 0) return FS_ERR;
    int rc = FS_OK;
    hid_t type = H5Aget_type(a);
    H5T_class_t c = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (c != H5T_INTEGER && !(allow_float && c == H5T_FLOAT)) {
        rc = fs_error("'%s': attribute '%s' on '%s' is not %s (it is %s)", f->path, key, obj,
                      allow_float ? "numeric" : "an integer", class_name(c));
    } else {
        hssize_t np = attr_npoints(a);
        if (np < 0 || (size_t)np != n)
            rc = fs_error("'%s': attribute '%s' on '%s' has %lld values, expected %zu", f->path, key, obj,
                          (long long)np, n);
        else if (H5Aread(a, mt, v) < 0)
            rc = attr_fail(f, obj, key, "cannot read");
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(a);
    H5Oclose(o);
    return rc;
}

int fs_h5_attr_get_f64(fs_h5 *f, const char *obj, const char *key, double *v, size_t n) {
    return attr_get_array(f, obj, key, v, n, 1, H5T_NATIVE_DOUBLE);
}

int fs_h5_attr_get_i64(fs_h5 *f, const char *obj, const char *key, int64_t *v, size_t n) {
    return attr_get_array(f, obj, key, v, n, 0, H5T_NATIVE_INT64);
}

/* ---- string datasets ---- */

int fs_h5_write_strings(fs_h5 *f, const char *name, char *const *strs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strs[i]) return fs_error("'%s': string %zu of '%s' is missing", f->path, i, name);
    if (!f || f->file < 0 || !f->created) return fs_error("'%s': not open for writing", f ? f->path : "?");
    if (!valid_name(name)) return fs_error("'%s': invalid dataset name", f->path);
    if (fs_h5_has(f, name)) return fs_error("'%s': dataset '%s' already exists", f->path, name);
    hsize_t dim = n;
    hid_t t = vlen_str_type(H5T_CSET_UTF8);
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int rc = FS_OK;
    hid_t d = H5Dcreate2(f->file, name, t, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || (n && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs) < 0))
        rc = h5_fail(f, "cannot write strings", name);
    if (d >= 0) H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(sp);
    H5Tclose(t);
    return rc;
}

int fs_h5_read_strings(fs_h5 *f, const char *name, char ***strs, size_t *n) {
    *strs = NULL;
    *n = 0;
    hid_t d = open_dataset(f, name);
    if (d < 0) return FS_ERR;
    int rc = FS_OK, ndim;
    hsize_t dims[FS_MAX_DIMS];
    hid_t type = H5Dget_type(d), mt = -1, sp = -1;
    char **out = NULL;
    size_t count = 0;
    if (type < 0 || H5Tget_class(type) != H5T_STRING) {
        rc = fs_error("'%s': dataset '%s' does not hold strings", f->path, name);
        goto done;
    }
    if ((rc = dset_shape(f, name, d, &ndim, dims, NULL))) goto done;
    if (ndim > 1) {
        rc = fs_error("'%s': string dataset '%s' has %d dimensions, expected 1", f->path, name, ndim);
        goto done;
    }
    count = ndim == 0 ? 1 : (size_t)dims[0];
    if (count > H5_MAX_STRINGS) {
        rc = fs_error("'%s': string dataset '%s' is absurdly large", f->path, name);
        goto done;
    }
    out = calloc(count ? count : 1, sizeof *out);
    if (!out) { rc = fs_error("out of memory"); goto done; }
    if (!count) goto done;
    if (H5Tis_variable_str(type) > 0) {
        char **raw = calloc(count, sizeof *raw);
        mt = vlen_str_type(H5Tget_cset(type));
        sp = H5Dget_space(d);
        if (!raw) { rc = fs_error("out of memory"); goto done; }
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            rc = h5_fail(f, "cannot read strings", name);
            free(raw);
            goto done;
        }
        for (size_t i = 0; i < count && !rc; i++)
            if (!(out[i] = strdup(raw[i] ? raw[i] : ""))) rc = fs_error("out of memory");
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
        free(raw);
    } else {
        size_t size = H5Tget_size(type);
        if (size > H5_MAX_STRLEN || (size && count > H5_MAX_BYTES / 16 / size)) {
            rc = fs_error("'%s': string dataset '%s' is absurdly large", f->path, name);
            goto done;
        }
        char *buf = malloc(size * count + 1);
        mt = H5Tcopy(type);
        if (!buf) { rc = fs_error("out of memory"); goto done; }
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            rc = h5_fail(f, "cannot read strings", name);
            free(buf);
            goto done;
        }
        H5T_str_t pad = H5Tget_strpad(type);
        for (size_t i = 0; i < count && !rc; i++) {
            char *s = malloc(size + 1);
            if (!s) { rc = fs_error("out of memory"); break; }
            memcpy(s, buf + i * size, size);
            trim_fixed(s, size, pad);
            out[i] = s;
        }
        free(buf);
    }
done:
    if (rc) {
        if (out) fs_free_list(out, count);
    } else {
        *strs = out;
        *n = count;
    }
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (type >= 0) H5Tclose(type);
    H5Dclose(d);
    return rc;
}
