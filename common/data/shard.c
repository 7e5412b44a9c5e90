/* The three shard schemas (schemas/slices.md, volume.md, prediction.md) over
 * io/h5. Writers validate what they are given; readers check schema,
 * version, every dataset's dtype and shape, and label values against the
 * class list, before handing anything to a stage. */
#include "data/shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/h5.h"

#define SCHEMA_SLICES "fewsam.slices"
#define SCHEMA_VOLUME "fewsam.volume"
#define SCHEMA_PREDICTION "fewsam.prediction"
#define SHARD_VERSION 1
/* Labels are u8: at most 256 classes. Images beyond 65536 pixels a side are
 * not medical slices but a corrupt header. */
#define MAX_CLASSES 256
#define MAX_SIDE 65536

/* ---- metadata ---- */

void fs_shard_meta_free(fs_shard_meta *m) {
    if (!m) return;
    if (m->class_names) fs_free_list(m->class_names, m->n_classes);
    free(m->provenance);
    memset(m, 0, sizeof *m);
}

int fs_shard_meta_copy(fs_shard_meta *dst, const fs_shard_meta *src) {
    memset(dst, 0, sizeof *dst);
    memcpy(dst->dataset, src->dataset, sizeof dst->dataset);
    dst->dataset[sizeof dst->dataset - 1] = 0;
    if (src->n_classes) {
        dst->class_names = calloc(src->n_classes, sizeof *dst->class_names);
        if (!dst->class_names) return fs_error("out of memory");
        dst->n_classes = src->n_classes;
        for (size_t i = 0; i < src->n_classes; i++) {
            dst->class_names[i] = strdup(src->class_names && src->class_names[i] ? src->class_names[i] : "");
            if (!dst->class_names[i]) { fs_shard_meta_free(dst); return fs_error("out of memory"); }
        }
    }
    dst->provenance = strdup(src->provenance ? src->provenance : "");
    if (!dst->provenance) { fs_shard_meta_free(dst); return fs_error("out of memory"); }
    return FS_OK;
}

static int check_meta(const char *path, const fs_shard_meta *m) {
    if (m->n_classes < 1 || m->n_classes > MAX_CLASSES)
        return fs_error("cannot write '%s': %zu classes (1 to %d, background included)", path, m->n_classes,
                        MAX_CLASSES);
    if (!m->class_names) return fs_error("cannot write '%s': no class names", path);
    for (size_t i = 0; i < m->n_classes; i++)
        if (!m->class_names[i]) return fs_error("cannot write '%s': class %zu has no name", path, i);
    if (!memchr(m->dataset, 0, sizeof m->dataset)) return fs_error("cannot write '%s': data set name too long", path);
    return FS_OK;
}

static int write_meta(fs_h5 *f, const char *schema, const fs_shard_meta *m) {
    int64_t version = SHARD_VERSION;
    if (check_meta(fs_h5_path(f), m)) return FS_ERR;
    if (fs_h5_attr_set_str(f, "/", "schema", schema) || fs_h5_attr_set_i64(f, "/", "version", &version, 1) ||
        fs_h5_attr_set_str(f, "/", "dataset", m->dataset) ||
        fs_h5_attr_set_str(f, "/", "provenance", m->provenance ? m->provenance : "") ||
        fs_h5_write_strings(f, "classes", m->class_names, m->n_classes))
        return FS_ERR;
    return FS_OK;
}

/* Checks schema name and version first, so a wrong file gets the message
 * that says so rather than one about a missing dataset. */
