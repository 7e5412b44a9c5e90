/* Checkpoints: format dispatch by content, the tensor index, and reading a
 * tensor (a strided view into a storage) row-major, converted or not. Data
 * are read with pread when asked for, so a 2.5 GB ViT-H file is never held
 * in memory whole and several threads may read tensors of one checkpoint. */
#include "io/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint_impl.h"

int fs_ckpt_add_item(fs_ckpt *c, const fs_ckpt_item *it) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        fs_ckpt_item *p = realloc(c->items, cap * sizeof *p);
        if (!p) {
            free(it->e.name);
            return fs_error("'%s': out of memory listing tensors", c->path);
        }
        c->items = p;
        c->cap = cap;
    }
    c->items[c->n++] = *it;
    return FS_OK;
}

int fs_ckpt_add_storage(fs_ckpt *c, const fs_ckpt_storage *s, size_t *index) {
    if (c->n_storages == c->cap_storages) {
        size_t cap = c->cap_storages ? c->cap_storages * 2 : 64;
        fs_ckpt_storage *p = realloc(c->storages, cap * sizeof *p);
        if (!p) {
            free(s->key);
            return fs_error("'%s': out of memory listing storages", c->path);
        }
        c->storages = p;
        c->cap_storages = cap;
    }
    *index = c->n_storages;
    c->storages[c->n_storages++] = *s;
    return FS_OK;
}

int fs_ckpt_numel(const char *what, const char *name, int ndim, const size_t *shape, uint64_t *numel) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] > FS_CKPT_MAX_NUMEL || (shape[d] && n > FS_CKPT_MAX_NUMEL / shape[d]))
            return fs_error("'%s': tensor '%s': shape too large (element count overflows)", what, name);
        n *= shape[d];
    }
    *numel = n;
    return FS_OK;
}

int fs_ckpt_pread(const fs_ckpt *c, uint64_t off, void *dst, size_t n) {
    if (off > c->file_size || n > c->file_size - off)
        return fs_error("'%s': truncated file (%zu bytes at offset %llu past its end)", c->path, n,
                        (unsigned long long)off);
    unsigned char *p = dst;
    while (n) {
        ssize_t r = pread(c->fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return fs_error_errno("cannot read '%s'", c->path);
        }
        if (r == 0) return fs_error("'%s': truncated file (unexpected end at offset %llu)", c->path,
                                    (unsigned long long)off);
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return FS_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct fs_ckpt_name *)a)->name, ((const struct fs_ckpt_name *)b)->name);
}

/* The name index; two tensors under one name make the file ambiguous. */
static int build_index(fs_ckpt *c) {
    c->sorted = malloc((c->n ? c->n : 1) * sizeof *c->sorted);
    if (!c->sorted) return fs_error("'%s': out of memory", c->path);
    for (size_t i = 0; i < c->n; i++) c->sorted[i] = (struct fs_ckpt_name){c->items[i].e.name, i};
    qsort(c->sorted, c->n, sizeof *c->sorted, by_name);
    for (size_t i = 1; i < c->n; i++)
        if (!strcmp(c->sorted[i].name, c->sorted[i - 1].name))
            return fs_error("'%s': tensor '%s' appears twice", c->path, c->sorted[i].name);
    return FS_OK;
}

void fs_ckpt_close(fs_ckpt *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) free(c->items[i].e.name);
    for (size_t i = 0; i < c->n_storages; i++) free(c->storages[i].key);
    for (size_t i = 0; i < c->n_meta; i++) {
        free(c->meta_keys[i]);
        free(c->meta_vals[i]);
    }
    free(c->meta_keys);
    free(c->meta_vals);
    free(c->items);
    free(c->storages);
    free(c->sorted);
    if (c->zip) fs_zip_close(c->zip);
    if (c->fd >= 0) close(c->fd);
    free(c->path);
    free(c);
}

