/* checkpoints: the golden tiny model as safetensors and as torch.save .pth,
 * safetensors round trips, and hostile or broken files of both kinds.
 *
 * Also a helper for tests/py/test_pth_torch.py:
 *   test_checkpoint --convert IN OUT.safetensors   f32 copies of every tensor of IN
 *   test_checkpoint --dump IN                      name, dtype, shape, f32 sum per tensor */
#include "test.h"

#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/zip.h"

static char golden_st[512], golden_pth[512];

static int expect_open_error(const char *path, const char *pattern) {
    fs_ckpt *c = NULL;
    if (fs_ckpt_open(&c, path) == FS_OK) {
        fs_ckpt_close(c);
        printf("    (opened '%s' without error)\n", path);
        return 0;
    }
    if (!strstr(fs_error_msg(), pattern)) {
        printf("    (message '%s' lacks '%s')\n", fs_error_msg(), pattern);
        return 0;
    }
    return 1;
}

static int write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(d, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* ---- golden files ---- */

static void golden_tiny_formats_agree(void) {
    fs_ckpt *st, *pt;
    if (!fs_is_file(golden_st) || !fs_is_file(golden_pth)) SKIP("no %s", golden_st);
    CHECKF(fs_ckpt_open(&st, golden_st) == FS_OK, "%s", fs_error_msg());
    CHECKF(fs_ckpt_open(&pt, golden_pth) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_count(st) == 202 && fs_ckpt_count(pt) == 202);
    for (size_t i = 0; i < 202; i++) {
        const fs_ckpt_entry *a = fs_ckpt_entry_at(st, i), *b;
        size_t j;
        CHECKF(fs_ckpt_find(pt, a->name, &j) == FS_OK, "%s", fs_error_msg());
        b = fs_ckpt_entry_at(pt, j);
        CHECK(!strcmp(a->name, b->name) && a->ndim == b->ndim && a->dtype == FS_F32 && b->dtype == FS_F32);
        size_t n = 1;
        for (int d = 0; d < a->ndim; d++) {
            CHECKF(a->shape[d] == b->shape[d], "%s dim %d", a->name, d);
            n *= a->shape[d];
        }
        float *x = malloc(n * 4), *y = malloc(n * 4);
        CHECK(x && y);
        CHECKF(fs_ckpt_read_f32(st, i, x, n) == FS_OK, "%s", fs_error_msg());
        CHECKF(fs_ckpt_read_f32(pt, j, y, n) == FS_OK, "%s", fs_error_msg());
        int same = !memcmp(x, y, n * 4);
        free(x);
        free(y);
        CHECKF(same, "%s differs", a->name);
    }
    /* the last pth entry also through fs_ckpt_read */
    fs_tensor t;
    CHECK(fs_ckpt_read(pt, 201, &t) == FS_OK);
    CHECK(t.dtype == FS_F32 && t.ndim == fs_ckpt_entry_at(pt, 201)->ndim);
    fs_tensor_free(&t);
    CHECK(!strcmp(fs_ckpt_path(pt), golden_pth));
    fs_ckpt_close(st);
    fs_ckpt_close(pt);
}

static void golden_metadata_and_missing_names(void) {
    fs_ckpt *st, *pt;
    if (!fs_is_file(golden_st) || !fs_is_file(golden_pth)) SKIP("no %s", golden_st);
    CHECK(fs_ckpt_open(&st, golden_st) == FS_OK);
    CHECK(fs_ckpt_open(&pt, golden_pth) == FS_OK);
    CHECK(fs_ckpt_meta(st, "img_size") && !strcmp(fs_ckpt_meta(st, "img_size"), "64"));
    CHECK(fs_ckpt_meta(st, "global_attn") && !strcmp(fs_ckpt_meta(st, "global_attn"), "1,3"));
    CHECK(fs_ckpt_meta(st, "no_such_key") == NULL);
    CHECK(fs_ckpt_meta(pt, "img_size") == NULL);
    size_t i;
    CHECK(fs_ckpt_find(st, "image_encoder.pos_embed", &i) == FS_OK);
    const fs_ckpt_entry *e = fs_ckpt_entry_at(st, i);
    CHECK(e->ndim == 4 && e->shape[0] == 1 && e->shape[1] == 8 && e->shape[2] == 8 && e->shape[3] == 32);
    CHECK(fs_ckpt_find(pt, "image_encoder.blocks.9.attn.qkv.weight", &i) == FS_ERR);
    CHECK(strstr(fs_error_msg(), "'image_encoder.blocks.9.attn.qkv.weight'") && strstr(fs_error_msg(), golden_pth));
    float v[3];
    CHECK(fs_ckpt_find(st, "image_encoder.pos_embed", &i) == FS_OK);
    CHECK(fs_ckpt_read_f32(st, i, v, 3) == FS_ERR && strstr(fs_error_msg(), "2048 elements"));
    CHECK(fs_ckpt_entry_at(st, 202) == NULL);
    fs_ckpt_close(st);
    fs_ckpt_close(pt);
}

/* ---- safetensors writing ---- */

static void safetensors_round_trip(void) {
    const char *dir = test_tmp_dir("checkpoint_rt");
    char path[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    float f32[6] = {1.5f, -2, 3.25f, 1e-30f, -0.0f, 65504};
    double f64[4] = {1.0 / 3, -1e300, 2.5, 0};
    int32_t i32[4] = {-7, 0, 2147483647, -2147483647 - 1};
    int64_t i64[3] = {-1, 1LL << 40, 5};
    uint8_t u8[5] = {0, 1, 128, 255, 7};
    int16_t i16[2] = {-300, 300};
    uint16_t f16[2] = {0x3c00, 0xc000}, bf16[1] = {0x3f80};
    float scalar = 42;
    fs_tensor t[10] = {
        {.dtype = FS_F32, .ndim = 2, .shape = {2, 3}, .data = f32},
        {.dtype = FS_F64, .ndim = 1, .shape = {4}, .data = f64},
        {.dtype = FS_I32, .ndim = 2, .shape = {2, 2}, .data = i32},
        {.dtype = FS_I64, .ndim = 1, .shape = {3}, .data = i64},
        {.dtype = FS_U8, .ndim = 1, .shape = {5}, .data = u8},
        {.dtype = FS_I16, .ndim = 1, .shape = {2}, .data = i16},
        {.dtype = FS_F16, .ndim = 1, .shape = {2}, .data = f16},
        {.dtype = FS_BF16, .ndim = 3, .shape = {1, 1, 1}, .data = bf16},
        {.dtype = FS_F32, .ndim = 0, .data = &scalar},
        {.dtype = FS_F32, .ndim = 2, .shape = {0, 3}, .data = NULL},
    };
    const char *names[10] = {"z.f32", "a.f64", "i32", "i64", "u8", "i16", "f16", "bf16", "scalar", "empty"};
    const char *mk[2] = {"img_size", "odd \"key\""}, *mv[2] = {"64", "back\\slash\nnew line\t\x01 \xc3\xa9"};
    CHECKF(fs_safetensors_write(path, names, t, 10, mk, mv, 2) == FS_OK, "%s", fs_error_msg());
    unsigned char *file;
    size_t size;
    CHECK(fs_read_file(path, &file, &size) == FS_OK);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | file[i];
    CHECK(hl % 8 == 0 && file[8] == '{' && 8 + hl + 24 + 32 + 16 + 24 + 5 + 4 + 4 + 2 + 4 == size);
    free(file);
    fs_ckpt *c;
    CHECKF(fs_ckpt_open(&c, path) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_count(c) == 10);
    CHECK(!strcmp(fs_ckpt_meta(c, "img_size"), "64"));
    CHECK(!strcmp(fs_ckpt_meta(c, "odd \"key\""), mv[1]));
    for (size_t i = 0; i < 10; i++) {
        const fs_ckpt_entry *e = fs_ckpt_entry_at(c, i);
        CHECKF(!strcmp(e->name, names[i]), "entry %zu is %s", i, e->name); /* written order kept */
        CHECK(e->dtype == t[i].dtype && e->ndim == t[i].ndim);
        for (int d = 0; d < e->ndim; d++) CHECK(e->shape[d] == t[i].shape[d]);
        fs_tensor r;
        CHECKF(fs_ckpt_read(c, i, &r) == FS_OK, "%s", fs_error_msg());
        int same = fs_tensor_nbytes(&r) == fs_tensor_nbytes(&t[i]) &&
                   (!fs_tensor_nbytes(&r) || !memcmp(r.data, t[i].data, fs_tensor_nbytes(&r)));
        fs_tensor_free(&r);
        CHECKF(same, "%s", names[i]);
    }
    float out[6];
    CHECK(fs_ckpt_read_f32(c, 1, out, 4) == FS_OK && out[0] == (float)(1.0 / 3) && isinf(out[1]) && out[2] == 2.5f);
    CHECK(fs_ckpt_read_f32(c, 2, out, 4) == FS_OK && out[0] == -7 && out[3] == -2147483648.0f);
    CHECK(fs_ckpt_read_f32(c, 3, out, 3) == FS_OK && out[1] == 1099511627776.0f);
    CHECK(fs_ckpt_read_f32(c, 4, out, 5) == FS_OK && out[3] == 255);
    CHECK(fs_ckpt_read_f32(c, 5, out, 2) == FS_OK && out[0] == -300);
    CHECK(fs_ckpt_read_f32(c, 6, out, 2) == FS_OK && out[0] == 1 && out[1] == -2);
    CHECK(fs_ckpt_read_f32(c, 7, out, 1) == FS_OK && out[0] == 1);
    CHECK(fs_ckpt_read_f32(c, 8, out, 1) == FS_OK && out[0] == 42);
    CHECK(fs_ckpt_read_f32(c, 9, out, 0) == FS_OK);
    fs_ckpt_close(c);
    /* no metadata, no tensors */
    CHECK(fs_safetensors_write(path, NULL, NULL, 0, NULL, NULL, 0) == FS_OK);
    CHECK(fs_ckpt_open(&c, path) == FS_OK && fs_ckpt_count(c) == 0);
    fs_ckpt_close(c);
    /* refused writes leave nothing behind */
    snprintf(path, sizeof path, "%s/dup.safetensors", dir);
    const char *dup[2] = {"x", "x"};
    CHECK(fs_safetensors_write(path, dup, t, 2, NULL, NULL, 0) == FS_ERR && strstr(fs_error_msg(), "'x' given twice"));
    CHECK(!fs_is_file(path));
    char **ls;
    size_t nls;
    CHECK(fs_list_dir(dir, &ls, &nls) == FS_OK);
    CHECK(nls == 1 && !strcmp(ls[0], "rt.safetensors"));
    fs_free_list(ls, nls);
}

/* ---- broken safetensors ---- */

/* len (or the JSON's length when len is ~0), the JSON, then data bytes of zeros. */
static int st_file(const char *path, uint64_t len, const char *json, size_t data) {
    size_t jl = strlen(json), n = 8 + jl + data;
    unsigned char *b = calloc(1, n);
    if (!b) return -1;
    if (len == ~(uint64_t)0) len = jl;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len >> (8 * i));
    memcpy(b + 8, json, jl);
    int rc = write_bytes(path, b, n);
    free(b);
    return rc;
}

static void safetensors_bad_headers(void) {
    const char *dir = test_tmp_dir("checkpoint_badst");
    char p[600];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    static const struct { const char *json; size_t data; const char *msg; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,4]}}", 8, "begin <= end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
         "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "not a valid size"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions"},
        {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unsupported dtype F8_E4M3"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "lacks \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "'a' appears twice"},
        {"{\"__metadata__\":{\"k\":3}}", 0, "not a string"},
        {"[1,2]", 0, "not a safetensors"}, /* not even starting like a header */
        {"{\"a\":}", 0, "malformed safetensors header: unexpected character at byte 5"},
        {"{\"a\":{\"dtype\":\"F32\",}}", 0, "malformed"},
        {"{\"a\" {}}", 0, "expected ':'"},
        {"{\"a\":\"\x01\"}", 0, "control character"},
        {"{\"a\":\"\\q\"}", 0, "bad escape"},
        {"{\"a\":\"\\ud800\"}", 0, "surrogate"},
        {"{\"a\":\"\\u0000\"}", 0, "NUL"},
        {"{\"a\":\"abc", 0, "unterminated string"},
        {"{", 0, "malformed"},
        {"{} x", 0, "trailing characters"},
        {"{\"a\":[1,2,]}", 0, "malformed"},
        {"{\"a\":01}", 0, "malformed"},
        {"{\"a\":1.}", 0, "bad number"},
        {"{\"a\":tru}", 0, "malformed"},
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, "too deep"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(st_file(p, ~(uint64_t)0, cases[i].json, cases[i].data) == 0);
        CHECKF(expect_open_error(p, cases[i].msg), "case %zu: %s", i, cases[i].json);
        CHECKF(strstr(fs_error_msg(), p), "case %zu: message does not name the file: %s", i, fs_error_msg());
    }
    /* header lengths larger than the file, and absurd */
    CHECK(st_file(p, 1000, "{}", 0) == 0);
    CHECK(expect_open_error(p, "exceeds the file size"));
    CHECK(st_file(p, 1ull << 40, "{}", 0) == 0);
    CHECK(expect_open_error(p, "absurd"));
    CHECK(write_bytes(p, "\x02\0\0", 3) == 0);
    CHECK(expect_open_error(p, "too short"));
    CHECK(expect_open_error("/nonexistent/x.safetensors", "no such file"));
    CHECK(expect_open_error(dir, "not a regular file"));
    /* a good file whose data are cut off */
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    CHECK(st_file(p, ~(uint64_t)0, good, 15) == 0);
    CHECK(expect_open_error(p, "past the end"));
    CHECK(st_file(p, ~(uint64_t)0, good, 16) == 0);
    fs_ckpt *c;
    CHECK(fs_ckpt_open(&c, p) == FS_OK);
    fs_ckpt_close(c);
    /* random damage to a small valid header: an error or a clean open, never a crash */
    const char *h = "{\"__metadata__\":{\"k\":\"v\\u00e9\"},\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],"
                    "\"data_offsets\":[0,12]},\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[16,24]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}";
    size_t hl = strlen(h);
    char *m = malloc(hl + 1);
    CHECK(m);
    srand(99);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(m, h, hl + 1);
        for (int k = 0; k < 1 + trial % 3; k++) m[1 + rand() % (hl - 1)] = (char)(rand() % 128);
        CHECK(st_file(p, ~(uint64_t)0, m, 40) == 0);
        if (fs_ckpt_open(&c, p) == FS_OK) {
            for (size_t i = 0; i < fs_ckpt_count(c); i++) {
                fs_tensor t;
                if (fs_ckpt_read(c, i, &t) == FS_OK) fs_tensor_free(&t);
            }
            fs_ckpt_close(c);
        }
    }
    free(m);
}

