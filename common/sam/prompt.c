/* SAM's prompt encoder: random-Fourier positional encoding of points and
 * box corners (PositionEmbeddingRandom), learned point-type embeddings, and
 * the dense positional encoding of the image grid. Mask prompts are not
 * supported (dense embedding = no_mask_embed). */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "sam/internal.h"

/* out[D] = [sin(2 pi (2u-1, 2v-1) G), cos(...)] for normalised (u, v) in [0, 1],
 * G = positional_encoding_gaussian_matrix [2, D/2] (_pe_encoding). */
static void pe_encode(const fs_sam *m, double u, double v, float *out) {
    size_t half = m->cfg.out_chans / 2;
    const float *G = m->p.pe_gaussian;
    double cu = 2.0 * u - 1.0, cv = 2.0 * v - 1.0;
    for (size_t j = 0; j < half; j++) {
        double a = 2.0 * M_PI * (cu * G[j] + cv * G[half + j]);
        out[j] = (float)sin(a);
        out[half + j] = (float)cos(a);
    }
}

void fs_sam_dense_pe(const fs_sam *m, float *pe) {
    size_t g = fs_sam_grid(&m->cfg), D = m->cfg.out_chans;
    for (size_t y = 0; y < g; y++)
        for (size_t x = 0; x < g; x++)
            pe_encode(m, ((double)x + 0.5) / (double)g, ((double)y + 0.5) / (double)g, pe + (y * g + x) * D);
}

size_t fs_sam_sparse_count(const fs_sam_prompt *pr) {
    if (!pr) return 0;
    size_t n = 0;
    if (pr->n_points) n += pr->n_points + (pr->box ? 0 : 1);
    if (pr->box) n += 2;
    return n;
}

static void add_vec(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

int fs_sam_embed_prompt(const fs_sam *m, const fs_sam_prompt *pr, float *sparse) {
    if (!pr) return FS_OK;
    size_t D = m->cfg.out_chans;
    double S = (double)m->cfg.img_size; /* input_image_size: (S, S) */
    float *t = sparse;
    if (pr->n_points) {
        for (size_t i = 0; i < pr->n_points; i++, t += D) {
            int lab = pr->labels[i];
            if (lab < -1 || lab > 1) return fs_error("point %zu has label %d (expected 1, 0 or -1)", i, lab);
            if (lab == -1) {
                /* the positional encoding is zeroed, then not_a_point_embed added */
                memcpy(t, m->p.not_a_point, D * sizeof *t);
                continue;
            }
            /* +0.5: pixel centres */
            pe_encode(m, ((double)pr->points[2 * i] + 0.5) / S, ((double)pr->points[2 * i + 1] + 0.5) / S, t);
            add_vec(t, m->p.point_embed[lab], D);
        }
        if (!pr->box) { /* padding point (label -1) when there is no box */
            memcpy(t, m->p.not_a_point, D * sizeof *t);
            t += D;
        }
    }
    if (pr->box) {
        for (int k = 0; k < 2; k++, t += D) {
            pe_encode(m, ((double)pr->box[2 * k] + 0.5) / S, ((double)pr->box[2 * k + 1] + 0.5) / S, t);
            add_vec(t, m->p.point_embed[2 + k], D);
        }
    }
    return FS_OK;
}
