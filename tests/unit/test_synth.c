/* Exemplar-guided synthesis: determinism, label and prompt consistency,
 * bounds, the identity configuration as a pure paste, and the transforms. */
#include "test.h"

#include <omp.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/prompts.h"
#include "data/synth.h"
#include "data/transform.h"
#include "io/h5.h"

#define EH 72
#define EW 96
#define EN 3

/* Three exemplar slices of 72x96 (not square: rows and columns must not be
 * confused): a disk of class 1, a rectangle of class 2, two separate blobs
 * of class 3, on a textured background. */
static void make_exemplars(fs_slices *s, int empty) {
    memset(s, 0, sizeof *s);
    s->n = EN, s->h = EH, s->w = EW;
    size_t shape[3] = {EN, EH, EW};
    fs_tensor_alloc(&s->image, FS_F32, 3, shape);
    fs_tensor_alloc(&s->label, FS_U8, 3, shape);
    static const char *names[4] = {"background", "disk", "rect", "blobs"};
    s->meta.n_classes = 4;
    s->meta.class_names = malloc(4 * sizeof(char *));
    for (int i = 0; i < 4; i++) s->meta.class_names[i] = strdup(names[i]);
    s->meta.provenance = strdup("test");
    snprintf(s->meta.dataset, sizeof s->meta.dataset, "test");
    float *im = s->image.data;
    uint8_t *lb = s->label.data;
    for (size_t k = 0; k < EN; k++)
        for (size_t y = 0; y < EH; y++)
            for (size_t x = 0; x < EW; x++) {
                size_t i = (k * EH + y) * EW + x;
                double t = (double)(fs_hash64(7, k, y * EW + x) >> 11) * 0x1.0p-53;
                im[i] = (float)(0.15 + 0.3 * (0.5 + 0.5 * sin(0.2 * x + 0.1 * y + k)) + 0.1 * t);
                uint8_t l = 0;
                double dx = (double)x - (25.0 + 6.0 * k), dy = (double)y - 30.0;
                if (dx * dx + dy * dy <= 100) l = 1;
                if (y >= 40 && y <= 55 && x >= 50 && x <= 80) l = 2;
                double b1 = ((double)x - 70) * ((double)x - 70) + ((double)y - 15) * ((double)y - 15);
                double b2 = ((double)x - 15) * ((double)x - 15) + ((double)y - 60) * ((double)y - 60);
                if (b1 <= 30 || b2 <= 20) l = 3;
                if (empty) l = 0;
                lb[i] = l;
                if (l) im[i] = (float)(0.6 + 0.1 * l + 0.05 * t);
            }
}

static int same_sample(const fs_sample *a, const fs_sample *b) {
    if (a->h != b->h || a->w != b->w || a->index != b->index || a->n_objects != b->n_objects) return 0;
    if (memcmp(a->image, b->image, a->h * a->w * sizeof(float)) || memcmp(a->label, b->label, a->h * a->w)) return 0;
    return !memcmp(a->objects, b->objects, a->n_objects * sizeof a->objects[0]);
}

