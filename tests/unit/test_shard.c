/* data/shard: the three schemas round trip, and readers reject files that
 * are not what they claim to be. */
#include "test.h"

#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "data/shard.h"
#include "io/h5.h"

static char dir[512];

static const char *path_in(const char *name) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static char *class_names[3] = {"background", "liver", "spleen"};

static fs_shard_meta demo_meta(void) {
    fs_shard_meta m = {.n_classes = 3, .class_names = class_names, .provenance = "test_shard"};
    strcpy(m.dataset, "demo");
    return m;
}

static int dir_has_temp(void) {
    char **names;
    size_t n;
    if (fs_list_dir(dir, &names, &n)) return 1;
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= strstr(names[i], ".tmp.") != NULL;
    fs_free_list(names, n);
    return found;
}

static int msg_has(const char *a, const char *b) {
    const char *m = fs_error_msg();
    return strstr(m, a) && (!b || strstr(m, b));
}

static void meta_copy_and_free(void) {
    fs_shard_meta m = demo_meta(), c;
    CHECK(fs_shard_meta_copy(&c, &m) == FS_OK);
    CHECK(c.n_classes == 3 && !strcmp(c.class_names[2], "spleen") && c.class_names[2] != class_names[2]);
    CHECK(!strcmp(c.dataset, "demo") && !strcmp(c.provenance, "test_shard"));
    fs_shard_meta_free(&c);
    CHECK(c.class_names == NULL && c.n_classes == 0);
    fs_shard_meta_free(&c); /* twice is harmless */
}

static void slices_roundtrip(void) {
    const char *p = path_in("slices.h5");
    fs_shard_meta m = demo_meta();
    fs_slice_writer *w;
    enum { H = 6, W = 7, N = 5 };
    float im[H * W];
    uint8_t lb[H * W];
    CHECK(fs_slice_writer_open(&w, p, &m, H, W) == FS_OK);
    for (int s = 0; s < N; s++) {
        for (int i = 0; i < H * W; i++) {
            im[i] = (float)(s * 100 + i) / 1000.0f;
            lb[i] = (uint8_t)((s + i) % 3);
        }
        char id[32];
        snprintf(id, sizeof id, "case%04d", s / 2);
        CHECK(fs_slice_writer_add(w, im, lb, id, 10 + s) == FS_OK);
    }
    lb[0] = 3; /* beyond the named classes: refused at write time */
    CHECK(fs_slice_writer_add(w, im, lb, "case9", 0) == FS_ERR);
    CHECK(msg_has("class 3", NULL));
    CHECK(fs_slice_writer_count(w) == N);
    CHECK(!fs_is_file(p));
    CHECK(fs_slice_writer_commit(w) == FS_OK);
    CHECK(fs_is_file(p) && !dir_has_temp());

    fs_slices s;
    CHECK(fs_slices_read(p, &s) == FS_OK);
    CHECK(s.n == N && s.h == H && s.w == W);
    CHECK(s.meta.n_classes == 3 && !strcmp(s.meta.class_names[1], "liver") && !strcmp(s.meta.dataset, "demo"));
    CHECK(!strcmp(s.meta.provenance, "test_shard"));
    CHECK(s.image.dtype == FS_F32 && s.image.ndim == 3 && s.image.shape[0] == N);
    CHECK(s.label.dtype == FS_U8 && fs_shape_equal(&s.image, &s.label));
    for (int k = 0; k < N; k++) {
        char id[32];
        snprintf(id, sizeof id, "case%04d", k / 2);
        CHECK(!strcmp(s.case_ids[k], id));
        CHECK(s.slice_index[k] == 10 + k);
        for (int i = 0; i < H * W; i++) {
            CHECK(((float *)s.image.data)[k * H * W + i] == (float)(k * 100 + i) / 1000.0f);
            CHECK(((uint8_t *)s.label.data)[k * H * W + i] == (k + i) % 3);
        }
    }
    /* labels only: the same labels, ids and indices, no image */
    fs_slices l;
    CHECK(fs_slices_read_labels(p, &l) == FS_OK);
    CHECK(l.n == N && l.h == H && l.w == W && l.image.data == NULL && l.meta.n_classes == 3);
    CHECK(fs_shape_equal(&s.label, &l.label) && !memcmp(s.label.data, l.label.data, (size_t)N * H * W));
    CHECK(!memcmp(s.slice_index, l.slice_index, N * sizeof *l.slice_index) && !strcmp(l.case_ids[N - 1], "case0002"));
    fs_slices_free(&l);
    fs_slices_free(&s);
}

