#include "core/rng.h"

#include <math.h>

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t fs_hash64(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t z = mix(seed + 0x9e3779b97f4a7c15ULL);
    z = mix(z ^ (stream * 0xd1b54a32d192ed03ULL + 0x632be59bd9b4e019ULL));
    return mix(z ^ (counter * 0x9e3779b97f4a7c15ULL + 0x8cb92ba72f3d8dd7ULL));
}

void fs_rng_init(fs_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->counter = 0;
}

uint64_t fs_rng_u64(fs_rng *r) { return fs_hash64(r->seed, r->stream, r->counter++); }

double fs_rng_uniform(fs_rng *r) { return (double)(fs_rng_u64(r) >> 11) * 0x1.0p-53; }

double fs_rng_range(fs_rng *r, double lo, double hi) { return lo + (hi - lo) * fs_rng_uniform(r); }

size_t fs_rng_below(fs_rng *r, size_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = fs_rng_u64(r); while (x >= limit);
    return (size_t)(x % n);
}

double fs_rng_normal(fs_rng *r) {
    double u1 = fs_rng_uniform(r), u2 = fs_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void fs_rng_shuffle(fs_rng *r, size_t *v, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = fs_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}
