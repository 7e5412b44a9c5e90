/* loader: a data set in its native layout -> HDF5 shards.
 *   <out>/train/<case>.h5   fewsam.slices  (training slices)
 *   <out>/test/<case>.h5    fewsam.volume  (test volumes with geometry)
 *   <out>/index.json        what was written, the split, the provenance
 * The whole folder is built under a temporary name and renamed into place at
 * the end, so a failed run never leaves a partial data set behind. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "core/log.h"
#include "data/dataset.h"
#include "image/resize.h"
#include "data/shard.h"
#include "data/split.h"

static const char usage[] =
    "usage: loader --data KIND --out DIR [--in DIR] [options]\n"
    "\n"
    "Reads a data set in its native layout and writes HDF5 shards: training\n"
    "slices in DIR/train/<case>.h5, test volumes in DIR/test/<case>.h5, and\n"
    "DIR/index.json. Slices are axial, in one orientation for every case.\n"
    "\n"
    "  --data KIND          brats, synapse (raw RawData/Training layout),\n"
    "                       transunet (preprocessed train_npz/ + test_vol_h5/),\n"
    "                       demo (CT phantom, no --in)\n"
    "  --in DIR             the data set's folder\n"
    "  --out DIR            output folder (replaced if it holds an earlier loader output)\n"
    "  --labels MODE        BraTS: whole (label > 0, default) or regions\n"
    "                       (1 tumour core, 2 edema, 3 enhancing)\n"
    "  --test-cases LIST    comma-separated case ids or numbers for testing\n"
    "  --train-cases LIST   the same for training\n"
    "  --test-fraction F    seeded split when no list or standard split applies (0.25)\n"
    "  --seed N             split and phantom seed (0)\n"
    "  --cases N            demo: number of phantom cases (8)\n"
    "  --size N             resample training slices to NxN (default: native size)\n"
    "  --keep-blank         keep training slices with a constant image (dropped by default)\n"
    "  --percentiles LO,HI  BraTS robust intensity range (0.5,99.5)\n"
    "  --window LO,HI       CT window in HU (-125,275)\n"
    "  -h, --help           this help\n"
    "\n"
    "Synapse uses TransUNet's test cases (1,2,3,4,8,22,25,29,32,35,36,38) when\n"
    "they are present with others; a single case is split by slices (the\n"
    "lower two thirds train, the rest test).\n";

typedef struct {
    fs_dataset ds;
    const char *out;
    char tmp[4096];
    size_t size;
    int keep_blank;
    char *provenance;
    FILE *index;         /* the train/test entries, written as the cases go */
    int first_train, first_test;
    size_t train_slices, dropped_blank;
} loader;

static int slice_blank(const float *x, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (x[i] != x[0]) return 0;
    return 1;
}

/* Slices [k0, k1) of a case into <tmp>/train/<case>.h5. */
static int write_train(loader *L, const char *id, const fs_volume *image, const fs_volume *label, size_t k0, size_t k1) {
    size_t nj = image->data.shape[1], ni = image->data.shape[2];
    size_t oh = L->size ? L->size : nj, ow = L->size ? L->size : ni;
    char path[4400];
    snprintf(path, sizeof path, "%s/train/%s.h5", L->tmp, id);
    fs_slice_writer *w;
    if (fs_slice_writer_open(&w, path, &L->ds.meta, oh, ow)) return FS_ERR;
    float *rim = malloc(oh * ow * sizeof *rim);
    uint8_t *rlb = malloc(oh * ow);
    int rc = rim && rlb ? FS_OK : fs_error("out of memory");
    size_t written = 0;
    for (size_t k = k0; k < k1 && rc == FS_OK; k++) {
        const float *im = (const float *)image->data.data + k * nj * ni;
        const uint8_t *lb = (const uint8_t *)label->data.data + k * nj * ni;
        if (!L->keep_blank && slice_blank(im, nj * ni)) {
            L->dropped_blank++;
            continue;
        }
        if (L->size) {
            fs_resize_bilinear(im, nj, ni, rim, oh, ow);
            fs_resize_nearest_u8(lb, nj, ni, rlb, oh, ow);
            im = rim;
            lb = rlb;
        }
        rc = fs_slice_writer_add(w, im, lb, id, (int32_t)k);
        written++;
    }
    free(rim);
    free(rlb);
    if (rc == FS_OK && written == 0) {
        fs_slice_writer_abort(w);
        fs_warn("case '%s': no training slices left (all blank)", id);
        return FS_OK;
    }
    if (rc) { fs_slice_writer_abort(w); return FS_ERR; }
    if (fs_slice_writer_commit(w)) return FS_ERR;
    L->train_slices += written;
    fprintf(L->index, "%s\n    {\"case\": ", L->first_train ? "" : ",");
    fs_json_string(L->index, id);
    fprintf(L->index, ", \"file\": \"train/%s.h5\", \"slices\": %zu, \"height\": %zu, \"width\": %zu}", id, written, oh, ow);
    L->first_train = 0;
    return FS_OK;
}

