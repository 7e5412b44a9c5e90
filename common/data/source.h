/* Where the trainer's samples come from, behind one interface:
 *
 *   pool    the exemplar slices themselves (data/batch.h: sample (seed,
 *           step, position) draws a slice; prompts from its labels): the
 *           no-synthesis ablation
 *   synth   exemplar-guided synthesis in this process (data/synth.h)
 *   stream  the same samples made by synthesizer processes over ZeroMQ
 *           (wire/stream.h): the trainer binds, synthesizers connect
 *
 * With synthesis, position p of step t's samples (micro-batches one after
 * another: p < batch * accum) is synthetic sample t * batch * accum + p,
 * a pure function of (seed, index): synth and stream give the same bytes,
 * so a run's result does not depend on the source, on how many synthesizers
 * answer or on which of them dies. A stream source still reads the
 * exemplars and makes some of the samples itself (verify_every) to catch
 * synthesizers started with other settings or exemplars: a mismatch stops
 * the run rather than training on other data. */
#ifndef FS_SOURCE_H
#define FS_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "data/batch.h"
#include "data/synth.h"
#include "wire/stream.h"

typedef enum { FS_SOURCE_POOL, FS_SOURCE_SYNTH, FS_SOURCE_STREAM } fs_source_kind;

typedef struct {
    fs_source_kind kind;
    const char *data;          /* pool: what fs_pool_open takes; synth, stream: the exemplars (a fewsam.slices file) */
    const char *backgrounds;   /* synth, stream: unlabelled background slices, or NULL */
    fs_synth_config synth;     /* synth, stream (its seed is the run's) */
    size_t per_step;           /* samples per optimiser step (batch * accum) */
    const char *endpoint;      /* stream: what to bind */
    fs_stream_settings stream; /* stream: credit, heartbeats, timeouts, CURVE (first/end index: fs_source_start) */
    uint64_t verify_every;     /* stream: make sample i here too when i % verify_every == 0, and the first
                                  one taken (0: never) */
    int wait_s;                /* stream: give up when no sample came for this long (0: never) */
} fs_source_config;

typedef struct fs_source fs_source;

/* Sensible defaults for kind (stream settings as fs_stream_settings_default,
 * verify_every 64, wait_s 600, synthesis as fs_synth_config_default). */
void fs_source_config_default(fs_source_config *c, fs_source_kind kind);
/* Reads the exemplars (and backgrounds) and builds the synthesis context;
 * nothing is bound yet. Errors name the file. */
int fs_source_open(fs_source **out, const fs_source_config *c);
/* Before the first draw: steps [first_step, end_step) are the ones this
 * process will train (a resumed run starts later). A stream binds its
 * endpoint here and asks only for those steps' samples; other sources
 * need nothing. */
int fs_source_start(fs_source *s, size_t first_step, size_t end_step);
/* The endpoint bound (stream, once started), else NULL. */
const char *fs_source_endpoint(const fs_source *s);
/* The exemplars as a pool (every source reads them). */
const fs_pool *fs_source_pool(const fs_source *s);
size_t fs_source_n_classes(const fs_source *s);
/* A 64-bit hash of the data the samples are made from: the exemplars'
 * slices, and the backgrounds' files. */
uint64_t fs_source_fingerprint(const fs_source *s);
/* "exemplars" or "synthesis: <every setting>" (for the checkpoint). */
void fs_source_describe(const fs_source *s, char *buf, size_t n);

/* Empties b and fills it with the samples of positions first .. first+n-1
 * of step `step` (n <= b->cap_images). */
int fs_source_draw(fs_source *s, fs_batch *b, const fs_sam *m, const fs_batch_config *c, size_t step, size_t first,
                   size_t n);

/* One line of what came over the stream (received, rejected, synthesizers
 * joined and dropped, indices asked again); empty for other sources. */
void fs_source_summary(fs_source *s, char *buf, size_t n);
/* Says bye to the synthesizers (stream) and releases everything. */
void fs_source_close(fs_source *s);

#endif