static void slices_empty_and_abort(void) {
    fs_shard_meta m = demo_meta();
    fs_slice_writer *w;
    const char *p = path_in("empty.h5");
    CHECK(fs_slice_writer_open(&w, p, &m, 4, 4) == FS_OK);
    CHECK(fs_slice_writer_commit(w) == FS_OK); /* zero slices is a valid shard */
    fs_slices s;
    CHECK(fs_slices_read(p, &s) == FS_OK);
    CHECK(s.n == 0 && s.h == 4 && s.w == 4 && s.image.shape[0] == 0);
    fs_slices_free(&s);

    const char *q = path_in("aborted.h5");
    float im[16] = {0};
    uint8_t lb[16] = {0};
    CHECK(fs_slice_writer_open(&w, q, &m, 4, 4) == FS_OK);
    CHECK(fs_slice_writer_add(w, im, lb, "c", 0) == FS_OK);
    fs_slice_writer_abort(w);
    CHECK(!fs_is_file(q) && !dir_has_temp());

    CHECK(fs_slice_writer_open(&w, q, &m, 0, 4) == FS_ERR);
    fs_shard_meta bad = m;
    bad.n_classes = 0;
    CHECK(fs_slice_writer_open(&w, q, &bad, 4, 4) == FS_ERR);
    CHECK(!fs_is_file(q) && !dir_has_temp());
}

static void make_volume(fs_case_volume *v, size_t nz, size_t ny, size_t nx) {
    memset(v, 0, sizeof *v);
    v->meta = demo_meta();
    strcpy(v->case_id, "case0008");
    size_t shape[3] = {nz, ny, nx};
    fs_tensor_alloc(&v->image.data, FS_F32, 3, shape);
    fs_tensor_alloc(&v->label, FS_U8, 3, shape);
    for (size_t i = 0; i < nz * ny * nx; i++) {
        ((float *)v->image.data.data)[i] = (float)i / (float)(nz * ny * nx);
        ((uint8_t *)v->label.data)[i] = (uint8_t)(i % 7 == 0 ? 2 : i % 5 == 0);
    }
    double sp[3] = {0.7, 0.7, 3.0};
    memcpy(v->image.spacing, sp, sizeof sp);
    memset(v->image.affine, 0, sizeof v->image.affine);
    v->image.affine[0][0] = -0.7;
    v->image.affine[1][1] = -0.7;
    v->image.affine[2][2] = 3.0;
    v->image.affine[0][3] = 120.5;
    v->image.affine[3][3] = 1;
}

static void free_made_volume(fs_case_volume *v) {
    fs_tensor_free(&v->image.data);
    fs_tensor_free(&v->label);
}

static void volume_roundtrip(void) {
    fs_case_volume v, r;
    make_volume(&v, 4, 5, 6);
    const char *p = path_in("case0008.h5");
    CHECK(fs_case_volume_write(p, &v) == FS_OK);
    CHECK(!dir_has_temp());
    CHECK(fs_case_volume_read(p, &r) == FS_OK);
    CHECK(!strcmp(r.case_id, "case0008") && !strcmp(r.meta.dataset, "demo") && r.meta.n_classes == 3);
    CHECK(fs_shape_equal(&r.image.data, &v.image.data) && r.image.data.dtype == FS_F32);
    CHECK(!memcmp(r.image.data.data, v.image.data.data, fs_tensor_nbytes(&v.image.data)));
    CHECK(!memcmp(r.label.data, v.label.data, fs_tensor_nbytes(&v.label)));
    CHECK(!memcmp(r.image.spacing, v.image.spacing, sizeof r.image.spacing));
    CHECK(!memcmp(r.image.affine, v.image.affine, sizeof r.image.affine));
    fs_case_volume_free(&r);

    /* Writers refuse what readers would refuse, and leave nothing. */
    const char *q = path_in("bad.h5");
    v.image.spacing[2] = 0;
    CHECK(fs_case_volume_write(q, &v) == FS_ERR);
    CHECK(msg_has("spacing", NULL));
    v.image.spacing[2] = 3;
    v.label.shape[0] = 3;
    CHECK(fs_case_volume_write(q, &v) == FS_ERR);
    v.label.shape[0] = 4;
    CHECK(!fs_is_file(q) && !dir_has_temp());
    free_made_volume(&v);
}

