/* The mask decoder for training: the forward pass of one prompt set keeping
 * every activation the backward pass needs (a tape), and the backward pass
 * into the decoder's gradients and the image embedding's. The tape holds one
 * prompt set: the trainer runs the decoder forward once for the loss, then
 * again per prompt set right before its backward (the decoder is cheap next
 * to the encoder), so memory does not grow with the number of prompts.
 * The IoU head is left out: no loss uses the predicted IoU, so it gets no
 * gradient (torch's None). */
#include <math.h>
#include <string.h>

#include "sam/train_internal.h"

typedef struct {
    size_t D, HW, nm, I, M, D4, D8, heads, big;
} dec_dims;

static dec_dims ddims(const fs_train *t, size_t T) {
    const fs_sam_config *c = &t->m->cfg;
    dec_dims d;
    d.D = c->out_chans;
    size_t g = fs_sam_grid(c);
    d.HW = g * g;
    d.nm = fs_sam_num_masks(c);
    d.I = d.D / 2;
    d.M = c->dec_mlp_dim;
    d.D4 = d.D / 4;
    d.D8 = d.D / 8;
    d.heads = c->dec_heads;
    d.big = (T > d.HW ? T : d.HW) * d.D;
    return d;
}

/* An attention tape's projections for up to Nq queries and Nk keys of width I. */
static void attn_layout(fs_bump *b, fs_train_attn_tape *a, size_t Nq, size_t Nk, size_t I) {
    a->Q = fs_bump_take(b, Nq * I);
    a->K = fs_bump_take(b, Nk * I);
    a->V = fs_bump_take(b, Nk * I);
    a->O = fs_bump_take(b, Nq * I);
}

void fs_train_dec_layout(fs_train *t, fs_bump *b, size_t T) {
    const fs_sam_config *c = &t->m->cfg;
    fs_train_dec *X = &t->Dt;
    dec_dims d = ddims(t, T);
    size_t D = d.D, HW = d.HW, I = d.I;
    X->cap_T = T;
    X->qpe = fs_bump_take(b, T * D);
    for (size_t l = 0; l <= c->dec_depth; l++) {
        X->q[l] = fs_bump_take(b, T * D);
        X->k[l] = fs_bump_take(b, HW * D);
    }
    for (size_t l = 0; l < c->dec_depth; l++) {
        fs_train_layer_tape *L = &X->L[l];
        attn_layout(b, &L->sa, T, T, D);
        L->sa_in = fs_bump_take(b, T * D);
        L->r1 = fs_bump_take(b, T * D);
        L->q1 = fs_bump_take(b, T * D);
        L->t2i_q = fs_bump_take(b, T * D);
        L->kpe = fs_bump_take(b, HW * D);
        attn_layout(b, &L->t2i, T, HW, I);
        L->r2 = fs_bump_take(b, T * D);
        L->q2 = fs_bump_take(b, T * D);
        L->mh = fs_bump_take(b, T * d.M);
        L->mhr = fs_bump_take(b, T * d.M);
        L->r3 = fs_bump_take(b, T * D);
        L->i2t_k = fs_bump_take(b, T * D);
        attn_layout(b, &L->i2t, HW, T, I);
        L->r4 = fs_bump_take(b, HW * D);
    }
    X->f_q = fs_bump_take(b, T * D);
    X->f_kpe = fs_bump_take(b, HW * D);
    attn_layout(b, &X->fin, T, HW, I);
    X->r5 = fs_bump_take(b, T * D);
    X->hs = fs_bump_take(b, T * D);
    X->u0 = fs_bump_take(b, 4 * HW * d.D4);
    X->u1 = fs_bump_take(b, 4 * HW * d.D4);
    X->u1g = fs_bump_take(b, 4 * HW * d.D4);
    X->u2 = fs_bump_take(b, 16 * HW * d.D8);
    X->up = fs_bump_take(b, 16 * HW * d.D8);
    X->hy_a1 = fs_bump_take(b, d.nm * D);
    X->hy_r1 = fs_bump_take(b, d.nm * D);
    X->hy_a2 = fs_bump_take(b, d.nm * D);
    X->hy_r2 = fs_bump_take(b, d.nm * D);
    X->hyper = fs_bump_take(b, d.nm * d.D8);
    X->dO = fs_bump_take(b, d.big);
    X->dQ = fs_bump_take(b, d.big);
    X->dK = fs_bump_take(b, d.big);
    X->dV = fs_bump_take(b, d.big);
    X->dq = fs_bump_take(b, T * D);
    X->dqpe = fs_bump_take(b, T * D);
    X->dt = fs_bump_take(b, T * D);
    X->dk = fs_bump_take(b, HW * D);
    X->dkpe = fs_bump_take(b, HW * D);
    X->dr = fs_bump_take(b, d.big);
    X->dmh = fs_bump_take(b, T * d.M);
    X->dmhr = fs_bump_take(b, T * d.M);
    X->du0 = fs_bump_take(b, 4 * HW * d.D4);
    X->du1 = fs_bump_take(b, 4 * HW * d.D4);
    X->du1g = fs_bump_take(b, 4 * HW * d.D4);
    X->du2 = fs_bump_take(b, 16 * HW * d.D8);
    X->dup = fs_bump_take(b, 16 * HW * d.D8);
    X->dhs = fs_bump_take(b, T * D);
    X->dhyper = fs_bump_take(b, d.nm * d.D8);
    X->dh1 = fs_bump_take(b, D);
    X->dh2 = fs_bump_take(b, D);
    size_t r = t->lora.n_dec_attn ? t->lora.cfg.rank : 0;
    X->lu = fs_bump_take(b, d.big / D * r);
    X->ldu = fs_bump_take(b, d.big / D * r);
    X->lt = fs_bump_take(b, r ? d.big : 0);
}

