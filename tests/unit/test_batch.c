/* batch: training samples from slice shards (determinism, slices without
 * objects never drawn, targets aligned with the resized image and the
 * padding, prompts inside their object, seeded box jitter), the pool's
 * errors; and the training checkpoint (save, restore bit for bit, the base
 * fingerprint, apply for inference). Uses the golden tiny model (input 64,
 * low-res 32). */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "core/log.h"
#include "data/batch.h"
#include "data/prompts.h"
#include "data/sample.h"
#include "data/shard.h"
#include "nn/nn.h"
#include "sam/ckpt.h"
#include "sam/sam.h"
#include "sam/train.h"

static const char *dir;
static char tiny[512];
static fs_sam *model;
static char *class_names[3] = {"background", "liver", "spleen"};

enum { H = 30, W = 48, N = 4 }; /* 30 x 48 -> 40 x 64 in the 64 x 64 input: padding below */

/* Slice s: class 1 a rectangle touching the bottom border, class 2 a disc
 * (absent on slice 1, and slice 2 holds nothing at all); image bright on the
 * objects. */
static void make_slice(int s, float *im, uint8_t *lb) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t c = 0;
            if (s != 2 && y >= 20 && x >= 5 + s && x <= 20 + s) c = 1;
            int dx = x - (32 - s), dy = y - (10 + s);
            if (s != 1 && s != 2 && dx * dx + dy * dy <= 36) c = 2;
            lb[y * W + x] = c;
            im[y * W + x] = c ? 0.9f : 0.1f + 0.001f * (float)x;
        }
}

static int write_shard(const char *path, size_t n_classes) {
    fs_shard_meta m = {.n_classes = n_classes, .class_names = class_names, .provenance = "test_batch"};
    strcpy(m.dataset, "demo");
    fs_slice_writer *w;
    if (fs_slice_writer_open(&w, path, &m, H, W)) return FS_ERR;
    float im[H * W];
    uint8_t lb[H * W];
    for (int s = 0; s < N; s++) {
        make_slice(s, im, lb);
        if (fs_slice_writer_add(w, im, lb, "case0001", s)) {
            fs_slice_writer_abort(w);
            return FS_ERR;
        }
    }
    return fs_slice_writer_commit(w);
}

static char shard[600];

static void pool_skips_empty_slices(void) {
    fs_pool p;
    CHECK(fs_pool_open(&p, shard) == FS_OK);
    CHECK(p.n == N && p.n_usable == N - 1 && p.n_classes == 3);
    for (size_t step = 0; step < 200; step++) CHECK(fs_batch_pick(&p, 5, step, step % 3) != 2);
    /* a folder of shards reads the same slices */
    fs_pool q;
    CHECK(fs_pool_open(&q, dir) == FS_OK);
    CHECK(q.n == N && fs_pool_fingerprint(&q) == fs_pool_fingerprint(&p));
    fs_pool_free(&q);
    fs_pool_free(&p);
}

static void pool_errors(void) {
    fs_pool p;
    char path[700];
    snprintf(path, sizeof path, "%s/nope.h5", dir);
    CHECK(fs_pool_open(&p, path) == FS_ERR && strstr(fs_error_msg(), "nope.h5"));
    CHECKF(strstr(fs_error_msg(), "no such"), "%s", fs_error_msg());
}

static int same_batch(const fs_batch *a, const fs_batch *b) {
    size_t S = a->S, L = a->L;
    return a->n_images == b->n_images && a->n_items == b->n_items &&
           !memcmp(a->images, b->images, a->n_images * 3 * S * S * sizeof(float)) &&
           !memcmp(a->targets, b->targets, a->n_items * L * L * sizeof(float)) &&
           !memcmp(a->coords, b->coords, a->n_items * 4 * sizeof(float)) &&
           !memcmp(a->item_image, b->item_image, a->n_items * sizeof(size_t)) &&
           !memcmp(a->slice, b->slice, a->n_images * sizeof(size_t));
}

