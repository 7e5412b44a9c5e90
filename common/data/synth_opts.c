#include "data/synth_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli.h"
#include "core/error.h"

const char fs_synth_opts_usage[] =
    "  --backgrounds PATH   unlabelled background slices: a fewsam.slices file or a\n"
    "                       folder of them (labels ignored); default: exemplar slices\n"
    "  --bg-unlabelled P    with --backgrounds, probability of an unlabelled\n"
    "                       background rather than an exemplar slice (1)\n"
    "  --size N             samples NxN (default: the exemplars' size)\n"
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
    "                       wherever it appears): a pure cut and paste\n";

enum {
    O_BACKGROUNDS = FS_SYNTH_OPT_FIRST, O_BGUNL, O_SIZE, O_OBJECTS, O_CUT, O_CONNECTIVITY, O_MINPIX, O_NOBALANCE,
    O_PARTIAL, O_FEATHER, O_PROMPTS, O_NOTRANSFORMS,
    O_T0 = FS_SYNTH_OPT_FIRST + 32 /* transforms: O_T0 + 16 * (0 object, 1 background) + field */
};
enum { T_FLIPH, T_FLIPV, T_ROTATE, T_SCALE, T_BRIGHT, T_CONTRAST, T_GAMMA, T_BLUR, T_NOISE, T_N };
static const char *t_names[2][T_N] = {
    {"flip-h", "flip-v", "rotate", "scale", "brightness", "contrast", "gamma", "blur", "noise"},
    {"bg-flip-h", "bg-flip-v", "bg-rotate", "bg-scale", "bg-brightness", "bg-contrast", "bg-gamma", "bg-blur",
     "bg-noise"}};

size_t fs_synth_opts_add(struct option *opts) {
    static const struct option fixed[] = {
        {"backgrounds", required_argument, 0, O_BACKGROUNDS}, {"bg-unlabelled", required_argument, 0, O_BGUNL},
        {"size", required_argument, 0, O_SIZE},               {"objects", required_argument, 0, O_OBJECTS},
        {"cut", required_argument, 0, O_CUT},                 {"connectivity", required_argument, 0, O_CONNECTIVITY},
        {"min-pixels", required_argument, 0, O_MINPIX},       {"no-balance", no_argument, 0, O_NOBALANCE},
        {"partial", no_argument, 0, O_PARTIAL},               {"feather", required_argument, 0, O_FEATHER},
        {"prompts", required_argument, 0, O_PROMPTS},         {"no-transforms", no_argument, 0, O_NOTRANSFORMS}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) opts[n++] = fixed[i];
    for (int who = 0; who < 2; who++)
        for (int f = 0; f < T_N; f++) opts[n++] = (struct option){t_names[who][f], required_argument, 0, O_T0 + 16 * who + f};
    return n;
}

void fs_synth_opts_init(fs_synth_opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    fs_synth_config_default(&o->cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--no-transforms")) fs_synth_config_identity(&o->cfg);
    }
}

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

int fs_synth_opts_apply(fs_synth_opts *o, int code, const char *arg) {
    fs_synth_config *cfg = &o->cfg;
    if (code >= O_T0 && code < O_T0 + 32) {
        int who = (code - O_T0) / 16, f = (code - O_T0) % 16;
        if (f >= T_N) return 0;
        set_transform(who ? &cfg->background : &cfg->object, f, t_names[who][f], arg);
        o->given++;
        return 1;
    }
    switch (code) {
    case O_BACKGROUNDS: o->backgrounds = arg; break;
    case O_BGUNL: cfg->background_unlabelled = fs_cli_double("bg-unlabelled", arg, 0, 1); break;
    case O_SIZE: cfg->out_h = cfg->out_w = (size_t)fs_cli_long("size", arg, 8, 8192); break;
    case O_OBJECTS: {
        double r[2];
        parse_range("objects", arg, r);
        if (r[0] < 0 || r[1] > FS_SYNTH_MAX_PASTE || r[0] > r[1] || r[0] != (long)r[0] || r[1] != (long)r[1])
            fs_cli_usage_error("--objects: expected MIN[,MAX] whole numbers, 0 <= MIN <= MAX <= %d, got '%s'",
                               FS_SYNTH_MAX_PASTE, arg);
        cfg->objects_min = (size_t)r[0];
        cfg->objects_max = (size_t)r[1];
        break;
    }
    case O_CUT:
        if (fs_synth_cut_parse(arg, &cfg->cut)) fs_cli_usage_error("--cut: %s", fs_error_msg());
        break;
    case O_CONNECTIVITY:
        cfg->connectivity = (int)fs_cli_long("connectivity", arg, 4, 8);
        if (cfg->connectivity != 4 && cfg->connectivity != 8) fs_cli_usage_error("--connectivity: 4 or 8");
        break;
    case O_MINPIX: cfg->min_pixels = (size_t)fs_cli_long("min-pixels", arg, 1, 1L << 26); break;
    case O_NOBALANCE: cfg->balance_classes = 0; break;
    case O_PARTIAL: cfg->partial = 1; break;
    case O_FEATHER: cfg->feather = fs_cli_double("feather", arg, 0, 16); break;
    case O_PROMPTS:
        if (fs_synth_prompts_parse(arg, &cfg->prompts)) fs_cli_usage_error("--prompts: %s", fs_error_msg());
        break;
    case O_NOTRANSFORMS: break; /* applied by fs_synth_opts_init */
    default: return 0;
    }
    o->given++;
    return 1;
}
