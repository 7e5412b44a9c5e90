/* safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {"key": "value"}}, then the raw little-endian data, the
 * offsets counting from the first byte after the header. The header is
 * parsed by a small strict JSON reader and checked whole (dtype x shape
 * matches the byte range, ranges inside the file and disjoint) at open. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/json.h"
#include "io/checkpoint.h"
#include "io/checkpoint_impl.h"

/* ---- a strict JSON reader (RFC 8259), for headers of at most 100 MB ---- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jkind;

typedef struct jval {
    jkind k;
    char *s;              /* string contents (UTF-8, NUL-free), or a number's text */
    size_t n;             /* array / object members */
    struct jval *items;   /* [n] */
    char **keys;          /* [n], objects only */
} jval;

typedef struct {
    const char *start, *p, *end;
    const char *path;
    int depth;
} jparser;

#define J_MAX_DEPTH 64

static void jfree(jval *v) {
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->s);
    memset(v, 0, sizeof *v);
}

static int jerr(jparser *j, const char *what) {
    return fs_error("'%s': malformed safetensors header: %s at byte %zu of the JSON", j->path, what,
                    (size_t)(j->p - j->start));
}

static void jskip_ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* At an opening quote: the decoded string (never longer than its source). */
static int jstring(jparser *j, char **out) {
    j->p++;
    const char *q = j->p;
    while (q < j->end && *q != '"') q += (*q == '\\') ? 2 : 1;
    if (q >= j->end) return jerr(j, "unterminated string");
    char *s = malloc((size_t)(q - j->p) + 1), *o = s;
    if (!s) return fs_error("'%s': out of memory reading the header", j->path);
    while (j->p < q) {
        unsigned char ch = (unsigned char)*j->p;
        if (ch < 0x20) { free(s); return jerr(j, "control character in string"); }
        if (ch != '\\') { *o++ = (char)ch; j->p++; continue; }
        char e = j->p[1];
        j->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (q - j->p < 4 || hex4(j->p, &cp)) { free(s); return jerr(j, "bad \\u escape"); }
            j->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (q - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' || hex4(j->p + 2, &lo) || lo < 0xdc00 ||
                    lo >= 0xe000) {
                    free(s);
                    return jerr(j, "unpaired surrogate in \\u escape");
                }
                j->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                free(s);
                return jerr(j, "unpaired surrogate in \\u escape");
            }
            if (cp == 0) { free(s); return jerr(j, "NUL character in string"); }
            o += put_utf8(o, cp);
            break;
        }
        default: free(s); j->p -= 1; return jerr(j, "bad escape in string");
        }
    }
    *o = 0;
    j->p = q + 1;
    *out = s;
    return FS_OK;
}

static int jnumber(jparser *j, jval *v) {
    const char *b = j->p, *p = j->p;
    if (p < j->end && *p == '-') p++;
    if (p >= j->end || *p < '0' || *p > '9') return jerr(j, "bad number");
    if (*p == '0') p++;
    else while (p < j->end && *p >= '0' && *p <= '9') p++;
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || *p < '0' || *p > '9') { j->p = p; return jerr(j, "bad number"); }
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || *p < '0' || *p > '9') { j->p = p; return jerr(j, "bad number"); }
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    v->k = J_NUM;
    v->s = strndup(b, (size_t)(p - b));
    if (!v->s) return fs_error("'%s': out of memory reading the header", j->path);
    j->p = p;
    return FS_OK;
}

static int jvalue(jparser *j, jval *v);

