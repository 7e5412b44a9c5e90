/* metrics: DSC and medpy-style HD95 on hand-built and random volumes. */
#include "test.h"

#include <stdint.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "data/metrics.h"
#include "data/report.h"

static const double UNIT[3] = {1, 1, 1};

#define IDX(s, z, y, x) (((size_t)(z) * (s)[1] + (size_t)(y)) * (s)[2] + (size_t)(x))

static uint8_t *vol(const size_t s[3]) { return calloc(s[0] * s[1] * s[2], 1); }

/* Sets the box [z0,z1) x [y0,y1) x [x0,x1) to v. */
static void fill_box(uint8_t *m, const size_t s[3], size_t z0, size_t z1, size_t y0, size_t y1, size_t x0,
                     size_t x1, uint8_t v) {
    for (size_t z = z0; z < z1; z++)
        for (size_t y = y0; y < y1; y++)
            for (size_t x = x0; x < x1; x++) m[IDX(s, z, y, x)] = v;
}

static void identical_masks(void) {
    size_t s[3] = {12, 14, 16};
    uint8_t *a = vol(s);
    fill_box(a, s, 2, 9, 3, 10, 4, 13, 1);
    double h;
    CHECK(fs_metrics_hd95(a, a, s, UNIT, &h) == FS_OK);
    CHECK(h == 0);
    CHECK(fs_metrics_dsc(a, a, s) == 1.0);
    fs_class_scores sc;
    double sp[3] = {0.7, 0.8, 2.5};
    CHECK(fs_metrics_class(a, a, s, sp, 1, &sc) == FS_OK);
    CHECK(sc.dsc == 1.0 && sc.hd95_mm == 0 && sc.hd95_vox == 0);
    free(a);
}

/* Lines of 20 voxels shifted by 5: directed distances 5,4,3,2,1 then zeros
 * both ways; 40 values, 30 of them 0 and two each of 1..5. Index
 * 0.95 * 39 = 37.05 lies between sorted[37] = 4 and sorted[38] = 5: 4.05. */
static void shifted_lines_by_hand(void) {
    size_t s[3] = {5, 5, 30};
    uint8_t *a = vol(s), *b = vol(s);
    fill_box(a, s, 2, 3, 2, 3, 0, 20, 1);
    fill_box(b, s, 2, 3, 2, 3, 5, 25, 1);
    double h, hn;
    CHECK(fs_metrics_hd95(a, b, s, UNIT, &h) == FS_OK);
    CHECK_NEAR(h, 4.05, 1e-12);
    CHECK(fs_metrics_hd95_naive(a, b, s, UNIT, &hn) == FS_OK);
    CHECK_NEAR(hn, 4.05, 1e-12);
    double sp[3] = {0.8, 3.0, 7.0};
    CHECK(fs_metrics_hd95(a, b, s, sp, &h) == FS_OK);
    CHECK_NEAR(h, 4.05 * 0.8, 1e-12);
    CHECK_NEAR(fs_metrics_dsc(a, b, s), 2.0 * 15 / 40, 1e-15);
    free(a);
    free(b);
}

/* The same lines along z with spacing 2.5 there: mm = 2.5 * voxels. */
static void anisotropic_shift_along_z(void) {
    size_t s[3] = {30, 4, 4};
    uint8_t *a = vol(s), *b = vol(s);
    fill_box(a, s, 0, 20, 1, 2, 1, 2, 3);
    fill_box(b, s, 5, 25, 1, 2, 1, 2, 3);
    double sp[3] = {0.9, 0.9, 2.5};
    fs_class_scores sc;
    CHECK(fs_metrics_class(b, a, s, sp, 3, &sc) == FS_OK);
    CHECK_NEAR(sc.hd95_vox, 4.05, 1e-12);
    CHECK_NEAR(sc.hd95_mm, 4.05 * 2.5, 1e-12);
    CHECK_NEAR(sc.dsc, 0.75, 1e-15);
    free(a);
    free(b);
}

