/* Score tables: JSON, CSV and Markdown writers, the published reference
 * numbers, and a small JSON reader for comparison runs. */
#include "data/report.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/json.h"

/* ---- published numbers (the one place they live) ---- */

static const fs_report_reference references[] = {
    {
        .dataset = "synapse",
        /* Table 1 of the SAMed paper: TransUNet's 12 Synapse test cases, 8 organs. */
        .source = "SAMed (Zhang & Liu 2023, arXiv:2304.13785, Table 1)",
        .n_classes = 8,
        .class_names = {"aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen",
                        "stomach"},
        .dsc_percent = {87.77, 69.11, 80.45, 79.95, 94.80, 72.17, 88.72, 82.06},
        .mean_dsc_percent = 81.88,
    },
};

const fs_report_reference *fs_report_reference_for(const char *dataset) {
    for (size_t i = 0; i < sizeof references / sizeof references[0]; i++)
        if (!strcmp(references[i].dataset, dataset)) return &references[i];
    return NULL;
}

/* Reference DSC (percent) for one of our classes, NaN if the reference has
 * no class of that name. */
static double reference_dsc(const fs_report_reference *ref, const char *class_name) {
    for (size_t i = 0; i < ref->n_classes; i++)
        if (!strcasecmp(ref->class_names[i], class_name)) return ref->dsc_percent[i];
    return NAN;
}

/* ---- the results structure ---- */

int fs_report_init(fs_report *r, const char *dataset, size_t n_classes, const char *const *class_names) {
    memset(r, 0, sizeof *r);
    if (!n_classes) return fs_error("report: no classes to score");
    snprintf(r->dataset, sizeof r->dataset, "%s", dataset ? dataset : "");
    r->n_classes = n_classes;
    r->class_names = calloc(n_classes, sizeof *r->class_names);
    if (!r->class_names) return fs_error("report: out of memory");
    for (size_t c = 0; c < n_classes; c++)
        if (!(r->class_names[c] = strdup(class_names[c]))) {
            fs_report_free(r);
            return fs_error("report: out of memory");
        }
    return FS_OK;
}

void fs_report_free(fs_report *r) {
    if (r->class_names)
        for (size_t c = 0; c < r->n_classes; c++) free(r->class_names[c]);
    free(r->class_names);
    for (size_t i = 0; i < r->n_cases; i++) free(r->case_ids[i]);
    free(r->case_ids);
    free(r->scores);
    for (size_t i = 0; i < r->n_compare; i++) {
        free(r->compare[i].dsc);
        free(r->compare[i].hd95_mm);
        free(r->compare[i].hd95_vox);
    }
    free(r->compare);
    memset(r, 0, sizeof *r);
}

int fs_report_add_case(fs_report *r, const char *case_id, const fs_class_scores *scores) {
    if (r->n_cases == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        char **ids = realloc(r->case_ids, cap * sizeof *ids);
        if (!ids) return fs_error("report: out of memory");
        r->case_ids = ids;
        fs_class_scores *s = realloc(r->scores, cap * r->n_classes * sizeof *s);
        if (!s) return fs_error("report: out of memory");
        r->scores = s;
        r->cap = cap;
    }
    if (!(r->case_ids[r->n_cases] = strdup(case_id))) return fs_error("report: out of memory");
    memcpy(r->scores + r->n_cases * r->n_classes, scores, r->n_classes * sizeof *scores);
    r->n_cases++;
    return FS_OK;
}

void fs_report_means(const fs_report *r, fs_class_scores *per_class, double *mean_dsc, double *mean_hd95_mm,
                     double *mean_hd95_vox) {
    double td = 0, tm = 0, tv = 0;
    for (size_t c = 0; c < r->n_classes; c++) {
        double d = 0, m = 0, v = 0;
        for (size_t i = 0; i < r->n_cases; i++) {
            const fs_class_scores *s = &r->scores[i * r->n_classes + c];
            d += s->dsc;
            m += s->hd95_mm;
            v += s->hd95_vox;
        }
        double n = (double)r->n_cases;
        d = r->n_cases ? d / n : NAN;
        m = r->n_cases ? m / n : NAN;
        v = r->n_cases ? v / n : NAN;
        if (per_class) {
            memset(&per_class[c], 0, sizeof per_class[c]);
            per_class[c].dsc = d;
            per_class[c].hd95_mm = m;
            per_class[c].hd95_vox = v;
        }
        td += d, tm += m, tv += v;
    }
    double nc = (double)r->n_classes;
    if (mean_dsc) *mean_dsc = td / nc;
    if (mean_hd95_mm) *mean_hd95_mm = tm / nc;
    if (mean_hd95_vox) *mean_hd95_vox = tv / nc;
}

