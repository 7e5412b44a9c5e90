/* The SAM parameter table, arena and strict checkpoint loading. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/resize.h"
#include "sam/params.h"

typedef struct {
    fs_sam_table *t;
    size_t cap;
    int failed;
} builder;

/* Appends one tensor: name from fmt, shape from the trailing dims (ndim of them). */
static void add(builder *b, float **slot, int ndim, size_t d0, size_t d1, size_t d2, size_t d3, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static void add(builder *b, float **slot, int ndim, size_t d0, size_t d1, size_t d2, size_t d3, const char *fmt, ...) {
    if (b->failed) return;
    fs_sam_table *t = b->t;
    if (t->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 512;
        fs_sam_tensor_info *v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            b->failed = 1;
            return;
        }
        t->v = v;
        b->cap = cap;
    }
    fs_sam_tensor_info *e = &t->v[t->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    size_t dims[4] = {d0, d1, d2, d3};
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = dims[i];
        e->numel *= dims[i];
    }
    e->offset = t->total;
    e->slot = slot;
    t->total += e->numel;
}

#define V1(a) 1, (a), 0, 0, 0
#define V2(a, b) 2, (a), (b), 0, 0
#define V4(a, b, c, d) 4, (a), (b), (c), (d)
#define S(p, field) ((p) ? &(p)->field : NULL)

static void add_linear(builder *b, fs_sam_linear *l, size_t out, size_t in, const char *prefix) {
    add(b, l ? &l->w : NULL, V2(out, in), "%s.weight", prefix);
    add(b, l ? &l->b : NULL, V1(out), "%s.bias", prefix);
}

static void add_norm(builder *b, float **w, float **bias, size_t C, const char *prefix) {
    add(b, w, V1(C), "%s.weight", prefix);
    add(b, bias, V1(C), "%s.bias", prefix);
}

/* The decoder's Attention(D, heads, downsample): q/k/v [D/ds, D], out [D, D/ds]. */
static void add_attn(builder *b, fs_sam_attn_params *a, size_t D, size_t inner, const char *prefix) {
    char n[160];
    snprintf(n, sizeof n, "%s.q_proj", prefix);
    add_linear(b, a ? &a->q : NULL, inner, D, n);
    snprintf(n, sizeof n, "%s.k_proj", prefix);
    add_linear(b, a ? &a->k : NULL, inner, D, n);
    snprintf(n, sizeof n, "%s.v_proj", prefix);
    add_linear(b, a ? &a->v : NULL, inner, D, n);
    snprintf(n, sizeof n, "%s.out_proj", prefix);
    add_linear(b, a ? &a->out : NULL, D, inner, n);
}

/* MLP(in, hidden, out, depth): layers in->hidden, hidden->hidden..., hidden->out. */
static void add_mlp(builder *b, fs_sam_mlp_params *m, size_t in, size_t hidden, size_t out, size_t depth,
                    const char *prefix) {
    char n[160];
    for (size_t j = 0; j < depth; j++) {
        snprintf(n, sizeof n, "%s.layers.%zu", prefix, j);
        add_linear(b, m ? &m->layers[j] : NULL, j + 1 == depth ? out : hidden, j == 0 ? in : hidden, n);
    }
}

