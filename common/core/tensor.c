#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static const struct { const char *name; size_t size; } dtypes[FS_DTYPE_COUNT] = {
    [FS_U8] = {"u8", 1},   [FS_I8] = {"i8", 1},     [FS_U16] = {"u16", 2},
    [FS_I16] = {"i16", 2}, [FS_U32] = {"u32", 4},   [FS_I32] = {"i32", 4},
    [FS_U64] = {"u64", 8}, [FS_I64] = {"i64", 8},   [FS_F16] = {"f16", 2},
    [FS_BF16] = {"bf16", 2}, [FS_F32] = {"f32", 4}, [FS_F64] = {"f64", 8},
};

size_t fs_dtype_size(fs_dtype d) { return d < FS_DTYPE_COUNT ? dtypes[d].size : 0; }
const char *fs_dtype_name(fs_dtype d) { return d < FS_DTYPE_COUNT ? dtypes[d].name : "?"; }

int fs_dtype_parse(const char *name, fs_dtype *out) {
    for (int d = 0; d < FS_DTYPE_COUNT; d++)
        if (!strcmp(name, dtypes[d].name)) { *out = (fs_dtype)d; return FS_OK; }
    return fs_error("unknown dtype '%s'", name);
}

size_t fs_tensor_numel(const fs_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t fs_tensor_nbytes(const fs_tensor *t) { return fs_tensor_numel(t) * fs_dtype_size(t->dtype); }

int fs_tensor_alloc(fs_tensor *t, fs_dtype dtype, int ndim, const size_t *shape) {
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > FS_MAX_DIMS) return fs_error("tensor rank %d out of range", ndim);
    if (dtype >= FS_DTYPE_COUNT) return fs_error("invalid dtype %d", (int)dtype);
    size_t bytes = fs_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] && bytes > SIZE_MAX / shape[i]) return fs_error("tensor shape overflows memory size");
        bytes *= shape[i];
        t->shape[i] = shape[i];
    }
    t->dtype = dtype;
    t->ndim = ndim;
    t->data = calloc(1, bytes ? bytes : 1);
    if (!t->data) return fs_error("out of memory allocating %zu bytes", bytes);
    t->owned = 1;
    return FS_OK;
}

void fs_tensor_free(fs_tensor *t) {
    if (t->owned) free(t->data);
    memset(t, 0, sizeof *t);
}

const char *fs_shape_str(const fs_tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ",%zu" : "%zu", t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

int fs_shape_equal(const fs_tensor *a, const fs_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

void fs_byteswap(void *p, size_t n, size_t esize) {
    unsigned char *e = p;
    if (esize < 2) return;
    for (size_t i = 0; i < n; i++, e += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
}

float fs_half_to_float(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24);
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 1024), exp - 25);
    return sign ? -v : v;
}

float fs_bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

double fs_tensor_get(const fs_tensor *t, size_t i) {
    const void *p = t->data;
    switch (t->dtype) {
    case FS_U8: return ((const uint8_t *)p)[i];
    case FS_I8: return ((const int8_t *)p)[i];
    case FS_U16: return ((const uint16_t *)p)[i];
    case FS_I16: return ((const int16_t *)p)[i];
    case FS_U32: return ((const uint32_t *)p)[i];
    case FS_I32: return ((const int32_t *)p)[i];
    case FS_U64: return (double)((const uint64_t *)p)[i];
    case FS_I64: return (double)((const int64_t *)p)[i];
    case FS_F16: return fs_half_to_float(((const uint16_t *)p)[i]);
    case FS_BF16: return fs_bf16_to_float(((const uint16_t *)p)[i]);
    case FS_F32: return ((const float *)p)[i];
    case FS_F64: return ((const double *)p)[i];
    default: return NAN;
    }
}

static double clampd(double v, double lo, double hi) {
    if (isnan(v)) return 0;
    return v < lo ? lo : v > hi ? hi : v;
}

void fs_tensor_set(fs_tensor *t, size_t i, double v) {
    void *p = t->data;
    switch (t->dtype) {
    case FS_U8: ((uint8_t *)p)[i] = (uint8_t)clampd(round(v), 0, 255); break;
    case FS_I8: ((int8_t *)p)[i] = (int8_t)clampd(round(v), -128, 127); break;
    case FS_U16: ((uint16_t *)p)[i] = (uint16_t)clampd(round(v), 0, 65535); break;
    case FS_I16: ((int16_t *)p)[i] = (int16_t)clampd(round(v), -32768, 32767); break;
    case FS_U32: ((uint32_t *)p)[i] = (uint32_t)clampd(round(v), 0, 4294967295.0); break;
    case FS_I32: ((int32_t *)p)[i] = (int32_t)clampd(round(v), -2147483648.0, 2147483647.0); break;
    case FS_U64: ((uint64_t *)p)[i] = (uint64_t)clampd(round(v), 0, 1.8e19); break;
    case FS_I64: ((int64_t *)p)[i] = (int64_t)clampd(round(v), -9.2e18, 9.2e18); break;
    case FS_F32: ((float *)p)[i] = (float)v; break;
    case FS_F64: ((double *)p)[i] = v; break;
    default: break; /* f16/bf16 are read-only here: nothing in the data plane writes them */
    }
}

int fs_tensor_convert(fs_tensor *out, const fs_tensor *in, fs_dtype to) {
    if (to == FS_F16 || to == FS_BF16) return fs_error("conversion to %s is not supported", fs_dtype_name(to));
    if (fs_tensor_alloc(out, to, in->ndim, in->shape)) return FS_ERR;
    size_t n = fs_tensor_numel(in);
    if (in->dtype == to) { memcpy(out->data, in->data, fs_tensor_nbytes(in)); return FS_OK; }
    for (size_t i = 0; i < n; i++) fs_tensor_set(out, i, fs_tensor_get(in, i));
    return FS_OK;
}
