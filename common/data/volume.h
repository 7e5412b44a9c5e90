/* A volume in scanner space: voxel data plus the geometry that places it.
 *
 * Data are row-major [nk, nj, ni] (i fastest, as NIfTI stores them), so
 * data[k] is the k-th slice along the third voxel axis. After
 * fs_volume_canonical the axes are FS_CANONICAL: i runs toward the patient's
 * Left (image columns), j toward Posterior (image rows, anterior at the top),
 * k toward Superior (slices from feet to head): every slice is axial and
 * displays in the radiological convention, whatever the source affine
 * (RAS, LPS, LAS, ...). */
#ifndef FS_VOLUME_H
#define FS_VOLUME_H

#include "core/tensor.h"

#define FS_CANONICAL "LPS"

typedef struct {
    fs_tensor data;        /* [nk, nj, ni], any dtype */
    double spacing[3];     /* mm along i, j, k */
    double affine[4][4];   /* voxel (i, j, k, 1) -> world RAS+ mm (NIfTI convention) */
} fs_volume;

void fs_volume_free(fs_volume *v);
/* Axis codes of a voxel->RAS affine, as nibabel's aff2axcodes: codes[a] is
 * the world direction ('L','R','P','A','I','S') voxel axis a points to.
 * Fails on a singular or degenerate affine. */
int fs_volume_axcodes(const double affine[4][4], char codes[3]);
/* Permutes and flips the voxel data (no resampling) so that its axis codes
 * become `target` (three letters, one of each L/R, P/A, I/S); spacing and
 * affine are updated so every voxel keeps its world position. */
int fs_volume_reorient(fs_volume *v, const char *target);
/* fs_volume_reorient(v, FS_CANONICAL). */
int fs_volume_canonical(fs_volume *v);

#endif
