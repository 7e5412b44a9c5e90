/* Exemplar-guided synthesis, after ELSNet (En and Guo 2022): new labelled
 * slices made by cutting objects out of the few exemplars, transforming
 * them and pasting them onto a transformed background slice.
 *
 * A sample (fs_sample, data/sample.h) is a pure function of (seed, index):
 * its random stream is fs_rng(key, index) with key = fs_hash64(seed,
 * "synth", 0), and its pixel noise fs_hash64(noise key, index, part << 32 |
 * pixel), so it is byte-identical in any process, in any order, from any
 * context built from the same exemplars, backgrounds and settings (and the
 * same build on the same architecture: no -ffast-math; a -march build that
 * enables FMA contraction may round differently from the default one).
 *
 * Sample i, step by step (every draw is made whatever the settings, so a
 * setting never shifts the draws after it):
 *  1. background: an exemplar slice with its labels (default), or, when
 *     unlabelled slices are given, one of those (labels ignored: all 0)
 *     with probability background_unlabelled; uniform over the pool.
 *  2. the background's transform (cfg.background): flips, rotation and
 *     scale about the slice centre (plus the resize to the output size,
 *     each axis stretched to fit), bilinear for the image and nearest for
 *     the labels, outside the source reads 0; then Gaussian blur, and in
 *     one pass contrast about the image mean, brightness, gamma and noise
 *     (data/transform.h: fs_blur, fs_intensity_noise).
 *  3. k objects, k uniform in [objects_min, objects_max]. Each: a candidate
 *     (see fs_synth_cut), with balance_classes a class uniform over the
 *     classes that have candidates and then a candidate of that class,
 *     else uniform over candidates; its transform (cfg.object: flips,
 *     rotation and scale about the object's box centre, blur and
 *     intensity as above with contrast about the object's mean); a
 *     position: the transformed box placed uniformly where it fits whole
 *     (partial = 0; a box larger than the slice is clipped), or its centre
 *     uniform over the slice (partial = 1, clipped at the edges). The
 *     object's pixels are warped with the source slice's surroundings, so
 *     blur sees real context, and then pasted by the object's mask (nearest
 *     warp of the source labels): label and image overwritten (hard paste,
 *     feather = 0), or with feather = s > 0 the image blended by a
 *     Gaussian-blurred (sigma s) copy of the mask, which also softens a rim
 *     just outside the object; labels still follow the hard mask. Later
 *     objects overwrite earlier ones.
 *  4. prompts from the final label map (fs_synth_prompts): point = the
 *     interior-most pixel (distance-transform maximum, ties to the first in
 *     row-major order: exactly fs_prompt_point's rule), box = the tight box.
 *     An object left with no visible pixel is dropped. At most
 *     FS_SAMPLE_MAX_OBJECTS objects, in order (class mode: increasing class).
 *
 * Ranges are [lo, hi] drawn uniformly, except gamma (log-uniform, so 0.8-1.25
 * is symmetric about 1); flips are probabilities; rotation is +- degrees;
 * brightness is +- an offset on [0, 1] intensities. Intensities stay in
 * [0, 1] (clamped after each step). */
#ifndef FS_SYNTH_H
#define FS_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "data/sample.h"
#include "data/shard.h"

/* What an object is. Connectivity (8 by default, 4 as an option) applies to
 * component and region; components under min_pixels are not candidates. */
typedef enum {
    FS_SYNTH_CUT_CLASS,     /* the whole mask of one class on one exemplar slice */
    FS_SYNTH_CUT_COMPONENT, /* one connected component of one class */
    FS_SYNTH_CUT_REGION,    /* one connected component of the foreground (all classes together,
                               pasted with their own labels: keeps nested structures such as a
                               tumour's core inside its oedema; its class for balancing is the
                               most frequent one) */
} fs_synth_cut;

/* How prompts are drawn on the final label map. */
typedef enum {
    FS_SYNTH_PROMPTS_CLASS,  /* one object per class present (the trainer's targets are class masks) */
    FS_SYNTH_PROMPTS_OBJECT, /* one per (pasted object, class) still visible, plus one per class of
                                the background's own labels; a box then bounds that instance only */
} fs_synth_prompts;

typedef struct {
    double flip_h, flip_v;  /* probability of a left-right / up-down flip */
    double rotate;          /* degrees: angle uniform in [-rotate, rotate] */
    double scale[2];        /* isotropic scale */
    double brightness;      /* offset uniform in [-brightness, brightness] */
    double contrast[2];     /* factor about the mean */
    double gamma[2];        /* exponent, log-uniform */
    double blur[2];         /* Gaussian sigma in pixels (below 0.05: none) */
    double noise[2];        /* sigma of additive noise */
} fs_synth_transform;