static void samples_are_pure_functions(void) {
    fs_pool p;
    CHECK(fs_pool_open(&p, shard) == FS_OK);
    fs_batch a, b;
    CHECK(fs_batch_alloc(&a, model, 3, p.n_classes) == FS_OK && fs_batch_alloc(&b, model, 3, p.n_classes) == FS_OK);
    fs_batch_config c = {FS_BATCH_BOX, 3.0, 11};
    CHECK(fs_batch_draw(&a, model, &p, &c, 7, 0, 3) == FS_OK);
    memset(b.images, 0xff, 3 * 3 * b.S * b.S * sizeof(float));
    CHECK(fs_batch_draw(&b, model, &p, &c, 9, 0, 3) == FS_OK); /* something else in between */
    CHECK(fs_batch_draw(&b, model, &p, &c, 7, 0, 3) == FS_OK);
    CHECK(same_batch(&a, &b));
    for (size_t k = 0; k < 3; k++) CHECK(a.slice[k] == fs_batch_pick(&p, 11, 7, k));
    /* a sample depends on its position, not on what else is in the batch:
     * sample (7, 2) drawn alone equals the third image above */
    CHECK(fs_batch_draw(&b, model, &p, &c, 7, 2, 1) == FS_OK);
    size_t S = a.S;
    CHECK(b.slice[0] == a.slice[2] && !memcmp(b.images, a.images + 2 * 3 * S * S, 3 * S * S * sizeof(float)));
    /* other steps draw other slices and jitters */
    int differs = 0;
    for (size_t step = 0; step < 20 && !differs; step++) {
        CHECK(fs_batch_draw(&b, model, &p, &c, 100 + step, 0, 3) == FS_OK);
        differs = !same_batch(&a, &b);
    }
    CHECK(differs);
    fs_batch_free(&a);
    fs_batch_free(&b);
    fs_pool_free(&p);
}

/* Centroid of the pixels of a[n x m] above thr, in pixel-centre units. */
static int centroid(const float *a, size_t n, size_t m, size_t stride, float thr, double *cy, double *cx) {
    double sy = 0, sx = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++)
            if (a[i * stride + j] > thr) {
                sy += (double)i + 0.5;
                sx += (double)j + 0.5;
                k++;
            }
    if (!k) return 0;
    *cy = sy / k;
    *cx = sx / k;
    return 1;
}

static void targets_align_with_image_and_padding(void) {
    fs_pool p;
    CHECK(fs_pool_open(&p, shard) == FS_OK);
    fs_batch b;
    CHECK(fs_batch_alloc(&b, model, 1, p.n_classes) == FS_OK);
    fs_batch_config c = {FS_BATCH_POINT, 0, 3};
    int seen0 = 0;
    for (size_t step = 0; step < 40; step++) {
        CHECK(fs_batch_draw(&b, model, &p, &c, step, 0, 1) == FS_OK);
        size_t S = b.S, L = b.L, s = b.slice[0];
        const fs_sam_frame *f = &b.frames[0];
        CHECK(S == 64 && L == 32 && f->in_h == 40 && f->in_w == 64);
        float im[H * W];
        uint8_t lb[H * W];
        make_slice((int)s, im, lb);
        CHECK(b.n_items == (s == 1 ? 1u : 2u));
        seen0 |= s == 0;
        for (size_t it = 0; it < b.n_items; it++) {
            const float *t = b.targets + it * L * L;
            uint8_t cls = b.item_class[it];
            CHECK(cls == it + 1);
            /* nothing in the padding: input rows >= 40 are low-res rows >= 20 */
            for (size_t i = 20; i < L; i++)
                for (size_t j = 0; j < L; j++) CHECK(t[i * L + j] == 0);
            /* the object's centroid, slice -> input frame, matches the target's */
            double ty, tx, oy = 0, ox = 0, k = 0;
            CHECK(centroid(t, L, L, L, 0.5f, &ty, &tx));
            for (size_t y = 0; y < H; y++)
                for (size_t x = 0; x < W; x++)
                    if (lb[y * W + x] == cls) {
                        oy += (double)y + 0.5;
                        ox += (double)x + 0.5;
                        k++;
                    }
            oy = oy / k * f->scale;
            ox = ox / k * f->scale;
            double r = (double)S / (double)L;
            CHECKF(fabs(ty * r - oy) < 1.5 && fabs(tx * r - ox) < 1.5, "class %u: target (%g, %g), object (%g, %g)",
                   cls, ty * r, tx * r, oy, ox);
            /* the rectangle touches the slice's bottom: so does its target */
            if (cls == 1) {
                int last = 0;
                for (size_t j = 0; j < L; j++) last |= t[19 * L + j] > 0;
                CHECK(last);
            }
            /* the point prompt lies on the object, in the input frame */
            const float *xy = b.coords + 4 * it;
            size_t px = (size_t)(xy[0] / f->scale), py = (size_t)(xy[1] / f->scale);
            CHECK(b.prompts[it].n_points == 1 && b.prompts[it].labels[0] == 1 && !b.prompts[it].box);
            CHECKF(lb[py * W + px] == cls, "class %u: point (%g, %g) -> pixel (%zu, %zu) is %u", cls, xy[0], xy[1],
                   px, py, lb[py * W + px]);
            CHECK(b.item_image[it] == 0);
        }
        /* the bright objects of the preprocessed image line up with the targets */
        const float *ch0 = b.images; /* (255 * 0.9 - 123.675) / 58.395 = 1.81 on objects, < -1 elsewhere */
        double iy, ix, uy = 0, ux = 0, uk = 0;
        CHECK(centroid(ch0, S, S, S, 1.0f, &iy, &ix));
        for (size_t it = 0; it < b.n_items; it++)
            for (size_t i = 0; i < L; i++)
                for (size_t j = 0; j < L; j++)
                    if (b.targets[(it * L + i) * L + j] > 0) {
                        uy += ((double)i + 0.5) * S / L;
                        ux += ((double)j + 0.5) * S / L;
                        uk++;
                    }
        CHECKF(fabs(uy / uk - iy) < 1.5 && fabs(ux / uk - ix) < 1.5, "image (%g, %g) targets (%g, %g)", iy, ix,
               uy / uk, ux / uk);
        /* padding of the image is 0 after normalisation */
        CHECK(ch0[50 * S + 10] == 0.0f);
    }
    CHECK(seen0);
    fs_batch_free(&b);
    fs_pool_free(&p);
}