/* ---- .pth: a zip writer and a pickle builder for crafted files ---- */

typedef struct { unsigned char *d; size_t n, cap; } buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        if (!b->d) abort();
    }
    if (n) memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put8(buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void putle(buf *b, uint64_t v, int k) { for (int i = 0; i < k; i++) put8(b, (unsigned)(v >> (8 * i)) & 255); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* A zip of stored entries (what torch writes, minus alignment padding). */
static int write_zip(const char *path, size_t n, const char *const *names, const buf *data) {
    buf z = {0}, cd = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, data[i].d ? data[i].d : (const unsigned char *)"", (uInt)data[i].n);
        size_t off = z.n, nl = strlen(names[i]);
        putle(&z, 0x04034b50, 4); putle(&z, 20, 2); putle(&z, 0, 2); putle(&z, 0, 2); putle(&z, 0, 4);
        putle(&z, crc, 4); putle(&z, data[i].n, 4); putle(&z, data[i].n, 4); putle(&z, nl, 2); putle(&z, 0, 2);
        put(&z, names[i], nl);
        put(&z, data[i].d, data[i].n);
        putle(&cd, 0x02014b50, 4); putle(&cd, 20, 2); putle(&cd, 20, 2); putle(&cd, 0, 2); putle(&cd, 0, 2);
        putle(&cd, 0, 4); putle(&cd, crc, 4); putle(&cd, data[i].n, 4); putle(&cd, data[i].n, 4);
        putle(&cd, nl, 2); putle(&cd, 0, 2); putle(&cd, 0, 2); putle(&cd, 0, 2); putle(&cd, 0, 2);
        putle(&cd, 0, 4); putle(&cd, off, 4);
        put(&cd, names[i], nl);
    }
    size_t cdoff = z.n;
    put(&z, cd.d, cd.n);
    putle(&z, 0x06054b50, 4); putle(&z, 0, 2); putle(&z, 0, 2); putle(&z, n, 2); putle(&z, n, 2);
    putle(&z, cd.n, 4); putle(&z, cdoff, 4); putle(&z, 0, 2);
    int rc = write_bytes(path, z.d, z.n);
    free(z.d);
    free(cd.d);
    return rc;
}

