/* Image preprocessing shared by the loaders, the synthesizer and the
 * predictor: robust intensity ranges, CT windowing, MR foreground
 * normalisation, label remapping (slices are resized with image/resize.h).
 * Pure functions over caller-owned arrays: no I/O, no global state. */
#ifndef FS_PREPROCESS_H
#define FS_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

/* The CT window the Synapse protocol uses (TransUNet): [-125, 275] HU. */
#define FS_CT_WINDOW_LO (-125.0f)
#define FS_CT_WINDOW_HI 275.0f

/* The default robust range of fs_normalize_foreground, in percent. */
#define FS_FG_PERCENTILE_LO 0.5
#define FS_FG_PERCENTILE_HI 99.5

/* v [n]: the q-th percentile (q in [0, 100], clamped) with numpy's default
 * method ('linear': interpolation between the two order statistics around
 * (n - 1) * q / 100, with numpy's rounding). Reorders v (quickselect, O(n)).
 * NaN when n == 0, when q is NaN, or when v holds a NaN (as numpy). */
double fs_percentile(float *v, size_t n, double q);
/* The same over doubles (numpy.percentile of a float64 array). */
double fs_percentile_f64(double *v, size_t n, double q);

/* x [n] in place: clipped to [lo, hi] and scaled to [0, 1]; NaN -> 0.
 * Requires hi > lo (otherwise every value becomes 0). */
void fs_window01(float *x, size_t n, float lo, float hi);

/* x [nz, ny, nx] in place: MR (BraTS FLAIR) intensity normalisation.
 * The background value is the one shared exactly by at least 5 of the 8
 * corner voxels; failing that, the volume minimum if it fills more than 10%
 * of the voxels; failing that there is no background. Foreground voxels
 * (those != background, NaN excluded) are mapped by (x - lo) / (hi - lo) and
 * clipped to [0, 1], lo and hi being their p_lo-th and p_hi-th percentiles
 * (0 <= p_lo < p_hi <= 100; usually FS_FG_PERCENTILE_LO/HI); background and
 * NaN voxels become 0. Outputs (each may be NULL): *background, NAN when
 * none was found; *n_fg, the number of foreground voxels. Fails, leaving x
 * unchanged, when there is no foreground voxel or hi <= lo (a constant
 * image). Allocates one scratch copy of the foreground. */
int fs_normalize_foreground(float *x, size_t nz, size_t ny, size_t nx, double p_lo,
                            double p_hi, float *background, size_t *n_fg);

/* lab [n] in place: lab[i] = map[lab[i]] (e.g. Synapse's 13 labels to the
 * 8-organ protocol, unwanted labels to 0). */
void fs_remap_labels(uint8_t *lab, size_t n, const uint8_t map[256]);

#endif
