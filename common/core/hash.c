#include "core/hash.h"

#include <string.h>

#define FNV_PRIME 0x100000001b3ULL

uint64_t fs_fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

uint64_t fs_fnv1a_words(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        h = (h ^ v) * FNV_PRIME;
        h ^= h >> 29;
    }
    return fs_fnv1a(h, b + i, n - i);
}