/* Every function below has its backend in ops. */
#define ZERO(x, n) ops->zero((x), (n) * sizeof(float))

/* Adapter a of the decoder (fs_lora.dec order), NULL without decoder
 * adapters; *g gets its gradients. */
static const fs_lora_attn *dec_adapter(fs_train *t, size_t a, const fs_lora_attn **g) {
    if (a >= t->lora.n_dec_attn) return *g = NULL;
    *g = &t->lgrad.dec[a];
    return &t->dlora.dec[a];
}

/* out[M, N] += scale * (in[M, K] A[r, K]^T) B[N, r]^T (X->lu, X->lt scratch). */
static void lora_fwd(const fs_nn_ops *ops, fs_train_dec *X, const float *A, const float *B, size_t r, float scale,
                     const float *in, size_t M, size_t K, size_t N, float *out) {
    ops->linear_forward(X->lu, in, A, NULL, M, K, r);
    ops->linear_forward(X->lt, X->lu, B, NULL, M, r, N);
    ops->add_cols(out, N, 0, X->lt, scale, M, N);
}

/* The adjoint of lora_fwd: dA[r, K], dB[N, r] and din[M, K] accumulate
 * from dout[M, N] (which must not be X->lt). */
static void lora_bwd(const fs_nn_ops *ops, fs_train_dec *X, const float *A, const float *B, float *dA, float *dB,
                     size_t r, float scale, const float *in, size_t M, size_t K, size_t N, const float *dout,
                     float *din) {
    ops->take_cols(X->lt, dout, N, 0, scale, M, N);
    ops->linear_forward(X->lu, in, A, NULL, M, K, r);
    ZERO(X->ldu, M * r);
    ops->linear_backward(X->ldu, dB, NULL, X->lt, X->lu, B, M, r, N);
    ops->linear_backward(din, dA, NULL, X->ldu, in, A, M, K, r);
}

/* Puts an attention's inputs on its tape: q_in[Nq, D], k_in[Nk, D],
 * v_in[Nk, D], projected to the inner width I. */
static void attn_inputs(fs_train_attn_tape *a, float *qin, size_t Nq, float *kin, float *vin, size_t Nk, size_t I) {
    a->qin = qin;
    a->kin = kin;
    a->vin = vin;
    a->Nq = Nq;
    a->Nk = Nk;
    a->I = I;
}

