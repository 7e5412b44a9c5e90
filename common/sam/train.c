/* The training state: trainable tensors, gradients, AdamW moments,
 * activations; one step = encoder forward, decoder forward per prompt set,
 * loss, decoder backward per prompt set, encoder backward, AdamW. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "sam/train_internal.h"

void fs_train_config_default(fs_train_config *c) {
    memset(c, 0, sizeof *c);
    c->encoder = FS_TRAIN_ENCODER_LORA;
    c->lora = fs_lora_default_config();
    c->decoder = FS_TRAIN_DECODER_FULL;
    c->batch = 1;
    c->recompute = 0;
    c->loss = fs_loss_default_weights();
    c->adamw = fs_adamw_defaults(0.005f, 0.1f);
    c->clip = 0;
    c->seed = 0;
}

/* 0 for a trained tensor that no loss reaches (torch leaves its gradient
 * None): the IoU head (no loss uses the predicted IoU) and the mask
 * downscaling (no mask prompts). */
static int reached(const char *name) {
    return !strstr(name, "iou_prediction_head") && !strstr(name, "mask_downscaling");
}

static const char *const decoder_modes[] = {[FS_TRAIN_DECODER_FULL] = "full", [FS_TRAIN_DECODER_FROZEN] = "frozen",
                                            [FS_TRAIN_DECODER_LORA] = "lora"};
static const char *const encoder_modes[] = {[FS_TRAIN_ENCODER_LORA] = "lora", [FS_TRAIN_ENCODER_FULL] = "full",
                                            [FS_TRAIN_ENCODER_FROZEN] = "frozen"};

const char *fs_train_decoder_mode_name(fs_train_decoder_mode m) {
    return (unsigned)m < sizeof decoder_modes / sizeof *decoder_modes ? decoder_modes[m] : "?";
}

const char *fs_train_encoder_mode_name(fs_train_encoder_mode m) {
    return (unsigned)m < sizeof encoder_modes / sizeof *encoder_modes ? encoder_modes[m] : "?";
}

int fs_train_decoder_mode_parse(const char *s, fs_train_decoder_mode *m) {
    for (size_t i = 0; i < sizeof decoder_modes / sizeof *decoder_modes; i++)
        if (!strcmp(s, decoder_modes[i])) {
            *m = (fs_train_decoder_mode)i;
            return FS_OK;
        }
    return fs_error("'%s' is not full, lora or frozen", s);
}

int fs_train_encoder_mode_parse(const char *s, fs_train_encoder_mode *m) {
    for (size_t i = 0; i < sizeof encoder_modes / sizeof *encoder_modes; i++)
        if (!strcmp(s, encoder_modes[i])) {
            *m = (fs_train_encoder_mode)i;
            return FS_OK;
        }
    return fs_error("'%s' is not lora, full or frozen", s);
}

void fs_train_count_params(const fs_sam_config *c, const fs_train_config *tc, size_t *lora, size_t *decoder) {
    *lora = *decoder = 0;
    fs_sam_table t;
    fs_lora_config lc = tc->lora;
    lc.decoder = tc->decoder == FS_TRAIN_DECODER_LORA;
    if (fs_lora_table_build(&t, c, &lc) == FS_OK) {
        for (size_t i = 0; i < t.n; i++) {
            if (fs_sam_is_decoder_tensor(t.v[i].name)) *decoder += t.v[i].numel;
            else *lora += t.v[i].numel;
        }
        fs_sam_table_free(&t);
    }
    if (tc->decoder == FS_TRAIN_DECODER_FULL && fs_sam_table_build(&t, c) == FS_OK) {
        for (size_t i = 0; i < t.n; i++)
            if (fs_sam_is_decoder_tensor(t.v[i].name)) *decoder += t.v[i].numel;
        fs_sam_table_free(&t);
    }
}

int fs_train_dec_reserve(fs_train *t, size_t T) {
    if (t->Dt.mem && t->Dt.cap_T >= T) return FS_OK;
    fs_sam_mem(t->m)->free(t->Dt.mem);
    t->Dt.mem = NULL;
    fs_bump b = {NULL, 0};
    fs_train_dec_layout(t, &b, T);
    float *mem = fs_sam_dalloc(t->m, b.used, "the mask decoder's training activations");
    if (!mem) return FS_ERR;
    b = (fs_bump){mem, 0};
    fs_train_dec_layout(t, &b, T);
    t->Dt.mem = mem;
    return FS_OK;
}