int fs_ckpt_open(fs_ckpt **out, const char *path) {
    *out = NULL;
    fs_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return fs_error("out of memory opening '%s'", path);
    }
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) {
        int e = errno;
        fs_ckpt_close(c);
        errno = e;
        if (e == ENOENT) return fs_error("cannot open '%s': no such file", path);
        return fs_error_errno("cannot open '%s'", path);
    }
    struct stat st;
    if (fstat(c->fd, &st) != 0) {
        fs_error_errno("cannot stat '%s'", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        fs_error("cannot open '%s': not a regular file", path);
        goto fail;
    }
    c->file_size = (uint64_t)st.st_size;
    unsigned char head[9] = {0};
    size_t nh = c->file_size < sizeof head ? (size_t)c->file_size : sizeof head;
    if (fs_ckpt_pread(c, 0, head, nh)) goto fail;
    int rc;
    if (nh >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) {
        rc = fs_pth_load(c);
    } else if (nh >= 2 && head[0] == 0x80 && head[1] <= 5) {
        rc = fs_error("'%s': legacy (non-zip) torch.save format is not supported; re-save it with "
                      "PyTorch >= 1.6 (torch.save(torch.load(f), f))", path);
    } else if (nh == 9 && head[8] == '{') {
        rc = fs_safetensors_load(c);
    } else if (nh < 9) {
        rc = fs_error("'%s': not a checkpoint: file too short (%zu bytes)", path, nh);
    } else {
        rc = fs_error("'%s': not a safetensors or PyTorch zip (.pth) checkpoint", path);
    }
    if (rc || build_index(c)) goto fail;
    *out = c;
    return FS_OK;
fail:
    fs_ckpt_close(c);
    return FS_ERR;
}

const char *fs_ckpt_path(const fs_ckpt *c) { return c->path; }
size_t fs_ckpt_count(const fs_ckpt *c) { return c->n; }
const fs_ckpt_entry *fs_ckpt_entry_at(const fs_ckpt *c, size_t i) { return i < c->n ? &c->items[i].e : NULL; }

int fs_ckpt_find(const fs_ckpt *c, const char *name, size_t *index) {
    struct fs_ckpt_name key = {name, 0};
    const struct fs_ckpt_name *hit = c->n ? bsearch(&key, c->sorted, c->n, sizeof key, by_name) : NULL;
    if (!hit) return fs_error("'%s': no tensor named '%s'", c->path, name);
    *index = hit->index;
    return FS_OK;
}

const char *fs_ckpt_meta(const fs_ckpt *c, const char *key) {
    for (size_t i = 0; i < c->n_meta; i++)
        if (!strcmp(c->meta_keys[i], key)) return c->meta_vals[i];
    return NULL;
}

/* ---- reading ---- */

static size_t item_numel(const fs_ckpt_item *it) {
    size_t n = 1;
    for (int d = 0; d < it->e.ndim; d++) n *= it->e.shape[d];
    return n;
}

static int is_contiguous(const fs_ckpt_item *it) {
    uint64_t expect = 1;
    for (int d = it->e.ndim - 1; d >= 0; d--) {
        if (it->e.shape[d] != 1 && it->stride[d] != expect) return 0;
        expect *= it->e.shape[d];
    }
    return 1;
}

/* Copies the view whose element 0 is at src into dst, row-major.
 * shape [ndim], stride [ndim] in elements; numel > 0. */
static void gather(unsigned char *dst, const unsigned char *src, size_t esize, int ndim, const size_t *shape,
                   const uint64_t *stride) {
    if (ndim == 0) {
        memcpy(dst, src, esize);
        return;
    }
    size_t idx[FS_MAX_DIMS] = {0};
    size_t inner = shape[ndim - 1], outer = 1;
    for (int d = 0; d < ndim - 1; d++) outer *= shape[d];
    size_t istep = (size_t)stride[ndim - 1] * esize;
    size_t off = 0;
    for (size_t o = 0; o < outer; o++) {
        const unsigned char *p = src + off;
        for (size_t j = 0; j < inner; j++, p += istep, dst += esize) memcpy(dst, p, esize);
        for (int d = ndim - 2; d >= 0; d--) {
            off += (size_t)stride[d] * esize;
            if (++idx[d] < shape[d]) break;
            off -= shape[d] * (size_t)stride[d] * esize;
            idx[d] = 0;
        }
    }
}

