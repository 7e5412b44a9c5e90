/* synthesizer: exemplars -> synthetic labelled samples (data/synth.h).
 * Offline mode writes samples first..first+count-1 as a fewsam.slices shard
 * with their prompts; --preview draws some as a PNG grid. Every sample is a
 * pure function of (seed, index), so shards written by different processes
 * over overlapping index ranges agree byte for byte. */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "data/synth.h"
#include "preview.h"

static const char usage[] =
    "usage: synthesizer --exemplars FILE.h5 --out FILE.h5 --count N [options]\n"
    "       synthesizer --exemplars FILE.h5 --preview N --preview-out FILE.png [options]\n"
    "\n"
    "Exemplar-guided synthesis (after ELSNet): objects cut from the exemplars,\n"
    "transformed and pasted on a transformed background slice; prompts drawn\n"
    "from the final label map. Sample i depends only on (seed, i) and the\n"
    "settings.\n"
    "\n"
    "  --exemplars FILE.h5  exemplar shard (fewsam.slices) with labelled objects\n"
    "  --out FILE.h5        write samples I..I+N-1 as a fewsam.slices shard with\n"
    "                       prompt datasets (schemas/slices.md)\n"
    "  --count N            number of samples\n"
    "  --first-index I      first sample index (0)\n"
    "  --seed N             random seed (0)\n"
    "  --backgrounds PATH   unlabelled background slices: a fewsam.slices file or a\n"
    "                       folder of them (labels ignored); default: exemplar slices\n"
    "  --bg-unlabelled P    with --backgrounds, probability of an unlabelled\n"
    "                       background rather than an exemplar slice (1)\n"
    "  --size N             output NxN (default: the exemplars' size)\n"
    "  --threads N          worker threads (default: OpenMP's)\n"
    "  --preview N          also draw samples I..I+N-1 as a PNG grid\n"
    "  --preview-out FILE   the preview (default with --out: FILE_preview.png)\n"
    "\n"
    "objects:\n"
    "  --objects MIN[,MAX]  objects pasted per sample (1,3)\n"
    "  --cut MODE           class (a class mask, default), component (one\n"
    "                       connected component of a class) or region (one\n"
    "                       connected foreground component, all its classes)\n"
    "  --connectivity 4|8   for component and region (8)\n"
    "  --min-pixels N       smallest object to cut (16)\n"
    "  --no-balance         candidates uniformly, not a class uniformly first\n"
    "  --partial            objects may reach over the slice edge (clipped)\n"
    "  --feather S          soft paste: blend by the mask blurred with sigma S (0)\n"
    "  --prompts MODE       class (one prompt set per class present, default) or\n"
    "                       object (one per visible pasted object and class)\n"
    "\n"
    "transforms of the pasted objects (defaults after ELSNet's augmentations):\n"
    "  --flip-h P           probability of a left-right flip (0.5)\n"
    "  --flip-v P           probability of an up-down flip (0)\n"
    "  --rotate DEG         rotation uniform in +-DEG (15)\n"
    "  --scale LO,HI        isotropic scale (0.75,1.25)\n"
    "  --brightness B       offset uniform in +-B on [0,1] intensities (0.1)\n"
    "  --contrast LO,HI     factor about the mean (0.8,1.2)\n"
    "  --gamma LO,HI        exponent, log-uniform (0.8,1.25)\n"
    "  --blur LO,HI         Gaussian sigma in pixels (0,1)\n"
    "  --noise LO,HI        additive noise sigma (0,0.03)\n"
    "  --bg-flip-h, --bg-flip-v, --bg-rotate, --bg-scale, --bg-brightness,\n"
    "  --bg-contrast, --bg-gamma, --bg-blur, --bg-noise\n"
    "                       the same for the background (scale 0.9,1.1; others as above)\n"
    "  --no-transforms      every transform the identity (before the options above,\n"
    "                       wherever it appears): a pure cut and paste\n"
    "  -h, --help           this help\n";

/* Sample i into out with scratch w: the one producer both modes use (and the
 * streaming mode, --connect ENDPOINT, will: it answers the trainer's index
 * requests with make_sample and the wire format in common/wire/). */
static int make_sample(const fs_synth *s, fs_synth_scratch *w, uint64_t i, fs_sample *out) {
    return fs_synth_sample_with(s, w, i, out, NULL);
}

