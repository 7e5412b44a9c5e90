/* The training checkpoint: save, read back for resuming, apply for inference. */
#include "sam/ckpt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "sam/internal.h"

/* ---- metadata ---- */

int fs_sam_ckpt_meta_set(fs_sam_ckpt_meta *m, const char *key, const char *fmt, ...) {
    size_t i = 0;
    while (i < m->n && strcmp(m->key[i], key)) i++;
    if (i == m->n) {
        if (m->n == FS_SAM_CKPT_MAX_META)
            return fs_error("checkpoint metadata: more than %d keys", FS_SAM_CKPT_MAX_META);
        if (strlen(key) >= sizeof m->key[0]) return fs_error("checkpoint metadata: key '%s' too long", key);
        snprintf(m->key[i], sizeof m->key[i], "%s", key);
        m->n++;
    }
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(m->val[i], sizeof m->val[i], fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof m->val[i]) return fs_error("checkpoint metadata: value of '%s' too long", key);
    return FS_OK;
}

const char *fs_sam_ckpt_meta_get(const fs_sam_ckpt_meta *m, const char *key) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->key[i], key)) return m->val[i];
    return NULL;
}

const char *fs_sam_ckpt_targets_str(unsigned targets, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    for (int s = 0; s < FS_LORA_NSLOTS; s++)
        if (targets & FS_LORA_BIT(s)) {
            int k = snprintf(buf + len, n > len ? n - len : 0, "%s%s", len ? "," : "", fs_lora_slot_name(s));
            if (k > 0) len += (size_t)k;
        }
    if (!targets) snprintf(buf, n, "none");
    return buf;
}

/* ---- the base model's fingerprint ---- */

