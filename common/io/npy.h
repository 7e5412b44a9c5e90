/* numpy .npy arrays and .npz archives (zip files of .npy members), as the
 * TransUNet preprocessed Synapse layout stores slices
 * (train_npz/caseNNNN_sliceNNN.npz with arrays "image" and "label").
 * Format versions 1, 2 and 3; dtypes <f4 <f8 <f2 |u1 |i1 <u2 <i2 <u4 <i4
 * <u8 <i8 and |b1 (read as u8), either byte order ('>' is swapped, '='
 * is native); Fortran-ordered arrays are transposed into C order. */
#ifndef FS_NPY_H
#define FS_NPY_H

#include <stddef.h>

#include "core/tensor.h"

/* Parses a whole .npy file held in buf[0, n) into a new tensor. `what`
 * names the source in error messages ("'x.npz' member 'image.npy'"). The data
 * length must match the header's shape exactly. */
int fs_npy_parse(const unsigned char *buf, size_t n, const char *what, fs_tensor *out);
/* A .npy file on disk. */
int fs_npy_read(const char *path, fs_tensor *out);
/* Array `key` (member "key.npy") of an .npz archive, stored or deflated. */
int fs_npz_read(const char *path, const char *key, fs_tensor *out);

#endif
