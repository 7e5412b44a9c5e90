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

void fs_sam_free(fs_sam *m) {
    if (!m) return;
    fs_sam_params_free(&m->p);
    fs_sam_encoder_acts_free(&m->acts);
    free(m->image_pe);
    free(m);
}

void fs_sam_set_tap(fs_sam *m, fs_sam_tap_fn fn, void *ctx) {
    m->tap = fn;
    m->tap_ctx = ctx;
}

void fs_sam_tap(const fs_sam *m, const char *name, const float *data, int ndim, size_t d0, size_t d1, size_t d2,
                size_t d3) {
    if (!m->tap) return;
    size_t shape[4] = {d0, d1, d2, d3};
    m->tap(m->tap_ctx, name, data, ndim, shape);
}

void fs_sam_tap_chw(const fs_sam *m, const char *name, const float *x, size_t B, size_t H, size_t W, size_t C) {
    if (!m->tap) return;
    float *t = malloc(B * H * W * C * sizeof *t);
    if (!t) return; /* a tap is a debugging aid: skipping it beats failing the forward pass */
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < H * W; i++)
            for (size_t c = 0; c < C; c++) t[(b * C + c) * H * W + i] = x[(b * H * W + i) * C + c];
    size_t shape[4] = {B, C, H, W};
    m->tap(m->tap_ctx, name, t, 4, shape);
    free(t);
}