/* The decoder's Attention on the tape's inputs: out[Nq, D]; la: its
 * adapters (NULL: none) at rank r, scale s. */
static void attn_fwd(const fs_nn_ops *ops, const dec_dims *d, fs_train_dec *X, const fs_sam_attn_params *P,
                     const fs_lora_attn *la, size_t r, float s, fs_train_attn_tape *a, float *out) {
    size_t hd = a->I / d->heads;
    ops->linear_forward(a->Q, a->qin, P->q.w, P->q.b, a->Nq, d->D, a->I);
    ops->linear_forward(a->K, a->kin, P->k.w, P->k.b, a->Nk, d->D, a->I);
    ops->linear_forward(a->V, a->vin, P->v.w, P->v.b, a->Nk, d->D, a->I);
    if (la) {
        lora_fwd(ops, X, la->A[FS_LORA_DEC_Q], la->B[FS_LORA_DEC_Q], r, s, a->qin, a->Nq, d->D, a->I, a->Q);
        lora_fwd(ops, X, la->A[FS_LORA_DEC_K], la->B[FS_LORA_DEC_K], r, s, a->kin, a->Nk, d->D, a->I, a->K);
        lora_fwd(ops, X, la->A[FS_LORA_DEC_V], la->B[FS_LORA_DEC_V], r, s, a->vin, a->Nk, d->D, a->I, a->V);
    }
    ops->attention_forward(a->O, a->Q, a->K, a->V, 1, a->Nq, a->Nk, d->heads, hd, 1.0f / sqrtf((float)hd));
    ops->linear_forward(out, a->O, P->out.w, P->out.b, a->Nq, a->I, d->D);
    if (la) lora_fwd(ops, X, la->A[FS_LORA_DEC_OUT], la->B[FS_LORA_DEC_OUT], r, s, a->O, a->Nq, a->I, d->D, out);
}

/* dout[Nq, D] -> dqin, dkin, dvin accumulate (they may alias); weight
 * gradients into G (NULL fields: frozen), adapter gradients into lg. */
static void attn_bwd(const fs_nn_ops *ops, const dec_dims *d, fs_train_dec *X, const fs_sam_attn_params *P,
                     const fs_sam_attn_params *G, const fs_lora_attn *la, const fs_lora_attn *lg, size_t r, float s,
                     const fs_train_attn_tape *a, const float *dout, float *dqin, float *dkin, float *dvin) {
    size_t hd = a->I / d->heads;
    ZERO(X->dO, a->Nq * a->I);
    ops->linear_backward(X->dO, G->out.w, G->out.b, dout, a->O, P->out.w, a->Nq, a->I, d->D);
    if (la)
        lora_bwd(ops, X, la->A[FS_LORA_DEC_OUT], la->B[FS_LORA_DEC_OUT], lg->A[FS_LORA_DEC_OUT],
                 lg->B[FS_LORA_DEC_OUT], r, s, a->O, a->Nq, a->I, d->D, dout, X->dO);
    ZERO(X->dQ, a->Nq * a->I);
    ZERO(X->dK, a->Nk * a->I);
    ZERO(X->dV, a->Nk * a->I);
    ops->attention_backward(X->dQ, X->dK, X->dV, X->dO, a->Q, a->K, a->V, 1, a->Nq, a->Nk, d->heads, hd,
                            1.0f / sqrtf((float)hd));
    ops->linear_backward(dqin, G->q.w, G->q.b, X->dQ, a->qin, P->q.w, a->Nq, d->D, a->I);
    ops->linear_backward(dkin, G->k.w, G->k.b, X->dK, a->kin, P->k.w, a->Nk, d->D, a->I);
    ops->linear_backward(dvin, G->v.w, G->v.b, X->dV, a->vin, P->v.w, a->Nk, d->D, a->I);
    if (la) {
        lora_bwd(ops, X, la->A[FS_LORA_DEC_Q], la->B[FS_LORA_DEC_Q], lg->A[FS_LORA_DEC_Q], lg->B[FS_LORA_DEC_Q], r, s,
                 a->qin, a->Nq, d->D, a->I, X->dQ, dqin);
        lora_bwd(ops, X, la->A[FS_LORA_DEC_K], la->B[FS_LORA_DEC_K], lg->A[FS_LORA_DEC_K], lg->B[FS_LORA_DEC_K], r, s,
                 a->kin, a->Nk, d->D, a->I, X->dK, dkin);
        lora_bwd(ops, X, la->A[FS_LORA_DEC_V], la->B[FS_LORA_DEC_V], lg->A[FS_LORA_DEC_V], lg->B[FS_LORA_DEC_V], r, s,
                 a->vin, a->Nk, d->D, a->I, X->dV, dvin);
    }
}

