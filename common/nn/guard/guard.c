/* fs_nn_guard: the cpu kernels on memory the host cannot touch, so that a
 * machine without a GPU can prove the model code treats backend memory as a
 * GPU's: only through the table's entries.
 *
 * Every allocation is its own anonymous mapping, kept PROT_NONE except while
 * a guard entry runs; a direct host read or write of it dies of SIGSEGV.
 * Every entry first checks each pointer it gets against the registry of live
 * allocations, with the extent the kernel will touch (from the dimensions, as
 * nn/nn.h states the shapes): a host buffer, a freed one, or dimensions that
 * run past an allocation's end stop the program with one line naming the
 * entry and the argument, where a GPU would fault somewhere later or
 * silently read garbage.
 *
 * Only the regions the call's arguments lie in are opened for it (not every
 * live region): the kernel may touch nothing else, and an mprotect per live
 * region per call would cost more than the kernels in a training step.
 *
 * Not thread-safe: the registry and the protections are process-wide with no
 * lock, as one host thread drives a backend (one CUDA stream). The cpu
 * kernels' own OpenMP threads are fine: they run only while the regions of
 * their call are open. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "nn/nn.h"

typedef struct {
    char *base;
    size_t bytes;  /* as asked for: the extent checks use this */
    size_t mapped; /* whole pages */
} guard_region;

/* Live regions sorted by base, so a pointer is found by bisection. */
static guard_region *regions;
static size_t nregions, capregions;

#define NONE SIZE_MAX

static size_t page_bytes(void) {
    static size_t ps;
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
    }
    return ps;
}

__attribute__((noreturn, format(printf, 1, 2))) static void guard_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fewsam guard: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

/* Index of the first region whose base is above p. */
static size_t upper(const void *p) {
    size_t lo = 0, hi = nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)regions[mid].base <= (uintptr_t)p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The region whose pages hold p, or NONE. */
static size_t find(const void *p) {
    size_t i = upper(p);
    if (i == 0) return NONE;
    const guard_region *r = &regions[i - 1];
    return (uintptr_t)p - (uintptr_t)r->base < r->mapped ? i - 1 : NONE;
}

/* ---- extents, saturating: absurd dimensions must fail the check, not wrap into a small extent ---- */

