#include "data/source.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hash.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/rng.h"

struct fs_source {
    fs_source_config cfg;
    fs_pool pool;
    fs_synth *synth;            /* synth, stream */
    fs_synth_scratch **scratch; /* [n_scratch] one per thread */
    int n_scratch;
    fs_sample *tmp;             /* [n_tmp] samples of one draw (synth) */
    size_t n_tmp;
    fs_sample check;            /* a stream sample made here to compare */
    fs_stream *stream;
    int verified_any;
    uint64_t bg_fp;
};

void fs_source_config_default(fs_source_config *c, fs_source_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->per_step = 1;
    fs_synth_config_default(&c->synth);
    fs_stream_settings_default(&c->stream);
    c->verify_every = 64;
    c->wait_s = 600;
}

/* FNV-1a over the bytes of a file, read in blocks. */
static int hash_file(const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return fs_error_errno("cannot read '%s'", path);
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        *h = fs_fnv1a(*h, buf, n);
    int bad = ferror(f);
    fclose(f);
    return bad ? fs_error("cannot read '%s': read error", path) : FS_OK;
}

/* The backgrounds' files (one, or the *.h5 of a folder, in name order). */
static int hash_backgrounds(const char *path, uint64_t *out) {
    uint64_t h = FS_FNV_OFFSET;
    if (!fs_is_dir(path)) {
        if (hash_file(path, &h)) return FS_ERR;
        *out = fs_hash64(h, 1, 0);
        return FS_OK;
    }
    char **names;
    size_t n;
    if (fs_list_dir(path, &names, &n)) return FS_ERR;
    int rc = FS_OK;
    for (size_t i = 0; rc == FS_OK && i < n; i++) {
        size_t len = strlen(names[i]);
        if (len < 4 || strcmp(names[i] + len - 3, ".h5")) continue;
        char p[4400];
        fs_path_join(p, sizeof p, path, names[i]);
        h = fs_fnv1a(h, names[i], len);
        rc = hash_file(p, &h);
    }
    fs_free_list(names, n);
    *out = fs_hash64(h, 2, 0);
    return rc;
}

int fs_source_open(fs_source **out, const fs_source_config *c) {
    *out = NULL;
    if (c->kind != FS_SOURCE_POOL && c->kind != FS_SOURCE_SYNTH && c->kind != FS_SOURCE_STREAM)
        return fs_error("unknown sample source %d", (int)c->kind);
    if (!c->per_step) return fs_error("sample source: 0 samples per step");
    if (c->kind == FS_SOURCE_STREAM && (!c->endpoint || !*c->endpoint))
        return fs_error("sample stream: no endpoint to bind");
    fs_source *s = calloc(1, sizeof *s);
    if (!s) return fs_error("out of memory");
    s->cfg = *c;
    if (fs_pool_open(&s->pool, c->data)) {
        free(s);
        return FS_ERR;
    }
    if (c->kind == FS_SOURCE_POOL) {
        *out = s;
        return FS_OK;
    }
    int rc = FS_OK;
    if (!fs_is_file(c->data))
        rc = fs_error("'%s': synthesis needs the exemplars as one fewsam.slices file, not a folder", c->data);
    if (!rc && c->synth.prompts != FS_SYNTH_PROMPTS_CLASS)
        rc = fs_error("synthesis prompts '%s': the trainer's targets are class masks (use class prompts)",
                      fs_synth_prompts_name(c->synth.prompts));
    if (!rc) rc = fs_synth_open(&s->synth, c->data, c->backgrounds, &c->synth);
    if (!rc && c->backgrounds) rc = hash_backgrounds(c->backgrounds, &s->bg_fp);
    if (!rc && fs_synth_meta(s->synth)->n_classes != s->pool.n_classes)
        rc = fs_error("'%s': %zu classes as a pool, %zu for synthesis", c->data, s->pool.n_classes,
                      fs_synth_meta(s->synth)->n_classes);
    if (!rc) {
        s->n_scratch = c->kind == FS_SOURCE_SYNTH ? omp_get_max_threads() : 1;
        s->scratch = calloc((size_t)s->n_scratch, sizeof *s->scratch);
        if (!s->scratch) rc = fs_error("out of memory");
        for (int t = 0; !rc && t < s->n_scratch; t++) rc = fs_synth_scratch_new(s->synth, &s->scratch[t]);
    }
    if (rc) {
        fs_source_close(s);
        return FS_ERR;
    }
    *out = s;
    return FS_OK;
}

