/* LoRA adapters: table, allocation, initialisation, merging. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "sam/lora.h"

static const char *slot_names[FS_LORA_NSLOTS] = {"q", "k", "v", "proj", "lin1", "lin2"};

fs_lora_config fs_lora_default_config(void) { return (fs_lora_config){4, 1.0f, FS_LORA_QV, 0}; }

const char *fs_lora_slot_name(int s) { return s >= 0 && s < FS_LORA_NSLOTS ? slot_names[s] : "?"; }

int fs_lora_parse_targets(const char *s, unsigned *targets) {
    if (!strcmp(s, "qv")) *targets = FS_LORA_QV;
    else if (!strcmp(s, "qkv")) *targets = FS_LORA_QKV;
    else if (!strcmp(s, "all")) *targets = FS_LORA_ALL;
    else if (!strcmp(s, "none")) *targets = 0;
    else {
        unsigned t = 0;
        const char *p = s;
        while (*p) {
            size_t n = strcspn(p, ",");
            int found = -1;
            for (int i = 0; i < FS_LORA_NSLOTS; i++)
                if (strlen(slot_names[i]) == n && !strncmp(p, slot_names[i], n)) found = i;
            if (found < 0)
                return fs_error("LoRA targets '%s': unknown part '%.*s' (expected q, k, v, proj, lin1, lin2, qv, "
                                "qkv, all or none)",
                                s, (int)n, p);
            t |= FS_LORA_BIT(found);
            p += n;
            if (*p == ',') p++;
        }
        if (!t) return fs_error("LoRA targets '%s': empty", s);
        *targets = t;
    }
    return FS_OK;
}

void fs_lora_slot_dims(const fs_sam_config *c, int s, size_t *in, size_t *out) {
    size_t C = c->embed_dim, Hd = C * c->mlp_ratio;
    *in = s == FS_LORA_LIN2 ? Hd : C;
    *out = s == FS_LORA_LIN1 ? Hd : C;
}

/* The tensor name of adapter `which` ('A' or 'B') of slot s in block i. */
static void lora_name(char *buf, size_t n, size_t i, int s, char which) {
    if (s <= FS_LORA_V) snprintf(buf, n, "image_encoder.blocks.%zu.attn.lora.%s_%c", i, slot_names[s], which);
    else if (s == FS_LORA_PROJ) snprintf(buf, n, "image_encoder.blocks.%zu.attn.proj.lora_%c", i, which);
    else snprintf(buf, n, "image_encoder.blocks.%zu.mlp.%s.lora_%c", i, slot_names[s], which);
}

static const char *dec_proj_names[FS_LORA_DEC_NPROJ] = {"q_proj", "k_proj", "v_proj", "out_proj"};
static const char *dec_attn_names[3] = {"self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"};

void fs_lora_dec_dims(const fs_sam_config *c, size_t a, int j, size_t *in, size_t *out) {
    size_t D = c->out_chans;
    /* self-attention keeps the width; the cross attentions and the final one halve it */
    size_t inner = a < 3 * c->dec_depth && a % 3 == 0 ? D : D / 2;
    *in = j == FS_LORA_DEC_OUT ? inner : D;
    *out = j == FS_LORA_DEC_OUT ? D : inner;
}

static void dec_lora_name(char *buf, size_t n, const fs_sam_config *c, size_t a, int j, char which) {
    if (a < 3 * c->dec_depth)
        snprintf(buf, n, "mask_decoder.transformer.layers.%zu.%s.%s.lora_%c", a / 3, dec_attn_names[a % 3],
                 dec_proj_names[j], which);
    else
        snprintf(buf, n, "mask_decoder.transformer.final_attn_token_to_image.%s.lora_%c", dec_proj_names[j], which);
}

static void add_entry(fs_sam_table *t, size_t rank, size_t in, size_t out, int is_b) {
    fs_sam_tensor_info *e = &t->v[t->n++];
    e->ndim = 2;
    e->shape[0] = is_b ? out : rank;
    e->shape[1] = is_b ? rank : in;
    e->numel = e->shape[0] * e->shape[1];
    e->offset = t->total;
    t->total += e->numel;
}

int fs_lora_table_build(fs_sam_table *t, const fs_sam_config *c, const fs_lora_config *lc) {
    memset(t, 0, sizeof *t);
    if ((lc->targets || lc->decoder) && !lc->rank) return fs_error("LoRA rank must be at least 1");
    if (lc->targets & ~(unsigned)FS_LORA_ALL) return fs_error("LoRA targets: unknown bits 0x%x", lc->targets);
    size_t per = 0;
    for (int s = 0; s < FS_LORA_NSLOTS; s++) per += (lc->targets >> s) & 1;
    size_t n_attn = lc->decoder ? 3 * c->dec_depth + 1 : 0;
    size_t n = 2 * per * c->depth + 2 * FS_LORA_DEC_NPROJ * n_attn;
    t->v = calloc(n ? n : 1, sizeof *t->v);
    if (!t->v) return fs_error("out of memory for the LoRA table");
    for (size_t i = 0; i < c->depth; i++)
        for (int s = 0; s < FS_LORA_NSLOTS; s++) {
            if (!(lc->targets & FS_LORA_BIT(s))) continue;
            size_t in, out;
            fs_lora_slot_dims(c, s, &in, &out);
            for (int k = 0; k < 2; k++) {
                lora_name(t->v[t->n].name, sizeof t->v[t->n].name, i, s, k ? 'B' : 'A');
                add_entry(t, lc->rank, in, out, k);
            }
        }
    for (size_t a = 0; a < n_attn; a++)
        for (int j = 0; j < FS_LORA_DEC_NPROJ; j++) {
            size_t in, out;
            fs_lora_dec_dims(c, a, j, &in, &out);
            for (int k = 0; k < 2; k++) {
                dec_lora_name(t->v[t->n].name, sizeof t->v[t->n].name, c, a, j, k ? 'B' : 'A');
                add_entry(t, lc->rank, in, out, k);
            }
        }
    return FS_OK;
}