static size_t sat_mul(size_t a, size_t b) {
    if (a == 0 || b == 0) return 0;
    return a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

static size_t float_bytes(const size_t *dims, size_t n) {
    size_t p = sizeof(float);
    for (size_t i = 0; i < n; i++) p = sat_mul(p, dims[i]);
    return p;
}

/* Bytes of a float array whose shape is the arguments. */
#define F(...) float_bytes((const size_t[]){__VA_ARGS__}, sizeof((const size_t[]){__VA_ARGS__}) / sizeof(size_t))

/* Rows of a relative position table: 2n - 1. */
static size_t rel_rows(size_t n) { return n == 0 ? 0 : n > SIZE_MAX / 2 ? SIZE_MAX : 2 * n - 1; }

/* Floats a strided [M, N] view with leading dimension ld and column offset off touches. */
static size_t strided(size_t M, size_t ld, size_t off, size_t N) {
    if (M == 0 || N == 0) return 0;
    return sat_add(sat_add(sat_mul(M - 1, ld), off), N);
}

/* ---- one entry's call: its arguments checked, then their regions opened ---- */

#define GUARD_MAX_REGIONS 12

typedef struct {
    const char *entry;
    size_t reg[GUARD_MAX_REGIONS];
    int n;
} guard_call;

static void check(guard_call *c, const char *arg, const void *p, size_t bytes, int nullable) {
    if (bytes == 0) return;
    if (!p) {
        if (nullable) return;
        guard_die("%s: %s is NULL (%zu bytes expected)", c->entry, arg, bytes);
    }
    size_t i = find(p);
    if (i == NONE)
        guard_die("%s: %s (%p, %zu bytes) is not inside memory this backend allocated", c->entry, arg, p, bytes);
    const guard_region *r = &regions[i];
    size_t off = (size_t)((uintptr_t)p - (uintptr_t)r->base);
    if (off > r->bytes || bytes > r->bytes - off)
        guard_die("%s: %s (%p, %zu bytes) runs past the end of its allocation (%p, %zu bytes)", c->entry, arg, p,
                  bytes, (void *)r->base, r->bytes);
    for (int k = 0; k < c->n; k++)
        if (c->reg[k] == i) return;
    if (c->n == GUARD_MAX_REGIONS) guard_die("%s: too many arguments", c->entry);
    c->reg[c->n++] = i;
}

/* A pointer that must lie in guard memory. */
static void need(guard_call *c, const char *arg, const void *p, size_t bytes) { check(c, arg, p, bytes, 0); }
/* One that nn.h lets be NULL (a frozen gradient, no bias, no rel tables). */
static void may(guard_call *c, const char *arg, const void *p, size_t bytes) { check(c, arg, p, bytes, 1); }

/* A host pointer that must not be backend memory (the host reads or writes it). */
static void host(guard_call *c, const char *arg, const void *p, size_t bytes) {
    if (!p || bytes == 0) return;
    if (find(p) != NONE || find((const char *)p + (bytes - 1)) != NONE)
        guard_die("%s: the %s (%p, %zu bytes) is backend memory", c->entry, arg, p, bytes);
}

static void protect(const guard_call *c, int prot) {
    for (int k = 0; k < c->n; k++) {
        const guard_region *r = &regions[c->reg[k]];
        if (mprotect(r->base, r->mapped, prot) != 0)
            guard_die("%s: mprotect of %p (%zu bytes) failed: %s", c->entry, (void *)r->base, r->mapped,
                      strerror(errno));
    }
}

static void enter(const guard_call *c) { protect(c, PROT_READ | PROT_WRITE); }
static void leave(const guard_call *c) { protect(c, PROT_NONE); }

/* ---- memory ---- */

static int guard_available(void) { return 1; }

static void *guard_alloc(size_t bytes) {
    size_t ps = page_bytes();
    if (bytes > SIZE_MAX - ps) {
        fs_error("out of memory (guard: %zu MiB asked for)", bytes >> 20);
        return NULL;
    }
    /* a zero-byte allocation still gets a page, so that its pointer is unique */
    size_t mapped = bytes ? (bytes + ps - 1) / ps * ps : ps;
    if (nregions == capregions) {
        size_t cap = capregions ? 2 * capregions : 64;
        guard_region *r = realloc(regions, cap * sizeof *r);
        if (!r) {
            fs_error("out of memory (guard: the allocation registry)");
            return NULL;
        }
        regions = r;
        capregions = cap;
    }
    /* anonymous pages come zeroed */
    void *p = mmap(NULL, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fs_error_errno("out of memory (guard: %zu MiB)", bytes >> 20);
        return NULL;
    }
    size_t i = upper(p);
    memmove(regions + i + 1, regions + i, (nregions - i) * sizeof *regions);
    regions[i] = (guard_region){p, bytes, mapped};
    nregions++;
    return p;
}

static void guard_free(void *p) {
    if (!p) return;
    size_t i = find(p);
    if (i == NONE || regions[i].base != (char *)p)
        guard_die("free: %p is not the start of memory this backend allocated", p);
    if (munmap(regions[i].base, regions[i].mapped) != 0)
        guard_die("free: munmap of %p failed: %s", p, strerror(errno));
    memmove(regions + i, regions + i + 1, (nregions - i - 1) * sizeof *regions);
    nregions--;
}

static void guard_upload(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    guard_call c = {.entry = "upload"};
    need(&c, "dst", dst, bytes);
    host(&c, "source", src, bytes);
    enter(&c);
    memcpy(dst, src, bytes);
    leave(&c);
}

static void guard_download(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    guard_call c = {.entry = "download"};
    need(&c, "src", src, bytes);
    host(&c, "destination", dst, bytes);
    enter(&c);
    memcpy(dst, src, bytes);
    leave(&c);
}

static void guard_copy(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    guard_call c = {.entry = "copy"};
    need(&c, "dst", dst, bytes);
    need(&c, "src", src, bytes);
    enter(&c);
    memmove(dst, src, bytes);
    leave(&c);
}

static void guard_zero(void *p, size_t bytes) {
    if (bytes == 0) return;
    guard_call c = {.entry = "zero"};
    need(&c, "p", p, bytes);
    enter(&c);
    memset(p, 0, bytes);
    leave(&c);
}

/* ---- forward ---- */

static void g_linear_forward(float *out, const float *inp, const float *w, const float *bias, size_t M, size_t K,
                             size_t N) {
    guard_call c = {.entry = "linear_forward"};
    need(&c, "out", out, F(M, N));
    need(&c, "inp", inp, F(M, K));
    need(&c, "w", w, F(N, K));
    may(&c, "bias", bias, F(N));
    enter(&c);
    fs_nn_cpu.linear_forward(out, inp, w, bias, M, K, N);
    leave(&c);
}

static void g_layernorm_forward(float *out, const float *inp, const float *w, const float *b, size_t M, size_t C,
                                float eps) {
    guard_call c = {.entry = "layernorm_forward"};
    need(&c, "out", out, F(M, C));
    need(&c, "inp", inp, F(M, C));
    need(&c, "w", w, F(C));
    need(&c, "b", b, F(C));
    enter(&c);
    fs_nn_cpu.layernorm_forward(out, inp, w, b, M, C, eps);
    leave(&c);
}

static void g_gelu_forward(float *out, const float *inp, size_t n) {
    guard_call c = {.entry = "gelu_forward"};
    need(&c, "out", out, F(n));
    need(&c, "inp", inp, F(n));
    enter(&c);
    fs_nn_cpu.gelu_forward(out, inp, n);
    leave(&c);
}

static void g_relu_forward(float *out, const float *inp, size_t n) {
    guard_call c = {.entry = "relu_forward"};
    need(&c, "out", out, F(n));
    need(&c, "inp", inp, F(n));
    enter(&c);
    fs_nn_cpu.relu_forward(out, inp, n);
    leave(&c);
}

static void g_attention_forward(float *out, const float *q, const float *k, const float *v, size_t B, size_t Nq,
                                size_t Nk, size_t H, size_t D, float scale) {
    guard_call c = {.entry = "attention_forward"};
    need(&c, "out", out, F(B, Nq, H, D));
    need(&c, "q", q, F(B, Nq, H, D));
    need(&c, "k", k, F(B, Nk, H, D));
    need(&c, "v", v, F(B, Nk, H, D));
    enter(&c);
    fs_nn_cpu.attention_forward(out, q, k, v, B, Nq, Nk, H, D, scale);
    leave(&c);
}

static void g_attention_relpos_forward(float *out, const float *qkv, const float *rel_h, const float *rel_w,
                                       size_t B, size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    guard_call c = {.entry = "attention_relpos_forward"};
    need(&c, "out", out, F(B, Hg, Wg, H, D));
    need(&c, "qkv", qkv, F(B, Hg, Wg, 3, H, D));
    may(&c, "rel_h", rel_h, F(rel_rows(Hg), D));
    may(&c, "rel_w", rel_w, F(rel_rows(Wg), D));
    enter(&c);
    fs_nn_cpu.attention_relpos_forward(out, qkv, rel_h, rel_w, B, Hg, Wg, H, D, scale);
    leave(&c);
}

static void g_patch_embed_forward(float *out, const float *inp, const float *w, const float *b, size_t B, size_t Cin,
                                  size_t Hi, size_t Wi, size_t P, size_t C) {
    guard_call c = {.entry = "patch_embed_forward"};
    need(&c, "out", out, P ? F(B, Hi / P, Wi / P, C) : 0);
    need(&c, "inp", inp, F(B, Cin, Hi, Wi));
    need(&c, "w", w, F(C, Cin, P, P));
    need(&c, "b", b, F(C));
    enter(&c);
    fs_nn_cpu.patch_embed_forward(out, inp, w, b, B, Cin, Hi, Wi, P, C);
    leave(&c);
}

static void g_conv3x3_forward(float *out, const float *inp, const float *w, size_t B, size_t H, size_t W, size_t Cin,
                              size_t Cout) {
    guard_call c = {.entry = "conv3x3_forward"};
    need(&c, "out", out, F(B, H, W, Cout));
    need(&c, "inp", inp, F(B, H, W, Cin));
    need(&c, "w", w, F(Cout, Cin, 3, 3));
    enter(&c);
    fs_nn_cpu.conv3x3_forward(out, inp, w, B, H, W, Cin, Cout);
    leave(&c);
}

static void g_conv_transpose2x2_forward(float *out, const float *inp, const float *w, const float *b, size_t B,
                                        size_t H, size_t W, size_t Cin, size_t Cout) {
    guard_call c = {.entry = "conv_transpose2x2_forward"};
    need(&c, "out", out, F(B, 2, H, 2, W, Cout));
    need(&c, "inp", inp, F(B, H, W, Cin));
    need(&c, "w", w, F(Cin, Cout, 2, 2));
    need(&c, "b", b, F(Cout));
    enter(&c);
    fs_nn_cpu.conv_transpose2x2_forward(out, inp, w, b, B, H, W, Cin, Cout);
    leave(&c);
}

static void g_resize_bilinear_forward(float *out, const float *inp, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                      size_t Wo) {
    guard_call c = {.entry = "resize_bilinear_forward"};
    need(&c, "out", out, F(N, Ho, Wo));
    need(&c, "inp", inp, F(N, Hi, Wi));
    enter(&c);
    fs_nn_cpu.resize_bilinear_forward(out, inp, N, Hi, Wi, Ho, Wo);
    leave(&c);
}

/* ---- backward: gradients may be NULL (frozen, or nothing upstream), and
 * so may the saved inputs that only a skipped gradient would read ---- */

static void g_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, size_t M, size_t K, size_t N) {
    guard_call c = {.entry = "linear_backward"};
    may(&c, "dinp", dinp, F(M, K));
    may(&c, "dw", dw, F(N, K));
    may(&c, "dbias", dbias, F(N));
    need(&c, "dout", dout, F(M, N));
    may(&c, "inp", inp, F(M, K));
    may(&c, "w", w, F(N, K));
    enter(&c);
    fs_nn_cpu.linear_backward(dinp, dw, dbias, dout, inp, w, M, K, N);
    leave(&c);
}