int fs_source_start(fs_source *s, size_t first_step, size_t end_step) {
    if (s->cfg.kind != FS_SOURCE_STREAM || s->stream) return FS_OK;
    fs_stream_settings set = s->cfg.stream;
    set.first_index = (uint64_t)first_step * s->cfg.per_step;
    set.end_index = (uint64_t)end_step * s->cfg.per_step;
    /* fs_source_draw waits in slices of this, to report while it waits */
    set.get_timeout_ms = 10000;
    if (fs_stream_open(&s->stream, s->cfg.endpoint, &set)) return fs_error_wrap("sample stream");
    return FS_OK;
}

const char *fs_source_endpoint(const fs_source *s) { return s->stream ? fs_stream_endpoint(s->stream) : NULL; }
const fs_pool *fs_source_pool(const fs_source *s) { return &s->pool; }
size_t fs_source_n_classes(const fs_source *s) { return s->pool.n_classes; }

uint64_t fs_source_fingerprint(const fs_source *s) {
    uint64_t fp = fs_pool_fingerprint(&s->pool);
    return s->cfg.backgrounds && s->synth ? fs_hash64(fp, s->bg_fp, 3) : fp;
}

void fs_source_describe(const fs_source *s, char *buf, size_t n) {
    if (s->cfg.kind == FS_SOURCE_POOL) {
        snprintf(buf, n, "exemplars");
        return;
    }
    char d[2048];
    fs_synth_config_describe(fs_synth_config_of(s->synth), d, sizeof d);
    snprintf(buf, n, "synthesis: %s%s", d, s->cfg.backgrounds ? " backgrounds=given" : "");
}

static int same_sample(const fs_sample *a, const fs_sample *b) {
    if (a->h != b->h || a->w != b->w || a->n_objects != b->n_objects) return 0;
    if (memcmp(a->image, b->image, a->h * a->w * sizeof *a->image) || memcmp(a->label, b->label, a->h * a->w))
        return 0;
    for (size_t j = 0; j < a->n_objects; j++) {
        const fs_sample_object *x = &a->objects[j], *y = &b->objects[j];
        if (x->cls != y->cls || memcmp(x->point, y->point, sizeof x->point) || memcmp(x->box, y->box, sizeof x->box))
            return 0;
    }
    return 1;
}

/* Sample `index` from the stream, waiting as long as wait_s allows and
 * saying so every 10 s; checked against this process's own when due. */
static int stream_get(fs_source *s, uint64_t index, fs_sample *out) {
    int waited = 0;
    for (;;) {
        if (fs_stream_get(s->stream, index, out) == FS_OK) break;
        if (!strstr(fs_error_msg(), "did not arrive within")) return FS_ERR;
        waited += 10;
        fs_stream_stats st;
        fs_stream_get_stats(s->stream, &st);
        if (s->cfg.wait_s > 0 && waited >= s->cfg.wait_s)
            return fs_error("no sample %llu from the synthesizers at %s in %d s (%zu connected)",
                            (unsigned long long)index, fs_stream_endpoint(s->stream), waited, st.peers);
        fs_warn("waiting for sample %llu: %zu synthesizer%s connected to %s (%d s)", (unsigned long long)index,
                st.peers, st.peers == 1 ? "" : "s", fs_stream_endpoint(s->stream), waited);
    }
    uint64_t every = s->cfg.verify_every;
    if (every && (!s->verified_any || index % every == 0)) {
        s->verified_any = 1;
        if (fs_synth_sample_with(s->synth, s->scratch[0], index, &s->check, NULL)) {
            fs_sample_free(out);
            return fs_error_wrap("checking sample %llu", (unsigned long long)index);
        }
        if (!same_sample(out, &s->check)) {
            fs_sample_free(out);
            return fs_error("sample %llu from the synthesizers differs from the one this trainer makes: start them "
                            "with the trainer's exemplars, --seed and synthesis settings (and the same build)",
                            (unsigned long long)index);
        }
    }
    return FS_OK;
}