uint64_t fs_sam_fingerprint(const fs_sam *m) {
    const fs_sam_config *c = &m->cfg;
    uint64_t h = FS_FNV_OFFSET;
    uint64_t dims[] = {c->patch_size, c->embed_dim, c->depth, c->num_heads, c->mlp_ratio, c->window_size,
                       c->out_chans, c->mask_in_chans, c->dec_depth, c->dec_mlp_dim, c->dec_heads,
                       c->num_multimask, c->iou_hidden, c->iou_depth};
    h = fs_fnv1a_words(h, dims, sizeof dims);
    h = fs_fnv1a_words(h, c->global_attn, c->depth);
    char names[7][96];
    snprintf(names[0], 96, "image_encoder.patch_embed.proj.weight");
    snprintf(names[1], 96, "image_encoder.blocks.0.attn.qkv.weight");
    snprintf(names[2], 96, "image_encoder.blocks.%zu.mlp.lin2.weight", c->depth ? c->depth - 1 : 0);
    snprintf(names[3], 96, "image_encoder.neck.2.weight");
    snprintf(names[4], 96, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    snprintf(names[5], 96, "mask_decoder.iou_token.weight");
    snprintf(names[6], 96, "mask_decoder.output_upscaling.0.weight");
    for (int i = 0; i < 7; i++) {
        long k = fs_sam_table_find(&m->p.table, names[i]);
        if (k < 0) continue;
        const fs_sam_tensor_info *e = &m->p.table.v[k];
        h = fs_fnv1a_words(h, e->name, strlen(e->name));
        h = fs_fnv1a_words(h, m->p.arena + e->offset, e->numel * sizeof(float));
    }
    return fs_hash64(h, 0x66696e676572ULL, 0);
}

/* ---- saving ---- */

int fs_sam_ckpt_save(const char *path, fs_train *t, const fs_sam *m, uint64_t fp, const fs_sam_ckpt_meta *extra) {
    fs_train_pull(t);
    fs_sam_ckpt_meta *meta = calloc(1, sizeof *meta);
    size_t nt = fs_train_tensor_count(t);
    fs_tensor *tensors = calloc(3 * nt + 1, sizeof *tensors);
    char **names = calloc(3 * nt + 1, sizeof *names);
    const char **keys = NULL, **vals = NULL;
    int rc = FS_ERR;
    if (!meta || !tensors || !names) {
        fs_error("cannot write '%s': out of memory", path);
        goto out;
    }
    if (extra) *meta = *extra;
    const fs_lora *l = fs_train_lora(t);
    char targets[64];
    if (fs_sam_ckpt_meta_set(meta, "schema", FS_SAM_CKPT_SCHEMA) ||
        fs_sam_ckpt_meta_set(meta, "version", "%d", FS_SAM_CKPT_VERSION) ||
        fs_sam_ckpt_meta_set(meta, "step", "%zu", fs_train_steps(t)) ||
        fs_sam_ckpt_meta_set(meta, "img_size", "%zu", m->cfg.img_size) ||
        fs_sam_ckpt_meta_set(meta, "model", "%s", fs_sam_config_name(&m->cfg)) ||
        fs_sam_ckpt_meta_set(meta, "lora_rank", "%zu", l->cfg.targets || l->cfg.decoder ? l->cfg.rank : 0) ||
        fs_sam_ckpt_meta_set(meta, "lora_scale", "%.9g", (double)l->cfg.scale) ||
        fs_sam_ckpt_meta_set(meta, "lora_targets", "%s",
                             fs_sam_ckpt_targets_str(l->cfg.targets, targets, sizeof targets)) ||
        fs_sam_ckpt_meta_set(meta, "decoder", "%s", fs_train_decoder_mode_name(fs_train_get_config(t)->decoder)) ||
        fs_sam_ckpt_meta_set(meta, "encoder", "%s", fs_train_encoder_mode_name(fs_train_get_config(t)->encoder)) ||
        fs_sam_ckpt_meta_set(meta, "base_fingerprint", "%016" PRIx64, fp)) {
        fs_error_wrap("cannot write '%s'", path);
        goto out;
    }
    size_t n = 0;
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < nt; i++) {
            fs_train_tensor *x = fs_train_tensor_at(t, i);
            const char *prefix = pass == 0 ? "" : pass == 1 ? "adamw.m." : "adamw.v.";
            size_t len = strlen(prefix) + strlen(x->name) + 1;
            names[n] = malloc(len);
            if (!names[n]) {
                fs_error("cannot write '%s': out of memory", path);
                goto out;
            }
            snprintf(names[n], len, "%s%s", prefix, x->name);
            fs_tensor *tt = &tensors[n++];
            tt->dtype = FS_F32;
            tt->ndim = x->ndim;
            memcpy(tt->shape, x->shape, (size_t)x->ndim * sizeof x->shape[0]);
            tt->data = pass == 0 ? x->param : pass == 1 ? x->m : x->v;
        }
    keys = calloc(meta->n, sizeof *keys);
    vals = calloc(meta->n, sizeof *vals);
    if (!keys || !vals) {
        fs_error("cannot write '%s': out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < meta->n; i++) {
        keys[i] = meta->key[i];
        vals[i] = meta->val[i];
    }
    rc = fs_safetensors_write(path, (const char *const *)names, tensors, n, keys, vals, meta->n);
out:
    if (names)
        for (size_t i = 0; i < 3 * nt; i++) free(names[i]);
    free(names);
    free(tensors);
    free(keys);
    free(vals);
    free(meta);
    return rc;
}

/* ---- reading ---- */

static const char *const model_keys[] = {"schema",     "version",    "step",         "img_size", "model",
                                         "lora_rank",  "lora_scale", "lora_targets", "decoder",  "base_fingerprint"};
#define N_MODEL_KEYS (sizeof model_keys / sizeof model_keys[0])

static int parse_size(const char *path, const char *key, const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || v > (1ULL << 40) || *s == '-')
        return fs_error("'%s': checkpoint metadata '%s' is '%s', not a count", path, key, s);
    *out = (size_t)v;
    return FS_OK;
}