static int read_meta(fs_h5 *f, const char *schema, fs_shard_meta *m) {
    const char *path = fs_h5_path(f);
    memset(m, 0, sizeof *m);
    char *s = NULL;
    if (fs_h5_attr_get_str(f, "/", "schema", &s))
        return fs_error("'%s': not a %s file (no schema attribute)", path, schema);
    if (strcmp(s, schema)) {
        fs_error("'%s': not a %s file (schema '%.100s')", path, schema, s);
        free(s);
        return FS_ERR;
    }
    free(s);
    int64_t version;
    if (fs_h5_attr_get_i64(f, "/", "version", &version, 1)) return FS_ERR;
    if (version != SHARD_VERSION)
        return fs_error("'%s': unsupported %s version %lld (this build reads version %d)", path, schema,
                        (long long)version, SHARD_VERSION);
    if (fs_h5_attr_get_str(f, "/", "dataset", &s)) return FS_ERR;
    size_t len = strlen(s);
    if (len >= sizeof m->dataset) {
        free(s);
        return fs_error("'%s': data set name too long (%zu characters)", path, len);
    }
    memcpy(m->dataset, s, len + 1);
    free(s);
    if (fs_h5_attr_get_str(f, "/", "provenance", &m->provenance)) return FS_ERR;
    size_t n;
    if (fs_h5_read_strings(f, "classes", &m->class_names, &n)) { fs_shard_meta_free(m); return FS_ERR; }
    m->n_classes = n;
    if (n < 1 || n > MAX_CLASSES) {
        fs_shard_meta_free(m);
        return fs_error("'%s': %zu class names (1 to %d expected, background first)", path, n, MAX_CLASSES);
    }
    return FS_OK;
}

/* Dataset `name` must exist with this dtype and rank; its shape comes back. */
static int expect_dataset(fs_h5 *f, const char *name, fs_dtype dtype, int ndim, size_t shape[FS_MAX_DIMS]) {
    fs_dtype dt;
    int nd;
    if (fs_h5_info(f, name, &dt, &nd, shape)) return FS_ERR;
    if (dt != dtype || nd != ndim) {
        fs_tensor t = {.dtype = dt, .ndim = nd};
        memcpy(t.shape, shape, sizeof t.shape);
        char buf[128];
        return fs_error("'%s': dataset '%s' is %s %s, expected %s with %d dimensions", fs_h5_path(f), name,
                        fs_dtype_name(dt), fs_shape_str(&t, buf, sizeof buf), fs_dtype_name(dtype), ndim);
    }
    return FS_OK;
}

static int same_shape(fs_h5 *f, const char *a, const size_t *sa, const char *b, const size_t *sb, int ndim) {
    for (int i = 0; i < ndim; i++)
        if (sa[i] != sb[i]) {
            fs_tensor ta = {.ndim = ndim}, tb = {.ndim = ndim};
            memcpy(ta.shape, sa, ndim * sizeof *sa);
            memcpy(tb.shape, sb, ndim * sizeof *sb);
            char ba[128], bb[128];
            return fs_error("'%s': '%s' shape %s differs from '%s' shape %s", fs_h5_path(f), b,
                            fs_shape_str(&tb, bb, sizeof bb), a, fs_shape_str(&ta, ba, sizeof ba));
        }
    return FS_OK;
}

static int check_labels(const char *path, const char *what, const uint8_t *lab, size_t n, size_t n_classes) {
    uint8_t mx = 0;
    for (size_t i = 0; i < n; i++) mx = lab[i] > mx ? lab[i] : mx;
    if (mx >= n_classes)
        return fs_error("'%s': %s holds class %d but only %zu classes are named", path, what, mx, n_classes);
    return FS_OK;
}

static int check_volume_dims(const char *path, const char *name, const size_t *shape) {
    for (int i = 0; i < 3; i++)
        if (shape[i] < 1 || shape[i] > MAX_SIDE)
            return fs_error("'%s': '%s' has an absurd extent %zu along axis %d", path, name, shape[i], i);
    return FS_OK;
}

static int check_geometry(const char *path, const double spacing[3], const double affine[4][4]) {
    for (int i = 0; i < 3; i++)
        if (!isfinite(spacing[i]) || spacing[i] <= 0 || spacing[i] > 1e4)
            return fs_error("'%s': spacing %g along axis %d is not a positive size in mm", path, spacing[i], i);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(affine[r][c])) return fs_error("'%s': affine holds a non-finite value", path);
    return FS_OK;
}

/* ---- fewsam.slices ---- */

struct fs_slice_writer {
    fs_h5 *f;
    size_t h, w, n, cap, n_classes;
    char **case_ids;    /* kept until commit: small next to the pixels */
    int32_t *slice_index;
};