/* Slices [k0, k1) of a case as a test volume; the affine moves with k0. */
static int write_test(loader *L, const char *id, const fs_volume *image, const fs_volume *label, size_t k0, size_t k1) {
    size_t nj = image->data.shape[1], ni = image->data.shape[2], nk = k1 - k0;
    fs_case_volume v;
    memset(&v, 0, sizeof v);
    v.meta = L->ds.meta; /* borrowed: not freed here */
    v.meta.provenance = L->provenance;
    snprintf(v.case_id, sizeof v.case_id, "%s", id);
    v.image = *image;
    for (int r = 0; r < 3; r++) v.image.affine[r][3] += image->affine[r][2] * (double)k0;
    v.image.data.shape[0] = nk;
    v.image.data.data = (float *)image->data.data + k0 * nj * ni;
    v.image.data.owned = 0;
    v.label = label->data;
    v.label.shape[0] = nk;
    v.label.data = (uint8_t *)label->data.data + k0 * nj * ni;
    v.label.owned = 0;
    char path[4400];
    snprintf(path, sizeof path, "%s/test/%s.h5", L->tmp, id);
    if (fs_case_volume_write(path, &v)) return FS_ERR;
    fprintf(L->index, "%s\n    {\"case\": ", L->first_test ? "" : ",");
    fs_json_string(L->index, id);
    fprintf(L->index, ", \"file\": \"test/%s.h5\", \"shape\": [%zu, %zu, %zu], \"spacing\": [%g, %g, %g]}", id, nk, nj,
            ni, image->spacing[0], image->spacing[1], image->spacing[2]);
    L->first_test = 0;
    return FS_OK;
}

static char *make_provenance(int argc, char **argv) {
    size_t n = 64;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
    char *s = malloc(n), *p = s;
    if (!s) {
        fs_error("out of memory");
        fs_cli_die();
    }
    p += sprintf(p, "fewsam loader:");
    for (int i = 1; i < argc; i++) p += sprintf(p, " %s", argv[i]);
    return s;
}