/* ---- a small JSON reader (enough for scores.json) ---- */

typedef enum { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ } jv_type;

typedef struct jv {
    jv_type type;
    double num;
    char *str;
    size_t n;
    char **keys;       /* JV_OBJ: n keys */
    struct jv *items;  /* JV_ARR, JV_OBJ: n values */
} jv;

typedef struct {
    const char *start, *p, *end;
    const char *path;
    int depth;
} jparser;

static void jv_free(jv *v) {
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys) free(v->keys[i]);
        if (v->items) jv_free(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
    memset(v, 0, sizeof *v);
}

static int jerr(jparser *ps, const char *what) {
    return fs_error("cannot read '%s': bad JSON at byte %zu: %s", ps->path, (size_t)(ps->p - ps->start), what);
}

static void jskip(jparser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int jparse_value(jparser *ps, jv *v);

/* A string literal; \uXXXX escapes become '?' outside ASCII (class and case
 * names are ASCII in practice; only equality with our own names matters). */
static int jparse_string(jparser *ps, char **out) {
    if (ps->p >= ps->end || *ps->p != '"') return jerr(ps, "expected a string");
    ps->p++;
    size_t cap = 32, n = 0;
    char *s = malloc(cap);
    if (!s) return fs_error("out of memory");
    while (ps->p < ps->end && *ps->p != '"') {
        char c = *ps->p++;
        if ((unsigned char)c < 0x20) {
            free(s);
            return jerr(ps, "control character in a string");
        }
        if (c == '\\') {
            if (ps->p >= ps->end) break;
            char e = *ps->p++;
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (ps->end - ps->p < 4) {
                    free(s);
                    return jerr(ps, "truncated \\u escape");
                }
                unsigned code = 0;
                for (int k = 0; k < 4; k++) {
                    int h = ps->p[k];
                    if (!isxdigit(h)) {
                        free(s);
                        return jerr(ps, "bad \\u escape");
                    }
                    code = code * 16 + (unsigned)(isdigit(h) ? h - '0' : tolower(h) - 'a' + 10);
                }
                ps->p += 4;
                c = code < 0x80 ? (char)code : '?';
                break;
            }
            default: free(s); return jerr(ps, "bad escape");
            }
        }
        if (n + 2 > cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) {
                free(s);
                return fs_error("out of memory");
            }
            s = t;
        }
        s[n++] = c;
    }
    if (ps->p >= ps->end) {
        free(s);
        return jerr(ps, "unterminated string");
    }
    ps->p++;
    s[n] = 0;
    *out = s;
    return FS_OK;
}

static int jappend(jv *v, size_t *cap) {
    if (v->n < *cap) return FS_OK;
    size_t nc = *cap ? 2 * *cap : 8;
    jv *items = realloc(v->items, nc * sizeof *items);
    if (!items) return fs_error("out of memory");
    v->items = items;
    if (v->type == JV_OBJ) {
        char **keys = realloc(v->keys, nc * sizeof *keys);
        if (!keys) return fs_error("out of memory");
        v->keys = keys;
    }
    *cap = nc;
    return FS_OK;
}

