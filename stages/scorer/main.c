/* scorer: per test case and class DSC and HD95 (TransUNet/SAMed protocol)
 * of predicted label volumes against the loader's test volumes; writes
 * scores.json, scores.csv and scores.md and prints the Markdown table. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/metrics.h"
#include "data/report.h"
#include "data/shard.h"
#include "io/nifti.h"

static const char usage[] =
    "usage: scorer --truth DIR --pred DIR --out DIR [options]\n"
    "\n"
    "Scores predicted label volumes against the test volumes: per case and\n"
    "class, 3D DSC and HD95 (95th percentile of the symmetric surface\n"
    "distances, in mm and in voxels), as TransUNet and SAMed compute them.\n"
    "Writes scores.json, scores.csv and scores.md into DIR and prints the\n"
    "Markdown table.\n"
    "\n"
    "  --truth DIR          fewsam.volume files <case>.h5 (the loader's test/)\n"
    "  --pred DIR           a prediction per case: <case>.h5 (fewsam.prediction),\n"
    "                       <case>.nii.gz or <case>.nii (labels in the voxel grid\n"
    "                       of the test volume, any orientation)\n"
    "  --out DIR            output folder (created)\n"
    "  --classes LIST       comma-separated class numbers to score (default: all\n"
    "                       but background)\n"
    "  --compare NAME=FILE  add the mean row of another run's scores.json to the\n"
    "                       Markdown table (repeatable)\n"
    "  -h, --help           this help\n"
    "\n"
    "Convention (theirs): a prediction that is non-empty where the truth is\n"
    "empty scores DSC 1, HD95 0; an empty prediction scores DSC 0, HD95 0.\n";

#define MAX_COMPARE 16

typedef struct {
    const char *truth, *pred, *out;
    long *classes;
    size_t n_classes_opt;
    const char *compare_name[MAX_COMPARE], *compare_path[MAX_COMPARE];
    char *compare_arg[MAX_COMPARE];
    size_t n_compare;
} options;

static void parse(options *o, int argc, char **argv) {
    static const struct option longs[] = {
        {"truth", required_argument, 0, 't'}, {"pred", required_argument, 0, 'p'},
        {"out", required_argument, 0, 'o'},   {"classes", required_argument, 0, 'c'},
        {"compare", required_argument, 0, 'C'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 't': o->truth = optarg; break;
        case 'p': o->pred = optarg; break;
        case 'o': o->out = optarg; break;
        case 'c':
            free(o->classes);
            o->classes = fs_cli_long_list("classes", optarg, &o->n_classes_opt);
            for (size_t i = 0; i < o->n_classes_opt; i++)
                if (o->classes[i] < 1 || o->classes[i] > 255)
                    fs_cli_usage_error("--classes: %ld is not a class number (1 to 255)", o->classes[i]);
            break;
        case 'C': {
            if (o->n_compare == MAX_COMPARE) fs_cli_usage_error("--compare: at most %d runs", MAX_COMPARE);
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) fs_cli_usage_error("--compare: expected NAME=FILE, got '%s'", optarg);
            char *arg = strdup(optarg);
            if (!arg) fs_cli_usage_error("out of memory");
            arg[eq - optarg] = 0;
            o->compare_arg[o->n_compare] = arg;
            o->compare_name[o->n_compare] = arg;
            o->compare_path[o->n_compare] = arg + (eq - optarg) + 1;
            o->n_compare++;
            break;
        }
        case 'h': fputs(usage, stdout); exit(FS_EXIT_OK);
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->truth) fs_cli_usage_error("--truth DIR is required");
    if (!o->pred) fs_cli_usage_error("--pred DIR is required");
    if (!o->out) fs_cli_usage_error("--out DIR is required");
}

/* ---- cases ---- */

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls > lx && !strcmp(s + ls - lx, suffix);
}

/* The case name of a file name with one of the known suffixes, or NULL. */
static char *case_of(const char *name, int with_nifti) {
    static const char *const sfx[] = {".h5", ".nii.gz", ".nii"};
    for (int i = 0; i < (with_nifti ? 3 : 1); i++)
        if (ends_with(name, sfx[i]) && name[0] != '.') return strndup(name, strlen(name) - strlen(sfx[i]));
    return NULL;
}

