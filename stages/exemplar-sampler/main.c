/* exemplar-sampler: training slices -> the few labelled exemplars.
 * Writes the exemplar shard (fewsam.slices) and a JSON manifest saying which
 * case and slice each exemplar came from. Reads one case shard at a time, so
 * memory stays at one case whatever the data set's size. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "core/log.h"
#include "image/resize.h"
#include "data/sampler.h"
#include "data/shard.h"

static const char usage[] =
    "usage: exemplar-sampler --in DIR --out FILE.h5 [--fraction F | --count N] [options]\n"
    "\n"
    "Picks the labelled exemplar slices from the loader's training shards.\n"
    "\n"
    "  --in DIR           loader output folder (its train/ is read) or a folder of\n"
    "                     fewsam.slices shards\n"
    "  --out FILE.h5      exemplar shard (fewsam.slices)\n"
    "  --manifest FILE    JSON manifest (default: FILE.h5 with .json)\n"
    "  --fraction F       fraction of the training slices, e.g. 0.01 for 1% (default)\n"
    "  --count N          an exact number of exemplars instead\n"
    "  --strategy S       uniform (any slice), foreground (slices with a labelled\n"
    "                     object, default), stratified (every class appears)\n"
    "  --seed N           random seed (0)\n"
    "  --size N           resample exemplars to NxN (default: native; exemplars of\n"
    "                     different sizes go to the largest)\n"
    "  -h, --help         this help\n";

typedef struct {
    char path[4096];
    char rel[4096];
    size_t n, h, w, first; /* slices [first, first + n) in the global numbering */
} shard_info;

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_MANIFEST = 256, O_FRACTION, O_COUNT, O_STRATEGY, O_SEED, O_SIZE };
    static const struct option opts[] = {
        {"in", required_argument, 0, 'i'}, {"out", required_argument, 0, 'o'},
        {"manifest", required_argument, 0, O_MANIFEST}, {"fraction", required_argument, 0, O_FRACTION},
        {"count", required_argument, 0, O_COUNT}, {"strategy", required_argument, 0, O_STRATEGY},
        {"seed", required_argument, 0, O_SEED}, {"size", required_argument, 0, O_SIZE},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL, *manifest = NULL;
    double fraction = -1;
    long count = -1, size = 0;
    uint64_t seed = 0;
    fs_sample_strategy strategy = FS_SAMPLE_FOREGROUND;
    int c;
    while ((c = getopt_long(argc, argv, "i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case O_MANIFEST: manifest = optarg; break;
        case O_FRACTION: fraction = fs_cli_double("fraction", optarg, 1e-9, 1); break;
        case O_COUNT: count = fs_cli_long("count", optarg, 1, 100000000); break;
        case O_STRATEGY:
            if (fs_sample_strategy_parse(optarg, &strategy)) fs_cli_usage_error("--strategy: %s", fs_error_msg());
            break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case O_SIZE: size = fs_cli_long("size", optarg, 8, 8192); break;
        case 'h': fputs(usage, stdout); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!in || !out) fs_cli_usage_error("--in and --out are required");
    if (fraction > 0 && count > 0) fs_cli_usage_error("give --fraction or --count, not both");
    if (fraction < 0 && count < 0) fraction = 0.01;
    char manifest_buf[4200];
    if (!manifest) {
        size_t len = strlen(out);
        if (len > 3 && !strcmp(out + len - 3, ".h5")) len -= 3;
        snprintf(manifest_buf, sizeof manifest_buf, "%.*s.json", (int)len, out);
        manifest = manifest_buf;
    }

    /* The shards: DIR/train/<case>.h5 for a loader output, else DIR/<name>.h5. */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/train", in);
    const char *sub = "train/";
    if (!fs_is_dir(dir)) {
        snprintf(dir, sizeof dir, "%s", in);
        sub = "";
    }
    char **names;
    size_t n_names;
    if (!fs_is_dir(dir)) {
        fs_error("cannot open '%s': no such directory", in);
        fs_cli_die();
    }
    if (fs_list_dir(dir, &names, &n_names)) fs_cli_die();
    shard_info *shards = calloc(n_names ? n_names : 1, sizeof *shards);
    if (!shards) {
        fs_error("out of memory");
        fs_cli_die();
    }
    size_t n_shards = 0, total = 0, cap = 0;
    uint64_t *masks = NULL;
    fs_shard_meta meta = {0};
    for (size_t i = 0; i < n_names; i++) {
        size_t len = strlen(names[i]);
        if (len < 4 || strcmp(names[i] + len - 3, ".h5")) continue;
        shard_info *s = &shards[n_shards];
        fs_path_join(s->path, sizeof s->path, dir, names[i]);
        snprintf(s->rel, sizeof s->rel, "%s%s", sub, names[i]);
        fs_slices sl; /* labels only: images are read below, from the shards of chosen slices */
        if (fs_slices_read_labels(s->path, &sl)) fs_cli_die();
        if (n_shards == 0) {
            fs_shard_meta_copy(&meta, &sl.meta);
            if (meta.n_classes > 64) {
                fs_error("'%s': %zu classes, at most 64 supported", s->path, meta.n_classes);
                fs_cli_die();
            }
        } else if (sl.meta.n_classes != meta.n_classes || strcmp(sl.meta.dataset, meta.dataset)) {
            fs_error("'%s': data set '%s' with %zu classes differs from '%s' with %zu in '%s'", s->path,
                     sl.meta.dataset, sl.meta.n_classes, meta.dataset, meta.n_classes, shards[0].path);
            fs_cli_die();
        }
        s->n = sl.n;
        s->h = sl.h;
        s->w = sl.w;
        s->first = total;
        if (total + sl.n > cap) {
            cap = 2 * (total + sl.n);
            masks = realloc(masks, cap * sizeof *masks);
            if (!masks) {
                fs_error("out of memory for %zu slice masks", cap);
                fs_cli_die();
            }
        }
        /* fs_slices_read_labels has checked every label against the classes (at
         * most 64), so each is a bit of the mask */
        const uint8_t *lab = sl.label.data;
        for (size_t k = 0; k < sl.n; k++) {
            uint64_t m = 0;
            for (size_t p = 0; p < sl.h * sl.w; p++) m |= 1ULL << lab[k * sl.h * sl.w + p];
            masks[total + k] = m & ~1ULL; /* background does not count */
        }
        total += sl.n;
        fs_slices_free(&sl);
        n_shards++;
    }
    fs_free_list(names, n_names);
    if (n_shards == 0) {
        fs_error("'%s': no training shards (*.h5)", dir);
        fs_cli_die();
    }
    size_t k = count > 0 ? (size_t)count : (size_t)(fraction * (double)total + 0.5);
    if (k < 1) k = 1;
    if (k > total) {
        fs_warn("asked for %zu exemplars, only %zu slices exist: taking all", k, total);
        k = total;
    }
    size_t *chosen, n_chosen;
    if (fs_sample_slices(masks, total, k, strategy, seed, &chosen, &n_chosen)) fs_cli_die();
    if (n_chosen != k)
        fs_warn("%s strategy gave %zu exemplars for the %zu asked", fs_sample_strategy_name(strategy), n_chosen, k);

    /* Output size: --size, else common size, else the largest. */
    size_t oh = 0, ow = 0, mixed = 0;
    for (size_t e = 0, s = 0; e < n_chosen; e++) {
        while (chosen[e] >= shards[s].first + shards[s].n) s++;
        if (oh && (shards[s].h != oh || shards[s].w != ow)) mixed = 1;
        if (shards[s].h * shards[s].w > oh * ow) { oh = shards[s].h; ow = shards[s].w; }
    }
    if (size) oh = ow = (size_t)size;
    else if (mixed) fs_warn("exemplars come in different sizes: resampled to %zux%zu", oh, ow);

    free(meta.provenance);
    char prov[1024];
    snprintf(prov, sizeof prov, "fewsam exemplar-sampler: %zu of %zu slices from '%s', strategy %s, seed %llu", n_chosen,
             total, in, fs_sample_strategy_name(strategy), (unsigned long long)seed);
    meta.provenance = strdup(prov);
    fs_slice_writer *w;
    if (fs_slice_writer_open(&w, out, &meta, oh, ow)) fs_cli_die();
    fs_atomic_file mf;
    if (fs_atomic_open(&mf, manifest)) { fs_slice_writer_abort(w); fs_cli_die(); }
    FILE *f = mf.f;
    fprintf(f, "{\n  \"schema\": \"fewsam.exemplars\",\n  \"version\": 1,\n  \"dataset\": ");
    fs_json_string(f, meta.dataset);
    fprintf(f, ",\n  \"source\": ");
    fs_json_string(f, in);
    fprintf(f, ",\n  \"strategy\": \"%s\",\n  \"seed\": %llu,\n  \"fraction\": ", fs_sample_strategy_name(strategy),
            (unsigned long long)seed);
    fs_json_number(f, fraction > 0 ? fraction : (double)NAN);
    fprintf(f, ",\n  \"count\": %zu,\n  \"total_slices\": %zu,\n  \"classes\": [", n_chosen, total);
    for (size_t cl = 0; cl < meta.n_classes; cl++) {
        if (cl) fputs(", ", f);
        fs_json_string(f, meta.class_names[cl]);
    }
    fprintf(f, "],\n  \"exemplars\": [");

    float *rim = malloc(oh * ow * sizeof *rim);
    uint8_t *rlb = malloc(oh * ow);
    int rc = rim && rlb ? FS_OK : fs_error("out of memory for a %zux%zu slice", oh, ow);
    size_t e = 0;
    for (size_t s = 0; s < n_shards && rc == FS_OK; s++) {
        if (e >= n_chosen || chosen[e] >= shards[s].first + shards[s].n) continue;
        fs_slices sl;
        if (fs_slices_read(shards[s].path, &sl)) { rc = FS_ERR; break; }
        for (; e < n_chosen && chosen[e] < shards[s].first + shards[s].n && rc == FS_OK; e++) {
            size_t k2 = chosen[e] - shards[s].first, hw = sl.h * sl.w;
            const float *im = (const float *)sl.image.data + k2 * hw;
            const uint8_t *lb = (const uint8_t *)sl.label.data + k2 * hw;
            if (sl.h != oh || sl.w != ow) {
                fs_resize_bilinear(im, sl.h, sl.w, rim, oh, ow);
                fs_resize_nearest_u8(lb, sl.h, sl.w, rlb, oh, ow);
                im = rim;
                lb = rlb;
            }
            rc = fs_slice_writer_add(w, im, lb, sl.case_ids[k2], sl.slice_index[k2]);
            fprintf(f, "%s\n    {\"index\": %zu, \"case\": ", e ? "," : "", e);
            fs_json_string(f, sl.case_ids[k2]);
            fprintf(f, ", \"slice\": %d, \"shard\": ", sl.slice_index[k2]);
            fs_json_string(f, shards[s].rel);
            fprintf(f, ", \"classes\": [");
            for (size_t cl = 1, first = 1; cl < meta.n_classes; cl++)
                if ((masks[chosen[e]] >> cl) & 1) { fprintf(f, first ? "%zu" : ", %zu", cl); first = 0; }
            fprintf(f, "]}");
        }
        fs_slices_free(&sl);
    }
    fprintf(f, "\n  ]\n}\n");
    free(rim);
    free(rlb);
    if (rc == FS_OK) rc = fs_slice_writer_commit(w);
    else fs_slice_writer_abort(w);
    if (rc == FS_OK && fs_atomic_close(&mf, 1) != FS_OK) {
        unlink(out);
        rc = FS_ERR;
    } else if (rc != FS_OK) {
        fs_atomic_close(&mf, 0);
    }
    if (rc) fs_cli_die();
    size_t per_class[64] = {0};
    for (size_t i = 0; i < n_chosen; i++)
        for (size_t cl = 1; cl < meta.n_classes; cl++) per_class[cl] += (masks[chosen[i]] >> cl) & 1;
    char line[1024];
    size_t pos = 0;
    for (size_t cl = 1; cl < meta.n_classes && pos < sizeof line; cl++)
        pos += (size_t)snprintf(line + pos, sizeof line - pos, "%s%s %zu", cl > 1 ? ", " : "", meta.class_names[cl], per_class[cl]);
    fs_info("%zu exemplars of %zu slices (%s) -> %s; slices per class: %s", n_chosen, total,
            fs_sample_strategy_name(strategy), out, line);
    fs_shard_meta_free(&meta);
    free(chosen);
    free(masks);
    free(shards);
    return FS_EXIT_OK;
}
