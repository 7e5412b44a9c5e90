/* TransUNet's preprocessed Synapse layout: train_npz/caseNNNN_sliceNNN.npz
 * (arrays image [h, w] already windowed to [0, 1], label [h, w] with the
 * 8-organ numbering) and test_vol_h5/caseNNNN.npy.h5 (datasets image and
 * label [z, h, w]). No geometry is stored: spacing 1 mm, identity affine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/dataset.h"
#include "io/h5.h"
#include "io/npy.h"

static fs_case_ref *find_or_add(fs_dataset *ds, long num, fs_split split, size_t cap) {
    for (size_t i = 0; i < ds->n_cases; i++)
        if (ds->cases[i].number == num && ds->cases[i].split == split) return &ds->cases[i];
    if (ds->n_cases == cap) return NULL;
    fs_case_ref *c = &ds->cases[ds->n_cases++];
    memset(c, 0, sizeof *c);
    c->number = num;
    c->split = split;
    snprintf(c->id, sizeof c->id, "case%04ld", num);
    return c;
}

int fs_transunet_scan(fs_dataset *ds) {
    char train[4200], test[4200];
    snprintf(train, sizeof train, "%s/train_npz", ds->root);
    snprintf(test, sizeof test, "%s/test_vol_h5", ds->root);
    if (!fs_is_dir(train) && !fs_is_dir(test))
        return fs_error("'%s': no TransUNet layout (looked for train_npz/ and test_vol_h5/)", ds->root);
    char **tr = NULL, **te = NULL;
    size_t ntr = 0, nte = 0;
    if (fs_is_dir(train) && fs_list_dir(train, &tr, &ntr)) return FS_ERR;
    if (fs_is_dir(test) && fs_list_dir(test, &te, &nte)) { fs_free_list(tr, ntr); return FS_ERR; }
    size_t cap = ntr + nte + 1;
    ds->cases = calloc(cap, sizeof *ds->cases);
    ds->n_cases = 0;
    for (size_t i = 0; i < nte; i++) {
        long num;
        int used = 0;
        if (sscanf(te[i], "case%ld.npy.h5%n", &num, &used) != 1 || te[i][used]) continue;
        fs_case_ref *c = find_or_add(ds, num, FS_SPLIT_TEST, cap);
        snprintf(c->image_path, sizeof c->image_path, "%s/%s", test, te[i]);
        snprintf(c->label_path, sizeof c->label_path, "%s", c->image_path);
    }
    for (size_t i = 0; i < ntr; i++) {
        long num, sl;
        int used = 0;
        if (sscanf(tr[i], "case%ld_slice%ld.npz%n", &num, &sl, &used) != 2 || tr[i][used]) continue;
        fs_case_ref *c = find_or_add(ds, num, FS_SPLIT_TRAIN, cap);
        snprintf(c->image_path, sizeof c->image_path, "%s", train);
        c->n_slices++;
    }
    fs_free_list(tr, ntr);
    fs_free_list(te, nte);
    if (ds->n_cases == 0) return fs_error("'%s': no caseNNNN_sliceNNN.npz or caseNNNN.npy.h5 files", ds->root);
    return FS_OK;
}

static int to_f32(fs_tensor *t) {
    if (t->dtype == FS_F32) return FS_OK;
    fs_tensor u;
    if (fs_tensor_convert(&u, t, FS_F32)) return FS_ERR;
    fs_tensor_free(t);
    *t = u;
    return FS_OK;
}

static void geometry_identity(fs_volume *v) {
    memset(v->affine, 0, sizeof v->affine);
    for (int a = 0; a < 4; a++) v->affine[a][a] = 1;
    v->spacing[0] = v->spacing[1] = v->spacing[2] = 1;
}

static int load_test(const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    fs_h5 *f;
    if (fs_h5_open(&f, c->image_path)) return FS_ERR;
    int rc = fs_h5_read(f, "image", &image->data);
    if (!rc) rc = fs_h5_read(f, "label", &label->data);
    fs_h5_close(f);
    if (rc) return FS_ERR;
    if (image->data.ndim != 3) return fs_error("'%s': image has %d dimensions, expected 3 [z, h, w]", c->image_path, image->data.ndim);
    if (to_f32(&image->data) || to_f32(&label->data)) return FS_ERR;
    return FS_OK;
}

/* Stacks the case's slices in slice-number order. */
static int load_train(const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    char **names;
    size_t count, k = 0;
    if (fs_list_dir(c->image_path, &names, &count)) return FS_ERR;
    char prefix[160];
    snprintf(prefix, sizeof prefix, "case%04ld_slice", c->number);
    int rc = FS_OK;
    size_t h = 0, w = 0;
    for (size_t i = 0; i < count && rc == FS_OK; i++) {
        if (strncmp(names[i], prefix, strlen(prefix))) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", c->image_path, names[i]);
        fs_tensor im, lb;
        if (fs_npz_read(path, "image", &im)) { rc = FS_ERR; break; }
        if (fs_npz_read(path, "label", &lb)) { fs_tensor_free(&im); rc = FS_ERR; break; }
        if (im.ndim != 2 || !fs_shape_equal(&im, &lb)) {
            rc = fs_error("'%s': image and label must be 2-D arrays of one shape", path);
        } else if (k == 0) {
            h = im.shape[0];
            w = im.shape[1];
            size_t shape[3] = {c->n_slices, h, w};
            if (fs_tensor_alloc(&image->data, FS_F32, 3, shape) || fs_tensor_alloc(&label->data, FS_F32, 3, shape)) rc = FS_ERR;
        } else if (im.shape[0] != h || im.shape[1] != w) {
            rc = fs_error("'%s': slice is %zux%zu, earlier slices of the case are %zux%zu", path, im.shape[0], im.shape[1], h, w);
        }
        if (rc == FS_OK && k >= c->n_slices) rc = fs_error("'%s': case changed while reading", c->image_path);
        if (rc == FS_OK) {
            float *di = (float *)image->data.data + k * h * w, *dl = (float *)label->data.data + k * h * w;
            for (size_t p = 0; p < h * w; p++) {
                di[p] = (float)fs_tensor_get(&im, p);
                dl[p] = (float)fs_tensor_get(&lb, p);
            }
            k++;
        }
        fs_tensor_free(&im);
        fs_tensor_free(&lb);
    }
    fs_free_list(names, count);
    if (rc == FS_OK && k != c->n_slices) rc = fs_error("'%s': case%04ld has %zu slices, expected %zu", c->image_path, c->number, k, c->n_slices);
    return rc;
}

int fs_transunet_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    (void)ds;
    int rc = c->split == FS_SPLIT_TEST ? load_test(c, image, label) : load_train(c, image, label);
    if (rc) return FS_ERR;
    geometry_identity(image);
    geometry_identity(label);
    if (!fs_shape_equal(&image->data, &label->data)) {
        char a[64], b[64];
        return fs_error("'%s': label shape %s differs from image shape %s", c->image_path,
                        fs_shape_str(&label->data, a, sizeof a), fs_shape_str(&image->data, b, sizeof b));
    }
    return fs_dataset_labels_u8(label, NULL, c->image_path);
}