static void determinism(void) {
    fs_slices ex, ex2;
    make_exemplars(&ex, 0);
    make_exemplars(&ex2, 0);
    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    cfg.seed = 11;
    fs_synth *a, *b;
    CHECK(fs_synth_create(&a, &ex, NULL, 0, &cfg) == FS_OK);
    CHECK(fs_synth_create(&b, &ex2, NULL, 0, &cfg) == FS_OK);
    enum { N = 24 };
    fs_sample fwd[N] = {{0}}, rev[N] = {{0}}, other[N] = {{0}}, par[N] = {{0}};
    for (int i = 0; i < N; i++) CHECK(fs_synth_sample(a, 100 + i, &fwd[i]) == FS_OK);
    for (int i = N - 1; i >= 0; i--) CHECK(fs_synth_sample(a, 100 + i, &rev[i]) == FS_OK);
    for (int i = 0; i < N; i += 2) CHECK(fs_synth_sample(b, 100 + i, &other[i]) == FS_OK);
    for (int i = 1; i < N; i += 2) CHECK(fs_synth_sample(b, 100 + i, &other[i]) == FS_OK);
    int failed = 0;
#pragma omp parallel num_threads(3) reduction(| : failed)
    {
        fs_synth_scratch *w;
        if (fs_synth_scratch_new(b, &w)) failed = 1;
#pragma omp for schedule(dynamic)
        for (int i = 0; i < N; i++)
            if (!failed && fs_synth_sample_with(b, w, 100 + i, &par[i], NULL)) failed = 1;
        fs_synth_scratch_free(w);
    }
    CHECK(!failed);
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        CHECKF(same_sample(&fwd[i], &rev[i]), "sample %d differs when drawn in reverse order", 100 + i);
        CHECKF(same_sample(&fwd[i], &other[i]), "sample %d differs in a second context", 100 + i);
        CHECKF(same_sample(&fwd[i], &par[i]), "sample %d differs when drawn by threads", 100 + i);
        if (i && memcmp(fwd[i].image, fwd[i - 1].image, EH * EW * sizeof(float))) distinct++;
    }
    CHECK(distinct == N - 1);
    /* another seed, another sample */
    fs_synth *c;
    cfg.seed = 12;
    CHECK(fs_synth_create(&c, &ex, NULL, 0, &cfg) == FS_OK);
    fs_sample o = {0};
    CHECK(fs_synth_sample(c, 100, &o) == FS_OK);
    CHECK(memcmp(o.image, fwd[0].image, EH * EW * sizeof(float)) != 0);
    fs_sample_free(&o);
    fs_synth_free(c);
    for (int i = 0; i < N; i++) {
        fs_sample_free(&fwd[i]);
        fs_sample_free(&rev[i]);
        fs_sample_free(&other[i]);
        fs_sample_free(&par[i]);
    }
    fs_synth_free(a);
    fs_synth_free(b);
    fs_slices_free(&ex);
    fs_slices_free(&ex2);
}

/* Every settings variant: pasted pixels carry their class, prompts are
 * fs_prompt_point's point and the tight box of the final label map, and
 * intensities stay in [0, 1]. */