int fs_slice_writer_open(fs_slice_writer **out, const char *path, const fs_shard_meta *meta, size_t h, size_t wd) {
    *out = NULL;
    if (h < 1 || wd < 1 || h > MAX_SIDE || wd > MAX_SIDE)
        return fs_error("cannot write '%s': slice size %zux%zu out of range", path, h, wd);
    if (check_meta(path, meta)) return FS_ERR;
    fs_slice_writer *w = calloc(1, sizeof *w);
    if (!w) return fs_error("out of memory");
    w->h = h;
    w->w = wd;
    w->n_classes = meta->n_classes;
    if (fs_h5_create(&w->f, path) || write_meta(w->f, SCHEMA_SLICES, meta)) {
        fs_slice_writer_abort(w);
        return FS_ERR;
    }
    *out = w;
    return FS_OK;
}

int fs_slice_writer_add(fs_slice_writer *w, const float *image, const uint8_t *label, const char *case_id,
                        int32_t slice_index) {
    const char *path = fs_h5_path(w->f);
    if (!case_id || strlen(case_id) >= 128)
        return fs_error("'%s': slice %zu: case id missing or too long", path, w->n);
    if (check_labels(path, "a label slice", label, w->h * w->w, w->n_classes)) return FS_ERR;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        char **ids = realloc(w->case_ids, cap * sizeof *ids);
        if (ids) w->case_ids = ids;
        int32_t *si = realloc(w->slice_index, cap * sizeof *si);
        if (si) w->slice_index = si;
        if (!ids || !si) return fs_error("out of memory");
        w->cap = cap;
    }
    char *id = strdup(case_id);
    if (!id) return fs_error("out of memory");
    fs_tensor im = {.dtype = FS_F32, .ndim = 3, .shape = {1, w->h, w->w}, .data = (void *)image};
    fs_tensor lb = {.dtype = FS_U8, .ndim = 3, .shape = {1, w->h, w->w}, .data = (void *)label};
    if (fs_h5_append(w->f, "image", &im) || fs_h5_append(w->f, "label", &lb)) {
        free(id);
        return FS_ERR;
    }
    w->case_ids[w->n] = id;
    w->slice_index[w->n] = slice_index;
    w->n++;
    return FS_OK;
}

size_t fs_slice_writer_count(const fs_slice_writer *w) { return w->n; }

static void writer_free(fs_slice_writer *w) {
    if (w->case_ids) fs_free_list(w->case_ids, w->n);
    free(w->slice_index);
    free(w);
}

/* A shard of zero slices is valid: [0, h, w] datasets (a sampler may pick
 * nothing from a tiny data set; readers then see n == 0). */
int fs_slice_writer_commit(fs_slice_writer *w) {
    int rc = FS_OK;
    if (w->n == 0) {
        fs_tensor im = {.dtype = FS_F32, .ndim = 3, .shape = {0, w->h, w->w}};
        fs_tensor lb = {.dtype = FS_U8, .ndim = 3, .shape = {0, w->h, w->w}};
        rc = fs_h5_append(w->f, "image", &im) || fs_h5_append(w->f, "label", &lb);
    }
    fs_tensor si = {.dtype = FS_I32, .ndim = 1, .shape = {w->n}, .data = w->slice_index};
    if (!rc) rc = fs_h5_write_strings(w->f, "case_id", w->case_ids, w->n) || fs_h5_write(w->f, "slice_index", &si);
    if (rc) {
        fs_slice_writer_abort(w);
        return FS_ERR;
    }
    rc = fs_h5_commit(w->f);
    writer_free(w);
    return rc ? FS_ERR : FS_OK;
}

void fs_slice_writer_abort(fs_slice_writer *w) {
    if (!w) return;
    fs_h5_close(w->f);
    writer_free(w);
}

