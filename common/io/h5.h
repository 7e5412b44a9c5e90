/* HDF5 files as fewsam uses them: datasets of tensors (chunked along the
 * first axis, gzip-compressed), attributes on any object, strings.
 * Files being created live under a temporary name until fs_h5_commit renames
 * them into place; fs_h5_close on an uncommitted file deletes it, so a failed
 * stage leaves nothing half-written. HDF5's own error printing is silenced:
 * every failure comes back as one fs_error line naming file and object. */
#ifndef FS_H5_H
#define FS_H5_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef struct fs_h5 fs_h5;

int fs_h5_create(fs_h5 **out, const char *path);
int fs_h5_open(fs_h5 **out, const char *path); /* read-only */
int fs_h5_commit(fs_h5 *f);                    /* created files: flush, close, rename; frees f */
void fs_h5_close(fs_h5 *f);                    /* frees f; an uncommitted created file is removed */
const char *fs_h5_path(const fs_h5 *f);

int fs_h5_has(fs_h5 *f, const char *name); /* 1 when the dataset/group exists */
/* Whole dataset (intermediate groups created). Chunks: one row of dim 0. */
int fs_h5_write(fs_h5 *f, const char *name, const fs_tensor *t);
/* Appends rows [n, ...] along dim 0 of an extendable dataset, creating it on
 * the first call; later calls must match dtype and trailing shape. */
int fs_h5_append(fs_h5 *f, const char *name, const fs_tensor *rows);
/* Shape and dtype without reading data. */
int fs_h5_info(fs_h5 *f, const char *name, fs_dtype *dtype, int *ndim, size_t shape[FS_MAX_DIMS]);
/* Reads into a new tensor in the stored dtype (u8..f64). */
int fs_h5_read(fs_h5 *f, const char *name, fs_tensor *out);
/* Rows [start, start+count) along dim 0. */
int fs_h5_read_rows(fs_h5 *f, const char *name, size_t start, size_t count, fs_tensor *out);

/* Attributes; obj is a dataset or group path, "/" for the file. */
int fs_h5_attr_set_str(fs_h5 *f, const char *obj, const char *key, const char *val);
int fs_h5_attr_set_f64(fs_h5 *f, const char *obj, const char *key, const double *v, size_t n);
int fs_h5_attr_set_i64(fs_h5 *f, const char *obj, const char *key, const int64_t *v, size_t n);
int fs_h5_attr_get_str(fs_h5 *f, const char *obj, const char *key, char **val); /* malloc'd */
/* Exactly n values, else an error naming the attribute. */
int fs_h5_attr_get_f64(fs_h5 *f, const char *obj, const char *key, double *v, size_t n);
int fs_h5_attr_get_i64(fs_h5 *f, const char *obj, const char *key, int64_t *v, size_t n);

/* 1-D datasets of variable-length UTF-8 strings. */
int fs_h5_write_strings(fs_h5 *f, const char *name, char *const *strs, size_t n);
int fs_h5_read_strings(fs_h5 *f, const char *name, char ***strs, size_t *n); /* free with fs_free_list */

#endif
