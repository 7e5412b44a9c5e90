/* Exemplar-guided synthesis: the context (candidates found once) and the
 * sample pipeline. See data/synth.h for the procedure. */
#include "data/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "data/transform.h"

#define MAX_SIDE 8192
#define MAX_CLASSES 256

/* An object to cut: one class mask, or one component, of one exemplar slice. */
typedef struct {
    size_t slice;
    uint16_t id;      /* component id on the slice's map (0 in class mode) */
    uint8_t cls;      /* its class (region: the most frequent one) */
    size_t x0, y0, x1, y1; /* its box on the slice, inclusive */
    size_t count;
} cand;

typedef struct {
    const float *image;
    size_t h, w;
    fs_support sup;
} bg_slice;

struct fs_synth {
    fs_synth_config cfg;
    const fs_slices *ex;
    size_t h, w, oh, ow, n_classes;
    bg_slice *bgs;
    size_t n_bg;
    fs_support *ex_sup; /* [n_ex] where each exemplar slice is not all zero */
    uint16_t *comp; /* [n_ex, h, w] component ids (component and region modes) */
    cand *cands;    /* grouped by class */
    size_t n_cands;
    size_t n_cls;                       /* classes with candidates */
    uint8_t cls_list[MAX_CLASSES];      /* those classes, increasing */
    size_t cls_first[MAX_CLASSES + 1];  /* their candidates: [cls_first[i], cls_first[i+1]) */
    uint64_t key, noise_key;
    fs_synth_scratch *own;
    /* owned by fs_synth_open */
    fs_slices *own_ex, *own_bg;
    size_t own_n_bg;
};

typedef struct {
    size_t x0, y0, x1, y1, n;
} bbox;

struct fs_synth_scratch {
    size_t oh, ow, n_boxes;
    float *patch, *tmp, *alpha;   /* [oh * ow] */
    uint8_t *plab, *inst, *mask;  /* [oh * ow] */
    int32_t *edt;                 /* [oh * ow] */
    int32_t *edt_scratch;         /* [3 * ow + oh] */
    bbox *boxes;                  /* [(FS_SYNTH_MAX_PASTE + 1) * n_classes] */
};

/* ---- configuration ---- */

static void transform_default(fs_synth_transform *t, double scale_lo, double scale_hi) {
    *t = (fs_synth_transform){.flip_h = 0.5, .flip_v = 0, .rotate = 15, .scale = {scale_lo, scale_hi},
                              .brightness = 0.1, .contrast = {0.8, 1.2}, .gamma = {0.8, 1.25},
                              .blur = {0, 1}, .noise = {0, 0.03}};
}

static void transform_identity(fs_synth_transform *t) {
    *t = (fs_synth_transform){.flip_h = 0, .flip_v = 0, .rotate = 0, .scale = {1, 1}, .brightness = 0,
                              .contrast = {1, 1}, .gamma = {1, 1}, .blur = {0, 0}, .noise = {0, 0}};
}

void fs_synth_config_default(fs_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->objects_min = 1;
    c->objects_max = 3;
    c->cut = FS_SYNTH_CUT_CLASS;
    c->connectivity = 8;
    c->min_pixels = 16;
    c->balance_classes = 1;
    c->prompts = FS_SYNTH_PROMPTS_CLASS;
    c->background_unlabelled = 1;
    transform_default(&c->background, 0.9, 1.1);
    transform_default(&c->object, 0.75, 1.25);
}

void fs_synth_config_identity(fs_synth_config *c) {
    fs_synth_config_default(c);
    transform_identity(&c->background);
    transform_identity(&c->object);
}

static int check_range(const char *name, const double r[2], double lo, double hi) {
    if (!(r[0] >= lo && r[1] <= hi && r[0] <= r[1]))
        return fs_error("synthesis setting %s = %g,%g out of range (%g <= lo <= hi <= %g)", name, r[0], r[1], lo, hi);
    return FS_OK;
}

static int check_value(const char *name, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi)) return fs_error("synthesis setting %s = %g out of range [%g, %g]", name, v, lo, hi);
    return FS_OK;
}

static int check_transform(const char *who, const fs_synth_transform *t) {
    char n[64];
#define CHK(expr) do { if (expr) return FS_ERR; } while (0)
    snprintf(n, sizeof n, "%s.flip_h", who); CHK(check_value(n, t->flip_h, 0, 1));
    snprintf(n, sizeof n, "%s.flip_v", who); CHK(check_value(n, t->flip_v, 0, 1));
    snprintf(n, sizeof n, "%s.rotate", who); CHK(check_value(n, t->rotate, 0, 180));
    snprintf(n, sizeof n, "%s.scale", who); CHK(check_range(n, t->scale, 0.05, 8));
    snprintf(n, sizeof n, "%s.brightness", who); CHK(check_value(n, t->brightness, 0, 1));
    snprintf(n, sizeof n, "%s.contrast", who); CHK(check_range(n, t->contrast, 0, 10));
    snprintf(n, sizeof n, "%s.gamma", who); CHK(check_range(n, t->gamma, 0.05, 20));
    snprintf(n, sizeof n, "%s.blur", who); CHK(check_range(n, t->blur, 0, FS_BLUR_MAX_SIGMA));
    snprintf(n, sizeof n, "%s.noise", who); CHK(check_range(n, t->noise, 0, 1));
#undef CHK
    return FS_OK;
}