void fs_train_free(fs_train *t) {
    if (!t) return;
    t->m->trainers--;
    const fs_nn_ops *mem = fs_sam_mem(t->m);
    if (t->m->dev) {
        mem->free(t->dlora.arena);
        free(t->hgrads);
        free(t->hmoments);
    }
    fs_lora_free(&t->lora);
    free(t->t);
    mem->free(t->grads);
    mem->free(t->moments);
    mem->free(t->acts);
    mem->free(t->Dt.mem);
    free(t);
}

/* l's adapters moved to another arena of the same layout: out's pointers
 * point into arena where l's point into l's (the table is l's). */
static void lora_view(const fs_lora *l, float *arena, fs_lora *out) {
    *out = *l;
#define REBIND(p) ((p) ? arena + ((p) - l->arena) : NULL)
    for (size_t i = 0; i < FS_SAM_MAX_DEPTH; i++)
        for (int s = 0; s < FS_LORA_NSLOTS; s++) {
            out->blocks[i].A[s] = REBIND(l->blocks[i].A[s]);
            out->blocks[i].B[s] = REBIND(l->blocks[i].B[s]);
        }
    for (size_t a = 0; a < FS_LORA_DEC_MAX_ATTN; a++)
        for (int j = 0; j < FS_LORA_DEC_NPROJ; j++) {
            out->dec[a].A[j] = REBIND(l->dec[a].A[j]);
            out->dec[a].B[j] = REBIND(l->dec[a].B[j]);
        }
#undef REBIND
    out->arena = arena;
}

/* dlora: the adapters in backend memory, bound as lora is. */
static int lora_to_backend(fs_train *t) {
    const fs_nn_ops *dev = t->m->dev;
    if (!dev) {
        t->dlora = t->lora;
        return FS_OK;
    }
    size_t n = t->lora.table.total;
    float *arena = fs_sam_dalloc(t->m, n ? n : 1, "the LoRA adapters");
    if (!arena) return FS_ERR;
    dev->upload(arena, t->lora.arena, n * sizeof *arena);
    lora_view(&t->lora, arena, &t->dlora);
    return FS_OK;
}

void fs_train_pull(fs_train *t) {
    const fs_nn_ops *dev = t->m->dev;
    if (!dev) return;
    dev->download(t->hgrads, t->grads, t->nparams * sizeof *t->grads);
    dev->download(t->hmoments, t->moments, 2 * t->nparams * sizeof *t->moments);
    for (size_t i = 0; i < t->nt; i++) dev->download(t->t[i].param, t->t[i].dparam, t->t[i].numel * sizeof(float));
}

void fs_train_push(fs_train *t) {
    const fs_nn_ops *dev = t->m->dev;
    if (!dev) return;
    dev->upload(t->grads, t->hgrads, t->nparams * sizeof *t->grads);
    dev->upload(t->moments, t->hmoments, 2 * t->nparams * sizeof *t->moments);
    for (size_t i = 0; i < t->nt; i++) dev->upload(t->t[i].dparam, t->t[i].param, t->t[i].numel * sizeof(float));
}

