/* SAM's image encoder (ImageEncoderViT): preprocessing, patch embedding,
 * transformer blocks with windowed or global attention, neck. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "sam/internal.h"

int fs_sam_preprocess(const fs_sam *m, const float *img, size_t B, size_t h, size_t w, float *out) {
    size_t S = m->cfg.img_size;
    if (!h || !w || h > S || w > S) return fs_error("image of %zux%zu does not fit the model's %zux%zu input", h, w, S, S);
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < 3; c++) {
            const float *src = img + (b * 3 + c) * h * w;
            float *dst = out + (b * 3 + c) * S * S;
            float mean = m->cfg.pixel_mean[c], std = m->cfg.pixel_std[c];
            for (size_t y = 0; y < S; y++)
                for (size_t x = 0; x < S; x++)
                    dst[y * S + x] = (y < h && x < w) ? (src[y * w + x] - mean) / std : 0.0f;
        }
    return FS_OK;
}

void fs_sam_encoder_acts_free(fs_sam *m) {
    fs_sam_mem(m)->free(m->acts.mem);
    memset(&m->acts, 0, sizeof m->acts);
    fs_sam_mem(m)->free(m->dec_ws);
    m->dec_ws = NULL;
    m->dec_ws_n = 0;
}

/* Sizes the activation arena for batch B (kept when already large enough). */
static int acts_ensure(fs_sam *m, size_t B) {
    fs_sam_encoder_acts *a = &m->acts;
    if (a->mem && a->batch >= B) return FS_OK;
    const fs_sam_config *c = &m->cfg;
    size_t g = fs_sam_grid(c), gp = fs_sam_padded_grid(c), C = c->embed_dim, D = c->out_chans, S = c->img_size;
    size_t tok = g * g, ptok = gp * gp, dev = m->dev != NULL;
    size_t sizes[] = {B * tok * C, tok * C,    ptok * C,          ptok * 3 * C,  ptok * C,
                      tok * c->mlp_ratio * C, tok * D, tok * D, dev * B * 3 * S * S, dev * B * tok * D};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += sizes[i];
    fs_sam_encoder_acts_free(m);
    float *mem = fs_sam_dalloc(m, total, "the image encoder's activations");
    if (!mem) return FS_ERR;
    a->mem = mem;
    a->batch = B;
    float **ptr[] = {&a->x, &a->xn, &a->win, &a->qkv, &a->att, &a->hid, &a->n1, &a->n2, &a->pre, &a->emb};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *ptr[i] = sizes[i] ? mem : NULL;
        mem += sizes[i];
    }
    return FS_OK;
}

/* One encoder Block on x[g, g, C] (one image of the batch's stream). */
static void block_forward(fs_sam *m, const fs_nn_ops *ops, size_t i, float *x) {
    const fs_sam_config *c = &m->cfg;
    const fs_sam_block_params *bp = &fs_sam_kp(m)->blocks[i];
    fs_sam_encoder_acts *a = &m->acts;
    size_t g = fs_sam_grid(c), C = c->embed_dim, H = c->num_heads, hd = fs_sam_head_dim(c);
    size_t tok = g * g, hidden = c->mlp_ratio * C;
    float scale = 1.0f / sqrtf((float)hd);

    ops->layernorm_forward(a->xn, x, bp->norm1_w, bp->norm1_b, tok, C, FS_SAM_EPS_ENC);
    if (c->global_attn[i]) {
        ops->linear_forward(a->qkv, a->xn, bp->qkv.w, bp->qkv.b, tok, C, 3 * C);
        ops->attention_relpos_forward(a->att, a->qkv, bp->rel_pos_h, bp->rel_pos_w, 1, g, g, H, hd, scale);
        ops->linear_forward(a->xn, a->att, bp->proj.w, bp->proj.b, tok, C, C);
        ops->add(x, x, a->xn, tok * C);
    } else {
        /* padding comes after norm1 and is not masked: the zero tokens take
         * part in every padded window's attention, as in the official code */
        size_t ws = c->window_size, nw = (g + ws - 1) / ws, nwin = nw * nw, wtok = nwin * ws * ws;
        ops->window_partition(a->win, a->xn, 1, g, ws, C);
        ops->linear_forward(a->qkv, a->win, bp->qkv.w, bp->qkv.b, wtok, C, 3 * C);
        ops->attention_relpos_forward(a->att, a->qkv, bp->rel_pos_h, bp->rel_pos_w, nwin, ws, ws, H, hd, scale);
        ops->linear_forward(a->win, a->att, bp->proj.w, bp->proj.b, wtok, C, C);
        ops->window_unpartition(x, a->win, 1, g, ws, C, 1);
    }
    ops->layernorm_forward(a->xn, x, bp->norm2_w, bp->norm2_b, tok, C, FS_SAM_EPS_ENC);
    ops->linear_forward(a->hid, a->xn, bp->lin1.w, bp->lin1.b, tok, C, hidden);
    ops->gelu_forward(a->hid, a->hid, tok * hidden);
    ops->linear_forward(a->xn, a->hid, bp->lin2.w, bp->lin2.b, tok, hidden, C);
    ops->add(x, x, a->xn, tok * C);
}