int fs_synth_config_check(const fs_synth_config *c) {
    if (c->out_h > MAX_SIDE || c->out_w > MAX_SIDE || (!c->out_h) != (!c->out_w))
        return fs_error("synthesis output size %zux%zu out of range (1 to %d, both or neither)", c->out_h, c->out_w,
                        MAX_SIDE);
    if (c->objects_max > FS_SYNTH_MAX_PASTE || c->objects_min > c->objects_max)
        return fs_error("synthesis objects per sample %zu-%zu out of range (0 <= min <= max <= %d)", c->objects_min,
                        c->objects_max, FS_SYNTH_MAX_PASTE);
    if ((unsigned)c->cut > FS_SYNTH_CUT_REGION) return fs_error("synthesis cut mode %d unknown", (int)c->cut);
    if ((unsigned)c->prompts > FS_SYNTH_PROMPTS_OBJECT) return fs_error("synthesis prompt mode %d unknown", (int)c->prompts);
    if (c->connectivity != 4 && c->connectivity != 8)
        return fs_error("synthesis connectivity %d: must be 4 or 8", c->connectivity);
    if (c->min_pixels < 1 || c->min_pixels > (size_t)MAX_SIDE * MAX_SIDE)
        return fs_error("synthesis min_pixels %zu out of range", c->min_pixels);
    if (check_value("feather", c->feather, 0, FS_BLUR_MAX_SIGMA) ||
        check_value("background_unlabelled", c->background_unlabelled, 0, 1))
        return FS_ERR;
    return check_transform("background", &c->background) || check_transform("object", &c->object) ? FS_ERR : FS_OK;
}

static const char *cut_names[] = {"class", "component", "region"};
static const char *prompt_names[] = {"class", "object"};

const char *fs_synth_cut_name(fs_synth_cut c) { return (unsigned)c <= FS_SYNTH_CUT_REGION ? cut_names[c] : "?"; }
const char *fs_synth_prompts_name(fs_synth_prompts p) {
    return (unsigned)p <= FS_SYNTH_PROMPTS_OBJECT ? prompt_names[p] : "?";
}

int fs_synth_cut_parse(const char *s, fs_synth_cut *c) {
    for (int i = 0; i <= FS_SYNTH_CUT_REGION; i++)
        if (!strcmp(s, cut_names[i])) { *c = (fs_synth_cut)i; return FS_OK; }
    return fs_error("unknown cut mode '%s' (class, component or region)", s);
}

int fs_synth_prompts_parse(const char *s, fs_synth_prompts *p) {
    for (int i = 0; i <= FS_SYNTH_PROMPTS_OBJECT; i++)
        if (!strcmp(s, prompt_names[i])) { *p = (fs_synth_prompts)i; return FS_OK; }
    return fs_error("unknown prompt mode '%s' (class or object)", s);
}

static size_t describe_transform(char *b, size_t n, const char *who, const fs_synth_transform *t) {
    int k = snprintf(b, n,
                     " %s.flip_h=%g %s.flip_v=%g %s.rotate=%g %s.scale=%g,%g %s.brightness=%g %s.contrast=%g,%g"
                     " %s.gamma=%g,%g %s.blur=%g,%g %s.noise=%g,%g",
                     who, t->flip_h, who, t->flip_v, who, t->rotate, who, t->scale[0], t->scale[1], who,
                     t->brightness, who, t->contrast[0], t->contrast[1], who, t->gamma[0], t->gamma[1], who,
                     t->blur[0], t->blur[1], who, t->noise[0], t->noise[1]);
    return k < 0 ? 0 : (size_t)k >= n ? n - 1 : (size_t)k;
}

void fs_synth_config_describe(const fs_synth_config *c, char *buf, size_t n) {
    if (!n) return;
    int k = snprintf(buf, n,
                     "seed=%llu size=%zux%zu objects=%zu-%zu cut=%s connectivity=%d min_pixels=%zu balance_classes=%d"
                     " partial=%d feather=%g prompts=%s background_unlabelled=%g",
                     (unsigned long long)c->seed, c->out_h, c->out_w, c->objects_min, c->objects_max,
                     fs_synth_cut_name(c->cut), c->connectivity, c->min_pixels, c->balance_classes, c->partial,
                     c->feather, fs_synth_prompts_name(c->prompts), c->background_unlabelled);
    size_t used = k < 0 ? 0 : (size_t)k >= n ? n - 1 : (size_t)k;
    used += describe_transform(buf + used, n - used, "background", &c->background);
    describe_transform(buf + used, n - used, "object", &c->object);
}

/* ---- candidates ---- */

/* Connected components of one slice: same nonzero label (component) or any
 * nonzero label (region). Components of at least min_pixels get ids 1, 2,
 * ... on comp; their candidates go to *cands. queue and seen: h * w. */
