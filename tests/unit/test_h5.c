/* io/h5: round trips, appends, attributes, strings, files written by h5py,
 * and the errors a stage must get instead of a crash. */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/h5.h"

static const char *dir;

static const char *path_in(const char *name) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int have_h5py(void) { return system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") == 0; }

static int run_py(const char *script, const char *arg) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"%s\" '%s'", script, arg);
    return system(cmd);
}

/* No temporary file left beside path. */
static int no_temp_left(void) {
    char **names;
    size_t n;
    if (fs_list_dir(dir, &names, &n)) return 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        if (strstr(names[i], ".tmp.")) ok = 0;
    fs_free_list(names, n);
    return ok;
}

static void roundtrip_every_dtype(void) {
    const char *p = path_in("dtypes.h5");
    fs_dtype types[] = {FS_U8, FS_I8, FS_U16, FS_I16, FS_U32, FS_I32, FS_U64, FS_I64, FS_F32, FS_F64};
    size_t nt = sizeof types / sizeof *types;
    size_t shape[3] = {3, 4, 5};
    fs_tensor t[10];
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    CHECK(!fs_is_file(p));
    for (size_t k = 0; k < nt; k++) {
        CHECK(fs_tensor_alloc(&t[k], types[k], 3, shape) == FS_OK);
        for (size_t i = 0; i < 60; i++) {
            double v = (double)(i * 7 % 61) - (types[k] == FS_U8 || types[k] % 2 == 0 ? 0 : 30);
            if (types[k] >= FS_F32) v += 0.25;
            fs_tensor_set(&t[k], i, v);
        }
        char name[64];
        snprintf(name, sizeof name, "group/sub/%s", fs_dtype_name(types[k]));
        CHECK(fs_h5_write(f, name, &t[k]) == FS_OK);
    }
    /* A scalar and an empty dataset. */
    fs_tensor sc, empty;
    CHECK(fs_tensor_alloc(&sc, FS_F64, 0, NULL) == FS_OK);
    *(double *)sc.data = 3.5;
    CHECK(fs_h5_write(f, "scalar", &sc) == FS_OK);
    size_t eshape[2] = {0, 7};
    CHECK(fs_tensor_alloc(&empty, FS_I32, 2, eshape) == FS_OK);
    CHECK(fs_h5_write(f, "empty", &empty) == FS_OK);
    /* f16 has no HDF5 mapping here: a clear error, not a corrupt file. */
    fs_tensor h = t[0];
    h.dtype = FS_F16;
    CHECK(fs_h5_write(f, "half", &h) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "f16") != NULL);
    CHECK(fs_h5_write(f, "group/sub/u8", &t[0]) == FS_ERR); /* no silent overwrite */
    CHECK(fs_h5_commit(f) == FS_OK);
    CHECK(fs_is_file(p) && no_temp_left());

    CHECK(fs_h5_open(&f, p) == FS_OK);
    CHECK(!strcmp(fs_h5_path(f), p));
    CHECK(fs_h5_has(f, "group") && fs_h5_has(f, "group/sub") && fs_h5_has(f, "/group/sub/f32"));
    CHECK(!fs_h5_has(f, "group/nothing") && !fs_h5_has(f, "nothing/deeper") && !fs_h5_has(f, "half"));
    for (size_t k = 0; k < nt; k++) {
        char name[64];
        snprintf(name, sizeof name, "group/sub/%s", fs_dtype_name(types[k]));
        fs_dtype dt;
        int nd;
        size_t sh[FS_MAX_DIMS];
        CHECK(fs_h5_info(f, name, &dt, &nd, sh) == FS_OK);
        CHECKF(dt == types[k] && nd == 3 && sh[0] == 3 && sh[1] == 4 && sh[2] == 5, "%s", name);
        fs_tensor r;
        CHECK(fs_h5_read(f, name, &r) == FS_OK);
        CHECK(r.dtype == types[k] && fs_shape_equal(&r, &t[k]));
        CHECKF(!memcmp(r.data, t[k].data, fs_tensor_nbytes(&r)), "%s", name);
        fs_tensor_free(&r);
        /* Row reads: rows [1, 3). */
        CHECK(fs_h5_read_rows(f, name, 1, 2, &r) == FS_OK);
        CHECK(r.ndim == 3 && r.shape[0] == 2 && r.shape[1] == 4);
        CHECK(!memcmp(r.data, (char *)t[k].data + 20 * fs_dtype_size(types[k]), fs_tensor_nbytes(&r)));
        fs_tensor_free(&r);
        fs_tensor_free(&t[k]);
    }
    fs_tensor r;
    CHECK(fs_h5_read_rows(f, "group/sub/f32", 2, 2, &r) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "out of range") != NULL);
    CHECK(fs_h5_read(f, "scalar", &r) == FS_OK);
    CHECK(r.ndim == 0 && *(double *)r.data == 3.5);
    fs_tensor_free(&r);
    CHECK(fs_h5_read(f, "empty", &r) == FS_OK);
    CHECK(r.ndim == 2 && r.shape[0] == 0 && r.shape[1] == 7);
    fs_tensor_free(&r);
    CHECK(fs_h5_read(f, "group", &r) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "not a dataset") != NULL);
    fs_h5_close(f);
    fs_tensor_free(&sc);
    fs_tensor_free(&empty);
}

