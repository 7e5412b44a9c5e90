/* numpy's .npy format: magic "\x93NUMPY", version bytes, a little-endian
 * header length (2 bytes in v1, 4 in v2/v3), then a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (16, 12), } padded with
 * spaces, then the raw data. The dict is parsed here by a small tokenizer: it
 * is all numpy ever writes, and anything else is refused. */
#include "io/npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/zip.h"

#define NPY_MAX_HEADER (1u << 20)

typedef struct {
    const char *p, *end;
    const char *what;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int bad_header(cursor *c, const char *why) { return fs_error("%s: bad .npy header: %s", c->what, why); }

static int expect(cursor *c, char ch) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch) {
        char why[32];
        snprintf(why, sizeof why, "expected '%c'", ch);
        return bad_header(c, why);
    }
    c->p++;
    return FS_OK;
}

/* A quoted string without escapes into buf. */
static int parse_str(cursor *c, char *buf, size_t n) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return bad_header(c, "expected a string");
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || k + 1 >= n) return bad_header(c, "unexpected string");
        buf[k++] = *c->p++;
    }
    if (c->p >= c->end) return bad_header(c, "unterminated string");
    c->p++;
    buf[k] = 0;
    return FS_OK;
}

static int parse_shape(cursor *c, int *ndim, size_t shape[FS_MAX_DIMS]) {
    if (expect(c, '(')) return FS_ERR;
    *ndim = 0;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') { c->p++; return FS_OK; }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return bad_header(c, "shape is not a tuple of sizes");
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10) return bad_header(c, "shape size overflows");
            v = v * 10 + (uint64_t)(*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
        if (*ndim == FS_MAX_DIMS) return fs_error("%s: array has more than %d dimensions", c->what, FS_MAX_DIMS);
        if (v > SIZE_MAX) return bad_header(c, "shape size overflows");
        shape[(*ndim)++] = (size_t)v;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') c->p++;
        else if (c->p >= c->end || *c->p != ')') return bad_header(c, "shape is not a tuple of sizes");
    }
}

static int parse_bool(cursor *c, int *v) {
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "True", 4)) { *v = 1; c->p += 4; return FS_OK; }
    if (left >= 5 && !memcmp(c->p, "False", 5)) { *v = 0; c->p += 5; return FS_OK; }
    return bad_header(c, "fortran_order is not True or False");
}

/* '<f4' and friends. */
static int parse_descr(const char *d, const char *what, fs_dtype *dtype, int *swap) {
    char order = d[0];
    if (!order || !strchr("<>|=", order) || !d[1] || !d[2])
        return fs_error("%s: unsupported .npy dtype '%s'", what, d);
    char kind = d[1];
    char *end;
    long size = strtol(d + 2, &end, 10);
    if (*end) return fs_error("%s: unsupported .npy dtype '%s'", what, d);
    static const struct { char kind; long size; fs_dtype dt; } map[] = {
        {'f', 2, FS_F16}, {'f', 4, FS_F32}, {'f', 8, FS_F64}, {'u', 1, FS_U8},  {'u', 2, FS_U16},
        {'u', 4, FS_U32}, {'u', 8, FS_U64}, {'i', 1, FS_I8},  {'i', 2, FS_I16}, {'i', 4, FS_I32},
        {'i', 8, FS_I64}, {'b', 1, FS_U8},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].kind == kind && map[i].size == size) {
            *dtype = map[i].dt;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            *swap = size > 1 && order == '>';
#else
            *swap = size > 1 && order == '<';
#endif
            return FS_OK;
        }
    return fs_error("%s: unsupported .npy dtype '%s' (numeric dtypes only)", what, d);
}

/* Column-major src into row-major dst. */
static void fortran_to_c(unsigned char *dst, const unsigned char *src, int ndim, const size_t *shape, size_t esize) {
    size_t fstride[FS_MAX_DIMS], idx[FS_MAX_DIMS] = {0}, numel = 1;
    for (int d = 0; d < ndim; d++) {
        fstride[d] = numel;
        numel *= shape[d];
    }
    size_t off = 0;
    for (size_t i = 0; i < numel; i++) {
        memcpy(dst + i * esize, src + off * esize, esize);
        for (int d = ndim - 1; d >= 0; d--) {
            off += fstride[d];
            if (++idx[d] < shape[d]) break;
            off -= fstride[d] * shape[d];
            idx[d] = 0;
        }
    }
}

