/* data/phantom: determinism, anatomy (classes, laterality, z extent),
 * intensities, variation across cases, speed, parameter checks. */
#include "test.h"

#include <time.h>

#include "core/error.h"
#include "data/phantom.h"

typedef struct {
    size_t count[FS_PHANTOM_N_CLASSES];
    double hu_mean[FS_PHANTOM_N_CLASSES], hu_sd[FS_PHANTOM_N_CLASSES];
    double ci[FS_PHANTOM_N_CLASSES], cj[FS_PHANTOM_N_CLASSES], ck[FS_PHANTOM_N_CLASSES];
    int kmin[FS_PHANTOM_N_CLASSES], kmax[FS_PHANTOM_N_CLASSES];
    float hu_min, hu_max;
    size_t n_body;
    int finite;
} stats;

static void free_pair(fs_volume *a, fs_volume *b) {
    fs_tensor_free(&a->data);
    fs_tensor_free(&b->data);
}

static void compute_stats(const fs_volume *ct, const fs_volume *lab, stats *s) {
    memset(s, 0, sizeof *s);
    size_t nz = ct->data.shape[0], ny = ct->data.shape[1], nx = ct->data.shape[2];
    const float *h = ct->data.data;
    const uint8_t *l = lab->data.data;
    double sum2[FS_PHANTOM_N_CLASSES] = {0};
    s->hu_min = INFINITY;
    s->hu_max = -INFINITY;
    s->finite = 1;
    for (int c = 0; c < FS_PHANTOM_N_CLASSES; c++) s->kmin[c] = -1, s->kmax[c] = -1;
    for (size_t k = 0; k < nz; k++)
        for (size_t j = 0; j < ny; j++)
            for (size_t i = 0; i < nx; i++) {
                size_t v = (k * ny + j) * nx + i;
                float x = h[v];
                int c = l[v] < FS_PHANTOM_N_CLASSES ? l[v] : 0;
                if (!isfinite(x)) s->finite = 0;
                if (x < s->hu_min) s->hu_min = x;
                if (x > s->hu_max) s->hu_max = x;
                s->n_body += x > -500;
                s->count[c]++;
                s->hu_mean[c] += x;
                sum2[c] += (double)x * x;
                s->ci[c] += (double)i, s->cj[c] += (double)j, s->ck[c] += (double)k;
                if (s->kmin[c] < 0) s->kmin[c] = (int)k;
                s->kmax[c] = (int)k;
            }
    for (int c = 0; c < FS_PHANTOM_N_CLASSES; c++) {
        double n = (double)s->count[c];
        if (!n) continue;
        s->hu_mean[c] /= n;
        s->hu_sd[c] = sqrt(fmax(0, sum2[c] / n - s->hu_mean[c] * s->hu_mean[c]));
        s->ci[c] /= n, s->cj[c] /= n, s->ck[c] /= n;
    }
}

static void class_table(void) {
    CHECK(fs_phantom_n_classes == FS_PHANTOM_N_CLASSES);
    CHECK(fs_phantom_n_classes == 7);
    CHECK(!strcmp(fs_phantom_class_names[0], "background"));
    CHECK(!strcmp(fs_phantom_class_names[FS_PHANTOM_LIVER], "liver"));
    CHECK(!strcmp(fs_phantom_class_names[FS_PHANTOM_AORTA], "aorta"));
    CHECK(isnan(fs_phantom_class_hu[0]));
    for (size_t a = 1; a < fs_phantom_n_classes; a++)
        for (size_t b = a + 1; b < fs_phantom_n_classes; b++) {
            CHECK(strcmp(fs_phantom_class_names[a], fs_phantom_class_names[b]) != 0);
            /* paired kidneys share an intensity; everything else differs */
            if (!(a == FS_PHANTOM_KIDNEY_L && b == FS_PHANTOM_KIDNEY_R))
                CHECK(fabs(fs_phantom_class_hu[a] - fs_phantom_class_hu[b]) >= 30);
        }
}

static void deterministic_per_case(void) {
    fs_volume a, al, b, bl, c, cl, d, dl;
    CHECK(fs_phantom_case(7, 3, NULL, &a, &al) == FS_OK);
    CHECK(fs_phantom_case(7, 3, &fs_phantom_default_params, &b, &bl) == FS_OK);
    CHECK(fs_phantom_case(7, 4, NULL, &c, &cl) == FS_OK);
    CHECK(fs_phantom_case(8, 3, NULL, &d, &dl) == FS_OK);
    CHECK(fs_shape_equal(&a.data, &b.data) && fs_shape_equal(&al.data, &bl.data));
    CHECK(a.data.dtype == FS_F32 && al.data.dtype == FS_U8);
    CHECK(!memcmp(a.data.data, b.data.data, fs_tensor_nbytes(&a.data)));
    CHECK(!memcmp(al.data.data, bl.data.data, fs_tensor_nbytes(&al.data)));
    CHECK(!memcmp(a.affine, b.affine, sizeof a.affine));
    CHECK(memcmp(a.data.data, c.data.data, fs_tensor_nbytes(&a.data)) != 0);
    CHECK(memcmp(al.data.data, cl.data.data, fs_tensor_nbytes(&al.data)) != 0);
    CHECK(memcmp(a.data.data, d.data.data, fs_tensor_nbytes(&a.data)) != 0);
    CHECK(memcmp(al.data.data, dl.data.data, fs_tensor_nbytes(&al.data)) != 0);
    free_pair(&a, &al);
    free_pair(&b, &bl);
    free_pair(&c, &cl);
    free_pair(&d, &dl);
}