static int slices_read(const char *path, fs_slices *s, int with_image) {
    memset(s, 0, sizeof *s);
    fs_h5 *f;
    if (fs_h5_open(&f, path)) return FS_ERR;
    size_t si[FS_MAX_DIMS], sl[FS_MAX_DIMS], sx[FS_MAX_DIMS], nid = 0;
    int rc = read_meta(f, SCHEMA_SLICES, &s->meta);
    if (!rc) rc = expect_dataset(f, "image", FS_F32, 3, si);
    if (!rc) rc = expect_dataset(f, "label", FS_U8, 3, sl);
    if (!rc) rc = same_shape(f, "image", si, "label", sl, 3);
    if (!rc && (si[1] < 1 || si[2] < 1 || si[1] > MAX_SIDE || si[2] > MAX_SIDE))
        rc = fs_error("'%s': slice size %zux%zu out of range", path, si[1], si[2]);
    if (!rc) rc = expect_dataset(f, "slice_index", FS_I32, 1, sx);
    if (!rc && sx[0] != si[0])
        rc = fs_error("'%s': 'slice_index' has %zu entries for %zu slices", path, sx[0], si[0]);
    if (!rc) rc = fs_h5_read_strings(f, "case_id", &s->case_ids, &nid);
    if (!rc && nid != si[0]) rc = fs_error("'%s': 'case_id' has %zu entries for %zu slices", path, nid, si[0]);
    if (!rc) {
        s->n = si[0];
        s->h = si[1];
        s->w = si[2];
        if (with_image) rc = fs_h5_read(f, "image", &s->image);
    }
    if (!rc) rc = fs_h5_read(f, "label", &s->label);
    fs_tensor t = {0};
    if (!rc) rc = fs_h5_read(f, "slice_index", &t);
    if (!rc) {
        s->slice_index = t.data; /* fs_tensor_alloc memory: freed with free() */
        rc = check_labels(path, "'label'", s->label.data, fs_tensor_numel(&s->label), s->meta.n_classes);
    }
    fs_h5_close(f);
    if (rc) {
        if (!s->case_ids) nid = 0;
        s->n = nid;
        fs_slices_free(s);
        return FS_ERR;
    }
    return FS_OK;
}

int fs_slices_read(const char *path, fs_slices *s) { return slices_read(path, s, 1); }

int fs_slices_read_labels(const char *path, fs_slices *s) { return slices_read(path, s, 0); }

void fs_slices_free(fs_slices *s) {
    if (!s) return;
    fs_shard_meta_free(&s->meta);
    fs_tensor_free(&s->image);
    fs_tensor_free(&s->label);
    if (s->case_ids) fs_free_list(s->case_ids, s->n);
    free(s->slice_index);
    memset(s, 0, sizeof *s);
}

/* ---- geometry attributes shared by volumes and predictions ---- */

static int write_geometry(fs_h5 *f, const char *case_id, const fs_volume *v) {
    double aff[16];
    memcpy(aff, v->affine, sizeof aff);
    return fs_h5_attr_set_str(f, "/", "case_id", case_id) || fs_h5_attr_set_f64(f, "/", "spacing", v->spacing, 3) ||
                   fs_h5_attr_set_f64(f, "/", "affine", aff, 16)
               ? FS_ERR
               : FS_OK;
}

static int read_geometry(fs_h5 *f, char case_id[128], fs_volume *v) {
    char *s;
    if (fs_h5_attr_get_str(f, "/", "case_id", &s)) return FS_ERR;
    size_t len = strlen(s);
    if (len >= 128) {
        free(s);
        return fs_error("'%s': case id too long (%zu characters)", fs_h5_path(f), len);
    }
    memcpy(case_id, s, len + 1);
    free(s);
    double aff[16];
    if (fs_h5_attr_get_f64(f, "/", "spacing", v->spacing, 3) || fs_h5_attr_get_f64(f, "/", "affine", aff, 16))
        return FS_ERR;
    memcpy(v->affine, aff, sizeof aff);
    return check_geometry(fs_h5_path(f), v->spacing, v->affine);
}

static int check_case_id(const char *path, const char *case_id) {
    if (!memchr(case_id, 0, 128) || !case_id[0]) return fs_error("cannot write '%s': case id empty or too long", path);
    return FS_OK;
}

/* ---- fewsam.volume ---- */

int fs_case_volume_write(const char *path, const fs_case_volume *v) {
    const fs_tensor *im = &v->image.data, *lb = &v->label;
    char b1[128], b2[128];
    if (im->dtype != FS_F32 || im->ndim != 3 || lb->dtype != FS_U8 || !fs_shape_equal(im, lb))
        return fs_error("cannot write '%s': need image f32 [nz,ny,nx] and label u8 of the same shape (got %s %s, %s %s)",
                        path, fs_dtype_name(im->dtype), fs_shape_str(im, b1, sizeof b1), fs_dtype_name(lb->dtype),
                        fs_shape_str(lb, b2, sizeof b2));
    if (check_meta(path, &v->meta) || check_case_id(path, v->case_id) ||
        check_volume_dims(path, "image", im->shape) || check_geometry(path, v->image.spacing, v->image.affine) ||
        check_labels(path, "the label volume", lb->data, fs_tensor_numel(lb), v->meta.n_classes))
        return FS_ERR;
    fs_h5 *f;
    if (fs_h5_create(&f, path)) return FS_ERR;
    if (write_meta(f, SCHEMA_VOLUME, &v->meta) || write_geometry(f, v->case_id, &v->image) ||
        fs_h5_write(f, "image", im) || fs_h5_write(f, "label", lb)) {
        fs_h5_close(f);
        return FS_ERR;
    }
    return fs_h5_commit(f);
}

