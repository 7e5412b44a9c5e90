#include "data/split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

/* A list entry matches a case by id ("case0001") or by number ("1"). */
static int entry_matches(const char *tok, const fs_case_ref *c) {
    if (!strcmp(tok, c->id)) return 1;
    char *end;
    long v = strtol(tok, &end, 10);
    return end != tok && !*end && c->number >= 0 && v == c->number;
}

static int apply_list(fs_dataset *ds, const char *list, fs_split which, const char *opt) {
    char *copy = strdup(list), *save = NULL;
    int rc = FS_OK;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int found = 0;
        for (size_t i = 0; i < ds->n_cases; i++) {
            if (!entry_matches(tok, &ds->cases[i])) continue;
            if (ds->cases[i].split != FS_SPLIT_UNSET && ds->cases[i].split != which) {
                rc = fs_error("case '%s' is in both --train-cases and --test-cases", ds->cases[i].id);
                goto out;
            }
            ds->cases[i].split = which;
            found = 1;
        }
        if (!found) {
            rc = fs_error("%s: no case '%s' in '%s'", opt, tok, ds->root);
            goto out;
        }
    }
out:
    free(copy);
    return rc;
}

int fs_split_assign(fs_dataset *ds, const char *train_list, const char *test_list,
                    double test_fraction, uint64_t seed, char *rule, size_t rule_size) {
    size_t n = ds->n_cases;
    if (train_list || test_list) {
        for (size_t i = 0; i < n; i++) ds->cases[i].split = FS_SPLIT_UNSET;
        if (test_list && apply_list(ds, test_list, FS_SPLIT_TEST, "--test-cases")) return FS_ERR;
        if (train_list && apply_list(ds, train_list, FS_SPLIT_TRAIN, "--train-cases")) return FS_ERR;
        /* The other side takes the rest only when the user named one side. */
        fs_split rest = !train_list ? FS_SPLIT_TRAIN : !test_list ? FS_SPLIT_TEST : FS_SPLIT_UNSET;
        size_t dropped = 0;
        for (size_t i = 0; i < n; i++) {
            if (ds->cases[i].split == FS_SPLIT_UNSET) {
                ds->cases[i].split = rest;
                dropped += rest == FS_SPLIT_UNSET;
            }
        }
        snprintf(rule, rule_size, "cases given by the user%s",
                 dropped ? " (cases in neither list are left out)" : "");
        return FS_OK;
    }
    if (ds->kind == FS_DS_TRANSUNET) {
        snprintf(rule, rule_size, "TransUNet layout: train_npz for training, test_vol_h5 for testing");
        return FS_OK; /* the scan set each case's split from its folder */
    }
    if (n < 2) {
        if (n == 1) ds->cases[0].split = FS_SPLIT_UNSET;
        snprintf(rule, rule_size, "single case: its slices are split, not its cases");
        return FS_OK;
    }
    if (ds->kind == FS_DS_SYNAPSE) {
        size_t in_test = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t t = 0; t < 12; t++)
                if (ds->cases[i].number == fs_transunet_test_cases[t]) in_test++;
        if (in_test > 0 && in_test < n) {
            for (size_t i = 0; i < n; i++) {
                ds->cases[i].split = FS_SPLIT_TRAIN;
                for (size_t t = 0; t < 12; t++)
                    if (ds->cases[i].number == fs_transunet_test_cases[t]) ds->cases[i].split = FS_SPLIT_TEST;
            }
            snprintf(rule, rule_size, "TransUNet test cases (1,2,3,4,8,22,25,29,32,35,36,38): %zu of 12 present", in_test);
            return FS_OK;
        }
    }
    /* Seeded: shuffle case indices, the first k go to test. */
    size_t k = (size_t)(test_fraction * (double)n + 0.5);
    if (k < 1) k = 1;
    if (k > n - 1) k = n - 1;
    size_t *order = malloc(n * sizeof *order);
    if (!order) return fs_error("out of memory");
    for (size_t i = 0; i < n; i++) order[i] = i;
    fs_rng rng;
    fs_rng_init(&rng, seed, 0x5711); /* stream reserved for the case split */
    fs_rng_shuffle(&rng, order, n);
    for (size_t i = 0; i < n; i++) ds->cases[order[i]].split = i < k ? FS_SPLIT_TEST : FS_SPLIT_TRAIN;
    free(order);
    snprintf(rule, rule_size, "seeded split (seed %llu): %zu test of %zu cases", (unsigned long long)seed, k, n);
    return FS_OK;
}