/* Two cubes shifted along x: the EDT path against the brute force, and the
 * mm value is the voxel value scaled by the x spacing. */
static void shifted_cubes(void) {
    size_t s[3] = {14, 14, 20};
    for (size_t k = 1; k <= 4; k++) {
        uint8_t *a = vol(s), *b = vol(s);
        fill_box(a, s, 3, 10, 3, 10, 3, 10, 1);
        fill_box(b, s, 3, 10, 3, 10, 3 + k, 10 + k, 1);
        double h, hn, hm;
        CHECK(fs_metrics_hd95(a, b, s, UNIT, &h) == FS_OK);
        CHECK(fs_metrics_hd95_naive(a, b, s, UNIT, &hn) == FS_OK);
        CHECK_NEAR(h, hn, 1e-12);
        CHECK(h > 0 && h <= (double)k);
        double sp[3] = {1.5, 1, 1};
        CHECK(fs_metrics_hd95(a, b, s, sp, &hm) == FS_OK);
        CHECK_NEAR(hm, 1.5 * h, 1e-12);
        CHECK_NEAR(fs_metrics_dsc(a, b, s), (double)(7 - k) / 7.0, 1e-12);
        free(a);
        free(b);
    }
}

static void empty_conventions(void) {
    size_t s[3] = {6, 6, 6};
    uint8_t *e = vol(s), *m = vol(s);
    fill_box(m, s, 1, 4, 1, 4, 1, 4, 2);
    fs_class_scores sc;
    /* prediction non-empty, truth empty: DSC 1, HD95 0 */
    CHECK(fs_metrics_class(m, e, s, UNIT, 2, &sc) == FS_OK);
    CHECK(sc.dsc == 1.0 && sc.hd95_mm == 0 && sc.hd95_vox == 0 && sc.n_truth == 0 && sc.n_pred == 27);
    /* prediction empty: DSC 0, HD95 0 whatever the truth */
    CHECK(fs_metrics_class(e, m, s, UNIT, 2, &sc) == FS_OK);
    CHECK(sc.dsc == 0 && sc.hd95_mm == 0 && sc.hd95_vox == 0);
    CHECK(fs_metrics_class(e, e, s, UNIT, 2, &sc) == FS_OK);
    CHECK(sc.dsc == 0 && sc.hd95_mm == 0 && sc.hd95_vox == 0);
    /* the same through the per-case entry point */
    fs_class_scores all[3];
    CHECK(fs_metrics_case(m, e, s, UNIT, 4, all) == FS_OK);
    CHECK(all[0].dsc == 0 && all[1].dsc == 1.0 && all[2].dsc == 0);
    /* the raw hd95 refuses empty masks, as medpy does */
    double h;
    CHECK(fs_metrics_hd95(m, e, s, UNIT, &h) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "empty") != NULL);
    free(e);
    free(m);
}

/* One voxel each: the distance between them, whatever the percentile. */
static void one_voxel_objects(void) {
    size_t s[3] = {5, 6, 7};
    uint8_t *a = vol(s), *b = vol(s);
    a[IDX(s, 1, 2, 1)] = 1;
    b[IDX(s, 3, 5, 4)] = 1;
    double sp[3] = {0.5, 2.0, 3.0}, h;
    CHECK(fs_metrics_hd95(a, b, s, sp, &h) == FS_OK);
    CHECK_NEAR(h, sqrt(1.5 * 1.5 + 6.0 * 6.0 + 6.0 * 6.0), 1e-12);
    CHECK(fs_metrics_hd95(a, a, s, sp, &h) == FS_OK && h == 0);
    CHECK(fs_metrics_dsc(a, b, s) == 0);
    free(a);
    free(b);
}