static int jpush(jparser *j, jval *v, jval *item, char *key) {
    if ((v->n & (v->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = v->n ? v->n * 2 : 4;
        jval *ni = realloc(v->items, cap * sizeof *ni);
        if (ni) v->items = ni;
        char **nk = ni && v->k == J_OBJ ? realloc(v->keys, cap * sizeof *nk) : NULL;
        if (nk) v->keys = nk;
        if (!ni || (v->k == J_OBJ && !nk)) {
            jfree(item);
            free(key);
            return fs_error("'%s': out of memory reading the header", j->path);
        }
    }
    v->items[v->n] = *item;
    if (v->k == J_OBJ) v->keys[v->n] = key;
    v->n++;
    return FS_OK;
}

static int jcontainer(jparser *j, jval *v, char close) {
    v->k = close == '}' ? J_OBJ : J_ARR;
    if (++j->depth > J_MAX_DEPTH) return jerr(j, "nesting too deep");
    j->p++;
    jskip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return FS_OK;
    }
    for (;;) {
        char *key = NULL;
        jskip_ws(j);
        if (v->k == J_OBJ) {
            if (j->p >= j->end || *j->p != '"') return jerr(j, "expected a string key");
            if (jstring(j, &key)) return FS_ERR;
            jskip_ws(j);
            if (j->p >= j->end || *j->p != ':') { free(key); return jerr(j, "expected ':'"); }
            j->p++;
        }
        jval item = {0};
        if (jvalue(j, &item)) { jfree(&item); free(key); return FS_ERR; }
        if (jpush(j, v, &item, key)) return FS_ERR;
        jskip_ws(j);
        if (j->p >= j->end) return jerr(j, "unexpected end");
        if (*j->p == ',') { j->p++; continue; }
        if (*j->p == close) { j->p++; break; }
        return jerr(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    j->depth--;
    return FS_OK;
}

static int jvalue(jparser *j, jval *v) {
    jskip_ws(j);
    if (j->p >= j->end) return jerr(j, "unexpected end");
    size_t left = (size_t)(j->end - j->p);
    switch (*j->p) {
    case '{': return jcontainer(j, v, '}');
    case '[': return jcontainer(j, v, ']');
    case '"': v->k = J_STR; return jstring(j, &v->s);
    case 't': if (left >= 4 && !memcmp(j->p, "true", 4)) { v->k = J_BOOL; j->p += 4; return FS_OK; } break;
    case 'f': if (left >= 5 && !memcmp(j->p, "false", 5)) { v->k = J_BOOL; j->p += 5; return FS_OK; } break;
    case 'n': if (left >= 4 && !memcmp(j->p, "null", 4)) { v->k = J_NULL; j->p += 4; return FS_OK; } break;
    default: if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return jnumber(j, v);
    }
    return jerr(j, "unexpected character");
}

/* A JSON number that is a plain non-negative integer fitting in 64 bits. */
static int juint(const jval *v, uint64_t *out) {
    if (v->k != J_NUM || !v->s[0]) return -1;
    uint64_t x = 0;
    for (const char *p = v->s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

static const jval *jget(const jval *obj, const char *key) {
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}

/* ---- the safetensors index ---- */

static const struct { const char *name; fs_dtype d; } st_dtypes[] = {
    {"F32", FS_F32}, {"F16", FS_F16}, {"BF16", FS_BF16}, {"F64", FS_F64}, {"I64", FS_I64},
    {"I32", FS_I32}, {"I16", FS_I16}, {"I8", FS_I8},     {"U8", FS_U8},   {"U16", FS_U16},
    {"U32", FS_U32}, {"U64", FS_U64}, {"BOOL", FS_U8},
};

static const char *st_dtype_name(fs_dtype d) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].d == d) return st_dtypes[i].name;
    return NULL;
}

typedef struct { uint64_t begin, end; size_t item; } st_range;

static int by_begin(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int load_metadata(fs_ckpt *c, const jval *m) {
    if (m->k != J_OBJ) return fs_error("'%s': safetensors __metadata__ is not an object", c->path);
    c->meta_keys = calloc(m->n ? m->n : 1, sizeof *c->meta_keys);
    c->meta_vals = calloc(m->n ? m->n : 1, sizeof *c->meta_vals);
    if (!c->meta_keys || !c->meta_vals) return fs_error("'%s': out of memory", c->path);
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].k != J_STR)
            return fs_error("'%s': safetensors __metadata__ value of '%s' is not a string", c->path, m->keys[i]);
        c->meta_keys[i] = strdup(m->keys[i]);
        c->meta_vals[i] = strdup(m->items[i].s);
        c->n_meta = i + 1;
        if (!c->meta_keys[i] || !c->meta_vals[i]) return fs_error("'%s': out of memory", c->path);
    }
    return FS_OK;
}