static int find_components(fs_synth *s, size_t k, const uint8_t *lab, uint16_t *comp, uint32_t *queue,
                           uint8_t *seen, cand **cands, size_t *n, size_t *cap) {
    const size_t h = s->h, w = s->w, hw = h * w;
    const int region = s->cfg.cut == FS_SYNTH_CUT_REGION;
    static const int dx[8] = {1, -1, 0, 0, 1, 1, -1, -1}, dy[8] = {0, 0, 1, -1, 1, -1, 1, -1};
    const int nn = s->cfg.connectivity;
    memset(seen, 0, hw);
    memset(comp, 0, hw * sizeof *comp);
    size_t next_id = 1;
    int warned = 0;
    for (size_t p0 = 0; p0 < hw; p0++) {
        if (!lab[p0] || seen[p0]) continue;
        size_t head = 0, tail = 0;
        size_t cls_count[MAX_CLASSES] = {0};
        queue[tail++] = (uint32_t)p0;
        seen[p0] = 1;
        size_t x0 = w, y0 = h, x1 = 0, y1 = 0;
        while (head < tail) {
            size_t p = queue[head++], y = p / w, x = p % w;
            cls_count[lab[p]]++;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
            for (int d = 0; d < nn; d++) {
                long xx = (long)x + dx[d], yy = (long)y + dy[d];
                if (xx < 0 || yy < 0 || xx >= (long)w || yy >= (long)h) continue;
                size_t q = (size_t)yy * w + (size_t)xx;
                if (seen[q] || !lab[q] || (!region && lab[q] != lab[p0])) continue;
                seen[q] = 1;
                queue[tail++] = (uint32_t)q;
            }
        }
        if (tail < s->cfg.min_pixels) continue;
        if (next_id > 65535) {
            if (!warned) warned = 1;
            continue; /* more than 65535 usable components on one slice: the rest are not used */
        }
        uint8_t cls = lab[p0];
        if (region)
            for (int c = 1; c < MAX_CLASSES; c++)
                if (cls_count[c] > cls_count[cls]) cls = (uint8_t)c;
        for (size_t i = 0; i < tail; i++) comp[queue[i]] = (uint16_t)next_id;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 64;
            cand *c2 = realloc(*cands, nc * sizeof *c2);
            if (!c2) return fs_error("out of memory");
            *cands = c2;
            *cap = nc;
        }
        (*cands)[(*n)++] = (cand){.slice = k, .id = (uint16_t)next_id, .cls = cls, .x0 = x0, .y0 = y0, .x1 = x1,
                                  .y1 = y1, .count = tail};
        next_id++;
    }
    return FS_OK;
}

static int find_class_masks(fs_synth *s, size_t k, const uint8_t *lab, cand **cands, size_t *n, size_t *cap) {
    const size_t h = s->h, w = s->w;
    bbox b[MAX_CLASSES];
    for (int c = 0; c < MAX_CLASSES; c++) b[c] = (bbox){w, h, 0, 0, 0};
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            bbox *e = &b[lab[y * w + x]];
            e->n++;
            if (x < e->x0) e->x0 = x;
            if (x > e->x1) e->x1 = x;
            if (y < e->y0) e->y0 = y;
            if (y > e->y1) e->y1 = y;
        }
    for (int c = 1; c < MAX_CLASSES; c++) {
        if (b[c].n < s->cfg.min_pixels) continue;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 64;
            cand *c2 = realloc(*cands, nc * sizeof *c2);
            if (!c2) return fs_error("out of memory");
            *cands = c2;
            *cap = nc;
        }
        (*cands)[(*n)++] = (cand){.slice = k, .id = 0, .cls = (uint8_t)c, .x0 = b[c].x0, .y0 = b[c].y0,
                                  .x1 = b[c].x1, .y1 = b[c].y1, .count = b[c].n};
    }
    return FS_OK;
}

static int build_candidates(fs_synth *s) {
    const fs_slices *ex = s->ex;
    const size_t hw = s->h * s->w;
    cand *all = NULL;
    size_t n = 0, cap = 0;
    uint32_t *queue = NULL;
    uint8_t *seen = NULL;
    int rc = FS_ERR;
    if (s->cfg.cut != FS_SYNTH_CUT_CLASS) {
        if (ex->n > SIZE_MAX / 2 / hw) return fs_error("exemplars too large");
        s->comp = malloc(ex->n * hw * sizeof *s->comp);
        queue = malloc(hw * sizeof *queue);
        seen = malloc(hw);
        if (!s->comp || !queue || !seen) { fs_error("out of memory for the exemplars' components"); goto done; }
    }
    const uint8_t *labels = ex->label.data;
    for (size_t k = 0; k < ex->n; k++) {
        const uint8_t *lab = labels + k * hw;
        int r = s->cfg.cut == FS_SYNTH_CUT_CLASS
                    ? find_class_masks(s, k, lab, &all, &n, &cap)
                    : find_components(s, k, lab, s->comp + k * hw, queue, seen, &all, &n, &cap);
        if (r) goto done;
    }
    if (!n) {
        fs_error("no labelled object of at least %zu pixels in the exemplars (%zu slices)", s->cfg.min_pixels, ex->n);
        goto done;
    }
    /* group by class, stable (slice order within a class) */
    size_t count[MAX_CLASSES + 1] = {0};
    for (size_t i = 0; i < n; i++) count[all[i].cls]++;
    s->cands = malloc(n * sizeof *s->cands);
    if (!s->cands) { fs_error("out of memory"); goto done; }
    size_t pos[MAX_CLASSES], off = 0;
    s->n_cls = 0;
    for (int c = 0; c < MAX_CLASSES; c++) {
        pos[c] = off;
        if (count[c]) {
            s->cls_list[s->n_cls] = (uint8_t)c;
            s->cls_first[s->n_cls] = off;
            s->n_cls++;
        }
        off += count[c];
    }
    s->cls_first[s->n_cls] = n;
    for (size_t i = 0; i < n; i++) s->cands[pos[all[i].cls]++] = all[i];
    s->n_cands = n;
    rc = FS_OK;
done:
    free(all);
    free(queue);
    free(seen);
    return rc;
}

/* ---- context ---- */