int fs_train_create(fs_train **out, fs_sam *m, const fs_train_config *tc) {
    *out = NULL;
    if (!tc->batch) return fs_error("training batch size must be at least 1");
    if (tc->decoder != FS_TRAIN_DECODER_FULL && tc->decoder != FS_TRAIN_DECODER_FROZEN &&
        tc->decoder != FS_TRAIN_DECODER_LORA)
        return fs_error("decoder mode %d is not supported (full, lora or frozen)", (int)tc->decoder);
    if (tc->encoder != FS_TRAIN_ENCODER_LORA && tc->encoder != FS_TRAIN_ENCODER_FULL &&
        tc->encoder != FS_TRAIN_ENCODER_FROZEN)
        return fs_error("encoder mode %d is not supported (lora, full or frozen)", (int)tc->encoder);
    if (tc->encoder != FS_TRAIN_ENCODER_LORA && tc->lora.targets)
        return fs_error("LoRA adapters with the encoder %s: adapters need the encoder mode lora",
                        tc->encoder == FS_TRAIN_ENCODER_FULL ? "trained in full" : "frozen");
    const fs_sam_config *c = &m->cfg;
    if (c->out_chans % 8 || c->out_chans / 2 % c->dec_heads)
        return fs_error("decoder width %zu does not split into the upscaling and heads", c->out_chans);
    fs_train *t = calloc(1, sizeof *t);
    if (!t) return fs_error("out of memory for the training state");
    t->m = m;
    m->trainers++;
    t->cfg = *tc;
    /* the decoder mode alone decides whether the decoder has adapters */
    t->cfg.lora.decoder = tc->decoder == FS_TRAIN_DECODER_LORA;
    if (fs_lora_alloc(&t->lora, c, &t->cfg.lora)) goto fail;
    fs_lora_init(&t->lora, tc->seed);
    if (lora_to_backend(t)) goto fail;
    const fs_nn_ops *mem = fs_sam_mem(m);

    /* trainable tensors: the adapters, then the base tensors the modes select */
    const fs_sam_table *pt = &m->p.table;
    size_t cap = t->lora.table.n + pt->n;
    t->t = calloc(cap ? cap : 1, sizeof *t->t);
    if (!t->t) {
        fs_error("out of memory for the training state");
        goto fail;
    }
    for (size_t i = 0; i < t->lora.table.n; i++) {
        const fs_sam_tensor_info *e = &t->lora.table.v[i];
        fs_train_tensor *x = &t->t[t->nt++];
        memcpy(x->name, e->name, sizeof x->name);
        x->ndim = e->ndim;
        memcpy(x->shape, e->shape, sizeof x->shape);
        x->numel = e->numel;
        x->param = t->lora.arena + e->offset;
        x->dparam = t->dlora.arena + e->offset;
        x->in_graph = 1;
        if (fs_sam_is_decoder_tensor(e->name)) t->n_dec += e->numel;
        else t->n_lora += e->numel;
    }
    for (size_t i = 0; i < pt->n; i++) {
        const fs_sam_tensor_info *e = &pt->v[i];
        int dec = fs_sam_is_decoder_tensor(e->name), enc = fs_sam_is_encoder_tensor(e->name);
        if (!(dec && tc->decoder == FS_TRAIN_DECODER_FULL) && !(enc && tc->encoder == FS_TRAIN_ENCODER_FULL))
            continue;
        fs_train_tensor *x = &t->t[t->nt++];
        memcpy(x->name, e->name, sizeof x->name);
        x->ndim = e->ndim;
        memcpy(x->shape, e->shape, sizeof x->shape);
        x->numel = e->numel;
        x->param = m->p.arena + e->offset;
        x->dparam = fs_sam_kp(m)->arena + e->offset;
        x->in_graph = reached(e->name);
        if (dec) t->n_dec += e->numel;
        else t->n_enc += e->numel;
    }
    t->nparams = t->n_lora + t->n_dec + t->n_enc;
    t->grads = fs_sam_dalloc(m, t->nparams ? t->nparams : 1, "gradients");
    t->moments = t->grads ? fs_sam_dalloc(m, 2 * t->nparams + 1, "the optimiser state") : NULL;
    if (!t->grads || !t->moments) goto fail;
    t->hgrads = t->grads;
    t->hmoments = t->moments;
    if (m->dev) {
        t->hgrads = calloc(t->nparams ? t->nparams : 1, sizeof *t->hgrads);
        t->hmoments = calloc(2 * t->nparams + 1, sizeof *t->hmoments);
        if (!t->hgrads || !t->hmoments) {
            fs_error("out of memory for the host copy of gradients and optimiser state (%zu parameters)", t->nparams);
            goto fail;
        }
    }
    size_t off = 0;
    for (size_t i = 0; i < t->nt; i++) {
        fs_train_tensor *x = &t->t[i];
        x->grad = t->hgrads + off;
        x->m = t->hmoments + off;
        x->v = t->hmoments + t->nparams + off;
        x->dgrad = t->grads + off;
        x->dm = t->moments + off;
        x->dv = t->moments + t->nparams + off;
        off += x->numel;
    }
    /* LoRA gradients mirror the adapters' layout at the start of grads */
    lora_view(&t->lora, t->grads, &t->lgrad);
    /* base gradients: the fs_sam_params field that binds a tensor in the
     * model binds its gradient in G */
    for (size_t i = t->lora.table.n; i < t->nt; i++)
        *fs_sam_params_twin(&t->G, &m->p, &pt->v[fs_sam_table_find(pt, t->t[i].name)]) = t->t[i].dgrad;

    fs_bump b = {NULL, 0};
    fs_train_enc_layout(t, &b, tc->batch);
    t->acts = mem->alloc(b.used * sizeof *t->acts);
    if (!t->acts) {
        fs_error("out of memory for the training activations (%zu MiB for batch %zu on backend '%s')",
                 b.used * sizeof(float) >> 20, tc->batch, mem->name);
        goto fail;
    }
    b = (fs_bump){t->acts, 0};
    fs_train_enc_layout(t, &b, tc->batch);
    if (fs_train_dec_reserve(t, 1 + fs_sam_num_masks(c) + 4)) goto fail;
    if (tc->encoder == FS_TRAIN_ENCODER_FULL)
        fs_info("trainable parameters: %zu (image and prompt encoders %zu, in full; mask decoder %zu, %s); "
                "activations %zu MiB",
                t->nparams, t->n_enc, t->n_dec, fs_train_decoder_mode_name(tc->decoder), b.used * sizeof(float) >> 20);
    else
        fs_info("trainable parameters: %zu (LoRA %zu: rank %zu, scale %g; mask decoder %zu, %s); activations %zu MiB",
                t->nparams, t->n_lora, tc->lora.rank, (double)tc->lora.scale, t->n_dec, fs_train_decoder_mode_name(tc->decoder),
                b.used * sizeof(float) >> 20);
    *out = t;
    return FS_OK;
fail:
    fs_train_free(t);
    return FS_ERR;
}