static void labels_and_prompts_consistent(void) {
    fs_slices ex;
    make_exemplars(&ex, 0);
    for (int variant = 0; variant < 7; variant++) {
        fs_synth_config cfg;
        fs_synth_config_default(&cfg);
        cfg.seed = 3 + (uint64_t)variant;
        if (variant == 1) cfg.cut = FS_SYNTH_CUT_COMPONENT, cfg.connectivity = 4;
        if (variant == 2) cfg.cut = FS_SYNTH_CUT_REGION, cfg.partial = 1;
        if (variant == 3) cfg.feather = 1.5, cfg.objects_min = 3, cfg.objects_max = 6;
        if (variant == 4) cfg.out_h = 50, cfg.out_w = 64; /* resized output */
        if (variant == 5) cfg.out_h = 128, cfg.out_w = 128, cfg.balance_classes = 0;
        if (variant == 6) { /* extreme intensities */
            cfg.object.brightness = cfg.background.brightness = 1;
            cfg.object.contrast[0] = 0, cfg.object.contrast[1] = 10;
            cfg.object.gamma[0] = 0.05, cfg.object.gamma[1] = 20;
            cfg.object.noise[1] = cfg.background.noise[1] = 1;
            cfg.object.blur[1] = cfg.background.blur[1] = 4;
        }
        fs_synth *s;
        CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_OK);
        size_t H, W;
        fs_synth_size(s, &H, &W);
        uint8_t *inst = malloc(H * W);
        fs_sample smp = {0};
        size_t pasted_seen = 0;
        for (uint64_t idx = 0; idx < 30; idx++) {
            fs_synth_detail det = {.instance = inst};
            CHECK(fs_synth_sample(s, idx, &smp) == FS_OK);
            fs_synth_scratch *w;
            CHECK(fs_synth_scratch_new(s, &w) == FS_OK);
            fs_sample again = {0};
            CHECK(fs_synth_sample_with(s, w, idx, &again, &det) == FS_OK);
            fs_synth_scratch_free(w);
            CHECKF(same_sample(&smp, &again), "variant %d sample %llu: detail changes the sample", variant,
                   (unsigned long long)idx);
            fs_sample_free(&again);
            CHECK(det.n_pasted >= cfg.objects_min && det.n_pasted <= cfg.objects_max);
            for (size_t i = 0; i < H * W; i++) {
                CHECKF(smp.image[i] >= 0 && smp.image[i] <= 1, "variant %d: intensity %g", variant, smp.image[i]);
                if (inst[i] && cfg.cut != FS_SYNTH_CUT_REGION)
                    CHECKF(smp.label[i] == det.pasted[inst[i] - 1].cls, "variant %d: pixel of object %u has class %u",
                           variant, inst[i], smp.label[i]);
                if (inst[i]) CHECK(smp.label[i] != 0);
            }
            for (size_t j = 0; j < det.n_pasted; j++) {
                size_t v = 0;
                for (size_t i = 0; i < H * W; i++) v += inst[i] == j + 1;
                CHECK(v == det.pasted[j].visible);
                pasted_seen += v > 0;
            }
            /* one object per class present, in increasing class order */
            size_t expect = 0;
            for (int c = 1; c < 4; c++) {
                if (!fs_prompt_count(smp.label, H, W, (uint8_t)c)) continue;
                CHECK(expect < smp.n_objects);
                const fs_sample_object *o = &smp.objects[expect++];
                CHECK(o->cls == c);
                double px, py, box[4];
                CHECK(fs_prompt_point(smp.label, H, W, (uint8_t)c, &px, &py) == FS_OK);
                CHECKF(o->point[0] == px && o->point[1] == py, "variant %d class %d: point (%g,%g) vs (%g,%g)",
                       variant, c, o->point[0], o->point[1], px, py);
                CHECK(smp.label[(size_t)o->point[1] * W + (size_t)o->point[0]] == c);
                CHECK(fs_prompt_box(smp.label, H, W, (uint8_t)c, 0, NULL, box) == FS_OK);
                for (int k = 0; k < 4; k++) CHECK(o->box[k] == box[k]);
            }
            CHECK(expect == smp.n_objects);
        }
        CHECK(pasted_seen > 20);
        fs_sample_free(&smp);
        free(inst);
        fs_synth_free(s);
    }
    fs_slices_free(&ex);
}

/* Object prompts: one per (pasted object, class) still visible; fully
 * occluded objects are dropped. */
static void object_prompts_and_occlusion(void) {
    fs_slices ex;
    make_exemplars(&ex, 0);
    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    cfg.prompts = FS_SYNTH_PROMPTS_OBJECT;
    cfg.objects_min = cfg.objects_max = 12;
    cfg.object.scale[0] = 1.2, cfg.object.scale[1] = 2.0;
    fs_synth *s;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_OK);
    uint8_t inst[EH * EW], mask[EH * EW];
    fs_sample smp = {0};
    size_t occluded = 0;
    for (uint64_t idx = 0; idx < 20; idx++) {
        fs_synth_detail det = {.instance = inst};
        fs_synth_scratch *w;
        CHECK(fs_synth_scratch_new(s, &w) == FS_OK);
        CHECK(fs_synth_sample_with(s, w, idx, &smp, &det) == FS_OK);
        fs_synth_scratch_free(w);
        size_t k = 0;
        for (size_t g = 0; g <= det.n_pasted; g++) {
            if (g && !det.pasted[g - 1].visible) occluded++;
            for (int c = 1; c < 4; c++) {
                size_t n = 0;
                for (size_t i = 0; i < EH * EW; i++) n += mask[i] = inst[i] == g && smp.label[i] == c;
                if (!n) continue;
                CHECK(k < smp.n_objects);
                const fs_sample_object *o = &smp.objects[k++];
                CHECK(o->cls == c);
                double px, py, box[4];
                CHECK(fs_prompt_point(mask, EH, EW, 1, &px, &py) == FS_OK);
                CHECK(fs_prompt_box(mask, EH, EW, 1, 0, NULL, box) == FS_OK);
                CHECK(o->point[0] == px && o->point[1] == py);
                for (int q = 0; q < 4; q++) CHECK(o->box[q] == box[q]);
            }
        }
        CHECK(k == smp.n_objects);
    }
    CHECKF(occluded > 0, "no fully occluded object in 20 samples of 12 large objects");
    fs_sample_free(&smp);
    fs_synth_free(s);
    fs_slices_free(&ex);
}