/* An object filling the whole array has surface on every face (medpy's
 * erosion pads with background); against its centre voxel: 7 distances of 1
 * (6 faces and the centre's own), 12 of sqrt 2, 8 of sqrt 3; the 95th
 * percentile (index 24.7 of 27) is sqrt 3. */
static void object_touching_array_edge(void) {
    size_t s[3] = {3, 3, 3};
    uint8_t *a = vol(s), *b = vol(s);
    memset(a, 1, 27);
    b[13] = 1;
    double h;
    CHECK(fs_metrics_hd95(a, b, s, UNIT, &h) == FS_OK);
    CHECK_NEAR(h, sqrt(3.0), 1e-12);
    /* a half-space touching three faces, against a box inside */
    size_t t[3] = {7, 8, 9};
    uint8_t *c = vol(t), *d = vol(t);
    fill_box(c, t, 0, 7, 0, 8, 0, 4, 1);
    fill_box(d, t, 2, 5, 2, 6, 3, 8, 1);
    double hn;
    CHECK(fs_metrics_hd95(c, d, t, UNIT, &h) == FS_OK);
    CHECK(fs_metrics_hd95_naive(c, d, t, UNIT, &hn) == FS_OK);
    CHECK_NEAR(h, hn, 1e-12);
    free(a);
    free(b);
    free(c);
    free(d);
}

/* The crop must not invent surface: an object strictly inside a big array
 * scores the same as in a tight array one voxel larger around it. */
static void crop_matches_tight_array(void) {
    size_t big[3] = {30, 40, 50}, tight[3] = {9, 10, 11};
    uint8_t *a = vol(big), *b = vol(big), *ta = vol(tight), *tb = vol(tight);
    fill_box(a, big, 11, 17, 21, 28, 31, 39, 1);
    fill_box(b, big, 10, 18, 20, 29, 30, 38, 1);
    fill_box(b, big, 12, 14, 22, 24, 38, 40, 1);
    fill_box(ta, tight, 2, 8, 2, 9, 2, 10, 1);
    fill_box(tb, tight, 1, 9, 1, 10, 1, 9, 1);
    fill_box(tb, tight, 3, 5, 3, 5, 9, 11, 1);
    /* tb touches the tight array's x edge: compare with a tight+1 copy instead */
    size_t t2[3] = {10, 11, 12};
    uint8_t *ua = vol(t2), *ub = vol(t2);
    for (size_t z = 0; z < 9; z++)
        for (size_t y = 0; y < 10; y++)
            for (size_t x = 0; x < 11; x++) {
                ua[IDX(t2, z, y, x)] = ta[IDX(tight, z, y, x)];
                ub[IDX(t2, z, y, x)] = tb[IDX(tight, z, y, x)];
            }
    double sp[3] = {0.6, 0.7, 3.0}, h1, h2, hn;
    CHECK(fs_metrics_hd95(a, b, big, sp, &h1) == FS_OK);
    CHECK(fs_metrics_hd95(ua, ub, t2, sp, &h2) == FS_OK);
    CHECK(fs_metrics_hd95_naive(ua, ub, t2, sp, &hn) == FS_OK);
    CHECK_NEAR(h1, h2, 1e-12);
    CHECK_NEAR(h1, hn, 1e-12);
    free(a), free(b), free(ta), free(tb), free(ua), free(ub);
}

