/* Choosing the few labelled exemplar slices from the training slices. */
#ifndef FS_SAMPLER_H
#define FS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FS_SAMPLE_UNIFORM, FS_SAMPLE_FOREGROUND, FS_SAMPLE_STRATIFIED } fs_sample_strategy;

int fs_sample_strategy_parse(const char *s, fs_sample_strategy *out);
const char *fs_sample_strategy_name(fs_sample_strategy s);

/* Picks k of n slices, given each slice's set of classes present as a bit
 * mask (bit c for class c >= 1). Returns the chosen slice indices sorted
 * ascending in *chosen (malloc'd) and their number in *n_chosen:
 *   uniform:     k slices uniformly at random;
 *   foreground:  k slices among those with any class (fewer if fewer exist);
 *   stratified:  first, one slice for each class present anywhere, rarest
 *                class first, each drawn among the slices holding that class
 *                (so every class appears even when k is smaller than the
 *                number of classes, raising k); then the rest uniformly among
 *                the foreground slices.
 * A pure function of (masks, k, strategy, seed). */
int fs_sample_slices(const uint64_t *masks, size_t n, size_t k, fs_sample_strategy strategy, uint64_t seed,
                     size_t **chosen, size_t *n_chosen);

#endif
