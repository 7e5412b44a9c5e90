/* The HDF5 files that flow between stages (documented in schemas/):
 *   fewsam.slices v1      training slices (loader), exemplars (sampler),
 *                         synthetic samples (synthesizer)
 *   fewsam.volume v1      one test case: image and label volume with geometry
 *   fewsam.prediction v1  one predicted label volume (predictor -> scorer)
 * Readers check the schema name and version and every shape before use. */
#ifndef FS_SHARD_H
#define FS_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "data/volume.h"

/* Attributes every file carries. */
typedef struct {
    char dataset[64];     /* "brats", "synapse", "demo", ... */
    size_t n_classes;     /* including background (class 0) */
    char **class_names;   /* n_classes names */
    char *provenance;     /* free text: tool, version, source paths, settings */
} fs_shard_meta;

void fs_shard_meta_free(fs_shard_meta *m);
int fs_shard_meta_copy(fs_shard_meta *dst, const fs_shard_meta *src);

/* ---- fewsam.slices: [n, h, w] images (f32 in [0,1]) and labels (u8) ---- */

typedef struct fs_slice_writer fs_slice_writer;
/* Slices are appended one at a time (memory stays flat over large data sets). */
int fs_slice_writer_open(fs_slice_writer **w, const char *path, const fs_shard_meta *meta,
                         size_t h, size_t wd);
/* image [h, w] f32, label [h, w] u8; where the slice came from. */
int fs_slice_writer_add(fs_slice_writer *w, const float *image, const uint8_t *label,
                        const char *case_id, int32_t slice_index);
size_t fs_slice_writer_count(const fs_slice_writer *w);
int fs_slice_writer_commit(fs_slice_writer *w); /* frees w */
void fs_slice_writer_abort(fs_slice_writer *w); /* frees w, removes the temporary file */

typedef struct {
    fs_shard_meta meta;
    size_t n, h, w;
    fs_tensor image;       /* f32 [n, h, w] */
    fs_tensor label;       /* u8 [n, h, w] */
    char **case_ids;       /* n strings */
    int32_t *slice_index;  /* n */
} fs_slices;

int fs_slices_read(const char *path, fs_slices *s);
/* The same without the images (s->image stays empty), for passes that look
 * at labels only: a fifth of the bytes. */
int fs_slices_read_labels(const char *path, fs_slices *s);
void fs_slices_free(fs_slices *s);

/* ---- fewsam.volume: a test case in canonical orientation ---- */

typedef struct {
    fs_shard_meta meta;
    char case_id[128];
    fs_volume image;   /* f32 [nz, ny, nx] in [0, 1]; spacing and affine */
    fs_tensor label;   /* u8 [nz, ny, nx] */
} fs_case_volume;

int fs_case_volume_write(const char *path, const fs_case_volume *v);
int fs_case_volume_read(const char *path, fs_case_volume *v);
void fs_case_volume_free(fs_case_volume *v);

/* ---- fewsam.prediction: a predicted label volume ---- */

typedef struct {
    fs_shard_meta meta;
    char case_id[128];
    fs_volume label;   /* u8 [nz, ny, nx]; spacing and affine of the test volume */
} fs_prediction;

int fs_prediction_write(const char *path, const fs_prediction *p);
int fs_prediction_read(const char *path, fs_prediction *p);
void fs_prediction_free(fs_prediction *p);

#endif
