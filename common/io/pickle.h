/* A restricted unpickler for the data.pkl of torch.save's zip format. It
 * runs the opcodes Python's pickler emits for a state dict (protocols 2-5)
 * and nothing else, and resolves only a whitelist of globals (OrderedDict,
 * the torch tensor/parameter rebuild functions, torch.*Storage types), so a
 * hostile file can give an error but never run code. Tensors come out as
 * views (storage, offset, shape, stride) of storages named by persistent ids
 * ('storage', StorageType, key, location, numel); the caller checks those
 * against the archive. All values are owned by the fs_pickle and freed with
 * it, whatever path was taken. */
#ifndef FS_PICKLE_H
#define FS_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum {
    FS_PK_NONE, FS_PK_BOOL, FS_PK_INT, FS_PK_FLOAT, FS_PK_STR, FS_PK_BYTES,
    FS_PK_TUPLE, FS_PK_LIST, FS_PK_DICT,
    FS_PK_GLOBAL,  /* a whitelisted callable or storage type */
    FS_PK_STORAGE, /* a persistent-id storage reference */
    FS_PK_TENSOR,  /* a view into a storage */
    FS_PK_OBJECT,  /* something harmless we do not model (BUILD state applied to it is dropped) */
} fs_pk_kind;

typedef struct fs_pk_value fs_pk_value;

typedef struct {
    const fs_pk_value *storage; /* FS_PK_STORAGE */
    uint64_t offset;            /* elements */
    int ndim;
    uint64_t shape[FS_MAX_DIMS];
    uint64_t stride[FS_MAX_DIMS];
} fs_pk_tensor;

struct fs_pk_value {
    fs_pk_kind kind;
    int64_t i;             /* INT, BOOL; STORAGE: numel */
    double f;              /* FLOAT */
    char *s;               /* STR, BYTES (NUL-terminated copy); STORAGE: key; GLOBAL: "module.name" */
    size_t len;            /* STR, BYTES bytes */
    fs_pk_value **items;   /* TUPLE, LIST: [n]; DICT: [n] as key, value, key, value... */
    size_t n, cap;
    int global;            /* GLOBAL: which one (private to pickle.c) */
    fs_dtype dtype;        /* STORAGE, and GLOBAL storage types */
    fs_pk_tensor *tensor;  /* TENSOR */
};

typedef struct fs_pickle fs_pickle;

/* Runs the pickle data[0..n) to its STOP. `what` prefixes error messages,
 * e.g. "'x.pth': data.pkl". On success *root is the unpickled object, owned
 * by *out (free with fs_pickle_free); on error *out is NULL. */
int fs_pickle_load(fs_pickle **out, const fs_pk_value **root, const unsigned char *data, size_t n, const char *what);
void fs_pickle_free(fs_pickle *pk);

/* Value for a string key in a dict, NULL if none. */
const fs_pk_value *fs_pk_dict_get(const fs_pk_value *dict, const char *key);

#endif