int fs_source_draw(fs_source *s, fs_batch *b, const fs_sam *m, const fs_batch_config *c, size_t step, size_t first,
                   size_t n) {
    if (s->cfg.kind == FS_SOURCE_POOL) return fs_batch_draw(b, m, &s->pool, c, step, first, n);
    if (n > b->cap_images) return fs_error("training batch of %zu images exceeds its room for %zu", n, b->cap_images);
    if (first + n > s->cfg.per_step)
        return fs_error("positions %zu..%zu of a step of %zu samples", first, first + n - 1, s->cfg.per_step);
    if (s->cfg.kind == FS_SOURCE_STREAM && !s->stream) return fs_error("sample stream not started");
    b->n_images = b->n_items = 0;
    const uint64_t base = (uint64_t)step * s->cfg.per_step + first;
    if (n > s->n_tmp) {
        fs_sample *t = realloc(s->tmp, n * sizeof *t);
        if (!t) return fs_error("out of memory");
        memset(t + s->n_tmp, 0, (n - s->n_tmp) * sizeof *t);
        s->tmp = t;
        s->n_tmp = n;
    }
    int rc = FS_OK;
    if (s->cfg.kind == FS_SOURCE_SYNTH) {
        char err[512] = "";
        int failed = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : failed) if (n > 1 && s->n_scratch > 1)
        for (size_t k = 0; k < n; k++) {
            int t = omp_get_thread_num();
            if (t >= s->n_scratch || fs_synth_sample_with(s->synth, s->scratch[t], base + k, &s->tmp[k], NULL)) {
#pragma omp critical(source_error)
                if (!err[0]) snprintf(err, sizeof err, "sample %llu: %s", (unsigned long long)(base + k),
                                      t >= s->n_scratch ? "more threads than scratch" : fs_error_msg());
                failed = 1;
            }
        }
        if (failed) return fs_error("%s", err);
    } else {
        for (size_t k = 0; k < n && !rc; k++) {
            fs_sample_free(&s->tmp[k]);
            memset(&s->tmp[k], 0, sizeof s->tmp[k]);
            rc = stream_get(s, base + k, &s->tmp[k]);
        }
    }
    for (size_t k = 0; k < n && !rc; k++) {
        fs_rng r;
        fs_rng_init(&r, c->seed, fs_hash64(0x6a6974746572ULL /* "jitter" */, base + k, 0));
        rc = fs_batch_add_sample(b, m, &s->tmp[k], s->pool.n_classes, c, &r, (size_t)(base + k));
    }
    if (s->cfg.kind == FS_SOURCE_STREAM) /* the stream hands out fresh samples: keep no more than the credit */
        for (size_t k = 0; k < n; k++) {
            fs_sample_free(&s->tmp[k]);
            memset(&s->tmp[k], 0, sizeof s->tmp[k]);
        }
    return rc;
}

void fs_source_summary(fs_source *s, char *buf, size_t n) {
    if (!n) return;
    buf[0] = 0;
    if (!s->stream) return;
    fs_stream_stats st;
    fs_stream_get_stats(s->stream, &st);
    snprintf(buf, n,
             "%llu samples received over %s, %llu duplicates dropped, %llu invalid messages rejected; synthesizers: "
             "%llu joined, %llu dropped, %zu now; %llu indices asked again; at most %zu samples held (credit %zu)",
             (unsigned long long)st.received, fs_stream_endpoint(s->stream), (unsigned long long)st.duplicates,
             (unsigned long long)st.rejected, (unsigned long long)st.peers_joined,
             (unsigned long long)st.peers_dropped, st.peers, (unsigned long long)st.rerequested, st.max_held,
             s->cfg.stream.credit);
}

void fs_source_close(fs_source *s) {
    if (!s) return;
    if (s->stream) fs_stream_close(s->stream);
    for (size_t k = 0; k < s->n_tmp; k++) fs_sample_free(&s->tmp[k]);
    free(s->tmp);
    fs_sample_free(&s->check);
    for (int t = 0; t < s->n_scratch; t++) fs_synth_scratch_free(s->scratch[t]);
    free(s->scratch);
    fs_synth_free(s->synth);
    fs_pool_free(&s->pool);
    free(s);
}
