/* Model checkpoints and tensor files: safetensors and PyTorch's zip-format
 * .pth (a pickle plus raw storages, read with our own unpickler; no Python).
 * Opening lists the tensors (name, dtype, shape) without reading them, so a
 * model can check every name and shape first and then read each tensor
 * straight into its place in one parameter arena. */
#ifndef FS_CHECKPOINT_H
#define FS_CHECKPOINT_H

#include <stddef.h>

#include "core/tensor.h"

typedef struct {
    char *name;                 /* state-dict key, e.g. "image_encoder.blocks.0.attn.qkv.weight" */
    fs_dtype dtype;             /* as stored */
    int ndim;
    size_t shape[FS_MAX_DIMS];
} fs_ckpt_entry;

typedef struct fs_ckpt fs_ckpt;

/* Opens a .safetensors or .pth file, told apart by content (zip magic), not
 * by name. Validates the whole index (offsets within the file, sizes that
 * match dtype x shape, no overlaps beyond what views share) before returning. */
int fs_ckpt_open(fs_ckpt **out, const char *path);
void fs_ckpt_close(fs_ckpt *c);
const char *fs_ckpt_path(const fs_ckpt *c);

size_t fs_ckpt_count(const fs_ckpt *c);
const fs_ckpt_entry *fs_ckpt_entry_at(const fs_ckpt *c, size_t i);
/* Index of a name; FS_ERR (with message naming it) when absent. */
int fs_ckpt_find(const fs_ckpt *c, const char *name, size_t *index);
/* safetensors __metadata__ value for key, NULL when absent (always NULL for .pth). */
const char *fs_ckpt_meta(const fs_ckpt *c, const char *key);

/* Reads tensor i converted to f32 (from f16, bf16, f32, f64, and integer
 * dtypes) into dst of exactly numel elements (row-major, whatever the
 * stored strides). */
int fs_ckpt_read_f32(fs_ckpt *c, size_t i, float *dst, size_t numel);
/* Reads tensor i in its stored dtype into a new tensor. */
int fs_ckpt_read(fs_ckpt *c, size_t i, fs_tensor *out);

/* Writes a safetensors file atomically: n tensors (f32, f64, i32, i64, u8,
 * ... as their dtype says) under the given names, and optional metadata
 * (n_meta key/value pairs, NULL for none). */
int fs_safetensors_write(const char *path, const char *const *names, const fs_tensor *tensors, size_t n,
                         const char *const *meta_keys, const char *const *meta_vals, size_t n_meta);

#endif
