/* Private to the training code (train.c, encoder_backward.c,
 * decoder_backward.c): the state's layout. */
#ifndef FS_SAM_TRAIN_INTERNAL_H
#define FS_SAM_TRAIN_INTERNAL_H

#include "sam/internal.h"
#include "sam/train.h"

/* Carves float arrays out of one allocation; with base NULL it only counts,
 * so one layout function both sizes and binds an arena. */
typedef struct {
    float *base;
    size_t used;
} fs_bump;

static inline float *fs_bump_take(fs_bump *b, size_t n) {
    float *p = b->base ? b->base + b->used : NULL;
    b->used += n;
    return p;
}

/* What one encoder block's backward needs (the LayerNorm outputs and the
 * GELU output are recomputed: cheap elementwise work). */
typedef struct {
    float *qkv;   /* [Mq, 3C] on the (window-padded) token grid */
    float *att;   /* [Mq, C] attention output before proj */
    float *x_mid; /* [B*g*g, C] stream after the attention residual */
    float *h_pre; /* [B*g*g, hidden] MLP hidden before GELU */
} fs_train_block_saved;

typedef struct {
    size_t cap; /* images the arena is sized for */
    const float *pre; /* the forward's input images (in backend memory, kept until backward) */
    float *pre_buf;   /* [cap, 3, S, S]: where a device backend gets them (NULL on the host) */
    float *xs[FS_SAM_MAX_DEPTH + 1]; /* block inputs; xs[depth] = the neck's input */
    fs_train_block_saved saved[FS_SAM_MAX_DEPTH];
    float *n1, *n2, *n3, *embed, *dembed; /* neck: [B*g*g, D] */
    /* scratch */
    float *xn, *win, *ytmp, *h, *dh, *dxn, *dwin, *datt, *dqkv, *dx, *lu, *ldu, *lt;
} fs_train_enc;

/* The decoder's saved activations for one prompt set (T tokens). */
typedef struct {
    float *qin, *kin, *vin; /* projection inputs (aliases of other tape arrays) */
    float *Q, *K, *V, *O;
    size_t Nq, Nk, I;
} fs_train_attn_tape;

typedef struct {
    fs_train_attn_tape sa, t2i, i2t;
    float *sa_in, *r1, *q1, *t2i_q, *kpe, *r2, *q2, *mh, *mhr, *r3, *i2t_k, *r4;
} fs_train_layer_tape;

typedef struct {
    size_t T, cap_T; /* tokens of the current pass; capacity */
    size_t first, n; /* masks returned: tokens first .. first+n-1 */
    float *mem;
    float *qpe;                                   /* [T, D] the tokens */
    float *q[FS_SAM_MAX_DEC_DEPTH + 1];           /* [T, D] queries entering layer l (q[depth]: after) */
    float *k[FS_SAM_MAX_DEC_DEPTH + 1];           /* [HW, D] keys entering layer l */
    fs_train_layer_tape L[FS_SAM_MAX_DEC_DEPTH];
    fs_train_attn_tape fin;
    float *f_q, *f_kpe, *r5, *hs;
    float *u0, *u1, *u1g, *u2, *up; /* upscaling */
    float *hy_a1, *hy_r1, *hy_a2, *hy_r2, *hyper; /* [nm, D], .., [nm, D/8] */
    /* backward scratch */
    float *dO, *dQ, *dK, *dV, *dq, *dqpe, *dt, *dk, *dkpe, *dr, *dmh, *dmhr;
    float *du0, *du1, *du1g, *du2, *dup, *dhs, *dhyper, *dh1, *dh2;
    float *lu, *ldu, *lt; /* decoder adapters: [max(T, HW), r] twice, [max(T, HW), D] */
} fs_train_dec;

/* Memory: grads, moments, acts and Dt.mem are in the model's backend memory
 * (fs_sam_mem); so are dlora, lgrad and G. On a device, hgrads and hmoments are
 * their host mirrors and lora the adapters' host copy, synchronised by
 * fs_train_pull/push; on the host they are the same memory. */
struct fs_train {
    fs_sam *m;
    fs_train_config cfg;
    fs_lora lora;  /* host */
    fs_lora dlora; /* what the kernels read: lora itself on the host */
    fs_lora lgrad; /* the adapters' gradients: lora's layout at the start of grads */
    fs_sam_params G;                       /* base-weight gradients (into grads); NULL where frozen */
    fs_train_tensor *t;
    size_t nt, nparams, n_lora, n_dec, n_enc; /* n_enc: image and prompt encoder */
    float *grads, *moments; /* one allocation per role */
    float *hgrads, *hmoments;
    float *acts;
    fs_train_enc E;
    fs_train_dec Dt;
    size_t steps;
    double last_norm;
};

/* encoder_backward.c */
void fs_train_enc_layout(fs_train *t, fs_bump *b, size_t cap);
void fs_train_enc_forward(fs_train *t, const fs_nn_ops *ops, const float *pre, size_t B);
void fs_train_enc_backward(fs_train *t, const fs_nn_ops *ops, size_t B);

/* decoder_backward.c */
void fs_train_dec_layout(fs_train *t, fs_bump *b, size_t T);
int fs_train_dec_reserve(fs_train *t, size_t T);
/* embed[HW, D] of one image, sparse[Ns, D] -> low[n, 16 HW] for mask tokens
 * first .. first+n-1; the tape keeps what backward needs. */
void fs_train_dec_forward(fs_train *t, const fs_nn_ops *ops, const float *embed, const float *sparse, size_t Ns,
                          size_t first, size_t n, float *low);
/* dlow[n, 16 HW] -> decoder gradients (added), dembed[HW, D] += d embed,
 * dsparse[Ns, D] = d sparse tokens (may be NULL); no_mask_embed's gradient
 * is added where t->G binds one. */
void fs_train_dec_backward(fs_train *t, const fs_nn_ops *ops, const float *dlow, float *dembed, float *dsparse);

#endif
