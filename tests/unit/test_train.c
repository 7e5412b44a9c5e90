/* train: the losses' values and gradients (against finite differences),
 * AdamW against a hand-computed step, clipping and SAMed's schedule, LoRA
 * targets and names, LoRA with zero B giving exactly the base model's
 * forward, merged adapters, the decoder frozen, and the trainable parameter
 * counts of ViT-B, full training (every base weight and the prompt
 * embeddings against finite differences), random initialisation and
 * export, and the decoder with LoRA (zero B exact, adapter gradients
 * against finite differences, merging and the checkpoint). The full backward pass is checked against the official
 * gradients by tests/e2e/golden_train.sh. */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/nn.h"
#include "sam/adamw.h"
#include "sam/ckpt.h"
#include "sam/init.h"
#include "sam/lora.h"
#include "sam/loss.h"
#include "sam/sam.h"
#include "sam/train.h"

static void loss_prompted_values(void) {
    /* logits 0: p = 1/2 everywhere; bce = log 2; dice = 1 - (2*0.5 + s) / (0.5 + 1 + s) */
    float x[2] = {0, 0}, t[2] = {1, 0}, d[2];
    fs_loss_value v;
    fs_loss_prompted(x, t, 1, 2, fs_loss_default_weights(), &v, d);
    double s = 1e-5, dice = 1 - (1 + s) / (1.5 + s);
    CHECK_NEAR(v.xent, log(2.0), 1e-12);
    CHECK_NEAR(v.dice, dice, 1e-12);
    CHECK_NEAR(v.total, 0.2 * log(2.0) + 0.8 * dice, 1e-12);
    /* large logits stay finite */
    float big[2] = {200, -200};
    fs_loss_prompted(big, t, 1, 2, fs_loss_default_weights(), &v, d);
    CHECK(isfinite(v.total) && v.xent < 1e-12 && isfinite(d[0]) && isfinite(d[1]));
}

/* Central differences of f at every element of x[n] against g[n]. */
typedef double (*loss_fn)(const float *x, void *ctx);

static double max_fd_err(loss_fn f, void *ctx, float *x, const float *g, size_t n, double *gmax) {
    double worst = 0;
    *gmax = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i], h = 1e-2f;
        x[i] = x0 + h;
        double fp = f(x, ctx);
        x[i] = x0 - h;
        double fm = f(x, ctx);
        x[i] = x0;
        double fd = (fp - fm) / (2.0 * h), e = fabs(fd - g[i]);
        if (e > worst) worst = e;
        if (fabs(g[i]) > *gmax) *gmax = fabs(g[i]);
    }
    return worst;
}

typedef struct {
    const float *t;
    const int *lab;
    size_t N, K, HW;
} loss_ctx;

static double prompted_f(const float *x, void *ctx) {
    loss_ctx *c = ctx;
    fs_loss_value v;
    fs_loss_prompted(x, c->t, c->N, c->HW, fs_loss_default_weights(), &v, NULL);
    return v.total;
}

static double semantic_f(const float *x, void *ctx) {
    loss_ctx *c = ctx;
    fs_loss_value v;
    fs_loss_semantic(x, c->lab, c->N, c->K, c->HW, fs_loss_default_weights(), &v, NULL);
    return v.total;
}

static void loss_prompted_grad(void) {
    enum { N = 3, HW = 16 };
    float x[N * HW], t[N * HW], g[N * HW];
    fs_rng r;
    fs_rng_init(&r, 7, 1);
    for (size_t i = 0; i < N * HW; i++) {
        x[i] = (float)fs_rng_range(&r, -3, 3);
        t[i] = fs_rng_uniform(&r) < 0.4 ? 1.0f : 0.0f;
    }
    fs_loss_value v;
    fs_loss_prompted(x, t, N, HW, fs_loss_default_weights(), &v, g);
    loss_ctx c = {t, NULL, N, 1, HW};
    double gmax, err = max_fd_err(prompted_f, &c, x, g, N * HW, &gmax);
    CHECKF(err <= 1e-4 * gmax + 1e-7, "fd error %g (max grad %g)", err, gmax);
    CHECK(gmax > 1e-4);
}

static void loss_semantic_values(void) {
    /* uniform logits over K = 2 classes, one pixel of each class: CE = log 2;
     * per class sum(s t) = 1/2, sum(s^2) = 1/2, sum(t^2) = 1 */
    float x[4] = {0, 0, 0, 0}, d[4];
    int lab[2] = {0, 1};
    fs_loss_value v;
    CHECK(fs_loss_semantic(x, lab, 1, 2, 2, fs_loss_default_weights(), &v, d) == 0);
    double s = 1e-5, dice = 1 - (1 + s) / (1.5 + s);
    CHECK_NEAR(v.xent, log(2.0), 1e-12);
    CHECK_NEAR(v.dice, dice, 1e-12);
    int bad[2] = {0, 2};
    CHECK(fs_loss_semantic(x, bad, 1, 2, 2, fs_loss_default_weights(), &v, d) == -1);
}