static void boxes_cover_their_object(void) {
    fs_pool p;
    CHECK(fs_pool_open(&p, shard) == FS_OK);
    fs_batch b;
    CHECK(fs_batch_alloc(&b, model, 2, p.n_classes) == FS_OK);
    fs_batch_config c = {FS_BATCH_BOX, 0, 1};
    CHECK(fs_batch_draw(&b, model, &p, &c, 0, 0, 2) == FS_OK);
    for (size_t it = 0; it < b.n_items; it++) {
        const fs_sam_frame *f = &b.frames[b.item_image[it]];
        float im[H * W];
        uint8_t lb[H * W];
        make_slice((int)b.slice[b.item_image[it]], im, lb);
        const float *bx = b.coords + 4 * it;
        CHECK(b.prompts[it].box == bx && b.prompts[it].n_points == 0);
        /* the tight box in slice pixels, scaled */
        double x0 = 1e9, y0 = 1e9, x1 = -1, y1 = -1;
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++)
                if (lb[y * W + x] == b.item_class[it]) {
                    x0 = fmin(x0, (double)x), y0 = fmin(y0, (double)y);
                    x1 = fmax(x1, (double)x), y1 = fmax(y1, (double)y);
                }
        CHECK_NEAR(bx[0], x0 * f->scale, 1e-4);
        CHECK_NEAR(bx[1], y0 * f->scale, 1e-4);
        CHECK_NEAR(bx[2], x1 * f->scale, 1e-4);
        CHECK_NEAR(bx[3], y1 * f->scale, 1e-4);
    }
    fs_batch_free(&b);
    fs_pool_free(&p);
}

/* A sample whose objects carry their classes' tight boxes is jittered as
 * the same slice drawn from a pool: the same boxes from the same stream. */