int fs_synth_create(fs_synth **out, const fs_slices *exemplars, const fs_slices *backgrounds, size_t n_backgrounds,
                    const fs_synth_config *cfg) {
    *out = NULL;
    if (fs_synth_config_check(cfg)) return FS_ERR;
    if (exemplars->n == 0) return fs_error("the exemplar shard holds no slice");
    if (exemplars->h > MAX_SIDE || exemplars->w > MAX_SIDE || !exemplars->h || !exemplars->w)
        return fs_error("exemplar slices of %zux%zu: out of range (1 to %d)", exemplars->h, exemplars->w, MAX_SIDE);
    if (exemplars->meta.n_classes > MAX_CLASSES)
        return fs_error("exemplars declare %zu classes (at most %d)", exemplars->meta.n_classes, MAX_CLASSES);
    fs_synth *s = calloc(1, sizeof *s);
    if (!s) return fs_error("out of memory");
    s->cfg = *cfg;
    s->ex = exemplars;
    s->h = exemplars->h;
    s->w = exemplars->w;
    s->oh = cfg->out_h ? cfg->out_h : s->h;
    s->ow = cfg->out_w ? cfg->out_w : s->w;
    s->n_classes = exemplars->meta.n_classes ? exemplars->meta.n_classes : MAX_CLASSES;
    s->key = fs_hash64(cfg->seed, 0x73796e7468ULL /* "synth" */, 0);
    s->noise_key = fs_hash64(cfg->seed, 0x6e6f697365ULL /* "noise" */, 0);
    size_t nb = 0;
    for (size_t i = 0; i < n_backgrounds; i++) nb += backgrounds[i].n;
    if (nb) {
        s->bgs = malloc(nb * sizeof *s->bgs);
        if (!s->bgs) { fs_synth_free(s); return fs_error("out of memory"); }
        for (size_t i = 0; i < n_backgrounds; i++) {
            const fs_slices *b = &backgrounds[i];
            if (b->h > MAX_SIDE || b->w > MAX_SIDE) {
                fs_synth_free(s);
                return fs_error("background slices of %zux%zu: out of range (at most %d)", b->h, b->w, MAX_SIDE);
            }
            for (size_t k = 0; k < b->n; k++) {
                bg_slice *g = &s->bgs[s->n_bg++];
                *g = (bg_slice){(const float *)b->image.data + k * b->h * b->w, b->h, b->w, {0, 0, -1, -1}};
                fs_warp_support(g->image, NULL, g->h, g->w, &g->sup);
            }
        }
    }
    s->ex_sup = malloc(exemplars->n * sizeof *s->ex_sup);
    if (!s->ex_sup) { fs_synth_free(s); return fs_error("out of memory"); }
    for (size_t k = 0; k < exemplars->n; k++)
        fs_warp_support((const float *)exemplars->image.data + k * s->h * s->w,
                        (const uint8_t *)exemplars->label.data + k * s->h * s->w, s->h, s->w, &s->ex_sup[k]);
    if (build_candidates(s) || fs_synth_scratch_new(s, &s->own)) {
        fs_synth_free(s);
        return FS_ERR;
    }
    *out = s;
    return FS_OK;
}

static int read_backgrounds(const char *path, fs_slices **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!fs_is_dir(path)) {
        if (!fs_is_file(path)) return fs_error("cannot open '%s': no such file or directory", path);
        fs_slices *b = calloc(1, sizeof *b);
        if (!b) return fs_error("out of memory");
        if (fs_slices_read(path, b)) { free(b); return FS_ERR; }
        *out = b;
        *n = 1;
        return FS_OK;
    }
    char **names;
    size_t count;
    if (fs_list_dir(path, &names, &count)) return FS_ERR;
    fs_slices *b = calloc(count ? count : 1, sizeof *b);
    if (!b) { fs_free_list(names, count); return fs_error("out of memory"); }
    size_t k = 0;
    int rc = FS_OK;
    for (size_t i = 0; i < count && !rc; i++) {
        size_t len = strlen(names[i]);
        if (len < 4 || strcmp(names[i] + len - 3, ".h5") || names[i][0] == '.') continue;
        char p[4096];
        fs_path_join(p, sizeof p, path, names[i]);
        if (fs_slices_read(p, &b[k])) rc = FS_ERR;
        else k++;
    }
    fs_free_list(names, count);
    if (!rc && !k) rc = fs_error("'%s': no fewsam.slices shard (*.h5) in the folder", path);
    if (rc) {
        for (size_t i = 0; i < k; i++) fs_slices_free(&b[i]);
        free(b);
        return FS_ERR;
    }
    *out = b;
    *n = k;
    return FS_OK;
}

int fs_synth_open(fs_synth **out, const char *exemplars, const char *backgrounds, const fs_synth_config *cfg) {
    *out = NULL;
    if (fs_synth_config_check(cfg)) return FS_ERR;
    if (!fs_is_file(exemplars)) return fs_error("cannot open '%s': no such file", exemplars);
    fs_slices *ex = calloc(1, sizeof *ex);
    if (!ex) return fs_error("out of memory");
    if (fs_slices_read(exemplars, ex)) { free(ex); return FS_ERR; }
    fs_slices *bg = NULL;
    size_t nbg = 0;
    if (backgrounds && read_backgrounds(backgrounds, &bg, &nbg)) {
        fs_slices_free(ex);
        free(ex);
        return FS_ERR;
    }
    fs_synth *s;
    if (fs_synth_create(&s, ex, bg, nbg, cfg)) {
        fs_error_wrap("'%s'", exemplars);
        for (size_t i = 0; i < nbg; i++) fs_slices_free(&bg[i]);
        free(bg);
        fs_slices_free(ex);
        free(ex);
        return FS_ERR;
    }
    s->own_ex = ex;
    s->own_bg = bg;
    s->own_n_bg = nbg;
    *out = s;
    return FS_OK;
}

void fs_synth_free(fs_synth *s) {
    if (!s) return;
    fs_synth_scratch_free(s->own);
    free(s->comp);
    free(s->cands);
    free(s->bgs);
    free(s->ex_sup);
    if (s->own_ex) { fs_slices_free(s->own_ex); free(s->own_ex); }
    for (size_t i = 0; i < s->own_n_bg; i++) fs_slices_free(&s->own_bg[i]);
    free(s->own_bg);
    free(s);
}

