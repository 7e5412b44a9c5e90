/* SAM's mask decoder: the two-way transformer between prompt tokens and image
 * tokens, output upscaling, hypernetwork MLPs and the IoU head
 * (MaskDecoder.predict_masks), for one image and one prompt set. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "sam/internal.h"

typedef struct {
    const fs_nn_ops *ops;
    size_t D, heads;
    float *Q, *K, *V, *O; /* projections, max(T, HW) x D each */
} attn_ws;

/* Attention(q_in[Nq, D], k_in[Nk, D], v_in[Nk, D]) -> out[Nq, D]: q/k/v
 * projections to the internal width I, per-head softmax(QK^T/sqrt(I/heads))V,
 * output projection. */
static void attention(attn_ws *w, const fs_sam_attn_params *a, size_t I, const float *q_in, size_t Nq,
                      const float *k_in, const float *v_in, size_t Nk, float *out) {
    const fs_nn_ops *ops = w->ops;
    size_t D = w->D, hd = I / w->heads;
    ops->linear_forward(w->Q, q_in, a->q.w, a->q.b, Nq, D, I);
    ops->linear_forward(w->K, k_in, a->k.w, a->k.b, Nk, D, I);
    ops->linear_forward(w->V, v_in, a->v.w, a->v.b, Nk, D, I);
    ops->attention_forward(w->O, w->Q, w->K, w->V, 1, Nq, Nk, w->heads, hd, 1.0f / sqrtf((float)hd));
    ops->linear_forward(out, w->O, a->out.w, a->out.b, Nq, I, D);
}

/* The decoder's MLP: linear layers, ReLU between them. in[K] -> out[N]. */
static void mlp(const fs_nn_ops *ops, const fs_sam_mlp_params *p, size_t depth, size_t in_dim, size_t hidden,
                size_t out_dim, const float *in, float *out, float *t1, float *t2) {
    const float *x = in;
    for (size_t j = 0; j < depth; j++) {
        size_t K = j == 0 ? in_dim : hidden, N = j + 1 == depth ? out_dim : hidden;
        float *y = j + 1 == depth ? out : (j % 2 ? t2 : t1);
        ops->linear_forward(y, x, p->layers[j].w, p->layers[j].b, 1, K, N);
        if (j + 1 < depth) ops->relu_forward(y, y, N);
        x = y;
    }
}

size_t fs_sam_mask_count(const fs_sam *m, fs_sam_mask_mode mode) {
    switch (mode) {
    case FS_SAM_MASKS_SINGLE: return 1;
    case FS_SAM_MASKS_MULTI: return m->cfg.num_multimask;
    default: return fs_sam_num_masks(&m->cfg);
    }
}

