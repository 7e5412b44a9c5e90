/* SAM configurations: presets, checkpoint metadata, shape inference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "sam/config.h"

static void set_common(fs_sam_config *c) {
    memset(c, 0, sizeof *c);
    c->img_size = 1024;
    c->patch_size = 16;
    c->mlp_ratio = 4;
    c->window_size = 14;
    c->out_chans = 256;
    c->mask_in_chans = 16;
    c->dec_depth = 2;
    c->dec_mlp_dim = 2048;
    c->dec_heads = 8;
    c->num_multimask = 3;
    c->iou_hidden = 256;
    c->iou_depth = 3;
    const float mean[3] = {123.675f, 116.28f, 103.53f}, std[3] = {58.395f, 57.12f, 57.375f};
    memcpy(c->pixel_mean, mean, sizeof mean);
    memcpy(c->pixel_std, std, sizeof std);
}

static const struct preset {
    const char *name;
    size_t embed, depth, heads, global[4];
} presets[] = {
    {"vit_b", 768, 12, 12, {2, 5, 8, 11}},
    {"vit_l", 1024, 24, 16, {5, 11, 17, 23}},
    {"vit_h", 1280, 32, 16, {7, 15, 23, 31}},
};

int fs_sam_config_preset(fs_sam_config *c, const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, name) != 0) continue;
        set_common(c);
        c->embed_dim = presets[i].embed;
        c->depth = presets[i].depth;
        c->num_heads = presets[i].heads;
        for (int k = 0; k < 4; k++) c->global_attn[presets[i].global[k]] = 1;
        return FS_OK;
    }
    return fs_error("unknown SAM model '%s' (expected vit_b, vit_l or vit_h)", name);
}

const char *fs_sam_config_name(const fs_sam_config *c) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        const struct preset *p = &presets[i];
        if (c->embed_dim != p->embed || c->depth != p->depth || c->num_heads != p->heads || c->patch_size != 16 ||
            c->window_size != 14 || c->out_chans != 256)
            continue;
        size_t n = 0;
        int match = 1;
        for (size_t b = 0; b < c->depth; b++)
            if (c->global_attn[b]) {
                if (n >= 4 || p->global[n] != b) match = 0;
                n++;
            }
        if (match && n == 4) return p->name;
    }
    return "custom";
}

const char *fs_sam_config_global_str(const fs_sam_config *c, char *buf, size_t n) {
    size_t len = 0;
    if (n) buf[0] = 0;
    for (size_t b = 0; b < c->depth && b < FS_SAM_MAX_DEPTH; b++) {
        if (!c->global_attn[b]) continue;
        int k = snprintf(buf + len, len < n ? n - len : 0, "%s%zu", len ? "," : "", b);
        if (k > 0) len += (size_t)k;
    }
    return buf;
}

int fs_sam_config_validate(const fs_sam_config *c) {
    if (!c->patch_size || !c->img_size || c->img_size % c->patch_size)
        return fs_error("SAM config: img_size %zu is not a positive multiple of patch_size %zu", c->img_size,
                        c->patch_size);
    if (c->img_size > 16384) return fs_error("SAM config: img_size %zu is too large", c->img_size);
    if (!c->depth || c->depth > FS_SAM_MAX_DEPTH)
        return fs_error("SAM config: depth %zu out of range 1..%d", c->depth, FS_SAM_MAX_DEPTH);
    if (!c->embed_dim || !c->num_heads || c->embed_dim % c->num_heads)
        return fs_error("SAM config: embed_dim %zu is not a multiple of num_heads %zu", c->embed_dim, c->num_heads);
    if (!c->mlp_ratio || !c->window_size) return fs_error("SAM config: mlp_ratio and window_size must be positive");
    if (!c->out_chans || c->out_chans % 8)
        return fs_error("SAM config: out_chans %zu must be a positive multiple of 8", c->out_chans);
    if (!c->dec_depth || c->dec_depth > FS_SAM_MAX_DEC_DEPTH)
        return fs_error("SAM config: dec_depth %zu out of range 1..%d", c->dec_depth, FS_SAM_MAX_DEC_DEPTH);
    /* cross-attention works at half width (downsample rate 2) */
    if (!c->dec_heads || c->out_chans % c->dec_heads || (c->out_chans / 2) % c->dec_heads)
        return fs_error("SAM config: out_chans %zu (and half of it) not divisible by dec_heads %zu", c->out_chans,
                        c->dec_heads);
    if (!c->dec_mlp_dim || !c->iou_hidden || c->iou_depth < 2 || c->iou_depth > 8)
        return fs_error("SAM config: bad decoder MLP sizes");
    if (!c->num_multimask || c->num_multimask + 1 > FS_SAM_MAX_MASKS)
        return fs_error("SAM config: num_multimask %zu out of range 1..%d", c->num_multimask, FS_SAM_MAX_MASKS - 1);
    if (!c->mask_in_chans || c->mask_in_chans % 4)
        return fs_error("SAM config: mask_in_chans %zu must be a positive multiple of 4", c->mask_in_chans);
    for (int i = 0; i < 3; i++)
        if (!(c->pixel_std[i] > 0)) return fs_error("SAM config: pixel_std must be positive");
    return FS_OK;
}

