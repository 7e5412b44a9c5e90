/* Train/test assignment of a data set's cases. */
#ifndef FS_SPLIT_H
#define FS_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

/* Assigns every case of ds to train or test, in this order of precedence:
 * the user's lists (comma-separated ids or numbers; a case in neither list
 * goes to train when only --test-cases is given and vice versa); the layout's
 * own split (TransUNet preprocessed: train_npz vs test_vol_h5); the TransUNet
 * test cases for raw Synapse when any of them exists together with at least
 * one other case; else a split seeded by `seed` with round(test_fraction * n)
 * test cases (at least one of each when n >= 2). A single case cannot be
 * split: it is left FS_SPLIT_UNSET and the caller splits its slices.
 * `rule` receives a one-line description of what was done. */
int fs_split_assign(fs_dataset *ds, const char *train_list, const char *test_list,
                    double test_fraction, uint64_t seed, char *rule, size_t rule_size);

#endif