int fs_sam_decode(fs_sam *m, const fs_nn_ops *ops, const float *embed, const fs_sam_prompt *pr,
                  fs_sam_mask_mode mode, float *low, float *iou, size_t *n_out) {
    if (fs_sam_ensure_bound(m, ops)) return FS_ERR;
    const fs_sam_config *c = &m->cfg;
    const fs_sam_params *p = fs_sam_kp(m);
    size_t D = c->out_chans, g = fs_sam_grid(c), HW = g * g, nm = fs_sam_num_masks(c);
    size_t Ns = fs_sam_sparse_count(pr), T = 1 + nm + Ns, I = D / 2, M = c->dec_mlp_dim;
    size_t big = (T > HW ? T : HW) * D, small = T * (D > M ? D : M);
    size_t hid = D > c->iou_hidden ? D : c->iou_hidden;
    /* tokens: queries, qpe, qsum, qout, mlp hidden; image: keys, kpe, kout;
     * attention: Q, K, V, O; upscaling [4g, 4g, D/8] = 2 * HW * D */
    size_t first = mode == FS_SAM_MASKS_MULTI ? 1 : 0, n = fs_sam_mask_count(m, mode);
    /* and the masks out: [n, 16 HW] */
    size_t total = 4 * T * D + small + 3 * HW * D + 4 * big + 2 * HW * D + HW * D + nm * (D / 8) + 3 * hid + nm +
                   n * 16 * HW;
    float *sparse = malloc((Ns * D + 1) * sizeof *sparse);
    if (!sparse) return fs_error("out of memory for the prompt's tokens");
    if (m->dec_ws_n < total) {
        fs_sam_mem(m)->free(m->dec_ws);
        m->dec_ws_n = 0;
        if (!(m->dec_ws = fs_sam_dalloc(m, total, "the mask decoder"))) {
            free(sparse);
            return FS_ERR;
        }
        m->dec_ws_n = total;
    }
    float *mem = m->dec_ws;
    float *queries = mem, *qpe = queries + T * D, *qsum = qpe + T * D, *qout = qsum + T * D, *mh = qout + T * D;
    float *keys = mh + small, *kpe = keys + HW * D, *kout = kpe + HW * D;
    attn_ws w = {ops, D, c->dec_heads, NULL, NULL, NULL, NULL};
    w.Q = kout + HW * D;
    w.K = w.Q + big;
    w.V = w.K + big;
    w.O = w.V + big;
    float *up = w.O + big, *up1 = up + 2 * HW * D; /* up: [4g,4g,D/8]; up1: [2g,2g,D/4] */
    float *hyper = up1 + HW * D, *h1 = hyper + nm * (D / 8), *h2 = h1 + hid, *h3 = h2 + hid, *iou_all = h3 + hid;
    float *masks = iou_all + nm;
    int rc = FS_ERR;

    /* tokens = [iou_token, mask_tokens, sparse prompt]; the prompt is
     * embedded on the host, from the host copy of the prompt encoder */
    ops->copy(qpe, p->iou_token, D * sizeof *qpe);
    ops->copy(qpe + D, p->mask_tokens, nm * D * sizeof *qpe);
    if (fs_sam_embed_prompt(m, pr, sparse)) goto done;
    ops->upload(qpe + (1 + nm) * D, sparse, Ns * D * sizeof *sparse);
    fs_sam_tap(m, "sparse", qpe + (1 + nm) * D, 3, 1, Ns, D, 0);
    if (m->tap) { /* the dense prompt: no_mask_embed at every position (kout is free until the layers) */
        ops->zero(kout, HW * D * sizeof *kout);
        ops->add_rows(kout, p->no_mask, HW, D);
        fs_sam_tap_chw(m, "dense", kout, 1, g, g, D);
    }
    ops->copy(queries, qpe, T * D * sizeof *queries);
    /* src = image embedding + dense prompt (no_mask_embed at every position) */
    ops->upload(keys, embed, HW * D * sizeof *keys);
    ops->add_rows(keys, p->no_mask, HW, D);
    const float *pos = fs_sam_kpe(m);

    /* TwoWayTransformer */
    for (size_t l = 0; l < c->dec_depth; l++) {
        const fs_sam_twoway_params *L = &p->layers[l];
        if (l == 0) { /* skip_first_layer_pe: self-attention replaces the queries, no residual */
            attention(&w, &L->self_attn, D, queries, T, queries, queries, T, qout);
            ops->copy(queries, qout, T * D * sizeof *queries);
        } else {
            ops->add(qsum, queries, qpe, T * D);
            attention(&w, &L->self_attn, D, qsum, T, qsum, queries, T, qout);
            ops->add(queries, queries, qout, T * D);
        }
        ops->layernorm_forward(qsum, queries, L->norm1_w, L->norm1_b, T, D, FS_SAM_EPS_DEC);
        ops->copy(queries, qsum, T * D * sizeof *queries);

        ops->add(qsum, queries, qpe, T * D);
        ops->add(kpe, keys, pos, HW * D);
        attention(&w, &L->cross_t2i, I, qsum, T, kpe, keys, HW, qout);
        ops->add(qsum, queries, qout, T * D);
        ops->layernorm_forward(queries, qsum, L->norm2_w, L->norm2_b, T, D, FS_SAM_EPS_DEC);

        ops->linear_forward(mh, queries, L->lin1.w, L->lin1.b, T, D, M);
        ops->relu_forward(mh, mh, T * M);
        ops->linear_forward(qout, mh, L->lin2.w, L->lin2.b, T, M, D);
        ops->add(qsum, queries, qout, T * D);
        ops->layernorm_forward(queries, qsum, L->norm3_w, L->norm3_b, T, D, FS_SAM_EPS_DEC);

        /* image tokens attend to prompt tokens (kpe = keys + pos is still current) */
        ops->add(qsum, queries, qpe, T * D);
        attention(&w, &L->cross_i2t, I, kpe, HW, qsum, queries, T, kout);
        ops->add(kpe, keys, kout, HW * D);
        ops->layernorm_forward(keys, kpe, L->norm4_w, L->norm4_b, HW, D, FS_SAM_EPS_DEC);
    }
    ops->add(qsum, queries, qpe, T * D);
    ops->add(kpe, keys, pos, HW * D);
    attention(&w, &p->final_attn, I, qsum, T, kpe, keys, HW, qout);
    ops->add(qsum, queries, qout, T * D);
    ops->layernorm_forward(queries, qsum, p->norm_final_w, p->norm_final_b, T, D, FS_SAM_EPS_DEC);
    fs_sam_tap(m, "decoder.hs", queries, 3, 1, T, D, 0);
    fs_sam_tap(m, "decoder.src", keys, 3, 1, HW, D, 0);

    /* output_upscaling: ConvT 2x2 -> LayerNorm2d -> GELU -> ConvT 2x2 -> GELU */
    ops->conv_transpose2x2_forward(up, keys, p->up0_w, p->up0_b, 1, g, g, D, D / 4);
    ops->layernorm_forward(up1, up, p->up1_w, p->up1_b, 4 * HW, D / 4, FS_SAM_EPS_ENC);
    ops->gelu_forward(up1, up1, 4 * HW * (D / 4));
    ops->conv_transpose2x2_forward(up, up1, p->up3_w, p->up3_b, 1, 2 * g, 2 * g, D / 4, D / 8);
    ops->gelu_forward(up, up, 16 * HW * (D / 8));
    fs_sam_tap_chw(m, "decoder.upscaled", up, 1, 4 * g, 4 * g, D / 8);

    /* hypernetwork per mask token, then masks = hyper_in @ upscaled */
    for (size_t i = 0; i < n; i++) {
        size_t t = first + i;
        mlp(ops, &p->hyper[t], 3, D, D, D / 8, queries + (1 + t) * D, hyper + i * (D / 8), h1, h2);
    }
    /* low[n, 16 HW] = hyper[n, D/8] @ up[16 HW, D/8]^T */
    ops->linear_forward(masks, hyper, up, NULL, n, D / 8, 16 * HW);
    mlp(ops, &p->iou_head, c->iou_depth, D, c->iou_hidden, nm, queries, iou_all, h1, h3);
    ops->download(low, masks, n * 16 * HW * sizeof *low);
    ops->download(iou, iou_all + first, n * sizeof *iou);
    if (n_out) *n_out = n;
    rc = FS_OK;
done:
    free(sparse);
    return rc;
}

