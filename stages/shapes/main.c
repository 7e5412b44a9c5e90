/* shapes: generic synthetic shapes as a fewsam.slices shard (the data the
 * demo checkpoint is pretrained on; see data/shapes.h). Written under a
 * temporary name and renamed at the end. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "data/shapes.h"
#include "data/shard.h"
#include "io/png.h"

static const char usage[] =
    "usage: shapes --out FILE.h5 [options]\n"
    "\n"
    "Writes N slices of random shapes (ellipses, polygons, rectangles, blobs,\n"
    "rings over textured backgrounds, with noise) as a fewsam.slices shard:\n"
    "images in [0, 1] and instance labels (object k of a slice is label k), for\n"
    "pretraining a SAM on something other than the data it is evaluated on.\n"
    "Slice i is a pure function of (seed, i).\n"
    "\n"
    "  --out FILE.h5        the shard\n"
    "  --count N            slices (2000)\n"
    "  --size N             slice side in pixels (64)\n"
    "  --max-objects N      at most N objects a slice (6; at most 15)\n"
    "  --seed N             (0)\n"
    "  --preview FILE.png   also draw the first 16 slices, label outlines in colour\n"
    "  -h, --help           this help\n";

/* The first 16 slices in a 4x4 grid, each object's boundary in its colour. */
static int write_preview(const char *path, uint64_t seed, const fs_shapes_params *p) {
    size_t S = p->size, G = 4, W = G * S + G + 1;
    uint8_t *px = calloc(W * W * 3, 1);
    float *im = malloc(S * S * sizeof *im);
    uint8_t *lb = malloc(S * S);
    if (!px || !im || !lb) {
        free(px);
        free(im);
        free(lb);
        return fs_error("out of memory for the preview");
    }
    static const uint8_t col[8][3] = {{230, 25, 75},  {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                      {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};
    for (size_t k = 0; k < G * G; k++) {
        fs_shapes_slice(seed, k, p, im, lb);
        size_t ox = 1 + (k % G) * (S + 1), oy = 1 + (k / G) * (S + 1);
        for (size_t y = 0; y < S; y++)
            for (size_t x = 0; x < S; x++) {
                uint8_t *d = px + ((oy + y) * W + ox + x) * 3, l = lb[y * S + x];
                int edge = l && ((x && lb[y * S + x - 1] != l) || (x + 1 < S && lb[y * S + x + 1] != l) ||
                                 (y && lb[(y - 1) * S + x] != l) || (y + 1 < S && lb[(y + 1) * S + x] != l));
                for (int c = 0; c < 3; c++) d[c] = edge ? col[(l - 1) % 8][c] : (uint8_t)(255 * im[y * S + x] + 0.5f);
            }
    }
    int rc = fs_png_write(path, px, W, W, 3);
    free(px);
    free(im);
    free(lb);
    return rc;
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    enum { O_COUNT = 256, O_SIZE, O_MAX, O_SEED, O_PREVIEW };
    static const struct option opts[] = {{"out", required_argument, 0, 'o'},
                                         {"count", required_argument, 0, O_COUNT},
                                         {"size", required_argument, 0, O_SIZE},
                                         {"max-objects", required_argument, 0, O_MAX},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"preview", required_argument, 0, O_PREVIEW},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *preview = NULL;
    long count = 2000;
    uint64_t seed = 0;
    fs_shapes_params p = FS_SHAPES_PARAMS_DEFAULT;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_COUNT: count = fs_cli_long("count", optarg, 1, 10000000); break;
        case O_SIZE: p.size = (size_t)fs_cli_long("size", optarg, FS_SHAPES_MIN_SIZE, FS_SHAPES_MAX_SIZE); break;
        case O_MAX: p.max_objects = (size_t)fs_cli_long("max-objects", optarg, 1, FS_SHAPES_MAX_OBJECTS); break;
        case O_SEED: seed = fs_cli_u64("seed", optarg); break;
        case O_PREVIEW: preview = optarg; break;
        case 'h': fputs(usage, stdout); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!out) fs_cli_usage_error("--out is required");
    if (fs_shapes_validate(&p)) fs_cli_usage_error("%s", fs_error_msg());

    fs_shard_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.dataset, sizeof meta.dataset, "shapes");
    meta.n_classes = p.max_objects + 1;
    meta.class_names = calloc(meta.n_classes, sizeof *meta.class_names);
    char prov[512];
    snprintf(prov, sizeof prov,
             "fewsam shapes: generic synthetic shapes, --count %ld --size %zu --max-objects %zu --seed %" PRIu64
             "; instance labels (object k = label k)",
             count, p.size, p.max_objects, seed);
    meta.provenance = strdup(prov);
    if (!meta.class_names || !meta.provenance) {
        fs_error("out of memory");
        fs_cli_die();
    }
    for (size_t k = 0; k < meta.n_classes; k++) {
        char name[32];
        if (k) snprintf(name, sizeof name, "object%zu", k);
        else snprintf(name, sizeof name, "background");
        meta.class_names[k] = strdup(name);
        if (!meta.class_names[k]) {
            fs_error("out of memory");
            fs_cli_die();
        }
    }
    fs_slice_writer *w;
    if (fs_slice_writer_open(&w, out, &meta, p.size, p.size)) fs_cli_die();
    float *im = malloc(p.size * p.size * sizeof *im);
    uint8_t *lb = malloc(p.size * p.size);
    if (!im || !lb) {
        fs_slice_writer_abort(w);
        fs_error("out of memory");
        fs_cli_die();
    }
    size_t objects = 0;
    for (long i = 0; i < count; i++) {
        objects += fs_shapes_slice(seed, (size_t)i, &p, im, lb);
        if (fs_slice_writer_add(w, im, lb, "shapes", (int32_t)i)) {
            fs_slice_writer_abort(w);
            fs_cli_die();
        }
        fs_progress("slices", (size_t)i + 1, (size_t)count);
    }
    if (fs_slice_writer_commit(w)) fs_cli_die();
    if (preview && write_preview(preview, seed, &p)) fs_cli_die();
    fs_info("wrote %s: %ld slices of %zux%zu, %zu labelled objects (%.1f a slice)%s%s", out, count, p.size, p.size,
            objects, (double)objects / (double)count, preview ? "; preview " : "", preview ? preview : "");
    free(im);
    free(lb);
    fs_shard_meta_free(&meta);
    return FS_EXIT_OK;
}
