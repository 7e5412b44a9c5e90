/* Reading zip archives: .npz files and PyTorch .pth checkpoints (torch
 * writes zip64 records and pads local headers so data are 64-byte aligned).
 * Entries are stored (method 0) or deflated (method 8); every offset and size
 * is checked against the archive's size before use, and extracted data are
 * checked against their CRC-32, so a truncated or hostile archive gives an
 * error, never an out-of-bounds read or an absurd allocation. */
#ifndef FS_ZIP_H
#define FS_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fs_zip fs_zip;

typedef struct {
    char *name;             /* as stored (NUL-terminated) */
    int method;             /* 0 stored, 8 deflate; others are listed but not extracted */
    uint16_t flags;         /* general purpose bits; bit 0 = encrypted */
    uint32_t crc32;
    uint64_t csize, usize;  /* compressed / uncompressed bytes */
    uint64_t header_offset; /* of the local file header */
} fs_zip_entry;

/* An archive on disk, read with pread as entries are extracted. */
int fs_zip_open(fs_zip **z, const char *path);
/* An archive in memory; buf is borrowed and must outlive z. `what` names it
 * in error messages. */
int fs_zip_open_mem(fs_zip **z, const void *buf, size_t n, const char *what);
void fs_zip_close(fs_zip *z);
const char *fs_zip_path(const fs_zip *z);

size_t fs_zip_count(const fs_zip *z);
const char *fs_zip_name(const fs_zip *z, size_t i);
const fs_zip_entry *fs_zip_entry_at(const fs_zip *z, size_t i);
/* Index of the entry named exactly `name`; FS_ERR (message set) if none. */
int fs_zip_find(const fs_zip *z, const char *name, size_t *index);

/* Where entry i's raw bytes start in the archive (after its local header). */
int fs_zip_data_offset(fs_zip *z, size_t i, uint64_t *offset);
/* Entry i extracted into a new malloc'd buffer (one extra NUL byte beyond
 * size), CRC checked. */
int fs_zip_read(fs_zip *z, size_t i, unsigned char **data, size_t *size);
/* Entry i extracted into dst, which must be exactly its uncompressed size. */
int fs_zip_read_into(fs_zip *z, size_t i, void *dst, size_t size);

#endif