/* With every transform the identity, a sample is the background exemplar
 * with the chosen objects' pixels copied from their source slices, shifted
 * by whole pixels, later objects over earlier ones. */
static void identity_is_pure_paste(void) {
    fs_slices ex;
    make_exemplars(&ex, 0);
    fs_synth_config cfg;
    fs_synth_config_identity(&cfg);
    cfg.objects_max = 4;
    fs_synth *s;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_OK);
    uint8_t inst[EH * EW];
    fs_sample smp = {0};
    const float *im = ex.image.data;
    const uint8_t *lb = ex.label.data;
    for (uint64_t idx = 0; idx < 40; idx++) {
        fs_synth_detail det = {.instance = inst};
        fs_synth_scratch *w;
        CHECK(fs_synth_scratch_new(s, &w) == FS_OK);
        CHECK(fs_synth_sample_with(s, w, idx, &smp, &det) == FS_OK);
        fs_synth_scratch_free(w);
        CHECK(!det.unlabelled);
        const float *bim = im + det.background * EH * EW;
        const uint8_t *blb = lb + det.background * EH * EW;
        for (size_t i = 0; i < EH * EW; i++) {
            if (inst[i]) continue;
            CHECKF(smp.image[i] == bim[i] && smp.label[i] == blb[i], "sample %llu: background pixel %zu changed",
                   (unsigned long long)idx, i);
        }
        for (size_t j = 0; j < det.n_pasted; j++) {
            const long dx = det.pasted[j].x0 - (long)det.pasted[j].src_x0, dy = det.pasted[j].y0 - (long)det.pasted[j].src_y0;
            const float *sim = im + det.pasted[j].exemplar * EH * EW;
            const uint8_t *slb = lb + det.pasted[j].exemplar * EH * EW;
            CHECK(det.pasted[j].scale == 1 && det.pasted[j].angle == 0 && !det.pasted[j].flip_h);
            for (long y = 0; y < EH; y++)
                for (long x = 0; x < EW; x++) {
                    if (slb[y * EW + x] != det.pasted[j].cls) continue;
                    long X = x + dx, Y = y + dy;
                    CHECK(X >= 0 && Y >= 0 && X < EW && Y < EH); /* fits whole (partial = 0) */
                    const size_t p = (size_t)(Y * EW + X);
                    CHECKF(inst[p] >= j + 1, "object %zu pixel lost", j);
                    if (inst[p] == j + 1) {
                        CHECK(smp.image[p] == sim[y * EW + x]);
                        CHECK(smp.label[p] == det.pasted[j].cls);
                    }
                }
        }
    }
    fs_sample_free(&smp);
    fs_synth_free(s);
    fs_slices_free(&ex);
}

