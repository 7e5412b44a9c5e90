/* Segmentation metrics as TransUNet and SAMed compute them (their
 * test_single_volume / calculate_metric_percase over medpy.metric.binary):
 * per test volume and class, 3D Dice and HD95.
 *
 * HD95 follows medpy.metric.binary.hd95: the surface of a binary object is
 * the object minus its erosion by the 6-connected cross (voxels past the
 * array edge count as background, so objects touching the edge have surface
 * there); each surface voxel of P gets the Euclidean distance to the nearest
 * surface voxel of G and vice versa; HD95 is the 95th percentile (numpy's
 * default linear interpolation) of both lists together.
 *
 * Empty masks (their convention, not medpy's, which raises):
 *   P and G non-empty: DSC, HD95 as defined;
 *   P non-empty, G empty: DSC 1, HD95 0;
 *   P empty (whatever G): DSC 0, HD95 0.
 *
 * Volumes are row-major u8 [nz, ny, nx]; spacing is mm along x, y, z (the
 * i, j, k of fs_volume), so spacing[0] goes with the fastest axis. */
#ifndef FS_METRICS_H
#define FS_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The convention above in one line, for the tables' notes. */
#define FS_METRICS_CONVENTION                                                                   \
    "TransUNet/SAMed convention: per volume and class, 3D DSC and HD95 (medpy: surface by "   \
    "6-connected erosion, 95th percentile of both directed surface distances); prediction "   \
    "non-empty and truth empty: DSC 1, HD95 0; prediction empty: DSC 0, HD95 0; means over "  \
    "cases, then over classes"

typedef struct {
    double dsc;       /* in [0, 1] */
    double hd95_mm;   /* with the volume's spacing */
    double hd95_vox;  /* with spacing 1, 1, 1 (how published tables report it) */
    size_t n_pred;    /* voxels of the class in the prediction */
    size_t n_truth;   /* and in the truth */
} fs_class_scores;

/* Scores for classes 1..n_classes-1 of one case: out[c-1] for class c.
 * pred, truth: u8 [shape[0], shape[1], shape[2]] = [nz, ny, nx];
 * spacing[3]: mm along x, y, z. Labels >= n_classes are ignored. Fails only
 * on bad arguments or when memory runs out. */
int fs_metrics_case(const uint8_t *pred, const uint8_t *truth, const size_t shape[3],
                    const double spacing[3], size_t n_classes, fs_class_scores *out);

/* One class (voxels equal to cls) with the empty-mask convention. */
int fs_metrics_class(const uint8_t *pred, const uint8_t *truth, const size_t shape[3],
                     const double spacing[3], unsigned cls, fs_class_scores *out);

/* 2|A∩B| / (|A|+|B|) over non-zero voxels of two binary masks [nz, ny, nx];
 * 0 when both are empty (medpy's dc). */
double fs_metrics_dsc(const uint8_t *a, const uint8_t *b, const size_t shape[3]);

/* medpy's hd95 of two binary masks (non-zero = object) [nz, ny, nx] with
 * spacing (x, y, z); both must be non-empty (an error otherwise, as medpy
 * raises). Uses an exact distance transform over the bounding box of A∪B. */
int fs_metrics_hd95(const uint8_t *a, const uint8_t *b, const size_t shape[3],
                    const double spacing[3], double *out);

/* The same by brute force over all pairs of surface voxels: O(|SA|*|SB|),
 * for tests only. */
int fs_metrics_hd95_naive(const uint8_t *a, const uint8_t *b, const size_t shape[3],
                          const double spacing[3], double *out);

/* Exact squared Euclidean distance transform in place (Felzenszwalb and
 * Huttenlocher's separable lower envelope of parabolas, O(N)): f is
 * [nz, ny, nx] with 0 at feature voxels and INFINITY elsewhere; on return
 * f[v] is the squared distance in mm (spacing x, y, z) from v to the nearest
 * feature voxel (INFINITY if there is none). */
int fs_metrics_edt_sq(double *f, const size_t shape[3], const double spacing[3]);

#endif