static void g_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, size_t M, size_t C, float eps) {
    guard_call c = {.entry = "layernorm_backward"};
    may(&c, "dinp", dinp, F(M, C));
    may(&c, "dw", dw, F(C));
    may(&c, "db", db, F(C));
    need(&c, "dout", dout, F(M, C));
    may(&c, "inp", inp, F(M, C));
    may(&c, "w", w, F(C));
    enter(&c);
    fs_nn_cpu.layernorm_backward(dinp, dw, db, dout, inp, w, M, C, eps);
    leave(&c);
}

static void g_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    guard_call c = {.entry = "gelu_backward"};
    may(&c, "dinp", dinp, F(n));
    may(&c, "inp", inp, F(n));
    need(&c, "dout", dout, F(n));
    enter(&c);
    fs_nn_cpu.gelu_backward(dinp, inp, dout, n);
    leave(&c);
}

static void g_relu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    guard_call c = {.entry = "relu_backward"};
    may(&c, "dinp", dinp, F(n));
    may(&c, "inp", inp, F(n));
    need(&c, "dout", dout, F(n));
    enter(&c);
    fs_nn_cpu.relu_backward(dinp, inp, dout, n);
    leave(&c);
}

static void g_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                 const float *v, size_t B, size_t Nq, size_t Nk, size_t H, size_t D, float scale) {
    guard_call c = {.entry = "attention_backward"};
    may(&c, "dq", dq, F(B, Nq, H, D));
    may(&c, "dk", dk, F(B, Nk, H, D));
    may(&c, "dv", dv, F(B, Nk, H, D));
    need(&c, "dout", dout, F(B, Nq, H, D));
    may(&c, "q", q, F(B, Nq, H, D));
    may(&c, "k", k, F(B, Nk, H, D));
    may(&c, "v", v, F(B, Nk, H, D));
    enter(&c);
    fs_nn_cpu.attention_backward(dq, dk, dv, dout, q, k, v, B, Nq, Nk, H, D, scale);
    leave(&c);
}