static void append_rows(void) {
    const char *p = path_in("append.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    float rows[5][4][4];
    for (int i = 0; i < 80; i++) ((float *)rows)[i] = (float)i * 0.5f;
    fs_tensor a = {.dtype = FS_F32, .ndim = 3, .shape = {2, 4, 4}, .data = rows};
    fs_tensor b = {.dtype = FS_F32, .ndim = 3, .shape = {3, 4, 4}, .data = rows[2]};
    CHECK(fs_h5_append(f, "stack/x", &a) == FS_OK);
    CHECK(fs_h5_append(f, "stack/x", &b) == FS_OK);
    fs_tensor wrong = {.dtype = FS_F32, .ndim = 3, .shape = {1, 4, 5}, .data = rows};
    CHECK(fs_h5_append(f, "stack/x", &wrong) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "trailing shape") != NULL);
    wrong = (fs_tensor){.dtype = FS_I32, .ndim = 3, .shape = {1, 4, 4}, .data = rows};
    CHECK(fs_h5_append(f, "stack/x", &wrong) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "i32") != NULL);
    int32_t idx[3] = {7, 8, 9};
    fs_tensor one = {.dtype = FS_I32, .ndim = 1, .shape = {1}, .data = idx};
    for (int i = 0; i < 3; i++) {
        one.data = &idx[i];
        CHECK(fs_h5_append(f, "idx", &one) == FS_OK);
    }
    CHECK(fs_h5_commit(f) == FS_OK);

    CHECK(fs_h5_open(&f, p) == FS_OK);
    fs_tensor r;
    CHECK(fs_h5_read(f, "stack/x", &r) == FS_OK);
    CHECK(r.ndim == 3 && r.shape[0] == 5 && r.shape[1] == 4 && r.shape[2] == 4);
    CHECK(!memcmp(r.data, rows, sizeof rows));
    fs_tensor_free(&r);
    CHECK(fs_h5_read_rows(f, "stack/x", 4, 1, &r) == FS_OK);
    CHECK(((float *)r.data)[0] == 32.0f);
    fs_tensor_free(&r);
    CHECK(fs_h5_read(f, "idx", &r) == FS_OK);
    CHECK(r.ndim == 1 && r.shape[0] == 3 && ((int32_t *)r.data)[2] == 9);
    fs_tensor_free(&r);
    fs_h5_close(f);
}

