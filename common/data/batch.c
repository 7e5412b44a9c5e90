#include "data/batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "data/prompts.h"
#include "data/sample.h"

/* ---- the pool ---- */

void fs_pool_free(fs_pool *p) {
    for (size_t i = 0; i < p->n_shards; i++) {
        fs_slices_free(&p->shards[i]);
        free(p->paths[i]);
    }
    free(p->shards);
    free(p->paths);
    free(p->first);
    free(p->usable);
    memset(p, 0, sizeof *p);
}

static int has_h5_suffix(const char *name) {
    size_t len = strlen(name);
    return len > 3 && !strcmp(name + len - 3, ".h5");
}

static int add_shard(fs_pool *p, const char *path) {
    fs_slices s;
    if (fs_slices_read(path, &s)) return FS_ERR;
    if (p->n_shards == 0) p->n_classes = s.meta.n_classes;
    if (s.meta.n_classes != p->n_classes) {
        fs_slices_free(&s);
        return fs_error("'%s': %zu classes, the other shards have %zu", path, s.meta.n_classes, p->n_classes);
    }
    if (s.meta.n_classes > 256) {
        fs_slices_free(&s);
        return fs_error("'%s': %zu classes, at most 256 supported", path, s.meta.n_classes);
    }
    p->shards[p->n_shards] = s;
    p->paths[p->n_shards] = strdup(path);
    p->first[p->n_shards] = p->n;
    p->n += s.n;
    p->n_shards++;
    return p->paths[p->n_shards - 1] ? FS_OK : fs_error("out of memory");
}

int fs_pool_open(fs_pool *p, const char *path) {
    memset(p, 0, sizeof *p);
    char dir[4200];
    char **names = NULL;
    size_t n_names = 0;
    if (fs_is_dir(path)) {
        snprintf(dir, sizeof dir, "%s/train", path); /* a loader output */
        if (!fs_is_dir(dir)) snprintf(dir, sizeof dir, "%s", path);
        if (fs_list_dir(dir, &names, &n_names)) return FS_ERR;
    } else if (!fs_is_file(path)) {
        return fs_error("cannot open '%s': no such file or directory", path);
    }
    size_t cap = names ? n_names : 1;
    p->shards = calloc(cap ? cap : 1, sizeof *p->shards);
    p->paths = calloc(cap ? cap : 1, sizeof *p->paths);
    p->first = calloc(cap ? cap : 1, sizeof *p->first);
    int rc = FS_OK;
    if (!p->shards || !p->paths || !p->first) rc = fs_error("out of memory");
    if (rc == FS_OK && !names) rc = add_shard(p, path);
    for (size_t i = 0; rc == FS_OK && names && i < n_names; i++) {
        if (!has_h5_suffix(names[i])) continue;
        char file[4400];
        fs_path_join(file, sizeof file, dir, names[i]);
        rc = add_shard(p, file);
    }
    if (names) fs_free_list(names, n_names);
    if (rc == FS_OK && p->n_shards == 0) rc = fs_error("'%s': no slice shards (*.h5)", path);
    if (rc == FS_OK) {
        p->usable = malloc((p->n ? p->n : 1) * sizeof *p->usable);
        if (!p->usable) rc = fs_error("out of memory");
    }
    for (size_t i = 0; rc == FS_OK && i < p->n; i++) {
        const float *img;
        const uint8_t *lab;
        size_t h, w, k;
        fs_pool_slice(p, i, &img, &lab, &h, &w);
        for (k = 0; k < h * w; k++)
            if (lab[k]) break;
        if (k < h * w) p->usable[p->n_usable++] = i;
        for (k = 0; k < h * w; k++)
            if (lab[k] >= p->n_classes) break;
        if (k < h * w) {
            size_t s = 0;
            while (s + 1 < p->n_shards && p->first[s + 1] <= i) s++;
            rc = fs_error("'%s': slice %zu has label %u, beyond its %zu classes", p->paths[s], i - p->first[s],
                          (unsigned)lab[k], p->n_classes);
        }
    }
    if (rc == FS_OK && p->n_usable == 0)
        rc = fs_error("'%s': none of its %zu slices holds a labelled object: nothing to train on", path, p->n);
    if (rc) fs_pool_free(p);
    return rc;
}