static void g_attention_relpos_backward(float *dqkv, float *drel_h, float *drel_w, const float *dout,
                                        const float *qkv, const float *rel_h, const float *rel_w, size_t B,
                                        size_t Hg, size_t Wg, size_t H, size_t D, float scale) {
    guard_call c = {.entry = "attention_relpos_backward"};
    may(&c, "dqkv", dqkv, F(B, Hg, Wg, 3, H, D));
    may(&c, "drel_h", drel_h, F(rel_rows(Hg), D));
    may(&c, "drel_w", drel_w, F(rel_rows(Wg), D));
    need(&c, "dout", dout, F(B, Hg, Wg, H, D));
    may(&c, "qkv", qkv, F(B, Hg, Wg, 3, H, D));
    may(&c, "rel_h", rel_h, F(rel_rows(Hg), D));
    may(&c, "rel_w", rel_w, F(rel_rows(Wg), D));
    enter(&c);
    fs_nn_cpu.attention_relpos_backward(dqkv, drel_h, drel_w, dout, qkv, rel_h, rel_w, B, Hg, Wg, H, D, scale);
    leave(&c);
}

static void g_patch_embed_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                   const float *w, size_t B, size_t Cin, size_t Hi, size_t Wi, size_t P, size_t C) {
    guard_call c = {.entry = "patch_embed_backward"};
    may(&c, "dinp", dinp, F(B, Cin, Hi, Wi));
    may(&c, "dw", dw, F(C, Cin, P, P));
    may(&c, "db", db, F(C));
    need(&c, "dout", dout, P ? F(B, Hi / P, Wi / P, C) : 0);
    may(&c, "inp", inp, F(B, Cin, Hi, Wi));
    may(&c, "w", w, F(C, Cin, P, P));
    enter(&c);
    fs_nn_cpu.patch_embed_backward(dinp, dw, db, dout, inp, w, B, Cin, Hi, Wi, P, C);
    leave(&c);
}