static void loss_semantic_grad(void) {
    enum { B = 2, K = 3, HW = 10 };
    float x[B * K * HW], g[B * K * HW];
    int lab[B * HW];
    fs_rng r;
    fs_rng_init(&r, 9, 2);
    for (size_t i = 0; i < B * K * HW; i++) x[i] = (float)fs_rng_range(&r, -2, 2);
    for (size_t i = 0; i < B * HW; i++) lab[i] = (int)fs_rng_below(&r, K);
    fs_loss_value v;
    CHECK(fs_loss_semantic(x, lab, B, K, HW, fs_loss_default_weights(), &v, g) == 0);
    loss_ctx c = {NULL, lab, B, K, HW};
    double gmax, err = max_fd_err(semantic_f, &c, x, g, B * K * HW, &gmax);
    CHECKF(err <= 1e-4 * gmax + 1e-7, "fd error %g (max grad %g)", err, gmax);
    CHECK(gmax > 1e-4);
}

/* The AdamW the training step runs on the host (the cpu backend's). */
static void adamw_hand(void) {
    fs_adamw_config c = fs_adamw_defaults(0.1f, 0.01f);
    const double hyper[5] = {c.lr, c.beta1, c.beta2, c.eps, c.weight_decay};
    float p = 1.0f, m = 0, v = 0, g1 = 0.5f, g2 = -0.25f;
    fs_nn_cpu.adamw_update(&p, &g1, &m, &v, 1, hyper, 1);
    /* decay 1 - 0.1*0.01; m_hat = g, v_hat = g^2: the step is lr * g / (|g| + eps) */
    double p1 = 1.0 * (1 - 0.001) - 0.1 * 0.5 / (0.5 + 1e-8);
    CHECK_NEAR(p, p1, 1e-7);
    fs_nn_cpu.adamw_update(&p, &g2, &m, &v, 1, hyper, 2);
    double m2 = 0.9 * 0.05 + 0.1 * -0.25, v2 = 0.999 * 0.00025 + 0.001 * 0.0625;
    double mh = m2 / (1 - 0.81), vh = v2 / (1 - 0.999 * 0.999);
    double p2 = p1 * (1 - 0.001) - 0.1 * mh / (sqrt(vh) + 1e-8);
    CHECK_NEAR(m, m2, 1e-8); /* m and v are stored as float */
    CHECK_NEAR(v, v2, 1e-10);
    CHECK_NEAR(p, p2, 1e-6);
}

static void clip_and_schedule(void) {
    CHECK(fs_grad_clip_factor(0.5, 1.0f) == 1.0f);
    CHECK(fs_grad_clip_factor(5.0, 0) == 1.0f);
    CHECK_NEAR(fs_grad_clip_factor(4.0, 1.0f), 1.0 / (4.0 + 1e-6), 1e-7);
    float g[3] = {3, 4, 0};
    CHECK_NEAR(fs_nn_cpu.sumsq(g, 3), 25.0, 1e-12);
    CHECK_NEAR(fs_lr_samed(0.005, 0, 250, 1000), 0.005 / 250, 1e-9);
    CHECK_NEAR(fs_lr_samed(0.005, 249, 250, 1000), 0.005, 1e-9);
    CHECK_NEAR(fs_lr_samed(0.005, 250, 250, 1000), 0.005, 1e-9);
    CHECK_NEAR(fs_lr_samed(0.005, 750, 250, 1000), 0.005 * pow(0.5, 0.9), 1e-8);
    CHECK(fs_lr_samed(0.005, 5000, 250, 1000) == 0.0);
    CHECK_NEAR(fs_lr_samed(0.005, 500, 0, 1000), 0.005 * pow(0.5, 0.9), 1e-8);
}

static void lora_targets(void) {
    unsigned t;
    CHECK(fs_lora_parse_targets("qv", &t) == FS_OK && t == FS_LORA_QV);
    CHECK(fs_lora_parse_targets("q,k,v", &t) == FS_OK && t == FS_LORA_QKV);
    CHECK(fs_lora_parse_targets("all", &t) == FS_OK && t == FS_LORA_ALL);
    CHECK(fs_lora_parse_targets("proj,lin2", &t) == FS_OK &&
          t == (FS_LORA_BIT(FS_LORA_PROJ) | FS_LORA_BIT(FS_LORA_LIN2)));
    CHECK(fs_lora_parse_targets("q,x", &t) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "'x'") != NULL);
    fs_sam_config c;
    CHECK(fs_sam_config_preset(&c, "vit_b") == FS_OK);
    fs_lora_config lc = {4, 1.0f, FS_LORA_ALL, 0};
    fs_sam_table tb;
    CHECK(fs_lora_table_build(&tb, &c, &lc) == FS_OK);
    CHECK(tb.n == 12 * 6 * 2);
    CHECK(!strcmp(tb.v[0].name, "image_encoder.blocks.0.attn.lora.q_A"));
    CHECK(tb.v[0].shape[0] == 4 && tb.v[0].shape[1] == 768);
    CHECK(!strcmp(tb.v[7].name, "image_encoder.blocks.0.attn.proj.lora_B"));
    CHECK(!strcmp(tb.v[9].name, "image_encoder.blocks.0.mlp.lin1.lora_B") && tb.v[9].shape[0] == 3072);
    CHECK(!strcmp(tb.v[10].name, "image_encoder.blocks.0.mlp.lin2.lora_A") && tb.v[10].shape[1] == 3072);
    fs_sam_table_free(&tb);
}

