/* Fingerprints of data (checkpoint bases, training pools, background
 * files): FNV-1a, byte by byte or over 64-bit words. Fingerprints are
 * stored in checkpoints and compared on resume, so these must never change. */
#ifndef FS_CORE_HASH_H
#define FS_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FS_FNV_OFFSET 0xcbf29ce484222325ULL

/* FNV-1a over n bytes, continuing from h. */
uint64_t fs_fnv1a(uint64_t h, const void *data, size_t n);

/* FNV-1a over 64-bit words (the tail byte by byte), each step followed by
 * h ^= h >> 29: eight times fewer multiplications for data sets of a few
 * hundred MB, and any changed byte still changes it. */
uint64_t fs_fnv1a_words(uint64_t h, const void *data, size_t n);

#endif