const fs_synth_config *fs_synth_config_of(const fs_synth *s) { return &s->cfg; }
const fs_shard_meta *fs_synth_meta(const fs_synth *s) { return &s->ex->meta; }
void fs_synth_size(const fs_synth *s, size_t *h, size_t *w) { *h = s->oh, *w = s->ow; }
size_t fs_synth_candidates(const fs_synth *s) { return s->n_cands; }
size_t fs_synth_backgrounds(const fs_synth *s) { return s->n_bg; }

int fs_synth_scratch_new(const fs_synth *s, fs_synth_scratch **out) {
    *out = NULL;
    fs_synth_scratch *w = calloc(1, sizeof *w);
    if (!w) return fs_error("out of memory");
    const size_t n = s->oh * s->ow;
    w->oh = s->oh;
    w->ow = s->ow;
    w->n_boxes = (FS_SYNTH_MAX_PASTE + 1) * s->n_classes;
    w->patch = malloc(n * sizeof *w->patch);
    w->tmp = malloc(n * sizeof *w->tmp);
    w->alpha = malloc(n * sizeof *w->alpha);
    w->plab = malloc(n);
    w->inst = malloc(n);
    w->mask = malloc(n);
    w->edt = malloc(n * sizeof *w->edt);
    w->edt_scratch = malloc((3 * s->ow + s->oh) * sizeof *w->edt_scratch);
    w->boxes = malloc(w->n_boxes * sizeof *w->boxes);
    if (!w->patch || !w->tmp || !w->alpha || !w->plab || !w->inst || !w->mask || !w->edt || !w->edt_scratch ||
        !w->boxes) {
        fs_synth_scratch_free(w);
        return fs_error("out of memory for synthesis scratch (%zux%zu)", s->oh, s->ow);
    }
    *out = w;
    return FS_OK;
}

void fs_synth_scratch_free(fs_synth_scratch *w) {
    if (!w) return;
    free(w->patch);
    free(w->tmp);
    free(w->alpha);
    free(w->plab);
    free(w->inst);
    free(w->mask);
    free(w->edt);
    free(w->edt_scratch);
    free(w->boxes);
    free(w);
}

/* ---- one sample ---- */

typedef struct {
    int flip_h, flip_v;
    double angle, scale, brightness, contrast, gamma, blur, noise;
} params;

/* One index in [0, n) from one draw (multiply-shift: bias below n / 2^64). */
static size_t pick(fs_rng *r, size_t n) { return (size_t)(((unsigned __int128)fs_rng_u64(r) * n) >> 64); }

/* Always nine draws, in this order. */
static void draw_params(fs_rng *r, const fs_synth_transform *t, params *p) {
    p->flip_h = fs_rng_uniform(r) < t->flip_h;
    p->flip_v = fs_rng_uniform(r) < t->flip_v;
    p->angle = fs_rng_range(r, -t->rotate, t->rotate);
    p->scale = fs_rng_range(r, t->scale[0], t->scale[1]);
    p->brightness = fs_rng_range(r, -t->brightness, t->brightness);
    p->contrast = fs_rng_range(r, t->contrast[0], t->contrast[1]);
    double u = fs_rng_uniform(r);
    p->gamma = t->gamma[0] == t->gamma[1] ? t->gamma[0] : exp(log(t->gamma[0]) + u * (log(t->gamma[1]) - log(t->gamma[0])));
    p->blur = fs_rng_range(r, t->blur[0], t->blur[1]);
    p->noise = fs_rng_range(r, t->noise[0], t->noise[1]);
}

/* The inverse of (resize rz) . R(angle) . scale . flips: destination offsets
 * from the destination centre to source offsets from the source centre. */
static void inverse_linear(const params *p, double rzx, double rzy, double a[2][2]) {
    const double th = p->angle * M_PI / 180.0;
    const double c = cos(th), sn = sin(th);
    const double fx = p->flip_h ? -1.0 : 1.0, fy = p->flip_v ? -1.0 : 1.0;
    /* F (1/s) R(-th) diag(1/rzx, 1/rzy), R(-th) = [[c, sn], [-sn, c]] */
    const double is = 1.0 / p->scale;
    a[0][0] = fx * is * c / rzx;
    a[0][1] = fx * is * sn / rzy;
    a[1][0] = -fy * is * sn / rzx;
    a[1][1] = fy * is * c / rzy;
    if (p->angle == 0) a[0][1] = a[1][0] = 0; /* exact identity when nothing rotates */
}

static fs_affine centred_map(const double a[2][2], double csx, double csy, double cdx, double cdy) {
    fs_affine m = {.a = {{a[0][0], a[0][1]}, {a[1][0], a[1][1]}}};
    m.t[0] = csx - (a[0][0] * cdx + a[0][1] * cdy);
    m.t[1] = csy - (a[1][0] * cdx + a[1][1] * cdy);
    return m;
}

typedef float v4f __attribute__((vector_size(16)));

/* Four float partial sums per block of 1024 values, blocks added in double:
 * fast (no serial dependency on one adder) and accurate enough for a pivot. */
static double mean_of(const float *x, size_t n) {
    double s = 0;
    for (size_t b = 0; b < n; b += 1024) {
        const size_t e = n - b < 1024 ? n : b + 1024;
        v4f a = {0, 0, 0, 0};
        size_t i = b;
        for (; i + 4 <= e; i += 4) {
            v4f v;
            memcpy(&v, x + i, sizeof v);
            a += v;
        }
        for (; i < e; i++) a[0] += x[i];
        s += (double)a[0] + (double)a[1] + (double)a[2] + (double)a[3];
    }
    return n ? s / (double)n : 0;
}

