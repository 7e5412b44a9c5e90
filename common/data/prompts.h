/* Prompts derived from a label slice, as the prompted evaluation protocol
 * draws them at test time (and the trainer at training time):
 *   point: the object's interior-most pixel, the maximum of its Euclidean
 *          distance transform (distance to the nearest pixel outside the
 *          object within the slice, scipy's distance_transform_edt);
 *          ties go to the first pixel in row-major order (numpy's argmax);
 *   box:   the tight bounding box (x0, y0, x1, y1) in pixel coordinates,
 *          optionally jittered by up to `jitter` pixels per side. */
#ifndef FS_PROMPTS_H
#define FS_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* Pixels of class cls in label[h, w]; 0 when the class is absent. */
size_t fs_prompt_count(const uint8_t *label, size_t h, size_t w, uint8_t cls);

/* Interior-most pixel of class cls in label[h, w]: (*x, *y) = (column, row).
 * FS_ERR when the class is absent. */
int fs_prompt_point(const uint8_t *label, size_t h, size_t w, uint8_t cls, double *x, double *y);

/* Tight box of class cls: box = {x0, y0, x1, y1} (inclusive pixel
 * coordinates). With jitter > 0 and rng, each side moves by a uniform
 * offset in [-jitter, jitter] pixels, kept inside the slice and ordered. */
int fs_prompt_box(const uint8_t *label, size_t h, size_t w, uint8_t cls, double jitter, fs_rng *rng,
                  double box[4]);

/* The jitter of fs_prompt_box on a box {x0, y0, x1, y1} of a slice [h, w]
 * in place: offsets drawn from rng for x0, y0, x1, y1 in that order. */
void fs_prompt_box_jitter(double box[4], size_t h, size_t w, double jitter, fs_rng *rng);

#endif
