/* NIfTI-1 and NIfTI-2 images (.nii and .nii.gz), read with our own parser
 * over zlib; NIfTI-1 written. */
#ifndef FS_NIFTI_H
#define FS_NIFTI_H

#include "data/volume.h"

/* Reads a 3D volume (a 4D file with nt == 1 is accepted). Every datatype
 * scanners write (u8, i8, i16, u16, i32, u32, i64, u64, f32, f64) in either
 * byte order; data come back as F32 with scl_slope/scl_inter applied (slope 0
 * or NaN means none). Affine: sform when sform_code > 0, else qform when
 * qform_code > 0, else diag(pixdim). Errors name the file and the problem:
 * truncated data, bad magic, unsupported datatype, absurd dimensions. */
int fs_nifti_read(const char *path, fs_volume *vol);

/* Writes NIfTI-1 (gzip when path ends in .gz) atomically (temporary name,
 * then rename). Datatype from vol->data.dtype (u8, i8, i16, u16, i32, u32,
 * f32, f64); sform and qform both set from the affine (code 1, scanner). */
int fs_nifti_write(const char *path, const fs_volume *vol);

#endif
