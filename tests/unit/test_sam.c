/* sam: configuration from checkpoint metadata and from shapes, the generated
 * parameter table against the official ViT-B state_dict, strict loading
 * (missing, unexpected and mis-shaped tensors), input resizing, the
 * prompt-free decoder path and a few reference kernels. The full forward
 * pass is checked against the official tensors by tests/e2e/golden.sh. */
#include "test.h"

#include "core/error.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "nn/nn.h"
#include "sam/config.h"
#include "sam/params.h"
#include "sam/sam.h"
#include "sam/train.h"

static char tiny_path[512];

static int have_tiny(void) {
    snprintf(tiny_path, sizeof tiny_path, "%s/golden/tiny.safetensors", test_shared_dir());
    FILE *f = fopen(tiny_path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

static void check_tiny_config(const fs_sam_config *c, size_t dec_heads) {
    CHECK(c->img_size == 64 && c->patch_size == 8 && c->embed_dim == 32 && c->depth == 4);
    CHECK(c->num_heads == 2 && c->window_size == 3 && c->mlp_ratio == 4);
    CHECK(!c->global_attn[0] && c->global_attn[1] && !c->global_attn[2] && c->global_attn[3]);
    CHECK(c->out_chans == 32 && c->mask_in_chans == 8);
    CHECK(c->dec_depth == 2 && c->dec_mlp_dim == 64 && c->num_multimask == 3);
    CHECK(c->iou_hidden == 32 && c->iou_depth == 3);
    CHECKF(c->dec_heads == dec_heads, "dec_heads %zu", c->dec_heads);
}

static void config_from_metadata(void) {
    if (!have_tiny()) SKIP("%s missing", tiny_path);
    fs_ckpt *ck;
    CHECKF(fs_ckpt_open(&ck, tiny_path) == FS_OK, "%s", fs_error_msg());
    fs_sam_config c;
    int rc = fs_sam_config_from_ckpt(&c, ck);
    fs_ckpt_close(ck);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    check_tiny_config(&c, 4);
    CHECK(!strcmp(fs_sam_config_name(&c), "custom"));
    char buf[64];
    CHECK(!strcmp(fs_sam_config_global_str(&c, buf, sizeof buf), "1,3"));
}

/* Every tensor of tiny.safetensors, for rewriting variants of it. */
typedef struct {
    size_t n;
    char **names;
    fs_tensor *t;
} tensor_set;

static int read_all(const char *path, tensor_set *s) {
    fs_ckpt *ck;
    if (fs_ckpt_open(&ck, path)) return FS_ERR;
    s->n = fs_ckpt_count(ck);
    s->names = calloc(s->n, sizeof *s->names);
    s->t = calloc(s->n, sizeof *s->t);
    for (size_t i = 0; i < s->n; i++) {
        s->names[i] = strdup(fs_ckpt_entry_at(ck, i)->name);
        if (fs_ckpt_read(ck, i, &s->t[i])) {
            fs_ckpt_close(ck);
            return FS_ERR;
        }
    }
    fs_ckpt_close(ck);
    return FS_OK;
}

static void free_all(tensor_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->names[i]);
        fs_tensor_free(&s->t[i]);
    }
    free(s->names);
    free(s->t);
}

static long find_name(const tensor_set *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) return (long)i;
    return -1;
}

/* Writes s without metadata, leaving out tensor `skip` (-1: none). */
static int write_set(const char *path, const tensor_set *s, long skip) {
    const char **names = malloc(s->n * sizeof *names);
    fs_tensor *t = malloc(s->n * sizeof *t);
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if ((long)i == skip) continue;
        names[k] = s->names[i];
        t[k++] = s->t[i];
    }
    int rc = fs_safetensors_write(path, names, t, k, NULL, NULL, 0);
    free(names);
    free(t);
    return rc;
}

static void config_from_shapes(void) {
    if (!have_tiny()) SKIP("%s missing", tiny_path);
    tensor_set s = {0};
    CHECKF(read_all(tiny_path, &s) == FS_OK, "%s", fs_error_msg());
    char path[600];
    snprintf(path, sizeof path, "%s/nometa.safetensors", test_tmp_dir("test_sam_shapes"));
    int rc = write_set(path, &s, -1);
    free_all(&s);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    fs_ckpt *ck;
    CHECKF(fs_ckpt_open(&ck, path) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_meta(ck, "img_size") == NULL);
    fs_sam_config c;
    rc = fs_sam_config_from_ckpt(&c, ck);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    check_tiny_config(&c, 8); /* heads cannot be read off shapes: the official 8 */
    const char *k[] = {"dec_heads"}, *v[] = {"4"};
    rc = fs_sam_config_from_ckpt_meta(&c, ck, k, v, 1);
    fs_ckpt_close(ck);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    check_tiny_config(&c, 4);
}