size_t fs_train_tensor_count(const fs_train *t) { return t->nt; }
fs_train_tensor *fs_train_tensor_at(fs_train *t, size_t i) { return i < t->nt ? &t->t[i] : NULL; }
fs_train_tensor *fs_train_find(fs_train *t, const char *name) {
    for (size_t i = 0; i < t->nt; i++)
        if (!strcmp(t->t[i].name, name)) return &t->t[i];
    return NULL;
}
size_t fs_train_param_count(const fs_train *t) { return t->nparams; }
size_t fs_train_steps(const fs_train *t) { return t->steps; }
void fs_train_set_steps(fs_train *t, size_t steps) { t->steps = steps; }
fs_lora *fs_train_lora(fs_train *t) { return &t->lora; }
const fs_train_config *fs_train_get_config(const fs_train *t) { return &t->cfg; }
double fs_train_last_grad_norm(const fs_train *t) { return t->last_norm; }

void fs_train_zero_grad(fs_train *t) { fs_sam_mem(t->m)->zero(t->grads, t->nparams * sizeof *t->grads); }

void fs_train_scale_grad(fs_train *t, float f) { fs_sam_mem(t->m)->scale(t->grads, f, t->nparams); }

static int check_batch(const fs_train *t, const fs_train_batch *b) {
    const fs_sam_config *c = &t->m->cfg;
    if (!b->images || !b->n_images) return fs_error("training batch without images");
    if (b->n_images > t->E.cap)
        return fs_error("training batch of %zu images exceeds the configured batch size %zu", b->n_images, t->E.cap);
    if (b->prompts) {
        if (!b->n_items || !b->item_image || !b->targets)
            return fs_error("prompted training batch needs prompt sets, their images and targets");
        for (size_t i = 0; i < b->n_items; i++) {
            if (b->item_image[i] >= b->n_images)
                return fs_error("prompt set %zu refers to image %zu of %zu", i, b->item_image[i], b->n_images);
            if (!fs_sam_sparse_count(&b->prompts[i])) return fs_error("prompt set %zu has no point and no box", i);
        }
    } else {
        if (!b->labels) return fs_error("prompt-free training batch needs labels");
        size_t L = 4 * fs_sam_grid(c), K = fs_sam_num_masks(c);
        for (size_t i = 0; i < b->n_images * L * L; i++)
            if (b->labels[i] < 0 || (size_t)b->labels[i] >= K)
                return fs_error("label %d at pixel %zu is outside the %zu classes the decoder has", b->labels[i], i, K);
    }
    return FS_OK;
}

int fs_train_backend_ok(const fs_nn_ops *ops) {
    return ops->linear_backward && ops->layernorm_backward && ops->gelu_backward && ops->relu_backward &&
           ops->attention_backward && ops->attention_relpos_backward && ops->conv3x3_backward &&
           ops->conv_transpose2x2_backward;
}

