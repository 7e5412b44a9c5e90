/* Data sets in their native layouts, seen as a list of cases that load into
 * canonical-orientation volumes: image f32 in [0, 1], label u8 with the data
 * set's class numbering. The loader stage turns them into shards. */
#ifndef FS_DATASET_H
#define FS_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/shard.h"
#include "data/volume.h"

typedef enum { FS_DS_BRATS, FS_DS_SYNAPSE, FS_DS_TRANSUNET, FS_DS_PHANTOM } fs_dataset_kind;

/* BraTS label handling: whole tumour (label > 0) or three sub-regions
 * (1 necrotic/non-enhancing core, 2 edema, 3 enhancing). */
typedef enum { FS_BRATS_WHOLE, FS_BRATS_REGIONS } fs_brats_labels;

typedef enum { FS_SPLIT_UNSET, FS_SPLIT_TRAIN, FS_SPLIT_TEST } fs_split;

typedef struct {
    char id[128];           /* "BraTS15_pat0001", "case0001", "demo0003" */
    long number;            /* numeric id where the layout has one, else -1 */
    char image_path[4096];  /* native files ("" for the phantom) */
    char label_path[4096];
    int is_2023;            /* BraTS 2023 names (-t2f / -seg) */
    size_t n_slices;        /* TransUNet train layout: npz slices of this case */
    fs_split split;
} fs_case_ref;

typedef struct {
    fs_dataset_kind kind;
    char root[4096];
    fs_shard_meta meta;     /* data set name and class names */
    size_t n_cases;
    fs_case_ref *cases;
    /* settings */
    fs_brats_labels brats_labels;
    double pct_lo, pct_hi;  /* BraTS robust range percentiles */
    double hu_lo, hu_hi;    /* CT window */
    uint64_t seed;          /* phantom */
    size_t phantom_cases;
} fs_dataset;

/* Fills defaults for a kind (class names, percentiles, window). */
void fs_dataset_init(fs_dataset *ds, fs_dataset_kind kind);
/* Finds the cases under root (none under root is an error naming the
 * layout that was looked for). The phantom has phantom_cases cases. */
int fs_dataset_scan(fs_dataset *ds, const char *root);
/* Loads case i into canonical orientation. TransUNet train cases load as a
 * stack of their npz slices (affine: identity). */
int fs_dataset_load(const fs_dataset *ds, size_t i, fs_volume *image, fs_volume *label);
void fs_dataset_free(fs_dataset *ds);

/* The TransUNet Synapse test cases (numbers of imgNNNN). */
extern const long fs_transunet_test_cases[12];

/* Layout-specific scans and loads (one file each). */
int fs_brats_scan(fs_dataset *ds);
int fs_brats_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label);
int fs_synapse_scan(fs_dataset *ds);
int fs_synapse_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label);
int fs_transunet_scan(fs_dataset *ds);
int fs_transunet_load(const fs_dataset *ds, const fs_case_ref *c, fs_volume *image, fs_volume *label);

/* Shared by the loads: checks that label and image grids agree (shape, and
 * affine within 1e-3 mm), naming both files otherwise. */
int fs_dataset_check_pair(const fs_volume *image, const char *image_path, const fs_volume *label,
                          const char *label_path);
/* Converts a label volume read as f32 into u8 through map (values must be
 * integers in [0, 255]; others are an error naming the file). */
int fs_dataset_labels_u8(fs_volume *label, const uint8_t map[256], const char *path);

#endif