static void config_from_pth(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/golden/tiny.pth", test_shared_dir());
    FILE *f = fopen(path, "rb");
    if (!f) SKIP("%s missing", path);
    fclose(f);
    fs_ckpt *ck;
    CHECKF(fs_ckpt_open(&ck, path) == FS_OK, "%s", fs_error_msg());
    fs_sam_config c;
    int rc = fs_sam_config_from_ckpt(&c, ck);
    fs_ckpt_close(ck);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    check_tiny_config(&c, 8);
}

static void presets_are_recognised(void) {
    const char *names[] = {"vit_b", "vit_l", "vit_h"};
    for (int i = 0; i < 3; i++) {
        fs_sam_config c;
        CHECK(fs_sam_config_preset(&c, names[i]) == FS_OK);
        CHECK(fs_sam_config_validate(&c) == FS_OK);
        CHECK(!strcmp(fs_sam_config_name(&c), names[i]));
    }
    /* state_dict sizes of the official checkpoints (parameters + the 256-element PE buffer) */
    const size_t totals[3] = {93735728, 312343088, 641090864}, counts[3] = {314, 482, 594};
    for (int i = 0; i < 3; i++) {
        fs_sam_config c;
        fs_sam_table t;
        CHECK(fs_sam_config_preset(&c, names[i]) == FS_OK && fs_sam_table_build(&t, &c) == FS_OK);
        size_t total = t.total, n = t.n;
        fs_sam_table_free(&t);
        CHECKF(total == totals[i] && n == counts[i], "%s: %zu tensors, %zu floats", names[i], n, total);
    }
    fs_sam_config c;
    CHECK(fs_sam_config_preset(&c, "vit_x") == FS_ERR);
    CHECK(strstr(fs_error_msg(), "vit_x") != NULL);
}

/* The table for ViT-B equals ../shared/reference/sam_vit_b_params.txt line by line. */
static void vit_b_table_matches_reference(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/reference/sam_vit_b_params.txt", test_shared_dir());
    FILE *f = fopen(path, "r");
    if (!f) SKIP("%s missing", path);
    fs_sam_config c;
    CHECK(fs_sam_config_preset(&c, "vit_b") == FS_OK);
    fs_sam_table t;
    CHECK(fs_sam_table_build(&t, &c) == FS_OK);
    char line[512];
    size_t n = 0, bad = 0, numel_sum = 0;
    char first_bad[512] = "";
    while (fgets(line, sizeof line, f)) {
        size_t idx;
        char name[200], shape[100];
        if (line[0] == '#' || sscanf(line, " %zu %199s [%99[^]]]", &idx, name, shape) != 3) continue;
        size_t dims[4] = {0}, nd = 0;
        for (char *tok = strtok(shape, ", "); tok && nd < 4; tok = strtok(NULL, ", ")) dims[nd++] = strtoull(tok, 0, 10);
        int ok = idx == n && n < t.n && !strcmp(t.v[n].name, name) && (size_t)t.v[n].ndim == nd;
        for (size_t d = 0; ok && d < nd; d++) ok = t.v[n].shape[d] == dims[d];
        if (!ok && !bad++) snprintf(first_bad, sizeof first_bad, "line %zu: %s", n, name);
        if (n < t.n) numel_sum += t.v[n].numel;
        n++;
    }
    fclose(f);
    size_t total = t.total, tn = t.n;
    fs_sam_table_free(&t);
    CHECKF(bad == 0, "%zu mismatches, first %s", bad, first_bad);
    CHECKF(n == 314 && tn == 314, "reference %zu entries, table %zu", n, tn);
    CHECKF(total == 93735728 && numel_sum == total, "total %zu", total);
}

/* Writes a variant of tiny.safetensors and expects fs_sam_load to refuse it
 * with a message containing every string of want. */