void fs_pool_slice(const fs_pool *p, size_t i, const float **image, const uint8_t **label, size_t *h, size_t *w) {
    size_t s = 0;
    while (s + 1 < p->n_shards && p->first[s + 1] <= i) s++;
    const fs_slices *sl = &p->shards[s];
    size_t k = i - p->first[s], hw = sl->h * sl->w;
    *image = (const float *)sl->image.data + k * hw;
    *label = (const uint8_t *)sl->label.data + k * hw;
    *h = sl->h;
    *w = sl->w;
}

uint64_t fs_pool_fingerprint(const fs_pool *p) {
    uint64_t h = FS_FNV_OFFSET;
    uint64_t head[2] = {p->n_shards, p->n_classes};
    h = fs_fnv1a_words(h, head, sizeof head);
    for (size_t s = 0; s < p->n_shards; s++) {
        const fs_slices *sl = &p->shards[s];
        uint64_t dims[3] = {sl->n, sl->h, sl->w};
        h = fs_fnv1a_words(h, dims, sizeof dims);
        h = fs_fnv1a_words(h, sl->image.data, sl->n * sl->h * sl->w * sizeof(float));
        h = fs_fnv1a_words(h, sl->label.data, sl->n * sl->h * sl->w);
    }
    return fs_hash64(h, 0, 0);
}

/* ---- samples ---- */

void fs_batch_free(fs_batch *b) {
    free(b->images);
    free(b->targets);
    free(b->item_image);
    free(b->item_class);
    free(b->coords);
    free(b->point_labels);
    free(b->prompts);
    free(b->slice);
    free(b->frames);
    free(b->raw);
    memset(b, 0, sizeof *b);
}

int fs_batch_alloc(fs_batch *b, const fs_sam *m, size_t images, size_t n_classes) {
    memset(b, 0, sizeof *b);
    size_t S = m->cfg.img_size, L = 4 * fs_sam_grid(&m->cfg);
    size_t items = images * (n_classes > 1 ? n_classes - 1 : 1);
    b->S = S;
    b->L = L;
    b->cap_images = images;
    b->cap_items = items;
    b->images = malloc(images * 3 * S * S * sizeof *b->images);
    b->targets = malloc(items * L * L * sizeof *b->targets);
    b->item_image = calloc(items, sizeof *b->item_image);
    b->item_class = calloc(items, sizeof *b->item_class);
    b->coords = calloc(items * 4, sizeof *b->coords);
    b->point_labels = calloc(items, sizeof *b->point_labels);
    b->prompts = calloc(items, sizeof *b->prompts);
    b->slice = calloc(images, sizeof *b->slice);
    b->frames = calloc(images, sizeof *b->frames);
    b->raw = malloc(3 * S * S * sizeof *b->raw);
    if (!b->images || !b->targets || !b->item_image || !b->item_class || !b->coords || !b->point_labels ||
        !b->prompts || !b->slice || !b->frames || !b->raw) {
        fs_batch_free(b);
        return fs_error("out of memory for a training batch of %zu images", images);
    }
    return FS_OK;
}

/* Every sample has its own random stream, keyed by (step, pos) under the seed. */
static void sample_rng(fs_rng *r, uint64_t seed, size_t step, size_t pos) {
    fs_rng_init(r, seed, fs_hash64(0x73616d706c65ULL /* "sample" */, (uint64_t)step, (uint64_t)pos));
}

size_t fs_batch_pick(const fs_pool *p, uint64_t seed, size_t step, size_t pos) {
    fs_rng r;
    sample_rng(&r, seed, step, pos);
    return p->usable[fs_rng_below(&r, p->n_usable)];
}

