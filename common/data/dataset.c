#include "data/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/phantom.h"
#include "data/preprocess.h"

const long fs_transunet_test_cases[12] = {1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38};

static const char *const brats_whole[] = {"background", "whole tumour"};
static const char *const brats_regions[] = {"background", "tumour core", "edema", "enhancing tumour"};
/* TransUNet's 8-organ numbering. */
static const char *const synapse_organs[] = {"background", "aorta", "gallbladder", "left kidney",
                                             "right kidney", "liver", "pancreas", "spleen", "stomach"};

static void set_classes(fs_shard_meta *m, const char *name, const char *const *names, size_t n) {
    fs_shard_meta_free(m);
    snprintf(m->dataset, sizeof m->dataset, "%s", name);
    m->n_classes = n;
    m->class_names = calloc(n, sizeof *m->class_names);
    for (size_t i = 0; i < n; i++) m->class_names[i] = strdup(names[i]);
}

void fs_dataset_init(fs_dataset *ds, fs_dataset_kind kind) {
    memset(ds, 0, sizeof *ds);
    ds->kind = kind;
    ds->pct_lo = 0.5;
    ds->pct_hi = 99.5;
    ds->hu_lo = -125;
    ds->hu_hi = 275;
    ds->phantom_cases = 8;
    switch (kind) {
    case FS_DS_BRATS: set_classes(&ds->meta, "brats", brats_whole, 2); break;
    case FS_DS_SYNAPSE:
    case FS_DS_TRANSUNET: set_classes(&ds->meta, "synapse", synapse_organs, 9); break;
    case FS_DS_PHANTOM: set_classes(&ds->meta, "demo", fs_phantom_class_names, fs_phantom_n_classes); break;
    }
}

int fs_dataset_scan(fs_dataset *ds, const char *root) {
    if (ds->kind == FS_DS_BRATS && ds->brats_labels == FS_BRATS_REGIONS)
        set_classes(&ds->meta, "brats", brats_regions, 4);
    snprintf(ds->root, sizeof ds->root, "%s", root ? root : "");
    switch (ds->kind) {
    case FS_DS_BRATS: return fs_brats_scan(ds);
    case FS_DS_SYNAPSE: return fs_synapse_scan(ds);
    case FS_DS_TRANSUNET: return fs_transunet_scan(ds);
    case FS_DS_PHANTOM:
        if (ds->phantom_cases == 0) return fs_error("the phantom needs at least one case");
        ds->n_cases = ds->phantom_cases;
        ds->cases = calloc(ds->n_cases, sizeof *ds->cases);
        if (!ds->cases) return fs_error("out of memory");
        for (size_t i = 0; i < ds->n_cases; i++) {
            snprintf(ds->cases[i].id, sizeof ds->cases[i].id, "demo%04zu", i + 1);
            ds->cases[i].number = (long)i + 1;
        }
        snprintf(ds->root, sizeof ds->root, "phantom(seed=%llu)", (unsigned long long)ds->seed);
        return FS_OK;
    }
    return fs_error("unknown data set kind");
}

static int phantom_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label) {
    fs_phantom_params p = fs_phantom_default_params;
    if (fs_phantom_case(ds->seed, (size_t)(c->number - 1), &p, image, label)) return FS_ERR;
    fs_window01(image->data.data, fs_tensor_numel(&image->data), (float)ds->hu_lo, (float)ds->hu_hi);
    if (fs_volume_canonical(image) || fs_volume_canonical(label)) return FS_ERR;
    return FS_OK;
}

int fs_dataset_load(const fs_dataset *ds, size_t i, fs_volume *image, fs_volume *label) {
    memset(image, 0, sizeof *image);
    memset(label, 0, sizeof *label);
    const fs_case_ref *c = &ds->cases[i];
    int rc;
    switch (ds->kind) {
    case FS_DS_BRATS: rc = fs_brats_load(ds, c, image, label); break;
    case FS_DS_SYNAPSE: rc = fs_synapse_load(ds, c, image, label); break;
    case FS_DS_TRANSUNET: rc = fs_transunet_load(ds, c, image, label); break;
    case FS_DS_PHANTOM: rc = phantom_load(ds, c, image, label); break;
    default: rc = fs_error("unknown data set kind");
    }
    if (rc) {
        fs_volume_free(image);
        fs_volume_free(label);
    }
    return rc;
}

void fs_dataset_free(fs_dataset *ds) {
    fs_shard_meta_free(&ds->meta);
    free(ds->cases);
    ds->cases = NULL;
    ds->n_cases = 0;
}

int fs_dataset_check_pair(const fs_volume *image, const char *image_path, const fs_volume *label,
                          const char *label_path) {
    char a[64], b[64];
    if (!fs_shape_equal(&image->data, &label->data))
        return fs_error("'%s': label shape %s differs from image shape %s of '%s'", label_path,
                        fs_shape_str(&label->data, a, sizeof a), fs_shape_str(&image->data, b, sizeof b),
                        image_path);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(image->affine[r][c] - label->affine[r][c]) > 1e-3 * (1 + fabs(image->affine[r][c])))
                return fs_error("'%s': label affine differs from the affine of '%s' (row %d, column %d: %g vs %g)",
                                label_path, image_path, r, c, label->affine[r][c], image->affine[r][c]);
    return FS_OK;
}

int fs_dataset_labels_u8(fs_volume *label, const uint8_t map[256], const char *path) {
    size_t n = fs_tensor_numel(&label->data);
    fs_tensor out;
    if (fs_tensor_alloc(&out, FS_U8, label->data.ndim, label->data.shape)) return FS_ERR;
    uint8_t *o = out.data;
    for (size_t i = 0; i < n; i++) {
        double v = fs_tensor_get(&label->data, i);
        if (!(v >= 0 && v <= 255) || v != floor(v)) {
            fs_tensor_free(&out);
            return fs_error("'%s': label value %g at voxel %zu is not an integer in [0, 255]", path, v, i);
        }
        o[i] = map ? map[(int)v] : (uint8_t)v;
    }
    fs_tensor_free(&label->data);
    label->data = out;
    return FS_OK;
}