/* Blur, then contrast, brightness, gamma and noise in one pass. */
static void intensity_chain(float *x, size_t h, size_t w, double pivot, const params *p, float *tmp, uint64_t key,
                            uint64_t index, uint64_t part) {
    fs_blur(x, h, w, p->blur, tmp);
    fs_intensity_noise(x, h * w, p->contrast, pivot, p->brightness, p->gamma, p->noise, key, index, part << 32);
}

static inline long floor_l(double v) {
    long i = (long)v;
    return i - (v < (double)i);
}

/* The object's labels in the patch: nearest source pixel (round half up),
 * kept when it lies in the candidate's box and belongs to it; 0 elsewhere. */
static void warp_object_labels(const fs_synth *s, const cand *cd, uint8_t *dst, size_t ph, size_t pw, long ox,
                               long oy, const fs_affine *m) {
    const size_t hw = s->h * s->w, W = s->w;
    const uint8_t *lab = (const uint8_t *)s->ex->label.data + cd->slice * hw;
    const uint16_t *comp = s->comp ? s->comp + cd->slice * hw : NULL;
    const long bx0 = (long)cd->x0, by0 = (long)cd->y0;
    const unsigned long bw = (unsigned long)(cd->x1 - cd->x0 + 1), bh = (unsigned long)(cd->y1 - cd->y0 + 1);
    const double du = m->a[0][0], dv = m->a[1][0];
    for (size_t r = 0; r < ph; r++) {
        const double y = (double)(oy + (long)r), x0 = (double)ox;
        /* source coordinates relative to the box, plus one so that the
         * truncation below is a floor for anything that can land inside */
        const double u0 = m->a[0][1] * y + m->t[0] + du * x0 + 0.5 - (double)bx0 + 1.0;
        const double v0 = m->a[1][1] * y + m->t[1] + dv * x0 + 0.5 - (double)by0 + 1.0;
        uint8_t *out = dst + r * pw;
        for (size_t c = 0; c < pw; c++) {
            double u = u0 + du * (double)c, v = v0 + dv * (double)c;
            u = u < -1e9 ? -1e9 : u > 1e9 ? 1e9 : u;
            v = v < -1e9 ? -1e9 : v > 1e9 ? 1e9 : v;
            const long xi = (long)u - 1, yi = (long)v - 1;
            uint8_t o = 0;
            if ((unsigned long)xi < bw && (unsigned long)yi < bh) {
                const size_t q = (size_t)(yi + by0) * W + (size_t)(xi + bx0);
                const uint8_t l = lab[q];
                o = comp ? (comp[q] == cd->id ? l : 0) : (l == cd->cls ? l : 0);
            }
            out[c] = o;
        }
    }
}

static const cand *choose_candidate(const fs_synth *s, fs_rng *r) {
    const uint64_t a = fs_rng_u64(r), b = fs_rng_u64(r);
    if (s->cfg.balance_classes) {
        size_t ci = (size_t)(((unsigned __int128)a * s->n_cls) >> 64);
        size_t lo = s->cls_first[ci], n = s->cls_first[ci + 1] - lo;
        return &s->cands[lo + (size_t)(((unsigned __int128)b * n) >> 64)];
    }
    return &s->cands[(size_t)(((unsigned __int128)b * s->n_cands) >> 64)];
}

