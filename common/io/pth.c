/* PyTorch checkpoints in torch.save's zip format (PyTorch >= 1.6, e.g. the
 * official sam_vit_b_01ec64.pth): <prefix>/data.pkl is a pickle of the state
 * dict whose tensors refer by persistent id to raw storages stored as
 * <prefix>/data/<key>, little-endian unless <prefix>/byteorder says "big".
 * The pickle runs on the restricted unpickler of pickle.c; each tensor view
 * is checked against its storage, and each storage against its zip entry.
 *
 * The state dict is the top-level dict when it holds tensors; otherwise its
 * "model" or else "state_dict" entry (how some fine-tuning scripts wrap it,
 * next to optimiser state and epoch counters). Values that are not tensors
 * (and keys that are not strings) are skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "io/checkpoint.h"
#include "io/checkpoint_impl.h"
#include "io/pickle.h"
#include "io/zip.h"

/* string -> index, open addressing; keys are borrowed */
typedef struct {
    const char **key;
    size_t *val;
    size_t mask;
} strmap;

static size_t str_hash(const char *s) { return (size_t)fs_fnv1a(FS_FNV_OFFSET, s, strlen(s)); }

static int strmap_init(strmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    m->key = calloc(cap, sizeof *m->key);
    m->val = calloc(cap, sizeof *m->val);
    m->mask = cap - 1;
    return m->key && m->val ? 0 : -1;
}

static void strmap_free(strmap *m) {
    free(m->key);
    free(m->val);
}

/* The slot of key: holding it, or the empty one where it would go. */
static size_t strmap_slot(const strmap *m, const char *key) {
    size_t i = str_hash(key) & m->mask;
    while (m->key[i] && strcmp(m->key[i], key)) i = (i + 1) & m->mask;
    return i;
}

static int find_prefix(fs_ckpt *c, size_t *pkl, char **prefix) {
    size_t n = fs_zip_count(c->zip);
    for (size_t i = 0; i < n; i++) {
        const char *name = fs_zip_name(c->zip, i);
        size_t len = strlen(name);
        if (len < 8 || strcmp(name + len - 8, "data.pkl")) continue;
        const char *slash = strchr(name, '/');
        if (len == 8 || (slash == name + len - 9)) {
            *pkl = i;
            *prefix = strndup(name, len - 8); /* "archive/" (or "") */
            return *prefix ? FS_OK : fs_error("'%s': out of memory", c->path);
        }
    }
    return fs_error("'%s': zip archive without data.pkl (not a PyTorch checkpoint)", c->path);
}

static int read_byteorder(fs_ckpt *c, const char *prefix) {
    char name[4096];
    size_t i;
    snprintf(name, sizeof name, "%sbyteorder", prefix);
    if (fs_zip_find(c->zip, name, &i)) {
        fs_error_clear();
        return FS_OK; /* absent: little-endian, as written before byteorder existed */
    }
    const fs_zip_entry *e = fs_zip_entry_at(c->zip, i);
    if (e->usize > 16) return fs_error("'%s': %s: unexpected content", c->path, name);
    unsigned char *d;
    size_t n;
    if (fs_zip_read(c->zip, i, &d, &n)) return FS_ERR;
    int rc = FS_OK;
    if (n == 6 && !memcmp(d, "little", 6)) c->swap = 0;
    else if (n == 3 && !memcmp(d, "big", 3)) c->swap = 1;
    else rc = fs_error("'%s': %s: unknown byte order", c->path, name);
    free(d);
    return rc;
}

/* The dict of tensors: the root, or its "model" / "state_dict" entry. */
static const fs_pk_value *state_dict(const fs_pk_value *root) {
    if (!root || root->kind != FS_PK_DICT) return NULL;
    for (size_t i = 1; i < root->n; i += 2)
        if (root->items[i]->kind == FS_PK_TENSOR) return root;
    static const char *const wrappers[] = {"model", "state_dict"};
    for (int w = 0; w < 2; w++) {
        const fs_pk_value *d = fs_pk_dict_get(root, wrappers[w]);
        if (d && d->kind == FS_PK_DICT) return d;
    }
    return root;
}

typedef struct {
    fs_ckpt *c;
    const char *prefix;
    strmap zipmap;     /* storage key -> zip entry */
    strmap storemap;   /* storage key -> c->storages index */
} pth_loader;