/* ---- reading a checkpoint ---- */

/* Shape of a named tensor; NULL when absent (the lookup's message is dropped). */
static const fs_ckpt_entry *entry(const fs_ckpt *ck, const char *name) {
    size_t i;
    if (fs_ckpt_find(ck, name, &i) != FS_OK) {
        fs_error_clear();
        return NULL;
    }
    return fs_ckpt_entry_at(ck, i);
}

static const fs_ckpt_entry *need(const fs_ckpt *ck, const char *name, int ndim) {
    const fs_ckpt_entry *e = entry(ck, name);
    if (!e) {
        fs_error("'%s': tensor '%s' is missing (not a SAM checkpoint?)", fs_ckpt_path(ck), name);
        return NULL;
    }
    if (e->ndim != ndim) {
        fs_error("'%s': tensor '%s' has %d dimensions, expected %d", fs_ckpt_path(ck), name, e->ndim, ndim);
        return NULL;
    }
    for (int d = 0; d < ndim; d++)
        if (!e->shape[d]) {
            fs_error("'%s': tensor '%s' has an empty dimension", fs_ckpt_path(ck), name);
            return NULL;
        }
    return e;
}

typedef struct {
    const char *const *keys, *const *vals;
    size_t n;
} overrides;

/* A metadata value: the overrides first, then the file's header. */
static const char *meta(const fs_ckpt *ck, const overrides *ov, const char *key) {
    for (size_t i = ov->n; i-- > 0;)
        if (!strcmp(ov->keys[i], key)) return ov->vals[i];
    return fs_ckpt_meta(ck, key);
}

/* Integer metadata value; 0 = absent, 1 = read, FS_ERR = malformed. */
static int meta_size(const fs_ckpt *ck, const overrides *ov, const char *key, size_t *out) {
    const char *s = meta(ck, ov, key);
    if (!s) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > (1u << 24) || s[0] == '-')
        return fs_error("'%s': configuration %s='%s' is not a valid size", fs_ckpt_path(ck), key, s);
    *out = (size_t)v;
    return 1;
}

static int meta_global(const fs_ckpt *ck, const overrides *ov, fs_sam_config *c, int *have) {
    const char *s = meta(ck, ov, "global_attn");
    *have = 0;
    if (!s) return FS_OK;
    memset(c->global_attn, 0, sizeof c->global_attn);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (errno || end == p || v >= FS_SAM_MAX_DEPTH || (*end && *end != ','))
            return fs_error("'%s': configuration global_attn='%s' is not a list of block indices", fs_ckpt_path(ck),
                            s);
        c->global_attn[v] = 1;
        p = *end ? end + 1 : end;
    }
    *have = 1;
    return FS_OK;
}

/* Number of consecutive i with fmt % i present. */
static size_t count_indexed(const fs_ckpt *ck, const char *fmt, size_t max) {
    char name[256];
    size_t n = 0;
    for (; n < max; n++) {
        snprintf(name, sizeof name, fmt, n);
        if (!entry(ck, name)) break;
    }
    return n;
}

static const char *const known_keys[] = {"img_size",    "patch_size", "embed_dim",     "depth",
                                         "num_heads",   "window_size", "global_attn",  "out_chans",
                                         "dec_depth",   "dec_mlp_dim", "dec_heads",    "num_multimask",
                                         "iou_hidden",  "mask_in_chans"};

int fs_sam_config_from_ckpt(fs_sam_config *c, const fs_ckpt *ck) {
    return fs_sam_config_from_ckpt_meta(c, ck, NULL, NULL, 0);
}