int fs_case_volume_read(const char *path, fs_case_volume *v) {
    memset(v, 0, sizeof *v);
    fs_h5 *f;
    if (fs_h5_open(&f, path)) return FS_ERR;
    size_t si[FS_MAX_DIMS], sl[FS_MAX_DIMS];
    int rc = read_meta(f, SCHEMA_VOLUME, &v->meta);
    if (!rc) rc = read_geometry(f, v->case_id, &v->image);
    if (!rc) rc = expect_dataset(f, "image", FS_F32, 3, si);
    if (!rc) rc = expect_dataset(f, "label", FS_U8, 3, sl);
    if (!rc) rc = same_shape(f, "image", si, "label", sl, 3);
    if (!rc) rc = check_volume_dims(path, "image", si);
    if (!rc) rc = fs_h5_read(f, "image", &v->image.data);
    if (!rc) rc = fs_h5_read(f, "label", &v->label);
    if (!rc) rc = check_labels(path, "'label'", v->label.data, fs_tensor_numel(&v->label), v->meta.n_classes);
    fs_h5_close(f);
    if (rc) fs_case_volume_free(v);
    return rc;
}

void fs_case_volume_free(fs_case_volume *v) {
    if (!v) return;
    fs_shard_meta_free(&v->meta);
    fs_tensor_free(&v->image.data);
    fs_tensor_free(&v->label);
    memset(v, 0, sizeof *v);
}

/* ---- fewsam.prediction ---- */

int fs_prediction_write(const char *path, const fs_prediction *p) {
    const fs_tensor *lb = &p->label.data;
    char b[128];
    if (lb->dtype != FS_U8 || lb->ndim != 3)
        return fs_error("cannot write '%s': need label u8 [nz,ny,nx] (got %s %s)", path, fs_dtype_name(lb->dtype),
                        fs_shape_str(lb, b, sizeof b));
    if (check_meta(path, &p->meta) || check_case_id(path, p->case_id) || check_volume_dims(path, "label", lb->shape) ||
        check_geometry(path, p->label.spacing, p->label.affine) ||
        check_labels(path, "the label volume", lb->data, fs_tensor_numel(lb), p->meta.n_classes))
        return FS_ERR;
    fs_h5 *f;
    if (fs_h5_create(&f, path)) return FS_ERR;
    if (write_meta(f, SCHEMA_PREDICTION, &p->meta) || write_geometry(f, p->case_id, &p->label) ||
        fs_h5_write(f, "label", lb)) {
        fs_h5_close(f);
        return FS_ERR;
    }
    return fs_h5_commit(f);
}

int fs_prediction_read(const char *path, fs_prediction *p) {
    memset(p, 0, sizeof *p);
    fs_h5 *f;
    if (fs_h5_open(&f, path)) return FS_ERR;
    size_t sl[FS_MAX_DIMS];
    int rc = read_meta(f, SCHEMA_PREDICTION, &p->meta);
    if (!rc) rc = read_geometry(f, p->case_id, &p->label);
    if (!rc) rc = expect_dataset(f, "label", FS_U8, 3, sl);
    if (!rc) rc = check_volume_dims(path, "label", sl);
    if (!rc) rc = fs_h5_read(f, "label", &p->label.data);
    if (!rc)
        rc = check_labels(path, "'label'", p->label.data.data, fs_tensor_numel(&p->label.data), p->meta.n_classes);
    fs_h5_close(f);
    if (rc) fs_prediction_free(p);
    return rc;
}

void fs_prediction_free(fs_prediction *p) {
    if (!p) return;
    fs_shard_meta_free(&p->meta);
    fs_tensor_free(&p->label.data);
    memset(p, 0, sizeof *p);
}