/* The storage a persistent id names: found once, checked against its entry. */
static int get_storage(pth_loader *L, const fs_pk_value *sv, size_t *index) {
    fs_ckpt *c = L->c;
    size_t slot = strmap_slot(&L->storemap, sv->s);
    if (L->storemap.key[slot]) {
        const fs_ckpt_storage *s = &c->storages[L->storemap.val[slot]];
        if (s->dtype != sv->dtype || s->numel != (uint64_t)sv->i)
            return fs_error("'%s': storage '%s' is described twice with different types or sizes", c->path, sv->s);
        *index = L->storemap.val[slot];
        return FS_OK;
    }
    size_t zslot = strmap_slot(&L->zipmap, sv->s);
    if (!L->zipmap.key[zslot])
        return fs_error("'%s': data.pkl refers to storage '%s' but the archive has no %sdata/%s", c->path, sv->s,
                        L->prefix, sv->s);
    size_t zi = L->zipmap.val[zslot];
    const fs_zip_entry *e = fs_zip_entry_at(c->zip, zi);
    uint64_t bytes = (uint64_t)sv->i * fs_dtype_size(sv->dtype);
    if (e->usize != bytes)
        return fs_error("'%s': storage '%s' holds %llu bytes but data.pkl declares %lld %s elements (%llu bytes)",
                        c->path, e->name, (unsigned long long)e->usize, (long long)sv->i, fs_dtype_name(sv->dtype),
                        (unsigned long long)bytes);
    if (e->flags & 1) return fs_error("'%s': storage '%s' is encrypted", c->path, e->name);
    fs_ckpt_storage s = {.dtype = sv->dtype, .numel = (uint64_t)sv->i, .zip_index = zi};
    if (e->method == 8) {
        s.deflated = 1;
    } else if (e->method == 0) {
        if (e->csize != e->usize) return fs_error("'%s': storage '%s': stored entry with differing sizes", c->path, e->name);
        if (fs_zip_data_offset(c->zip, zi, &s.file_offset)) return FS_ERR;
        if (s.file_offset > c->file_size || bytes > c->file_size - s.file_offset)
            return fs_error("'%s': storage '%s' runs past the end of the file (truncated?)", c->path, e->name);
    } else {
        return fs_error("'%s': storage '%s' uses zip compression method %d", c->path, e->name, e->method);
    }
    if (!(s.key = strdup(sv->s))) return fs_error("'%s': out of memory", c->path);
    if (fs_ckpt_add_storage(c, &s, index)) return FS_ERR;
    L->storemap.key[slot] = c->storages[*index].key;
    L->storemap.val[slot] = *index;
    return FS_OK;
}

static int add_tensor(pth_loader *L, const char *name, const fs_pk_tensor *t) {
    fs_ckpt *c = L->c;
    fs_ckpt_item it = {0};
    if (get_storage(L, t->storage, &it.storage)) return fs_error_wrap("tensor '%s'", name);
    it.e.dtype = c->storages[it.storage].dtype;
    it.e.ndim = t->ndim;
    it.offset = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        it.e.shape[d] = (size_t)t->shape[d];
        it.stride[d] = t->stride[d];
    }
    uint64_t numel;
    if (fs_ckpt_numel(c->path, name, it.e.ndim, it.e.shape, &numel)) return FS_ERR;
    if (!(it.e.name = strdup(name))) return fs_error("'%s': out of memory", c->path);
    return fs_ckpt_add_item(c, &it);
}

static int load_state_dict(pth_loader *L, const fs_pk_value *root) {
    fs_ckpt *c = L->c;
    const fs_pk_value *sd = state_dict(root);
    if (!sd) return fs_error("'%s': data.pkl does not hold a dict of tensors", c->path);
    /* the zip entries under <prefix>data/, by storage key */
    size_t nz = fs_zip_count(c->zip), plen = strlen(L->prefix);
    if (strmap_init(&L->zipmap, nz) || strmap_init(&L->storemap, sd->n / 2))
        return fs_error("'%s': out of memory", c->path);
    for (size_t i = 0; i < nz; i++) {
        const char *name = fs_zip_name(c->zip, i);
        if (strncmp(name, L->prefix, plen) || strncmp(name + plen, "data/", 5) || !name[plen + 5]) continue;
        size_t slot = strmap_slot(&L->zipmap, name + plen + 5);
        if (L->zipmap.key[slot]) return fs_error("'%s': archive holds '%s' twice", c->path, name);
        L->zipmap.key[slot] = name + plen + 5;
        L->zipmap.val[slot] = i;
    }
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const fs_pk_value *k = sd->items[i], *v = sd->items[i + 1];
        if (k->kind != FS_PK_STR || v->kind != FS_PK_TENSOR) continue;
        if (strlen(k->s) != k->len) return fs_error("'%s': tensor name with a NUL character", c->path);
        if (add_tensor(L, k->s, v->tensor)) return FS_ERR;
    }
    return FS_OK;
}

int fs_pth_load(fs_ckpt *c) {
    if (fs_zip_open(&c->zip, c->path)) return FS_ERR;
    size_t pkl = 0;
    char *prefix = NULL;
    if (find_prefix(c, &pkl, &prefix)) return FS_ERR;
    unsigned char *data = NULL;
    size_t n = 0;
    fs_pickle *pk = NULL;
    const fs_pk_value *root = NULL;
    pth_loader L = {.c = c, .prefix = prefix};
    char what[4200];
    snprintf(what, sizeof what, "'%s': data.pkl", c->path);
    int rc = read_byteorder(c, prefix);
    if (!rc && fs_zip_entry_at(c->zip, pkl)->usize > FS_CKPT_MAX_PICKLE)
        rc = fs_error("%s: %llu bytes is absurd for a state dict", what,
                      (unsigned long long)fs_zip_entry_at(c->zip, pkl)->usize);
    if (!rc) rc = fs_zip_read(c->zip, pkl, &data, &n);
    if (!rc) rc = fs_pickle_load(&pk, &root, data, n, what);
    if (!rc) rc = load_state_dict(&L, root);
    strmap_free(&L.zipmap);
    strmap_free(&L.storemap);
    fs_pickle_free(pk);
    free(data);
    free(prefix);
    return rc;
}