static void attributes(void) {
    const char *p = path_in("attrs.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    double sp[3] = {0.75, 0.8, 2.5};
    int64_t iv[2] = {-5, (int64_t)1 << 40};
    fs_tensor t = {.dtype = FS_U8, .ndim = 1, .shape = {1}, .data = (uint8_t[]){1}};
    CHECK(fs_h5_write(f, "g/d", &t) == FS_OK);
    CHECK(fs_h5_attr_set_str(f, "/", "name", "first") == FS_OK);
    CHECK(fs_h5_attr_set_str(f, "/", "name", "caf\xc3\xa9 second") == FS_OK); /* replaced */
    CHECK(fs_h5_attr_set_f64(f, "/", "spacing", sp, 3) == FS_OK);
    CHECK(fs_h5_attr_set_i64(f, "g", "ints", iv, 2) == FS_OK);
    CHECK(fs_h5_attr_set_str(f, "g/d", "unit", "") == FS_OK);
    CHECK(fs_h5_attr_set_str(f, "nowhere", "x", "y") == FS_ERR);
    CHECK(strstr(fs_error_msg(), "nowhere") != NULL);
    CHECK(fs_h5_commit(f) == FS_OK);

    CHECK(fs_h5_open(&f, p) == FS_OK);
    char *s;
    CHECK(fs_h5_attr_get_str(f, "/", "name", &s) == FS_OK);
    CHECK(!strcmp(s, "caf\xc3\xa9 second"));
    free(s);
    CHECK(fs_h5_attr_get_str(f, "g/d", "unit", &s) == FS_OK);
    CHECK(!strcmp(s, ""));
    free(s);
    double r[3];
    CHECK(fs_h5_attr_get_f64(f, "/", "spacing", r, 3) == FS_OK);
    CHECK(r[0] == 0.75 && r[1] == 0.8 && r[2] == 2.5);
    CHECK(fs_h5_attr_get_f64(f, "/", "spacing", r, 2) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "spacing") && strstr(fs_error_msg(), "3 values"));
    int64_t ri[2];
    CHECK(fs_h5_attr_get_i64(f, "g", "ints", ri, 2) == FS_OK);
    CHECK(ri[0] == -5 && ri[1] == (int64_t)1 << 40);
    double rd[2];
    CHECK(fs_h5_attr_get_f64(f, "g", "ints", rd, 2) == FS_OK); /* integers read as doubles */
    CHECK(rd[0] == -5.0);
    CHECK(fs_h5_attr_get_i64(f, "/", "spacing", ri, 3) == FS_ERR); /* floats are not integers */
    CHECK(fs_h5_attr_get_str(f, "/", "spacing", &s) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "not a string") != NULL);
    CHECK(fs_h5_attr_get_str(f, "/", "missing", &s) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "attrs.h5") && strstr(fs_error_msg(), "missing attribute 'missing'"), "%s",
           fs_error_msg());
    /* Writing to a read-only file fails cleanly. */
    CHECK(fs_h5_attr_set_str(f, "/", "x", "y") == FS_ERR);
    fs_h5_close(f);
}

static void strings(void) {
    const char *p = path_in("strings.h5");
    fs_h5 *f;
    char *in[4] = {"case0001", "", "caf\xc3\xa9", "a rather longer string with spaces  "};
    CHECK(fs_h5_create(&f, p) == FS_OK);
    CHECK(fs_h5_write_strings(f, "names/all", in, 4) == FS_OK);
    CHECK(fs_h5_write_strings(f, "none", NULL, 0) == FS_OK);
    CHECK(fs_h5_commit(f) == FS_OK);
    CHECK(fs_h5_open(&f, p) == FS_OK);
    char **out;
    size_t n;
    CHECK(fs_h5_read_strings(f, "names/all", &out, &n) == FS_OK);
    CHECK(n == 4);
    for (size_t i = 0; i < 4; i++) CHECKF(!strcmp(out[i], in[i]), "%zu: '%s'", i, out[i]);
    fs_free_list(out, n);
    CHECK(fs_h5_read_strings(f, "none", &out, &n) == FS_OK);
    CHECK(n == 0);
    fs_free_list(out, n);
    fs_tensor t;
    CHECK(fs_h5_read(f, "names/all", &t) == FS_ERR); /* strings are not tensors */
    CHECK(strstr(fs_error_msg(), "unsupported type") != NULL);
    fs_h5_close(f);
}

/* What TransUNet's test_vol_h5/caseNNNN.npy.h5 look like, written by h5py. */
static const char *H5PY_SCRIPT =
    "import sys, h5py, numpy as np\n"
    "with h5py.File(sys.argv[1], 'w') as f:\n"
    "    f['image'] = (np.arange(192, dtype=np.float32) / 192).reshape(3, 8, 8)\n"
    "    f['label'] = (np.arange(192) % 9).astype(np.uint8).reshape(3, 8, 8)\n"
    "    f['big'] = np.arange(6, dtype='>i4').reshape(2, 3)\n"
    "    f['half'] = np.zeros(3, np.float16)\n"
    "    f['fixed_names'] = np.array([b'ab', b'cde'], dtype='S4')\n"
    "    f['vlen_names'] = np.array(['x', 'yz'], dtype=h5py.string_dtype())\n"
    "    f.attrs['fixed'] = np.bytes_('synapse')\n"
    "    f.attrs['vlen'] = 'hello'\n"
    "    f.attrs['spacing'] = np.array([1.0, 2.0, 3.0])\n"
    "    f.attrs['count'] = np.int32(12)\n";