static void no_objects_is_an_error(void) {
    fs_slices ex;
    make_exemplars(&ex, 1);
    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    fs_synth *s;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "no labelled object"), "%s", fs_error_msg());
    fs_slices_free(&ex);
    make_exemplars(&ex, 0);
    cfg.min_pixels = 100000; /* every object too small */
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_ERR);
    cfg.min_pixels = 16;
    cfg.objects_min = 4, cfg.objects_max = 2;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "objects"), "%s", fs_error_msg());
    fs_synth_config_default(&cfg);
    cfg.object.gamma[0] = 0;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_ERR);
    CHECKF(strstr(fs_error_msg(), "object.gamma"), "%s", fs_error_msg());
    fs_slices_free(&ex);
}

static void blur_matches_direct_sum(void) {
    enum { H = 13, W = 17 };
    float img[H * W], ref[H * W], tmp[H * W];
    for (int i = 0; i < H * W; i++) img[i] = (float)((fs_hash64(1, 2, (uint64_t)i) >> 11) * 0x1.0p-53);
    for (int si = 0; si < 3; si++) {
        const double sigma = si == 0 ? 0.7 : si == 1 ? 1.3 : 3.5; /* the last: kernel wider than the image */
        const int R = fs_blur_radius(sigma);
        double k[2 * FS_BLUR_MAX_RADIUS + 1], sum = 0;
        for (int i = -R; i <= R; i++) sum += k[i + R] = exp(-0.5 * i * i / (sigma * sigma));
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double a = 0;
                for (int dy = -R; dy <= R; dy++)
                    for (int dx = -R; dx <= R; dx++) {
                        int yy = y + dy < 0 ? 0 : y + dy >= H ? H - 1 : y + dy;
                        int xx = x + dx < 0 ? 0 : x + dx >= W ? W - 1 : x + dx;
                        a += k[dy + R] * k[dx + R] / (sum * sum) * img[yy * W + xx];
                    }
                ref[y * W + x] = (float)a;
            }
        float b[H * W];
        memcpy(b, img, sizeof b);
        fs_blur(b, H, W, sigma, tmp);
        for (int i = 0; i < H * W; i++) CHECK_NEAR(b[i], ref[i], 1e-5);
    }
    float b[H * W];
    memcpy(b, img, sizeof b);
    fs_blur(b, H, W, 0.01, tmp);
    CHECK(!memcmp(b, img, sizeof b));
}