static void geometry_is_lps_centred(void) {
    fs_volume ct, lab;
    CHECK(fs_phantom_case(1, 0, NULL, &ct, &lab) == FS_OK);
    CHECK(ct.data.ndim == 3 && ct.data.shape[0] == 48 && ct.data.shape[1] == 128 &&
          ct.data.shape[2] == 128);
    CHECK(fs_shape_equal(&ct.data, &lab.data));
    CHECK(ct.spacing[0] == 1.5 && ct.spacing[1] == 1.5 && ct.spacing[2] == 3.0);
    CHECK(!memcmp(ct.affine, lab.affine, sizeof ct.affine));
    /* i -> Left (x decreases in RAS), j -> Posterior, k -> Superior */
    CHECK(ct.affine[0][0] == -1.5 && ct.affine[1][1] == -1.5 && ct.affine[2][2] == 3.0);
    CHECK(ct.affine[0][1] == 0 && ct.affine[1][0] == 0 && ct.affine[2][0] == 0);
    CHECK(ct.affine[3][0] == 0 && ct.affine[3][3] == 1);
    /* the volume's centre sits at the world origin */
    double c[3] = {63.5, 63.5, 23.5};
    for (int r = 0; r < 3; r++) {
        double w = ct.affine[r][3];
        for (int a = 0; a < 3; a++) w += ct.affine[r][a] * c[a];
        CHECK_NEAR(w, 0, 1e-9);
    }
    free_pair(&ct, &lab);
}

/* Several cases: every class present with a plausible size, intensities
 * sane and consistent with the labels, anatomy on the expected side. */
static void anatomy_and_intensities(void) {
    /* voxel counts at 128x128x48 (1.5 x 1.5 x 3 mm), generous bounds */
    static const size_t lo[FS_PHANTOM_N_CLASSES] = {0, 15000, 800, 900, 900, 700, 1200};
    static const size_t hi[FS_PHANTOM_N_CLASSES] = {0, 90000, 9000, 7000, 7000, 5000, 13000};
    double kid_dz = 0;
    for (size_t ci = 0; ci < 8; ci++) {
        fs_volume ct, lab;
        CHECK(fs_phantom_case(2024, ci, NULL, &ct, &lab) == FS_OK);
        stats s;
        compute_stats(&ct, &lab, &s);
        free_pair(&ct, &lab);
        CHECK(s.finite);
        CHECKF(s.hu_min >= -1024 && s.hu_max <= 3071, "case %zu: HU %g..%g", ci,
               (double)s.hu_min, (double)s.hu_max);
        CHECKF(s.hu_min < -950 && s.hu_max > 600, "case %zu: no air or no bone (%g..%g)", ci,
               (double)s.hu_min, (double)s.hu_max);
        size_t n = 128 * 128 * 48;
        CHECKF(s.n_body > n / 4 && s.n_body < n * 3 / 4, "case %zu: body %zu voxels", ci,
               s.n_body);
        for (int c = 1; c < FS_PHANTOM_N_CLASSES; c++) {
            CHECKF(s.count[c] >= lo[c] && s.count[c] <= hi[c], "case %zu %s: %zu voxels", ci,
                   fs_phantom_class_names[c], s.count[c]);
            CHECKF(fabs(s.hu_mean[c] - fs_phantom_class_hu[c]) < 25,
                   "case %zu %s: mean %.1f HU, nominal %.0f", ci, fs_phantom_class_names[c],
                   s.hu_mean[c], fs_phantom_class_hu[c]);
            /* texture plus noise, no stray tissue under the label */
            CHECKF(s.hu_sd[c] > 5 && s.hu_sd[c] < 30, "case %zu %s: sd %.1f HU", ci,
                   fs_phantom_class_names[c], s.hu_sd[c]);
        }
        /* image columns run from the patient's right to left */
        CHECK(s.ci[FS_PHANTOM_LIVER] < 64 && s.ci[FS_PHANTOM_SPLEEN] > 64);
        CHECK(s.ci[FS_PHANTOM_KIDNEY_R] < 64 && s.ci[FS_PHANTOM_KIDNEY_L] > 64);
        CHECK(s.ci[FS_PHANTOM_STOMACH] > 64);
        /* the aorta lies in front of the kidneys, the stomach in front of it */
        CHECK(s.cj[FS_PHANTOM_AORTA] < s.cj[FS_PHANTOM_KIDNEY_L]);
        CHECK(s.cj[FS_PHANTOM_STOMACH] < s.cj[FS_PHANTOM_AORTA]);
        /* organs appear and disappear along z */
        for (int c = FS_PHANTOM_SPLEEN; c <= FS_PHANTOM_KIDNEY_R; c++)
            CHECKF(s.kmin[c] > 0 && s.kmax[c] < 47 && s.kmax[c] - s.kmin[c] >= 6,
                   "case %zu %s: slices %d..%d", ci, fs_phantom_class_names[c], s.kmin[c],
                   s.kmax[c]);
        CHECK(s.kmin[FS_PHANTOM_STOMACH] > 0);
        CHECK(s.ck[FS_PHANTOM_LIVER] > s.ck[FS_PHANTOM_KIDNEY_L]);
        kid_dz += s.ck[FS_PHANTOM_KIDNEY_L] - s.ck[FS_PHANTOM_KIDNEY_R];
    }
    CHECKF(kid_dz > 0, "right kidney not lower on average: %g", kid_dz); /* as in most people */
}