static void pk_str(buf *b, const char *s) { put8(b, 'X'); putle(b, strlen(s), 4); puts_(b, s); }
static void pk_int(buf *b, uint64_t v) {
    if (v < 256) { put8(b, 'K'); put8(b, (unsigned)v); }
    else if (v < 65536) { put8(b, 'M'); putle(b, v, 2); }
    else if (v < 0x80000000u) { put8(b, 'J'); putle(b, v, 4); }
    else { put8(b, 0x8a); put8(b, 8); putle(b, v, 8); }
}
static void pk_global(buf *b, const char *mod, const char *name) {
    put8(b, 'c'); puts_(b, mod); put8(b, '\n'); puts_(b, name); put8(b, '\n');
}

/* _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
static const buf *pk_callable; /* bytes that push _rebuild_tensor_v2 (e.g. a memo get); NULL: a GLOBAL */

static void pk_tensor(buf *b, const char *type, const char *key, uint64_t numel, uint64_t offset, int ndim,
                      const uint64_t *size, const uint64_t *stride) {
    if (pk_callable) put(b, pk_callable->d, pk_callable->n);
    else pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    put8(b, '(');
    put8(b, '('); pk_str(b, "storage"); pk_global(b, "torch", type); pk_str(b, key); pk_str(b, "cpu");
    pk_int(b, numel); put8(b, 't');
    put8(b, 'Q');
    pk_int(b, offset);
    put8(b, '('); for (int d = 0; d < ndim; d++) pk_int(b, size[d]); put8(b, 't');
    put8(b, '('); for (int d = 0; d < ndim; d++) pk_int(b, stride[d]); put8(b, 't');
    put8(b, 0x89);
    pk_global(b, "collections", "OrderedDict"); put8(b, ')'); put8(b, 'R');
    put8(b, 't');
    put8(b, 'R');
}