static int refused(const tensor_set *s, long skip, const char *file, const char *const *want, size_t n_want,
                   char *msg, size_t msg_n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", test_tmp_dir("test_sam_refuse"), file);
    if (write_set(path, s, skip)) {
        snprintf(msg, msg_n, "write: %s", fs_error_msg());
        return 0;
    }
    fs_sam *m;
    const char *k[] = {"dec_heads"}, *v[] = {"4"};
    if (fs_sam_load_meta(&m, path, 0, k, v, 1) == FS_OK) {
        fs_sam_free(m);
        snprintf(msg, msg_n, "loaded");
        return 0;
    }
    snprintf(msg, msg_n, "%s", fs_error_msg());
    for (size_t i = 0; i < n_want; i++)
        if (!strstr(msg, want[i])) return 0;
    return 1;
}

static void load_refuses_bad_checkpoints(void) {
    if (!have_tiny()) SKIP("%s missing", tiny_path);
    tensor_set s = {0};
    CHECKF(read_all(tiny_path, &s) == FS_OK, "%s", fs_error_msg());
    char msg[512];
    /* missing */
    long i = find_name(&s, "mask_decoder.iou_token.weight");
    CHECK(i >= 0);
    const char *w1[] = {"missing.safetensors", "'mask_decoder.iou_token.weight'", "missing", "[1,32]"};
    int ok = refused(&s, i, "missing.safetensors", w1, 4, msg, sizeof msg);
    if (!ok) free_all(&s);
    CHECKF(ok, "%s", msg);
    /* wrong shape (same size, so the file itself is valid) */
    i = find_name(&s, "image_encoder.blocks.3.attn.qkv.weight");
    fs_tensor *t = &s.t[i];
    t->shape[0] = 32;
    t->shape[1] = 96;
    const char *w2[] = {"'image_encoder.blocks.3.attn.qkv.weight'", "[32,96]", "expected [96,32]"};
    ok = refused(&s, -1, "shape.safetensors", w2, 3, msg, sizeof msg);
    t->shape[0] = 96;
    t->shape[1] = 32;
    if (!ok) free_all(&s);
    CHECKF(ok, "%s", msg);
    /* unexpected extra tensor (a LoRA matrix in a plain SAM checkpoint) */
    s.names = realloc(s.names, (s.n + 1) * sizeof *s.names);
    s.t = realloc(s.t, (s.n + 1) * sizeof *s.t);
    s.names[s.n] = strdup("image_encoder.blocks.0.attn.lora.q_A");
    s.t[s.n] = s.t[0];
    s.t[s.n].owned = 0; /* shares tensor 0's data */
    s.n++;
    const char *w3[] = {"unexpected", "'image_encoder.blocks.0.attn.lora.q_A'"};
    ok = refused(&s, -1, "extra.safetensors", w3, 2, msg, sizeof msg);
    free_all(&s);
    CHECKF(ok, "%s", msg);
}

static void load_resized_and_decode_without_prompt(void) {
    if (!have_tiny()) SKIP("%s missing", tiny_path);
    fs_sam *m;
    CHECK(fs_sam_load(&m, tiny_path, 36) == FS_ERR); /* not a multiple of the patch */
    CHECK(strstr(fs_error_msg(), "36") != NULL);
    CHECKF(fs_sam_load(&m, tiny_path, 32) == FS_OK, "%s", fs_error_msg());
    long pe = fs_sam_table_find(&m->p.table, "image_encoder.pos_embed");
    long rh1 = fs_sam_table_find(&m->p.table, "image_encoder.blocks.1.attn.rel_pos_h");
    long rh0 = fs_sam_table_find(&m->p.table, "image_encoder.blocks.0.attn.rel_pos_h");
    int shapes = pe >= 0 && m->p.table.v[pe].shape[1] == 4 && m->p.table.v[rh1].shape[0] == 7 &&
                 m->p.table.v[rh0].shape[0] == 5;
    /* prompt-free: no sparse tokens, every mask token's mask */
    size_t g = 4, D = 32, L = 16, n = 0;
    float *embed = calloc(g * g * D, sizeof *embed), *low = calloc(4 * L * L, sizeof *low), iou[4];
    for (size_t k = 0; k < g * g * D; k++) embed[k] = (float)((k * 37) % 11) / 11.0f - 0.5f;
    fs_sam_prompt none = {0};
    int rc = fs_sam_decode(m, &fs_nn_ref, embed, &none, FS_SAM_MASKS_ALL, low, iou, &n);
    int finite = 1;
    for (size_t k = 0; k < 4 * L * L; k++) finite &= isfinite(low[k]);
    /* single-mask output equals the first of ALL */
    float low1[256], iou1;
    size_t n1 = 0;
    int rc1 = fs_sam_decode(m, &fs_nn_ref, embed, &none, FS_SAM_MASKS_SINGLE, low1, &iou1, &n1);
    int same = rc1 == FS_OK && n1 == 1 && !memcmp(low1, low, sizeof low1) && iou1 == iou[0];
    free(embed);
    free(low);
    fs_sam_free(m);
    CHECK(shapes);
    CHECKF(rc == FS_OK, "%s", fs_error_msg());
    CHECK(n == 4 && finite && same);
    CHECK(fs_sam_sparse_count(&none) == 0);
}