int fs_npy_parse(const unsigned char *buf, size_t n, const char *what, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    if (n < 10 || memcmp(buf, "\x93NUMPY", 6)) return fs_error("%s: not a .npy array (bad magic)", what);
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12) return fs_error("%s: truncated .npy header", what);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return fs_error("%s: unsupported .npy format version %d", what, major);
    }
    if (hlen > NPY_MAX_HEADER || hlen > n - hstart) return fs_error("%s: truncated .npy header", what);
    cursor c = {(const char *)buf + hstart, (const char *)buf + hstart + hlen, what};
    char key[32], descr[32] = "";
    int fortran = 0, ndim = -1, have_descr = 0, have_fortran = 0;
    size_t shape[FS_MAX_DIMS];
    if (expect(&c, '{')) return FS_ERR;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') break;
        if (parse_str(&c, key, sizeof key) || expect(&c, ':')) return FS_ERR;
        skip_ws(&c);
        if (!strcmp(key, "descr")) {
            if (c.p < c.end && *c.p == '[')
                return fs_error("%s: structured .npy arrays are not supported", what);
            if (parse_str(&c, descr, sizeof descr)) return FS_ERR;
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_bool(&c, &fortran)) return FS_ERR;
            have_fortran = 1;
        } else if (!strcmp(key, "shape")) {
            if (parse_shape(&c, &ndim, shape)) return FS_ERR;
        } else {
            return bad_header(&c, "unexpected key");
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') c.p++;
        else if (c.p >= c.end || *c.p != '}') return bad_header(&c, "expected ',' or '}'");
    }
    if (!have_descr || !have_fortran || ndim < 0) return bad_header(&c, "missing descr, fortran_order or shape");
    fs_dtype dt = FS_U8;
    int swap = 0;
    if (parse_descr(descr, what, &dt, &swap)) return FS_ERR;
    size_t esize = fs_dtype_size(dt), bytes = esize;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] && bytes > SIZE_MAX / shape[d]) return fs_error("%s: .npy shape overflows", what);
        bytes *= shape[d];
    }
    size_t have = n - hstart - hlen;
    if (have != bytes)
        return fs_error("%s: .npy data is %zu bytes, the header's shape needs %zu%s", what, have, bytes,
                        have < bytes ? " (truncated)" : "");
    if (fs_tensor_alloc(out, dt, ndim, shape)) return FS_ERR;
    const unsigned char *src = buf + hstart + hlen;
    if (fortran && ndim > 1) fortran_to_c(out->data, src, ndim, shape, esize);
    else if (bytes) memcpy(out->data, src, bytes);
    if (swap) fs_byteswap(out->data, bytes / esize, esize);
    if (descr[1] == 'b') { /* numpy bools are 0/1 bytes; anything else is normalised */
        unsigned char *p = out->data;
        for (size_t i = 0; i < bytes; i++) p[i] = p[i] != 0;
    }
    return FS_OK;
}

int fs_npy_read(const char *path, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t n;
    if (fs_read_file(path, &buf, &n)) return FS_ERR;
    char what[4200];
    snprintf(what, sizeof what, "'%s'", path);
    int rc = fs_npy_parse(buf, n, what, out);
    free(buf);
    return rc;
}

int fs_npz_read(const char *path, const char *key, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    fs_zip *z;
    if (fs_zip_open(&z, path)) return FS_ERR;
    char name[512];
    snprintf(name, sizeof name, "%s.npy", key);
    size_t i;
    if (fs_zip_find(z, name, &i)) {
        char have[256] = "";
        size_t k = 0;
        for (size_t j = 0; j < fs_zip_count(z) && k + 2 < sizeof have; j++)
            k += (size_t)snprintf(have + k, sizeof have - k, "%s%s", j ? ", " : "", fs_zip_name(z, j));
        fs_error("'%s': no array '%s' (members: %s)", path, key, have);
        fs_zip_close(z);
        return FS_ERR;
    }
    unsigned char *buf;
    size_t n;
    int rc = fs_zip_read(z, i, &buf, &n);
    fs_zip_close(z);
    if (rc) return FS_ERR;
    char what[4700];
    snprintf(what, sizeof what, "'%s' member '%s'", path, name);
    rc = fs_npy_parse(buf, n, what, out);
    free(buf);
    return rc;
}