/* Pastes one object: returns without change when it falls off the slice. */
static void paste_object(const fs_synth *s, fs_synth_scratch *w, fs_rng *r, uint64_t index, size_t j, fs_sample *out,
                         fs_synth_detail *det) {
    const cand *cd = choose_candidate(s, r);
    params p;
    draw_params(r, &s->cfg.object, &p);
    const double ux = fs_rng_uniform(r), uy = fs_rng_uniform(r);
    const long OW = (long)s->ow, OH = (long)s->oh;
    const double rzx = (double)s->ow / (double)s->w, rzy = (double)s->oh / (double)s->h;
    double a[2][2];
    inverse_linear(&p, rzx, rzy, a);
    /* forward linear part = inverse of a: its absolute entries give the
     * transformed box's half extents */
    const double det2 = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    const double f00 = a[1][1] / det2, f01 = -a[0][1] / det2, f10 = -a[1][0] / det2, f11 = a[0][0] / det2;
    const double hx = (double)(cd->x1 - cd->x0 + 1) / 2, hy = (double)(cd->y1 - cd->y0 + 1) / 2;
    const double ex = fabs(f00) * hx + fabs(f01) * hy, ey = fabs(f10) * hx + fabs(f11) * hy;
    long bw = (long)ceil(2 * ex - 1e-6), bh = (long)ceil(2 * ey - 1e-6);
    if (bw < 1) bw = 1;
    if (bh < 1) bh = 1;
    long tx, ty;
    if (s->cfg.partial) {
        tx = (long)(ux * (double)OW) - bw / 2;
        ty = (long)(uy * (double)OH) - bh / 2;
    } else {
        tx = bw <= OW ? (long)(ux * (double)(OW - bw + 1)) : -(long)(ux * (double)(bw - OW + 1));
        ty = bh <= OH ? (long)(uy * (double)(OH - bh + 1)) : -(long)(uy * (double)(bh - OH + 1));
    }
    if (det) {
        det->pasted[j].cls = cd->cls;
        det->pasted[j].exemplar = cd->slice;
        det->pasted[j].component = cd->id;
        det->pasted[j].src_x0 = cd->x0;
        det->pasted[j].src_y0 = cd->y0;
        det->pasted[j].x0 = tx;
        det->pasted[j].y0 = ty;
        det->pasted[j].bw = (size_t)bw;
        det->pasted[j].bh = (size_t)bh;
        det->pasted[j].angle = p.angle;
        det->pasted[j].scale = p.scale;
        det->pasted[j].flip_h = p.flip_h;
        det->pasted[j].flip_v = p.flip_v;
        det->pasted[j].visible = 0;
    }
    const double csx = (double)(cd->x0 + cd->x1) / 2, csy = (double)(cd->y0 + cd->y1) / 2;
    const double cdx = (double)tx + (double)(bw - 1) / 2, cdy = (double)ty + (double)(bh - 1) / 2;
    const fs_affine m = centred_map(a, csx, csy, cdx, cdy);
    /* the patch: the box, a margin for the blur and the feather, clipped */
    long mg = fs_blur_radius(p.blur);
    const long mf = fs_blur_radius(s->cfg.feather);
    if (mf > mg) mg = mf;
    long px0 = tx - mg, py0 = ty - mg, px1 = tx + bw + mg, py1 = ty + bh + mg;
    if (px0 < 0) px0 = 0;
    if (py0 < 0) py0 = 0;
    if (px1 > OW) px1 = OW;
    if (py1 > OH) py1 = OH;
    if (px1 <= px0 || py1 <= py0) return;
    const size_t pw = (size_t)(px1 - px0), ph = (size_t)(py1 - py0), pn = pw * ph;
    warp_object_labels(s, cd, w->plab, ph, pw, px0, py0, &m);
    double sum = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < pn; i++)
        if (w->plab[i]) cnt++;
    if (!cnt) return;
    const float *src = (const float *)s->ex->image.data + cd->slice * s->h * s->w;
    fs_warp_pair_support(src, NULL, s->h, s->w, &s->ex_sup[cd->slice], w->patch, NULL, ph, pw, pw, px0, py0, &m);
    for (size_t i = 0; i < pn; i++)
        if (w->plab[i]) sum += w->patch[i];
    intensity_chain(w->patch, ph, pw, sum / (double)cnt, &p, w->tmp, s->noise_key, index, j + 1);
    const uint8_t id = (uint8_t)(j + 1);
    if (s->cfg.feather >= 0.05) {
        for (size_t i = 0; i < pn; i++) w->alpha[i] = w->plab[i] ? 1.0f : 0.0f;
        fs_blur(w->alpha, ph, pw, s->cfg.feather, w->tmp);
    }
    for (size_t r2 = 0; r2 < ph; r2++) {
        const size_t o = (size_t)(py0 + (long)r2) * s->ow + (size_t)px0;
        const float *pp = w->patch + r2 * pw;
        const uint8_t *pl = w->plab + r2 * pw;
        float *im = out->image + o;
        uint8_t *lb = out->label + o, *in = w->inst + o;
        if (s->cfg.feather >= 0.05) {
            const float *al = w->alpha + r2 * pw;
            for (size_t c = 0; c < pw; c++) {
                if (al[c] > 0) im[c] = al[c] * pp[c] + (1.0f - al[c]) * im[c];
                if (pl[c]) lb[c] = pl[c], in[c] = id;
            }
        } else {
            for (size_t c = 0; c < pw; c++)
                if (pl[c]) im[c] = pp[c], lb[c] = pl[c], in[c] = id;
        }
    }
}

/* Interior-most pixel of the pixels (label == cls and, with inst, inst ==
 * id) inside box b: the distance transform of the box grown by one pixel
 * (clipped to the slice) equals the whole slice's there, because every
 * pixel outside the box is outside the object and the ring is nearer. */
static void interior_point(fs_synth_scratch *w, const uint8_t *label, const uint8_t *inst, size_t H, size_t W,
                           uint8_t cls, uint8_t id, const bbox *b, float pt[2]) {
    const size_t x0 = b->x0 ? b->x0 - 1 : 0, y0 = b->y0 ? b->y0 - 1 : 0;
    const size_t x1 = b->x1 + 1 < W ? b->x1 + 1 : W - 1, y1 = b->y1 + 1 < H ? b->y1 + 1 : H - 1;
    const size_t cw = x1 - x0 + 1, ch = y1 - y0 + 1;
    uint8_t *mk = w->mask;
    for (size_t r = 0; r < ch; r++) {
        const uint8_t *l = label + (y0 + r) * W + x0;
        uint8_t *o = mk + r * cw;
        if (inst) {
            const uint8_t *in = inst + (y0 + r) * W + x0;
            for (size_t c = 0; c < cw; c++) o[c] = (l[c] == cls) & (in[c] == id);
        } else {
            for (size_t c = 0; c < cw; c++) o[c] = l[c] == cls;
        }
    }
    /* pixels outside the object are at distance 0 and every object pixel
     * at least 1 (the box holds one), so the first maximum over the whole
     * box is the object's */
    const size_t best = fs_edt2_argmax_mask(mk, ch, cw, cw, w->edt, w->edt_scratch);
    pt[0] = (float)(x0 + best % cw);
    pt[1] = (float)(y0 + best / cw);
}

/* The end of the run of bytes equal to l[x] from x, eight at a time:
 * label rows are mostly long runs of background. */
static inline size_t run_end(const uint8_t *l, size_t x, size_t n) {
    const uint64_t pat = l[x] * 0x0101010101010101ULL;
    size_t e = x + 1;
    for (; e + 8 <= n; e += 8) {
        uint64_t v;
        memcpy(&v, l + e, 8);
        if (v != pat) break;
    }
    while (e < n && l[e] == l[x]) e++;
    return e;
}

/* The same for runs equal in both l and in. */
static inline size_t run_end2(const uint8_t *l, const uint8_t *in, size_t x, size_t n) {
    const uint64_t pl = l[x] * 0x0101010101010101ULL, pi = in[x] * 0x0101010101010101ULL;
    size_t e = x + 1;
    for (; e + 8 <= n; e += 8) {
        uint64_t a, b;
        memcpy(&a, l + e, 8);
        memcpy(&b, in + e, 8);
        if ((a ^ pl) | (b ^ pi)) break;
    }
    while (e < n && l[e] == l[x] && in[e] == in[x]) e++;
    return e;
}

