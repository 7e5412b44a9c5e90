/* The image encoder for training: the forward pass with LoRA adapters,
 * keeping what the backward pass needs, and the backward pass from the
 * gradient of the image embeddings down to block 0, producing the LoRA
 * gradients and, when the encoder is trained in full, the gradient of every
 * base weight (patch embedding, pos_embed, norms, rel-pos tables, qkv, proj,
 * MLP, neck): the kernels form a weight's gradient where t->G binds one,
 * and skip it where the field is NULL (frozen).
 * The batch runs through each layer at once (rows B * tokens), so the same
 * kernel calls as fs_sam_encode give the same numbers. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sam/train_internal.h"

void fs_train_enc_layout(fs_train *t, fs_bump *b, size_t cap) {
    const fs_sam_config *c = &t->m->cfg;
    fs_train_enc *E = &t->E;
    size_t g = fs_sam_grid(c), gp = fs_sam_padded_grid(c), C = c->embed_dim, D = c->out_chans, hid = c->mlp_ratio * C;
    size_t M = cap * g * g, Mp = cap * gp * gp, r = t->lora.cfg.rank ? t->lora.cfg.rank : 1;
    E->cap = cap;
    for (size_t i = 0; i <= c->depth; i++) E->xs[i] = fs_bump_take(b, M * C);
    size_t nsets = t->cfg.recompute ? 1 : c->depth;
    for (size_t i = 0; i < c->depth; i++) {
        fs_train_block_saved *s = &E->saved[i];
        if (i < nsets) {
            s->qkv = fs_bump_take(b, Mp * 3 * C);
            s->att = fs_bump_take(b, Mp * C);
            s->x_mid = fs_bump_take(b, M * C);
            s->h_pre = fs_bump_take(b, M * hid);
        } else {
            *s = E->saved[0];
        }
    }
    E->n1 = fs_bump_take(b, M * D);
    E->n2 = fs_bump_take(b, M * D);
    E->n3 = fs_bump_take(b, M * D);
    E->embed = fs_bump_take(b, M * D);
    E->dembed = fs_bump_take(b, M * D);
    E->xn = fs_bump_take(b, M * C);
    E->win = fs_bump_take(b, Mp * C);
    E->ytmp = fs_bump_take(b, Mp * C);
    E->h = fs_bump_take(b, M * hid);
    E->dh = fs_bump_take(b, M * hid);
    E->dxn = fs_bump_take(b, M * (C > D ? C : D));
    E->dwin = fs_bump_take(b, Mp * C);
    E->datt = fs_bump_take(b, Mp * C);
    E->dqkv = fs_bump_take(b, Mp * 3 * C);
    E->dx = fs_bump_take(b, M * C);
    E->lu = fs_bump_take(b, Mp * r);
    E->ldu = fs_bump_take(b, Mp * r);
    E->lt = fs_bump_take(b, Mp * (hid > C ? hid : C));
    E->pre_buf = t->m->dev ? fs_bump_take(b, cap * 3 * c->img_size * c->img_size) : NULL;
}

/* out[M, ldo] columns off .. off+N-1 += scale * (in[M, K] A[r, K]^T) B[N, r]^T;
 * u[M, r] and tmp[M, N] scratch. */
static void lora_fwd(const fs_nn_ops *ops, const float *A, const float *B, size_t r, float scale, const float *in,
                     size_t M, size_t K, size_t N, float *out, size_t ldo, size_t off, float *u, float *tmp) {
    ops->linear_forward(u, in, A, NULL, M, K, r);
    ops->linear_forward(tmp, u, B, NULL, M, r, N);
    ops->add_cols(out, ldo, off, tmp, scale, M, N);
}

/* The adjoint of lora_fwd for the columns off .. off+N-1 of dout[M, ldd]:
 * dA[r, K] and dB[N, r] accumulate, din[M, K] accumulates (may be NULL). */
static void lora_bwd(const fs_nn_ops *ops, const float *A, const float *B, float *dA, float *dB, size_t r, float scale,
                     const float *in, size_t M, size_t K, size_t N, const float *dout, size_t ldd, size_t off,
                     float *din, float *u, float *du, float *tmp) {
    ops->take_cols(tmp, dout, ldd, off, scale, M, N);
    ops->linear_forward(u, in, A, NULL, M, K, r);
    ops->zero(du, M * r * sizeof *du);
    ops->linear_backward(du, dB, NULL, tmp, u, B, M, r, N);
    ops->linear_backward(din, dA, NULL, du, in, A, M, K, r);
}

typedef struct {
    size_t g, C, H, hd, tok, M, hid, r, ws, Mq, Bn, Hg;
    int global;
    float scale, lscale;
} blk_dims;

