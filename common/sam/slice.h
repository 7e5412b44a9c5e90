/* SAM on one grey-level slice: the glue between the data plane (slices in
 * [0, 1] of any size) and the model (square RGB inputs in [0, 255]). */
#ifndef FS_SAM_SLICE_H
#define FS_SAM_SLICE_H

#include <stddef.h>
#include <stdint.h>

#include "sam/sam.h"

typedef struct {
    size_t h, w;      /* the slice */
    size_t in_h, in_w; /* after resizing its longest side to img_size */
    double scale;     /* in_h / h */
} fs_sam_frame;

/* The frame of a slice of h x w for the model's input size. */
fs_sam_frame fs_sam_slice_frame(const fs_sam *m, size_t h, size_t w);

/* slice[h, w] in [0, 1] -> img[3, in_h, in_w] in [0, 255]: the slice
 * resized (bilinear, the longest side to img_size, as the official
 * ResizeLongestSide) and replicated to three channels. */
void fs_sam_slice_image(const fs_sam_frame *f, const float *slice, float *img);

#endif