static void g_conv3x3_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, size_t B,
                               size_t H, size_t W, size_t Cin, size_t Cout) {
    guard_call c = {.entry = "conv3x3_backward"};
    may(&c, "dinp", dinp, F(B, H, W, Cin));
    may(&c, "dw", dw, F(Cout, Cin, 3, 3));
    need(&c, "dout", dout, F(B, H, W, Cout));
    may(&c, "inp", inp, F(B, H, W, Cin));
    may(&c, "w", w, F(Cout, Cin, 3, 3));
    enter(&c);
    fs_nn_cpu.conv3x3_backward(dinp, dw, dout, inp, w, B, H, W, Cin, Cout);
    leave(&c);
}

static void g_conv_transpose2x2_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                         const float *w, size_t B, size_t H, size_t W, size_t Cin, size_t Cout) {
    guard_call c = {.entry = "conv_transpose2x2_backward"};
    may(&c, "dinp", dinp, F(B, H, W, Cin));
    may(&c, "dw", dw, F(Cin, Cout, 2, 2));
    may(&c, "db", db, F(Cout));
    need(&c, "dout", dout, F(B, 2, H, 2, W, Cout));
    may(&c, "inp", inp, F(B, H, W, Cin));
    may(&c, "w", w, F(Cin, Cout, 2, 2));
    enter(&c);
    fs_nn_cpu.conv_transpose2x2_backward(dinp, dw, db, dout, inp, w, B, H, W, Cin, Cout);
    leave(&c);
}

static void g_resize_bilinear_backward(float *dinp, const float *dout, size_t N, size_t Hi, size_t Wi, size_t Ho,
                                       size_t Wo) {
    guard_call c = {.entry = "resize_bilinear_backward"};
    may(&c, "dinp", dinp, F(N, Hi, Wi));
    need(&c, "dout", dout, F(N, Ho, Wo));
    enter(&c);
    fs_nn_cpu.resize_bilinear_backward(dinp, dout, N, Hi, Wi, Ho, Wo);
    leave(&c);
}

/* ---- tensor glue ---- */

static void g_add(float *out, const float *a, const float *b, size_t n) {
    guard_call c = {.entry = "add"};
    need(&c, "out", out, F(n));
    need(&c, "a", a, F(n));
    need(&c, "b", b, F(n));
    enter(&c);
    fs_nn_cpu.add(out, a, b, n);
    leave(&c);
}

static void g_scale(float *x, float f, size_t n) {
    guard_call c = {.entry = "scale"};
    need(&c, "x", x, F(n));
    enter(&c);
    fs_nn_cpu.scale(x, f, n);
    leave(&c);
}

static void g_add_rows(float *x, const float *row, size_t M, size_t N) {
    guard_call c = {.entry = "add_rows"};
    need(&c, "x", x, F(M, N));
    need(&c, "row", row, M ? F(N) : 0);
    enter(&c);
    fs_nn_cpu.add_rows(x, row, M, N);
    leave(&c);
}

static void g_sum_rows(float *drow, const float *dx, size_t M, size_t N) {
    guard_call c = {.entry = "sum_rows"};
    need(&c, "drow", drow, F(N));
    need(&c, "dx", dx, F(M, N));
    enter(&c);
    fs_nn_cpu.sum_rows(drow, dx, M, N);
    leave(&c);
}

static void g_add_cols(float *out, size_t ldo, size_t off, const float *in, float f, size_t M, size_t N) {
    guard_call c = {.entry = "add_cols"};
    need(&c, "out", out, F(strided(M, ldo, off, N)));
    need(&c, "in", in, F(M, N));
    enter(&c);
    fs_nn_cpu.add_cols(out, ldo, off, in, f, M, N);
    leave(&c);
}

static void g_take_cols(float *out, const float *in, size_t ldi, size_t off, float f, size_t M, size_t N) {
    guard_call c = {.entry = "take_cols"};
    need(&c, "out", out, F(M, N));
    need(&c, "in", in, F(strided(M, ldi, off, N)));
    enter(&c);
    fs_nn_cpu.take_cols(out, in, ldi, off, f, M, N);
    leave(&c);
}