static void sample_boxes_jitter_as_slices(void) {
    fs_batch a, b;
    CHECK(fs_batch_alloc(&a, model, 1, 3) == FS_OK && fs_batch_alloc(&b, model, 1, 3) == FS_OK);
    fs_batch_config c = {FS_BATCH_BOX, 4.0, 3};
    fs_sample smp;
    CHECK(fs_sample_alloc(&smp, H, W) == FS_OK);
    make_slice(0, smp.image, smp.label);
    smp.index = 0;
    smp.n_objects = 0;
    for (uint8_t cls = 1; cls < 3; cls++) {
        double box[4];
        CHECK(fs_prompt_box(smp.label, H, W, cls, 0, NULL, box) == FS_OK);
        fs_sample_object *o = &smp.objects[smp.n_objects++];
        o->cls = cls;
        for (int i = 0; i < 4; i++) o->box[i] = (float)box[i];
    }
    fs_rng r1, r2;
    fs_rng_init(&r1, 21, 0);
    fs_rng_init(&r2, 21, 0);
    CHECK(fs_batch_add(&a, model, smp.image, smp.label, H, W, 3, &c, &r1, 0) == FS_OK);
    CHECK(fs_batch_add_sample(&b, model, &smp, 3, &c, &r2, 0) == FS_OK);
    CHECK(a.n_items == 2 && b.n_items == 2);
    CHECK(!memcmp(a.coords, b.coords, 2 * 4 * sizeof(float)));
    /* and the jitter moved something */
    const fs_sam_frame *f = &a.frames[0];
    double tight[4];
    CHECK(fs_prompt_box(smp.label, H, W, 1, 0, NULL, tight) == FS_OK);
    int moved = 0;
    for (int i = 0; i < 4; i++) moved |= fabs(a.coords[i] - tight[i] * f->scale) > 1e-3;
    CHECK(moved);
    fs_sample_free(&smp);
    fs_batch_free(&a);
    fs_batch_free(&b);
}

/* ---- the checkpoint ---- */

