/* Loading and freeing a SAM model; activation taps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "sam/internal.h"

int fs_sam_load(fs_sam **out, const char *ckpt_path, size_t img_size) {
    return fs_sam_load_meta(out, ckpt_path, img_size, NULL, NULL, 0);
}

int fs_sam_load_meta(fs_sam **out, const char *ckpt_path, size_t img_size, const char *const *keys,
                     const char *const *vals, size_t n) {
    *out = NULL;
    fs_ckpt *ck;
    if (fs_ckpt_open(&ck, ckpt_path)) return FS_ERR;
    fs_sam *m = calloc(1, sizeof *m);
    if (!m) {
        fs_ckpt_close(ck);
        return fs_error("out of memory loading '%s'", ckpt_path);
    }
    if (fs_sam_config_from_ckpt_meta(&m->ckpt_cfg, ck, keys, vals, n)) goto fail;
    m->cfg = m->ckpt_cfg;
    if (img_size) {
        if (img_size % m->cfg.patch_size) {
            fs_error("'%s': input size %zu is not a multiple of the patch size %zu", ckpt_path, img_size,
                     m->cfg.patch_size);
            goto fail;
        }
        m->cfg.img_size = img_size;
        if (fs_sam_config_validate(&m->cfg)) goto fail;
    }
    if (fs_sam_params_check(ck, &m->ckpt_cfg)) goto fail;
    if (fs_sam_params_alloc(&m->p, &m->cfg)) goto fail;
    if (fs_sam_params_load(&m->p, &m->cfg, ck, &m->ckpt_cfg)) goto fail;
    size_t g = fs_sam_grid(&m->cfg);
    m->image_pe = malloc(g * g * m->cfg.out_chans * sizeof *m->image_pe);
    if (!m->image_pe) {
        fs_error("out of memory loading '%s'", ckpt_path);
        goto fail;
    }
    fs_sam_dense_pe(m, m->image_pe);
    fs_ckpt_close(ck);
    *out = m;
    return FS_OK;
fail:
    fs_ckpt_close(ck);
    fs_sam_free(m);
    return FS_ERR;
}

static void unbind(fs_sam *m) {
    if (!m->dev) return;
    m->dev->free(m->dp.arena);
    m->dev->free(m->d_image_pe);
    memset(&m->dp, 0, sizeof m->dp);
    m->d_image_pe = NULL;
    m->dev = NULL;
}

int fs_sam_bind(fs_sam *m, const fs_nn_ops *ops) {
    const fs_nn_ops *want = ops && ops->device ? ops : NULL;
    if (m->trainers && (want || m->dev))
        return fs_error("the model cannot move to backend '%s' while a training state of it exists (free it first)",
                        ops ? ops->name : "cpu");
    /* the activations live where the model does */
    fs_sam_encoder_acts_free(m);
    unbind(m);
    if (!want) return FS_OK;
    const fs_sam_table *t = &m->p.table;
    size_t npe = fs_sam_grid(&m->cfg) * fs_sam_grid(&m->cfg) * m->cfg.out_chans;
    float *arena = want->alloc(t->total * sizeof *arena);
    float *pe = arena ? want->alloc(npe * sizeof *pe) : NULL;
    if (!arena || !pe) {
        want->free(arena);
        return fs_error_wrap("cannot put the model on backend '%s'", want->name);
    }
    want->upload(arena, m->p.arena, t->total * sizeof *arena);
    want->upload(pe, m->image_pe, npe * sizeof *pe);
    /* the field that binds a tensor in p binds its copy in dp */
    memset(&m->dp, 0, sizeof m->dp);
    for (size_t i = 0; i < t->n; i++) *fs_sam_params_twin(&m->dp, &m->p, &t->v[i]) = arena + t->v[i].offset;
    m->dp.table = m->p.table; /* shared, owned by p */
    m->dp.arena = arena;
    m->d_image_pe = pe;
    m->dev = want;
    return FS_OK;
}

int fs_sam_ensure_bound(fs_sam *m, const fs_nn_ops *ops) {
    if (fs_sam_bound_to(m, ops)) return FS_OK;
    return fs_sam_bind(m, ops);
}

float *fs_sam_dalloc(const fs_sam *m, size_t n, const char *what) {
    float *p = fs_sam_mem(m)->alloc(n * sizeof *p);
    if (!p) fs_error("out of memory for %s (%zu MiB on backend '%s')", what, n * sizeof *p >> 20, fs_sam_mem(m)->name);
    return p;
}

void fs_sam_free(fs_sam *m) {
    if (!m) return;
    fs_sam_encoder_acts_free(m);
    unbind(m);
    fs_sam_params_free(&m->p);
    free(m->image_pe);
    free(m);
}

void fs_sam_set_tap(fs_sam *m, fs_sam_tap_fn fn, void *ctx) {
    m->tap = fn;
    m->tap_ctx = ctx;
}

/* Taps see host memory: a bound model's activations are copied out first. */
void fs_sam_tap(const fs_sam *m, const char *name, const float *data, int ndim, size_t d0, size_t d1, size_t d2,
                size_t d3) {
    if (!m->tap) return;
    size_t shape[4] = {d0, d1, d2, d3}, n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (!m->dev) {
        m->tap(m->tap_ctx, name, data, ndim, shape);
        return;
    }
    float *h = malloc(n * sizeof *h + 1);
    if (!h) return; /* a tap is a debugging aid: skipping it beats failing the forward pass */
    m->dev->download(h, data, n * sizeof *h);
    m->tap(m->tap_ctx, name, h, ndim, shape);
    free(h);
}

void fs_sam_tap_chw(const fs_sam *m, const char *name, const float *x, size_t B, size_t H, size_t W, size_t C) {
    if (!m->tap) return;
    size_t n = B * H * W * C;
    float *t = malloc(2 * n * sizeof *t + 1);
    if (!t) return;
    const float *src = x;
    if (m->dev) {
        m->dev->download(t + n, x, n * sizeof *t);
        src = t + n;
    }
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < H * W; i++)
            for (size_t c = 0; c < C; c++) t[(b * C + c) * H * W + i] = src[(b * H * W + i) * C + c];
    size_t shape[4] = {B, C, H, W};
    m->tap(m->tap_ctx, name, t, 4, shape);
    free(t);
}