static void counts_vit_b(void) {
    fs_sam_config c;
    CHECK(fs_sam_config_preset(&c, "vit_b") == FS_OK);
    fs_train_config tc;
    fs_train_config_default(&tc);
    size_t lora, dec;
    fs_train_count_params(&c, &tc, &lora, &dec);
    CHECKF(lora == 147456, "%zu", lora);
    CHECKF(dec == 4058340, "%zu", dec);
    tc.decoder = FS_TRAIN_DECODER_FROZEN;
    fs_train_count_params(&c, &tc, &lora, &dec);
    CHECK(lora == 147456 && dec == 0);
}

static char tiny_path[512];

static fs_sam *load_tiny(void) {
    snprintf(tiny_path, sizeof tiny_path, "%s/golden/tiny.safetensors", test_shared_dir());
    FILE *f = fopen(tiny_path, "rb");
    if (!f) return NULL;
    fclose(f);
    fs_sam *m;
    return fs_sam_load(&m, tiny_path, 0) == FS_OK ? m : NULL;
}

/* tiny, and the training configuration most tests start from (batch 2). */
static fs_sam *load_tiny_batch2(fs_train_config *tc) {
    fs_train_config_default(tc);
    tc->batch = 2;
    return load_tiny();
}

/* The central difference of t's loss on b in element k of x, step h. */
static double loss_fd(fs_train *t, const fs_train_batch *b, fs_train_tensor *x, size_t k, float h, int *rc) {
    float p0 = x->param[k];
    fs_loss_value lp, lm;
    x->param[k] = p0 + h;
    *rc |= fs_train_loss(t, &fs_nn_ref, b, &lp);
    x->param[k] = p0 - h;
    *rc |= fs_train_loss(t, &fs_nn_ref, b, &lm);
    x->param[k] = p0;
    return (lp.total - lm.total) / (2.0 * (double)h);
}

/* The element of x with the largest gradient in magnitude, but for skip
 * (SIZE_MAX: none). */
static size_t largest_grad(const fs_train_tensor *x, size_t skip) {
    size_t best = skip == 0 ? 1 : 0;
    for (size_t k = best + 1; k < x->numel; k++)
        if (k != skip && fabsf(x->grad[k]) > fabsf(x->grad[best])) best = k;
    return best;
}

/* tiny's inputs: 2 random preprocessed images, prompt-free labels */
typedef struct {
    float img[2 * 3 * 64 * 64];
    int lab[2 * 32 * 32];
    float logits[2 * 4 * 32 * 32];
} tiny_batch;

static void make_batch(tiny_batch *tb, fs_train_batch *b) {
    fs_rng r;
    fs_rng_init(&r, 3, 3);
    for (size_t i = 0; i < sizeof tb->img / sizeof *tb->img; i++) tb->img[i] = (float)fs_rng_range(&r, -2, 2);
    for (size_t i = 0; i < 2 * 32 * 32; i++) tb->lab[i] = (int)((i / 32 / 8 + i % 32 / 8) % 4);
    memset(b, 0, sizeof *b);
    b->images = tb->img;
    b->n_images = 2;
    b->labels = tb->lab;
    b->logits_out = tb->logits;
}

/* The reference forward pass: fs_sam_encode + fs_sam_decode of every mask. */
static int base_logits(fs_sam *m, const float *img, float *out) {
    float embed[2 * 8 * 8 * 32], iou[4];
    if (fs_sam_encode(m, &fs_nn_ref, img, 2, embed)) return FS_ERR;
    for (size_t b = 0; b < 2; b++)
        if (fs_sam_decode(m, &fs_nn_ref, embed + b * 64 * 32, NULL, FS_SAM_MASKS_ALL, out + b * 4 * 1024, iou, NULL))
            return FS_ERR;
    return FS_OK;
}

static tiny_batch tb;
static float ref_logits[2 * 4 * 32 * 32];

static void lora_zero_b_exact(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.lora.targets = FS_LORA_ALL;
    tc.seed = 11;
    fs_train *t;
    fs_log_set_level(FS_LOG_WARN);
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_train_batch b;
    make_batch(&tb, &b);
    fs_loss_value v;
    int rc = fs_train_loss(t, &fs_nn_ref, &b, &v);
    int rc2 = base_logits(m, tb.img, ref_logits);
    /* A is random, B zero */
    fs_train_tensor *a = fs_train_find(t, "image_encoder.blocks.2.mlp.lin1.lora_A");
    fs_train_tensor *bb = fs_train_find(t, "image_encoder.blocks.2.mlp.lin1.lora_B");
    int a_nonzero = a && a->param[0] != 0 && fabsf(a->param[5]) <= 1.0f / sqrtf(32.0f);
    int b_zero = bb && bb->param[0] == 0;
    size_t diff = 0;
    for (size_t i = 0; i < 2 * 4 * 1024; i++) diff += tb.logits[i] != ref_logits[i];
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc == FS_OK && rc2 == FS_OK);
    CHECK(a_nonzero && b_zero);
    CHECKF(diff == 0, "%zu logits differ", diff);
}