/* arch/data.pkl = pkl, arch/data/<keys[i]> = storages[i], arch/version */
static int write_pth(const char *path, const buf *pkl, size_t ns, const char *const *keys, const buf *storages,
                     const char *byteorder) {
    const char *names[16];
    char nb[16][64];
    buf data[16];
    size_t n = 0;
    names[n] = "arch/data.pkl"; data[n++] = *pkl;
    if (byteorder) { names[n] = "arch/byteorder"; data[n++] = (buf){(unsigned char *)byteorder, strlen(byteorder), 0}; }
    for (size_t i = 0; i < ns && n < 15; i++) {
        snprintf(nb[n], sizeof nb[n], "arch/data/%s", keys[i]);
        names[n] = nb[n];
        data[n++] = storages[i];
    }
    names[n] = "arch/version"; data[n++] = (buf){(unsigned char *)"3\n", 2, 0};
    return write_zip(path, n, names, data);
}

/* Storage "0": f32 0..5; "1": f64 {1.5, -2.25}; "2": f16 {1.0} (or big-endian when swap). */
static void storages3(buf s[3], int swap) {
    memset(s, 0, 3 * sizeof *s);
    for (int i = 0; i < 6; i++) {
        float f = (float)i;
        uint32_t u;
        memcpy(&u, &f, 4);
        if (swap) u = __builtin_bswap32(u);
        put(&s[0], &u, 4);
    }
    double dv[2] = {1.5, -2.25};
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        if (swap) u = __builtin_bswap64(u);
        put(&s[1], &u, 8);
    }
    uint16_t h = swap ? 0x003c : 0x3c00;
    put(&s[2], &h, 2);
}

/* {"model": {"a": s0 as [2,3], "b": s0 transposed [3,2], "c": s0[3:6], "n": 5,
 *  "p": Parameter(s1 [2]), "h": s2 scalar, 7: "x"}, "epoch": 3} using the memo for repeats */
static void views_pickle(buf *b) {
    static const uint64_t s23[2] = {2, 3}, st31[2] = {3, 1}, s32[2] = {3, 2}, st13[2] = {1, 3}, s3[1] = {3},
                          st1[1] = {1}, s2[1] = {2};
    put8(b, 0x80); put8(b, 2);
    put8(b, '}'); put8(b, 'q'); put8(b, 0);
    put8(b, '(');
    pk_str(b, "model");
    pk_global(b, "collections", "OrderedDict"); put8(b, ')'); put8(b, 'R');
    put8(b, '(');
    pk_str(b, "a"); put8(b, 'q'); put8(b, 1);
    pk_tensor(b, "FloatStorage", "0", 6, 0, 2, s23, st31);
    pk_str(b, "b"); pk_tensor(b, "FloatStorage", "0", 6, 0, 2, s32, st13);
    pk_str(b, "c"); pk_tensor(b, "FloatStorage", "0", 6, 3, 1, s3, st1);
    pk_str(b, "n"); pk_int(b, 5);
    pk_str(b, "p");
    pk_global(b, "torch._utils", "_rebuild_parameter");
    put8(b, '('); pk_tensor(b, "DoubleStorage", "1", 2, 0, 1, s2, st1); put8(b, 0x88);
    pk_global(b, "collections", "OrderedDict"); put8(b, ')'); put8(b, 'R'); put8(b, 't'); put8(b, 'R');
    pk_str(b, "h"); pk_tensor(b, "HalfStorage", "2", 1, 0, 0, NULL, NULL);
    pk_int(b, 7); pk_str(b, "x");
    put8(b, 'u');
    /* OrderedDict state, as torch's state_dict()._metadata gives it */
    put8(b, '}'); pk_str(b, "_metadata"); put8(b, '}'); put8(b, 's'); put8(b, 'b');
    pk_str(b, "epoch"); pk_int(b, 3);
    put8(b, 'u');
    put8(b, '.');
}