/* Truth cases: the *.h5 files of dir, sorted. */
static int list_cases(const char *dir, char ***cases, size_t *n) {
    char **names;
    size_t count;
    if (!fs_is_dir(dir)) return fs_error("cannot read '%s': not a directory", dir);
    if (fs_list_dir(dir, &names, &count)) return FS_ERR;
    *cases = calloc(count ? count : 1, sizeof **cases);
    *n = 0;
    if (!*cases) {
        fs_free_list(names, count);
        return fs_error("out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        char *c = case_of(names[i], 0);
        if (c) (*cases)[(*n)++] = c;
    }
    fs_free_list(names, count);
    if (!*n) {
        free(*cases);
        return fs_error("no test volumes (<case>.h5) in '%s'", dir);
    }
    return FS_OK;
}

/* The prediction file of a case: <case>.h5, .nii.gz or .nii in pred_dir. */
static int find_prediction(const char *pred_dir, const char *case_id, char *path, size_t n) {
    static const char *const sfx[] = {".h5", ".nii.gz", ".nii"};
    char name[1024];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s%s", case_id, sfx[i]);
        if (fs_path_join(path, n, pred_dir, name)) return FS_ERR;
        if (fs_is_file(path)) return FS_OK;
    }
    return fs_error("no prediction for case '%s' in '%s' (looked for %s.h5, .nii.gz, .nii)", case_id, pred_dir,
                    case_id);
}

/* Warns about predictions that match no test case (a wrong folder, or
 * cases left out of the test set). */
static void warn_extra_predictions(const char *pred_dir, char **cases, size_t n) {
    char **names;
    size_t count;
    if (fs_list_dir(pred_dir, &names, &count)) return;
    size_t extra = 0;
    for (size_t i = 0; i < count; i++) {
        char *c = case_of(names[i], 1);
        if (!c) continue;
        int found = 0;
        for (size_t k = 0; k < n && !found; k++) found = !strcmp(cases[k], c);
        if (!found && extra++ < 5) fs_warn("prediction '%s/%s' matches no test case in the truth folder", pred_dir, names[i]);
        free(c);
    }
    if (extra > 5) fs_warn("... and %zu more predictions without a test case", extra - 5);
    fs_free_list(names, count);
}

/* A predicted label volume as u8 [nz, ny, nx]: a fewsam.prediction, or a
 * NIfTI image turned to the canonical orientation (as the test volumes are)
 * with values rounded to labels. */
static int read_prediction(const char *path, fs_tensor *label, double spacing[3]) {
    memset(label, 0, sizeof *label);
    if (ends_with(path, ".h5")) {
        fs_prediction p;
        if (fs_prediction_read(path, &p)) return FS_ERR;
        *label = p.label.data;
        memcpy(spacing, p.label.spacing, 3 * sizeof *spacing);
        p.label.data.data = NULL;
        p.label.data.owned = 0;
        fs_prediction_free(&p);
        return FS_OK;
    }
    fs_volume v;
    memset(&v, 0, sizeof v);
    if (fs_nifti_read(path, &v)) return FS_ERR;
    if (fs_volume_canonical(&v)) {
        fs_volume_free(&v);
        return fs_error_wrap("'%s'", path);
    }
    if (v.data.dtype != FS_F32 || v.data.ndim != 3) {
        fs_volume_free(&v);
        return fs_error("'%s': expected a 3D volume", path);
    }
    if (fs_tensor_alloc(label, FS_U8, 3, v.data.shape)) {
        fs_volume_free(&v);
        return FS_ERR;
    }
    const float *x = v.data.data;
    uint8_t *y = label->data;
    size_t n = fs_tensor_numel(label);
    for (size_t i = 0; i < n; i++) {
        float r = rintf(x[i]);
        if (!(r >= 0 && r <= 255)) {
            fs_error("'%s': voxel %zu holds %g, not a label (0 to 255)", path, i, (double)x[i]);
            fs_tensor_free(label);
            fs_volume_free(&v);
            return FS_ERR;
        }
        y[i] = (uint8_t)r;
    }
    memcpy(spacing, v.spacing, 3 * sizeof *spacing);
    fs_volume_free(&v);
    return FS_OK;
}