/* Random blobs: unions of random ellipsoids and boxes, some at the edges. */
static void random_blobs(fs_rng *r, uint8_t *m, const size_t s[3], uint8_t v) {
    int nblobs = 1 + (int)fs_rng_below(r, 4);
    for (int k = 0; k < nblobs; k++) {
        double c[3], rad[3];
        for (int a = 0; a < 3; a++) {
            c[a] = fs_rng_range(r, -1, (double)s[a]);
            rad[a] = fs_rng_range(r, 0.4, (double)s[a] / 2.5 + 0.5);
        }
        int boxy = fs_rng_below(r, 3) == 0;
        for (size_t z = 0; z < s[0]; z++)
            for (size_t y = 0; y < s[1]; y++)
                for (size_t x = 0; x < s[2]; x++) {
                    double d[3] = {((double)z - c[0]) / rad[0], ((double)y - c[1]) / rad[1],
                                   ((double)x - c[2]) / rad[2]};
                    int in = boxy ? fabs(d[0]) <= 1 && fabs(d[1]) <= 1 && fabs(d[2]) <= 1
                                  : d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= 1;
                    if (in) m[IDX(s, z, y, x)] = v;
                }
    }
    /* sprinkle a few isolated voxels (one-voxel components) */
    size_t n = s[0] * s[1] * s[2];
    for (int k = 0; k < 3; k++)
        if (fs_rng_below(r, 2)) m[fs_rng_below(r, n)] = v;
}

static void edt_matches_naive_on_random(void) {
    fs_rng r;
    fs_rng_init(&r, 20240601, 1);
    int compared = 0;
    for (int trial = 0; trial < 20; trial++) {
        size_t s[3];
        for (int a = 0; a < 3; a++) s[a] = 1 + fs_rng_below(&r, 14);
        double sp[3];
        for (int a = 0; a < 3; a++) sp[a] = fs_rng_below(&r, 3) == 0 ? 1.0 : fs_rng_range(&r, 0.3, 5.0);
        uint8_t *a = vol(s), *b = vol(s);
        random_blobs(&r, a, s, 1);
        random_blobs(&r, b, s, 1);
        double h, hn, hv, hvn;
        int ea = !memchr(a, 1, s[0] * s[1] * s[2]), eb = !memchr(b, 1, s[0] * s[1] * s[2]);
        if (ea || eb) {
            CHECK(fs_metrics_hd95(a, b, s, sp, &h) == FS_ERR);
        } else {
            CHECK(fs_metrics_hd95(a, b, s, sp, &h) == FS_OK);
            CHECK(fs_metrics_hd95_naive(a, b, s, sp, &hn) == FS_OK);
            CHECKF(fabs(h - hn) <= 1e-9, "trial %d shape %zux%zux%zu: %.12g vs %.12g", trial, s[0], s[1], s[2], h, hn);
            CHECK(fs_metrics_hd95(a, b, s, UNIT, &hv) == FS_OK);
            CHECK(fs_metrics_hd95_naive(a, b, s, UNIT, &hvn) == FS_OK);
            CHECK_NEAR(hv, hvn, 1e-9);
            /* symmetric by construction */
            CHECK(fs_metrics_hd95(b, a, s, sp, &hn) == FS_OK);
            CHECK_NEAR(h, hn, 1e-9);
            compared++;
        }
        free(a);
        free(b);
    }
    CHECKF(compared >= 15, "only %d of 20 trials had two non-empty masks", compared);
}

/* Multi-class volumes: the single-pass per-case scores equal the per-class
 * ones and the brute force on the extracted binary masks. */