/* target[L, L] for class cls of label[h, w] in frame f of an S x S input. */
static void low_res_target(const uint8_t *label, const fs_sam_frame *f, size_t S, size_t L, uint8_t cls,
                           float *target) {
    double step = (double)S / (double)L;
    for (size_t i = 0; i < L; i++) {
        double ys = ((double)i + 0.5) * step;
        if (ys >= (double)f->in_h) {
            memset(target + i * L, 0, L * sizeof *target);
            continue;
        }
        size_t r = (size_t)(ys * (double)f->h / (double)f->in_h);
        if (r >= f->h) r = f->h - 1;
        for (size_t j = 0; j < L; j++) {
            double xs = ((double)j + 0.5) * step;
            float v = 0;
            if (xs < (double)f->in_w) {
                size_t c = (size_t)(xs * (double)f->w / (double)f->in_w);
                if (c >= f->w) c = f->w - 1;
                v = label[r * f->w + c] == cls ? 1.0f : 0.0f;
            }
            target[i * L + j] = v;
        }
    }
}

/* The image half of adding a slice: input k of b, its frame and source. */
static int add_image(fs_batch *b, const fs_sam *m, const float *image, size_t h, size_t w, size_t n_classes,
                     size_t source, fs_sam_frame *f) {
    if (b->n_images == b->cap_images) return fs_error("training batch: more images than it has room for");
    if (m->cfg.img_size != b->S)
        return fs_error("training batch sized for input %zu, the model takes %zu", b->S, m->cfg.img_size);
    if (n_classes > 256) return fs_error("training batch: %zu classes, at most 256", n_classes);
    size_t k = b->n_images;
    *f = fs_sam_slice_frame(m, h, w);
    b->slice[k] = source;
    b->frames[k] = *f;
    fs_sam_slice_image(f, image, b->raw);
    return fs_sam_preprocess(m, b->raw, 1, f->in_h, f->in_w, b->images + k * 3 * b->S * b->S);
}

/* A new prompt set of class cls on the image being added, its target made;
 * NULL when there is no room. */
static float *add_item(fs_batch *b, const uint8_t *label, const fs_sam_frame *f, uint8_t cls) {
    if (b->n_items == b->cap_items) {
        fs_error("training batch: more objects than it has room for");
        return NULL;
    }
    size_t it = b->n_items++;
    memset(&b->prompts[it], 0, sizeof b->prompts[it]);
    b->item_image[it] = b->n_images;
    b->item_class[it] = cls;
    low_res_target(label, f, b->S, b->L, cls, b->targets + it * b->L * b->L);
    return b->coords + 4 * it;
}

static void set_point(fs_batch *b, size_t it, float *xy, double x, double y, double sx, double sy) {
    xy[0] = (float)(x * sx);
    xy[1] = (float)(y * sy);
    b->point_labels[it] = 1;
    b->prompts[it].points = xy;
    b->prompts[it].labels = &b->point_labels[it];
    b->prompts[it].n_points = 1;
}

static void set_box(fs_batch *b, size_t it, float *xy, const double box[4], double sx, double sy) {
    xy[0] = (float)(box[0] * sx);
    xy[1] = (float)(box[1] * sy);
    xy[2] = (float)(box[2] * sx);
    xy[3] = (float)(box[3] * sy);
    b->prompts[it].box = xy;
}

/* Point or box for the next prompt set: mixed draws one from rng (point
 * without one). */
static int use_point(const fs_batch_config *c, fs_rng *rng) {
    if (c->prompt == FS_BATCH_MIXED) return !rng || fs_rng_below(rng, 2) == 0;
    return c->prompt == FS_BATCH_POINT;
}

int fs_batch_add(fs_batch *b, const fs_sam *m, const float *image, const uint8_t *label, size_t h, size_t w,
                 size_t n_classes, const fs_batch_config *c, fs_rng *rng, size_t source) {
    fs_sam_frame f;
    if (add_image(b, m, image, h, w, n_classes, source, &f)) return FS_ERR;
    int present[256] = {0};
    for (size_t i = 0; i < h * w; i++) present[label[i]] = 1;
    double sx = (double)f.in_w / (double)w, sy = (double)f.in_h / (double)h;
    size_t first_item = b->n_items;
    for (size_t cls = 1; cls < n_classes; cls++) {
        if (!present[cls]) continue;
        float *xy = add_item(b, label, &f, (uint8_t)cls);
        if (!xy) {
            b->n_items = first_item;
            return FS_ERR;
        }
        size_t it = b->n_items - 1;
        if (use_point(c, rng)) {
            double x, y;
            if (fs_prompt_point(label, h, w, (uint8_t)cls, &x, &y)) {
                b->n_items = first_item;
                return FS_ERR;
            }
            set_point(b, it, xy, x, y, sx, sy);
        } else {
            double box[4];
            if (fs_prompt_box(label, h, w, (uint8_t)cls, c->box_jitter, c->box_jitter > 0 ? rng : NULL, box)) {
                b->n_items = first_item;
                return FS_ERR;
            }
            set_box(b, it, xy, box, sx, sy);
        }
    }
    b->n_images++;
    return FS_OK;
}