static blk_dims dims(const fs_train *t, size_t i, size_t B) {
    const fs_sam_config *c = &t->m->cfg;
    blk_dims d;
    d.g = fs_sam_grid(c);
    d.C = c->embed_dim;
    d.H = c->num_heads;
    d.hd = fs_sam_head_dim(c);
    d.tok = d.g * d.g;
    d.M = B * d.tok;
    d.hid = c->mlp_ratio * d.C;
    d.r = t->lora.cfg.rank;
    d.lscale = t->lora.cfg.scale;
    d.scale = 1.0f / sqrtf((float)d.hd);
    d.global = c->global_attn[i];
    d.ws = c->window_size;
    if (d.global) {
        d.Mq = d.M;
        d.Bn = B;
        d.Hg = d.g;
    } else {
        size_t nw = (d.g + d.ws - 1) / d.ws;
        d.Bn = B * nw * nw;
        d.Mq = d.Bn * d.ws * d.ws;
        d.Hg = d.ws;
    }
    return d;
}

/* One block on x_in[B, g, g, C] -> x_out, filling s. */
static void block_fwd(fs_train *t, const fs_nn_ops *ops, size_t i, size_t B, const float *x_in, float *x_out,
                      const fs_train_block_saved *s) {
    const fs_sam_block_params *bp = &fs_sam_kp(t->m)->blocks[i];
    const fs_lora_block *lb = &t->dlora.blocks[i];
    fs_train_enc *E = &t->E;
    blk_dims d = dims(t, i, B);
    size_t C = d.C;

    ops->layernorm_forward(E->xn, x_in, bp->norm1_w, bp->norm1_b, d.M, C, FS_SAM_EPS_ENC);
    const float *xq = E->xn;
    if (!d.global) {
        /* padding after norm1, unmasked: as the official code */
        ops->window_partition(E->win, E->xn, B, d.g, d.ws, C);
        xq = E->win;
    }
    ops->linear_forward(s->qkv, xq, bp->qkv.w, bp->qkv.b, d.Mq, C, 3 * C);
    for (int p = FS_LORA_Q; p <= FS_LORA_V; p++)
        if (lb->A[p]) lora_fwd(ops, lb->A[p], lb->B[p], d.r, d.lscale, xq, d.Mq, C, C, s->qkv, 3 * C, (size_t)p * C, E->lu, E->lt);
    ops->attention_relpos_forward(s->att, s->qkv, bp->rel_pos_h, bp->rel_pos_w, d.Bn, d.Hg, d.Hg, d.H, d.hd, d.scale);
    ops->linear_forward(E->ytmp, s->att, bp->proj.w, bp->proj.b, d.Mq, C, C);
    if (lb->A[FS_LORA_PROJ])
        lora_fwd(ops, lb->A[FS_LORA_PROJ], lb->B[FS_LORA_PROJ], d.r, d.lscale, s->att, d.Mq, C, C, E->ytmp, C, 0, E->lu,
                 E->lt);
    ops->copy(s->x_mid, x_in, d.M * C * sizeof *x_in);
    if (d.global) ops->add(s->x_mid, s->x_mid, E->ytmp, d.M * C);
    else ops->window_unpartition(s->x_mid, E->ytmp, B, d.g, d.ws, C, 1);

    ops->layernorm_forward(E->xn, s->x_mid, bp->norm2_w, bp->norm2_b, d.M, C, FS_SAM_EPS_ENC);
    ops->linear_forward(s->h_pre, E->xn, bp->lin1.w, bp->lin1.b, d.M, C, d.hid);
    if (lb->A[FS_LORA_LIN1])
        lora_fwd(ops, lb->A[FS_LORA_LIN1], lb->B[FS_LORA_LIN1], d.r, d.lscale, E->xn, d.M, C, d.hid, s->h_pre, d.hid, 0,
                 E->lu, E->lt);
    ops->gelu_forward(E->h, s->h_pre, d.M * d.hid);
    ops->linear_forward(E->ytmp, E->h, bp->lin2.w, bp->lin2.b, d.M, d.hid, C);
    if (lb->A[FS_LORA_LIN2])
        lora_fwd(ops, lb->A[FS_LORA_LIN2], lb->B[FS_LORA_LIN2], d.r, d.lscale, E->h, d.M, d.hid, C, E->ytmp, C, 0, E->lu,
                 E->lt);
    ops->add(x_out, s->x_mid, E->ytmp, d.M * C);
}

