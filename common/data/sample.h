/* A training sample as it travels from a sample source (the exemplar shard
 * itself, or the synthesizer, in process or over ZeroMQ) to the trainer: a
 * slice with its label map and the prompts drawn for its objects. Every
 * sample is a pure function of (seed, index), whoever makes it. */
#ifndef FS_SAMPLE_H
#define FS_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#define FS_SAMPLE_MAX_OBJECTS 64

/* One labelled object of the sample and its prompts, in pixel coordinates
 * of the sample's slice (x = column, y = row). */
typedef struct {
    uint8_t cls;       /* class index (>= 1) */
    float point[2];    /* a positive point inside the object */
    float box[4];      /* x0, y0, x1, y1 (inclusive), the object's tight box */
} fs_sample_object;

typedef struct {
    uint64_t index;    /* the sample's index in its stream */
    size_t h, w;
    float *image;      /* [h, w] in [0, 1] */
    uint8_t *label;    /* [h, w], 0 background */
    size_t n_objects;
    fs_sample_object objects[FS_SAMPLE_MAX_OBJECTS];
} fs_sample;

/* Allocates image and label for h x w (zeroed); fs_sample_free releases them. */
int fs_sample_alloc(fs_sample *s, size_t h, size_t w);
void fs_sample_free(fs_sample *s);

#endif