/* One header entry into a storage (its byte range) and a contiguous item. */
static int load_entry(fs_ckpt *c, const char *name, const jval *v, uint64_t data_start, uint64_t data_size,
                      st_range *range) {
    const char *p = c->path;
    if (v->k != J_OBJ) return fs_error("'%s': tensor '%s': header entry is not an object", p, name);
    const jval *dt = jget(v, "dtype"), *sh = jget(v, "shape"), *of = jget(v, "data_offsets");
    if (!dt || !sh || !of)
        return fs_error("'%s': tensor '%s': header entry lacks %s", p, name,
                        !dt ? "\"dtype\"" : !sh ? "\"shape\"" : "\"data_offsets\"");
    fs_ckpt_item it = {0};
    size_t k = 0, nd = sizeof st_dtypes / sizeof *st_dtypes;
    if (dt->k == J_STR)
        for (k = 0; k < nd && strcmp(st_dtypes[k].name, dt->s); k++) {}
    if (dt->k != J_STR || k == nd)
        return fs_error("'%s': tensor '%s': unsupported dtype %s", p, name, dt->k == J_STR ? dt->s : "(not a string)");
    it.e.dtype = st_dtypes[k].d;
    if (sh->k != J_ARR) return fs_error("'%s': tensor '%s': shape is not an array", p, name);
    if (sh->n > FS_MAX_DIMS) return fs_error("'%s': tensor '%s': %zu dimensions (at most %d)", p, name, sh->n, FS_MAX_DIMS);
    it.e.ndim = (int)sh->n;
    for (size_t d = 0; d < sh->n; d++) {
        uint64_t x;
        if (juint(&sh->items[d], &x) || x > FS_CKPT_MAX_NUMEL)
            return fs_error("'%s': tensor '%s': shape entry %zu is not a valid size", p, name, d);
        it.e.shape[d] = (size_t)x;
    }
    uint64_t numel, b, e;
    if (fs_ckpt_numel(p, name, it.e.ndim, it.e.shape, &numel)) return FS_ERR;
    if (of->k != J_ARR || of->n != 2 || juint(&of->items[0], &b) || juint(&of->items[1], &e) || b > e)
        return fs_error("'%s': tensor '%s': data_offsets is not a pair [begin, end] with begin <= end", p, name);
    if (e > data_size)
        return fs_error("'%s': tensor '%s': data_offsets [%llu, %llu] run past the end of the file (%llu data bytes)",
                        p, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    uint64_t esize = fs_dtype_size(it.e.dtype);
    if (e - b != numel * esize)
        return fs_error("'%s': tensor '%s': data_offsets span %llu bytes but %s x %llu elements need %llu", p, name,
                        (unsigned long long)(e - b), dt->s, (unsigned long long)numel,
                        (unsigned long long)(numel * esize));
    fs_ckpt_storage s = {.dtype = it.e.dtype, .numel = numel, .file_offset = data_start + b};
    if (fs_ckpt_add_storage(c, &s, &it.storage)) return FS_ERR;
    uint64_t stride = 1;
    for (int d = it.e.ndim - 1; d >= 0; d--) {
        it.stride[d] = stride;
        stride *= it.e.shape[d];
    }
    if (!(it.e.name = strdup(name))) return fs_error("'%s': out of memory", p);
    *range = (st_range){b, e, c->n};
    return fs_ckpt_add_item(c, &it);
}

static int load_header(fs_ckpt *c, const jval *root, uint64_t data_start) {
    if (root->k != J_OBJ) return fs_error("'%s': safetensors header is not a JSON object", c->path);
    uint64_t data_size = c->file_size - data_start;
    st_range *ranges = malloc((root->n ? root->n : 1) * sizeof *ranges);
    if (!ranges) return fs_error("'%s': out of memory", c->path);
    size_t nr = 0;
    int rc = FS_OK;
    for (size_t i = 0; i < root->n && !rc; i++) {
        if (!strcmp(root->keys[i], "__metadata__")) {
            rc = c->n_meta || c->meta_keys ? fs_error("'%s': two __metadata__ entries", c->path)
                                           : load_metadata(c, &root->items[i]);
        } else {
            rc = load_entry(c, root->keys[i], &root->items[i], data_start, data_size, &ranges[nr]);
            if (!rc) nr++;
        }
    }
    if (!rc) {
        qsort(ranges, nr, sizeof *ranges, by_begin);
        uint64_t end = 0;
        size_t last = 0;
        for (size_t i = 0; i < nr && !rc; i++) {
            if (ranges[i].begin == ranges[i].end) continue; /* empty tensors overlap nothing */
            if (ranges[i].begin < end)
                rc = fs_error("'%s': tensors '%s' and '%s' overlap in the file", c->path,
                              c->items[last].e.name, c->items[ranges[i].item].e.name);
            end = ranges[i].end;
            last = ranges[i].item;
        }
    }
    free(ranges);
    return rc;
}

int fs_safetensors_load(fs_ckpt *c) {
    unsigned char lenbuf[8];
    if (c->file_size < 8) return fs_error("'%s': truncated safetensors file (%llu bytes)", c->path,
                                          (unsigned long long)c->file_size);
    if (fs_ckpt_pread(c, 0, lenbuf, 8)) return FS_ERR;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | lenbuf[i];
    if (n > FS_CKPT_MAX_HEADER)
        return fs_error("'%s': safetensors header length %llu is absurd (limit %u bytes)", c->path,
                        (unsigned long long)n, FS_CKPT_MAX_HEADER);
    if (n > c->file_size - 8)
        return fs_error("'%s': safetensors header length %llu exceeds the file size %llu (truncated file?)", c->path,
                        (unsigned long long)n, (unsigned long long)c->file_size);
    char *hdr = malloc(n + 1);
    if (!hdr) return fs_error("'%s': out of memory reading the header", c->path);
    if (fs_ckpt_pread(c, 8, hdr, n)) {
        free(hdr);
        return FS_ERR;
    }
    hdr[n] = 0;
    jparser j = {hdr, hdr, hdr + n, c->path, 0};
    jval root = {0};
    int rc = jvalue(&j, &root);
    if (!rc) {
        jskip_ws(&j);
        if (j.p != j.end) rc = jerr(&j, "trailing characters after the JSON value");
    }
    if (!rc) rc = load_header(c, &root, 8 + n);
    jfree(&root);
    free(hdr);
    return rc;
}

/* ---- writing ---- */

int fs_safetensors_write(const char *path, const char *const *names, const fs_tensor *tensors, size_t n,
                         const char *const *meta_keys, const char *const *meta_vals, size_t n_meta) {
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !names[i][0]) return fs_error("cannot write '%s': tensor %zu has no name", path, i);
        if (!strcmp(names[i], "__metadata__")) return fs_error("cannot write '%s': '__metadata__' is not a tensor name", path);
        if (!st_dtype_name(tensors[i].dtype))
            return fs_error("cannot write '%s': tensor '%s' has an invalid dtype", path, names[i]);
        if (tensors[i].ndim < 0 || tensors[i].ndim > FS_MAX_DIMS)
            return fs_error("cannot write '%s': tensor '%s' has rank %d", path, names[i], tensors[i].ndim);
        if (!tensors[i].data && fs_tensor_numel(&tensors[i]))
            return fs_error("cannot write '%s': tensor '%s' has no data", path, names[i]);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(names[k], names[i])) return fs_error("cannot write '%s': tensor name '%s' given twice", path, names[i]);
    }
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *m = open_memstream(&hdr, &hlen);
    if (!m) return fs_error_errno("cannot write '%s': out of memory", path);
    fputc('{', m);
    if (n_meta) {
        fputs("\"__metadata__\":{", m);
        for (size_t i = 0; i < n_meta; i++) {
            if (i) fputc(',', m);
            fs_json_string(m, meta_keys[i]);
            fputc(':', m);
            fs_json_string(m, meta_vals[i] ? meta_vals[i] : "");
        }
        fputc('}', m);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const fs_tensor *t = &tensors[i];
        if (i || n_meta) fputc(',', m);
        fs_json_string(m, names[i]);
        fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) fprintf(m, d ? ",%zu" : "%zu", t->shape[d]);
        uint64_t nb = fs_tensor_nbytes(t);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    fputc('}', m);
    while ((ftell(m) & 7) != 0) fputc(' ', m); /* data start on an 8-byte boundary */
    if (fclose(m) != 0 || !hdr) {
        free(hdr);
        return fs_error("cannot write '%s': out of memory", path);
    }
    fs_atomic_file af;
    if (fs_atomic_open(&af, path)) {
        free(hdr);
        return FS_ERR;
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(lenbuf, 1, 8, af.f) == 8 && fwrite(hdr, 1, hlen, af.f) == hlen;
    free(hdr);
    for (size_t i = 0; i < n && ok; i++) {
        size_t nb = fs_tensor_nbytes(&tensors[i]);
        ok = !nb || fwrite(tensors[i].data, 1, nb, af.f) == nb;
    }
    if (!ok) {
        fs_atomic_close(&af, 0);
        return fs_error_errno("cannot write '%s'", path);
    }
    return fs_atomic_close(&af, 1);
}