void fs_train_enc_forward(fs_train *t, const fs_nn_ops *ops, const float *pre, size_t B) {
    const fs_sam_config *c = &t->m->cfg;
    const fs_sam_params *p = fs_sam_kp(t->m);
    fs_train_enc *E = &t->E;
    size_t S = c->img_size, g = fs_sam_grid(c), C = c->embed_dim, D = c->out_chans, tok = g * g, M = B * tok;

    E->pre = pre;
    ops->patch_embed_forward(E->xs[0], pre, p->patch.w, p->patch.b, B, 3, S, S, c->patch_size, C);
    ops->add_rows(E->xs[0], p->pos_embed, B, tok * C);
    for (size_t i = 0; i < c->depth; i++) block_fwd(t, ops, i, B, E->xs[i], E->xs[i + 1], &E->saved[i]);
    /* neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d */
    ops->linear_forward(E->n1, E->xs[c->depth], p->neck0_w, NULL, M, C, D);
    ops->layernorm_forward(E->n2, E->n1, p->neck1_w, p->neck1_b, M, D, FS_SAM_EPS_ENC);
    ops->conv3x3_forward(E->n3, E->n2, p->neck2_w, B, g, g, D, D);
    ops->layernorm_forward(E->embed, E->n3, p->neck3_w, p->neck3_b, M, D, FS_SAM_EPS_ENC);
}

/* dx[B*g*g, C]: the gradient of block i's output in, of its input out. */
static void block_bwd(fs_train *t, const fs_nn_ops *ops, size_t i, size_t B) {
    const fs_sam_block_params *bp = &fs_sam_kp(t->m)->blocks[i], *gp = &t->G.blocks[i];
    const fs_lora_block *lb = &t->dlora.blocks[i], *lg = &t->lgrad.blocks[i];
    fs_train_enc *E = &t->E;
    const fs_train_block_saved *s = &E->saved[i];
    blk_dims d = dims(t, i, B);
    size_t C = d.C;
    const float *x_in = E->xs[i];
    float *dx = E->dx;

    if (t->cfg.recompute) block_fwd(t, ops, i, B, x_in, E->xs[i + 1], s);

    /* MLP: x_out = x_mid + lin2(gelu(lin1(LN2(x_mid)))) */
    ops->layernorm_forward(E->xn, s->x_mid, bp->norm2_w, bp->norm2_b, d.M, C, FS_SAM_EPS_ENC);
    ops->gelu_forward(E->h, s->h_pre, d.M * d.hid);
    ops->zero(E->dh, d.M * d.hid * sizeof *E->dh);
    ops->linear_backward(E->dh, gp->lin2.w, gp->lin2.b, dx, E->h, bp->lin2.w, d.M, d.hid, C);
    if (lb->A[FS_LORA_LIN2])
        lora_bwd(ops, lb->A[FS_LORA_LIN2], lb->B[FS_LORA_LIN2], lg->A[FS_LORA_LIN2], lg->B[FS_LORA_LIN2], d.r, d.lscale,
                 E->h, d.M, d.hid, C, dx, C, 0, E->dh, E->lu, E->ldu, E->lt);
    float *dhp = E->h; /* the GELU output is no longer needed */
    ops->zero(dhp, d.M * d.hid * sizeof *dhp);
    ops->gelu_backward(dhp, s->h_pre, E->dh, d.M * d.hid);
    ops->zero(E->dxn, d.M * C * sizeof *E->dxn);
    ops->linear_backward(E->dxn, gp->lin1.w, gp->lin1.b, dhp, E->xn, bp->lin1.w, d.M, C, d.hid);
    if (lb->A[FS_LORA_LIN1])
        lora_bwd(ops, lb->A[FS_LORA_LIN1], lb->B[FS_LORA_LIN1], lg->A[FS_LORA_LIN1], lg->B[FS_LORA_LIN1], d.r, d.lscale,
                 E->xn, d.M, C, d.hid, dhp, d.hid, 0, E->dxn, E->lu, E->ldu, E->lt);
    ops->layernorm_backward(dx, gp->norm2_w, gp->norm2_b, E->dxn, s->x_mid, bp->norm2_w, d.M, C, FS_SAM_EPS_ENC);
    /* dx is now d x_mid. Attention: x_mid = x_in + proj(attn(qkv(LN1(x_in)))) */
    const float *dy = dx;
    if (!d.global) {
        ops->window_partition(E->dwin, dx, B, d.g, d.ws, C); /* the cropped padding gets no gradient */
        dy = E->dwin;
    }
    ops->zero(E->datt, d.Mq * C * sizeof *E->datt);
    ops->linear_backward(E->datt, gp->proj.w, gp->proj.b, dy, s->att, bp->proj.w, d.Mq, C, C);
    if (lb->A[FS_LORA_PROJ])
        lora_bwd(ops, lb->A[FS_LORA_PROJ], lb->B[FS_LORA_PROJ], lg->A[FS_LORA_PROJ], lg->B[FS_LORA_PROJ], d.r, d.lscale,
                 s->att, d.Mq, C, C, dy, C, 0, E->datt, E->lu, E->ldu, E->lt);
    ops->zero(E->dqkv, d.Mq * 3 * C * sizeof *E->dqkv);
    ops->attention_relpos_backward(E->dqkv, gp->rel_pos_h, gp->rel_pos_w, E->datt, s->qkv, bp->rel_pos_h, bp->rel_pos_w, d.Bn, d.Hg, d.Hg,
                                   d.H, d.hd, d.scale);
    ops->layernorm_forward(E->xn, x_in, bp->norm1_w, bp->norm1_b, d.M, C, FS_SAM_EPS_ENC);
    const float *xq = E->xn;
    float *dxq = E->dxn;
    if (!d.global) {
        ops->window_partition(E->win, E->xn, B, d.g, d.ws, C);
        xq = E->win;
        dxq = E->dwin; /* dy is consumed */
    }
    ops->zero(dxq, d.Mq * C * sizeof *dxq);
    /* padded tokens are zeros after norm1: no weight gradient, but their
     * qkv is the bias, which gets theirs */
    ops->linear_backward(dxq, gp->qkv.w, gp->qkv.b, E->dqkv, xq, bp->qkv.w, d.Mq, C, 3 * C);
    for (int p = FS_LORA_Q; p <= FS_LORA_V; p++)
        if (lb->A[p])
            lora_bwd(ops, lb->A[p], lb->B[p], lg->A[p], lg->B[p], d.r, d.lscale, xq, d.Mq, C, C, E->dqkv, 3 * C,
                     (size_t)p * C, dxq, E->lu, E->ldu, E->lt);
    if (!d.global) ops->window_unpartition(E->dxn, dxq, B, d.g, d.ws, C, 0);
    ops->layernorm_backward(dx, gp->norm1_w, gp->norm1_b, E->dxn, x_in, bp->norm1_w, d.M, C, FS_SAM_EPS_ENC);
}