static const char *const keys3[3] = {"0", "1", "2"};

static void check_views_file(const char *p) {
    fs_ckpt *c;
    CHECKF(fs_ckpt_open(&c, p) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_count(c) == 5);
    static const char *want[5] = {"a", "b", "c", "p", "h"};
    for (size_t i = 0; i < 5; i++) CHECK(!strcmp(fs_ckpt_entry_at(c, i)->name, want[i]));
    float v[6];
    CHECK(fs_ckpt_read_f32(c, 0, v, 6) == FS_OK);
    for (int i = 0; i < 6; i++) CHECK(v[i] == i);
    CHECK(fs_ckpt_read_f32(c, 1, v, 6) == FS_OK);
    static const float bt[6] = {0, 3, 1, 4, 2, 5};
    for (int i = 0; i < 6; i++) CHECKF(v[i] == bt[i], "b[%d] = %g", i, v[i]);
    CHECK(fs_ckpt_read_f32(c, 2, v, 3) == FS_OK && v[0] == 3 && v[1] == 4 && v[2] == 5);
    CHECK(fs_ckpt_read_f32(c, 3, v, 2) == FS_OK && v[0] == 1.5f && v[1] == -2.25f);
    CHECK(fs_ckpt_entry_at(c, 3)->dtype == FS_F64 && fs_ckpt_entry_at(c, 4)->ndim == 0);
    CHECK(fs_ckpt_read_f32(c, 4, v, 1) == FS_OK && v[0] == 1);
    fs_tensor t;
    CHECK(fs_ckpt_read(c, 1, &t) == FS_OK && t.dtype == FS_F32 && t.shape[0] == 3 && t.shape[1] == 2);
    CHECK(((float *)t.data)[1] == 3);
    fs_tensor_free(&t);
    CHECK(fs_ckpt_read(c, 4, &t) == FS_OK && t.dtype == FS_F16 && *(uint16_t *)t.data == 0x3c00);
    fs_tensor_free(&t);
    fs_ckpt_close(c);
}

static void pth_views_strides_and_wrapper(void) {
    const char *dir = test_tmp_dir("checkpoint_views");
    char p[600];
    buf pkl = {0}, s[3];
    views_pickle(&pkl);
    storages3(s, 0);
    snprintf(p, sizeof p, "%s/views.pth", dir);
    CHECK(write_pth(p, &pkl, 3, keys3, s, "little") == 0);
    check_views_file(p);
    if (test_failed_flag) return;
    for (int i = 0; i < 3; i++) free(s[i].d);
    storages3(s, 1);
    snprintf(p, sizeof p, "%s/views_big.pth", dir);
    CHECK(write_pth(p, &pkl, 3, keys3, s, "big") == 0);
    check_views_file(p);
    if (test_failed_flag) return;
    /* every possible cut of the pickle is an error, never a crash */
    for (size_t cut = 0; cut < pkl.n; cut++) {
        buf part = {pkl.d, cut, 0};
        snprintf(p, sizeof p, "%s/cut.pth", dir);
        CHECK(write_pth(p, &part, 3, keys3, s, NULL) == 0);
        CHECKF(expect_open_error(p, "data.pkl"), "cut at %zu", cut);
    }
    /* and random corruption of single bytes likewise, or a clean open */
    srand(1234);
    for (int trial = 0; trial < 3000; trial++) {
        buf m = {0};
        put(&m, pkl.d, pkl.n);
        for (int k = 0; k < 1 + trial % 3; k++) m.d[rand() % m.n] = (unsigned char)rand();
        snprintf(p, sizeof p, "%s/fuzz.pth", dir);
        CHECK(write_pth(p, &m, 3, keys3, s, NULL) == 0);
        fs_ckpt *c;
        if (fs_ckpt_open(&c, p) == FS_OK) {
            float v[64];
            for (size_t i = 0; i < fs_ckpt_count(c); i++) {
                const fs_ckpt_entry *e = fs_ckpt_entry_at(c, i);
                size_t n = 1;
                for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
                if (n <= 64) CHECK(fs_ckpt_read_f32(c, i, v, n) == FS_OK);
            }
            fs_ckpt_close(c);
        }
        free(m.d);
    }
    for (int i = 0; i < 3; i++) free(s[i].d);
    free(pkl.d);
}

/* b = {"t": the pk_tensor view}, replacing what b held. */
static void one_tensor_pickle(buf *b, const char *type, const char *key, uint64_t numel, uint64_t offset, int ndim,
                              const uint64_t *size, const uint64_t *stride) {
    b->n = 0;
    put8(b, 0x80); put8(b, 2); put8(b, '}'); pk_str(b, "t");
    pk_tensor(b, type, key, numel, offset, ndim, size, stride); put8(b, 's'); put8(b, '.');
}