static double dice(const uint8_t *a, const uint8_t *b, size_t n, int c) {
    size_t ia = 0, ib = 0, both = 0;
    for (size_t i = 0; i < n; i++) {
        ia += a[i] == c;
        ib += b[i] == c;
        both += a[i] == c && b[i] == c;
    }
    return ia + ib ? 2.0 * (double)both / (double)(ia + ib) : 1;
}

static void organs_vary_across_cases(void) {
    fs_volume a, al, b, bl;
    CHECK(fs_phantom_case(5, 0, NULL, &a, &al) == FS_OK);
    CHECK(fs_phantom_case(5, 1, NULL, &b, &bl) == FS_OK);
    size_t n = fs_tensor_numel(&al.data);
    for (int c = 1; c < FS_PHANTOM_N_CLASSES; c++) {
        double d = dice(al.data.data, bl.data.data, n, c);
        CHECKF(d < 0.9, "%s: dice %.3f between cases 0 and 1", fs_phantom_class_names[c], d);
    }
    free_pair(&a, &al);
    free_pair(&b, &bl);
}

static void other_grids(void) {
    fs_phantom_params p = {80, 64, 20, {2.5, 3.0, 7.0}};
    fs_volume ct, lab;
    CHECK(fs_phantom_case(3, 11, &p, &ct, &lab) == FS_OK);
    CHECK(ct.data.shape[0] == 20 && ct.data.shape[1] == 64 && ct.data.shape[2] == 80);
    CHECK(ct.spacing[0] == 2.5 && ct.affine[2][2] == 7.0);
    stats s;
    compute_stats(&ct, &lab, &s);
    free_pair(&ct, &lab);
    for (int c = 1; c < FS_PHANTOM_N_CLASSES; c++)
        CHECKF(s.count[c] > 0, "%s missing on an 80x64x20 grid", fs_phantom_class_names[c]);
    fs_phantom_params tiny = {8, 8, 8, {1, 1, 1}};
    CHECK(fs_phantom_case(3, 11, &tiny, &ct, &lab) == FS_OK);
    free_pair(&ct, &lab);
}

static void rejects_bad_params(void) {
    fs_volume ct, lab;
    fs_phantom_params p = FS_PHANTOM_PARAMS_DEFAULT;
    p.nx = 0;
    CHECK(fs_phantom_case(1, 0, &p, &ct, &lab) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "phantom") && strstr(fs_error_msg(), "size"));
    CHECK(ct.data.data == NULL && lab.data.data == NULL);
    p.nx = 1u << 20;
    CHECK(fs_phantom_case(1, 0, &p, &ct, &lab) == FS_ERR);
    p = fs_phantom_default_params;
    p.nx = p.ny = p.nz = 2048; /* each axis allowed, the total is not */
    CHECK(fs_phantom_case(1, 0, &p, &ct, &lab) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "too large") != NULL);
    p = fs_phantom_default_params;
    p.spacing[1] = NAN;
    CHECK(fs_phantom_case(1, 0, &p, &ct, &lab) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "spacing") != NULL);
    p.spacing[1] = -1;
    CHECK(fs_phantom_case(1, 0, &p, &ct, &lab) == FS_ERR);
}

static void default_case_is_fast(void) {
    struct timespec t0, t1;
    fs_volume ct, lab;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(fs_phantom_case(99, 42, NULL, &ct, &lab) == FS_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free_pair(&ct, &lab);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "phantom: one 128x128x48 case in %.3f s\n", dt);
    CHECKF(dt < 2.0, "%.3f s", dt);
}

int main(void) {
    RUN(class_table);
    RUN(deterministic_per_case);
    RUN(geometry_is_lps_centred);
    RUN(anatomy_and_intensities);
    RUN(organs_vary_across_cases);
    RUN(other_grids);
    RUN(rejects_bad_params);
    RUN(default_case_is_fast);
    TEST_EXIT();
}