int fs_lora_alloc(fs_lora *l, const fs_sam_config *c, const fs_lora_config *lc) {
    memset(l, 0, sizeof *l);
    if (fs_lora_table_build(&l->table, c, lc)) return FS_ERR;
    l->cfg = *lc;
    l->depth = c->depth;
    l->arena = calloc(l->table.total ? l->table.total : 1, sizeof *l->arena);
    if (!l->arena) {
        fs_sam_table_free(&l->table);
        return fs_error("out of memory for the LoRA adapters (%zu floats)", l->table.total);
    }
    size_t k = 0;
    for (size_t i = 0; i < c->depth; i++)
        for (int s = 0; s < FS_LORA_NSLOTS; s++) {
            if (!(lc->targets & FS_LORA_BIT(s))) continue;
            l->blocks[i].A[s] = l->arena + l->table.v[k++].offset;
            l->blocks[i].B[s] = l->arena + l->table.v[k++].offset;
        }
    l->n_dec_attn = lc->decoder ? 3 * c->dec_depth + 1 : 0;
    for (size_t a = 0; a < l->n_dec_attn; a++)
        for (int j = 0; j < FS_LORA_DEC_NPROJ; j++) {
            l->dec[a].A[j] = l->arena + l->table.v[k++].offset;
            l->dec[a].B[j] = l->arena + l->table.v[k++].offset;
        }
    return FS_OK;
}

void fs_lora_free(fs_lora *l) {
    fs_sam_table_free(&l->table);
    free(l->arena);
    memset(l, 0, sizeof *l);
}

void fs_lora_init(fs_lora *l, uint64_t seed) {
    for (size_t k = 0; k < l->table.n; k++) {
        const fs_sam_tensor_info *e = &l->table.v[k];
        float *p = l->arena + e->offset;
        int is_b = e->name[strlen(e->name) - 1] == 'B';
        if (is_b) {
            memset(p, 0, e->numel * sizeof *p);
            continue;
        }
        /* kaiming_uniform_(a=sqrt(5)) on [r, in]: bound = 1/sqrt(fan_in) */
        double bound = 1.0 / sqrt((double)e->shape[1]);
        fs_rng r;
        fs_rng_init(&r, seed, 0x4c6f5241ull + k); /* a stream per tensor */
        for (size_t j = 0; j < e->numel; j++) p[j] = (float)fs_rng_range(&r, -bound, bound);
    }
}

/* W[out, in] += scale * B[out, r] A[r, in] */
static void merge_one(float *W, const float *A, const float *B, size_t r, float scale, size_t in, size_t out) {
    for (size_t o = 0; o < out; o++)
        for (size_t k = 0; k < in; k++) {
            double acc = 0;
            for (size_t j = 0; j < r; j++) acc += (double)B[o * r + j] * A[j * in + k];
            W[o * in + k] += (float)(scale * acc);
        }
}

void fs_lora_merge(const fs_lora *l, const fs_sam_config *c, fs_sam_params *p) {
    size_t C = c->embed_dim, r = l->cfg.rank;
    for (size_t a = 0; a < l->n_dec_attn; a++) {
        fs_sam_attn_params *ap = a < 3 * c->dec_depth
                                     ? (a % 3 == 0   ? &p->layers[a / 3].self_attn
                                        : a % 3 == 1 ? &p->layers[a / 3].cross_t2i
                                                     : &p->layers[a / 3].cross_i2t)
                                     : &p->final_attn;
        float *W[FS_LORA_DEC_NPROJ] = {ap->q.w, ap->k.w, ap->v.w, ap->out.w};
        for (int j = 0; j < FS_LORA_DEC_NPROJ; j++) {
            size_t in, out;
            fs_lora_dec_dims(c, a, j, &in, &out);
            merge_one(W[j], l->dec[a].A[j], l->dec[a].B[j], r, l->cfg.scale, in, out);
        }
    }
    for (size_t i = 0; i < l->depth; i++)
        for (int s = 0; s < FS_LORA_NSLOTS; s++) {
            const float *A = l->blocks[i].A[s], *B = l->blocks[i].B[s];
            if (!A) continue;
            size_t in, out;
            fs_lora_slot_dims(c, s, &in, &out);
            fs_sam_block_params *bp = &p->blocks[i];
            float *W = s <= FS_LORA_V ? bp->qkv.w + (size_t)s * C * C
                       : s == FS_LORA_PROJ ? bp->proj.w
                       : s == FS_LORA_LIN1 ? bp->lin1.w
                                           : bp->lin2.w;
            merge_one(W, A, B, r, l->cfg.scale, in, out);
        }
}