static void reads_h5py_files(void) {
    if (!have_h5py()) SKIP("python3 h5py not installed");
    const char *p = path_in("case0001.npy.h5");
    CHECK(run_py(H5PY_SCRIPT, p) == 0);
    fs_h5 *f;
    CHECK(fs_h5_open(&f, p) == FS_OK);
    fs_tensor im, lb, big;
    CHECK(fs_h5_read(f, "image", &im) == FS_OK);
    CHECK(im.dtype == FS_F32 && im.ndim == 3 && im.shape[0] == 3 && im.shape[1] == 8 && im.shape[2] == 8);
    for (size_t i = 0; i < 192; i++) CHECK(((float *)im.data)[i] == (float)i / 192);
    CHECK(fs_h5_read(f, "label", &lb) == FS_OK);
    CHECK(lb.dtype == FS_U8);
    for (size_t i = 0; i < 192; i++) CHECK(((uint8_t *)lb.data)[i] == i % 9);
    CHECK(fs_h5_read(f, "big", &big) == FS_OK); /* big-endian on disk, native in memory */
    CHECK(big.dtype == FS_I32 && ((int32_t *)big.data)[5] == 5);
    fs_tensor_free(&im);
    fs_tensor_free(&lb);
    fs_tensor_free(&big);
    CHECK(fs_h5_read(f, "half", &im) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "2-byte float") != NULL);
    char *s;
    CHECK(fs_h5_attr_get_str(f, "/", "fixed", &s) == FS_OK);
    CHECKF(!strcmp(s, "synapse"), "'%s'", s);
    free(s);
    CHECK(fs_h5_attr_get_str(f, "/", "vlen", &s) == FS_OK);
    CHECK(!strcmp(s, "hello"));
    free(s);
    double sp[3];
    CHECK(fs_h5_attr_get_f64(f, "/", "spacing", sp, 3) == FS_OK && sp[2] == 3.0);
    int64_t c;
    CHECK(fs_h5_attr_get_i64(f, "/", "count", &c, 1) == FS_OK && c == 12);
    char **names;
    size_t n;
    CHECK(fs_h5_read_strings(f, "fixed_names", &names, &n) == FS_OK);
    CHECK(n == 2 && !strcmp(names[0], "ab") && !strcmp(names[1], "cde"));
    fs_free_list(names, n);
    CHECK(fs_h5_read_strings(f, "vlen_names", &names, &n) == FS_OK);
    CHECK(n == 2 && !strcmp(names[0], "x") && !strcmp(names[1], "yz"));
    fs_free_list(names, n);
    fs_h5_close(f);
}