static void prediction_roundtrip(void) {
    fs_case_volume v;
    make_volume(&v, 3, 4, 5);
    fs_prediction p = {.meta = v.meta}, r;
    strcpy(p.case_id, "case0022");
    p.label.data = v.label;
    memcpy(p.label.spacing, v.image.spacing, sizeof p.label.spacing);
    memcpy(p.label.affine, v.image.affine, sizeof p.label.affine);
    const char *path = path_in("pred.h5");
    CHECK(fs_prediction_write(path, &p) == FS_OK);
    CHECK(fs_prediction_read(path, &r) == FS_OK);
    CHECK(!strcmp(r.case_id, "case0022") && r.meta.n_classes == 3);
    CHECK(r.label.data.dtype == FS_U8 && fs_shape_equal(&r.label.data, &v.label));
    CHECK(!memcmp(r.label.data.data, v.label.data, fs_tensor_nbytes(&v.label)));
    CHECK(r.label.spacing[2] == 3.0 && r.label.affine[0][3] == 120.5);
    fs_prediction_free(&r);
    /* A prediction is not a volume and the other way round. */
    fs_case_volume cv;
    CHECK(fs_case_volume_read(path, &cv) == FS_ERR);
    CHECKF(msg_has("pred.h5': not a fewsam.volume file (schema 'fewsam.prediction')", NULL), "%s", fs_error_msg());
    free_made_volume(&v);
}

/* Root attributes of a shard written by hand, to build broken files. */
static int write_root(fs_h5 *f, const char *schema, int64_t version) {
    char *names[2] = {"background", "tumour"};
    double sp[3] = {1, 1, 1}, aff[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    return fs_h5_attr_set_str(f, "/", "schema", schema) || fs_h5_attr_set_i64(f, "/", "version", &version, 1) ||
           fs_h5_attr_set_str(f, "/", "dataset", "brats") || fs_h5_attr_set_str(f, "/", "provenance", "hand") ||
           fs_h5_write_strings(f, "classes", names, 2) || fs_h5_attr_set_str(f, "/", "case_id", "c1") ||
           fs_h5_attr_set_f64(f, "/", "spacing", sp, 3) || fs_h5_attr_set_f64(f, "/", "affine", aff, 16);
}

/* A fewsam.volume file with an image [2,3,4] and a label of shape lshape
 * (lndim 0: no label). */
static int write_volume_by_hand(const char *path, const char *schema, int64_t version, int lndim,
                                const size_t *lshape) {
    fs_h5 *f;
    fs_tensor im, lb;
    size_t shape[3] = {2, 3, 4};
    if (fs_h5_create(&f, path)) return FS_ERR;
    int rc = write_root(f, schema, version);
    fs_tensor_alloc(&im, FS_F32, 3, shape);
    if (!rc) rc = fs_h5_write(f, "image", &im);
    if (!rc && lndim) {
        fs_tensor_alloc(&lb, FS_U8, lndim, lshape);
        rc = fs_h5_write(f, "label", &lb);
        fs_tensor_free(&lb);
    }
    fs_tensor_free(&im);
    if (rc) {
        fs_h5_close(f);
        return FS_ERR;
    }
    return fs_h5_commit(f);
}

static void readers_reject_bad_files(void) {
    fs_case_volume v;
    fs_slices s;
    size_t good[3] = {2, 3, 4}, wrong[3] = {2, 4, 3};
    const char *ok = path_in("ok.h5");
    CHECK(write_volume_by_hand(ok, "fewsam.volume", 1, 3, good) == FS_OK);
    CHECK(fs_case_volume_read(ok, &v) == FS_OK);
    CHECK(v.meta.n_classes == 2 && v.label.shape[2] == 4);
    fs_case_volume_free(&v);

    CHECK(fs_slices_read(ok, &s) == FS_ERR);
    CHECKF(msg_has("ok.h5': not a fewsam.slices file (schema 'fewsam.volume')", NULL), "%s", fs_error_msg());

    const char *p = path_in("nolabel.h5");
    CHECK(write_volume_by_hand(p, "fewsam.volume", 1, 0, NULL) == FS_OK);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("nolabel.h5", "missing dataset 'label'"), "%s", fs_error_msg());

    p = path_in("shape.h5");
    CHECK(write_volume_by_hand(p, "fewsam.volume", 1, 3, wrong) == FS_OK);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("shape.h5", "'label' shape [2,4,3] differs from 'image' shape [2,3,4]"), "%s", fs_error_msg());

    p = path_in("rank.h5");
    CHECK(write_volume_by_hand(p, "fewsam.volume", 1, 2, good) == FS_OK);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("rank.h5", "'label'"), "%s", fs_error_msg());

    p = path_in("v2.h5");
    CHECK(write_volume_by_hand(p, "fewsam.volume", 2, 3, good) == FS_OK);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("v2.h5", "unsupported fewsam.volume version 2"), "%s", fs_error_msg());

    /* No schema at all (a TransUNet test volume, say). */
    fs_h5 *f;
    p = path_in("plain.h5");
    CHECK(fs_h5_create(&f, p) == FS_OK && fs_h5_commit(f) == FS_OK);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("plain.h5': not a fewsam.volume file", NULL), "%s", fs_error_msg());

    /* Label values beyond the class list (two classes named, value 5). */
    p = path_in("classes.h5");
    CHECK(fs_h5_create(&f, p) == FS_OK);
    CHECK(write_root(f, "fewsam.prediction", 1) == FS_OK);
    fs_tensor lb;
    CHECK(fs_tensor_alloc(&lb, FS_U8, 3, good) == FS_OK);
    ((uint8_t *)lb.data)[7] = 5;
    CHECK(fs_h5_write(f, "label", &lb) == FS_OK);
    fs_tensor_free(&lb);
    CHECK(fs_h5_commit(f) == FS_OK);
    fs_prediction pr;
    CHECK(fs_prediction_read(p, &pr) == FS_ERR);
    CHECKF(msg_has("classes.h5", "class 5 but only 2 classes"), "%s", fs_error_msg());

    /* Truncated: an error naming the file, not a crash. */
    unsigned char *buf;
    size_t n;
    CHECK(fs_read_file(ok, &buf, &n) == FS_OK);
    p = path_in("cut.h5");
    FILE *fp = fopen(p, "wb");
    CHECK(fp != NULL);
    fwrite(buf, 1, n / 2, fp);
    fclose(fp);
    free(buf);
    CHECK(fs_case_volume_read(p, &v) == FS_ERR);
    CHECKF(msg_has("cut.h5", NULL), "%s", fs_error_msg());
    CHECK(fs_slices_read(path_in("absent.h5"), &s) == FS_ERR);
    CHECK(msg_has("no such file", NULL));
}