int fs_sam_config_from_ckpt_meta(fs_sam_config *c, const fs_ckpt *ck, const char *const *okeys,
                                 const char *const *ovals, size_t n_over) {
    overrides ov = {okeys, ovals, n_over};
    for (size_t i = 0; i < n_over; i++) {
        size_t k = 0;
        while (k < sizeof known_keys / sizeof *known_keys && strcmp(known_keys[k], okeys[i])) k++;
        if (k == sizeof known_keys / sizeof *known_keys)
            return fs_error("unknown SAM configuration key '%s' (expected one of img_size, patch_size, embed_dim, "
                            "depth, num_heads, window_size, global_attn, out_chans, dec_depth, dec_mlp_dim, "
                            "dec_heads, num_multimask, iou_hidden, mask_in_chans)",
                            okeys[i]);
    }
    const char *path = fs_ckpt_path(ck);
    set_common(c);
    c->num_heads = 0;
    c->window_size = 0;

    /* metadata first */
    struct { const char *key; size_t *dst; } keys[] = {
        {"img_size", &c->img_size},     {"patch_size", &c->patch_size},       {"embed_dim", &c->embed_dim},
        {"depth", &c->depth},           {"num_heads", &c->num_heads},         {"window_size", &c->window_size},
        {"out_chans", &c->out_chans},   {"dec_depth", &c->dec_depth},         {"dec_mlp_dim", &c->dec_mlp_dim},
        {"dec_heads", &c->dec_heads},   {"num_multimask", &c->num_multimask}, {"iou_hidden", &c->iou_hidden},
        {"mask_in_chans", &c->mask_in_chans},
    };
    enum { NK = sizeof keys / sizeof *keys };
    int have[NK];
    for (size_t k = 0; k < NK; k++) {
        have[k] = meta_size(ck, &ov, keys[k].key, keys[k].dst);
        if (have[k] < 0) return FS_ERR;
    }
#define HAVE(i) (have[i] == 1)
    int have_global;
    if (meta_global(ck, &ov, c, &have_global)) return FS_ERR;

    /* then shapes */
    const fs_ckpt_entry *pw = need(ck, "image_encoder.patch_embed.proj.weight", 4);
    const fs_ckpt_entry *pos = need(ck, "image_encoder.pos_embed", 4);
    if (!pw || !pos) return FS_ERR;
    if (!HAVE(2)) c->embed_dim = pw->shape[0];
    if (!HAVE(1)) c->patch_size = pw->shape[2];
    size_t grid = pos->shape[1];
    if (!HAVE(0)) c->img_size = grid * c->patch_size;
    if (!HAVE(3)) c->depth = count_indexed(ck, "image_encoder.blocks.%zu.norm1.weight", FS_SAM_MAX_DEPTH + 1);
    if (c->depth == 0 || c->depth > FS_SAM_MAX_DEPTH)
        return fs_error("'%s': %zu image encoder blocks (expected 1..%d)", path, c->depth, FS_SAM_MAX_DEPTH);

    /* rel-pos tables: 2*grid-1 rows for global blocks, 2*window-1 for windowed */
    size_t window = 0;
    for (size_t b = 0; b < c->depth; b++) {
        char name[128];
        snprintf(name, sizeof name, "image_encoder.blocks.%zu.attn.rel_pos_h", b);
        const fs_ckpt_entry *rp = need(ck, name, 2);
        if (!rp) return FS_ERR;
        if (!HAVE(4) && !c->num_heads) {
            if (c->embed_dim % rp->shape[1])
                return fs_error("'%s': tensor '%s' has head_dim %zu, which does not divide embed_dim %zu", path, name,
                                rp->shape[1], c->embed_dim);
            c->num_heads = c->embed_dim / rp->shape[1];
        }
        if (have_global) continue;
        if (rp->shape[0] == 2 * grid - 1) {
            c->global_attn[b] = 1;
        } else {
            size_t w = (rp->shape[0] + 1) / 2;
            if (rp->shape[0] % 2 == 0 || (window && w != window))
                return fs_error("'%s': tensor '%s' has %zu rows, expected 2*%zu-1 (global) or 2*window-1", path, name,
                                rp->shape[0], grid);
            window = w;
        }
    }
    if (!HAVE(5)) c->window_size = window ? window : 14;

    const fs_ckpt_entry *neck = need(ck, "image_encoder.neck.0.weight", 4);
    if (!neck) return FS_ERR;
    if (!HAVE(6)) c->out_chans = neck->shape[0];
    if (!HAVE(7))
        c->dec_depth = count_indexed(ck, "mask_decoder.transformer.layers.%zu.norm1.weight", FS_SAM_MAX_DEC_DEPTH + 1);
    if (!HAVE(8)) {
        const fs_ckpt_entry *e = need(ck, "mask_decoder.transformer.layers.0.mlp.lin1.weight", 2);
        if (!e) return FS_ERR;
        c->dec_mlp_dim = e->shape[0];
    }
    if (!HAVE(10)) {
        const fs_ckpt_entry *e = need(ck, "mask_decoder.mask_tokens.weight", 2);
        if (!e) return FS_ERR;
        c->num_multimask = e->shape[0] - 1;
    }
    if (!HAVE(11)) {
        const fs_ckpt_entry *e = need(ck, "mask_decoder.iou_prediction_head.layers.0.weight", 2);
        if (!e) return FS_ERR;
        c->iou_hidden = e->shape[0];
    }
    c->iou_depth = count_indexed(ck, "mask_decoder.iou_prediction_head.layers.%zu.weight", 9);
    if (!HAVE(12)) {
        const fs_ckpt_entry *e = need(ck, "prompt_encoder.mask_downscaling.3.weight", 4);
        if (!e) return FS_ERR;
        c->mask_in_chans = e->shape[0];
    }
    /* dec_heads cannot be read off shapes: metadata or the official 8 */
#undef HAVE
    if (fs_sam_config_validate(c)) return fs_error_wrap("'%s'", path);
    return FS_OK;
}