/* The model-level keys of an open checkpoint. */
static int read_info(fs_ckpt *ck, const char *path, fs_sam_ckpt_info *info) {
    const char *v[N_MODEL_KEYS];
    const char *schema = fs_ckpt_meta(ck, "schema");
    if (!schema || strcmp(schema, FS_SAM_CKPT_SCHEMA))
        return fs_error("'%s': not a fewsam training checkpoint (schema '%s')", path, schema ? schema : "none");
    for (size_t i = 0; i < N_MODEL_KEYS; i++)
        if (!(v[i] = fs_ckpt_meta(ck, model_keys[i])))
            return fs_error("'%s': checkpoint metadata lacks '%s'", path, model_keys[i]);
    if (strcmp(v[1], "1"))
        return fs_error("'%s': unsupported fewsam.checkpoint version %s (this build reads 1)", path, v[1]);
    memset(info, 0, sizeof *info);
    if (parse_size(path, "step", v[2], &info->step) || parse_size(path, "img_size", v[3], &info->img_size) ||
        parse_size(path, "lora_rank", v[5], &info->lora.rank))
        return FS_ERR;
    char *end;
    info->lora.scale = strtof(v[6], &end);
    if (*end || !*v[6]) return fs_error("'%s': checkpoint metadata 'lora_scale' is '%s', not a number", path, v[6]);
    if (fs_lora_parse_targets(v[7], &info->lora.targets)) return fs_error_wrap("'%s'", path);
    if (fs_train_decoder_mode_parse(v[8], &info->decoder))
        return fs_error("'%s': checkpoint metadata 'decoder' is '%s' (full, lora or frozen)", path, v[8]);
    /* the decoder's adapters share the encoder's rank and scale */
    info->lora.decoder = info->decoder == FS_TRAIN_DECODER_LORA;
    errno = 0;
    info->base_fingerprint = strtoull(v[9], &end, 16);
    if (*end || !*v[9] || errno)
        return fs_error("'%s': checkpoint metadata 'base_fingerprint' is '%s', not a hash", path, v[9]);
    const char *enc = fs_ckpt_meta(ck, "encoder");
    info->encoder = FS_TRAIN_ENCODER_LORA;
    if (enc && fs_train_encoder_mode_parse(enc, &info->encoder))
        return fs_error("'%s': checkpoint metadata 'encoder' is '%s' (lora, full or frozen)", path, enc);
    return FS_OK;
}

int fs_sam_ckpt_read_meta(const char *path, const char *const *keys, size_t n_keys, fs_sam_ckpt_meta *meta,
                          fs_sam_ckpt_info *info) {
    fs_ckpt *ck;
    if (fs_ckpt_open(&ck, path)) return FS_ERR;
    fs_sam_ckpt_info tmp;
    int rc = read_info(ck, path, info ? info : &tmp);
    if (rc == FS_OK && meta) {
        memset(meta, 0, sizeof *meta);
        for (size_t i = 0; i < N_MODEL_KEYS + n_keys && rc == FS_OK; i++) {
            const char *k = i < N_MODEL_KEYS ? model_keys[i] : keys[i - N_MODEL_KEYS];
            const char *v = fs_ckpt_meta(ck, k);
            if (v) rc = fs_sam_ckpt_meta_set(meta, k, "%s", v);
        }
        const char *enc = fs_ckpt_meta(ck, "encoder");
        if (rc == FS_OK && enc) rc = fs_sam_ckpt_meta_set(meta, "encoder", "%s", enc);
        if (rc) fs_error_wrap("'%s'", path);
    }
    fs_ckpt_close(ck);
    return rc;
}

/* Tensor `name` of ck into dst with exactly the given shape. */
static int read_exact(fs_ckpt *ck, const char *path, const char *name, int ndim, const size_t *shape, float *dst) {
    size_t i;
    if (fs_ckpt_find(ck, name, &i)) return fs_error("'%s': tensor '%s' is missing", path, name);
    const fs_ckpt_entry *e = fs_ckpt_entry_at(ck, i);
    int same = e->ndim == ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        numel *= shape[d];
        if (same && e->shape[d] != shape[d]) same = 0;
    }
    if (!same) {
        char a[128] = "", b[128] = "";
        for (int d = 0; d < e->ndim && strlen(a) < 100; d++)
            snprintf(a + strlen(a), sizeof a - strlen(a), d ? ",%zu" : "%zu", e->shape[d]);
        for (int d = 0; d < ndim && strlen(b) < 100; d++)
            snprintf(b + strlen(b), sizeof b - strlen(b), d ? ",%zu" : "%zu", shape[d]);
        return fs_error("'%s': tensor '%s' is [%s], expected [%s]", path, name, a, b);
    }
    if (e->dtype != FS_F32)
        return fs_error("'%s': tensor '%s' is %s, expected f32", path, name, fs_dtype_name(e->dtype));
    return fs_ckpt_read_f32(ck, i, dst, numel);
}

int fs_sam_ckpt_restore(const char *path, fs_train *t) {
    fs_ckpt *ck;
    if (fs_ckpt_open(&ck, path)) return FS_ERR;
    fs_sam_ckpt_info info;
    int rc = read_info(ck, path, &info);
    size_t nt = fs_train_tensor_count(t);
    if (rc == FS_OK && fs_ckpt_count(ck) != 3 * nt)
        rc = fs_error("'%s': %zu tensors, this training configuration has %zu (parameters and two moments each)", path,
                      fs_ckpt_count(ck), 3 * nt);
    char name[128];
    for (size_t i = 0; rc == FS_OK && i < nt; i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i);
        rc = read_exact(ck, path, x->name, x->ndim, x->shape, x->param);
        snprintf(name, sizeof name, "adamw.m.%s", x->name);
        if (rc == FS_OK) rc = read_exact(ck, path, name, x->ndim, x->shape, x->m);
        snprintf(name, sizeof name, "adamw.v.%s", x->name);
        if (rc == FS_OK) rc = read_exact(ck, path, name, x->ndim, x->shape, x->v);
    }
    if (rc == FS_OK) {
        fs_train_set_steps(t, info.step);
        fs_train_push(t);
    }
    fs_ckpt_close(ck);
    return rc;
}