static void case_scores_match_per_class(void) {
    fs_rng r;
    fs_rng_init(&r, 7, 2);
    for (int trial = 0; trial < 5; trial++) {
        size_t s[3] = {4 + fs_rng_below(&r, 8), 5 + fs_rng_below(&r, 8), 6 + fs_rng_below(&r, 8)};
        size_t n = s[0] * s[1] * s[2];
        double sp[3] = {fs_rng_range(&r, 0.5, 1.5), fs_rng_range(&r, 0.5, 1.5), fs_rng_range(&r, 1, 5)};
        uint8_t *p = vol(s), *t = vol(s), *bp = vol(s), *bt = vol(s);
        for (uint8_t c = 1; c <= 4; c++) {
            if (c != 3) random_blobs(&r, t, s, c); /* class 3 absent from the truth */
            if (c != 2) random_blobs(&r, p, s, c); /* class 2 absent from the prediction */
        }
        p[0] = 9; /* labels past the class count are ignored */
        fs_class_scores all[5], one;
        CHECK(fs_metrics_case(p, t, s, sp, 6, all) == FS_OK);
        for (unsigned c = 1; c <= 5; c++) {
            CHECK(fs_metrics_class(p, t, s, sp, c, &one) == FS_OK);
            const fs_class_scores *o = &all[c - 1];
            CHECK(o->dsc == one.dsc && o->hd95_mm == one.hd95_mm && o->hd95_vox == one.hd95_vox);
            CHECK(o->n_pred == one.n_pred && o->n_truth == one.n_truth);
            for (size_t i = 0; i < n; i++) bp[i] = p[i] == c, bt[i] = t[i] == c;
            if (!o->n_pred) {
                CHECK(o->dsc == 0 && o->hd95_mm == 0);
            } else if (!o->n_truth) {
                CHECK(o->dsc == 1 && o->hd95_mm == 0);
            } else {
                double hn, hvn;
                CHECK(fs_metrics_hd95_naive(bp, bt, s, sp, &hn) == FS_OK);
                CHECK(fs_metrics_hd95_naive(bp, bt, s, UNIT, &hvn) == FS_OK);
                CHECK_NEAR(o->hd95_mm, hn, 1e-9);
                CHECK_NEAR(o->hd95_vox, hvn, 1e-9);
                CHECK_NEAR(o->dsc, fs_metrics_dsc(bp, bt, s), 1e-15);
            }
        }
        CHECK(all[1].n_pred == 0 && all[2].n_truth == 0 && all[4].n_pred == 0);
        free(p), free(t), free(bp), free(bt);
    }
}

/* The distance transform itself against brute force. */
static void edt_exact(void) {
    fs_rng r;
    fs_rng_init(&r, 99, 3);
    size_t s[3] = {7, 9, 11};
    size_t n = s[0] * s[1] * s[2];
    double sp[3] = {0.7, 1.3, 2.9};
    double *f = malloc(n * sizeof *f);
    uint8_t *feat = vol(s);
    for (size_t i = 0; i < n; i++) feat[i] = fs_rng_below(&r, 40) == 0;
    feat[5] = 1;
    for (size_t i = 0; i < n; i++) f[i] = feat[i] ? 0 : INFINITY;
    CHECK(fs_metrics_edt_sq(f, s, sp) == FS_OK);
    for (size_t z = 0; z < s[0]; z++)
        for (size_t y = 0; y < s[1]; y++)
            for (size_t x = 0; x < s[2]; x++) {
                double best = INFINITY;
                for (size_t zz = 0; zz < s[0]; zz++)
                    for (size_t yy = 0; yy < s[1]; yy++)
                        for (size_t xx = 0; xx < s[2]; xx++) {
                            if (!feat[IDX(s, zz, yy, xx)]) continue;
                            double dz = ((double)z - zz) * sp[2], dy = ((double)y - yy) * sp[1],
                                   dx = ((double)x - xx) * sp[0];
                            double d = dz * dz + dy * dy + dx * dx;
                            if (d < best) best = d;
                        }
                CHECK_NEAR(f[IDX(s, z, y, x)], best, 1e-9);
            }
    /* no feature at all: everything stays infinite */
    for (size_t i = 0; i < n; i++) f[i] = INFINITY;
    CHECK(fs_metrics_edt_sq(f, s, sp) == FS_OK);
    CHECK(isinf(f[n / 2]));
    free(f);
    free(feat);
}

/* ---- report ---- */

static const char *const organs[8] = {"aorta", "gallbladder", "left kidney", "right kidney",
                                      "liver", "pancreas", "spleen", "stomach"};

/* Two synapse cases with known scores: class k scores DSC k/10 and 0.5 + k/10
 * in the two cases, HD95 k and 3k mm, 2k and 6k voxels. */