/* Tensor i's numel elements, row-major, in its stored dtype, into dst. */
static int read_raw(fs_ckpt *c, const fs_ckpt_item *it, void *dst, size_t numel) {
    if (numel == 0) return FS_OK;
    const fs_ckpt_storage *s = &c->storages[it->storage];
    size_t esize = fs_dtype_size(it->e.dtype);
    int contiguous = is_contiguous(it);
    /* the span of storage elements the view touches (checked against the storage at open) */
    uint64_t last = it->offset;
    for (int d = 0; d < it->e.ndim; d++) last += (uint64_t)(it->e.shape[d] - 1) * it->stride[d];
    size_t span = (size_t)(last - it->offset + 1) * esize;
    int rc = FS_OK;
    if (s->deflated) {
        unsigned char *buf = NULL;
        size_t size = 0;
        if (fs_zip_read(c->zip, s->zip_index, &buf, &size)) return fs_error_wrap("'%s': tensor '%s'", c->path, it->e.name);
        if ((uint64_t)size < (last + 1) * esize) rc = fs_error("'%s': tensor '%s': storage shorter than its view", c->path, it->e.name);
        else if (contiguous) memcpy(dst, buf + it->offset * esize, numel * esize);
        else gather(dst, buf + it->offset * esize, esize, it->e.ndim, it->e.shape, it->stride);
        free(buf);
    } else if (contiguous) {
        rc = fs_ckpt_pread(c, s->file_offset + it->offset * esize, dst, numel * esize);
    } else {
        unsigned char *buf = malloc(span);
        if (!buf) return fs_error("'%s': tensor '%s': out of memory (%zu bytes)", c->path, it->e.name, span);
        rc = fs_ckpt_pread(c, s->file_offset + it->offset * esize, buf, span);
        if (!rc) gather(dst, buf, esize, it->e.ndim, it->e.shape, it->stride);
        free(buf);
    }
    if (!rc && c->swap) fs_byteswap(dst, numel, esize);
    return rc;
}

/* src of n elements of dtype d into dst; src may alias dst only for f32. */
static void to_f32(float *dst, const void *src, fs_dtype d, size_t n) {
    switch (d) {
    case FS_F32: if ((const void *)dst != src) memcpy(dst, src, n * 4); break;
    case FS_F64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; break;
    case FS_F16: for (size_t i = 0; i < n; i++) dst[i] = fs_half_to_float(((const uint16_t *)src)[i]); break;
    case FS_BF16: for (size_t i = 0; i < n; i++) dst[i] = fs_bf16_to_float(((const uint16_t *)src)[i]); break;
    case FS_U8: for (size_t i = 0; i < n; i++) dst[i] = (float)((const uint8_t *)src)[i]; break;
    case FS_I8: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int8_t *)src)[i]; break;
    case FS_U16: for (size_t i = 0; i < n; i++) dst[i] = (float)((const uint16_t *)src)[i]; break;
    case FS_I16: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int16_t *)src)[i]; break;
    case FS_U32: for (size_t i = 0; i < n; i++) dst[i] = (float)((const uint32_t *)src)[i]; break;
    case FS_I32: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i]; break;
    case FS_U64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const uint64_t *)src)[i]; break;
    case FS_I64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src)[i]; break;
    default: break;
    }
}

int fs_ckpt_read_f32(fs_ckpt *c, size_t i, float *dst, size_t numel) {
    if (i >= c->n) return fs_error("'%s': tensor index %zu out of range (%zu tensors)", c->path, i, c->n);
    const fs_ckpt_item *it = &c->items[i];
    size_t n = item_numel(it);
    if (numel != n)
        return fs_error("'%s': tensor '%s' has %zu elements, %zu expected", c->path, it->e.name, n, numel);
    if (it->e.dtype == FS_F32) return read_raw(c, it, dst, n);
    size_t esize = fs_dtype_size(it->e.dtype);
    void *tmp = malloc(n ? n * esize : 1);
    if (!tmp) return fs_error("'%s': tensor '%s': out of memory", c->path, it->e.name);
    int rc = read_raw(c, it, tmp, n);
    if (!rc) to_f32(dst, tmp, it->e.dtype, n);
    free(tmp);
    return rc;
}

int fs_ckpt_read(fs_ckpt *c, size_t i, fs_tensor *out) {
    memset(out, 0, sizeof *out);
    if (i >= c->n) return fs_error("'%s': tensor index %zu out of range (%zu tensors)", c->path, i, c->n);
    const fs_ckpt_item *it = &c->items[i];
    if (fs_tensor_alloc(out, it->e.dtype, it->e.ndim, it->e.shape))
        return fs_error_wrap("'%s': tensor '%s'", c->path, it->e.name);
    if (read_raw(c, it, out->data, fs_tensor_numel(out))) {
        fs_tensor_free(out);
        return FS_ERR;
    }
    return FS_OK;
}