/* Files we write read back in h5py with the documented layout. */
static void h5py_reads_ours(void) {
    if (!have_h5py()) SKIP("python3 h5py not installed");
    const char *p = path_in("ours.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    /* Rows of 4 KiB: one per chunk. */
    static float v[2][32][32];
    v[1][31][31] = 6;
    fs_tensor t = {.dtype = FS_F32, .ndim = 3, .shape = {2, 32, 32}, .data = v};
    CHECK(fs_h5_write(f, "a/b", &t) == FS_OK);
    CHECK(fs_h5_attr_set_str(f, "/", "schema", "x.y") == FS_OK);
    char *names[2] = {"p", "q"};
    CHECK(fs_h5_write_strings(f, "names", names, 2) == FS_OK);
    CHECK(fs_h5_commit(f) == FS_OK);
    CHECK(run_py("import sys, h5py, numpy as np\n"
                 "f = h5py.File(sys.argv[1], 'r')\n"
                 "d = f['a/b']\n"
                 "assert d.dtype == np.float32 and d.shape == (2, 32, 32), d\n"
                 "assert d.compression == 'gzip' and d.shuffle and d.chunks == (1, 32, 32), d.chunks\n"
                 "assert d[1, 31, 31] == 6\n"
                 "assert f.attrs['schema'] == 'x.y'\n"
                 "assert [s.decode() for s in f['names'][:]] == ['p', 'q']\n",
                 p) == 0);
}

static void errors_name_file_and_object(void) {
    const char *p = path_in("x.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    fs_tensor t;
    size_t shape[2] = {64, 64};
    CHECK(fs_tensor_alloc(&t, FS_F32, 2, shape) == FS_OK);
    for (size_t i = 0; i < 4096; i++) ((float *)t.data)[i] = (float)(i * 2654435761u % 1000) / 7;
    CHECK(fs_h5_write(f, "image", &t) == FS_OK);
    fs_tensor_free(&t);
    CHECK(fs_h5_commit(f) == FS_OK);

    CHECK(fs_h5_open(&f, p) == FS_OK);
    fs_tensor r;
    CHECK(fs_h5_read(f, "label", &r) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "'") && strstr(fs_error_msg(), "x.h5") &&
               strstr(fs_error_msg(), "missing dataset 'label'"),
           "%s", fs_error_msg());
    fs_dtype dt;
    int nd;
    size_t sh[FS_MAX_DIMS];
    CHECK(fs_h5_info(f, "deep/label", &dt, &nd, sh) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "missing dataset 'deep/label'") != NULL);
    fs_h5_close(f);

    /* Not HDF5 at all. */
    const char *txt = path_in("notes.h5");
    FILE *fp = fopen(txt, "w");
    CHECK(fp != NULL);
    fputs("this is not an HDF5 file\n", fp);
    fclose(fp);
    CHECK(fs_h5_open(&f, txt) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "cannot open '") && strstr(fs_error_msg(), "notes.h5': not an HDF5 file"), "%s",
           fs_error_msg());
    CHECK(fs_h5_open(&f, path_in("absent.h5")) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "no such file") != NULL);
    CHECK(fs_h5_open(&f, dir) == FS_ERR);

    /* Cut in half: an error from open or read, never a crash. */
    unsigned char *buf;
    size_t n;
    CHECK(fs_read_file(p, &buf, &n) == FS_OK);
    const char *cut = path_in("cut.h5");
    fp = fopen(cut, "wb");
    CHECK(fp != NULL);
    fwrite(buf, 1, n / 2, fp);
    fclose(fp);
    free(buf);
    int rc = fs_h5_open(&f, cut);
    if (rc == FS_OK) {
        rc = fs_h5_read(f, "image", &r);
        fs_h5_close(f);
        if (rc == FS_OK) fs_tensor_free(&r);
    }
    CHECK(rc == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "cut.h5") != NULL, "%s", fs_error_msg());

    /* Cannot create in a missing directory. */
    CHECK(fs_h5_create(&f, path_in("no/such/dir/y.h5")) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "cannot create") != NULL);
}

static void uncommitted_leaves_nothing(void) {
    const char *p = path_in("failed.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    float v[4] = {1, 2, 3, 4};
    fs_tensor t = {.dtype = FS_F32, .ndim = 1, .shape = {4}, .data = v};
    CHECK(fs_h5_write(f, "d", &t) == FS_OK);
    CHECK(!no_temp_left()); /* the temporary exists while writing */
    fs_h5_close(f);
    CHECK(!fs_is_file(p));
    CHECK(no_temp_left());
    /* Commit on a read-only file is refused and still frees. */
    const char *q = path_in("ro.h5");
    CHECK(fs_h5_create(&f, q) == FS_OK && fs_h5_commit(f) == FS_OK);
    CHECK(fs_h5_open(&f, q) == FS_OK);
    CHECK(fs_h5_commit(f) == FS_ERR);
    CHECK(fs_is_file(q));
}

int main(void) {
    dir = test_tmp_dir("h5");
    static char dirbuf[512];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    dir = dirbuf;
    RUN(roundtrip_every_dtype);
    RUN(append_rows);
    RUN(attributes);
    RUN(strings);
    RUN(reads_h5py_files);
    RUN(h5py_reads_ours);
    RUN(errors_name_file_and_object);
    RUN(uncommitted_leaves_nothing);
    TEST_EXIT();
}