/* Non-zero adapters folded into the weights give the adapted forward pass. */
static void lora_merge(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.lora.targets = FS_LORA_ALL;
    tc.lora.scale = 0.5f;
    fs_train *t;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_rng r;
    fs_rng_init(&r, 5, 5);
    for (size_t i = 0; i < fs_train_tensor_count(t); i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i);
        if (strncmp(x->name, "image_encoder.", 14)) continue;
        for (size_t k = 0; k < x->numel; k++) x->param[k] = (float)fs_rng_range(&r, -0.3, 0.3);
    }
    fs_train_batch b;
    make_batch(&tb, &b);
    fs_loss_value v;
    int rc = fs_train_loss(t, &fs_nn_ref, &b, &v);
    fs_lora_merge(fs_train_lora(t), &m->cfg, &m->p);
    int rc2 = base_logits(m, tb.img, ref_logits);
    double err = 0, mx = 0;
    for (size_t i = 0; i < 2 * 4 * 1024; i++) {
        err = fmax(err, fabs((double)tb.logits[i] - ref_logits[i]));
        mx = fmax(mx, fabs((double)ref_logits[i]));
    }
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc == FS_OK && rc2 == FS_OK);
    CHECKF(err <= 1e-4 * (1 + mx), "merged forward differs by %g (max %g)", err, mx);
}

/* The decoder frozen: only the adapters are trainable, and their gradients
 * are those of the full mode; AdamW moves them. */
static void decoder_frozen(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.seed = 1;
    fs_train *full, *frozen;
    CHECKF(fs_train_create(&full, m, &tc) == FS_OK, "%s", fs_error_msg());
    tc.decoder = FS_TRAIN_DECODER_FROZEN;
    CHECKF(fs_train_create(&frozen, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_train_batch b;
    make_batch(&tb, &b);
    /* B non-zero so that A gets gradients too */
    for (size_t i = 0; i < fs_train_tensor_count(full); i++) {
        fs_train_tensor *x = fs_train_tensor_at(full, i), *y;
        if (strncmp(x->name, "image_encoder.", 14)) continue;
        for (size_t k = 0; k < x->numel; k++) x->param[k] = 0.05f * (float)((k * 7 + i) % 11) - 0.25f;
        y = fs_train_find(frozen, x->name);
        if (y) memcpy(y->param, x->param, x->numel * sizeof *x->param);
    }
    fs_loss_value v1, v2;
    fs_train_zero_grad(full);
    fs_train_zero_grad(frozen);
    int rc1 = fs_train_forward_backward(full, &fs_nn_ref, &b, &v1);
    int rc2 = fs_train_forward_backward(frozen, &fs_nn_ref, &b, &v2);
    size_t n_frozen = fs_train_tensor_count(frozen), diff = 0;
    double gsum = 0;
    for (size_t i = 0; i < n_frozen; i++) {
        fs_train_tensor *y = fs_train_tensor_at(frozen, i), *x = fs_train_find(full, y->name);
        for (size_t k = 0; x && k < y->numel; k++) {
            diff += x->grad[k] != y->grad[k];
            gsum += fabs(y->grad[k]);
        }
    }
    fs_train_tensor *y0 = fs_train_tensor_at(frozen, 0);
    float before = y0->param[0];
    fs_train_step(frozen, 1e-3f);
    int moved = y0->param[0] != before && fs_train_steps(frozen) == 1;
    size_t params = fs_train_param_count(frozen);
    fs_train_free(full);
    fs_train_free(frozen);
    fs_sam_free(m);
    CHECK(rc1 == FS_OK && rc2 == FS_OK);
    CHECK(v1.total == v2.total);
    CHECKF(n_frozen == 16 && params == 2048, "%zu tensors, %zu parameters", n_frozen, params);
    CHECKF(diff == 0 && gsum > 0, "%zu gradients differ, sum %g", diff, gsum);
    CHECK(moved);
}

/* Every adapter slot (q, k, v, proj, lin1, lin2), in a windowed and a
 * global block, against central differences of the loss (the golden files
 * cover q and v only). */
static void lora_all_fd(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.lora.targets = FS_LORA_ALL;
    tc.decoder = FS_TRAIN_DECODER_FROZEN;
    tc.seed = 4;
    fs_train *t;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_rng r;
    fs_rng_init(&r, 8, 8);
    for (size_t i = 0; i < fs_train_tensor_count(t); i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i);
        for (size_t k = 0; k < x->numel; k++) x->param[k] = (float)fs_rng_range(&r, -0.5, 0.5);
    }
    fs_train_batch b;
    make_batch(&tb, &b);
    b.logits_out = NULL;
    fs_loss_value v;
    fs_train_zero_grad(t);
    int rc = fs_train_forward_backward(t, &fs_nn_ref, &b, &v);
    double worst = 0;
    char worst_name[128] = "";
    size_t checked = 0;
    for (size_t i = 0; rc == FS_OK && i < fs_train_tensor_count(t); i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i);
        if (strncmp(x->name, "image_encoder.blocks.1.", 23) && strncmp(x->name, "image_encoder.blocks.2.", 23)) continue;
        size_t best = largest_grad(x, SIZE_MAX);
        double fd = loss_fd(t, &b, x, best, 2e-2f, &rc), g = x->grad[best];
        double rel = fabs(fd - g) / fabs(g);
        if (rel > worst) {
            worst = rel;
            snprintf(worst_name, sizeof worst_name, "%s[%zu]: fd %g grad %g", x->name, best, fd, g);
        }
        checked++;
    }
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc == FS_OK);
    CHECK(checked == 24);
    CHECKF(worst <= 2e-2, "relative error %g at %s", worst, worst_name);
}