/* ---- main ---- */

typedef struct {
    options o;
    char **cases;
    size_t n_cases;
    fs_shard_meta meta;        /* of the first truth file */
    char first_truth[4096];
    unsigned *ids;             /* scored class numbers */
    size_t n_ids;
    fs_report report;
} scorer;

/* The class list: --classes or every class but background. */
static int choose_classes(scorer *S) {
    size_t nc = S->meta.n_classes;
    if (nc < 2) return fs_error("'%s': no foreground class (%zu class names)", S->first_truth, nc);
    S->n_ids = S->o.classes ? S->o.n_classes_opt : nc - 1;
    S->ids = calloc(S->n_ids, sizeof *S->ids);
    const char **names = calloc(S->n_ids, sizeof *names);
    if (!S->ids || !names) {
        free(names);
        return fs_error("out of memory");
    }
    for (size_t i = 0; i < S->n_ids; i++) {
        long c = S->o.classes ? S->o.classes[i] : (long)i + 1;
        if (c < 1 || (size_t)c >= nc) {
            free(names);
            return fs_error("--classes: class %ld is not in 1..%zu (the classes of '%s')", c, nc - 1, S->first_truth);
        }
        for (size_t j = 0; j < i; j++)
            if (S->ids[j] == (unsigned)c) {
                free(names);
                return fs_error("--classes: class %ld is listed twice", c);
            }
        S->ids[i] = (unsigned)c;
        names[i] = S->meta.class_names[c];
    }
    int rc = fs_report_init(&S->report, S->meta.dataset, S->n_ids, names);
    free(names);
    return rc;
}

static int same_classes(const fs_shard_meta *a, const fs_shard_meta *b) {
    if (a->n_classes != b->n_classes) return 0;
    for (size_t i = 0; i < a->n_classes; i++)
        if (strcmp(a->class_names[i], b->class_names[i])) return 0;
    return 1;
}