/* ---- a configuration from keys alone ---- */

int fs_sam_config_from_keys(fs_sam_config *c, const char *const *keys, const char *const *vals, size_t n) {
    fs_sam_config_preset(c, "vit_b");
    int have_global = 0, have_depth = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i], *s = vals[i];
        if (!strcmp(k, "global_attn")) {
            memset(c->global_attn, 0, sizeof c->global_attn);
            const char *p = s;
            while (*p) {
                char *end;
                errno = 0;
                unsigned long v = strtoul(p, &end, 10);
                if (errno || end == p || v >= FS_SAM_MAX_DEPTH || (*end && *end != ','))
                    return fs_error("configuration global_attn='%s' is not a list of block indices", s);
                c->global_attn[v] = 1;
                p = *end ? end + 1 : end;
            }
            have_global = 1;
            continue;
        }
        struct { const char *key; size_t *dst; } map[] = {
            {"img_size", &c->img_size},     {"patch_size", &c->patch_size},       {"embed_dim", &c->embed_dim},
            {"depth", &c->depth},           {"num_heads", &c->num_heads},         {"window_size", &c->window_size},
            {"out_chans", &c->out_chans},   {"dec_depth", &c->dec_depth},         {"dec_mlp_dim", &c->dec_mlp_dim},
            {"dec_heads", &c->dec_heads},   {"num_multimask", &c->num_multimask}, {"iou_hidden", &c->iou_hidden},
            {"mask_in_chans", &c->mask_in_chans},
        };
        size_t j = 0, nm = sizeof map / sizeof *map;
        while (j < nm && strcmp(map[j].key, k)) j++;
        if (j == nm)
            return fs_error("unknown SAM configuration key '%s' (expected one of img_size, patch_size, embed_dim, "
                            "depth, num_heads, window_size, global_attn, out_chans, dec_depth, dec_mlp_dim, "
                            "dec_heads, num_multimask, iou_hidden, mask_in_chans)",
                            k);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || v > (1u << 24) || s[0] == '-')
            return fs_error("configuration %s='%s' is not a valid size", k, s);
        *map[j].dst = (size_t)v;
        if (!strcmp(k, "depth")) have_depth = 1;
    }
    if (have_depth && !have_global && c->depth != 12)
        return fs_error("configuration depth=%zu needs global_attn (the blocks that attend globally, e.g. 1,3)",
                        c->depth);
    for (size_t b = c->depth; b < FS_SAM_MAX_DEPTH; b++)
        if (c->global_attn[b])
            return fs_error("configuration global_attn names block %zu of a %zu-block encoder", b, c->depth);
    return fs_sam_config_validate(c);
}