int fs_sam_postprocess(const fs_sam *m, const fs_nn_ops *ops, const float *low, size_t n, size_t in_h, size_t in_w,
                       size_t orig_h, size_t orig_w, float *out) {
    size_t S = m->cfg.img_size, L = 4 * fs_sam_grid(&m->cfg);
    if (!in_h || !in_w || in_h > S || in_w > S || !orig_h || !orig_w)
        return fs_error("postprocess: input size %zux%zu does not fit %zux%zu", in_h, in_w, S, S);
    /* no parameters are read: any backend will do, data goes through its memory */
    size_t total = S * S + in_h * in_w + (ops->device ? L * L + orig_h * orig_w : 0);
    float *full = ops->alloc(total * sizeof *full);
    if (!full) return fs_error("out of memory postprocessing masks");
    float *crop = full + S * S, *dlow = crop + in_h * in_w, *dout = dlow + L * L;
    for (size_t i = 0; i < n; i++) {
        const float *src = low + i * L * L;
        float *dst = out + i * orig_h * orig_w;
        if (ops->device) {
            ops->upload(dlow, src, L * L * sizeof *dlow);
            src = dlow;
        }
        ops->resize_bilinear_forward(full, src, 1, L, L, S, S);
        ops->crop(crop, full, S, S, in_h, in_w);
        ops->resize_bilinear_forward(ops->device ? dout : dst, crop, 1, in_h, in_w, orig_h, orig_w);
        if (ops->device) ops->download(dst, dout, orig_h * orig_w * sizeof *dst);
    }
    ops->free(full);
    return FS_OK;
}
