/* Generic synthetic shapes: the data the demo checkpoint is pretrained on,
 * so that it knows what a prompted object is without ever having seen the
 * phantom (or any anatomy) it is then fine-tuned and scored on.
 *
 * A slice is a pure function of (seed, index): a textured background (a
 * level, a smooth random field, a linear ramp), sometimes a large container
 * shape, and several objects drawn over one another (ellipses, star-shaped
 * polygons, rotated rectangles, smooth blobs, rings), each with its own
 * intensity (now and then barely above its surroundings) and texture (flat,
 * smooth noise, a ramp, stripes or speckle) and soft or sharp edges; then
 * Gaussian noise. Labels are instance ids: object k (in drawing order,
 * 1-based) is label k where it remains visible; an object left with fewer
 * than fs_shapes_min_area pixels by those drawn over it is unlabelled (its
 * pixels stay in the image, but it is never prompted). */
#ifndef FS_SHAPES_H
#define FS_SHAPES_H

#include <stddef.h>
#include <stdint.h>

#define FS_SHAPES_MAX_OBJECTS 15
#define FS_SHAPES_MIN_SIZE 16
#define FS_SHAPES_MAX_SIZE 1024

typedef struct {
    size_t size;        /* slices are size x size pixels (64) */
    size_t max_objects; /* at most this many objects a slice, container included (6) */
} fs_shapes_params;

#define FS_SHAPES_PARAMS_DEFAULT {64, 6}

/* Smallest visible area an object keeps its label with. */
size_t fs_shapes_min_area(const fs_shapes_params *p);

/* Checks the parameters (sizes within the limits above). */
int fs_shapes_validate(const fs_shapes_params *p);

/* Slice `index` of the set drawn from seed: image[size, size] in [0, 1],
 * label[size, size] instance ids 0 .. max_objects. Returns the number of
 * labelled objects (0 is possible, though rare). */
size_t fs_shapes_slice(uint64_t seed, size_t index, const fs_shapes_params *p, float *image, uint8_t *label);

#endif
