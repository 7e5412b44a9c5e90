/* Training samples drawn from slice shards (fewsam.slices), as the trainer
 * feeds them to SAM.
 *
 * A pool holds every slice of one shard file (e.g. the exemplars) or of a
 * folder of shards. A sample is a pure function of (seed, step, position in
 * the step's batch): which slice (uniform over the slices that hold at least
 * one class; slices without any object are never drawn, since a prompted
 * loss needs an object to prompt), the slice resized to the model's input
 * (ResizeLongestSide, bilinear) and preprocessed, and one prompt set per
 * class present on the slice, in increasing class order:
 *   point: a positive point at the class's interior-most pixel;
 *   box:   its tight box, each side jittered by up to box_jitter slice
 *          pixels (drawn from the sample's own random stream);
 * mapped to the input frame as the predictor maps them (x * in_w / w,
 * y * in_h / h). The target of a prompt set is the class's binary mask at
 * the low-res logit size L = 4 g: the input frame holds the resized slice in
 * its top-left in_h x in_w pixels (zero padding elsewhere), so low-res pixel
 * (i, j), whose centre lies at ((j + 0.5) S / L, (i + 0.5) S / L) in the
 * input frame, takes the label at that point of the slice, or background when
 * the point falls in the padding. (Nearest neighbour by pixel centres, the
 * rule that keeps targets aligned with the bilinear image resize and with
 * the bilinear upsampling of the logits; torch's legacy 'nearest' would
 * shift the mask by half a low-res pixel.) No augmentation yet. */
#ifndef FS_BATCH_H
#define FS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "data/sample.h"
#include "data/shard.h"
#include "sam/sam.h"
#include "sam/slice.h"
#include "sam/train.h"

/* ---- the pool ---- */

typedef struct {
    fs_slices *shards;
    char **paths;        /* [n_shards] */
    size_t n_shards;
    size_t *first;       /* [n_shards] index of each shard's first slice */
    size_t n;            /* slices in all */
    size_t n_classes;    /* including background; the same in every shard */
    size_t *usable;      /* [n_usable] indices of the slices that hold a class */
    size_t n_usable;
} fs_pool;

/* path: a fewsam.slices file, a folder of them (*.h5), or a loader output
 * folder (its train/). Fails, naming the file, on a shard that cannot be
 * read, on shards that disagree on the classes, and when no slice holds an
 * object. */
int fs_pool_open(fs_pool *p, const char *path);
void fs_pool_free(fs_pool *p);
/* Slice i (0 <= i < n): image[h, w] in [0, 1], label[h, w]. */
void fs_pool_slice(const fs_pool *p, size_t i, const float **image, const uint8_t **label, size_t *h, size_t *w);
/* A 64-bit hash of every shape and every image and label byte: a resumed
 * run checks that it trains on the same data. */
uint64_t fs_pool_fingerprint(const fs_pool *p);

/* ---- samples and batches ---- */

/* mixed: each prompt set a point or a box, drawn from the sample's random
 * stream (pretraining for both kinds of prompt). */
typedef enum { FS_BATCH_POINT, FS_BATCH_BOX, FS_BATCH_MIXED } fs_batch_prompt;

typedef struct {
    fs_batch_prompt prompt; /* point */
    double box_jitter;      /* slice pixels per box side (0) */
    uint64_t seed;
} fs_batch_config;

/* n_items prompt sets over n_images images; the arrays have room for
 * cap_images images and cap_items sets. */
typedef struct {
    size_t S, L;               /* input size, low-res logit size */
    size_t cap_images, cap_items;
    size_t n_images, n_items;
    float *images;             /* [cap_images, 3, S, S] preprocessed */
    float *targets;            /* [cap_items, L, L] 0 or 1 */
    size_t *item_image;        /* [cap_items] which image a set prompts */
    uint8_t *item_class;       /* [cap_items] which class */
    float *coords;             /* [cap_items, 4] point (x, y) or box (x0, y0, x1, y1), input frame */
    int *point_labels;         /* [cap_items] 1 */
    fs_sam_prompt *prompts;    /* [cap_items] pointing into coords */
    size_t *slice;             /* [cap_images] pool index of each image */
    fs_sam_frame *frames;      /* [cap_images] */
    float *raw;                /* [3, S, S] scratch: the resized slice in [0, 255] */
} fs_batch;

/* Room for `images` images of model m with up to n_classes - 1 objects each. */
int fs_batch_alloc(fs_batch *b, const fs_sam *m, size_t images, size_t n_classes);
void fs_batch_free(fs_batch *b);

/* Appends one image to b: slice image[h, w] in [0, 1] and label[h, w]
 * (classes < n_classes <= 256) become one preprocessed input and one prompt
 * set per class present (box jitter drawn from rng, which may be NULL
 * without jitter); `source` is recorded in b->slice. For samples from any
 * source (the pool, a synthesizer). Nothing is added on failure. */
int fs_batch_add(fs_batch *b, const fs_sam *m, const float *image, const uint8_t *label, size_t h, size_t w,
                 size_t n_classes, const fs_batch_config *c, fs_rng *rng, size_t source);

/* Appends one sample from a synthesizer (data/sample.h): its slice and label
 * become one input as in fs_batch_add, but the prompts are the sample's own,
 * drawn by the synthesizer: one prompt set per object, in its order, the
 * point or the box (c->prompt; box jitter, when set, drawn from rng as
 * fs_prompt_box draws it), mapped to the input frame as above; the target of
 * each is its class's mask. Fails, adding nothing, on a label or object
 * class >= n_classes. */
int fs_batch_add_sample(fs_batch *b, const fs_sam *m, const fs_sample *s, size_t n_classes, const fs_batch_config *c,
                        fs_rng *rng, size_t source);

/* The slice that sample (seed, step, pos) draws. */
size_t fs_batch_pick(const fs_pool *p, uint64_t seed, size_t step, size_t pos);

/* Empties b and fills it with samples (c->seed, step, first + k) for
 * k < n (n <= cap_images). */
int fs_batch_draw(fs_batch *b, const fs_sam *m, const fs_pool *p, const fs_batch_config *c, size_t step, size_t first,
                  size_t n);

/* The batch as fs_train consumes it (pointers into b). */
void fs_batch_view(const fs_batch *b, fs_train_batch *tb);

#endif