typedef struct {
    uint64_t seed;
    size_t out_h, out_w;             /* 0: the exemplars' size */
    size_t objects_min, objects_max; /* 1, 3; objects_max <= FS_SYNTH_MAX_PASTE */
    fs_synth_cut cut;                /* class */
    int connectivity;                /* 8 or 4 */
    size_t min_pixels;               /* 16 */
    int balance_classes;             /* 1 */
    int partial;                     /* 0 */
    double feather;                  /* 0: hard paste */
    fs_synth_prompts prompts;        /* class */
    double background_unlabelled;    /* 1: always an unlabelled slice when some are given */
    fs_synth_transform background;   /* flip_h 0.5, flip_v 0, rotate 15, scale 0.9-1.1, intensity as object */
    fs_synth_transform object;       /* flip_h 0.5, flip_v 0, rotate 15, scale 0.75-1.25, brightness 0.1,
                                        contrast 0.8-1.2, gamma 0.8-1.25, blur 0-1, noise 0-0.03 */
} fs_synth_config;

#define FS_SYNTH_MAX_PASTE 16

/* The defaults above: ELSNet-style augmentation kinds and magnitudes
 * (geometric: flips, small rotations, moderate scaling; photometric:
 * brightness, contrast, gamma, blur, noise). */
void fs_synth_config_default(fs_synth_config *c);
/* Every transform the identity (flips 0, rotation 0, ranges [1,1] or [0,0]):
 * a pure cut and paste. Other fields as the defaults. */
void fs_synth_config_identity(fs_synth_config *c);
/* Range and consistency checks; message names the setting. */
int fs_synth_config_check(const fs_synth_config *c);
/* "key=value ..." of every setting (for provenance). */
void fs_synth_config_describe(const fs_synth_config *c, char *buf, size_t n);
const char *fs_synth_cut_name(fs_synth_cut c);
int fs_synth_cut_parse(const char *s, fs_synth_cut *c);
const char *fs_synth_prompts_name(fs_synth_prompts p);
int fs_synth_prompts_parse(const char *s, fs_synth_prompts *p);

typedef struct fs_synth fs_synth;
typedef struct fs_synth_scratch fs_synth_scratch;

/* Builds the context: candidates (and their connected components) are found
 * once here. exemplars and backgrounds (n_backgrounds shards, may be 0;
 * their labels are ignored) must outlive the context. Fails when the
 * exemplars hold no labelled object of at least min_pixels pixels. */
int fs_synth_create(fs_synth **out, const fs_slices *exemplars, const fs_slices *backgrounds, size_t n_backgrounds,
                    const fs_synth_config *cfg);
/* The same from files: exemplars a fewsam.slices file; backgrounds NULL, a
 * fewsam.slices file or a folder of them (*.h5). Errors name the file. The
 * context owns what it read. */
int fs_synth_open(fs_synth **out, const char *exemplars, const char *backgrounds, const fs_synth_config *cfg);
void fs_synth_free(fs_synth *s);

const fs_synth_config *fs_synth_config_of(const fs_synth *s);
const fs_shard_meta *fs_synth_meta(const fs_synth *s); /* the exemplars' classes */
void fs_synth_size(const fs_synth *s, size_t *h, size_t *w);
size_t fs_synth_candidates(const fs_synth *s); /* objects to cut from */
size_t fs_synth_backgrounds(const fs_synth *s); /* unlabelled slices */

/* What was done for one sample (for tests and previews). */
typedef struct {
    int unlabelled;        /* background from the unlabelled pool */
    size_t background;     /* its slice index in its pool */
    size_t n_pasted;
    struct {
        uint8_t cls;       /* the candidate's class */
        size_t exemplar;   /* source slice */
        size_t component;  /* component id on that slice (0 in class mode) */
        size_t src_x0, src_y0; /* top-left of the object's box on its source slice */
        long x0, y0;       /* top-left of the transformed box in the sample */
        size_t bw, bh;     /* its size */
        double angle, scale;
        int flip_h, flip_v;
        size_t visible;    /* pixels still its own in the final label map */
    } pasted[FS_SYNTH_MAX_PASTE];
    uint8_t *instance;     /* optional, caller's [h, w]: 0 background, j + 1 pasted object j */
} fs_synth_detail;

/* Per-thread working memory (about 4 images' worth). */
int fs_synth_scratch_new(const fs_synth *s, fs_synth_scratch **out);
void fs_synth_scratch_free(fs_synth_scratch *w);

/* Sample `index` into out: out is zeroed ({0}, then allocated here at the
 * synth's size) or was allocated at that size before. Thread-safe with one
 * scratch per thread; detail may be NULL. */
int fs_synth_sample_with(const fs_synth *s, fs_synth_scratch *w, uint64_t index, fs_sample *out,
                         fs_synth_detail *detail);
/* The same with the context's own scratch (one thread at a time). */
int fs_synth_sample(fs_synth *s, uint64_t index, fs_sample *out);

/* ---- synthetic shards: fewsam.slices plus the prompt datasets (schemas/slices.md) ---- */

typedef struct fs_synth_writer fs_synth_writer;
/* settings: free text stored as the synth_settings attribute (and in
 * provenance with the meta's); seed and first_index as attributes. */
int fs_synth_writer_open(fs_synth_writer **w, const char *path, const fs_shard_meta *meta, size_t h, size_t wd,
                         uint64_t seed, uint64_t first_index, fs_synth_prompts prompts, const char *settings);
int fs_synth_writer_add(fs_synth_writer *w, const fs_sample *s);
int fs_synth_writer_commit(fs_synth_writer *w); /* frees w; the file appears whole or not at all */
void fs_synth_writer_abort(fs_synth_writer *w); /* frees w, removes temporaries */

#endif