static int bad_pickle(const char *dir, const buf *pkl, const char *msg) {
    char p[600];
    buf s[3];
    storages3(s, 0);
    snprintf(p, sizeof p, "%s/bad.pth", dir);
    int ok = write_pth(p, pkl, 3, keys3, s, NULL) == 0 && expect_open_error(p, msg) && strstr(fs_error_msg(), p);
    for (int i = 0; i < 3; i++) free(s[i].d);
    return ok;
}

static void pth_hostile_pickles(void) {
    const char *dir = test_tmp_dir("checkpoint_hostile");
    static const uint64_t s7[1] = {7}, s6[1] = {6}, st1[1] = {1}, s2[2] = {2, 3}, st0[2] = {0, 1};
#define PK(lit) lit, sizeof(lit) - 1
    static const struct { const char *bytes; size_t n; const char *msg; } raw[] = {
        {PK("\x80\x02}(X\x01\x00\x00\x00" "aI1\n."), "data.pkl: unsupported pickle opcode 0x49 at offset 10"},
        {PK("\x80\x02" "cos\nsystem\n(X\x02\x00\x00\x00" "ls\x85R."), "global 'os.system' is not allowed"},
        {PK("\x80\x02" "ctorch.storage\n_load_from_bytes\n."), "global 'torch.storage._load_from_bytes' is not allowed"},
        {PK("\x80\x02" "cbuiltins\neval\n."), "'builtins.eval'"},
        {PK("\x80\x02\x8c\x08" "builtins\x8c\x04" "exec\x93."), "'builtins.exec'"},
        {PK("\x80\x02h\x05."), "memo index 5 was never stored"},
        {PK("\x80\x02Nr\xff\xff\xff\x7f."), "memo index 2147483647 out of range"},
        {PK("\x80\x02s."), "stack underflow"},
        {PK("\x80\x02(t0."), "stack underflow"},
        {PK("\x80\x02}(."), "stack underflow"},
        {PK("\x80\x02X\xff\xff\xff\x7f" "abc"), "truncated pickle"},
        {PK("\x80\x02\x8a\x09" "123456789."), "too large"},
        {PK("\x80\x02}}0"), "no STOP"},
        {PK("\x80\x09}."), "unsupported pickle protocol 9"},
        {PK("\x80\x02]K\x01K\x02s."), "SETITEM on a non-dict"},
        {PK("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."), "OrderedDict called with arguments"},
        {PK("\x80\x02" "ctorch\nFloatStorage\n)R."), "not allowed"},
        {PK("\x80\x02(X\x07\x00\x00\x00" "storageK\x01K\x02K\x03K\x04tQ."), "persistent id"},
        {PK("\x80\x02K\x01."), "does not hold a dict"},
        {PK("\x80\x02" "c" "collections\nOrderedDict"), "unterminated line"},
    };
#undef PK
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        buf b = {(unsigned char *)raw[i].bytes, raw[i].n, 0};
        CHECKF(bad_pickle(dir, &b, raw[i].msg), "case %zu: %s", i, fs_error_msg());
    }
    buf b = {0};
    /* a view past its storage's end, an overflowing one, a storage the archive lacks, sizes that disagree */
    one_tensor_pickle(&b, "FloatStorage", "0", 6, 0, 1, s7, st1);
    CHECK(bad_pickle(dir, &b, "reaches element 6 of storage '0' which holds 6"));
    one_tensor_pickle(&b, "FloatStorage", "0", 6, 1, 1, s6, st1);
    CHECK(bad_pickle(dir, &b, "reaches element 6"));
    static const uint64_t huge[2] = {1ull << 40, 1ull << 20}, hst[2] = {1ull << 40, 1};
    one_tensor_pickle(&b, "FloatStorage", "0", 6, 0, 2, huge, hst);
    CHECK(bad_pickle(dir, &b, "tensor size overflows"));
    one_tensor_pickle(&b, "FloatStorage", "9", 6, 0, 1, s6, st1);
    CHECK(bad_pickle(dir, &b, "no arch/data/9"));
    one_tensor_pickle(&b, "DoubleStorage", "0", 6, 0, 1, s6, st1);
    CHECK(bad_pickle(dir, &b, "holds 24 bytes"));
    /* a broadcast (stride 0) view is fine */
    one_tensor_pickle(&b, "FloatStorage", "0", 6, 3, 2, s2, st0);
    char p[600];
    buf s[3];
    storages3(s, 0);
    snprintf(p, sizeof p, "%s/bcast.pth", dir);
    CHECK(write_pth(p, &b, 3, keys3, s, NULL) == 0);
    for (int i = 0; i < 3; i++) free(s[i].d);
    fs_ckpt *c;
    float v[6];
    CHECKF(fs_ckpt_open(&c, p) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_read_f32(c, 0, v, 6) == FS_OK);
    fs_ckpt_close(c);
    CHECK(v[0] == 3 && v[2] == 5 && v[3] == 3 && v[5] == 5);
    /* deep MARK nesting and an overfull stack */
    b.n = 0;
    put8(&b, 0x80); put8(&b, 2);
    for (int i = 0; i < 5000; i++) put8(&b, '(');
    CHECK(bad_pickle(dir, &b, "MARKs nested deeper"));
    b.n = 0;
    put8(&b, 0x80); put8(&b, 2);
    for (int i = 0; i < (1 << 20) + 1; i++) put8(&b, 'N');
    CHECK(bad_pickle(dir, &b, "stack deeper"));
    free(b.d);
}

/* the rarer opcodes: protocol-0 UNICODE keys, memo puts and gets of every
 * width, MEMOIZE, LONG1, BINFLOAT, bytes, APPENDS, TUPLE3, DUP, POP, POP_MARK */