static void parse_pair(const char *opt, const char *s, double r[2]) {
    fs_cli_pair(opt, "LO,HI", s, -1e9, 1e9, r);
    if (r[1] <= r[0]) fs_cli_usage_error("--%s: HI must exceed LO in '%s'", opt, s);
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_LABELS = 256, O_TEST, O_TRAIN, O_FRAC, O_SEED, O_CASES, O_SIZE, O_BLANK, O_PCT, O_WIN };
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"in", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'}, {"labels", required_argument, 0, O_LABELS},
        {"test-cases", required_argument, 0, O_TEST}, {"train-cases", required_argument, 0, O_TRAIN},
        {"test-fraction", required_argument, 0, O_FRAC}, {"seed", required_argument, 0, O_SEED},
        {"cases", required_argument, 0, O_CASES}, {"size", required_argument, 0, O_SIZE},
        {"keep-blank", no_argument, 0, O_BLANK}, {"percentiles", required_argument, 0, O_PCT},
        {"window", required_argument, 0, O_WIN}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *data = NULL, *in = NULL, *out = NULL, *labels = "whole", *test_list = NULL, *train_list = NULL;
    double test_fraction = 0.25, pct[2] = {0.5, 99.5}, win[2] = {-125, 275};
    uint64_t seed = 0;
    long cases = 8, size = 0;
    int keep_blank = 0, c;
    while ((c = getopt_long(argc, argv, "d:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_TEST: test_list = optarg; break;
        case O_TRAIN: train_list = optarg; break;
        case O_FRAC: test_fraction = fs_cli_double("test-fraction", optarg, 0, 1); break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case O_CASES: cases = fs_cli_long("cases", optarg, 1, 10000); break;
        case O_SIZE: size = fs_cli_long("size", optarg, 8, 8192); break;
        case O_BLANK: keep_blank = 1; break;
        case O_PCT: parse_pair("percentiles", optarg, pct); break;
        case O_WIN: parse_pair("window", optarg, win); break;
        case 'h': fputs(usage, stdout); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!data) fs_cli_usage_error("--data is required (brats, synapse, transunet or demo)");
    if (!out) fs_cli_usage_error("--out is required");
    fs_dataset_kind kind;
    if (!strcmp(data, "brats")) kind = FS_DS_BRATS;
    else if (!strcmp(data, "synapse")) kind = FS_DS_SYNAPSE;
    else if (!strcmp(data, "transunet")) kind = FS_DS_TRANSUNET;
    else if (!strcmp(data, "demo") || !strcmp(data, "phantom")) kind = FS_DS_PHANTOM;
    else fs_cli_usage_error("--data: unknown data set '%s' (brats, synapse, transunet, demo)", data);
    if (kind != FS_DS_PHANTOM && !in) fs_cli_usage_error("--in is required for --data %s", data);
    if (pct[0] < 0 || pct[1] > 100) fs_cli_usage_error("--percentiles: values must lie in [0, 100]");

    loader L;
    memset(&L, 0, sizeof L);
    fs_dataset_init(&L.ds, kind);
    if (!strcmp(labels, "regions")) L.ds.brats_labels = FS_BRATS_REGIONS;
    else if (strcmp(labels, "whole")) fs_cli_usage_error("--labels: '%s' is not whole or regions", labels);
    L.ds.pct_lo = pct[0];
    L.ds.pct_hi = pct[1];
    L.ds.hu_lo = win[0];
    L.ds.hu_hi = win[1];
    L.ds.seed = seed;
    L.ds.phantom_cases = (size_t)cases;
    L.out = out;
    L.size = (size_t)size;
    L.keep_blank = keep_blank;
    L.first_train = L.first_test = 1;
    L.provenance = make_provenance(argc, argv);

    char rule[512];
    if (fs_dataset_scan(&L.ds, in)) fs_cli_die();
    if (fs_split_assign(&L.ds, train_list, test_list, test_fraction, seed, rule, sizeof rule)) fs_cli_die();
    fs_info("%s: %zu cases in '%s'; split: %s", L.ds.meta.dataset, L.ds.n_cases, L.ds.root, rule);
    free(L.ds.meta.provenance);
    if (!(L.ds.meta.provenance = strdup(L.provenance))) {
        fs_error("out of memory");
        fs_cli_die();
    }

    size_t olen = strlen(out);
    while (olen > 1 && out[olen - 1] == '/') olen--;
    snprintf(L.tmp, sizeof L.tmp, "%.*s.tmp.%ld", (int)olen, out, (long)getpid());
    char sub[4200], idx_body[4200];
    int rc = FS_OK;
    snprintf(sub, sizeof sub, "%s/train", L.tmp);
    if (fs_mkdirs(sub)) fs_cli_die();
    snprintf(sub, sizeof sub, "%s/test", L.tmp);
    if (fs_mkdirs(sub)) { fs_remove_tree(L.tmp); fs_cli_die(); }

    /* Entries go to two memory streams, joined into index.json at the end. */
    char *train_buf = NULL, *test_buf = NULL;
    size_t train_len = 0, test_len = 0;
    FILE *train_f = open_memstream(&train_buf, &train_len), *test_f = open_memstream(&test_buf, &test_len);
    if (!train_f || !test_f) {
        fs_error_errno("cannot write the index of '%s'", out);
        fs_remove_tree(L.tmp);
        fs_cli_die();
    }
    size_t n_train = 0, n_test = 0;
    for (size_t i = 0; i < L.ds.n_cases && rc == FS_OK; i++) {
        fs_case_ref *cr = &L.ds.cases[i];
        if (cr->split == FS_SPLIT_UNSET && L.ds.n_cases > 1) continue; /* left out by the user's lists */
        fs_volume image, label;
        if (fs_dataset_load(&L.ds, i, &image, &label)) { rc = FS_ERR; break; }
        size_t nk = image.data.shape[0];
        if (cr->split == FS_SPLIT_TRAIN) {
            L.index = train_f;
            rc = write_train(&L, cr->id, &image, &label, 0, nk);
            n_train++;
        } else if (cr->split == FS_SPLIT_TEST) {
            L.index = test_f;
            rc = write_test(&L, cr->id, &image, &label, 0, nk);
            n_test++;
        } else {
            if (nk < 3) rc = fs_error("case '%s' has %zu slices: too few to split into train and test", cr->id, nk);
            size_t cut = (2 * nk + 2) / 3;
            fs_warn("one case only: slices [0, %zu) of '%s' train, [%zu, %zu) test (held-out slices, not cases)", cut,
                    cr->id, cut, nk);
            L.index = train_f;
            if (!rc) rc = write_train(&L, cr->id, &image, &label, 0, cut);
            L.index = test_f;
            if (!rc) rc = write_test(&L, cr->id, &image, &label, cut, nk);
            n_train++;
            n_test++;
        }
        fs_volume_free(&image);
        fs_volume_free(&label);
        fs_progress("cases", i + 1, L.ds.n_cases);
    }
    fclose(train_f);
    fclose(test_f);
    if (rc == FS_OK && n_train == 0) rc = fs_error("no training cases (split: %s)", rule);
    if (rc == FS_OK && n_test == 0) rc = fs_error("no test cases (split: %s)", rule);
    if (rc == FS_OK) {
        fs_atomic_file af;
        snprintf(idx_body, sizeof idx_body, "%s/index.json", L.tmp);
        rc = fs_atomic_open(&af, idx_body);
        if (rc == FS_OK) {
            FILE *f = af.f;
            fprintf(f, "{\n  \"schema\": \"fewsam.index\",\n  \"version\": 1,\n  \"dataset\": ");
            fs_json_string(f, L.ds.meta.dataset);
            fprintf(f, ",\n  \"source\": ");
            fs_json_string(f, L.ds.root);
            fprintf(f, ",\n  \"classes\": [");
            for (size_t k = 0; k < L.ds.meta.n_classes; k++) {
                if (k) fputs(", ", f);
                fs_json_string(f, L.ds.meta.class_names[k]);
            }
            fprintf(f, "],\n  \"split\": ");
            fs_json_string(f, rule);
            fprintf(f, ",\n  \"provenance\": ");
            fs_json_string(f, L.provenance);
            fprintf(f, ",\n  \"train_slices\": %zu,\n  \"dropped_blank_slices\": %zu,\n", L.train_slices, L.dropped_blank);
            fprintf(f, "  \"train\": [%s\n  ],\n  \"test\": [%s\n  ]\n}\n", train_buf, test_buf);
            rc = fs_atomic_close(&af, 1);
        }
    }
    free(train_buf);
    free(test_buf);
    if (rc == FS_OK) rc = fs_replace_dir(L.tmp, out, "index.json");
    if (rc) {
        fs_remove_tree(L.tmp);
        fs_cli_die();
    }
    fs_info("wrote %s: %zu training slices from %zu cases (%zu blank dropped), %zu test volumes", out, L.train_slices,
            n_train, L.dropped_blank, n_test);
    fs_dataset_free(&L.ds);
    free(L.provenance);
    return FS_EXIT_OK;
}