/* The adjoint of fs_sam_embed_prompt for the learned embeddings: each
 * sparse token is a positional encoding (of fixed weights) plus the
 * embedding of its kind, which gets the token's gradient dsparse[Ns, D]
 * (backend memory). */
static void prompt_backward(fs_train *t, const fs_nn_ops *ops, const fs_sam_prompt *pr, const float *dsparse) {
    size_t D = t->m->cfg.out_chans;
    const fs_sam_params *G = &t->G;
    const float *d = dsparse;
#define ACC(dst)                                                                                                       \
    do {                                                                                                               \
        if (dst) ops->add((dst), (dst), d, D);                                                                         \
    } while (0)
    if (pr->n_points) {
        for (size_t i = 0; i < pr->n_points; i++, d += D)
            ACC(pr->labels[i] == -1 ? G->not_a_point : G->point_embed[pr->labels[i]]);
        if (!pr->box) { /* the padding point */
            ACC(G->not_a_point);
            d += D;
        }
    }
    if (pr->box)
        for (int k = 0; k < 2; k++, d += D) ACC(G->point_embed[2 + k]);
#undef ACC
}

/* Embeds a prompt on the host (from the host copy of the prompt encoder)
 * into sparse, and hands it to the kernels in ksparse. */
static int embed_prompt(const fs_sam *m, const fs_nn_ops *ops, const fs_sam_prompt *pr, float *sparse,
                        float *ksparse) {
    if (fs_sam_embed_prompt(m, pr, sparse)) return FS_ERR;
    if (m->dev) ops->upload(ksparse, sparse, fs_sam_sparse_count(pr) * m->cfg.out_chans * sizeof *sparse);
    return FS_OK;
}

/* The shared body of forward_backward (grad 1) and loss (grad 0). */
static int run(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, fs_loss_value *loss, int grad) {
    if (grad && !fs_train_backend_ok(ops)) return fs_error("backend '%s' has no backward kernels", ops->name);
    if (grad && t->cfg.encoder == FS_TRAIN_ENCODER_FULL && !ops->patch_embed_backward)
        return fs_error("backend '%s' has no patch-embedding backward kernel (needed to train the encoder in full)",
                        ops->name);
    if (check_batch(t, b)) return FS_ERR;
    fs_sam *m = t->m;
    if (!fs_sam_bound_to(m, ops))
        return fs_error("the training state lives on backend '%s' and cannot run on '%s' (bind the model first)",
                        fs_sam_mem(m)->name, ops->name);
    const fs_sam_config *c = &m->cfg;
    size_t g = fs_sam_grid(c), HW = g * g, D = c->out_chans, LL = 16 * HW, nm = fs_sam_num_masks(c);
    int prompted = b->prompts != NULL;
    size_t n_items = prompted ? b->n_items : b->n_images, n_masks = prompted ? 1 : nm;
    size_t maxNs = 0;
    for (size_t i = 0; prompted && i < n_items; i++) {
        size_t ns = fs_sam_sparse_count(&b->prompts[i]);
        if (ns > maxNs) maxNs = ns;
    }
    if (fs_train_dec_reserve(t, 1 + nm + maxNs)) return FS_ERR;
    size_t nlog = n_items * n_masks * LL;
    size_t nbuf = 2 * nlog + 2 * maxNs * D + 1;
    float *logits = malloc(nbuf * sizeof *logits);
    if (!logits) return fs_error("out of memory for %zu logits", nlog);
    float *dlogits = logits + nlog, *sparse = dlogits + nlog;
    /* the kernels' side of the same four buffers: themselves on the host */
    float *klogits = logits;
    if (m->dev && !(klogits = fs_sam_dalloc(m, nbuf, "the logits"))) {
        free(logits);
        return FS_ERR;
    }
    float *kdlogits = klogits + nlog, *ksparse = kdlogits + nlog, *kdsparse = ksparse + maxNs * D;
    int full = t->cfg.encoder == FS_TRAIN_ENCODER_FULL;
    int rc = FS_ERR;

    const float *pre = b->images;
    if (m->dev) {
        size_t S = c->img_size;
        ops->upload(t->E.pre_buf, b->images, b->n_images * 3 * S * S * sizeof *b->images);
        pre = t->E.pre_buf;
    }
    fs_train_enc_forward(t, ops, pre, b->n_images);
    const float *embed = t->E.embed;
#define ITEM_IMAGE(i) (prompted ? b->item_image[i] : (i))
#define ITEM_NS(i) (prompted ? fs_sam_sparse_count(&b->prompts[i]) : 0)
    for (size_t i = 0; i < n_items; i++) {
        if (prompted && embed_prompt(m, ops, &b->prompts[i], sparse, ksparse)) goto done;
        fs_train_dec_forward(t, ops, embed + ITEM_IMAGE(i) * HW * D, ksparse, ITEM_NS(i), 0, n_masks,
                             klogits + i * n_masks * LL);
    }
    if (m->dev) ops->download(logits, klogits, nlog * sizeof *logits);
    if (prompted) fs_loss_prompted(logits, b->targets, n_items, LL, t->cfg.loss, loss, grad ? dlogits : NULL);
    else if (fs_loss_semantic(logits, b->labels, n_items, nm, LL, t->cfg.loss, loss, grad ? dlogits : NULL)) {
        fs_error("labels outside the decoder's classes");
        goto done;
    }
    if (b->logits_out) memcpy(b->logits_out, logits, nlog * sizeof *logits);
    if (grad) {
        if (m->dev) ops->upload(kdlogits, dlogits, nlog * sizeof *dlogits);
        ops->zero(t->E.dembed, b->n_images * HW * D * sizeof *t->E.dembed);
        /* the last prompt set's tape is current; the others are rerun */
        for (size_t i = n_items; i-- > 0;) {
            if (i + 1 < n_items) {
                if (prompted && embed_prompt(m, ops, &b->prompts[i], sparse, ksparse)) goto done;
                fs_train_dec_forward(t, ops, embed + ITEM_IMAGE(i) * HW * D, ksparse, ITEM_NS(i), 0, n_masks,
                                     klogits + i * n_masks * LL);
            }
            fs_train_dec_backward(t, ops, kdlogits + i * n_masks * LL, t->E.dembed + ITEM_IMAGE(i) * HW * D,
                                  full && prompted ? kdsparse : NULL);
            if (full && prompted) prompt_backward(t, ops, &b->prompts[i], kdsparse);
        }
        /* without adapters or a full encoder nothing below the neck is trainable */
        if (t->n_lora || full || m->tap) fs_train_enc_backward(t, ops, b->n_images);
    }
#undef ITEM_IMAGE
#undef ITEM_NS
    rc = FS_OK;
done:
    if (klogits != logits) fs_sam_mem(m)->free(klogits);
    free(logits);
    return rc;
}