static void pth_other_opcodes(void) {
    const char *dir = test_tmp_dir("checkpoint_opcodes");
    static const uint64_t s6[1] = {6}, st1[1] = {1}, s3[1] = {3};
    buf b = {0};
    put8(&b, 0x80); put8(&b, 2);
    pk_global(&b, "torch._utils", "_rebuild_tensor_v2"); put8(&b, 'r'); putle(&b, 300, 4); put8(&b, '0');
    put8(&b, '('); put8(&b, 'N'); put8(&b, 0x88); put8(&b, '1');   /* POP_MARK drops both */
    put8(&b, '}'); put8(&b, 0x94);                                  /* MEMOIZE: index 1 (len of the memo) */
    put8(&b, '2'); put8(&b, '0');                                   /* DUP, POP */
    put8(&b, '(');
    puts_(&b, "Vcaf\\u00e9\n");
    buf get300 = {(unsigned char *)"j\x2c\x01\x00\x00", 5, 0};  /* LONG_BINGET 300 */
    buf gets = {(unsigned char *)"h\x01h\x01" "0" "0j\x2c\x01\x00\x00", 11, 0}; /* gets, pops, the callable */
    pk_callable = &get300;
    pk_tensor(&b, "FloatStorage", "0", 6, 0, 1, s6, st1);
    puts_(&b, "V\xe9t\xe9\n");
    pk_callable = &gets;
    pk_tensor(&b, "FloatStorage", "0", 6, 2, 1, s3, st1);
    pk_callable = NULL;
    put8(&b, 0x8c); put8(&b, 4); puts_(&b, "list"); put8(&b, ']'); put8(&b, '(');
    put8(&b, 'K'); put8(&b, 1); put8(&b, 'J'); putle(&b, 0xfffffffe, 4); put8(&b, 'e');
    put8(&b, 0x8c); put8(&b, 3); puts_(&b, "neg"); put8(&b, 0x8a); put8(&b, 1); put8(&b, 0xff);
    put8(&b, 0x8c); put8(&b, 1); puts_(&b, "f"); put8(&b, 'G'); put(&b, "\x3f\xf8\0\0\0\0\0\0", 8);
    put8(&b, 0x8c); put8(&b, 1); puts_(&b, "y"); put8(&b, 'C'); put8(&b, 3); puts_(&b, "abc");
    put8(&b, 0x8c); put8(&b, 1); puts_(&b, "t"); put8(&b, 'K'); put8(&b, 1); put8(&b, 'K'); put8(&b, 2);
    put8(&b, 'K'); put8(&b, 3); put8(&b, 0x87);
    put8(&b, 'u'); put8(&b, '.');
    char p[600];
    buf s[3];
    storages3(s, 0);
    snprintf(p, sizeof p, "%s/ops.pth", dir);
    CHECK(write_pth(p, &b, 3, keys3, s, NULL) == 0);
    for (int i = 0; i < 3; i++) free(s[i].d);
    free(b.d);
    fs_ckpt *c;
    CHECKF(fs_ckpt_open(&c, p) == FS_OK, "%s", fs_error_msg());
    CHECK(fs_ckpt_count(c) == 2);
    CHECK(!strcmp(fs_ckpt_entry_at(c, 0)->name, "caf\xc3\xa9"));
    CHECK(!strcmp(fs_ckpt_entry_at(c, 1)->name, "\xc3\xa9t\xc3\xa9"));
    float v[3];
    CHECK(fs_ckpt_read_f32(c, 1, v, 3) == FS_OK && v[0] == 2 && v[2] == 4);
    fs_ckpt_close(c);
    /* a negative storage offset */
    b = (buf){0};
    put8(&b, 0x80); put8(&b, 2); put8(&b, '}'); pk_str(&b, "t");
    pk_global(&b, "torch._utils", "_rebuild_tensor_v2");
    put8(&b, '('); put8(&b, '('); pk_str(&b, "storage"); pk_global(&b, "torch", "FloatStorage"); pk_str(&b, "0");
    pk_str(&b, "cpu"); pk_int(&b, 6); put8(&b, 't'); put8(&b, 'Q');
    put8(&b, 0x8a); put8(&b, 1); put8(&b, 0xff);
    put8(&b, '('); pk_int(&b, 1); put8(&b, 't'); put8(&b, '('); pk_int(&b, 1); put8(&b, 't');
    put8(&b, 0x89); put8(&b, '}'); put8(&b, 't'); put8(&b, 'R'); put8(&b, 's'); put8(&b, '.');
    CHECK(bad_pickle(dir, &b, "storage offset is not an integer"));
    free(b.d);
}