static size_t windows(size_t g, size_t ws) { return ws ? g / ws + (g % ws != 0) : 0; }

static void g_window_partition(float *win, const float *x, size_t B, size_t g, size_t ws, size_t C) {
    guard_call c = {.entry = "window_partition"};
    size_t nw = windows(g, ws);
    need(&c, "win", win, F(B, nw, nw, ws, ws, C));
    need(&c, "x", x, F(B, g, g, C));
    enter(&c);
    fs_nn_cpu.window_partition(win, x, B, g, ws, C);
    leave(&c);
}

static void g_window_unpartition(float *x, const float *win, size_t B, size_t g, size_t ws, size_t C, int acc) {
    guard_call c = {.entry = "window_unpartition"};
    size_t nw = windows(g, ws);
    need(&c, "x", x, F(B, g, g, C));
    need(&c, "win", win, F(B, nw, nw, ws, ws, C));
    enter(&c);
    fs_nn_cpu.window_unpartition(x, win, B, g, ws, C, acc);
    leave(&c);
}

static void g_crop(float *out, const float *x, size_t h, size_t w, size_t ho, size_t wo) {
    guard_call c = {.entry = "crop"};
    need(&c, "out", out, F(ho, wo));
    need(&c, "x", x, ho && wo ? F(h, w) : 0);
    enter(&c);
    fs_nn_cpu.crop(out, x, h, w, ho, wo);
    leave(&c);
}

/* ---- optimiser ---- */

static void g_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const double hyper[5], size_t t) {
    guard_call c = {.entry = "adamw_update"};
    need(&c, "p", p, F(n));
    need(&c, "g", g, F(n));
    need(&c, "m", m, F(n));
    need(&c, "v", v, F(n));
    /* hyper is a host parameter block (a GPU backend reads it on the host
     * and passes the values to its kernel) */
    if (n && !hyper) guard_die("adamw_update: hyper is NULL");
    host(&c, "hyper", hyper, 5 * sizeof(double));
    enter(&c);
    fs_nn_cpu.adamw_update(p, g, m, v, n, hyper, t);
    leave(&c);
}

static double g_sumsq(const float *x, size_t n) {
    guard_call c = {.entry = "sumsq"};
    need(&c, "x", x, F(n));
    enter(&c);
    double s = fs_nn_cpu.sumsq(x, n);
    leave(&c);
    return s;
}

/* Every entry that fs_nn_cpu fills is filled here (test_guard checks that
 * the two tables agree on which are NULL). */
const fs_nn_ops fs_nn_guard = {
    .name = "guard",
    .linear_forward = g_linear_forward,
    .layernorm_forward = g_layernorm_forward,
    .gelu_forward = g_gelu_forward,
    .relu_forward = g_relu_forward,
    .attention_forward = g_attention_forward,
    .attention_relpos_forward = g_attention_relpos_forward,
    .patch_embed_forward = g_patch_embed_forward,
    .conv3x3_forward = g_conv3x3_forward,
    .conv_transpose2x2_forward = g_conv_transpose2x2_forward,
    .resize_bilinear_forward = g_resize_bilinear_forward,
    .linear_backward = g_linear_backward,
    .layernorm_backward = g_layernorm_backward,
    .gelu_backward = g_gelu_backward,
    .relu_backward = g_relu_backward,
    .attention_backward = g_attention_backward,
    .attention_relpos_backward = g_attention_relpos_backward,
    .patch_embed_backward = g_patch_embed_backward,
    .conv3x3_backward = g_conv3x3_backward,
    .conv_transpose2x2_backward = g_conv_transpose2x2_backward,
    .resize_bilinear_backward = g_resize_bilinear_backward,
    .device = 1,
    .available = guard_available,
    .alloc = guard_alloc,
    .free = guard_free,
    .upload = guard_upload,
    .download = guard_download,
    .copy = guard_copy,
    .zero = guard_zero,
    .add = g_add,
    .scale = g_scale,
    .add_rows = g_add_rows,
    .sum_rows = g_sum_rows,
    .add_cols = g_add_cols,
    .take_cols = g_take_cols,
    .window_partition = g_window_partition,
    .window_unpartition = g_window_unpartition,
    .crop = g_crop,
    .adamw_update = g_adamw_update,
    .sumsq = g_sumsq,
};