static void bad_batches(void) {
    fs_sam *m = load_tiny();
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    fs_train_config tc;
    fs_train_config_default(&tc);
    fs_train *t;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_train_batch b;
    make_batch(&tb, &b);
    fs_loss_value v;
    int rc1 = fs_train_loss(t, &fs_nn_ref, &b, &v); /* 2 images, batch 1 */
    char msg1[256];
    snprintf(msg1, sizeof msg1, "%s", fs_error_msg());
    b.n_images = 1;
    tb.lab[5] = 9;
    int rc2 = fs_train_loss(t, &fs_nn_ref, &b, &v);
    char msg2[256];
    snprintf(msg2, sizeof msg2, "%s", fs_error_msg());
    int rc3 = FS_OK;
    if (!fs_train_backend_ok(&fs_nn_cpu)) rc3 = fs_train_forward_backward(t, &fs_nn_cpu, &b, &v);
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc1 == FS_ERR && strstr(msg1, "batch size 1"));
    CHECK(rc2 == FS_ERR && strstr(msg2, "label 9"));
    CHECK(fs_train_backend_ok(&fs_nn_ref));
    CHECK(rc3 == FS_ERR || fs_train_backend_ok(&fs_nn_cpu));
}

/* Full training: every encoder weight kind (patch embedding, pos_embed,
 * norms, rel-pos tables of a windowed and a global block, qkv/proj/MLP
 * weights and biases, the neck) and the prompt embeddings (positive and
 * negative point, box corners, not-a-point, no-mask) against central
 * differences, on prompted sets with points, a padding point and boxes. */
static void full_fd(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.encoder = FS_TRAIN_ENCODER_FULL;
    fs_train *t;
    CHECK(fs_train_create(&t, m, &tc) == FS_ERR && strstr(fs_error_msg(), "LoRA")); /* adapters need lora */
    tc.lora.targets = 0;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    /* the Gaussian matrix is a buffer; the mask downscaling and IoU head never see a loss */
    CHECK(!fs_train_find(t, "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"));
    fs_train_tensor *md = fs_train_find(t, "prompt_encoder.mask_downscaling.0.weight");
    CHECK(md && !md->in_graph);
    CHECK(fs_train_find(t, "image_encoder.pos_embed") && fs_train_find(t, "mask_decoder.iou_token.weight"));
    size_t want = 0;
    for (size_t i = 0; i < m->p.table.n; i++)
        if (!strstr(m->p.table.v[i].name, "positional_encoding_gaussian_matrix")) want += m->p.table.v[i].numel;
    CHECK(fs_train_param_count(t) == want);

    fs_rng r;
    fs_rng_init(&r, 5, 5);
    static float tgt[3 * 32 * 32];
    for (size_t i = 0; i < 3 * 32 * 32; i++) {
        size_t k = i / 1024, y = i / 32 % 32, x = i % 32;
        tgt[i] = (x / 8 + y / 8 + k) % 3 == 0;
    }
    float pts0[4] = {10, 12, 40, 30}, pts1[2] = {30, 33}, box1[4] = {5, 6, 50, 44}, box2[4] = {20, 3, 60, 28};
    int lab0[2] = {1, 0}, lab1[1] = {1};
    fs_sam_prompt pr[3] = {{pts0, lab0, 2, NULL}, {pts1, lab1, 1, box1}, {NULL, NULL, 0, box2}};
    size_t item_image[3] = {0, 1, 0};
    fs_train_batch b;
    make_batch(&tb, &b);
    b.labels = NULL;
    b.logits_out = NULL;
    b.prompts = pr;
    b.item_image = item_image;
    b.n_items = 3;
    b.targets = tgt;
    fs_loss_value v;
    fs_train_zero_grad(t);
    int rc = fs_train_forward_backward(t, &fs_nn_ref, &b, &v);
    static const char *const names[] = {
        "image_encoder.patch_embed.proj.weight", "image_encoder.patch_embed.proj.bias", "image_encoder.pos_embed",
        "image_encoder.blocks.0.norm1.weight", "image_encoder.blocks.0.norm1.bias",
        "image_encoder.blocks.0.attn.rel_pos_h", "image_encoder.blocks.0.attn.qkv.weight",
        "image_encoder.blocks.1.attn.rel_pos_w", "image_encoder.blocks.1.attn.qkv.bias",
        "image_encoder.blocks.2.attn.proj.weight", "image_encoder.blocks.2.attn.proj.bias",
        "image_encoder.blocks.2.norm2.weight", "image_encoder.blocks.3.mlp.lin1.bias",
        "image_encoder.blocks.3.mlp.lin2.weight", "image_encoder.neck.0.weight", "image_encoder.neck.1.bias",
        "image_encoder.neck.2.weight", "image_encoder.neck.3.weight", "prompt_encoder.point_embeddings.0.weight",
        "prompt_encoder.point_embeddings.1.weight", "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.point_embeddings.3.weight", "prompt_encoder.not_a_point_embed.weight",
        "prompt_encoder.no_mask_embed.weight", "mask_decoder.mask_tokens.weight"};
    size_t nn = sizeof names / sizeof *names, checked = 0;
    double worst = 0;
    char worst_name[160] = "";
    for (size_t i = 0; rc == FS_OK && i < nn; i++) {
        fs_train_tensor *x = fs_train_find(t, names[i]);
        if (!x) {
            snprintf(worst_name, sizeof worst_name, "%s is not trainable", names[i]);
            worst = 1e9;
            break;
        }
        size_t best = largest_grad(x, SIZE_MAX);
        double fd = loss_fd(t, &b, x, best, 1e-2f * fmaxf(1.0f, fabsf(x->param[best])), &rc), g = x->grad[best];
        double rel = fabs(fd - g) / fmax(fabs(g), 1e-4);
        if (rel > worst) {
            worst = rel;
            snprintf(worst_name, sizeof worst_name, "%s[%zu]: fd %g grad %g", x->name, best, fd, g);
        }
        checked += g != 0;
    }
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc == FS_OK);
    CHECKF(checked == nn, "%zu of %zu gradients non-zero (%s)", checked, nn, worst_name);
    CHECKF(worst <= 3e-2, "relative error %g at %s", worst, worst_name);
}