static int two_case_report(fs_report *r) {
    if (fs_report_init(r, "synapse", 8, organs)) return FS_ERR;
    fs_class_scores s[8];
    for (int c = 0; c < 2; c++) {
        for (int k = 0; k < 8; k++) {
            memset(&s[k], 0, sizeof s[k]);
            s[k].dsc = (c ? 0.5 : 0) + k / 10.0;
            s[k].hd95_mm = (c ? 3 : 1) * k;
            s[k].hd95_vox = (c ? 6 : 2) * k;
            s[k].n_pred = s[k].n_truth = 10;
        }
        s[0].n_pred = 0; /* counted in the note */
        if (fs_report_add_case(r, c ? "case0002" : "case0001", s)) return FS_ERR;
    }
    return FS_OK;
}

static char *slurp(const char *path) {
    unsigned char *d;
    size_t n;
    return fs_read_file(path, &d, &n) ? NULL : (char *)d;
}

static void report_means_and_reference(void) {
    fs_report r;
    CHECK(two_case_report(&r) == FS_OK);
    fs_class_scores m[8];
    double md, mm, mv;
    fs_report_means(&r, m, &md, &mm, &mv);
    CHECK_NEAR(m[3].dsc, 0.55, 1e-12);
    CHECK_NEAR(m[3].hd95_mm, 6, 1e-12);
    CHECK_NEAR(m[3].hd95_vox, 12, 1e-12);
    CHECK_NEAR(md, 0.25 + 0.35, 1e-12);
    CHECK_NEAR(mm, 2 * 3.5, 1e-12);
    CHECK_NEAR(mv, 4 * 3.5, 1e-12);
    const fs_report_reference *ref = fs_report_reference_for("synapse");
    CHECK(ref && ref->n_classes == 8 && ref->mean_dsc_percent == 81.88);
    CHECK(!strcmp(ref->class_names[4], "liver") && ref->dsc_percent[4] == 94.80);
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += ref->dsc_percent[k];
    CHECK_NEAR(sum / 8, ref->mean_dsc_percent, 0.01); /* the published mean is their mean */
    CHECK(fs_report_reference_for("brats") == NULL);
    fs_report_free(&r);
}

static void report_tables_and_compare(void) {
    const char *dir = test_tmp_dir("test_metrics_report");
    fs_report r, r2;
    CHECK(two_case_report(&r) == FS_OK);
    CHECK(fs_report_write_dir(&r, dir) == FS_OK);
    char path[600];
    snprintf(path, sizeof path, "%s/scores.md", dir);
    char *md = slurp(path);
    CHECK(md != NULL);
    int has = strstr(md, "| DSC (%) | 60.00 | 25.00 | 35.00 |") && strstr(md, "| HD95 (mm) | 7.00 |") &&
              strstr(md, "SAMed (Zhang & Liu 2023") && strstr(md, " DSC (%) | 81.88 | 87.77 | 69.11 | 80.45 |") &&
              strstr(md, "| case0002 HD95 (mm) |") && strstr(md, "2 case-class pairs had an empty prediction");
    free(md);
    CHECK(has);
    snprintf(path, sizeof path, "%s/scores.csv", dir);
    char *csv = slurp(path);
    CHECK(csv != NULL);
    int lines = 0;
    for (char *p = csv; *p; p++) lines += *p == '\n';
    has = !strncmp(csv, "case,class,dsc,hd95_mm,hd95_vox\ncase0001,aorta,0,0,0\n", 52);
    free(csv);
    CHECK(lines == 17 && has);

    /* a second run compared with the first: mean row from its scores.json */
    snprintf(path, sizeof path, "%s/scores.json", dir);
    const char *sub[2] = {"liver", "spleen"};
    CHECK(fs_report_init(&r2, "synapse", 2, sub) == FS_OK);
    fs_class_scores s[2] = {{.dsc = 0.9, .n_pred = 1, .n_truth = 1}, {.dsc = 0.8, .n_pred = 1, .n_truth = 1}};
    CHECK(fs_report_add_case(&r2, "case0001", s) == FS_OK);
    CHECK(fs_report_add_compare(&r2, "zero-shot", path) == FS_OK);
    CHECK(r2.n_compare == 1);
    CHECK_NEAR(r2.compare[0].dsc[0], 0.65, 1e-12);  /* liver: (0.4 + 0.9) / 2 */
    CHECK_NEAR(r2.compare[0].hd95_vox[1], 24, 1e-12); /* spleen: (12 + 36) / 2 */
    CHECK_NEAR(r2.compare[0].mean_dsc, 0.6, 1e-12);
    FILE *f = tmpfile();
    CHECK(f && fs_report_write_markdown(&r2, f) == FS_OK);
    char buf[8192];
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    /* the Mean column of comparison and reference rows averages our classes */
    CHECKF(strstr(buf, "Table 1) DSC (%) | 91.76 | 94.80 | 88.72 |") != NULL, "%s", buf);
    CHECKF(strstr(buf, "| zero-shot DSC (%) | 75.00 | 65.00 | 85.00 |") != NULL, "%s", buf);
    fs_report_free(&r2);
    fs_report_free(&r);
}