/* A slices file whose case_id list is shorter than its images. */
static void slices_reject_inconsistent_lengths(void) {
    const char *p = path_in("ids.h5");
    fs_h5 *f;
    CHECK(fs_h5_create(&f, p) == FS_OK);
    CHECK(write_root(f, "fewsam.slices", 1) == FS_OK);
    fs_tensor im, lb, si;
    size_t shape[3] = {3, 4, 4}, n3 = 3;
    fs_tensor_alloc(&im, FS_F32, 3, shape);
    fs_tensor_alloc(&lb, FS_U8, 3, shape);
    fs_tensor_alloc(&si, FS_I32, 1, &n3);
    char *ids[2] = {"a", "b"};
    CHECK(fs_h5_write(f, "image", &im) == FS_OK && fs_h5_write(f, "label", &lb) == FS_OK);
    CHECK(fs_h5_write(f, "slice_index", &si) == FS_OK && fs_h5_write_strings(f, "case_id", ids, 2) == FS_OK);
    fs_tensor_free(&im);
    fs_tensor_free(&lb);
    fs_tensor_free(&si);
    CHECK(fs_h5_commit(f) == FS_OK);
    fs_slices s;
    CHECK(fs_slices_read(p, &s) == FS_ERR);
    CHECKF(msg_has("ids.h5", "'case_id' has 2 entries for 3 slices"), "%s", fs_error_msg());
    CHECK(fs_slices_read_labels(p, &s) == FS_ERR); /* the labels-only read checks as much */
    CHECKF(msg_has("ids.h5", "'case_id' has 2 entries for 3 slices"), "%s", fs_error_msg());
}

/* The files are plain HDF5 that h5py reads with the documented layout. */
static void h5py_sees_schema(void) {
    if (system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0) SKIP("python3 h5py not installed");
    fs_case_volume v;
    make_volume(&v, 2, 3, 4);
    const char *p = path_in("py.h5");
    CHECK(fs_case_volume_write(p, &v) == FS_OK);
    free_made_volume(&v);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, h5py\n"
             "f = h5py.File(sys.argv[1], 'r')\n"
             "assert f.attrs['schema'] == 'fewsam.volume' and f.attrs['version'] == 1\n"
             "assert f['image'].shape == (2, 3, 4) and f['label'].dtype == 'uint8'\n"
             "assert [c.decode() for c in f['classes'][:]] == ['background', 'liver', 'spleen']\n"
             "assert list(f.attrs['spacing']) == [0.7, 0.7, 3.0] and f.attrs['affine'][3] == 120.5\n"
             "assert f.attrs['case_id'] == 'case0008'\" '%s'",
             p);
    CHECK(system(cmd) == 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", test_tmp_dir("shard"));
    RUN(meta_copy_and_free);
    RUN(slices_roundtrip);
    RUN(slices_empty_and_abort);
    RUN(volume_roundtrip);
    RUN(prediction_roundtrip);
    RUN(readers_reject_bad_files);
    RUN(slices_reject_inconsistent_lengths);
    RUN(h5py_sees_schema);
    TEST_EXIT();
}
