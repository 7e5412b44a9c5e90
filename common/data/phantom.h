/* A synthetic CT-like abdomen: the data set behind `make pipeline DATA=demo`
 * and the tests that need labelled volumes without real data.
 *
 * Each case is a pure function of (seed, case_index): a body outline with
 * subcutaneous fat and a muscle wall, a spine with discs and psoas muscles,
 * mottled bowel with gas pockets, and six labelled organs (smooth, deformed
 * ellipsoids and a tube whose position, size, shape and contrast vary per
 * case and along z, so organs appear and disappear across slices as in real
 * scans), low-frequency texture and Gaussian noise, in Hounsfield units.
 *
 * Anatomy is laid out relative to the field of view, so any grid holds a
 * whole abdomen. Geometry: the affine is diag(-sx, -sy, sz) with the volume
 * centred on the world origin, as NIfTI files converted from DICOM usually
 * have it: voxel axes point to patient Left, Posterior and Superior (LPS,
 * FS_CANONICAL), i.e. image columns run from the patient's right to left and
 * rows from anterior to posterior, and slices from feet to head. */
#ifndef FS_PHANTOM_H
#define FS_PHANTOM_H

#include <stddef.h>
#include <stdint.h>

#include "data/volume.h"

typedef struct {
    size_t nx, ny, nz;  /* voxels along i (columns), j (rows), k (slices) */
    double spacing[3];  /* mm along i, j, k */
} fs_phantom_params;

/* 128 x 128 x 48 voxels of 1.5 x 1.5 x 3 mm: small enough that a demo of
 * ~8 cases builds in a second or two. */
#define FS_PHANTOM_PARAMS_DEFAULT {128, 128, 48, {1.5, 1.5, 3.0}}
extern const fs_phantom_params fs_phantom_default_params;

/* Largest accepted size per axis, and smallest (organs need a few voxels). */
#define FS_PHANTOM_MAX_DIM 2048
#define FS_PHANTOM_MIN_DIM 8

enum {
    FS_PHANTOM_BACKGROUND = 0,
    FS_PHANTOM_LIVER,
    FS_PHANTOM_SPLEEN,
    FS_PHANTOM_KIDNEY_L,
    FS_PHANTOM_KIDNEY_R,
    FS_PHANTOM_AORTA,
    FS_PHANTOM_STOMACH,
    FS_PHANTOM_N_CLASSES
};

/* fs_phantom_n_classes names, class 0 "background". */
extern const char *const fs_phantom_class_names[];
extern const size_t fs_phantom_n_classes;
/* Nominal mean HU of each class's voxels (per-case contrast varies by a few
 * HU around it; texture and noise average out); NAN for background. */
extern const double fs_phantom_class_hu[];

/* Fills ct_hu (f32 [nz, ny, nx], HU in [-1024, 3071]) and label (u8, same
 * shape, class indices above), both with the same spacing and affine; free
 * them with fs_volume_free. p NULL means the defaults. On failure nothing is
 * left allocated. */
int fs_phantom_case(uint64_t seed, size_t case_index, const fs_phantom_params *p,
                    fs_volume *ct_hu, fs_volume *label);

#endif