int fs_sam_encode(fs_sam *m, const fs_nn_ops *ops, const float *pre, size_t B, float *embed) {
    if (!B) return FS_OK;
    if (fs_sam_ensure_bound(m, ops) || acts_ensure(m, B)) return FS_ERR;
    const fs_sam_config *c = &m->cfg;
    const fs_sam_params *p = fs_sam_kp(m);
    fs_sam_encoder_acts *a = &m->acts;
    size_t S = c->img_size, g = fs_sam_grid(c), C = c->embed_dim, D = c->out_chans, tok = g * g;
    const float *in = pre;
    float *out = embed;
    if (m->dev) {
        ops->upload(a->pre, pre, B * 3 * S * S * sizeof *pre);
        in = a->pre;
        out = a->emb;
    }

    fs_sam_tap(m, "preprocessed", in, 4, B, 3, S, S);
    ops->patch_embed_forward(a->x, in, p->patch.w, p->patch.b, B, 3, S, S, c->patch_size, C);
    fs_sam_tap(m, "patch_embed", a->x, 4, B, g, g, C);
    ops->add_rows(a->x, p->pos_embed, B, tok * C);
    for (size_t i = 0; i < c->depth; i++) {
        for (size_t b = 0; b < B; b++) block_forward(m, ops, i, a->x + b * tok * C);
        if (m->tap) {
            char name[32];
            snprintf(name, sizeof name, "blocks.%zu", i);
            fs_sam_tap(m, name, a->x, 4, B, g, g, C);
        }
    }
    /* neck: 1x1 conv (a linear over channels), LayerNorm2d, 3x3 conv, LayerNorm2d */
    for (size_t b = 0; b < B; b++) {
        ops->linear_forward(a->n1, a->x + b * tok * C, p->neck0_w, NULL, tok, C, D);
        ops->layernorm_forward(a->n2, a->n1, p->neck1_w, p->neck1_b, tok, D, FS_SAM_EPS_ENC);
        ops->conv3x3_forward(a->n1, a->n2, p->neck2_w, 1, g, g, D, D);
        ops->layernorm_forward(out + b * tok * D, a->n1, p->neck3_w, p->neck3_b, tok, D, FS_SAM_EPS_ENC);
    }
    fs_sam_tap_chw(m, "image_embeddings", out, B, g, g, D);
    if (m->dev) ops->download(embed, out, B * tok * D * sizeof *embed);
    return FS_OK;
}

int fs_sam_encode_raw(fs_sam *m, const fs_nn_ops *ops, const float *img, size_t B, size_t h, size_t w,
                      float *embed) {
    size_t S = m->cfg.img_size;
    float *pre = malloc(B * 3 * S * S * sizeof *pre);
    if (!pre) return fs_error("out of memory preprocessing %zu images", B);
    int rc = fs_sam_preprocess(m, img, B, h, w, pre);
    if (rc == FS_OK) rc = fs_sam_encode(m, ops, pre, B, embed);
    free(pre);
    return rc;
}