int fs_batch_add_sample(fs_batch *b, const fs_sam *m, const fs_sample *s, size_t n_classes, const fs_batch_config *c,
                        fs_rng *rng, size_t source) {
    const size_t h = s->h, w = s->w;
    if (!s->image || !s->label || !h || !w) return fs_error("sample %llu is empty", (unsigned long long)s->index);
    if (n_classes > 256) return fs_error("training batch: %zu classes, at most 256", n_classes);
    for (size_t i = 0; i < h * w; i++)
        if (s->label[i] >= n_classes)
            return fs_error("sample %llu has label %u, beyond the exemplars' %zu classes", (unsigned long long)s->index,
                            (unsigned)s->label[i], n_classes);
    if (s->n_objects > FS_SAMPLE_MAX_OBJECTS)
        return fs_error("sample %llu: %zu objects", (unsigned long long)s->index, s->n_objects);
    for (size_t j = 0; j < s->n_objects; j++) {
        const fs_sample_object *o = &s->objects[j];
        if (o->cls == 0 || o->cls >= n_classes)
            return fs_error("sample %llu: object %zu has class %u, outside 1..%zu", (unsigned long long)s->index, j,
                            (unsigned)o->cls, n_classes - 1);
    }
    fs_sam_frame f;
    if (add_image(b, m, s->image, h, w, n_classes, source, &f)) return FS_ERR;
    double sx = (double)f.in_w / (double)w, sy = (double)f.in_h / (double)h;
    size_t first_item = b->n_items;
    for (size_t j = 0; j < s->n_objects; j++) {
        const fs_sample_object *o = &s->objects[j];
        float *xy = add_item(b, s->label, &f, o->cls);
        if (!xy) {
            b->n_items = first_item;
            return FS_ERR;
        }
        size_t it = b->n_items - 1;
        if (use_point(c, rng)) {
            set_point(b, it, xy, o->point[0], o->point[1], sx, sy);
        } else {
            double box[4] = {o->box[0], o->box[1], o->box[2], o->box[3]};
            if (c->box_jitter > 0 && rng) fs_prompt_box_jitter(box, h, w, c->box_jitter, rng);
            set_box(b, it, xy, box, sx, sy);
        }
    }
    b->n_images++;
    return FS_OK;
}

int fs_batch_draw(fs_batch *b, const fs_sam *m, const fs_pool *p, const fs_batch_config *c, size_t step, size_t first,
                  size_t n) {
    if (n > b->cap_images) return fs_error("training batch of %zu images exceeds its room for %zu", n, b->cap_images);
    b->n_images = b->n_items = 0;
    for (size_t k = 0; k < n; k++) {
        fs_rng r;
        sample_rng(&r, c->seed, step, first + k);
        size_t idx = p->usable[fs_rng_below(&r, p->n_usable)];
        const float *image;
        const uint8_t *label;
        size_t h, w;
        fs_pool_slice(p, idx, &image, &label, &h, &w);
        if (fs_batch_add(b, m, image, label, h, w, p->n_classes, c, &r, idx)) return FS_ERR;
    }
    return FS_OK;
}

void fs_batch_view(const fs_batch *b, fs_train_batch *tb) {
    memset(tb, 0, sizeof *tb);
    tb->images = b->images;
    tb->n_images = b->n_images;
    tb->prompts = b->prompts;
    tb->item_image = b->item_image;
    tb->n_items = b->n_items;
    tb->targets = b->targets;
}
