/* Private to common/io/checkpoint.c, safetensors.c and pth.c: the open
 * checkpoint and how each tensor is found in the file. Both formats end up
 * as the same description: a tensor is a strided view (element strides,
 * element offset) into a storage, and a storage is a byte range of the file
 * (safetensors: one storage per tensor; .pth: zip entries shared by views). */
#ifndef FS_CHECKPOINT_IMPL_H
#define FS_CHECKPOINT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "io/checkpoint.h"
#include "io/zip.h"

/* Sanity bounds on files we are given (checked before allocating). */
#define FS_CKPT_MAX_HEADER (100u << 20)  /* safetensors JSON header bytes */
#define FS_CKPT_MAX_PICKLE (64u << 20)   /* .pth data.pkl bytes */
#define FS_CKPT_MAX_NUMEL ((uint64_t)1 << 48)

typedef struct {
    char *key;            /* .pth storage key ("0", "1", ...); NULL for safetensors */
    fs_dtype dtype;
    uint64_t numel;       /* elements of dtype */
    uint64_t file_offset; /* first byte in the file (stored entries) */
    size_t zip_index;     /* .pth: zip entry */
    int deflated;         /* .pth: entry is compressed; read it whole through the zip reader */
} fs_ckpt_storage;

typedef struct {
    fs_ckpt_entry e;
    size_t storage;                  /* index into fs_ckpt.storages */
    uint64_t offset;                 /* elements from the storage start */
    uint64_t stride[FS_MAX_DIMS];    /* elements */
} fs_ckpt_item;

struct fs_ckpt {
    char *path;
    int fd;
    uint64_t file_size;
    int swap;                        /* storages are big-endian (.pth byteorder "big") */
    fs_ckpt_item *items;
    size_t n, cap;
    struct fs_ckpt_name { const char *name; size_t index; } *sorted; /* by name, for fs_ckpt_find */
    fs_ckpt_storage *storages;
    size_t n_storages, cap_storages;
    char **meta_keys, **meta_vals;
    size_t n_meta;
    fs_zip *zip;                     /* .pth only */
};

/* Filled by the format readers on a zeroed fs_ckpt with path, fd and
 * file_size set; on error the caller frees whatever was added. */
int fs_safetensors_load(fs_ckpt *c);
int fs_pth_load(fs_ckpt *c);

/* Appends (amortised growth); return FS_ERR on out of memory. The item's
 * name is taken over by c (freed with it), also on error. */
int fs_ckpt_add_item(fs_ckpt *c, const fs_ckpt_item *it);
int fs_ckpt_add_storage(fs_ckpt *c, const fs_ckpt_storage *s, size_t *index);

/* Elements of a shape, FS_ERR on overflow past FS_CKPT_MAX_NUMEL. `what`
 * names the file in the message. */
int fs_ckpt_numel(const char *what, const char *name, int ndim, const size_t *shape, uint64_t *numel);

/* Reads bytes [off, off+n) of the file; a short read is an error naming
 * the file as truncated. */
int fs_ckpt_pread(const fs_ckpt *c, uint64_t off, void *dst, size_t n);

#endif