/* Case i's scores of the chosen classes into scores[n_ids]. */
static int score_case(scorer *S, size_t i, fs_class_scores *scores) {
    const char *id = S->cases[i];
    char tpath[4096], ppath[4096], name[1024];
    snprintf(name, sizeof name, "%s.h5", id);
    if (fs_path_join(tpath, sizeof tpath, S->o.truth, name)) return FS_ERR;
    if (find_prediction(S->o.pred, id, ppath, sizeof ppath)) return FS_ERR;
    fs_case_volume t;
    if (fs_case_volume_read(tpath, &t)) return FS_ERR;
    if (i == 0) {
        snprintf(S->first_truth, sizeof S->first_truth, "%s", tpath);
        if (fs_shard_meta_copy(&S->meta, &t.meta) || choose_classes(S)) {
            fs_case_volume_free(&t);
            return FS_ERR;
        }
    } else if (!same_classes(&S->meta, &t.meta)) {
        fs_case_volume_free(&t);
        return fs_error("'%s': its class names differ from those of '%s'", tpath, S->first_truth);
    }
    fs_tensor pred;
    double pspacing[3];
    if (read_prediction(ppath, &pred, pspacing)) {
        fs_case_volume_free(&t);
        return FS_ERR;
    }
    int rc = FS_OK;
    if (!fs_shape_equal(&pred, &t.label)) {
        char a[128], b[128];
        rc = fs_error("prediction '%s' has shape %s but truth '%s' has %s", ppath, fs_shape_str(&pred, a, sizeof a),
                      tpath, fs_shape_str(&t.label, b, sizeof b));
    }
    const double *sp = t.image.spacing;
    if (!rc)
        for (int a = 0; a < 3; a++)
            if (fabs(pspacing[a] - sp[a]) > 1e-3 * sp[a]) {
                fs_warn("'%s': spacing %g x %g x %g differs from the truth's %g x %g x %g; scoring with the truth's",
                        ppath, pspacing[0], pspacing[1], pspacing[2], sp[0], sp[1], sp[2]);
                break;
            }
    if (!rc) {
        /* a NIfTI prediction can hold any label; those past the classes score nothing */
        const uint8_t *pl = pred.data;
        size_t n = fs_tensor_numel(&pred), stray = 0;
        for (size_t v = 0; v < n; v++) stray += pl[v] >= S->meta.n_classes;
        if (stray)
            fs_warn("'%s': %zu voxels hold labels past the %zu classes of the truth; they count as background",
                    ppath, stray, S->meta.n_classes);
    }
    if (!rc) {
        const size_t *sh = t.label.shape;
        if (S->o.classes) { /* only the classes asked for: HD95 is the costly part */
            for (size_t k = 0; k < S->n_ids && !rc; k++)
                rc = fs_metrics_class(pred.data, t.label.data, sh, sp, S->ids[k], &scores[k]);
        } else { /* every class, 1..n_classes - 1 in order: the ids */
            rc = fs_metrics_case(pred.data, t.label.data, sh, sp, S->meta.n_classes, scores);
        }
        if (rc) fs_error_wrap("scoring case '%s'", id);
    }
    if (!rc) rc = fs_report_add_case(&S->report, id, scores);
    if (!rc) {
        double d = 0, h = 0;
        for (size_t k = 0; k < S->n_ids; k++) d += scores[k].dsc, h += scores[k].hd95_mm;
        fs_info("%s: DSC %.2f%%, HD95 %.2f mm (case %zu of %zu)", id, 100 * d / (double)S->n_ids,
                h / (double)S->n_ids, i + 1, S->n_cases);
    }
    fs_tensor_free(&pred);
    fs_case_volume_free(&t);
    return rc;
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    scorer S;
    memset(&S, 0, sizeof S);
    parse(&S.o, argc, argv);
    if (!fs_is_dir(S.o.pred)) {
        fs_error("cannot read predictions '%s': not a directory", S.o.pred);
        fs_cli_die();
    }
    if (list_cases(S.o.truth, &S.cases, &S.n_cases)) fs_cli_die();
    warn_extra_predictions(S.o.pred, S.cases, S.n_cases);
    /* Every case needs its prediction: find out before the long part. */
    char path[4096];
    for (size_t i = 0; i < S.n_cases; i++)
        if (find_prediction(S.o.pred, S.cases[i], path, sizeof path)) fs_cli_die();
    fs_info("scoring %zu cases from '%s' against '%s'", S.n_cases, S.o.pred, S.o.truth);

    for (size_t i = 0; i < S.o.n_compare; i++)
        if (!fs_is_file(S.o.compare_path[i])) {
            fs_error("--compare %s: cannot read '%s': no such file", S.o.compare_name[i], S.o.compare_path[i]);
            fs_cli_die();
        }

    fs_class_scores scores[255]; /* of one case */
    for (size_t i = 0; i < S.n_cases; i++)
        if (score_case(&S, i, scores)) fs_cli_die();
    for (size_t i = 0; i < S.o.n_compare; i++)
        if (fs_report_add_compare(&S.report, S.o.compare_name[i], S.o.compare_path[i])) fs_cli_die();
    if (fs_mkdirs(S.o.out) || fs_report_write_dir(&S.report, S.o.out)) fs_cli_die();
    if (fs_report_write_markdown(&S.report, stdout)) fs_cli_die();
    fflush(stdout);
    fs_info("wrote %s/scores.json, scores.csv, scores.md", S.o.out);

    fs_report_free(&S.report);
    fs_shard_meta_free(&S.meta);
    free(S.ids);
    for (size_t i = 0; i < S.n_cases; i++) free(S.cases[i]);
    free(S.cases);
    free(S.o.classes);
    for (size_t i = 0; i < S.o.n_compare; i++) free(S.o.compare_arg[i]);
    return FS_EXIT_OK;
}