/* A model from keys, initialised at random, exported, and read back by
 * fs_sam_load: the same configuration and bit-identical tensors. */
static void random_init_export(void) {
    const char *k[] = {"img_size", "patch_size", "embed_dim", "depth", "num_heads", "window_size", "global_attn",
                       "out_chans", "dec_mlp_dim", "dec_heads", "iou_hidden", "mask_in_chans"};
    const char *v[] = {"32", "8", "16", "2", "2", "2", "1", "16", "32", "2", "16", "4"};
    fs_sam_config c, bad;
    CHECKF(fs_sam_config_from_keys(&c, k, v, 12) == FS_OK, "%s", fs_error_msg());
    CHECK(c.img_size == 32 && c.depth == 2 && !c.global_attn[0] && c.global_attn[1] && c.dec_depth == 2);
    CHECK(fs_sam_config_from_keys(&bad, k, v, 6) == FS_ERR && strstr(fs_error_msg(), "global_attn"));
    const char *kx[] = {"embed_dims"}, *vx[] = {"4"};
    CHECK(fs_sam_config_from_keys(&bad, kx, vx, 1) == FS_ERR && strstr(fs_error_msg(), "embed_dims"));
    fs_sam *a, *b2, *a2;
    CHECKF(fs_sam_create_random(&a, &c, 7) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_sam_create_random(&a2, &c, 8) == FS_OK);
    /* the official-like starting values */
    CHECK(a->p.norm_final_w[0] == 1.0f && a->p.blocks[0].qkv.b[3] == 0.0f && a->p.blocks[1].rel_pos_h[0] == 0.0f);
    double ss = 0, mx = 0;
    size_t n = 16 * 3 * 8 * 8;
    for (size_t i = 0; i < n; i++) {
        ss += (double)a->p.patch.w[i] * a->p.patch.w[i];
        mx = fmax(mx, fabs(a->p.patch.w[i]));
    }
    CHECKF(fabs(sqrt(ss / n) - 0.0176) < 0.002 && mx <= 0.04, "patch weights: rms %g, max %g", sqrt(ss / n), mx);
    CHECK(fabsf(a->p.pe_gaussian[0]) > 0 && a->p.patch.w[0] != a2->p.patch.w[0]);
    char path[512];
    snprintf(path, sizeof path, "%s/random.safetensors", test_tmp_dir("train_export"));
    const char *mk[] = {"recipe"}, *mv[] = {"unit test"};
    CHECKF(fs_sam_export(path, a, mk, mv, 1) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_sam_export(path, a, k, v, 1) == FS_ERR && strstr(fs_error_msg(), "img_size"));
    CHECKF(fs_sam_load(&b2, path, 0) == FS_OK, "%s", fs_error_msg());
    CHECK(b2->cfg.img_size == 32 && b2->cfg.embed_dim == 16 && b2->cfg.dec_heads == 2 && b2->cfg.global_attn[1] &&
          !b2->cfg.global_attn[0] && b2->cfg.window_size == 2 && b2->cfg.mask_in_chans == 4);
    CHECK(b2->p.table.total == a->p.table.total &&
          !memcmp(b2->p.arena, a->p.arena, a->p.table.total * sizeof(float)));
    fs_sam_free(a);
    fs_sam_free(a2);
    fs_sam_free(b2);
}

