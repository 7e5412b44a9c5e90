/* The synthesis settings as command-line options, one definition for every
 * stage that synthesizes: the synthesizer and the trainer (--synth,
 * --stream) take the same names, so one string of options (the pipeline's
 * SYNTH_ARGS) given to both makes the same samples on both sides. The seed
 * stays each stage's own --seed.
 *
 *   struct option opts[...] = {stage options..., };   room for FS_SYNTH_N_OPTS more
 *   n += fs_synth_opts_add(opts + n);
 *   fs_synth_opts so;
 *   fs_synth_opts_init(&so, argc, argv);              defaults (or --no-transforms)
 *   while ((c = getopt_long(...)) != -1) {
 *       if (fs_synth_opts_apply(&so, c, optarg)) continue;
 *       ...
 *   } */
#ifndef FS_SYNTH_OPTS_H
#define FS_SYNTH_OPTS_H

#include <getopt.h>
#include <stddef.h>

#include "data/synth.h"

/* Option codes FS_SYNTH_OPT_FIRST .. FS_SYNTH_OPT_FIRST + 63 belong to this module. */
#define FS_SYNTH_OPT_FIRST 0x4000
#define FS_SYNTH_N_OPTS 32

typedef struct {
    fs_synth_config cfg;
    const char *backgrounds; /* --backgrounds PATH, or NULL */
    int given;               /* how many synthesis options were given */
} fs_synth_opts;

/* Appends the long options (not the terminating zero entry) to opts, which
 * has room for FS_SYNTH_N_OPTS; returns how many. */
size_t fs_synth_opts_add(struct option *opts);
/* The defaults, or every transform the identity when --no-transforms is
 * anywhere in argv (so that it never overrides options given before it). */
void fs_synth_opts_init(fs_synth_opts *o, int argc, char **argv);
/* Applies option `code` with its argument: 1 when it was a synthesis option,
 * 0 when not. A malformed value is a usage error (exit 2). */
int fs_synth_opts_apply(fs_synth_opts *o, int code, const char *arg);

/* The options' help text (each line indented as the stages' usage). */
extern const char fs_synth_opts_usage[];

#endif