static void draw_prompts(const fs_synth *s, fs_synth_scratch *w, fs_sample *out, size_t k, fs_synth_detail *det) {
    const size_t H = s->oh, W = s->ow, nc = s->n_classes;
    const int per_object = s->cfg.prompts == FS_SYNTH_PROMPTS_OBJECT;
    const size_t groups = per_object ? k + 1 : 1;
    const size_t nb = groups * nc;
    for (size_t i = 0; i < nb; i++) w->boxes[i] = (bbox){W, H, 0, 0, 0};
    /* runs of one (instance, class) along each row update the boxes once */
    for (size_t y = 0; y < H; y++) {
        const uint8_t *l = out->label + y * W, *in = w->inst + y * W;
        for (size_t x = 0; x < W;) {
            const uint8_t lx = l[x], ix = per_object ? in[x] : 0;
            const size_t e = per_object ? run_end2(l, in, x, W) : run_end(l, x, W);
            if (lx) {
                bbox *b = &w->boxes[ix * nc + lx];
                b->n += e - x;
                if (x < b->x0) b->x0 = x;
                if (e - 1 > b->x1) b->x1 = e - 1;
                if (y < b->y0) b->y0 = y;
                if (y > b->y1) b->y1 = y;
            }
            x = e;
        }
    }
    if (det)
        for (size_t j = 0; j < k; j++) {
            size_t v = 0;
            if (per_object)
                for (size_t c = 1; c < nc; c++) v += w->boxes[(j + 1) * nc + c].n;
            else
                for (size_t i = 0; i < H * W; i++) v += w->inst[i] == j + 1;
            det->pasted[j].visible = v;
        }
    out->n_objects = 0;
    for (size_t g = 0; g < groups; g++)
        for (size_t c = 1; c < nc; c++) {
            const bbox *b = &w->boxes[g * nc + c];
            if (!b->n || out->n_objects == FS_SAMPLE_MAX_OBJECTS) continue;
            fs_sample_object *o = &out->objects[out->n_objects++];
            o->cls = (uint8_t)c;
            o->box[0] = (float)b->x0;
            o->box[1] = (float)b->y0;
            o->box[2] = (float)b->x1;
            o->box[3] = (float)b->y1;
            interior_point(w, out->label, per_object ? w->inst : NULL, H, W, (uint8_t)c, (uint8_t)g, b, o->point);
        }
}

int fs_synth_sample_with(const fs_synth *s, fs_synth_scratch *w, uint64_t index, fs_sample *out,
                         fs_synth_detail *det) {
    if (w->oh != s->oh || w->ow != s->ow) return fs_error("synthesis scratch of another size");
    if (!out->image) {
        if (fs_sample_alloc(out, s->oh, s->ow)) return FS_ERR;
    } else if (out->h != s->oh || out->w != s->ow) {
        return fs_error("sample buffer of %zux%zu for %zux%zu samples", out->h, out->w, s->oh, s->ow);
    }
    out->index = index;
    out->n_objects = 0;
    const size_t H = s->oh, W = s->ow;
    fs_rng r;
    fs_rng_init(&r, s->key, index);

    /* 1-2: the background */
    const double u_pool = fs_rng_uniform(&r);
    const uint64_t u_pick = fs_rng_u64(&r);
    const int unl = s->n_bg > 0 && u_pool < s->cfg.background_unlabelled;
    const size_t bi = (size_t)(((unsigned __int128)u_pick * (unl ? s->n_bg : s->ex->n)) >> 64);
    params bp;
    draw_params(&r, &s->cfg.background, &bp);
    const float *bimg;
    size_t bh, bw;
    if (unl) {
        bimg = s->bgs[bi].image, bh = s->bgs[bi].h, bw = s->bgs[bi].w;
    } else {
        bimg = (const float *)s->ex->image.data + bi * s->h * s->w, bh = s->h, bw = s->w;
    }
    double a[2][2];
    inverse_linear(&bp, (double)W / (double)bw, (double)H / (double)bh, a);
    const fs_affine m = centred_map(a, (double)(bw - 1) / 2, (double)(bh - 1) / 2, (double)(W - 1) / 2,
                                    (double)(H - 1) / 2);
    if (unl) {
        fs_warp_pair_support(bimg, NULL, bh, bw, &s->bgs[bi].sup, out->image, NULL, H, W, W, 0, 0, &m);
        memset(out->label, 0, H * W);
    } else {
        fs_warp_pair_support(bimg, (const uint8_t *)s->ex->label.data + bi * s->h * s->w, bh, bw, &s->ex_sup[bi],
                             out->image, out->label, H, W, W, 0, 0, &m);
    }
    intensity_chain(out->image, H, W, mean_of(out->image, H * W), &bp, w->tmp, s->noise_key, index, 0);
    memset(w->inst, 0, H * W);
    if (det) {
        det->unlabelled = unl;
        det->background = bi;
    }

    /* 3: the objects */
    const size_t k = s->cfg.objects_min + pick(&r, s->cfg.objects_max - s->cfg.objects_min + 1);
    if (det) det->n_pasted = k;
    for (size_t j = 0; j < k; j++) paste_object(s, w, &r, index, j, out, det);

    /* 4: the prompts */
    draw_prompts(s, w, out, k, det);
    if (det && det->instance) memcpy(det->instance, w->inst, H * W);
    return FS_OK;
}

int fs_synth_sample(fs_synth *s, uint64_t index, fs_sample *out) {
    return fs_synth_sample_with(s, s->own, index, out, NULL);
}