/* ---- the decoder with LoRA ---- */

/* Random values in [-a, a] for every decoder adapter of t. */
static void randomise_dec_adapters(fs_train *t, uint64_t seed, double a) {
    fs_rng r;
    fs_rng_init(&r, seed, seed);
    for (size_t i = 0; i < fs_train_tensor_count(t); i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i);
        if (strncmp(x->name, "mask_decoder.", 13)) continue;
        for (size_t k = 0; k < x->numel; k++) x->param[k] = (float)fs_rng_range(&r, -a, a);
    }
}

/* B zero: the decoder-LoRA model's logits are the frozen decoder's, bit for
 * bit; only adapters are trainable (the encoder's and the decoder's). */
static void decoder_lora_zero_b(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.seed = 6;
    tc.decoder = FS_TRAIN_DECODER_FROZEN;
    fs_train *frozen, *lora;
    CHECKF(fs_train_create(&frozen, m, &tc) == FS_OK, "%s", fs_error_msg());
    tc.decoder = FS_TRAIN_DECODER_LORA;
    CHECKF(fs_train_create(&lora, m, &tc) == FS_OK, "%s", fs_error_msg());
    fs_train_batch b;
    make_batch(&tb, &b);
    fs_loss_value v1, v2;
    int rc = fs_train_loss(frozen, &fs_nn_ref, &b, &v1);
    memcpy(ref_logits, tb.logits, sizeof ref_logits);
    rc |= fs_train_loss(lora, &fs_nn_ref, &b, &v2);
    size_t diff = 0;
    for (size_t i = 0; i < 2 * 4 * 1024; i++) diff += tb.logits[i] != ref_logits[i];
    fs_train_tensor *a = fs_train_find(lora, "mask_decoder.transformer.layers.1.cross_attn_image_to_token.v_proj.lora_A");
    fs_train_tensor *bb = fs_train_find(lora, "mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_B");
    int shapes = a && a->shape[0] == 4 && a->shape[1] == 32 && bb && bb->shape[0] == 32 && bb->shape[1] == 4;
    int a_nonzero = a && a->param[0] != 0, b_zero = bb && bb->param[0] == 0 && bb->param[127] == 0;
    int no_base = !fs_train_find(lora, "mask_decoder.iou_token.weight") &&
                  !fs_train_find(lora, "mask_decoder.transformer.layers.0.self_attn.q_proj.weight");
    /* 7 attention modules x 4 projections x (A, B) on top of the encoder's */
    size_t nt = fs_train_tensor_count(lora) - fs_train_tensor_count(frozen);
    size_t np = fs_train_param_count(lora) - fs_train_param_count(frozen), lc, dc;
    fs_train_count_params(&m->cfg, &tc, &lc, &dc);
    fs_train_free(frozen);
    fs_train_free(lora);
    fs_sam_free(m);
    CHECK(rc == FS_OK && v1.total == v2.total);
    CHECKF(diff == 0, "%zu logits differ", diff);
    CHECK(shapes && a_nonzero && b_zero && no_base);
    CHECKF(nt == 56 && np == 5888 && dc == 5888, "%zu tensors, %zu parameters, counted %zu", nt, np, dc);
}

/* The decoder adapters' gradients against central differences: A and B of
 * layer 0's self-attention q_proj, the token-to-image k_proj and the final
 * attention's out_proj. */
static void decoder_lora_fd(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    tc.encoder = FS_TRAIN_ENCODER_FROZEN;
    tc.lora.targets = 0;
    tc.decoder = FS_TRAIN_DECODER_LORA;
    fs_train *t;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    randomise_dec_adapters(t, 9, 0.3);
    fs_train_batch b;
    make_batch(&tb, &b);
    b.logits_out = NULL;
    fs_loss_value v;
    fs_train_zero_grad(t);
    int rc = fs_train_forward_backward(t, &fs_nn_ref, &b, &v);
    static const char *const names[] = {
        "mask_decoder.transformer.layers.0.self_attn.q_proj.lora_A",
        "mask_decoder.transformer.layers.0.self_attn.q_proj.lora_B",
        "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.lora_A",
        "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.lora_B",
        "mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_A",
        "mask_decoder.transformer.final_attn_token_to_image.out_proj.lora_B",
    };
    double worst = 0;
    char worst_name[160] = "";
    size_t checked = 0;
    for (size_t i = 0; rc == FS_OK && i < sizeof names / sizeof *names; i++) {
        fs_train_tensor *x = fs_train_find(t, names[i]);
        if (!x) break;
        /* the two largest gradients of each tensor */
        size_t best[2];
        best[0] = largest_grad(x, SIZE_MAX);
        best[1] = largest_grad(x, best[0]);
        for (int e = 0; e < 2; e++) {
            size_t k = best[e];
            double fd = loss_fd(t, &b, x, k, 1e-2f, &rc), g = x->grad[k];
            double rel = fabs(fd - g) / fmax(fabs(g), 1e-6);
            if (rel > worst) {
                worst = rel;
                snprintf(worst_name, sizeof worst_name, "%s[%zu]: fd %g grad %g", x->name, k, fd, g);
            }
            checked++;
        }
    }
    fs_train_free(t);
    fs_sam_free(m);
    CHECK(rc == FS_OK);
    CHECKF(checked == 12, "%zu elements checked", checked);
    CHECKF(worst <= 2e-2, "relative error %g at %s", worst, worst_name);
}