/* the archive without data.pkl, with a bad byteorder, and truncated copies of tiny.pth */
static void pth_truncated_and_odd_archives(void) {
    const char *dir = test_tmp_dir("checkpoint_trunc");
    char p[600];
    snprintf(p, sizeof p, "%s/x.pth", dir);
    buf v = {(unsigned char *)"3\n", 2, 0};
    const char *nm[1] = {"arch/version"};
    CHECK(write_zip(p, 1, nm, &v) == 0);
    CHECK(expect_open_error(p, "without data.pkl"));
    buf pkl = {0}, s[3];
    views_pickle(&pkl);
    storages3(s, 0);
    CHECK(write_pth(p, &pkl, 3, keys3, s, "middle") == 0);
    CHECK(expect_open_error(p, "unknown byte order"));
    CHECK(write_pth(p, &pkl, 2, keys3, s, NULL) == 0); /* storage "2" missing */
    CHECK(expect_open_error(p, "no arch/data/2"));
    for (int i = 0; i < 3; i++) free(s[i].d);
    free(pkl.d);
    CHECK(write_bytes(p, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 14) == 0);
    CHECK(expect_open_error(p, "legacy"));

    if (!fs_is_file(golden_pth)) SKIP("no %s", golden_pth);
    unsigned char *d;
    size_t n;
    CHECK(fs_read_file(golden_pth, &d, &n) == FS_OK);
    size_t cuts[] = {0, 4, 100, 26000, n / 2, n - 200, n - 22, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        CHECK(write_bytes(p, d, cuts[i]) == 0);
        CHECKF(expect_open_error(p, p), "cut at %zu", cuts[i]);
    }
    free(d);
    /* tiny's own data.pkl cut short inside a well-formed archive */
    fs_zip *z;
    CHECK(fs_zip_open(&z, golden_pth) == FS_OK);
    size_t nz = fs_zip_count(z);
    const char **names = calloc(nz, sizeof *names);
    buf *data = calloc(nz, sizeof *data);
    size_t ipkl = nz;
    for (size_t i = 0; i < nz; i++) {
        names[i] = fs_zip_name(z, i);
        CHECK(fs_zip_read(z, i, &data[i].d, &data[i].n) == FS_OK);
        if (strstr(names[i], "data.pkl")) ipkl = i;
    }
    CHECK(ipkl < nz);
    size_t full = data[ipkl].n;
    CHECK(write_zip(p, nz, names, data) == 0);
    fs_ckpt *c;
    CHECKF(fs_ckpt_open(&c, p) == FS_OK, "%s", fs_error_msg()); /* the rewritten archive itself is fine */
    CHECK(fs_ckpt_count(c) == 202);
    fs_ckpt_close(c);
    size_t pcuts[] = {1, 2, 100, full / 2, full - 2, full - 1};
    for (size_t i = 0; i < sizeof pcuts / sizeof *pcuts; i++) {
        data[ipkl].n = pcuts[i];
        CHECK(write_zip(p, nz, names, data) == 0);
        CHECKF(expect_open_error(p, "data.pkl"), "data.pkl cut at %zu", pcuts[i]);
        CHECK(strstr(fs_error_msg(), "truncated pickle"));
    }
    for (size_t i = 0; i < nz; i++) free(data[i].d);
    free(data);
    free(names);
    fs_zip_close(z);
}

/* ---- helper modes for the Python tests ---- */

static int convert(const char *in, const char *out) {
    fs_ckpt *c;
    if (fs_ckpt_open(&c, in)) goto fail;
    size_t n = fs_ckpt_count(c);
    fs_tensor *t = calloc(n ? n : 1, sizeof *t);
    const char **names = calloc(n ? n : 1, sizeof *names);
    int rc = t && names ? FS_OK : fs_error("out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const fs_ckpt_entry *e = fs_ckpt_entry_at(c, i);
        names[i] = e->name;
        rc = fs_tensor_alloc(&t[i], FS_F32, e->ndim, e->shape);
        if (!rc) rc = fs_ckpt_read_f32(c, i, t[i].data, fs_tensor_numel(&t[i]));
    }
    if (!rc) rc = fs_safetensors_write(out, names, t, n, NULL, NULL, 0);
    for (size_t i = 0; t && i < n; i++) fs_tensor_free(&t[i]);
    free(t);
    free(names);
    fs_ckpt_close(c);
    if (!rc) return 0;
fail:
    fprintf(stderr, "test_checkpoint: error: %s\n", fs_error_msg());
    return 1;
}

static int dump(const char *in) {
    fs_ckpt *c;
    if (fs_ckpt_open(&c, in)) {
        fprintf(stderr, "test_checkpoint: error: %s\n", fs_error_msg());
        return 1;
    }
    for (size_t i = 0; i < fs_ckpt_count(c); i++) {
        const fs_ckpt_entry *e = fs_ckpt_entry_at(c, i);
        fs_tensor t;
        if (fs_tensor_alloc(&t, FS_F32, e->ndim, e->shape) ||
            fs_ckpt_read_f32(c, i, t.data, fs_tensor_numel(&t))) {
            fprintf(stderr, "test_checkpoint: error: %s\n", fs_error_msg());
            fs_ckpt_close(c);
            return 1;
        }
        double sum = 0;
        size_t n = fs_tensor_numel(&t);
        for (size_t k = 0; k < n; k++) sum += ((float *)t.data)[k];
        char sh[128];
        printf("%s %s %s sum=%.9g first=[", e->name, fs_dtype_name(e->dtype), fs_shape_str(&t, sh, sizeof sh), sum);
        for (size_t k = 0; k < n && k < 4; k++) printf(k ? ",%.9g" : "%.9g", ((float *)t.data)[k]);
        printf("]\n");
        fs_tensor_free(&t);
    }
    fs_ckpt_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--convert")) return convert(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_checkpoint [--convert IN OUT.safetensors | --dump IN]\n");
        return 2;
    }
    snprintf(golden_st, sizeof golden_st, "%s/golden/tiny.safetensors", test_shared_dir());
    snprintf(golden_pth, sizeof golden_pth, "%s/golden/tiny.pth", test_shared_dir());
    RUN(golden_tiny_formats_agree);
    RUN(golden_metadata_and_missing_names);
    RUN(safetensors_round_trip);
    RUN(safetensors_bad_headers);
    RUN(pth_views_strides_and_wrapper);
    RUN(pth_hostile_pickles);
    RUN(pth_other_opcodes);
    RUN(pth_truncated_and_odd_archives);
    TEST_EXIT();
}