static int jparse_container(jparser *ps, jv *v, int is_obj) {
    if (++ps->depth > 64) return jerr(ps, "nested too deeply");
    v->type = is_obj ? JV_OBJ : JV_ARR;
    ps->p++;
    size_t cap = 0;
    jskip(ps);
    if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
        ps->p++;
        ps->depth--;
        return FS_OK;
    }
    for (;;) {
        jskip(ps);
        if (jappend(v, &cap)) return FS_ERR;
        if (is_obj) {
            if (jparse_string(ps, &v->keys[v->n])) return FS_ERR;
            jskip(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(v->keys[v->n]);
                return jerr(ps, "expected ':'");
            }
            ps->p++;
        }
        memset(&v->items[v->n], 0, sizeof v->items[v->n]);
        if (jparse_value(ps, &v->items[v->n])) {
            if (is_obj) free(v->keys[v->n]);
            jv_free(&v->items[v->n]);
            return FS_ERR;
        }
        v->n++;
        jskip(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
            ps->p++;
            ps->depth--;
            return FS_OK;
        }
        return jerr(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int jparse_value(jparser *ps, jv *v) {
    jskip(ps);
    if (ps->p >= ps->end) return jerr(ps, "unexpected end");
    char c = *ps->p;
    if (c == '{' || c == '[') return jparse_container(ps, v, c == '{');
    if (c == '"') {
        v->type = JV_STR;
        return jparse_string(ps, &v->str);
    }
    static const struct { const char *word; jv_type type; double num; } words[] = {
        {"null", JV_NULL, 0}, {"true", JV_BOOL, 1}, {"false", JV_BOOL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(words[i].word);
        if ((size_t)(ps->end - ps->p) >= l && !memcmp(ps->p, words[i].word, l)) {
            ps->p += l;
            v->type = words[i].type;
            v->num = words[i].num;
            return FS_OK;
        }
    }
    if (c == '-' || isdigit((unsigned char)c)) {
        char *end;
        v->num = strtod(ps->p, &end); /* the buffer is NUL-terminated past its end */
        if (end == ps->p || end > ps->end) return jerr(ps, "bad number");
        ps->p = end;
        v->type = JV_NUM;
        return FS_OK;
    }
    return jerr(ps, "unexpected character");
}

static const jv *jget(const jv *obj, const char *key) {
    if (!obj || obj->type != JV_OBJ) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

/* A number, or NaN for null / absent / not a number. */
static double jnum(const jv *v) { return v && v->type == JV_NUM ? v->num : NAN; }

int fs_report_add_compare(fs_report *r, const char *name, const char *json_path) {
    unsigned char *data;
    size_t size;
    if (fs_read_file(json_path, &data, &size)) return FS_ERR;
    jparser ps = {(const char *)data, (const char *)data, (const char *)data + size, json_path, 0};
    jv root = {0};
    int rc = jparse_value(&ps, &root);
    if (rc == FS_OK) {
        jskip(&ps);
        if (ps.p != ps.end) rc = jerr(&ps, "trailing data");
    }
    free(data);
    if (rc) {
        jv_free(&root);
        return FS_ERR;
    }
    const jv *mean = jget(&root, "mean");
    if (root.type != JV_OBJ || !jget(&root, "mean_dsc") || !mean || mean->type != JV_OBJ) {
        jv_free(&root);
        return fs_error("cannot read '%s': not a scores.json (no \"mean\" and \"mean_dsc\")", json_path);
    }
    fs_report_compare *arr = realloc(r->compare, (r->n_compare + 1) * sizeof *arr);
    if (!arr) {
        jv_free(&root);
        return fs_error("report: out of memory");
    }
    r->compare = arr;
    fs_report_compare *c = &arr[r->n_compare];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->path, sizeof c->path, "%s", json_path);
    c->dsc = malloc(r->n_classes * sizeof *c->dsc);
    c->hd95_mm = malloc(r->n_classes * sizeof *c->hd95_mm);
    c->hd95_vox = malloc(r->n_classes * sizeof *c->hd95_vox);
    if (!c->dsc || !c->hd95_mm || !c->hd95_vox) {
        free(c->dsc), free(c->hd95_mm), free(c->hd95_vox);
        jv_free(&root);
        return fs_error("report: out of memory");
    }
    const jv *md = jget(mean, "dsc"), *mm = jget(mean, "hd95_mm"), *mv = jget(mean, "hd95_vox");
    for (size_t k = 0; k < r->n_classes; k++) {
        c->dsc[k] = jnum(jget(md, r->class_names[k]));
        c->hd95_mm[k] = jnum(jget(mm, r->class_names[k]));
        c->hd95_vox[k] = jnum(jget(mv, r->class_names[k]));
    }
    c->mean_dsc = jnum(jget(&root, "mean_dsc"));
    c->mean_hd95_mm = jnum(jget(&root, "mean_hd95_mm"));
    c->mean_hd95_vox = jnum(jget(&root, "mean_hd95_vox"));
    r->n_compare++;
    jv_free(&root);
    return FS_OK;
}

/* ---- writers ---- */

/* {"class": value, ...} over the classes; value(k) picks one number. */
static void json_class_map(FILE *f, const fs_report *r, const fs_class_scores *s, int which) {
    fputc('{', f);
    for (size_t k = 0; k < r->n_classes; k++) {
        if (k) fputs(", ", f);
        fs_json_string(f, r->class_names[k]);
        fputs(": ", f);
        fs_json_number(f, which == 0 ? s[k].dsc : which == 1 ? s[k].hd95_mm : s[k].hd95_vox);
    }
    fputc('}', f);
}

static void json_array_map(FILE *f, const fs_report *r, const double *v) {
    fputc('{', f);
    for (size_t k = 0; k < r->n_classes; k++) {
        if (k) fputs(", ", f);
        fs_json_string(f, r->class_names[k]);
        fputs(": ", f);
        fs_json_number(f, v[k]);
    }
    fputc('}', f);
}

int fs_report_write_json(const fs_report *r, FILE *f) {
    fs_class_scores *mean = calloc(r->n_classes, sizeof *mean);
    if (!mean) return fs_error("report: out of memory");
    double md, mm, mv;
    fs_report_means(r, mean, &md, &mm, &mv);
    fputs("{\n  \"schema\": \"fewsam.scores\",\n  \"version\": 1,\n  \"dataset\": ", f);
    fs_json_string(f, r->dataset);
    fputs(",\n  \"convention\": ", f);
    fs_json_string(f, FS_METRICS_CONVENTION);
    fputs(",\n  \"classes\": [", f);
    for (size_t k = 0; k < r->n_classes; k++) {
        if (k) fputs(", ", f);
        fs_json_string(f, r->class_names[k]);
    }
    fputs("],\n  \"cases\": [", f);
    for (size_t i = 0; i < r->n_cases; i++) {
        const fs_class_scores *s = r->scores + i * r->n_classes;
        fputs(i ? ",\n    {\"case\": " : "\n    {\"case\": ", f);
        fs_json_string(f, r->case_ids[i]);
        fputs(",\n     \"dsc\": ", f);
        json_class_map(f, r, s, 0);
        fputs(",\n     \"hd95_mm\": ", f);
        json_class_map(f, r, s, 1);
        fputs(",\n     \"hd95_vox\": ", f);
        json_class_map(f, r, s, 2);
        fputc('}', f);
    }
    fputs(r->n_cases ? "\n  ],\n" : "],\n", f);
    fputs("  \"mean\": {\n    \"dsc\": ", f);
    json_class_map(f, r, mean, 0);
    fputs(",\n    \"hd95_mm\": ", f);
    json_class_map(f, r, mean, 1);
    fputs(",\n    \"hd95_vox\": ", f);
    json_class_map(f, r, mean, 2);
    fputs("\n  },\n  \"mean_dsc\": ", f);
    fs_json_number(f, md);
    fputs(",\n  \"mean_hd95_mm\": ", f);
    fs_json_number(f, mm);
    fputs(",\n  \"mean_hd95_vox\": ", f);
    fs_json_number(f, mv);
    fputs(",\n  \"reference\": ", f);
    const fs_report_reference *ref = fs_report_reference_for(r->dataset);
    if (ref) {
        fputs("{\"source\": ", f);
        fs_json_string(f, ref->source);
        fputs(", \"dsc_percent\": {", f);
        for (size_t k = 0; k < ref->n_classes; k++) {
            if (k) fputs(", ", f);
            fs_json_string(f, ref->class_names[k]);
            fprintf(f, ": %.2f", ref->dsc_percent[k]);
        }
        fprintf(f, "}, \"mean_dsc_percent\": %.2f}", ref->mean_dsc_percent);
    } else {
        fputs("null", f);
    }
    fputs(",\n  \"compare\": [", f);
    for (size_t i = 0; i < r->n_compare; i++) {
        const fs_report_compare *c = &r->compare[i];
        fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
        fs_json_string(f, c->name);
        fputs(", \"file\": ", f);
        fs_json_string(f, c->path);
        fputs(", \"dsc\": ", f);
        json_array_map(f, r, c->dsc);
        fputs(", \"mean_dsc\": ", f);
        fs_json_number(f, c->mean_dsc);
        fputs(", \"mean_hd95_mm\": ", f);
        fs_json_number(f, c->mean_hd95_mm);
        fputs(", \"mean_hd95_vox\": ", f);
        fs_json_number(f, c->mean_hd95_vox);
        fputc('}', f);
    }
    fputs(r->n_compare ? "\n  ]\n}\n" : "]\n}\n", f);
    free(mean);
    return ferror(f) ? fs_error("report: write failed") : FS_OK;
}

/* A CSV field, quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int fs_report_write_csv(const fs_report *r, FILE *f) {
    fputs("case,class,dsc,hd95_mm,hd95_vox\n", f);
    for (size_t i = 0; i < r->n_cases; i++)
        for (size_t k = 0; k < r->n_classes; k++) {
            const fs_class_scores *s = &r->scores[i * r->n_classes + k];
            csv_field(f, r->case_ids[i]);
            fputc(',', f);
            csv_field(f, r->class_names[k]);
            fprintf(f, ",%.17g,%.17g,%.17g\n", s->dsc, s->hd95_mm, s->hd95_vox);
        }
    return ferror(f) ? fs_error("report: write failed") : FS_OK;
}

/* A Markdown cell: "-" for unknown values. */
static void md_cell(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, " %.2f |", v);
    else fputs(" - |", f);
}

/* A table cell text: '|' would end the cell early. */
static void md_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

/* A comparison run's mean over our classes when it has them all (so the
 * Mean column compares like with like); otherwise its own overall mean, and
 * *partial is set for the note. */
static double compare_mean(const fs_report *r, const double *per_class, double own_mean, int *partial) {
    double s = 0;
    for (size_t k = 0; k < r->n_classes; k++) {
        if (!isfinite(per_class[k])) {
            *partial = 1;
            return own_mean;
        }
        s += per_class[k];
    }
    return s / (double)r->n_classes;
}

int fs_report_write_markdown(const fs_report *r, FILE *f) {
    fs_class_scores *mean = calloc(r->n_classes, sizeof *mean);
    if (!mean) return fs_error("report: out of memory");
    double md, mm, mv;
    fs_report_means(r, mean, &md, &mm, &mv);
    fprintf(f, "## Scores: ");
    md_text(f, r->dataset[0] ? r->dataset : "(unnamed data set)");
    fprintf(f, " (%zu case%s)\n\n|  | Mean |", r->n_cases, r->n_cases == 1 ? "" : "s");
    for (size_t k = 0; k < r->n_classes; k++) {
        fputc(' ', f);
        md_text(f, r->class_names[k]);
        fputs(" |", f);
    }
    fputs("\n|---|---:|", f);
    for (size_t k = 0; k < r->n_classes; k++) fputs("---:|", f);
    fputc('\n', f);

    fputs("| DSC (%) |", f);
    md_cell(f, 100 * md);
    for (size_t k = 0; k < r->n_classes; k++) md_cell(f, 100 * mean[k].dsc);
    fputs("\n| HD95 (voxels) |", f);
    md_cell(f, mv);
    for (size_t k = 0; k < r->n_classes; k++) md_cell(f, mean[k].hd95_vox);
    fputs("\n| HD95 (mm) |", f);
    md_cell(f, mm);
    for (size_t k = 0; k < r->n_classes; k++) md_cell(f, mean[k].hd95_mm);
    fputc('\n', f);

    const fs_report_reference *ref = fs_report_reference_for(r->dataset);
    if (ref) {
        fputs("| ", f);
        md_text(f, ref->source);
        fputs(" DSC (%) |", f);
        double *rd = malloc(r->n_classes * sizeof *rd);
        if (!rd) {
            free(mean);
            return fs_error("report: out of memory");
        }
        for (size_t k = 0; k < r->n_classes; k++) rd[k] = reference_dsc(ref, r->class_names[k]);
        int ref_partial = 0;
        md_cell(f, compare_mean(r, rd, ref->mean_dsc_percent, &ref_partial));
        for (size_t k = 0; k < r->n_classes; k++) md_cell(f, rd[k]);
        free(rd);
        fputc('\n', f);
    }
    int partial = 0;
    for (size_t i = 0; i < r->n_compare; i++) {
        const fs_report_compare *c = &r->compare[i];
        fputs("| ", f);
        md_text(f, c->name);
        fputs(" DSC (%) |", f);
        md_cell(f, 100 * compare_mean(r, c->dsc, c->mean_dsc, &partial));
        for (size_t k = 0; k < r->n_classes; k++) md_cell(f, 100 * c->dsc[k]);
        fputs("\n| ", f);
        md_text(f, c->name);
        fputs(" HD95 (voxels) |", f);
        md_cell(f, compare_mean(r, c->hd95_vox, c->mean_hd95_vox, &partial));
        for (size_t k = 0; k < r->n_classes; k++) md_cell(f, c->hd95_vox[k]);
        fputc('\n', f);
    }
    size_t empty_pred = 0, empty_truth = 0;
    for (size_t i = 0; i < r->n_cases; i++) {
        const fs_class_scores *s = r->scores + i * r->n_classes;
        double d = 0, m = 0;
        for (size_t k = 0; k < r->n_classes; k++) {
            d += s[k].dsc, m += s[k].hd95_mm;
            empty_pred += s[k].n_pred == 0;
            empty_truth += s[k].n_pred != 0 && s[k].n_truth == 0;
        }
        fputs("| ", f);
        md_text(f, r->case_ids[i]);
        fputs(" DSC (%) |", f);
        md_cell(f, 100 * d / (double)r->n_classes);
        for (size_t k = 0; k < r->n_classes; k++) md_cell(f, 100 * s[k].dsc);
        fputs("\n| ", f);
        md_text(f, r->case_ids[i]);
        fputs(" HD95 (mm) |", f);
        md_cell(f, m / (double)r->n_classes);
        for (size_t k = 0; k < r->n_classes; k++) md_cell(f, s[k].hd95_mm);
        fputc('\n', f);
    }
    fputs("\nNotes: ", f);
    md_text(f, FS_METRICS_CONVENTION);
    fprintf(f, ". Here %zu case-class pair%s had an empty prediction (DSC 0, HD95 0) and %zu an empty truth "
               "with a non-empty prediction (DSC 1, HD95 0).",
            empty_pred, empty_pred == 1 ? "" : "s", empty_truth);
    if (ref) {
        fputs(" Reference row: published DSC of ", f);
        md_text(f, ref->source);
        fputs(", TransUNet's test split.", f);
    }
    if (ref || r->n_compare)
        fputs(" The Mean of the reference and comparison rows averages the classes shown", f);
    fputs(partial ? " (a comparison run lacking some of them shows its own mean)." : ref || r->n_compare ? "." : "", f);
    fputs("\n", f);
    free(mean);
    return ferror(f) ? fs_error("report: write failed") : FS_OK;
}

int fs_report_write_dir(const fs_report *r, const char *dir) {
    static const char *const names[3] = {"scores.json", "scores.csv", "scores.md"};
    int (*const writers[3])(const fs_report *, FILE *) = {fs_report_write_json, fs_report_write_csv,
                                                          fs_report_write_markdown};
    fs_atomic_file af[3];
    char path[3][4096];
    int opened = 0, rc = FS_OK;
    for (; opened < 3; opened++) {
        if (fs_path_join(path[opened], sizeof path[opened], dir, names[opened]) ||
            fs_atomic_open(&af[opened], path[opened])) {
            rc = FS_ERR;
            break;
        }
        if (writers[opened](r, af[opened].f)) {
            fs_error_wrap("cannot write '%s'", path[opened]);
            opened++;
            rc = FS_ERR;
            break;
        }
    }
    if (rc) {
        for (int i = 0; i < opened; i++) fs_atomic_close(&af[i], 0);
        return FS_ERR;
    }
    /* Commit in order; a failure removes what was already committed, so the
     * directory holds all three tables or none of them. */
    for (int i = 0; i < 3; i++) {
        if (fs_atomic_close(&af[i], 1) == FS_OK) continue;
        for (int j = 0; j < i; j++) unlink(path[j]);
        for (int j = i + 1; j < 3; j++) fs_atomic_close(&af[j], 0);
        return FS_ERR;
    }
    return FS_OK;
}