void fs_train_dec_forward(fs_train *t, const fs_nn_ops *ops, const float *embed, const float *sparse, size_t Ns,
                          size_t first, size_t n, float *low) {
    const fs_sam_config *c = &t->m->cfg;
    const fs_sam_params *p = fs_sam_kp(t->m);
    fs_train_dec *X = &t->Dt;
    size_t T = 1 + fs_sam_num_masks(c) + Ns;
    dec_dims d = ddims(t, T);
    size_t D = d.D, HW = d.HW;
    const float *pos = fs_sam_kpe(t->m);
    size_t lr = t->lora.cfg.rank;
    float ls = t->lora.cfg.scale;
    const fs_lora_attn *la, *lg;
    X->T = T;
    X->first = first;
    X->n = n;

    ops->copy(X->qpe, p->iou_token, D * sizeof *X->qpe);
    ops->copy(X->qpe + D, p->mask_tokens, d.nm * D * sizeof *X->qpe);
    if (Ns) ops->copy(X->qpe + (1 + d.nm) * D, sparse, Ns * D * sizeof *X->qpe);
    ops->copy(X->q[0], X->qpe, T * D * sizeof *X->qpe);
    ops->copy(X->k[0], embed, HW * D * sizeof *X->k[0]);
    ops->add_rows(X->k[0], p->no_mask, HW, D);

    for (size_t l = 0; l < c->dec_depth; l++) {
        fs_train_layer_tape *L = &X->L[l];
        const fs_sam_twoway_params *P = &p->layers[l];
        float *q = X->q[l], *k = X->k[l];
        la = dec_adapter(t, 3 * l, &lg);
        if (l == 0) { /* skip_first_layer_pe: no residual */
            attn_inputs(&L->sa, q, T, q, q, T, D);
            attn_fwd(ops, &d, X, &P->self_attn, la, lr, ls, &L->sa, L->r1);
        } else {
            ops->add(L->sa_in, q, X->qpe, T * D);
            attn_inputs(&L->sa, L->sa_in, T, L->sa_in, q, T, D);
            attn_fwd(ops, &d, X, &P->self_attn, la, lr, ls, &L->sa, L->r1);
            ops->add(L->r1, q, L->r1, T * D);
        }
        ops->layernorm_forward(L->q1, L->r1, P->norm1_w, P->norm1_b, T, D, FS_SAM_EPS_DEC);

        ops->add(L->t2i_q, L->q1, X->qpe, T * D);
        ops->add(L->kpe, k, pos, HW * D);
        attn_inputs(&L->t2i, L->t2i_q, T, L->kpe, k, HW, d.I);
        la = dec_adapter(t, 3 * l + 1, &lg);
        attn_fwd(ops, &d, X, &P->cross_t2i, la, lr, ls, &L->t2i, L->r2);
        ops->add(L->r2, L->q1, L->r2, T * D);
        ops->layernorm_forward(L->q2, L->r2, P->norm2_w, P->norm2_b, T, D, FS_SAM_EPS_DEC);

        ops->linear_forward(L->mh, L->q2, P->lin1.w, P->lin1.b, T, D, d.M);
        ops->relu_forward(L->mhr, L->mh, T * d.M);
        ops->linear_forward(L->r3, L->mhr, P->lin2.w, P->lin2.b, T, d.M, D);
        ops->add(L->r3, L->q2, L->r3, T * D);
        ops->layernorm_forward(X->q[l + 1], L->r3, P->norm3_w, P->norm3_b, T, D, FS_SAM_EPS_DEC);

        ops->add(L->i2t_k, X->q[l + 1], X->qpe, T * D);
        attn_inputs(&L->i2t, L->kpe, HW, L->i2t_k, X->q[l + 1], T, d.I);
        la = dec_adapter(t, 3 * l + 2, &lg);
        attn_fwd(ops, &d, X, &P->cross_i2t, la, lr, ls, &L->i2t, L->r4);
        ops->add(L->r4, k, L->r4, HW * D);
        ops->layernorm_forward(X->k[l + 1], L->r4, P->norm4_w, P->norm4_b, HW, D, FS_SAM_EPS_DEC);
    }
    size_t nd = c->dec_depth;
    ops->add(X->f_q, X->q[nd], X->qpe, T * D);
    ops->add(X->f_kpe, X->k[nd], pos, HW * D);
    attn_inputs(&X->fin, X->f_q, T, X->f_kpe, X->k[nd], HW, d.I);
    la = dec_adapter(t, 3 * nd, &lg);
    attn_fwd(ops, &d, X, &p->final_attn, la, lr, ls, &X->fin, X->r5);
    ops->add(X->r5, X->q[nd], X->r5, T * D);
    ops->layernorm_forward(X->hs, X->r5, p->norm_final_w, p->norm_final_b, T, D, FS_SAM_EPS_DEC);

    size_t g = fs_sam_grid(c);
    ops->conv_transpose2x2_forward(X->u0, X->k[nd], p->up0_w, p->up0_b, 1, g, g, D, d.D4);
    ops->layernorm_forward(X->u1, X->u0, p->up1_w, p->up1_b, 4 * HW, d.D4, FS_SAM_EPS_ENC);
    ops->gelu_forward(X->u1g, X->u1, 4 * HW * d.D4);
    ops->conv_transpose2x2_forward(X->u2, X->u1g, p->up3_w, p->up3_b, 1, 2 * g, 2 * g, d.D4, d.D8);
    ops->gelu_forward(X->up, X->u2, 16 * HW * d.D8);

    /* every mask token's hypernetwork, as the official code */
    for (size_t m = 0; m < d.nm; m++) {
        const fs_sam_mlp_params *H = &p->hyper[m];
        ops->linear_forward(X->hy_a1 + m * D, X->hs + (1 + m) * D, H->layers[0].w, H->layers[0].b, 1, D, D);
        ops->relu_forward(X->hy_r1 + m * D, X->hy_a1 + m * D, D);
        ops->linear_forward(X->hy_a2 + m * D, X->hy_r1 + m * D, H->layers[1].w, H->layers[1].b, 1, D, D);
        ops->relu_forward(X->hy_r2 + m * D, X->hy_a2 + m * D, D);
        ops->linear_forward(X->hyper + m * d.D8, X->hy_r2 + m * D, H->layers[2].w, H->layers[2].b, 1, D, d.D8);
    }
    ops->linear_forward(low, X->hyper + first * d.D8, X->up, NULL, n, d.D8, 16 * HW);
}