/* Kernel identities: relpos attention without tables equals plain attention
 * on the same q/k/v; ConvTranspose's layout; resize identity. */
static void ref_kernels(void) {
    const fs_nn_ops *o = &fs_nn_ref;
    size_t B = 2, N = 6, H = 2, D = 3, C = H * D;
    float qkv[2 * 6 * 3 * 6], q[2 * 6 * 6], k[2 * 6 * 6], v[2 * 6 * 6], o1[72], o2[72];
    for (size_t i = 0; i < sizeof qkv / sizeof *qkv; i++) qkv[i] = (float)sin((double)i * 0.7);
    for (size_t t = 0; t < B * N; t++)
        for (size_t c = 0; c < C; c++) {
            q[t * C + c] = qkv[(t * 3 + 0) * C + c];
            k[t * C + c] = qkv[(t * 3 + 1) * C + c];
            v[t * C + c] = qkv[(t * 3 + 2) * C + c];
        }
    o->attention_relpos_forward(o1, qkv, NULL, NULL, B, 2, 3, H, D, 0.5f);
    o->attention_forward(o2, q, k, v, B, N, N, H, D, 0.5f);
    for (size_t i = 0; i < 72; i++) CHECK_NEAR(o1[i], o2[i], 1e-6);
    /* ConvTranspose2d(1 -> 1, 2, stride 2) of a 1x1 input is the kernel plus bias */
    float in[1] = {2}, w[4] = {1, 2, 3, 4}, b[1] = {0.5f}, out[4];
    o->conv_transpose2x2_forward(out, in, w, b, 1, 1, 1, 1, 1);
    for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], 2 * w[i] + 0.5, 1e-6);
    /* GELU is the erf form */
    float x[2] = {1.0f, -0.5f}, y[2];
    o->gelu_forward(y, x, 2);
    CHECK_NEAR(y[0], 0.8413447460685429, 1e-6);
    CHECK_NEAR(y[1], -0.15426876936299344, 1e-6);
    /* LayerNorm: biased variance */
    float ln_in[2] = {1, 3}, ln_w[2] = {1, 1}, ln_b[2] = {0, 0}, ln_out[2];
    o->layernorm_forward(ln_out, ln_in, ln_w, ln_b, 1, 2, 0);
    CHECK_NEAR(ln_out[0], -1, 1e-6);
    CHECK_NEAR(ln_out[1], 1, 1e-6);
}

/* fs_sam_bind: a model moves to a device backend's memory and back, the
 * inference calls bind on their own, p stays the host copy (a change to it
 * reaches the device by binding again), and a training state refuses a
 * backend other than the one its model is bound to. guard is a device
 * backend with the cpu kernels, so every result must equal cpu's exactly. */
