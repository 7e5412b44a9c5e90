/* Exemplar sampling strategies. */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "data/sampler.h"

#define N 1000

static uint64_t masks[N];

/* 30% of slices hold class 1, 10% class 2, exactly one slice class 3. */
static void make_masks(void) {
    for (size_t i = 0; i < N; i++) {
        masks[i] = 0;
        if (i % 10 < 3) masks[i] |= 1u << 1;
        if (i % 10 == 5) masks[i] |= 1u << 2;
    }
    masks[777] |= 1u << 3;
}

static int sorted_distinct(const size_t *v, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (v[i] <= v[i - 1]) return 0;
    return 1;
}

static void uniform_picks_k_distinct_deterministic(void) {
    make_masks();
    size_t *a, *b, *c, na, nb, nc;
    CHECK(fs_sample_slices(masks, N, 10, FS_SAMPLE_UNIFORM, 1, &a, &na) == FS_OK);
    CHECK(fs_sample_slices(masks, N, 10, FS_SAMPLE_UNIFORM, 1, &b, &nb) == FS_OK);
    CHECK(fs_sample_slices(masks, N, 10, FS_SAMPLE_UNIFORM, 2, &c, &nc) == FS_OK);
    CHECK(na == 10 && nb == 10 && nc == 10);
    CHECK(sorted_distinct(a, na));
    CHECK(!memcmp(a, b, 10 * sizeof *a));
    CHECK(memcmp(a, c, 10 * sizeof *a) != 0);
    free(a); free(b); free(c);
}

static void uniform_covers_empty_slices_too(void) {
    make_masks();
    size_t *a, n, empty = 0;
    CHECK(fs_sample_slices(masks, N, 500, FS_SAMPLE_UNIFORM, 3, &a, &n) == FS_OK);
    for (size_t i = 0; i < n; i++) empty += masks[a[i]] == 0;
    CHECK(empty > 150 && empty < 350); /* ~60% of slices are empty */
    free(a);
}

static void foreground_only_labelled_slices(void) {
    make_masks();
    size_t *a, n;
    CHECK(fs_sample_slices(masks, N, 50, FS_SAMPLE_FOREGROUND, 4, &a, &n) == FS_OK);
    CHECK(n == 50);
    for (size_t i = 0; i < n; i++) CHECK(masks[a[i]] != 0);
    free(a);
    /* asking for more than exist gives all of them */
    CHECK(fs_sample_slices(masks, N, 900, FS_SAMPLE_FOREGROUND, 4, &a, &n) == FS_OK);
    CHECK(n == 401); /* 300 + 100 + the one class-3 slice */
    free(a);
}

static void stratified_every_class_appears(void) {
    make_masks();
    for (uint64_t seed = 0; seed < 20; seed++) {
        size_t *a, n;
        CHECK(fs_sample_slices(masks, N, 1, FS_SAMPLE_STRATIFIED, seed, &a, &n) == FS_OK);
        uint64_t seen = 0;
        for (size_t i = 0; i < n; i++) seen |= masks[a[i]];
        CHECKF(seen == 0xe, "seed %llu: classes %llx", (unsigned long long)seed, (unsigned long long)seen);
        CHECK(n >= 1 && n <= 3 && sorted_distinct(a, n));
        int has_rare = 0;
        for (size_t i = 0; i < n; i++) has_rare |= a[i] == 777;
        CHECK(has_rare);
        free(a);
    }
    size_t *a, n;
    CHECK(fs_sample_slices(masks, N, 30, FS_SAMPLE_STRATIFIED, 9, &a, &n) == FS_OK);
    CHECK(n == 30 && sorted_distinct(a, n));
    for (size_t i = 0; i < n; i++) CHECK(masks[a[i]] != 0);
    free(a);
}

static void no_foreground_is_an_error(void) {
    uint64_t zero[10] = {0};
    size_t *a, n;
    CHECK(fs_sample_slices(zero, 10, 2, FS_SAMPLE_FOREGROUND, 0, &a, &n) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "no foreground") != NULL);
    CHECK(fs_sample_slices(zero, 10, 2, FS_SAMPLE_UNIFORM, 0, &a, &n) == FS_OK && n == 2);
    free(a);
}

int main(void) {
    RUN(uniform_picks_k_distinct_deterministic);
    RUN(uniform_covers_empty_slices_too);
    RUN(foreground_only_labelled_slices);
    RUN(stratified_every_class_appears);
    RUN(no_foreground_is_an_error);
    TEST_EXIT();
}