static void intensity_and_noise(void) {
    enum { N = 5000 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = (float)i / (N - 1);
    memcpy(y, x, sizeof y);
    fs_intensity(y, N, 1, 0.3, 0, 1);
    CHECK(!memcmp(x, y, sizeof y)); /* identity is exact */
    for (int g = 0; g < 3; g++) {
        const double gamma = g == 0 ? 0.8 : g == 1 ? 1.25 : 2.0;
        memcpy(y, x, sizeof y);
        fs_intensity(y, N, 1, 0, 0, gamma);
        for (int i = 0; i < N; i++) CHECK_NEAR(y[i], pow(x[i], gamma), 2e-4);
    }
    memcpy(y, x, sizeof y);
    fs_intensity(y, N, 2, 0.5, 0.1, 1);
    for (int i = 0; i < N; i++) {
        double e = 2 * (x[i] - 0.5) + 0.5 + 0.1;
        CHECK_NEAR(y[i], e < 0 ? 0 : e > 1 ? 1 : e, 1e-6);
    }
    /* noise: mean 0, sd sigma (away from the clamps), a pure function of the counter */
    for (int i = 0; i < N; i++) y[i] = 0.5f;
    fs_noise(y, N, 0.05, 9, 4, 1000);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += y[i] - 0.5;
    m /= N;
    for (int i = 0; i < N; i++) v += (y[i] - 0.5 - m) * (y[i] - 0.5 - m);
    CHECK_NEAR(m, 0, 0.003);
    CHECK_NEAR(sqrt(v / N), 0.05, 0.003);
    float z[10];
    for (int i = 0; i < 10; i++) z[i] = 0.5f;
    fs_noise(z, 10, 0.05, 9, 4, 1003);
    CHECK(!memcmp(z, y + 3, sizeof z));
}

static void warp_identity_and_shift(void) {
    enum { H = 9, W = 11 };
    float src[H * W], dst[H * W];
    uint8_t ls[H * W], ld[H * W];
    for (int i = 0; i < H * W; i++) src[i] = (float)i / 7, ls[i] = (uint8_t)i;
    fs_affine id = {{{1, 0}, {0, 1}}, {0, 0}};
    fs_warp_bilinear(src, H, W, dst, H, W, W, 0, 0, &id);
    CHECK(!memcmp(src, dst, sizeof dst));
    fs_affine sh = {{{1, 0}, {0, 1}}, {2, -1}}; /* source = dest + (2, -1) */
    fs_warp_bilinear(src, H, W, dst, H, W, W, 0, 0, &sh);
    fs_warp_nearest_u8(ls, H, W, ld, H, W, W, 0, 0, &sh);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sx = x + 2, sy = y - 1;
            int in = sx >= 0 && sx < W && sy >= 0 && sy < H;
            CHECK(dst[y * W + x] == (in ? src[sy * W + sx] : 0));
            CHECK(ld[y * W + x] == (in ? ls[sy * W + sx] : 0));
        }
    /* a rotation and scale: the paired warp (vectorised interior) agrees
     * with the separate ones, and its labels with round-half-up nearest */
    enum { BH = 40, BW = 52 };
    float bs[BH * BW], bd[BH * BW], be[BH * BW];
    uint8_t bl[BH * BW], bp[BH * BW], bn[BH * BW];
    for (int i = 0; i < BH * BW; i++) bs[i] = (float)((i * 37) % 101) / 100, bl[i] = (uint8_t)(i % 251);
    const double th = 0.3, sc = 0.8;
    fs_affine rot = {{{cos(th) / sc, sin(th) / sc}, {-sin(th) / sc, cos(th) / sc}}, {3.3, -4.1}};
    fs_warp_pair(bs, bl, BH, BW, bd, bp, BH, BW, BW, -2, 1, &rot);
    fs_warp_bilinear(bs, BH, BW, be, BH, BW, BW, -2, 1, &rot);
    fs_warp_nearest_u8(bl, BH, BW, bn, BH, BW, BW, -2, 1, &rot);
    CHECK(!memcmp(bd, be, sizeof bd));
    CHECK(!memcmp(bp, bn, sizeof bp));
    int inside = 0;
    for (int y = 0; y < BH; y++)
        for (int x = 0; x < BW; x++) {
            double u = rot.a[0][0] * (x - 2) + rot.a[0][1] * (y + 1) + rot.t[0];
            double v = rot.a[1][0] * (x - 2) + rot.a[1][1] * (y + 1) + rot.t[1];
            long xn = (long)floor(u + 0.5), yn = (long)floor(v + 0.5);
            if (fabs(u + 0.5 - round(u + 0.5)) < 1e-3 || fabs(v + 0.5 - round(v + 0.5)) < 1e-3) continue; /* ties */
            uint8_t e = xn >= 0 && yn >= 0 && xn < BW && yn < BH ? bl[yn * BW + xn] : 0;
            CHECKF(bp[y * BW + x] == e, "label at (%d,%d)", x, y);
            long x0 = (long)floor(u), y0 = (long)floor(v);
            if (x0 >= 0 && y0 >= 0 && x0 + 1 < BW && y0 + 1 < BH) {
                double fx = u - x0, fy = v - y0;
                double ref = (1 - fy) * ((1 - fx) * bs[y0 * BW + x0] + fx * bs[y0 * BW + x0 + 1]) +
                             fy * ((1 - fx) * bs[(y0 + 1) * BW + x0] + fx * bs[(y0 + 1) * BW + x0 + 1]);
                CHECK_NEAR(bd[y * BW + x], ref, 1e-4);
                inside++;
            }
        }
    CHECK(inside > BH * BW / 3);
    fs_affine half = {{{1, 0}, {0, 1}}, {0.5, 0}};
    fs_warp_bilinear(src, H, W, dst, H, W, W, 0, 0, &half);
    CHECK_NEAR(dst[3 * W + 4], 0.5 * (src[3 * W + 4] + src[3 * W + 5]), 1e-6);
    CHECK_NEAR(dst[3 * W + W - 1], 0.5 * src[3 * W + W - 1], 1e-6); /* half outside: reads 0 */
}