static void report_rejects_bad_compare(void) {
    const char *dir = test_tmp_dir("test_metrics_badjson");
    static const char *const bad[] = {
        "{\"mean\": {\"dsc\": {}}, \"mean_dsc\": ",     /* truncated */
        "{\"cases\": []}",                             /* not a scores.json */
        "[1, 2, 3]",                                   /* not an object */
        "{\"mean\": {}, \"mean_dsc\": 0.5} trailing",  /* trailing data */
        "{\"mean\": {\"a\": \"\\q\"}, \"mean_dsc\": 1}", /* bad escape */
        "",
    };
    fs_report r;
    const char *one[1] = {"liver"};
    CHECK(fs_report_init(&r, "x", 1, one) == FS_OK);
    char path[600];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.json", dir, i);
        FILE *f = fopen(path, "w");
        CHECK(f);
        fputs(bad[i], f);
        fclose(f);
        CHECKF(fs_report_add_compare(&r, "b", path) == FS_ERR, "case %zu accepted", i);
        CHECKF(strstr(fs_error_msg(), path) != NULL, "message does not name the file: %s", fs_error_msg());
    }
    /* deep nesting is refused, not a stack overflow */
    snprintf(path, sizeof path, "%s/deep.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f);
    for (int i = 0; i < 100000; i++) fputc('[', f);
    fclose(f);
    CHECK(fs_report_add_compare(&r, "b", path) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "nested") != NULL);
    CHECK(r.n_compare == 0);
    fs_report_free(&r);
}

/* A directory that does not exist: an error and no files anywhere. */
static void report_write_dir_all_or_nothing(void) {
    const char *dir = test_tmp_dir("test_metrics_nodir");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such", dir);
    fs_report r;
    CHECK(two_case_report(&r) == FS_OK);
    CHECK(fs_report_write_dir(&r, missing) == FS_ERR);
    char **names;
    size_t n;
    CHECK(fs_list_dir(dir, &names, &n) == FS_OK);
    fs_free_list(names, n);
    CHECK(n == 0);
    fs_report_free(&r);
}

int main(void) {
    RUN(identical_masks);
    RUN(shifted_lines_by_hand);
    RUN(anisotropic_shift_along_z);
    RUN(shifted_cubes);
    RUN(empty_conventions);
    RUN(one_voxel_objects);
    RUN(object_touching_array_edge);
    RUN(crop_matches_tight_array);
    RUN(edt_matches_naive_on_random);
    RUN(case_scores_match_per_class);
    RUN(edt_exact);
    RUN(report_means_and_reference);
    RUN(report_tables_and_compare);
    RUN(report_rejects_bad_compare);
    RUN(report_write_dir_all_or_nothing);
    TEST_EXIT();
}