int fs_train_forward_backward(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, fs_loss_value *loss) {
    return run(t, ops, b, loss, 1);
}

int fs_train_loss(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, fs_loss_value *loss) {
    return run(t, ops, b, loss, 0);
}

void fs_train_step(fs_train *t, double lr) {
    const fs_nn_ops *mem = fs_sam_mem(t->m);
    double ss = 0;
    for (size_t i = 0; i < t->nt; i++)
        if (t->t[i].in_graph) ss += mem->sumsq(t->t[i].dgrad, t->t[i].numel);
    t->last_norm = sqrt(ss);
    float f = fs_grad_clip_factor(t->last_norm, t->cfg.clip);
    const fs_adamw_config *ac = &t->cfg.adamw;
    const double hyper[5] = {lr, ac->beta1, ac->beta2, ac->eps, ac->weight_decay};
    t->steps++;
    for (size_t i = 0; i < t->nt; i++) {
        fs_train_tensor *x = &t->t[i];
        if (!x->in_graph) continue;
        if (f != 1.0f) mem->scale(x->dgrad, f, x->numel);
        mem->adamw_update(x->dparam, x->dgrad, x->dm, x->dv, x->numel, hyper, t->steps);
        /* prompts are embedded on the host, from its copy of the prompt encoder */
        if (t->m->dev && !strncmp(x->name, "prompt_encoder.", 15))
            mem->download(x->param, x->dparam, x->numel * sizeof(float));
    }
}

int fs_train_step_batch(fs_train *t, const fs_nn_ops *ops, const fs_train_batch *b, double lr, fs_loss_value *loss) {
    fs_train_zero_grad(t);
    if (fs_train_forward_backward(t, ops, b, loss)) return FS_ERR;
    fs_train_step(t, lr);
    return FS_OK;
}
