#include "data/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

static const char *const names[] = {"uniform", "foreground", "stratified"};

int fs_sample_strategy_parse(const char *s, fs_sample_strategy *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) { *out = (fs_sample_strategy)i; return FS_OK; }
    return fs_error("unknown sampling strategy '%s' (uniform, foreground, stratified)", s);
}

const char *fs_sample_strategy_name(fs_sample_strategy s) { return (unsigned)s < 3 ? names[s] : "?"; }

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Moves up to `want` random members of cand[0, m) that are not yet taken into
 * out, marking them taken. Partial Fisher-Yates: no rejection loops. */
static size_t draw(fs_rng *rng, size_t *cand, size_t m, size_t want, unsigned char *taken, size_t *out) {
    size_t got = 0;
    for (size_t i = 0; i < m && got < want; i++) {
        size_t j = i + fs_rng_below(rng, m - i);
        size_t t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        if (taken[cand[i]]) continue;
        taken[cand[i]] = 1;
        out[got++] = cand[i];
    }
    return got;
}

int fs_sample_slices(const uint64_t *masks, size_t n, size_t k, fs_sample_strategy strategy, uint64_t seed,
                     size_t **chosen, size_t *n_chosen) {
    *chosen = NULL;
    *n_chosen = 0;
    if (n == 0) return fs_error("no slices to sample from");
    if (k > n) k = n;
    size_t *cand = malloc(n * sizeof *cand), *out = malloc((n + 64) * sizeof *out);
    unsigned char *taken = calloc(n, 1);
    if (!cand || !out || !taken) {
        free(cand); free(out); free(taken);
        return fs_error("out of memory");
    }
    fs_rng rng;
    fs_rng_init(&rng, seed, 0xe8e5 + (uint64_t)strategy); /* stream reserved for exemplar sampling */
    size_t got = 0, m = 0;
    if (strategy == FS_SAMPLE_STRATIFIED) {
        size_t count[64] = {0};
        for (size_t i = 0; i < n; i++)
            for (int c = 1; c < 64; c++) count[c] += (masks[i] >> c) & 1;
        uint64_t covered = 0;
        for (;;) {
            int rarest = -1;
            for (int c = 1; c < 64; c++)
                if (count[c] && !((covered >> c) & 1) && (rarest < 0 || count[c] < count[rarest])) rarest = c;
            if (rarest < 0) break;
            m = 0;
            for (size_t i = 0; i < n; i++)
                if ((masks[i] >> rarest) & 1) cand[m++] = i;
            size_t g = draw(&rng, cand, m, 1, taken, out + got);
            covered |= 1ULL << rarest;
            if (g) covered |= masks[out[got]];
            got += g;
        }
    }
    if (got < k) {
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (strategy == FS_SAMPLE_UNIFORM || masks[i]) cand[m++] = i;
        got += draw(&rng, cand, m, k - got, taken, out + got);
    }
    free(cand);
    free(taken);
    if (got == 0) {
        free(out);
        return fs_error("no slice qualifies for the '%s' strategy (no foreground in the training slices)",
                        fs_sample_strategy_name(strategy));
    }
    qsort(out, got, sizeof *out, cmp_size);
    *chosen = out;
    *n_chosen = got;
    return FS_OK;
}
