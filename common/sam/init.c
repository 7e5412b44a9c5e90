/* Random initialisation and export of whole SAM models. */
#include "sam/init.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "sam/internal.h"

typedef enum { INIT_ZERO, INIT_ONE, INIT_TRUNC, INIT_NORMAL } init_kind;

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

/* How a tensor of the official table starts, by its name. */
static init_kind kind_of(const char *name) {
    static const char *const embeddings[] = {"prompt_encoder.point_embeddings.", "prompt_encoder.not_a_point_embed.",
                                             "prompt_encoder.no_mask_embed.", "mask_decoder.iou_token.",
                                             "mask_decoder.mask_tokens.",
                                             "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"};
    for (size_t i = 0; i < sizeof embeddings / sizeof *embeddings; i++)
        if (!strncmp(name, embeddings[i], strlen(embeddings[i]))) return INIT_NORMAL;
    if (strstr(name, ".rel_pos_")) return INIT_ZERO;
    if (!strcmp(name, "image_encoder.pos_embed")) return INIT_TRUNC;
    /* the LayerNorms (LayerNorm2d in the neck, the mask downscaling and the upscaling included) */
    static const char *const norms[] = {"image_encoder.neck.1.", "image_encoder.neck.3.",
                                        "prompt_encoder.mask_downscaling.1.", "prompt_encoder.mask_downscaling.4.",
                                        "mask_decoder.output_upscaling.1."};
    int norm = strstr(name, ".norm") != NULL;
    for (size_t i = 0; i < sizeof norms / sizeof *norms; i++)
        if (!strncmp(name, norms[i], strlen(norms[i]))) norm = 1;
    if (ends_with(name, ".bias")) return INIT_ZERO;
    if (norm) return INIT_ONE;
    return INIT_TRUNC;
}

int fs_sam_create_random(fs_sam **out, const fs_sam_config *c, uint64_t seed) {
    *out = NULL;
    if (fs_sam_config_validate(c)) return FS_ERR;
    fs_sam *m = calloc(1, sizeof *m);
    if (!m) return fs_error("out of memory for a SAM model");
    m->cfg = m->ckpt_cfg = *c;
    if (fs_sam_params_alloc(&m->p, c)) {
        free(m);
        return FS_ERR;
    }
    const fs_sam_table *t = &m->p.table;
    for (size_t i = 0; i < t->n; i++) {
        const fs_sam_tensor_info *e = &t->v[i];
        float *x = m->p.arena + e->offset;
        fs_rng r;
        fs_rng_init(&r, seed, fs_hash64(0x696e6974ULL /* "init" */, i, 0));
        switch (kind_of(e->name)) {
        case INIT_ZERO: memset(x, 0, e->numel * sizeof *x); break;
        case INIT_ONE:
            for (size_t k = 0; k < e->numel; k++) x[k] = 1.0f;
            break;
        case INIT_NORMAL:
            for (size_t k = 0; k < e->numel; k++) x[k] = (float)fs_rng_normal(&r);
            break;
        case INIT_TRUNC:
            for (size_t k = 0; k < e->numel; k++) {
                double v;
                do v = fs_rng_normal(&r);
                while (v < -2.0 || v > 2.0);
                x[k] = (float)(0.02 * v);
            }
            break;
        }
    }
    size_t g = fs_sam_grid(c);
    m->image_pe = malloc(g * g * c->out_chans * sizeof *m->image_pe);
    if (!m->image_pe) {
        fs_sam_free(m);
        return fs_error("out of memory for a SAM model");
    }
    fs_sam_dense_pe(m, m->image_pe);
    *out = m;
    return FS_OK;
}

int fs_sam_export(const char *path, const fs_sam *m, const char *const *keys, const char *const *vals, size_t n) {
    const fs_sam_config *c = &m->cfg;
    const fs_sam_table *t = &m->p.table;
    enum { NCFG = 14 };
    char num[NCFG][1024];
    const char *ck[NCFG] = {"img_size",  "patch_size",  "embed_dim", "depth",         "num_heads",
                            "window_size", "global_attn", "out_chans", "dec_depth",     "dec_mlp_dim",
                            "dec_heads", "num_multimask", "iou_hidden", "mask_in_chans"};
    size_t cv[NCFG] = {c->img_size,  c->patch_size,  c->embed_dim, c->depth,         c->num_heads,
                       c->window_size, 0,           c->out_chans, c->dec_depth,     c->dec_mlp_dim,
                       c->dec_heads, c->num_multimask, c->iou_hidden, c->mask_in_chans};
    for (int i = 0; i < NCFG; i++) {
        if (i == 6) fs_sam_config_global_str(c, num[i], sizeof num[i]);
        else snprintf(num[i], sizeof num[i], "%zu", cv[i]);
    }
    const char **mk = calloc(NCFG + n, sizeof *mk), **mv = calloc(NCFG + n, sizeof *mv);
    const char **names = calloc(t->n + 1, sizeof *names);
    fs_tensor *tensors = calloc(t->n + 1, sizeof *tensors);
    int rc = FS_ERR;
    if (!mk || !mv || !names || !tensors) {
        fs_error("cannot write '%s': out of memory", path);
        goto out;
    }
    size_t nm = 0;
    for (int i = 0; i < NCFG; i++) {
        mk[nm] = ck[i];
        mv[nm++] = num[i];
    }
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (int j = 0; j < NCFG; j++) dup |= !strcmp(keys[i], ck[j]);
        if (dup) {
            fs_error("cannot write '%s': metadata key '%s' is the model's own configuration", path, keys[i]);
            goto out;
        }
        mk[nm] = keys[i];
        mv[nm++] = vals[i];
    }
    for (size_t i = 0; i < t->n; i++) {
        const fs_sam_tensor_info *e = &t->v[i];
        names[i] = e->name;
        tensors[i].dtype = FS_F32;
        tensors[i].ndim = e->ndim;
        memcpy(tensors[i].shape, e->shape, (size_t)e->ndim * sizeof e->shape[0]);
        tensors[i].data = m->p.arena + e->offset;
    }
    rc = fs_safetensors_write(path, names, tensors, t->n, mk, mv, nm);
out:
    free(mk);
    free(mv);
    free(names);
    free(tensors);
    return rc;
}