static void shard_writer_round_trip(void) {
    const char *dir = test_tmp_dir("synth");
    char path[600];
    snprintf(path, sizeof path, "%s/s.h5", dir);
    fs_slices ex;
    make_exemplars(&ex, 0);
    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    fs_synth *s;
    CHECK(fs_synth_create(&s, &ex, NULL, 0, &cfg) == FS_OK);
    fs_synth_writer *w;
    CHECK(fs_synth_writer_open(&w, path, &ex.meta, EH, EW, 0, 5, cfg.prompts, "x=1") == FS_OK);
    fs_sample smp[4] = {{0}};
    size_t m = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(fs_synth_sample(s, 5 + (uint64_t)i, &smp[i]) == FS_OK);
        CHECK(fs_synth_writer_add(w, &smp[i]) == FS_OK);
        m += smp[i].n_objects;
    }
    CHECK(fs_synth_writer_commit(w) == FS_OK);
    fs_slices back;
    CHECK(fs_slices_read(path, &back) == FS_OK);
    CHECK(back.n == 4 && back.h == EH && back.w == EW);
    CHECK(!memcmp((float *)back.image.data + 2 * EH * EW, smp[2].image, EH * EW * sizeof(float)));
    CHECK(back.slice_index[3] == 8);
    fs_h5 *f;
    CHECK(fs_h5_open(&f, path) == FS_OK);
    fs_tensor ps, pc, pp, pb, si;
    CHECK(fs_h5_read(f, "prompt_sample", &ps) == FS_OK && ps.dtype == FS_I32 && ps.shape[0] == m);
    CHECK(fs_h5_read(f, "prompt_class", &pc) == FS_OK && pc.dtype == FS_U8);
    CHECK(fs_h5_read(f, "prompt_point", &pp) == FS_OK && pp.ndim == 2 && pp.shape[1] == 2);
    CHECK(fs_h5_read(f, "prompt_box", &pb) == FS_OK && pb.shape[1] == 4);
    CHECK(fs_h5_read(f, "sample_index", &si) == FS_OK && ((int64_t *)si.data)[0] == 5);
    int64_t seed;
    CHECK(fs_h5_attr_get_i64(f, "/", "synth_first_index", &seed, 1) == FS_OK && seed == 5);
    size_t k = 0;
    for (int i = 0; i < 4; i++)
        for (size_t j = 0; j < smp[i].n_objects; j++, k++) {
            CHECK(((int32_t *)ps.data)[k] == i);
            CHECK(((uint8_t *)pc.data)[k] == smp[i].objects[j].cls);
            CHECK(((float *)pp.data)[2 * k + 1] == smp[i].objects[j].point[1]);
            CHECK(((float *)pb.data)[4 * k + 2] == smp[i].objects[j].box[2]);
        }
    fs_tensor_free(&ps), fs_tensor_free(&pc), fs_tensor_free(&pp), fs_tensor_free(&pb), fs_tensor_free(&si);
    fs_h5_close(f);
    fs_slices_free(&back);
    for (int i = 0; i < 4; i++) fs_sample_free(&smp[i]);
    fs_synth_free(s);
    fs_slices_free(&ex);
}

int main(void) {
    RUN(determinism);
    RUN(labels_and_prompts_consistent);
    RUN(object_prompts_and_occlusion);
    RUN(identity_is_pure_paste);
    RUN(no_objects_is_an_error);
    RUN(blur_matches_direct_sum);
    RUN(intensity_and_noise);
    RUN(warp_identity_and_shift);
    RUN(shard_writer_round_trip);
    TEST_EXIT();
}