static void bind_moves_the_model(void) {
    if (!have_tiny()) SKIP("%s missing", tiny_path);
    fs_sam *m;
    CHECKF(fs_sam_load(&m, tiny_path, 0) == FS_OK, "%s", fs_error_msg());
    size_t S = m->cfg.img_size, g = fs_sam_grid(&m->cfg), D = m->cfg.out_chans, n = g * g * D;
    float *img = malloc(3 * S * S * sizeof *img), *e_cpu = malloc(n * sizeof *e_cpu), *e_dev = malloc(n * sizeof *e_dev);
    for (size_t i = 0; i < 3 * S * S; i++) img[i] = (float)((i * 37) % 256);
    const fs_nn_ops *guard = fs_nn_backend("guard");
    CHECK(guard && guard->device && !fs_nn_cpu.device);
    CHECK(m->dev == NULL);

    CHECK(fs_sam_encode_raw(m, &fs_nn_cpu, img, 1, S, S, e_cpu) == FS_OK);
    CHECKF(fs_sam_encode_raw(m, guard, img, 1, S, S, e_dev) == FS_OK, "%s", fs_error_msg());
    CHECK(m->dev == guard && m->dp.arena && m->dp.arena != m->p.arena && m->dp.pos_embed != m->p.pos_embed);
    CHECK(!memcmp(e_cpu, e_dev, n * sizeof *e_cpu));

    /* a decode on guard equals cpu's */
    float pt[2] = {20, 30}, low_c[3 * 16 * 64], low_d[3 * 16 * 64], iou_c[3], iou_d[3];
    int lab = 1;
    fs_sam_prompt pr = {pt, &lab, 1, NULL};
    size_t nc, nd, L = 4 * g;
    CHECK(L * L * 3 <= sizeof low_c / sizeof *low_c);
    CHECK(fs_sam_decode(m, guard, e_dev, &pr, FS_SAM_MASKS_MULTI, low_d, iou_d, &nd) == FS_OK);
    CHECK(fs_sam_decode(m, &fs_nn_cpu, e_cpu, &pr, FS_SAM_MASKS_MULTI, low_c, iou_c, &nc) == FS_OK);
    CHECK(m->dev == NULL); /* the cpu call brought it back */
    CHECK(nc == 3 && nd == 3 && !memcmp(low_c, low_d, 3 * L * L * sizeof(float)) && !memcmp(iou_c, iou_d, sizeof iou_c));

    /* p is the host copy: changed while bound, the device sees it after binding again */
    CHECK(fs_sam_bind(m, guard) == FS_OK);
    for (size_t i = 0; i < m->cfg.out_chans; i++) m->p.neck3_b[i] += 0.5f;
    CHECK(fs_sam_encode_raw(m, guard, img, 1, S, S, e_dev) == FS_OK);
    CHECK(!memcmp(e_cpu, e_dev, n * sizeof *e_cpu)); /* still the old copy */
    CHECK(fs_sam_bind(m, guard) == FS_OK);
    CHECK(fs_sam_encode_raw(m, guard, img, 1, S, S, e_dev) == FS_OK);
    CHECK(memcmp(e_cpu, e_dev, n * sizeof *e_cpu) != 0);
    CHECK(fs_sam_encode_raw(m, &fs_nn_cpu, img, 1, S, S, e_cpu) == FS_OK);
    CHECK(!memcmp(e_cpu, e_dev, n * sizeof *e_cpu));

    /* a training state lives where its model is bound */
    fs_train_config tc;
    fs_train_config_default(&tc);
    fs_train *t;
    CHECK(fs_sam_bind(m, guard) == FS_OK);
    CHECKF(fs_train_create(&t, m, &tc) == FS_OK, "%s", fs_error_msg());
    float target[64 * 64] = {0};
    size_t item = 0;
    fs_train_batch b = {.images = img, .n_images = 1, .prompts = &pr, .item_image = &item, .n_items = 1,
                        .targets = target};
    CHECK(L * L <= sizeof target / sizeof *target);
    fs_loss_value loss;
    CHECK(fs_train_forward_backward(t, &fs_nn_cpu, &b, &loss) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "lives on backend 'guard'") != NULL, "%s", fs_error_msg());
    fs_error_clear();
    /* the state points into the model's device copy: the model cannot move under it */
    CHECK(fs_sam_bind(m, &fs_nn_cpu) == FS_ERR && strstr(fs_error_msg(), "training state") != NULL);
    CHECK(fs_sam_encode_raw(m, &fs_nn_cpu, img, 1, S, S, e_cpu) == FS_ERR);
    CHECK(m->dev == guard);
    fs_error_clear();
    fs_train_free(t);
    CHECK(fs_sam_bind(m, &fs_nn_cpu) == FS_OK && m->dev == NULL);
    fs_sam_free(m);
    free(img);
    free(e_cpu);
    free(e_dev);
}

int main(void) {
    RUN(config_from_metadata);
    RUN(config_from_shapes);
    RUN(config_from_pth);
    RUN(presets_are_recognised);
    RUN(vit_b_table_matches_reference);
    RUN(load_refuses_bad_checkpoints);
    RUN(load_resized_and_decode_without_prompt);
    RUN(ref_kernels);
    RUN(bind_moves_the_model);
    TEST_EXIT();
}