/* Fills t (and binds p's fields when p is given) in state_dict order. */
static int build(fs_sam_table *t, const fs_sam_config *c, fs_sam_params *p) {
    if (fs_sam_config_validate(c)) return FS_ERR;
    memset(t, 0, sizeof *t);
    builder b = {t, 0, 0};
    char n[160];
    size_t C = c->embed_dim, g = fs_sam_grid(c), P = c->patch_size, hd = fs_sam_head_dim(c), D = c->out_chans;

    add(&b, S(p, pos_embed), V4(1, g, g, C), "image_encoder.pos_embed");
    add(&b, S(p, patch.w), V4(C, 3, P, P), "image_encoder.patch_embed.proj.weight");
    add(&b, S(p, patch.b), V1(C), "image_encoder.patch_embed.proj.bias");
    for (size_t i = 0; i < c->depth; i++) {
        fs_sam_block_params *k = p ? &p->blocks[i] : NULL;
        size_t rows = 2 * (c->global_attn[i] ? g : c->window_size) - 1;
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.norm1", i);
        add_norm(&b, S(k, norm1_w), S(k, norm1_b), C, n);
        add(&b, S(k, rel_pos_h), V2(rows, hd), "image_encoder.blocks.%zu.attn.rel_pos_h", i);
        add(&b, S(k, rel_pos_w), V2(rows, hd), "image_encoder.blocks.%zu.attn.rel_pos_w", i);
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.attn.qkv", i);
        add_linear(&b, S(k, qkv), 3 * C, C, n);
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.attn.proj", i);
        add_linear(&b, S(k, proj), C, C, n);
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.norm2", i);
        add_norm(&b, S(k, norm2_w), S(k, norm2_b), C, n);
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.mlp.lin1", i);
        add_linear(&b, S(k, lin1), C * c->mlp_ratio, C, n);
        snprintf(n, sizeof n, "image_encoder.blocks.%zu.mlp.lin2", i);
        add_linear(&b, S(k, lin2), C, C * c->mlp_ratio, n);
    }
    add(&b, S(p, neck0_w), V4(D, C, 1, 1), "image_encoder.neck.0.weight");
    add_norm(&b, S(p, neck1_w), S(p, neck1_b), D, "image_encoder.neck.1");
    add(&b, S(p, neck2_w), V4(D, D, 3, 3), "image_encoder.neck.2.weight");
    add_norm(&b, S(p, neck3_w), S(p, neck3_b), D, "image_encoder.neck.3");

    size_t mic = c->mask_in_chans;
    add(&b, S(p, pe_gaussian), V2(2, D / 2), "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix");
    for (int i = 0; i < 4; i++) add(&b, S(p, point_embed[i]), V2(1, D), "prompt_encoder.point_embeddings.%d.weight", i);
    add(&b, S(p, not_a_point), V2(1, D), "prompt_encoder.not_a_point_embed.weight");
    add(&b, S(p, md0_w), V4(mic / 4, 1, 2, 2), "prompt_encoder.mask_downscaling.0.weight");
    add(&b, S(p, md0_b), V1(mic / 4), "prompt_encoder.mask_downscaling.0.bias");
    add_norm(&b, S(p, md1_w), S(p, md1_b), mic / 4, "prompt_encoder.mask_downscaling.1");
    add(&b, S(p, md3_w), V4(mic, mic / 4, 2, 2), "prompt_encoder.mask_downscaling.3.weight");
    add(&b, S(p, md3_b), V1(mic), "prompt_encoder.mask_downscaling.3.bias");
    add_norm(&b, S(p, md4_w), S(p, md4_b), mic, "prompt_encoder.mask_downscaling.4");
    add(&b, S(p, md6_w), V4(D, mic, 1, 1), "prompt_encoder.mask_downscaling.6.weight");
    add(&b, S(p, md6_b), V1(D), "prompt_encoder.mask_downscaling.6.bias");
    add(&b, S(p, no_mask), V2(1, D), "prompt_encoder.no_mask_embed.weight");

    for (size_t i = 0; i < c->dec_depth; i++) {
        fs_sam_twoway_params *l = p ? &p->layers[i] : NULL;
        char pre[96];
        snprintf(pre, sizeof pre, "mask_decoder.transformer.layers.%zu", i);
        snprintf(n, sizeof n, "%s.self_attn", pre);
        add_attn(&b, S(l, self_attn), D, D, n);
        snprintf(n, sizeof n, "%s.norm1", pre);
        add_norm(&b, S(l, norm1_w), S(l, norm1_b), D, n);
        snprintf(n, sizeof n, "%s.cross_attn_token_to_image", pre);
        add_attn(&b, S(l, cross_t2i), D, D / 2, n);
        snprintf(n, sizeof n, "%s.norm2", pre);
        add_norm(&b, S(l, norm2_w), S(l, norm2_b), D, n);
        snprintf(n, sizeof n, "%s.mlp.lin1", pre);
        add_linear(&b, S(l, lin1), c->dec_mlp_dim, D, n);
        snprintf(n, sizeof n, "%s.mlp.lin2", pre);
        add_linear(&b, S(l, lin2), D, c->dec_mlp_dim, n);
        snprintf(n, sizeof n, "%s.norm3", pre);
        add_norm(&b, S(l, norm3_w), S(l, norm3_b), D, n);
        snprintf(n, sizeof n, "%s.norm4", pre);
        add_norm(&b, S(l, norm4_w), S(l, norm4_b), D, n);
        snprintf(n, sizeof n, "%s.cross_attn_image_to_token", pre);
        add_attn(&b, S(l, cross_i2t), D, D / 2, n);
    }
    add_attn(&b, S(p, final_attn), D, D / 2, "mask_decoder.transformer.final_attn_token_to_image");
    add_norm(&b, S(p, norm_final_w), S(p, norm_final_b), D, "mask_decoder.transformer.norm_final_attn");
    size_t nm = fs_sam_num_masks(c);
    add(&b, S(p, iou_token), V2(1, D), "mask_decoder.iou_token.weight");
    add(&b, S(p, mask_tokens), V2(nm, D), "mask_decoder.mask_tokens.weight");
    add(&b, S(p, up0_w), V4(D, D / 4, 2, 2), "mask_decoder.output_upscaling.0.weight");
    add(&b, S(p, up0_b), V1(D / 4), "mask_decoder.output_upscaling.0.bias");
    add_norm(&b, S(p, up1_w), S(p, up1_b), D / 4, "mask_decoder.output_upscaling.1");
    add(&b, S(p, up3_w), V4(D / 4, D / 8, 2, 2), "mask_decoder.output_upscaling.3.weight");
    add(&b, S(p, up3_b), V1(D / 8), "mask_decoder.output_upscaling.3.bias");
    for (size_t i = 0; i < nm; i++) {
        snprintf(n, sizeof n, "mask_decoder.output_hypernetworks_mlps.%zu", i);
        add_mlp(&b, S(p, hyper[i]), D, D, D / 8, 3, n);
    }
    add_mlp(&b, S(p, iou_head), D, c->iou_hidden, nm, c->iou_depth, "mask_decoder.iou_prediction_head");

    if (b.failed) {
        fs_sam_table_free(t);
        return fs_error("out of memory building the SAM parameter table");
    }
    return FS_OK;
}

