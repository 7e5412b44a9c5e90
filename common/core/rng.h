/* Counter-based random numbers: a value is a pure function of
 * (seed, stream, counter), so a sample drawn by index i is the same in any
 * process and in any order. fs_rng is a convenience cursor over one stream. */
#ifndef FS_RNG_H
#define FS_RNG_H

#include <stdint.h>
#include <stddef.h>

/* 64 random bits for (seed, stream, counter): splitmix64-style finaliser over
 * a mix of the three words (passes through every bit of each). */
uint64_t fs_hash64(uint64_t seed, uint64_t stream, uint64_t counter);

typedef struct { uint64_t seed, stream, counter; } fs_rng;

void fs_rng_init(fs_rng *r, uint64_t seed, uint64_t stream);
uint64_t fs_rng_u64(fs_rng *r);
double fs_rng_uniform(fs_rng *r);               /* [0, 1) with 53 bits */
double fs_rng_range(fs_rng *r, double lo, double hi);
size_t fs_rng_below(fs_rng *r, size_t n);      /* uniform in [0, n), unbiased */
double fs_rng_normal(fs_rng *r);                /* standard normal (Box-Muller) */
/* Fisher-Yates shuffle of n size_t values. */
void fs_rng_shuffle(fs_rng *r, size_t *v, size_t n);

#endif