/* Errors are thread-local: a worker's message is carried to the main thread. */
static char worker_error[512];

static int make_sample_mt(const fs_synth *s, fs_synth_scratch *w, uint64_t i, fs_sample *out) {
    if (!make_sample(s, w, i, out)) return FS_OK;
#pragma omp critical(synth_error)
    if (!worker_error[0]) snprintf(worker_error, sizeof worker_error, "sample %llu: %s", (unsigned long long)i, fs_error_msg());
    return FS_ERR;
}

static void die_worker(void) {
    fs_error("%s", worker_error);
    fs_cli_die();
}

/* ---- options ---- */

enum {
    O_EXEMPLARS = 256, O_OUT, O_COUNT, O_FIRST, O_SEED, O_BACKGROUNDS, O_BGUNL, O_SIZE, O_THREADS, O_PREVIEW,
    O_PREVIEW_OUT, O_OBJECTS, O_CUT, O_CONNECTIVITY, O_MINPIX, O_NOBALANCE, O_PARTIAL, O_FEATHER, O_PROMPTS,
    O_NOTRANSFORMS,
    O_T0 = 512 /* transform options: O_T0 + 16 * (0 object, 1 background) + field */
};
enum { T_FLIPH, T_FLIPV, T_ROTATE, T_SCALE, T_BRIGHT, T_CONTRAST, T_GAMMA, T_BLUR, T_NOISE, T_N };
static const char *t_names[T_N] = {"flip-h", "flip-v", "rotate", "scale", "brightness",
                                   "contrast", "gamma", "blur", "noise"};

/* "LO,HI" or "V" (= V,V) */
static void parse_range(const char *opt, const char *s, double r[2]) {
    char *end;
    r[0] = strtod(s, &end);
    if (end == s) fs_cli_usage_error("--%s: expected LO,HI or a number, got '%s'", opt, s);
    if (*end == ',') {
        const char *t = end + 1;
        r[1] = strtod(t, &end);
        if (end == t) fs_cli_usage_error("--%s: expected LO,HI, got '%s'", opt, s);
    } else {
        r[1] = r[0];
    }
    if (*end) fs_cli_usage_error("--%s: expected LO,HI or a number, got '%s'", opt, s);
}

static void set_transform(fs_synth_transform *t, int field, const char *opt, const char *v) {
    switch (field) {
    case T_FLIPH: t->flip_h = fs_cli_double(opt, v, 0, 1); break;
    case T_FLIPV: t->flip_v = fs_cli_double(opt, v, 0, 1); break;
    case T_ROTATE: t->rotate = fs_cli_double(opt, v, 0, 180); break;
    case T_SCALE: parse_range(opt, v, t->scale); break;
    case T_BRIGHT: t->brightness = fs_cli_double(opt, v, 0, 1); break;
    case T_CONTRAST: parse_range(opt, v, t->contrast); break;
    case T_GAMMA: parse_range(opt, v, t->gamma); break;
    case T_BLUR: parse_range(opt, v, t->blur); break;
    case T_NOISE: parse_range(opt, v, t->noise); break;
    }
}