int fs_sam_table_build(fs_sam_table *t, const fs_sam_config *c) { return build(t, c, NULL); }

void fs_sam_table_free(fs_sam_table *t) {
    free(t->v);
    memset(t, 0, sizeof *t);
}

long fs_sam_table_find(const fs_sam_table *t, const char *name) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0) return (long)i;
    return -1;
}

int fs_sam_params_alloc(fs_sam_params *p, const fs_sam_config *c) {
    memset(p, 0, sizeof *p);
    if (build(&p->table, c, p)) return FS_ERR;
    p->arena = calloc(p->table.total, sizeof *p->arena);
    if (!p->arena) {
        size_t total = p->table.total;
        fs_sam_table_free(&p->table);
        return fs_error("out of memory for %zu SAM parameters", total);
    }
    for (size_t i = 0; i < p->table.n; i++) *p->table.v[i].slot = p->arena + p->table.v[i].offset;
    return FS_OK;
}

void fs_sam_params_free(fs_sam_params *p) {
    free(p->arena);
    fs_sam_table_free(&p->table);
    memset(p, 0, sizeof *p);
}

static const char *shape_str(char *buf, size_t n, int ndim, const size_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%zu", i ? "," : "", shape[i]);
    if (len < n) snprintf(buf + len, n - len, "]");
    return buf;
}

/* src[rows, cols] -> dst[new_rows, new_cols], one bilinear plane. */
static void resize_plane(const float *src, size_t rows, size_t cols, float *dst, size_t new_rows, size_t new_cols) {
    fs_resize_bilinear(src, rows, cols, dst, new_rows, new_cols);
}

/* pos_embed [1, g, g, C] -> [1, ng, ng, C]: channels-last, so each channel is
 * gathered into a plane, resized, scattered back (as SAMed permutes to NCHW). */
static int resize_pos_embed(const float *src, size_t g, float *dst, size_t ng, size_t C) {
    float *a = malloc((g * g + ng * ng) * sizeof *a);
    if (!a) return fs_error("out of memory resizing pos_embed");
    float *b = a + g * g;
    for (size_t ch = 0; ch < C; ch++) {
        for (size_t i = 0; i < g * g; i++) a[i] = src[i * C + ch];
        resize_plane(a, g, g, b, ng, ng);
        for (size_t i = 0; i < ng * ng; i++) dst[i * C + ch] = b[i];
    }
    free(a);
    return FS_OK;
}