void fs_train_enc_backward(fs_train *t, const fs_nn_ops *ops, size_t B) {
    fs_sam *m = t->m;
    const fs_sam_config *c = &m->cfg;
    const fs_sam_params *p = fs_sam_kp(m), *G = &t->G;
    fs_train_enc *E = &t->E;
    size_t g = fs_sam_grid(c), C = c->embed_dim, D = c->out_chans, M = B * g * g;

    fs_sam_tap_chw(m, "grad.act.image_embeddings", E->dembed, B, g, g, D);
    /* neck backward; n2 is recomputed from n1 */
    float *dn3 = E->dxn, *dn = E->n2;
    ops->zero(dn3, M * D * sizeof *dn3);
    ops->layernorm_backward(dn3, G->neck3_w, G->neck3_b, E->dembed, E->n3, p->neck3_w, M, D, FS_SAM_EPS_ENC);
    ops->layernorm_forward(dn, E->n1, p->neck1_w, p->neck1_b, M, D, FS_SAM_EPS_ENC);
    float *dn2 = E->n3; /* n3 is consumed */
    ops->zero(dn2, M * D * sizeof *dn2);
    ops->conv3x3_backward(dn2, G->neck2_w, dn3, dn, p->neck2_w, B, g, g, D, D);
    ops->zero(dn3, M * D * sizeof *dn3);
    ops->layernorm_backward(dn3, G->neck1_w, G->neck1_b, dn2, E->n1, p->neck1_w, M, D, FS_SAM_EPS_ENC);
    ops->zero(E->dx, M * C * sizeof *E->dx);
    ops->linear_backward(E->dx, G->neck0_w, NULL, dn3, E->xs[c->depth], p->neck0_w, M, C, D);
    for (size_t i = c->depth; i-- > 0;) {
        if (m->tap) {
            char name[48];
            snprintf(name, sizeof name, "grad.act.blocks.%zu", i);
            fs_sam_tap(m, name, E->dx, 4, B, g, g, C);
        }
        block_bwd(t, ops, i, B);
    }
    /* xs[0] = patch_embed(pre) + pos_embed, pos_embed shared by the batch */
    size_t tok = g * g;
    if (G->pos_embed) ops->sum_rows(G->pos_embed, E->dx, B, tok * C);
    if (G->patch.w || G->patch.b)
        ops->patch_embed_backward(NULL, G->patch.w, G->patch.b, E->dx, E->pre, p->patch.w, B, 3, c->img_size,
                                  c->img_size, c->patch_size, C);
}
