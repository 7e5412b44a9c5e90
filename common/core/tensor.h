/* A tensor: dtype, row-major shape, and an owned or borrowed data buffer.
 * Shapes follow PyTorch/numpy order: the last index varies fastest. */
#ifndef FS_TENSOR_H
#define FS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define FS_MAX_DIMS 8

typedef enum {
    FS_U8, FS_I8, FS_U16, FS_I16, FS_U32, FS_I32, FS_U64, FS_I64,
    FS_F16, FS_BF16, FS_F32, FS_F64, FS_DTYPE_COUNT
} fs_dtype;

typedef struct {
    fs_dtype dtype;
    int ndim;
    size_t shape[FS_MAX_DIMS];
    void *data;
    int owned; /* data was allocated by fs_tensor_alloc and is freed with the tensor */
} fs_tensor;

size_t fs_dtype_size(fs_dtype d);
const char *fs_dtype_name(fs_dtype d);        /* "f32", "u8", ... */
int fs_dtype_parse(const char *name, fs_dtype *out); /* FS_ERR on unknown */

size_t fs_tensor_numel(const fs_tensor *t);
size_t fs_tensor_nbytes(const fs_tensor *t);
/* Allocates zeroed storage; refuses shapes whose byte count overflows. */
int fs_tensor_alloc(fs_tensor *t, fs_dtype dtype, int ndim, const size_t *shape);
void fs_tensor_free(fs_tensor *t);
/* "[2,3,64,64]" into buf. */
const char *fs_shape_str(const fs_tensor *t, char *buf, size_t n);
int fs_shape_equal(const fs_tensor *a, const fs_tensor *b);

/* Element i converted to double / stored from double (with rounding and
 * saturation for integer dtypes). For loops that are not hot. */
double fs_tensor_get(const fs_tensor *t, size_t i);
void fs_tensor_set(fs_tensor *t, size_t i, double v);
/* New tensor of dtype `to` with the same shape and converted values. */
int fs_tensor_convert(fs_tensor *out, const fs_tensor *in, fs_dtype to);

/* Reverses the bytes of each of the n esize-byte elements at p: data
 * written on a machine of the other byte order. */
void fs_byteswap(void *p, size_t n, size_t esize);

float fs_half_to_float(uint16_t h);
float fs_bf16_to_float(uint16_t h);

#endif