void fs_train_dec_backward(fs_train *t, const fs_nn_ops *ops, const float *dlow, float *dembed, float *dsparse) {
    const fs_sam_config *c = &t->m->cfg;
    const fs_sam_params *p = fs_sam_kp(t->m);
    const fs_sam_params *G = &t->G;
    fs_train_dec *X = &t->Dt;
    size_t T = X->T, nd = c->dec_depth, g = fs_sam_grid(c);
    dec_dims d = ddims(t, T);
    size_t D = d.D, HW = d.HW;
    size_t lr = t->lora.cfg.rank;
    float ls = t->lora.cfg.scale;
    const fs_lora_attn *la, *lg;

    /* masks = hyper[first..] @ up^T */
    ZERO(X->dhyper, d.nm * d.D8);
    ZERO(X->dup, 16 * HW * d.D8);
    ops->linear_backward(X->dhyper + X->first * d.D8, X->dup, NULL, dlow, X->hyper + X->first * d.D8, X->up, X->n,
                         d.D8, 16 * HW);
    /* hypernetworks of the used tokens (the others get no gradient) */
    ZERO(X->dhs, T * D);
    for (size_t m = X->first; m < X->first + X->n; m++) {
        const fs_sam_mlp_params *H = &p->hyper[m];
        const fs_sam_mlp_params *GH = &G->hyper[m];
        ZERO(X->dh2, D);
        ops->linear_backward(X->dh2, GH->layers[2].w, GH->layers[2].b, X->dhyper + m * d.D8, X->hy_r2 + m * D,
                             H->layers[2].w, 1, D, d.D8);
        ZERO(X->dh1, D);
        ops->relu_backward(X->dh1, X->hy_a2 + m * D, X->dh2, D);
        ZERO(X->dh2, D);
        ops->linear_backward(X->dh2, GH->layers[1].w, GH->layers[1].b, X->dh1, X->hy_r1 + m * D, H->layers[1].w, 1, D,
                             D);
        ZERO(X->dh1, D);
        ops->relu_backward(X->dh1, X->hy_a1 + m * D, X->dh2, D);
        ops->linear_backward(X->dhs + (1 + m) * D, GH->layers[0].w, GH->layers[0].b, X->dh1, X->hs + (1 + m) * D,
                             H->layers[0].w, 1, D, D);
    }
    /* output upscaling */
    ZERO(X->du2, 16 * HW * d.D8);
    ops->gelu_backward(X->du2, X->u2, X->dup, 16 * HW * d.D8);
    ZERO(X->du1g, 4 * HW * d.D4);
    ops->conv_transpose2x2_backward(X->du1g, G->up3_w, G->up3_b, X->du2, X->u1g, p->up3_w, 1, 2 * g, 2 * g, d.D4,
                                    d.D8);
    ZERO(X->du1, 4 * HW * d.D4);
    ops->gelu_backward(X->du1, X->u1, X->du1g, 4 * HW * d.D4);
    ZERO(X->du0, 4 * HW * d.D4);
    ops->layernorm_backward(X->du0, G->up1_w, G->up1_b, X->du1, X->u0, p->up1_w, 4 * HW, d.D4, FS_SAM_EPS_ENC);
    ZERO(X->dk, HW * D);
    ops->conv_transpose2x2_backward(X->dk, G->up0_w, G->up0_b, X->du0, X->k[nd], p->up0_w, 1, g, g, D, d.D4);

    /* final attention: hs = LN(q + attn(q + qpe, k + pos, k)) */
    ZERO(X->dr, T * D);
    ops->layernorm_backward(X->dr, G->norm_final_w, G->norm_final_b, X->dhs, X->r5, p->norm_final_w, T, D,
                            FS_SAM_EPS_DEC);
    ops->copy(X->dq, X->dr, T * D * sizeof *X->dq);
    ZERO(X->dqpe, T * D);
    ZERO(X->dt, T * D);
    ZERO(X->dkpe, HW * D);
    la = dec_adapter(t, 3 * nd, &lg);
    attn_bwd(ops, &d, X, &p->final_attn, &G->final_attn, la, lg, lr, ls, &X->fin, X->dr, X->dt, X->dkpe, X->dk);
    ops->add(X->dq, X->dq, X->dt, T * D);
    ops->add(X->dqpe, X->dqpe, X->dt, T * D);
    ops->add(X->dk, X->dk, X->dkpe, HW * D);

    for (size_t l = nd; l-- > 0;) {
        const fs_train_layer_tape *L = &X->L[l];
        const fs_sam_twoway_params *P = &p->layers[l], *GL = &G->layers[l];
        /* dq: d queries out of layer l; dk: d keys out */
        /* image to token: keys = LN4(k + attn(k + pos, q3 + qpe, q3)) */
        ZERO(X->dr, HW * D);
        ops->layernorm_backward(X->dr, GL->norm4_w, GL->norm4_b, X->dk, L->r4, P->norm4_w, HW, D, FS_SAM_EPS_DEC);
        ops->copy(X->dk, X->dr, HW * D * sizeof *X->dk);
        ZERO(X->dkpe, HW * D);
        ZERO(X->dt, T * D);
        la = dec_adapter(t, 3 * l + 2, &lg);
        attn_bwd(ops, &d, X, &P->cross_i2t, &GL->cross_i2t, la, lg, lr, ls, &L->i2t, X->dr, X->dkpe, X->dt, X->dq);
        ops->add(X->dq, X->dq, X->dt, T * D);
        ops->add(X->dqpe, X->dqpe, X->dt, T * D);
        /* MLP: q3 = LN3(q2 + lin2(relu(lin1(q2)))) */
        ZERO(X->dr, T * D);
        ops->layernorm_backward(X->dr, GL->norm3_w, GL->norm3_b, X->dq, L->r3, P->norm3_w, T, D, FS_SAM_EPS_DEC);
        ops->copy(X->dq, X->dr, T * D * sizeof *X->dq);
        ZERO(X->dmhr, T * d.M);
        ops->linear_backward(X->dmhr, GL->lin2.w, GL->lin2.b, X->dr, L->mhr, P->lin2.w, T, d.M, D);
        ZERO(X->dmh, T * d.M);
        ops->relu_backward(X->dmh, L->mh, X->dmhr, T * d.M);
        ops->linear_backward(X->dq, GL->lin1.w, GL->lin1.b, X->dmh, L->q2, P->lin1.w, T, D, d.M);
        /* token to image: q2 = LN2(q1 + attn(q1 + qpe, k + pos, k)) */
        ZERO(X->dr, T * D);
        ops->layernorm_backward(X->dr, GL->norm2_w, GL->norm2_b, X->dq, L->r2, P->norm2_w, T, D, FS_SAM_EPS_DEC);
        ops->copy(X->dq, X->dr, T * D * sizeof *X->dq);
        ZERO(X->dt, T * D);
        la = dec_adapter(t, 3 * l + 1, &lg);
        attn_bwd(ops, &d, X, &P->cross_t2i, &GL->cross_t2i, la, lg, lr, ls, &L->t2i, X->dr, X->dt, X->dkpe, X->dk);
        ops->add(X->dq, X->dq, X->dt, T * D);
        ops->add(X->dqpe, X->dqpe, X->dt, T * D);
        ops->add(X->dk, X->dk, X->dkpe, HW * D); /* kpe = k + pos, shared by both cross attentions */
        /* self-attention: q1 = LN1(attn(q, q, q)) (layer 0) or LN1(q + attn(q + qpe, q + qpe, q)) */
        ZERO(X->dr, T * D);
        ops->layernorm_backward(X->dr, GL->norm1_w, GL->norm1_b, X->dq, L->r1, P->norm1_w, T, D, FS_SAM_EPS_DEC);
        la = dec_adapter(t, 3 * l, &lg);
        if (l == 0) {
            ZERO(X->dq, T * D);
            attn_bwd(ops, &d, X, &P->self_attn, &GL->self_attn, la, lg, lr, ls, &L->sa, X->dr, X->dq, X->dq, X->dq);
        } else {
            ops->copy(X->dq, X->dr, T * D * sizeof *X->dq);
            ZERO(X->dt, T * D);
            attn_bwd(ops, &d, X, &P->self_attn, &GL->self_attn, la, lg, lr, ls, &L->sa, X->dr, X->dt, X->dt, X->dq);
            ops->add(X->dq, X->dq, X->dt, T * D);
            ops->add(X->dqpe, X->dqpe, X->dt, T * D);
        }
    }
    /* the tokens were both the first queries and the query pe */
    ops->add(X->dq, X->dq, X->dqpe, T * D);
    if (G->iou_token) ops->add(G->iou_token, G->iou_token, X->dq, D);
    if (G->mask_tokens) ops->add(G->mask_tokens, G->mask_tokens, X->dq + D, d.nm * D);
    if (dsparse) ops->copy(dsparse, X->dq + (1 + d.nm) * D, (T - 1 - d.nm) * D * sizeof *dsparse);
    /* keys = embed + no_mask_embed, the dense embedding broadcast over the grid */
    ops->add(dembed, dembed, X->dk, HW * D);
    if (G->no_mask) ops->sum_rows(G->no_mask, X->dk, HW, D);
}