/* Non-zero decoder adapters folded into the decoder's weights give the
 * adapted logits through the inference path, both directly and through a
 * checkpoint applied to a fresh model (what `predictor --lora` does); a
 * resumed state reads the adapters back. */
static void decoder_lora_merge(void) {
    fs_train_config tc;
    fs_sam *m = load_tiny_batch2(&tc);
    if (!m) SKIP("%s missing or unreadable", tiny_path);
    fs_sam *m2 = load_tiny();
    tc.lora.scale = 0.5f;
    tc.decoder = FS_TRAIN_DECODER_LORA;
    fs_train *t, *t2;
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    randomise_dec_adapters(t, 12, 0.3);
    fs_train_batch b;
    make_batch(&tb, &b);
    fs_loss_value v;
    int rc = fs_train_loss(t, &fs_nn_ref, &b, &v);
    char path[600];
    snprintf(path, sizeof path, "%s/dec_lora.safetensors", test_tmp_dir("train_dec_lora"));
    int rs = fs_sam_ckpt_save(path, t, m, fs_sam_fingerprint(m), NULL);
    if (rs) fprintf(stderr, "%s\n", fs_error_msg());
    fs_lora_merge(fs_train_lora(t), &m->cfg, &m->p);
    int rc2 = base_logits(m, tb.img, ref_logits);
    double err = 0, mx = 0;
    for (size_t i = 0; i < 2 * 4 * 1024; i++) {
        err = fmax(err, fabs((double)tb.logits[i] - ref_logits[i]));
        mx = fmax(mx, fabs((double)ref_logits[i]));
    }
    /* the checkpoint applied to the base model */
    fs_sam_ckpt_info info;
    int ra = rs || !m2 ? FS_ERR : fs_sam_ckpt_apply(path, m2, &info);
    if (ra) fprintf(stderr, "%s\n", fs_error_msg());
    size_t diff = 0;
    if (ra == FS_OK && base_logits(m2, tb.img, tb.logits) == FS_OK)
        for (size_t i = 0; i < 2 * 4 * 1024; i++) diff += tb.logits[i] != ref_logits[i];
    else diff = 1;
    int info_ok = ra == FS_OK && info.decoder == FS_TRAIN_DECODER_LORA && info.lora.decoder && info.lora.rank == 4;
    /* resuming reads every adapter back */
    size_t rdiff = 1;
    if (rs == FS_OK && m2 && fs_train_create(&t2, m2, &tc) == FS_OK) {
        if (fs_sam_ckpt_restore(path, t2) == FS_OK) {
            rdiff = 0;
            for (size_t i = 0; i < fs_train_tensor_count(t); i++) {
                fs_train_tensor *x = fs_train_tensor_at(t, i), *y = fs_train_find(t2, x->name);
                if (!y || memcmp(x->param, y->param, x->numel * sizeof *x->param)) rdiff++;
            }
        }
        fs_train_free(t2);
    }
    fs_train_free(t);
    fs_sam_free(m);
    if (m2) fs_sam_free(m2);
    CHECK(rc == FS_OK && rc2 == FS_OK && rs == FS_OK && ra == FS_OK);
    CHECKF(err <= 1e-5 * (1 + mx), "merged forward differs by %g (max %g)", err, mx);
    CHECKF(diff == 0, "%zu logits differ after fs_sam_ckpt_apply", diff);
    CHECK(info_ok);
    CHECKF(rdiff == 0, "%zu tensors differ after restore", rdiff);
}

int main(void) {
    RUN(loss_prompted_values);
    RUN(loss_prompted_grad);
    RUN(loss_semantic_values);
    RUN(loss_semantic_grad);
    RUN(adamw_hand);
    RUN(clip_and_schedule);
    RUN(lora_targets);
    RUN(counts_vit_b);
    RUN(lora_zero_b_exact);
    RUN(lora_merge);
    RUN(decoder_frozen);
    RUN(lora_all_fd);
    RUN(bad_batches);
    RUN(full_fd);
    RUN(random_init_export);
    RUN(decoder_lora_zero_b);
    RUN(decoder_lora_fd);
    RUN(decoder_lora_merge);
    TEST_EXIT();
}
