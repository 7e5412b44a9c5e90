/* Image transforms for synthesis (data/synth.h), written for speed: one pass
 * per warp with an inverse affine map (bilinear for intensities, nearest for
 * labels), a separable Gaussian blur, intensity maps through a lookup table,
 * and counter-based noise (a pixel's noise is a function of its key and
 * position only). None of them allocates: callers pass the scratch. */
#ifndef FS_TRANSFORM_H
#define FS_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

/* An inverse map: the source point of destination pixel (x, y) is
 * (a[0][0] x + a[0][1] y + t[0], a[1][0] x + a[1][1] y + t[1]), x = column,
 * y = row, pixel centres at integer coordinates. */
typedef struct {
    double a[2][2];
    double t[2];
} fs_affine;

/* dst[dh, dw] (row stride ds): pixel (r, c) takes src[sh, sw] bilinearly at
 * the source point of (ox + c, oy + r); source pixels outside the slice read
 * as 0 (scipy.ndimage's mode 'constant', cval 0, order 1). */
void fs_warp_bilinear(const float *src, size_t sh, size_t sw, float *dst, size_t dh, size_t dw, size_t ds, long ox,
                      long oy, const fs_affine *m);

/* Source coordinates are stepped along each destination row in float
 * (exact for whole-pixel maps, within 1e-3 pixels at 8192).
 * fs_warp_nearest_u8 takes the nearest source pixel (round half up:
 * floor(u) + (frac(u) >= 0.5)) for label maps; outside the slice reads 0.
 * fs_warp_pair does both at once (image bilinear, labels nearest) with the
 * same coordinates. */
void fs_warp_nearest_u8(const uint8_t *src, size_t sh, size_t sw, uint8_t *dst, size_t dh, size_t dw, size_t ds,
                        long ox, long oy, const fs_affine *m);
void fs_warp_pair(const float *src, const uint8_t *lab, size_t sh, size_t sw, float *dst, uint8_t *dl, size_t dh,
                  size_t dw, size_t ds, long ox, long oy, const fs_affine *m);

/* The box outside which a source slice is all zero (image bits and labels
 * 0): columns x0..x1, rows y0..y1 inclusive; x0 > x1 when it is all zero.
 * fs_warp_pair_support is fs_warp_pair (lab and dl may be NULL: the image
 * alone) that writes 0 without reading the source wherever the source
 * point lies beyond the box: the same bytes, found in less time for
 * slices with empty borders (air around a body). */
typedef struct {
    long x0, y0, x1, y1;
} fs_support;
void fs_warp_support(const float *src, const uint8_t *lab, size_t h, size_t w, fs_support *sup);
void fs_warp_pair_support(const float *src, const uint8_t *lab, size_t sh, size_t sw, const fs_support *sup,
                          float *dst, uint8_t *dl, size_t dh, size_t dw, size_t ds, long ox, long oy,
                          const fs_affine *m);

/* Largest blur radius: sigma is limited to FS_BLUR_MAX_SIGMA. */
#define FS_BLUR_MAX_SIGMA 16.0
#define FS_BLUR_MAX_RADIUS 64
/* scipy.ndimage.gaussian_filter's kernel radius for sigma (truncate 3). */
int fs_blur_radius(double sigma);
/* Gaussian blur of img[h, w] in place, separable (rows, then columns),
 * kernel truncated at 3 sigma, edges replicated (scipy's mode 'nearest').
 * tmp holds h * w floats. sigma below 0.05 leaves img as it is. */
void fs_blur(float *img, size_t h, size_t w, double sigma, float *tmp);

/* The photometric chain in one pass over n values:
 *   x <- clamp(contrast * (x - pivot) + pivot + brightness, 0, 1),
 *   x <- x^gamma (a 4096-interval table with linear interpolation, within
 *        2e-4 of pow for gamma in [0.8, 2]),
 *   x <- clamp(x + sigma * z(counter0 + i), 0, 1),
 * where z(c) is a standard-normal-like value: the four bytes of a 32-bit
 * hash summed (Irwin-Hall, variance matched to 1); the hash is lowbias32 of
 * (fs_hash64(key, stream, c >> 32) xor (c mod 2^32) * 0x9e3779b9), a pure
 * function of (key, stream, c). Identity parameters (contrast 1, brightness
 * 0, gamma 1, sigma 0) skip their step: x is left bit for bit as it is. */
void fs_intensity_noise(float *x, size_t n, double contrast, double pivot, double brightness, double gamma,
                        double sigma, uint64_t key, uint64_t stream, uint64_t counter0);
/* The first two steps only / the noise only. */
void fs_intensity(float *x, size_t n, double contrast, double pivot, double brightness, double gamma);
void fs_noise(float *x, size_t n, double sigma, uint64_t key, uint64_t stream, uint64_t counter0);

/* Exact squared Euclidean distance transform of a mask, in integers and
 * cache order: d[r, c] is the squared distance from pixel (r, c) of
 * mask[h, w] (row stride ms) to the nearest pixel where the mask is 0 (so 0
 * there), or FS_EDT_NONE everywhere when the mask has no 0 at all. Equal to
 * fs_metrics_edt_sq (data/metrics.h) on (mask ? INFINITY : 0) with shape
 * {1, h, w} and unit spacing, its reference twin. The column distances are
 * found four columns at a time walking down the rows, then Meijster,
 * Roerdink and Hesselink's integer lower envelope runs along each row.
 * d: h * w values; scratch: 3 * w values; sides up to 8192. */
#define FS_EDT_NONE INT32_MAX
void fs_edt2_sq_mask(const uint8_t *mask, size_t h, size_t w, size_t ms, int32_t *d, int32_t *scratch);
/* The interior-most pixel of the mask: the index r * w + c of the first
 * (row-major) largest fs_edt2_sq_mask value, 0 when the mask has no 0.
 * Rows whose bound shows they cannot hold it are skipped. d: h * w values
 * (left holding partial results); scratch: 3 * w + h values. */
size_t fs_edt2_argmax_mask(const uint8_t *mask, size_t h, size_t w, size_t ms, int32_t *d, int32_t *scratch);

#endif
