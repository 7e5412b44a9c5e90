/* The synthesizer's preview: a PNG grid of samples with their labels and
 * prompts drawn over the image. */
#ifndef SYNTH_PREVIEW_H
#define SYNTH_PREVIEW_H

#include <stddef.h>

#include "data/sample.h"

/* n samples of one size in a grid (about square), each tile enlarged by an
 * integer factor to at least 256 pixels; labels as semi-transparent class
 * colours with an opaque outline, boxes as rectangles in the class colour,
 * points as white crosses with a dark rim. */
int preview_write(const char *path, const fs_sample *samples, size_t n);

#endif