int main(int argc, char **argv) {
    fs_cli_init(argc, argv);
    static char tnames[2][T_N][32];
    struct option opts[64] = {
        {"exemplars", required_argument, 0, O_EXEMPLARS}, {"out", required_argument, 0, O_OUT},
        {"count", required_argument, 0, O_COUNT}, {"first-index", required_argument, 0, O_FIRST},
        {"seed", required_argument, 0, O_SEED}, {"backgrounds", required_argument, 0, O_BACKGROUNDS},
        {"bg-unlabelled", required_argument, 0, O_BGUNL}, {"size", required_argument, 0, O_SIZE},
        {"threads", required_argument, 0, O_THREADS}, {"preview", required_argument, 0, O_PREVIEW},
        {"preview-out", required_argument, 0, O_PREVIEW_OUT}, {"objects", required_argument, 0, O_OBJECTS},
        {"cut", required_argument, 0, O_CUT}, {"connectivity", required_argument, 0, O_CONNECTIVITY},
        {"min-pixels", required_argument, 0, O_MINPIX}, {"no-balance", no_argument, 0, O_NOBALANCE},
        {"partial", no_argument, 0, O_PARTIAL}, {"feather", required_argument, 0, O_FEATHER},
        {"prompts", required_argument, 0, O_PROMPTS}, {"no-transforms", no_argument, 0, O_NOTRANSFORMS},
        {"help", no_argument, 0, 'h'}};
    size_t no = 21;
    for (int who = 0; who < 2; who++)
        for (int f = 0; f < T_N; f++) {
            snprintf(tnames[who][f], sizeof tnames[who][f], "%s%s", who ? "bg-" : "", t_names[f]);
            opts[no++] = (struct option){tnames[who][f], required_argument, 0, O_T0 + 16 * who + f};
        }
    opts[no] = (struct option){0, 0, 0, 0};

    fs_synth_config cfg;
    fs_synth_config_default(&cfg);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--no-transforms")) fs_synth_config_identity(&cfg);
    const char *exemplars = NULL, *out = NULL, *backgrounds = NULL, *preview_out = NULL;
    long count = -1, preview = 0, threads = 0;
    uint64_t first = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= O_T0 && c < O_T0 + 32) {
            int who = (c - O_T0) / 16, f = (c - O_T0) % 16;
            set_transform(who ? &cfg.background : &cfg.object, f, tnames[who][f], optarg);
            continue;
        }
        switch (c) {
        case O_EXEMPLARS: exemplars = optarg; break;
        case O_OUT: out = optarg; break;
        case O_COUNT: count = fs_cli_long("count", optarg, 0, 1000000000L); break;
        case O_FIRST: first = fs_cli_u64("first-index", optarg); break;
        case O_SEED: cfg.seed = fs_cli_u64("seed", optarg); break;
        case O_BACKGROUNDS: backgrounds = optarg; break;
        case O_BGUNL: cfg.background_unlabelled = fs_cli_double("bg-unlabelled", optarg, 0, 1); break;
        case O_SIZE: cfg.out_h = cfg.out_w = (size_t)fs_cli_long("size", optarg, 8, 8192); break;
        case O_THREADS: threads = fs_cli_long("threads", optarg, 1, 1024); break;
        case O_PREVIEW: preview = fs_cli_long("preview", optarg, 1, 256); break;
        case O_PREVIEW_OUT: preview_out = optarg; break;
        case O_OBJECTS: {
            double r[2];
            parse_range("objects", optarg, r);
            if (r[0] < 0 || r[1] > FS_SYNTH_MAX_PASTE || r[0] > r[1] || r[0] != (long)r[0] || r[1] != (long)r[1])
                fs_cli_usage_error("--objects: expected MIN[,MAX] whole numbers, 0 <= MIN <= MAX <= %d, got '%s'",
                                   FS_SYNTH_MAX_PASTE, optarg);
            cfg.objects_min = (size_t)r[0];
            cfg.objects_max = (size_t)r[1];
            break;
        }
        case O_CUT:
            if (fs_synth_cut_parse(optarg, &cfg.cut)) fs_cli_usage_error("--cut: %s", fs_error_msg());
            break;
        case O_CONNECTIVITY:
            cfg.connectivity = (int)fs_cli_long("connectivity", optarg, 4, 8);
            if (cfg.connectivity != 4 && cfg.connectivity != 8) fs_cli_usage_error("--connectivity: 4 or 8");
            break;
        case O_MINPIX: cfg.min_pixels = (size_t)fs_cli_long("min-pixels", optarg, 1, 1L << 26); break;
        case O_NOBALANCE: cfg.balance_classes = 0; break;
        case O_PARTIAL: cfg.partial = 1; break;
        case O_FEATHER: cfg.feather = fs_cli_double("feather", optarg, 0, 16); break;
        case O_PROMPTS:
            if (fs_synth_prompts_parse(optarg, &cfg.prompts)) fs_cli_usage_error("--prompts: %s", fs_error_msg());
            break;
        case O_NOTRANSFORMS: break; /* applied before the loop */
        case 'h': fputs(usage, stdout); return FS_EXIT_OK;
        default: fs_cli_bad_option(argc, argv);
        }
    }
    if (optind < argc) fs_cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!exemplars) fs_cli_usage_error("--exemplars is required");
    if (!out && !preview) fs_cli_usage_error("give --out (with --count) or --preview");
    if (out && count < 0) fs_cli_usage_error("--out needs --count");
    if (!out && count >= 0) fs_cli_usage_error("--count needs --out");
    char pbuf[4200];
    if (preview && !preview_out) {
        if (!out) fs_cli_usage_error("--preview needs --preview-out (or --out)");
        size_t len = strlen(out);
        if (len > 3 && !strcmp(out + len - 3, ".h5")) len -= 3;
        snprintf(pbuf, sizeof pbuf, "%.*s_preview.png", (int)len, out);
        preview_out = pbuf;
    }
    if (preview_out && !preview) fs_cli_usage_error("--preview-out needs --preview N");
    if (fs_synth_config_check(&cfg)) fs_cli_usage_error("%s", fs_error_msg());
    if (threads) omp_set_num_threads((int)threads);

    fs_synth *s;
    if (fs_synth_open(&s, exemplars, backgrounds, &cfg)) fs_cli_die();
    size_t H, W;
    fs_synth_size(s, &H, &W);
    char settings[2048];
    fs_synth_config_describe(&cfg, settings, sizeof settings);
    fs_info("%zu objects to cut (%s) from '%s'%s%s; samples %zux%zu from index %llu", fs_synth_candidates(s),
            fs_synth_cut_name(cfg.cut), exemplars, backgrounds ? ", backgrounds from " : "",
            backgrounds ? backgrounds : "", H, W, (unsigned long long)first);

    const int nt = omp_get_max_threads();
    const size_t chunk = (size_t)nt * 8;
    fs_synth_scratch **scr = calloc((size_t)nt, sizeof *scr);
    size_t nbuf = chunk > (size_t)preview ? chunk : (size_t)preview;
    fs_sample *buf = calloc(nbuf, sizeof *buf);
    if (!scr || !buf) {
        fs_error("out of memory");
        fs_cli_die();
    }
    for (int t = 0; t < nt; t++)
        if (fs_synth_scratch_new(s, &scr[t])) fs_cli_die();
    for (size_t i = 0; i < nbuf; i++)
        if (fs_sample_alloc(&buf[i], H, W)) fs_cli_die();

    if (out) {
        fs_shard_meta meta;
        if (fs_shard_meta_copy(&meta, fs_synth_meta(s))) fs_cli_die();
        free(meta.provenance);
        size_t plen = strlen(exemplars) + strlen(settings) + (backgrounds ? strlen(backgrounds) : 0) + 256;
        meta.provenance = malloc(plen);
        if (!meta.provenance) { fs_error("out of memory"); fs_cli_die(); }
        snprintf(meta.provenance, plen, "fewsam synthesizer; exemplars %s; backgrounds %s; first index %llu; count %ld; %s",
                 exemplars, backgrounds ? backgrounds : "(exemplars)", (unsigned long long)first, count, settings);
        fs_synth_writer *wr;
        if (fs_synth_writer_open(&wr, out, &meta, H, W, cfg.seed, first, cfg.prompts, settings)) fs_cli_die();
        fs_shard_meta_free(&meta);
        for (size_t done = 0; done < (size_t)count;) {
            const size_t n = (size_t)count - done < chunk ? (size_t)count - done : chunk;
            int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
            for (size_t i = 0; i < n; i++)
                if (make_sample_mt(s, scr[omp_get_thread_num()], first + done + i, &buf[i])) failed = 1;
            if (failed) {
                fs_synth_writer_abort(wr);
                die_worker();
            }
            for (size_t i = 0; i < n; i++)
                if (fs_synth_writer_add(wr, &buf[i])) {
                    fs_synth_writer_abort(wr);
                    fs_cli_die();
                }
            done += n;
            fs_progress("synthesizing", done, (size_t)count);
        }
        if (fs_synth_writer_commit(wr)) fs_cli_die();
        fs_info("wrote %ld samples to '%s'", count, out);
    }
    if (preview) {
        int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
        for (long i = 0; i < preview; i++)
            if (make_sample_mt(s, scr[omp_get_thread_num()], first + (uint64_t)i, &buf[i])) failed = 1;
        if (failed) die_worker();
        if (preview_write(preview_out, buf, (size_t)preview)) fs_cli_die();
        fs_info("wrote a preview of %ld samples to '%s'", preview, preview_out);
    }
    for (size_t i = 0; i < nbuf; i++) fs_sample_free(&buf[i]);
    free(buf);
    for (int t = 0; t < nt; t++) fs_synth_scratch_free(scr[t]);
    free(scr);
    fs_synth_free(s);
    return FS_EXIT_OK;
}