int fs_sam_ckpt_apply(const char *path, fs_sam *m, fs_sam_ckpt_info *out_info) {
    fs_ckpt *ck;
    if (fs_ckpt_open(&ck, path)) return FS_ERR;
    fs_sam_ckpt_info info;
    fs_lora lora;
    memset(&lora, 0, sizeof lora);
    int rc = read_info(ck, path, &info);
    if (rc == FS_OK && info.base_fingerprint != fs_sam_fingerprint(m))
        rc = fs_error("'%s' was trained from other base weights than these (fingerprint %016" PRIx64
                      ", the base model's %016" PRIx64 ")",
                      path, info.base_fingerprint, fs_sam_fingerprint(m));
    if (rc == FS_OK && info.img_size != m->cfg.img_size)
        rc = fs_error("'%s' was trained at input size %zu, the model runs at %zu", path, info.img_size,
                      m->cfg.img_size);
    if (rc == FS_OK) rc = fs_lora_alloc(&lora, &m->cfg, &info.lora);
    if (rc) fs_error_wrap("'%s'", path);
    /* every tensor is an adapter, a decoder weight, an encoder weight (full
     * mode), or a moment */
    size_t n_lora = 0, n_dec = 0, n_enc = 0;
    int enc_full = info.encoder == FS_TRAIN_ENCODER_FULL;
    for (size_t i = 0; rc == FS_OK && i < fs_ckpt_count(ck); i++) {
        const char *name = fs_ckpt_entry_at(ck, i)->name;
        if (!strncmp(name, "adamw.", 6)) continue;
        long k = fs_sam_table_find(&lora.table, name);
        if (k >= 0) {
            const fs_sam_tensor_info *e = &lora.table.v[k];
            rc = read_exact(ck, path, name, e->ndim, e->shape, lora.arena + e->offset);
            n_lora++;
            continue;
        }
        k = fs_sam_table_find(&m->p.table, name);
        int dec = fs_sam_is_decoder_tensor(name);
        if (k < 0 || !(dec || (enc_full && fs_sam_is_encoder_tensor(name)))) {
            rc = fs_error("'%s': unexpected tensor '%s' (neither a LoRA adapter of its configuration nor a mask "
                          "decoder weight)",
                          path, name);
            break;
        }
        const fs_sam_tensor_info *e = &m->p.table.v[k];
        rc = read_exact(ck, path, name, e->ndim, e->shape, m->p.arena + e->offset);
        if (dec) n_dec++;
        else n_enc++;
    }
    if (rc == FS_OK && n_lora != lora.table.n)
        rc = fs_error("'%s': %zu of the %zu LoRA tensors its configuration has", path, n_lora, lora.table.n);
    size_t want_dec = 0, want_enc = 0;
    for (size_t i = 0; i < m->p.table.n; i++) {
        want_dec += fs_sam_is_decoder_tensor(m->p.table.v[i].name);
        want_enc += fs_sam_is_encoder_tensor(m->p.table.v[i].name);
    }
    if (rc == FS_OK && info.decoder == FS_TRAIN_DECODER_FULL && n_dec != want_dec)
        rc = fs_error("'%s': %zu of the %zu mask decoder tensors", path, n_dec, want_dec);
    if (rc == FS_OK && enc_full && n_enc != want_enc)
        rc = fs_error("'%s': %zu of the %zu encoder tensors", path, n_enc, want_enc);
    /* Only now, with every tensor read, touch the encoder. A failure above
     * may leave decoder tensors half replaced: the caller drops the model. */
    if (rc == FS_OK) fs_lora_merge(&lora, &m->cfg, &m->p);
    /* p is the host copy: a model bound to a device gets the new weights there too */
    if (rc == FS_OK && m->dev) rc = fs_sam_bind(m, m->dev);
    if (rc == FS_OK && out_info) *out_info = info;
    fs_lora_free(&lora);
    fs_ckpt_close(ck);
    return rc;
}