static void checkpoint_roundtrip_and_apply(void) {
    const fs_nn_ops *ops = fs_nn_backend("ref");
    fs_sam *m;
    CHECK(fs_sam_load(&m, tiny, 0) == FS_OK);
    uint64_t fp = fs_sam_fingerprint(m);
    fs_pool p;
    CHECK(fs_pool_open(&p, shard) == FS_OK);
    fs_train_config tc;
    fs_train_config_default(&tc);
    tc.batch = 2;
    tc.seed = 4;
    fs_train *t;
    CHECK(fs_train_create(&t, m, &tc) == FS_OK);
    fs_batch b;
    CHECK(fs_batch_alloc(&b, m, 2, p.n_classes) == FS_OK);
    fs_batch_config bc = {FS_BATCH_POINT, 0, 0};
    for (size_t step = 0; step < 2; step++) {
        fs_train_batch tb;
        fs_loss_value lv;
        CHECK(fs_batch_draw(&b, m, &p, &bc, step, 0, 2) == FS_OK);
        fs_batch_view(&b, &tb);
        CHECK(fs_train_step_batch(t, ops, &tb, 1e-3, &lv) == FS_OK);
    }
    char path[700];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    fs_sam_ckpt_meta extra = {0};
    CHECK(fs_sam_ckpt_meta_set(&extra, "iters", "%d", 10) == FS_OK);
    CHECK(fs_sam_ckpt_save(path, t, m, fp, &extra) == FS_OK);
    const char *keys[] = {"iters", "absent"};
    fs_sam_ckpt_meta meta;
    fs_sam_ckpt_info info;
    CHECK(fs_sam_ckpt_read_meta(path, keys, 2, &meta, &info) == FS_OK);
    CHECK(info.step == 2 && info.img_size == 64 && info.lora.rank == 4 && info.lora.targets == FS_LORA_QV);
    CHECK(info.decoder == FS_TRAIN_DECODER_FULL && info.base_fingerprint == fp);
    CHECK(!strcmp(fs_sam_ckpt_meta_get(&meta, "iters"), "10") && !fs_sam_ckpt_meta_get(&meta, "absent"));
    CHECK(!strcmp(fs_sam_ckpt_meta_get(&meta, "schema"), "fewsam.checkpoint"));

    /* restore into a fresh state on a fresh model: every byte back */
    fs_sam *m2;
    CHECK(fs_sam_load(&m2, tiny, 0) == FS_OK);
    CHECK(fs_sam_fingerprint(m2) == fp);
    fs_train *t2;
    CHECK(fs_train_create(&t2, m2, &tc) == FS_OK);
    CHECK(fs_sam_ckpt_restore(path, t2) == FS_OK);
    CHECK(fs_train_steps(t2) == 2);
    for (size_t i = 0; i < fs_train_tensor_count(t); i++) {
        fs_train_tensor *x = fs_train_tensor_at(t, i), *y = fs_train_tensor_at(t2, i);
        CHECK(!strcmp(x->name, y->name));
        CHECKF(!memcmp(x->param, y->param, x->numel * 4) && !memcmp(x->m, y->m, x->numel * 4) &&
                   !memcmp(x->v, y->v, x->numel * 4),
               "%s", x->name);
    }
    /* another rank does not restore */
    fs_train_config tc8 = tc;
    tc8.lora.rank = 8;
    fs_train *t8;
    CHECK(fs_train_create(&t8, m2, &tc8) == FS_OK);
    CHECK(fs_sam_ckpt_restore(path, t8) == FS_ERR && strstr(fs_error_msg(), "ckpt.safetensors"));
    fs_train_free(t8);

    /* apply: the merged model's logits equal the training model's */
    fs_sam *m3;
    CHECK(fs_sam_load(&m3, tiny, 0) == FS_OK);
    CHECK(fs_sam_ckpt_apply(path, m3, &info) == FS_OK && info.step == 2);
    fs_train_batch tb;
    CHECK(fs_batch_draw(&b, m, &p, &bc, 5, 0, 1) == FS_OK);
    fs_batch_view(&b, &tb);
    size_t L = b.L, g = fs_sam_grid(&m3->cfg);
    float *want = malloc(b.n_items * L * L * sizeof *want), *embed = malloc(g * g * m3->cfg.out_chans * sizeof *embed);
    float low[4 * 32 * 32], iou[4];
    tb.logits_out = want;
    fs_loss_value lv;
    CHECK(fs_train_loss(t, ops, &tb, &lv) == FS_OK);
    CHECK(fs_sam_encode(m3, ops, b.images, 1, embed) == FS_OK);
    CHECK(fs_sam_decode(m3, ops, embed, &b.prompts[0], FS_SAM_MASKS_SINGLE, low, iou, NULL) == FS_OK);
    double worst = 0;
    for (size_t i = 0; i < L * L; i++) worst = fmax(worst, fabs(low[i] - want[i]));
    free(want);
    free(embed);
    CHECKF(worst < 1e-3, "merged vs adapter logits differ by %g", worst);

    /* onto other base weights: refused */
    fs_sam *m4;
    CHECK(fs_sam_load(&m4, tiny, 0) == FS_OK);
    m4->p.patch.w[0] += 1e-3f;
    CHECK(fs_sam_ckpt_apply(path, m4, NULL) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "other base weights") && strstr(fs_error_msg(), "ckpt.safetensors"), "%s",
           fs_error_msg());
    /* at another input size: refused */
    fs_sam *m5;
    CHECK(fs_sam_load(&m5, tiny, 32) == FS_OK);
    CHECK(fs_sam_fingerprint(m5) == fp); /* the input size is not part of the base weights */
    CHECK(fs_sam_ckpt_apply(path, m5, NULL) == FS_ERR && strstr(fs_error_msg(), "input size"));
    /* not a checkpoint */
    CHECK(fs_sam_ckpt_read_meta(tiny, NULL, 0, NULL, NULL) == FS_ERR &&
          strstr(fs_error_msg(), "not a fewsam training checkpoint"));

    fs_sam_free(m5);
    fs_sam_free(m4);
    fs_sam_free(m3);
    fs_train_free(t2);
    fs_sam_free(m2);
    fs_batch_free(&b);
    fs_train_free(t);
    fs_pool_free(&p);
    fs_sam_free(m);
}

int main(void) {
    fs_log_set_level(FS_LOG_WARN);
    dir = test_tmp_dir("test_batch");
    snprintf(shard, sizeof shard, "%s/slices.h5", dir);
    snprintf(tiny, sizeof tiny, "%s/golden/tiny.safetensors", test_shared_dir());
    if (write_shard(shard, 3)) {
        printf("FAIL setup: %s\n", fs_error_msg());
        return 1;
    }
    if (fs_sam_load(&model, tiny, 0)) {
        printf("skip test_batch: %s\n", fs_error_msg());
        return 0;
    }
    RUN(pool_skips_empty_slices);
    RUN(pool_errors);
    RUN(samples_are_pure_functions);
    RUN(targets_align_with_image_and_padding);
    RUN(boxes_cover_their_object);
    RUN(sample_boxes_jitter_as_slices);
    RUN(checkpoint_roundtrip_and_apply);
    fs_sam_free(model);
    TEST_EXIT();
}