/* Every name and shape of table t against the checkpoint, both ways. */
static int check_table(const fs_sam_table *t, const fs_ckpt *ck, const fs_sam_config *ck_cfg) {
    const char *path = fs_ckpt_path(ck);
    char s1[96], s2[96];
    for (size_t i = 0; i < t->n; i++) {
        const fs_sam_tensor_info *e = &t->v[i];
        size_t idx;
        if (fs_ckpt_find(ck, e->name, &idx))
            return fs_error("'%s': tensor '%s' is missing (expected shape %s)", path, e->name,
                            shape_str(s1, sizeof s1, e->ndim, e->shape));
        const fs_ckpt_entry *ce = fs_ckpt_entry_at(ck, idx);
        int same = ce->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = ce->shape[d] == e->shape[d];
        if (!same)
            return fs_error("'%s': tensor '%s' has shape %s, expected %s", path, e->name,
                            shape_str(s1, sizeof s1, ce->ndim, ce->shape), shape_str(s2, sizeof s2, e->ndim, e->shape));
    }
    for (size_t i = 0; i < fs_ckpt_count(ck); i++) {
        const fs_ckpt_entry *ce = fs_ckpt_entry_at(ck, i);
        if (fs_sam_table_find(t, ce->name) < 0)
            return fs_error("'%s': unexpected tensor '%s' with shape %s (not part of SAM %s)", path, ce->name,
                            shape_str(s1, sizeof s1, ce->ndim, ce->shape), fs_sam_config_name(ck_cfg));
    }
    return FS_OK;
}

int fs_sam_params_check(const fs_ckpt *ck, const fs_sam_config *ck_cfg) {
    fs_sam_table t;
    if (build(&t, ck_cfg, NULL)) return FS_ERR;
    int rc = check_table(&t, ck, ck_cfg);
    fs_sam_table_free(&t);
    return rc;
}

int fs_sam_params_load(fs_sam_params *p, const fs_sam_config *cfg, fs_ckpt *ck, const fs_sam_config *ck_cfg) {
    const char *path = fs_ckpt_path(ck);
    fs_sam_table src;
    if (build(&src, ck_cfg, NULL)) return FS_ERR;
    int rc = FS_ERR;
    float *tmp = NULL;
    if (src.n != p->table.n) {
        fs_error("'%s': configuration mismatch between checkpoint and model", path);
        goto done;
    }
    /* names and shapes first: nothing is read from a checkpoint that does not fit */
    if (check_table(&src, ck, ck_cfg)) goto done;
    size_t max_tmp = 0;
    for (size_t i = 0; i < src.n; i++) {
        if (strcmp(src.v[i].name, p->table.v[i].name) || (src.v[i].numel != p->table.v[i].numel && src.v[i].ndim != 4 &&
                                                          src.v[i].ndim != 2)) {
            fs_error("'%s': configuration mismatch between checkpoint and model at '%s'", path, src.v[i].name);
            goto done;
        }
        if (src.v[i].numel != p->table.v[i].numel && src.v[i].numel > max_tmp) max_tmp = src.v[i].numel;
    }
    if (max_tmp && !(tmp = malloc(max_tmp * sizeof *tmp))) {
        fs_error("out of memory loading '%s'", path);
        goto done;
    }
    for (size_t i = 0; i < src.n; i++) {
        const fs_sam_tensor_info *e = &src.v[i], *d = &p->table.v[i];
        size_t idx;
        if (fs_ckpt_find(ck, e->name, &idx)) goto done;
        float *dst = p->arena + d->offset;
        if (e->numel == d->numel) {
            if (fs_ckpt_read_f32(ck, idx, dst, d->numel)) goto done;
            continue;
        }
        /* only pos_embed and global rel-pos tables change with img_size */
        if (fs_ckpt_read_f32(ck, idx, tmp, e->numel)) goto done;
        if (e->ndim == 4) {
            if (resize_pos_embed(tmp, e->shape[1], dst, d->shape[1], e->shape[3])) goto done;
        } else {
            resize_plane(tmp, e->shape[0], e->shape[1], dst, d->shape[0], d->shape[1]);
        }
    }
    rc = FS_OK;
done:
    free(tmp);
    fs_sam_table_free(&src);
    return rc;
}
